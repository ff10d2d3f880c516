//! Bindings in PostgreSQL, for any number of phonebook instances over one database
//! (`--database postgres://…`). Nothing of the bindings is kept in the process: every lookup
//! reads the database, so an instance's memory does not grow with its users, and what one
//! instance writes every other sees at once.
//!
//! The binding rules are [`Rules`], the same as the embedded backend's, applied inside one
//! transaction that holds the name's row (`SELECT … FOR UPDATE`): two instances racing for a
//! name, or receiving one owner's updates out of order, are put in order by the database. A
//! name nobody holds has no row to lock; the first `INSERT` wins through the primary key, and
//! the loser decides again over the winner's row.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use libp2p_identity::PeerId;
use tincan_wire::Username;
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::persist::PersistError;
use super::registry::{Current, Registered, RegistryError, Rules, ms, offline_body, online_body};
use crate::{Record, SignedDelete};

/// The schema this binary writes. A database with a newer one is refused: an older binary
/// could break rules it does not know.
pub(crate) const SCHEMA_VERSION: i32 = 2;

/// Migration `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: the bindings. `username` sorts byte by byte (`COLLATE "C"`), as the embedded index
    // does, so that pages of the directory are the same in both backends.
    r#"
    CREATE TABLE tincan_bindings (
        username text COLLATE "C" PRIMARY KEY,
        peer_id text NOT NULL,
        seq bigint NOT NULL,
        presence_until bigint NOT NULL,
        bound_at bigint NOT NULL,
        last_seen bigint NOT NULL,
        released_until bigint,
        body bytea NOT NULL
    );
    CREATE INDEX tincan_bindings_tombstones ON tincan_bindings (released_until)
        WHERE released_until IS NOT NULL;
    CREATE INDEX tincan_bindings_last_seen ON tincan_bindings (last_seen)
        WHERE released_until IS NULL;
    -- The directory reads only who is online, however many are registered.
    CREATE INDEX tincan_bindings_presence ON tincan_bindings (presence_until)
        WHERE released_until IS NULL;
    "#,
    // 2: the relays the instances run, each announced until its heartbeat stops.
    r#"
    CREATE TABLE tincan_relays (
        peer_id text COLLATE "C" PRIMARY KEY,
        info bytea NOT NULL,
        until bigint NOT NULL
    );
    "#,
];

/// Taken (for the transaction) by an instance checking or migrating the schema, so that
/// instances starting together migrate once. "tincan" in ASCII.
const MIGRATION_LOCK: i64 = 0x7469_6e63_616e;

/// How many connections an instance keeps to the database.
const POOL_SIZE: usize = 16;

/// How long a request waits for a connection, or for one to be made, before it is answered
/// 503: a database that went away is said so quickly, not waited for.
const POOL_WAIT: Duration = Duration::from_secs(5);

/// Lookups waiting at once for the batcher; more are answered 503 at once.
const LOOKUP_QUEUE: usize = 4096;
/// The most lookups one query answers.
const LOOKUP_BATCH: usize = 128;
/// Lookup queries running at once (each holds a connection of the pool): one per core, at
/// least two. Fewer, larger batches cost the database less than many small ones; on this
/// project's 2-core machine, 2 gave 53,000 lookups/s where 8 gave 42,000 (BENCHMARKS.md).
fn lookup_queries() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, POOL_SIZE / 2))
}

/// A lookup waiting for its batch: the name, the time it was asked at, where the answer goes.
type Lookup = (String, u64, oneshot::Sender<Result<Option<Bytes>, PersistError>>);

/// How long the counts of `/metrics` are reused: counting reads every row, and the route is
/// public.
const COUNTS_FOR: Duration = Duration::from_secs(5);

pub(crate) struct PgRegistry {
    pool: Pool,
    rules: Rules,
    lookups: mpsc::Sender<Lookup>,
    counts: tokio::sync::Mutex<Option<(std::time::Instant, (usize, usize))>>,
}

