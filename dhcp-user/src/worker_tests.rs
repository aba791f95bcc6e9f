//! The worker loop over an in-memory packet path and a real journal whose disk the test can
//! slow down or fail: replies that need nothing durable go at once, ACKs wait at the commit
//! gate for their records (while the worker goes on serving), and ACKs whose records cannot be
//! written are withheld, never sent.

use super::*;
use crate::journal::{tests::TempDir, Durability, Journal};
use dhcp_core::client::{mac_for, ClientMsg};
use dhcp_core::config::{Config, Pool, Subnet};
use dhcp_core::engine::Shared;
use dhcp_core::wire::{dhcp, options::code, options::MessageType};
use dhcp_io::{Datagram, RecvMeta};
use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};

const NOW: u32 = 1_700_000_000;
const SERVER: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 1);

/// A packet path in memory: requests go in, sealed replies come out.
#[derive(Debug, Default)]
struct MemIo {
    inbox: VecDeque<Vec<u8>>,
    sent: Vec<(MessageType, Ipv4Addr, [u8; 6])>,
    released: usize,
}

#[derive(Debug)]
struct MemFrame {
    request: Vec<u8>,
    reply: Box<[u8; MAX_MESSAGE]>,
    tx: Option<Transmit>,
}

impl PacketIo for MemIo {
    type Frame = MemFrame;

    fn receive(&mut self, out: &mut Vec<MemFrame>, max: usize) -> usize {
        let n = max.min(self.inbox.len());
        for request in self.inbox.drain(..n) {
            out.push(MemFrame { request, reply: Box::new([0; MAX_MESSAGE]), tx: None });
        }
        n
    }

    fn datagram<'a>(&'a mut self, f: &'a mut MemFrame, _: &'a mut [u8; MAX_MESSAGE]) -> Result<Datagram<'a>, Unusable> {
        let src = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68);
        let meta = RecvMeta { interface: None, vlan: None, src, dst: Ipv4Addr::BROADCAST };
        Ok(Datagram { meta, request: &f.request, reply: &mut f.reply[..] })
    }

    fn seal(&mut self, f: &mut MemFrame, reply: &Transmit) -> bool {
        f.tx = Some(*reply);
        true
    }

    fn send(&mut self, frames: &mut Vec<MemFrame>) -> usize {
        let n = frames.len();
        for f in frames.drain(..) {
            let len = f.tx.expect("sealed").len;
            let p = dhcp::DhcpPacket::new_checked(&f.reply[..len]).expect("a reply");
            let mt = p.parse_options().unwrap().message_type.and_then(MessageType::from_u8).unwrap();
            let mac = p.client_mac();
            self.sent.push((mt, p.yiaddr(), mac));
        }
        n
    }

    fn release(&mut self, frames: &mut Vec<MemFrame>) {
        self.released += frames.len();
        frames.clear();
    }

    fn wait(&mut self, _: Duration, _: Option<&Doorbell>) {}
}

fn engine() -> Engine {
    let mut s = Subnet::new(Ipv4Addr::new(100, 64, 0, 0), 24);
    s.pools.push(Pool { first: Ipv4Addr::new(100, 64, 0, 10), last: Ipv4Addr::new(100, 64, 0, 99) });
    let cfg = Config { server_id: SERVER, subnets: vec![s], ..Config::default() };
    Engine::new(Arc::new(Shared::new(&cfg, 1).unwrap()), NOW, 64)
}

fn worker(journal: Option<Journal>) -> Worker<MemIo> {
    Worker::new(0, 1, engine(), MemIo::default(), journal, Arc::new(AtomicBool::new(false))).unwrap()
}

fn discover(n: u32) -> Vec<u8> {
    let mut buf = vec![0u8; 600];
    let len = ClientMsg::new(mac_for(n), n).write(MessageType::Discover, &mut buf).unwrap();
    buf.truncate(len);
    buf
}

fn request(n: u32, ip: Ipv4Addr) -> Vec<u8> {
    let (sid, req) = (SERVER.octets(), ip.octets());
    let opts = [(code::SERVER_ID, &sid[..]), (code::REQUESTED_IP, &req[..])];
    let mut buf = vec![0u8; 600];
    let len = ClientMsg { options: &opts, ..ClientMsg::new(mac_for(n), n + 1) }
        .write(MessageType::Request, &mut buf)
        .unwrap();
    buf.truncate(len);
    buf
}

