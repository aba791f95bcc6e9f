//! The generator over an in-memory transport that answers with the reflector: the whole
//! request/reply loop, timeouts and checks, without a network or root.

use super::gen::{run, RunConfig, RunOutcome, Scenario};
use super::reflector::{answer, ReflectorConfig};
use super::transport::{Framing, Transport, TransportStats, Tx};
use dhcp_core::wire::dhcp::{DhcpPacket, DhcpWriter, Op};
use dhcp_core::wire::options::{code, MessageType};
use std::collections::VecDeque;
use std::io;
use std::net::Ipv4Addr;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// Frames sent are answered at once by the reflector's code; every `lose`-th request is lost.
struct Loopback {
    replies: VecDeque<Vec<u8>>,
    cfg: ReflectorConfig,
    lose: Option<u64>,
    requests: u64,
}

const MAC: [u8; 6] = [2, 0xaa, 0, 0, 0, 1];

impl Transport for Loopback {
    fn framing(&self) -> Framing {
        Framing::Ethernet
    }

    fn mac(&self) -> Option<[u8; 6]> {
        Some(MAC)
    }

    fn send<F: FnMut(&mut [u8]) -> Option<Tx>>(&mut self, max: usize, mut fill: F) -> io::Result<usize> {
        let mut n = 0;
        while n < max {
            let mut buf = vec![0u8; 2048];
            let Some(tx) = fill(&mut buf) else { break };
            n += 1;
            self.requests += 1;
            if self.lose.is_some_and(|k| self.requests.is_multiple_of(k)) {
                continue;
            }
            if let Some(len) = answer(&mut buf, tx.len, MAC, &self.cfg) {
                buf.truncate(len);
                self.replies.push_back(buf);
            }
        }
        Ok(n)
    }

    fn recv<F: FnMut(&[u8])>(&mut self, mut each: F) -> io::Result<usize> {
        let n = self.replies.len().min(64);
        for f in self.replies.drain(..n) {
            each(&f);
        }
        Ok(n)
    }

    fn reflect<F: FnMut(&mut [u8], usize) -> Option<usize>>(&mut self, _: F) -> io::Result<(usize, usize)> {
        Ok((0, 0))
    }

    fn wait(&mut self, timeout: Duration) -> io::Result<()> {
        std::thread::sleep(timeout.min(Duration::from_millis(1)));
        Ok(())
    }

    fn pending(&self) -> bool {
        false
    }

    fn stats(&mut self) -> TransportStats {
        TransportStats::default()
    }
}

fn go(cfg: RunConfig, pool_size: u32, lose: Option<u64>) -> RunOutcome {
    let mut t = Loopback {
        replies: VecDeque::new(),
        cfg: ReflectorConfig { pool_size, ..ReflectorConfig::default() },
        lose,
        requests: 0,
    };
    run(&cfg, &mut t, &AtomicBool::new(false), |_, _| {}).unwrap()
}

fn consistent(o: &RunOutcome) {
    for (k, e) in &o.exchanges {
        assert_eq!(e.received + e.drops, e.sent, "{}: {e:?}", k.name());
        assert_eq!(e.latency.count(), e.received);
    }
    let ra = &o.exchanges[1].1;
    assert_eq!(ra.received - ra.naks, o.counters.leases);
}

#[test]
fn dora_runs_the_count_asked_and_every_client_keeps_its_address() {
    let cfg = RunConfig { clients: 100, exchanges: Some(1000), duration: None, window: 16, ..RunConfig::default() };
    let o = go(cfg, 1 << 20, None);
    consistent(&o);
    assert_eq!(o.counters.initiated, 1000);
    assert_eq!(o.counters.leases, 1000);
    assert_eq!(o.unique_addresses, 100);
    assert_eq!(o.served, 100);
    assert_eq!((o.counters.duplicate_acks, o.counters.unexpected(), o.counters.drops), (0, 0, 0));
}

#[test]
fn losses_are_dropped_then_retransmitted() {
    let cfg = RunConfig {
        clients: 50,
        exchanges: Some(200),
        duration: None,
        window: 8,
        timeout: Duration::from_millis(20),
        ..RunConfig::default()
    };
    let o = go(cfg, 1 << 20, Some(7));
    consistent(&o);
    assert!(o.counters.drops > 0 && o.counters.retransmissions > 0, "{:?}", o.counters);
    assert_eq!(o.counters.duplicate_acks, 0);
}

#[test]
fn one_address_for_everyone_is_a_duplicate() {
    let cfg = RunConfig { clients: 10, exchanges: Some(10), duration: None, window: 1, ..RunConfig::default() };
    let o = go(cfg, 1, None);
    consistent(&o);
    assert_eq!(o.counters.leases, 10);
    assert_eq!(o.counters.duplicate_acks, 9, "{:?}", o.counters);
    assert_eq!(o.duplicates.len(), 9);
    assert_eq!(o.unique_addresses, 1);
}

