//! Unlocking a profile: the password, the identity, the store, and the username.

use std::io::Read;

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

/// The profile's store is open in another process that does not serve the API (yet).
#[derive(Debug, thiserror::Error)]
#[error(
    "profile {0:?} is in use by another tincan that does not answer on its socket; use that one, or close it"
)]
pub struct InUse(pub String);

/// Whether `e` says the profile is in use by another process.
pub fn in_use(e: &anyhow::Error) -> bool {
    e.downcast_ref::<InUse>().is_some()
}

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

/// Longest password line read from a file or descriptor.
const MAX_PASSWORD_LINE: usize = 4096;

/// The first line of `reader`, as a password. Every buffer that held it is zeroized: no
/// `BufReader` (whose buffer is not), and no buffer that grows (a reallocation leaves the old
/// copy behind).
fn first_line(mut reader: impl Read) -> anyhow::Result<Password> {
    let mut line = zeroize::Zeroizing::new(Vec::with_capacity(MAX_PASSWORD_LINE));
    let mut chunk = zeroize::Zeroizing::new([0u8; 256]);
    while line.len() < MAX_PASSWORD_LINE && !line.contains(&b'\n') {
        let room = (MAX_PASSWORD_LINE - line.len()).min(chunk.len());
        let n = match reader.read(&mut chunk[..room]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(anyhow::Error::new(e).context("reading the password")),
        };
        line.extend_from_slice(&chunk[..n]);
    }
    let end = line.iter().position(|&b| b == b'\n').unwrap_or(line.len());
    let mut end = end;
    if end > 0 && line[end - 1] == b'\r' {
        end -= 1;
    }
    let text = std::str::from_utf8(&line[..end]).context("the password is not valid UTF-8")?;
    Ok(Password::new(text.to_owned()))
}

/// Shortest password accepted for a new identity or a new password, however it is given.
pub const MIN_PASSWORD_LEN: usize = 8;

fn check_new_password(password: &Password) -> anyhow::Result<()> {
    if password.len() < MIN_PASSWORD_LEN {
        bail!("the password must have at least {MIN_PASSWORD_LEN} characters");
    }
    Ok(())
}

fn prompt(text: &str) -> anyhow::Result<Password> {
    let password =
        rpassword::prompt_password(text).context("reading the password from the terminal")?;
    Ok(Password::new(password))
}

/// Runs `check` (a key derivation: about half a second) with the terminal's echo off, then
/// throws away whatever was typed meanwhile: type-ahead during a check is never shown, and is
/// not read as the next try.
fn quietly<T>(check: impl FnOnce() -> T) -> T {
    #[cfg(unix)]
    {
        use rustix::termios::{
            LocalModes, OptionalActions, QueueSelector, tcflush, tcgetattr, tcsetattr,
        };
        let stdin = std::io::stdin();
        if let Ok(saved) = tcgetattr(&stdin) {
            let mut quiet = saved.clone();
            quiet.local_modes.remove(LocalModes::ECHO);
            let _ = tcsetattr(&stdin, OptionalActions::Now, &quiet);
            let out = check();
            let _ = tcflush(&stdin, QueueSelector::IFlush);
            let _ = tcsetattr(&stdin, OptionalActions::Now, &saved);
            return out;
        }
    }
    check()
}

/// How a command uses the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// It writes: the store is opened for this process to write.
    Write,
    /// It only reads: the store is opened read-only, alongside a chat that may be writing it,
    /// and the file is not touched (not even its modification time, which would show when the
    /// profile was used).
    Read,
}

/// Unlocks `profile` for a command that writes: at most three tries at a prompt, one with a
/// given password. Nothing is written on a wrong password.
pub async fn unlock(profile: &Profile, source: PasswordSource) -> anyhow::Result<Unlocked> {
    unlock_for(profile, source, Access::Write).await
}