impl PgRegistry {
    /// Connects to `url` (a libpq URL or key/value string), with TLS verified against the
    /// system's roots and `ca` (a PEM file) when the URL asks for it (`sslmode=require`), and
    /// brings the schema up to date.
    pub(crate) async fn connect(
        url: &str,
        ca: Option<&Path>,
        rules: Rules,
    ) -> Result<PgRegistry, PersistError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| PersistError::new(format!("the database URL is not valid: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(POOL_WAIT);
        }
        if config.get_application_name().is_none() {
            config.application_name("tincan-phonebook");
        }
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(ca)?);
        let manager = Manager::from_config(
            config,
            tls,
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(POOL_WAIT))
            .recycle_timeout(Some(POOL_WAIT))
            .build()
            .map_err(|e| PersistError::new(format!("the database pool: {e}")))?;
        let (lookups, queue) = mpsc::channel(LOOKUP_QUEUE);
        tokio::spawn(batch_lookups(pool.clone(), queue));
        let registry = PgRegistry { pool, rules, lookups, counts: Default::default() };
        registry.migrate().await?;
        Ok(registry)
    }

    async fn migrate(&self) -> Result<(), PersistError> {
        let mut client = self.pool.get().await.map_err(pool_error)?;
        let tx = client.transaction().await.map_err(db_error)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(db_error)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS tincan_schema (
                 one boolean PRIMARY KEY DEFAULT true CHECK (one),
                 version integer NOT NULL
             )",
        )
        .await
        .map_err(db_error)?;
        let found: i32 = tx
            .query_opt("SELECT version FROM tincan_schema", &[])
            .await
            .map_err(db_error)?
            .map_or(0, |row| row.get(0));
        if found > SCHEMA_VERSION {
            return Err(PersistError::new(format!(
                "the database's schema is version {found}, newer than the {SCHEMA_VERSION} this \
                 phonebook knows: run a newer tincan-phonebook"
            )));
        }
        let from = usize::try_from(found).map_err(|_| {
            PersistError::new(format!("the database's schema version {found} is not valid"))
        })?;
        for (i, migration) in MIGRATIONS.iter().enumerate().skip(from) {
            tx.batch_execute(migration).await.map_err(db_error)?;
            tracing::info!(version = i + 1, "database schema migrated");
        }
        tx.execute(
            "INSERT INTO tincan_schema (version) VALUES ($1)
             ON CONFLICT (one) DO UPDATE SET version = EXCLUDED.version",
            &[&SCHEMA_VERSION],
        )
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)
    }

    /// Registers or refreshes `record`, received at `now`. Returns the lookup answer.
    pub(crate) async fn register(
        &self,
        record: Record,
        now: u64,
    ) -> Result<(Registered, Bytes), RegistryError> {
        self.rules.check_seq(record.seq, now)?;
        let name = record.username.as_str();
        let mut client = self.pool.get().await.map_err(pool_error)?;
        // Twice at most: a first attempt loses only to an insert of the same name, and the
        // second finds that row and locks it.
        for _ in 0..2 {
            let tx = client.transaction().await.map_err(db_error)?;
            let current = current(&tx, name).await?;
            let (outcome, stored) = self.rules.register(current.as_ref(), &record, now)?;
            let body = offline_body(&record.username, &stored);
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 8] = [
                &name,
                &stored.peer_id,
                &int(stored.seq),
                &int(stored.presence_until),
                &int(stored.bound_at),
                &int(stored.last_seen),
                &None::<i64>,
                &body.as_ref(),
            ];
            if current.is_none() {
                let inserted = tx.execute(INSERT, &params).await.map_err(db_error)?;
                if inserted == 0 {
                    continue;
                }
            } else {
                tx.execute(UPDATE, &params).await.map_err(db_error)?;
            }
            tx.commit().await.map_err(db_error)?;
            let answer =
                if stored.presence_until > now { online_body(&body) } else { body.clone() };
            return Ok((outcome, answer));
        }
        Err(PersistError::new("a registration kept racing another for its name".into()).into())
    }

    /// Takes the user's record down, and releases the username if asked.
    pub(crate) async fn delete(
        &self,
        username: &Username,
        peer_id: PeerId,
        deletion: SignedDelete,
        now: u64,
    ) -> Result<(), RegistryError> {
        self.rules.check_seq(deletion.seq, now)?;
        let name = username.as_str();
        let mut client = self.pool.get().await.map_err(pool_error)?;
        let tx = client.transaction().await.map_err(db_error)?;
        let current = current(&tx, name).await?;
        let stored = self.rules.delete(current.as_ref(), peer_id, deletion, now)?;
        let body = offline_body(username, &stored);
        tx.execute(
            UPDATE,
            &[
                &name,
                &stored.peer_id,
                &int(stored.seq),
                &int(stored.presence_until),
                &int(stored.bound_at),
                &int(stored.last_seen),
                &stored.released_until.map(int),
                &body.as_ref(),
            ],
        )
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(())
    }

    /// The lookup answer for `username`, with presence as of `now`. Lookups in flight at once
    /// share queries (`batch_lookups`): one round trip answers up to [`LOOKUP_BATCH`].
    pub(crate) async fn lookup(
        &self,
        username: &Username,
        now: u64,
    ) -> Result<Option<Bytes>, RegistryError> {
        let (tx, rx) = oneshot::channel();
        self.lookups.try_send((username.as_str().to_owned(), now, tx)).map_err(|_| {
            PersistError::new("too many lookups are waiting for the database".into())
        })?;
        rx.await
            .map_err(|_| PersistError::new("the lookup was dropped".into()))?
            .map_err(Into::into)
    }

    /// The answers of up to `limit` users online at `now`, in username order, after `after`;
    /// and the username to continue from, if there are more.
    pub(crate) async fn online(
        &self,
        after: Option<&Username>,
        limit: usize,
        now: u64,
    ) -> Result<(Vec<Bytes>, Option<String>), RegistryError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let statement = client
            .prepare_cached(
                "SELECT username, presence_until, body FROM tincan_bindings
                 WHERE released_until IS NULL AND presence_until > $1 AND username > $2
                 ORDER BY username LIMIT $3",
            )
            .await
            .map_err(db_error)?;
        let fetch = i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1);
        let after = after.map_or("", Username::as_str);
        let rows =
            client.query(&statement, &[&int(now), &after, &fetch]).await.map_err(db_error)?;
        let more = rows.len() > limit;
        let peers: Vec<Bytes> =
            rows.iter().take(limit).map(|row| answer(row.get(1), row.get(2), now)).collect();
        let next = more.then(|| rows[limit - 1].get::<_, String>(0));
        Ok((peers, next))
    }

    /// Releases usernames not seen for longer than `release_after`, and drops tombstones past
    /// their time. Every instance may sweep: the statements re-check each row they delete.
    pub(crate) async fn sweep(
        &self,
        now: u64,
        release_after: Option<Duration>,
    ) -> Result<usize, RegistryError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        client
            .execute(
                "DELETE FROM tincan_bindings
                 WHERE released_until IS NOT NULL AND released_until <= $1",
                &[&int(now)],
            )
            .await
            .map_err(db_error)?;
        let Some(after) = release_after else { return Ok(0) };
        let cutoff = now.saturating_sub(ms(after));
        let released = client
            .execute(
                "DELETE FROM tincan_bindings
                 WHERE released_until IS NULL AND last_seen < $1 AND presence_until <= $2",
                &[&int(cutoff), &int(now)],
            )
            .await
            .map_err(db_error)?;
        Ok(usize::try_from(released).unwrap_or(usize::MAX))
    }

    /// Announces `info` (the relay beside this instance) until `until`; called again before
    /// then, as a heartbeat, so that a relay whose instance died drops out of the list.
    pub(crate) async fn announce_relay(
        &self,
        info: &crate::RelayInfo,
        until: u64,
    ) -> Result<(), RegistryError> {
        let bytes = serde_json::to_vec(info)
            .map_err(|e| PersistError::new(format!("encoding the relay: {e}")))?;
        let client = self.pool.get().await.map_err(pool_error)?;
        client
            .execute(
                "INSERT INTO tincan_relays (peer_id, info, until) VALUES ($1, $2, $3)
                 ON CONFLICT (peer_id) DO UPDATE SET info = EXCLUDED.info, until = EXCLUDED.until",
                &[&info.peer_id, &bytes, &int(until)],
            )
            .await
            .map_err(db_error)?;
        Ok(())
    }

    /// Takes the relay out of the list (its instance stops).
    pub(crate) async fn withdraw_relay(&self, peer_id: &str) -> Result<(), RegistryError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        client
            .execute("DELETE FROM tincan_relays WHERE peer_id = $1", &[&peer_id])
            .await
            .map_err(db_error)?;
        Ok(())
    }

    /// The relays announced and alive at `now`, at most `limit`, by PeerId. A row that does
    /// not decode is skipped: another instance, perhaps newer, wrote it.
    pub(crate) async fn relays(
        &self,
        now: u64,
        limit: usize,
    ) -> Result<Vec<crate::RelayInfo>, RegistryError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = client
            .query(
                "SELECT info FROM tincan_relays WHERE until > $1 ORDER BY peer_id LIMIT $2",
                &[&int(now), &limit],
            )
            .await
            .map_err(db_error)?;
        Ok(rows
            .iter()
            .filter_map(|row| serde_json::from_slice(row.get::<_, &[u8]>(0)).ok())
            .collect())
    }

    /// Bindings, and users online now (counted at most every [`COUNTS_FOR`]; callers that
    /// come meanwhile wait for the count in progress or reuse the last).
    pub(crate) async fn counts(&self, now: u64) -> Result<(usize, usize), RegistryError> {
        let mut cached = self.counts.lock().await;
        if let Some((at, counts)) = *cached
            && at.elapsed() < COUNTS_FOR
        {
            return Ok(counts);
        }
        let client = self.pool.get().await.map_err(pool_error)?;
        let row = client
            .query_one(
                "SELECT count(*) FILTER (WHERE released_until IS NULL),
                        count(*) FILTER (WHERE released_until IS NULL AND presence_until > $1)
                 FROM tincan_bindings",
                &[&int(now)],
            )
            .await
            .map_err(db_error)?;
        let count = |i: usize| usize::try_from(row.get::<_, i64>(i)).unwrap_or(0);
        let counts = (count(0), count(1));
        *cached = Some((std::time::Instant::now(), counts));
        Ok(counts)
    }
}

