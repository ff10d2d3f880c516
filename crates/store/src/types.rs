//! What the store holds, as typed values. Each record is stored as a sealed CBOR map
//! (`specs/store.md` §4).

use std::fmt;

use serde::{Deserialize, Serialize};
use tincan_wire::{MessageId, PeerIdBytes, Seq, Text, UnixMillis, Username};

/// Most addresses kept per contact.
pub const MAX_ADDRS: usize = 8;
/// Longest address kept, in bytes of its text form.
pub const MAX_ADDR_LEN: usize = 256;
/// Most key changes kept per contact; older ones are dropped.
pub const MAX_KEY_CHANGES: usize = 32;
/// Most rejected keys remembered per contact; older ones are forgotten.
pub const MAX_REJECTED_KEYS: usize = 8;

/// Identifies a conversation (one per contact or message request). Random, so it says nothing
/// about whom the conversation is with.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ConversationId(#[serde(with = "bytes16")] pub [u8; 16]);

impl fmt::Display for ConversationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ConversationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConversationId({self})")
    }
}

/// Who wrote a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// We received it.
    Incoming,
    /// We wrote it.
    Outgoing,
}

/// Where a message is in its life. Outgoing messages go queued → sent → delivered, or end
/// failed; incoming messages are received.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum Status {
    /// Durably in the outbox, not yet written to the network.
    Queued,
    /// Written to the network at least once, not yet acknowledged.
    Sent,
    /// The recipient acknowledged it as stored.
    Delivered {
        /// When the acknowledgement arrived, by our clock.
        at: UnixMillis,
    },
    /// It will not be delivered.
    Failed {
        /// The refusal code from `specs/wire.md` §5.1, or 0 for a local reason.
        code: u64,
        /// Why, in words.
        reason: String,
    },
    /// An incoming message, stored.
    Received,
}

impl Status {
    /// A short lowercase name: `queued`, `sent`, `delivered`, `failed` or `received`.
    pub fn name(&self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Sent => "sent",
            Status::Delivered { .. } => "delivered",
            Status::Failed { .. } => "failed",
            Status::Received => "received",
        }
    }
}

/// One message of a conversation's log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Position in the conversation's display order, from 0.
    pub position: u64,
    /// Who wrote it.
    pub direction: Direction,
    /// The message id.
    pub id: MessageId,
    /// The sender's sequence number.
    pub seq: Seq,
    /// When the sender wrote it, by the sender's clock.
    pub sent_at: UnixMillis,
    /// When we stored it (incoming), by our clock; for outgoing messages, when we queued it.
    pub stored_at: UnixMillis,
    /// Where it is in its life.
    pub status: Status,
    /// The text.
    pub text: Text,
    /// For incoming messages: the username the sender claimed.
    pub claimed_from: Option<Username>,
    /// For incoming messages: how many of the sender's messages were missing just before this
    /// one when it arrived (0 when none were).
    pub missing_before: u64,
    /// For incoming messages: it arrived after later messages from the same sender.
    pub late: bool,
}

/// A message waiting for the recipient's acknowledgement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxEntry {
    /// The conversation it belongs to.
    pub conversation: ConversationId,
    /// Its sequence number in the conversation.
    pub seq: Seq,
    /// The message id.
    pub id: MessageId,
    /// When it was queued, by our clock; sent as the message's timestamp.
    pub sent_at: UnixMillis,
    /// The text.
    pub text: Text,
    /// Its position in the log.
    pub position: u64,
    /// The sealed envelope to send, for a message queued sealed.
    pub envelope: Option<Vec<u8>>,
    /// How many times it was written to the network.
    pub attempts: u32,
    /// Not before this time should it be sent again.
    pub next_attempt_at: UnixMillis,
}

/// Is this a contact the user chose, or someone who wrote first?
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContactKind {
    /// A contact: the user wrote to them, or accepted their request.
    Contact,
    /// A message request: an unknown peer wrote first. Its username is only a claim.
    Request,
}

/// A change of the key (PeerId) seen for a contact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyChange {
    /// The pinned PeerId before.
    pub old: PeerIdBytes,
    /// The PeerId that was seen.
    pub new: PeerIdBytes,
    /// When it was seen.
    pub seen_at: UnixMillis,
    /// When the user trusted it, if they did.
    pub trusted_at: Option<UnixMillis>,
    /// When the user rejected it (kept the old key), if they did.
    #[serde(default)]
    pub rejected_at: Option<UnixMillis>,
}

/// What a phonebook said of the username a message request claims (`specs/delivery.md` §2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Claim {
    /// Not checked (yet), or no phonebook could answer.
    #[default]
    Unchecked,
    /// A phonebook binds the name to this sender's key.
    Confirmed,
    /// A phonebook binds the name to another key: the sender is not who the name says.
    OtherKey,
    /// No phonebook knows the name.
    Unregistered,
}

impl Claim {
    /// In words, for people: `unchecked`, `confirmed by the phonebook`, …
    pub fn describe(self) -> &'static str {
        match self {
            Claim::Unchecked => "name not confirmed",
            Claim::Confirmed => "name confirmed by the phonebook",
            Claim::OtherKey => "IMPOSTOR? the phonebook gives this name to someone else",
            Claim::Unregistered => "name not registered at the phonebook",
        }
    }
}

/// How much a message request may hold before the user accepts it: the node's policy, which
/// the store enforces in the same transaction as the write (`specs/delivery.md` §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestLimits {
    /// Most message requests waiting at once.
    pub max_requests: usize,
    /// Most messages stored per request.
    pub max_messages: u64,
    /// Most bytes of text stored per request.
    pub max_bytes: u64,
}

