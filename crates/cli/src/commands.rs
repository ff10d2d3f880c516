//! The subcommands other than the chat itself.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::json;
use tincan_api::{self as api, Call, RpcError};
use tincan_node::Event;
use tincan_wire::Username;

use crate::backend::{Backend, Need, Refused};
use crate::cli::Global;
use crate::config::Profile;
use crate::format;
use crate::profile::{self, PasswordSource, Unlocked};
use crate::session::Session;

/// Exit code of `send` when the message is queued but not delivered yet.
pub const EXIT_QUEUED: i32 = 4;
/// Exit code of `send` when the recipient refused the message.
pub const EXIT_FAILED: i32 = 5;

#[allow(clippy::print_stdout)]
fn say(text: impl std::fmt::Display) {
    println!("{text}");
}

/// A username from the command line, with a clear error.
pub fn username_arg(text: &str) -> anyhow::Result<Username> {
    username(text)
}

fn username(text: &str) -> anyhow::Result<Username> {
    Username::new(text).map_err(|e| anyhow::anyhow!("{text:?} is not a username: {}", e.reason()))
}

/// `init`, and the first-run walk-through: asks for a username and a password, creates the
/// identity and registers the name at the phonebook.
pub async fn init(profile: &Profile, global: &Global, name: Option<String>) -> anyhow::Result<()> {
    if profile.exists() {
        eprintln!("Profile {:?} already has an identity; nothing to do.", profile.name);
        return Ok(());
    }
    let unlocked = create(profile, global, name).await?;
    let session = Session::start(profile, unlocked).await?;
    let registered = wait_published(&session).await;
    eprintln!(
        "Your PeerId is {}.{}",
        session.node.peer_id(),
        if registered { " Your name is registered at the phonebook." } else { "" }
    );
    session.stop().await;
    Ok(())
}

/// Creates the identity, asking for what is missing.
pub async fn create(
    profile: &Profile,
    global: &Global,
    name: Option<String>,
) -> anyhow::Result<Unlocked> {
    eprintln!("Setting up tincan profile {:?} in {}.", profile.name, profile.dir.display());
    let name = loop {
        let text = match &name {
            Some(n) => n.clone(),
            None => {
                eprint!("Choose a username (1-32 of a-z, 0-9, '_', '.', '-'): ");
                std::io::stderr().flush()?;
                let mut line = String::new();
                if std::io::stdin().read_line(&mut line)? == 0 {
                    bail!("no username given");
                }
                line.trim().to_owned()
            }
        };
        match username(&text) {
            Ok(u) if name.is_some() => break u,
            Ok(u) => {
                if let Some(taken) = name_taken(profile, &u).await {
                    eprintln!("{taken}");
                    continue;
                }
                break u;
            }
            Err(e) if name.is_some() => return Err(e),
            Err(e) => eprintln!("{e}"),
        }
    };
    if name_taken(profile, &name).await.is_some() {
        bail!("the username {name} is already taken at the phonebook; choose another");
    }
    profile::create(profile, &name, PasswordSource::from(global)?).await
}

/// A client of the profile's phonebook: the configured one, or the local one.
fn phonebook(profile: &Profile) -> anyhow::Result<tincan_phonebook::Client> {
    match &profile.phonebook {
        Some(url) => tincan_phonebook::Client::new(url).with_context(|| format!("phonebook {url}")),
        None => crate::local::client(&profile.data_dir),
    }
}

/// The profile's phonebook, in words.
fn phonebook_name(profile: &Profile) -> String {
    match &profile.phonebook {
        Some(url) => url.clone(),
        None => crate::local::describe(&profile.data_dir),
    }
}

/// Why `name` cannot be had, if the phonebook says it is taken.
async fn name_taken(profile: &Profile, name: &Username) -> Option<String> {
    let client = phonebook(profile).ok()?;
    match client.lookup(name).await {
        Ok(Some(_)) => Some(format!("The username {name} is already taken; choose another.")),
        _ => None,
    }
}

