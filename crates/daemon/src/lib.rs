//! The tincan daemon: one profile's node behind the JSON-RPC API of `specs/rpc.md`.
//!
//! Whichever process of a profile opens its store for writing owns the profile: it runs the
//! node and serves the API on a Unix socket ([`server`]), and every later `tincan` of that
//! profile becomes a client of it. [`Service`] is the API's methods over the store and node,
//! the same code whether a call arrives on the socket or from the CLI in the same process.
//! Nothing that unlocks the profile ever crosses the socket: clients are the owning user's
//! processes, checked by their uid (`SO_PEERCRED`) as well as by the socket's mode.

pub mod names;
pub mod server;
pub mod service;

pub use server::{BindError, Limits, bind, serve};
pub use service::{Me, Service};
