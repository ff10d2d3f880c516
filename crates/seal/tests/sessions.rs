//! Sealed conversations between two real accounts: both ways, through pickles as the store
//! keeps them, with forward secrecy, tampering, foreign keys and restored backups.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use tincan_identity::Identity;
use tincan_seal::*;
use tincan_wire::{MessageId, Seq, Text, UnixMillis, Username};

struct Side {
    identity: Identity,
    account: Account,
    sessions: Sessions,
    seq: u64,
    name: &'static str,
}

fn pair() -> (Side, Side) {
    let (a, b) = (Identity::generate().unwrap(), Identity::generate().unwrap());
    let alice = Side {
        account: Account::generate(&a),
        sessions: Sessions::new(b.public_key()),
        identity: a,
        seq: 0,
        name: "alice",
    };
    let bob = Side {
        account: Account::generate(&b),
        sessions: Sessions::new(alice.identity.public_key()),
        identity: b,
        seq: 0,
        name: "bob",
    };
    (alice, bob)
}

/// What an accepted message showed, its state committed.
struct Got {
    id: MessageId,
    seq: Seq,
    contents: Contents,
    new_session: bool,
    sender_keys: bool,
}

fn text_of(side: &str, seq: u64) -> String {
    format!("{side} says {seq}")
}

impl Side {
    fn outgoing(&mut self) -> Outgoing {
        self.seq += 1;
        let mut id = [0; 16];
        id[0] = self.name.as_bytes()[0];
        id[8..].copy_from_slice(&self.seq.to_be_bytes());
        Outgoing {
            id: MessageId(id),
            seq: Seq::new(self.seq).unwrap(),
            contents: Contents {
                from: Username::new(self.name).unwrap(),
                sent_at: UnixMillis(1_764_000_000_000 + self.seq),
                text: Text::new(&text_of(self.name, self.seq)).unwrap(),
            },
        }
    }

    /// Seals the next message and commits the state, as the engine does.
    fn send(&mut self, to: &Side) -> Envelope {
        let keys = to.account.keys().verify(&to.identity.public_key()).unwrap();
        let message = self.outgoing();
        let sealed = self.sessions.seal(&self.account, Some(&keys), message).unwrap();
        self.sessions = sealed.sessions;
        // The envelope goes through its encoding, as from the outbox to the wire.
        Envelope::decode(&sealed.envelope.encode()).unwrap()
    }

    fn receive(&mut self, envelope: &Envelope) -> Result<Opened, OpenError> {
        self.sessions.open(&self.account, envelope)
    }

    /// Opens and commits.
    fn accept(&mut self, envelope: &Envelope) -> Got {
        let opened = self.receive(envelope).unwrap();
        self.commit(&opened);
        Got {
            id: opened.id,
            seq: opened.seq,
            contents: opened.contents,
            new_session: opened.new_session,
            sender_keys: opened.sender_keys.is_some(),
        }
    }

    fn commit(&mut self, opened: &Opened) {
        // Through the pickles, as the store writes and reads them.
        let key = PickleKey::from_bytes([4; 32]);
        self.sessions = Sessions::from_pickle(&opened.sessions.pickle(&key), &key).unwrap();
        if let Some(account) = &opened.account {
            self.account = Account::from_pickle(&account.pickle(&key), &key).unwrap();
        }
    }

    /// A copy of everything this side keeps, as a later theft or a backup would take it.
    fn snapshot(&self) -> (Vec<u8>, Vec<u8>) {
        let key = PickleKey::from_bytes([4; 32]);
        (self.account.pickle(&key), self.sessions.pickle(&key))
    }

    fn restore(&mut self, (account, sessions): &(Vec<u8>, Vec<u8>)) {
        let key = PickleKey::from_bytes([4; 32]);
        self.account = Account::from_pickle(account, &key).unwrap();
        self.sessions = Sessions::from_pickle(sessions, &key).unwrap();
    }
}

#[test]
fn a_conversation_flows_both_ways_through_ratchet_turns() {
    let (mut alice, mut bob) = pair();
    // Alice writes first: pre-key messages until bob answers.
    for _ in 0..3 {
        let envelope = alice.send(&bob);
        assert_eq!(envelope.kind, OlmKind::PreKey);
        let opened = bob.accept(&envelope);
        assert_eq!(opened.contents.text.as_str(), text_of("alice", opened.seq.get()));
        assert!(opened.sender_keys);
    }
    assert_eq!(bob.sessions.len(), 1, "three pre-key messages of one session make one session");
    for round in 0..20 {
        let (from, to) =
            if round % 3 == 2 { (&mut alice, &mut bob) } else { (&mut bob, &mut alice) };
        let envelope = from.send(to);
        let opened = to.accept(&envelope);
        assert_eq!(opened.contents.from.as_str(), from.name);
        assert_eq!(opened.contents.text.as_str(), text_of(from.name, opened.seq.get()));
        assert_eq!(opened.id, envelope.id);
        assert!(!opened.new_session);
    }
    assert_eq!(alice.sessions.current_session_id(), bob.sessions.current_session_id());
    // After bob's answer, alice's messages are normal ones.
    assert_eq!(alice.send(&bob).kind, OlmKind::Normal);
}

