//! A running node for an unlocked profile, with its phonebook, serving the API.

use std::sync::Arc;

use anyhow::Context;
use tincan_daemon::{Me, Service};
use tincan_node::{Config, Node};

use crate::config::Profile;
use crate::local;
use crate::profile::Unlocked;

/// A running node, the local phonebook if this process hosts it, and the API socket through
/// which every other `tincan` of the profile uses this node.
pub struct Session {
    /// The node.
    pub node: Node,
    /// The API's methods over the node.
    pub service: Arc<Service>,
    /// Where the phonebook is, in words: its URL, or the local phonebook's socket.
    pub phonebook_url: String,
    /// Whether this is the zero-configuration local phonebook.
    pub local: bool,
    watcher: Option<tokio::task::JoinHandle<()>>,
    api: Option<Api>,
}

/// The API server of a session.
struct Api {
    socket: std::path::PathBuf,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Session {
    /// Starts the node of `unlocked`, publishing to the profile's phonebook, or to the local one
    /// (hosted here if nobody hosts it), and serves the API on the profile's socket.
    pub async fn start(profile: &Profile, unlocked: Unlocked) -> anyhow::Result<Session> {
        let (phonebook, url, local, hosted) = match &profile.phonebook {
            Some(url) => {
                let client = tincan_phonebook::Client::new(url)
                    .with_context(|| format!("phonebook {url}"))?;
                (client, url.clone(), false, None)
            }
            None => {
                let hosted = local::ensure(&profile.data_dir).await?;
                let client = local::client(&profile.data_dir)?;
                (client, local::describe(&profile.data_dir), true, hosted)
            }
        };
        let mut config = Config::new(unlocked.username.clone());
        if !profile.listen.is_empty() {
            config.listen = profile
                .listen
                .iter()
                .map(|a| a.parse().with_context(|| format!("{a} is not a multiaddr")))
                .collect::<anyhow::Result<_>>()?;
        }
        config.phonebooks = vec![phonebook];
        config.nat = profile.nat.clone();
        if local {
            // The local phonebook keeps records for 60 s: publish often enough. Lookups stay
            // at the node's pace: a local phonebook is no reason to ask more often.
            config.presence_ttl = std::time::Duration::from_secs(60);
        }
        let me = Me {
            profile: profile.name.clone(),
            username: unlocked.username.clone(),
            public_key: unlocked.identity.public_key(),
        };
        let store = unlocked.store.clone();
        let node = Node::start(unlocked.identity, unlocked.store, config)
            .await
            .context("starting the network")?;
        let watcher = local.then(|| {
            let node = node.clone();
            let data_dir = profile.data_dir.clone();
            tokio::spawn(local::watch(data_dir, hosted, move || node.republish()))
        });
        let service = Arc::new(Service::new(store, Some(node.clone()), me));
        // This process holds the store: it owns the profile, and serves the others. Without a
        // socket (a runtime directory that is not private, say) the chat still works; other
        // commands then find the profile in use.
        let api = match tincan_daemon::bind(&profile.socket) {
            Ok(listener) => {
                let (stop, stopped) = tokio::sync::watch::channel(false);
                let task = tokio::spawn(tincan_daemon::serve(
                    listener,
                    service.clone(),
                    tincan_daemon::Limits::default(),
                    stopped,
                ));
                Some(Api { socket: profile.socket.clone(), stop, task })
            }
            Err(e) => {
                tracing::warn!(error = %e, "not serving the API");
                None
            }
        };
        Ok(Session { node, service, phonebook_url: url, local, watcher, api })
    }

    /// Clients of the API connected now.
    pub fn clients(&self) -> u32 {
        self.service.clients()
    }

    /// Stops serving the API, takes our record down, stops the node and closes the store.
    pub async fn stop(self) {
        if let Some(api) = &self.api {
            api.stop.send_replace(true);
        }
        if let Some(w) = self.watcher {
            w.abort();
        }
        self.node.shutdown().await;
        self.node.store().clone().close().await;
        // Last: the socket's going says the profile is free (`daemon --stop` waits for it).
        if let Some(api) = self.api {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(3), api.task).await;
            let _ = std::fs::remove_file(&api.socket);
        }
    }
}
