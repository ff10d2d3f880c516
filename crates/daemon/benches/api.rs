//! What the API costs: a message sent and delivered through the daemon's socket, against the
//! same through `Node::send` in process (the baseline, measured in the same run). Two real
//! nodes on 127.0.0.1, real stores in a temporary folder, a real Unix socket.
//!
//! `cargo bench -p tincan-daemon --bench api` prints a table; BENCHMARKS.md has the method.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use tincan_api::{Call, Client};
use tincan_daemon::{Limits, Me, Service};
use tincan_identity::Identity;
use tincan_node::{Config, Event, Node};
use tincan_store::{Status, Store};
use tincan_wire::Username;

const ROUNDS: usize = 300;
const BURST: usize = 2000;
const BURSTS: usize = 5;

async fn node(dir: &std::path::Path, name: &str) -> (Node, Arc<Service>) {
    std::fs::create_dir_all(dir).unwrap();
    let identity = Identity::generate().unwrap();
    let store = Store::create(&dir.join("store.redb"), identity.store_root_key()).unwrap();
    let me = Me {
        profile: name.into(),
        username: Username::new(name).unwrap(),
        public_key: identity.public_key(),
    };
    let mut config = Config::new(Username::new(name).unwrap());
    config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()];
    let node = Node::start(identity, store.clone(), config).await.unwrap();
    (node.clone(), Arc::new(Service::new(store, Some(node), me)))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let root = tempfile::tempdir().unwrap();
        let (alice, service) = node(&root.path().join("alice"), "alice").await;
        let (bob, _) = node(&root.path().join("bob"), "bob").await;
        let bob_name = Username::new("bob").unwrap();
        alice.add_contact(&bob_name, bob.peer_id(), bob.listen_addrs()).await.unwrap();
        bob.add_contact(&Username::new("alice").unwrap(), alice.peer_id(), alice.listen_addrs())
            .await
            .unwrap();
        let socket = root.path().join("run").join("api.sock");
        let listener = tincan_daemon::bind(&socket).unwrap();
        let (_stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(tincan_daemon::serve(listener, service, Limits::default(), stopped));
        let client = Arc::new(Client::connect(&socket).await.unwrap());

        // Warm up the connection both ways.
        let delivered = Delivered::track(&alice);
        for _ in 0..20 {
            let sent = alice.send(&bob_name, "warm-up").await.unwrap();
            delivered.wait(&[sent.id].into()).await;
        }

        // One at a time, the two paths alternating round by round so that the machine's noise
        // falls on both, and which goes first alternating too: the second of a pair starts
        // while the first one's last commits may still be settling. Baseline: queue in
        // process, wait for the delivered event. Through the socket: `send` with `wait`,
        // answered once delivered.
        let mut direct = Vec::with_capacity(ROUNDS);
        let mut api = Vec::with_capacity(ROUNDS);
        for i in 0..ROUNDS {
            for path in if i % 2 == 0 { [0, 1] } else { [1, 0] } {
                let t = Instant::now();
                if path == 0 {
                    let sent = alice.send(&bob_name, &format!("direct {i}")).await.unwrap();
                    delivered.wait(&[sent.id].into()).await;
                    direct.push(t.elapsed());
                } else {
                    let sent: tincan_api::Sent = client
                        .call_as(Call::Send(tincan_api::SendParams {
                            to: "bob".into(),
                            text: format!("api {i}"),
                            wait: true,
                            timeout_ms: Some(30_000),
                        }))
                        .await
                        .unwrap();
                    assert_eq!(sent.delivered, Some(true));
                    api.push(t.elapsed());
                }
            }
        }
        direct.sort();
        api.sort();
        // What the socket itself costs: a call that does no work (`status`), round trip.
        let mut bare = Vec::with_capacity(ROUNDS);
        for _ in 0..ROUNDS {
            let t = Instant::now();
            client.call(Call::Status(tincan_api::Empty {})).await.unwrap();
            bare.push(t.elapsed());
        }
        bare.sort();

        // Throughput: BURST messages queued with 16 sends in flight at a time (the server's
        // limit per client), until all are delivered. BURSTS bursts on each path, alternating
        // and with which goes first alternating too; the table shows medians and ranges.
        let mut direct_rates = Vec::with_capacity(BURSTS);
        let mut api_rates = Vec::with_capacity(BURSTS);
        for round in 0..BURSTS {
            for path in if round % 2 == 0 { [0, 1] } else { [1, 0] } {
                if path == 0 {
                    direct_rates.push(burst_direct(&alice, &bob_name, &delivered, round).await);
                } else {
                    api_rates.push(burst_api(&client, &delivered, round).await);
                }
            }
        }
        // Paired round by round, before sorting: the machine's drift falls on both.
        let mut ratios: Vec<f64> =
            api_rates.iter().zip(&direct_rates).map(|(a, d)| a / d).collect();
        ratios.sort_by(f64::total_cmp);
        direct_rates.sort_by(f64::total_cmp);
        api_rates.sort_by(f64::total_cmp);
        let rates =
            |r: &[f64]| format!("{:.0} msg/s ({:.0}–{:.0})", r[r.len() / 2], r[0], r[r.len() - 1]);
        let (direct_rate, api_rate) = (rates(&direct_rates), rates(&api_rates));

        println!("| path | send → delivered p50 | p99 | {BURST} queued → all delivered |");
        println!("|---|---|---|---|");
        println!(
            "| in process, `Node::send` (baseline) | {} | {} | {direct_rate} |",
            ms(percentile(&direct, 0.5)),
            ms(percentile(&direct, 0.99))
        );
        println!(
            "| API socket, `send` | {} | {} | {api_rate} |",
            ms(percentile(&api, 0.5)),
            ms(percentile(&api, 0.99))
        );
        println!(
            "| API socket, `status` (no work: the socket's round trip) | {} | {} | |",
            ms(percentile(&bare, 0.5)),
            ms(percentile(&bare, 0.99))
        );
        println!(
            "({ROUNDS} one-at-a-time rounds each, alternating; {BURSTS} bursts each, alternating, \
             16 sends in flight on both paths; API / in-process p50 difference {:+.2} ms, \
             throughput ratio API / in process, round by round: median {:.2} ({:.2}–{:.2}))",
            (percentile(&api, 0.5).as_secs_f64() - percentile(&direct, 0.5).as_secs_f64()) * 1000.0,
            ratios[BURSTS / 2],
            ratios[0],
            ratios[BURSTS - 1],
        );
        alice.shutdown().await;
        bob.shutdown().await;
    });
}

