//! Renewals answered in the XDP program (`dhcp_common::renew`, run here on the very code the
//! program runs) against the engine: for the same renewal the two frames must be equal byte
//! for byte (the XDP path's framing of the engine's reply, `XdpIo::seal`, against the
//! program's rewrite of the request), over client identifiers, request lists, options,
//! RENEWING and REBINDING; and whatever the program is not sure of it passes up.

use dhcp_common::renew::{self, Scratch, AT};
use dhcp_core::client::{mac_for, ClientMsg};
use dhcp_core::config::{Config, Pool, Subnet};
use dhcp_core::engine::{Engine, Ingress, LeaseEvent, Outcome, Reply, Shared};
use dhcp_core::wire::{ether, frame, options::code, options::MessageType};
use dhcp_user::kernel_renew::{request_facts, template_of};
use std::net::Ipv4Addr;
use std::sync::Arc;

const NOW: u32 = 1_700_000_000;
const SERVER: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 1);
const SERVER_MAC: [u8; 6] = [0x02, 0x53, 0, 0, 0, 1];

fn engine() -> Engine {
    let mut s = Subnet::new(Ipv4Addr::new(100, 64, 0, 0), 24);
    s.pools.push(Pool { first: Ipv4Addr::new(100, 64, 0, 10), last: Ipv4Addr::new(100, 64, 0, 200) });
    s.lease_time = Some(3600);
    s.options.routers = vec![SERVER];
    s.options.dns_servers = vec![Ipv4Addr::new(100, 64, 0, 2), Ipv4Addr::new(100, 64, 0, 3)];
    s.options.domain_name = Some("example.test".into());
    s.options.mtu = Some(1500);
    s.options.ntp_servers = vec![Ipv4Addr::new(100, 64, 0, 4)];
    let cfg = Config { server_id: SERVER, subnets: vec![s], ..Config::default() };
    Engine::new(Arc::new(Shared::new(&cfg, 1).unwrap()), NOW, 64)
}

fn handle(e: &mut Engine, msg: &[u8], out: &mut [u8]) -> Reply {
    let mut events: Vec<LeaseEvent> = Vec::new();
    let ingress = Ingress::broadcast(None);
    match e.handle(NOW, &ingress, msg, out, &mut events) {
        Outcome::Reply(r) => r,
        o => panic!("no reply: {o:?}"),
    }
}

/// Binds a client through DISCOVER and REQUEST; returns its address and the ACK's template.
fn bind(e: &mut Engine, c: &ClientMsg<'_>) -> (Ipv4Addr, renew::Template) {
    let mut buf = [0u8; 1500];
    let mut out = [0u8; 1500];
    let n = c.write(MessageType::Discover, &mut buf).unwrap();
    let offer = handle(e, &buf[..n], &mut out);
    let ip = Ipv4Addr::new(out[16], out[17], out[18], out[19]);
    assert_eq!(offer.kind, MessageType::Offer);
    let opts = [(code::REQUESTED_IP, &ip.octets()[..]), (code::SERVER_ID, &SERVER.octets()[..])];
    let req = ClientMsg { options: &opts, ..*c };
    let n = req.write(MessageType::Request, &mut buf).unwrap();
    let ack = handle(e, &buf[..n], &mut out);
    assert_eq!(ack.kind, MessageType::Ack);
    (ip, template_of(&out[..ack.len], ack.from).expect("a template"))
}

fn l2(dst: [u8; 6], src: [u8; 6]) -> ether::Header {
    ether::Header { dst, src, vlans: Default::default(), vlan_count: 0, ethertype: ether::ETHERTYPE_IPV4 }
}

