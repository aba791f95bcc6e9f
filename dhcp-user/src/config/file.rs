//! The server's TOML configuration file: its schema, its translation into the engine's
//! [`Config`] plus the server's own [`ServerSettings`], errors that name the file, line and
//! column of the problem (including the semantic errors of [`Config::validate`], which only know
//! a path such as `subnets[1].pools[0]`), and the checks against this host's interfaces.
//!
//! Schema (every table rejects unknown keys):
//!
//! ```toml
//! server_id = "100.64.0.1"        # option 54 for subnets without their own
//! authoritative = false
//! rapid_commit = false
//! offer_timeout = 10              # seconds
//! decline_probation = 86400       # seconds
//! lease_time = 3600               # seconds
//!
//! [server]
//! interfaces = ["eth0"]           # default: the interfaces named by subnets
//! workers = 4                     # default: number of CPUs
//! backend = "auto"                # "udp" | "xdp" | "auto"
//! lease_file = "/var/lib/xdhcpd/leases"   # default: none, leases in memory only
//! durability = "fsync"            # "fsync" | "none"
//! compact_interval = 3600         # seconds
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
//!
//! [[subnet.option]]               # any other option: `code` and exactly one value key
//! code = 66
//! text = "tftp.example.net"       # or hex = "01:ab" / "01ab", ip = [..], u8 / u16 / u32 = N
//!
//! [[subnet.reservation]]
//! mac = "02:00:00:00:00:01"       # or client_id = "01:02:00:00:00:00:01"
//! ip = "100.64.0.5"
//! ```

use core::fmt;
use core::net::Ipv4Addr;
use core::ops::Range;
use core::str::FromStr;
use std::ffi::{CStr, CString};
use std::io;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::{ClientMatch, Config, ConfigError, Pool, Reservation, Subnet};

/// Everything `xdhcpd serve` needs: the engine's model and the server's own settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    pub engine: Config,
    pub server: ServerSettings,
}

/// Settings of the server process rather than of the DHCP engine (the `[server]` table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    /// Interfaces to listen on. Default: the interfaces named by subnets, in order of first use.
    pub interfaces: Vec<String>,
    /// Worker threads. Default: the number of CPUs.
    pub workers: usize,
    pub backend: Backend,
    /// Where the lease journal lives; `None` keeps leases in memory only (lost on restart).
    pub lease_file: Option<PathBuf>,
    pub durability: Durability,
    /// Seconds between rewrites of the lease journal into a compact snapshot.
    pub compact_interval: u32,
    /// XDP path: workers spin on their rings instead of sleeping in poll() when idle (lowest
    /// latency, one busy core per worker).
    pub busy_poll: bool,
    /// Pin worker N to CPU N (modulo the CPU count).
    pub pin_workers: bool,
}

/// How packets reach the workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Plain UDP sockets.
    Udp,
    /// XDP steering program and AF_XDP sockets.
    Xdp,
    /// XDP where the interface and kernel allow it, else UDP.
    #[default]
    Auto,
}

/// When a lease change counts as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// The journal is synced to disk before the ACK goes out: no lease is lost on a crash.
    #[default]
    Fsync,
    /// Written without syncing: faster; a crash may forget the latest leases.
    None,
}

/// At most this many workers: a typo like `workers = 40000` should not start 40000 threads.
const MAX_WORKERS: usize = 1024;

impl Default for ServerSettings {
    fn default() -> ServerSettings {
        ServerSettings {
            interfaces: Vec::new(),
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            backend: Backend::Auto,
            lease_file: None,
            durability: Durability::Fsync,
            compact_interval: 3_600,
            busy_poll: false,
            pin_workers: false,
        }
    }
}

/// A configuration problem and where it is: `FILE:LINE:COLUMN: reason`.
///
/// `line` and `column` count from 1. They are 0 when there is no position to give (the file
/// could not be read, or the value came from a command-line flag, whose name and value then
/// start the reason); the error is then displayed as `FILE: reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub reason: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.reason)
        } else {
            write!(f, "{}:{}:{}: {}", self.file, self.line, self.column, self.reason)
        }
    }
}

impl std::error::Error for FileError {}

/// The `file` of errors about command-line flags.
pub const COMMAND_LINE: &str = "command line";

/// Where a value came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum Loc {
    /// Not given (a default): errors fall back to line 1 of the file.
    #[default]
    Unknown,
    /// Byte range in the file.
    Span(Range<usize>),
    /// A command-line flag with its value, e.g. `--pool 100.64.0.10-100.64.0.20`.
    Flag(String),
}

impl Loc {
    fn of<T>(s: &Spanned<T>) -> Loc {
        Loc::Span(s.span())
    }

    /// This location, or `other` if this one is not known.
    fn or(&self, other: &Loc) -> Loc {
        match self {
            Loc::Unknown => other.clone(),
            known => known.clone(),
        }
    }
}

/// Where each element of a subnet came from.
#[derive(Debug, Clone, Default)]
pub(crate) struct SubnetLocs {
    pub(crate) cidr: Loc,
    pub(crate) interface: Loc,
    pub(crate) vlan: Loc,
    pub(crate) server_id: Loc,
    pub(crate) lease_time: Loc,
    pub(crate) renewal_time: Loc,
    pub(crate) rebinding_time: Loc,
    pub(crate) pools: Vec<Loc>,
    /// Per reservation: its client (`mac` / `client_id`) and its `ip`.
    pub(crate) reservations: Vec<(Loc, Loc)>,
    /// Per raw option (same order as `options.raw`): its `code`.
    pub(crate) options: Vec<Loc>,
}

/// Where each value of a [`ServerConfig`] came from, to turn errors about values (and the paths
/// of [`ConfigError`]) into file positions. Made by [`parse`] / [`load`] with the config.
#[derive(Debug, Clone)]
pub struct SourceMap {
    file: String,
    text: String,
    pub(crate) server_id: Loc,
    pub(crate) offer_timeout: Loc,
    pub(crate) decline_probation: Loc,
    pub(crate) lease_time: Loc,
    /// True when `server.interfaces` was given (else it is derived from the subnets).
    pub(crate) interfaces_explicit: bool,
    pub(crate) interfaces: Vec<Loc>,
    pub(crate) workers: Loc,
    pub(crate) lease_file: Loc,
    pub(crate) compact_interval: Loc,
    pub(crate) subnets: Vec<SubnetLocs>,
}

impl SourceMap {
    fn new(file: &str, text: &str) -> SourceMap {
        SourceMap {
            file: file.to_string(),
            text: text.to_string(),
            server_id: Loc::Unknown,
            offer_timeout: Loc::Unknown,
            decline_probation: Loc::Unknown,
            lease_time: Loc::Unknown,
            interfaces_explicit: false,
            interfaces: Vec::new(),
            workers: Loc::Unknown,
            lease_file: Loc::Unknown,
            compact_interval: Loc::Unknown,
            subnets: Vec::new(),
        }
    }

