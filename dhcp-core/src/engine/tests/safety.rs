//! The engine facing untrusted subscribers: each test names what a hostile or broken client
//! could do before, and checks it no longer can (reservations with one holder, leases that
//! survive a DISCOVER from elsewhere, DECLINE floods, per-key limits, untrusted relays, replies
//! that must not go where a sender names, times and pools at their bounds).

use super::*;
use crate::config::{Cidr, DeclinePolicy, LimitKey, Limits};

fn ingress_from(relay: &str) -> Ingress {
    Ingress { src: SocketAddrV4::new(ip(relay), 67), ..Ingress::broadcast(None) }
}

#[test]
fn a_reserved_address_has_one_holder_whatever_client_ids_come_with_its_mac() {
    // Before: every new option 61 with the reserved MAC got the reserved address ACKed.
    let mut cfg = config("100.64.0.10", "100.64.0.20");
    let reserved = ip("100.64.0.5");
    cfg.subnets[0].reservations.push(Reservation { client: ClientMatch::Mac([2, 0, 0, 0, 0, 1]), ip: reserved });
    let mut s = Server::new(cfg);
    let mut first = Client::new(1);
    first.client_id = Some(vec![0xff, 1, 1, 1]);
    assert_eq!(dora(&mut s, &first), reserved);
    for k in 2..6u8 {
        let mut other = Client::new(1);
        other.client_id = Some(vec![0xff, k, k, k]);
        let got = dora(&mut s, &other);
        assert_ne!(got, reserved, "identity {k} must not get the reserved address while it is held");
        // Nor by asking for it outright.
        let (r, _) = s.ask(&other.reboot(reserved));
        assert_eq!(r.kind, MessageType::Nak);
    }
    // Once the holder lets go, the reservation is free for the next one that comes with it.
    s.send(&first.release(reserved));
    let mut next = Client::new(1);
    next.client_id = Some(vec![0xff, 9, 9, 9]);
    assert_eq!(dora(&mut s, &next), reserved);
}

#[test]
fn a_discover_from_another_link_does_not_free_a_bound_lease() {
    // Before: anyone who knew a victim's MAC freed its address with one DISCOVER elsewhere.
    let mut cfg = config("100.64.0.10", "100.64.0.10");
    cfg.subnets[0].interface = Some("eth0".into());
    let mut other = subnet("100.64.1.0", "100.64.1.10", "100.64.1.20");
    other.interface = Some("eth1".into());
    cfg.subnets.push(other);
    let mut s = Server::new(cfg);
    let (eth0, eth1) = (s.engine.shared().interface_id("eth0"), s.engine.shared().interface_id("eth1"));
    let victim = Client::new(1);
    let (_, offer) = s.ask_via(&Ingress::broadcast(eth0), &victim.discover());
    let (_, ack) = s.ask_via(&Ingress::broadcast(eth0), &victim.select(SERVER, offer.yiaddr()));
    let x = ack.yiaddr();
    s.take_events();
    // The forger on eth1 is offered something there, and the victim's lease stands.
    let (_, forged) = s.ask_via(&Ingress::broadcast(eth1), &victim.discover());
    assert_eq!(forged.yiaddr(), ip("100.64.1.10"));
    assert_eq!(s.engine.lookup(&victim.key()).map(|l| (l.0, l.1)), Some((x, LeaseState::Bound)));
    assert!(!s.take_events().iter().any(|e| e.0 == EventKind::Released), "nothing released");
    let (r, _) = s.ask_via(&Ingress::broadcast(eth0), &victim.renew(x));
    assert_eq!(r.kind, MessageType::Ack, "the victim still renews its address");
    // A client that really moved is ACKed on the new link: only then does the old lease end.
    let (r, _) = s.ask_via(&Ingress::broadcast(eth1), &victim.select(SERVER, ip("100.64.1.10")));
    assert_eq!(r.kind, MessageType::Ack);
    let events = s.take_events();
    assert!(events.contains(&(EventKind::Released, x)), "{events:?}");
    assert!(events.contains(&(EventKind::Bound, ip("100.64.1.10"))), "{events:?}");
    assert_eq!(s.engine.lookup(&victim.key()).unwrap().0, ip("100.64.1.10"));
    assert_eq!(s.engine.records(), 1, "one record for the client, its offer folded in");
}

