//! The server's configuration model: subnets, pools, reservations, options and times, and the
//! semantic checks that keep the lease store safe (pools that overlap would let two clients hold
//! one address). Reading it from TOML or the command line is the server binary's job; this
//! module says what a valid configuration is.

mod cluster;
mod isp;

pub use cluster::{ClusterConfig, MAX_BLOCK_SIZE, MAX_PEERS, MIN_BLOCK_SIZE};

use core::fmt;
use core::net::Ipv4Addr;

/// A whole server configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Server identifier (option 54) for subnets that do not set their own.
    pub server_id: Ipv4Addr,
    /// NAK requests for addresses we have no record of (RFC 2131 §4.3.2 leaves this to the
    /// administrator: only one authoritative server per network).
    pub authoritative: bool,
    /// Answer a DISCOVER carrying option 80 with an immediate ACK (RFC 4039).
    pub rapid_commit: bool,
    /// Seconds an offered address is held for the client before it returns to the pool.
    pub offer_timeout: u32,
    /// Seconds a declined address stays out of the pool (RFC 2131 §3.1 step 5: the client found
    /// it in use).
    pub decline_probation: u32,
    /// Default lease time in seconds (option 51) for subnets that do not set their own.
    pub lease_time: u32,
    /// What a DECLINE does (RFC 2131 §4.3.3).
    pub decline: DeclinePolicy,
    /// Most of a pool that may sit in decline probation, in percent: beyond it the oldest
    /// probation ends early (two packets per address must not empty a pool for a day).
    pub decline_max_percent: u8,
    /// Relay agents whose relayed messages are served (their `giaddr` selects the subnet, their
    /// option 82 and 118 are honoured, replies go to them), for every subnet; each subnet may
    /// add its own. Empty here and in a subnet: any relay is trusted.
    pub trusted_relays: Vec<Cidr>,
    /// Limits per subscriber key for subnets that do not set their own.
    pub limits: Option<Limits>,
    pub subnets: Vec<Subnet>,
    /// Client classes, in order of precedence (the first class setting an option wins).
    pub classes: Vec<ClientClass>,
    /// Answer DHCPLEASEQUERY (RFC 4388) from `leasequery_from` and the global trusted relays;
    /// keeps a lease board of [`LEASE_BOARD_BYTES`] per pool or reserved address.
    pub leasequery: bool,
    /// Queriers allowed besides the global trusted relays.
    pub leasequery_from: Vec<Cidr>,
    /// Several servers sharing the pools (`[cluster]`); `None`: this server alone.
    pub cluster: Option<ClusterConfig>,
}

/// Memory of the lease board per pool or reserved address (see `leasequery`).
pub const LEASE_BOARD_BYTES: usize = 128;
/// Most addresses a lease board may cover (512 MiB).
pub const MAX_LEASE_BOARD_ADDRESSES: u64 = 1 << 22;
/// Most client classes (membership is one 64-bit mask per message).
pub const MAX_CLASSES: usize = 64;

/// A client class: clients whose messages match every given field belong to it (at least one
/// field is required). A class adds or overrides options, and pools or subnets may be kept for
/// certain classes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientClass {
    pub name: String,
    /// Vendor class identifier (option 60) starts with these bytes.
    pub vendor_class: Option<Vec<u8>>,
    /// User class (option 77) is these bytes, or one of its RFC 3004 instances is.
    pub user_class: Option<Vec<u8>>,
    /// Relay agent circuit id (82.1) from a trusted relay is these bytes.
    pub circuit_id: Option<Vec<u8>>,
    /// Relay agent remote id (82.2) from a trusted relay is these bytes.
    pub remote_id: Option<Vec<u8>>,
    /// Ethernet `chaddr` starts with these bytes (1 to 6; 3 is an OUI).
    pub chaddr_prefix: Option<Vec<u8>>,
    /// Options given to members, by code, sent whether requested or not, before and instead of
    /// the subnet's own of the same code.
    pub options: Vec<(u8, Vec<u8>)>,
}

/// What a DECLINE does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeclinePolicy {
    /// The declined address waits `decline_probation` seconds out of the pool (RFC 2131).
    #[default]
    Probation,
    /// DECLINEs are counted and ignored: the lease stays as it was (networks where clients
    /// cannot be trusted to report conflicts).
    Ignore,
}

/// An IPv4 prefix (`address/length`): a trusted relay or a range of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub network: Ipv4Addr,
    pub prefix_len: u8,
}

