//! The unlocked identity and its public half.

use std::fmt;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use libp2p_identity::PeerId;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::RandomError;

/// An unlocked identity: the ed25519 signing key and the store root key.
///
/// Both are zeroized on drop, and `Debug` shows only the PeerId.
pub struct Identity {
    signing: SigningKey,
    store_root: StoreRootKey,
}

impl Identity {
    /// A new identity from the operating system's random number generator.
    pub fn generate() -> Result<Identity, RandomError> {
        let seed = Zeroizing::new(crate::random::<32>()?);
        Ok(Identity::from_secrets(&seed, StoreRootKey(crate::random()?)))
    }

    pub(crate) fn from_secrets(seed: &[u8; 32], store_root: StoreRootKey) -> Identity {
        Identity { signing: SigningKey::from_bytes(seed), store_root }
    }

    /// The 32-byte ed25519 seed, for sealing into a key file.
    pub(crate) fn seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.signing.to_bytes())
    }

    /// The public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key())
    }

    /// The libp2p PeerId, derived from the public key.
    pub fn peer_id(&self) -> PeerId {
        self.public_key().peer_id()
    }

    /// A libp2p keypair made from the same secret, for the swarm (Noise signs with it).
    pub fn libp2p_keypair(&self) -> libp2p_identity::Keypair {
        // `ed25519_from_bytes` zeroizes the buffer it is given, which is this copy.
        let mut seed = self.seed();
        libp2p_identity::Keypair::ed25519_from_bytes(seed.as_mut())
            .expect("a 32-byte seed is always a valid ed25519 secret key")
    }

    /// Signs `message` with the identity key. Callers domain-separate their messages.
    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.signing.sign(message).to_bytes())
    }

    /// The store root key, from which the store derives its own keys.
    pub fn store_root_key(&self) -> &StoreRootKey {
        &self.store_root
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity").field("peer_id", &self.peer_id()).finish_non_exhaustive()
    }
}

/// The random 32-byte key that the encrypted store derives its keys from.
///
/// The raw bytes never leave this crate except into a sealed key file: the store asks for
/// keys derived for a purpose with [`StoreRootKey::derive_key`].
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct StoreRootKey([u8; 32]);

impl StoreRootKey {
    /// A fresh random key, for stores that have no identity file (tests, tools).
    pub fn generate() -> Result<StoreRootKey, RandomError> {
        Ok(StoreRootKey(crate::random()?))
    }

    /// A key from its bytes, for test vectors and tools that hold a key already.
    pub fn from_bytes(bytes: [u8; 32]) -> StoreRootKey {
        StoreRootKey(bytes)
    }

    /// Derives a 32-byte key for `context` with BLAKE3's key derivation mode. Contexts are
    /// globally unique, hard-coded strings such as `"tincan store v1 values"`.
    pub fn derive_key(&self, context: &str) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(blake3::derive_key(context, &self.0))
    }

    pub(crate) fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for StoreRootKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StoreRootKey(..)")
    }
}

/// An ed25519 public key: the public half of an identity.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(VerifyingKey);

/// How the binary PeerId of an ed25519 key starts: multihash code 0 (identity), length 36,
/// then the protobuf fields `1: KeyType = 1 (Ed25519)` and `2: bytes(32)`.
const PEER_ID_PREFIX: [u8; 6] = [0x00, 0x24, 0x08, 0x01, 0x12, 0x20];

