//! The `tincan` binary end to end: real processes, a temporary home per world, a real
//! phonebook process or the zero-configuration local one.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

use common::*;
use serde_json::Value;

#[test]
fn init_then_a_wrong_password_changes_nothing() {
    let world = World::new();
    world.init("alice", &[]);
    let key = world.data().join("alice/identity.key");
    assert!(key.exists());
    let again = world.run("alice", &["init", "--username", "alice"]);
    assert!(again.status.success());
    assert!(stderr(&again).contains("already has an identity"));

    let before = snapshot(&world.data());
    let wrong = world.dir.path().join("wrong");
    let out =
        world.tincan("alice", &["contacts"]).arg("--password-file").arg(&wrong).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("wrong password"), "{}", stderr(&out));
    assert_eq!(snapshot(&world.data()), before, "a wrong password changes no file");

    let out = world.run("nobody", &["contacts"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("init"), "{}", stderr(&out));
    let bad = world.run("bad", &["init", "--username", "Not Valid!"]);
    assert!(!bad.status.success());
}

/// Alice and bob through a real phonebook process: plain-mode chat both ways, `send`, `log`
/// and `inbox` with `--json`, `export`.
#[test]
fn alice_and_bob_through_a_phonebook() {
    let world = World::new();
    let pb = Phonebook::start(&world.dir.path().join("pb"));
    let opts = ["--phonebook", pb.url.as_str()];
    world.init("alice", &opts);
    world.init("bob", &opts);
    let bob = world.spawn("bob", &["--phonebook", &pb.url, "bot", "echo"], "Echo bot");
    chat_with_echo(&world, "alice", &opts);
    let out = world.run("alice", &["--phonebook", &pb.url, "send", "bob", "second", "message"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("Delivered"));
    bob.interrupt();

    let out = world.run("alice", &["log", "bob", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let log: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let texts: Vec<&str> =
        log["messages"].as_array().unwrap().iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert!(
        texts.contains(&"hello from plain mode") && texts.contains(&"second message"),
        "{texts:?}"
    );
    let mine =
        log["messages"].as_array().unwrap().iter().find(|m| m["text"] == "second message").unwrap();
    assert_eq!(mine["status"], "delivered");

    let out = world.run("bob", &["inbox", "--json"]);
    let inbox: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(inbox[0]["contact"]["username"], "alice");
    assert_eq!(inbox[0]["messages"].as_array().unwrap().len(), 2);
    let out = world.run("bob", &["inbox"]);
    assert!(stdout(&out).contains("No new messages"), "inbox marks read: {}", stdout(&out));

    let out = world.run("bob", &["export"]);
    let export: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(export["username"], "bob");
    assert_eq!(export["conversations"][0]["contact"]["username"], "alice");

    let file = world.dir.path().join("export.json");
    let out = world.run("alice", &["export", "bob", "-o", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let out = world.run("alice", &["contacts", "--json"]);
    let contacts: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(contacts[0]["username"], "bob");
    let out = world.run("alice", &["verify", "bob"]);
    assert!(stdout(&out).contains("Safety number with bob"), "{}", stdout(&out));
    let digits: usize = stdout(&out)
        .lines()
        .filter(|l| l.starts_with("    "))
        .map(|l| l.split_whitespace().count())
        .sum();
    assert_eq!(digits, 12, "twelve groups of five digits");
}

/// `chat USER --plain` as `who`: a line goes out, the echo comes back on stdout.
fn chat_with_echo(world: &World, who: &str, extra: &[&str]) {
    let mut args = extra.to_vec();
    args.extend(["chat", "bob", "--plain"]);
    let mut child = world
        .tincan(who, &args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "hello from plain mode").unwrap();
    let (tx, rx) = std::sync::mpsc::sync_channel(1024);
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let echo = rx.recv_timeout(Duration::from_secs(30)).expect("the echo came back");
    assert!(echo.ends_with("bob: echo: hello from plain mode"), "{echo}");
    writeln!(stdin, "--DISCONNECT--").unwrap();
    let status = child.wait().unwrap();
    assert!(status.success());
}

/// No phonebook configured: the bot hosts the local phonebook, and alice finds bob there.
#[test]
fn zero_configuration_on_one_machine() {
    let world = World::new();
    world.init("alice", &[]);
    world.init("bob", &[]);
    let bob = world.spawn("bob", &["bot", "echo"], "Echo bot");
    let out = world.run("alice", &["online", "--json"]);
    let online: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(online.as_array().unwrap().iter().any(|u| u["username"] == "bob"), "{online}");
    chat_with_echo(&world, "alice", &[]);
    let out = world.run("alice", &["send", "bob", "zero", "config"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    bob.interrupt();
    let out = world.run("bob", &["log", "alice"]);
    assert!(stdout(&out).contains("alice: zero config"), "{}", stdout(&out));
}

#[test]
fn send_exit_codes_tell_queued_delivered_and_failed_apart() {
    let world = World::new();
    world.init("alice", &[]);
    world.init("bob", &[]);
    // Bob is known (his name is bound at the local phonebook) but not running.
    let host = world.spawn("bob", &["bot", "echo"], "Echo bot");
    let out = world.run("alice", &["send", "bob", "first"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    host.interrupt();
    // Nobody hosts the phonebook now: alice hosts it herself; bob is offline.
    let out = world.run("alice", &["send", "--timeout", "2", "bob", "while you were out"]);
    assert_eq!(out.status.code(), Some(4), "queued: {}", stderr(&out));
    let out = world.run("alice", &["send", "--no-wait", "bob", "later"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // Bob blocks alice: what she sends is refused.
    let out = world.run("bob", &["block", "alice"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let bob = world.spawn("bob", &["bot", "echo"], "Echo bot");
    let out = world.run("alice", &["send", "--timeout", "30", "bob", "let me in"]);
    assert_eq!(out.status.code(), Some(5), "refused: {}", stderr(&out));
    assert!(stderr(&out).contains("blocked"), "{}", stderr(&out));
    bob.interrupt();
    let out = world.run("alice", &["send", "nosuchuser", "hi"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no such user"), "{}", stderr(&out));
}

/// `doctor` against a phonebook with a relay (on loopback the relay can dial us back: public),
/// and against one without (reachability cannot be tested: exit 6, with advice).
#[test]
fn doctor_reports_reachability_and_advice() {
    let world = World::new();
    let relay = ["--relay", "--relay-listen", "/ip4/127.0.0.1/tcp/0", "--relay-probe-private"];
    let pb = Phonebook::start_with(&world.dir.path().join("pb"), &relay);
    let plain = Phonebook::start(&world.dir.path().join("pb2"));
    world.init("alice", &["--phonebook", &pb.url]);
    let listen = ["--listen", "/ip4/127.0.0.1/tcp/0"];

    let out =
        world.run("alice", &["--phonebook", &pb.url, listen[0], listen[1], "doctor", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(
        report["reachability"]["public"].as_str().unwrap().starts_with("/ip4/127.0.0.1/tcp/"),
        "{report}"
    );
    assert_eq!(report["reachable"], true, "{report}");
    assert!(report["relay"]["peer_id"].is_string(), "{report}");
    assert!(report["advice"][0].as_str().unwrap().contains("directly"), "{report}");

    let out = world.run("alice", &["--phonebook", &plain.url, listen[0], listen[1], "doctor"]);
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("Relay         none"), "{text}");
    assert!(text.contains("Reachability  not tested"), "{text}");
    assert!(text.contains("--relay"), "the advice names the fix: {text}");
}

/// Issue 11: with a daemon owning the profile, `bot echo` and `doctor` are its clients rather
/// than refused: the bot answers through the daemon's node, and `doctor` reports what that node
/// learnt of its reachability.
#[test]
fn issue_11_the_echo_bot_and_doctor_work_through_a_daemon() {
    let world = World::new();
    let relay = ["--relay", "--relay-listen", "/ip4/127.0.0.1/tcp/0", "--relay-probe-private"];
    let pb = Phonebook::start_with(&world.dir.path().join("pb"), &relay);
    let at = ["--phonebook", pb.url.as_str(), "--listen", "/ip4/127.0.0.1/tcp/0"];
    world.init("alice", &at[..2]);
    world.init("bob", &at[..2]);
    let daemon = world.spawn("alice", &[&at[..], &["daemon"]].concat(), "the API is on");
    let bot = world.spawn(
        "alice",
        &[&at[..2], &["bot", "echo"]].concat(),
        "through the tincan that owns this profile",
    );
    let bob = world.spawn("bob", &[&at[..], &["daemon"]].concat(), "the API is on");
    let out = world.run("bob", &["send", "alice", "hello", "bot"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let out = world.run("bob", &["log", "alice"]);
        if stdout(&out).contains("alice: echo: hello bot") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no echo: {}", stdout(&out));
        std::thread::sleep(std::time::Duration::from_millis(300));
    }

    let out = world.run("alice", &[&at[..2], &["doctor", "--wait", "30"]].concat());
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert!(stderr(&out).contains("Asking the tincan that owns this profile"), "{}", stderr(&out));
    assert!(text.contains("Reachability  public, dialable at /ip4/127.0.0.1/tcp/"), "{text}");
    bot.interrupt();
    daemon.interrupt();
    bob.interrupt();
}

/// Issue 16: `log` shows full dates, in text and JSON, and `--grep` finds messages in the
/// whole conversation; a text longer than one message is sent as several, none cut; the echo
/// bot of the README creates its identity on its first run.
#[test]
fn issue_16_log_dates_grep_and_long_texts() {
    let world = World::new();
    world.init("alice", &[]);
    // The README's line, as written: no `init` first.
    let bob = {
        let mut child = world
            .tincan("echo", &["bot", "echo"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(child.stdin.as_mut().unwrap(), "echo").unwrap();
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut seen = String::new();
        loop {
            let mut line = String::new();
            assert!(err.read_line(&mut line).unwrap() > 0, "the bot ended: {seen}");
            seen.push_str(&line);
            if line.contains("Echo bot") {
                break;
            }
        }
        std::thread::spawn(move || for _ in err.lines() {});
        Running { child }
    };
    let long = format!("{} THE END", "dinner plans ".repeat(400));
    let out = world.run("alice", &["send", "echo", &long]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("sent as 2 messages"), "{}", stderr(&out));
    assert_eq!(world.run("alice", &["send", "echo", "something else"]).status.code(), Some(0));
    bob.interrupt();
    let out = world.run("alice", &["log", "echo", "--grep", "THE END"]);
    let text = stdout(&out);
    let today = chrono_today();
    assert!(text.contains(&format!("[{today} ")), "full dates: {text}");
    assert!(text.contains("THE END") && !text.contains("something else"), "{text}");
    let out = world.run("alice", &["log", "echo", "--json"]);
    let log: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let first = &log["messages"][0];
    // Times are ms since the epoch (`specs/rpc.md`): ours, and the sender's claim.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let time = first["time"].as_u64().unwrap();
    assert!(time.abs_diff(now.as_millis() as u64) < 3_600_000, "{first}");
    assert!(first["claimed_time"].is_u64(), "{first}");
    let joined: String = log["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["direction"] == "outgoing")
        .map(|m| m["text"].as_str().unwrap())
        .take(2)
        .collect();
    assert_eq!(joined, long, "the pieces, in order, are the text");
}

/// Today's date as `log` prints it, by the local clock of this machine.
fn chrono_today() -> String {
    let out = std::process::Command::new("date").arg("+%Y-%m-%d").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
