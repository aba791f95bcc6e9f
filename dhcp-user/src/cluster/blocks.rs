//! Who owns which address block, from the key-value bucket's watch and from the results of our
//! own compare-and-swap operations: sans-I/O, it decides which [`Notification`] each of them
//! means for this node.
//!
//! A block's key is `blk.<pool>.<block>` and its value the owner's node name; a deleted key is a
//! free block. Each change carries the stream's revision, so a late or repeated report is
//! recognised and ignored. While one of our operations on a block is in flight, the watch's news
//! about that block waits for the operation's result (which tells the same thing with the
//! reason: claimed, taken over, returned).
//!
//! Must never: report a block ours that the bucket does not name us owner of; report a block
//! taken from another node as plainly granted (its free addresses would be handed out before the
//! other node's leases have surely ended).

use super::Notification;
use std::collections::HashMap;

/// A block of a pool: (pool index, block index in that pool).
pub(crate) type BlockId = (u32, u32);

/// The bucket key of a block.
pub(crate) fn key(id: BlockId) -> String {
    format!("blk.{}.{}", id.0, id.1)
}

/// The block a bucket key names, if it names one.
pub(crate) fn parse_key(key: &str) -> Option<BlockId> {
    let mut parts = key.strip_prefix("blk.")?.split('.');
    let pool = parts.next()?.parse().ok()?;
    let block = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some((pool, block))
}

/// One of our operations on a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    Claim,
    /// Taking over the block of `from` (a dead node), expecting the revision we saw.
    TakeOver {
        from: String,
    },
    Return,
}

/// A block key's value: its owner, and for a block taken over, when it may give out its free
/// addresses (UNIX seconds), so that the new owner still waits for them after a restart.
pub(crate) fn value(node: &str, free_after: Option<u32>) -> String {
    match free_after {
        Some(at) => format!("{node} {at}"),
        None => node.to_string(),
    }
}

/// The owner and the recorded wait of a block key's value (see [`value`]).
pub(crate) fn parse_value(value: &str) -> (&str, Option<u32>) {
    match value.split_once(' ') {
        Some((node, at)) => (node, at.parse().ok()),
        None => (value, None),
    }
}

#[derive(Debug, Clone)]
struct Owner {
    node: Option<String>,
    revision: u64,
}

/// The ownership of every block this node has heard of.
#[derive(Debug)]
pub(crate) struct Blocks {
    me: String,
    owners: HashMap<BlockId, Owner>,
    in_flight: HashMap<BlockId, Op>,
    /// Whether the watch has delivered the bucket's state as it was at start.
    current: bool,
}

impl Blocks {
    pub(crate) fn new(me: &str) -> Blocks {
        Blocks { me: me.to_string(), owners: HashMap::new(), in_flight: HashMap::new(), current: false }
    }

    /// The watch has delivered everything that was in the bucket when it started.
    pub(crate) fn set_current(&mut self) {
        self.current = true;
    }

    /// Starts `op` on `id` unless one is in flight there; returns the revision to expect
    /// (0: the key is not known).
    pub(crate) fn start(&mut self, id: BlockId, op: Op) -> Option<u64> {
        if self.in_flight.contains_key(&id) {
            return None;
        }
        self.in_flight.insert(id, op);
        Some(self.owners.get(&id).map_or(0, |o| o.revision))
    }

    /// The current owner of `id` (None: free or unknown).
    pub(crate) fn owner(&self, id: BlockId) -> Option<&str> {
        self.owners.get(&id).and_then(|o| o.node.as_deref())
    }

    /// Blocks of `node` with no operation of ours in flight, with their revisions.
    pub(crate) fn owned_by(&self, node: &str) -> Vec<(BlockId, u64)> {
        let mut v: Vec<(BlockId, u64)> = self
            .owners
            .iter()
            .filter(|(id, o)| o.node.as_deref() == Some(node) && !self.in_flight.contains_key(id))
            .map(|(id, o)| (*id, o.revision))
            .collect();
        v.sort_unstable();
        v
    }