/// Steps until `done` holds (the journal's writer is another thread), at most 5 s.
fn step_until(w: &mut Worker<MemIo>, done: impl Fn(&Worker<MemIo>) -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        w.step(NOW);
        if done(w) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    false
}

/// DISCOVER → OFFER for client `n`; returns the offered address.
fn offer(w: &mut Worker<MemIo>, n: u32) -> Ipv4Addr {
    w.io.inbox.push_back(discover(n));
    w.step(NOW);
    let &(mt, ip, mac) = w.io.sent.last().expect("an offer");
    assert_eq!((mt, mac), (MessageType::Offer, mac_for(n)));
    ip
}

#[test]
fn acks_wait_for_their_records_while_offers_go_at_once() {
    let dir = TempDir::new("gate");
    let (journal, hooks) = Journal::open_for_test(&dir.file(), Durability::Fsync, NOW);
    let mut w = worker(Some(journal));
    hooks.t.hold_syncs(true);
    let ip = offer(&mut w, 1);
    w.io.inbox.push_back(request(1, ip));
    w.step(NOW);
    assert_eq!(w.held(), 1, "the ACK waits for its record");
    assert_eq!(w.io.sent.len(), 1, "nothing but the offer went out");
    // The disk is slow: the worker still serves others meanwhile.
    let other = offer(&mut w, 2);
    assert_ne!(other, ip);
    assert_eq!(w.held(), 1);
    hooks.t.hold_syncs(false);
    assert!(step_until(&mut w, |w| w.held() == 0), "the ACK leaves once its record is synced");
    assert!(w.io.sent.contains(&(MessageType::Ack, ip, mac_for(1))), "{:?}", w.io.sent);
    assert_eq!(w.report().acks_withheld, 0);
}

#[test]
fn acks_whose_records_cannot_be_written_are_withheld() {
    let dir = TempDir::new("withhold");
    let (journal, hooks) = Journal::open_for_test(&dir.file(), Durability::Fsync, NOW);
    let mut w = worker(Some(journal));
    let ip = offer(&mut w, 1);
    hooks.t.fail_writes(true);
    w.io.inbox.push_back(request(1, ip));
    assert!(step_until(&mut w, |w| w.report().acks_withheld == 1), "withheld and counted");
    assert!(!w.io.sent.iter().any(|s| s.0 == MessageType::Ack), "never sent: {:?}", w.io.sent);
    assert_eq!(w.held(), 0);
    // The disk recovers (the journal retries every 100 ms): a retransmission is ACKed.
    hooks.t.fail_writes(false);
    let acked = (0..100).any(|_| {
        w.io.inbox.push_back(request(1, ip));
        step_until(&mut w, |w| w.held() == 0);
        std::thread::sleep(Duration::from_millis(20));
        w.step(NOW);
        w.io.sent.iter().any(|s| s.0 == MessageType::Ack)
    });
    assert!(acked, "{:?}", w.io.sent);
}

#[test]
fn without_a_journal_acks_go_at_once() {
    let mut w = worker(None);
    let ip = offer(&mut w, 1);
    w.io.inbox.push_back(request(1, ip));
    w.step(NOW);
    assert_eq!(w.io.sent.last(), Some(&(MessageType::Ack, ip, mac_for(1))));
    assert_eq!(w.held(), 0);
    // Every frame went back: one DISCOVER and one REQUEST, both answered and sent.
    assert_eq!(w.io.released, 0);
}

/// Renewals answered in the XDP program, with the program's maps in memory: the test plays
/// the program (it writes `renewed_ns`, as the program does) and reads the horizons.
mod kernel {
    use super::*;
    use crate::kernel_renew::{KernelRenew, LeaseMap};
    use crate::worker::control::{Command, Query};
    use dhcp_common::renew::{Lease, LeaseKey, Template};
    use std::collections::HashMap;
    use std::sync::atomic::AtomicU64;
    use std::sync::Mutex;

    /// The lease map, and how many times user space wrote an entry.
    #[derive(Debug, Clone, Default)]
    struct MemMaps(Arc<Mutex<HashMap<LeaseKey, Lease>>>, Arc<AtomicU64>);

