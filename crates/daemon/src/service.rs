//! The API's methods over a profile's store and, when it runs, its node: every [`Call`] in,
//! a JSON result or an [`RpcError`] out. The socket server ([`crate::server`]) and the CLI's
//! in-process backend both call [`Service::handle`], so a command gives the same answer
//! through a running daemon as on its own.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use libp2p_identity::PeerId;
use serde::Serialize;
use serde_json::Value;
use tincan_api as api;
use tincan_api::{Call, RpcError};

use crate::names::{KEY_ID_LEN, base58, claim_name, key_id, nat};
use tincan_identity::PublicKey;
use tincan_node::{
    ContactError, DirectoryError, Event, Node, ResolveError, SealingChange, SendError,
};
use tincan_store::{
    Claim, Contact, ContactKind, Direction, Health, LogEntry, Status, Store, StoreError,
};
use tincan_wire::{PeerIdBytes, UnixMillis, Username};
use tokio::sync::{broadcast, watch};

/// Most entries one `log` call returns.
pub const MAX_LOG_PAGE: u32 = 500;
/// Most unread messages `inbox` returns per conversation.
pub const MAX_INBOX: usize = 1000;

/// Who this service is: the profile and its identity's public half.
#[derive(Clone, Debug)]
pub struct Me {
    /// The profile's name.
    pub profile: String,
    /// Our username.
    pub username: Username,
    /// Our public key (safety numbers are computed over it).
    pub public_key: PublicKey,
}

/// The methods of the API over one profile.
pub struct Service {
    store: Store,
    node: Option<Node>,
    me: Me,
    clients: AtomicU32,
    stop: watch::Sender<bool>,
    stoppable: std::sync::atomic::AtomicBool,
    changes: watch::Sender<u64>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service").field("profile", &self.me.profile).finish_non_exhaustive()
    }
}

impl Service {
    /// A service over `store` and, when the network runs, `node` (whose store it must be).
    /// Without a node, methods that need the network answer [`RpcError::NO_NETWORK`].
    pub fn new(store: Store, node: Option<Node>, me: Me) -> Service {
        Service {
            store,
            node,
            me,
            clients: AtomicU32::new(0),
            stop: watch::channel(false).0,
            stoppable: false.into(),
            changes: watch::channel(0).0,
        }
    }

