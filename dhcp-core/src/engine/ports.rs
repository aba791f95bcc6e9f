//! Reservations by subscriber port: relay agent circuit id (82.1) or remote id (82.2).
//!
//! Such a reservation belongs to the port, not to a client: whatever client arrives on it
//! (through a trusted relay) gets the address, and a new client (another identity) takes it
//! over at once, ending the previous one's lease on it (a port has one address). Each
//! reservation has one atomic holder word, the identity hash of the client holding it, so two
//! identities never hold the address even when their workers differ: a worker whose client
//! lost the address sees it in the word and ends the client's record without freeing the
//! address. Lookups are by the sub-option's bytes, without allocation. Must never free an
//! address for a client that no longer holds it.

use super::shared::FastMap;
use super::EventKind;
use crate::config::{ClientMatch, Subnet};
use crate::lease::{ClientKey, LeaseState};
use crate::wire::options::{relay, relay_sub_option};
use core::net::Ipv4Addr;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

/// The holder word's value for a client: a fixed hash of its settled identity, never 0.
pub(super) fn holder_hash(key: &ClientKey) -> u64 {
    foldhash::fast::FixedState::with_seed(0x05ee_d0f1_ea5e).hash_one(key.settled().0) | 1
}

/// How a port's address was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Took {
    /// Nobody held it.
    Fresh,
    /// The client held it already.
    Again,
    /// Another client (this identity hash) held it and lost it.
    Moved(u64),
}

/// Reservations by port, compiled.
#[derive(Debug, Default)]
pub(super) struct PortReservations {
    by_circuit: FastMap<Box<[u8]>, u32>,
    by_remote: FastMap<Box<[u8]>, u32>,
    by_ip: FastMap<Ipv4Addr, u32>,
    /// Per reservation: its address and subnet.
    entries: Vec<(Ipv4Addr, u16)>,
    holders: Box<[AtomicU64]>,
}

impl PortReservations {
    /// Adds the port reservations of subnet `sid`.
    pub(super) fn add(&mut self, s: &Subnet, sid: u16) {
        for r in &s.reservations {
            let (map, id) = match &r.client {
                ClientMatch::CircuitId(id) => (&mut self.by_circuit, id),
                ClientMatch::RemoteId(id) => (&mut self.by_remote, id),
                _ => continue,
            };
            let n = self.entries.len() as u32;
            map.insert(id.clone().into_boxed_slice(), n);
            self.by_ip.insert(r.ip, n);
            self.entries.push((r.ip, sid));
        }
    }

    /// Makes the holder words once every reservation is added.
    pub(super) fn finish(mut self) -> PortReservations {
        self.holders = (0..self.entries.len()).map(|_| AtomicU64::new(0)).collect();
        self
    }

    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The reservation of the port a message came from (circuit id first): its number,
    /// address and subnet. `relay_info` must come from a trusted relay.
    pub(super) fn lookup(&self, relay_info: Option<&[u8]>) -> Option<(u32, Ipv4Addr, u16)> {
        let ri = relay_info.filter(|_| !self.is_empty())?;
        let find = |map: &FastMap<Box<[u8]>, u32>, code| {
            let id = relay_sub_option(ri, code)?;
            map.get(id).copied()
        };
        let n = find(&self.by_circuit, relay::CIRCUIT_ID).or_else(|| find(&self.by_remote, relay::REMOTE_ID))?;
        let (ip, sid) = self.entries[n as usize];
        Some((n, ip, sid))
    }

    /// Gives reservation `n` to the client `holder`, taking it from any other.
    pub(super) fn take(&self, n: u32, holder: u64) -> Took {
        let prev = self.holders[n as usize].swap(holder, Ordering::AcqRel);
        match prev {
            0 => Took::Fresh,
            p if p == holder => Took::Again,
            p => Took::Moved(p),
        }
    }

    /// For a port-reserved address: whether `holder` holds it. `None`: not port-reserved.
    pub(super) fn holds(&self, ip: Ipv4Addr, holder: u64) -> Option<bool> {
        let n = *self.by_ip.get(&ip)?;
        Some(self.holders[n as usize].load(Ordering::Acquire) == holder)
    }

    /// Frees a port-reserved address if `holder` still holds it. `false`: not port-reserved.
    pub(super) fn free(&self, ip: Ipv4Addr, holder: u64) -> bool {
        let Some(&n) = self.by_ip.get(&ip) else { return false };
        let _ = self.holders[n as usize].compare_exchange(holder, 0, Ordering::AcqRel, Ordering::Acquire);
        true
    }

    /// Puts back a holder read from the journal; `None`: not port-reserved; `Some(false)`:
    /// another client holds it already.
    pub(super) fn restore(&self, ip: Ipv4Addr, holder: u64) -> Option<bool> {
        let n = *self.by_ip.get(&ip)?;
        let word = &self.holders[n as usize];
        Some(match word.compare_exchange(0, holder, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => true,
            Err(h) => h == holder,
        })
    }
}

impl super::Context<'_> {
    /// Ends the client's records of port addresses another client took over (without freeing
    /// them: they are the new client's now). Returns whether it ended one.
    pub(super) fn end_stale_records(&mut self) -> bool {
        let mut ended = false;
        if self.sh.isp.ports.is_empty() {
            return ended;
        }
        for key in [self.req.key, self.req.key.moving()] {
            let Some(record) = self.table.find(&key) else { continue };
            let (lease, state) = self.table.get(record);
            if state == LeaseState::Quarantined || !self.sh.port_stale(Ipv4Addr::from(lease.ip), &key) {
                continue;
            }
            let kind = if state == LeaseState::Bound { EventKind::Released } else { EventKind::OfferReleased };
            self.stats.port_takeovers += 1;
            self.drop_record(record, kind);
            ended = true;
        }
        ended
    }
}
