//! The xdhcpd binary in network namespaces, against real DHCP clients and relays (busybox
//! udhcpc, ISC dhclient, dhcpcd, ISC dhcrelay, Kea's perfdhcp) and scripted clients for the
//! cases no stock client produces (another server's offer chosen, kill -9 under load).
//!
//! Each test makes its own namespaces (no default route, 198.18.0.0/15) and removes them, and
//! the processes it started, even when it fails. Needs root: skipped outside CI otherwise.
//! Declared as a test of the dhcp-user package, so that cargo builds the binary for it.

use dhcp_user::client::{mac_for, ClientMsg};
use dhcp_user::wire::dhcp::{DhcpPacket, FLAG_BROADCAST};
use dhcp_user::wire::options::{code, MessageType};
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;
use xdhcpd_tests::*;

const XDHCPD: &str = env!("CARGO_BIN_EXE_xdhcpd");
const WAIT: Duration = Duration::from_secs(20);

/// Starts xdhcpd in the server namespace with `args` after `serve`, logging to `log`, and waits
/// until it serves (its log says so: on the XDP path no socket listens on port 67).
fn start_server(pair: &Pair, args: &[&str], log: &Path) -> Process {
    start_in(&pair.server, args, log)
}

fn start_in(ns: &Netns, args: &[&str], log: &Path) -> Process {
    start_xdhcpd(ns, XDHCPD, args, log)
}

xdhcpd_tests::on_both_paths! {
    udhcpc_gets_renews_and_releases => udhcpc_case;
    foreign_server_choice_releases_the_offer_at_once => foreign_case;
    perfdhcp_dora_has_no_drops_and_unique_addresses => perfdhcp_case;
    dhclient_gets_renews_releases_and_reboots_after_restart => dhclient_case;
    dhcpcd_gets_renews_and_releases => dhcpcd_case;
    kill_9_under_load_loses_no_acked_lease => kill9_case;
    dhcrelay_option_82_is_echoed_and_relayed_clients_served => relay_case;
    a_client_keeps_its_lease_by_its_client_id_whatever_its_mac => client_id_case;
}

