//! udp: the socket path, for hosts or interfaces without XDP, and its [`PacketIo`].
//!
//! Per interface, each worker has its own UDP socket on port 67 (`SO_REUSEPORT`,
//! `SO_BINDTODEVICE`). A classic BPF program ([`crate::cbpf`]) attached to the group picks the
//! socket with the steering contract's [`dhcp_common::owner_of_message`], so each client always reaches the
//! same worker without any hand-off between threads (the kernel's own reuseport hash would put
//! every DISCOVER on one socket: they all share 0.0.0.0:68 → 255.255.255.255:67). Messages move
//! in batches (`recvmmsg`/`sendmmsg`) through a pool of buffer slots, so a reply may wait (for
//! the journal) while the worker goes on receiving. Replies to a client that has no address yet
//! go out of an `AF_PACKET` socket addressed to its MAC, as mature servers do: it cannot answer
//! ARP.
//!
//! Must never: allocate per packet, or block except in [`PacketIo::wait`].

use crate::sys::{self, check, setsockopt, sockaddr_in, Doorbell};
use crate::{reply_mac, Datagram, PacketIo, RecvMeta, Transmit, Unusable, BATCH, MAX_MESSAGE};
use dhcp_common::SERVER_PORT;
use dhcp_core::engine::{Destination, InterfaceId};
use dhcp_core::wire::{ipv4, udp as udp_wire};
use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// Buffer slots per worker: a batch in flight plus replies waiting for the journal.
const SLOTS: usize = 1024;
/// Largest datagram received (longer ones are cut and then refused by the engine).
const MAX_DATAGRAM: usize = 1500;

/// One worker's sockets on one interface.
#[derive(Debug)]
pub struct Port {
    name: String,
    ifindex: u32,
    /// The interface's number in the configuration (`None`: relay-only interface).
    interface: Option<InterfaceId>,
    /// UDP port 67, this worker's member of the interface's reuseport group.
    udp: OwnedFd,
    /// `AF_PACKET` datagram socket for replies addressed by MAC.
    raw: OwnedFd,
}

impl Port {
    pub fn interface_name(&self) -> &str {
        &self.name
    }
}

/// Opens port 67 on `interface` for `workers` workers: one [`Port`] per worker, in worker
/// order (the BPF program's socket index is the worker number). `id` is the interface's number
/// in the configuration; `key` the steering hash's.
pub fn open_ports(interface: &str, id: Option<InterfaceId>, workers: u32, key: u32) -> io::Result<Vec<Port>> {
    let ifindex = sys::if_index(interface)?;
    let mut ports = Vec::with_capacity(workers as usize);
    for _ in 0..workers {
        let udp = bound_socket(interface)?;
        // SAFETY: plain socket creation; protocol 0 so that it receives nothing; owned at once.
        let raw = unsafe {
            OwnedFd::from_raw_fd(check(
                libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0),
                "socket(AF_PACKET)",
            )?)
        };
        ports.push(Port { name: interface.to_string(), ifindex, interface: id, udp, raw });
    }
    if workers > 1 {
        let mut program = crate::cbpf::steering_program(workers, key);
        let fprog = libc::sock_fprog { len: program.len() as u16, filter: program.as_mut_ptr() };
        let fd = ports[0].udp.as_raw_fd();
        setsockopt(fd, libc::SOL_SOCKET, libc::SO_ATTACH_REUSEPORT_CBPF, &fprog, "SO_ATTACH_REUSEPORT_CBPF")?;
    }
    Ok(ports)
}

/// A UDP socket on 0.0.0.0:67 of `interface`, member of its reuseport group.
fn bound_socket(interface: &str) -> io::Result<OwnedFd> {
    use nix::sys::socket::{setsockopt as set, sockopt};
    // SAFETY: plain socket creation; the fd is owned right away.
    let udp = unsafe {
        OwnedFd::from_raw_fd(check(
            libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0),
            "socket(AF_INET)",
        )?)
    };
    let named = |what: &'static str| move |e: nix::Error| io::Error::other(format!("{what}: {e}"));
    set(&udp, sockopt::ReuseAddr, &true).map_err(named("SO_REUSEADDR"))?;
    set(&udp, sockopt::ReusePort, &true).map_err(named("SO_REUSEPORT"))?;
    set(&udp, sockopt::Broadcast, &true).map_err(named("SO_BROADCAST"))?;
    set(&udp, sockopt::RcvBuf, &(4 << 20)).map_err(named("SO_RCVBUF"))?;
    set(&udp, sockopt::BindToDevice, &std::ffi::OsString::from(interface)).map_err(named("SO_BINDTODEVICE"))?;
    let addr = nix::sys::socket::SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, SERVER_PORT));
    nix::sys::socket::bind(udp.as_raw_fd(), &addr).map_err(named("bind 0.0.0.0:67"))?;
    Ok(udp)
}

/// A received datagram on the socket path: its buffer slot, and the reply once sealed.
#[derive(Debug)]
#[must_use = "a frame must be sent or released"]
pub struct UdpFrame {
    slot: u16,
    port: u16,
    len: u16,
    from: SocketAddrV4,
    reply: Option<Transmit>,
}

