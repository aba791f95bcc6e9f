//! The steering contract: what the XDP program (`dhcp-ebpf`, `no_std`, no allocation), the
//! classic-BPF program of the UDP path and the workers in user space must agree on bit for bit.
//!
//! Holds: where the fields steering reads sit in a frame ([`frame`], [`bootp`]), the ports
//! ([`SERVER_PORT`], [`CLIENT_PORT`]), the VLAN tag types ([`is_vlan_tpid`]), which worker owns
//! a client ([`steering_identity`], [`steering_hash`], [`owner`], [`owner_of_message`]), the
//! layout of the XDP program's socket map ([`socket_slot`]), config slots ([`config`]) and
//! counters ([`counter`]).
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
    /// IPv4: offset of the destination address.
    pub const IPV4_DST: usize = 16;
    pub const IPV4_MIN_HLEN: usize = 20;
    pub const PROTOCOL_UDP: u8 = 17;
    /// Flags + fragment offset bits that mark a fragment (MF set or a non-zero offset).
    pub const IPV4_FRAGMENT_MASK: u16 = 0x3fff;
    /// UDP header: destination port at 2, length at 4, header length 8.
    pub const UDP_DST_PORT: usize = 2;
    pub const UDP_LEN: usize = 4;
    pub const UDP_HLEN: usize = 8;
}

/// Offsets in a BOOTP/DHCP message (RFC 2131 §2), from the start of the UDP payload.
pub mod bootp {
    /// `chaddr`, the client hardware address (16 bytes; Ethernet uses the first 6).
    pub const CHADDR: usize = 28;
    /// The fixed header and the magic cookie: shorter is not DHCP. The options field starts here.
    pub const MIN_LEN: usize = 240;
}

/// Whether an EtherType is a VLAN tag: 802.1Q, 802.1ad, and the pre-standard 0x9100 that some
/// QinQ equipment still sends.
#[inline(always)]
pub fn is_vlan_tpid(ethertype: u16) -> bool {
    matches!(ethertype, frame::TPID_8021Q | frame::TPID_8021AD | frame::TPID_QINQ_LEGACY)
}

/// Where the steering identity is looked for, and how much of it counts.
pub mod identity {
    /// Options walked (pads included) looking for the client identifier: clients put it among
    /// the first few, and the classic-BPF filter is unrolled this many times.
    pub const MAX_OPTIONS: usize = 16;
    /// Bytes of the client identifier hashed; longer identifiers are told apart by the engine,
    /// which keys on the whole value, not by the worker choice.
    pub const MAX_HASHED: usize = 32;
    /// Option codes the walk knows (RFC 2132).
    pub const PAD: u8 = 0;
    pub const END: u8 = 255;
    pub const CLIENT_ID: u8 = 61;
}

/// A DHCP message (the UDP payload) as steering reads it: a slice in user space, the frame
/// behind bounds checks in the XDP program. One walk serves both.
pub trait Message {
    /// The message's length (the UDP payload's, whatever padding follows in the frame).
    fn len(&self) -> usize;
    /// The byte at `at`, or `None` past the end.
    fn byte(&self, at: usize) -> Option<u8>;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Message for [u8] {
    #[inline(always)]
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }

    #[inline(always)]
    fn byte(&self, at: usize) -> Option<u8> {
        self.get(at).copied()
    }
}

