//! ISP features on a virtual clock: reservations by subscriber port (circuit id, remote id)
//! with immediate CPE takeover, client classes (matching, options, pools kept for classes),
//! and leasequery (RFC 4388), whose replies dhcproto decodes.

use super::*;
use crate::config::{Cidr, ClientClass};

const RELAY: &str = "100.64.0.254";

fn via_relay() -> Ingress {
    Ingress { src: SocketAddrV4::new(ip(RELAY), 67), ..Ingress::broadcast(None) }
}

fn trusted(cfg: &mut Config) {
    cfg.trusted_relays = vec![Cidr { network: ip(RELAY), prefix_len: 32 }];
}

/// Client `n` behind the relay on a port with circuit id `circuit` and remote id `remote`.
fn on_port(n: u8, circuit: &[u8], remote: &[u8]) -> Client {
    let mut c = Client::new(n);
    c.giaddr = ip(RELAY);
    let mut ri = vec![1, circuit.len() as u8];
    ri.extend_from_slice(circuit);
    ri.extend_from_slice(&[2, remote.len() as u8]);
    ri.extend_from_slice(remote);
    c.relay_info = Some(ri);
    c
}

fn relayed_dora(s: &mut Server, c: &Client) -> Ipv4Addr {
    let (_, offer) = s.ask_via(&via_relay(), &c.discover());
    assert_eq!(msg_type(&offer), v4::MessageType::Offer);
    let (_, ack) = s.ask_via(&via_relay(), &c.select(SERVER, offer.yiaddr()));
    assert_eq!(msg_type(&ack), v4::MessageType::Ack);
    ack.yiaddr()
}

fn port_config() -> Config {
    let mut cfg = config("100.64.0.10", "100.64.0.20");
    trusted(&mut cfg);
    cfg.subnets[0].reservations = vec![
        Reservation { client: ClientMatch::CircuitId(b"eth1/0/7".to_vec()), ip: ip("100.64.0.107") },
        Reservation { client: ClientMatch::RemoteId(vec![0xde, 0xad]), ip: ip("100.64.0.108") },
    ];
    cfg
}

#[test]
fn a_port_reservation_goes_to_whatever_client_arrives_on_the_port() {
    let mut s = Server::new(port_config());
    assert_eq!(relayed_dora(&mut s, &on_port(1, b"eth1/0/7", b"x")), ip("100.64.0.107"));
    // Remote id when the circuit has no reservation.
    assert_eq!(relayed_dora(&mut s, &on_port(2, b"eth1/0/8", &[0xde, 0xad])), ip("100.64.0.108"));
    // Another port gets a pool address, and a client elsewhere never gets a port's address.
    assert_eq!(relayed_dora(&mut s, &on_port(3, b"eth1/0/9", b"y")), ip("100.64.0.10"));
    assert!(
        !matches!(s.send(&Client::new(4).reboot(ip("100.64.0.107"))), Outcome::Reply(r) if r.kind == MessageType::Ack)
    );
    let stranger = Client::new(5);
    let (_, offer) = s.ask(&stranger.discover_requesting(ip("100.64.0.107")));
    assert_ne!(offer.yiaddr(), ip("100.64.0.107"));
}

#[test]
fn a_new_cpe_on_the_port_takes_the_address_over_at_once() {
    let mut s = Server::new(port_config());
    let old = on_port(1, b"eth1/0/7", b"x");
    let new = on_port(2, b"eth1/0/7", b"x");
    let addr = relayed_dora(&mut s, &old);
    assert_eq!(relayed_dora(&mut s, &new), addr, "the new CPE gets the port's address at once");
    s.take_events();
    // The old CPE's renewal is refused and its record ends, without freeing the new one's.
    let (r, _) = s.ask_via(&via_relay(), &old.renew(addr));
    assert_eq!(r.kind, MessageType::Nak);
    assert_eq!(s.take_events(), vec![(EventKind::Released, addr)]);
    assert_eq!(s.engine.stats().port_takeovers, 1);
    assert_eq!(s.engine.lookup(&old.key()), None);
    let (r, _) = s.ask_via(&via_relay(), &new.renew(addr));
    assert_eq!(r.kind, MessageType::Ack, "the new holder keeps renewing");
    // The old CPE's lease running out later does not free the address either.
    s.advance(7200);
    let third = on_port(3, b"eth1/0/9", b"y");
    for _ in 0..12 {
        let (_, o) = s.ask_via(&via_relay(), &third.discover());
        assert_ne!(o.yiaddr(), addr);
    }
}

