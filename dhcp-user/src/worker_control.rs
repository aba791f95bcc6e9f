//! The worker's side of the control plane: counters published once per batch (relaxed atomic
//! stores into an `Arc` the control thread reads, no lock), and commands from the control
//! thread taken between batches from a bounded channel (lease look-ups, an operator's release,
//! a configuration swap), each answered through its own one-shot channel.
//!
//! Must never: block the packet path on the control thread (commands are polled with
//! `try_recv`; only a configuration swap waits, for the other workers, briefly), or take a
//! lock per packet.

use super::{Worker, WorkerReport};
use dhcp_core::engine::{Carried, ClusterStats, LeaseEvent, LeaseView, Shared, Stats};
use dhcp_io::PacketIo;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Fields of [`WorkerReport`] besides the engine's counters, in [`Published`]'s order.
pub const WORKER_COUNTERS: [&str; 4] = ["acks-withheld", "send-failed", "not-mine", "malformed-frames"];

/// One worker's counters as last published: written by the worker only, read by anyone.
#[derive(Debug)]
pub struct Published {
    engine: [AtomicU64; Stats::COUNT],
    cluster: [AtomicU64; ClusterStats::COUNT],
    worker: [AtomicU64; 4],
    /// Nanoseconds spent on batches that received something (the rest is waiting).
    busy_ns: AtomicU64,
    /// Offers, leases and probations held.
    records: AtomicU64,
}

impl Default for Published {
    fn default() -> Published {
        Published {
            engine: std::array::from_fn(|_| AtomicU64::new(0)),
            cluster: std::array::from_fn(|_| AtomicU64::new(0)),
            worker: std::array::from_fn(|_| AtomicU64::new(0)),
            busy_ns: AtomicU64::new(0),
            records: AtomicU64::new(0),
        }
    }
}

impl Published {
    fn store(&self, r: &WorkerReport, busy_ns: u64, records: usize) {
        for (a, (_, v)) in self.engine.iter().zip(r.engine.named()) {
            a.store(v, Ordering::Relaxed);
        }
        for (a, (_, v)) in self.cluster.iter().zip(r.cluster.named()) {
            a.store(v, Ordering::Relaxed);
        }
        let w = [r.acks_withheld, r.send_failed, r.not_mine, r.malformed_frames];
        for (a, v) in self.worker.iter().zip(w) {
            a.store(v, Ordering::Relaxed);
        }
        self.busy_ns.store(busy_ns, Ordering::Relaxed);
        self.records.store(records as u64, Ordering::Relaxed);
    }

    /// The engine's counters, in [`Stats::named`] order.
    pub fn engine(&self) -> [u64; Stats::COUNT] {
        std::array::from_fn(|i| self.engine[i].load(Ordering::Relaxed))
    }

    /// The engine's cluster counters, in [`ClusterStats::named`] order.
    pub fn cluster(&self) -> [u64; ClusterStats::COUNT] {
        std::array::from_fn(|i| self.cluster[i].load(Ordering::Relaxed))
    }

    /// The worker's own counters, in [`WORKER_COUNTERS`] order.
    pub fn worker(&self) -> [u64; 4] {
        std::array::from_fn(|i| self.worker[i].load(Ordering::Relaxed))
    }

    pub fn busy(&self) -> Duration {
        Duration::from_nanos(self.busy_ns.load(Ordering::Relaxed))
    }

    pub fn records(&self) -> u64 {
        self.records.load(Ordering::Relaxed)
    }
}

/// Which records a look-up wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Query {
    Ip(Ipv4Addr),
    Mac([u8; 6]),
    Client(dhcp_core::lease::ClientKey),
    /// Addresses in `network/prefix` above `after`, at most `limit` of them.
    Subnet {
        network: u32,
        mask: u32,
        after: u32,
        limit: usize,
    },
}

impl Query {
    fn matches(&self, l: &LeaseView) -> bool {
        match *self {
            Query::Ip(ip) => l.ip == ip,
            Query::Mac(mac) => l.mac == Some(mac),
            Query::Client(k) => l.client == k || l.client == k.moving(),
            Query::Subnet { network, mask, after, .. } => {
                let ip = u32::from(l.ip);
                ip & mask == network && ip > after
            }
        }
    }
}

/// A configuration swap all workers take part in: each stops at a batch boundary, waits for
/// the others (nobody uses the old address space any more), rebuilds its engine over the new
/// configuration, waits again (nobody serves from the new space before all records are in it).
#[derive(Debug)]
pub struct Swap {
    pub shared: Arc<Shared>,
    workers: u32,
    arrived: AtomicU32,
    rebuilt: AtomicU32,
    /// Records carried over, summed over workers.
    pub carried: Mutex<Carried>,
    /// Longest pause of a worker, in nanoseconds.
    pub pause_ns: AtomicU64,
}

impl Swap {
    pub fn new(shared: Arc<Shared>, workers: u32) -> Swap {
        Swap {
            shared,
            workers,
            arrived: AtomicU32::new(0),
            rebuilt: AtomicU32::new(0),
            carried: Mutex::new(Carried::default()),
            pause_ns: AtomicU64::new(0),
        }
    }
}