/// The renewal as a frame from the client: unicast to the server (RENEWING) or broadcast
/// (REBINDING).
fn renewal_frame(c: &ClientMsg<'_>, ip: Ipv4Addr, rebinding: bool) -> Vec<u8> {
    let mut buf = vec![0u8; 1500];
    let at = frame::payload_offset(0);
    let n = ClientMsg { ciaddr: ip, ..*c }.write(MessageType::Request, &mut buf[at..]).unwrap();
    let (mac, dst) = if rebinding { ([0xff; 6], Ipv4Addr::BROADCAST) } else { (SERVER_MAC, SERVER) };
    let len = frame::write_headers(&mut buf, &l2(mac, c.mac), (ip, 68), (dst, 67), n, 64).unwrap();
    buf.truncate(len);
    buf
}

/// What the XDP path sends for the engine's answer (as `XdpIo::seal` frames it).
fn engine_frame(e: &mut Engine, request: &[u8]) -> Vec<u8> {
    let at = frame::payload_offset(0);
    let mut buf = vec![0u8; 1500];
    let r = handle(e, &request[at..], &mut buf[at..]);
    assert_eq!(r.kind, MessageType::Ack);
    let dst = dhcp_io::reply_mac(&r.to, request[6..12].try_into().unwrap());
    let len = frame::write_headers(&mut buf, &l2(dst, SERVER_MAC), (r.from, 67), (r.to.ip(), r.to.port()), r.len, 64)
        .unwrap();
    buf.truncate(len);
    buf
}

/// What the program sends: `None` if it passes the request up.
fn kernel_frame(request: &[u8], ip: Ipv4Addr, t: &renew::Template) -> Option<Vec<u8>> {
    let mut buf = Scratch::default();
    buf.0[AT..AT + request.len()].copy_from_slice(request);
    let f = renew::plain_renewal(&buf, AT + 14, request.len())?;
    let (key, prl) = request_facts(&request[frame::payload_offset(0)..]).unwrap();
    assert_eq!(renew::key(&buf, &f), key, "the program's key is the worker's");
    assert_eq!(f.prl_hash, prl);
    assert_eq!(buf.0[f.dhcp + 12..f.dhcp + 16], ip.octets());
    let len = renew::write_reply(&mut buf, AT + 14, &f, &key, (t, SERVER_MAC), renew::sum16)?;
    Some(buf.0[AT..AT + len].to_vec())
}

fn fields_differ(a: &[u8], b: &[u8]) -> Vec<usize> {
    (0..a.len().max(b.len())).filter(|&i| a.get(i) != b.get(i)).collect()
}

#[test]
fn kernel_replies_equal_the_engines_byte_for_byte() {
    let long_prl: Vec<u8> = (1..=60).collect();
    let ids: [Option<&[u8]>; 3] = [None, Some(&[1, 2, 0, 0, 0, 0, 7]), Some(&[0xff; 32])];
    let prls: [&[u8]; 4] = [dhcp_core::client::TYPICAL_PRL, &[], &[6, 3, 1, 42, 15], &long_prl];
    let mut e = engine();
    let mut n = 0;
    for id in ids {
        for prl in prls {
            for flags in [0u16, 0x8000] {
                n += 1;
                let c = ClientMsg { client_id: id, prl, flags, ..ClientMsg::new(mac_for(n), 0x1000 + n) };
                let (ip, t) = bind(&mut e, &c);
                for rebinding in [false, true] {
                    let req = renewal_frame(&ClientMsg { xid: 0x9000 + n, ..c }, ip, rebinding);
                    let kernel = kernel_frame(&req, ip, &t).expect("a plain renewal is answered");
                    let user = engine_frame(&mut e, &req);
                    assert_eq!(fields_differ(&kernel, &user), Vec::<usize>::new(), "client {n} id {id:?} prl {prl:?}");
                    frame::UdpFrame::parse(&kernel).expect("checksums verify");
                }
            }
        }
    }
}

