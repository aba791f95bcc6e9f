//! The DHCP server engine: RFC 2131's server side as a state machine without I/O.
//!
//! Input: a message's bytes, the facts of its arrival ([`Ingress`]) and the current time.
//! Output: the reply written into the caller's buffer with where to send it ([`Outcome`]), and
//! the lease changes ([`LeaseEvent`]) a journal must make durable before an ACK leaves.
//! No sockets, threads or clocks inside, and no allocation per message: one engine per worker,
//! all engines sharing the [`Shared`] part (configuration and the lock-free address space).

mod reply;
mod shared;
mod stats;

pub use shared::{InterfaceId, Shared};
pub use stats::Stats;

use crate::lease::{Claim, ClientKey, ClientTable, LeaseState};
use crate::wire::{self, dhcp, options::MessageType};
use core::net::{Ipv4Addr, SocketAddrV4};
use reply::ReplySpec;
use shared::Link;
use std::sync::Arc;

/// Wall-clock time in seconds since the UNIX epoch (leases outlive the process, so the journal
/// needs wall time; tests pass a virtual clock).
pub type Seconds = u32;

/// Facts about how a message arrived, supplied by the I/O path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ingress {
    /// Receiving interface, as numbered by [`Shared::interface_id`]; `None` if unknown.
    pub interface: Option<InterfaceId>,
    /// Innermost VLAN id of the frame, if tagged.
    pub vlan: Option<u16>,
    /// Source address and port (a relay's address for relayed messages).
    pub src: SocketAddrV4,
}

impl Ingress {
    /// A broadcast from a directly attached client on `interface`.
    pub fn broadcast(interface: Option<InterfaceId>) -> Ingress {
        Ingress { interface, vlan: None, src: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68) }
    }
}

/// Where a reply goes (RFC 2131 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// To the relay agent at `giaddr`, server port 67.
    Relay(Ipv4Addr),
    /// Unicast to the client's configured address (`ciaddr`), port 68.
    Client(Ipv4Addr),
    /// Broadcast 255.255.255.255:68 on the receiving link.
    Broadcast,
    /// Unicast to an address the client does not have yet: IP `ip` at hardware address `mac`,
    /// port 68. Needs a raw frame or a neighbour entry: the client cannot answer ARP.
    Hardware { ip: Ipv4Addr, mac: [u8; 6] },
}

impl Destination {
    /// UDP destination port of the reply.
    pub fn port(&self) -> u16 {
        match self {
            Destination::Relay(_) => 67,
            _ => 68,
        }
    }

    /// Destination IP address of the reply.
    pub fn ip(&self) -> Ipv4Addr {
        match *self {
            Destination::Relay(ip) | Destination::Client(ip) | Destination::Hardware { ip, .. } => ip,
            Destination::Broadcast => Ipv4Addr::BROADCAST,
        }
    }
}

/// A reply written into the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// Bytes of the DHCP message at the start of the output buffer.
    pub len: usize,
    pub to: Destination,
    pub kind: MessageType,
    /// The reply depends on lease changes in this call's events: they must be durable before
    /// it is sent.
    pub commit: bool,
    /// Source address for the reply: the server identifier of the client's subnet (an
    /// address of the interface the client is on, checked at start).
    pub from: Ipv4Addr,
}

/// Why a message got no reply although it was well-formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Silence {
    /// A REQUEST naming another server: our offer (if any) was released.
    ForeignServer,
    /// No free address in the client's subnets.
    NoAddress,
    /// No subnet matches the message's link (interface, relay, selection options).
    NoSubnet,
    /// A client we have no record of, and we are not authoritative.
    UnknownClient,
    /// RELEASE or DECLINE handled (they have no reply).
    Done,
    /// Nothing to do (for example a RELEASE of an address the client does not hold).
    Ignored,
}

/// Why a message was dropped as invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drop {
    Malformed(wire::Error),
    /// `op` is not BOOTREQUEST.
    NotRequest,
    /// No option 53 (plain BOOTP is not served).
    NoMessageType,
    /// A message type a server does not take (OFFER, ACK, NAK or unknown).
    UnexpectedType(u8),
    /// Neither a client identifier nor a hardware address to tell the client by.
    NoClientIdentity,
    /// An option the message type requires is missing (its code).
    MissingOption(u8),
}

/// What became of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Reply(Reply),
    Silent(Silence),
    Dropped(Drop),
}

