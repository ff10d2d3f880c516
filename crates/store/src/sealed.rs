//! Sealed messages in the store: the Olm account, each conversation's sessions and the peer's
//! signed keys, stepped and committed with the messages they seal or open, in one transaction
//! (`specs/sealed.md` §7.1).
//!
//! Sealing and opening never change the kept state in place (`tincan-seal` works on copies):
//! each operation reads the state, computes, and writes the state after the ratchet step in the
//! same transaction as the outbox row or the log entries and seen ids. A crash before the
//! commit leaves the old state, which opens (or seals) the same messages again; a crash after
//! leaves everything together.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use tincan_identity::{Identity, PublicKey};
use tincan_seal::{
    Account, Contents, Envelope, Outgoing, SealError, Sessions, SignedOlmKeys, VerifiedKeys,
};
use tincan_wire::{MessageId, PeerIdBytes, Seq, UnixMillis, Username};

use crate::ops::{self, Ctx, OutboxRow};
use crate::rows::{self, get, put};
use crate::tables::Table;
use crate::{Contact, ConversationId, Incoming, LogEntry, Received, RequestLimits};
use crate::{KeysUpdate, SealedReceipt, StoreError};

/// The key of the Olm account in the Olm table; conversations' sessions are under their ids.
pub(crate) const OLM_ACCOUNT: &[u8] = b"account";

/// How many conversations' sessions [`OlmCache`] keeps unpickled (a few KiB each).
const CACHED_SESSIONS: usize = 256;

/// The Olm state the writer last read or wrote, unpickled, beside the bytes it was read from
/// or written as. Unpickling derives public keys (an account costs more than sealing a
/// message), and every queued message needs the account and its conversation's sessions.
/// An entry serves only a transaction that reads exactly its bytes, so a transaction that did
/// not commit, or a write made elsewhere, leaves nothing stale: the next read misses and
/// unpickles. It lives on the writer thread, for the store's lifetime; vodozemac zeroizes
/// the keys it drops.
#[derive(Default)]
pub(crate) struct OlmCache {
    account: RefCell<Option<Cached<Account>>>,
    sessions: RefCell<HashMap<ConversationId, Cached<Sessions>>>,
}

/// Unpickled state, beside the pickle it was read from or written as.
type Cached<T> = (Vec<u8>, Rc<T>);

impl OlmCache {
    fn account(&self, bytes: &[u8]) -> Option<Rc<Account>> {
        let cached = self.account.borrow();
        cached.as_ref().filter(|(kept, _)| kept[..] == *bytes).map(|(_, a)| a.clone())
    }

    fn keep_account(&self, bytes: Vec<u8>, account: Rc<Account>) {
        *self.account.borrow_mut() = Some((bytes, account));
    }

    fn sessions(&self, conv: &ConversationId, bytes: &[u8]) -> Option<Rc<Sessions>> {
        let cached = self.sessions.borrow();
        cached.get(conv).filter(|(kept, _)| kept[..] == *bytes).map(|(_, s)| s.clone())
    }

    fn keep_sessions(&self, conv: ConversationId, bytes: Vec<u8>, sessions: Rc<Sessions>) {
        let mut cached = self.sessions.borrow_mut();
        if cached.len() >= CACHED_SESSIONS && !cached.contains_key(&conv) {
            cached.clear();
        }
        cached.insert(conv, (bytes, sessions));
    }
}

/// A byte string of the Olm table.
fn get_blob(ctx: &Ctx<'_>, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
    let value: Option<ciborium::Value> = get(ctx.keys, &*ctx.open(Table::Olm)?, Table::Olm, key)?;
    match value {
        None => Ok(None),
        Some(ciborium::Value::Bytes(b)) => Ok(Some(b)),
        Some(_) => Err(corrupted()),
    }
}

fn put_blob(ctx: &Ctx<'_>, key: &[u8], value: Vec<u8>) -> Result<(), StoreError> {
    put(ctx.keys, &mut *ctx.open(Table::Olm)?, Table::Olm, key, &ciborium::Value::Bytes(value))
}

fn corrupted() -> StoreError {
    StoreError::Corrupted { table: Table::Olm.purpose() }
}

fn account(ctx: &Ctx<'_>) -> Result<Rc<Account>, StoreError> {
    let bytes = get_blob(ctx, OLM_ACCOUNT)?.ok_or(StoreError::NoOlmAccount)?;
    if let Some(account) = ctx.olm.account(&bytes) {
        return Ok(account);
    }
    let account = Rc::new(Account::from_pickle(&bytes, &ctx.keys.pickle).map_err(|_| corrupted())?);
    ctx.olm.keep_account(bytes, account.clone());
    Ok(account)
}

