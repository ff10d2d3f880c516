//! Multi-process test harness: real `tincan-node-harness` peers and a real `tincan-phonebook`
//! process, on 127.0.0.1 with ephemeral ports, each peer with its own directory.

#![allow(dead_code, clippy::unwrap_used, clippy::print_stdout)] // Each test uses a different subset.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, sync_channel};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const PASSWORD: &str = "harness password";

/// A running peer process.
pub struct Peer {
    pub name: String,
    pub dir: PathBuf,
    pub peer_id: String,
    pub addrs: Vec<String>,
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<Value>,
    args: Vec<String>,
    netns: Option<String>,
}

/// A command for `program`, run in the network namespace `netns` when given.
pub fn in_netns(netns: Option<&str>, program: impl AsRef<std::ffi::OsStr>) -> Command {
    match netns {
        Some(ns) => {
            let mut command = Command::new("ip");
            command.args(["netns", "exec", ns]).arg(program);
            command
        }
        None => Command::new(program),
    }
}

impl Peer {
    /// Starts `name` with its data in `dir` (created on first start).
    pub fn start(dir: &Path, name: &str, extra: &[String]) -> Peer {
        Peer::start_in(None, dir, name, extra)
    }

    /// Starts `name` in the network namespace `netns`, if given.
    pub fn start_in(netns: Option<&str>, dir: &Path, name: &str, extra: &[String]) -> Peer {
        let mut args =
            vec!["--dir".to_owned(), dir.display().to_string(), "--name".into(), name.into()];
        if !extra.iter().any(|a| a == "--listen") {
            args.extend(["--listen".into(), "/ip4/127.0.0.1/tcp/0".into()]);
        }
        args.extend(extra.iter().cloned());
        let mut child = in_netns(netns, env!("CARGO_BIN_EXE_tincan-node-harness"))
            .args(&args)
            .env("TINCAN_HARNESS_PASSWORD", PASSWORD)
            .env("RUST_LOG", std::env::var("HARNESS_LOG").unwrap_or_else(|_| "warn".into()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = sync_channel(1 << 20);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && tx.send(v).is_err()
                {
                    return;
                }
            }
        });
        let mut peer = Peer {
            name: name.into(),
            dir: dir.into(),
            peer_id: String::new(),
            addrs: Vec::new(),
            child,
            stdin,
            lines,
            args,
            netns: netns.map(str::to_owned),
        };
        let ready = peer.wait(Duration::from_secs(30), |v| v.get("ready").cloned());
        peer.peer_id = ready["peer_id"].as_str().unwrap().to_owned();
        peer.addrs = ready["addrs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect();
        if peer.args.iter().any(|a| a == "--phonebook") {
            // Others can find the peer once its record is published.
            peer.wait(Duration::from_secs(30), |v| v.get("published").map(|_| ()));
        }
        peer
    }

    /// Starts the same peer again, from the same directory.
    pub fn restart(&self) -> Peer {
        let extra: Vec<String> = self.args[4..].to_vec();
        Peer::start_in(self.netns.as_deref(), &self.dir, &self.name, &extra)
    }

    pub fn command(&mut self, command: Value) {
        writeln!(self.stdin, "{command}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// Adds `other` as a contact at its current addresses.
    pub fn add(&mut self, other: &Peer) {
        self.command(json!({"add": {"username": other.name, "peer_id": other.peer_id, "addrs": other.addrs}}));
        self.wait(Duration::from_secs(10), |v| v.get("added").cloned());
    }

    /// Waits for a line that `pick` accepts; panics after `limit`.
    pub fn wait<T>(&mut self, limit: Duration, pick: impl FnMut(&Value) -> Option<T>) -> T {
        match self.wait_at_most(limit, pick) {
            Some(t) => t,
            None => panic!("{}: nothing matching within {limit:?}", self.name),
        }
    }

    /// Waits for a line that `pick` accepts, for at most `limit`: `None` if none came.
    pub fn wait_at_most<T>(
        &mut self,
        limit: Duration,
        mut pick: impl FnMut(&Value) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) => {
                    if let Some(error) = v.get("error") {
                        panic!("{}: {error}", self.name);
                    }
                    if let Some(t) = pick(&v) {
                        return Some(t);
                    }
                }
                Err(RecvTimeoutError::Timeout) => return None,
                Err(RecvTimeoutError::Disconnected) => panic!("{}: the process ended", self.name),
            }
        }
    }

    /// Every line so far, without waiting.
    pub fn drain(&mut self) -> Vec<Value> {
        self.lines.try_iter().collect()
    }

    /// Stops cleanly (takes the phonebook record down) and waits for the exit.
    pub fn quit(mut self) {
        self.command(json!({"quit": true}));
        let status = wait_exit(&mut self.child, Duration::from_secs(30));
        assert!(status.success(), "{} exited with {status}", self.name);
        std::mem::forget(self);
    }

    /// Kills with SIGKILL, as a crash.
    pub fn kill(mut self) -> Vec<Value> {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        let rest = self.drain();
        std::mem::forget(self);
        rest
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the process did not exit within {limit:?}");
}

