//! Write operations. Each runs inside the writer's transaction and follows one rule: read and
//! check everything first, then write. A failed check returns before anything is written, so
//! an operation that fails leaves no trace in the batch it shared a commit with.

use std::cell::{RefCell, RefMut};
use std::collections::{BTreeMap, HashSet};

use redb::{Table as RedbTable, WriteTransaction};
use serde::{Deserialize, Serialize};
use tincan_wire::{MessageId, PeerIdBytes, Seq, Text, UnixMillis, Username};

use crate::crypto::{Keys, random};
use crate::rows::{self, get, put};
use crate::tables::Table;
use crate::{
    Claim, Contact, ContactKind, ConversationId, Deleted, Direction, Incoming, KeyChange, LogEntry,
    MAX_ADDR_LEN, MAX_ADDRS, MAX_KEY_CHANGES, MAX_REJECTED_KEYS, Queued, Received, RequestLimits,
    Status, StoreError,
};

/// An outbox row. The text is not repeated here: it is in the log entry at `position`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct OutboxRow {
    pub(crate) seq: Seq,
    pub(crate) id: MessageId,
    pub(crate) sent_at: UnixMillis,
    pub(crate) position: u64,
    pub(crate) attempts: u32,
    pub(crate) next_attempt_at: UnixMillis,
    /// The sealed envelope every attempt sends (`specs/sealed.md` §7.1); absent in rows
    /// queued unsealed.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "serde_bytes")]
    pub(crate) envelope: Option<Vec<u8>>,
}

type Handle<'a> = RedbTable<'a, &'static [u8], &'static [u8]>;

/// A table of the batch, borrowed for the length of one operation.
pub(crate) type TableMut<'c, 'a> = RefMut<'c, Handle<'a>>;

