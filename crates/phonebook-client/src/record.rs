//! Signed records: what a user publishes, its canonical encoding, signing and verification
//! (`specs/phonebook.md` §2).

use std::net::IpAddr;

use libp2p_identity::PeerId;
use multiaddr::{Multiaddr, Protocol};
use serde::{Deserialize, Serialize};
use tincan_identity::{Identity, PublicKey, Signature};
use tincan_wire::{UnixMillis, Username};
use utoipa::ToSchema;

/// Most addresses in one record.
pub const MAX_ADDRS: usize = 8;
/// Longest address, in bytes of its text form.
pub const MAX_ADDR_LEN: usize = 256;

const RECORD_DOMAIN: &[u8] = b"tincan phonebook record v1\0";
const DELETE_DOMAIN: &[u8] = b"tincan phonebook delete v1\0";

/// A record as published: where a user can be reached, signed by the user's identity key.
///
/// The server checks it, and so does every client that looks it up: a server cannot forge or
/// alter one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignedRecord {
    /// The username, case-folded.
    #[schema(value_type = String, example = "alice", pattern = r"^[a-z0-9][a-z0-9_.-]{0,31}$")]
    pub username: String,
    /// The user's PeerId, base58 (`12D3KooW…`). Its embedded ed25519 key signs the record.
    #[schema(
        example = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN",
        pattern = r"^12D3KooW[1-9A-HJ-NP-Za-km-z]{44}$"
    )]
    pub peer_id: String,
    /// Where to reach the user: up to 8 multiaddrs in canonical text form
    /// (`specs/phonebook.md` §2.3), each at most 256 bytes.
    #[schema(
        example = json!(["/ip4/127.0.0.1/tcp/4001", "/ip4/127.0.0.1/udp/4001/quic-v1"]),
        max_items = 8,
        value_type = Vec<AddrText>
    )]
    pub addrs: Vec<String>,
    /// Milliseconds since the Unix epoch by the signer's clock, above the last record's or
    /// deletion's and at most the server's clock skew ahead of its clock.
    pub seq: u64,
    /// When the record stops counting as presence, in milliseconds since the Unix epoch.
    pub expires_at: u64,
    /// Ed25519 signature over the canonical encoding, 128 hex digits.
    #[schema(pattern = r"^[0-9a-fA-F]{128}$")]
    pub signature: String,
    /// Record version 2 (`specs/phonebook.md` §2.5): the user's signed Olm keys
    /// (`specs/sealed.md` §2), in hex, at most 512 digits. Not covered by `signature`: the keys
    /// record carries its own, by the same identity. Sent only to a phonebook whose `GET /info`
    /// says `olm_keys`; a phonebook serves it as the peer view's `olm_keys`, never inside
    /// `record`, so that version-1 readers keep reading records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^([0-9a-fA-F]{2}){1,256}$")]
    pub olm_keys: Option<String>,
}

/// One address of a record, for the OpenAPI description only: a string in the shape of
/// `specs/phonebook.md` §2.3. (Its `maxLength` counts characters; the server's limit is 256
/// bytes, the same for the ASCII that canonical addresses are, but for DNS names.)
pub struct AddrText;

impl utoipa::PartialSchema for AddrText {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .max_length(Some(MAX_ADDR_LEN))
            .pattern(Some(
                r"^/(ip4/(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3}|ip6/[0-9a-f:.]+|dns[46]?/[^/]+)/(tcp/([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])|udp/([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])/quic-v1)(/p2p/[1-9A-HJ-NP-Za-km-z]+(/p2p-circuit(/p2p/[1-9A-HJ-NP-Za-km-z]+)?)?)?$",
            ))
            .into()
    }
}

impl ToSchema for AddrText {}

/// A request to take a record down, signed like a record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignedDelete {
    /// The username.
    #[schema(pattern = r"^[a-z0-9][a-z0-9_.-]{0,31}$")]
    pub username: String,
    /// The PeerId bound to it.
    #[schema(pattern = r"^12D3KooW[1-9A-HJ-NP-Za-km-z]{44}$")]
    pub peer_id: String,
    /// Milliseconds since the epoch by the signer's clock, above the last record's or
    /// deletion's, and at most the server's clock skew ahead of its clock.
    pub seq: u64,
    /// Also give up the username, so that anyone may register it again.
    pub release: bool,
    /// Ed25519 signature over the canonical encoding, 128 hex digits.
    #[schema(pattern = r"^[0-9a-fA-F]{128}$")]
    pub signature: String,
}

