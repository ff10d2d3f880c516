//! The [`Node`] handle: what the client calls, and what it hears back ([`Event`]).

use std::sync::{Arc, Mutex};

use libp2p::{Multiaddr, PeerId};
use tincan_identity::{Identity, PublicKey, safety_number};
use tincan_store::{Contact, ConversationId, Deleted, RequestLimits, Store, StoreError};
use tincan_wire::{PeerIdBytes, Text, UnixMillis, Username};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::engine::{self, Command};

pub use crate::types::{
    Config, ContactError, Event, NatConfig, NatReport, Path, Reachability, RelayPolicy, RelayState,
    ResolveError, SafetyNumbers, SealingChange, SendError, Sent, StartError,
};

pub(crate) struct Shared {
    pub(crate) peer_id: PeerId,
    pub(crate) public_key: PublicKey,
    pub(crate) username: Username,
    /// Our signed Olm keys record (`specs/sealed.md` §2), for peers that ask and for our
    /// phonebook record; replaced when the fallback key rotates.
    pub(crate) olm_keys: Mutex<Vec<u8>>,
    /// [`Config::plaintext_for_benchmarks`].
    pub(crate) plaintext: bool,
    pub(crate) store: Store,
    pub(crate) directory: crate::Directory,
    pub(crate) request_limits: RequestLimits,
    /// Claim checks of message requests running at once: at most a few.
    pub(crate) claim_checks: tokio::sync::Semaphore,
    pub(crate) claim_cache: crate::lookup::ClaimCache,
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) events: broadcast::Sender<Event>,
    pub(crate) listen_addrs: Mutex<Vec<Multiaddr>>,
    pub(crate) connected: Mutex<std::collections::HashSet<PeerId>>,
    pub(crate) paths: Mutex<std::collections::HashMap<PeerId, Path>>,
    pub(crate) nat: Mutex<NatReport>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// A running tincan peer. Cheap to clone.
///
/// The swarm and the delivery engine run on their own thread, on a current-thread tokio
/// runtime; methods here may be called from any tokio runtime.
#[derive(Clone)]
pub struct Node {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("peer_id", &self.shared.peer_id)
            .field("username", &self.shared.username)
            .finish()
    }
}

