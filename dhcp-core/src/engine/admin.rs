//! What the control plane asks of one engine, off the per-packet path: the leases it holds (a
//! scan), a lease freed by an operator as a RELEASE would free it, and the engine rebuilt over a
//! new configuration at a reload with every offer, lease and probation carried over.
//!
//! Must never be called per packet: each of these scans the whole client table.

use super::{Engine, EventKind, LeaseEvent, RestoreError, Seconds, Shared};
use crate::lease::{ClientKey, LeaseState};
use core::net::Ipv4Addr;
use std::sync::Arc;

/// One record of an engine, as the control plane shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseView {
    pub ip: Ipv4Addr,
    pub client: ClientKey,
    /// The hardware address when the identity is an Ethernet `chaddr` (or a client identifier
    /// of type 1 holding one); `None` otherwise.
    pub mac: Option<[u8; 6]>,
    pub state: LeaseState,
    /// Deadline: end of the offer, the lease or the probation.
    pub expires: Seconds,
}

/// What a reload did with an engine's records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Carried {
    /// Records carried into the new configuration's pools (or reservations).
    pub kept: usize,
    /// Leases and offers whose address the new configuration no longer serves: kept until
    /// they end, never renewed.
    pub outside: usize,
    /// Probations of addresses no longer in a pool: dropped.
    pub dropped: usize,
}

/// The MAC inside an identity made from an Ethernet `chaddr` or a type-1 client identifier.
pub fn mac_of(key: &ClientKey) -> Option<[u8; 6]> {
    match key.inline_bytes()? {
        [1, mac @ ..] if mac.len() == 6 => mac.try_into().ok(),
        _ => None,
    }
}

impl Engine {
    /// Every offer, lease and probation of this engine.
    pub fn leases(&self) -> impl Iterator<Item = LeaseView> + '_ {
        self.table.iter().map(|(_, l, state)| LeaseView {
            ip: Ipv4Addr::from(l.ip),
            client: l.key,
            mac: mac_of(&l.key),
            state,
            expires: l.expires,
        })
    }

    /// Frees the lease or offer on `ip` as the client's RELEASE would (the event goes to
    /// `events` for the journal). `false`: this engine holds no lease or offer on `ip`.
    pub fn release_ip(&mut self, ip: Ipv4Addr, events: &mut Vec<LeaseEvent>) -> bool {
        let want = u32::from(ip);
        let found = self
            .table
            .iter()
            .find(|(_, l, s)| l.ip == want && matches!(s, LeaseState::Bound | LeaseState::Offered))
            .map(|(r, l, s)| (r, l.key, s));
        let Some((record, client, state)) = found else { return false };
        let limit = self.table.limit(record);
        let (lease, _) = self.table.remove(record);
        self.shared.unhold(limit);
        self.shared.free(ip);
        let kind = if state == LeaseState::Bound { EventKind::Released } else { EventKind::OfferReleased };
        let mac = mac_of(&client).unwrap_or_default();
        events.push(LeaseEvent { kind, ip, client, mac, expires: lease.expires, steer: 0 });
        true
    }

    /// This engine over `shared` (a new configuration): the same counters, and every record
    /// put back as a lease file's would be at start-up. A lease or offer whose address the new
    /// configuration does not serve is kept until it ends and not renewed; a probation outside
    /// the new pools is dropped. Every engine sharing the old configuration must be rebuilt
    /// before any of them serves again (they claim addresses in the new space).
    pub fn rebuild(&self, shared: Arc<Shared>, now: Seconds) -> (Engine, Carried) {
        let mut next = Engine::new(shared, now, self.table.len() + 1024);
        next.stats = self.stats;
        let mut carried = Carried::default();
        for (_, l, state) in self.table.iter() {
            let (ip, mac) = (Ipv4Addr::from(l.ip), mac_of(&l.key).unwrap_or_default());
            match next.restore(now, l.key, mac, ip, l.expires, state) {
                Ok(()) => carried.kept += 1,
                Err(_) if state == LeaseState::Quarantined => carried.dropped += 1,
                Err(RestoreError::Expired) => {}
                Err(_) => {
                    next.table.insert(l.key, l.ip, state, l.expires);
                    carried.outside += 1;
                }
            }
        }
        (next, carried)
    }
}
