//! The delivery and contact logic of every conversation, sans IO (`specs/delivery.md` §3): which
//! conversations are loaded, what waits to be sent and to whom, what an answer, a failure, a
//! connection or a phonebook's answer changes. Events and `now` come in as method calls; what
//! to do comes out of [`Conversations::poll`] as [`Action`]s, which the engine carries out (a
//! store read, a request on the swarm, a lookup) and whose results it feeds back in. No
//! sockets, no clock, no tasks: unit tests drive every race, such as a reload while a request
//! is in flight or messages queued while their conversation loads.
//!
//! [`Outgoing`] is one conversation's queue; `Lookups` one conversation's phonebook pacing.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use libp2p::{Multiaddr, PeerId};
use tincan_store::ConversationId;
use tincan_wire::{Ack, MessageId, Refusal, Seq, Username};

use crate::delivery::{Hold, Outgoing, Queued, Settled};
use crate::lookup::Lookups;

/// Most messages held in memory per conversation; more wait in the store.
pub const QUEUE_CAP: usize = 4096;
/// Most addresses kept per contact.
const MAX_ADDRS: usize = tincan_phonebook_client::MAX_ADDRS;
/// How long a probe keeps trying (a dial, then the directory's addresses) after it was asked.
pub const PROBE_FOR: Duration = Duration::from_secs(30);
/// Most probes under way at once; more are refused until one ends.
const MAX_PROBES: usize = 256;

/// A request the core asked for, as the core knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Token(u64);

/// What is remembered of a contact, to route inbound requests without a store read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Known {
    /// Its conversation.
    pub conv: ConversationId,
    /// The name it is known by.
    pub username: Username,
    /// A message request: not accepted yet.
    pub request: bool,
    /// Blocked by the user.
    pub blocked: bool,
}

/// A conversation as the store holds it, loaded for sending.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The pinned key.
    pub peer: PeerId,
    /// What the engine remembers of the contact.
    pub known: Known,
    /// Where it was last seen.
    pub addrs: Vec<Multiaddr>,
    /// A key a phonebook showed instead of `peer`, not yet trusted.
    pub pending: Option<PeerId>,
    /// Keys the user rejected for this contact.
    pub rejected: Vec<PeerId>,
    /// The first entries of its outbox, in sequence order.
    pub entries: Vec<Queued>,
    /// Whether the outbox holds more than `entries`.
    pub more: bool,
    /// Every message up to this sequence number was queued before `entries` were read: those
    /// not among them are settled.
    pub last_seq: u64,
}

/// How a request ended, when it was answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Acknowledgements, one per message the recipient looked at.
    Acks(Vec<Ack>),
    /// The whole request was refused.
    Refused(Refusal),
    /// An answer that does not fit a chat request.
    Unexpected,
}

/// How a request ended, when it was not answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// No connection could be made: the addresses may be stale.
    Dial,
    /// The connection carrying it closed; another may remain.
    ConnectionClosed,
    /// Anything else: a timeout, a broken stream.
    Other,
}

/// What a directory said of a contact's name: the key bound to it and, if the owner published
/// one, its record's sequence number and addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sighting {
    /// The key bound to the name.
    pub peer_id: PeerId,
    /// The record: its sequence number and addresses.
    pub record: Option<(u64, Vec<Multiaddr>)>,
}

/// What the engine is asked to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Read the conversation's contact and the first entries of its outbox, then call
    /// [`Conversations::loaded`] (or [`Conversations::load_failed`]).
    Load(ConversationId),
    /// Send these messages to `peer` as one request, then report its end with `token`.
    Send {
        /// Names the request in [`Conversations::answered`] and [`Conversations::failed`].
        token: Token,
        /// The conversation.
        conv: ConversationId,
        /// The recipient.
        peer: PeerId,
        /// Where it may be: given with the request, as libp2p forgets addresses after a
        /// failed dial.
        addrs: Vec<Multiaddr>,
        /// The batch, in sequence order.
        messages: Vec<Queued>,
    },
    /// These messages went out for the first time: they are `sent` now.
    Sent {
        /// The conversation.
        conv: ConversationId,
        /// The messages.
        ids: Vec<MessageId>,
    },
    /// Record an attempt that did not settle these messages, the next due after `wait`.
    RecordAttempts {
        /// The conversation.
        conv: ConversationId,
        /// The messages tried.
        seqs: Vec<Seq>,
        /// How long until the next attempt.
        wait: Duration,
    },
    /// Commit what an answer settled, report the new statuses, then call
    /// [`Conversations::committed`].
    Acknowledge {
        /// The conversation.
        conv: ConversationId,
        /// Delivered and failed messages.
        settled: Settled,
    },
    /// Ask the directory where `username` is, then call [`Conversations::looked`].
    Lookup {
        /// The conversation.
        conv: ConversationId,
        /// The contact's name.
        username: Username,
    },
    /// Keep these addresses for the contact.
    SaveAddrs {
        /// The conversation.
        conv: ConversationId,
        /// The addresses, best first.
        addrs: Vec<Multiaddr>,
    },
    /// Dial `peer` (unless connected or being dialled), to learn whether it is there. A
    /// failure is reported with [`Conversations::dial_failed`].
    Dial {
        /// The peer.
        peer: PeerId,
        /// Where it may be.
        addrs: Vec<Multiaddr>,
    },
    /// A directory shows another key for the contact: record it and tell the user. Sending
    /// holds until the user trusts it or keeps the old one.
    KeyChanged {
        /// The conversation.
        conv: ConversationId,
        /// The contact's name.
        username: Username,
        /// The pinned key.
        old: PeerId,
        /// The key shown.
        new: PeerId,
    },
}

