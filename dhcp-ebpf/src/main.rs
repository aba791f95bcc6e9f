//! The XDP steering program. For every frame on the interface: Ethernet with up to two VLAN
//! tags, IPv4 with any header length, UDP to port 67 → the AF_XDP socket of the worker that owns
//! the client (`dhcp_common::owner`, the same choice the classic-BPF filter and user space
//! make). Everything else goes to the kernel untouched (ARP, ICMP, SSH, fragments), so the host
//! stays reachable. Every offset, port and tag type comes from `dhcp_common`.
//!
//! Built for `bpfel-unknown-none` by `dhcp-user`'s build script (aya-build).
#![no_std]
#![no_main]

use aya_ebpf::bindings::xdp_action::{XDP_DROP, XDP_PASS};
use aya_ebpf::macros::{map, xdp};
use aya_ebpf::maps::{Array, PerCpuArray, XskMap};
use aya_ebpf::programs::XdpContext;
use aya_log_ebpf::debug;
use dhcp_common::frame::*;
use dhcp_common::{bootp, client_hash, config, counter, is_vlan_tpid, owner, socket_slot, MAX_SOCKETS, SERVER_PORT};

/// Worker sockets, by slot (see `dhcp_common::socket_slot`).
#[map]
static SOCKETS: XskMap = XskMap::with_max_entries(MAX_SOCKETS, 0);

/// Settings from user space (`dhcp_common::config`).
#[map]
static CONFIG: Array<u32> = Array::with_max_entries(config::LEN, 0);

/// Per-CPU counters (`dhcp_common::counter`): no atomic operations on the fast path.
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

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
        0 => SERVER_PORT,
        p => p as u16,
    };
    // Up to MAX_VLAN_TAGS (two) tags, written out: the verifier likes straight lines.
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
    if ethertype != ETHERTYPE_IPV4 {
        return None;
    }
    let version_ihl = load::<u8>(ctx, l3)?;
    let ihl = ((version_ihl & 0x0f) as usize) * 4;
    if version_ihl >> 4 != 4 || ihl < IPV4_MIN_HLEN {
        return None;
    }
    if load::<u8>(ctx, l3 + IPV4_PROTOCOL)? != PROTOCOL_UDP {
        return None;
    }
    let l4 = l3 + ihl;
    if u16::from_be(load::<u16>(ctx, l4 + UDP_DST_PORT)?) != port {
        return None;
    }
    // More fragments, or a non-zero offset: the kernel reassembles, its UDP socket path serves.
    if u16::from_be(load::<u16>(ctx, l3 + IPV4_FRAGMENT)?) & IPV4_FRAGMENT_MASK != 0 {
        count(counter::FRAGMENT);
        return Some(XDP_PASS);
    }
    let dhcp = l4 + UDP_HLEN;
    if ctx.data() + dhcp + bootp::MIN_LEN > ctx.data_end() {
        count(counter::DROPPED_SHORT);
        // aya-log: shown by xdhcpd with XDHCPD_LOG=debug.
        debug!(ctx, "dropped a frame to port 67 too short for DHCP: {} bytes", ctx.data_end() - ctx.data());
        return Some(XDP_DROP);
    }
    let mac = load::<[u8; 6]>(ctx, dhcp + bootp::CHADDR)?;
    let per_queue = CONFIG.get(config::SOCKETS_PER_QUEUE).copied().unwrap_or(0);
    if per_queue == 0 {
        count(counter::NO_SOCKET);
        return Some(XDP_PASS);
    }
    let slot = socket_slot(ctx.rx_queue_index(), per_queue, owner(client_hash(&mac), per_queue));
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
