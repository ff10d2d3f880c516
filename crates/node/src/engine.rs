//! The engine: one task that owns the swarm and drives delivery (`specs/delivery.md`). Store
//! and phonebook calls run as separate tasks on the same runtime and report back through a
//! channel, so the swarm is never blocked on a disk or an HTTP request.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{
    self, OutboundFailure, OutboundRequestId, ProtocolSupport, ResponseChannel,
};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, Swarm, allow_block_list, autonat, connection_limits, dcutr, identify, noise,
    ping, relay, tcp, yamux,
};
use tincan_identity::{Identity, PublicKey};
use tincan_phonebook_client::Found;
use tincan_seal::{Envelope, OpenError};
use tincan_store::{
    Claim, ContactKind, ConversationId, Incoming, KeysUpdate, Outcome as StoreOutcome, Received,
    SealedReceipt, StoreError,
};
use tincan_wire::{
    Ack, Batch, ChatMessage, Notice, Outcome, PeerIdBytes, Refusal, Request, Response, SealedBatch,
    Seq, Username,
};
use tokio::sync::{mpsc, oneshot};

use crate::codec::{Codec, Inbound, PROTOCOL};
use crate::conversations::{
    Action, Answer, Conversations, Failure, Known, Loaded, Sighting, Token,
};
use crate::delivery::{Queued, Settled};
use crate::directory::DirectoryError;
use crate::guard::{Admit, Guard};
use crate::nat::{self, Paths, Reservation};
use crate::node::{
    Config, Event, NatReport, Reachability, RelayPolicy, RelayState, SealingChange, Shared,
    StartError, now, peer_bytes,
};

/// Outbox entries loaded into memory per conversation at a time.
const LOAD: usize = 512;
/// How often timers are checked.
const TICK: Duration = Duration::from_millis(250);
/// How often the whole outbox is rescanned, as a safety net for missed commands.
const RESCAN: Duration = Duration::from_secs(30);
/// The longest between two looks at whether the Olm fallback key is due for rotation.
const ROTATION_CHECK: Duration = Duration::from_secs(3600);
/// Least time between two new sessions started for one conversation because the peer could
/// not open our messages (`specs/sealed.md` §8): a peer that never opens anything does not
/// make us reseal in a loop.
const RESEAL_EVERY: Duration = Duration::from_secs(60);

/// What the [`Node`](crate::Node) handle asks of the engine.
#[derive(Debug)]
pub(crate) enum Command {
    /// A message was queued in this conversation.
    Queued(ConversationId, Queued),
    /// The conversation's contact or outbox changed: reload it.
    Reload(ConversationId),
    /// These messages were queued again (sealed again in a new session): load them.
    Requeued(ConversationId, Vec<Seq>),
    /// Publish our record now (a phonebook came back).
    Publish,
    /// The conversation was deleted: forget it.
    Forget(ConversationId),
    /// Tell a peer something about the conversation, once, best effort (`specs/wire.md` §4.4).
    Notice { peer: PeerId, addrs: Vec<Multiaddr>, notice: Notice },
    /// Learn whether a contact is there (presence): dial it, or find where it is now.
    Probe { conv: ConversationId, peer: PeerId, username: Username, addrs: Vec<Multiaddr> },
    /// Take our records down and stop.
    Shutdown(oneshot::Sender<()>),
}

/// What the engine's own tasks report back.
enum Internal {
    Loaded {
        conv: ConversationId,
        loaded: Loaded,
    },
    LoadFailed {
        conv: ConversationId,
        error: StoreError,
    },
    Respond {
        peer: PeerId,
        channel: ResponseChannel<Response>,
        response: Response,
    },
    Looked {
        conv: ConversationId,
        result: Result<Option<Found>, DirectoryError>,
    },
    Settled {
        conv: ConversationId,
    },
    Contact {
        peer: PeerId,
        known: Known,
    },
    Rescanned(Vec<ConversationId>),
    /// Our record went out; refresh it at half of `ttl`, the shortest a phonebook accepts.
    Published {
        ttl: Duration,
    },
    /// The Olm fallback key was rotated: our record goes out again with the new keys.
    Rotated,
    /// What the phonebooks say of their relay: `Ok(None)` when none runs one.
    Relay(Result<Vec<(PeerId, Multiaddr)>, RelayError>),
    /// The envelopes of a batch, sealed now if they were not yet (or why not).
    Prepared {
        batch: Prepare,
        result: Result<Vec<(Seq, Vec<u8>)>, StoreError>,
    },
    /// The batch cannot go: the request ends as failed.
    Unsent {
        token: Token,
    },
}

/// A batch the core asked to send whose envelopes are being read or sealed.
struct Prepare {
    token: Token,
    conv: ConversationId,
    peer: PeerId,
    addrs: Vec<Multiaddr>,
    seqs: Vec<Seq>,
    /// The peer's keys were asked for already: if they are still missing, give up for now.
    asked_keys: bool,
}

/// What a request on the swarm is for.
enum Pending {
    /// A batch of the core's.
    Chat(Token),
    /// The peer's Olm keys, to seal the batch.
    Keys(Prepare),
}

#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    limits: connection_limits::Behaviour,
    bans: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    chat: request_response::Behaviour<Codec>,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    relay: relay::client::Behaviour,
    dcutr: libp2p::swarm::behaviour::toggle::Toggle<dcutr::Behaviour>,
    autonat: autonat::Behaviour,
}

struct Engine {
    swarm: Swarm<Behaviour>,
    shared: Arc<Shared>,
    identity: Arc<Identity>,
    config: Config,
    /// The delivery and contact logic: this engine carries out its actions.
    core: Conversations,
    /// The requests on the swarm.
    requests: HashMap<OutboundRequestId, Pending>,
    /// When each conversation last started a new session because the peer could not open ours.
    resealed: HashMap<ConversationId, Instant>,
    guard: Guard,
    bans: Vec<(Instant, PeerId)>,
    internal_tx: mpsc::Sender<Internal>,
    next_register: Option<Instant>,
    /// Whether each phonebook (by URL) last said it takes Olm keys in records: kept for when
    /// `GET /info` fails, so that a refresh does not take our keys down.
    takes_keys: Arc<Mutex<HashMap<String, bool>>>,
    /// When to see whether the Olm fallback key is due for rotation.
    next_rotation: Instant,
    published: Vec<Multiaddr>,
    next_rescan: Instant,
    paths: Paths,
    reservation: Reservation,
    /// When this engine started, ms since the epoch: records of ours signed before are an
    /// earlier run's.
    started_ms: u64,
}

/// The engine thread's body: builds the swarm, reports readiness, runs until shutdown.
pub(crate) fn run(
    identity: Identity,
    config: Config,
    shared: Arc<Shared>,
    commands: mpsc::Receiver<Command>,
    ready: oneshot::Sender<Result<(), StartError>>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            let _ = ready.send(Err(StartError::Transport(e.into())));
            return;
        }
    };
    runtime.block_on(async move {
        let (internal_tx, internal_rx) = mpsc::channel(4096);
        let mut engine = match Engine::new(identity, config, shared, internal_tx).await {
            Ok(engine) => engine,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        engine.run(commands, internal_rx).await;
    });
}

fn build_swarm(identity: &Identity, config: &Config) -> Result<Swarm<Behaviour>, StartError> {
    let limits = config.limits.clone();
    let max_streams = limits.max_streams_per_connection;
    let yamux_config = move || {
        let mut c = yamux::Config::default();
        c.set_max_num_streams(max_streams);
        c
    };
    let transport_error = |e: noise::Error| StartError::Transport(e.into());
    let chat_config = request_response::Config::default()
        .with_request_timeout(config.request_timeout)
        .with_max_concurrent_streams(max_streams);
    let idle = config.idle_timeout;
    let nat = config.nat.clone();
    let autonat_config = autonat::Config {
        boot_delay: nat.probe_delay,
        retry_interval: nat.probe_interval,
        refresh_interval: nat.probe_refresh,
        // Only the relay, which the phonebook's operator runs, probes us; and we probe no one
        // for others: a peer must not make us dial addresses of its choosing.
        use_connected: false,
        throttle_clients_global_max: 0,
        throttle_clients_peer_max: 0,
        ..autonat::Config::default()
    };
    let swarm = libp2p::SwarmBuilder::with_existing_identity(identity.libp2p_keypair())
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux_config)
        .map_err(transport_error)?
        .with_quic()
        .with_relay_client(noise::Config::new, yamux_config)
        .map_err(transport_error)?
        .with_behaviour(|key, relay_client| Behaviour {
            limits: connection_limits::Behaviour::new(
                connection_limits::ConnectionLimits::default()
                    .with_max_established_incoming(Some(limits.max_incoming_connections))
                    .with_max_established_per_peer(Some(limits.max_connections_per_peer))
                    .with_max_pending_incoming(Some(limits.max_incoming_connections)),
            ),
            bans: allow_block_list::Behaviour::default(),
            chat: request_response::Behaviour::with_codec(
                Codec,
                [(PROTOCOL, ProtocolSupport::Full)],
                chat_config,
            ),
            identify: identify::Behaviour::new(
                identify::Config::new("/tincan/1".into(), key.public())
                    .with_agent_version(format!("tincan/{}", env!("CARGO_PKG_VERSION"))),
            ),
            ping: ping::Behaviour::new(ping::Config::new()),
            relay: relay_client,
            dcutr: nat.hole_punch.then(|| dcutr::Behaviour::new(key.public().to_peer_id())).into(),
            autonat: autonat::Behaviour::new(key.public().to_peer_id(), autonat_config),
        })
        .map_err(|e| StartError::Transport(e.into()))?
        .with_swarm_config(|c| {
            c.with_idle_connection_timeout(idle)
                .with_substream_upgrade_protocol_override(libp2p::core::upgrade::Version::V1Lazy)
                .with_max_negotiating_inbound_streams(max_streams)
        })
        .build();
    Ok(swarm)
}

