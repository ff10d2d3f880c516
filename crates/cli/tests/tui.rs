//! The chat screen end to end, driven like a new user would in a real terminal (tmux): first
//! run, open a chat, send, see it delivered on the other side, `--DISCONNECT--`, choose someone
//! else, quit, and find the terminal as it was.

#![allow(clippy::unwrap_used, clippy::print_stdout)] // Tests fail loudly on purpose.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

struct Tmux {
    session: String,
}

/// `tmux` on the server of `session` (`-L`: one server per test).
fn tmux_on(session: &str) -> Command {
    let mut command = Command::new("tmux");
    command.args(["-L", session]);
    command
}

impl Tmux {
    fn start(world: &World) -> Tmux {
        Tmux::named(world, "main")
    }

    /// A tmux server of its own per test: a session started in a running server gets that
    /// server's environment (another test's HOME and data directory), not ours.
    fn named(world: &World, name: &str) -> Tmux {
        let session = format!("tincan-test-{}-{name}", std::process::id());
        let status = tmux_on(&session)
            .args(["new-session", "-d", "-s", &session, "-x", "110", "-y", "30", "sh"])
            .env("HOME", world.home())
            .env("TINCAN_DATA_DIR", world.data())
            .env("PS1", "$ ")
            .status()
            .expect("tmux is installed (.ci/run installs it)");
        assert!(status.success());
        Tmux { session }
    }

