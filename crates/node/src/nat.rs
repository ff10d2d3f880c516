//! Reachability behind NAT: which path each connection takes, and our reservation at the relay.
//! Pure bookkeeping; the engine feeds it swarm events and acts on what it answers.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId};

use crate::node::Path;

/// The connections of every peer, with the path each takes.
#[derive(Default)]
pub(crate) struct Paths {
    conns: HashMap<PeerId, HashMap<ConnectionId, Path>>,
    /// Direct connections that DCUtR reported before the swarm did.
    punched_early: HashSet<ConnectionId>,
}

impl Paths {
    /// A connection came up. Returns the peer's best path, if that changed.
    pub(crate) fn established(
        &mut self,
        peer: PeerId,
        id: ConnectionId,
        relayed: bool,
    ) -> Option<Path> {
        let before = self.best(&peer);
        let path = if relayed {
            Path::Relayed
        } else if self.punched_early.remove(&id) {
            Path::Punched
        } else {
            Path::Direct
        };
        self.conns.entry(peer).or_default().insert(id, path);
        self.changed(&peer, before)
    }

    /// DCUtR made `id` by hole punching. Returns the peer's best path, if that changed.
    pub(crate) fn punched(&mut self, peer: PeerId, id: ConnectionId) -> Option<Path> {
        let before = self.best(&peer);
        match self.conns.get_mut(&peer).and_then(|c| c.get_mut(&id)) {
            Some(path) => *path = Path::Punched,
            None => {
                // Bounded: an entry lives only until its connection is reported, which follows
                // at once; a stray one is dropped with the oldest when the set grows.
                if self.punched_early.len() >= 64 {
                    self.punched_early.clear();
                }
                self.punched_early.insert(id);
            }
        }
        self.changed(&peer, before)
    }

    /// A connection closed. Returns the peer's best path (`None`: no connection left), if that
    /// changed.
    pub(crate) fn closed(&mut self, peer: PeerId, id: ConnectionId) -> Option<Option<Path>> {
        let before = self.best(&peer);
        if let Some(conns) = self.conns.get_mut(&peer) {
            conns.remove(&id);
            if conns.is_empty() {
                self.conns.remove(&peer);
            }
        }
        let after = self.best(&peer);
        (after != before).then_some(after)
    }

    /// The relayed connections of `peer` made redundant by a direct one.
    pub(crate) fn redundant(&self, peer: &PeerId) -> Vec<ConnectionId> {
        let Some(conns) = self.conns.get(peer) else { return Vec::new() };
        if !conns.values().any(|p| *p != Path::Relayed) {
            return Vec::new();
        }
        conns.iter().filter(|(_, p)| **p == Path::Relayed).map(|(id, _)| *id).collect()
    }

    /// The best path to `peer`: direct, then punched, then relayed.
    pub(crate) fn best(&self, peer: &PeerId) -> Option<Path> {
        let conns = self.conns.get(peer)?;
        [Path::Direct, Path::Punched, Path::Relayed]
            .into_iter()
            .find(|want| conns.values().any(|p| p == want))
    }

    fn changed(&self, peer: &PeerId, before: Option<Path>) -> Option<Path> {
        let after = self.best(peer);
        (after != before).then_some(after).flatten()
    }
}

/// Our reservation at a relay.
pub(crate) struct Reservation {
    /// The relay we reserve at, one of `candidates`.
    pub(crate) relay: Option<(PeerId, Multiaddr)>,
    /// Every relay the phonebooks announced, in their order.
    pub(crate) candidates: Vec<(PeerId, Multiaddr)>,
    /// The listener on `<relay>/p2p-circuit` while we ask for or hold a reservation.
    pub(crate) listener: Option<ListenerId>,
    pub(crate) reserved: bool,
    pub(crate) last_error: Option<String>,
    failures: u32,
    /// When to try to reserve again after a failure.
    pub(crate) next_try: Instant,
    /// When to ask the phonebooks for the relay again, while none is known.
    pub(crate) next_fetch: Instant,
    pub(crate) fetching: bool,
}

/// The longest wait between reservation attempts while the relay is down.
const MAX_RETRY: Duration = Duration::from_secs(30);
/// How often to ask the phonebooks for a relay while none is known.
pub(crate) const FETCH_INTERVAL: Duration = Duration::from_secs(60);

impl Reservation {
    pub(crate) fn new(now: Instant) -> Reservation {
        Reservation {
            relay: None,
            candidates: Vec::new(),
            listener: None,
            reserved: false,
            last_error: None,
            failures: 0,
            next_try: now,
            next_fetch: now,
            fetching: false,
        }
    }

    /// The address to listen on for a reservation.
    pub(crate) fn circuit_addr(&self) -> Option<Multiaddr> {
        let (peer, addr) = self.relay.as_ref()?;
        let mut addr = addr.clone();
        if !matches!(addr.iter().last(), Some(Protocol::P2p(_))) {
            addr.push(Protocol::P2p(*peer));
        }
        Some(addr.with(Protocol::P2pCircuit))
    }

    /// The phonebooks announced `relays`. The relay we use stays while it is among them and
    /// not failing; otherwise we take the one at `start` (a number of our own, so that peers
    /// spread over the relays), or the one after the failing relay. Returns the relay to
    /// reserve at if it changed.
    pub(crate) fn announced(
        &mut self,
        relays: Vec<(PeerId, Multiaddr)>,
        start: usize,
    ) -> Option<(PeerId, Multiaddr)> {
        self.candidates = relays;
        let current = self.relay.as_ref().and_then(|r| self.candidates.iter().position(|c| c == r));
        let failing = !self.reserved && self.last_error.is_some();
        let pick = match current {
            Some(_) if !failing => return None,
            Some(i) => i + 1,
            None if self.candidates.is_empty() => return None,
            None => start,
        };
        let next = self.candidates[pick % self.candidates.len()].clone();
        (self.relay.as_ref() != Some(&next)).then(|| {
            self.relay = Some(next.clone());
            next
        })
    }