impl Engine {
    async fn new(
        identity: Identity,
        config: Config,
        shared: Arc<Shared>,
        internal_tx: mpsc::Sender<Internal>,
    ) -> Result<Engine, StartError> {
        let mut swarm = build_swarm(&identity, &config)?;
        let mut pending = HashSet::new();
        for addr in &config.listen {
            let id = swarm
                .listen_on(addr.clone())
                .map_err(|e| StartError::Listen { addr: addr.clone(), reason: listen_error(e) })?;
            pending.insert(id);
        }
        // Wait until every listener has an address, so the caller can publish or print them.
        let deadline = tokio::time::sleep(Duration::from_secs(10));
        tokio::pin!(deadline);
        let mut addrs = Vec::new();
        while !pending.is_empty() {
            tokio::select! {
                event = swarm.select_next_some() => match event {
                    SwarmEvent::NewListenAddr { listener_id, address } => {
                        pending.remove(&listener_id);
                        addrs.push(address);
                    }
                    SwarmEvent::ListenerClosed { addresses, reason, .. } => {
                        let addr = addresses.first().cloned().unwrap_or_else(|| config.listen[0].clone());
                        let reason = reason.err().unwrap_or_else(|| std::io::Error::other("the listener closed"));
                        return Err(StartError::Listen { addr, reason });
                    }
                    SwarmEvent::ListenerError { error, .. } => {
                        return Err(StartError::Listen { addr: config.listen[0].clone(), reason: error });
                    }
                    _ => {}
                },
                () = &mut deadline => {
                    return Err(StartError::NoListenAddress(Duration::from_secs(10)));
                }
            }
        }
        *shared.listen_addrs.lock().unwrap_or_else(|e| e.into_inner()) = addrs;
        let guard = Guard::new(config.limits.clone());
        let directory = !shared.directory.is_empty();
        let now = Instant::now();
        Ok(Engine {
            swarm,
            shared,
            identity: Arc::new(identity),
            config,
            core: Conversations::new(directory),
            requests: HashMap::new(),
            resealed: HashMap::new(),
            guard,
            bans: Vec::new(),
            internal_tx,
            next_register: Some(now),
            takes_keys: Arc::default(),
            next_rotation: now,
            published: Vec::new(),
            next_rescan: now,
            paths: Paths::default(),
            reservation: Reservation::new(now),
            started_ms: now_ms(),
        })
    }