/// BURST messages queued in process, 16 at a time; messages per second until all are delivered.
async fn burst_direct(alice: &Node, bob: &Username, delivered: &Delivered, round: usize) -> f64 {
    let t = Instant::now();
    let mut ids = std::collections::HashSet::new();
    let mut pending: tokio::task::JoinSet<tincan_wire::MessageId> = tokio::task::JoinSet::new();
    for i in 0..BURST {
        if pending.len() == 16 {
            ids.insert(pending.join_next().await.unwrap().unwrap());
        }
        let (alice, bob) = (alice.clone(), bob.clone());
        pending.spawn(async move {
            alice.send(&bob, &format!("burst {round} direct {i}")).await.unwrap().id
        });
    }
    while let Some(id) = pending.join_next().await {
        ids.insert(id.unwrap());
    }
    delivered.wait(&ids).await;
    BURST as f64 / t.elapsed().as_secs_f64()
}

/// The same through the socket: `send` without `wait`, 16 calls in flight.
async fn burst_api(client: &Arc<Client>, delivered: &Delivered, round: usize) -> f64 {
    let t = Instant::now();
    let mut ids = std::collections::HashSet::new();
    let mut pending: tokio::task::JoinSet<tincan_api::Sent> = tokio::task::JoinSet::new();
    let id = |sent: tincan_api::Sent| {
        tincan_wire::MessageId(sent.messages[0].id.parse::<Hex>().unwrap().0)
    };
    for i in 0..BURST {
        if pending.len() == 16 {
            ids.insert(id(pending.join_next().await.unwrap().unwrap()));
        }
        let client = client.clone();
        pending.spawn(async move {
            client
                .call_as::<tincan_api::Sent>(Call::Send(tincan_api::SendParams {
                    to: "bob".into(),
                    text: format!("burst {round} api {i}"),
                    wait: false,
                    timeout_ms: None,
                }))
                .await
                .unwrap()
        });
    }
    while let Some(sent) = pending.join_next().await {
        ids.insert(id(sent.unwrap()));
    }
    delivered.wait(&ids).await;
    BURST as f64 / t.elapsed().as_secs_f64()
}

/// A message id in hex, as the API gives it.
struct Hex([u8; 16]);

impl std::str::FromStr for Hex {
    type Err = ();
    fn from_str(s: &str) -> Result<Hex, ()> {
        let mut out = [0u8; 16];
        if s.len() != 32 {
            return Err(());
        }
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| ())?;
        }
        Ok(Hex(out))
    }
}

/// Every message the node reports delivered, read as it happens by a task of its own.
#[derive(Clone)]
struct Delivered(
    Arc<(std::sync::Mutex<std::collections::HashSet<tincan_wire::MessageId>>, tokio::sync::Notify)>,
);

impl Delivered {
    fn track(node: &Node) -> Delivered {
        let seen = Delivered(Default::default());
        let mut events = node.subscribe();
        let out = seen.clone();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(Event::Status { id, status: Status::Delivered { .. }, .. }) => {
                        out.0.0.lock().unwrap().insert(id);
                        out.0.1.notify_waiters();
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        panic!("the benchmark missed {n} of the node's events")
                    }
                    Err(_) => return,
                }
            }
        });
        seen
    }

    async fn wait(&self, ids: &std::collections::HashSet<tincan_wire::MessageId>) {
        loop {
            let woken = self.0.1.notified();
            if ids.iter().all(|id| self.0.0.lock().unwrap().contains(id)) {
                return;
            }
            woken.await;
        }
    }
}