/// What a write operation sees: the batch's transaction, its tables, its contacts, and the
/// store's keys.
///
/// Tables are opened once per batch, on first use: opening a redb table costs about as much as
/// a small insert. Contacts are read once per batch and written once, at [`Ctx::flush`]: a
/// burst of messages to one contact updates its counters many times but seals it once.
pub(crate) struct Ctx<'a> {
    txn: &'a WriteTransaction,
    pub(crate) keys: &'a Keys,
    /// The writer's unpickled Olm state, checked against the bytes this transaction reads.
    pub(crate) olm: &'a crate::sealed::OlmCache,
    /// Sessions changed in this batch (`None`: deleted), written once by [`Ctx::flush`]:
    /// messages queued together for one peer step its sessions many times.
    pub(crate) sessions:
        RefCell<BTreeMap<ConversationId, Option<std::rc::Rc<tincan_seal::Sessions>>>>,
    tables: [RefCell<Option<Handle<'a>>>; Table::ALL.len()],
    /// Contacts read or changed in this batch; `None` for a contact deleted in it.
    contacts: RefCell<BTreeMap<ConversationId, Option<Contact>>>,
    dirty: RefCell<HashSet<ConversationId>>,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(
        txn: &'a WriteTransaction,
        keys: &'a Keys,
        olm: &'a crate::sealed::OlmCache,
    ) -> Ctx<'a> {
        Ctx {
            txn,
            keys,
            olm,
            sessions: RefCell::default(),
            tables: Default::default(),
            contacts: RefCell::default(),
            dirty: RefCell::default(),
        }
    }

    pub(crate) fn open(&self, table: Table) -> Result<TableMut<'_, 'a>, StoreError> {
        let mut slot = self.tables[table as usize]
            .try_borrow_mut()
            .map_err(|_| StoreError::Storage("a table was opened twice in one operation".into()))?;
        if slot.is_none() {
            *slot = Some(self.txn.open_table(table.def()).map_err(StoreError::storage)?);
        }
        Ok(RefMut::map(slot, |t| t.as_mut().expect("the slot was just filled")))
    }

    fn find_contact(&self, conv: &ConversationId) -> Result<Option<Contact>, StoreError> {
        if let Some(cached) = self.contacts.borrow().get(conv) {
            return Ok(cached.clone());
        }
        let loaded: Option<Contact> =
            get(self.keys, &*self.open(Table::Contacts)?, Table::Contacts, &conv.0)?;
        self.contacts.borrow_mut().insert(*conv, loaded.clone());
        Ok(loaded)
    }

    pub(crate) fn contact(&self, conv: &ConversationId) -> Result<Contact, StoreError> {
        self.find_contact(conv)?.ok_or(StoreError::NoSuchConversation)
    }

    /// Every row of the conversation `conv` in `table` (the log or the outbox), in order.
    pub(crate) fn conversation_rows<T: serde::de::DeserializeOwned>(
        &self,
        table: Table,
        conv: &ConversationId,
    ) -> Result<Vec<T>, StoreError> {
        self.conversation_rows_in(table, conv, 0..u64::MAX)
    }

    /// The rows of `conv` in `table` whose position (log) or sequence number (outbox) is in
    /// `range`, in order.
    pub(crate) fn conversation_rows_in<T: serde::de::DeserializeOwned>(
        &self,
        table: Table,
        conv: &ConversationId,
        range: std::ops::Range<u64>,
    ) -> Result<Vec<T>, StoreError> {
        let (start, end) = (rows::conv_key(conv, range.start), rows::conv_key(conv, range.end));
        rows::scan(self.keys, &*self.open(table)?, table, &start[..]..&end[..], usize::MAX)
    }

    /// Message requests waiting for the user, as this batch leaves them. Blocked ones store
    /// nothing more, and only the user makes them, so they do not count.
    fn count_requests(&self) -> Result<usize, StoreError> {
        let mut seen = HashSet::new();
        let mut count = 0;
        for (conv, contact) in self.contacts.borrow().iter() {
            seen.insert(*conv);
            count += usize::from(contact.as_ref().is_some_and(waiting_request));
        }
        let table = self.open(Table::Contacts)?;
        for row in redb::ReadableTable::iter(&*table).map_err(StoreError::storage)? {
            let (k, v) = row.map_err(StoreError::storage)?;
            let Some(conv) = <[u8; 16]>::try_from(k.value()).ok().map(ConversationId) else {
                return Err(StoreError::Corrupted { table: Table::Contacts.purpose() });
            };
            if seen.contains(&conv) {
                continue;
            }
            let contact: Contact = rows::decode(self.keys, Table::Contacts, k.value(), v.value())?;
            count += usize::from(waiting_request(&contact));
        }
        Ok(count)
    }

    pub(crate) fn save(&self, contact: Contact) {
        self.dirty.borrow_mut().insert(contact.conversation);
        self.contacts.borrow_mut().insert(contact.conversation, Some(contact));
    }

    fn delete(&self, conv: ConversationId) {
        self.dirty.borrow_mut().insert(conv);
        self.contacts.borrow_mut().insert(conv, None);
    }

    /// Writes the contacts this batch changed. Runs once, after every operation of the batch.
    pub(crate) fn flush(&self) -> Result<(), StoreError> {
        crate::sealed::flush_sessions(self)?;
        let mut table = self.open(Table::Contacts)?;
        let contacts = self.contacts.borrow();
        for conv in self.dirty.borrow().iter() {
            match contacts.get(conv) {
                Some(Some(contact)) => {
                    put(self.keys, &mut table, Table::Contacts, &conv.0, contact)?
                }
                _ => {
                    table.remove(&conv.0[..]).map_err(StoreError::storage)?;
                }
            }
        }
        Ok(())
    }
}

fn waiting_request(contact: &Contact) -> bool {
    contact.kind == ContactKind::Request && !contact.blocked
}

fn new_contact(
    kind: ContactKind,
    username: Username,
    peer: PeerIdBytes,
    now: UnixMillis,
) -> Contact {
    Contact {
        conversation: ConversationId(random()),
        kind,
        username,
        peer_id: peer,
        first_seen: now,
        verified: false,
        blocked: false,
        pending_peer_id: None,
        key_changes: Vec::new(),
        last_sent_seq: 0,
        next_expected_seq: 1,
        log_len: 0,
        unread: 0,
        addrs: Vec::new(),
        claim: Claim::Unchecked,
        rejected_keys: Vec::new(),
        request_bytes: 0,
        olm_keys: None,
        awaiting_peer_keys: false,
    }
}

