//! The bindings and presence, in memory, backed by [`Persist`]. All the rules of
//! `specs/phonebook.md` §3 live here: first come first served, only the owner refreshes or
//! deletes, sequence numbers only go up, presence expires.

use std::collections::{BTreeSet, HashMap};
use std::sync::RwLock;
use std::time::Duration;

use axum::body::Bytes;
use libp2p_identity::PeerId;
use tincan_wire::Username;

use super::persist::{Pending, Persist, PersistError, Stored};
use crate::{Endpoint, Record, SignedDelete, SignedRecord};
pub use tincan_phonebook_client::PeerView;

/// Why a write was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RegistryError {
    #[error("the username belongs to another key")]
    NameTaken,
    #[error("sequence number {got} is not above the current {current}: a replay or an old record")]
    StaleSeq { got: u64, current: u64 },
    #[error(
        "sequence number {got} is ahead of this phonebook's clock by more than the allowed skew; sequence numbers are milliseconds since the epoch"
    )]
    SeqInFuture { got: u64 },
    #[error("no such username")]
    NotFound,
    #[error("only the key that owns the username may delete it")]
    NotOwner,
    #[error(transparent)]
    Persist(#[from] PersistError),
}

#[derive(Clone)]
struct Entry {
    peer_id: PeerId,
    seq: u64,
    presence_until: u64,
    bound_at: u64,
    last_seen: u64,
    /// Set for a released name's tombstone: until when it keeps the highest `seq`.
    released_until: Option<u64>,
    /// The lookup answer with `"online":false`, serialized once whenever the entry changes,
    /// so a lookup copies bytes instead of serializing.
    body: Bytes,
}

impl Entry {
    fn new(username: &Username, peer_id: PeerId, stored: &Stored) -> Entry {
        Entry {
            peer_id,
            seq: stored.seq,
            presence_until: stored.presence_until,
            bound_at: stored.bound_at,
            last_seen: stored.last_seen,
            released_until: stored.released_until,
            body: offline_body(username, stored),
        }
    }

    fn current(&self) -> Current {
        Current {
            peer_id: self.peer_id,
            seq: self.seq,
            bound_at: self.bound_at,
            released_until: self.released_until,
        }
    }

    /// Whether this is a released name's tombstone rather than a binding.
    fn released(&self) -> bool {
        self.released_until.is_some()
    }

    /// The lookup answer as of `now`.
    fn answer(&self, now: u64) -> Bytes {
        if self.presence_until > now { online_body(&self.body) } else { self.body.clone() }
    }
}

const OFFLINE: &[u8] = b"{\"online\":false";
const ONLINE: &[u8] = b"{\"online\":true";

pub(crate) fn offline_body(username: &Username, stored: &Stored) -> Bytes {
    let endpoints: Vec<Endpoint> = stored
        .record
        .iter()
        .flat_map(|r| r.addrs.iter())
        .filter_map(|a| a.parse().ok().and_then(|a| Endpoint::of(&a)))
        .collect();
    let first = endpoints.first();
    let view = PeerView {
        online: false,
        username: username.to_string(),
        peer_id: stored.peer_id.clone(),
        ip: first.map(|e| e.ip.clone()),
        port: first.map(|e| e.port),
        // Version-1 readers refuse a record with a field they do not know: the keys are
        // served beside it (`specs/phonebook.md` §2.5).
        record: stored.record.as_ref().map(SignedRecord::without_olm_keys),
        deletion: stored.deletion.clone(),
        endpoints,
        last_seen: stored.last_seen,
        olm_keys: stored.olm_keys.clone().or_else(|| stored.record.as_ref()?.olm_keys.clone()),
    };
    let mut body = serde_json::to_vec(&view).expect("a view always serializes");
    // Kept for as long as the user is registered: keep only what it needs.
    body.shrink_to_fit();
    Bytes::from(body)
}

pub(crate) fn online_body(offline: &Bytes) -> Bytes {
    debug_assert!(offline.starts_with(OFFLINE));
    let mut out = Vec::with_capacity(offline.len());
    out.extend_from_slice(ONLINE);
    out.extend_from_slice(&offline[OFFLINE.len()..]);
    Bytes::from(out)
}

#[derive(Default)]
struct Index {
    by_name: HashMap<Username, Entry>,
    /// Usernames whose presence has not been seen to expire, in order, for the directory.
    online: BTreeSet<Username>,
    /// Released names' tombstones, by the time they may go.
    tombstones: BTreeSet<(u64, Username)>,
}