impl PublicKey {
    /// Parses 32 bytes. Fails if they are not a valid curve point.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<PublicKey, SignatureError> {
        VerifyingKey::from_bytes(bytes).map(PublicKey).map_err(|_| SignatureError::InvalidKey)
    }

    /// The key inside `peer_id`, if the PeerId embeds an ed25519 key (all tincan PeerIds do).
    pub fn from_peer_id(peer_id: &PeerId) -> Option<PublicKey> {
        PublicKey::from_peer_id_bytes(&peer_id.to_bytes())
    }

    /// The key inside a PeerId in its binary form, if it is the one libp2p makes for an
    /// ed25519 key ([`PublicKey::peer_id_bytes`]).
    pub fn from_peer_id_bytes(bytes: &[u8]) -> Option<PublicKey> {
        let key = bytes.strip_prefix(&PEER_ID_PREFIX)?;
        PublicKey::from_bytes(key.try_into().ok()?).ok()
    }

    /// The PeerId of this key in its binary form, made without parsing the key again (which
    /// costs a point decompression): the identity multihash (code 0, 36 bytes) of the
    /// protobuf-encoded public key (field 1, key type 1 = ed25519; field 2, 32 bytes).
    pub fn peer_id_bytes(&self) -> [u8; 38] {
        let mut out = [0; 38];
        out[..6].copy_from_slice(&PEER_ID_PREFIX);
        out[6..].copy_from_slice(self.0.as_bytes());
        out
    }

    /// The 32 bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The libp2p PeerId for this key.
    pub fn peer_id(&self) -> PeerId {
        PeerId::from_bytes(&self.peer_id_bytes()).expect("an identity multihash parses")
    }

    /// Checks `signature` over `message`, rejecting non-canonical and weak-key signatures.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), SignatureError> {
        let signature = ed25519_dalek::Signature::from_bytes(&signature.0);
        self.0.verify_strict(message, &signature).map_err(|_| SignatureError::Invalid)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.peer_id())
    }
}

/// An ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 64]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Signature(..)")
    }
}

/// Why a key or signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The bytes are not a valid ed25519 public key.
    #[error("invalid public key")]
    InvalidKey,
    /// The signature does not verify.
    #[error("invalid signature")]
    Invalid,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peer_id_comes_from_the_same_key() {
        let id = Identity::generate().unwrap();
        assert_eq!(id.libp2p_keypair().public().to_peer_id(), id.peer_id());
        assert_eq!(PublicKey::from_peer_id(&id.peer_id()), Some(id.public_key()));
        for _ in 0..64 {
            let id = Identity::generate().unwrap();
            let theirs = id.libp2p_keypair().public().to_peer_id().to_bytes();
            assert_eq!(id.public_key().peer_id_bytes()[..], theirs[..]);
            assert_eq!(PublicKey::from_peer_id_bytes(&theirs), Some(id.public_key()));
        }
        // Not an ed25519 PeerId: random identity-multihash bytes, a cut one, a byte more.
        let mut other = [0x00, 0x20].to_vec();
        other.extend_from_slice(&[7; 32]);
        assert_eq!(PublicKey::from_peer_id(&PeerId::from_bytes(&other).unwrap()), None);
        let bytes = id.public_key().peer_id_bytes();
        assert_eq!(PublicKey::from_peer_id_bytes(&bytes[..37]), None);
        assert_eq!(PublicKey::from_peer_id_bytes(&[&bytes[..], &[0]].concat()), None);
    }

    #[test]
    fn signatures_verify_only_for_their_message_and_key() {
        let id = Identity::generate().unwrap();
        let other = Identity::generate().unwrap();
        let sig = id.sign(b"tincan test\0hello");
        assert_eq!(id.public_key().verify(b"tincan test\0hello", &sig), Ok(()));
        assert_eq!(
            id.public_key().verify(b"tincan test\0hellO", &sig),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            other.public_key().verify(b"tincan test\0hello", &sig),
            Err(SignatureError::Invalid)
        );
        // libp2p's keypair signs with the same key, so either verifier accepts either signature.
        let lib_sig = id.libp2p_keypair().sign(b"m").unwrap();
        assert_eq!(id.public_key().verify(b"m", &Signature(lib_sig.try_into().unwrap())), Ok(()));
    }

    #[test]
    fn debug_output_holds_no_secret() {
        let id = Identity::generate().unwrap();
        let shown = format!("{id:?} {:?} {:?}", id.store_root_key(), id.sign(b"x"));
        assert!(shown.contains(&id.peer_id().to_string()));
        let seed_hex: String = id.seed().iter().map(|b| format!("{b:02x}")).collect();
        assert!(!shown.contains(&seed_hex[..8]));
        assert!(shown.contains("StoreRootKey(..)"));
    }

    #[test]
    fn derived_store_keys_depend_on_the_context() {
        let root = StoreRootKey::from_bytes([9; 32]);
        assert_ne!(*root.derive_key("a"), *root.derive_key("b"));
        assert_eq!(*root.derive_key("a"), *StoreRootKey::from_bytes([9; 32]).derive_key("a"));
    }
}
