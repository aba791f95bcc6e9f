//! Renewals answered in the XDP program (XDP_TX): the lease map's and template map's layouts,
//! which requests the program answers ([`plain_renewal`]), their map key ([`key`]) and the
//! reply it writes ([`write_reply`]). All of it runs on a copy of the frame in a scratch buffer
//! of [`SCRATCH`] bytes (a per-CPU map value in the program, an array in user space), every
//! index masked, so that the program and the tests run the very same code.
//!
//! The program answers only what it is sure of: a DHCPREQUEST with `ciaddr` set, no requested
//! address, no server identifier (RENEWING or REBINDING), no relay (`giaddr` zero, no option
//! 82), no overload, a 20-byte IPv4 header, Ethernet hardware addresses, and a lease map entry
//! whose address, request-list hash and VLANs match. Anything else goes to the workers.
//!
//! Must never: read or write outside the scratch buffer (masked indices), loop without a fixed
//! bound, or answer a request user space would answer differently (the template is cut from
//! the engine's own ACK; `tests/kernel_renew.rs` compares the two).

use crate::frame::{ETH_HLEN, IPV4_MIN_HLEN, UDP_HLEN};
use crate::{bootp, identity, Message};

/// Bytes of the scratch copy of a frame: requests longer than [`MAX_FRAME`] are passed up.
pub const SCRATCH: usize = 1024;
const MASK: usize = SCRATCH - 1;
/// Longest request frame the program copies, and longest reply it writes.
pub const MAX_FRAME: usize = 700;
/// Client identifiers up to this long are keys; longer ones are passed up.
pub const MAX_ID: usize = identity::MAX_HASHED;
/// Option bytes of a template (everything the engine's ACK holds before the echoes).
pub const TEMPLATE_LEN: usize = 256;
/// Parameter request lists up to this long are hashed; longer ones are passed up.
pub const MAX_PRL: usize = 64;
/// Options the walk reads before it gives up (passes the request up).
pub const MAX_OPTIONS: usize = 24;
/// Entries of the lease map and of the template map.
pub const MAX_LEASES: u32 = 1 << 18;
pub const MAX_TEMPLATES: u32 = 256;
/// The reply's IPv4 TTL and the minimum DHCP message length, as user space writes them.
pub const TTL: u8 = 64;
pub const MIN_MESSAGE: usize = 300;

/// Lease map key: the client's identity as the engine keys it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct LeaseKey {
    /// 0: no client identifier, `id` holds `chaddr`'s six bytes; else the identifier's length.
    pub id_len: u32,
    pub id: [u8; MAX_ID],
}

/// Lease map value (user space writes it; the program writes only `renewed_ns`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Lease {
    /// The leased address, as in the frame.
    pub ciaddr: [u8; 4],
    /// Slot in the template map.
    pub template: u32,
    /// [`prl_hash`] of the request the template was cut for.
    pub prl_hash: u32,
    /// The frame's VLAN tags ([`vlans`]).
    pub vlans: u32,
    /// No renewal may extend the lease past this (`bpf_ktime_get_ns`, CLOCK_MONOTONIC).
    pub horizon_ns: u64,
    /// The last renewal answered in the program (CLOCK_MONOTONIC ns), 0 if none.
    pub renewed_ns: u64,
}

/// Template map value: an ACK's options before the echoes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Template {
    pub len: u32,
    /// The lease time the options carry.
    pub lease_secs: u32,
    /// The reply's source address (the subnet's server identifier), as in the frame.
    pub server: [u8; 4],
    pub _pad: u32,
    pub options: [u8; TEMPLATE_LEN],
}

impl Default for Template {
    fn default() -> Template {
        Template { len: 0, lease_secs: 0, server: [0; 4], _pad: 0, options: [0; TEMPLATE_LEN] }
    }
}

