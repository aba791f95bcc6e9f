//! The XDP steering program. For every frame on the interface: Ethernet with up to two VLAN
//! tags, IPv4 with any header length, UDP to port 67 for this host (the limited broadcast or one
//! of its addresses) → the AF_XDP socket of the worker that owns the client
//! (`dhcp_common::owner_of_message`: the client identifier, else `chaddr`, under a keyed hash;
//! the same choice the classic-BPF filter and user space make). Everything else goes to the
//! kernel untouched (ARP, ICMP, SSH, DHCP in transit to other servers), so the host stays
//! reachable. Every offset, port and tag type comes from `dhcp_common`.
//!
//! Built with the `kernel-renew` feature (the default) and with `config::KERNEL_RENEW` set, a
//! plain renewal of a lease in the `LEASES` map is answered
//! here with XDP_TX (`dhcp_common::renew`: the checks, the key, the reply from a template in
//! `TEMPLATES`); everything else still goes to the workers.
//!
//! Built for `bpfel-unknown-none` by `dhcp-io`'s build script (aya-build).
#![no_std]
#![no_main]

#[cfg(feature = "kernel-renew")]
use aya_ebpf::bindings::xdp_action::XDP_TX;
use aya_ebpf::bindings::xdp_action::{XDP_DROP, XDP_PASS};
#[cfg(feature = "kernel-renew")]
use aya_ebpf::helpers::generated::{
    bpf_csum_diff, bpf_ktime_get_ns, bpf_xdp_adjust_tail, bpf_xdp_get_buff_len, bpf_xdp_load_bytes, bpf_xdp_store_bytes,
};
use aya_ebpf::macros::{map, xdp};
use aya_ebpf::maps::{Array, HashMap, PerCpuArray, XskMap};
use aya_ebpf::programs::XdpContext;
use aya_log_ebpf::debug;
use dhcp_common::frame::*;
use dhcp_common::renew::{self, Lease, LeaseKey, Template};
use dhcp_common::{bootp, config, counter, is_vlan_tpid, message_hash, owner, socket_slot, Message, MAX_SOCKETS};
use dhcp_common::{MAX_ADDRESSES, SERVER_PORT};

/// Worker sockets, by slot (see `dhcp_common::socket_slot`).
#[map]
static SOCKETS: XskMap = XskMap::with_max_entries(MAX_SOCKETS, 0);

/// Settings from user space (`dhcp_common::config`).
#[map]
static CONFIG: Array<u32> = Array::with_max_entries(config::LEN, 0);

/// This host's IPv4 addresses (network byte order, as in the header), for `config::ONLY_OURS`.
#[map]
static ADDRESSES: HashMap<u32, u8> = HashMap::with_max_entries(MAX_ADDRESSES, 0);

/// Per-CPU counters (`dhcp_common::counter`): no atomic operations on the fast path.
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

/// Leases whose renewals the program answers (user space keeps it).
#[map]
static LEASES: HashMap<LeaseKey, Lease> = HashMap::with_max_entries(renew::MAX_LEASES, 0);

/// Reply templates (options of an ACK), by slot.
#[map]
static TEMPLATES: Array<Template> = Array::with_max_entries(renew::MAX_TEMPLATES, 0);

/// Per-CPU copy of the frame being answered.
#[map]
static SCRATCH: PerCpuArray<renew::Scratch> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
fn count(slot: u32) {
    if let Some(c) = COUNTERS.get_ptr_mut(slot) {
        // SAFETY: the pointer is this CPU's slot of a per-CPU array; nothing else writes it
        // while this program runs on this CPU.
        unsafe { *c += 1 };
    }
}

#[inline(always)]
fn setting(slot: u32) -> u32 {
    CONFIG.get(slot).copied().unwrap_or(0)
}

/// Reads a `T` at `offset` from the start of the frame, if the frame is long enough. The bound
/// check right before the read is what the verifier needs to accept it.
#[inline(always)]
fn load<T: Copy>(ctx: &XdpContext, offset: usize) -> Option<T> {
    let start = ctx.data();
    // Hidden from the optimiser: it would turn `p + 1 > end` into `p >= end`, a form from
    // which the verifier learns nothing about `p` when `offset` varies.
    let size = core::hint::black_box(core::mem::size_of::<T>());
    if start + offset + size > ctx.data_end() {
        return None;
    }
    // SAFETY: the range [start + offset, start + offset + size_of::<T>()) is inside the frame,
    // checked just above; `read_unaligned` has no alignment requirement.
    Some(unsafe { core::ptr::read_unaligned((start + offset) as *const T) })
}

