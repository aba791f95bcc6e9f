//! The cluster thread (`dhcp_user::cluster`) against a real three-node NATS JetStream cluster in
//! namespaces on one bridge: two nodes racing for blocks (exactly one wins each), a node that
//! falls silent seen dead and each of its blocks taken over by exactly one survivor, lease
//! events reaching the peers in order, all of it again with one NATS server stopped, and a node
//! cut off from NATS losing its blocks to the survivors and learning it after the heal.

use dhcp_user::cluster::{Bytes, Cluster, Command, Notification, PeerEvent, Settings};
use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use xdhcpd_tests::nats::NatsCluster;
use xdhcpd_tests::{root_or_skip, Netns};

/// Waits on real processes: generous, never an assertion about speed.
const LIMIT: Duration = Duration::from_secs(60);
const PEERS: [&str; 3] = ["a", "b", "c"];

/// One cluster client: its namespace on the bridge and its cluster thread running there.
struct Node {
    cluster: Option<Cluster>,
    ns: Netns,
    /// Notifications taken so far.
    seen: Vec<Notification>,
}

impl Node {
    fn start(nats: &NatsCluster, name: &str) -> Node {
        let _ = env_logger::builder().is_test(true).try_init();
        let (ns, _) = nats.attach_client(name);
        let settings = Settings {
            servers: nats.urls(),
            node: name.to_string(),
            peers: PEERS.iter().map(|p| p.to_string()).collect(),
            bucket: "xdt".into(),
            heartbeat: Duration::from_millis(200),
            dead_after: Duration::from_millis(1500),
            longest_lease: Duration::from_secs(3600),
            event_backlog: 1024,
        };
        // The cluster thread is spawned from a thread inside the namespace, so it lives there.
        let cluster = ns.spawn(move || Cluster::start(settings).expect("cluster thread")).join().expect("spawn");
        Node { cluster: Some(cluster), ns, seen: Vec::new() }
    }

    fn cluster(&self) -> &Cluster {
        self.cluster.as_ref().expect("running")
    }

    fn send(&self, c: Command) {
        self.cluster().send(c);
    }

    /// Takes notifications until `done` holds for those taken so far; panics after LIMIT.
    fn until(&mut self, what: &str, done: impl Fn(&[Notification]) -> bool) {
        let end = Instant::now() + LIMIT;
        while !done(&self.seen) {
            let left = end.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "{what}: not after {LIMIT:?}; saw {:?}", self.seen);
            if let Ok(n) = self.cluster().notifications.recv_timeout(left.min(Duration::from_millis(200))) {
                self.seen.push(n);
            }
        }
    }

    /// Takes the notifications waiting now.
    fn drain(&mut self) {
        let waiting: Vec<Notification> = self.cluster().notifications.try_iter().collect();
        self.seen.extend(waiting);
    }

    /// Waits until every peer in `live` is seen live.
    fn sees_live(&mut self, live: &[usize]) {
        let name = format!("peers {live:?} live");
        self.until(&name, |s| live.iter().all(|p| s.contains(&Notification::PeerLive(*p))));
        assert!(live.iter().all(|&p| self.cluster().is_live(p)), "status agrees");
    }

    /// Takes `n` peer events (panics after LIMIT).
    fn events(&self, n: usize) -> Vec<PeerEvent> {
        let end = Instant::now() + LIMIT;
        let mut got = Vec::new();
        while got.len() < n {
            let left = end.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "{} of {n} peer events after {LIMIT:?}: {got:?}", got.len());
            if let Ok(e) = self.cluster().peer_events.recv_timeout(left) {
                got.push(e);
            }
        }
        got
    }
}

fn granted(seen: &[Notification]) -> BTreeSet<u32> {
    seen.iter().filter_map(|n| if let Notification::Granted { block, .. } = n { Some(*block) } else { None }).collect()
}

fn failed(seen: &[Notification]) -> BTreeSet<u32> {
    seen.iter()
        .filter_map(|n| if let Notification::ClaimFailed { block, .. } = n { Some(*block) } else { None })
        .collect()
}

