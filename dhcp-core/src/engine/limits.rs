//! Limits per subscriber key, shared by every worker without locks: how many leases plus
//! offers one key may hold, and a token bucket of DISCOVERs per key.
//!
//! Keys are hashed into a count-min sketch: two rows of cells, each key counted in one cell of
//! each row, its count the smaller of the two. Memory is fixed at start whatever arrives (a
//! flood of made-up keys only raises counts, it never grows a table), every operation is O(1)
//! and a handful of atomic operations, and a key is never limited below its own use; it may be
//! limited early only if both its cells are shared with heavier keys. Buckets are kept the same
//! way, and a DISCOVER passes if either of its key's buckets has a token.
//!
//! Must never: allocate after start, block, or undercount a key's holdings (a record counted
//! when it is made is uncounted exactly once, when it ends).

use super::Seconds;
use crate::config::{LimitKey, Limits};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Cells per row: 2^18 (3 MiB for both rows of counts and buckets).
const CELL_BITS: u32 = 18;
const CELLS: usize = 1 << CELL_BITS;

/// Why a message was refused by a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    /// The key holds `max_leases` leases and offers already.
    Holdings,
    /// The key's DISCOVER bucket is empty.
    DiscoverRate,
}

/// The shared counts and buckets.
#[derive(Debug)]
pub(super) struct LimitTable {
    holdings: [Box<[AtomicU32]>; 2],
    /// Per cell: the second of the last refill (high 32 bits) and the tokens (low 32 bits).
    buckets: [Box<[AtomicU64]>; 2],
    seed: u64,
}

/// A key's place in the table: 24 bits, never zero (zero marks records that count nowhere,
/// such as leases recovered at start, whose key is not recorded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Cell(pub(super) u32);

impl Cell {
    fn index(self, row: usize) -> usize {
        // Two cells from one 24-bit hash: the row's own multiplier spreads it again.
        let m = [0x9E37_79B1u32, 0x85EB_CA77][row];
        (self.0.wrapping_mul(m) >> (32 - CELL_BITS)) as usize
    }
}

fn cells<T>(f: impl Fn() -> T) -> Box<[T]> {
    (0..CELLS).map(|_| f()).collect()
}

impl LimitTable {
    pub(super) fn new(seed: u64) -> LimitTable {
        LimitTable {
            holdings: [cells(|| AtomicU32::new(0)), cells(|| AtomicU32::new(0))],
            buckets: [cells(|| AtomicU64::new(0)), cells(|| AtomicU64::new(0))],
            seed,
        }
    }

    /// The cell of a key's bytes (the kind of key is mixed in, so a VLAN and a circuit id with
    /// the same bytes are different keys).
    pub(super) fn cell(&self, kind: LimitKey, key: &[u8]) -> Cell {
        use std::hash::{BuildHasher, Hasher};
        let mut h = foldhash::fast::FixedState::with_seed(self.seed).build_hasher();
        h.write_u8(kind as u8);
        h.write(key);
        let v = (h.finish() >> 40) as u32;
        Cell(if v == 0 { 1 } else { v })
    }

    /// Whether `cell`'s key may take one more lease or offer under `max`.
    pub(super) fn may_hold(&self, cell: Cell, max: u32) -> bool {
        (0..2).map(|r| self.holdings[r][cell.index(r)].load(Ordering::Relaxed)).min().unwrap_or(0) < max
    }

    /// Counts a new record of `cell`'s key.
    pub(super) fn hold(&self, cell: Cell) {
        for r in 0..2 {
            self.holdings[r][cell.index(r)].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Uncounts an ended record.
    pub(super) fn release(&self, cell: Cell) {
        for r in 0..2 {
            // Never below zero, whatever the interleaving.
            let _ = self.holdings[r][cell.index(r)]
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
        }
    }

    /// Takes a DISCOVER token of `cell`'s key (`rate` per second, at most `burst` saved); false
    /// if both its buckets are empty.
    pub(super) fn take_token(&self, cell: Cell, rate: u32, burst: u32, now: Seconds) -> bool {
        let mut any = false;
        for r in 0..2 {
            any |= take(&self.buckets[r][cell.index(r)], rate, burst, now);
        }
        any
    }
}

/// Refills a bucket cell for the seconds since its last refill and takes a token if it has one.
fn take(cell: &AtomicU64, rate: u32, burst: u32, now: Seconds) -> bool {
    let mut cur = cell.load(Ordering::Relaxed);
    loop {
        let (last, tokens) = ((cur >> 32) as u32, cur as u32);
        // A new cell (last = 0) starts full.
        let refill = if last == 0 { burst } else { now.saturating_sub(last).saturating_mul(rate) };
        let tokens = tokens.saturating_add(refill).min(burst);
        let (left, ok) = if tokens > 0 { (tokens - 1, true) } else { (0, false) };
        let new = (now.max(last) as u64) << 32 | left as u64;
        match cell.compare_exchange_weak(cur, new, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return ok,
            Err(seen) => cur = seen,
        }
    }
}

/// The limits of one subnet, compiled.
#[derive(Debug, Clone, Copy)]
pub(super) struct SubnetLimits {
    pub(super) key: LimitKey,
    pub(super) max_leases: Option<u32>,
    pub(super) rate: Option<(u32, u32)>,
}

impl From<&Limits> for SubnetLimits {
    fn from(l: &Limits) -> SubnetLimits {
        SubnetLimits { key: l.key, max_leases: l.max_leases, rate: l.discover_rate.map(|r| (r, l.burst())) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holdings_count_up_to_the_limit_and_down_again() {
        let t = LimitTable::new(1);
        let c = t.cell(LimitKey::CircuitId, b"port-1");
        for _ in 0..4 {
            assert!(t.may_hold(c, 4));
            t.hold(c);
        }
        assert!(!t.may_hold(c, 4));
        t.release(c);
        assert!(t.may_hold(c, 4));
        // Another key is not limited by this one.
        assert!(t.may_hold(t.cell(LimitKey::CircuitId, b"port-2"), 1));
    }

    #[test]
    fn buckets_refill_at_the_rate_up_to_the_burst() {
        let t = LimitTable::new(2);
        let c = t.cell(LimitKey::Vlan, &100u16.to_be_bytes());
        let now = 1_000;
        assert_eq!((0..10).filter(|_| t.take_token(c, 2, 5, now)).count(), 5, "a full bucket at first");
        assert!(!t.take_token(c, 2, 5, now));
        assert_eq!((0..10).filter(|_| t.take_token(c, 2, 5, now + 1)).count(), 2, "two a second");
        assert_eq!((0..10).filter(|_| t.take_token(c, 2, 5, now + 100)).count(), 5, "never above the burst");
    }

    #[test]
    fn a_flood_of_new_keys_grows_nothing_and_spares_an_honest_key() {
        let t = LimitTable::new(3);
        let honest = t.cell(LimitKey::Chaddr, b"honest");
        t.hold(honest);
        for n in 0u32..200_000 {
            let c = t.cell(LimitKey::Chaddr, &n.to_be_bytes());
            if t.may_hold(c, 1) {
                t.hold(c);
            }
        }
        // 200k keys in 2^18 cells: the honest key's count is its own unless both its cells
        // were shared, which the min of two rows makes rare.
        assert!(t.may_hold(honest, 3));
    }
}
