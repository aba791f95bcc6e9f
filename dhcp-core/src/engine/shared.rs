//! What all workers share: the compiled configuration (subnets, options, reservations, trusted
//! relays, limits), the lock-free address space, who holds each reserved address, and the
//! limit counts. Read-only after start-up except what is atomic.

use super::board::{Entry, LeaseBoard};
use super::classes::{pool_allows, ClassMask, ClassTable};
use super::cluster::ClusterView;
use super::limits::{Cell, LimitTable, SubnetLimits};
use super::ports::{holder_hash, PortReservations, Took};
use super::reply::{OptionTable, ReplyHead};
use super::{Ingress, Seconds};
use crate::config::{Cidr, ClientMatch, Config, ConfigError, DeclinePolicy, LimitKey, Subnet};
use crate::lease::space::PoolId;
use crate::lease::{AddressSpace, Claim, ClientKey};
use crate::wire::{dhcp, options};
use core::net::Ipv4Addr;
use foldhash::fast::RandomState;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The steering hash under `key` of a client known by its key and MAC: what its messages
/// hash to when the key holds its identity whole (a client identifier of up to 11 bytes, or
/// its hardware address); a longer client identifier, kept only as a hash, falls back to the
/// MAC (such a client may land on another worker once, and is then served there).
pub fn client_steer(key: u32, client: &ClientKey, mac: &[u8; 6]) -> u32 {
    match client.inline_bytes() {
        Some(id) if client.is_client_id() => {
            dhcp_common::steering_hash(key, &id[..id.len().min(dhcp_common::identity::MAX_HASHED)])
        }
        _ => dhcp_common::steering_hash(key, mac),
    }
}

/// Maps looked up per message: foldhash, randomly seeded (SipHash costs more than the rest of
/// subnet selection).
pub(super) type FastMap<K, V> = HashMap<K, V, RandomState>;

/// Number of an interface named in the configuration (its position in
/// [`Shared::interfaces`]).
pub type InterfaceId = u16;

/// A subnet as the engine uses it.
#[derive(Debug)]
pub(super) struct SubnetRt {
    network: u32,
    mask: u32,
    pub(super) server_id: Ipv4Addr,
    /// Lease time in seconds.
    pub(super) lease_time: u32,
    /// Renewal (T1) and rebinding (T2) times in seconds.
    t1: u32,
    t2: u32,
    pools: Vec<PoolId>,
    pub(super) options: OptionTable,
    /// The options every reply from this subnet starts with.
    pub(super) head: ReplyHead,
    /// Relays trusted for this subnet besides the global ones.
    trusted: Vec<Cidr>,
    pub(super) limits: Option<SubnetLimits>,
}

impl SubnetRt {
    fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask == self.network
    }

    /// (lease time, T1, T2) in seconds.
    pub(super) fn times(&self) -> (u32, u32, u32) {
        (self.lease_time, self.t1, self.t2)
    }
}

impl SubnetRt {
    fn new(cfg: &Config, s: &Subnet, pools: Vec<PoolId>) -> SubnetRt {
        let lease_time = s.lease_time.unwrap_or(cfg.lease_time);
        let server_id = s.server_id.unwrap_or(cfg.server_id);
        let t1 = s.renewal_time.unwrap_or(lease_time / 2);
        let t2 = s.rebinding_time.unwrap_or(lease_time / 8 * 7);
        SubnetRt {
            network: s.network.into(),
            mask: s.mask(),
            server_id,
            lease_time,
            t1,
            t2,
            pools,
            options: subnet_options(s),
            head: ReplyHead::new(server_id, (lease_time, t1, t2)),
            trusted: s.trusted_relays.clone(),
            limits: s.limits.as_ref().or(cfg.limits.as_ref()).map(SubnetLimits::from),
        }
    }
}

