//! The [`Store`] handle: opening, the group-commit writer thread, and reads.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redb::{
    ConcurrencyMode, Database, Durability, ReadOnlyDatabase, ReadTransaction, ReadableDatabase,
    ReadableTable,
};
use tincan_identity::{PublicKey, StoreRootKey};
use tincan_seal::{Account, Envelope};
use tincan_wire::{MessageId, PeerIdBytes, Seq, Text, UnixMillis, Username};
use tokio::sync::{mpsc, oneshot};

use crate::crypto::Keys;
use crate::ops::{self, Ctx, OutboxRow, Outcome};
use crate::rows::{self, get};
use crate::sealed;
use crate::tables::Table;
use crate::{
    Contact, ConversationId, Incoming, KeysUpdate, LogEntry, OpenError, OutboxEntry, Queued,
    Received, SealedReceipt, Status, StoreError,
};

/// The newest store format this build reads and the one it writes.
pub const FORMAT_VERSION: u32 = 1;

/// The plaintext of the key-check row, followed by the format version.
const KEY_CHECK: &[u8] = b"tincan store key check";
const META_FORMAT: &[u8] = b"format";
const META_CHECK: &[u8] = b"check";

/// A migration from format `n` to `n + 1`, run inside the opening transaction.
pub(crate) type Migration = fn(&redb::WriteTransaction, &Keys) -> Result<(), String>;

/// Migrations, indexed by the version they migrate from, minus one. Version 1 is the first
/// format, so there are none yet; the next format adds its step here.
const MIGRATIONS: &[Migration] = &[];

/// How a store commits.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Whether each commit waits for the disk (`Immediate`, the default) or not (`None`,
    /// for benchmarks and imports that finish with a durable commit).
    pub durability: Durability,
    /// Most writes grouped into one commit.
    pub max_batch: usize,
    /// Most writes waiting for the writer; callers wait when it is full.
    pub queue: usize,
    /// redb's page cache, in bytes.
    pub cache_bytes: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            durability: Durability::Immediate,
            max_batch: 1024,
            queue: 4096,
            cache_bytes: 16 << 20,
        }
    }
}

/// Counters of the writer, for tests and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Transactions committed.
    pub commits: u64,
    /// Write operations committed.
    pub writes: u64,
}

type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// What the writer thread receives.
enum Msg {
    /// A write to run in the next batch.
    Job(Job),
    /// Finish the current batch, then stop.
    Stop,
}

/// A write: run with the batch's context (or `None` if the transaction could not start), it
/// returns what to do once the commit's result is known.
type Job = Box<dyn FnOnce(Option<&Ctx<'_>>) -> Completion + Send>;

/// Whether the store can write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Health {
    /// Writes commit.
    Ok,
    /// The disk is full: writes fail until space is freed. The store reopens itself once there
    /// is room again, without losing anything it acknowledged.
    DiskFull,
    /// Writing failed for another reason (an I/O error); the store retries.
    Failing,
}

/// The database a store reads from and writes to.
enum Db {
    /// This process writes; other processes may read alongside.
    Writable(Database),
    /// This process only reads (`Store::open_read_only`).
    ReadOnly(ReadOnlyDatabase),
}

impl Db {
    fn begin_read(&self) -> Result<ReadTransaction, StoreError> {
        match self {
            Db::Writable(db) => db.begin_read(),
            Db::ReadOnly(db) => db.begin_read(),
        }
        .map_err(StoreError::storage)
    }
}

/// The database, swapped by the writer when it reopens the file after an I/O error (redb
/// refuses every write after one until the database is reopened), and the store's health.
struct Cell {
    db: RwLock<Option<Arc<Db>>>,
    /// The file, to reopen; `None` for a custom backend, which cannot be reopened.
    path: Option<PathBuf>,
    options: Options,
    health: tokio::sync::watch::Sender<Health>,
}

impl Cell {
    fn get(&self) -> Result<Arc<Db>, StoreError> {
        self.db.read().unwrap_or_else(|e| e.into_inner()).clone().ok_or(StoreError::DiskFull)
    }
}

struct Inner {
    cell: Arc<Cell>,
    keys: Arc<Keys>,
    jobs: mpsc::Sender<Msg>,
    commits: Arc<AtomicU64>,
    writes: Arc<AtomicU64>,
    writer: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    /// The last handle is gone: stop the writer and wait for it, so that the file is closed
    /// when the drop returns and can be opened again at once. Prefer [`Store::close`] in async
    /// code; this join blocks for at most the writer's current batch.
    fn drop(&mut self) {
        // Close our end of the queue: the writer drains what is queued, then stops.
        let (closed, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut self.jobs, closed));
        if let Some(handle) = self.writer.get_mut().ok().and_then(Option::take) {
            let _ = handle.join();
        }
    }
}

