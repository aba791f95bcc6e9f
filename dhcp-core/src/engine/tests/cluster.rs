//! Cluster mode on a virtual clock: nodes are engines over their own `Shared`, as on separate
//! machines; what NATS would carry (blocks granted, liveness, heartbeats, lease events) the
//! tests hand over directly.

use super::*;
use crate::config::ClusterConfig;
use crate::lease::space::{BlockState, Status};
use std::collections::HashSet;

const PEERS: [&str; 2] = ["a", "b"];
/// 128 pool addresses in 8 blocks of 16.
const FIRST: &str = "100.64.0.16";
const LAST: &str = "100.64.0.143";

fn cluster_config(node: &str) -> Config {
    let cluster = ClusterConfig {
        nats: vec!["nats://100.64.9.1:4222".into()],
        node: node.into(),
        peers: PEERS.iter().map(|p| p.to_string()).collect(),
        block_size: 16,
        ..ClusterConfig::default()
    };
    Config { cluster: Some(cluster), ..config(FIRST, LAST) }
}

/// A node with its first heartbeat confirmed at `T0`.
fn node(name: &str) -> Server {
    let s = Server::new(cluster_config(name));
    s.view().confirm_heartbeat(T0);
    s
}

impl Server {
    fn view(&self) -> &ClusterView {
        self.engine.shared().cluster().expect("a cluster node")
    }

    fn grant(&self, blocks: impl IntoIterator<Item = u32>) {
        for b in blocks {
            assert!(self.engine.shared().space().grant_block(0, b));
        }
    }
}

/// The message with its `secs` field set (bytes 8-9 of the BOOTP header).
fn waited(mut msg: Vec<u8>, secs: u16) -> Vec<u8> {
    msg[8..10].copy_from_slice(&secs.to_be_bytes());
    msg
}

/// A client (by number) whose primary is node `want` while every node is alive.
fn client_of(s: &Server, want: usize, from: u8) -> Client {
    (from..=255).map(Client::new).find(|c| s.view().primary_of(&c.mac) == want).expect("some client hashes there")
}

/// DORA with `secs` set so that any node answers; the ACKed address.
fn dora_waited(s: &mut Server, c: &Client) -> Option<Ipv4Addr> {
    let Outcome::Reply(_) = s.send(&waited(c.discover(), 10)) else { return None };
    let offered = Ipv4Addr::from(u32::from_be_bytes(s.out[16..20].try_into().unwrap()));
    let (_, ack) = s.ask(&waited(c.select(SERVER, offered), 10));
    assert_eq!(msg_type(&ack), v4::MessageType::Ack);
    Some(ack.yiaddr())
}

fn in_blocks(s: &Server, ip: Ipv4Addr, blocks: &[u32]) -> bool {
    s.engine.shared().space().block_of(ip).is_some_and(|(p, b)| p == 0 && blocks.contains(&b))
}

#[test]
fn two_nodes_over_disjoint_blocks_never_give_one_address_twice() {
    let (mut a, mut b) = (node("a"), node("b"));
    let (ours_a, ours_b) = ([0, 2, 4, 6], [1, 3, 5, 7]);
    a.grant(ours_a);
    b.grant(ours_b);
    let mut got: [HashSet<Ipv4Addr>; 2] = Default::default();
    for n in 0..=255u8 {
        let c = Client::new(n);
        for (i, s) in [&mut a, &mut b].into_iter().enumerate() {
            if let Some(ip) = dora_waited(s, &c) {
                assert!(got[i].insert(ip));
            }
        }
    }
    assert_eq!((got[0].len(), got[1].len()), (64, 64), "each node fills exactly its own blocks");
    assert!(got[0].is_disjoint(&got[1]), "no address was given by both nodes");
    assert!(got[0].iter().all(|&ip| in_blocks(&a, ip, &ours_a)));
    assert!(got[1].iter().all(|&ip| in_blocks(&b, ip, &ours_b)));
}

#[test]
fn a_requested_address_in_a_block_not_ours_is_not_given() {
    let mut a = node("a");
    a.grant([0]);
    let foreign = ip("100.64.0.40"); // block 1
    let c = Client::new(1);
    let (_, offer) = a.ask(&waited(c.discover_requesting(foreign), 10));
    assert!(in_blocks(&a, offer.yiaddr(), &[0]), "{} comes from our block", offer.yiaddr());
    assert_eq!(a.engine.cluster_stats().not_our_block, 1);
    let (_, nak) = a.ask(&waited(Client::new(2).select(SERVER, foreign), 10));
    assert_eq!(msg_type(&nak), v4::MessageType::Nak, "nor taken in SELECTING without our offer");
}

