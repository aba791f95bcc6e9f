//! Engines on real threads sharing one address space, as the server's workers will: clients are
//! sharded by the chaddr hash, some take another server's offer, some decline or release, and
//! the clock moves so offers expire. Afterwards every engine's records must agree with the
//! shared address states: no address held twice, none held without a record, none lost.

use dhcp_user::client::{mac_for, ClientMsg};
use dhcp_user::config::{Config, Pool, Subnet};
use dhcp_user::engine::{Engine, Ingress, LeaseEvent, Outcome, Seconds, Shared};
use dhcp_user::lease::space::Status;
use dhcp_user::lease::{ClientKey, LeaseState};
use dhcp_user::wire::dhcp::DhcpPacket;
use dhcp_user::wire::options::{code, MessageType};
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Barrier};

const T0: Seconds = 1_800_000_000;
const SERVER: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 1);
const OTHER: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 2);
const POOL: u32 = 500;
const CLIENTS: u32 = 2_000;
const WORKERS: u32 = 4;

fn config() -> Config {
    let mut s = Subnet::new(Ipv4Addr::new(100, 64, 0, 0), 20);
    let first = Ipv4Addr::new(100, 64, 1, 0);
    s.pools.push(Pool { first, last: Ipv4Addr::from(u32::from(first) + POOL - 1) });
    Config {
        server_id: SERVER,
        offer_timeout: 2,
        decline_probation: 30,
        lease_time: 60,
        subnets: vec![s],
        ..Config::default()
    }
}

/// One worker's life: rounds of client actions, the clock advancing a second per round.
fn worker(shared: Arc<Shared>, me: usize, start: Arc<Barrier>) -> (Engine, Vec<LeaseEvent>) {
    let mut e = Engine::new(shared.clone(), T0, 1024);
    let mut events = Vec::new();
    let mut buf = [0u8; 600];
    let mut out = [0u8; 1500];
    let ing = Ingress::broadcast(None);
    let mine: Vec<u32> = (0..CLIENTS)
        .filter(|&n| {
            let len = ClientMsg::new(mac_for(n), n).write(MessageType::Discover, &mut buf).unwrap();
            shared.worker_of(&buf[..len]) == me
        })
        .collect();
    start.wait();
    let mut send = |e: &mut Engine, events: &mut Vec<LeaseEvent>, now, n: u32, mt, ciaddr, opts: &[(u8, &[u8])]| {
        let m = ClientMsg { ciaddr, options: opts, ..ClientMsg::new(mac_for(n), n) };
        let len = m.write(mt, &mut buf).unwrap();
        match e.handle(now, &ing, &buf[..len], &mut out, events) {
            Outcome::Reply(r) => Some(DhcpPacket::new_checked(&out[..r.len]).unwrap().yiaddr()),
            _ => None,
        }
    };
    for round in 0..100u32 {
        let now = T0 + round;
        // Each client acts every fourth second: offers left alone outlive their 2 s timeout.
        // One client in five leaves after 30 s: its lease must expire.
        for &n in mine.iter().filter(|&&n| (n + round) % 4 == 0 && !(n % 5 == 0 && round >= 30)) {
            let Some(ip) = send(&mut e, &mut events, now, n, MessageType::Discover, Ipv4Addr::UNSPECIFIED, &[]) else {
                continue;
            };
            let any = Ipv4Addr::UNSPECIFIED;
            match (n + round / 4) % 7 {
                // Takes another server's offer: ours must be released.
                0 | 1 => {
                    let o: [(u8, &[u8]); 2] =
                        [(code::SERVER_ID, &OTHER.octets()), (code::REQUESTED_IP, &[198, 18, 0, 1])];
                    send(&mut e, &mut events, now, n, MessageType::Request, any, &o);
                }
                // Never comes back: the offer times out.
                2 => {}
                // Accepts, then sometimes declines or releases.
                k => {
                    let o: [(u8, &[u8]); 2] = [(code::SERVER_ID, &SERVER.octets()), (code::REQUESTED_IP, &ip.octets())];
                    if send(&mut e, &mut events, now, n, MessageType::Request, any, &o).is_some() {
                        let sid: [(u8, &[u8]); 1] = [(code::SERVER_ID, &SERVER.octets())];
                        if k == 3 && round % 5 == 0 {
                            let d: [(u8, &[u8]); 2] = [sid[0], (code::REQUESTED_IP, &ip.octets())];
                            send(&mut e, &mut events, now, n, MessageType::Decline, any, &d);
                        } else if k == 4 {
                            send(&mut e, &mut events, now, n, MessageType::Release, ip, &sid);
                        }
                    }
                }
            }
        }
        e.handle_timeout(now, &mut events);
    }
    (e, events)
}

#[test]
fn engines_on_threads_keep_the_address_space_consistent() {
    let shared = Arc::new(Shared::new(&config(), WORKERS).unwrap());
    let start = Arc::new(Barrier::new(WORKERS as usize));
    let handles: Vec<_> = (0..WORKERS as usize)
        .map(|w| {
            let (shared, start) = (shared.clone(), start.clone());
            std::thread::spawn(move || worker(shared, w, start))
        })
        .collect();
    let results: Vec<(Engine, Vec<LeaseEvent>)> = handles.into_iter().map(|h| h.join().unwrap()).collect();

    // Who holds what, according to the engines' own records.
    let mut holder: HashMap<Ipv4Addr, ClientKey> = HashMap::new();
    let mut declined = 0;
    for n in 0..CLIENTS {
        let key = ClientKey::from_mac(&mac_for(n));
        let found: Vec<_> = results.iter().filter_map(|(e, _)| e.lookup(&key)).collect();
        assert!(found.len() <= 1, "client {n} has records in two workers");
        if let Some(&(ip, state, _)) = found.first() {
            assert!(matches!(state, LeaseState::Offered | LeaseState::Bound));
            assert!(holder.insert(ip, key).is_none(), "{ip} held by two clients");
            assert_eq!(shared.space().status(ip), Some(Status::Held), "{ip} has a record but is not held");
        }
    }
    for (_, events) in &results {
        declined += events.iter().filter(|e| e.kind == dhcp_user::engine::EventKind::Declined).count();
    }
    let [free, held, in_probation, reserved] = shared.space().census(0);
    assert_eq!(reserved, 0);
    assert_eq!(held, holder.len(), "every held address belongs to exactly one client record");
    assert_eq!(free + held + in_probation, POOL as usize, "no address lost");
    let records: usize = results.iter().map(|(e, _)| e.records()).sum();
    // Probation records stay until their timer, also when their probation ended early (the
    // pool's share in probation is capped, and an empty pool takes its oldest back).
    assert!(records >= held + in_probation, "records = leases + offers + probations (+ ended early)");
    let stats = results.iter().fold(dhcp_user::engine::Stats::default(), |mut a, (e, _)| {
        a.add(e.stats());
        a
    });
    // The scenario really exercised the paths this test is about.
    assert!(stats.offers_released_foreign > 100, "{stats:?}");
    assert!(stats.offers_expired > 10, "{stats:?}");
    assert!(stats.leases_expired > 10, "{stats:?}");
    assert!(stats.allocation_fail > 0, "the pool ran dry at times: {stats:?}");
    assert!(declined > 0 && stats.release_received > 0, "{stats:?}");
    assert!(results.iter().all(|(e, _)| e.stats().received > 0), "every worker served");
}
