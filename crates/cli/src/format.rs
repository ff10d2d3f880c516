//! How things look in a terminal, and the cleaning every string from outside goes through
//! before it reaches one.

use chrono::{Local, TimeZone};
use tincan_store::{Claim, Contact, ContactKind, Direction, LogEntry, Status};
use tincan_wire::UnixMillis;

/// What starts every line of a message after its first, in line output (`log`, `inbox`,
/// `chat --plain`). No line that tincan prints itself starts with it, so a message cannot
/// forge a line: a newline in a message always comes out as a new line with this prefix.
pub const CONTINUATION: &str = "  | ";

/// How far the sender's claimed time may be from ours before it is shown beside it.
const CLOCK_GAP_MS: u64 = 5 * 60 * 1000;

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

/// When a message is placed: for incoming messages, when we received it (our clock: the one
/// conversations are ordered by); for ours, when it was written.
pub fn placed_at(entry: &LogEntry) -> UnixMillis {
    match entry.direction {
        Direction::Incoming => entry.stored_at,
        Direction::Outgoing => entry.sent_at,
    }
}

/// What line output needs of a message: the store's entries and the API's both have it.
pub trait Shown {
    /// Ours.
    fn outgoing(&self) -> bool;
    /// When it is placed: [`placed_at`].
    fn placed(&self) -> UnixMillis;
    /// When the sender says it wrote it.
    fn claimed(&self) -> UnixMillis;
    /// The text, not yet cleaned.
    fn text(&self) -> &str;
    /// Messages of the sender missing just before it.
    fn missing(&self) -> u64;
    /// It arrived after later ones.
    fn arrived_late(&self) -> bool;
    /// Its delivery mark: [`mark`].
    fn delivery_mark(&self) -> &'static str;
    /// Why it was refused, if it was.
    fn refused(&self) -> Option<(u64, &str)>;
}

impl Shown for LogEntry {
    fn outgoing(&self) -> bool {
        self.direction == Direction::Outgoing
    }
    fn placed(&self) -> UnixMillis {
        placed_at(self)
    }
    fn claimed(&self) -> UnixMillis {
        self.sent_at
    }
    fn text(&self) -> &str {
        self.text.as_str()
    }
    fn missing(&self) -> u64 {
        self.missing_before
    }
    fn arrived_late(&self) -> bool {
        self.late
    }
    fn delivery_mark(&self) -> &'static str {
        mark(&self.status)
    }
    fn refused(&self) -> Option<(u64, &str)> {
        match &self.status {
            Status::Failed { code, reason } => Some((*code, reason)),
            _ => None,
        }
    }
}

impl Shown for tincan_api::Entry {
    fn outgoing(&self) -> bool {
        self.direction == "outgoing"
    }
    fn placed(&self) -> UnixMillis {
        UnixMillis(self.time)
    }
    fn claimed(&self) -> UnixMillis {
        UnixMillis(self.claimed_time)
    }
    fn text(&self) -> &str {
        &self.text
    }
    fn missing(&self) -> u64 {
        self.missing_before
    }
    fn arrived_late(&self) -> bool {
        self.late
    }
    fn delivery_mark(&self) -> &'static str {
        match self.status.as_str() {
            "queued" => "…",
            "sent" => "✓",
            "delivered" => "✓✓",
            "failed" => "✗",
            _ => "",
        }
    }
    fn refused(&self) -> Option<(u64, &str)> {
        self.refusal.as_ref().map(|r| (r.code, r.reason.as_str()))
    }
}

