//! Drawing the chat screen.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, List, ListItem, Paragraph, Wrap};
use tincan_node::Path;
use tincan_store::{ContactKind, Direction, Status};
use unicode_width::UnicodeWidthStr;

use super::app::{App, Level};
use crate::format;

/// Draws the whole screen.
pub fn draw(frame: &mut Frame<'_>, app: &App) {
    let [main, input, status] =
        Layout::vertical([Constraint::Min(3), Constraint::Length(3), Constraint::Length(1)])
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
    let mut lines: Vec<Line<'_>> = Vec::new();
    if contact.pending_peer_id.is_some() {
        lines.push(Line::styled(
            format!(
                "⚠ {}'s KEY CHANGED. Nothing is sent until you /verify the new key, then /trust or /reject it.",
                contact.username
            ),
            Style::new().fg(Color::White).bg(Color::Red).add_modifier(Modifier::BOLD),
        ));
    }
    if contact.kind == ContactKind::Request {
        let style = if format::impostor(contact) {
            Style::new().fg(Color::White).bg(Color::Red).add_modifier(Modifier::BOLD)
        } else {
            Style::new().fg(Color::Black).bg(Color::Yellow)
        };
        lines.push(Line::styled(
            format!(
                "Message request from someone claiming to be {} ({}, key {}): /accept or /block.",
                contact.username,
                contact.claim.describe(),
                format::key_id(contact)
            ),
            style,
        ));
    }
    for entry in &app.messages {
        if entry.missing_before > 0 {
            lines.push(Line::styled(
                format!("  ({} earlier message(s) never arrived)", entry.missing_before),
                Style::new().fg(Color::DarkGray),
            ));
        }
        let (who, color) = match entry.direction {
            Direction::Outgoing => (app.me.as_str(), Color::Cyan),
            Direction::Incoming => (contact.username.as_str(), Color::Magenta),
        };
        let mut spans = vec![
            Span::styled(
                format!("[{}] ", when(app, format::placed_at(entry))),
                Style::new().fg(Color::DarkGray),
            ),
            Span::styled(who.to_owned(), Style::new().fg(color).add_modifier(Modifier::BOLD)),
            // The sender's clock is a claim: shown as theirs, when far from ours.
            Span::styled(
                format::claimed_time(entry, |t| when(app, t)),
                Style::new().fg(Color::DarkGray),
            ),
            Span::styled(": ", Style::new().fg(color).add_modifier(Modifier::BOLD)),
            Span::raw(format::clean(entry.text.as_str())),
        ];
        if entry.direction == Direction::Outgoing {
            let style = match entry.status {
                Status::Failed { .. } => Style::new().fg(Color::Red),
                Status::Delivered { .. } => Style::new().fg(Color::Green),
                _ => Style::new().fg(Color::DarkGray),
            };
            spans.push(Span::styled(format!(" {}", format::mark(&entry.status)), style));
            if let Status::Failed { reason, .. } = &entry.status {
                spans.push(Span::styled(format!(" {reason}"), style));
            }
        }
        if entry.late {
            spans.push(Span::styled(" (late)", Style::new().fg(Color::DarkGray)));
        }
        lines.push(Line::from(spans));
    }
    // Keep the newest lines in view, wrapped at the panel's width.
    let inner = area.width.saturating_sub(2).max(1) as usize;
    let rows: usize = lines.iter().map(|l| l.width().max(1).div_ceil(inner)).sum();
    let height = area.height.saturating_sub(2) as usize;
    let top = rows.saturating_sub(height).saturating_sub(app.scroll);
    let paragraph = Paragraph::new(lines)
        .wrap(Wrap { trim: false })
        .scroll((u16::try_from(top).unwrap_or(u16::MAX), 0))
        .block(Block::new().borders(Borders::ALL).title(title));
    frame.render_widget(paragraph, area);
}

fn when(app: &App, at: tincan_wire::UnixMillis) -> String {
    if app.local_time { format::time(at) } else { format::time_in(at, &chrono::Utc) }
}

fn draw_input(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let prompt = match app.current() {
        Some(c) => format!(" to {} ", c.username),
        None => " username to chat with ".to_owned(),
    };
    let text = app.input.text();
    // Scroll the line so the cursor stays visible.
    let before: String = text.chars().take(app.input.cursor()).collect();
    let inner = area.width.saturating_sub(2) as usize;
    let cursor_col = before.width();
    let skip = cursor_col.saturating_sub(inner.saturating_sub(1));
    let shown: String = {
        let mut acc = 0;
        text.chars()
            .skip_while(|c| {
                let keep = acc >= skip;
                acc += c.to_string().width();
                !keep
            })
            .collect()
    };
    frame.render_widget(
        Paragraph::new(shown).block(Block::new().borders(Borders::ALL).title(prompt)),
        area,
    );
    let x = area.x + 1 + u16::try_from(cursor_col - skip).unwrap_or(0);
    frame.set_cursor_position((x.min(area.right().saturating_sub(2)), area.y + 1));
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
