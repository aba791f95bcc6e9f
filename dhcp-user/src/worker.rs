//! worker: one worker thread, the same loop on every packet path. It owns its [`Engine`] (no
//! locks) and its path's sockets (a [`PacketIo`]), and loops: receive a batch, run each message
//! through the engine, append the batch's lease changes to the journal, send the replies that
//! need nothing durable at once, and hold the others at the commit gate until the journal says
//! their records are on disk, receiving meanwhile.
//!
//! Must never: send an ACK before the lease change it depends on is durable (while the journal
//! cannot write, such ACKs are withheld and counted: no address is handed out unrecorded);
//! block on the journal; allocate per packet; or take a lock per packet.

use crate::journal::{Commit, Journal, Ticket};
use dhcp_core::engine::{ClusterStats, Engine, Ingress, LeaseEvent, Outcome, Stats};
use dhcp_io::sys::Doorbell;
use dhcp_io::{PacketIo, Transmit, Unusable, BATCH, MAX_MESSAGE};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a worker did, reported when it stops.
#[derive(Debug, Clone, Copy, Default)]
pub struct WorkerReport {
    pub engine: Stats,
    /// The engine's cluster counters (all zero alone).
    pub cluster: ClusterStats,
    /// ACKs not sent because their lease changes could not be made durable.
    pub acks_withheld: u64,
    /// Replies the kernel refused (full buffer, no route) or that did not fit the frame.
    pub send_failed: u64,
    /// Broadcast copies left to the worker that owns the client.
    pub not_mine: u64,
    /// Frames on the XDP path that were not valid UDP/IPv4 (bad checksum, truncated).
    pub malformed_frames: u64,
}

impl WorkerReport {
    /// Adds another worker's counters.
    pub fn add(&mut self, o: &WorkerReport) {
        self.engine.add(&o.engine);
        self.cluster.add(&o.cluster);
        self.acks_withheld += o.acks_withheld;
        self.send_failed += o.send_failed;
        self.not_mine += o.not_mine;
        self.malformed_frames += o.malformed_frames;
    }
}

/// How a worker behaves when no packet waits.
#[derive(Debug, Clone, Copy)]
pub struct Idle {
    /// Never sleep: spin on the rings (lowest latency, one busy core per worker).
    pub busy_poll: bool,
    /// How long to keep polling before sleeping: waking a sleeping thread costs tens to
    /// hundreds of microseconds in a VM, which showed as the p99 latency at moderate rates; 64
    /// µs of spinning removed most of it (see BENCHMARKS.md).
    pub spin: Duration,
    /// Longest sleep: timeouts are handled every second and the stop flag is seen.
    pub sleep: Duration,
}

impl Default for Idle {
    fn default() -> Idle {
        Idle { busy_poll: false, spin: Duration::from_micros(64), sleep: Duration::from_millis(100) }
    }
}

/// Replies that wait for the journal: in append order, each with the ticket that covers its
/// lease change. The one commit gate of the server.
#[derive(Debug)]
struct CommitGate<F> {
    held: VecDeque<(Ticket, F)>,
    /// Rung by the journal when its durable point moves.
    bell: Arc<Doorbell>,
}

impl<F> CommitGate<F> {
    fn hold(&mut self, ticket: Ticket, frames: &mut Vec<F>) {
        self.held.extend(frames.drain(..).map(|f| (ticket, f)));
    }

    /// Whether the oldest held reply can leave the gate (sent or withheld).
    fn ready(&self, journal: &Journal) -> bool {
        self.held.front().is_some_and(|&(ticket, _)| !matches!(journal.check(ticket), Commit::Pending))
    }

    /// Moves the replies whose records are durable to `send`, and those that cannot be made
    /// durable to `withheld`; the rest stay.
    fn open(&mut self, journal: &Journal, send: &mut Vec<F>, withheld: &mut Vec<F>) {
        while let Some(&(ticket, _)) = self.held.front() {
            let to = match journal.check(ticket) {
                Commit::Durable => &mut *send,
                Commit::Failed(_) => &mut *withheld,
                Commit::Pending => return,
            };
            if let Some((_, f)) = self.held.pop_front() {
                to.push(f);
            }
        }
    }
}

/// One worker over packet path `I`.
#[derive(Debug)]
pub struct Worker<I: PacketIo> {
    /// This worker's number: the clients it owns (`dhcp_common::owner`).
    id: u32,
    workers: u32,
    /// The steering hash's key (the engine's configuration holds it).
    key: u32,
    engine: Engine,
    io: I,
    journal: Option<Journal>,
    gate: CommitGate<I::Frame>,
    stop: Arc<AtomicBool>,
    idle: Idle,
    report: WorkerReport,
    rx: Vec<I::Frame>,
    /// The batch's warmed client lookups (`Engine::warm`).
    warmed: Vec<u64>,
    /// Replies to send now, replies that need the journal, and frames to give back.
    now: Vec<I::Frame>,
    durable: Vec<I::Frame>,
    done: Vec<I::Frame>,
    events: Vec<LeaseEvent>,
    scratch: Box<[u8; MAX_MESSAGE]>,
    /// Commands and published counters, when a control plane runs.
    control: Option<control::ControlPort>,
    /// Renewals answered in the XDP program: this worker's side (`None`: off).
    kernel: Option<crate::kernel_renew::KernelRenew>,
}

