//! Zero configuration on one machine: without a phonebook, every tincan uses a local one on
//! 127.0.0.1:7878, and the first tincan that finds the port free hosts it. When the host
//! quits, the next one to notice takes over, and every node publishes its record again.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use tincan_phonebook::server::{Config, Server};
use tokio::sync::oneshot;

/// A local phonebook this process hosts; it stops when dropped.
pub struct Hosted {
    _stop: oneshot::Sender<()>,
}

/// The address of the local phonebook: `TINCAN_LOCAL_PHONEBOOK` (for tests that must not
/// share one) or 127.0.0.1:7878.
pub fn address() -> anyhow::Result<SocketAddr> {
    let text = std::env::var("TINCAN_LOCAL_PHONEBOOK")
        .unwrap_or_else(|_| crate::config::LOCAL_PHONEBOOK.to_owned());
    text.parse()
        .with_context(|| format!("TINCAN_LOCAL_PHONEBOOK={text} is not an address and port"))
}

/// Hosts the local phonebook if nobody does. Returns `None` when another process already
/// serves it (a tincan, or a `tincan-phonebook` run by hand).
pub async fn ensure(data_dir: &Path) -> anyhow::Result<Option<Hosted>> {
    let addr = address()?;
    match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => {
            let config = Config {
                data_dir: Some(data_dir.join("local-phonebook")),
                presence_ttl: Duration::from_secs(60),
                // Every client is on this machine, behind one address: no rate limit.
                limits: tincan_phonebook::server::Limits {
                    writes_per_minute: 0,
                    ..Default::default()
                },
                ..Config::default()
            };
            // Another process may have opened the database just before us: then it hosts.
            let server = match Server::new(config) {
                Ok(server) => server,
                Err(e) => {
                    tracing::info!(error = %e, "the local phonebook's data is in use; not hosting");
                    return Ok(None);
                }
            };
            let (stop, stopped) = oneshot::channel::<()>();
            tokio::spawn(server.serve(listener, async move {
                let _ = stopped.await;
            }));
            tracing::info!(%addr, "hosting the local phonebook");
            Ok(Some(Hosted { _stop: stop }))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Ok(None),
        Err(e) => Err(e).with_context(|| format!("binding the local phonebook on {addr}")),
    }
}

/// Keeps a local phonebook available while the process runs: every 5 s, if it does not
/// answer, try to host it, and tell `republish` so the node publishes its record again.
pub async fn watch(data_dir: std::path::PathBuf, mut hosted: Option<Hosted>, republish: impl Fn()) {
    let Ok(addr) = address() else { return };
    let client = tincan_phonebook::Client::new(&format!("http://{addr}"));
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        if hosted.is_some() {
            continue;
        }
        let alive = match &client {
            Ok(c) => c.info().await.is_ok(),
            Err(_) => false,
        };
        if !alive && let Ok(Some(h)) = ensure(&data_dir).await {
            hosted = Some(h);
            republish();
        }
    }
}
