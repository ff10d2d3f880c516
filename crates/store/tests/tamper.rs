//! A store file damaged or tampered with gives typed errors, never a panic and never wrong
//! data: bit flips, truncations, swapped pages, and sealed values moved between rows.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use redb::ReadableTable;

use common::*;
use tincan_store::*;

static PANICS: AtomicUsize = AtomicUsize::new(0);
/// Panics inside redb, which the store catches and reports as damage: a read-only open skips
/// the integrity check that a writable one makes, and redb trusts the pages it reads then.
static ENGINE_PANICS: AtomicUsize = AtomicUsize::new(0);

/// Builds a store with contacts, messages both ways, an outbox and a setting. Returns the
/// snapshots after the last commit and after the one before it: redb may legitimately fall back
/// to the previous commit when the latest one is damaged.
async fn build(path: &Path) -> (Snapshot, Snapshot) {
    let store = Store::create(path, &root()).unwrap();
    let bob = store.add_contact(name("bob"), peer(1), UnixMillis(1)).await.unwrap();
    let carol = store.add_contact(name("carol"), peer(2), UnixMillis(2)).await.unwrap();
    for i in 0..40u64 {
        let conv = if i % 3 == 0 { carol.conversation } else { bob.conversation };
        let q = store
            .enqueue(
                conv,
                text(&format!("message number {i} {}", "x".repeat(i as usize * 20))),
                UnixMillis(i),
            )
            .await
            .unwrap();
        if i % 2 == 0 {
            store
                .acknowledge(conv, vec![(q.seq, q.id, Outcome::Delivered)], UnixMillis(i))
                .await
                .unwrap();
        }
    }
    let messages = (1..=20).map(|i| incoming(i, i as u64, "incoming text")).collect();
    store
        .receive(bob.conversation, messages, UnixMillis(50), RequestLimits::default())
        .await
        .unwrap();
    let previous = snapshot(&store).await.unwrap();
    store.set_setting("note", b"last commit".to_vec()).await.unwrap();
    let last = snapshot(&store).await.unwrap();
    store.close().await;
    (last, previous)
}

#[derive(Default, Debug)]
struct Tally {
    intact: usize,
    previous_commit: usize,
    errors: usize,
}

impl Tally {
    #[track_caller]
    fn check(
        &mut self,
        what: &str,
        outcome: Result<Snapshot, String>,
        last: &Snapshot,
        previous: &Snapshot,
    ) {
        match outcome {
            Ok(s) if &s == last => self.intact += 1,
            Ok(s) if &s == previous => self.previous_commit += 1,
            Ok(s) => panic!("{what}: wrong data read back: {s:?}"),
            Err(_) => self.errors += 1,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_files_give_errors_never_wrong_data_or_panics() {
    std::panic::set_hook(Box::new(|info| {
        let in_redb = info.location().is_some_and(|l| l.file().contains("/redb-"));
        if in_redb {
            ENGINE_PANICS.fetch_add(1, Ordering::SeqCst);
        } else {
            PANICS.fetch_add(1, Ordering::SeqCst);
            eprintln!("panic: {info}");
        }
    }));
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("original.redb");
    let (last, previous) = build(&original).await;
    let pristine = std::fs::read(&original).unwrap();
    assert_eq!(read_all(&original).await.unwrap(), last);
    let victim = dir.path().join("victim.redb");
    let mut tally = Tally::default();

    // Single-bit flips spread over the whole file.
    let step = (pristine.len() / 400).max(1);
    for at in (0..pristine.len()).step_by(step).chain([0, 1, 8, 16, 64, 512, 4095, 4096]) {
        let mut bytes = pristine.clone();
        bytes[at] ^= 1 << (at % 8);
        std::fs::write(&victim, &bytes).unwrap();
        tally.check(&format!("flip at {at}"), read_all(&victim).await, &last, &previous);
    }
    // Truncations.
    for len in [0, 1, 100, 511, 4096, pristine.len() / 3, pristine.len() / 2, pristine.len() - 1] {
        std::fs::write(&victim, &pristine[..len]).unwrap();
        tally.check(&format!("truncate to {len}"), read_all(&victim).await, &last, &previous);
    }
    // Swapped 4 KiB pages.
    let pages = pristine.len() / 4096;
    for (a, b) in [(1, 2), (2, 5), (3, pages - 1), (0, pages / 2), (pages / 3, pages / 2)] {
        if a == b || b >= pages {
            continue;
        }
        let mut bytes = pristine.clone();
        let (pa, pb) = (
            pristine[a * 4096..(a + 1) * 4096].to_vec(),
            pristine[b * 4096..(b + 1) * 4096].to_vec(),
        );
        bytes[a * 4096..(a + 1) * 4096].copy_from_slice(&pb);
        bytes[b * 4096..(b + 1) * 4096].copy_from_slice(&pa);
        std::fs::write(&victim, &bytes).unwrap();
        tally.check(&format!("swap pages {a} and {b}"), read_all(&victim).await, &last, &previous);
    }
    println!(
        "{tally:?} over {} damaged files; {} panics inside redb caught and reported as damage",
        tally.intact + tally.previous_commit + tally.errors,
        ENGINE_PANICS.load(Ordering::SeqCst)
    );
    assert!(tally.errors > 0, "some damage must have been detected");
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "no panic of ours, whatever the damage");
}

/// Moves sealed values between rows with redb itself, as an attacker with write access but no
/// key would: every moved value is refused, naming its table.
#[tokio::test]
async fn values_moved_between_rows_or_tables_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    build(&path).await;
    let log = redb::TableDefinition::<&[u8], &[u8]>::new("t4");
    let contacts = redb::TableDefinition::<&[u8], &[u8]>::new("t1");

    // Swap two message log rows.
    {
        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut table = txn.open_table(log).unwrap();
            let rows: Vec<(Vec<u8>, Vec<u8>)> = table
                .iter()
                .unwrap()
                .take(2)
                .map(|r| {
                    let (k, v) = r.unwrap();
                    (k.value().to_vec(), v.value().to_vec())
                })
                .collect();
            table.insert(rows[0].0.as_slice(), rows[1].1.as_slice()).unwrap();
            table.insert(rows[1].0.as_slice(), rows[0].1.as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    let err = read_all(&path).await.unwrap_err();
    assert!(err.contains("corrupted row in the message log"), "{err}");

    // Copy a contact's sealed value into the log.
    let path = dir.path().join("s2.redb");
    build(&path).await;
    {
        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let contact_value = txn
                .open_table(contacts)
                .unwrap()
                .iter()
                .unwrap()
                .next()
                .unwrap()
                .unwrap()
                .1
                .value()
                .to_vec();
            let mut table = txn.open_table(log).unwrap();
            let key = table.iter().unwrap().next().unwrap().unwrap().0.value().to_vec();
            table.insert(key.as_slice(), contact_value.as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    let err = read_all(&path).await.unwrap_err();
    assert!(err.contains("corrupted row in the message log"), "{err}");
}
