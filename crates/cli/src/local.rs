//! Zero configuration on one machine: without a phonebook, every tincan of a data directory
//! uses a local one, and the first tincan that finds it missing hosts it. When the host quits,
//! the next one to notice takes over, and every node publishes its record again.
//!
//! The local phonebook is the trust anchor of first contact, so only its owner may reach it:
//! it is served on a Unix socket in the data directory (`local-phonebook/phonebook.sock`, in a
//! directory of mode 0700, the socket 0600), and the server closes any connection whose peer
//! is another user (`SO_PEERCRED`). Other local users and sandboxed processes can neither
//! impersonate it nor read it. Several Unix users on one machine who want to chat run a
//! `tincan-phonebook` and point their profiles at it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use tincan_phonebook::server::{Config, Server};
use tokio::sync::oneshot;

/// A local phonebook this process hosts; it stops, and its socket goes, when dropped.
pub struct Hosted {
    _stop: oneshot::Sender<()>,
    socket: PathBuf,
}

impl Drop for Hosted {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// The local phonebook's directory in `data_dir`.
fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("local-phonebook")
}

/// The Unix socket of the local phonebook of `data_dir`.
pub fn socket(data_dir: &Path) -> PathBuf {
    dir(data_dir).join("phonebook.sock")
}

/// A client of the local phonebook of `data_dir`.
pub fn client(data_dir: &Path) -> anyhow::Result<tincan_phonebook::Client> {
    tincan_phonebook::Client::unix(&socket(data_dir)).context("the local phonebook")
}

/// How the local phonebook is named to people.
pub fn describe(data_dir: &Path) -> String {
    format!("local phonebook ({})", socket(data_dir).display())
}

/// Hosts the local phonebook if nobody does. Returns `None` when another process already
/// serves it.
pub async fn ensure(data_dir: &Path) -> anyhow::Result<Option<Hosted>> {
    let dir = dir(data_dir);
    crate::config::private_dir(&dir)?;
    // Both the directory's mode and the owner are checked: a directory made by someone else,
    // or opened up since, must not hold our trust anchor.
    check_private(&dir)?;
    let config = Config {
        data_dir: Some(dir.clone()),
        presence_ttl: Duration::from_secs(60),
        // Every client is this user's, on this machine: no rate limit.
        limits: tincan_phonebook::server::Limits { writes_per_minute: 0, ..Default::default() },
        ..Config::default()
    };
    // The database is opened for one process at a time: whoever has it hosts, and only they
    // may replace the socket a dead host left behind.
    let server = match Server::new(config) {
        Ok(server) => server,
        Err(e) => {
            tracing::debug!(error = %e, "the local phonebook's data is in use; not hosting");
            return Ok(None);
        }
    };
    let socket = socket(data_dir);
    match std::fs::remove_file(&socket) {
        Ok(()) => tracing::info!("replacing the socket of a local phonebook that went away"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing {}", socket.display())),
    }
    let listener = tokio::net::UnixListener::bind(&socket)
        .with_context(|| format!("listening on {}", socket.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("making {} private", socket.display()))?;
    }
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server.serve_unix(listener, async move {
        let _ = stopped.await;
    }));
    tracing::info!(socket = %socket.display(), "hosting the local phonebook");
    Ok(Some(Hosted { _stop: stop, socket }))
}

#[cfg(unix)]
fn check_private(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::metadata(dir).with_context(|| format!("reading {}", dir.display()))?;
    let ours = rustix::process::geteuid().as_raw();
    if meta.uid() != ours || meta.permissions().mode() & 0o077 != 0 {
        anyhow::bail!(
            "{} must belong to you and be private (mode 0700): another user could pose as the local phonebook",
            dir.display()
        );
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_: &Path) -> anyhow::Result<()> {
    Ok(())
}

/// Keeps a local phonebook available while the process runs: every 5 s, if it does not
/// answer, try to host it, and tell `republish` so the node publishes its record again.
pub async fn watch(data_dir: PathBuf, mut hosted: Option<Hosted>, republish: impl Fn()) {
    let Ok(client) = client(&data_dir) else { return };
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        if hosted.is_some() {
            continue;
        }
        if client.info().await.is_err()
            && let Ok(Some(h)) = ensure(&data_dir).await
        {
            hosted = Some(h);
            republish();
        }
    }
}
