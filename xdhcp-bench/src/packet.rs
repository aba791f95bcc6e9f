//! The `AF_PACKET` transport: whole Ethernet frames on one interface through a raw packet
//! socket. Frames are sent in batches of [`BATCH`] with `sendmmsg`; they are received either
//! from a memory-mapped ring ([`Rx::Ring`], see [`super::ring`]: no system call, no copy) or
//! in batches with `recvmmsg` ([`Rx::Copy`]).
//!
//! A classic BPF filter, attached before the socket is bound so that nothing else is ever
//! queued, keeps only what the role needs: IPv4/UDP to port 68 and ARP for the generator
//! (replies to its clients, and neighbour queries for the addresses they hold), IPv4/UDP to
//! port 67 for the reflector. The socket ignores its own transmissions (`PACKET_IGNORE_OUTGOING`),
//! bypasses the qdisc, and puts the interface in promiscuous mode while open, because replies
//! are unicast to the emulated clients' MAC addresses, which are not the interface's.

use super::ring::{RxRing, Slot};
use super::transport::{Framing, Transport, TransportStats, Tx};
use dhcp_io::sys::{check, if_index, is_transient, mac_address, set_buffer, setsockopt, wait_one};
use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// Frames per `recvmmsg`/`sendmmsg` call.
pub const BATCH: usize = 64;
/// Size of each frame buffer: any Ethernet frame without jumbo frames, with VLAN tags.
pub const FRAME: usize = 2048;

/// How frames are received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Rx {
    /// From a receive ring shared with the kernel (PACKET_MMAP, TPACKET_V2).
    Ring,
    /// In batches of copies with `recvmmsg`.
    Copy,
}

/// What the socket receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// DHCP replies (UDP to port 68) and ARP: the generator's side.
    Client,
    /// DHCP requests (UDP to port 67): the reflector's side.
    Server,
}

/// Classic BPF accepting IPv4 UDP (not a later fragment) to `port`, and ARP when `arp`.
fn filter(port: u16, arp: bool) -> [libc::sock_filter; 12] {
    let op = |code: u32, jt: u8, jf: u8, k: u32| libc::sock_filter { code: code as u16, jt, jf, k };
    let (ld, jmp, ret) = (libc::BPF_LD, libc::BPF_JMP, libc::BPF_RET);
    [
        /* 0 */ op(ld | libc::BPF_H | libc::BPF_ABS, 0, 0, 12), // ethertype
        /* 1 */ op(jmp | libc::BPF_JEQ | libc::BPF_K, if arp { 8 } else { 9 }, 0, 0x0806),
        /* 2 */ op(jmp | libc::BPF_JEQ | libc::BPF_K, 0, 8, 0x0800),
        /* 3 */ op(ld | libc::BPF_B | libc::BPF_ABS, 0, 0, 23), // IP protocol
        /* 4 */ op(jmp | libc::BPF_JEQ | libc::BPF_K, 0, 6, 17),
        /* 5 */ op(ld | libc::BPF_H | libc::BPF_ABS, 0, 0, 20), // flags and fragment offset
        /* 6 */ op(jmp | libc::BPF_JSET | libc::BPF_K, 4, 0, 0x1fff),
        /* 7 */ op(libc::BPF_LDX | libc::BPF_B | libc::BPF_MSH, 0, 0, 14), // X = IP header length
        /* 8 */ op(ld | libc::BPF_H | libc::BPF_IND, 0, 0, 16), // UDP destination port
        /* 9 */ op(jmp | libc::BPF_JEQ | libc::BPF_K, 0, 1, port as u32),
        /* 10 */ op(ret | libc::BPF_K, 0, 0, 0x0004_0000),
        /* 11 */ op(ret | libc::BPF_K, 0, 0, 0),
    ]
}

