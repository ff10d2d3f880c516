//! Key files through the public API: create, unlock, change the password, and refuse every
//! damaged, tampered or hostile file with the right error, writing nothing.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use std::fs;
use std::path::{Path, PathBuf};

use tincan_identity::*;

fn fast() -> KdfParams {
    KdfParams::insecure_for_tests()
}

fn policy() -> KdfPolicy {
    KdfPolicy::insecure_for_tests()
}

fn pw(s: &str) -> Password {
    Password::new(s.to_owned())
}

fn new_keyfile(dir: &Path, password: &str) -> (PathBuf, Identity) {
    let path = dir.join("identity.key");
    let identity = create_with(&path, &pw(password), fast()).unwrap();
    (path, identity)
}

/// Every file in `dir` with its bytes, to show an operation wrote nothing.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let bytes = fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect();
    files.sort();
    files
}

/// Rewrites the checksum so that a deliberate edit passes the corruption check.
fn with_valid_checksum(mut bytes: Vec<u8>) -> Vec<u8> {
    let body = bytes.len() - 32;
    let sum = blake3::hash(&bytes[..body]);
    bytes[body..].copy_from_slice(sum.as_bytes());
    bytes
}

#[test]
fn create_then_unlock_gives_the_same_identity() {
    let dir = tempfile::tempdir().unwrap();
    let (path, created) = new_keyfile(dir.path(), "correct horse");
    let unlocked = unlock_with(&path, &pw("correct horse"), &policy()).unwrap();
    assert_eq!(unlocked.peer_id(), created.peer_id());
    assert_eq!(
        *unlocked.store_root_key().derive_key("ctx"),
        *created.store_root_key().derive_key("ctx")
    );
    assert_eq!(read_public_key(&path).unwrap(), created.public_key());
    assert_eq!(fs::read(&path).unwrap().len(), KEY_FILE_LEN);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
    // Only the key file is left: the temporary file was removed.
    assert_eq!(snapshot(dir.path()).len(), 1);
}

#[test]
fn create_refuses_to_overwrite_and_empty_passwords() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = new_keyfile(dir.path(), "one");
    let before = snapshot(dir.path());
    assert!(matches!(create_with(&path, &pw("two"), fast()), Err(CreateError::AlreadyExists)));
    assert_eq!(snapshot(dir.path()), before);
    let other = dir.path().join("other.key");
    assert!(matches!(create_with(&other, &pw(""), fast()), Err(CreateError::EmptyPassword)));
    assert!(!other.exists());
}

#[test]
fn a_wrong_password_is_told_apart_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = new_keyfile(dir.path(), "right");
    let before = snapshot(dir.path());
    for wrong in ["wrong", "Right", "right ", ""] {
        assert!(matches!(
            unlock_with(&path, &pw(wrong), &policy()),
            Err(UnlockError::WrongPassword)
        ));
    }
    assert!(matches!(
        change_password_with(&path, &pw("wrong"), &pw("new"), &policy(), fast()),
        Err(ChangePasswordError::Unlock(UnlockError::WrongPassword))
    ));
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn every_damaged_byte_is_reported_as_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = new_keyfile(dir.path(), "pw");
    let good = fs::read(&path).unwrap();
    for at in 0..good.len() {
        let mut bad = good.clone();
        bad[at] ^= 0x01;
        fs::write(&path, &bad).unwrap();
        let err = unlock_with(&path, &pw("pw"), &policy()).unwrap_err();
        // Issue 17: the version byte flipped to 0 is damage too (no version 0 ever existed),
        // not a file from a newer tincan.
        assert!(matches!(err, UnlockError::Corrupted(_)), "byte {at}: {err:?}");
    }
    for len in [0, 1, 8, 9, 100, good.len() - 1] {
        fs::write(&path, &good[..len]).unwrap();
        let err = unlock_with(&path, &pw("pw"), &policy()).unwrap_err();
        assert!(matches!(err, UnlockError::Corrupted(_)), "length {len}: {err:?}");
    }
    let mut long = good.clone();
    long.extend_from_slice(&[0; 10_000]);
    fs::write(&path, &long).unwrap();
    assert!(matches!(unlock_with(&path, &pw("pw"), &policy()), Err(UnlockError::Corrupted(_))));
}

