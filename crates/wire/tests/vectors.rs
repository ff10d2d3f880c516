//! Checks the codec against the vectors of `specs/wire.md`, which come from an independent
//! CBOR implementation (`specs/vectors/wire.py`).

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use serde_json::Value;
use tincan_wire::*;

fn vectors() -> Vec<Value> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../specs/vectors/wire.json");
    let text = std::fs::read_to_string(path).expect("specs/vectors/wire.json is readable");
    let doc: Value = serde_json::from_str(&text).expect("wire.json is JSON");
    doc["vectors"].as_array().expect("a vectors array").clone()
}

fn hex16(v: &Value) -> MessageId {
    MessageId(hex::decode(v.as_str().unwrap()).unwrap().try_into().unwrap())
}

fn message(v: &Value) -> ChatMessage {
    ChatMessage {
        id: hex16(&v["id"]),
        seq: Seq::new(v["seq"].as_u64().unwrap()).unwrap(),
        sent_at: UnixMillis(v["sent_at"].as_u64().unwrap()),
        from: Username::canonical(v["from"].as_str().unwrap()).unwrap(),
        to: PeerIdBytes::new(&hex::decode(v["to"].as_str().unwrap()).unwrap()).unwrap(),
        text: Text::new(v["text"].as_str().unwrap()).unwrap(),
    }
}

fn expected_request(v: &Value) -> Request {
    if v.get("keys").is_some() {
        return Request::Keys;
    }
    if let Some(sealed) = v.get("sealed") {
        let envelopes =
            sealed.as_array().unwrap().iter().map(|e| hex::decode(e.as_str().unwrap()).unwrap());
        return Request::Sealed(SealedBatch::new(envelopes.collect()).unwrap());
    }
    if let Some(code) = v.get("notice") {
        return Request::Notice(Notice::from_code(code.as_u64().unwrap()).unwrap());
    }
    let messages = v["chat"].as_array().unwrap().iter().map(message).collect();
    Request::Chat(Batch::new(messages).unwrap())
}

fn expected_response(v: &Value) -> Response {
    if let Some(keys) = v.get("keys") {
        return Response::Keys(hex::decode(keys.as_str().unwrap()).unwrap());
    }
    if let Some(code) = v.get("refused") {
        return Response::Refused(Refusal::from_code(code.as_u64().unwrap()).unwrap());
    }
    let acks = v["acks"].as_array().unwrap().iter().map(|ack| {
        let outcome = match Refusal::from_code(ack[1].as_u64().unwrap()) {
            None => Outcome::Stored,
            Some(refusal) => Outcome::Refused(refusal),
        };
        Ack { id: hex16(&ack[0]), outcome }
    });
    Response::Acks(acks.collect())
}

/// The stable name a vector uses for each error.
fn error_name(err: &DecodeError) -> &'static str {
    match err {
        DecodeError::Truncated(_) => "truncated",
        DecodeError::TrailingBytes(_) => "trailing-bytes",
        DecodeError::UnsupportedVersion(_) => "unsupported-version",
        DecodeError::UnknownKind(_) => "unknown-kind",
        DecodeError::UnexpectedType { .. } => "unexpected-type",
        DecodeError::NonCanonical { .. } => "non-canonical",
        DecodeError::TooLong { .. } => "too-long",
        DecodeError::InvalidUtf8 { .. } => "invalid-utf8",
        DecodeError::MissingField(_) => "missing-field",
        DecodeError::WrongArity { .. } => "wrong-arity",
        DecodeError::Invalid(_) => "invalid-value",
        _ => "other",
    }
}

#[test]
fn every_vector_decodes_and_encodes_as_the_spec_says() {
    let vectors = vectors();
    assert!(vectors.len() >= 20);
    for v in &vectors {
        let name = v["name"].as_str().unwrap();
        let payload = hex::decode(v["payload"].as_str().unwrap()).unwrap();
        let is_request = v["type"] == "request";
        match (v.get("value"), v.get("error")) {
            (Some(value), None) if is_request => {
                let expected = expected_request(value);
                assert_eq!(Request::decode(&payload).as_ref(), Ok(&expected), "{name}");
                assert_eq!(expected.encode(), payload, "{name}: encoding differs");
            }
            (Some(value), None) => {
                let expected = expected_response(value);
                assert_eq!(Response::decode(&payload).as_ref(), Ok(&expected), "{name}");
                assert_eq!(expected.encode(), payload, "{name}: encoding differs");
            }
            (None, Some(error)) => {
                let err = if is_request {
                    Request::decode(&payload).expect_err(name)
                } else {
                    Response::decode(&payload).expect_err(name)
                };
                assert_eq!(error_name(&err), error.as_str().unwrap(), "{name}: got {err}");
            }
            _ => panic!("{name}: a vector has a value or an error"),
        }
    }
}

#[test]
fn the_spec_walks_through_the_first_vector() {
    let spec = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../specs/wire.md"))
        .expect("specs/wire.md is readable");
    let spec_hex: String = spec.split_whitespace().collect();
    let first = vectors()[0]["payload"].as_str().unwrap().to_owned();
    assert!(spec_hex.contains(&first), "specs/wire.md must show the chat-one payload");
}