    /// The map of a configuration made from command-line flags alone.
    pub fn command_line() -> SourceMap {
        SourceMap::new(COMMAND_LINE, "")
    }

    /// The file name errors carry (`command line` for flags alone).
    pub fn file(&self) -> &str {
        &self.file
    }

    /// 1-based line and column (in characters) of a byte offset.
    fn line_column(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        // Spans from the parser fall on character boundaries; step back if one ever does not.
        let offset = (0..=offset).rev().find(|&o| self.text.is_char_boundary(o)).unwrap_or(0);
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        (line, before[line_start..].chars().count() + 1)
    }

    /// An error at `loc`.
    pub(crate) fn error(&self, loc: &Loc, reason: impl Into<String>) -> FileError {
        let reason = reason.into();
        match loc {
            Loc::Span(r) => {
                let (line, column) = self.line_column(r.start);
                FileError { file: self.file.clone(), line, column, reason }
            }
            Loc::Flag(flag) => {
                FileError { file: COMMAND_LINE.to_string(), line: 0, column: 0, reason: format!("{flag}: {reason}") }
            }
            // A configuration from flags alone has no line 1 to point at.
            Loc::Unknown if self.text.is_empty() && self.file == COMMAND_LINE => {
                FileError { file: self.file.clone(), line: 0, column: 0, reason }
            }
            Loc::Unknown => FileError { file: self.file.clone(), line: 1, column: 1, reason },
        }
    }

    /// Where the element a [`ConfigError`] path names was given.
    fn loc_of_path(&self, path: &str, reason: &str) -> Loc {
        let segs: Vec<(&str, Option<usize>)> = path
            .split('.')
            .map(|seg| match seg.split_once('[') {
                Some((name, rest)) => (name, rest.strip_suffix(']').and_then(|n| n.parse().ok())),
                None => (seg, None),
            })
            .collect();
        match segs.as_slice() {
            [("subnets", Some(i)), rest @ ..] => {
                let Some(s) = self.subnets.get(*i) else { return Loc::Unknown };
                let at = match rest {
                    // The subnet-level timing check names the three times in its reason: point at
                    // whichever of them the subnet sets.
                    [] if reason.contains("renewal_time") => s.renewal_time.or(&s.rebinding_time).or(&s.lease_time),
                    [] => Loc::Unknown,
                    [("pools", Some(j))] => s.pools.get(*j).cloned().unwrap_or_default(),
                    [("reservations", Some(k))] => s.reservations.get(*k).map(|r| r.1.clone()).unwrap_or_default(),
                    [("options", None), ("raw", Some(k))] => s.options.get(*k).cloned().unwrap_or_default(),
                    [("interface", None), ..] => s.interface.clone(),
                    [("vlan", None), ..] => s.vlan.clone(),
                    [("server_id", None), ..] => s.server_id.clone(),
                    [("lease_time", None), ..] => s.lease_time.clone(),
                    [("renewal_time", None), ..] => s.renewal_time.clone(),
                    [("rebinding_time", None), ..] => s.rebinding_time.clone(),
                    _ => Loc::Unknown,
                };
                at.or(&s.cidr)
            }
            [("server_id", None)] => self.server_id.clone(),
            [("offer_timeout", None)] => self.offer_timeout.clone(),
            [("decline_probation", None)] => self.decline_probation.clone(),
            [("lease_time", None)] => self.lease_time.clone(),
            _ => Loc::Unknown,
        }
    }

    /// A short description of where `loc` is, seen from an error located at `from`.
    fn describe(&self, loc: &Loc, from: &Loc) -> Option<String> {
        match loc {
            Loc::Span(r) => {
                let (line, _) = self.line_column(r.start);
                Some(if matches!(from, Loc::Span(_)) {
                    format!("line {line}")
                } else {
                    format!("{}:{line}", self.file)
                })
            }
            Loc::Flag(flag) => Some(flag.clone()),
            Loc::Unknown => None,
        }
    }

    /// `reason` with each path it mentions (`overlaps subnets[0].pools[0]`) followed by where that
    /// element was given.
    fn annotate(&self, reason: &str, from: &Loc) -> String {
        let mut out = String::with_capacity(reason.len() + 16);
        let mut rest = reason;
        while let Some(pos) = rest.find("subnets[") {
            out.push_str(&rest[..pos]);
            let tail = &rest[pos..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '[' | ']')))
                .unwrap_or(tail.len());
            let path = tail[..end].trim_end_matches('.');
            out.push_str(path);
            if let Some(w) = self.describe(&self.loc_of_path(path, ""), from) {
                out.push_str(&format!(" ({w})"));
            }
            rest = &tail[path.len()..];
        }
        out.push_str(rest);
        out
    }

    /// A [`ConfigError`] at the position of the element its path names.
    pub fn config_error(&self, e: &ConfigError) -> FileError {
        let loc = self.loc_of_path(&e.path, &e.reason);
        let reason = self.annotate(&e.reason, &loc);
        // The position says which element; the engine's path only helps when there is none.
        match loc {
            Loc::Unknown => self.error(&loc, format!("{}: {reason}", e.path)),
            _ => self.error(&loc, reason),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The file as written. Values that need parsing (addresses, ranges, MACs) are read as spanned
// strings and converted afterwards, so every bad value is reported at its own position with a
// message that says what was expected.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    server_id: Option<Spanned<String>>,
    authoritative: Option<bool>,
    rapid_commit: Option<bool>,
    offer_timeout: Option<Spanned<u32>>,
    decline_probation: Option<Spanned<u32>>,
    lease_time: Option<Spanned<u32>>,
    server: Option<RawServer>,
    #[serde(default)]
    subnet: Vec<Spanned<RawSubnet>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    interfaces: Option<Vec<Spanned<String>>>,
    workers: Option<Spanned<usize>>,
    backend: Option<Backend>,
    lease_file: Option<Spanned<String>>,
    durability: Option<Durability>,
    compact_interval: Option<Spanned<u32>>,
    busy_poll: Option<bool>,
    pin_workers: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSubnet {
    subnet: Spanned<String>,
    interface: Option<Spanned<String>>,
    vlan: Option<Spanned<u16>>,
    server_id: Option<Spanned<String>>,
    lease_time: Option<Spanned<u32>>,
    renewal_time: Option<Spanned<u32>>,
    rebinding_time: Option<Spanned<u32>>,
    #[serde(default)]
    pools: Vec<Spanned<String>>,
    #[serde(default)]
    routers: Vec<Spanned<String>>,
    #[serde(default)]
    dns_servers: Vec<Spanned<String>>,
    domain_name: Option<Spanned<String>>,
    mtu: Option<Spanned<u16>>,
    #[serde(default)]
    ntp_servers: Vec<Spanned<String>>,
    #[serde(default)]
    option: Vec<Spanned<RawOption>>,
    #[serde(default)]
    reservation: Vec<Spanned<RawReservation>>,
}

/// `[[subnet.option]]`: a code and exactly one value key. Integers are big-endian (network
/// order); `ip` is a list of addresses, 4 bytes each; lists of integers are written as `hex`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOption {
    code: Spanned<u8>,
    hex: Option<Spanned<String>>,
    text: Option<Spanned<String>>,
    ip: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(rename = "u8")]
    uint8: Option<Spanned<u8>>,
    #[serde(rename = "u16")]
    uint16: Option<Spanned<u16>>,
    #[serde(rename = "u32")]
    uint32: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReservation {
    mac: Option<Spanned<String>>,
    client_id: Option<Spanned<String>>,
    ip: Spanned<String>,
}

// ---------------------------------------------------------------------------------------------
// Value parsers, shared with the command line.

/// A subnet written `ADDRESS/PREFIX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub network: Ipv4Addr,
    pub prefix_len: u8,
}

