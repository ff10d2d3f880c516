//! Drawing the chat screen.

use chrono::TimeZone;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, List, ListItem, Paragraph, Wrap};
use tincan_node::Path;
use tincan_store::{ContactKind, Direction, Status};
use unicode_width::UnicodeWidthStr;

use super::app::{App, Level};
use super::wrap;
use crate::format;

/// Draws the whole screen.
/// Most rows the input grows to; a longer text scrolls inside it.
const INPUT_ROWS: usize = 5;

pub fn draw(frame: &mut Frame<'_>, app: &App) {
    let rows = app.input.text().split('\n').count().clamp(1, INPUT_ROWS) as u16;
    let [main, input, status] =
        Layout::vertical([Constraint::Min(3), Constraint::Length(rows + 2), Constraint::Length(1)])
            .areas(frame.area());
    let width = (main.width / 4).clamp(12, 28);
    let [list, conversation] =
        Layout::horizontal([Constraint::Length(width), Constraint::Min(10)]).areas(main);
    draw_contacts(frame, app, list);
    draw_conversation(frame, app, conversation);
    draw_input(frame, app, input);
    draw_status(frame, app, status);
}

fn draw_contacts(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let mut items = Vec::new();
    let mut requests_header = false;
    for c in &app.contacts {
        if c.kind == ContactKind::Request && !requests_header {
            requests_header = true;
            items.push(ListItem::new(Line::styled(
                "Requests",
                Style::new().add_modifier(Modifier::BOLD),
            )));
        }
        let online = app.online.contains(&c.peer_id);
        let dot = match () {
            _ if c.kind == ContactKind::Request => {
                Span::styled("? ", Style::new().fg(Color::Yellow))
            }
            _ if online && app.paths.get(&c.peer_id) == Some(&Path::Relayed) => {
                Span::styled("◑ ", Style::new().fg(Color::Yellow))
            }
            _ if online => Span::styled("● ", Style::new().fg(Color::Green)),
            _ => Span::styled("○ ", Style::new().fg(Color::DarkGray)),
        };
        let mut spans = vec![dot, Span::raw(c.username.to_string())];
        if format::impostor(c) {
            spans
                .push(Span::styled(" !", Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)));
        }
        if c.pending_peer_id.is_some() {
            spans
                .push(Span::styled(" ⚠", Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)));
        } else if c.verified {
            spans.push(Span::styled(" ✔", Style::new().fg(Color::Green)));
        }
        if c.blocked {
            spans.push(Span::styled(" ⊘", Style::new().fg(Color::DarkGray)));
        }
        if c.unread > 0 {
            spans.push(Span::styled(
                format!(" {}", c.unread),
                Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD),
            ));
        }
        let mut item = ListItem::new(Line::from(spans));
        if app.open == Some(c.conversation) {
            item = item.style(Style::new().add_modifier(Modifier::REVERSED));
        }
        items.push(item);
    }
    if app.contacts.is_empty() {
        items.push(ListItem::new(Line::styled("(no one yet)", Style::new().fg(Color::DarkGray))));
    }
    let title = format!(" {} · contacts ", app.me);
    frame.render_widget(
        List::new(items).block(Block::new().borders(Borders::ALL).title(title)),
        area,
    );
}