impl core::str::FromStr for Cidr {
    type Err = String;

    /// Host bits and the usable prefix range are left to [`Config::validate`], which says why.
    fn from_str(s: &str) -> Result<Cidr, String> {
        let bad = || format!("not a subnet: {s:?} (expected ADDRESS/PREFIX, like 100.64.0.0/24)");
        let (addr, len) = s.trim().split_once('/').ok_or_else(bad)?;
        let network = addr.parse().map_err(|_| bad())?;
        let prefix_len = len.parse::<u8>().ok().filter(|l| *l <= 32).ok_or_else(bad)?;
        Ok(Cidr { network, prefix_len })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

impl Cidr {
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix_len) == u32::from(self.network) & mask(self.prefix_len)
    }
}

/// What a subscriber is recognised by, for limits: something the ISP controls, not the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKey {
    /// Relay agent circuit id (option 82.1) from a trusted relay: the subscriber's port.
    CircuitId,
    /// Relay agent remote id (option 82.2) from a trusted relay: the subscriber's modem or line.
    RemoteId,
    /// The relay agent (`giaddr`).
    Relay,
    /// The innermost VLAN of the frame (per-subscriber VLANs).
    Vlan,
    /// The receiving interface.
    Interface,
    /// The client's hardware address (`chaddr`).
    Chaddr,
}

/// Limits per subscriber key. A message without the key (no option 82, say) is limited by its
/// `chaddr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub key: LimitKey,
    /// The most leases plus offers one key may hold at once.
    pub max_leases: Option<u32>,
    /// DISCOVERs one key may send per second, on average (a token bucket).
    pub discover_rate: Option<u32>,
    /// ... and at once (the bucket's size); default twice the rate.
    pub discover_burst: Option<u32>,
}

/// Largest lease, offer and probation times: leases must end within the range of the clock's
/// seconds, and an infinite lease (RFC 2132's 0xffffffff) would never return its address.
pub const MAX_LEASE_TIME: u32 = 10 * 365 * 86_400;
pub const MAX_OFFER_TIMEOUT: u32 = 86_400;
pub const MAX_DECLINE_PROBATION: u32 = 30 * 86_400;
/// Largest pool, and all pools together: the address space keeps 8 bytes per pool address,
/// allocated at start (a /8 is 128 MiB; all pools 512 MiB).
pub const MAX_POOL_ADDRESSES: u64 = 1 << 24;
pub const MAX_TOTAL_POOL_ADDRESSES: u64 = 1 << 26;

/// One IPv4 subnet served, with its pools, options and reservations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subnet {
    pub network: Ipv4Addr,
    pub prefix_len: u8,
    /// Interface on which directly attached clients of this subnet arrive (by name). `None`:
    /// the subnet serves relayed clients (by giaddr, option 118 or 82.5) and is also the
    /// default link for direct clients on interfaces that have no subnet of their own.
    pub interface: Option<String>,
    /// Only frames whose innermost VLAN id is this one belong here (per-VLAN subnets on one
    /// interface); `None` matches untagged frames and any VLAN without a subnet of its own.
    pub vlan: Option<u16>,
    pub pools: Vec<Pool>,
    pub server_id: Option<Ipv4Addr>,
    pub lease_time: Option<u32>,
    /// T1 (option 58); default half the lease time.
    pub renewal_time: Option<u32>,
    /// T2 (option 59); default 7/8 of the lease time.
    pub rebinding_time: Option<u32>,
    pub options: SubnetOptions,
    pub reservations: Vec<Reservation>,
    /// Relay agents trusted for this subnet, besides the global ones.
    pub trusted_relays: Vec<Cidr>,
    /// Limits per subscriber key; `None`: the global ones.
    pub limits: Option<Limits>,
    /// Only clients in one of these classes get addresses from this subnet's pools (empty:
    /// any client). A pool's own classes replace these.
    pub classes: Vec<String>,
    /// Pools (by index in `pools`) kept for clients in one of the listed classes.
    pub pool_classes: Vec<(usize, Vec<String>)>,
}

/// An inclusive range of addresses handed out dynamically.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    pub first: Ipv4Addr,
    pub last: Ipv4Addr,
}

impl Pool {
    pub fn len(&self) -> u64 {
        (u32::from(self.last) as u64 + 1).saturating_sub(u32::from(self.first) as u64)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        (self.first..=self.last).contains(&ip)
    }
}

