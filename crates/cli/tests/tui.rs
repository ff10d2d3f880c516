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

impl Tmux {
    fn start(world: &World) -> Tmux {
        let session = format!("tincan-test-{}", std::process::id());
        let status = Command::new("tmux")
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
        let status = Command::new("tmux")
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
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.session])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the screen shows `text`.
    fn wait_for(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
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
        let _ = Command::new("tmux").args(["kill-session", "-t", &self.session]).status();
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
    Command::new("tmux")
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
