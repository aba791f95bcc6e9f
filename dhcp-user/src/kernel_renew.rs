//! kernel_renew: a worker's side of renewals answered in the XDP program. After the engine
//! ACKs a client, the worker puts the lease in the program's map with a template cut from that
//! very ACK ([`template_of`]), so the program's reply to the next plain renewal is the reply
//! the engine would write (`tests/kernel_renew.rs` compares them byte for byte).
//!
//! The durable horizon: a lease in the map is journaled as held until its horizon, `expiry +
//! periods × lease time` (`[server] kernel_renew_horizon`, [`DEFAULT_PERIODS`]), not its
//! expiry, and the engine holds it that long too
//! ([`dhcp_core::engine::Engine::hold_until`]). The program never extends a lease past the
//! horizon in its map, so after a crash recovery holds every address at least as long as any
//! renewal answered in the kernel promised it, and no address renewed there is ever given to
//! another client.
//!
//! Horizons move ahead off the packet path ([`KernelRenew::sweep`]): between batches the worker
//! visits up to [`SWEEP`] of its leases; one whose horizon is within `1 + periods / 2` lease
//! times and whose client renewed within the last lease time (in the program or through the
//! engine) gets a new horizon, `now + (periods + 1)` lease times, journaled with the batch's
//! records; the map's horizon is raised only once that record is durable
//! ([`KernelRenew::raise`]). So no renewal costs a journal write: one record per lease every
//! `periods / 2` lease times or so, whatever the number of renewals. A client that stopped
//! renewing (no renewal for a lease time) leaves the map, and the engine ends its lease a lease
//! time later, not at the horizon (a renewal the program answered just before the entry left
//! promised no more).
//!
//! A client's entry leaves the map before the engine sees any other message of the client
//! (release, decline, a renewal the program passed up, a new discover), before an operator's
//! release of its address or a reload, and when its lease ends in the engine.
//!
//! Must never: put in the map a lease whose reply the program could not write exactly as the
//! engine did (relayed, option 82, identifiers over 32 bytes, templates too long); journal a
//! Bound lease in the map with less than its horizon; raise a horizon in the map before its
//! record is durable, or for a lease user space ended or replaced meanwhile.

use crate::journal::{Commit, Journal, Ticket};
use dhcp_common::renew::{self, Lease, LeaseKey, Template};
use dhcp_core::engine::{Destination, Engine, EventKind, LeaseEvent, LeaseView, Reply};
use dhcp_core::lease::ClientKey;
use dhcp_core::wire::options::{code, MessageType, OptionIter};
use dhcp_io::renew::RenewMaps;
use std::collections::VecDeque;
type HashMap<K, V> = hashbrown::HashMap<K, V, foldhash::fast::RandomState>;
use std::net::Ipv4Addr;

/// Renewal periods (lease times) past a lease's expiry that its journaled horizon reaches,
/// unless `[server] kernel_renew_horizon` says otherwise.
pub const DEFAULT_PERIODS: u32 = 4;
/// The range `kernel_renew_horizon` may take.
pub const PERIODS: std::ops::RangeInclusive<u32> = 1..=64;
/// Leases a sweep visits per turn of the worker's loop.
pub const SWEEP: usize = 256;

/// A request's identity and request-list hash, as the program computes them.
pub fn request_facts(request: &[u8]) -> Option<(LeaseKey, u32)> {
    let fixed = request.get(..dhcp_common::bootp::MIN_LEN)?;
    if fixed[1] != 1 || fixed[2] != 6 {
        return None;
    }
    let mut chaddr = [0u8; 6];
    chaddr.copy_from_slice(&fixed[28..34]);
    let (mut id, mut prl) = (None, 0);
    let base = request.as_ptr() as usize;
    for o in OptionIter::new(&request[dhcp_common::bootp::MIN_LEN..]) {
        let (c, v) = o.ok()?;
        match c {
            code::CLIENT_ID => id = Some(v),
            code::PARAMETER_REQUEST_LIST => {
                prl = renew::prl_hash(request, v.as_ptr() as usize - base, v.len());
            }
            _ => {}
        }
    }
    Some((renew::key_of(id, chaddr)?, prl))
}