impl Index {
    /// Puts `entry` in place of whatever `username` had, keeping the tombstone set in step.
    fn insert(&mut self, username: &Username, entry: Entry) {
        if let Some(until) = entry.released_until {
            self.tombstones.insert((until, username.clone()));
        }
        if let Some(old) = self.by_name.insert(username.clone(), entry)
            && let Some(until) = old.released_until
        {
            self.tombstones.remove(&(until, username.clone()));
        }
    }

    fn remove(&mut self, username: &Username) {
        self.online.remove(username);
        if let Some(old) = self.by_name.remove(username)
            && let Some(until) = old.released_until
        {
            self.tombstones.remove(&(until, username.clone()));
        }
    }
}

/// What a write needs to know of a name as it stands: the row of any backend.
#[derive(Clone, Debug)]
pub(crate) struct Current {
    pub(crate) peer_id: PeerId,
    pub(crate) seq: u64,
    pub(crate) bound_at: u64,
    /// Set for a released name's tombstone: until when it keeps the highest `seq`.
    pub(crate) released_until: Option<u64>,
}

/// The binding rules of `specs/phonebook.md` §3, with no storage: given how a name stands,
/// what a write makes of it, or why it is refused. Every backend applies these, the embedded
/// one under its index lock, PostgreSQL inside the transaction that holds the row.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rules {
    pub(crate) presence_ttl: Duration,
    pub(crate) clock_skew: Duration,
}

impl Rules {
    /// Refuses a sequence number further ahead of `now` than the clock skew: sequence numbers
    /// are the signer's clock in ms, and one far in the future (`u64::MAX`, say) would freeze
    /// the name, since nothing could ever follow it.
    pub(crate) fn check_seq(&self, seq: u64, now: u64) -> Result<(), RegistryError> {
        if seq > now.saturating_add(ms(self.clock_skew)) {
            return Err(RegistryError::SeqInFuture { got: seq });
        }
        Ok(())
    }

    /// What registering `record` at `now` stores, over the name's `current` row.
    pub(crate) fn register(
        &self,
        current: Option<&Current>,
        record: &Record,
        now: u64,
    ) -> Result<(Registered, Stored), RegistryError> {
        self.check_seq(record.seq, now)?;
        let outcome = match current {
            // A released name is free, but its owner's old records stay refused: they
            // would bind it again at old addresses.
            Some(c) if c.released_until.is_some_and(|until| until > now) => {
                if record.seq <= c.seq {
                    return Err(RegistryError::StaleSeq { got: record.seq, current: c.seq });
                }
                Registered::Created
            }
            Some(c) if c.released_until.is_some() => Registered::Created,
            Some(c) if c.peer_id != record.peer_id => return Err(RegistryError::NameTaken),
            Some(c) if record.seq <= c.seq => {
                return Err(RegistryError::StaleSeq { got: record.seq, current: c.seq });
            }
            Some(_) => Registered::Refreshed,
            None => Registered::Created,
        };
        let bound_at = match (current, outcome) {
            (Some(c), Registered::Refreshed) => c.bound_at,
            _ => now,
        };
        Ok((
            outcome,
            Stored {
                peer_id: record.peer_id.to_base58(),
                seq: record.seq,
                // The keys apart from the record, so that a binding file stays readable by a
                // server older than record version 2 (its records refuse unknown fields).
                record: Some(record.signed.without_olm_keys()),
                deletion: None,
                presence_until: record.expires_at.0.min(now.saturating_add(ms(self.presence_ttl))),
                bound_at,
                last_seen: now,
                released_until: None,
                olm_keys: record.signed.olm_keys.clone(),
            },
        ))
    }

    /// What `deletion` by `peer_id` at `now` stores, over the name's `current` row.
    pub(crate) fn delete(
        &self,
        current: Option<&Current>,
        peer_id: PeerId,
        deletion: SignedDelete,
        now: u64,
    ) -> Result<Stored, RegistryError> {
        self.check_seq(deletion.seq, now)?;
        let current =
            current.filter(|c| c.released_until.is_none()).ok_or(RegistryError::NotFound)?;
        if current.peer_id != peer_id {
            return Err(RegistryError::NotOwner);
        }
        if deletion.seq <= current.seq {
            return Err(RegistryError::StaleSeq { got: deletion.seq, current: current.seq });
        }
        let seq = deletion.seq;
        // Released, the name keeps a tombstone with the highest sequence number, until every
        // record signed below it has expired (seq ≤ sign time + skew, and a record lives at
        // most TTL + skew past its arrival).
        let released_until = deletion.release.then(|| {
            seq.max(now).saturating_add(ms(self.presence_ttl)).saturating_add(ms(self.clock_skew))
        });
        Ok(Stored {
            peer_id: peer_id.to_base58(),
            seq,
            record: None,
            deletion: Some(deletion),
            presence_until: 0,
            bound_at: current.bound_at,
            last_seen: now,
            released_until,
            olm_keys: None,
        })
    }
}

