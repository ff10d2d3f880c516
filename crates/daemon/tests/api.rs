//! The API on a real Unix socket, over real nodes (libp2p on 127.0.0.1) and real stores in
//! temporary folders: what a client gets, and what hostile clients cannot do.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tincan_api::{Call, Client, ClientError, Notice, Notification, RpcError};
use tincan_daemon::{Limits, Me, Service};
use tincan_identity::Identity;
use tincan_node::{Config, Node};
use tincan_store::Store;
use tincan_wire::Username;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

struct Peer {
    node: Node,
    service: Arc<Service>,
    socket: PathBuf,
    stop: tokio::sync::watch::Sender<bool>,
}

async fn peer(dir: &Path, name: &str, limits: Limits) -> Peer {
    std::fs::create_dir_all(dir).unwrap();
    let identity = Identity::generate().unwrap();
    let store = Store::create(&dir.join("store.redb"), identity.store_root_key()).unwrap();
    let me = Me {
        profile: name.into(),
        username: Username::new(name).unwrap(),
        public_key: identity.public_key(),
    };
    let mut config = Config::new(Username::new(name).unwrap());
    config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()];
    let node = Node::start(identity, store.clone(), config).await.unwrap();
    let service = Arc::new(Service::new(store, Some(node.clone()), me));
    let socket = dir.join("run").join("api.sock");
    let listener = tincan_daemon::bind(&socket).unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(tincan_daemon::serve(listener, service.clone(), limits, stopped));
    Peer { node, service, socket, stop }
}

/// Pins each as the other's contact, at its addresses.
async fn meet(a: &Peer, b: &Peer) {
    let (an, bn) = (a.node.username().clone(), b.node.username().clone());
    a.node.add_contact(&bn, b.node.peer_id(), b.node.listen_addrs()).await.unwrap();
    b.node.add_contact(&an, a.node.peer_id(), a.node.listen_addrs()).await.unwrap();
}

