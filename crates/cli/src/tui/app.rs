//! The chat screen's state, and what keys and events do to it. No I/O here: keys and events
//! come in, [`Action`]s go out, and the loop in `mod.rs` carries them out.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseEvent, MouseEventKind};
use tincan_node::{Event, Path, SealingChange};
use tincan_store::{Claim, Contact, ContactKind, ConversationId, LogEntry};
use tincan_wire::{PeerIdBytes, Username};

use super::input::Input;
use crate::plain::DISCONNECT;

/// Most messages kept on screen per conversation.
const SHOWN: usize = 500;

/// Something for the loop to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send text in a conversation.
    Send(ConversationId, Username, String),
    /// Open the conversation with a username, resolving it if needed.
    Open(Username),
    /// Open a conversation from the list.
    OpenConversation(ConversationId),
    /// Show the safety numbers (during a key change, the new key's).
    Verify(Username),
    /// Trust a changed key: the one whose safety number the verify panel showed.
    Trust(Username, PeerIdBytes),
    /// Keep the old key of a contact whose key changed; reject the new one.
    Reject(Username),
    /// Mark a contact verified, after its safety number was shown and compared.
    MarkVerified(ConversationId),
    /// Delete a conversation (confirmed).
    Delete(ConversationId),
    /// The user ended the conversation: tell the peer (`--DISCONNECT--`).
    End(ConversationId),
    /// Find messages of a conversation holding this text.
    Search(ConversationId, String),
    /// Send again what the peer refused while it had us blocked.
    Retry(ConversationId),
    /// Capture the mouse (wheel scrolling) or give it back to the terminal (text selection).
    Mouse(bool),
    /// Dial the open conversation's peer unless connected: presence (`specs/delivery.md` §4.0).
    Probe(ConversationId),
    /// Accept a message request.
    Accept(ConversationId),
    /// Block or unblock.
    Block(ConversationId, bool),
    /// List who is online.
    Online,
    /// Mark a conversation read.
    MarkRead(ConversationId),
    /// Read the contacts again.
    ReloadContacts,
    /// Leave the program.
    Quit,
}

/// How a notice looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Information.
    Info,
    /// Something to act on.
    Warning,
}

/// A safety-number panel on screen: which conversation, and which key's number it showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    /// The conversation.
    pub conversation: ConversationId,
    /// The pinned key, whose number was shown.
    pub pinned: PeerIdBytes,
    /// During a key change, the new key, whose number was shown as the one to compare.
    pub pending: Option<PeerIdBytes>,
}

/// An action that waits for the same command again, as confirmation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirm {
    /// `/delete` again deletes the conversation.
    Delete(ConversationId),
    /// `/accept` again accepts a request whose claimed name the phonebook gives to someone
    /// else.
    AcceptImpostor(ConversationId),
}

/// The state of the screen.
pub struct App {
    /// Our username.
    pub me: Username,
    /// The profile's name.
    pub profile: String,
    /// Where the phonebook is, in words.
    pub phonebook: String,
    /// Contacts and requests, contacts first, each by name.
    pub contacts: Vec<Contact>,
    /// Peers connected now, by PeerId: a request claiming a contact's name must not change
    /// that contact's marks.
    pub online: HashSet<PeerIdBytes>,
    /// How each connected peer is reached: direct, punched or relayed.
    pub paths: HashMap<PeerIdBytes, Path>,
    /// The open conversation.
    pub open: Option<ConversationId>,
    /// Its latest messages, oldest first.
    pub messages: Vec<LogEntry>,
    /// Lines scrolled up from the bottom.
    pub scroll: usize,
    /// The input line.
    pub input: Input,
    /// The last notice.
    pub notice: Option<(Level, String)>,
    /// Extra lines shown in place of the conversation (help, the online list, a safety number).
    pub panel: Option<(String, Vec<String>)>,
    /// The safety numbers the panel shows now, if it shows them: trusting a new key, or
    /// marking a contact verified, is possible only while they are on screen.
    pub shown: Option<Shown>,
    /// A command waiting to be confirmed by repeating it.
    pub confirm: Option<Confirm>,
    /// Whether the store can write: while it cannot, the status line says so.
    pub storage: tincan_store::Health,
    /// The most the conversation can scroll up, as last drawn: `ui::draw` sets it, so that
    /// scrolling stops at the first line.
    pub max_scroll: Cell<usize>,
    /// Rows of the conversation on screen: a page, for PageUp and PageDown.
    pub page: usize,
    /// When the notice was shown: it goes after a while.
    noted: Option<Instant>,
    /// Ring the terminal bell when a message arrives in another conversation.
    pub bell: bool,
    /// A bell to ring: the loop rings it, once.
    pub ring: bool,
    /// Desktop notifications to show (the loop hands them to `notify-send` if configured).
    pub desktop: Vec<String>,
    /// Whether the mouse is captured (wheel scrolls; the terminal's selection needs Shift).
    pub mouse: bool,
    /// Show times in the local time zone (UTC when false: for tests).
    pub local_time: bool,
}

