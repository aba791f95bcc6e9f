//! AF_XDP for the reflector: the steering program sends every DHCP frame of the interface to
//! one AF_XDP socket (the server's own `xsk` module sets it up), and replies are written in
//! the received UMEM frame and sent from the same socket — the I/O ceiling of the kernel-bypass
//! path for this traffic.
//!
//! Only [`Transport::reflect`] is served: the generator's own AF_XDP transmit path (frames of
//! its own, not received ones) is not built yet, and `send`/`recv` say so.

use super::transport::{Framing, Transport, TransportStats, Tx};
use crate::xdp::Steering;
use crate::xsk::{self, XskPort, XskSet};
use std::io;
use std::time::Duration;
use xdpilone::xdp::XdpDesc;

const BATCH: usize = 64;

/// The reflector's AF_XDP socket on queue 0 of one interface, and the program feeding it.
pub struct XskReflector {
    port: XskPort,
    // Field order matters for drop: the program detaches before the socket and UMEM go away.
    _steering: Steering,
    _set: XskSet,
    mac: [u8; 6],
    stats: TransportStats,
    rx: [XdpDesc; BATCH],
    tx: Vec<XdpDesc>,
    free: Vec<u64>,
}

impl std::fmt::Debug for XskReflector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XskReflector").field("port", &self.port).finish_non_exhaustive()
    }
}

impl XskReflector {
    pub fn open(interface: &str) -> anyhow::Result<XskReflector> {
        if xsk::rx_queues(interface) != 1 {
            anyhow::bail!("the AF_XDP reflector serves single-queue interfaces");
        }
        let mut set = xsk::open(interface, 1)?;
        let port = set.per_worker.pop().and_then(|mut p| p.pop()).ok_or_else(|| anyhow::anyhow!("no socket"))?;
        let mut steering = Steering::attach(interface, 0)?;
        steering.register_socket(0, port.fd)?;
        steering.set_sockets_per_queue(1)?;
        Ok(XskReflector {
            port,
            _steering: steering,
            _set: set,
            mac: xsk::mac_address(interface)?,
            stats: TransportStats::default(),
            rx: [XdpDesc { addr: 0, len: 0, options: 0 }; BATCH],
            tx: Vec::with_capacity(BATCH),
            free: Vec::with_capacity(2 * BATCH),
        })
    }
}

fn unsupported() -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, "AF_XDP: only the reflector is served")
}

impl Transport for XskReflector {
    fn framing(&self) -> Framing {
        Framing::Ethernet
    }

    fn mac(&self) -> Option<[u8; 6]> {
        Some(self.mac)
    }

    fn send<F: FnMut(&mut [u8]) -> Option<Tx>>(&mut self, _max: usize, _fill: F) -> io::Result<usize> {
        Err(unsupported())
    }

    fn recv<F: FnMut(&[u8])>(&mut self, _each: F) -> io::Result<usize> {
        Err(unsupported())
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
        self.port.shared.recycle(&mut self.free);
        Ok((n, sent))
    }

    fn wait(&mut self, timeout: Duration) -> io::Result<()> {
        self.port.shared.recycle(&mut self.free);
        let mut pfd = [crate::udp::pollfd(self.port.fd)];
        crate::udp::wait_readable(&mut pfd, timeout.as_millis().min(i32::MAX as u128) as i32)
    }

    fn pending(&self) -> bool {
        false
    }

    fn stats(&mut self) -> TransportStats {
        self.stats
    }
}