#[test]
fn a_newer_version_is_unsupported() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = new_keyfile(dir.path(), "pw");
    let mut bytes = fs::read(&path).unwrap();
    bytes[8] = 2;
    bytes.truncate(40);
    fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        unlock_with(&path, &pw("pw"), &policy()),
        Err(UnlockError::UnsupportedVersion(2))
    ));
}

#[test]
fn tampered_parameters_are_refused_or_fail_authentication() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k");
    let params = KdfParams::new(19 * 1024, 2, 1).unwrap();
    create_with(&path, &pw("pw"), params).unwrap();
    let good = fs::read(&path).unwrap();
    let set = |at: usize, value: u32| {
        let mut bytes = good.clone();
        bytes[at..at + 4].copy_from_slice(&value.to_be_bytes());
        fs::write(&path, with_valid_checksum(bytes)).unwrap();
        unlock(&path, &pw("pw"))
    };
    // Weakening: refused by the policy before any derivation.
    assert!(matches!(
        set(10, 8 * 1024),
        Err(UnlockError::UnsafeParameters(ParamsError::TooWeak { .. }))
    ));
    assert!(matches!(set(14, 1), Err(UnlockError::UnsafeParameters(ParamsError::TooWeak { .. }))));
    // Absurd costs: refused at once, without allocating 4 GiB.
    assert!(matches!(
        set(10, u32::MAX),
        Err(UnlockError::UnsafeParameters(ParamsError::TooCostly { .. }))
    ));
    assert!(matches!(
        set(14, 1 << 20),
        Err(UnlockError::UnsafeParameters(ParamsError::TooCostly { .. }))
    ));
    // Within range but changed: the header is the AEAD's associated data, so it fails.
    assert!(matches!(set(14, 3), Err(UnlockError::WrongPassword)));
    // The displayed public key is authenticated too.
    let mut swapped = good.clone();
    swapped[63..95].copy_from_slice(&Identity::generate().unwrap().public_key().to_bytes());
    fs::write(&path, with_valid_checksum(swapped)).unwrap();
    assert!(matches!(unlock(&path, &pw("pw")), Err(UnlockError::WrongPassword)));
    // The default policy refuses the cheap test parameters.
    let cheap = dir.path().join("cheap");
    create_with(&cheap, &pw("pw"), fast()).unwrap();
    assert!(matches!(unlock(&cheap, &pw("pw")), Err(UnlockError::UnsafeParameters(_))));
}

#[test]
fn a_missing_file_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(unlock(&dir.path().join("nope"), &pw("x")), Err(UnlockError::NotFound)));
}

#[test]
fn change_password_keeps_the_identity_and_store_key() {
    let dir = tempfile::tempdir().unwrap();
    let (path, created) = new_keyfile(dir.path(), "old");
    change_password_with(&path, &pw("old"), &pw("new"), &policy(), fast()).unwrap();
    assert!(matches!(unlock_with(&path, &pw("old"), &policy()), Err(UnlockError::WrongPassword)));
    let unlocked = unlock_with(&path, &pw("new"), &policy()).unwrap();
    assert_eq!(unlocked.peer_id(), created.peer_id());
    assert_eq!(
        *unlocked.store_root_key().derive_key("c"),
        *created.store_root_key().derive_key("c")
    );
    assert_eq!(snapshot(dir.path()).len(), 1, "no temporary file is left behind");
    assert!(matches!(
        change_password_with(&path, &pw("new"), &pw(""), &policy(), fast()),
        Err(ChangePasswordError::EmptyPassword)
    ));
}