impl App {
    /// An empty screen for `me`.
    pub fn new(me: Username, profile: String, phonebook: String) -> App {
        App {
            me,
            profile,
            phonebook,
            contacts: Vec::new(),
            online: HashSet::new(),
            paths: HashMap::new(),
            open: None,
            messages: Vec::new(),
            scroll: 0,
            input: Input::default(),
            notice: Some((Level::Info, "Type a username and Enter to chat, or /help.".into())),
            panel: None,
            shown: None,
            confirm: None,
            storage: tincan_store::Health::Ok,
            max_scroll: Cell::new(0),
            page: 10,
            noted: None,
            bell: true,
            ring: false,
            desktop: Vec::new(),
            mouse: false,
            local_time: true,
        }
    }

    /// Replaces the contact list.
    pub fn set_contacts(&mut self, mut contacts: Vec<Contact>) {
        contacts.sort_by(|a, b| {
            (a.kind == ContactKind::Request, &a.username)
                .cmp(&(b.kind == ContactKind::Request, &b.username))
        });
        self.contacts = contacts;
    }

    /// The open conversation's contact.
    pub fn current(&self) -> Option<&Contact> {
        let open = self.open?;
        self.contacts.iter().find(|c| c.conversation == open)
    }

    /// Opens a conversation showing `messages`.
    pub fn show(&mut self, conversation: ConversationId, mut messages: Vec<LogEntry>) {
        if messages.len() > SHOWN {
            messages.drain(..messages.len() - SHOWN);
        }
        self.open = Some(conversation);
        self.messages = messages;
        self.scroll = 0;
        self.close_panel();
        if let Some(c) = self.contacts.iter_mut().find(|c| c.conversation == conversation) {
            c.unread = 0;
        }
        self.notice = self.current().map(|c| match () {
            _ if c.pending_peer_id.is_some() => (
                Level::Warning,
                format!(
                    "{}'s KEY CHANGED. /verify shows the new safety number; then /trust or /reject.",
                    c.username
                ),
            ),
            _ if c.kind == ContactKind::Request => (
                Level::Warning,
                format!(
                    "Message request from someone claiming to be {} ({}): /accept or /block.",
                    c.username,
                    c.claim.describe()
                ),
            ),
            _ => (
                Level::Info,
                format!("Chatting with {}. {DISCONNECT} ends the conversation.", c.username),
            ),
        });
    }

    /// Closes the conversation, back to choosing someone.
    pub fn leave(&mut self) {
        if let Some(c) = self.current() {
            self.notice = Some((
                Level::Info,
                format!(
                    "Conversation with {} ended. Type a username to chat, or /quit.",
                    c.username
                ),
            ));
        }
        self.open = None;
        self.messages.clear();
        self.scroll = 0;
    }

    /// Shows a notice. It may quote a phonebook or a peer, so it is cleaned.
    pub fn note(&mut self, level: Level, text: impl Into<String>) {
        self.notice = Some((level, crate::format::clean_line(&text.into())));
        self.noted = Some(Instant::now());
    }

    /// Time passes: a notice goes after 15 s (a warning after a minute), and the status line
    /// shows who and where again.
    pub fn tick(&mut self, now: Instant) {
        let Some((level, _)) = &self.notice else { return };
        let keep = match level {
            Level::Info => Duration::from_secs(15),
            Level::Warning => Duration::from_secs(60),
        };
        if self.noted.is_some_and(|t| now.saturating_duration_since(t) >= keep) {
            self.notice = None;
            self.noted = None;
        }
    }

