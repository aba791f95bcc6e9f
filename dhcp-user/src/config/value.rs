//! Parsers for the values written as text in the file and on the command line: subnets, pools,
//! addresses, hex bytes, MAC addresses, interface names. Each says in its error what it
//! expected. They parse one value; they must never look at the rest of the configuration (that
//! is [`Config::validate`](super::Config::validate)) or at the host.

use core::net::Ipv4Addr;

use super::{Cidr, ClientMatch, Pool};

/// A trusted relay: an address, or a range of them written `ADDRESS/PREFIX`.
pub fn parse_relay(s: &str) -> Result<Cidr, String> {
    if s.contains('/') {
        return s.parse();
    }
    let network =
        s.trim().parse().map_err(|_| format!("not a relay address: {s:?} (expected 198.18.2.1 or 198.18.2.0/24)"))?;
    Ok(Cidr { network, prefix_len: 32 })
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

pub(crate) fn parse_server_id(s: &str) -> Result<Ipv4Addr, String> {
    check_server_id(parse_ip(s)?)
}

/// A pool: `FIRST-LAST` (inclusive) or a single address. Order and subnet membership are
/// checked by [`Config::validate`](super::Config::validate).
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

/// A reservation's client as written in the file, for error messages.
pub(crate) fn fmt_client(c: &ClientMatch) -> String {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(":");
    match c {
        ClientMatch::Mac(m) => format!("mac {}", hex(m)),
        ClientMatch::ClientId(id) => format!("client_id {}", hex(id)),
        ClientMatch::CircuitId(id) => format!("circuit_id {}", hex(id)),
        ClientMatch::RemoteId(id) => format!("remote_id {}", hex(id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
