//! `tincan`: peer-to-peer secure chat for the terminal. See `tincan --help`.

mod backend;
mod cli;
mod commands;
mod config;
mod format;
mod local;
mod plain;
mod profile;
mod session;
mod tui;

use clap::{CommandFactory, Parser};

use crate::cli::{Bot, Cli, Command};
use crate::config::Profile;

fn main() {
    let args = Cli::parse();
    quiet_panics();
    let code = match run(args) {
        Ok(code) => code,
        Err(e) => {
            // Errors may carry what a phonebook or a peer said: cleaned like everything else.
            eprintln!("tincan: {}", format::clean_line(&format!("{e:#}")));
            if e.downcast_ref::<profile::Locked>().is_some() { profile::EXIT_LOCKED } else { 1 }
        }
    };
    std::process::exit(code);
}

fn run(args: Cli) -> anyhow::Result<i32> {
    if let Some(Command::Completions { shell }) = &args.command {
        clap_complete::generate(*shell, &mut Cli::command(), "tincan", &mut std::io::stdout());
        return Ok(0);
    }
    let profile = Profile::resolve(&args.global)?;
    logging(&profile);
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let global = args.global;
    runtime.block_on(async move {
        match args.command {
            None => tui::run(&profile, &global, None).await.map(|()| 0),
            Some(Command::Chat { user, plain: false }) => {
                tui::run(&profile, &global, user).await.map(|()| 0)
            }
            Some(Command::Chat { user: Some(user), plain: true }) => {
                plain::run(&profile, &global, &user).await.map(|()| 0)
            }
            Some(Command::Chat { user: None, plain: true }) => {
                anyhow::bail!("--plain needs a username")
            }
            Some(Command::Init { username }) => {
                commands::init(&profile, &global, username).await.map(|()| 0)
            }
            Some(Command::Send { user, text, no_wait, timeout }) => {
                commands::send(&profile, &global, &user, &text.join(" "), no_wait, timeout).await
            }
            Some(Command::Log { user, limit, grep, json }) => {
                commands::log(&profile, &global, &user, limit, grep.as_deref(), json)
                    .await
                    .map(|()| 0)
            }
            Some(Command::Inbox { json, peek }) => {
                commands::inbox(&profile, &global, json, peek).await.map(|()| 0)
            }
            Some(Command::Contacts { json }) => {
                commands::contacts(&profile, &global, json).await.map(|()| 0)
            }
            Some(Command::Verify { user, mark_verified }) => {
                commands::verify(&profile, &global, &user, mark_verified).await.map(|()| 0)
            }
            Some(Command::Trust { user, safety_number }) => {
                commands::trust(&profile, &global, &user, safety_number.as_deref())
                    .await
                    .map(|()| 0)
            }
            Some(Command::Reject { user }) => {
                commands::reject(&profile, &global, &user).await.map(|()| 0)
            }
            Some(Command::Accept { user, anyway }) => {
                commands::accept(&profile, &global, &user, anyway).await.map(|()| 0)
            }
            Some(Command::Delete { user, yes }) => {
                commands::delete(&profile, &global, &user, yes).await.map(|()| 0)
            }
            Some(Command::Block { user, undo }) => {
                commands::block(&profile, &global, &user, undo).await.map(|()| 0)
            }
            Some(Command::Online { json }) => commands::online(&profile, json).await.map(|()| 0),
            Some(Command::Passwd { new_password_file, new_password_fd }) => {
                commands::passwd(&profile, &global, new_password_file.as_deref(), new_password_fd)
                    .map(|()| 0)
            }
            Some(Command::Export { user, output }) => {
                commands::export(&profile, &global, user.as_deref(), output.as_deref())
                    .await
                    .map(|()| 0)
            }
            Some(Command::Doctor { wait, json }) => {
                commands::doctor(&profile, &global, wait, json).await
            }
            Some(Command::Daemon { stop: false }) => {
                commands::daemon(&profile, &global).await.map(|()| 0)
            }
            Some(Command::Daemon { stop: true }) => commands::stop_daemon(&profile).await,
            Some(Command::Bot { bot: Bot::Echo }) => {
                commands::echo_bot(&profile, &global).await.map(|()| 0)
            }
            Some(Command::Completions { .. }) => Ok(0),
        }
    })
}

/// Panics go to the log. One inside the database engine is caught by the store and reported as
/// a damaged file (a read-only open does not check the file's integrity first): it must not
/// reach the screen. Any other is a bug, said in one line, with the details in the log.
fn quiet_panics() {
    std::panic::set_hook(Box::new(|info| {
        tracing::error!(%info, "panic");
        let in_engine = info.location().is_some_and(|l| l.file().contains("/redb-"));
        if !in_engine {
            eprintln!(
                "tincan: internal error: {} (details in tincan.log)",
                format::clean_line(&info.to_string())
            );
        }
    }));
}

/// Logs go to the profile's `tincan.log`, never to the screen. `RUST_LOG` sets the level.
fn logging(profile: &Profile) {
    if config::private_dir(&profile.dir).is_err() {
        return;
    }
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let Ok(file) = options.open(profile.log_file()) else { return };
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .try_init();
}
