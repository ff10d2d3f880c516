//! The relay that a phonebook host may run for peers behind NAT, and how it is announced.
//!
//! `tincan-phonebook --relay` runs a libp2p circuit relay v2 server ([`Relay`], behind the
//! `relay` feature) on its own ports, and `GET /relay` answers its [`RelayInfo`]. The relay
//! forwards Noise-encrypted bytes between two peers that both chose to use it: it sees who
//! talks to whom, when and how much, never what.

#[cfg(feature = "relay")]
mod server;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[cfg(feature = "relay")]
pub use server::{Relay, RelayConfig};

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