/// The DHCP message inside the frame, for the steering contract's walk: `len` bytes from
/// `start`, each read behind its own bounds check.
struct Dhcp<'a> {
    ctx: &'a XdpContext,
    start: usize,
    len: usize,
}

impl Message for Dhcp<'_> {
    #[inline(always)]
    fn len(&self) -> usize {
        self.len
    }

    #[inline(always)]
    fn byte(&self, at: usize) -> Option<u8> {
        // Masked so the verifier sees a bounded offset (no DHCP message is longer).
        let at = at & 0x1fff;
        if at >= self.len {
            return None;
        }
        load::<u8>(self.ctx, self.start + at)
    }
}

#[xdp]
fn dhcp_steer(ctx: XdpContext) -> u32 {
    count(counter::SEEN);
    match steer(&ctx) {
        Some(action) => action,
        None => {
            count(counter::PASSED);
            XDP_PASS
        }
    }
}

/// `None`: not DHCP to the steered port, pass it on.
#[inline(always)]
fn steer(ctx: &XdpContext) -> Option<u32> {
    let port = match setting(config::PORT) {
        0 => SERVER_PORT,
        p => p as u16,
    };
    let l3 = l3_offset(ctx)?;
    let version_ihl = load::<u8>(ctx, l3)?;
    let ihl = ((version_ihl & 0x0f) as usize) * 4;
    if version_ihl >> 4 != 4 || ihl < IPV4_MIN_HLEN || load::<u8>(ctx, l3 + IPV4_PROTOCOL)? != PROTOCOL_UDP {
        return None;
    }
    // A later fragment carries no UDP header: nothing to recognise it by.
    let fragment = u16::from_be(load::<u16>(ctx, l3 + IPV4_FRAGMENT)?) & IPV4_FRAGMENT_MASK;
    if fragment & 0x1fff != 0 {
        return None;
    }
    let l4 = l3 + ihl;
    if u16::from_be(load::<u16>(ctx, l4 + UDP_DST_PORT)?) != port {
        return None;
    }
    if setting(config::ONLY_OURS) != 0 && !for_us(load::<u32>(ctx, l3 + IPV4_DST)?) {
        count(counter::NOT_OURS);
        return Some(XDP_PASS);
    }
    if fragment != 0 {
        // The first fragment of a datagram for us: reassembled, it would reach no socket of
        // this path. Dropped and counted (xdp-fragment-dropped).
        count(counter::FRAGMENT);
        return Some(XDP_DROP);
    }
    #[cfg(feature = "kernel-renew")]
    if setting(config::REFLECT_RENEWALS) != 0 && l3 == ETH_HLEN && ihl == IPV4_MIN_HLEN {
        if let Some(action) = reflect(ctx) {
            return Some(action);
        }
    }
    #[cfg(feature = "kernel-renew")]
    if setting(config::KERNEL_RENEW) != 0 {
        // Tagged frames go up: the worker puts only untagged clients in the map, and one
        // header layout keeps the program within what the verifier follows.
        if l3 != ETH_HLEN {
            count(counter::RENEW_NOT_PLAIN);
        } else if let Some(action) = renew_in_place(ctx, renew::AT + ETH_HLEN) {
            return Some(action);
        }
    }
    Some(redirect(ctx, l4))
}

#[cfg(feature = "kernel-renew")]
/// Answers a plain renewal of a lease in `LEASES` with XDP_TX; `None`: let a worker answer.
#[inline(always)]
fn renew_in_place(ctx: &XdpContext, l3: usize) -> Option<u32> {
    // The helper, not `data_end - data`: the verifier allows no arithmetic on the end pointer.
    // SAFETY: the program's own context.
    let len = unsafe { bpf_xdp_get_buff_len(ctx.ctx as *mut _) } as usize;
    if !(ETH_HLEN..=renew::MAX_FRAME).contains(&len) {
        count(counter::RENEW_NOT_PLAIN);
        return None;
    }
    let buf = SCRATCH.get_ptr_mut(0)?;
    // SAFETY: this CPU's scratch value; nothing else uses it while the program runs here.
    let buf = unsafe { &mut *buf };
    let at = buf.0.as_mut_ptr().wrapping_add(renew::AT);
    // SAFETY: `len` bytes (at most MAX_FRAME < SCRATCH - AT) from the frame into the scratch
    // value, from its offset AT.
    if unsafe { bpf_xdp_load_bytes(ctx.ctx as *mut _, 0, at as *mut _, len as u32) } != 0 {
        return None;
    }
    let Some(facts) = renew::plain_renewal(buf, l3, len) else {
        count(counter::RENEW_NOT_PLAIN);
        return None;
    };
    let key = renew::key(buf, &facts);
    let Some(lease) = LEASES.get_ptr_mut(key) else {
        count(counter::RENEW_NO_LEASE);
        return None;
    };
    // SAFETY: a map value; user space replaces whole entries, the program writes one word.
    let lease = unsafe { &mut *lease };
    answer(ctx, buf, (l3, len), &facts, &key, lease)
}

