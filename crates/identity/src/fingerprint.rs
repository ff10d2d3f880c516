//! Fingerprints and safety numbers, computed as Signal computes its own (`specs/identity.md`).
//!
//! Each identity's [`Fingerprint`] is 30 digits; the [`SafetyNumber`] of a pair is both
//! fingerprints, the smaller first, so both sides see the same 60 digits.

use std::fmt;

use sha2::{Digest, Sha512};

use crate::PublicKey;

/// SHA-512 rounds per fingerprint, as in Signal: each costs an attacker that much more per
/// candidate key when searching for a colliding number.
const ITERATIONS: usize = 5200;
const VERSION: [u8; 2] = [0, 0];

/// The 30-digit fingerprint of one identity.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Fingerprint([u8; 30]);

impl Fingerprint {
    /// Computes the fingerprint of `key`.
    pub fn of(key: &PublicKey) -> Fingerprint {
        let key_bytes = key.to_bytes();
        let stable_id = key.peer_id().to_bytes();
        let mut hash = Sha512::new()
            .chain_update(VERSION)
            .chain_update(key_bytes)
            .chain_update(&stable_id)
            .chain_update(key_bytes)
            .finalize();
        for _ in 1..ITERATIONS {
            hash = Sha512::new().chain_update(hash).chain_update(key_bytes).finalize();
        }
        let mut digits = [0u8; 30];
        for (chunk, out) in hash[..30].chunks_exact(5).zip(digits.chunks_exact_mut(5)) {
            let mut be = [0u8; 8];
            be[3..].copy_from_slice(chunk);
            let mut n = u64::from_be_bytes(be) % 100_000;
            for d in out.iter_mut().rev() {
                *d = (n % 10) as u8;
                n /= 10;
            }
        }
        Fingerprint(digits)
    }
}

impl fmt::Display for Fingerprint {
    /// Six groups of five digits, separated by spaces.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_groups(f, &self.0)
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// The 60-digit number two people compare to check they hold each other's real keys.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SafetyNumber([u8; 60]);

/// The safety number of two identities; the same whichever side computes it.
pub fn safety_number(a: &PublicKey, b: &PublicKey) -> SafetyNumber {
    let (fa, fb) = (Fingerprint::of(a), Fingerprint::of(b));
    let (low, high) = if fa <= fb { (fa, fb) } else { (fb, fa) };
    let mut digits = [0u8; 60];
    digits[..30].copy_from_slice(&low.0);
    digits[30..].copy_from_slice(&high.0);
    SafetyNumber(digits)
}

impl SafetyNumber {
    /// The 60 digits without spaces.
    pub fn digits(&self) -> String {
        self.0.iter().map(|d| char::from(b'0' + d)).collect()
    }
}

impl fmt::Display for SafetyNumber {
    /// Twelve groups of five digits, separated by spaces.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_groups(f, &self.0)
    }
}

impl fmt::Debug for SafetyNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SafetyNumber({self})")
    }
}

fn write_groups(f: &mut fmt::Formatter<'_>, digits: &[u8]) -> fmt::Result {
    for (i, group) in digits.chunks(5).enumerate() {
        if i > 0 {
            f.write_str(" ")?;
        }
        for d in group {
            write!(f, "{d}")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Identity;

    #[test]
    fn both_sides_see_the_same_number() {
        let a = Identity::generate().unwrap().public_key();
        let b = Identity::generate().unwrap().public_key();
        assert_eq!(safety_number(&a, &b), safety_number(&b, &a));
        assert_eq!(safety_number(&a, &b).digits().len(), 60);
        assert_eq!(safety_number(&a, &b).to_string().split(' ').count(), 12);
        let c = Identity::generate().unwrap().public_key();
        assert_ne!(safety_number(&a, &b), safety_number(&a, &c));
    }
}
