//! Fixtures shared by the benchmarks in this package (see BENCHMARKS.md for the numbers).

pub mod journal_load;
pub mod lease_dir;

use dhcp_user::client::{mac_for, ClientMsg};
use dhcp_user::config::{Config, Pool, Subnet};
use dhcp_user::engine::{Engine, Ingress, LeaseEvent, Outcome, Seconds, Shared};
use dhcp_user::wire::options::{code, MessageType};
use std::net::Ipv4Addr;
use std::sync::Arc;

pub const T0: Seconds = 1_800_000_000;
pub const SERVER: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 1);
pub const OTHER_SERVER: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 2);

/// True when run by `cargo bench` (criterion passes `--bench`), false under `cargo test`,
/// where benchmarks run once on small sizes to prove they work.
pub fn measuring() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// One subnet with one pool, typical options.
pub fn config(network: Ipv4Addr, prefix_len: u8, first: Ipv4Addr, last: Ipv4Addr, offer_timeout: u32) -> Config {
    let mut s = Subnet::new(network, prefix_len);
    s.pools.push(Pool { first, last });
    s.options.routers = vec![SERVER];
    s.options.dns_servers = vec![Ipv4Addr::new(100, 64, 0, 53), Ipv4Addr::new(100, 64, 0, 54)];
    s.options.domain_name = Some("isp.example".into());
    s.options.mtu = Some(1500);
    Config { server_id: SERVER, offer_timeout, lease_time: 86_400, subnets: vec![s], ..Config::default() }
}

/// A /10 in the shared address space: 4,194,302 pool addresses.
pub fn config_cgnat(offer_timeout: u32) -> Config {
    config(
        Ipv4Addr::new(100, 64, 0, 0),
        10,
        Ipv4Addr::new(100, 64, 0, 10),
        Ipv4Addr::new(100, 127, 255, 254),
        offer_timeout,
    )
}

/// A /8 of class E space (240/8, never routed: these benchmarks run in memory and send
/// nothing) for pools above the 4M addresses of 100.64/10: 16,777,200 pool addresses.
pub fn config_large(offer_timeout: u32) -> Config {
    config(
        Ipv4Addr::new(240, 0, 0, 0),
        8,
        Ipv4Addr::new(240, 0, 0, 10),
        Ipv4Addr::new(240, 255, 255, 250),
        offer_timeout,
    )
}

pub fn engine(cfg: &Config, capacity: usize) -> Engine {
    Engine::new(Arc::new(Shared::new(cfg, 1).expect("valid config")), T0, capacity)
}

/// Writes the message of client `n` into `buf`.
pub fn client_msg(n: u32, mt: MessageType, options: &[(u8, &[u8])], buf: &mut [u8]) -> usize {
    let m = ClientMsg { options, ..ClientMsg::new(mac_for(n), n) };
    m.write(mt, buf).expect("buffer large enough")
}

/// The DISCOVER of the per-message benchmarks: a client identifier, a maximum message size, a
/// host name and the typical parameter request list.
pub fn discover_bytes() -> Vec<u8> {
    request_bytes(MessageType::Discover, &[])
}

/// A message of type `mt` from the benchmarks' client (see [`discover_bytes`]) with `extra`
/// options after its own.
pub fn request_bytes(mt: MessageType, extra: &[(u8, &[u8])]) -> Vec<u8> {
    let mut buf = vec![0u8; 600];
    let id = [1, 2, 0, 0, 0, 0, 1];
    let host: &[u8] = b"cpe-000001";
    let max_size = 1500u16.to_be_bytes();
    let mut options = vec![(code::MAX_MESSAGE_SIZE, &max_size[..]), (code::HOST_NAME, host)];
    options.extend_from_slice(extra);
    let m = ClientMsg { client_id: Some(&id), options: &options, ..ClientMsg::new(mac_for(1), 0xdead_beef) };
    let n = m.write(mt, &mut buf).expect("buffer large enough");
    buf.truncate(n);
    buf
}

/// DISCOVER then REQUEST for client `n`: returns the ACKed address.
pub fn dora(e: &mut Engine, n: u32, now: Seconds, events: &mut Vec<LeaseEvent>) -> Option<Ipv4Addr> {
    let mut msg = [0u8; 600];
    let mut out = [0u8; 1500];
    let ing = Ingress::broadcast(None);
    let len = client_msg(n, MessageType::Discover, &[], &mut msg);
    let Outcome::Reply(r) = e.handle(now, &ing, &msg[..len], &mut out, events) else { return None };
    let yiaddr = dhcp_user::wire::dhcp::DhcpPacket::new_checked(&out[..r.len]).ok()?.yiaddr();
    let len = client_msg(
        n,
        MessageType::Request,
        &[(code::SERVER_ID, &SERVER.octets()), (code::REQUESTED_IP, &yiaddr.octets())],
        &mut msg,
    );
    match e.handle(now, &ing, &msg[..len], &mut out, events) {
        Outcome::Reply(_) => Some(yiaddr),
        _ => None,
    }
}

/// Resident set size of this process in bytes (Linux `/proc/self/statm`).
pub fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm.split_whitespace().nth(1).and_then(|x| x.parse().ok()).unwrap_or(0);
    pages * 4096
}
