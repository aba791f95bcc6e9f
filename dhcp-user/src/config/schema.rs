//! The TOML file as written: one serde struct per table. Every table rejects unknown keys, so a
//! misspelt key is an error rather than a silent default. Values that need parsing (addresses,
//! ranges, MACs) are read as [`Spanned`] strings and converted by [`decode`](super::decode), so
//! every bad value is reported at its own position with a message that says what was expected.
//! This module must never hold logic: no parsing of values, no checks, no defaults.
//!
//! ```toml
//! server_id = "100.64.0.1"        # option 54 for subnets without their own
//! authoritative = false
//! rapid_commit = false
//! offer_timeout = 10              # seconds
//! decline_probation = 86400       # seconds
//! lease_time = 3600               # seconds
//! decline = "probation"           # "probation" | "ignore"
//! decline_max_percent = 10        # most of a pool in probation
//! trusted_relays = ["198.18.2.1", "10.0.0.0/8"]   # default: any relay
//!
//! [limits]                        # per subscriber key, for subnets without their own
//! key = "circuit-id"              # circuit-id | remote-id | relay | vlan | interface | chaddr
//! max_leases = 4                  # leases plus offers one key may hold
//! discover_rate = 10              # DISCOVERs per second per key
//! discover_burst = 20             # default: twice the rate
//!
//! [server]
//! interfaces = ["eth0"]           # default: the interfaces named by subnets
//! workers = 4                     # default: number of CPUs
//! backend = "auto"                # "udp" | "xdp" | "auto"
//! lease_file = "/var/lib/xdhcpd/leases"   # default: none, leases in memory only
//! durability = "fsync"            # "fsync" | "none"
//! compact_interval = 3600         # seconds
//! compact_size = 67108864         # bytes of journal that also start a compaction
//! busy_poll = false
//! pin_workers = false
//! user = "xdhcpd"                 # run as this user once set up (default: stay, without capabilities)
//! kernel_renew = false            # XDP path: renewals answered in the XDP program
//!
//! [control]                       # the HTTP API (metrics, leases, reload); off by default
//! listen = "127.0.0.1:9767"
//! token_file = "/etc/xdhcpd/token"  # bearer token; required beyond loopback
//!
//! [[subnet]]
//! subnet = "100.64.0.0/24"
//! interface = "eth0"              # none: relayed clients and the default link
//! vlan = 100
//! server_id = "100.64.0.1"
//! lease_time = 3600
//! renewal_time = 1800
//! rebinding_time = 3150
//! pools = ["100.64.0.10-100.64.0.200", "100.64.0.250"]
//! routers = ["100.64.0.1"]
//! dns_servers = ["100.64.0.2"]
//! domain_name = "example.net"
//! mtu = 1500
//! ntp_servers = ["100.64.0.3"]
//! trusted_relays = ["100.64.9.1"] # besides the global ones
//!
//! [subnet.limits]                 # as [limits]
//! key = "vlan"
//! max_leases = 2
//!
//! [[subnet.option]]               # any other option: `code` and exactly one value key
//! code = 66
//! text = "tftp.example.net"       # or hex = "01:ab" / "01ab", ip = [..], u8 / u16 / u32 = N
//!
//! [[subnet.reservation]]
//! mac = "02:00:00:00:00:01"       # or client_id = "01:02:00:00:00:00:01"
//! ip = "100.64.0.5"               # or circuit_id / remote_id (text), circuit_id_hex / remote_id_hex
//!
//! classes = ["cpe"]               # (in [[subnet]]) its pools only for these classes
//! [[subnet.pool]]                 # a pool kept for classes
//! range = "100.64.0.200-100.64.0.220"
//! classes = ["cpe"]
//!
//! leasequery = true               # (top level) answer RFC 4388 leasequery
//! leasequery_from = ["198.18.2.1"]  # besides the trusted relays
//!
//! [[class]]
//! name = "cpe"
//! vendor_class = "acme"           # prefix of option 60; also user_class, circuit_id, remote_id
//!                                 # (text, or *_hex bytes) and chaddr_prefix = "00:11:22"
//! [[class.option]]                # as [[subnet.option]]
//! code = 43
//! hex = "01:04:ab:00:00:01"
//!
//! [cluster]                       # several nodes sharing the pools through NATS JetStream
//! nats = ["nats://100.64.9.1:4222"]  # at least one
//! node = "edge-a"                 # this node, one of peers
//! peers = ["edge-a", "edge-b"]    # every node, same order everywhere (primary per client)
//! block_size = 64                 # addresses per block claimed (16..=4096)
//! heartbeat_ms = 500
//! dead_after_ms = 3000            # more than twice heartbeat_ms
//! wait_secs = 3                   # others answer a client once its `secs` reaches this
//! bucket = "xdhcpd"               # JetStream key-value bucket
//! ```