/// Whether a registration created the binding or refreshed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Registered {
    Created,
    Refreshed,
}

pub(crate) struct Registry {
    index: RwLock<Index>,
    persist: Option<Persist>,
    presence_ttl: Duration,
    clock_skew: Duration,
}

impl Registry {
    /// A registry holding `loaded` bindings, persisting through `persist` (none: memory only).
    pub(crate) fn new(
        persist: Option<Persist>,
        loaded: Vec<(String, Stored)>,
        presence_ttl: Duration,
    ) -> Registry {
        let mut index = Index::default();
        for (name, stored) in loaded {
            // Entries that no longer parse are skipped rather than trusted; they were written by
            // this server, so this only happens if the file was edited.
            let (Ok(username), Ok(peer_id)) =
                (Username::canonical(&name), stored.peer_id.parse::<PeerId>())
            else {
                tracing::warn!(username = %name, "skipping an unreadable binding");
                continue;
            };
            if stored.released_until.is_none() {
                index.online.insert(username.clone());
            }
            index.insert(&username, Entry::new(&username, peer_id, &stored));
        }
        Registry { index: RwLock::new(index), persist, presence_ttl, clock_skew: Duration::ZERO }
    }

    /// How far ahead of the server's clock a client's may be: it bounds sequence numbers, and
    /// how long a released name keeps its tombstone.
    pub(crate) fn with_clock_skew(mut self, skew: Duration) -> Registry {
        self.clock_skew = skew;
        self
    }

    fn rules(&self) -> Rules {
        Rules { presence_ttl: self.presence_ttl, clock_skew: self.clock_skew }
    }

    /// Registers or refreshes `record`, received at `now`. Returns the lookup answer.
    pub(crate) async fn register(
        &self,
        record: Record,
        now: u64,
    ) -> Result<(Registered, Bytes), RegistryError> {
        let rules = self.rules();
        rules.check_seq(record.seq, now)?;
        let (outcome, answer, pending, previous) = {
            let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
            let previous = index.by_name.get(&record.username).cloned();
            let (outcome, stored) =
                rules.register(previous.as_ref().map(Entry::current).as_ref(), &record, now)?;
            let pending = self.queue_put(&record.username, &stored)?;
            let entry = Entry::new(&record.username, record.peer_id, &stored);
            let answer = entry.answer(now);
            index.online.insert(record.username.clone());
            index.insert(&record.username, entry);
            (outcome, answer, pending, previous)
        };
        if let Err(e) = wait(pending).await {
            self.roll_back(&record.username, record.seq, previous);
            return Err(e.into());
        }
        Ok((outcome, answer))
    }

    /// Takes the user's record down, and releases the username if asked.
    pub(crate) async fn delete(
        &self,
        username: &Username,
        peer_id: PeerId,
        deletion: SignedDelete,
        now: u64,
    ) -> Result<(), RegistryError> {
        let rules = self.rules();
        rules.check_seq(deletion.seq, now)?;
        let (pending, previous) = {
            let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
            let previous = index.by_name.get(username).cloned();
            let seq = deletion.seq;
            let stored = rules.delete(
                previous.as_ref().map(Entry::current).as_ref(),
                peer_id,
                deletion,
                now,
            )?;
            index.online.remove(username);
            let pending = self.queue_put(username, &stored)?;
            index.insert(username, Entry::new(username, peer_id, &stored));
            (pending, (seq, previous))
        };
        if let Err(e) = wait(pending).await {
            self.roll_back(username, previous.0, previous.1);
            return Err(e.into());
        }
        Ok(())
    }

    /// The lookup answer for `username`, with presence as of `now`.
    pub(crate) fn lookup(&self, username: &Username, now: u64) -> Option<Bytes> {
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        index.by_name.get(username).filter(|e| !e.released()).map(|entry| entry.answer(now))
    }