#[test]
fn foreign_probes_and_once_through_scenarios_end_by_themselves() {
    let cfg = RunConfig {
        scenario: Scenario::Foreign,
        clients: 40,
        foreign_share: 0.25,
        duration: None,
        ..RunConfig::default()
    };
    let o = go(cfg, 1 << 20, None);
    consistent(&o);
    assert_eq!(o.foreign_clients, 10);
    assert_eq!(o.counters.foreign_requests, 10);
    assert_eq!(o.probes, 10);
    // The reflector holds nothing: every probe is offered an address.
    assert_eq!(o.counters.probes_offered, 10);
    assert_eq!(o.counters.leases, 30);

    let cfg = RunConfig {
        scenario: Scenario::Avalanche,
        clients: 500,
        window: u32::MAX,
        duration: None,
        ..RunConfig::default()
    };
    let o = go(cfg, 1 << 20, None);
    consistent(&o);
    assert_eq!((o.served, o.starved), (500, 0));
}

#[test]
fn renew_inform_release_decline_follow_their_leases() {
    for (scenario, kind) in [(Scenario::Renew, 2usize), (Scenario::Inform, 3)] {
        let cfg =
            RunConfig { scenario, clients: 10, exchanges: Some(50), duration: None, window: 4, ..RunConfig::default() };
        let o = go(cfg, 1 << 20, None);
        consistent(&o);
        assert_eq!(o.counters.leases, 10, "{scenario:?}");
        assert_eq!(o.exchanges[kind].1.received, 40, "{scenario:?}");
    }
    let cfg = RunConfig {
        scenario: Scenario::Release,
        clients: 10,
        exchanges: Some(30),
        duration: None,
        ..RunConfig::default()
    };
    let o = go(cfg, 1 << 20, None);
    consistent(&o);
    assert_eq!((o.counters.leases, o.counters.releases), (30, 30));
    let cfg = RunConfig {
        scenario: Scenario::Decline,
        clients: 10,
        exchanges: Some(30),
        duration: None,
        ..RunConfig::default()
    };
    let o = go(cfg, 1 << 20, None);
    consistent(&o);
    assert_eq!(o.counters.declines, 30);
    // The reflector offers each client its one address again: declined, offered again.
    assert!(o.counters.declined_reoffered > 0);
}

/// A relay-mode server in memory for `starvation`: each DISCOVER is offered an address from a
/// pool of `pool` addresses, held for its hardware address for good (offers never time out);
/// each REQUEST of a held address is ACKed; option 82 is echoed. Any flood empties it.
struct HoldingServer {
    replies: VecDeque<Vec<u8>>,
    pool: u32,
    held: std::collections::HashMap<[u8; 16], u32>,
}

impl HoldingServer {
    fn new(pool: u32) -> HoldingServer {
        HoldingServer { replies: VecDeque::new(), pool, held: std::collections::HashMap::new() }
    }

    fn answer(&mut self, msg: &[u8]) -> Option<Vec<u8>> {
        let p = DhcpPacket::new_checked(msg).ok()?;
        let opts = p.parse_options().ok()?;
        let mut scratch = [0u8; 256];
        let relay_info = opts.value(code::RELAY_AGENT_INFO, &mut scratch).ok()??.to_vec();
        let next = self.held.len() as u32;
        let reply = match (opts.message_type()?, self.held.get(p.chaddr()).copied()) {
            (MessageType::Discover, Some(a)) => (MessageType::Offer, a),
            (MessageType::Discover, None) if next < self.pool => {
                self.held.insert(*p.chaddr(), next);
                (MessageType::Offer, next)
            }
            (MessageType::Request, Some(a)) => (MessageType::Ack, a),
            _ => return None,
        };
        let mut out = vec![0u8; 600];
        let mut w = DhcpWriter::new(&mut out, 600).ok()?;
        {
            let mut h = w.header();
            h.set_op(Op::Reply);
            h.set_htype(1);
            h.set_hlen(6);
            h.set_xid(p.xid());
            h.set_giaddr(p.giaddr());
            h.set_yiaddr(Ipv4Addr::from(0x6440_0000 + reply.1));
            h.set_chaddr(p.chaddr());
        }
        w.option_u8(code::MESSAGE_TYPE, reply.0 as u8).ok()?;
        w.option_ip(code::SERVER_ID, Ipv4Addr::new(198, 18, 0, 1)).ok()?;
        w.option_u32(code::LEASE_TIME, 3600).ok()?;
        w.option(code::RELAY_AGENT_INFO, &relay_info).ok()?;
        let len = w.finish();
        out.truncate(len);
        Some(out)
    }
}

impl Transport for HoldingServer {
    fn framing(&self) -> Framing {
        Framing::Udp
    }

    fn mac(&self) -> Option<[u8; 6]> {
        None
    }