/// The bytes that identify the client of a DHCP message for steering, as `(offset, length)`:
/// the value of the first client identifier option (61, RFC 2131 §4.2: the client's identity
/// when present) among the first [`identity::MAX_OPTIONS`] options of the options field, at
/// most [`identity::MAX_HASHED`] bytes of it; else `chaddr`'s first six bytes. A client is thus
/// owned by one worker whatever `chaddr` it sends, as long as it keeps its identifier. The walk
/// never reads past the message: what it cannot read, it does not find.
#[inline(always)]
pub fn steering_identity<M: Message + ?Sized>(msg: &M) -> (usize, usize) {
    let mut at = bootp::MIN_LEN;
    let mut i = 0;
    while i < identity::MAX_OPTIONS {
        i += 1;
        let code = match msg.byte(at) {
            Some(c) => c,
            None => break,
        };
        if code == identity::PAD {
            at += 1;
            continue;
        }
        if code == identity::END {
            break;
        }
        let len = match msg.byte(at + 1) {
            Some(l) => l as usize,
            None => break,
        };
        if code == identity::CLIENT_ID {
            let n = if len < identity::MAX_HASHED { len } else { identity::MAX_HASHED };
            if len > 0 && at + 2 + n <= msg.len() {
                return (at + 2, n);
            }
            break;
        }
        // Bounded for the verifier: MAX_OPTIONS options of at most 257 bytes each.
        at = (at + 2 + len) & 0x1fff;
    }
    (bootp::CHADDR, 6)
}

/// Multiplier per identity byte (the 32-bit FNV prime).
pub const HASH_PRIME: u32 = 0x0100_0193;
/// Multiplier of the final mix, so that every bit of the identity reaches the low bits that
/// pick the worker.
pub const HASH_MIX: u32 = 0x045d_9f3b;
/// Shifts of the final mix.
pub const HASH_SHIFTS: (u32, u32) = (16, 13);

/// The steering hash of identity bytes under `key`. Only 32-bit XOR, multiply and shift: the
/// classic-BPF filter computes it too. The key is random per installation (the XDP program
/// reads it from its config map, the classic-BPF program carries it as a constant), so a flood
/// of made-up identities cannot be aimed at one worker.
#[inline(always)]
pub fn steering_hash(key: u32, bytes: &[u8]) -> u32 {
    let mut h = key;
    let mut i = 0;
    while i < bytes.len() {
        h = (h ^ bytes[i] as u32).wrapping_mul(HASH_PRIME);
        i += 1;
    }
    finish_hash(h)
}

/// The final mix of [`steering_hash`].
#[inline(always)]
pub fn finish_hash(mut h: u32) -> u32 {
    h ^= h >> HASH_SHIFTS.0;
    h = h.wrapping_mul(HASH_MIX);
    h ^ (h >> HASH_SHIFTS.1)
}

/// The worker (0..workers) that owns a client with this hash. `workers` must be non-zero.
#[inline(always)]
pub fn owner(hash: u32, workers: u32) -> u32 {
    hash % workers
}

/// The steering hash of a DHCP message's client ([`steering_identity`]). Bytes it cannot read
/// (a message too short to hold `chaddr`) end the identity early.
#[inline(always)]
pub fn message_hash<M: Message + ?Sized>(msg: &M, key: u32) -> u32 {
    let (at, len) = steering_identity(msg);
    let mut h = key;
    let mut i = 0;
    while i < identity::MAX_HASHED && i < len {
        match msg.byte(at + i) {
            Some(b) => h = (h ^ b as u32).wrapping_mul(HASH_PRIME),
            None => break,
        }
        i += 1;
    }
    finish_hash(h)
}

/// The worker that owns the client of a DHCP message (the UDP payload), as the XDP program and
/// the classic-BPF filter pick it.
#[inline]
pub fn owner_of_message<M: Message + ?Sized>(msg: &M, workers: u32, key: u32) -> u32 {
    owner(message_hash(msg, key), workers)
}

/// Largest number of AF_XDP sockets the steering program can pick from (all queues).
pub const MAX_SOCKETS: u32 = 256;