/// What the walk found in a plain renewal (offsets into the scratch buffer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Facts {
    /// Offset of the DHCP message, and its length.
    pub dhcp: usize,
    pub len: usize,
    /// Offset and length of the client identifier's value (length 0: none).
    pub id_at: usize,
    pub id_len: usize,
    pub prl_hash: u32,
}

/// A DHCP message inside the scratch buffer.
struct View<'a> {
    buf: &'a [u8; SCRATCH],
    start: usize,
    len: usize,
}

impl Message for View<'_> {
    #[inline(always)]
    fn len(&self) -> usize {
        self.len
    }

    #[inline(always)]
    fn byte(&self, at: usize) -> Option<u8> {
        (at < self.len).then(|| self.buf[(self.start + at) & MASK])
    }
}

#[inline(always)]
fn be16(buf: &[u8; SCRATCH], at: usize) -> u16 {
    (buf[at & MASK] as u16) << 8 | buf[(at + 1) & MASK] as u16
}

/// The frame's VLAN tags between the MACs and `l3` as one word: up to two 12-bit IDs and the count.
#[inline(always)]
pub fn vlans(buf: &[u8; SCRATCH], l3: usize) -> u32 {
    let count = (l3.saturating_sub(ETH_HLEN) / 4) as u32;
    let id = |n: usize| (be16(buf, ETH_HLEN + n * 4) & 0x0fff) as u32;
    match count {
        0 => 0,
        1 => 1 << 24 | id(0),
        _ => 2 << 24 | id(0) | id(1) << 12,
    }
}

/// FNV-1a over a request list (bytes of `msg` from `at`, `len` of them).
#[inline(always)]
pub fn prl_hash<M: Message + ?Sized>(msg: &M, at: usize, len: usize) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    let mut i = 0;
    while i < MAX_PRL && i < len {
        h = (h ^ msg.byte(at + i).unwrap_or(0) as u32).wrapping_mul(crate::HASH_PRIME);
        i += 1;
    }
    h
}

/// The facts of a frame of `frame_len` bytes whose IPv4 header starts at `l3`, if it is a
/// renewal the program may answer; `None` passes it up.
#[inline(always)]
pub fn plain_renewal(buf: &[u8; SCRATCH], l3: usize, frame_len: usize) -> Option<Facts> {
    if buf[l3 & MASK] != 0x45 {
        return None;
    }
    let l4 = l3 + IPV4_MIN_HLEN;
    let udp_len = be16(buf, l4 + 4) as usize;
    let dhcp = l4 + UDP_HLEN;
    if udp_len < UDP_HLEN + bootp::MIN_LEN || l4 + udp_len > frame_len || frame_len > MAX_FRAME {
        return None;
    }
    let msg = View { buf, start: dhcp, len: udp_len - UDP_HLEN };
    let b = |at: usize| msg.byte(at).unwrap_or(0);
    // op BOOTREQUEST, Ethernet, the magic cookie, ciaddr set, giaddr zero.
    let cookie = [b(236), b(237), b(238), b(239)];
    if b(0) != 1 || b(1) != 1 || b(2) != 6 || cookie != [99, 130, 83, 99] {
        return None;
    }
    if b(12) | b(13) | b(14) | b(15) == 0 || b(24) | b(25) | b(26) | b(27) != 0 {
        return None;
    }
    walk(&msg, dhcp)
}