/// An open store. Cheap to clone; all clones share one writer thread.
///
/// Writes are queued to a dedicated thread that groups whatever is waiting into one durable
/// transaction (group commit) and answers each caller only after that transaction committed.
/// Reads run on tokio's blocking pool against a snapshot. Every method must be called from
/// within a tokio runtime.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Creates a new store at `path`, with default options. Fails if a non-empty file is there.
    pub fn create(path: &Path, root: &StoreRootKey) -> Result<Store, OpenError> {
        Store::create_with(path, root, Options::default())
    }

    /// Like [`Store::create`], with chosen options.
    pub fn create_with(
        path: &Path,
        root: &StoreRootKey,
        options: Options,
    ) -> Result<Store, OpenError> {
        match std::fs::metadata(path) {
            Ok(meta) if meta.len() > 0 => return Err(OpenError::AlreadyExists),
            _ => {}
        }
        let db = create_file(path, options)?;
        start(db, Some(path), root, options, MIGRATIONS, FORMAT_VERSION, true)
    }

    /// Opens the existing store at `path` for reading only, alongside the process that writes
    /// it, if one does: it sees that process's commits. Nothing is written to the file, not
    /// even when the key is wrong; writes return [`StoreError::ReadOnly`]. A file that needs
    /// repair after a crash is [`OpenError::NeedsRepair`]: open it writable once.
    pub fn open_read_only(path: &Path, root: &StoreRootKey) -> Result<Store, OpenError> {
        let options = Options::default();
        check_exists(path)?;
        let keys = Keys::derive(root);
        // A read-only open does not check the file's integrity as a writable one does, and redb
        // may panic on a damaged file: that is an error here, not a crash.
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut builder = Database::builder();
            builder.set_cache_size(options.cache_bytes).set_concurrency_mode(CONCURRENCY);
            let db = builder.open_read_only(path).map_err(open_error)?;
            let txn = db.begin_read().map_err(|e| OpenError::Storage(e.to_string()))?;
            match check(&txn, &keys, FORMAT_VERSION)? {
                Some(found) if found == FORMAT_VERSION => {}
                Some(found) => {
                    return Err(OpenError::Migration {
                        from: found,
                        reason: "the store needs a migration; open it with a command that writes"
                            .into(),
                    });
                }
                None => {
                    return Err(OpenError::Corrupted(
                        "not a tincan store: no format version".into(),
                    ));
                }
            }
            drop(txn);
            Ok(db)
        }));
        let db = opened.map_err(|_| {
            OpenError::Corrupted("the database engine failed on this file".into())
        })??;
        let (jobs, mut rx) = mpsc::channel(1);
        // No writer: every write is refused at once.
        let writer = std::thread::Builder::new()
            .name("tincan-store-readonly".into())
            .spawn(move || {
                while let Some(msg) = rx.blocking_recv() {
                    match msg {
                        Msg::Job(job) => job(None)(Err(StoreError::ReadOnly)),
                        Msg::Stop => break,
                    }
                }
            })
            .map_err(|e| OpenError::Storage(e.to_string()))?;
        let (health, _) = tokio::sync::watch::channel(Health::Ok);
        let cell =
            Cell { db: RwLock::new(Some(Arc::new(Db::ReadOnly(db)))), path: None, options, health };
        Ok(Store {
            inner: Arc::new(Inner {
                cell: Arc::new(cell),
                keys: Arc::new(keys),
                jobs,
                commits: Default::default(),
                writes: Default::default(),
                writer: std::sync::Mutex::new(Some(writer)),
            }),
        })
    }

    /// Opens the existing store at `path`, with default options.
    ///
    /// A missing file is [`OpenError::NotFound`] and an empty one [`OpenError::Corrupted`]:
    /// a store that lost its data must not silently reappear as a new, empty one.
    pub fn open(path: &Path, root: &StoreRootKey) -> Result<Store, OpenError> {
        Store::open_with(path, root, Options::default())
    }

    /// Like [`Store::open`], with chosen options.
    pub fn open_with(
        path: &Path,
        root: &StoreRootKey,
        options: Options,
    ) -> Result<Store, OpenError> {
        check_exists(path)?;
        // Refusals (another identity's key, a newer format) are found by a read-only look
        // first: opening writable writes to the file, and a refused store must stay as it was.
        match Store::open_read_only(path, root) {
            Ok(store) => drop(store),
            Err(e @ (OpenError::WrongKey | OpenError::UnsupportedVersion { .. })) => return Err(e),
            // A file that needs repair, a migration, or that the read-only look could not make
            // sense of, is checked again (integrity included) by the writable open.
            Err(_) => {}
        }
        let db = create_file(path, options)?;
        start(db, Some(path), root, options, MIGRATIONS, FORMAT_VERSION, false)
    }

    /// Whether the store can write now, and when that changes: a full disk, and the recovery
    /// once there is room again.
    pub fn health(&self) -> tokio::sync::watch::Receiver<Health> {
        self.inner.cell.health.subscribe()
    }

    /// Opens a store kept by a custom redb storage backend: in memory, or one that injects
    /// failures in tests.
    pub fn open_on_backend(
        backend: impl redb::StorageBackend,
        root: &StoreRootKey,
        options: Options,
    ) -> Result<Store, OpenError> {
        let mut builder = Database::builder();
        builder.set_cache_size(options.cache_bytes).set_check_integrity_on_open(true);
        let db = builder.create_with_backend(backend).map_err(open_error)?;
        start(db, None, root, options, MIGRATIONS, FORMAT_VERSION, true)
    }

    /// Commits the writes queued so far and stops the writer. Later writes, through any
    /// clone, return [`StoreError::Closed`]; the file closes when the last clone is dropped.
    pub async fn close(self) {
        let handle = self.inner.writer.lock().ok().and_then(|mut w| w.take());
        // Dropping our sender is not enough while clones hold theirs, so ask the writer to stop.
        let _ = self.inner.jobs.send(Msg::Stop).await;
        if let Some(handle) = handle {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
    }

    /// The writer's counters so far.
    pub fn stats(&self) -> Stats {
        Stats {
            commits: self.inner.commits.load(Ordering::Relaxed),
            writes: self.inner.writes.load(Ordering::Relaxed),
        }
    }

    async fn write<R: Send + 'static>(
        &self,
        op: impl FnOnce(&Ctx<'_>) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |ctx| {
            let outcome = ctx.map(op);
            Box::new(move |committed: Result<(), StoreError>| {
                let _ =
                    tx.send(committed.and_then(|()| outcome.unwrap_or(Err(StoreError::Closed))));
            })
        });
        self.inner.jobs.send(Msg::Job(job)).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn read<R: Send + 'static>(
        &self,
        op: impl FnOnce(&ReadTransaction, &Keys) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let cell = self.inner.cell.clone();
        let keys = self.inner.keys.clone();
        tokio::task::spawn_blocking(move || {
            // redb is not supposed to panic on a damaged file, but a read-only database skips
            // the integrity check of a writable open: a panic is reported as damage.
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let txn = cell.get()?.begin_read()?;
                op(&txn, &keys)
            }))
            .unwrap_or(Err(StoreError::Corrupted { table: "store" }))
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }

    // ---- contacts ------------------------------------------------------------------------

    /// Adds a contact pinned to `peer`, or turns the message request from `peer` into a contact
    /// named `username`. Fails if the username or the peer belongs to another contact.
    pub async fn add_contact(
        &self,
        username: Username,
        peer: PeerIdBytes,
        now: UnixMillis,
    ) -> Result<Contact, StoreError> {
        self.write(move |ctx| ops::add_contact(ctx, username, peer, now)).await
    }

    /// The message request from `peer`, created if `peer` is unknown; the existing contact or
    /// request otherwise. A new request is refused ([`StoreError::TooManyRequests`]) when
    /// `max_requests` already wait.
    pub async fn add_request(
        &self,
        peer: PeerIdBytes,
        claimed: Username,
        now: UnixMillis,
        max_requests: usize,
    ) -> Result<Contact, StoreError> {
        self.write(move |ctx| ops::add_request(ctx, peer, claimed, now, max_requests)).await
    }

    /// Records what a phonebook said of the name a message request claims.
    pub async fn set_claim(
        &self,
        conv: ConversationId,
        claim: crate::Claim,
    ) -> Result<Contact, StoreError> {
        self.write(move |ctx| ops::update_contact(ctx, conv, |c| c.claim = claim)).await
    }

    /// Deletes a conversation's messages, and the contact unless it is blocked
    /// ([`Deleted`](crate::Deleted) says which).
    pub async fn delete_conversation(
        &self,
        conv: ConversationId,
    ) -> Result<crate::Deleted, StoreError> {
        self.write(move |ctx| ops::delete_conversation(ctx, conv)).await
    }

    /// Accepts a message request: it becomes a contact under the username it claimed.
    pub async fn accept_request(&self, conv: ConversationId) -> Result<Contact, StoreError> {
        self.write(move |ctx| ops::accept_request(ctx, conv)).await
    }

    /// Blocks or unblocks a contact.
    pub async fn set_blocked(
        &self,
        conv: ConversationId,
        blocked: bool,
    ) -> Result<Contact, StoreError> {
        self.write(move |ctx| ops::update_contact(ctx, conv, |c| c.blocked = blocked)).await
    }

    /// Marks a contact's key as verified (safety numbers compared) or not.
    pub async fn set_verified(
        &self,
        conv: ConversationId,
        verified: bool,
    ) -> Result<Contact, StoreError> {
        self.write(move |ctx| ops::update_contact(ctx, conv, |c| c.verified = verified)).await
    }

    /// Replaces the contact's last known addresses (at most [`MAX_ADDRS`](crate::MAX_ADDRS)).
    pub async fn set_addrs(
        &self,
        conv: ConversationId,
        addrs: Vec<String>,
    ) -> Result<Contact, StoreError> {
        self.write(move |ctx| ops::update_contact(ctx, conv, |c| c.addrs = addrs)).await
    }

    /// Marks everything received in the conversation as read.
    pub async fn mark_read(&self, conv: ConversationId) -> Result<Contact, StoreError> {
        self.write(move |ctx| ops::update_contact(ctx, conv, |c| c.unread = 0)).await
    }

    /// Marks as read what was received up to log position `through`, and only that: messages
    /// that arrived after it stay unread (a display marks read only what it showed).
    pub async fn mark_read_through(
        &self,
        conv: ConversationId,
        through: u64,
    ) -> Result<Contact, StoreError> {
        self.write(move |ctx| ops::mark_read_through(ctx, conv, through)).await
    }

    /// The log entries of the conversation whose text contains `needle`, ignoring case, oldest
    /// first; at most `limit` (the newest, when there are more).
    pub async fn search(
        &self,
        conv: ConversationId,
        needle: &str,
        limit: usize,
    ) -> Result<Vec<LogEntry>, StoreError> {
        let needle = needle.to_lowercase();
        self.read(move |txn, keys| {
            let log = open(txn, Table::Log)?;
            let (start, end) = rows::conv_range(&conv);
            let mut out = std::collections::VecDeque::new();
            for row in log.range::<&[u8]>(&start[..]..&end[..]).map_err(StoreError::storage)? {
                let (k, v) = row.map_err(StoreError::storage)?;
                let entry: LogEntry = rows::decode(keys, Table::Log, k.value(), v.value())?;
                if entry.text.as_str().to_lowercase().contains(&needle) {
                    if out.len() == limit {
                        out.pop_front();
                    }
                    out.push_back(entry);
                }
            }
            Ok(out.into())
        })
        .await
    }

    /// Queues again the messages of the conversation that the recipient refused as blocked,
    /// with their ids and sequence numbers (the recipient stored none of them). Returns how
    /// many.
    pub async fn requeue_refused(&self, conv: ConversationId) -> Result<usize, StoreError> {
        self.write(move |ctx| ops::requeue_refused(ctx, conv)).await
    }

    /// Up to `limit` log entries from position `from` on, oldest first.
    pub async fn history_from(
        &self,
        conv: ConversationId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<LogEntry>, StoreError> {
        self.read(move |txn, keys| {
            let log = open(txn, Table::Log)?;
            let start = rows::log_key(&conv, from);
            let (_, end) = rows::conv_range(&conv);
            rows::scan(keys, &log, Table::Log, &start[..]..&end[..], limit)
        })
        .await
    }

    /// Records that `new` was seen for the contact; if it is not the pinned PeerId it becomes
    /// the pending key, and sending stops until [`Store::trust_pending`].
    pub async fn note_key_change(
        &self,
        conv: ConversationId,
        new: PeerIdBytes,
        now: UnixMillis,
    ) -> Result<Contact, StoreError> {
        self.write(move |ctx| ops::note_key_change(ctx, conv, new, now)).await
    }

    /// Pins the pending key, which must be `expected`, the key whose safety number the user
    /// compared (`specs/delivery.md` §5); [`StoreError::PendingKeyChanged`] otherwise.
    pub async fn trust_pending(
        &self,
        conv: ConversationId,
        expected: PeerIdBytes,
        now: UnixMillis,
    ) -> Result<Contact, StoreError> {
        self.write(move |ctx| ops::trust_pending(ctx, conv, &expected, now)).await
    }

    /// Keeps the pinned key: the pending one is dropped and remembered as rejected.
    pub async fn reject_pending(
        &self,
        conv: ConversationId,
        now: UnixMillis,
    ) -> Result<Contact, StoreError> {
        self.write(move |ctx| ops::reject_pending(ctx, conv, now)).await
    }

    /// The contact of a conversation.
    pub async fn contact(&self, conv: ConversationId) -> Result<Option<Contact>, StoreError> {
        self.read(move |txn, keys| {
            let contacts = open(txn, Table::Contacts)?;
            get(keys, &contacts, Table::Contacts, &conv.0)
        })
        .await
    }

    /// The contact with this username (not requests, whose names are unverified claims).
    pub async fn contact_by_username(
        &self,
        name: &Username,
    ) -> Result<Option<Contact>, StoreError> {
        let name = name.clone();
        self.read(move |txn, keys| {
            let names = open(txn, Table::Names)?;
            let Some(conv) =
                get::<ConversationId>(keys, &names, Table::Names, &rows::name_key(keys, &name))?
            else {
                return Ok(None);
            };
            get(keys, &open(txn, Table::Contacts)?, Table::Contacts, &conv.0)
        })
        .await
    }

    /// The contact or request pinned to `peer`.
    pub async fn contact_by_peer(&self, peer: &PeerIdBytes) -> Result<Option<Contact>, StoreError> {
        let peer = peer.clone();
        self.read(move |txn, keys| {
            let peers = open(txn, Table::Peers)?;
            let Some(conv) =
                get::<ConversationId>(keys, &peers, Table::Peers, &rows::peer_key(keys, &peer))?
            else {
                return Ok(None);
            };
            get(keys, &open(txn, Table::Contacts)?, Table::Contacts, &conv.0)
        })
        .await
    }

    /// Every contact and request, by username.
    pub async fn contacts(&self) -> Result<Vec<Contact>, StoreError> {
        self.read(|txn, keys| {
            let mut all = all_contacts(txn, keys)?;
            all.sort_by(|a, b| a.username.cmp(&b.username));
            Ok(all)
        })
        .await
    }

    // ---- messages ------------------------------------------------------------------------

    /// Queues `text` for the contact. When this returns, the message is durably in the outbox.
    pub async fn enqueue(
        &self,
        conv: ConversationId,
        text: Text,
        now: UnixMillis,
    ) -> Result<Queued, StoreError> {
        self.write(move |ctx| ops::enqueue(ctx, conv, text, now, None)).await
    }

    /// Queues `text` sealed (`specs/sealed.md` §7.1): sealed with the conversation's sessions,
    /// or a new session from the peer's kept keys, claiming the username `from`; the log entry,
    /// the outbox row holding the envelope and the sessions after the ratchet step are committed
    /// together. With no session and no keys yet, the message is queued without an envelope
    /// ([`Queued::envelope`] is `None`) and [`Store::seal_queued`] seals it before its first
    /// send. If sealing fails, nothing is queued and the sequence number is not used.
    pub async fn enqueue_sealed(
        &self,
        conv: ConversationId,
        from: Username,
        text: Text,
        now: UnixMillis,
    ) -> Result<Queued, StoreError> {
        self.write(move |ctx| ops::enqueue(ctx, conv, text, now, Some(&from))).await
    }

    /// The envelopes of the queued messages `seqs`, in order, to send: the one each outbox row
    /// keeps, or, for a row without one, sealed now (claiming `from`) and kept in the row, so
    /// every attempt sends the same bytes. Messages no longer queued are skipped.
    /// [`StoreError::NoPeerKeys`] when one needs a new session and the peer's keys are not
    /// known: ask the peer for them ([`Store::set_peer_keys`]) and try again.
    pub async fn seal_queued(
        &self,
        conv: ConversationId,
        from: Username,
        seqs: Vec<Seq>,
    ) -> Result<Vec<(Seq, Vec<u8>)>, StoreError> {
        // Usually every message was sealed when it was queued: then a read serves, without a
        // commit in the way of the send.
        let wanted = seqs.clone();
        let sealed = self
            .read(move |txn, keys| {
                let outbox = open(txn, Table::Outbox)?;
                let mut out = Vec::with_capacity(wanted.len());
                for seq in wanted {
                    let row: Option<OutboxRow> =
                        get(keys, &outbox, Table::Outbox, &rows::outbox_key(&conv, seq))?;
                    match row.map(|r| r.envelope) {
                        None => {}
                        Some(Some(envelope)) => out.push((seq, envelope)),
                        Some(None) => return Ok(None),
                    }
                }
                Ok(Some(out))
            })
            .await?;
        match sealed {
            Some(sealed) => Ok(sealed),
            None => self.write(move |ctx| sealed::seal_queued(ctx, conv, &from, &seqs)).await,
        }
    }

    /// Keeps `account` as this profile's Olm account, unless one is kept already. Returns the
    /// signed keys record of the account kept, to hand to peers.
    pub async fn init_olm_account(&self, account: Account) -> Result<Vec<u8>, StoreError> {
        self.write(move |ctx| sealed::init_account(ctx, account)).await
    }

    /// Rotates the Olm account's fallback key if it was last rotated `every` or more before
    /// `now` (`specs/sealed.md` §6), signing the new keys record with `identity`. The key it
    /// replaces still opens pre-key messages until the next rotation forgets it. The first
    /// call starts the clock. Returns the new keys record, to publish, when it rotated.
    pub async fn rotate_fallback_key(
        &self,
        identity: Arc<tincan_identity::Identity>,
        now: UnixMillis,
        every: Duration,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.write(move |ctx| sealed::rotate_fallback_key(ctx, &identity, now, every)).await
    }

    /// Offers the contact's signed Olm keys `record`: kept if it verifies against the pinned
    /// key and its serial is higher than the kept one's (`specs/sealed.md` §2.1).
    pub async fn set_peer_keys(
        &self,
        conv: ConversationId,
        record: Vec<u8>,
    ) -> Result<KeysUpdate, StoreError> {
        self.write(move |ctx| sealed::set_peer_keys(ctx, conv, record, sealed::KeysSource::Peer))
            .await
    }

    /// Offers a contact's keys `record` found in a directory (a phonebook's record,
    /// `specs/phonebook.md` §2.5): kept as [`Store::set_peer_keys`] keeps the peer's own,
    /// except while the contact awaits its keys from the peer itself, after a new session had
    /// to start (`specs/sealed.md` §8): a directory may serve the old record that led there.
    pub async fn offer_directory_keys(
        &self,
        conv: ConversationId,
        record: Vec<u8>,
    ) -> Result<KeysUpdate, StoreError> {
        let source = sealed::KeysSource::Directory;
        self.write(move |ctx| sealed::set_peer_keys(ctx, conv, record, source)).await
    }

    /// Stores the sealed messages `envelopes` from `peer` (the ed25519 key the connection
    /// authenticated), in one transaction with the Olm state they step (`specs/sealed.md`
    /// §7.1): seen ids are acknowledged without opening, a blocked sender is refused without
    /// opening, a message request's quota counts each envelope's body, and a stranger whose
    /// first message opens becomes a message request under the name sealed inside.
    /// `envelopes` must not be empty.
    pub async fn receive_sealed(
        &self,
        peer: PublicKey,
        envelopes: Vec<Envelope>,
        now: UnixMillis,
        limits: crate::RequestLimits,
    ) -> Result<SealedReceipt, StoreError> {
        if envelopes.is_empty() {
            return Ok(SealedReceipt::refused(Vec::new()));
        }
        self.write(move |ctx| sealed::receive_sealed(ctx, peer, envelopes, now, limits)).await
    }

    /// The peer could not open our messages for want of a session (`specs/sealed.md` §8):
    /// forgets the sessions and the peer's kept keys, takes the envelopes off the queued
    /// messages and queues again those refused as `no session`, all to be sealed again in a new
    /// session before their next send. Returns the sequence numbers and ids of those queued
    /// again.
    pub async fn restart_session(
        &self,
        conv: ConversationId,
    ) -> Result<Vec<(Seq, MessageId)>, StoreError> {
        self.write(move |ctx| sealed::restart_session(ctx, conv)).await
    }

    /// Every value of the table named `name` (`t1` … `t8`, `specs/store.md` §2), decrypted with
    /// the store's key, in key order: the plaintext CBOR as this store keeps it. For audits and
    /// for tests of what the store holds even to someone with the key (the outbox holds
    /// envelopes, not text). Unknown names give nothing.
    pub async fn decrypted_values(&self, name: &str) -> Result<Vec<Vec<u8>>, StoreError> {
        let Some(table) = Table::ALL.into_iter().skip(1).find(|t| t.name() == name) else {
            return Ok(Vec::new());
        };
        self.read(move |txn, keys| {
            let handle = open(txn, table)?;
            let mut out = Vec::new();
            for row in handle.iter().map_err(StoreError::storage)? {
                let (k, v) = row.map_err(StoreError::storage)?;
                let plain = keys
                    .open(table, k.value(), v.value())
                    .ok_or(StoreError::Corrupted { table: table.purpose() })?;
                out.push(plain.to_vec());
            }
            Ok(out)
        })
        .await
    }

    /// Forgets the conversation's Olm sessions: its next message starts a new session
    /// (`specs/sealed.md` §8).
    pub async fn drop_sessions(&self, conv: ConversationId) -> Result<(), StoreError> {
        self.write(move |ctx| sealed::drop_sessions(ctx, &conv)).await
    }

    /// The Olm account, if one was kept.
    pub async fn olm_account(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.olm_blob(sealed::OLM_ACCOUNT.to_vec()).await
    }

    /// The signed keys record of the Olm account, if one was kept
    /// ([`Store::init_olm_account`] keeps the first).
    pub async fn olm_keys(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(pickle) = self.olm_account().await? else { return Ok(None) };
        let keys = self.inner.keys.clone();
        let account = Account::from_pickle(&pickle, &keys.pickle)
            .map_err(|_| StoreError::Corrupted { table: Table::Olm.purpose() })?;
        Ok(Some(account.keys().encode()))
    }

    /// A conversation's Olm sessions, if it has any.
    pub async fn olm_sessions(&self, conv: ConversationId) -> Result<Option<Vec<u8>>, StoreError> {
        self.olm_blob(conv.0.to_vec()).await
    }

    async fn olm_blob(&self, key: Vec<u8>) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(move |txn, keys| {
            let table = open(txn, Table::Olm)?;
            match get::<ciborium::Value>(keys, &table, Table::Olm, &key)? {
                None => Ok(None),
                Some(ciborium::Value::Bytes(b)) => Ok(Some(b)),
                Some(_) => Err(StoreError::Corrupted { table: Table::Olm.purpose() }),
            }
        })
        .await
    }

    /// Records a delivery attempt of queued messages: attempt count, next attempt, status sent.
    /// Returns the messages that went from queued to sent.
    pub async fn record_attempt(
        &self,
        conv: ConversationId,
        seqs: Vec<Seq>,
        next_attempt_at: UnixMillis,
    ) -> Result<Vec<MessageId>, StoreError> {
        self.write(move |ctx| ops::record_attempt(ctx, conv, &seqs, next_attempt_at)).await
    }

    /// Settles queued messages, each named by its sequence number and id: final status and off
    /// the outbox, in one transaction. Returns the messages whose status changed; entries no
    /// longer queued, or whose id does not match, are skipped.
    pub async fn acknowledge(
        &self,
        conv: ConversationId,
        outcomes: Vec<(Seq, MessageId, Outcome)>,
        now: UnixMillis,
    ) -> Result<Vec<(MessageId, Status)>, StoreError> {
        self.write(move |ctx| ops::acknowledge(ctx, conv, outcomes, now)).await
    }

    /// Stores incoming messages and marks their ids seen, in one transaction. One outcome per
    /// message, in order. A message request stores no more than `limits` allow.
    pub async fn receive(
        &self,
        conv: ConversationId,
        messages: Vec<Incoming>,
        now: UnixMillis,
        limits: crate::RequestLimits,
    ) -> Result<Vec<Received>, StoreError> {
        self.write(move |ctx| ops::receive(ctx, conv, messages, now, limits)).await
    }

    /// Up to `limit` log entries before position `before` (all the newest, if `None`), oldest
    /// first.
    pub async fn history(
        &self,
        conv: ConversationId,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<LogEntry>, StoreError> {
        self.read(move |txn, keys| {
            let log = open(txn, Table::Log)?;
            let start = rows::log_key(&conv, 0);
            let end = rows::log_key(&conv, before.unwrap_or(u64::MAX));
            let mut out = Vec::with_capacity(limit.min(1024));
            for row in log.range::<&[u8]>(&start[..]..&end[..]).map_err(StoreError::storage)?.rev()
            {
                if out.len() == limit {
                    break;
                }
                let (k, v) = row.map_err(StoreError::storage)?;
                out.push(rows::decode(keys, Table::Log, k.value(), v.value())?);
            }
            out.reverse();
            Ok(out)
        })
        .await
    }

    /// The log entry at `position`, if the conversation has one.
    pub async fn entry(
        &self,
        conv: ConversationId,
        position: u64,
    ) -> Result<Option<LogEntry>, StoreError> {
        self.read(move |txn, keys| {
            get(keys, &open(txn, Table::Log)?, Table::Log, &rows::log_key(&conv, position))
        })
        .await
    }

    /// The position of the incoming message `id` in the conversation's log, if it was stored.
    pub async fn find_incoming(
        &self,
        conv: ConversationId,
        id: MessageId,
    ) -> Result<Option<u64>, StoreError> {
        self.read(move |txn, keys| {
            get(keys, &open(txn, Table::Ids)?, Table::Ids, &rows::id_key(keys, &conv, &id))
        })
        .await
    }

    /// Up to `limit` outbox entries of the conversation, in sequence order.
    pub async fn outbox(
        &self,
        conv: ConversationId,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        self.outbox_from(conv, Seq::FIRST, limit).await
    }

    /// Up to `limit` outbox entries of the conversation with sequence numbers from `from` on,
    /// in sequence order.
    pub async fn outbox_from(
        &self,
        conv: ConversationId,
        from: Seq,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        self.read(move |txn, keys| {
            let outbox = open(txn, Table::Outbox)?;
            let log = open(txn, Table::Log)?;
            let start = rows::outbox_key(&conv, from);
            let (_, end) = rows::conv_range(&conv);
            let queued: Vec<OutboxRow> =
                rows::scan(keys, &outbox, Table::Outbox, &start[..]..&end[..], limit)?;
            let mut out = Vec::with_capacity(queued.len());
            for row in queued {
                let entry: LogEntry =
                    get(keys, &log, Table::Log, &rows::log_key(&conv, row.position))?
                        .ok_or(StoreError::Corrupted { table: Table::Log.purpose() })?;
                out.push(OutboxEntry {
                    conversation: conv,
                    seq: row.seq,
                    id: row.id,
                    sent_at: row.sent_at,
                    text: entry.text,
                    position: row.position,
                    attempts: row.attempts,
                    next_attempt_at: row.next_attempt_at,
                    envelope: row.envelope,
                });
            }
            Ok(out)
        })
        .await
    }

    /// Conversations with messages in the outbox, and how many each has. Reads keys only.
    pub async fn outbox_conversations(&self) -> Result<Vec<(ConversationId, u64)>, StoreError> {
        self.read(|txn, _| {
            let outbox = open(txn, Table::Outbox)?;
            let mut out: Vec<(ConversationId, u64)> = Vec::new();
            for row in outbox.iter().map_err(StoreError::storage)? {
                let (k, _) = row.map_err(StoreError::storage)?;
                let conv: [u8; 16] = k
                    .value()
                    .get(..16)
                    .and_then(|c| c.try_into().ok())
                    .ok_or(StoreError::Corrupted { table: Table::Outbox.purpose() })?;
                match out.last_mut() {
                    Some((last, n)) if last.0 == conv => *n += 1,
                    _ => out.push((ConversationId(conv), 1)),
                }
            }
            Ok(out)
        })
        .await
    }

    // ---- settings and export -------------------------------------------------------------

    /// Sets a setting (a small opaque value the client chooses).
    pub async fn set_setting(&self, name: &str, value: Vec<u8>) -> Result<(), StoreError> {
        let name = name.to_owned();
        self.write(move |ctx| ops::set_setting(ctx, &name, value)).await
    }

    /// A setting, if set.
    pub async fn setting(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let name = name.to_owned();
        self.read(move |txn, keys| {
            let settings = open(txn, Table::Settings)?;
            let value: Option<ciborium::Value> =
                get(keys, &settings, Table::Settings, &rows::setting_key(keys, &name))?;
            match value {
                None => Ok(None),
                Some(ciborium::Value::Bytes(b)) => Ok(Some(b)),
                Some(_) => Err(StoreError::Corrupted { table: Table::Settings.purpose() }),
            }
        })
        .await
    }

    /// Decrypted JSON of one conversation, or of all when `conv` is `None`
    /// (`specs/store.md` §6).
    pub async fn export(
        &self,
        conv: Option<ConversationId>,
    ) -> Result<serde_json::Value, StoreError> {
        self.read(move |txn, keys| {
            let contacts = match conv {
                Some(conv) => vec![
                    get::<Contact>(keys, &open(txn, Table::Contacts)?, Table::Contacts, &conv.0)?
                        .ok_or(StoreError::NoSuchConversation)?,
                ],
                None => all_contacts(txn, keys)?,
            };
            let log = open(txn, Table::Log)?;
            let mut conversations = Vec::with_capacity(contacts.len());
            for contact in contacts {
                let (start, end) = rows::conv_range(&contact.conversation);
                let messages: Vec<LogEntry> =
                    rows::scan(keys, &log, Table::Log, &start[..]..&end[..], usize::MAX)?;
                conversations.push(serde_json::json!({ "contact": contact, "messages": messages }));
            }
            Ok(serde_json::json!({
                "format": "tincan-export/1",
                "conversations": conversations,
            }))
        })
        .await
    }
}

