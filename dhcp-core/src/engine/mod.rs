//! The DHCP server engine: RFC 2131's server side as a state machine without I/O.
//!
//! Input: a message's bytes, the facts of its arrival ([`Ingress`]) and the current time.
//! Output: the reply written into the caller's buffer with where to send it ([`Outcome`]), and
//! the lease changes ([`LeaseEvent`]) a journal must make durable before an ACK leaves.
//! No sockets, threads or clocks inside, and no allocation per message: one engine per worker,
//! all engines sharing the [`Shared`] part (configuration and the lock-free address space).

mod admin;
mod board;
mod classes;
mod cluster;
mod leasequery;
mod limits;
mod ports;
mod reply;
mod shared;
mod stats;

pub use admin::{mac_of, Carried, LeaseView};
pub use cluster::{rfc3074_bucket, Adopted, ClusterStats, ClusterView, FENCE_MARGIN, OUTBOX_EVENTS};
pub use limits::Limited;
pub use shared::{client_steer, InterfaceId, Shared};
pub use stats::Stats;

use crate::config::DeclinePolicy;
use crate::lease::{Claim, ClientKey, ClientTable, LeaseState, RecordId};
use crate::wire::options::{code, MessageType, Options};
use crate::wire::{self, dhcp};
use classes::classes_of;
use core::net::{Ipv4Addr, SocketAddrV4};
use limits::{Cell, SubnetLimits};
use reply::ReplySpec;
use shared::{Link, Unserved};
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
    /// The message's steering hash (`dhcp_common::message_hash`), recorded with its leases so
    /// that a restart puts them back with the worker that will see the client.
    pub steer: u32,
}

impl Ingress {
    /// A broadcast from a directly attached client on `interface`.
    pub fn broadcast(interface: Option<InterfaceId>) -> Ingress {
        Ingress { interface, vlan: None, src: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68), steer: 0 }
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
    /// Nothing to do (for example a RELEASE of an address the client does not hold, or a
    /// DECLINE of an address the client was only offered).
    Ignored,
    /// Relayed by an agent that is not among the trusted relays.
    UntrustedRelay,
    /// Refused by a limit of the client's subscriber key.
    Limited(Limited),
    /// In a cluster: left to the client's primary node (it has not waited `wait_secs`).
    NotPrimary,
    /// In a cluster: this node may grant nothing now (see the fence rule in `cluster`).
    Fenced,
}

/// Why a message was dropped as invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
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
    Dropped(DropReason),
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
    /// The client's hardware address when known.
    pub mac: [u8; 6],
    pub expires: Seconds,
    /// The steering hash of the message that made the change ([`Ingress::steer`]; 0 for ends
    /// found by the timer): it decides the owning worker on recovery.
    pub steer: u32,
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
    /// The clients of this worker: its offers, leases and probations.
    table: ClientTable,
    stats: Stats,
    cluster_stats: ClusterStats,
}

/// The parts of a request the handlers use.
struct Request<'a> {
    pkt: dhcp::DhcpPacket<&'a [u8]>,
    opts: &'a Options<'a>,
    key: ClientKey,
    mac: [u8; 6],
    client_id: Option<&'a [u8]>,
    relay_info: Option<&'a [u8]>,
    prl: Option<&'a [u8]>,
}

