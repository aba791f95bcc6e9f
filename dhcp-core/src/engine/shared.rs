//! What all workers share: the compiled configuration (subnets, options, reservations) and the
//! lock-free address space. Read-only after start-up except the address states, which are
//! atomic.

use super::{Ingress, Seconds};
use crate::config::{ClientMatch, Config, ConfigError};
use crate::lease::space::PoolId;
use crate::lease::{AddressSpace, Claim, ClientKey};
use crate::wire::{dhcp, options};
use core::net::Ipv4Addr;
use foldhash::fast::RandomState;
use std::collections::HashMap;

/// Maps looked up per message: foldhash, randomly seeded (SipHash costs more than the rest of
/// subnet selection).
type FastMap<K, V> = HashMap<K, V, RandomState>;

/// Number of an interface named in the configuration (its position in
/// [`Shared::interfaces`]).
pub type InterfaceId = u16;

/// Options of one subnet, encoded once at start-up.
#[derive(Debug)]
pub(super) struct OptionTable {
    /// `(code, value)` in ascending code order.
    entries: Vec<(u8, Box<[u8]>)>,
    /// Position + 1 in `entries` by code; 0 = not configured.
    index: [u16; 256],
}

impl OptionTable {
    pub(super) fn get(&self, code: u8) -> Option<&[u8]> {
        match self.index[code as usize] {
            0 => None,
            n => Some(&self.entries[n as usize - 1].1),
        }
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (u8, &[u8])> {
        self.entries.iter().map(|(c, v)| (*c, &v[..]))
    }
}

/// A subnet as the engine uses it.
#[derive(Debug)]
pub(super) struct SubnetRt {
    network: u32,
    mask: u32,
    pub(super) server_id: Ipv4Addr,
    lease_time: u32,
    t1: u32,
    t2: u32,
    pools: Vec<PoolId>,
    pub(super) options: OptionTable,
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
    res_by_ip: FastMap<Ipv4Addr, ClientMatch>,
    pub(super) offer_timeout: Seconds,
    pub(super) decline_probation: Seconds,
    pub(super) authoritative: bool,
    pub(super) rapid_commit: bool,
    workers: u32,
    /// Key of the steering hash (`dhcp_common::steering_hash`) that picks each client's worker.
    steering_key: u32,
}

fn encode_ips(ips: &[Ipv4Addr]) -> Box<[u8]> {
    ips.iter().flat_map(|ip| ip.octets()).collect()
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
        let mut res_by_id = FastMap::default();
        let mut res_by_mac = FastMap::default();
        let mut res_by_ip = FastMap::default();
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
            let server_id = s.server_id.unwrap_or(cfg.server_id);
            if !server_ids.contains(&server_id) {
                server_ids.push(server_id);
            }
            let lease_time = s.lease_time.unwrap_or(cfg.lease_time);
            let o = &s.options;
            let mut entries: Vec<(u8, Box<[u8]>)> = vec![
                (options::code::SUBNET_MASK, s.mask().to_be_bytes().into()),
                (options::code::BROADCAST_ADDRESS, s.broadcast().octets().into()),
            ];
            if !o.routers.is_empty() {
                entries.push((options::code::ROUTER, encode_ips(&o.routers)));
            }
            if !o.dns_servers.is_empty() {
                entries.push((options::code::DNS_SERVERS, encode_ips(&o.dns_servers)));
            }
            if let Some(d) = &o.domain_name {
                entries.push((options::code::DOMAIN_NAME, d.as_bytes().into()));
            }
            if let Some(mtu) = o.mtu {
                entries.push((options::code::INTERFACE_MTU, mtu.to_be_bytes().into()));
            }
            if !o.ntp_servers.is_empty() {
                entries.push((options::code::NTP_SERVERS, encode_ips(&o.ntp_servers)));
            }
            for (code, v) in &o.raw {
                entries.retain(|(c, _)| c != code);
                entries.push((*code, v.clone().into()));
            }
            entries.sort_by_key(|(c, _)| *c);
            let mut index = [0u16; 256];
            for (i, (c, _)) in entries.iter().enumerate() {
                index[*c as usize] = i as u16 + 1;
            }
            for r in &s.reservations {
                match &r.client {
                    ClientMatch::Mac(m) => res_by_mac.insert(*m, (r.ip, sid)),
                    ClientMatch::ClientId(id) => res_by_id.insert(ClientKey::from_client_id(id), (r.ip, sid)),
                };
                res_by_ip.insert(r.ip, r.client.clone());
            }
            subnets.push(SubnetRt {
                network: s.network.into(),
                mask: s.mask(),
                server_id,
                lease_time,
                t1: s.renewal_time.unwrap_or(lease_time / 2),
                t2: s.rebinding_time.unwrap_or(lease_time / 8 * 7),
                pools,
                options: OptionTable { entries, index },
            });
        }
        if cfg.server_id.is_unspecified() {
            server_ids.retain(|ip| !ip.is_unspecified());
        }
        let space = AddressSpace::new(&all_pools);
        for ip in res_by_ip.keys() {
            space.reserve(*ip);
        }
        Ok(Shared {
            subnets,
            space,
            server_ids,
            interfaces,
            links,
            res_by_id,
            res_by_mac,
            res_by_ip,
            offer_timeout: cfg.offer_timeout,
            decline_probation: cfg.decline_probation,
            authoritative: cfg.authoritative,
            rapid_commit: cfg.rapid_commit,
            workers: workers.max(1),
            steering_key: 0,
        })
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