/// Options a subnet gives its clients.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubnetOptions {
    /// Option 3.
    pub routers: Vec<Ipv4Addr>,
    /// Option 6.
    pub dns_servers: Vec<Ipv4Addr>,
    /// Option 15.
    pub domain_name: Option<String>,
    /// Option 26.
    pub mtu: Option<u16>,
    /// Option 42.
    pub ntp_servers: Vec<Ipv4Addr>,
    /// Any other option, by code, as the raw bytes of its value.
    pub raw: Vec<(u8, Vec<u8>)>,
}

/// A fixed address for one client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub client: ClientMatch,
    pub ip: Ipv4Addr,
}

/// How a reservation recognises its client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMatch {
    /// Ethernet hardware address (`chaddr`).
    Mac([u8; 6]),
    /// Client identifier (option 61), the whole value including its type byte.
    ClientId(Vec<u8>),
    /// Relay agent circuit id (82.1) from a trusted relay: whatever client arrives on that
    /// subscriber port gets the address (the previous one's lease on it ends at once).
    CircuitId(Vec<u8>),
    /// Relay agent remote id (82.2) from a trusted relay, as `CircuitId`.
    RemoteId(Vec<u8>),
}

impl ClientMatch {
    /// Whether the reservation follows a subscriber port (option 82) rather than a client.
    pub fn is_port(&self) -> bool {
        matches!(self, ClientMatch::CircuitId(_) | ClientMatch::RemoteId(_))
    }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            server_id: Ipv4Addr::UNSPECIFIED,
            authoritative: false,
            rapid_commit: false,
            offer_timeout: 10,
            decline_probation: 86_400,
            lease_time: 3_600,
            decline: DeclinePolicy::Probation,
            decline_max_percent: 10,
            trusted_relays: Vec::new(),
            limits: None,
            subnets: Vec::new(),
            classes: Vec::new(),
            leasequery: false,
            leasequery_from: Vec::new(),
            cluster: None,
        }
    }
}

impl Subnet {
    /// A subnet with no pools, options or reservations.
    pub fn new(network: Ipv4Addr, prefix_len: u8) -> Subnet {
        Subnet {
            network,
            prefix_len,
            interface: None,
            vlan: None,
            pools: Vec::new(),
            server_id: None,
            lease_time: None,
            renewal_time: None,
            rebinding_time: None,
            options: SubnetOptions::default(),
            reservations: Vec::new(),
            trusted_relays: Vec::new(),
            limits: None,
            classes: Vec::new(),
            pool_classes: Vec::new(),
        }
    }

    pub fn mask(&self) -> u32 {
        mask(self.prefix_len)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network)
    }

    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | !self.mask())
    }
}

/// Netmask for a prefix length (0..=32).
pub fn mask(prefix_len: u8) -> u32 {
    if prefix_len == 0 {
        0
    } else {
        u32::MAX << (32 - prefix_len.min(32) as u32)
    }
}

/// A configuration that is not valid: where (a path such as `subnets[1].pools[0]`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

impl std::error::Error for ConfigError {}

fn err(path: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError { path: path.into(), reason: reason.into() }
}

fn check_range(path: &str, v: u32, min: u32, max: u32) -> Result<(), ConfigError> {
    if v < min || v > max {
        let why = if max == MAX_LEASE_TIME {
            format!("{v} is outside {min}..={max} seconds (infinite leases are not supported)")
        } else {
            format!("{v} is outside {min}..={max} seconds")
        };
        return Err(err(path, why));
    }
    Ok(())
}

impl Limits {
    fn validate(&self, at: &str) -> Result<(), ConfigError> {
        if self.max_leases.is_none() && self.discover_rate.is_none() {
            return Err(err(at, "set max_leases, discover_rate or both"));
        }
        if self.max_leases == Some(0) || self.discover_rate == Some(0) || self.discover_burst == Some(0) {
            return Err(err(at, "limits must be at least 1 (leave a limit out for none)"));
        }
        if self.discover_burst.is_some() && self.discover_rate.is_none() {
            return Err(err(at, "discover_burst needs discover_rate"));
        }
        Ok(())
    }

    /// The bucket's size: the burst, or twice the rate.
    pub fn burst(&self) -> u32 {
        self.discover_burst.unwrap_or(self.discover_rate.unwrap_or(0).saturating_mul(2)).max(1)
    }
}