/// Adds a contact, or turns the message request from `peer` into one.
pub(crate) fn add_contact(
    ctx: &Ctx<'_>,
    username: Username,
    peer: PeerIdBytes,
    now: UnixMillis,
) -> Result<Contact, StoreError> {
    let name_key = rows::name_key(ctx.keys, &username);
    let peer_key = rows::peer_key(ctx.keys, &peer);
    if get::<ConversationId>(ctx.keys, &*ctx.open(Table::Names)?, Table::Names, &name_key)?
        .is_some()
    {
        return Err(StoreError::UsernameTaken(username.to_string()));
    }
    let existing: Option<ConversationId> =
        get(ctx.keys, &*ctx.open(Table::Peers)?, Table::Peers, &peer_key)?;
    let contact = match existing {
        Some(conv) => {
            let mut request = ctx.contact(&conv)?;
            if request.kind != ContactKind::Request {
                return Err(StoreError::PeerTaken);
            }
            request.kind = ContactKind::Contact;
            request.username = username;
            request
        }
        None => {
            let contact = new_contact(ContactKind::Contact, username, peer, now);
            put(
                ctx.keys,
                &mut *ctx.open(Table::Peers)?,
                Table::Peers,
                &peer_key,
                &contact.conversation,
            )?;
            contact
        }
    };
    put(ctx.keys, &mut *ctx.open(Table::Names)?, Table::Names, &name_key, &contact.conversation)?;
    ctx.save(contact.clone());
    Ok(contact)
}

/// The message request from `peer`, created if it is new. Returns the existing contact or
/// request when `peer` is known. Refuses a new one when `max_requests` already wait.
pub(crate) fn add_request(
    ctx: &Ctx<'_>,
    peer: PeerIdBytes,
    claimed: Username,
    now: UnixMillis,
    max_requests: usize,
) -> Result<Contact, StoreError> {
    let peer_key = rows::peer_key(ctx.keys, &peer);
    let existing: Option<ConversationId> =
        get(ctx.keys, &*ctx.open(Table::Peers)?, Table::Peers, &peer_key)?;
    if let Some(conv) = existing {
        return ctx.contact(&conv);
    }
    if ctx.count_requests()? >= max_requests {
        return Err(StoreError::TooManyRequests);
    }
    let contact = new_contact(ContactKind::Request, claimed, peer, now);
    put(ctx.keys, &mut *ctx.open(Table::Peers)?, Table::Peers, &peer_key, &contact.conversation)?;
    ctx.save(contact.clone());
    Ok(contact)
}

/// Makes a message request a contact under the username it claimed.
pub(crate) fn accept_request(ctx: &Ctx<'_>, conv: ConversationId) -> Result<Contact, StoreError> {
    let mut contact = ctx.contact(&conv)?;
    if contact.kind == ContactKind::Contact {
        return Ok(contact);
    }
    let name_key = rows::name_key(ctx.keys, &contact.username);
    let mut names = ctx.open(Table::Names)?;
    if get::<ConversationId>(ctx.keys, &*names, Table::Names, &name_key)?.is_some() {
        return Err(StoreError::UsernameTaken(contact.username.to_string()));
    }
    contact.kind = ContactKind::Contact;
    put(ctx.keys, &mut names, Table::Names, &name_key, &conv)?;
    ctx.save(contact.clone());
    Ok(contact)
}

/// Applies `change` to a contact's flags or addresses and saves it.
pub(crate) fn update_contact(
    ctx: &Ctx<'_>,
    conv: ConversationId,
    change: impl FnOnce(&mut Contact),
) -> Result<Contact, StoreError> {
    let mut contact = ctx.contact(&conv)?;
    change(&mut contact);
    contact.addrs.retain(|a| a.len() <= MAX_ADDR_LEN);
    contact.addrs.truncate(MAX_ADDRS);
    ctx.save(contact.clone());
    Ok(contact)
}

/// Sets `unread` to the incoming messages after log position `through`.
pub(crate) fn mark_read_through(
    ctx: &Ctx<'_>,
    conv: ConversationId,
    through: u64,
) -> Result<Contact, StoreError> {
    let mut contact = ctx.contact(&conv)?;
    let later: Vec<LogEntry> =
        ctx.conversation_rows_in(Table::Log, &conv, through.saturating_add(1)..u64::MAX)?;
    let unread = later.iter().filter(|e| e.direction == Direction::Incoming).count() as u64;
    contact.unread = contact.unread.min(unread);
    ctx.save(contact.clone());
    Ok(contact)
}

