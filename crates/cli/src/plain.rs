//! `tincan chat USER --plain`: lines in, messages out. For scripts, pipes and screen readers.
//!
//! What is printed is what the conversation holds: the unread backlog first, then each new
//! message as it is stored, read from the store rather than from events (which a slow reader
//! may miss). A message is marked read only once it was printed. SIGINT and SIGTERM end it at
//! once, whatever it is doing.

use std::collections::HashSet;
use std::io::{BufRead, Write};
use std::time::Duration;

use anyhow::Context;
use tincan_node::Event;
use tincan_store::{ConversationId, Direction, Status};
use tokio::sync::mpsc;

use crate::config::Profile;
use crate::format;
use crate::profile::{self, PasswordSource};
use crate::session::Session;
use crate::tui::link::{Link, Next};

/// The line that ends a conversation, as in the original chat.
pub const DISCONNECT: &str = "--DISCONNECT--";

/// Most messages of the unread backlog printed at the start.
const BACKLOG: usize = 1000;

#[allow(clippy::print_stdout)]
fn show(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Reads stdin on a thread of its own, so that nothing waits for the next line to exit: a
/// blocked read on tokio's blocking pool would hold the runtime (and the profile) until the
/// user typed again.
fn lines() -> mpsc::Receiver<std::io::Result<String>> {
    let (tx, rx) = mpsc::channel(64);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            if tx.blocking_send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Prints the incoming messages after position `shown`, marks them read, and moves `shown`.
async fn show_new(
    link: &Link<'_>,
    conv: ConversationId,
    me: &str,
    who: &str,
    shown: &mut Option<u64>,
) -> anyhow::Result<()> {
    let from = shown.map_or(0, |p| p + 1);
    let entries = link.entries_from(conv, from, BACKLOG).await?;
    let Some(last) = entries.last().map(|e| e.position) else { return Ok(()) };
    for entry in entries.iter().filter(|e| e.direction == Direction::Incoming) {
        show(&format::line(me, who, entry));
    }
    *shown = Some(last);
    link.mark_read_through(conv, last).await?;
    Ok(())
}

/// Runs the plain chat with `user` until stdin ends, `--DISCONNECT--`, SIGINT or SIGTERM. On
/// the end of input it waits (up to 30 s) for what it sent to be delivered.
pub async fn run(profile: &Profile, global: &crate::cli::Global, user: &str) -> anyhow::Result<()> {
    let to = tincan_wire::Username::new(user)
        .map_err(|e| anyhow::anyhow!("{user:?} is not a username: {}", e.reason()))?;
    // Signals are caught from the very start: one that arrives while a line is being sent, or
    // before the loop, still ends the chat.
    let mut interrupt = signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut terminate = signal(tokio::signal::unix::SignalKind::terminate())?;
    // Another tincan owns the profile: chat through it, without a password.
    if let Some(client) = crate::backend::owner(profile).await {
        let status: tincan_api::Status =
            client.call_as(tincan_api::Call::Status(tincan_api::Empty {})).await?;
        let link = Link::Remote(&client);
        return chat(&link, &status.username, &to, &mut interrupt, &mut terminate).await;
    }
    let unlocked = profile::unlock(profile, PasswordSource::from(global)?).await?;
    let me = unlocked.username.to_string();
    let session = Session::start(profile, unlocked).await?;
    let result = chat(&Link::Own(&session), &me, &to, &mut interrupt, &mut terminate).await;
    session.stop().await;
    result
}

fn signal(kind: tokio::signal::unix::SignalKind) -> anyhow::Result<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(kind).context("installing a signal handler")
}

async fn chat(
    link: &Link<'_>,
    me: &str,
    to: &tincan_wire::Username,
    interrupt: &mut tokio::signal::unix::Signal,
    terminate: &mut tokio::signal::unix::Signal,
) -> anyhow::Result<()> {
    let contact = link.resolve(to).await?;
    let conv = contact.conversation;
    let who = contact.username.to_string();
    let mut events = link.events().await?;
    let mut input = lines();
    let mut pending: HashSet<tincan_wire::MessageId> = HashSet::new();
    let mut input_open = true;
    let mut drain_deadline = None;
    eprintln!("Chatting with {to}. Type a line to send it; {DISCONNECT} or end of input to stop.");
    // The backlog: what waited unread, oldest first; then what is new.
    let mut shown = if contact.unread == 0 { contact.log_len.checked_sub(1) } else { None };
    if contact.unread > 0 {
        let unread = usize::try_from(contact.unread).unwrap_or(BACKLOG).min(BACKLOG);
        // Through an owner, a page holds at most 500 entries: with more unread than that, the
        // backlog starts at the oldest one the page holds.
        let limit = u32::try_from(unread * 2 + 16).unwrap_or(u32::MAX);
        let recent = link.history(conv, limit).await?;
        let incoming: Vec<u64> = recent
            .iter()
            .filter(|e| e.direction == Direction::Incoming)
            .map(|e| e.position)
            .collect();
        // Start just before the oldest unread message.
        shown = incoming
            .iter()
            .rev()
            .nth(unread - 1)
            .or(incoming.first())
            .and_then(|p| p.checked_sub(1));
        show_new(link, conv, me, &who, &mut shown).await?;
    }
    loop {
        if !input_open && pending.is_empty() {
            break;
        }
        let deadline = drain_deadline
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            biased;
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
            line = input.recv(), if input_open => match line {
                Some(Ok(line)) if line.trim() == DISCONNECT => {
                    input_open = false;
                    drain_deadline = Some(tokio::time::Instant::now() + Duration::from_secs(30));
                    // The other side hears that the conversation ended; best effort.
                    let _ = link.end(conv).await;
                }
                Some(Ok(line)) if line.trim().is_empty() => {}
                // A line longer than one message goes as several, in order, none cut.
                Some(Ok(line)) => for piece in tincan_wire::split_text(&line) {
                    match link.send(to, piece).await {
                        Ok((_, _, id)) => {
                            pending.insert(id);
                        }
                        Err(e) => eprintln!("not sent: {}", format::clean_line(&e.to_string())),
                    }
                },
                Some(Err(_)) | None => {
                    input_open = false;
                    drain_deadline = Some(tokio::time::Instant::now() + Duration::from_secs(30));
                }
            },
            next = events.next() => match next {
                Next::Event(event) => match *event {
                Event::Received { conversation, .. } if conversation == conv => {
                    show_new(link, conv, me, &who, &mut shown).await?;
                }
                Event::Status { id, status, .. } if pending.contains(&id) => match status {
                    Status::Delivered { .. } => {
                        pending.remove(&id);
                    }
                    Status::Failed { reason, .. } => {
                        pending.remove(&id);
                        eprintln!("a message was refused: {}", format::clean_line(&reason));
                    }
                    _ => {}
                },
                Event::Notice { conversation, notice: tincan_wire::Notice::Ended, .. } if conversation == conv => {
                    show(&format!("* {who} ended the conversation"));
                }
                Event::Sealing { conversation, change, .. } if conversation == conv => {
                    show(&format!("* {who} {}", change.describe()));
                }
                Event::Storage(health) => match health {
                    tincan_store::Health::Ok => eprintln!("disk space is back: messages flow again."),
                    tincan_store::Health::DiskFull => eprintln!("disk full: messages wait. Nothing more is stored (or received) until you free space; nothing already stored is lost."),
                    _ => eprintln!("the store cannot write right now: messages wait; it retries by itself."),
                },
                Event::Duplicate { addrs, .. } => {
                    let addrs: Vec<String> = addrs.iter().map(|a| format::clean_line(&a.to_string())).collect();
                    eprintln!("WARNING: another tincan with this identity runs elsewhere ({}): a copied profile? One of the two receives nothing.", addrs.join(", "));
                }
                Event::KeyChanged { username, .. } if username == *to => {
                    eprintln!("{to}'s KEY CHANGED: nothing more is sent until you compare the new safety number (`tincan verify {to}`), then `tincan trust {to}` or `tincan reject {to}`.");
                }
                _ => {}
                },
                // Missed events: the store has everything.
                Next::Lagged => show_new(link, conv, me, &who, &mut shown).await?,
                Next::Nothing => {}
                Next::Closed => {
                    eprintln!("the tincan that ran this chat stopped");
                    break;
                }
            },
            () = tokio::time::sleep_until(deadline), if drain_deadline.is_some() => {
                eprintln!("{} message(s) not delivered yet; they stay queued.", pending.len());
                break;
            }
        }
    }
    Ok(())
}