    /// The answers of up to `limit` users online at `now`, in username order, after `after`;
    /// and the username to continue from, if there are more.
    pub(crate) fn online(
        &self,
        after: Option<&Username>,
        limit: usize,
        now: u64,
    ) -> (Vec<Bytes>, Option<String>) {
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        let mut peers = Vec::with_capacity(limit.min(128));
        let range = match after {
            Some(after) => index.online.range::<Username, _>((
                std::ops::Bound::Excluded(after),
                std::ops::Bound::Unbounded,
            )),
            None => index.online.range::<Username, _>(..),
        };
        let mut last = None;
        let mut next = None;
        for name in range {
            let Some(entry) = index.by_name.get(name) else { continue };
            if entry.presence_until <= now {
                continue;
            }
            if peers.len() == limit {
                next = last.map(|n: &Username| n.to_string());
                break;
            }
            peers.push(entry.answer(now));
            last = Some(name);
        }
        (peers, next)
    }

    /// Drops expired presence from the directory, and releases usernames not seen for longer
    /// than `release_after`. Returns how many were released.
    pub(crate) async fn sweep(&self, now: u64, release_after: Option<Duration>) -> usize {
        let pending = {
            let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
            let Index { by_name, online, tombstones } = &mut *index;
            online.retain(|name| by_name.get(name).is_some_and(|e| e.presence_until > now));
            // Tombstones past their time go, and so do names unused for `release_after`
            // (their records have all expired, so they need no tombstone).
            let mut stale: Vec<Username> = tombstones
                .iter()
                .take_while(|(until, _)| *until <= now)
                .map(|(_, name)| name.clone())
                .collect();
            if let Some(after) = release_after {
                let cutoff = now.saturating_sub(ms(after));
                stale.extend(
                    by_name
                        .iter()
                        .filter(|(_, e)| {
                            !e.released() && e.last_seen < cutoff && e.presence_until <= now
                        })
                        .map(|(name, _)| name.clone()),
                );
            }
            let mut pending = Vec::with_capacity(stale.len());
            for name in stale {
                match self.queue_remove(&name) {
                    Ok(p) => {
                        index.remove(&name);
                        pending.push(p);
                    }
                    // The queue is full: leave the rest for the next sweep.
                    Err(_) => break,
                }
            }
            pending
        };
        let released = pending.len();
        for p in pending {
            if let Err(e) = wait(p).await {
                tracing::error!(error = %e, "releasing a stale username failed");
            }
        }
        released
    }

    /// Bindings, and users online now.
    pub(crate) fn counts(&self, now: u64) -> (usize, usize) {
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        let online = index
            .online
            .iter()
            .filter(|n| index.by_name.get(*n).is_some_and(|e| e.presence_until > now))
            .count();
        (index.by_name.len() - index.tombstones.len(), online)
    }

    fn queue_put(
        &self,
        username: &Username,
        stored: &Stored,
    ) -> Result<Option<Pending>, RegistryError> {
        Ok(match &self.persist {
            Some(p) => Some(p.put(username.as_str(), stored)?),
            None => None,
        })
    }

    fn queue_remove(&self, username: &Username) -> Result<Option<Pending>, PersistError> {
        Ok(match &self.persist {
            Some(p) => Some(p.remove(username.as_str())?),
            None => None,
        })
    }

    /// Undoes a change whose write failed, unless a later change replaced it meanwhile.
    fn roll_back(&self, username: &Username, seq: u64, previous: Option<Entry>) {
        let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
        let ours = index.by_name.get(username).is_none_or(|e| e.seq == seq);
        if !ours {
            return;
        }
        match previous {
            Some(entry) => {
                if !entry.released() {
                    index.online.insert(username.clone());
                }
                index.insert(username, entry);
            }
            None => index.remove(username),
        }
    }
}

async fn wait(pending: Option<Pending>) -> Result<(), PersistError> {
    match pending {
        Some(p) => p.wait().await,
        None => Ok(()),
    }
}

