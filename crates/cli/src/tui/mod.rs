//! The chat screen (ratatui + crossterm).
//!
//! The terminal is put back as it was on every way out: quitting, Ctrl-C, SIGTERM, an error,
//! or a panic (a hook restores it before the panic message prints).

pub mod app;
#[cfg(test)]
mod fixtures;
mod input;
pub mod link;
pub mod ui;
mod wrap;

use std::io::Stdout;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self, Event as TermEvent, KeyEventKind};
use ratatui::crossterm::{cursor, execute, terminal};
use tincan_store::ConversationId;
use tokio::sync::mpsc;

use self::app::{Action, App, Level};
use self::link::{Events, Link, Next, Numbers};
use crate::cli::Global;
use crate::config::Profile;
use crate::profile::{self, PasswordSource};
use crate::session::Session;

/// Runs the chat screen, creating the identity first if this is the first run. When another
/// tincan owns the profile (a daemon, another chat screen), the screen is its client.
///
/// When that owner goes away (stopped, or killed), the screen says so and offers to start the
/// node here, reopening the conversation that was open.
pub async fn run(profile: &Profile, global: &Global, open: Option<String>) -> anyhow::Result<()> {
    let mut open = open;
    loop {
        match run_once(profile, global, open).await? {
            Ended::Quit => return Ok(()),
            Ended::OwnerGone { open: was_open } => {
                if !offer_restart().await? {
                    anyhow::bail!("the tincan that owned this profile went away");
                }
                open = was_open;
            }
        }
    }
}

/// How a screen ended.
enum Ended {
    /// The user quit.
    Quit,
    /// The owner this screen was a client of went away; `open` names the conversation open.
    OwnerGone { open: Option<String> },
}

/// Tells the user the owner went away and asks whether to start the node here.
async fn offer_restart() -> anyhow::Result<bool> {
    // The key reader polls every 100 ms: let it stop before the terminal is read here.
    tokio::time::sleep(Duration::from_millis(200)).await;
    eprintln!(
        "The tincan that owned this profile (a daemon or another chat screen) went away.\n\
         Nothing it acknowledged is lost: what it had queued waits in the store."
    );
    eprint!("Start it here and go on chatting? [Y/n] ");
    let answer = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|n| (n, line))
    })
    .await
    .context("reading the answer")?
    .context("reading the answer")?;
    let (read, line) = answer;
    let line = line.trim().to_ascii_lowercase();
    Ok(read > 0 && (line.is_empty() || line == "y" || line == "yes"))
}

async fn run_once(
    profile: &Profile,
    global: &Global,
    open: Option<String>,
) -> anyhow::Result<Ended> {
    let started = std::time::Instant::now();
    if let Some(client) = crate::backend::owner(profile).await {
        let status: tincan_api::Status =
            client.call_as(tincan_api::Call::Status(tincan_api::Empty {})).await?;
        let me = crate::commands::username_arg(&status.username)?;
        let where_ = "through the running tincan".to_owned();
        return screen(&Link::Remote(&client), profile, me, where_, open, None, started).await;
    }
    let unlocked = if profile.exists() {
        profile::unlock(profile, PasswordSource::from(global)?).await?
    } else {
        crate::commands::create(profile, global, None).await?
    };
    tracing::info!(unlock_ms = started.elapsed().as_millis() as u64, "unlocked");
    let me = unlocked.username.clone();
    let session = Session::start(profile, unlocked).await?;
    let where_ =
        if session.local { "local phonebook".to_owned() } else { session.phonebook_url.clone() };
    let link = Link::Own(&session);
    let changes = session.service.changes();
    let result = screen(&link, profile, me, where_, open, Some(changes), started).await;
    crate::backend::serve_remaining(&session).await;
    session.stop().await;
    result
}

/// The screen over `link`, until the user quits.
async fn screen(
    link: &Link<'_>,
    profile: &Profile,
    me: tincan_wire::Username,
    where_: String,
    open: Option<String>,
    changes: Option<tokio::sync::watch::Receiver<u64>>,
    started: std::time::Instant,
) -> anyhow::Result<Ended> {
    let mut app = App::new(me, profile.name.clone(), where_);
    app.bell = profile.bell;
    if matches!(link, Link::Remote(_)) {
        app.note(
            Level::Info,
            "Attached to the tincan that already runs this profile: quitting here leaves it running."
                .to_owned(),
        );
    }
    app.set_contacts(link.contacts().await?);
    presence(link, &mut app).await;
    if let Some(user) = open {
        perform(link, &mut app, Action::Open(crate::commands::username_arg(&user)?)).await;
    }
    let events = link.events().await?;
    let mut terminal = enter()?;
    terminal.draw(|f| ui::draw(f, &app)).context("drawing")?;
    tracing::info!(ready_ms = started.elapsed().as_millis() as u64, "screen ready");
    let result = event_loop(&mut terminal, link, events, changes, &mut app, profile.notify).await;
    leave();
    result
}

