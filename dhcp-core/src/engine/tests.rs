//! Engine tests on a virtual clock: a client script, a server, a clock we advance. Replies are
//! decoded with dhcproto (an independent implementation), not with our own reader.

use super::*;
use crate::config::{ClientMatch, Config, Pool, Reservation, Subnet, SubnetOptions};
use crate::wire::dhcp::FLAG_BROADCAST;
use crate::wire::options::code;
use dhcproto::v4::{self, DhcpOption, OptionCode};
use dhcproto::Decodable;

pub(super) const T0: Seconds = 1_800_000_000;
pub(super) const SERVER: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 1);
const OTHER_SERVER: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 2);

pub(super) fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

pub(super) fn subnet(net: &str, first: &str, last: &str) -> Subnet {
    let mut s = Subnet::new(ip(net), 24);
    s.pools.push(Pool { first: ip(first), last: ip(last) });
    s
}

pub(super) fn config(first: &str, last: &str) -> Config {
    let mut s = subnet("100.64.0.0", first, last);
    s.options = SubnetOptions {
        routers: vec![ip("100.64.0.1")],
        dns_servers: vec![ip("100.64.0.53"), ip("100.64.0.54")],
        domain_name: Some("isp.example".into()),
        mtu: Some(1500),
        ntp_servers: vec![ip("100.64.0.123")],
        raw: vec![(43, vec![1, 2, 3])],
    };
    Config {
        server_id: SERVER,
        offer_timeout: 10,
        decline_probation: 600,
        lease_time: 3600,
        subnets: vec![s],
        ..Config::default()
    }
}

/// A server with one engine and a virtual clock.
pub(super) struct Server {
    pub(super) engine: Engine,
    pub(super) now: Seconds,
    pub(super) events: Vec<LeaseEvent>,
    pub(super) out: [u8; 1500],
}

impl Server {
    pub(super) fn new(cfg: Config) -> Server {
        let shared = Arc::new(Shared::new(&cfg, 1).unwrap());
        Server { engine: Engine::new(shared, T0, 16), now: T0, events: Vec::new(), out: [0; 1500] }
    }

    pub(super) fn advance(&mut self, secs: u32) {
        self.now += secs;
        self.engine.handle_timeout(self.now, &mut self.events);
    }

    pub(super) fn send(&mut self, msg: &[u8]) -> Outcome {
        self.send_via(&Ingress::broadcast(None), msg)
    }

    pub(super) fn send_via(&mut self, ingress: &Ingress, msg: &[u8]) -> Outcome {
        self.engine.handle(self.now, ingress, msg, &mut self.out, &mut self.events)
    }

    /// Sends and decodes the reply with dhcproto.
    pub(super) fn ask(&mut self, msg: &[u8]) -> (Reply, v4::Message) {
        self.ask_via(&Ingress::broadcast(None), msg)
    }