use serde::Deserialize;
use toml::Spanned;

use super::Backend;
use crate::journal::Durability;
use dhcp_core::config::{DeclinePolicy, LimitKey};

/// The top level of the file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    pub(super) server_id: Option<Spanned<String>>,
    pub(super) authoritative: Option<bool>,
    pub(super) rapid_commit: Option<bool>,
    pub(super) offer_timeout: Option<Spanned<u32>>,
    pub(super) decline_probation: Option<Spanned<u32>>,
    pub(super) lease_time: Option<Spanned<u32>>,
    pub(super) decline: Option<RawDecline>,
    pub(super) decline_max_percent: Option<Spanned<u8>>,
    #[serde(default)]
    pub(super) trusted_relays: Vec<Spanned<String>>,
    pub(super) limits: Option<Spanned<RawLimits>>,
    pub(super) server: Option<RawServer>,
    pub(super) control: Option<RawControl>,
    #[serde(default)]
    pub(super) subnet: Vec<Spanned<RawSubnet>>,
    pub(super) leasequery: Option<Spanned<bool>>,
    #[serde(default)]
    pub(super) leasequery_from: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) class: Vec<Spanned<RawClass>>,
    pub(super) cluster: Option<Spanned<RawCluster>>,
}

/// `[cluster]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    #[serde(default)]
    pub(super) nats: Vec<Spanned<String>>,
    pub(super) node: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) peers: Vec<Spanned<String>>,
    pub(super) block_size: Option<Spanned<u32>>,
    pub(super) heartbeat_ms: Option<Spanned<u32>>,
    pub(super) dead_after_ms: Option<Spanned<u32>>,
    pub(super) wait_secs: Option<Spanned<u16>>,
    pub(super) bucket: Option<Spanned<String>>,
}

/// `[server]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub(super) interfaces: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) workers: Option<Spanned<usize>>,
    pub(super) backend: Option<Backend>,
    pub(super) lease_file: Option<Spanned<String>>,
    pub(super) durability: Option<Durability>,
    pub(super) compact_interval: Option<Spanned<u32>>,
    pub(super) compact_size: Option<Spanned<u64>>,
    pub(super) busy_poll: Option<bool>,
    pub(super) pin_workers: Option<bool>,
    pub(super) user: Option<String>,
    pub(super) kernel_renew: Option<bool>,
}

/// `[control]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawControl {
    pub(super) listen: Option<Spanned<String>>,
    pub(super) token_file: Option<Spanned<String>>,
}

/// `[[subnet]]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSubnet {
    pub(super) subnet: Spanned<String>,
    pub(super) interface: Option<Spanned<String>>,
    pub(super) vlan: Option<Spanned<u16>>,
    pub(super) server_id: Option<Spanned<String>>,
    pub(super) lease_time: Option<Spanned<u32>>,
    pub(super) renewal_time: Option<Spanned<u32>>,
    pub(super) rebinding_time: Option<Spanned<u32>>,
    #[serde(default)]
    pub(super) pools: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) routers: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) dns_servers: Vec<Spanned<String>>,
    pub(super) domain_name: Option<Spanned<String>>,
    pub(super) mtu: Option<Spanned<u16>>,
    #[serde(default)]
    pub(super) ntp_servers: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) trusted_relays: Vec<Spanned<String>>,
    pub(super) limits: Option<Spanned<RawLimits>>,
    #[serde(default)]
    pub(super) option: Vec<Spanned<RawOption>>,
    #[serde(default)]
    pub(super) reservation: Vec<Spanned<RawReservation>>,
    #[serde(default)]
    pub(super) classes: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) pool: Vec<Spanned<RawPool>>,
}

