//! A memory-mapped receive ring (`PACKET_RX_RING`, `TPACKET_V2`) for the `AF_PACKET`
//! transport: the kernel writes each frame into a slot shared with us, so receiving costs no
//! system call and no copy out of the kernel, and the reflector can rewrite a request into its
//! reply right in the slot.
//!
//! Only for receiving. A transmit ring was tried and is slower on veth: its frames reference
//! the ring's pages, and veth copies such frames into fresh pages (`skb_copy_ubufs`) on the
//! way to the peer; plain `sendmmsg` copies once. `TPACKET_V2` rather than V3: V3 hands over
//! whole blocks, retired by a timer when not full, which would add up to a millisecond to
//! every latency measured at low rates.

use dhcp_io::sys::setsockopt;
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};

/// Bytes per frame slot: header, address and any Ethernet frame without jumbo frames.
pub const SLOT: usize = 2048;
/// Bytes per ring block (the kernel allocates blocks; slots do not cross them).
const BLOCK: usize = 1 << 16;
const SLOTS_PER_BLOCK: usize = BLOCK / SLOT;
/// 4096 slots (8 MiB): room for bursts while the program is busy sending.
const BLOCKS: usize = 128;
/// Where the `sockaddr_ll` of a received frame is: after the aligned `tpacket2_hdr`.
const ADDR_AT: usize = 32;

/// The receive ring of one packet socket.
pub struct RxRing {
    map: *mut u8,
    len: usize,
    slots: usize,
    /// Next slot to take.
    head: usize,
    /// Oldest slot taken and not released; `taken` slots from here on are ours.
    tail: usize,
    taken: usize,
}

impl std::fmt::Debug for RxRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RxRing").field("slots", &self.slots).field("head", &self.head).finish_non_exhaustive()
    }
}

impl Drop for RxRing {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, not used after this.
        unsafe { libc::munmap(self.map.cast(), self.len) };
    }
}

/// A received frame in a ring slot: the slot and where the frame lies in it.
#[derive(Debug, Clone, Copy)]
pub struct Slot {
    ptr: *mut u8,
    /// Offset of the frame in the slot.
    pub at: usize,
    pub len: usize,
}

impl Slot {
    /// The slot from the frame's first byte to the slot's end (the frame is its first `len`
    /// bytes): room to write a longer reply in place.
    ///
    /// # Safety
    /// The slot must not have been released, and no other reference to it may be live.
    pub unsafe fn bytes_mut<'a>(&self) -> &'a mut [u8] {
        // SAFETY: the caller owns the slot; `at` lies within it (checked by `next`).
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(self.at), SLOT - self.at) }
    }
}

impl RxRing {
    /// Sets up and maps the receive ring of packet socket `fd` (before it is bound).
    pub fn new(fd: libc::c_int) -> io::Result<RxRing> {
        let version = libc::tpacket_versions::TPACKET_V2 as libc::c_int;
        setsockopt(fd, libc::SOL_PACKET, libc::PACKET_VERSION, &version, "PACKET_VERSION")?;
        let req = libc::tpacket_req {
            tp_block_size: BLOCK as u32,
            tp_block_nr: BLOCKS as u32,
            tp_frame_size: SLOT as u32,
            tp_frame_nr: (BLOCKS * SLOTS_PER_BLOCK) as u32,
        };
        setsockopt(fd, libc::SOL_PACKET, libc::PACKET_RX_RING, &req, "PACKET_RX_RING")?;
        let len = BLOCKS * BLOCK;
        // SAFETY: maps the ring just configured on this socket; checked below.
        let map = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0)
        };
        if map == libc::MAP_FAILED {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("mmap of the receive ring: {e}")));
        }
        Ok(RxRing { map: map.cast(), len, slots: BLOCKS * SLOTS_PER_BLOCK, head: 0, tail: 0, taken: 0 })
    }

    /// The status word at the start of slot `i`, shared with the kernel.
    fn status(&self, i: usize) -> &AtomicU32 {
        debug_assert!(i < self.slots);
        // SAFETY: slot i < slots lies in the mapping, which `self` owns; every slot starts
        // with a 4-byte aligned `tp_status` (slots are 2048-aligned in a page-aligned
        // mapping); the kernel and we hand a slot over only through this word, with
        // acquire/release ordering.
        unsafe { AtomicU32::from_ptr(self.map.add(i * SLOT).cast()) }
    }

    /// Whether a frame is waiting.
    pub fn ready(&self) -> bool {
        self.taken < self.slots && self.status(self.head).load(Ordering::Acquire) & libc::TP_STATUS_USER != 0
    }

    /// The next received frame, skipping our own transmissions and frames cut short. It stays
    /// ours until released: slots are taken in ring order and [`RxRing::release`] gives back
    /// the oldest.
    pub fn take(&mut self) -> Option<Slot> {
        loop {
            if !self.ready() {
                return None;
            }
            // SAFETY: slot `head` lies in the mapping.
            let ptr = unsafe { self.map.add(self.head * SLOT) };
            self.head = (self.head + 1) % self.slots;
            self.taken += 1;
            // SAFETY: the slot is ours (status USER) and holds a tpacket2_hdr, then a
            // sockaddr_ll, as the kernel wrote them.
            // SAFETY: as above.
            let (hdr, sll) = unsafe {
                (
                    std::ptr::read(ptr.cast::<libc::tpacket2_hdr>()),
                    std::ptr::read_unaligned(ptr.add(ADDR_AT).cast::<libc::sockaddr_ll>()),
                )
            };
            let (at, len) = (hdr.tp_mac as usize, hdr.tp_snaplen as usize);
            let slot = Slot { ptr, at, len };
            if sll.sll_pkttype == libc::PACKET_OUTGOING || at + len > SLOT || hdr.tp_len != hdr.tp_snaplen {
                self.release();
                continue;
            }
            return Some(slot);
        }
    }

    /// Gives the oldest slot taken back to the kernel (any `Slot` of it is dead after this).
    pub fn release(&mut self) {
        if self.taken == 0 {
            return;
        }
        self.status(self.tail).store(libc::TP_STATUS_KERNEL, Ordering::Release);
        self.tail = (self.tail + 1) % self.slots;
        self.taken -= 1;
    }
}