/// Walks the options: a REQUEST, nothing that makes it other than a plain renewal, END reached.
#[inline(always)]
fn walk(msg: &View<'_>, dhcp: usize) -> Option<Facts> {
    let (mut at, mut i) = (bootp::MIN_LEN, 0);
    let (mut request, mut id, mut prl) = (false, (0, 0), None);
    while i < MAX_OPTIONS {
        i += 1;
        let code = msg.byte(at)?;
        if code == identity::PAD {
            at += 1;
            continue;
        }
        if code == identity::END {
            let prl_hash = match prl {
                Some((p, n)) => prl_hash(msg, p, n),
                None => 0,
            };
            return request.then_some(Facts { dhcp, len: msg.len, id_at: dhcp + id.0, id_len: id.1, prl_hash });
        }
        let len = msg.byte(at + 1)? as usize;
        if at + 2 + len > msg.len {
            return None;
        }
        match code {
            // Message type: REQUEST only.
            53 => request = len == 1 && msg.byte(at + 2)? == 3,
            // Requested address, server identifier (SELECTING, INIT-REBOOT), overload, relay info.
            50 | 54 | 52 | 82 => return None,
            61 if id.1 != 0 || len == 0 || len > MAX_ID => return None,
            61 => id = (at + 2, len),
            55 if len > MAX_PRL => return None,
            55 => prl = Some((at + 2, len)),
            _ => {}
        }
        at = (at + 2 + len) & 0x1fff;
    }
    None
}

/// The lease map key of a plain renewal.
#[inline(always)]
pub fn key(buf: &[u8; SCRATCH], f: &Facts) -> LeaseKey {
    let mut k = LeaseKey::default();
    let (at, n) = if f.id_len == 0 { (f.dhcp + bootp::CHADDR, 6) } else { (f.id_at, f.id_len) };
    k.id_len = f.id_len as u32;
    let mut i = 0;
    while i < MAX_ID {
        if i < n {
            k.id[i] = buf[(at + i) & MASK];
        }
        i += 1;
    }
    k
}

/// The lease map key of a client as the engine knows it: its identifier if it sent one (at
/// most [`MAX_ID`] bytes; `None` for longer ones), else `chaddr`.
pub fn key_of(client_id: Option<&[u8]>, chaddr: [u8; 6]) -> Option<LeaseKey> {
    let mut k = LeaseKey::default();
    match client_id {
        Some(id) if id.is_empty() || id.len() > MAX_ID => return None,
        Some(id) => {
            k.id_len = id.len() as u32;
            k.id[..id.len()].copy_from_slice(id);
        }
        None => k.id[..6].copy_from_slice(&chaddr),
    }
    Some(k)
}

/// Rewrites the request in `buf` (IPv4 header at `l3`) into the ACK for `lease`, from `mac`.
/// Returns the reply frame's length, `None` if it would not fit.
#[inline(always)]
pub fn write_reply(buf: &mut [u8; SCRATCH], l3: usize, f: &Facts, t: &Template, mac: [u8; 6]) -> Option<usize> {
    let tlen = t.len as usize;
    let echo = if f.id_len == 0 { 0 } else { 2 + f.id_len };
    let end = bootp::MIN_LEN + tlen + echo;
    let dhcp_len = if end + 1 < MIN_MESSAGE { MIN_MESSAGE } else { end + 1 };
    let total = f.dhcp + dhcp_len;
    if tlen > TEMPLATE_LEN || total > MAX_FRAME {
        return None;
    }
    // The client identifier moves to its echo first: the options are overwritten below.
    let mut id = [0u8; MAX_ID];
    let mut i = 0;
    while i < MAX_ID {
        id[i] = buf[(f.id_at + i) & MASK];
        i += 1;
    }
    // Ethernet: to the client (the request's source), from us; VLAN tags as they came.
    let mut i = 0;
    while i < 6 {
        buf[i] = buf[6 + i];
        buf[6 + i] = mac[i];
        i += 1;
    }
    write_bootp(buf, f.dhcp);
    put(buf, f.dhcp + bootp::MIN_LEN, &t.options, tlen);
    let mut at = f.dhcp + bootp::MIN_LEN + tlen;
    if echo != 0 {
        buf[at & MASK] = identity::CLIENT_ID;
        buf[(at + 1) & MASK] = f.id_len as u8;
        put(buf, at + 2, &id, f.id_len);
        at += echo;
    }
    buf[at & MASK] = identity::END;
    zero(buf, at + 1, f.dhcp + dhcp_len);
    write_udp_ip(buf, l3, f, t, dhcp_len);
    Some(total)
}