    /// Subnet choice: option 118 (RFC 3011), then link selection 82.5 (RFC 3527), then giaddr,
    /// then the receiving interface and VLAN, then the default link.
    pub(super) fn select_link(
        &self,
        ingress: &Ingress,
        pkt: &dhcp::DhcpPacket<&[u8]>,
        opts: &options::Options<'_>,
        relay_info: Option<&[u8]>,
    ) -> Option<Link<'_>> {
        if let Some(a) = opts.subnet_selection {
            return self.subnet_of(a).map(Link::one);
        }
        if let Some(a) = relay_info.and_then(options::link_selection) {
            return self.subnet_of(a).map(Link::one);
        }
        let gi = pkt.giaddr();
        if !gi.is_unspecified() {
            return self.subnet_of(gi).map(Link::one);
        }
        let keys = [(ingress.interface, ingress.vlan), (ingress.interface, None), (None, ingress.vlan), (None, None)];
        keys.iter().find_map(|k| self.links.get(k)).map(|ids| Link::many(ids))
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
        let owner = self.res_by_ip.get(&ip)?;
        Some(match owner {
            ClientMatch::Mac(m) => m == mac,
            ClientMatch::ClientId(id) => ClientKey::from_client_id(id) == *key,
        })
    }

    /// Picks an address for a new client on `link`: its reservation, else the address it asked
    /// for if free, else any free address of the link's pools. The address is held on return.
    pub(super) fn allocate(
        &self,
        link: &Link<'_>,
        key: ClientKey,
        mac: &[u8; 6],
        requested: Option<Ipv4Addr>,
    ) -> Option<(Ipv4Addr, u16)> {
        if let Some((ip, sid)) = self.reservation(&key, mac) {
            if link.ids().contains(&sid) {
                return Some((ip, sid));
            }
        }
        if let Some(ip) = requested {
            if let Some(sid) = self.subnet_in_link(link, ip) {
                let reserved = !self.res_by_ip.is_empty() && self.res_by_ip.contains_key(&ip);
                if !reserved && self.space.claim(ip) == Claim::Taken {
                    return Some((ip, sid));
                }
            }
        }
        for &sid in link.ids() {
            for &pool in &self.subnets[sid as usize].pools {
                if let Some(ip) = self.space.take_free(pool) {
                    return Some((ip, sid));
                }
            }
        }
        None
    }

    /// Takes one specific address for a client (its reservation, or a free pool address).
    pub(super) fn take_specific(&self, ip: Ipv4Addr, key: ClientKey, mac: &[u8; 6]) -> bool {
        match self.reserved_ip_owned_by(ip, &key, mac) {
            Some(mine) => mine,
            None => self.space.claim(ip) == Claim::Taken,
        }
    }
}
