//! Requests and responses of the chat protocol, and their encoding (`specs/wire.md`).

use crate::DecodeError;
use crate::cbor::{Reader, Writer};
use crate::error::InvalidValue;
use crate::types::{
    MAX_PEER_ID_LEN, MAX_TEXT_LEN, MAX_USERNAME_LEN, MessageId, PeerIdBytes, Seq, Text, UnixMillis,
    Username,
};

/// The newest envelope version this implementation reads and writes. Version 2 adds the
/// sealed and keys kinds; what version 1 had keeps version 1 on the wire (`specs/wire.md` §4).
pub const VERSION: u64 = 2;
/// Most messages in one [`Batch`] or [`SealedBatch`].
pub const MAX_BATCH: usize = 64;
/// Most bytes of one sealed envelope in a [`SealedBatch`] (`specs/sealed.md` §3).
pub const MAX_SEALED_LEN: usize = 6272;
/// Most bytes of a keys record in [`Response::Keys`] (`specs/sealed.md` §2).
pub const MAX_KEYS_LEN: usize = 256;

const V1: u64 = 1;
const V2: u64 = 2;
const KIND_CHAT: u64 = 1;
const KIND_NOTICE: u64 = 3;
const KIND_SEALED: u64 = 4;
const KIND_KEYS: u64 = 5;
const KIND_ACKS: u64 = 1;
const KIND_REFUSED: u64 = 2;
const KIND_KEYS_RECORD: u64 = 3;
/// The keys record version a [`Request::Keys`] asks for.
const KEYS_RECORD_VERSION: u64 = 1;

/// One chat message, as its sender wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatMessage {
    /// Unique id, picked at random by the sender; the recipient deduplicates on it.
    pub id: MessageId,
    /// The sender's sequence number in this conversation.
    pub seq: Seq,
    /// When the sender wrote it, by the sender's clock.
    pub sent_at: UnixMillis,
    /// The username the sender claims. Unverified: the recipient checks it.
    pub from: Username,
    /// The recipient's PeerId; a peer refuses a message addressed to another.
    pub to: PeerIdBytes,
    /// What the sender wrote.
    pub text: Text,
}

/// One to [`MAX_BATCH`] chat messages sent in one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch(Vec<ChatMessage>);

impl Batch {
    /// Wraps `messages`: there must be 1 to [`MAX_BATCH`] of them.
    pub fn new(messages: Vec<ChatMessage>) -> Result<Batch, InvalidValue> {
        if messages.is_empty() || messages.len() > MAX_BATCH {
            return Err(InvalidValue::new("batch", "must hold 1 to 64 messages"));
        }
        Ok(Batch(messages))
    }

    /// The messages, in the order they were sent.
    pub fn messages(&self) -> &[ChatMessage] {
        &self.0
    }

    /// Takes the messages out.
    pub fn into_messages(self) -> Vec<ChatMessage> {
        self.0
    }
}

/// One to [`MAX_BATCH`] sealed envelopes sent in one request, each 1 to [`MAX_SEALED_LEN`]
/// bytes. This crate does not look inside them: `tincan-seal` decodes and opens them
/// (`specs/sealed.md` §3).
#[derive(Clone, PartialEq, Eq)]
pub struct SealedBatch(Vec<Vec<u8>>);

impl SealedBatch {
    /// Wraps `envelopes`: 1 to [`MAX_BATCH`] of them, none empty or over [`MAX_SEALED_LEN`].
    pub fn new(envelopes: Vec<Vec<u8>>) -> Result<SealedBatch, InvalidValue> {
        if envelopes.is_empty() || envelopes.len() > MAX_BATCH {
            return Err(InvalidValue::new("sealed batch", "must hold 1 to 64 envelopes"));
        }
        if envelopes.iter().any(|e| e.is_empty() || e.len() > MAX_SEALED_LEN) {
            return Err(InvalidValue::new("sealed envelope", "must be 1 to 6272 bytes"));
        }
        Ok(SealedBatch(envelopes))
    }

    /// The envelopes, in the order they were sent.
    pub fn envelopes(&self) -> &[Vec<u8>] {
        &self.0
    }