    /// The terminal's title: who, and how many messages wait unread.
    pub fn title(&self) -> String {
        let unread: u64 = self.contacts.iter().map(|c| c.unread).sum();
        if unread > 0 {
            format!("tincan · {} ({unread})", self.me)
        } else {
            format!("tincan · {}", self.me)
        }
    }

    /// The mouse wheel scrolls the conversation, when the mouse is captured.
    pub fn on_mouse(&mut self, event: MouseEvent) {
        match event.kind {
            MouseEventKind::ScrollUp => self.scroll_by(3),
            MouseEventKind::ScrollDown => self.scroll = self.scroll.saturating_sub(3),
            _ => {}
        }
    }

    /// A paste: text into the input, never a key (`Input::paste`).
    pub fn on_paste(&mut self, text: &str) {
        self.input.paste(text);
    }

    fn scroll_by(&mut self, rows: usize) {
        self.scroll = self.scroll.saturating_add(rows).min(self.max_scroll.get());
    }

    /// Shows a panel in place of the conversation.
    pub fn show_panel(&mut self, title: impl Into<String>, lines: Vec<String>) {
        self.close_panel();
        self.panel = Some((title.into(), lines));
    }

    /// Shows safety numbers: `shown` says which keys' they are.
    pub fn show_numbers(&mut self, title: String, lines: Vec<String>, shown: Shown) {
        self.show_panel(title, lines);
        self.shown = Some(shown);
    }

    /// Closes the panel, and whatever it was showing.
    pub fn close_panel(&mut self) {
        self.panel = None;
        self.shown = None;
    }

    /// What a node event changes. May ask for an action.
    pub fn on_event(&mut self, event: &Event) -> Option<Action> {
        match event {
            Event::Received { conversation, entry, .. } => {
                if self.open == Some(*conversation) {
                    self.messages.push(entry.clone());
                    if self.messages.len() > SHOWN {
                        self.messages.remove(0);
                    }
                    return Some(Action::MarkRead(*conversation));
                }
                match self.contacts.iter_mut().find(|c| c.conversation == *conversation) {
                    Some(c) => {
                        c.unread += 1;
                        let name = c.username.clone();
                        // Another conversation: the status line says so, the bell rings.
                        self.note(
                            Level::Info,
                            format!(
                                "New message from {name} (Tab to switch, or type /chat {name})."
                            ),
                        );
                        self.ring = self.bell;
                        self.desktop.push(format!("New message from {name}"));
                        None
                    }
                    None => Some(Action::ReloadContacts),
                }
            }
            Event::Status { conversation, id, status } => {
                if self.open == Some(*conversation)
                    && let Some(m) = self.messages.iter_mut().rev().find(|m| m.id == *id)
                {
                    m.status = status.clone();
                }
                None
            }
            Event::Online { peer_id, .. } => {
                self.online.insert(peer_bytes(peer_id));
                None
            }
            Event::Offline { peer_id, .. } => {
                let peer = peer_bytes(peer_id);
                self.online.remove(&peer);
                self.paths.remove(&peer);
                None
            }
            Event::Path { peer_id, path, .. } => {
                let peer = peer_bytes(peer_id);
                match path {
                    // A path exists only while connected.
                    Some(path) => {
                        self.online.insert(peer.clone());
                        self.paths.insert(peer, *path)
                    }
                    None => self.paths.remove(&peer),
                };
                None
            }
            Event::KeyChanged { username, .. } => {
                self.note(Level::Warning, format!("{username}'s KEY CHANGED. Nothing is sent to them until you /verify the new key, then /trust or /reject it."));
                Some(Action::ReloadContacts)
            }
            Event::Request { claimed, claim, .. } => {
                // The first report is "unchecked"; the check's answer follows.
                if *claim == Claim::Unchecked {
                    self.note(
                        Level::Warning,
                        format!("Message request from someone claiming to be {claimed}."),
                    );
                } else {
                    self.note(
                        Level::Warning,
                        format!("Message request from {claimed}: {}.", claim.describe()),
                    );
                }
                Some(Action::ReloadContacts)
            }
            Event::Notice { username, notice: tincan_wire::Notice::Ended, .. } => {
                self.note(Level::Info, format!("{username} ended the conversation."));
                None
            }
            Event::Sealing { username, change, .. } => {
                let level = match change {
                    SealingChange::KeysRefused => Level::Warning,
                    _ => Level::Info,
                };
                self.note(level, format!("{username} {}.", change.describe()));
                None
            }
            Event::Storage(health) => {
                self.storage = *health;
                if *health == tincan_store::Health::Ok {
                    self.note(Level::Info, "Disk space is back: messages flow again.");
                }
                None
            }
            Event::Duplicate { addrs, .. } => {
                let addrs: Vec<String> = addrs.iter().map(ToString::to_string).collect();
                self.note(
                    Level::Warning,
                    format!(
                        "Another tincan with this identity runs elsewhere ({}): a copied profile? One of the two receives nothing.",
                        addrs.join(", ")
                    ),
                );
                None
            }
            Event::PhonebookError { error, .. } => {
                self.note(Level::Warning, format!("Phonebook: {error}"));
                None
            }
            _ => None,
        }
    }