fn open(
    txn: &ReadTransaction,
    table: Table,
) -> Result<redb::ReadOnlyTable<&'static [u8], &'static [u8]>, StoreError> {
    txn.open_table(table.def()).map_err(StoreError::storage)
}

fn all_contacts(txn: &ReadTransaction, keys: &Keys) -> Result<Vec<Contact>, StoreError> {
    let contacts = open(txn, Table::Contacts)?;
    let mut out = Vec::new();
    for row in contacts.iter().map_err(StoreError::storage)? {
        let (k, v) = row.map_err(StoreError::storage)?;
        out.push(rows::decode(keys, Table::Contacts, k.value(), v.value())?);
    }
    Ok(out)
}

/// Opens (or creates) the redb file at `path`.
fn create_file(path: &Path, options: Options) -> Result<Database, OpenError> {
    // Create the file first, so it gets mode 0600 rather than redb's default.
    let mut file_options = OpenOptions::new();
    file_options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut file_options, 0o600);
    file_options.open(path).map_err(|e| OpenError::Storage(e.to_string()))?;

    let mut builder = Database::builder();
    builder.set_cache_size(options.cache_bytes).set_concurrency_mode(CONCURRENCY);
    // A file altered behind redb's back fails to open instead of being trusted.
    builder.set_check_integrity_on_open(true);
    // redb is not supposed to panic on a damaged file with integrity checks on; if it ever did,
    // the caller gets an error instead of a crash.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| builder.create(path)))
        .map_err(|_| OpenError::Corrupted("the database engine failed on this file".into()))?
        .map_err(open_error)
}

