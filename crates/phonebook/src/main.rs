//! `tincan-phonebook`: the server that tells tincan peers where to find each other.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use tincan_phonebook::relay::{Relay, RelayConfig};
use tincan_phonebook::server::{Config, Database, Limits, Server};

/// The tincan phonebook: maps usernames to signed addresses so peers can find each other.
///
/// Users register records signed with their identity key; the first valid record for a
/// username binds it to that key, and only that key can refresh or delete it. Lookups return
/// the signed record, which clients verify themselves. The phonebook never sees a message.
///
/// Examples:
///   tincan-phonebook                                   # 127.0.0.1:7878, data in ~/.local/share
///   tincan-phonebook --listen 0.0.0.0:7878 --data-dir /var/lib/tincan-phonebook
///   tincan-phonebook --no-directory --release-after-days 180
///   tincan-phonebook --relay --relay-external /ip4/203.0.113.7/tcp/4001   # for peers behind NAT
///   TINCAN_PHONEBOOK_DATABASE=postgres://pb@db/pb?sslmode=require tincan-phonebook  # shared
///
/// Serve it to the internet behind a TLS reverse proxy (see README.md, "Running a phonebook").
#[derive(Parser)]
#[command(version, verbatim_doc_comment)]
struct Args {
    /// Address and port to listen on.
    #[arg(long, default_value = "127.0.0.1:7878", env = "TINCAN_PHONEBOOK_LISTEN")]
    listen: SocketAddr,

    /// Directory for the bindings database [default: $XDG_DATA_HOME/tincan-phonebook, or
    /// ~/.local/share/tincan-phonebook].
    #[arg(long, env = "TINCAN_PHONEBOOK_DATA_DIR", conflicts_with = "in_memory")]
    data_dir: Option<PathBuf>,

    /// Keep bindings in memory only: they are lost when the server stops.
    #[arg(long)]
    in_memory: bool,

