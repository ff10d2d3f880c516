//! The circuit relay v2 server that `tincan-phonebook --relay` runs beside the phonebook, for
//! peers that cannot accept connections (behind NAT). It also answers AutoNAT probes, so that
//! peers learn whether they are reachable.

use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, autonat, identify, noise, ping, relay, tcp, yamux};

use super::RelayInfo;

/// How the relay runs. The defaults are raised well above libp2p's (2 min and 128 KiB per
/// circuit) so that a conversation fits in one circuit, and bounded per peer.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// Addresses to listen on.
    pub listen: Vec<Multiaddr>,
    /// Public addresses to announce; by default, what it listens on.
    pub external: Vec<Multiaddr>,
    /// Reservations held at once, in all.
    pub max_reservations: usize,
    /// Reservations per peer.
    pub max_reservations_per_peer: usize,
    /// Relayed connections at once, in all.
    pub max_circuits: usize,
    /// Relayed connections per peer.
    pub max_circuits_per_peer: usize,
    /// How long one relayed connection lasts.
    pub max_circuit_duration: Duration,
    /// How many bytes one relayed connection carries, each way.
    pub max_circuit_bytes: u64,
    /// Answer AutoNAT probes from peers at private addresses too (private networks, tests).
    pub probe_private_addresses: bool,
}

impl Default for RelayConfig {
    fn default() -> RelayConfig {
        RelayConfig {
            listen: vec![
                "/ip4/0.0.0.0/tcp/4001".parse().expect("a valid multiaddr"),
                "/ip4/0.0.0.0/udp/4001/quic-v1".parse().expect("a valid multiaddr"),
            ],
            external: Vec::new(),
            max_reservations: 1024,
            max_reservations_per_peer: 2,
            max_circuits: 512,
            max_circuits_per_peer: 8,
            max_circuit_duration: Duration::from_secs(30 * 60),
            max_circuit_bytes: 16 << 20,
            probe_private_addresses: false,
        }
    }
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    relay: relay::Behaviour,
    identify: identify::Behaviour,
    autonat: autonat::Behaviour,
    ping: ping::Behaviour,
}