    async fn run(
        &mut self,
        mut commands: mpsc::Receiver<Command>,
        mut internal: mpsc::Receiver<Internal>,
    ) {
        self.load_contacts();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut health = self.shared.store.health();
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm(event),
                Ok(()) = health.changed() => {
                    let now = *health.borrow_and_update();
                    tracing::warn!(health = ?now, "the store's health changed");
                    let _ = self.shared.events.send(Event::Storage(now));
                    // Room again: what waits in the outbox goes at once.
                    if now == tincan_store::Health::Ok {
                        self.next_rescan = Instant::now();
                    }
                }
                command = commands.recv() => match command {
                    Some(Command::Queued(conv, item)) => {
                        self.core.queued(conv, item, Instant::now());
                        self.drive();
                    }
                    Some(Command::Reload(conv)) => {
                        self.core.reload(conv, Instant::now());
                        self.drive();
                    }
                    Some(Command::Requeued(conv, seqs)) => {
                        self.core.requeued(conv, &seqs, Instant::now());
                        self.drive();
                    }
                    Some(Command::Publish) => self.next_register = Some(Instant::now()),
                    Some(Command::Forget(conv)) => self.core.forget(conv),
                    Some(Command::Notice { peer, addrs, notice }) => {
                        // Not tracked: its answer, or its failure, changes nothing.
                        let request = Inbound::Request(Request::Notice(notice));
                        self.swarm.behaviour_mut().chat.send_request_with_addresses(&peer, request, addrs);
                    }
                    Some(Command::Probe { conv, peer, username, addrs }) => {
                        self.core.probe(conv, peer, username, addrs, Instant::now());
                        self.drive();
                    }
                    Some(Command::Shutdown(done)) => {
                        self.unpublish().await;
                        let _ = done.send(());
                        return;
                    }
                    None => return,
                },
                Some(msg) = internal.recv() => self.on_internal(msg),
                _ = tick.tick() => self.on_tick(),
            }
        }
    }

    // ---- loading -------------------------------------------------------------------------

    fn load_contacts(&mut self) {
        let store = self.shared.store.clone();
        let tx = self.internal_tx.clone();
        tokio::spawn(async move {
            let Ok(contacts) = store.contacts().await else { return };
            for c in contacts {
                if let Ok(peer) = PeerId::from_bytes(c.peer_id.as_bytes()) {
                    let known = Known {
                        conv: c.conversation,
                        username: c.username,
                        request: c.kind == ContactKind::Request,
                        blocked: c.blocked,
                    };
                    let _ = tx.send(Internal::Contact { peer, known }).await;
                }
            }
        });
    }

    fn spawn_load(&self, conv: ConversationId) {
        let store = self.shared.store.clone();
        let tx = self.internal_tx.clone();
        tokio::spawn(async move {
            let loaded = async {
                let contact = store.contact(conv).await?.ok_or(StoreError::NoSuchConversation)?;
                let entries = store.outbox(conv, LOAD).await?;
                Ok::<_, StoreError>((contact, entries))
            };
            let msg = match loaded.await {
                Ok((contact, entries)) => match loaded_of(contact, entries) {
                    Some(loaded) => Internal::Loaded { conv, loaded },
                    None => Internal::LoadFailed {
                        conv,
                        error: StoreError::Corrupted { table: "contacts" },
                    },
                },
                Err(error) => Internal::LoadFailed { conv, error },
            };
            let _ = tx.send(msg).await;
        });
    }

    // ---- the core's actions --------------------------------------------------------------

    /// Carries out what the conversations core asks for, until it asks for nothing more.
    fn drive(&mut self) {
        while let Some(action) = self.core.poll() {
            self.perform(action);
        }
    }

    fn perform(&mut self, action: Action) {
        match action {
            Action::Load(conv) => self.spawn_load(conv),
            Action::Send { token, conv, peer, addrs, messages }
                if self.config.plaintext_for_benchmarks =>
            {
                let messages = messages
                    .into_iter()
                    .map(|q| ChatMessage {
                        id: q.id,
                        seq: q.seq,
                        sent_at: q.sent_at,
                        from: self.shared.username.clone(),
                        to: peer_bytes(&peer),
                        text: q.text,
                    })
                    .collect();
                let Ok(batch) = Batch::new(messages) else {
                    let jitter = rand::random::<f64>();
                    return self.core.failed(token, Failure::Other, Instant::now(), jitter);
                };
                let request = self.swarm.behaviour_mut().chat.send_request_with_addresses(
                    &peer,
                    Inbound::Request(Request::Chat(batch)),
                    addrs,
                );
                self.requests.insert(request, Pending::Chat(token));
                tracing::trace!(%conv, "sent in plaintext, for a benchmark");
            }
            Action::Send { token, conv, peer, addrs, messages } => {
                let sealed: Option<Vec<Vec<u8>>> =
                    messages.iter().map(|q| q.envelope.clone()).collect();
                match sealed {
                    Some(envelopes) => self.send_sealed(token, peer, addrs, envelopes),
                    // Queued before the peer's keys were known: sealed now, once.
                    None => {
                        let seqs = messages.iter().map(|q| q.seq).collect();
                        let batch = Prepare { token, conv, peer, addrs, seqs, asked_keys: false };
                        self.prepare(batch);
                    }
                }
            }
            Action::Sent { conv, ids } => {
                for id in ids {
                    let _ = self.shared.events.send(Event::Status {
                        conversation: conv,
                        id,
                        status: tincan_store::Status::Sent,
                    });
                }
            }
            Action::RecordAttempts { conv, seqs, wait } => {
                let wait = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
                let next = tincan_store::UnixMillis(now_ms().saturating_add(wait));
                let store = self.shared.store.clone();
                tokio::spawn(async move {
                    if let Err(e) = store.record_attempt(conv, seqs, next).await {
                        tracing::debug!(%conv, error = %e, "recording an attempt failed");
                    }
                });
            }
            Action::Acknowledge { conv, settled } => self.acknowledge(conv, settled),
            Action::Lookup { conv, username } => {
                let directory = self.shared.directory.clone();
                let tx = self.internal_tx.clone();
                tokio::spawn(async move {
                    let result = directory.lookup(&username).await;
                    let _ = tx.send(Internal::Looked { conv, result }).await;
                });
            }
            Action::SaveAddrs { conv, addrs } => {
                let store = self.shared.store.clone();
                let text: Vec<String> = addrs.iter().map(Multiaddr::to_string).collect();
                tokio::spawn(async move {
                    let _ = store.set_addrs(conv, text).await;
                });
            }
            Action::Dial { peer, addrs } => {
                let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
                    .addresses(addrs)
                    // Beside a dial still trying addresses the peer left: the first to connect
                    // wins.
                    .condition(libp2p::swarm::dial_opts::PeerCondition::Disconnected)
                    .build();
                if let Err(e) = self.swarm.dial(opts) {
                    tracing::debug!(%peer, error = %e, "probing failed");
                }
            }
            Action::KeyChanged { conv, username, old, new } => {
                let store = self.shared.store.clone();
                let events = self.shared.events.clone();
                tokio::spawn(async move {
                    match store.note_key_change(conv, peer_bytes(&new), now_millis()).await {
                        Ok(_) => {
                            let _ = events.send(Event::KeyChanged {
                                conversation: conv,
                                username,
                                old,
                                new,
                            });
                        }
                        Err(e) => {
                            tracing::error!(%conv, error = %e, "recording a key change failed")
                        }
                    }
                });
            }
        }
    }

    /// Sends sealed envelopes as the core's request `token`.
    fn send_sealed(
        &mut self,
        token: Token,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        envelopes: Vec<Vec<u8>>,
    ) {
        let batch = match SealedBatch::new(envelopes) {
            Ok(batch) => batch,
            Err(e) => {
                tracing::error!(%peer, error = %e, "a queued batch does not make a request");
                let jitter = rand::random::<f64>();
                return self.core.failed(token, Failure::Other, Instant::now(), jitter);
            }
        };
        let request = self.swarm.behaviour_mut().chat.send_request_with_addresses(
            &peer,
            Inbound::Request(Request::Sealed(batch)),
            addrs,
        );
        self.requests.insert(request, Pending::Chat(token));
    }

    /// Reads the batch's envelopes from the outbox, sealing those not sealed yet.
    fn prepare(&self, batch: Prepare) {
        let store = self.shared.store.clone();
        let from = self.shared.username.clone();
        let tx = self.internal_tx.clone();
        tokio::spawn(async move {
            let result = store.seal_queued(batch.conv, from, batch.seqs.clone()).await;
            let _ = tx.send(Internal::Prepared { batch, result }).await;
        });
    }

    fn on_prepared(&mut self, batch: Prepare, result: Result<Vec<(Seq, Vec<u8>)>, StoreError>) {
        let now = Instant::now();
        match result {
            Ok(sealed) => {
                // Messages the store no longer holds were settled by an answer committed after
                // they were loaded: dropped, not sent.
                let vanished: Vec<Seq> = batch
                    .seqs
                    .iter()
                    .filter(|s| !sealed.iter().any(|(q, _)| q == *s))
                    .copied()
                    .collect();
                if !vanished.is_empty() {
                    tracing::debug!(conv = %batch.conv, ?vanished, "no longer queued");
                    self.core.vanished(batch.token, &vanished);
                }
                if sealed.is_empty() {
                    self.core.answered(
                        batch.token,
                        Answer::Acks(Vec::new()),
                        now,
                        rand::random::<f64>(),
                    );
                } else {
                    let envelopes = sealed.into_iter().map(|(_, e)| e).collect();
                    self.send_sealed(batch.token, batch.peer, batch.addrs, envelopes);
                }
            }
            // A new session is needed and the peer's keys are not known: ask the peer.
            Err(StoreError::NoPeerKeys) if !batch.asked_keys => {
                let (peer, addrs) = (batch.peer, batch.addrs.clone());
                let request = self.swarm.behaviour_mut().chat.send_request_with_addresses(
                    &peer,
                    Inbound::Request(Request::Keys),
                    addrs,
                );
                self.requests.insert(request, Pending::Keys(batch));
            }
            other => {
                if let Err(error) = other {
                    tracing::warn!(conv = %batch.conv, %error, "sealing queued messages failed");
                }
                self.core.failed(batch.token, Failure::Other, now, rand::random::<f64>());
            }
        }
    }

    /// The peer's answer to our keys request for `batch`.
    fn on_keys(&mut self, mut batch: Prepare, response: Response) {
        let record = match response {
            Response::Keys(record) => record,
            // A version-1 peer: it cannot read sealed messages, and the user sees why.
            Response::Refused(refusal) => {
                let answer = Answer::Refused(refusal);
                self.core.answered(batch.token, answer, Instant::now(), rand::random::<f64>());
                return;
            }
            _ => {
                let jitter = rand::random::<f64>();
                return self.core.failed(batch.token, Failure::Other, Instant::now(), jitter);
            }
        };
        batch.asked_keys = true;
        let shared = self.shared.clone();
        let tx = self.internal_tx.clone();
        tokio::spawn(async move {
            let conv = batch.conv;
            match shared.store.set_peer_keys(conv, record).await {
                Ok(KeysUpdate::Updated { .. } | KeysUpdate::Kept) => {
                    let from = shared.username.clone();
                    let result = shared.store.seal_queued(conv, from, batch.seqs.clone()).await;
                    let _ = tx.send(Internal::Prepared { batch, result }).await;
                }
                Ok(KeysUpdate::Refused(error)) => {
                    tracing::warn!(%conv, %error, "the peer's olm keys are refused");
                    if let Ok(Some(contact)) = shared.store.contact(conv).await {
                        let _ = shared.events.send(Event::Sealing {
                            conversation: conv,
                            username: contact.username,
                            change: SealingChange::KeysRefused,
                        });
                    }
                    let _ = tx.send(Internal::Unsent { token: batch.token }).await;
                }
                Err(error) => {
                    tracing::warn!(%conv, %error, "keeping the peer's olm keys failed");
                    let _ = tx.send(Internal::Unsent { token: batch.token }).await;
                }
            }
        });
    }

    /// Commits what an answer settled, then reports the new statuses. Messages the peer could
    /// not open for want of a session are sealed again in a new one (`specs/sealed.md` §8).
    fn acknowledge(&mut self, conv: ConversationId, settled: Settled) {
        let lost = settled.failed.iter().filter(|(_, _, r)| *r == Refusal::NoSession).count();
        let at = Instant::now();
        let reseal = lost > 0
            && self.resealed.get(&conv).is_none_or(|last| at.duration_since(*last) >= RESEAL_EVERY);
        if reseal {
            self.resealed.insert(conv, at);
        }
        let outcomes: Vec<_> = settled
            .delivered
            .into_iter()
            .map(|(seq, id)| (seq, id, StoreOutcome::Delivered))
            .chain(settled.failed.into_iter().map(|(seq, id, r)| {
                (seq, id, StoreOutcome::Failed { code: r.code(), reason: r.name().to_owned() })
            }))
            .collect();
        let store = self.shared.store.clone();
        let events = self.shared.events.clone();
        let tx = self.internal_tx.clone();
        let shared_commands = self.shared.commands.clone();
        tokio::spawn(async move {
            match store.acknowledge(conv, outcomes, now()).await {
                Ok(changed) => {
                    for (id, status) in changed {
                        let _ = events.send(Event::Status { conversation: conv, id, status });
                    }
                }
                // The outbox keeps the messages: they are sent again and deduplicated.
                Err(e) => tracing::warn!(%conv, error = %e, "recording acknowledgements failed"),
            }
            let _ = tx.send(Internal::Settled { conv }).await;
            if reseal {
                match store.restart_session(conv).await {
                    Ok(requeued) => {
                        let seqs = requeued.iter().map(|(seq, _)| *seq).collect();
                        if let Ok(Some(contact)) = store.contact(conv).await {
                            let _ = events.send(Event::Sealing {
                                conversation: conv,
                                username: contact.username,
                                change: SealingChange::Resealed { messages: requeued.len() },
                            });
                        }
                        for (_, id) in requeued {
                            let status = tincan_store::Status::Queued;
                            let _ = events.send(Event::Status { conversation: conv, id, status });
                        }
                        let _ = shared_commands.send(Command::Requeued(conv, seqs)).await;
                    }
                    Err(e) => tracing::warn!(%conv, error = %e, "starting a new session failed"),
                }
            }
        });
    }

    fn on_answer(&mut self, request: OutboundRequestId, response: Response) {
        let token = match self.requests.remove(&request) {
            None => return,
            Some(Pending::Chat(token)) => token,
            Some(Pending::Keys(batch)) => {
                self.on_keys(batch, response);
                return self.drive();
            }
        };
        let answer = match response {
            Response::Acks(acks) => Answer::Acks(acks),
            Response::Refused(refusal) => Answer::Refused(refusal),
            _ => Answer::Unexpected,
        };
        self.core.answered(token, answer, Instant::now(), rand::random::<f64>());
        self.drive();
    }

    fn on_failure(&mut self, request: OutboundRequestId, error: &OutboundFailure) {
        let token = match self.requests.remove(&request) {
            None => return,
            Some(Pending::Chat(token) | Pending::Keys(Prepare { token, .. })) => token,
        };
        tracing::debug!(%error, "request failed");
        let failure = match error {
            OutboundFailure::DialFailure => Failure::Dial,
            OutboundFailure::ConnectionClosed => Failure::ConnectionClosed,
            _ => Failure::Other,
        };
        self.core.failed(token, failure, Instant::now(), rand::random::<f64>());
        self.drive();
    }

    // ---- receiving -----------------------------------------------------------------------

    fn on_request(&mut self, peer: PeerId, request: Inbound, channel: ResponseChannel<Response>) {
        let now = Instant::now();
        let batch = match request {
            Inbound::Request(Request::Sealed(batch)) => batch,
            Inbound::Request(Request::Notice(notice)) => {
                return self.on_notice(peer, notice, channel, now);
            }
            Inbound::Request(Request::Keys) => {
                let response = if self.guard.admit(peer, now) == Admit::RateLimited {
                    Response::Refused(Refusal::RateLimited)
                } else {
                    self.guard.done(peer);
                    Response::Keys(self.olm_keys())
                };
                let _ = self.swarm.behaviour_mut().chat.send_response(channel, response);
                return;
            }
            // Plaintext, from a version-1 peer: refused, so that its user sees that we accept
            // sealed messages only (`specs/wire.md` §4.5). Not a strike: it is an honest peer.
            Inbound::Request(Request::Chat(batch)) if self.config.plaintext_for_benchmarks => {
                return self.on_plaintext(peer, batch, channel, now);
            }
            Inbound::Request(Request::Chat(_)) => {
                tracing::info!(%peer, "refusing plaintext messages (wire version 1)");
                let refused = Response::Refused(Refusal::UnsupportedVersion);
                let _ = self.swarm.behaviour_mut().chat.send_response(channel, refused);
                return;
            }
            Inbound::Request(_) => {
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .chat
                    .send_response(channel, Response::Refused(Refusal::UnsupportedKind));
                return;
            }
            Inbound::Invalid { refusal, reason } => {
                return self.invalid(peer, channel, refusal, &reason);
            }
        };
        // Envelopes are decoded here, before anything is read or stored: one that is not an
        // envelope makes the request malformed.
        let mut envelopes = Vec::with_capacity(batch.envelopes().len());
        for bytes in batch.envelopes() {
            match Envelope::decode(bytes) {
                Ok(envelope) => envelopes.push(envelope),
                Err(_) => {
                    let refusal = Refusal::Malformed;
                    return self.invalid(
                        peer,
                        channel,
                        refusal,
                        "a sealed envelope does not decode",
                    );
                }
            }
        }
        let shared = self.shared.clone();
        self.respond_later(
            peer,
            channel,
            now,
            async move { receive(&shared, peer, envelopes).await },
        );
    }

    /// Answers a batch of messages from `peer` with what `store` returns (the response, and
    /// what the node now knows of the peer), unless the peer is over its rate. Not a strike:
    /// a legitimate peer catching up can hit the limit; it backs off.
    fn respond_later(
        &mut self,
        peer: PeerId,
        channel: ResponseChannel<Response>,
        now: Instant,
        store: impl Future<Output = (Response, Option<Known>)> + Send + 'static,
    ) {
        if self.guard.admit(peer, now) == Admit::RateLimited {
            let refused = Response::Refused(Refusal::RateLimited);
            let _ = self.swarm.behaviour_mut().chat.send_response(channel, refused);
            return;
        }
        let tx = self.internal_tx.clone();
        tokio::spawn(async move {
            let (response, known) = store.await;
            if let Some(known) = known {
                let _ = tx.send(Internal::Contact { peer, known }).await;
            }
            let _ = tx.send(Internal::Respond { peer, channel, response }).await;
        });
    }

    /// A plaintext batch, accepted only under [`Config::plaintext_for_benchmarks`].
    fn on_plaintext(
        &mut self,
        peer: PeerId,
        batch: Batch,
        channel: ResponseChannel<Response>,
        now: Instant,
    ) {
        let shared = self.shared.clone();
        let me = peer_bytes(&self.shared.peer_id);
        let known = self.core.known(&peer).cloned();
        self.respond_later(peer, channel, now, async move {
            receive_plaintext(&shared, &me, peer, known, batch).await
        });
    }

    /// A request that broke the protocol: refused, and a strike against the peer.
    fn invalid(
        &mut self,
        peer: PeerId,
        channel: ResponseChannel<Response>,
        refusal: Refusal,
        reason: &str,
    ) {
        tracing::info!(%peer, %refusal, reason, "invalid frame");
        let _ = self.swarm.behaviour_mut().chat.send_response(channel, Response::Refused(refusal));
        let now = Instant::now();
        if self.guard.strike(peer, now) {
            self.ban(peer, now);
        }
    }

    /// A peer's notice: answered at once, shown if the peer is a contact (not a request, not
    /// blocked), never stored.
    fn on_notice(
        &mut self,
        peer: PeerId,
        notice: Notice,
        channel: ResponseChannel<Response>,
        now: Instant,
    ) {
        let response = if self.guard.admit(peer, now) == Admit::RateLimited {
            Response::Refused(Refusal::RateLimited)
        } else {
            self.guard.done(peer);
            if let Some(known) = self.core.known(&peer)
                && !known.request
                && !known.blocked
                && !matches!(notice, Notice::Unknown(_))
            {
                let _ = self.shared.events.send(Event::Notice {
                    conversation: known.conv,
                    username: known.username.clone(),
                    notice,
                });
            }
            Response::Acks(Vec::new())
        };
        let _ = self.swarm.behaviour_mut().chat.send_response(channel, response);
    }

    fn ban(&mut self, peer: PeerId, now: Instant) {
        if self.swarm.behaviour_mut().bans.block_peer(peer) {
            tracing::warn!(%peer, "too many invalid or excess requests: disconnecting and refusing the peer for a while");
            self.bans.push((now + self.guard.limits().ban, peer));
        }
    }

    // ---- Olm keys ------------------------------------------------------------------------

    /// Our signed Olm keys record, as peers and phonebooks get it.
    fn olm_keys(&self) -> Vec<u8> {
        self.shared.olm_keys.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Rotates the fallback key if it is due (`specs/sealed.md` §6), then publishes the new
    /// keys.
    fn rotate(&mut self) {
        let (shared, tx) = (self.shared.clone(), self.internal_tx.clone());
        let (identity, every) = (self.identity.clone(), self.config.olm_rotation);
        tokio::spawn(async move {
            match shared.store.rotate_fallback_key(identity, now(), every).await {
                Ok(Some(keys)) => {
                    let serial_of = |record: &[u8]| {
                        tincan_seal::SignedOlmKeys::decode(record)
                            .map(|k| k.unverified().serial)
                            .unwrap_or_default()
                    };
                    let serial = serial_of(&keys);
                    tracing::info!(serial, "rotated the olm fallback key");
                    {
                        let mut ours = shared.olm_keys.lock().unwrap_or_else(|e| e.into_inner());
                        // Two checks in flight commit in order, but may get here in either.
                        if serial > serial_of(&ours) {
                            *ours = keys;
                        }
                    }
                    let _ = tx.send(Internal::Rotated).await;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "rotating the olm fallback key failed"),
            }
        });
    }

    /// Offers a contact's keys found in its phonebook record: kept if they are its pinned
    /// identity's and newer than those kept (`specs/sealed.md` §2.1). Keys of another identity
    /// (the name is bound to a new key) are not the pinned peer's, and are left to the key
    /// change the lookup reports.
    fn keep_peer_keys(&self, conv: ConversationId, keys: Vec<u8>) {
        let store = self.shared.store.clone();
        tokio::spawn(async move {
            match store.offer_directory_keys(conv, keys).await {
                Ok(update) => tracing::debug!(%conv, ?update, "olm keys from the phonebook"),
                Err(e) => {
                    tracing::debug!(%conv, error = %e, "keeping olm keys from the phonebook failed")
                }
            }
        });
    }

    // ---- phonebook -----------------------------------------------------------------------

    fn publish(&mut self) {
        let addrs =
            publishable(&self.shared.listen_addrs.lock().unwrap_or_else(|e| e.into_inner()));
        if self.shared.directory.is_empty() || addrs.is_empty() {
            self.next_register = None;
            return;
        }
        let ttl = self.config.presence_ttl;
        self.next_register = Some(Instant::now() + ttl / 2);
        self.published = addrs.clone();
        let identity = self.identity.clone();
        let username = self.shared.username.clone();
        let phonebooks = self.shared.directory.phonebooks().to_vec();
        let events = self.shared.events.clone();
        let tx = self.internal_tx.clone();
        let started = self.started_ms;
        let olm_keys = self.olm_keys();
        let takes_keys = self.takes_keys.clone();
        tokio::spawn(async move {
            let mut shortest = ttl;
            for phonebook in phonebooks {
                // A phonebook older than record version 2 refuses keys: it gets version 1.
                let url = phonebook.url().to_owned();
                let takes = |say: Option<bool>| {
                    let mut map = takes_keys.lock().unwrap_or_else(|e| e.into_inner());
                    // Without an answer (/info failed): what it said last time.
                    if let Some(takes) = say {
                        map.insert(url.clone(), takes);
                    }
                    map.get(&url).copied().unwrap_or(false)
                };
                let (ttl, keys) = match phonebook.info().await {
                    Ok(info) => (
                        ttl.min(Duration::from_secs(info.presence_ttl_secs.max(2))),
                        takes(Some(info.olm_keys)).then_some(&olm_keys[..]),
                    ),
                    Err(_) => (ttl, takes(None).then_some(&olm_keys[..])),
                };
                shortest = shortest.min(ttl);
                // A record of our name, signed by our key, that this process did not sign since
                // it started: another copy of this identity runs (a copied profile).
                if let Ok(Some(found)) = phonebook.lookup(&username).await
                    && let Some(record) = found.record
                    && record.peer_id == identity.peer_id()
                    && record.seq > started
                    && record.seq != phonebook.last_signed()
                    && record.addrs != addrs
                {
                    tracing::warn!(phonebook = phonebook.url(), addrs = ?record.addrs, "another tincan with our identity publishes our name");
                    let _ = events.send(Event::Duplicate {
                        phonebook: phonebook.url().to_owned(),
                        addrs: record.addrs,
                    });
                }
                let mut published = phonebook
                    .register_with_keys(&identity, &username, &addrs, keys, ttl, now())
                    .await;
                // An instance older than its /info (a rolling upgrade): version 1 then.
                if keys.is_some()
                    && matches!(&published, Err(tincan_phonebook_client::ClientError::Refused { code, .. }) if code == "malformed-json")
                {
                    takes(Some(false));
                    published = phonebook.register(&identity, &username, &addrs, ttl, now()).await;
                }
                let event = match published {
                    Ok(_) => Event::Published {
                        phonebook: phonebook.url().to_owned(),
                        addrs: addrs.clone(),
                    },
                    Err(e) => Event::PhonebookError {
                        phonebook: phonebook.url().to_owned(),
                        error: e.to_string(),
                    },
                };
                if let Event::PhonebookError { error, .. } = &event {
                    tracing::warn!(
                        phonebook = phonebook.url(),
                        error,
                        "publishing our record failed"
                    );
                }
                let _ = events.send(event);
            }
            let _ = tx.send(Internal::Published { ttl: shortest }).await;
        });
    }

    async fn unpublish(&mut self) {
        let identity = self.identity.clone();
        let username = self.shared.username.clone();
        for phonebook in self.shared.directory.phonebooks().to_vec() {
            let delete = phonebook.delete(&identity, &username, false, now());
            match tokio::time::timeout(Duration::from_secs(3), delete).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(phonebook = phonebook.url(), error = %e, "taking our record down failed")
                }
                Err(_) => {
                    tracing::warn!(phonebook = phonebook.url(), "taking our record down timed out")
                }
            }
        }
    }

    // ---- events --------------------------------------------------------------------------

    fn on_swarm(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Chat(event)) => self.on_chat(event),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                self.on_identified(peer_id, info.listen_addrs);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Relay(event)) => self.on_relay(event),
            SwarmEvent::Behaviour(BehaviourEvent::Dcutr(dcutr::Event {
                remote_peer_id,
                result,
            })) => {
                match result {
                    Ok(id) => {
                        tracing::info!(peer = %remote_peer_id, "hole punch succeeded: direct connection");
                        let changed = self.paths.punched(remote_peer_id, id);
                        self.path_changed(remote_peer_id, changed.map(Some));
                        self.drop_relayed(remote_peer_id);
                    }
                    // Not a delivery failure: messages keep flowing over the relayed connection.
                    Err(error) => {
                        tracing::info!(peer = %remote_peer_id, %error, "hole punch failed: staying on the relay")
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Autonat(autonat::Event::StatusChanged {
                new,
                ..
            })) => {
                tracing::info!(status = ?new, "reachability changed");
                self.nat_changed();
            }
            SwarmEvent::Behaviour(BehaviourEvent::Autonat(autonat::Event::OutboundProbe(_))) => {
                // Confidence may have changed without the status.
                self.nat_changed();
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => {
                self.shared.connected.lock().unwrap_or_else(|e| e.into_inner()).insert(peer_id);
                let changed = self.paths.established(peer_id, connection_id, endpoint.is_relayed());
                self.path_changed(peer_id, changed.map(Some));
                if !endpoint.is_relayed() {
                    self.drop_relayed(peer_id);
                }
                if num_established.get() == 1 {
                    if let Some(known) = self.core.known(&peer_id) {
                        let username = known.username.clone();
                        let _ = self.shared.events.send(Event::Online { username, peer_id });
                    }
                    self.core.connected(peer_id, Instant::now());
                    self.drive();
                }
            }
            SwarmEvent::OutgoingConnectionError { peer_id: Some(peer), error, .. } => {
                tracing::debug!(%peer, %error, "dialling failed");
                if self.reservation.relay.as_ref().is_some_and(|(relay, _)| *relay == peer) {
                    self.relay_unreachable(error.to_string());
                }
                self.core.dial_failed(peer, Instant::now());
                self.drive();
            }
            SwarmEvent::ConnectionClosed { peer_id, connection_id, num_established, .. } => {
                if let Some(changed) = self.paths.closed(peer_id, connection_id) {
                    self.path_changed(peer_id, Some(changed));
                }
                if num_established != 0 {
                    return;
                }
                self.shared.connected.lock().unwrap_or_else(|e| e.into_inner()).remove(&peer_id);
                self.core.disconnected(peer_id);
                // The guard keeps the peer's strikes and tokens: reconnecting must not reset
                // them (`Guard::prune` forgets them once they are as good as new).
                if let Some(known) = self.core.known(&peer_id) {
                    let _ = self
                        .shared
                        .events
                        .send(Event::Offline { username: known.username.clone(), peer_id });
                }
            }
            SwarmEvent::NewListenAddr { address, .. } => {
                let mut addrs = self.shared.listen_addrs.lock().unwrap_or_else(|e| e.into_inner());
                if !addrs.contains(&address) {
                    addrs.push(address);
                }
                drop(addrs);
                self.next_register = Some(Instant::now());
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.shared
                    .listen_addrs
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .retain(|a| *a != address);
                self.next_register = Some(Instant::now());
            }
            SwarmEvent::ListenerClosed { listener_id, addresses, reason } => {
                self.shared
                    .listen_addrs
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .retain(|a| !addresses.contains(a));
                if !addresses.is_empty() {
                    self.next_register = Some(Instant::now());
                }
                if self.reservation.listener == Some(listener_id) {
                    let error = reason.err().map(|e| e.to_string());
                    tracing::info!(?error, "relay reservation ended");
                    let failed = error.is_some();
                    self.reservation.closed(error, Instant::now(), rand::random::<f64>());
                    let old = self.reservation.relay.clone();
                    match if failed { self.reservation.fail_over() } else { None } {
                        Some(new) => self.switch_relay(old, new),
                        None => self.nat_changed(),
                    }
                }
            }
            _ => {}
        }
    }

    // ---- NAT -----------------------------------------------------------------------------

    fn on_relay(&mut self, event: relay::client::Event) {
        match event {
            relay::client::Event::ReservationReqAccepted { relay_peer_id, renewal, .. } => {
                if !renewal {
                    tracing::info!(relay = %relay_peer_id, "relay reservation accepted");
                }
                self.reservation.accepted();
                self.nat_changed();
            }
            relay::client::Event::OutboundCircuitEstablished { relay_peer_id, .. } => {
                tracing::debug!(relay = %relay_peer_id, "relayed connection out");
            }
            relay::client::Event::InboundCircuitEstablished { src_peer_id, .. } => {
                tracing::debug!(peer = %src_peer_id, "relayed connection in");
            }
        }
    }

    /// Reports a contact's new best path.
    fn path_changed(&mut self, peer: PeerId, changed: Option<Option<crate::Path>>) {
        let Some(path) = changed else { return };
        {
            let mut paths = self.shared.paths.lock().unwrap_or_else(|e| e.into_inner());
            match path {
                Some(path) => paths.insert(peer, path),
                None => paths.remove(&peer),
            };
        }
        if let Some(known) = self.core.known(&peer) {
            let _ = self.shared.events.send(Event::Path {
                username: known.username.clone(),
                peer_id: peer,
                path,
            });
        }
    }

    /// Closes relayed connections to `peer` once a direct one exists, so that requests (spread
    /// over a peer's connections) stop going through the relay. Requests in flight on them are
    /// sent again at once over the direct one (see `on_failure`).
    fn drop_relayed(&mut self, peer: PeerId) {
        for id in self.paths.redundant(&peer) {
            self.swarm.close_connection(id);
        }
    }

    /// Refreshes the shared NAT report and tells listeners if it changed.
    fn nat_changed(&mut self) {
        let autonat = &self.swarm.behaviour().autonat;
        let reachability = match autonat.nat_status() {
            autonat::NatStatus::Public(addr) => Reachability::Public(addr),
            autonat::NatStatus::Private => Reachability::Private,
            autonat::NatStatus::Unknown => Reachability::Unknown,
        };
        let report = NatReport {
            reachability,
            confidence: autonat.confidence(),
            relay: self.reservation.relay.as_ref().map(|(peer_id, addr)| RelayState {
                peer_id: *peer_id,
                addr: addr.clone(),
                reserved: self.reservation.reserved,
                last_error: self.reservation.last_error.clone(),
            }),
        };
        let mut shared = self.shared.nat.lock().unwrap_or_else(|e| e.into_inner());
        if *shared != report {
            *shared = report.clone();
            drop(shared);
            let _ = self.shared.events.send(Event::Nat(report));
        }
    }

    /// Whether we want a reservation now.
    fn want_reservation(&self) -> bool {
        match self.config.nat.relay {
            RelayPolicy::Never => false,
            RelayPolicy::Always => true,
            RelayPolicy::Auto => !self.swarm.behaviour().autonat.nat_status().is_public(),
        }
    }

    /// Finds the relay, reserves at it or gives the reservation up, as due.
    fn tend_reservation(&mut self, now: Instant) {
        if self.config.nat.relay == RelayPolicy::Never || self.shared.directory.is_empty() {
            return;
        }
        // Ask again while none is known, and while reserving fails: the operator may have
        // moved the relay or given it a new key.
        let stuck = self.reservation.relay.is_none()
            || (!self.reservation.reserved && self.reservation.last_error.is_some());
        if stuck && !self.reservation.fetching && now >= self.reservation.next_fetch {
            self.fetch_relay();
        }
        if self.reservation.relay.is_none() {
            return;
        }
        let want = self.want_reservation();
        match self.reservation.listener {
            Some(listener) if !want => {
                tracing::info!("publicly reachable: giving the relay reservation up");
                self.swarm.remove_listener(listener);
                self.reservation.listener = None;
                self.reservation.reserved = false;
                self.nat_changed();
            }
            None if want && now >= self.reservation.next_try => {
                let Some(addr) = self.reservation.circuit_addr() else { return };
                match self.swarm.listen_on(addr.clone()) {
                    Ok(listener) => self.reservation.listener = Some(listener),
                    Err(e) => {
                        let error = format!("cannot listen on {addr}: {e}");
                        self.reservation.closed(Some(error), now, rand::random::<f64>());
                        self.nat_changed();
                    }
                }
            }
            _ => {}
        }
    }

    fn fetch_relay(&mut self) {
        self.reservation.fetching = true;
        let phonebooks = self.shared.directory.phonebooks().to_vec();
        let tx = self.internal_tx.clone();
        tokio::spawn(async move {
            // Every relay of every phonebook that answers, in order, each once; an error only
            // if none answered.
            let mut relays = Vec::new();
            let mut error = Some(RelayError::NoPhonebook);
            for phonebook in &phonebooks {
                match phonebook.relays().await {
                    Ok(infos) => {
                        error = None;
                        for info in &infos {
                            match relay_addr(info) {
                                Ok(Some(relay))
                                    if relays.len() < tincan_phonebook_client::MAX_RELAYS
                                        && !relays.iter().any(|(p, _)| *p == relay.0) =>
                                {
                                    relays.push(relay)
                                }
                                Ok(_) => {}
                                Err(e) => tracing::debug!(error = %e, "skipping a relay"),
                            }
                        }
                    }
                    Err(e) if relays.is_empty() => error = Some(RelayError::Phonebook(e)),
                    Err(_) => {}
                }
            }
            let result = match error {
                Some(e) if relays.is_empty() => Err(e),
                _ => Ok(relays),
            };
            let _ = tx.send(Internal::Relay(result)).await;
        });
    }

    fn on_relay_found(&mut self, result: Result<Vec<(PeerId, Multiaddr)>, RelayError>) {
        self.reservation.fetching = false;
        self.reservation.next_fetch = Instant::now() + nat::FETCH_INTERVAL;
        match result {
            Ok(relays) if relays.is_empty() => tracing::debug!("no phonebook runs a relay"),
            Ok(relays) => {
                // Our own number among the relays, so that peers spread over them.
                let start =
                    self.swarm.local_peer_id().to_bytes().last().copied().unwrap_or(0) as usize;
                let old = self.reservation.relay.clone();
                if let Some(new) = self.reservation.announced(relays, start) {
                    self.switch_relay(old, new);
                }
            }
            Err(e) => tracing::debug!(error = %e, "asking for the relay failed"),
        }
    }

    /// Dialling the relay we reserve at failed: its reservation, if we were asking for one,
    /// has failed too (the listener would wait on), and we move to another relay if there is
    /// one.
    fn relay_unreachable(&mut self, error: String) {
        if self.reservation.reserved {
            return;
        }
        if let Some(listener) = self.reservation.listener.take() {
            self.swarm.remove_listener(listener);
        }
        tracing::info!(%error, "the relay is unreachable");
        self.reservation.closed(Some(error), Instant::now(), rand::random::<f64>());
        let old = self.reservation.relay.clone();
        match self.reservation.fail_over() {
            Some(new) => self.switch_relay(old, new),
            None => self.nat_changed(),
        }
    }

    /// Leaves the relay `old` (its reservation and its AutoNAT server) for `new`.
    fn switch_relay(&mut self, old: Option<(PeerId, Multiaddr)>, new: (PeerId, Multiaddr)) {
        let (peer, addr) = new;
        tracing::info!(relay = %peer, %addr, "reserving at a relay of the phonebooks");
        if let Some((old, _)) = old {
            self.swarm.behaviour_mut().autonat.remove_server(&old);
        }
        if let Some(listener) = self.reservation.listener.take() {
            self.swarm.remove_listener(listener);
        }
        self.reservation.reserved = false;
        self.swarm.behaviour_mut().autonat.add_server(peer, Some(addr));
        self.nat_changed();
        self.tend_reservation(Instant::now());
    }

    fn on_chat(&mut self, event: request_response::Event<Inbound, Response>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request { request, channel, .. } => {
                    self.on_request(peer, request, channel)
                }
                request_response::Message::Response { request_id, response } => {
                    self.on_answer(request_id, response)
                }
            },
            request_response::Event::OutboundFailure { request_id, error, .. } => {
                self.on_failure(request_id, &error)
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "inbound request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    /// A peer told us where it listens. For contacts, those addresses are worth keeping: the
    /// next dial is authenticated by the PeerId anyway.
    fn on_identified(&mut self, peer: PeerId, listen: Vec<Multiaddr>) {
        self.core.identified(peer, listen.into_iter().filter(dialable).collect());
        self.drive();
    }

    fn on_internal(&mut self, msg: Internal) {
        let now = Instant::now();
        match msg {
            Internal::Loaded { conv, loaded } => self.core.loaded(conv, loaded, now),
            Internal::LoadFailed { conv, error } => {
                tracing::warn!(%conv, %error, "loading the outbox failed");
                self.core.load_failed(conv);
            }
            Internal::Respond { peer, channel, response } => {
                self.guard.done(peer);
                let _ = self.swarm.behaviour_mut().chat.send_response(channel, response);
            }
            Internal::Looked { conv, result } => {
                if let Ok(Some(Found { record: Some(record), .. })) = &result
                    && let Some(keys) = record.olm_keys.clone()
                {
                    self.keep_peer_keys(conv, keys);
                }
                let found = match result {
                    Ok(found) => found.map(|f| Sighting {
                        peer_id: f.peer_id,
                        record: f.record.map(|r| (r.seq, r.addrs)),
                    }),
                    Err(e) => {
                        tracing::debug!(%conv, error = %e, "lookup failed");
                        None
                    }
                };
                self.core.looked(conv, found, now);
            }
            Internal::Settled { conv } => self.core.committed(conv, now),
            Internal::Contact { peer, known } => self.core.learn(peer, known),
            Internal::Relay(result) => self.on_relay_found(result),
            Internal::Published { ttl } => {
                // A phonebook that keeps records shorter than we asked: refresh in time for it.
                let at = now + ttl / 2;
                if self.next_register.is_some_and(|t| t > at) {
                    self.next_register = Some(at);
                }
            }
            Internal::Rescanned(convs) => self.core.rescanned(convs),
            Internal::Rotated => self.next_register = Some(now),
            Internal::Prepared { batch, result } => self.on_prepared(batch, result),
            Internal::Unsent { token } => {
                self.core.failed(token, Failure::Other, now, rand::random::<f64>())
            }
        }
        self.drive();
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        // Retries due; while messages wait for a peer we cannot reach, the phonebook is asked
        // again now and then.
        self.core.tick(now, self.config.lookup_interval);
        self.drive();
        self.tend_reservation(now);
        if self.next_register.is_some_and(|t| t <= now) {
            self.publish();
        }
        if now >= self.next_rotation {
            self.next_rotation = now + (self.config.olm_rotation / 4).clamp(TICK, ROTATION_CHECK);
            self.rotate();
        }
        while let Some(pos) = self.bans.iter().position(|(until, _)| *until <= now) {
            let (_, peer) = self.bans.swap_remove(pos);
            self.swarm.behaviour_mut().bans.unblock_peer(peer);
        }
        if now >= self.next_rescan {
            self.next_rescan = now + RESCAN;
            let store = self.shared.store.clone();
            let tx = self.internal_tx.clone();
            tokio::spawn(async move {
                if let Ok(list) = store.outbox_conversations().await {
                    let _ = tx
                        .send(Internal::Rescanned(list.into_iter().map(|(c, _)| c).collect()))
                        .await;
                }
            });
        }
        self.guard.prune(now);
    }
}

/// Stores an inbound sealed batch and builds the answer (`specs/delivery.md` §2,
/// `specs/sealed.md` §7.1). Returns the response, and what to remember of the sender.
async fn receive(
    shared: &Arc<Shared>,
    peer: PeerId,
    envelopes: Vec<Envelope>,
) -> (Response, Option<Known>) {
    let Some(key) = PublicKey::from_peer_id(&peer) else {
        // Every tincan PeerId embeds an ed25519 key; this one cannot have sealed anything.
        return (Response::Refused(Refusal::BadSeal), None);
    };
    let ids: Vec<_> = envelopes.iter().map(|e| e.id).collect();
    let limits = shared.request_limits;
    let receipt = match shared.store.receive_sealed(key, envelopes, now(), limits).await {
        Ok(receipt) => receipt,
        Err(e) => return (Response::Refused(refusal_for_store(peer, &e)), None),
    };
    let SealedReceipt { contact, new_request, new_session, outcomes, .. } = receipt;
    let known = contact.map(|c| Known {
        conv: c.conversation,
        username: c.username,
        request: c.kind == ContactKind::Request,
        blocked: c.blocked,
    });
    let mut keys_refused = false;
    let mut acks = Vec::with_capacity(ids.len());
    for (id, outcome) in ids.into_iter().zip(outcomes) {
        let outcome = match outcome {
            Received::Stored(entry) => {
                if let Some(known) = &known {
                    let _ = shared.events.send(Event::Received {
                        conversation: known.conv,
                        username: known.username.clone(),
                        entry: *entry,
                        request: known.request,
                    });
                }
                Outcome::Stored
            }
            Received::Duplicate => Outcome::Stored,
            Received::Blocked => Outcome::Refused(Refusal::Blocked),
            Received::OverQuota => Outcome::Refused(Refusal::Quota),
            Received::Unopened(error) => {
                tracing::info!(%peer, %id, %error, "a sealed message did not open");
                let refusal = refusal_for(&error);
                keys_refused |= refusal == Refusal::KeysRefused;
                Outcome::Refused(refusal)
            }
        };
        acks.push(Ack { id, outcome });
    }
    if let Some(known) = &known {
        let conversation = known.conv;
        let username = known.username.clone();
        let change = match (keys_refused, new_session && !new_request) {
            (true, _) => Some(SealingChange::KeysRefused),
            (false, true) => Some(SealingChange::NewSession),
            (false, false) => None,
        };
        if let Some(change) = change {
            let _ = shared.events.send(Event::Sealing { conversation, username, change });
        }
    }
    if new_request && let Some(known) = &known {
        let conv = known.conv;
        let _ = shared.events.send(Event::Request {
            conversation: conv,
            peer_id: peer,
            claimed: known.username.clone(),
            claim: Claim::Unchecked,
        });
        let shared = shared.clone();
        let claimed = known.username.clone();
        tokio::spawn(async move { check_claim(&shared, conv, peer, claimed).await });
    }
    (Response::Acks(acks), known)
}

/// The refusal of a whole batch the store could not take from `peer`. Nothing of it was
/// stored, and the sender keeps it to send again.
fn refusal_for_store(peer: PeerId, error: &StoreError) -> Refusal {
    match error {
        // As many strangers wait as the user allows: this one is told to come back later,
        // and nothing of it is stored or remembered.
        StoreError::TooManyRequests => {
            tracing::info!(%peer, "refusing a new message request: too many wait already");
            Refusal::Quota
        }
        error => {
            tracing::warn!(%peer, %error, "storing messages failed");
            Refusal::Unavailable
        }
    }
}

/// The refusal code a sealed message that did not open gets (`specs/wire.md` §5.1).
fn refusal_for(error: &OpenError) -> Refusal {
    match error {
        OpenError::WrongRecipient => Refusal::WrongRecipient,
        // This side lacks the state that opens it: the sender starts a new session.
        OpenError::NoSession
        | OpenError::Replayed
        | OpenError::UnknownKey
        | OpenError::TooFarAhead => Refusal::NoSession,
        OpenError::KeysNotSigned(_) | OpenError::IdentityKeyMismatch => Refusal::KeysRefused,
        _ => Refusal::BadSeal,
    }
}

/// Stores an inbound plaintext batch and builds the answer (`specs/delivery.md` §2): the path
/// before sealing, kept for [`Config::plaintext_for_benchmarks`] only. `known` is the
/// engine's memory of the sender, if any. Returns the response, and what to remember of the
/// sender if it is new.
async fn receive_plaintext(
    shared: &Arc<Shared>,
    me: &PeerIdBytes,
    peer: PeerId,
    known: Option<Known>,
    batch: Batch,
) -> (Response, Option<Known>) {
    let store = &shared.store;
    let limits = shared.request_limits;
    let messages = batch.into_messages();
    let (known, new_request) = match known {
        Some(known) => (known, false),
        None => match sender(store, peer, &messages[0].from, limits.max_requests).await {
            Ok(found) => found,
            Err(e) => return (Response::Refused(refusal_for_store(peer, &e)), None),
        },
    };
    let conv = known.conv;
    let mut acks: Vec<Ack> = Vec::with_capacity(messages.len());
    let mut incoming = Vec::with_capacity(messages.len());
    let mut slots = Vec::with_capacity(messages.len());
    for (i, m) in messages.into_iter().enumerate() {
        acks.push(Ack { id: m.id, outcome: Outcome::Stored });
        if m.to != *me {
            acks[i].outcome = Outcome::Refused(Refusal::WrongRecipient);
            continue;
        }
        slots.push(i);
        incoming.push(Incoming {
            id: m.id,
            seq: m.seq,
            sent_at: m.sent_at,
            from: m.from,
            text: m.text,
        });
    }
    let outcomes = match store.receive(conv, incoming, now(), limits).await {
        Ok(outcomes) => outcomes,
        Err(e) => return (Response::Refused(refusal_for_store(peer, &e)), None),
    };
    for (slot, outcome) in slots.into_iter().zip(outcomes) {
        match outcome {
            Received::Stored(entry) => {
                let _ = shared.events.send(Event::Received {
                    conversation: conv,
                    username: known.username.clone(),
                    entry: *entry,
                    request: known.request,
                });
            }
            Received::Duplicate => {}
            Received::Blocked => acks[slot].outcome = Outcome::Refused(Refusal::Blocked),
            Received::OverQuota => acks[slot].outcome = Outcome::Refused(Refusal::Quota),
            // Plaintext is never opened.
            Received::Unopened(_) => acks[slot].outcome = Outcome::Refused(Refusal::BadSeal),
        }
    }
    if new_request {
        let _ = shared.events.send(Event::Request {
            conversation: conv,
            peer_id: peer,
            claimed: known.username.clone(),
            claim: Claim::Unchecked,
        });
        let shared = shared.clone();
        let claimed = known.username.clone();
        tokio::spawn(async move { check_claim(&shared, conv, peer, claimed).await });
    }
    (Response::Acks(acks), Some(known))
}

/// The sender's contact, or a new message request if it is unknown (claiming `claimed`).
async fn sender(
    store: &tincan_store::Store,
    peer: PeerId,
    claimed: &Username,
    max_requests: usize,
) -> Result<(Known, bool), StoreError> {
    let peer_b = peer_bytes(&peer);
    let (contact, new) = match store.contact_by_peer(&peer_b).await? {
        Some(contact) => (contact, false),
        None => (store.add_request(peer_b, claimed.clone(), now(), max_requests).await?, true),
    };
    let known = Known {
        conv: contact.conversation,
        username: contact.username,
        request: contact.kind == ContactKind::Request,
        blocked: contact.blocked,
    };
    Ok((known, new))
}
/// Asks the phonebooks whether `claimed` belongs to `peer`, records the answer with the
/// request and reports it. Answers are cached per name for a while, and few checks run at once:
/// strangers must not turn into a storm of lookups.
async fn check_claim(shared: &Shared, conv: ConversationId, peer: PeerId, claimed: Username) {
    let Ok(_permit) = shared.claim_checks.acquire().await else { return };
    let owner = match shared.claim_cache.get(&claimed, Instant::now()) {
        Some(owner) => owner,
        None => {
            // No phonebook could answer: the claim stays unchecked.
            let owner = match shared.directory.lookup(&claimed).await {
                Ok(found) => found.map(|f| f.peer_id),
                Err(e) => {
                    tracing::debug!(%claimed, error = %e, "checking a claimed name failed");
                    return;
                }
            };
            shared.claim_cache.put(claimed.clone(), owner, Instant::now());
            owner
        }
    };
    let claim = match owner {
        Some(owner) if owner == peer => Claim::Confirmed,
        Some(_) => Claim::OtherKey,
        None => Claim::Unregistered,
    };
    match shared.store.set_claim(conv, claim).await {
        Ok(_) => {
            let _ = shared.events.send(Event::Request {
                conversation: conv,
                peer_id: peer,
                claimed,
                claim,
            });
        }
        Err(e) => tracing::debug!(%conv, error = %e, "recording a claim check failed"),
    }
}

/// The relay's PeerId and the address to reserve at: the first of its addresses that parses
/// and names it.
fn relay_addr(
    info: &tincan_phonebook_client::RelayInfo,
) -> Result<Option<(PeerId, Multiaddr)>, RelayError> {
    let peer: PeerId = info.peer_id.parse().map_err(|_| RelayError::InvalidPeerId)?;
    for addr in &info.addrs {
        let Ok(addr) = addr.parse::<Multiaddr>() else { continue };
        if nat::is_relayed(&addr) || !dialable(&addr) {
            continue;
        }
        match addr.iter().last() {
            Some(Protocol::P2p(p)) if p == peer => return Ok(Some((peer, addr))),
            Some(Protocol::P2p(_)) => continue,
            _ => return Ok(Some((peer, addr.with(Protocol::P2p(peer))))),
        }
    }
    Err(RelayError::NoUsableAddress)
}

/// Why the phonebooks' relay is not known.
#[derive(Debug, thiserror::Error)]
enum RelayError {
    /// No phonebook is configured.
    #[error("no phonebook answered")]
    NoPhonebook,
    /// The last phonebook asked failed.
    #[error(transparent)]
    Phonebook(tincan_phonebook_client::ClientError),
    /// The relay's PeerId does not parse.
    #[error("the phonebook announces a relay with an invalid PeerId")]
    InvalidPeerId,
    /// None of the relay's addresses can be dialled.
    #[error("the relay announces no usable address")]
    NoUsableAddress,
}

/// An address others can dial: a specified IP and a port.
fn dialable(addr: &Multiaddr) -> bool {
    addr.iter().next().is_some_and(|p| match p {
        Protocol::Ip4(ip) => !ip.is_unspecified(),
        Protocol::Ip6(ip) => !ip.is_unspecified(),
        Protocol::Dns(_) | Protocol::Dns4(_) | Protocol::Dns6(_) => true,
        _ => false,
    })
}

/// The listen addresses worth publishing, best first: public, then private, then loopback;
/// at most 8.
fn publishable(listen: &[Multiaddr]) -> Vec<Multiaddr> {
    let rank = |a: &Multiaddr| match a.iter().next() {
        Some(Protocol::Ip4(ip)) if ip.is_loopback() => 2,
        Some(Protocol::Ip4(ip)) if ip.is_private() || ip.is_link_local() => 1,
        Some(Protocol::Ip6(ip)) if ip.is_loopback() => 2,
        Some(Protocol::Ip6(ip)) if ip.is_unicast_link_local() => 1,
        _ => 0,
    };
    let mut addrs: Vec<Multiaddr> = listen.iter().filter(|a| dialable(a)).cloned().collect();
    addrs.sort_by_key(rank);
    addrs.dedup();
    addrs.truncate(tincan_phonebook_client::MAX_ADDRS);
    addrs
}

fn now_ms() -> u64 {
    now().0
}

fn now_millis() -> tincan_store::UnixMillis {
    now()
}

/// What the core needs of a conversation read from the store; `None` if its PeerId does not
/// parse.
fn loaded_of(
    contact: tincan_store::Contact,
    entries: Vec<tincan_store::OutboxEntry>,
) -> Option<Loaded> {
    let parse = |p: &PeerIdBytes| PeerId::from_bytes(p.as_bytes()).ok();
    let peer = parse(&contact.peer_id)?;
    Some(Loaded {
        peer,
        known: Known {
            conv: contact.conversation,
            username: contact.username,
            request: contact.kind == ContactKind::Request,
            blocked: contact.blocked,
        },
        addrs: contact.addrs.iter().filter_map(|a| a.parse().ok()).collect(),
        pending: contact.pending_peer_id.as_ref().and_then(parse),
        rejected: contact.rejected_keys.iter().filter_map(parse).collect(),
        more: entries.len() == LOAD,
        last_seq: contact.last_sent_seq,
        entries: entries
            .into_iter()
            .map(|e| Queued {
                seq: e.seq,
                id: e.id,
                sent_at: e.sent_at,
                text: e.text,
                attempts: e.attempts,
                envelope: e.envelope,
            })
            .collect(),
    })
}

/// Why listening failed, as an I/O error.
fn listen_error(e: libp2p::TransportError<std::io::Error>) -> std::io::Error {
    match e {
        libp2p::TransportError::MultiaddrNotSupported(_) => {
            std::io::Error::new(std::io::ErrorKind::Unsupported, "no transport for this address")
        }
        libp2p::TransportError::Other(e) => e,
    }
}
