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
//!
//! Declined addresses (probation) are also queued per pool, oldest first, in a bounded
//! lock-free queue (crossbeam's `ArrayQueue`): when the queue is full a new decline ends the
//! oldest probation early, and when a pool has no free address left its oldest probation is
//! taken back (as ISC dhcpd does with abandoned leases). A generation number in the state word
//! tells a queued probation from a later one of the same address, so a stale entry or a
//! probation's timer never frees an address that moved on.
//!
//! In a cluster (`AddressSpace::clustered`) each pool is also cut into blocks of consecutive
//! addresses, each with an atomic [`BlockState`]: free addresses are handed out only from
//! blocks that are `Ours`. An address whose block is not ours stays off the free stack (a
//! stale entry is dropped when popped) and is put on it when the block is granted. A change of
//! block state and a change of address state each re-check the other after a full fence, so
//! an address never stays taken in a block given away, nor free in our block off the stack.
//! Alone (no blocks) every path is as before, one branch longer.

use crate::config::Pool;
use core::net::Ipv4Addr;
use crossbeam_queue::ArrayQueue;
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

const FREE: u32 = 0;
const HELD: u32 = 1;
const DECLINED: u32 = 2;
const RESERVED: u32 = 3;
const STATE_MASK: u32 = 0x3;
/// A held address whose offer became a lease (statistics: offered against leased). Cleared by
/// every change of state.
const BOUND: u32 = 0x4;
/// What a change of state replaces.
const CLEAR: u32 = STATE_MASK | BOUND;
/// The address is on its pool's free stack (possibly as a stale entry).
const LISTED: u32 = 0x100;
/// The number of the address's latest decline, in the top 16 bits.
const GEN_SHIFT: u32 = 16;
const NIL: u32 = u32::MAX;
/// Most probations queued per pool, whatever the share allowed.
const MAX_QUEUED_DECLINES: usize = 1 << 16;

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

/// Who may hand out the free addresses of a block (in a cluster).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockState {
    /// Another node's, or nobody's: none of its free addresses is given out here.
    NotOurs,
    /// Taken over from a dead node: its known leases are served; its free addresses are given
    /// out only from `free_after` (seconds) on, when [`AddressSpace::ripen`] makes it `Ours`.
    Adopting { free_after: u32 },
    /// Ours: its free addresses are given out.
    Ours,
}

const BLOCK_NOT_OURS: u64 = 0;
const BLOCK_OURS: u64 = 1;
const BLOCK_ADOPTING: u64 = 2;

impl BlockState {
    fn encode(self) -> u64 {
        match self {
            BlockState::NotOurs => BLOCK_NOT_OURS,
            BlockState::Ours => BLOCK_OURS,
            BlockState::Adopting { free_after } => BLOCK_ADOPTING | (free_after as u64) << 32,
        }
    }

    fn decode(w: u64) -> BlockState {
        match w & 0x3 {
            BLOCK_OURS => BlockState::Ours,
            BLOCK_ADOPTING => BlockState::Adopting { free_after: (w >> 32) as u32 },
            _ => BlockState::NotOurs,
        }
    }
}

/// The blocks of every pool (cluster mode).
#[derive(Debug)]
struct Blocks {
    /// Addresses per block.
    size: u32,
    /// Per pool: the index of its first block in `state`.
    first: Box<[u32]>,
    state: Box<[AtomicU64]>,
}

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
    /// Per pool: its probations, oldest first, as (decline generation << 32 | index).
    declined: Box<[ArrayQueue<u64>]>,
    /// Cluster mode: who may give out each block's free addresses. `None`: all of them, alone.
    blocks: Option<Blocks>,
}

/// A decline that went into probation: its generation, and the probation it ended early to
/// stay within the pool's share, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Declined {
    pub generation: u16,
    pub ended_early: Option<Ipv4Addr>,
}

#[inline]
fn pack(tag: u32, index: u32) -> u64 {
    (tag as u64) << 32 | index as u64
}

impl AddressSpace {
    /// All addresses free; each pool hands out its addresses in ascending order at first. No
    /// cap on probations beyond the queue's size.
    pub fn new(pools: &[Pool]) -> AddressSpace {
        AddressSpace::with_decline_cap(pools, 100)
    }

