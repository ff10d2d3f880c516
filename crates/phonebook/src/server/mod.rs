//! The phonebook server: configuration, state, and the HTTP accept loop with its limits.

mod api;
mod limit;
mod metrics;
mod persist;
#[cfg(feature = "postgres")]
mod postgres;
mod registry;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

pub use api::{ApiDoc, ErrorBody, ErrorDetail, Health, Info, PeerList};
pub use persist::PersistError;
pub use registry::PeerView;

/// How the server runs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where bindings are kept; `None` keeps them in memory only (tests, throwaway servers).
    /// Ignored when `database` is set.
    pub data_dir: Option<PathBuf>,
    /// A PostgreSQL database shared by any number of instances, instead of the embedded file
    /// (with the `postgres` feature; [`Server::open`]).
    pub database: Option<Database>,
    /// The longest a record may live; presence ends then unless refreshed.
    pub presence_ttl: Duration,
    /// How far ahead of ours a client's clock may be.
    pub clock_skew: Duration,
    /// Whether `GET /peers/` lists who is online.
    pub directory: bool,
    /// Release usernames whose owner has not registered for this long.
    pub release_after: Option<Duration>,
    /// Request and connection limits.
    pub limits: Limits,
    /// The relay running beside the phonebook, announced at `GET /relay`; `None` answers 404.
    pub relay: Option<crate::RelayInfo>,
}

/// Limits against abuse. Every one is finite.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Time for a whole request, body included.
    pub request_timeout: Duration,
    /// Time to receive a request's headers, and how long an idle connection stays open.
    pub header_timeout: Duration,
    /// Most connections at once; more are closed at once.
    pub max_connections: usize,
    /// Most connections from one client address (an IPv4 address, or an IPv6 /64) at once, so
    /// that one address cannot take every slot. Not applied behind a trusted proxy, where every
    /// connection comes from the proxy.
    pub max_connections_per_ip: usize,
    /// Writes (registrations and deletions) per client address per minute; 0 turns it off.
    pub writes_per_minute: u32,
    /// Writes a client may burst before the per-minute rate applies.
    pub write_burst: u32,
    /// Take the client address from the last `X-Forwarded-For` entry (behind a trusted proxy).
    pub trust_forwarded_for: bool,
}

/// A PostgreSQL database to keep the bindings in.
#[derive(Clone)]
pub struct Database {
    /// A libpq connection URL or key/value string (`postgres://user:password@host/db`,
    /// `sslmode=require` for TLS). It may hold a password: never printed.
    pub url: String,
    /// A PEM file of certificate authorities to trust besides the system's, for the
    /// database's TLS certificate.
    pub ca: Option<PathBuf>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database").field("url", &"(redacted)").field("ca", &self.ca).finish()
    }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            data_dir: None,
            database: None,
            presence_ttl: Duration::from_secs(300),
            clock_skew: Duration::from_secs(120),
            directory: true,
            release_after: None,
            limits: Limits::default(),
            relay: None,
        }
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_body_bytes: 8 * 1024,
            request_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            max_connections: 1024,
            max_connections_per_ip: 64,
            writes_per_minute: 60,
            write_burst: 20,
            trust_forwarded_for: false,
        }
    }
}

/// What the handlers share.
pub(crate) struct App {
    config: Config,
    registry: Bindings,
    limiter: limit::RateLimiter,
    metrics: metrics::Metrics,
}

/// A server ready to serve: bindings loaded, router built.
pub struct Server {
    app: Arc<App>,
}

impl Server {
    /// Loads the bindings from `config.data_dir` and builds the server. The embedded backend
    /// only: [`Server::open`] also connects to `config.database`.
    pub fn new(config: Config) -> Result<Server, PersistError> {
        if config.database.is_some() {
            return Err(PersistError::new("a database needs Server::open".into()));
        }
        let (persist, loaded) = match &config.data_dir {
            Some(dir) => {
                let (persist, loaded) = persist::Persist::open(dir)?;
                (Some(persist), loaded)
            }
            None => (None, Vec::new()),
        };
        tracing::info!(bindings = loaded.len(), "bindings loaded");
        let registry = registry::Registry::new(persist, loaded, config.presence_ttl)
            .with_clock_skew(config.clock_skew);
        Ok(Server::with(config, Bindings::Embedded(registry)))
    }

