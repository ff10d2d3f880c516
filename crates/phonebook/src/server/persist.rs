//! Durable bindings: a redb file in the data directory, written by one thread that groups
//! concurrent writes into one durable commit.

use std::path::Path;
use std::thread::JoinHandle;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::{SignedDelete, SignedRecord};

const BINDINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("bindings");

/// What is kept per username: the binding and the latest proof of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Stored {
    pub(crate) peer_id: String,
    pub(crate) seq: u64,
    pub(crate) record: Option<SignedRecord>,
    pub(crate) deletion: Option<SignedDelete>,
    pub(crate) presence_until: u64,
    pub(crate) bound_at: u64,
    pub(crate) last_seen: u64,
    /// A released name: nobody holds it, but records with a `seq` up to this entry's are
    /// refused until this time (ms), when every record the owner signed below it has expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) released_until: Option<u64>,
    /// The record's Olm keys (record version 2, `specs/phonebook.md` §2.5), hex as sent. Kept
    /// here, not in `record`, so that a server older than version 2 still reads the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) olm_keys: Option<String>,
}

/// Why persisting failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("storage error: {0}")]
pub struct PersistError(String);

impl PersistError {
    pub(crate) fn new(what: String) -> PersistError {
        PersistError(what)
    }
}

type Reply = oneshot::Sender<Result<(), PersistError>>;

enum Write {
    Put(String, Vec<u8>, Reply),
    Remove(String, Reply),
}

/// The handle to the writer thread.
pub(crate) struct Persist {
    tx: Option<mpsc::Sender<Write>>,
    thread: Option<JoinHandle<()>>,
}

impl Persist {
    /// Opens (or creates) `phonebook.redb` in `dir` and returns every stored binding.
    pub(crate) fn open(dir: &Path) -> Result<(Persist, Vec<(String, Stored)>), PersistError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| PersistError(format!("creating {}: {e}", dir.display())))?;
        let mut builder = Database::builder();
        builder.set_cache_size(8 << 20);
        let db = builder
            .create(dir.join("phonebook.redb"))
            .map_err(|e| PersistError(format!("opening the bindings database: {e}")))?;
        let loaded = load(&db)?;
        let (tx, rx) = mpsc::channel(4096);
        let thread = std::thread::Builder::new()
            .name("phonebook-writer".into())
            .spawn(move || writer(db, rx))
            .map_err(|e| PersistError(e.to_string()))?;
        Ok((Persist { tx: Some(tx), thread: Some(thread) }, loaded))
    }

    /// Queues a write and returns what resolves once it is durable. Callers queue while they
    /// hold the index lock, so writes reach the disk in the order they were applied in memory.
    pub(crate) fn put(&self, username: &str, stored: &Stored) -> Result<Pending, PersistError> {
        let bytes = serde_json::to_vec(stored).map_err(|e| PersistError(e.to_string()))?;
        self.queue(|reply| Write::Put(username.to_owned(), bytes, reply))
    }

    /// Like [`Persist::put`], for removing a binding.
    pub(crate) fn remove(&self, username: &str) -> Result<Pending, PersistError> {
        self.queue(|reply| Write::Remove(username.to_owned(), reply))
    }

    fn queue(&self, write: impl FnOnce(Reply) -> Write) -> Result<Pending, PersistError> {
        let (reply, done) = oneshot::channel();
        let tx = self.tx.as_ref().ok_or_else(|| PersistError("closed".into()))?;
        tx.try_send(write(reply)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => PersistError("too many writes waiting".into()),
            mpsc::error::TrySendError::Closed(_) => PersistError("the writer stopped".into()),
        })?;
        Ok(Pending(done))
    }
}

/// A queued write, resolving once committed.
pub(crate) struct Pending(oneshot::Receiver<Result<(), PersistError>>);

impl Pending {
    pub(crate) async fn wait(self) -> Result<(), PersistError> {
        self.0.await.map_err(|_| PersistError("the writer stopped".into()))?
    }
}

impl Drop for Persist {
    /// Lets the writer commit what is queued, then waits for it: data is flushed on shutdown.
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn load(db: &Database) -> Result<Vec<(String, Stored)>, PersistError> {
    let err = |e: &dyn std::fmt::Display| PersistError(format!("reading bindings: {e}"));
    let txn = db.begin_write().map_err(|e| err(&e))?;
    txn.open_table(BINDINGS).map_err(|e| err(&e))?;
    txn.commit().map_err(|e| err(&e))?;
    let txn = db.begin_read().map_err(|e| err(&e))?;
    let table = txn.open_table(BINDINGS).map_err(|e| err(&e))?;
    let mut out = Vec::new();
    for row in table.iter().map_err(|e| err(&e))? {
        let (k, v) = row.map_err(|e| err(&e))?;
        let stored: Stored = serde_json::from_slice(v.value())
            .map_err(|e| PersistError(format!("binding {:?} is unreadable: {e}", k.value())))?;
        out.push((k.value().to_owned(), stored));
    }
    Ok(out)
}

fn writer(db: Database, mut rx: mpsc::Receiver<Write>) {
    let mut batch = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < 1024 {
            match rx.try_recv() {
                Ok(w) => batch.push(w),
                Err(_) => break,
            }
        }
        let result = commit(&db, &batch).map_err(|e| PersistError(e.to_string()));
        for write in batch.drain(..) {
            let (Write::Put(_, _, reply) | Write::Remove(_, reply)) = write;
            let _ = reply.send(result.clone());
        }
    }
}

fn commit(db: &Database, batch: &[Write]) -> Result<(), redb::Error> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    {
        let mut table = txn.open_table(BINDINGS)?;
        for write in batch {
            match write {
                Write::Put(name, bytes, _) => {
                    table.insert(name.as_str(), bytes.as_slice())?;
                }
                Write::Remove(name, _) => {
                    table.remove(name.as_str())?;
                }
            }
        }
    }
    txn.commit()?;
    Ok(())
}
