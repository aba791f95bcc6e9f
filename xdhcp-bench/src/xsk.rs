//! AF_XDP transport: the steering program sends the interface's DHCP frames (to port 67 for
//! the reflector, to port 68 for the generator's clients) to one AF_XDP socket, set up by the
//! server's own `xsk` module. The reflector answers in the received UMEM frame; the generator
//! writes its requests into UMEM frames kept out of the fill ring for its own transmissions.
//!
//! ARP goes on to the kernel here (the AF_PACKET transport answers it for the clients), so the
//! scenarios that need clients to answer ARP (renewals unicast to a client address) want the
//! AF_PACKET transport.

use super::packet::Role;
use super::transport::{Framing, Transport, TransportStats, Tx};
use dhcp_io::xdp::Steering;
use dhcp_io::xsk::{self, XskPort, XskSet};
use std::io;
use std::time::Duration;
use xdpilone::xdp::XdpDesc;

const BATCH: usize = 64;
/// UMEM frames of the queue kept for the generator's own transmissions.
const TX_FRAMES: u32 = 2048;

/// One AF_XDP socket on queue 0 of an interface, and the program feeding it.
pub struct XskTransport {
    port: XskPort,
    // Field order matters for drop: the program detaches before the socket and UMEM go away.
    _steering: Steering,
    _set: XskSet,
    mac: [u8; 6],
    stats: TransportStats,
    rx: [XdpDesc; BATCH],
    tx: Vec<XdpDesc>,
    /// Received frames to give back to the fill ring.
    free: Vec<u64>,
    /// Frames for our own transmissions (generator), and those written but not yet queued.
    tx_free: Vec<u64>,
    pending: Vec<XdpDesc>,
}

impl std::fmt::Debug for XskTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XskTransport").field("port", &self.port).finish_non_exhaustive()
    }
}

impl XskTransport {
    /// The reflector's side (DHCP to port 67) or the generator's (replies to port 68).
    pub fn open(interface: &str, role: Role) -> anyhow::Result<XskTransport> {
        if xsk::rx_queues(interface) != 1 {
            anyhow::bail!("the AF_XDP transport serves single-queue interfaces");
        }
        let reserve = if role == Role::Client { TX_FRAMES } else { 0 };
        let mut set = xsk::open_reserving(interface, 1, reserve)?;
        let port = set.per_worker.pop().and_then(|mut p| p.pop()).ok_or_else(|| anyhow::anyhow!("no socket"))?;
        let tx_free = set.reserved.pop().unwrap_or_default();
        let mut steering = Steering::attach(interface, 0)?;
        if role == Role::Client {
            steering.set_port(68)?;
        }
        steering.register_socket(0, port.fd)?;
        steering.set_sockets_per_queue(1)?;
        Ok(XskTransport {
            port,
            _steering: steering,
            _set: set,
            mac: xsk::mac_address(interface)?,
            stats: TransportStats::default(),
            rx: [XdpDesc { addr: 0, len: 0, options: 0 }; BATCH],
            tx: Vec::with_capacity(BATCH),
            free: Vec::with_capacity(2 * BATCH),
            tx_free,
            pending: Vec::with_capacity(BATCH),
        })
    }

    /// Queues what is pending; returns whether nothing is left.
    fn flush(&mut self) -> bool {
        if !self.pending.is_empty() {
            let sent = self.port.transmit(&self.pending);
            self.stats.tx += sent as u64;
            self.pending.drain(..sent);
        }
        // Finished transmissions free their frames for the next ones.
        self.port.shared.complete_into(&mut self.tx_free);
        self.pending.is_empty()
    }
}

impl Transport for XskTransport {
    fn framing(&self) -> Framing {
        Framing::Ethernet
    }

    fn mac(&self) -> Option<[u8; 6]> {
        Some(self.mac)
    }

    fn send<F: FnMut(&mut [u8]) -> Option<Tx>>(&mut self, max: usize, mut fill: F) -> io::Result<usize> {
        if !self.flush() {
            return Ok(0);
        }
        let mut n = 0;
        while n < max.min(BATCH) {
            let Some(addr) = self.tx_free.pop() else { break };
            // SAFETY: a frame of our own TX pool, in no ring until queued below.
            let buf = unsafe { self.port.shared.area.frame(addr) };
            match fill(buf) {
                Some(tx) => {
                    self.pending.push(XdpDesc { addr, len: tx.len.min(buf.len()) as u32, options: 0 });
                    n += 1;
                }
                None => {
                    self.tx_free.push(addr);
                    break;
                }
            }
        }
        self.flush();
        Ok(n)
    }

    fn recv<F: FnMut(&[u8])>(&mut self, mut each: F) -> io::Result<usize> {
        let n = self.port.receive(&mut self.rx);
        for d in &self.rx[..n] {
            // SAFETY: from our RX ring; given back to the fill ring below.
            let buf = unsafe { self.port.shared.area.frame(d.addr) };
            each(&buf[..(d.len as usize).min(buf.len())]);
            self.free.push(d.addr);
        }
        self.stats.rx += n as u64;
        self.port.shared.refill(&mut self.free);
        Ok(n)
    }

    fn reflect<F: FnMut(&mut [u8], usize) -> Option<usize>>(&mut self, mut answer: F) -> io::Result<(usize, usize)> {
        let n = self.port.receive(&mut self.rx);
        self.tx.clear();
        for d in &self.rx[..n] {
            // SAFETY: the descriptor came from our RX ring; the frame is ours until it goes on
            // the TX or fill ring below.
            let buf = unsafe { self.port.shared.area.frame(d.addr) };
            match answer(buf, d.len as usize) {
                Some(len) => self.tx.push(XdpDesc { addr: d.addr, len: len as u32, options: 0 }),
                None => self.free.push(d.addr),
            }
        }
        let sent = self.port.transmit(&self.tx);
        self.stats.rx += n as u64;
        self.stats.tx += sent as u64;
        self.stats.tx_errors += (self.tx.len() - sent) as u64;
        self.free.extend(self.tx[sent..].iter().map(|d| d.addr));
        // Answered frames come back through the completion ring and go to the fill ring.
        self.port.shared.recycle(&mut self.free);
        Ok((n, sent))
    }

    fn wait(&mut self, timeout: Duration) -> io::Result<()> {
        self.flush();
        if self.tx_free.is_empty() && self.pending.is_empty() {
            // Reflector: completions of answered frames refill the receive side.
            self.port.shared.recycle(&mut self.free);
        }
        let mut pfd = [dhcp_io::udp::pollfd(self.port.fd)];
        dhcp_io::udp::wait_readable(&mut pfd, timeout.as_millis().clamp(0, i32::MAX as u128) as i32)
    }

    fn pending(&self) -> bool {
        !self.pending.is_empty()
    }

    fn stats(&mut self) -> TransportStats {
        self.stats
    }
}