    /// Keep the bindings in PostgreSQL instead, shared by any number of phonebook instances:
    /// a libpq URL such as postgres://USER:PASSWORD@HOST/DB?sslmode=require. Give it in the
    /// environment rather than here, where other users of the machine can read it.
    #[arg(
        long,
        env = "TINCAN_PHONEBOOK_DATABASE",
        hide_env_values = true,
        conflicts_with = "in_memory"
    )]
    database: Option<String>,

    /// Certificate authorities (a PEM file) to trust for the database's TLS certificate,
    /// besides the system's.
    #[arg(long, value_name = "FILE", requires = "database")]
    database_ca: Option<PathBuf>,

    /// Longest a record may live, in seconds. A user drops off the online list this long after
    /// their last refresh; clients refresh at half of it.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(5..=86_400))]
    presence_ttl: u64,

    /// Release a username whose owner has not registered for this many days, so that someone
    /// else may take it. By default names are kept forever.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    release_after_days: Option<u64>,

    /// Do not publish who is online: `GET /peers/` answers 404. Lookups by name still work.
    #[arg(long)]
    no_directory: bool,

    /// Largest request body, in bytes.
    #[arg(long, default_value_t = 8192, value_parser = clap::value_parser!(u64).range(1024..=1_048_576))]
    max_body_bytes: u64,

    /// Seconds a whole request may take, body included.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    request_timeout: u64,

    /// Seconds to receive a request's headers; also how long an idle connection stays open.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    header_timeout: u64,

    /// Most connections at once.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_connections: u64,

    /// Most connections at once from one client address (an IPv4 address, or an IPv6 /64), so
    /// that one address cannot take every slot. Not applied with --trust-forwarded-for, where
    /// every connection comes from the proxy: limit per client there.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_connections_per_ip: u64,

    /// Registrations and deletions allowed per client address per minute (0: no limit).
    #[arg(long, default_value_t = 60)]
    writes_per_minute: u32,

    /// Writes a client may make in a burst before the per-minute rate applies.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    write_burst: u32,

    /// Behind a reverse proxy: take the client address from the last X-Forwarded-For entry.
    /// Only set this if every request comes through a proxy you run.
    #[arg(long)]
    trust_forwarded_for: bool,

    /// Also run a circuit relay (libp2p relay v2) and AutoNAT server, for peers behind NAT, and
    /// announce it at GET /relay. Its key is kept in the data directory (relay.key).
    #[arg(long)]
    relay: bool,

    /// Where the relay listens (repeat for several) [default: /ip4/0.0.0.0/tcp/4001 and
    /// /ip4/0.0.0.0/udp/4001/quic-v1].
    #[arg(long, value_name = "MULTIADDR", requires = "relay")]
    relay_listen: Vec<libp2p::Multiaddr>,

    /// The relay's public addresses, to announce (repeat for several) [default: the addresses
    /// it listens on, without loopback]. Set this behind port forwarding.
    #[arg(long, value_name = "MULTIADDR", requires = "relay")]
    relay_external: Vec<libp2p::Multiaddr>,

    /// Relayed connections one peer may have at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024))]
    relay_max_circuits_per_peer: u32,

    /// Relayed connections at once, in all.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    relay_max_circuits: u32,

    /// Reservations (peers reachable through the relay) at once, in all.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    relay_max_reservations: u32,

    /// Longest a relayed connection lasts, in seconds, before the peers must open another.
    #[arg(long, default_value_t = 1800, value_parser = clap::value_parser!(u64).range(10..=86_400))]
    relay_circuit_secs: u64,

    /// Most bytes a relayed connection carries each way, in MiB.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=4096))]
    relay_circuit_mib: u64,

    /// Answer AutoNAT probes from peers at private addresses too. Only for private networks
    /// and tests: on the internet it would let anyone make the relay dial private addresses.
    #[arg(long, requires = "relay")]
    relay_probe_private: bool,

    /// Log format (logs go to stderr; set the level with RUST_LOG, e.g. RUST_LOG=debug).
    #[arg(long, value_enum, default_value_t = LogFormat::Pretty)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    /// Human-readable, multi-line.
    Pretty,
    /// Human-readable, one line per event.
    Compact,
    /// One JSON object per line, for log collectors.
    Json,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_logging(args.log_format);
    let data_dir = if args.in_memory {
        None
    } else {
        Some(match args.data_dir {
            Some(dir) => dir,
            None => default_data_dir()
                .context("no data directory: set --data-dir, HOME or XDG_DATA_HOME")?,
        })
    };
    let database = args.database.clone().map(|url| Database { url, ca: args.database_ca.clone() });
    let mut config = Config {
        data_dir: data_dir.clone(),
        database,
        presence_ttl: Duration::from_secs(args.presence_ttl),
        clock_skew: Duration::from_secs(120),
        directory: !args.no_directory,
        release_after: args
            .release_after_days
            .map(|d| Duration::from_secs(d.saturating_mul(86_400))),
        limits: Limits {
            max_body_bytes: usize::try_from(args.max_body_bytes).unwrap_or(8192),
            request_timeout: Duration::from_secs(args.request_timeout),
            header_timeout: Duration::from_secs(args.header_timeout),
            max_connections: usize::try_from(args.max_connections).unwrap_or(1024),
            max_connections_per_ip: usize::try_from(args.max_connections_per_ip).unwrap_or(64),
            writes_per_minute: args.writes_per_minute,
            write_burst: args.write_burst,
            trust_forwarded_for: args.trust_forwarded_for,
        },
        relay: None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        let _relay = if args.relay {
            let defaults = RelayConfig::default();
            let relay_config = RelayConfig {
                listen: if args.relay_listen.is_empty() {
                    defaults.listen
                } else {
                    args.relay_listen
                },
                external: args.relay_external,
                max_reservations: args.relay_max_reservations as usize,
                max_reservations_per_peer: defaults.max_reservations_per_peer,
                max_circuits: args.relay_max_circuits as usize,
                max_circuits_per_peer: args.relay_max_circuits_per_peer as usize,
                max_circuit_duration: Duration::from_secs(args.relay_circuit_secs),
                max_circuit_bytes: args.relay_circuit_mib << 20,
                probe_private_addresses: args.relay_probe_private,
            };
            let key_file = data_dir.as_ref().map(|d| d.join("relay.key"));
            let relay = Relay::start(key_file.as_deref(), relay_config)
                .await
                .context("starting the relay")?;
            let info = relay.info();
            // Tests and scripts read this line to learn the relay's address.
            #[allow(clippy::print_stdout)]
            {
                println!("relay {}", info.addrs.join(" "));
            }
            config.relay = Some(info);
            Some(relay)
        } else {
            None
        };
        let in_database = config.database.is_some();
        let server = Server::open(config).await.with_context(|| match &data_dir {
            _ if in_database => "opening the bindings in the database".to_owned(),
            Some(dir) => format!("opening the bindings in {}", dir.display()),
            None => "starting".to_owned(),
        })?;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let addr = listener.local_addr()?;
        // Tests and scripts read this line to learn the port when listening on port 0.
        #[allow(clippy::print_stdout)]
        {
            println!("listening on {addr}");
        }
        tracing::info!(%addr, data_dir = ?data_dir, "phonebook ready");
        server.serve(listener, shutdown_signal()).await.context("serving")?;
        tracing::info!("stopped");
        Ok(())
    })
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn default_data_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))?;
    Some(base.join("tincan-phonebook"))
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Pretty => builder.init(),
        LogFormat::Compact => builder.compact().init(),
        LogFormat::Json => builder.json().init(),
    }
}
