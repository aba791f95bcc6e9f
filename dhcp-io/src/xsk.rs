//! xsk: AF_XDP sockets, the kernel-bypass path, and its [`PacketIo`] for the server's workers.
//! Everything that touches the UMEM (the memory shared with the kernel) and the one crate that
//! speaks AF_XDP (xdpilone, EUPL-1.2) stay in this module.
//!
//! Layout: per receive queue of the interface one UMEM, and on it one socket per worker
//! (`XDP_SHARED_UMEM`), so that every worker serves even when all DHCP arrives on one queue:
//! the XDP program picks the socket by the owner of the client. A queue's fill and completion
//! rings are shared by its sockets and taken under a lock once per batch.
//!
//! Ownership: a UMEM frame belongs to the kernel, or to whoever holds its [`XskFrame`] token
//! (taken from an RX ring, or from a socket's own transmit reserve). Tokens are neither `Clone`
//! nor constructible outside this module, so holding one is what makes its bytes exclusively
//! ours: the only `unsafe` slice of UMEM memory is made here, from a token.
//!
//! Must never: give a frame to the kernel twice, read a frame the kernel owns, or block
//! (except in [`PacketIo::wait`]).

use crate::sys::{self, Doorbell};
use crate::{reply_mac, Datagram, PacketIo, RecvMeta, Transmit, Unusable, MAX_MESSAGE};
use anyhow::{anyhow, bail, Context, Result};
use dhcp_core::engine::InterfaceId;
use dhcp_core::wire::{ether, frame};
use std::ffi::CString;
use std::num::NonZeroU32;
use std::os::fd::BorrowedFd;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use xdpilone::xdp::XdpDesc;
use xdpilone::{DeviceQueue, IfInfo, RingRx, RingTx, Socket, SocketConfig, Umem, UmemConfig};

/// Bytes per UMEM frame (one page: any Ethernet frame with room to spare).
pub const FRAME_SIZE: u32 = 4096;
/// Frames per receive queue; the fill ring has twice as many slots (the kernel consumes it
/// lazily, see NOTES.md).
pub const FRAMES_PER_QUEUE: u32 = 4096;
/// Descriptors in each socket's RX and TX ring.
pub const RING_SIZE: u32 = 2048;

/// Whether the driver moves frames itself (zero-copy) or the kernel copies them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    ZeroCopy,
    Copy,
}

/// A UMEM frame owned by the holder of this token: received from an RX ring, or taken from a
/// socket's transmit reserve. Give it back with [`XskSocket::transmit`] or
/// [`XskSocket::release`]; dropping it loses the frame until the socket closes.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a frame must be transmitted or released"]
pub struct XskFrame {
    queue: u32,
    /// Where the packet starts in the UMEM (after any headroom the kernel left).
    addr: u64,
    len: u32,
}

impl XskFrame {
    /// Bytes of the packet (received, or to transmit).
    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sets the length to transmit (at most the room after the packet's start).
    pub fn set_len(&mut self, len: usize) {
        self.len = len.min(room(self.addr)) as u32;
    }
}

/// Bytes from `addr` to the end of its chunk.
fn room(addr: u64) -> usize {
    FRAME_SIZE as usize - (addr % FRAME_SIZE as u64) as usize
}

/// The UMEM memory of one queue: an anonymous mapping shared with the kernel.
#[derive(Debug)]
struct Area {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory; access to each frame is handed from owner to owner
// through the rings and `XskFrame` tokens, never shared.
unsafe impl Send for Area {}
// SAFETY: as above: distinct frames are only ever touched by the holder of their token.
unsafe impl Sync for Area {}

impl Area {
    fn new(len: usize) -> Result<Area> {
        // SAFETY: anonymous private mapping; checked for failure below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            bail!("mmap of {len} bytes for the UMEM: {}", std::io::Error::last_os_error());
        }
        Ok(Area { base: NonNull::new(p.cast()).ok_or_else(|| anyhow!("mmap returned null"))?, len })
    }

    fn as_slice_ptr(&self) -> NonNull<[u8]> {
        NonNull::slice_from_raw_parts(self.base, self.len)
    }