    /// What a key does.
    pub fn on_key(&mut self, key: KeyEvent) -> Option<Action> {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let alt = key.modifiers.contains(KeyModifiers::ALT);
        let empty = self.input.text().is_empty();
        let page = self.page.saturating_sub(1).max(1);
        match key.code {
            KeyCode::Char('c') if ctrl => return Some(Action::Quit),
            // Ctrl-D leaves only from an empty input: with a draft, it deletes under the cursor
            // as in a shell, and the draft stays.
            KeyCode::Char('d') if ctrl && empty => return Some(Action::Quit),
            KeyCode::Char('d') if ctrl => self.input.delete(),
            KeyCode::Char('u') if ctrl => self.input.clear(),
            KeyCode::Char('a') if ctrl => self.input.home(),
            KeyCode::Char('e') if ctrl => self.input.end(),
            // Alt-Enter and Ctrl-J (a line feed) add a line to the message.
            KeyCode::Char('j') if ctrl => self.input.insert('\n'),
            KeyCode::Enter if alt => self.input.insert('\n'),
            KeyCode::Char(c) if !ctrl => self.input.insert(c),
            KeyCode::Backspace => self.input.backspace(),
            KeyCode::Delete => self.input.delete(),
            KeyCode::Left => self.input.left(),
            KeyCode::Right => self.input.right(),
            // With nothing typed, Home and End go to the first and the newest line.
            KeyCode::Home if ctrl || empty => self.scroll = self.max_scroll.get(),
            KeyCode::End if ctrl || empty => self.scroll = 0,
            KeyCode::Home => self.input.home(),
            KeyCode::End => self.input.end(),
            KeyCode::Up => self.input.up(),
            KeyCode::Down => self.input.down(),
            KeyCode::PageUp => self.scroll_by(page),
            KeyCode::PageDown => self.scroll = self.scroll.saturating_sub(page),
            KeyCode::Tab => return self.cycle(1),
            KeyCode::BackTab => return self.cycle(-1),
            // Esc closes what is open over the conversation; the draft stays (Ctrl-U clears it).
            KeyCode::Esc => {
                self.close_panel();
                self.confirm = None;
            }
            KeyCode::Enter => return self.submit(),
            _ => {}
        }
        None
    }

    fn cycle(&mut self, step: isize) -> Option<Action> {
        if self.contacts.is_empty() {
            return None;
        }
        let n = self.contacts.len() as isize;
        let at = self
            .open
            .and_then(|open| self.contacts.iter().position(|c| c.conversation == open))
            .map_or(if step > 0 { 0 } else { n - 1 }, |i| (i as isize + step).rem_euclid(n));
        Some(Action::OpenConversation(self.contacts[at as usize].conversation))
    }

    fn submit(&mut self) -> Option<Action> {
        let line = self.input.take();
        let line = line.trim();
        if line.is_empty() {
            return None;
        }
        // A confirmation is the same command, right away: anything else cancels it.
        let confirm = self.confirm.take();
        // A text of several lines (typed with Alt-Enter, or pasted) is a message, never a
        // command.
        let multiline = line.contains('\n');
        if !multiline && let Some(command) = line.strip_prefix('/') {
            return self.command(command, confirm);
        }
        self.close_panel();
        if line == DISCONNECT {
            let Some(conv) = self.open else {
                self.note(Level::Info, "No conversation to end. /quit leaves tincan.");
                return None;
            };
            self.leave();
            return Some(Action::End(conv));
        }
        let Some(contact) = self.current().cloned() else {
            // As in the original: with no conversation open, typing a name opens one.
            return match Username::new(line) {
                Ok(user) if user.as_str() != line => {
                    self.note(Level::Info, format!("Usernames are lowercase: opening {user}."));
                    Some(Action::Open(user))
                }
                Ok(user) => Some(Action::Open(user)),
                Err(e) => {
                    self.note(
                        Level::Warning,
                        format!("Type a username to chat with ({}), or /help.", e.reason()),
                    );
                    None
                }
            };
        };
        if contact.pending_peer_id.is_some() {
            self.note(
                Level::Warning,
                format!(
                    "Not sent: {}'s key changed. /verify, then /trust or /reject.",
                    contact.username
                ),
            );
            return None;
        }
        if contact.kind == ContactKind::Request {
            self.note(
                Level::Warning,
                format!("Not sent: /accept {} first (or /block).", contact.username),
            );
            return None;
        }
        Some(Action::Send(contact.conversation, contact.username, line.to_owned()))
    }

