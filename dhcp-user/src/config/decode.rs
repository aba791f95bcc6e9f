//! TOML text → the engine's [`Config`] and the server's [`ServerSettings`], recording in a
//! [`SourceMap`] where each value was written, so that every error, down to those of
//! [`Config::validate`], names its file, line and column. This module must never look at the
//! host (that is [`host`](super::host)) nor print: problems are returned as [`FileError`]s.

use std::path::{Path, PathBuf};

use toml::Spanned;

use super::schema::{RawControl, RawFile, RawLimits, RawOption, RawReservation, RawServer, RawSubnet};
use super::settings::{self, ServerConfig, ServerSettings};
use super::source::{FileError, Loc, SourceMap};
use super::value::{
    fmt_client, parse_hex, parse_ifname, parse_ip, parse_mac, parse_pool, parse_relay, parse_server_id,
};
use super::{cluster, isp};
use super::{Cidr, ClientClass, ClientMatch, Config, Limits, Reservation, Subnet};

/// Parses and checks a configuration file's text; `file` names it in errors. Does not look at
/// the host (see [`check_host`](super::check_host)).
pub fn parse(text: &str, file: &str) -> Result<(ServerConfig, SourceMap), FileError> {
    let (cfg, map) = decode(text, file)?;
    Ok((finish(cfg, &map)?, map))
}

/// Reads, parses and checks a configuration file (not against the host: see
/// [`check_host`](super::check_host)).
pub fn load(path: &Path) -> Result<(ServerConfig, SourceMap), FileError> {
    let (mut cfg, map) = parse(&read(path)?, &path.display().to_string())?;
    // Read again on reload: the server keeps access to it (see crate::privilege).
    cfg.server.confinement.config_file = Some(path.to_path_buf());
    Ok((cfg, map))
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

/// `parse` applied to a spanned string, errors at its position.
pub(super) fn value<T>(
    map: &SourceMap,
    s: &Spanned<String>,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, FileError> {
    parse(s.get_ref()).map_err(|why| map.error(&Loc::of(s), why))
}

fn ips(map: &SourceMap, list: &[Spanned<String>]) -> Result<Vec<core::net::Ipv4Addr>, FileError> {
    list.iter().map(|s| value(map, s, parse_ip)).collect()
}

fn relays(map: &SourceMap, list: &[Spanned<String>]) -> Result<Vec<Cidr>, FileError> {
    list.iter().map(|s| value(map, s, parse_relay)).collect()
}

/// A limits table, its place recorded at `path`.
fn limits(map: &mut SourceMap, path: &str, l: &Spanned<RawLimits>) -> Limits {
    map.set(path, Loc::of(l));
    let r = l.get_ref();
    Limits {
        key: r.key.into(),
        max_leases: r.max_leases,
        discover_rate: r.discover_rate,
        discover_burst: r.discover_burst,
    }
}

/// A plain value, its place recorded at `path`.
fn take<T: Copy>(map: &mut SourceMap, path: &str, v: &Spanned<T>) -> T {
    map.set(path, Loc::of(v));
    *v.get_ref()
}

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
        engine.server_id = value(&map, s, parse_server_id)?;
        map.set("server_id", Loc::of(s));
    }
    engine.authoritative = raw.authoritative.unwrap_or(engine.authoritative);
    engine.rapid_commit = raw.rapid_commit.unwrap_or(engine.rapid_commit);
    if let Some(v) = &raw.offer_timeout {
        engine.offer_timeout = take(&mut map, "offer_timeout", v);
    }
    if let Some(v) = &raw.decline_probation {
        engine.decline_probation = take(&mut map, "decline_probation", v);
    }
    if let Some(v) = &raw.lease_time {
        engine.lease_time = take(&mut map, "lease_time", v);
    }
    if let Some(d) = raw.decline {
        engine.decline = d.into();
    }
    if let Some(v) = &raw.decline_max_percent {
        engine.decline_max_percent = take(&mut map, "decline_max_percent", v);
    }
    engine.trusted_relays = relays(&map, &raw.trusted_relays)?;
    engine.limits = raw.limits.as_ref().map(|l| limits(&mut map, "limits", l));

    let mut server = ServerSettings::default();
    if let Some(rs) = &raw.server {
        decode_server(&mut map, rs, &mut server)?;
    }
    isp::decode_top(&mut map, &raw, &mut engine)?;
    engine.cluster = raw.cluster.as_ref().map(|c| cluster::decode_cluster(&mut map, c));
    if let Some(rc) = &raw.control {
        decode_control(&mut map, rc, &mut server.control)?;
    }
    for (i, rs) in raw.subnet.iter().enumerate() {
        let s = decode_subnet(&mut map, i, rs, &engine.classes)?;
        engine.subnets.push(s);
    }
    Ok((ServerConfig { engine, server }, map))
}