/// `[[subnet.pool]]`: a pool kept for clients of some classes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPool {
    pub(super) range: Spanned<String>,
    pub(super) classes: Vec<Spanned<String>>,
}

/// `[[class]]`: its name, what it matches (each as text, or as `_hex` bytes), its options.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClass {
    pub(super) name: Spanned<String>,
    pub(super) vendor_class: Option<Spanned<String>>,
    pub(super) vendor_class_hex: Option<Spanned<String>>,
    pub(super) user_class: Option<Spanned<String>>,
    pub(super) user_class_hex: Option<Spanned<String>>,
    pub(super) circuit_id: Option<Spanned<String>>,
    pub(super) circuit_id_hex: Option<Spanned<String>>,
    pub(super) remote_id: Option<Spanned<String>>,
    pub(super) remote_id_hex: Option<Spanned<String>>,
    pub(super) chaddr_prefix: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) option: Vec<Spanned<RawOption>>,
}

/// `[[subnet.option]]`: a code and exactly one value key. Integers are big-endian (network
/// order); `ip` is a list of addresses, 4 bytes each; lists of integers are written as `hex`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOption {
    pub(super) code: Spanned<u8>,
    pub(super) hex: Option<Spanned<String>>,
    pub(super) text: Option<Spanned<String>>,
    pub(super) ip: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(rename = "u8")]
    pub(super) uint8: Option<Spanned<u8>>,
    #[serde(rename = "u16")]
    pub(super) uint16: Option<Spanned<u16>>,
    #[serde(rename = "u32")]
    pub(super) uint32: Option<Spanned<u32>>,
}

/// `[[subnet.reservation]]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReservation {
    pub(super) mac: Option<Spanned<String>>,
    pub(super) client_id: Option<Spanned<String>>,
    pub(super) circuit_id: Option<Spanned<String>>,
    pub(super) circuit_id_hex: Option<Spanned<String>>,
    pub(super) remote_id: Option<Spanned<String>>,
    pub(super) remote_id_hex: Option<Spanned<String>>,
    pub(super) ip: Spanned<String>,
}

/// `decline`.
#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawDecline {
    Probation,
    Ignore,
}

impl From<RawDecline> for DeclinePolicy {
    fn from(d: RawDecline) -> DeclinePolicy {
        match d {
            RawDecline::Probation => DeclinePolicy::Probation,
            RawDecline::Ignore => DeclinePolicy::Ignore,
        }
    }
}

/// `[limits]` and `[subnet.limits]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub(super) key: RawLimitKey,
    pub(super) max_leases: Option<u32>,
    pub(super) discover_rate: Option<u32>,
    pub(super) discover_burst: Option<u32>,
}

/// `key` of a limits table.
#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
pub(super) enum RawLimitKey {
    CircuitId,
    RemoteId,
    Relay,
    Vlan,
    Interface,
    Chaddr,
}

impl From<RawLimitKey> for LimitKey {
    fn from(k: RawLimitKey) -> LimitKey {
        match k {
            RawLimitKey::CircuitId => LimitKey::CircuitId,
            RawLimitKey::RemoteId => LimitKey::RemoteId,
            RawLimitKey::Relay => LimitKey::Relay,
            RawLimitKey::Vlan => LimitKey::Vlan,
            RawLimitKey::Interface => LimitKey::Interface,
            RawLimitKey::Chaddr => LimitKey::Chaddr,
        }
    }
}
