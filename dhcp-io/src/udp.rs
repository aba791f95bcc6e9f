//! udp: the socket path, for hosts or interfaces without XDP.
//!
//! Per interface, each worker has its own UDP socket on port 67 (`SO_REUSEPORT`,
//! `SO_BINDTODEVICE`). A classic BPF program attached to the group picks the socket by
//! [`dhcp_common::client_hash`] of `chaddr`, so each client always reaches the same worker
//! without any hand-off between threads (the kernel's own reuseport hash would put every
//! DISCOVER on one socket: they all share 0.0.0.0:68 → 255.255.255.255:67). Messages move in
//! batches (`recvmmsg`/`sendmmsg`). Replies to a client that has no address yet go out of an
//! `AF_PACKET` socket addressed to its MAC, as mature servers do: it cannot answer ARP.

use crate::sys::{check, setsockopt, sockaddr_in};
use dhcp_core::engine::Destination;
use dhcp_core::wire::{ipv4, udp as udp_wire};
use std::ffi::CString;
use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Messages per `recvmmsg`/`sendmmsg` call.
pub const BATCH: usize = 64;
/// Largest message handled (a DHCP message over Ethernet).
pub const MAX_MESSAGE: usize = 1500;

/// Index of a network interface by name.
pub fn if_index(name: &str) -> io::Result<u32> {
    let c = CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name"))?;
    // SAFETY: a NUL-terminated string.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(io::Error::new(io::ErrorKind::NotFound, format!("no interface {name}"))),
        i => Ok(i),
    }
}

/// Classic BPF for `SO_ATTACH_REUSEPORT_CBPF`: returns the index of the socket for a message.
/// The program sees the UDP payload (the kernel pulls the UDP header first), so offset 30 is
/// `chaddr[2..6]`. It computes exactly `worker_for(client_hash(chaddr), workers)`.
fn steering_program(workers: u32) -> [libc::sock_filter; 5] {
    let op = |code: u32, k: u32| libc::sock_filter { code: code as u16, jt: 0, jf: 0, k };
    [
        op(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 30),
        op(libc::BPF_ALU | libc::BPF_MUL | libc::BPF_K, dhcp_common::HASH_MULTIPLIER),
        op(libc::BPF_ALU | libc::BPF_RSH | libc::BPF_K, 16),
        op(libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K, workers),
        op(libc::BPF_RET | libc::BPF_A, 0),
    ]
}

/// One worker's sockets on one interface.
#[derive(Debug)]
pub struct Port {
    pub interface: String,
    pub ifindex: u32,
    /// UDP port 67, this worker's member of the interface's reuseport group.
    pub udp: OwnedFd,
    /// `AF_PACKET` datagram socket for replies addressed by MAC.
    pub raw: OwnedFd,
}

/// Opens port 67 on `interface` for `workers` workers: one [`Port`] per worker, in worker
/// order (the BPF program's socket index is the worker number).
pub fn open_ports(interface: &str, workers: u32) -> io::Result<Vec<Port>> {
    let ifindex = if_index(interface)?;
    let dev = CString::new(interface).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name"))?;
    let mut ports = Vec::with_capacity(workers as usize);
    for _ in 0..workers {
        // SAFETY: plain socket creation; the fd is owned right away.
        let udp = unsafe {
            OwnedFd::from_raw_fd(check(
                libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0),
                "socket(AF_INET)",
            )?)
        };
        let fd = udp.as_raw_fd();
        let one: libc::c_int = 1;
        setsockopt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, &one, "SO_REUSEADDR")?;
        setsockopt(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, &one, "SO_REUSEPORT")?;
        setsockopt(fd, libc::SOL_SOCKET, libc::SO_BROADCAST, &one, "SO_BROADCAST")?;
        let big: libc::c_int = 4 << 20;
        setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &big, "SO_RCVBUF")?;
        let len = dev.as_bytes_with_nul().len() as libc::socklen_t;
        // SAFETY: `dev` is NUL-terminated and outlives the call.
        let rc = unsafe { libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_BINDTODEVICE, dev.as_ptr().cast(), len) };
        check(rc, "SO_BINDTODEVICE")?;
        let addr = sockaddr_in(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 67));
        let addr_len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        // SAFETY: a valid sockaddr_in of the given size.
        let rc = unsafe { libc::bind(fd, (&addr as *const libc::sockaddr_in).cast(), addr_len) };
        check(rc, "bind 0.0.0.0:67")?;
        // SAFETY: plain socket creation; protocol 0 so that it receives nothing.
        let raw = unsafe {
            OwnedFd::from_raw_fd(check(
                libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0),
                "socket(AF_PACKET)",
            )?)
        };
        ports.push(Port { interface: interface.to_string(), ifindex, udp, raw });
    }
    if workers > 1 {
        let mut program = steering_program(workers);
        let fprog = libc::sock_fprog { len: program.len() as u16, filter: program.as_mut_ptr() };
        setsockopt(
            ports[0].udp.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            &fprog,
            "SO_ATTACH_REUSEPORT_CBPF",
        )?;
    }
    Ok(ports)
}