    fn command(&mut self, command: &str, confirm: Option<Confirm>) -> Option<Action> {
        let mut words = command.split_whitespace();
        let verb = words.next().unwrap_or_default();
        let arg = words.next();
        let user = |app: &mut App, arg: Option<&str>| -> Option<Username> {
            match arg.map(Username::new).or_else(|| app.current().map(|c| Ok(c.username.clone()))) {
                Some(Ok(u)) => Some(u),
                Some(Err(e)) => {
                    app.note(Level::Warning, format!("Not a username: {}", e.reason()));
                    None
                }
                None => {
                    app.note(
                        Level::Warning,
                        format!("/{verb} whom? Open a conversation or name someone."),
                    );
                    None
                }
            }
        };
        // Commands that act on what a panel shows keep it; any other closes it.
        if !matches!(verb, "trust" | "reject" | "verified") {
            self.close_panel();
        }
        match verb {
            "chat" | "c" => match arg.map(Username::new) {
                Some(Ok(u)) => Some(Action::Open(u)),
                _ => {
                    self.note(Level::Warning, "Usage: /chat USERNAME");
                    None
                }
            },
            "leave" => {
                self.leave();
                None
            }
            "verify" => user(self, arg).map(Action::Verify),
            "trust" => {
                let user = user(self, arg)?;
                self.trust(user)
            }
            "reject" => {
                let user = user(self, arg)?;
                self.close_panel();
                Some(Action::Reject(user))
            }
            "verified" => self.mark_verified(),
            "accept" => {
                let Some(c) = self.current().cloned() else {
                    self.note(Level::Warning, "Open the message request first, then /accept.");
                    return None;
                };
                if crate::format::impostor(&c)
                    && confirm != Some(Confirm::AcceptImpostor(c.conversation))
                {
                    self.confirm = Some(Confirm::AcceptImpostor(c.conversation));
                    self.note(
                        Level::Warning,
                        format!(
                            "The phonebook gives the name {} to someone else: this is not that {}. /accept again to accept anyway, /block to refuse.",
                            c.username, c.username
                        ),
                    );
                    return None;
                }
                Some(Action::Accept(c.conversation))
            }
            "block" | "unblock" => self
                .current()
                .map(|c| Action::Block(c.conversation, verb == "block"))
                .or_else(|| {
                    self.note(
                        Level::Warning,
                        format!("Open the conversation first, then /{verb}."),
                    );
                    None
                }),
            "delete" => {
                let Some(c) = self.current().cloned() else {
                    self.note(Level::Warning, "Open the conversation first, then /delete.");
                    return None;
                };
                if confirm == Some(Confirm::Delete(c.conversation)) {
                    return Some(Action::Delete(c.conversation));
                }
                self.confirm = Some(Confirm::Delete(c.conversation));
                let kept = if c.blocked { " It stays blocked." } else { "" };
                self.note(
                    Level::Warning,
                    format!(
                        "Delete the conversation with {} ({} messages)? This cannot be undone. /delete again to confirm; anything else cancels.{kept}",
                        c.username, c.log_len
                    ),
                );
                None
            }
            "online" | "who" => Some(Action::Online),
            "search" | "find" => {
                let Some(conv) = self.open else {
                    self.note(Level::Warning, "Open a conversation first, then /search TEXT.");
                    return None;
                };
                let text = command[verb.len()..].trim();
                if text.is_empty() {
                    self.note(Level::Warning, "Usage: /search TEXT");
                    return None;
                }
                Some(Action::Search(conv, text.to_owned()))
            }
            "retry" => self.open.map(Action::Retry).or_else(|| {
                self.note(Level::Warning, "Open the conversation first, then /retry.");
                None
            }),
            "mouse" => {
                self.mouse = !self.mouse;
                self.note(
                    Level::Info,
                    if self.mouse {
                        "The mouse wheel scrolls; hold Shift to select text. /mouse gives it back."
                    } else {
                        "The mouse is the terminal's again: select text as usual. /mouse to scroll with the wheel."
                    },
                );
                Some(Action::Mouse(self.mouse))
            }
            "quit" | "q" | "exit" => Some(Action::Quit),
            "help" | "h" | "?" => {
                self.show_panel("Help", help());
                None
            }
            other => {
                self.note(Level::Warning, format!("Unknown command /{other}. /help lists them."));
                None
            }
        }
    }

