//! A hand-written malicious peer, over a real socket, against a real node process: garbage
//! frames, oversized frames and floods get typed refusals, then a ban; the node's memory stays
//! bounded and it keeps serving honest peers.

#![allow(clippy::unwrap_used, clippy::print_stdout)] // Tests fail loudly on purpose.

mod common;

use std::io;
use std::time::{Duration, Instant};

use common::*;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm, noise, tcp, yamux};
use serde_json::json;
use tincan_wire::{Refusal, Response};

/// A codec that writes whatever bytes it is given, as a malicious peer would.
#[derive(Clone, Default)]
struct Raw;

impl request_response::Codec for Raw {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        _: &mut T,
    ) -> io::Result<Vec<u8>> {
        Err(io::Error::other("the attacker serves nothing"))
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        io.take(1 << 16).read_to_end(&mut out).await?;
        Ok(out)
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()> {
        io.write_all(&req).await?;
        io.close().await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        _: &mut T,
        _: Vec<u8>,
    ) -> io::Result<()> {
        Ok(())
    }
}

fn attacker() -> Swarm<request_response::Behaviour<Raw>> {
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
        .unwrap()
        .with_behaviour(|_| {
            request_response::Behaviour::with_codec(
                Raw,
                [(StreamProtocol::new("/tincan/chat/1"), ProtocolSupport::Outbound)],
                request_response::Config::default().with_request_timeout(Duration::from_secs(10)),
            )
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build()
}

/// Sends `frames`, and returns the responses (decoded) and whether the connection was closed.
async fn attack(
    swarm: &mut Swarm<request_response::Behaviour<Raw>>,
    target: PeerId,
    addr: &Multiaddr,
    frames: Vec<Vec<u8>>,
) -> (Vec<Result<Response, String>>, bool) {
    let n = frames.len();
    let mut ids = std::collections::HashSet::new();
    for frame in frames {
        ids.insert(swarm.behaviour_mut().send_request_with_addresses(
            &target,
            frame,
            vec![addr.clone()],
        ));
    }
    let mut answers = Vec::new();
    let mut closed = false;
    let deadline = Instant::now() + Duration::from_secs(30);
    while answers.len() < n && Instant::now() < deadline {
        let event = tokio::time::timeout(Duration::from_secs(5), swarm.select_next_some()).await;
        match event {
            Ok(SwarmEvent::Behaviour(request_response::Event::Message {
                message: request_response::Message::Response { response, request_id },
                ..
            })) if ids.contains(&request_id) => {
                let payload = response.get(4..).unwrap_or_default();
                answers.push(Response::decode(payload).map_err(|e| e.to_string()));
            }
            Ok(SwarmEvent::Behaviour(request_response::Event::OutboundFailure {
                error,
                request_id,
                ..
            })) if ids.contains(&request_id) => answers.push(Err(error.to_string())),
            Ok(SwarmEvent::ConnectionClosed { .. }) => closed = true,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    (answers, closed)
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(payload);
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_oversized_frames_and_floods_are_refused_then_banned() {
    let root = tempfile::tempdir().unwrap();
    let mut bob = Peer::start(&root.path().join("bob"), "bob", &[]);
    let target: PeerId = bob.peer_id.parse().unwrap();
    let addr: Multiaddr = bob.addrs[0].parse().unwrap();
    let rss_before = common::rss_kib(bob.pid());
    let mut swarm = attacker();

    // One of each: a typed refusal for every kind of bad frame.
    let (answers, _) = attack(
        &mut swarm,
        target,
        &addr,
        vec![
            frame(b"\xff\xfe\xfd garbage"),
            frame(&[0x83, 0x03, 0x01, 0x80]),
            frame(&[0x83, 0x01, 0x07, 0x00]),
            // A sealed batch whose envelope is not one.
            frame(&[0x83, 0x02, 0x04, 0x81, 0x42, 0xa0, 0x00]),
            (tincan_wire::MAX_REQUEST_LEN + 1).to_be_bytes().to_vec(),
        ],
    )
    .await;
    let refusals: Vec<Option<Refusal>> = answers
        .iter()
        .map(|a| match a {
            Ok(Response::Refused(r)) => Some(*r),
            _ => None,
        })
        .collect();
    println!("refusals: {refusals:?}");
    assert!(refusals.contains(&Some(Refusal::Malformed)));
    assert!(refusals.contains(&Some(Refusal::UnsupportedVersion)));
    assert!(refusals.contains(&Some(Refusal::UnsupportedKind)));
    assert!(
        refusals.contains(&Some(Refusal::TooLarge)),
        "an oversized frame is refused as too large"
    );

    // Too many streams at once: the connection is torn down by the multiplexer's limit.
    let burst: Vec<Vec<u8>> = (0..400).map(|i| frame(&vec![i as u8; 1000])).collect();
    let (_, closed) = attack(&mut swarm, target, &addr, burst).await;
    println!("400 streams at once: connection closed: {closed}");
    assert!(closed, "a peer opening too many streams is disconnected");

    // A steady flood of garbage, within the stream limit: refused, then the peer is cut off and
    // refused for a while.
    let mut refused = 0;
    let mut closed = false;
    for wave in 0..25 {
        let frames: Vec<Vec<u8>> =
            (0..16).map(|i| frame(&vec![(wave * 16 + i) as u8; 1000])).collect();
        let (answers, wave_closed) = attack(&mut swarm, target, &addr, frames).await;
        refused += answers.iter().filter(|a| matches!(a, Ok(Response::Refused(_)))).count();
        if wave_closed {
            closed = true;
            break;
        }
    }
    println!(
        "steady flood of garbage frames: {refused} refused before the ban, connection closed: {closed}"
    );
    assert!(closed, "the flooding peer was disconnected");
    let (again, _) = attack(&mut swarm, target, &addr, vec![frame(b"more")]).await;
    println!("after the ban: {again:?}");
    assert!(
        matches!(again.first(), Some(Err(_)) | None),
        "the banned peer cannot get an answer: {again:?}"
    );

    let rss_after = common::rss_kib(bob.pid());
    println!("bob's RSS: {rss_before} KiB before, {rss_after} KiB after the attack");
    assert!(rss_after < rss_before + 64 * 1024, "memory stays bounded");

    // Bob still serves an honest peer.
    let mut alice = Peer::start(&root.path().join("alice"), "alice", &[]);
    alice.add(&bob);
    alice.command(json!({"send": {"to": "bob", "text": "still there?"}}));
    bob.wait(Duration::from_secs(30), |v| (v["received"]["text"] == "still there?").then_some(()));
}