/// Largest number of this host's addresses the steering program knows (`config::ONLY_OURS`).
pub const MAX_ADDRESSES: u32 = 256;

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
    /// The key of [`crate::steering_hash`].
    pub const HASH_KEY: u32 = 2;
    /// Non-zero: steer only datagrams to the limited broadcast address or to an address in
    /// the program's `ADDRESSES` map (this host's); pass the rest, in transit to others.
    pub const ONLY_OURS: u32 = 3;
    /// Non-zero: answer renewals found in the lease map in the program ([`crate::renew`]).
    pub const KERNEL_RENEW: u32 = 4;
    /// The interface's MAC address, the source of replies sent with XDP_TX: bytes 0..4 and
    /// 4..6 (network order, as in the frame).
    pub const MAC_HI: u32 = 5;
    pub const MAC_LO: u32 = 6;
    /// Non-zero: the program is a benchmark's in-kernel reflector (`xdhcp-bench reflector
    /// --xdp-tx`): every renewal (a REQUEST with `ciaddr` set, its message type the first
    /// option) goes back as a canned ACK with XDP_TX, addresses and ports swapped; the
    /// ceiling of answering in the kernel. Never set by the server.
    pub const REFLECT_RENEWALS: u32 = 7;
    pub const LEN: u32 = 8;
}

/// Slots of the steering program's per-CPU `COUNTERS` array.
pub mod counter {
    /// Every frame the program saw.
    pub const SEEN: u32 = 0;
    /// Not DHCP to the steered port (or headers cut short): left to the kernel.
    pub const PASSED: u32 = 1;
    /// First fragments of a datagram to the steered port for us: dropped (reassembled, no
    /// socket of the XDP path would receive them) and counted.
    pub const FRAGMENT: u32 = 2;
    /// UDP to the steered port too short to hold a BOOTP header and magic cookie: dropped.
    pub const DROPPED_SHORT: u32 = 3;
    /// DHCP redirected to a worker's AF_XDP socket.
    pub const REDIRECTED: u32 = 4;
    /// DHCP, but no worker socket in the slot: left to the kernel.
    pub const NO_SOCKET: u32 = 5;
    /// DHCP to an address that is not this host's (in transit): left to the kernel.
    pub const NOT_OURS: u32 = 6;
    /// Renewals answered in the program with XDP_TX ([`crate::renew`]).
    pub const RENEWED: u32 = 7;
    /// Renewals passed up to the workers, by reason: the message is not a plain renewal the
    /// program answers (type, options, relay, overload, lengths), no lease in the map, the
    /// map's address or request list differs, the horizon would be passed, no template or the
    /// frame could not be rewritten.
    pub const RENEW_NOT_PLAIN: u32 = 8;
    pub const RENEW_NO_LEASE: u32 = 9;
    pub const RENEW_MISMATCH: u32 = 10;
    pub const RENEW_HORIZON: u32 = 11;
    pub const RENEW_NO_TEMPLATE: u32 = 12;
    /// Renewals sent back by the reflector mode ([`super::config::REFLECT_RENEWALS`]).
    pub const REFLECTED: u32 = 13;
    pub const COUNT: u32 = 14;
    /// Names for logs and statistics, by slot.
    pub const NAMES: [&str; COUNT as usize] = [
        "xdp-seen",
        "xdp-passed",
        "xdp-fragment-dropped",
        "xdp-dropped-short",
        "xdp-redirected",
        "xdp-no-socket",
        "xdp-not-ours",
        "xdp-renewed",
        "xdp-renew-up-not-plain",
        "xdp-renew-up-no-lease",
        "xdp-renew-up-mismatch",
        "xdp-renew-up-horizon",
        "xdp-renew-up-no-template",
        "xdp-reflected",
    ];
}

pub mod renew;

#[cfg(test)]
mod tests {
    use super::*;

    fn message(mac: [u8; 6], options: &[u8]) -> [u8; 400] {
        let mut msg = [0u8; 400];
        msg[bootp::CHADDR..bootp::CHADDR + 6].copy_from_slice(&mac);
        msg[bootp::MIN_LEN..bootp::MIN_LEN + options.len()].copy_from_slice(options);
        msg
    }

