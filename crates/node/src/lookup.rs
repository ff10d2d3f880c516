//! When to ask the phonebooks where a contact is, and whether an answer is news
//! (`specs/delivery.md` §3), as a pure state machine: time comes in as an argument.
//!
//! The rule that matters: only news ends a backoff early. A record that is merely marked
//! online is not news; a dead peer's record says online until it expires, and treating that as
//! a reason to dial again made a sender loop dial, fail, look up, dial, thousands of times a
//! second.

use std::time::{Duration, Instant};

/// The shortest time between two lookups for one conversation.
pub const MIN_GAP: Duration = Duration::from_secs(5);

/// The lookups of one conversation.
#[derive(Debug, Default)]
pub struct Lookups {
    in_flight: bool,
    last: Option<Instant>,
    /// The highest sequence number of the contact's records seen so far.
    last_seq: Option<u64>,
}

impl Lookups {
    /// Whether a lookup may start now: none in flight, and none in the last [`MIN_GAP`].
    pub fn may_start(&self, now: Instant) -> bool {
        !self.in_flight && self.last.is_none_or(|t| now.saturating_duration_since(t) >= MIN_GAP)
    }

    /// Whether the periodic lookup (every `interval` while messages wait) is due.
    pub fn periodic_due(&self, now: Instant, interval: Duration) -> bool {
        !self.in_flight
            && self.last.is_none_or(|t| now.saturating_duration_since(t) >= interval.max(MIN_GAP))
    }

    /// Whether one is in flight.
    pub fn in_flight(&self) -> bool {
        self.in_flight
    }

    /// A lookup started.
    pub fn started(&mut self, now: Instant) {
        self.in_flight = true;
        self.last = Some(now);
    }

    /// The lookup failed, or found nothing to use.
    pub fn failed(&mut self) {
        self.in_flight = false;
    }

    /// The lookup found the contact's record with sequence number `seq`; `new_addrs` says
    /// whether it brought addresses the contact did not have. Returns whether it is news that
    /// ends a backoff early: the contact published again since the last record we saw (it is
    /// alive), or is somewhere new.
    pub fn answered(&mut self, seq: u64, new_addrs: bool) -> bool {
        self.in_flight = false;
        let newer = self.last_seq.is_some_and(|last| seq > last);
        self.last_seq = Some(self.last_seq.map_or(seq, |last| last.max(seq)));
        newer || new_addrs
    }
}

/// How long a phonebook's answer about a claimed name is reused.
pub const CLAIM_TTL: Duration = Duration::from_secs(600);
/// Most claimed names remembered.
const CLAIM_CACHE: usize = 1024;

/// Who the phonebooks said owns a claimed name (`None`: nobody), for [`CLAIM_TTL`].
#[derive(Debug, Default)]
pub struct ClaimCache {
    entries: std::sync::Mutex<
        std::collections::HashMap<tincan_wire::Username, (Instant, Option<libp2p::PeerId>)>,
    >,
}

impl ClaimCache {
    /// The owner of `name` as of a recent answer, if there is one: `Some(None)` when the name
    /// was not registered.
    pub fn get(
        &self,
        name: &tincan_wire::Username,
        now: Instant,
    ) -> Option<Option<libp2p::PeerId>> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(name)
            .filter(|(at, _)| now.saturating_duration_since(*at) < CLAIM_TTL)
            .map(|(_, owner)| *owner)
    }

    /// Remembers an answer; the oldest go first when the cache is full.
    pub fn put(&self, name: tincan_wire::Username, owner: Option<libp2p::PeerId>, now: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|_, (at, _)| now.saturating_duration_since(*at) < CLAIM_TTL);
        while entries.len() >= CLAIM_CACHE {
            let Some(oldest) =
                entries.iter().min_by_key(|(_, (at, _))| *at).map(|(n, _)| n.clone())
            else {
                break;
            };
            entries.remove(&oldest);
        }
        entries.insert(name, (now, owner));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_are_spaced_and_one_at_a_time() {
        let t0 = Instant::now();
        let mut l = Lookups::default();
        assert!(l.may_start(t0));
        l.started(t0);
        assert!(!l.may_start(t0 + Duration::from_secs(60)), "one in flight");
        l.failed();
        assert!(!l.may_start(t0 + Duration::from_secs(4)), "at least 5 s apart");
        assert!(l.may_start(t0 + MIN_GAP));
        assert!(!l.periodic_due(t0 + Duration::from_secs(29), Duration::from_secs(30)));
        assert!(l.periodic_due(t0 + Duration::from_secs(30), Duration::from_secs(30)));
        assert!(
            !l.periodic_due(t0 + Duration::from_secs(4), Duration::ZERO),
            "the gap holds for the timer too"
        );
    }

    #[test]
    fn issue_10_only_a_newer_record_or_new_addresses_is_news() {
        let mut l = Lookups::default();
        let t0 = Instant::now();
        l.started(t0);
        assert!(!l.answered(100, false), "the first record, at known addresses: nothing new");
        l.started(t0);
        assert!(!l.answered(100, false), "the same record again, online or not");
        l.started(t0);
        assert!(!l.answered(90, false), "an older one");
        l.started(t0);
        assert!(l.answered(150, false), "published again: alive");
        l.started(t0);
        assert!(l.answered(150, true), "somewhere new");
        assert!(!l.in_flight());
    }

    #[test]
    fn claims_are_cached_for_a_while_and_bounded() {
        let cache = ClaimCache::default();
        let t0 = Instant::now();
        let bob = tincan_wire::Username::new("bob").unwrap();
        assert_eq!(cache.get(&bob, t0), None);
        cache.put(bob.clone(), None, t0);
        assert_eq!(cache.get(&bob, t0 + Duration::from_secs(1)), Some(None));
        assert_eq!(cache.get(&bob, t0 + CLAIM_TTL), None, "expired");
        for i in 0..(CLAIM_CACHE + 10) {
            let name = tincan_wire::Username::new(&format!("u{i}")).unwrap();
            cache.put(name, None, t0 + Duration::from_millis(i as u64));
        }
        assert!(cache.entries.lock().unwrap().len() <= CLAIM_CACHE);
    }

    /// The storm, replayed without a clock: a dead peer, a record that stays online, and a
    /// sender that backs off 1, 2, 4… s after each failed dial. Over 30 s it may look up at
    /// most once per 5 s.
    #[test]
    fn issue_10_a_dead_peer_costs_a_bounded_number_of_lookups() {
        let t0 = Instant::now();
        let mut l = Lookups::default();
        let mut lookups = 0;
        let mut now = t0;
        let mut failures = 0u32;
        while now < t0 + Duration::from_secs(30) {
            // A dial fails; it asks for a lookup.
            if l.may_start(now) {
                l.started(now);
                lookups += 1;
                assert!(!l.answered(1, false), "never news");
            }
            // The answer did not cut the backoff: wait it out.
            failures += 1;
            now += crate::delivery::backoff(failures, 0.0);
        }
        assert!(lookups <= 7, "{lookups} lookups in 30 s");
    }
}
