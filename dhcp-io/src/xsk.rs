//! xsk: AF_XDP sockets, the kernel-bypass path. Everything that touches the UMEM (the memory
//! shared with the kernel) and the one crate that speaks AF_XDP (xdpilone, EUPL-1.2) stay in
//! this module.
//!
//! Layout: per receive queue of the interface one UMEM, and on it one socket per worker
//! (`XDP_SHARED_UMEM`), so that every worker serves even when all DHCP arrives on one queue —
//! the XDP program picks the socket by the client hash. The queue's fill and completion rings
//! are shared by its sockets and taken under a lock once per batch. A frame belongs to exactly
//! one owner at a time (kernel, or the worker that took it from a ring), which is what makes
//! the in-place reply sound.

use anyhow::{anyhow, bail, Context, Result};
use std::ffi::CString;
use std::num::NonZeroU32;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};
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

/// The UMEM memory of one queue: an anonymous mapping shared with the kernel.
#[derive(Debug)]
pub struct Area {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory; access to each frame is handed from owner to owner
// through the rings (see `frame`), never shared.
unsafe impl Send for Area {}
// SAFETY: as above: distinct frames are only ever touched by their current owner.
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

    /// The frame whose data starts at UMEM address `addr` (descriptors point at the packet,
    /// which the kernel may place after some headroom): from there to the end of its chunk.
    ///
    /// # Safety
    /// The caller must own the frame: it took `addr` from its RX ring (or the completion ring)
    /// and has not yet handed it back to the kernel (TX or fill ring).
    // Frames are handed between owners through the rings, not through Rust borrows: the
    // caller's ownership of `addr` is what makes the `&mut` exclusive.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn frame(&self, addr: u64) -> &mut [u8] {
        let addr = addr as usize;
        let end = (addr / FRAME_SIZE as usize + 1) * FRAME_SIZE as usize;
        assert!(end <= self.len, "UMEM address out of range");
        // SAFETY: in range (checked); exclusive by the caller's ownership of the frame.
        unsafe { std::slice::from_raw_parts_mut(self.base.as_ptr().add(addr), end - addr) }
    }
}

impl Drop for Area {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `new` mapped; the UMEM and sockets using it are gone
        // (they are dropped before the `Arc<QueueShared>` that holds this).
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// What the sockets of one receive queue share.
pub struct QueueShared {
    pub queue: u32,
    pub area: Area,
    /// Fill and completion rings, and frames the fill ring had no room for yet.
    fcq: Mutex<(DeviceQueue, Vec<u64>)>,
}

impl std::fmt::Debug for QueueShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueShared").field("queue", &self.queue).finish_non_exhaustive()
    }
}

impl QueueShared {
    /// Returns `frames` to the kernel's fill ring and collects finished transmissions, which
    /// are free again: one lock per batch.
    pub fn recycle(&self, frames: &mut Vec<u64>) {
        self.complete_into(frames);
        self.refill(frames);
    }

    /// Moves finished transmissions into `frames`.
    pub fn complete_into(&self, frames: &mut Vec<u64>) {
        let Ok(mut guard) = self.fcq.lock() else { return };
        let mut done = guard.0.complete(FRAMES_PER_QUEUE);
        frames.extend(done.by_ref());
        done.release();
    }

    /// Gives `frames` (emptied) to the kernel's fill ring for receiving; what does not fit now
    /// waits for the next call.
    pub fn refill(&self, frames: &mut Vec<u64>) {
        let Ok(mut guard) = self.fcq.lock() else { return };
        let (dq, spare) = &mut *guard;
        spare.append(frames);
        if spare.is_empty() {
            return;
        }
        // Descriptors point past the kernel's headroom; the fill ring takes chunk addresses.
        let mut fill = dq.fill(spare.len() as u32);
        let n = fill.insert(spare.iter().map(|a| a & !(FRAME_SIZE as u64 - 1))) as usize;
        fill.commit();
        drop(fill);
        spare.drain(..n);
        // Copy mode with need-wakeup: tell the kernel the fill ring has frames again.
        if dq.needs_wakeup() {
            dq.wake();
        }
    }
}

