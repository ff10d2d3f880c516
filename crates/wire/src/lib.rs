//! The tincan chat protocol: what peers send each other, byte for byte (`specs/wire.md`).
//!
//! A peer sends a [`Request`] (today: a [`Batch`] of [`ChatMessage`]s) and gets a [`Response`]
//! (an [`Ack`] per message, or a [`Refusal`] of the whole request). Both are encoded as
//! deterministic CBOR inside a length-prefixed frame ([`frame`]). [`Request::encode`] cannot
//! fail; [`Request::decode`] treats its input as hostile and returns a [`DecodeError`] instead of
//! panicking, checking every length against its limit before allocating.
//!
//! This crate does no IO and knows nothing of libp2p or tokio: `tincan-node` moves the bytes.
//!
//! ```
//! use tincan_wire::*;
//!
//! let message = ChatMessage {
//!     id: MessageId([7; 16]),
//!     seq: Seq::FIRST,
//!     sent_at: UnixMillis(1_764_000_000_000),
//!     from: Username::new("alice")?,
//!     to: PeerIdBytes::new(&[0x00, 0x24, 0x08, 0x01, 0x12, 0x20])?,
//!     text: Text::new("hello, bob")?,
//! };
//! let request = Request::Chat(Batch::new(vec![message])?);
//! assert_eq!(Request::decode(&request.encode())?, request);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod cbor;
mod error;
pub mod frame;
mod message;
#[cfg(feature = "serde")]
mod serde_impls;
mod types;

#[cfg(any(test, fuzzing))]
pub mod fuzzing;

pub use error::{DecodeError, FrameError, InvalidValue};
pub use frame::{HEADER_LEN, MAX_REQUEST_LEN, MAX_RESPONSE_LEN, PROTOCOL, payload_len};
pub use message::{
    Ack, Batch, ChatMessage, MAX_BATCH, MAX_KEYS_LEN, MAX_SEALED_LEN, Notice, Outcome, Refusal,
    Request, Response, SealedBatch, UnknownCode, VERSION,
};
pub use types::{
    MAX_PEER_ID_LEN, MAX_TEXT_LEN, MAX_USERNAME_LEN, MIN_PEER_ID_LEN, MessageId, PeerIdBytes, Seq,
    Text, UnixMillis, Username, is_bidi_control, split_text,
};
