//! The tincan phonebook: signed username → address records (`specs/phonebook.md`).
//!
//! Users publish a [`SignedRecord`] (username, PeerId, addresses, sequence number, expiry),
//! signed with their identity key. The [`server`] checks it and binds the username to the
//! PeerId, first come first served; only the same key may refresh or delete it. The typed
//! [`Client`] verifies every record it receives, so the server can neither forge nor alter
//! one. The phonebook never sees a message: no route has a field for content.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use tincan_phonebook::Client;
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

pub mod relay;
pub mod server;

// Records and the client live in `tincan-phonebook-client`, which peers use without the server.
pub use tincan_phonebook_client::{
    AddrText, Client, ClientError, Endpoint, Found, MAX_ADDR_LEN, MAX_ADDRS, Record, RecordError,
    RelayInfo, RelayList, SignedDelete, SignedRecord, delete_payload, parse_addr, record_payload,
    verify_view,
};
