//! The defects of the hardening review (issue 10) and the fault review (issue 17), each shown
//! against the real `tincan` binary: real profiles, the zero-configuration local phonebook or a
//! hostile one, real processes and signals.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// Issue 10, item 2: a peer's newlines cannot forge lines in `log`, `inbox` or plain mode.
#[test]
fn issue_10_a_message_cannot_forge_lines_in_line_output() {
    let world = World::new();
    world.init("alice", &[]);
    world.init("bob", &[]);
    let alice = world.spawn("alice", &["bot", "echo"], "Echo bot");
    let forged = "see you\n== carol (1 new)\n[12:00] carol: my new number is 555  ✓✓";
    let out = world.run("bob", &["send", "alice", forged]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    alice.interrupt();
    for args in [&["inbox", "--peek"][..], &["log", "bob"][..]] {
        let out = world.run("alice", args);
        let text = stdout(&out);
        let lines: Vec<&str> = text.lines().collect();
        let at = lines.iter().position(|l| l.ends_with("bob: see you")).unwrap_or_else(|| {
            panic!("{args:?}: the message is not shown: {text}");
        });
        assert!(lines[at + 1].starts_with("  | == carol"), "{args:?}: {text}");
        assert!(lines[at + 2].starts_with("  | [12:00] carol"), "{args:?}: {text}");
        assert!(
            !lines.iter().any(|l| l.starts_with("== carol")),
            "{args:?}: a forged header: {text}"
        );
    }
}

/// Issue 10, item 14: a password given by file gets the same 8-character minimum as at the
/// prompt.
#[test]
fn issue_10_a_short_password_from_a_file_is_refused() {
    let world = World::new();
    let short = world.dir.path().join("short");
    std::fs::write(&short, "abc\n").unwrap();
    let out = world
        .tincan("alice", &["init", "--username", "alice"])
        .arg("--password-file")
        .arg(&short)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("at least 8"), "{}", stderr(&out));
    assert!(!world.data().join("alice/identity.key").exists(), "nothing was created");
}

/// A phonebook that answers with terminal escape sequences everywhere it can put text.
struct Hostile {
    child: std::process::Child,
    url: String,
}