#[test]
fn a_crash_leftover_does_not_hurt() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = new_keyfile(dir.path(), "old");
    // A crash while writing the new file leaves a partial `.new` beside the key file.
    fs::write(dir.path().join("identity.key.new"), b"TINCANID\x01partial").unwrap();
    unlock_with(&path, &pw("old"), &policy()).unwrap();
    change_password_with(&path, &pw("old"), &pw("new"), &policy(), fast()).unwrap();
    unlock_with(&path, &pw("new"), &policy()).unwrap();
}

#[test]
fn spec_vectors_unlock() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../specs/vectors/identity.json");
    let doc: serde_json::Value = serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for v in doc["keyfiles"].as_array().unwrap() {
        let hex = |k: &str| hex::decode(v[k].as_str().unwrap()).unwrap();
        let file = dir.path().join(v["name"].as_str().unwrap());
        fs::write(&file, hex("file")).unwrap();
        let identity = unlock_with(&file, &pw(v["password"].as_str().unwrap()), &policy()).unwrap();
        assert_eq!(identity.public_key().to_bytes().to_vec(), hex("public_key"));
        assert_eq!(identity.peer_id().to_bytes(), hex("peer_id"));
        let root: [u8; 32] = hex("store_root_key").try_into().unwrap();
        assert_eq!(
            *identity.store_root_key().derive_key("tincan test"),
            blake3::derive_key("tincan test", &root)
        );
        assert!(matches!(
            unlock_with(&file, &pw("not it"), &policy()),
            Err(UnlockError::WrongPassword)
        ));
    }
    for v in doc["fingerprints"].as_array().unwrap() {
        let key: [u8; 32] =
            hex::decode(v["public_key"].as_str().unwrap()).unwrap().try_into().unwrap();
        let fp = Fingerprint::of(&PublicKey::from_bytes(&key).unwrap());
        assert_eq!(fp.to_string().replace(' ', ""), v["fingerprint"].as_str().unwrap());
    }
    for v in doc["safety_numbers"].as_array().unwrap() {
        let key = |k: &str| {
            let bytes: [u8; 32] = hex::decode(v[k].as_str().unwrap()).unwrap().try_into().unwrap();
            PublicKey::from_bytes(&bytes).unwrap()
        };
        assert_eq!(
            safety_number(&key("a"), &key("b")).digits(),
            v["safety_number"].as_str().unwrap()
        );
        assert_eq!(
            safety_number(&key("b"), &key("a")).digits(),
            v["safety_number"].as_str().unwrap()
        );
    }
}

/// Kills a process that keeps changing the password, at random moments, 25 times. After every
/// kill the key file must open with one of the two passwords: never neither.
#[test]
fn change_password_survives_sigkill_at_any_point() {
    const CHILD: &str = "TINCAN_IDENTITY_CRASH_CHILD";
    if let Ok(path) = std::env::var(CHILD) {
        let path = PathBuf::from(path);
        let (a, b) = (pw("password-a"), pw("password-b"));
        loop {
            for (old, new) in [(&a, &b), (&b, &a)] {
                let _ = change_password_with(&path, old, new, &policy(), fast());
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("identity.key");
    let created = create_with(&path, &pw("password-a"), fast()).unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for round in 0..25u64 {
        let mut child = std::process::Command::new(&exe)
            .args(["--exact", "change_password_survives_sigkill_at_any_point", "--nocapture"])
            .env(CHILD, &path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // A spread of delays: start-up takes a few ms, each change about 2-5 ms.
        std::thread::sleep(std::time::Duration::from_micros(3_000 + (round * 7_919) % 40_000));
        child.kill().unwrap();
        child.wait().unwrap();
        let (password, opened) = ["password-a", "password-b"]
            .iter()
            .find_map(|p| unlock_with(&path, &pw(p), &policy()).ok().map(|id| (*p, id)))
            .unwrap_or_else(|| panic!("round {round}: neither password opens the key file"));
        assert_eq!(opened.peer_id(), created.peer_id());
        seen.insert(password);
    }
    // Both states were seen, so the kills really landed while passwords were changing.
    assert_eq!(seen.len(), 2, "the child never changed the password before being killed");
}