#[cfg(feature = "kernel-renew")]
/// Checks the lease against the request and the horizon, writes the reply and sends it back.
#[inline(always)]
fn answer(
    ctx: &XdpContext,
    buf: &mut renew::Scratch,
    (l3, old): (usize, usize),
    f: &renew::Facts,
    key: &LeaseKey,
    lease: &mut Lease,
) -> Option<u32> {
    let d = f.dhcp;
    let ciaddr = [buf[(d + 12) & 1023], buf[(d + 13) & 1023], buf[(d + 14) & 1023], buf[(d + 15) & 1023]];
    if lease.ciaddr != ciaddr || lease.prl_hash != f.prl_hash || lease.vlans != renew::vlans(buf, l3) {
        count(counter::RENEW_MISMATCH);
        return None;
    }
    let Some(t) = TEMPLATES.get(lease.template).filter(|t| t.len != 0) else {
        count(counter::RENEW_NO_TEMPLATE);
        return None;
    };
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    if now + t.lease_secs as u64 * 1_000_000_000 > lease.horizon_ns {
        count(counter::RENEW_HORIZON);
        return None;
    }
    let (hi, lo) = (setting(config::MAC_HI).to_be_bytes(), setting(config::MAC_LO).to_be_bytes());
    let mac = [hi[0], hi[1], hi[2], hi[3], lo[2], lo[3]];
    let Some(total) = renew::write_reply(buf, l3, f, key, (t, mac), udp_sum) else {
        count(counter::RENEW_NO_TEMPLATE);
        return None;
    };
    // SAFETY: resizes the frame this program holds; pointers are re-read after it.
    if unsafe { bpf_xdp_adjust_tail(ctx.ctx, total as i32 - old as i32) } != 0 {
        return None;
    }
    // Bounded where the verifier sees it: inside the scratch value after AT.
    let n = core::hint::black_box((total & 1023) as u32);
    if n == 0 || n > renew::MAX_FRAME as u32 {
        return Some(XDP_DROP);
    }
    let at = buf.0.as_mut_ptr().wrapping_add(renew::AT);
    // SAFETY: `n` bytes (at most MAX_FRAME < SCRATCH - AT) from the scratch value at its
    // offset AT into the resized frame.
    if unsafe { bpf_xdp_store_bytes(ctx.ctx as *mut _, 0, at as *mut _, n) } != 0 {
        return Some(XDP_DROP);
    }
    lease.renewed_ns = now;
    count(counter::RENEWED);
    Some(XDP_TX)
}

#[cfg(feature = "kernel-renew")]
/// The benchmark's reflector (`config::REFLECT_RENEWALS`): a renewal from the generator
/// (untagged, 20-byte IPv4 header, `ciaddr` set, option 53 first and REQUEST) goes back as an
/// ACK of `ciaddr`: MACs, addresses and ports swapped (the IPv4 checksum stays right), `op`
/// and the message type changed, `yiaddr` set, the UDP checksum zero (RFC 768: none).
#[inline(always)]
fn reflect(ctx: &XdpContext) -> Option<u32> {
    const D: usize = ETH_HLEN + IPV4_MIN_HLEN + UDP_HLEN;
    const END: usize = D + bootp::MIN_LEN + 3;
    let start = ctx.data();
    if start + END > ctx.data_end() {
        return None;
    }
    let p = start as *mut u8;
    // SAFETY: every offset below is a constant under END, checked against the frame's end
    // just above; the program owns the frame.
    unsafe {
        if *p.add(D) != 1 || *p.add(D + bootp::MIN_LEN) != 53 || *p.add(D + bootp::MIN_LEN + 1) != 1 {
            return None;
        }
        if *p.add(D + bootp::MIN_LEN + 2) != 3 || core::ptr::read_unaligned(p.add(D + 12) as *const u32) == 0 {
            return None;
        }
        swap(p, 0, 6, 6);
        swap(p, ETH_HLEN + 12, ETH_HLEN + 16, 4);
        swap(p, ETH_HLEN + IPV4_MIN_HLEN, ETH_HLEN + IPV4_MIN_HLEN + 2, 2);
        *p.add(ETH_HLEN + IPV4_MIN_HLEN + 6) = 0;
        *p.add(ETH_HLEN + IPV4_MIN_HLEN + 7) = 0;
        *p.add(D) = 2;
        let mut i = 0;
        while i < 4 {
            *p.add(D + 16 + i) = *p.add(D + 12 + i);
            i += 1;
        }
        *p.add(D + bootp::MIN_LEN + 2) = 5;
    }
    count(counter::REFLECTED);
    Some(XDP_TX)
}

