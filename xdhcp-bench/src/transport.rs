//! The seam between the generator (or the reflector) and the packets: a [`Transport`] moves
//! batches of messages through caller-filled buffers it owns, so that the same generator runs
//! over an `AF_PACKET` socket ([`super::packet`]), a UDP socket acting as relay agents
//! ([`super::relay`]), and an AF_XDP socket (to come: its rings map onto the same calls).
//!
//! The calls take closures rather than returning buffers so that a ring-based transport can
//! hand out its own memory (a UMEM frame, a ring slot) and take it back within the call, with
//! no copy and no allocation.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

/// Which headers the user of a transport writes and reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Whole Ethernet frames: the user writes and parses Ethernet, IPv4 and UDP headers
    /// (`AF_PACKET`, AF_XDP).
    Ethernet,
    /// UDP payloads, the DHCP message alone: the kernel adds and strips the headers (relay mode
    /// over a UDP socket).
    Udp,
}

/// How to send one message that `fill` wrote at the start of a transmit buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tx {
    /// Bytes written.
    pub len: usize,
    /// [`Framing::Udp`] only: the local source address (a relay agent's address). Ethernet
    /// transports ignore it: the frame carries its own addresses.
    pub src: Ipv4Addr,
    /// [`Framing::Udp`] only: where the datagram goes.
    pub dst: SocketAddrV4,
}

impl Tx {
    /// A whole frame of `len` bytes (Ethernet transports).
    pub fn frame(len: usize) -> Tx {
        Tx { len, src: Ipv4Addr::UNSPECIFIED, dst: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0) }
    }
}

/// What a transport counted since it was opened.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct TransportStats {
    /// Messages handed to the user.
    pub rx: u64,
    /// Messages the kernel took for sending.
    pub tx: u64,
    /// Messages the kernel refused for good (not "try again later"): lost, never sent.
    pub tx_errors: u64,
    /// Messages the kernel dropped before we read them (socket receive queue full), where it
    /// reports it (`PACKET_STATISTICS`).
    pub rx_kernel_drops: u64,
}

/// Batched, non-blocking message I/O for one interface or socket. One thread uses it.
///
/// An AF_XDP socket maps onto it as: `send` reserves up to `max` TX descriptors, lets `fill`
/// write each frame into its UMEM frame, submits them and kicks (`sendto`); `recv` peeks the RX
/// ring, hands each frame in the UMEM to `each`, releases the descriptors and refills the fill
/// ring; `reflect` rewrites each received frame in its UMEM frame and puts the same address on
/// the TX ring (frames not answered go back to the fill ring); `wait` polls the socket.
pub trait Transport {
    /// Which headers the user writes into transmit buffers and finds in received ones.
    fn framing(&self) -> Framing;

    /// The hardware address of the interface, for frames the user writes as that interface
    /// (reflector replies); `None` for UDP transports.
    fn mac(&self) -> Option<[u8; 6]>;

    /// Queues up to `max` messages: calls `fill` with an empty transmit buffer (at least 1514
    /// bytes) until it returns `None` or `max` were written, then hands them to the kernel.
    /// Messages the kernel cannot take yet stay queued inside the transport, in order, and go
    /// first at the next call or [`Transport::wait`]; while any are left, `fill` is not called
    /// and the result is 0. Returns how many messages `fill` wrote.
    fn send<F: FnMut(&mut [u8]) -> Option<Tx>>(&mut self, max: usize, fill: F) -> io::Result<usize>;

    /// Calls `each` with every message received, up to one batch, without blocking. Returns
    /// how many.
    fn recv<F: FnMut(&[u8])>(&mut self, each: F) -> io::Result<usize>;

    /// Receives a batch and answers in place: `answer(buffer, len)` gets the whole receive
    /// buffer with the message in its first `len` bytes, rewrites it into a reply and returns
    /// the reply's length, or `None` for no reply; the replies are then sent from the same
    /// buffers. Returns (received, replies sent). This is the reflector's whole job.
    fn reflect<F: FnMut(&mut [u8], usize) -> Option<usize>>(&mut self, answer: F) -> io::Result<(usize, usize)>;

    /// Blocks until a message can be received or `timeout` passes; meanwhile retries sending
    /// what is still queued.
    fn wait(&mut self, timeout: Duration) -> io::Result<()>;

    /// Whether messages are still queued for sending inside the transport.
    fn pending(&self) -> bool;

    /// Counters so far.
    fn stats(&mut self) -> TransportStats;
}