/// One raw line out, one raw line back.
async fn exchange(stream: &mut BufReader<UnixStream>, line: &[u8]) -> Value {
    stream.get_mut().write_all(line).await.unwrap();
    if !line.ends_with(b"\n") {
        stream.get_mut().write_all(b"\n").await.unwrap();
    }
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_line(&mut answer))
        .await
        .expect("an answer")
        .unwrap();
    serde_json::from_str(&answer).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_sends_reads_and_is_told_what_happens() {
    let root = tempfile::tempdir().unwrap();
    let alice = peer(&root.path().join("alice"), "alice", Limits::default()).await;
    let bob = peer(&root.path().join("bob"), "bob", Limits::default()).await;
    meet(&alice, &bob).await;

    let client = Client::connect(&alice.socket).await.unwrap();
    let status: tincan_api::Status =
        client.call_as(Call::Status(Default::default())).await.unwrap();
    assert_eq!(status.username, "alice");
    assert_eq!(status.api, tincan_api::API_VERSION);
    assert_eq!(status.peer_id, alice.node.peer_id().to_base58());
    assert_eq!(status.clients, 1);
    assert_eq!(status.storage, "ok");

    let mut notices = client.notifications().unwrap();
    let _: tincan_api::Empty = client.call_as(Call::Subscribe(Default::default())).await.unwrap();
    let watcher = Client::connect(&bob.socket).await.unwrap();
    let mut bob_notices = watcher.notifications().unwrap();
    let _: tincan_api::Empty = watcher.call_as(Call::Subscribe(Default::default())).await.unwrap();

    let sent: tincan_api::Sent = client
        .call_as(Call::Send(tincan_api::SendParams {
            to: "bob".into(),
            text: "through the socket".into(),
            wait: true,
            timeout_ms: Some(30_000),
        }))
        .await
        .unwrap();
    assert_eq!(sent.delivered, Some(true), "{sent:?}");
    assert_eq!(sent.messages.len(), 1);
    let id = sent.messages[0].id.clone();

    // Alice's client hears the delivery; bob's hears the message.
    let delivered = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match notices.recv().await.unwrap() {
                Notice::Event(n) => {
                    if let Notification::Status { id: got, status, .. } = *n
                        && got == id
                        && status == "delivered"
                    {
                        return;
                    }
                }
                other => panic!("{other:?}"),
            }
        }
    });
    delivered.await.expect("a delivered notification");
    let message = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Notice::Event(n) = bob_notices.recv().await.unwrap()
                && let Notification::Message { contact, entry, request, .. } = *n
            {
                return (contact, entry, request);
            }
        }
    })
    .await
    .expect("a message notification");
    assert_eq!(message.0, "alice");
    assert_eq!(message.1.text, "through the socket");
    assert_eq!(message.1.direction, "incoming");
    assert!(!message.2);

    let log: tincan_api::Log = client
        .call_as(Call::Log(tincan_api::LogParams {
            who: "bob".into(),
            before: None,
            limit: None,
            grep: None,
        }))
        .await
        .unwrap();
    assert_eq!(log.messages.len(), 1);
    assert_eq!(log.messages[0].status, "delivered");
    assert_eq!(log.contact.username, "bob");
    assert!(log.contact.online);

    // The safety number through the API is the node's own.
    let numbers: tincan_api::SafetyNumbers =
        client.call_as(Call::Verify(tincan_api::Who { who: "bob".into() })).await.unwrap();
    let own = alice.node.safety_numbers(&Username::new("bob").unwrap()).await.unwrap();
    assert_eq!(numbers.pinned.safety_number, own.pinned.1.to_string());
    assert_eq!(numbers.pinned.peer_id, bob.node.peer_id().to_base58());
    assert!(numbers.pending.is_none());
    // …and by the end of its key, as `contacts` shows it.
    let by_key: tincan_api::SafetyNumbers = client
        .call_as(Call::Verify(tincan_api::Who { who: log.contact.key_id.clone() }))
        .await
        .unwrap();
    assert_eq!(by_key, numbers);

    // Bob reads his inbox through his socket: marked read once answered.
    let unread: Vec<tincan_api::Unread> =
        watcher.call_as(Call::Inbox(Default::default())).await.unwrap();
    assert_eq!(unread.len(), 1);
    assert_eq!(unread[0].messages[0].text, "through the socket");
    let again: Vec<tincan_api::Unread> =
        watcher.call_as(Call::Inbox(Default::default())).await.unwrap();
    assert!(again.is_empty());

    // Errors are typed.
    let err = client.call(Call::Verify(tincan_api::Who { who: "carol".into() })).await;
    assert!(matches!(err, Err(ClientError::Rpc(RpcError { code: RpcError::NO_SUCH_CONTACT, .. }))));
    let err = client.call(Call::Reject(tincan_api::Who { who: "bob".into() })).await;
    assert!(matches!(err, Err(ClientError::Rpc(RpcError { code: RpcError::NO_KEY_CHANGE, .. }))));
    let err = client.call(Call::Stop(Default::default())).await;
    assert!(matches!(err, Err(ClientError::Rpc(RpcError { code: RpcError::NOT_STOPPABLE, .. }))));

    // Stopping the server tells subscribers, and pending calls fail rather than hang.
    alice.stop.send_replace(true);
    let closing = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match notices.recv().await {
                Some(Notice::Event(n)) if matches!(*n, Notification::Closing { .. }) => {
                    return true;
                }
                Some(Notice::Closed) | None => return false,
                Some(_) => {}
            }
        }
    })
    .await
    .unwrap();
    assert!(closing, "a closing notification before the end");
    let err = client.call(Call::Status(Default::default())).await;
    assert!(matches!(err, Err(ClientError::Gone)), "{err:?}");
    bob.stop.send_replace(true);
    alice.node.shutdown().await;
    bob.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_clients_get_errors_and_cannot_hold_the_daemon() {
    let root = tempfile::tempdir().unwrap();
    let limits = Limits { max_clients: 64, max_in_flight: 16, queue: 64 };
    let alice = peer(&root.path().join("alice"), "alice", limits).await;
    let bob = peer(&root.path().join("bob"), "bob", Limits::default()).await;
    meet(&alice, &bob).await;
    // Bob goes away: sends to him wait.
    bob.stop.send_replace(true);
    bob.node.shutdown().await;

    let mut raw = BufReader::new(UnixStream::connect(&alice.socket).await.unwrap());
    let answer = exchange(&mut raw, b"{not json\n").await;
    assert_eq!(answer["error"]["code"], RpcError::PARSE);
    assert_eq!(answer["id"], Value::Null);
    let answer = exchange(&mut raw, b"[1,2]\n").await;
    assert_eq!(answer["error"]["code"], RpcError::INVALID_REQUEST);
    let answer = exchange(&mut raw, br#"{"id":1,"method":"status"}"#).await;
    assert_eq!(answer["error"]["code"], RpcError::INVALID_REQUEST, "no jsonrpc: {answer}");
    let answer =
        exchange(&mut raw, b"\n{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"launch\"}\n").await;
    assert_eq!(answer["error"]["code"], RpcError::METHOD_NOT_FOUND);
    assert_eq!(answer["id"], 2);
    let answer =
        exchange(&mut raw, br#"{"jsonrpc":"2.0","id":"x","method":"log","params":{"who":7}}"#)
            .await;
    assert_eq!(answer["error"]["code"], RpcError::INVALID_PARAMS);
    assert_eq!(answer["id"], "x");
    let answer = exchange(
        &mut raw,
        br#"{"jsonrpc":"2.0","id":3,"method":"send","params":{"to":"bob","text":"a\u0007b"}}"#,
    )
    .await;
    assert_eq!(answer["error"]["code"], RpcError::INVALID_TEXT, "{answer}");
    let answer =
        exchange(&mut raw, b"{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"status\"}\n").await;
    assert_eq!(answer["result"]["username"], "alice", "still served after all that");

    // A line that arrives in pieces, with a call answered between them: nothing of it is lost.
    let waiting = br#"{"jsonrpc":"2.0","id":5,"method":"send","params":{"to":"bob","text":"x","wait":true,"timeout_ms":300}}"#;
    raw.get_mut().write_all(waiting).await.unwrap();
    raw.get_mut().write_all(b"\n{\"jsonrpc\":\"2.0\",\"id\":6,\"met").await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), raw.read_line(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(
        (answer["id"].clone(), answer["result"]["delivered"].clone()),
        (json!(5), json!(false))
    );
    let answer = exchange(&mut raw, b"hod\":\"status\"}").await;
    assert_eq!(answer["id"], 6, "{answer}");
    assert_eq!(answer["result"]["username"], "alice");

    // A 10 MB line: refused, the connection closed, nothing buffered for it.
    let mut big = BufReader::new(UnixStream::connect(&alice.socket).await.unwrap());
    let mut line = vec![b' '; 10 << 20];
    line.push(b'\n');
    let writing = tokio::spawn(async move {
        let _ = big.get_mut().write_all(&line).await;
        let mut answer = String::new();
        let _ = big.read_line(&mut answer).await;
        answer
    });
    let answer = tokio::time::timeout(Duration::from_secs(20), writing).await.unwrap().unwrap();
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["error"]["code"], RpcError::INVALID_REQUEST);

    // Calls beyond the in-flight limit are refused, not queued.
    let client = Arc::new(Client::connect(&alice.socket).await.unwrap());
    let mut waiting = Vec::new();
    for i in 0..16 {
        let client = client.clone();
        waiting.push(tokio::spawn(async move {
            client
                .call(Call::Send(tincan_api::SendParams {
                    to: "bob".into(),
                    text: format!("waits {i}"),
                    wait: true,
                    timeout_ms: Some(60_000),
                }))
                .await
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let err = client.call(Call::Status(Default::default())).await;
    assert!(
        matches!(err, Err(ClientError::Rpc(RpcError { code: RpcError::TOO_MANY_REQUESTS, .. }))),
        "{err:?}"
    );
    for w in waiting {
        w.abort();
    }
    drop(client);

    // A thousand connections: 64 at most are served, the rest told so; none of it lasts.
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..1000 {
        match UnixStream::connect(&alice.socket).await {
            Ok(s) => held.push(s),
            Err(_) => refused += 1,
        }
    }
    let mut told = 0;
    for s in held.iter_mut().rev().take(100) {
        let mut buf = [0u8; 256];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(500), {
            use tokio::io::AsyncReadExt;
            s.read(&mut buf)
        })
        .await
            && n > 0
            && String::from_utf8_lossy(&buf[..n]).contains(&RpcError::TOO_MANY_CLIENTS.to_string())
        {
            told += 1;
        }
    }
    println!(
        "1000 connections: {} accepted, {refused} refused by the kernel, {told} of the last 100 told too many",
        held.len()
    );
    assert!(told > 0, "clients beyond the limit are told");
    assert!(alice.service.clients() <= 64, "{} clients", alice.service.clients());
    drop(held);
    tokio::time::sleep(Duration::from_secs(1)).await;

    // A client that writes calls and never reads is dropped once its queue is full.
    let mut greedy = UnixStream::connect(&alice.socket).await.unwrap();
    let call = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"contacts\"}\n".repeat(200);
    let flood = tokio::spawn(async move {
        for _ in 0..500 {
            if greedy.write_all(&call).await.is_err() {
                return true;
            }
        }
        false
    });
    let dropped = tokio::time::timeout(Duration::from_secs(30), flood).await.unwrap().unwrap();
    assert!(dropped, "the daemon closed the connection of a client that does not read");

    // And the daemon serves the next client as before.
    let client = Client::connect(&alice.socket).await.unwrap();
    let status: tincan_api::Status =
        client.call_as(Call::Status(Default::default())).await.unwrap();
    assert_eq!(status.username, "alice");
    alice.stop.send_replace(true);
    alice.node.shutdown().await;
}

/// Another user cannot use the socket even where the file's mode would let them: the daemon
/// checks the caller's uid (`SO_PEERCRED`). Needs root (to act as `nobody`) and `setpriv`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_user_is_refused_by_uid() {
    if !rustix_is_root()
        || std::process::Command::new("setpriv").arg("--version").output().is_err()
        || std::process::Command::new("python3").arg("--version").output().is_err()
    {
        println!("SKIPPED: needs root, setpriv and python3 to connect as nobody");
        return;
    }
    let root = tempfile::Builder::new().prefix("tincan-uid").tempdir_in("/tmp").unwrap();
    let alice = peer(&root.path().join("alice"), "alice", Limits::default()).await;
    // Open the way on purpose: only the uid check is left.
    use std::os::unix::fs::PermissionsExt;
    for dir in [
        root.path().to_path_buf(),
        root.path().join("alice"),
        alice.socket.parent().unwrap().into(),
    ] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(&alice.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let script = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
try:
    s.sendall(b'{"jsonrpc":"2.0","id":1,"method":"status"}\n')
    s.settimeout(5)
    data = s.recv(4096)
except OSError:
    data = b""
print("ANSWERED" if data else "CLOSED")
"#;
    let nobody = |socket: &Path| {
        std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", PYTHON, "-c", script])
            .arg(socket)
            .output()
            .unwrap()
    };
    let out = nobody(&alice.socket);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("CLOSED"), "nobody got: {said} {}", String::from_utf8_lossy(&out.stderr));
    // The same script as us is answered: the refusal is the uid's.
    let ours = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&alice.socket)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&ours.stdout).contains("ANSWERED"));
    assert_eq!(alice.service.clients(), 0);
    alice.stop.send_replace(true);
    alice.node.shutdown().await;
}

