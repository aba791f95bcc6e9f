//! One worker's clients: their offers, leases and decline probations, found by client identity
//! in O(1) and ended by a timer wheel in O(1) per event.
//!
//! Records live in a slab of fixed-size chunks (no reallocation, no doubling waste); an
//! [`Index`] of slab indices finds them by [`ClientKey`], and can be warmed ahead of a batch.
//! Every record is on exactly one timer-wheel slot list (intrusive, doubly linked through the
//! record), so moving a deadline or dropping a record is O(1). A record is 32 bytes.

use super::index::Index;
use super::key::ClientKey;

/// What a record stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum LeaseState {
    /// Unused slab slot.
    Vacant = 0,
    /// Address offered, held until the offer times out.
    Offered = 1,
    /// Address leased (ACKed) until the lease expires.
    Bound = 2,
    /// Address declined by a client; out of the pool until probation ends. Not in the index.
    Quarantined = 3,
}

/// One record.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct Lease {
    pub key: ClientKey,
    /// Address (host order).
    pub ip: u32,
    /// Deadline in seconds (offer timeout, lease expiry or end of probation).
    pub expires: u32,
    prev: u32,
    next: u32,
}

const _: () = assert!(core::mem::size_of::<Lease>() == 28);

/// The record plus its state in the slab, and the limit cell its subscriber key counts in
/// (24 bits, 0: counted nowhere), in what would be padding.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
struct Slot {
    lease: Lease,
    state: LeaseState,
    limit: [u8; 3],
}

const _: () = assert!(core::mem::size_of::<Slot>() == 32);

/// A handle to one record of a [`ClientTable`] (its slab index), valid until the record is
/// removed. "No record" is `None`, never a reserved index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordId(u32);

/// The end of an intrusive list (wheel slot or vacant list); never inside a [`RecordId`].
const NIL: u32 = u32::MAX;
const CHUNK_BITS: u32 = 12;
const CHUNK: usize = 1 << CHUNK_BITS;
/// Wheel slots, one per second; deadlines further out wrap around and are skipped until due.
const WHEEL: usize = 1 << 16;

const VACANT: Slot = Slot {
    lease: Lease { key: ClientKey([0; 12]), ip: 0, expires: 0, prev: NIL, next: NIL },
    state: LeaseState::Vacant,
    limit: [0; 3],
};

/// The clients of one worker.
#[derive(Debug)]
pub struct ClientTable {
    chunks: Vec<Box<[Slot]>>,
    /// Slab slots ever used; slots below this are live or on the vacant list.
    used: u32,
    /// Vacant slots, linked through `next`.
    vacant: u32,
    index: Index,
    hasher: foldhash::fast::FixedState,
    wheel: Box<[u32]>,
    /// Every deadline up to this second has been handled.
    handled_until: u32,
    live: usize,
}

impl ClientTable {
    /// An empty table whose clock starts at `now` (seconds), with room for `capacity` records
    /// before the index grows.
    pub fn new(now: u32, capacity: usize) -> ClientTable {
        ClientTable {
            chunks: Vec::new(),
            used: 0,
            vacant: NIL,
            index: Index::with_capacity(capacity),
            hasher: foldhash::fast::FixedState::with_seed(super::random_seed()),
            wheel: vec![NIL; WHEEL].into_boxed_slice(),
            handled_until: now,
            live: 0,
        }
    }

    /// Live records (offers, leases, probations).
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    #[inline]
    fn slot(&self, i: u32) -> &Slot {
        &self.chunks[(i >> CHUNK_BITS) as usize][i as usize & (CHUNK - 1)]
    }

    #[inline]
    fn slot_mut(&mut self, i: u32) -> &mut Slot {
        &mut self.chunks[(i >> CHUNK_BITS) as usize][i as usize & (CHUNK - 1)]
    }

