//! The relay that a phonebook host may run for peers behind NAT, and how it is announced.
//!
//! `tincan-phonebook --relay` runs a libp2p circuit relay v2 server ([`Relay`], behind the
//! `relay` feature) on its own ports, and `GET /relay` answers its [`RelayInfo`]. The relay
//! forwards Noise-encrypted bytes between two peers that both chose to use it: it sees who
//! talks to whom, when and how much, never what.

#[cfg(feature = "relay")]
mod server;

#[cfg(feature = "relay")]
pub use server::{Relay, RelayConfig};

pub use tincan_phonebook_client::RelayInfo;