/// A record whose signature, PeerId and fields were checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The username.
    pub username: Username,
    /// The PeerId that signed it.
    pub peer_id: PeerId,
    /// The addresses, validated.
    pub addrs: Vec<Multiaddr>,
    /// The sequence number.
    pub seq: u64,
    /// Expiry, ms since the epoch.
    pub expires_at: UnixMillis,
    /// The signed Olm keys it carries (record version 2), checked to be signed by the
    /// record's own identity.
    pub olm_keys: Option<Vec<u8>>,
    /// The record as signed, to pass on unchanged.
    pub signed: SignedRecord,
}

/// Why a record or deletion was refused. Each maps to one stable error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
// Exhaustive on purpose: the server maps each kind to a stable error code (`specs/phonebook.md`),
// and a new kind must get one.
pub enum RecordError {
    /// The username breaks the rules of `specs/wire.md` §4.2.
    #[error("invalid username: {0}")]
    InvalidUsername(String),
    /// The PeerId does not parse, or does not embed an ed25519 key.
    #[error("invalid peer id: {0}")]
    InvalidPeerId(&'static str),
    /// The signature is not 64 bytes of hex.
    #[error("malformed signature")]
    MalformedSignature,
    /// The signature does not verify under the PeerId's key.
    #[error("the signature does not match the record and the peer id")]
    BadSignature,
    /// More than [`MAX_ADDRS`] addresses.
    #[error("too many addresses: {0}, at most 8")]
    TooManyAddrs(usize),
    /// The Olm keys are not hex, not a keys record, or not signed by the record's identity.
    #[error("invalid olm keys: {0}")]
    InvalidKeys(String),
    /// An address that is not one tincan can dial.
    #[error("invalid address {index}: {reason}")]
    InvalidAddr {
        /// Which address, from 0.
        index: usize,
        /// Why.
        reason: &'static str,
    },
}

impl SignedRecord {
    /// Signs a record for `identity`.
    pub fn sign(
        identity: &Identity,
        username: &Username,
        addrs: &[Multiaddr],
        seq: u64,
        expires_at: UnixMillis,
    ) -> SignedRecord {
        let peer_id = identity.peer_id();
        let addrs: Vec<String> = addrs.iter().map(Multiaddr::to_string).collect();
        let payload = record_payload(username.as_str(), &peer_id, &addrs, seq, expires_at.0);
        SignedRecord {
            username: username.to_string(),
            peer_id: peer_id.to_base58(),
            addrs,
            seq,
            expires_at: expires_at.0,
            signature: hex::encode(identity.sign(&payload).0),
            olm_keys: None,
        }
    }

    /// The same record, carrying the signed Olm keys `olm_keys` (record version 2).
    pub fn with_olm_keys(self, olm_keys: &[u8]) -> SignedRecord {
        SignedRecord { olm_keys: Some(hex::encode(olm_keys)), ..self }
    }

    /// The record as version-1 readers take it: without the Olm keys.
    pub fn without_olm_keys(&self) -> SignedRecord {
        SignedRecord { olm_keys: None, ..self.clone() }
    }

    /// Checks everything a record must satisfy, except freshness and sequence, which depend on
    /// the server's clock and state.
    pub fn verify(&self) -> Result<Record, RecordError> {
        let username = Username::canonical(&self.username)
            .map_err(|e| RecordError::InvalidUsername(e.reason().to_owned()))?;
        let (peer_id, key) = parse_peer(&self.peer_id)?;
        if self.addrs.len() > MAX_ADDRS {
            return Err(RecordError::TooManyAddrs(self.addrs.len()));
        }
        let mut addrs = Vec::with_capacity(self.addrs.len());
        for (index, text) in self.addrs.iter().enumerate() {
            addrs.push(
                parse_addr(text, &peer_id)
                    .map_err(|reason| RecordError::InvalidAddr { index, reason })?,
            );
        }
        let signature = parse_signature(&self.signature)?;
        let payload =
            record_payload(&self.username, &peer_id, &self.addrs, self.seq, self.expires_at);
        key.verify(&payload, &signature).map_err(|_| RecordError::BadSignature)?;
        let olm_keys = self.olm_keys.as_deref().map(|text| verify_keys(text, &key)).transpose()?;
        Ok(Record {
            username,
            peer_id,
            addrs,
            seq: self.seq,
            expires_at: UnixMillis(self.expires_at),
            olm_keys,
            signed: self.clone(),
        })
    }
}

impl SignedDelete {
    /// Signs a deletion for `identity`.
    pub fn sign(identity: &Identity, username: &Username, seq: u64, release: bool) -> SignedDelete {
        let peer_id = identity.peer_id();
        let payload = delete_payload(username.as_str(), &peer_id, seq, release);
        SignedDelete {
            username: username.to_string(),
            peer_id: peer_id.to_base58(),
            seq,
            release,
            signature: hex::encode(identity.sign(&payload).0),
        }
    }

