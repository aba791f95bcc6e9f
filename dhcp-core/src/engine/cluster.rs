//! The engine's side of a cluster (issue 13): several nodes on one segment sharing pools cut
//! into blocks, each node handing out free addresses only from blocks it owns (see
//! `lease::space`), answering the clients whose primary it is, and knowing the other nodes'
//! leases. Holds [`ClusterView`] (what the cluster thread tells the workers: who is alive, how
//! long this node may grant; and the queue of this node's lease events going out), the cluster
//! counters, the checks on the packet path, and [`Engine::adopt_lease`]. Must never: talk to
//! NATS, read a clock, block, or allocate per message; alone (no `[cluster]`) it costs one
//! branch per message.
//!
//! # Who answers
//! A client's primary is the RFC 3074 load-balancing hash of its identity (option 61, else
//! `chaddr`) to a bucket 0..=255, and bucket `% peers` to a node; a dead primary is replaced by
//! the next live node in list order. Another node stays silent for a DISCOVER, and for a REQUEST
//! confirming a lease it did not grant, until the client's `secs` reaches `wait_secs`. A node
//! always answers for leases in its own blocks, and for offers it made. A lease in a block
//! that is not ours (adopted from another node's events) is confirmed but never lengthened:
//! only a block's owner (`Ours` or `Adopting`) makes new lease time on its addresses.
//!
//! # The fence rule
//! Let `h` be the time of this node's last heartbeat confirmed by NATS, `D` the dead-after
//! time, `L` the longest lease time of any subnet. A node grants no lease ending after
//! `grant_limit = h + D + L - 2 s`, and nothing at all before its first confirmed heartbeat.
//! Survivors take a node's blocks over (by compare-and-swap in NATS) no earlier than `h + D`:
//! its heartbeat key is older than `D` only then. A block taken over at `T` is `Adopting` and
//! gives out no free address before `free_after = T + L + 2 s` (earlier only when the dead
//! node's events are known complete); its leases known from events are served at once.
//!
//! Proof sketch (no address is held by two clients). Take an address `a` in block `B`. While a
//! node owns `B` it alone gives `a` to a new client or lengthens a lease on it (other nodes
//! confirm a lease on `a` only up to the end its owner gave; blocks are claimed by compare-and-swap, so
//! one owner at a time; an address leaves our free list before the block is given back, and a
//! block is given back only when none of its addresses is held). When `B` passes from a node X
//! (dead, or cut off from NATS) to a survivor Y at `T >= h + D`, every lease X granted ends by
//! `grant_limit = h + D + L - 2 < T + L + 2 = free_after` (X's heartbeat at `h` was its last
//! confirmed one, so its limit never grew past this; the 4 s margin covers clock skew between
//! nodes). Y gives `a` to a new client only from `free_after` on, when no lease of X's on `a`
//! is left; before that Y serves `a` only to the client that X's events say holds it. So `a`
//! never has two holders. A client whose lease the survivors know keeps its address on rebind,
//! since the survivor holds `a` for it (an adopted lease) and ACKs it there. When the partition
//! heals, X finds `B` taken and gives it up at once (`AddressSpace::lose_block`): its leases on
//! `B` stay until their end (before `free_after`) and X no longer lengthens them.

use super::{Context, Engine, EventKind, LeaseEvent, Outcome, RestoreError, Seconds, Silence};
use crate::config::ClusterConfig;
use crate::lease::space::BlockState;
use crate::lease::{LeaseState, RecordId};
use core::net::Ipv4Addr;
use crossbeam_queue::ArrayQueue;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

super::stats::counters! {
    /// Counters of one engine in a cluster, summed like [`Stats`](super::Stats).
    ClusterStats {
        /// Messages left to the client's primary (DISCOVER, or a REQUEST for a lease not ours,
        /// with `secs` below `wait_secs`).
        not_primary => "pkt4-not-primary",
        /// Requested addresses not given because their block is not ours.
        not_our_block => "pkt4-not-our-block",
        /// Messages left unanswered because this node may grant nothing (no heartbeat
        /// confirmed, or past its grant limit).
        fenced => "pkt4-cluster-fenced",
        /// Leases shortened to end by the grant limit.
        lease_capped => "cluster-leases-capped",
        /// Lease events not published: the queue to the cluster thread was full.
        events_dropped => "cluster-events-dropped",
        /// Other nodes' leases installed or renewed here.
        leases_adopted => "cluster-leases-adopted",
        /// Other nodes' leases ended here (released, expired, declined there).
        adopted_ended => "cluster-adopted-leases-ended",
        /// Other nodes' leases refused (the address is held here by another client, or not
        /// served).
        adopt_refused => "cluster-adopt-refused",
    }
}

