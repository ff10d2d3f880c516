//! Sealed messages in the store (`specs/sealed.md` §7.1), with real Olm accounts from
//! `tincan-seal`: the sender's envelope is in the outbox row and its sessions in their table,
//! committed with the log entry; the recipient's sessions, messages and seen ids are one
//! transaction; and nothing is opened that need not be.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use common::*;
use tincan_identity::{Identity, StoreRootKey};
use tincan_seal::{Account, Envelope, KeysError, OpenError, PickleKey, Sessions};
use tincan_store::*;
use tincan_wire::PeerIdBytes;

fn pickle_key() -> PickleKey {
    PickleKey::from_bytes(*root().derive_key("tincan olm pickles v1"))
}

/// One side: its identity and a store holding its Olm account.
struct Side {
    identity: std::sync::Arc<Identity>,
    keys: Vec<u8>,
    store: Store,
    _dir: tempfile::TempDir,
}

impl Side {
    async fn new() -> Side {
        let dir = tempfile::tempdir().unwrap();
        let identity = std::sync::Arc::new(Identity::generate().unwrap());
        let store = Store::create(&dir.path().join("s.redb"), &root()).unwrap();
        let keys = store.init_olm_account(Account::generate(&identity)).await.unwrap();
        Side { identity, keys, store, _dir: dir }
    }

    fn peer_id(&self) -> PeerIdBytes {
        PeerIdBytes::new(&self.identity.peer_id().to_bytes()).unwrap()
    }

    /// Pins `other` as a contact named `name`, without its keys.
    async fn contact_of(&self, name_: &str, other: &Side) -> ConversationId {
        let contact =
            self.store.add_contact(name(name_), other.peer_id(), UnixMillis(1)).await.unwrap();
        contact.conversation
    }

    /// Pins `other` as a contact named `name`, and keeps its keys record.
    async fn pin(&self, name_: &str, other: &Side) -> ConversationId {
        let conv = self.contact_of(name_, other).await;
        let update = self.store.set_peer_keys(conv, other.keys.clone()).await.unwrap();
        assert_eq!(update, KeysUpdate::Updated { serial: 1 });
        conv
    }

    async fn envelopes(&self, conv: ConversationId) -> Vec<Envelope> {
        let outbox = self.store.outbox(conv, 100).await.unwrap();
        outbox.iter().map(|e| Envelope::decode(e.envelope.as_ref().unwrap()).unwrap()).collect()
    }

    async fn receive(&self, from: &Side, envelopes: Vec<Envelope>) -> SealedReceipt {
        let limits = RequestLimits::default();
        let peer = from.identity.public_key();
        self.store.receive_sealed(peer, envelopes, UnixMillis(50), limits).await.unwrap()
    }
}

fn stored_texts(receipt: &SealedReceipt) -> Vec<String> {
    let texts = receipt.outcomes.iter().filter_map(|o| match o {
        Received::Stored(entry) => Some(entry.text.as_str().to_owned()),
        _ => None,
    });
    texts.collect()
}

#[tokio::test]
async fn sealed_messages_go_from_one_store_to_the_other_and_a_stranger_becomes_a_request() {
    let (alice, bob) = (Side::new().await, Side::new().await);
    let conv = alice.pin("bob", &bob).await;
    let mut queued = Vec::new();
    for i in 0..3 {
        let q = alice.store.enqueue_sealed(
            conv,
            name("alice"),
            text(&format!("sealed {i}")),
            UnixMillis(10 + i),
        );
        queued.push(q.await.unwrap());
    }
    let sessions = alice.store.olm_sessions(conv).await.unwrap().expect("the sessions were kept");
    assert_eq!(Sessions::from_pickle(&sessions, &pickle_key()).unwrap().len(), 1);
    let envelopes = alice.envelopes(conv).await;
    for (q, e) in queued.iter().zip(&envelopes) {
        assert_eq!(
            q.envelope.as_deref(),
            Some(&e.encode()[..]),
            "the outbox keeps what enqueue sealed"
        );
        assert_eq!((e.id, e.seq), (q.id, q.seq));
    }

    // Bob has never heard of alice: her first message opens, and makes a request under the
    // name sealed inside it, with her keys record kept.
    let receipt = bob.receive(&alice, envelopes.clone()).await;
    assert_eq!(stored_texts(&receipt), ["sealed 0", "sealed 1", "sealed 2"]);
    assert!(receipt.new_request && receipt.new_session);
    assert_eq!(receipt.keys, Some(KeysUpdate::Updated { serial: 1 }));
    let request = receipt.contact.unwrap();
    assert_eq!((request.kind, request.username.as_str()), (ContactKind::Request, "alice"));
    assert_eq!(request.olm_keys.as_ref(), Some(&alice.keys));
    let Received::Stored(first) = &receipt.outcomes[0] else { unreachable!() };
    assert_eq!(first.sent_at, UnixMillis(10));
    assert_eq!(first.claimed_from.as_ref().map(|n| n.as_str()), Some("alice"));

    // The same envelopes again: acknowledged as seen, without opening (opening would fail:
    // their keys are gone).
    let again = bob.receive(&alice, envelopes).await;
    assert_eq!(again.outcomes, vec![Received::Duplicate; 3]);
    assert!(!again.new_request && !again.new_session);

    // Bob accepts and replies; alice opens the reply in the session she started.
    bob.store.accept_request(request.conversation).await.unwrap();
    bob.store
        .enqueue_sealed(request.conversation, name("bob"), text("hi alice"), UnixMillis(60))
        .await
        .unwrap();
    let reply = bob.envelopes(request.conversation).await;
    let receipt = alice.receive(&bob, reply).await;
    assert_eq!(stored_texts(&receipt), ["hi alice"]);
    assert!(!receipt.new_request && !receipt.new_session);
}