/// A request's and its reply's buffers.
struct Slot {
    rx: [u8; MAX_DATAGRAM],
    tx: [u8; MAX_MESSAGE],
}

/// A worker's socket path: its [`Port`] on each interface and a pool of buffer slots.
pub struct UdpIo {
    ports: Vec<Port>,
    slots: Box<[Slot]>,
    free: Vec<u16>,
    /// Frames built for the `AF_PACKET` socket (IPv4 and UDP headers, then the message).
    raw_frame: Box<[u8; MAX_MESSAGE + 28]>,
    waiter: sys::Waiter,
}

impl std::fmt::Debug for UdpIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpIo").field("ports", &self.ports).field("free", &self.free.len()).finish()
    }
}

impl UdpIo {
    /// A worker's path over its ports (one per interface).
    pub fn new(ports: Vec<Port>) -> UdpIo {
        // SAFETY: all-zero bytes are valid `Slot`s (byte arrays).
        let slots = (0..SLOTS).map(|_| unsafe { zeroed::<Slot>() }).collect();
        let waiter = sys::Waiter::new(ports.iter().map(|p| p.udp.as_fd()));
        let free = (0..SLOTS as u16).rev().collect();
        UdpIo { ports, slots, free, raw_frame: Box::new([0; MAX_MESSAGE + 28]), waiter }
    }

    /// Receives up to `max` datagrams from port `p` into free slots.
    fn receive_port(&mut self, p: usize, out: &mut Vec<UdpFrame>, max: usize) -> usize {
        let n = max.min(BATCH).min(self.free.len());
        if n == 0 {
            return 0;
        }
        // SAFETY: all-zero bytes are valid sockaddr_in, iovec and mmsghdr values (integers
        // and null pointers).
        let (mut addrs, mut iov, mut hdrs): ([libc::sockaddr_in; BATCH], [libc::iovec; BATCH], [libc::mmsghdr; BATCH]) =
            unsafe { (zeroed(), zeroed(), zeroed()) };
        let taken = &self.free[self.free.len() - n..];
        for (i, &s) in taken.iter().enumerate() {
            let buf = &mut self.slots[s as usize].rx;
            iov[i] = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
            hdrs[i].msg_hdr.msg_iov = &mut iov[i];
            hdrs[i].msg_hdr.msg_iovlen = 1;
            hdrs[i].msg_hdr.msg_name = (&mut addrs[i] as *mut libc::sockaddr_in).cast();
            hdrs[i].msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        }
        let fd = self.ports[p].udp.as_raw_fd();
        // SAFETY: every header points into buffers that live until the call returns.
        let got = unsafe { libc::recvmmsg(fd, hdrs.as_mut_ptr(), n as u32, libc::MSG_DONTWAIT, std::ptr::null_mut()) };
        if got <= 0 {
            if got < 0 && !sys::is_transient(&io::Error::last_os_error()) {
                crate::log_limited!(
                    log::Level::Warn,
                    "receive on {}: {}",
                    self.ports[p].name,
                    io::Error::last_os_error()
                );
            }
            return 0;
        }
        let got = got as usize;
        for i in 0..got {
            let a = &addrs[i];
            let from = SocketAddrV4::new(Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)), u16::from_be(a.sin_port));
            let slot = self.free[self.free.len() - n + i];
            let len = (hdrs[i].msg_len as usize).min(MAX_DATAGRAM) as u16;
            out.push(UdpFrame { slot, port: p as u16, len, from, reply: None });
        }
        // The received slots are the first `got` of the taken ones; the rest stay free.
        self.free.drain(self.free.len() - n..self.free.len() - n + got);
        got
    }

    /// Sends the sealed frames of port `p` among `frames`: one `sendmmsg` for the UDP socket,
    /// one `sendto` each through the packet socket for clients addressed by MAC.
    fn send_port(&mut self, p: usize, frames: &[UdpFrame]) -> usize {
        // SAFETY: all-zero bytes are valid sockaddr_in, iovec and mmsghdr values.
        let (mut addrs, mut iov, mut hdrs): ([libc::sockaddr_in; BATCH], [libc::iovec; BATCH], [libc::mmsghdr; BATCH]) =
            unsafe { (zeroed(), zeroed(), zeroed()) };
        let (mut k, mut sent) = (0, 0);
        for f in frames.iter().filter(|f| f.port as usize == p) {
            let Some(t) = f.reply else { continue };
            let msg = &self.slots[f.slot as usize].tx[..t.len];
            if let Destination::Hardware { ip, .. } = t.to {
                let port = &self.ports[p];
                sent +=
                    send_raw(port, msg, &mut self.raw_frame[..], t.from, ip, reply_mac(&t.to, [0; 6])).is_ok() as usize;
                continue;
            }
            addrs[k] = sockaddr_in(SocketAddrV4::new(t.to.ip(), t.to.port()));
            iov[k] = libc::iovec { iov_base: msg.as_ptr() as *mut libc::c_void, iov_len: msg.len() };
            hdrs[k].msg_hdr.msg_iov = &mut iov[k];
            hdrs[k].msg_hdr.msg_iovlen = 1;
            hdrs[k].msg_hdr.msg_name = (&mut addrs[k] as *mut libc::sockaddr_in).cast();
            hdrs[k].msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            k += 1;
        }
        sent + sendmmsg_all(self.ports[p].udp.as_raw_fd(), &mut hdrs[..k])
    }
}