fn taken(seen: &[Notification]) -> Vec<(u32, String, u32)> {
    seen.iter()
        .filter_map(|n| match n {
            Notification::TakenOver { block, from, free_after, .. } => Some((*block, from.clone(), *free_after)),
            _ => None,
        })
        .collect()
}

fn unix_now() -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as u32
}

/// Blocks 0..16 of pool `pool`: a and b claim all of them at once; each block goes to exactly
/// one of them.
fn race(a: &mut Node, b: &mut Node, pool: u32) {
    let blocks: BTreeSet<u32> = (0..16).collect();
    for block in &blocks {
        a.send(Command::Claim { pool, block: *block });
        b.send(Command::Claim { pool, block: *block });
    }
    let answered = |s: &[Notification]| granted(s).len() + failed(s).len() >= blocks.len();
    a.until("a's claims answered", answered);
    b.until("b's claims answered", answered);
    let (ga, gb) = (granted(&a.seen), granted(&b.seen));
    assert!(ga.is_disjoint(&gb), "a block granted to both: a {ga:?} b {gb:?}");
    let all: BTreeSet<u32> = ga.union(&gb).copied().collect();
    assert_eq!(all, blocks, "every block granted to one of them");
    assert_eq!(failed(&a.seen), gb, "a was refused exactly b's blocks");
    assert_eq!(failed(&b.seen), ga, "b was refused exactly a's blocks");
}

/// c claims blocks of pool `pool` and falls silent (its thread stops, blocks not returned): a and
/// b see it dead, and each block is taken over by exactly one of them.
fn takeover(a: &mut Node, b: &mut Node, c: &mut Node, pool: u32) {
    for _ in 0..6 {
        c.send(Command::ClaimAny { pool, blocks: 64 });
    }
    c.until("c's six claims", |s| granted(s).len() == 6);
    let blocks = granted(&c.seen);
    let before = unix_now();
    drop(c.cluster.take());
    a.until("a sees c dead", |s| s.contains(&Notification::PeerDead(2)));
    b.until("b sees c dead", |s| s.contains(&Notification::PeerDead(2)));
    let all_taken = |a: &Node, b: &Node| taken(&a.seen).len() + taken(&b.seen).len() >= blocks.len();
    let end = Instant::now() + LIMIT;
    while !all_taken(a, b) {
        assert!(Instant::now() < end, "takeovers: a {:?} b {:?}", a.seen, b.seen);
        std::thread::sleep(Duration::from_millis(100));
        a.drain();
        b.drain();
    }
    let (ta, tb) = (taken(&a.seen), taken(&b.seen));
    let mut got: Vec<u32> = ta.iter().chain(&tb).map(|t| t.0).collect();
    got.sort_unstable();
    assert_eq!(got, blocks.iter().copied().collect::<Vec<_>>(), "each block taken over exactly once: {ta:?} {tb:?}");
    for (block, from, free_after) in ta.iter().chain(&tb) {
        assert_eq!(from, "c", "block {block} taken from c");
        assert!(*free_after >= before + 3600, "block {block}: free addresses only after the longest lease");
    }
}

/// a and b publish; each receives the other's events in order, none of its own.
fn events(a: &mut Node, b: &mut Node, tag: &str) {
    let n = 300;
    for i in 0..n {
        a.send(Command::Publish(Bytes::from(format!("{tag} a {i}"))));
        if i % 10 == 0 {
            b.send(Command::Publish(Bytes::from(format!("{tag} b {i}"))));
        }
    }
    // Earlier rounds' events come first: keep only this round's.
    let ours = |v: Vec<PeerEvent>, want: usize, from: usize| {
        let mine: Vec<String> = v
            .into_iter()
            .inspect(|e| assert_eq!(e.peer, from, "events come from the peer that published them"))
            .map(|e| String::from_utf8_lossy(&e.bytes).into_owned())
            .filter(|s| s.starts_with(&format!("{tag} ")))
            .collect();
        assert_eq!(mine.len(), want);
        mine
    };
    let at_b = ours(b.events(n), n, 0);
    let expect_b: Vec<String> = (0..n).map(|i| format!("{tag} a {i}")).collect();
    assert_eq!(at_b, expect_b, "b got a's events in order");
    let at_a = ours(a.events(n / 10), n / 10, 1);
    let expect_a: Vec<String> = (0..n).step_by(10).map(|i| format!("{tag} b {i}")).collect();
    assert_eq!(at_a, expect_a, "a got b's events in order, and none of its own");
}