/// A subnet's options, encoded in ascending code order: the mask and broadcast address always,
/// then what is set (a raw option replaces a named one of the same code).
fn subnet_options(s: &Subnet) -> OptionTable {
    let o = &s.options;
    let mut entries: Vec<(u8, Vec<u8>)> = vec![
        (options::code::SUBNET_MASK, s.mask().to_be_bytes().into()),
        (options::code::BROADCAST_ADDRESS, s.broadcast().octets().into()),
    ];
    let ips = [
        (options::code::ROUTER, &o.routers),
        (options::code::DNS_SERVERS, &o.dns_servers),
        (options::code::NTP_SERVERS, &o.ntp_servers),
    ];
    for (code, list) in ips {
        if !list.is_empty() {
            entries.push((code, list.iter().flat_map(|ip| ip.octets()).collect()));
        }
    }
    if let Some(d) = &o.domain_name {
        entries.push((options::code::DOMAIN_NAME, d.as_bytes().into()));
    }
    if let Some(mtu) = o.mtu {
        entries.push((options::code::INTERFACE_MTU, mtu.to_be_bytes().into()));
    }
    for (code, v) in &o.raw {
        entries.retain(|(c, _)| c != code);
        entries.push((*code, v.clone()));
    }
    entries.sort_by_key(|(c, _)| *c);
    OptionTable::new(entries.iter().map(|(c, v)| (*c, &v[..])))
}

/// Reservations as they are compiled.
#[derive(Default)]
struct Reservations {
    by_id: FastMap<ClientKey, (Ipv4Addr, u16)>,
    by_mac: FastMap<[u8; 6], (Ipv4Addr, u16)>,
    by_ip: FastMap<Ipv4Addr, (ClientMatch, usize)>,
    ports: PortReservations,
}

impl Reservations {
    fn add(&mut self, s: &Subnet, sid: u16) {
        for r in &s.reservations {
            match &r.client {
                ClientMatch::Mac(m) => self.by_mac.insert(*m, (r.ip, sid)),
                ClientMatch::ClientId(id) => self.by_id.insert(ClientKey::from_client_id(id), (r.ip, sid)),
                ClientMatch::CircuitId(_) | ClientMatch::RemoteId(_) => None,
            };
            let slot = self.by_ip.len();
            self.by_ip.insert(r.ip, (r.client.clone(), slot));
        }
        self.ports.add(s, sid);
    }
}

/// Why no link was found for a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Unserved {
    /// No configured subnet matches.
    NoSubnet,
    /// Relayed by an agent not among the trusted relays.
    UntrustedRelay,
}

/// Candidate subnets of the link a message came from (several on a shared network).
#[derive(Debug, Clone, Copy)]
pub(super) struct Link<'a> {
    one: [u16; 1],
    many: Option<&'a [u16]>,
}

impl<'a> Link<'a> {
    fn one(id: u16) -> Link<'a> {
        Link { one: [id], many: None }
    }

    fn many(ids: &'a [u16]) -> Link<'a> {
        Link { one: [0], many: Some(ids) }
    }

    pub(super) fn ids(&self) -> &[u16] {
        self.many.unwrap_or(&self.one)
    }
}

/// Configuration and address space shared by all engines.
#[derive(Debug)]
pub struct Shared {
    subnets: Vec<SubnetRt>,
    space: AddressSpace,
    server_ids: Vec<Ipv4Addr>,
    interfaces: Vec<String>,
    /// Subnets by (interface, VLAN); `None` interface = the default link.
    links: FastMap<(Option<InterfaceId>, Option<u16>), Vec<u16>>,
    res_by_id: FastMap<ClientKey, (Ipv4Addr, u16)>,
    res_by_mac: FastMap<[u8; 6], (Ipv4Addr, u16)>,
    /// Reserved address → its client, and its slot in `res_held`.
    res_by_ip: FastMap<Ipv4Addr, (ClientMatch, usize)>,
    /// Whether each reserved address is held (by the one client that took it): a reservation
    /// by MAC must not go to every client identifier that comes with that MAC.
    res_held: Box<[AtomicBool]>,
    /// Relays trusted for every subnet.
    trusted: Vec<Cidr>,
    /// Whether any trusted relay is configured (if none, every relay is trusted).
    trust_configured: bool,
    pub(super) limits: LimitTable,
    pub(super) decline: DeclinePolicy,
    pub(super) offer_timeout: Seconds,
    pub(super) decline_probation: Seconds,
    pub(super) authoritative: bool,
    pub(super) rapid_commit: bool,
    workers: u32,
    /// Key of the steering hash (`dhcp_common::steering_hash`) that picks each client's worker.
    steering_key: u32,
    /// Port reservations, classes, the lease board.
    pub(super) isp: Isp,
    /// In a cluster: liveness, the grant limit, the outgoing events. `None`: alone.
    cluster: Option<Arc<ClusterView>>,
}

