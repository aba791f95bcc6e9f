//! Address allocation shared by all workers, without locks.
//!
//! Every pool address has one atomic state word; ownership changes only by compare-and-swap on
//! it, so an address is held by at most one client whichever worker asks. Free addresses are
//! also on a per-pool lock-free stack (Treiber stack over address indices with a generation tag
//! against ABA), so taking any free address is O(1) with no scan of the pool.
//!
//! A specific address (the client's requested one) can be claimed straight from its state word
//! while it is still on the stack: the stale stack entry is skipped when popped ("lazy
//! deletion"). A `LISTED` bit in the state word keeps each address on the stack at most once,
//! so the stack never outgrows the pool. Memory: 8 bytes per pool address.

use crate::config::Pool;
use core::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

const FREE: u32 = 0;
const HELD: u32 = 1;
const DECLINED: u32 = 2;
const RESERVED: u32 = 3;
const STATE_MASK: u32 = 0x3;
/// The address is on its pool's free stack (possibly as a stale entry).
const LISTED: u32 = 0x100;
const NIL: u32 = u32::MAX;

/// Result of claiming one specific address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// It was free and is now held by the caller.
    Taken,
    /// Someone holds it, it is in probation after a decline, or it is reserved.
    Busy,
    /// It is not in any pool.
    NotInPool,
}

/// What an address is doing, as seen by [`AddressSpace::status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Free,
    Held,
    Declined,
    Reserved,
}

#[derive(Debug)]
#[repr(align(64))] // one cache line per stack head: workers popping different pools don't collide
struct Head(AtomicU64);

#[derive(Debug, Clone, Copy)]
struct PoolRange {
    first: u32,
    last: u32,
    /// Index of `first` in the state arrays.
    base: u32,
}

/// Identifies a pool of an [`AddressSpace`]: its position in the list given to `new`.
pub type PoolId = u32;

/// State of every dynamic address of every pool.
#[derive(Debug)]
pub struct AddressSpace {
    /// In the caller's order (`PoolId`).
    ranges: Vec<PoolRange>,
    /// Pool ids sorted by first address, for lookup by address (pools never overlap).
    by_addr: Vec<PoolId>,
    state: Box<[AtomicU32]>,
    /// Next index on the free stack, per address.
    next: Box<[AtomicU32]>,
    /// Per pool: generation tag (high 32 bits) and index of the top entry (low 32 bits).
    heads: Box<[Head]>,
}

#[inline]
fn pack(tag: u32, index: u32) -> u64 {
    (tag as u64) << 32 | index as u64
}

impl AddressSpace {
    /// All addresses free; each pool hands out its addresses in ascending order at first.
    pub fn new(pools: &[Pool]) -> AddressSpace {
        let mut ranges: Vec<PoolRange> = Vec::with_capacity(pools.len());
        let mut base = 0u64;
        for p in pools {
            ranges.push(PoolRange { first: p.first.into(), last: p.last.into(), base: base as u32 });
            base += p.len();
        }
        assert!(base < NIL as u64, "more pool addresses than the store can index");
        let total = base as usize;
        let state = (0..total).map(|_| AtomicU32::new(FREE | LISTED)).collect();
        let next: Box<[AtomicU32]> = (0..total).map(|i| AtomicU32::new(i as u32 + 1)).collect();
        let heads = ranges
            .iter()
            .map(|r| {
                if r.last >= r.first {
                    next[(r.base + (r.last - r.first)) as usize].store(NIL, Ordering::Relaxed);
                    Head(AtomicU64::new(pack(0, r.base)))
                } else {
                    Head(AtomicU64::new(pack(0, NIL)))
                }
            })
            .collect();
        let mut by_addr: Vec<PoolId> = (0..ranges.len() as u32).collect();
        by_addr.sort_by_key(|&id| ranges[id as usize].first);
        AddressSpace { ranges, by_addr, state, next, heads }
    }

    /// Number of addresses in all pools.
    pub fn capacity(&self) -> usize {
        self.state.len()
    }

    /// Number of pools.
    pub fn pools(&self) -> usize {
        self.ranges.len()
    }

    #[inline]
    fn index_of(&self, ip: u32) -> Option<u32> {
        self.locate(ip).map(|(_, index)| index)
    }

    /// The pool holding `ip` and the address's index in the state arrays.
    #[inline]
    fn locate(&self, ip: u32) -> Option<(PoolId, u32)> {
        let i = self.by_addr.partition_point(|&id| self.ranges[id as usize].last < ip);
        let id = *self.by_addr.get(i)?;
        let r = self.ranges[id as usize];
        (r.first <= ip).then(|| (id, r.base + (ip - r.first)))
    }

    /// The pool holding `ip`, if any.
    pub fn pool_of(&self, ip: Ipv4Addr) -> Option<PoolId> {
        self.locate(ip.into()).map(|(id, _)| id)
    }