struct Conv {
    peer: PeerId,
    username: Username,
    out: Outgoing<Token>,
    addrs: Vec<Multiaddr>,
    loading: bool,
    /// A reload was asked for while loading: load again once this one is in.
    reload_again: bool,
    /// Commits of acknowledgements under way.
    settling: u32,
    lookups: Lookups,
    pending: Option<PeerId>,
    rejected: Vec<PeerId>,
}

/// A probe under way: whether a contact is there, asked by the user's screen.
struct Probe {
    conv: ConversationId,
    username: Username,
    /// Addresses dialled so far.
    tried: Vec<Multiaddr>,
    lookups: Lookups,
    until: Instant,
}

/// Every conversation's delivery state. See the module documentation.
pub struct Conversations {
    convs: HashMap<ConversationId, Conv>,
    contacts: HashMap<PeerId, Known>,
    /// Messages queued while their conversation was loading, merged in when it is loaded.
    stash: HashMap<ConversationId, Vec<Queued>>,
    requests: HashMap<Token, ConversationId>,
    connected: HashSet<PeerId>,
    probes: HashMap<PeerId, Probe>,
    next_token: u64,
    /// Whether any directory is configured to look contacts up in.
    directory: bool,
    actions: VecDeque<Action>,
}

impl Conversations {
    /// No conversation loaded yet. `directory` says whether lookups can be made at all.
    pub fn new(directory: bool) -> Conversations {
        Conversations {
            convs: HashMap::new(),
            contacts: HashMap::new(),
            stash: HashMap::new(),
            requests: HashMap::new(),
            connected: HashSet::new(),
            probes: HashMap::new(),
            next_token: 0,
            directory,
            actions: VecDeque::new(),
        }
    }

