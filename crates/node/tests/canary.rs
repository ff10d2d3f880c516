//! Wire canary: the bytes of a conversation, captured by a transparent TCP relay between the
//! peers, contain no message text and no username.

#![allow(clippy::unwrap_used, clippy::print_stdout)] // Tests fail loudly on purpose.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Forwards every connection to `target`, recording every byte in both directions.
async fn relay(target: String, capture: Arc<Mutex<Vec<u8>>>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (inbound, _) = listener.accept().await.unwrap();
            let outbound = TcpStream::connect(&target).await.unwrap();
            let (mut ri, mut wi) = inbound.into_split();
            let (mut ro, mut wo) = outbound.into_split();
            let c1 = capture.clone();
            let c2 = capture.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n) = ri.read(&mut buf).await {
                    if n == 0 || wo.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    c1.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            });
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n) = ro.read(&mut buf).await {
                    if n == 0 || wi.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    c2.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wire_carries_no_text_and_no_username() {
    let root = tempfile::tempdir().unwrap();
    let mut bob = Peer::start(&root.path().join("bob"), "bobcanary", &[]);
    let mut alice = Peer::start(&root.path().join("alice"), "alicecanary", &[]);
    let target = bob.addrs[0].trim_start_matches("/ip4/").replacen("/tcp/", ":", 1);
    let capture = Arc::new(Mutex::new(Vec::new()));
    let via = relay(target, capture.clone()).await;
    alice.command(json!({"add": {"username": "bobcanary", "peer_id": bob.peer_id, "addrs": [format!("/ip4/127.0.0.1/tcp/{}", via.port())]}}));
    alice.wait(Duration::from_secs(10), |v| v.get("added").map(|_| ()));
    let texts: Vec<String> = (0..20).map(|i| format!("CANARY-secret-plan-{i:02}-zqxj")).collect();
    for text in &texts {
        alice.command(json!({"send": {"to": "bobcanary", "text": text}}));
    }
    let mut got = 0;
    bob.wait(Duration::from_secs(60), |v| {
        got += usize::from(v.get("received").is_some());
        (got == texts.len()).then_some(())
    });
    // And an answer the other way, over the same connection.
    bob.command(json!({"add": {"username": "alicecanary", "peer_id": alice.peer_id, "addrs": []}}));
    bob.wait(Duration::from_secs(10), |v| v.get("added").map(|_| ()));
    bob.command(json!({"send": {"to": "alicecanary", "text": "CANARY-reply-zqxj"}}));
    alice.wait(Duration::from_secs(60), |v| {
        (v["received"]["text"] == "CANARY-reply-zqxj").then_some(())
    });
    let captured = capture.lock().unwrap().clone();
    println!("captured {} bytes of the conversation", captured.len());
    assert!(captured.len() > 1000, "the conversation went through the relay");
    for needle in texts.iter().map(String::as_str).chain([
        "CANARY",
        "zqxj",
        "alicecanary",
        "bobcanary",
        "secret-plan",
    ]) {
        assert!(
            !captured.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "{needle:?} is visible on the wire"
        );
    }
}
