//! ISP features through a real relay and a real client: ISC dhcrelay adds option 82 (its
//! circuit id is the name of the interface the request came in on), busybox udhcpc gets the
//! address reserved for that subscriber port and the options of its client class (43 and
//! 125, seen in udhcpc's script environment), a new CPE on the port takes the address over at
//! once, and a leasequery (RFC 4388, encoded by dhcproto) from the relay's address is answered
//! with the lease and the relay agent information it was granted with.
//!
//! Namespaces of its own (198.18.0.0/15, no default route), removed with the processes even on
//! failure. Needs root: skipped outside CI otherwise. A test of the dhcp-user package, so that
//! cargo builds the binary for it.

use dhcp_user::control::client::request;
use dhcproto::v4::{self, relay::RelayCode, relay::RelayInfo, DhcpOption, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable};
use std::net::Ipv4Addr;
use std::time::Duration;
use xdhcpd_tests::*;

const XDHCPD: &str = env!("CARGO_BIN_EXE_xdhcpd");
const WAIT: Duration = Duration::from_secs(20);
const PORT_ADDRESS: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 50);

xdhcpd_tests::on_both_paths! {
    circuit_reservation_class_options_takeover_and_leasequery => isp_case;
}

/// client (c0) — relay (r0 | r1) — server (s0); the relay's client side is 198.18.2.1/24.
struct Topology {
    server: Netns,
    relay: Netns,
    client: Netns,
}

fn topology(backend: &str) -> Topology {
    let id = format!("xdt{}-isp-{backend}", std::process::id());
    let t = Topology {
        server: Netns::new(format!("{id}-s")),
        relay: Netns::new(format!("{id}-r")),
        client: Netns::new(format!("{id}-c")),
    };
    let (s, r, c) = (&t.server.name, &t.relay.name, &t.client.name);
    sh(&["ip", "link", "add", "s0", "netns", s, "type", "veth", "peer", "r1", "netns", r]);
    sh(&["ip", "link", "add", "r0", "netns", r, "type", "veth", "peer", "c0", "netns", c]);
    t.server.ip(&["addr", "add", "198.18.1.1/24", "dev", "s0"]);
    t.relay.ip(&["addr", "add", "198.18.1.2/24", "dev", "r1"]);
    t.relay.ip(&["addr", "add", "198.18.2.1/24", "dev", "r0"]);
    for (ns, dev) in [(&t.server, "s0"), (&t.relay, "r1"), (&t.relay, "r0"), (&t.client, "c0")] {
        ns.ip(&["link", "set", dev, "up"]);
    }
    t.server.ip(&["route", "add", "198.18.2.0/24", "via", "198.18.1.2"]);
    t
}

