//! The phonebook's HTTP answers, as JSON (`specs/phonebook.md` §4–§5): what the server writes
//! and the client reads.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{Endpoint, SignedDelete, SignedRecord};

/// What a lookup shows: the signed proof of the binding, presence, and a readable view of the
/// addresses.
#[derive(Clone, Debug, Serialize, serde::Deserialize, ToSchema, PartialEq, Eq)]
pub struct PeerView {
    /// Whether the user's presence has not expired. (First, so that the server can keep one
    /// serialized answer per user and only swap this field.)
    pub online: bool,
    /// The username.
    pub username: String,
    /// The PeerId bound to it. Clients trust it only through `record` or `deletion`.
    pub peer_id: String,
    /// The latest signed record, kept after presence expires; `null` after a deletion.
    pub record: Option<SignedRecord>,
    /// The signed deletion, when the user took the record down.
    pub deletion: Option<SignedDelete>,
    /// The record's addresses, as IP and port.
    pub endpoints: Vec<Endpoint>,
    /// The first address's IP (as the original phonebook showed).
    pub ip: Option<String>,
    /// The first address's port.
    pub port: Option<u16>,
    /// When the user last registered, ms since the epoch.
    pub last_seen: u64,
    /// The signed Olm keys the record carried (record version 2, `specs/phonebook.md` §2.5),
    /// hex; absent for a version-1 record and after a deletion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub olm_keys: Option<String>,
}

/// The body of every error.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// One error.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable code (`specs/phonebook.md` §5).
    pub code: String,
    /// What went wrong, in words.
    pub message: String,
    /// For `stale-seq`: the current sequence number; send a higher one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_seq: Option<u64>,
}

/// One page of the users online.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct PeerList {
    /// Users online, in username order.
    pub peers: Vec<PeerView>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next: Option<String>,
}

/// A short status.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok`, or what was done.
    pub status: String,
}

/// What this phonebook accepts, for clients to adapt to.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Info {
    /// Server version.
    pub version: String,
    /// The longest a record may live, in seconds; refresh before.
    pub presence_ttl_secs: u64,
    /// Most addresses per record.
    pub max_addrs: usize,
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
    /// Writes allowed per address per minute (0: no limit).
    pub writes_per_minute: u32,
    /// Whether `GET /peers/` lists who is online.
    pub directory: bool,
    /// Whether records may carry Olm keys (record version 2, `specs/phonebook.md` §2.5).
    /// Absent, so false, from a phonebook older than that.
    #[serde(default)]
    pub olm_keys: bool,
}

/// The relays of a phonebook, as `GET /relays` answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RelayList {
    /// At most 16, the answering instance's own first.
    pub relays: Vec<RelayInfo>,
}

/// Where the relay is and what it allows, as `GET /relay` answers it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RelayInfo {
    /// The relay's PeerId (base58).
    pub peer_id: String,
    /// Its addresses, each ending in `/p2p/<peer_id>`.
    pub addrs: Vec<String>,
    /// The longest one relayed connection lasts, in seconds.
    pub max_circuit_secs: u64,
    /// The most bytes one relayed connection carries, each way.
    pub max_circuit_bytes: u64,
    /// Relayed connections one peer may have at once.
    pub max_circuits_per_peer: usize,
    /// Reservations one peer may hold at once.
    pub max_reservations_per_peer: usize,
}
