//! Store benchmark: prints a table comparing the encrypted store with plain redb doing the same
//! writes (same rows, same plaintext sizes, same durability, same batch size), measured in the
//! same run on the same disk. Run with `cargo bench -p tincan-store --bench store`.
//!
//! One "append" is what queuing a message costs: the log entry and the outbox entry, plus the
//! contact's counters, which the store reads and writes once per commit. The plain baseline
//! writes the same rows with the same record contents, unsealed and unpadded.

#![allow(clippy::unwrap_used, clippy::print_stdout)] // A benchmark binary: fail loudly, print a table.

use std::path::Path;
use std::time::{Duration, Instant};

use redb::{Database, Durability, ReadableTable, TableDefinition};
use tincan_identity::StoreRootKey;
use tincan_store::*;
use tincan_wire::{MessageId, PeerIdBytes, Seq, Text, Username};

const TEXT_LEN: usize = 200;
const SEQUENTIAL: usize = 1000;
const WRITERS: usize = 64;
const PER_WRITER: usize = 200;
/// Rounds of each measurement, alternating encrypted and plain so that both see the same
/// machine; the table shows medians.
const ROUNDS: usize = 5;

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let text = Text::new(&"x".repeat(TEXT_LEN)).unwrap();
    let store =
        Store::create(&dir.path().join("encrypted.redb"), &StoreRootKey::from_bytes([1; 32]))
            .unwrap();
    let conv = runtime.block_on(async {
        let peer = PeerIdBytes::new(&[0, 36, 8, 1, 18, 32, 7]).unwrap();
        store
            .add_contact(Username::new("bob").unwrap(), peer, UnixMillis(0))
            .await
            .unwrap()
            .conversation
    });
    let plain = Plain::new(&dir.path().join("plain.redb"), text.clone());

    let (mut enc_seq, mut plain_seq, mut enc_group, mut plain_group, mut batches) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut enc_lat, mut plain_lat) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        // Sequential: one append per durable commit.
        let lat = runtime.block_on(async {
            let mut lat = Vec::with_capacity(SEQUENTIAL);
            for i in 0..SEQUENTIAL {
                let t = Instant::now();
                store.enqueue(conv, text.clone(), UnixMillis(i as u64)).await.unwrap();
                lat.push(t.elapsed());
            }
            lat
        });
        enc_seq.push(SEQUENTIAL as f64 / lat.iter().sum::<Duration>().as_secs_f64());
        enc_lat.extend(lat);
        let mut lat = Vec::with_capacity(SEQUENTIAL);
        for _ in 0..SEQUENTIAL {
            let t = Instant::now();
            plain.commit(1);
            lat.push(t.elapsed());
        }
        plain_seq.push(SEQUENTIAL as f64 / lat.iter().sum::<Duration>().as_secs_f64());
        plain_lat.extend(lat);

        // 64 concurrent writers: the store groups their appends into commits.
        let (rate, batch) = runtime.block_on(async {
            let before = store.stats();
            let t = Instant::now();
            let mut tasks = Vec::new();
            for _ in 0..WRITERS {
                let (store, text) = (store.clone(), text.clone());
                tasks.push(tokio::spawn(async move {
                    for i in 0..PER_WRITER {
                        store.enqueue(conv, text.clone(), UnixMillis(i as u64)).await.unwrap();
                    }
                }));
            }
            for task in tasks {
                task.await.unwrap();
            }
            let elapsed = t.elapsed();
            let after = store.stats();
            let batch =
                (after.writes - before.writes) as f64 / (after.commits - before.commits) as f64;
            ((WRITERS * PER_WRITER) as f64 / elapsed.as_secs_f64(), batch)
        });
        enc_group.push(rate);
        batches.push(batch);
        // Plain redb, committing batches of the size the store just reached.
        let size = batch.round().max(1.0) as usize;
        let total = WRITERS * PER_WRITER;
        let t = Instant::now();
        let mut done = 0;
        while done < total {
            plain.commit(size.min(total - done));
            done += size;
        }
        plain_group.push(total as f64 / t.elapsed().as_secs_f64());
    }
    runtime.block_on(store.close());

    let (enc_p50, enc_p99) = percentiles(&mut enc_lat);
    let (plain_p50, plain_p99) = percentiles(&mut plain_lat);
    let (enc_seq, plain_seq) = (median(&mut enc_seq), median(&mut plain_seq));
    let (enc_group, plain_group, batch) =
        (median(&mut enc_group), median(&mut plain_group), median(&mut batches));
    println!();
    println!(
        "tincan-store benchmark: {TEXT_LEN}-byte messages, Durability::Immediate, medians of {ROUNDS} alternating rounds"
    );
    println!();
    println!("| measurement | encrypted store | plain redb (baseline) | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| appends/s, 1 per commit ({SEQUENTIAL} sequential) | {enc_seq:.0} | {plain_seq:.0} | {:.2} |",
        enc_seq / plain_seq
    );
    println!(
        "| commit latency p50 / p99, 1 message | {} / {} | {} / {} | {:.2} |",
        ms(enc_p50),
        ms(enc_p99),
        ms(plain_p50),
        ms(plain_p99),
        plain_p50.as_secs_f64() / enc_p50.as_secs_f64()
    );
    println!(
        "| appends/s, {WRITERS} concurrent writers, group commit ({batch:.1} per commit; plain in batches of the same size) | {enc_group:.0} | {plain_group:.0} | {:.2} |",
        enc_group / plain_group
    );
    println!();
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn percentiles(samples: &mut [Duration]) -> (Duration, Duration) {
    samples.sort();
    (samples[samples.len() / 2], samples[samples.len() * 99 / 100])
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

const LOG: TableDefinition<&[u8], &[u8]> = TableDefinition::new("log");
const OUTBOX: TableDefinition<&[u8], &[u8]> = TableDefinition::new("outbox");
const CONTACTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("contacts");

/// The same rows as an append, written to plain redb as unpadded CBOR.
struct Plain {
    db: Database,
    text: Text,
    next: std::cell::Cell<u64>,
}

impl Plain {
    fn new(path: &Path, text: Text) -> Plain {
        let db = Database::create(path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut contacts = txn.open_table(CONTACTS).unwrap();
            contacts.insert(&[0u8; 16][..], cbor(&0u64).as_slice()).unwrap();
            txn.open_table(LOG).unwrap();
            txn.open_table(OUTBOX).unwrap();
        }
        txn.commit().unwrap();
        Plain { db, text, next: std::cell::Cell::new(1) }
    }

    /// Commits `n` appends in one durable transaction.
    fn commit(&self, n: usize) {
        let mut txn = self.db.begin_write().unwrap();
        txn.set_durability(Durability::Immediate).unwrap();
        {
            let mut log = txn.open_table(LOG).unwrap();
            let mut outbox = txn.open_table(OUTBOX).unwrap();
            let mut contacts = txn.open_table(CONTACTS).unwrap();
            let _contact: u64 =
                ciborium::from_reader(contacts.get(&[0u8; 16][..]).unwrap().unwrap().value())
                    .unwrap();
            for _ in 0..n {
                let seq = self.next.get();
                self.next.set(seq + 1);
                let id = MessageId([seq as u8; 16]);
                let mut key = [0u8; 24];
                key[16..].copy_from_slice(&seq.to_be_bytes());
                let entry = LogEntry {
                    position: seq,
                    direction: Direction::Outgoing,
                    id,
                    seq: Seq::new(seq).unwrap(),
                    sent_at: UnixMillis(seq),
                    stored_at: UnixMillis(seq),
                    status: Status::Queued,
                    text: self.text.clone(),
                    claimed_from: None,
                    missing_before: 0,
                    late: false,
                };
                let queued = OutboxRow {
                    seq: Seq::new(seq).unwrap(),
                    id,
                    sent_at: UnixMillis(seq),
                    position: seq,
                    attempts: 0,
                    next_attempt_at: UnixMillis(seq),
                };
                log.insert(&key[..], cbor(&entry).as_slice()).unwrap();
                outbox.insert(&key[..], cbor(&queued).as_slice()).unwrap();
            }
            contacts.insert(&[0u8; 16][..], cbor(&self.next.get()).as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
}

/// The fields of the store's outbox row (`specs/store.md`).
#[derive(serde::Serialize)]
struct OutboxRow {
    seq: Seq,
    id: MessageId,
    sent_at: UnixMillis,
    position: u64,
    attempts: u32,
    next_attempt_at: UnixMillis,
}

fn cbor<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).unwrap();
    out
}
