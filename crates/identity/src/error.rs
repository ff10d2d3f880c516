//! Errors, one enum per operation. None of them ever holds a password or a key.

use std::io;

/// The operating system could not provide random bytes.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator failed")]
pub struct RandomError;

/// Why argon2id parameters were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParamsError {
    /// Below the OWASP minimum (19 MiB, 2 passes): a stolen file would be cheap to attack.
    #[error(
        "argon2id parameters m={m_kib} KiB t={t} p={p} are below the minimum of m={min_m_kib} KiB t={min_t}"
    )]
    TooWeak {
        /// Memory, KiB.
        m_kib: u32,
        /// Passes.
        t: u32,
        /// Lanes.
        p: u32,
        /// Minimum memory, KiB.
        min_m_kib: u32,
        /// Minimum passes.
        min_t: u32,
    },
    /// So costly that unlocking would exhaust memory or time: a denial of service.
    #[error(
        "argon2id parameters m={m_kib} KiB t={t} p={p} are over the maximum of m={max_m_kib} KiB t={max_t} p={max_p}"
    )]
    TooCostly {
        /// Memory, KiB.
        m_kib: u32,
        /// Passes.
        t: u32,
        /// Lanes.
        p: u32,
        /// Maximum memory, KiB.
        max_m_kib: u32,
        /// Maximum passes.
        max_t: u32,
        /// Maximum lanes.
        max_p: u32,
    },
    /// Not a valid argon2 configuration (for example fewer than 8 KiB per lane).
    #[error("argon2id parameters m={m_kib} KiB t={t} p={p} are not valid")]
    Invalid {
        /// Memory, KiB.
        m_kib: u32,
        /// Passes.
        t: u32,
        /// Lanes.
        p: u32,
    },
}

/// Why a key file could not be unlocked. A failed unlock never writes anything.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UnlockError {
    /// There is no key file at the path.
    #[error("no key file found")]
    NotFound,
    /// The password does not open the key file.
    #[error("wrong password")]
    WrongPassword,
    /// The file is damaged: wrong length, bad magic, or a checksum mismatch.
    #[error("key file is corrupted: {0}")]
    Corrupted(&'static str),
    /// The file was written by a newer tincan.
    #[error("key file format version {0} is newer than this tincan reads: upgrade tincan")]
    UnsupportedVersion(u8),
    /// The file asks for argon2id parameters outside the accepted range.
    #[error("key file refused")]
    UnsafeParameters(#[from] ParamsError),
    /// Argon2 could not run with these parameters (for example, out of memory).
    #[error("key derivation failed")]
    Kdf,
    /// Reading the file failed.
    #[error("reading the key file failed")]
    Io(#[source] io::Error),
}

/// Why a key file could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CreateError {
    /// A key file already exists at the path; it was left untouched.
    #[error("a key file already exists")]
    AlreadyExists,
    /// The password is empty.
    #[error("the password must not be empty")]
    EmptyPassword,
    /// Argon2 could not run with these parameters.
    #[error("key derivation failed")]
    Kdf,
    /// No randomness for keys, salt or nonce.
    #[error(transparent)]
    Random(#[from] RandomError),
    /// Writing the file failed; nothing was left at the path.
    #[error("writing the key file failed")]
    Io(#[source] io::Error),
}

/// Why a password change failed. The old file is intact whenever this is returned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChangePasswordError {
    /// The old password did not unlock the file, or the file is unusable.
    #[error(transparent)]
    Unlock(#[from] UnlockError),
    /// The new password is empty.
    #[error("the new password must not be empty")]
    EmptyPassword,
    /// Argon2 could not run with the new parameters.
    #[error("key derivation failed")]
    Kdf,
    /// No randomness for the new salt or nonce.
    #[error(transparent)]
    Random(#[from] RandomError),
    /// Writing or renaming the new file failed; the old one still holds.
    #[error("writing the key file failed")]
    Io(#[source] io::Error),
}
