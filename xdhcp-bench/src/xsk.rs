//! AF_XDP transport: the steering program sends the interface's DHCP frames (to port 67 for
//! the reflector, to port 68 for the generator's clients) to one AF_XDP socket, opened through
//! the server's own I/O layer (`dhcp_io::xsk`). The reflector answers in the received UMEM
//! frame; the generator writes its requests into UMEM frames of the socket's transmit reserve.
//!
//! ARP goes on to the kernel here (the AF_PACKET transport answers it for the clients), so the
//! scenarios that need clients to answer ARP (renewals unicast to a client address) want the
//! AF_PACKET transport.

use super::packet::Role;
use super::transport::{Framing, Transport, TransportStats, Tx};
use dhcp_common::{CLIENT_PORT, SERVER_PORT};
use dhcp_io::xdp::Steering;
use dhcp_io::xsk::{self, XskFrame, XskSet, XskSocket};
use std::io;
use std::time::Duration;

const BATCH: usize = 64;
/// UMEM frames of the queue kept for the generator's own transmissions.
const TX_FRAMES: u32 = 2048;

/// One AF_XDP socket on queue 0 of an interface, and the program feeding it.
pub struct XskTransport {
    // Field order matters for drop: the program detaches before the socket and UMEM go away.
    steering: Steering,
    socket: XskSocket,
    _set: XskSet,
    mac: [u8; 6],
    stats: TransportStats,
    rx: Vec<XskFrame>,
    /// Written frames not yet taken by the kernel, in order.
    pending: Vec<XskFrame>,
    /// Reflector: the batch's answered frames.
    answered: Vec<XskFrame>,
}

impl std::fmt::Debug for XskTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XskTransport").field("socket", &self.socket).finish_non_exhaustive()
    }
}

impl XskTransport {
    /// The reflector's side (DHCP to port 67) or the generator's (replies to port 68).
    pub fn open(interface: &str, role: Role) -> anyhow::Result<XskTransport> {
        if dhcp_io::sys::rx_queues(interface) != 1 {
            anyhow::bail!("the AF_XDP transport serves single-queue interfaces");
        }
        let reserve = if role == Role::Client { TX_FRAMES } else { 0 };
        let mut set = xsk::open(interface, 1, xsk::Options { reserve })?;
        let port = if role == Role::Client { CLIENT_PORT } else { SERVER_PORT };
        let mut steering = Steering::attach(interface, port)?;
        steering.register(&set.sockets)?;
        let socket = set.sockets.pop().and_then(|mut s| s.pop()).ok_or_else(|| anyhow::anyhow!("no socket"))?;
        Ok(XskTransport {
            steering,
            socket,
            _set: set,
            mac: dhcp_io::sys::mac_address(interface)?,
            stats: TransportStats::default(),
            rx: Vec::with_capacity(BATCH),
            pending: Vec::with_capacity(BATCH),
            answered: Vec::with_capacity(BATCH),
        })
    }

    /// Reflector: renewals go back from the XDP program itself with XDP_TX (the in-kernel
    /// ceiling); the rest still reaches this socket.
    pub fn reflect_renewals(&mut self) -> anyhow::Result<()> {
        self.steering.reflect_renewals()
    }

    /// Renewals the program sent back (see [`XskTransport::reflect_renewals`]).
    pub fn reflected(&self) -> u64 {
        self.steering.counters().map_or(0, |c| c.get(dhcp_common::counter::REFLECTED))
    }

    /// Queues what is pending; returns whether nothing is left.
    fn flush(&mut self) -> bool {
        if !self.pending.is_empty() {
            self.stats.tx += self.socket.transmit(&mut self.pending) as u64;
        }
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
            let Some(mut frame) = self.socket.take_own() else { break };
            let written = fill(self.socket.buffer(&mut frame));
            match written {
                Some(tx) => {
                    frame.set_len(tx.len);
                    self.pending.push(frame);
                    n += 1;
                }
                None => {
                    self.socket.release(frame);
                    break;
                }
            }
        }
        self.flush();
        Ok(n)
    }

    fn recv<F: FnMut(&[u8])>(&mut self, mut each: F) -> io::Result<usize> {
        let n = self.socket.receive(&mut self.rx, BATCH);
        for mut frame in self.rx.drain(..) {
            let len = frame.len();
            each(&self.socket.buffer(&mut frame)[..len]);
            self.socket.release(frame);
        }
        self.stats.rx += n as u64;
        self.socket.recycle();
        Ok(n)
    }

    fn reflect<F: FnMut(&mut [u8], usize) -> Option<usize>>(&mut self, mut answer: F) -> io::Result<(usize, usize)> {
        let n = self.socket.receive(&mut self.rx, BATCH);
        for mut frame in self.rx.drain(..) {
            let len = frame.len();
            match answer(self.socket.buffer(&mut frame), len) {
                Some(reply) => {
                    frame.set_len(reply);
                    self.answered.push(frame);
                }
                None => self.socket.release(frame),
            }
        }
        let tried = self.answered.len();
        let sent = self.socket.transmit(&mut self.answered);
        for f in self.answered.drain(..) {
            self.socket.release(f);
        }
        self.stats.rx += n as u64;
        self.stats.tx += sent as u64;
        self.stats.tx_errors += (tried - sent) as u64;
        // Answered frames come back through the completion ring and go to the fill ring.
        self.socket.recycle();
        Ok((n, sent))
    }

    fn wait(&mut self, timeout: Duration) -> io::Result<()> {
        self.flush();
        self.socket.recycle();
        let mut pfd = [dhcp_io::sys::pollfd(self.socket.fd(), false)];
        dhcp_io::sys::poll(&mut pfd, timeout)
    }

    fn pending(&self) -> bool {
        !self.pending.is_empty()
    }

    fn stats(&mut self) -> TransportStats {
        self.stats
    }
}
