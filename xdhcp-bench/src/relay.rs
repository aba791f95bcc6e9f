//! The relay transport: the generator acting as one or more DHCP relay agents (RFC 1542,
//! RFC 3046) over one plain UDP socket on port 67.
//!
//! Requests go by unicast to the server's port 67 with `giaddr` set (the generator writes
//! it), each from its relay agent's address, chosen per datagram with `IP_PKTINFO`, so any
//! number of relay addresses share one socket and one `sendmmsg`. The server answers each
//! relay at `giaddr`, port 67, where the same socket (bound to the wildcard address) receives
//! it. The relay addresses must be local addresses of the namespace.

use super::transport::{Framing, Transport, TransportStats, Tx};
use dhcp_io::sys::{check, is_transient, set_buffer, setsockopt, sockaddr_in, wait_one};
use std::ffi::CString;
use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// Datagrams per `recvmmsg`/`sendmmsg` call.
pub const BATCH: usize = 64;
/// Largest datagram handled.
pub const DATAGRAM: usize = 1536;
/// Room for one `IP_PKTINFO` control message (CMSG_SPACE of 12 bytes), as u64 for alignment.
const CONTROL_WORDS: usize = 4;

/// The relay agents' UDP socket and its batch buffers.
pub struct RelaySocket {
    fd: OwnedFd,
    rx: Box<[[u8; DATAGRAM]; BATCH]>,
    rx_len: [usize; BATCH],
    tx: Box<[[u8; DATAGRAM]; BATCH]>,
    tx_meta: [Tx; BATCH],
    tx_head: usize,
    tx_tail: usize,
    stats: TransportStats,
}

impl std::fmt::Debug for RelaySocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelaySocket").field("fd", &self.fd).finish_non_exhaustive()
    }
}

impl RelaySocket {
    /// Opens port 67 (on `interface` only, when given) in the calling thread's namespace.
    pub fn open(interface: Option<&str>) -> io::Result<RelaySocket> {
        // SAFETY: plain socket creation; the fd is owned right away.
        let fd = unsafe {
            OwnedFd::from_raw_fd(check(
                libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0),
                "socket(AF_INET)",
            )?)
        };
        let raw = fd.as_raw_fd();
        let one: libc::c_int = 1;
        setsockopt(raw, libc::SOL_SOCKET, libc::SO_REUSEADDR, &one, "SO_REUSEADDR")?;
        set_buffer(raw, libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, 64 << 20);
        set_buffer(raw, libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, 16 << 20);
        if let Some(dev) = interface {
            let dev = CString::new(dev).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name"))?;
            let len = dev.as_bytes_with_nul().len() as libc::socklen_t;
            // SAFETY: `dev` is NUL-terminated and outlives the call.
            let rc =
                unsafe { libc::setsockopt(raw, libc::SOL_SOCKET, libc::SO_BINDTODEVICE, dev.as_ptr().cast(), len) };
            check(rc, "SO_BINDTODEVICE")?;
        }
        let addr = sockaddr_in(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 67));
        // SAFETY: a valid sockaddr_in of the given size.
        let rc = unsafe {
            libc::bind(
                raw,
                (&addr as *const libc::sockaddr_in).cast(),
                size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        check(rc, "bind 0.0.0.0:67")?;
        Ok(RelaySocket {
            fd,
            rx: Box::new([[0; DATAGRAM]; BATCH]),
            rx_len: [0; BATCH],
            tx: Box::new([[0; DATAGRAM]; BATCH]),
            tx_meta: [Tx::frame(0); BATCH],
            tx_head: 0,
            tx_tail: 0,
            stats: TransportStats::default(),
        })
    }

    /// Hands queued datagrams to the kernel; true when none are left.
    fn flush(&mut self) -> bool {
        while self.tx_head < self.tx_tail {
            let (from, to) = (self.tx_head, self.tx_tail);
            let count = to - from;
            // SAFETY: all-zero bytes are valid for these plain C structures (null pointers, zeros).
            let (mut names, mut iov, mut hdrs, mut control): (
                [libc::sockaddr_in; BATCH],
                [libc::iovec; BATCH],
                [libc::mmsghdr; BATCH],
                [[u64; CONTROL_WORDS]; BATCH],
            ) = unsafe { (zeroed(), zeroed(), zeroed(), zeroed()) };
            for k in 0..count {
                let m = self.tx_meta[from + k];
                names[k] = sockaddr_in(m.dst);
                iov[k] = libc::iovec { iov_base: self.tx[from + k].as_mut_ptr().cast(), iov_len: m.len };
                let h = &mut hdrs[k].msg_hdr;
                h.msg_iov = &mut iov[k];
                h.msg_iovlen = 1;
                h.msg_name = (&mut names[k] as *mut libc::sockaddr_in).cast();
                h.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
                if !m.src.is_unspecified() {
                    h.msg_control = control[k].as_mut_ptr().cast();
                    // SAFETY: CMSG_SPACE is a pure size computation.
                    h.msg_controllen = unsafe { libc::CMSG_SPACE(size_of::<libc::in_pktinfo>() as u32) } as _;
                    // SAFETY: msg_control points to CONTROL_WORDS * 8 = 32 bytes, room for one
                    // cmsghdr (16) and an in_pktinfo (12); CMSG_FIRSTHDR is therefore non-null.
                    unsafe {
                        let c = libc::CMSG_FIRSTHDR(h);
                        (*c).cmsg_level = libc::IPPROTO_IP;
                        (*c).cmsg_type = libc::IP_PKTINFO;
                        (*c).cmsg_len = libc::CMSG_LEN(size_of::<libc::in_pktinfo>() as u32) as _;
                        let info = libc::in_pktinfo {
                            ipi_ifindex: 0,
                            // The source address of the datagram: this relay agent's.
                            ipi_spec_dst: libc::in_addr { s_addr: u32::from(m.src).to_be() },
                            ipi_addr: libc::in_addr { s_addr: 0 },
                        };
                        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<libc::in_pktinfo>(), info);
                    }
                }
            }
            // SAFETY: headers point into buffers that live until the call returns.
            let rc =
                unsafe { libc::sendmmsg(self.fd.as_raw_fd(), hdrs.as_mut_ptr(), count as u32, libc::MSG_DONTWAIT) };
            if rc > 0 {
                self.tx_head += rc as usize;
                self.stats.tx += rc as u64;
                continue;
            }
            let e = io::Error::last_os_error();
            if is_transient(&e) {
                return false;
            }
            // Refused for good (no route to the server, a relay address that is not local).
            self.stats.tx_errors += 1;
            self.tx_head += 1;
        }
        self.tx_head = 0;
        self.tx_tail = 0;
        true
    }
}

