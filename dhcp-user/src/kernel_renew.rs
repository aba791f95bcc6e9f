//! kernel_renew: a worker's side of renewals answered in the XDP program. After the engine
//! ACKs a client, the worker puts the lease in the program's map with a template cut from that
//! very ACK ([`template_of`]), so the program's reply to the next plain renewal is the reply
//! the engine would write (`tests/kernel_renew.rs` compares them byte for byte).
//!
//! The durable horizon: a lease in the map is journaled as held until its horizon, `expiry +
//! HORIZON_PERIODS × lease time`, not its expiry, and the engine holds it that long too
//! ([`dhcp_core::engine::Engine::hold_until`]). The program never extends a lease past the
//! horizon (it passes such renewals up, and the worker's ACK journals a new horizon), so after
//! a crash recovery holds every address at least as long as any renewal answered in the
//! kernel promised it: no renewal answered in the program costs a journal write, and no
//! address renewed there is ever given to another client.
//!
//! A client's entry leaves the map before the engine sees any other message of the client
//! (release, decline, a renewal the program passed up, a new discover), and when its lease
//! ends in the engine.
//!
//! Must never: put in the map a lease whose reply the program could not write exactly as the
//! engine did (relayed, option 82, identifiers over 32 bytes, templates too long), or journal
//! a Bound lease in the map with less than its horizon.

use dhcp_common::renew::{self, Lease, LeaseKey, Template};
use dhcp_core::engine::{Destination, EventKind, LeaseEvent, Reply};
use dhcp_core::lease::ClientKey;
use dhcp_core::wire::options::{code, MessageType, OptionIter};
use dhcp_io::renew::RenewMaps;
type HashMap<K, V> = hashbrown::HashMap<K, V, foldhash::fast::RandomState>;
use std::net::Ipv4Addr;

/// Renewal periods (lease times) past a lease's expiry that its journaled horizon reaches.
pub const HORIZON_PERIODS: u32 = 4;

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

/// A worker's renewal state: its handle on the maps, its template slots, its leases there.
#[derive(Debug)]
pub struct KernelRenew {
    maps: RenewMaps,
    /// Template slots this worker owns: `first..first + count`, filled in order.
    first: u32,
    count: u32,
    templates: Vec<Template>,
    /// Leases in the map, by the engine's key and by the program's.
    by_client: HashMap<ClientKey, LeaseKey>,
    by_key: HashMap<LeaseKey, ClientKey>,
    /// Leases put in the map since the last [`KernelRenew::adjust`], with their horizons:
    /// their Bound events are journaled with the horizon.
    pending: Vec<(ClientKey, u32)>,
}

impl KernelRenew {
    /// Worker `id` of `workers`, with its own handle on the maps.
    pub fn new(maps: RenewMaps, id: u32, workers: u32) -> KernelRenew {
        let count = renew::MAX_TEMPLATES / workers.max(1);
        KernelRenew {
            maps,
            first: id * count,
            count,
            templates: Vec::new(),
            by_client: HashMap::default(),
            by_key: HashMap::default(),
            pending: Vec::with_capacity(dhcp_io::BATCH),
        }
    }

    /// Before the engine sees a message the program passed up: its client leaves the map.
    pub fn before(&mut self, request: &[u8]) {
        let Some((key, _)) = request_facts(request) else { return };
        if let Some(client) = self.by_key.remove(&key) {
            self.maps.remove(&key);
            self.by_client.remove(&client);
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
        let horizon = bound.expires.saturating_add(HORIZON_PERIODS.saturating_mul(t.lease_secs));
        let lease = Lease {
            ciaddr: bound.ip.octets(),
            template: slot,
            prl_hash,
            vlans: 0,
            horizon_ns: mono_at(now, horizon),
            renewed_ns: 0,
        };
        if let Err(e) = self.maps.insert(&key, &lease) {
            dhcp_io::log_limited!(log::Level::Warn, "kernel renewals: lease map full or refused: {e:#}");
            return;
        }
        self.by_key.insert(key, bound.client);
        self.by_client.insert(bound.client, key);
        self.pending.push((bound.client, horizon));
    }

    /// Before the events are journaled: the lease just put in the map is journaled (and held
    /// by the engine) until its horizon; ended leases leave the map.
    pub fn adjust(&mut self, engine: &mut dhcp_core::engine::Engine, events: &mut [LeaseEvent]) {
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

    fn forget(&mut self, client: &ClientKey) {
        if let Some(key) = self.by_client.remove(client) {
            self.maps.remove(&key);
            self.by_key.remove(&key);
        }
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

    /// The last renewal the program answered for a client, in Unix seconds at `now`.
    pub fn renewed(&self, now: u32, client: &ClientKey) -> Option<u32> {
        let key = self.by_client.get(client)?;
        let ns = self.maps.get(key)?.renewed_ns;
        (ns != 0).then(|| unix_at(now, ns))
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