impl FromStr for Cidr {
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

/// An IPv4 address.
pub(crate) fn parse_ip(s: &str) -> Result<Ipv4Addr, String> {
    s.trim().parse().map_err(|_| format!("not an IPv4 address: {s:?}"))
}

/// A server identifier: an address clients can send to, so not 0.0.0.0, broadcast or multicast.
pub(crate) fn check_server_id(ip: Ipv4Addr) -> Result<Ipv4Addr, String> {
    if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() {
        return Err(format!("{ip} cannot be a server id (needs a unicast address of this host)"));
    }
    Ok(ip)
}

fn parse_server_id(s: &str) -> Result<Ipv4Addr, String> {
    check_server_id(parse_ip(s)?)
}

/// A pool: `FIRST-LAST` (inclusive) or a single address. Order and subnet membership are
/// checked by [`Config::validate`].
pub fn parse_pool(s: &str) -> Result<Pool, String> {
    let bad = || format!("not an address range: {s:?} (expected FIRST-LAST or one address)");
    let (first, last) = match s.split_once('-') {
        Some((a, b)) => (a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?),
        None => {
            let one = s.trim().parse().map_err(|_| bad())?;
            (one, one)
        }
    };
    Ok(Pool { first, last })
}

/// Hex bytes, either in pairs separated by colons (`01:ab:03`) or run together (`01ab03`).
pub fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    let bad = || format!("not hex bytes: {s:?} (expected like 01:ab:03 or 01ab03)");
    if !s.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
        return Err(bad());
    }
    let digits: Vec<&str> = if s.contains(':') {
        let parts: Vec<&str> = s.split(':').collect();
        if parts.iter().any(|p| p.len() != 2) {
            return Err(bad());
        }
        parts
    } else {
        if !s.len().is_multiple_of(2) {
            return Err(bad());
        }
        (0..s.len()).step_by(2).map(|i| &s[i..i + 2]).collect()
    };
    digits.iter().map(|d| u8::from_str_radix(d, 16).map_err(|_| bad())).collect()
}

/// An Ethernet address: six hex bytes separated by colons (or dashes).
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let bad = || format!("not a MAC address: {s:?} (expected six hex bytes like 02:00:00:00:00:01)");
    let bytes = parse_hex(&s.replace('-', ":")).map_err(|_| bad())?;
    if !s.contains([':', '-']) {
        return Err(bad());
    }
    bytes.try_into().map_err(|_| bad())
}

/// A network interface name as Linux accepts it (see `dev_valid_name`).
pub(crate) fn parse_ifname(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() >= libc::IFNAMSIZ || s == "." || s == ".." {
        return Err(format!("not an interface name: {s:?} (1 to {} bytes)", libc::IFNAMSIZ - 1));
    }
    if s.contains(|c: char| c == '/' || c == ':' || c == '\0' || c.is_whitespace()) {
        return Err(format!("not an interface name: {s:?} (no '/', ':' or spaces)"));
    }
    Ok(s.to_string())
}

fn fmt_client(c: &ClientMatch) -> String {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(":");
    match c {
        ClientMatch::Mac(m) => format!("mac {}", hex(m)),
        ClientMatch::ClientId(id) => format!("client_id {}", hex(id)),
    }
}

// ---------------------------------------------------------------------------------------------
// File → model.

impl SourceMap {
    /// `parse` applied to a spanned string, errors at its position.
    fn value<T>(&self, s: &Spanned<String>, parse: impl FnOnce(&str) -> Result<T, String>) -> Result<T, FileError> {
        parse(s.get_ref()).map_err(|why| self.error(&Loc::of(s), why))
    }

    fn ips(&self, list: &[Spanned<String>]) -> Result<Vec<Ipv4Addr>, FileError> {
        list.iter().map(|s| self.value(s, parse_ip)).collect()
    }
}

/// Options that have their own key; a raw option with the same code as one of these set in the
/// same subnet would be ambiguous.
const NAMED_OPTIONS: [(u8, &str); 5] =
    [(3, "routers"), (6, "dns_servers"), (15, "domain_name"), (26, "mtu"), (42, "ntp_servers")];

/// Reads the file's text into a configuration without the whole-configuration checks (the
/// command line may still change it): syntax, unknown keys and values that do not parse.
pub(crate) fn decode(text: &str, file: &str) -> Result<(ServerConfig, SourceMap), FileError> {
    let mut map = SourceMap::new(file, text);
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let loc = e.span().map_or(Loc::Unknown, Loc::Span);
        map.error(&loc, e.message().trim_end())
    })?;

    let mut engine = Config::default();
    if let Some(s) = &raw.server_id {
        engine.server_id = map.value(s, parse_server_id)?;
        map.server_id = Loc::of(s);
    }
    engine.authoritative = raw.authoritative.unwrap_or(engine.authoritative);
    engine.rapid_commit = raw.rapid_commit.unwrap_or(engine.rapid_commit);
    if let Some(v) = &raw.offer_timeout {
        engine.offer_timeout = *v.get_ref();
        map.offer_timeout = Loc::of(v);
    }
    if let Some(v) = &raw.decline_probation {
        engine.decline_probation = *v.get_ref();
        map.decline_probation = Loc::of(v);
    }
    if let Some(v) = &raw.lease_time {
        engine.lease_time = *v.get_ref();
        map.lease_time = Loc::of(v);
    }

    let mut server = ServerSettings::default();
    if let Some(rs) = &raw.server {
        if let Some(list) = &rs.interfaces {
            map.interfaces_explicit = true;
            for name in list {
                server.interfaces.push(map.value(name, parse_ifname)?);
                map.interfaces.push(Loc::of(name));
            }
        }
        if let Some(w) = &rs.workers {
            server.workers = *w.get_ref();
            map.workers = Loc::of(w);
        }
        server.backend = rs.backend.unwrap_or_default();
        if let Some(p) = &rs.lease_file {
            server.lease_file = Some(PathBuf::from(p.get_ref()));
            map.lease_file = Loc::of(p);
        }
        server.durability = rs.durability.unwrap_or_default();
        if let Some(c) = &rs.compact_interval {
            server.compact_interval = *c.get_ref();
            map.compact_interval = Loc::of(c);
        }
        server.busy_poll = rs.busy_poll.unwrap_or(false);
        server.pin_workers = rs.pin_workers.unwrap_or(false);
    }

    for rs in &raw.subnet {
        let (subnet, locs) = decode_subnet(&map, rs.get_ref())?;
        engine.subnets.push(subnet);
        map.subnets.push(locs);
    }
    Ok((ServerConfig { engine, server }, map))
}