/// How processes share a store file: one writer, and any number of read-only openers that
/// follow its commits (so that `tincan log` works while a chat runs).
const CONCURRENCY: ConcurrencyMode = ConcurrencyMode::SingleWriter;

/// A missing file is [`OpenError::NotFound`] and an empty one corrupted: a store that lost its
/// data must not silently reappear as a new, empty one.
fn check_exists(path: &Path) -> Result<(), OpenError> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(OpenError::NotFound),
        Err(e) => Err(OpenError::Storage(e.to_string())),
        Ok(meta) if meta.len() == 0 => Err(OpenError::Corrupted("the file is empty".into())),
        Ok(_) => Ok(()),
    }
}

/// Checks and migrates an opened database, then starts the writer. Takes the migrations as
/// arguments so tests can run ones that do not exist yet.
pub(crate) fn start(
    db: Database,
    path: Option<&Path>,
    root: &StoreRootKey,
    options: Options,
    migrations: &[Migration],
    target: u32,
    may_create: bool,
) -> Result<Store, OpenError> {
    let keys = Keys::derive(root);
    init(&db, &keys, migrations, target, may_create)?;

    let (health, _) = tokio::sync::watch::channel(Health::Ok);
    let cell = Arc::new(Cell {
        db: RwLock::new(Some(Arc::new(Db::Writable(db)))),
        path: path.map(Path::to_path_buf),
        options,
        health,
    });
    let keys = Arc::new(keys);
    let (jobs, rx) = mpsc::channel(options.queue);
    let commits = Arc::new(AtomicU64::new(0));
    let writes = Arc::new(AtomicU64::new(0));
    let writer = {
        let (cell, keys, commits, writes) =
            (cell.clone(), keys.clone(), commits.clone(), writes.clone());
        std::thread::Builder::new()
            .name("tincan-store-writer".into())
            .spawn(move || writer_loop(&cell, &keys, rx, options, &commits, &writes))
            .map_err(|e| OpenError::Storage(e.to_string()))?
    };
    Ok(Store {
        inner: Arc::new(Inner {
            cell,
            keys,
            jobs,
            commits,
            writes,
            writer: std::sync::Mutex::new(Some(writer)),
        }),
    })
}