/// A running relay.
pub struct Relay {
    info: RelayInfo,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Starts the relay with the key in `key_file` (created if missing, mode 0600), or with a
    /// new key each time when `None`, and returns once it listens.
    pub async fn start(key_file: Option<&Path>, config: RelayConfig) -> anyhow::Result<Relay> {
        let key = match key_file {
            Some(path) => load_or_create_key(path)?,
            None => Keypair::generate_ed25519(),
        };
        let peer_id = key.public().to_peer_id();
        let relay_config = relay::Config {
            max_reservations: config.max_reservations,
            max_reservations_per_peer: config.max_reservations_per_peer,
            max_circuits: config.max_circuits,
            max_circuits_per_peer: config.max_circuits_per_peer,
            max_circuit_duration: config.max_circuit_duration,
            max_circuit_bytes: config.max_circuit_bytes,
            ..relay::Config::default()
        };
        let autonat_config = autonat::Config {
            only_global_ips: !config.probe_private_addresses,
            // The relay is public by definition: it answers probes but makes none itself.
            use_connected: false,
            ..autonat::Config::default()
        };
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )?
            .with_quic()
            .with_behaviour(|key| Behaviour {
                relay: relay::Behaviour::new(key.public().to_peer_id(), relay_config),
                identify: identify::Behaviour::new(
                    identify::Config::new("/tincan/1".into(), key.public()).with_agent_version(
                        format!("tincan-phonebook/{}", env!("CARGO_PKG_VERSION")),
                    ),
                ),
                autonat: autonat::Behaviour::new(key.public().to_peer_id(), autonat_config),
                ping: ping::Behaviour::new(ping::Config::new()),
            })?
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
            .build();
        for addr in &config.listen {
            swarm.listen_on(addr.clone())?;
        }
        // The relay is public by definition: announce its addresses as confirmed, so that
        // reservations carry them, and advertise the relay protocol.
        swarm.behaviour_mut().relay.set_status(Some(relay::Status::Enable));
        let mut listening = Vec::new();
        let deadline = tokio::time::sleep(Duration::from_secs(10));
        tokio::pin!(deadline);
        while listening.len() < config.listen.len() {
            tokio::select! {
                event = swarm.select_next_some() => match event {
                    SwarmEvent::NewListenAddr { address, .. } => listening.push(address),
                    SwarmEvent::ListenerError { error, .. } => anyhow::bail!("relay listener: {error}"),
                    SwarmEvent::ListenerClosed { reason: Err(e), .. } => anyhow::bail!("relay listener: {e}"),
                    _ => {}
                },
                () = &mut deadline => anyhow::bail!("the relay did not start listening within 10 s"),
            }
        }
        let external = if config.external.is_empty() {
            // A wildcard listener reports every interface; loopback is useless to anyone else.
            let routable: Vec<Multiaddr> =
                listening.iter().filter(|a| !is_loopback(a)).cloned().collect();
            if routable.is_empty() { listening.clone() } else { routable }
        } else {
            config.external.clone()
        };
        for addr in &external {
            swarm.add_external_address(addr.clone());
        }
        let info = RelayInfo {
            peer_id: peer_id.to_base58(),
            addrs: external.iter().map(|a| with_peer(a, peer_id).to_string()).collect(),
            max_circuit_secs: config.max_circuit_duration.as_secs(),
            max_circuit_bytes: config.max_circuit_bytes,
            max_circuits_per_peer: config.max_circuits_per_peer,
            max_reservations_per_peer: config.max_reservations_per_peer,
        };
        tracing::info!(%peer_id, addrs = ?info.addrs, "relay ready");
        let task = tokio::spawn(run(swarm));
        Ok(Relay { info, task })
    }

    /// What `GET /relay` answers: pass it to the server's [`Config`](crate::server::Config).
    pub fn info(&self) -> RelayInfo {
        self.info.clone()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(mut swarm: libp2p::Swarm<Behaviour>) {
    loop {
        match swarm.select_next_some().await {
            SwarmEvent::Behaviour(BehaviourEvent::Relay(event)) => match event {
                relay::Event::ReservationReqAccepted { src_peer_id, .. } => {
                    tracing::info!(peer = %src_peer_id, "relay reservation")
                }
                relay::Event::ReservationReqDenied { src_peer_id, .. } => {
                    tracing::info!(peer = %src_peer_id, "relay reservation denied")
                }
                relay::Event::CircuitReqAccepted { src_peer_id, dst_peer_id } => {
                    tracing::info!(src = %src_peer_id, dst = %dst_peer_id, "relayed connection");
                }
                relay::Event::CircuitReqDenied { src_peer_id, dst_peer_id, .. } => {
                    tracing::info!(src = %src_peer_id, dst = %dst_peer_id, "relayed connection denied");
                }
                _ => {}
            },
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::debug!(%address, "relay listening")
            }
            _ => {}
        }
    }
}

fn is_loopback(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_loopback(),
        Protocol::Ip6(ip) => ip.is_loopback(),
        _ => false,
    })
}

fn with_peer(addr: &Multiaddr, peer: PeerId) -> Multiaddr {
    match addr.iter().last() {
        Some(Protocol::P2p(_)) => addr.clone(),
        _ => addr.clone().with(Protocol::P2p(peer)),
    }
}

/// The relay's key: a stable PeerId across restarts, so clients' relayed addresses stay valid.
fn load_or_create_key(path: &Path) -> anyhow::Result<Keypair> {
    if path.exists() {
        let bytes = std::fs::read(path)?;
        return Keypair::from_protobuf_encoding(&bytes)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()));
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let key = Keypair::generate_ed25519();
    let bytes = key.to_protobuf_encoding().map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    std::io::Write::write_all(&mut options.open(path)?, &bytes)?;
    Ok(key)
}