/// Records that `new` was seen for the contact. If it differs from the pinned PeerId, it
/// becomes the pending key and sending stops until the user trusts it.
pub(crate) fn note_key_change(
    ctx: &Ctx<'_>,
    conv: ConversationId,
    new: PeerIdBytes,
    now: UnixMillis,
) -> Result<Contact, StoreError> {
    update_contact(ctx, conv, |c| {
        if c.peer_id == new || c.pending_peer_id.as_ref() == Some(&new) {
            return;
        }
        c.key_changes.push(KeyChange {
            old: c.peer_id.clone(),
            new: new.clone(),
            seen_at: now,
            trusted_at: None,
            rejected_at: None,
        });
        if c.key_changes.len() > MAX_KEY_CHANGES {
            c.key_changes.remove(0);
        }
        c.pending_peer_id = Some(new);
    })
}

/// Drops the pending PeerId and remembers it as rejected: the pinned key stays, and sending to
/// it resumes.
pub(crate) fn reject_pending(
    ctx: &Ctx<'_>,
    conv: ConversationId,
    now: UnixMillis,
) -> Result<Contact, StoreError> {
    let mut contact = ctx.contact(&conv)?;
    let rejected = contact.pending_peer_id.take().ok_or(StoreError::NoPendingKey)?;
    if let Some(change) = contact.key_changes.last_mut()
        && change.new == rejected
    {
        change.rejected_at = Some(now);
    }
    contact.rejected_keys.retain(|k| *k != rejected);
    contact.rejected_keys.push(rejected);
    if contact.rejected_keys.len() > MAX_REJECTED_KEYS {
        contact.rejected_keys.remove(0);
    }
    ctx.save(contact.clone());
    Ok(contact)
}

