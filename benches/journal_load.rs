//! Load for the journal benchmark: threads appending batches and waiting for each, as workers
//! do, to measure group commits per second with fsync on and off.

use core::net::Ipv4Addr;
use dhcp_user::engine::{EventKind, LeaseEvent};
use dhcp_user::journal::Journal;
use dhcp_user::lease::ClientKey;
use std::time::{Duration, Instant};

/// What [`drive`] measured.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Load {
    pub threads: usize,
    /// `wait` calls (one per batch) and how many returned an error.
    pub waits: u64,
    pub failed_waits: u64,
    pub records: u64,
    pub elapsed: Duration,
    /// fsyncs and writes the journal did meanwhile.
    pub fsyncs: u64,
    pub writes: u64,
}

impl Load {
    pub fn waits_per_sec(&self) -> f64 {
        self.waits as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn records_per_sec(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// `n` `Bound` events for distinct clients numbered from `first` (addresses in 240.0.0.0/8,
/// never on a network), expiring at `expires`.
pub fn bound_events(first: u32, n: usize, expires: u32) -> Vec<LeaseEvent> {
    (0..n as u32)
        .map(|i| {
            let c = first.wrapping_add(i).to_be_bytes();
            let mac = [2, 0, c[0], c[1], c[2], c[3]];
            LeaseEvent {
                kind: EventKind::Bound,
                ip: Ipv4Addr::new(240, c[1], c[2], c[3]),
                client: ClientKey::from_mac(&mac),
                mac,
                expires,
                steer: i,
            }
        })
        .collect()
}

/// `threads` threads each append `batches` batches of `batch` `Bound` events and wait for each
/// batch, like workers before sending their ACKs.
pub fn drive(journal: &Journal, threads: usize, batches: usize, batch: usize, expires: u32) -> Load {
    let before = journal.counters();
    let start = Instant::now();
    let per_thread: Vec<(u64, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let events = bound_events((t * batch) as u32, batch, expires);
                    let (mut waits, mut failed) = (0u64, 0u64);
                    for _ in 0..batches {
                        let ticket = journal.append(&events);
                        waits += 1;
                        failed += journal.wait(ticket).is_err() as u64;
                    }
                    (waits, failed)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or((0, 0))).collect()
    });
    let elapsed = start.elapsed();
    let after = journal.counters();
    Load {
        threads,
        waits: per_thread.iter().map(|x| x.0).sum(),
        failed_waits: per_thread.iter().map(|x| x.1).sum(),
        records: (threads * batches * batch) as u64,
        elapsed,
        fsyncs: after.fsyncs - before.fsyncs,
        writes: after.writes - before.writes,
    }
}