    /// Checks the username, the PeerId and the signature; returns both.
    pub fn verify(&self) -> Result<(Username, PeerId), RecordError> {
        let username = Username::canonical(&self.username)
            .map_err(|e| RecordError::InvalidUsername(e.reason().to_owned()))?;
        let (peer_id, key) = parse_peer(&self.peer_id)?;
        let signature = parse_signature(&self.signature)?;
        let payload = delete_payload(&self.username, &peer_id, self.seq, self.release);
        key.verify(&payload, &signature).map_err(|_| RecordError::BadSignature)?;
        Ok((username, peer_id))
    }
}

/// The bytes a record's signature covers (`specs/phonebook.md` §2.2).
pub fn record_payload(
    username: &str,
    peer_id: &PeerId,
    addrs: &[String],
    seq: u64,
    expires_at: u64,
) -> Vec<u8> {
    let peer = peer_id.to_bytes();
    let mut out = Vec::with_capacity(
        RECORD_DOMAIN.len() + 64 + addrs.iter().map(|a| a.len() + 2).sum::<usize>(),
    );
    out.extend_from_slice(RECORD_DOMAIN);
    push_short(&mut out, username.as_bytes());
    push_short(&mut out, &peer);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&expires_at.to_be_bytes());
    out.push(u8::try_from(addrs.len()).unwrap_or(u8::MAX));
    for addr in addrs {
        out.extend_from_slice(&u16::try_from(addr.len()).unwrap_or(u16::MAX).to_be_bytes());
        out.extend_from_slice(addr.as_bytes());
    }
    out
}