/// Kinds of lease change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Address offered and held until `expires`.
    Offered,
    /// Lease granted or renewed until `expires`.
    Bound,
    /// The client released its lease.
    Released,
    /// The lease ran out.
    Expired,
    /// The client took another server's offer: our offer ended at once.
    OfferReleased,
    /// Nobody took the offer in time.
    OfferExpired,
    /// The client declined a pool address; it is out of the pool until `expires`.
    Declined,
    /// Decline probation ended; the address is back in the pool.
    ProbationEnded,
}

impl EventKind {
    /// Changes a restart must not forget. Offers are not durable: a restarted server simply
    /// NAKs or re-offers.
    pub fn is_durable(self) -> bool {
        !matches!(self, EventKind::Offered | EventKind::OfferReleased | EventKind::OfferExpired)
    }
}

/// One lease change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseEvent {
    pub kind: EventKind,
    pub ip: Ipv4Addr,
    pub client: ClientKey,
    /// The client's hardware address when known (it decides the owning worker on recovery).
    pub mac: [u8; 6],
    pub expires: Seconds,
}

/// Why [`Engine::restore`] refused a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreError {
    /// Already expired: nothing to restore.
    Expired,
    /// The address is not in any configured subnet (the configuration changed).
    NotInSubnet,
    /// Another client already holds the address, or it is reserved for another client.
    Conflict,
    /// The client already has a record.
    Duplicate,
}

/// One worker's engine.
#[derive(Debug)]
pub struct Engine {
    shared: Arc<Shared>,
    st: State,
}

/// The worker-owned part of an engine.
#[derive(Debug)]
struct State {
    table: ClientTable,
    stats: Stats,
}

/// The parts of a request the handlers use.
struct Request<'a> {
    pkt: dhcp::DhcpPacket<&'a [u8]>,
    opts: wire::options::Options<'a>,
    key: ClientKey,
    mac: [u8; 6],
    client_id: Option<&'a [u8]>,
    relay_info: Option<&'a [u8]>,
    prl: Option<&'a [u8]>,
}

/// Room for options a client split over several instances (RFC 3396), joined.
const JOIN: usize = 1024;

