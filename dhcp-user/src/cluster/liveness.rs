//! Who is alive, from the heartbeats seen in the key-value bucket: sans-I/O (times come in as
//! arguments), so every rule is tested on a made-up clock.
//!
//! A peer is live from the first heartbeat of it this node sees. It is declared dead only when
//! this node's own view is known to be current: one of our own heartbeats, sent at `s`, has come
//! back through the same watch (the bucket's stream is ordered, so every heartbeat stored before
//! ours has been seen), and `s` is more than `dead_after` past the last time we saw the peer's.
//! A node cut off from NATS sees no echo of its own, so it never declares anyone dead (and never
//! takes over a block) on the strength of its own silence. Only prompt echoes count, and only
//! once the watch delivers live changes (a fresh watch first replays the newest value of each
//! key, which proves nothing about the heartbeats replaced in between).
//!
//! Must never: declare a peer dead without such an echo; declare ourselves dead.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A change of a peer's state, to tell the rest of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    Live(usize),
    Dead(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Unknown,
    Live,
    Dead,
}

/// How many heartbeats in flight we remember the send time of (echoes of older ones are
/// ignored: they carry no news once a later one came back).
const SENT_KEPT: usize = 64;

/// The liveness of every peer, as this node sees it.
#[derive(Debug)]
pub(crate) struct Liveness {
    me: usize,
    dead_after: Duration,
    /// When we last saw a heartbeat of each peer (for peers never seen: when we started).
    last_seen: Vec<Instant>,
    state: Vec<State>,
    /// (sequence number, send time) of our own recent heartbeats.
    sent: VecDeque<(u64, Instant)>,
    /// Send time of the newest own heartbeat that came back through the watch.
    echo: Option<Instant>,
}

impl Liveness {
    pub(crate) fn new(peers: usize, me: usize, dead_after: Duration, now: Instant) -> Liveness {
        let mut state = vec![State::Unknown; peers];
        state[me] = State::Live;
        Liveness { me, dead_after, last_seen: vec![now; peers], state, sent: VecDeque::new(), echo: None }
    }

    /// Whether `peer` is live in this node's view (ourselves always).
    #[cfg(test)]
    pub(crate) fn is_live(&self, peer: usize) -> bool {
        self.state[peer] == State::Live
    }

    /// Whether `peer` is known dead (its blocks may be taken over).
    pub(crate) fn is_dead(&self, peer: usize) -> bool {
        self.state[peer] == State::Dead
    }

    /// Our heartbeat number `seq` is being sent at `at`.
    pub(crate) fn sent(&mut self, seq: u64, at: Instant) {
        if self.sent.len() == SENT_KEPT {
            self.sent.pop_front();
        }
        self.sent.push_back((seq, at));
    }

    /// Our heartbeat number `seq` came back through the watch at `now`. Only a prompt echo
    /// counts (within half of `dead_after`): a watch that lags may have skipped a peer's
    /// heartbeat that a newer one replaced, and one sent long ago (held back by a partition)
    /// says nothing about now.
    pub(crate) fn echoed(&mut self, seq: u64, now: Instant) {
        if let Some(&(_, at)) = self.sent.iter().find(|(s, _)| *s == seq) {
            let prompt = now.saturating_duration_since(at) <= self.dead_after / 2;
            if prompt && self.echo.is_none_or(|e| at > e) {
                self.echo = Some(at);
            }
        }
    }

    /// A heartbeat of `peer` was seen at `now`.
    pub(crate) fn heard(&mut self, peer: usize, now: Instant) -> Option<Change> {
        if peer == self.me {
            return None;
        }
        self.last_seen[peer] = now;
        let was = std::mem::replace(&mut self.state[peer], State::Live);
        (was != State::Live).then_some(Change::Live(peer))
    }

    /// The peers that are dead now (each reported once, until heard again).
    pub(crate) fn check(&mut self) -> Vec<Change> {
        let Some(echo) = self.echo else { return Vec::new() };
        let mut changes = Vec::new();
        for peer in 0..self.state.len() {
            if peer == self.me || self.state[peer] == State::Dead {
                continue;
            }
            if echo.saturating_duration_since(self.last_seen[peer]) > self.dead_after {
                self.state[peer] = State::Dead;
                changes.push(Change::Dead(peer));
            }
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEAD: Duration = Duration::from_secs(3);

    fn ms(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn a_peer_is_live_when_heard_and_dead_after_an_echo_past_dead_after() {
        let t0 = Instant::now();
        let mut l = Liveness::new(3, 0, DEAD, t0);
        assert!(!l.is_live(1) && l.is_live(0));
        assert_eq!(l.heard(1, ms(t0, 100)), Some(Change::Live(1)));
        assert_eq!(l.heard(1, ms(t0, 600)), None, "reported once");
        assert_eq!(l.heard(2, ms(t0, 600)), Some(Change::Live(2)));
        // Our heartbeat sent at 3.5 s came back: 1 was last heard 2.9 s before it.
        l.sent(7, ms(t0, 3500));
        l.echoed(7, ms(t0, 3510));
        assert!(l.check().is_empty());
        l.heard(2, ms(t0, 3600));
        l.sent(8, ms(t0, 3700));
        l.echoed(8, ms(t0, 3710));
        assert_eq!(l.check(), vec![Change::Dead(1)]);
        assert!(l.is_dead(1) && l.is_live(2));
        assert!(l.check().is_empty(), "reported once");
        assert_eq!(l.heard(1, ms(t0, 4000)), Some(Change::Live(1)), "back again");
    }

    #[test]
    fn without_an_echo_nobody_is_declared_dead() {
        let t0 = Instant::now();
        let mut l = Liveness::new(2, 1, DEAD, t0);
        l.heard(0, t0);
        // Heartbeats sent long after, none came back (cut off from NATS).
        for s in 0..100 {
            l.sent(s, ms(t0, 500 * s));
        }
        assert!(l.check().is_empty());
        assert!(l.is_live(0));
        // An echo of an old heartbeat (sent before dead_after had passed) is no proof either,
        // nor one that comes late (held back while cut off).
        l.echoed(2, ms(t0, 1010));
        assert!(l.check().is_empty());
        l.echoed(98, ms(t0, 500 * 98 + 1600));
        assert!(l.check().is_empty(), "late echo");
        l.echoed(99, ms(t0, 500 * 99 + 20));
        assert_eq!(l.check(), vec![Change::Dead(0)]);
    }

    #[test]
    fn a_peer_never_heard_is_dead_once_dead_after_passed_since_start() {
        let t0 = Instant::now();
        let mut l = Liveness::new(2, 0, DEAD, t0);
        l.sent(1, ms(t0, 1000));
        l.echoed(1, ms(t0, 1000));
        assert!(l.check().is_empty());
        l.sent(2, ms(t0, 3100));
        l.echoed(2, ms(t0, 3100));
        assert_eq!(l.check(), vec![Change::Dead(1)]);
    }

    #[test]
    fn echoes_of_forgotten_heartbeats_are_ignored() {
        let t0 = Instant::now();
        let mut l = Liveness::new(2, 0, DEAD, t0);
        for s in 0..(SENT_KEPT as u64 + 10) {
            l.sent(s, ms(t0, 10_000 + s));
        }
        l.echoed(0, ms(t0, 10_000));
        assert!(l.check().is_empty(), "send time of heartbeat 0 forgotten");
    }
}