    /// The record of a client, by identity.
    #[inline]
    pub fn find(&self, key: &ClientKey) -> Option<RecordId> {
        let h = key.table_hash(&self.hasher);
        self.index.find(h, |i| self.slot(i).lease.key == *key).map(RecordId)
    }

    /// Warms a lookup of `key`, first stage: starts loading the index entries it reads.
    /// Returns what the second stage needs.
    #[inline]
    pub fn warm_index(&self, key: &ClientKey) -> u64 {
        let h = key.table_hash(&self.hasher);
        self.index.prefetch(h);
        h
    }

    /// Second stage, once the index entries had time to arrive: starts loading the records
    /// the lookup will compare.
    #[inline]
    pub fn warm_records(&self, warmed: u64) {
        self.index.prefetch_matches(warmed, |i| crate::hint::prefetch(self.slot(i)));
    }

    pub fn get(&self, RecordId(i): RecordId) -> (&Lease, LeaseState) {
        let s = self.slot(i);
        (&s.lease, s.state)
    }

    /// Adds a record with its deadline. Clients (not probations) must not be present already.
    pub fn insert(&mut self, key: ClientKey, ip: u32, state: LeaseState, expires: u32) -> RecordId {
        debug_assert!(state != LeaseState::Vacant);
        let expires = self.due(expires);
        let i = self.take_slot(Lease { key, ip, expires, prev: NIL, next: NIL }, state);
        if state != LeaseState::Quarantined {
            self.index.insert(key.table_hash(&self.hasher), i);
        }
        self.link(i);
        self.live += 1;
        RecordId(i)
    }

    /// Adds a client's record unless the client has one already (`None`): for restoring
    /// leases at start, where nearly all are new (the insert's probe finds the entries the
    /// check just read in the cache).
    pub fn insert_new(&mut self, key: ClientKey, ip: u32, state: LeaseState, expires: u32) -> Option<RecordId> {
        debug_assert!(state != LeaseState::Vacant && state != LeaseState::Quarantined);
        let expires = self.due(expires);
        let h = key.table_hash(&self.hasher);
        if self.index.find(h, |j| self.slot(j).lease.key == key).is_some() {
            return None;
        }
        let i = self.take_slot(Lease { key, ip, expires, prev: NIL, next: NIL }, state);
        self.index.insert(h, i);
        self.link(i);
        self.live += 1;
        Some(RecordId(i))
    }

    /// A free slot (a vacant one first, else the next never used) holding `lease`.
    fn take_slot(&mut self, lease: Lease, state: LeaseState) -> u32 {
        let i = if self.vacant != NIL {
            let i = self.vacant;
            self.vacant = self.slot(i).lease.next;
            i
        } else {
            if self.used as usize == self.chunks.len() * CHUNK {
                self.chunks.push(vec![VACANT; CHUNK].into_boxed_slice());
            }
            self.used += 1;
            self.used - 1
        };
        *self.slot_mut(i) = Slot { lease, state, limit: [0; 3] };
        i
    }

    /// Notes the limit cell (24 bits) the record counts in.
    pub fn set_limit(&mut self, RecordId(i): RecordId, cell: u32) {
        let b = cell.to_be_bytes();
        self.slot_mut(i).limit = [b[1], b[2], b[3]];
    }

    /// The limit cell the record counts in (0: none).
    pub fn limit(&self, RecordId(i): RecordId) -> u32 {
        let l = self.slot(i).limit;
        u32::from_be_bytes([0, l[0], l[1], l[2]])
    }

    /// Changes a record's state and deadline (offer accepted, lease renewed).
    pub fn update(&mut self, RecordId(i): RecordId, state: LeaseState, expires: u32) {
        debug_assert!(state != LeaseState::Quarantined && self.slot(i).state != LeaseState::Quarantined);
        let expires = self.due(expires);
        self.unlink(i);
        let s = self.slot_mut(i);
        s.state = state;
        s.lease.expires = expires;
        self.link(i);
    }