const PYTHON: &str = "/usr/bin/python3";

fn rustix_is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

#[test]
fn the_call_names_are_the_specs() {
    // Every method of specs/rpc.md parses, and an unknown one is told apart from bad params.
    for (method, params) in [
        ("status", json!({})),
        ("send", json!({"to": "bob", "text": "hi"})),
        ("log", json!({"who": "bob", "limit": 5})),
        ("trust", json!({"who": "bob", "key": "12D3KooW"})),
        ("subscribe", json!({})),
    ] {
        assert_eq!(Call::parse(method, Some(params)).unwrap().method(), method);
    }
    assert_eq!(Call::parse("nope", None).unwrap_err().code, RpcError::METHOD_NOT_FOUND);
    assert_eq!(
        Call::parse("send", Some(json!({"to": 1}))).unwrap_err().code,
        RpcError::INVALID_PARAMS
    );
    assert_eq!(
        Call::parse("status", Some(json!({"x": 1}))).unwrap_err().code,
        RpcError::INVALID_PARAMS
    );
}

/// Whether `answer` holds everything `expect` gives (objects: those fields; arrays: that many
/// elements, each holding its counterpart).
fn holds(answer: &Value, expect: &Value) -> bool {
    match (answer, expect) {
        (Value::Object(a), Value::Object(e)) => {
            e.iter().all(|(k, v)| a.get(k).is_some_and(|got| holds(got, v)))
        }
        (Value::Array(a), Value::Array(e)) => {
            a.len() == e.len() && a.iter().zip(e).all(|(got, v)| holds(got, v))
        }
        _ => answer == expect,
    }
}

