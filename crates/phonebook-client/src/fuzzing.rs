//! Entry points for the fuzz targets in `fuzz/`.

use crate::{SignedDelete, SignedRecord};

/// Parses `data` as a record and as a deletion, as the server does with a request body, and
/// verifies whatever parses. Must not panic; a record that verifies must re-verify after a
/// round trip through JSON.
pub fn record_json(data: &[u8]) {
    if let Ok(record) = serde_json::from_slice::<SignedRecord>(data)
        && let Ok(verified) = record.verify()
    {
        let again: SignedRecord =
            serde_json::from_slice(&serde_json::to_vec(&record).expect("serializes"))
                .expect("a record re-parses");
        assert_eq!(again.verify().expect("still verifies"), verified);
    }
    if let Ok(deletion) = serde_json::from_slice::<SignedDelete>(data) {
        let _ = deletion.verify();
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let mut key = vec![0x00, 0x24, 0x08, 0x01, 0x12, 0x20];
        key.extend_from_slice(&[7; 32]);
        let owner =
            libp2p_identity::PeerId::from_bytes(&key).expect("a well-formed identity multihash");
        let _ = crate::parse_addr(text, &owner);
    }
}

#[cfg(test)]
mod tests {
    /// Replays every input checked in under `fuzz/corpus/phonebook_record`.
    #[test]
    fn replays_the_checked_in_corpus() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/corpus/phonebook_record");
        let mut replayed = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            super::record_json(&std::fs::read(entry.unwrap().path()).unwrap());
            replayed += 1;
        }
        assert!(replayed >= 3, "only {replayed} corpus inputs found");
    }
}
