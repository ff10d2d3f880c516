//! A full disk: the failing write gets an error, and everything committed before it stays
//! readable. Tried on a real, tiny tmpfs when this machine lets the test mount one, and always
//! through a storage backend that fails like a full disk.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::io;
use std::ops::Bound;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use redb::{BackendError, StorageBackend};
use tincan_store::*;
use tincan_wire::MessageId;

/// Enqueues messages of about 4 KiB until a write fails. Returns the ids that were
/// acknowledged and the error that stopped it.
async fn fill(
    store: &Store,
    conv: ConversationId,
    limit: usize,
) -> (Vec<MessageId>, Option<StoreError>) {
    let mut ids = Vec::new();
    let body = "disk space filler ".repeat(200);
    for i in 0..limit {
        match store.enqueue(conv, text(&body), UnixMillis(i as u64)).await {
            Ok(q) => ids.push(q.id),
            Err(e) => return (ids, Some(e)),
        }
    }
    (ids, None)
}

async fn assert_all_readable(path: &Path, conv: ConversationId, ids: &[MessageId]) {
    let store = Store::open(path, &root()).unwrap();
    let outbox = store.outbox(conv, usize::MAX).await.unwrap();
    let found: Vec<_> = outbox.iter().map(|e| e.id).collect();
    assert_eq!(&found[..ids.len()], ids, "every acknowledged write is there, in order");
    assert!(found.len() <= ids.len() + 1, "at most the failed write's batch is extra");
    store.close().await;
}

#[tokio::test]
async fn a_full_tmpfs_fails_the_write_and_keeps_what_was_committed() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tincan-test", mnt.to_str().unwrap()])
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!(
            "SKIPPED: cannot mount a tmpfs here (needs root); the backend test covers disk-full"
        );
        return;
    }
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
        }
    }
    let _unmount = Unmount(&mnt);

    let path = mnt.join("store.redb");
    let store = Store::create(&path, &root()).unwrap();
    let conv = store.add_contact(name("bob"), peer(1), UnixMillis(0)).await.unwrap().conversation;
    let (ids, err) = fill(&store, conv, 10_000).await;
    let err = err.expect("a 2 MiB disk fills up");
    assert!(matches!(err, StoreError::DiskFull), "{err:?}");
    assert!(ids.len() > 10, "some writes fit: {}", ids.len());
    println!("{} writes committed before the disk was full: {err}", ids.len());
    drop(store);

    // Give the file system room again, then everything committed must be there.
    let grown = Command::new("mount")
        .args(["-o", "remount,size=64m", mnt.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(grown.success());
    assert_all_readable(&path, conv, &ids).await;
}

/// redb's file backend, failing every write with ENOSPC once `full` is set.
#[derive(Debug)]
struct FullDisk {
    inner: redb::backends::FileBackend,
    full: Arc<AtomicBool>,
}

impl FullDisk {
    fn check(&self) -> io::Result<()> {
        if self.full.load(Ordering::SeqCst) {
            Err(io::Error::from_raw_os_error(28))
        } else {
            Ok(())
        }
    }
}

impl StorageBackend for FullDisk {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.inner.read(offset, out)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.check()?;
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.check()?;
        self.inner.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.check()?;
        self.inner.write(offset, data)
    }
    fn close(&self) -> io::Result<()> {
        self.inner.close()
    }
    fn try_lock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(s, e)
    }
    fn try_lock_shared_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(s, e)
    }
    fn lock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(s, e)
    }
    fn lock_shared_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(s, e)
    }
    fn unlock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(s, e)
    }
    fn query_lock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(s, e)
    }
}

#[tokio::test]
async fn a_backend_that_runs_out_of_space_fails_the_write_and_keeps_what_was_committed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let full = Arc::new(AtomicBool::new(false));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .unwrap();
    let backend =
        FullDisk { inner: redb::backends::FileBackend::new(file).unwrap(), full: full.clone() };
    let store = Store::open_on_backend(backend, &root(), Options::default()).unwrap();
    let conv = store.add_contact(name("bob"), peer(1), UnixMillis(0)).await.unwrap().conversation;
    let (ids, err) = fill(&store, conv, 50).await;
    assert!(err.is_none());

    full.store(true, Ordering::SeqCst);
    let err = store.enqueue(conv, text("no room"), UnixMillis(99)).await.unwrap_err();
    assert!(matches!(err, StoreError::DiskFull), "{err:?}");
    assert_eq!(*store.health().borrow(), Health::DiskFull);
    // Reads of committed data still work on the same handle.
    assert_eq!(store.outbox(conv, usize::MAX).await.unwrap().len(), ids.len());
    drop(store);

    assert_all_readable(&path, conv, &ids).await;
}