/// A raw packet socket bound to one interface, with its batch buffers.
pub struct PacketSocket {
    fd: OwnedFd,
    ifindex: i32,
    mac: [u8; 6],
    /// The receive ring, for [`Rx::Ring`].
    ring: Option<RxRing>,
    /// Receive buffers, for [`Rx::Copy`].
    rx: Box<[[u8; FRAME]; BATCH]>,
    rx_len: [usize; BATCH],
    tx: Box<[[u8; FRAME]; BATCH]>,
    tx_len: [usize; BATCH],
    /// Frames `tx[tx_head..tx_tail]` are written but not yet taken by the kernel.
    tx_head: usize,
    tx_tail: usize,
    stats: TransportStats,
}

impl std::fmt::Debug for PacketSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketSocket")
            .field("ifindex", &self.ifindex)
            .field("mac", &self.mac)
            .field("ring", &self.ring.is_some())
            .finish_non_exhaustive()
    }
}

fn ll_addr(ifindex: i32, protocol: u16) -> libc::sockaddr_ll {
    // SAFETY: all-zero bytes are a valid sockaddr_ll.
    let mut sll: libc::sockaddr_ll = unsafe { zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = protocol.to_be();
    sll.sll_ifindex = ifindex;
    sll
}

/// Sends `iov` (one frame each) with `sendmmsg`; returns how many the kernel took, skipping
/// (and counting) frames it refuses for good, or `Err` when it took none for now (full queue).
fn transmit(fd: i32, ifindex: i32, iov: &mut [libc::iovec], stats: &mut TransportStats) -> Result<usize, ()> {
    let mut ip = ll_addr(ifindex, libc::ETH_P_IP as u16);
    let mut arp = ll_addr(ifindex, libc::ETH_P_ARP as u16);
    // SAFETY: all-zero bytes are a valid mmsghdr (null pointers, zero lengths).
    let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
    let count = iov.len().min(BATCH);
    for (h, v) in hdrs.iter_mut().zip(iov.iter_mut()) {
        // SAFETY: each iovec points at a frame of at least 14 bytes (Ethernet header).
        let is_arp = unsafe { *v.iov_base.cast::<u8>().add(12) == 0x08 && *v.iov_base.cast::<u8>().add(13) == 0x06 };
        h.msg_hdr.msg_iov = v;
        h.msg_hdr.msg_iovlen = 1;
        // The protocol tells the kernel what it sends (it sets skb->protocol from it).
        let name: *mut libc::sockaddr_ll = if is_arp { &mut arp } else { &mut ip };
        h.msg_hdr.msg_name = name.cast();
        h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    }
    let mut at = 0;
    while at < count {
        // SAFETY: headers point into frames and addresses that live until the call returns.
        let rc = unsafe { libc::sendmmsg(fd, hdrs[at..count].as_mut_ptr(), (count - at) as u32, libc::MSG_DONTWAIT) };
        if rc > 0 {
            at += rc as usize;
            stats.tx += rc as u64;
            continue;
        }
        let e = io::Error::last_os_error();
        if is_transient(&e) {
            return if at == 0 { Err(()) } else { Ok(at) };
        }
        // This frame is refused for good (too long, interface down): skip it.
        stats.tx_errors += 1;
        at += 1;
    }
    Ok(at)
}

/// Sets up a fresh, unbound packet socket for `role`: the filter, our own transmissions
/// ignored, the qdisc bypassed, large buffers.
fn prepare(raw: libc::c_int, role: Role) -> io::Result<()> {
    let mut prog = match role {
        Role::Client => filter(68, true),
        Role::Server => filter(67, false),
    };
    let fprog = libc::sock_fprog { len: prog.len() as u16, filter: prog.as_mut_ptr() };
    setsockopt(raw, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &fprog, "SO_ATTACH_FILTER")?;
    let one: libc::c_int = 1;
    // Both are optimisations (kernels 4.20 and 3.14); receiving also skips outgoing frames.
    let _ = setsockopt(raw, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, &one, "PACKET_IGNORE_OUTGOING");
    let _ = setsockopt(raw, libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, &one, "PACKET_QDISC_BYPASS");
    set_buffer(raw, libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, 64 << 20);
    set_buffer(raw, libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, 16 << 20);
    Ok(())
}

impl PacketSocket {
    /// Opens the socket on `interface` (of the calling thread's network namespace) for `role`,
    /// receiving as `rx` says.
    pub fn open(interface: &str, role: Role, rx: Rx) -> io::Result<PacketSocket> {
        let ifindex = if_index(interface)? as i32;
        // Protocol 0: the socket receives nothing until bound, by which time the filter is on.
        // SAFETY: plain socket creation; the fd is owned right away.
        let fd = unsafe {
            OwnedFd::from_raw_fd(check(
                libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0),
                "socket(AF_PACKET)",
            )?)
        };
        let raw = fd.as_raw_fd();
        prepare(raw, role)?;
        let ring = match rx {
            Rx::Ring => Some(RxRing::new(raw)?),
            Rx::Copy => None,
        };
        let sll = ll_addr(ifindex, libc::ETH_P_ALL as u16);
        // SAFETY: a valid sockaddr_ll of the given size.
        let rc = unsafe {
            libc::bind(
                raw,
                (&sll as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        check(rc, "bind(AF_PACKET)")?;
        let mreq = libc::packet_mreq {
            mr_ifindex: ifindex,
            mr_type: libc::PACKET_MR_PROMISC as u16,
            mr_alen: 0,
            mr_address: [0; 8],
        };
        setsockopt(raw, libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, &mreq, "PACKET_ADD_MEMBERSHIP")?;
        let mac = mac_address(interface)?;
        Ok(PacketSocket {
            fd,
            ifindex,
            mac,
            ring,
            rx: Box::new([[0; FRAME]; BATCH]),
            rx_len: [0; BATCH],
            tx: Box::new([[0; FRAME]; BATCH]),
            tx_len: [0; BATCH],
            tx_head: 0,
            tx_tail: 0,
            stats: TransportStats::default(),
        })
    }

    /// Receives up to a batch into `rx` with `recvmmsg`; returns how many, skipping our own
    /// transmissions.
    fn receive(&mut self) -> io::Result<usize> {
        // SAFETY: all-zero bytes are valid for these plain C structures (null pointers, zeros).
        let (mut names, mut iov, mut hdrs): ([libc::sockaddr_ll; BATCH], [libc::iovec; BATCH], [libc::mmsghdr; BATCH]) =
            unsafe { (zeroed(), zeroed(), zeroed()) };
        for i in 0..BATCH {
            iov[i] = libc::iovec { iov_base: self.rx[i].as_mut_ptr().cast(), iov_len: FRAME };
            hdrs[i].msg_hdr.msg_iov = &mut iov[i];
            hdrs[i].msg_hdr.msg_iovlen = 1;
            hdrs[i].msg_hdr.msg_name = (&mut names[i] as *mut libc::sockaddr_ll).cast();
            hdrs[i].msg_hdr.msg_namelen = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
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
        let mut kept = 0;
        for i in 0..n as usize {
            let truncated = hdrs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            if names[i].sll_pkttype == libc::PACKET_OUTGOING || truncated {
                continue;
            }
            let len = hdrs[i].msg_len as usize;
            if kept != i {
                let (a, b) = self.rx.split_at_mut(i);
                a[kept][..len].copy_from_slice(&b[0][..len]);
            }
            self.rx_len[kept] = len;
            kept += 1;
        }
        self.stats.rx += kept as u64;
        Ok(kept)
    }

    /// Hands queued frames to the kernel; true when none are left.
    fn flush(&mut self) -> bool {
        while self.tx_head < self.tx_tail {
            // SAFETY: all-zero bytes are a valid iovec (null pointer, zero length).
            let mut iov: [libc::iovec; BATCH] = unsafe { zeroed() };
            let count = self.tx_tail - self.tx_head;
            for (k, v) in iov[..count].iter_mut().enumerate() {
                let i = self.tx_head + k;
                *v = libc::iovec { iov_base: self.tx[i].as_mut_ptr().cast(), iov_len: self.tx_len[i] };
            }
            match transmit(self.fd.as_raw_fd(), self.ifindex, &mut iov[..count], &mut self.stats) {
                Ok(n) => self.tx_head += n,
                Err(()) => return false,
            }
        }
        self.tx_head = 0;
        self.tx_tail = 0;
        true
    }

    /// Sends replies that must go out before their buffers are reused: waits for room
    /// (briefly; then the rest is lost, as on a wire). The reflector has nowhere to keep them.
    fn transmit_all(&mut self, iov: &mut [libc::iovec]) -> io::Result<usize> {
        let mut at = 0;
        let mut stalls = 0;
        while at < iov.len() {
            match transmit(self.fd.as_raw_fd(), self.ifindex, &mut iov[at..], &mut self.stats) {
                Ok(m) => at += m,
                Err(()) if stalls < 100 => {
                    stalls += 1;
                    wait_one(self.fd.as_fd(), true, Duration::from_micros(200))?;
                }
                Err(()) => {
                    self.stats.tx_errors += (iov.len() - at) as u64;
                    break;
                }
            }
        }
        Ok(at)
    }
}

impl Transport for PacketSocket {
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
            let Some(tx) = fill(&mut self.tx[n][..]) else { break };
            self.tx_len[n] = tx.len.min(FRAME);
            n += 1;
        }
        self.tx_tail = n;
        self.flush();
        Ok(n)
    }

    fn recv<F: FnMut(&[u8])>(&mut self, mut each: F) -> io::Result<usize> {
        if let Some(ring) = &mut self.ring {
            let mut n = 0;
            while n < BATCH {
                let Some(slot) = ring.take() else { break };
                // SAFETY: the slot is ours until released just below; nothing else refers to it.
                each(unsafe { &slot.bytes_mut()[..slot.len] });
                ring.release();
                n += 1;
            }
            self.stats.rx += n as u64;
            return Ok(n);
        }
        let n = self.receive()?;
        for i in 0..n {
            each(&self.rx[i][..self.rx_len[i]]);
        }
        Ok(n)
    }

    fn reflect<F: FnMut(&mut [u8], usize) -> Option<usize>>(&mut self, mut answer: F) -> io::Result<(usize, usize)> {
        // SAFETY: all-zero bytes are a valid iovec (null pointer, zero length).
        let mut iov: [libc::iovec; BATCH] = unsafe { zeroed() };
        let mut k = 0;
        if let Some(ring) = &mut self.ring {
            // Replies are written over the requests in the ring slots and sent from there;
            // the slots go back to the kernel once sendmmsg has copied them.
            let mut taken = 0;
            while taken < BATCH {
                let Some(slot): Option<Slot> = ring.take() else { break };
                taken += 1;
                // SAFETY: the slot is ours until released below; nothing else refers to it.
                let buf = unsafe { slot.bytes_mut() };
                if let Some(len) = answer(buf, slot.len) {
                    iov[k] = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: len.min(buf.len()) };
                    k += 1;
                }
            }
            self.stats.rx += taken as u64;
            let sent = self.transmit_all(&mut iov[..k]);
            let ring = self.ring.as_mut().expect("ring present");
            for _ in 0..taken {
                ring.release();
            }
            return Ok((taken, sent?));
        }
        let n = self.receive()?;
        for i in 0..n {
            if let Some(len) = answer(&mut self.rx[i][..], self.rx_len[i]) {
                iov[k] = libc::iovec { iov_base: self.rx[i].as_mut_ptr().cast(), iov_len: len.min(FRAME) };
                k += 1;
            }
        }
        let sent = self.transmit_all(&mut iov[..k])?;
        Ok((n, sent))
    }

    fn wait(&mut self, timeout: Duration) -> io::Result<()> {
        let pending = !self.flush();
        // With a ring, frames may wait there already: the kernel's poll looks at its own
        // position in the ring, not ours.
        if !pending && self.ring.as_ref().is_some_and(RxRing::ready) {
            return Ok(());
        }
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
        let mut st = libc::tpacket_stats { tp_packets: 0, tp_drops: 0 };
        let mut len = size_of::<libc::tpacket_stats>() as libc::socklen_t;
        // SAFETY: a valid tpacket_stats and its length. The kernel resets the counters on each
        // read, so they are added up here.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut st as *mut libc::tpacket_stats).cast(),
                &mut len,
            )
        };
        if rc == 0 {
            self.stats.rx_kernel_drops += st.tp_drops as u64;
        }
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the classic BPF program the way the kernel does, for the instructions it uses.
    fn run(prog: &[libc::sock_filter], pkt: &[u8]) -> u32 {
        let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
        let ld = |at: usize, w: usize| -> Option<u32> {
            let b = pkt.get(at..at + w)?;
            Some(b.iter().fold(0u32, |v, &c| v << 8 | c as u32))
        };
        loop {
            let i = prog[pc];
            let code = i.code as u32;
            pc += 1;
            match code {
                c if c == libc::BPF_LD | libc::BPF_H | libc::BPF_ABS => match ld(i.k as usize, 2) {
                    Some(v) => a = v,
                    None => return 0,
                },
                c if c == libc::BPF_LD | libc::BPF_B | libc::BPF_ABS => match ld(i.k as usize, 1) {
                    Some(v) => a = v,
                    None => return 0,
                },
                c if c == libc::BPF_LD | libc::BPF_H | libc::BPF_IND => match ld(x as usize + i.k as usize, 2) {
                    Some(v) => a = v,
                    None => return 0,
                },
                c if c == libc::BPF_LDX | libc::BPF_B | libc::BPF_MSH => match ld(i.k as usize, 1) {
                    Some(v) => x = (v & 0xf) * 4,
                    None => return 0,
                },
                c if c == libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K => {
                    let off = if a == i.k { i.jt } else { i.jf };
                    pc += off as usize;
                }
                c if c == libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K => {
                    let off = if a & i.k != 0 { i.jt } else { i.jf };
                    pc += off as usize;
                }
                c if c == libc::BPF_RET | libc::BPF_K => return i.k,
                _ => panic!("unexpected instruction {code:#x}"),
            }
        }
    }

    fn udp_frame(dst_port: u16, frag: u16, ihl: u8) -> Vec<u8> {
        let mut f = vec![0u8; 14 + ihl as usize * 4 + 8 + 10];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x40 | ihl;
        f[20..22].copy_from_slice(&frag.to_be_bytes());
        f[23] = 17;
        let u = 14 + ihl as usize * 4;
        f[u + 2..u + 4].copy_from_slice(&dst_port.to_be_bytes());
        f
    }

    #[test]
    fn filter_keeps_the_role_s_traffic_only() {
        let client = filter(68, true);
        let server = filter(67, false);
        assert!(run(&client, &udp_frame(68, 0, 5)) > 0);
        assert!(run(&client, &udp_frame(68, 0x4000, 6)) > 0, "don't-fragment and IP options are fine");
        assert_eq!(run(&client, &udp_frame(67, 0, 5)), 0);
        assert_eq!(run(&client, &udp_frame(68, 0x2010, 5)), 0, "later fragments have no UDP header");
        assert!(run(&server, &udp_frame(67, 0, 5)) > 0);
        assert_eq!(run(&server, &udp_frame(68, 0, 5)), 0);
        let mut arp = vec![0u8; 42];
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert!(run(&client, &arp) > 0);
        assert_eq!(run(&server, &arp), 0);
        let mut tcp = udp_frame(68, 0, 5);
        tcp[23] = 6;
        assert_eq!(run(&client, &tcp), 0);
        assert_eq!(run(&client, &[0u8; 10]), 0, "short frames");
    }
}