    /// Whether `ip` is a dynamic (pool) address.
    pub fn in_pool(&self, ip: Ipv4Addr) -> bool {
        self.index_of(ip.into()).is_some()
    }

    /// Takes any free address of `pool`: O(1) expected (stale entries are skipped once each).
    pub fn take_free(&self, pool: PoolId) -> Option<Ipv4Addr> {
        let r = self.ranges[pool as usize];
        let head = &self.heads[pool as usize].0;
        loop {
            let index = self.pop(head)?;
            // Clear LISTED; take the address if it is still free.
            let word = &self.state[index as usize];
            let mut cur = word.load(Ordering::Acquire);
            loop {
                let free = cur & STATE_MASK == FREE;
                let new = if free { HELD } else { cur & !LISTED };
                match word.compare_exchange_weak(cur, new, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) if free => return Some(Ipv4Addr::from(r.first + (index - r.base))),
                    Ok(_) => break, // stale entry: someone claimed it directly
                    Err(seen) => cur = seen,
                }
            }
        }
    }

    fn pop(&self, head: &AtomicU64) -> Option<u32> {
        let mut h = head.load(Ordering::Acquire);
        loop {
            let index = h as u32;
            if index == NIL {
                return None;
            }
            // May read a stale `next` if the entry was popped meanwhile; the tag makes the
            // compare-and-swap fail then.
            let next = self.next[index as usize].load(Ordering::Acquire);
            let new = pack((h >> 32) as u32 + 1, next);
            match head.compare_exchange_weak(h, new, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Some(index),
                Err(seen) => h = seen,
            }
        }
    }

    fn push(&self, pool: PoolId, index: u32) {
        let head = &self.heads[pool as usize].0;
        let mut h = head.load(Ordering::Acquire);
        loop {
            self.next[index as usize].store(h as u32, Ordering::Release);
            let new = pack((h >> 32) as u32 + 1, index);
            match head.compare_exchange_weak(h, new, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return,
                Err(seen) => h = seen,
            }
        }
    }

    /// Claims one specific address if it is free.
    pub fn claim(&self, ip: Ipv4Addr) -> Claim {
        let Some(index) = self.index_of(ip.into()) else { return Claim::NotInPool };
        let word = &self.state[index as usize];
        let mut cur = word.load(Ordering::Acquire);
        loop {
            if cur & STATE_MASK != FREE {
                return Claim::Busy;
            }
            // Keep LISTED: the stack entry stays and is skipped when popped.
            match word.compare_exchange_weak(cur, (cur & LISTED) | HELD, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Claim::Taken,
                Err(seen) => cur = seen,
            }
        }
    }

    /// Returns a held or declined address to its pool. Addresses outside the pools and
    /// reserved ones are left as they are. Returns whether the address became free.
    pub fn release(&self, ip: Ipv4Addr) -> bool {
        let Some((pool, index)) = self.locate(ip.into()) else { return false };
        let word = &self.state[index as usize];
        let mut cur = word.load(Ordering::Acquire);
        loop {
            let s = cur & STATE_MASK;
            if s != HELD && s != DECLINED {
                return false;
            }
            let listed = cur & LISTED != 0;
            match word.compare_exchange_weak(cur, FREE | LISTED, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    if !listed {
                        self.push(pool, index);
                    }
                    return true;
                }
                Err(seen) => cur = seen,
            }
        }
    }

    /// Moves a held address into decline probation; it stays out of the pool until
    /// [`AddressSpace::release`]. Returns false if the address was not held.
    pub fn quarantine(&self, ip: Ipv4Addr) -> bool {
        self.transition(ip, HELD, DECLINED)
    }

    /// Marks a free pool address as reserved for a fixed client (at start-up).
    pub fn reserve(&self, ip: Ipv4Addr) -> bool {
        self.transition(ip, FREE, RESERVED)
    }

    fn transition(&self, ip: Ipv4Addr, from: u32, to: u32) -> bool {
        let Some(index) = self.index_of(ip.into()) else { return false };
        let word = &self.state[index as usize];
        let mut cur = word.load(Ordering::Acquire);
        loop {
            if cur & STATE_MASK != from {
                return false;
            }
            match word.compare_exchange_weak(cur, (cur & LISTED) | to, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return true,
                Err(seen) => cur = seen,
            }
        }
    }

    /// What `ip` is doing, or `None` outside the pools.
    pub fn status(&self, ip: Ipv4Addr) -> Option<Status> {
        let index = self.index_of(ip.into())?;
        Some(match self.state[index as usize].load(Ordering::Acquire) & STATE_MASK {
            FREE => Status::Free,
            HELD => Status::Held,
            DECLINED => Status::Declined,
            _ => Status::Reserved,
        })
    }

    /// Counts addresses of `pool` in each state (free, held, declined, reserved). A scan: for
    /// statistics and tests, never on the per-packet path.
    pub fn census(&self, pool: PoolId) -> [usize; 4] {
        let r = self.ranges[pool as usize];
        let mut c = [0usize; 4];
        let n = (r.last - r.first) as usize + 1;
        for w in &self.state[r.base as usize..r.base as usize + n] {
            c[(w.load(Ordering::Relaxed) & STATE_MASK) as usize] += 1;
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::Arc;

    fn pool(a: &str, b: &str) -> Pool {
        Pool { first: a.parse().unwrap(), last: b.parse().unwrap() }
    }

    #[test]
    fn takes_in_order_then_runs_dry_then_reuses_released() {
        let s = AddressSpace::new(&[pool("100.64.0.10", "100.64.0.12")]);
        let got: Vec<_> = (0..3).map(|_| s.take_free(0).unwrap()).collect();
        assert_eq!(got, ["100.64.0.10", "100.64.0.11", "100.64.0.12"].map(|x| x.parse::<Ipv4Addr>().unwrap()));
        assert_eq!(s.take_free(0), None);
        assert!(s.release(got[1]));
        assert!(!s.release(got[1]), "double release is refused");
        assert_eq!(s.take_free(0), Some(got[1]));
    }

    #[test]
    fn claimed_address_is_skipped_by_take_and_listed_once() {
        let s = AddressSpace::new(&[pool("100.64.0.10", "100.64.0.11")]);
        let a: Ipv4Addr = "100.64.0.10".parse().unwrap();
        assert_eq!(s.claim(a), Claim::Taken);
        assert_eq!(s.claim(a), Claim::Busy);
        // Release while its stale entry is still on the stack: no second entry is pushed.
        assert!(s.release(a));
        assert_eq!(s.claim(a), Claim::Taken);
        assert_eq!(s.take_free(0), Some("100.64.0.11".parse().unwrap()));
        assert_eq!(s.take_free(0), None);
        assert_eq!(s.claim("100.64.1.1".parse().unwrap()), Claim::NotInPool);
    }

    #[test]
    fn quarantine_and_reserve() {
        let s = AddressSpace::new(&[pool("100.64.0.10", "100.64.0.11")]);
        let a: Ipv4Addr = "100.64.0.10".parse().unwrap();
        let b: Ipv4Addr = "100.64.0.11".parse().unwrap();
        assert!(s.reserve(b));
        assert_eq!(s.take_free(0), Some(a));
        assert!(s.quarantine(a));
        assert_eq!(s.take_free(0), None, "declined and reserved addresses are not handed out");
        assert!(!s.release(b), "reserved addresses never enter the pool");
        assert_eq!(s.census(0), [0, 0, 1, 1]);
        assert!(s.release(a));
        assert_eq!(s.take_free(0), Some(a));
    }

    #[test]
    fn pools_are_found_by_address_whatever_their_order() {
        let s = AddressSpace::new(&[pool("100.64.2.1", "100.64.2.9"), pool("100.64.1.1", "100.64.1.9")]);
        assert_eq!(s.pool_of("100.64.1.5".parse().unwrap()), Some(1));
        assert_eq!(s.pool_of("100.64.2.9".parse().unwrap()), Some(0));
        assert_eq!(s.pool_of("100.64.1.10".parse().unwrap()), None);
        assert_eq!(s.take_free(1), Some("100.64.1.1".parse().unwrap()));
    }

    #[test]
    fn threads_never_share_an_address() {
        // Four threads take, release and claim concurrently; at every moment each address has
        // one holder, checked by each thread's own set staying disjoint from the others'.
        let s = Arc::new(AddressSpace::new(&[pool("100.64.0.1", "100.64.0.200")]));
        let held: Vec<_> = (0..4)
            .map(|t| {
                let s = s.clone();
                std::thread::spawn(move || {
                    let mut mine = HashSet::new();
                    for i in 0..20_000u32 {
                        if i % 3 == 0 {
                            if let Some(&ip) = mine.iter().next() {
                                mine.remove(&ip);
                                assert!(s.release(ip));
                            }
                        } else if i % 7 == t {
                            let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 64, 0, 1)) + i % 200);
                            if s.claim(ip) == Claim::Taken {
                                assert!(mine.insert(ip));
                            }
                        } else if let Some(ip) = s.take_free(0) {
                            assert!(mine.insert(ip), "handed out twice to one thread");
                        }
                    }
                    mine
                })
            })
            .collect();
        let sets: Vec<HashSet<Ipv4Addr>> = held.into_iter().map(|h| h.join().unwrap()).collect();
        let total: usize = sets.iter().map(|s| s.len()).sum();
        let union: HashSet<_> = sets.iter().flatten().collect();
        assert_eq!(total, union.len(), "an address ended up with two holders");
        assert_eq!(s.census(0)[1], total);
        assert_eq!(s.census(0)[0], 200 - total);
    }
}
