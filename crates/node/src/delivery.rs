//! The sending side of one conversation, as a pure state machine (`specs/delivery.md` §3): what
//! to send next, what an answer means, and when to try again. Time comes in as an argument, so
//! tests drive it without a clock; the engine does the I/O.

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use tincan_wire::{Ack, MAX_BATCH, MessageId, Outcome, Refusal, Seq, Text, UnixMillis};

/// First retry delay; doubled after each failure.
pub const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Longest retry delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// Longest retry delay after the recipient answered `unavailable`: it is there, and cannot
/// store for now (a full disk, say); it recovers by itself, and the messages should follow soon
/// after, not minutes later.
pub const UNAVAILABLE_MAX: Duration = Duration::from_secs(10);

/// A queued message, as loaded from the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Queued {
    /// Sequence number.
    pub seq: Seq,
    /// Message id.
    pub id: MessageId,
    /// When it was written.
    pub sent_at: UnixMillis,
    /// The text.
    pub text: Text,
    /// Times it was sent without an answer that settled it.
    pub attempts: u32,
    /// Its sealed envelope, the bytes every attempt sends; `None` until it is sealed (the
    /// peer's keys were not known when it was queued).
    pub envelope: Option<Vec<u8>>,
}

/// Why sending is on hold, whatever the timers say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hold {
    /// The phonebook showed another key for the contact: nothing is sent until the user trusts
    /// it or keeps the old one.
    KeyChanged,
}

/// What an answer did to the queued messages.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settled {
    /// Stored by the recipient.
    pub delivered: Vec<(Seq, MessageId)>,
    /// Refused for good, with the refusal.
    pub failed: Vec<(Seq, MessageId, Refusal)>,
    /// Sent, not settled, and waiting for another attempt: worth recording in the store.
    pub retry: Vec<Seq>,
}

struct InFlight<R> {
    request: R,
    items: Vec<(Seq, MessageId)>,
}

/// Announced sequence numbers kept above a gap ([`Outgoing::note`]).
const MAX_AHEAD: usize = 4096;

/// The outgoing side of one conversation. `R` identifies a request in flight.
pub struct Outgoing<R> {
    queue: VecDeque<Queued>,
    /// Recently settled sequence numbers, so that a reload racing with the store's commit of
    /// an acknowledgement does not queue them again. Bounded.
    settled: BTreeSet<Seq>,
    /// Whether the store holds queued messages beyond `queue`.
    pub more_in_store: bool,
    /// Every message up to this sequence number is known here (queued, in flight or settled).
    /// Nothing above it is sent: announcements of queued messages race one another, and a
    /// message sent ahead of one still unannounced reaches the recipient out of order, which
    /// a sealed session tolerates only so far (Olm keeps 40 skipped message keys).
    known_through: u64,
    /// Sequence numbers announced above a gap, waiting for it to fill. Bounded.
    ahead: BTreeSet<u64>,
    in_flight: Option<InFlight<R>>,
    failures: u32,
    not_before: Instant,
    hold: Option<Hold>,
}

impl<R: PartialEq + Copy> Outgoing<R> {
    /// An empty conversation, ready to send at once.
    pub fn new(now: Instant) -> Outgoing<R> {
        Outgoing {
            queue: VecDeque::new(),
            settled: BTreeSet::new(),
            more_in_store: false,
            known_through: 0,
            ahead: BTreeSet::new(),
            in_flight: None,
            failures: 0,
            not_before: now,
            hold: None,
        }
    }

    /// Adds queued messages, keeping the queue in sequence order and skipping those already
    /// queued or in flight. Messages may arrive out of order (two sends racing).
    pub fn load(&mut self, entries: impl IntoIterator<Item = Queued>) {
        for entry in entries {
            self.note(entry.seq.get());
            let flying = self
                .in_flight
                .as_ref()
                .is_some_and(|f| f.items.iter().any(|(s, _)| *s == entry.seq));
            if flying || self.settled.contains(&entry.seq) {
                continue;
            }
            if let Err(at) = self.queue.binary_search_by_key(&entry.seq, |q| q.seq) {
                self.queue.insert(at, entry);
            }
        }
    }

    /// Every message up to `seq` was queued before the store was read: those not loaded are
    /// settled.
    pub fn known_through(&mut self, seq: u64) {
        if seq > self.known_through {
            self.known_through = seq;
            self.ahead.retain(|s| *s > seq);
            self.absorb();
        }
    }

