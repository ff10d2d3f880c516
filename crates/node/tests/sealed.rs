//! Sealed messages between real `tincan-node-harness` processes (`specs/sealed.md`): what
//! waits in the outbox is ciphertext even to someone holding the store's key, and a side
//! restored from an old backup recovers by itself, visibly to both users.

#![allow(clippy::unwrap_used, clippy::print_stdout)] // Tests fail loudly on purpose.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use tincan_seal::Envelope;
use tincan_store::Store;

const MINUTE: Duration = Duration::from_secs(60);

/// Sends `text` and waits until the sender reports it delivered.
fn send_delivered(from: &mut Peer, to: &str, text: &str) {
    from.command(json!({"send": {"to": to, "text": text}}));
    let id = from.wait(MINUTE, |v| v["queued"]["id"].as_str().map(str::to_owned));
    from.wait(MINUTE, |v| {
        (v["status"]["id"] == id.as_str() && v["status"]["status"] == "delivered").then_some(())
    });
}

fn received(peer: &mut Peer, text: &str) {
    peer.wait(MINUTE, |v| (v["received"]["text"] == text).then_some(()));
}

/// A phonebook, so that a restarted peer (on a new port) is found again.
fn phonebook(root: &Path) -> (Phonebook, Vec<String>) {
    let pb = Phonebook::start(&root.join("pb"));
    let args =
        vec!["--phonebook".into(), pb.url.clone(), "--lookup-interval-ms".into(), "500".into()];
    (pb, args)
}