impl Config {
    /// Pools small enough for the memory they take at start.
    fn validate_pool_sizes(&self) -> Result<(), ConfigError> {
        let mut total = 0u64;
        for (i, s) in self.subnets.iter().enumerate() {
            for (j, p) in s.pools.iter().enumerate() {
                if p.len() > MAX_POOL_ADDRESSES {
                    return Err(err(
                        format!("subnets[{i}].pools[{j}]"),
                        format!("{} addresses; a pool may have at most {MAX_POOL_ADDRESSES} (a /8)", p.len()),
                    ));
                }
                total += p.len();
            }
        }
        if total > MAX_TOTAL_POOL_ADDRESSES {
            return Err(err(
                "subnets",
                format!("{total} pool addresses in all; at most {MAX_TOTAL_POOL_ADDRESSES} (512 MiB of state)"),
            ));
        }
        Ok(())
    }

    /// One subnet's own settings: prefix, server id, lease times and their order, limits, VLAN.
    fn validate_subnet(&self, s: &Subnet, at: &str) -> Result<(), ConfigError> {
        if s.prefix_len > 30 || s.prefix_len < 1 {
            return Err(err(at, format!("prefix length /{} leaves no room for clients (1..=30)", s.prefix_len)));
        }
        if u32::from(s.network) & !s.mask() != 0 {
            return Err(err(at, format!("{}/{} has host bits set", s.network, s.prefix_len)));
        }
        if s.server_id.is_none() && self.server_id.is_unspecified() {
            return Err(err(at, "no server id: set server_id globally or for the subnet"));
        }
        if let Some(lt) = s.lease_time {
            check_range(&format!("{at}.lease_time"), lt, 60, MAX_LEASE_TIME)?;
        }
        if let Some(l) = &s.limits {
            l.validate(&format!("{at}.limits"))?;
        }
        let lease = s.lease_time.unwrap_or(self.lease_time);
        let t1 = s.renewal_time.unwrap_or(lease / 2);
        let t2 = s.rebinding_time.unwrap_or(lease / 8 * 7);
        if !(t1 < t2 && t2 < lease) {
            return Err(err(at, format!("need renewal_time ({t1}) < rebinding_time ({t2}) < lease_time ({lease})")));
        }
        if let Some(v) = s.vlan {
            if v == 0 || v > 4094 {
                return Err(err(format!("{at}.vlan"), format!("VLAN id {v} outside 1..=4094")));
            }
        }
        Ok(())
    }

    /// Checks everything the engine relies on. The first problem found is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.subnets.is_empty() {
            return Err(err("subnets", "no subnet configured"));
        }
        check_range("offer_timeout", self.offer_timeout, 1, MAX_OFFER_TIMEOUT)?;
        check_range("lease_time", self.lease_time, 60, MAX_LEASE_TIME)?;
        check_range("decline_probation", self.decline_probation, 0, MAX_DECLINE_PROBATION)?;
        if !(1..=100).contains(&self.decline_max_percent) {
            return Err(err("decline_max_percent", "must be 1 to 100"));
        }
        if let Some(l) = &self.limits {
            l.validate("limits")?;
        }
        self.validate_pool_sizes()?;
        let mut pools: Vec<(u32, u32, String)> = Vec::new();
        let mut reserved: Vec<(Ipv4Addr, String)> = Vec::new();
        for (i, s) in self.subnets.iter().enumerate() {
            let at = format!("subnets[{i}]");
            self.validate_subnet(s, &at)?;
            validate_pools(s, &at, &mut pools)?;
            validate_reservations(s, &at, &mut reserved)?;
            validate_raw_options(s, &at)?;
        }
        self.validate_isp()?;
        self.validate_cluster()?;
        // Subnets must not overlap either: an address would belong to two of them.
        for (i, a) in self.subnets.iter().enumerate() {
            for (j, b) in self.subnets.iter().enumerate().skip(i + 1) {
                if a.contains(b.network) || b.contains(a.network) {
                    return Err(err(format!("subnets[{j}]"), format!("overlaps subnets[{i}]")));
                }
            }
        }
        Ok(())
    }
}

