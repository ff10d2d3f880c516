//! Where the chat screen's actions go: the node this process runs, or the profile's owner
//! through its API when another tincan owns the profile (a daemon, another chat screen). The
//! screen's state machine (`app.rs`) sees the same types either way.

use anyhow::Context;
use libp2p_identity::PeerId;
use tincan_api::{self as api, Call, Client, Notice, Notification};
use tincan_daemon::names;
use tincan_node::{Event, Path, SealingChange};
use tincan_store::{Contact, ContactKind, ConversationId, Direction, LogEntry, Status};
use tincan_wire::{MessageId, PeerIdBytes, Seq, Text, UnixMillis, Username};
use tokio::sync::{broadcast, mpsc};

use crate::session::Session;

/// The numbers of the verify panel: the pinned key's, and a pending key's.
pub struct Numbers {
    /// The pinned key and its safety number.
    pub pinned: (PeerId, String),
    /// The new key a phonebook shows, and its number.
    pub pending: Option<(PeerId, String)>,
}

/// The screen's way to the profile.
pub enum Link<'a> {
    /// This process runs the node.
    Own(&'a Session),
    /// Another process does; this is its client.
    Remote(&'a Client),
}

/// Node events, from the node or as the owner's notifications.
pub enum Events {
    /// Straight from our node.
    Own(broadcast::Receiver<Event>),
    /// The owner's notifications.
    Remote(mpsc::Receiver<Notice>),
}

/// What [`Events::next`] gives.
pub enum Next {
    /// An event.
    Event(Box<Event>),
    /// Some were missed: read the store again.
    Lagged,
    /// Nothing more will come.
    Closed,
    /// A notification that means nothing to the screen.
    Nothing,
}

impl Events {
    /// The next event.
    pub async fn next(&mut self) -> Next {
        match self {
            Events::Own(rx) => match rx.recv().await {
                Ok(event) => Next::Event(Box::new(event)),
                Err(broadcast::error::RecvError::Lagged(_)) => Next::Lagged,
                Err(broadcast::error::RecvError::Closed) => Next::Closed,
            },
            Events::Remote(rx) => match rx.recv().await {
                Some(Notice::Event(n)) => match event(*n) {
                    Some(Ok(event)) => Next::Event(Box::new(event)),
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "an unreadable notification");
                        Next::Nothing
                    }
                    None => Next::Nothing,
                },
                Some(Notice::Lagged(_)) => Next::Lagged,
                Some(Notice::Closed) | None => Next::Closed,
                Some(_) => Next::Nothing,
            },
        }
    }
}