#[test]
fn what_the_program_is_not_sure_of_goes_up() {
    let mut e = engine();
    let c = ClientMsg::new(mac_for(1), 1);
    let (ip, t) = bind(&mut e, &c);
    let ok = renewal_frame(&c, ip, false);
    assert!(kernel_frame(&ok, ip, &t).is_some());
    let ri: &[u8] = &[1, 3, b'a', b'b', b'c'];
    let sid = [(code::SERVER_ID, &SERVER.octets()[..])];
    let req_ip = [(code::REQUESTED_IP, &ip.octets()[..])];
    let overload = [(52u8, &[1u8][..])];
    let long_id = [7u8; 33];
    let cases: [(&str, ClientMsg<'_>); 6] = [
        ("relay info", ClientMsg { relay_info: Some(ri), ..c }),
        ("server id (SELECTING)", ClientMsg { options: &sid, ..c }),
        ("requested address (INIT-REBOOT)", ClientMsg { options: &req_ip, ..c }),
        ("overload", ClientMsg { options: &overload, ..c }),
        ("relayed", ClientMsg { giaddr: Ipv4Addr::new(100, 64, 1, 1), ..c }),
        ("identifier over 32 bytes", ClientMsg { client_id: Some(&long_id), ..c }),
    ];
    for (what, m) in cases {
        assert!(kernel_frame(&renewal_frame(&m, ip, false), ip, &t).is_none(), "{what} went to the kernel path");
    }
    // A DISCOVER, a truncated frame, a frame with a UDP length past its end.
    let mut buf = vec![0u8; 1500];
    let at = frame::payload_offset(0);
    let n = ClientMsg { ciaddr: ip, ..c }.write(MessageType::Discover, &mut buf[at..]).unwrap();
    let len = frame::write_headers(&mut buf, &l2(SERVER_MAC, c.mac), (ip, 68), (SERVER, 67), n, 64).unwrap();
    assert!(kernel_frame(&buf[..len], ip, &t).is_none(), "discover");
    let mut scratch = Scratch::default();
    scratch.0[AT..AT + ok.len()].copy_from_slice(&ok);
    for cut in [14, 40, 42 + 239, ok.len() - 1] {
        assert!(renew::plain_renewal(&scratch, AT + 14, cut).is_none(), "cut at {cut}");
    }
    assert!(renew::plain_renewal(&scratch, AT + 14, ok.len()).is_some());
    let mut bad = scratch;
    bad[AT + 14] = 0x46; // IPv4 options: passed up
    assert!(renew::plain_renewal(&bad, AT + 14, ok.len()).is_none());
}

#[test]
fn the_template_is_cut_before_the_echoes() {
    let mut e = engine();
    let id: &[u8] = &[1, 2, 3];
    let (_, t) = bind(&mut e, &ClientMsg { client_id: Some(id), ..ClientMsg::new(mac_for(3), 3) });
    let opts = &t.options[..t.len as usize];
    assert_eq!(&opts[..3], &[53, 1, 5]);
    assert_eq!(t.lease_secs, 3600);
    assert_eq!(t.server, SERVER.octets());
    let codes: Vec<u8> = dhcp_core::wire::options::OptionIter::new(opts).map(|o| o.unwrap().0).collect();
    assert!(!codes.contains(&code::CLIENT_ID) && codes.contains(&code::SUBNET_MASK), "{codes:?}");
}

/// The real program on a veth pair: a renewal from the client namespace is answered with
/// XDP_TX, the reply the client's socket receives equals the engine's for the same request,
/// and the program counts it; a renewal of a client not in the map goes up (counted).
#[test]
fn the_program_answers_a_renewal_with_xdp_tx() {
    use dhcp_common::counter;
    use dhcp_user::xdp::Steering;
    use xdhcpd_tests::*;
    if !root_or_skip("the_program_answers_a_renewal_with_xdp_tx") {
        return;
    }
    // An engine whose only address is the client namespace's, so the unicast reply reaches it.
    let mut s = Subnet::new(Ipv4Addr::new(198, 18, 0, 0), 24);
    s.pools.push(Pool { first: CLIENT_IP, last: CLIENT_IP });
    s.lease_time = Some(3600);
    s.options.routers = vec![SERVER_IP];
    let cfg = Config { server_id: SERVER_IP, subnets: vec![s], ..Config::default() };
    let mut e = Engine::new(Arc::new(Shared::new(&cfg, 1).unwrap()), NOW, 64);
    let id: &[u8] = &[1, 2, 3, 4, 5, 6, 7];
    let c = ClientMsg { client_id: Some(id), ..ClientMsg::new(mac_for(7), 7) };
    let mut buf = [0u8; 1500];
    let mut out = [0u8; 1500];
    let n = c.write(MessageType::Discover, &mut buf).unwrap();
    handle(&mut e, &buf[..n], &mut out);
    let opts = [(code::REQUESTED_IP, &CLIENT_IP.octets()[..]), (code::SERVER_ID, &SERVER_IP.octets()[..])];
    let n = ClientMsg { options: &opts, ..c }.write(MessageType::Request, &mut buf).unwrap();
    let ack = handle(&mut e, &buf[..n], &mut out);
    let t = template_of(&out[..ack.len], ack.from).unwrap();
    let renewal = {
        let n = ClientMsg { ciaddr: CLIENT_IP, xid: 0x5151, ..c }.write(MessageType::Request, &mut buf).unwrap();
        buf[..n].to_vec()
    };
    let stranger = {
        let n = ClientMsg { ciaddr: CLIENT_IP, xid: 0x5252, ..ClientMsg::new(mac_for(8), 8) }
            .write(MessageType::Request, &mut buf)
            .unwrap();
        buf[..n].to_vec()
    };
    let (key, prl_hash) = request_facts(&renewal).unwrap();
    let expected = {
        let r = handle(&mut e, &renewal, &mut out);
        out[..r.len].to_vec()
    };

    let pair = Pair::new("krenew");
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let server = pair.server.spawn(move || {
        let mut steering = Steering::attach("s0", 67).expect("attach to s0");
        let mac = dhcp_io::sys::mac_address("s0").unwrap();
        let mut maps = steering.kernel_renew(mac).expect("kernel renewals");
        maps.set_template(3, &t).unwrap();
        let horizon_ns = dhcp_io::renew::monotonic_ns() + 10 * 3600 * 1_000_000_000;
        let lease =
            renew::Lease { ciaddr: CLIENT_IP.octets(), template: 3, prl_hash, vlans: 0, horizon_ns, renewed_ns: 0 };
        maps.insert(&key, &lease).unwrap();
        ready_tx.send(()).unwrap();
        done_rx.recv().unwrap();
        (steering.counters().unwrap(), maps.get(&key).unwrap())
    });
    ready_rx.recv().unwrap();
    let got = pair
        .client
        .spawn(move || {
            // A program on the client's side too: veth delivers XDP_TX frames only to a peer
            // that has one (it passes everything here: no sockets registered).
            let _peer = Steering::attach("c0", 68).expect("attach to c0");
            let sock = udp_on("c0", 68);
            sock.set_read_timeout(Some(std::time::Duration::from_millis(300))).unwrap();
            let mut got = Vec::new();
            for msg in [&renewal, &stranger] {
                sock.send_to(msg, (SERVER_IP, 67)).unwrap();
                let mut b = [0u8; 1500];
                got.push(sock.recv_from(&mut b).ok().map(|(n, from)| (b[..n].to_vec(), from)));
            }
            got
        })
        .join()
        .unwrap();
    done_tx.send(()).unwrap();
    let (counters, lease) = server.join().unwrap();
    let named: Vec<_> = counters.named().collect();
    assert_eq!(counters.get(counter::RENEWED), 1, "{named:?}");
    assert_eq!(counters.get(counter::RENEW_NO_LEASE), 1, "{named:?}");
    assert!(lease.renewed_ns != 0, "the program recorded the renewal");
    let (reply, from) = got[0].clone().expect("the renewal was answered");
    assert_eq!(from, std::net::SocketAddr::from((SERVER_IP, 67)));
    assert_eq!(fields_differ(&reply, &expected), Vec::<usize>::new());
    // The stranger went up to the workers: there are none, so nothing answers it.
    assert!(got[1].is_none(), "{:?}", got[1]);
}

/// The server's counter `name` in its exit log (`xdp-renewed 3`).
fn logged_counter(log: &std::path::Path, name: &str) -> Option<u64> {
    let text = std::fs::read_to_string(log).ok()?;
    let at = text.rfind(&format!("{name} "))? + name.len() + 1;
    text[at..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// An XDP program that passes everything, on the client's `c0` while this lives: veth hands
/// XDP_TX frames only to a peer that has a program of its own.
struct PeerProgram {
    done: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PeerProgram {
    fn attach(pair: &xdhcpd_tests::Pair) -> PeerProgram {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let thread = pair.client.spawn(move || {
            let _p = dhcp_user::xdp::Steering::attach("c0", 68).expect("attach to c0");
            ready_tx.send(()).unwrap();
            let _ = done_rx.recv();
        });
        ready_rx.recv().unwrap();
        PeerProgram { done: Some(done_tx), thread: Some(thread) }
    }
}

impl Drop for PeerProgram {
    fn drop(&mut self) {
        drop(self.done.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// udhcpc on the XDP path with `--kernel-renew on`: bound by the workers, then renewed twice
/// by the program (its counter moved), and the address still is the client's.
#[test]
fn udhcpc_renews_through_the_program() {
    use xdhcpd_tests::*;
    if !root_or_skip("udhcpc_renews_through_the_program") {
        return;
    }
    let pair = Pair::new("kudhcpc");
    let dir = Scratch::new("kudhcpc");
    let _peer = PeerProgram::attach(&pair);
    let mut args = quick_args("198.18.0.100-198.18.0.100", "xdp");
    args.extend(["--kernel-renew".to_string(), "on".to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let log = dir.path("server.log");
    let mut server = start_xdhcpd(&pair.server, env!("CARGO_BIN_EXE_xdhcpd"), &args, &log);
    let (script, events) = hook_script(
        &dir,
        "udhcpc.sh",
        "echo \"$1 ip=$ip\"",
        "case \"$1\" in\n  bound|renew) ip addr replace \"$ip/24\" dev \"$interface\" ;;\nesac\n",
    );
    let mut client = Process::start(
        &pair.client,
        "udhcpc",
        &["udhcpc", "-i", "c0", "-f", "-t", "5", "-T", "1", "-s", &script],
        &dir.path("udhcpc.log"),
    );
    let count = |needle: &str| std::fs::read_to_string(&events).unwrap_or_default().matches(needle).count();
    let wait = std::time::Duration::from_secs(20);
    assert!(eventually(wait, || (count("bound ip=198.18.0.100") == 1).then_some(())).is_some(), "bound");
    for n in 1..=2 {
        client.signal(libc::SIGUSR1);
        let renewed = eventually(wait, || (count("renew ip=198.18.0.100") >= n).then_some(()));
        assert!(renewed.is_some(), "renewal {n}: {}", std::fs::read_to_string(&events).unwrap_or_default());
    }
    client.stop();
    server.stop();
    let renewed = logged_counter(&log, "xdp-renewed");
    assert!(
        renewed >= Some(2),
        "renewals answered in the program: {renewed:?}\n{}",
        std::fs::read_to_string(&log).unwrap()
    );
}

/// A server from a configuration file with `kernel_renew = true` and fast renewals (T1 3 s),
/// and a pass-all program on the client's side of the veth pair. Runs `client` (arguments
/// built from the scratch folder and its hook script writing `$reason ip=$new_ip_address`),
/// waits for two renewals, and returns the program's renewal count from the server's log.
fn renew_through_program(tag: &str, client: impl Fn(&str) -> Vec<String>) -> Option<u64> {
    use xdhcpd_tests::*;
    let pair = Pair::new(tag);
    let dir = Scratch::new(tag);
    let _peer = PeerProgram::attach(&pair);
    let cfg = dir.path("xdhcpd.toml");
    std::fs::write(
        &cfg,
        "server_id = \"198.18.0.1\"\nlease_time = 60\n\n[server]\ninterfaces = [\"s0\"]\nworkers = 2\nbackend = \"xdp\"\nkernel_renew = true\n\n[[subnet]]\nsubnet = \"198.18.0.0/24\"\ninterface = \"s0\"\npools = [\"198.18.0.100-198.18.0.100\"]\nrenewal_time = 3\nrebinding_time = 5\n",
    )
    .unwrap();
    let log = dir.path("server.log");
    let cfg = cfg.display().to_string();
    let mut server = start_xdhcpd(&pair.server, env!("CARGO_BIN_EXE_xdhcpd"), &["--config", &cfg], &log);
    let events = dir.path("events").display().to_string();
    let script = dir.path("hook.sh");
    std::fs::write(&script, format!("#!/bin/sh\necho \"$reason ip=$new_ip_address\" >> {events}\n")).unwrap();
    sh(&["chmod", "+x", &script.display().to_string()]);
    let args = client(&script.display().to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let _ = std::fs::remove_file("/var/lib/dhcpcd/c0.lease");
    let mut c = Process::start(&pair.client, args[0], &args, &dir.path("client.log"));
    let count = |needle: &str| std::fs::read_to_string(&events).unwrap_or_default().matches(needle).count();
    let renewed =
        eventually(std::time::Duration::from_secs(30), || (count("RENEW ip=198.18.0.100") >= 2).then_some(()));
    c.stop();
    server.stop();
    let _ = std::fs::remove_file("/var/lib/dhcpcd/c0.lease");
    assert!(renewed.is_some(), "two renewals: {}", std::fs::read_to_string(&events).unwrap_or_default());
    logged_counter(&log, "xdp-renewed")
}

#[test]
fn dhclient_renews_through_the_program() {
    if !xdhcpd_tests::root_or_skip("dhclient_renews_through_the_program") {
        return;
    }
    let n = renew_through_program("kdhclient", |script| {
        let dir = std::path::Path::new(script).parent().unwrap().to_path_buf();
        let (lf, pf) = (dir.join("dhclient.leases"), dir.join("dhclient.pid"));
        let (lf, pf) = (lf.display().to_string(), pf.display().to_string());
        ["dhclient", "-d", "-v", "-1", "-lf", &lf, "-pf", &pf, "-sf", script, "c0"].map(String::from).to_vec()
    });
    assert!(n >= Some(1), "renewals answered in the program: {n:?}");
}

#[test]
fn dhcpcd_renews_through_the_program() {
    if !xdhcpd_tests::root_or_skip("dhcpcd_renews_through_the_program") {
        return;
    }
    let n = renew_through_program("kdhcpcd", |script| {
        ["dhcpcd", "-4", "-B", "-d", "-t", "20", "-c", script, "-f", "/dev/null", "--noarp", "c0"]
            .map(String::from)
            .to_vec()
    });
    assert!(n >= Some(1), "renewals answered in the program: {n:?}");
}

/// The durable horizon under kill -9: a client renewed only by the program past its journaled
/// expiry keeps its address across a crash (recovery holds it until the horizon), so another
/// client asking after the restart gets nothing from the one-address pool.
#[test]
fn kill_9_after_kernel_renewals_keeps_the_address_held() {
    use xdhcpd_tests::*;
    if !root_or_skip("kill_9_after_kernel_renewals_keeps_the_address_held") {
        return;
    }
    let pair = Pair::new("khorizon");
    let dir = Scratch::new("khorizon");
    let _peer = PeerProgram::attach(&pair);
    let cfg = dir.path("xdhcpd.toml");
    std::fs::write(
        &cfg,
        format!(
            "server_id = \"198.18.0.1\"\nlease_time = 60\n\n[server]\ninterfaces = [\"s0\"]\nworkers = 2\nbackend = \"xdp\"\nkernel_renew = true\nlease_file = \"{}\"\n\n[[subnet]]\nsubnet = \"198.18.0.0/24\"\ninterface = \"s0\"\npools = [\"198.18.0.100-198.18.0.100\"]\nrenewal_time = 20\nrebinding_time = 40\n",
            dir.path("leases").display()
        ),
    )
    .unwrap();
    let cfg = cfg.display().to_string();
    // A copy: the restart must run this very binary (the build folder is shared).
    let bin = dir.path("xdhcpd");
    std::fs::copy(env!("CARGO_BIN_EXE_xdhcpd"), &bin).unwrap();
    let bin = bin.display().to_string();
    let bin = bin.as_str();
    let mut server = start_xdhcpd(&pair.server, bin, &["--config", &cfg], &dir.path("server.log"));
    // Renewals (forced every 5 s) answered by the program, past the journaled expiry (60 s,
    // the shortest lease the configuration takes).
    let (mut client, _) = udhcpc_renewing(&pair, &dir, 64, 5);
    let wait = std::time::Duration::from_secs(20);
    server.signal(libc::SIGKILL);
    server.wait_for(wait);
    client.signal(libc::SIGKILL);
    client.wait_for(wait);
    let _server = start_xdhcpd(&pair.server, bin, &["--config", &cfg], &dir.path("server2.log"));
    let got = pair.client.spawn(|| dora(&RawClient::new("c0"), 9, std::time::Duration::from_secs(3))).join().unwrap();
    assert_eq!(got, None, "the address renewed in the program was given to another client after the crash");
}

/// udhcpc in the client namespace, bound to 198.18.0.100, then made to renew every `every`
/// seconds for `for_secs` seconds, each renewal seen by its hook: the client and its renewals.
fn udhcpc_renewing(
    pair: &xdhcpd_tests::Pair,
    dir: &xdhcpd_tests::Scratch,
    for_secs: u64,
    every: u64,
) -> (xdhcpd_tests::Process, u32) {
    use xdhcpd_tests::{eventually, hook_script, Process};
    let (script, events) = hook_script(dir, "udhcpc.sh", "echo \"$1 ip=$ip\"", "");
    let client = Process::start(
        &pair.client,
        "udhcpc",
        &["udhcpc", "-i", "c0", "-f", "-t", "5", "-T", "1", "-s", &script],
        &dir.path("udhcpc.log"),
    );
    let count = |needle: &str| std::fs::read_to_string(&events).unwrap_or_default().matches(needle).count();
    let wait = std::time::Duration::from_secs(20);
    assert!(eventually(wait, || (count("bound ip=198.18.0.100") == 1).then_some(())).is_some(), "bound");
    let bound = std::time::Instant::now();
    let mut n = 0;
    while bound.elapsed() < std::time::Duration::from_secs(for_secs) {
        n += 1;
        client.signal(libc::SIGUSR1);
        let renewed = eventually(wait, || (count("renew ip=198.18.0.100") >= n as usize).then_some(()));
        assert!(renewed.is_some(), "renewal {n}: {}", std::fs::read_to_string(&events).unwrap_or_default());
        std::thread::sleep(std::time::Duration::from_secs(every));
    }
    (client, n)
}

/// DISCOVER then REQUEST for scripted client `n` (broadcast replies): the ACKed address.
fn dora(c: &xdhcpd_tests::RawClient, n: u32, limit: std::time::Duration) -> Option<Ipv4Addr> {
    let mut buf = [0u8; 600];
    let m = ClientMsg { flags: 0x8000, ..ClientMsg::new(mac_for(n), 0x7000 + n) };
    let len = m.write(MessageType::Discover, &mut buf).unwrap();
    let offer = c.exchange(&buf[..len], limit)?;
    let ip = Ipv4Addr::new(offer[16], offer[17], offer[18], offer[19]);
    let opts = [(code::SERVER_ID, &[198u8, 18, 0, 1][..]), (code::REQUESTED_IP, &ip.octets()[..])];
    let len = ClientMsg { options: &opts, ..m }.write(MessageType::Request, &mut buf).unwrap();
    let ack = c.exchange(&buf[..len], limit)?;
    (ack[242] == MessageType::Ack as u8).then_some(ip)
}

/// The sum of the program's counters named `name` in the control API's `/v1/stats`.
fn xdp_counter(pair: &xdhcpd_tests::Pair, name: &str) -> Option<u64> {
    let addr: std::net::SocketAddr = "127.0.0.1:9767".parse().unwrap();
    let r = pair.server.spawn(move || dhcp_user::control::client::request(addr, "GET", "/v1/stats", None, None));
    let stats = r.join().unwrap().ok()?.json().ok()?;
    let xdp = stats["xdp"].as_object()?;
    let found: Vec<u64> = xdp.iter().filter(|(k, _)| k.ends_with(name)).filter_map(|(_, v)| v.as_u64()).collect();
    (!found.is_empty()).then(|| found.iter().sum())
}

/// Horizons moved ahead by the workers, under kill -9: with horizons one lease time past
/// expiry (60 s + 60 s), a client the program renews every 4 s for 75 s is renewed by the
/// program all along (it would have passed renewals up after 60 s had the workers not moved
/// the horizon), and after kill -9 the journal holds the address at least as long as the last
/// renewal promised.
#[test]
fn kill_9_under_renewals_keeps_the_horizons_the_workers_moved_ahead() {
    use xdhcpd_tests::*;
    if !root_or_skip("kill_9_under_renewals_keeps_the_horizons_the_workers_moved_ahead") {
        return;
    }
    let pair = Pair::new("kahead");
    let dir = Scratch::new("kahead");
    let _peer = PeerProgram::attach(&pair);
    let cfg = dir.path("xdhcpd.toml");
    let leases = dir.path("leases");
    std::fs::write(
        &cfg,
        format!(
            "server_id = \"198.18.0.1\"\nlease_time = 60\n\n[server]\ninterfaces = [\"s0\"]\nworkers = 2\nbackend = \"xdp\"\nkernel_renew = true\nkernel_renew_horizon = 1\nlease_file = \"{}\"\n\n[control]\nlisten = \"127.0.0.1:9767\"\n\n[[subnet]]\nsubnet = \"198.18.0.0/24\"\ninterface = \"s0\"\npools = [\"198.18.0.100-198.18.0.100\"]\nrenewal_time = 50\nrebinding_time = 55\n",
            leases.display()
        ),
    )
    .unwrap();
    let cfg = cfg.display().to_string();
    let log = dir.path("server.log");
    let mut server = start_xdhcpd(&pair.server, env!("CARGO_BIN_EXE_xdhcpd"), &["--config", &cfg], &log);
    let (mut client, n) = udhcpc_renewing(&pair, &dir, 75, 4);
    let wait = std::time::Duration::from_secs(20);
    let (renewed, up) = (xdp_counter(&pair, "xdp-renewed"), xdp_counter(&pair, "renew-up-horizon"));
    let killed = dhcp_user::clock::unix_now();
    server.signal(libc::SIGKILL);
    server.wait_for(wait);
    client.signal(libc::SIGKILL);
    client.wait_for(wait);
    assert!(renewed >= Some(n as u64 - 1), "renewed in the program: {renewed:?} of {n}");
    assert_eq!(up, Some(0), "no renewal passed up for its horizon");
    let rec = dhcp_user::journal::inspect(&leases, 0).unwrap();
    let held = rec.leases.iter().find(|l| l.ip == Ipv4Addr::new(198, 18, 0, 100)).map(|l| l.expires);
    assert!(held >= Some(killed + 60), "journaled until {held:?}, the last renewal promised ~{}", killed + 60);
}
