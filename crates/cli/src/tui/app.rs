//! The chat screen's state, and what keys and events do to it. No I/O here: keys and events
//! come in, [`Action`]s go out, and the loop in `mod.rs` carries them out.

use std::collections::{HashMap, HashSet};

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use tincan_node::{Event, Path};
use tincan_store::{Contact, ContactKind, ConversationId, LogEntry};
use tincan_wire::Username;

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
    /// Show the safety number.
    Verify(Username),
    /// Trust a changed key.
    Trust(Username),
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
    /// Contacts connected now.
    pub online: HashSet<Username>,
    /// How each connected contact is reached: direct, punched or relayed.
    pub paths: HashMap<Username, Path>,
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
        self.panel = None;
        if let Some(c) = self.contacts.iter_mut().find(|c| c.conversation == conversation) {
            c.unread = 0;
        }
        self.notice = self.current().map(|c| match () {
            _ if c.pending_peer_id.is_some() => (
                Level::Warning,
                format!("{}'s KEY CHANGED. /verify, then /trust to send again.", c.username),
            ),
            _ if c.kind == ContactKind::Request => (
                Level::Warning,
                format!(
                    "Message request from someone claiming to be {}: /accept or /block.",
                    c.username
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

    /// Shows a notice.
    pub fn note(&mut self, level: Level, text: impl Into<String>) {
        self.notice = Some((level, text.into()));
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
            Event::Online { username } => {
                self.online.insert(username.clone());
                None
            }
            Event::Offline { username } => {
                self.online.remove(username);
                self.paths.remove(username);
                None
            }
            Event::Path { username, path, .. } => {
                match path {
                    Some(path) => self.paths.insert(username.clone(), *path),
                    None => self.paths.remove(username),
                };
                None
            }
            Event::KeyChanged { username, .. } => {
                self.note(Level::Warning, format!("{username}'s KEY CHANGED. Nothing is sent to them until you /verify and /trust."));
                Some(Action::ReloadContacts)
            }
            Event::Request { claimed, confirmed, .. } => {
                let how = match confirmed {
                    Some(true) => "the phonebook confirms the name",
                    Some(false) => "UNVERIFIED: the phonebook gives this name to someone else",
                    None => "unverified",
                };
                self.note(Level::Warning, format!("Message request from {claimed} ({how})."));
                Some(Action::ReloadContacts)
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
        match key.code {
            KeyCode::Char('c' | 'd') if ctrl => return Some(Action::Quit),
            KeyCode::Char('u') if ctrl => self.input.clear(),
            KeyCode::Char('a') if ctrl => self.input.home(),
            KeyCode::Char('e') if ctrl => self.input.end(),
            KeyCode::Char(c) if !ctrl => self.input.insert(c),
            KeyCode::Backspace => self.input.backspace(),
            KeyCode::Delete => self.input.delete(),
            KeyCode::Left => self.input.left(),
            KeyCode::Right => self.input.right(),
            KeyCode::Home => self.input.home(),
            KeyCode::End => self.input.end(),
            KeyCode::Up => self.input.up(),
            KeyCode::Down => self.input.down(),
            KeyCode::PageUp => self.scroll = self.scroll.saturating_add(10),
            KeyCode::PageDown => self.scroll = self.scroll.saturating_sub(10),
            KeyCode::Tab => return self.cycle(1),
            KeyCode::BackTab => return self.cycle(-1),
            KeyCode::Esc => {
                self.panel = None;
                self.input.clear();
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
        self.panel = None;
        if let Some(command) = line.strip_prefix('/') {
            return self.command(command);
        }
        if line == DISCONNECT {
            if self.open.is_none() {
                self.note(Level::Info, "No conversation to end. /quit leaves tincan.");
            }
            self.leave();
            return None;
        }
        let Some(contact) = self.current().cloned() else {
            // As in the original: with no conversation open, typing a name opens one.
            return match Username::new(line) {
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
                format!("Not sent: {}'s key changed. /verify, then /trust.", contact.username),
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

    fn command(&mut self, command: &str) -> Option<Action> {
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
            "trust" => user(self, arg).map(Action::Trust),
            "accept" => self.current().map(|c| Action::Accept(c.conversation)).or_else(|| {
                self.note(Level::Warning, "Open the message request first, then /accept.");
                None
            }),
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
            "online" | "who" => Some(Action::Online),
            "quit" | "q" | "exit" => Some(Action::Quit),
            "help" | "h" | "?" => {
                self.panel = Some(("Help".into(), help()));
                None
            }
            other => {
                self.note(Level::Warning, format!("Unknown command /{other}. /help lists them."));
                None
            }
        }
    }
}

/// The help text.
pub fn help() -> Vec<String> {
    [
        "/chat USER      talk to USER (or just type a username when no conversation is open)",
        "/leave          close this conversation (so does typing --DISCONNECT--)",
        "/verify [USER]  show the safety number to compare with USER",
        "/trust [USER]   accept USER's changed key, after /verify",
        "/accept         accept the open message request",
        "/block, /unblock  refuse (or accept again) messages from the open conversation",
        "/online         who is online at the phonebook",
        "/help           this help        /quit  leave tincan (Ctrl-C too)",
        "",
        "Tab / Shift-Tab  next / previous conversation     PageUp / PageDown  scroll",
        "Up / Down        previous lines you typed         Esc  close this panel",
        "",
        "Marks: … queued   ✓ sent   ✓✓ delivered   ✗ failed",
        "Contacts: ● connected directly   ◑ through the relay   ○ not connected   ? request",
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
        assert_eq!(typed(&mut app, "--DISCONNECT--"), None);
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
        assert_eq!(typed(&mut app, "/trust"), Some(Action::Trust(Username::new("bob").unwrap())));
        app.show(ConversationId([2; 16]), Vec::new());
        assert_eq!(typed(&mut app, "hi"), None);
        assert_eq!(typed(&mut app, "/accept"), Some(Action::Accept(ConversationId([2; 16]))));
        assert_eq!(typed(&mut app, "/block"), Some(Action::Block(ConversationId([2; 16]), true)));
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
