//! Sealing and opening one message in an established session, as the engine does it: each
//! step returns the state after the ratchet step, which then replaces the old one. Also the
//! first message of a session (a pre-key message, with the key record checked) and the pickle
//! of the sessions that the store writes with every message.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tincan_identity::Identity;
use tincan_seal::*;
use tincan_wire::{MAX_TEXT_LEN, MessageId, Seq, Text, UnixMillis, Username};

struct Pair {
    alice: Account,
    bob: Account,
    alice_sessions: Sessions,
    bob_sessions: Sessions,
    seq: u64,
}

fn outgoing(seq: u64, text: &Text) -> Outgoing {
    let mut id = [0; 16];
    id[..8].copy_from_slice(&seq.to_be_bytes());
    Outgoing {
        id: MessageId(id),
        seq: Seq::new(seq).expect("seq starts at 1"),
        contents: Contents {
            from: Username::new("alice").expect("valid name"),
            sent_at: UnixMillis(1_764_000_000_000 + seq),
            text: text.clone(),
        },
    }
}

fn established() -> Pair {
    let (a, b) = (Identity::generate().expect("random"), Identity::generate().expect("random"));
    let (alice, bob) = (Account::generate(&a), Account::generate(&b));
    let bobs = bob.keys().verify(&b.public_key()).expect("signed");
    let text = Text::new("hello").expect("valid");
    let first =
        Sessions::new(b.public_key()).seal(&alice, Some(&bobs), outgoing(1, &text)).expect("seals");
    let opened = Sessions::new(a.public_key()).open(&bob, &first.envelope).expect("opens");
    // Bob answers, so alice's session is established and sends normal messages.
    let reply = opened.sessions.seal(&bob, None, outgoing(1, &text)).expect("seals");
    let back = first.sessions.open(&alice, &reply.envelope).expect("opens");
    Pair {
        alice,
        bob: opened.account.expect("the account after the pre-key message"),
        alice_sessions: back.sessions,
        bob_sessions: reply.sessions,
        seq: 1,
    }
}

fn seal_open(c: &mut Criterion) {
    let mut group = c.benchmark_group("seal");
    group.throughput(Throughput::Elements(1));
    for (name, len) in [("200B", 200), ("4096B", MAX_TEXT_LEN)] {
        let text = Text::new(&"x".repeat(len)).expect("valid");
        let mut pair = established();
        group.bench_function(format!("seal+open/{name}"), |b| {
            b.iter(|| {
                pair.seq += 1;
                let sealed = pair
                    .alice_sessions
                    .seal(&pair.alice, None, outgoing(pair.seq, &text))
                    .expect("seals");
                let opened = pair.bob_sessions.open(&pair.bob, &sealed.envelope).expect("opens");
                pair.alice_sessions = sealed.sessions;
                pair.bob_sessions = opened.sessions;
                opened.contents
            })
        });
    }
    let text = Text::new(&"x".repeat(200)).expect("valid");
    let (a, b) = (Identity::generate().expect("random"), Identity::generate().expect("random"));
    let (alice, bob) = (Account::generate(&a), Account::generate(&b));
    group.bench_function("first message (pre-key)/200B", |bench| {
        bench.iter(|| {
            let bobs = bob.keys().verify(&b.public_key()).expect("signed");
            let sealed = Sessions::new(b.public_key())
                .seal(&alice, Some(&bobs), outgoing(1, &text))
                .expect("seals");
            Sessions::new(a.public_key()).open(&bob, &sealed.envelope).expect("opens").contents
        })
    });
    let pair = established();
    let key = PickleKey::from_bytes([1; 32]);
    group.bench_function("sessions pickle+unpickle", |bench| {
        bench.iter(|| {
            Sessions::from_pickle(&pair.alice_sessions.pickle(&key), &key).expect("unpickles")
        })
    });
    group.bench_function("account unpickle", |bench| {
        let pickle = pair.alice.pickle(&key);
        bench.iter(|| Account::from_pickle(&pickle, &key).expect("unpickles"))
    });
    group.finish();
}

criterion_group!(benches, seal_open);
criterion_main!(benches);