/// What the cluster thread tells the workers, read lock-free on the packet path: the peers
/// and which are alive, how long this node may grant, and the queue of this node's lease
/// events to publish.
#[derive(Debug)]
pub struct ClusterView {
    peers: Box<[String]>,
    me: usize,
    /// Bit `i`: peer `i` is alive (this node's own bit is always set).
    live: AtomicU64,
    wait_secs: u16,
    /// Seconds of `dead_after_ms`, rounded down (the limit errs short).
    dead_after: Seconds,
    /// The longest lease time of any subnet (L of the fence rule).
    longest_lease: Seconds,
    /// No lease may end after this; 0: nothing may be granted yet.
    grant_limit: AtomicU32,
    /// This node's durable lease events, for the cluster thread to publish.
    outbox: ArrayQueue<LeaseEvent>,
}

/// Events the outbox holds before new ones are dropped (and counted).
pub const OUTBOX_EVENTS: usize = 1 << 16;
/// The fence rule's margin for clock skew between nodes, on each side (seconds).
pub const FENCE_MARGIN: Seconds = 2;

impl ClusterView {
    /// The view of a node at start: every peer alive, nothing grantable until
    /// [`ClusterView::confirm_heartbeat`].
    pub fn new(cfg: &ClusterConfig, longest_lease: Seconds) -> ClusterView {
        let n = cfg.peers.len().min(64);
        ClusterView {
            peers: cfg.peers.clone().into(),
            me: cfg.node_index(),
            live: AtomicU64::new(if n == 64 { u64::MAX } else { (1u64 << n) - 1 }),
            wait_secs: cfg.wait_secs,
            dead_after: cfg.dead_after_ms / 1000,
            longest_lease,
            grant_limit: AtomicU32::new(0),
            outbox: ArrayQueue::new(OUTBOX_EVENTS),
        }
    }

    /// Every node's name, in the configured order.
    pub fn peers(&self) -> &[String] {
        &self.peers
    }

    /// This node's position in [`ClusterView::peers`].
    pub fn node_index(&self) -> usize {
        self.me
    }

    /// Marks peer `i` alive or dead (the cluster thread, from heartbeats). This node stays alive.
    pub fn set_live(&self, i: usize, alive: bool) {
        if i >= self.peers.len() || i == self.me {
            return;
        }
        match alive {
            true => self.live.fetch_or(1 << i, Ordering::Release),
            false => self.live.fetch_and(!(1 << i), Ordering::Release),
        };
    }

    pub fn is_live(&self, i: usize) -> bool {
        i < self.peers.len() && self.live.load(Ordering::Acquire) & (1 << i) != 0
    }

    /// Records a heartbeat of this node confirmed by NATS at `h` (wall seconds): leases may
    /// then end up to `h + dead_after + L - 2 s`. Never moves the limit back.
    pub fn confirm_heartbeat(&self, h: Seconds) {
        let limit = h.saturating_add(self.dead_after).saturating_add(self.longest_lease).saturating_sub(FENCE_MARGIN);
        self.grant_limit.fetch_max(limit, Ordering::AcqRel);
    }

    /// No lease granted here ends after this (0: nothing may be granted yet).
    pub fn grant_limit(&self) -> Seconds {
        self.grant_limit.load(Ordering::Acquire)
    }

    /// When a block taken over at `takeover` may give out its free addresses
    /// (`takeover + L + 2 s`): the `free_after` of `AddressSpace::adopt_block`.
    pub fn free_after(&self, takeover: Seconds) -> Seconds {
        takeover.saturating_add(self.longest_lease).saturating_add(FENCE_MARGIN)
    }

    /// The earliest time a node whose last heartbeat was at `h` may be taken over.
    pub fn takeover_at(&self, h: Seconds) -> Seconds {
        h.saturating_add(self.dead_after.max(1))
    }

    /// The longest lease time of any subnet (L of the fence rule).
    pub fn longest_lease(&self) -> Seconds {
        self.longest_lease
    }

