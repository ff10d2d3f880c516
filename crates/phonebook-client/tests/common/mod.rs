//! What the client's tests share: identities, names, records.

#![allow(dead_code, clippy::unwrap_used)] // Each test file uses a different subset.

use tincan_identity::Identity;
use tincan_phonebook_client::SignedRecord;
pub use tincan_wire::UnixMillis;
use tincan_wire::Username;

pub fn now() -> UnixMillis {
    UnixMillis(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
            as u64,
    )
}

pub fn name(s: &str) -> Username {
    Username::new(s).unwrap()
}

pub fn identity() -> Identity {
    Identity::generate().unwrap()
}

pub fn addrs() -> Vec<multiaddr::Multiaddr> {
    vec![
        "/ip4/127.0.0.1/tcp/4001".parse().unwrap(),
        "/ip4/127.0.0.1/udp/4001/quic-v1".parse().unwrap(),
    ]
}

/// A record valid for `ttl_ms` from now, with sequence number `seq`.
pub fn record(id: &Identity, user: &str, seq: u64, ttl_ms: u64) -> SignedRecord {
    SignedRecord::sign(id, &name(user), &addrs(), seq, UnixMillis(now().0 + ttl_ms))
}