impl Node {
    /// Starts a node for `identity`, keeping its data in `store`. Returns once it listens on
    /// every address of `config.listen`.
    pub async fn start(
        identity: Identity,
        store: Store,
        config: Config,
    ) -> Result<Node, StartError> {
        // The Olm account is made once, on the first start, and kept in the store.
        let olm_keys = match store.olm_keys().await? {
            Some(keys) => keys,
            None => store.init_olm_account(tincan_seal::Account::generate(&identity)).await?,
        };
        let (commands, commands_rx) = mpsc::channel(1024);
        let (events, _) = broadcast::channel(4096);
        let (ready_tx, ready_rx) = oneshot::channel();
        let shared = Arc::new(Shared {
            peer_id: identity.peer_id(),
            public_key: identity.public_key(),
            username: config.username.clone(),
            olm_keys: Mutex::new(olm_keys),
            plaintext: config.plaintext_for_benchmarks,
            store,
            directory: crate::Directory::new(config.phonebooks.clone()),
            request_limits: config.request_limits,
            claim_checks: tokio::sync::Semaphore::new(4),
            claim_cache: Default::default(),
            commands,
            events,
            listen_addrs: Mutex::new(Vec::new()),
            connected: Mutex::new(Default::default()),
            paths: Mutex::new(Default::default()),
            nat: Mutex::new(NatReport {
                reachability: Reachability::Unknown,
                confidence: 0,
                relay: None,
            }),
            thread: Mutex::new(None),
        });
        let engine_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("tincan-node".into())
            .spawn(move || engine::run(identity, config, engine_shared, commands_rx, ready_tx))
            .map_err(|e| StartError::Transport(e.into()))?;
        *shared.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(thread);
        match ready_rx.await {
            Ok(Ok(())) => Ok(Node { shared }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(StartError::Stopped),
        }
    }

    /// Our PeerId.
    pub fn peer_id(&self) -> PeerId {
        self.shared.peer_id
    }

    /// Our username.
    pub fn username(&self) -> &Username {
        &self.shared.username
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// The addresses we listen on now, dialable as `<addr>/p2p/<peer_id>`.
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.shared.listen_addrs.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether we have a connection to `peer`.
    pub fn is_connected(&self, peer: &PeerId) -> bool {
        self.shared.connected.lock().unwrap_or_else(|e| e.into_inner()).contains(peer)
    }

    /// The best path to `peer` now, if connected: direct or punched beat relayed.
    pub fn path(&self, peer: &PeerId) -> Option<Path> {
        self.shared.paths.lock().unwrap_or_else(|e| e.into_inner()).get(peer).copied()
    }

    /// What we know of our reachability: probes, and our reservation at the relay.
    pub fn nat(&self) -> NatReport {
        self.shared.nat.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.shared.events.subscribe()
    }

    /// Queues `text` for `to`. Returns once the message is durably in the outbox; delivery
    /// follows, reported by [`Event::Status`]. A username that is not a contact yet is looked
    /// up in the phonebooks and its key pinned (trust on first use).
    pub async fn send(&self, to: &Username, text: &str) -> Result<Sent, SendError> {
        let text = Text::new(text)?;
        let contact = self.resolve(to).await?;
        let at = now();
        let store = &self.shared.store;
        let from = self.shared.username.clone();
        let queued = if self.shared.plaintext {
            store.enqueue(contact.conversation, text.clone(), at).await?
        } else {
            store.enqueue_sealed(contact.conversation, from, text.clone(), at).await?
        };
        let item = crate::delivery::Queued {
            seq: queued.seq,
            id: queued.id,
            sent_at: at,
            text,
            attempts: 0,
            envelope: queued.envelope,
        };
        // A full command queue only delays delivery: the engine rescans the outbox regularly.
        let _ = self.shared.commands.try_send(Command::Queued(contact.conversation, item));
        Ok(Sent {
            conversation: contact.conversation,
            id: queued.id,
            seq: queued.seq,
            position: queued.position,
        })
    }

    /// The contact for `username`: from the store, or looked up in the phonebooks and pinned.
    pub async fn resolve(&self, username: &Username) -> Result<Contact, ResolveError> {
        if *username == self.shared.username {
            return Err(ResolveError::ToSelf);
        }
        if let Some(contact) = self.shared.store.contact_by_username(username).await? {
            return Ok(contact);
        }
        match self.shared.directory.lookup(username).await {
            Ok(Some(found)) => {
                if found.peer_id == self.shared.peer_id {
                    return Err(ResolveError::ToSelf);
                }
                let addrs = found.record.as_ref().map(|r| r.addrs.clone()).unwrap_or_default();
                let contact = self.add_contact(username, found.peer_id, addrs).await?;
                // Keys the record carries: the first messages are sealed as they are queued,
                // before the two ever connect (`specs/phonebook.md` §2.5).
                let Some(keys) = found.record.and_then(|r| r.olm_keys) else { return Ok(contact) };
                let conv = contact.conversation;
                match self.shared.store.offer_directory_keys(conv, keys).await {
                    Ok(update) => tracing::debug!(%conv, ?update, "olm keys from the phonebook"),
                    Err(e) => tracing::warn!(%conv, error = %e, "keeping the olm keys failed"),
                }
                // As kept, with the keys.
                Ok(self.shared.store.contact(conv).await?.unwrap_or(contact))
            }
            Ok(None) => Err(ResolveError::UnknownUser(username.clone())),
            Err(crate::DirectoryError::Empty) => Err(ResolveError::NoDirectory(username.clone())),
            Err(reason) => Err(ResolveError::Unreachable { username: username.clone(), reason }),
        }
    }

    /// Adds (pins) a contact with addresses where it can be reached, for when there is no
    /// phonebook, or an address is known by other means. If `username` is already a contact,
    /// only its addresses are updated.
    pub async fn add_contact(
        &self,
        username: &Username,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
    ) -> Result<Contact, StoreError> {
        let store = &self.shared.store;
        let peer_bytes = peer_bytes(&peer);
        let contact = match store.contact_by_username(username).await? {
            Some(c) => c,
            None => store.add_contact(username.clone(), peer_bytes, now()).await?,
        };
        let contact = if addrs.is_empty() {
            contact
        } else {
            store
                .set_addrs(contact.conversation, addrs.iter().map(Multiaddr::to_string).collect())
                .await?
        };
        let _ = self.shared.commands.try_send(Command::Reload(contact.conversation));
        Ok(contact)
    }

    /// Trusts `expected`, the new key the phonebook showed for `username`, whose safety number
    /// the user compared: re-pins it, and delivery of the held messages resumes. Fails with
    /// [`StoreError::PendingKeyChanged`] if the pending key is another one by now.
    pub async fn trust(
        &self,
        username: &Username,
        expected: PeerId,
    ) -> Result<Contact, ContactError> {
        let contact = self.contact(username).await?;
        let contact = self
            .shared
            .store
            .trust_pending(contact.conversation, peer_bytes(&expected), now())
            .await?;
        self.reload(contact.conversation).await;
        Ok(contact)
    }

    /// Keeps `username`'s pinned key and rejects the new one the phonebook shows: messages go
    /// to the pinned key again (they wait until it is reachable), and a phonebook showing the
    /// rejected key again is ignored.
    pub async fn reject(&self, username: &Username) -> Result<Contact, ContactError> {
        let contact = self.contact(username).await?;
        let contact = self.shared.store.reject_pending(contact.conversation, now()).await?;
        self.reload(contact.conversation).await;
        Ok(contact)
    }

    /// Tells the conversation's peer something about it, once, best effort: a notice is never
    /// stored nor retried (`specs/wire.md` §4.4).
    pub async fn notify(
        &self,
        conversation: ConversationId,
        notice: tincan_wire::Notice,
    ) -> Result<(), StoreError> {
        let (peer, addrs, _) = self.peer_of(conversation).await?;
        let _ = self.shared.commands.try_send(Command::Notice { peer, addrs, notice });
        Ok(())
    }

    /// Dials the conversation's peer unless connected, so that presence shows whether it is
    /// there (`specs/delivery.md` §4.0).
    pub async fn probe(&self, conversation: ConversationId) -> Result<(), StoreError> {
        let (peer, addrs, username) = self.peer_of(conversation).await?;
        if !self.is_connected(&peer) {
            let _ = self.shared.commands.try_send(Command::Probe {
                conv: conversation,
                peer,
                username,
                addrs,
            });
        }
        Ok(())
    }

    async fn peer_of(
        &self,
        conversation: ConversationId,
    ) -> Result<(PeerId, Vec<Multiaddr>, Username), StoreError> {
        let contact =
            self.shared.store.contact(conversation).await?.ok_or(StoreError::NoSuchConversation)?;
        let peer = PeerId::from_bytes(contact.peer_id.as_bytes())
            .map_err(|_| StoreError::Corrupted { table: "contacts" })?;
        let addrs = contact.addrs.iter().filter_map(|a| a.parse().ok()).collect();
        Ok((peer, addrs, contact.username))
    }

    /// Deletes a conversation: its messages, and the contact unless it is blocked.
    pub async fn delete(&self, conversation: ConversationId) -> Result<Deleted, StoreError> {
        let deleted = self.shared.store.delete_conversation(conversation).await?;
        let _ = self.shared.commands.send(Command::Forget(conversation)).await;
        if deleted == Deleted::KeptBlocked {
            self.reload(conversation).await;
        }
        Ok(deleted)
    }

    /// Marks `username`'s key as verified (the safety numbers matched) or not.
    pub async fn set_verified(
        &self,
        username: &Username,
        verified: bool,
    ) -> Result<Contact, ContactError> {
        let contact = self.contact(username).await?;
        Ok(self.shared.store.set_verified(contact.conversation, verified).await?)
    }

    /// Blocks or unblocks a conversation's peer: its messages are refused and not stored.
    pub async fn set_blocked(
        &self,
        conversation: ConversationId,
        blocked: bool,
    ) -> Result<Contact, StoreError> {
        let contact = self.shared.store.set_blocked(conversation, blocked).await?;
        self.reload(conversation).await;
        Ok(contact)
    }

    /// Sends again what the conversation's peer refused while it had us blocked: the same
    /// messages, with their ids and numbers. Returns how many.
    pub async fn retry(&self, conversation: ConversationId) -> Result<usize, StoreError> {
        let n = self.shared.store.requeue_refused(conversation).await?;
        if n > 0 {
            self.reload(conversation).await;
        }
        Ok(n)
    }

    /// Accepts a message request: the peer becomes a contact under the name it claimed.
    pub async fn accept(&self, conversation: ConversationId) -> Result<Contact, StoreError> {
        let contact = self.shared.store.accept_request(conversation).await?;
        self.reload(conversation).await;
        Ok(contact)
    }

    /// The safety numbers we share with `username`: with the pinned key, and with the new key
    /// during a key change.
    pub async fn safety_numbers(&self, username: &Username) -> Result<SafetyNumbers, ContactError> {
        let contact = self.contact(username).await?;
        Ok(safety_numbers(&self.shared.public_key, &contact)?)
    }

    /// Users online, from the first phonebook that answers.
    pub async fn online(
        &self,
        limit: usize,
    ) -> Result<Vec<tincan_phonebook_client::Found>, crate::DirectoryError> {
        self.shared.directory.online(limit).await
    }

    /// Publishes our record to the phonebooks now, rather than at the next refresh: for when a
    /// phonebook has just come (back) up.
    pub fn republish(&self) {
        let _ = self.shared.commands.try_send(Command::Publish);
    }

    /// Takes our records down from the phonebooks, and stops the node.
    pub async fn shutdown(&self) {
        let (done, wait) = oneshot::channel();
        if self.shared.commands.send(Command::Shutdown(done)).await.is_ok() {
            let _ = wait.await;
        }
        let thread = self.shared.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }

    async fn contact(&self, username: &Username) -> Result<Contact, ContactError> {
        self.shared
            .store
            .contact_by_username(username)
            .await?
            .ok_or_else(|| ContactError::NotAContact(username.clone()))
    }

    async fn reload(&self, conversation: ConversationId) {
        let _ = self.shared.commands.send(Command::Reload(conversation)).await;
    }
}

/// Our safety numbers with `contact`'s pinned key and, if there is one, its pending key.
pub fn safety_numbers(ours: &PublicKey, contact: &Contact) -> Result<SafetyNumbers, StoreError> {
    let number = |bytes: &PeerIdBytes| {
        let peer = PeerId::from_bytes(bytes.as_bytes())
            .map_err(|_| StoreError::Corrupted { table: "contacts" })?;
        let key =
            PublicKey::from_peer_id(&peer).ok_or(StoreError::Corrupted { table: "contacts" })?;
        Ok::<_, StoreError>((peer, safety_number(ours, &key)))
    };
    Ok(SafetyNumbers {
        pinned: number(&contact.peer_id)?,
        pending: contact.pending_peer_id.as_ref().map(number).transpose()?,
    })
}

/// The binary form of a PeerId, as the wire and the store carry it.
pub(crate) fn peer_bytes(peer: &PeerId) -> PeerIdBytes {
    PeerIdBytes::new(&peer.to_bytes()).expect("a PeerId is 3 to 64 bytes")
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now() -> UnixMillis {
    UnixMillis(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    )
}
