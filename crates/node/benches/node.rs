//! Node benchmark: prints a table. The baseline is raw libp2p request-response between two
//! swarms on the same transport (TCP or QUIC, Noise, Yamux, V1Lazy), with the same window, a
//! responder that answers at once and stores nothing, measured in the same run.
//! Run with `cargo bench -p tincan-node --bench node`.

#![allow(clippy::unwrap_used, clippy::print_stdout)] // A benchmark binary: fail loudly, print a table.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/common/netns.rs"]
mod netns;

use std::io;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, StreamProtocol, Swarm, noise, tcp, yamux};
use tincan_identity::{Identity, StoreRootKey};
use tincan_node::{Config, Event, Node};
use tincan_store::{Status, Store};
use tincan_wire::Username;
use tokio::sync::broadcast;

const TEXT: usize = 200;
const THROUGHPUT_N: usize = 20_000;
const WINDOW: usize = 64;
const LATENCY_N: usize = 500;
const CATCH_UP_N: usize = 10_000;

fn main() {
    // Warnings on stderr, as the harness prints them (`RUST_LOG` to see more).
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut rows = Vec::new();
    // `cargo bench -p tincan-node --bench node -- sealed`: only the rows (s).
    let only_sealed = std::env::args().any(|a| a == "sealed");
    for (transport, listen) in
        [("TCP", "/ip4/127.0.0.1/tcp/0"), ("QUIC", "/ip4/127.0.0.1/udp/0/quic-v1")]
    {
        let [one_way, replied, plain] =
            runtime.block_on(sealed_and_plain(dir.path(), transport, listen));
        rows.extend(sealed_rows(transport, "one way", one_way, plain));
        rows.extend(sealed_rows(transport, "after a reply", replied, plain));
        if only_sealed {
            continue;
        }
        let (rate, p50, p99) = one_way;
        let raw_rate = raw_throughput(listen, THROUGHPUT_N, WINDOW);
        let (raw_p50, raw_p99) = raw_latency(listen, LATENCY_N);
        rows.push(format!(
            "| (a) delivered msgs/s, {TEXT}-byte texts, {WINDOW} senders, {transport} | {rate:.0} | {raw_rate:.0} (raw, {WINDOW} in flight) | {:.2} |",
            rate / raw_rate
        ));
        rows.push(format!(
            "| (b) send → delivered latency p50 / p99, one at a time, {transport} | {} / {} | {} / {} (raw round trip) | p50 +{:.2} ms |",
            ms(p50),
            ms(p99),
            ms(raw_p50),
            ms(raw_p99),
            (p50.as_secs_f64() - raw_p50.as_secs_f64()) * 1000.0
        ));
    }
    if only_sealed {
        return print_table(rows);
    }
    let catch_up = runtime.block_on(catch_up(dir.path()));
    rows.push(format!(
        "| (c) catch-up: {CATCH_UP_N} queued messages, B online → last delivered, TCP | {} | | |",
        ms(catch_up)
    ));
    let first = runtime.block_on(first_message(dir.path()));
    let mut connects: Vec<Duration> = (0..5).map(|_| raw_connect()).collect();
    connects.sort();
    let connect = connects[2];
    rows.push(format!(
        "| (d) first message to a fresh peer found through the phonebook, TCP (median of 5) | {} | {} (raw dial → connected) | |",
        ms(first),
        ms(connect)
    ));
    let (rss, bare) = idle_rss(dir.path());
    rows.push(format!(
        "| (e) RSS of an idle node (harness process, TCP + QUIC) | {} MiB | {} MiB (`sleep`) | |",
        rss / 1024,
        bare / 1024
    ));

    let nat_rows = match netns::unavailable() {
        None => nat_paths(),
        Some(why) => vec![format!("| (f) paths across NAT: SKIPPED, {why} | | | |")],
    };
    rows.extend(nat_rows);
    print_table(rows);
}

/// Rounds of sealed and plaintext delivery, alternated so that the machine's drift falls on
/// both alike.
const ROUNDS: usize = 3;