fn root_key(dir: &Path) -> tincan_identity::Identity {
    let password = tincan_identity::Password::new(PASSWORD.into());
    tincan_identity::unlock(&dir.join("identity.key"), &password).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_holds_ciphertext_even_to_the_stores_key_and_every_retry_sends_it() {
    let root = tempfile::tempdir().unwrap();
    let (_pb, args) = phonebook(root.path());
    let mut bob = Peer::start(&root.path().join("bob"), "bob", &args);
    let mut alice = Peer::start(&root.path().join("alice"), "alice", &args);
    alice.add(&bob);
    bob.add(&alice);
    // The first message: alice asks bob for his keys, starts a session and seals it.
    send_delivered(&mut alice, "bob", "hello");
    received(&mut bob, "hello");
    let bob_id = bob.peer_id.clone();
    bob.quit();

    let texts: Vec<String> = (0..5).map(|i| format!("CANARY-outbox-{i}-qzxv")).collect();
    for text in &texts {
        alice.command(json!({"send": {"to": "bob", "text": text}}));
        alice.wait(MINUTE, |v| v.get("queued").map(|_| ()));
    }
    // Alice tries bob a few times meanwhile: every attempt sends the envelope kept.
    std::thread::sleep(Duration::from_secs(2));

    // The outbox, read with alice's own store key beside her running node.
    let identity = root_key(&root.path().join("alice"));
    let store =
        Store::open_read_only(&root.path().join("alice/store.redb"), identity.store_root_key())
            .unwrap();
    let rows = store.decrypted_values("t6").await.unwrap();
    assert_eq!(rows.len(), texts.len(), "one outbox row per message waiting");
    for row in &rows {
        assert!(row.len() > 256, "each row holds an envelope padded to a bucket: {}", row.len());
        for needle in ["CANARY", "qzxv", "outbox"] {
            assert!(!row.windows(needle.len()).any(|w| w == needle.as_bytes()), "{needle:?}");
        }
    }
    let contact = store.contacts().await.unwrap().remove(0);
    let outbox = store.outbox(contact.conversation, 10).await.unwrap();
    for entry in &outbox {
        let envelope = Envelope::decode(entry.envelope.as_ref().expect("sealed when queued"))
            .expect("an envelope of specs/sealed.md §3");
        assert_eq!((envelope.id, envelope.seq), (entry.id, entry.seq));
        let to: libp2p::PeerId = bob_id.parse().unwrap();
        assert_eq!(envelope.to.as_bytes(), to.to_bytes());
    }
    println!(
        "{} outbox rows, {} to {} bytes each, no text",
        rows.len(),
        rows.iter().map(Vec::len).min().unwrap(),
        rows.iter().map(Vec::len).max().unwrap()
    );
    drop(store);

    // Bob returns: the envelopes go, open, and arrive once each, in order.
    let mut bob = Peer::start(&root.path().join("bob"), "bob", &args);
    let mut got = Vec::new();
    bob.wait(MINUTE, |v| {
        if let Some(text) = v["received"]["text"].as_str() {
            got.push(text.to_owned());
        }
        (got.len() == texts.len()).then_some(())
    });
    assert_eq!(got, texts);
    std::thread::sleep(Duration::from_millis(500));
    assert!(!bob.drain().iter().any(|v| v.get("received").is_some()), "nothing twice");
}

/// Every `sealing` line of `lines`, as `(username, change)`.
fn sealing(lines: &[Value]) -> Vec<(String, String)> {
    let pick = |v: &Value| {
        let s = v.get("sealing")?;
        Some((s["username"].as_str()?.to_owned(), s["change"].as_str()?.to_owned()))
    };
    lines.iter().filter_map(pick).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_backup_recovers_by_itself_and_both_users_see_it() {
    let root = tempfile::tempdir().unwrap();
    let (_pb, args) = phonebook(root.path());
    let bob_dir = root.path().join("bob");
    let mut bob = Peer::start(&bob_dir, "bob", &args);
    let mut alice = Peer::start(&root.path().join("alice"), "alice", &args);
    alice.add(&bob);
    bob.add(&alice);
    send_delivered(&mut alice, "bob", "a1");
    received(&mut bob, "a1");
    send_delivered(&mut bob, "alice", "b1");
    received(&mut alice, "b1");

    // Bob's backup, then the conversation goes on: both ratchets turn past it.
    bob.quit();
    let backup = std::fs::read(bob_dir.join("store.redb")).unwrap();
    let mut bob = Peer::start(&bob_dir, "bob", &args);
    for round in 2..4 {
        send_delivered(&mut alice, "bob", &format!("a{round}"));
        received(&mut bob, &format!("a{round}"));
        send_delivered(&mut bob, "alice", &format!("b{round}"));
        received(&mut alice, &format!("b{round}"));
    }

    // Restored: bob's sessions are as they were at the backup.
    bob.quit();
    std::fs::write(bob_dir.join("store.redb"), &backup).unwrap();
    let mut bob = Peer::start(&bob_dir, "bob", &args);
    let mut alice_lines = Vec::new();
    let mut bob_lines = Vec::new();
    alice.command(json!({"send": {"to": "bob", "text": "after the restore"}}));
    bob.wait(MINUTE, |v| {
        bob_lines.push(v.clone());
        (v["received"]["text"] == "after the restore").then_some(())
    });
    bob.command(json!({"send": {"to": "alice", "text": "and back"}}));
    alice.wait(MINUTE, |v| {
        alice_lines.push(v.clone());
        (v["received"]["text"] == "and back").then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    alice_lines.extend(alice.drain());
    bob_lines.extend(bob.drain());
    let (seen_by_alice, seen_by_bob) = (sealing(&alice_lines), sealing(&bob_lines));
    println!("alice saw {seen_by_alice:?}; bob saw {seen_by_bob:?}");
    // The side whose messages could not be opened sealed them again, and says so; the other
    // side was shown that a new secure session started.
    let resealed = |seen: &[(String, String)], peer: &str| {
        seen.iter().any(|(who, change)| who == peer && change.starts_with("Resealed"))
    };
    let new_session = |seen: &[(String, String)], peer: &str| {
        seen.iter().any(|(who, change)| who == peer && change == "NewSession")
    };
    assert!(
        (resealed(&seen_by_alice, "bob") && new_session(&seen_by_bob, "alice"))
            || (resealed(&seen_by_bob, "alice") && new_session(&seen_by_alice, "bob")),
        "a new session was started and both users were told"
    );
    // Nothing failed for good: a message refused for want of a session was queued again and
    // delivered.
    for lines in [&alice_lines, &bob_lines] {
        let last = |id: &Value| {
            lines.iter().rev().find(|v| v["status"]["id"] == *id).map(|v| &v["status"]["status"])
        };
        for failed in lines.iter().filter(|v| v["status"]["status"] == "failed") {
            let id = &failed["status"]["id"];
            assert_eq!(last(id), Some(&json!("delivered")), "{id} stayed failed: {lines:?}");
        }
    }
    // And the conversation goes on in the new session, both ways.
    send_delivered(&mut alice, "bob", "settled");
    received(&mut bob, "settled");
    send_delivered(&mut bob, "alice", "settled too");
    received(&mut alice, "settled too");
}

/// Reads any request on the chat protocol and writes back whatever bytes it is given, as a
/// hostile peer would.
#[derive(Clone, Default)]
struct Answer;

impl libp2p::request_response::Codec for Answer {
    type Protocol = libp2p::StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T: futures::AsyncRead + Unpin + Send>(
        &mut self,
        _: &libp2p::StreamProtocol,
        io: &mut T,
    ) -> std::io::Result<Vec<u8>> {
        use futures::AsyncReadExt;
        let mut out = Vec::new();
        io.take(1 << 20).read_to_end(&mut out).await?;
        Ok(out)
    }

    async fn read_response<T: futures::AsyncRead + Unpin + Send>(
        &mut self,
        _: &libp2p::StreamProtocol,
        _: &mut T,
    ) -> std::io::Result<Vec<u8>> {
        Err(std::io::Error::other("this peer asks nothing"))
    }

    async fn write_request<T: futures::AsyncWrite + Unpin + Send>(
        &mut self,
        _: &libp2p::StreamProtocol,
        _: &mut T,
        _: Vec<u8>,
    ) -> std::io::Result<()> {
        Err(std::io::Error::other("this peer asks nothing"))
    }

    async fn write_response<T: futures::AsyncWrite + Unpin + Send>(
        &mut self,
        _: &libp2p::StreamProtocol,
        io: &mut T,
        response: Vec<u8>,
    ) -> std::io::Result<()> {
        use futures::AsyncWriteExt;
        io.write_all(&response).await?;
        io.close().await
    }
}

/// `specs/sealed.md` §2: a peer holding bob's key (the connection is authenticated as bob)
/// hands over Olm keys that bob's identity did not sign. Alice refuses them, says so to her
/// user, and seals nothing to them: the message stays undelivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_not_signed_by_the_pinned_identity_are_refused_and_the_user_is_told() {
    use futures::StreamExt;
    use libp2p::request_response::{self, ProtocolSupport};
    use libp2p::swarm::SwarmEvent;

    let root = tempfile::tempdir().unwrap();
    let bob = tincan_identity::Identity::generate().unwrap();
    let mallory = tincan_identity::Identity::generate().unwrap();
    // Mallory's own signed record: well formed, signed, but not by bob.
    let record = tincan_seal::Account::generate(&mallory).keys().encode();
    let payload = tincan_wire::Response::Keys(record).encode();
    let mut answer = (payload.len() as u32).to_be_bytes().to_vec();
    answer.extend_from_slice(&payload);

    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(bob.libp2p_keypair())
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default(),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|_| {
            request_response::Behaviour::with_codec(
                Answer,
                [(libp2p::StreamProtocol::new("/tincan/chat/1"), ProtocolSupport::Inbound)],
                request_response::Config::default(),
            )
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(MINUTE))
        .build();
    swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap()).unwrap();
    let addr = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            break address;
        }
    };
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = answered.clone();
    let serving = tokio::spawn(async move {
        loop {
            if let SwarmEvent::Behaviour(request_response::Event::Message {
                message: request_response::Message::Request { channel, .. },
                ..
            }) = swarm.select_next_some().await
            {
                let _ = swarm.behaviour_mut().send_response(channel, answer.clone());
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
    });

    let mut alice = Peer::start(&root.path().join("alice"), "alice", &[]);
    let bob_id = bob.peer_id().to_string();
    alice.command(
        json!({"add": {"username": "bob", "peer_id": bob_id, "addrs": [addr.to_string()]}}),
    );
    alice.wait(Duration::from_secs(10), |v| v.get("added").cloned());
    alice.command(json!({"send": {"to": "bob", "text": "for bob only"}}));
    let warned = alice.wait(MINUTE, |v| {
        (v["sealing"]["username"] == "bob").then(|| v["sealing"]["change"].clone())
    });
    assert_eq!(warned, "KeysRefused", "{warned}");
    // Nothing was sealed to mallory's keys, and nothing was delivered.
    std::thread::sleep(Duration::from_secs(2));
    let later = alice.drain();
    assert!(later.iter().all(|v| v["status"]["status"] != "delivered"), "{later:?}");
    assert!(answered.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    let dir = root.path().join("alice");
    alice.quit();
    let store = Store::open(&dir.join("store.redb"), root_key(&dir).store_root_key()).unwrap();
    let contacts = store.contacts().await.unwrap();
    let contact = contacts.into_iter().find(|c| c.username.as_str() == "bob").unwrap();
    assert_eq!(contact.olm_keys, None, "the refused record was not kept");
    assert_eq!(store.olm_sessions(contact.conversation).await.unwrap(), None, "no session");
    serving.abort();
}

/// The keys record of a store's own Olm account, and the serial it says.
async fn own_keys(dir: &Path) -> (Vec<u8>, u64) {
    let identity = root_key(dir);
    let store = Store::open_read_only(&dir.join("store.redb"), identity.store_root_key()).unwrap();
    let keys = store.olm_keys().await.unwrap().unwrap();
    let serial = tincan_seal::SignedOlmKeys::decode(&keys).unwrap().unverified().serial;
    (keys, serial)
}

/// Bob publishes his record (with his Olm keys) and is gone without taking it down (a crash, a
/// lid closed), so the record stays; then alice, who never met him, writes `text` to him.
/// Returns alice, bob's directory and the keys record he published.
async fn write_to_bob_gone(root: &Path, args: &[String], text: &str) -> (Peer, PathBuf, Vec<u8>) {
    let bob_dir = root.join("bob");
    // Started with a phonebook, a peer is up once its record is published.
    let bob = Peer::start(&bob_dir, "bob", args);
    let (keys, _) = own_keys(&bob_dir).await;
    bob.kill();
    let mut alice = Peer::start(&root.join("alice"), "alice", args);
    alice.command(json!({"send": {"to": "bob", "text": text}}));
    alice.wait(MINUTE, |v| v.get("queued").map(|_| ()));
    (alice, bob_dir, keys)
}

/// Bob is back: `text` arrives, and nothing arrives twice. Returns alice's lines up to the
/// message's delivery.
fn bob_returns_and_gets(
    alice: &mut Peer,
    bob_dir: &Path,
    args: &[String],
    text: &str,
) -> Vec<Value> {
    let mut bob = Peer::start(bob_dir, "bob", args);
    received(&mut bob, text);
    let mut alice_lines = Vec::new();
    alice.wait(MINUTE, |v| {
        alice_lines.push(v.clone());
        (v["status"]["status"] == "delivered").then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(!bob.drain().iter().any(|v| v.get("received").is_some()), "nothing twice");
    alice_lines
}

/// `specs/phonebook.md` §2.5: bob's record carries his Olm keys, so alice, who has never met
/// him, seals her first message as she queues it, while he is away; it opens when he returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_from_the_phonebook_seal_a_first_message_before_the_two_ever_meet() {
    let root = tempfile::tempdir().unwrap();
    let (_pb, args) = phonebook(root.path());
    let text = "before we ever met";
    let (mut alice, bob_dir, bob_keys) = write_to_bob_gone(root.path(), &args, text).await;
    let alice_dir = root.path().join("alice");
    let identity = root_key(&alice_dir);
    let store =
        Store::open_read_only(&alice_dir.join("store.redb"), identity.store_root_key()).unwrap();
    let contact = store.contacts().await.unwrap().remove(0);
    assert_eq!(contact.olm_keys.as_ref(), Some(&bob_keys), "bob's keys, from his record");
    let outbox = store.outbox(contact.conversation, 10).await.unwrap();
    let envelope = Envelope::decode(outbox[0].envelope.as_ref().expect("sealed when queued"))
        .expect("an envelope of specs/sealed.md §3");
    assert_eq!(envelope.kind, tincan_seal::OlmKind::PreKey, "the first message of a session");
    drop(store);
    bob_returns_and_gets(&mut alice, &bob_dir, &args, text);
}

/// `specs/sealed.md` §6 and §8: bob replaces his fallback key on schedule; a message alice
/// sealed to keys he has since forgotten is refused, sealed again to the keys he hands her
/// over the connection, and arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sealed_to_a_forgotten_fallback_key_is_sealed_again_and_arrives() {
    let root = tempfile::tempdir().unwrap();
    let (_pb, args) = phonebook(root.path());
    let text = "to an old key";
    let (mut alice, bob_dir, keys) = write_to_bob_gone(root.path(), &args, text).await;
    let first = tincan_seal::SignedOlmKeys::decode(&keys).unwrap().unverified().serial;

    // Away from the phonebook, bob's node rotates its fallback key several times.
    let rotating = ["--olm-rotation-ms".to_owned(), "300".to_owned()];
    let away = Peer::start(&bob_dir, "bob", &rotating);
    let deadline = std::time::Instant::now() + MINUTE;
    while own_keys(&bob_dir).await.1 < first + 2 {
        assert!(std::time::Instant::now() < deadline, "bob rotates twice within a minute");
        std::thread::sleep(Duration::from_millis(200));
    }
    away.quit();

    let seen = sealing(&bob_returns_and_gets(&mut alice, &bob_dir, &args, text));
    assert!(
        seen.iter().any(|(who, change)| who == "bob" && change.starts_with("Resealed")),
        "alice is told her message was sealed again: {seen:?}"
    );
}