    /// Reserving at the relay failed: moves to the next of the candidates, if there is
    /// another. The backoff stays: relays that are all down are not tried in a storm.
    pub(crate) fn fail_over(&mut self) -> Option<(PeerId, Multiaddr)> {
        let current = self.relay.as_ref()?;
        let i = self.candidates.iter().position(|c| c == current)?;
        let next = self.candidates[(i + 1) % self.candidates.len()].clone();
        (next != *current).then(|| {
            self.relay = Some(next.clone());
            next
        })
    }

    pub(crate) fn accepted(&mut self) {
        self.reserved = true;
        self.failures = 0;
        self.last_error = None;
    }

    /// The listener closed (the relay refused, went away, or we gave it up). Backs off: 1 s,
    /// 2 s, 4 s… up to 30 s, with jitter in `[0, 1)`.
    pub(crate) fn closed(&mut self, error: Option<String>, now: Instant, jitter: f64) {
        self.listener = None;
        self.reserved = false;
        if let Some(error) = error {
            self.failures = self.failures.saturating_add(1);
            self.last_error = Some(error);
            let base = Duration::from_secs(1u64 << self.failures.min(6).saturating_sub(1));
            self.next_try = now + base.min(MAX_RETRY).mul_f64(0.75 + jitter.clamp(0.0, 1.0) / 2.0);
        } else {
            self.next_try = now;
        }
    }
}

/// Whether `addr` goes through a relay.
pub(crate) fn is_relayed(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| p == Protocol::P2pCircuit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_relay_is_left_for_the_next_and_peers_spread_over_them() {
        let now = Instant::now();
        let relays: Vec<(PeerId, Multiaddr)> = (1..=3)
            .map(|i| (PeerId::random(), format!("/ip4/198.18.0.{i}/tcp/4001").parse().unwrap()))
            .collect();
        let mut r = Reservation::new(now);
        assert_eq!(r.announced(relays.clone(), 4), Some(relays[1].clone()), "4 mod 3");
        r.accepted();
        assert_eq!(r.announced(relays.clone(), 0), None, "a working relay stays");
        // It goes away: the next one, with the backoff kept.
        r.closed(Some("connection refused".into()), now, 0.5);
        assert_eq!(r.fail_over(), Some(relays[2].clone()));
        assert!(r.next_try > now, "no storm across relays that are all down");
        r.closed(Some("connection refused".into()), now, 0.5);
        assert_eq!(r.fail_over(), Some(relays[0].clone()), "round the list");
        // A new list without ours: we move; a list of one that fails: we stay on it.
        let others = vec![relays[1].clone()];
        assert_eq!(r.announced(others.clone(), 0), Some(relays[1].clone()));
        r.closed(Some("down".into()), now, 0.5);
        assert_eq!(r.fail_over(), None);
        assert_eq!(r.announced(others, 7), None);
    }

    #[test]
    fn the_best_path_wins_and_changes_are_reported_once() {
        let mut paths = Paths::default();
        let peer = PeerId::random();
        let (relayed, punched) = (ConnectionId::new_unchecked(1), ConnectionId::new_unchecked(2));
        assert_eq!(paths.established(peer, relayed, true), Some(Path::Relayed));
        assert!(paths.redundant(&peer).is_empty(), "the only connection is not redundant");
        assert_eq!(paths.established(peer, punched, false), Some(Path::Direct));
        assert_eq!(paths.punched(peer, punched), Some(Path::Punched));
        assert_eq!(paths.punched(peer, punched), None, "no change, no report");
        assert_eq!(paths.redundant(&peer), vec![relayed]);
        assert_eq!(paths.closed(peer, relayed), None, "still punched");
        assert_eq!(paths.closed(peer, punched), Some(None));
        assert_eq!(paths.best(&peer), None);
    }

    #[test]
    fn a_punch_reported_before_its_connection_counts() {
        let mut paths = Paths::default();
        let peer = PeerId::random();
        let id = ConnectionId::new_unchecked(7);
        assert_eq!(paths.punched(peer, id), None);
        assert_eq!(paths.established(peer, id, false), Some(Path::Punched));
    }

    #[test]
    fn reservations_back_off_and_recover() {
        let now = Instant::now();
        let mut r = Reservation::new(now);
        r.relay = Some((PeerId::random(), "/ip4/198.18.0.2/tcp/4001".parse().unwrap()));
        let addr = r.circuit_addr().unwrap().to_string();
        assert!(
            addr.starts_with("/ip4/198.18.0.2/tcp/4001/p2p/") && addr.ends_with("/p2p-circuit")
        );
        let mut waits = Vec::new();
        for _ in 0..8 {
            r.closed(Some("relay down".into()), now, 0.5);
            waits.push(r.next_try.duration_since(now).as_secs());
        }
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30]);
        r.accepted();
        assert_eq!((r.reserved, r.last_error.as_deref()), (true, None));
        r.closed(Some("again".into()), now, 0.5);
        assert_eq!(r.next_try.duration_since(now).as_secs(), 1, "success resets the backoff");
    }
}