fn three(nats: &NatsCluster) -> (Node, Node, Node) {
    let (mut a, mut b, mut c) = (Node::start(nats, "a"), Node::start(nats, "b"), Node::start(nats, "c"));
    a.sees_live(&[1, 2]);
    b.sees_live(&[0, 2]);
    c.sees_live(&[0, 1]);
    (a, b, c)
}

#[test]
fn claims_takeovers_and_events_on_three_nats_servers() {
    if !root_or_skip("claims_takeovers_and_events_on_three_nats_servers") {
        return;
    }
    let nats = NatsCluster::start("cl3", 3);
    let (mut a, mut b, mut c) = three(&nats);
    race(&mut a, &mut b, 0);
    events(&mut a, &mut b, "first");
    takeover(&mut a, &mut b, &mut c, 1);
    drop((a, b, c));
}

#[test]
fn everything_goes_on_with_one_nats_server_stopped() {
    if !root_or_skip("everything_goes_on_with_one_nats_server_stopped") {
        return;
    }
    let mut nats = NatsCluster::start("cl2", 3);
    let (mut a, mut b, mut c) = three(&nats);
    // Settled first: streams and bucket exist with three replicas.
    events(&mut a, &mut b, "before");
    let stopped = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis();
    nats.stop_node(0);
    // Writable again (a new leader where node 0 led): every node's heartbeats confirmed.
    for n in [&a, &b, &c] {
        let ok = xdhcpd_tests::eventually(LIMIT, || {
            (u128::from(n.cluster().status.confirmed_heartbeat_ms.load(Ordering::Relaxed)) > stopped).then_some(())
        });
        assert!(ok.is_some(), "heartbeats confirmed after node 0 stopped");
    }
    race(&mut a, &mut b, 0);
    events(&mut a, &mut b, "after");
    takeover(&mut a, &mut b, &mut c, 1);
}

#[test]
fn a_node_cut_off_loses_its_blocks_and_learns_it_after_the_heal() {
    if !root_or_skip("a_node_cut_off_loses_its_blocks_and_learns_it_after_the_heal") {
        return;
    }
    let nats = NatsCluster::start("clp", 3);
    let (mut a, mut b, mut c) = three(&nats);
    for block in 0..4 {
        c.send(Command::Claim { pool: 0, block });
    }
    c.until("c's claims", |s| granted(s).len() == 4);
    nats.bridge.cut(&c.ns);
    a.until("a sees c dead", |s| s.contains(&Notification::PeerDead(2)));
    let end = Instant::now() + LIMIT;
    while taken(&a.seen).len() + taken(&b.seen).len() < 4 {
        assert!(Instant::now() < end, "takeovers: a {:?} b {:?}", a.seen, b.seen);
        std::thread::sleep(Duration::from_millis(100));
        a.drain();
        b.drain();
    }
    // Cut off, c declared nobody dead (it had no echo of its own) and took nothing.
    std::thread::sleep(Duration::from_secs(2));
    c.drain();
    assert!(!c.seen.iter().any(|n| matches!(n, Notification::PeerDead(_) | Notification::TakenOver { .. })));
    nats.bridge.heal(&c.ns);
    let lost = |s: &[Notification]| s.iter().filter(|n| matches!(n, Notification::Lost { .. })).count();
    c.until("c learns it lost its four blocks", |s| lost(s) == 4);
    a.until("a sees c live again", |s| s.iter().filter(|n| **n == Notification::PeerLive(2)).count() >= 2);
}