#[test]
fn takeover_works_across_workers() {
    // The old holder lives on another worker: only the shared holder word tells it.
    let shared = Arc::new(Shared::new(&port_config(), 2).unwrap());
    let mut a = Engine::new(shared.clone(), T0, 16);
    let mut b = Engine::new(shared, T0, 16);
    let (mut out, mut ev) = ([0u8; 1500], Vec::new());
    let mut run = |e: &mut Engine, m: &[u8]| match e.handle(T0, &via_relay(), m, &mut out, &mut ev) {
        Outcome::Reply(r) => {
            (r.kind, v4::Message::decode(&mut dhcproto::Decoder::new(&out[..r.len])).unwrap().yiaddr())
        }
        o => panic!("{o:?}"),
    };
    let (old, new) = (on_port(1, b"eth1/0/7", b"x"), on_port(2, b"eth1/0/7", b"x"));
    let addr = ip("100.64.0.107");
    assert_eq!(run(&mut a, &old.discover()), (MessageType::Offer, addr));
    assert_eq!(run(&mut a, &old.select(SERVER, addr)), (MessageType::Ack, addr));
    assert_eq!(run(&mut b, &new.discover()), (MessageType::Offer, addr));
    assert_eq!(run(&mut b, &new.select(SERVER, addr)), (MessageType::Ack, addr));
    assert_eq!(run(&mut a, &old.renew(addr)).0, MessageType::Nak);
    assert_eq!(run(&mut b, &new.renew(addr)).0, MessageType::Ack);
}

#[test]
fn port_reservations_need_a_trusted_relay() {
    let mut cfg = port_config();
    cfg.trusted_relays.clear();
    let e = cfg.validate().unwrap_err();
    assert_eq!(e.path, "subnets[0].reservations[0]");
    // An untrusted relay's option 82 claims nothing.
    let mut s = Server::new(port_config());
    let forger = Ingress { src: SocketAddrV4::new(ip("100.64.0.99"), 67), ..Ingress::broadcast(None) };
    let out = s.send_via(&forger, &on_port(1, b"eth1/0/7", b"x").discover());
    assert_eq!(out, Outcome::Silent(Silence::UntrustedRelay));
}

#[test]
fn restore_puts_a_port_holder_back_and_refuses_a_second() {
    let mut s = Server::new(port_config());
    let addr = ip("100.64.0.107");
    let (a, b) = (Client::new(1), Client::new(2));
    let until = T0 + 100;
    assert_eq!(s.engine.restore(T0, a.key(), a.mac, addr, until, LeaseState::Bound), Ok(()));
    assert_eq!(s.engine.restore(T0, b.key(), b.mac, addr, until, LeaseState::Bound), Err(RestoreError::Conflict));
    let (r, _) = s.ask_via(&via_relay(), &on_port(1, b"eth1/0/7", b"x").renew(addr));
    assert_eq!(r.kind, MessageType::Ack);
}

fn class(name: &str) -> ClientClass {
    ClientClass { name: name.into(), ..ClientClass::default() }
}

fn class_config() -> Config {
    let mut cfg = config("100.64.0.10", "100.64.0.19");
    trusted(&mut cfg);
    cfg.subnets[0].pools.push(Pool { first: ip("100.64.0.100"), last: ip("100.64.0.109") });
    cfg.subnets[0].pool_classes = vec![(1, vec!["cpe".into()])];
    cfg.classes = vec![
        ClientClass {
            vendor_class: Some(b"acme-cpe".to_vec()),
            options: vec![(43, vec![1, 3, 9, 9, 9]), (125, vec![0, 0, 0, 9, 2, 1, 0])],
            ..class("cpe")
        },
        ClientClass { user_class: Some(b"iptv".to_vec()), options: vec![(66, b"tftp.iptv".to_vec())], ..class("iptv") },
        ClientClass { circuit_id: Some(b"port9".to_vec()), options: vec![(6, vec![100, 64, 0, 9])], ..class("port9") },
        ClientClass {
            chaddr_prefix: Some(vec![0x02, 0, 0]),
            options: vec![(15, b"oui.example".to_vec())],
            ..class("oui")
        },
    ];
    cfg
}