/// The template of an ACK written by the engine: its options up to the client identifier's
/// echo (which the program writes from the request), from `server`. `None` when the program
/// could not reproduce the reply.
pub fn template_of(reply: &[u8], server: Ipv4Addr) -> Option<Template> {
    let opts = reply.get(dhcp_common::bootp::MIN_LEN..)?;
    let (mut end, mut lease_secs, mut at) = (None, None, 0);
    for o in OptionIter::new(opts) {
        let (c, v) = o.ok()?;
        let start = v.as_ptr() as usize - opts.as_ptr() as usize - 2;
        match c {
            code::CLIENT_ID if end.is_none() => end = Some(start),
            code::RELAY_AGENT_INFO => return None,
            code::LEASE_TIME => lease_secs = Some(u32::from_be_bytes(v.try_into().ok()?)),
            _ if end.is_some() => return None,
            _ => {}
        }
        at = start + 2 + v.len();
    }
    let len = end.unwrap_or(at);
    if len > renew::TEMPLATE_LEN {
        return None;
    }
    let mut t = Template { len: len as u32, lease_secs: lease_secs?, server: server.octets(), ..Template::default() };
    t.options[..len].copy_from_slice(&opts[..len]);
    Some(t)
}

/// The program's maps as the worker uses them: [`RenewMaps`], or a map in memory in tests.
pub trait LeaseMap: Send + std::fmt::Debug {
    fn insert(&mut self, key: &LeaseKey, lease: &Lease) -> anyhow::Result<()>;
    /// Removes a lease; `false` if it was not there.
    fn remove(&mut self, key: &LeaseKey) -> bool;
    fn get(&self, key: &LeaseKey) -> Option<Lease>;
    fn set_template(&mut self, slot: u32, t: &Template) -> anyhow::Result<()>;
}

impl LeaseMap for RenewMaps {
    fn insert(&mut self, key: &LeaseKey, lease: &Lease) -> anyhow::Result<()> {
        RenewMaps::insert(self, key, lease)
    }

    fn remove(&mut self, key: &LeaseKey) -> bool {
        RenewMaps::remove(self, key)
    }

    fn get(&self, key: &LeaseKey) -> Option<Lease> {
        RenewMaps::get(self, key)
    }

    fn set_template(&mut self, slot: u32, t: &Template) -> anyhow::Result<()> {
        RenewMaps::set_template(self, slot, t)
    }
}

/// A lease in the map, as the worker keeps it.
#[derive(Debug, Clone, Copy)]
struct Entry {
    key: LeaseKey,
    ip: Ipv4Addr,
    mac: [u8; 6],
    /// The steering hash of the ACKed request: the owner on recovery.
    steer: u32,
    lease_secs: u32,
    /// When the engine last ACKed it (Unix seconds).
    acked: u32,
    /// Its last renewal (the ACK or one in the program) when the map was last read.
    last: u32,
    /// The horizon journaled (or being journaled) and held by the engine.
    horizon: u32,
    /// A new horizon is journaled but not yet durable: the map still has the old one.
    raising: bool,
    /// Index in [`KernelRenew::order`].
    at: usize,
}

/// A worker's renewal state: its handle on the maps, its template slots, its leases there.
#[derive(Debug)]
pub struct KernelRenew {
    maps: Box<dyn LeaseMap>,
    /// Renewal periods a horizon reaches past a lease's expiry.
    periods: u32,
    /// Template slots this worker owns: `first..first + count`, filled in order.
    first: u32,
    count: u32,
    templates: Vec<Template>,
    /// Leases in the map, by the engine's key and by the program's.
    by_client: HashMap<ClientKey, Entry>,
    by_key: HashMap<LeaseKey, ClientKey>,
    /// The clients in the map, in sweep order, and where the sweep goes on.
    order: Vec<ClientKey>,
    cursor: usize,
    /// The second the last sweep over all leases started: at most one per second.
    swept: u32,
    /// Leases put in the map since the last [`KernelRenew::adjust`], with their horizons:
    /// their Bound events are journaled with the horizon.
    pending: Vec<(ClientKey, u32)>,
    /// New horizons journaled, in append order: the ticket once appended, the client, the horizon.
    raising: VecDeque<(Option<Ticket>, ClientKey, u32)>,
}

impl KernelRenew {
    /// Worker `id` of `workers`, with its own handle on the maps; horizons `periods` lease
    /// times past expiry.
    pub fn new(maps: Box<dyn LeaseMap>, id: u32, workers: u32, periods: u32) -> KernelRenew {
        let count = renew::MAX_TEMPLATES / workers.max(1);
        KernelRenew {
            maps,
            periods: periods.clamp(*PERIODS.start(), *PERIODS.end()),
            first: id * count,
            count,
            templates: Vec::new(),
            by_client: HashMap::default(),
            by_key: HashMap::default(),
            order: Vec::new(),
            cursor: 0,
            swept: 0,
            pending: Vec::with_capacity(dhcp_io::BATCH),
            raising: VecDeque::new(),
        }
    }

    /// Leases of this worker in the map.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Before the engine sees a message the program passed up: its client leaves the map.
    pub fn before(&mut self, request: &[u8]) {
        let Some((key, _)) = request_facts(request) else { return };
        if let Some(&client) = self.by_key.get(&key) {
            self.forget(&client);
        }
    }