/// How a round's messages go.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Sealed, and bob never writes back: every message is a pre-key message of its session,
    /// carrying alice's keys record (the worst case).
    OneWay,
    /// Sealed, after bob wrote back once: alice's session is established both ways, and her
    /// messages are normal Olm messages, as in a conversation.
    Replied,
    /// Plaintext, as before sealing (`Config::plaintext_for_benchmarks`).
    Plain,
}

/// Sealed delivery (one way, and after a reply) and plaintext delivery: the median of
/// [`ROUNDS`] alternated rounds of each, figure by figure.
async fn sealed_and_plain(
    dir: &std::path::Path,
    transport: &str,
    listen: &str,
) -> [(f64, Duration, Duration); 3] {
    let mut runs = [Vec::new(), Vec::new(), Vec::new()];
    for round in 0..ROUNDS {
        for (i, mode) in [Mode::OneWay, Mode::Replied, Mode::Plain].into_iter().enumerate() {
            runs[i].push(node_throughput_and_latency(dir, transport, listen, mode, round).await);
        }
    }
    runs.map(median)
}

fn median(mut runs: Vec<(f64, Duration, Duration)>) -> (f64, Duration, Duration) {
    let mid = runs.len() / 2;
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let rate = runs[mid].0;
    runs.sort_by_key(|r| r.1);
    let p50 = runs[mid].1;
    runs.sort_by_key(|r| r.2);
    (rate, p50, runs[mid].2)
}

/// The rows (s): sealed delivery against plaintext delivery, measured in the same run.
fn sealed_rows(
    transport: &str,
    how: &str,
    (rate, p50, p99): (f64, Duration, Duration),
    (plain_rate, plain_p50, plain_p99): (f64, Duration, Duration),
) -> [String; 2] {
    [
        format!(
            "| (s) sealed ({how}) against plaintext (same build), delivered msgs/s, {transport} | {rate:.0} | {plain_rate:.0} (plaintext) | {:.2} |",
            rate / plain_rate
        ),
        format!(
            "| (s) sealed ({how}) against plaintext (same build), latency p50 / p99, {transport} | {} / {} | {} / {} (plaintext) | p50 {:+.2} ms |",
            ms(p50),
            ms(p99),
            ms(plain_p50),
            ms(plain_p99),
            (p50.as_secs_f64() - plain_p50.as_secs_f64()) * 1000.0
        ),
    ]
}

fn print_table(rows: Vec<String>) {
    println!();
    println!("tincan-node benchmark: two nodes on 127.0.0.1, durable stores on both sides");
    println!(
        "(f): peers in network namespaces behind masquerading routers, see tests/common/netns.rs"
    );
    println!();
    println!("| measurement | tincan | baseline | ratio |");
    println!("|---|---|---|---|");
    for row in rows {
        println!("{row}");
    }
    println!();
}

async fn node(dir: &std::path::Path, name: &str, listen: &str) -> Node {
    node_with(dir, name, listen, false).await
}

/// A node; `plaintext`: without sealing, as before it (`Config::plaintext_for_benchmarks`).
async fn node_with(dir: &std::path::Path, name: &str, listen: &str, plaintext: bool) -> Node {
    let store =
        Store::create(&dir.join(format!("{name}.redb")), &StoreRootKey::generate().unwrap())
            .unwrap();
    let mut config = Config::new(Username::new(name).unwrap());
    config.listen = vec![listen.parse().unwrap()];
    config.plaintext_for_benchmarks = plaintext;
    Node::start(Identity::generate().unwrap(), store, config).await.unwrap()
}

/// Waits until `n` messages are delivered, as reported by events.
async fn delivered(events: &mut broadcast::Receiver<Event>, n: usize) {
    let mut seen = 0;
    while seen < n {
        match events.recv().await {
            Ok(Event::Status { status: Status::Delivered { .. }, .. }) => seen += 1,
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(_)) => {
                panic!("events lagged; raise the channel size")
            }
            Err(e) => panic!("{e}"),
        }
    }
}

