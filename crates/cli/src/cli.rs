//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// tincan: chat computer to computer, end to end, from the terminal.
///
/// What you say goes straight to the other person's computer over an encrypted connection; no
/// server carries or keeps it. A phonebook only tells peers where to find each other. With no
/// phonebook configured, tincan profiles on this machine find each other through a local one
/// that the first running tincan hosts.
///
/// Start with `tincan` (no arguments): it creates your identity on first run, then opens the
/// chat. Two people on one machine:
///
///     terminal 1:  tincan --profile alice
///     terminal 2:  tincan --profile bob        then type:  alice
///
/// Exit codes: 0 ok (for `send`: delivered); 1 error; 2 bad arguments; 3 wrong password or
/// locked identity; 4 `send`: queued but not delivered yet; 5 `send`: refused by the recipient;
/// 6 `doctor`: others cannot reach you.
#[derive(Parser, Debug)]
#[command(name = "tincan", version, verbatim_doc_comment, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Options for every command.
#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Which identity to use: each profile has its own username, keys and messages.
    #[arg(long, short = 'p', global = true, env = "TINCAN_PROFILE", default_value = "default")]
    pub profile: String,

    /// Where profiles are kept [default: $XDG_DATA_HOME/tincan, or ~/.local/share/tincan].
    #[arg(long, global = true, env = "TINCAN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Phonebook URL, e.g. `https://phonebook.example.org`. Without one, your profiles on this
    /// machine use a local phonebook that the first running tincan hosts, on a Unix socket in
    /// the data directory that only you can reach.
    #[arg(long, global = true, env = "TINCAN_PHONEBOOK")]
    pub phonebook: Option<String>,

    /// Address to listen on (repeatable), e.g. /ip4/0.0.0.0/tcp/4001. Default: any free TCP
    /// and QUIC port on all interfaces.
    #[arg(long, global = true, value_name = "MULTIADDR")]
    pub listen: Vec<String>,

    /// Read the password from this file (its first line) instead of asking. Anyone who can
    /// read the file can unlock your identity: keep it mode 0600, on an encrypted disk.
    #[arg(long, global = true, value_name = "PATH", conflicts_with = "password_fd")]
    pub password_file: Option<PathBuf>,

    /// Read the password from this open file descriptor (e.g. `3<secret`), for scripts that
    /// hold it in memory. Safer than a file, but it is still visible to the process tree.
    #[arg(long, global = true, value_name = "FD")]
    pub password_fd: Option<i32>,

    /// Configuration file [default: $XDG_CONFIG_HOME/tincan/config.toml].
    #[arg(long, global = true, env = "TINCAN_CONFIG")]
    pub config: Option<PathBuf>,
}