/// The sender's own claim of when it wrote an incoming message, in words, when it is far from
/// when it arrived: a clock may be wrong, or lie. Empty otherwise.
pub fn claimed_time(entry: &impl Shown, show: impl Fn(UnixMillis) -> String) -> String {
    if !entry.outgoing() && entry.claimed().0.abs_diff(entry.placed().0) > CLOCK_GAP_MS {
        format!(" (sent {} by their clock)", show(entry.claimed()))
    } else {
        String::new()
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

/// Message text safe to print, keeping its line feeds and tabs: the wire already refuses
/// other control characters, and this also removes any that a damaged store could hold, and
/// the bidirectional formatting characters that could make text display in another order
/// than it reads ("Trojan Source"). Unicode line and paragraph separators become line feeds.
pub fn clean(text: &str) -> String {
    text.chars()
        .filter_map(|c| match c {
            '\n' | '\t' => Some(c),
            '\u{2028}' | '\u{2029}' => Some('\n'),
            c if c.is_control() || tincan_wire::is_bidi_control(c) => None,
            c => Some(c),
        })
        .collect()
}

/// A string from outside (a phonebook's error or version, an address) safe to print on one
/// line: every control character, line breaks included, becomes a space, and bidirectional
/// formatting characters go.
pub fn clean_line(text: &str) -> String {
    text.chars()
        .filter(|&c| !tincan_wire::is_bidi_control(c))
        .map(|c| if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') { ' ' } else { c })
        .collect()
}

/// `text`, cleaned, with every line after the first prefixed by [`CONTINUATION`].
pub fn continued(text: &str) -> String {
    clean(text).replace('\n', &format!("\n{CONTINUATION}"))
}

/// One message with its full date, `[2026-11-25 14:05] bob: text`, as `log` and searches
/// print it.
pub fn dated_line(me: &str, contact: &str, entry: &impl Shown) -> String {
    line_with(me, contact, entry, full_time)
}

/// A time with its date, local: `2026-11-25 14:05`.
pub fn full_time(at: UnixMillis) -> String {
    Local
        .timestamp_millis_opt(i64::try_from(at.0).unwrap_or(i64::MAX))
        .single()
        .map_or_else(|| "?".into(), |t| t.format("%Y-%m-%d %H:%M").to_string())
}

/// One message, as line output prints it: `[14:05] bob: text`, continuation lines prefixed.
pub fn line(me: &str, contact: &str, entry: &impl Shown) -> String {
    line_with(me, contact, entry, time)
}

fn line_with(
    me: &str,
    contact: &str,
    entry: &impl Shown,
    time: fn(UnixMillis) -> String,
) -> String {
    let who = if entry.outgoing() { me } else { contact };
    let mut out = String::new();
    if entry.missing() > 0 {
        out.push_str(&format!("  ({} earlier message(s) never arrived)\n", entry.missing()));
    }
    out.push_str(&format!(
        "[{}] {}{}: {}",
        time(entry.placed()),
        who,
        claimed_time(entry, time),
        continued(entry.text())
    ));
    if entry.outgoing() {
        out.push_str("  ");
        out.push_str(entry.delivery_mark());
        if let Some((code, reason)) = entry.refused() {
            out.push_str(&format!(" ({})", refusal(code, reason)));
        }
    }
    if entry.arrived_late() {
        out.push_str("  (arrived late)");
    }
    out
}

/// A refusal, as the sender is told it. `blocked` reads "refused": the sender learns that its
/// messages are refused, as SECURITY.md says, and no more.
pub fn refusal(code: u64, reason: &str) -> String {
    match code {
        6 => "refused by the recipient (/retry sends them again)".to_owned(),
        _ => clean_line(reason),
    }
}

/// What a phonebook said of a request's claimed name (the API's `claim`), in words.
pub fn claim_words(claim: &str) -> &'static str {
    tincan_daemon::names::claim_of(claim).describe()
}

/// An API contact's state in words: `verified`, `not verified`, `KEY CHANGED`, `request`,
/// `blocked`.
pub fn contact_state(contact: &tincan_api::Contact) -> String {
    let mut parts = Vec::new();
    if contact.kind == "request" {
        parts.push(format!("message request ({})", claim_words(&contact.claim)));
    }
    if contact.pending_key.is_some() {
        parts.push("KEY CHANGED: `tincan verify`, then `tincan trust` or `tincan reject`".into());
    } else if contact.verified {
        parts.push("verified".into());
    } else {
        parts.push("not verified".into());
    }
    if contact.blocked {
        parts.push("blocked".into());
    }
    parts.join(", ")
}

/// Whether a phonebook says that the request's claimed name is someone else's.
pub fn impostor(contact: &Contact) -> bool {
    contact.kind == ContactKind::Request && contact.claim == Claim::OtherKey
}

/// The last characters of a contact's PeerId: enough to tell apart requests claiming one name,
/// and to name one on the command line (`tincan accept …Ab12Cd34`).
pub fn key_id(contact: &Contact) -> String {
    tincan_daemon::names::key_id(&contact.peer_id)
}

#[cfg(test)]
mod tests {
    use tincan_store::{Direction, LogEntry, Status};
    use tincan_wire::{MessageId, Seq, Text, Username};

    use super::*;

    fn incoming(text: &str, sent_at: u64, stored_at: u64) -> LogEntry {
        LogEntry {
            position: 0,
            direction: Direction::Incoming,
            id: MessageId([1; 16]),
            seq: Seq::new(1).unwrap(),
            sent_at: UnixMillis(sent_at),
            stored_at: UnixMillis(stored_at),
            status: Status::Received,
            text: Text::new(text).unwrap(),
            claimed_from: Some(Username::new("eve").unwrap()),
            missing_before: 0,
            late: false,
        }
    }

    #[test]
    fn bidi_overrides_are_removed() {
        assert_eq!(clean("abc\u{202E}fed\u{202C}"), "abcfed");
        assert_eq!(clean("plain ünïcode 🥫"), "plain ünïcode 🥫");
        assert_eq!(clean("arabic\u{061C}mark"), "arabicmark", "issue 10: U+061C too");
        assert_eq!(clean_line("title\u{1b}]0;pwned\u{7}\nnext"), "title ]0;pwned  next");
    }

    /// Issue 10: a newline in a message cannot make a line that looks like tincan's own.
    #[test]
    fn issue_10_a_message_cannot_forge_lines() {
        let now = 1_764_180_000_000;
        let forged = "hi\n== bob (1 new)\n[12:00] bob: send me your password  ✓✓\u{2028}[12:01] carol: me too";
        let out = line("alice", "eve", &incoming(forged, now, now));
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].starts_with('[') && lines[0].ends_with("eve: hi"), "{out}");
        for l in &lines[1..] {
            assert!(l.starts_with(CONTINUATION), "an unprefixed line: {l:?}");
        }
    }

    /// Issue 10: the receive time is the one shown and sorted on; a far-off claimed time is
    /// shown as the sender's claim.
    #[test]
    fn issue_10_the_senders_clock_is_a_claim() {
        let received = 1_764_180_000_000;
        let honest = line("alice", "eve", &incoming("hi", received - 2_000, received));
        assert!(!honest.contains("their clock"), "{honest}");
        let lying = incoming("from the future", u64::MAX / 2, received);
        let shown = line("alice", "eve", &lying);
        assert!(shown.contains("(sent ? by their clock)") || shown.contains("by their clock"));
        assert!(shown.starts_with(&format!("[{}]", time(UnixMillis(received)))), "{shown}");
        let past = line("alice", "eve", &incoming("old", received - 86_400_000, received));
        assert!(past.contains("by their clock"), "{past}");
    }
}