type Term = Terminal<CrosstermBackend<Stdout>>;

/// Raw mode and the alternate screen, with a panic hook that undoes both.
fn enter() -> anyhow::Result<Term> {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        leave();
        previous(info);
    }));
    terminal::enable_raw_mode().context("the terminal cannot go into raw mode")?;
    let mut stdout = std::io::stdout();
    // Cleared first: a crash may have left a password prompt or half a screen behind. Pastes
    // arrive bracketed, as text, so that their newlines are not Enter.
    execute!(
        stdout,
        terminal::EnterAlternateScreen,
        terminal::Clear(terminal::ClearType::All),
        event::EnableBracketedPaste
    )
    .context("entering the alternate screen")?;
    Terminal::new(CrosstermBackend::new(stdout)).context("setting up the screen")
}

/// Puts the terminal back. Safe to call more than once.
fn leave() {
    let _ = terminal::disable_raw_mode();
    let _ = execute!(
        std::io::stdout(),
        event::DisableBracketedPaste,
        event::DisableMouseCapture,
        terminal::SetTitle(""),
        terminal::LeaveAlternateScreen,
        cursor::Show
    );
}

/// Who is connected now: a screen that starts (or reloads) while connections exist shows
/// them, rather than waiting for the next connection (`specs/delivery.md` §4.0).
async fn presence(link: &Link<'_>, app: &mut App) {
    app.online.clear();
    app.paths.clear();
    match link.connected(&app.contacts).await {
        Ok(connected) => {
            for (peer, path) in connected {
                if let Some(path) = path {
                    app.paths.insert(peer.clone(), path);
                }
                app.online.insert(peer);
            }
        }
        Err(e) => tracing::warn!(error = %e, "reading who is connected failed"),
    }
}

/// Rows of the conversation on screen, for a page of scrolling.
fn page(terminal: &Term) -> usize {
    terminal.size().map_or(10, |s| usize::from(s.height).saturating_sub(8).max(1))
}

/// How often an open conversation with someone not connected is probed.
const PROBE: Duration = Duration::from_secs(60);

/// Reads terminal events on a thread of its own (crossterm's reads block), until `stop`.
fn keys(stop: Arc<AtomicBool>) -> mpsc::Receiver<TermEvent> {
    let (tx, rx) = mpsc::channel(256);
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match event::poll(Duration::from_millis(100)) {
                Ok(true) => match event::read() {
                    Ok(ev) => {
                        if tx.blocking_send(ev).is_err() {
                            return;
                        }
                    }
                    Err(_) => return,
                },
                Ok(false) => {}
                Err(_) => return,
            }
        }
    });
    rx
}

async fn event_loop(
    terminal: &mut Term,
    link: &Link<'_>,
    mut events: Events,
    mut changes: Option<tokio::sync::watch::Receiver<u64>>,
    app: &mut App,
    desktop: bool,
) -> anyhow::Result<Ended> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut keys = keys(stop.clone());
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("SIGTERM")?;
    // Made once, before the loop: a SIGINT that comes while an action runs is not lost.
    #[cfg(unix)]
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("SIGINT")?;
    let mut title = String::new();
    let mut probed = std::time::Instant::now();
    let result = loop {
        app.page = page(terminal);
        if let Err(e) = terminal.draw(|f| ui::draw(f, app)) {
            break Err(anyhow::Error::new(e).context("drawing"));
        }
        signals(app, &mut title, desktop);
        let action = tokio::select! {
            key = keys.recv() => match key {
                Some(TermEvent::Key(key)) if key.kind != KeyEventKind::Release => app.on_key(key),
                Some(TermEvent::Paste(text)) => {
                    app.on_paste(&text);
                    None
                }
                Some(TermEvent::Mouse(mouse)) => {
                    app.on_mouse(mouse);
                    None
                }
                Some(_) => None, // resizes redraw on the next turn
                None => Some(Action::Quit),
            },
            next = events.next() => match next {
                Next::Event(event) => app.on_event(&event),
                Next::Lagged => Some(Action::ReloadContacts),
                Next::Nothing => None,
                Next::Closed if matches!(link, Link::Remote(_)) => {
                    let open = app.current().map(|c| c.username.as_str().to_owned());
                    break Ok(Ended::OwnerGone { open });
                }
                Next::Closed => Some(Action::Quit),
            },
            // Other tincan commands of this profile change it through our API: show what they did.
            Ok(()) = async {
                match &mut changes {
                    Some(changes) => changes.changed().await,
                    None => std::future::pending().await,
                }
            } => Some(Action::ReloadContacts),
            _ = tick.tick() => {
                let now = std::time::Instant::now();
                app.tick(now);
                // An open conversation with someone not connected: look again now and then.
                match app.open {
                    Some(conv) if now.duration_since(probed) >= PROBE => {
                        probed = now;
                        Some(Action::Probe(conv))
                    }
                    _ => None,
                }
            },
            _ = signalled(&mut interrupt) => Some(Action::Quit),
            _ = signalled(&mut term) => Some(Action::Quit),
        };
        if let Some(action) = action {
            if action == Action::Quit {
                break Ok(Ended::Quit);
            }
            perform(link, app, action).await;
        }
    };
    stop.store(true, Ordering::Relaxed);
    result
}

