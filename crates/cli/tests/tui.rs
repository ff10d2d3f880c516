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
        Tmux::sized(world, name, 110, 30)
    }

    /// A session of `width` × `height`.
    fn sized(world: &World, name: &str, width: u16, height: u16) -> Tmux {
        let session = format!("tincan-test-{}-{name}", std::process::id());
        let (w, h) = (width.to_string(), height.to_string());
        let status = tmux_on(&session)
            .args(["new-session", "-d", "-s", &session, "-x", &w, "-y", &h, "sh"])
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

    /// Pastes `text` as a terminal would: bracketed, if the program asked for it.
    fn paste(&self, text: &str) {
        let status =
            tmux_on(&self.session).args(["set-buffer", "-b", "p", "--", text]).status().unwrap();
        assert!(status.success());
        let status = tmux_on(&self.session)
            .args(["paste-buffer", "-p", "-d", "-b", "p", "-t", &self.session])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// The pane's title, as the program set it.
    fn title(&self) -> String {
        let out = tmux_on(&self.session)
            .args(["display-message", "-p", "-t", &self.session, "#{pane_title}"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Waits until the screen no longer shows `text`.
    fn wait_gone(&self, text: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let screen = self.screen();
            if !screen.contains(text) {
                return screen;
            }
            assert!(Instant::now() < deadline, "the screen still shows {text:?}:\n{screen}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn screen(&self) -> String {
        let out = tmux_on(&self.session)
            .args(["capture-pane", "-p", "-t", &self.session])
            .output()
            .unwrap();
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
    assert_eq!(contacts[0]["pending_key"], serde_json::Value::Null, "{contacts}");
    assert_eq!(contacts[0]["rejected_keys"].as_array().map(Vec::len), Some(1), "{contacts}");
    mallory.interrupt();
}

/// The quick start of README.md, as written: the two commands of its first code block after
/// "Quick start", with `./target/release/tincan` the binary under test.
fn readme_quick_start() -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let section = &readme[readme.find("## Quick start").expect("a quick start")..];
    let block = section.split("```sh").nth(1).unwrap().split("```").next().unwrap();
    block
        .lines()
        .map(|l| l.split('#').next().unwrap().trim())
        .filter(|l| !l.is_empty())
        .map(|l| l.replace("./target/release/tincan", env!("CARGO_BIN_EXE_tincan")))
        .collect()
}

/// First run of a profile in `tmux`, as the README's quick start has it.
fn first_run(tmux: &Tmux, command: &str, name: &str) {
    tmux.type_line(&format!("{command}; echo EXITED:$?"));
    tmux.wait_for("Choose a username");
    tmux.type_line(name);
    tmux.wait_for("Choose a password");
    tmux.type_line(PASSWORD);
    tmux.wait_for("Type it again");
    tmux.type_line(PASSWORD);
    tmux.wait_for("Nobody chosen");
}

/// Issue 16: a new user follows the README's quick start literally, in two terminals, and
/// meets every bug of the review and every feature a terminal user expects, at one size.
fn walk_through(width: u16, height: u16) {
    let world = World::new();
    let quick = readme_quick_start();
    assert_eq!(quick.len(), 2, "{quick:?}");
    let alice = Tmux::sized(&world, &format!("alice{width}"), width, height);
    let bob = Tmux::sized(&world, &format!("bob{width}"), width, height);
    first_run(&alice, &quick[0], "alice");
    first_run(&bob, &quick[1], "bob");

    // bob types alice, as the README says; alice gets a message request and accepts it.
    bob.type_line("Alice");
    let screen = bob.wait_for("Chatting with alice");
    assert!(!screen.contains("Usernames are lowercase") || screen.contains("opening alice"));
    bob.type_line("hi alice, it's bob");
    alice.wait_for("? bob");
    alice.keys(&["Tab"]);
    alice.wait_for("Message request from someone claiming to be bob");
    alice.type_line("/accept");
    alice.wait_for("bob is now a contact");
    alice.wait_for("hi alice, it's bob");
    alice.type_line("hello bob");
    bob.wait_for("alice: hello bob");
    // Presence is the connection, on both sides: the side that was dialled shows it too.
    bob.wait_for("online");
    alice.wait_for("online");
    assert!(!alice.screen().contains("· offline"), "{}", alice.screen());

    // A paste is text: its newlines are not Enter, its commands not run.
    bob.paste("A\nB\n--DISCONNECT--\ncarol\nD");
    let screen = bob.wait_for("5 lines");
    assert!(screen.contains("Chatting with alice") || screen.contains("to alice"), "{screen}");
    assert!(!alice.screen().contains("alice: A") && !bob.screen().contains("Chatting with carol"));
    bob.keys(&["Enter"]);
    alice.wait_for("bob: A");
    let screen = alice.wait_for("--DISCONNECT--");
    assert!(screen.contains("    carol") && screen.contains("    D"), "shown as lines: {screen}");
    assert!(bob.screen().contains("Chatting with alice") || bob.screen().contains("to alice"));

    // Alt-Enter and Ctrl-J add lines to a message.
    bob.keys(&["-l", "first"]);
    bob.keys(&["M-Enter"]);
    bob.keys(&["-l", "second"]);
    bob.keys(&["C-j"]);
    bob.keys(&["-l", "third"]);
    bob.wait_for("3 lines");
    bob.keys(&["Enter"]);
    alice.wait_for("    third");

    // The newest lines stay in view, whatever wraps: 16 short lines, three words of 48, then
    // a short one, as the review reproduced it.
    for n in 0..16 {
        bob.type_line(&format!("short {n}"));
    }
    let word = "w".repeat(48);
    bob.type_line(&format!("{word} {word} {word}"));
    bob.type_line("short after");
    bob.wait_for("bob: short after");
    alice.wait_for("bob: short after");
    // PageUp scrolls a page; End comes back to the newest.
    bob.keys(&["PageUp"]);
    bob.wait_for("lines up");
    bob.keys(&["End"]);
    bob.wait_for("bob: short after");

    // A text longer than a message is sent whole, in pieces, never cut.
    let long = format!("{} END-OF-LONG-TEXT", "lorem ipsum ".repeat(420));
    bob.paste(&long);
    bob.keys(&["Enter"]);
    bob.wait_for("sent as 2 messages");
    alice.wait_for("END-OF-LONG-TEXT");

    // A draft survives Esc and Ctrl-D; the day has its separator.
    bob.keys(&["-l", "a draft"]);
    bob.keys(&["Escape"]);
    bob.keys(&["C-d"]);
    std::thread::sleep(Duration::from_millis(300));
    let screen = bob.screen();
    assert!(screen.contains("a draf"), "the draft stays: {screen}");
    assert!(!screen.contains("EXITED"), "Ctrl-D with a draft does not quit");
    assert!(screen.contains("────"), "a day separator: {screen}");
    bob.keys(&["C-u"]);

    // Search.
    bob.type_line("/search SHORT 1");
    let screen = bob.wait_for("found: SHORT 1");
    assert!(screen.contains("short 1") && screen.contains("short 10"), "{screen}");
    bob.keys(&["Escape"]);

    // A message in another conversation: the status line, and the title's count.
    alice.type_line("--DISCONNECT--");
    alice.wait_for("Conversation with bob ended");
    bob.wait_for("alice ended the conversation");
    bob.type_line("while you are away");
    alice.wait_for("New message from bob");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !alice.title().contains("(1)") {
        assert!(Instant::now() < deadline, "title: {:?}", alice.title());
        std::thread::sleep(Duration::from_millis(100));
    }

    // Blocked, refused, then unblocked and sent again.
    alice.type_line("bob");
    alice.wait_for("Chatting with bob");
    alice.type_line("/block");
    alice.wait_for("bob is blocked");
    let screen = alice.wait_for("⊘ bob is blocked");
    assert!(!screen.contains("/accept or /block"), "the banner is not stale: {screen}");
    bob.type_line("do you hear me");
    bob.wait_for("refused by the recipient");
    alice.type_line("/unblock");
    alice.wait_for("bob is unblocked");
    bob.type_line("/retry");
    bob.wait_for("queued again");
    alice.wait_for("bob: do you hear me");

    // Verified, from inside the screen.
    alice.type_line("/verify");
    alice.wait_for("Your safety number with bob");
    alice.type_line("/verified");
    alice.wait_for("marked verified");

    // Notices do not stay for ever: the status line comes back to who and where.
    alice.wait_gone("marked verified", Duration::from_secs(30));

    bob.type_line("/quit");
    bob.wait_for("EXITED:0");
    alice.type_line("/quit");
    alice.wait_for("EXITED:0");
}

#[test]
fn issue_16_the_walk_through_at_120_by_35() {
    walk_through(120, 35);
}

#[test]
fn issue_16_the_walk_through_at_80_by_24() {
    walk_through(80, 24);
}

/// Issue 16, bugs 5 and 6: what is typed while a password is being checked is neither shown
/// nor taken as the next try; after a crash, the screen starts clean.
#[test]
fn issue_16_type_ahead_and_crash_leftovers() {
    let world = World::new();
    world.init("alice", &[]);
    let tmux = Tmux::named(&world, "typeahead");
    let exe = env!("CARGO_BIN_EXE_tincan");
    tmux.type_line(&format!("{exe} --profile alice; echo EXITED:$?"));
    tmux.wait_for("Password for alice");
    // A wrong password, and type-ahead right behind it while it is checked.
    tmux.keys(&["-l", "not the password"]);
    tmux.keys(&["Enter"]);
    tmux.keys(&["-l", "TYPEAHEAD"]);
    tmux.keys(&["Enter"]);
    tmux.wait_for("Wrong password, try again");
    std::thread::sleep(Duration::from_secs(2));
    let screen = tmux.screen();
    assert!(!screen.contains("TYPEAHEAD"), "type-ahead was echoed: {screen}");
    assert_eq!(screen.matches("Wrong password").count(), 1, "type-ahead was a try: {screen}");
    tmux.type_line(PASSWORD);
    tmux.wait_for("Nobody chosen");
    // A crash: kill -9, then start again; nothing of before shows through. The process is
    // the pane's shell's child: other tests run tincans with the same arguments.
    let shell = tmux_on(&tmux.session)
        .args(["display-message", "-p", "-t", &tmux.session, "#{pane_pid}"])
        .output()
        .unwrap();
    let shell = String::from_utf8_lossy(&shell.stdout).trim().to_owned();
    let pid = std::process::Command::new("pgrep").args(["-P", &shell]).output().unwrap();
    let pid = String::from_utf8_lossy(&pid.stdout).lines().next().unwrap_or_default().to_owned();
    assert!(!pid.is_empty(), "the pane runs tincan");
    std::process::Command::new("kill").args(["-9", &pid]).status().unwrap();
    // The terminal is left raw, on the alternate screen, as after any crash: Enter is not a
    // line feed there, so lines go with Ctrl-J, as a user would type `stty sane` blind.
    std::thread::sleep(Duration::from_millis(500));
    for line in ["stty sane".to_owned(), format!("{exe} --profile alice; echo EXITED:$?")] {
        tmux.keys(&["-l", &line]);
        tmux.keys(&["C-j"]);
    }
    tmux.wait_for("Password for alice");
    tmux.type_line(PASSWORD);
    // The crashed screen is still there, scrolled by the shell: the new one must clear it all,
    // prompt included, before it draws.
    tmux.wait_gone("Password for alice", Duration::from_secs(30));
    let screen = tmux.wait_for("username to chat with");
    assert!(!screen.contains("Password for alice"), "leftovers: {screen}");
    assert!(!screen.contains("EXITED:137") && !screen.contains("stty sane"), "leftovers: {screen}");
    tmux.type_line("/quit");
    tmux.wait_for("EXITED:0");
}

/// `tincan` of `profile` with no password given: it can only work as a client of the owner.
fn without_password(world: &World, profile: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tincan"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", world.home())
        .env("TINCAN_DATA_DIR", world.data())
        .args(["--profile", profile])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Issue 11: while the chat screen runs, every other `tincan` of the profile is its client:
/// `send`, `verify`, `log`, `contacts` and `inbox` work beside it, and ask for no password, and
/// so does a second chat screen.
/// Quitting the screen while a client is still connected says so and waits for it.
#[test]
fn issue_11_commands_work_beside_the_chat_screen() {
    let world = World::new();
    world.init("alice", &[]);
    world.init("bob", &[]);
    let bob = world.spawn("bob", &["bot", "echo"], "Echo bot");
    let tmux = Tmux::named(&world, "beside");
    let exe = env!("CARGO_BIN_EXE_tincan");
    let password = world.password_file();
    tmux.type_line(&format!(
        "{exe} --profile alice --password-file {}; echo EXITED:$?",
        password.display()
    ));
    tmux.wait_for("Nobody chosen");
    tmux.type_line("bob");
    tmux.wait_for("Chatting with bob");
    tmux.type_line("from the screen");
    tmux.wait_for("echo: from the screen");

    let out = without_password(&world, "alice", &["send", "bob", "from", "a", "script"]);
    assert!(out.status.success(), "send beside the screen: {}", stderr(&out));
    assert!(stderr(&out).contains("Delivered"), "{}", stderr(&out));
    // The screen shows what the script sent, as well as the answer.
    tmux.wait_for("alice: from a script");
    tmux.wait_for("echo: from a script");
    let out = without_password(&world, "alice", &["verify", "bob"]);
    assert!(out.status.success(), "verify beside the screen: {}", stderr(&out));
    let number = safety_number(&world, "alice", "bob");
    assert!(
        stdout(&out).contains(&number[0]) && stdout(&out).contains(&number[1]),
        "{}",
        stdout(&out)
    );
    let out = without_password(&world, "alice", &["log", "bob"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let log = stdout(&out);
    assert!(
        log.contains("alice: from the screen") && log.contains("bob: echo: from a script"),
        "{log}"
    );
    let out = without_password(&world, "alice", &["contacts"]);
    assert!(stdout(&out).contains("bob") && stdout(&out).contains("online"), "{}", stdout(&out));
    let out = without_password(&world, "alice", &["inbox", "--peek"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // A second chat screen of alice's is a client of the first: no password, same chat.
    let second = Tmux::named(&world, "second");
    second.type_line(&format!("{exe} --profile alice; echo EXITED:$?"));
    second.wait_for("already runs this profile");
    second.type_line("bob");
    let screen = second.wait_for("Chatting with bob");
    assert!(screen.contains("from the screen"), "the conversation so far: {screen}");
    second.type_line("from the second screen");
    second.wait_for("echo: from the second screen");
    // The first screen shows it too: the owner's node sent it.
    tmux.wait_for("echo: from the second screen");
    second.type_line("/quit");
    second.wait_for("EXITED:0");

    // A client that stays connected: the screen, quitting, says so and serves it.
    let socket = world.data().join("alice").join("daemon.sock");
    let held = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    tmux.type_line("/quit");
    let screen = tmux.wait_for("still use this profile");
    println!("quitting with a client:\n{screen}");
    assert!(!screen.contains("EXITED:0"), "it waits for the client: {screen}");
    drop(held);
    tmux.wait_for("EXITED:0");
    assert!(!socket.exists(), "the socket goes with its owner");
    // With no owner, reading opens the store here: the password is needed again.
    let out = without_password(&world, "alice", &["log", "bob"]);
    assert!(!out.status.success(), "no owner and no password: {}", stdout(&out));
    let out = world.run("alice", &["log", "bob"]);
    assert!(stdout(&out).contains("echo: from a script"), "{}", stderr(&out));
    bob.interrupt();
}

/// Issue 11: `tincan daemon` owns the profile and serves every command; a daemon killed with
/// SIGKILL leaves a stale socket that the next owner replaces; `daemon --stop` stops it
/// cleanly (socket gone, store closed).
#[test]
fn issue_11_the_daemon_serves_commands_and_replaces_a_dead_one() {
    let world = World::new();
    world.init("alice", &[]);
    world.init("bob", &[]);
    let bob = world.spawn("bob", &["bot", "echo"], "Echo bot");
    let mut daemon = world.spawn("alice", &["daemon"], "the API is on");
    let socket = world.data().join("alice").join("daemon.sock");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777, 0o600);
    let out = without_password(&world, "alice", &["send", "bob", "via the daemon"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = world.run("alice", &["daemon"]);
    assert!(!out.status.success() && stderr(&out).contains("already running"), "{}", stderr(&out));

    // Killed: the socket stays behind, dead.
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();
    assert!(socket.exists());
    let out = world.run("alice", &["log", "bob"]);
    assert!(out.status.success(), "the store opens here once nobody answers: {}", stderr(&out));
    assert!(stdout(&out).contains("via the daemon"), "{}", stdout(&out));
    let daemon = world.spawn("alice", &["daemon"], "the API is on");
    // bob's echo may have been on its way when alice was killed: it comes once he retries.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = without_password(&world, "alice", &["log", "bob"]);
        assert!(out.status.success(), "log through the new daemon: {}", stderr(&out));
        if stdout(&out).contains("echo: via the daemon") {
            break;
        }
        assert!(Instant::now() < deadline, "bob's echo never came: {}", stdout(&out));
        std::thread::sleep(Duration::from_millis(500));
    }
    // Plain mode is a client too: a line in, delivered through the daemon, the answer out.
    let mut plain = Command::new(env!("CARGO_BIN_EXE_tincan"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", world.home())
        .env("TINCAN_DATA_DIR", world.data())
        .args(["--profile", "alice", "chat", "bob", "--plain"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut plain_in = plain.stdin.take().unwrap();
    writeln!(plain_in, "plain through the daemon").unwrap();
    let mut plain_out = BufReader::new(plain.stdout.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut line = String::new();
        assert!(plain_out.read_line(&mut line).unwrap() > 0, "plain mode ended early");
        if line.contains("bob: echo: plain through the daemon") {
            break;
        }
        assert!(Instant::now() < deadline, "no echo in plain mode");
    }
    drop(plain_in);
    let out = plain.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let out = world.run("alice", &["daemon", "--stop"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("Stopped"), "{}", stderr(&out));
    assert!(!socket.exists());
    let mut daemon = daemon;
    let status = daemon.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let out = world.run("alice", &["daemon", "--stop"]);
    assert_eq!(out.status.code(), Some(1), "none runs now");
    bob.interrupt();
}

/// Issue 11: a chat screen that is a daemon's client, when the daemon is killed with SIGKILL,
/// says the owner went away and offers to start the node here; accepted, it asks for the
/// password, reopens the conversation and chats on as the owner. Nothing acknowledged is lost
/// or doubled.
#[test]
fn issue_11_a_killed_daemon_is_offered_to_restart_by_its_chat_screen() {
    let world = World::new();
    world.init("alice", &[]);
    world.init("bob", &[]);
    let bob = world.spawn("bob", &["bot", "echo"], "Echo bot");
    let mut daemon = world.spawn("alice", &["daemon"], "the API is on");
    let tmux = Tmux::named(&world, "restart");
    let exe = env!("CARGO_BIN_EXE_tincan");
    tmux.type_line(&format!("{exe} --profile alice; echo EXITED:$?"));
    tmux.wait_for("already runs this profile");
    tmux.type_line("bob");
    tmux.wait_for("Chatting with bob");
    tmux.type_line("before the kill");
    tmux.wait_for("echo: before the kill");

    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();
    let screen = tmux.wait_for("Start it here");
    println!("the owner killed:\n{screen}");
    assert!(screen.contains("went away") && screen.contains("Nothing it acknowledged is lost"));
    tmux.type_line("y");
    tmux.wait_for("Password for alice");
    let password = std::fs::read_to_string(world.password_file()).unwrap();
    tmux.type_line(password.trim());
    // The status line, drawn last, says the conversation is open again.
    let screen = tmux.wait_for("Chatting with bob");
    println!("restarted here:\n{screen}");
    assert!(screen.contains("echo: before the kill"), "the conversation so far: {screen}");
    assert!(!screen.contains("already runs this profile"), "the owner now: {screen}");
    tmux.type_line("after the restart");
    tmux.wait_for("echo: after the restart");
    // It owns the profile now: commands are its clients, and need no password.
    let out = without_password(&world, "alice", &["log", "bob"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let log = stdout(&out);
    for line in [
        "alice: before the kill",
        "bob: echo: before the kill",
        "alice: after the restart",
        "bob: echo: after the restart",
    ] {
        assert_eq!(log.matches(line).count(), 1, "{line:?} once: {log}");
    }
    tmux.type_line("/quit");
    tmux.wait_for("EXITED:0");
    bob.interrupt();
}

/// A contact who moved (restarted, on another port) shows as online as soon as his conversation
/// is opened, with nothing sent: the presence probe that fails at his old address asks the
/// phonebook where he is now, and dials that.
#[test]
fn presence_finds_a_contact_who_moved() {
    let world = World::new();
    world.init("alice", &[]);
    world.init("bob", &[]);
    // A daemon, not the echo bot: bob has nothing to send that would make him dial alice.
    let bob = world.spawn("bob", &["daemon"], "the API is on");
    let out = world.run("alice", &["send", "bob", "hello"]);
    assert!(out.status.success(), "{}", stderr(&out));
    bob.interrupt();
    let bob = world.spawn("bob", &["daemon"], "the API is on");
    let tmux = Tmux::named(&world, "moved");
    let exe = env!("CARGO_BIN_EXE_tincan");
    let password = world.password_file();
    tmux.type_line(&format!(
        "{exe} --profile alice --password-file {} chat bob; echo EXITED:$?",
        password.display()
    ));
    tmux.wait_for("Chatting with bob");
    let started = Instant::now();
    let screen = tmux.wait_for("bob · online");
    println!("online after {:?}:\n{screen}", started.elapsed());
    let out = without_password(&world, "alice", &["log", "bob"]);
    assert_eq!(stdout(&out).matches("alice: ").count(), 1, "nothing was sent: {}", stdout(&out));
    tmux.type_line("/quit");
    tmux.wait_for("EXITED:0");
    bob.interrupt();
}

/// Issue 11: `examples/bot.py`, a bot in another language (Python's standard library only),
/// runs on the API of a `tincan daemon`: a stranger writes to it and gets an answer.
#[test]
fn issue_11_a_python_bot_answers_through_the_api() {
    if Command::new("python3").arg("--version").output().is_err() {
        println!("SKIPPED: python3 is not installed");
        return;
    }
    let world = World::new();
    world.init("alice", &[]);
    world.init("shouty", &[]);
    let daemon = world.spawn("shouty", &["daemon"], "the API is on");
    let socket = world.data().join("shouty").join("daemon.sock");
    let bot = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/bot.py");
    let mut python = Command::new("python3")
        .arg(bot)
        .arg(&socket)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    BufReader::new(python.stdout.take().unwrap()).read_line(&mut ready).unwrap();
    assert_eq!(ready.trim(), "bot ready");
    // alice stays online to receive the answer.
    let alice = world.spawn("alice", &["daemon"], "the API is on");
    let out = world.run("alice", &["send", "shouty", "hello", "bot"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = world.run("alice", &["log", "shouty"]);
        if stdout(&out).contains("shouty: HELLO BOT") {
            break;
        }
        assert!(Instant::now() < deadline, "no answer from the bot: {}", stdout(&out));
        std::thread::sleep(Duration::from_millis(500));
    }
    let out = world.run("shouty", &["daemon", "--stop"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let status = python.wait().unwrap();
    assert!(status.success(), "the bot ends on `closing`: {status:?}");
    drop(daemon);
    alice.interrupt();
}