    /// [`AddressSpace::new`], with at most `percent` of each pool in probation.
    pub fn with_decline_cap(pools: &[Pool], percent: u8) -> AddressSpace {
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
        let declined = pools
            .iter()
            .map(|p| {
                let cap = (p.len() * percent.clamp(1, 100) as u64 / 100) as usize;
                ArrayQueue::new(cap.clamp(1, MAX_QUEUED_DECLINES))
            })
            .collect();
        AddressSpace { ranges, by_addr, state, next, heads, declined, blocks: None }
    }

    /// [`AddressSpace::with_decline_cap`] for a cluster node: every pool cut into blocks of
    /// `block_size` addresses, none of them ours yet (see [`AddressSpace::grant_block`]).
    pub fn clustered(pools: &[Pool], percent: u8, block_size: u32) -> AddressSpace {
        let mut s = AddressSpace::with_decline_cap(pools, percent);
        let size = block_size.max(1);
        let mut first = Vec::with_capacity(pools.len());
        let mut total = 0u32;
        for p in pools {
            first.push(total);
            total += p.len().div_ceil(size as u64) as u32;
        }
        // Nothing is on a free stack until its block is granted.
        for w in s.state.iter_mut() {
            *w.get_mut() = FREE;
        }
        for h in s.heads.iter_mut() {
            *h.0.get_mut() = pack(0, NIL);
        }
        let state = (0..total).map(|_| AtomicU64::new(BLOCK_NOT_OURS)).collect();
        s.blocks = Some(Blocks { size, first: first.into(), state });
        s
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

    /// The address's position among all pool addresses (0..capacity), if in a pool.
    pub fn index(&self, ip: Ipv4Addr) -> Option<usize> {
        self.index_of(ip.into()).map(|i| i as usize)
    }

    /// Whether `ip` is a dynamic (pool) address.
    pub fn in_pool(&self, ip: Ipv4Addr) -> bool {
        self.index_of(ip.into()).is_some()
    }

    /// Takes any free address of `pool`: O(1) expected (stale entries are skipped once each).
    pub fn take_free(&self, pool: PoolId) -> Option<Ipv4Addr> {
        let r = self.ranges[pool as usize];
        let head = &self.heads[pool as usize].0;
        'pop: loop {
            let index = self.pop(head)?;
            if self.blocks.is_some() && !self.allocatable(pool, index) {
                self.unlist(pool, index);
                continue;
            }
            // Clear LISTED; take the address if it is still free.
            let word = &self.state[index as usize];
            let mut cur = word.load(Ordering::Acquire);
            loop {
                let free = cur & STATE_MASK == FREE;
                let new = if free { (cur & !CLEAR & !LISTED) | HELD } else { cur & !LISTED };
                match word.compare_exchange_weak(cur, new, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) if free => break,
                    Ok(_) => continue 'pop, // stale entry: someone claimed it directly
                    Err(seen) => cur = seen,
                }
            }
            if self.blocks.is_some() && !self.still_ours(pool, index) {
                continue;
            }
            return Some(Ipv4Addr::from(r.first + (index - r.base)));
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

    /// Claims one specific address if it is free (in a cluster: and its block is ours).
    pub fn claim(&self, ip: Ipv4Addr) -> Claim {
        let Some((pool, index)) = self.locate(ip.into()) else { return Claim::NotInPool };
        if self.blocks.is_some() && !self.allocatable(pool, index) {
            return Claim::Busy;
        }
        let c = self.claim_index(index);
        if c == Claim::Taken && self.blocks.is_some() && !self.still_ours(pool, index) {
            return Claim::Busy;
        }
        c
    }

    /// Claims an address for a client known to hold it (a lease restored from the journal or
    /// adopted from a peer), whoever's block it is in.
    pub fn claim_known(&self, ip: Ipv4Addr) -> Claim {
        match self.index_of(ip.into()) {
            Some(index) => self.claim_index(index),
            None => Claim::NotInPool,
        }
    }

    fn claim_index(&self, index: u32) -> Claim {
        let word = &self.state[index as usize];
        let mut cur = word.load(Ordering::Acquire);
        loop {
            if cur & STATE_MASK != FREE {
                return Claim::Busy;
            }
            // Keep LISTED: the stack entry stays and is skipped when popped.
            match word.compare_exchange_weak(cur, (cur & !CLEAR) | HELD, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Claim::Taken,
                Err(seen) => cur = seen,
            }
        }
    }

    /// Returns a held address to its pool. Addresses outside the pools, reserved ones and
    /// those in probation are left as they are. Returns whether the address became free.
    pub fn release(&self, ip: Ipv4Addr) -> bool {
        let Some((pool, index)) = self.locate(ip.into()) else { return false };
        let word = &self.state[index as usize];
        let mut cur = word.load(Ordering::Acquire);
        loop {
            if cur & STATE_MASK != HELD {
                return false;
            }
            if self.blocks.is_some() {
                return self.free_in_block(pool, index, |w| w & STATE_MASK == HELD);
            }
            let listed = cur & LISTED != 0;
            let new = (cur & !CLEAR & !LISTED) | FREE | LISTED;
            match word.compare_exchange_weak(cur, new, Ordering::AcqRel, Ordering::Acquire) {
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
    /// [`AddressSpace::end_probation`] with the generation returned, or until it is taken back
    /// early. `None` if the address was not held (a reserved or out-of-pool one).
    pub fn quarantine(&self, ip: Ipv4Addr) -> Option<Declined> {
        let (pool, index) = self.locate(ip.into())?;
        let word = &self.state[index as usize];
        let mut cur = word.load(Ordering::Acquire);
        let generation = loop {
            if cur & STATE_MASK != HELD {
                return None;
            }
            let gen = ((cur >> GEN_SHIFT) as u16).wrapping_add(1);
            let new = (gen as u32) << GEN_SHIFT | (cur & LISTED) | DECLINED;
            match word.compare_exchange_weak(cur, new, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => break gen,
                Err(seen) => cur = seen,
            }
        };
        let entry = (generation as u64) << 32 | index as u64;
        // Full: the oldest probation ends now, so the pool never holds more than its share.
        let ended_early = self.declined[pool as usize].force_push(entry).and_then(|old| self.end_queued(pool, old));
        Some(Declined { generation, ended_early })
    }

    /// Ends probation `generation` of `ip` (its time is up): the address returns to the pool.
    /// False if that probation already ended (taken back early, or declined again since).
    pub fn end_probation(&self, ip: Ipv4Addr, generation: u16) -> bool {
        let Some((pool, index)) = self.locate(ip.into()) else { return false };
        self.free_declined(pool, index, generation)
    }

    /// A queued probation leaving the queue: ends it if it is still current.
    fn end_queued(&self, pool: PoolId, entry: u64) -> Option<Ipv4Addr> {
        let index = entry as u32;
        let r = self.ranges[pool as usize];
        self.free_declined(pool, index, (entry >> 32) as u16).then(|| Ipv4Addr::from(r.first + (index - r.base)))
    }

    fn free_declined(&self, pool: PoolId, index: u32, generation: u16) -> bool {
        let word = &self.state[index as usize];
        let mut cur = word.load(Ordering::Acquire);
        loop {
            if cur & STATE_MASK != DECLINED || (cur >> GEN_SHIFT) as u16 != generation {
                return false;
            }
            if self.blocks.is_some() {
                let current = |w: u32| w & STATE_MASK == DECLINED && (w >> GEN_SHIFT) as u16 == generation;
                return self.free_in_block(pool, index, current);
            }
            let listed = cur & LISTED != 0;
            let new = (cur & !CLEAR & !LISTED) | FREE | LISTED;
            match word.compare_exchange_weak(cur, new, Ordering::AcqRel, Ordering::Acquire) {
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

    /// Takes back the oldest probation of `pool` for a new client (the pool has nothing else
    /// left): the address is held by the caller on return.
    pub fn reclaim_declined(&self, pool: PoolId) -> Option<Ipv4Addr> {
        let r = self.ranges[pool as usize];
        while let Some(entry) = self.declined[pool as usize].pop() {
            let (index, generation) = (entry as u32, (entry >> 32) as u16);
            let word = &self.state[index as usize];
            let cur = word.load(Ordering::Acquire);
            if cur & STATE_MASK != DECLINED || (cur >> GEN_SHIFT) as u16 != generation {
                continue; // stale: that probation ended already
            }
            if self.blocks.is_some() && !self.allocatable(pool, index) {
                continue; // not ours to give: its probation's timer ends it
            }
            let new = (cur & !CLEAR) | HELD;
            if word.compare_exchange(cur, new, Ordering::AcqRel, Ordering::Acquire).is_ok()
                && (self.blocks.is_none() || self.still_ours(pool, index))
            {
                return Some(Ipv4Addr::from(r.first + (index - r.base)));
            }
        }
        None
    }

    /// Notes that the holder of `ip` leased it (its offer was accepted, or a lease was restored).
    /// No-op unless the address is held. One load when already noted (a renewal).
    pub fn mark_bound(&self, ip: Ipv4Addr) {
        let Some(index) = self.index_of(ip.into()) else { return };
        let word = &self.state[index as usize];
        let mut cur = word.load(Ordering::Acquire);
        while cur & STATE_MASK == HELD && cur & BOUND == 0 {
            match word.compare_exchange_weak(cur, cur | BOUND, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return,
                Err(seen) => cur = seen,
            }
        }
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
            match word.compare_exchange_weak(cur, (cur & !CLEAR) | to, Ordering::AcqRel, Ordering::Acquire) {
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

    /// The first and last address of `pool`.
    pub fn pool_range(&self, pool: PoolId) -> (Ipv4Addr, Ipv4Addr) {
        let r = self.ranges[pool as usize];
        (r.first.into(), r.last.into())
    }

    /// Held addresses of `pool` that are leased (the rest of the held ones are offered). A scan:
    /// for statistics, never on the per-packet path.
    pub fn census_bound(&self, pool: PoolId) -> usize {
        let r = self.ranges[pool as usize];
        let n = (r.last - r.first) as usize + 1;
        let words = &self.state[r.base as usize..r.base as usize + n];
        words.iter().filter(|w| w.load(Ordering::Relaxed) & (STATE_MASK | BOUND) == HELD | BOUND).count()
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

/// Blocks (cluster mode): their states, and the free stack kept to the blocks that are ours.
/// Block states are changed by one thread (the cluster thread, `ripen` included); addresses
/// are taken and freed by any.
impl AddressSpace {
    /// Addresses per block; `None` alone (no blocks).
    pub fn block_size(&self) -> Option<u32> {
        self.blocks.as_ref().map(|b| b.size)
    }

    /// Number of blocks of `pool` (0 alone).
    pub fn blocks_in(&self, pool: PoolId) -> u32 {
        let Some(b) = &self.blocks else { return 0 };
        let r = self.ranges[pool as usize];
        (r.last - r.first + 1).div_ceil(b.size)
    }

    /// The pool and block of `ip`, if it is a pool address and the space has blocks.
    pub fn block_of(&self, ip: Ipv4Addr) -> Option<(PoolId, u32)> {
        let b = self.blocks.as_ref()?;
        let (pool, index) = self.locate(ip.into())?;
        Some((pool, (index - self.ranges[pool as usize].base) / b.size))
    }

    /// The first and last address of a block.
    pub fn block_range(&self, pool: PoolId, block: u32) -> Option<(Ipv4Addr, Ipv4Addr)> {
        let (first, n) = self.block_span(pool, block)?;
        let r = self.ranges[pool as usize];
        let a = r.first + (first - r.base);
        Some((a.into(), (a + n - 1).into()))
    }

    /// The state of a block; `None` alone or out of range.
    pub fn block_state(&self, pool: PoolId, block: u32) -> Option<BlockState> {
        self.block_word(pool, block).map(|w| BlockState::decode(w.load(Ordering::SeqCst)))
    }

    /// The state of the block holding `ip`; `Ours` alone, `None` outside the pools.
    pub fn block_state_of(&self, ip: Ipv4Addr) -> Option<BlockState> {
        let Some(b) = &self.blocks else { return self.in_pool(ip).then_some(BlockState::Ours) };
        let (pool, index) = self.locate(ip.into())?;
        Some(BlockState::decode(b.state[self.block_index(b, pool, index)].load(Ordering::Acquire)))
    }

    /// Makes a block ours: its free addresses go on the free stack. False out of range.
    pub fn grant_block(&self, pool: PoolId, block: u32) -> bool {
        self.set_block(pool, block, BlockState::Ours)
    }

    /// Takes a dead node's block over: its known leases are served now, its free addresses
    /// given out from `free_after` on (see [`AddressSpace::ripen`]). False out of range.
    pub fn adopt_block(&self, pool: PoolId, block: u32, free_after: u32) -> bool {
        self.set_block(pool, block, BlockState::Adopting { free_after })
    }

    /// Gives a block back (`NotOurs`) if none of its addresses is held or in probation; false
    /// (and the block unchanged) otherwise or out of range.
    pub fn revoke_block(&self, pool: PoolId, block: u32) -> bool {
        let (Some(w), Some((first, n))) = (self.block_word(pool, block), self.block_span(pool, block)) else {
            return false;
        };
        let before = w.swap(BLOCK_NOT_OURS, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        // A taker that saw the block ours re-checks it after taking (`still_ours`): either it
        // sees the change and gives the address back, or its address is seen held here.
        let words = &self.state[first as usize..(first + n) as usize];
        let busy = words.iter().any(|w| matches!(w.load(Ordering::SeqCst) & STATE_MASK, HELD | DECLINED));
        if busy {
            w.store(before, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            self.list_block(pool, first, n);
        }
        !busy
    }

    /// Gives a block up whatever it holds (`NotOurs`): another node took it over while this one
    /// was cut off. Its held addresses stay held until their leases end; no free one is given
    /// out here any more. False out of range.
    pub fn lose_block(&self, pool: PoolId, block: u32) -> bool {
        self.set_block(pool, block, BlockState::NotOurs)
    }

    /// (used, free) addresses of a block: used = held or in probation. A scan of one block.
    pub fn block_census(&self, pool: PoolId, block: u32) -> (u32, u32) {
        let Some((first, n)) = self.block_span(pool, block) else { return (0, 0) };
        let mut c = (0, 0);
        for w in &self.state[first as usize..(first + n) as usize] {
            match w.load(Ordering::Relaxed) & STATE_MASK {
                HELD | DECLINED => c.0 += 1,
                FREE => c.1 += 1,
                _ => {}
            }
        }
        c
    }

    /// Free addresses of `pool` in blocks that are ours (alone: in the whole pool). A scan of
    /// the pool: for the cluster thread, never on the per-packet path.
    pub fn free_in_our_blocks(&self, pool: PoolId) -> usize {
        let Some(b) = &self.blocks else { return self.census(pool)[0] };
        let blocks = 0..self.blocks_in(pool);
        blocks
            .filter(|&k| b.state[(b.first[pool as usize] + k) as usize].load(Ordering::Relaxed) == BLOCK_OURS)
            .map(|k| self.block_census(pool, k).1 as usize)
            .sum()
    }

    /// Makes every adopted block of `pool` whose `free_after` has come (at `now`) ours, and
    /// returns how many. A scan of the pool's block states.
    pub fn ripen(&self, pool: PoolId, now: u32) -> u32 {
        let Some(b) = &self.blocks else { return 0 };
        let mut n = 0;
        for k in 0..self.blocks_in(pool) {
            let w = &b.state[(b.first[pool as usize] + k) as usize];
            let cur = w.load(Ordering::SeqCst);
            let ripe = matches!(BlockState::decode(cur), BlockState::Adopting { free_after } if free_after <= now);
            if ripe && w.compare_exchange(cur, BLOCK_OURS, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
                fence(Ordering::SeqCst);
                if let Some((first, len)) = self.block_span(pool, k) {
                    self.list_block(pool, first, len);
                }
                n += 1;
            }
        }
        n
    }

    /// Takes over the block states of `old` (the space a reload replaces) for every pool with
    /// the same range and block size; other pools start with no block ours. Call before the
    /// new space serves.
    pub fn carry_blocks(&self, old: &AddressSpace) {
        if self.block_size().is_none() || self.block_size() != old.block_size() {
            return;
        }
        for p in 0..self.pools() as PoolId {
            let same = (0..old.pools() as PoolId).find(|&q| old.pool_range(q) == self.pool_range(p));
            for (k, state) in
                same.into_iter().flat_map(|q| (0..old.blocks_in(q)).map(move |k| (k, old.block_state(q, k))))
            {
                if let Some(state) = state.filter(|s| *s != BlockState::NotOurs) {
                    self.set_block(p, k, state);
                }
            }
        }
    }

    fn set_block(&self, pool: PoolId, block: u32, to: BlockState) -> bool {
        let (Some(w), Some((first, n))) = (self.block_word(pool, block), self.block_span(pool, block)) else {
            return false;
        };
        w.store(to.encode(), Ordering::SeqCst);
        fence(Ordering::SeqCst);
        self.list_block(pool, first, n);
        true
    }

    fn block_word(&self, pool: PoolId, block: u32) -> Option<&AtomicU64> {
        let b = self.blocks.as_ref()?;
        (pool < self.pools() as u32 && block < self.blocks_in(pool))
            .then(|| &b.state[(b.first[pool as usize] + block) as usize])
    }

    /// The state index of a block's first address and its number of addresses.
    fn block_span(&self, pool: PoolId, block: u32) -> Option<(u32, u32)> {
        let b = self.blocks.as_ref()?;
        if pool >= self.pools() as u32 || block >= self.blocks_in(pool) {
            return None;
        }
        let r = self.ranges[pool as usize];
        let start = block * b.size;
        Some((r.base + start, b.size.min(r.last - r.first + 1 - start)))
    }

    #[inline]
    fn block_index(&self, b: &Blocks, pool: PoolId, index: u32) -> usize {
        (b.first[pool as usize] + (index - self.ranges[pool as usize].base) / b.size) as usize
    }

    /// Whether free addresses of the block holding `index` may be given out.
    #[inline]
    fn allocatable(&self, pool: PoolId, index: u32) -> bool {
        self.blocks
            .as_ref()
            .is_none_or(|b| b.state[self.block_index(b, pool, index)].load(Ordering::SeqCst) == BLOCK_OURS)
    }

    /// After taking `index` (held, off the stack unless claimed): whether its block is still
    /// ours; if not, the address is given back and false returned.
    fn still_ours(&self, pool: PoolId, index: u32) -> bool {
        fence(Ordering::SeqCst);
        if self.allocatable(pool, index) {
            return true;
        }
        self.free_in_block(pool, index, |w| w & STATE_MASK == HELD);
        false
    }

    /// Frees `index` (while `current` holds of its word) without listing it, then lists it if
    /// its block is ours. False if `current` stopped holding.
    fn free_in_block(&self, pool: PoolId, index: u32, current: impl Fn(u32) -> bool) -> bool {
        let word = &self.state[index as usize];
        let mut cur = word.load(Ordering::Acquire);
        loop {
            if !current(cur) {
                return false;
            }
            match word.compare_exchange_weak(cur, (cur & !CLEAR) | FREE, Ordering::SeqCst, Ordering::Acquire) {
                Ok(_) => break,
                Err(seen) => cur = seen,
            }
        }
        fence(Ordering::SeqCst);
        self.list(pool, index);
        true
    }

    /// A popped entry of a block that is not ours: off the stack, unless the block became
    /// ours meanwhile.
    fn unlist(&self, pool: PoolId, index: u32) {
        self.state[index as usize].fetch_and(!LISTED, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        self.list(pool, index);
    }

    /// Puts a free, unlisted address of a block that is ours on its pool's stack (once).
    fn list(&self, pool: PoolId, index: u32) {
        if !self.allocatable(pool, index) {
            return;
        }
        let word = &self.state[index as usize];
        let mut cur = word.load(Ordering::SeqCst);
        while cur & STATE_MASK == FREE && cur & LISTED == 0 {
            match word.compare_exchange_weak(cur, cur | LISTED, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return self.push(pool, index),
                Err(seen) => cur = seen,
            }
        }
    }

    /// [`AddressSpace::list`] for every address of a block, last first: the stack then gives
    /// them out in ascending order.
    fn list_block(&self, pool: PoolId, first: u32, n: u32) {
        for i in (first..first + n).rev() {
            self.list(pool, i);
        }
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
    fn a_lease_counts_as_bound_until_its_address_changes_state() {
        let s = AddressSpace::new(&[pool("100.64.0.10", "100.64.0.12")]);
        let (a, b) = (s.take_free(0).unwrap(), s.take_free(0).unwrap());
        assert_eq!(s.census_bound(0), 0, "offers only");
        s.mark_bound(a);
        s.mark_bound(a);
        assert_eq!((s.census(0)[1], s.census_bound(0)), (2, 1));
        assert!(s.release(a));
        assert_eq!(s.census_bound(0), 0, "a release clears it");
        s.mark_bound(b);
        s.quarantine(b).unwrap();
        assert_eq!(s.census_bound(0), 0, "a decline clears it");
        s.mark_bound(a);
        assert_eq!(s.census_bound(0), 0, "a free address is not marked");
        let again: Vec<_> = (0..2).filter_map(|_| s.take_free(0)).collect();
        assert!(again.contains(&a));
        assert_eq!(s.census_bound(0), 0, "taken again: an offer");
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
        let d = s.quarantine(a).unwrap();
        assert_eq!(s.take_free(0), None, "declined and reserved addresses are not handed out");
        assert!(!s.release(b), "reserved addresses never enter the pool");
        assert!(!s.release(a), "a probation ends only as a probation");
        assert_eq!(s.census(0), [0, 0, 1, 1]);
        assert!(s.end_probation(a, d.generation));
        assert!(!s.end_probation(a, d.generation), "ended once");
        assert_eq!(s.take_free(0), Some(a));
    }

    #[test]
    fn probations_beyond_the_share_end_the_oldest_early() {
        // 10 addresses, at most 20% in probation: the third decline ends the first.
        let s = AddressSpace::with_decline_cap(&[pool("100.64.0.1", "100.64.0.10")], 20);
        let ips: Vec<Ipv4Addr> = (0..3).map(|_| s.take_free(0).unwrap()).collect();
        let d0 = s.quarantine(ips[0]).unwrap();
        assert_eq!(s.quarantine(ips[1]).unwrap().ended_early, None);
        assert_eq!(s.quarantine(ips[2]).unwrap().ended_early, Some(ips[0]));
        assert_eq!(s.status(ips[0]), Some(Status::Free));
        assert_eq!(s.census(0)[2], 2);
        // Back on the free stack, taken by another client; the first one's timer fires later:
        // that probation is over already, and the address is not freed under its new holder.
        assert_eq!(s.take_free(0), Some(ips[0]));
        assert!(!s.end_probation(ips[0], d0.generation), "a stale timer frees nothing");
        assert_eq!(s.status(ips[0]), Some(Status::Held));
    }

    #[test]
    fn an_empty_pool_takes_back_its_oldest_probation() {
        let s = AddressSpace::new(&[pool("100.64.0.1", "100.64.0.3")]);
        let ips: Vec<Ipv4Addr> = (0..3).map(|_| s.take_free(0).unwrap()).collect();
        let d0 = s.quarantine(ips[0]).unwrap();
        s.quarantine(ips[1]).unwrap();
        assert_eq!(s.take_free(0), None);
        assert_eq!(s.reclaim_declined(0), Some(ips[0]), "oldest first");
        assert_eq!(s.status(ips[0]), Some(Status::Held));
        assert!(!s.end_probation(ips[0], d0.generation), "its timer no longer frees it");
        assert_eq!(s.reclaim_declined(0), Some(ips[1]));
        assert_eq!(s.reclaim_declined(0), None);
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

    #[test]
    fn blocks_not_ours_give_nothing_and_a_granted_block_gives_in_order() {
        let s = AddressSpace::clustered(&[pool("100.64.0.1", "100.64.0.40")], 100, 16);
        assert_eq!((s.block_size(), s.blocks_in(0)), (Some(16), 3));
        assert_eq!(s.block_range(0, 2), Some(("100.64.0.33".parse().unwrap(), "100.64.0.40".parse().unwrap())));
        assert_eq!(s.take_free(0), None, "nothing is ours yet");
        let a: Ipv4Addr = "100.64.0.20".parse().unwrap();
        assert_eq!(s.claim(a), Claim::Busy, "nor claimable");
        assert_eq!(s.claim_known(a), Claim::Taken, "but a known lease holds it");
        assert!(s.release(a));
        assert!(s.grant_block(0, 1));
        let got: Vec<Ipv4Addr> = std::iter::from_fn(|| s.take_free(0)).collect();
        assert_eq!(got.len(), 16);
        assert_eq!(got[0], "100.64.0.17".parse::<Ipv4Addr>().unwrap());
        assert!(got.iter().all(|ip| s.block_of(*ip) == Some((0, 1))));
        assert_eq!(s.block_census(0, 1), (16, 0));
        assert!(!s.revoke_block(0, 1), "it holds addresses");
        got.iter().for_each(|ip| assert!(s.release(*ip)));
        assert!(s.revoke_block(0, 1));
        assert_eq!(s.take_free(0), None, "stale stack entries of a revoked block are dropped");
        assert!(s.adopt_block(0, 2, 100));
        assert_eq!((s.ripen(0, 99), s.take_free(0)), (0, None));
        assert_eq!(s.ripen(0, 100), 1);
        assert_eq!(s.free_in_our_blocks(0), 8);
    }

    #[test]
    fn granting_and_revoking_under_load_never_leaves_an_address_taken_in_a_block_not_ours() {
        let s = Arc::new(AddressSpace::clustered(&[pool("100.64.0.1", "100.64.0.128")], 100, 16));
        (0..8).for_each(|b| assert!(s.grant_block(0, b)));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let takers: Vec<_> = (0..3)
            .map(|t| {
                let (s, stop) = (s.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut mine: Vec<Ipv4Addr> = Vec::new();
                    let mut i = 0u32;
                    while !stop.load(Ordering::Relaxed) || i < 20_000 {
                        i += 1;
                        // Each taker holds up to 12 addresses: blocks keep emptying.
                        if mine.len() >= 12 || ((i + t).is_multiple_of(3) && !mine.is_empty()) {
                            assert!(s.release(mine.swap_remove(i as usize % mine.len())));
                        } else if let Some(ip) = s.take_free(0) {
                            mine.push(ip);
                        }
                    }
                    mine
                })
            })
            .collect();
        // The cluster thread's part: an empty block given back, another one granted again.
        let mut not_ours: Vec<u32> = Vec::new();
        for round in 0..20_000u32 {
            let b = round % 8;
            if !not_ours.contains(&b) && s.revoke_block(0, b) {
                if let Some(back) = not_ours.pop() {
                    assert!(s.grant_block(0, back));
                }
                not_ours.push(b);
            }
        }
        stop.store(true, Ordering::Relaxed);
        let held: Vec<Vec<Ipv4Addr>> = takers.into_iter().map(|h| h.join().unwrap()).collect();
        let all: HashSet<Ipv4Addr> = held.iter().flatten().copied().collect();
        assert_eq!(all.len(), held.iter().map(Vec::len).sum::<usize>(), "an address went to two takers");
        for b in 0..8 {
            let (used, free) = s.block_census(0, b);
            let mine = all.iter().filter(|ip| s.block_of(**ip) == Some((0, b))).count() as u32;
            assert_eq!((used, used + free), (mine, 16), "block {b}: held exactly by the takers");
            if not_ours.contains(&b) {
                assert_eq!(used, 0, "block {b} was given back yet an address in it is taken");
            }
        }
        // Nothing fell off the free stack: every free address can still be taken.
        (0..8).for_each(|b| assert!(s.grant_block(0, b)));
        let more = std::iter::from_fn(|| s.take_free(0)).count();
        assert_eq!(more + all.len(), 128);
    }
}
