//! The API's names for the store's and node's values (`specs/rpc.md` §3), both ways: what the
//! daemon says, and what a client reads back. One place, so that the two directions cannot
//! drift apart.

use libp2p_identity::PeerId;
use tincan_api as api;
use tincan_node::{NatReport, Reachability, RelayState};
use tincan_store::{Claim, Status};
use tincan_wire::{PeerIdBytes, UnixMillis};

/// Characters of a PeerId's end that name a contact (`…Ab12Cd34`): [`api::Contact::key_id`].
pub const KEY_ID_LEN: usize = 8;

/// The end of a PeerId that names a contact: `…Ab12Cd34`.
pub fn key_id(peer: &PeerIdBytes) -> String {
    let text = base58(peer);
    let start = text.len().saturating_sub(KEY_ID_LEN);
    format!("…{}", &text[start..])
}

/// A PeerId in base58, or in hex if its bytes do not parse as one.
pub fn base58(peer: &PeerIdBytes) -> String {
    PeerId::from_bytes(peer.as_bytes())
        .map(|p| p.to_base58())
        .unwrap_or_else(|_| peer.as_bytes().iter().map(|b| format!("{b:02x}")).collect())
}

/// A claim check's name: `confirmed`, `other-key`, `unregistered` or `unchecked`.
pub fn claim_name(claim: Claim) -> &'static str {
    match claim {
        Claim::Confirmed => "confirmed",
        Claim::OtherKey => "other-key",
        Claim::Unregistered => "unregistered",
        _ => "unchecked",
    }
}

/// The claim a name says; anything else is `unchecked`.
pub fn claim_of(name: &str) -> Claim {
    match name {
        "confirmed" => Claim::Confirmed,
        "other-key" => Claim::OtherKey,
        "unregistered" => Claim::Unregistered,
        _ => Claim::Unchecked,
    }
}

/// The status an outgoing message's `status` and `refusal` say; `None` for `received` or a
/// name this version does not know. A delivery's time is not carried: it reads as 0.
pub fn status_of(name: &str, refusal: Option<&api::Refusal>) -> Option<Status> {
    Some(match name {
        "queued" => Status::Queued,
        "sent" => Status::Sent,
        "delivered" => Status::Delivered { at: UnixMillis(0) },
        "failed" => Status::Failed {
            code: refusal.map_or(0, |r| r.code),
            reason: refusal.map(|r| r.reason.clone()).unwrap_or_default(),
        },
        _ => return None,
    })
}

/// The node's NAT report as `nat` answers it.
pub fn nat(report: &NatReport) -> api::Nat {
    let (reachability, public_addr) = match &report.reachability {
        Reachability::Public(addr) => ("public", Some(addr.to_string())),
        Reachability::Private => ("private", None),
        _ => ("unknown", None),
    };
    api::Nat {
        reachability: reachability.to_owned(),
        public_addr,
        confidence: u32::try_from(report.confidence).unwrap_or(u32::MAX),
        relay: report.relay.as_ref().map(|r| api::RelayState {
            peer_id: r.peer_id.to_base58(),
            addr: r.addr.to_string(),
            reserved: r.reserved,
            error: r.last_error.clone(),
        }),
    }
}

/// What [`nat`] said, read back; `None` if a field does not parse.
pub fn nat_report(nat: &api::Nat) -> Option<NatReport> {
    let reachability = match (nat.reachability.as_str(), &nat.public_addr) {
        ("public", Some(addr)) => Reachability::Public(addr.parse().ok()?),
        ("private", _) => Reachability::Private,
        ("unknown", _) => Reachability::Unknown,
        _ => return None,
    };
    let relay = match &nat.relay {
        Some(r) => Some(RelayState {
            peer_id: r.peer_id.parse().ok()?,
            addr: r.addr.parse().ok()?,
            reserved: r.reserved,
            last_error: r.error.clone(),
        }),
        None => None,
    };
    let confidence = usize::try_from(nat.confidence).ok()?;
    Some(NatReport { reachability, confidence, relay })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_back_as_what_they_name() {
        for claim in [Claim::Confirmed, Claim::OtherKey, Claim::Unregistered, Claim::Unchecked] {
            assert_eq!(claim_of(claim_name(claim)), claim);
        }
        let refusal = api::Refusal { code: 7, reason: "blocked".into() };
        for status in [
            Status::Queued,
            Status::Sent,
            Status::Delivered { at: UnixMillis(0) },
            Status::Failed { code: 7, reason: "blocked".into() },
        ] {
            assert_eq!(status_of(status.name(), Some(&refusal)), Some(status));
        }
        assert_eq!(status_of("received", None), None);
        let peer = PeerId::random();
        let report = NatReport {
            reachability: Reachability::Public("/ip4/198.18.0.1/tcp/4001".parse().unwrap()),
            confidence: 3,
            relay: Some(RelayState {
                peer_id: peer,
                addr: "/ip4/198.18.0.1/tcp/4002".parse().unwrap(),
                reserved: true,
                last_error: None,
            }),
        };
        assert_eq!(nat_report(&nat(&report)), Some(report));
        let id = key_id(&PeerIdBytes::new(&peer.to_bytes()).unwrap());
        assert!(peer.to_base58().ends_with(id.trim_start_matches('…')));
        assert_eq!(id.chars().count(), KEY_ID_LEN + 1);
    }
}