/// The ISP features' shared parts.
#[derive(Debug)]
pub(super) struct Isp {
    /// Reservations by subscriber port (option 82).
    pub(super) ports: PortReservations,
    pub(super) classes: ClassTable,
    /// Class mask of each pool, by [`PoolId`] (0: any client).
    pool_masks: Vec<ClassMask>,
    /// Leases by address for leasequery; `None` when leasequery is off.
    board: Option<LeaseBoard>,
    /// Board slots of reserved addresses outside the pools (after the pool addresses').
    board_extra: FastMap<Ipv4Addr, usize>,
    /// Leasequery clients besides the global trusted relays.
    leasequery_from: Vec<Cidr>,
}

impl Isp {
    /// Pools get their class masks in [`PoolId`] order (subnets, then their pools); the board
    /// covers every pool address and every reserved address outside the pools.
    fn new<'a>(
        cfg: &Config,
        space: &AddressSpace,
        ports: PortReservations,
        reserved: impl Iterator<Item = &'a Ipv4Addr>,
    ) -> Isp {
        let classes = ClassTable::new(cfg);
        let pool_masks = cfg.subnets.iter().flat_map(|s| classes.pool_masks(s)).collect();
        let mut board_extra = FastMap::default();
        let mut board = None;
        if cfg.leasequery {
            for ip in reserved.filter(|ip| !space.in_pool(**ip)) {
                board_extra.insert(*ip, space.capacity() + board_extra.len());
            }
            board = Some(LeaseBoard::new(space.capacity() + board_extra.len()));
        }
        let leasequery_from = cfg.leasequery_from.clone();
        Isp { ports: ports.finish(), classes, pool_masks, board, board_extra, leasequery_from }
    }
}