async fn node_throughput_and_latency(
    dir: &std::path::Path,
    transport: &str,
    listen: &str,
    mode: Mode,
    round: usize,
) -> (f64, Duration, Duration) {
    let plaintext = mode == Mode::Plain;
    let kind = match mode {
        Mode::OneWay => "",
        Mode::Replied => "replied",
        Mode::Plain => "plain",
    };
    let tag = format!("{}{kind}{round}", transport.to_lowercase());
    let alice = node_with(dir, &format!("alice{tag}"), listen, plaintext).await;
    let bob = node_with(dir, &format!("bob{tag}"), listen, plaintext).await;
    let bob_name = bob.username().clone();
    alice.add_contact(&bob_name, bob.peer_id(), bob.listen_addrs()).await.unwrap();
    // bob knows alice: a stranger's messages would stop at the message-request quota.
    bob.add_contact(alice.username(), alice.peer_id(), alice.listen_addrs()).await.unwrap();
    let text: Arc<str> = "x".repeat(TEXT).into();
    // Warm up: connect, and fill caches.
    let mut events = alice.subscribe();
    for _ in 0..100 {
        alice.send(&bob_name, &text).await.unwrap();
    }
    delivered(&mut events, 100).await;
    if mode == Mode::Replied {
        let mut heard = alice.subscribe();
        bob.send(alice.username(), "a reply").await.unwrap();
        loop {
            match heard.recv().await {
                Ok(Event::Received { .. }) => break,
                Err(broadcast::error::RecvError::Closed) => panic!("alice stopped"),
                _ => {}
            }
        }
    }

    // (b) one at a time.
    let mut latencies = Vec::with_capacity(LATENCY_N);
    for _ in 0..LATENCY_N {
        let t = Instant::now();
        let sent = alice.send(&bob_name, &text).await.unwrap();
        loop {
            if let Ok(Event::Status { id, status: Status::Delivered { .. }, .. }) =
                events.recv().await
                && id == sent.id
            {
                break;
            }
        }
        latencies.push(t.elapsed());
    }
    latencies.sort();

    // (a) 64 concurrent senders.
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..WINDOW {
        let (alice, bob_name, text) = (alice.clone(), bob_name.clone(), text.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..THROUGHPUT_N / WINDOW {
                alice.send(&bob_name, &text).await.unwrap();
            }
        }));
    }
    delivered(&mut events, (THROUGHPUT_N / WINDOW) * WINDOW).await;
    let rate = ((THROUGHPUT_N / WINDOW) * WINDOW) as f64 / t.elapsed().as_secs_f64();
    for task in tasks {
        task.await.unwrap();
    }
    alice.shutdown().await;
    bob.shutdown().await;
    (rate, latencies[LATENCY_N / 2], latencies[LATENCY_N * 99 / 100])
}

async fn catch_up(dir: &std::path::Path) -> Duration {
    let alice = node(dir, "alicecatch", "/ip4/127.0.0.1/tcp/0").await;
    let bob_store_path = dir.join("bobcatch.redb");
    let bob_identity = Identity::generate().unwrap();
    let bob_peer = bob_identity.peer_id();
    let bob_root = StoreRootKey::generate().unwrap();
    let bob_name = Username::new("bobcatch").unwrap();
    // Bob is offline: alice knows him, but not where he is.
    alice.add_contact(&bob_name, bob_peer, vec![]).await.unwrap();
    let text = "y".repeat(TEXT);
    for _ in 0..CATCH_UP_N {
        alice.send(&bob_name, &text).await.unwrap();
    }
    let mut events = alice.subscribe();
    let store = Store::create(&bob_store_path, &bob_root).unwrap();
    let mut config = Config::new(bob_name.clone());
    config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()];
    let t = Instant::now();
    let bob = Node::start(bob_identity, store, config).await.unwrap();
    bob.add_contact(alice.username(), alice.peer_id(), alice.listen_addrs()).await.unwrap();
    alice.add_contact(&bob_name, bob_peer, bob.listen_addrs()).await.unwrap();
    delivered(&mut events, CATCH_UP_N).await;
    let elapsed = t.elapsed();
    alice.shutdown().await;
    bob.shutdown().await;
    elapsed
}