impl Engine {
    /// An engine for one worker; `capacity` sizes its client table (clients it will hold).
    pub fn new(shared: Arc<Shared>, now: Seconds, capacity: usize) -> Engine {
        Engine { shared, st: State { table: ClientTable::new(now, capacity), stats: Stats::default() } }
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub fn stats(&self) -> &Stats {
        &self.st.stats
    }

    /// Offers, leases and probations this engine holds.
    pub fn records(&self) -> usize {
        self.st.table.len()
    }

    /// Bytes of the client table's own structures.
    pub fn table_bytes(&self) -> usize {
        self.st.table.heap_bytes()
    }

    /// The lease a client holds or was offered: (address, state, deadline).
    pub fn lookup(&self, client: &ClientKey) -> Option<(Ipv4Addr, LeaseState, Seconds)> {
        let i = self.st.table.find(client)?;
        let (l, s) = self.st.table.get(i);
        Some((Ipv4Addr::from(l.ip), s, l.expires))
    }

    /// Ends offers, leases and probations due at `now`. Call at least once a second when idle;
    /// [`Engine::handle`] also calls it.
    pub fn handle_timeout(&mut self, now: Seconds, events: &mut Vec<LeaseEvent>) {
        let Engine { shared, st: State { table, stats } } = self;
        table.expire(now, |lease, state| {
            let ip = Ipv4Addr::from(lease.ip);
            shared.space().release(ip);
            let kind = match state {
                LeaseState::Offered => {
                    stats.offers_expired += 1;
                    EventKind::OfferExpired
                }
                LeaseState::Bound => {
                    stats.leases_expired += 1;
                    EventKind::Expired
                }
                _ => {
                    stats.probations_ended += 1;
                    EventKind::ProbationEnded
                }
            };
            events.push(LeaseEvent { kind, ip, client: lease.key, mac: [0; 6], expires: lease.expires });
        });
    }

    /// When [`Engine::handle_timeout`] next has work: the next second, if anything is held.
    pub fn poll_timeout(&self) -> Option<Seconds> {
        (!self.st.table.is_empty()).then(|| self.st.table.handled_until() + 1)
    }

    /// Puts back a lease read from the journal at start-up.
    pub fn restore(
        &mut self,
        now: Seconds,
        client: ClientKey,
        mac: [u8; 6],
        ip: Ipv4Addr,
        expires: Seconds,
        state: LeaseState,
    ) -> Result<(), RestoreError> {
        if expires <= now {
            return Err(RestoreError::Expired);
        }
        if self.shared.subnet_of(ip).is_none() {
            return Err(RestoreError::NotInSubnet);
        }
        if state != LeaseState::Quarantined && self.st.table.find(&client).is_some() {
            return Err(RestoreError::Duplicate);
        }
        match self.shared.reserved_ip_owned_by(ip, &client, &mac) {
            Some(false) => return Err(RestoreError::Conflict),
            Some(true) => {}
            None => match self.shared.space().claim(ip) {
                Claim::Taken => {}
                Claim::Busy => return Err(RestoreError::Conflict),
                Claim::NotInPool => {}
            },
        }
        let key = if state == LeaseState::Quarantined {
            self.shared.space().quarantine(ip);
            ClientKey::quarantine(ip.into())
        } else {
            client
        };
        self.st.table.insert(key, ip.into(), state, expires);
        Ok(())
    }

    /// Handles one message. The reply (if any) is written at the start of `out`; lease changes
    /// are appended to `events`.
    pub fn handle(
        &mut self,
        now: Seconds,
        ingress: &Ingress,
        msg: &[u8],
        out: &mut [u8],
        events: &mut Vec<LeaseEvent>,
    ) -> Outcome {
        self.st.stats.received += 1;
        self.handle_timeout(now, events);
        let outcome = self.dispatch(now, ingress, msg, out, events);
        self.st.stats.count(&outcome);
        outcome
    }

    fn dispatch(
        &mut self,
        now: Seconds,
        ingress: &Ingress,
        msg: &[u8],
        out: &mut [u8],
        events: &mut Vec<LeaseEvent>,
    ) -> Outcome {
        let pkt = match dhcp::DhcpPacket::new_checked(msg) {
            Ok(p) => p,
            Err(e) => return Outcome::Dropped(Drop::Malformed(e)),
        };
        if pkt.op() != dhcp::Op::Request as u8 {
            return Outcome::Dropped(Drop::NotRequest);
        }
        if pkt.hlen() > 16 {
            return Outcome::Dropped(Drop::Malformed(wire::Error::Malformed("hlen above 16")));
        }
        let opts = match pkt.parse_options() {
            Ok(o) => o,
            Err(e) => return Outcome::Dropped(Drop::Malformed(e)),
        };
        let Some(mt) = opts.message_type else { return Outcome::Dropped(Drop::NoMessageType) };
        // Options split over several instances are joined here, on the rare path only.
        let mut scratch_id = SplitBuf::new();
        let mut scratch_prl = SplitBuf::new();
        let mut scratch_82 = SplitBuf::new();
        let client_id = match scratch_id.value(&opts, opts.client_id, wire::options::code::CLIENT_ID) {
            Ok(v) => v,
            Err(e) => return Outcome::Dropped(Drop::Malformed(e)),
        };
        let prl =
            match scratch_prl.value(&opts, opts.parameter_request_list, wire::options::code::PARAMETER_REQUEST_LIST) {
                Ok(v) => v,
                Err(e) => return Outcome::Dropped(Drop::Malformed(e)),
            };
        let relay_info = match scratch_82.value(&opts, opts.relay_agent_info, wire::options::code::RELAY_AGENT_INFO) {
            Ok(v) => v,
            Err(e) => return Outcome::Dropped(Drop::Malformed(e)),
        };
        let hlen = pkt.hlen() as usize;
        let key = match client_id {
            Some(id) if !id.is_empty() => ClientKey::from_client_id(id),
            _ if hlen > 0 => ClientKey::from_hardware(pkt.htype(), &pkt.chaddr()[..hlen]),
            _ => return Outcome::Dropped(Drop::NoClientIdentity),
        };
        let req = Request { pkt, mac: pkt.client_mac(), key, client_id, relay_info, prl, opts };
        self.st.stats.count_type(mt);
        match MessageType::from_u8(mt) {
            Some(MessageType::Discover) => self.st.discover(&self.shared, now, ingress, &req, out, events),
            Some(MessageType::Request) => self.st.request(&self.shared, now, ingress, &req, out, events),
            Some(MessageType::Decline) => self.st.decline(&self.shared, now, &req, events),
            Some(MessageType::Release) => self.st.release(&self.shared, &req, events),
            Some(MessageType::Inform) => self.st.inform(&self.shared, ingress, &req, out),
            _ => Outcome::Dropped(Drop::UnexpectedType(mt)),
        }
    }
}

impl State {
    fn push(events: &mut Vec<LeaseEvent>, kind: EventKind, ip: Ipv4Addr, req: &Request<'_>, expires: Seconds) {
        events.push(LeaseEvent { kind, ip, client: req.key, mac: req.mac, expires });
    }

