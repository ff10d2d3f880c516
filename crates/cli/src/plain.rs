//! `tincan chat USER --plain`: lines in, messages out. For scripts, pipes and screen readers.

use std::collections::HashSet;
use std::io::Write;
use std::time::Duration;

use tincan_node::Event;
use tincan_store::Status;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::config::Profile;
use crate::format;
use crate::profile::{self, PasswordSource};
use crate::session::Session;

/// The line that ends a conversation, as in the original chat.
pub const DISCONNECT: &str = "--DISCONNECT--";

#[allow(clippy::print_stdout)]
fn show(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Runs the plain chat with `user` until stdin ends, `--DISCONNECT--`, or Ctrl-C. On the end of
/// input it waits (up to 30 s) for what it sent to be delivered.
pub async fn run(profile: &Profile, global: &crate::cli::Global, user: &str) -> anyhow::Result<()> {
    let to = tincan_wire::Username::new(user)
        .map_err(|e| anyhow::anyhow!("{user:?} is not a username: {}", e.reason()))?;
    let unlocked = profile::unlock(profile, PasswordSource::from(global)?).await?;
    let session = Session::start(profile, unlocked).await?;
    let node = session.node.clone();
    let contact = match node.resolve(&to).await {
        Ok(contact) => contact,
        Err(e) => {
            session.stop().await;
            return Err(e.into());
        }
    };
    let conv = contact.conversation;
    let mut events = node.subscribe();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut pending: HashSet<tincan_wire::MessageId> = HashSet::new();
    let mut input_open = true;
    let mut drain_deadline = None;
    eprintln!("Chatting with {to}. Type a line to send it; {DISCONNECT} or end of input to stop.");
    loop {
        if !input_open && pending.is_empty() {
            break;
        }
        let deadline = drain_deadline
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            line = lines.next_line(), if input_open => match line {
                Ok(Some(line)) if line.trim() == DISCONNECT => {
                    input_open = false;
                    drain_deadline = Some(tokio::time::Instant::now() + Duration::from_secs(30));
                }
                Ok(Some(line)) if line.trim().is_empty() => {}
                Ok(Some(line)) => match node.send(&to, &line).await {
                    Ok(sent) => {
                        pending.insert(sent.id);
                    }
                    Err(e) => eprintln!("not sent: {e}"),
                },
                Ok(None) | Err(_) => {
                    input_open = false;
                    drain_deadline = Some(tokio::time::Instant::now() + Duration::from_secs(30));
                }
            },
            event = events.recv() => match event {
                Ok(Event::Received { conversation, username, entry, .. }) if conversation == conv => {
                    show(&format!("[{}] {}: {}", format::time(entry.sent_at), username, format::clean(entry.text.as_str())));
                    let _ = node.store().mark_read(conv).await;
                }
                Ok(Event::Status { id, status, .. }) if pending.contains(&id) => match status {
                    Status::Delivered { .. } => {
                        pending.remove(&id);
                    }
                    Status::Failed { reason, .. } => {
                        pending.remove(&id);
                        eprintln!("a message was refused: {reason}");
                    }
                    _ => {}
                },
                Ok(Event::KeyChanged { username, .. }) if username == to => {
                    eprintln!("{to}'s KEY CHANGED: nothing more is sent until you verify and trust it (`tincan verify {to}`).");
                }
                _ => {}
            },
            () = tokio::time::sleep_until(deadline), if drain_deadline.is_some() => {
                eprintln!("{} message(s) not delivered yet; they stay queued.", pending.len());
                break;
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    session.stop().await;
    Ok(())
}