#[test]
fn only_the_bound_client_may_decline_and_probation_is_capped() {
    // Before: DISCOVER + DECLINE, two packets per address, emptied a pool for a day.
    let mut cfg = config("100.64.0.10", "100.64.0.29");
    cfg.decline_max_percent = 10;
    let mut s = Server::new(cfg);
    // Offers only: every DECLINE is ignored.
    for n in 1..=20u8 {
        let c = Client::new(n);
        let (_, o) = s.ask(&c.discover());
        assert_eq!(s.send(&c.decline(o.yiaddr())), Outcome::Silent(Silence::Ignored));
    }
    assert_eq!(s.engine.shared().space().census(0)[2], 0, "nothing in probation");
    assert_eq!(s.engine.stats().decline_ignored, 20);
    s.advance(11);
    // Bound clients may decline, but at most 10% of the pool (2 of 20) waits in probation.
    for n in 21..=30u8 {
        let c = Client::new(n);
        let x = dora(&mut s, &c);
        assert_eq!(s.send(&c.decline(x)), Outcome::Silent(Silence::Done));
    }
    assert_eq!(s.engine.shared().space().census(0)[2], 2);
    assert_eq!(s.engine.stats().probations_ended_early, 8);
}

#[test]
fn declines_can_be_ignored() {
    let mut cfg = config("100.64.0.10", "100.64.0.20");
    cfg.decline = DeclinePolicy::Ignore;
    let mut s = Server::new(cfg);
    let c = Client::new(1);
    let x = dora(&mut s, &c);
    assert_eq!(s.send(&c.decline(x)), Outcome::Silent(Silence::Ignored));
    assert_eq!(s.engine.lookup(&c.key()).unwrap().1, LeaseState::Bound, "the lease stays");
}

/// A relayed client on circuit `circuit` (option 82.1), via relay 100.64.0.254.
fn on_circuit(n: u8, circuit: &[u8]) -> Client {
    let mut c = Client::new(n);
    c.giaddr = ip("100.64.0.254");
    let mut ri = vec![1, circuit.len() as u8];
    ri.extend_from_slice(circuit);
    c.relay_info = Some(ri);
    c
}

#[test]
fn one_circuit_holds_at_most_its_share_of_leases_and_offers() {
    // Before: random MACs on one port held as many offers as the pool had addresses.
    let mut cfg = config("100.64.0.10", "100.64.0.200");
    cfg.limits =
        Some(Limits { key: LimitKey::CircuitId, max_leases: Some(3), discover_rate: None, discover_burst: None });
    let mut s = Server::new(cfg);
    let via = ingress_from("100.64.0.254");
    let mut offered = 0;
    for n in 0..50u8 {
        if let Outcome::Reply(_) = s.send_via(&via, &on_circuit(n, b"port-1").discover()) {
            offered += 1;
        }
    }
    assert_eq!(offered, 3);
    assert_eq!(s.engine.stats().limit_holdings, 47);
    // Other circuits are not affected.
    assert!(matches!(s.send_via(&via, &on_circuit(100, b"port-2").discover()), Outcome::Reply(_)));
    // When one of port 1's offers ends, it may have another.
    s.advance(11);
    assert!(matches!(s.send_via(&via, &on_circuit(200, b"port-1").discover()), Outcome::Reply(_)));
}

#[test]
fn discovers_per_key_pass_a_token_bucket() {
    let mut cfg = config("100.64.0.10", "100.64.0.200");
    cfg.limits =
        Some(Limits { key: LimitKey::CircuitId, max_leases: None, discover_rate: Some(2), discover_burst: Some(4) });
    let mut s = Server::new(cfg);
    let via = ingress_from("100.64.0.254");
    let replies = |s: &mut Server, from: u8| {
        (from..from + 10)
            .filter(|&n| matches!(s.send_via(&via, &on_circuit(n, b"p").discover()), Outcome::Reply(_)))
            .count()
    };
    assert_eq!(replies(&mut s, 0), 4, "the burst");
    s.advance(1);
    assert_eq!(replies(&mut s, 20), 2, "then the rate");
    assert_eq!(s.engine.stats().limit_discover_rate, 14);
}