/// Buffers for one batch of received messages and their replies.
pub struct Batch {
    pub rx: Box<[[u8; MAX_MESSAGE]; BATCH]>,
    pub rx_len: [usize; BATCH],
    pub rx_from: [SocketAddrV4; BATCH],
    pub tx: Box<[[u8; MAX_MESSAGE]; BATCH]>,
    /// Per reply: (length, destination, source address, needs a durable journal first);
    /// `None` for no reply.
    pub tx_meta: [Option<(usize, Destination, Ipv4Addr, bool)>; BATCH],
    /// Frames built for the `AF_PACKET` socket.
    frame: Box<[u8; MAX_MESSAGE + 28]>,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch").finish_non_exhaustive()
    }
}

impl Default for Batch {
    fn default() -> Batch {
        Batch {
            rx: Box::new([[0; MAX_MESSAGE]; BATCH]),
            rx_len: [0; BATCH],
            rx_from: [SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0); BATCH],
            tx: Box::new([[0; MAX_MESSAGE]; BATCH]),
            tx_meta: [None; BATCH],
            frame: Box::new([0; MAX_MESSAGE + 28]),
        }
    }
}

impl Batch {
    /// Receives up to [`BATCH`] messages without blocking; returns how many.
    pub fn receive(&mut self, fd: RawFd) -> io::Result<usize> {
        // SAFETY: all-zero bytes are a valid sockaddr_in (plain integers).
        let mut addrs: [libc::sockaddr_in; BATCH] = unsafe { zeroed() };
        // SAFETY: all-zero bytes are a valid iovec (null pointer, zero length).
        let mut iov: [libc::iovec; BATCH] = unsafe { zeroed() };
        // SAFETY: all-zero bytes are a valid mmsghdr (null pointers, zero lengths).
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        for i in 0..BATCH {
            iov[i] = libc::iovec { iov_base: self.rx[i].as_mut_ptr().cast(), iov_len: MAX_MESSAGE };
            hdrs[i].msg_hdr.msg_iov = &mut iov[i];
            hdrs[i].msg_hdr.msg_iovlen = 1;
            hdrs[i].msg_hdr.msg_name = (&mut addrs[i] as *mut libc::sockaddr_in).cast();
            hdrs[i].msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        }
        // SAFETY: every header points into buffers that live until the call returns.
        let n =
            unsafe { libc::recvmmsg(fd, hdrs.as_mut_ptr(), BATCH as u32, libc::MSG_DONTWAIT, std::ptr::null_mut()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::WouldBlock { Ok(0) } else { Err(e) };
        }
        for i in 0..n as usize {
            self.rx_len[i] = hdrs[i].msg_len as usize;
            let a = &addrs[i];
            self.rx_from[i] =
                SocketAddrV4::new(Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)), u16::from_be(a.sin_port));
        }
        Ok(n as usize)
    }

    /// Sends the replies of the first `n` slots: through the UDP socket for relays, configured
    /// clients and broadcasts (one `sendmmsg`), through the packet socket for clients addressed
    /// by MAC. Returns how many were handed to the kernel.
    pub fn send(&mut self, port: &Port, n: usize) -> usize {
        // SAFETY: all-zero bytes are a valid sockaddr_in (plain integers).
        let mut addrs: [libc::sockaddr_in; BATCH] = unsafe { zeroed() };
        // SAFETY: all-zero bytes are a valid iovec (null pointer, zero length).
        let mut iov: [libc::iovec; BATCH] = unsafe { zeroed() };
        // SAFETY: all-zero bytes are a valid mmsghdr (null pointers, zero lengths).
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        let mut k = 0;
        let mut sent = 0;
        for i in 0..n {
            let Some((len, to, from, _)) = self.tx_meta[i] else { continue };
            if let Destination::Hardware { ip, mac } = to {
                if send_raw(port, &self.tx[i][..len], &mut self.frame[..], from, ip, mac).is_ok() {
                    sent += 1;
                }
                continue;
            }
            addrs[k] = sockaddr_in(SocketAddrV4::new(to.ip(), to.port()));
            iov[k] = libc::iovec { iov_base: self.tx[i].as_mut_ptr().cast(), iov_len: len };
            hdrs[k].msg_hdr.msg_iov = &mut iov[k];
            hdrs[k].msg_hdr.msg_iovlen = 1;
            hdrs[k].msg_hdr.msg_name = (&mut addrs[k] as *mut libc::sockaddr_in).cast();
            hdrs[k].msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            k += 1;
        }
        let mut at = 0;
        while at < k {
            // SAFETY: headers point into buffers that live until the call returns.
            let rc = unsafe { libc::sendmmsg(port.udp.as_raw_fd(), hdrs[at..].as_mut_ptr(), (k - at) as u32, 0) };
            if rc <= 0 {
                // A full socket buffer or an unreachable destination: this reply is lost, as a
                // datagram may be; the client retransmits.
                at += 1;
                continue;
            }
            sent += rc as usize;
            at += rc as usize;
        }
        sent
    }
}