    /// Whether messages wait behind a sequence number not announced yet: a load from the
    /// store fills the gap if the announcement is slow.
    pub fn gap(&self) -> bool {
        self.queue.front().is_some_and(|q| q.seq.get() > self.known_through)
    }

    fn note(&mut self, seq: u64) {
        if seq == self.known_through + 1 {
            self.known_through = seq;
            self.absorb();
        } else if seq > self.known_through {
            if self.ahead.len() == MAX_AHEAD {
                // The store says what the gap holds: `gap()` asks for a load.
                self.ahead.pop_first();
            }
            self.ahead.insert(seq);
        }
    }

    fn absorb(&mut self) {
        while self.ahead.first() == Some(&(self.known_through + 1)) {
            self.ahead.pop_first();
            self.known_through += 1;
        }
    }

    /// Forgets everything queued (the outbox was renumbered, for example) so it can be
    /// reloaded. A request in flight is abandoned: its answer will be ignored.
    pub fn reset(&mut self, now: Instant) {
        self.queue.clear();
        self.settled.clear();
        self.known_through = 0;
        self.ahead.clear();
        self.in_flight = None;
        self.more_in_store = true;
        self.failures = 0;
        self.not_before = now;
    }

    /// The store queued `seqs` again (settled as failed before): they may load again, and go
    /// at once. Unlike [`Outgoing::reset`], what was settled otherwise stays settled, so a load
    /// that read the outbox before an acknowledgement was committed brings nothing back, and
    /// the request in flight keeps its answer.
    pub fn requeued(&mut self, seqs: &[Seq], now: Instant) {
        for seq in seqs {
            self.settled.remove(seq);
        }
        self.more_in_store = true;
        self.failures = 0;
        self.not_before = now;
    }

    /// Messages of the request in flight that the store no longer holds (settled by an answer
    /// committed after they were loaded): taken out of it and remembered as settled, never
    /// sent.
    pub fn vanished(&mut self, request: R, seqs: &[Seq]) {
        if let Some(flight) = self.in_flight.as_mut().filter(|f| f.request == request) {
            flight.items.retain(|(seq, _)| !seqs.contains(seq));
        }
        self.settled.extend(seqs.iter().copied());
        self.queue.retain(|q| !seqs.contains(&q.seq));
    }