    /// The next thing to do, oldest first.
    pub fn poll(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// What is known of `peer`, if it is a contact or a message request.
    pub fn known(&self, peer: &PeerId) -> Option<&Known> {
        self.contacts.get(peer)
    }

    /// Remembers a contact (read from the store at start, or a new message request).
    pub fn learn(&mut self, peer: PeerId, known: Known) {
        self.contacts.insert(peer, known);
    }

    /// A message was queued durably in the conversation.
    pub fn queued(&mut self, conv: ConversationId, item: Queued, now: Instant) {
        match self.convs.get_mut(&conv) {
            Some(c) if c.loading => self.stash.entry(conv).or_default().push(item),
            // Past the cap, messages wait in the store; they are loaded as the queue drains.
            Some(c) if c.out.queued() >= QUEUE_CAP => c.out.more_in_store = true,
            Some(c) => {
                c.out.load([item]);
                self.pump(conv, now);
            }
            None => {
                let stash = self.stash.entry(conv).or_default();
                stash.push(item);
                if stash.len() == 1 {
                    self.load(conv);
                }
            }
        }
    }

    /// The conversation's contact or outbox changed in the store (a key trusted, a message
    /// retried): forget what is in memory and load it again. A request in flight is abandoned;
    /// its answer is ignored and its messages go again, deduplicated by the recipient.
    pub fn reload(&mut self, conv: ConversationId, now: Instant) {
        if let Some(c) = self.convs.get_mut(&conv) {
            c.out.reset(now);
            c.out.set_hold(None, now);
        }
        self.load(conv);
    }

    /// The store queued `seqs` of `conv` again (sealed again in a new session): they load
    /// and go at once; nothing else is forgotten ([`Outgoing::requeued`]).
    pub fn requeued(&mut self, conv: ConversationId, seqs: &[Seq], now: Instant) {
        if let Some(c) = self.convs.get_mut(&conv) {
            c.out.requeued(seqs, now);
        }
        self.load(conv);
    }

    /// Messages of the request `token` that the store no longer holds
    /// ([`Outgoing::vanished`]).
    pub fn vanished(&mut self, token: Token, seqs: &[Seq]) {
        let Some(conv) = self.requests.get(&token) else { return };
        if let Some(c) = self.convs.get_mut(conv) {
            c.out.vanished(token, seqs);
        }
    }

    /// What [`Action::Load`] read.
    pub fn loaded(&mut self, conv: ConversationId, loaded: Loaded, now: Instant) {
        let peer = loaded.peer;
        self.contacts.insert(peer, loaded.known.clone());
        let c = self.convs.entry(conv).or_insert_with(|| Conv {
            peer,
            username: loaded.known.username.clone(),
            out: Outgoing::new(now),
            addrs: Vec::new(),
            loading: true,
            reload_again: false,
            settling: 0,
            lookups: Lookups::default(),
            pending: None,
            rejected: Vec::new(),
        });
        if c.peer != peer {
            // Re-pinned: what was queued for the old key is gone from memory; start afresh.
            self.contacts.remove(&c.peer);
            c.peer = peer;
            c.out.reset(now);
        }
        c.username = loaded.known.username;
        c.loading = false;
        c.pending = loaded.pending;
        c.rejected = loaded.rejected;
        merge_addrs(&mut c.addrs, loaded.addrs);
        // With more in the store than was read, only what was read is known: a message
        // announced meanwhile waits until the rows before it are loaded.
        let read_through = loaded.entries.iter().map(|q| q.seq.get()).max().unwrap_or(0);
        let through = if loaded.more { read_through } else { loaded.last_seq.max(read_through) };
        c.out.load(loaded.entries);
        c.out.known_through(through);
        c.out.load(self.stash.remove(&conv).unwrap_or_default());
        c.out.more_in_store = loaded.more;
        let hold = c.pending.is_some().then_some(Hold::KeyChanged);
        if c.out.hold() != hold {
            c.out.set_hold(hold, now);
        }
        if self.connected.contains(&peer) {
            c.out.connected(now);
        }
        if std::mem::take(&mut c.reload_again) {
            self.load(conv);
        }
        self.pump(conv, now);
    }

    /// [`Action::Load`] failed. What was queued meanwhile is in the store: a later rescan
    /// loads it.
    pub fn load_failed(&mut self, conv: ConversationId) {
        if let Some(c) = self.convs.get_mut(&conv) {
            c.loading = false;
            c.out.more_in_store = true;
        }
        self.stash.remove(&conv);
    }

    /// The conversations whose outbox holds something: those not in memory are loaded.
    pub fn rescanned(&mut self, convs: impl IntoIterator<Item = ConversationId>) {
        for conv in convs {
            if !self.convs.contains_key(&conv) {
                self.load(conv);
            }
        }
    }

    /// The conversation was deleted: nothing of it stays in memory, and answers to its
    /// requests are ignored.
    pub fn forget(&mut self, conv: ConversationId) {
        if let Some(c) = self.convs.remove(&conv) {
            self.contacts.remove(&c.peer);
        }
        self.contacts.retain(|_, known| known.conv != conv);
        self.stash.remove(&conv);
        self.requests.retain(|_, c| *c != conv);
    }

    /// Whether `peer` (the contact of `conv`, known as `username`, last seen at `addrs`) is
    /// there, for presence (`specs/delivery.md` §4.0): unless connected, it is dialled where it
    /// was last seen and, at the same time, the directory is asked where it is now (a dial to
    /// an address it left can take seconds to fail); new addresses are dialled and kept. A
    /// probe lasts [`PROBE_FOR`]; its lookups are paced as a conversation's are, and a failed
    /// dial asks again when the pace allows.
    pub fn probe(
        &mut self,
        conv: ConversationId,
        peer: PeerId,
        username: Username,
        addrs: Vec<Multiaddr>,
        now: Instant,
    ) {
        if self.connected.contains(&peer) {
            return;
        }
        if !self.probes.contains_key(&peer) && self.probes.len() >= MAX_PROBES {
            return;
        }
        let mut addrs = addrs;
        if let Some(c) = self.convs.get(&conv).filter(|c| c.peer == peer) {
            merge_addrs(&mut addrs, c.addrs.clone());
        }
        let probe = self.probes.entry(peer).or_insert_with(|| Probe {
            conv,
            username,
            tried: Vec::new(),
            lookups: Lookups::default(),
            until: now,
        });
        probe.until = now + PROBE_FOR;
        if !addrs.is_empty() {
            merge_addrs(&mut probe.tried, addrs.clone());
            self.actions.push_back(Action::Dial { peer, addrs });
        }
        self.probe_lookup(peer, now);
    }

    /// A dial of `peer` failed: a probe asks the directory where it is now.
    pub fn dial_failed(&mut self, peer: PeerId, now: Instant) {
        if !self.connected.contains(&peer) {
            self.probe_lookup(peer, now);
        }
    }

    /// The first connection to `peer` came up: what waits for it goes now.
    pub fn connected(&mut self, peer: PeerId, now: Instant) {
        self.connected.insert(peer);
        self.probes.remove(&peer);
        let Some(conv) = self.contacts.get(&peer).map(|k| k.conv) else { return };
        if let Some(c) = self.convs.get_mut(&conv) {
            c.out.connected(now);
        }
        self.pump(conv, now);
    }

    /// The last connection to `peer` closed.
    pub fn disconnected(&mut self, peer: PeerId) {
        self.connected.remove(&peer);
    }

    /// The peer said where it listens: for a contact, worth keeping (the next dial is
    /// authenticated by the PeerId anyway). `listen` holds only dialable addresses.
    pub fn identified(&mut self, peer: PeerId, listen: Vec<Multiaddr>) {
        let Some(conv) = self.contacts.get(&peer).map(|k| k.conv) else { return };
        let Some(c) = self.convs.get_mut(&conv) else { return };
        let before = c.addrs.clone();
        merge_addrs(&mut c.addrs, listen);
        if c.addrs != before {
            self.actions.push_back(Action::SaveAddrs { conv, addrs: c.addrs.clone() });
        }
    }

    /// The answer to request `token`. `jitter` in [0, 1) spreads retries.
    pub fn answered(&mut self, token: Token, answer: Answer, now: Instant, jitter: f64) {
        let Some(conv) = self.requests.remove(&token) else { return };
        let Some(c) = self.convs.get_mut(&conv) else { return };
        let mut settled = match answer {
            Answer::Acks(acks) => c.out.answered(token, &acks, now, jitter),
            Answer::Refused(refusal) => {
                tracing::debug!(%conv, %refusal, "request refused");
                c.out.refused(token, refusal, now, jitter)
            }
            Answer::Unexpected => {
                Settled { retry: c.out.failed(token, now, jitter), ..Settled::default() }
            }
        };
        let next = c.out.not_before();
        self.record_attempts(conv, std::mem::take(&mut settled.retry), next, now);
        if !settled.delivered.is_empty() || !settled.failed.is_empty() {
            if let Some(c) = self.convs.get_mut(&conv) {
                c.settling += 1;
            }
            self.actions.push_back(Action::Acknowledge { conv, settled });
        }
        self.pump(conv, now);
    }

    /// Request `token` ended without an answer.
    pub fn failed(&mut self, token: Token, failure: Failure, now: Instant, jitter: f64) {
        let Some(conv) = self.requests.remove(&token) else { return };
        let Some(c) = self.convs.get_mut(&conv) else { return };
        let seqs = c.out.failed(token, now, jitter);
        tracing::debug!(%conv, peer = %c.peer, ?failure, failures = c.out.failures(), "request failed");
        let next = c.out.not_before();
        let peer = c.peer;
        self.record_attempts(conv, seqs, next, now);
        match failure {
            // The addresses may be stale: ask the directory again.
            Failure::Dial => self.lookup(conv, now),
            // Another connection remains (a relayed one was just replaced by a direct one):
            // send again at once.
            Failure::ConnectionClosed if self.connected.contains(&peer) => {
                if let Some(c) = self.convs.get_mut(&conv) {
                    c.out.connected(now);
                }
                self.pump(conv, now);
            }
            Failure::ConnectionClosed | Failure::Other => {}
        }
    }

    /// An [`Action::Acknowledge`] was committed (or failed to be: the outbox keeps the
    /// messages, which go again and are deduplicated).
    pub fn committed(&mut self, conv: ConversationId, now: Instant) {
        if let Some(c) = self.convs.get_mut(&conv) {
            c.settling = c.settling.saturating_sub(1);
        }
        self.pump(conv, now);
    }

    /// What an [`Action::Lookup`] found: `None` when the name is not registered or no
    /// directory could answer.
    pub fn looked(&mut self, conv: ConversationId, found: Option<Sighting>, now: Instant) {
        self.probe_looked(conv, found.as_ref());
        let Some(c) = self.convs.get_mut(&conv) else { return };
        let Some(found) = found else { return c.lookups.failed() };
        if found.peer_id != c.peer {
            c.lookups.failed();
            // The user kept the pinned key when shown this one; and a change already noted
            // needs nothing more. Another key than the pending one replaces it: trusting is
            // bound to the key whose number the user saw.
            if c.rejected.contains(&found.peer_id) || c.pending == Some(found.peer_id) {
                return;
            }
            c.pending = Some(found.peer_id);
            c.out.set_hold(Some(Hold::KeyChanged), now);
            self.actions.push_back(Action::KeyChanged {
                conv,
                username: c.username.clone(),
                old: c.peer,
                new: found.peer_id,
            });
            return;
        }
        let Some((seq, addrs)) = found.record else { return c.lookups.failed() };
        let new_addrs = addrs.iter().any(|a| !c.addrs.contains(a));
        if new_addrs {
            let mut merged = addrs;
            merge_addrs(&mut merged, std::mem::take(&mut c.addrs));
            c.addrs = merged;
            self.actions.push_back(Action::SaveAddrs { conv, addrs: c.addrs.clone() });
        }
        // Only news ends a backoff: the peer published since (it is alive) or moved. A record
        // merely marked online is not (`specs/delivery.md` §3).
        if c.lookups.answered(seq, new_addrs) {
            c.out.connected(now);
            self.pump(conv, now);
        }
    }

    /// Timers: retries that are due, lookups while messages wait for a peer not connected
    /// (every `interval`), and conversations with nothing left to do forgotten.
    pub fn tick(&mut self, now: Instant, interval: Duration) {
        let due: Vec<ConversationId> = self
            .convs
            .iter()
            .filter(|(_, c)| {
                c.out.next_attempt().is_some_and(|t| t <= now)
                    || (c.out.queued() == 0 && c.out.more_in_store)
            })
            .map(|(id, _)| *id)
            .collect();
        for conv in due {
            self.pump(conv, now);
        }
        let stale: Vec<ConversationId> = self
            .convs
            .iter()
            .filter(|(_, c)| {
                !c.out.is_idle()
                    && !self.connected.contains(&c.peer)
                    && c.lookups.periodic_due(now, interval)
            })
            .map(|(id, _)| *id)
            .collect();
        for conv in stale {
            self.lookup(conv, now);
        }
        self.probes.retain(|_, p| p.until > now || p.lookups.in_flight());
        // Forget conversations with nothing left to send, except while a request or a commit
        // for them is under way.
        self.convs.retain(|_, c| {
            !c.out.is_idle() || c.loading || c.settling != 0 || c.lookups.in_flight()
        });
    }

    /// Conversations in memory (for tests and metrics).
    pub fn loaded_count(&self) -> usize {
        self.convs.len()
    }

    fn load(&mut self, conv: ConversationId) {
        if let Some(c) = self.convs.get_mut(&conv) {
            if c.loading {
                c.reload_again = true;
                return;
            }
            c.loading = true;
        }
        self.actions.push_back(Action::Load(conv));
    }

    /// Sends the next batch of the conversation if it is due.
    fn pump(&mut self, conv: ConversationId, now: Instant) {
        let Some(c) = self.convs.get_mut(&conv) else { return };
        if !c.out.ready(now) {
            // Drained the in-memory queue while the store has more: fetch them. Messages just
            // settled but not yet committed as such are skipped by the queue itself. Messages
            // behind an unannounced one wait for it, or for what the store says.
            let drained = c.out.queued() == 0 && c.out.more_in_store;
            if (drained || c.out.gap()) && !c.loading {
                self.load(conv);
            }
            return;
        }
        if !self.connected.contains(&c.peer) && c.addrs.is_empty() {
            self.lookup(conv, now);
            return;
        }
        let token = Token(self.next_token);
        self.next_token += 1;
        let messages = c.out.batch();
        let first = c.out.sent(token, &messages);
        self.requests.insert(token, conv);
        self.actions.push_back(Action::Send {
            token,
            conv,
            peer: c.peer,
            addrs: c.addrs.clone(),
            messages,
        });
        // Sent for the first time: `sent` is reported now, and kept in memory only. The store
        // records attempts when one fails, which is when the count and the next retry matter.
        if !first.is_empty() {
            self.actions.push_back(Action::Sent { conv, ids: first });
        }
    }

    fn lookup(&mut self, conv: ConversationId, now: Instant) {
        let Some(c) = self.convs.get_mut(&conv) else { return };
        if !self.directory || !c.lookups.may_start(now) {
            return;
        }
        c.lookups.started(now);
        self.actions.push_back(Action::Lookup { conv, username: c.username.clone() });
    }

    /// Asks the directory where a probed peer is, unless a lookup for its conversation is
    /// under way or too recent.
    fn probe_lookup(&mut self, peer: PeerId, now: Instant) {
        let Some(p) = self.probes.get_mut(&peer) else { return };
        let sending = self.convs.get(&p.conv).is_some_and(|c| c.lookups.in_flight());
        if !self.directory || sending || p.until <= now || !p.lookups.may_start(now) {
            return;
        }
        p.lookups.started(now);
        self.actions.push_back(Action::Lookup { conv: p.conv, username: p.username.clone() });
    }

    /// What a lookup found, for a probe of the conversation's peer: addresses not tried yet are
    /// dialled, and kept if the conversation is not in memory (if it is, [`Self::looked`]
    /// keeps them).
    fn probe_looked(&mut self, conv: ConversationId, found: Option<&Sighting>) {
        let Some((&peer, p)) = self.probes.iter_mut().find(|(_, p)| p.conv == conv) else {
            return;
        };
        let fresh = match found {
            Some(Sighting { peer_id, record: Some((seq, addrs)) }) if *peer_id == peer => {
                let fresh: Vec<Multiaddr> =
                    addrs.iter().filter(|a| !p.tried.contains(a)).cloned().collect();
                p.lookups.answered(*seq, !fresh.is_empty());
                fresh
            }
            // Nobody there, another key (sending deals with that), or no answer.
            _ => {
                p.lookups.failed();
                return;
            }
        };
        if fresh.is_empty() {
            return;
        }
        let mut tried = fresh.clone();
        merge_addrs(&mut tried, std::mem::take(&mut p.tried));
        p.tried = tried;
        if !self.convs.contains_key(&conv) {
            self.actions.push_back(Action::SaveAddrs { conv, addrs: p.tried.clone() });
        }
        self.actions.push_back(Action::Dial { peer, addrs: fresh });
    }

    fn record_attempts(
        &mut self,
        conv: ConversationId,
        seqs: Vec<Seq>,
        next: Instant,
        now: Instant,
    ) {
        if !seqs.is_empty() {
            let wait = next.saturating_duration_since(now);
            self.actions.push_back(Action::RecordAttempts { conv, seqs, wait });
        }
    }
}

/// Adds `more` after `addrs`, without duplicates, keeping at most 8 (the phonebook's limit).
pub fn merge_addrs(addrs: &mut Vec<Multiaddr>, more: Vec<Multiaddr>) {
    for a in more {
        if !addrs.contains(&a) {
            addrs.push(a);
        }
    }
    addrs.truncate(MAX_ADDRS);
}

#[cfg(test)]
mod tests {
    use tincan_wire::Outcome;

