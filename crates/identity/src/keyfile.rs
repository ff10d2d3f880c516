//! The key file: the identity's secrets sealed under a password (`specs/identity.md`).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

use crate::identity::{Identity, PublicKey, StoreRootKey};
use crate::{
    ChangePasswordError, CreateError, KdfParams, KdfPolicy, Password, RandomError, UnlockError,
};

const MAGIC: &[u8; 8] = b"TINCANID";
const VERSION: u8 = 1;
const KDF_ARGON2ID: u8 = 1;
const AEAD_XCHACHA20POLY1305: u8 = 1;

/// Where each field starts; see the table in `specs/identity.md`.
const HEADER_LEN: usize = 95;
const PAYLOAD_LEN: usize = 64;
const TAG_LEN: usize = 16;
const CHECKSUM_AT: usize = HEADER_LEN + PAYLOAD_LEN + TAG_LEN;
/// Length of every version-1 key file, in bytes.
pub const KEY_FILE_LEN: usize = CHECKSUM_AT + 32;

/// A parsed key file whose secrets are still sealed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedKeyFile {
    params: KdfParams,
    salt: [u8; 16],
    nonce: [u8; 24],
    public_key: [u8; 32],
    ciphertext: [u8; PAYLOAD_LEN + TAG_LEN],
}

impl SealedKeyFile {
    /// Parses the bytes of a key file without unlocking it.
    ///
    /// Checks, in order: length and magic, the checksum (so accidental damage is reported as
    /// [`UnlockError::Corrupted`], not as a wrong password), then the version and algorithms.
    /// The argon2 parameters are returned unchecked; [`KdfPolicy::check`] judges them.
    pub fn parse(bytes: &[u8]) -> Result<SealedKeyFile, UnlockError> {
        if bytes.len() < MAGIC.len() + 1 || &bytes[..MAGIC.len()] != MAGIC {
            return Err(UnlockError::Corrupted("not a tincan key file"));
        }
        match bytes[8] {
            VERSION => {}
            // No version 0 was ever written: this is damage, not a file from another tincan.
            0 => return Err(UnlockError::Corrupted("format version 0 does not exist")),
            newer => return Err(UnlockError::UnsupportedVersion(newer)),
        }
        if bytes.len() != KEY_FILE_LEN {
            return Err(UnlockError::Corrupted("wrong length"));
        }
        let (body, checksum) = bytes.split_at(CHECKSUM_AT);
        // Not a secret: comparing in constant time is cheap and avoids any question.
        let expected = blake3::hash(body);
        if !bool::from(subtle::ConstantTimeEq::ct_eq(expected.as_bytes().as_slice(), checksum)) {
            return Err(UnlockError::Corrupted("checksum mismatch"));
        }
        if bytes[9] != KDF_ARGON2ID {
            return Err(UnlockError::Corrupted("unknown key derivation function"));
        }
        if bytes[38] != AEAD_XCHACHA20POLY1305 {
            return Err(UnlockError::Corrupted("unknown cipher"));
        }
        let u32_at = |at: usize| u32::from_be_bytes(array(&bytes[at..at + 4]));
        Ok(SealedKeyFile {
            params: KdfParams { m_kib: u32_at(10), t: u32_at(14), p: u32_at(18) },
            salt: array(&bytes[22..38]),
            nonce: array(&bytes[39..63]),
            public_key: array(&bytes[63..95]),
            ciphertext: array(&bytes[95..CHECKSUM_AT]),
        })
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.header().to_vec();
        out.extend_from_slice(&self.ciphertext);
        let checksum = blake3::hash(&out);
        out.extend_from_slice(checksum.as_bytes());
        out
    }

    /// The argon2id parameters the file asks for.
    pub fn params(&self) -> KdfParams {
        self.params
    }

    /// The identity's public key, readable without the password. It is authenticated only
    /// once the file is unlocked.
    pub fn public_key(&self) -> Result<PublicKey, UnlockError> {
        PublicKey::from_bytes(&self.public_key)
            .map_err(|_| UnlockError::Corrupted("invalid public key"))
    }

