//! The password, argon2id parameters, and the policy that bounds them.

use std::fmt;

use argon2::{Algorithm, Argon2, Params, Version};
use zeroize::Zeroizing;

use crate::ParamsError;

/// A password typed by the user. Zeroized on drop; `Debug` prints `Password(..)`.
pub struct Password(Zeroizing<String>);

impl Password {
    /// Takes ownership of `password`, so no other copy of it is left behind by this call.
    pub fn new(password: String) -> Password {
        Password(Zeroizing::new(password))
    }

    /// The password's bytes, for the key derivation.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// Whether the password is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Its length in characters.
    pub fn len(&self) -> usize {
        self.0.chars().count()
    }

    /// Whether `other` is the same password, compared in constant time (for "type it again").
    pub fn same_as(&self, other: &Password) -> bool {
        bool::from(subtle::ConstantTimeEq::ct_eq(self.0.as_bytes(), other.0.as_bytes()))
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(..)")
    }
}

/// Argon2id cost parameters: memory in KiB, passes, and lanes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfParams {
    pub(crate) m_kib: u32,
    pub(crate) t: u32,
    pub(crate) p: u32,
}

impl KdfParams {
    /// What new key files use: 256 MiB, 5 passes, 4 lanes. Unlocking takes about 0.43 s on the
    /// 2-core machine tincan is developed on (`BENCHMARKS.md`), four times RFC 9106's "second
    /// recommended" memory and 34 times the cost of the OWASP minimum.
    pub const RECOMMENDED: KdfParams = KdfParams { m_kib: 256 * 1024, t: 5, p: 4 };

    /// Checks `m_kib`, `t` and `p` against the default [`KdfPolicy`].
    pub fn new(m_kib: u32, t: u32, p: u32) -> Result<KdfParams, ParamsError> {
        let params = KdfParams { m_kib, t, p };
        KdfPolicy::default().check(params)?;
        Ok(params)
    }

    /// Cheap parameters (1 MiB, 1 pass) that make tests fast. Files sealed with them are
    /// refused by the default policy, so they only open with [`KdfPolicy::insecure_for_tests`].
    #[cfg(feature = "insecure-test-kdf")]
    pub fn insecure_for_tests() -> KdfParams {
        KdfParams { m_kib: 1024, t: 1, p: 1 }
    }

    /// Memory, in KiB.
    pub fn m_kib(&self) -> u32 {
        self.m_kib
    }

    /// Passes over the memory.
    pub fn t(&self) -> u32 {
        self.t
    }

    /// Lanes.
    pub fn p(&self) -> u32 {
        self.p
    }

    /// Derives the 32-byte key-encryption key from `password` and `salt`.
    pub(crate) fn derive(
        &self,
        password: &Password,
        salt: &[u8; 16],
    ) -> Result<Zeroizing<[u8; 32]>, argon2::Error> {
        let params = Params::new(self.m_kib, self.t, self.p, Some(32))?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let mut kek = Zeroizing::new([0u8; 32]);
        argon.hash_password_into(password.as_bytes(), salt, kek.as_mut())?;
        Ok(kek)
    }
}

/// The range of argon2id parameters a reader accepts from a key file.
///
/// The floor is the OWASP minimum (19 MiB, 2 passes), so nobody can quietly weaken a file; the
/// ceiling (512 MiB, 16 passes, 16 lanes: twice the memory tincan writes, about 3 s here) stops
/// a planted file from exhausting the memory of a small machine or its time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfPolicy {
    min_m_kib: u32,
    min_t: u32,
    max_m_kib: u32,
    max_t: u32,
    max_p: u32,
}

impl Default for KdfPolicy {
    fn default() -> KdfPolicy {
        KdfPolicy { min_m_kib: 19 * 1024, min_t: 2, max_m_kib: 512 * 1024, max_t: 16, max_p: 16 }
    }
}

impl KdfPolicy {
    /// A policy that also accepts [`KdfParams::insecure_for_tests`].
    #[cfg(feature = "insecure-test-kdf")]
    pub fn insecure_for_tests() -> KdfPolicy {
        KdfPolicy { min_m_kib: 8, min_t: 1, ..KdfPolicy::default() }
    }

    /// Accepts `params` if they are within the range and valid for argon2.
    pub fn check(&self, params: KdfParams) -> Result<(), ParamsError> {
        let KdfParams { m_kib, t, p } = params;
        if m_kib > self.max_m_kib || t > self.max_t || p > self.max_p {
            return Err(ParamsError::TooCostly {
                m_kib,
                t,
                p,
                max_m_kib: self.max_m_kib,
                max_t: self.max_t,
                max_p: self.max_p,
            });
        }
        if m_kib < self.min_m_kib || t < self.min_t {
            return Err(ParamsError::TooWeak {
                m_kib,
                t,
                p,
                min_m_kib: self.min_m_kib,
                min_t: self.min_t,
            });
        }
        Params::new(m_kib, t, p, Some(32)).map_err(|_| ParamsError::Invalid { m_kib, t, p })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_policy_refuses_weak_and_absurd_costs() {
        let policy = KdfPolicy::default();
        assert_eq!(policy.check(KdfParams::RECOMMENDED), Ok(()));
        assert_eq!(policy.check(KdfParams { m_kib: 19 * 1024, t: 2, p: 1 }), Ok(()));
        for weak in [(19 * 1024 - 1, 2, 1), (64 * 1024, 1, 1), (1024, 1, 1)] {
            let (m_kib, t, p) = weak;
            assert!(matches!(KdfParams::new(m_kib, t, p), Err(ParamsError::TooWeak { .. })));
        }
        // Issue 10: a planted file may not ask for more than a small machine survives.
        let most = KdfParams::new(512 * 1024, 16, 4);
        assert!(most.is_ok(), "{most:?}");
        for costly in [
            (u32::MAX, 3, 4),
            (4 << 20, 3, 4),
            (512 * 1024 + 1, 5, 4),
            (64 * 1024, 17, 4),
            (64 * 1024, 3, 255),
        ] {
            let (m_kib, t, p) = costly;
            assert!(matches!(KdfParams::new(m_kib, t, p), Err(ParamsError::TooCostly { .. })));
        }
        assert!(matches!(KdfParams::new(64 * 1024, 3, 0), Err(ParamsError::Invalid { .. })));
    }

    #[test]
    fn password_debug_is_redacted() {
        assert_eq!(format!("{:?}", Password::new("hunter2".into())), "Password(..)");
    }
}