    /// Builds the server over `config.database` (connecting, and migrating its schema) when
    /// it is set, or as [`Server::new`] does.
    pub async fn open(config: Config) -> Result<Server, PersistError> {
        let Some(database) = &config.database else { return Server::new(config) };
        #[cfg(feature = "postgres")]
        {
            let rules = registry::Rules {
                presence_ttl: config.presence_ttl,
                clock_skew: config.clock_skew,
            };
            let registry =
                postgres::PgRegistry::connect(&database.url, database.ca.as_deref(), rules).await?;
            tracing::info!("bindings in PostgreSQL");
            Ok(Server::with(config, Bindings::Postgres(registry)))
        }
        #[cfg(not(feature = "postgres"))]
        {
            let _ = database;
            Err(PersistError::new("this phonebook was built without PostgreSQL".into()))
        }
    }

    fn with(config: Config, registry: Bindings) -> Server {
        let limiter =
            limit::RateLimiter::new(config.limits.writes_per_minute, config.limits.write_burst);
        Server {
            app: Arc::new(App { config, registry, limiter, metrics: metrics::Metrics::default() }),
        }
    }

    /// The routes, for serving or for `oneshot` tests.
    pub fn router(&self) -> axum::Router {
        api::router(self.app.clone())
    }

    /// Serves on `listener` until `shutdown` resolves, then stops accepting, lets requests in
    /// flight finish (for up to 10 s) and flushes the bindings to disk.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        self.serve_on(Listener::Tcp(listener), shutdown).await
    }

    /// Like [`Server::serve`], on a Unix socket, for clients of the same user only: a
    /// connection whose peer (`SO_PEERCRED`) is another user is closed before it is read. The
    /// socket's directory should be private (mode 0700) too.
    #[cfg(unix)]
    pub async fn serve_unix(
        self,
        listener: tokio::net::UnixListener,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        use std::os::unix::fs::MetadataExt;
        // The socket file was created by this process, so its owner is who we run as.
        let path = listener.local_addr()?.as_pathname().map(std::path::Path::to_path_buf);
        let owner = path
            .map(std::fs::metadata)
            .transpose()?
            .map(|m| m.uid())
            .ok_or_else(|| std::io::Error::other("the Unix socket has no path"))?;
        self.serve_on(Listener::Unix(listener, owner), shutdown).await
    }

    async fn serve_on(
        self,
        listener: Listener,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let router = self.router();
        let limits = self.app.config.limits.clone();
        let connections = Arc::new(Semaphore::new(limits.max_connections));
        let per_ip = Arc::new(PerAddress::new(if limits.trust_forwarded_for {
            usize::MAX
        } else {
            limits.max_connections_per_ip
        }));
        let mut refusals = RefusalLog::default();
        let graceful = GracefulShutdown::new();
        let sweeper = tokio::spawn(sweep(self.app.clone()));
        #[cfg(feature = "postgres")]
        let heartbeat = tokio::spawn(heartbeat(self.app.clone()));
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .keep_alive(true)
            .max_buf_size(64 * 1024);
        tokio::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors, for example: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let (stream, peer) = match accepted {
                Accepted::Tcp(stream, peer) => {
                    let _ = stream.set_nodelay(true);
                    (Stream::Tcp(stream), peer)
                }
                #[cfg(unix)]
                Accepted::Unix(stream, None) => {
                    refusals.refused("a connection from another user");
                    drop(stream);
                    continue;
                }
                #[cfg(unix)]
                Accepted::Unix(stream, Some(peer)) => (Stream::Unix(stream), peer),
            };
            let Some(slot) = per_ip.take(peer.ip()) else {
                refusals.refused("too many connections from one address");
                continue;
            };
            let Ok(permit) = connections.clone().try_acquire_owned() else {
                refusals.refused("connection limit reached");
                continue;
            };
            let service = router.clone().map_request(move |mut req: axum::extract::Request<_>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req
            });
            let conn =
                builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                let _ = conn.await;
                drop(permit);
                drop(slot);
            });
        }
        tracing::info!("shutting down: waiting for requests in flight");
        drop(listener);
        if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await.is_err() {
            tracing::warn!("requests still in flight after 10 s; closing them");
        }
        sweeper.abort();
        #[cfg(feature = "postgres")]
        {
            heartbeat.abort();
            if let (Bindings::Postgres(registry), Some(relay)) =
                (&self.app.registry, &self.app.config.relay)
                && let Err(e) = registry.withdraw_relay(&relay.peer_id).await
            {
                tracing::warn!(error = %e, "withdrawing the relay from the database failed");
            }
        }
        // Every accepted write was durable before it was answered, and the requests in flight
        // have finished: nothing is left to flush. Dropping the state joins the writer thread.
        Ok(())
    }

    /// The address a listener is bound to, as the test harness and the CLI print it.
    pub fn local_addr(listener: &TcpListener) -> std::io::Result<SocketAddr> {
        listener.local_addr()
    }
}

