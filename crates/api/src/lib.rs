//! The tincan daemon's API: JSON-RPC 2.0 over a Unix socket, one JSON object per line
//! (`specs/rpc.md`).
//!
//! [`Call`] is every method with its parameters, [`Notification`] every event the daemon pushes
//! to a subscribed client, and the data types ([`Contact`], [`Entry`], …) are what scripts read.
//! They are this crate's own, separate from the store's on-disk records, so that changing the
//! store never changes the API by accident. [`Client`] speaks the protocol over a socket; the
//! daemon's side is in `tincan-daemon`. No type here carries a key, a password or anything that
//! unlocks one.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use tincan_api::{Call, Client, SendParams};
//!
//! let client = Client::connect(std::path::Path::new("/run/user/1000/tincan/default.sock")).await?;
//! let sent = client.call(Call::Send(SendParams {
//!     to: "bob".into(),
//!     text: "on my way".into(),
//!     wait: false,
//!     timeout_ms: None,
//! })).await?;
//! println!("{sent}");
//! # Ok(()) }
//! ```

mod client;
mod types;

pub use client::{Client, ClientError, Notice, read_line};
pub use types::*;

/// The version of this API; [`Status::api`] tells it.
pub const API_VERSION: u32 = 1;

/// Longest request line the daemon reads, in bytes. A longer one is refused and its
/// connection closed.
pub const MAX_LINE: usize = 1 << 20;

/// Longest line a client reads (an answer or a notification), in bytes: an `export` of a
/// large profile, or a page of long messages, is longer than a request may be.
pub const MAX_ANSWER: usize = 64 << 20;