impl Shared {
    /// Checks and compiles a configuration for `workers` engines.
    pub fn new(cfg: &Config, workers: u32) -> Result<Shared, ConfigError> {
        cfg.validate()?;
        let mut all_pools = Vec::new();
        let mut interfaces: Vec<String> = Vec::new();
        let mut links: FastMap<(Option<InterfaceId>, Option<u16>), Vec<u16>> = FastMap::default();
        let mut subnets = Vec::with_capacity(cfg.subnets.len());
        let mut server_ids = vec![cfg.server_id];
        let mut res = Reservations::default();
        for (sid, s) in cfg.subnets.iter().enumerate() {
            let sid = sid as u16;
            let pools: Vec<PoolId> = s
                .pools
                .iter()
                .map(|p| {
                    all_pools.push(*p);
                    all_pools.len() as PoolId - 1
                })
                .collect();
            let iface = s.interface.as_ref().map(|name| match interfaces.iter().position(|n| n == name) {
                Some(i) => i as InterfaceId,
                None => {
                    interfaces.push(name.clone());
                    interfaces.len() as InterfaceId - 1
                }
            });
            links.entry((iface, s.vlan)).or_default().push(sid);
            let rt = SubnetRt::new(cfg, s, pools);
            if !server_ids.contains(&rt.server_id) {
                server_ids.push(rt.server_id);
            }
            res.add(s, sid);
            subnets.push(rt);
        }
        if cfg.server_id.is_unspecified() {
            server_ids.retain(|ip| !ip.is_unspecified());
        }
        let space = match &cfg.cluster {
            Some(c) => AddressSpace::clustered(&all_pools, cfg.decline_max_percent, c.block_size),
            None => AddressSpace::with_decline_cap(&all_pools, cfg.decline_max_percent),
        };
        for ip in res.by_ip.keys() {
            space.reserve(*ip);
        }
        let isp = Isp::new(cfg, &space, core::mem::take(&mut res.ports), res.by_ip.keys());
        let trust_configured =
            !cfg.trusted_relays.is_empty() || cfg.subnets.iter().any(|s| !s.trusted_relays.is_empty());
        Ok(Shared {
            subnets,
            space,
            server_ids,
            interfaces,
            links,
            res_held: (0..res.by_ip.len()).map(|_| AtomicBool::new(false)).collect(),
            res_by_id: res.by_id,
            res_by_mac: res.by_mac,
            res_by_ip: res.by_ip,
            trusted: cfg.trusted_relays.clone(),
            trust_configured,
            limits: LimitTable::new(crate::lease::random_seed()),
            decline: cfg.decline,
            offer_timeout: cfg.offer_timeout,
            decline_probation: cfg.decline_probation,
            authoritative: cfg.authoritative,
            rapid_commit: cfg.rapid_commit,
            workers: workers.max(1),
            steering_key: 0,
            isp,
            cluster: cfg.cluster.as_ref().map(|c| Arc::new(ClusterView::new(c, cfg.longest_lease()))),
        })
    }

    /// The cluster view (for the cluster thread and the engines); `None` alone.
    #[inline]
    pub fn cluster(&self) -> Option<&Arc<ClusterView>> {
        self.cluster.as_ref()
    }

    /// This configuration, replacing `old` at a reload, with `old`'s cluster state: the same
    /// [`ClusterView`] (liveness, grant limit, the events not yet published: the cluster thread
    /// keeps its handle) and the blocks of unchanged pools. Refused if `[cluster]` itself
    /// changed (node, peers, block size, bucket, or whether there is one): that needs a restart.
    pub fn carrying_cluster(mut self, old: &Shared, cfg: &Config, old_cfg: &Config) -> Result<Shared, ConfigError> {
        if cfg.cluster != old_cfg.cluster {
            let why = "[cluster] changed: takes a restart (the other nodes rely on this node's blocks and name)";
            return Err(ConfigError { path: "cluster".into(), reason: why.into() });
        }
        if cfg.cluster.is_some() && cfg.longest_lease() != old_cfg.longest_lease() {
            let why = "in a cluster the longest lease time changes only by restarting every node (the fence rule \
                       needs the same one on all of them)";
            return Err(ConfigError { path: "lease_time".into(), reason: why.into() });
        }
        if let Some(view) = old.cluster.clone() {
            self.space.carry_blocks(&old.space);
            self.cluster = Some(view);
        }
        Ok(self)
    }