fn opt(m: &v4::Message, code: u8) -> Option<Vec<u8>> {
    match m.opts().get(OptionCode::from(code))? {
        DhcpOption::Unknown(u) => Some(u.data().to_vec()),
        DhcpOption::DomainNameServer(ips) => Some(ips.iter().flat_map(|i| i.octets()).collect()),
        DhcpOption::DomainName(d) => Some(d.as_bytes().to_vec()),
        DhcpOption::TFTPServerName(d) => Some(d.clone()),
        DhcpOption::VendorExtensions(v) => Some(v.clone()),
        other => panic!("option {code}: {other:?}"),
    }
}

#[test]
fn classes_add_and_override_options() {
    let mut s = Server::new(class_config());
    let mut cpe = Client::new(1);
    cpe.extra = vec![(60, b"acme-cpe-v2".to_vec())];
    cpe.mac = [0x0a, 0, 0, 0, 0, 1];
    let (_, offer) = s.ask(&cpe.discover());
    // Sent although not requested: vendor options for the CPE.
    assert_eq!(opt(&offer, 43), Some(vec![1, 3, 9, 9, 9]));
    assert_eq!(opt(&offer, 125), Some(vec![0, 0, 0, 9, 2, 1, 0]));
    assert_eq!(opt(&offer, 66), None);
    assert_eq!(opt(&offer, 15), Some(b"isp.example".to_vec()), "not of the OUI class");
    // User class 77 as RFC 3004 instances, and a chaddr prefix overriding the subnet's option.
    let mut stb = Client::new(2);
    stb.extra = vec![(77, b"\x05voice\x04iptv".to_vec())];
    let (_, offer) = s.ask(&stb.discover());
    assert_eq!(opt(&offer, 66), Some(b"tftp.iptv".to_vec()));
    assert_eq!(opt(&offer, 15), Some(b"oui.example".to_vec()), "class option replaces the subnet's");
    assert_eq!(opt(&offer, 43), None, "the subnet's own, not requested");
    // Circuit id from a trusted relay.
    let mut port = on_port(3, b"port9", b"r");
    port.mac = [0x0a, 0, 0, 0, 0, 3];
    let (_, offer) = s.ask_via(&via_relay(), &port.discover());
    assert_eq!(opt(&offer, 6), Some(vec![100, 64, 0, 9]));
}

#[test]
fn pools_kept_for_a_class_serve_only_its_members() {
    let mut s = Server::new(class_config());
    for n in 1..=10u8 {
        let got = dora(&mut s, &Client::new(n));
        assert!(Pool { first: ip("100.64.0.10"), last: ip("100.64.0.19") }.contains(got), "{got}");
    }
    // The open pool is used up; others get nothing from the kept pool, even asking for it.
    let outsider = Client::new(99);
    assert_eq!(s.send(&outsider.discover()), Outcome::Silent(Silence::NoAddress));
    assert_eq!(s.send(&outsider.discover_requesting(ip("100.64.0.105"))), Outcome::Silent(Silence::NoAddress));
    let (r, _) = s.ask(&outsider.select(SERVER, ip("100.64.0.105")));
    assert_eq!(r.kind, MessageType::Nak);
    // A member still gets one.
    let mut cpe = Client::new(100);
    cpe.extra = vec![(60, b"acme-cpe".to_vec())];
    assert_eq!(dora(&mut s, &cpe), ip("100.64.0.100"));
}

#[test]
fn a_subnet_kept_for_a_class_lets_others_fall_to_the_next_on_its_link() {
    let mut cfg = class_config();
    cfg.subnets[0].pool_classes.clear();
    cfg.subnets[0].classes = vec!["iptv".into()];
    let mut open = subnet("100.64.1.0", "100.64.1.10", "100.64.1.20");
    open.interface = Some("eth0".into());
    cfg.subnets[0].interface = Some("eth0".into());
    cfg.subnets.push(open);
    let mut s = Server::new(cfg);
    let eth0 = Ingress::broadcast(s.engine.shared().interface_id("eth0"));
    let (_, offer) = s.ask_via(&eth0, &Client::new(1).discover());
    assert_eq!(offer.yiaddr(), ip("100.64.1.10"), "not a member: the next subnet of the link");
    let mut stb = Client::new(2);
    stb.extra = vec![(77, b"iptv".to_vec())];
    let (_, offer) = s.ask_via(&eth0, &stb.discover());
    assert_eq!(offer.yiaddr(), ip("100.64.0.10"), "a member: the kept subnet");
}

