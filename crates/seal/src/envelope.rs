//! The sealed envelope and the padded contents inside it (`specs/sealed.md` §3, §4).
//!
//! Outside, an [`Envelope`] carries only what delivery needs: the message id, the sequence
//! number and the recipient. The sender's username claim, the time and the text are in the
//! [`Contents`], padded to a size bucket and sealed into the Olm message in `body`. The
//! contents repeat the id and the sequence number, so a header moved onto another body is
//! caught when the body opens.

use tincan_wire::cbor::{Reader, Writer};
use tincan_wire::{
    DecodeError, MAX_PEER_ID_LEN, MAX_TEXT_LEN, MAX_USERNAME_LEN, MessageId, PeerIdBytes, Seq,
    Text, UnixMillis, Username,
};
use zeroize::Zeroizing;

use crate::keys::{MAX_SIGNED_KEYS_LEN, SignedOlmKeys, fixed};

/// The sizes padded contents can have, smallest first. Contents are padded to the smallest
/// that holds them; the largest holds the largest contents there can be.
pub const BUCKETS: [usize; 6] = [256, 512, 1024, 2048, 4096, 5120];

/// The longest Olm message an envelope may carry: the largest bucket sealed, with room for
/// the Olm header, the AES block padding, the MAC and the pre-key keys.
pub const MAX_BODY_LEN: usize = 6144;

/// The longest encoded envelope: the body and a header of at most 110 bytes.
pub const MAX_ENVELOPE_LEN: usize = MAX_BODY_LEN + 128;

/// Which kind of Olm message the body is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OlmKind {
    /// A pre-key message: it can start a session, and carries the sender's signed keys.
    PreKey,
    /// A message of an established session.
    Normal,
}

impl OlmKind {
    /// The number on the wire: 0 for a pre-key message, 1 for a normal one (as in libolm).
    pub fn code(self) -> u64 {
        match self {
            OlmKind::PreKey => 0,
            OlmKind::Normal => 1,
        }
    }
}

/// A sealed message as it travels and as the outbox keeps it.
#[derive(Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The message id, random, chosen by the sender.
    pub id: MessageId,
    /// The sender's sequence number in this conversation.
    pub seq: Seq,
    /// The recipient's PeerId.
    pub to: PeerIdBytes,
    /// The kind of Olm message in `body`.
    pub kind: OlmKind,
    /// The Olm message, in libolm's binary encoding.
    pub body: Vec<u8>,
}

impl std::fmt::Debug for Envelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Envelope")
            .field("id", &self.id)
            .field("seq", &self.seq)
            .field("kind", &self.kind)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

const ENVELOPE_FIELDS: usize = 5;

impl Envelope {
    /// The deterministic CBOR encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(self.body.len() + 100);
        w.map(ENVELOPE_FIELDS);
        w.key(0);
        w.bytes(&self.id.0);
        w.key(1);
        w.uint(self.seq.get());
        w.key(2);
        w.bytes(self.to.as_bytes());
        w.key(3);
        w.uint(self.kind.code());
        w.key(4);
        w.bytes(&self.body);
        w.into_bytes()
    }

    /// Decodes an envelope from hostile bytes, checking every length before reading.
    pub fn decode(bytes: &[u8]) -> Result<Envelope, DecodeError> {
        let mut r = Reader::new(bytes);
        let envelope = Envelope::read(&mut r)?;
        r.finish()?;
        Ok(envelope)
    }

    /// Reads an envelope that is one item of a longer input.
    pub fn read(r: &mut Reader<'_>) -> Result<Envelope, DecodeError> {
        if r.map("envelope", ENVELOPE_FIELDS)? != ENVELOPE_FIELDS {
            return Err(DecodeError::WrongArity { field: "envelope", expected: ENVELOPE_FIELDS });
        }
        r.key(0, "id")?;
        let id = MessageId(fixed::<16>(r, "id")?);
        r.key(1, "seq")?;
        let seq = Seq::new(r.uint("seq")?)?;
        r.key(2, "to")?;
        let to = PeerIdBytes::new(r.bytes("to", MAX_PEER_ID_LEN)?)?;
        r.key(3, "olm kind")?;
        let kind = match r.uint("olm kind")? {
            0 => OlmKind::PreKey,
            1 => OlmKind::Normal,
            _ => return Err(DecodeError::UnexpectedType { field: "olm kind", expected: "0 or 1" }),
        };
        r.key(4, "body")?;
        let body = r.bytes("body", MAX_BODY_LEN)?.to_vec();
        Ok(Envelope { id, seq, to, kind, body })
    }
}

/// What only the recipient learns: the sealed part of a message.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Contents {
    /// The sender's username claim (`specs/delivery.md` §2).
    pub from: Username,
    /// When the sender queued the message, by its clock.
    pub sent_at: UnixMillis,
    /// The text.
    pub text: Text,
}

/// The contents with the header copy and, in a pre-key message, the sender's keys.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) struct Inner {
    pub(crate) id: MessageId,
    pub(crate) seq: Seq,
    pub(crate) contents: Contents,
    pub(crate) sender_keys: Option<SignedOlmKeys>,
}