/// Answers the lookups queued on `queue`, those waiting together in one query: under load a
/// batch forms while the earlier ones run, and alone a lookup goes at once, with no wait added.
async fn batch_lookups(pool: Pool, mut queue: mpsc::Receiver<Lookup>) {
    let slots = Arc::new(Semaphore::new(lookup_queries()));
    while let Some(first) = queue.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let mut batch = vec![first];
        while batch.len() < LOOKUP_BATCH {
            match queue.try_recv() {
                Ok(lookup) => batch.push(lookup),
                Err(_) => break,
            }
        }
        let pool = pool.clone();
        tokio::spawn(async move {
            let found = look_up(&pool, &batch).await;
            for (name, now, answer) in batch {
                let _ = answer.send(match &found {
                    Ok(rows) => {
                        Ok(rows.get(&name).map(|(until, body)| answer_of(*until, body, now)))
                    }
                    Err(e) => Err(e.clone()),
                });
            }
            drop(slot);
        });
    }
}

/// The rows of the bound names among `batch`: presence and the stored answer, by name.
async fn look_up(
    pool: &Pool,
    batch: &[Lookup],
) -> Result<HashMap<String, (i64, Bytes)>, PersistError> {
    let client = pool.get().await.map_err(pool_error)?;
    let statement = client
        .prepare_cached(
            "SELECT username, presence_until, body FROM tincan_bindings
             WHERE username = ANY($1) AND released_until IS NULL",
        )
        .await
        .map_err(db_error)?;
    let names: Vec<&str> = batch.iter().map(|(name, ..)| name.as_str()).collect();
    let rows = client.query(&statement, &[&names]).await.map_err(db_error)?;
    Ok(rows
        .into_iter()
        .map(|row| (row.get(0), (row.get(1), Bytes::from(row.get::<_, Vec<u8>>(2)))))
        .collect())
}

