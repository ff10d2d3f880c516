//! Where a command's calls go: to the profile's owner through its socket when one runs, or
//! to the API's methods in this process over the profile opened here. Either way a command
//! sees the same answers, in the API's types (`specs/rpc.md`).

use std::time::Duration;

use anyhow::Context;
use serde::de::DeserializeOwned;
use tincan_api::{Call, Client, ClientError};
use tincan_daemon::{Me, Service};

use crate::cli::Global;
use crate::config::Profile;
use crate::profile::{self, Access, PasswordSource};
use crate::session::Session;

/// What a command needs of the profile when no owner runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Only to read: the store opened read-only, beside any other reader.
    Read,
    /// To change the store, without the network.
    Write,
    /// The network: a node for the command's duration.
    Network,
}

/// A command's way to the profile.
pub enum Backend {
    /// The owner, through its socket. No password was asked for.
    Remote(Client),
    /// This process opened the profile.
    Local {
        /// The methods, over the store (and the node, for [`Need::Network`]).
        service: std::sync::Arc<Service>,
        /// The node, when this process runs one.
        session: Option<Session>,
    },
}

/// How long an owner has to answer `status` before it is taken for dead.
const OWNER_TIMEOUT: Duration = Duration::from_secs(5);

/// The profile's owner, if one runs and answers.
pub async fn owner(profile: &Profile) -> Option<Client> {
    let stream = tokio::net::UnixStream::connect(&profile.socket).await.ok()?;
    // Only our own tincan: a socket another user put in the way gets nothing from us.
    let uid = stream.peer_cred().ok()?.uid();
    if uid != rustix::process::getuid().as_raw() {
        tracing::warn!(uid, socket = %profile.socket.display(), "the profile's socket is served by another user: not using it");
        return None;
    }
    let client = Client::over(stream);
    match tokio::time::timeout(OWNER_TIMEOUT, client.call(Call::Status(Default::default()))).await {
        Ok(Ok(_)) => Some(client),
        _ => None,
    }
}

impl Backend {
    /// The owner if one runs; else the profile, opened here for `need`.
    pub async fn open(profile: &Profile, global: &Global, need: Need) -> anyhow::Result<Backend> {
        if let Some(client) = owner(profile).await {
            return Ok(Backend::Remote(client));
        }
        let access = if need == Need::Read { Access::Read } else { Access::Write };
        let unlocked =
            match profile::unlock_for(profile, PasswordSource::from(global)?, access).await {
                Ok(unlocked) => unlocked,
                Err(e) if profile::in_use(&e) => {
                    // Another tincan opened the profile a moment ago and is about to serve it.
                    for _ in 0..20 {
                        tokio::time::sleep(Duration::from_millis(250)).await;
                        if let Some(client) = owner(profile).await {
                            return Ok(Backend::Remote(client));
                        }
                    }
                    return Err(e);
                }
                Err(e) => return Err(e),
            };
        if need == Need::Network {
            let session = Session::start(profile, unlocked).await?;
            return Ok(Backend::Local { service: session.service.clone(), session: Some(session) });
        }
        let me = Me {
            profile: profile.name.clone(),
            username: unlocked.username.clone(),
            public_key: unlocked.identity.public_key(),
        };
        let service = std::sync::Arc::new(Service::new(unlocked.store, None, me));
        Ok(Backend::Local { service, session: None })
    }

    /// Makes a call and reads its answer as `T`.
    pub async fn call<T: DeserializeOwned>(&self, call: Call) -> anyhow::Result<T> {
        let method = call.method();
        let value = match self {
            Backend::Remote(client) => client.call(call).await.map_err(|e| match e {
                ClientError::Rpc(e) => anyhow::Error::new(Refused(e)),
                other => anyhow::Error::new(other),
            })?,
            Backend::Local { service, .. } => {
                service.handle(call).await.map_err(|e| anyhow::Error::new(Refused(e)))?
            }
        };
        serde_json::from_value(value).with_context(|| format!("reading the answer to {method}"))
    }

    /// Whether the calls go to another process.
    pub fn is_remote(&self) -> bool {
        matches!(self, Backend::Remote(_))
    }

    /// Closes what this process opened.
    pub async fn close(self) {
        if let Backend::Local { service, session } = self {
            match session {
                Some(session) => session.stop().await,
                None => service.store().clone().close().await,
            }
        }
    }
}

/// An API error, said as its message: the code is for scripts, which read `--json`.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.message)]
pub struct Refused(pub tincan_api::RpcError);

impl Refused {
    /// The API error code of `e`, if it is one.
    pub fn code(e: &anyhow::Error) -> Option<i64> {
        e.downcast_ref::<Refused>().map(|r| r.0.code)
    }
}

/// Fails with a clear message when another process owns the profile and this one would be
/// `what`, a second owner (another daemon).
pub async fn refuse_second_owner(profile: &Profile, what: &str) -> anyhow::Result<()> {
    if owner(profile).await.is_some() {
        anyhow::bail!(
            "profile {:?} is already running in another tincan (a daemon or a chat screen), so {what} is not needed: every tincan command of the profile works through it. To stop a daemon: `tincan --profile {} daemon --stop`",
            profile.name,
            profile.name
        );
    }
    Ok(())
}

/// Before an owner with a screen stops: while other `tincan` commands are still connected, it
/// says so and keeps serving them until they are done, or the user presses Ctrl-C.
pub async fn serve_remaining(session: &Session) {
    if session.clients() == 0 {
        return;
    }
    eprintln!(
        "{} other tincan command(s) still use this profile through this one: serving them until they are done. Ctrl-C stops now.",
        session.clients()
    );
    let done = async {
        while session.clients() > 0 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::select! {
        () = done => eprintln!("They are done."),
        _ = tokio::signal::ctrl_c() => eprintln!("Stopping; they lose their connection."),
    }
}
