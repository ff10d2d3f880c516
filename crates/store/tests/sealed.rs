//! Messages queued sealed: the envelope is in the outbox row and the Olm sessions are in their
//! table, committed with the log entry in one transaction (`specs/sealed.md` §7.1), with real
//! Olm accounts from `tincan-seal`.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use common::*;
use tincan_identity::{Identity, StoreRootKey};
use tincan_seal::{Account, Contents, Envelope, Outgoing, PickleKey, Sessions};
use tincan_store::*;
use tincan_wire::PeerIdBytes;

fn pickle_key() -> PickleKey {
    PickleKey::from_bytes(*root().derive_key("tincan olm pickles v1"))
}

struct Peer {
    identity: Identity,
    account: Account,
}

fn peer_of() -> Peer {
    let identity = Identity::generate().unwrap();
    let account = Account::generate(&identity);
    Peer { identity, account }
}

fn peer_id(identity: &Identity) -> PeerIdBytes {
    PeerIdBytes::new(&identity.peer_id().to_bytes()).unwrap()
}

/// The sealing the engine does: the conversation's sessions from the store (or none yet),
/// the message sealed, the envelope and the sessions after the ratchet step back.
fn sealing(
    alice: &Peer,
    bob: &Peer,
    body: &str,
) -> impl FnOnce(SealInput<'_>) -> Result<SealOutput, String> + Send + 'static {
    let key = pickle_key();
    let account = Account::from_pickle(&alice.account.pickle(&key), &key).unwrap();
    let bob_key = bob.identity.public_key();
    let theirs = bob.account.keys().verify(&bob_key).unwrap();
    let body = text(body);
    move |input| {
        let sessions = match input.sessions {
            Some(bytes) => Sessions::from_pickle(bytes, &key).map_err(|e| e.to_string())?,
            None => Sessions::new(bob_key),
        };
        let message = Outgoing {
            id: input.id,
            seq: input.seq,
            contents: Contents { from: name("alice"), sent_at: input.sent_at, text: body },
        };
        let sealed = sessions.seal(&account, Some(&theirs), message).map_err(|e| e.to_string())?;
        Ok(SealOutput {
            envelope: sealed.envelope.encode(),
            sessions: sealed.sessions.pickle(&key),
        })
    }
}

#[tokio::test]
async fn a_sealed_message_is_queued_with_its_envelope_and_the_sessions_together() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sealed.redb");
    let (alice, bob) = (peer_of(), peer_of());
    let store = Store::create(&path, &root()).unwrap();
    let conv = store.add_contact(name("bob"), peer_id(&bob.identity), UnixMillis(1)).await.unwrap();
    let conv = conv.conversation;
    store.set_olm_account(alice.account.pickle(&pickle_key())).await.unwrap();
    let mut queued = Vec::new();
    for i in 0..3 {
        let body = format!("sealed {i}");
        queued.push(
            store
                .enqueue_sealed(conv, text(&body), UnixMillis(10 + i), sealing(&alice, &bob, &body))
                .await
                .unwrap(),
        );
    }
    let sessions = store.olm_sessions(conv).await.unwrap().expect("the sessions were kept");
    assert_eq!(Sessions::from_pickle(&sessions, &pickle_key()).unwrap().len(), 1);
    assert!(store.olm_account().await.unwrap().is_some());
    store.close().await;

    // Reopened: every outbox row holds its envelope, and bob opens them in order.
    let store = Store::open(&path, &root()).unwrap();
    let outbox = store.outbox(conv, 10).await.unwrap();
    assert_eq!(outbox.len(), 3);
    let mut bobs = Sessions::new(alice.identity.public_key());
    let mut account = bob.account;
    for (i, entry) in outbox.iter().enumerate() {
        assert_eq!((entry.id, entry.seq), (queued[i].id, queued[i].seq));
        let envelope = Envelope::decode(entry.envelope.as_ref().expect("sealed")).unwrap();
        assert_eq!((envelope.id, envelope.seq), (entry.id, entry.seq));
        let opened = bobs.open(&account, &envelope).unwrap();
        assert_eq!(opened.contents.text.as_str(), format!("sealed {i}"));
        assert_eq!(opened.contents.sent_at, entry.sent_at);
        bobs = opened.sessions;
        if let Some(next) = opened.account {
            account = next;
        }
    }
    // A message queued unsealed has no envelope.
    store.enqueue(conv, text("plain"), UnixMillis(20)).await.unwrap();
    assert_eq!(store.outbox(conv, 10).await.unwrap()[3].envelope, None);
    store.close().await;
}

#[tokio::test]
async fn a_sealing_that_fails_queues_nothing_and_uses_no_sequence_number() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob) = (peer_of(), peer_of());
    let store = Store::create(&dir.path().join("s.redb"), &root()).unwrap();
    let conv = store
        .add_contact(name("bob"), peer_id(&bob.identity), UnixMillis(1))
        .await
        .unwrap()
        .conversation;
    let before = snapshot(&store).await.unwrap();
    let refused = store
        .enqueue_sealed(conv, text("never"), UnixMillis(2), |_| Err("no keys for bob".into()))
        .await
        .unwrap_err();
    assert_eq!(refused.to_string(), "the message could not be sealed: no keys for bob");
    assert_eq!(snapshot(&store).await.unwrap(), before);
    assert_eq!(store.olm_sessions(conv).await.unwrap(), None);
    // The next message gets the first sequence number.
    let queued = store
        .enqueue_sealed(conv, text("first"), UnixMillis(3), sealing(&alice, &bob, "first"))
        .await
        .unwrap();
    assert_eq!(queued.seq.get(), 1);
    store.close().await;
}

#[tokio::test]
async fn deleting_a_conversation_deletes_its_sessions_and_the_file_shows_no_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.redb");
    let (alice, bob) = (peer_of(), peer_of());
    let store = Store::create(&path, &root()).unwrap();
    let conv = store
        .add_contact(name("bob"), peer_id(&bob.identity), UnixMillis(1))
        .await
        .unwrap()
        .conversation;
    store.set_olm_account(alice.account.pickle(&pickle_key())).await.unwrap();
    store
        .enqueue_sealed(conv, text("CANARYSEALED"), UnixMillis(2), sealing(&alice, &bob, "x"))
        .await
        .unwrap();
    let sessions = store.olm_sessions(conv).await.unwrap().unwrap();
    let account = store.olm_account().await.unwrap().unwrap();
    store.close().await;
    // Sealed by the store: not even the (already encrypted) pickles are in the file as such.
    let raw = std::fs::read(&path).unwrap();
    let in_file: std::collections::HashSet<&[u8]> = raw.windows(32).collect();
    for (what, bytes) in [("sessions", &sessions[..]), ("account", &account[..])] {
        assert!(!bytes.windows(32).any(|p| in_file.contains(p)), "{what} in the file");
    }
    // The wrong root key opens nothing of it.
    assert!(Store::open(&path, &StoreRootKey::from_bytes([1; 32])).is_err());
    let store = Store::open(&path, &root()).unwrap();
    store.delete_conversation(conv).await.unwrap();
    assert_eq!(store.olm_sessions(conv).await.unwrap(), None);
    assert_eq!(store.olm_account().await.unwrap(), Some(account));
    store.close().await;
}