#[tokio::test]
async fn without_the_peers_keys_a_message_waits_unsealed_and_is_sealed_once() {
    let (alice, bob) = (Side::new().await, Side::new().await);
    let conv = alice.contact_of("bob", &bob).await;
    let queued = alice
        .store
        .enqueue_sealed(conv, name("alice"), text("early"), UnixMillis(2))
        .await
        .unwrap();
    assert_eq!(queued.envelope, None);
    let seqs = vec![queued.seq];
    let err = alice.store.seal_queued(conv, name("alice"), seqs.clone()).await.unwrap_err();
    assert!(matches!(err, StoreError::NoPeerKeys), "{err:?}");
    assert_eq!(alice.store.olm_sessions(conv).await.unwrap(), None);

    // Another identity's record is refused; bob's is kept; an older serial is not.
    let mallory = Side::new().await;
    let refused = alice.store.set_peer_keys(conv, mallory.keys.clone()).await.unwrap();
    assert_eq!(refused, KeysUpdate::Refused(KeysError::NotThePinnedIdentity));
    let garbage = alice.store.set_peer_keys(conv, vec![0xa1, 0x00]).await.unwrap();
    assert!(matches!(garbage, KeysUpdate::Refused(_)), "{garbage:?}");
    assert_eq!(
        alice.store.set_peer_keys(conv, bob.keys.clone()).await.unwrap(),
        KeysUpdate::Updated { serial: 1 }
    );
    assert_eq!(alice.store.set_peer_keys(conv, bob.keys.clone()).await.unwrap(), KeysUpdate::Kept);

    let first = alice.store.seal_queued(conv, name("alice"), seqs.clone()).await.unwrap();
    let second = alice.store.seal_queued(conv, name("alice"), seqs).await.unwrap();
    assert_eq!(first, second, "every attempt sends the same bytes");
    assert_eq!(alice.envelopes(conv).await[0].encode(), first[0].1);
    let receipt = bob.receive(&alice, alice.envelopes(conv).await).await;
    assert_eq!(stored_texts(&receipt), ["early"]);
}

/// Messages queued before the peer's keys were known, then more after: the ratchet's chain
/// must follow the sequence numbers, or the recipient, opening in order, skips more message
/// keys than Olm keeps (40) and refuses the rest as replayed. Found by the node benchmark,
/// where 100 messages sent at once to a new contact took a new session to get through.
#[tokio::test]
async fn messages_queued_before_the_keys_are_sealed_in_order_with_those_after() {
    let (alice, bob) = (Side::new().await, Side::new().await);
    let conv = alice.contact_of("bob", &bob).await;
    bob.pin("alice", &alice).await;
    let send = |i: u64| {
        alice.store.enqueue_sealed(conv, name("alice"), text(&format!("m{i}")), UnixMillis(i))
    };
    let mut seqs = Vec::new();
    for i in 0..50 {
        let queued = send(i).await.unwrap();
        assert_eq!(queued.envelope, None, "no keys yet");
        seqs.push(queued.seq);
    }
    alice.store.set_peer_keys(conv, bob.keys.clone()).await.unwrap();
    for i in 50..100 {
        let queued = send(i).await.unwrap();
        assert!(queued.envelope.is_none(), "sealed only after the 50 before it, in order");
        seqs.push(queued.seq);
    }
    // Sent as delivery sends: the lowest first, in batches of up to 64.
    let mut envelopes = Vec::new();
    for batch in seqs.chunks(64) {
        let sealed = alice.store.seal_queued(conv, name("alice"), batch.to_vec()).await.unwrap();
        envelopes.extend(sealed.into_iter().map(|(_, e)| Envelope::decode(&e).unwrap()));
    }
    // Sealed now, the next one is sealed as it is queued.
    assert!(send(100).await.unwrap().envelope.is_some());
    let mut texts = Vec::new();
    for batch in envelopes.chunks(64) {
        let receipt = bob.receive(&alice, batch.to_vec()).await;
        texts.extend(stored_texts(&receipt));
        for outcome in &receipt.outcomes {
            assert!(matches!(outcome, Received::Stored(_)), "{outcome:?}");
        }
    }
    let want: Vec<String> = (0..100).map(|i| format!("m{i}")).collect();
    assert_eq!(texts, want);
}

