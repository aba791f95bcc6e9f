//! Checks of a configuration against the host it is meant for: every interface it names exists,
//! and each subnet's server id is an address of its interface (replies leave from it). The rest
//! of the configuration module never looks at the host, so that `check-config --offline` can
//! check a file on another machine; this module must never change the configuration.

use core::net::Ipv4Addr;
use std::io;

use super::settings::ServerConfig;
use super::source::{FileError, Loc, SourceMap};

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
    for (i, s) in cfg.engine.subnets.iter().enumerate() {
        let sid = s.server_id.unwrap_or(cfg.engine.server_id);
        // Point at the subnet's own server id, else at the subnet (the global one may be right
        // for other subnets).
        let sid_at = format!("subnets[{i}].server_id");
        match &s.interface {
            Some(name) => {
                let Some(addrs) = addrs_of(name) else {
                    let at = format!("subnets[{i}].interface");
                    return Err(map.error_at(&at, format!("interface {name} does not exist on this host")));
                };
                if !addrs.contains(&sid) {
                    let why = format!("server id {sid} is not an address of interface {name} ({})", list(addrs));
                    return Err(map.error_at(&sid_at, why));
                }
            }
            None => {
                if !host.iter().any(|(_, a)| a.contains(&sid)) {
                    let at = if s.server_id.is_some() { sid_at.as_str() } else { "server_id" };
                    return Err(map.error_at(at, format!("server id {sid} is not an address of this host")));
                }
            }
        }
    }
    for (i, name) in cfg.server.interfaces.iter().enumerate() {
        if addrs_of(name).is_none() {
            let at = format!("server.interfaces[{i}]");
            return Err(map.error_at(&at, format!("interface {name} does not exist on this host")));
        }
    }
    Ok(())
}

/// An interface's addresses, for error messages.
fn list(addrs: &[Ipv4Addr]) -> String {
    if addrs.is_empty() {
        "it has no IPv4 address".to_string()
    } else {
        let v: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
        format!("its IPv4 addresses: {}", v.join(", "))
    }
}

/// This host's IPv4 addresses with the interface each is on (`getifaddrs`).
pub fn host_ipv4_addrs() -> io::Result<Vec<(String, Ipv4Addr)>> {
    let addrs = nix::ifaddrs::getifaddrs()?;
    Ok(addrs
        .filter_map(|a| {
            let ip = a.address.as_ref()?.as_sockaddr_in()?.ip();
            // Addresses with a label (`eth0:1`) are reported under the label; they belong to eth0.
            let name = a.interface_name.split(':').next().unwrap_or_default().to_string();
            Some((name, ip))
        })
        .collect())
}

/// Whether an interface of that name exists on this host (it may have no IPv4 address).
pub fn interface_exists(name: &str) -> bool {
    nix::net::if_::if_nametoindex(name).is_ok()
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::super::testing::{ip, MINIMAL};
    use super::*;

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
