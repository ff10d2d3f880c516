//! Errors. Messages are lowercase, without a final period, and never quote message content.

/// Why bytes could not be decoded into a [`Request`](crate::Request) or
/// [`Response`](crate::Response).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended inside an item; holds the number of missing bytes.
    #[error("input truncated: {0} more bytes needed")]
    Truncated(usize),
    /// A complete item was followed by more bytes; holds how many.
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
    /// The envelope's version is not one this implementation speaks.
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u64),
    /// The envelope's kind is not one this implementation knows.
    #[error("unknown message kind {0}")]
    UnknownKind(u64),
    /// An item had another CBOR type than the field requires.
    #[error("{field}: expected {expected}")]
    UnexpectedType {
        /// The field being read.
        field: &'static str,
        /// The CBOR type it must have.
        expected: &'static str,
    },
    /// An item was not in core deterministic encoding: a longer than necessary argument, an
    /// indefinite length, or map keys out of order.
    #[error("{field}: not in deterministic encoding")]
    NonCanonical {
        /// The field being read.
        field: &'static str,
    },
    /// A length or count was over its limit; nothing was allocated for it.
    #[error("{field}: length {len} over the limit of {max}")]
    TooLong {
        /// The field being read.
        field: &'static str,
        /// The length the input claimed.
        len: u64,
        /// The limit from `specs/wire.md`.
        max: u64,
    },
    /// A text string was not valid UTF-8.
    #[error("{field}: invalid UTF-8")]
    InvalidUtf8 {
        /// The field being read.
        field: &'static str,
    },
    /// A map lacked a required key, or had a key this version does not define.
    #[error("missing field {0}, or an unknown field in its place")]
    MissingField(&'static str),
    /// A map had a different number of entries than its kind defines.
    #[error("{field}: expected {expected} entries")]
    WrongArity {
        /// The map or array being read.
        field: &'static str,
        /// The number of entries it must have.
        expected: usize,
    },
    /// A field was well-formed CBOR but broke a rule of its type.
    #[error(transparent)]
    Invalid(#[from] InvalidValue),
}

/// A value that breaks a rule of its type, such as an empty username.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what}: {reason}")]
pub struct InvalidValue {
    what: &'static str,
    reason: &'static str,
}

impl InvalidValue {
    pub(crate) const fn new(what: &'static str, reason: &'static str) -> InvalidValue {
        InvalidValue { what, reason }
    }

    /// What was invalid, for example `"username"`.
    pub fn what(&self) -> &'static str {
        self.what
    }

    /// Which rule it broke, in words.
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

/// Why a frame header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The frame announced a payload longer than the limit for its direction.
    #[error("frame of {len} bytes is over the limit of {max}")]
    TooLarge {
        /// The announced payload length.
        len: u32,
        /// The limit for this direction.
        max: u32,
    },
    /// The frame announced an empty payload.
    #[error("empty frame")]
    Empty,
}