    /// Takes the envelopes out.
    pub fn into_envelopes(self) -> Vec<Vec<u8>> {
        self.0
    }
}

impl std::fmt::Debug for SealedBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sizes: Vec<usize> = self.0.iter().map(Vec::len).collect();
        f.debug_tuple("SealedBatch").field(&sizes).finish()
    }
}

/// Everything a peer may ask another on the chat protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Request {
    /// Version 1, kind 1: store these plaintext chat messages and acknowledge each. tincan
    /// decodes it only to refuse it (`specs/wire.md` §4.5): it sends and accepts sealed
    /// messages only.
    Chat(Batch),
    /// Version 1, kind 3: something the sender says about the conversation rather than in it:
    /// shown, never stored, never retried. Answered with an empty [`Response::Acks`].
    Notice(Notice),
    /// Version 2, kind 4: store these sealed messages and acknowledge each.
    Sealed(SealedBatch),
    /// Version 2, kind 5: send me your signed Olm keys. Answered with [`Response::Keys`].
    Keys,
}

/// What a [`Request::Notice`] says (`specs/wire.md` §4.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Notice {
    /// 1: the sender ended the conversation (typed `--DISCONNECT--`).
    Ended,
    /// A code this implementation does not know: ignored.
    Unknown(UnknownCode),
}

impl Notice {
    /// The code on the wire.
    pub fn code(self) -> u64 {
        match self {
            Notice::Ended => 1,
            Notice::Unknown(code) => code.0,
        }
    }

    /// The notice with this code; `None` for 0, which is none.
    pub fn from_code(code: u64) -> Option<Notice> {
        match code {
            0 => None,
            1 => Some(Notice::Ended),
            other => Some(Notice::Unknown(UnknownCode(other))),
        }
    }
}

/// The answer to a [`Request`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Response {
    /// One acknowledgement per message of the request, in the same order (kind 1).
    Acks(Vec<Ack>),
    /// The whole request was refused and nothing of it was stored (kind 2).
    Refused(Refusal),
    /// Version 2, kind 3: the responder's signed Olm keys record, 1 to [`MAX_KEYS_LEN`] bytes,
    /// undecoded (`specs/sealed.md` §2). Answers [`Request::Keys`] only.
    Keys(Vec<u8>),
}

/// The recipient's answer for one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack {
    /// The message this answers.
    pub id: MessageId,
    /// Stored, or refused and why.
    pub outcome: Outcome,
}

/// What became of one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Durably stored by the recipient (now or by an earlier delivery).
    Stored,
    /// Not stored.
    Refused(Refusal),
}

/// Why a peer refused a request or a message. Codes are stable; see `specs/wire.md`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Refusal {
    /// 1: the frame is over the size limit.
    TooLarge,
    /// 2: the frame is not a valid message.
    Malformed,
    /// 3: the envelope version is not supported.
    UnsupportedVersion,
    /// 4: the request kind is not supported.
    UnsupportedKind,
    /// 5: the message is addressed to another peer.
    WrongRecipient,
    /// 6: the recipient does not accept messages from this sender.
    Blocked,
    /// 7: too many requests; retry later.
    RateLimited,
    /// 8: the recipient cannot store messages right now; retry later.
    Unavailable,
    /// 9: an earlier message of this conversation has not arrived yet; resend from the
    /// first unacknowledged one.
    OutOfOrder,
    /// 10: the recipient holds as much as it will from this sender until its user accepts the
    /// message request; retry later.
    Quota,
    /// 11: no session the recipient has opens the sealed message (it lost the session, for
    /// instance to a restored backup): seal it again in a new session (`specs/sealed.md` §8).
    NoSession,
    /// 12: the sealed message does not authenticate, or what it holds breaks the rules.
    BadSeal,
    /// 13: the Olm keys the sealed message carries are not signed by the sender's pinned
    /// identity.
    KeysRefused,
    /// A code this implementation does not know. Treated as temporary.
    Unknown(UnknownCode),
}

/// A refusal code without a name in this version. Only decoding makes one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UnknownCode(u64);