/// What to do.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create your identity: a username and a password. Does nothing if it exists.
    Init {
        /// Your username: 1 to 32 of a-z, 0-9, '_', '.', '-'.
        #[arg(long)]
        username: Option<String>,
    },
    /// Open the chat, optionally on a conversation.
    Chat {
        /// Who to talk to.
        user: Option<String>,
        /// No screen: read lines from stdin and send each, print incoming messages on stdout
        /// (for scripts, pipes and screen readers). A line `--DISCONNECT--` ends it.
        #[arg(long, requires = "user")]
        plain: bool,
    },
    /// Send a message and wait until it is delivered.
    Send {
        /// The recipient's username.
        user: String,
        /// The message (words are joined with spaces).
        #[arg(required = true, num_args = 1..)]
        text: Vec<String>,
        /// Return once the message is safely queued, without waiting for delivery.
        #[arg(long)]
        no_wait: bool,
        /// Seconds to wait for delivery before exiting with code 4 (0: wait forever).
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Show a conversation.
    Log {
        /// The contact.
        user: String,
        /// How many of the latest messages.
        #[arg(long, short = 'n', default_value_t = 50)]
        limit: usize,
        /// Only messages holding this text (ignoring case), from the whole conversation.
        #[arg(long, value_name = "TEXT")]
        grep: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show unread messages and message requests, and mark them read.
    Inbox {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Leave them unread.
        #[arg(long)]
        peek: bool,
    },
    /// List contacts and message requests, with verification and key warnings.
    Contacts {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the safety number you share with a contact, to compare in person. During a key
    /// change, the NEW key's number, the one to compare before `trust`.
    Verify {
        /// The contact.
        user: String,
        /// The numbers matched: mark the contact verified.
        #[arg(long)]
        mark_verified: bool,
    },
    /// Accept a contact's changed key: shows the NEW key's safety number and asks you to
    /// confirm that it matches theirs.
    Trust {
        /// The contact.
        user: String,
        /// For scripts: the NEW key's safety number you compared (the 60 digits; spaces do not
        /// matter). Without it, trust asks at the terminal.
        #[arg(long, value_name = "DIGITS")]
        safety_number: Option<String>,
    },
    /// Keep a contact's old key and reject the new one a phonebook shows: messages keep
    /// waiting for the old key.
    Reject {
        /// The contact.
        user: String,
    },
    /// Accept a message request: the sender becomes a contact.
    Accept {
        /// The name the sender claimed, or the end of its key as `contacts` shows it
        /// (`…Ab12Cd34`), when several requests claim one name.
        user: String,
        /// Accept even though the phonebook gives the claimed name to someone else.
        #[arg(long)]
        anyway: bool,
    },
    /// Block a contact or request: their messages are refused and not stored.
    Block {
        /// The contact, or the end of its key (`…Ab12Cd34`).
        user: String,
        /// Unblock instead.
        #[arg(long)]
        undo: bool,
    },
    /// Who the phonebook lists as online.
    Online {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a conversation: its messages, and the contact (a blocked one stays blocked).
    Delete {
        /// The contact or request, or the end of its key (`…Ab12Cd34`).
        user: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Change your password. Your identity and messages stay the same. The current password is
    /// asked for, or read like any command's (`--password-file`, `--password-fd`); the new one
    /// is asked for twice, or read from `--new-password-file` or `--new-password-fd`.
    Passwd {
        /// Read the new password from this file's first line.
        #[arg(long, value_name = "PATH", conflicts_with = "new_password_fd")]
        new_password_file: Option<PathBuf>,
        /// Read the new password from this open file descriptor.
        #[arg(long, value_name = "FD")]
        new_password_fd: Option<i32>,
    },
    /// Write your conversations, decrypted, as JSON.
    Export {
        /// Only this contact.
        user: Option<String>,
        /// Write to this file instead of stdout (created with mode 0600).
        #[arg(long, short = 'o')]
        output: Option<PathBuf>,
    },
    /// Check whether others can reach you, and say what to do if they cannot.
    ///
    /// Starts your node, asks the phonebook for its relay, has the relay probe whether your
    /// addresses can be dialled from outside, and takes a reservation if they cannot. Exit
    /// codes: 0 others can reach you (directly, or through the relay); 6 they cannot.
    Doctor {
        /// Seconds to wait for the probes.
        #[arg(long, default_value_t = 20)]
        wait: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run your node without a screen, serving the API on the profile's socket: the chat
    /// screen, `send`, `log` and scripts then all use it (`specs/rpc.md`). SIGTERM, Ctrl-C or
    /// `tincan daemon --stop` stop it cleanly.
    Daemon {
        /// Stop the daemon of this profile instead.
        #[arg(long)]
        stop: bool,
    },
    /// Run a bot.
    Bot {
        #[command(subcommand)]
        bot: Bot,
    },
    /// Print shell completions, e.g. `tincan completions bash > ~/.local/share/bash-completion/completions/tincan`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// Bots.
#[derive(Subcommand, Debug)]
pub enum Bot {
    /// Answer every message with the same text: for trying tincan alone, and for checking that
    /// you can be reached.
    Echo,
}