fn draw_conversation(frame: &mut Frame<'_>, app: &App, area: Rect) {
    if let Some((title, lines)) = &app.panel {
        let text: Vec<Line<'_>> = lines.iter().map(|l| Line::raw(l.as_str())).collect();
        let panel = Paragraph::new(text)
            .wrap(Wrap { trim: false })
            .block(Block::new().borders(Borders::ALL).title(format!(" {title} (Esc closes) ")));
        frame.render_widget(panel, area);
        return;
    }
    let Some(contact) = app.current() else {
        let text = vec![
            Line::raw(""),
            Line::raw("  Nobody chosen."),
            Line::raw("  Type a username and press Enter to chat, or Tab through your contacts."),
            Line::raw("  /online shows who is online; /help lists everything."),
        ];
        frame.render_widget(
            Paragraph::new(text).block(Block::new().borders(Borders::ALL).title(" tincan ")),
            area,
        );
        return;
    };
    let mut title = format!(" {} ", contact.username);
    title.push_str(
        match (app.online.contains(&contact.peer_id), app.paths.get(&contact.peer_id)) {
            (false, _) => "· offline ",
            (true, Some(Path::Relayed)) => "· online via relay ",
            (true, Some(Path::Punched)) => "· online, direct (hole punched) ",
            (true, Some(Path::Direct)) => "· online, direct ",
            (true, None) => "· online ",
        },
    );
    title.push_str(match () {
        _ if contact.pending_peer_id.is_some() => "· ⚠ KEY CHANGED ",
        _ if contact.kind == ContactKind::Request => "· message request ",
        _ if contact.verified => "· verified ",
        _ => "· not verified ",
    });
    // Banners stay at the top, whatever the conversation scrolls to.
    let mut banners: Vec<Line<'_>> = Vec::new();
    if contact.pending_peer_id.is_some() {
        banners.push(Line::styled(
            format!(
                "⚠ {}'s KEY CHANGED. Nothing is sent until you /verify the new key, then /trust or /reject it.",
                contact.username
            ),
            Style::new().fg(Color::White).bg(Color::Red).add_modifier(Modifier::BOLD),
        ));
    }
    if contact.blocked {
        banners.push(Line::styled(
            format!(
                "⊘ {} is blocked: their messages are refused and not stored. /unblock to take them again.",
                contact.username
            ),
            Style::new().fg(Color::White).bg(Color::DarkGray),
        ));
    } else if contact.kind == ContactKind::Request {
        let style = if format::impostor(contact) {
            Style::new().fg(Color::White).bg(Color::Red).add_modifier(Modifier::BOLD)
        } else {
            Style::new().fg(Color::Black).bg(Color::Yellow)
        };
        banners.push(Line::styled(
            format!(
                "Message request from someone claiming to be {} ({}, key {}): /accept or /block.",
                contact.username,
                contact.claim.describe(),
                format::key_id(contact)
            ),
            style,
        ));
    }
    let mut lines: Vec<Line<'_>> = Vec::new();
    let dim = Style::new().fg(Color::DarkGray);
    let mut day = None;
    for entry in &app.messages {
        // A separator when the day changes: times then need no date.
        let this_day = date(app, format::placed_at(entry));
        if day.as_ref() != Some(&this_day) {
            lines.push(Line::styled(format!("──── {this_day} ────"), dim));
            day = Some(this_day);
        }
        if entry.missing_before > 0 {
            lines.push(Line::styled(
                format!("  ({} earlier message(s) never arrived)", entry.missing_before),
                dim,
            ));
        }
        let (who, color) = match entry.direction {
            Direction::Outgoing => (app.me.as_str(), Color::Cyan),
            Direction::Incoming => (contact.username.as_str(), Color::Magenta),
        };
        let who_style = Style::new().fg(color).add_modifier(Modifier::BOLD);
        let text = format::clean(entry.text.as_str()).replace('\t', wrap::TAB);
        let mut text_lines = text.split('\n');
        let mut spans = vec![
            Span::styled(format!("[{}] ", clock(app, format::placed_at(entry))), dim),
            Span::styled(who.to_owned(), who_style),
            // The sender's clock is a claim: shown as theirs, when far from ours.
            Span::styled(format::claimed_time(entry, |t| when(app, t)), dim),
            Span::styled(": ", who_style),
            Span::raw(text_lines.next().unwrap_or_default().to_owned()),
        ];
        // A message of several lines shows as several lines, indented under its first.
        let rest: Vec<String> = text_lines.map(|l| format!("    {l}")).collect();
        let mut tail = Vec::new();
        if entry.direction == Direction::Outgoing {
            let style = match entry.status {
                Status::Failed { .. } => Style::new().fg(Color::Red),
                Status::Delivered { .. } => Style::new().fg(Color::Green),
                _ => dim,
            };
            tail.push(Span::styled(format!(" {}", format::mark(&entry.status)), style));
            if let Status::Failed { code, reason } = &entry.status {
                tail.push(Span::styled(format!(" {}", format::refusal(*code, reason)), style));
            }
        }
        if entry.late {
            tail.push(Span::styled(" (late)", dim));
        }
        if rest.is_empty() {
            spans.extend(tail);
            lines.push(Line::from(spans));
        } else {
            lines.push(Line::from(spans));
            let last = rest.len() - 1;
            for (i, l) in rest.into_iter().enumerate() {
                let mut row = vec![Span::raw(l)];
                if i == last {
                    row.extend(tail.clone());
                }
                lines.push(Line::from(row));
            }
        }
    }
    // The rows as drawn: wrapped here, so that the count that keeps the newest line in view is
    // the count drawn (ratatui's own wrapping counted differently, and hid lines).
    let inner = area.width.saturating_sub(2).max(1) as usize;
    let banners = wrap::wrap_all(&banners, inner);
    let height = (area.height.saturating_sub(2) as usize).saturating_sub(banners.len());
    let rows = wrap::wrap_all(&lines, inner);
    let max_scroll = rows.len().saturating_sub(height);
    app.max_scroll.set(max_scroll);
    let scroll = app.scroll.min(max_scroll);
    if scroll > 0 {
        title.push_str(&format!("· ↑ {scroll} lines up (End: back to the newest) "));
    }
    let top = max_scroll - scroll;
    let shown: Vec<Line<'_>> =
        banners.into_iter().chain(rows.into_iter().skip(top).take(height)).collect();
    let paragraph = Paragraph::new(shown).block(Block::new().borders(Borders::ALL).title(title));
    frame.render_widget(paragraph, area);
}