/// The bytes a deletion's signature covers.
pub fn delete_payload(username: &str, peer_id: &PeerId, seq: u64, release: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(DELETE_DOMAIN.len() + 80);
    out.extend_from_slice(DELETE_DOMAIN);
    push_short(&mut out, username.as_bytes());
    push_short(&mut out, &peer_id.to_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out.push(u8::from(release));
    out
}

/// Appends a length byte and the bytes. Callers pass at most 255 bytes (usernames are at most
/// 32, PeerIds at most 64); a longer input would not verify anyway.
fn push_short(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(u8::try_from(bytes.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(bytes);
}

fn parse_peer(text: &str) -> Result<(PeerId, PublicKey), RecordError> {
    if text.len() > 128 {
        return Err(RecordError::InvalidPeerId("too long"));
    }
    let peer_id: PeerId =
        text.parse().map_err(|_| RecordError::InvalidPeerId("not a base58 PeerId"))?;
    let key = PublicKey::from_peer_id(&peer_id)
        .ok_or(RecordError::InvalidPeerId("not an ed25519 PeerId"))?;
    Ok((peer_id, key))
}

/// Checks a record's Olm keys: hex of a keys record signed by the record's own identity
/// (`specs/sealed.md` §2). Returns the record's bytes.
fn verify_keys(text: &str, key: &PublicKey) -> Result<Vec<u8>, RecordError> {
    if text.len() > 2 * tincan_seal::MAX_SIGNED_KEYS_LEN {
        return Err(RecordError::InvalidKeys("longer than 512 hex digits".into()));
    }
    let bytes = hex::decode(text).map_err(|_| RecordError::InvalidKeys("not hex".into()))?;
    tincan_seal::SignedOlmKeys::decode(&bytes)
        .and_then(|record| record.verify(key))
        .map_err(|e| RecordError::InvalidKeys(e.to_string()))?;
    Ok(bytes)
}

fn parse_signature(text: &str) -> Result<Signature, RecordError> {
    if text.len() != 128 {
        return Err(RecordError::MalformedSignature);
    }
    let bytes: [u8; 64] = hex::decode(text)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(RecordError::MalformedSignature)?;
    Ok(Signature(bytes))
}

/// Parses and checks one address: canonical text, a dialable shape, and any `/p2p/` the
/// record's own PeerId (`specs/phonebook.md` §2.3).
pub fn parse_addr(text: &str, owner: &PeerId) -> Result<Multiaddr, &'static str> {
    if text.len() > MAX_ADDR_LEN {
        return Err("longer than 256 bytes");
    }
    let addr: Multiaddr = text.parse().map_err(|_| "not a multiaddr")?;
    if addr.to_string() != text {
        return Err("not in canonical form");
    }
    let mut protocols = addr.iter().peekable();
    match protocols.next() {
        Some(Protocol::Ip4(ip)) => check_ip(IpAddr::V4(ip))?,
        Some(Protocol::Ip6(ip)) => check_ip(IpAddr::V6(ip))?,
        Some(Protocol::Dns(_) | Protocol::Dns4(_) | Protocol::Dns6(_)) => {}
        _ => return Err("must start with /ip4, /ip6 or /dns"),
    }
    match protocols.next() {
        Some(Protocol::Tcp(port)) => check_port(port)?,
        Some(Protocol::Udp(port)) => {
            check_port(port)?;
            if protocols.next() != Some(Protocol::QuicV1) {
                return Err("udp must be followed by /quic-v1");
            }
        }
        _ => return Err("the host must be followed by /tcp or /udp"),
    }
    // What may follow: nothing; our own /p2p; or a relay's /p2p, /p2p-circuit and optionally
    // our own /p2p (a relayed address).
    match protocols.next() {
        None => Ok(addr),
        Some(Protocol::P2p(relay)) if protocols.peek() == Some(&Protocol::P2pCircuit) => {
            if relay == *owner {
                return Err("a relay cannot be the record's own peer");
            }
            protocols.next();
            match (protocols.next(), protocols.next()) {
                (None, _) => Ok(addr),
                (Some(Protocol::P2p(peer)), None) if peer == *owner => Ok(addr),
                _ => Err("/p2p-circuit may only be followed by the record's own /p2p"),
            }
        }
        Some(Protocol::P2p(peer)) if peer == *owner && protocols.next().is_none() => Ok(addr),
        Some(Protocol::P2p(_)) => Err("/p2p names another peer"),
        Some(_) => Err("unsupported protocol after the transport"),
    }
}

fn check_ip(ip: IpAddr) -> Result<(), &'static str> {
    if ip.is_unspecified() {
        return Err("unspecified address (0.0.0.0 or ::)");
    }
    if ip.is_multicast() {
        return Err("multicast address");
    }
    if let IpAddr::V4(v4) = ip
        && v4.is_broadcast()
    {
        return Err("broadcast address");
    }
    Ok(())
}

fn check_port(port: u16) -> Result<(), &'static str> {
    if port == 0 { Err("port 0") } else { Ok(()) }
}

/// A readable view of one address, as the original phonebook showed: IP (or host) and port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Endpoint {
    /// The address.
    pub multiaddr: String,
    /// The IP address or host name.
    pub ip: String,
    /// The port.
    pub port: u16,
    /// `tcp` or `quic-v1`.
    pub transport: String,
    /// Reached through a relay.
    pub relayed: bool,
}

