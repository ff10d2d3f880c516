//! The phonebook on a Unix socket, as the zero-configuration local one runs: the same user
//! reaches it, another user's connection is closed unread (`SO_PEERCRED`).

#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::print_stderr)] // Tests fail loudly on purpose.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use common::*;
use tincan_phonebook::Client;
use tincan_phonebook::server::{Config, Server};

#[tokio::test]
async fn issue_10_only_the_same_user_reaches_a_unix_socket_phonebook() {
    let dir = tempfile::tempdir().unwrap();
    // World-writable on purpose: the uid check, not the directory, must keep others out here.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let path = dir.path().join("phonebook.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
    let server = Server::new(Config::default()).unwrap();
    tokio::spawn(server.serve_unix(listener, std::future::pending()));

    let client = Client::unix(&path).unwrap();
    let alice = identity();
    client
        .register(&alice, &name("alice"), &addrs(), Duration::from_secs(60), now())
        .await
        .unwrap();
    assert_eq!(client.lookup(&name("alice")).await.unwrap().unwrap().peer_id, alice.peer_id());

    let is_root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout == b"0\n");
    let runuser = Command::new("runuser").arg("--help").output().is_ok();
    if !is_root || !runuser {
        eprintln!("!!! SKIPPED the other-user half: it needs root and runuser to act as `nobody`");
        return;
    }
    // As `nobody`: connect and ask; the server must close without a word.
    let script = format!(
        "import socket\ns=socket.socket(socket.AF_UNIX)\ns.settimeout(5)\ns.connect({:?})\n\
         print('connected')\n\
         try:\n    s.sendall(b'GET /peers/alice HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n')\n    \
         print(repr(s.recv(4096)))\n\
         except (BrokenPipeError, ConnectionResetError):\n    print(repr(b''))",
        path.display().to_string()
    );
    let out = tokio::task::spawn_blocking(move || {
        Command::new("runuser").args(["-u", "nobody", "--", "python3", "-c", &script]).output()
    })
    .await
    .unwrap()
    .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(said.trim(), "connected\nb''", "another user got an answer: {said}");
}