/// The day of `at`, in words, for the separators.
fn date(app: &App, at: tincan_wire::UnixMillis) -> String {
    let millis = i64::try_from(at.0).unwrap_or(i64::MAX);
    let format = "%A %-d %B %Y";
    if app.local_time {
        chrono::Local.timestamp_millis_opt(millis).single().map(|t| t.format(format).to_string())
    } else {
        chrono::Utc.timestamp_millis_opt(millis).single().map(|t| t.format(format).to_string())
    }
    .unwrap_or_else(|| "?".into())
}

/// The time of day of `at`, `14:05`: the day is in the separator above.
fn clock(app: &App, at: tincan_wire::UnixMillis) -> String {
    let millis = i64::try_from(at.0).unwrap_or(i64::MAX);
    if app.local_time {
        chrono::Local.timestamp_millis_opt(millis).single().map(|t| t.format("%H:%M").to_string())
    } else {
        chrono::Utc.timestamp_millis_opt(millis).single().map(|t| t.format("%H:%M").to_string())
    }
    .unwrap_or_else(|| "?".into())
}

fn when(app: &App, at: tincan_wire::UnixMillis) -> String {
    if app.local_time { format::time(at) } else { format::time_in(at, &chrono::Utc) }
}

fn draw_input(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let mut prompt = match app.current() {
        Some(c) => format!(" to {} ", c.username),
        None => " username to chat with ".to_owned(),
    };
    let text = app.input.text();
    let lines: Vec<&str> = text.split('\n').collect();
    if lines.len() > 1 {
        prompt.push_str(&format!("· {} lines · Enter sends, Alt-Enter adds a line ", lines.len()));
    }
    let (line, col) = app.input.cursor_line();
    // The rows around the cursor, and the columns that keep it in view.
    let height = area.height.saturating_sub(2).max(1) as usize;
    let first = line.saturating_sub(height - 1);
    let inner = area.width.saturating_sub(2) as usize;
    let shown_width = |s: &str| s.replace('\t', wrap::TAB).width();
    let before: String = lines.get(line).map(|l| l.chars().take(col).collect()).unwrap_or_default();
    let cursor_col = shown_width(&before);
    let skip = cursor_col.saturating_sub(inner.saturating_sub(1));
    let rows: Vec<Line<'_>> = lines
        .iter()
        .skip(first)
        .take(height)
        .map(|l| {
            let l = l.replace('\t', wrap::TAB);
            let mut acc = 0;
            let visible: String = l
                .chars()
                .skip_while(|c| {
                    let keep = acc >= skip;
                    acc += c.to_string().width();
                    !keep
                })
                .collect();
            Line::raw(visible)
        })
        .collect();
    frame.render_widget(
        Paragraph::new(rows).block(Block::new().borders(Borders::ALL).title(prompt)),
        area,
    );
    let x = area.x + 1 + u16::try_from(cursor_col - skip).unwrap_or(0);
    let y = area.y + 1 + u16::try_from(line - first).unwrap_or(0);
    frame.set_cursor_position((x.min(area.right().saturating_sub(2)), y));
}