/// One worker's socket on one receive queue.
pub struct XskPort {
    pub rx: RingRx,
    pub tx: RingTx,
    pub shared: Arc<QueueShared>,
    /// The socket's fd, for the XDP program's socket map and for poll.
    pub fd: libc::c_int,
}

impl std::fmt::Debug for XskPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XskPort").field("queue", &self.shared.queue).field("fd", &self.fd).finish()
    }
}

impl XskPort {
    /// Receives up to `out.len()` frame descriptors.
    pub fn receive(&mut self, out: &mut [XdpDesc]) -> usize {
        let mut rx = self.rx.receive(out.len() as u32);
        let mut n = 0;
        while n < out.len() {
            match rx.read() {
                Some(d) => {
                    out[n] = d;
                    n += 1;
                }
                None => break,
            }
        }
        rx.release();
        n
    }

    /// Queues frames for transmission and kicks the kernel (copy mode sends only on a kick, a
    /// limited number per kick). Returns how many were queued; the rest stay the caller's.
    pub fn transmit(&mut self, descs: &[XdpDesc]) -> usize {
        let mut queued = 0;
        // A full TX ring empties as the kernel sends: kick and retry a few times before giving
        // a reply up.
        for _ in 0..8 {
            if queued < descs.len() {
                let mut tx = self.tx.transmit((descs.len() - queued) as u32);
                queued += tx.insert(descs[queued..].iter().copied()) as usize;
                tx.commit();
            }
            self.tx.wake();
            if queued == descs.len() && self.tx.pending() == 0 {
                break;
            }
        }
        queued
    }
}

/// Sockets of one interface: per worker its ports (one per queue), and the UMEMs, which must
/// live as long as the sockets and stay on the thread that made them.
pub struct XskSet {
    pub mode: Mode,
    pub per_worker: Vec<Vec<XskPort>>,
    /// Per queue, frames kept out of the fill ring for transmissions of the user's own (a load
    /// generator's); empty for a server, which answers in received frames.
    pub reserved: Vec<Vec<u64>>,
    umems: Vec<Umem>,
}

impl std::fmt::Debug for XskSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XskSet").field("mode", &self.mode).field("umems", &self.umems.len()).finish()
    }
}

impl XskSet {
    /// Keeps the UMEMs alive (call after the workers have stopped).
    pub fn close(self) {
        drop(self.umems);
    }
}

/// Number of receive queues of `interface` (from sysfs).
pub fn rx_queues(interface: &str) -> u32 {
    std::fs::read_dir(format!("/sys/class/net/{interface}/queues"))
        .map(|d| d.filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().starts_with("rx-")).count() as u32)
        .unwrap_or(1)
        .max(1)
}

/// The interface's MAC address (from sysfs).
pub fn mac_address(interface: &str) -> Result<[u8; 6]> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{interface}/address"))
        .with_context(|| format!("reading the MAC address of {interface}"))?;
    let mut mac = [0u8; 6];
    let mut parts = text.trim().split(':');
    for b in mac.iter_mut() {
        let part = parts.next().ok_or_else(|| anyhow!("MAC address of {interface}: {text:?}"))?;
        *b = u8::from_str_radix(part, 16).map_err(|e| anyhow!("MAC address of {interface}: {e}"))?;
    }
    Ok(mac)
}

/// Opens `workers` sockets on every receive queue of `interface`: zero-copy if the driver
/// supports it, copy mode otherwise.
pub fn open(interface: &str, workers: u32) -> Result<XskSet> {
    open_reserving(interface, workers, 0)
}

