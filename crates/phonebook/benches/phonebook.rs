//! Phonebook benchmark: prints a table, for the embedded redb backend and for PostgreSQL (a
//! real server the bench starts, as the tests do), at 100,000 and 1,000,000 users. Lookups are
//! measured against a bare axum handler that returns JSON of the same size, in the same run,
//! from the same load generator: 64 keep-alive HTTP/1.1 connections from this process (an
//! in-repo hyper client). Run with `cargo bench -p tincan-phonebook --bench phonebook`
//! (`TINCAN_BENCH_MAX_USERS=100000` for a shorter run).

#![allow(clippy::unwrap_used, clippy::print_stdout)] // A benchmark binary: fail loudly, print a table.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tincan_identity::Identity;
use tincan_phonebook::SignedRecord;
use tincan_wire::{UnixMillis, Username};

#[allow(dead_code)] // The tests use the rest.
#[path = "../tests/common/postgres.rs"]
mod postgres;

const CONNECTIONS: usize = 64;
const LOOKUP_SECONDS: u64 = 5;
/// New users whose registrations are timed, signed beforehand.
const REGISTRATIONS: usize = 20_000;
/// The sizes at which lookups and memory are measured; `TINCAN_BENCH_MAX_USERS` stops earlier.
const SIZES: [usize; 2] = [100_000, 1_000_000];
/// Lookups ask for names drawn from every registered user, this many distinct ones.
const LOOKUP_NAMES: usize = 20_000;
const BARE: &str = "TINCAN_PHONEBOOK_BENCH_BARE";