/// `specs/vectors/rpc.json`, line by line, against a real daemon.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_specs_exchanges_hold() {
    let vectors: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../specs/vectors/rpc.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let root = tempfile::tempdir().unwrap();
    let alice = peer(&root.path().join("alice"), "alice", Limits::default()).await;
    let bob = peer(&root.path().join("bob"), "bob", Limits::default()).await;
    meet(&alice, &bob).await;
    bob.stop.send_replace(true);
    bob.node.shutdown().await;
    let mut raw = BufReader::new(UnixStream::connect(&alice.socket).await.unwrap());
    for exchange in vectors["exchanges"].as_array().unwrap() {
        let line = exchange["send"].as_str().unwrap();
        raw.get_mut().write_all(format!("{line}\n").as_bytes()).await.unwrap();
        let expect = &exchange["expect"];
        if expect.is_null() {
            continue;
        }
        let mut answer = String::new();
        tokio::time::timeout(Duration::from_secs(10), raw.read_line(&mut answer))
            .await
            .expect("an answer")
            .unwrap();
        let answer: Value = serde_json::from_str(&answer).unwrap();
        assert!(holds(&answer, expect), "{line}\n  answered {answer}\n  expected {expect}");
    }
    alice.stop.send_replace(true);
    alice.node.shutdown().await;
}

