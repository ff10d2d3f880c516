//! The store's behaviour through its public API, on real redb files in temporary folders.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use tincan_identity::StoreRootKey;
use tincan_store::*;
use tincan_wire::{MessageId, PeerIdBytes, Seq, Text, Username};

fn root() -> StoreRootKey {
    StoreRootKey::from_bytes([42; 32])
}

fn name(s: &str) -> Username {
    Username::new(s).unwrap()
}

fn peer(n: u8) -> PeerIdBytes {
    PeerIdBytes::new(&[0, 36, 8, 1, 18, 32, n, n, n]).unwrap()
}

fn text(s: &str) -> Text {
    Text::new(s).unwrap()
}

fn incoming(seq: u64, body: &str) -> Incoming {
    Incoming {
        id: MessageId([seq as u8; 16]),
        seq: Seq::new(seq).unwrap(),
        sent_at: UnixMillis(1000 + seq),
        from: name("bob"),
        text: text(body),
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    store: Store,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let store = Store::create(&path, &root()).unwrap();
    Fixture { _dir: dir, path, store }
}

#[tokio::test]
async fn enqueue_then_acknowledge_moves_a_message_through_its_states() {
    let f = fixture();
    let bob = f.store.add_contact(name("bob"), peer(1), UnixMillis(1)).await.unwrap();
    let q1 = f.store.enqueue(bob.conversation, text("one"), UnixMillis(10)).await.unwrap();
    let q2 = f.store.enqueue(bob.conversation, text("two"), UnixMillis(11)).await.unwrap();
    assert_eq!((q1.seq.get(), q2.seq.get()), (1, 2));
    assert_eq!((q1.position, q2.position), (0, 1));
    let outbox = f.store.outbox(bob.conversation, 10).await.unwrap();
    assert_eq!(outbox.iter().map(|e| e.id).collect::<Vec<_>>(), vec![q1.id, q2.id]);
    assert_eq!(f.store.outbox_conversations().await.unwrap(), vec![(bob.conversation, 2)]);
    let tail = f.store.outbox_from(bob.conversation, q2.seq, 10).await.unwrap();
    assert_eq!(tail.iter().map(|e| e.id).collect::<Vec<_>>(), vec![q2.id]);

    f.store.record_attempt(bob.conversation, vec![q1.seq], UnixMillis(500)).await.unwrap();
    let entry = f.store.entry(bob.conversation, q1.position).await.unwrap().unwrap();
    assert_eq!(entry.status, Status::Sent);
    let outbox = f.store.outbox(bob.conversation, 10).await.unwrap();
    assert_eq!((outbox[0].attempts, outbox[0].next_attempt_at), (1, UnixMillis(500)));

    let changed = f
        .store
        .acknowledge(
            bob.conversation,
            vec![
                (q1.seq, q1.id, Outcome::Delivered),
                (q2.seq, q2.id, Outcome::Failed { code: 6, reason: "blocked".into() }),
                (Seq::new(9).unwrap(), MessageId([9; 16]), Outcome::Delivered),
                (q1.seq, MessageId([8; 16]), Outcome::Delivered),
            ],
            UnixMillis(20),
        )
        .await
        .unwrap();
    assert_eq!(changed.len(), 2, "unknown sequence numbers and ids are ignored");
    assert!(f.store.outbox(bob.conversation, 10).await.unwrap().is_empty());
    let history = f.store.history(bob.conversation, None, 10).await.unwrap();
    assert_eq!(history[0].status, Status::Delivered { at: UnixMillis(20) });
    assert!(matches!(history[1].status, Status::Failed { code: 6, .. }));
    // A second acknowledgement changes nothing.
    let again = f.store.acknowledge(
        bob.conversation,
        vec![(q1.seq, q1.id, Outcome::Delivered)],
        UnixMillis(30),
    );
    assert!(again.await.unwrap().is_empty());
}

#[tokio::test]
async fn receiving_dedupes_ids_and_records_gaps_and_late_arrivals() {
    let f = fixture();
    let bob = f.store.add_contact(name("bob"), peer(1), UnixMillis(1)).await.unwrap();
    let conv = bob.conversation;
    let positions = |got: Vec<Received>| -> Vec<Option<u64>> {
        got.into_iter()
            .map(|r| match r {
                Received::Stored(entry) => Some(entry.position),
                _ => None,
            })
            .collect()
    };
    let got = f.store.receive(
        conv,
        vec![incoming(1, "a"), incoming(2, "b"), incoming(2, "b")],
        UnixMillis(5),
    );
    assert_eq!(positions(got.await.unwrap()), vec![Some(0), Some(1), None]);
    // Redelivery after a lost acknowledgement: acknowledged again, stored once.
    let got = f.store.receive(
        conv,
        vec![incoming(1, "a"), incoming(5, "e"), incoming(3, "c")],
        UnixMillis(6),
    );
    let got = got.await.unwrap();
    assert_eq!(got[0], Received::Duplicate);
    assert_eq!(positions(got), vec![None, Some(2), Some(3)]);
    let history = f.store.history(conv, None, 100).await.unwrap();
    let summary: Vec<_> = history.iter().map(|e| (e.seq.get(), e.missing_before, e.late)).collect();
    assert_eq!(summary, vec![(1, 0, false), (2, 0, false), (5, 2, false), (3, 0, true)]);
    assert_eq!(history[2].claimed_from, Some(name("bob")));
    assert_eq!(f.store.find_incoming(conv, MessageId([5; 16])).await.unwrap(), Some(2));
    assert_eq!(f.store.find_incoming(conv, MessageId([6; 16])).await.unwrap(), None);
    assert_eq!(f.store.contact(conv).await.unwrap().unwrap().unread, 4);
    assert_eq!(f.store.mark_read(conv).await.unwrap().unread, 0);

    f.store.set_blocked(conv, true).await.unwrap();
    let got = f.store.receive(conv, vec![incoming(6, "f")], UnixMillis(7)).await.unwrap();
    assert_eq!(got, vec![Received::Blocked]);
    assert_eq!(f.store.history(conv, None, 100).await.unwrap().len(), 4, "nothing stored");
}

#[tokio::test]
async fn history_pages_backwards() {
    let f = fixture();
    let bob = f.store.add_contact(name("bob"), peer(1), UnixMillis(1)).await.unwrap();
    for i in 0..25 {
        f.store.enqueue(bob.conversation, text(&format!("m{i}")), UnixMillis(i)).await.unwrap();
    }
    let last = f.store.history(bob.conversation, None, 10).await.unwrap();
    assert_eq!(last.first().unwrap().position, 15);
    assert_eq!(last.last().unwrap().text.as_str(), "m24");
    let before = f.store.history(bob.conversation, Some(15), 10).await.unwrap();
    assert_eq!(before.iter().map(|e| e.position).collect::<Vec<_>>(), (5..15).collect::<Vec<_>>());
    let first = f.store.history(bob.conversation, Some(5), 10).await.unwrap();
    assert_eq!(first.len(), 5);
}

#[tokio::test]
async fn contacts_requests_and_indexes() {
    let f = fixture();
    let bob = f.store.add_contact(name("bob"), peer(1), UnixMillis(1)).await.unwrap();
    assert!(matches!(
        f.store.add_contact(name("bob"), peer(2), UnixMillis(2)).await,
        Err(StoreError::UsernameTaken(_))
    ));
    assert!(matches!(
        f.store.add_contact(name("robert"), peer(1), UnixMillis(2)).await,
        Err(StoreError::PeerTaken)
    ));
    assert_eq!(f.store.contact_by_username(&name("bob")).await.unwrap().unwrap(), bob);
    assert_eq!(f.store.contact_by_peer(&peer(1)).await.unwrap().unwrap(), bob);

    // A stranger writes first: a request, found by peer but not by its claimed name.
    let req = f.store.add_request(peer(3), name("carol"), UnixMillis(3)).await.unwrap();
    assert_eq!(req.kind, ContactKind::Request);
    assert!(matches!(
        f.store.enqueue(req.conversation, text("hi"), UnixMillis(3)).await,
        Err(StoreError::NotAContact)
    ));
    assert!(f.store.contact_by_username(&name("carol")).await.unwrap().is_none());
    assert_eq!(f.store.add_request(peer(3), name("eve"), UnixMillis(4)).await.unwrap(), req);
    let accepted = f.store.accept_request(req.conversation).await.unwrap();
    assert_eq!(accepted.kind, ContactKind::Contact);
    assert_eq!(
        f.store.contact_by_username(&name("carol")).await.unwrap().unwrap().conversation,
        req.conversation
    );

    // A request claiming a taken name cannot be accepted under it.
    let fake = f.store.add_request(peer(4), name("bob"), UnixMillis(5)).await.unwrap();
    assert!(matches!(
        f.store.accept_request(fake.conversation).await,
        Err(StoreError::UsernameTaken(_))
    ));
    // ...but adding it as a contact under another name works, and keeps its conversation.
    let dave = f.store.add_contact(name("dave"), peer(4), UnixMillis(6)).await.unwrap();
    assert_eq!(dave.conversation, fake.conversation);

    let all = f.store.contacts().await.unwrap();
    assert_eq!(
        all.iter().map(|c| c.username.as_str()).collect::<Vec<_>>(),
        ["bob", "carol", "dave"]
    );
    let verified = f.store.set_verified(bob.conversation, true).await.unwrap();
    assert!(verified.verified);
    let addrs =
        (0..20).map(|i| format!("/ip4/127.0.0.1/tcp/{i}")).chain(["x".repeat(300)]).collect();
    assert_eq!(f.store.set_addrs(bob.conversation, addrs).await.unwrap().addrs.len(), MAX_ADDRS);
    assert!(matches!(
        f.store.enqueue(ConversationId([0; 16]), text("x"), UnixMillis(0)).await,
        Err(StoreError::NoSuchConversation)
    ));
}

#[tokio::test]
async fn trusting_a_new_key_repins_merges_and_renumbers() {
    let f = fixture();
    let bob = f.store.add_contact(name("bob"), peer(1), UnixMillis(1)).await.unwrap();
    let conv = bob.conversation;
    f.store.receive(conv, vec![incoming(1, "old key")], UnixMillis(2)).await.unwrap();
    let sent = f.store.enqueue(conv, text("delivered"), UnixMillis(3)).await.unwrap();
    f.store
        .acknowledge(conv, vec![(sent.seq, sent.id, Outcome::Delivered)], UnixMillis(4))
        .await
        .unwrap();
    let held1 = f.store.enqueue(conv, text("held one"), UnixMillis(5)).await.unwrap();
    let held2 = f.store.enqueue(conv, text("held two"), UnixMillis(6)).await.unwrap();
    assert_eq!((held1.seq.get(), held2.seq.get()), (2, 3));

    // Bob's new key writes first (a request), then the phonebook shows the change.
    let request = f.store.add_request(peer(2), name("bob"), UnixMillis(7)).await.unwrap();
    f.store
        .receive(request.conversation, vec![incoming(1, "new key")], UnixMillis(8))
        .await
        .unwrap();
    let warned = f.store.note_key_change(conv, peer(2), UnixMillis(9)).await.unwrap();
    assert_eq!(warned.pending_peer_id, Some(peer(2)));
    assert_eq!(warned.key_changes.len(), 1);
    assert_eq!(f.store.note_key_change(conv, peer(2), UnixMillis(10)).await.unwrap(), warned);
    f.store.set_verified(conv, true).await.unwrap();

    let trusted = f.store.trust_pending(conv, UnixMillis(11)).await.unwrap();
    assert_eq!(trusted.peer_id, peer(2));
    assert_eq!(trusted.pending_peer_id, None);
    assert!(!trusted.verified, "a new key is unverified");
    assert_eq!(trusted.key_changes[0].trusted_at, Some(UnixMillis(11)));
    assert_eq!(trusted.next_expected_seq, 2, "continues the new key's numbering");
    assert_eq!(trusted.last_sent_seq, 2);
    let outbox = f.store.outbox(conv, 10).await.unwrap();
    assert_eq!(
        outbox.iter().map(|e| (e.id, e.seq.get())).collect::<Vec<_>>(),
        vec![(held1.id, 1), (held2.id, 2)]
    );
    let history = f.store.history(conv, None, 10).await.unwrap();
    assert_eq!(history.len(), 5);
    assert_eq!(history[4].text.as_str(), "new key");
    assert_eq!(history[2].seq.get(), 1, "the log entry was renumbered with the outbox");
    assert!(f.store.contact(request.conversation).await.unwrap().is_none(), "request merged");
    assert_eq!(f.store.contact_by_peer(&peer(2)).await.unwrap().unwrap().conversation, conv);
    assert!(f.store.contact_by_peer(&peer(1)).await.unwrap().is_none());
    assert!(matches!(
        f.store.trust_pending(conv, UnixMillis(12)).await,
        Err(StoreError::NoPendingKey)
    ));
}

#[tokio::test]
async fn data_survives_reopening_and_the_wrong_key_is_refused() {
    let f = fixture();
    let bob = f.store.add_contact(name("bob"), peer(1), UnixMillis(1)).await.unwrap();
    let q = f.store.enqueue(bob.conversation, text("persist me"), UnixMillis(2)).await.unwrap();
    f.store.set_setting("theme", b"dark".to_vec()).await.unwrap();
    f.store.clone().close().await;
    drop(f.store);

    assert!(matches!(
        Store::open(&f.path, &StoreRootKey::from_bytes([43; 32])),
        Err(OpenError::WrongKey)
    ));
    let store = Store::open(&f.path, &root()).unwrap();
    assert_eq!(store.outbox(bob.conversation, 10).await.unwrap()[0].id, q.id);
    assert_eq!(store.setting("theme").await.unwrap(), Some(b"dark".to_vec()));
    assert_eq!(store.setting("other").await.unwrap(), None);
    let second = Store::open(&f.path, &root());
    assert!(matches!(second, Err(OpenError::AlreadyOpen)), "{second:?}");
}

#[tokio::test]
async fn export_is_decrypted_json() {
    let f = fixture();
    let bob = f.store.add_contact(name("bob"), peer(1), UnixMillis(1)).await.unwrap();
    f.store.enqueue(bob.conversation, text("hello bob"), UnixMillis(2)).await.unwrap();
    f.store.receive(bob.conversation, vec![incoming(1, "hi alice")], UnixMillis(3)).await.unwrap();
    let all = f.store.export(None).await.unwrap();
    assert_eq!(all["format"], "tincan-export/1");
    let conv = &all["conversations"][0];
    assert_eq!(conv["contact"]["username"], "bob");
    assert_eq!(conv["messages"][0]["text"], "hello bob");
    assert_eq!(conv["messages"][0]["status"]["state"], "queued");
    assert_eq!(conv["messages"][1]["direction"], "incoming");
    assert_eq!(conv["messages"][1]["id"], "01".repeat(16));
    let one = f.store.export(Some(bob.conversation)).await.unwrap();
    assert_eq!(one["conversations"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn open_and_create_do_not_mix_up_new_and_existing_stores() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    assert!(matches!(Store::open(&path, &root()), Err(OpenError::NotFound)));
    Store::create(&path, &root()).unwrap().close().await;
    assert!(matches!(Store::create(&path, &root()), Err(OpenError::AlreadyExists)));
    std::fs::write(&path, b"").unwrap();
    assert!(matches!(Store::open(&path, &root()), Err(OpenError::Corrupted(_))));
    std::fs::write(&path, b"not a database at all, just some bytes").unwrap();
    let err = Store::open(&path, &root()).err().unwrap();
    assert!(matches!(err, OpenError::Corrupted(_)), "{err:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let fresh = dir.path().join("fresh.redb");
        Store::create(&fresh, &root()).unwrap().close().await;
        assert_eq!(std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
