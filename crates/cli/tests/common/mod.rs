//! Runs the real `tincan` binary, each profile in a temporary home, and a real phonebook.

#![allow(dead_code, clippy::unwrap_used)] // Each test file uses a different subset.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub const PASSWORD: &str = "correct horse battery";

/// A temporary world: a home, a data directory (with its own local phonebook, so that tests
/// do not share one), and a password file.
pub struct World {
    pub dir: tempfile::TempDir,
}

impl World {
    pub fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("password"), format!("{PASSWORD}\n")).unwrap();
        std::fs::write(dir.path().join("wrong"), "not the password\n").unwrap();
        World { dir }
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn password_file(&self) -> PathBuf {
        self.dir.path().join("password")
    }

    /// `tincan --profile PROFILE --password-file … ARGS`, in this world.
    pub fn tincan(&self, profile: &str, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tincan"));
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home())
            .env("TINCAN_DATA_DIR", self.data())
            .args(["--profile", profile, "--password-file"])
            .arg(self.password_file())
            .args(args);
        command
    }

    /// Runs to completion.
    pub fn run(&self, profile: &str, args: &[&str]) -> Output {
        self.tincan(profile, args).stdin(Stdio::null()).output().unwrap()
    }

    /// Creates a profile whose username is the profile's name.
    pub fn init(&self, profile: &str, extra: &[&str]) {
        let mut args = vec!["init", "--username", profile];
        args.extend_from_slice(extra);
        let out = self.run(profile, &args);
        assert!(out.status.success(), "init {profile}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Starts a long-running command; returns once its stderr shows `ready`.
    pub fn spawn(&self, profile: &str, args: &[&str], ready: &str) -> Running {
        let mut child = self
            .tincan(profile, args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut reader = BufReader::new(stderr);
        let mut seen = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap() == 0 {
                panic!("{profile} ended before {ready:?}: {seen}");
            }
            seen.push_str(&line);
            if line.contains(ready) {
                break;
            }
        }
        std::thread::spawn(move || for _ in reader.lines() {});
        Running { child }
    }
}

/// A running tincan.
pub struct Running {
    pub child: Child,
}

impl Running {
    /// Stops it as Ctrl-C would, and waits.
    pub fn interrupt(mut self) {
        Command::new("kill").args(["-INT", &self.child.id().to_string()]).status().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("did not stop after SIGINT");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real phonebook process on an ephemeral port.
pub struct Phonebook {
    pub url: String,
    pub addr: String,
    child: Child,
}

impl Phonebook {
    pub fn start(data: &Path) -> Phonebook {
        Phonebook::start_with(data, &[])
    }

    /// Starts one listening on `addr` (to restart it where clients expect it).
    pub fn start_on(data: &Path, addr: &str) -> Phonebook {
        Phonebook::spawn(data, addr, &[])
    }

    /// Starts one with `extra` flags, e.g. `--relay`.
    pub fn start_with(data: &Path, extra: &[&str]) -> Phonebook {
        Phonebook::spawn(data, "127.0.0.1:0", extra)
    }

    fn spawn(data: &Path, listen: &str, extra: &[&str]) -> Phonebook {
        let exe = std::env::current_exe().unwrap();
        let binary = exe.parent().unwrap().parent().unwrap().join("tincan-phonebook");
        static BUILD: std::sync::Once = std::sync::Once::new();
        // Always: cargo does nothing when it is up to date, and a stale one lacks new flags.
        BUILD.call_once(|| {
            let status = Command::new(env!("CARGO"))
                .args(["build", "-q", "-p", "tincan-phonebook", "--bin", "tincan-phonebook"])
                .status()
                .unwrap();
            assert!(status.success());
        });
        let mut child = Command::new(binary)
            .args(["--listen", listen, "--writes-per-minute", "0", "--data-dir"])
            .arg(data)
            .args(extra)
            .stdout(Stdio::piped())
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
        let addr = line.trim().strip_prefix("listening on ").unwrap().to_owned();
        Phonebook { url: format!("http://{addr}"), addr, child }
    }
}

impl Drop for Phonebook {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every file under `dir` with its bytes.
pub fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n != "tincan.log") {
                out.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}
