//! Sealing of values and hashing of keys (`specs/store.md` §3).

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
use tincan_identity::StoreRootKey;
use zeroize::Zeroizing;

use crate::tables::Table;

/// Format byte of a sealed value.
const SEALED_V1: u8 = 1;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// Format byte and nonce.
const HEADER_LEN: usize = 1 + NONCE_LEN;
/// Associated-data prefix: domain separation from every other use of these keys.
const AAD_PREFIX: &[u8] = b"tincan-store/v1";

/// Padded plaintext sizes: 64 × 2^k and 96 × 2^k, so consecutive buckets differ by at most
/// 1.5×. A record is padded to the smallest bucket that holds it and its padding marker; past
/// the last bucket, to the next multiple of it. Within a bucket, lengths are indistinguishable.
pub(crate) const BUCKETS: [usize; 15] =
    [64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096, 6144, 8192];

/// The keys of one store, all derived from the identity's store root key.
pub(crate) struct Keys {
    values: Vec<XChaCha20Poly1305>,
    key_hashes: Vec<Zeroizing<[u8; 32]>>,
    /// The key of vodozemac's pickles inside the Olm table's sealed values
    /// (`specs/sealed.md` §7).
    pub(crate) pickle: tincan_seal::PickleKey,
}

/// The derivation context of the pickle key (`specs/store.md` §3).
pub(crate) const PICKLE_CONTEXT: &str = "tincan olm pickles v1";

impl Keys {
    pub(crate) fn derive(root: &StoreRootKey) -> Keys {
        let mut values = Vec::with_capacity(Table::ALL.len());
        let mut key_hashes = Vec::with_capacity(Table::ALL.len());
        for table in Table::ALL {
            let value_key =
                root.derive_key(&format!("tincan store v1 table {} values", table.name()));
            values.push(XChaCha20Poly1305::new(value_key.as_ref().into()));
            key_hashes
                .push(root.derive_key(&format!("tincan store v1 table {} keys", table.name())));
        }
        let pickle = tincan_seal::PickleKey::from_bytes(*root.derive_key(PICKLE_CONTEXT));
        Keys { values, key_hashes, pickle }
    }

    /// The keyed hash under which `parts` (concatenated) is stored in `table`.
    pub(crate) fn hash_key(&self, table: Table, parts: &[&[u8]]) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new_keyed(&self.key_hashes[table as usize]);
        for part in parts {
            hasher.update(part);
        }
        *hasher.finalize().as_bytes()
    }

    /// Seals a value written by `write` as the value of `key` in `table`.
    ///
    /// The value is written straight into the output buffer after the header, padded and
    /// encrypted in place: one allocation per sealed value, and the plaintext never exists
    /// anywhere else.
    pub(crate) fn seal_with(
        &self,
        table: Table,
        key: &[u8],
        write: impl FnOnce(&mut Vec<u8>),
    ) -> Vec<u8> {
        self.seal_with_nonce(table, key, random(), write)
    }

    fn seal_with_nonce(
        &self,
        table: Table,
        key: &[u8],
        nonce: [u8; NONCE_LEN],
        write: impl FnOnce(&mut Vec<u8>),
    ) -> Vec<u8> {
        // Room for the largest record, so the buffer never grows, and so never leaves a copy of
        // the plaintext behind in freed memory.
        let mut out = Vec::with_capacity(HEADER_LEN + BUCKETS[BUCKETS.len() - 1] + TAG_LEN);
        out.push(SEALED_V1);
        out.extend_from_slice(&nonce);
        write(&mut out);
        let len = out.len() - HEADER_LEN;
        out.reserve_exact(padded_len(len) - len + TAG_LEN);
        out.push(0x80);
        out.resize(HEADER_LEN + padded_len(len), 0);
        let tag = self.values[table as usize]
            .encrypt_in_place_detached(
                XNonce::from_slice(&nonce),
                &aad(table, key),
                &mut out[HEADER_LEN..],
            )
            .expect("XChaCha20-Poly1305 seals any message shorter than 256 GiB");
        out.extend_from_slice(&tag);
        out
    }

    /// Pads and seals `plaintext` as the value of `key` in `table`.
    pub(crate) fn seal(&self, table: Table, key: &[u8], plaintext: &[u8]) -> Vec<u8> {
        self.seal_with(table, key, |out| out.extend_from_slice(plaintext))
    }

    /// Opens the value of `key` in `table`. `None` if it was not sealed there with these keys:
    /// tampered, moved from another row, or damaged.
    pub(crate) fn open(
        &self,
        table: Table,
        key: &[u8],
        value: &[u8],
    ) -> Option<Zeroizing<Vec<u8>>> {
        if value.len() < HEADER_LEN + TAG_LEN || value[0] != SEALED_V1 {
            return None;
        }
        let (header, rest) = value.split_at(HEADER_LEN);
        let (sealed, tag) = rest.split_at(rest.len() - TAG_LEN);
        let mut plain = Zeroizing::new(sealed.to_vec());
        self.values[table as usize]
            .decrypt_in_place_detached(
                XNonce::from_slice(&header[1..]),
                &aad(table, key),
                &mut plain,
                Tag::from_slice(tag),
            )
            .ok()?;
        let len = unpad(&plain)?.len();
        plain.truncate(len);
        Some(plain)
    }
}