/// The `[server]` table over the defaults in `server`.
fn decode_server(map: &mut SourceMap, rs: &RawServer, server: &mut ServerSettings) -> Result<(), FileError> {
    if let Some(list) = &rs.interfaces {
        map.set("server.interfaces", Loc::of(list));
        for (i, name) in list.get_ref().iter().enumerate() {
            server.interfaces.push(value(map, name, parse_ifname)?);
            map.set(format!("server.interfaces[{i}]"), Loc::of(name));
        }
    }
    if let Some(w) = &rs.workers {
        server.workers = take(map, "server.workers", w);
    }
    server.backend = rs.backend.unwrap_or_default();
    if let Some(p) = &rs.lease_file {
        server.lease_file = Some(PathBuf::from(p.get_ref()));
        map.set("server.lease_file", Loc::of(p));
    }
    server.durability = rs.durability.unwrap_or_default();
    if let Some(c) = &rs.compact_interval {
        server.compact_interval = take(map, "server.compact_interval", c);
    }
    if let Some(c) = &rs.compact_size {
        server.compact_size = take(map, "server.compact_size", c);
    }
    server.busy_poll = rs.busy_poll.unwrap_or(false);
    server.pin_workers = rs.pin_workers.unwrap_or(false);
    server.kernel_renew = rs.kernel_renew.unwrap_or(false);
    server.confinement.user = rs.user.clone();
    Ok(())
}

/// The `[control]` table.
fn decode_control(
    map: &mut SourceMap,
    rc: &RawControl,
    c: &mut crate::control::ControlSettings,
) -> Result<(), FileError> {
    if let Some(l) = &rc.listen {
        c.listen = Some(value(map, l, |s: &str| {
            s.parse::<std::net::SocketAddr>().map_err(|_| format!("not an ADDRESS:PORT: {s}"))
        })?);
        map.set("control.listen", Loc::of(l));
    }
    if let Some(p) = &rc.token_file {
        c.token_file = Some(PathBuf::from(p.get_ref()));
        map.set("control.token_file", Loc::of(p));
    }
    Ok(())
}

