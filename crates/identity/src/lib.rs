//! Password-locked tincan identities (`specs/identity.md`).
//!
//! An [`Identity`] is an ed25519 signing key, from which the libp2p `PeerId` comes, and a
//! random [`StoreRootKey`] for the encrypted store. On disk it lives in a key file sealed with
//! XChaCha20-Poly1305 under a key derived from the user's [`Password`] with argon2id:
//! [`create`] writes one, [`unlock`] opens it and [`change_password`] re-seals it atomically.
//! [`safety_number`] gives the 60 digits two people compare to verify each other's keys.
//!
//! Secrets are zeroized on drop and their `Debug` output is redacted. This crate knows nothing
//! of networking or the store's layout; it hands the store a root key and nothing else.
//!
//! ```no_run
//! use tincan_identity::{Password, create, unlock};
//!
//! let path = std::path::Path::new("identity.key");
//! let created = create(path, &Password::new("correct horse".into()))?;
//! let unlocked = unlock(path, &Password::new("correct horse".into()))?;
//! assert_eq!(created.peer_id(), unlocked.peer_id());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
mod fingerprint;
mod identity;
mod kdf;
mod keyfile;

#[cfg(any(test, fuzzing))]
pub mod fuzzing;

pub use error::{ChangePasswordError, CreateError, ParamsError, RandomError, UnlockError};
pub use fingerprint::{Fingerprint, SafetyNumber, safety_number};
pub use identity::{Identity, PublicKey, Signature, SignatureError, StoreRootKey};
pub use kdf::{KdfParams, KdfPolicy, Password};
pub use keyfile::{
    KEY_FILE_LEN, SealedKeyFile, change_password, change_password_with, create, create_with,
    read_public_key, unlock, unlock_with,
};

/// Returns 32 bytes from the operating system's random number generator.
pub(crate) fn random<const N: usize>() -> Result<[u8; N], RandomError> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|_| RandomError)?;
    Ok(out)
}