async fn first_message(dir: &std::path::Path) -> Duration {
    let server =
        tincan_phonebook::server::Server::new(tincan_phonebook::server::Config::default()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(server.serve(listener, std::future::pending()));
    let mut times = Vec::new();
    for round in 0..5 {
        let mk = |name: String| {
            let mut config = Config::new(Username::new(&name).unwrap());
            config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()];
            config.phonebooks = vec![tincan_phonebook_client::Client::new(&url).unwrap()];
            let store = Store::create(
                &dir.join(format!("{name}.redb")),
                &StoreRootKey::generate().unwrap(),
            )
            .unwrap();
            Node::start(Identity::generate().unwrap(), store, config)
        };
        let bob = mk(format!("bobfirst{round}")).await.unwrap();
        let mut bob_events = bob.subscribe();
        while !matches!(bob_events.recv().await, Ok(Event::Published { .. })) {}
        let alice = mk(format!("alicefirst{round}")).await.unwrap();
        let mut events = alice.subscribe();
        let t = Instant::now();
        let sent = alice.send(bob.username(), "hello").await.unwrap();
        loop {
            if let Ok(Event::Status { id, status: Status::Delivered { .. }, .. }) =
                events.recv().await
                && id == sent.id
            {
                break;
            }
        }
        times.push(t.elapsed());
        alice.shutdown().await;
        bob.shutdown().await;
    }
    times.sort();
    times[2]
}

fn idle_rss(dir: &std::path::Path) -> (u64, u64) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tincan-node-harness"))
        .args(["--dir", &dir.join("idle").display().to_string(), "--name", "idle"])
        .env("TINCAN_HARNESS_PASSWORD", "idle")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    io::BufRead::read_line(&mut io::BufReader::new(child.stdout.take().unwrap()), &mut line)
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let rss = common::rss_kib(child.id());
    child.kill().unwrap();
    child.wait().unwrap();
    let mut sleep = Command::new("sleep").arg("5").spawn().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let bare = common::rss_kib(sleep.id());
    sleep.kill().unwrap();
    sleep.wait().unwrap();
    (rss, bare)
}

// ---- paths across NAT ----------------------------------------------------------------------

const NAT_N: u64 = 5_000;
const NAT_LATENCY_N: usize = 300;

