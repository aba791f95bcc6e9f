//! The generator over an in-memory transport that answers with the reflector: the whole
//! request/reply loop, timeouts and checks, without a network or root.

use super::gen::{run, RunConfig, RunOutcome, Scenario};
use super::reflector::{answer, ReflectorConfig};
use super::transport::{Framing, Transport, TransportStats, Tx};
use std::collections::VecDeque;
use std::io;
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