fn answer_of(presence_until: i64, body: &Bytes, now: u64) -> Bytes {
    if unsigned(presence_until) > now { online_body(body) } else { body.clone() }
}

const INSERT: &str = "INSERT INTO tincan_bindings
    (username, peer_id, seq, presence_until, bound_at, last_seen, released_until, body)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
    ON CONFLICT (username) DO NOTHING";

const UPDATE: &str = "UPDATE tincan_bindings
    SET peer_id = $2, seq = $3, presence_until = $4, bound_at = $5, last_seen = $6,
        released_until = $7, body = $8
    WHERE username = $1";

/// The name's row, locked until the transaction ends.
async fn current(
    tx: &deadpool_postgres::Transaction<'_>,
    name: &str,
) -> Result<Option<Current>, RegistryError> {
    let row = tx
        .query_opt(
            "SELECT peer_id, seq, bound_at, released_until FROM tincan_bindings
             WHERE username = $1 FOR UPDATE",
            &[&name],
        )
        .await
        .map_err(db_error)?;
    let Some(row) = row else { return Ok(None) };
    let peer_id: String = row.get(0);
    let peer_id = peer_id.parse::<PeerId>().map_err(|_| {
        PersistError::new(format!("the database holds an unreadable binding for {name:?}"))
    })?;
    Ok(Some(Current {
        peer_id,
        seq: unsigned(row.get(1)),
        bound_at: unsigned(row.get(2)),
        released_until: row.get::<_, Option<i64>>(3).map(unsigned),
    }))
}