    /// Asks the CPU to start loading a received packet's bytes. On veth and in copy mode the
    /// kernel wrote them on another core, so every cache line of a frame is a miss; issued for
    /// a whole batch as it is received, the misses overlap instead of stalling one by one in
    /// parsing and checksumming (measured: those two were a fifth of a worker's user time).
    #[inline]
    fn prefetch(&self, addr: u64, len: u32) {
        let start = self.base.as_ptr().wrapping_add(addr as usize);
        for off in (0..(len as usize).min(room(addr))).step_by(64) {
            dhcp_core::hint::prefetch(start.wrapping_add(off).cast_const());
        }
    }

    /// The bytes of `frame`, from its start to the end of its chunk.
    // Frames are handed between owners through the rings, not through Rust borrows: the
    // exclusive borrow of the token is what makes the `&mut` exclusive.
    #[allow(clippy::mut_from_ref)]
    fn bytes<'a>(&'a self, frame: &'a mut XskFrame) -> &'a mut [u8] {
        let addr = frame.addr as usize;
        let end = addr + room(frame.addr);
        assert!(end <= self.len, "UMEM address out of range");
        // SAFETY: in range (checked); the frame is owned by the token's holder (tokens are
        // unique and only made from ring descriptors of this area, see `XskSocket`), and the
        // token stays mutably borrowed while the slice lives.
        unsafe { std::slice::from_raw_parts_mut(self.base.as_ptr().add(addr), end - addr) }
    }
}

impl Drop for Area {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `new` mapped; the UMEM and sockets using it are gone
        // (they are dropped before the last `Arc<Queue>` that holds this).
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// What the sockets of one receive queue share.
struct Queue {
    id: u32,
    area: Area,
    /// Fill and completion rings, and frames the fill ring had no room for yet.
    fcq: Mutex<(DeviceQueue, Vec<u64>)>,
    /// First address of the frames kept out of the fill ring for transmissions of our own.
    reserve_from: u64,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").field("id", &self.id).finish_non_exhaustive()
    }
}

impl Queue {
    /// Moves finished transmissions out of the completion ring: received frames (answered in
    /// place) into `fill`, frames of the transmit reserve into `own`. Then gives `fill` to the
    /// fill ring. One lock for both.
    fn recycle(&self, fill: &mut Vec<u64>, own: &mut Vec<u64>) {
        let Ok(mut guard) = self.fcq.lock() else { return };
        let (dq, spare) = &mut *guard;
        {
            let mut done = dq.complete(FRAMES_PER_QUEUE);
            while let Some(addr) = done.read() {
                let chunk = addr & !(FRAME_SIZE as u64 - 1);
                if chunk >= self.reserve_from {
                    own.push(chunk);
                } else {
                    fill.push(chunk);
                }
            }
            done.release();
        }
        spare.append(fill);
        if spare.is_empty() {
            return;
        }
        // Descriptors point past the kernel's headroom; the fill ring takes chunk addresses.
        let mut ring = dq.fill(spare.len() as u32);
        let n = ring.insert(spare.iter().map(|a| a & !(FRAME_SIZE as u64 - 1))) as usize;
        ring.commit();
        drop(ring);
        spare.drain(..n);
        // Copy mode with need-wakeup: tell the kernel the fill ring has frames again.
        if dq.needs_wakeup() {
            dq.wake();
        }
    }
}

/// One AF_XDP socket: one worker's (or the generator's) on one receive queue.
pub struct XskSocket {
    rx: RingRx,
    tx: RingTx,
    queue: Arc<Queue>,
    /// Frames to give back to the fill ring at the next recycle.
    free: Vec<u64>,
    /// Frames of the transmit reserve not in use.
    own: Vec<u64>,
    descs: Vec<XdpDesc>,
}

impl std::fmt::Debug for XskSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XskSocket").field("queue", &self.queue.id).field("fd", &self.rx.as_raw_fd()).finish()
    }
}

impl XskSocket {
    /// The receive queue this socket is bound to.
    pub fn queue(&self) -> u32 {
        self.queue.id
    }