fn draw_status(frame: &mut Frame<'_>, app: &App, area: Rect) {
    // A full disk outranks any notice: until it ends, nothing more is stored.
    if app.storage != tincan_store::Health::Ok {
        let text = match app.storage {
            tincan_store::Health::DiskFull => {
                " ⚠ Disk full: messages wait. Nothing more is stored until you free space."
            }
            _ => " ⚠ The store cannot write right now: messages wait; it retries by itself.",
        };
        let style = Style::new().fg(Color::White).bg(Color::Red).add_modifier(Modifier::BOLD);
        frame.render_widget(Paragraph::new(Line::styled(text, style)), area);
        return;
    }
    let line = match &app.notice {
        Some((Level::Warning, text)) => Line::styled(
            format!(" {text}"),
            Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
        ),
        Some((Level::Info, text)) => Line::raw(format!(" {text}")),
        None => Line::raw(""),
    };
    // The notice has the line; who and where are shown when there is nothing to say.
    let line = if app.notice.is_some() {
        line
    } else {
        Line::styled(
            format!(" {} @ {} · {}", app.me, app.profile, app.phonebook),
            Style::new().fg(Color::DarkGray),
        )
    };
    frame.render_widget(Paragraph::new(line), area);
}

#[cfg(test)]
mod tests {
    //! Snapshot tests: the screen rendered into ratatui's `TestBackend`, compared with
    //! `tests/snapshots/NAME.txt`. `UPDATE_SNAPSHOTS=1 cargo test` rewrites them after a
    //! deliberate change; review the diff.

    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use tincan_store::{ContactKind, ConversationId, Direction, LogEntry, Status};
    use tincan_wire::{MessageId, PeerIdBytes, Seq, Text, UnixMillis, Username};

    use super::*;
    use crate::tui::fixtures::contact;

    fn entry(n: u64, direction: Direction, text: &str, status: Status) -> LogEntry {
        LogEntry {
            position: n,
            direction,
            id: MessageId([n as u8; 16]),
            seq: Seq::new(n + 1).unwrap(),
            // 2025-11-26 14:00 UTC, a minute apart.
            sent_at: UnixMillis(1_764_165_600_000 + n * 60_000),
            stored_at: UnixMillis(1_764_165_600_000 + n * 60_000),
            status,
            text: Text::new(text).unwrap(),
            claimed_from: None,
            missing_before: 0,
            late: false,
        }
    }

    fn app() -> App {
        let mut app =
            App::new(Username::new("alice").unwrap(), "default".into(), "local phonebook".into());
        app.local_time = false;
        let mut bob = contact("bob", 1, ContactKind::Contact);
        bob.verified = true;
        let mut carol = contact("carol", 2, ContactKind::Contact);
        carol.unread = 3;
        app.online.insert(bob.peer_id.clone());
        app.paths.insert(bob.peer_id.clone(), Path::Punched);
        app.online.insert(carol.peer_id.clone());
        app.paths.insert(carol.peer_id.clone(), Path::Relayed);
        app.set_contacts(vec![carol, bob, contact("mallory", 3, ContactKind::Request)]);
        app
    }