/// A real phonebook process.
pub struct Phonebook {
    pub url: String,
    /// With `--relay`: the relay's addresses.
    pub relay: Vec<String>,
    child: Child,
    args: Vec<String>,
    netns: Option<String>,
}

impl Phonebook {
    pub fn start(data: &Path) -> Phonebook {
        Phonebook::start_with(data, &[])
    }

    /// Starts a phonebook with `extra` flags, e.g. `--relay`.
    pub fn start_with(data: &Path, extra: &[&str]) -> Phonebook {
        let mut args: Vec<String> = vec![
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--data-dir".into(),
            data.display().to_string(),
            "--writes-per-minute".into(),
            "0".into(),
        ];
        if !extra.contains(&"--presence-ttl") {
            args.extend(["--presence-ttl".into(), "60".into()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        Phonebook::spawn(None, args)
    }

    /// Starts a phonebook in the network namespace `netns` with exactly these arguments.
    pub fn start_in(netns: &str, args: &[impl AsRef<str>]) -> Phonebook {
        let args = args.iter().map(|s| s.as_ref().to_owned()).collect();
        Phonebook::spawn(Some(netns.to_owned()), args)
    }

    /// Starts it again with the same arguments (and so the same data and relay key).
    pub fn restart(&self) -> Phonebook {
        Phonebook::spawn(self.netns.clone(), self.args.clone())
    }

    fn spawn(netns: Option<String>, args: Vec<String>) -> Phonebook {
        let mut child = in_netns(netns.as_deref(), phonebook_binary())
            .args(&args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut relay = Vec::new();
        let mut line = String::new();
        // With --relay, a "relay …" line comes first.
        while line.is_empty() || line.starts_with("relay ") {
            if let Some(addrs) = line.trim().strip_prefix("relay ") {
                relay = addrs.split(' ').map(str::to_owned).collect();
            }
            line.clear();
            if stdout.read_line(&mut line).unwrap() == 0 {
                panic!("the phonebook exited before listening (arguments {args:?})");
            }
        }
        let addr = line.trim().strip_prefix("listening on ").unwrap().to_owned();
        Phonebook { url: format!("http://{addr}"), relay, child, args, netns }
    }

    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        std::mem::forget(self);
    }

    /// Kills the process with SIGKILL, keeping what [`Phonebook::restart`] needs.
    pub fn crash(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Phonebook {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `tincan-phonebook` binary of this workspace, built (or found up to date) once per run.
pub fn phonebook_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let binary = profile_dir.join("tincan-phonebook");
    static BUILD: std::sync::Once = std::sync::Once::new();
    BUILD.call_once(|| {
        // Always: cargo does nothing when it is up to date, and a stale one lacks new flags.
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let status = Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "tincan-phonebook", "--bin", "tincan-phonebook"])
            .args(release.then_some("--release"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap();
        assert!(status.success(), "building tincan-phonebook failed");
    });
    assert!(binary.exists(), "{} is missing", binary.display());
    binary
}

/// The resident set size of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
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

/// Opens a peer's store (after it stopped) and returns its contacts' logs and outboxes.
pub async fn read_store(
    dir: &Path,
) -> (Vec<tincan_store::Contact>, Vec<Vec<tincan_store::LogEntry>>, usize) {
    let identity = tincan_identity::unlock(
        &dir.join("identity.key"),
        &tincan_identity::Password::new(PASSWORD.into()),
    )
    .unwrap();
    let store =
        tincan_store::Store::open(&dir.join("store.redb"), identity.store_root_key()).unwrap();
    let contacts = store.contacts().await.unwrap();
    let mut logs = Vec::new();
    let mut queued = 0;
    for c in &contacts {
        logs.push(store.history(c.conversation, None, usize::MAX).await.unwrap());
        queued += store.outbox(c.conversation, usize::MAX).await.unwrap().len();
    }
    store.close().await;
    (contacts, logs, queued)
}
