//! Errors. None of them holds a key or message content.

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The store was sealed with another root key: another identity's store, or a damaged
    /// key check.
    #[error("the store belongs to another identity (the key check failed)")]
    WrongKey,
    /// The file was written by a newer tincan.
    #[error("store format version {found} is newer than this tincan supports (up to {supported})")]
    UnsupportedVersion {
        /// The version in the file.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// The file is not a tincan store, or redb found it damaged.
    #[error("the store file is corrupted: {0}")]
    Corrupted(String),
    /// There is no store at the path.
    #[error("no store found")]
    NotFound,
    /// A store already exists at the path; it was left untouched.
    #[error("a store already exists")]
    AlreadyExists,
    /// Another process has the store open.
    #[error("the store is already open in another process")]
    AlreadyOpen,
    /// The last process that wrote the store stopped without closing it: a read-only open
    /// cannot repair it. Opening it writable once does.
    #[error("the store needs a repair after a crash; open it writable once")]
    NeedsRepair,
    /// A migration from an older format failed; the file is as it was.
    #[error("migrating the store from version {from} failed: {reason}")]
    Migration {
        /// The version being migrated from.
        from: u32,
        /// Why it failed.
        reason: String,
    },
    /// An I/O or storage error.
    #[error("opening the store failed: {0}")]
    Storage(String),
}

/// Why a store operation failed. Whenever this is returned, the previously committed state is
/// intact and readable.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A value did not open: it was tampered with, moved, or damaged. The row is left as is.
    #[error("corrupted row in the {table}")]
    Corrupted {
        /// The table it is in.
        table: &'static str,
    },
    /// No conversation with this id.
    #[error("no such conversation")]
    NoSuchConversation,
    /// The username already belongs to another contact.
    #[error("the username {0} is already taken by another contact")]
    UsernameTaken(String),
    /// The PeerId already belongs to another contact.
    #[error("this peer is already another contact")]
    PeerTaken,
    /// The conversation is a message request: accept it before writing to it.
    #[error("this is a message request; accept it first")]
    NotAContact,
    /// The conversation has no pending key to trust.
    #[error("no key change to trust")]
    NoPendingKey,
    /// The pending key is not the one the caller meant to trust: it changed meanwhile.
    #[error("the key changed again since its safety number was shown; verify the new one")]
    PendingKeyChanged,
    /// As many message requests wait as the node allows.
    #[error("too many message requests wait already")]
    TooManyRequests,
    /// The conversation's sequence numbers ran out (after 2^64 messages).
    #[error("sequence numbers exhausted")]
    SequenceExhausted,
    /// The disk is full; nothing of this write was committed. The store recovers by itself
    /// once there is room again ([`Store::health`](crate::Store::health)).
    #[error("the disk is full: nothing more is stored until space is freed")]
    DiskFull,
    /// The store was opened read-only.
    #[error("the store is open read-only")]
    ReadOnly,
    /// There is no Olm account: the node makes one when it starts (`Store::init_olm_account`).
    #[error("no olm account in the store")]
    NoOlmAccount,
    /// The message needs a new Olm session and the peer's signed keys are not known yet.
    #[error("the peer's olm keys are not known yet")]
    NoPeerKeys,
    /// The contact's PeerId holds no ed25519 key, so nothing can be sealed for it.
    #[error("the contact's key cannot receive sealed messages")]
    NotSealable,
    /// Sealing a queued message failed; nothing was queued. Holds the sealing's reason.
    #[error("the message could not be sealed: {0}")]
    Sealing(String),
    /// Writing failed (an I/O error); nothing of this write was committed.
    #[error("store write failed: {0}")]
    Storage(String),
    /// The store was closed, or its writer stopped.
    #[error("the store is closed")]
    Closed,
}

impl StoreError {
    pub(crate) fn storage(e: impl std::fmt::Display) -> StoreError {
        StoreError::Storage(e.to_string())
    }
}