async fn wait_published(session: &Session) -> bool {
    let mut events = session.node.subscribe();
    let wait = async {
        loop {
            match events.recv().await {
                Ok(Event::Published { .. }) => return true,
                Ok(Event::PhonebookError { error, .. }) => {
                    eprintln!(
                        "The phonebook at {} did not take our record: {}",
                        session.phonebook_url,
                        format::clean_line(&error)
                    );
                    return false;
                }
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait).await.unwrap_or(false)
}

/// `send`: queue, then wait for delivery unless told not to. Returns the exit code.
pub async fn send(
    profile: &Profile,
    global: &Global,
    user: &str,
    text: &str,
    no_wait: bool,
    timeout: u64,
) -> anyhow::Result<i32> {
    let to = username(user)?;
    let backend = Backend::open(profile, global, Need::Network).await?;
    // A text longer than one message goes as several, in order, none cut; all must arrive.
    let call = Call::Send(api::SendParams {
        to: to.as_str().to_owned(),
        text: text.to_owned(),
        wait: !no_wait,
        timeout_ms: (timeout > 0).then(|| timeout.saturating_mul(1000)),
    });
    let sent: anyhow::Result<api::Sent> = backend.call(call).await;
    backend.close().await;
    let sent = sent?;
    if sent.messages.len() > 1 {
        eprintln!(
            "The text is longer than one message holds: sent as {} messages, in order.",
            sent.messages.len()
        );
    }
    if no_wait {
        eprintln!("Queued; it will be delivered the next time tincan runs and {to} is reachable.");
        return Ok(0);
    }
    if let Some(refusal) = &sent.refusal {
        eprintln!("{to} refused the message: {}", format::clean_line(&refusal.reason));
        return Ok(EXIT_FAILED);
    }
    if sent.key_changed {
        eprintln!(
            "{to}'s key has changed: nothing is sent until you compare the new safety number (`tincan verify {to}`), then `tincan trust {to}` or `tincan reject {to}`. The message stays queued."
        );
        return Ok(EXIT_QUEUED);
    }
    if sent.delivered == Some(true) {
        eprintln!("Delivered.");
        Ok(0)
    } else {
        eprintln!(
            "Not delivered within {timeout} s; the message stays queued and goes when {to} is reachable and tincan runs."
        );
        Ok(EXIT_QUEUED)
    }
}

fn who(user: &str) -> api::Who {
    api::Who { who: user.to_owned() }
}

/// `log`: the latest messages, or those holding `grep`, with full dates.
pub async fn log(
    profile: &Profile,
    global: &Global,
    user: &str,
    limit: usize,
    grep: Option<&str>,
    json: bool,
) -> anyhow::Result<()> {
    let backend = Backend::open(profile, global, Need::Read).await?;
    let status: anyhow::Result<api::Status> = backend.call(Call::Status(api::Empty {})).await;
    let log = log_pages(&backend, user, limit, grep).await;
    backend.close().await;
    let (me, log) = (status?.username, log?);
    if json {
        say(serde_json::to_string_pretty(&log)?);
        return Ok(());
    }
    let contact = &log.contact;
    say(format!(
        "== {} ({})",
        format::clean_line(&contact.username),
        format::contact_state(contact)
    ));
    for entry in &log.messages {
        say(format::dated_line(&me, &contact.username, entry));
    }
    if log.messages.is_empty() {
        say(if grep.is_some() { "(no message holds it)" } else { "(no messages)" });
    }
    Ok(())
}

/// The latest `limit` entries (or those holding `grep`), a page of the API at a time.
async fn log_pages(
    backend: &Backend,
    user: &str,
    limit: usize,
    grep: Option<&str>,
) -> anyhow::Result<api::Log> {
    let page = |before: Option<u64>, n: usize| {
        Call::Log(api::LogParams {
            who: user.to_owned(),
            before,
            limit: Some(
                u32::try_from(n).unwrap_or(u32::MAX).clamp(1, tincan_daemon::service::MAX_LOG_PAGE),
            ),
            grep: grep.map(str::to_owned),
        })
    };
    let mut log: api::Log = backend.call(page(None, limit)).await?;
    log.messages.truncate(limit);
    // A search answers from the whole conversation at once; a plain log pages back.
    while grep.is_none() && log.more && log.messages.len() < limit {
        let Some(first) = log.messages.first().map(|e| e.position) else { break };
        let older: api::Log = backend.call(page(Some(first), limit - log.messages.len())).await?;
        if older.messages.is_empty() {
            break;
        }
        log.more = older.more;
        log.messages.splice(0..0, older.messages);
    }
    Ok(log)
}

/// `inbox`: unread messages and requests, marked read unless `peek`.
pub async fn inbox(
    profile: &Profile,
    global: &Global,
    json: bool,
    peek: bool,
) -> anyhow::Result<()> {
    let backend =
        Backend::open(profile, global, if peek { Need::Read } else { Need::Write }).await?;
    let status: anyhow::Result<api::Status> = backend.call(Call::Status(api::Empty {})).await;
    let unread: anyhow::Result<Vec<api::Unread>> =
        backend.call(Call::Inbox(api::InboxParams { peek })).await;
    backend.close().await;
    let (me, unread) = (status?.username, unread?);
    if json {
        say(serde_json::to_string_pretty(&unread)?);
    } else if unread.is_empty() {
        say("No new messages.");
    } else {
        for u in &unread {
            let contact = &u.contact;
            let request = if contact.kind == "request" {
                format!(
                    " — message request from key {}, {}: `tincan accept` or `tincan block`",
                    contact.key_id,
                    format::claim_words(&contact.claim)
                )
            } else {
                String::new()
            };
            say(format!("== {} ({} new){request}", contact.username, contact.unread));
            for entry in &u.messages {
                say(format::line(&me, &contact.username, entry));
            }
        }
    }
    Ok(())
}

/// `contacts`.
pub async fn contacts(profile: &Profile, global: &Global, json: bool) -> anyhow::Result<()> {
    let backend = Backend::open(profile, global, Need::Read).await?;
    let contacts: anyhow::Result<Vec<api::Contact>> =
        backend.call(Call::Contacts(api::Empty {})).await;
    backend.close().await;
    let contacts = contacts?;
    if json {
        say(serde_json::to_string_pretty(&contacts)?);
    } else if contacts.is_empty() {
        say(
            "No contacts yet. Write to someone with `tincan send USER TEXT`, or `tincan chat USER`.",
        );
    } else {
        for c in &contacts {
            let unread =
                if c.unread > 0 { format!(", {} unread", c.unread) } else { String::new() };
            let online = if c.online { ", online" } else { "" };
            say(format!(
                "{:<32} {:<10} {}{online}{unread}",
                c.username,
                c.key_id,
                format::contact_state(c)
            ));
        }
    }
    Ok(())
}

/// Prints a safety number in two rows of six groups.
fn show_number(label: &str, key: &api::Key) {
    let groups: Vec<&str> = key.safety_number.split(' ').collect();
    say(format!("{label} ({}):", key.peer_id));
    say(format!("    {}", groups[..6.min(groups.len())].join(" ")));
    say(format!("    {}", groups[6.min(groups.len())..].join(" ")));
}

/// Shows the numbers to compare: during a key change the NEW key's first, as the one to
/// compare, and the pinned key's for reference.
fn show_numbers(numbers: &api::SafetyNumbers) {
    match &numbers.pending {
        Some(new) => {
            say(format!(
                "{}'s KEY CHANGED: a phonebook shows a new key. Compare the NEW number with the one on their screen, in person or on a call you trust:",
                numbers.username
            ));
            show_number("NEW key", new);
            say("");
            show_number("old key, pinned until you decide (for reference only)", &numbers.pinned);
        }
        None => {
            say(format!(
                "Safety number with {} — compare it with theirs, in person or on a call you trust:",
                numbers.username
            ));
            show_number("pinned key", &numbers.pinned);
        }
    }
}

/// `verify`: the safety number, and optionally mark verified.
pub async fn verify(
    profile: &Profile,
    global: &Global,
    user: &str,
    mark: bool,
) -> anyhow::Result<()> {
    let backend =
        Backend::open(profile, global, if mark { Need::Write } else { Need::Read }).await?;
    let result = verify_with(&backend, user, mark).await;
    backend.close().await;
    result
}

async fn verify_with(backend: &Backend, user: &str, mark: bool) -> anyhow::Result<()> {
    let numbers: api::SafetyNumbers = backend.call(Call::Verify(who(user))).await?;
    show_numbers(&numbers);
    let name = &numbers.username;
    if numbers.pending.is_some() {
        say(format!(
            "If the NEW number matches theirs: `tincan trust {name}`. If it does not, or you cannot check: `tincan reject {name}` keeps the old key."
        ));
    }
    if mark {
        if numbers.pending.is_some() {
            bail!(
                "the key changed: trust the new key first (`tincan trust {name}`), then verify it"
            );
        }
        let call =
            Call::MarkVerified(api::MarkVerifiedParams { who: user.to_owned(), verified: true });
        let _: api::Contact = backend.call(call).await?;
        say(format!("{name} is marked verified."));
    } else if numbers.verified {
        say(format!("{name} is verified."));
    }
    Ok(())
}

/// The 60 digits of a safety number, without spaces: for comparing what was typed.
fn digits(number: &str) -> String {
    number.chars().filter(char::is_ascii_digit).collect()
}

/// `trust`: accept a changed key, only after its NEW safety number was shown, and confirmed
/// (at the terminal, or by giving the number: `--safety-number`). What is trusted is the key
/// whose number was shown: if the phonebook showed yet another one meanwhile, nothing is.
pub async fn trust(
    profile: &Profile,
    global: &Global,
    user: &str,
    confirmed_number: Option<&str>,
) -> anyhow::Result<()> {
    let backend = Backend::open(profile, global, Need::Write).await?;
    let result = trust_with(&backend, user, confirmed_number).await;
    backend.close().await;
    result
}

async fn trust_with(
    backend: &Backend,
    user: &str,
    confirmed_number: Option<&str>,
) -> anyhow::Result<()> {
    let numbers: api::SafetyNumbers = backend.call(Call::Verify(who(user))).await?;
    let name = numbers.username.clone();
    let Some(new) = numbers.pending.clone() else {
        bail!("{name}'s key has not changed; nothing to trust");
    };
    show_numbers(&numbers);
    let matches = match confirmed_number {
        Some(given) => {
            if digits(given) != digits(&new.safety_number) {
                bail!(
                    "the number you gave is not the NEW key's safety number: nothing was trusted"
                );
            }
            true
        }
        None if std::io::stdin().is_terminal() => {
            eprint!("Does the NEW number match the one on {name}'s screen? Type yes to trust it: ");
            std::io::stderr().flush()?;
            let mut answer = String::new();
            std::io::stdin().read_line(&mut answer)?;
            answer.trim().eq_ignore_ascii_case("yes")
        }
        None => bail!(
            "not trusted: compare the NEW number, then confirm at a terminal or pass it with --safety-number"
        ),
    };
    if !matches {
        say(format!("Nothing changed. `tincan reject {name}` keeps the old key."));
        return Ok(());
    }
    let call = Call::Trust(api::TrustParams { who: user.to_owned(), key: new.peer_id });
    let _: api::Contact = backend.call(call).await?;
    if backend.is_remote() {
        say(format!("Trusted {name}'s new key. Queued messages go out now."));
    } else {
        say(format!("Trusted {name}'s new key. Queued messages go out the next time tincan runs."));
    }
    Ok(())
}

/// `reject`: keep the pinned key; the new one is refused from now on.
pub async fn reject(profile: &Profile, global: &Global, user: &str) -> anyhow::Result<()> {
    let backend = Backend::open(profile, global, Need::Write).await?;
    let contact: anyhow::Result<api::Contact> = backend.call(Call::Reject(who(user))).await;
    backend.close().await;
    let contact = contact.map_err(|e| match Refused::code(&e) {
        Some(RpcError::NO_KEY_CHANGE) => {
            anyhow::anyhow!("{user}'s key has not changed; nothing to reject")
        }
        _ => e,
    })?;
    say(format!(
        "Kept {0}'s old key and rejected the new one. Messages to {0} still wait for the old key: they go when it is reachable again.",
        contact.username
    ));
    Ok(())
}

/// `accept`: a message request becomes a contact. A request whose claimed name a phonebook
/// gives to someone else needs `anyway`.
pub async fn accept(
    profile: &Profile,
    global: &Global,
    user: &str,
    anyway: bool,
) -> anyhow::Result<()> {
    let backend = Backend::open(profile, global, Need::Write).await?;
    let call = Call::Accept(api::AcceptParams { who: user.to_owned(), anyway });
    let contact: anyhow::Result<api::Contact> = backend.call(call).await;
    backend.close().await;
    let contact = contact.map_err(|e| match Refused::code(&e) {
        Some(RpcError::IMPOSTOR) => anyhow::anyhow!(
            "{e}. Block it (`tincan block {user}`), or accept it anyway with --anyway"
        ),
        _ => e,
    })?;
    say(format!("{} is now a contact.", contact.username));
    if contact.claim == "other-key" {
        say(format!("WARNING: the phonebook gives the name {} to someone else.", contact.username));
    }
    Ok(())
}

/// `block`.
pub async fn block(
    profile: &Profile,
    global: &Global,
    user: &str,
    undo: bool,
) -> anyhow::Result<()> {
    let backend = Backend::open(profile, global, Need::Write).await?;
    let call = Call::Block(api::BlockParams { who: user.to_owned(), blocked: !undo });
    let contact: anyhow::Result<api::Contact> = backend.call(call).await;
    backend.close().await;
    let contact = contact?;
    say(format!("{} is {}.", contact.username, if undo { "unblocked" } else { "blocked" }));
    Ok(())
}

/// `delete`: a conversation's messages, and the contact unless it is blocked. Asks first at a
/// terminal; scripts pass `yes`.
pub async fn delete(
    profile: &Profile,
    global: &Global,
    user: &str,
    yes: bool,
) -> anyhow::Result<()> {
    let backend = Backend::open(profile, global, Need::Write).await?;
    let result = delete_with(&backend, user, yes).await;
    backend.close().await;
    result
}

async fn delete_with(backend: &Backend, user: &str, yes: bool) -> anyhow::Result<()> {
    let log: api::Log = backend
        .call(Call::Log(api::LogParams {
            who: user.to_owned(),
            before: None,
            limit: Some(1),
            grep: None,
        }))
        .await?;
    let contact = log.contact;
    if !yes {
        if !std::io::stdin().is_terminal() {
            bail!("deleting needs confirmation: run it at a terminal, or pass --yes");
        }
        eprint!(
            "Delete the conversation with {} ({} messages)? This cannot be undone. Type yes: ",
            contact.username, contact.messages
        );
        std::io::stderr().flush()?;
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !answer.trim().eq_ignore_ascii_case("yes") {
            say("Nothing deleted.");
            return Ok(());
        }
    }
    // By its whole key: the one just shown, even if a name changes hands meanwhile.
    let deleted: api::Deleted = backend.call(Call::Delete(who(&contact.peer_id))).await?;
    if deleted.kept_blocked {
        say(format!("Deleted the messages of {}; the contact stays blocked.", contact.username));
    } else {
        say(format!("Deleted the conversation with {}.", contact.username));
    }
    Ok(())
}

/// `online`: needs no identity, only the phonebook.
pub async fn online(profile: &Profile, json: bool) -> anyhow::Result<()> {
    let url = phonebook_name(profile);
    let client = phonebook(profile)?;
    let mut all = Vec::new();
    let mut after: Option<Username> = None;
    loop {
        let (page, next) = match client.online(after.as_ref(), 100).await {
            Ok(page) => page,
            Err(tincan_phonebook::ClientError::Unreachable(_)) if profile.phonebook.is_none() => {
                eprintln!(
                    "Nobody is online here: no tincan is running on this machine (the first one hosts the local phonebook)."
                );
                return Ok(());
            }
            Err(e) => return Err(e).context(format!("asking {url}")),
        };
        all.extend(page);
        match next {
            Some(n) if all.len() < 10_000 => after = Some(n),
            _ => break,
        }
    }
    if json {
        let value: Vec<_> = all
            .iter()
            .map(|f| json!({"username": f.username, "peer_id": f.peer_id.to_base58()}))
            .collect();
        say(serde_json::to_string_pretty(&value)?);
    } else if all.is_empty() {
        say("Nobody is online.");
    } else {
        for found in &all {
            say(found.username.as_str());
        }
    }
    Ok(())
}

/// `passwd`: the old password as for every command, the new one from `new_file` or `new_fd`
/// if given, else from the terminal.
pub fn passwd(
    profile: &Profile,
    global: &Global,
    new_file: Option<&std::path::Path>,
    new_fd: Option<i32>,
) -> anyhow::Result<()> {
    if !profile.exists() {
        bail!("profile {:?} has no identity yet", profile.name);
    }
    profile::change_password(
        profile,
        PasswordSource::from(global)?,
        profile::given(new_file, new_fd)?,
    )?;
    eprintln!("Password changed.");
    Ok(())
}

/// `export`.
pub async fn export(
    profile: &Profile,
    global: &Global,
    user: Option<&str>,
    output: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let backend = Backend::open(profile, global, Need::Read).await?;
    let call = Call::Export(api::ExportParams { who: user.map(str::to_owned) });
    let value: anyhow::Result<serde_json::Value> = backend.call(call).await;
    backend.close().await;
    let text = serde_json::to_string_pretty(&value?)?;
    match output {
        Some(path) => {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options
                .open(path)
                .with_context(|| format!("creating {} (it must not exist)", path.display()))?;
            file.write_all(text.as_bytes())?;
            eprintln!("Wrote {} — it holds your messages in the clear.", path.display());
        }
        None => say(text),
    }
    Ok(())
}

/// `bot echo`: answers every message, accepting requests, until interrupted. Like the chat
/// screen, it creates the identity on its first run. When another tincan owns the profile (a
/// daemon, a chat screen), the bot is its client; either way it works through the API's calls
/// and notifications, as a bot in another language would.
pub async fn echo_bot(profile: &Profile, global: &Global) -> anyhow::Result<()> {
    let (backend, mut feed, me) = match crate::backend::owner(profile).await {
        Some(client) => {
            let status: api::Status = client.call_as(Call::Status(api::Empty {})).await?;
            let rx = client.notifications().context("notifications taken twice")?;
            let _: api::Empty = client.call_as(Call::Subscribe(api::Empty {})).await?;
            eprintln!(
                "Echo bot {} is running through the tincan that owns this profile. Ctrl-C stops it.",
                format::clean_line(&status.username)
            );
            (Backend::Remote(client), Feed::Remote(rx), status.username)
        }
        None => {
            let unlocked = if profile.exists() {
                profile::unlock(profile, PasswordSource::from(global)?).await?
            } else {
                create(profile, global, None).await?
            };
            let me = unlocked.username.as_str().to_owned();
            let session = Session::start(profile, unlocked).await?;
            eprintln!("Echo bot {me} is running ({}). Ctrl-C stops it.", session.node.peer_id());
            let feed = Feed::Own(session.node.subscribe(), session.service.clone());
            (Backend::Local { service: session.service.clone(), session: Some(session) }, feed, me)
        }
    };
    tracing::info!(%me, "echo bot ready");
    // Listening from now on: a signal that comes while a message is being answered is not
    // lost (a `ctrl_c()` made anew in each turn of the loop would miss it).
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("listening for SIGINT")?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("listening for SIGTERM")?;
    let result = loop {
        let next = tokio::select! {
            next = feed.next() => next,
            _ = interrupt.recv() => break Ok(()),
            _ = terminate.recv() => break Ok(()),
        };
        let notification = match next {
            Some(Some(n)) => n,
            Some(None) => continue,
            None if backend.is_remote() => {
                break Err(anyhow::anyhow!("the tincan that owned this profile went away"));
            }
            None => break Ok(()),
        };
        let api::Notification::Message { contact, conversation, request, entry } = notification
        else {
            continue;
        };
        if entry.direction != "incoming" {
            continue;
        }
        if request {
            let accept = Call::Accept(api::AcceptParams { who: conversation, anyway: false });
            if let Err(e) = backend.call::<api::Contact>(accept).await {
                tracing::warn!(error = %e, "accepting a request failed");
                continue;
            }
        }
        let reply = format!("echo: {}", entry.text);
        let reply = if reply.len() > tincan_wire::MAX_TEXT_LEN { entry.text } else { reply };
        let send =
            Call::Send(api::SendParams { to: contact, text: reply, wait: false, timeout_ms: None });
        if let Err(e) = backend.call::<api::Sent>(send).await {
            tracing::warn!(error = %e, "echoing failed");
        }
    };
    backend.close().await;
    result
}

/// Notifications, from the owner or from the node this process runs.
enum Feed {
    /// The owner's.
    Remote(tokio::sync::mpsc::Receiver<api::Notice>),
    /// Our node's events, said as the API says them.
    Own(tokio::sync::broadcast::Receiver<Event>, std::sync::Arc<tincan_daemon::Service>),
}

impl Feed {
    /// The next notification; `Some(None)` for one to skip, `None` once none will come.
    async fn next(&mut self) -> Option<Option<api::Notification>> {
        match self {
            Feed::Remote(rx) => match rx.recv().await? {
                api::Notice::Event(n) => Some(Some(*n)),
                api::Notice::Closed => None,
                _ => Some(None),
            },
            Feed::Own(rx, service) => match rx.recv().await {
                Ok(event) => Some(service.notification(&event)),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "the echo bot missed events");
                    Some(None)
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => None,
            },
        }
    }
}

/// `doctor`: whether others can reach us, and what to do if they cannot. Returns the exit code.
pub async fn doctor(
    profile: &Profile,
    global: &Global,
    wait: u64,
    json: bool,
) -> anyhow::Result<i32> {
    let phonebook = phonebook(profile)?;
    let info = phonebook.info().await;
    let relay = match &info {
        Ok(_) => phonebook.relay().await.ok().flatten(),
        Err(_) => None,
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait.max(1));
    // Wait until the probes settle: reachability known and, behind NAT, a reservation held
    // or refused.
    let settled = |report: &tincan_node::NatReport| {
        relay.is_none()
            || match (&report.reachability, &report.relay) {
                // One dial-back that succeeded proves it.
                (tincan_node::Reachability::Public(_), _) => true,
                (tincan_node::Reachability::Private, Some(r)) => {
                    r.reserved || r.last_error.is_some()
                }
                (tincan_node::Reachability::Private, None) => true,
                (tincan_node::Reachability::Unknown, _) => false,
            }
    };
    let (me, report, listen, published) = match crate::backend::owner(profile).await {
        // The owner's node has probed since it started: ask it, until its report settles.
        Some(client) => {
            let status: api::Status = client.call_as(Call::Status(api::Empty {})).await?;
            let me = status.username;
            if !json {
                eprintln!(
                    "Asking the tincan that owns this profile how others reach {} (up to {wait} s)…",
                    format::clean_line(&me)
                );
            }
            let report = loop {
                let nat: api::Nat = client.call_as(Call::Nat(api::Empty {})).await?;
                let report = tincan_daemon::names::nat_report(&nat)
                    .context("the owner's NAT report does not parse")?;
                if settled(&report) || tokio::time::Instant::now() >= deadline {
                    break report;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            };
            (me, report, status.listen, None)
        }
        None => {
            let unlocked = profile::unlock(profile, PasswordSource::from(global)?).await?;
            let me = unlocked.username.as_str().to_owned();
            // Probe at once and often: this is all the command is for.
            let mut profile = profile.clone();
            profile.nat.probe_delay = Duration::from_millis(500);
            profile.nat.probe_interval = Duration::from_secs(2);
            let session = Session::start(&profile, unlocked).await?;
            let node = session.node.clone();
            if !json {
                eprintln!("Checking how others reach {me} (up to {wait} s)…");
            }
            let mut events = node.subscribe();
            let mut published = None;
            while !settled(&node.nat()) {
                match tokio::time::timeout_at(deadline, events.recv()).await {
                    Ok(Ok(Event::Published { addrs, .. })) => published = Some(addrs),
                    Ok(Ok(_)) | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
                    Ok(Err(_)) | Err(_) => break,
                }
            }
            let report = node.nat();
            // Publish what we found, so that the phonebook has the relayed address too.
            node.republish();
            let republished = tokio::time::timeout(Duration::from_secs(3), async {
                loop {
                    match events.recv().await {
                        Ok(Event::Published { addrs, .. }) => return Some(addrs),
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                        _ => {}
                    }
                }
            });
            if let Ok(Some(addrs)) = republished.await {
                published = Some(addrs);
            }
            let listen: Vec<String> = node.listen_addrs().iter().map(|a| a.to_string()).collect();
            session.stop().await;
            (me, report, listen, published)
        }
    };
    let profile = profile.clone();

    let diagnosis = diagnose(&report, info.is_ok(), relay.is_some(), profile.phonebook.is_none());
    if json {
        let reachability = match &report.reachability {
            tincan_node::Reachability::Unknown => json!("unknown"),
            tincan_node::Reachability::Private => json!("private"),
            tincan_node::Reachability::Public(a) => json!({"public": a.to_string()}),
        };
        say(serde_json::to_string_pretty(&json!({
            "username": me,
            "phonebook": {"url": &session_url(&profile), "reachable": info.is_ok(),
                          "error": info.as_ref().err().map(|e| e.to_string())},
            "relay": relay.as_ref().map(|r| json!({"peer_id": r.peer_id, "addrs": r.addrs,
                          "max_circuit_secs": r.max_circuit_secs, "max_circuit_bytes": r.max_circuit_bytes})),
            "reachability": reachability,
            "confidence": report.confidence,
            "reservation": report.relay.as_ref().map(|r| json!({"held": r.reserved, "error": r.last_error})),
            "listening": listen,
            "published": published.map(|a| a.iter().map(|a| a.to_string()).collect::<Vec<_>>()),
            "reachable": diagnosis.reachable,
            "advice": diagnosis.advice,
        }))?);
    } else {
        let url = session_url(&profile);
        // Everything the phonebook said is cleaned before it reaches the terminal.
        match &info {
            Ok(info) => say(format!(
                "Phonebook     {url} (tincan-phonebook {})",
                format::clean_line(&info.version)
            )),
            Err(e) => say(format!(
                "Phonebook     {url}: UNREACHABLE ({})",
                format::clean_line(&e.to_string())
            )),
        }
        match &relay {
            Some(r) => say(format!(
                "Relay         {} ({} min, {} MiB per connection)",
                format::clean_line(r.addrs.first().map_or("(no address)", String::as_str)),
                r.max_circuit_secs / 60,
                r.max_circuit_bytes >> 20
            )),
            None => say("Relay         none: the phonebook runs no relay"),
        }
        say(format!(
            "Reachability  {}",
            match &report.reachability {
                tincan_node::Reachability::Public(a) => format!("public, dialable at {a}"),
                tincan_node::Reachability::Private => {
                    "behind NAT or a firewall: the relay could not dial you back".to_owned()
                }
                tincan_node::Reachability::Unknown => "not tested".to_owned(),
            }
        ));
        if let Some(r) = &report.relay {
            let held = match (&r.reserved, &r.last_error) {
                (true, _) => "held: peers can reach you through the relay".to_owned(),
                (false, Some(e)) => format!("NOT held: {}", format::clean_line(e)),
                (false, None) => "not needed".to_owned(),
            };
            say(format!("Reservation   {held}"));
        }
        say(format!("Listening on  {}", listen.join(", ")));
        if let Some(addrs) = &published {
            let addrs: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
            say(format!("Published     {}", addrs.join(", ")));
        }
        say("");
        for line in &diagnosis.advice {
            say(line);
        }
    }
    Ok(if diagnosis.reachable { 0 } else { 6 })
}

fn session_url(profile: &Profile) -> String {
    phonebook_name(profile)
}

/// What `doctor` concludes.
#[derive(Debug, PartialEq, Eq)]
pub struct Diagnosis {
    /// Others can reach us, directly or through the relay.
    pub reachable: bool,
    /// What it means and what to do, in sentences.
    pub advice: Vec<String>,
}

/// Turns a NAT report into advice.
pub fn diagnose(
    report: &tincan_node::NatReport,
    phonebook_ok: bool,
    relay_known: bool,
    local: bool,
) -> Diagnosis {
    use tincan_node::Reachability;
    let reserved = report.relay.as_ref().is_some_and(|r| r.reserved);
    let forward = "To be reachable directly, forward a TCP and a UDP port on your router to this \
                   computer and listen on them: `--listen /ip4/0.0.0.0/tcp/PORT --listen \
                   /ip4/0.0.0.0/udp/PORT/quic-v1` (or `listen = [...]` in the configuration).";
    let (reachable, advice) = if !phonebook_ok {
        (
            false,
            vec![
                "The phonebook cannot be reached, so nobody can look you up. Check its URL \
                 (--phonebook), your network, or ask its operator."
                    .to_owned(),
            ],
        )
    } else if local {
        (
            true,
            vec![
                "You use the local phonebook: profiles on this computer can reach you, nobody \
                 else. To talk across computers, set a shared phonebook with --phonebook URL."
                    .to_owned(),
            ],
        )
    } else {
        match (&report.reachability, reserved) {
            (Reachability::Public(_), _) => {
                (true, vec!["Others can dial you directly. Nothing to do.".to_owned()])
            }
            (_, true) => (
                true,
                vec![
                    "Others reach you through the relay. It carries only encrypted bytes, but \
                     sees who talks to whom and when. tincan then tries to open a direct \
                     connection (hole punching), which works with most home routers."
                        .to_owned(),
                    forward.to_owned(),
                ],
            ),
            (Reachability::Private, false) if relay_known => (
                false,
                vec![
                    "You are behind NAT and hold no reservation at the relay: peers cannot \
                     reach you until you do. The relay may be down or full; tincan keeps \
                     trying every 30 s while it runs."
                        .to_owned(),
                    forward.to_owned(),
                ],
            ),
            (Reachability::Private, false) => (
                false,
                vec![
                    "You are behind NAT, and the phonebook runs no relay: peers behind NAT \
                     cannot reach you. Ask its operator to start it with --relay."
                        .to_owned(),
                    forward.to_owned(),
                ],
            ),
            (Reachability::Unknown, false) if relay_known => (
                false,
                vec![
                    "The relay did not answer in time, so reachability is unknown. Try again \
                     with a longer --wait."
                        .to_owned(),
                ],
            ),
            (Reachability::Unknown, false) => (
                false,
                vec![
                    "The phonebook runs no relay, so tincan cannot test whether you are \
                     reachable, and peers behind NAT cannot reach you through it. Ask its \
                     operator to start it with --relay."
                        .to_owned(),
                    forward.to_owned(),
                ],
            ),
        }
    };
    Diagnosis { reachable, advice }
}

/// `daemon`: owns the profile without a screen until SIGTERM, Ctrl-C or `daemon --stop`.
pub async fn daemon(profile: &Profile, global: &Global) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("installing a signal handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing a signal handler")?;
    crate::backend::refuse_second_owner(profile, "a second daemon").await?;
    let unlocked = profile::unlock(profile, PasswordSource::from(global)?).await?;
    let me = unlocked.username.clone();
    let session = Session::start(profile, unlocked).await?;
    session.service.allow_stop();
    let mut stop = session.service.stop_requested();
    eprintln!(
        "tincan daemon: {me} ({}) is online; the API is on {}. `tincan daemon --stop` stops it.",
        session.node.peer_id(),
        profile.socket.display()
    );
    let why = tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "interrupted",
        _ = stop.wait_for(|s| *s) => "asked to stop",
    };
    tracing::info!(why, "the daemon stops");
    session.stop().await;
    eprintln!("tincan daemon: stopped ({why}).");
    Ok(())
}