#[test]
fn bad_class_configurations_are_refused() {
    let mut cfg = class_config();
    cfg.classes.push(class("empty"));
    assert_eq!(cfg.validate().unwrap_err().path, "classes[4]");
    let mut cfg = class_config();
    cfg.subnets[0].classes = vec!["nope".into()];
    assert!(cfg.validate().unwrap_err().reason.contains("no class named \"nope\""));
    let mut cfg = class_config();
    cfg.classes[0].options.push((82, vec![1]));
    assert_eq!(cfg.validate().unwrap_err().path, "classes[0].options[2]");
    let mut cfg = class_config();
    cfg.classes[3].chaddr_prefix = Some(vec![0; 7]);
    assert_eq!(cfg.validate().unwrap_err().path, "classes[3].chaddr_prefix");
}

pub(super) const QUERIER: &str = "100.64.0.250";

fn lq_config() -> Config {
    let mut cfg = port_config();
    cfg.leasequery = true;
    cfg.leasequery_from = vec![Cidr { network: ip(QUERIER), prefix_len: 32 }];
    cfg
}

pub(super) fn from_querier() -> Ingress {
    Ingress { src: SocketAddrV4::new(ip(QUERIER), 67), ..Ingress::broadcast(None) }
}

/// A DHCPLEASEQUERY as dhcproto encodes it: by `ciaddr`, else by option 61, else by `chaddr`.
pub(super) fn query(ciaddr: Ipv4Addr, chaddr: &[u8], client_id: Option<&[u8]>) -> Vec<u8> {
    use dhcproto::Encodable;
    let mut m =
        v4::Message::new_with_id(0xabcd, ciaddr, Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED, ip(QUERIER), chaddr);
    m.opts_mut().insert(DhcpOption::MessageType(v4::MessageType::LeaseQuery));
    if let Some(id) = client_id {
        m.opts_mut().insert(DhcpOption::ClientIdentifier(id.to_vec()));
    }
    m.to_vec().unwrap()
}

/// The reply dhcproto would encode for an answer: compared whole with ours, decoded.
fn expected(kind: v4::MessageType, ciaddr: Ipv4Addr, chaddr: &[u8], opts: Vec<DhcpOption>) -> v4::Message {
    let mut m =
        v4::Message::new_with_id(0xabcd, ciaddr, Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED, ip(QUERIER), chaddr);
    m.set_opcode(v4::Opcode::BootReply);
    m.opts_mut().insert(DhcpOption::MessageType(kind));
    m.opts_mut().insert(DhcpOption::ServerIdentifier(SERVER));
    for o in opts {
        m.opts_mut().insert(o);
    }
    m
}

fn relay_info(circuit: &[u8], remote: &[u8]) -> DhcpOption {
    use v4::relay::{RelayAgentInformation, RelayInfo};
    let mut ri = RelayAgentInformation::default();
    ri.insert(RelayInfo::AgentCircuitId(circuit.to_vec()));
    ri.insert(RelayInfo::AgentRemoteId(remote.to_vec()));
    DhcpOption::RelayAgentInformation(ri)
}

#[test]
fn leasequery_by_address_client_id_and_mac() {
    let mut s = Server::new(lq_config());
    let mut cpe = on_port(1, b"eth1/0/7", b"x");
    cpe.client_id = Some(vec![1, 2, 0, 0, 0, 0, 1]);
    let addr = relayed_dora(&mut s, &cpe);
    let plain = Client::new(2);
    let other = dora(&mut s, &plain);
    s.advance(100);
    let active = |assoc: bool| {
        let mut o = vec![
            DhcpOption::AddressLeaseTime(3500),
            DhcpOption::ClientLastTransactionTime(100),
            DhcpOption::ClientIdentifier(vec![1, 2, 0, 0, 0, 0, 1]),
            relay_info(b"eth1/0/7", b"x"),
        ];
        if assoc {
            o.push(DhcpOption::AssociatedIp(vec![addr]));
        }
        expected(v4::MessageType::LeaseActive, addr, &cpe.mac, o)
    };
    let (r, m) = s.ask_via(&from_querier(), &query(addr, &[], None));
    assert_eq!((r.kind, r.to, r.commit), (MessageType::LeaseActive, Destination::Relay(ip(QUERIER)), false));
    assert_eq!(m, active(false));
    let (_, m) = s.ask_via(&from_querier(), &query(Ipv4Addr::UNSPECIFIED, &[], Some(&[1, 2, 0, 0, 0, 0, 1])));
    assert_eq!(m, active(true));
    // By MAC: a client known by its chaddr; no option 61 or 82 stored.
    let (_, m) = s.ask_via(&from_querier(), &query(Ipv4Addr::UNSPECIFIED, &plain.mac, None));
    let o = vec![
        DhcpOption::AddressLeaseTime(3500),
        DhcpOption::ClientLastTransactionTime(100),
        DhcpOption::AssociatedIp(vec![other]),
    ];
    assert_eq!(m, expected(v4::MessageType::LeaseActive, other, &plain.mac, o));
    assert_eq!(s.engine.stats().leasequery_active, 3);
}