#[test]
fn contents_are_padded_and_absent_from_the_envelope() {
    let (mut alice, bob) = pair();
    let envelope = alice.send(&bob);
    let bytes = envelope.encode();
    let text = text_of("alice", 1);
    assert!(!bytes.windows(text.len()).any(|w| w == text.as_bytes()));
    assert!(!bytes.windows(5).any(|w| w == b"alice"), "the sender's name is sealed");
    // The same size for a short text and a longer one in the same bucket.
    alice.seq = 99_999;
    let longer = alice.send(&bob);
    assert_eq!(longer.body.len(), envelope.body.len());
}

#[test]
fn earlier_messages_stay_sealed_to_a_later_copy_of_either_side() {
    let (mut alice, mut bob) = pair();
    let mut captured = Vec::new();
    for round in 0..12 {
        let (from, to) =
            if round % 2 == 0 { (&mut alice, &mut bob) } else { (&mut bob, &mut alice) };
        let envelope = from.send(to);
        to.accept(&envelope);
        captured.push((round % 2 == 0, envelope));
    }
    // Bob rotates his fallback key and, once alice had time to see the new record, forgets
    // the old one (`specs/sealed.md` §6). Then both sides are copied, keys and all.
    bob.account.rotate_fallback_key(&bob.identity);
    assert!(bob.account.forget_previous_fallback_key());
    let (bob_later, alice_later) = (bob.snapshot(), alice.snapshot());
    for (to_bob, envelope) in &captured {
        let thief = if *to_bob { &mut bob } else { &mut alice };
        thief.restore(if *to_bob { &bob_later } else { &alice_later });
        let refused = thief.receive(envelope).expect_err("an earlier message opened");
        assert!(
            matches!(refused, OpenError::Replayed | OpenError::UnknownKey | OpenError::NoSession),
            "{refused:?}"
        );
        // Not even with a fresh state around the stolen account.
        let fresh = Sessions::new(thief.sessions.peer());
        assert!(fresh.open(&thief.account, envelope).is_err());
    }
}

#[test]
fn while_the_fallback_key_is_kept_its_pre_key_messages_open_again() {
    // The cost of the fallback key (SECURITY.md): until it is rotated and forgotten, a thief
    // of the account opens the pre-key messages captured before. Normal ones stay sealed.
    let (mut alice, mut bob) = pair();
    let first = alice.send(&bob);
    bob.accept(&first);
    let answer = bob.send(&alice);
    alice.accept(&answer);
    let normal = alice.send(&bob);
    bob.accept(&normal);
    let stolen = Sessions::new(alice.identity.public_key());
    assert!(stolen.open(&bob.account, &first).is_ok());
    assert!(bob.receive(&normal).is_err());
}

#[test]
fn replayed_reordered_cut_and_flipped_messages_are_refused_and_change_nothing() {
    let (mut alice, mut bob) = pair();
    let first = alice.send(&bob);
    bob.accept(&first);
    let answer = bob.send(&alice);
    alice.accept(&answer);
    let one = alice.send(&bob);
    let two = alice.send(&bob);
    let three = alice.send(&bob);
    bob.accept(&one);

    // Replayed: a message opened before.
    assert_eq!(bob.receive(&one).unwrap_err(), OpenError::Replayed);
    assert_eq!(bob.receive(&first).unwrap_err(), OpenError::Replayed);
    // Reordered by changing the header: three's body under two's id and sequence number.
    let relabelled = Envelope { id: two.id, seq: two.seq, ..three.clone() };
    assert_eq!(bob.receive(&relabelled).unwrap_err(), OpenError::HeaderMismatch);
    // Cut short, at every length: malformed.
    for cut in 0..two.body.len() {
        let short = Envelope { body: two.body[..cut].to_vec(), ..two.clone() };
        assert_eq!(bob.receive(&short).unwrap_err(), OpenError::Malformed, "cut at {cut}");
    }
    // Every bit flipped, one at a time: never opens. In the ciphertext and the MAC (after the
    // version, the ratchet key and the index), it is told as changed on the way.
    let header = 1 + 34 + 2;
    for byte in 0..two.body.len() {
        for bit in 0..8 {
            let mut flipped = two.clone();
            flipped.body[byte] ^= 1 << bit;
            let refused = bob.receive(&flipped).expect_err("a flipped message opened");
            if byte > header + 3 {
                assert_eq!(refused, OpenError::Tampered, "byte {byte} bit {bit}");
            }
        }
    }
    // None of it changed bob's sessions: two and three open, in either order.
    let opened = bob.accept(&three);
    assert_eq!(opened.seq, three.seq);
    let opened = bob.accept(&two);
    assert_eq!(opened.contents.text.as_str(), text_of("alice", two.seq.get()));
    let four = alice.send(&bob);
    bob.accept(&four);
}