fn open_error(e: redb::DatabaseError) -> OpenError {
    match e {
        redb::DatabaseError::DatabaseAlreadyOpen => OpenError::AlreadyOpen,
        redb::DatabaseError::RepairAborted => OpenError::NeedsRepair,
        // redb reports "not a redb file" as an I/O error of kind InvalidData.
        redb::DatabaseError::Storage(redb::StorageError::Io(io))
            if io.kind() == std::io::ErrorKind::InvalidData =>
        {
            OpenError::Corrupted(io.to_string())
        }
        redb::DatabaseError::Storage(redb::StorageError::Io(io)) => {
            OpenError::Storage(io.to_string())
        }
        redb::DatabaseError::Storage(other) => OpenError::Corrupted(other.to_string()),
        other => OpenError::Corrupted(other.to_string()),
    }
}

/// The format version of an opened store, once its key check passed; `None` for a file that
/// holds no store yet. Reads only.
fn check(txn: &ReadTransaction, keys: &Keys, target: u32) -> Result<Option<u32>, OpenError> {
    let storage = |e: &dyn std::fmt::Display| OpenError::Storage(e.to_string());
    let meta = match txn.open_table(Table::Meta.def()) {
        Ok(meta) => meta,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(storage(&e)),
    };
    let Some(bytes) = meta.get(META_FORMAT).map_err(|e| storage(&e))?.map(|v| v.value().to_vec())
    else {
        if meta.iter().map_err(|e| storage(&e))?.next().is_some() {
            return Err(OpenError::Corrupted("not a tincan store: no format version".into()));
        }
        return Ok(None);
    };
    let found = <[u8; 4]>::try_from(bytes.as_slice())
        .map(u32::from_be_bytes)
        .map_err(|_| OpenError::Corrupted("the format version is unreadable".into()))?;
    if found > target {
        return Err(OpenError::UnsupportedVersion { found, supported: target });
    }
    let check = meta.get(META_CHECK).map_err(|e| storage(&e))?.map(|v| v.value().to_vec());
    let plain =
        check.and_then(|c| keys.open(Table::Meta, META_CHECK, &c)).ok_or(OpenError::WrongKey)?;
    if plain.as_slice() != check_plaintext(found).as_slice() {
        return Err(OpenError::Corrupted("the format version does not match the key check".into()));
    }
    Ok(Some(found))
}