/// Pins the pending PeerId, which must be `expected`: the key whose safety number the user was
/// shown. A message request from that PeerId, if any, is merged into this conversation. Queued
/// messages are renumbered from 1: the new key is a new identity, which expects our sequence
/// numbers to start over, as we expect its own to.
pub(crate) fn trust_pending(
    ctx: &Ctx<'_>,
    conv: ConversationId,
    expected: &PeerIdBytes,
    now: UnixMillis,
) -> Result<Contact, StoreError> {
    let mut contact = ctx.contact(&conv)?;
    let new = contact.pending_peer_id.clone().ok_or(StoreError::NoPendingKey)?;
    if new != *expected {
        return Err(StoreError::PendingKeyChanged);
    }
    let new_key = rows::peer_key(ctx.keys, &new);

    // Read phase.
    let other: Option<ConversationId> =
        get(ctx.keys, &*ctx.open(Table::Peers)?, Table::Peers, &new_key)?;
    let request = match other {
        Some(other) if other != conv => {
            let request = ctx.contact(&other)?;
            if request.kind != ContactKind::Request {
                return Err(StoreError::PeerTaken);
            }
            let entries: Vec<LogEntry> = ctx.conversation_rows(Table::Log, &other)?;
            Some((request, entries))
        }
        _ => None,
    };
    let queued: Vec<OutboxRow> = ctx.conversation_rows(Table::Outbox, &conv)?;
    let mut queued_entries = Vec::with_capacity(queued.len());
    {
        let log = ctx.open(Table::Log)?;
        for row in &queued {
            let entry: LogEntry =
                get(ctx.keys, &*log, Table::Log, &rows::log_key(&conv, row.position))?
                    .ok_or(StoreError::Corrupted { table: Table::Log.purpose() })?;
            queued_entries.push(entry);
        }
    }

    // Write phase: the old key's index entry goes, the new one points here.
    {
        let mut peers = ctx.open(Table::Peers)?;
        remove(&mut peers, &rows::peer_key(ctx.keys, &contact.peer_id))?;
        put(ctx.keys, &mut peers, Table::Peers, &new_key, &conv)?;
    }
    contact.peer_id = new;
    contact.pending_peer_id = None;
    contact.verified = false;
    if let Some(change) = contact.key_changes.last_mut() {
        change.trusted_at = Some(now);
    }
    contact.next_expected_seq = 1;
    // A new identity: the old one's sessions and keys are no use with it. A request from the
    // new key brings its own, which this conversation takes over.
    contact.olm_keys = request.as_ref().and_then(|(r, _)| r.olm_keys.clone());
    crate::sealed::move_sessions(ctx, request.as_ref().map(|(r, _)| r.conversation), conv)?;
    let mut log = ctx.open(Table::Log)?;
    if let Some((request, entries)) = request {
        let mut ids = ctx.open(Table::Ids)?;
        for mut entry in entries {
            remove(&mut log, &rows::log_key(&request.conversation, entry.position))?;
            remove(&mut ids, &rows::id_key(ctx.keys, &request.conversation, &entry.id))?;
            entry.position = contact.log_len;
            contact.log_len += 1;
            put(ctx.keys, &mut log, Table::Log, &rows::log_key(&conv, entry.position), &entry)?;
            if entry.direction == Direction::Incoming {
                let key = rows::id_key(ctx.keys, &conv, &entry.id);
                put(ctx.keys, &mut ids, Table::Ids, &key, &entry.position)?;
            }
        }
        contact.next_expected_seq = request.next_expected_seq;
        contact.unread += request.unread;
        contact.rejected_keys.retain(|k| *k != contact.peer_id);
        ctx.delete(request.conversation);
    }
    let mut outbox = ctx.open(Table::Outbox)?;
    let mut seq = Seq::FIRST;
    contact.last_sent_seq = 0;
    for (mut row, mut entry) in queued.into_iter().zip(queued_entries) {
        remove(&mut outbox, &rows::outbox_key(&conv, row.seq))?;
        row.seq = seq;
        // Sealed for the old key: sealed again, for the new one, before the next send.
        row.envelope = None;
        entry.seq = seq;
        put(ctx.keys, &mut outbox, Table::Outbox, &rows::outbox_key(&conv, seq), &row)?;
        put(ctx.keys, &mut log, Table::Log, &rows::log_key(&conv, row.position), &entry)?;
        contact.last_sent_seq = seq.get();
        seq = seq.next().ok_or(StoreError::SequenceExhausted)?;
    }
    ctx.save(contact.clone());
    Ok(contact)
}

fn remove(handle: &mut Handle<'_>, key: &[u8]) -> Result<(), StoreError> {
    handle.remove(key).map_err(StoreError::storage)?;
    Ok(())
}

/// Queues `text` for the contact: a log entry and an outbox entry, in one transaction. With
/// `sealed_from` (the sender's username claim), the message is sealed first, in the same
/// transaction, if the peer's keys or a session are there (`specs/sealed.md` §7.1); otherwise
/// it is sealed before its first send.
pub(crate) fn enqueue(
    ctx: &Ctx<'_>,
    conv: ConversationId,
    text: Text,
    now: UnixMillis,
    sealed_from: Option<&Username>,
) -> Result<Queued, StoreError> {
    let mut contact = ctx.contact(&conv)?;
    if contact.kind == ContactKind::Request {
        return Err(StoreError::NotAContact);
    }
    let seq = Seq::new(contact.last_sent_seq.wrapping_add(1))
        .map_err(|_| StoreError::SequenceExhausted)?;
    let id = MessageId(random());
    let position = contact.log_len;
    let entry = LogEntry {
        position,
        direction: Direction::Outgoing,
        id,
        seq,
        sent_at: now,
        stored_at: now,
        status: Status::Queued,
        text,
        claimed_from: None,
        missing_before: 0,
        late: false,
    };
    // Sealed first: a sealing that fails leaves no trace; the sessions after the ratchet step
    // are written with the rows below.
    let envelope = match sealed_from {
        None => None,
        Some(from) => crate::sealed::seal_new(ctx, &contact, from, &entry)?,
    };
    let row = OutboxRow {
        seq,
        id,
        sent_at: now,
        position,
        attempts: 0,
        next_attempt_at: now,
        envelope: envelope.clone(),
    };
    put(
        ctx.keys,
        &mut *ctx.open(Table::Log)?,
        Table::Log,
        &rows::log_key(&conv, position),
        &entry,
    )?;
    put(
        ctx.keys,
        &mut *ctx.open(Table::Outbox)?,
        Table::Outbox,
        &rows::outbox_key(&conv, seq),
        &row,
    )?;
    contact.last_sent_seq = seq.get();
    contact.log_len += 1;
    ctx.save(contact);
    Ok(Queued { id, seq, position, envelope })
}

