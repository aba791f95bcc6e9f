//! The steering contract (`dhcp_common`) holds on every side: for the same frames, the XDP
//! program (choosing an AF_XDP socket), the classic-BPF filter of the UDP path (choosing a
//! reuseport socket) and user space (`owner_of_message`, which the workers use) pick the same
//! worker, under the same key. Clients with a client identifier are owned by it, whatever their
//! hardware address. Real kernels decide here: frames go from a client namespace over a veth to
//! sockets of the real paths, and each worker's path reports what it got. The XDP program also
//! leaves DHCP for other hosts alone and drops first fragments (reassembled, no socket of its
//! path would get them). Needs root (skipped outside CI otherwise).

use dhcp_common::{counter, owner_of_message};
use dhcp_io::{PacketIo, MAX_MESSAGE};
use dhcp_user::client::{mac_for, ClientMsg};
use dhcp_user::wire::{ether, frame, options::MessageType};
use dhcp_user::xdp::Steering;
use dhcp_user::{udp, xsk};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};
use xdhcpd_tests::*;

/// Clients per worker count; each sends twice, with two hardware addresses when it has a
/// client identifier.
const CLIENTS: u32 = 150;
const MESSAGES: usize = 2 * CLIENTS as usize;

/// Client `n`'s identifier: none for a third of them, short, or longer than the 32 bytes the
/// steering hash reads.
fn client_id(n: u32) -> Option<Vec<u8>> {
    match n % 3 {
        0 => None,
        1 => Some([&[1u8][..], &mac_for(n ^ 0x00ab_0000)[..]].concat()),
        _ => Some((0..40).map(|i| (n as u8).wrapping_mul(31).wrapping_add(i)).collect()),
    }
}

/// The two messages of client `n`: a DISCOVER and a REQUEST, from two hardware addresses when
/// it has a client identifier (a CPE that changed its NIC keeps its identity).
fn messages(n: u32) -> [Vec<u8>; 2] {
    let id = client_id(n);
    let mut out = [vec![0u8; 600], vec![0u8; 600]];
    for (k, m) in out.iter_mut().enumerate() {
        let mac = if id.is_some() { mac_for(n * 2 + k as u32) } else { mac_for(n * 2) };
        let msg = ClientMsg { client_id: id.as_deref(), ..ClientMsg::new(mac, n) };
        let mt = if k == 0 { MessageType::Discover } else { MessageType::Request };
        let len = msg.write(mt, m).unwrap();
        m.truncate(len);
    }
    out
}

