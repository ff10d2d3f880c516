//! How things look in a terminal.

use chrono::{Local, TimeZone};
use tincan_store::{Contact, ContactKind, Direction, LogEntry, Status};
use tincan_wire::UnixMillis;

/// A time, local: `14:05` today, `2026-11-25 14:05` otherwise.
pub fn time(at: UnixMillis) -> String {
    time_in(at, &Local)
}

/// A time in `zone`: `14:05` on today's date there, `2026-11-25 14:05` otherwise.
pub fn time_in<Tz: TimeZone>(at: UnixMillis, zone: &Tz) -> String
where
    Tz::Offset: std::fmt::Display,
{
    let Some(t) = zone.timestamp_millis_opt(i64::try_from(at.0).unwrap_or(i64::MAX)).single()
    else {
        return "?".into();
    };
    if t.date_naive() == chrono::Utc::now().with_timezone(zone).date_naive() {
        t.format("%H:%M").to_string()
    } else {
        t.format("%Y-%m-%d %H:%M").to_string()
    }
}

/// A delivery mark: `…` queued, `✓` sent, `✓✓` delivered, `✗` failed.
pub fn mark(status: &Status) -> &'static str {
    match status {
        Status::Queued => "…",
        Status::Sent => "✓",
        Status::Delivered { .. } => "✓✓",
        Status::Failed { .. } => "✗",
        _ => "",
    }
}

/// Text safe to print: the wire already refuses control characters, and this removes the
/// bidirectional formatting characters that could make text display in another order than it
/// reads ("Trojan source").
pub fn clean(text: &str) -> String {
    text.chars().filter(|c| !matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}')).collect()
}

/// One line of a conversation, as `log` prints it.
pub fn line(me: &str, contact: &str, entry: &LogEntry) -> String {
    let who = match entry.direction {
        Direction::Outgoing => me,
        Direction::Incoming => contact,
    };
    let mut out = format!("[{}] {}: {}", time(entry.sent_at), who, clean(entry.text.as_str()));
    if entry.direction == Direction::Outgoing {
        out.push_str("  ");
        out.push_str(mark(&entry.status));
        if let Status::Failed { reason, .. } = &entry.status {
            out.push_str(&format!(" ({reason})"));
        }
    }
    if entry.missing_before > 0 {
        out = format!("  ({} earlier message(s) never arrived)\n{out}", entry.missing_before);
    }
    if entry.late {
        out.push_str("  (arrived late)");
    }
    out
}

/// A contact's state in words: `verified`, `unverified`, `KEY CHANGED`, `request`, `blocked`.
pub fn state(contact: &Contact) -> String {
    let mut parts = Vec::new();
    if contact.kind == ContactKind::Request {
        parts.push("message request");
    }
    if contact.pending_peer_id.is_some() {
        parts.push("KEY CHANGED: verify, then `tincan trust`");
    } else if contact.verified {
        parts.push("verified");
    } else {
        parts.push("unverified");
    }
    if contact.blocked {
        parts.push("blocked");
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bidi_overrides_are_removed() {
        assert_eq!(clean("abc\u{202E}fed\u{202C}"), "abcfed");
        assert_eq!(clean("plain ünïcode 🥫"), "plain ünïcode 🥫");
    }
}