fn put_account(ctx: &Ctx<'_>, account: Rc<Account>) -> Result<(), StoreError> {
    let bytes = account.pickle(&ctx.keys.pickle);
    put_blob(ctx, OLM_ACCOUNT, bytes.clone())?;
    ctx.olm.keep_account(bytes, account);
    Ok(())
}

/// The conversation's sessions as this batch leaves them so far: changed earlier in it, or
/// kept.
fn current_sessions(
    ctx: &Ctx<'_>,
    conv: &ConversationId,
) -> Result<Option<Rc<Sessions>>, StoreError> {
    if let Some(pending) = ctx.sessions.borrow().get(conv) {
        return Ok(pending.clone());
    }
    let Some(bytes) = get_blob(ctx, &conv.0)? else { return Ok(None) };
    if let Some(sessions) = ctx.olm.sessions(conv, &bytes) {
        return Ok(Some(sessions));
    }
    let sessions =
        Rc::new(Sessions::from_pickle(&bytes, &ctx.keys.pickle).map_err(|_| corrupted())?);
    ctx.olm.keep_sessions(*conv, bytes, sessions.clone());
    Ok(Some(sessions))
}

fn sessions(
    ctx: &Ctx<'_>,
    conv: &ConversationId,
    peer: PublicKey,
) -> Result<Rc<Sessions>, StoreError> {
    // Sessions kept under a conversation are its pinned peer's: a re-pinned key starts afresh.
    Ok(current_sessions(ctx, conv)?
        .filter(|s| s.peer() == peer)
        .unwrap_or_else(|| Rc::new(Sessions::new(peer))))
}

/// Makes `sessions` the conversation's, written when the batch is (`flush_sessions`).
fn put_sessions(ctx: &Ctx<'_>, conv: &ConversationId, sessions: Option<Rc<Sessions>>) {
    ctx.sessions.borrow_mut().insert(*conv, sessions);
}

/// Writes the sessions changed in this batch, each once: pickled, kept in the cache beside
/// the bytes written.
pub(crate) fn flush_sessions(ctx: &Ctx<'_>) -> Result<(), StoreError> {
    let pending = std::mem::take(&mut *ctx.sessions.borrow_mut());
    for (conv, sessions) in pending {
        match sessions {
            Some(sessions) => {
                let bytes = sessions.pickle(&ctx.keys.pickle);
                put_blob(ctx, &conv.0, bytes.clone())?;
                ctx.olm.keep_sessions(conv, bytes, sessions);
            }
            None => {
                ctx.open(Table::Olm)?.remove(&conv.0[..]).map_err(StoreError::storage)?;
            }
        }
    }
    Ok(())
}

/// The ed25519 key inside a pinned PeerId: every tincan PeerId embeds one.
pub(crate) fn peer_key(peer: &PeerIdBytes) -> Result<PublicKey, StoreError> {
    PublicKey::from_peer_id_bytes(peer.as_bytes()).ok_or(StoreError::NotSealable)
}

/// The contact's kept keys record, verified again against its pinned key (the record is kept
/// only once verified; this guards against a re-pinned contact).
fn their_keys(contact: &Contact, peer: &PublicKey) -> Option<VerifiedKeys> {
    let record = SignedOlmKeys::decode(contact.olm_keys.as_deref()?).ok()?;
    record.verify(peer).ok()
}

/// Keeps `account` unless one is kept already; returns the keys record of the one kept.
pub(crate) fn init_account(ctx: &Ctx<'_>, account: Account) -> Result<Vec<u8>, StoreError> {
    if get_blob(ctx, OLM_ACCOUNT)?.is_some() {
        return Ok(self::account(ctx)?.keys().encode());
    }
    let record = account.keys().encode();
    put_account(ctx, Rc::new(account))?;
    Ok(record)
}

/// The key, in the Olm table, of when the fallback key was last rotated (u64 ms, big-endian).
pub(crate) const OLM_ROTATED: &[u8] = b"rotated";