    fn header(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[..8].copy_from_slice(MAGIC);
        h[8] = VERSION;
        h[9] = KDF_ARGON2ID;
        h[10..14].copy_from_slice(&self.params.m_kib.to_be_bytes());
        h[14..18].copy_from_slice(&self.params.t.to_be_bytes());
        h[18..22].copy_from_slice(&self.params.p.to_be_bytes());
        h[22..38].copy_from_slice(&self.salt);
        h[38] = AEAD_XCHACHA20POLY1305;
        h[39..63].copy_from_slice(&self.nonce);
        h[63..95].copy_from_slice(&self.public_key);
        h
    }

    /// Seals `identity` under `password` with fresh salt and nonce.
    fn seal(
        identity: &Identity,
        password: &Password,
        params: KdfParams,
    ) -> Result<SealedKeyFile, SealError> {
        Self::seal_with(identity, password, params, crate::random()?, crate::random()?)
    }

    fn seal_with(
        identity: &Identity,
        password: &Password,
        params: KdfParams,
        salt: [u8; 16],
        nonce: [u8; 24],
    ) -> Result<SealedKeyFile, SealError> {
        let mut file = SealedKeyFile {
            params,
            salt,
            nonce,
            public_key: identity.public_key().to_bytes(),
            ciphertext: [0; PAYLOAD_LEN + TAG_LEN],
        };
        let kek = params.derive(password, &file.salt).map_err(|_| SealError::Kdf)?;
        let mut payload = Zeroizing::new([0u8; PAYLOAD_LEN]);
        payload[..32].copy_from_slice(identity.seed().as_ref());
        payload[32..].copy_from_slice(identity.store_root_key().as_bytes());
        let cipher = XChaCha20Poly1305::new(kek.as_ref().into());
        let aad = file.header();
        let sealed = cipher
            .encrypt(XNonce::from_slice(&file.nonce), Payload { msg: payload.as_ref(), aad: &aad })
            .map_err(|_| SealError::Kdf)?;
        file.ciphertext = array(&sealed);
        Ok(file)
    }

    /// Opens the file with `password`, after checking its parameters against `policy`.
    pub fn open(&self, password: &Password, policy: &KdfPolicy) -> Result<Identity, UnlockError> {
        policy.check(self.params)?;
        let public_key = self.public_key()?;
        let kek = self.params.derive(password, &self.salt).map_err(|_| UnlockError::Kdf)?;
        let cipher = XChaCha20Poly1305::new(kek.as_ref().into());
        let aad = self.header();
        // The checksum already matched, so a failed tag means the key is wrong: a wrong
        // password. (Deliberate tampering that also fixes the checksum looks the same.)
        let payload = Zeroizing::new(
            cipher
                .decrypt(
                    XNonce::from_slice(&self.nonce),
                    Payload { msg: &self.ciphertext, aad: &aad },
                )
                .map_err(|_| UnlockError::WrongPassword)?,
        );
        let seed = Zeroizing::new(array::<32>(&payload[..32]));
        let identity =
            Identity::from_secrets(&seed, StoreRootKey::from_bytes(array(&payload[32..])));
        if identity.public_key() != public_key {
            return Err(UnlockError::Corrupted("public key does not match the secret key"));
        }
        Ok(identity)
    }
}

enum SealError {
    Kdf,
    Random(RandomError),
}

impl From<RandomError> for SealError {
    fn from(e: RandomError) -> Self {
        SealError::Random(e)
    }
}

/// Creates a new identity and writes its key file at `path`, sealed with `password` and
/// [`KdfParams::RECOMMENDED`]. Refuses to overwrite an existing file.
pub fn create(path: &Path, password: &Password) -> Result<Identity, CreateError> {
    create_with(path, password, KdfParams::RECOMMENDED)
}

/// Like [`create`], with chosen argon2id parameters.
pub fn create_with(
    path: &Path,
    password: &Password,
    params: KdfParams,
) -> Result<Identity, CreateError> {
    if password.is_empty() {
        return Err(CreateError::EmptyPassword);
    }
    if path.exists() {
        return Err(CreateError::AlreadyExists);
    }
    let identity = Identity::generate()?;
    let file = SealedKeyFile::seal(&identity, password, params).map_err(|e| match e {
        SealError::Kdf => CreateError::Kdf,
        SealError::Random(e) => CreateError::Random(e),
    })?;
    let tmp = write_temp(path, &file.to_bytes()).map_err(CreateError::Io)?;
    // A hard link never replaces an existing file, so two concurrent creates cannot clobber
    // each other: exactly one link succeeds.
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(CreateError::AlreadyExists);
        }
        Err(e) => return Err(CreateError::Io(e)),
    }
    sync_dir(path).map_err(CreateError::Io)?;
    Ok(identity)
}