/// Sends every client's messages from the client side, unicast to the server's address (a
/// broadcast reaches every reuseport socket, unsteered).
fn send_all(pair: &Pair) {
    pair.client
        .spawn(move || {
            let sock = udp_on("c0", 68);
            for n in 0..CLIENTS {
                for m in messages(n) {
                    sock.send_to(&m, (SERVER_IP, 67)).unwrap();
                }
                if n % 16 == 15 {
                    // Stay within the receive rings.
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        })
        .join()
        .unwrap();
}

/// Receives on every worker's path until all messages arrived (or 5 s); returns, per worker,
/// the messages it got.
fn collect<I: PacketIo>(ios: &mut [I]) -> Vec<Vec<Vec<u8>>> {
    let mut seen: Vec<Vec<Vec<u8>>> = vec![Vec::new(); ios.len()];
    let mut frames = Vec::new();
    let mut scratch = Box::new([0u8; MAX_MESSAGE]);
    let start = Instant::now();
    while seen.iter().map(Vec::len).sum::<usize>() < MESSAGES && start.elapsed() < Duration::from_secs(5) {
        for (w, io) in ios.iter_mut().enumerate() {
            io.receive(&mut frames, 64);
            for mut f in std::mem::take(&mut frames) {
                if let Ok(d) = io.datagram(&mut f, &mut scratch) {
                    seen[w].push(d.request.to_vec());
                }
                io.release(&mut vec![f]);
            }
            io.wait(Duration::from_millis(1), None);
        }
    }
    seen
}

/// Every message reached the worker user space names; every worker got some; both messages of
/// a client reached one worker.
fn assert_agrees(path: &str, workers: u32, key: u32, seen: &[Vec<Vec<u8>>]) {
    let total: usize = seen.iter().map(Vec::len).sum();
    assert_eq!(total, MESSAGES, "{path}, {workers} workers: all messages received");
    for (w, msgs) in seen.iter().enumerate() {
        assert!(!msgs.is_empty(), "{path}, {workers} workers: worker {w} got nothing");
        for m in msgs {
            assert_eq!(owner_of_message(&m[..], workers, key), w as u32, "{path}, {workers} workers: {m:?}");
        }
    }
    for n in 0..CLIENTS {
        let [a, b] = messages(n);
        let at = |m: &Vec<u8>| seen.iter().position(|msgs| msgs.contains(m));
        assert_eq!(at(&a), at(&b), "{path}: client {n} (id {:?}) split over workers", client_id(n));
    }
}

#[test]
fn classic_bpf_and_user_space_pick_the_same_worker() {
    if !root_or_skip("classic_bpf_and_user_space_pick_the_same_worker") {
        return;
    }
    for workers in [2u32, 3, 4] {
        let key = 0x5eed_0000 ^ workers.wrapping_mul(0x9e37_79b9);
        let pair = Pair::new(&format!("cbpf{workers}"));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let server = pair.server.spawn(move || {
            let ports = udp::open_ports("s0", None, workers, key).expect("port 67 on s0");
            let mut ios: Vec<udp::UdpIo> = ports.into_iter().map(|p| udp::UdpIo::new(vec![p])).collect();
            ready_tx.send(()).unwrap();
            collect(&mut ios)
        });
        ready_rx.recv().unwrap();
        send_all(&pair);
        assert_agrees("classic BPF", workers, key, &server.join().unwrap());
    }
}

#[test]
fn xdp_program_and_user_space_pick_the_same_worker() {
    if !root_or_skip("xdp_program_and_user_space_pick_the_same_worker") {
        return;
    }
    for workers in [2u32, 3, 4] {
        let key = 0xfeed_0000 ^ workers.wrapping_mul(0x85eb_ca6b);
        let pair = Pair::new(&format!("xsk{workers}"));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let server = pair.server.spawn(move || {
            let mut set = xsk::open("s0", workers, xsk::Options::default()).expect("AF_XDP sockets on s0");
            let mut steering = Steering::attach("s0", 67).expect("attach");
            steering.set_hash_key(key).unwrap();
            steering.only_for(&[SERVER_IP]).unwrap();
            steering.register(&set.sockets).expect("register sockets");
            let mac = dhcp_user::sys::mac_address("s0").unwrap();
            let mut ios: Vec<xsk::XdpIo> =
                std::mem::take(&mut set.sockets).into_iter().map(|s| xsk::XdpIo::new(s, None, mac)).collect();
            ready_tx.send(()).unwrap();
            let seen = collect(&mut ios);
            // Detach before the sockets close, as the server does.
            drop(steering);
            drop(ios);
            seen
        });
        ready_rx.recv().unwrap();
        send_all(&pair);
        assert_agrees("XDP", workers, key, &server.join().unwrap());
    }
}

/// A DISCOVER frame from the client side to `dst` at the server's MAC, as a first fragment
/// when `fragment`.
fn raw_discover(server_mac: [u8; 6], dst: Ipv4Addr, fragment: bool) -> Vec<u8> {
    let mut f = vec![0u8; 1000];
    let at = frame::payload_offset(0);
    let len = ClientMsg::new(mac_for(7), 7).write(MessageType::Discover, &mut f[at..]).unwrap();
    let l2 = ether::Header { dst: server_mac, src: mac_for(7), ethertype: ether::ETHERTYPE_IPV4, ..Default::default() };
    let total = frame::write_headers(&mut f, &l2, (CLIENT_IP, 68), (dst, 67), len, 64).unwrap();
    f.truncate(total);
    if fragment {
        // More fragments follow (the IPv4 header's flags); the checksum is not the point.
        f[ether::HEADER_LEN + 6] |= 0x20;
    }
    f
}

#[test]
fn xdp_program_leaves_others_dhcp_alone_and_drops_fragments() {
    if !root_or_skip("xdp_program_leaves_others_dhcp_alone_and_drops_fragments") {
        return;
    }
    let pair = Pair::new("scope");
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let server = pair.server.spawn(move || {
        let mut set = xsk::open("s0", 1, xsk::Options::default()).expect("AF_XDP socket on s0");
        let mut steering = Steering::attach("s0", 67).expect("attach");
        steering.only_for(&[SERVER_IP]).unwrap();
        steering.register(&set.sockets).unwrap();
        let mac = dhcp_user::sys::mac_address("s0").unwrap();
        let mut ios: Vec<xsk::XdpIo> =
            std::mem::take(&mut set.sockets).into_iter().map(|s| xsk::XdpIo::new(s, None, mac)).collect();
        ready_tx.send(mac).unwrap();
        done_rx.recv().unwrap();
        let mut frames = Vec::new();
        ios[0].receive(&mut frames, 64);
        let got = frames.len();
        ios[0].release(&mut frames);
        (steering.counters().unwrap(), got)
    });
    let mac = ready_rx.recv().unwrap();
    pair.client
        .spawn(move || {
            send_frame("c0", &raw_discover(mac, Ipv4Addr::new(198, 18, 0, 77), false));
            send_frame("c0", &raw_discover(mac, SERVER_IP, true));
            send_frame("c0", &raw_discover(mac, Ipv4Addr::BROADCAST, false));
        })
        .join()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    done_tx.send(()).unwrap();
    let (c, got) = server.join().unwrap();
    let named: Vec<_> = c.named().collect();
    assert_eq!(c.get(counter::NOT_OURS), 1, "DHCP for another host passes: {named:?}");
    assert_eq!(c.get(counter::FRAGMENT), 1, "the first fragment is dropped and counted: {named:?}");
    assert_eq!(c.get(counter::REDIRECTED), 1, "only the broadcast reaches the worker: {named:?}");
    assert_eq!(got, 1);
}

#[test]
fn owner_ignores_everything_but_the_client() {
    // Same client, other transaction, flags, relay, hardware address: same owner.
    let id = [1u8, 2, 0, 0, 0, 0, 9];
    let mut a = [0u8; 600];
    let mut b = [0u8; 600];
    let la = ClientMsg { client_id: Some(&id), ..ClientMsg::new(mac_for(1), 1) }.write(MessageType::Discover, &mut a);
    let relayed = ClientMsg {
        giaddr: Ipv4Addr::new(198, 18, 5, 1),
        flags: 0x8000,
        client_id: Some(&id),
        ..ClientMsg::new(mac_for(2), 99)
    };
    let lb = relayed.write(MessageType::Request, &mut b).unwrap();
    let la = la.unwrap();
    for workers in 1..=16 {
        let o = owner_of_message(&a[..la], workers, 42);
        assert!(o < workers);
        assert_eq!(o, owner_of_message(&b[..lb], workers, 42));
    }
}
