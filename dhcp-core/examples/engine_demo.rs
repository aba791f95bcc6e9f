//! The engine demo run by `cargo xtask demo` until the I/O paths land: sharded engines on worker
//! threads serve emulated clients in memory, then the multi-server scenario shows what releasing
//! offers at once changes. Nothing is sent on any network.

use dhcp_core::client::{mac_for, ClientMsg};
use dhcp_core::config::{Config, Pool, Subnet};
use dhcp_core::engine::{Engine, Ingress, LeaseEvent, Outcome, Seconds, Shared, Silence};
use dhcp_core::wire::dhcp::DhcpPacket;
use dhcp_core::wire::options::{code, MessageType};
use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Instant;

const T0: Seconds = 1_800_000_000;
const SERVER: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 1);
const OTHER: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 2);

fn config(last: Ipv4Addr, offer_timeout: u32) -> Config {
    let mut s = Subnet::new(Ipv4Addr::new(100, 64, 0, 0), 10);
    s.pools.push(Pool { first: Ipv4Addr::new(100, 64, 0, 10), last });
    s.options.routers = vec![SERVER];
    s.options.dns_servers = vec![Ipv4Addr::new(100, 64, 0, 53)];
    Config { server_id: SERVER, offer_timeout, lease_time: 3600, subnets: vec![s], ..Config::default() }
}

fn msg(n: u32, mt: MessageType, options: &[(u8, &[u8])], buf: &mut [u8]) -> usize {
    ClientMsg { options, ..ClientMsg::new(mac_for(n), n) }.write(mt, buf).expect("fits")
}

struct Worker {
    engine: Engine,
    out: [u8; 1500],
    buf: [u8; 600],
    events: Vec<LeaseEvent>,
}

impl Worker {
    fn new(shared: Arc<Shared>, capacity: usize) -> Worker {
        Worker { engine: Engine::new(shared, T0, capacity), out: [0; 1500], buf: [0; 600], events: Vec::new() }
    }

    fn send(&mut self, now: Seconds, n: u32, mt: MessageType, options: &[(u8, &[u8])]) -> Option<Ipv4Addr> {
        let len = msg(n, mt, options, &mut self.buf);
        self.events.clear();
        match self.engine.handle(now, &Ingress::broadcast(None), &self.buf[..len], &mut self.out, &mut self.events) {
            Outcome::Reply(r) => DhcpPacket::new_checked(&self.out[..r.len]).ok().map(|p| p.yiaddr()),
            _ => None,
        }
    }

    fn dora(&mut self, now: Seconds, n: u32) -> Option<Ipv4Addr> {
        let offered = self.send(now, n, MessageType::Discover, &[])?;
        let opts: [(u8, &[u8]); 2] = [(code::SERVER_ID, &SERVER.octets()), (code::REQUESTED_IP, &offered.octets())];
        self.send(now, n, MessageType::Request, &opts)
    }
}

/// Part 1: `clients` DORAs spread over `workers` threads by the chaddr hash.
fn throughput(workers: u32, clients: u32) {
    let shared = Arc::new(Shared::new(&config(Ipv4Addr::new(100, 127, 255, 254), 10), workers).expect("valid"));
    let start = Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|w| {
            let shared = shared.clone();
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                let mut probe = [0u8; 600];
                let mut worker = Worker::new(shared.clone(), clients as usize / workers as usize * 2);
                for n in 0..clients {
                    let len = msg(n, MessageType::Discover, &[], &mut probe);
                    if shared.worker_of(&probe[..len]) == w as usize {
                        mine.push(worker.dora(T0, n).expect("pool is large enough"));
                    }
                }
                mine
            })
        })
        .collect();
    let mut all = HashSet::new();
    let mut duplicates = 0;
    let mut per_worker = Vec::new();
    for h in handles {
        let mine = h.join().expect("worker thread");
        per_worker.push(mine.len());
        for ip in mine {
            if !all.insert(ip) {
                duplicates += 1;
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!("  {clients} emulated clients, {workers} worker threads (clients per worker: {per_worker:?})");
    println!("  leases granted: {}   duplicate addresses: {duplicates}", all.len());
    println!(
        "  {:.0} DORA/s in memory ({:.2} s, includes building the clients' messages and the workers' \
         share-filtering; no I/O)",
        clients as f64 / secs,
        secs
    );
}

/// Part 2: two servers on one segment; two clients in three take the other server's offer.
/// `release` = our behaviour (the REQUEST naming the other server releases our offer); without
/// it the engine never sees that REQUEST, which is what servers that drop it amount to: the
/// offer is held until its timeout. Returns (leased by us, clients we had nothing to offer).
fn multi_server(release: bool, hold: u32) -> (u32, u32) {
    let pool = 100u32;
    let last = Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 64, 0, 10)) + pool - 1);
    let shared = Arc::new(Shared::new(&config(last, hold), 1).expect("valid"));
    let mut w = Worker::new(shared, 1024);
    let (mut leased, mut no_offer) = (0, 0);
    // 300 clients arrive, 10 per second; clients 0, 3, 6, ... choose us: exactly the pool size.
    for n in 0..300u32 {
        let now = T0 + n / 10;
        w.engine.handle_timeout(now, &mut w.events);
        let Some(ip) = w.send(now, n, MessageType::Discover, &[]) else {
            no_offer += 1;
            continue;
        };
        if n % 3 == 0 {
            let opts: [(u8, &[u8]); 2] = [(code::SERVER_ID, &SERVER.octets()), (code::REQUESTED_IP, &ip.octets())];
            if w.send(now, n, MessageType::Request, &opts).is_some() {
                leased += 1;
            }
        } else if release {
            let opts: [(u8, &[u8]); 2] = [(code::SERVER_ID, &OTHER.octets()), (code::REQUESTED_IP, &[198, 18, 0, 9])];
            let len = msg(n, MessageType::Request, &opts, &mut w.buf);
            let o = w.engine.handle(now, &Ingress::broadcast(None), &w.buf[..len], &mut w.out, &mut w.events);
            assert_eq!(o, Outcome::Silent(Silence::ForeignServer));
        }
    }
    (leased, no_offer)
}

fn main() {
    let workers = std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(2).clamp(1, 4);
    println!("xdhcpd engine demo (in memory, no I/O)");
    println!();
    println!("1. Throughput of the sans-I/O engine");
    throughput(workers, 400_000);
    println!();
    println!("2. Two servers on one segment: 300 clients (10/s), a 100-address pool; 100 clients take");
    println!("   our offer, 200 take the other server's (their REQUEST names the other server).");
    println!("   {:<46} {:>12} {:>16}", "behaviour", "leased by us", "no offer to give");
    for (label, release, hold) in [
        ("xdhcpd: release at once (RFC 2131 4.3.2)", true, 10),
        ("hold the offer 60 s (as dora does)", false, 60),
        ("hold the offer 120 s (as ISC dhcpd does)", false, 120),
    ] {
        let (leased, no_offer) = multi_server(release, hold);
        println!("   {label:<46} {leased:>12} {no_offer:>16}");
    }
    println!();
    println!("   'no offer to give': DISCOVERs that found the pool empty because offers made to clients");
    println!("   who had already gone to the other server were still held.");
}