impl Link<'_> {
    /// Subscribes to what happens.
    pub async fn events(&self) -> anyhow::Result<Events> {
        match self {
            Link::Own(s) => Ok(Events::Own(s.node.subscribe())),
            Link::Remote(c) => {
                let rx = c.notifications().context("notifications taken twice")?;
                let _: api::Empty = c.call_as(Call::Subscribe(api::Empty {})).await?;
                Ok(Events::Remote(rx))
            }
        }
    }

    /// Every contact and request.
    pub async fn contacts(&self) -> anyhow::Result<Vec<Contact>> {
        match self {
            Link::Own(s) => Ok(s.node.store().contacts().await?),
            Link::Remote(c) => {
                let all: Vec<api::Contact> = c.call_as(Call::Contacts(api::Empty {})).await?;
                all.iter().map(contact).collect()
            }
        }
    }

    /// Who is connected now, and how: `(peer, path)`.
    pub async fn connected(
        &self,
        contacts: &[Contact],
    ) -> anyhow::Result<Vec<(PeerIdBytes, Option<Path>)>> {
        match self {
            Link::Own(s) => Ok(contacts
                .iter()
                .filter_map(|c| {
                    let peer = PeerId::from_bytes(c.peer_id.as_bytes()).ok()?;
                    s.node.is_connected(&peer).then(|| (c.peer_id.clone(), s.node.path(&peer)))
                })
                .collect()),
            Link::Remote(cl) => {
                let all: Vec<api::Contact> = cl.call_as(Call::Contacts(api::Empty {})).await?;
                all.iter()
                    .filter(|c| c.online)
                    .map(|c| Ok((peer_bytes(&c.peer_id)?, c.path.as_deref().and_then(path))))
                    .collect()
            }
        }
    }

    /// The latest `limit` entries of a conversation.
    pub async fn history(&self, conv: ConversationId, limit: u32) -> anyhow::Result<Vec<LogEntry>> {
        match self {
            Link::Own(s) => Ok(s.node.store().history(conv, None, limit as usize).await?),
            Link::Remote(c) => {
                let log: api::Log = c
                    .call_as(Call::Log(api::LogParams {
                        who: conv.to_string(),
                        before: None,
                        limit: Some(limit),
                        grep: None,
                    }))
                    .await?;
                log.messages.iter().map(entry).collect()
            }
        }
    }

    /// The entry at `position`.
    pub async fn entry(
        &self,
        conv: ConversationId,
        position: u64,
    ) -> anyhow::Result<Option<LogEntry>> {
        match self {
            Link::Own(s) => Ok(s.node.store().entry(conv, position).await?),
            Link::Remote(c) => {
                let log: api::Log = c
                    .call_as(Call::Log(api::LogParams {
                        who: conv.to_string(),
                        before: Some(position + 1),
                        limit: Some(1),
                        grep: None,
                    }))
                    .await?;
                Ok(log.messages.iter().find(|e| e.position == position).map(entry).transpose()?)
            }
        }
    }

    /// Up to `limit` entries from position `from` on, oldest first.
    pub async fn entries_from(
        &self,
        conv: ConversationId,
        from: u64,
        limit: usize,
    ) -> anyhow::Result<Vec<LogEntry>> {
        match self {
            Link::Own(s) => Ok(s.node.store().history_from(conv, from, limit).await?),
            Link::Remote(c) => {
                // The API pages backwards: from just after the last one wanted, back to `from`.
                let mut out: Vec<api::Entry> = Vec::new();
                let mut before = Some(from.saturating_add(limit as u64));
                loop {
                    let log: api::Log = c
                        .call_as(Call::Log(api::LogParams {
                            who: conv.to_string(),
                            before,
                            limit: Some(500),
                            grep: None,
                        }))
                        .await?;
                    let first = log.messages.first().map(|e| e.position);
                    let mut page: Vec<api::Entry> =
                        log.messages.into_iter().filter(|e| e.position >= from).collect();
                    page.append(&mut out);
                    out = page;
                    match first {
                        Some(p) if p > from && log.more => before = Some(p),
                        _ => break,
                    }
                }
                out.iter().map(entry).collect()
            }
        }
    }

    /// Marks read what arrived up to `through`.
    pub async fn mark_read_through(
        &self,
        conv: ConversationId,
        through: u64,
    ) -> anyhow::Result<()> {
        match self {
            Link::Own(s) => {
                s.node.store().mark_read_through(conv, through).await.map(drop).map_err(Into::into)
            }
            Link::Remote(c) => c
                .call_as::<api::Contact>(Call::MarkRead(api::MarkReadParams {
                    who: conv.to_string(),
                    through: Some(through),
                }))
                .await
                .map(drop)
                .map_err(Into::into),
        }
    }

    /// Entries holding `text`.
    pub async fn search(&self, conv: ConversationId, text: &str) -> anyhow::Result<Vec<LogEntry>> {
        match self {
            Link::Own(s) => Ok(s.node.store().search(conv, text, 200).await?),
            Link::Remote(c) => {
                let log: api::Log = c
                    .call_as(Call::Log(api::LogParams {
                        who: conv.to_string(),
                        before: None,
                        limit: Some(200),
                        grep: Some(text.to_owned()),
                    }))
                    .await?;
                log.messages.iter().map(entry).collect()
            }
        }
    }

    /// Queues one message: its conversation, position and id.
    pub async fn send(
        &self,
        to: &Username,
        text: &str,
    ) -> anyhow::Result<(ConversationId, u64, MessageId)> {
        match self {
            Link::Own(s) => {
                let sent = s.node.send(to, text).await?;
                Ok((sent.conversation, sent.position, sent.id))
            }
            Link::Remote(c) => {
                let sent: api::Sent = c
                    .call_as(Call::Send(api::SendParams {
                        to: to.as_str().to_owned(),
                        text: text.to_owned(),
                        wait: false,
                        timeout_ms: None,
                    }))
                    .await?;
                let last = sent.messages.last().context("the owner queued nothing")?;
                let id = MessageId(bytes16(&last.id).context("the owner sent a bad message id")?);
                Ok((conversation(&sent.conversation)?, last.position, id))
            }
        }
    }

    /// The contact of a username, pinned on first use.
    pub async fn resolve(&self, user: &Username) -> anyhow::Result<Contact> {
        match self {
            Link::Own(s) => Ok(s.node.resolve(user).await?),
            Link::Remote(c) => contact(&c.call_as(Call::Resolve(who(user.as_str()))).await?),
        }
    }

    /// Dials the conversation's peer unless connected.
    pub async fn probe(&self, conv: ConversationId) -> anyhow::Result<()> {
        match self {
            Link::Own(s) => Ok(s.node.probe(conv).await?),
            Link::Remote(c) => empty(c, Call::Probe(who(&conv.to_string()))).await,
        }
    }

    /// Tells the peer the conversation ended.
    pub async fn end(&self, conv: ConversationId) -> anyhow::Result<()> {
        match self {
            Link::Own(s) => Ok(s.node.notify(conv, tincan_wire::Notice::Ended).await?),
            Link::Remote(c) => empty(c, Call::End(who(&conv.to_string()))).await,
        }
    }

    /// Queues again what was refused while we were blocked.
    pub async fn retry(&self, conv: ConversationId) -> anyhow::Result<u64> {
        match self {
            Link::Own(s) => Ok(s.node.retry(conv).await? as u64),
            Link::Remote(c) => {
                let n: api::Count = c.call_as(Call::Retry(who(&conv.to_string()))).await?;
                Ok(n.count)
            }
        }
    }

    /// The safety numbers with `user`.
    pub async fn numbers(&self, user: &Username) -> anyhow::Result<Numbers> {
        match self {
            Link::Own(s) => {
                let n = s.node.safety_numbers(user).await?;
                Ok(Numbers {
                    pinned: (n.pinned.0, n.pinned.1.to_string()),
                    pending: n.pending.map(|(p, number)| (p, number.to_string())),
                })
            }
            Link::Remote(c) => {
                let n: api::SafetyNumbers = c.call_as(Call::Verify(who(user.as_str()))).await?;
                let key = |k: &api::Key| -> anyhow::Result<(PeerId, String)> {
                    Ok((k.peer_id.parse().context("a PeerId")?, k.safety_number.clone()))
                };
                Ok(Numbers {
                    pinned: key(&n.pinned)?,
                    pending: n.pending.as_ref().map(key).transpose()?,
                })
            }
        }
    }

    /// Trusts `key`, the new key whose number was shown.
    pub async fn trust(&self, user: &Username, key: PeerId) -> anyhow::Result<()> {
        match self {
            Link::Own(s) => s.node.trust(user, key).await.map(drop).map_err(Into::into),
            Link::Remote(c) => {
                let call = Call::Trust(api::TrustParams {
                    who: user.as_str().to_owned(),
                    key: key.to_base58(),
                });
                c.call_as::<api::Contact>(call).await.map(drop).map_err(Into::into)
            }
        }
    }

    /// Keeps the old key.
    pub async fn reject(&self, user: &Username) -> anyhow::Result<()> {
        match self {
            Link::Own(s) => s.node.reject(user).await.map(drop).map_err(Into::into),
            Link::Remote(c) => c
                .call_as::<api::Contact>(Call::Reject(who(user.as_str())))
                .await
                .map(drop)
                .map_err(Into::into),
        }
    }

    /// Marks the contact verified.
    pub async fn mark_verified(&self, conv: ConversationId) -> anyhow::Result<Contact> {
        match self {
            Link::Own(s) => Ok(s.node.store().set_verified(conv, true).await?),
            Link::Remote(c) => contact(
                &c.call_as(Call::MarkVerified(api::MarkVerifiedParams {
                    who: conv.to_string(),
                    verified: true,
                }))
                .await?,
            ),
        }
    }

    /// Deletes the conversation: whether the contact stays (blocked).
    pub async fn delete(&self, conv: ConversationId) -> anyhow::Result<bool> {
        match self {
            Link::Own(s) => Ok(s.node.delete(conv).await? == tincan_store::Deleted::KeptBlocked),
            Link::Remote(c) => {
                let d: api::Deleted = c.call_as(Call::Delete(who(&conv.to_string()))).await?;
                Ok(d.kept_blocked)
            }
        }
    }

    /// Accepts a request.
    pub async fn accept(&self, conv: ConversationId) -> anyhow::Result<Contact> {
        match self {
            Link::Own(s) => Ok(s.node.accept(conv).await?),
            Link::Remote(c) => contact(
                &c.call_as(Call::Accept(api::AcceptParams { who: conv.to_string(), anyway: true }))
                    .await?,
            ),
        }
    }

    /// Blocks or unblocks.
    pub async fn block(&self, conv: ConversationId, blocked: bool) -> anyhow::Result<Contact> {
        match self {
            Link::Own(s) => Ok(s.node.set_blocked(conv, blocked).await?),
            Link::Remote(c) => contact(
                &c.call_as(Call::Block(api::BlockParams { who: conv.to_string(), blocked }))
                    .await?,
            ),
        }
    }

    /// Who the phonebook lists as online.
    pub async fn online(&self) -> anyhow::Result<Vec<Username>> {
        match self {
            Link::Own(s) => Ok(s.node.online(100).await?.into_iter().map(|f| f.username).collect()),
            Link::Remote(c) => {
                let all: Vec<api::OnlineUser> =
                    c.call_as(Call::Online(api::OnlineParams { limit: Some(100) })).await?;
                all.iter().map(|u| username(&u.username)).collect()
            }
        }
    }

    /// Marks the conversation read.
    pub async fn mark_read(&self, conv: ConversationId) -> anyhow::Result<()> {
        match self {
            Link::Own(s) => s.node.store().mark_read(conv).await.map(drop).map_err(Into::into),
            Link::Remote(c) => c
                .call_as::<api::Contact>(Call::MarkRead(api::MarkReadParams {
                    who: conv.to_string(),
                    through: None,
                }))
                .await
                .map(drop)
                .map_err(Into::into),
        }
    }
}