fn main() {
    if let Ok(body) = std::env::var(BARE) {
        bare_server(body);
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(run());
}

/// One phonebook under test: its process, address and how many users it holds.
struct Instance {
    child: Child,
    addr: SocketAddr,
    users: usize,
}

fn start(dir: &std::path::Path, database: Option<&str>) -> Instance {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tincan-phonebook"));
    command
        .args(["--listen", "127.0.0.1:0", "--writes-per-minute", "0", "--max-connections", "4096"])
        .args(["--max-connections-per-ip", "4096"])
        .arg("--data-dir")
        .arg(dir);
    if let Some(url) = database {
        command.args(["--database", url]);
    }
    let (child, addr) = spawn(&mut command);
    Instance { child, addr, users: 0 }
}

struct Row {
    backend: &'static str,
    users: usize,
    registrations: f64,
    lookups: Load,
    bare: Load,
    rss_mib: u64,
}

async fn run() {
    let max_users: usize = std::env::var("TINCAN_BENCH_MAX_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(*SIZES.last().unwrap());
    let sizes: Vec<usize> = SIZES.iter().copied().filter(|&n| n <= max_users).collect();
    let pg = match postgres::Postgres::start() {
        Ok(pg) => Some(pg),
        Err(why) => {
            println!("PostgreSQL rows skipped: {why}");
            None
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let mut rows = Vec::new();
    let mut registrations = Vec::new();
    let mut rss_empty = Vec::new();
    let mut two = None;
    let mut bare: Option<(Child, SocketAddr)> = None;
    // `TINCAN_BENCH_BACKENDS=PostgreSQL`, say, runs one backend only (for quick comparisons).
    let only = std::env::var("TINCAN_BENCH_BACKENDS").ok();
    for backend in ["redb", "PostgreSQL"] {
        if only.as_deref().is_some_and(|o| !o.split(',').any(|b| b == backend)) {
            continue;
        }
        let url = match (backend, &pg) {
            ("redb", _) => None,
            (_, Some(pg)) => Some(pg.database()),
            (_, None) => continue,
        };
        let mut pb = start(&dir.path().join(backend), url.as_deref());
        rss_empty.push((backend, rss_kib(&pb.child)));
        // Registrations, timed: records signed beforehand, posted over 64 connections.
        let rate = post_all(pb.addr, sign(0, REGISTRATIONS)).await;
        pb.users = REGISTRATIONS;
        registrations.push((backend, rate));
        for &size in &sizes {
            // The last batch before the size is timed: registrations/s at about that size.
            let mut last = rate;
            while pb.users < size {
                let n = (size - pb.users).min(REGISTRATIONS);
                last = post_all(pb.addr, sign(pb.users, n)).await;
                pb.users += n;
            }
            let names = Arc::new(sample(pb.users));
            if bare.is_none() {
                // The bare handler returns a body of exactly the size of a real lookup's.
                let body = reqwest::get(format!("http://{}{}", pb.addr, names[0]))
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                bare = Some(spawn(Command::new(std::env::current_exe().unwrap()).env(BARE, &body)));
            }
            let bare_addr = bare.as_ref().unwrap().1;
            // A warm-up, not counted: the fill's last writes settle, caches fill.
            warm_up(&[pb.addr], names.clone()).await;
            // Two runs each, alternating; the best of each.
            let (mut real, mut base) = (Vec::new(), Vec::new());
            for _ in 0..2 {
                real.push(load(&[pb.addr], names.clone()).await);
                base.push(load(&[bare_addr], names.clone()).await);
            }
            rows.push(Row {
                backend,
                users: pb.users,
                registrations: last,
                lookups: best(&real),
                bare: best(&base),
                rss_mib: rss_kib(&pb.child) / 1024,
            });
        }
        if let Some(url) = &url {
            // A second instance over the same database: the load split over both.
            let other = start(&dir.path().join("second"), Some(url));
            let names = Arc::new(sample(pb.users));
            warm_up(&[other.addr], names.clone()).await;
            let (mut one, mut both) = (Vec::new(), Vec::new());
            for _ in 0..2 {
                one.push(load(&[pb.addr], names.clone()).await);
                both.push(load(&[pb.addr, other.addr], names.clone()).await);
            }
            two = Some((pb.users, best(&one), best(&both)));
            let mut other = other;
            other.child.kill().unwrap();
        }
        pb.child.kill().unwrap();
    }
    if let Some((mut child, _)) = bare {
        child.kill().unwrap();
    }

    println!();
    println!(
        "tincan-phonebook benchmark: {CONNECTIONS} keep-alive connections, {LOOKUP_SECONDS} s per run, \
         best of 2 runs alternating with the baseline; lookups of {LOOKUP_NAMES} names drawn from \
         every registered user"
    );
    println!();
    println!(
        "| backend | users | lookups/s | p50 / p99 | baseline lookups/s (bare axum) | ratio | registrations/s (last {REGISTRATIONS}) | RSS |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {:.0} | {} / {} | {:.0} | {:.2} | {:.0} | {} MiB |",
            r.backend,
            r.users,
            r.lookups.rate,
            ms(r.lookups.p50),
            ms(r.lookups.p99),
            r.bare.rate,
            r.lookups.rate / r.bare.rate,
            r.registrations,
            r.rss_mib
        );
    }
    println!();
    for (backend, rss) in &rss_empty {
        println!("- {backend}: RSS just started, empty: {} MiB", rss / 1024);
    }
    for (backend, rate) in &registrations {
        println!(
            "- {backend}: {rate:.0} signed registrations/s (durable, {REGISTRATIONS} new users)"
        );
    }
    for &size in &sizes {
        let of = |b: &str| rows.iter().find(|r| r.backend == b && r.users == size);
        if let (Some(redb), Some(pg)) = (of("redb"), of("PostgreSQL")) {
            println!(
                "- at {size} users, PostgreSQL / redb lookups: {:.2}",
                pg.lookups.rate / redb.lookups.rate
            );
        }
    }
    if let Some((users, one, both)) = two {
        println!(
            "- PostgreSQL at {users} users: one instance {:.0} lookups/s (p99 {}), two instances \
             over one database {:.0} lookups/s (p99 {}): {:.2}x",
            one.rate,
            ms(one.p99),
            both.rate,
            ms(both.p99),
            both.rate / one.rate
        );
    }
    println!();
}

fn best(runs: &[Load]) -> Load {
    runs.iter().max_by(|a, b| a.rate.total_cmp(&b.rate)).unwrap().clone()
}

/// `LOOKUP_NAMES` lookup paths spread over the `users` registered (`u0`…), in a scrambled
/// order, so that no backend is measured on a hot few.
fn sample(users: usize) -> Vec<String> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..LOOKUP_NAMES)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            format!("/peers/u{}", x % users as u64)
        })
        .collect()
}

