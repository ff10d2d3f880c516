//! Phonebook benchmark: prints a table. Lookups are measured against a bare axum handler that
//! returns JSON of the same size, in the same run, from the same load generator: 64
//! keep-alive HTTP/1.1 connections from this process (an in-repo hyper client).
//! Run with `cargo bench -p tincan-phonebook --bench phonebook`.

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

const CONNECTIONS: usize = 64;
const LOOKUP_SECONDS: u64 = 5;
const USERS: usize = 1_000;
const REGISTRATIONS: usize = 20_000;
const RSS_USERS: usize = 100_000;
const BARE: &str = "TINCAN_PHONEBOOK_BENCH_BARE";

fn main() {
    if let Ok(body) = std::env::var(BARE) {
        bare_server(body);
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(run());
}

async fn run() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, addr) = spawn(
        Command::new(env!("CARGO_BIN_EXE_tincan-phonebook"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--writes-per-minute",
                "0",
                "--max-connections",
                "4096",
            ])
            .arg("--data-dir")
            .arg(dir.path()),
    );
    let rss_empty = rss_kib(&server);
    let client = tincan_phonebook::Client::new(&format!("http://{addr}")).unwrap();
    let addrs: Vec<multiaddr::Multiaddr> = vec![
        "/ip4/127.0.0.1/tcp/4001".parse().unwrap(),
        "/ip4/127.0.0.1/udp/4001/quic-v1".parse().unwrap(),
    ];
    for i in 0..USERS {
        let id = Identity::generate().unwrap();
        client
            .register(
                &id,
                &Username::new(&format!("user{i}")).unwrap(),
                &addrs,
                Duration::from_secs(300),
                now(),
            )
            .await
            .unwrap();
    }
    // The bare handler returns a body of exactly the size of a real lookup's.
    let sample =
        reqwest::get(format!("http://{addr}/peers/user0")).await.unwrap().text().await.unwrap();
    let (mut bare, bare_addr) =
        spawn(Command::new(std::env::current_exe().unwrap()).env(BARE, &sample));

    let names: Arc<Vec<String>> = Arc::new((0..USERS).map(|i| format!("/peers/user{i}")).collect());
    let mut lookups = Vec::new();
    let mut baseline = Vec::new();
    for _ in 0..2 {
        lookups.push(load(addr, names.clone(), Duration::from_secs(LOOKUP_SECONDS)).await);
        baseline.push(load(bare_addr, names.clone(), Duration::from_secs(LOOKUP_SECONDS)).await);
    }
    bare.kill().unwrap();
    let best =
        |runs: &[Load]| runs.iter().max_by(|a, b| a.rate.total_cmp(&b.rate)).unwrap().clone();
    let (real, bare_run) = (best(&lookups), best(&baseline));

    // Registrations: records signed beforehand, posted over 64 connections.
    let records = sign(REGISTRATIONS, "reg");
    let registered = post_all(addr, records).await;

    // Memory with 100,000 registered users.
    let mut registered_total = USERS + REGISTRATIONS;
    let mut batch = 0;
    while registered_total < RSS_USERS {
        let n = (RSS_USERS - registered_total).min(20_000);
        post_all(addr, sign(n, &format!("rss{batch}"))).await;
        registered_total += n;
        batch += 1;
    }
    let rss_full = rss_kib(&server);
    server.kill().unwrap();

    println!();
    println!(
        "tincan-phonebook benchmark: {CONNECTIONS} keep-alive connections, {LOOKUP_SECONDS} s per run, best of 2 runs"
    );
    println!();
    println!("| measurement | phonebook | baseline | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| lookups/s (GET /peers/NAME, {} B answers) | {:.0} | {:.0} (bare axum handler, same body) | {:.2} |",
        sample.len(),
        real.rate,
        bare_run.rate,
        real.rate / bare_run.rate
    );
    println!(
        "| lookup latency p50 / p99 | {} / {} | {} / {} | |",
        ms(real.p50),
        ms(real.p99),
        ms(bare_run.p50),
        ms(bare_run.p99)
    );
    println!(
        "| signed registrations/s (durable, {REGISTRATIONS} new users) | {registered:.0} | | |"
    );
    println!(
        "| RSS with {RSS_USERS} registered users | {} MiB | {} MiB (empty, just started) | |",
        rss_full / 1024,
        rss_empty / 1024
    );
    println!();
}

#[derive(Clone)]
struct Load {
    rate: f64,
    p50: Duration,
    p99: Duration,
}

/// GETs `paths` round-robin over 64 connections for `length`; requests/s and latency.
async fn load(addr: SocketAddr, paths: Arc<Vec<String>>, length: Duration) -> Load {
    let deadline = Instant::now() + length;
    let mut tasks = Vec::new();
    for c in 0..CONNECTIONS {
        let paths = paths.clone();
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
                assert!(response.status().is_success());
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

fn sign(n: usize, prefix: &str) -> Vec<(String, Vec<u8>)> {
    let addrs = vec!["/ip4/127.0.0.1/tcp/4001".parse().unwrap()];
    (0..n)
        .map(|i| {
            let name = Username::new(&format!("{prefix}{i}")).unwrap();
            let id = Identity::generate().unwrap();
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