    /// `/trust`: only while the panel shows the NEW key's safety number, and only that key.
    /// Otherwise the panel is shown first: nobody reaches a trust having seen only the old
    /// number.
    fn trust(&mut self, user: Username) -> Option<Action> {
        let Some(contact) = self
            .contacts
            .iter()
            .find(|c| c.username == user && c.kind == ContactKind::Contact)
            .cloned()
        else {
            self.note(Level::Warning, format!("{user} is not a contact."));
            return None;
        };
        let Some(pending) = contact.pending_peer_id.clone() else {
            self.note(Level::Warning, format!("{user}'s key has not changed: nothing to trust."));
            return None;
        };
        let seen = self.shown.as_ref().is_some_and(|s| {
            s.conversation == contact.conversation && s.pending.as_ref() == Some(&pending)
        });
        if !seen {
            self.note(
                Level::Warning,
                format!("Compare {user}'s NEW safety number first (shown now); then /trust again, or /reject."),
            );
            return Some(Action::Verify(user));
        }
        self.close_panel();
        Some(Action::Trust(user, pending))
    }

    /// `/verified`: marks the contact whose number the panel shows as verified.
    fn mark_verified(&mut self) -> Option<Action> {
        let Some(shown) = self.shown.clone() else {
            self.note(Level::Warning, "/verify first: compare the safety number, then /verified.");
            return None;
        };
        if shown.pending.is_some() {
            self.note(Level::Warning, "The key changed: /trust the new key first (or /reject it).");
            return None;
        }
        let current = self.contacts.iter().find(|c| c.conversation == shown.conversation);
        if current.is_none_or(|c| c.peer_id != shown.pinned) {
            self.note(Level::Warning, "The key changed since: /verify again.");
            return None;
        }
        self.close_panel();
        Some(Action::MarkVerified(shown.conversation))
    }
}

/// The binary form of a PeerId, as contacts keep it.
pub fn peer_bytes(peer: &libp2p_identity::PeerId) -> PeerIdBytes {
    PeerIdBytes::new(&peer.to_bytes()).expect("a PeerId is 3 to 64 bytes")
}

/// The help text.
pub fn help() -> Vec<String> {
    [
        "/chat USER      talk to USER (or just type a username when no conversation is open)",
        "/leave          close this conversation (so does typing --DISCONNECT--)",
        "/verify [USER]  show the safety number to compare with USER (the NEW one if it changed)",
        "/verified       the number matched: mark the contact verified (after /verify)",
        "/trust [USER]   accept USER's changed key, while /verify shows its new number",
        "/reject [USER]  keep USER's old key; the new one is refused",
        "/accept         accept the open message request",
        "/block, /unblock  refuse (or accept again) messages from the open conversation",
        "/delete         delete the open conversation (asks again to confirm)",
        "/search TEXT    find messages of the open conversation holding TEXT",
        "/retry          send again what the recipient refused (after they unblock you)",
        "/mouse          the mouse wheel scrolls (hold Shift to select text); again to undo",
        "/online         who is online at the phonebook",
        "/help           this help        /quit  leave tincan (Ctrl-C too)",
        "",
        "Tab / Shift-Tab  next / previous conversation     PageUp / PageDown  scroll a page",
        "Home / End       first / newest line (with nothing typed)",
        "Alt-Enter, Ctrl-J  a new line in the message      Enter  send",
        "Up / Down        previous lines you typed         Esc  close this panel (keeps the draft)",
        "",
        "Marks: … queued   ✓ sent   ✓✓ delivered   ✗ failed",
        "Contacts: ● connected directly   ◑ through the relay   ○ not connected   ? request",
        "          ✔ verified   ⚠ key changed   ⊘ blocked   ! the phonebook gives the name to someone else",
    ]
    .into_iter()
    .map(String::from)
    .collect()
}