#[derive(Clone)]
struct Load {
    rate: f64,
    p50: Duration,
    p99: Duration,
}

async fn warm_up(addrs: &[SocketAddr], paths: Arc<Vec<String>>) {
    load_for(addrs, paths, Duration::from_secs(2)).await;
}

async fn load(addrs: &[SocketAddr], paths: Arc<Vec<String>>) -> Load {
    load_for(addrs, paths, Duration::from_secs(LOOKUP_SECONDS)).await
}

/// GETs `paths` round-robin over 64 connections (spread over `addrs`) for `length`;
/// requests/s and latency.
async fn load_for(addrs: &[SocketAddr], paths: Arc<Vec<String>>, length: Duration) -> Load {
    let deadline = Instant::now() + length;
    let mut tasks = Vec::new();
    for c in 0..CONNECTIONS {
        let paths = paths.clone();
        let addr = addrs[c % addrs.len()];
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(addr).await;
            let mut latencies = Vec::new();
            let mut i = c;
            while Instant::now() < deadline {
                let request = hyper::Request::get(&paths[i % paths.len()])
                    .header("host", "bench")
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                let t = Instant::now();
                let response = sender.send_request(request).await.unwrap();
                assert!(response.status().is_success(), "{}", response.status());
                response.into_body().collect().await.unwrap();
                latencies.push(t.elapsed());
                i += CONNECTIONS;
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    Load {
        rate: all.len() as f64 / length.as_secs_f64(),
        p50: all[all.len() / 2],
        p99: all[all.len() * 99 / 100],
    }
}

/// POSTs every record over 64 connections; registrations/s.
async fn post_all(addr: SocketAddr, records: Vec<(String, Vec<u8>)>) -> f64 {
    let total = records.len();
    let queue = Arc::new(std::sync::Mutex::new(records));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let queue = queue.clone();
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(addr).await;
            loop {
                let Some((path, body)) = queue.lock().unwrap().pop() else { break };
                let request = hyper::Request::post(path)
                    .header("host", "bench")
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(body)))
                    .unwrap();
                let response = sender.send_request(request).await.unwrap();
                assert_eq!(response.status(), 201);
                response.into_body().collect().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    total as f64 / started.elapsed().as_secs_f64()
}

/// Records for users `u{from}`… `u{from + n - 1}`, each with a key of its own, signed.
fn sign(from: usize, n: usize) -> Vec<(String, Vec<u8>)> {
    let addrs = vec!["/ip4/127.0.0.1/tcp/4001".parse().unwrap()];
    (from..from + n)
        .map(|i| {
            let name = Username::new(&format!("u{i}")).unwrap();
            let id = Identity::generate().unwrap();
            // Records live as long as the phonebook allows (300 s): the bench stays within it.
            let record =
                SignedRecord::sign(&id, &name, &addrs, now().0, UnixMillis(now().0 + 290_000));
            (format!("/peers/{name}"), serde_json::to_vec(&record).unwrap())
        })
        .collect()
}

async fn connect(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    sender
}

/// The baseline: an axum handler that returns a fixed JSON body, on the same runtime.
fn bare_server(body: String) {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async move {
        let body: &'static str = Box::leak(body.into_boxed_str());
        let app = axum::Router::new().route(
            "/peers/{username}",
            axum::routing::get(
                move || async move { ([("content-type", "application/json")], body) },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("listening on {}", listener.local_addr().unwrap());
        axum::serve(listener, app).await.unwrap();
    });
}

fn spawn(command: &mut Command) -> (Child, SocketAddr) {
    let mut child = command.env("RUST_LOG", "error").stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("listening on ").unwrap().parse().unwrap();
    (child, addr)
}

fn rss_kib(child: &Child) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .unwrap()
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn now() -> UnixMillis {
    UnixMillis(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
            as u64,
    )
}