/// (f): one sender behind NAT, three receivers reached three ways, in one topology: carol on a
/// public host (direct), bob behind the other NAT with hole punching off (relayed), dave beside
/// him with it on (punched). The direct row is the baseline.
fn nat_paths() -> Vec<String> {
    use common::{Peer, Phonebook};
    use serde_json::json;

    let net = netns::Net::build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pb = Phonebook::start_in(&net.ns("pub"), &netns::phonebook_args(&dir.path().join("pb")));
    let peer = |role: &str, name: &str, extra: &[&str]| {
        let mut args: Vec<String> =
            ["--listen", "/ip4/0.0.0.0/tcp/0", "--phonebook", &pb.url, "--probe-ms", "500"]
                .iter()
                .map(|s| s.to_string())
                .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        Peer::start_in(Some(&net.ns(role)), &dir.path().join(name), name, &args)
    };
    let mut alice = peer("a", "alice", &[]);
    let mut carol = peer("c", "carol", &[]);
    let mut bob = peer("b", "bob", &["--no-hole-punch"]);
    let mut dave = peer("b", "dave", &[]);
    // They know alice: a stranger's messages would stop at the message-request quota.
    for p in [&mut carol, &mut bob, &mut dave] {
        p.add(&alice);
    }
    for p in [&mut alice, &mut bob, &mut dave] {
        // Until the relayed address is published, a NATed peer cannot be reached.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            p.command(json!({"nat": true}));
            let reserved = p.wait(Duration::from_secs(5), |v| {
                v.get("nat").map(|n| n.pointer("/relay/reserved") == Some(&json!(true)))
            });
            if reserved {
                break;
            }
            assert!(Instant::now() < deadline, "{}: no reservation", p.name);
            std::thread::sleep(Duration::from_millis(200));
        }
        p.command(json!({"republish": true}));
        p.wait(Duration::from_secs(10), |v| v.pointer("/published/addrs").map(|_| ()));
    }

    let mut rows = Vec::new();
    let mut baseline = None;
    for (to, want) in [("carol", "direct"), ("bob", "relayed"), ("dave", "punched")] {
        // Warm up until the path is the one measured.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            nat_round_trip(&mut alice, to);
            alice.command(json!({"path": to}));
            let path = alice.wait(Duration::from_secs(5), |v| v.pointer("/path/path").cloned());
            if path == want {
                break;
            }
            assert!(Instant::now() < deadline, "alice → {to}: path {path}, not {want}");
        }
        let mut latencies: Vec<Duration> =
            (0..NAT_LATENCY_N).map(|_| nat_round_trip(&mut alice, to)).collect();
        latencies.sort();
        let started = Instant::now();
        alice.command(
            json!({"send_many": {"to": to, "prefix": "bulk ", "count": NAT_N, "parallel": WINDOW}}),
        );
        let mut delivered = 0;
        alice.wait(Duration::from_secs(300), |v| {
            if v.pointer("/status/status") == Some(&json!("delivered")) {
                delivered += 1;
            }
            (delivered == NAT_N).then_some(())
        });
        let rate = NAT_N as f64 / started.elapsed().as_secs_f64();
        let (p50, p99) = (latencies[NAT_LATENCY_N / 2], latencies[NAT_LATENCY_N * 99 / 100]);
        let (base_rate, base_p50, base_p99) = *baseline.get_or_insert((rate, p50, p99));
        rows.push(format!(
            "| (f) {want}: delivered msgs/s, {WINDOW} senders, NAT → {} | {rate:.0} | {base_rate:.0} (direct) | {:.2} |",
            if want == "direct" { "public host" } else { "NAT" },
            rate / base_rate
        ));
        rows.push(format!(
            "| (f) {want}: send → delivered p50 / p99, one at a time | {} / {} | {} / {} (direct) | p50 {:+.2} ms |",
            ms(p50), ms(p99), ms(base_p50), ms(base_p99),
            (p50.as_secs_f64() - base_p50.as_secs_f64()) * 1000.0
        ));
    }
    drop((alice, bob, carol, dave, pb));
    rows
}

/// Sends one message and waits for its delivery; returns the time taken.
fn nat_round_trip(from: &mut common::Peer, to: &str) -> Duration {
    use serde_json::json;
    let started = Instant::now();
    from.command(json!({"send": {"to": to, "text": "x".repeat(TEXT)}}));
    let id = from.wait(Duration::from_secs(10), |v| v.pointer("/queued/id").cloned());
    from.wait(Duration::from_secs(60), |v| {
        (v.pointer("/status/id")? == &id && v.pointer("/status/status")? == "delivered")
            .then_some(())
    });
    started.elapsed()
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

// ---- the raw baseline --------------------------------------------------------------------

/// Requests are a length-prefixed payload; responses an 8-byte ack. Nothing is stored.
#[derive(Clone, Default)]
struct Raw;

impl request_response::Codec for Raw {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        read(io).await
    }
    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        read(io).await
    }
    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        r: Vec<u8>,
    ) -> io::Result<()> {
        write(io, &r).await
    }
    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        r: Vec<u8>,
    ) -> io::Result<()> {
        write(io, &r).await
    }
}

async fn read<T: AsyncRead + Unpin>(io: &mut T) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let mut out = vec![0u8; u32::from_be_bytes(len) as usize];
    io.read_exact(&mut out).await?;
    Ok(out)
}

async fn write<T: AsyncWrite + Unpin>(io: &mut T, bytes: &[u8]) -> io::Result<()> {
    io.write_all(&(bytes.len() as u32).to_be_bytes()).await?;
    io.write_all(bytes).await?;
    io.close().await
}