/// The bell, the terminal's title and desktop notifications, as the app asks for them.
fn signals(app: &mut App, title: &mut String, desktop: bool) {
    use std::io::Write;
    if std::mem::take(&mut app.ring) {
        let mut out = std::io::stdout();
        let _ = out.write_all(b"\x07");
        let _ = out.flush();
    }
    let now = app.title();
    if now != *title {
        let _ = execute!(std::io::stdout(), terminal::SetTitle(&now));
        *title = now;
    }
    for text in app.desktop.drain(..) {
        // Who wrote, never what: the notification may show on a locked screen.
        if desktop {
            let _ = std::process::Command::new("notify-send")
                .args(["--app-name=tincan", "tincan", &text])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn();
        }
    }
}

#[cfg(unix)]
async fn signalled(signal: &mut tokio::signal::unix::Signal) {
    signal.recv().await;
}

/// Carries out an action, reporting problems on the status line.
async fn perform(link: &Link<'_>, app: &mut App, action: Action) {
    if let Err(e) = try_perform(link, app, action).await {
        app.note(Level::Warning, format!("{e:#}"));
    }
}

async fn try_perform(link: &Link<'_>, app: &mut App, action: Action) -> anyhow::Result<()> {
    match action {
        Action::Send(conv, user, text) => {
            // A text longer than one message goes as several, in order, none cut.
            let pieces = tincan_wire::split_text(&text);
            if pieces.len() > 1 {
                app.note(Level::Info, format!("Long text: sent as {} messages.", pieces.len()));
            }
            for piece in pieces {
                let (_, position, _) = link.send(&user, piece).await?;
                if app.open == Some(conv)
                    && let Some(entry) = link.entry(conv, position).await?
                {
                    app.messages.push(entry);
                    app.scroll = 0;
                }
            }
        }
        Action::Open(user) => {
            let contact = link.resolve(&user).await?;
            open(app, link, contact.conversation).await?;
            link.probe(contact.conversation).await?;
        }
        Action::OpenConversation(conv) => {
            open(app, link, conv).await?;
            link.probe(conv).await?;
        }
        Action::Probe(conv) => link.probe(conv).await?,
        Action::End(conv) => link.end(conv).await?,
        Action::Search(conv, text) => {
            let found = link.search(conv, &text).await?;
            let name = app.current().map(|c| c.username.to_string()).unwrap_or_default();
            let me = app.me.to_string();
            let mut lines: Vec<String> =
                found.iter().map(|e| crate::format::dated_line(&me, &name, e)).collect();
            if lines.is_empty() {
                lines.push(format!("Nothing holds {text:?}."));
            }
            app.show_panel(format!("{} found: {text}", found.len()), lines);
        }
        Action::Retry(conv) => {
            let n = link.retry(conv).await?;
            open(app, link, conv).await?;
            app.note(
                Level::Info,
                if n == 0 {
                    "Nothing was refused: nothing to send again.".to_owned()
                } else {
                    format!("{n} refused message(s) queued again.")
                },
            );
        }
        Action::Mouse(on) => {
            if on {
                execute!(std::io::stdout(), event::EnableMouseCapture)?;
            } else {
                execute!(std::io::stdout(), event::DisableMouseCapture)?;
            }
        }
        Action::Verify(user) => {
            let contact = link.resolve(&user).await?;
            let numbers = link.numbers(&user).await?;
            let (title, lines) = verify_panel(&user, &numbers);
            let shown = app::Shown {
                conversation: contact.conversation,
                pinned: app::peer_bytes(&numbers.pinned.0),
                pending: numbers.pending.as_ref().map(|(p, _)| app::peer_bytes(p)),
            };
            app.set_contacts(link.contacts().await?);
            app.show_numbers(title, lines, shown);
        }
        Action::Trust(user, expected) => {
            let expected = libp2p_identity::PeerId::from_bytes(expected.as_bytes())?;
            link.trust(&user, expected).await?;
            app.set_contacts(link.contacts().await?);
            app.note(
                Level::Info,
                format!("Trusted {user}'s new key; held messages are on their way."),
            );
        }
        Action::Reject(user) => {
            link.reject(&user).await?;
            app.set_contacts(link.contacts().await?);
            app.note(
                Level::Info,
                format!("Kept {user}'s old key. Messages to {user} still wait for the old key: they go when it is reachable again."),
            );
        }
        Action::MarkVerified(conv) => {
            let contact = link.mark_verified(conv).await?;
            app.set_contacts(link.contacts().await?);
            app.note(Level::Info, format!("{} is marked verified ✔.", contact.username));
        }
        Action::Delete(conv) => {
            let name = app.current().map(|c| c.username.to_string()).unwrap_or_default();
            let kept_blocked = link.delete(conv).await?;
            if kept_blocked {
                app.messages.clear();
            } else {
                app.leave();
            }
            app.set_contacts(link.contacts().await?);
            app.note(
                Level::Info,
                if kept_blocked {
                    format!("Deleted the messages of {name}; it stays blocked.")
                } else {
                    format!("Deleted the conversation with {name}.")
                },
            );
        }
        Action::Accept(conv) => {
            let contact = link.accept(conv).await?;
            app.set_contacts(link.contacts().await?);
            open(app, link, conv).await?;
            app.note(Level::Info, format!("{} is now a contact.", contact.username));
        }
        Action::Block(conv, blocked) => {
            let contact = link.block(conv, blocked).await?;
            app.set_contacts(link.contacts().await?);
            app.note(
                Level::Info,
                format!(
                    "{} is {}.",
                    contact.username,
                    if blocked { "blocked" } else { "unblocked" }
                ),
            );
        }
        Action::Online => {
            let found = link.online().await?;
            let mut lines: Vec<String> = found
                .iter()
                .filter(|f| **f != app.me)
                .map(|f| {
                    let known = app.contacts.iter().any(|c| c.username == *f);
                    format!("{f}{}", if known { "  (contact)" } else { "" })
                })
                .collect();
            if lines.is_empty() {
                lines.push("Nobody else is online.".into());
            }
            lines.push(String::new());
            lines.push("Type a name and Enter to chat.".into());
            app.show_panel("Online now", lines);
        }
        Action::MarkRead(conv) => {
            link.mark_read(conv).await?;
        }
        Action::ReloadContacts => {
            app.set_contacts(link.contacts().await?);
            presence(link, app).await;
            if let Some(conv) = app.open {
                let messages = link.history(conv, 500).await?;
                app.messages = messages;
            }
        }
        Action::Quit => {}
    }
    Ok(())
}