/// Rotates the account's fallback key if the last rotation is `every` or more before `now`
/// (`specs/sealed.md` §6): the new key is signed under the next serial, the one it replaces
/// still opens pre-key messages, and the one before that is forgotten. The first call only
/// starts the clock. Returns the new keys record when it rotated.
pub(crate) fn rotate_fallback_key(
    ctx: &Ctx<'_>,
    identity: &Identity,
    now: UnixMillis,
    every: std::time::Duration,
) -> Result<Option<Vec<u8>>, StoreError> {
    let stamp = |at: UnixMillis| put_blob(ctx, OLM_ROTATED, at.0.to_be_bytes().to_vec());
    let last = match get_blob(ctx, OLM_ROTATED)? {
        None => return stamp(now).map(|()| None),
        Some(bytes) => u64::from_be_bytes(bytes.try_into().map_err(|_| corrupted())?),
    };
    // A stamp ahead of the clock (the clock was set back): the period starts again now, so a
    // clock once far ahead cannot stop rotation until it catches up.
    if last > now.0 {
        return stamp(now).map(|()| None);
    }
    let every = u64::try_from(every.as_millis()).unwrap_or(u64::MAX);
    if now.0 - last < every {
        return Ok(None);
    }
    let bytes = get_blob(ctx, OLM_ACCOUNT)?.ok_or(StoreError::NoOlmAccount)?;
    let mut account = Account::from_pickle(&bytes, &ctx.keys.pickle).map_err(|_| corrupted())?;
    account.rotate_fallback_key(identity);
    let record = account.keys().encode();
    put_account(ctx, Rc::new(account))?;
    stamp(now)?;
    Ok(Some(record))
}

/// What sealing for one contact works on: the account and the sessions, read once.
struct Sealer {
    account: Rc<Account>,
    sessions: Rc<Sessions>,
    theirs: Option<VerifiedKeys>,
    changed: bool,
}

impl Sealer {
    fn new(ctx: &Ctx<'_>, contact: &Contact) -> Result<Sealer, StoreError> {
        let conv = &contact.conversation;
        let current = current_sessions(ctx, conv)?;
        // The pinned key, parsed again only when the sessions are not already its own (a
        // parse costs a point decompression, as much as a third of sealing a message).
        let sessions = match current {
            Some(s) if s.peer().peer_id_bytes()[..] == *contact.peer_id.as_bytes() => s,
            _ => sessions(ctx, conv, peer_key(&contact.peer_id)?)?,
        };
        let peer = sessions.peer();
        let theirs = if sessions.is_empty() { their_keys(contact, &peer) } else { None };
        Ok(Sealer { account: account(ctx)?, sessions, theirs, changed: false })
    }

    /// Seals `entry`, claiming `from`; `None` when there is no session yet and no keys of the
    /// peer to start one.
    fn seal(&mut self, from: &Username, entry: &LogEntry) -> Result<Option<Vec<u8>>, StoreError> {
        let contents =
            Contents { from: from.clone(), sent_at: entry.sent_at, text: entry.text.clone() };
        let message = Outgoing { id: entry.id, seq: entry.seq, contents };
        match self.sessions.seal(&self.account, self.theirs.as_ref(), message) {
            Ok(sealed) => {
                self.sessions = Rc::new(sealed.sessions);
                self.changed = true;
                Ok(Some(sealed.envelope.encode()))
            }
            Err(SealError::NoKeys) => Ok(None),
            Err(e) => Err(StoreError::Sealing(e.to_string())),
        }
    }

    /// Writes the sessions after the ratchet steps, if any.
    fn finish(self, ctx: &Ctx<'_>, conv: &ConversationId) -> Result<(), StoreError> {
        if self.changed {
            put_sessions(ctx, conv, Some(self.sessions));
        }
        Ok(())
    }
}

/// Seals a message being queued (`ops::enqueue`): its envelope, or `None` when the peer's
/// keys are not known yet, or when the message queued before it is not sealed yet (it is
/// sealed before its first send, by [`seal_queued`]). Either way the ratchet's chain follows
/// the sequence numbers: unsealed queued messages always come after the sealed ones, so a
/// recipient opening in order never skips more message keys than Olm keeps.
pub(crate) fn seal_new(
    ctx: &Ctx<'_>,
    contact: &Contact,
    from: &Username,
    entry: &LogEntry,
) -> Result<Option<Vec<u8>>, StoreError> {
    if let Some(before) = entry.seq.get().checked_sub(1).and_then(|s| Seq::new(s).ok()) {
        let key = rows::outbox_key(&contact.conversation, before);
        let row: Option<OutboxRow> =
            get(ctx.keys, &*ctx.open(Table::Outbox)?, Table::Outbox, &key)?;
        if row.is_some_and(|r| r.envelope.is_none()) {
            return Ok(None);
        }
    }
    let mut sealer = Sealer::new(ctx, contact)?;
    let envelope = sealer.seal(from, entry)?;
    sealer.finish(ctx, &contact.conversation)?;
    Ok(envelope)
}