    /// A block of `pool` (of `count`) that is free as far as we know, searching from `start`
    /// round the pool (nodes start at different places, so they rarely race).
    pub(crate) fn free_candidate(&self, pool: u32, count: u32, start: u32) -> Option<u32> {
        (0..count).map(|i| (start.wrapping_add(i)) % count).find(|&b| {
            let id = (pool, b);
            self.owner(id).is_none() && !self.in_flight.contains_key(&id)
        })
    }

    /// The watch reports `id` with `value` (see [`value`]; None: deleted) at `revision`.
    /// `free_after`: when a block taken over now may give out its free addresses.
    pub(crate) fn seen(
        &mut self,
        id: BlockId,
        value: Option<&str>,
        revision: u64,
        free_after: u32,
    ) -> Option<Notification> {
        let (node, recorded) = match value.map(parse_value) {
            Some((node, recorded)) => (Some(node), recorded),
            None => (None, None),
        };
        let prev = self.owners.get(&id).cloned();
        if prev.as_ref().is_some_and(|p| revision <= p.revision) {
            return None;
        }
        self.owners.insert(id, Owner { node: node.map(str::to_string), revision });
        if self.in_flight.contains_key(&id) {
            return None;
        }
        let prev_node = prev.as_ref().and_then(|p| p.node.clone());
        let was_mine = prev_node.as_deref() == Some(&self.me);
        let mine = node == Some(&self.me);
        let (pool, block) = id;
        match (was_mine, mine) {
            // A claim or takeover that we gave up on (its reply was lost) landed after all.
            (false, true) => Some(match prev_node {
                Some(from) => Notification::TakenOver { pool, block, from, free_after },
                None if !self.current => Notification::Resumed { pool, block, free_after: recorded },
                None => Notification::Granted { pool, block },
            }),
            (true, false) => Some(Notification::Lost { pool, block, to: node.map(str::to_string) }),
            _ => None,
        }
    }