#[tokio::test]
async fn refusals_open_nothing_and_change_nothing() {
    let (alice, bob) = (Side::new().await, Side::new().await);
    let conv = alice.pin("bob", &bob).await;
    let bobs_conv = bob.pin("alice", &alice).await;
    for i in 0..3 {
        alice
            .store
            .enqueue_sealed(conv, name("alice"), text(&format!("m{i}")), UnixMillis(i))
            .await
            .unwrap();
    }
    let envelopes = alice.envelopes(conv).await;

    // A changed message in the middle of a batch: refused with its reason; the others store.
    let mut tampered = envelopes.clone();
    let last = tampered[1].body.len() - 1;
    tampered[1].body[last] ^= 1;
    let before = bob.store.olm_sessions(bobs_conv).await.unwrap();
    let receipt = bob.receive(&alice, tampered).await;
    assert_eq!(receipt.outcomes[1], Received::Unopened(OpenError::Tampered));
    assert_eq!(stored_texts(&receipt), ["m0", "m2"]);
    assert_ne!(bob.store.olm_sessions(bobs_conv).await.unwrap(), before);
    // The genuine one still opens afterwards: nothing was spent on the changed copy.
    let receipt = bob.receive(&alice, vec![envelopes[1].clone()]).await;
    assert_eq!(stored_texts(&receipt), ["m1"]);
    assert!(receipt.outcomes.len() == 1);

    // Blocked: refused before opening, and the sessions stay as they were.
    alice.store.enqueue_sealed(conv, name("alice"), text("m3"), UnixMillis(9)).await.unwrap();
    let m3 = alice.envelopes(conv).await.pop().unwrap();
    bob.store.set_blocked(bobs_conv, true).await.unwrap();
    let sessions = bob.store.olm_sessions(bobs_conv).await.unwrap();
    let before = snapshot(&bob.store).await.unwrap();
    let receipt = bob.receive(&alice, vec![m3.clone()]).await;
    assert_eq!(receipt.outcomes, [Received::Blocked]);
    assert_eq!(bob.store.olm_sessions(bobs_conv).await.unwrap(), sessions);
    assert_eq!(snapshot(&bob.store).await.unwrap(), before);
    bob.store.set_blocked(bobs_conv, false).await.unwrap();
    assert_eq!(stored_texts(&bob.receive(&alice, vec![m3]).await), ["m3"]);
}

#[tokio::test]
async fn a_stranger_whose_first_message_does_not_open_leaves_no_trace() {
    let (alice, bob, carol) = (Side::new().await, Side::new().await, Side::new().await);
    let conv = alice.pin("bob", &bob).await;
    alice.store.enqueue_sealed(conv, name("alice"), text("hello"), UnixMillis(1)).await.unwrap();
    let envelopes = alice.envelopes(conv).await;
    let before = snapshot(&bob.store).await.unwrap();
    // Carol's connection carries alice's envelope: carol is not who sealed it.
    let receipt = bob.receive(&carol, envelopes.clone()).await;
    assert!(matches!(receipt.outcomes[..], [Received::Unopened(_)]), "{:?}", receipt.outcomes);
    assert_eq!((receipt.contact, receipt.new_request), (None, false));
    assert_eq!(snapshot(&bob.store).await.unwrap(), before);
    // Sent to carol, it is not for her.
    let receipt = carol.receive(&alice, envelopes).await;
    assert_eq!(receipt.outcomes, [Received::Unopened(OpenError::WrongRecipient)]);
}