/// The verify panel: during a key change the NEW key's number first, labelled, as the one to
/// compare; the old one below, for reference.
fn verify_panel(user: &tincan_wire::Username, numbers: &Numbers) -> (String, Vec<String>) {
    // Two rows of six groups, as `tincan verify` prints them, so that they fit a narrow panel.
    let rows = |label: &str, number: &str| {
        let groups: Vec<&str> = number.split(' ').collect();
        if groups.len() < 12 {
            return [format!("    {label}{number}"), String::new()];
        }
        let pad = " ".repeat(label.chars().count());
        [
            format!("    {label}{}", groups[..6].join(" ")),
            format!("    {pad}{}", groups[6..].join(" ")),
        ]
    };
    let (pinned, old) = &numbers.pinned;
    match &numbers.pending {
        Some((new, number)) => (
            format!("⚠ {user}'s key CHANGED: compare the NEW number"),
            [
                vec![
                    format!("A phonebook shows a NEW key for {user} ({new})."),
                    "Compare this NEW safety number with the one on their screen, in person or on a call you trust:".into(),
                    String::new(),
                ],
                rows("NEW key:  ", number).to_vec(),
                vec![
                    String::new(),
                    "If it matches: /trust. If not, or you cannot check: /reject keeps the old key.".into(),
                    String::new(),
                    format!("For reference only, the old key ({pinned}), pinned until you decide:"),
                ],
                rows("old key:  ", old).to_vec(),
            ]
            .concat(),
        ),
        None => (
            format!("Verify {user}"),
            [
                vec![format!("Your safety number with {user} ({pinned}):"), String::new()],
                rows("", old).to_vec(),
                vec![String::new()],
            ]
            .concat()
            .into_iter()
            .chain([
                "Compare it with the one on their screen, in person or on a call you trust.".into(),
                "If they match: /verified marks the contact verified. Esc closes.".into(),
            ])
            .collect(),
        ),
    }
}

async fn open(app: &mut App, link: &Link<'_>, conv: ConversationId) -> anyhow::Result<()> {
    app.set_contacts(link.contacts().await?);
    let messages = link.history(conv, 500).await?;
    app.show(conv, messages);
    link.mark_read(conv).await?;
    Ok(())
}
