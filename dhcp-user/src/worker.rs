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
    /// Frames on the XDP path that were not valid UDP/IPv4 (bad checksum, truncated).
    pub malformed_frames: u64,
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

/// One worker of the kernel-bypass path: its AF_XDP socket on every receive queue. Frames are
/// answered in place: the request's DHCP message is copied aside, the engine writes the reply
/// at the frame's payload offset, the headers are rewritten around it (MACs, the request's VLAN
/// tags, IPv4, UDP and checksums), and the same frame goes out on the same socket.
#[derive(Debug)]
pub struct XdpWorker {
    pub id: usize,
    pub engine: Engine,
    pub ports: Vec<crate::xsk::XskPort>,
    /// The configuration's number for the interface (`None`: relay-only interface).
    pub interface: Option<InterfaceId>,
    /// The interface's own MAC: the source of every reply.
    pub mac: [u8; 6],
    pub journal: Option<Journal>,
    pub stop: Arc<AtomicBool>,
    /// Spin on the rings when idle instead of sleeping in poll().
    pub busy_poll: bool,
}

/// How long an idle XDP worker keeps polling its rings before it sleeps in poll(): waking a
/// sleeping thread costs tens to hundreds of microseconds in a VM, which showed as the p99
/// latency at moderate rates; 64 µs of spinning removed most of it (see BENCHMARKS.md).
const IDLE_SPIN: std::time::Duration = std::time::Duration::from_micros(64);

/// Largest DHCP reply on a 1500-byte MTU (IPv4 and UDP headers take 28).
const MAX_REPLY: usize = 1500 - 28;

impl XdpWorker {
    /// Serves until `stop` is set; returns the counters.
    pub fn run(mut self) -> WorkerReport {
        use crate::wire::{ether, frame};
        use xdpilone::xdp::XdpDesc;
        let mut report = WorkerReport::default();
        let mut events: Vec<LeaseEvent> = Vec::with_capacity(4 * BATCH);
        let mut rx = [XdpDesc { addr: 0, len: 0, options: 0 }; BATCH];
        // Per received frame: the reply's length and whether it needs a durable journal first.
        let mut replies: [Option<(u32, bool)>; BATCH] = [None; BATCH];
        let mut tx: Vec<XdpDesc> = Vec::with_capacity(BATCH);
        let mut free: Vec<u64> = Vec::with_capacity(2 * BATCH);
        let mut scratch = [0u8; crate::udp::MAX_MESSAGE];
        let mut pfds: Vec<libc::pollfd> = self.ports.iter().map(|p| pollfd(p.fd)).collect();
        let shared = self.engine.shared().clone();
        let mut idle_since: Option<std::time::Instant> = None;
        let spin = IDLE_SPIN;
        while !self.stop.load(Ordering::Relaxed) {
            let now = unix_now();
            self.engine.handle_timeout(now, &mut events);
            let mut busy = false;
            for port in self.ports.iter_mut() {
                let n = port.receive(&mut rx);
                if n == 0 {
                    // Idle: no lock unless frames wait to go back (an idle worker spins here,
                    // and the queue's lock is shared with the busy workers). Completions of
                    // the last transmissions are collected with the next batch.
                    if !free.is_empty() {
                        port.shared.recycle(&mut free);
                    }
                    continue;
                }
                busy = true;
                let mut commits = 0;
                for i in 0..n {
                    replies[i] = None;
                    // SAFETY: the descriptor came from our RX ring: the frame is ours until we
                    // put it on the TX or fill ring below.
                    let buf = unsafe { port.shared.area.frame(rx[i].addr) };
                    let bytes = &buf[..(rx[i].len as usize).min(buf.len())];
                    let f = match frame::UdpFrame::parse_with(bytes, frame::UdpChecksum::AllowOffload) {
                        Ok(f) => f,
                        Err(e) => {
                            if report.malformed_frames == 0 {
                                eprintln!("xdhcpd: worker {}: dropping malformed frames (first: {e})", self.id);
                            }
                            report.malformed_frames += 1;
                            continue;
                        }
                    };
                    let len = f.payload.len().min(scratch.len());
                    scratch[..len].copy_from_slice(&buf[f.payload.start..f.payload.start + len]);
                    let msg = &scratch[..len];
                    if f.dst_port != 67 || shared.worker_of(msg) != self.id {
                        report.not_mine += 1;
                        continue;
                    }
                    let ingress = Ingress {
                        interface: self.interface,
                        vlan: f.l2.tags().last().map(|t| t.vid()),
                        src: std::net::SocketAddrV4::new(f.src_ip, f.src_port),
                    };
                    let at = frame::payload_offset(f.l2.vlan_count);
                    let end = (at + MAX_REPLY).min(buf.len());
                    let out = &mut buf[at..end];
                    let Outcome::Reply(r) = self.engine.handle(now, &ingress, msg, out, &mut events) else { continue };
                    let dst_mac = match r.to {
                        crate::engine::Destination::Broadcast => ether::BROADCAST,
                        crate::engine::Destination::Hardware { mac, .. } => mac,
                        // A relay or a configured client: answer the MAC the request came from
                        // (the relay, or the next hop towards it).
                        _ => f.l2.src,
                    };
                    let l2 = ether::Header { dst: dst_mac, src: self.mac, ..f.l2 };
                    match frame::write_headers(buf, &l2, (r.from, 67), (r.to.ip(), r.to.port()), r.len, 64) {
                        Ok(total) => {
                            commits += r.commit as usize;
                            replies[i] = Some((total as u32, r.commit));
                        }
                        Err(_) => report.send_failed += 1,
                    }
                }
                if let Some(j) = &self.journal {
                    if !events.is_empty() {
                        let ticket = j.append(&events);
                        if commits > 0 && j.wait(ticket).is_err() {
                            for r in replies[..n].iter_mut() {
                                if r.is_some_and(|(_, commit)| commit) {
                                    *r = None;
                                    report.acks_withheld += 1;
                                }
                            }
                        }
                    }
                }
                events.clear();
                tx.clear();
                for i in 0..n {
                    match replies[i] {
                        Some((len, _)) => tx.push(XdpDesc { addr: rx[i].addr, len, options: 0 }),
                        None => free.push(rx[i].addr),
                    }
                }
                let sent = port.transmit(&tx);
                report.send_failed += (tx.len() - sent) as u64;
                free.extend(tx[sent..].iter().map(|d| d.addr));
                port.shared.recycle(&mut free);
            }
            if !events.is_empty() {
                if let Some(j) = &self.journal {
                    j.append(&events);
                }
                events.clear();
            }
            if busy {
                idle_since = None;
            } else {
                // Spin a while before sleeping: under load the next batch is microseconds away,
                // and waking from poll() costs tens of microseconds.
                let since = *idle_since.get_or_insert_with(std::time::Instant::now);
                if !self.busy_poll && since.elapsed() > spin {
                    let _ = wait_readable(&mut pfds, 100);
                    idle_since = None;
                }
            }
        }
        report.engine = *self.engine.stats();
        report
    }
}

/// Pins the calling thread to CPU `n` modulo the CPU count; a failure is only logged (the
/// worker still serves, unpinned).
pub fn pin_to_cpu(n: usize) {
    let cpu = n % std::thread::available_parallelism().map_or(1, |c| c.get());
    if let Err(e) = crate::sys::pin_to_cpu(cpu) {
        eprintln!("xdhcpd: pinning worker {n} to CPU {cpu}: {e}");
    }
}