#[tokio::test]
async fn a_message_requests_quota_counts_sealed_bodies() {
    let (alice, bob) = (Side::new().await, Side::new().await);
    let conv = alice.pin("bob", &bob).await;
    for i in 0..4 {
        alice
            .store
            .enqueue_sealed(conv, name("alice"), text(&format!("q{i}")), UnixMillis(i))
            .await
            .unwrap();
    }
    let envelopes = alice.envelopes(conv).await;
    // Room for two bodies of a few hundred bytes, whatever the texts' length (2 bytes each).
    let body = envelopes[0].body.len() as u64;
    assert!(body > 256, "padded to a bucket: {body}");
    let limits = RequestLimits { max_requests: 4, max_messages: 100, max_bytes: 2 * body + 100 };
    let peer = alice.identity.public_key();
    let receipt = bob.store.receive_sealed(peer, envelopes, UnixMillis(5), limits).await.unwrap();
    assert_eq!(stored_texts(&receipt), ["q0", "q1"]);
    assert_eq!(receipt.outcomes[2..], [Received::OverQuota, Received::OverQuota]);
}

#[tokio::test]
async fn deleting_a_conversation_deletes_its_sessions_and_the_file_shows_no_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.redb");
    let (alice, bob) = (Identity::generate().unwrap(), Side::new().await);
    let store = Store::create(&path, &root()).unwrap();
    assert_eq!(store.olm_keys().await.unwrap(), None);
    let first = store.init_olm_account(Account::generate(&alice)).await.unwrap();
    assert_eq!(store.olm_keys().await.unwrap(), Some(first));
    let conv =
        store.add_contact(name("bob"), bob.peer_id(), UnixMillis(1)).await.unwrap().conversation;
    store.set_peer_keys(conv, bob.keys.clone()).await.unwrap();
    store.enqueue_sealed(conv, name("alice"), text("CANARYSEALED"), UnixMillis(2)).await.unwrap();
    let sessions = store.olm_sessions(conv).await.unwrap().unwrap();
    let account = store.olm_account().await.unwrap().unwrap();
    // A second account is not kept over the first.
    let kept = store.init_olm_account(Account::generate(&alice)).await.unwrap();
    assert_eq!(Account::from_pickle(&account, &pickle_key()).unwrap().keys().encode(), kept);
    store.close().await;
    // Sealed by the store: not even the (already encrypted) pickles are in the file as such,
    // nor the text in the outbox's envelope.
    let raw = std::fs::read(&path).unwrap();
    let in_file: std::collections::HashSet<&[u8]> = raw.windows(32).collect();
    for (what, bytes) in [("sessions", &sessions[..]), ("account", &account[..])] {
        assert!(!bytes.windows(32).any(|p| in_file.contains(p)), "{what} in the file");
    }
    assert!(!raw.windows(12).any(|w| w == b"CANARYSEALED"));
    // The wrong root key opens nothing of it.
    assert!(Store::open(&path, &StoreRootKey::from_bytes([1; 32])).is_err());
    let store = Store::open(&path, &root()).unwrap();
    store.delete_conversation(conv).await.unwrap();
    assert_eq!(store.olm_sessions(conv).await.unwrap(), None);
    assert_eq!(store.olm_account().await.unwrap(), Some(account));
    store.close().await;
}