    /// The socket, for the XDP program's socket map and for poll.
    pub fn fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the rings keep the socket open for as long as `self` lives.
        unsafe { BorrowedFd::borrow_raw(self.rx.as_raw_fd()) }
    }

    /// Takes up to `max` received frames and appends them to `out`; returns how many.
    pub fn receive(&mut self, out: &mut Vec<XskFrame>, max: usize) -> usize {
        let mut rx = self.rx.receive(max as u32);
        let mut n = 0;
        while let Some(d) = rx.read() {
            self.queue.area.prefetch(d.addr, d.len);
            out.push(XskFrame { queue: self.queue.id, addr: d.addr, len: d.len });
            n += 1;
        }
        rx.release();
        n
    }

    /// The frame's bytes, from the packet's start to the end of its chunk: the packet is the
    /// first [`XskFrame::len`] bytes; the rest is room for a longer reply.
    pub fn buffer<'a>(&'a self, frame: &'a mut XskFrame) -> &'a mut [u8] {
        assert_eq!(frame.queue, self.queue.id, "a frame of another queue's UMEM");
        self.queue.area.bytes(frame)
    }

    /// A frame of the transmit reserve for a message of our own (see [`Options::reserve`]).
    pub fn take_own(&mut self) -> Option<XskFrame> {
        if self.own.is_empty() {
            self.recycle();
        }
        let addr = self.own.pop()?;
        Some(XskFrame { queue: self.queue.id, addr, len: 0 })
    }

    /// Gives a frame back unsent.
    pub fn release(&mut self, frame: XskFrame) {
        if frame.addr >= self.queue.reserve_from {
            self.own.push(frame.addr);
        } else {
            self.free.push(frame.addr);
        }
    }

    /// Queues frames for transmission from the front of `frames` and kicks the kernel (copy
    /// mode sends only on a kick, a limited number per kick). Returns how many were queued;
    /// they are removed from `frames`, the rest stay the caller's.
    pub fn transmit(&mut self, frames: &mut Vec<XskFrame>) -> usize {
        self.descs.clear();
        self.descs.extend(frames.iter().map(|f| XdpDesc { addr: f.addr, len: f.len, options: 0 }));
        let mut queued = 0;
        // A full TX ring empties as the kernel sends: kick and retry a few times.
        for _ in 0..8 {
            if queued < self.descs.len() {
                let mut tx = self.tx.transmit((self.descs.len() - queued) as u32);
                queued += tx.insert(self.descs[queued..].iter().copied()) as usize;
                tx.commit();
            }
            self.tx.wake();
            if queued == self.descs.len() && self.tx.pending() == 0 {
                break;
            }
        }
        frames.drain(..queued);
        queued
    }

    /// Whether transmissions are still waiting in the TX ring.
    pub fn tx_pending(&self) -> bool {
        self.tx.pending() > 0
    }

    /// Returns released frames to the fill ring and collects finished transmissions: one lock.
    pub fn recycle(&mut self) {
        self.queue.recycle(&mut self.free, &mut self.own);
    }

    /// Whether frames wait to go back to the kernel (recycle takes the queue's lock: an idle
    /// worker skips it when there is nothing to give).
    pub fn has_released(&self) -> bool {
        !self.free.is_empty()
    }
}

/// How to open an interface's AF_XDP sockets.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Frames of each queue kept out of the fill ring for transmissions of the socket's own
    /// ([`XskSocket::take_own`]): a load generator sends requests; a server answers in the
    /// frames it received and needs none.
    pub reserve: u32,
}

/// The AF_XDP sockets of one interface: per socket owner (worker) one socket per receive
/// queue, and the UMEMs, which must outlive the sockets and stay on the thread that made them.
pub struct XskSet {
    pub mode: Mode,
    /// Per owner, its socket on each receive queue (taken by the workers at start).
    pub sockets: Vec<Vec<XskSocket>>,
    umems: Vec<Umem>,
}

impl std::fmt::Debug for XskSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XskSet").field("mode", &self.mode).field("umems", &self.umems.len()).finish()
    }
}