    fn send<F: FnMut(&mut [u8]) -> Option<Tx>>(&mut self, max: usize, mut fill: F) -> io::Result<usize> {
        let mut buf = [0u8; 1536];
        let mut n = 0;
        while n < max {
            let Some(tx) = fill(&mut buf) else { break };
            n += 1;
            if let Some(r) = self.answer(&buf[..tx.len]) {
                self.replies.push_back(r);
            }
        }
        Ok(n)
    }

    fn recv<F: FnMut(&[u8])>(&mut self, mut each: F) -> io::Result<usize> {
        let n = self.replies.len().min(64);
        for r in self.replies.drain(..n) {
            each(&r);
        }
        Ok(n)
    }

    fn reflect<F: FnMut(&mut [u8], usize) -> Option<usize>>(&mut self, _: F) -> io::Result<(usize, usize)> {
        Ok((0, 0))
    }

    fn wait(&mut self, timeout: Duration) -> io::Result<()> {
        std::thread::sleep(timeout.min(Duration::from_millis(1)));
        Ok(())
    }

    fn pending(&self) -> bool {
        false
    }

    fn stats(&mut self) -> TransportStats {
        TransportStats::default()
    }
}

/// `starvation` over a pool of 30 for 20 clients: the flood's replies are counted apart (the
/// clients' counts hold only their own messages), what the flood got fits the pool, every
/// client is served, starved or not reached; without a flood every client is served.
#[test]
fn starvation_counts_the_flood_apart_from_the_clients() {
    let relay = RunConfig {
        scenario: Scenario::Starvation,
        clients: 20,
        rate: Some(200.0),
        window: u32::MAX,
        duration: Some(Duration::from_millis(300)),
        timeout: Duration::from_millis(50),
        relays: vec![Ipv4Addr::new(198, 18, 2, 1)],
        server: Some(Ipv4Addr::new(198, 18, 0, 1)),
        flood_rate: 20_000.0,
        ..RunConfig::default()
    };
    for flood_rate in [20_000.0, 0.0] {
        let cfg = RunConfig { flood_rate, ..relay.clone() };
        let mut t = HoldingServer::new(30);
        let o = run(&cfg, &mut t, &AtomicBool::new(false), |_, _| {}).unwrap();
        consistent(&o);
        let c = &o.counters;
        assert_eq!(o.served + o.unserved + o.unreached, 20, "{o:?}");
        assert_eq!(
            c.sent,
            o.exchanges.iter().map(|(_, e)| e.sent).sum::<u64>(),
            "no flood DISCOVER among the clients'"
        );
        assert_eq!((c.unexpected(), c.relay_info_mismatch, c.duplicate_acks), (0, 0, 0), "{c:?}");
        assert_eq!((c.flood_unexpected, c.flood_offers_of_leased), (0, 0), "{c:?}");
        // Paced: never more than the rate allows over the run (and its first burst).
        assert!(c.flood_discovers as f64 <= flood_rate * o.run_secs + 64.0, "{c:?} in {} s", o.run_secs);
        assert!(c.flood_offers <= c.flood_discovers.min(30), "{c:?}");
        assert_eq!(o.served as usize + c.flood_offers as usize, t.held.len(), "{c:?}");
        if flood_rate > 0.0 {
            assert!(c.flood_discovers > 0 && c.flood_offers > 0, "{c:?}");
        } else {
            assert_eq!((o.served, c.flood_discovers), (20, 0), "{o:?}");
        }
    }
}

/// The restart avalanche: the leases one run kept are the next run's INIT-REBOOTs, each
/// ACKed with its own address; a lost request is sent again with back-off until served.
#[test]
fn leases_kept_by_one_run_are_rebooted_by_the_next() {
    let cfg = RunConfig {
        scenario: Scenario::Exhaustion,
        clients: 300,
        first_client: 1000,
        duration: None,
        record_leases: true,
        ..RunConfig::default()
    };
    let o = go(cfg, 1 << 20, None);
    assert_eq!(o.leases.len(), 300);
    assert!(o.leases.iter().all(|l| (1000..1300).contains(&l.0)));
    // A sparse file: every other client holds its lease; the rest stay quiet.
    let leases_in: Vec<_> = o.leases.iter().copied().step_by(2).collect();
    let cfg = RunConfig {
        scenario: Scenario::Avalanche,
        clients: 300,
        first_client: 1000,
        window: u32::MAX,
        timeout: Duration::from_millis(20),
        duration: None,
        tries: 6,
        leases_in: leases_in.clone(),
        record_leases: true,
        ..RunConfig::default()
    };
    let o = go(cfg, 1 << 20, Some(7));
    assert_eq!(o.served, 150);
    assert_eq!((o.unserved, o.counters.naks, o.counters.reboot_moved), (0, 0, 0));
    assert!(o.counters.retransmissions > 0, "every 7th request was lost and sent again");
    assert_eq!(o.exchanges[5].1.received, 150);
    assert_eq!(o.leases, leases_in);
}
