//! Sealed tincan messages: each message end-to-end encrypted with an Olm double ratchet
//! (vodozemac), independent of the connection that carries it (`specs/sealed.md`).
//!
//! Each side has one [`Account`]: an Olm identity key and a fallback key, published as
//! [`SignedOlmKeys`] signed by the tincan identity. A peer's keys are used only once checked
//! against the identity pinned for it ([`SignedOlmKeys::verify`] gives [`VerifiedKeys`]). The
//! [`Sessions`] with one peer seal [`Contents`] into an [`Envelope`] and open envelopes back.
//!
//! This crate does no IO and keeps no clock, in the way of `tincan-wire`: sealing and opening
//! return the state after the ratchet step, and the caller commits it together with the
//! message (the outbox row, or the stored message and its seen id).
//!
//! ```
//! use tincan_identity::Identity;
//! use tincan_seal::*;
//! use tincan_wire::{MessageId, Seq, Text, UnixMillis, Username};
//!
//! let (alice, bob) = (Identity::generate()?, Identity::generate()?);
//! let (alice_account, bob_account) = (Account::generate(&alice), Account::generate(&bob));
//! // Alice has bob pinned and got his signed keys (from his phonebook record, or from him).
//! let bobs_keys = bob_account.keys().verify(&bob.public_key())?;
//!
//! let contents = Contents {
//!     from: Username::new("alice")?,
//!     sent_at: UnixMillis(1_764_000_000_000),
//!     text: Text::new("hello, bob")?,
//! };
//! let message = Outgoing { id: MessageId([7; 16]), seq: Seq::FIRST, contents: contents.clone() };
//! let sealed = Sessions::new(bob.public_key()).seal(&alice_account, Some(&bobs_keys), message)?;
//! // ... alice commits `sealed.sessions` with the outbox row holding `sealed.envelope` ...
//!
//! let wire = sealed.envelope.encode();
//! let opened = Sessions::new(alice.public_key()).open(&bob_account, &Envelope::decode(&wire)?)?;
//! assert_eq!(opened.contents, contents);
//! // ... bob commits `opened.sessions` and `opened.account` with the message ...
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod envelope;
mod keys;
mod session;

#[cfg(any(test, fuzzing))]
pub mod fuzzing;
#[cfg(test)]
mod vectors;

pub use envelope::{
    BUCKETS, Contents, Envelope, MAX_BODY_LEN, MAX_ENVELOPE_LEN, OlmKind, bucket_for,
};
pub use keys::{
    KEYS_VERSION, KeysError, MAX_SIGNED_KEYS_LEN, OlmKeys, SignedOlmKeys, VerifiedKeys,
};
pub use session::{
    Account, MAX_SESSIONS, OpenError, Opened, Outgoing, PickleError, PickleKey, SealError, Sealed,
    Sessions,
};
