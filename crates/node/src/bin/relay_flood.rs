//! `tincan-relay-flood`: a hostile peer for the relay-limit tests. It reserves a slot at a relay
//! with one throw-away identity (the sink), then opens `--count` relayed connections to it from
//! another (the source), as fast as the relay answers, and keeps them all open. It prints one
//! JSON line: how many the relay accepted, how many it refused for its limits, and other
//! failures. People have no use for it; the node's tests run it.
//!
//! Usage: `tincan-relay-flood --relay /ip4/…/tcp/…/p2p/<relay> --count N`.

use std::time::Duration;

use futures::StreamExt;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, identify, noise, relay, tcp, yamux};
use serde_json::json;

#[derive(NetworkBehaviour)]
struct Behaviour {
    relay: relay::client::Behaviour,
    identify: identify::Behaviour,
}

fn swarm() -> Result<Swarm<Behaviour>, String> {
    Ok(libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
        .map_err(|e| e.to_string())?
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(|e| e.to_string())?
        .with_behaviour(|key, relay| Behaviour {
            relay,
            identify: identify::Behaviour::new(identify::Config::new(
                "/tincan-flood/1".into(),
                key.public(),
            )),
        })
        .map_err(|e| e.to_string())?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
        .build())
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
    let result = match runtime {
        Ok(runtime) => runtime.block_on(run()),
        Err(e) => Err(e.to_string()),
    };
    match result {
        Ok(report) => println!("{report}"),
        Err(e) => {
            eprintln!("tincan-relay-flood: {e}");
            std::process::exit(1);
        }
    }
}

async fn run() -> Result<serde_json::Value, String> {
    let mut relay = None;
    let mut count = 0usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().ok_or(format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--relay" => relay = Some(value.parse::<Multiaddr>().map_err(|e| e.to_string())?),
            "--count" => count = value.parse().map_err(|e| format!("--count: {e}"))?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let relay = relay.ok_or("--relay is required")?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);

    // The sink reserves at the relay and accepts every relayed connection.
    let mut sink = swarm()?;
    sink.listen_on(relay.clone().with(Protocol::P2pCircuit)).map_err(|e| e.to_string())?;
    loop {
        match tokio::time::timeout_at(deadline, sink.select_next_some()).await {
            Ok(SwarmEvent::Behaviour(BehaviourEvent::Relay(
                relay::client::Event::ReservationReqAccepted { .. },
            ))) => break,
            Ok(SwarmEvent::ListenerClosed { reason, .. }) => {
                return Err(format!("the sink's reservation failed: {reason:?}"));
            }
            Ok(_) => {}
            Err(_) => return Err("no reservation within 60 s".into()),
        }
    }
    let target: PeerId = *sink.local_peer_id();
    let circuit = relay.clone().with(Protocol::P2pCircuit).with(Protocol::P2p(target));

    // The source opens `count` relayed connections to the sink, one after the other.
    let mut source = swarm()?;
    let (mut accepted, mut denied, mut failed) = (0usize, 0usize, 0usize);
    let mut errors = Vec::new();
    for _ in 0..count {
        let opts = DialOpts::peer_id(target)
            .addresses(vec![circuit.clone()])
            .condition(PeerCondition::Always)
            .build();
        let id = opts.connection_id();
        source.dial(opts).map_err(|e| e.to_string())?;
        loop {
            let event = tokio::select! {
                event = source.select_next_some() => event,
                _ = sink.select_next_some() => continue,
                _ = tokio::time::sleep_until(deadline) => return Err("the relay stopped answering".into()),
            };
            match event {
                SwarmEvent::ConnectionEstablished { connection_id, .. } if connection_id == id => {
                    accepted += 1;
                    break;
                }
                SwarmEvent::OutgoingConnectionError { connection_id, error, .. }
                    if connection_id == id =>
                {
                    let chain = error_chain(&error);
                    if chain.contains("resource limit exceeded") {
                        denied += 1;
                    } else {
                        failed += 1;
                        if errors.len() < 5 {
                            errors.push(chain);
                        }
                    }
                    break;
                }
                _ => {}
            }
        }
    }
    // Let the relay see that the accepted ones are still open.
    let open = source.network_info().connection_counters().num_established();
    Ok(json!({
        "accepted": accepted, "denied": denied, "failed": failed, "open": open,
        "errors": errors,
    }))
}

/// An error and its sources, lowercased, for classification.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text.to_lowercase()
}