/// Hands every message of `hdrs` to the kernel; returns how many it took. A message it refuses
/// (full socket buffer, unreachable destination) is lost, as a datagram may be; the client
/// retransmits.
fn sendmmsg_all(fd: libc::c_int, hdrs: &mut [libc::mmsghdr]) -> usize {
    let (mut at, mut sent) = (0, 0);
    while at < hdrs.len() {
        // SAFETY: the headers point into buffers that live until the call returns.
        let rc = unsafe { libc::sendmmsg(fd, hdrs[at..].as_mut_ptr(), (hdrs.len() - at) as u32, 0) };
        if rc <= 0 {
            crate::log_limited!(log::Level::Warn, "sendmmsg: {}", io::Error::last_os_error());
            at += 1;
            continue;
        }
        sent += rc as usize;
        at += rc as usize;
    }
    sent
}

/// Sends one DHCP message to `to` at hardware address `mac` through the packet socket, with
/// the IPv4 and UDP headers written in front of it in `frame`.
fn send_raw(port: &Port, msg: &[u8], frame: &mut [u8], from: Ipv4Addr, to: Ipv4Addr, mac: [u8; 6]) -> io::Result<()> {
    let udp_len = udp_wire::HEADER_LEN + msg.len();
    let at = ipv4::MIN_HEADER_LEN + udp_wire::HEADER_LEN;
    frame[at..at + msg.len()].copy_from_slice(msg);
    udp_wire::write(&mut frame[ipv4::MIN_HEADER_LEN..], (from, SERVER_PORT), (to, dhcp_common::CLIENT_PORT), msg.len())
        .map_err(|e| io::Error::other(e.to_string()))?;
    ipv4::Repr { src: from, dst: to, protocol: ipv4::PROTOCOL_UDP, payload_len: udp_len, ttl: 64, ident: 0 }
        .write(frame)
        .map_err(|e| io::Error::other(e.to_string()))?;
    // SAFETY: zeroed sockaddr_ll is valid; fields set below.
    let mut sll: libc::sockaddr_ll = unsafe { zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = (libc::ETH_P_IP as u16).to_be();
    sll.sll_ifindex = port.ifindex as i32;
    sll.sll_halen = 6;
    sll.sll_addr[..6].copy_from_slice(&mac);
    let total = ipv4::MIN_HEADER_LEN + udp_len;
    // SAFETY: the frame buffer and address live until the call returns.
    let rc = unsafe {
        libc::sendto(
            port.raw.as_raw_fd(),
            frame.as_ptr().cast(),
            total,
            0,
            (&sll as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    check(rc as libc::c_int, "sendto(AF_PACKET)").map(|_| ())
}

impl PacketIo for UdpIo {
    type Frame = UdpFrame;

    fn receive(&mut self, out: &mut Vec<UdpFrame>, max: usize) -> usize {
        let mut got = 0;
        for p in 0..self.ports.len() {
            got += self.receive_port(p, out, max - got);
        }
        got
    }

    fn peek<'a>(&'a mut self, f: &'a mut UdpFrame) -> Option<&'a [u8]> {
        Some(&self.slots[f.slot as usize].rx[..f.len as usize])
    }

    fn datagram<'a>(
        &'a mut self,
        f: &'a mut UdpFrame,
        _scratch: &'a mut [u8; MAX_MESSAGE],
    ) -> Result<Datagram<'a>, Unusable> {
        let meta = RecvMeta {
            interface: self.ports[f.port as usize].interface,
            // The kernel strips tags before UDP sockets see the datagram.
            vlan: None,
            src: f.from,
            // Not asked of the kernel (IP_PKTINFO): this path serves what its sockets get.
            dst: Ipv4Addr::UNSPECIFIED,
        };
        let Slot { rx, tx } = &mut self.slots[f.slot as usize];
        Ok(Datagram { meta, request: &rx[..f.len as usize], reply: &mut tx[..] })
    }

    fn seal(&mut self, f: &mut UdpFrame, reply: &Transmit) -> bool {
        f.reply = Some(*reply);
        reply.len <= MAX_MESSAGE
    }

    fn send(&mut self, frames: &mut Vec<UdpFrame>) -> usize {
        let mut sent = 0;
        for chunk_start in (0..frames.len()).step_by(BATCH) {
            let chunk = chunk_start..(chunk_start + BATCH).min(frames.len());
            for p in 0..self.ports.len() {
                sent += self.send_port(p, &frames[chunk.clone()]);
            }
        }
        self.release(frames);
        sent
    }

    fn release(&mut self, frames: &mut Vec<UdpFrame>) {
        self.free.extend(frames.drain(..).map(|f| f.slot));
    }

    fn wait(&mut self, timeout: Duration, bell: Option<&Doorbell>) {
        self.waiter.wait(timeout, bell);
    }
}