#[test]
fn a_message_for_someone_else_is_refused() {
    let (mut alice, bob) = pair();
    let (_, mut carol) = pair();
    let envelope = alice.send(&bob);
    assert_eq!(carol.receive(&envelope).unwrap_err(), OpenError::WrongRecipient);
    let readdressed = Envelope { to: bob_peer_id_of(&carol), ..envelope };
    let refused = carol.receive(&readdressed).unwrap_err();
    assert!(matches!(refused, OpenError::UnknownKey | OpenError::Tampered), "{refused:?}");
}

fn bob_peer_id_of(side: &Side) -> tincan_wire::PeerIdBytes {
    tincan_wire::PeerIdBytes::new(&side.identity.peer_id().to_bytes()).unwrap()
}

#[test]
fn keys_not_signed_by_the_pinned_identity_are_refused() {
    let (mut alice, mut bob) = pair();
    let mallory = Identity::generate().unwrap();
    let mallory_account = Account::generate(&mallory);
    // Mallory's keys, offered as bob's: they do not verify against bob's pinned identity.
    let refused = mallory_account.keys().verify(&bob.identity.public_key()).unwrap_err();
    assert_eq!(refused, KeysError::NotThePinnedIdentity);
    // Bob has pinned mallory for this conversation, and alice writes: alice's keys inside the
    // pre-key message are not mallory's.
    let envelope = alice.send(&bob);
    bob.sessions = Sessions::new(mallory.public_key());
    assert!(matches!(
        bob.receive(&envelope).unwrap_err(),
        OpenError::KeysNotSigned(KeysError::NotThePinnedIdentity)
    ));
    // Sealing with keys that are not the peer's is refused too.
    let mallorys = mallory_account.keys().verify(&mallory.public_key()).unwrap();
    let message = alice.outgoing();
    let fresh = Sessions::new(bob.identity.public_key());
    assert_eq!(
        fresh.seal(&alice.account, Some(&mallorys), message).unwrap_err(),
        SealError::WrongPeer
    );
}

#[test]
fn a_side_restored_from_an_old_backup_starts_a_new_session_that_is_seen() {
    let (mut alice, mut bob) = pair();
    let first = alice.send(&bob);
    bob.accept(&first);
    let backup = bob.snapshot();
    for _ in 0..3 {
        let envelope = bob.send(&alice);
        alice.accept(&envelope);
        let envelope = alice.send(&bob);
        bob.accept(&envelope);
    }
    // Bob restores the backup: his sessions went back, and his next message reuses a
    // message key alice has used already. Alice refuses it and it changes nothing for her.
    bob.restore(&backup);
    bob.seq = 3;
    let stale = bob.send(&alice);
    assert!(alice.receive(&stale).is_err());
    // The restored side drops its sessions (specs/sealed.md §7) and starts a new one: alice
    // opens it and is told that a new session started.
    bob.sessions = Sessions::new(alice.identity.public_key());
    let fresh = bob.send(&alice);
    assert_eq!(fresh.kind, OlmKind::PreKey);
    let opened = alice.accept(&fresh);
    assert!(opened.new_session);
    assert_eq!(alice.sessions.len(), 2);
    // Both go on in the new session.
    let envelope = alice.send(&bob);
    assert_eq!(bob.accept(&envelope).contents.from.as_str(), "alice");
    assert_eq!(alice.sessions.current_session_id(), bob.sessions.current_session_id());
}

#[test]
fn sessions_started_by_both_at_once_converge() {
    let (mut alice, mut bob) = pair();
    let from_alice = alice.send(&bob);
    let from_bob = bob.send(&alice);
    bob.accept(&from_alice);
    alice.accept(&from_bob);
    for _ in 0..4 {
        let envelope = alice.send(&bob);
        bob.accept(&envelope);
        let envelope = bob.send(&alice);
        alice.accept(&envelope);
    }
    assert_eq!(alice.sessions.current_session_id(), bob.sessions.current_session_id());
    assert!(alice.sessions.len() <= MAX_SESSIONS);
}

