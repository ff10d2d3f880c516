//! What the chat screen's tests share.

use tincan_store::{Contact, ContactKind, ConversationId};
use tincan_wire::{PeerIdBytes, UnixMillis, Username};

/// A contact named `name`, distinguished by `n` (its conversation id and PeerId).
pub fn contact(name: &str, n: u8, kind: ContactKind) -> Contact {
    Contact {
        conversation: ConversationId([n; 16]),
        kind,
        username: Username::new(name).unwrap(),
        peer_id: PeerIdBytes::new(&[0, 36, 8, 1, 18, 32, n]).unwrap(),
        first_seen: UnixMillis(0),
        verified: false,
        blocked: false,
        pending_peer_id: None,
        key_changes: Vec::new(),
        last_sent_seq: 0,
        next_expected_seq: 1,
        log_len: 0,
        unread: 0,
        addrs: Vec::new(),
        claim: tincan_store::Claim::Unchecked,
        rejected_keys: Vec::new(),
        request_bytes: 0,
        olm_keys: None,
        awaiting_peer_keys: false,
    }
}
