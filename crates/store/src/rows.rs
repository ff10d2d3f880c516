//! Reading and writing sealed rows, and the keys of each table (`specs/store.md` §2).

use redb::{ReadableTable, Table as RedbTable};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tincan_wire::{MessageId, PeerIdBytes, Seq, Username};

use crate::crypto::Keys;
use crate::tables::Table;
use crate::{ConversationId, StoreError};

/// Decodes the sealed `value` of `key` in `table`.
pub(crate) fn decode<T: DeserializeOwned>(
    keys: &Keys,
    table: Table,
    key: &[u8],
    value: &[u8],
) -> Result<T, StoreError> {
    let corrupted = || StoreError::Corrupted { table: table.purpose() };
    let plain = keys.open(table, key, value).ok_or_else(corrupted)?;
    ciborium::from_reader(&plain[..]).map_err(|_| corrupted())
}

/// Seals `value` as the value of `key` in `table`.
pub(crate) fn encode<T: Serialize>(keys: &Keys, table: Table, key: &[u8], value: &T) -> Vec<u8> {
    keys.seal_with(table, key, |out| {
        ciborium::into_writer(value, out).expect("serializing a record into memory cannot fail")
    })
}

/// Reads and decodes the row `key` of `table`, if there is one.
pub(crate) fn get<T: DeserializeOwned>(
    keys: &Keys,
    handle: &impl ReadableTable<&'static [u8], &'static [u8]>,
    table: Table,
    key: &[u8],
) -> Result<Option<T>, StoreError> {
    match handle.get(key).map_err(StoreError::storage)? {
        None => Ok(None),
        Some(guard) => decode(keys, table, key, guard.value()).map(Some),
    }
}

/// Seals and writes `value` as the row `key` of `table`.
pub(crate) fn put<T: Serialize>(
    keys: &Keys,
    handle: &mut RedbTable<'_, &'static [u8], &'static [u8]>,
    table: Table,
    key: &[u8],
    value: &T,
) -> Result<(), StoreError> {
    let sealed = encode(keys, table, key, value);
    handle.insert(key, sealed.as_slice()).map_err(StoreError::storage)?;
    Ok(())
}

/// Decodes every row of `table` whose key lies in `range`, in key order.
pub(crate) fn scan<T: DeserializeOwned>(
    keys: &Keys,
    handle: &impl ReadableTable<&'static [u8], &'static [u8]>,
    table: Table,
    range: std::ops::Range<&[u8]>,
    limit: usize,
) -> Result<Vec<T>, StoreError> {
    let mut out = Vec::new();
    for row in handle.range::<&[u8]>(range).map_err(StoreError::storage)? {
        if out.len() == limit {
            break;
        }
        let (k, v) = row.map_err(StoreError::storage)?;
        out.push(decode(keys, table, k.value(), v.value())?);
    }
    Ok(out)
}

/// `conversation ‖ n` as 24 bytes, `n` big-endian so keys sort by `n`.
pub(crate) fn conv_key(conversation: &ConversationId, n: u64) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..16].copy_from_slice(&conversation.0);
    key[16..].copy_from_slice(&n.to_be_bytes());
    key
}

/// The key range of every `conversation ‖ n` row (n below `u64::MAX`, which positions and
/// sequence numbers never reach).
pub(crate) fn conv_range(conversation: &ConversationId) -> ([u8; 24], [u8; 24]) {
    (conv_key(conversation, 0), conv_key(conversation, u64::MAX))
}

pub(crate) fn log_key(conversation: &ConversationId, position: u64) -> [u8; 24] {
    conv_key(conversation, position)
}

pub(crate) fn outbox_key(conversation: &ConversationId, seq: Seq) -> [u8; 24] {
    conv_key(conversation, seq.get())
}

pub(crate) fn name_key(keys: &Keys, name: &Username) -> [u8; 32] {
    keys.hash_key(Table::Names, &[name.as_str().as_bytes()])
}

pub(crate) fn peer_key(keys: &Keys, peer: &PeerIdBytes) -> [u8; 32] {
    keys.hash_key(Table::Peers, &[peer.as_bytes()])
}

pub(crate) fn id_key(keys: &Keys, conversation: &ConversationId, id: &MessageId) -> [u8; 32] {
    keys.hash_key(Table::Ids, &[&conversation.0, id.as_bytes()])
}

pub(crate) fn setting_key(keys: &Keys, name: &str) -> [u8; 32] {
    keys.hash_key(Table::Settings, &[name.as_bytes()])
}