/// Records a delivery attempt of the queued messages `seqs`: the attempt count, the time of the
/// next attempt, and the status `sent`. Messages no longer queued are skipped. Returns the
/// messages that went from queued to sent.
pub(crate) fn record_attempt(
    ctx: &Ctx<'_>,
    conv: ConversationId,
    seqs: &[Seq],
    next_attempt_at: UnixMillis,
) -> Result<Vec<MessageId>, StoreError> {
    let mut log = ctx.open(Table::Log)?;
    let mut outbox = ctx.open(Table::Outbox)?;
    let mut updates = Vec::with_capacity(seqs.len());
    for &seq in seqs {
        let key = rows::outbox_key(&conv, seq);
        let Some(row) = get::<OutboxRow>(ctx.keys, &*outbox, Table::Outbox, &key)? else {
            continue;
        };
        let log_key = rows::log_key(&conv, row.position);
        let entry: Option<LogEntry> = get(ctx.keys, &*log, Table::Log, &log_key)?;
        updates.push((key, row, log_key, entry));
    }
    let mut sent = Vec::new();
    for (key, mut row, log_key, entry) in updates {
        row.attempts = row.attempts.saturating_add(1);
        row.next_attempt_at = next_attempt_at;
        put(ctx.keys, &mut outbox, Table::Outbox, &key, &row)?;
        if let Some(mut entry) = entry
            && entry.status == Status::Queued
        {
            entry.status = Status::Sent;
            put(ctx.keys, &mut log, Table::Log, &log_key, &entry)?;
            sent.push(entry.id);
        }
    }
    Ok(sent)
}

/// The final outcome of an outgoing message, for [`Store::acknowledge`](crate::Store::acknowledge).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The recipient stored it.
    Delivered,
    /// It will never be delivered.
    Failed {
        /// Refusal code (`specs/wire.md` §5.1), or 0 for a local reason.
        code: u64,
        /// Why, in words.
        reason: String,
    },
}

/// Settles queued messages, each named by its sequence number and id: sets the final status
/// and takes it off the outbox, in one transaction. Returns the messages whose status changed.
/// Entries no longer queued, or whose id does not match, are skipped.
pub(crate) fn acknowledge(
    ctx: &Ctx<'_>,
    conv: ConversationId,
    outcomes: Vec<(Seq, MessageId, Outcome)>,
    now: UnixMillis,
) -> Result<Vec<(MessageId, Status)>, StoreError> {
    let mut log = ctx.open(Table::Log)?;
    let mut outbox = ctx.open(Table::Outbox)?;
    let mut updates = Vec::with_capacity(outcomes.len());
    for (seq, id, outcome) in outcomes {
        let key = rows::outbox_key(&conv, seq);
        match get::<OutboxRow>(ctx.keys, &*outbox, Table::Outbox, &key)? {
            Some(row) if row.id == id => {
                let log_key = rows::log_key(&conv, row.position);
                let entry: LogEntry = get(ctx.keys, &*log, Table::Log, &log_key)?
                    .ok_or(StoreError::Corrupted { table: Table::Log.purpose() })?;
                updates.push((key, log_key, entry, outcome));
            }
            _ => continue,
        }
    }
    let mut changed = Vec::with_capacity(updates.len());
    for (key, log_key, mut entry, outcome) in updates {
        remove(&mut outbox, &key)?;
        entry.status = match outcome {
            Outcome::Delivered => Status::Delivered { at: now },
            Outcome::Failed { code, reason } => Status::Failed { code, reason },
        };
        put(ctx.keys, &mut log, Table::Log, &log_key, &entry)?;
        changed.push((entry.id, entry.status));
    }
    Ok(changed)
}

