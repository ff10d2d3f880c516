//! Group commit: concurrent writers share commits, each is answered only once its write is
//! committed (a new read transaction sees it), and no two get the same sequence number.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::collections::BTreeSet;

use common::*;
use tincan_store::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_writers_share_commits_and_see_their_own_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("group.redb");
    let store = Store::create(&path, &root()).unwrap();
    let conv = store.add_contact(name("bob"), peer(1), UnixMillis(0)).await.unwrap().conversation;
    let before = store.stats();
    let mut tasks = Vec::new();
    for w in 0..64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..40 {
                let q = store
                    .enqueue(conv, text(&format!("writer {w} message {i}")), UnixMillis(i))
                    .await
                    .unwrap();
                // Answered means committed: a fresh snapshot already holds it.
                assert!(
                    store.entry(conv, q.position).await.unwrap().is_some(),
                    "answered before commit"
                );
                ids.push((q.id, q.seq.get()));
            }
            ids
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let stats = store.stats();
    let (commits, writes) = (stats.commits - before.commits, stats.writes - before.writes);
    println!("{writes} writes in {commits} commits");
    assert_eq!(writes, 64 * 40);
    assert!(commits * 4 <= writes, "writes were not grouped: {writes} writes, {commits} commits");

    let seqs: BTreeSet<u64> = all.iter().map(|(_, s)| *s).collect();
    assert_eq!(seqs, (1..=64 * 40).collect(), "sequence numbers are unique and gapless");
    store.close().await;
    let reopened = Store::open(&path, &root()).unwrap();
    let outbox = reopened.outbox(conv, usize::MAX).await.unwrap();
    let ids: BTreeSet<_> = outbox.iter().map(|e| e.id).collect();
    assert_eq!(ids, all.iter().map(|(id, _)| *id).collect());
}