impl<I: PacketIo> Worker<I> {
    /// Worker `id` of `workers`, serving through `io`.
    pub fn new(
        id: u32,
        workers: u32,
        engine: Engine,
        io: I,
        journal: Option<Journal>,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<Self> {
        let bell = Arc::new(Doorbell::new()?);
        if let Some(j) = &journal {
            j.subscribe(bell.clone());
        }
        Ok(Worker {
            id,
            workers,
            key: engine.shared().steering_key(),
            engine,
            io,
            journal,
            gate: CommitGate { held: VecDeque::new(), bell },
            stop,
            idle: Idle::default(),
            report: WorkerReport::default(),
            rx: Vec::with_capacity(BATCH),
            warmed: Vec::with_capacity(BATCH),
            now: Vec::with_capacity(BATCH),
            durable: Vec::with_capacity(BATCH),
            done: Vec::with_capacity(BATCH),
            events: Vec::with_capacity(4 * BATCH),
            scratch: Box::new([0; MAX_MESSAGE]),
            control: None,
            kernel: None,
        })
    }

    /// Puts the leases this worker ACKs in the XDP program's renewal map.
    pub fn with_kernel_renew(mut self, k: crate::kernel_renew::KernelRenew) -> Self {
        self.kernel = Some(k);
        self
    }

    pub fn with_idle(mut self, idle: Idle) -> Self {
        self.idle = idle;
        self
    }

    /// Serves until the stop flag is set; returns the counters, and the path so that the
    /// caller decides when its sockets close (after the XDP program is detached).
    pub fn run(mut self) -> (WorkerReport, I) {
        // One clock read per turn: a turn starts when the last one ended.
        let (mut clock, mut started) = (crate::clock::Coarse::default(), Instant::now());
        let mut idle_since: Option<Instant> = None;
        while !self.stop.load(Ordering::Relaxed) {
            let now = clock.unix(started);
            let got = self.step(now);
            let ended = Instant::now();
            let busy = if got > 0 { ended - started } else { Duration::ZERO };
            self.control_turn(now, busy);
            started = ended;
            if got > 0 {
                idle_since = None;
            } else if self.should_sleep(ended - *idle_since.get_or_insert(ended)) {
                self.sleep();
                idle_since = None;
                started = Instant::now();
            }
        }
        self.finish()
    }

    /// One turn of the loop at `now` without sleeping: timeouts, one batch, the held replies
    /// that became durable. Returns how many datagrams it received.
    pub fn step(&mut self, now: u32) -> usize {
        self.engine.handle_timeout(now, &mut self.events);
        let got = self.serve_batch(now);
        self.open_gate();
        if let Some(k) = &mut self.kernel {
            k.raise(now, self.journal.as_ref());
        }
        got
    }

    /// Replies held at the commit gate.
    pub fn held(&self) -> usize {
        self.gate.held.len()
    }

    pub fn report(&self) -> WorkerReport {
        WorkerReport { engine: *self.engine.stats(), cluster: *self.engine.cluster_stats(), ..self.report }
    }

    /// Sleeps until a packet comes, a held reply's record is durable (the journal rings the
    /// bell only while it is armed: a busy worker costs it no system call), a command comes, or
    /// the idle period ends.
    fn sleep(&mut self) {
        let bell = &self.gate.bell;
        bell.arm();
        // A record made durable before the arm was seen by the journal was not rung for.
        if !self.journal.as_ref().is_some_and(|j| self.gate.ready(j)) {
            self.io.wait(self.idle.sleep, Some(bell));
        }
        bell.disarm();
    }

    /// Idle: sleep after spinning a while (under load the next batch is microseconds away),
    /// unless asked to spin always.
    fn should_sleep(&self, idle: Duration) -> bool {
        !self.idle.busy_poll && idle > self.idle.spin
    }

    /// Receives one batch and answers it (sending is [`Worker::open_gate`]'s); returns how
    /// many it received.
    fn serve_batch(&mut self, now: u32) -> usize {
        let got = self.io.receive(&mut self.rx, BATCH);
        let mut rx = std::mem::take(&mut self.rx);
        // The batch's client lookups warmed first, in two stages, so that their cache misses
        // overlap instead of adding up one frame after another.
        for frame in rx.iter_mut() {
            if let Some(w) = self.io.peek(frame).and_then(|msg| self.engine.warm(msg)) {
                self.warmed.push(w);
            }
        }
        for w in self.warmed.drain(..) {
            self.engine.warm_records(w);
        }
        for mut frame in rx.drain(..) {
            match self.answer(now, &mut frame) {
                Some(false) => self.now.push(frame),
                Some(true) => self.durable.push(frame),
                None => self.done.push(frame),
            }
        }
        self.rx = rx;
        if let Some(k) = &mut self.kernel {
            k.sweep(now, &mut self.engine, &mut self.events);
        }
        let ticket = self.append_events();
        if self.journal.is_some() {
            self.gate.hold(ticket, &mut self.durable);
        } else {
            self.now.append(&mut self.durable);
        }
        got
    }

    /// Runs one frame through the engine. `Some(commit)`: a reply is sealed in the frame, and
    /// whether it needs its lease change durable first; `None`: nothing to send.
    fn answer(&mut self, now: u32, frame: &mut I::Frame) -> Option<bool> {
        let d = match self.io.datagram(frame, &mut self.scratch) {
            Ok(d) => d,
            Err(Unusable::Malformed(e)) => {
                self.report.malformed_frames += 1;
                dhcp_io::log_limited!(log::Level::Info, "worker {}: dropping malformed frames: {e}", self.id);
                return None;
            }
            Err(Unusable::OtherPort) => return None,
        };
        // The kernel hands a broadcast to every socket of a reuseport group, not only to the
        // one the BPF program would pick: each worker keeps its own clients.
        let steer = dhcp_common::message_hash(d.request, self.key);
        if dhcp_common::owner(steer, self.workers) != self.id {
            self.report.not_mine += 1;
            return None;
        }
        let ingress = Ingress { interface: d.meta.interface, vlan: d.meta.vlan, src: d.meta.src, steer };
        if let Some(k) = &mut self.kernel {
            k.before(d.request);
        }
        let mark = self.events.len();
        let Outcome::Reply(r) = self.engine.handle(now, &ingress, d.request, d.reply, &mut self.events) else {
            return None;
        };
        if let Some(k) = &mut self.kernel {
            let tagged = d.meta.vlan.is_some();
            k.after(now, d.request, &d.reply[..r.len], &r, &self.events[mark..], tagged);
        }
        if !self.io.seal(frame, &Transmit { to: r.to, from: r.from, len: r.len }) {
            self.report.send_failed += 1;
            return None;
        }
        Some(r.commit)
    }

    /// Queues the lease changes made so far; returns what covers them.
    fn append_events(&mut self) -> Ticket {
        if let Some(k) = &mut self.kernel {
            k.adjust(&mut self.engine, &mut self.events);
        }
        let ticket = match &self.journal {
            Some(j) if !self.events.is_empty() => j.append(&self.events),
            _ => Ticket::NONE,
        };
        self.events.clear();
        if let Some(k) = &mut self.kernel {
            k.journaled(ticket);
        }
        ticket
    }

    /// Sends the replies that may go: the batch's own and the held ones whose records became
    /// durable, in one transmission; withholds those that cannot be made durable.
    fn open_gate(&mut self) {
        if let Some(j) = &self.journal {
            let before = self.done.len();
            self.gate.open(j, &mut self.now, &mut self.done);
            self.report.acks_withheld += (self.done.len() - before) as u64;
        }
        self.io.release(&mut self.done);
        self.transmit();
    }

    fn transmit(&mut self) {
        if self.now.is_empty() {
            return;
        }
        let n = self.now.len();
        let sent = self.io.send(&mut self.now);
        self.report.send_failed += (n - sent) as u64;
    }

    /// After the stop flag: waits (briefly) for the held replies' records, then reports.
    fn finish(mut self) -> (WorkerReport, I) {
        if let Some(j) = self.journal.clone() {
            let _ = j.flush();
            self.open_gate();
        }
        let mut rest: Vec<I::Frame> = self.gate.held.drain(..).map(|(_, f)| f).collect();
        self.report.acks_withheld += rest.len() as u64;
        self.io.release(&mut rest);
        self.report.engine = *self.engine.stats();
        self.report.cluster = *self.engine.cluster_stats();
        (self.report, self.io)
    }
}

#[path = "worker_control.rs"]
pub mod control;

#[cfg(test)]
#[path = "worker_tests.rs"]
mod tests;

/// Pins the calling thread to CPU `n` modulo the CPU count; a failure is only logged (the
/// worker still serves, unpinned).
pub fn pin_to_cpu(n: usize) {
    let cpu = n % std::thread::available_parallelism().map_or(1, |c| c.get());
    if let Err(e) = dhcp_io::sys::pin_to_cpu(cpu) {
        log::warn!("pinning worker {n} to CPU {cpu}: {e}");
    }
}
