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
        RequestLimits::default(),
    );
    assert_eq!(positions(got.await.unwrap()), vec![Some(0), Some(1), None]);
    // Redelivery after a lost acknowledgement: acknowledged again, stored once.
    let got = f.store.receive(
        conv,
        vec![incoming(1, "a"), incoming(5, "e"), incoming(3, "c")],
        UnixMillis(6),
        RequestLimits::default(),
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
    let got = f
        .store
        .receive(conv, vec![incoming(6, "f")], UnixMillis(7), RequestLimits::default())
        .await
        .unwrap();
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
    let req = f.store.add_request(peer(3), name("carol"), UnixMillis(3), 64).await.unwrap();
    assert_eq!(req.kind, ContactKind::Request);
    assert!(matches!(
        f.store.enqueue(req.conversation, text("hi"), UnixMillis(3)).await,
        Err(StoreError::NotAContact)
    ));
    assert!(f.store.contact_by_username(&name("carol")).await.unwrap().is_none());
    assert_eq!(f.store.add_request(peer(3), name("eve"), UnixMillis(4), 64).await.unwrap(), req);
    let accepted = f.store.accept_request(req.conversation).await.unwrap();
    assert_eq!(accepted.kind, ContactKind::Contact);
    assert_eq!(
        f.store.contact_by_username(&name("carol")).await.unwrap().unwrap().conversation,
        req.conversation
    );

    // A request claiming a taken name cannot be accepted under it.
    let fake = f.store.add_request(peer(4), name("bob"), UnixMillis(5), 64).await.unwrap();
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
    f.store
        .receive(conv, vec![incoming(1, "old key")], UnixMillis(2), RequestLimits::default())
        .await
        .unwrap();
    let sent = f.store.enqueue(conv, text("delivered"), UnixMillis(3)).await.unwrap();
    f.store
        .acknowledge(conv, vec![(sent.seq, sent.id, Outcome::Delivered)], UnixMillis(4))
        .await
        .unwrap();
    let held1 = f.store.enqueue(conv, text("held one"), UnixMillis(5)).await.unwrap();
    let held2 = f.store.enqueue(conv, text("held two"), UnixMillis(6)).await.unwrap();
    assert_eq!((held1.seq.get(), held2.seq.get()), (2, 3));

    // Bob's new key writes first (a request), then the phonebook shows the change.
    let request = f.store.add_request(peer(2), name("bob"), UnixMillis(7), 64).await.unwrap();
    f.store
        .receive(
            request.conversation,
            vec![incoming(1, "new key")],
            UnixMillis(8),
            RequestLimits::default(),
        )
        .await
        .unwrap();
    let warned = f.store.note_key_change(conv, peer(2), UnixMillis(9)).await.unwrap();
    assert_eq!(warned.pending_peer_id, Some(peer(2)));
    assert_eq!(warned.key_changes.len(), 1);
    assert_eq!(f.store.note_key_change(conv, peer(2), UnixMillis(10)).await.unwrap(), warned);
    f.store.set_verified(conv, true).await.unwrap();

    // Trust is bound to the key whose number was shown: another pending key is refused.
    assert!(matches!(
        f.store.trust_pending(conv, peer(3), UnixMillis(11)).await,
        Err(StoreError::PendingKeyChanged)
    ));
    let trusted = f.store.trust_pending(conv, peer(2), UnixMillis(11)).await.unwrap();
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
        f.store.trust_pending(conv, peer(2), UnixMillis(12)).await,
        Err(StoreError::NoPendingKey)
    ));
}