#[test]
fn nothing_is_ours_before_a_block_is_granted() {
    let mut a = node("a");
    assert_eq!(a.send(&waited(Client::new(1).discover(), 10)), Outcome::Silent(Silence::NoAddress));
    assert_eq!(a.engine.shared().space().free_in_our_blocks(0), 0);
    a.grant([3]);
    assert_eq!(a.engine.shared().space().free_in_our_blocks(0), 16);
    assert!(dora_waited(&mut a, &Client::new(1)).is_some_and(|ip| in_blocks(&a, ip, &[3])));
}

#[test]
fn a_non_primary_waits_for_secs_or_for_the_primary_to_die() {
    let mut b = node("b");
    b.grant([1]);
    let c = client_of(&b, 0, 1);
    assert_eq!(b.send(&c.discover()), Outcome::Silent(Silence::NotPrimary));
    assert_eq!(b.send(&waited(c.discover(), 2)), Outcome::Silent(Silence::NotPrimary));
    assert_eq!(b.engine.cluster_stats().not_primary, 2);
    let (_, offer) = b.ask(&waited(c.discover(), 3));
    assert_eq!(msg_type(&offer), v4::MessageType::Offer, "secs reached wait_secs");
    // Its own clients it answers at once.
    let mine = client_of(&b, 1, 1);
    assert_eq!(msg_type(&b.ask(&mine.discover()).1), v4::MessageType::Offer);
    // The primary dies: its clients are ours at once.
    let other = client_of(&b, 0, c.mac[5] + 1);
    b.view().set_live(0, false);
    assert_eq!(b.view().primary_of(&other.mac), 1);
    assert_eq!(msg_type(&b.ask(&other.discover()).1), v4::MessageType::Offer);
}

#[test]
fn a_request_naming_another_server_releases_our_offer() {
    let mut b = node("b");
    b.grant([1]);
    let c = client_of(&b, 0, 1);
    let (_, offer) = b.ask(&waited(c.discover(), 5));
    assert_eq!(b.engine.lookup(&c.key()).map(|l| l.1), Some(LeaseState::Offered));
    b.events.clear();
    let other = Ipv4Addr::new(100, 64, 0, 2);
    assert_eq!(b.send(&c.select(other, offer.yiaddr())), Outcome::Silent(Silence::ForeignServer));
    assert_eq!(b.take_events(), vec![(EventKind::OfferReleased, offer.yiaddr())]);
    assert_eq!(b.engine.lookup(&c.key()), None);
    assert_eq!(b.engine.shared().space().status(offer.yiaddr()), Some(Status::Free));
}

#[test]
fn a_survivor_confirms_an_adopted_lease_with_the_same_address() {
    let (mut a, mut b) = (node("a"), node("b"));
    a.grant([0]);
    let c = client_of(&a, 0, 1);
    let (_, offer) = a.ask(&c.discover());
    let (_, ack) = a.ask(&c.select(SERVER, offer.yiaddr()));
    let leased = ack.yiaddr();
    // Node a's lease event, as its cluster thread drains it; node b adopts it.
    let bound: Vec<LeaseEvent> = std::iter::from_fn(|| a.view().pop_event()).collect();
    assert_eq!(bound.iter().map(|e| (e.kind, e.ip)).collect::<Vec<_>>(), vec![(EventKind::Bound, leased)]);
    let mut events = Vec::new();
    assert_eq!(b.engine.adopt_lease(b.now, &bound[0], &mut events), Ok(Adopted::Installed));
    assert!(events.is_empty());
    assert_eq!(b.engine.shared().space().status(leased), Some(Status::Held), "held for its client at b");
    assert_eq!(b.view().pop_event(), None, "an adopted lease is not published again");
    // While a lives, b leaves the rebinding client to it.
    b.advance(3000);
    assert_eq!(b.send(&c.renew(leased)), Outcome::Silent(Silence::NotPrimary));
    b.view().set_live(0, false);
    let (_, rebound) = b.ask(&c.renew(leased));
    assert_eq!((msg_type(&rebound), rebound.yiaddr()), (v4::MessageType::Ack, leased), "REBINDING");
    // Not b's block (yet): confirmed up to the end a gave, never lengthened.
    let left = bound[0].expires - b.now;
    assert_eq!(rebound.opts().get(OptionCode::AddressLeaseTime), Some(&DhcpOption::AddressLeaseTime(left)));
    assert_eq!(b.engine.lookup(&c.key()).map(|l| l.2), Some(bound[0].expires));
    let (_, rebooted) = b.ask(&c.reboot(leased));
    assert_eq!((msg_type(&rebooted), rebooted.yiaddr()), (v4::MessageType::Ack, leased), "INIT-REBOOT");
    assert_eq!(b.engine.cluster_stats().leases_adopted, 1);
    // b takes a's block over: the lease is b's to lengthen now, and b publishes it.
    assert!(b.engine.shared().space().adopt_block(0, 0, b.view().free_after(b.now)));
    b.view().confirm_heartbeat(b.now);
    let (_, renewed) = b.ask(&c.renew(leased));
    assert_eq!(renewed.opts().get(OptionCode::AddressLeaseTime), Some(&DhcpOption::AddressLeaseTime(3600)));
    let published = b.view().pop_event().expect("b's renewal goes out");
    assert_eq!((published.kind, published.ip, published.expires), (EventKind::Bound, leased, b.now + 3600));
}