/// Where the server accepts connections.
enum Listener {
    Tcp(TcpListener),
    /// A Unix socket, and the uid allowed to connect.
    #[cfg(unix)]
    Unix(tokio::net::UnixListener, u32),
}

enum Accepted {
    Tcp(tokio::net::TcpStream, SocketAddr),
    /// With the address to count it under, or `None` when the peer is another user.
    #[cfg(unix)]
    Unix(tokio::net::UnixStream, Option<SocketAddr>),
}

impl Listener {
    async fn accept(&self) -> std::io::Result<Accepted> {
        match self {
            Listener::Tcp(l) => l.accept().await.map(|(s, a)| Accepted::Tcp(s, a)),
            #[cfg(unix)]
            Listener::Unix(l, owner) => {
                let (stream, _) = l.accept().await?;
                let same_user = stream.peer_cred().is_ok_and(|c| c.uid() == *owner);
                // Every local client counts as one loopback address.
                let local = SocketAddr::from(([127, 0, 0, 1], 0));
                Ok(Accepted::Unix(stream, same_user.then_some(local)))
            }
        }
    }
}

/// An accepted connection, TCP or Unix.
enum Stream {
    Tcp(tokio::net::TcpStream),
    #[cfg(unix)]
    Unix(tokio::net::UnixStream),
}

impl tokio::io::AsyncRead for Stream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            #[cfg(unix)]
            Stream::Unix(s) => std::pin::Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for Stream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            #[cfg(unix)]
            Stream::Unix(s) => std::pin::Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => std::pin::Pin::new(s).poll_flush(cx),
            #[cfg(unix)]
            Stream::Unix(s) => std::pin::Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            #[cfg(unix)]
            Stream::Unix(s) => std::pin::Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// Connections per client address. Entries exist only while their connections do, so the map
/// is bounded by the connection limit.
struct PerAddress {
    max: usize,
    counts: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
}

/// A connection's place in [`PerAddress`], given back when dropped.
struct Slot {
    owner: Arc<PerAddress>,
    key: std::net::IpAddr,
}

impl PerAddress {
    fn new(max: usize) -> PerAddress {
        PerAddress { max, counts: Default::default() }
    }

    fn take(self: &Arc<Self>, ip: std::net::IpAddr) -> Option<Slot> {
        let key = limit::client_key(ip);
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let n = counts.entry(key).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Slot { owner: self.clone(), key })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.owner.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = counts.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// Refused connections, logged at most once per 10 s with a count: a flood of them must not
/// become a flood of log lines.
#[derive(Default)]
struct RefusalLog {
    last: Option<Instant>,
    since: u64,
}

impl RefusalLog {
    fn refused(&mut self, why: &'static str) {
        self.since += 1;
        let now = Instant::now();
        if self.last.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10)) {
            tracing::warn!(refused = self.since, "refusing connections: {why}");
            self.last = Some(now);
            self.since = 0;
        }
    }
}

async fn sweep(app: Arc<App>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        match app.registry.sweep(now_ms(), app.config.release_after).await {
            Ok(0) => {}
            Ok(released) => tracing::info!(released, "released usernames not seen for too long"),
            Err(e) => tracing::warn!(error = %e, "sweeping the bindings failed"),
        }
        app.limiter.prune(Instant::now());
    }
}

/// The most relays `GET /relays` lists: what a client takes.
pub use tincan_phonebook_client::MAX_RELAYS;

/// How long an instance's relay stays announced in the database without a heartbeat, and how
/// often the heartbeat comes.
#[cfg(feature = "postgres")]
const RELAY_TTL: Duration = Duration::from_secs(30);
#[cfg(feature = "postgres")]
const RELAY_HEARTBEAT: Duration = Duration::from_secs(10);