impl UnknownCode {
    /// The code as it was on the wire.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl Refusal {
    /// The code on the wire.
    pub fn code(self) -> u64 {
        match self {
            Refusal::TooLarge => 1,
            Refusal::Malformed => 2,
            Refusal::UnsupportedVersion => 3,
            Refusal::UnsupportedKind => 4,
            Refusal::WrongRecipient => 5,
            Refusal::Blocked => 6,
            Refusal::RateLimited => 7,
            Refusal::Unavailable => 8,
            Refusal::OutOfOrder => 9,
            Refusal::Quota => 10,
            Refusal::NoSession => 11,
            Refusal::BadSeal => 12,
            Refusal::KeysRefused => 13,
            Refusal::Unknown(code) => code.0,
        }
    }

    /// The refusal for a nonzero `code`; `None` for 0, which means "stored".
    pub fn from_code(code: u64) -> Option<Refusal> {
        Some(match code {
            0 => return None,
            1 => Refusal::TooLarge,
            2 => Refusal::Malformed,
            3 => Refusal::UnsupportedVersion,
            4 => Refusal::UnsupportedKind,
            5 => Refusal::WrongRecipient,
            6 => Refusal::Blocked,
            7 => Refusal::RateLimited,
            8 => Refusal::Unavailable,
            9 => Refusal::OutOfOrder,
            10 => Refusal::Quota,
            11 => Refusal::NoSession,
            12 => Refusal::BadSeal,
            13 => Refusal::KeysRefused,
            other => Refusal::Unknown(UnknownCode(other)),
        })
    }

    /// Whether sending the same message again can never succeed. Temporary refusals
    /// (rate limited, unavailable, out of order, unknown codes) are retried.
    pub fn is_permanent(self) -> bool {
        !matches!(
            self,
            Refusal::RateLimited
                | Refusal::Unavailable
                | Refusal::OutOfOrder
                | Refusal::Quota
                | Refusal::Unknown(_)
        )
    }

    /// The refusal a responder gives for a request it could not decode.
    pub fn for_decode_error(err: &DecodeError) -> Refusal {
        match err {
            DecodeError::UnsupportedVersion(_) => Refusal::UnsupportedVersion,
            DecodeError::UnknownKind(_) => Refusal::UnsupportedKind,
            _ => Refusal::Malformed,
        }
    }

    /// A short lowercase name, for logs and user interfaces.
    pub fn name(self) -> &'static str {
        match self {
            Refusal::TooLarge => "too large",
            Refusal::Malformed => "malformed",
            Refusal::UnsupportedVersion => "unsupported version",
            Refusal::UnsupportedKind => "unsupported kind",
            Refusal::WrongRecipient => "wrong recipient",
            Refusal::Blocked => "blocked",
            Refusal::RateLimited => "rate limited",
            Refusal::Unavailable => "unavailable",
            Refusal::OutOfOrder => "out of order",
            Refusal::Quota => "quota",
            Refusal::NoSession => "no session",
            Refusal::BadSeal => "bad seal",
            Refusal::KeysRefused => "keys refused",
            Refusal::Unknown(_) => "unknown reason",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (code {})", self.name(), self.code())
    }
}

