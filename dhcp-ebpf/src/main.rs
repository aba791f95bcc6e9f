//! The XDP steering program. For every frame on the interface: Ethernet with up to two VLAN
//! tags, IPv4 with any header length, UDP to port 67 → the AF_XDP socket of the worker that owns
//! the client (a hash of `chaddr`, the same one user space shards by). Everything else goes to
//! the kernel untouched (ARP, ICMP, SSH, fragments), so the host stays reachable.
//!
//! Built for `bpfel-unknown-none` by `dhcp-user`'s build script (aya-build).
#![no_std]
#![no_main]

use aya_ebpf::bindings::xdp_action::{XDP_DROP, XDP_PASS};
use aya_ebpf::macros::{map, xdp};
use aya_ebpf::maps::{Array, PerCpuArray, XskMap};
use aya_ebpf::programs::XdpContext;
use aya_log_ebpf::debug;
use dhcp_common::{client_hash, config, counter, socket_slot, MAX_SOCKETS};

/// Worker sockets, by slot (see `dhcp_common::socket_slot`).
#[map]
static SOCKETS: XskMap = XskMap::with_max_entries(MAX_SOCKETS, 0);

/// Settings from user space (`dhcp_common::config`).
#[map]
static CONFIG: Array<u32> = Array::with_max_entries(config::LEN, 0);

/// Per-CPU counters (`dhcp_common::counter`): no atomic operations on the fast path.
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

const ETH_HLEN: usize = 14;
const ETHERTYPE_IPV4: u16 = 0x0800;
const UDP_HLEN: usize = 8;
const BOOTP_MIN: usize = 240;
const CHADDR: usize = 28;
const DHCP_SERVER_PORT: u16 = 67;

#[inline(always)]
fn count(slot: u32) {
    if let Some(c) = COUNTERS.get_ptr_mut(slot) {
        // SAFETY: the pointer is this CPU's slot of a per-CPU array; nothing else writes it
        // while this program runs on this CPU.
        unsafe { *c += 1 };
    }
}

/// Reads a `T` at `offset` from the start of the frame, if the frame is long enough. The bound
/// check right before the read is what the verifier needs to accept it.
#[inline(always)]
fn load<T: Copy>(ctx: &XdpContext, offset: usize) -> Option<T> {
    let start = ctx.data();
    if start + offset + core::mem::size_of::<T>() > ctx.data_end() {
        return None;
    }
    // SAFETY: the range [start + offset, start + offset + size_of::<T>()) is inside the frame,
    // checked just above; `read_unaligned` has no alignment requirement.
    Some(unsafe { core::ptr::read_unaligned((start + offset) as *const T) })
}

#[inline(always)]
fn is_vlan(ethertype: u16) -> bool {
    matches!(ethertype, 0x8100 | 0x88a8 | 0x9100)
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

/// `None`: not DHCP to port 67, pass it on.
#[inline(always)]
fn steer(ctx: &XdpContext) -> Option<u32> {
    // Map lookups first: after a helper call the verifier no longer trusts packet bounds that
    // the compiler considers already checked.
    let port = match CONFIG.get(config::PORT).copied().unwrap_or(0) {
        0 => DHCP_SERVER_PORT,
        p => p as u16,
    };
    let mut l3 = ETH_HLEN;
    let mut ethertype = u16::from_be(load::<u16>(ctx, 12)?);
    if is_vlan(ethertype) {
        ethertype = u16::from_be(load::<u16>(ctx, 16)?);
        l3 += 4;
        if is_vlan(ethertype) {
            ethertype = u16::from_be(load::<u16>(ctx, 20)?);
            l3 += 4;
        }
    }
    if ethertype != ETHERTYPE_IPV4 {
        return None;
    }
    let version_ihl = load::<u8>(ctx, l3)?;
    let ihl = ((version_ihl & 0x0f) as usize) * 4;
    if version_ihl >> 4 != 4 || ihl < 20 {
        return None;
    }
    if load::<u8>(ctx, l3 + 9)? != 17 {
        return None;
    }
    let l4 = l3 + ihl;
    if u16::from_be(load::<u16>(ctx, l4 + 2)?) != port {
        return None;
    }
    // More fragments, or a non-zero offset: the kernel reassembles, its UDP socket path serves.
    if u16::from_be(load::<u16>(ctx, l3 + 6)?) & 0x3fff != 0 {
        count(counter::FRAGMENT);
        return Some(XDP_PASS);
    }
    let dhcp = l4 + UDP_HLEN;
    if ctx.data() + dhcp + BOOTP_MIN > ctx.data_end() {
        count(counter::DROPPED_SHORT);
        // aya-log: shown by xdhcpd with XDHCPD_LOG=debug.
        debug!(ctx, "dropped a frame to port 67 too short for DHCP: {} bytes", ctx.data_end() - ctx.data());
        return Some(XDP_DROP);
    }
    let mac = load::<[u8; 6]>(ctx, dhcp + CHADDR)?;
    let per_queue = CONFIG.get(config::SOCKETS_PER_QUEUE).copied().unwrap_or(0);
    if per_queue == 0 {
        count(counter::NO_SOCKET);
        return Some(XDP_PASS);
    }
    let slot = socket_slot(ctx.rx_queue_index(), per_queue, client_hash(&mac));
    // An empty slot falls back to XDP_PASS (the flags' low bits), so the kernel still sees it.
    Some(match SOCKETS.redirect(slot, XDP_PASS as u64) {
        Ok(action) => {
            count(counter::REDIRECTED);
            action
        }
        Err(action) => {
            count(counter::NO_SOCKET);
            action
        }
    })
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[link_section = "license"]
#[no_mangle]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