/// Waits until `count` reaches `n`; `false` if the server stops meanwhile.
fn meet(count: &AtomicU32, n: u32, stop: &AtomicBool) -> bool {
    count.fetch_add(1, Ordering::AcqRel);
    let started = Instant::now();
    while count.load(Ordering::Acquire) < n {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        if started.elapsed() < Duration::from_micros(200) {
            std::hint::spin_loop();
        } else {
            std::thread::sleep(Duration::from_micros(20));
        }
    }
    true
}

/// What the control thread asks of a worker.
#[derive(Debug)]
pub enum Command {
    Leases {
        query: Query,
        reply: oneshot::Sender<Vec<LeaseView>>,
    },
    /// Free the lease on this address (if this worker holds it) as a RELEASE would; the reply
    /// carries the journal ticket that covers the change.
    Release {
        ip: Ipv4Addr,
        reply: oneshot::Sender<Option<crate::journal::Ticket>>,
    },
    Swap {
        swap: Arc<Swap>,
        done: oneshot::Sender<()>,
    },
    /// Other cluster nodes' lease events for clients of this worker (`crate::cluster`).
    Adopt(Vec<LeaseEvent>),
}

/// The worker's end of the control plane.
#[derive(Debug)]
pub(super) struct ControlPort {
    pub(super) commands: Receiver<Command>,
    pub(super) published: Arc<Published>,
    pub(super) busy_ns: u64,
    pub(super) turns: u32,
    /// A busy turn changed the counters since they were last published.
    pub(super) unpublished: bool,
}

impl<I: PacketIo> Worker<I> {
    /// Connects the worker to the control plane: it publishes its counters to `published` and
    /// takes commands from `commands`.
    pub fn with_control(mut self, commands: Receiver<Command>, published: Arc<Published>) -> Self {
        self.control = Some(ControlPort { commands, published, busy_ns: 0, turns: 0, unpublished: false });
        self
    }

    /// The doorbell that wakes this worker (the control thread rings it with a command).
    pub fn bell(&self) -> Arc<dhcp_io::sys::Doorbell> {
        self.gate.bell.clone()
    }

    /// Between batches: publishes the counters (after `busy` more time at work) and runs the
    /// commands waiting. Under load only every eighth turn does either (a turn lasts a few
    /// microseconds; publishing is some fifty stores), and the first idle turn after it.
    pub(super) fn control_turn(&mut self, now: u32, busy: Duration) {
        let Some(port) = &mut self.control else { return };
        port.busy_ns += busy.as_nanos() as u64;
        port.turns = port.turns.wrapping_add(1);
        port.unpublished |= !busy.is_zero();
        let due = busy.is_zero() || port.turns % 8 == 0;
        // Idle turns change little (timeouts): published now and then only.
        if (port.unpublished && due) || port.turns % 64 == 0 {
            port.unpublished = false;
            let (report, records) = (self.report(), self.engine.records());
            if let Some(port) = &self.control {
                port.published.store(&report, port.busy_ns, records);
            }
        }
        if !due {
            return;
        }
        loop {
            let cmd = match self.control.as_ref().map(|p| p.commands.try_recv()) {
                Some(Ok(cmd)) => cmd,
                Some(Err(TryRecvError::Empty | TryRecvError::Disconnected)) | None => return,
            };
            self.run_command(now, cmd);
        }
    }

    fn run_command(&mut self, now: u32, cmd: Command) {
        match cmd {
            Command::Leases { query, reply } => {
                let mut found: Vec<LeaseView> = self.engine.leases().filter(|l| query.matches(l)).collect();
                if let Some(k) = &self.kernel {
                    found.iter_mut().for_each(|l| k.view(now, l));
                }
                if let Query::Subnet { limit, .. } = query {
                    found.sort_unstable_by_key(|l| u32::from(l.ip));
                    found.truncate(limit);
                }
                let _ = reply.send(found);
            }
            Command::Release { ip, reply } => {
                if let Some(k) = &mut self.kernel {
                    k.forget_ip(ip);
                }
                let released = self.engine.release_ip(ip, &mut self.events);
                let ticket = self.append_events();
                let _ = reply.send(released.then_some(ticket));
            }
            Command::Swap { swap, done } => {
                self.swap(now, &swap);
                let _ = done.send(());
            }
            Command::Adopt(events) => {
                for e in &events {
                    // Refusals are counted by the engine (cluster-adopt-refused).
                    let _ = self.engine.adopt_lease(now, e, &mut self.events);
                }
                self.append_events();
            }
        }
    }

    /// Takes part in a configuration swap (see [`Swap`]).
    fn swap(&mut self, now: u32, swap: &Swap) {
        let started = Instant::now();
        // What is due ends under the old configuration, with its events journaled.
        self.engine.handle_timeout(now, &mut self.events);
        // The program renews nothing under the old configuration while the engine changes.
        if let Some(k) = &mut self.kernel {
            k.forget_all();
        }
        if !meet(&swap.arrived, swap.workers, &self.stop) {
            return;
        }
        let (engine, carried) = self.engine.rebuild(swap.shared.clone(), now);
        // Freed after the pause: nobody waits for the old table's memory to be given back.
        let old = std::mem::replace(&mut self.engine, engine);
        if let Ok(mut c) = swap.carried.lock() {
            c.kept += carried.kept;
            c.outside += carried.outside;
            c.dropped += carried.dropped;
        }
        meet(&swap.rebuilt, swap.workers, &self.stop);
        swap.pause_ns.fetch_max(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        drop(old);
    }
}