#[test]
fn relayed_messages_only_from_trusted_relays() {
    // Before: anyone could set giaddr, 118 or 82.5 and draw on any pool, or make the server
    // send replies to any address (a reflector).
    let mut cfg = config("100.64.0.10", "100.64.0.20");
    cfg.subnets.push(subnet("100.64.1.0", "100.64.1.10", "100.64.1.20"));
    cfg.trusted_relays = vec![Cidr { network: ip("100.64.1.1"), prefix_len: 32 }];
    let mut s = Server::new(cfg);
    let mut c = Client::new(1);
    c.giaddr = ip("100.64.1.1");
    assert_eq!(s.ask_via(&ingress_from("100.64.1.1"), &c.discover()).1.yiaddr(), ip("100.64.1.10"));
    let mut spoofed = Client::new(2);
    spoofed.giaddr = ip("100.64.1.1");
    assert_eq!(s.send_via(&ingress_from("198.18.7.7"), &spoofed.discover()), Outcome::Silent(Silence::UntrustedRelay));
    assert_eq!(s.engine.stats().relay_untrusted, 1);
}

#[test]
fn a_direct_client_cannot_pick_its_link_or_speak_for_a_relay() {
    let mut cfg = config("100.64.0.10", "100.64.0.20");
    cfg.subnets[0].interface = Some("eth0".into());
    let mut relay_only = subnet("100.64.1.0", "100.64.1.10", "100.64.1.20");
    relay_only.interface = Some("eth1".into());
    cfg.subnets.push(relay_only);
    let mut s = Server::new(cfg);
    let eth0 = Ingress::broadcast(s.engine.shared().interface_id("eth0"));
    let mut c = Client::new(1);
    c.extra.push((code::SUBNET_SELECTION, vec![100, 64, 1, 0]));
    c.relay_info = Some(vec![5, 4, 100, 64, 1, 0, 1, 2, b'x', b'y']);
    let (r, offer) = s.ask_via(&eth0, &c.discover());
    assert_eq!(offer.yiaddr(), ip("100.64.0.10"), "its own link's pool, whatever 118 and 82.5 say");
    let echoed = crate::wire::options::OptionIter::new(&s.out[240..r.len]).any(|o| o.unwrap().0 == 82);
    assert!(!echoed, "a client's own option 82 is not echoed");
}

#[test]
fn inform_is_answered_only_for_a_served_address() {
    let mut s = Server::new(config("100.64.0.10", "100.64.0.20"));
    let c = Client::new(1);
    assert_eq!(s.send(&c.inform(ip("198.51.100.7"))), Outcome::Silent(Silence::NoSubnet));
    let (r, _) = s.ask(&c.inform(ip("100.64.0.77")));
    assert_eq!(r.to, Destination::Client(ip("100.64.0.77")));
}

#[test]
fn times_are_bounded_and_never_wrap() {
    // Before: 0xffffffff passed validation and expired within a day (or panicked the worker).
    let mut cfg = config("100.64.0.10", "100.64.0.20");
    cfg.lease_time = u32::MAX;
    let e = Shared::new(&cfg, 1).unwrap_err();
    assert_eq!(e.path, "lease_time");
    assert!(e.reason.contains("infinite leases are not supported"), "{e}");
    cfg.lease_time = crate::config::MAX_LEASE_TIME;
    // Near the end of the clock's range, deadlines saturate instead of wrapping to the past.
    let shared = Arc::new(Shared::new(&cfg, 1).unwrap());
    let now = u32::MAX - 100;
    let mut s = Server { engine: Engine::new(shared, now, 16), now, events: Vec::new(), out: [0; 1500] };
    let c = Client::new(1);
    let x = dora(&mut s, &c);
    assert_eq!(s.engine.lookup(&c.key()), Some((x, LeaseState::Bound, u32::MAX)));
    s.advance(50);
    assert_eq!(s.engine.lookup(&c.key()).map(|l| l.1), Some(LeaseState::Bound));
}

#[test]
fn oversized_pools_are_refused() {
    // Before: a pool as large as a /1 was accepted and took 8 bytes per address at start.
    let mut cfg = config("100.64.0.10", "100.64.0.20");
    cfg.subnets = vec![Subnet::new(ip("0.0.0.0"), 1)];
    cfg.subnets[0].pools.push(Pool { first: ip("0.0.0.1"), last: ip("127.255.255.254") });
    let e = Shared::new(&cfg, 1).unwrap_err();
    assert_eq!(e.path, "subnets[0].pools[0]");
    assert!(e.reason.contains("at most 16777216"), "{e}");
}