/// [`open`], keeping `reserve` frames of each queue out of the fill ring (see
/// [`XskSet::reserved`]).
pub fn open_reserving(interface: &str, workers: u32, reserve: u32) -> Result<XskSet> {
    match open_mode(interface, workers, Mode::ZeroCopy, reserve) {
        Ok(set) => Ok(set),
        Err(e) if is_unsupported(&e) => open_mode(interface, workers, Mode::Copy, reserve),
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

fn open_mode(interface: &str, workers: u32, mode: Mode, reserve: u32) -> Result<XskSet> {
    let reserve = reserve.min(FRAMES_PER_QUEUE / 2);
    let mut reserved = Vec::new();
    let queues = rx_queues(interface);
    let name = CString::new(interface).context("interface name")?;
    let mut per_worker: Vec<Vec<XskPort>> = (0..workers).map(|_| Vec::new()).collect();
    let mut umems = Vec::new();
    for q in 0..queues {
        let area = Area::new((FRAMES_PER_QUEUE * FRAME_SIZE) as usize)?;
        let config = UmemConfig {
            fill_size: 2 * FRAMES_PER_QUEUE,
            complete_size: FRAMES_PER_QUEUE,
            frame_size: FRAME_SIZE,
            headroom: 0,
            flags: 0,
        };
        // SAFETY: the area is page-aligned memory that outlives the UMEM (the Arc holding it
        // is dropped after the UMEM, see `XskSet::close` and `QueueShared`).
        let umem = unsafe { Umem::new(config, area.as_slice_ptr()) }.map_err(errno).context("registering the UMEM")?;
        let mut info = IfInfo::invalid();
        info.from_name(&name).map_err(errno).with_context(|| format!("interface {interface}"))?;
        info.set_queue(q);
        let mut sockets = Vec::new();
        let mut device: Option<DeviceQueue> = None;
        for w in 0..workers {
            let sock = if w == 0 { Socket::with_shared(&info, &umem) } else { Socket::new(&info) }
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
            let cfg =
                SocketConfig { rx_size: NonZeroU32::new(RING_SIZE), tx_size: NonZeroU32::new(RING_SIZE), bind_flags };
            let user = umem.rx_tx(&sock, &cfg).map_err(errno).context("RX/TX rings")?;
            let rx = user.map_rx().map_err(errno).context("mapping the RX ring")?;
            let tx = user.map_tx().map_err(errno).context("mapping the TX ring")?;
            bind_retrying(&umem, &user, mode, w)?;
            let fd = rx.as_raw_fd();
            raise_tx_budget(fd);
            sockets.push((rx, tx, fd));
        }
        let mut dq = device.ok_or_else(|| anyhow!("no worker sockets"))?;
        let mut spare: Vec<u64> = (0..FRAMES_PER_QUEUE as u64).map(|i| i * FRAME_SIZE as u64).collect();
        reserved.push(spare.split_off((FRAMES_PER_QUEUE - reserve) as usize));
        {
            let mut fill = dq.fill(spare.len() as u32);
            let n = fill.insert(spare.iter().copied()) as usize;
            fill.commit();
            drop(fill);
            spare.drain(..n);
        }
        let shared = Arc::new(QueueShared { queue: q, area, fcq: Mutex::new((dq, spare)) });
        for (w, (rx, tx, fd)) in sockets.into_iter().enumerate() {
            per_worker[w].push(XskPort { rx, tx, shared: shared.clone(), fd });
        }
        umems.push(umem);
    }
    Ok(XskSet { mode, per_worker, reserved, umems })
}

/// Binds, retrying while a socket closed moments ago still holds the queue (the kernel tears
/// sockets down lazily: EBUSY for ~20 ms).
fn bind_retrying(umem: &Umem, user: &xdpilone::User, mode: Mode, w: u32) -> Result<()> {
    for _ in 0..50 {
        match umem.bind(user) {
            Ok(()) => return Ok(()),
            Err(e) if e.get_raw() == libc::EBUSY => std::thread::sleep(std::time::Duration::from_millis(20)),
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
    // SAFETY: a valid option value of the given size on a live socket.
    let rc =
        unsafe { libc::setsockopt(fd, libc::SOL_XDP, XDP_MAX_TX_SKB_BUDGET, (&TX_BUDGET as *const u32).cast(), 4) };
    if rc != 0 {
        // Older kernels: the default budget; `XskPort::transmit` kicks again while frames wait.
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            eprintln!(
                "xdhcpd: XDP_MAX_TX_SKB_BUDGET not available ({}): default TX budget",
                std::io::Error::last_os_error()
            )
        });
    }
}