/// Checks the format version and the key, creates the tables of a new store, and runs
/// migrations. The checks read only: a store refused (another identity's, a newer format) and
/// a store opened as it is are not written; creating and migrating are one transaction each.
fn init(
    db: &Database,
    keys: &Keys,
    migrations: &[Migration],
    target: u32,
    may_create: bool,
) -> Result<(), OpenError> {
    let storage = |e: &dyn std::fmt::Display| OpenError::Storage(e.to_string());
    let found = check(&db.begin_read().map_err(|e| storage(&e))?, keys, target)?;
    let tables_missing = {
        let txn = db.begin_read().map_err(|e| storage(&e))?;
        Table::ALL
            .iter()
            .any(|t| matches!(txn.open_table(t.def()), Err(redb::TableError::TableDoesNotExist(_))))
    };
    if found == Some(target) && !tables_missing {
        return Ok(());
    }
    if found.is_none() && !may_create {
        return Err(OpenError::Corrupted("not a tincan store: no format version".into()));
    }
    let txn = db.begin_write().map_err(|e| storage(&e))?;
    let found = match found {
        Some(found) => found,
        None => {
            let mut meta = txn.open_table(Table::Meta.def()).map_err(|e| storage(&e))?;
            meta.insert(META_FORMAT, &target.to_be_bytes()[..]).map_err(|e| storage(&e))?;
            let check = keys.seal(Table::Meta, META_CHECK, &check_plaintext(target));
            meta.insert(META_CHECK, check.as_slice()).map_err(|e| storage(&e))?;
            target
        }
    };
    for table in Table::ALL {
        txn.open_table(table.def()).map_err(|e| storage(&e))?;
    }
    if found < target {
        for from in found..target {
            let step = usize::try_from(from - 1).ok().and_then(|i| migrations.get(i)).ok_or_else(
                || OpenError::Migration { from, reason: "no migration from this version".into() },
            )?;
            step(&txn, keys).map_err(|reason| OpenError::Migration { from, reason })?;
        }
        let mut meta = txn.open_table(Table::Meta.def()).map_err(|e| storage(&e))?;
        meta.insert(META_FORMAT, &target.to_be_bytes()[..]).map_err(|e| storage(&e))?;
        let check = keys.seal(Table::Meta, META_CHECK, &check_plaintext(target));
        meta.insert(META_CHECK, check.as_slice()).map_err(|e| storage(&e))?;
    }
    txn.commit().map_err(|e| storage(&e))
}

