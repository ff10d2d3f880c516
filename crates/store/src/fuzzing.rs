//! Entry points for the fuzz targets in `fuzz/`.

use tincan_identity::StoreRootKey;

use crate::crypto::Keys;
use crate::tables::Table;

/// Treats `data` as what a hostile disk could hold: a sealed value (for each table), and a
/// decrypted record of each kind. Nothing may panic, and nothing forged may open.
pub fn sealed_value(data: &[u8]) {
    let keys = Keys::derive(&StoreRootKey::from_bytes([3; 32]));
    for table in Table::ALL {
        assert!(keys.open(table, b"key", data).is_none(), "forged input opened as a sealed value");
    }
    let _ = ciborium::from_reader::<crate::LogEntry, _>(data);
    let _ = ciborium::from_reader::<crate::Contact, _>(data);
    let _ = ciborium::from_reader::<crate::ops::OutboxRow, _>(data);
    let _ = ciborium::from_reader::<u64, _>(data);
    // A sealed value that opens must give back what was sealed.
    if data.len() <= 9000 {
        let sealed = keys.seal(Table::Log, b"key", data);
        assert_eq!(
            keys.open(Table::Log, b"key", &sealed).as_deref().map(Vec::as_slice),
            Some(data)
        );
    }
}

#[cfg(test)]
mod tests {
    /// Replays every input checked in under `fuzz/corpus/store_value`.
    #[test]
    fn replays_the_checked_in_corpus() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/corpus/store_value");
        let mut replayed = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            super::sealed_value(&std::fs::read(entry.unwrap().path()).unwrap());
            replayed += 1;
        }
        assert!(replayed >= 3, "only {replayed} corpus inputs found");
    }
}