/// Opens `owners` sockets on every receive queue of `interface`: zero-copy if the driver
/// supports it, copy mode otherwise.
pub fn open(interface: &str, owners: u32, opts: Options) -> Result<XskSet> {
    match open_mode(interface, owners, Mode::ZeroCopy, opts) {
        Ok(set) => Ok(set),
        Err(e) if is_unsupported(&e) => open_mode(interface, owners, Mode::Copy, opts),
        Err(e) => Err(e),
    }
}

/// The driver refused a zero-copy bind: copy mode is the answer, not a failure.
#[derive(Debug)]
struct ZeroCopyUnsupported(std::io::Error);

impl std::fmt::Display for ZeroCopyUnsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "zero-copy not supported by the driver ({})", self.0)
    }
}

impl std::error::Error for ZeroCopyUnsupported {}

fn is_unsupported(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<ZeroCopyUnsupported>())
}

fn errno(e: xdpilone::Errno) -> std::io::Error {
    std::io::Error::from_raw_os_error(e.get_raw())
}

fn open_mode(interface: &str, owners: u32, mode: Mode, opts: Options) -> Result<XskSet> {
    let name = CString::new(interface).context("interface name")?;
    let mut sockets: Vec<Vec<XskSocket>> = (0..owners).map(|_| Vec::new()).collect();
    let mut umems = Vec::new();
    for q in 0..sys::rx_queues(interface) {
        let mut info = IfInfo::invalid();
        info.from_name(&name).map_err(errno).with_context(|| format!("interface {interface}"))?;
        info.set_queue(q);
        let (umem, queue, rings) = open_queue(&info, q, owners, mode, opts.reserve)?;
        let own: Vec<u64> =
            (queue.reserve_from / FRAME_SIZE as u64..FRAMES_PER_QUEUE as u64).map(|i| i * FRAME_SIZE as u64).collect();
        for (w, (rx, tx)) in rings.into_iter().enumerate() {
            // The reserve is the first socket's: the generator opens one socket per queue.
            let own = if w == 0 { own.clone() } else { Vec::new() };
            let descs = Vec::with_capacity(crate::BATCH);
            let free = Vec::with_capacity(4 * crate::BATCH);
            sockets[w].push(XskSocket { rx, tx, queue: queue.clone(), free, own, descs });
        }
        umems.push(umem);
    }
    Ok(XskSet { mode, sockets, umems })
}

/// One queue: its UMEM, the shared rings, and one socket's RX/TX rings per owner.
type QueueParts = (Umem, Arc<Queue>, Vec<(RingRx, RingTx)>);

fn open_queue(info: &IfInfo, q: u32, owners: u32, mode: Mode, reserve: u32) -> Result<QueueParts> {
    let area = Area::new((FRAMES_PER_QUEUE * FRAME_SIZE) as usize)?;
    let config = UmemConfig {
        fill_size: 2 * FRAMES_PER_QUEUE,
        complete_size: FRAMES_PER_QUEUE,
        frame_size: FRAME_SIZE,
        headroom: 0,
        flags: 0,
    };
    // SAFETY: the area is page-aligned memory that outlives the UMEM (the `Arc<Queue>` holding
    // it is dropped after the UMEM: sockets hold it, and `XskSet` drops UMEMs after them).
    let umem = unsafe { Umem::new(config, area.as_slice_ptr()) }.map_err(errno).context("registering the UMEM")?;
    let mut rings = Vec::new();
    let mut device: Option<DeviceQueue> = None;
    for w in 0..owners {
        let sock = if w == 0 { Socket::with_shared(info, &umem) } else { Socket::new(info) }
            .map_err(errno)
            .context("AF_XDP socket")?;
        if w == 0 {
            device = Some(umem.fq_cq(&sock).map_err(errno).context("fill and completion rings")?);
        }
        // Only the socket that owns the UMEM sets the mode; the others inherit it.
        let bind_flags = match (w, mode) {
            (0, Mode::ZeroCopy) => SocketConfig::XDP_BIND_ZEROCOPY | SocketConfig::XDP_BIND_NEED_WAKEUP,
            (0, Mode::Copy) => SocketConfig::XDP_BIND_COPY | SocketConfig::XDP_BIND_NEED_WAKEUP,
            _ => 0,
        };
        let cfg = SocketConfig { rx_size: NonZeroU32::new(RING_SIZE), tx_size: NonZeroU32::new(RING_SIZE), bind_flags };
        let user = umem.rx_tx(&sock, &cfg).map_err(errno).context("RX/TX rings")?;
        let rx = user.map_rx().map_err(errno).context("mapping the RX ring")?;
        let tx = user.map_tx().map_err(errno).context("mapping the TX ring")?;
        bind_retrying(&umem, &user, mode, w)?;
        raise_tx_budget(rx.as_raw_fd());
        rings.push((rx, tx));
    }
    let mut dq = device.ok_or_else(|| anyhow!("no sockets"))?;
    let reserve = reserve.min(FRAMES_PER_QUEUE / 2);
    let reserve_from = ((FRAMES_PER_QUEUE - reserve) * FRAME_SIZE) as u64;
    let mut spare: Vec<u64> = (0..reserve_from).step_by(FRAME_SIZE as usize).collect();
    let mut fill = dq.fill(spare.len() as u32);
    let n = fill.insert(spare.iter().copied()) as usize;
    fill.commit();
    drop(fill);
    spare.drain(..n);
    let queue = Arc::new(Queue { id: q, area, fcq: Mutex::new((dq, spare)), reserve_from });
    Ok((umem, queue, rings))
}

