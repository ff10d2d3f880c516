//! The vectors of `specs/sealed.md`, made by `specs/vectors/sealed.py` with cbor2 and libolm:
//! keys records, envelopes and padded contents, and a transcript sealed by libolm that this
//! crate must open. A unit test, because it builds accounts from libolm's pickles.

use serde_json::Value;
use tincan_identity::PublicKey;
use vodozemac::olm::{Account as OlmAccount, Session};

use crate::envelope::{Inner, OlmKind};
use crate::*;

fn vectors() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../specs/vectors/sealed.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn bytes(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

fn key32(v: &Value) -> [u8; 32] {
    bytes(v).try_into().unwrap()
}

fn identity(all: &Value, name: &str) -> PublicKey {
    PublicKey::from_bytes(&key32(&all["identities"][name]["public_key"])).unwrap()
}

fn kind(v: &Value) -> OlmKind {
    if v.as_u64().unwrap() == 0 { OlmKind::PreKey } else { OlmKind::Normal }
}

#[test]
fn keys_records_decode_and_verify_as_the_vectors_say() {
    let all = vectors();
    let cases = all["keys"].as_array().unwrap();
    assert!(cases.len() >= 7);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let record = bytes(&case["record"]);
        let pinned = identity(&all, case["pinned"].as_str().unwrap());
        let result = SignedOlmKeys::decode(&record).and_then(|k| Ok((k.verify(&pinned)?, k)));
        if case["ok"].as_bool().unwrap() {
            let (verified, signed) = result.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(signed.encode(), record, "{name}");
            let keys = verified.keys();
            assert_eq!(keys.curve25519, key32(&case["curve25519"]), "{name}");
            assert_eq!(keys.fallback, key32(&case["fallback"]), "{name}");
            assert_eq!(keys.serial, case["serial"].as_u64().unwrap(), "{name}");
        } else {
            let error = result.map(|_| ()).expect_err(name);
            let expected = match error {
                KeysError::Malformed(_) | KeysError::TooLong(_) => "malformed",
                KeysError::UnsupportedVersion(_) => "unsupported-version",
                KeysError::NotThePinnedIdentity => "not-the-pinned-identity",
                KeysError::BadSignature => "bad-signature",
                KeysError::InvalidIdentity => "invalid-identity",
            };
            assert_eq!(case["error"].as_str().unwrap(), expected, "{name}: {error}");
        }
    }
}

#[test]
fn envelopes_decode_as_the_vectors_say() {
    let all = vectors();
    for case in all["envelopes"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let raw = bytes(&case["bytes"]);
        let result = Envelope::decode(&raw);
        if case["ok"].as_bool().unwrap() {
            let envelope = result.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(envelope.id.0.to_vec(), bytes(&case["id"]), "{name}");
            assert_eq!(envelope.seq.get(), case["seq"].as_u64().unwrap(), "{name}");
            assert_eq!(envelope.to.as_bytes(), bytes(&case["to"]), "{name}");
            assert_eq!(envelope.kind, kind(&case["kind"]), "{name}");
            assert_eq!(envelope.body, bytes(&case["body"]), "{name}");
            assert_eq!(envelope.encode(), raw, "{name}");
        } else {
            assert!(result.is_err(), "{name} decoded");
        }
    }
}

#[test]
fn padded_contents_decode_and_pad_as_the_vectors_say() {
    let all = vectors();
    let buckets: Vec<usize> =
        all["buckets"].as_array().unwrap().iter().map(|b| b.as_u64().unwrap() as usize).collect();
    assert_eq!(buckets, BUCKETS);
    for case in all["contents"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let padded = bytes(&case["padded"]);
        let result = Inner::unpad(&padded, kind(&case["kind"]));
        if case["ok"].as_bool().unwrap() {
            let inner = result.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(inner.id.0.to_vec(), bytes(&case["id"]), "{name}");
            assert_eq!(inner.seq.get(), case["seq"].as_u64().unwrap(), "{name}");
            assert_eq!(inner.contents.from.as_str(), case["from"].as_str().unwrap(), "{name}");
            assert_eq!(inner.contents.sent_at.0, case["sent_at"].as_u64().unwrap(), "{name}");
            assert_eq!(inner.contents.text.as_str(), case["text"].as_str().unwrap(), "{name}");
            assert_eq!(
                inner.sender_keys.as_ref().map(SignedOlmKeys::encode),
                case.get("keys").map(bytes)
            );
            assert_eq!(&inner.padded()[..], &padded[..], "{name}: padded differently");
        } else {
            assert!(result.is_err(), "{name} decoded");
        }
    }
}