/// Sends one DHCP message to `to` at hardware address `mac` through the packet socket, with
/// the IPv4 and UDP headers written in front of it in `frame`.
fn send_raw(port: &Port, msg: &[u8], frame: &mut [u8], from: Ipv4Addr, to: Ipv4Addr, mac: [u8; 6]) -> io::Result<()> {
    let udp_len = udp_wire::HEADER_LEN + msg.len();
    let at = ipv4::MIN_HEADER_LEN + udp_wire::HEADER_LEN;
    frame[at..at + msg.len()].copy_from_slice(msg);
    udp_wire::write(&mut frame[ipv4::MIN_HEADER_LEN..], (from, 67), (to, 68), msg.len())
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

/// Waits until one of `fds` is readable or `timeout_ms` passes; their `revents` say which.
pub fn wait_readable(fds: &mut [libc::pollfd], timeout_ms: i32) -> io::Result<()> {
    for p in fds.iter_mut() {
        p.revents = 0;
    }
    // SAFETY: a valid array of pollfd of the given length.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted { Ok(()) } else { Err(e) };
    }
    Ok(())
}

/// A `pollfd` waiting for input on `fd`.
pub fn pollfd(fd: RawFd) -> libc::pollfd {
    libc::pollfd { fd, events: libc::POLLIN, revents: 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steering_program_matches_the_shared_hash() {
        // Interpret the five instructions the way the kernel does, on sample messages.
        for workers in [2u32, 3, 4] {
            let prog = steering_program(workers);
            for n in 0..1000u32 {
                let mac = dhcp_core::client::mac_for(n.wrapping_mul(2_654_435_761));
                let mut msg = [0u8; 300];
                msg[28..34].copy_from_slice(&mac);
                let mut a = u32::from_be_bytes([msg[30], msg[31], msg[32], msg[33]]);
                a = a.wrapping_mul(prog[1].k);
                a >>= prog[2].k;
                a %= prog[3].k;
                assert_eq!(a, dhcp_common::worker_for(dhcp_common::client_hash(&mac), workers));
            }
        }
    }
}