impl Engine {
    /// An engine for one worker; `capacity` sizes its client table (clients it will hold).
    pub fn new(shared: Arc<Shared>, now: Seconds, capacity: usize) -> Engine {
        let (table, stats, cluster_stats) =
            (ClientTable::new(now, capacity), Stats::default(), ClusterStats::default());
        Engine { shared, table, stats, cluster_stats }
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The cluster counters (all zero alone).
    pub fn cluster_stats(&self) -> &ClusterStats {
        &self.cluster_stats
    }

    /// Offers, leases and probations this engine holds.
    pub fn records(&self) -> usize {
        self.table.len()
    }

    /// Bytes of the client table's own structures.
    pub fn table_bytes(&self) -> usize {
        self.table.heap_bytes()
    }

    /// The lease a client holds or was offered: (address, state, deadline).
    pub fn lookup(&self, client: &ClientKey) -> Option<(Ipv4Addr, LeaseState, Seconds)> {
        let record = self.table.find(client)?;
        let (l, s) = self.table.get(record);
        Some((Ipv4Addr::from(l.ip), s, l.expires))
    }

    /// Warms the lookup of `msg`'s client ahead of [`Engine::handle`], first stage: starts
    /// loading the client table's index entries it will read. A hint that changes nothing (a
    /// message it cannot read warms nothing); returns the token for [`Engine::warm_records`].
    /// Under load most of `handle`'s own time was cache misses on the client table: a worker
    /// that warms a whole batch in two stages lets those misses overlap.
    #[inline]
    pub fn warm(&self, msg: &[u8]) -> Option<u64> {
        let (at, len) = dhcp_common::steering_identity(msg);
        let key = if at == dhcp_common::bootp::CHADDR {
            let hlen = *msg.get(2)? as usize;
            match (msg.get(1), msg.get(at..at + hlen)) {
                (Some(&htype), Some(chaddr)) if hlen > 0 && hlen <= 16 => ClientKey::from_hardware(htype, chaddr),
                _ => return None,
            }
        } else if msg[at - 1] as usize == len {
            ClientKey::from_client_id(&msg[at..at + len])
        } else {
            // An identifier longer than the steering walk reads: not worth a second walk.
            return None;
        };
        Some(self.table.warm_index(&key))
    }

    /// Second stage of [`Engine::warm`], once the index entries had time to arrive: starts
    /// loading the records the lookup will compare.
    #[inline]
    pub fn warm_records(&self, warmed: u64) {
        self.table.warm_records(warmed);
    }

    /// Ends offers, leases and probations due at `now`. Call at least once a second when idle;
    /// [`Engine::handle`] also calls it.
    pub fn handle_timeout(&mut self, now: Seconds, events: &mut Vec<LeaseEvent>) {
        let from = events.len();
        self.expire(now, events);
        self.forward(events, from);
    }

    fn expire(&mut self, now: Seconds, events: &mut Vec<LeaseEvent>) {
        let Engine { shared, table, stats, .. } = self;
        table.expire(now, |lease, state, limit| {
            let ip = Ipv4Addr::from(lease.ip);
            shared.unhold(limit);
            let kind = match state {
                LeaseState::Offered => {
                    stats.offers_expired += 1;
                    shared.end_hold(ip, &lease.key);
                    EventKind::OfferExpired
                }
                LeaseState::Bound => {
                    stats.leases_expired += 1;
                    shared.end_hold(ip, &lease.key);
                    EventKind::Expired
                }
                _ => {
                    // A probation taken back early has nothing left to end.
                    if !shared.space().end_probation(ip, lease.key.quarantine_generation()) {
                        return;
                    }
                    stats.probations_ended += 1;
                    EventKind::ProbationEnded
                }
            };
            events.push(LeaseEvent { kind, ip, client: lease.key, mac: [0; 6], expires: lease.expires, steer: 0 });
        });
    }

    /// Holds a bound lease at least until `until` (a renewal answered elsewhere, such as in
    /// the XDP program, may extend it that far). `false` if the client holds no bound lease.
    pub fn hold_until(&mut self, client: &ClientKey, until: Seconds) -> bool {
        let Some(record) = self.table.find(client) else { return false };
        let (lease, state) = self.table.get(record);
        if state != LeaseState::Bound {
            return false;
        }
        // In a cluster no lease outlives the grant limit.
        let until = self.shared.cluster().map_or(until, |c| until.min(c.grant_limit()));
        if lease.expires < until {
            self.table.update(record, LeaseState::Bound, until);
        }
        true
    }

    /// Brings a Bound lease's end forward to `at` (a lease renewed outside the engine, in the
    /// XDP program, whose client stopped renewing); `false` if the client holds no Bound lease
    /// or it ends by then anyway.
    pub fn end_at(&mut self, client: &ClientKey, at: Seconds) -> bool {
        let Some(record) = self.table.find(client) else { return false };
        let (lease, state) = self.table.get(record);
        if state != LeaseState::Bound || lease.expires <= at {
            return false;
        }
        self.table.update(record, LeaseState::Bound, at);
        true
    }

    /// When [`Engine::handle_timeout`] next has work: the next second, if anything is held.
    pub fn poll_timeout(&self) -> Option<Seconds> {
        // At the end of the clock's range every deadline (saturated to it) has been handled.
        self.table.handled_until().checked_add(1).filter(|_| !self.table.is_empty())
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
        if state == LeaseState::Quarantined {
            self.claim_restored(ip, client, &mac)?;
            let Some(d) = self.shared.space().quarantine(ip) else { return Err(RestoreError::NotInSubnet) };
            self.table.insert(ClientKey::quarantine(ip.into(), d.generation), ip.into(), state, expires);
            return Ok(());
        }
        // One probe of the client table; undone if the address turns out to be taken.
        let Some(record) = self.table.insert_new(client, ip.into(), state, expires) else {
            return Err(RestoreError::Duplicate);
        };
        if let Err(e) = self.claim_restored(ip, client, &mac) {
            self.table.remove(record);
            return Err(e);
        }
        if state == LeaseState::Bound {
            self.shared.space().mark_bound(ip);
            // The time of the last transaction is not journalled: the restart stands in.
            self.shared.publish(ip, &leasequery::restored_entry(&client, mac, expires, now));
        }
        Ok(())
    }

    /// Takes a restored lease's address: its port's, a reserved one for its owner, or from
    /// the shared space.
    fn claim_restored(&self, ip: Ipv4Addr, client: ClientKey, mac: &[u8; 6]) -> Result<(), RestoreError> {
        if let Some(ours) = self.shared.restore_port(ip, &client) {
            if !ours {
                return Err(RestoreError::Conflict);
            }
        } else if self.shared.reserved_ip_owned_by(ip, &client, mac).is_some() {
            if !self.shared.take_specific(ip, client, mac) {
                return Err(RestoreError::Conflict);
            }
        } else if self.shared.space().claim_known(ip) == Claim::Busy {
            return Err(RestoreError::Conflict);
        }
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
        self.stats.received += 1;
        let from = events.len();
        self.expire(now, events);
        let outcome = self.dispatch(now, ingress, msg, out, events);
        self.stats.count(&outcome);
        self.forward(events, from);
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
        let mut joined = Joined::new();
        let mut opts = Options::default();
        let (mt, req) = match Request::parse(msg, &mut opts, &mut joined) {
            Ok(parsed) => parsed,
            Err(why) => return Outcome::Dropped(why),
        };
        self.stats.count_type(mt);
        let changes_leases = matches!(MessageType::from_u8(mt), Some(MessageType::Discover | MessageType::Request));
        if changes_leases && !reply::fits(&req, out.len()) {
            return Outcome::Dropped(DropReason::Malformed(wire::Error::NoRoom));
        }
        let Engine { shared, table, stats, cluster_stats } = self;
        let classes = classes_of(shared, ingress, &req);
        let mut cx =
            Context { sh: shared, table, stats, cstats: cluster_stats, now, ingress, req: &req, out, events, classes };
        match MessageType::from_u8(mt) {
            Some(MessageType::Discover) => cx.discover(),
            Some(MessageType::Request) => cx.request(),
            Some(MessageType::Decline) => cx.decline(),
            Some(MessageType::Release) => cx.release(),
            Some(MessageType::Inform) => cx.inform(),
            Some(MessageType::LeaseQuery) => cx.leasequery(),
            _ => Outcome::Dropped(DropReason::UnexpectedType(mt)),
        }
    }
}

impl<'a> Request<'a> {
    /// Checks a message and picks out what the handlers use; returns it with its message type.
    /// The options are read in place into `opts` (default on entry); options the client split
    /// are joined into `joined`.
    #[inline]
    fn parse(
        msg: &'a [u8],
        opts: &'a mut Options<'a>,
        joined: &'a mut Joined,
    ) -> Result<(u8, Request<'a>), DropReason> {
        let pkt = dhcp::DhcpPacket::new_checked(msg).map_err(DropReason::Malformed)?;
        if pkt.op() != dhcp::Op::Request as u8 {
            return Err(DropReason::NotRequest);
        }
        if pkt.hlen() > 16 {
            return Err(DropReason::Malformed(wire::Error::Malformed("hlen above 16")));
        }
        pkt.read_options(opts).map_err(DropReason::Malformed)?;
        let opts: &'a Options<'a> = opts;
        let mt = opts.message_type.ok_or(DropReason::NoMessageType)?;
        let Joined { client_id, prl, relay_info } = joined;
        let client_id = client_id.value(opts, opts.client_id, code::CLIENT_ID)?;
        let prl = prl.value(opts, opts.parameter_request_list, code::PARAMETER_REQUEST_LIST)?;
        // Option 82 is a relay agent's (RFC 3046): from a client without a relay it is
        // neither believed nor echoed.
        let relay_info = match pkt.giaddr().is_unspecified() {
            true => None,
            false => relay_info.value(opts, opts.relay_agent_info, code::RELAY_AGENT_INFO)?,
        };
        let hlen = pkt.hlen() as usize;
        let key = match client_id {
            Some(id) if !id.is_empty() => ClientKey::from_client_id(id),
            _ if hlen > 0 => ClientKey::from_hardware(pkt.htype(), &pkt.chaddr()[..hlen]),
            // A leasequery by address names no client (RFC 4388 §6.1).
            _ if mt == MessageType::LeaseQuery as u8 => ClientKey::default(),
            _ => return Err(DropReason::NoClientIdentity),
        };
        Ok((mt, Request { pkt, mac: pkt.client_mac(), key, client_id, relay_info, prl, opts }))
    }
}

/// One message being handled: the engine's parts it may change, the request, the time, and
/// where the reply and the lease changes go.
struct Context<'a> {
    sh: &'a Shared,
    table: &'a mut ClientTable,
    stats: &'a mut Stats,
    cstats: &'a mut ClusterStats,
    now: Seconds,
    ingress: &'a Ingress,
    req: &'a Request<'a>,
    out: &'a mut [u8],
    events: &'a mut Vec<LeaseEvent>,
    /// The client's classes.
    classes: classes::ClassMask,
}

