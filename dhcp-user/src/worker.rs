//! worker: one worker thread of the socket path. It owns its [`Engine`] (no locks) and its
//! sockets, and loops: receive a batch, run each message through the engine, make the batch's
//! lease changes durable (one journal wait per batch), send the replies.
//!
//! An ACK leaves only after the lease change it depends on is durable; while the journal
//! cannot write (disk full), ACKs are withheld and counted: no address is handed out that was
//! not recorded.

use crate::engine::{Engine, Ingress, InterfaceId, LeaseEvent, Outcome, Seconds, Stats};
use crate::journal::Journal;
use crate::udp::{pollfd, wait_readable, Batch, Port, BATCH};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Wall-clock seconds since the UNIX epoch.
pub fn unix_now() -> Seconds {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as Seconds).unwrap_or(0)
}

/// What a worker did, reported when it stops.
#[derive(Debug, Clone, Copy, Default)]
pub struct WorkerReport {
    pub engine: Stats,
    /// ACKs not sent because their lease changes could not be made durable.
    pub acks_withheld: u64,
    /// Replies the kernel refused (full buffer, no route).
    pub send_failed: u64,
    /// Broadcast copies left to the worker that owns the client.
    pub not_mine: u64,
}

/// One worker of the socket path.
#[derive(Debug)]
pub struct UdpWorker {
    /// This worker's number: the shard of clients it owns.
    pub id: usize,
    pub engine: Engine,
    /// This worker's socket on each interface, with the interface's number in the
    /// configuration (`None` for relay-only interfaces).
    pub ports: Vec<(Option<InterfaceId>, Port)>,
    pub journal: Option<Journal>,
    pub stop: Arc<AtomicBool>,
}

impl UdpWorker {
    /// Serves until `stop` is set; returns the counters.
    pub fn run(mut self) -> WorkerReport {
        let mut report = WorkerReport::default();
        let mut batch = Batch::default();
        let mut events: Vec<LeaseEvent> = Vec::with_capacity(4 * BATCH);
        let mut pfds: Vec<libc::pollfd> = self.ports.iter().map(|(_, p)| pollfd(p.udp.as_raw_fd())).collect();
        let shared = self.engine.shared().clone();
        while !self.stop.load(Ordering::Relaxed) {
            // Wake at least every 200 ms: deadlines are handled every second and stop is seen.
            if let Err(e) = wait_readable(&mut pfds, 200) {
                eprintln!("xdhcpd: poll failed: {e}");
                break;
            }
            let now = unix_now();
            self.engine.handle_timeout(now, &mut events);
            for (k, (iface, port)) in self.ports.iter().enumerate() {
                if pfds[k].revents & libc::POLLIN == 0 {
                    continue;
                }
                loop {
                    let n = match batch.receive(port.udp.as_raw_fd()) {
                        Ok(n) => n,
                        Err(e) => {
                            eprintln!("xdhcpd: receive on {} failed: {e}", port.interface);
                            0
                        }
                    };
                    if n == 0 {
                        break;
                    }
                    let mut commits = 0;
                    for i in 0..n {
                        let ingress = Ingress { interface: *iface, vlan: None, src: batch.rx_from[i] };
                        let msg = &batch.rx[i][..batch.rx_len[i]];
                        // The kernel hands a broadcast to every socket of the group, not only to
                        // the one the BPF program would pick: each worker keeps its own clients.
                        if shared.worker_of(msg) != self.id {
                            batch.tx_meta[i] = None;
                            report.not_mine += 1;
                            continue;
                        }
                        batch.tx_meta[i] = match self.engine.handle(now, &ingress, msg, &mut batch.tx[i], &mut events) {
                            Outcome::Reply(r) => {
                                commits += r.commit as usize;
                                Some((r.len, r.to, r.from, r.commit))
                            }
                            _ => None,
                        };
                    }
                    if let Some(j) = &self.journal {
                        if !events.is_empty() {
                            let ticket = j.append(&events);
                            if commits > 0 && j.wait(ticket).is_err() {
                                for m in batch.tx_meta[..n].iter_mut() {
                                    if m.is_some_and(|(_, _, _, commit)| commit) {
                                        *m = None;
                                        report.acks_withheld += 1;
                                    }
                                }
                            }
                        }
                    }
                    events.clear();
                    let replies = batch.tx_meta[..n].iter().filter(|m| m.is_some()).count();
                    let sent = batch.send(port, n);
                    report.send_failed += (replies - sent) as u64;
                    if n < BATCH {
                        break;
                    }
                }
            }
            // Ends of offers, leases and probations found by this pass.
            if !events.is_empty() {
                if let Some(j) = &self.journal {
                    j.append(&events);
                }
                events.clear();
            }
        }
        report.engine = *self.engine.stats();
        report
    }
}
