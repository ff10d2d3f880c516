//! Unlocking a profile: the password, the identity, the store, and the username.

use std::io::{BufRead, Read};

use anyhow::{Context, bail};
use tincan_identity::{Identity, Password, UnlockError};
use tincan_store::{OpenError, Store};
use tincan_wire::Username;

use crate::cli::Global;
use crate::config::{Profile, private_dir};

/// Exit code for a wrong password or an identity that cannot be unlocked.
pub const EXIT_LOCKED: i32 = 3;

/// A wrong password, reported with exit code 3.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Locked(pub String);

/// An unlocked profile.
pub struct Unlocked {
    /// The identity.
    pub identity: Identity,
    /// The open store.
    pub store: Store,
    /// Our username.
    pub username: Username,
}

const USERNAME_SETTING: &str = "username";

/// Where passwords come from.
pub enum PasswordSource {
    /// Ask on the terminal, up to three times.
    Prompt,
    /// The first line of a file, or of an open descriptor: one try.
    Given(Password),
}

impl PasswordSource {
    /// The source the options name.
    pub fn from(global: &Global) -> anyhow::Result<PasswordSource> {
        if let Some(path) = &global.password_file {
            let file =
                std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
            return Ok(PasswordSource::Given(first_line(file)?));
        }
        if let Some(fd) = global.password_fd {
            return Ok(PasswordSource::Given(first_line(fd_file(fd)?)?));
        }
        Ok(PasswordSource::Prompt)
    }
}

#[cfg(unix)]
fn fd_file(fd: i32) -> anyhow::Result<std::fs::File> {
    // Read through /dev/fd rather than adopting the raw descriptor: no unsafe code needed.
    let path = format!("/dev/fd/{fd}");
    std::fs::File::open(&path)
        .with_context(|| format!("reading the password from file descriptor {fd}"))
}

#[cfg(not(unix))]
fn fd_file(_: i32) -> anyhow::Result<std::fs::File> {
    bail!("--password-fd is only supported on Unix")
}

fn first_line(reader: impl Read) -> anyhow::Result<Password> {
    let mut line = zeroize::Zeroizing::new(String::new());
    std::io::BufReader::new(reader.take(4096))
        .read_line(&mut line)
        .context("reading the password")?;
    let password = line.trim_end_matches(['\n', '\r']).to_owned();
    Ok(Password::new(password))
}

fn prompt(text: &str) -> anyhow::Result<Password> {
    let password =
        rpassword::prompt_password(text).context("reading the password from the terminal")?;
    Ok(Password::new(password))
}

/// Unlocks `profile`: at most three tries at a prompt, one with a given password. Nothing is
/// written on a wrong password.
pub async fn unlock(profile: &Profile, source: PasswordSource) -> anyhow::Result<Unlocked> {
    if !profile.exists() {
        bail!(
            "profile {:?} has no identity yet (looked in {}); create it with `tincan --profile {} init`",
            profile.name,
            profile.dir.display(),
            profile.name
        );
    }
    let identity = match source {
        PasswordSource::Given(password) => unlock_with(profile, &password)?,
        PasswordSource::Prompt => {
            let mut attempt = 0;
            loop {
                attempt += 1;
                let password = prompt(&format!("Password for {}: ", profile.name))?;
                match unlock_with(profile, &password) {
                    Ok(identity) => break identity,
                    Err(e) if e.downcast_ref::<Locked>().is_some() && attempt < 3 => {
                        eprintln!("Wrong password, try again.");
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    };
    let store = open_store(profile, &identity)?;
    let username = match store.setting(USERNAME_SETTING).await? {
        Some(bytes) => Username::canonical(std::str::from_utf8(&bytes).unwrap_or_default())
            .context("the stored username is damaged")?,
        None => bail!("the profile's store has no username; it is damaged"),
    };
    Ok(Unlocked { identity, store, username })
}

fn unlock_with(profile: &Profile, password: &Password) -> anyhow::Result<Identity> {
    tincan_identity::unlock(&profile.key_file(), password).map_err(|e| match e {
        UnlockError::WrongPassword => Locked("wrong password".into()).into(),
        other => {
            anyhow::Error::new(other).context(format!("unlocking {}", profile.key_file().display()))
        }
    })
}

fn open_store(profile: &Profile, identity: &Identity) -> anyhow::Result<Store> {
    Store::open(&profile.store_file(), identity.store_root_key()).map_err(|e| match e {
        OpenError::AlreadyOpen => anyhow::anyhow!(
            "profile {:?} is in use by another tincan (a chat window?); use that one, or close it",
            profile.name
        ),
        other => {
            anyhow::Error::new(other).context(format!("opening {}", profile.store_file().display()))
        }
    })
}

/// Creates the profile: the key file, sealed with the password, and the store with the
/// username. With a prompt, the password is asked twice.
pub async fn create(
    profile: &Profile,
    username: &Username,
    source: PasswordSource,
) -> anyhow::Result<Unlocked> {
    if profile.exists() {
        bail!("profile {:?} already has an identity", profile.name);
    }
    let password = match source {
        PasswordSource::Given(password) => password,
        PasswordSource::Prompt => loop {
            let first = prompt("Choose a password (8 or more characters; it stays here): ")?;
            if first.len() < 8 {
                eprintln!("That is too short.");
                continue;
            }
            let second = prompt("Type it again: ")?;
            if first.same_as(&second) {
                break first;
            }
            eprintln!("The two did not match; again.");
        },
    };
    if password.is_empty() {
        bail!("the password must not be empty");
    }
    private_dir(&profile.dir)?;
    eprintln!("Creating your keys (this takes a moment)...");
    let identity = tincan_identity::create(&profile.key_file(), &password)
        .with_context(|| format!("creating {}", profile.key_file().display()))?;
    let store = Store::create(&profile.store_file(), identity.store_root_key())
        .with_context(|| format!("creating {}", profile.store_file().display()))?;
    store.set_setting(USERNAME_SETTING, username.as_str().as_bytes().to_vec()).await?;
    Ok(Unlocked { identity, store, username: username.clone() })
}

/// Changes the password of `profile`.
pub fn change_password(profile: &Profile, source: PasswordSource) -> anyhow::Result<()> {
    let (old, new) = match source {
        PasswordSource::Given(_) => bail!("`passwd` asks for both passwords at the terminal"),
        PasswordSource::Prompt => {
            let old = prompt("Current password: ")?;
            let new = loop {
                let first = prompt("New password (at least 8 characters): ")?;
                if first.len() < 8 {
                    eprintln!("That is too short.");
                    continue;
                }
                if first.same_as(&prompt("Type it again: ")?) {
                    break first;
                }
                eprintln!("The two did not match; again.");
            };
            (old, new)
        }
    };
    eprintln!("Re-sealing your keys (this takes a moment)...");
    tincan_identity::change_password(&profile.key_file(), &old, &new).map_err(|e| match e {
        tincan_identity::ChangePasswordError::Unlock(UnlockError::WrongPassword) => {
            Locked("wrong password; nothing was changed".into()).into()
        }
        other => anyhow::Error::new(other),
    })
}