fn check_plaintext(version: u32) -> Vec<u8> {
    let mut plain = KEY_CHECK.to_vec();
    plain.extend_from_slice(&version.to_be_bytes());
    plain
}

/// Free space below which a full disk is not tried again: room for a few batches of messages
/// (a batch of 64 of the largest is about 300 KiB).
const MIN_FREE: u64 = 1 << 20;
/// How often a store that cannot write checks whether it can again.
const PROBE: Duration = Duration::from_secs(1);

fn writer_loop(
    cell: &Cell,
    keys: &Keys,
    mut rx: mpsc::Receiver<Msg>,
    options: Options,
    commits: &AtomicU64,
    writes: &AtomicU64,
) {
    let mut batch = Vec::with_capacity(options.max_batch);
    // The Olm state last read or written, unpickled: it lives on this thread only.
    let olm = sealed::OlmCache::default();
    let mut stopping = false;
    let mut next_probe = Instant::now();
    // redb refuses every read and write after an I/O error until the database is reopened.
    let mut poisoned = false;
    while !stopping {
        let healthy = *cell.health.borrow() == Health::Ok;
        // Block for the first write, then take whatever else is already waiting: that is the
        // group in group commit. Under load, writes pile up during each fsync. While the store
        // cannot write, it looks now and then whether it can again, even with no write waiting,
        // so that the user hears when space is back.
        if healthy {
            match rx.blocking_recv() {
                Some(Msg::Job(job)) => batch.push(job),
                Some(Msg::Stop) | None => break,
            }
        } else {
            match rx.try_recv() {
                Ok(Msg::Job(job)) => batch.push(job),
                Ok(Msg::Stop) | Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => {}
            }
            if Instant::now() >= next_probe {
                next_probe = Instant::now() + PROBE;
                poisoned = recover(cell, poisoned);
            }
            if batch.is_empty() {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        }
        while batch.len() < options.max_batch {
            match rx.try_recv() {
                Ok(Msg::Job(job)) => batch.push(job),
                Ok(Msg::Stop) => {
                    stopping = true;
                    break;
                }
                Err(_) => break,
            }
        }
        if *cell.health.borrow() != Health::Ok {
            // Still full: fail fast, with what the user should hear.
            let error = match *cell.health.borrow() {
                Health::DiskFull => StoreError::DiskFull,
                _ => StoreError::Storage("the store cannot write right now".into()),
            };
            for job in batch.drain(..) {
                job(None)(Err(error.clone()));
            }
            continue;
        }
        match commit_batch(cell, (keys, &olm), &mut batch, options.durability, (commits, writes)) {
            Ok(()) => {}
            // `health()` says it (`commit_batch` did, before answering). The file is reopened at
            // once, so that reads go on; from now on the store looks for room.
            Err(_) if cell.path.is_some() => {
                poisoned = recover(cell, true);
                next_probe = Instant::now() + PROBE;
            }
            Err(_) => {}
        }
    }
    // Writes queued behind the stop are refused rather than left hanging.
    rx.close();
}

/// Makes a store that could not write usable again: reopens the file if `poisoned` (redb
/// refuses everything after an I/O error until then), and reports it healthy once the disk has
/// room. Committed data is all in the file; what failed was never acknowledged. Returns whether
/// the database still needs reopening.
fn recover(cell: &Cell, poisoned: bool) -> bool {
    let Some(path) = &cell.path else { return poisoned };
    if poisoned && !reopen(cell, path) {
        return true;
    }
    if free_space(path).is_none_or(|free| free >= MIN_FREE) {
        cell.health.send_replace(Health::Ok);
    }
    false
}

/// Closes the database and opens the file again. False if it could not (yet).
fn reopen(cell: &Cell, path: &Path) -> bool {
    let mut slot = cell.db.write().unwrap_or_else(|e| e.into_inner());
    if let Some(mut old) = slot.take() {
        // Readers hold the database only for one read; wait for them to finish.
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match Arc::try_unwrap(old) {
                Ok(db) => {
                    if let Db::Writable(db) = db {
                        let _ = db.close();
                    }
                    break;
                }
                Err(still) if Instant::now() < deadline => {
                    old = still;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(still) => {
                    *slot = Some(still);
                    return false;
                }
            }
        }
    }
    // Until it opens, reads say the disk is full (`Cell::get`).
    match create_file(path, cell.options) {
        Ok(db) => {
            *slot = Some(Arc::new(Db::Writable(db)));
            true
        }
        Err(_) => false,
    }
}

/// Bytes free for us on the file system of `path`, where the system can tell.
#[cfg(unix)]
fn free_space(path: &Path) -> Option<u64> {
    let stat = rustix::fs::statvfs(path).ok()?;
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}

#[cfg(not(unix))]
fn free_space(_: &Path) -> Option<u64> {
    None
}

/// Whether a redb error means the disk is full.
fn disk_full(e: &redb::StorageError) -> bool {
    matches!(e, redb::StorageError::Io(io) if io.kind() == std::io::ErrorKind::StorageFull)
}

/// Runs every job of `batch` in one transaction, commits, then answers each job with the
/// commit's result: nobody hears "done" before the commit that holds their write.
fn commit_batch(
    cell: &Cell,
    (keys, olm): (&Keys, &sealed::OlmCache),
    batch: &mut Vec<Job>,
    durability: Durability,
    (commits, writes): (&AtomicU64, &AtomicU64),
) -> Result<(), StoreError> {
    let n = batch.len() as u64;
    let begin = cell.get().and_then(|db| match &*db {
        Db::Writable(db) => {
            let mut txn = db.begin_write().map_err(StoreError::storage)?;
            txn.set_durability(durability).map_err(StoreError::storage)?;
            Ok(txn)
        }
        Db::ReadOnly(_) => Err(StoreError::ReadOnly),
    });
    let txn = match begin {
        Ok(txn) => txn,
        Err(e) => {
            for job in batch.drain(..) {
                job(None)(Err(e.clone()));
            }
            return Err(e);
        }
    };
    let mut completions: Vec<Completion> = Vec::with_capacity(batch.len());
    let mut panicked = false;
    let flushed = {
        let ctx = Ctx::new(&txn, keys, olm);
        for job in batch.drain(..) {
            // A bug in one operation must not take the writer down with every caller's write:
            // the batch is abandoned and everyone in it gets an error.
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(Some(&ctx)))) {
                Ok(completion) => completions.push(completion),
                Err(_) => panicked = true,
            }
        }
        ctx.flush()
    };
    let result = match (panicked, flushed) {
        (true, _) => {
            let _ = txn.abort();
            Err(StoreError::Storage(
                "an operation failed unexpectedly; the batch was rolled back".into(),
            ))
        }
        (false, Err(e)) => {
            let _ = txn.abort();
            Err(e)
        }
        (false, Ok(())) => txn.commit().map_err(|e| match e {
            redb::CommitError::Storage(ref s) if disk_full(s) => StoreError::DiskFull,
            other => StoreError::storage(other),
        }),
    };
    // Whoever hears of a failure can already see it in `health()`.
    match &result {
        Err(StoreError::DiskFull) => {
            cell.health.send_replace(Health::DiskFull);
        }
        Err(StoreError::Storage(_)) if cell.path.is_some() => {
            cell.health.send_replace(Health::Failing);
        }
        _ => {}
    }
    // Counted before anyone is answered: a caller that reads the counters after its write
    // was answered sees it counted.
    if result.is_ok() {
        commits.fetch_add(1, Ordering::Relaxed);
        writes.fetch_add(n, Ordering::Relaxed);
    }
    for completion in completions {
        completion(result.clone());
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_at(path: &Path, migrations: &[Migration], target: u32) -> Result<Store, OpenError> {
        let options = Options::default();
        start(
            create_file(path, options)?,
            Some(path),
            &StoreRootKey::from_bytes([1; 32]),
            options,
            migrations,
            target,
            true,
        )
    }

    fn mark_migrated(txn: &redb::WriteTransaction, keys: &Keys) -> Result<(), String> {
        let mut settings = txn.open_table(Table::Settings.def()).map_err(|e| e.to_string())?;
        let key = rows::setting_key(keys, "migrated");
        rows::put(
            keys,
            &mut settings,
            Table::Settings,
            &key,
            &ciborium::Value::Bytes(b"yes".to_vec()),
        )
        .map_err(|e| e.to_string())
    }

    fn fail(_: &redb::WriteTransaction, _: &Keys) -> Result<(), String> {
        Err("disk says no".into())
    }

    #[tokio::test]
    async fn migrations_run_once_in_order_and_newer_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        open_at(&path, &[], 1).unwrap().close().await;

        let err = open_at(&path, &[fail], 2).err().unwrap();
        assert!(matches!(err, OpenError::Migration { from: 1, .. }), "{err:?}");
        // The failed migration left version 1 in place.
        open_at(&path, &[], 1).unwrap().close().await;

        let store = open_at(&path, &[mark_migrated], 2).unwrap();
        assert_eq!(store.setting("migrated").await.unwrap(), Some(b"yes".to_vec()));
        store.close().await;
        let err = open_at(&path, &[], 1).err().unwrap();
        assert!(matches!(err, OpenError::UnsupportedVersion { found: 2, supported: 1 }), "{err:?}");
        let err = open_at(&path, &[mark_migrated], 3).err().unwrap();
        assert!(matches!(err, OpenError::Migration { from: 2, .. }), "no step from 2: {err:?}");
    }
}