    /// The primary node of a client identity (option 61's value, else `chaddr`): its RFC 3074
    /// bucket's node, or the next live one in list order if that one is dead.
    pub fn primary_of(&self, identity: &[u8]) -> usize {
        let n = self.peers.len();
        let first = rfc3074_bucket(identity) as usize % n;
        let live = self.live.load(Ordering::Acquire);
        (0..n).map(|k| (first + k) % n).find(|&i| live & (1 << i) != 0).unwrap_or(self.me)
    }

    /// Whether this node answers a client it has no lease of its own for: it is the client's
    /// primary, or the client has waited `wait_secs`.
    pub fn answers(&self, identity: &[u8], secs: u16) -> bool {
        secs >= self.wait_secs || self.primary_of(identity) == self.me
    }

    /// The next lease event of this node to publish (the cluster thread drains these).
    pub fn pop_event(&self) -> Option<LeaseEvent> {
        self.outbox.pop()
    }

    /// Queues an event to publish; false (dropped) when the queue is full.
    fn post(&self, e: &LeaseEvent) -> bool {
        self.outbox.push(*e).is_ok()
    }
}

/// The RFC 3074 §6 mixing table (a permutation of 0..=255).
const MIX: [u8; 256] = [
    251, 175, 119, 215, 81, 14, 79, 191, 103, 49, 181, 143, 186, 157, 0, 232, 31, 32, 55, 60, 152, 58, 17, 237, 174,
    70, 160, 144, 220, 90, 57, 223, 59, 3, 18, 140, 111, 166, 203, 196, 134, 243, 124, 95, 222, 179, 197, 65, 180, 48,
    36, 15, 107, 46, 233, 130, 165, 30, 123, 161, 209, 23, 97, 16, 40, 91, 219, 61, 100, 10, 210, 109, 250, 127, 22,
    138, 29, 108, 244, 67, 207, 9, 178, 204, 74, 98, 126, 249, 167, 116, 34, 77, 193, 200, 121, 5, 20, 113, 71, 35,
    128, 13, 182, 94, 25, 226, 227, 199, 75, 27, 41, 245, 230, 224, 43, 225, 177, 26, 155, 150, 212, 142, 218, 115,
    241, 73, 88, 105, 39, 114, 62, 255, 192, 201, 145, 214, 168, 158, 221, 148, 154, 122, 12, 84, 82, 163, 44, 139,
    228, 236, 205, 242, 217, 11, 187, 146, 159, 64, 86, 239, 195, 42, 106, 198, 118, 112, 184, 172, 87, 2, 173, 117,
    176, 229, 247, 253, 137, 185, 99, 164, 102, 147, 45, 66, 231, 52, 141, 211, 194, 206, 246, 238, 56, 110, 78, 248,
    63, 240, 189, 93, 92, 51, 53, 183, 19, 171, 72, 50, 33, 104, 101, 69, 8, 252, 83, 120, 76, 135, 85, 54, 202, 125,
    188, 213, 96, 235, 136, 208, 162, 129, 190, 132, 156, 38, 47, 1, 7, 254, 24, 4, 216, 131, 89, 21, 28, 133, 37, 153,
    149, 80, 170, 68, 6, 169, 234, 151,
];

/// RFC 3074's hash bucket of a client identity: a Pearson hash seeded with its length.
pub fn rfc3074_bucket(identity: &[u8]) -> u8 {
    identity.iter().fold(identity.len() as u8, |h, b| MIX[(h ^ b) as usize])
}

/// What [`Engine::adopt_lease`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adopted {
    /// The client's lease is held here now (new, renewed, or moved to this address).
    Installed,
    /// The client's lease here ended (released, expired or declined at its node).
    Ended,
    /// Nothing to do (an offer, a lease already over, an end of a lease not held here, a
    /// stale end).
    Ignored,
}

