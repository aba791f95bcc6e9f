//! Packet I/O for xdhcpd: the seam between the sans-I/O engine and the kernel, and the two paths
//! that implement it. Every socket, ring and system call of the packet path is here, with the
//! only `unsafe` that touches them (each block with its SAFETY).
//!
//! The seam, as quinn-udp has it: [`RecvMeta`] says how a datagram arrived, [`Transmit`] where
//! its reply goes, and [`PacketIo`] receives a batch, hands out each request with room for its
//! reply, seals and sends replies, and waits. A received datagram is an owned token
//! ([`PacketIo::Frame`]) that is either sent or released, so code above this crate never touches
//! ring memory and needs no `unsafe`.
//!
//! - [`xsk`]: the kernel-bypass path: AF_XDP sockets on one shared UMEM per receive queue,
//!   replies written in place in the received frame.
//! - [`udp`]: the socket path: one `SO_REUSEPORT` socket per worker and interface, a classic-BPF
//!   program ([`cbpf`]) picking the worker; `AF_PACKET` for replies to clients without an
//!   address.
//! - [`xdp`]: loads and attaches the steering program (`dhcp-ebpf`) that feeds [`xsk`].
//! - [`sys`]: small system-call helpers (waiting, CPU pinning, interfaces, a doorbell).
//!
//! Must never: decide anything about DHCP beyond where a reply's frame goes, allocate per
//! packet, or block except in [`PacketIo::wait`].

pub mod cbpf;
pub mod renew;
pub mod sys;
pub mod udp;
pub mod xdp;
pub mod xsk;

use core::net::{Ipv4Addr, SocketAddrV4};
use dhcp_core::engine::{Destination, InterfaceId};
use std::time::Duration;

/// Largest DHCP message handled: what fits in a 1500-byte Ethernet payload after the IPv4 and
/// UDP headers (RFC 2131 requires 576; bigger ones are rare and never needed for a reply).
pub const MAX_MESSAGE: usize = 1500 - 28;

/// Datagrams taken per receive call.
pub const BATCH: usize = 64;

/// How a datagram arrived: the facts the engine's [`dhcp_core::engine::Ingress`] is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvMeta {
    /// The receiving interface, numbered as in the configuration (`None`: not configured).
    pub interface: Option<InterfaceId>,
    /// Innermost VLAN id of the frame, if it was tagged and the path sees tags.
    pub vlan: Option<u16>,
    /// Source address and port (a relay agent's for relayed messages).
    pub src: SocketAddrV4,
    /// Destination address: broadcast, or one of ours.
    pub dst: Ipv4Addr,
}

/// What goes out: a reply of `len` bytes that the engine wrote into the frame's reply room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    pub to: Destination,
    /// Source address (the server identifier of the client's subnet).
    pub from: Ipv4Addr,
    pub len: usize,
}

/// A request handed to the worker: its bytes, how it came, and where to write the reply.
#[derive(Debug)]
pub struct Datagram<'a> {
    pub meta: RecvMeta,
    /// The DHCP message (the UDP payload).
    pub request: &'a [u8],
    /// Room for the reply's DHCP message; [`PacketIo::seal`] adds what the path needs around it.
    pub reply: &'a mut [u8],
}

/// Why a received frame holds no usable datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unusable {
    /// Not well-formed Ethernet/IPv4/UDP (truncated, bad checksum): counted as malformed.
    Malformed(dhcp_core::wire::Error),
    /// UDP to another port than the one served (the steering program let it through).
    OtherPort,
}

/// One worker's packet path: the seam every path implements, and the one worker loop
/// (`dhcp_user::worker`) is written against.
pub trait PacketIo {
    /// A received datagram. The worker owns it until it gives it back through
    /// [`PacketIo::send`] or [`PacketIo::release`]; dropping it instead loses a buffer.
    type Frame: Send;

    /// Takes up to `max` received datagrams without blocking and appends them to `out`;
    /// returns how many.
    fn receive(&mut self, out: &mut Vec<Self::Frame>, max: usize) -> usize;

    /// The request in `frame`, and room for its reply. `scratch` holds a copy of the request
    /// where the path answers in place (the reply overwrites the request's bytes).
    fn datagram<'a>(
        &'a mut self,
        frame: &'a mut Self::Frame,
        scratch: &'a mut [u8; MAX_MESSAGE],
    ) -> Result<Datagram<'a>, Unusable>;

    /// The DHCP message in `frame` as received, unchecked: for hints that change nothing
    /// (warming the cache ahead of [`PacketIo::datagram`]). `None` where a path has no cheap view.
    fn peek<'a>(&'a mut self, _frame: &'a mut Self::Frame) -> Option<&'a [u8]> {
        None
    }

    /// Makes `frame` ready to carry the reply the engine wrote: headers, addresses. `false` if
    /// it cannot be sent (no room); the frame is then released by the caller.
    fn seal(&mut self, frame: &mut Self::Frame, reply: &Transmit) -> bool;

    /// Sends every sealed frame in `frames` (emptying it, whether sent or not); returns how
    /// many the kernel took.
    fn send(&mut self, frames: &mut Vec<Self::Frame>) -> usize;

    /// Gives frames back unsent (emptying `frames`).
    fn release(&mut self, frames: &mut Vec<Self::Frame>);

    /// Sleeps until a datagram may be waiting, `bell` rings, or `timeout` passes.
    fn wait(&mut self, timeout: Duration, bell: Option<&sys::Doorbell>);
}

/// The Ethernet destination of a reply (RFC 2131 §4.1 at layer 2), on paths that write frames:
/// broadcast; the client's hardware address when it has no IP address yet; else the MAC the
/// request came from (the relay, the client itself, or the next hop towards them).
pub fn reply_mac(to: &Destination, request_src: [u8; 6]) -> [u8; 6] {
    match *to {
        Destination::Broadcast => [0xff; 6],
        Destination::Hardware { mac, .. } => mac,
        Destination::Relay(_) | Destination::Client(_) => request_src,
    }
}