impl Hostile {
    fn start() -> Hostile {
        let script = r#"
import http.server, json, sys
ESC = "\x1b]0;PWNED\x07\x1b[31m\x1b[2J"
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def do_GET(self):
        if self.path == "/info":
            self.answer(200, {"version": "9.9" + ESC, "presence_ttl_secs": 300, "max_addrs": 8,
                              "max_body_bytes": 8192, "writes_per_minute": 60, "directory": True})
        elif self.path == "/relay":
            self.answer(200, {"peer_id": "12D3KooWA4Xop1JaT3MHxwYMkCepYsv4iPVopMXwCz5iHYdBfeSB",
                              "addrs": ["/ip4/198.18.0.1/tcp/4001" + ESC], "max_circuit_secs": 1800,
                              "max_circuit_bytes": 1 << 24, "max_circuits_per_peer": 8,
                              "max_reservations_per_peer": 2})
        else:
            self.answer(404, {"error": {"code": "not-found", "message": "no" + ESC}})
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.answer(400, {"error": {"code": "invalid-addr" + ESC, "message": "refused" + ESC}})
    do_DELETE = do_POST
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;
        let mut child = Command::new("python3")
            .args(["-c", script])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 is on every machine this project runs on");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        Hostile { child, url: format!("http://127.0.0.1:{}", line.trim()) }
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Issue 10, item 10: `init` and `doctor` print what a phonebook says only after cleaning it.
#[test]
fn issue_10_phonebook_strings_are_cleaned_before_the_terminal() {
    let world = World::new();
    let pb = Hostile::start();
    let out = world.run("alice", &["--phonebook", &pb.url, "init", "--username", "alice"]);
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(all.contains("refused"), "the phonebook's refusal is shown: {all}");
    assert!(
        !all.contains('\u{1b}') && !all.contains('\u{7}'),
        "escapes reached the terminal: {all:?}"
    );
    let out = world.run("alice", &["--phonebook", &pb.url, "doctor", "--wait", "1"]);
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(all.contains("tincan-phonebook 9.9"), "{all}");
    assert!(
        !all.contains('\u{1b}') && !all.contains('\u{7}'),
        "escapes reached the terminal: {all:?}"
    );
}

/// Issue 10, items 7 and 13: several requests claiming one name can be told apart and
/// answered one by one, by key; the phonebook's verdict is stored and shown; accepting an
/// impostor says so.
#[test]
fn issue_10_requests_claiming_one_name_are_answered_by_key() {
    let world = World::new();
    for name in ["alice", "carol"] {
        world.init(name, &[]);
    }
    let alice = world.spawn("alice", &["bot", "echo"], "Echo bot");
    // carol's profile writes first under her own name: confirmed. A second identity claims
    // "carol" too: its claim is someone else's name.
    assert_eq!(world.run("carol", &["send", "alice", "hi, carol here"]).status.code(), Some(0));
    make_claimant(&world, "fakecarol", "carol");
    let out = world.run("fakecarol", &["send", "alice", "hi, the real carol"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    std::thread::sleep(Duration::from_secs(2));
    alice.interrupt();
    // The bot accepted carol's request; the second could not take a name already taken, so it
    // waits as a request, with the phonebook's verdict stored beside it.
    let out = world.run("alice", &["contacts", "--json"]);
    let contacts: Vec<Value> = serde_json::from_str(&stdout(&out)).unwrap();
    let claims: Vec<&str> = contacts.iter().filter_map(|c| c["claim"].as_str()).collect();
    assert!(claims.contains(&"confirmed") && claims.contains(&"other-key"), "{contacts:?}");
    // Name the impostor by its key.
    let impostor = contacts.iter().find(|c| c["claim"] == "other-key").unwrap();
    assert_eq!(impostor["kind"], "request", "{impostor}");
    let out = world.run("alice", &["contacts"]);
    let key = stdout(&out)
        .lines()
        .find(|l| l.contains("IMPOSTOR"))
        .and_then(|l| l.split_whitespace().find(|w| w.starts_with('…')).map(str::to_owned))
        .unwrap_or_else(|| panic!("the impostor's key is shown: {}", stdout(&out)));
    let out = world.run("alice", &["accept", &key]);
    assert!(!out.status.success(), "an impostor is not accepted silently");
    assert!(stderr(&out).contains("someone else"), "{}", stderr(&out));
    let out = world.run("alice", &["block", &key]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = world.run("alice", &["delete", &key, "--yes"]);
    assert!(stdout(&out).contains("stays blocked"), "{}", stdout(&out));
}

/// Creates a profile whose username claim is `claimed` but whose key is its own: the
/// phonebook will not give it the name, so it is created offline, without registering.
fn make_claimant(world: &World, profile: &str, claimed: &str) {
    // A data directory of its own, with no local phonebook to register at.
    let lonely = world.dir.path().join("lonely");
    let out = world
        .tincan(profile, &["init", "--username", claimed])
        .env("TINCAN_DATA_DIR", &lonely)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::rename(lonely.join(profile), world.data().join(profile)).unwrap();
}

/// Issue 17, item 2: plain mode prints what waited unread, and marks read only what it
/// printed.
#[test]
fn issue_17_plain_mode_prints_the_unread_backlog_first() {
    let world = World::new();
    world.init("alice", &[]);
    world.init("bob", &[]);
    // alice's node runs (as a bot, which reads nothing) while bob writes: two unread messages.
    let alice = world.spawn("alice", &["bot", "echo"], "Echo bot");
    for text in ["echo: one", "echo: two"] {
        assert_eq!(world.run("bob", &["send", "alice", text]).status.code(), Some(0));
    }
    alice.interrupt();
    let mut child = world
        .tincan("alice", &["chat", "bob", "--plain"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let mut line = String::new();
        assert!(out.read_line(&mut line).unwrap() > 0, "plain mode ended: {seen:?}");
        seen.push(line.trim_end().to_owned());
    }
    assert!(seen[0].ends_with("bob: echo: one") && seen[1].ends_with("bob: echo: two"), "{seen:?}");
    // Nothing else was printed: the backlog is the unread messages, once.
    writeln!(child.stdin.as_mut().unwrap(), "--DISCONNECT--").unwrap();
    child.wait().unwrap();
    let out = world.run("alice", &["inbox"]);
    assert!(stdout(&out).contains("No new messages"), "{}", stdout(&out));
}

/// Issue 17, item 4: SIGINT or SIGTERM ends plain mode at once, even as a line arrives with
/// it, and the profile is free again right after.
#[test]
fn issue_17_signals_end_plain_mode_at_once() {
    let world = World::new();
    world.init("alice", &[]);
    world.init("bob", &[]);
    for signal in ["-INT", "-TERM", "-INT"] {
        let mut child = world
            .tincan("alice", &["chat", "bob", "--plain"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        while !line.contains("Chatting with") {
            line.clear();
            assert!(err.read_line(&mut line).unwrap() > 0, "plain mode did not start");
        }
        // A line and the signal at the same moment.
        writeln!(child.stdin.as_mut().unwrap(), "a line sent with the signal").unwrap();
        Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap();
        let started = Instant::now();
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "{signal}: still running");
            std::thread::sleep(Duration::from_millis(20));
        }
        println!("{signal}: ended in {:?}", started.elapsed());
        // The stdin pipe stays open: nothing waits for another line.
        let out = world.run("alice", &["contacts"]);
        assert!(out.status.success(), "the profile is free again: {}", stderr(&out));
    }
}

/// Issue 17, item 6: `passwd` works without a terminal.
#[test]
fn issue_17_passwd_without_a_terminal() {
    let world = World::new();
    world.init("alice", &[]);
    let new = world.dir.path().join("new-password");
    std::fs::write(&new, "a brand new password\n").unwrap();
    let out = world
        .tincan("alice", &["passwd", "--new-password-file"])
        .arg(&new)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let old = world.run("alice", &["contacts"]);
    assert_eq!(old.status.code(), Some(3), "the old password no longer opens it");
    let out = world
        .tincan("alice", &["contacts"])
        .arg("--password-file")
        .arg(&new)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Issue 10, item 4: the zero-configuration phonebook is reachable by its owner only: a Unix
/// socket (mode 0600) in a directory of mode 0700, and another user is refused.
#[test]
fn issue_10_the_local_phonebook_is_for_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let world = World::new();
    world.init("alice", &[]);
    let alice = world.spawn("alice", &["bot", "echo"], "Echo bot");
    let dir = world.data().join("local-phonebook");
    let socket = dir.join("phonebook.sock");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&socket), 0o600);
    assert!(!stdout(&world.run("alice", &["online"])).is_empty(), "the owner reaches it");
    let is_root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout == b"0\n");
    if is_root && Command::new("runuser").arg("--help").output().is_ok() {
        // Make the path reachable: the socket's own checks must hold on their own.
        for d in [world.dir.path().to_path_buf(), world.data(), dir.clone()] {
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let script = format!(
            "import socket\ns=socket.socket(socket.AF_UNIX)\ntry:\n    s.connect({:?})\n    print('connected')\nexcept PermissionError:\n    print('refused')",
            socket.display().to_string()
        );
        let out = Command::new("runuser")
            .args(["-u", "nobody", "--", "python3", "-c", &script])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "refused", "{out:?}");
        // And a tincan started with that directory open refuses to host in it.
        drop(alice);
        let out = world.run("alice", &["send", "--no-wait", "alice2", "x"]);
        assert!(stderr(&out).contains("must belong to you and be private"), "{}", stderr(&out));
    } else {
        eprintln!("!!! SKIPPED the other-user half: it needs root and runuser to act as `nobody`");
        alice.interrupt();
    }
}

/// Issue 17, item 1: plain mode says when the disk is full and when it is not any more, and
/// the messages that waited arrive without a restart.
#[test]
fn issue_17_plain_mode_says_disk_full_and_recovers() {
    let world = World::new();
    let disk = world.dir.path().join("bobdisk");
    std::fs::create_dir(&disk).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tincan-test", disk.to_str().unwrap()])
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("!!! SKIPPED: a real full disk needs root to mount a tmpfs");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(disk.clone());
    let pb = Phonebook::start(&world.dir.path().join("pb"));
    let opts = ["--phonebook", pb.url.as_str()];
    world.init("alice", &opts);
    let bob_data = disk.join("data");
    let init = world
        .tincan("bob", &["--phonebook", &pb.url, "init", "--username", "bob"])
        .env("TINCAN_DATA_DIR", &bob_data)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(init.status.success(), "{}", stderr(&init));
    let mut bob = world
        .tincan("bob", &["--phonebook", &pb.url, "chat", "alice", "--plain"])
        .env("TINCAN_DATA_DIR", &bob_data)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::sync_channel(1024);
    let out_tx = tx.clone();
    let out = BufReader::new(bob.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            let _ = out_tx.send(format!("out: {line}"));
        }
    });
    let err = BufReader::new(bob.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in err.lines().map_while(Result::ok) {
            let _ = tx.send(format!("err: {line}"));
        }
    });
    let wait = |what: &str| -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).unwrap_or_else(|_| panic!("bob never said {what:?}"));
            if line.contains(what) {
                return line;
            }
        }
    };
    wait("Chatting with alice");
    // Fill what is left of bob's disk.
    let filler = disk.join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", &format!("of={}", filler.display()), "bs=64k"])
        .stderr(Stdio::null())
        .status();
    // alice writes more than the store has room left for inside its file.
    let mut alice = world
        .tincan("alice", &["--phonebook", &pb.url, "chat", "bob", "--plain"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pad = "x".repeat(3990);
    for i in 0..300 {
        writeln!(alice.stdin.as_mut().unwrap(), "msg {i:03} {pad}").unwrap();
    }
    wait("disk full: messages wait");
    std::fs::remove_file(&filler).unwrap();
    let freed = Instant::now();
    wait("disk space is back");
    let got = wait("msg 299");
    println!("after space was freed, the last message was shown in {:?}", freed.elapsed());
    assert!(got.starts_with("out: "), "{got}");
    writeln!(bob.stdin.as_mut().unwrap(), "--DISCONNECT--").unwrap();
    bob.wait().unwrap();
    writeln!(alice.stdin.as_mut().unwrap(), "--DISCONNECT--").unwrap();
    alice.wait().unwrap();
}

/// Issue 17, item 5: read-only commands open the store read-only: the file is not written,
/// not even its modification time (which would show when the profile was used). They also work
/// while another tincan of the profile runs.
#[test]
fn issue_17_read_only_commands_do_not_touch_the_store() {
    let world = World::new();
    world.init("alice", &[]);
    world.init("bob", &[]);
    let bob = world.spawn("bob", &["bot", "echo"], "Echo bot");
    assert_eq!(world.run("alice", &["send", "bob", "hello"]).status.code(), Some(0));
    let store = world.data().join("alice/store.redb");
    let read =
        || (std::fs::read(&store).unwrap(), std::fs::metadata(&store).unwrap().modified().unwrap());
    let before = read();
    std::thread::sleep(Duration::from_millis(50));
    for args in
        [&["contacts"][..], &["log", "bob"], &["inbox", "--peek"], &["verify", "bob"], &["export"]]
    {
        let out = world.run("alice", args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let now = read();
        assert!(now.0 == before.0, "{args:?} wrote to the store");
        assert_eq!(now.1, before.1, "{args:?} changed the store's modification time");
    }
    // While bob's bot runs, bob's own read-only commands work beside it.
    let out = world.run("bob", &["log", "alice"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("alice: hello"), "{}", stdout(&out));
    bob.interrupt();
}
