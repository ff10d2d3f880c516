//! Entry points for the fuzz targets in `fuzz/`.

use crate::SealedKeyFile;

/// Parses `data` as a key file. Parsing must not panic, and whatever parses must serialize
/// back to exactly `data`. No key derivation runs: that is what makes fuzzing fast.
pub fn keyfile_parse(data: &[u8]) {
    if let Ok(file) = SealedKeyFile::parse(data) {
        assert_eq!(file.to_bytes(), data, "a parsed key file did not re-serialize to its input");
        let _ = file.public_key();
    }
}

#[cfg(test)]
mod tests {
    /// Replays every input checked in under `fuzz/corpus/keyfile_parse`.
    #[test]
    fn replays_the_checked_in_corpus() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/corpus/keyfile_parse");
        let mut replayed = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            super::keyfile_parse(&std::fs::read(entry.unwrap().path()).unwrap());
            replayed += 1;
        }
        assert!(replayed >= 2, "only {replayed} corpus inputs found");
    }
}
