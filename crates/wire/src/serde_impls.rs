//! `serde` support for the value types (feature `serde`).
//!
//! Human-readable formats get text: message ids as 32 hex digits and PeerIds in base58btc, as
//! libp2p prints them. Binary formats get byte strings. Deserializing applies the same checks as
//! the constructors, so a deserialized value is as valid as a constructed one.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::{MessageId, PeerIdBytes, Seq, Text, UnixMillis, Username};

impl Serialize for MessageId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() { s.collect_str(self) } else { s.serialize_bytes(&self.0) }
    }
}

impl<'de> Deserialize<'de> for MessageId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            s.parse().map_err(de::Error::custom)
        } else {
            let bytes = d.deserialize_bytes(BytesVisitor)?;
            bytes
                .try_into()
                .map(MessageId)
                .map_err(|_| de::Error::custom("message id must be 16 bytes"))
        }
    }
}

impl Serialize for PeerIdBytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&bs58::encode(self.as_bytes()).into_string())
        } else {
            s.serialize_bytes(self.as_bytes())
        }
    }
}

impl<'de> Deserialize<'de> for PeerIdBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes = if d.is_human_readable() {
            let s = String::deserialize(d)?;
            if s.len() > 2 * crate::MAX_PEER_ID_LEN {
                return Err(de::Error::custom("peer id too long"));
            }
            bs58::decode(&s).into_vec().map_err(|_| de::Error::custom("peer id is not base58"))?
        } else {
            d.deserialize_bytes(BytesVisitor)?
        };
        PeerIdBytes::new(&bytes).map_err(de::Error::custom)
    }
}

impl Serialize for Username {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Username {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Username::canonical(&s).map_err(de::Error::custom)
    }
}

impl Serialize for Text {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Text::new(&s).map_err(de::Error::custom)
    }
}

impl Serialize for Seq {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.get())
    }
}

impl<'de> Deserialize<'de> for Seq {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Seq::new(u64::deserialize(d)?).map_err(de::Error::custom)
    }
}

impl Serialize for UnixMillis {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for UnixMillis {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        u64::deserialize(d).map(UnixMillis)
    }
}

/// Accepts a byte string, or a sequence of at most 64 bytes (what some formats produce).
struct BytesVisitor;

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte string of at most 64 bytes")
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
        if v.len() > crate::MAX_PEER_ID_LEN {
            return Err(E::custom("byte string too long"));
        }
        Ok(v.to_vec())
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
        self.visit_bytes(&v)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
        let mut out = Vec::new();
        while let Some(b) = seq.next_element::<u8>()? {
            if out.len() == crate::MAX_PEER_ID_LEN {
                return Err(de::Error::custom("byte string too long"));
            }
            out.push(b);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct All {
        id: MessageId,
        peer: PeerIdBytes,
        name: Username,
        text: Text,
        seq: Seq,
        at: UnixMillis,
    }

    fn sample() -> All {
        All {
            id: MessageId([0xab; 16]),
            peer: PeerIdBytes::new(&[0, 36, 8, 1, 18, 32, 1, 2, 3]).unwrap(),
            name: Username::new("alice").unwrap(),
            text: Text::new("hi\nthere").unwrap(),
            seq: Seq::new(7).unwrap(),
            at: UnixMillis(5),
        }
    }

    #[test]
    fn json_uses_text_forms() {
        let json = serde_json::to_string(&sample()).unwrap();
        assert!(json.contains(&"ab".repeat(16)), "{json}");
        assert!(json.contains("\"name\":\"alice\""), "{json}");
        assert_eq!(serde_json::from_str::<All>(&json).unwrap(), sample());
    }

    #[test]
    fn cbor_uses_byte_strings() {
        let mut bytes = Vec::new();
        ciborium::into_writer(&sample(), &mut bytes).unwrap();
        assert!(bytes.windows(17).any(|w| w[0] == 0x50 && w[1..] == [0xab; 16]));
        assert_eq!(ciborium::from_reader::<All, _>(&bytes[..]).unwrap(), sample());
    }

    #[test]
    fn deserializing_checks_the_rules() {
        let bad = serde_json::to_string(&sample()).unwrap().replace("alice", "Al ice");
        assert!(serde_json::from_str::<All>(&bad).is_err());
        let bad = serde_json::to_string(&sample()).unwrap().replace("\"seq\":7", "\"seq\":0");
        assert!(serde_json::from_str::<All>(&bad).is_err());
    }
}