impl Inner {
    /// The encoding, padded with zero bytes to the smallest bucket that holds it.
    pub(crate) fn padded(&self) -> Zeroizing<Vec<u8>> {
        let fields = if self.sender_keys.is_some() { 6 } else { 5 };
        let mut w = Writer::with_capacity(BUCKETS[BUCKETS.len() - 1]);
        w.map(fields);
        w.key(0);
        w.bytes(&self.id.0);
        w.key(1);
        w.uint(self.seq.get());
        w.key(2);
        w.text(self.contents.from.as_str());
        w.key(3);
        w.uint(self.contents.sent_at.0);
        w.key(4);
        w.text(self.contents.text.as_str());
        if let Some(keys) = &self.sender_keys {
            w.key(5);
            w.bytes(&keys.encode());
        }
        let mut bytes = Zeroizing::new(w.into_bytes());
        let bucket = bucket_for(bytes.len()).expect("the largest contents fit the largest bucket");
        bytes.resize(bucket, 0);
        bytes
    }

    /// Decodes opened contents. The encoding must be followed only by zero bytes up to a
    /// bucket size, and `kind` says whether the sender's keys must be there.
    pub(crate) fn unpad(bytes: &[u8], kind: OlmKind) -> Result<Inner, DecodeError> {
        if !BUCKETS.contains(&bytes.len()) {
            return Err(DecodeError::WrongArity { field: "padded contents", expected: 5120 });
        }
        let mut r = Reader::new(bytes);
        let expected = match kind {
            OlmKind::PreKey => 6,
            OlmKind::Normal => 5,
        };
        if r.map("contents", 6)? != expected {
            return Err(DecodeError::WrongArity { field: "contents", expected });
        }
        r.key(0, "id")?;
        let id = MessageId(fixed::<16>(&mut r, "id")?);
        r.key(1, "seq")?;
        let seq = Seq::new(r.uint("seq")?)?;
        r.key(2, "from")?;
        let from = Username::canonical(r.text("from", MAX_USERNAME_LEN)?)?;
        r.key(3, "sent_at")?;
        let sent_at = UnixMillis(r.uint("sent_at")?);
        r.key(4, "text")?;
        let text = Text::new(r.text("text", MAX_TEXT_LEN)?)?;
        let sender_keys = if kind == OlmKind::PreKey {
            r.key(5, "sender keys")?;
            let raw = r.bytes("sender keys", MAX_SIGNED_KEYS_LEN)?;
            Some(SignedOlmKeys::decode(raw).map_err(|_| DecodeError::UnexpectedType {
                field: "sender keys",
                expected: "a signed olm keys record",
            })?)
        } else {
            None
        };
        let padding = r.rest();
        // The smallest bucket that holds the encoding, and zeros only.
        let used = bytes.len() - padding.len();
        if padding.iter().any(|&b| b != 0) || bucket_for(used) != Some(bytes.len()) {
            return Err(DecodeError::NonCanonical { field: "padding" });
        }
        Ok(Inner { id, seq, contents: Contents { from, sent_at, text }, sender_keys })
    }
}

/// The smallest bucket that holds `len` bytes.
pub fn bucket_for(len: usize) -> Option<usize> {
    BUCKETS.into_iter().find(|&b| b >= len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inner(text: &str) -> Inner {
        Inner {
            id: MessageId([9; 16]),
            seq: Seq::new(3).unwrap(),
            contents: Contents {
                from: Username::new("alice").unwrap(),
                sent_at: UnixMillis(1_764_000_000_000),
                text: Text::new(text).unwrap(),
            },
            sender_keys: None,
        }
    }

    #[test]
    fn contents_pad_to_the_smallest_bucket_and_back() {
        for (len, bucket) in [(1, 256), (200, 256), (220, 512), (900, 1024), (4096, 5120)] {
            let inner = inner(&"x".repeat(len));
            let padded = inner.padded();
            assert_eq!(padded.len(), bucket, "text of {len}");
            assert_eq!(Inner::unpad(&padded, OlmKind::Normal).unwrap(), inner);
        }
    }

    #[test]
    fn padding_that_is_not_zeros_or_too_long_is_refused() {
        let padded = inner("hi").padded();
        let mut dirty = padded.to_vec();
        dirty[255] = 1;
        assert_eq!(
            Inner::unpad(&dirty, OlmKind::Normal),
            Err(DecodeError::NonCanonical { field: "padding" })
        );
        // Short contents padded to a bigger bucket than needed.
        let mut big = padded.to_vec();
        big.resize(512, 0);
        assert_eq!(
            Inner::unpad(&big, OlmKind::Normal),
            Err(DecodeError::NonCanonical { field: "padding" })
        );
        assert!(Inner::unpad(&padded[..255], OlmKind::Normal).is_err());
        // A normal message's contents read as a pre-key message's lack the sender's keys.
        assert!(Inner::unpad(&padded, OlmKind::PreKey).is_err());
    }

    #[test]
    fn envelopes_roundtrip_and_refuse_every_cut() {
        let envelope = Envelope {
            id: MessageId([1; 16]),
            seq: Seq::FIRST,
            to: PeerIdBytes::new(&[0, 36, 8, 1, 18, 32]).unwrap(),
            kind: OlmKind::Normal,
            body: vec![3; 300],
        };
        let bytes = envelope.encode();
        assert_eq!(Envelope::decode(&bytes).unwrap(), envelope);
        for cut in 0..bytes.len() {
            assert!(Envelope::decode(&bytes[..cut]).is_err());
        }
        let oversized = Envelope { body: vec![0; MAX_BODY_LEN + 1], ..envelope };
        assert!(matches!(
            Envelope::decode(&oversized.encode()),
            Err(DecodeError::TooLong { field: "body", .. })
        ));
    }
}