/// Unlocks `profile` with the store opened for `access`.
pub async fn unlock_for(
    profile: &Profile,
    source: PasswordSource,
    access: Access,
) -> anyhow::Result<Unlocked> {
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
                match quietly(|| unlock_with(profile, &password)) {
                    Ok(identity) => break identity,
                    Err(e) if e.downcast_ref::<Locked>().is_some() && attempt < 3 => {
                        eprintln!("Wrong password, try again.");
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    };
    let store = open_store(profile, &identity, access)?;
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

fn open_store(profile: &Profile, identity: &Identity, access: Access) -> anyhow::Result<Store> {
    let path = profile.store_file();
    let opened = match access {
        Access::Read => match Store::open_read_only(&path, identity.store_root_key()) {
            // After a crash the file needs a repair, which only a writable open makes.
            Err(OpenError::NeedsRepair) => Store::open(&path, identity.store_root_key()),
            other => other,
        },
        Access::Write => Store::open(&path, identity.store_root_key()),
    };
    opened.map_err(|e| match e {
        OpenError::AlreadyOpen => anyhow::Error::new(InUse(profile.name.clone())),
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
            if first.len() < MIN_PASSWORD_LEN {
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
    // The same rule for a password given by file or descriptor as at the prompt.
    check_new_password(&password)?;
    private_dir(&profile.dir)?;
    eprintln!("Creating your keys (this takes a moment)...");
    let identity = quietly(|| tincan_identity::create(&profile.key_file(), &password))
        .with_context(|| format!("creating {}", profile.key_file().display()))?;
    let store = Store::create(&profile.store_file(), identity.store_root_key())
        .with_context(|| format!("creating {}", profile.store_file().display()))?;
    store.set_setting(USERNAME_SETTING, username.as_str().as_bytes().to_vec()).await?;
    Ok(Unlocked { identity, store, username: username.clone() })
}

/// Changes the password of `profile`. The old password comes from `old`; the new one from
/// `new` when given (a file or a descriptor: scripts), else from the terminal, twice.
pub fn change_password(
    profile: &Profile,
    old: PasswordSource,
    new: Option<PasswordSource>,
) -> anyhow::Result<()> {
    let old = match old {
        PasswordSource::Given(password) => password,
        PasswordSource::Prompt => prompt("Current password: ")?,
    };
    let new = match new {
        Some(PasswordSource::Given(password)) => {
            check_new_password(&password)?;
            password
        }
        Some(PasswordSource::Prompt) | None => loop {
            let first = prompt("New password (at least 8 characters): ")?;
            if first.len() < MIN_PASSWORD_LEN {
                eprintln!("That is too short.");
                continue;
            }
            if first.same_as(&prompt("Type it again: ")?) {
                break first;
            }
            eprintln!("The two did not match; again.");
        },
    };
    eprintln!("Re-sealing your keys (this takes a moment)...");
    tincan_identity::change_password(&profile.key_file(), &old, &new).map_err(|e| match e {
        tincan_identity::ChangePasswordError::Unlock(UnlockError::WrongPassword) => {
            Locked("wrong password; nothing was changed".into()).into()
        }
        other => anyhow::Error::new(other),
    })
}

/// A password given as a file's first line or through a descriptor, for `passwd`'s new one.
pub fn given(
    file: Option<&std::path::Path>,
    fd: Option<i32>,
) -> anyhow::Result<Option<PasswordSource>> {
    if let Some(path) = file {
        let file =
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        return Ok(Some(PasswordSource::Given(first_line(file)?)));
    }
    if let Some(fd) = fd {
        return Ok(Some(PasswordSource::Given(first_line(fd_file(fd)?)?)));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_line_is_the_password() {
        let read = |bytes: &[u8]| first_line(bytes).map(|p| p.len());
        assert_eq!(read(b"hunter22\nsecond line").unwrap(), 8);
        assert_eq!(read(b"hunter22\r\n").unwrap(), 8);
        assert_eq!(read(b"no newline").unwrap(), 10);
        assert_eq!(read(b"").unwrap(), 0);
        assert_eq!(read(&[b'x'; 10_000]).unwrap(), MAX_PASSWORD_LINE, "bounded");
        assert!(read(b"\xff\xfe\n").is_err());
    }
}