#[cfg(test)]
mod tests {
    use ratatui::crossterm::event::KeyEvent;
    use tincan_wire::PeerIdBytes;

    use super::*;
    use crate::tui::fixtures::contact;

    fn typed(app: &mut App, text: &str) -> Option<Action> {
        for c in text.chars() {
            app.on_key(KeyEvent::from(KeyCode::Char(c)));
        }
        app.on_key(KeyEvent::from(KeyCode::Enter))
    }

    fn app() -> App {
        let mut app = App::new(Username::new("alice").unwrap(), "p".into(), "pb".into());
        app.set_contacts(vec![
            contact("bob", 1, ContactKind::Contact),
            contact("eve", 2, ContactKind::Request),
        ]);
        app
    }

    #[test]
    fn the_original_flow_type_a_name_chat_then_disconnect() {
        let mut app = app();
        assert_eq!(typed(&mut app, "Bob"), Some(Action::Open(Username::new("bob").unwrap())));
        app.show(ConversationId([1; 16]), Vec::new());
        let sent = typed(&mut app, "hello there");
        assert_eq!(
            sent,
            Some(Action::Send(
                ConversationId([1; 16]),
                Username::new("bob").unwrap(),
                "hello there".into()
            ))
        );
        assert_eq!(
            typed(&mut app, "--DISCONNECT--"),
            Some(Action::End(ConversationId([1; 16]))),
            "the other side is told"
        );
        assert_eq!(app.open, None, "back to choosing someone");
        assert!(app.notice.as_ref().unwrap().1.contains("ended"));
        assert_eq!(typed(&mut app, "/quit"), Some(Action::Quit));
        assert_eq!(typed(&mut app, "not a name!"), None);
        assert_eq!(app.notice.as_ref().unwrap().0, Level::Warning);
    }

    #[test]
    fn a_changed_key_or_a_request_blocks_sending() {
        let mut app = app();
        let mut contacts = app.contacts.clone();
        contacts[0].pending_peer_id = Some(PeerIdBytes::new(&[0, 36, 8, 1, 18, 32, 9]).unwrap());
        app.set_contacts(contacts);
        app.show(ConversationId([1; 16]), Vec::new());
        assert_eq!(typed(&mut app, "hi"), None);
        assert!(app.notice.as_ref().unwrap().1.contains("key changed"));
        app.show(ConversationId([2; 16]), Vec::new());
        assert_eq!(typed(&mut app, "hi"), None);
        assert_eq!(typed(&mut app, "/accept"), Some(Action::Accept(ConversationId([2; 16]))));
        assert_eq!(typed(&mut app, "/block"), Some(Action::Block(ConversationId([2; 16]), true)));
    }

    fn shown(conv: u8, pinned: u8, pending: Option<u8>) -> Shown {
        let key = |n: u8| PeerIdBytes::new(&[0, 36, 8, 1, 18, 32, n]).unwrap();
        Shown {
            conversation: ConversationId([conv; 16]),
            pinned: key(pinned),
            pending: pending.map(key),
        }
    }

    /// Issue 10: during a key change, /trust is reachable only from a panel that showed the
    /// NEW key's number, and trusts exactly that key.
    #[test]
    fn issue_10_trust_needs_the_new_number_on_screen() {
        let mut app = app();
        let bob = ConversationId([1; 16]);
        let new = PeerIdBytes::new(&[0, 36, 8, 1, 18, 32, 9]).unwrap();
        let mut contacts = app.contacts.clone();
        contacts[0].pending_peer_id = Some(new.clone());
        app.set_contacts(contacts.clone());
        app.show(bob, Vec::new());
        let name = Username::new("bob").unwrap();
        // Straight to /trust: refused, and the verify panel is asked for instead.
        assert_eq!(typed(&mut app, "/trust"), Some(Action::Verify(name.clone())));
        assert!(app.notice.as_ref().unwrap().1.contains("NEW safety number"));
        // A panel that showed only the old number does not count.
        app.show_numbers("old".into(), vec![], shown(1, 1, None));
        assert_eq!(typed(&mut app, "/trust"), Some(Action::Verify(name.clone())));
        // Another pending key than the one shown does not count either.
        app.show_numbers("other".into(), vec![], shown(1, 1, Some(8)));
        assert_eq!(typed(&mut app, "/trust"), Some(Action::Verify(name.clone())));
        // Closed with Esc: gone.
        app.show_numbers("new".into(), vec![], shown(1, 1, Some(9)));
        app.on_key(KeyEvent::from(KeyCode::Esc));
        assert_eq!(typed(&mut app, "/trust"), Some(Action::Verify(name.clone())));
        // The NEW number on screen: /trust trusts that key.
        app.show_numbers("new".into(), vec![], shown(1, 1, Some(9)));
        assert_eq!(typed(&mut app, "/trust"), Some(Action::Trust(name.clone(), new)));
        assert!(app.panel.is_none());
        // /reject needs no panel: keeping the old key is always safe.
        app.set_contacts(contacts);
        assert_eq!(typed(&mut app, "/reject"), Some(Action::Reject(name)));
    }