    pub(super) fn ask_via(&mut self, ingress: &Ingress, msg: &[u8]) -> (Reply, v4::Message) {
        match self.send_via(ingress, msg) {
            Outcome::Reply(r) => {
                let m = v4::Message::decode(&mut dhcproto::Decoder::new(&self.out[..r.len]))
                    .expect("dhcproto decodes our reply");
                (r, m)
            }
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    pub(super) fn take_events(&mut self) -> Vec<(EventKind, Ipv4Addr)> {
        self.events.drain(..).map(|e| (e.kind, e.ip)).collect()
    }
}

/// A client script: builds the messages a client sends.
#[derive(Clone)]
pub(super) struct Client {
    pub(super) mac: [u8; 6],
    pub(super) xid: u32,
    pub(super) client_id: Option<Vec<u8>>,
    pub(super) prl: Vec<u8>,
    pub(super) flags: u16,
    pub(super) giaddr: Ipv4Addr,
    pub(super) relay_info: Option<Vec<u8>>,
    pub(super) extra: Vec<(u8, Vec<u8>)>,
}

impl Client {
    pub(super) fn new(n: u8) -> Client {
        Client {
            mac: [0x02, 0, 0, 0, 0, n],
            xid: 0x1000 + n as u32,
            client_id: None,
            prl: vec![1, 3, 6, 15, 26],
            flags: 0,
            giaddr: Ipv4Addr::UNSPECIFIED,
            relay_info: None,
            extra: Vec::new(),
        }
    }

    pub(super) fn key(&self) -> ClientKey {
        match &self.client_id {
            Some(id) => ClientKey::from_client_id(id),
            None => ClientKey::from_mac(&self.mac),
        }
    }

    pub(super) fn msg(&self, mt: MessageType, ciaddr: Ipv4Addr, opts: &[(u8, Vec<u8>)]) -> Vec<u8> {
        let all: Vec<(u8, &[u8])> = opts.iter().chain(&self.extra).map(|(c, v)| (*c, &v[..])).collect();
        let m = crate::client::ClientMsg {
            flags: self.flags,
            ciaddr,
            giaddr: self.giaddr,
            client_id: self.client_id.as_deref(),
            prl: &self.prl,
            relay_info: self.relay_info.as_deref(),
            options: &all,
            ..crate::client::ClientMsg::new(self.mac, self.xid)
        };
        let mut buf = vec![0u8; 1500];
        let n = m.write(mt, &mut buf).unwrap();
        buf.truncate(n);
        buf
    }

    pub(super) fn discover(&self) -> Vec<u8> {
        self.msg(MessageType::Discover, Ipv4Addr::UNSPECIFIED, &[])
    }

    pub(super) fn discover_requesting(&self, want: Ipv4Addr) -> Vec<u8> {
        self.msg(MessageType::Discover, Ipv4Addr::UNSPECIFIED, &[(code::REQUESTED_IP, want.octets().to_vec())])
    }

    /// REQUEST in SELECTING state.
    pub(super) fn select(&self, server: Ipv4Addr, want: Ipv4Addr) -> Vec<u8> {
        self.msg(
            MessageType::Request,
            Ipv4Addr::UNSPECIFIED,
            &[(code::SERVER_ID, server.octets().to_vec()), (code::REQUESTED_IP, want.octets().to_vec())],
        )
    }

    /// REQUEST in INIT-REBOOT state.
    pub(super) fn reboot(&self, want: Ipv4Addr) -> Vec<u8> {
        self.msg(MessageType::Request, Ipv4Addr::UNSPECIFIED, &[(code::REQUESTED_IP, want.octets().to_vec())])
    }

    /// REQUEST in RENEWING or REBINDING state.
    pub(super) fn renew(&self, have: Ipv4Addr) -> Vec<u8> {
        self.msg(MessageType::Request, have, &[])
    }

    pub(super) fn decline(&self, addr: Ipv4Addr) -> Vec<u8> {
        self.msg(
            MessageType::Decline,
            Ipv4Addr::UNSPECIFIED,
            &[(code::SERVER_ID, SERVER.octets().to_vec()), (code::REQUESTED_IP, addr.octets().to_vec())],
        )
    }

    pub(super) fn release(&self, addr: Ipv4Addr) -> Vec<u8> {
        self.msg(MessageType::Release, addr, &[(code::SERVER_ID, SERVER.octets().to_vec())])
    }

    pub(super) fn inform(&self, addr: Ipv4Addr) -> Vec<u8> {
        self.msg(MessageType::Inform, addr, &[])
    }
}

pub(super) fn msg_type(m: &v4::Message) -> v4::MessageType {
    m.opts().msg_type().expect("message type")
}

/// Full DORA: returns the ACKed address.
pub(super) fn dora(s: &mut Server, c: &Client) -> Ipv4Addr {
    let (_, offer) = s.ask(&c.discover());
    assert_eq!(msg_type(&offer), v4::MessageType::Offer);
    let (_, ack) = s.ask(&c.select(SERVER, offer.yiaddr()));
    assert_eq!(msg_type(&ack), v4::MessageType::Ack);
    assert_eq!(ack.yiaddr(), offer.yiaddr());
    ack.yiaddr()
}

#[test]
fn discover_gets_offer_with_options_in_requested_order() {
    let mut s = Server::new(config("100.64.0.10", "100.64.0.20"));
    let c = Client::new(1);
    let (r, offer) = s.ask(&c.discover());
    assert_eq!(r.kind, MessageType::Offer);
    assert!(!r.commit, "an offer needs no journal write");
    assert_eq!(offer.opcode(), v4::Opcode::BootReply);
    assert_eq!(offer.xid(), c.xid);
    assert_eq!(&offer.chaddr()[..6], &c.mac);
    assert_eq!(offer.yiaddr(), ip("100.64.0.10"));
    let o = offer.opts();
    assert_eq!(o.get(OptionCode::ServerIdentifier), Some(&DhcpOption::ServerIdentifier(SERVER)));
    assert_eq!(o.get(OptionCode::AddressLeaseTime), Some(&DhcpOption::AddressLeaseTime(3600)));
    assert_eq!(o.get(OptionCode::Renewal), Some(&DhcpOption::Renewal(1800)));
    assert_eq!(o.get(OptionCode::Rebinding), Some(&DhcpOption::Rebinding(3150)));
    assert_eq!(o.get(OptionCode::SubnetMask), Some(&DhcpOption::SubnetMask(ip("255.255.255.0"))));
    assert_eq!(o.get(OptionCode::Router), Some(&DhcpOption::Router(vec![ip("100.64.0.1")])));
    assert_eq!(
        o.get(OptionCode::DomainNameServer),
        Some(&DhcpOption::DomainNameServer(vec![ip("100.64.0.53"), ip("100.64.0.54")]))
    );
    assert_eq!(o.get(OptionCode::DomainName), Some(&DhcpOption::DomainName("isp.example".into())));
    assert_eq!(o.get(OptionCode::InterfaceMtu), Some(&DhcpOption::InterfaceMtu(1500)));
    // Not requested: not sent.
    assert_eq!(o.get(OptionCode::NtpServers), None);
    assert_eq!(o.get(OptionCode::VendorExtensions), None);
    // Order on the wire follows the PRL (after the server's own options).
    let order: Vec<u8> = crate::wire::options::OptionIter::new(&s.out[240..r.len]).map(|x| x.unwrap().0).collect();
    assert_eq!(order, [53, 54, 51, 58, 59, 1, 3, 6, 15, 26]);
    assert_eq!(s.take_events(), [(EventKind::Offered, ip("100.64.0.10"))]);
}

#[test]
fn without_prl_every_configured_option_is_sent() {
    let mut s = Server::new(config("100.64.0.10", "100.64.0.20"));
    let mut c = Client::new(1);
    c.prl.clear();
    let (_, offer) = s.ask(&c.discover());
    assert_eq!(offer.opts().get(OptionCode::NtpServers), Some(&DhcpOption::NtpServers(vec![ip("100.64.0.123")])));
    assert!(offer.opts().get(OptionCode::VendorExtensions).is_some());
}

#[test]
fn full_dora_binds_and_ack_needs_commit() {
    let mut s = Server::new(config("100.64.0.10", "100.64.0.20"));
    let c = Client::new(1);
    let (_, offer) = s.ask(&c.discover());
    let (r, ack) = s.ask(&c.select(SERVER, offer.yiaddr()));
    assert_eq!(r.kind, MessageType::Ack);
    assert!(r.commit);
    assert_eq!(ack.yiaddr(), ip("100.64.0.10"));
    assert_eq!(s.engine.lookup(&c.key()), Some((ip("100.64.0.10"), LeaseState::Bound, T0 + 3600)));
    let ev = s.take_events();
    assert_eq!(ev, [(EventKind::Offered, ack.yiaddr()), (EventKind::Bound, ack.yiaddr())]);
}

#[test]
fn foreign_server_request_releases_our_offer_at_once() {
    // One-address pool: A is offered X; A takes another server's offer; B gets X at once.
    let mut s = Server::new(config("100.64.0.10", "100.64.0.10"));
    let (a, b) = (Client::new(1), Client::new(2));
    let (_, offer) = s.ask(&a.discover());
    let x = offer.yiaddr();
    assert_eq!(s.send(&b.discover()), Outcome::Silent(Silence::NoAddress), "pool is held by A's offer");
    assert_eq!(s.send(&a.select(OTHER_SERVER, ip("100.64.0.77"))), Outcome::Silent(Silence::ForeignServer));
    assert_eq!(s.engine.lookup(&a.key()), None);
    let (_, offer_b) = s.ask(&b.discover());
    assert_eq!(offer_b.yiaddr(), x, "no time passed: the release was immediate");
    assert_eq!(s.engine.stats().offers_released_foreign, 1);
    let ev = s.take_events();
    assert_eq!(ev, [(EventKind::Offered, x), (EventKind::OfferReleased, x), (EventKind::Offered, x)]);
}

#[test]
fn foreign_request_does_not_touch_a_bound_lease() {
    let mut s = Server::new(config("100.64.0.10", "100.64.0.10"));
    let a = Client::new(1);
    let x = dora(&mut s, &a);
    assert_eq!(s.send(&a.select(OTHER_SERVER, ip("100.64.0.77"))), Outcome::Silent(Silence::ForeignServer));
    assert_eq!(s.engine.lookup(&a.key()).map(|l| l.1), Some(LeaseState::Bound));
    assert_eq!(s.engine.shared().space().status(x), Some(crate::lease::space::Status::Held));
}

#[test]
fn never_one_address_to_two_clients() {
    let mut s = Server::new(config("100.64.0.10", "100.64.0.12"));
    let mut seen = std::collections::HashSet::new();
    for n in 1..=3 {
        let (_, o) = s.ask(&Client::new(n).discover());
        assert!(seen.insert(o.yiaddr()), "{} offered twice", o.yiaddr());
    }
    assert_eq!(s.send(&Client::new(4).discover()), Outcome::Silent(Silence::NoAddress));
    // A client asking for an address offered to another does not get it.
    let c5 = Client::new(5);
    assert_eq!(s.send(&c5.discover_requesting(ip("100.64.0.11"))), Outcome::Silent(Silence::NoAddress));
    // Nor by requesting it directly.
    match s.send(&c5.select(SERVER, ip("100.64.0.11"))) {
        Outcome::Reply(r) => assert_eq!(r.kind, MessageType::Nak),
        o => panic!("{o:?}"),
    }
    assert_eq!(s.engine.stats().allocation_fail, 2);
}

#[test]
fn requested_address_is_given_when_free() {
    let mut s = Server::new(config("100.64.0.10", "100.64.0.20"));
    let (_, o) = s.ask(&Client::new(1).discover_requesting(ip("100.64.0.15")));
    assert_eq!(o.yiaddr(), ip("100.64.0.15"));
    // Outside the pool: a pool address instead.
    let (_, o) = s.ask(&Client::new(2).discover_requesting(ip("100.64.0.200")));
    assert_eq!(o.yiaddr(), ip("100.64.0.10"));
}

#[test]
fn offer_times_out_and_returns_to_pool() {
    let mut s = Server::new(config("100.64.0.10", "100.64.0.10"));
    let (a, b) = (Client::new(1), Client::new(2));
    let (_, o) = s.ask(&a.discover());
    s.advance(9);
    assert_eq!(s.send(&b.discover()), Outcome::Silent(Silence::NoAddress));
    s.advance(1);
    let ev = s.take_events();
    assert_eq!(ev.last(), Some(&(EventKind::OfferExpired, o.yiaddr())));
    let (_, ob) = s.ask(&b.discover());
    assert_eq!(ob.yiaddr(), o.yiaddr());
    // A comes back late for the address B now holds: NAK.
    let (r, _) = s.ask(&a.select(SERVER, o.yiaddr()));
    assert_eq!(r.kind, MessageType::Nak);
}

#[test]
fn late_request_for_a_still_free_address_is_acked() {
    let mut s = Server::new(config("100.64.0.10", "100.64.0.20"));
    let a = Client::new(1);
    let (_, o) = s.ask(&a.discover());
    s.advance(60);
    let (r, ack) = s.ask(&a.select(SERVER, o.yiaddr()));
    assert_eq!(r.kind, MessageType::Ack);
    assert_eq!(ack.yiaddr(), o.yiaddr());
}

#[test]
fn rediscover_gets_the_same_address() {
    let mut s = Server::new(config("100.64.0.10", "100.64.0.20"));
    let a = Client::new(1);
    let (_, o1) = s.ask(&a.discover());
    let (_, o2) = s.ask(&a.discover());
    assert_eq!(o1.yiaddr(), o2.yiaddr());
    let x = dora(&mut s, &a);
    let (_, o3) = s.ask(&a.discover());
    assert_eq!(o3.yiaddr(), x);
    assert_eq!(s.engine.lookup(&a.key()).unwrap().1, LeaseState::Bound, "a re-DISCOVER keeps the lease");
}

#[test]
fn decline_quarantines_for_probation() {
    let mut s = Server::new(config("100.64.0.10", "100.64.0.11"));
    let (a, b, c) = (Client::new(1), Client::new(2), Client::new(3));
    let x = dora(&mut s, &a);
    s.take_events();
    assert_eq!(s.send(&a.decline(x)), Outcome::Silent(Silence::Done));
    assert_eq!(s.take_events(), [(EventKind::Declined, x)]);
    assert_eq!(s.engine.lookup(&a.key()), None);
    // The pool's other address goes first; the declined one waits its probation out...
    let (_, o) = s.ask(&b.discover());
    assert_ne!(o.yiaddr(), x);
    s.advance(599);
    s.take_events();
    s.advance(1);
    assert_eq!(s.take_events(), [(EventKind::ProbationEnded, x)]);
    let (_, o) = s.ask(&c.discover());
    assert_eq!(o.yiaddr(), x, "back in the pool after probation");
}

#[test]
fn an_empty_pool_takes_back_its_oldest_probation() {
    let mut s = Server::new(config("100.64.0.10", "100.64.0.10"));
    let (a, b) = (Client::new(1), Client::new(2));
    let x = dora(&mut s, &a);
    s.send(&a.decline(x));
    s.take_events();
    // Nothing else left: the probation ends early, as ISC dhcpd reclaims abandoned leases.
    let (_, o) = s.ask(&b.discover());
    assert_eq!(o.yiaddr(), x);
    assert_eq!(dora(&mut s, &b), x);
    s.take_events();
    // Its timer finds nothing to end: the address is b's now.
    s.advance(600);
    assert!(!s.take_events().iter().any(|e| e.0 == EventKind::ProbationEnded));
    assert_eq!(s.engine.lookup(&b.key()).unwrap().0, x);
}

#[test]
fn lease_expires_and_address_returns() {
    let mut s = Server::new(config("100.64.0.10", "100.64.0.10"));
    let (a, b) = (Client::new(1), Client::new(2));
    let x = dora(&mut s, &a);
    s.take_events();
    s.advance(3599);
    assert!(s.take_events().is_empty());
    s.advance(1);
    assert_eq!(s.take_events(), [(EventKind::Expired, x)]);
    assert_eq!(s.engine.lookup(&a.key()), None);
    assert_eq!(s.ask(&b.discover()).1.yiaddr(), x);
}

#[test]
fn renewing_and_rebinding_extend_the_lease() {
    let mut s = Server::new(config("100.64.0.10", "100.64.0.20"));
    let a = Client::new(1);
    let x = dora(&mut s, &a);
    s.advance(1800);
    // RENEWING: unicast to us with ciaddr.
    let unicast = Ingress { interface: None, vlan: None, src: SocketAddrV4::new(x, 68), steer: 0 };
    let (r, ack) = s.ask_via(&unicast, &a.renew(x));
    assert_eq!(r.kind, MessageType::Ack);
    assert_eq!(r.to, Destination::Client(x));
    assert_eq!(ack.ciaddr(), x);
    assert_eq!(ack.yiaddr(), x);
    assert_eq!(s.engine.lookup(&a.key()).unwrap().2, T0 + 1800 + 3600);
    // REBINDING: broadcast with ciaddr.
    s.advance(3000);
    let (r, _) = s.ask(&a.renew(x));
    assert_eq!(r.kind, MessageType::Ack);
    // The old deadline does not fire.
    s.advance(3599);
    assert_eq!(s.engine.lookup(&a.key()).unwrap().1, LeaseState::Bound);
    // Renewing an address that is not ours: NAK.
    let (r, _) = s.ask(&a.renew(ip("100.64.0.19")));
    assert_eq!(r.kind, MessageType::Nak);
}

#[test]
fn init_reboot_acks_own_lease_naks_wrong_network_and_is_silent_for_strangers() {
    let mut s = Server::new(config("100.64.0.10", "100.64.0.20"));
    let a = Client::new(1);
    let x = dora(&mut s, &a);
    let (r, ack) = s.ask(&a.reboot(x));
    assert_eq!(r.kind, MessageType::Ack);
    assert_eq!(ack.yiaddr(), x);
    let (r, nak) = s.ask(&a.reboot(ip("198.18.5.5")));
    assert_eq!(r.kind, MessageType::Nak);
    assert_eq!(r.to, Destination::Broadcast);
    assert_eq!(nak.yiaddr(), Ipv4Addr::UNSPECIFIED);
    let (r, _) = s.ask(&a.reboot(ip("100.64.0.19")));
    assert_eq!(r.kind, MessageType::Nak, "known client asking for another address");
    let stranger = Client::new(9);
    assert_eq!(s.send(&stranger.reboot(ip("100.64.0.19"))), Outcome::Silent(Silence::UnknownClient));
    let mut cfg = config("100.64.0.10", "100.64.0.20");
    cfg.authoritative = true;
    let mut s = Server::new(cfg);
    assert_eq!(s.ask(&stranger.reboot(ip("100.64.0.19"))).0.kind, MessageType::Nak);
}

#[test]
fn release_frees_the_address() {
    let mut s = Server::new(config("100.64.0.10", "100.64.0.10"));
    let (a, b) = (Client::new(1), Client::new(2));
    let x = dora(&mut s, &a);
    assert_eq!(s.send(&b.release(x)), Outcome::Silent(Silence::Ignored), "only the holder can release");
    assert_eq!(s.send(&a.release(x)), Outcome::Silent(Silence::Done));
    assert_eq!(s.engine.lookup(&a.key()), None);
    assert_eq!(s.ask(&b.discover()).1.yiaddr(), x);
}

#[test]
fn inform_gets_options_without_address_or_lease_time() {
    let mut s = Server::new(config("100.64.0.10", "100.64.0.20"));
    let a = Client::new(1);
    let (r, ack) = s.ask(&a.inform(ip("100.64.0.200")));
    assert_eq!(r.kind, MessageType::Ack);
    assert_eq!(r.to, Destination::Client(ip("100.64.0.200")));
    assert_eq!(ack.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(ack.ciaddr(), ip("100.64.0.200"));
    assert_eq!(ack.opts().get(OptionCode::AddressLeaseTime), None);
    assert!(ack.opts().get(OptionCode::Router).is_some());
    assert_eq!(s.engine.records(), 0);
}

#[test]
fn reply_destinations_follow_rfc2131_4_1() {
    let mut s = Server::new(config("100.64.0.10", "100.64.0.20"));
    let a = Client::new(1);
    let (r, _) = s.ask(&a.discover());
    assert_eq!(r.to, Destination::Hardware { ip: ip("100.64.0.10"), mac: a.mac });
    let mut b = Client::new(2);
    b.flags = FLAG_BROADCAST;
    let (r, offer) = s.ask(&b.discover());
    assert_eq!(r.to, Destination::Broadcast);
    assert!(offer.flags().broadcast());
    let mut c = Client::new(3);
    c.giaddr = ip("100.64.0.254");
    let (r, _) = s.ask(&c.discover());
    assert_eq!(r.to, Destination::Relay(ip("100.64.0.254")));
    assert_eq!(r.to.port(), 67);
    // NAK through a relay: broadcast bit set for the relay.
    let (r, nak) = s.ask(&c.reboot(ip("198.18.0.5")));
    assert_eq!(r.kind, MessageType::Nak);
    assert_eq!(r.to, Destination::Relay(ip("100.64.0.254")));
    assert!(nak.flags().broadcast());
}

#[test]
fn relayed_clients_are_placed_by_giaddr_link_selection_and_subnet_selection() {
    let mut cfg = config("100.64.0.10", "100.64.0.20");
    cfg.subnets.push(subnet("100.64.1.0", "100.64.1.10", "100.64.1.20"));
    cfg.subnets.push(subnet("100.64.2.0", "100.64.2.10", "100.64.2.20"));
    let mut s = Server::new(cfg);
    let mut c = Client::new(1);
    c.giaddr = ip("100.64.1.1");
    c.relay_info = Some(vec![1, 4, b'e', b't', b'h', b'0', 2, 2, 0xab, 0xcd]);
    let (r, offer) = s.ask(&c.discover());
    assert_eq!(offer.yiaddr(), ip("100.64.1.10"));
    // Option 82 is echoed, last, byte for byte.
    let opts: Vec<(u8, &[u8])> =
        crate::wire::options::OptionIter::new(&s.out[240..r.len]).map(|x| x.unwrap()).collect();
    assert_eq!(opts.last().unwrap(), &(82u8, &c.relay_info.as_ref().unwrap()[..]));
    // Link selection (82.5) wins over giaddr.
    let mut d = Client::new(2);
    d.giaddr = ip("100.64.1.1");
    d.relay_info = Some(vec![5, 4, 100, 64, 2, 0]);
    assert_eq!(s.ask(&d.discover()).1.yiaddr(), ip("100.64.2.10"));
    // Subnet selection (118) wins over both.
    let mut e = Client::new(3);
    e.giaddr = ip("100.64.1.1");
    e.extra.push((code::SUBNET_SELECTION, vec![100, 64, 0, 0]));
    assert_eq!(s.ask(&e.discover()).1.yiaddr(), ip("100.64.0.10"));
    // A relay on no configured subnet: silence.
    let mut f = Client::new(4);
    f.giaddr = ip("198.18.9.1");
    assert_eq!(s.send(&f.discover()), Outcome::Silent(Silence::NoSubnet));
}

#[test]
fn interfaces_and_vlans_choose_the_subnet() {
    let mut cfg = config("100.64.0.10", "100.64.0.20");
    cfg.subnets[0].interface = Some("eth0".into());
    let mut v = subnet("100.64.1.0", "100.64.1.10", "100.64.1.20");
    v.interface = Some("eth0".into());
    v.vlan = Some(100);
    cfg.subnets.push(v);
    let mut w = subnet("100.64.2.0", "100.64.2.10", "100.64.2.20");
    w.interface = Some("eth1".into());
    cfg.subnets.push(w);
    let mut s = Server::new(cfg);
    let eth0 = s.engine.shared().interface_id("eth0");
    let eth1 = s.engine.shared().interface_id("eth1");
    let mut ing = Ingress::broadcast(eth0);
    assert_eq!(s.ask_via(&ing, &Client::new(1).discover()).1.yiaddr(), ip("100.64.0.10"));
    ing.vlan = Some(100);
    assert_eq!(s.ask_via(&ing, &Client::new(2).discover()).1.yiaddr(), ip("100.64.1.10"));
    ing.vlan = Some(200);
    assert_eq!(s.ask_via(&ing, &Client::new(3).discover()).1.yiaddr(), ip("100.64.0.11"));
    assert_eq!(s.ask_via(&Ingress::broadcast(eth1), &Client::new(4).discover()).1.yiaddr(), ip("100.64.2.10"));
    assert_eq!(
        s.send_via(&Ingress::broadcast(Some(7)), &Client::new(5).discover()),
        Outcome::Silent(Silence::NoSubnet)
    );
}

#[test]
fn shared_network_falls_over_to_the_next_subnet() {
    let mut cfg = config("100.64.0.10", "100.64.0.10");
    cfg.subnets.push(subnet("100.64.1.0", "100.64.1.10", "100.64.1.10"));
    let mut s = Server::new(cfg);
    assert_eq!(s.ask(&Client::new(1).discover()).1.yiaddr(), ip("100.64.0.10"));
    let (r, o) = s.ask(&Client::new(2).discover());
    assert_eq!(o.yiaddr(), ip("100.64.1.10"));
    let sid = crate::wire::options::OptionIter::new(&s.out[240..r.len]).find_map(|x| match x.unwrap() {
        (54, v) => Some(v.to_vec()),
        _ => None,
    });
    assert_eq!(sid, Some(SERVER.octets().to_vec()));
}

#[test]
fn client_identifier_is_the_identity_and_is_echoed() {
    let mut s = Server::new(config("100.64.0.10", "100.64.0.20"));
    let mut a = Client::new(1);
    a.client_id = Some(vec![0xff, 1, 2, 3, 4, 0, 1, 0, 1, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9]);
    let mut b = a.clone();
    b.client_id = Some(vec![1, 2, 0, 0, 0, 0, 1]);
    let xa = dora(&mut s, &a);
    let xb = dora(&mut s, &b);
    assert_ne!(xa, xb, "same chaddr, different client ids: two clients");
    let (_, o) = s.ask(&a.discover());
    assert_eq!(
        o.opts().get(OptionCode::ClientIdentifier),
        Some(&DhcpOption::ClientIdentifier(a.client_id.clone().unwrap()))
    );
}

#[test]
fn reply_respects_the_clients_maximum_message_size() {
    let mut cfg = config("100.64.0.10", "100.64.0.20");
    cfg.subnets[0].options.raw = vec![(43, vec![7; 250]), (224, vec![9; 200]), (225, vec![8; 200])];
    let mut s = Server::new(cfg);
    let mut a = Client::new(1);
    a.prl = vec![1, 3, 43, 224, 225];
    let (r, _) = s.ask(&a.discover());
    assert!(r.len <= 548, "default maximum: {}", r.len);
    a.extra.push((code::MAX_MESSAGE_SIZE, 1500u16.to_be_bytes().to_vec()));
    let (r, big) = s.ask(&a.discover());
    assert!(r.len > 548);
    assert!(big.opts().get(OptionCode::Unknown(225)).is_some());
}

#[test]
fn rapid_commit_acks_a_discover_when_enabled() {
    let mut cfg = config("100.64.0.10", "100.64.0.20");
    let mut a = Client::new(1);
    a.extra.push((code::RAPID_COMMIT, vec![]));
    let mut s = Server::new(cfg.clone());
    assert_eq!(s.ask(&a.discover()).0.kind, MessageType::Offer, "disabled: plain offer");
    cfg.rapid_commit = true;
    let mut s = Server::new(cfg);
    let (r, ack) = s.ask(&a.discover());
    assert_eq!(r.kind, MessageType::Ack);
    assert!(r.commit);
    assert!(ack.opts().get(OptionCode::RapidCommit).is_some());
    assert_eq!(s.engine.lookup(&a.key()).unwrap().1, LeaseState::Bound);
}

#[test]
fn reservations_by_mac_and_client_id() {
    let mut cfg = config("100.64.0.10", "100.64.0.12");
    let a = Client::new(1);
    let mut b = Client::new(2);
    b.client_id = Some(vec![0, b'c', b'p', b'e', b'-', b'4', b'2']);
    cfg.subnets[0].reservations = vec![
        Reservation { client: ClientMatch::Mac(a.mac), ip: ip("100.64.0.11") },
        Reservation { client: ClientMatch::ClientId(b.client_id.clone().unwrap()), ip: ip("100.64.0.50") },
    ];
    let mut s = Server::new(cfg);
    let c = Client::new(3);
    // Another client asking for A's reserved address does not get it.
    assert_eq!(s.ask(&c.discover_requesting(ip("100.64.0.11"))).1.yiaddr(), ip("100.64.0.10"));
    assert_eq!(dora(&mut s, &a), ip("100.64.0.11"));
    assert_eq!(dora(&mut s, &b), ip("100.64.0.50"));
    assert_eq!(s.ask(&Client::new(4).discover()).1.yiaddr(), ip("100.64.0.12"));
    assert_eq!(s.send(&Client::new(5).discover()), Outcome::Silent(Silence::NoAddress));
    // A released reservation stays reserved.
    assert_eq!(s.send(&a.release(ip("100.64.0.11"))), Outcome::Silent(Silence::Done));
    assert_eq!(s.send(&Client::new(5).discover()), Outcome::Silent(Silence::NoAddress));
}

#[test]
fn malformed_and_unexpected_messages_are_dropped_and_counted() {
    let mut s = Server::new(config("100.64.0.10", "100.64.0.20"));
    assert_eq!(s.send(&[1, 2, 3]), Outcome::Dropped(DropReason::Malformed(wire::Error::Truncated)));
    let mut m = Client::new(1).discover();
    m[0] = 2;
    assert_eq!(s.send(&m), Outcome::Dropped(DropReason::NotRequest));
    let mut m = Client::new(1).discover();
    m[241] = 200; // message type option length runs away
    assert!(matches!(s.send(&m), Outcome::Dropped(DropReason::Malformed(_))));
    let m = Client::new(1).msg(MessageType::Offer, Ipv4Addr::UNSPECIFIED, &[]);
    assert_eq!(s.send(&m), Outcome::Dropped(DropReason::UnexpectedType(2)));
    let st = s.engine.stats();
    assert_eq!((st.received, st.parse_failed, st.receive_drop), (4, 2, 2));
    assert_eq!(s.engine.records(), 0);
}

#[test]
fn workers_sharing_the_address_space_never_collide() {
    let cfg = config("100.64.0.10", "100.64.0.109");
    let shared = Arc::new(Shared::new(&cfg, 2).unwrap());
    let mut engines = [Engine::new(shared.clone(), T0, 64), Engine::new(shared.clone(), T0, 64)];
    let mut out = [0u8; 1500];
    let mut events = Vec::new();
    let mut given = std::collections::HashMap::new();
    for n in 0..=120u8 {
        let c = Client::new(n);
        let msg = c.discover();
        let w = shared.worker_of(&msg);
        if let Outcome::Reply(r) = engines[w].handle(T0, &Ingress::broadcast(None), &msg, &mut out, &mut events) {
            let yi = dhcp::DhcpPacket::new_checked(&out[..r.len]).unwrap().yiaddr();
            assert!(given.insert(yi, n).is_none(), "{yi} given twice");
        }
    }
    assert_eq!(given.len(), 100);
    assert!(engines.iter().all(|e| e.records() > 20), "both workers served clients");
    assert_eq!(engines[0].records() + engines[1].records(), 100);
}

#[test]
fn restore_puts_back_leases_and_refuses_conflicts() {
    let mut s = Server::new(config("100.64.0.10", "100.64.0.11"));
    let a = Client::new(1);
    let b = Client::new(2);
    let now = s.now;
    assert_eq!(s.engine.restore(now, a.key(), a.mac, ip("100.64.0.10"), now + 100, LeaseState::Bound), Ok(()));
    assert_eq!(
        s.engine.restore(now, b.key(), b.mac, ip("100.64.0.10"), now + 100, LeaseState::Bound),
        Err(RestoreError::Conflict)
    );
    assert_eq!(
        s.engine.restore(now, b.key(), b.mac, ip("100.64.0.11"), now, LeaseState::Bound),
        Err(RestoreError::Expired)
    );
    assert_eq!(
        s.engine.restore(now, b.key(), b.mac, ip("198.18.0.1"), now + 5, LeaseState::Bound),
        Err(RestoreError::NotInSubnet)
    );
    // The restored client's INIT-REBOOT is ACKed.
    assert_eq!(s.ask(&a.reboot(ip("100.64.0.10"))).0.kind, MessageType::Ack);
    assert_eq!(s.ask(&b.discover()).1.yiaddr(), ip("100.64.0.11"));
}

#[test]
fn declining_a_reserved_address_is_a_release_not_a_probation() {
    let mut cfg = config("100.64.0.10", "100.64.0.12");
    let a = Client::new(1);
    cfg.subnets[0].reservations = vec![Reservation { client: ClientMatch::Mac(a.mac), ip: ip("100.64.0.11") }];
    let mut s = Server::new(cfg);
    let x = dora(&mut s, &a);
    s.take_events();
    assert_eq!(s.send(&a.decline(x)), Outcome::Silent(Silence::Done));
    assert_eq!(s.take_events(), [(EventKind::Released, x)]);
    assert_eq!(s.engine.records(), 0, "no probation record");
    assert_eq!(dora(&mut s, &a), x, "still reserved for its client");
}

mod cluster;
mod isp;
mod safety;

/// The warmed lookup is the very one `handle` makes (same key, so the same index entries), for
/// clients with and without an identifier; bytes that are no message warm nothing and change
/// nothing.
#[test]
fn warm_looks_up_the_key_handle_uses() {
    let mut s = Server::new(config("100.64.0.10", "100.64.0.20"));
    let plain = Client::new(1);
    let mut with_id = Client::new(2);
    with_id.client_id = Some(vec![0xff, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    let mut long_id = Client::new(3);
    long_id.client_id = Some((0..40).collect());
    for c in [&plain, &with_id] {
        let want = s.engine.table.warm_index(&c.key());
        assert_eq!(s.engine.warm(&c.discover()), Some(want));
        s.engine.warm_records(want);
    }
    // Longer than the steering walk reads: not warmed (the lookup then simply misses the cache).
    assert_eq!(s.engine.warm(&long_id.discover()), None);
    let before = *s.engine.stats();
    let d = plain.discover();
    for n in [0, 1, 3, 30, 240, 241, d.len() - 1] {
        let _ = s.engine.warm(&d[..n]);
    }
    let mut junk = d.clone();
    junk[2] = 200;
    assert_eq!(s.engine.warm(&junk), None);
    assert_eq!(s.engine.stats().received, before.received);
    let (r, _) = s.ask(&plain.discover());
    assert_eq!(r.kind, MessageType::Offer);
}