#[test]
fn offers_leases_and_probations_at_the_end_of_time_end_there() {
    // Before: `poll_timeout` computed `handled_until + 1` and overflowed (a panic in debug
    // builds) once the clock reached its last second.
    let mut cfg = config("100.64.0.10", "100.64.0.20");
    cfg.lease_time = crate::config::MAX_LEASE_TIME;
    cfg.offer_timeout = crate::config::MAX_OFFER_TIMEOUT;
    cfg.decline_probation = crate::config::MAX_DECLINE_PROBATION;
    let shared = Arc::new(Shared::new(&cfg, 1).unwrap());
    let now = u32::MAX - 1000;
    let mut s = Server { engine: Engine::new(shared, now, 16), now, events: Vec::new(), out: [0; 1500] };
    let (a, b, c) = (Client::new(1), Client::new(2), Client::new(3));
    let (_, offer) = s.ask(&a.discover());
    assert_eq!(s.engine.lookup(&a.key()), Some((offer.yiaddr(), LeaseState::Offered, u32::MAX)));
    let x = dora(&mut s, &b);
    assert_eq!(s.engine.lookup(&b.key()), Some((x, LeaseState::Bound, u32::MAX)));
    let y = dora(&mut s, &c);
    s.send(&c.decline(y));
    assert!(s.events.iter().any(|e| e.kind == EventKind::Declined && e.expires == u32::MAX));
    s.take_events();
    s.advance(999);
    assert!(s.take_events().is_empty(), "nothing wraps into the past");
    assert_eq!(s.engine.poll_timeout(), Some(u32::MAX));
    s.advance(1);
    let mut ended: Vec<EventKind> = s.take_events().into_iter().map(|e| e.0).collect();
    ended.sort_by_key(|k| *k as u8);
    assert_eq!(ended, [EventKind::Expired, EventKind::OfferExpired, EventKind::ProbationEnded]);
    assert_eq!(s.engine.poll_timeout(), None);
    // An offer made in the clock's last second: there is no later second to wait for.
    let (_, offer) = s.ask(&a.discover());
    assert_eq!(s.engine.lookup(&a.key()), Some((offer.yiaddr(), LeaseState::Offered, u32::MAX)));
    assert_eq!(s.engine.poll_timeout(), None);
}

#[test]
fn a_reply_that_does_not_fit_changes_no_lease() {
    // Before: the offer (or lease) was recorded, then the reply failed with NoRoom: an address
    // held for a client that never heard of it.
    let mut s = Server::new(config("100.64.0.10", "100.64.0.20"));
    let mut c = Client::new(1);
    // 300 bytes of client identifier, echoed in every reply: more than 548 bytes in all.
    c.client_id = Some(vec![7; 300]);
    let dropped = Outcome::Dropped(DropReason::Malformed(wire::Error::NoRoom));
    assert_eq!(s.send(&c.discover()), dropped);
    assert_eq!(s.send(&c.discover_requesting(ip("100.64.0.10"))), dropped);
    c.prl.clear();
    c.extra.push((80, vec![]));
    assert_eq!(s.send(&c.discover()), dropped, "rapid commit too");
    assert_eq!(s.send(&c.select(SERVER, ip("100.64.0.10"))), dropped);
    assert_eq!((s.engine.records(), s.events.len()), (0, 0), "no lease change");
    // A client that says it takes larger messages is served.
    c.extra.push((code::MAX_MESSAGE_SIZE, 1500u16.to_be_bytes().to_vec()));
    assert_eq!(dora(&mut s, &c), ip("100.64.0.10"));
}

#[test]
fn a_probation_of_zero_ends_at_the_next_second() {
    // Before: its deadline went into the wheel slot of "now", already passed, and the address
    // stayed out of the pool for a whole turn of the wheel (18 hours).
    let mut cfg = config("100.64.0.10", "100.64.0.11");
    cfg.decline_probation = 0;
    let mut s = Server::new(cfg);
    let a = Client::new(1);
    let x = dora(&mut s, &a);
    assert_eq!(s.send(&a.decline(x)), Outcome::Silent(Silence::Done));
    s.take_events();
    s.advance(1);
    assert_eq!(s.take_events(), [(EventKind::ProbationEnded, x)]);
    assert_eq!(s.engine.records(), 0);
}