/// Stores incoming messages from the contact and marks their ids seen, in one transaction.
///
/// Duplicates (ids already stored) are reported and not stored again. Sequence numbers place
/// each message: the expected one advances the counter; a higher one records how many are
/// missing before it; a lower one is stored as a late arrival (`specs/delivery.md`).
pub(crate) fn receive(
    ctx: &Ctx<'_>,
    conv: ConversationId,
    messages: Vec<Incoming>,
    now: UnixMillis,
    limits: RequestLimits,
) -> Result<Vec<Received>, StoreError> {
    let mut contact = ctx.contact(&conv)?;
    if contact.blocked {
        return Ok(vec![Received::Blocked; messages.len()]);
    }
    let fresh = unseen(ctx, &conv, messages.iter().map(|m| m.id))?;
    let mut outcomes = Vec::with_capacity(messages.len());
    for (message, key) in messages.into_iter().zip(fresh) {
        let Some(key) = key else {
            outcomes.push(Received::Duplicate);
            continue;
        };
        let size = message.text.as_str().len() as u64;
        if !within_quota(&contact, size, limits) {
            outcomes.push(Received::OverQuota);
            continue;
        }
        outcomes.push(store_incoming(ctx, &mut contact, key, message, size, now)?);
    }
    ctx.save(contact);
    Ok(outcomes)
}

/// The seen-id key of each of `ids` not seen before in the conversation (nor earlier in
/// `ids`), `None` for the others.
pub(crate) fn unseen(
    ctx: &Ctx<'_>,
    conv: &ConversationId,
    ids: impl Iterator<Item = MessageId>,
) -> Result<Vec<Option<[u8; 32]>>, StoreError> {
    let table = ctx.open(Table::Ids)?;
    let mut seen = HashSet::new();
    let mut fresh = Vec::new();
    for id in ids {
        let key = rows::id_key(ctx.keys, conv, &id);
        let duplicate =
            !seen.insert(id) || get::<u64>(ctx.keys, &*table, Table::Ids, &key)?.is_some();
        fresh.push((!duplicate).then_some(key));
    }
    Ok(fresh)
}

/// Whether a message of `size` bytes fits: a stranger's messages wait for the user's decision
/// within limits; past them they are refused, so that nobody can fill the disk by writing
/// first.
pub(crate) fn within_quota(contact: &Contact, size: u64, limits: RequestLimits) -> bool {
    contact.kind != ContactKind::Request
        || (contact.log_len < limits.max_messages
            && contact.request_bytes.saturating_add(size) <= limits.max_bytes)
}

/// Stores one incoming message and its seen id (`key`). Sequence numbers place it: the
/// expected one advances the counter; a higher one records how many are missing before it; a
/// lower one is stored as a late arrival (`specs/delivery.md`). `size` counts against a message
/// request's quota.
pub(crate) fn store_incoming(
    ctx: &Ctx<'_>,
    contact: &mut Contact,
    key: [u8; 32],
    message: Incoming,
    size: u64,
    now: UnixMillis,
) -> Result<Received, StoreError> {
    if contact.kind == ContactKind::Request {
        contact.request_bytes += size;
    }
    let seq = message.seq.get();
    let (missing_before, late) = if seq >= contact.next_expected_seq {
        let missing = seq - contact.next_expected_seq;
        contact.next_expected_seq = seq.saturating_add(1);
        (missing, false)
    } else {
        (0, true)
    };
    let position = contact.log_len;
    let entry = LogEntry {
        position,
        direction: Direction::Incoming,
        id: message.id,
        seq: message.seq,
        sent_at: message.sent_at,
        stored_at: now,
        status: Status::Received,
        text: message.text,
        claimed_from: Some(message.from),
        missing_before,
        late,
    };
    let conv = contact.conversation;
    put(
        ctx.keys,
        &mut *ctx.open(Table::Log)?,
        Table::Log,
        &rows::log_key(&conv, position),
        &entry,
    )?;
    put(ctx.keys, &mut *ctx.open(Table::Ids)?, Table::Ids, &key, &position)?;
    contact.log_len += 1;
    contact.unread += 1;
    Ok(Received::Stored(Box::new(entry)))
}