    /// Each pool's id and range, in [`PoolId`] order (the cluster thread names blocks by them).
    pub fn pools(&self) -> impl Iterator<Item = (PoolId, Ipv4Addr, Ipv4Addr)> + '_ {
        (0..self.space.pools() as PoolId).map(|p| {
            let (a, b) = self.space.pool_range(p);
            (p, a, b)
        })
    }

    /// The worker that owns a client known by its key and MAC (a lease from the journal or from
    /// another node's event), by this installation's steering key: see [`client_steer`].
    pub fn worker_of_client(&self, client: &ClientKey, mac: &[u8; 6]) -> usize {
        dhcp_common::owner(client_steer(self.steering_key, client, mac), self.workers) as usize
    }

    /// The address space (address states and free lists).
    pub fn space(&self) -> &AddressSpace {
        &self.space
    }

    /// Interface names in the configuration, in [`InterfaceId`] order.
    pub fn interfaces(&self) -> &[String] {
        &self.interfaces
    }

    pub fn interface_id(&self, name: &str) -> Option<InterfaceId> {
        self.interfaces.iter().position(|n| n == name).map(|i| i as InterfaceId)
    }

    /// Our server identifiers (option 54 values we answer to).
    pub fn server_ids(&self) -> &[Ipv4Addr] {
        &self.server_ids
    }

    /// The same configuration with the steering hash keyed by `key` (a random one per
    /// installation: a flood of made-up identities cannot be aimed at one worker).
    pub fn with_steering_key(mut self, key: u32) -> Shared {
        self.steering_key = key;
        self
    }

    pub fn steering_key(&self) -> u32 {
        self.steering_key
    }

    pub fn workers(&self) -> u32 {
        self.workers
    }

    /// The worker that owns the client of a message: the steering contract's
    /// [`dhcp_common::owner_of_message`], the choice the XDP program and the UDP path's
    /// classic-BPF filter make.
    pub fn worker_of(&self, msg: &[u8]) -> usize {
        dhcp_common::owner_of_message(msg, self.workers, self.steering_key) as usize
    }

    pub(super) fn subnet(&self, sid: u16) -> &SubnetRt {
        &self.subnets[sid as usize]
    }

    /// Each subnet's network, prefix length and pools, in configuration order (for statistics).
    pub fn subnet_pools(&self) -> impl Iterator<Item = (Ipv4Addr, u8, &[PoolId])> + '_ {
        self.subnets.iter().map(|s| (Ipv4Addr::from(s.network), s.mask.count_ones() as u8, &s.pools[..]))
    }

    /// The subnet containing `ip`, if any.
    pub fn subnet_of(&self, ip: Ipv4Addr) -> Option<u16> {
        self.subnets.iter().position(|s| s.contains(ip)).map(|i| i as u16)
    }

    pub(super) fn subnet_in_link(&self, link: &Link<'_>, ip: Ipv4Addr) -> Option<u16> {
        link.ids().iter().copied().find(|&sid| self.subnets[sid as usize].contains(ip))
    }

    pub(super) fn is_our_server_id(&self, ip: Ipv4Addr) -> bool {
        self.server_ids.contains(&ip)
    }

    /// Subnet choice. Relayed messages (`giaddr` set): option 118 (RFC 3011), then link
    /// selection 82.5 (RFC 3527), then `giaddr`, and only from a trusted relay. Directly
    /// attached clients: the receiving interface and VLAN, then the default link; what they
    /// say of their own link (118, 82) is not believed (a client on one VLAN must not draw on
    /// another's pool).
    pub(super) fn select_link(
        &self,
        ingress: &Ingress,
        pkt: &dhcp::DhcpPacket<&[u8]>,
        opts: &options::Options<'_>,
        relay_info: Option<&[u8]>,
    ) -> Result<Link<'_>, Unserved> {
        let gi = pkt.giaddr();
        if gi.is_unspecified() {
            let keys =
                [(ingress.interface, ingress.vlan), (ingress.interface, None), (None, ingress.vlan), (None, None)];
            return keys.iter().find_map(|k| self.links.get(k)).map(|ids| Link::many(ids)).ok_or(Unserved::NoSubnet);
        }
        let chosen = opts.subnet_selection.or_else(|| relay_info.and_then(options::link_selection)).unwrap_or(gi);
        let sid = self.subnet_of(chosen).ok_or(Unserved::NoSubnet)?;
        if !self.relay_trusted(*ingress.src.ip(), sid) {
            return Err(Unserved::UntrustedRelay);
        }
        Ok(Link::one(sid))
    }

    /// Whether a relay (the datagram's source) is trusted for subnet `sid`.
    fn relay_trusted(&self, relay: Ipv4Addr, sid: u16) -> bool {
        !self.trust_configured
            || self.trusted.iter().chain(&self.subnets[sid as usize].trusted).any(|c| c.contains(relay))
    }

    /// The limits of a message's client on `sid`, and its key's cell: `None` when the subnet
    /// has no limits. The key is read from what the ISP controls (see `LimitKey`); a message
    /// without it is known by its `chaddr`.
    pub(super) fn limit_cell(
        &self,
        sid: u16,
        ingress: &Ingress,
        relay_info: Option<&[u8]>,
        chaddr: &[u8; 6],
    ) -> Option<(SubnetLimits, Cell)> {
        let l = self.subnets[sid as usize].limits?;
        let sub = |code| relay_info.and_then(|ri| options::relay_sub_option(ri, code));
        let (vlan, iface) = (ingress.vlan.map(u16::to_be_bytes), ingress.interface.map(u16::to_be_bytes));
        let relay = ingress.src.ip().octets();
        let key: Option<&[u8]> = match l.key {
            LimitKey::CircuitId => sub(options::relay::CIRCUIT_ID),
            LimitKey::RemoteId => sub(options::relay::REMOTE_ID),
            LimitKey::Relay => (!ingress.src.ip().is_unspecified()).then_some(&relay[..]),
            LimitKey::Vlan => vlan.as_ref().map(|v| &v[..]),
            LimitKey::Interface => iface.as_ref().map(|v| &v[..]),
            LimitKey::Chaddr => None,
        };
        let cell = match key {
            Some(k) => self.limits.cell(l.key, k),
            None => self.limits.cell(LimitKey::Chaddr, chaddr),
        };
        Some((l, cell))
    }

    /// The reservation of a client, by client identifier then by MAC: (address, subnet).
    fn reservation(&self, key: &ClientKey, mac: &[u8; 6]) -> Option<(Ipv4Addr, u16)> {
        if self.res_by_id.is_empty() && self.res_by_mac.is_empty() {
            return None;
        }
        if key.is_client_id() {
            if let Some(r) = self.res_by_id.get(key) {
                return Some(*r);
            }
        }
        self.res_by_mac.get(mac).copied()
    }

    /// For a reserved address: whether it is reserved for this client. `None` if not reserved.
    pub(super) fn reserved_ip_owned_by(&self, ip: Ipv4Addr, key: &ClientKey, mac: &[u8; 6]) -> Option<bool> {
        let (owner, _) = self.res_by_ip.get(&ip)?;
        Some(match owner {
            ClientMatch::Mac(m) => m == mac,
            ClientMatch::ClientId(id) => ClientKey::from_client_id(id) == *key,
            // A port's address is taken through `allocate` (see `ports`).
            ClientMatch::CircuitId(_) | ClientMatch::RemoteId(_) => false,
        })
    }

    /// Takes a reserved address for its client, if nobody (another client identifier with the
    /// reserved MAC, say) holds it already.
    fn take_reserved(&self, ip: Ipv4Addr) -> bool {
        self.res_by_ip.get(&ip).is_some_and(|&(_, slot)| {
            self.res_held[slot].compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).is_ok()
        })
    }

    /// Uncounts a record that ended from its limit cell (0: it counted nowhere).
    pub(super) fn unhold(&self, cell: u32) {
        if cell != 0 {
            self.limits.release(Cell(cell));
        }
    }

    /// Gives an address back: a pool address to its pool, a reserved one to its reservation.
    pub(super) fn free(&self, ip: Ipv4Addr) {
        match self.res_by_ip.get(&ip) {
            Some(&(_, slot)) => self.res_held[slot].store(false, Ordering::Release),
            None => {
                self.space.release(ip);
            }
        }
    }

    /// Whether `ip` is handed out here at all (a pool, reserved or port-reserved address): a
    /// lease on any other address (left by a reload) is not renewed.
    pub(super) fn serves(&self, ip: Ipv4Addr) -> bool {
        self.space.in_pool(ip) || self.is_reserved(ip) || self.isp.ports.holds(ip, 0).is_some()
    }

    /// Whether `ip` is a reserved address.
    fn is_reserved(&self, ip: Ipv4Addr) -> bool {
        !self.res_by_ip.is_empty() && self.res_by_ip.contains_key(&ip)
    }

    /// Picks an address for a new client on `link`: its reservation (if no other client holds
    /// it), else the address it asked for if free, else any free address of the link's pools,
    /// else the oldest probation of one of them. The address is held on return.
    pub(super) fn allocate(
        &self,
        link: &Link<'_>,
        key: ClientKey,
        mac: &[u8; 6],
        requested: Option<Ipv4Addr>,
        facts: (Option<&[u8]>, ClassMask),
    ) -> Option<(Ipv4Addr, u16)> {
        let (relay_info, classes) = facts;
        if let Some(taken) = self.take_port(link, &key, relay_info) {
            return Some(taken);
        }
        if let Some((ip, sid)) = self.reservation(&key, mac) {
            if link.ids().contains(&sid) && self.take_reserved(ip) {
                return Some((ip, sid));
            }
        }
        if let Some(ip) = requested {
            if let Some(sid) = self.subnet_in_link(link, ip) {
                if !self.is_reserved(ip) && self.pool_allows(ip, classes) && self.space.claim(ip) == Claim::Taken {
                    return Some((ip, sid));
                }
            }
        }
        let pools = || {
            link.ids()
                .iter()
                .flat_map(|&sid| self.subnets[sid as usize].pools.iter().map(move |&p| (p, sid)))
                .filter(move |&(p, _)| pool_allows(self.isp.pool_masks[p as usize], classes))
        };
        pools()
            .find_map(|(pool, sid)| self.space.take_free(pool).map(|ip| (ip, sid)))
            .or_else(|| pools().find_map(|(pool, sid)| self.space.reclaim_declined(pool).map(|ip| (ip, sid))))
    }

    /// Takes one specific address for a client (its reservation, or a free pool address).
    pub(super) fn take_specific(&self, ip: Ipv4Addr, key: ClientKey, mac: &[u8; 6]) -> bool {
        match self.reserved_ip_owned_by(ip, &key, mac) {
            Some(mine) => mine && self.take_reserved(ip),
            None => self.space.claim(ip) == Claim::Taken,
        }
    }
}