/// Issue 10: the user may keep the pinned key instead; the rejected key is remembered.
#[tokio::test]
async fn issue_10_rejecting_a_new_key_keeps_the_old_one() {
    let f = fixture();
    let bob = f.store.add_contact(name("bob"), peer(1), UnixMillis(1)).await.unwrap();
    let conv = bob.conversation;
    let held = f.store.enqueue(conv, text("for the real bob"), UnixMillis(2)).await.unwrap();
    f.store.note_key_change(conv, peer(2), UnixMillis(3)).await.unwrap();
    let kept = f.store.reject_pending(conv, UnixMillis(4)).await.unwrap();
    assert_eq!(kept.peer_id, peer(1), "the old key stays pinned");
    assert_eq!(kept.pending_peer_id, None);
    assert_eq!(kept.rejected_keys, vec![peer(2)]);
    assert_eq!(kept.key_changes[0].rejected_at, Some(UnixMillis(4)));
    assert_eq!(kept.key_changes[0].trusted_at, None);
    let outbox = f.store.outbox(conv, 10).await.unwrap();
    assert_eq!(outbox[0].id, held.id, "messages still wait, for the old key");
    assert_eq!(outbox[0].seq, held.seq, "and keep their numbers");
    assert!(matches!(
        f.store.reject_pending(conv, UnixMillis(5)).await,
        Err(StoreError::NoPendingKey)
    ));
    for n in 10..30 {
        f.store.note_key_change(conv, peer(n), UnixMillis(6)).await.unwrap();
        f.store.reject_pending(conv, UnixMillis(7)).await.unwrap();
    }
    let contact = f.store.contact(conv).await.unwrap().unwrap();
    assert_eq!(contact.rejected_keys.len(), MAX_REJECTED_KEYS, "bounded");
    assert_eq!(contact.rejected_keys.last(), Some(&peer(29)));
}

/// Issue 10: strangers cannot fill the disk: requests, and what each may hold, are capped.
#[tokio::test]
async fn issue_10_message_requests_are_capped() {
    let f = fixture();
    let limits = RequestLimits { max_requests: 3, max_messages: 4, max_bytes: 10 };
    let mut requests = Vec::new();
    for n in 1..=3 {
        requests.push(f.store.add_request(peer(n), name("spam"), UnixMillis(1), 3).await.unwrap());
    }
    assert!(matches!(
        f.store.add_request(peer(4), name("spam"), UnixMillis(1), 3).await,
        Err(StoreError::TooManyRequests)
    ));
    // A known peer is still found when the cap is reached.
    assert_eq!(
        f.store.add_request(peer(1), name("x"), UnixMillis(1), 3).await.unwrap(),
        requests[0]
    );
    // A contact does not count against it.
    f.store.add_contact(name("bob"), peer(9), UnixMillis(1)).await.unwrap();
    let conv = requests[0].conversation;
    let got = f
        .store
        .receive(
            conv,
            vec![incoming(1, "four"), incoming(2, "four"), incoming(3, "four")],
            UnixMillis(2),
            limits,
        )
        .await
        .unwrap();
    assert!(matches!(got[0], Received::Stored(_)) && matches!(got[1], Received::Stored(_)));
    assert_eq!(got[2], Received::OverQuota, "10 bytes: the third is refused");
    let many: Vec<Incoming> = (4..10).map(|i| incoming(i, "x")).collect();
    let got = f.store.receive(conv, many, UnixMillis(3), limits).await.unwrap();
    let stored = got.iter().filter(|r| matches!(r, Received::Stored(_))).count();
    assert_eq!(stored, 2, "four messages at most: {got:?}");
    assert_eq!(f.store.history(conv, None, 100).await.unwrap().len(), 4);
    // Accepted, it is a contact: no more limits.
    f.store.accept_request(conv).await.unwrap();
    let got =
        f.store.receive(conv, vec![incoming(20, "now a longer message")], UnixMillis(4), limits);
    assert!(matches!(got.await.unwrap()[0], Received::Stored(_)));
    // Deleting a request frees its place.
    f.store.delete_conversation(requests[1].conversation).await.unwrap();
    f.store.add_request(peer(4), name("spam"), UnixMillis(5), 3).await.unwrap();
}