#[test]
fn a_transcript_sealed_by_libolm_opens_here_and_the_session_goes_on() {
    let all = vectors();
    let t = &all["transcript"];
    let pickle_key = t["pickle_key"].as_str().unwrap().as_bytes();
    let (alice_id, bob_id) = (identity(&all, "alice"), identity(&all, "bob"));
    let account = |who: &str| {
        let olm = OlmAccount::from_libolm_pickle(
            t[format!("{who}_account")].as_str().unwrap(),
            pickle_key,
        )
        .unwrap();
        let keys = SignedOlmKeys::decode(&bytes(&t[format!("{who}_keys")])).unwrap();
        Account::from_libolm(olm, keys)
    };
    let (mut alice, mut bob) = (account("alice"), account("bob"));
    let mut sessions_of_alice = Sessions::new(bob_id);
    let mut sessions_of_bob = Sessions::new(alice_id);
    let steps = t["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 3);
    let mut opened_count = 0;
    for step in steps {
        let to_bob = step["receiver"] == "bob";
        let (account, sessions, sender) = if to_bob {
            (&mut bob, &mut sessions_of_bob, alice_id)
        } else {
            (&mut alice, &mut sessions_of_alice, bob_id)
        };
        if step["state"] == "session" {
            // The receiver's session as libolm had it when the messages were sealed.
            let session =
                Session::from_libolm_pickle(step["session"].as_str().unwrap(), pickle_key).unwrap();
            *sessions = Sessions::from_libolm(sender, session);
        }
        for message in step["messages"].as_array().unwrap() {
            let envelope = Envelope::decode(&bytes(&message["envelope"])).unwrap();
            assert_eq!(envelope.kind, kind(&step["kind"]));
            let opened = sessions.open(account, &envelope).unwrap();
            assert_eq!(opened.id.0.to_vec(), bytes(&message["id"]));
            assert_eq!(opened.seq.get(), message["seq"].as_u64().unwrap());
            assert_eq!(opened.contents.from.as_str(), message["from"].as_str().unwrap());
            assert_eq!(opened.contents.sent_at.0, message["sent_at"].as_u64().unwrap());
            assert_eq!(opened.contents.text.as_str(), message["text"].as_str().unwrap());
            if envelope.kind == OlmKind::PreKey {
                let keys = opened.sender_keys.as_ref().expect("a pre-key message's keys");
                assert_eq!(keys.keys().identity, sender);
            }
            // A replay of what libolm sealed is refused, before the commit and after it.
            assert!(opened.sessions.open(account, &envelope).is_err());
            *sessions = opened.sessions;
            if let Some(next) = opened.account {
                *account = next;
            }
            opened_count += 1;
        }
    }
    assert_eq!(opened_count, 5);
    // The session libolm started goes on here: bob answers with this crate, alice opens it.
    let contents = Contents {
        from: tincan_wire::Username::new("bob").unwrap(),
        sent_at: tincan_wire::UnixMillis(1),
        text: tincan_wire::Text::new("sealed by vodozemac").unwrap(),
    };
    let message = Outgoing {
        id: tincan_wire::MessageId([2; 16]),
        seq: tincan_wire::Seq::new(2).unwrap(),
        contents: contents.clone(),
    };
    let sealed = sessions_of_bob.seal(&bob, None, message).unwrap();
    // Alice's session as libolm left it after sealing the last messages.
    let session =
        Session::from_libolm_pickle(t["alice_session_after"].as_str().unwrap(), pickle_key)
            .unwrap();
    sessions_of_alice = Sessions::from_libolm(bob_id, session);
    assert_eq!(sealed.envelope.kind, OlmKind::Normal);
    let opened = sessions_of_alice.open(&alice, &sealed.envelope).unwrap();
    assert_eq!(opened.contents, contents);
}