/// The associated data of a value: domain, table and key. Keys are at most 32 bytes.
fn aad(table: Table, key: &[u8]) -> heapless_aad::Aad {
    heapless_aad::Aad::new(AAD_PREFIX, table as u8, key)
}

mod heapless_aad {
    /// Associated data built on the stack.
    pub(super) struct Aad {
        buf: [u8; 64],
        len: usize,
    }

    impl Aad {
        pub(super) fn new(prefix: &[u8], table: u8, key: &[u8]) -> Aad {
            let mut buf = [0u8; 64];
            let len = prefix.len() + 1 + key.len();
            buf[..prefix.len()].copy_from_slice(prefix);
            buf[prefix.len()] = table;
            buf[prefix.len() + 1..len].copy_from_slice(key);
            Aad { buf, len }
        }
    }

    impl std::ops::Deref for Aad {
        type Target = [u8];
        fn deref(&self) -> &[u8] {
            &self.buf[..self.len]
        }
    }
}

/// The padded length of a plaintext of `len` bytes.
pub(crate) fn padded_len(len: usize) -> usize {
    let needed = len + 1;
    match BUCKETS.iter().find(|&&b| b >= needed) {
        Some(&bucket) => bucket,
        None => needed.div_ceil(BUCKETS[BUCKETS.len() - 1]) * BUCKETS[BUCKETS.len() - 1],
    }
}

/// Removes ISO/IEC 7816-4 padding: zeros, then the 0x80 byte that ends the plaintext.
fn unpad(padded: &[u8]) -> Option<&[u8]> {
    let end = padded.iter().rposition(|&b| b != 0)?;
    (padded[end] == 0x80).then(|| &padded[..end])
}