/// Binds, retrying while a socket closed moments ago still holds the queue (the kernel tears
/// sockets down lazily: EBUSY for ~20 ms).
fn bind_retrying(umem: &Umem, user: &xdpilone::User, mode: Mode, w: u32) -> Result<()> {
    for _ in 0..50 {
        match umem.bind(user) {
            Ok(()) => return Ok(()),
            Err(e) if e.get_raw() == libc::EBUSY => std::thread::sleep(Duration::from_millis(20)),
            Err(e) if w == 0 && mode == Mode::ZeroCopy && matches!(e.get_raw(), libc::EOPNOTSUPP | libc::EINVAL) => {
                return Err(ZeroCopyUnsupported(errno(e)).into())
            }
            Err(e) => return Err(errno(e)).context("binding the AF_XDP socket"),
        }
    }
    bail!("binding the AF_XDP socket: queue still busy after 1 s")
}

/// `setsockopt(SOL_XDP, XDP_MAX_TX_SKB_BUDGET)` (Linux 6.18): in copy mode one `sendto` kick
/// sends at most 32 frames unless raised; a batch of replies is up to 64.
const XDP_MAX_TX_SKB_BUDGET: libc::c_int = 9;
const TX_BUDGET: u32 = 256;

fn raise_tx_budget(fd: libc::c_int) {
    if let Err(e) = sys::setsockopt(fd, libc::SOL_XDP, XDP_MAX_TX_SKB_BUDGET, &TX_BUDGET, "XDP_MAX_TX_SKB_BUDGET") {
        // Older kernels: the default budget; `XskSocket::transmit` kicks again while frames wait.
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| log::info!("{e}: default TX budget"));
    }
}

/// A worker's AF_XDP path: its socket on every receive queue of one interface. Frames are
/// answered in place: the request's DHCP message is copied aside, the engine writes the reply
/// at the frame's payload offset, [`PacketIo::seal`] rewrites the headers around it (MACs, the
/// request's VLAN tags, IPv4, UDP and checksums), and the same frame goes out on the socket it
/// came from.
#[derive(Debug)]
pub struct XdpIo {
    sockets: Vec<XskSocket>,
    interface: Option<InterfaceId>,
    /// The interface's own MAC: the source of every reply.
    mac: [u8; 6],
    taken: Vec<XskFrame>,
    out: Vec<XskFrame>,
    waiter: sys::Waiter,
}

/// A received frame on the AF_XDP path: the UMEM frame and the socket (queue) it came from.
#[derive(Debug)]
#[must_use = "a frame must be sent or released"]
pub struct XdpFrame {
    socket: usize,
    frame: XskFrame,
}