fn raw_swarm() -> Swarm<request_response::Behaviour<Raw>> {
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
        .unwrap()
        .with_quic()
        .with_behaviour(|_| {
            request_response::Behaviour::with_codec(
                Raw,
                [(StreamProtocol::new("/raw/1"), ProtocolSupport::Full)],
                request_response::Config::default().with_max_concurrent_streams(256),
            )
        })
        .unwrap()
        .with_swarm_config(|c| {
            c.with_idle_connection_timeout(Duration::from_secs(60))
                .with_substream_upgrade_protocol_override(libp2p::core::upgrade::Version::V1Lazy)
        })
        .build()
}

/// Starts a responder on its own thread and current-thread runtime; returns its address.
fn raw_responder(listen: &str) -> Multiaddr {
    let listen: Multiaddr = listen.parse().unwrap();
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let mut swarm = raw_swarm();
            swarm.listen_on(listen).unwrap();
            let peer = *swarm.local_peer_id();
            loop {
                match swarm.select_next_some().await {
                    SwarmEvent::NewListenAddr { address, .. } => {
                        let _ = tx.send(address.with_p2p(peer).unwrap());
                    }
                    SwarmEvent::Behaviour(request_response::Event::Message {
                        message: request_response::Message::Request { channel, .. },
                        ..
                    }) => {
                        let _ = swarm.behaviour_mut().send_response(channel, vec![0; 8]);
                    }
                    _ => {}
                }
            }
        });
    });
    rx.recv().unwrap()
}

/// A requester on a current-thread runtime, with a connection to `target` ready.
async fn raw_requester(
    target: &Multiaddr,
) -> (Swarm<request_response::Behaviour<Raw>>, libp2p::PeerId) {
    let mut swarm = raw_swarm();
    let peer = match target.iter().last() {
        Some(libp2p::multiaddr::Protocol::P2p(p)) => p,
        _ => unreachable!(),
    };
    swarm.dial(target.clone()).unwrap();
    loop {
        if let SwarmEvent::ConnectionEstablished { .. } = swarm.select_next_some().await {
            return (swarm, peer);
        }
    }
}

fn raw_throughput(listen: &str, n: usize, window: usize) -> f64 {
    let target = raw_responder(listen);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let (mut swarm, peer) = raw_requester(&target).await;
        let payload = vec![b'x'; TEXT + 60];
        let t = Instant::now();
        let (mut sent, mut done) = (0, 0);
        while sent < window.min(n) {
            swarm.behaviour_mut().send_request(&peer, payload.clone());
            sent += 1;
        }
        while done < n {
            if let SwarmEvent::Behaviour(request_response::Event::Message {
                message: request_response::Message::Response { .. },
                ..
            }) = swarm.select_next_some().await
            {
                done += 1;
                if sent < n {
                    swarm.behaviour_mut().send_request(&peer, payload.clone());
                    sent += 1;
                }
            }
        }
        n as f64 / t.elapsed().as_secs_f64()
    })
}

fn raw_latency(listen: &str, n: usize) -> (Duration, Duration) {
    let target = raw_responder(listen);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let (mut swarm, peer) = raw_requester(&target).await;
        let payload = vec![b'x'; TEXT + 60];
        let mut latencies = Vec::with_capacity(n);
        for _ in 0..n + 50 {
            let t = Instant::now();
            swarm.behaviour_mut().send_request(&peer, payload.clone());
            loop {
                if let SwarmEvent::Behaviour(request_response::Event::Message {
                    message: request_response::Message::Response { .. },
                    ..
                }) = swarm.select_next_some().await
                {
                    break;
                }
            }
            latencies.push(t.elapsed());
        }
        let mut latencies = latencies.split_off(50);
        latencies.sort();
        (latencies[n / 2], latencies[n * 99 / 100])
    })
}

/// A raw dial to a fresh responder, until the connection is established.
fn raw_connect() -> Duration {
    let target = raw_responder("/ip4/127.0.0.1/tcp/0");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let t = Instant::now();
        let _ = raw_requester(&target).await;
        t.elapsed()
    })
}