fn decode_subnet(map: &SourceMap, rs: &RawSubnet) -> Result<(Subnet, SubnetLocs), FileError> {
    let cidr: Cidr = map.value(&rs.subnet, str::parse)?;
    let mut s = Subnet::new(cidr.network, cidr.prefix_len);
    let mut locs = SubnetLocs { cidr: Loc::of(&rs.subnet), ..SubnetLocs::default() };
    if let Some(n) = &rs.interface {
        s.interface = Some(map.value(n, parse_ifname)?);
        locs.interface = Loc::of(n);
    }
    if let Some(v) = &rs.vlan {
        s.vlan = Some(*v.get_ref());
        locs.vlan = Loc::of(v);
    }
    if let Some(v) = &rs.server_id {
        s.server_id = Some(map.value(v, parse_server_id)?);
        locs.server_id = Loc::of(v);
    }
    for (field, loc, value) in [
        (&mut s.lease_time, &mut locs.lease_time, &rs.lease_time),
        (&mut s.renewal_time, &mut locs.renewal_time, &rs.renewal_time),
        (&mut s.rebinding_time, &mut locs.rebinding_time, &rs.rebinding_time),
    ] {
        if let Some(v) = value {
            *field = Some(*v.get_ref());
            *loc = Loc::of(v);
        }
    }
    for p in &rs.pools {
        s.pools.push(map.value(p, parse_pool)?);
        locs.pools.push(Loc::of(p));
    }

    let o = &mut s.options;
    o.routers = map.ips(&rs.routers)?;
    o.dns_servers = map.ips(&rs.dns_servers)?;
    o.ntp_servers = map.ips(&rs.ntp_servers)?;
    if let Some(d) = &rs.domain_name {
        if d.get_ref().is_empty() {
            return Err(map.error(&Loc::of(d), "domain_name is empty"));
        }
        o.domain_name = Some(d.get_ref().clone());
    }
    if let Some(m) = &rs.mtu {
        // RFC 2132 §5.1: the smallest MTU an interface may have.
        if *m.get_ref() < 68 {
            return Err(map.error(&Loc::of(m), format!("mtu {} is below the minimum of 68", m.get_ref())));
        }
        o.mtu = Some(*m.get_ref());
    }
    let named_set = [
        !rs.routers.is_empty(),
        !rs.dns_servers.is_empty(),
        rs.domain_name.is_some(),
        rs.mtu.is_some(),
        !rs.ntp_servers.is_empty(),
    ];
    for opt in &rs.option {
        let (code, value) = decode_option(map, opt)?;
        let at = Loc::of(&opt.get_ref().code);
        if let Some(k) = locs.options.iter().zip(&o.raw).position(|(_, (c, _))| *c == code) {
            let first = map.describe(&locs.options[k], &at).unwrap_or_default();
            return Err(map.error(&at, format!("option {code} is already set ({first})")));
        }
        if let Some(((_, key), _)) = NAMED_OPTIONS.iter().zip(named_set).find(|((c, _), set)| *c == code && *set) {
            return Err(map.error(&at, format!("option {code} is already set by `{key}` in this subnet")));
        }
        o.raw.push((code, value));
        locs.options.push(at);
    }

    for r in &rs.reservation {
        let r = r.get_ref();
        let (client, at) = match (&r.mac, &r.client_id) {
            (Some(m), None) => (ClientMatch::Mac(map.value(m, parse_mac)?), Loc::of(m)),
            (None, Some(c)) => {
                let id = map.value(c, parse_hex)?;
                // Option 61 is at most 255 bytes and at least its type byte.
                if id.is_empty() || id.len() > 255 {
                    return Err(map.error(&Loc::of(c), "client_id must be 1 to 255 bytes"));
                }
                (ClientMatch::ClientId(id), Loc::of(c))
            }
            (Some(_), Some(c)) => {
                return Err(map.error(&Loc::of(c), "a reservation matches either `mac` or `client_id`, not both"));
            }
            (None, None) => {
                return Err(map.error(&Loc::of(&r.ip), "reservation needs `mac` or `client_id`"));
            }
        };
        let ip = map.value(&r.ip, parse_ip)?;
        s.reservations.push(Reservation { client, ip });
        locs.reservations.push((at, Loc::of(&r.ip)));
    }
    Ok((s, locs))
}

fn decode_option(map: &SourceMap, opt: &Spanned<RawOption>) -> Result<(u8, Vec<u8>), FileError> {
    let o = opt.get_ref();
    let code = *o.code.get_ref();
    let given =
        [o.hex.is_some(), o.text.is_some(), o.ip.is_some(), o.uint8.is_some(), o.uint16.is_some(), o.uint32.is_some()];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(map.error(
            &Loc::of(opt),
            format!("option {code}: set exactly one of `hex`, `text`, `ip`, `u8`, `u16`, `u32`"),
        ));
    }
    let value = if let Some(h) = &o.hex {
        map.value(h, parse_hex)?
    } else if let Some(t) = &o.text {
        t.get_ref().as_bytes().to_vec()
    } else if let Some(list) = &o.ip {
        if list.get_ref().is_empty() {
            return Err(map.error(&Loc::of(list), "`ip` needs at least one address"));
        }
        map.ips(list.get_ref())?.iter().flat_map(|ip| ip.octets()).collect()
    } else if let Some(v) = &o.uint8 {
        vec![*v.get_ref()]
    } else if let Some(v) = &o.uint16 {
        v.get_ref().to_be_bytes().to_vec()
    } else if let Some(v) = &o.uint32 {
        v.get_ref().to_be_bytes().to_vec()
    } else {
        // Unreachable: exactly one key is set (checked above); an empty value is harmless.
        Vec::new()
    };
    Ok((code, value))
}