/// The port `r0` of the relay has one reserved address; CPEs of vendor class "acme" get 43
/// and 125.
fn config(dir: &Scratch, backend: &str) -> String {
    let path = dir.path("xdhcpd.toml");
    let text = format!(
        "server_id = \"198.18.1.1\"\ntrusted_relays = [\"198.18.1.2\"]\nleasequery = true\n\
         [server]\ninterfaces = [\"s0\"]\nworkers = 2\nbackend = \"{backend}\"\n\n\
         [control]\nlisten = \"127.0.0.1:9767\"\n\n\
         [[subnet]]\nsubnet = \"198.18.1.0/24\"\ninterface = \"s0\"\npools = [\"198.18.1.100-198.18.1.110\"]\n\n\
         [[subnet]]\nsubnet = \"198.18.2.0/24\"\npools = [\"198.18.2.100-198.18.2.110\"]\nrouters = [\"198.18.2.1\"]\n\
         [[subnet.reservation]]\ncircuit_id = \"r0\"\nip = \"{PORT_ADDRESS}\"\n\n\
         [[class]]\nname = \"acme\"\nvendor_class = \"acme\"\n\
         [[class.option]]\ncode = 43\nhex = \"01:04:c6:12:00:02\"\n\
         [[class.option]]\ncode = 125\nhex = \"00:00:0d:e9:03:01:01:61\"\n"
    );
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn events(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Starts udhcpc on c0 with vendor class `acme-cpe`; its script logs `EVENT ip=.. o43=.. o125=..`.
fn start_udhcpc(t: &Topology, dir: &Scratch, n: u32) -> (Process, String) {
    let (script, events) = hook_script(
        dir,
        &format!("udhcpc{n}.sh"),
        "echo \"$1 ip=$ip o43=$opt43 o125=$opt125\"",
        "case \"$1\" in\n  deconfig) ip addr flush dev \"$interface\" ;;\n  \
         bound|renew) ip addr replace \"$ip/${mask:-24}\" dev \"$interface\" ;;\nesac\n",
    );
    let args = ["udhcpc", "-i", "c0", "-f", "-t", "10", "-T", "1", "-V", "acme-cpe", "-s", &script];
    (Process::start(&t.client, "udhcpc", &args, &dir.path(&format!("udhcpc{n}.log"))), events)
}

fn wait_event(path: &str, needle: &str) -> bool {
    eventually(WAIT, || events(path).contains(needle).then_some(())).is_some()
}

/// A DHCPLEASEQUERY by address from the relay's server-side address (its giaddr), sent from
/// port 67 as a relay would; the decoded answer.
fn leasequery(t: &Topology, ip: Ipv4Addr) -> Option<v4::Message> {
    t.relay
        .spawn(move || {
            let sock = udp_on("r1", 67);
            sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
            let giaddr = Ipv4Addr::new(198, 18, 1, 2);
            let mut q = v4::Message::new_with_id(0x4c51, ip, Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED, giaddr, &[]);
            q.opts_mut().insert(DhcpOption::MessageType(v4::MessageType::LeaseQuery));
            let bytes = q.to_vec().unwrap();
            let mut buf = [0u8; 1500];
            // Retried: the first may wait for neighbour resolution.
            for _ in 0..10 {
                sock.send_to(&bytes, (Ipv4Addr::new(198, 18, 1, 1), 67)).unwrap();
                if let Ok((n, _)) = sock.recv_from(&mut buf) {
                    let m = v4::Message::decode(&mut Decoder::new(&buf[..n])).ok()?;
                    if m.xid() == 0x4c51 {
                        return Some(m);
                    }
                }
            }
            None
        })
        .join()
        .unwrap()
}

fn mac_of(ns: &Netns, dev: &str) -> Vec<u8> {
    let out = String::from_utf8(ns.exec(&["cat", &format!("/sys/class/net/{dev}/address")]).stdout).unwrap();
    out.trim().split(':').map(|b| u8::from_str_radix(b, 16).unwrap()).collect()
}

fn isp_case(backend: &str) {
    if !root_or_skip(&format!("circuit_reservation_class_options_takeover_and_leasequery ({backend})")) {
        return;
    }
    let t = topology(backend);
    let dir = Scratch::new("isp");
    let cfg = config(&dir, backend);
    let _xdhcpd = start_xdhcpd(&t.server, XDHCPD, &["--config", &cfg], &dir.path("server.log"));
    let mut dhcrelay = Process::start(
        &t.relay,
        "dhcrelay",
        &["dhcrelay", "-d", "-4", "-a", "-iu", "r1", "-id", "r0", "198.18.1.1"],
        &dir.path("dhcrelay.log"),
    );
    std::thread::sleep(Duration::from_millis(500));
    // The first CPE on port r0: the port's address, and its class's options.
    let (mut first, ev) = start_udhcpc(&t, &dir, 1);
    let want = format!("bound ip={PORT_ADDRESS} o43=0104c6120002 o125=00000de903010161");
    assert!(wait_event(&ev, &want), "{}\n{}", events(&ev), events(&dir.path("server.log").display().to_string()));
    first.stop();
    // A new CPE (another MAC, hence another client id) on the same port takes it over at once,
    // although the first one's lease runs for another hour.
    t.client.ip(&["link", "set", "c0", "address", "02:00:00:00:aa:02"]);
    let (_second, ev2) = start_udhcpc(&t, &dir, 2);
    assert!(wait_event(&ev2, &format!("bound ip={PORT_ADDRESS}")), "{}", events(&ev2));
    dhcrelay.stop();
    // Leasequery by address: active, the new CPE's hardware address, the circuit it came on.
    let m = leasequery(&t, PORT_ADDRESS).expect("a leasequery answer");
    assert_eq!(m.opts().msg_type(), Some(v4::MessageType::LeaseActive), "{m:?}");
    assert_eq!((m.ciaddr(), m.chaddr()), (PORT_ADDRESS, &mac_of(&t.client, "c0")[..]));
    let Some(DhcpOption::RelayAgentInformation(ri)) = m.opts().get(OptionCode::RelayAgentInformation) else {
        panic!("option 82 stored with the lease: {m:?}")
    };
    assert_eq!(ri.get(RelayCode::AgentCircuitId), Some(&RelayInfo::AgentCircuitId(b"r0".to_vec())));
    assert!(matches!(m.opts().get(OptionCode::AddressLeaseTime), Some(DhcpOption::AddressLeaseTime(s)) if *s > 3000));
    // A free address of the subnet is unassigned; one we do not manage is unknown.
    let free = leasequery(&t, Ipv4Addr::new(198, 18, 2, 110)).expect("answer");
    assert_eq!(free.opts().msg_type(), Some(v4::MessageType::LeaseUnassigned));
    let other = leasequery(&t, Ipv4Addr::new(198, 18, 3, 1)).expect("answer");
    assert_eq!(other.opts().msg_type(), Some(v4::MessageType::LeaseUnknown));
    // The control API finds the lease by the port it came on, with the relay information.
    let found = lookup(&t, "circuit_id=r0");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["ip"], PORT_ADDRESS.to_string());
    assert_eq!(found[0]["relay_info"]["circuit_id"], "72:30", "{found:?}");
    assert_eq!(lookup(&t, "circuit_id_hex=72:30"), found);
    assert!(lookup(&t, "circuit_id=r9").is_empty());
}

/// `GET /v1/leases?QUERY` on the server's control API: the leases found.
fn lookup(t: &Topology, query: &str) -> Vec<serde_json::Value> {
    let path = format!("/v1/leases?{query}");
    let r = t
        .server
        .spawn(move || request("127.0.0.1:9767".parse().unwrap(), "GET", &path, None, None).expect("control API"))
        .join()
        .unwrap();
    let body = r.json().expect("JSON");
    body["leases"].as_array().cloned().unwrap_or_else(|| panic!("{body}"))
}