pub(crate) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tincan_identity::Identity;
    use tincan_wire::UnixMillis;

    use crate::SignedRecord;

    const RULES: Rules =
        Rules { presence_ttl: Duration::from_secs(300), clock_skew: Duration::from_secs(120) };

    fn record(id: &Identity, seq: u64) -> Record {
        let addrs = ["/ip4/198.18.0.1/tcp/4001".parse().unwrap()];
        let name = Username::new("alice").unwrap();
        SignedRecord::sign(id, &name, &addrs, seq, UnixMillis(seq + 60_000)).verify().unwrap()
    }

    fn current(stored: &Stored) -> Current {
        Current {
            peer_id: stored.peer_id.parse().unwrap(),
            seq: stored.seq,
            bound_at: stored.bound_at,
            released_until: stored.released_until,
        }
    }

    /// Record version 2: the keys are kept beside the record in the binding file, whose
    /// records stay what a version-1 server reads (its `SignedRecord` refuses unknown
    /// fields), and files written before version 2 still load.
    #[test]
    fn keys_are_kept_beside_the_record_in_a_file_older_servers_read() {
        #[derive(serde::Deserialize)]
        #[allow(dead_code)] // Only parsed: the shape a version-1 server reads.
        struct V1Stored {
            record: Option<V1Record>,
        }
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct V1Record {
            username: String,
            peer_id: String,
            addrs: Vec<String>,
            seq: u64,
            expires_at: u64,
            signature: String,
        }
        let alice = Identity::generate().unwrap();
        let keys = tincan_seal::Account::generate(&alice).keys().encode();
        let name = Username::new("alice").unwrap();
        let addrs = ["/ip4/198.18.0.1/tcp/4001".parse().unwrap()];
        let now = 1_000_000;
        let signed = SignedRecord::sign(&alice, &name, &addrs, now, UnixMillis(now + 60_000));
        let record = signed.clone().with_olm_keys(&keys).verify().unwrap();
        let (_, stored) = RULES.register(None, &record, now).unwrap();
        let file = serde_json::to_vec(&stored).unwrap();
        let old: V1Stored = serde_json::from_slice(&file).expect("a version-1 server reads it");
        assert!(old.record.is_some());
        let view: PeerView = serde_json::from_slice(&offline_body(&name, &stored)).unwrap();
        assert_eq!(view.olm_keys, Some(hex::encode(&keys)));

        let before = serde_json::json!({"peer_id": stored.peer_id, "seq": now, "record": signed,
            "deletion": null, "presence_until": now, "bound_at": now, "last_seen": now});
        let loaded: Stored = serde_json::from_value(before).expect("a file from before loads");
        assert_eq!(loaded.olm_keys, None);
    }

    #[test]
    fn the_rules_bind_refresh_refuse_and_release() {
        let (alice, mallory) = (Identity::generate().unwrap(), Identity::generate().unwrap());
        let now = 1_000_000;
        let (outcome, first) = RULES.register(None, &record(&alice, now), now).unwrap();
        assert_eq!(
            (outcome, first.bound_at, first.presence_until),
            (Registered::Created, now, now + 60_000)
        );
        let bound = current(&first);
        let (outcome, later) =
            RULES.register(Some(&bound), &record(&alice, now + 5), now + 5).unwrap();
        assert_eq!((outcome, later.bound_at), (Registered::Refreshed, now), "bound_at is kept");
        assert!(matches!(
            RULES.register(Some(&bound), &record(&mallory, now + 5), now + 5),
            Err(RegistryError::NameTaken)
        ));
        assert!(matches!(
            RULES.register(Some(&current(&later)), &record(&alice, now + 5), now + 6),
            Err(RegistryError::StaleSeq { got, current }) if got == now + 5 && current == now + 5
        ));
        assert!(matches!(
            RULES.register(None, &record(&alice, now + 121_000), now),
            Err(RegistryError::SeqInFuture { .. })
        ));
        // Released by its owner: a tombstone that refuses the old records, then lets anyone in.
        let name = Username::new("alice").unwrap();
        let release = SignedDelete::sign(&alice, &name, now + 10, true);
        assert!(matches!(
            RULES.delete(Some(&current(&later)), mallory.peer_id(), release.clone(), now + 10),
            Err(RegistryError::NotOwner)
        ));
        let tomb =
            RULES.delete(Some(&current(&later)), alice.peer_id(), release, now + 10).unwrap();
        assert_eq!(tomb.released_until, Some(now + 10 + 300_000 + 120_000));
        let tomb = current(&tomb);
        assert!(matches!(
            RULES.register(Some(&tomb), &record(&alice, now + 5), now + 20),
            Err(RegistryError::StaleSeq { .. })
        ));
        let (outcome, taken) =
            RULES.register(Some(&tomb), &record(&mallory, now + 30), now + 30).unwrap();
        assert_eq!((outcome, taken.bound_at), (Registered::Created, now + 30));
        assert!(matches!(
            RULES.delete(
                Some(&tomb),
                alice.peer_id(),
                SignedDelete::sign(&alice, &name, now + 40, false),
                now + 40
            ),
            Err(RegistryError::NotFound)
        ));
    }
}