/// Random bytes from the thread's CSPRNG (ChaCha, seeded and periodically reseeded from the
/// operating system): one system call per reseed instead of one per nonce.
pub(crate) fn random<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        Keys::derive(&StoreRootKey::from_bytes([7; 32]))
    }

    #[test]
    fn padding_rounds_up_to_buckets() {
        assert_eq!(padded_len(0), 64);
        assert_eq!(padded_len(63), 64);
        assert_eq!(padded_len(64), 96);
        assert_eq!(padded_len(96), 128);
        assert_eq!(padded_len(300), 384);
        assert_eq!(padded_len(400), 512);
        assert_eq!(padded_len(8191), 8192);
        assert_eq!(padded_len(8192), 16384);
        let keys = keys();
        for len in [0, 1, 63, 64, 500, 9000] {
            let data = vec![0x80; len];
            let sealed = keys.seal(Table::Log, b"k", &data);
            assert_eq!(sealed.len(), 1 + 24 + padded_len(len) + 16);
            assert_eq!(keys.open(Table::Log, b"k", &sealed).unwrap().as_slice(), &data[..]);
        }
        assert_eq!(unpad(&[1, 2, 0x80, 0, 0]), Some(&[1, 2][..]));
        assert_eq!(unpad(&[1, 2, 0, 0]), None);
        assert_eq!(unpad(&[0, 0]), None);
    }

    #[test]
    fn a_value_opens_only_in_its_own_row() {
        let keys = keys();
        let sealed = keys.seal(Table::Log, b"row-1", b"hello");
        assert_eq!(
            keys.open(Table::Log, b"row-1", &sealed).as_deref().map(Vec::as_slice),
            Some(&b"hello"[..])
        );
        assert!(keys.open(Table::Log, b"row-2", &sealed).is_none(), "moved to another key");
        assert!(keys.open(Table::Outbox, b"row-1", &sealed).is_none(), "moved to another table");
        let other = Keys::derive(&StoreRootKey::from_bytes([8; 32]));
        assert!(other.open(Table::Log, b"row-1", &sealed).is_none(), "another store's key");
        for at in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[at] ^= 1;
            assert!(keys.open(Table::Log, b"row-1", &bad).is_none(), "flipped byte {at}");
        }
        assert!(keys.open(Table::Log, b"row-1", &sealed[..20]).is_none());
        assert_eq!(sealed.len(), 1 + 24 + 64 + 16, "padded to the first bucket");
    }

    /// `specs/vectors/store.json`, written by an independent implementation
    /// (`specs/vectors/store.py`).
    #[test]
    fn spec_vectors() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../specs/vectors/store.json");
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let hex = |v: &serde_json::Value| hex::decode(v.as_str().unwrap()).unwrap();
        let root: [u8; 32] = hex(&doc["root_key"]).try_into().unwrap();
        let root = StoreRootKey::from_bytes(root);
        let keys = Keys::derive(&root);
        for t in doc["table_keys"].as_array().unwrap() {
            let table = Table::ALL[t["table"].as_u64().unwrap() as usize];
            assert_eq!(t["name"].as_str().unwrap(), table.name());
            assert_eq!(
                root.derive_key(t["value_key_context"].as_str().unwrap()).to_vec(),
                hex(&t["value_key"])
            );
            assert_eq!(*keys.key_hashes[table as usize], hex(&t["key_hash_key"])[..]);
        }
        for h in doc["keyed_hashes"].as_array().unwrap() {
            let table = Table::ALL[h["table"].as_u64().unwrap() as usize];
            assert_eq!(keys.hash_key(table, &[&hex(&h["input"])]).to_vec(), hex(&h["hash"]));
        }
        for v in doc["sealed"].as_array().unwrap() {
            let table = Table::ALL[v["table"].as_u64().unwrap() as usize];
            let (key, plain) = (hex(&v["key"]), hex(&v["plaintext"]));
            let nonce: [u8; NONCE_LEN] = hex(&v["nonce"]).try_into().unwrap();
            let sealed =
                keys.seal_with_nonce(table, &key, nonce, |out| out.extend_from_slice(&plain));
            assert_eq!(sealed, hex(&v["sealed"]), "{}", v["name"]);
            assert_eq!(keys.open(table, &key, &sealed).unwrap().as_slice(), &plain[..]);
        }
        // A record written by another implementation reads back as the same entry.
        let entry: crate::LogEntry =
            ciborium::from_reader(&hex(&doc["log_entry"]["cbor"])[..]).unwrap();
        assert_eq!(entry.text.as_str(), doc["log_entry"]["text"]);
        assert_eq!(entry.seq.get(), doc["log_entry"]["seq"]);
        assert_eq!(entry.status, crate::Status::Queued);
        assert_eq!(entry.claimed_from, None);
    }

    #[test]
    fn key_hashes_are_per_table() {
        let keys = keys();
        assert_ne!(
            keys.hash_key(Table::Names, &[b"alice"]),
            keys.hash_key(Table::Peers, &[b"alice"])
        );
        assert_eq!(
            keys.hash_key(Table::Names, &[b"al", b"ice"]),
            keys.hash_key(Table::Names, &[b"alice"])
        );
    }
}