/// Deletes a conversation: its messages, its outbox and the ids it has seen. A blocked contact
/// stays, without messages, so that it stays blocked; any other is removed with its indexes,
/// and its peer is a stranger again.
pub(crate) fn delete_conversation(
    ctx: &Ctx<'_>,
    conv: ConversationId,
) -> Result<Deleted, StoreError> {
    let mut contact = ctx.contact(&conv)?;
    let entries: Vec<LogEntry> = ctx.conversation_rows(Table::Log, &conv)?;
    let queued: Vec<OutboxRow> = ctx.conversation_rows(Table::Outbox, &conv)?;
    {
        let mut log = ctx.open(Table::Log)?;
        let mut ids = ctx.open(Table::Ids)?;
        for entry in &entries {
            remove(&mut log, &rows::log_key(&conv, entry.position))?;
            if entry.direction == Direction::Incoming {
                remove(&mut ids, &rows::id_key(ctx.keys, &conv, &entry.id))?;
            }
        }
        let mut outbox = ctx.open(Table::Outbox)?;
        for row in &queued {
            remove(&mut outbox, &rows::outbox_key(&conv, row.seq))?;
        }
    }
    crate::sealed::drop_sessions(ctx, &conv)?;
    if contact.blocked {
        contact.log_len = 0;
        contact.unread = 0;
        contact.request_bytes = 0;
        ctx.save(contact);
        return Ok(Deleted::KeptBlocked);
    }
    remove(&mut *ctx.open(Table::Peers)?, &rows::peer_key(ctx.keys, &contact.peer_id))?;
    if contact.kind == ContactKind::Contact {
        remove(&mut *ctx.open(Table::Names)?, &rows::name_key(ctx.keys, &contact.username))?;
    }
    ctx.delete(conv);
    Ok(Deleted::All)
}

/// The refusal code of `blocked` (`specs/wire.md` §5.1).
const BLOCKED: u64 = 6;

/// Puts messages the recipient refused as blocked back in the outbox, as they were: same id,
/// same sequence number, status queued. The recipient stored none of them, so nothing is
/// shown twice; it shows them as late arrivals if later messages got through meanwhile.
pub(crate) fn requeue_refused(ctx: &Ctx<'_>, conv: ConversationId) -> Result<usize, StoreError> {
    requeue_failed(ctx, conv, BLOCKED).map(|requeued| requeued.len())
}

/// Puts the messages that failed with refusal `code` back in the outbox, as
/// [`requeue_refused`] does for blocked ones. Returns their sequence numbers and ids.
pub(crate) fn requeue_failed(
    ctx: &Ctx<'_>,
    conv: ConversationId,
    code: u64,
) -> Result<Vec<(Seq, MessageId)>, StoreError> {
    let contact = ctx.contact(&conv)?;
    if contact.kind == ContactKind::Request {
        return Err(StoreError::NotAContact);
    }
    let refused: Vec<LogEntry> = ctx
        .conversation_rows::<LogEntry>(Table::Log, &conv)?
        .into_iter()
        .filter(|e| {
            e.direction == Direction::Outgoing
                && matches!(e.status, Status::Failed { code: c, .. } if c == code)
        })
        .collect();
    let mut log = ctx.open(Table::Log)?;
    let mut outbox = ctx.open(Table::Outbox)?;
    for mut entry in refused.iter().cloned() {
        let row = OutboxRow {
            seq: entry.seq,
            id: entry.id,
            sent_at: entry.sent_at,
            position: entry.position,
            attempts: 0,
            next_attempt_at: entry.sent_at,
            // Queued again from its text: sealed again before its next send.
            envelope: None,
        };
        put(ctx.keys, &mut outbox, Table::Outbox, &rows::outbox_key(&conv, entry.seq), &row)?;
        entry.status = Status::Queued;
        put(ctx.keys, &mut log, Table::Log, &rows::log_key(&conv, entry.position), &entry)?;
    }
    Ok(refused.iter().map(|e| (e.seq, e.id)).collect())
}

/// Sets a setting.
pub(crate) fn set_setting(ctx: &Ctx<'_>, name: &str, value: Vec<u8>) -> Result<(), StoreError> {
    let key = rows::setting_key(ctx.keys, name);
    put(
        ctx.keys,
        &mut *ctx.open(Table::Settings)?,
        Table::Settings,
        &key,
        &ciborium::Value::Bytes(value),
    )
}