impl XdpIo {
    /// A worker's sockets (one per queue of `interface`'s [`XskSet`]); `interface` is its
    /// number in the configuration, `mac` its hardware address.
    pub fn new(sockets: Vec<XskSocket>, interface: Option<InterfaceId>, mac: [u8; 6]) -> XdpIo {
        let waiter = sys::Waiter::new(sockets.iter().map(|s| s.fd()));
        XdpIo { sockets, interface, mac, taken: Vec::with_capacity(crate::BATCH), out: Vec::new(), waiter }
    }
}

impl PacketIo for XdpIo {
    type Frame = XdpFrame;

    fn receive(&mut self, out: &mut Vec<XdpFrame>, max: usize) -> usize {
        let mut got = 0;
        for (i, s) in self.sockets.iter_mut().enumerate() {
            let n = s.receive(&mut self.taken, max - got);
            if n == 0 && s.has_released() {
                // Idle here: frames released earlier go back to the kernel.
                s.recycle();
            }
            out.extend(self.taken.drain(..).map(|frame| XdpFrame { socket: i, frame }));
            got += n;
        }
        got
    }

    fn peek<'a>(&'a mut self, f: &'a mut XdpFrame) -> Option<&'a [u8]> {
        let len = f.frame.len();
        let buf = self.sockets[f.socket].buffer(&mut f.frame);
        frame::payload_hint(&buf[..len.min(buf.len())])
    }

    fn datagram<'a>(
        &'a mut self,
        f: &'a mut XdpFrame,
        scratch: &'a mut [u8; MAX_MESSAGE],
    ) -> Result<Datagram<'a>, Unusable> {
        let len = f.frame.len();
        let buf = self.sockets[f.socket].buffer(&mut f.frame);
        let u = frame::UdpFrame::parse_with(&buf[..len.min(buf.len())], frame::UdpChecksum::AllowOffload)
            .map_err(Unusable::Malformed)?;
        if u.dst_port != dhcp_common::SERVER_PORT {
            return Err(Unusable::OtherPort);
        }
        let n = u.payload.len().min(MAX_MESSAGE);
        scratch[..n].copy_from_slice(&buf[u.payload.start..u.payload.start + n]);
        let at = frame::payload_offset(u.l2.vlan_count);
        let end = (at + MAX_MESSAGE).min(buf.len());
        let meta = RecvMeta {
            interface: self.interface,
            vlan: u.l2.tags().last().map(|t| t.vid()),
            src: std::net::SocketAddrV4::new(u.src_ip, u.src_port),
            dst: u.dst_ip,
        };
        Ok(Datagram { meta, request: &scratch[..n], reply: &mut buf[at..end] })
    }

    fn seal(&mut self, f: &mut XdpFrame, reply: &Transmit) -> bool {
        let buf = self.sockets[f.socket].buffer(&mut f.frame);
        // The request's Ethernet header is intact: the reply was written after it.
        let Ok(req) = ether::Header::parse(buf) else { return false };
        let l2 = ether::Header { dst: reply_mac(&reply.to, req.src), src: self.mac, ..req };
        let (src, dst) = ((reply.from, dhcp_common::SERVER_PORT), (reply.to.ip(), reply.to.port()));
        match frame::write_headers(buf, &l2, src, dst, reply.len, 64) {
            Ok(total) => {
                f.frame.set_len(total);
                true
            }
            Err(_) => false,
        }
    }

    fn send(&mut self, frames: &mut Vec<XdpFrame>) -> usize {
        let mut sent = 0;
        for (i, s) in self.sockets.iter_mut().enumerate() {
            self.out.clear();
            let mut k = 0;
            while k < frames.len() {
                if frames[k].socket == i {
                    self.out.push(frames.swap_remove(k).frame);
                } else {
                    k += 1;
                }
            }
            sent += s.transmit(&mut self.out);
            for f in self.out.drain(..) {
                s.release(f);
            }
            // Answered frames come back through the completion ring and go to the fill ring.
            s.recycle();
        }
        sent
    }

    fn release(&mut self, frames: &mut Vec<XdpFrame>) {
        for f in frames.drain(..) {
            self.sockets[f.socket].release(f.frame);
        }
    }

    fn wait(&mut self, timeout: Duration, bell: Option<&Doorbell>) {
        self.waiter.wait(timeout, bell);
    }
}