#[test]
fn pickles_need_their_key_and_refuse_hostile_bytes() {
    let (mut alice, bob) = pair();
    alice.send(&bob);
    let key = PickleKey::from_bytes([4; 32]);
    let other = PickleKey::from_bytes([5; 32]);
    let (account, sessions) = alice.snapshot();
    assert_eq!(Account::from_pickle(&account, &other).unwrap_err(), PickleError::Olm);
    assert_eq!(Sessions::from_pickle(&sessions, &other).unwrap_err(), PickleError::Olm);
    for cut in [0, 1, 10, sessions.len() / 2, sessions.len() - 1] {
        assert!(Sessions::from_pickle(&sessions[..cut], &key).is_err());
    }
    for cut in [0, 1, 10, account.len() / 2, account.len() - 1] {
        assert!(Account::from_pickle(&account[..cut], &key).is_err());
    }
    let text = format!("{:?} {:?} {:?}", alice.account, alice.sessions, key);
    assert!(!text.contains("pickle") || text.contains("PickleKey(..)"), "{text}");
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    /// What the network does to one envelope in flight.
    #[derive(Clone, Debug)]
    enum Step {
        /// Alice (true) or bob seals a message; it goes in flight.
        Send(bool),
        /// The envelope at this index (modulo) of those in flight arrives and is committed.
        Deliver(usize),
        /// It arrives again after it was opened: refused.
        Replay(usize),
        /// It arrives with a byte changed: refused.
        Flip(usize, usize),
        /// It is opened, and the receiver crashes before committing: the state stays.
        Crash(usize),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => any::<bool>().prop_map(Step::Send),
            3 => any::<usize>().prop_map(Step::Deliver),
            1 => any::<usize>().prop_map(Step::Replay),
            1 => (any::<usize>(), any::<usize>()).prop_map(|(i, b)| Step::Flip(i, b)),
            1 => any::<usize>().prop_map(Step::Crash),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Whatever order envelopes arrive in, with replays, changed bytes and crashes before
        /// commits in between: every envelope opens exactly once, to what was sealed, and
        /// nothing refused changes a session.
        #[test]
        fn any_order_with_replays_flips_and_crashes_opens_each_message_once(
            steps in proptest::collection::vec(step(), 1..60)
        ) {
            let (mut alice, mut bob) = pair();
            // (to_bob, envelope, opened already)
            let mut flight: Vec<(bool, Envelope, bool)> = Vec::new();
            for step in steps {
                match step {
                    Step::Send(from_alice) => {
                        let envelope =
                            if from_alice { alice.send(&bob) } else { bob.send(&alice) };
                        flight.push((from_alice, envelope, false));
                    }
                    Step::Deliver(i) | Step::Replay(i) | Step::Flip(i, _) | Step::Crash(i)
                        if flight.is_empty() => { let _ = i; }
                    Step::Deliver(i) => {
                        let i = i % flight.len();
                        let (to_bob, envelope, opened) = &mut flight[i];
                        let receiver = if *to_bob { &mut bob } else { &mut alice };
                        let result = receiver.receive(envelope);
                        if *opened {
                            prop_assert!(result.is_err(), "opened twice");
                        } else {
                            let got = result.map_err(|e| TestCaseError::fail(format!("{e}")))?;
                            let sender = if *to_bob { "alice" } else { "bob" };
                            prop_assert_eq!(got.id, envelope.id);
                            prop_assert_eq!(
                                got.contents.text.as_str(),
                                text_of(sender, envelope.seq.get())
                            );
                            receiver.commit(&got);
                            *opened = true;
                        }
                    }
                    Step::Replay(i) => {
                        let (to_bob, envelope, opened) = &flight[i % flight.len()];
                        if *opened {
                            let receiver = if *to_bob { &bob } else { &alice };
                            prop_assert!(receiver.sessions.open(&receiver.account, envelope).is_err());
                        }
                    }
                    Step::Flip(i, b) => {
                        let (to_bob, envelope, _) = &flight[i % flight.len()];
                        let mut flipped = envelope.clone();
                        let at = b % flipped.body.len();
                        flipped.body[at] ^= 1 << (b % 8);
                        let receiver = if *to_bob { &bob } else { &alice };
                        prop_assert!(receiver.sessions.open(&receiver.account, &flipped).is_err());
                    }
                    Step::Crash(i) => {
                        let (to_bob, envelope, _) = &flight[i % flight.len()];
                        let receiver = if *to_bob { &bob } else { &alice };
                        // Opened (or refused), then the process dies: nothing is committed.
                        let _ = receiver.sessions.open(&receiver.account, envelope);
                    }
                }
            }
            // Everything still in flight opens, in any order: nothing was lost.
            for (to_bob, envelope, opened) in &flight {
                if !opened {
                    let receiver = if *to_bob { &mut bob } else { &mut alice };
                    let got = receiver.receive(envelope)
                        .map_err(|e| TestCaseError::fail(format!("left over: {e}")))?;
                    receiver.commit(&got);
                }
            }
        }
    }
}
