//! Entry points for the fuzz target `sealed_decode` in `fuzz/`.

use tincan_identity::Identity;

use crate::envelope::{Inner, OlmKind};
use crate::{Account, Envelope, PickleKey, SignedOlmKeys};

/// Treats `data` as what a hostile peer, mailbox or disk could hand over: an envelope, the
/// contents inside one, a signed keys record and a pickle. Nothing may panic; whatever
/// decodes must re-encode to exactly `data`; no forged envelope may open.
pub fn sealed_decode(data: &[u8]) {
    if let Ok(envelope) = Envelope::decode(data) {
        assert_eq!(envelope.encode(), data, "an envelope did not re-encode to its input");
        let (alice, bob) = fixed_parties();
        let sessions = crate::Sessions::new(alice.0.public_key());
        // Without a session, only a pre-key message could open, and that needs bob's
        // fallback key: made fresh here, no fuzzer input can name it.
        assert!(sessions.open(&bob.1, &envelope).is_err(), "a forged envelope opened");
    }
    for kind in [OlmKind::PreKey, OlmKind::Normal] {
        if let Ok(inner) = Inner::unpad(data, kind) {
            assert_eq!(&inner.padded()[..], data, "contents did not re-pad to their input");
        }
    }
    if let Ok(keys) = SignedOlmKeys::decode(data) {
        assert_eq!(keys.encode(), data, "olm keys did not re-encode to their input");
    }
    let key = PickleKey::from_bytes([5; 32]);
    let _ = Account::from_pickle(data, &key);
    let _ = crate::Sessions::from_pickle(data, &key);
}

type Party = (Identity, Account);

/// Two parties made once per process: making accounts for every input would slow the fuzzer.
fn fixed_parties() -> &'static (Party, Party) {
    static PARTIES: std::sync::OnceLock<(Party, Party)> = std::sync::OnceLock::new();
    PARTIES.get_or_init(|| {
        let alice = Identity::generate().expect("random");
        let bob = Identity::generate().expect("random");
        let (a, b) = (Account::generate(&alice), Account::generate(&bob));
        ((alice, a), (bob, b))
    })
}

#[cfg(test)]
mod tests {
    /// Replays every input checked in under `fuzz/corpus/sealed_decode`.
    #[test]
    fn replays_the_checked_in_corpus() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/corpus/sealed_decode");
        let mut replayed = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            super::sealed_decode(&std::fs::read(entry.unwrap().path()).unwrap());
            replayed += 1;
        }
        assert!(replayed >= 4, "only {replayed} corpus inputs found");
    }
}