    fn keys(&self, keys: &[&str]) {
        let status = tmux_on(&self.session)
            .arg("send-keys")
            .arg("-t")
            .arg(&self.session)
            .args(keys)
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn type_line(&self, text: &str) {
        // tmux would read a leading '-' as a flag: send that character by its code.
        let rest = match text.strip_prefix('-') {
            Some(rest) => {
                self.keys(&["-H", "2d"]);
                rest
            }
            None => text,
        };
        if let Some(rest) = rest.strip_prefix('-') {
            self.keys(&["-H", "2d"]);
            self.keys(&["-l", rest]);
        } else if !rest.is_empty() {
            self.keys(&["-l", rest]);
        }
        self.keys(&["Enter"]);
    }

    fn screen(&self) -> String {
        let out =
            tmux_on(&self.session).args(["capture-pane", "-p", "-t", &self.session]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the screen shows `text`: a minute at most, which a loaded CI machine needs
    /// when a step dials a peer that is gone.
    fn wait_for(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return screen;
            }
            assert!(Instant::now() < deadline, "the screen never showed {text:?}:\n{screen}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = tmux_on(&self.session).arg("kill-server").status();
    }
}

#[test]
fn a_new_user_chats_disconnects_switches_and_quits() {
    let world = World::new();
    // The other side: bob in plain mode (we read what he receives), carol an echo bot.
    world.init("bob", &[]);
    world.init("carol", &[]);
    let carol = world.spawn("carol", &["bot", "echo"], "Echo bot");

    let tmux = Tmux::start(&world);
    let exe = env!("CARGO_BIN_EXE_tincan");
    // First run, as a new user would: no profile yet.
    tmux.type_line(&format!("{exe} --profile alice; echo EXITED:$?"));
    tmux.wait_for("Choose a username");
    tmux.type_line("alice");
    tmux.wait_for("Choose a password");
    tmux.type_line(PASSWORD);
    tmux.wait_for("Type it again");
    tmux.type_line(PASSWORD);
    tmux.wait_for("Nobody chosen");
    let screen = tmux.screen();
    assert!(!screen.contains(PASSWORD), "the password is never shown");

    // Bob listens in plain mode for alice.
    let mut bob = world
        .tincan("bob", &["chat", "alice", "--plain"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let bob_out = BufReader::new(bob.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::sync_channel(1024);
    std::thread::spawn(move || {
        for line in bob_out.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });

    // Type a username to open the chat, as in the original.
    tmux.type_line("bob");
    tmux.wait_for("Chatting with bob");
    tmux.type_line("hello bob, from the screen");
    let got = rx.recv_timeout(Duration::from_secs(30)).expect("bob received the message");
    assert!(got.ends_with("alice: hello bob, from the screen"), "{got}");
    tmux.wait_for("✓✓");
    // Bob answers; alice sees it.
    writeln!(bob.stdin.as_mut().unwrap(), "hi alice, got it").unwrap();
    tmux.wait_for("hi alice, got it");

    tmux.type_line("--DISCONNECT--");
    tmux.wait_for("Conversation with bob ended");
    // Choose someone else.
    tmux.type_line("carol");
    tmux.wait_for("Chatting with carol");
    tmux.type_line("ping carol");
    tmux.wait_for("echo: ping carol");
    // Resize: the screen redraws at the new size.
    tmux_on(&tmux.session)
        .args(["resize-window", "-t", &tmux.session, "-x", "70", "-y", "20"])
        .status()
        .unwrap();
    tmux.wait_for("echo: ping carol");
    tmux.type_line("/quit");
    let screen = tmux.wait_for("EXITED:0");
    println!("after quitting:\n{screen}");
    assert!(!screen.contains("Contacts"), "the alternate screen is gone");
    // The terminal is back in cooked mode: echo and line editing on.
    tmux.type_line(
        "stty -a | tr ' ' '\\n' | grep -x -e icanon -e echo | sort | tr '\\n' ' '; echo",
    );
    tmux.wait_for("echo icanon");

    writeln!(bob.stdin.as_mut().unwrap(), "--DISCONNECT--").unwrap();
    bob.wait().unwrap();
    carol.interrupt();
}

/// The number that `verify` shows for `a` and `b`, read from their key files, as its two rows
/// of six groups.
fn safety_number(world: &World, a: &str, b: &str) -> [String; 2] {
    let key = |p: &str| {
        tincan_identity::read_public_key(&world.data().join(p).join("identity.key")).unwrap()
    };
    let number = tincan_identity::safety_number(&key(a), &key(b)).to_string();
    let groups: Vec<&str> = number.split(' ').collect();
    [groups[..6].join(" "), groups[6..].join(" ")]
}

/// Issue 10, item 1, the whole attack in the chat screen: a reset (or malicious) phonebook
/// serves mallory's key for bob. alice cannot reach /trust having seen only the old number:
/// /trust shows the NEW number first, labelled as new, beside the old one; /reject keeps the
/// old key, and the phonebook's answer no longer raises a key change.
#[test]
fn issue_10_a_changed_key_is_verified_by_its_new_number() {
    let world = World::new();
    let pb = Phonebook::start(&world.dir.path().join("pb"));
    let opts = ["--phonebook", pb.url.as_str()];
    world.init("alice", &opts);
    world.init("bob", &opts);
    let bob = world.spawn("bob", &["--phonebook", &pb.url, "bot", "echo"], "Echo bot");

    let tmux = Tmux::named(&world, "keychange");
    let exe = env!("CARGO_BIN_EXE_tincan");
    let password = world.password_file();
    tmux.type_line(&format!(
        "{exe} --profile alice --phonebook {} --password-file {}; echo EXITED:$?",
        pb.url,
        password.display()
    ));
    tmux.wait_for("Nobody chosen");
    tmux.type_line("bob");
    tmux.wait_for("Chatting with bob");
    tmux.type_line("hi bob");
    tmux.wait_for("echo: hi bob");
    bob.interrupt();

    // The phonebook loses its data (or lies): mallory takes the name bob.
    let addr = pb.addr.clone();
    drop(pb);
    let pb = Phonebook::start_on(&world.dir.path().join("pb-reset"), &addr);
    let out = world.run("mallory", &["--phonebook", &pb.url, "init", "--username", "bob"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mallory = world.spawn("mallory", &["--phonebook", &pb.url, "bot", "echo"], "Echo bot");

    // alice writes; her node finds the new key and holds the message.
    tmux.type_line("are you still there?");
    tmux.wait_for("KEY CHANGED");
    let real = safety_number(&world, "alice", "bob");
    let fake = safety_number(&world, "alice", "mallory");
    // Straight to /trust: not trusted; the NEW number is shown instead.
    tmux.type_line("/trust");
    let screen = tmux.wait_for("NEW key:");
    println!("after /trust:\n{screen}");
    assert!(screen.contains(&format!("NEW key:  {}", fake[0])), "the new key's number: {screen}");
    assert!(screen.contains(&fake[1]), "the new key's number: {screen}");
    assert!(screen.contains(&format!("old key:  {}", real[0])), "beside the old one: {screen}");
    assert!(screen.contains(&real[1]), "beside the old one: {screen}");
    assert!(screen.contains("compare the NEW number"), "{screen}");
    assert!(!screen.contains("Trusted"), "nothing was trusted: {screen}");
    // The number does not match what bob reads on his screen: alice keeps the old key.
    tmux.type_line("/reject");
    let screen = tmux.wait_for("Kept bob's old key");
    assert!(screen.contains("still wait for the old key"), "{screen}");
    // The phonebook keeps answering with mallory's key: no new key change comes of it.
    std::thread::sleep(Duration::from_secs(12));
    let screen = tmux.screen();
    assert!(!screen.contains("KEY CHANGED"), "a rejected key raised a key change again: {screen}");
    tmux.type_line("/quit");
    tmux.wait_for("EXITED:0");
    let out = world.run("alice", &["contacts", "--json"]);
    let contacts: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(contacts[0]["pending_peer_id"], serde_json::Value::Null, "{contacts}");
    assert_eq!(contacts[0]["rejected_keys"].as_array().map(Vec::len), Some(1), "{contacts}");
    mallory.interrupt();
}