/// The ISP features' part: port reservations, class-kept pools, the lease board, leasequery.
impl Shared {
    /// The reservation of the message's port (option 82 from a trusted relay), taken for the
    /// client: another client holding it loses it at once (its board entry goes too).
    fn take_port(&self, link: &Link<'_>, key: &ClientKey, relay_info: Option<&[u8]>) -> Option<(Ipv4Addr, u16)> {
        let (n, ip, sid) = self.isp.ports.lookup(relay_info)?;
        if !link.ids().contains(&sid) {
            return None;
        }
        if let Took::Moved(prev) = self.isp.ports.take(n, holder_hash(key)) {
            self.unpublish(ip, prev);
        }
        Some((ip, sid))
    }

    /// Whether a client of classes `classes` may have `ip` (a pool kept for other classes:
    /// no; an address outside the pools: yes).
    pub(super) fn pool_allows(&self, ip: Ipv4Addr, classes: ClassMask) -> bool {
        self.isp.classes.is_empty()
            || self.space.pool_of(ip).is_none_or(|p| pool_allows(self.isp.pool_masks[p as usize], classes))
    }

    /// Ends `key`'s hold on `ip`: its board entry, and the address back to its pool or
    /// reservation (a port's address only if `key` still holds it).
    pub(super) fn end_hold(&self, ip: Ipv4Addr, key: &ClientKey) {
        let holder = holder_hash(key);
        self.unpublish(ip, holder);
        if !self.isp.ports.free(ip, holder) {
            self.free(ip);
        }
    }

