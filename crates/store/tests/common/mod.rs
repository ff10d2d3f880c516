//! Helpers shared by the store's integration tests.

#![allow(dead_code, clippy::unwrap_used)] // Each test file uses a different subset.

use std::path::Path;

use tincan_identity::StoreRootKey;
use tincan_store::*;
use tincan_wire::{MessageId, PeerIdBytes, Seq, Text, Username};

pub fn root() -> StoreRootKey {
    StoreRootKey::from_bytes([77; 32])
}

pub fn name(s: &str) -> Username {
    Username::new(s).unwrap()
}

pub fn peer(n: u8) -> PeerIdBytes {
    PeerIdBytes::new(&[0, 36, 8, 1, 18, 32, n, n, n, n, n, n, n, n]).unwrap()
}

pub fn text(s: &str) -> Text {
    Text::new(s).unwrap()
}

pub fn incoming(id: u8, seq: u64, body: &str) -> Incoming {
    Incoming {
        id: MessageId([id; 16]),
        seq: Seq::new(seq).unwrap(),
        sent_at: UnixMillis(seq),
        from: name("bob"),
        text: text(body),
    }
}

/// Everything readable in a store, to compare before and after.
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    pub contacts: Vec<Contact>,
    pub logs: Vec<Vec<LogEntry>>,
    pub outboxes: Vec<Vec<OutboxEntry>>,
    pub setting: Option<Vec<u8>>,
}

pub async fn snapshot(store: &Store) -> Result<Snapshot, StoreError> {
    let contacts = store.contacts().await?;
    let mut logs = Vec::new();
    let mut outboxes = Vec::new();
    for c in &contacts {
        logs.push(store.history(c.conversation, None, usize::MAX).await?);
        outboxes.push(store.outbox(c.conversation, usize::MAX).await?);
    }
    Ok(Snapshot { contacts, logs, outboxes, setting: store.setting("note").await? })
}

/// Opens the store at `path` and reads everything in it.
pub async fn read_all(path: &Path) -> Result<Snapshot, String> {
    let store = Store::open(path, &root()).map_err(|e| format!("open: {e}"))?;
    let result = snapshot(&store).await.map_err(|e| format!("read: {e}"));
    store.close().await;
    result
}