impl Transport for RelaySocket {
    fn framing(&self) -> Framing {
        Framing::Udp
    }

    fn mac(&self) -> Option<[u8; 6]> {
        None
    }

    fn send<F: FnMut(&mut [u8]) -> Option<Tx>>(&mut self, max: usize, mut fill: F) -> io::Result<usize> {
        if !self.flush() {
            return Ok(0);
        }
        let mut n = 0;
        while n < max.min(BATCH) {
            let Some(mut tx) = fill(&mut self.tx[n][..]) else { break };
            tx.len = tx.len.min(DATAGRAM);
            self.tx_meta[n] = tx;
            n += 1;
        }
        self.tx_tail = n;
        self.flush();
        Ok(n)
    }

    fn recv<F: FnMut(&[u8])>(&mut self, mut each: F) -> io::Result<usize> {
        // SAFETY: all-zero bytes are valid for these plain C structures (null pointers, zeros).
        let (mut iov, mut hdrs): ([libc::iovec; BATCH], [libc::mmsghdr; BATCH]) = unsafe { (zeroed(), zeroed()) };
        for i in 0..BATCH {
            iov[i] = libc::iovec { iov_base: self.rx[i].as_mut_ptr().cast(), iov_len: DATAGRAM };
            hdrs[i].msg_hdr.msg_iov = &mut iov[i];
            hdrs[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: every header points into buffers that live until the call returns.
        let n = unsafe {
            libc::recvmmsg(
                self.fd.as_raw_fd(),
                hdrs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if is_transient(&e) { Ok(0) } else { Err(e) };
        }
        for (len, h) in self.rx_len.iter_mut().zip(&hdrs[..n as usize]) {
            *len = h.msg_len as usize;
        }
        self.stats.rx += n as u64;
        for i in 0..n as usize {
            each(&self.rx[i][..self.rx_len[i]]);
        }
        Ok(n as usize)
    }

    fn reflect<F: FnMut(&mut [u8], usize) -> Option<usize>>(&mut self, _answer: F) -> io::Result<(usize, usize)> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "the reflector runs on Ethernet frames, not relayed datagrams"))
    }

    fn wait(&mut self, timeout: Duration) -> io::Result<()> {
        let pending = !self.flush();
        wait_one(self.fd.as_fd(), pending, timeout)?;
        if pending {
            self.flush();
        }
        Ok(())
    }

    fn pending(&self) -> bool {
        self.tx_head < self.tx_tail
    }

    fn stats(&mut self) -> TransportStats {
        self.stats
    }
}