    /// Our operation on `id` ended: `Ok(revision)` (0 when the reply carries none) or failed.
    pub(crate) fn done(&mut self, id: BlockId, result: Result<u64, ()>, free_after: u32) -> Option<Notification> {
        let op = self.in_flight.remove(&id)?;
        let (pool, block) = id;
        let me = Some(self.me.clone());
        let o = self.owners.entry(id).or_insert(Owner { node: None, revision: 0 });
        match (&op, result) {
            // A delete's reply carries no revision; the watch brings it (or newer news).
            (Op::Return, Ok(_)) if o.node == me => o.node = None,
            (Op::Claim | Op::TakeOver { .. }, Ok(revision)) if revision >= o.revision => {
                *o = Owner { node: me.clone(), revision }
            }
            _ => {}
        }
        let mine = self.owners.get(&id).and_then(|o| o.node.clone()) == me;
        match (op, result.is_ok(), mine) {
            (Op::Claim, _, true) => Some(Notification::Granted { pool, block }),
            (Op::Claim, _, false) => Some(Notification::ClaimFailed { pool, block }),
            (Op::TakeOver { from }, _, true) => Some(Notification::TakenOver { pool, block, from, free_after }),
            // Another survivor won, or the update failed and is tried again later.
            (Op::TakeOver { .. }, _, false) => None,
            (Op::Return, true, _) => Some(Notification::Returned { pool, block }),
            (Op::Return, false, true) => Some(Notification::ReturnFailed { pool, block }),
            (Op::Return, false, false) => {
                let to = self.owner(id).map(str::to_string);
                Some(Notification::Lost { pool, block, to })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_odd_keys_are_not_blocks() {
        assert_eq!(parse_key(&key((3, 17))), Some((3, 17)));
        for k in ["hb.a", "blk.1", "blk.1.2.3", "blk.x.1", "blk.1.-2"] {
            assert_eq!(parse_key(k), None, "{k}");
        }
    }

    #[test]
    fn a_claim_is_granted_or_refused_by_its_result() {
        let mut b = Blocks::new("a");
        b.set_current();
        assert_eq!(b.start((0, 1), Op::Claim), Some(0));
        assert_eq!(b.start((0, 1), Op::Claim), None, "one operation per block at a time");
        // The watch's news waits for the result.
        assert_eq!(b.seen((0, 1), Some("a"), 5, 99), None);
        assert_eq!(b.done((0, 1), Ok(5), 99), Some(Notification::Granted { pool: 0, block: 1 }));
        b.start((0, 2), Op::Claim);
        b.seen((0, 2), Some("b"), 6, 99);
        assert_eq!(b.done((0, 2), Err(()), 99), Some(Notification::ClaimFailed { pool: 0, block: 2 }));
        assert_eq!(b.owner((0, 2)), Some("b"));
    }

    #[test]
    fn a_takeover_names_the_dead_node_and_free_after() {
        let mut b = Blocks::new("a");
        b.set_current();
        b.seen((1, 0), Some("c"), 3, 0);
        b.seen((1, 1), Some("c"), 4, 0);
        assert_eq!(b.owned_by("c"), vec![((1, 0), 3), ((1, 1), 4)]);
        assert_eq!(b.start((1, 0), Op::TakeOver { from: "c".into() }), Some(3));
        assert_eq!(b.owned_by("c"), vec![((1, 1), 4)], "in flight: not offered again");
        let n = b.done((1, 0), Ok(9), 1234);
        assert_eq!(n, Some(Notification::TakenOver { pool: 1, block: 0, from: "c".into(), free_after: 1234 }));
        // Another survivor won the other one.
        b.start((1, 1), Op::TakeOver { from: "c".into() });
        b.seen((1, 1), Some("b"), 10, 0);
        assert_eq!(b.done((1, 1), Err(()), 1234), None);
    }

    #[test]
    fn the_watch_tells_losses_resumptions_and_late_landings() {
        let mut b = Blocks::new("a");
        assert_eq!(
            b.seen((0, 0), Some("a"), 2, 7),
            Some(Notification::Resumed { pool: 0, block: 0, free_after: None })
        );
        // A block this node took over before it restarted still waits until the recorded time.
        let resumed = b.seen((0, 9), Some(&value("a", Some(99))), 1, 7);
        assert_eq!(resumed, Some(Notification::Resumed { pool: 0, block: 9, free_after: Some(99) }));
        assert_eq!(parse_value("a 99"), ("a", Some(99)));
        assert_eq!(b.owner((0, 9)), Some("a"));
        b.set_current();
        assert_eq!(b.seen((0, 0), Some("a"), 2, 7), None, "repeated");
        let lost = b.seen((0, 0), Some("b"), 3, 7);
        assert_eq!(lost, Some(Notification::Lost { pool: 0, block: 0, to: Some("b".into()) }));
        assert_eq!(b.seen((0, 0), Some("a"), 1, 7), None, "older than what we know");
        // A takeover whose reply was lost lands later: still a takeover, not a grant.
        let late = b.seen((0, 0), Some("a"), 4, 7);
        assert_eq!(late, Some(Notification::TakenOver { pool: 0, block: 0, from: "b".into(), free_after: 7 }));
        b.seen((0, 5), None, 5, 7);
        assert_eq!(b.seen((0, 5), Some("a"), 6, 7), Some(Notification::Granted { pool: 0, block: 5 }));
    }

    #[test]
    fn returns_and_free_candidates() {
        let mut b = Blocks::new("a");
        b.set_current();
        b.seen((0, 0), Some("a"), 1, 0);
        b.seen((0, 1), Some("b"), 2, 0);
        assert_eq!(b.free_candidate(0, 3, 0), Some(2));
        assert_eq!(b.free_candidate(0, 2, 0), None);
        b.start((0, 0), Op::Return);
        assert_eq!(b.free_candidate(0, 3, 0), Some(2), "a block being returned is not free yet");
        assert_eq!(b.done((0, 0), Ok(0), 0), Some(Notification::Returned { pool: 0, block: 0 }));
        assert_eq!(b.free_candidate(0, 3, 0), Some(0));
        b.seen((0, 0), Some("a"), 8, 0);
        b.start((0, 0), Op::Return);
        assert_eq!(b.done((0, 0), Err(()), 0), Some(Notification::ReturnFailed { pool: 0, block: 0 }));
    }
}