#[test]
fn an_adopted_lease_ends_with_its_event_unless_renewed_since() {
    let (mut a, mut b) = (node("a"), node("b"));
    a.grant([0]);
    let c = client_of(&a, 0, 1);
    let leased = dora(&mut a, &c);
    let bound = a.view().pop_event().unwrap();
    let mut events = Vec::new();
    b.engine.adopt_lease(b.now, &bound, &mut events).unwrap();
    let over = LeaseEvent { expires: b.now, ..bound };
    assert_eq!(b.engine.adopt_lease(b.now, &over, &mut events), Ok(Adopted::Ignored), "a lease already over");
    // A stale end (of an older lease) leaves the lease alone.
    let stale = LeaseEvent { kind: EventKind::Released, expires: bound.expires - 10, ..bound };
    assert_eq!(b.engine.adopt_lease(b.now, &stale, &mut events), Ok(Adopted::Ignored));
    a.send(&c.release(leased));
    let released = a.view().pop_event().unwrap();
    assert_eq!(released.kind, EventKind::Released);
    assert_eq!(b.engine.adopt_lease(b.now, &released, &mut events), Ok(Adopted::Ended));
    assert_eq!(b.engine.lookup(&c.key()), None);
    assert_eq!(b.engine.shared().space().status(leased), Some(Status::Free));
    // Free at b, but in a's block: b does not give it out.
    b.grant([1]);
    let (_, offer) = b.ask(&waited(Client::new(9).discover_requesting(leased), 10));
    assert_ne!(offer.yiaddr(), leased);
}

#[test]
fn an_adopting_block_gives_free_addresses_only_after_free_after() {
    let mut b = node("b");
    let free_after = b.view().free_after(T0);
    assert_eq!(free_after, T0 + 3600 + 2);
    assert!(b.engine.shared().space().adopt_block(0, 0, free_after));
    let c = Client::new(1);
    assert_eq!(b.send(&waited(c.discover(), 10)), Outcome::Silent(Silence::NoAddress));
    b.advance(3601);
    b.view().confirm_heartbeat(b.now);
    assert_eq!(b.send(&waited(c.discover(), 10)), Outcome::Silent(Silence::NoAddress), "one second early");
    b.advance(1);
    // The cluster thread's pass at this time makes the block ours.
    assert_eq!(b.engine.shared().space().ripen(0, b.now - 1), 0, "not before free_after");
    assert_eq!(b.engine.shared().space().ripen(0, b.now), 1);
    let (_, offer) = b.ask(&waited(c.discover(), 10));
    assert!(in_blocks(&b, offer.yiaddr(), &[0]));
    assert_eq!(b.engine.shared().space().block_state(0, 0), Some(BlockState::Ours));
}

