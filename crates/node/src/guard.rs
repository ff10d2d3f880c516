//! Per-peer limits on inbound requests: a token bucket, a cap on requests being processed, and
//! strikes for invalid frames that lead to a temporary ban.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::PeerId;

/// Inbound limits. Every one is finite.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Requests a peer may send per second, sustained. A peer streaming at full speed sends
    /// about one request per round trip (up to 64 messages each): a few hundred per second.
    pub requests_per_second: f64,
    /// Requests a peer may send in a burst.
    pub request_burst: f64,
    /// Requests of one peer being stored at once; more are refused as rate limited. This is
    /// what bounds the work and memory one peer can cause: a well-behaved peer has one in
    /// flight.
    pub max_pending_per_peer: u32,
    /// Invalid frames tolerated per peer within `strike_window` before it is banned.
    pub max_strikes: u32,
    /// The window for counting strikes.
    pub strike_window: Duration,
    /// How long a banned peer is disconnected and refused.
    pub ban: Duration,
    /// Concurrent streams per connection (yamux and request-response).
    pub max_streams_per_connection: usize,
    /// Established inbound connections, in all.
    pub max_incoming_connections: u32,
    /// Established connections per peer.
    pub max_connections_per_peer: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            requests_per_second: 1000.0,
            request_burst: 2000.0,
            max_pending_per_peer: 8,
            max_strikes: 8,
            strike_window: Duration::from_secs(60),
            ban: Duration::from_secs(300),
            max_streams_per_connection: 32,
            max_incoming_connections: 128,
            max_connections_per_peer: 4,
        }
    }
}

/// What to do with an inbound request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Process it.
    Yes,
    /// Refuse it as rate limited.
    RateLimited,
}

#[derive(Debug)]
struct PeerState {
    tokens: f64,
    updated: Instant,
    pending: u32,
    strikes: u32,
    first_strike: Instant,
}

/// Most peers whose state is kept; more only while requests of theirs are pending, which the
/// swarm's connection limits bound.
const MAX_TRACKED: usize = 4096;

/// The limits' state, per peer, kept across reconnects until it is as good as new.
#[derive(Debug)]
pub(crate) struct Guard {
    limits: Limits,
    peers: HashMap<PeerId, PeerState>,
}

impl Guard {
    pub(crate) fn new(limits: Limits) -> Guard {
        Guard { limits, peers: HashMap::new() }
    }

    fn state(&mut self, peer: PeerId, now: Instant) -> &mut PeerState {
        let burst = self.limits.request_burst;
        self.peers.entry(peer).or_insert(PeerState {
            tokens: burst,
            updated: now,
            pending: 0,
            strikes: 0,
            first_strike: now,
        })
    }

    /// Takes a token for a request from `peer`.
    pub(crate) fn admit(&mut self, peer: PeerId, now: Instant) -> Admit {
        let (rate, burst, max_pending) = (
            self.limits.requests_per_second,
            self.limits.request_burst,
            self.limits.max_pending_per_peer,
        );
        let state = self.state(peer, now);
        state.tokens =
            (state.tokens + now.duration_since(state.updated).as_secs_f64() * rate).min(burst);
        state.updated = now;
        if state.tokens < 1.0 || state.pending >= max_pending {
            return Admit::RateLimited;
        }
        state.tokens -= 1.0;
        state.pending += 1;
        Admit::Yes
    }

    /// A request admitted earlier was answered.
    pub(crate) fn done(&mut self, peer: PeerId) {
        if let Some(state) = self.peers.get_mut(&peer) {
            state.pending = state.pending.saturating_sub(1);
        }
    }

    /// `peer` sent something invalid. Returns true when it should be banned.
    pub(crate) fn strike(&mut self, peer: PeerId, now: Instant) -> bool {
        let (window, max) = (self.limits.strike_window, self.limits.max_strikes);
        let state = self.state(peer, now);
        if now.duration_since(state.first_strike) > window {
            state.strikes = 0;
            state.first_strike = now;
        }
        state.strikes += 1;
        state.strikes >= max
    }

    /// Forgets peers whose state is as good as new: nothing pending, no strike within the
    /// window, tokens refilled. A peer that reconnects keeps its strikes and its tokens until
    /// then, so that reconnecting does not wipe its record. Past [`MAX_TRACKED`] peers, idle
    /// ones go first, whatever their state.
    pub(crate) fn prune(&mut self, now: Instant) {
        let Limits { strike_window, request_burst, requests_per_second, .. } = self.limits;
        let refill = Duration::from_secs_f64((request_burst / requests_per_second).max(0.0));
        self.peers.retain(|_, s| {
            s.pending > 0
                || (s.strikes > 0 && now.saturating_duration_since(s.first_strike) <= strike_window)
                || now.saturating_duration_since(s.updated) < refill
        });
        if self.peers.len() > MAX_TRACKED {
            let idle: Vec<PeerId> = self
                .peers
                .iter()
                .filter(|(_, s)| s.pending == 0)
                .map(|(p, _)| *p)
                .take(self.peers.len() - MAX_TRACKED)
                .collect();
            for peer in idle {
                self.peers.remove(&peer);
            }
        }
    }

    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_pending_and_strikes() {
        let limits = Limits {
            request_burst: 3.0,
            requests_per_second: 1.0,
            max_pending_per_peer: 2,
            max_strikes: 3,
            ..Limits::default()
        };
        let mut guard = Guard::new(limits);
        let peer = PeerId::random();
        let t0 = Instant::now();
        assert_eq!(guard.admit(peer, t0), Admit::Yes);
        assert_eq!(guard.admit(peer, t0), Admit::Yes);
        assert_eq!(guard.admit(peer, t0), Admit::RateLimited, "two pending at most");
        guard.done(peer);
        assert_eq!(guard.admit(peer, t0), Admit::Yes);
        guard.done(peer);
        guard.done(peer);
        assert_eq!(guard.admit(peer, t0), Admit::RateLimited, "out of tokens");
        assert_eq!(guard.admit(peer, t0 + Duration::from_secs(1)), Admit::Yes);
        assert!(!guard.strike(peer, t0));
        assert!(!guard.strike(peer, t0));
        assert!(guard.strike(peer, t0));
        assert!(!guard.strike(peer, t0 + Duration::from_secs(120)), "strikes expire");
    }

    /// Issue 9 of the hardening review: reconnecting used to reset a peer's strikes, so a peer
    /// that reconnected after each few invalid frames was never banned.
    #[test]
    fn issue_10_strikes_survive_a_reconnect_until_they_expire() {
        let limits = Limits { max_strikes: 3, ..Limits::default() };
        let mut guard = Guard::new(limits);
        let peer = PeerId::random();
        let t0 = Instant::now();
        assert!(!guard.strike(peer, t0));
        assert!(!guard.strike(peer, t0));
        // The peer disconnects; the engine prunes on its timer; the peer comes back.
        guard.prune(t0 + Duration::from_secs(10));
        assert!(guard.strike(peer, t0 + Duration::from_secs(11)), "banned on the third strike");
        // Long after the window, a well-behaved peer's state is forgotten.
        guard.prune(t0 + Duration::from_secs(200));
        assert!(guard.peers.is_empty());
    }
}
