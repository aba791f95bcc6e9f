//! The steering contract: what the XDP program (`dhcp-ebpf`, `no_std`, no allocation), the
//! classic-BPF program of the UDP path and the workers in user space must agree on bit for bit.
//!
//! Holds: where the fields steering reads sit in a frame ([`frame`], [`bootp`]), the ports
//! ([`SERVER_PORT`], [`CLIENT_PORT`]), the VLAN tag types ([`is_vlan_tpid`]), which worker owns
//! a client ([`client_hash`], [`owner`], [`owner_of_message`]), the layout of the XDP program's
//! socket map ([`socket_slot`]), config slots ([`config`]) and counters ([`counter`]).
//!
//! Must never: depend on anything (it builds for the BPF target), allocate, or panic. A change
//! here changes all three sides at once; `tests/steering.rs` checks that they agree.
#![no_std]

/// UDP port of DHCP servers (and relay agents).
pub const SERVER_PORT: u16 = 67;
/// UDP port of DHCP clients.
pub const CLIENT_PORT: u16 = 68;

/// Offsets in an Ethernet frame, before any VLAN tags are counted.
pub mod frame {
    /// Ethernet header without tags.
    pub const ETH_HLEN: usize = 14;
    /// The EtherType (or the first tag's TPID).
    pub const ETHERTYPE: usize = 12;
    /// Each 802.1Q / 802.1ad tag adds this many bytes before the EtherType.
    pub const VLAN_TAG_LEN: usize = 4;
    /// Tags the XDP path reads (QinQ); frames with more are left to the kernel.
    pub const MAX_VLAN_TAGS: usize = 2;
    pub const ETHERTYPE_IPV4: u16 = 0x0800;
    /// 802.1Q customer tag.
    pub const TPID_8021Q: u16 = 0x8100;
    /// 802.1ad service (outer) tag.
    pub const TPID_8021AD: u16 = 0x88a8;
    /// Pre-standard QinQ outer tag some equipment still sends.
    pub const TPID_QINQ_LEGACY: u16 = 0x9100;
    /// IPv4: offset of the flags + fragment offset word, and of the protocol byte.
    pub const IPV4_FRAGMENT: usize = 6;
    pub const IPV4_PROTOCOL: usize = 9;
    pub const IPV4_MIN_HLEN: usize = 20;
    pub const PROTOCOL_UDP: u8 = 17;
    /// Flags + fragment offset bits that mark a fragment (MF set or a non-zero offset).
    pub const IPV4_FRAGMENT_MASK: u16 = 0x3fff;
    /// UDP header: destination port at 2, header length 8.
    pub const UDP_DST_PORT: usize = 2;
    pub const UDP_HLEN: usize = 8;
}

/// Offsets in a BOOTP/DHCP message (RFC 2131 §2), from the start of the UDP payload.
pub mod bootp {
    /// `chaddr`, the client hardware address (16 bytes; Ethernet uses the first 6).
    pub const CHADDR: usize = 28;
    /// The fixed header and the magic cookie: shorter is not DHCP.
    pub const MIN_LEN: usize = 240;
}

/// Whether an EtherType is a VLAN tag: 802.1Q, 802.1ad, and the pre-standard 0x9100 that some
/// QinQ equipment still sends.
#[inline(always)]
pub fn is_vlan_tpid(ethertype: u16) -> bool {
    matches!(ethertype, frame::TPID_8021Q | frame::TPID_8021AD | frame::TPID_QINQ_LEGACY)
}

/// Hash of a client's hardware address (the first six bytes of `chaddr`), from which
/// [`owner`] picks the worker that owns the client. Classic BPF has only 32-bit arithmetic,
/// hence this form: multiplicative (Fibonacci) hashing of the last four bytes, which vary
/// between clients of one vendor; the top 16 bits of the product are the well-mixed ones.
#[inline(always)]
pub fn client_hash(mac: &[u8; 6]) -> u32 {
    u32::from_be_bytes([mac[2], mac[3], mac[4], mac[5]]).wrapping_mul(HASH_MULTIPLIER) >> HASH_SHIFT
}

