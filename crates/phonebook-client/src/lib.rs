//! Signed tincan phonebook records and the client that checks them (`specs/phonebook.md`).
//!
//! A [`SignedRecord`] says where a user's tincan is, signed by the user's identity key; the
//! [`Client`] talks to a phonebook over HTTP (or the local one's Unix socket) and verifies every
//! record it receives, so a phonebook can refuse or delay but never forge. This crate is what a
//! peer needs of the phonebook: the server (`tincan-phonebook`) builds on it, and nothing here
//! depends on the server, axum or its database.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use tincan_phonebook_client::Client;
//! use tincan_wire::{UnixMillis, Username};
//!
//! let me = tincan_identity::Identity::generate()?;
//! let phonebook = Client::new("http://127.0.0.1:7878")?;
//! let name = Username::new("alice")?;
//! let addrs = ["/ip4/127.0.0.1/tcp/4001".parse()?];
//! phonebook.register(&me, &name, &addrs, std::time::Duration::from_secs(300), UnixMillis(1_764_180_000_000)).await?;
//! let found = phonebook.lookup(&name).await?.expect("just registered");
//! assert_eq!(found.peer_id, me.peer_id());
//! # Ok(()) }
//! ```

#[cfg(feature = "client")]
mod client;
mod record;
mod types;

#[cfg(any(test, fuzzing))]
pub mod fuzzing;

#[cfg(feature = "client")]
pub use client::{Client, ClientError, Found, MAX_RELAYS, verify_view};
pub use record::{
    AddrText, Endpoint, MAX_ADDR_LEN, MAX_ADDRS, Record, RecordError, SignedDelete, SignedRecord,
    delete_payload, parse_addr, record_payload,
};
pub use types::{ErrorBody, ErrorDetail, Health, Info, PeerList, PeerView, RelayInfo, RelayList};