    use super::*;

    const CONV: ConversationId = ConversationId([7; 16]);
    const INTERVAL: Duration = Duration::from_secs(60);

    use crate::delivery::tests::q;

    fn bob() -> PeerId {
        PeerId::from_bytes(&[0, 4, 1, 2, 3, 4]).unwrap()
    }

    fn mallory() -> PeerId {
        PeerId::from_bytes(&[0, 4, 9, 9, 9, 9]).unwrap()
    }

    fn addr(port: u16) -> Multiaddr {
        format!("/ip4/198.18.0.2/tcp/{port}").parse().unwrap()
    }

    fn loaded(entries: Vec<Queued>) -> Loaded {
        Loaded {
            peer: bob(),
            known: Known {
                conv: CONV,
                username: Username::new("bob").unwrap(),
                request: false,
                blocked: false,
            },
            addrs: vec![addr(1)],
            pending: None,
            rejected: Vec::new(),
            entries,
            more: false,
            last_seq: 0,
        }
    }

    fn actions(core: &mut Conversations) -> Vec<Action> {
        std::iter::from_fn(|| core.poll()).collect()
    }

    /// The sends among `actions`: their tokens and sequence numbers.
    fn sends(actions: &[Action]) -> Vec<(Token, Vec<u64>)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Send { token, messages, .. } => {
                    Some((*token, messages.iter().map(|m| m.seq.get()).collect()))
                }
                _ => None,
            })
            .collect()
    }

    fn stored(seqs: &[u64]) -> Answer {
        Answer::Acks(
            seqs.iter()
                .map(|s| Ack { id: MessageId([*s as u8; 16]), outcome: Outcome::Stored })
                .collect(),
        )
    }

    /// A core with bob's conversation loaded from `entries`, the first batch sent.
    fn sending(entries: Vec<Queued>, t0: Instant) -> (Conversations, Token) {
        let mut core = Conversations::new(true);
        core.reload(CONV, t0);
        assert_eq!(actions(&mut core), vec![Action::Load(CONV)]);
        core.loaded(CONV, loaded(entries), t0);
        let sent = sends(&actions(&mut core));
        assert_eq!(sent.len(), 1, "{sent:?}");
        (core, sent[0].0)
    }

    #[test]
    fn messages_queued_while_loading_are_stashed_and_go_with_the_first_batch() {
        let t0 = Instant::now();
        let mut core = Conversations::new(true);
        core.queued(CONV, q(1), t0);
        assert_eq!(actions(&mut core), vec![Action::Load(CONV)]);
        // More come while the store is read: no second read, nothing sent before it is in.
        core.queued(CONV, q(3), t0);
        core.queued(CONV, q(2), t0);
        assert_eq!(actions(&mut core), vec![]);
        // The read saw only the first (the others were committed after it began).
        core.loaded(CONV, loaded(vec![q(1)]), t0);
        let done = actions(&mut core);
        assert_eq!(
            sends(&done).iter().map(|s| s.1.clone()).collect::<Vec<_>>(),
            vec![vec![1, 2, 3]]
        );
        assert!(done.contains(&Action::Sent {
            conv: CONV,
            ids: vec![MessageId([1; 16]), MessageId([2; 16]), MessageId([3; 16])]
        }));
    }

    #[test]
    fn a_reload_asked_during_a_load_loads_again_once_it_is_in() {
        let t0 = Instant::now();
        let mut core = Conversations::new(true);
        core.queued(CONV, q(1), t0);
        assert_eq!(actions(&mut core), vec![Action::Load(CONV)]);
        core.loaded(CONV, loaded(vec![q(1)]), t0);
        let first = sends(&actions(&mut core));
        // The user trusts a key (a reload) and, while that read runs, retries (another).
        core.reload(CONV, t0);
        assert_eq!(actions(&mut core), vec![Action::Load(CONV)]);
        core.reload(CONV, t0);
        assert_eq!(actions(&mut core), vec![], "one read at a time");
        core.loaded(CONV, loaded(vec![q(1), q(2)]), t0);
        let done = actions(&mut core);
        assert_eq!(done.iter().filter(|a| **a == Action::Load(CONV)).count(), 1, "{done:?}");
        // The reload abandoned the request in flight: its messages go again, in a new request.
        let again = sends(&done);
        assert_eq!(again.len(), 1);
        assert_ne!(again[0].0, first[0].0);
        assert_eq!(again[0].1, vec![1, 2]);
        // The abandoned request's answer comes late: ignored, nothing settled twice.
        core.answered(first[0].0, stored(&[1]), t0, 0.5);
        assert_eq!(actions(&mut core), vec![]);
        core.answered(again[0].0, stored(&[1, 2]), t0, 0.5);
        let done = actions(&mut core);
        assert!(
            matches!(&done[..], [Action::Acknowledge { settled, .. }] if settled.delivered.len() == 2),
            "{done:?}"
        );
    }

    /// 10,000 messages wait and 512 are loaded; the user sends one more. It must not go
    /// before the 9,488 still in the store: a sealed session refuses a message that far
    /// ahead.
    #[test]
    fn a_message_sent_while_the_outbox_is_read_in_pages_waits_for_the_pages() {
        let t0 = Instant::now();
        let mut core = Conversations::new(true);
        core.queued(CONV, q(10_001), t0);
        assert_eq!(actions(&mut core), vec![Action::Load(CONV)]);
        let page = Loaded { more: true, last_seq: 10_001, ..loaded((1..=3).map(q).collect()) };
        core.loaded(CONV, page, t0);
        let sent = sends(&actions(&mut core));
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].1, vec![1, 2, 3], "10001 waits behind the rows not read yet");
        core.answered(sent[0].0, stored(&[1, 2, 3]), t0, 0.5);
        let done = actions(&mut core);
        assert!(done.contains(&Action::Load(CONV)), "the next page is read: {done:?}");
        assert!(sends(&done).is_empty(), "{done:?}");
        core.committed(CONV, t0);
        let last = Loaded { last_seq: 10_001, ..loaded(vec![q(4), q(10_001)]) };
        core.loaded(CONV, last, t0);
        assert_eq!(sends(&actions(&mut core))[0].1, vec![4, 10_001]);
    }

    #[test]
    fn a_load_racing_a_commit_does_not_send_acknowledged_messages_again() {
        let t0 = Instant::now();
        let (mut core, token) = sending(vec![q(1), q(2)], t0);
        core.answered(token, stored(&[1, 2]), t0, 0.5);
        assert!(matches!(&actions(&mut core)[..], [Action::Acknowledge { .. }]));
        // Before the commit lands, a rescan finds the outbox still holding them.
        core.tick(t0 + Duration::from_secs(1), INTERVAL);
        assert_eq!(core.loaded_count(), 1, "kept while its commit is under way");
        core.queued(CONV, q(3), t0);
        let done = actions(&mut core);
        assert_eq!(sends(&done)[0].1, vec![3], "only the new one: {done:?}");
        core.committed(CONV, t0);
        core.loaded(CONV, loaded(vec![q(1), q(2), q(3)]), t0);
        assert_eq!(sends(&actions(&mut core)), vec![], "1 and 2 are settled, 3 is in flight");
    }

    #[test]
    fn nothing_goes_without_an_address_until_a_connection_or_a_lookup() {
        let t0 = Instant::now();
        let mut core = Conversations::new(true);
        core.queued(CONV, q(1), t0);
        actions(&mut core);
        core.loaded(CONV, Loaded { addrs: Vec::new(), ..loaded(vec![q(1)]) }, t0);
        let username = Username::new("bob").unwrap();
        assert_eq!(actions(&mut core), vec![Action::Lookup { conv: CONV, username }]);
        // The peer dials us: what waits goes over that connection.
        core.connected(bob(), t0);
        let done = actions(&mut core);
        let sent = sends(&done);
        assert_eq!(sent.len(), 1);
        assert!(matches!(&done[0], Action::Send { addrs, .. } if addrs.is_empty()));
        // The lookup answers with an address: kept, and nothing is sent twice.
        let seen = Sighting { peer_id: bob(), record: Some((5, vec![addr(2)])) };
        core.looked(CONV, Some(seen), t0);
        assert_eq!(
            actions(&mut core),
            vec![Action::SaveAddrs { conv: CONV, addrs: vec![addr(2)] }]
        );
    }

    #[test]
    fn a_failed_dial_asks_the_directory_but_never_in_a_storm() {
        let t0 = Instant::now();
        let (mut core, token) = sending(vec![q(1)], t0);
        core.failed(token, Failure::Dial, t0, 0.0);
        let done = actions(&mut core);
        assert!(
            done.iter()
                .any(|a| matches!(a, Action::RecordAttempts { seqs, .. } if seqs.len() == 1))
        );
        assert!(done.iter().any(|a| matches!(a, Action::Lookup { .. })), "{done:?}");
        // The same record again, merely online: no news, the backoff stands.
        let seen = Sighting { peer_id: bob(), record: Some((5, vec![addr(1)])) };
        core.looked(CONV, Some(seen.clone()), t0);
        assert_eq!(actions(&mut core), vec![]);
        // Retries fail for a minute: every one asks, few are allowed.
        let mut lookups = 0;
        let mut t = t0;
        while t < t0 + Duration::from_secs(60) {
            t += Duration::from_millis(250);
            core.tick(t, INTERVAL);
            while let Some(a) = core.poll() {
                match a {
                    Action::Send { token, .. } => core.failed(token, Failure::Dial, t, 0.0),
                    Action::Lookup { .. } => {
                        lookups += 1;
                        core.looked(CONV, Some(seen.clone()), t);
                    }
                    _ => {}
                }
            }
        }
        assert!((1..=12).contains(&lookups), "{lookups} lookups in a minute");
        // A newer record is news: sending starts again at once.
        core.tick(t + Duration::from_secs(5), INTERVAL);
        actions(&mut core);
        let newer = Sighting { peer_id: bob(), record: Some((6, vec![addr(1)])) };
        core.looked(CONV, Some(newer), t + Duration::from_secs(5));
        assert_eq!(sends(&actions(&mut core)).len(), 1);
    }

    #[test]
    fn another_key_holds_sending_once_and_a_rejected_one_is_ignored() {
        let t0 = Instant::now();
        let (mut core, token) = sending(vec![q(1)], t0);
        core.failed(token, Failure::Dial, t0, 0.0);
        actions(&mut core);
        let other = Sighting { peer_id: mallory(), record: Some((9, vec![addr(6)])) };
        core.looked(CONV, Some(other.clone()), t0);
        let username = Username::new("bob").unwrap();
        assert_eq!(
            actions(&mut core),
            vec![Action::KeyChanged { conv: CONV, username, old: bob(), new: mallory() }]
        );
        // Held: a connection of bob's does not send, and the same key again is not news.
        core.connected(bob(), t0 + Duration::from_secs(10));
        core.tick(t0 + Duration::from_secs(400), INTERVAL);
        let done = actions(&mut core);
        assert!(sends(&done).is_empty(), "{done:?}");
        core.looked(CONV, Some(other.clone()), t0 + Duration::from_secs(400));
        assert_eq!(actions(&mut core), vec![]);
        // The user keeps bob's key: the store says mallory's is rejected; sending resumes.
        let kept = Loaded { rejected: vec![mallory()], ..loaded(vec![q(1)]) };
        core.reload(CONV, t0 + Duration::from_secs(401));
        actions(&mut core);
        core.loaded(CONV, kept, t0 + Duration::from_secs(401));
        assert_eq!(sends(&actions(&mut core)).len(), 1);
        core.looked(CONV, Some(other), t0 + Duration::from_secs(402));
        assert_eq!(actions(&mut core), vec![], "a rejected key is not shown again");
    }

    #[test]
    fn a_closed_connection_sends_again_at_once_only_if_another_remains() {
        let t0 = Instant::now();
        let (mut core, token) = sending(vec![q(1)], t0);
        core.connected(bob(), t0);
        actions(&mut core);
        // A relayed connection replaced by a direct one: the request goes again at once.
        core.failed(token, Failure::ConnectionClosed, t0, 0.9);
        let again = sends(&actions(&mut core));
        assert_eq!(again.len(), 1, "sent again without a backoff");
        // The last connection closed: back off, and wait.
        core.disconnected(bob());
        core.failed(again[0].0, Failure::ConnectionClosed, t0, 0.9);
        assert!(sends(&actions(&mut core)).is_empty());
    }

    #[test]
    fn a_probe_of_a_moved_contact_finds_it_through_the_directory() {
        let t0 = Instant::now();
        let mut core = Conversations::new(true);
        let bob_name = Username::new("bob").unwrap();
        core.probe(CONV, bob(), bob_name.clone(), vec![addr(1)], t0);
        // Dialled where he was, and looked up at once: a dial to an address he left can take
        // seconds to fail.
        assert_eq!(
            actions(&mut core),
            vec![
                Action::Dial { peer: bob(), addrs: vec![addr(1)] },
                Action::Lookup { conv: CONV, username: bob_name.clone() }
            ]
        );
        // Bob moved: his new address is dialled and kept; the old dial fails meanwhile.
        core.dial_failed(bob(), t0);
        assert_eq!(actions(&mut core), vec![], "a lookup is under way");
        let moved = Sighting { peer_id: bob(), record: Some((5, vec![addr(2)])) };
        core.looked(CONV, Some(moved.clone()), t0);
        assert_eq!(
            actions(&mut core),
            vec![
                Action::SaveAddrs { conv: CONV, addrs: vec![addr(2), addr(1)] },
                Action::Dial { peer: bob(), addrs: vec![addr(2)] },
            ]
        );
        // Failing again: the same answer is no news, and lookups stay 5 s apart.
        core.dial_failed(bob(), t0 + Duration::from_secs(1));
        assert_eq!(actions(&mut core), vec![]);
        core.dial_failed(bob(), t0 + Duration::from_secs(6));
        assert!(matches!(&actions(&mut core)[..], [Action::Lookup { .. }]));
        core.looked(CONV, Some(moved), t0 + Duration::from_secs(6));
        assert_eq!(actions(&mut core), vec![], "nothing new to dial");
        // Connected: the probe is done; a later failure asks nothing.
        core.connected(bob(), t0 + Duration::from_secs(7));
        core.disconnected(bob());
        core.dial_failed(bob(), t0 + Duration::from_secs(20));
        assert_eq!(actions(&mut core), vec![]);
        // A probe ends after PROBE_FOR, and a connected peer is not dialled.
        core.probe(CONV, bob(), bob_name.clone(), vec![addr(2)], t0 + Duration::from_secs(30));
        let again = actions(&mut core);
        assert!(matches!(&again[..], [Action::Dial { .. }, Action::Lookup { .. }]), "{again:?}");
        core.looked(CONV, None, t0 + Duration::from_secs(30));
        core.tick(t0 + Duration::from_secs(30) + PROBE_FOR, INTERVAL);
        core.dial_failed(bob(), t0 + Duration::from_secs(30) + PROBE_FOR);
        assert_eq!(actions(&mut core), vec![]);
        core.connected(bob(), t0 + Duration::from_secs(90));
        core.probe(CONV, bob(), bob_name, vec![addr(2)], t0 + Duration::from_secs(91));
        assert_eq!(actions(&mut core), vec![]);
    }

    #[test]
    fn a_deleted_conversation_is_forgotten_with_its_requests() {
        let t0 = Instant::now();
        let (mut core, token) = sending(vec![q(1)], t0);
        assert!(core.known(&bob()).is_some());
        core.forget(CONV);
        assert!(core.known(&bob()).is_none());
        core.answered(token, stored(&[1]), t0, 0.5);
        core.connected(bob(), t0);
        core.tick(t0 + Duration::from_secs(1), INTERVAL);
        assert_eq!(actions(&mut core), vec![]);
        assert_eq!(core.loaded_count(), 0);
    }

    #[test]
    fn an_idle_conversation_leaves_memory_and_a_full_queue_waits_in_the_store() {
        let t0 = Instant::now();
        let (mut core, token) = sending(vec![q(1)], t0);
        core.answered(token, stored(&[1]), t0, 0.5);
        actions(&mut core);
        core.committed(CONV, t0);
        core.tick(t0, INTERVAL);
        assert_eq!(core.loaded_count(), 0, "nothing left to send");
        // A conversation with QUEUE_CAP waiting takes no more into memory: they are read
        // from the store as the queue drains.
        let many: Vec<Queued> = (1..=QUEUE_CAP as u64).map(q).collect();
        let (mut core, _) = sending(many, t0);
        core.queued(CONV, q(QUEUE_CAP as u64 + 1), t0);
        assert!(sends(&actions(&mut core)).is_empty());
    }
}