impl Request {
    /// Encodes the request as a frame payload (without the length prefix).
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Request::Chat(batch) => {
                let mut w = Writer::with_capacity(
                    8 + batch.0.iter().map(|m| 96 + m.text.as_str().len()).sum::<usize>(),
                );
                envelope(&mut w, V1, KIND_CHAT);
                w.array(batch.0.len());
                for message in &batch.0 {
                    write_chat(&mut w, message);
                }
                w.into_bytes()
            }
            Request::Notice(notice) => {
                let mut w = Writer::with_capacity(16);
                envelope(&mut w, V1, KIND_NOTICE);
                w.uint(notice.code());
                w.into_bytes()
            }
            Request::Sealed(batch) => {
                let mut w =
                    Writer::with_capacity(8 + batch.0.iter().map(|e| 3 + e.len()).sum::<usize>());
                envelope(&mut w, V2, KIND_SEALED);
                w.array(batch.0.len());
                for sealed in &batch.0 {
                    w.bytes(sealed);
                }
                w.into_bytes()
            }
            Request::Keys => {
                let mut w = Writer::with_capacity(4);
                envelope(&mut w, V2, KIND_KEYS);
                w.uint(KEYS_RECORD_VERSION);
                w.into_bytes()
            }
        }
    }

    /// Decodes a frame payload. The whole payload must be one request.
    pub fn decode(payload: &[u8]) -> Result<Request, DecodeError> {
        let mut r = Reader::new(payload);
        let request = match read_envelope(&mut r)? {
            (V1, KIND_CHAT) => {
                let n = r.array("batch", MAX_BATCH)?;
                if n == 0 {
                    return Err(InvalidValue::new("batch", "must hold 1 to 64 messages").into());
                }
                let mut messages = Vec::with_capacity(n);
                for _ in 0..n {
                    messages.push(read_chat(&mut r)?);
                }
                Request::Chat(Batch(messages))
            }
            (V1, KIND_NOTICE) => match Notice::from_code(r.uint("notice")?) {
                Some(notice) => Request::Notice(notice),
                None => return Err(InvalidValue::new("notice", "0 is not a notice").into()),
            },
            (V2, KIND_SEALED) => {
                let n = r.array("sealed batch", MAX_BATCH)?;
                if n == 0 {
                    return Err(
                        InvalidValue::new("sealed batch", "must hold 1 to 64 envelopes").into()
                    );
                }
                let mut envelopes = Vec::with_capacity(n);
                for _ in 0..n {
                    let sealed = r.bytes("sealed envelope", MAX_SEALED_LEN)?;
                    if sealed.is_empty() {
                        return Err(InvalidValue::new("sealed envelope", "is empty").into());
                    }
                    envelopes.push(sealed.to_vec());
                }
                Request::Sealed(SealedBatch(envelopes))
            }
            (V2, KIND_KEYS) => {
                if r.uint("keys version")? != KEYS_RECORD_VERSION {
                    return Err(InvalidValue::new("keys version", "must be 1").into());
                }
                Request::Keys
            }
            (_, kind) => return Err(DecodeError::UnknownKind(kind)),
        };
        r.finish()?;
        Ok(request)
    }
}

impl Response {
    /// Encodes the response as a frame payload (without the length prefix).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(16 + 20 * MAX_BATCH);
        match self {
            Response::Acks(acks) => {
                envelope(&mut w, V1, KIND_ACKS);
                w.array(acks.len());
                for ack in acks {
                    w.array(2);
                    w.bytes(ack.id.as_bytes());
                    w.uint(match ack.outcome {
                        Outcome::Stored => 0,
                        Outcome::Refused(refusal) => refusal.code(),
                    });
                }
            }
            Response::Refused(refusal) => {
                envelope(&mut w, V1, KIND_REFUSED);
                w.uint(refusal.code());
            }
            Response::Keys(record) => {
                envelope(&mut w, V2, KIND_KEYS_RECORD);
                w.bytes(record);
            }
        }
        w.into_bytes()
    }

    /// Decodes a frame payload. The whole payload must be one response.
    pub fn decode(payload: &[u8]) -> Result<Response, DecodeError> {
        let mut r = Reader::new(payload);
        let response = match read_envelope(&mut r)? {
            (V1, KIND_ACKS) => {
                let n = r.array("acks", MAX_BATCH)?;
                let mut acks = Vec::with_capacity(n);
                for _ in 0..n {
                    if r.array("ack", usize::MAX)? != 2 {
                        return Err(DecodeError::WrongArity { field: "ack", expected: 2 });
                    }
                    let id = read_id(&mut r)?;
                    let outcome = match Refusal::from_code(r.uint("outcome")?) {
                        None => Outcome::Stored,
                        Some(refusal) => Outcome::Refused(refusal),
                    };
                    acks.push(Ack { id, outcome });
                }
                Response::Acks(acks)
            }
            (V1, KIND_REFUSED) => match Refusal::from_code(r.uint("reason")?) {
                Some(refusal) => Response::Refused(refusal),
                None => return Err(InvalidValue::new("reason", "0 is not a refusal").into()),
            },
            (V2, KIND_KEYS_RECORD) => {
                let record = r.bytes("keys record", MAX_KEYS_LEN)?;
                if record.is_empty() {
                    return Err(InvalidValue::new("keys record", "is empty").into());
                }
                Response::Keys(record.to_vec())
            }
            (_, kind) => return Err(DecodeError::UnknownKind(kind)),
        };
        r.finish()?;
        Ok(response)
    }
}

