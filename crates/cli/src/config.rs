//! Paths, the configuration file, and what a profile is made of.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::cli::Global;

/// The configuration file: defaults for every profile, and per-profile overrides.
///
/// ```toml
/// phonebook = "https://phonebook.example.org"
/// listen = ["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"]
/// relay = "auto"        # or "always", "never": a reservation at the phonebook's relay
/// hole_punch = true     # false: never show peers your IP address; stay on the relay
/// bell = true           # ring the terminal bell for messages in other conversations
/// notify = false        # true: a desktop notification (notify-send) names who wrote
///
/// [profiles.work]
/// phonebook = "https://phonebook.work.example"
/// ```
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    #[serde(flatten)]
    defaults: Settings,
    #[serde(default)]
    profiles: std::collections::BTreeMap<String, Settings>,
}

/// Settings of a profile.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Phonebook URL.
    pub phonebook: Option<String>,
    /// Listen addresses.
    pub listen: Option<Vec<String>>,
    /// When to hold a reservation at the phonebook's relay: "auto", "always" or "never".
    pub relay: Option<String>,
    /// Whether to upgrade relayed connections to direct ones by hole punching.
    pub hole_punch: Option<bool>,
    /// Ring the terminal bell when a message arrives in another conversation (default true).
    pub bell: Option<bool>,
    /// Show a desktop notification (`notify-send`) when a message arrives (default false). It
    /// says who wrote, never what.
    pub notify: Option<bool>,
}

/// Where a profile lives and how it connects, with command-line options applied over the
/// configuration file.
#[derive(Debug, Clone)]
pub struct Profile {
    /// The profile's name.
    pub name: String,
    /// Its directory.
    pub dir: PathBuf,
    /// The data directory (parent of every profile).
    pub data_dir: PathBuf,
    /// The phonebook, or `None` for the local one (`local.rs`).
    pub phonebook: Option<String>,
    /// Listen addresses (empty: the defaults).
    pub listen: Vec<String>,
    /// How we stay reachable behind NAT.
    pub nat: tincan_node::NatConfig,
    /// Ring the terminal bell for messages in other conversations.
    pub bell: bool,
    /// Desktop notifications through `notify-send`.
    pub notify: bool,
    /// Where the profile's owner serves the API (`specs/rpc.md` §1).
    pub socket: PathBuf,
}

impl Profile {
    /// Resolves the profile named in `global`.
    pub fn resolve(global: &Global) -> anyhow::Result<Profile> {
        let name = global.profile.clone();
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
            || name.starts_with('.')
        {
            bail!(
                "profile names are 1 to 64 of a-z, A-Z, 0-9, '-', '_' and '.', not starting with '.'"
            );
        }
        let data_dir = match &global.data_dir {
            Some(dir) => dir.clone(),
            None => xdg("XDG_DATA_HOME", ".local/share")?.join("tincan"),
        };
        let config_path = match &global.config {
            Some(path) => Some(path.clone()),
            None => xdg("XDG_CONFIG_HOME", ".config").ok().map(|d| d.join("tincan/config.toml")),
        };
        let file = match config_path {
            Some(path) if path.exists() => {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?;
                toml::from_str::<File>(&text)
                    .with_context(|| format!("reading {}", path.display()))?
            }
            _ => File::default(),
        };
        let over = file.profiles.get(&name).cloned().unwrap_or_default();
        let phonebook = global.phonebook.clone().or(over.phonebook).or(file.defaults.phonebook);
        let listen = if global.listen.is_empty() {
            over.listen.or(file.defaults.listen).unwrap_or_default()
        } else {
            global.listen.clone()
        };
        let relay = match over.relay.or(file.defaults.relay).as_deref() {
            None | Some("auto") => tincan_node::RelayPolicy::Auto,
            Some("always") => tincan_node::RelayPolicy::Always,
            Some("never") => tincan_node::RelayPolicy::Never,
            Some(other) => bail!("relay = {other:?} in the configuration: auto, always or never"),
        };
        let nat = tincan_node::NatConfig {
            relay,
            hole_punch: over.hole_punch.or(file.defaults.hole_punch).unwrap_or(true),
            ..tincan_node::NatConfig::default()
        };
        let bell = over.bell.or(file.defaults.bell).unwrap_or(true);
        let notify = over.notify.or(file.defaults.notify).unwrap_or(false);
        let dir = data_dir.join(&name);
        // The runtime directory for the default data directory; beside the profile otherwise,
        // so that two data directories never share a socket name.
        let runtime =
            std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from).filter(|p| p.is_absolute());
        let socket = match runtime {
            Some(run) if global.data_dir.is_none() => {
                run.join("tincan").join(format!("{name}.sock"))
            }
            _ => dir.join("daemon.sock"),
        };
        Ok(Profile { socket, dir, name, data_dir, phonebook, listen, nat, bell, notify })
    }

    /// The identity key file.
    pub fn key_file(&self) -> PathBuf {
        self.dir.join("identity.key")
    }

    /// The store.
    pub fn store_file(&self) -> PathBuf {
        self.dir.join("store.redb")
    }

    /// The log file: logs never go to the screen.
    pub fn log_file(&self) -> PathBuf {
        self.dir.join("tincan.log")
    }

    /// Whether the identity exists.
    pub fn exists(&self) -> bool {
        self.key_file().exists()
    }
}

/// `$VAR`, if set to an absolute path, else `~/fallback`.
fn xdg(var: &str, fallback: &str) -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os(var).map(PathBuf::from).filter(|p| p.is_absolute()) {
        return Ok(dir);
    }
    let home = std::env::var_os("HOME").context("HOME is not set; pass --data-dir")?;
    Ok(Path::new(&home).join(fallback))
}

/// Creates `dir` (and its parents) with mode 0700 on Unix.
pub fn private_dir(dir: &Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).with_context(|| format!("creating {}", dir.display()))
}