/// A client's record that matters on the message's link.
#[derive(Debug, Clone, Copy)]
struct Held {
    record: RecordId,
    state: LeaseState,
    ip: Ipv4Addr,
    sid: u16,
}

impl<'a> Context<'a> {
    fn push(&mut self, kind: EventKind, ip: Ipv4Addr, expires: Seconds) {
        let (client, mac, steer) = (self.req.key, self.req.mac, self.ingress.steer);
        self.events.push(LeaseEvent { kind, ip, client, mac, expires, steer });
    }

    /// `now + t`, saturating: a time past the clock's range is "never" rather than the past.
    fn after(&self, t: Seconds) -> Seconds {
        self.now.saturating_add(t)
    }

    /// Ends a record and frees its address.
    fn drop_record(&mut self, record: RecordId, kind: EventKind) {
        let limit = self.table.limit(record);
        let (lease, _) = self.table.remove(record);
        let ip = Ipv4Addr::from(lease.ip);
        self.sh.unhold(limit);
        self.sh.end_hold(ip, &lease.key);
        self.push(kind, ip, lease.expires);
    }

    /// Adds a record for this client, counting it against its key's limit if it has one.
    fn insert(
        &mut self,
        key: ClientKey,
        ip: Ipv4Addr,
        state: LeaseState,
        expires: Seconds,
        limit: Option<Cell>,
    ) -> RecordId {
        let record = self.table.insert(key, ip.into(), state, expires);
        if let Some(cell) = limit {
            self.sh.limits.hold(cell);
            self.table.set_limit(record, cell.0);
        }
        record
    }