fn envelope(w: &mut Writer, version: u64, kind: u64) {
    w.array(3);
    w.uint(version);
    w.uint(kind);
}

/// Reads `[version, kind, ...]` and returns both. The version is checked before anything
/// else, so any future envelope, whatever its shape after the version, gets
/// [`DecodeError::UnsupportedVersion`]. Each kind belongs to one version: the caller refuses
/// other pairs as unknown kinds.
fn read_envelope(r: &mut Reader<'_>) -> Result<(u64, u64), DecodeError> {
    let items = r.array("envelope", usize::MAX)?;
    if items == 0 {
        return Err(DecodeError::WrongArity { field: "envelope", expected: 3 });
    }
    let version = r.uint("version")?;
    if !(V1..=VERSION).contains(&version) {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    if items != 3 {
        return Err(DecodeError::WrongArity { field: "envelope", expected: 3 });
    }
    Ok((version, r.uint("kind")?))
}

const CHAT_FIELDS: usize = 6;

fn write_chat(w: &mut Writer, m: &ChatMessage) {
    w.map(CHAT_FIELDS);
    w.key(0);
    w.bytes(m.id.as_bytes());
    w.key(1);
    w.uint(m.seq.get());
    w.key(2);
    w.uint(m.sent_at.0);
    w.key(3);
    w.text(m.from.as_str());
    w.key(4);
    w.bytes(m.to.as_bytes());
    w.key(5);
    w.text(m.text.as_str());
}

fn read_chat(r: &mut Reader<'_>) -> Result<ChatMessage, DecodeError> {
    if r.map("message", usize::MAX)? != CHAT_FIELDS {
        return Err(DecodeError::WrongArity { field: "message", expected: CHAT_FIELDS });
    }
    r.key(0, "id")?;
    let id = read_id(r)?;
    r.key(1, "seq")?;
    let seq = Seq::new(r.uint("seq")?)?;
    r.key(2, "sent_at")?;
    let sent_at = UnixMillis(r.uint("sent_at")?);
    r.key(3, "from")?;
    let from = Username::canonical(r.text("from", MAX_USERNAME_LEN)?)?;
    r.key(4, "to")?;
    let to = PeerIdBytes::new(r.bytes("to", MAX_PEER_ID_LEN)?)?;
    r.key(5, "text")?;
    let text = Text::new(r.text("text", MAX_TEXT_LEN)?)?;
    Ok(ChatMessage { id, seq, sent_at, from, to, text })
}

fn read_id(r: &mut Reader<'_>) -> Result<MessageId, DecodeError> {
    let raw = r.bytes("id", 16)?;
    let id: [u8; 16] =
        raw.try_into().map_err(|_| InvalidValue::new("message id", "must be 16 bytes"))?;
    Ok(MessageId(id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzzing;
    use proptest::prelude::*;

    fn message(seq: u64, text: &str) -> ChatMessage {
        ChatMessage {
            id: MessageId([seq as u8; 16]),
            seq: Seq::new(seq).unwrap(),
            sent_at: UnixMillis(1_700_000_000_000),
            from: Username::new("alice").unwrap(),
            to: PeerIdBytes::new(&[0, 36, 8, 1, 18, 32]).unwrap(),
            text: Text::new(text).unwrap(),
        }
    }

    #[track_caller]
    fn check_roundtrip(request: &Request) {
        let bytes = request.encode();
        assert_eq!(Request::decode(&bytes).as_ref(), Ok(request));
    }

    #[test]
    fn chat_batches_roundtrip() {
        check_roundtrip(&Request::Chat(Batch::new(vec![message(1, "hi")]).unwrap()));
        let many = (1..=64).map(|i| message(i, "again and again")).collect();
        check_roundtrip(&Request::Chat(Batch::new(many).unwrap()));
        assert!(Batch::new(vec![]).is_err());
        assert!(Batch::new((1..=65).map(|i| message(i, "x")).collect()).is_err());
    }

    #[test]
    fn responses_roundtrip() {
        let acks = Response::Acks(vec![
            Ack { id: MessageId([1; 16]), outcome: Outcome::Stored },
            Ack { id: MessageId([2; 16]), outcome: Outcome::Refused(Refusal::OutOfOrder) },
            Ack {
                id: MessageId([3; 16]),
                outcome: Outcome::Refused(Refusal::from_code(77).unwrap()),
            },
        ]);
        assert_eq!(Response::decode(&acks.encode()), Ok(acks));
        for code in 1..=12 {
            let refused = Response::Refused(Refusal::from_code(code).unwrap());
            assert_eq!(Response::decode(&refused.encode()), Ok(refused));
        }
    }

    #[test]
    fn refusal_codes_are_stable() {
        for code in 1..=13 {
            let refusal = Refusal::from_code(code).unwrap();
            assert!(!matches!(refusal, Refusal::Unknown(_)));
            assert_eq!(refusal.code(), code);
        }
        assert!(Refusal::Blocked.is_permanent());
        assert!(!Refusal::from_code(1000).unwrap().is_permanent());
        assert_eq!(Refusal::from_code(0), None);
    }

    #[test]
    fn unknown_versions_and_kinds_are_typed_errors() {
        // [3, 1, []]: a future version with any shape.
        assert_eq!(
            Request::decode(&[0x83, 0x03, 0x01, 0x80]),
            Err(DecodeError::UnsupportedVersion(3))
        );
        assert_eq!(Request::decode(&[0x81, 0x05]), Err(DecodeError::UnsupportedVersion(5)));
        // Each kind belongs to one version: [2, 1, []] and [1, 4, []] are unknown kinds.
        assert_eq!(Request::decode(&[0x83, 0x02, 0x01, 0x80]), Err(DecodeError::UnknownKind(1)));
        assert_eq!(Request::decode(&[0x83, 0x01, 0x04, 0x80]), Err(DecodeError::UnknownKind(4)));
        assert_eq!(Response::decode(&[0x83, 0x02, 0x01, 0x80]), Err(DecodeError::UnknownKind(1)));
        assert_eq!(
            Response::decode(&[0x83, 0x01, 0x03, 0x41, 0]),
            Err(DecodeError::UnknownKind(3))
        );
        // [1, 7, 0]: version 1, kind 7.
        assert_eq!(Request::decode(&[0x83, 0x01, 0x07, 0x00]), Err(DecodeError::UnknownKind(7)));
        assert_eq!(Response::decode(&[0x83, 0x01, 0x09, 0x00]), Err(DecodeError::UnknownKind(9)));
    }

    #[test]
    fn sealed_batches_and_keys_roundtrip_as_version_2() {
        let batch = SealedBatch::new(vec![vec![0xa5; 300], vec![1]]).unwrap();
        let request = Request::Sealed(batch);
        let bytes = request.encode();
        assert_eq!(&bytes[..3], &[0x83, 0x02, 0x04]);
        check_roundtrip(&request);
        assert_eq!(Request::Keys.encode(), [0x83, 0x02, 0x05, 0x01]);
        check_roundtrip(&Request::Keys);
        assert!(Request::decode(&[0x83, 0x02, 0x05, 0x02]).is_err(), "keys version 2");
        let keys = Response::Keys(vec![7; MAX_KEYS_LEN]);
        assert_eq!(Response::decode(&keys.encode()), Ok(keys));
        // What version 1 had stays version 1: a version-1 peer reads our refusals.
        assert_eq!(Response::Refused(Refusal::NoSession).encode(), [0x83, 0x01, 0x02, 0x0b]);
        assert_eq!(Request::Notice(Notice::Ended).encode(), [0x83, 0x01, 0x03, 0x01]);
        assert!(SealedBatch::new(vec![]).is_err());
        assert!(SealedBatch::new(vec![vec![]]).is_err());
        assert!(SealedBatch::new(vec![vec![0; MAX_SEALED_LEN + 1]]).is_err());
        assert!(SealedBatch::new(vec![vec![0]; MAX_BATCH + 1]).is_err());
        // An empty envelope, an empty keys record: refused.
        assert!(Request::decode(&[0x83, 0x02, 0x04, 0x81, 0x40]).is_err());
        assert!(Response::decode(&[0x83, 0x02, 0x03, 0x40]).is_err());
        // An envelope over the limit is refused from its length alone.
        let mut long = vec![0x83, 0x02, 0x04, 0x81, 0x59, 0x18, 0x81];
        long.resize(long.len() + MAX_SEALED_LEN + 1, 0);
        assert_eq!(
            Request::decode(&long),
            Err(DecodeError::TooLong {
                field: "sealed envelope",
                len: MAX_SEALED_LEN as u64 + 1,
                max: MAX_SEALED_LEN as u64
            })
        );
    }

    #[test]
    fn the_largest_sealed_request_fits_the_frame_limit() {
        let batch = SealedBatch::new(vec![vec![0xff; MAX_SEALED_LEN]; MAX_BATCH]).unwrap();
        let len = Request::Sealed(batch).encode().len();
        // specs/wire.md §2 quotes the figure.
        assert_eq!(len, 401_605);
        assert!(len <= crate::MAX_REQUEST_LEN as usize, "{len}");
        let len = Response::Keys(vec![0xff; MAX_KEYS_LEN]).encode().len();
        assert!(len <= crate::MAX_RESPONSE_LEN as usize, "{len}");
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut bytes = Request::Chat(Batch::new(vec![message(1, "hi")]).unwrap()).encode();
        bytes.push(0);
        assert_eq!(Request::decode(&bytes), Err(DecodeError::TrailingBytes(1)));
    }

    #[test]
    fn the_largest_request_fits_the_frame_limit() {
        let biggest = ChatMessage {
            id: MessageId([0xff; 16]),
            seq: Seq::new(u64::MAX).unwrap(),
            sent_at: UnixMillis(u64::MAX),
            from: Username::new(&"z".repeat(MAX_USERNAME_LEN)).unwrap(),
            to: PeerIdBytes::new(&[0xff; MAX_PEER_ID_LEN]).unwrap(),
            text: Text::new(&"🥫".repeat(MAX_TEXT_LEN / 4)).unwrap(),
        };
        let batch = Batch::new(vec![biggest; MAX_BATCH]).unwrap();
        let len = Request::Chat(batch).encode().len();
        // specs/wire.md §2 quotes both figures.
        assert_eq!(len, 271_429);
        assert!(len <= crate::MAX_REQUEST_LEN as usize, "{len}");
        let acks = (0..MAX_BATCH)
            .map(|_| Ack {
                id: MessageId([0xff; 16]),
                outcome: Outcome::Refused(Refusal::from_code(u64::MAX).unwrap()),
            })
            .collect();
        let len = Response::Acks(acks).encode().len();
        assert_eq!(len, 1_733);
        assert!(len <= crate::MAX_RESPONSE_LEN as usize, "{len}");
    }

    #[test]
    fn map_keys_out_of_order_or_unknown_are_refused() {
        let bytes = Request::Chat(Batch::new(vec![message(1, "hi")]).unwrap()).encode();
        // The first key of the message map (0, for id) sits right after the map head (0xa6).
        let at = bytes.iter().position(|&b| b == 0xa6).unwrap() + 1;
        let mut unknown = bytes.clone();
        unknown[at] = 0x06;
        assert_eq!(Request::decode(&unknown), Err(DecodeError::MissingField("id")));
    }

    proptest! {
        #[test]
        fn arbitrary_requests_roundtrip(seed in proptest::collection::vec(any::<u8>(), 0..4096)) {
            fuzzing::structured_roundtrip(&seed);
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            fuzzing::decode(&bytes);
        }

        #[test]
        fn decoding_mutated_requests_never_panics(
            seed in proptest::collection::vec(any::<u8>(), 0..1024),
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        ) {
            let mut bytes = fuzzing::arbitrary_request_bytes(&seed);
            for (at, xor) in flips {
                if !bytes.is_empty() {
                    let at = at % bytes.len();
                    bytes[at] ^= xor;
                }
            }
            fuzzing::decode(&bytes);
        }
    }
}
