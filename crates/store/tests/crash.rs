//! Crash safety: a child process writes as fast as it can, from several tasks at once, and is
//! killed with SIGKILL at random moments. After every kill the store must open cleanly and hold
//! every write whose call had returned, exactly once, and nothing half-written.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use tincan_identity::StoreRootKey;
use tincan_store::*;
use tincan_wire::{MessageId, PeerIdBytes, Seq, Text, Username};

const CHILD: &str = "TINCAN_STORE_CRASH_CHILD";
const ROUNDS: u64 = 24;

fn root() -> StoreRootKey {
    StoreRootKey::from_bytes([5; 32])
}

fn bob() -> PeerIdBytes {
    PeerIdBytes::new(&[0, 36, 8, 1, 18, 32, 9, 9, 9]).unwrap()
}

/// The child: eight tasks enqueue outgoing messages and four store incoming ones, printing
/// each id only after the store answered.
async fn child(path: PathBuf) {
    // A kill between creating the file and initializing it leaves an empty file: create again.
    let store = if std::fs::metadata(&path).is_ok_and(|m| m.len() > 0) {
        Store::open(&path, &root())
    } else {
        Store::create(&path, &root())
    }
    .unwrap();
    let conv = match store.contact_by_peer(&bob()).await.unwrap() {
        Some(c) => c.conversation,
        None => {
            store
                .add_contact(Username::new("bob").unwrap(), bob(), UnixMillis(0))
                .await
                .unwrap()
                .conversation
        }
    };
    let start_seq = store.contact(conv).await.unwrap().unwrap().next_expected_seq;
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                let q = store
                    .enqueue(conv, Text::new(&format!("out {t} {i}")).unwrap(), UnixMillis(i))
                    .await
                    .unwrap();
                println!("E {}", q.id);
            }
        }));
    }
    for t in 0..4u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0u64.. {
                let mut id = [0u8; 16];
                id[..8].copy_from_slice(&t.to_be_bytes());
                id[8..].copy_from_slice(&(start_seq + i).to_be_bytes());
                id[0] = 0xee;
                let message = Incoming {
                    id: MessageId(id),
                    seq: Seq::new(start_seq + i * 4 + t).unwrap(),
                    sent_at: UnixMillis(i),
                    from: Username::new("bob").unwrap(),
                    text: Text::new("in").unwrap(),
                };
                store
                    .receive(conv, vec![message], UnixMillis(i), RequestLimits::default())
                    .await
                    .unwrap();
                println!("R {}", MessageId(id));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// Checks the store at `path` against everything the child reported, and its internal
/// consistency. Returns how many log entries it holds.
async fn verify(path: &Path, reported: &BTreeSet<String>) -> usize {
    if !std::fs::metadata(path).is_ok_and(|m| m.len() > 0) {
        assert!(reported.is_empty());
        return 0;
    }
    let store = Store::open(path, &root()).unwrap();
    let Some(contact) = store.contact_by_peer(&bob()).await.unwrap() else {
        assert!(reported.is_empty());
        return 0;
    };
    let conv = contact.conversation;
    let log = store.history(conv, None, usize::MAX).await.unwrap();
    assert_eq!(log.len() as u64, contact.log_len, "contact counter matches the log");
    let mut count: HashMap<String, usize> = HashMap::new();
    for (i, entry) in log.iter().enumerate() {
        assert_eq!(entry.position, i as u64, "positions are contiguous");
        *count.entry(entry.id.to_string()).or_default() += 1;
    }
    assert!(count.values().all(|&n| n == 1), "an id appears twice in the log");
    for id in reported {
        assert_eq!(count.get(id), Some(&1), "acknowledged write {id} is missing");
    }
    // Every outbox entry has its log entry, and every queued log entry its outbox entry.
    let outbox = store.outbox(conv, usize::MAX).await.unwrap();
    let queued: BTreeSet<_> = log
        .iter()
        .filter(|e| e.direction == Direction::Outgoing && e.status == Status::Queued)
        .map(|e| e.id)
        .collect();
    let in_outbox: BTreeSet<_> = outbox.iter().map(|e| e.id).collect();
    assert_eq!(queued, in_outbox, "outbox and log agree");
    let max_seq = outbox.iter().map(|e| e.seq.get()).max().unwrap_or(0);
    assert_eq!(contact.last_sent_seq, max_seq, "send counter matches the outbox");
    store.close().await;
    log.len()
}

#[test]
fn every_acknowledged_write_survives_sigkill() {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    if let Ok(path) = std::env::var(CHILD) {
        runtime.block_on(child(PathBuf::from(path)));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let exe = std::env::current_exe().unwrap();
    let mut reported = BTreeSet::new();
    let mut seed =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
            as u64
            | 1;
    println!("seed {seed}");
    let mut kills_mid_write = 0;
    for round in 0..ROUNDS {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut child = Command::new(&exe)
            .args(["--exact", "every_acknowledged_write_survives_sigkill", "--nocapture"])
            .env(CHILD, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout).lines().map_while(Result::ok).collect::<Vec<_>>()
        });
        std::thread::sleep(Duration::from_millis(20 + seed % 150));
        child.kill().unwrap();
        child.wait().unwrap();
        let lines = reader.join().unwrap();
        // A line cut short by the kill is skipped: its write committed, but its id is partial.
        let new = lines
            .iter()
            .filter_map(|l| l.strip_prefix("E ").or_else(|| l.strip_prefix("R ")))
            .filter(|id| id.len() == 32)
            .map(str::to_owned);
        let before = reported.len();
        reported.extend(new);
        if reported.len() > before {
            kills_mid_write += 1;
        }
        let entries = runtime.block_on(verify(&path, &reported));
        println!(
            "round {round}: {} acknowledged writes so far, {entries} log entries",
            reported.len()
        );
    }
    assert!(kills_mid_write >= ROUNDS / 2, "the child was killed before writing too often");
}