    impl LeaseMap for MemMaps {
        fn insert(&mut self, key: &LeaseKey, lease: &Lease) -> anyhow::Result<()> {
            self.0.lock().unwrap().insert(*key, *lease);
            self.1.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }

        fn remove(&mut self, key: &LeaseKey) -> bool {
            self.0.lock().unwrap().remove(key).is_some()
        }

        fn get(&self, key: &LeaseKey) -> Option<Lease> {
            self.0.lock().unwrap().get(key).copied()
        }

        fn set_template(&mut self, _: u32, _: &Template) -> anyhow::Result<()> {
            Ok(())
        }
    }

    impl MemMaps {
        fn writes(&self) -> u64 {
            self.1.load(Ordering::SeqCst)
        }

        fn only(&self) -> Option<Lease> {
            let m = self.0.lock().unwrap();
            assert!(m.len() <= 1, "{m:?}");
            m.values().next().copied()
        }

        /// The program answers a renewal now.
        fn renew_now(&self) {
            self.renewed_ago(0);
        }

        /// The program's last renewal was `secs` ago (the map's clock is the real one, the
        /// worker's the test's: set right before the step that reads it).
        fn renewed_ago(&self, secs: u32) {
            let at = dhcp_io::renew::monotonic_ns().saturating_sub(u64::from(secs) * 1_000_000_000);
            self.0.lock().unwrap().values_mut().for_each(|l| l.renewed_ns = at);
        }

        /// Seconds from now (real time) to the map's horizon.
        fn horizon_in(&self) -> i64 {
            let l = self.only().expect("a lease in the map");
            (l.horizon_ns as i64 - dhcp_io::renew::monotonic_ns() as i64) / 1_000_000_000
        }
    }

    /// A worker with the maps in memory and horizons 4 lease times ahead, and client 1 ACKed at
    /// `NOW` through the engine; returns the lease time.
    fn bound(journal: Option<Journal>) -> (Worker<MemIo>, MemMaps, Ipv4Addr, u32) {
        let maps = MemMaps::default();
        let mut w = worker(journal).with_kernel_renew(KernelRenew::new(Box::new(maps.clone()), 0, 1, 4));
        let ip = offer(&mut w, 1);
        w.io.inbox.push_back(request(1, ip));
        assert!(step_until(&mut w, |w| w.held() == 0));
        assert_eq!(w.io.sent.last(), Some(&(MessageType::Ack, ip, mac_for(1))));
        let (_, _, expires) = w.engine.lookup(&client(&w)).expect("bound");
        let lease = (expires - NOW) / 5;
        assert_eq!(expires, NOW + 5 * lease, "held to expiry + 4 lease times");
        assert!((maps.horizon_in() - 5 * lease as i64).abs() <= 2, "{}", maps.horizon_in());
        (w, maps, ip, lease)
    }