#[test]
fn a_fenced_node_grants_nothing_unconfirmed_and_nothing_past_its_limit() {
    let mut a = Server::new(cluster_config("a"));
    a.grant([0]);
    let c = client_of(&a, 0, 1);
    assert_eq!(a.send(&c.discover()), Outcome::Silent(Silence::Fenced), "no heartbeat confirmed yet");
    assert_eq!(a.engine.cluster_stats().fenced, 1);
    assert_eq!(a.engine.shared().space().free_in_our_blocks(0), 16, "nothing taken");
    a.view().confirm_heartbeat(T0);
    let limit = a.view().grant_limit();
    assert_eq!(limit, T0 + 3 + 3600 - 2);
    // Cut off from NATS: no more heartbeats confirmed. Leases end by the limit.
    a.advance(3000);
    let leased = dora(&mut a, &c);
    let (_, expires) = a.engine.lookup(&c.key()).map(|l| (l.0, l.2)).unwrap();
    assert_eq!(expires, limit, "shortened to end at the limit");
    for _ in 0..5 {
        a.advance(100);
        let (_, ack) = a.ask(&c.renew(leased));
        assert_eq!(msg_type(&ack), v4::MessageType::Ack, "its own client is still served");
        assert!(a.engine.lookup(&c.key()).unwrap().2 <= limit);
        let lease_time = ack.opts().get(OptionCode::AddressLeaseTime).cloned();
        assert_eq!(lease_time, Some(DhcpOption::AddressLeaseTime(limit - a.now)));
    }
    assert!(a.engine.hold_until(&c.key(), limit + 100));
    assert_eq!(a.engine.lookup(&c.key()).unwrap().2, limit, "a renewal answered elsewhere is capped too");
    assert!(a.engine.cluster_stats().lease_capped >= 6);
    a.advance(limit - a.now);
    assert_eq!(a.send(&c.renew(leased)), Outcome::Silent(Silence::Fenced));
}

#[test]
fn a_block_holding_a_lease_is_not_given_back() {
    let mut a = node("a");
    a.grant([0, 1]);
    let c = client_of(&a, 0, 1);
    let leased = dora(&mut a, &c);
    let space = a.engine.shared().space();
    let (pool, block) = space.block_of(leased).unwrap();
    assert_eq!(space.block_census(pool, block), (1, 15));
    assert!(!space.revoke_block(pool, block), "it holds a lease");
    assert_eq!(space.block_state(pool, block), Some(BlockState::Ours));
    let other = 1 - block;
    assert!(space.revoke_block(pool, other));
    assert_eq!(space.free_in_our_blocks(0), 15);
    // The revoked block's free addresses are no longer given out.
    let given: Vec<Ipv4Addr> = (10..40).filter_map(|n| dora_waited(&mut a, &Client::new(n))).collect();
    assert_eq!(given.len(), 15);
    assert!(given.iter().all(|&ip| in_blocks(&a, ip, &[block])));
}

#[test]
fn a_reload_keeps_the_view_and_the_blocks_and_refuses_a_changed_cluster() {
    let mut a = node("a");
    a.grant([0, 2]);
    let c = client_of(&a, 0, 1);
    let leased = dora(&mut a, &c);
    let (old_cfg, old) = (cluster_config("a"), a.engine.shared().clone());
    let new = Shared::new(&old_cfg, 1).unwrap().carrying_cluster(&old, &old_cfg, &old_cfg).unwrap();
    let new = Arc::new(new);
    assert!(Arc::ptr_eq(new.cluster().unwrap(), old.cluster().unwrap()), "the cluster thread's view stays");
    let (next, carried) = a.engine.rebuild(new.clone(), a.now);
    assert_eq!(carried.kept, 1);
    a.engine = next;
    assert_eq!(new.space().block_state(0, 2), Some(BlockState::Ours));
    assert_eq!(new.space().block_state(0, 1), Some(BlockState::NotOurs));
    assert_eq!(new.space().free_in_our_blocks(0), 31, "both blocks, less the lease carried over");
    assert_eq!(msg_type(&a.ask(&c.renew(leased)).1), v4::MessageType::Ack);

    let mut moved = cluster_config("b");
    assert_eq!(Shared::new(&moved, 1).unwrap().carrying_cluster(&old, &moved, &old_cfg).unwrap_err().path, "cluster");
    moved = Config { lease_time: 7200, ..cluster_config("a") };
    let e = Shared::new(&moved, 1).unwrap().carrying_cluster(&old, &moved, &old_cfg).unwrap_err();
    assert_eq!(e.path, "lease_time");
}

