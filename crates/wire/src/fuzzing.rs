//! Entry points for the fuzz targets in `fuzz/` and for the property tests. Each asserts the
//! codec's contract, so a crash here is a bug in this crate.

use arbitrary::{Result, Unstructured};

use crate::{
    Ack, Batch, ChatMessage, MAX_BATCH, MessageId, Notice, Outcome, PeerIdBytes, Refusal, Request,
    Response, SealedBatch, Seq, Text, UnixMillis, Username,
};

/// Decodes `data` as a request and as a response. Decoding must not panic, and whatever
/// decodes must re-encode to exactly `data` (the encoding is deterministic).
pub fn decode(data: &[u8]) {
    if let Ok(request) = Request::decode(data) {
        assert_eq!(request.encode(), data, "request did not re-encode to its input");
    }
    if let Ok(response) = Response::decode(data) {
        assert_eq!(response.encode(), data, "response did not re-encode to its input");
    }
    if let Some(header) = data.first_chunk::<{ crate::HEADER_LEN }>() {
        let _ = crate::payload_len(*header, crate::MAX_REQUEST_LEN);
    }
}

/// Builds a request and a response from `data`, then checks encode → decode gives the same
/// value and re-encoding gives the same bytes.
pub fn structured_roundtrip(data: &[u8]) {
    let mut u = Unstructured::new(data);
    if let Ok(request) = arbitrary_request(&mut u) {
        let bytes = request.encode();
        let decoded = Request::decode(&bytes).expect("an encoded request decodes");
        assert_eq!(decoded, request);
        assert_eq!(decoded.encode(), bytes);
    }
    if let Ok(response) = arbitrary_response(&mut u) {
        let bytes = response.encode();
        let decoded = Response::decode(&bytes).expect("an encoded response decodes");
        assert_eq!(decoded, response);
        assert_eq!(decoded.encode(), bytes);
    }
}

/// The encoding of a request built from `data`, or nothing if `data` is too short.
pub fn arbitrary_request_bytes(data: &[u8]) -> Vec<u8> {
    arbitrary_request(&mut Unstructured::new(data)).map(|r| r.encode()).unwrap_or_default()
}

/// A valid request built from fuzzer input.
pub fn arbitrary_request(u: &mut Unstructured<'_>) -> Result<Request> {
    match u.int_in_range(0..=7)? {
        0 => return Ok(Request::Keys),
        1 => {
            return Ok(Request::Notice(
                Notice::from_code(u.int_in_range(1..=u64::MAX)?).unwrap_or(Notice::Ended),
            ));
        }
        2 | 3 => {
            let n = u.int_in_range(1..=MAX_BATCH)?;
            let mut envelopes = Vec::with_capacity(n);
            for _ in 0..n {
                envelopes.push(arbitrary_bytes(u, 1, crate::MAX_SEALED_LEN)?);
                if u.is_empty() {
                    break;
                }
            }
            let batch =
                SealedBatch::new(envelopes).map_err(|_| arbitrary::Error::IncorrectFormat)?;
            return Ok(Request::Sealed(batch));
        }
        _ => {}
    }
    let n = u.int_in_range(1..=MAX_BATCH)?;
    let mut messages = Vec::with_capacity(n);
    for _ in 0..n {
        messages.push(arbitrary_message(u)?);
        if u.is_empty() {
            break;
        }
    }
    Ok(Request::Chat(Batch::new(messages).map_err(|_| arbitrary::Error::IncorrectFormat)?))
}

/// A valid response built from fuzzer input.
pub fn arbitrary_response(u: &mut Unstructured<'_>) -> Result<Response> {
    match u.int_in_range(0..=3)? {
        0 => return Ok(Response::Refused(arbitrary_refusal(u)?)),
        1 => return Ok(Response::Keys(arbitrary_bytes(u, 1, crate::MAX_KEYS_LEN)?)),
        _ => {}
    }
    let n = u.int_in_range(0..=MAX_BATCH)?;
    let mut acks = Vec::with_capacity(n);
    for _ in 0..n {
        let id = MessageId(u.arbitrary()?);
        let outcome =
            if u.arbitrary()? { Outcome::Stored } else { Outcome::Refused(arbitrary_refusal(u)?) };
        acks.push(Ack { id, outcome });
    }
    Ok(Response::Acks(acks))
}

fn arbitrary_refusal(u: &mut Unstructured<'_>) -> Result<Refusal> {
    let code = if u.arbitrary()? { u.int_in_range(1..=14)? } else { u.int_in_range(1..=u64::MAX)? };
    Refusal::from_code(code).ok_or(arbitrary::Error::IncorrectFormat)
}

fn arbitrary_message(u: &mut Unstructured<'_>) -> Result<ChatMessage> {
    let bad = |_| arbitrary::Error::IncorrectFormat;
    Ok(ChatMessage {
        id: MessageId(u.arbitrary()?),
        seq: Seq::new(u.int_in_range(1..=u64::MAX)?).map_err(bad)?,
        sent_at: UnixMillis(u.arbitrary()?),
        from: arbitrary_username(u)?,
        to: PeerIdBytes::new(&arbitrary_bytes(u, crate::types::MIN_PEER_ID_LEN, 64)?)
            .map_err(bad)?,
        text: arbitrary_text(u)?,
    })
}

fn arbitrary_username(u: &mut Unstructured<'_>) -> Result<Username> {
    const FIRST: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    const REST: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789_.-";
    let len = u.int_in_range(1..=32)?;
    let mut name = String::with_capacity(len);
    name.push(char::from(*u.choose(FIRST)?));
    for _ in 1..len {
        name.push(char::from(*u.choose(REST)?));
    }
    Username::canonical(&name).map_err(|_| arbitrary::Error::IncorrectFormat)
}

fn arbitrary_text(u: &mut Unstructured<'_>) -> Result<Text> {
    let mut text = String::new();
    let chars = u.int_in_range(1..=crate::types::MAX_TEXT_LEN)?;
    for _ in 0..chars {
        let c: char = u.arbitrary()?;
        let c = if c.is_control() && c != '\n' && c != '\t' { '?' } else { c };
        if text.len() + c.len_utf8() > crate::types::MAX_TEXT_LEN {
            break;
        }
        text.push(c);
        if u.is_empty() {
            break;
        }
    }
    if text.is_empty() {
        text.push('.');
    }
    Text::new(&text).map_err(|_| arbitrary::Error::IncorrectFormat)
}

fn arbitrary_bytes(u: &mut Unstructured<'_>, min: usize, max: usize) -> Result<Vec<u8>> {
    let len = u.int_in_range(min..=max)?;
    let mut out = vec![0u8; len];
    u.fill_buffer(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    /// Replays every input checked in under `fuzz/corpus`, so a crash the fuzzer once found
    /// fails the ordinary `cargo test` on stable.
    #[test]
    fn replays_the_checked_in_corpus() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/corpus");
        let mut replayed = 0;
        for (target, check) in [
            ("wire_decode", super::decode as fn(&[u8])),
            ("wire_roundtrip", super::structured_roundtrip),
        ] {
            for entry in std::fs::read_dir(format!("{root}/{target}")).unwrap() {
                check(&std::fs::read(entry.unwrap().path()).unwrap());
                replayed += 1;
            }
        }
        assert!(replayed >= 40, "only {replayed} corpus inputs found");
    }
}