    /// Ends a client's record and frees its address (unless reserved).
    fn drop_record(&mut self, sh: &Shared, i: u32, kind: EventKind, req: &Request<'_>, events: &mut Vec<LeaseEvent>) {
        let (lease, _) = self.table.remove(i);
        let ip = Ipv4Addr::from(lease.ip);
        sh.space().release(ip);
        Self::push(events, kind, ip, req, lease.expires);
    }

    /// DISCOVER → OFFER (RFC 2131 §4.3.1).
    fn discover(
        &mut self,
        sh: &Shared,
        now: Seconds,
        ingress: &Ingress,
        req: &Request<'_>,
        out: &mut [u8],
        events: &mut Vec<LeaseEvent>,
    ) -> Outcome {
        let Some(link) = sh.select_link(ingress, &req.pkt, &req.opts, req.relay_info) else {
            return Outcome::Silent(Silence::NoSubnet);
        };
        let shared = sh;
        let rapid = shared.rapid_commit && req.opts.rapid_commit;

        // A client that already has an offer or a lease on this link gets the same address.
        let mut current = None;
        if let Some(i) = self.table.find(&req.key) {
            let (lease, state) = self.table.get(i);
            let ip = Ipv4Addr::from(lease.ip);
            match shared.subnet_in_link(&link, ip) {
                Some(sid) => current = Some((i, ip, state, sid)),
                // The client moved to another link: what it held there is of no use to it.
                None => {
                    let kind = if state == LeaseState::Bound { EventKind::Released } else { EventKind::OfferReleased };
                    self.drop_record(sh, i, kind, req, events);
                }
            }
        }

        let (ip, sid) = match current {
            Some((i, ip, state, sid)) => {
                if state == LeaseState::Offered && !rapid {
                    let expires = now + shared.offer_timeout;
                    self.table.update(i, LeaseState::Offered, expires);
                    Self::push(events, EventKind::Offered, ip, req, expires);
                }
                (ip, sid)
            }
            None => {
                let Some((ip, sid)) = shared.allocate(&link, req.key, &req.mac, req.opts.requested_ip) else {
                    return Outcome::Silent(Silence::NoAddress);
                };
                if !rapid {
                    let expires = now + shared.offer_timeout;
                    self.table.insert(req.key, ip.into(), LeaseState::Offered, expires);
                    Self::push(events, EventKind::Offered, ip, req, expires);
                } else {
                    self.table.insert(req.key, ip.into(), LeaseState::Offered, now + shared.offer_timeout);
                }
                (ip, sid)
            }
        };
        if rapid {
            // RFC 4039: commit at once and answer with an ACK carrying option 80.
            let i = self.table.find(&req.key).unwrap_or(u32::MAX);
            return self.bind(sh, now, i, ip, sid, req, out, events, true);
        }
        let subnet = shared.subnet(sid);
        let spec = ReplySpec { kind: MessageType::Offer, yiaddr: ip, lease: Some(subnet.times()), rapid: false };
        self.send(sh, &spec, sid, req, out, false)
    }

    /// Grants or renews the lease on `ip` and writes the ACK.
    #[allow(clippy::too_many_arguments)]
    fn bind(
        &mut self,
        sh: &Shared,
        now: Seconds,
        i: u32,
        ip: Ipv4Addr,
        sid: u16,
        req: &Request<'_>,
        out: &mut [u8],
        events: &mut Vec<LeaseEvent>,
        rapid: bool,
    ) -> Outcome {
        let subnet = sh.subnet(sid);
        let times = subnet.times();
        let expires = now + times.0;
        if i == u32::MAX {
            self.table.insert(req.key, ip.into(), LeaseState::Bound, expires);
        } else {
            self.table.update(i, LeaseState::Bound, expires);
        }
        Self::push(events, EventKind::Bound, ip, req, expires);
        let spec = ReplySpec { kind: MessageType::Ack, yiaddr: ip, lease: Some(times), rapid };
        self.send(sh, &spec, sid, req, out, true)
    }