    #[test]
    fn marking_verified_needs_the_number_on_screen() {
        let mut app = app();
        app.show(ConversationId([1; 16]), Vec::new());
        assert_eq!(typed(&mut app, "/verified"), None);
        app.show_numbers("bob".into(), vec![], shown(1, 1, None));
        assert_eq!(
            typed(&mut app, "/verified"),
            Some(Action::MarkVerified(ConversationId([1; 16])))
        );
    }

    #[test]
    fn deleting_and_accepting_an_impostor_ask_again() {
        let mut app = app();
        let eve = ConversationId([2; 16]);
        let mut contacts = app.contacts.clone();
        contacts[1].claim = Claim::OtherKey;
        app.set_contacts(contacts);
        app.show(eve, Vec::new());
        assert_eq!(
            typed(&mut app, "/accept"),
            None,
            "the phonebook gives the name to someone else"
        );
        assert!(app.notice.as_ref().unwrap().1.contains("someone else"));
        assert_eq!(typed(&mut app, "/accept"), Some(Action::Accept(eve)));
        assert_eq!(typed(&mut app, "/delete"), None);
        assert!(app.notice.as_ref().unwrap().1.contains("/delete again"));
        assert_eq!(typed(&mut app, "/delete"), Some(Action::Delete(eve)));
        // Anything in between cancels.
        assert_eq!(typed(&mut app, "/delete"), None);
        assert_eq!(typed(&mut app, "/online"), Some(Action::Online));
        assert_eq!(typed(&mut app, "/delete"), None);
    }

    /// Issue 10, item 8: a request claiming "bob" cannot light the real bob's marks.
    #[test]
    fn issue_10_marks_are_keyed_by_peer_not_by_name() {
        let mut app = app();
        let bob = app.contacts[0].peer_id.clone();
        let impostor = libp2p_identity::PeerId::random();
        let name = Username::new("bob").unwrap();
        app.on_event(&Event::Online { username: name.clone(), peer_id: impostor });
        app.on_event(&Event::Path {
            username: name.clone(),
            peer_id: impostor,
            path: Some(Path::Direct),
        });
        assert!(!app.online.contains(&bob) && !app.paths.contains_key(&bob));
        assert!(app.online.contains(&peer_bytes(&impostor)));
        app.on_event(&Event::Offline { username: name, peer_id: impostor });
        assert!(app.online.is_empty() && app.paths.is_empty());
    }

    #[test]
    fn commands_and_keys() {
        let mut app = app();
        assert_eq!(
            typed(&mut app, "/chat carol"),
            Some(Action::Open(Username::new("carol").unwrap()))
        );
        assert_eq!(typed(&mut app, "/online"), Some(Action::Online));
        assert_eq!(
            typed(&mut app, "/verify bob"),
            Some(Action::Verify(Username::new("bob").unwrap()))
        );
        assert_eq!(typed(&mut app, "/verify"), None, "verify whom?");
        assert_eq!(typed(&mut app, "/frobnicate"), None);
        assert_eq!(typed(&mut app, "/help"), None);
        assert!(app.panel.is_some());
        assert_eq!(
            app.on_key(KeyEvent::from(KeyCode::Tab)),
            Some(Action::OpenConversation(ConversationId([1; 16])))
        );
        assert_eq!(
            app.on_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Some(Action::Quit)
        );
    }
}