/// Unlocks the key file at `path` with the default [`KdfPolicy`]. Writes nothing.
pub fn unlock(path: &Path, password: &Password) -> Result<Identity, UnlockError> {
    unlock_with(path, password, &KdfPolicy::default())
}

/// Like [`unlock`], with a chosen policy.
pub fn unlock_with(
    path: &Path,
    password: &Password,
    policy: &KdfPolicy,
) -> Result<Identity, UnlockError> {
    SealedKeyFile::parse(&read(path)?)?.open(password, policy)
}

/// Reads the public key of the key file at `path`, without the password.
pub fn read_public_key(path: &Path) -> Result<PublicKey, UnlockError> {
    SealedKeyFile::parse(&read(path)?)?.public_key()
}

/// Re-seals the key file at `path` under `new`, with [`KdfParams::RECOMMENDED`].
///
/// The identity and the store root key stay the same, so the store needs no re-encryption.
/// The new file is written beside the old one, synced, then renamed over it, and the directory
/// is synced: after a crash at any point, the path holds either the old file or the new one.
pub fn change_password(
    path: &Path,
    old: &Password,
    new: &Password,
) -> Result<(), ChangePasswordError> {
    change_password_with(path, old, new, &KdfPolicy::default(), KdfParams::RECOMMENDED)
}

/// Like [`change_password`], with a chosen policy for the old file and parameters for the new.
pub fn change_password_with(
    path: &Path,
    old: &Password,
    new: &Password,
    policy: &KdfPolicy,
    params: KdfParams,
) -> Result<(), ChangePasswordError> {
    if new.is_empty() {
        return Err(ChangePasswordError::EmptyPassword);
    }
    let identity = unlock_with(path, old, policy)?;
    let file = SealedKeyFile::seal(&identity, new, params).map_err(|e| match e {
        SealError::Kdf => ChangePasswordError::Kdf,
        SealError::Random(e) => ChangePasswordError::Random(e),
    })?;
    let tmp = write_temp(path, &file.to_bytes()).map_err(ChangePasswordError::Io)?;
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(ChangePasswordError::Io(e));
    }
    sync_dir(path).map_err(ChangePasswordError::Io)
}

fn read(path: &Path) -> Result<Vec<u8>, UnlockError> {
    // Read at most one byte more than a key file, so a huge planted file costs nothing.
    let file = File::open(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => UnlockError::NotFound,
        _ => UnlockError::Io(e),
    })?;
    let mut bytes = Vec::with_capacity(KEY_FILE_LEN + 1);
    io::Read::read_to_end(&mut io::Read::take(file, KEY_FILE_LEN as u64 + 1), &mut bytes)
        .map_err(UnlockError::Io)?;
    Ok(bytes)
}

/// Writes `bytes` to `<path>.new` (mode 0600 on Unix) and syncs it.
fn write_temp(path: &Path, bytes: &[u8]) -> io::Result<PathBuf> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".new");
    let tmp = path.with_file_name(name);
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(tmp)
}

/// Syncs the directory holding `path`, so a rename or link in it is durable.
fn sync_dir(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(bytes);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealing_reproduces_the_spec_vectors() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../specs/vectors/identity.json");
        let doc: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap();
        for v in doc["keyfiles"].as_array().unwrap() {
            let hex = |k: &str| hex::decode(v[k].as_str().unwrap()).unwrap();
            let file = hex("file");
            let parsed = SealedKeyFile::parse(&file).unwrap();
            let identity = Identity::from_secrets(
                &array(&hex("seed")),
                StoreRootKey::from_bytes(array(&hex("store_root_key"))),
            );
            let password = Password::new(v["password"].as_str().unwrap().to_owned());
            let params = KdfParams { m_kib: 1024, t: 1, p: 1 };
            let sealed =
                SealedKeyFile::seal_with(&identity, &password, params, parsed.salt, parsed.nonce);
            assert_eq!(sealed.ok().unwrap().to_bytes(), file, "{}", v["name"]);
        }
    }
}