    /// REQUEST in SELECTING, INIT-REBOOT, RENEWING or REBINDING state (RFC 2131 §4.3.2).
    fn request(
        &mut self,
        sh: &Shared,
        now: Seconds,
        ingress: &Ingress,
        req: &Request<'_>,
        out: &mut [u8],
        events: &mut Vec<LeaseEvent>,
    ) -> Outcome {
        let shared = sh;
        let record = self.table.find(&req.key);
        let ciaddr = req.pkt.ciaddr();

        if let Some(server_id) = req.opts.server_id {
            // SELECTING.
            if !shared.is_our_server_id(server_id) {
                // The client chose another server: that is a decline of our offer
                // (RFC 2131 §3.1 step 4, §4.3.2). Release it now, in O(1).
                if let Some(i) = record {
                    if self.table.get(i).1 == LeaseState::Offered {
                        self.drop_record(sh, i, EventKind::OfferReleased, req, events);
                        self.stats.offers_released_foreign += 1;
                    }
                }
                return Outcome::Silent(Silence::ForeignServer);
            }
            let Some(requested) = req.opts.requested_ip.or((!ciaddr.is_unspecified()).then_some(ciaddr)) else {
                return Outcome::Dropped(Drop::MissingOption(wire::options::code::REQUESTED_IP));
            };
            let Some(link) = sh.select_link(ingress, &req.pkt, &req.opts, req.relay_info) else {
                return Outcome::Silent(Silence::NoSubnet);
            };
            let Some(sid) = shared.subnet_in_link(&link, requested) else {
                return self.nak(sh, &link, req, out);
            };
            if let Some(i) = record {
                let (lease, state) = self.table.get(i);
                if lease.ip == u32::from(requested) && state != LeaseState::Quarantined {
                    return self.bind(sh, now, i, requested, sid, req, out, events, false);
                }
                // It asks for something else than we offered: refuse, keep our record.
                return self.nak(sh, &link, req, out);
            }
            // Our offer timed out meanwhile; if the address is still free it is the client's.
            if shared.take_specific(requested, req.key, &req.mac) {
                return self.bind(sh, now, u32::MAX, requested, sid, req, out, events, false);
            }
            return self.nak(sh, &link, req, out);
        }

        let Some(link) = sh.select_link(ingress, &req.pkt, &req.opts, req.relay_info) else {
            return Outcome::Silent(Silence::NoSubnet);
        };
        let (wanted, reboot) = match (req.opts.requested_ip, ciaddr.is_unspecified()) {
            // INIT-REBOOT: requested address, no ciaddr.
            (Some(ip), true) => (ip, true),
            // RENEWING (unicast) or REBINDING (broadcast): ciaddr.
            (_, false) => (ciaddr, false),
            (None, true) => return Outcome::Dropped(Drop::MissingOption(wire::options::code::REQUESTED_IP)),
        };
        let Some(sid) = shared.subnet_in_link(&link, wanted) else {
            // Wrong network for this client: it must restart (RFC 2131 §4.3.2).
            return if reboot || shared.authoritative {
                self.nak(sh, &link, req, out)
            } else {
                Outcome::Silent(Silence::UnknownClient)
            };
        };
        match record {
            Some(i) => {
                let (lease, state) = self.table.get(i);
                if lease.ip == u32::from(wanted) && state == LeaseState::Bound {
                    self.bind(sh, now, i, wanted, sid, req, out, events, false)
                } else if lease.ip == u32::from(wanted) && state == LeaseState::Offered && reboot {
                    // A client that skipped SELECTING but asks for exactly what we offered.
                    self.bind(sh, now, i, wanted, sid, req, out, events, false)
                } else {
                    self.nak(sh, &link, req, out)
                }
            }
            None if shared.authoritative => self.nak(sh, &link, req, out),
            None => Outcome::Silent(Silence::UnknownClient),
        }
    }