async fn empty(c: &Client, call: Call) -> anyhow::Result<()> {
    let _: api::Empty = c.call_as(call).await?;
    Ok(())
}

fn who(text: &str) -> api::Who {
    api::Who { who: text.to_owned() }
}

fn username(text: &str) -> anyhow::Result<Username> {
    Username::new(text)
        .map_err(|e| anyhow::anyhow!("the owner sent a bad username: {}", e.reason()))
}

fn conversation(hex: &str) -> anyhow::Result<ConversationId> {
    Ok(ConversationId(bytes16(hex).context("the owner sent a bad conversation id")?))
}

fn bytes16(hex: &str) -> Option<[u8; 16]> {
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn peer(text: &str) -> anyhow::Result<PeerId> {
    text.parse().map_err(|_| anyhow::anyhow!("the owner sent a bad PeerId"))
}

fn peer_bytes(text: &str) -> anyhow::Result<PeerIdBytes> {
    PeerIdBytes::new(&peer(text)?.to_bytes()).map_err(|_| anyhow::anyhow!("a PeerId too long"))
}

fn path(name: &str) -> Option<Path> {
    match name {
        "direct" => Some(Path::Direct),
        "relayed" => Some(Path::Relayed),
        "punched" => Some(Path::Punched),
        _ => None,
    }
}

/// The owner's contact as the screen's state holds it. What the API does not carry (key
/// change history, counters of the delivery engine) the screen does not use.
fn contact(c: &api::Contact) -> anyhow::Result<Contact> {
    Ok(Contact {
        conversation: conversation(&c.conversation)?,
        kind: if c.kind == "request" { ContactKind::Request } else { ContactKind::Contact },
        username: username(&c.username)?,
        peer_id: peer_bytes(&c.peer_id)?,
        first_seen: UnixMillis(0),
        verified: c.verified,
        blocked: c.blocked,
        pending_peer_id: c.pending_key.as_deref().map(peer_bytes).transpose()?,
        key_changes: Vec::new(),
        last_sent_seq: 0,
        next_expected_seq: 0,
        log_len: c.messages,
        unread: c.unread,
        addrs: Vec::new(),
        claim: names::claim_of(&c.claim),
        rejected_keys: c
            .rejected_keys
            .iter()
            .map(|k| peer_bytes(k))
            .collect::<anyhow::Result<_>>()?,
        request_bytes: 0,
        olm_keys: None,
        awaiting_peer_keys: false,
    })
}

/// The owner's entry as the store holds it.
fn entry(e: &api::Entry) -> anyhow::Result<LogEntry> {
    let status = names::status_of(&e.status, e.refusal.as_ref()).unwrap_or(Status::Received);
    let incoming = e.direction == "incoming";
    Ok(LogEntry {
        position: e.position,
        direction: if incoming { Direction::Incoming } else { Direction::Outgoing },
        id: MessageId(bytes16(&e.id).context("the owner sent a bad message id")?),
        seq: Seq::new(e.seq).context("the owner sent a bad sequence number")?,
        sent_at: UnixMillis(e.claimed_time),
        stored_at: UnixMillis(e.time),
        status,
        text: Text::new(&e.text).map_err(|e| anyhow::anyhow!("the owner sent bad text: {e}"))?,
        claimed_from: None,
        missing_before: e.missing_before,
        late: e.late,
    })
}

/// A notification as the node's event; `None` for those the screen has no use for.
fn event(n: Notification) -> Option<anyhow::Result<Event>> {
    let converted = (|| -> anyhow::Result<Option<Event>> {
        Ok(Some(match n {
            Notification::Message { contact, conversation: conv, request, entry: e } => {
                Event::Received {
                    conversation: conversation(&conv)?,
                    username: username(&contact)?,
                    entry: entry(&e)?,
                    request,
                }
            }
            Notification::Status { conversation: conv, id, status, refusal } => Event::Status {
                conversation: conversation(&conv)?,
                id: MessageId(bytes16(&id).context("a message id")?),
                status: match names::status_of(&status, refusal.as_ref()) {
                    Some(status) => status,
                    None => return Ok(None),
                },
            },
            Notification::Presence { contact, peer_id, online, path: p } => {
                let (username, peer_id) = (username(&contact)?, peer(&peer_id)?);
                match (online, p.as_deref().and_then(path)) {
                    (true, Some(p)) => Event::Path { username, peer_id, path: Some(p) },
                    (true, None) => Event::Online { username, peer_id },
                    (false, _) => Event::Offline { username, peer_id },
                }
            }
            Notification::KeyChanged { contact, conversation: conv, old, new } => {
                Event::KeyChanged {
                    conversation: conversation(&conv)?,
                    username: username(&contact)?,
                    old: peer(&old)?,
                    new: peer(&new)?,
                }
            }
            Notification::Request { conversation: conv, peer_id, claimed, claim: c } => {
                Event::Request {
                    conversation: conversation(&conv)?,
                    peer_id: peer(&peer_id)?,
                    claimed: username(&claimed)?,
                    claim: names::claim_of(&c),
                }
            }
            Notification::Sealing { contact, conversation: conv, change, messages } => {
                let change = match change.as_str() {
                    "new-session" => SealingChange::NewSession,
                    "resealed" => SealingChange::Resealed {
                        messages: usize::try_from(messages.unwrap_or(0)).unwrap_or(usize::MAX),
                    },
                    "keys-refused" => SealingChange::KeysRefused,
                    _ => return Ok(None),
                };
                Event::Sealing {
                    conversation: conversation(&conv)?,
                    username: username(&contact)?,
                    change,
                }
            }
            Notification::Ended { contact, conversation: conv } => Event::Notice {
                conversation: conversation(&conv)?,
                username: username(&contact)?,
                notice: tincan_wire::Notice::Ended,
            },
            Notification::Phonebook { phonebook, ok: false, error } => {
                Event::PhonebookError { phonebook, error: error.unwrap_or_default() }
            }
            Notification::Duplicate { phonebook, addrs } => Event::Duplicate {
                phonebook,
                addrs: addrs.iter().filter_map(|a| a.parse().ok()).collect(),
            },
            Notification::Storage { health } => Event::Storage(match health.as_str() {
                "ok" => tincan_store::Health::Ok,
                "disk-full" => tincan_store::Health::DiskFull,
                _ => tincan_store::Health::Failing,
            }),
            _ => return Ok(None),
        }))
    })();
    converted.transpose()
}