/// The envelopes of the queued messages `seqs`, in order: the one each outbox row holds, or,
/// for a row without one, sealed now and kept in the row. Never seals a message twice, and
/// seals in sequence order: every unsealed message queued before the last of `seqs` is sealed
/// too, lowest first (see [`seal_new`]). Messages no longer queued are skipped.
/// [`StoreError::NoPeerKeys`] when a message needs a new session and the peer's keys are not
/// known; the ones sealed before it stay sealed.
pub(crate) fn seal_queued(
    ctx: &Ctx<'_>,
    conv: ConversationId,
    from: &Username,
    seqs: &[Seq],
) -> Result<Vec<(Seq, Vec<u8>)>, StoreError> {
    let Some(last) = seqs.iter().max() else { return Ok(Vec::new()) };
    let contact = ctx.contact(&conv)?;
    let queued: Vec<OutboxRow> =
        ctx.conversation_rows_in(Table::Outbox, &conv, 0..last.get().saturating_add(1))?;
    let mut sealer: Option<Sealer> = None;
    let mut envelopes = HashMap::with_capacity(queued.len());
    let mut missing_keys = false;
    for mut row in queued {
        if let Some(envelope) = row.envelope {
            envelopes.insert(row.seq, envelope);
            continue;
        }
        let log_key = rows::log_key(&conv, row.position);
        let entry: LogEntry = get(ctx.keys, &*ctx.open(Table::Log)?, Table::Log, &log_key)?
            .ok_or(StoreError::Corrupted { table: Table::Log.purpose() })?;
        let sealer = match &mut sealer {
            Some(sealer) => sealer,
            None => sealer.insert(Sealer::new(ctx, &contact)?),
        };
        let Some(envelope) = sealer.seal(from, &entry)? else {
            missing_keys = true;
            break;
        };
        row.envelope = Some(envelope.clone());
        let key = rows::outbox_key(&conv, row.seq);
        put(ctx.keys, &mut *ctx.open(Table::Outbox)?, Table::Outbox, &key, &row)?;
        envelopes.insert(row.seq, envelope);
    }
    if let Some(sealer) = sealer {
        sealer.finish(ctx, &conv)?;
    }
    if missing_keys {
        return Err(StoreError::NoPeerKeys);
    }
    Ok(seqs.iter().filter_map(|seq| envelopes.remove(seq).map(|e| (*seq, e))).collect())
}

/// Where a keys record comes from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum KeysSource {
    /// The peer itself: its answer on a connection authenticated as the pinned PeerId.
    Peer,
    /// A directory (a phonebook's record), which may serve an old record.
    Directory,
}

/// Keeps the contact's keys record if it verifies against the pinned key and its serial is
/// higher than the kept one's (`specs/sealed.md` §2.1); from a directory, not while the
/// contact awaits its keys from the peer itself (§8).
pub(crate) fn set_peer_keys(
    ctx: &Ctx<'_>,
    conv: ConversationId,
    record: Vec<u8>,
    source: KeysSource,
) -> Result<KeysUpdate, StoreError> {
    let mut contact = ctx.contact(&conv)?;
    let peer = peer_key(&contact.peer_id)?;
    let verified = match SignedOlmKeys::decode(&record).and_then(|r| r.verify(&peer)) {
        Ok(verified) => verified,
        Err(e) => return Ok(KeysUpdate::Refused(e)),
    };
    if source == KeysSource::Directory && contact.awaiting_peer_keys {
        return Ok(KeysUpdate::Kept);
    }
    Ok(keep_keys(ctx, &mut contact, &peer, verified, source))
}

fn keep_keys(
    ctx: &Ctx<'_>,
    contact: &mut Contact,
    peer: &PublicKey,
    verified: VerifiedKeys,
    source: KeysSource,
) -> KeysUpdate {
    let kept = their_keys(contact, peer).map(|k| k.keys().serial);
    let serial = verified.keys().serial;
    let heard = source == KeysSource::Peer && contact.awaiting_peer_keys;
    if heard {
        contact.awaiting_peer_keys = false;
    }
    match kept {
        Some(kept) if kept >= serial => {
            if heard {
                ctx.save(contact.clone());
            }
            KeysUpdate::Kept
        }
        _ => {
            contact.olm_keys = Some(verified.record().encode());
            ctx.save(contact.clone());
            KeysUpdate::Updated { serial }
        }
    }
}

