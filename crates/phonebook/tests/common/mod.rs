//! Runs the real `tincan-phonebook` binary on 127.0.0.1 with an ephemeral port.

#![allow(dead_code, clippy::unwrap_used)] // Each test file uses a different subset.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub mod postgres;

use tincan_identity::Identity;
use tincan_phonebook::{Client, SignedRecord};
use tincan_wire::Username;

pub struct Phonebook {
    pub child: Child,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    args: Vec<String>,
}

impl Phonebook {
    /// Starts a server with its data in `data_dir` and `extra` flags; writes are not rate
    /// limited unless `extra` says so.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Phonebook {
        let mut args: Vec<String> =
            vec!["--listen".into(), "127.0.0.1:0".into(), "--data-dir".into()];
        args.push(data_dir.display().to_string());
        if !extra.iter().any(|a| a.starts_with("--writes-per-minute")) {
            args.extend(["--writes-per-minute".into(), "0".into()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        Phonebook::spawn(data_dir, args)
    }

    /// Like [`Phonebook::start`], with the bindings kept by `backend`.
    pub fn start_on(backend: &Backend, data_dir: &Path, extra: &[&str]) -> Phonebook {
        let mut all: Vec<&str> = backend.args().collect();
        all.extend_from_slice(extra);
        Phonebook::start(data_dir, &all)
    }

    fn spawn(data_dir: &Path, args: Vec<String>) -> Phonebook {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tincan-phonebook"))
            .args(&args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        // With --relay, a "relay …" line comes first.
        while line.is_empty() || line.starts_with("relay ") {
            line.clear();
            if stdout.read_line(&mut line).unwrap() == 0 {
                panic!("the phonebook exited before listening");
            }
        }
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        Phonebook { child, addr: addr.parse().unwrap(), data_dir: data_dir.to_owned(), args }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn client(&self) -> Client {
        Client::new(&self.url()).unwrap()
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        let status = wait_timeout(&mut self.child, Duration::from_secs(15))
            .expect("stops within 15 s after SIGTERM");
        std::mem::forget(self);
        status
    }

    /// Kills the server with SIGKILL, as a crash would.
    pub fn crash(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        std::mem::forget(self);
    }

    /// Starts the same server again on a new port.
    pub fn restart_args(&self) -> Vec<String> {
        self.args.clone()
    }

    pub fn respawn(data_dir: &Path, args: Vec<String>) -> Phonebook {
        Phonebook::spawn(data_dir, args)
    }
}

/// Where a phonebook under test keeps its bindings: the tests of the binding rules run on
/// both (`on_both!`).
pub enum Backend {
    /// The embedded redb file in the data directory.
    Redb,
    /// A fresh database on a real PostgreSQL server started for the test.
    Postgres { server: std::sync::Arc<postgres::Postgres>, url: String },
}

impl Backend {
    /// A fresh PostgreSQL database, or `None` where PostgreSQL cannot run here (said loudly;
    /// under CI, where `.ci/run` installs it, that is a failure).
    pub fn postgres() -> Option<Backend> {
        match postgres::Postgres::start() {
            Ok(server) => {
                let url = server.database();
                Some(Backend::Postgres { server: std::sync::Arc::new(server), url })
            }
            Err(why) if std::env::var_os("CI").is_some() => {
                panic!("CI installs PostgreSQL, but it cannot run: {why}")
            }
            Err(why) => {
                eprintln!("!!! SKIPPED on PostgreSQL: {why}");
                None
            }
        }
    }

    /// The phonebook's flags for this backend.
    pub fn args(&self) -> impl Iterator<Item = &str> {
        let url = match self {
            Backend::Redb => None,
            Backend::Postgres { url, .. } => Some(url.as_str()),
        };
        url.into_iter().flat_map(|url| ["--database", url])
    }
}

/// Runs each named `async fn(Backend)` twice: as `NAME::redb` and `NAME::postgres`.
#[macro_export]
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn redb() {
                super::$name(super::common::Backend::Redb).await
            }
            #[tokio::test]
            async fn postgres() {
                if let Some(backend) = super::common::Backend::postgres() {
                    super::$name(backend).await
                }
            }
        }
    )*};
}

impl Drop for Phonebook {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_timeout(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

pub use tincan_wire::UnixMillis;

pub fn now() -> UnixMillis {
    UnixMillis(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
            as u64,
    )
}

pub fn name(s: &str) -> Username {
    Username::new(s).unwrap()
}

pub fn identity() -> Identity {
    Identity::generate().unwrap()
}

pub fn addrs() -> Vec<multiaddr::Multiaddr> {
    vec![
        "/ip4/127.0.0.1/tcp/4001".parse().unwrap(),
        "/ip4/127.0.0.1/udp/4001/quic-v1".parse().unwrap(),
    ]
}

/// A record valid for `ttl_ms` from now, with sequence number `seq`.
pub fn record(id: &Identity, user: &str, seq: u64, ttl_ms: u64) -> SignedRecord {
    SignedRecord::sign(id, &name(user), &addrs(), seq, UnixMillis(now().0 + ttl_ms))
}