/// `daemon --stop`: asks the profile's owner to stop, and waits until it has. Exit code 1 if
/// none runs.
pub async fn stop_daemon(profile: &Profile) -> anyhow::Result<i32> {
    let Some(client) = crate::backend::owner(profile).await else {
        eprintln!("No tincan runs profile {:?}.", profile.name);
        return Ok(1);
    };
    let _: api::Empty = client.call_as(Call::Stop(api::Empty {})).await?;
    drop(client);
    // Stopped once the socket is gone: the record is taken down and the store closed by then.
    for _ in 0..150 {
        if !profile.socket.exists() {
            eprintln!("Stopped.");
            return Ok(0);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("the daemon did not stop within 30 s")
}

#[cfg(test)]
mod doctor_tests {
    use tincan_node::{NatReport, Reachability, RelayState};

    use super::diagnose;

    fn report(reachability: Reachability, reserved: Option<bool>) -> NatReport {
        NatReport {
            reachability,
            confidence: 1,
            relay: reserved.map(|reserved| RelayState {
                peer_id: libp2p_identity::PeerId::random(),
                addr: "/ip4/198.18.0.1/tcp/4001".parse().unwrap(),
                reserved,
                last_error: (!reserved).then(|| "relay down".to_owned()),
            }),
        }
    }

    #[test]
    fn every_situation_gets_a_verdict_and_advice() {
        let public = Reachability::Public("/ip4/198.18.0.21/tcp/4001".parse().unwrap());
        let cases = [
            (report(public.clone(), Some(false)), true, true, false, true, "directly"),
            (
                report(Reachability::Private, Some(true)),
                true,
                true,
                false,
                true,
                "through the relay",
            ),
            (
                report(Reachability::Private, Some(false)),
                true,
                true,
                false,
                false,
                "no reservation",
            ),
            (report(Reachability::Private, None), true, false, false, false, "runs no relay"),
            (report(Reachability::Unknown, None), true, false, false, false, "cannot test"),
            (
                report(Reachability::Unknown, Some(false)),
                true,
                true,
                false,
                false,
                "did not answer",
            ),
            (report(public, None), false, false, false, false, "cannot be reached"),
            (report(Reachability::Unknown, None), true, false, true, true, "local phonebook"),
        ];
        for (report, phonebook, relay, local, reachable, says) in cases {
            let d = diagnose(&report, phonebook, relay, local);
            assert_eq!(d.reachable, reachable, "{report:?}");
            assert!(d.advice[0].contains(says), "{report:?}: {:?}", d.advice);
        }
    }
}