    /// After the engine answered: an ACK of a lease the program can renew goes in the map.
    /// `events` are this message's lease changes; `tagged`: the frame had VLAN tags (the
    /// program passes those up).
    pub fn after(&mut self, now: u32, request: &[u8], reply: &[u8], r: &Reply, events: &[LeaseEvent], tagged: bool) {
        if tagged || r.kind != MessageType::Ack || matches!(r.to, Destination::Relay(_)) {
            return;
        }
        let Some(bound) = events.iter().rev().find(|e| e.kind == EventKind::Bound) else { return };
        let (Some((key, prl_hash)), Some(t)) = (request_facts(request), template_of(reply, r.from)) else { return };
        let Some(slot) = self.slot_for(&t) else { return };
        let horizon = bound.expires.saturating_add(self.periods.saturating_mul(t.lease_secs));
        let lease = Lease {
            ciaddr: bound.ip.octets(),
            template: slot,
            prl_hash,
            vlans: 0,
            horizon_ns: mono_at(now, horizon),
            renewed_ns: 0,
        };
        self.forget(&bound.client);
        if let Err(e) = self.maps.insert(&key, &lease) {
            dhcp_io::log_limited!(log::Level::Warn, "kernel renewals: lease map full or refused: {e:#}");
            return;
        }
        let (ip, mac, steer, lease_secs) = (bound.ip, bound.mac, bound.steer, t.lease_secs);
        let at = self.order.len();
        let entry = Entry { key, ip, mac, steer, lease_secs, acked: now, last: now, horizon, raising: false, at };
        self.by_key.insert(key, bound.client);
        self.by_client.insert(bound.client, entry);
        self.order.push(bound.client);
        self.pending.push((bound.client, horizon));
    }

    /// Before the events are journaled: the lease just put in the map is journaled (and held
    /// by the engine) until its horizon; ended leases leave the map.
    pub fn adjust(&mut self, engine: &mut Engine, events: &mut [LeaseEvent]) {
        for e in events.iter_mut() {
            if e.kind != EventKind::Bound {
                self.forget(&e.client);
                continue;
            }
            if let Some(&(client, horizon)) = self.pending.iter().find(|p| p.0 == e.client) {
                e.expires = e.expires.max(horizon);
                engine.hold_until(&client, horizon);
            }
        }
        self.pending.clear();
    }

    /// Takes a client out of the map (and out of this worker's books) first of all.
    fn forget(&mut self, client: &ClientKey) {
        let Some(e) = self.by_client.remove(client) else { return };
        self.maps.remove(&e.key);
        self.by_key.remove(&e.key);
        self.order.swap_remove(e.at);
        if let Some(moved) = self.order.get(e.at) {
            if let Some(m) = self.by_client.get_mut(moved) {
                m.at = e.at;
            }
        }
    }

    /// Before an operator's release of `ip`: the lease leaves the map if this worker has it.
    pub fn forget_ip(&mut self, ip: Ipv4Addr) {
        let found = self.order.iter().find(|c| self.by_client.get(*c).is_some_and(|e| e.ip == ip)).copied();
        if let Some(client) = found {
            self.forget(&client);
        }
    }

    /// Before a reload: every lease leaves the map (the next renewal of each goes through the
    /// engine, under the new configuration, and puts it back).
    pub fn forget_all(&mut self) {
        while let Some(&client) = self.order.last() {
            self.forget(&client);
        }
        self.cursor = 0;
    }

    /// Between batches: visits up to [`SWEEP`] leases and gives a new horizon to those whose
    /// horizon is near and whose client still renews, as Bound events in `events` (journaled
    /// with the batch); the map follows in [`KernelRenew::raise`].
    pub fn sweep(&mut self, now: u32, engine: &mut Engine, events: &mut Vec<LeaseEvent>) {
        if self.cursor == 0 {
            if self.swept == now || self.order.is_empty() {
                return;
            }
            self.swept = now;
        }
        let mut left = SWEEP;
        while left > 0 && self.cursor < self.order.len() {
            let client = self.order[self.cursor];
            self.cursor += 1;
            left -= 1;
            if let Some(e) = self.extend(now, &client, engine) {
                events.push(e);
            }
        }
        if self.cursor >= self.order.len() {
            self.cursor = 0;
        }
    }

