//! Leasequery (RFC 4388): a relay agent or access concentrator asks who holds an address
//! (query by `ciaddr`), or what a client holds (by client identifier, option 61, or by
//! `chaddr`). Answers: DHCPLEASEACTIVE with the lease's remaining time (51), the seconds since
//! the client's last transaction (91), its addresses (92, for queries by client), its client
//! id (61) and the relay agent information it came with (82); DHCPLEASEUNASSIGNED for an
//! address we manage that nobody holds; DHCPLEASEUNKNOWN otherwise. Only from queriers the
//! configuration allows, replies to `giaddr`. Queries by address read the shared lease board
//! (the lease may be another worker's); queries by client read this worker's table, which owns
//! the client because the query carries the same identity the client's messages are steered
//! by. Renewals answered in the XDP program reach the board through
//! [`super::Engine::renewed_outside`]. Must never answer a querier that is not allowed, nor
//! change a lease.

use super::board::Entry;
use super::ports::holder_hash;
use super::{Context, Destination, DropReason, Outcome, Reply, Seconds, Silence};
use crate::lease::{ClientKey, LeaseState};
use crate::wire::dhcp::{self, DhcpWriter};
use crate::wire::options::{code, MessageType};
use core::net::Ipv4Addr;

/// The board entry of a lease read back from the journal (no relay information; `now` stands
/// in for the last transaction).
pub(super) fn restored_entry(client: &ClientKey, mac: [u8; 6], expires: Seconds, now: Seconds) -> Entry {
    let cid = client.is_client_id().then(|| client.inline_bytes()).flatten();
    Entry::new(holder_hash(client), expires, now, (1, 6, mac)).with_client_id(cid)
}

impl super::Engine {
    /// A renewal of `client`'s lease answered outside the engine (in the XDP program) at `at`,
    /// for `lease_secs`: the lease board shows the lease as that renewal left it (its end and
    /// the last transaction), so leasequery answers as if the engine had renewed it.
    pub fn renewed_outside(&mut self, client: &ClientKey, at: Seconds, lease_secs: u32) {
        let Some((ip, LeaseState::Bound, _)) = self.lookup(client) else { return };
        let holder = holder_hash(client);
        let Some(mut e) = self.shared.published(ip).filter(|e| e.holder == holder) else { return };
        let expires = at.saturating_add(lease_secs);
        if e.expires >= expires && e.last >= at {
            return;
        }
        (e.expires, e.last) = (e.expires.max(expires), e.last.max(at));
        self.shared.publish(ip, &e);
    }
}

/// What a query asks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Query {
    Address(Ipv4Addr),
    Client(ClientKey),
}

/// The answer: its kind, and for an active lease the address and what the board holds.
struct Answer {
    kind: MessageType,
    lease: Option<(Ipv4Addr, Entry)>,
    by_client: bool,
}