    /// DECLINE: the client found the address in use; keep it out of the pool for the probation
    /// time (RFC 2131 §4.3.3).
    fn decline(&mut self, sh: &Shared, now: Seconds, req: &Request<'_>, events: &mut Vec<LeaseEvent>) -> Outcome {
        if let Some(sid) = req.opts.server_id {
            if !sh.is_our_server_id(sid) {
                return Outcome::Silent(Silence::ForeignServer);
            }
        }
        let Some(ip) = req.opts.requested_ip else {
            return Outcome::Dropped(Drop::MissingOption(wire::options::code::REQUESTED_IP));
        };
        let Some(i) = self.table.find(&req.key) else { return Outcome::Silent(Silence::Ignored) };
        if self.table.get(i).0.ip != u32::from(ip) {
            return Outcome::Silent(Silence::Ignored);
        }
        self.table.remove(i);
        let expires = now + sh.decline_probation;
        if sh.space().quarantine(ip) {
            self.table.insert(ClientKey::quarantine(ip.into()), ip.into(), LeaseState::Quarantined, expires);
            Self::push(events, EventKind::Declined, ip, req, expires);
        } else {
            // A reserved (or out-of-pool) address has no probation: the client just gives it
            // back, and the journal must not restore a probation that never was.
            Self::push(events, EventKind::Released, ip, req, now);
        }
        Outcome::Silent(Silence::Done)
    }

    /// RELEASE: the client gives its lease back (RFC 2131 §4.3.4).
    fn release(&mut self, sh: &Shared, req: &Request<'_>, events: &mut Vec<LeaseEvent>) -> Outcome {
        if let Some(sid) = req.opts.server_id {
            if !sh.is_our_server_id(sid) {
                return Outcome::Silent(Silence::ForeignServer);
            }
        }
        let ciaddr = req.pkt.ciaddr();
        let Some(i) = self.table.find(&req.key) else { return Outcome::Silent(Silence::Ignored) };
        let (lease, state) = self.table.get(i);
        if lease.ip != u32::from(ciaddr) || state != LeaseState::Bound {
            return Outcome::Silent(Silence::Ignored);
        }
        self.drop_record(sh, i, EventKind::Released, req, events);
        Outcome::Silent(Silence::Done)
    }

    /// INFORM: configuration only, no address, no lease time (RFC 2131 §4.3.5).
    fn inform(&mut self, sh: &Shared, ingress: &Ingress, req: &Request<'_>, out: &mut [u8]) -> Outcome {
        let ciaddr = req.pkt.ciaddr();
        let sid = match sh.select_link(ingress, &req.pkt, &req.opts, req.relay_info) {
            Some(link) => sh.subnet_in_link(&link, ciaddr).or(link.ids().first().copied()),
            None => sh.subnet_of(ciaddr),
        };
        let Some(sid) = sid else { return Outcome::Silent(Silence::NoSubnet) };
        let spec = ReplySpec { kind: MessageType::Ack, yiaddr: Ipv4Addr::UNSPECIFIED, lease: None, rapid: false };
        self.send(sh, &spec, sid, req, out, false)
    }

    fn nak(&mut self, sh: &Shared, link: &Link<'_>, req: &Request<'_>, out: &mut [u8]) -> Outcome {
        let sid = link.ids()[0];
        let spec = ReplySpec { kind: MessageType::Nak, yiaddr: Ipv4Addr::UNSPECIFIED, lease: None, rapid: false };
        self.send(sh, &spec, sid, req, out, false)
    }

    fn send(
        &mut self,
        sh: &Shared,
        spec: &ReplySpec,
        sid: u16,
        req: &Request<'_>,
        out: &mut [u8],
        commit: bool,
    ) -> Outcome {
        match reply::write(sh.subnet(sid), spec, req, out) {
            Ok((len, to)) => Outcome::Reply(Reply { len, to, kind: spec.kind, commit, from: sh.subnet(sid).server_id }),
            // Only a too-small output buffer gets here: mandatory options always fit in 548.
            Err(e) => Outcome::Dropped(Drop::Malformed(e)),
        }
    }
}

/// Holds the joined value of an option that a client split (RFC 3396).
struct SplitBuf {
    buf: core::mem::MaybeUninit<[u8; JOIN]>,
}

impl SplitBuf {
    fn new() -> SplitBuf {
        SplitBuf { buf: core::mem::MaybeUninit::uninit() }
    }

    fn value<'a>(
        &'a mut self,
        opts: &wire::options::Options<'a>,
        v: Option<wire::options::Value<'a>>,
        code: u8,
    ) -> wire::Result<Option<&'a [u8]>> {
        match v {
            None => Ok(None),
            Some(wire::options::Value { first, split: false }) => Ok(Some(first)),
            Some(_) => {
                let buf = self.buf.write([0u8; JOIN]);
                opts.concat(code, buf)
            }
        }
    }
}

#[cfg(test)]
mod tests;