    /// The Bound event of a new horizon for `client`, if it needs one and still renews. A
    /// client that stopped renewing leaves the map, and its lease ends a lease time later
    /// (whatever renewal the program answered before it left promised no more).
    fn extend(&mut self, now: u32, client: &ClientKey, engine: &mut Engine) -> Option<LeaseEvent> {
        let e = *self.by_client.get(client)?;
        let near = e.horizon.saturating_sub(now) <= e.lease_secs.saturating_add(self.periods * e.lease_secs / 2);
        // The map is read only when the answer may have changed: near the horizon, or when
        // the lease would end within a quarter lease time without a renewal since the last
        // reading (early enough for the lease board to follow before the old end).
        let maybe_ended = e.last.saturating_add(e.lease_secs - e.lease_secs / 4) <= now;
        if !maybe_ended && (!near || e.raising) {
            return None;
        }
        let last = self.last_renewal(now, &e);
        if last.saturating_add(e.lease_secs) <= now {
            self.forget(client);
            engine.end_at(client, now.saturating_add(e.lease_secs).saturating_add(1));
            return None;
        }
        engine.renewed_outside(client, last, e.lease_secs);
        let horizon = now.saturating_add((self.periods + 1).saturating_mul(e.lease_secs));
        let x = self.by_client.get_mut(client)?;
        x.last = last;
        if !near || e.raising || !engine.hold_until(client, horizon) {
            return None;
        }
        (x.horizon, x.raising) = (horizon, true);
        self.raising.push_back((None, *client, horizon));
        let (ip, mac, steer) = (e.ip, e.mac, e.steer);
        Some(LeaseEvent { kind: EventKind::Bound, ip, client: *client, mac, expires: horizon, steer })
    }

    /// The batch's events were appended under `ticket`: it covers the horizons swept into them.
    pub fn journaled(&mut self, ticket: Ticket) {
        for r in self.raising.iter_mut().rev() {
            if r.0.is_some() {
                break;
            }
            r.0 = Some(ticket);
        }
    }

    /// Raises in the map the horizons whose records are durable (all of them without a
    /// journal), for leases still in the map with that very horizon.
    pub fn raise(&mut self, now: u32, journal: Option<&Journal>) {
        while let Some(&(Some(ticket), client, horizon)) = self.raising.front() {
            let commit = journal.map_or(Commit::Durable, |j| j.check(ticket));
            if matches!(commit, Commit::Pending) {
                return;
            }
            self.raising.pop_front();
            let Some(e) = self.by_client.get_mut(&client).filter(|e| e.raising && e.horizon == horizon) else {
                continue;
            };
            e.raising = false;
            if let Commit::Failed(err) = commit {
                dhcp_io::log_limited!(log::Level::Warn, "kernel renewals: a horizon not journaled: {err}");
                continue;
            }
            let key = e.key;
            // Read again right before: the program may have written `renewed_ns` meanwhile.
            if let Some(mut lease) = self.maps.get(&key) {
                lease.horizon_ns = mono_at(now, horizon);
                if let Err(err) = self.maps.insert(&key, &lease) {
                    dhcp_io::log_limited!(log::Level::Warn, "kernel renewals: raising a horizon: {err:#}");
                }
            }
        }
    }

    /// A lease as the control plane shows it: for a lease in the map, its last renewal (in
    /// the program or the engine) and the expiry that renewal gave, not the horizon the
    /// engine holds it to.
    pub fn view(&self, now: u32, l: &mut LeaseView) {
        let Some(e) = self.by_client.get(&l.client) else { return };
        let last = self.last_renewal(now, e);
        l.renewed = Some(last);
        l.expires = l.expires.min(last.saturating_add(e.lease_secs));
    }

    /// The client's last renewal, in the program or through the engine (Unix seconds).
    fn last_renewal(&self, now: u32, e: &Entry) -> u32 {
        let kernel = self.maps.get(&e.key).filter(|l| l.renewed_ns != 0).map(|l| unix_at(now, l.renewed_ns));
        kernel.unwrap_or(0).max(e.acked)
    }

    /// The slot holding `t`, written there if new; `None` when this worker's slots are full.
    fn slot_for(&mut self, t: &Template) -> Option<u32> {
        if let Some(i) = self.templates.iter().position(|x| x == t) {
            return Some(self.first + i as u32);
        }
        if self.templates.len() as u32 >= self.count {
            return None;
        }
        let slot = self.first + self.templates.len() as u32;
        if let Err(e) = self.maps.set_template(slot, t) {
            log::warn!("kernel renewals: writing template {slot}: {e:#}");
            return None;
        }
        self.templates.push(*t);
        Some(slot)
    }
}

/// The CLOCK_MONOTONIC time (ns) of Unix second `at`, seen from Unix second `now`.
pub fn mono_at(now: u32, at: u32) -> u64 {
    let mono = dhcp_io::renew::monotonic_ns() as i128;
    (mono + (at as i128 - now as i128) * 1_000_000_000).max(0) as u64
}

fn unix_at(now: u32, ns: u64) -> u32 {
    let mono = dhcp_io::renew::monotonic_ns() as i128;
    (now as i128 + (ns as i128 - mono) / 1_000_000_000).clamp(0, u32::MAX as i128) as u32
}