/// The whole-configuration checks, and the defaults that depend on the whole configuration
/// (the interface list): [`Config::validate`], then the server settings.
pub(crate) fn finish(mut cfg: ServerConfig, map: &SourceMap) -> Result<ServerConfig, FileError> {
    cfg.engine.validate().map_err(|e| map.config_error(&e))?;

    let st = &mut cfg.server;
    if st.workers == 0 || st.workers > MAX_WORKERS {
        return Err(map.error(&map.workers, format!("workers must be 1 to {MAX_WORKERS}")));
    }
    if st.compact_interval == 0 {
        return Err(map.error(&map.compact_interval, "compact_interval must be at least 1 second"));
    }
    if st.lease_file.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
        return Err(map.error(&map.lease_file, "lease_file is empty (leave it out to keep leases in memory)"));
    }

    let subnet_ifaces =
        cfg.engine.subnets.iter().zip(&map.subnets).filter_map(|(s, l)| Some((s.interface.as_ref()?, l)));
    if map.interfaces_explicit {
        for (i, name) in st.interfaces.iter().enumerate() {
            if st.interfaces[..i].contains(name) {
                let at = map.interfaces.get(i).cloned().unwrap_or_default();
                return Err(map.error(&at, format!("interface {name} is listed twice")));
            }
        }
        for (name, l) in subnet_ifaces {
            if !st.interfaces.contains(name) {
                return Err(map.error(&l.interface, format!("interface {name} is not in server.interfaces")));
            }
        }
    } else {
        st.interfaces.clear();
        for (name, _) in subnet_ifaces {
            if !st.interfaces.contains(name) {
                st.interfaces.push(name.clone());
            }
        }
    }
    if st.interfaces.is_empty() {
        return Err(map.error(&Loc::Unknown, "no interface to serve: set server.interfaces or a subnet's interface"));
    }

    // Two reservations for one client in one subnet: the engine would keep only one of them.
    for (s, l) in cfg.engine.subnets.iter().zip(&map.subnets) {
        for (k, r) in s.reservations.iter().enumerate() {
            if let Some(j) = s.reservations[..k].iter().position(|o| o.client == r.client) {
                let at = l.reservations.get(k).map(|x| x.0.clone()).unwrap_or_default();
                let first = l.reservations.get(j).and_then(|x| map.describe(&x.0, &at));
                let first = first.map(|w| format!(" ({w})")).unwrap_or_default();
                return Err(map
                    .error(&at, format!("{} already has a reservation in this subnet{first}", fmt_client(&r.client))));
            }
        }
    }
    Ok(cfg)
}

/// Parses and checks a configuration file's text; `file` names it in errors. Does not look at
/// the host (see [`check_host`]).
pub fn parse(text: &str, file: &str) -> Result<(ServerConfig, SourceMap), FileError> {
    let (cfg, map) = decode(text, file)?;
    Ok((finish(cfg, &map)?, map))
}

/// Reads the file's text; errors name the file.
pub(crate) fn read(path: &Path) -> Result<String, FileError> {
    std::fs::read_to_string(path).map_err(|e| FileError {
        file: path.display().to_string(),
        line: 0,
        column: 0,
        reason: format!("cannot read: {e}"),
    })
}

/// Reads, parses and checks a configuration file (not against the host: see [`check_host`]).
pub fn load(path: &Path) -> Result<(ServerConfig, SourceMap), FileError> {
    parse(&read(path)?, &path.display().to_string())
}

// ---------------------------------------------------------------------------------------------
// Host checks.

/// Checks the configuration against a host's interfaces, given as (name, IPv4 addresses) for
/// each interface that exists: every interface named exists, and each subnet's server id
/// (its own or the global one) is an address of its interface, or, for subnets reached through
/// relays, of some interface (replies to relays leave from that address).
pub fn check_interfaces(
    cfg: &ServerConfig,
    map: &SourceMap,
    host: &[(String, Vec<Ipv4Addr>)],
) -> Result<(), FileError> {
    let addrs_of = |name: &str| host.iter().find(|(n, _)| n == name).map(|(_, a)| a);
    let list = |addrs: &[Ipv4Addr]| {
        if addrs.is_empty() {
            "it has no IPv4 address".to_string()
        } else {
            let v: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
            format!("its IPv4 addresses: {}", v.join(", "))
        }
    };
    for (s, l) in cfg.engine.subnets.iter().zip(&map.subnets) {
        let sid = s.server_id.unwrap_or(cfg.engine.server_id);
        // Point at the subnet's own server id, else at the subnet (the global one may be right
        // for other subnets).
        let sid_at = l.server_id.or(&l.cidr);
        match &s.interface {
            Some(name) => {
                let Some(addrs) = addrs_of(name) else {
                    return Err(map.error(&l.interface, format!("interface {name} does not exist on this host")));
                };
                if !addrs.contains(&sid) {
                    return Err(map.error(
                        &sid_at,
                        format!("server id {sid} is not an address of interface {name} ({})", list(addrs)),
                    ));
                }
            }
            None => {
                if !host.iter().any(|(_, a)| a.contains(&sid)) {
                    let at = if s.server_id.is_some() { &l.server_id } else { &map.server_id };
                    return Err(map.error(at, format!("server id {sid} is not an address of this host")));
                }
            }
        }
    }
    for (i, name) in cfg.server.interfaces.iter().enumerate() {
        if addrs_of(name).is_none() {
            let at = map.interfaces.get(i).cloned().unwrap_or_default();
            return Err(map.error(&at, format!("interface {name} does not exist on this host")));
        }
    }
    Ok(())
}

/// This host's IPv4 addresses with the interface each is on (`getifaddrs`).
pub fn host_ipv4_addrs() -> io::Result<Vec<(String, Ipv4Addr)>> {
    let mut head: *mut libc::ifaddrs = core::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head into `head`, which we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, which is not freed yet.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_addr is non-null and points at a sockaddr of at least its family field.
        let family = unsafe { (*ifa.ifa_addr).sa_family };
        if i32::from(family) != libc::AF_INET {
            continue;
        }
        // SAFETY: an AF_INET ifa_addr points at a sockaddr_in; read unaligned to not rely on
        // the allocation's alignment.
        let sin = unsafe { core::ptr::read_unaligned(ifa.ifa_addr as *const libc::sockaddr_in) };
        // SAFETY: ifa_name is a non-null NUL-terminated string owned by the list.
        let name = unsafe { CStr::from_ptr(ifa.ifa_name) }.to_string_lossy();
        // Addresses with a label (`eth0:1`) are reported under the label; they belong to eth0.
        let name = name.split(':').next().unwrap_or_default().to_string();
        out.push((name, Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr))));
    }
    // SAFETY: `head` came from a successful getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

/// Whether an interface of that name exists on this host (it may have no IPv4 address).
pub fn interface_exists(name: &str) -> bool {
    let Ok(c) = CString::new(name) else { return false };
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    unsafe { libc::if_nametoindex(c.as_ptr()) != 0 }
}