/// Issue 17: a full disk used to break a running store until it was restarted ("Previous I/O
/// error occurred"). Now it reports the full disk, and once the file system has room again it
/// reopens itself: the same handle writes again, and nothing acknowledged is lost.
#[tokio::test]
async fn issue_17_a_store_recovers_from_a_full_disk_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tincan-test", mnt.to_str().unwrap()])
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root)");
        return;
    }
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
        }
    }
    let _unmount = Unmount(&mnt);
    let path = mnt.join("store.redb");
    let store = Store::create(&path, &root()).unwrap();
    let mut health = store.health();
    let conv = store.add_contact(name("bob"), peer(1), UnixMillis(0)).await.unwrap().conversation;
    let (mut ids, err) = fill(&store, conv, 10_000).await;
    assert!(matches!(err, Some(StoreError::DiskFull)), "{err:?}");
    assert_eq!(*health.borrow_and_update(), Health::DiskFull);
    // Still full: writes keep failing, fast, and reads work.
    let started = std::time::Instant::now();
    assert!(matches!(
        store.enqueue(conv, text("x"), UnixMillis(1)).await,
        Err(StoreError::DiskFull)
    ));
    assert!(started.elapsed() < std::time::Duration::from_millis(500));
    assert_eq!(store.outbox(conv, usize::MAX).await.unwrap().len(), ids.len());

    let grown = Command::new("mount")
        .args(["-o", "remount,size=64m", mnt.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(grown.success());
    let freed = std::time::Instant::now();
    tokio::time::timeout(std::time::Duration::from_secs(10), health.wait_for(|h| *h == Health::Ok))
        .await
        .expect("the store recovers within 10 s of space being freed")
        .unwrap();
    println!("the store could write again {:?} after the disk was grown", freed.elapsed());
    // The same handle writes again.
    let (more, err) = fill(&store, conv, 20).await;
    assert!(err.is_none(), "{err:?}");
    ids.extend(more);
    store.close().await;
    assert_all_readable(&path, conv, &ids).await;
}

/// Issue 17: read-only commands open read-only. A store opened so, or refused for another
/// identity's key, is not written, not even its modification time.
#[tokio::test]
async fn issue_17_opening_to_read_or_with_the_wrong_key_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let store = Store::create(&path, &root()).unwrap();
    let conv = store.add_contact(name("bob"), peer(1), UnixMillis(0)).await.unwrap().conversation;
    store.enqueue(conv, text("hello"), UnixMillis(1)).await.unwrap();
    store.close().await;
    let before =
        (std::fs::read(&path).unwrap(), std::fs::metadata(&path).unwrap().modified().unwrap());
    std::thread::sleep(std::time::Duration::from_millis(20));

    let unchanged = |step: &str| {
        let now =
            (std::fs::read(&path).unwrap(), std::fs::metadata(&path).unwrap().modified().unwrap());
        assert!(before.0 == now.0, "{step}: the file's bytes changed");
        assert_eq!(before.1, now.1, "{step}: the file's modification time changed");
    };
    let reader = Store::open_read_only(&path, &root()).unwrap();
    assert_eq!(reader.contacts().await.unwrap().len(), 1);
    assert!(matches!(reader.mark_read(conv).await, Err(StoreError::ReadOnly)));
    reader.close().await;
    unchanged("a read-only open");
    let wrong = tincan_identity::StoreRootKey::from_bytes([1; 32]);
    assert!(matches!(Store::open_read_only(&path, &wrong), Err(OpenError::WrongKey)));
    unchanged("a read-only open with the wrong key");
    assert!(matches!(Store::open(&path, &wrong), Err(OpenError::WrongKey)));
    unchanged("a writable open with the wrong key");

    // A reader beside the writer sees its commits.
    let writer = Store::open(&path, &root()).unwrap();
    let reader = Store::open_read_only(&path, &root()).unwrap();
    writer.enqueue(conv, text("while you read"), UnixMillis(2)).await.unwrap();
    assert_eq!(reader.outbox(conv, 10).await.unwrap().len(), 2);
    assert!(matches!(Store::open(&path, &root()), Err(OpenError::AlreadyOpen)), "one writer");
    reader.close().await;
    writer.close().await;
}