impl Engine {
    /// Installs or ends another node's lease from its event (the cluster thread hands each
    /// event to the worker owning the client). A lease (`Bound`) holds its address here so no
    /// one else gets it, and its client is confirmed on REBIND or INIT-REBOOT; an end
    /// (`Released`, `Expired`, `Declined`) frees the address, which is given out again only if
    /// its block is ours. An end older than the lease held here is stale and ignored. Changes
    /// to this node's own records go to `events` (for the journal).
    pub fn adopt_lease(
        &mut self,
        now: Seconds,
        e: &LeaseEvent,
        events: &mut Vec<LeaseEvent>,
    ) -> Result<Adopted, RestoreError> {
        let r = match e.kind {
            // Already over (a stream read again from its start): nothing to hold.
            EventKind::Bound if e.expires <= now => Ok(Adopted::Ignored),
            EventKind::Bound => self.install(now, e, events).map(|()| Adopted::Installed),
            EventKind::Released | EventKind::Expired | EventKind::Declined => Ok(self.end_adopted(e)),
            _ => Ok(Adopted::Ignored),
        };
        match r {
            Ok(Adopted::Installed) => self.cluster_stats.leases_adopted += 1,
            Ok(Adopted::Ended) => self.cluster_stats.adopted_ended += 1,
            Ok(Adopted::Ignored) => {}
            Err(_) => self.cluster_stats.adopt_refused += 1,
        }
        r
    }

    fn install(&mut self, now: Seconds, e: &LeaseEvent, events: &mut Vec<LeaseEvent>) -> Result<(), RestoreError> {
        if let Some(record) = self.table.find(&e.client) {
            let (lease, state) = self.table.get(record);
            if lease.ip == u32::from(e.ip) && state != LeaseState::Quarantined {
                let expires = lease.expires.max(e.expires);
                self.table.update(record, LeaseState::Bound, expires);
                self.shared.space().mark_bound(e.ip);
                // Leasequery answers with the peer's latest end (the board is per address).
                self.shared.publish(e.ip, &super::leasequery::restored_entry(&e.client, e.mac, expires, now));
                return Ok(());
            }
            // The client holds a lease elsewhere now: what it had here ends.
            let kind = if state == LeaseState::Bound { EventKind::Released } else { EventKind::OfferReleased };
            self.end_record(record, kind, events);
        }
        self.restore(now, e.client, e.mac, e.ip, e.expires, LeaseState::Bound)
    }

    fn end_adopted(&mut self, e: &LeaseEvent) -> Adopted {
        let Some(record) = self.table.find(&e.client) else { return Adopted::Ignored };
        let (lease, state) = self.table.get(record);
        // A newer lease here (renewed since) outlives this end.
        if lease.ip != u32::from(e.ip) || state != LeaseState::Bound || lease.expires > e.expires {
            return Adopted::Ignored;
        }
        let limit = self.table.limit(record);
        let (lease, _) = self.table.remove(record);
        self.shared.unhold(limit);
        self.shared.end_hold(e.ip, &lease.key);
        Adopted::Ended
    }

    /// Ends one of this engine's records, freeing its address, with its event.
    fn end_record(&mut self, record: crate::lease::RecordId, kind: EventKind, events: &mut Vec<LeaseEvent>) {
        let limit = self.table.limit(record);
        let (lease, _) = self.table.remove(record);
        let ip = Ipv4Addr::from(lease.ip);
        self.shared.unhold(limit);
        self.shared.end_hold(ip, &lease.key);
        let mac = super::mac_of(&lease.key).unwrap_or_default();
        events.push(LeaseEvent { kind, ip, client: lease.key, mac, expires: lease.expires, steer: 0 });
    }

    /// Queues this call's durable events (`events[from..]`) for the cluster thread, those of
    /// addresses this node answers for (its own and adopted blocks). Alone: one branch.
    #[inline]
    pub(super) fn forward(&mut self, events: &[LeaseEvent], from: usize) {
        let Some(c) = self.shared.cluster() else { return };
        for e in &events[from.min(events.len())..] {
            let ours = !matches!(self.shared.space().block_state_of(e.ip), Some(BlockState::NotOurs));
            if e.kind.is_durable() && ours && !c.post(e) {
                self.cluster_stats.events_dropped += 1;
            }
        }
    }
}