    /// Whether `key`'s record of `ip` is stale: a port's address that another client took over.
    pub(super) fn port_stale(&self, ip: Ipv4Addr, key: &ClientKey) -> bool {
        self.isp.ports.holds(ip, holder_hash(key)) == Some(false)
    }

    /// Puts back a port's holder from the journal (see [`PortReservations::restore`]).
    pub(super) fn restore_port(&self, ip: Ipv4Addr, key: &ClientKey) -> Option<bool> {
        self.isp.ports.restore(ip, holder_hash(key))
    }

    fn board_index(&self, ip: Ipv4Addr) -> Option<usize> {
        self.space.index(ip).or_else(|| self.isp.board_extra.get(&ip).copied())
    }

    /// Whether leasequery is on (and the board kept).
    pub(super) fn leasequery_on(&self) -> bool {
        self.isp.board.is_some()
    }

    /// Whether `ip` has a place on the board: a pool or reserved address, which we are
    /// authoritative for.
    pub(super) fn on_board(&self, ip: Ipv4Addr) -> bool {
        self.board_index(ip).is_some()
    }

    /// Publishes a lease (no-op without leasequery).
    pub(super) fn publish(&self, ip: Ipv4Addr, e: &Entry) {
        if let (Some(b), Some(i)) = (&self.isp.board, self.board_index(ip)) {
            b.publish(i, e);
        }
    }

