//! Olm keys signed by the tincan identity (`specs/sealed.md` §2).
//!
//! A peer's Olm identity key and fallback key are worth nothing on their own: anyone can make
//! Curve25519 keys. They are used only once [`SignedOlmKeys::verify`] has checked that the
//! identity the user pinned signed them, which gives a [`VerifiedKeys`]; sessions are made only
//! from those.

use tincan_identity::{Identity, PublicKey, Signature};
use tincan_wire::DecodeError;
use tincan_wire::cbor::{Reader, Writer};

/// The version of the keys record this implementation writes and reads.
pub const KEYS_VERSION: u64 = 1;

/// The longest encoded [`SignedOlmKeys`] a reader accepts.
pub const MAX_SIGNED_KEYS_LEN: usize = 256;

/// What the signature covers comes after this prefix, so that it can mean nothing else.
const DOMAIN: &[u8] = b"tincan-olm-keys-v1\0";

/// A peer's Olm public keys as its record states them.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct OlmKeys {
    /// The tincan identity that signs the record.
    pub identity: PublicKey,
    /// The Olm (Curve25519) identity key.
    pub curve25519: [u8; 32],
    /// The fallback key: the one-time key that serves while no one-time key is at hand.
    pub fallback: [u8; 32],
    /// Grows by one each time the keys change; a reader never goes back to a lower one.
    pub serial: u64,
}

impl OlmKeys {
    fn write_fields(&self, w: &mut Writer, entries: usize) {
        w.map(entries);
        w.key(0);
        w.uint(KEYS_VERSION);
        w.key(1);
        w.bytes(&self.identity.to_bytes());
        w.key(2);
        w.bytes(&self.curve25519);
        w.key(3);
        w.bytes(&self.fallback);
        w.key(4);
        w.uint(self.serial);
    }

    /// The bytes the identity signs: the domain prefix, then the record without signature.
    fn signed_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(128);
        self.write_fields(&mut w, 5);
        let mut out = DOMAIN.to_vec();
        out.extend_from_slice(&w.into_bytes());
        out
    }

    /// Signs the keys with `identity`, which must be the one they name.
    pub(crate) fn sign(self, identity: &Identity) -> SignedOlmKeys {
        debug_assert_eq!(self.identity, identity.public_key());
        SignedOlmKeys { signature: identity.sign(&self.signed_bytes()), keys: self }
    }
}

impl std::fmt::Debug for OlmKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OlmKeys")
            .field("identity", &self.identity)
            .field("curve25519", &hex(&self.curve25519))
            .field("serial", &self.serial)
            .finish_non_exhaustive()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Olm keys and the signature of the identity they name, as published and exchanged.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SignedOlmKeys {
    keys: OlmKeys,
    signature: Signature,
}

impl SignedOlmKeys {
    /// The keys as the record states them, not yet checked.
    pub fn unverified(&self) -> &OlmKeys {
        &self.keys
    }

    /// The deterministic CBOR encoding (`specs/sealed.md` §2).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(200);
        self.keys.write_fields(&mut w, 6);
        w.key(5);
        w.bytes(&self.signature.0);
        w.into_bytes()
    }

    /// Decodes a record from hostile bytes. Checks the structure only: call
    /// [`SignedOlmKeys::verify`] before using the keys.
    pub fn decode(bytes: &[u8]) -> Result<SignedOlmKeys, KeysError> {
        if bytes.len() > MAX_SIGNED_KEYS_LEN {
            return Err(KeysError::TooLong(bytes.len()));
        }
        let mut r = Reader::new(bytes);
        if r.map("olm keys", 6)? != 6 {
            return Err(DecodeError::WrongArity { field: "olm keys", expected: 6 }.into());
        }
        r.key(0, "version")?;
        let version = r.uint("version")?;
        if version != KEYS_VERSION {
            return Err(KeysError::UnsupportedVersion(version));
        }
        r.key(1, "identity")?;
        let identity = PublicKey::from_bytes(&fixed::<32>(&mut r, "identity")?)
            .map_err(|_| KeysError::InvalidIdentity)?;
        r.key(2, "curve25519")?;
        let curve25519 = fixed::<32>(&mut r, "curve25519")?;
        r.key(3, "fallback")?;
        let fallback = fixed::<32>(&mut r, "fallback")?;
        r.key(4, "serial")?;
        let serial = r.uint("serial")?;
        r.key(5, "signature")?;
        let signature = Signature(fixed::<64>(&mut r, "signature")?);
        r.finish()?;
        Ok(SignedOlmKeys { keys: OlmKeys { identity, curve25519, fallback, serial }, signature })
    }

    /// Checks that `pinned`, the identity the user pinned for this peer, signed these keys.
    pub fn verify(&self, pinned: &PublicKey) -> Result<VerifiedKeys, KeysError> {
        if self.keys.identity != *pinned {
            return Err(KeysError::NotThePinnedIdentity);
        }
        pinned
            .verify(&self.keys.signed_bytes(), &self.signature)
            .map_err(|_| KeysError::BadSignature)?;
        Ok(VerifiedKeys(self.clone()))
    }
}