impl Default for RequestLimits {
    fn default() -> RequestLimits {
        RequestLimits { max_requests: 64, max_messages: 100, max_bytes: 256 * 1024 }
    }
}

/// A contact or message request, with its conversation's counters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// The conversation with this contact.
    pub conversation: ConversationId,
    /// Contact or request.
    pub kind: ContactKind,
    /// The username; for a request, the one the sender claimed.
    pub username: Username,
    /// The pinned PeerId: messages go to it, and only it may write in this conversation.
    pub peer_id: PeerIdBytes,
    /// When the contact was first seen.
    pub first_seen: UnixMillis,
    /// The user compared safety numbers and marked the key verified.
    pub verified: bool,
    /// Messages from this contact are refused and not stored.
    pub blocked: bool,
    /// A different PeerId seen for this username and not yet trusted. While set, nothing is
    /// sent to the contact.
    pub pending_peer_id: Option<PeerIdBytes>,
    /// Key changes, oldest first, at most [`MAX_KEY_CHANGES`].
    pub key_changes: Vec<KeyChange>,
    /// The last sequence number we used in this conversation (0 before the first message).
    pub last_sent_seq: u64,
    /// The sequence number we expect next from the contact.
    pub next_expected_seq: u64,
    /// How many log entries the conversation has; the next entry's position.
    pub log_len: u64,
    /// Incoming messages the user has not read yet.
    pub unread: u64,
    /// Addresses where the contact was last reached (multiaddr text), at most [`MAX_ADDRS`].
    pub addrs: Vec<String>,
    /// For a message request: what the phonebook said of the username it claims.
    #[serde(default)]
    pub claim: Claim,
    /// Keys the user rejected when a phonebook showed them for this contact, at most
    /// [`MAX_REJECTED_KEYS`]: seeing one again is not a new key change.
    #[serde(default)]
    pub rejected_keys: Vec<PeerIdBytes>,
    /// Bytes of text stored while the conversation was a message request.
    #[serde(default)]
    pub request_bytes: u64,
    /// The peer's signed Olm keys record (`specs/sealed.md` §2) with the highest serial seen,
    /// kept only once verified against `peer_id`.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "serde_bytes")]
    pub olm_keys: Option<Vec<u8>>,
    /// Set when a new session had to start because the peer could not open ours
    /// (`specs/sealed.md` §8): until the peer itself hands over its keys record, none from a
    /// directory is taken (it may be the old record that led here).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub awaiting_peer_keys: bool,
}

/// A message as it arrived, for [`Store::receive`](crate::Store::receive).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Incoming {
    /// The message id.
    pub id: MessageId,
    /// The sender's sequence number.
    pub seq: Seq,
    /// The sender's timestamp.
    pub sent_at: UnixMillis,
    /// The username the sender claimed.
    pub from: Username,
    /// The text.
    pub text: Text,
}

/// What became of one incoming message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Received {
    /// Stored now, as this log entry.
    Stored(Box<LogEntry>),
    /// Stored before: acknowledge it again, show it no more.
    Duplicate,
    /// The contact is blocked: not stored.
    Blocked,
    /// A message request past its [`RequestLimits`]: not stored.
    OverQuota,
    /// A sealed message that did not open, and why: not stored, and no state changed.
    Unopened(tincan_seal::OpenError),
}

/// What [`Store::receive_sealed`](crate::Store::receive_sealed) did with a sealed request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedReceipt {
    /// The sender's contact or message request, after the request; `None` when the sender was
    /// a stranger whose first message did not open (nothing was kept of it).
    pub contact: Option<Contact>,
    /// The sender was a stranger: a message request was made for it.
    pub new_request: bool,
    /// A message opened in a session the sender just started: the user is shown it
    /// (`specs/sealed.md` §8).
    pub new_session: bool,
    /// What became of the sender's keys record carried in a pre-key message, if any.
    pub keys: Option<KeysUpdate>,
    /// One outcome per envelope, in order.
    pub outcomes: Vec<Received>,
}

impl SealedReceipt {
    pub(crate) fn refused(outcomes: Vec<Received>) -> SealedReceipt {
        SealedReceipt {
            contact: None,
            new_request: false,
            new_session: false,
            keys: None,
            outcomes,
        }
    }
}

/// What offering a peer's Olm keys record did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeysUpdate {
    /// Kept: the record verified and its serial is the highest seen.
    Updated {
        /// Its serial.
        serial: u64,
    },
    /// Not kept: a record with this serial or a higher one is kept already, or (for keys from
    /// a directory) the contact awaits its keys from the peer itself.
    Kept,
    /// Refused: the record is malformed or not signed by the contact's pinned identity.
    Refused(tincan_seal::KeysError),
}

/// What deleting a conversation left behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deleted {
    /// Everything is gone: if the peer writes again, it is a new message request.
    All,
    /// The messages are gone; the contact stays, because it is blocked and must stay so.
    KeptBlocked,
}

/// A message just queued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Queued {
    /// The new message's id.
    pub id: MessageId,
    /// Its sequence number.
    pub seq: Seq,
    /// Its position in the log.
    pub position: u64,
    /// Its sealed envelope, when it could be sealed as it was queued.
    pub envelope: Option<Vec<u8>>,
}

mod bytes16 {
    use serde::{Deserialize, Deserializer, Serializer, de};

    pub(super) fn serialize<S: Serializer>(v: &[u8; 16], s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(&super::ConversationId(*v))
        } else {
            s.serialize_bytes(v)
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 16], D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            let id: tincan_wire::MessageId = s.parse().map_err(de::Error::custom)?;
            Ok(id.0)
        } else {
            let id = tincan_wire::MessageId::deserialize(d)?;
            Ok(id.0)
        }
    }
}
