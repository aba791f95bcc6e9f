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