    /// The node, if the network runs here.
    pub fn node(&self) -> Option<&Node> {
        self.node.as_ref()
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Node events, to turn into notifications with [`Service::notification`].
    pub fn events(&self) -> Option<broadcast::Receiver<Event>> {
        self.node.as_ref().map(Node::subscribe)
    }

    /// Becomes `true` once a client called `stop`.
    pub fn stop_requested(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Counts the calls that changed the profile (a message queued, a contact trusted,
    /// accepted, blocked, read…): a screen over the same profile watches it to redraw.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Lets clients stop the owner with `stop`: for a daemon, not for a screen that its user
    /// quits.
    pub fn allow_stop(&self) {
        self.stoppable.store(true, Ordering::SeqCst);
    }

    /// Asks whoever runs the service to stop it.
    pub fn request_stop(&self) {
        self.stop.send_replace(true);
    }

    /// A client connected (`true`) or left; returns how many are connected now.
    pub fn count_client(&self, joined: bool) -> u32 {
        if joined {
            self.clients.fetch_add(1, Ordering::SeqCst) + 1
        } else {
            self.clients.fetch_sub(1, Ordering::SeqCst).saturating_sub(1)
        }
    }

    /// Clients connected now.
    pub fn clients(&self) -> u32 {
        self.clients.load(Ordering::SeqCst)
    }

    /// Runs one call. `subscribe` is the connection's business (the server's); here it only
    /// answers that notifications need the network.
    pub async fn handle(&self, call: Call) -> Result<Value, RpcError> {
        let changes = match &call {
            Call::Send(_)
            | Call::MarkRead(_)
            | Call::MarkVerified(_)
            | Call::Trust(_)
            | Call::Reject(_)
            | Call::Accept(_)
            | Call::Block(_)
            | Call::Delete(_)
            | Call::Retry(_) => true,
            Call::Inbox(p) => !p.peek,
            _ => false,
        };
        let result = self.run(call).await;
        if changes && result.is_ok() {
            self.changes.send_modify(|n| *n += 1);
        }
        result
    }

    async fn run(&self, call: Call) -> Result<Value, RpcError> {
        match call {
            Call::Status(_) => json(self.status()),
            Call::Send(p) => json(self.send(p).await?),
            Call::Contacts(_) => {
                let mut out = Vec::new();
                for c in self.store.contacts().await.map_err(store_error)? {
                    out.push(self.contact(&c));
                }
                json(out)
            }
            Call::Resolve(p) => {
                let name = Username::new(&p.who).map_err(|e| {
                    RpcError::new(
                        RpcError::INVALID_PARAMS,
                        format!("{:?} is not a username: {e}", p.who),
                    )
                })?;
                let c = self.network()?.resolve(&name).await.map_err(rpc)?;
                json(self.contact(&c))
            }
            Call::Conversations(_) => {
                let mut out = Vec::new();
                for c in self.store.contacts().await.map_err(store_error)? {
                    let last = self.store.history(c.conversation, None, 1).await;
                    let last = last.map_err(store_error)?.first().map(entry);
                    out.push(api::Conversation { contact: self.contact(&c), last });
                }
                json(out)
            }
            Call::Log(p) => json(self.log(p).await?),
            Call::Inbox(p) => json(self.inbox(p.peek).await?),
            Call::MarkRead(p) => {
                let c = self.find(&p.who).await?;
                let c = match p.through {
                    Some(through) => self.store.mark_read_through(c.conversation, through).await,
                    None => self.store.mark_read(c.conversation).await,
                };
                json(self.contact(&c.map_err(store_error)?))
            }
            Call::Verify(p) => {
                let c = self.find(&p.who).await?;
                json(self.numbers(&c)?)
            }
            Call::MarkVerified(p) => {
                let c = self.find(&p.who).await?;
                if p.verified && c.pending_peer_id.is_some() {
                    return Err(RpcError::new(
                        RpcError::KEY_CHANGED,
                        format!(
                            "{}'s key changed: trust the new key first, then verify it",
                            c.username
                        ),
                    ));
                }
                let c = self.store.set_verified(c.conversation, p.verified).await;
                json(self.contact(&c.map_err(store_error)?))
            }
            Call::Trust(p) => {
                let c = self.find(&p.who).await?;
                if c.pending_peer_id.is_none() {
                    return Err(no_key_change(&c));
                }
                let key: PeerId = p
                    .key
                    .parse()
                    .ok()
                    .filter(|k: &PeerId| PeerIdBytes::new(&k.to_bytes()).is_ok())
                    .ok_or_else(|| {
                        RpcError::new(RpcError::INVALID_PARAMS, "key is not a PeerId".to_owned())
                    })?;
                let c = match &self.node {
                    Some(node) => node.trust(&c.username, key).await.map_err(rpc)?,
                    None => self
                        .store
                        .trust_pending(c.conversation, peer_bytes(&key), now())
                        .await
                        .map_err(store_error)?,
                };
                json(self.contact(&c))
            }
            Call::Reject(p) => {
                let c = self.find(&p.who).await?;
                if c.pending_peer_id.is_none() {
                    return Err(no_key_change(&c));
                }
                let c = match &self.node {
                    Some(node) => node.reject(&c.username).await.map_err(rpc)?,
                    None => self
                        .store
                        .reject_pending(c.conversation, now())
                        .await
                        .map_err(store_error)?,
                };
                json(self.contact(&c))
            }
            Call::Accept(p) => {
                let c = self.find(&p.who).await?;
                if c.kind != ContactKind::Request {
                    return Err(RpcError::new(
                        RpcError::INVALID_PARAMS,
                        format!("{} is already a contact", c.username),
                    ));
                }
                if c.claim == Claim::OtherKey && !p.anyway {
                    return Err(RpcError::new(
                        RpcError::IMPOSTOR,
                        format!(
                            "the phonebook gives the name {} to someone else: this request (key {}) is not from them",
                            c.username,
                            key_id(&c.peer_id)
                        ),
                    ));
                }
                let c = match &self.node {
                    Some(node) => node.accept(c.conversation).await.map_err(rpc)?,
                    None => self.store.accept_request(c.conversation).await.map_err(store_error)?,
                };
                json(self.contact(&c))
            }
            Call::Block(p) => {
                let c = self.find(&p.who).await?;
                let c = match &self.node {
                    Some(node) => node.set_blocked(c.conversation, p.blocked).await.map_err(rpc)?,
                    None => self
                        .store
                        .set_blocked(c.conversation, p.blocked)
                        .await
                        .map_err(store_error)?,
                };
                json(self.contact(&c))
            }
            Call::Delete(p) => {
                let c = self.find(&p.who).await?;
                let deleted = match &self.node {
                    Some(node) => node.delete(c.conversation).await.map_err(rpc)?,
                    None => {
                        self.store.delete_conversation(c.conversation).await.map_err(store_error)?
                    }
                };
                json(api::Deleted { kept_blocked: deleted == tincan_store::Deleted::KeptBlocked })
            }
            Call::Retry(p) => {
                let c = self.find(&p.who).await?;
                let n = match &self.node {
                    Some(node) => node.retry(c.conversation).await.map_err(rpc)?,
                    None => {
                        self.store.requeue_refused(c.conversation).await.map_err(store_error)?
                    }
                };
                json(api::Count { count: n as u64 })
            }
            Call::End(p) => {
                let c = self.find(&p.who).await?;
                let node = self.network()?;
                node.notify(c.conversation, tincan_wire::Notice::Ended).await.map_err(rpc)?;
                json(api::Empty {})
            }
            Call::Probe(p) => {
                let c = self.find(&p.who).await?;
                self.network()?.probe(c.conversation).await.map_err(rpc)?;
                json(api::Empty {})
            }
            Call::Online(p) => {
                let limit = p.limit.unwrap_or(100).clamp(1, 100) as usize;
                let found = self.network()?.online(limit).await.map_err(rpc)?;
                let mut out = Vec::with_capacity(found.len());
                for f in found {
                    let contact = self
                        .store
                        .contact_by_peer(&peer_bytes(&f.peer_id))
                        .await
                        .map_err(store_error)?
                        .is_some_and(|c| c.kind == ContactKind::Contact);
                    out.push(api::OnlineUser {
                        username: f.username.as_str().to_owned(),
                        peer_id: f.peer_id.to_base58(),
                        contact,
                    });
                }
                json(out)
            }
            Call::Nat(_) => json(nat(&self.network()?.nat())),
            Call::Export(p) => {
                let conv = match &p.who {
                    Some(who) => Some(self.find(who).await?.conversation),
                    None => None,
                };
                let mut value = self.store.export(conv).await.map_err(store_error)?;
                value["username"] = Value::from(self.me.username.as_str());
                value["peer_id"] = Value::from(self.me.public_key.peer_id().to_base58());
                Ok(value)
            }
            Call::Subscribe(_) => {
                self.network()?;
                json(api::Empty {})
            }
            Call::Stop(_) => {
                if !self.stoppable.load(Ordering::SeqCst) {
                    return Err(RpcError::new(
                        RpcError::NOT_STOPPABLE,
                        "a chat screen owns the profile: quit it there".to_owned(),
                    ));
                }
                self.request_stop();
                json(api::Empty {})
            }
            _ => Err(RpcError::new(RpcError::METHOD_NOT_FOUND, "not served here".to_owned())),
        }
    }

    fn network(&self) -> Result<&Node, RpcError> {
        self.node.as_ref().ok_or_else(|| {
            RpcError::new(
                RpcError::NO_NETWORK,
                "the network does not run in this process (the profile was opened only to read)"
                    .to_owned(),
            )
        })
    }

    fn status(&self) -> api::Status {
        let health = *self.store.health().borrow();
        api::Status {
            api: api::API_VERSION,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            profile: self.me.profile.clone(),
            username: self.me.username.as_str().to_owned(),
            peer_id: self.me.public_key.peer_id().to_base58(),
            listen: self
                .node
                .as_ref()
                .map(|n| n.listen_addrs().iter().map(ToString::to_string).collect())
                .unwrap_or_default(),
            storage: health_name(health).to_owned(),
            clients: self.clients(),
        }
    }

    async fn send(&self, p: api::SendParams) -> Result<api::Sent, RpcError> {
        let node = self.network()?;
        let to = Username::new(&p.to).map_err(|e| {
            RpcError::new(RpcError::INVALID_PARAMS, format!("{:?} is not a username: {e}", p.to))
        })?;
        if p.text.is_empty() {
            return Err(RpcError::new(RpcError::INVALID_TEXT, "the text is empty".to_owned()));
        }
        // Subscribed before queuing: no status change can slip between the two.
        let mut events = node.subscribe();
        let mut messages = Vec::new();
        let mut conversation = None;
        for piece in tincan_wire::split_text(&p.text) {
            let sent = node.send(&to, piece).await.map_err(rpc)?;
            conversation = Some(sent.conversation);
            messages.push(api::Queued {
                id: sent.id.to_string(),
                seq: sent.seq.get(),
                position: sent.position,
            });
        }
        let conversation = conversation.map(|c| c.to_string()).unwrap_or_default();
        let mut out = api::Sent {
            conversation,
            messages,
            delivered: None,
            refusal: None,
            key_changed: false,
        };
        if !p.wait {
            return Ok(out);
        }
        let mut waiting: std::collections::HashSet<String> =
            out.messages.iter().map(|m| m.id.clone()).collect();
        let wait = async {
            loop {
                match events.recv().await {
                    Ok(Event::Status { id, status, .. }) if waiting.contains(&id.to_string()) => {
                        match status {
                            Status::Delivered { .. } => {
                                waiting.remove(&id.to_string());
                                if waiting.is_empty() {
                                    return (true, None, false);
                                }
                            }
                            Status::Failed { code, reason } => {
                                return (false, Some(api::Refusal { code, reason }), false);
                            }
                            _ => {}
                        }
                    }
                    Ok(Event::KeyChanged { username, .. }) if username == to => {
                        return (false, None, true);
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return (false, None, false),
                }
            }
        };
        let (delivered, refusal, key_changed) = match p.timeout_ms {
            Some(ms) => tokio::time::timeout(Duration::from_millis(ms), wait)
                .await
                .unwrap_or((false, None, false)),
            None => wait.await,
        };
        out.delivered = Some(delivered);
        out.refusal = refusal;
        out.key_changed = key_changed;
        Ok(out)
    }

    async fn log(&self, p: api::LogParams) -> Result<api::Log, RpcError> {
        let c = self.find(&p.who).await?;
        let limit = p.limit.unwrap_or(50).clamp(1, MAX_LOG_PAGE) as usize;
        let entries = match &p.grep {
            Some(text) => self.store.search(c.conversation, text, limit).await,
            None => self.store.history(c.conversation, p.before, limit).await,
        }
        .map_err(store_error)?;
        let more = p.grep.is_none() && entries.first().is_some_and(|e| e.position > 0);
        Ok(api::Log {
            contact: self.contact(&c),
            messages: entries.iter().map(entry).collect(),
            more,
        })
    }

    async fn inbox(&self, peek: bool) -> Result<Vec<api::Unread>, RpcError> {
        let mut out = Vec::new();
        for c in self.store.contacts().await.map_err(store_error)? {
            if c.unread == 0 {
                continue;
            }
            let messages = self.oldest_unread(&c).await?;
            // Only what is answered is marked read: up to the last position shown. Beyond
            // [`MAX_INBOX`], the newer ones stay unread for the next call.
            if !peek {
                match messages.last() {
                    Some(last) => self.store.mark_read_through(c.conversation, last.position).await,
                    // A count with no message behind it (the messages were deleted): clear it.
                    None => self.store.mark_read(c.conversation).await,
                }
                .map_err(store_error)?;
            }
            if messages.is_empty() {
                continue;
            }
            out.push(api::Unread { contact: self.contact(&c), messages });
        }
        Ok(out)
    }

    /// The oldest unread messages of a conversation, at most [`MAX_INBOX`], oldest first. The
    /// unread ones are its last `unread` incoming messages: the log is read backwards, a page at
    /// a time, until they are all passed, keeping only the oldest.
    async fn oldest_unread(&self, c: &Contact) -> Result<Vec<api::Entry>, RpcError> {
        const PAGE: usize = 500;
        let mut wanted = c.unread;
        let mut kept: std::collections::VecDeque<LogEntry> = std::collections::VecDeque::new();
        let mut before = None;
        while wanted > 0 {
            let page =
                self.store.history(c.conversation, before, PAGE).await.map_err(store_error)?;
            let Some(first) = page.first().map(|e| e.position) else { break };
            for e in page.into_iter().rev() {
                if wanted == 0 {
                    break;
                }
                if e.direction == Direction::Incoming {
                    wanted -= 1;
                    kept.push_front(e);
                    if kept.len() > MAX_INBOX {
                        kept.pop_back();
                    }
                }
            }
            if first == 0 {
                break;
            }
            before = Some(first);
        }
        Ok(kept.iter().map(entry).collect())
    }

    fn numbers(&self, c: &Contact) -> Result<api::SafetyNumbers, RpcError> {
        let numbers = tincan_node::safety_numbers(&self.me.public_key, c).map_err(store_error)?;
        let key = |(peer, number): &(PeerId, tincan_identity::SafetyNumber)| api::Key {
            peer_id: peer.to_base58(),
            safety_number: number.to_string(),
        };
        Ok(api::SafetyNumbers {
            username: c.username.as_str().to_owned(),
            pinned: key(&numbers.pinned),
            pending: numbers.pending.as_ref().map(key),
            verified: c.verified,
        })
    }

    /// Finds a contact by name, a message request by the name it claims, or either by its key:
    /// a whole PeerId, or the end of one as [`api::Contact::key_id`] shows it (`…Ab12Cd34`).
    pub async fn find(&self, who: &str) -> Result<Contact, RpcError> {
        if who.len() == 32 && who.bytes().all(|b| b.is_ascii_hexdigit()) {
            let found = self
                .store
                .contacts()
                .await
                .map_err(store_error)?
                .into_iter()
                .find(|c| c.conversation.to_string() == who.to_ascii_lowercase());
            if let Some(c) = found {
                return Ok(c);
            }
        }
        let key = who.strip_prefix('…').unwrap_or(who);
        if key.len() >= KEY_ID_LEN && key.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            let matching: Vec<Contact> = self
                .store
                .contacts()
                .await
                .map_err(store_error)?
                .into_iter()
                .filter(|c| base58(&c.peer_id).ends_with(key))
                .collect();
            match matching.len() {
                0 => {}
                1 => return Ok(matching.into_iter().next().expect("one contact")),
                n => {
                    return Err(RpcError::new(
                        RpcError::AMBIGUOUS,
                        format!("{n} contacts have keys ending in {key}: give more of the key"),
                    ));
                }
            }
            if Username::new(who).is_err() {
                return Err(RpcError::new(
                    RpcError::NO_SUCH_CONTACT,
                    format!("no contact or request has a key ending in {key}"),
                ));
            }
        }
        let name = Username::new(who).map_err(|e| {
            RpcError::new(RpcError::INVALID_PARAMS, format!("{who:?} is not a username: {e}"))
        })?;
        if let Some(c) = self.store.contact_by_username(&name).await.map_err(store_error)? {
            return Ok(c);
        }
        let requests: Vec<Contact> = self
            .store
            .contacts()
            .await
            .map_err(store_error)?
            .into_iter()
            .filter(|c| c.kind == ContactKind::Request && c.username == name)
            .collect();
        match requests.len() {
            0 => Err(RpcError::new(RpcError::NO_SUCH_CONTACT, format!("{name} is not a contact"))),
            1 => Ok(requests.into_iter().next().expect("one request")),
            n => {
                let list: Vec<String> = requests
                    .iter()
                    .map(|c| format!("{} ({})", key_id(&c.peer_id), c.claim.describe()))
                    .collect();
                Err(RpcError::new(
                    RpcError::AMBIGUOUS,
                    format!(
                        "{n} message requests claim the name {name}: {}. Name one by its key, e.g. {}",
                        list.join("; "),
                        key_id(&requests[0].peer_id)
                    ),
                ))
            }
        }
    }

    /// A contact as the API shows it, with its presence when the network runs here.
    pub fn contact(&self, c: &Contact) -> api::Contact {
        let peer = PeerId::from_bytes(c.peer_id.as_bytes()).ok();
        let (online, path) = match (&self.node, peer) {
            (Some(node), Some(peer)) => {
                (node.is_connected(&peer), node.path(&peer).map(|p| p.name().to_owned()))
            }
            _ => (false, None),
        };
        api::Contact {
            conversation: c.conversation.to_string(),
            kind: match c.kind {
                ContactKind::Request => "request",
                _ => "contact",
            }
            .to_owned(),
            username: c.username.as_str().to_owned(),
            peer_id: base58(&c.peer_id),
            key_id: key_id(&c.peer_id),
            verified: c.verified,
            blocked: c.blocked,
            pending_key: c.pending_peer_id.as_ref().map(base58),
            rejected_keys: c.rejected_keys.iter().map(base58).collect(),
            claim: claim_name(c.claim).to_owned(),
            unread: c.unread,
            online,
            path,
            messages: c.log_len,
        }
    }

    /// What a node event tells subscribed clients, if anything.
    pub fn notification(&self, event: &Event) -> Option<api::Notification> {
        use api::Notification as N;
        Some(match event {
            Event::Received { conversation, username, entry: e, request } => N::Message {
                contact: username.as_str().to_owned(),
                conversation: conversation.to_string(),
                request: *request,
                entry: entry(e),
            },
            Event::Status { conversation, id, status } => N::Status {
                conversation: conversation.to_string(),
                id: id.to_string(),
                status: status.name().to_owned(),
                refusal: refusal(status),
            },
            Event::Online { username, peer_id } | Event::Offline { username, peer_id } => {
                let node = self.node.as_ref()?;
                N::Presence {
                    contact: username.as_str().to_owned(),
                    peer_id: peer_id.to_base58(),
                    online: matches!(event, Event::Online { .. }),
                    path: node.path(peer_id).map(|p| p.name().to_owned()),
                }
            }
            Event::Path { username, peer_id, path } => N::Presence {
                contact: username.as_str().to_owned(),
                peer_id: peer_id.to_base58(),
                online: path.is_some(),
                path: path.map(|p| p.name().to_owned()),
            },
            Event::KeyChanged { conversation, username, old, new } => N::KeyChanged {
                contact: username.as_str().to_owned(),
                conversation: conversation.to_string(),
                old: old.to_base58(),
                new: new.to_base58(),
            },
            Event::Request { conversation, peer_id, claimed, claim } => N::Request {
                conversation: conversation.to_string(),
                peer_id: peer_id.to_base58(),
                claimed: claimed.as_str().to_owned(),
                claim: claim_name(*claim).to_owned(),
            },
            Event::Notice { conversation, username, notice: tincan_wire::Notice::Ended } => {
                N::Ended {
                    contact: username.as_str().to_owned(),
                    conversation: conversation.to_string(),
                }
            }
            Event::Sealing { conversation, username, change } => {
                let (name, messages) = match change {
                    SealingChange::NewSession => ("new-session", None),
                    SealingChange::Resealed { messages } => ("resealed", Some(*messages as u64)),
                    SealingChange::KeysRefused => ("keys-refused", None),
                    _ => return None,
                };
                N::Sealing {
                    contact: username.as_str().to_owned(),
                    conversation: conversation.to_string(),
                    change: name.to_owned(),
                    messages,
                }
            }
            Event::Nat(report) => N::Reachability(nat(report)),
            Event::Storage(health) => N::Storage { health: health_name(*health).to_owned() },
            Event::Published { phonebook, .. } => {
                N::Phonebook { phonebook: phonebook.clone(), ok: true, error: None }
            }
            Event::PhonebookError { phonebook, error } => {
                N::Phonebook { phonebook: phonebook.clone(), ok: false, error: Some(error.clone()) }
            }
            Event::Duplicate { phonebook, addrs } => N::Duplicate {
                phonebook: phonebook.clone(),
                addrs: addrs.iter().map(ToString::to_string).collect(),
            },
            _ => return None,
        })
    }
}

fn json<T: Serialize>(value: T) -> Result<Value, RpcError> {
    serde_json::to_value(value)
        .map_err(|e| RpcError::new(RpcError::INTERNAL, format!("encoding the answer: {e}")))
}

fn no_key_change(c: &Contact) -> RpcError {
    RpcError::new(RpcError::NO_KEY_CHANGE, format!("{}'s key has not changed", c.username))
}

/// A log entry as the API shows it.
pub fn entry(e: &LogEntry) -> api::Entry {
    api::Entry {
        position: e.position,
        direction: match e.direction {
            Direction::Incoming => "incoming",
            _ => "outgoing",
        }
        .to_owned(),
        id: e.id.to_string(),
        seq: e.seq.get(),
        time: match e.direction {
            Direction::Incoming => e.stored_at.0,
            _ => e.sent_at.0,
        },
        claimed_time: e.sent_at.0,
        status: e.status.name().to_owned(),
        refusal: refusal(&e.status),
        text: e.text.as_str().to_owned(),
        missing_before: e.missing_before,
        late: e.late,
    }
}

fn refusal(status: &Status) -> Option<api::Refusal> {
    match status {
        Status::Failed { code, reason } => {
            Some(api::Refusal { code: *code, reason: reason.clone() })
        }
        _ => None,
    }
}

fn health_name(health: Health) -> &'static str {
    match health {
        Health::Ok => "ok",
        Health::DiskFull => "disk-full",
        _ => "failing",
    }
}

fn peer_bytes(peer: &PeerId) -> PeerIdBytes {
    PeerIdBytes::new(&peer.to_bytes()).expect("a PeerId is 3 to 64 bytes")
}

fn now() -> UnixMillis {
    UnixMillis(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    )
}

/// A store error as the API reports it.
pub fn store_error(e: StoreError) -> RpcError {
    let code = match &e {
        StoreError::NoSuchConversation => RpcError::NO_SUCH_CONTACT,
        StoreError::NotAContact => RpcError::NOT_A_CONTACT,
        StoreError::NoPendingKey => RpcError::NO_KEY_CHANGE,
        StoreError::PendingKeyChanged => RpcError::PENDING_KEY_CHANGED,
        StoreError::DiskFull => RpcError::DISK_FULL,
        StoreError::ReadOnly => RpcError::READ_ONLY,
        _ => RpcError::STORAGE,
    };
    RpcError::new(code, e.to_string())
}

/// An error of the node as the API reports it.
pub trait AsRpc {
    /// The API's error for it.
    fn rpc(self) -> RpcError;
}

/// `e.rpc()`, for `map_err`.
pub fn rpc(e: impl AsRpc) -> RpcError {
    e.rpc()
}

impl AsRpc for StoreError {
    fn rpc(self) -> RpcError {
        store_error(self)
    }
}

impl AsRpc for SendError {
    fn rpc(self) -> RpcError {
        match self {
            SendError::Store(inner) => store_error(inner),
            SendError::Resolve(inner) => inner.rpc(),
            e @ SendError::InvalidText(_) => RpcError::new(RpcError::INVALID_TEXT, e.to_string()),
            e => RpcError::new(RpcError::INTERNAL, e.to_string()),
        }
    }
}

impl AsRpc for ResolveError {
    fn rpc(self) -> RpcError {
        let message = self.to_string();
        let code = match self {
            ResolveError::Store(inner) => return store_error(inner),
            ResolveError::UnknownUser(_)
            | ResolveError::NoDirectory(_)
            | ResolveError::Unreachable { .. } => RpcError::UNKNOWN_USER,
            ResolveError::ToSelf => RpcError::TO_SELF,
            _ => RpcError::INTERNAL,
        };
        RpcError::new(code, message)
    }
}

impl AsRpc for ContactError {
    fn rpc(self) -> RpcError {
        let message = self.to_string();
        let code = match self {
            ContactError::Store(inner) => return store_error(inner),
            ContactError::NotAContact(_) => RpcError::NO_SUCH_CONTACT,
            _ => RpcError::INTERNAL,
        };
        RpcError::new(code, message)
    }
}

impl AsRpc for DirectoryError {
    /// As before there was a type of its own: 1006, "could not be looked up".
    fn rpc(self) -> RpcError {
        RpcError::new(RpcError::UNKNOWN_USER, self.to_string())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

    use super::*;

    /// `specs/rpc.md`, the `sealing` notification: each change the node reports becomes the
    /// notification the spec names, with `messages` only for `resealed`.
    #[tokio::test]
    async fn sealing_changes_are_the_specs_notifications() {
        let dir = tempfile::tempdir().unwrap();
        let root = tincan_identity::StoreRootKey::from_bytes([7; 32]);
        let store = Store::create(&dir.path().join("store.redb"), &root).unwrap();
        let identity = tincan_identity::Identity::generate().unwrap();
        let username = Username::new("alice").unwrap();
        let me = Me { profile: "alice".into(), username, public_key: identity.public_key() };
        let service = Service::new(store, None, me);
        let conversation = tincan_store::ConversationId([0xab; 16]);
        let bob = Username::new("bob").unwrap();
        let cases = [
            (SealingChange::NewSession, serde_json::json!({"change": "new-session"})),
            (
                SealingChange::Resealed { messages: 3 },
                serde_json::json!({"change": "resealed", "messages": 3}),
            ),
            (SealingChange::KeysRefused, serde_json::json!({"change": "keys-refused"})),
        ];
        for (change, expect) in cases {
            let event = Event::Sealing { conversation, username: bob.clone(), change };
            let note = service.notification(&event).expect("every change is told");
            let mut params = expect;
            params["contact"] = "bob".into();
            params["conversation"] = "abababababababababababababababab".into();
            let wire = serde_json::to_value(&note).unwrap();
            assert_eq!(wire, serde_json::json!({"method": "sealing", "params": params}));
        }
    }
}