#[cfg(feature = "kernel-renew")]
/// Swaps `n` bytes at `a` with `n` bytes at `b`.
///
/// # Safety
/// Both ranges lie inside the frame, checked by the caller.
#[inline(always)]
unsafe fn swap(p: *mut u8, a: usize, b: usize, n: usize) {
    let mut i = 0;
    while i < n {
        // SAFETY: inside the frame (the caller's check).
        unsafe { core::ptr::swap(p.add(a + i), p.add(b + i)) };
        i += 1;
    }
}

/// Offset of the IPv4 header after up to `MAX_VLAN_TAGS` (two) tags, written out: the verifier
/// likes straight lines. `None` when the frame does not carry IPv4.
#[inline(always)]
fn l3_offset(ctx: &XdpContext) -> Option<usize> {
    let mut l3 = ETH_HLEN;
    let mut ethertype = u16::from_be(load::<u16>(ctx, ETHERTYPE)?);
    if is_vlan_tpid(ethertype) {
        ethertype = u16::from_be(load::<u16>(ctx, ETHERTYPE + VLAN_TAG_LEN)?);
        l3 += VLAN_TAG_LEN;
        if is_vlan_tpid(ethertype) {
            ethertype = u16::from_be(load::<u16>(ctx, ETHERTYPE + 2 * VLAN_TAG_LEN)?);
            l3 += VLAN_TAG_LEN;
        }
    }
    (ethertype == ETHERTYPE_IPV4).then_some(l3)
}

/// The limited broadcast, or an address of this host.
#[inline(always)]
fn for_us(dst: u32) -> bool {
    dst == u32::MAX || ADDRESSES.get_ptr(dst).is_some()
}

/// Sends a DHCP datagram (UDP header at `l4`) to the socket of the worker that owns its client.
#[inline(always)]
fn redirect(ctx: &XdpContext, l4: usize) -> u32 {
    let start = l4 + UDP_HLEN;
    let udp_len = match load::<u16>(ctx, l4 + UDP_LEN) {
        Some(l) => u16::from_be(l) as usize,
        None => return XDP_PASS,
    };
    if udp_len < UDP_HLEN + bootp::MIN_LEN || ctx.data() + start + bootp::MIN_LEN > ctx.data_end() {
        count(counter::DROPPED_SHORT);
        debug!(ctx, "dropped a frame to port 67 too short for DHCP: {} bytes", ctx.data_end() - ctx.data());
        return XDP_DROP;
    }
    let per_queue = setting(config::SOCKETS_PER_QUEUE);
    if per_queue == 0 {
        count(counter::NO_SOCKET);
        return XDP_PASS;
    }
    let msg = Dhcp { ctx, start, len: udp_len - UDP_HLEN };
    let worker = owner(message_hash(&msg, setting(config::HASH_KEY)), per_queue);
    let slot = socket_slot(ctx.rx_queue_index(), per_queue, worker);
    // An empty slot falls back to XDP_PASS (the flags' low bits), so the kernel still sees it.
    match SOCKETS.redirect(slot, XDP_PASS as u64) {
        Ok(action) => {
            count(counter::REDIRECTED);
            action
        }
        Err(action) => {
            count(counter::NO_SOCKET);
            action
        }
    }
}

#[cfg(feature = "kernel-renew")]
/// `renew::sum16` of `n` bytes from `at` with the checksum helper: two calls (it takes at most
/// 512 bytes), `n` rounded up to whole words (the bytes after the message are zero).
#[inline(always)]
fn udp_sum(buf: &renew::Scratch, at: usize, n: usize) -> u32 {
    let n = ((n + 3) & !3) & 1023;
    let first = if n > 256 { 256 } else { n };
    let rest = (n - first) & 511;
    let at = at & 63;
    let p = buf.0.as_ptr() as usize;
    // SAFETY: both ranges lie inside the scratch value (`at` < 64, `first` <= 256, `rest`
    // < 512: at most 832 of its 1024 bytes); the helper only reads them.
    let s = unsafe {
        let s = bpf_csum_diff(core::ptr::null_mut(), 0, (p + at) as *mut _, first as u32, 0);
        bpf_csum_diff(core::ptr::null_mut(), 0, (p + at + first) as *mut _, rest as u32, s as u32)
    };
    // The helper adds native (little-endian) words: the same sum, bytes swapped.
    renew::fold(s as u32).swap_bytes() as u32
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[link_section = "license"]
#[no_mangle]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