#[test]
fn leasequery_unassigned_unknown_and_refusals() {
    let mut s = Server::new(lq_config());
    let free = ip("100.64.0.15");
    let (_, m) = s.ask_via(&from_querier(), &query(free, &[], None));
    assert_eq!(m, expected(v4::MessageType::LeaseUnassigned, free, &[], vec![]));
    let (_, m) = s.ask_via(&from_querier(), &query(ip("100.64.0.107"), &[], None));
    assert_eq!(msg_type(&m), v4::MessageType::LeaseUnassigned, "a reserved address is ours too");
    let outside = ip("198.18.0.5");
    let (_, m) = s.ask_via(&from_querier(), &query(outside, &[], None));
    assert_eq!(m, expected(v4::MessageType::LeaseUnknown, outside, &[], vec![]));
    let mac = [2, 9, 9, 9, 9, 9];
    let (_, m) = s.ask_via(&from_querier(), &query(Ipv4Addr::UNSPECIFIED, &mac, None));
    assert_eq!(m, expected(v4::MessageType::LeaseUnknown, Ipv4Addr::UNSPECIFIED, &mac, vec![]));
    // A lease released, or ended by a takeover, is no longer active.
    let c = Client::new(1);
    let addr = dora(&mut s, &c);
    s.send(&c.release(addr));
    let (_, m) = s.ask_via(&from_querier(), &query(addr, &[], None));
    assert_eq!(msg_type(&m), v4::MessageType::LeaseUnassigned);
    // Not from an allowed querier; a query naming nothing; leasequery off.
    let stranger = Ingress { src: SocketAddrV4::new(ip("100.64.0.77"), 67), ..Ingress::broadcast(None) };
    assert_eq!(s.send_via(&stranger, &query(addr, &[], None)), Outcome::Silent(Silence::UntrustedRelay));
    let nothing = query(Ipv4Addr::UNSPECIFIED, &[], None);
    assert_eq!(s.send_via(&from_querier(), &nothing), Outcome::Dropped(DropReason::NoClientIdentity));
    let mut off = Server::new(port_config());
    assert_eq!(
        off.send_via(&from_querier(), &query(addr, &[], None)),
        Outcome::Dropped(DropReason::UnexpectedType(10))
    );
}

#[test]
fn leasequery_by_address_sees_other_workers_leases_and_takeovers() {
    let shared = Arc::new(Shared::new(&lq_config(), 2).unwrap());
    assert_eq!(shared.lease_board_bytes(), (11 + 2) * crate::config::LEASE_BOARD_BYTES);
    let mut a = Engine::new(shared.clone(), T0, 16);
    let mut b = Engine::new(shared, T0, 16);
    let (mut out, mut ev) = ([0u8; 1500], Vec::new());
    let mut run = |e: &mut Engine, ing: &Ingress, m: &[u8]| match e.handle(T0, ing, m, &mut out, &mut ev) {
        Outcome::Reply(r) => v4::Message::decode(&mut dhcproto::Decoder::new(&out[..r.len])).unwrap(),
        o => panic!("{o:?}"),
    };
    let addr = ip("100.64.0.107");
    let (old, new) = (on_port(1, b"eth1/0/7", b"x"), on_port(2, b"eth1/0/7", b"x"));
    run(&mut a, &via_relay(), &old.discover());
    run(&mut a, &via_relay(), &old.select(SERVER, addr));
    let m = run(&mut b, &from_querier(), &query(addr, &[], None));
    assert_eq!((msg_type(&m), m.chaddr()), (v4::MessageType::LeaseActive, &old.mac[..]));
    // The new CPE's offer takes the port: the old lease is gone from the board at once.
    run(&mut b, &via_relay(), &new.discover());
    assert_eq!(msg_type(&run(&mut a, &from_querier(), &query(addr, &[], None))), v4::MessageType::LeaseUnassigned);
    run(&mut b, &via_relay(), &new.select(SERVER, addr));
    let m = run(&mut a, &from_querier(), &query(addr, &[], None));
    assert_eq!((msg_type(&m), m.chaddr()), (v4::MessageType::LeaseActive, &new.mac[..]));
    // The old CPE's stale record ending on its worker (a RELEASE) leaves the new one's alone.
    let (mut out2, mut ev2) = ([0u8; 1500], Vec::new());
    assert_eq!(a.handle(T0, &via_relay(), &old.release(addr), &mut out2, &mut ev2), Outcome::Silent(Silence::Done));
    let m = run(&mut b, &from_querier(), &query(addr, &[], None));
    assert_eq!((msg_type(&m), m.chaddr()), (v4::MessageType::LeaseActive, &new.mac[..]));
    let m = run(&mut b, &via_relay(), &new.renew(addr));
    assert_eq!(msg_type(&m), v4::MessageType::Ack, "and the address stays the new CPE's");
}

