//! The steering contract (`dhcp_common`) holds on every side: for the same frames, the XDP
//! program (choosing an AF_XDP socket), the classic-BPF filter of the UDP path (choosing a
//! reuseport socket) and user space (`owner_of_message`, which the workers and lease recovery
//! use) pick the same worker. Real kernels decide here: frames go from a client namespace over
//! a veth to sockets of the real paths, and each worker's path reports what it got.
//! Needs root (skipped outside CI otherwise).

use dhcp_common::owner_of_message;
use dhcp_io::{PacketIo, MAX_MESSAGE};
use dhcp_user::client::{mac_for, ClientMsg};
use dhcp_user::wire::options::MessageType;
use dhcp_user::xdp::Steering;
use dhcp_user::{udp, xsk};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};
use xdhcpd_tests::*;

/// Messages sent per worker count.
const MESSAGES: u32 = 300;

/// Sends `MESSAGES` DISCOVERs of distinct clients from the client side, unicast to the server's
/// address (a broadcast would reach every reuseport socket, unsteered).
fn send_discovers(pair: &Pair, salt: u32) {
    pair.client
        .spawn(move || {
            let sock = udp_on("c0", 68);
            let mut msg = [0u8; 600];
            for n in 0..MESSAGES {
                let mac = mac_for(n.wrapping_mul(2_654_435_761) ^ salt);
                let len = ClientMsg::new(mac, n).write(MessageType::Discover, &mut msg).unwrap();
                sock.send_to(&msg[..len], (SERVER_IP, 67)).unwrap();
                if n % 32 == 31 {
                    // Stay within the receive rings.
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        })
        .join()
        .unwrap();
}

/// Receives on every worker's path until `MESSAGES` arrived (or 5 s); returns, per worker, the
/// owner user space computes for each message it got.
fn collect<I: PacketIo>(ios: &mut [I], workers: u32) -> Vec<Vec<u32>> {
    let mut seen: Vec<Vec<u32>> = vec![Vec::new(); ios.len()];
    let mut frames = Vec::new();
    let mut scratch = Box::new([0u8; MAX_MESSAGE]);
    let start = Instant::now();
    while seen.iter().map(Vec::len).sum::<usize>() < MESSAGES as usize && start.elapsed() < Duration::from_secs(5) {
        for (w, io) in ios.iter_mut().enumerate() {
            io.receive(&mut frames, 64);
            for mut f in std::mem::take(&mut frames) {
                if let Ok(d) = io.datagram(&mut f, &mut scratch) {
                    seen[w].push(owner_of_message(d.request, workers));
                }
                io.release(&mut vec![f]);
            }
            io.wait(Duration::from_millis(1), None);
        }
    }
    seen
}

/// Every message reached the worker user space names, and every worker got some.
fn assert_agrees(path: &str, workers: u32, seen: &[Vec<u32>]) {
    let total: usize = seen.iter().map(Vec::len).sum();
    assert_eq!(total, MESSAGES as usize, "{path}, {workers} workers: all messages received");
    for (w, owners) in seen.iter().enumerate() {
        assert!(!owners.is_empty(), "{path}, {workers} workers: worker {w} got nothing");
        let wrong = owners.iter().filter(|&&o| o != w as u32).count();
        assert_eq!(wrong, 0, "{path}, {workers} workers: worker {w} got {wrong} messages user space gives to others");
    }
}

#[test]
fn classic_bpf_and_user_space_pick_the_same_worker() {
    if !root_or_skip("classic_bpf_and_user_space_pick_the_same_worker") {
        return;
    }
    for workers in [2u32, 3, 4] {
        let pair = Pair::new(&format!("cbpf{workers}"));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let server = pair.server.spawn(move || {
            let ports = udp::open_ports("s0", None, workers).expect("port 67 on s0");
            let mut ios: Vec<udp::UdpIo> = ports.into_iter().map(|p| udp::UdpIo::new(vec![p])).collect();
            ready_tx.send(()).unwrap();
            collect(&mut ios, workers)
        });
        ready_rx.recv().unwrap();
        send_discovers(&pair, workers);
        assert_agrees("classic BPF", workers, &server.join().unwrap());
    }
}

#[test]
fn xdp_program_and_user_space_pick_the_same_worker() {
    if !root_or_skip("xdp_program_and_user_space_pick_the_same_worker") {
        return;
    }
    for workers in [2u32, 3, 4] {
        let pair = Pair::new(&format!("xsk{workers}"));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let server = pair.server.spawn(move || {
            let mut set = xsk::open("s0", workers, xsk::Options::default()).expect("AF_XDP sockets on s0");
            let mut steering = Steering::attach("s0", 67).expect("attach");
            steering.register(&set.sockets).expect("register sockets");
            let mac = dhcp_user::sys::mac_address("s0").unwrap();
            let mut ios: Vec<xsk::XdpIo> =
                std::mem::take(&mut set.sockets).into_iter().map(|s| xsk::XdpIo::new(s, None, mac)).collect();
            ready_tx.send(()).unwrap();
            let seen = collect(&mut ios, workers);
            // Detach before the sockets close, as the server does.
            drop(steering);
            drop(ios);
            seen
        });
        ready_rx.recv().unwrap();
        send_discovers(&pair, workers);
        assert_agrees("XDP", workers, &server.join().unwrap());
    }
}

#[test]
fn owner_ignores_everything_but_the_client() {
    // Same client, different transaction, flags, relay: same owner; the bound is respected.
    let mac = mac_for(77);
    let mut a = [0u8; 600];
    let mut b = [0u8; 600];
    let la = ClientMsg::new(mac, 1).write(MessageType::Discover, &mut a).unwrap();
    let relayed = ClientMsg { giaddr: Ipv4Addr::new(198, 18, 5, 1), flags: 0x8000, ..ClientMsg::new(mac, 99) };
    let lb = relayed.write(MessageType::Request, &mut b).unwrap();
    for workers in 1..=16 {
        let o = owner_of_message(&a[..la], workers);
        assert!(o < workers);
        assert_eq!(o, owner_of_message(&b[..lb], workers));
    }
}
