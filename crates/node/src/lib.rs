//! The tincan peer: a libp2p swarm and the delivery engine (`specs/delivery.md`).
//!
//! [`Node::start`] runs a swarm (TCP and QUIC, Noise, Yamux, identify, ping) speaking the chat
//! protocol of `specs/wire.md` over request-response, on its own thread. [`Node::send`] puts a
//! message durably in the outbox of the [`Store`](tincan_store::Store); the engine delivers it,
//! in order, in batches, retrying with backoff until the recipient acknowledges that it stored
//! it. Incoming messages are acknowledged only once stored, and shown once. Usernames resolve
//! through phonebooks whose records the client verifies; the first key seen is pinned, and a
//! different one later holds delivery until the user trusts it. [`Event`]s report what
//! happens.
//!
//! Behind NAT, the node reserves a slot at the relay its phonebook announces, publishes the
//! relayed address beside its direct ones, learns its reachability from AutoNAT probes, and
//! upgrades relayed connections to direct ones by hole punching (DCUtR). [`Node::path`] tells
//! how each peer is reached; [`Node::nat`] how we are.
//!
//! ```no_run
//! # async fn demo(identity: tincan_identity::Identity, store: tincan_store::Store) -> Result<(), Box<dyn std::error::Error>> {
//! use tincan_node::{Config, Node};
//! use tincan_wire::Username;
//!
//! let mut config = Config::new(Username::new("alice")?);
//! config.phonebooks.push(tincan_phonebook_client::Client::new("http://127.0.0.1:7878")?);
//! let node = Node::start(identity, store, config).await?;
//! let mut events = node.subscribe();
//! node.send(&Username::new("bob")?, "hello, bob").await?;
//! while let Ok(event) = events.recv().await {
//!     println!("{event:?}");
//! }
//! # Ok(()) }
//! ```

mod codec;
pub mod conversations;
pub mod delivery;
mod directory;
mod engine;
mod guard;
mod lookup;
mod nat;
mod node;
mod types;

pub use codec::{Codec, Inbound, PROTOCOL};
pub use directory::{Directory, DirectoryError};
pub use guard::Limits;
pub use node::{
    Config, ContactError, Event, NatConfig, NatReport, Node, Path, Reachability, RelayPolicy,
    RelayState, ResolveError, SafetyNumbers, SealingChange, SendError, Sent, StartError,
    safety_numbers,
};