/// A subnet's pools: ordered, inside the subnet, off its network and broadcast addresses, and
/// overlapping no pool seen so far (`pools`, across subnets).
fn validate_pools(s: &Subnet, at: &str, pools: &mut Vec<(u32, u32, String)>) -> Result<(), ConfigError> {
    for (j, p) in s.pools.iter().enumerate() {
        let pat = format!("{at}.pools[{j}]");
        if p.first > p.last {
            return Err(err(&pat, format!("first address {} is after last {}", p.first, p.last)));
        }
        if !s.contains(p.first) || !s.contains(p.last) {
            return Err(err(&pat, format!("{}-{} is outside subnet {}/{}", p.first, p.last, s.network, s.prefix_len)));
        }
        if p.first == s.network || p.last == s.broadcast() {
            return Err(err(&pat, "pool includes the subnet's network or broadcast address"));
        }
        let (a, b) = (u32::from(p.first), u32::from(p.last));
        if let Some((_, _, other)) = pools.iter().find(|(x, y, _)| a <= *y && *x <= b) {
            return Err(err(&pat, format!("overlaps {other}")));
        }
        pools.push((a, b, pat));
    }
    Ok(())
}

/// A subnet's reservations: host addresses of the subnet, identities of a sane length, and no
/// address reserved twice (`reserved`, across subnets).
fn validate_reservations(s: &Subnet, at: &str, reserved: &mut Vec<(Ipv4Addr, String)>) -> Result<(), ConfigError> {
    for (k, r) in s.reservations.iter().enumerate() {
        let rat = format!("{at}.reservations[{k}]");
        if !s.contains(r.ip) || r.ip == s.network || r.ip == s.broadcast() {
            return Err(err(&rat, format!("{} is not a host address of subnet {}/{}", r.ip, s.network, s.prefix_len)));
        }
        if let ClientMatch::ClientId(id) | ClientMatch::CircuitId(id) | ClientMatch::RemoteId(id) = &r.client {
            if id.is_empty() || id.len() > 255 {
                return Err(err(&rat, "client id, circuit id and remote id must be 1 to 255 bytes"));
            }
        }
        if let Some((_, other)) = reserved.iter().find(|(ip, _)| *ip == r.ip) {
            return Err(err(&rat, format!("{} is already reserved by {other}", r.ip)));
        }
        reserved.push((r.ip, rat));
    }
    Ok(())
}

/// Raw options: none the server sets itself, none too long to encode.
fn validate_raw_options(s: &Subnet, at: &str) -> Result<(), ConfigError> {
    for (k, (code, v)) in s.options.raw.iter().enumerate() {
        let oat = format!("{at}.options.raw[{k}]");
        if matches!(code, 0 | 50..=59 | 61 | 80 | 82 | 255) {
            return Err(err(&oat, format!("option {code} is set by the server itself")));
        }
        if v.len() > 1020 {
            return Err(err(&oat, "value longer than 1020 bytes"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn base() -> Config {
        let mut s = Subnet::new(ip("100.64.0.0"), 24);
        s.pools.push(Pool { first: ip("100.64.0.10"), last: ip("100.64.0.99") });
        Config { server_id: ip("100.64.0.1"), subnets: vec![s], ..Config::default() }
    }

    #[test]
    fn valid_config_passes() {
        base().validate().unwrap();
    }

    #[test]
    fn overlapping_pools_are_refused_with_location() {
        let mut c = base();
        c.subnets[0].pools.push(Pool { first: ip("100.64.0.50"), last: ip("100.64.0.120") });
        let e = c.validate().unwrap_err();
        assert_eq!(e.path, "subnets[0].pools[1]");
        assert!(e.reason.contains("overlaps subnets[0].pools[0]"), "{e}");
    }

    #[test]
    fn pool_outside_subnet_is_refused() {
        let mut c = base();
        c.subnets[0].pools[0].last = ip("100.64.1.5");
        assert!(c.validate().unwrap_err().reason.contains("outside subnet"));
    }

    #[test]
    fn duplicate_reservation_and_overlapping_subnets_are_refused() {
        let mut c = base();
        let r = Reservation { client: ClientMatch::Mac([2, 0, 0, 0, 0, 1]), ip: ip("100.64.0.5") };
        c.subnets[0].reservations = vec![r.clone(), Reservation { client: ClientMatch::Mac([2; 6]), ..r }];
        assert_eq!(c.validate().unwrap_err().path, "subnets[0].reservations[1]");
        let mut c = base();
        c.subnets.push(Subnet::new(ip("100.64.0.0"), 16));
        assert_eq!(c.validate().unwrap_err().path, "subnets[1]");
    }
}