/// Stores the sealed messages `envelopes` from `peer` (`specs/sealed.md` §7.1). Seen ids are
/// acknowledged without opening; a blocked sender is refused without opening; a message
/// request's quota counts each envelope's body. The others are opened in order, each on the
/// state the previous one returned, and the sessions, the account, the sender's newer keys,
/// the messages and their seen ids are written together. A stranger's first message makes a
/// message request under the name sealed inside it (`max_requests` bounds them).
pub(crate) fn receive_sealed(
    ctx: &Ctx<'_>,
    peer: PublicKey,
    envelopes: Vec<Envelope>,
    now: UnixMillis,
    limits: RequestLimits,
) -> Result<SealedReceipt, StoreError> {
    let peer_bytes = PeerIdBytes::new(&peer.peer_id().to_bytes())
        .map_err(|_| StoreError::Corrupted { table: Table::Peers.purpose() })?;
    let mut account = account(ctx)?;
    let found: Option<ConversationId> = get(
        ctx.keys,
        &*ctx.open(Table::Peers)?,
        Table::Peers,
        &rows::peer_key(ctx.keys, &peer_bytes),
    )?;
    // A stranger's first message, opened to learn the name sealed inside it.
    let mut first: Option<tincan_seal::Opened> = None;
    let (mut contact, new_request) = match found {
        Some(conv) => (ctx.contact(&conv)?, false),
        None => {
            // A stranger has no sessions yet, so its first message opens as it will in the loop
            // below, which takes this result; nothing is kept of a stranger whose message does
            // not open.
            let opened = match Sessions::new(peer).open(&account, &envelopes[0]) {
                Ok(opened) => opened,
                Err(e) => {
                    let outcomes = vec![Received::Unopened(e); envelopes.len()];
                    return Ok(SealedReceipt::refused(outcomes));
                }
            };
            let claimed = opened.contents.from.clone();
            first = Some(opened);
            let contact =
                ops::add_request(ctx, peer_bytes.clone(), claimed, now, limits.max_requests)?;
            (contact, true)
        }
    };
    let conv = contact.conversation;
    if contact.blocked {
        let outcomes = vec![Received::Blocked; envelopes.len()];
        return Ok(SealedReceipt {
            contact: Some(contact),
            new_request,
            ..SealedReceipt::refused(outcomes)
        });
    }
    let fresh = ops::unseen(ctx, &conv, envelopes.iter().map(|e| e.id))?;
    let mut state = sessions(ctx, &conv, peer)?;
    let (mut opened_any, mut account_changed, mut new_session) = (false, false, false);
    let mut newest_keys: Option<VerifiedKeys> = None;
    let mut outcomes = Vec::with_capacity(envelopes.len());
    let mut stored = Vec::new();
    // The quota as it will be once the messages accepted so far are stored.
    let mut planned = contact.clone();
    for (i, (envelope, key)) in envelopes.iter().zip(fresh).enumerate() {
        let Some(key) = key else {
            outcomes.push(Received::Duplicate);
            continue;
        };
        let size = envelope.body.len() as u64;
        if !ops::within_quota(&planned, size, limits) {
            outcomes.push(Received::OverQuota);
            continue;
        }
        let opened = match first
            .take()
            .filter(|_| i == 0)
            .map_or_else(|| state.open(&account, envelope), Ok)
        {
            Ok(opened) => opened,
            Err(e) => {
                outcomes.push(Received::Unopened(e));
                continue;
            }
        };
        state = Rc::new(opened.sessions);
        opened_any = true;
        planned.log_len += 1;
        planned.request_bytes += size;
        new_session |= opened.new_session;
        if let Some(next) = opened.account {
            account = Rc::new(next);
            account_changed = true;
        }
        if let Some(keys) = opened.sender_keys
            && newest_keys.as_ref().is_none_or(|k| k.keys().serial < keys.keys().serial)
        {
            newest_keys = Some(keys);
        }
        let incoming = Incoming {
            id: opened.id,
            seq: opened.seq,
            sent_at: opened.contents.sent_at,
            from: opened.contents.from,
            text: opened.contents.text,
        };
        stored.push((outcomes.len(), key, incoming, size));
        outcomes.push(Received::Duplicate);
    }
    // Everything is decided: now the writes.
    if opened_any {
        put_sessions(ctx, &conv, Some(state));
    }
    if account_changed {
        put_account(ctx, account)?;
    }
    let keys = newest_keys.map(|k| keep_keys(ctx, &mut contact, &peer, k, KeysSource::Peer));
    for (slot, key, incoming, size) in stored {
        outcomes[slot] = ops::store_incoming(ctx, &mut contact, key, incoming, size, now)?;
    }
    ctx.save(contact.clone());
    Ok(SealedReceipt { contact: Some(contact), new_request, new_session, keys, outcomes })
}