fn quick(pool: &str, backend: &str) -> Vec<String> {
    quick_args(pool, backend)
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Message of scripted client `n` asking for broadcast replies.
fn msg(n: u32, mt: MessageType, ciaddr: Ipv4Addr, options: &[(u8, &[u8])]) -> Vec<u8> {
    let mut buf = vec![0u8; 600];
    let m = ClientMsg { flags: FLAG_BROADCAST, ciaddr, options, ..ClientMsg::new(mac_for(n), 0x5000 + n) };
    let len = m.write(mt, &mut buf).unwrap();
    buf.truncate(len);
    buf
}

fn yiaddr(reply: &[u8]) -> Ipv4Addr {
    DhcpPacket::new_checked(reply).unwrap().yiaddr()
}

fn reply_type(reply: &[u8]) -> Option<MessageType> {
    DhcpPacket::new_checked(reply).ok()?.parse_options().ok()?.message_type()
}

/// DISCOVER then REQUEST for scripted client `n`: the ACKed address, if any.
fn dora(c: &RawClient, n: u32, limit: Duration) -> Option<Ipv4Addr> {
    let offer = c.exchange(&msg(n, MessageType::Discover, Ipv4Addr::UNSPECIFIED, &[]), limit)?;
    let ip = yiaddr(&offer);
    let sid = [198, 18, 0, 1];
    let req = msg(
        n,
        MessageType::Request,
        Ipv4Addr::UNSPECIFIED,
        &[(code::SERVER_ID, &sid), (code::REQUESTED_IP, &ip.octets())],
    );
    let ack = c.exchange(&req, limit)?;
    (reply_type(&ack) == Some(MessageType::Ack)).then_some(ip)
}

/// A udhcpc event script that logs `EVENT ip=...` lines and configures the address.
fn udhcpc_script(dir: &Scratch) -> (String, String) {
    hook_script(
        dir,
        "udhcpc.sh",
        "echo \"$1 ip=$ip serverid=$serverid\"",
        "case \"$1\" in\n  deconfig) ip addr flush dev \"$interface\" ;;\n  bound|renew) ip addr replace \"$ip/${mask:-24}\" dev \"$interface\" ;;\nesac\n",
    )
}

fn events(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn wait_event(path: &str, needle: &str) -> bool {
    eventually(WAIT, || events(path).contains(needle).then_some(())).is_some()
}

fn udhcpc_case(backend: &str) {
    if !root_or_skip(&format!("udhcpc_gets_renews_and_releases ({backend})")) {
        return;
    }
    let pair = Pair::new("udhcpc");
    let dir = Scratch::new("udhcpc");
    let _server = start_server(&pair, &strs(&quick("198.18.0.100-198.18.0.100", backend)), &dir.path("server.log"));
    let (script, ev) = udhcpc_script(&dir);
    let mut client = Process::start(
        &pair.client,
        "udhcpc",
        &["udhcpc", "-i", "c0", "-f", "-t", "5", "-T", "1", "-s", &script],
        &dir.path("udhcpc.log"),
    );
    assert!(wait_event(&ev, "bound ip=198.18.0.100 serverid=198.18.0.1"), "{}", events(&ev));
    client.signal(libc::SIGUSR1);
    assert!(wait_event(&ev, "renew ip=198.18.0.100"), "renewal: {}", events(&ev));
    client.signal(libc::SIGUSR2);
    assert!(eventually(WAIT, || std::fs::read_to_string(dir.path("udhcpc.log"))
        .ok()?
        .contains("entering released state")
        .then_some(()))
    .is_some());
    client.stop();
    // The pool has one address: another client gets it only if the release freed it.
    let got = pair.client.spawn(|| dora(&RawClient::new("c0"), 7, Duration::from_secs(3))).join().unwrap();
    assert_eq!(got, Some(Ipv4Addr::new(198, 18, 0, 100)));
}

fn foreign_case(backend: &str) {
    if !root_or_skip(&format!("foreign_server_choice_releases_the_offer_at_once ({backend})")) {
        return;
    }
    let pair = Pair::new("foreign");
    let dir = Scratch::new("foreign");
    let mut args = quick("198.18.0.100-198.18.0.100", backend);
    args.extend(["--offer-timeout", "600"].map(String::from));
    let _server = start_server(&pair, &strs(&args), &dir.path("server.log"));
    let (first, second, third) = pair
        .client
        .spawn(|| {
            let c = RawClient::new("c0");
            let limit = Duration::from_secs(3);
            let a = c.exchange(&msg(1, MessageType::Discover, Ipv4Addr::UNSPECIFIED, &[]), limit).map(|r| yiaddr(&r));
            // While A's offer is held (600 s), B gets nothing.
            let b = c.exchange(&msg(2, MessageType::Discover, Ipv4Addr::UNSPECIFIED, &[]), Duration::from_secs(1));
            // A takes another server's offer: its REQUEST names 198.18.0.99.
            let other = [198, 18, 0, 99];
            let want = [198, 18, 0, 50];
            let req = msg(
                1,
                MessageType::Request,
                Ipv4Addr::UNSPECIFIED,
                &[(code::SERVER_ID, &other), (code::REQUESTED_IP, &want)],
            );
            c.sock.send_to(&req, (Ipv4Addr::BROADCAST, 67)).unwrap();
            std::thread::sleep(Duration::from_millis(200));
            let b2 = c.exchange(&msg(2, MessageType::Discover, Ipv4Addr::UNSPECIFIED, &[]), limit).map(|r| yiaddr(&r));
            (a, b, b2)
        })
        .join()
        .unwrap();
    assert_eq!(first, Some(Ipv4Addr::new(198, 18, 0, 100)));
    assert!(second.is_none(), "no second offer of the only address while A's offer stands");
    assert_eq!(third, Some(Ipv4Addr::new(198, 18, 0, 100)), "released at once, long before the 600 s offer timeout");
}

fn perfdhcp_case(backend: &str) {
    if !root_or_skip(&format!("perfdhcp_dora_has_no_drops_and_unique_addresses ({backend})")) {
        return;
    }
    let pair = Pair::new("perf");
    let dir = Scratch::new("perf");
    let mut args = serve_args("198.18.0.0/16", "198.18.1.0-198.18.255.254", 2, backend);
    args.extend(["--lease-file".to_string(), dir.path("leases").display().to_string()]);
    let _server = start_server(&pair, &strs(&args), &dir.path("server.log"));
    let out = pair.client.exec(&["perfdhcp", "-4", "-l", "c0", "-r", "200", "-R", "2000", "-p", "5", "-W", "2000000"]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let r = parse_perfdhcp(&text);
    assert_eq!(r.exchanges.len(), 2, "DISCOVER-OFFER and REQUEST-ACK reported:\n{text}");
    for (name, sent, received, drops) in &r.exchanges {
        assert!(*sent > 500, "{name}: {sent} sent\n{text}");
        assert_eq!((drops, received), (&0, sent), "{name}\n{text}");
    }
    assert_eq!(r.non_unique, Some(0), "{text}");
}

/// dhclient's script: logs `REASON ip=...` and configures the address.
fn dhclient_script(dir: &Scratch) -> (String, String) {
    hook_script(
        dir,
        "dhclient.sh",
        "echo \"$reason ip=$new_ip_address server=$new_dhcp_server_identifier\"",
        "case \"$reason\" in\n  BOUND|RENEW|REBIND|REBOOT) ip addr replace \"$new_ip_address/24\" dev \"$interface\" ;;\n  EXPIRE|FAIL|RELEASE|STOP) ip addr flush dev \"$interface\" ;;\nesac\n",
    )
}

/// A configuration file on `s0` with one pool, fast renewals (T1 3 s, T2 5 s) and a lease file.
fn config_file(dir: &Scratch, pool: &str, backend: &str) -> String {
    let path = dir.path("xdhcpd.toml");
    std::fs::write(
        &path,
        format!(
            "server_id = \"198.18.0.1\"\nlease_time = 60\n\n[server]\ninterfaces = [\"s0\"]\nworkers = 2\nbackend = \"{backend}\"\nlease_file = \"{}\"\n\n[[subnet]]\nsubnet = \"198.18.0.0/24\"\ninterface = \"s0\"\npools = [\"{pool}\"]\nrenewal_time = 3\nrebinding_time = 5\n",
            dir.path("leases").display()
        ),
    )
    .unwrap();
    path.display().to_string()
}

fn dhclient_case(backend: &str) {
    if !root_or_skip(&format!("dhclient_gets_renews_releases_and_reboots_after_restart ({backend})")) {
        return;
    }
    let pair = Pair::new("dhclient");
    let dir = Scratch::new("dhclient");
    let cfg = config_file(&dir, "198.18.0.100-198.18.0.100", backend);
    let log = dir.path("server.log");
    let mut server = start_server(&pair, &["--config", &cfg], &log);
    let (script, ev) = dhclient_script(&dir);
    let leases = dir.path("dhclient.leases").display().to_string();
    let pid = dir.path("dhclient.pid").display().to_string();
    let dhclient = |extra: &[&str]| {
        let mut a = vec!["dhclient", "-d", "-v", "-1", "-lf", &leases, "-pf", &pid, "-sf", &script];
        a.extend_from_slice(extra);
        a.push("c0");
        a.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let args = dhclient(&[]);
    let mut client = Process::start(&pair.client, "dhclient", &strs(&args), &dir.path("dhclient.log"));
    assert!(wait_event(&ev, "BOUND ip=198.18.0.100 server=198.18.0.1"), "{}", events(&ev));
    assert!(wait_event(&ev, "RENEW ip=198.18.0.100"), "renewal at T1: {}", events(&ev));
    // Stop without releasing; restart the server; dhclient's INIT-REBOOT must be ACKed.
    client.signal(libc::SIGKILL);
    client.wait_for(WAIT);
    assert!(server.stop().success(), "SIGTERM exits 0: {}", std::fs::read_to_string(&log).unwrap_or_default());
    let _server = start_server(&pair, &["--config", &cfg], &dir.path("server2.log"));
    let _client = Process::start(&pair.client, "dhclient", &strs(&args), &dir.path("dhclient2.log"));
    assert!(wait_event(&ev, "REBOOT ip=198.18.0.100"), "INIT-REBOOT after restart: {}", events(&ev));
    drop(_client);
    // Release, then another client gets the only address.
    let release: Vec<String> =
        ["dhclient", "-r", "-v", "-lf", &leases, "-pf", &pid, "-sf", &script, "c0"].map(String::from).to_vec();
    let out = pair.client.exec(&strs(&release));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got = pair.client.spawn(|| dora(&RawClient::new("c0"), 9, Duration::from_secs(3))).join().unwrap();
    assert_eq!(got, Some(Ipv4Addr::new(198, 18, 0, 100)), "{}", events(&ev));
}

fn dhcpcd_case(backend: &str) {
    if !root_or_skip(&format!("dhcpcd_gets_renews_and_releases ({backend})")) {
        return;
    }
    let pair = Pair::new("dhcpcd");
    let dir = Scratch::new("dhcpcd");
    let cfg = config_file(&dir, "198.18.0.100-198.18.0.100", backend);
    let _server = start_server(&pair, &["--config", &cfg], &dir.path("server.log"));
    // dhcpcd configures the address itself; the hook only logs.
    let (script, events_path) =
        hook_script(&dir, "dhcpcd.sh", "echo \"$reason ip=$new_ip_address server=$new_dhcp_server_identifier\"", "");
    // dhcpcd keeps its lease under /var/lib/dhcpcd by interface name: start clean.
    let _ = std::fs::remove_file("/var/lib/dhcpcd/c0.lease");
    let mut client = Process::start(
        &pair.client,
        "dhcpcd",
        // `-c`: our hook instead of dhcpcd's (which would set DNS and the host name).
        &["dhcpcd", "-4", "-B", "-d", "-t", "20", "-c", &script, "-f", "/dev/null", "--noarp", "c0"],
        &dir.path("dhcpcd.log"),
    );
    assert!(wait_event(&events_path, "BOUND ip=198.18.0.100 server=198.18.0.1"), "{}", events(&events_path));
    assert!(wait_event(&events_path, "RENEW ip=198.18.0.100"), "renewal at T1: {}", events(&events_path));
    // `-4` as the daemon was started with: it names the daemon's pid file.
    let out = pair.client.exec(&["dhcpcd", "-4", "-k", "c0"]);
    assert!(out.status.success(), "dhcpcd -k: {}", String::from_utf8_lossy(&out.stderr));
    client.wait_for(WAIT);
    let _ = std::fs::remove_file("/var/lib/dhcpcd/c0.lease");
    let got = pair.client.spawn(|| dora(&RawClient::new("c0"), 11, Duration::from_secs(3))).join().unwrap();
    assert_eq!(got, Some(Ipv4Addr::new(198, 18, 0, 100)), "released: {}", events(&events_path));
}

fn kill9_case(backend: &str) {
    if !root_or_skip(&format!("kill_9_under_load_loses_no_acked_lease ({backend})")) {
        return;
    }
    let pair = Pair::new("kill9");
    let dir = Scratch::new("kill9");
    let leases = dir.path("leases").display().to_string();
    let mut args = quick("198.18.0.10-198.18.0.250", backend);
    args.extend(["--lease-file".to_string(), leases.clone()]);
    let mut server = start_server(&pair, &strs(&args), &dir.path("server.log"));
    // Two scripted clients run DORAs as fast as the server answers; the server is killed
    // mid-run. Every ACK a client saw must survive.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loaders: Vec<_> = (0..2u32)
        .map(|t| {
            let stop = stop.clone();
            pair.client.spawn(move || {
                let c = RawClient::new("c0");
                let mut acked = Vec::new();
                let mut n = t * 100_000;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Some(ip) = dora(&c, n, Duration::from_millis(300)) {
                        acked.push((n, ip));
                    }
                    n += 1;
                }
                acked
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    server.signal(libc::SIGKILL);
    server.wait_for(WAIT);
    // The XDP program hangs on a link owned by the process: killed, it is gone too.
    let link = String::from_utf8_lossy(&pair.server.ip(&["-d", "link", "show", "s0"]).stdout).to_string();
    assert!(!link.contains("prog/xdp"), "XDP program left behind after kill -9: {link}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked: Vec<(u32, Ipv4Addr)> = loaders.into_iter().flat_map(|h| h.join().unwrap()).collect();
    assert!(acked.len() >= 20, "the load ran: {} leases ACKed", acked.len());

    let _server = start_server(&pair, &strs(&args), &dir.path("server2.log"));
    let (kept, strangers) = pair
        .client
        .spawn(move || {
            let c = RawClient::new("c0");
            let mut kept = Vec::new();
            for &(n, ip) in &acked {
                // INIT-REBOOT: the address it holds, no server id.
                let req = msg(n, MessageType::Request, Ipv4Addr::UNSPECIFIED, &[(code::REQUESTED_IP, &ip.octets())]);
                let r = c.exchange(&req, Duration::from_secs(2));
                kept.push((n, ip, r.filter(|r| reply_type(r) == Some(MessageType::Ack)).map(|r| yiaddr(&r))));
            }
            // New clients are never offered an address someone else was ACKed.
            let mut strangers = Vec::new();
            for n in 900_000..900_020 {
                if let Some(o) =
                    c.exchange(&msg(n, MessageType::Discover, Ipv4Addr::UNSPECIFIED, &[]), Duration::from_secs(1))
                {
                    strangers.push(yiaddr(&o));
                }
            }
            (kept, strangers)
        })
        .join()
        .unwrap();
    for (n, ip, got) in &kept {
        assert_eq!(got.as_ref(), Some(ip), "client {n} was ACKed {ip} before the kill");
    }
    for s in &strangers {
        assert!(!kept.iter().any(|(_, ip, _)| ip == s), "{s} offered to a new client while held");
    }
}

fn relay_case(backend: &str) {
    if !root_or_skip(&format!("dhcrelay_option_82_is_echoed_and_relayed_clients_served ({backend})")) {
        return;
    }
    // client (c0) — relay (r0 | r1) — server (s0): the relay's client side is 198.18.2.1/24.
    let id = format!("xdt{}-relay-{backend}", std::process::id());
    let server = Netns::new(format!("{id}-s"));
    let relay = Netns::new(format!("{id}-r"));
    let client = Netns::new(format!("{id}-c"));
    sh(&["ip", "link", "add", "s0", "netns", &server.name, "type", "veth", "peer", "r1", "netns", &relay.name]);
    sh(&["ip", "link", "add", "r0", "netns", &relay.name, "type", "veth", "peer", "c0", "netns", &client.name]);
    server.ip(&["addr", "add", "198.18.1.1/24", "dev", "s0"]);
    relay.ip(&["addr", "add", "198.18.1.2/24", "dev", "r1"]);
    relay.ip(&["addr", "add", "198.18.2.1/24", "dev", "r0"]);
    for (ns, dev) in [(&server, "s0"), (&relay, "r1"), (&relay, "r0"), (&client, "c0")] {
        ns.ip(&["link", "set", dev, "up"]);
    }
    // The server reaches the relay's client-side address through the relay (not a default route).
    server.ip(&["route", "add", "198.18.2.0/24", "via", "198.18.1.2"]);
    let dir = Scratch::new("relay");
    let cfg = dir.path("xdhcpd.toml");
    std::fs::write(
        &cfg,
        "server_id = \"198.18.1.1\"\n[server]\ninterfaces = [\"s0\"]\nworkers = 2\nbackend = \"BACKEND\"\n\n\
         [[subnet]]\nsubnet = \"198.18.1.0/24\"\ninterface = \"s0\"\npools = [\"198.18.1.100-198.18.1.110\"]\n\n\
         [[subnet]]\nsubnet = \"198.18.2.0/24\"\npools = [\"198.18.2.100-198.18.2.110\"]\nrouters = [\"198.18.2.1\"]\n"
            .replace("BACKEND", backend),
    )
    .unwrap();
    let cfg = cfg.display().to_string();
    let _xdhcpd = start_in(&server, &["--config", &cfg], &dir.path("server.log"));
    // Captured at the relay: on the XDP path the server's own interface shows no DHCP to
    // packet taps (frames bypass the stack both ways).
    let capture = Capture::start(&relay, "r1");
    let _dhcrelay = Process::start(
        &relay,
        "dhcrelay",
        &["dhcrelay", "-d", "-4", "-a", "-iu", "r1", "-id", "r0", "198.18.1.1"],
        &dir.path("dhcrelay.log"),
    );
    std::thread::sleep(Duration::from_millis(500));
    let (script, ev) = udhcpc_script(&dir);
    let _udhcpc = Process::start(
        &client,
        "udhcpc",
        &["udhcpc", "-i", "c0", "-f", "-t", "10", "-T", "1", "-s", &script],
        &dir.path("udhcpc.log"),
    );
    assert!(
        wait_event(&ev, "bound ip=198.18.2.100"),
        "relayed client bound: {}\n{}",
        events(&ev),
        std::fs::read_to_string(dir.path("dhcrelay.log")).unwrap_or_default()
    );
    let frames = capture.finish();
    // Between relay and server: requests carry the relay's option 82, replies echo it.
    let mut requests = Vec::new();
    let mut replies = Vec::new();
    for f in &frames {
        // Frames the relay sends are captured before checksum offload fills the UDP checksum,
        // so the headers are read without verifying it.
        let Ok(l2) = dhcp_user::wire::ether::Header::parse(f) else { continue };
        let Ok(ip) = dhcp_user::wire::ipv4::Ipv4Packet::new_checked(&f[l2.len()..]) else { continue };
        let Ok(u) = dhcp_user::wire::udp::UdpPacket::new_checked(ip.payload()) else { continue };
        if ip.protocol() != 17 || (u.src_port(), u.dst_port()) != (67, 67) {
            continue;
        }
        let Ok(p) = DhcpPacket::new_checked(u.payload()) else { continue };
        let Ok(o) = p.parse_options() else { continue };
        let mut scratch = [0u8; 1024];
        let ri = o.value(code::RELAY_AGENT_INFO, &mut scratch).ok().flatten().map(<[u8]>::to_vec);
        if p.op() == 1 {
            requests.push(ri)
        } else {
            replies.push(ri)
        }
    }
    assert!(!requests.is_empty() && !replies.is_empty(), "{} frames captured", frames.len());
    let added = requests[0].clone().expect("dhcrelay -a adds option 82");
    assert!(
        replies.iter().all(|r| r.as_ref() == Some(&added)),
        "every reply echoes option 82: {replies:?} vs {added:?}"
    );
}

/// Counters each worker reported at exit: `(pkt4-received, pkt4-ack-sent)` per worker.
fn worker_counts(log: &Path) -> Vec<(u64, u64)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter(|l| l.contains("xdhcpd: worker ") && l.contains("pkt4-received"))
        .map(|l| {
            let field = |name: &str| {
                l.split(name).nth(1).and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok()).unwrap_or(0)
            };
            (field("pkt4-received "), field("pkt4-ack-sent "))
        })
        .collect()
}

#[test]
fn xdp_multi_queue_veth_spreads_clients_over_every_worker() {
    if !root_or_skip("xdp_multi_queue_veth_spreads_clients_over_every_worker") {
        return;
    }
    // A veth with four queues each way, four workers: 4 x 4 AF_XDP sockets.
    let id = format!("xdt{}-mq", std::process::id());
    let server = Netns::new(format!("{id}-s"));
    let client = Netns::new(format!("{id}-c"));
    sh(&[
        "ip",
        "link",
        "add",
        "s0",
        "netns",
        &server.name,
        "numrxqueues",
        "4",
        "numtxqueues",
        "4",
        "type",
        "veth",
        "peer",
        "c0",
        "netns",
        &client.name,
        "numrxqueues",
        "4",
        "numtxqueues",
        "4",
    ]);
    server.ip(&["addr", "add", "198.18.0.1/16", "dev", "s0"]);
    client.ip(&["addr", "add", "198.18.0.2/16", "dev", "c0"]);
    server.ip(&["link", "set", "s0", "up"]);
    client.ip(&["link", "set", "c0", "up"]);
    let dir = Scratch::new("mq");
    let log = dir.path("server.log");
    let args = serve_args("198.18.0.0/16", "198.18.1.0-198.18.255.254", 4, "xdp");
    let mut xdhcpd = start_in(&server, &strs(&args), &log);
    assert!(std::fs::read_to_string(&log).unwrap().contains("4 receive queues x 4 AF_XDP sockets"));
    let out = client.exec(&["perfdhcp", "-4", "-l", "c0", "-r", "200", "-R", "800", "-p", "3"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let r = parse_perfdhcp(&text);
    assert_eq!(r.exchanges.len(), 2, "{text}");
    assert!(xdhcpd.stop().success());
    let counts = worker_counts(&log);
    assert_eq!(counts.len(), 4, "{}", std::fs::read_to_string(&log).unwrap_or_default());
    for (w, (received, acks)) in counts.iter().enumerate() {
        assert!(*received > 50 && *acks > 25, "worker {w} served its share: {counts:?}");
    }
    let link = String::from_utf8_lossy(&server.ip(&["-d", "link", "show", "s0"]).stdout).to_string();
    assert!(!link.contains("prog/xdp"), "program removed at exit: {link}");
}

#[test]
fn xdp_tagged_clients_get_tagged_replies() {
    if !root_or_skip("xdp_tagged_clients_get_tagged_replies") {
        return;
    }
    use dhcp_user::wire::{ether, frame};
    // Kernels without 802.1Q interfaces (this one) are fine: the client side writes tagged
    // frames itself and reads the replies through a capture that keeps their tags.
    let pair = Pair::new("vlan");
    let dir = Scratch::new("vlan");
    let cfg = dir.path("xdhcpd.toml");
    std::fs::write(
        &cfg,
        "server_id = \"198.18.0.1\"\n[server]\ninterfaces = [\"s0\"]\nworkers = 2\nbackend = \"xdp\"\n\n\
         [[subnet]]\nsubnet = \"198.18.0.0/24\"\ninterface = \"s0\"\npools = [\"198.18.0.100-198.18.0.110\"]\n\n\
         [[subnet]]\nsubnet = \"198.18.100.0/24\"\ninterface = \"s0\"\nvlan = 100\nserver_id = \"198.18.0.1\"\npools = [\"198.18.100.10-198.18.100.20\"]\n\n\
         [[subnet]]\nsubnet = \"198.18.30.0/24\"\ninterface = \"s0\"\nvlan = 300\nserver_id = \"198.18.0.1\"\npools = [\"198.18.30.10-198.18.30.20\"]\n",
    )
    .unwrap();
    let _server = start_server(&pair, &["--config", &cfg.display().to_string()], &dir.path("server.log"));
    let q = |tpid, vid| ether::VlanTag { tpid, tci: vid };
    let cases = [
        (21u32, vec![q(ether::TPID_8021Q, 100)], Ipv4Addr::new(198, 18, 100, 10)),
        (22u32, vec![q(ether::TPID_8021AD, 200), q(ether::TPID_8021Q, 300)], Ipv4Addr::new(198, 18, 30, 10)),
    ];
    let capture = Capture::start(&pair.client, "c0");
    for (n, tags, _) in &cases {
        let mut l2 = ether::Header {
            dst: ether::BROADCAST,
            src: mac_for(*n),
            ethertype: ether::ETHERTYPE_IPV4,
            ..Default::default()
        };
        for (i, t) in tags.iter().enumerate() {
            l2.vlans[i] = *t;
        }
        l2.vlan_count = tags.len() as u8;
        let dhcp = msg(*n, MessageType::Discover, Ipv4Addr::UNSPECIFIED, &[]);
        let at = frame::payload_offset(l2.vlan_count);
        let mut buf = vec![0u8; at + dhcp.len()];
        buf[at..].copy_from_slice(&dhcp);
        let len =
            frame::write_headers(&mut buf, &l2, (Ipv4Addr::UNSPECIFIED, 68), (Ipv4Addr::BROADCAST, 67), dhcp.len(), 64)
                .unwrap();
        buf.truncate(len);
        pair.client.spawn(move || send_frame("c0", &buf)).join().unwrap();
    }
    std::thread::sleep(Duration::from_millis(500));
    let frames = capture.finish();
    for (n, tags, want) in &cases {
        let reply = frames.iter().find_map(|f| {
            let u = frame::UdpFrame::parse(f).ok()?;
            let p = DhcpPacket::new_checked(&f[u.payload.clone()]).ok()?;
            (u.src_port == 67 && p.op() == 2 && p.xid() == 0x5000 + n).then(|| (u.l2, p.yiaddr()))
        });
        let (l2, yiaddr) = reply.unwrap_or_else(|| panic!("client {n}: no reply among {} frames", frames.len()));
        let got: Vec<(u16, u16)> = l2.tags().iter().map(|t| (t.tpid, t.vid())).collect();
        let sent: Vec<(u16, u16)> = tags.iter().map(|t| (t.tpid, t.vid())).collect();
        assert_eq!(got, sent, "client {n}: reply carries the request's tags");
        assert_eq!(yiaddr, *want, "client {n}: address from the VLAN's subnet");
    }
}

/// Scripted client `n` with client identifier `id` and hardware address `mac`.
fn msg_with_id(n: u32, mac: [u8; 6], id: &[u8], mt: MessageType, options: &[(u8, &[u8])]) -> Vec<u8> {
    let mut buf = vec![0u8; 600];
    let m = ClientMsg { flags: FLAG_BROADCAST, client_id: Some(id), options, ..ClientMsg::new(mac, 0x7000 + n) };
    let len = m.write(mt, &mut buf).unwrap();
    buf.truncate(len);
    buf
}

/// RFC 2131 §4.2: the client identifier is the client. A CPE whose NIC was swapped keeps its
/// identifier and must get its own lease back, whichever worker its new MAC would hash to
/// (before, about half of them got nothing with two workers).
fn client_id_case(backend: &str) {
    if !root_or_skip(&format!("a_client_keeps_its_lease_by_its_client_id_whatever_its_mac ({backend})")) {
        return;
    }
    let pair = Pair::new("cid");
    let dir = Scratch::new("cid");
    let _server = start_server(&pair, &strs(&quick("198.18.0.10-198.18.0.200", backend)), &dir.path("server.log"));
    let outcomes = pair
        .client
        .spawn(|| {
            let c = RawClient::new("c0");
            let limit = Duration::from_secs(2);
            (0..24u32)
                .map(|n| {
                    let id = [0xff, 0, 0, 0x42, n as u8, 1, 2, 3];
                    let (old, new) = (mac_for(0x10_000 + n), mac_for(0x20_000 + n * 7919));
                    let offer = c.exchange(&msg_with_id(n, old, &id, MessageType::Discover, &[]), limit)?;
                    let ip = yiaddr(&offer);
                    let sid = [198, 18, 0, 1];
                    let opts = [(code::SERVER_ID, &sid[..]), (code::REQUESTED_IP, &ip.octets()[..])];
                    let ack = c.exchange(&msg_with_id(n, old, &id, MessageType::Request, &opts), limit)?;
                    assert_eq!(reply_type(&ack), Some(MessageType::Ack));
                    // INIT-REBOOT from the new hardware address, same identifier.
                    let opts = [(code::REQUESTED_IP, &ip.octets()[..])];
                    let again = c.exchange(&msg_with_id(n, new, &id, MessageType::Request, &opts), limit);
                    Some((ip, again.and_then(|r| reply_type(&r).map(|t| (t, yiaddr(&r))))))
                })
                .collect::<Vec<_>>()
        })
        .join()
        .unwrap();
    for (n, o) in outcomes.iter().enumerate() {
        let (ip, again) = o.unwrap_or_else(|| panic!("client {n}: no lease at first"));
        assert_eq!(again, Some((MessageType::Ack, ip)), "client {n}: its lease from its new MAC");
    }
}