    /// The subnets of the client's link (RFC 2131 §4.3.1 and the options that refine it).
    fn link(&self) -> Result<Link<'a>, Outcome> {
        let (sh, req) = (self.sh, self.req);
        sh.select_link(self.ingress, &req.pkt, req.opts, req.relay_info).map_err(|u| match u {
            Unserved::NoSubnet => Outcome::Silent(Silence::NoSubnet),
            Unserved::UntrustedRelay => Outcome::Silent(Silence::UntrustedRelay),
        })
    }

    /// The limits and key cell of this client on `sid`.
    fn limits(&self, sid: u16) -> Option<(SubnetLimits, Cell)> {
        self.sh.limit_cell(sid, self.ingress, self.req.relay_info, &self.req.mac)
    }

    /// Whether the client's key may hold one more record; counts the refusal.
    fn may_hold(&mut self, limits: Option<(SubnetLimits, Cell)>) -> Result<Option<Cell>, Outcome> {
        let Some((l, cell)) = limits else { return Ok(None) };
        match l.max_leases {
            Some(max) if !self.sh.limits.may_hold(cell, max) => {
                self.stats.limit_holdings += 1;
                Err(Outcome::Silent(Silence::Limited(Limited::Holdings)))
            }
            _ => Ok(Some(cell)),
        }
    }

    /// DISCOVER → OFFER (RFC 2131 §4.3.1).
    fn discover(&mut self) -> Outcome {
        let link = match self.link() {
            Ok(l) => l,
            Err(o) => return o,
        };
        self.end_stale_records();
        let (sh, req) = (self.sh, self.req);
        let limits = self.limits(link.ids()[0]);
        if let Some((SubnetLimits { rate: Some((rate, burst)), .. }, cell)) = limits {
            if !sh.limits.take_token(cell, rate, burst, self.now) {
                self.stats.limit_discover_rate += 1;
                return Outcome::Silent(Silence::Limited(Limited::DiscoverRate));
            }
        }
        // A client that already has an offer or a lease on this link gets the same address.
        let held = self.held_on(&link);
        if let Err(o) = self.cluster_gate(held.is_some_and(|h| self.own_lease(h.ip))) {
            return o;
        }
        let (ip, sid, cell) = match held {
            Some(h) => (h.ip, h.sid, None),
            None => {
                self.note_foreign_request();
                let cell = match self.may_hold(limits) {
                    Ok(c) => c,
                    Err(o) => return o,
                };
                // Adopted blocks become ours by the cluster thread's pass (`ripen`), never here.
                let facts = (req.relay_info, self.classes);
                match sh.allocate(&link, req.key, &req.mac, req.opts.requested_ip, facts) {
                    Some((ip, sid)) => (ip, sid, cell),
                    None => return Outcome::Silent(Silence::NoAddress),
                }
            }
        };
        if sh.rapid_commit && req.opts.rapid_commit {
            // RFC 4039: commit at once and answer with an ACK carrying option 80.
            return self.bind(held, ip, sid, true, cell);
        }
        // Before the offer's own deadline replaces the record's: an adopted lease's end counts.
        let times = self.lease_times(sid, held.map(|h| (h.record, h.ip)));
        let expires = self.after(sh.offer_timeout);
        match held {
            None => {
                // A client with a lease on another link keeps it until it is ACKed here.
                let key = if self.table.find(&req.key).is_some() { req.key.moving() } else { req.key };
                self.insert(key, ip, LeaseState::Offered, expires, cell);
                self.push(EventKind::Offered, ip, expires);
            }
            Some(h) if h.state == LeaseState::Offered => {
                self.table.update(h.record, LeaseState::Offered, expires);
                self.push(EventKind::Offered, ip, expires);
            }
            // A bound client is offered its address again; its lease stands until it REQUESTs.
            Some(_) => {}
        }
        let spec = ReplySpec { kind: MessageType::Offer, yiaddr: ip, lease: Some(times), rapid: false };
        self.send(&spec, sid, false)
    }

    /// The client's record whose address is on `link`: its own, or the offer it was made here
    /// while it holds a lease elsewhere. An offer on another link is ended (the client moved);
    /// a lease on another link stands until it expires or the client is ACKed here.
    fn held_on(&mut self, link: &Link<'_>) -> Option<Held> {
        for key in [self.req.key, self.req.key.moving()] {
            let Some(record) = self.table.find(&key) else { continue };
            let (lease, state) = self.table.get(record);
            let ip = Ipv4Addr::from(lease.ip);
            if let Some(sid) = self.sh.subnet_in_link(link, ip) {
                if state == LeaseState::Bound && !self.sh.serves(ip) {
                    // Left outside the pools by a reload: kept to its end, a new address now.
                    continue;
                }
                return Some(Held { record, state, ip, sid });
            }
            if state == LeaseState::Offered {
                self.drop_record(record, EventKind::OfferReleased);
            }
        }
        None
    }

    /// Grants or renews the lease on `ip` and writes the ACK. `held` is the client's record on
    /// this link, if it has one; `rapid` answers a rapid-commit DISCOVER; `cell`: a new record
    /// counts against this limit cell.
    fn bind(&mut self, held: Option<Held>, ip: Ipv4Addr, sid: u16, rapid: bool, cell: Option<Cell>) -> Outcome {
        let times = self.lease_times(sid, held.map(|h| (h.record, h.ip)));
        let expires = self.after(times.0);
        match held {
            Some(h) if !self.table.get(h.record).0.key.is_moving() => {
                self.table.update(h.record, LeaseState::Bound, expires);
            }
            Some(h) => {
                // ACKed on its new link: the lease on the old one ends now.
                let limit = self.table.limit(h.record);
                self.table.remove(h.record);
                self.end_other_records();
                let record = self.insert(self.req.key, ip, LeaseState::Bound, expires, None);
                self.table.set_limit(record, limit);
            }
            None => {
                self.end_other_records();
                self.insert(self.req.key, ip, LeaseState::Bound, expires, cell);
            }
        }
        self.sh.space().mark_bound(ip);
        self.push(EventKind::Bound, ip, expires);
        self.publish(ip, expires);
        let spec = ReplySpec { kind: MessageType::Ack, yiaddr: ip, lease: Some(times), rapid };
        self.send(&spec, sid, true)
    }

    /// Ends what the client held before a new lease elsewhere: its own record and any offer
    /// made to it on another link.
    fn end_other_records(&mut self) {
        for key in [self.req.key, self.req.key.moving()] {
            if let Some(record) = self.table.find(&key) {
                let kind = match self.table.get(record).1 {
                    LeaseState::Bound => EventKind::Released,
                    _ => EventKind::OfferReleased,
                };
                self.drop_record(record, kind);
            }
        }
    }

    /// REQUEST (RFC 2131 §4.3.2): in SELECTING state when it names a server, else in
    /// INIT-REBOOT, RENEWING or REBINDING state.
    fn request(&mut self) -> Outcome {
        if self.end_stale_records() {
            // Its port's address went to a new CPE: tell the old one at once.
            return match self.link() {
                Ok(link) => self.nak(&link),
                Err(o) => o,
            };
        }
        match self.req.opts.server_id {
            Some(server_id) => self.selecting(server_id),
            None => self.confirm(),
        }
    }

    /// The client's record (its own, or its moving offer) whose address is `ip`.
    fn record_for(&self, ip: Ipv4Addr) -> Option<(RecordId, LeaseState)> {
        [self.req.key, self.req.key.moving()].iter().find_map(|k| {
            let record = self.table.find(k)?;
            let (lease, state) = self.table.get(record);
            (lease.ip == u32::from(ip)).then_some((record, state))
        })
    }

    /// REQUEST in SELECTING state: the client took the offer of the server it names.
    fn selecting(&mut self, server_id: Ipv4Addr) -> Outcome {
        let (sh, req) = (self.sh, self.req);
        if !sh.is_our_server_id(server_id) {
            // The client chose another server: that is a decline of our offer
            // (RFC 2131 §3.1 step 4, §4.3.2). Release it now, in O(1).
            for key in [req.key, req.key.moving()] {
                if let Some(record) = self.table.find(&key).filter(|&r| self.table.get(r).1 == LeaseState::Offered) {
                    self.drop_record(record, EventKind::OfferReleased);
                    self.stats.offers_released_foreign += 1;
                }
            }
            return Outcome::Silent(Silence::ForeignServer);
        }
        // It chose us: only the fence may keep us silent.
        if let Err(o) = self.cluster_gate(true) {
            return o;
        }
        let ciaddr = req.pkt.ciaddr();
        let Some(requested) = req.opts.requested_ip.or((!ciaddr.is_unspecified()).then_some(ciaddr)) else {
            return Outcome::Dropped(DropReason::MissingOption(code::REQUESTED_IP));
        };
        let link = match self.link() {
            Ok(l) => l,
            Err(o) => return o,
        };
        let Some(sid) = sh.subnet_in_link(&link, requested) else { return self.nak(&link) };
        if let Some((record, state)) = self.record_for(requested) {
            if !sh.serves(requested) {
                return self.nak(&link);
            }
            if state != LeaseState::Quarantined {
                return self.bind(Some(Held { record, state, ip: requested, sid }), requested, sid, false, None);
            }
        }
        if self.table.find(&req.key).is_some() {
            // It asks for something else than we offered: refuse, keep our record.
            return self.nak(&link);
        }
        // Our offer timed out meanwhile; if the address is still free it is the client's.
        let cell = match self.may_hold(self.limits(sid)) {
            Ok(c) => c,
            Err(o) => return o,
        };
        if sh.pool_allows(requested, self.classes) && sh.take_specific(requested, req.key, &req.mac) {
            return self.bind(None, requested, sid, false, cell);
        }
        self.nak(&link)
    }

    /// REQUEST in INIT-REBOOT (requested address, no `ciaddr`), RENEWING (unicast, `ciaddr`)
    /// or REBINDING (broadcast, `ciaddr`) state: the client confirms an address it holds.
    fn confirm(&mut self) -> Outcome {
        let link = match self.link() {
            Ok(l) => l,
            Err(o) => return o,
        };
        let (sh, req) = (self.sh, self.req);
        let ciaddr = req.pkt.ciaddr();
        let (wanted, reboot) = match (req.opts.requested_ip, ciaddr.is_unspecified()) {
            (Some(ip), true) => (ip, true),
            (_, false) => (ciaddr, false),
            (None, true) => return Outcome::Dropped(DropReason::MissingOption(code::REQUESTED_IP)),
        };
        // Alone this is one branch: no second look-up.
        let own = sh.cluster().is_none() || self.record_for(wanted).is_some_and(|_| self.own_lease(wanted));
        if let Err(o) = self.cluster_gate(own) {
            return o;
        }
        let Some(sid) = sh.subnet_in_link(&link, wanted) else {
            // Wrong network for this client: it must restart (RFC 2131 §4.3.2).
            return if reboot || sh.authoritative { self.nak(&link) } else { Outcome::Silent(Silence::UnknownClient) };
        };
        let Some((record, state)) = self.record_for(wanted) else {
            // In a cluster another node may hold the lease (its event not here yet): no NAK
            // for a client we know nothing of, authoritative or not.
            return if self.table.find(&req.key).is_some() || (sh.authoritative && sh.cluster().is_none()) {
                self.nak(&link)
            } else {
                Outcome::Silent(Silence::UnknownClient)
            };
        };
        if !sh.serves(wanted) {
            // Left outside the pools by a reload: not renewed (see `Engine::rebuild`).
            return self.nak(&link);
        }
        // A client that skipped SELECTING may still ask for exactly what we offered.
        if matches!((state, reboot), (LeaseState::Bound, _) | (LeaseState::Offered, true)) {
            return self.bind(Some(Held { record, state, ip: wanted, sid }), wanted, sid, false, None);
        }
        self.nak(&link)
    }

    /// DECLINE: the client found the address in use; keep it out of the pool for the probation
    /// time (RFC 2131 §4.3.3). Only the client the address is bound to may decline it: an
    /// offer cannot be declined (two packets per address would empty a pool), and the pool's
    /// share in probation is capped (see `AddressSpace::quarantine`).
    fn decline(&mut self) -> Outcome {
        let (sh, req) = (self.sh, self.req);
        if req.opts.server_id.is_some_and(|id| !sh.is_our_server_id(id)) {
            return Outcome::Silent(Silence::ForeignServer);
        }
        let Some(ip) = req.opts.requested_ip else {
            return Outcome::Dropped(DropReason::MissingOption(code::REQUESTED_IP));
        };
        let Some(record) = self.table.find(&req.key) else { return Outcome::Silent(Silence::Ignored) };
        let (lease, state) = self.table.get(record);
        if lease.ip != u32::from(ip) || state != LeaseState::Bound || sh.decline == DeclinePolicy::Ignore {
            self.stats.decline_ignored += 1;
            return Outcome::Silent(Silence::Ignored);
        }
        let limit = self.table.limit(record);
        self.table.remove(record);
        sh.unhold(limit);
        let expires = self.after(sh.decline_probation);
        sh.unpublish(ip, 0);
        match sh.space().quarantine(ip) {
            Some(d) => {
                self.table.insert(
                    ClientKey::quarantine(ip.into(), d.generation),
                    ip.into(),
                    LeaseState::Quarantined,
                    expires,
                );
                self.push(EventKind::Declined, ip, expires);
                if d.ended_early.is_some() {
                    self.stats.probations_ended_early += 1;
                }
            }
            None => {
                // A reserved (or out-of-pool) address has no probation: the client just gives
                // it back, and the journal must not restore a probation that never was.
                sh.end_hold(ip, &req.key);
                self.push(EventKind::Released, ip, self.now);
            }
        }
        Outcome::Silent(Silence::Done)
    }

    /// RELEASE: the client gives its lease back (RFC 2131 §4.3.4).
    fn release(&mut self) -> Outcome {
        let (sh, req) = (self.sh, self.req);
        if req.opts.server_id.is_some_and(|id| !sh.is_our_server_id(id)) {
            return Outcome::Silent(Silence::ForeignServer);
        }
        let Some(record) = self.table.find(&req.key) else { return Outcome::Silent(Silence::Ignored) };
        let (lease, state) = self.table.get(record);
        if lease.ip != u32::from(req.pkt.ciaddr()) || state != LeaseState::Bound {
            return Outcome::Silent(Silence::Ignored);
        }
        self.drop_record(record, EventKind::Released);
        Outcome::Silent(Silence::Done)
    }

    /// INFORM: configuration only, no address, no lease time (RFC 2131 §4.3.5). Answered only
    /// for a `ciaddr` in a served subnet: the reply goes there, and must not go anywhere a
    /// sender names.
    fn inform(&mut self) -> Outcome {
        let (sh, ciaddr) = (self.sh, self.req.pkt.ciaddr());
        let sid = match self.link() {
            Ok(link) => sh.subnet_in_link(&link, ciaddr).or(sh.subnet_of(ciaddr)),
            Err(o) if ciaddr.is_unspecified() => return o,
            Err(_) => sh.subnet_of(ciaddr),
        };
        let Some(sid) = sid else { return Outcome::Silent(Silence::NoSubnet) };
        let spec = ReplySpec { kind: MessageType::Ack, yiaddr: Ipv4Addr::UNSPECIFIED, lease: None, rapid: false };
        self.send(&spec, sid, false)
    }

    fn nak(&mut self, link: &Link<'_>) -> Outcome {
        let spec = ReplySpec { kind: MessageType::Nak, yiaddr: Ipv4Addr::UNSPECIFIED, lease: None, rapid: false };
        self.send(&spec, link.ids()[0], false)
    }

    /// Writes the reply `spec` from subnet `sid`; `commit`: it depends on this call's events.
    fn send(&mut self, spec: &ReplySpec, sid: u16, commit: bool) -> Outcome {
        let subnet = self.sh.subnet(sid);
        match reply::write(subnet, (&self.sh.isp.classes, self.classes), spec, self.req, self.out) {
            Ok((len, to)) => Outcome::Reply(Reply { len, to, kind: spec.kind, commit, from: subnet.server_id }),
            // Unreachable for OFFER and ACK (`reply::fits` was checked first); a NAK or INFORM
            // reply that does not fit changed nothing.
            Err(e) => Outcome::Dropped(DropReason::Malformed(e)),
        }
    }
}

/// Room for options a client split over several instances (RFC 3396), joined.
const JOIN: usize = 1024;

/// Room for the options the handlers read whole, should a client split them (RFC 3396).
struct Joined {
    client_id: SplitBuf,
    prl: SplitBuf,
    relay_info: SplitBuf,
}

impl Joined {
    fn new() -> Joined {
        Joined { client_id: SplitBuf::new(), prl: SplitBuf::new(), relay_info: SplitBuf::new() }
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

    /// The option's value: as it stands in the message, or joined here if it was split.
    fn value<'a>(
        &'a mut self,
        opts: &Options<'a>,
        v: Option<wire::options::Value<'a>>,
        code: u8,
    ) -> Result<Option<&'a [u8]>, DropReason> {
        match v {
            None => Ok(None),
            Some(wire::options::Value { first, split: false }) => Ok(Some(first)),
            Some(_) => {
                let buf = self.buf.write([0u8; JOIN]);
                opts.concat(code, buf).map_err(DropReason::Malformed)
            }
        }
    }
}

#[cfg(test)]
mod tests;