impl Context<'_> {
    /// Publishes the client's lease on `ip` until `expires` to the lease board.
    pub(super) fn publish(&mut self, ip: Ipv4Addr, expires: Seconds) {
        if !self.sh.leasequery_on() {
            return;
        }
        let p = &self.req.pkt;
        let e = Entry::new(holder_hash(&self.req.key), expires, self.now, (p.htype(), p.hlen(), self.req.mac))
            .with_client_id(self.req.client_id)
            .with_relay_info(self.req.relay_info);
        self.sh.publish(ip, &e);
    }

    /// DHCPLEASEQUERY (RFC 4388 §6.4).
    pub(super) fn leasequery(&mut self) -> Outcome {
        if !self.sh.leasequery_on() {
            return Outcome::Dropped(DropReason::UnexpectedType(MessageType::LeaseQuery as u8));
        }
        let src = *self.ingress.src.ip();
        if !self.sh.leasequery_allowed(src) {
            return Outcome::Silent(Silence::UntrustedRelay);
        }
        let Some(query) = self.query() else {
            // §6.6: a query naming nothing is not answered.
            return Outcome::Dropped(DropReason::NoClientIdentity);
        };
        let answer = self.answer(query);
        let giaddr = self.req.pkt.giaddr();
        let to = Destination::Relay(if giaddr.is_unspecified() { src } else { giaddr });
        self.write_answer(&answer, to)
    }

    /// By address if `ciaddr` is set, else by client id, else by hardware address (§6.1).
    fn query(&self) -> Option<Query> {
        let p = &self.req.pkt;
        if !p.ciaddr().is_unspecified() {
            return Some(Query::Address(p.ciaddr()));
        }
        match self.req.client_id {
            Some(id) if !id.is_empty() => Some(Query::Client(ClientKey::from_client_id(id))),
            _ if p.hlen() > 0 && p.chaddr()[..p.hlen() as usize].iter().any(|b| *b != 0) => {
                Some(Query::Client(self.req.key))
            }
            _ => None,
        }
    }

    fn answer(&self, query: Query) -> Answer {
        let (sh, now) = (self.sh, self.now);
        let live = |ip: Ipv4Addr, holder: Option<u64>| {
            sh.published(ip).filter(|e| e.expires > now && holder.is_none_or(|h| e.holder == h))
        };
        let (kind, lease, by_client) = match query {
            Query::Address(ip) => match live(ip, None) {
                Some(e) => (MessageType::LeaseActive, Some((ip, e)), false),
                None if sh.on_board(ip) => (MessageType::LeaseUnassigned, None, false),
                None => (MessageType::LeaseUnknown, None, false),
            },
            Query::Client(key) => {
                let held = self
                    .table
                    .find(&key)
                    .map(|r| self.table.get(r))
                    .filter(|(l, s)| *s == LeaseState::Bound && l.expires > now);
                match held.and_then(|(l, _)| live(l.ip.into(), Some(holder_hash(&key))).map(|e| (l.ip.into(), e))) {
                    Some(lease) => (MessageType::LeaseActive, Some(lease), true),
                    None => (MessageType::LeaseUnknown, None, true),
                }
            }
        };
        Answer { kind, lease, by_client }
    }

    /// Writes the answer (§6.4.1-6.4.3): the query's `xid`, `flags` and `giaddr`; for an
    /// active lease the client's hardware address and the leased address in `ciaddr`.
    fn write_answer(&mut self, a: &Answer, to: Destination) -> Outcome {
        let p = &self.req.pkt;
        let sid = a.lease.and_then(|(ip, _)| self.sh.subnet_of(ip)).or_else(|| self.sh.subnet_of(p.ciaddr()));
        let first = self.sh.server_ids().first().copied().unwrap_or(Ipv4Addr::UNSPECIFIED);
        let server_id = sid.map_or(first, |s| self.sh.subnet(s).server_id);
        let Ok(mut w) = DhcpWriter::new(self.out, dhcp::DEFAULT_MAX_MESSAGE_LEN) else {
            return Outcome::Dropped(DropReason::Malformed(crate::wire::Error::NoRoom));
        };
        {
            let mut h = w.header();
            h.set_op(dhcp::Op::Reply);
            h.set_xid(p.xid());
            h.set_flags(p.flags());
            h.set_giaddr(p.giaddr());
            match &a.lease {
                Some((ip, e)) => {
                    let mut ch = [0u8; 16];
                    ch[..6].copy_from_slice(&e.mac);
                    h.set_htype(e.htype);
                    h.set_hlen(e.hlen);
                    h.set_chaddr(&ch);
                    h.set_ciaddr(*ip);
                }
                None => {
                    h.set_htype(p.htype());
                    h.set_hlen(p.hlen());
                    h.set_chaddr(p.chaddr());
                    h.set_ciaddr(p.ciaddr());
                }
            }
        }
        match lease_options(&mut w, a, server_id, self.now) {
            Ok(()) => {
                let len = w.finish();
                Outcome::Reply(Reply { len, to, kind: a.kind, commit: false, from: server_id })
            }
            Err(e) => Outcome::Dropped(DropReason::Malformed(e)),
        }
    }
}

/// The answer's options: 53, 54, and for an active lease 51, 91, 92 (by client), 61, 82.
fn lease_options(w: &mut DhcpWriter<'_>, a: &Answer, server_id: Ipv4Addr, now: Seconds) -> crate::wire::Result<()> {
    w.option_u8(code::MESSAGE_TYPE, a.kind as u8)?;
    w.option_ip(code::SERVER_ID, server_id)?;
    let Some((ip, e)) = &a.lease else { return Ok(()) };
    w.option_u32(code::LEASE_TIME, e.expires.saturating_sub(now))?;
    w.option_u32(code::CLIENT_LAST_TRANSACTION_TIME, now.saturating_sub(e.last))?;
    if a.by_client {
        w.option(code::ASSOCIATED_IP, &ip.octets())?;
    }
    if let Some(id) = e.client_id() {
        w.option(code::CLIENT_ID, id)?;
    }
    if let Some(ri) = e.relay_info() {
        w.option(code::RELAY_AGENT_INFO, ri)?;
    }
    Ok(())
}