/// `subnets[i]`, its places recorded under that path.
fn decode_subnet(
    map: &mut SourceMap,
    i: usize,
    rs: &Spanned<RawSubnet>,
    classes: &[ClientClass],
) -> Result<Subnet, FileError> {
    let rs = rs.get_ref();
    let at = format!("subnets[{i}]");
    let cidr: Cidr = value(map, &rs.subnet, str::parse)?;
    let mut s = Subnet::new(cidr.network, cidr.prefix_len);
    map.set(&at, Loc::of(&rs.subnet));
    if let Some(n) = &rs.interface {
        s.interface = Some(value(map, n, parse_ifname)?);
        map.set(format!("{at}.interface"), Loc::of(n));
    }
    if let Some(v) = &rs.vlan {
        s.vlan = Some(take(map, &format!("{at}.vlan"), v));
    }
    if let Some(v) = &rs.server_id {
        s.server_id = Some(value(map, v, parse_server_id)?);
        map.set(format!("{at}.server_id"), Loc::of(v));
    }
    for (field, key, v) in [
        (&mut s.lease_time, "lease_time", &rs.lease_time),
        (&mut s.renewal_time, "renewal_time", &rs.renewal_time),
        (&mut s.rebinding_time, "rebinding_time", &rs.rebinding_time),
    ] {
        if let Some(v) = v {
            *field = Some(take(map, &format!("{at}.{key}"), v));
        }
    }
    for (j, p) in rs.pools.iter().enumerate() {
        s.pools.push(value(map, p, parse_pool)?);
        map.set(format!("{at}.pools[{j}]"), Loc::of(p));
    }
    isp::decode_subnet_classes(map, &at, rs, &mut s, classes)?;
    s.trusted_relays = relays(map, &rs.trusted_relays)?;
    s.limits = rs.limits.as_ref().map(|l| limits(map, &format!("{at}.limits"), l));
    decode_named_options(map, rs, &mut s)?;
    decode_raw_options(map, &at, rs, &mut s)?;
    for (k, r) in rs.reservation.iter().enumerate() {
        let (client, client_at) = decode_client(map, r.get_ref())?;
        let ip = &r.get_ref().ip;
        s.reservations.push(Reservation { client, ip: value(map, ip, parse_ip)? });
        map.set(format!("{at}.reservations[{k}]"), Loc::of(ip));
        map.set(format!("{at}.reservations[{k}].client"), client_at);
    }
    Ok(s)
}

/// The options that have their own key.
fn decode_named_options(map: &SourceMap, rs: &RawSubnet, s: &mut Subnet) -> Result<(), FileError> {
    let o = &mut s.options;
    o.routers = ips(map, &rs.routers)?;
    o.dns_servers = ips(map, &rs.dns_servers)?;
    o.ntp_servers = ips(map, &rs.ntp_servers)?;
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
    Ok(())
}

/// Options that have their own key; a raw option with the same code as one of these set in the
/// same subnet would be ambiguous.
const NAMED_OPTIONS: [(u8, &str); 5] =
    [(3, "routers"), (6, "dns_servers"), (15, "domain_name"), (26, "mtu"), (42, "ntp_servers")];

/// `[[subnet.option]]`s, each code once and none that a named key of the subnet sets.
fn decode_raw_options(map: &mut SourceMap, at: &str, rs: &RawSubnet, s: &mut Subnet) -> Result<(), FileError> {
    let named_set = [
        !rs.routers.is_empty(),
        !rs.dns_servers.is_empty(),
        rs.domain_name.is_some(),
        rs.mtu.is_some(),
        !rs.ntp_servers.is_empty(),
    ];
    let raw = &mut s.options.raw;
    for opt in &rs.option {
        let (code, value) = decode_option(map, opt)?;
        let code_at = Loc::of(&opt.get_ref().code);
        if let Some(k) = raw.iter().position(|(c, _)| *c == code) {
            let first = map.describe(&map.loc(&format!("{at}.options.raw[{k}]")), &code_at).unwrap_or_default();
            return Err(map.error(&code_at, format!("option {code} is already set ({first})")));
        }
        if let Some(((_, key), _)) = NAMED_OPTIONS.iter().zip(named_set).find(|((c, _), set)| *c == code && *set) {
            return Err(map.error(&code_at, format!("option {code} is already set by `{key}` in this subnet")));
        }
        map.set(format!("{at}.options.raw[{}]", raw.len()), code_at);
        raw.push((code, value));
    }
    Ok(())
}