/// Keeps this instance's relay announced in the database while it serves.
#[cfg(feature = "postgres")]
async fn heartbeat(app: Arc<App>) {
    let (Bindings::Postgres(registry), Some(relay)) = (&app.registry, &app.config.relay) else {
        return;
    };
    let mut tick = tokio::time::interval(RELAY_HEARTBEAT);
    loop {
        tick.tick().await;
        let until = now_ms().saturating_add(registry::ms(RELAY_TTL));
        if let Err(e) = registry.announce_relay(relay, until).await {
            tracing::warn!(error = %e, "announcing the relay in the database failed");
        }
    }
}

/// Where the bindings live: the embedded index (over its redb file, or in memory only), or a
/// PostgreSQL database shared with other instances. Both apply [`registry::Rules`].
pub(crate) enum Bindings {
    Embedded(registry::Registry),
    #[cfg(feature = "postgres")]
    Postgres(postgres::PgRegistry),
}

impl Bindings {
    pub(crate) async fn register(
        &self,
        record: crate::Record,
        now: u64,
    ) -> Result<(registry::Registered, axum::body::Bytes), registry::RegistryError> {
        match self {
            Bindings::Embedded(r) => r.register(record, now).await,
            #[cfg(feature = "postgres")]
            Bindings::Postgres(r) => r.register(record, now).await,
        }
    }

    pub(crate) async fn delete(
        &self,
        username: &tincan_wire::Username,
        peer_id: libp2p_identity::PeerId,
        deletion: crate::SignedDelete,
        now: u64,
    ) -> Result<(), registry::RegistryError> {
        match self {
            Bindings::Embedded(r) => r.delete(username, peer_id, deletion, now).await,
            #[cfg(feature = "postgres")]
            Bindings::Postgres(r) => r.delete(username, peer_id, deletion, now).await,
        }
    }

    pub(crate) async fn lookup(
        &self,
        username: &tincan_wire::Username,
        now: u64,
    ) -> Result<Option<axum::body::Bytes>, registry::RegistryError> {
        match self {
            Bindings::Embedded(r) => Ok(r.lookup(username, now)),
            #[cfg(feature = "postgres")]
            Bindings::Postgres(r) => r.lookup(username, now).await,
        }
    }

    pub(crate) async fn online(
        &self,
        after: Option<&tincan_wire::Username>,
        limit: usize,
        now: u64,
    ) -> Result<(Vec<axum::body::Bytes>, Option<String>), registry::RegistryError> {
        match self {
            Bindings::Embedded(r) => Ok(r.online(after, limit, now)),
            #[cfg(feature = "postgres")]
            Bindings::Postgres(r) => r.online(after, limit, now).await,
        }
    }

    pub(crate) async fn sweep(
        &self,
        now: u64,
        release_after: Option<Duration>,
    ) -> Result<usize, registry::RegistryError> {
        match self {
            Bindings::Embedded(r) => Ok(r.sweep(now, release_after).await),
            #[cfg(feature = "postgres")]
            Bindings::Postgres(r) => r.sweep(now, release_after).await,
        }
    }

    /// The relays to announce at `now`: with a database, every instance's that is alive
    /// (this one's first); embedded, this one's, if it runs one.
    pub(crate) async fn relays(
        &self,
        own: Option<&crate::RelayInfo>,
        now: u64,
    ) -> Result<Vec<crate::RelayInfo>, registry::RegistryError> {
        let own: Vec<crate::RelayInfo> = own.into_iter().cloned().collect();
        match self {
            Bindings::Embedded(_) => {
                let _ = now;
                Ok(own)
            }
            #[cfg(feature = "postgres")]
            Bindings::Postgres(r) => {
                let mut relays = own;
                for relay in r.relays(now, MAX_RELAYS).await? {
                    if relays.len() < MAX_RELAYS
                        && relays.iter().all(|o| o.peer_id != relay.peer_id)
                    {
                        relays.push(relay);
                    }
                }
                Ok(relays)
            }
        }
    }

    pub(crate) async fn counts(&self, now: u64) -> Result<(usize, usize), registry::RegistryError> {
        match self {
            Bindings::Embedded(r) => Ok(r.counts(now)),
            #[cfg(feature = "postgres")]
            Bindings::Postgres(r) => r.counts(now).await,
        }
    }
}

/// Milliseconds since the Unix epoch, by this server's clock.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
