//! The encrypted local store of a tincan profile (`specs/store.md`).
//!
//! One redb file holds the message log, the outbox, contacts with their pinned keys, and
//! settings. Every value is sealed with XChaCha20-Poly1305 under a key derived from the
//! identity's [`StoreRootKey`](tincan_identity::StoreRootKey), bound to its table and key;
//! keys that would reveal whom the user talks to are keyed hashes or random ids.
//!
//! [`Store`] is the handle: writes go to one writer thread that groups them into durable
//! transactions and answers each caller after its commit; reads run on tokio's blocking pool.
//! The store never talks to the network and never decides policy: `tincan-node` says what to
//! store, and the store makes it durable, atomic and private.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use tincan_store::{Store, UnixMillis};
//! use tincan_wire::{PeerIdBytes, Text, Username};
//!
//! let root = tincan_identity::StoreRootKey::generate()?;
//! let store = Store::create(std::path::Path::new("profile.redb"), &root)?;
//! let bob = store
//!     .add_contact(Username::new("bob")?, PeerIdBytes::new(&[0, 36, 8, 1])?, UnixMillis(0))
//!     .await?;
//! let queued = store.enqueue(bob.conversation, Text::new("hi bob")?, UnixMillis(1)).await?;
//! assert_eq!(store.outbox(bob.conversation, 10).await?[0].id, queued.id);
//! # Ok(()) }
//! ```

mod crypto;
mod error;
#[cfg(any(test, fuzzing))]
pub mod fuzzing;
mod ops;
mod rows;
mod sealed;
mod store;
mod tables;
mod types;

pub use error::{OpenError, StoreError};
pub use ops::Outcome;
pub use redb::Durability;
pub use store::{FORMAT_VERSION, Health, Options, Stats, Store};
pub use tincan_wire::UnixMillis;
pub use types::{
    Claim, Contact, ContactKind, ConversationId, Deleted, Direction, Incoming, KeyChange,
    KeysUpdate, LogEntry, MAX_ADDR_LEN, MAX_ADDRS, MAX_KEY_CHANGES, MAX_REJECTED_KEYS, OutboxEntry,
    Queued, Received, RequestLimits, SealedReceipt, Status,
};