    /// Messages waiting, not counting the one in flight.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Whether nothing is queued, in flight or left in the store.
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty() && self.in_flight.is_none() && !self.more_in_store
    }

    /// The hold, if any.
    pub fn hold(&self) -> Option<Hold> {
        self.hold
    }

    /// Puts sending on hold, or lifts the hold.
    pub fn set_hold(&mut self, hold: Option<Hold>, now: Instant) {
        self.hold = hold;
        if hold.is_none() {
            self.failures = 0;
            self.not_before = now;
        }
    }

    /// Whether a request should go out now.
    pub fn ready(&self, now: Instant) -> bool {
        self.in_flight.is_none()
            && self.hold.is_none()
            && !self.queue.is_empty()
            && !self.gap()
            && now >= self.not_before
    }

    /// When the next attempt may go out, if anything is waiting for a timer.
    pub fn next_attempt(&self) -> Option<Instant> {
        (self.in_flight.is_none() && self.hold.is_none() && !self.queue.is_empty())
            .then_some(self.not_before)
    }

    /// The next batch, in sequence order: at most [`MAX_BATCH`] messages.
    pub fn batch(&self) -> Vec<Queued> {
        let known = |q: &&Queued| q.seq.get() <= self.known_through;
        self.queue.iter().take_while(known).take(MAX_BATCH).cloned().collect()
    }

    /// Records that `batch` went out as request `request`. Returns the messages sent for the
    /// first time (now `sent` rather than `queued`).
    pub fn sent(&mut self, request: R, batch: &[Queued]) -> Vec<MessageId> {
        self.in_flight =
            Some(InFlight { request, items: batch.iter().map(|q| (q.seq, q.id)).collect() });
        let mut first = Vec::new();
        for q in self.queue.iter_mut().take(batch.len()) {
            if q.attempts == 0 {
                first.push(q.id);
            }
            q.attempts = q.attempts.saturating_add(1);
        }
        first
    }

    /// The answer to `request`. Settles what it acknowledged; anything refused for a while
    /// (or not mentioned) stays queued, with a backoff if nothing was delivered.
    pub fn answered(&mut self, request: R, acks: &[Ack], now: Instant, jitter: f64) -> Settled {
        let Some(flight) = self.take_flight(request) else { return Settled::default() };
        let mut settled = Settled::default();
        for (seq, id) in flight.items {
            match acks.iter().find(|a| a.id == id).map(|a| a.outcome) {
                Some(Outcome::Stored) => settled.delivered.push((seq, id)),
                Some(Outcome::Refused(r)) if r.is_permanent() => settled.failed.push((seq, id, r)),
                Some(Outcome::Refused(_)) | None => settled.retry.push(seq),
            }
        }
        self.remember(&settled);
        if !settled.retry.is_empty() && settled.delivered.is_empty() {
            self.back_off(now, jitter);
        } else {
            self.failures = 0;
            self.not_before = now;
        }
        settled
    }

    /// The whole request was refused. A permanent refusal fails the batch; a temporary one
    /// backs off.
    pub fn refused(&mut self, request: R, refusal: Refusal, now: Instant, jitter: f64) -> Settled {
        let Some(flight) = self.take_flight(request) else { return Settled::default() };
        if !refusal.is_permanent() {
            self.back_off(now, jitter);
            if refusal == Refusal::Unavailable {
                self.not_before = self.not_before.min(now + UNAVAILABLE_MAX);
            }
            return Settled {
                retry: flight.items.into_iter().map(|(s, _)| s).collect(),
                ..Settled::default()
            };
        }
        let failed: Vec<_> = flight.items.into_iter().map(|(s, id)| (s, id, refusal)).collect();
        let settled = Settled { delivered: Vec::new(), failed, retry: Vec::new() };
        self.remember(&settled);
        self.failures = 0;
        self.not_before = now;
        settled
    }

    /// The request failed without an answer (no connection, timeout, broken stream): back off.
    /// Returns the messages it carried, to record the attempt.
    pub fn failed(&mut self, request: R, now: Instant, jitter: f64) -> Vec<Seq> {
        match self.take_flight(request) {
            Some(flight) => {
                self.back_off(now, jitter);
                flight.items.into_iter().map(|(s, _)| s).collect()
            }
            None => Vec::new(),
        }
    }

    /// When the next attempt may go out, even while a request is in flight or on hold.
    pub fn not_before(&self) -> Instant {
        self.not_before
    }

    /// A connection to the peer just came up: try again now.
    pub fn connected(&mut self, now: Instant) {
        self.failures = 0;
        self.not_before = now;
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Takes settled messages off the queue and remembers them.
    fn remember(&mut self, settled: &Settled) {
        let seqs = settled
            .delivered
            .iter()
            .map(|(s, _)| *s)
            .chain(settled.failed.iter().map(|(s, _, _)| *s));
        for seq in seqs {
            self.settled.insert(seq);
        }
        while self.settled.len() > 4 * MAX_BATCH * 16 {
            self.settled.pop_first();
        }
        self.queue.retain(|q| !self.settled.contains(&q.seq));
    }

    fn take_flight(&mut self, request: R) -> Option<InFlight<R>> {
        match &self.in_flight {
            Some(f) if f.request == request => self.in_flight.take(),
            _ => None,
        }
    }

    fn back_off(&mut self, now: Instant, jitter: f64) {
        self.failures = self.failures.saturating_add(1);
        self.not_before = now + backoff(self.failures, jitter);
    }
}