/// The refusal code of `no session` (`specs/wire.md` §5.1).
const NO_SESSION: u64 = 11;

/// The peer could not open our messages (it lost our session, `specs/sealed.md` §8): forgets
/// the sessions and the peer's kept keys (fresh ones are asked for), takes the envelopes off
/// every queued message, and queues again the messages refused for want of a session. They are
/// all sealed again, in a new session, before their next send. Returns the sequence numbers
/// and ids of those queued again.
pub(crate) fn restart_session(
    ctx: &Ctx<'_>,
    conv: ConversationId,
) -> Result<Vec<(Seq, MessageId)>, StoreError> {
    let mut contact = ctx.contact(&conv)?;
    let queued: Vec<OutboxRow> = ctx.conversation_rows(Table::Outbox, &conv)?;
    drop_sessions(ctx, &conv)?;
    contact.olm_keys = None;
    contact.awaiting_peer_keys = true;
    ctx.save(contact);
    {
        let mut outbox = ctx.open(Table::Outbox)?;
        for mut row in queued.into_iter().filter(|r| r.envelope.is_some()) {
            row.envelope = None;
            put(ctx.keys, &mut outbox, Table::Outbox, &rows::outbox_key(&conv, row.seq), &row)?;
        }
    }
    ops::requeue_failed(ctx, conv, NO_SESSION)
}

/// Makes `from`'s sessions (if any, and if `from` is given) those of `to`, in place of
/// `to`'s own.
pub(crate) fn move_sessions(
    ctx: &Ctx<'_>,
    from: Option<ConversationId>,
    to: ConversationId,
) -> Result<(), StoreError> {
    let moved = match from {
        Some(from) => {
            let sessions = current_sessions(ctx, &from)?;
            drop_sessions(ctx, &from)?;
            sessions
        }
        None => None,
    };
    put_sessions(ctx, &to, moved);
    Ok(())
}

/// Deletes the conversation's sessions: its next message starts a new one.
pub(crate) fn drop_sessions(ctx: &Ctx<'_>, conv: &ConversationId) -> Result<(), StoreError> {
    put_sessions(ctx, conv, None);
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.
    use super::*;
    use tincan_identity::Identity;

    /// What a transaction that did not commit cached is never served: only the exact bytes
    /// read get the unpickled state, and the sessions kept stay bounded.
    #[test]
    fn the_cache_serves_only_the_bytes_it_was_given() {
        let cache = OlmCache::default();
        let identity = Identity::generate().unwrap();
        let account = Rc::new(Account::generate(&identity));
        cache.keep_account(b"written".to_vec(), account.clone());
        assert!(Rc::ptr_eq(&cache.account(b"written").unwrap(), &account));
        assert!(cache.account(b"committed before").is_none());
        assert!(cache.account(b"writte").is_none());

        let peer = Identity::generate().unwrap().public_key();
        let conv = |n: usize| {
            let mut id = [0; 16];
            id[..8].copy_from_slice(&(n as u64).to_be_bytes());
            ConversationId(id)
        };
        cache.keep_sessions(conv(0), b"s0".to_vec(), Rc::new(Sessions::new(peer)));
        assert!(cache.sessions(&conv(0), b"s0").is_some());
        assert!(cache.sessions(&conv(0), b"s1").is_none());
        assert!(cache.sessions(&conv(1), b"s0").is_none(), "another conversation's bytes");
        for n in 1..CACHED_SESSIONS * 2 {
            cache.keep_sessions(conv(n), n.to_be_bytes().to_vec(), Rc::new(Sessions::new(peer)));
            assert!(cache.sessions.borrow().len() <= CACHED_SESSIONS);
        }
        let last = CACHED_SESSIONS * 2 - 1;
        assert!(cache.sessions(&conv(last), &last.to_be_bytes()).is_some());
    }
}