/// Olm keys whose signature by the pinned identity was checked. Only
/// [`SignedOlmKeys::verify`] makes one.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct VerifiedKeys(SignedOlmKeys);

impl VerifiedKeys {
    /// The keys.
    pub fn keys(&self) -> &OlmKeys {
        &self.0.keys
    }

    /// The signed record they came in, to keep or pass on.
    pub fn record(&self) -> &SignedOlmKeys {
        &self.0
    }
}

/// Reads a byte string that must be exactly `N` bytes long.
pub(crate) fn fixed<const N: usize>(
    r: &mut Reader<'_>,
    field: &'static str,
) -> Result<[u8; N], DecodeError> {
    let raw = r.bytes(field, N)?;
    raw.try_into().map_err(|_| DecodeError::WrongArity { field, expected: N })
}

/// Why a keys record was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeysError {
    /// The bytes are not a keys record.
    #[error("malformed olm keys: {0}")]
    Malformed(#[from] DecodeError),
    /// Longer than any record can be.
    #[error("olm keys of {0} bytes are over the limit")]
    TooLong(usize),
    /// A record version this implementation does not read.
    #[error("unsupported olm keys version {0}")]
    UnsupportedVersion(u64),
    /// The identity field is not an ed25519 public key.
    #[error("the olm keys name an invalid identity key")]
    InvalidIdentity,
    /// The record names another identity than the one pinned for the peer.
    #[error("the olm keys are not the pinned identity's")]
    NotThePinnedIdentity,
    /// The record names the pinned identity, but that identity did not sign it.
    #[error("the olm keys are not signed by the pinned identity")]
    BadSignature,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(identity: &Identity) -> OlmKeys {
        OlmKeys {
            identity: identity.public_key(),
            curve25519: [1; 32],
            fallback: [2; 32],
            serial: 7,
        }
    }

    #[test]
    fn a_record_roundtrips_and_verifies_only_against_its_signer() {
        let alice = Identity::generate().unwrap();
        let mallory = Identity::generate().unwrap();
        let signed = keys(&alice).sign(&alice);
        let decoded = SignedOlmKeys::decode(&signed.encode()).unwrap();
        assert_eq!(decoded, signed);
        assert_eq!(decoded.verify(&alice.public_key()).unwrap().keys(), &keys(&alice));
        assert_eq!(decoded.verify(&mallory.public_key()), Err(KeysError::NotThePinnedIdentity));
    }

    #[test]
    fn a_record_signed_by_another_key_or_changed_is_refused() {
        let alice = Identity::generate().unwrap();
        let mallory = Identity::generate().unwrap();
        // Mallory signs a record that names alice.
        let forged = SignedOlmKeys {
            keys: keys(&alice),
            signature: mallory.sign(&keys(&alice).signed_bytes()),
        };
        assert_eq!(forged.verify(&alice.public_key()), Err(KeysError::BadSignature));
        // Any changed field breaks alice's own signature.
        let signed = keys(&alice).sign(&alice);
        for change in [
            |k: &mut OlmKeys| k.curve25519[0] ^= 1,
            |k: &mut OlmKeys| k.fallback[31] ^= 0x80,
            |k: &mut OlmKeys| k.serial += 1,
        ] {
            let mut changed = signed.clone();
            change(&mut changed.keys);
            assert_eq!(changed.verify(&alice.public_key()), Err(KeysError::BadSignature));
        }
    }

    #[test]
    fn hostile_records_get_typed_errors() {
        let alice = Identity::generate().unwrap();
        let bytes = keys(&alice).sign(&alice).encode();
        for cut in 0..bytes.len() {
            assert!(SignedOlmKeys::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            SignedOlmKeys::decode(&longer),
            Err(KeysError::Malformed(DecodeError::TrailingBytes(1)))
        ));
        let mut v2 = bytes.clone();
        v2[2] = 2; // the version's value
        assert_eq!(SignedOlmKeys::decode(&v2), Err(KeysError::UnsupportedVersion(2)));
        assert_eq!(SignedOlmKeys::decode(&[0; 300]), Err(KeysError::TooLong(300)));
    }
}