pub(super) fn decode_option(map: &SourceMap, opt: &Spanned<RawOption>) -> Result<(u8, Vec<u8>), FileError> {
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
        value(map, h, parse_hex)?
    } else if let Some(t) = &o.text {
        t.get_ref().as_bytes().to_vec()
    } else if let Some(list) = &o.ip {
        if list.get_ref().is_empty() {
            return Err(map.error(&Loc::of(list), "`ip` needs at least one address"));
        }
        ips(map, list.get_ref())?.iter().flat_map(|ip| ip.octets()).collect()
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

/// A reservation's client (`mac` or `client_id`) and where it was written.
fn decode_client(map: &SourceMap, r: &RawReservation) -> Result<(ClientMatch, Loc), FileError> {
    match (isp::decode_port_client(map, r)?, &r.mac, &r.client_id) {
        (Some(port), None, None) => return Ok(port),
        (Some((_, at)), _, _) => {
            return Err(map.error(&at, "a reservation matches by one of `mac`, `client_id`, `circuit_id`, `remote_id`"))
        }
        (None, _, _) => {}
    }
    match (&r.mac, &r.client_id) {
        (Some(m), None) => Ok((ClientMatch::Mac(value(map, m, parse_mac)?), Loc::of(m))),
        (None, Some(c)) => {
            let id = value(map, c, parse_hex)?;
            // Option 61 is at most 255 bytes and at least its type byte.
            if id.is_empty() || id.len() > 255 {
                return Err(map.error(&Loc::of(c), "client_id must be 1 to 255 bytes"));
            }
            Ok((ClientMatch::ClientId(id), Loc::of(c)))
        }
        (Some(_), Some(c)) => {
            Err(map.error(&Loc::of(c), "a reservation matches either `mac` or `client_id`, not both"))
        }
        (None, None) => {
            Err(map.error(&Loc::of(&r.ip), "reservation needs `mac`, `client_id`, `circuit_id` or `remote_id`"))
        }
    }
}

/// The whole-configuration checks, and the defaults that depend on the whole configuration
/// (the interface list): [`Config::validate`], then the server settings.
pub(crate) fn finish(mut cfg: ServerConfig, map: &SourceMap) -> Result<ServerConfig, FileError> {
    cfg.engine.validate().map_err(|e| map.config_error(&e))?;
    settings::finish(&mut cfg, map)?;
    check_reservation_clients(&cfg.engine, map)?;
    Ok(cfg)
}

/// Two reservations for one client in one subnet: the engine would keep only one of them.
fn check_reservation_clients(engine: &Config, map: &SourceMap) -> Result<(), FileError> {
    for (i, s) in engine.subnets.iter().enumerate() {
        for (k, r) in s.reservations.iter().enumerate() {
            if let Some(j) = s.reservations[..k].iter().position(|o| o.client == r.client) {
                let client_at = |n: usize| map.loc(&format!("subnets[{i}].reservations[{n}].client"));
                let at = client_at(k);
                let first = map.describe(&client_at(j), &at).map(|w| format!(" ({w})")).unwrap_or_default();
                let reason = format!("{} already has a reservation in this subnet{first}", fmt_client(&r.client));
                return Err(map.error(&at, reason));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing::{fails, ip, line_of, pool, MINIMAL};
    use super::*;
    use crate::config::{Backend, LimitKey, SubnetOptions};
    use crate::journal::Durability;

    const EXAMPLE: &str = include_str!("../../../examples/xdhcpd.toml");

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
        s1.classes = vec!["iptv".into()];
        let mut s2 = Subnet::new(ip("198.18.0.0"), 16);
        s2.pools = vec![pool("198.18.0.10", "198.18.254.250"), pool("198.18.255.10", "198.18.255.250")];
        s2.pool_classes = vec![(1, vec!["acme-cpe".into()])];
        s2.reservations = vec![
            Reservation { client: ClientMatch::CircuitId(b"olt-1/0/7".to_vec()), ip: ip("198.18.0.5") },
            Reservation { client: ClientMatch::RemoteId(vec![0, 0x1a, 0x2b, 0x3c]), ip: ip("198.18.0.6") },
        ];
        s2.options.routers = vec![ip("198.18.0.1")];
        s2.trusted_relays = vec!["198.18.9.1/32".parse().unwrap()];
        s2.limits =
            Some(Limits { key: LimitKey::RemoteId, max_leases: Some(2), discover_rate: None, discover_burst: None });
        let engine = Config {
            trusted_relays: vec!["198.18.2.1/32".parse().unwrap(), "198.18.3.0/24".parse().unwrap()],
            limits: Some(Limits {
                key: LimitKey::CircuitId,
                max_leases: Some(4),
                discover_rate: Some(10),
                discover_burst: Some(20),
            }),
            server_id: ip("100.64.0.1"),
            authoritative: false,
            rapid_commit: false,
            offer_timeout: 10,
            decline_probation: 86_400,
            lease_time: 3600,
            subnets: vec![s0, s1, s2],
            leasequery: true,
            leasequery_from: vec!["198.18.4.10/32".parse().unwrap()],
            classes: example_classes(),
            ..Config::default()
        };
        let server = ServerSettings {
            interfaces: vec!["eth0".into(), "eth1".into()],
            workers: 4,
            backend: Backend::Auto,
            lease_file: Some("/var/lib/xdhcpd/leases".into()),
            durability: Durability::Fsync,
            compact_interval: 3600,
            compact_size: 64 << 20,
            accept_damaged_journal: false,
            busy_poll: false,
            pin_workers: true,
            confinement: Default::default(),
            control: crate::control::ControlSettings {
                listen: Some("127.0.0.1:9767".parse().unwrap()),
                token_file: None,
            },
            kernel_renew: false,
        };
        assert_eq!(cfg, ServerConfig { engine, server });
    }

    fn example_classes() -> Vec<ClientClass> {
        vec![
            ClientClass {
                name: "acme-cpe".into(),
                vendor_class: Some(b"acme".to_vec()),
                options: vec![
                    (43, vec![1, 4, 0xc6, 0x12, 0, 2]),
                    (125, vec![0, 0, 0x0d, 0xe9, 5, 1, 3, b'a', b'b', b'c']),
                ],
                ..ClientClass::default()
            },
            ClientClass {
                name: "iptv".into(),
                user_class: Some(b"iptv".to_vec()),
                options: vec![(66, b"tftp.iptv.example.net".to_vec())],
                ..ClientClass::default()
            },
            ClientClass {
                name: "lab".into(),
                remote_id: Some(b"olt-9".to_vec()),
                chaddr_prefix: Some(vec![0, 0x11, 0x22]),
                options: vec![(6, vec![198, 18, 0, 53])],
                ..ClientClass::default()
            },
        ]
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
            [control]
            listen = "198.18.5.1:9000"
            token_file = "/tmp/token"
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
                compact_size: 64 << 20,
                accept_damaged_journal: false,
                busy_poll: false,
                pin_workers: false,
                confinement: Default::default(),
                control: crate::control::ControlSettings {
                    listen: Some("198.18.5.1:9000".parse().unwrap()),
                    token_file: Some("/tmp/token".into()),
                },
                kernel_renew: false,
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
    fn safety_settings_are_checked_where_they_are_written() {
        let text = format!("decline = \"maybe\"\n{MINIMAL}");
        assert_eq!(fails(&text).line, 1);
        let text = format!("trusted_relays = [\"198.18.2.x\"]\n{MINIMAL}");
        assert!(fails(&text).reason.contains("not a relay address"));
        let text = format!("{MINIMAL}\n[subnet.limits]\nkey = \"vlan\"\nmax_leases = 0\n");
        let e = fails(&text);
        assert_eq!(e.line, line_of(&text, "[subnet.limits]"), "{e}");
        assert!(e.reason.contains("at least 1"), "{e}");
        let text = format!("lease_time = 4294967295\n{MINIMAL}");
        let e = fails(&text);
        assert_eq!(e.line, 1, "{e}");
        assert!(e.reason.contains("infinite leases are not supported"), "{e}");
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
}