/// The multiplier of [`client_hash`] (2^32 / golden ratio, odd).
pub const HASH_MULTIPLIER: u32 = 0x9E37_79B1;
/// The shift of [`client_hash`]: keeps the top 16 bits of the product.
pub const HASH_SHIFT: u32 = 16;

/// The worker (0..workers) that owns a client with this hash. `workers` must be non-zero.
#[inline(always)]
pub fn owner(hash: u32, workers: u32) -> u32 {
    hash % workers
}

/// The worker that owns the client of a DHCP message (the UDP payload), as the XDP program and
/// the classic-BPF filter pick it. Messages too short to hold `chaddr` belong to worker 0,
/// which drops them as malformed.
#[inline]
pub fn owner_of_message(msg: &[u8], workers: u32) -> u32 {
    match msg.get(bootp::CHADDR..bootp::CHADDR + 6) {
        Some(c) => owner(client_hash(&[c[0], c[1], c[2], c[3], c[4], c[5]]), workers),
        None => 0,
    }
}

/// Largest number of AF_XDP sockets the steering program can pick from (all queues).
pub const MAX_SOCKETS: u32 = 256;

/// The socket-map slot of worker `worker` on receive queue `rx_queue`: the sockets of queue
/// `q` occupy `q * per_queue .. (q + 1) * per_queue`, in worker order.
#[inline(always)]
pub fn socket_slot(rx_queue: u32, per_queue: u32, worker: u32) -> u32 {
    rx_queue * per_queue + worker
}

/// Slots of the steering program's `CONFIG` array (values set by user space).
pub mod config {
    /// AF_XDP sockets bound to each receive queue (one per worker); the program picks among
    /// them with [`crate::owner`]. Zero: no workers yet, DHCP goes to the kernel.
    pub const SOCKETS_PER_QUEUE: u32 = 0;
    /// UDP destination port to steer; zero means [`crate::SERVER_PORT`]. A load generator
    /// steers the replies to its clients, [`crate::CLIENT_PORT`].
    pub const PORT: u32 = 1;
    pub const LEN: u32 = 2;
}

/// Slots of the steering program's per-CPU `COUNTERS` array.
pub mod counter {
    /// Every frame the program saw.
    pub const SEEN: u32 = 0;
    /// Not DHCP to the steered port (or headers cut short): left to the kernel.
    pub const PASSED: u32 = 1;
    /// IPv4 fragments: left to the kernel, which reassembles them.
    pub const FRAGMENT: u32 = 2;
    /// UDP to the steered port too short to hold a BOOTP header and magic cookie: dropped.
    pub const DROPPED_SHORT: u32 = 3;
    /// DHCP redirected to a worker's AF_XDP socket.
    pub const REDIRECTED: u32 = 4;
    /// DHCP, but no worker socket in the slot: left to the kernel.
    pub const NO_SOCKET: u32 = 5;
    pub const COUNT: u32 = 6;
    /// Names for logs and statistics, by slot.
    pub const NAMES: [&str; COUNT as usize] =
        ["xdp-seen", "xdp-passed", "xdp-fragment-passed", "xdp-dropped-short", "xdp-redirected", "xdp-no-socket"];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_macs_spread_over_workers() {
        for workers in [2u32, 3, 4, 7, 16] {
            let mut counts = [0u32; 16];
            for i in 0..16_000u32 {
                let b = i.to_be_bytes();
                let mac = [0x02, 0, b[0], b[1], b[2], b[3]];
                counts[owner(client_hash(&mac), workers) as usize] += 1;
            }
            let share = 16_000 / workers;
            for &c in &counts[..workers as usize] {
                assert!(c > share * 9 / 10 && c < share * 11 / 10, "{workers}: {counts:?}");
            }
            assert!(counts[workers as usize..].iter().all(|&c| c == 0));
        }
    }

    #[test]
    fn owner_of_a_message_reads_chaddr() {
        let mut msg = [0u8; 300];
        msg[bootp::CHADDR..bootp::CHADDR + 6].copy_from_slice(&[2, 0, 0, 0, 0, 7]);
        assert_eq!(owner_of_message(&msg, 5), owner(client_hash(&[2, 0, 0, 0, 0, 7]), 5));
        assert_eq!(owner_of_message(&msg[..30], 5), 0);
    }
}