fn answer(presence_until: i64, body: Vec<u8>, now: u64) -> Bytes {
    answer_of(presence_until, &Bytes::from(body), now)
}

/// Times and sequence numbers are milliseconds since the epoch, bounded by the clock (and its
/// skew) before they get here: far inside `bigint`.
fn int(x: u64) -> i64 {
    i64::try_from(x).unwrap_or(i64::MAX)
}

fn unsigned(x: i64) -> u64 {
    u64::try_from(x).unwrap_or(0)
}

fn tls_config(ca: Option<&Path>) -> Result<rustls::ClientConfig, PersistError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        // A system certificate rustls cannot use is skipped, as every TLS client does.
        let _ = roots.add(cert);
    }
    if let Some(ca) = ca {
        use rustls::pki_types::pem::PemObject;
        let certs = rustls::pki_types::CertificateDer::pem_file_iter(ca)
            .map_err(|e| PersistError::new(format!("reading {}: {e}", ca.display())))?;
        for cert in certs {
            let cert =
                cert.map_err(|e| PersistError::new(format!("reading {}: {e}", ca.display())))?;
            roots.add(cert).map_err(|e| {
                PersistError::new(format!("a certificate in {}: {e}", ca.display()))
            })?;
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| PersistError::new(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

fn pool_error(e: deadpool_postgres::PoolError) -> PersistError {
    PersistError::new(format!("the database is unavailable: {}", chain(&e)))
}

fn db_error(e: tokio_postgres::Error) -> PersistError {
    PersistError::new(format!("the database: {}", chain(&e)))
}

/// An error with its causes (a TLS handshake's says which certificate check failed). None of
/// them holds the URL's password: tokio-postgres never puts it in an error.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}