/// Issue 10: a conversation can be deleted; a blocked one stays blocked.
#[tokio::test]
async fn issue_10_deleting_a_conversation() {
    let f = fixture();
    let bob = f.store.add_contact(name("bob"), peer(1), UnixMillis(1)).await.unwrap();
    let conv = bob.conversation;
    let limits = RequestLimits::default();
    f.store
        .receive(conv, vec![incoming(1, "a"), incoming(2, "b")], UnixMillis(2), limits)
        .await
        .unwrap();
    f.store.enqueue(conv, text("queued"), UnixMillis(3)).await.unwrap();
    assert_eq!(f.store.delete_conversation(conv).await.unwrap(), Deleted::All);
    assert!(f.store.contact(conv).await.unwrap().is_none());
    assert!(f.store.contact_by_username(&name("bob")).await.unwrap().is_none());
    assert!(f.store.contact_by_peer(&peer(1)).await.unwrap().is_none());
    assert!(f.store.history(conv, None, 10).await.unwrap().is_empty());
    assert!(f.store.outbox(conv, 10).await.unwrap().is_empty());
    assert!(f.store.outbox_conversations().await.unwrap().is_empty());
    assert_eq!(f.store.find_incoming(conv, MessageId([1; 16])).await.unwrap(), None);
    // The name is free again.
    let again = f.store.add_contact(name("bob"), peer(1), UnixMillis(4)).await.unwrap();
    assert_ne!(again.conversation, conv);

    let eve = f.store.add_request(peer(5), name("eve"), UnixMillis(5), 64).await.unwrap();
    f.store
        .receive(eve.conversation, vec![incoming(1, "spam")], UnixMillis(6), limits)
        .await
        .unwrap();
    f.store.set_blocked(eve.conversation, true).await.unwrap();
    assert_eq!(f.store.delete_conversation(eve.conversation).await.unwrap(), Deleted::KeptBlocked);
    let kept = f.store.contact_by_peer(&peer(5)).await.unwrap().unwrap();
    assert!(kept.blocked && kept.log_len == 0 && kept.unread == 0);
    assert!(f.store.history(eve.conversation, None, 10).await.unwrap().is_empty());
    let got = f.store.receive(eve.conversation, vec![incoming(2, "more")], UnixMillis(7), limits);
    assert_eq!(got.await.unwrap(), vec![Received::Blocked]);
    assert!(matches!(
        f.store.delete_conversation(ConversationId([0; 16])).await,
        Err(StoreError::NoSuchConversation)
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
    f.store
        .receive(
            bob.conversation,
            vec![incoming(1, "hi alice")],
            UnixMillis(3),
            RequestLimits::default(),
        )
        .await
        .unwrap();
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

/// Issue 16: search a conversation, and queue again what a recipient refused while it had us
/// blocked.
#[tokio::test]
async fn issue_16_search_and_requeue_refused_messages() {
    let f = fixture();
    let bob = f.store.add_contact(name("bob"), peer(1), UnixMillis(1)).await.unwrap();
    let conv = bob.conversation;
    let limits = RequestLimits::default();
    f.store
        .receive(conv, vec![incoming(1, "Dinner at EIGHT?")], UnixMillis(2), limits)
        .await
        .unwrap();
    let refused = f.store.enqueue(conv, text("eight is fine"), UnixMillis(3)).await.unwrap();
    let failed = Outcome::Failed { code: 6, reason: "blocked".into() };
    f.store
        .acknowledge(conv, vec![(refused.seq, refused.id, failed)], UnixMillis(4))
        .await
        .unwrap();
    let other = f.store.enqueue(conv, text("see you"), UnixMillis(5)).await.unwrap();
    let too_large = Outcome::Failed { code: 1, reason: "too large".into() };
    f.store.acknowledge(conv, vec![(other.seq, other.id, too_large)], UnixMillis(6)).await.unwrap();
    let found = f.store.search(conv, "eight", 10).await.unwrap();
    assert_eq!(
        found.iter().map(|e| e.text.as_str()).collect::<Vec<_>>(),
        ["Dinner at EIGHT?", "eight is fine"]
    );
    assert_eq!(f.store.search(conv, "eight", 1).await.unwrap()[0].text.as_str(), "eight is fine");
    assert!(f.store.search(conv, "nothing like it", 10).await.unwrap().is_empty());
    assert_eq!(f.store.requeue_refused(conv).await.unwrap(), 1, "only the blocked one");
    let outbox = f.store.outbox(conv, 10).await.unwrap();
    assert_eq!(outbox.len(), 1);
    assert_eq!((outbox[0].id, outbox[0].seq), (refused.id, refused.seq), "as it was");
    let entry = f.store.entry(conv, refused.position).await.unwrap().unwrap();
    assert_eq!(entry.status, Status::Queued);
    assert_eq!(f.store.requeue_refused(conv).await.unwrap(), 0);
}