/// The fixed header of the ACK: op, xid, flags, ciaddr, chaddr and the cookie kept; `yiaddr`
/// is `ciaddr`; the rest zero.
#[inline(always)]
fn write_bootp(buf: &mut [u8; SCRATCH], d: usize) {
    buf[d & MASK] = 2;
    buf[(d + 3) & MASK] = 0;
    buf[(d + 8) & MASK] = 0;
    buf[(d + 9) & MASK] = 0;
    let mut i = 0;
    while i < 4 {
        buf[(d + 16 + i) & MASK] = buf[(d + 12 + i) & MASK];
        buf[(d + 20 + i) & MASK] = 0;
        i += 1;
    }
    zero(buf, d + 44, d + 236);
}

#[inline(always)]
fn put(buf: &mut [u8; SCRATCH], at: usize, src: &[u8], n: usize) {
    let mut i = 0;
    while i < TEMPLATE_LEN && i < n && i < src.len() {
        buf[(at + i) & MASK] = src[i];
        i += 1;
    }
}

#[inline(always)]
fn zero(buf: &mut [u8; SCRATCH], from: usize, to: usize) {
    let mut i = 0;
    while i < MAX_FRAME && from + i < to {
        buf[(from + i) & MASK] = 0;
        i += 1;
    }
}

#[inline(always)]
fn set16(buf: &mut [u8; SCRATCH], at: usize, v: u16) {
    buf[at & MASK] = (v >> 8) as u8;
    buf[(at + 1) & MASK] = v as u8;
}

/// IPv4 header (as `dhcp_core::wire::ipv4` writes it) and UDP header with its checksum.
#[inline(always)]
fn write_udp_ip(buf: &mut [u8; SCRATCH], l3: usize, f: &Facts, t: &Template, dhcp_len: usize) {
    let udp_len = UDP_HLEN + dhcp_len;
    let l4 = l3 + IPV4_MIN_HLEN;
    let mut i = 0;
    while i < 4 {
        // Destination: the client's address (ciaddr); source: the server identifier.
        buf[(l3 + 16 + i) & MASK] = buf[(f.dhcp + 12 + i) & MASK];
        buf[(l3 + 12 + i) & MASK] = t.server[i];
        i += 1;
    }
    set16(buf, l3 + 2, (IPV4_MIN_HLEN + udp_len) as u16);
    set16(buf, l3 + 4, 0);
    set16(buf, l3 + 6, 0);
    buf[(l3 + 1) & MASK] = 0;
    buf[(l3 + 8) & MASK] = TTL;
    set16(buf, l3 + 10, 0);
    let ip_sum = fold(sum16(buf, l3, IPV4_MIN_HLEN));
    set16(buf, l3 + 10, !ip_sum);
    set16(buf, l4, crate::SERVER_PORT);
    set16(buf, l4 + 2, crate::CLIENT_PORT);
    set16(buf, l4 + 4, udp_len as u16);
    set16(buf, l4 + 6, 0);
    // Pseudo-header: addresses, protocol, length.
    let pseudo = sum16(buf, l3 + 12, 8) + crate::frame::PROTOCOL_UDP as u32 + udp_len as u32;
    let mut c = !fold(pseudo + sum16(buf, l4, udp_len));
    if c == 0 {
        c = 0xffff;
    }
    set16(buf, l4 + 6, c);
}

/// Sum of the 16-bit big-endian words of `n` bytes from `at` (an odd last byte padded with zero).
#[inline(always)]
fn sum16(buf: &[u8; SCRATCH], at: usize, n: usize) -> u32 {
    let mut s = 0u32;
    let mut i = 0;
    while i < MAX_FRAME / 2 && 2 * i < n {
        let lo = if 2 * i + 1 < n { buf[(at + 2 * i + 1) & MASK] as u32 } else { 0 };
        s += (buf[(at + 2 * i) & MASK] as u32) << 8 | lo;
        i += 1;
    }
    s
}

#[inline(always)]
fn fold(mut s: u32) -> u16 {
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s as u16
}