#[test]
fn two_cpes_racing_on_one_port_from_two_threads_leave_one_holder() {
    let shared = Arc::new(Shared::new(&port_config(), 2).unwrap());
    let addr = ip("100.64.0.107");
    let run = |n: u8, shared: Arc<Shared>| {
        std::thread::spawn(move || {
            let mut e = Engine::new(shared, T0, 16);
            let c = on_port(n, b"eth1/0/7", b"x");
            let (mut out, mut ev) = ([0u8; 1500], Vec::new());
            for _ in 0..2000 {
                for m in [c.discover(), c.select(SERVER, addr)] {
                    if let Outcome::Reply(r) = e.handle(T0, &via_relay(), &m, &mut out, &mut ev) {
                        let got = v4::Message::decode(&mut dhcproto::Decoder::new(&out[..r.len])).unwrap();
                        assert!(got.yiaddr() == addr || r.kind == MessageType::Nak, "only the port's address");
                    }
                }
            }
            (e, c)
        })
    };
    let (a, b) = (run(1, shared.clone()), run(2, shared));
    let (mut ea, ca) = a.join().unwrap();
    let (mut eb, cb) = b.join().unwrap();
    let (mut out, mut ev) = ([0u8; 1500], Vec::new());
    let mut kinds = Vec::new();
    for (e, c) in [(&mut ea, &ca), (&mut eb, &cb)] {
        match e.handle(T0, &via_relay(), &c.renew(addr), &mut out, &mut ev) {
            Outcome::Reply(r) => kinds.push(r.kind),
            o => kinds.push(if o == Outcome::Silent(Silence::UnknownClient) {
                MessageType::Nak
            } else {
                panic!("{o:?}")
            }),
        }
    }
    kinds.sort_by_key(|k| *k as u8);
    assert_eq!(kinds, vec![MessageType::Ack, MessageType::Nak], "exactly one CPE holds the port's address");
}

#[test]
fn leasequery_sees_renewals_answered_outside_the_engine() {
    let mut s = Server::new(lq_config());
    let plain = Client::new(2);
    let addr = dora(&mut s, &plain);
    let key = s.engine.leases().find(|l| l.ip == addr).expect("leased").client;
    // Held to a durable horizon (as for the XDP program), renewed there 3000 s on.
    assert!(s.engine.hold_until(&key, s.now + 5 * 3600));
    s.advance(3000);
    let renewed = s.now;
    s.engine.renewed_outside(&key, renewed, 3600);
    // Past the ACK's own end (3600 s): active, as that renewal left it.
    s.advance(1000);
    let o = vec![
        DhcpOption::AddressLeaseTime(renewed + 3600 - s.now),
        DhcpOption::ClientLastTransactionTime(s.now - renewed),
        DhcpOption::AssociatedIp(vec![addr]),
    ];
    let (_, m) = s.ask_via(&from_querier(), &query(Ipv4Addr::UNSPECIFIED, &plain.mac, None));
    assert_eq!(m, expected(v4::MessageType::LeaseActive, addr, &plain.mac, o));
    // An older renewal changes nothing.
    s.engine.renewed_outside(&key, renewed - 100, 3600);
    let (_, m) = s.ask_via(&from_querier(), &query(addr, &[], None));
    assert_eq!(m.opts().get(v4::OptionCode::AddressLeaseTime), Some(&DhcpOption::AddressLeaseTime(2600)));
}