    #[test]
    fn sequential_macs_spread_over_workers() {
        for workers in [2u32, 3, 4, 7, 16] {
            let mut counts = [0u32; 16];
            for i in 0..16_000u32 {
                let b = i.to_be_bytes();
                let msg = message([0x02, 0, b[0], b[1], b[2], b[3]], &[53, 1, 1, 255]);
                counts[owner_of_message(&msg[..], workers, 0x1234_5678) as usize] += 1;
            }
            let share = 16_000 / workers;
            for &c in &counts[..workers as usize] {
                assert!(c > share * 9 / 10 && c < share * 11 / 10, "{workers}: {counts:?}");
            }
            assert!(counts[workers as usize..].iter().all(|&c| c == 0));
        }
    }

    #[test]
    fn the_client_identifier_decides_whatever_the_chaddr() {
        let id = [61, 7, 1, 2, 0, 0, 0, 0, 9];
        let a = message([2, 0, 0, 0, 0, 1], &[53, 1, 1, 0, 0, 55, 2, 1, 3, id[0], id[1], 1, 2, 0, 0, 0, 0, 9, 255]);
        let b = message([2, 0, 0, 0, 0, 2], &[53, 1, 3, 61, 7, 1, 2, 0, 0, 0, 0, 9, 50, 4, 1, 2, 3, 4, 255]);
        assert_eq!(steering_identity(&a[..]).1, 7);
        assert_eq!(message_hash(&a[..], 99), message_hash(&b[..], 99));
        assert_eq!(message_hash(&a[..], 99), steering_hash(99, &[1, 2, 0, 0, 0, 0, 9]));
        // Without one, the hardware address decides.
        let c = message([2, 0, 0, 0, 0, 1], &[53, 1, 1, 255]);
        assert_eq!(message_hash(&c[..], 99), steering_hash(99, &[2, 0, 0, 0, 0, 1]));
        // An empty identifier is no identifier (the engine keys on chaddr then too).
        let d = message([2, 0, 0, 0, 0, 1], &[61, 0, 255]);
        assert_eq!(message_hash(&d[..], 99), message_hash(&c[..], 99));
    }

    #[test]
    fn the_walk_is_bounded_and_never_reads_past_the_message() {
        // 61 after MAX_OPTIONS other options is not seen.
        let mut opts = [0u8; 120];
        for i in 0..identity::MAX_OPTIONS {
            opts[i * 3..i * 3 + 3].copy_from_slice(&[12, 1, b'x']);
        }
        let at = identity::MAX_OPTIONS * 3;
        opts[at..at + 4].copy_from_slice(&[61, 2, 7, 7]);
        let m = message([2, 0, 0, 0, 0, 5], &opts);
        assert_eq!(steering_identity(&m[..]), (bootp::CHADDR, 6));
        // Long identifiers: the first 32 bytes count.
        let mut long = [0u8; 60];
        long[0] = 61;
        long[1] = 50;
        long[2..52].fill(0xab);
        let m = message([2, 0, 0, 0, 0, 5], &long);
        assert_eq!(steering_identity(&m[..]), (bootp::MIN_LEN + 2, identity::MAX_HASHED));
        // Cut short inside the option or the header: chaddr, no panic.
        assert_eq!(steering_identity(&m[..bootp::MIN_LEN + 20]), (bootp::CHADDR, 6));
        assert_eq!(steering_identity(&m[..bootp::MIN_LEN + 1]), (bootp::CHADDR, 6));
        assert_eq!(owner_of_message(&m[..30], 3, 1), owner(steering_hash(1, &[2, 0]), 3));
    }

    #[test]
    fn the_key_changes_the_choice() {
        let msg = message([2, 0, 0, 0, 0, 1], &[255]);
        let owners: [u32; 8] =
            core::array::from_fn(|k| owner_of_message(&msg[..], 16, (k as u32).wrapping_mul(0x9e37_79b9)));
        assert!(owners.iter().any(|&o| o != owners[0]), "{owners:?}");
    }
}