/// The packet path's checks: alone, each is one branch.
impl Context<'_> {
    /// Whether this node goes on with the message: `own` (a lease or offer of ours, or the
    /// client chose us) or it answers the client (primary, or the client waited), and it may
    /// grant. Counts the refusals.
    #[inline]
    pub(super) fn cluster_gate(&mut self, own: bool) -> Result<(), Outcome> {
        match self.sh.cluster() {
            None => Ok(()),
            Some(c) => self.gate(c, own),
        }
    }

    #[inline(never)]
    fn gate(&mut self, c: &ClusterView, own: bool) -> Result<(), Outcome> {
        let req = self.req;
        let chaddr = &req.pkt.chaddr()[..(req.pkt.hlen() as usize).min(16)];
        if !own && !c.answers(identity(req.client_id, chaddr), req.pkt.secs()) {
            self.cstats.not_primary += 1;
            return Err(Outcome::Silent(Silence::NotPrimary));
        }
        if c.grant_limit() <= self.now {
            self.cstats.fenced += 1;
            return Err(Outcome::Silent(Silence::Fenced));
        }
        Ok(())
    }

    /// Whether the client's record on `ip` is this node's to serve (alone: always).
    #[inline]
    pub(super) fn own_lease(&self, ip: Ipv4Addr) -> bool {
        self.sh.cluster().is_none() || serves_block(self.sh.space().block_state_of(ip))
    }

    /// Counts a requested address that is not given because its block is not ours.
    #[inline]
    pub(super) fn note_foreign_request(&mut self) {
        if let (Some(_), Some(ip)) = (self.sh.cluster(), self.req.opts.requested_ip) {
            if self.sh.space().block_state_of(ip) == Some(BlockState::NotOurs) {
                self.cstats.not_our_block += 1;
            }
        }
    }

    /// The (lease, T1, T2) a grant on subnet `sid` gives. Alone: the subnet's. In a cluster:
    /// shortened to end by the grant limit, and for a client's record `held` on an address
    /// whose block is not ours (a lease adopted from another node) to end no later than that
    /// lease already does: only a block's owner makes new lease time on its addresses (the
    /// fence rule's premise).
    #[inline]
    pub(super) fn lease_times(&mut self, sid: u16, held: Option<(RecordId, Ipv4Addr)>) -> (u32, u32, u32) {
        match self.sh.cluster() {
            None => self.sh.subnet(sid).times(),
            Some(c) => self.cluster_times(c, sid, held),
        }
    }

    #[inline(never)]
    fn cluster_times(&mut self, c: &ClusterView, sid: u16, held: Option<(RecordId, Ipv4Addr)>) -> (u32, u32, u32) {
        // `cluster_gate` let the message through at this `now`: the limit lies ahead.
        let (times, shortened) =
            capped(self.sh.subnet(sid).times(), self.now, c.grant_limit()).unwrap_or(((1, 0, 0), true));
        self.cstats.lease_capped += shortened as u64;
        let end = held.filter(|&(_, ip)| !self.own_lease(ip)).map(|(record, _)| self.table.get(record).0.expires);
        let left = end.map_or(times.0, |end| end.saturating_sub(self.now).clamp(1, times.0));
        if left < times.0 {
            return (left, (left / 2).min(times.1), (left / 8 * 7).min(times.2));
        }
        times
    }
}

pub(super) fn identity<'a>(client_id: Option<&'a [u8]>, chaddr: &'a [u8]) -> &'a [u8] {
    client_id.filter(|id| !id.is_empty()).unwrap_or(chaddr)
}

/// Whether a lease on `ip` is this node's to serve: its block is ours or adopted.
pub(super) fn serves_block(state: Option<BlockState>) -> bool {
    !matches!(state, Some(BlockState::NotOurs))
}

/// Lease times capped so the lease ends by `limit`: `None` if nothing may be granted; the
/// flag says the lease was shortened.
pub(super) fn capped(times: (u32, u32, u32), now: Seconds, limit: Seconds) -> Option<((u32, u32, u32), bool)> {
    let left = limit.checked_sub(now).filter(|&l| l > 0)?;
    if times.0 <= left {
        return Some((times, false));
    }
    Some(((left, (left / 2).min(times.1), (left / 8 * 7).min(times.2)), true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_follows_rfc_3074() {
        // The hash of the empty identity is the table entry of its length (0).
        assert_eq!(rfc3074_bucket(&[]), 0);
        assert_eq!(rfc3074_bucket(&[0]), MIX[1], "seeded with the length, 1");
        let mut seen = [false; 256];
        MIX.iter().for_each(|&b| seen[b as usize] = true);
        assert!(seen.iter().all(|&s| s), "the table is a permutation");
    }

    #[test]
    fn capped_times_end_by_the_limit() {
        assert_eq!(capped((3600, 1800, 3150), 100, 0), None, "nothing confirmed");
        assert_eq!(capped((3600, 1800, 3150), 100, 100), None, "past the limit");
        assert_eq!(capped((3600, 1800, 3150), 100, 10_000), Some(((3600, 1800, 3150), false)));
        assert_eq!(capped((3600, 1800, 3150), 100, 1100), Some(((1000, 500, 875), true)));
    }
}