    /// Lets the journal's syncs go when dropped (also when an assertion fails: the journal's
    /// threads would wait forever).
    struct Unhold<'a>(&'a crate::journal::tests::TestHooks);

    impl Drop for Unhold<'_> {
        fn drop(&mut self) {
            self.0.hold_syncs(false);
        }
    }

    fn client(w: &Worker<MemIo>) -> dhcp_core::lease::ClientKey {
        w.engine.leases().next().expect("a lease").client
    }

    #[test]
    fn horizons_move_ahead_between_batches_and_reach_the_map_only_once_durable() {
        let dir = TempDir::new("horizon");
        let (journal, hooks) = Journal::open_for_test(&dir.file(), Durability::Fsync, NOW);
        let (mut w, maps, ip, lease) = bound(Some(journal.clone()));
        let key = client(&w);
        // Half a lease time on, renewed in the program: the horizon is far, nothing happens.
        maps.renew_now();
        w.step(NOW + lease / 2);
        assert_eq!(w.engine.lookup(&key).unwrap().2, NOW + 5 * lease);
        // Two lease times on, renewed again: within three lease times of the horizon, the
        // sweep journals a new one, held by the engine at once, raised in the map only once
        // its record is synced.
        let t = NOW + 2 * lease;
        let writes = maps.writes();
        maps.renew_now();
        hooks.t.hold_syncs(true);
        let held = Unhold(&hooks.t);
        w.step(t + 1);
        let horizon = t + 1 + 5 * lease;
        assert_eq!(w.engine.lookup(&key).unwrap().2, horizon);
        for _ in 0..20 {
            w.step(t + 1);
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(maps.writes(), writes, "not raised before durable");
        drop(held);
        let start = Instant::now();
        while maps.writes() == writes && start.elapsed() < Duration::from_secs(10) {
            w.step(t + 1);
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(maps.writes(), writes + 1, "raised once durable");
        // The map's clock is the real one: the new horizon is 5 lease times from now.
        assert!(maps.horizon_in().abs_diff(5 * lease as i64) <= 2, "{}", maps.horizon_in());
        assert_ne!(maps.only().unwrap().renewed_ns, 0, "the program's last renewal kept");
        // No second record while the horizon is far.
        maps.renew_now();
        w.step(t + 2);
        assert_eq!(w.engine.lookup(&key).unwrap().2, horizon);
        // The record is the new horizon: recovery holds the address that long.
        drop(w);
        journal.flush().unwrap();
        drop(journal);
        let (_, rec) = Journal::open(&dir.file(), Durability::Fsync, Duration::from_secs(3600), t + 2).unwrap();
        let held: Vec<_> = rec.leases.iter().map(|r| (r.ip, r.expires)).collect();
        assert_eq!(held, vec![(ip, horizon)]);
    }

    #[test]
    fn a_lease_the_engine_ends_leaves_the_map() {
        let (mut w, maps, _, lease) = bound(None);
        w.step(NOW + 5 * lease + 1);
        assert!(w.engine.leases().next().is_none(), "ended at its horizon");
        assert_eq!(maps.only(), None, "and out of the map");
    }

    #[test]
    fn a_client_that_stopped_renewing_leaves_the_map_and_its_lease_ends_a_lease_time_later() {
        let (mut w, maps, _, lease) = bound(None);
        let key = client(&w);
        maps.renew_now();
        w.step(NOW + lease / 2);
        assert!(maps.only().is_some(), "renewed half a lease time ago: still in the map");
        // A lease time after that renewal, none since.
        let t = NOW + lease / 2 + lease;
        maps.renewed_ago(lease);
        w.step(t);
        assert_eq!(maps.only(), None, "out of the map");
        assert_eq!(w.engine.lookup(&key).unwrap().2, t + lease + 1, "ends a lease time later, not at the horizon");
        w.step(t + lease + 1);
        assert!(w.engine.lookup(&key).is_none_or(|l| l.1 != dhcp_core::lease::LeaseState::Bound));
    }

    fn command(w: &mut Worker<MemIo>, now: u32, cmd: Command) {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        tx.send(cmd).unwrap();
        w.control = Some(control::ControlPort {
            commands: rx,
            published: Default::default(),
            busy_ns: 0,
            turns: 0,
            unpublished: false,
        });
        w.control_turn(now, Duration::ZERO);
    }

    #[test]
    fn an_operator_release_takes_the_lease_out_of_the_map() {
        let (mut w, maps, ip, _) = bound(None);
        let (reply, mut answer) = tokio::sync::oneshot::channel();
        command(&mut w, NOW + 1, Command::Release { ip, reply });
        assert!(answer.try_recv().unwrap().is_some(), "released");
        assert_eq!(maps.only(), None);
    }

    #[test]
    fn the_control_plane_sees_the_last_renewal_in_the_program() {
        let (mut w, maps, ip, lease) = bound(None);
        let look = |w: &mut Worker<MemIo>, now| {
            let (reply, mut answer) = tokio::sync::oneshot::channel();
            command(w, now, Command::Leases { query: Query::Ip(ip), reply });
            answer.try_recv().unwrap()[0]
        };
        let v = look(&mut w, NOW);
        assert_eq!((v.renewed, v.expires), (Some(NOW), NOW + lease), "the ACK's expiry, not the horizon");
        maps.renew_now();
        let later = NOW + lease / 2;
        let v = look(&mut w, later);
        assert_eq!((v.renewed, v.expires), (Some(later), later + lease));
    }
}