#[test]
fn a_peer_event_goes_to_the_worker_that_sees_its_client() {
    let shared = Shared::new(&cluster_config("a"), 4).unwrap().with_steering_key(0x5eed_1234);
    for n in 0..64u8 {
        let mut c = Client::new(n);
        if n % 2 == 1 {
            c.client_id = Some(vec![0xff, 1, 2, 3, n]);
        }
        let msg = c.discover();
        assert_eq!(shared.worker_of_client(&c.key(), &c.mac), shared.worker_of(&msg), "client {n}");
    }
}

#[test]
fn an_authoritative_node_does_not_nak_a_client_it_knows_nothing_of() {
    let mut a = Server::new(Config { authoritative: true, ..cluster_config("a") });
    a.view().confirm_heartbeat(T0);
    a.grant([0]);
    let c = client_of(&a, 0, 1);
    // Its lease may be another node's, whose event has not arrived.
    assert_eq!(a.send(&c.reboot(ip("100.64.0.40"))), Outcome::Silent(Silence::UnknownClient));
    // A client it knows, asking for another address, is still refused.
    let leased = dora(&mut a, &c);
    assert_ne!(leased, ip("100.64.0.40"));
    assert_eq!(msg_type(&a.ask(&c.reboot(ip("100.64.0.40"))).1), v4::MessageType::Nak);
}

#[test]
fn a_node_healed_after_losing_its_block_keeps_its_leases_there_without_lengthening_them() {
    let mut a = node("a");
    a.grant([0]);
    let c = client_of(&a, 0, 1);
    let leased = dora(&mut a, &c);
    let space = a.engine.shared().space();
    assert!(!space.revoke_block(0, 0), "not given back while it holds a lease");
    assert!(space.lose_block(0, 0), "but given up when another node took it over");
    assert_eq!(space.status(leased), Some(Status::Held), "the lease still holds its address");
    a.advance(1000);
    a.view().confirm_heartbeat(a.now);
    let (_, ack) = a.ask(&c.renew(leased));
    assert_eq!(msg_type(&ack), v4::MessageType::Ack);
    let left = T0 + 3600 - a.now;
    assert_eq!(ack.opts().get(OptionCode::AddressLeaseTime), Some(&DhcpOption::AddressLeaseTime(left)));
    assert_eq!(a.send(&waited(Client::new(200).discover(), 10)), Outcome::Silent(Silence::NoAddress));
}

#[test]
fn leasequery_answers_for_leases_adopted_from_peers() {
    use super::isp::{from_querier, query, QUERIER};
    let lq = |name: &str| {
        let mut cfg = cluster_config(name);
        cfg.leasequery = true;
        cfg.leasequery_from = vec![crate::config::Cidr { network: ip(QUERIER), prefix_len: 32 }];
        let s = Server::new(cfg);
        s.view().confirm_heartbeat(T0);
        s
    };
    let (mut a, mut b) = (lq("a"), lq("b"));
    a.grant([0]);
    let c = client_of(&a, 0, 1);
    let (_, offer) = a.ask(&c.discover());
    let (_, ack) = a.ask(&c.select(SERVER, offer.yiaddr()));
    let leased = ack.yiaddr();
    let bound = a.view().pop_event().expect("a's lease event");
    let mut events = Vec::new();
    // Node b never saw the client: what it knows comes from a's event alone.
    let (r, _) = b.ask_via(&from_querier(), &query(leased, &[], None));
    assert_eq!(r.kind, MessageType::LeaseUnassigned);
    assert_eq!(b.engine.adopt_lease(b.now, &bound, &mut events), Ok(Adopted::Installed));
    b.advance(100);
    let time = |m: &v4::Message| m.opts().get(OptionCode::AddressLeaseTime).cloned();
    let (r, m) = b.ask_via(&from_querier(), &query(leased, &[], None));
    assert_eq!((r.kind, &m.chaddr()[..6]), (MessageType::LeaseActive, &c.mac[..]));
    assert_eq!(time(&m), Some(DhcpOption::AddressLeaseTime(bound.expires - b.now)));
    // A's renewal arrives as a later event: the answer follows it.
    let renewed = LeaseEvent { expires: bound.expires + 600, ..bound };
    assert_eq!(b.engine.adopt_lease(b.now, &renewed, &mut events), Ok(Adopted::Installed));
    let (_, m) = b.ask_via(&from_querier(), &query(leased, &[], None));
    assert_eq!(time(&m), Some(DhcpOption::AddressLeaseTime(renewed.expires - b.now)));
}