/// Answers longer than a request may be (an export of more than 1 MiB) reach the client, and a
/// `trust` naming a key no contact could have is a typed error, not a crash of the call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_answers_arrive_and_odd_keys_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let alice = peer(&root.path().join("alice"), "alice", Limits::default()).await;
    let bob = peer(&root.path().join("bob"), "bob", Limits::default()).await;
    meet(&alice, &bob).await;
    bob.stop.send_replace(true);
    bob.node.shutdown().await;
    let client = Client::connect(&alice.socket).await.unwrap();
    let text = "x".repeat(4000);
    for _ in 0..300 {
        let _: tincan_api::Sent = client
            .call_as(Call::Send(tincan_api::SendParams {
                to: "bob".into(),
                text: text.clone(),
                wait: false,
                timeout_ms: None,
            }))
            .await
            .unwrap();
    }
    let export = client.call(Call::Export(Default::default())).await.unwrap();
    let size = serde_json::to_vec(&export).unwrap().len();
    assert!(size > tincan_api::MAX_LINE, "the export is {size} bytes");
    assert_eq!(export["conversations"][0]["messages"].as_array().unwrap().len(), 300);

    // A pending key, then a trust naming a 66-byte PeerId (a sha2-256 multihash).
    let conv = alice.service.find("bob").await.unwrap().conversation;
    let other = Identity::generate().unwrap().peer_id();
    let bytes = tincan_wire::PeerIdBytes::new(&other.to_bytes()).unwrap();
    alice.service.store().note_key_change(conv, bytes, tincan_wire::UnixMillis(1)).await.unwrap();
    let mut odd = vec![0x12, 0x40];
    odd.extend([7u8; 64]);
    let odd = libp2p_identity::PeerId::from_bytes(&odd).unwrap().to_base58();
    let err =
        client.call(Call::Trust(tincan_api::TrustParams { who: "bob".into(), key: odd })).await;
    assert!(
        matches!(err, Err(ClientError::Rpc(RpcError { code: RpcError::INVALID_PARAMS, .. }))),
        "{err:?}"
    );
    // The key that is pending, named by another: refused as such.
    let err = client
        .call(Call::Trust(tincan_api::TrustParams {
            who: "bob".into(),
            key: Identity::generate().unwrap().peer_id().to_base58(),
        }))
        .await;
    assert!(
        matches!(err, Err(ClientError::Rpc(RpcError { code: RpcError::PENDING_KEY_CHANGED, .. }))),
        "{err:?}"
    );
    let status: tincan_api::Status =
        client.call_as(Call::Status(Default::default())).await.unwrap();
    assert_eq!(status.username, "alice");
    alice.stop.send_replace(true);
    alice.node.shutdown().await;
}