/// Checks the configuration against this host's interfaces (see [`check_interfaces`]).
pub fn check_host(cfg: &ServerConfig, map: &SourceMap) -> Result<(), FileError> {
    let addrs =
        host_ipv4_addrs().map_err(|e| map.error(&Loc::Unknown, format!("cannot list this host's interfaces: {e}")))?;
    let mut host: Vec<(String, Vec<Ipv4Addr>)> = Vec::new();
    for (name, ip) in addrs {
        match host.iter_mut().find(|(n, _)| *n == name) {
            Some((_, list)) => list.push(ip),
            None => host.push((name, vec![ip])),
        }
    }
    // Interfaces without an IPv4 address do not appear above but exist.
    let named = cfg.server.interfaces.iter().chain(cfg.engine.subnets.iter().filter_map(|s| s.interface.as_ref()));
    for name in named {
        if !host.iter().any(|(n, _)| n == name) && interface_exists(name) {
            host.push((name.clone(), Vec::new()));
        }
    }
    check_interfaces(cfg, map, &host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SubnetOptions;

    const EXAMPLE: &str = include_str!("../../../examples/xdhcpd.toml");

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn pool(a: &str, b: &str) -> Pool {
        Pool { first: ip(a), last: ip(b) }
    }

    /// Parses `text` expecting an error; returns it.
    fn fails(text: &str) -> FileError {
        match parse(text, "t.toml") {
            Ok(_) => panic!("parsed:\n{text}"),
            Err(e) => e,
        }
    }

    /// The 1-based line of the first line of `text` containing `needle`.
    fn line_of(text: &str, needle: &str) -> usize {
        text.lines().position(|l| l.contains(needle)).expect(needle) + 1
    }

    const MINIMAL: &str = "server_id = \"100.64.0.1\"\n\
        [[subnet]]\n\
        subnet = \"100.64.0.0/24\"\n\
        interface = \"eth0\"\n\
        pools = [\"100.64.0.10-100.64.0.99\"]\n";

    #[test]
    fn example_file_parses_into_the_expected_model() {
        let (cfg, _) = parse(EXAMPLE, "xdhcpd.toml").unwrap_or_else(|e| panic!("{e}"));
        let mut s0 = Subnet::new(ip("100.64.0.0"), 24);
        s0.interface = Some("eth0".into());
        s0.lease_time = Some(7200);
        s0.renewal_time = Some(3600);
        s0.rebinding_time = Some(6300);
        s0.pools = vec![pool("100.64.0.10", "100.64.0.200"), pool("100.64.0.250", "100.64.0.250")];
        s0.options = SubnetOptions {
            routers: vec![ip("100.64.0.1")],
            dns_servers: vec![ip("100.64.0.2"), ip("100.64.0.3")],
            domain_name: Some("example.net".into()),
            mtu: Some(1500),
            ntp_servers: vec![ip("100.64.0.4")],
            raw: vec![
                (66, b"tftp.example.net".to_vec()),
                (150, vec![100, 64, 0, 4]),
                (43, vec![0x01, 0x04, 0xab, 0x00, 0x00, 0x01]),
                (23, vec![64]),
                (22, 576u16.to_be_bytes().to_vec()),
                (24, 600u32.to_be_bytes().to_vec()),
            ],
        };
        s0.reservations = vec![
            Reservation { client: ClientMatch::Mac([2, 0, 0, 0, 0, 1]), ip: ip("100.64.0.5") },
            Reservation { client: ClientMatch::ClientId(vec![1, 2, 0, 0, 0, 0, 2]), ip: ip("100.64.0.6") },
        ];
        let mut s1 = Subnet::new(ip("100.64.1.0"), 24);
        s1.interface = Some("eth1".into());
        s1.vlan = Some(100);
        s1.server_id = Some(ip("100.64.1.1"));
        s1.pools = vec![pool("100.64.1.10", "100.64.1.250")];
        s1.options.routers = vec![ip("100.64.1.1")];
        s1.options.dns_servers = vec![ip("100.64.0.2")];
        let mut s2 = Subnet::new(ip("198.18.0.0"), 16);
        s2.pools = vec![pool("198.18.0.10", "198.18.255.250")];
        s2.options.routers = vec![ip("198.18.0.1")];
        let engine = Config {
            server_id: ip("100.64.0.1"),
            authoritative: false,
            rapid_commit: false,
            offer_timeout: 10,
            decline_probation: 86_400,
            lease_time: 3600,
            subnets: vec![s0, s1, s2],
        };
        let server = ServerSettings {
            interfaces: vec!["eth0".into(), "eth1".into()],
            workers: 4,
            backend: Backend::Auto,
            lease_file: Some("/var/lib/xdhcpd/leases".into()),
            durability: Durability::Fsync,
            compact_interval: 3600,
            busy_poll: false,
            pin_workers: true,
        };
        assert_eq!(cfg, ServerConfig { engine, server });
    }

    #[test]
    fn every_key_maps_with_non_default_values() {
        let text = r#"
            server_id = "100.64.0.1"
            authoritative = true
            rapid_commit = true
            offer_timeout = 7
            decline_probation = 600
            lease_time = 900
            [server]
            interfaces = ["eth3", "eth2"]
            workers = 3
            backend = "xdp"
            lease_file = "/tmp/l"
            durability = "none"
            compact_interval = 60
            [[subnet]]
            subnet = "100.64.8.0/22"
            interface = "eth2"
            vlan = 7
            server_id = "100.64.8.1"
            lease_time = 1000
            renewal_time = 400
            rebinding_time = 800
            pools = ["100.64.8.5", "100.64.9.0 - 100.64.9.9"]
            routers = ["100.64.8.1", "100.64.8.2"]
            dns_servers = ["100.64.8.3"]
            domain_name = "a.example"
            mtu = 9000
            ntp_servers = ["100.64.8.4", "100.64.8.5"]
            option = [{ code = 200, u32 = 0x01020304 }, { code = 201, ip = ["198.18.0.1", "198.18.0.2"] },
                      { code = 202, hex = "" }, { code = 203, u16 = 258 }, { code = 204, u8 = 255 },
                      { code = 205, text = "é" }, { code = 206, hex = "0A:0b" }]
            reservation = [{ mac = "02-00-00-00-00-AB", ip = "100.64.8.9" }, { client_id = "ff", ip = "100.64.8.10" }]
        "#;
        let (cfg, _) = parse(text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
        let e = &cfg.engine;
        assert_eq!(
            (e.server_id, e.authoritative, e.rapid_commit, e.offer_timeout, e.decline_probation, e.lease_time),
            (ip("100.64.0.1"), true, true, 7, 600, 900)
        );
        assert_eq!(
            cfg.server,
            ServerSettings {
                interfaces: vec!["eth3".into(), "eth2".into()],
                workers: 3,
                backend: Backend::Xdp,
                lease_file: Some("/tmp/l".into()),
                durability: Durability::None,
                compact_interval: 60,
                busy_poll: false,
                pin_workers: false,
            }
        );
        let s = &e.subnets[0];
        assert_eq!(
            (s.network, s.prefix_len, s.interface.as_deref(), s.vlan),
            (ip("100.64.8.0"), 22, Some("eth2"), Some(7))
        );
        assert_eq!(
            (s.server_id, s.lease_time, s.renewal_time, s.rebinding_time),
            (Some(ip("100.64.8.1")), Some(1000), Some(400), Some(800))
        );
        assert_eq!(s.pools, vec![pool("100.64.8.5", "100.64.8.5"), pool("100.64.9.0", "100.64.9.9")]);
        assert_eq!(
            s.options,
            SubnetOptions {
                routers: vec![ip("100.64.8.1"), ip("100.64.8.2")],
                dns_servers: vec![ip("100.64.8.3")],
                domain_name: Some("a.example".into()),
                mtu: Some(9000),
                ntp_servers: vec![ip("100.64.8.4"), ip("100.64.8.5")],
                raw: vec![
                    (200, vec![1, 2, 3, 4]),
                    (201, vec![198, 18, 0, 1, 198, 18, 0, 2]),
                    (202, vec![]),
                    (203, vec![1, 2]),
                    (204, vec![255]),
                    (205, "é".as_bytes().to_vec()),
                    (206, vec![10, 11]),
                ],
            }
        );
        assert_eq!(
            s.reservations,
            vec![
                Reservation { client: ClientMatch::Mac([2, 0, 0, 0, 0, 0xab]), ip: ip("100.64.8.9") },
                Reservation { client: ClientMatch::ClientId(vec![0xff]), ip: ip("100.64.8.10") },
            ]
        );
    }

    #[test]
    fn defaults_apply_and_interfaces_come_from_subnets() {
        let text = format!("{MINIMAL}[[subnet]]\nsubnet = \"100.64.1.0/24\"\ninterface = \"eth1\"\n[[subnet]]\nsubnet = \"100.64.2.0/24\"\ninterface = \"eth0\"\n");
        let (cfg, _) = parse(&text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            cfg.engine,
            Config { subnets: cfg.engine.subnets.clone(), server_id: ip("100.64.0.1"), ..Config::default() }
        );
        let d = ServerSettings::default();
        assert!(d.workers >= 1);
        assert_eq!(cfg.server, ServerSettings { interfaces: vec!["eth0".into(), "eth1".into()], ..d });
    }

    #[test]
    fn syntax_error_and_unknown_keys_point_at_their_line() {
        let e = fails("server_id = \"100.64.0.1\"\nlease_time = = 3\n");
        assert_eq!((e.file.as_str(), e.line), ("t.toml", 2), "{e}");

        let text = format!("{MINIMAL}colour = \"blue\"\n");
        let e = fails(&text);
        assert_eq!((e.line, e.column), (6, 1), "{e}");
        assert!(e.reason.contains("unknown field `colour`"), "{e}");
        assert_eq!(e.to_string(), format!("t.toml:6:1: {}", e.reason));

        let text = "[server]\nworkers = 2\nbackend = \"dpdk\"\n";
        let e = fails(text);
        assert_eq!(e.line, 3, "{e}");

        let text = format!("{MINIMAL}[[subnet.reservation]]\nip = \"100.64.0.5\"\nmack = \"02:00:00:00:00:01\"\n");
        let e = fails(&text);
        assert_eq!(e.line, 8, "{e}");
        assert!(e.reason.contains("mack"), "{e}");
    }

    #[test]
    fn bad_values_point_at_their_line_and_column() {
        let e = fails(&MINIMAL.replace("100.64.0.0/24", "100.64.0.0/33"));
        assert_eq!((e.line, e.column), (3, 10), "{e}");
        assert!(e.reason.contains("not a subnet"), "{e}");

        let e = fails(&MINIMAL.replace("100.64.0.10-100.64.0.99", "100.64.0.10-100.64.0"));
        assert_eq!((e.line, e.column), (5, 10), "{e}");
        assert!(e.reason.contains("not an address range"), "{e}");

        let text = format!("{MINIMAL}\n[[subnet.reservation]]\nmac = \"02:00:00:00:01\"\nip = \"100.64.0.5\"\n");
        let e = fails(&text);
        assert_eq!(e.line, line_of(&text, "mac ="), "{e}");
        assert!(e.reason.contains("not a MAC address"), "{e}");

        let e = fails(&MINIMAL.replace("\"eth0\"", "\"eth0/x\""));
        assert_eq!(e.line, 4, "{e}");
        let e = fails(&format!("{MINIMAL}mtu = 60\n"));
        assert_eq!(e.line, 6, "{e}");
        let e = fails(&MINIMAL.replace("server_id = \"100.64.0.1\"", "server_id = \"255.255.255.255\""));
        assert_eq!(e.line, 1, "{e}");
    }

    #[test]
    fn overlapping_pools_are_reported_at_the_second_pool() {
        let text = "server_id = \"100.64.0.1\"\n\
            [[subnet]]\n\
            subnet = \"100.64.0.0/24\"\n\
            interface = \"eth0\"\n\
            pools = [\n  \"100.64.0.10-100.64.0.99\",\n  \"100.64.0.200\",\n  \"100.64.0.50-100.64.0.60\",\n]\n";
        let e = fails(text);
        assert_eq!((e.line, e.column), (8, 3), "{e}");
        assert_eq!(e.reason, "overlaps subnets[0].pools[0] (line 6)");
    }

    #[test]
    fn pool_outside_subnet_and_other_semantic_errors_are_located() {
        let text = format!("{MINIMAL}[[subnet]]\nsubnet = \"100.64.1.0/24\"\npools = [\"100.64.2.1-100.64.2.9\"]\n");
        let e = fails(&text);
        assert_eq!(e.line, 8, "{e}");
        assert!(e.reason.contains("outside subnet 100.64.1.0/24"), "{e}");

        // Per-subnet key, subnet-level error, top-level key, and a path with no element.
        let e = fails(&format!("{MINIMAL}vlan = 4095\n"));
        assert_eq!(e.line, 6, "{e}");
        let e = fails(&format!("{MINIMAL}renewal_time = 3500\n"));
        assert_eq!(e.line, 6, "{e}");
        let e = fails(&MINIMAL.replace("/24", "/31"));
        assert_eq!(e.line, 3, "{e}");
        let e = fails(&format!("offer_timeout = 1\n\nlease_time = 30\n{MINIMAL}"));
        assert_eq!((e.line, e.column), (3, 14), "{e}");
        let e = fails("server_id = \"100.64.0.1\"\n");
        assert_eq!((e.line, e.reason.as_str()), (1, "subnets: no subnet configured"), "{e}");
        let text = format!("{MINIMAL}[[subnet]]\nsubnet = \"100.64.0.128/25\"\n");
        let e = fails(&text);
        assert_eq!((e.line, e.reason.as_str()), (7, "overlaps subnets[0] (line 3)"), "{e}");
    }

    #[test]
    fn duplicate_reservations_are_refused() {
        let res = |mac: &str, ip: &str| format!("[[subnet.reservation]]\nmac = \"{mac}\"\nip = \"{ip}\"\n");
        let text =
            format!("{MINIMAL}{}{}", res("02:00:00:00:00:01", "100.64.0.5"), res("02:00:00:00:00:02", "100.64.0.5"));
        let e = fails(&text);
        assert_eq!(e.line, 11, "{e}");
        assert!(e.reason.contains("already reserved by subnets[0].reservations[0] (line 8)"), "{e}");

        let text =
            format!("{MINIMAL}{}{}", res("02:00:00:00:00:01", "100.64.0.5"), res("02:00:00:00:00:01", "100.64.0.6"));
        let e = fails(&text);
        assert_eq!(e.line, 10, "{e}");
        assert!(e.reason.contains("already has a reservation in this subnet (line 7)"), "{e}");
    }

    #[test]
    fn raw_option_rules() {
        let e = fails(&format!("{MINIMAL}[[subnet.option]]\ncode = 66\ntext = \"a\"\nu8 = 1\n"));
        assert_eq!(e.line, 6, "{e}");
        assert!(e.reason.contains("exactly one"), "{e}");
        let e = fails(&format!(
            "{MINIMAL}routers = [\"100.64.0.1\"]\n[[subnet.option]]\ncode = 3\nip = [\"100.64.0.2\"]\n"
        ));
        assert_eq!(e.line, 8, "{e}");
        let e = fails(&format!("{MINIMAL}option = [{{code = 9, u8 = 1}},\n  {{code = 9, u8 = 2}}]\n"));
        assert_eq!((e.line, e.reason.as_str()), (7, "option 9 is already set (line 6)"), "{e}");
        // Codes the server sets itself come back from Config::validate, at the code.
        let e = fails(&format!("{MINIMAL}[[subnet.option]]\ncode = 51\nu32 = 5\n"));
        assert_eq!((e.line, e.column), (7, 8), "{e}");
        let e = fails(&format!("{MINIMAL}[[subnet.option]]\ncode = 43\nhex = \"0g\"\n"));
        assert_eq!(e.line, 8, "{e}");
    }

    #[test]
    fn server_settings_are_checked() {
        // MINIMAL after a [server] table: its top-level key first, then its subnet.
        let (top, subnet) = MINIMAL.split_once('\n').unwrap();
        let e = fails(&format!("{top}\n[server]\nworkers = 0\n{subnet}"));
        assert_eq!(e.line, 3, "{e}");
        let e = fails(&format!("{top}\n[server]\ninterfaces = [\"eth1\"]\n{subnet}"));
        assert_eq!(e.line, 6, "{e}");
        assert_eq!(e.reason, "interface eth0 is not in server.interfaces");
        let e = fails(&format!("{top}\n[server]\ninterfaces = [\"eth0\", \"eth0\"]\n{subnet}"));
        assert_eq!((e.line, e.column), (3, 23), "{e}");
        let e = fails(&MINIMAL.replace("interface = \"eth0\"\n", ""));
        assert!(e.reason.contains("no interface to serve"), "{e}");
    }

    #[test]
    fn value_parsers() {
        assert_eq!(parse_hex("01:AB:ff").unwrap(), vec![1, 0xab, 0xff]);
        assert_eq!(parse_hex("01abff").unwrap(), vec![1, 0xab, 0xff]);
        assert!(parse_hex("1:ab").is_err() && parse_hex("abc").is_err() && parse_hex("éé").is_err());
        assert!(parse_mac("020000000001").is_err() && parse_mac("02:00:00:00:00:01:02").is_err());
        assert_eq!("100.64.0.0/10".parse::<Cidr>().unwrap().to_string(), "100.64.0.0/10");
        assert!("100.64.0.0".parse::<Cidr>().is_err() && "100.64.0.0/".parse::<Cidr>().is_err());
        assert!(parse_pool("100.64.0.1-").is_err() && parse_pool("").is_err());
    }

    fn host(list: &[(&str, &[&str])]) -> Vec<(String, Vec<Ipv4Addr>)> {
        list.iter().map(|(n, a)| (n.to_string(), a.iter().map(|s| ip(s)).collect())).collect()
    }

    #[test]
    fn host_check_against_fake_interfaces() {
        let text = format!(
            "{MINIMAL}[[subnet]]\nsubnet = \"100.64.1.0/24\"\ninterface = \"eth1\"\nserver_id = \"100.64.1.1\"\n\
             [[subnet]]\nsubnet = \"198.18.0.0/16\"\n"
        );
        let (cfg, map) = parse(&text, "t.toml").unwrap();
        let ok = host(&[("lo", &["127.0.0.1"]), ("eth0", &["100.64.0.1"]), ("eth1", &["100.64.1.9", "100.64.1.1"])]);
        check_interfaces(&cfg, &map, &ok).unwrap();

        let e = check_interfaces(&cfg, &map, &ok[..2]).unwrap_err();
        assert_eq!((e.line, e.reason.as_str()), (8, "interface eth1 does not exist on this host"), "{e}");

        let wrong = host(&[("eth0", &["100.64.0.1"]), ("eth1", &["100.64.1.9"])]);
        let e = check_interfaces(&cfg, &map, &wrong).unwrap_err();
        assert_eq!(e.line, 9, "{e}");
        assert!(
            e.reason.contains("100.64.1.1 is not an address of interface eth1 (its IPv4 addresses: 100.64.1.9)"),
            "{e}"
        );

        // The global server id on the wrong interface: the subnet using it is named.
        let swapped = host(&[("eth0", &[]), ("eth1", &["100.64.0.1", "100.64.1.1"])]);
        let e = check_interfaces(&cfg, &map, &swapped).unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.reason.contains("it has no IPv4 address"), "{e}");

        // A relayed subnet needs the server id somewhere on the host.
        let text =
            "server_id = \"100.64.0.1\"\n[server]\ninterfaces = [\"eth0\"]\n[[subnet]]\nsubnet = \"198.18.0.0/16\"\n";
        let (cfg, map) = parse(text, "t.toml").unwrap();
        let e = check_interfaces(&cfg, &map, &host(&[("eth0", &["100.64.0.2"])])).unwrap_err();
        assert_eq!(e.line, 1, "{e}");
        let e = check_interfaces(&cfg, &map, &host(&[("eth9", &["100.64.0.1"])])).unwrap_err();
        assert_eq!((e.line, e.column), (3, 15), "{e}");
    }

    #[test]
    fn host_interface_listing_works_here() {
        // Every Linux host has a loopback interface; its addresses (if any) are 127/8.
        assert!(interface_exists("lo"));
        assert!(!interface_exists("xdhcpd-none0"));
        for (name, a) in host_ipv4_addrs().unwrap() {
            assert!(!name.is_empty() && !name.contains(':'));
            if name == "lo" {
                assert!(a.is_loopback(), "{a}");
            }
        }
    }
}