    /// Every live record with its handle and state, in slab order. A scan: for the control
    /// plane and reloads, never on the per-packet path.
    pub fn iter(&self) -> impl Iterator<Item = (RecordId, &Lease, LeaseState)> + '_ {
        (0..self.used).filter_map(|i| {
            let s = self.slot(i);
            (s.state != LeaseState::Vacant).then_some((RecordId(i), &s.lease, s.state))
        })
    }

    /// Drops a record and returns it.
    pub fn remove(&mut self, RecordId(i): RecordId) -> (Lease, LeaseState) {
        self.unlink(i);
        let s = *self.slot(i);
        if s.state != LeaseState::Quarantined {
            self.index.remove(s.lease.key.table_hash(&self.hasher), i);
        }
        let vacant = self.vacant;
        let slot = self.slot_mut(i);
        *slot = VACANT;
        slot.lease.next = vacant;
        self.vacant = i;
        self.live -= 1;
        (s.lease, s.state)
    }

    /// A deadline the wheel can still fire: one at or before the last handled second (a
    /// probation of zero, a clock stepped back) would sit in a slot already passed and wait a
    /// whole turn of the wheel; it ends at the next second instead.
    fn due(&self, expires: u32) -> u32 {
        expires.max(self.handled_until.saturating_add(1))
    }

    fn link(&mut self, i: u32) {
        let w = self.slot(i).lease.expires as usize % WHEEL;
        let head = self.wheel[w];
        {
            let s = self.slot_mut(i);
            s.lease.prev = NIL;
            s.lease.next = head;
        }
        if head != NIL {
            self.slot_mut(head).lease.prev = i;
        }
        self.wheel[w] = i;
    }

    fn unlink(&mut self, i: u32) {
        let Lease { prev, next, expires, .. } = self.slot(i).lease;
        if prev != NIL {
            self.slot_mut(prev).lease.next = next;
        } else {
            self.wheel[expires as usize % WHEEL] = next;
        }
        if next != NIL {
            self.slot_mut(next).lease.prev = prev;
        }
    }

    /// Removes every record whose deadline is at or before `now` and hands each to `ended`.
    /// Costs O(seconds elapsed + records ended), at most one turn of the wheel.
    /// `ended` gets each record, its state and its limit cell.
    pub fn expire(&mut self, now: u32, mut ended: impl FnMut(Lease, LeaseState, u32)) {
        if now <= self.handled_until {
            return;
        }
        let from = self.handled_until + 1;
        let seconds = (now - self.handled_until).min(WHEEL as u32);
        for t in 0..seconds {
            let w = (from + t) as usize % WHEEL;
            let mut i = self.wheel[w];
            while i != NIL {
                let Lease { next, expires, .. } = self.slot(i).lease;
                if expires <= now {
                    let limit = self.limit(RecordId(i));
                    let (lease, state) = self.remove(RecordId(i));
                    ended(lease, state, limit);
                }
                i = next;
            }
        }
        self.handled_until = now;
    }

    /// The second up to which deadlines have been handled.
    pub fn handled_until(&self) -> u32 {
        self.handled_until
    }

    /// Bytes held by the table's own structures (slab, index, wheel), for memory accounting.
    pub fn heap_bytes(&self) -> usize {
        self.chunks.len() * CHUNK * core::mem::size_of::<Slot>() + self.index.entries() * 8 + WHEEL * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u32) -> ClientKey {
        let b = n.to_be_bytes();
        ClientKey::from_mac(&[2, 0, b[0], b[1], b[2], b[3]])
    }

    #[test]
    fn insert_find_update_remove() {
        let mut t = ClientTable::new(1000, 0);
        let a = t.insert(key(1), 10, LeaseState::Offered, 1010);
        let b = t.insert(key(2), 11, LeaseState::Offered, 1010);
        assert_eq!(t.find(&key(1)), Some(a));
        assert_eq!(t.find(&key(2)), Some(b));
        assert_eq!(t.find(&key(3)), None);
        t.update(a, LeaseState::Bound, 5000);
        assert_eq!(t.get(a).1, LeaseState::Bound);
        let (l, s) = t.remove(b);
        assert_eq!((l.ip, s), (11, LeaseState::Offered));
        assert_eq!(t.find(&key(2)), None);
        assert_eq!(t.len(), 1);
        // The vacant slot is reused.
        assert_eq!(t.insert(key(3), 12, LeaseState::Offered, 1010), b);
    }

    #[test]
    fn deadlines_fire_in_time_and_moves_are_respected() {
        let mut t = ClientTable::new(1000, 0);
        let a = t.insert(key(1), 10, LeaseState::Offered, 1010);
        t.insert(key(2), 11, LeaseState::Offered, 1010);
        t.insert(key(3), 12, LeaseState::Quarantined, 1005);
        t.update(a, LeaseState::Bound, 1000 + 3600);
        let mut ended = Vec::new();
        t.expire(1004, |l, _, _| ended.push(l.ip));
        assert!(ended.is_empty());
        t.expire(1010, |l, _, _| ended.push(l.ip));
        ended.sort();
        assert_eq!(ended, [11, 12]);
        t.expire(4599, |l, _, _| ended.push(l.ip));
        assert_eq!(ended.len(), 2);
        t.expire(4600, |l, _, _| ended.push(l.ip));
        assert_eq!(ended, [11, 12, 10]);
        assert!(t.is_empty());
    }

    #[test]
    fn deadlines_beyond_one_turn_and_long_jumps() {
        let mut t = ClientTable::new(0, 0);
        t.insert(key(1), 1, LeaseState::Bound, WHEEL as u32 * 3 + 7);
        t.insert(key(2), 2, LeaseState::Bound, 20);
        let mut ended = Vec::new();
        t.expire(WHEEL as u32 * 2, |l, _, _| ended.push(l.ip));
        assert_eq!(ended, [2]);
        t.expire(WHEEL as u32 * 3 + 6, |l, _, _| ended.push(l.ip));
        assert_eq!(ended, [2]);
        t.expire(WHEEL as u32 * 3 + 7, |l, _, _| ended.push(l.ip));
        assert_eq!(ended, [2, 1]);
    }

    #[test]
    fn deadlines_already_passed_fire_at_the_next_second() {
        // Before: a deadline at or before the last handled second (a clock stepped back, a
        // probation of zero) waited a whole turn of the wheel.
        let mut t = ClientTable::new(1000, 0);
        t.insert(key(1), 1, LeaseState::Offered, 1000);
        let b = t.insert(key(2), 2, LeaseState::Offered, 2000);
        t.update(b, LeaseState::Bound, 900);
        let mut ended = Vec::new();
        t.expire(1001, |l, _, _| ended.push(l.ip));
        ended.sort();
        assert_eq!(ended, [1, 2]);
    }

    #[test]
    fn many_records_span_chunks() {
        let mut t = ClientTable::new(0, 0);
        for n in 0..10_000 {
            t.insert(key(n), n, LeaseState::Bound, 100 + n % 50);
        }
        for n in (0..10_000).step_by(997) {
            let i = t.find(&key(n)).unwrap();
            assert_eq!(t.get(i).0.ip, n);
        }
        let mut count = 0;
        t.expire(200, |_, _, _| count += 1);
        assert_eq!(count, 10_000);
        assert!(t.is_empty());
    }

    #[test]
    fn insert_new_refuses_a_present_client_and_reuses_vacant_slots() {
        let mut t = ClientTable::new(0, 0);
        let a = t.insert_new(key(1), 10, LeaseState::Bound, 100).unwrap();
        assert!(t.insert_new(key(1), 11, LeaseState::Bound, 100).is_none());
        assert_eq!(t.len(), 1);
        t.remove(a);
        let b = t.insert_new(key(1), 12, LeaseState::Bound, 100).unwrap();
        assert_eq!(t.find(&key(1)), Some(b));
        assert_eq!(t.get(b).0.ip, 12);
    }
}