    fn render(app: &App, width: u16, height: u16) -> String {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(|f| draw(f, app)).unwrap();
        let buffer = terminal.backend().buffer().clone();
        let mut out = String::new();
        for y in 0..height {
            let line: String = (0..width).map(|x| buffer[(x, y)].symbol().to_owned()).collect();
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    #[track_caller]
    fn check(name: &str, actual: &str) {
        let path = format!("{}/tests/snapshots/{name}.txt", env!("CARGO_MANIFEST_DIR"));
        if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
            std::fs::write(&path, actual).unwrap();
            return;
        }
        let expected = std::fs::read_to_string(&path)
            .unwrap_or_else(|_| panic!("{path} is missing; run with UPDATE_SNAPSHOTS=1"));
        assert_eq!(actual, expected, "the screen differs from {path}");
    }

    #[test]
    fn a_contact_reached_through_the_relay() {
        let mut app = app();
        let conv = ConversationId([2; 16]);
        app.show(conv, vec![entry(0, Direction::Incoming, "behind two NATs", Status::Received)]);
        check("relayed", &render(&app, 80, 8));
    }

    #[test]
    fn nobody_chosen() {
        check("nobody-chosen", &render(&app(), 80, 16));
    }

    #[test]
    fn a_conversation_with_every_mark() {
        let mut app = app();
        let conv = ConversationId([1; 16]);
        let mut gap = entry(4, Direction::Incoming, "did you get my last two?", Status::Received);
        gap.missing_before = 2;
        app.show(
            conv,
            vec![
                entry(0, Direction::Incoming, "hi alice", Status::Received),
                entry(
                    1,
                    Direction::Outgoing,
                    "hello bob, delivered",
                    Status::Delivered { at: UnixMillis(0) },
                ),
                entry(2, Direction::Outgoing, "sent, not yet acknowledged", Status::Sent),
                entry(3, Direction::Outgoing, "still queued", Status::Queued),
                gap,
                entry(
                    5,
                    Direction::Outgoing,
                    "refused",
                    Status::Failed { code: 6, reason: "blocked".into() },
                ),
            ],
        );
        for c in "typing a reply".chars() {
            app.input.insert(c);
        }
        check("conversation", &render(&app, 80, 16));
    }

    #[test]
    fn a_changed_key_is_impossible_to_miss() {
        let mut app = app();
        let conv = ConversationId([1; 16]);
        let mut contacts = app.contacts.clone();
        for c in &mut contacts {
            if c.conversation == conv {
                c.pending_peer_id = Some(PeerIdBytes::new(&[0, 36, 8, 1, 18, 32, 9]).unwrap());
            }
        }
        app.set_contacts(contacts);
        app.show(conv, vec![entry(0, Direction::Incoming, "hi", Status::Received)]);
        check("key-changed", &render(&app, 80, 12));
    }

    #[test]
    fn a_message_request() {
        let mut app = app();
        app.show(
            ConversationId([3; 16]),
            vec![entry(0, Direction::Incoming, "I am totally bob", Status::Received)],
        );
        check("request", &render(&app, 80, 12));
    }

    /// Issue 16, bug 1: at 120×35, 16 short lines, then three words of 48 characters, then
    /// "short after": the newest line and its echo must be on screen.
    #[test]
    fn issue_16_the_newest_lines_are_never_hidden() {
        let mut app = app();
        let conv = ConversationId([1; 16]);
        let word = "w".repeat(48);
        let mut messages: Vec<LogEntry> = (0..16)
            .map(|n| {
                entry(
                    n,
                    Direction::Outgoing,
                    &format!("short {n}"),
                    Status::Delivered { at: UnixMillis(0) },
                )
            })
            .collect();
        messages.push(entry(
            16,
            Direction::Outgoing,
            &format!("{word} {word} {word}"),
            Status::Sent,
        ));
        messages.push(entry(17, Direction::Outgoing, "short after", Status::Sent));
        messages.push(entry(18, Direction::Incoming, "echo: short after", Status::Received));
        app.show(conv, messages);
        let screen = render(&app, 120, 35);
        assert!(screen.contains("alice: short after"), "{screen}");
        assert!(screen.contains("bob: echo: short after"), "{screen}");
        check("newest-lines", &screen);
        // A longer conversation, scrolled up a page and back down with End: the newest line is
        // there again.
        let mut many: Vec<LogEntry> = (0..60)
            .map(|n| entry(n, Direction::Incoming, &format!("line {n}"), Status::Received))
            .collect();
        many.push(entry(60, Direction::Incoming, "echo: short after", Status::Received));
        app.show(conv, many);
        assert!(render(&app, 120, 35).contains("echo: short after"));
        app.page = 20;
        app.on_key(ratatui::crossterm::event::KeyEvent::from(
            ratatui::crossterm::event::KeyCode::PageUp,
        ));
        assert!(!render(&app, 120, 35).contains("echo: short after"));
        app.on_key(ratatui::crossterm::event::KeyEvent::from(
            ratatui::crossterm::event::KeyCode::End,
        ));
        assert!(render(&app, 120, 35).contains("echo: short after"));
    }

    /// Issue 16: wrapping by words, by graphemes, with wide characters and emoji, and a day
    /// separator where the date changes; a message of several lines shows as such.
    #[test]
    fn issue_16_wrapping_days_and_lines() {
        let mut app = app();
        let conv = ConversationId([1; 16]);
        let mut yesterday = entry(0, Direction::Incoming, "from yesterday", Status::Received);
        yesterday.stored_at = UnixMillis(yesterday.stored_at.0 - 86_400_000);
        let mut late_clock = entry(5, Direction::Incoming, "my clock is off", Status::Received);
        late_clock.sent_at = UnixMillis(late_clock.stored_at.0 - 3 * 3_600_000);
        app.show(
            conv,
            vec![
                yesterday,
                entry(
                    1,
                    Direction::Outgoing,
                    "a fairly long sentence that wraps at word boundaries in a narrow window",
                    Status::Delivered { at: UnixMillis(0) },
                ),
                entry(
                    2,
                    Direction::Incoming,
                    "unbreakableeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee",
                    Status::Received,
                ),
                entry(
                    3,
                    Direction::Incoming,
                    "日本語のテキストと絵文字 🥫👍🏽 が混ざった行です",
                    Status::Received,
                ),
                entry(4, Direction::Outgoing, "first line\nsecond line\n\tand a tab", Status::Sent),
                late_clock,
            ],
        );
        check("wrapping", &render(&app, 60, 22));
    }

    /// Issue 16: a multi-line draft grows the input; a search shows its results; a message
    /// elsewhere shows on the status line and in the title.
    #[test]
    fn issue_16_multiline_input_search_and_notifications() {
        let mut app = app();
        let conv = ConversationId([1; 16]);
        app.show(conv, vec![entry(0, Direction::Incoming, "dinner at eight?", Status::Received)]);
        app.input.paste("line one\nline two\nline three");
        check("multiline-input", &render(&app, 80, 14));
        app.input.clear();
        app.show_panel("1 found: dinner", vec!["[2025-11-26 14:00] bob: dinner at eight?".into()]);
        check("search", &render(&app, 80, 10));
        app.close_panel();
        let mut carol_says = entry(7, Direction::Incoming, "psst", Status::Received);
        carol_says.position = 9;
        app.on_event(&tincan_node::Event::Received {
            conversation: ConversationId([2; 16]),
            username: Username::new("carol").unwrap(),
            entry: carol_says,
            request: false,
        });
        assert!(app.ring, "the bell rings");
        assert_eq!(app.title(), "tincan · alice (4)");
        check("notification", &render(&app, 80, 10));
    }

    /// Issue 17: a full disk is on the status line, whatever else is noted, until it ends.
    #[test]
    fn issue_17_a_full_disk_is_impossible_to_miss() {
        let mut app = app();
        app.show(
            ConversationId([1; 16]),
            vec![entry(0, Direction::Incoming, "hi", Status::Received)],
        );
        app.on_event(&tincan_node::Event::Storage(tincan_store::Health::DiskFull));
        app.note(Level::Info, "something else");
        check("disk-full", &render(&app, 80, 8));
        app.on_event(&tincan_node::Event::Storage(tincan_store::Health::Ok));
        assert!(app.notice.as_ref().unwrap().1.contains("Disk space is back"));
    }

    #[test]
    fn help_and_a_small_terminal() {
        let mut app = app();
        for c in "/help".chars() {
            app.input.insert(c);
        }
        app.on_key(ratatui::crossterm::event::KeyEvent::from(
            ratatui::crossterm::event::KeyCode::Enter,
        ));
        check("help", &render(&app, 100, 20));
        check("small", &render(&app, 40, 10));
    }
}
