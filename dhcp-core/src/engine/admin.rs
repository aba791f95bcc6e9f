//! What the control plane asks of one engine, off the per-packet path: the leases it holds (a
//! scan), a lease freed by an operator as a RELEASE would free it, and the engine rebuilt over a
//! new configuration at a reload with every offer, lease and probation carried over.
//!
//! Must never be called per packet: each of these scans the whole client table.

use super::{Engine, EventKind, LeaseEvent, RestoreError, Seconds, Shared};
use crate::lease::{ClientKey, Lease, LeaseState};
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
    /// Every offer, lease and probation of this engine; not a record whose port's address
    /// another client took over (it ends when its client comes back).
    pub fn leases(&self) -> impl Iterator<Item = LeaseView> + '_ {
        let live = |l: &Lease| !self.shared.port_stale(Ipv4Addr::from(l.ip), &l.key);
        self.table.iter().filter(move |(_, l, _)| live(l)).map(|(_, l, state)| LeaseView {
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
        self.shared.end_hold(ip, &client);
        let kind = if state == LeaseState::Bound { EventKind::Released } else { EventKind::OfferReleased };
        let mac = mac_of(&client).unwrap_or_default();
        events.push(LeaseEvent { kind, ip, client, mac, expires: lease.expires, steer: 0 });
        self.forward(events, events.len() - 1);
        true
    }

    /// This engine over `shared` (a new configuration): the same counters, and every record
    /// put back as a lease file's would be at start-up. A lease or offer whose address the new
    /// configuration does not serve is kept until it ends and not renewed; a probation outside
    /// the new pools is dropped. Every engine sharing the old configuration must be rebuilt
    /// before any of them serves again (they claim addresses in the new space).
    pub fn rebuild(&self, shared: Arc<Shared>, now: Seconds) -> (Engine, Carried) {
        // Sized as at start-up (or for what is held, if more): no rehashing while serving.
        let capacity = (shared.space().capacity() / shared.workers() as usize).max(self.table.len()) + 1024;
        let mut next = Engine::new(shared, now, capacity);
        next.stats = self.stats;
        next.cluster_stats = self.cluster_stats;
        let mut carried = Carried::default();
        for (_, l, state) in self.table.iter() {
            let (ip, mac) = (Ipv4Addr::from(l.ip), mac_of(&l.key).unwrap_or_default());
            match next.restore(now, l.key, mac, ip, l.expires, state) {
                Ok(()) if next.shared.serves(ip) => {
                    // The leasequery board's entry (relay information, last transaction) stays.
                    if let Some(e) = self.shared.published(ip).filter(|_| state == LeaseState::Bound) {
                        next.shared.publish(ip, &e);
                    }
                    carried.kept += 1;
                }
                Ok(()) => carried.outside += 1,
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

#[cfg(test)]
mod tests {
    use super::super::tests::{config, dora, ip, msg_type, Client, Server, SERVER};
    use super::*;
    use dhcproto::v4;

    #[test]
    fn leases_are_listed_and_released_by_address_with_their_event() {
        let mut s = Server::new(config("100.64.0.10", "100.64.0.10"));
        let c = Client::new(1);
        let a = dora(&mut s, &c);
        let all: Vec<LeaseView> = s.engine.leases().collect();
        assert_eq!(all.len(), 1);
        assert_eq!((all[0].ip, all[0].state, all[0].mac), (a, LeaseState::Bound, Some(c.mac)));
        s.events.clear();
        assert!(!s.engine.release_ip(ip("100.64.0.11"), &mut s.events), "nothing there");
        assert!(s.engine.release_ip(a, &mut s.events));
        assert_eq!(s.take_events(), vec![(EventKind::Released, a)]);
        assert_eq!(s.engine.records(), 0);
        assert_eq!(dora(&mut s, &Client::new(2)), a, "the address is free again");
    }

    #[test]
    fn a_rebuild_keeps_every_record_and_a_lease_outside_the_new_pools_is_not_renewed() {
        let mut s = Server::new(config("100.64.0.10", "100.64.0.11"));
        let (c1, c2) = (Client::new(1), Client::new(2));
        let (a1, a2) = (dora(&mut s, &c1), dora(&mut s, &c2));
        // The new pools hold only a2 and a new address.
        let cfg = config(&a2.to_string(), "100.64.0.12");
        let shared = Arc::new(Shared::new(&cfg, 1).unwrap());
        let (next, carried) = s.engine.rebuild(shared.clone(), s.now);
        assert_eq!(carried, Carried { kept: 1, outside: 1, dropped: 0 }, "a1 is outside, a2 kept; no offer was made");
        assert_eq!(next.stats(), s.engine.stats(), "counters carry over");
        s.engine = next;
        assert_eq!(shared.space().status(a2), Some(crate::lease::space::Status::Held), "a2 is held in the new space");
        let (_, renewed) = s.ask(&c2.reboot(a2));
        assert_eq!(msg_type(&renewed), v4::MessageType::Ack, "a lease in the pools renews");
        let (_, refused) = s.ask(&c1.reboot(a1));
        assert_eq!(msg_type(&refused), v4::MessageType::Nak, "a lease outside the pools is not renewed");
        assert_eq!(s.engine.lookup(&c1.key()).map(|l| l.0), Some(a1), "but kept until it ends");
        // Starting over, the client gets an address of the new pools, and its old lease ends.
        let (_, offer) = s.ask(&c1.discover());
        assert_eq!(offer.yiaddr(), ip("100.64.0.12"));
        let (_, ack) = s.ask(&c1.select(SERVER, offer.yiaddr()));
        assert_eq!(msg_type(&ack), v4::MessageType::Ack);
        assert_eq!(s.engine.lookup(&c1.key()).map(|l| l.0), Some(ip("100.64.0.12")));
        assert_eq!(s.engine.records(), 2);
    }
}