impl Endpoint {
    /// The readable view of a validated address.
    pub fn of(addr: &Multiaddr) -> Option<Endpoint> {
        let mut ip = None;
        let mut port = None;
        let mut transport = None;
        let mut relayed = false;
        for protocol in addr.iter() {
            match protocol {
                Protocol::Ip4(a) if ip.is_none() => ip = Some(a.to_string()),
                Protocol::Ip6(a) if ip.is_none() => ip = Some(a.to_string()),
                Protocol::Dns(h) | Protocol::Dns4(h) | Protocol::Dns6(h) if ip.is_none() => {
                    ip = Some(h.to_string())
                }
                Protocol::Tcp(p) if port.is_none() => {
                    port = Some(p);
                    transport = Some("tcp");
                }
                Protocol::Udp(p) if port.is_none() => {
                    port = Some(p);
                    transport = Some("quic-v1");
                }
                Protocol::P2pCircuit => relayed = true,
                _ => {}
            }
        }
        Some(Endpoint {
            multiaddr: addr.to_string(),
            ip: ip?,
            port: port?,
            transport: transport?.to_owned(),
            relayed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> Identity {
        Identity::generate().unwrap()
    }

    #[test]
    fn a_signed_record_verifies_and_any_change_breaks_it() {
        let id = me();
        let addrs: Vec<Multiaddr> = vec!["/ip4/127.0.0.1/tcp/4001".parse().unwrap()];
        let signed =
            SignedRecord::sign(&id, &Username::new("alice").unwrap(), &addrs, 7, UnixMillis(99));
        let record = signed.verify().unwrap();
        assert_eq!(record.peer_id, id.peer_id());
        assert_eq!(record.addrs, addrs);
        for tamper in [
            |r: &mut SignedRecord| r.seq += 1,
            |r: &mut SignedRecord| r.expires_at += 1,
            |r: &mut SignedRecord| r.addrs[0] = "/ip4/10.0.0.1/tcp/4001".into(),
            |r: &mut SignedRecord| r.username = "mallory".into(),
            |r: &mut SignedRecord| r.addrs.push("/ip4/127.0.0.1/tcp/4002".into()),
        ] {
            let mut forged = signed.clone();
            tamper(&mut forged);
            assert_eq!(forged.verify().err(), Some(RecordError::BadSignature), "{forged:?}");
        }
        // Another key's PeerId with this signature.
        let mut other = signed.clone();
        other.peer_id = me().peer_id().to_base58();
        assert_eq!(other.verify().err(), Some(RecordError::BadSignature));
    }

    #[test]
    fn addresses_are_checked() {
        let owner = me().peer_id();
        let relay = me().peer_id();
        let good = [
            "/ip4/127.0.0.1/tcp/4001".to_owned(),
            "/ip6/::1/udp/4001/quic-v1".to_owned(),
            "/dns4/example.org/tcp/443".to_owned(),
            format!("/ip4/198.18.0.1/tcp/4001/p2p/{owner}"),
            format!("/ip4/198.18.0.1/tcp/4001/p2p/{relay}/p2p-circuit"),
            format!("/ip4/198.18.0.1/udp/4001/quic-v1/p2p/{relay}/p2p-circuit/p2p/{owner}"),
        ];
        for addr in good {
            assert!(parse_addr(&addr, &owner).is_ok(), "{addr}");
        }
        let bad = [
            "/ip4/0.0.0.0/tcp/4001".to_owned(),
            "/ip4/224.0.0.1/tcp/4001".to_owned(),
            "/ip4/255.255.255.255/tcp/4001".to_owned(),
            "/ip4/127.0.0.1/tcp/0".to_owned(),
            "/ip4/127.0.0.1/udp/4001".to_owned(),
            "/ip4/127.0.0.1".to_owned(),
            "/tcp/4001".to_owned(),
            "/ip4/127.0.0.1/tcp/4001/ws".to_owned(),
            "/unix/tmp/sock".to_owned(),
            "not an address".to_owned(),
            "/ip4/127.000.0.1/tcp/4001".to_owned(),
            format!("/ip4/127.0.0.1/tcp/4001/p2p/{relay}"),
            format!("/ip4/198.18.0.1/tcp/4001/p2p/{owner}/p2p-circuit"),
            format!("/ip4/198.18.0.1/tcp/4001/p2p/{relay}/p2p-circuit/p2p/{relay}"),
            format!("/ip4/198.18.0.1/tcp/4001/p2p/{relay}/p2p-circuit/ip4/1.2.3.4/tcp/1"),
            format!("/ip4/127.0.0.1/tcp/4001/{}", "x".repeat(300)),
        ];
        for addr in bad {
            assert!(parse_addr(&addr, &owner).is_err(), "{addr}");
        }
    }

    #[test]
    fn endpoints_show_ip_and_port() {
        let addr: Multiaddr = "/ip4/127.0.0.1/udp/5000/quic-v1".parse().unwrap();
        let e = Endpoint::of(&addr).unwrap();
        assert_eq!(
            (e.ip.as_str(), e.port, e.transport.as_str(), e.relayed),
            ("127.0.0.1", 5000, "quic-v1", false)
        );
    }
}
