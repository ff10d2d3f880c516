//! A running node for an unlocked profile, with its phonebook.

use anyhow::Context;
use tincan_node::{Config, Node};

use crate::config::Profile;
use crate::local;
use crate::profile::Unlocked;

/// A running node, and the local phonebook if this process hosts it.
pub struct Session {
    /// The node.
    pub node: Node,
    /// Where the phonebook is, in words: its URL, or the local phonebook's socket.
    pub phonebook_url: String,
    /// Whether this is the zero-configuration local phonebook.
    pub local: bool,
    watcher: Option<tokio::task::JoinHandle<()>>,
}

impl Session {
    /// Starts the node of `unlocked`, publishing to the profile's phonebook, or to the local one
    /// (hosted here if nobody hosts it).
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
        let node = Node::start(unlocked.identity, unlocked.store, config)
            .await
            .context("starting the network")?;
        let watcher = local.then(|| {
            let node = node.clone();
            let data_dir = profile.data_dir.clone();
            tokio::spawn(local::watch(data_dir, hosted, move || node.republish()))
        });
        Ok(Session { node, phonebook_url: url, local, watcher })
    }

    /// Takes our record down, stops the node and closes the store.
    pub async fn stop(self) {
        if let Some(w) = self.watcher {
            w.abort();
        }
        self.node.shutdown().await;
        self.node.store().clone().close().await;
    }
}