/// The delay after `failures` consecutive failures: 1 s, 2 s, 4 s … up to 5 min, each scaled
/// by a jitter factor between 0.75 and 1.25 (`jitter` in [0, 1)) so that peers that failed
/// together do not retry together.
pub fn backoff(failures: u32, jitter: f64) -> Duration {
    let exp = BACKOFF_BASE.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    exp.min(BACKOFF_MAX).mul_f64(0.75 + 0.5 * jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A queued message numbered `seq`, its id and time derived from it.
    pub(crate) fn q(seq: u64) -> Queued {
        Queued {
            seq: Seq::new(seq).unwrap(),
            id: MessageId([seq as u8; 16]),
            sent_at: UnixMillis(seq),
            text: Text::new("x").unwrap(),
            attempts: 0,
            envelope: None,
        }
    }

    fn ack(seq: u64, outcome: Outcome) -> Ack {
        Ack { id: MessageId([seq as u8; 16]), outcome }
    }

    #[test]
    fn batches_go_out_one_at_a_time_in_order() {
        let t0 = Instant::now();
        let mut out = Outgoing::<u32>::new(t0);
        out.load((1..=100).map(q));
        assert!(out.ready(t0));
        let first = out.batch();
        assert_eq!(first.len(), MAX_BATCH);
        assert_eq!(first[0].seq.get(), 1);
        assert_eq!(out.sent(1, &first).len(), MAX_BATCH, "all sent for the first time");
        assert!(!out.ready(t0), "one request in flight at a time");
        let acks: Vec<_> = (1..=64).map(|s| ack(s, Outcome::Stored)).collect();
        let settled = out.answered(1, &acks, t0, 0.5);
        assert_eq!(settled.delivered.len(), 64);
        assert_eq!(out.queued(), 36);
        assert_eq!(out.batch()[0].seq.get(), 65);
        assert!(out.ready(t0));
        // Loading again skips what is queued or settled; late arrivals go in order.
        out.load((60..=110).map(q));
        assert_eq!(out.queued(), 46);
        out.load([q(120), q(115)]);
        let seqs: Vec<u64> = out.batch().iter().map(|q| q.seq.get()).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    }

    /// The node benchmark hung here: a new session requeued a refused message while the
    /// answer to the next batch was being committed; the reload that followed read the outbox
    /// before that commit, brought the delivered messages back, and the store, which no longer
    /// held them, had nothing to send, forever.
    #[test]
    fn a_requeue_brings_back_only_what_was_requeued_and_vanished_messages_are_dropped() {
        let t0 = Instant::now();
        let mut out = Outgoing::<u32>::new(t0);
        out.load((1..=4).map(q));
        out.sent(1, &out.batch());
        let refused = Outcome::Refused(Refusal::NoSession);
        let acks = [ack(1, Outcome::Stored), ack(2, Outcome::Stored), ack(3, refused)];
        let settled = out.answered(1, &acks, t0, 0.5);
        assert_eq!(settled.failed.len(), 1);
        // 4 was not mentioned: it stays queued. The store requeues 3; the load read the outbox
        // before 1 and 2 were committed as delivered.
        out.requeued(&[Seq::new(3).unwrap()], t0);
        out.load((1..=4).map(q));
        let seqs: Vec<u64> = out.batch().iter().map(|q| q.seq.get()).collect();
        assert_eq!(seqs, [3, 4]);
        assert!(out.ready(t0), "requeued messages go at once");
        // Sent; the store then says 4 is gone: it is dropped, and the answer settles 3 alone.
        out.sent(2, &out.batch());
        out.vanished(2, &[Seq::new(4).unwrap()]);
        let settled = out.answered(2, &[ack(3, Outcome::Stored)], t0, 0.5);
        assert_eq!(settled.delivered.len(), 1);
        assert!(settled.retry.is_empty(), "{:?}", settled.retry);
        out.load([q(4)]);
        assert_eq!(out.queued(), 0, "a vanished message does not load again");
    }

    /// Sends race to announce what they queued: seq 5 may be announced before 4. Sent first,
    /// 5 would reach a sealed session ahead of 4 (the node benchmark's 64 concurrent senders
    /// put messages 48 ahead, past the 40 skipped keys Olm keeps, and the recipient refused
    /// the rest as replayed). Nothing goes past a sequence number not yet known.
    #[test]
    fn nothing_is_sent_past_a_message_not_yet_announced() {
        let t0 = Instant::now();
        let mut out = Outgoing::<u32>::new(t0);
        out.load((1..=3).map(q));
        out.load([q(5), q(7)]);
        let seqs = |b: Vec<Queued>| b.iter().map(|q| q.seq.get()).collect::<Vec<_>>();
        assert_eq!(seqs(out.batch()), [1, 2, 3]);
        out.sent(1, &out.batch());
        let acks: Vec<_> = (1..=3).map(|s| ack(s, Outcome::Stored)).collect();
        out.answered(1, &acks, t0, 0.5);
        assert!(out.gap() && !out.ready(t0), "5 waits for 4");
        out.load([q(4)]);
        assert!(!out.gap());
        assert_eq!(seqs(out.batch()), [4, 5]);
        // The store's word fills a gap whose announcement is late: 6 was settled already.
        out.known_through(6);
        assert_eq!(seqs(out.batch()), [4, 5, 7]);
    }

    #[test]
    fn failures_back_off_exponentially_with_jitter_and_connections_reset_it() {
        let t0 = Instant::now();
        let mut out = Outgoing::<u32>::new(t0);
        out.load([q(1)]);
        out.sent(1, &out.batch());
        out.failed(1, t0, 0.5);
        assert_eq!(out.next_attempt(), Some(t0 + Duration::from_secs(1)));
        out.sent(2, &out.batch());
        out.failed(2, t0, 0.5);
        assert_eq!(out.next_attempt(), Some(t0 + Duration::from_secs(2)));
        for i in 3..30 {
            out.sent(i, &out.batch());
            out.failed(i, t0, 0.5);
        }
        assert_eq!(out.next_attempt(), Some(t0 + BACKOFF_MAX));
        out.connected(t0);
        assert!(out.ready(t0));
        assert_eq!(backoff(1, 0.0), Duration::from_millis(750));
        let top = backoff(1, 0.999_999);
        assert!(top > Duration::from_millis(1249) && top < Duration::from_millis(1250), "{top:?}");
        assert_eq!(backoff(40, 0.5), BACKOFF_MAX);
    }

    #[test]
    fn temporary_refusals_keep_messages_and_permanent_ones_fail_them() {
        let t0 = Instant::now();
        let mut out = Outgoing::<u32>::new(t0);
        out.load((1..=3).map(q));
        out.sent(1, &out.batch());
        let settled = out.answered(
            1,
            &[
                ack(1, Outcome::Stored),
                ack(2, Outcome::Refused(Refusal::WrongRecipient)),
                ack(3, Outcome::Refused(Refusal::RateLimited)),
            ],
            t0,
            0.5,
        );
        assert_eq!(settled.delivered, vec![(Seq::new(1).unwrap(), MessageId([1; 16]))]);
        assert_eq!(settled.failed.len(), 1);
        assert_eq!(out.batch().iter().map(|q| q.seq.get()).collect::<Vec<_>>(), [3]);
        // Something was delivered, so no backoff.
        assert!(out.ready(t0));

        out.sent(2, &out.batch());
        let settled = out.refused(2, Refusal::Unavailable, t0, 0.5);
        assert_eq!(settled.retry, vec![Seq::new(3).unwrap()]);
        assert!(settled.delivered.is_empty() && settled.failed.is_empty());
        assert!(out.sent(9, &out.batch()).is_empty(), "a second attempt is not a first");
        out.failed(9, t0, 0.5);
        assert!(!out.ready(t0) && out.queued() == 1, "backed off, still queued");

        let later = t0 + Duration::from_secs(5);
        out.sent(3, &out.batch());
        let settled = out.refused(3, Refusal::Blocked, later, 0.5);
        assert_eq!(settled.failed.len(), 1);
        assert_eq!(out.queued(), 0, "blocked: failed for good");
    }

    /// Issue 17: a recipient whose disk was full answers `unavailable` until it has room; the
    /// sender keeps trying every few seconds rather than backing off for minutes.
    #[test]
    fn issue_17_unavailable_is_retried_soon() {
        let t0 = Instant::now();
        let mut out = Outgoing::<u32>::new(t0);
        out.load([q(1)]);
        for i in 0..20 {
            out.sent(i, &out.batch());
            out.refused(i, Refusal::Unavailable, t0, 0.99);
        }
        assert!(out.next_attempt().unwrap() <= t0 + UNAVAILABLE_MAX);
        out.sent(99, &out.batch());
        out.refused(99, Refusal::RateLimited, t0, 0.5);
        assert!(out.next_attempt().unwrap() > t0 + UNAVAILABLE_MAX, "others back off as before");
    }

    #[test]
    fn answers_to_abandoned_requests_are_ignored() {
        let t0 = Instant::now();
        let mut out = Outgoing::<u32>::new(t0);
        out.load([q(1)]);
        out.sent(1, &out.batch());
        out.reset(t0);
        assert_eq!(out.answered(1, &[ack(1, Outcome::Stored)], t0, 0.5), Settled::default());
        assert!(out.more_in_store);
    }

    #[test]
    fn key_changes_hold_everything() {
        let t0 = Instant::now();
        let mut out = Outgoing::<u32>::new(t0);
        out.load([q(1)]);
        out.set_hold(Some(Hold::KeyChanged), t0);
        assert!(!out.ready(t0));
        out.connected(t0);
        assert!(!out.ready(t0), "a connection does not lift a key-change hold");
        out.set_hold(None, t0);
        assert!(out.ready(t0));
    }
}