/// `specs/sealed.md` §6: the fallback key is rotated on schedule; a pre-key message sealed to
/// the key it replaced still opens, one sealed to the key before that is refused as an unknown
/// key and changes nothing; peers keep the newest record and never go back.
#[tokio::test]
async fn the_fallback_key_rotates_weekly_and_a_key_two_rotations_old_opens_nothing() {
    const WEEK: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);
    let day = 24 * 3600 * 1000;
    let (alice, bob, carol) = (Side::new().await, Side::new().await, Side::new().await);
    let rotate =
        |at: u64| bob.store.rotate_fallback_key(bob.identity.clone(), UnixMillis(at), WEEK);
    let t0 = 1_764_180_000_000;
    assert_eq!(rotate(t0).await.unwrap(), None, "the first call starts the clock");
    assert_eq!(rotate(t0 + 6 * day).await.unwrap(), None, "not yet a week");

    // Alice and carol know bob's first keys (serial 1) and seal a first message each.
    let (to_bob, carol_to_bob) = (alice.pin("bob", &bob).await, carol.pin("bob", &bob).await);
    alice
        .store
        .enqueue_sealed(to_bob, name("alice"), text("one week"), UnixMillis(10))
        .await
        .unwrap();
    carol
        .store
        .enqueue_sealed(carol_to_bob, name("carol"), text("two weeks"), UnixMillis(10))
        .await
        .unwrap();

    let second = rotate(t0 + 7 * day).await.unwrap().expect("a week: rotated");
    let keys = tincan_seal::SignedOlmKeys::decode(&second).unwrap();
    assert_eq!(keys.unverified().serial, 2);
    assert_ne!(
        keys.unverified().fallback,
        tincan_seal::SignedOlmKeys::decode(&bob.keys).unwrap().unverified().fallback
    );
    assert_eq!(bob.store.olm_keys().await.unwrap(), Some(second.clone()), "the new keys are kept");
    assert_eq!(rotate(t0 + 8 * day).await.unwrap(), None, "the clock restarted at the rotation");

    // One rotation later, the replaced key still opens.
    let receipt = bob.receive(&alice, alice.envelopes(to_bob).await).await;
    assert_eq!(stored_texts(&receipt), ["one week"]);

    // Two rotations later, it is forgotten: refused, and bob's state is as it was.
    let third = rotate(t0 + 14 * day).await.unwrap().expect("two weeks: rotated again");
    let account = bob.store.olm_account().await.unwrap();
    let receipt = bob.receive(&carol, carol.envelopes(carol_to_bob).await).await;
    assert!(
        matches!(receipt.outcomes[..], [Received::Unopened(OpenError::UnknownKey)]),
        "{:?}",
        receipt.outcomes
    );
    assert_eq!(bob.store.olm_account().await.unwrap(), account, "a refusal changes nothing");

    // Peers take the newest record and do not go back to an older one.
    let update = carol.store.set_peer_keys(carol_to_bob, third.clone()).await.unwrap();
    assert_eq!(update, KeysUpdate::Updated { serial: 3 });
    let update = carol.store.set_peer_keys(carol_to_bob, second).await.unwrap();
    assert_eq!(update, KeysUpdate::Kept);

    // The clock set back below the last rotation: the period starts again from it, rather
    // than rotation stopping until the clock catches up.
    assert_eq!(rotate(t0 + day).await.unwrap(), None);
    assert!(rotate(t0 + 8 * day).await.unwrap().is_some(), "a week after the clock went back");
}

/// `specs/sealed.md` §8 and §2.2: after a new session had to start, keys from a directory
/// (which may be the old record that led there) are not taken until the peer itself hands its
/// keys over; from then on a directory's newer record is taken again.
#[tokio::test]
async fn after_a_restart_only_the_peer_itself_gives_its_keys() {
    let (alice, bob) = (Side::new().await, Side::new().await);
    let conv = alice.pin("bob", &bob).await;
    alice.store.restart_session(conv).await.unwrap();
    let contact = alice.store.contact(conv).await.unwrap().unwrap();
    assert!(contact.awaiting_peer_keys && contact.olm_keys.is_none());

    // The phonebook serves bob's old record: not taken.
    let update = alice.store.offer_directory_keys(conv, bob.keys.clone()).await.unwrap();
    assert_eq!(update, KeysUpdate::Kept);
    let contact = alice.store.contact(conv).await.unwrap().unwrap();
    assert_eq!(contact.olm_keys, None, "nothing is sealed to the directory's record");
    let queued = alice
        .store
        .enqueue_sealed(conv, name("alice"), text("waits"), UnixMillis(5))
        .await
        .unwrap();
    assert_eq!(queued.envelope, None, "so the message waits for the peer's keys");

    // Bob hands over his (rotated) keys on the connection: kept, and the wait is over.
    let week = std::time::Duration::from_secs(7 * 24 * 3600);
    let rotate = |at| bob.store.rotate_fallback_key(bob.identity.clone(), UnixMillis(at), week);
    rotate(1).await.unwrap();
    let second = rotate(1 + 7 * 24 * 3600 * 1000).await.unwrap().unwrap();
    let update = alice.store.set_peer_keys(conv, second).await.unwrap();
    assert_eq!(update, KeysUpdate::Updated { serial: 2 });
    assert!(!alice.store.contact(conv).await.unwrap().unwrap().awaiting_peer_keys);

    // A directory's newer record is taken again; an older one is not.
    let third = rotate(1 + 14 * 24 * 3600 * 1000).await.unwrap().unwrap();
    let update = alice.store.offer_directory_keys(conv, third).await.unwrap();
    assert_eq!(update, KeysUpdate::Updated { serial: 3 });
    let update = alice.store.offer_directory_keys(conv, bob.keys.clone()).await.unwrap();
    assert_eq!(update, KeysUpdate::Kept);
}