    /// Ends the published lease of `holder` on `ip` (0: of whoever).
    pub(super) fn unpublish(&self, ip: Ipv4Addr, holder: u64) {
        if let (Some(b), Some(i)) = (&self.isp.board, self.board_index(ip)) {
            b.clear(i, holder);
        }
    }

    /// The lease published on `ip`.
    pub(super) fn published(&self, ip: Ipv4Addr) -> Option<Entry> {
        self.isp.board.as_ref()?.read(self.board_index(ip)?)
    }

    /// Relay agent information (option 82) published with the live lease on `ip`: kept on
    /// the lease board only (leasequery on). For the control API, not the packet path.
    pub fn relay_info_of(&self, ip: Ipv4Addr) -> Option<Vec<u8>> {
        let e = self.published(ip).filter(|e| e.holder != 0)?;
        e.relay_info().map(<[u8]>::to_vec)
    }

    /// Addresses whose live published lease came through a relay whose sub-option `sub`
    /// (1: circuit id, 2: remote id) is `id`; at most `limit`, in address order. A scan of the
    /// board for the control API; `None` without the board.
    pub fn leases_by_relay_id(&self, sub: u8, id: &[u8], limit: usize) -> Option<Vec<Ipv4Addr>> {
        self.isp.board.as_ref()?;
        let pools = self.subnets.iter().flat_map(|s| s.pools.iter()).map(|&p| self.space.pool_range(p));
        let pooled = pools.flat_map(|(a, b)| u32::from(a)..=u32::from(b)).map(Ipv4Addr::from);
        let matches = |ip: &Ipv4Addr| {
            let e = self.published(*ip).filter(|e| e.holder != 0);
            e.is_some_and(|e| e.relay_info().is_some_and(|ri| options::relay_sub_option(ri, sub) == Some(id)))
        };
        // Only the matches are gathered and ordered, never the whole board.
        let mut found: Vec<Ipv4Addr> = pooled.chain(self.isp.board_extra.keys().copied()).filter(matches).collect();
        found.sort_unstable();
        found.truncate(limit);
        Some(found)
    }

    /// Bytes of the lease board (0 without leasequery).
    pub fn lease_board_bytes(&self) -> usize {
        self.isp.board.as_ref().map_or(0, LeaseBoard::bytes)
    }

    /// Whether `src` may send DHCPLEASEQUERY: listed in `leasequery_from` or a global
    /// trusted relay.
    pub(super) fn leasequery_allowed(&self, src: Ipv4Addr) -> bool {
        self.isp.leasequery_from.iter().chain(&self.trusted).any(|c| c.contains(src))
    }

    /// Whether a relay is trusted for some subnet (its option 82 may place the client in a
    /// class before the subnet is known).
    pub(super) fn relay_trusted_anywhere(&self, relay: Ipv4Addr) -> bool {
        !self.trust_configured
            || self.trusted.iter().chain(self.subnets.iter().flat_map(|s| &s.trusted)).any(|c| c.contains(relay))
    }
}
