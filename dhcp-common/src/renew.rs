//! Renewals answered in the XDP program (XDP_TX): the lease map's and template map's layouts,
//! which requests the program answers ([`plain_renewal`]), their map key ([`key`]) and the
//! reply it writes ([`write_reply`]). All of it runs on a copy of the frame in a [`Scratch`]
//! buffer (a per-CPU map value in the program, a value in user space), every index masked, so
//! that the program and the tests run the very same code.
//!
//! Cost: the program runs once per renewal on the receiving CPU, so its instructions are the
//! kernel path's price. Loops run only as far as the data goes (options to END, the request
//! list, the identifier), and the reply's bulk (zeroed `sname` and `file`, the template's
//! options) moves in aligned 4-byte words: the frame sits [`AT`] bytes into the buffer, which
//! puts the DHCP message on a 4-byte boundary.
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
/// Where a frame starts in the scratch buffer: two bytes in, so that the DHCP message after an
/// Ethernet header, any VLAN tags (4 bytes each) and a 20-byte IPv4 header starts on a 4-byte
/// boundary, as do its `sname` field and its options.
pub const AT: usize = 2;

/// The scratch copy of a frame (from [`AT`]), 8-aligned so that 4-byte words at offsets that
/// are multiples of four are aligned words.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scratch(pub [u8; SCRATCH]);

impl Default for Scratch {
    fn default() -> Scratch {
        Scratch([0; SCRATCH])
    }
}

impl core::ops::Index<usize> for Scratch {
    type Output = u8;
    #[inline(always)]
    fn index(&self, i: usize) -> &u8 {
        &self.0[i]
    }
}

impl core::ops::IndexMut<usize> for Scratch {
    #[inline(always)]
    fn index_mut(&mut self, i: usize) -> &mut u8 {
        &mut self.0[i]
    }
}

impl Scratch {
    /// Writes the 4-byte word at `at`, a multiple of four by construction (masked into the
    /// buffer: an aligned word, which the compiler can store at once).
    #[inline(always)]
    fn set_word(&mut self, at: usize, w: [u8; 4]) {
        let at = at & core::hint::black_box(MASK & !3) & (MASK & !3);
        self.0[at..at + 4].copy_from_slice(&w);
    }
}
/// Longest request frame the program copies, and longest reply it writes.
pub const MAX_FRAME: usize = 700;
/// Client identifiers up to this long are keys; longer ones are passed up.
pub const MAX_ID: usize = identity::MAX_HASHED;
/// Option bytes of a template (everything the engine's ACK holds before the echoes).
pub const TEMPLATE_LEN: usize = 256;
/// Parameter request lists up to this long are hashed; longer ones are passed up.
pub const MAX_PRL: usize = 64;
/// Options the walk reads before it gives up (passes the request up).
pub const MAX_OPTIONS: usize = 12;
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

/// Template map value: an ACK's options before the echoes. 8-aligned: the options start 16
/// bytes in, so they are read as aligned 4-byte words.
#[repr(C, align(8))]
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

impl Template {
    /// The `i`th 4-byte word of the options.
    #[inline(always)]
    fn word(&self, i: usize) -> [u8; 4] {
        let at = (i * 4) & (TEMPLATE_LEN - 4);
        [self.options[at], self.options[at + 1], self.options[at + 2], self.options[at + 3]]
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
    buf: &'a Scratch,
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
        (at < self.len).then(|| self.buf[ix(self.start + at)])
    }
}

/// An index into the scratch buffer, masked where both the compiler and the verifier see it:
/// the optimiser drops a mask it can prove redundant from earlier checks the verifier did not
/// follow, so the mask it cannot see through (`black_box`) stays in the program.
#[inline(always)]
fn ix(at: usize) -> usize {
    at & core::hint::black_box(MASK) & MASK
}

/// A loop's bound, kept by the optimiser (which drops a bound it can prove from checks the
/// verifier does not follow) so that the verifier sees every loop end.
#[inline(always)]
fn cap(n: usize) -> usize {
    core::hint::black_box(n)
}

#[inline(always)]
fn be16(buf: &Scratch, at: usize) -> u16 {
    (buf[ix(at)] as u16) << 8 | buf[ix(at + 1)] as u16
}

/// The frame's VLAN tags between the MACs and `l3` as one word: up to two 12-bit IDs and the count.
#[inline(always)]
pub fn vlans(buf: &Scratch, l3: usize) -> u32 {
    let count = (l3.saturating_sub(AT + ETH_HLEN) / 4) as u32;
    let id = |n: usize| (be16(buf, AT + ETH_HLEN + n * 4) & 0x0fff) as u32;
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

/// [`prl_hash`] of `len` bytes of the scratch buffer from `at` (the walk checked that they are
/// inside the message and at most [`MAX_PRL`]).
#[inline(always)]
fn prl_hash_at(buf: &Scratch, at: usize, len: usize) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    let mut i = 0;
    while i < cap(MAX_PRL) && i < len {
        h = (h ^ buf[ix(at + i)] as u32).wrapping_mul(crate::HASH_PRIME);
        i += 1;
    }
    h
}

/// The facts of a frame of `frame_len` bytes (in the buffer from [`AT`]) whose IPv4 header
/// starts at `l3` (an offset into the buffer), if it is a renewal the program may answer;
/// `None` passes it up.
#[inline(always)]
pub fn plain_renewal(buf: &Scratch, l3: usize, frame_len: usize) -> Option<Facts> {
    if buf[ix(l3)] != 0x45 {
        return None;
    }
    let l4 = l3 + IPV4_MIN_HLEN;
    let udp_len = be16(buf, l4 + 4) as usize;
    let dhcp = l4 + UDP_HLEN;
    if udp_len < UDP_HLEN + bootp::MIN_LEN || l4 + udp_len > AT + frame_len || frame_len > MAX_FRAME {
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
/// Without a branch in the loop's body (every test is arithmetic on all-ones/zero masks, hidden
/// from the optimiser, which would turn them back into branches): the verifier follows one
/// path per iteration, and the loop stops once the options end.
#[inline(always)]
fn walk(msg: &View<'_>, dhcp: usize) -> Option<Facts> {
    let (mut at, mut i) = (bootp::MIN_LEN as u64, 0);
    // Masks: all ones for true.
    let (mut ended, mut bad, mut request) = (0u64, 0u64, 0u64);
    let (mut id_at, mut id_len, mut prl_at, mut prl_len) = (0u64, 0u64, 0u64, 0u64);
    let n = msg.len as u64;
    // Ends at END (or at the first fault): most renewals carry four to eight options.
    while i < cap(MAX_OPTIONS) && ended == 0 {
        i += 1;
        let code = msg.buf[ix(msg.start + at as usize)] as u64;
        let len = msg.buf[ix(msg.start + at as usize + 1)] as u64;
        let value = msg.buf[ix(msg.start + at as usize + 2)] as u64;
        // Past the message without END: not a message the program is sure of.
        let off = !ended & mask(lt(n, at + 1));
        bad |= off;
        ended |= off;
        let live = !ended;
        let is_end = mask(eq(code, 255)) & live;
        let pad = mask(eq(code, 0));
        let opt = live & !is_end & !pad;
        ended |= is_end;
        bad |= opt & mask(lt(n, at + 2 + len));
        let m53 = opt & mask(eq(code, 53));
        request = (request & !m53) | (m53 & mask(eq(len, 1)) & mask(eq(value, 3)));
        bad |= opt & mask(eq(code, 50) | eq(code, 54) | eq(code, 52) | eq(code, 82));
        let m61 = opt & mask(eq(code, 61));
        bad |= m61 & (mask(ne(id_len, 0)) | mask(eq(len, 0)) | mask(lt(MAX_ID as u64, len)));
        id_at = sel(m61, at + 2, id_at);
        id_len = sel(m61, len, id_len);
        let m55 = opt & mask(eq(code, 55));
        bad |= m55 & mask(lt(MAX_PRL as u64, len));
        prl_at = sel(m55, at + 2, prl_at);
        prl_len = sel(m55, len, prl_len);
        at = (at + sel(pad, 1, sel(opt, 2 + len, 0))) & 0x1fff;
    }
    let found_end = ended & !bad & request;
    if found_end == 0 {
        return None;
    }
    let (id_at, id_len) = (id_at as usize, id_len as usize);
    let prl_hash = if prl_len == 0 { 0 } else { prl_hash_at(msg.buf, dhcp + prl_at as usize, prl_len as usize) };
    Some(Facts { dhcp, len: msg.len, id_at: dhcp + id_at, id_len, prl_hash })
}

/// 1 when `a == b`, else 0 (values below 2^63).
#[inline(always)]
fn eq(a: u64, b: u64) -> u64 {
    (core::hint::black_box((a ^ b).wrapping_sub(1)) >> 63) & 1
}

#[inline(always)]
fn ne(a: u64, b: u64) -> u64 {
    eq(a, b) ^ 1
}

/// 1 when `a < b` (values below 2^62).
#[inline(always)]
fn lt(a: u64, b: u64) -> u64 {
    // Hidden: the optimiser would see a comparison here, and BPF has no instruction that
    // turns a comparison into a value, only branches.
    (core::hint::black_box(a.wrapping_sub(b)) >> 63) & 1
}

/// 0 or 1 to a mask, opaque to the optimiser.
#[inline(always)]
fn mask(bit: u64) -> u64 {
    core::hint::black_box(bit.wrapping_neg())
}

#[inline(always)]
fn sel(m: u64, a: u64, b: u64) -> u64 {
    (a & m) | (b & !m)
}

/// The lease map key of a plain renewal.
#[inline(always)]
pub fn key(buf: &Scratch, f: &Facts) -> LeaseKey {
    let mut k = LeaseKey::default();
    let (at, n) = if f.id_len == 0 { (f.dhcp + bootp::CHADDR, 6) } else { (f.id_at, f.id_len) };
    k.id_len = f.id_len as u32;
    let mut i = 0;
    while i < MAX_ID && i < n {
        k.id[i] = buf[ix(at + i)];
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

/// Rewrites the request in `buf` (IPv4 header at `l3`) into the ACK for `key`'s lease with
/// template `t`, from `mac`. Returns the reply frame's length, `None` if it would not fit.
/// `sum` adds up the UDP datagram for its checksum as [`sum16`] does (the program uses a
/// helper: a byte loop that long is more than the verifier will follow); the eight bytes
/// after the message are zero.
#[inline(always)]
pub fn write_reply(
    buf: &mut Scratch,
    l3: usize,
    f: &Facts,
    key: &LeaseKey,
    (t, mac): (&Template, [u8; 6]),
    sum: impl Fn(&Scratch, usize, usize) -> u32,
) -> Option<usize> {
    let tlen = t.len as usize;
    let echo = if f.id_len == 0 { 0 } else { 2 + f.id_len };
    let end = bootp::MIN_LEN + tlen + echo;
    let dhcp_len = if end + 1 < MIN_MESSAGE { MIN_MESSAGE } else { end + 1 };
    let total = f.dhcp + dhcp_len;
    if tlen > TEMPLATE_LEN || f.id_len > MAX_ID || total > AT + MAX_FRAME {
        return None;
    }
    // Ethernet: to the client (the request's source), from us; VLAN tags as they came.
    let mut i = 0;
    while i < 6 {
        buf[AT + i] = buf[AT + 6 + i];
        buf[AT + 6 + i] = mac[i];
        i += 1;
    }
    write_bootp(buf, f.dhcp);
    // The template goes in, with its zeros past its length as far as the pad up to 300
    // bytes reaches, then the echo of the client identifier (from the key: the request's
    // bytes under it are gone), END and zeros.
    let opts = f.dhcp + bootp::MIN_LEN;
    let words = tlen.div_ceil(4).max((MIN_MESSAGE - bootp::MIN_LEN).div_ceil(4));
    let mut i = 0;
    while i < cap(TEMPLATE_LEN / 4) && i < words {
        buf.set_word(opts + 4 * i, t.word(i));
        i += 1;
    }
    write_tail(buf, opts + tlen, key, f.id_len);
    write_udp_ip(buf, l3, f, t, dhcp_len, sum);
    Some(total - AT)
}

/// What ends the options at `at`: the client identifier's echo (when `id_len` > 0), END, then
/// seven zeros (so a checksum over whole words reads zeros past the message).
#[inline(always)]
fn write_tail(buf: &mut Scratch, mut at: usize, key: &LeaseKey, id_len: usize) {
    if id_len != 0 {
        buf[ix(at)] = identity::CLIENT_ID;
        buf[ix(at + 1)] = id_len as u8;
        let mut i = 0;
        while i < MAX_ID && i < id_len {
            buf[ix(at + 2 + i)] = key.id[i];
            i += 1;
        }
        at += 2 + id_len;
    }
    buf[ix(at)] = identity::END;
    let mut i = 1;
    while i < 8 {
        buf[ix(at + i)] = 0;
        i += 1;
    }
}

/// The fixed header of the ACK: op, xid, flags, ciaddr, chaddr and the cookie kept; `yiaddr`
/// is `ciaddr`; the rest zero (`sname` and `file` in words: `d` is a multiple of four).
#[inline(always)]
fn write_bootp(buf: &mut Scratch, d: usize) {
    buf[ix(d)] = 2;
    buf[ix(d + 3)] = 0;
    buf[ix(d + 8)] = 0;
    buf[ix(d + 9)] = 0;
    let mut i = 0;
    while i < 4 {
        buf[ix(d + 16 + i)] = buf[ix(d + 12 + i)];
        buf[ix(d + 20 + i)] = 0;
        i += 1;
    }
    let mut i = 0;
    while i < cap((236 - 44) / 4) {
        buf.set_word(d + 44 + 4 * i, [0; 4]);
        i += 1;
    }
}

#[inline(always)]
fn set16(buf: &mut Scratch, at: usize, v: u16) {
    buf[ix(at)] = (v >> 8) as u8;
    buf[ix(at + 1)] = v as u8;
}

/// IPv4 header (as `dhcp_core::wire::ipv4` writes it) and UDP header with its checksum.
#[inline(always)]
fn write_udp_ip(
    buf: &mut Scratch,
    l3: usize,
    f: &Facts,
    t: &Template,
    dhcp_len: usize,
    sum: impl Fn(&Scratch, usize, usize) -> u32,
) {
    let udp_len = UDP_HLEN + dhcp_len;
    let l4 = l3 + IPV4_MIN_HLEN;
    let mut i = 0;
    while i < 4 {
        // Destination: the client's address (ciaddr); source: the server identifier.
        buf[ix(l3 + 16 + i)] = buf[ix(f.dhcp + 12 + i)];
        buf[ix(l3 + 12 + i)] = t.server[i];
        i += 1;
    }
    set16(buf, l3 + 2, (IPV4_MIN_HLEN + udp_len) as u16);
    set16(buf, l3 + 4, 0);
    set16(buf, l3 + 6, 0);
    buf[ix(l3 + 1)] = 0;
    buf[ix(l3 + 8)] = TTL;
    set16(buf, l3 + 10, 0);
    let ip_sum = fold(sum16(buf, l3, IPV4_MIN_HLEN));
    set16(buf, l3 + 10, !ip_sum);
    set16(buf, l4, crate::SERVER_PORT);
    set16(buf, l4 + 2, crate::CLIENT_PORT);
    set16(buf, l4 + 4, udp_len as u16);
    set16(buf, l4 + 6, 0);
    // Pseudo-header: addresses, protocol, length.
    let pseudo = sum16(buf, l3 + 12, 8) + crate::frame::PROTOCOL_UDP as u32 + udp_len as u32;
    let mut c = !fold(pseudo + sum(buf, l4, udp_len));
    if c == 0 {
        c = 0xffff;
    }
    set16(buf, l4 + 6, c);
}

/// Sum of the 16-bit big-endian words of `n` bytes from `at` (an odd last byte padded with zero).
#[inline(always)]
pub fn sum16(buf: &Scratch, at: usize, n: usize) -> u32 {
    let mut s = 0u32;
    let mut i = 0;
    while i < cap(MAX_FRAME / 2) && 2 * i < n {
        let lo = if 2 * i + 1 < n { buf[ix(at + 2 * i + 1)] as u32 } else { 0 };
        s += (buf[ix(at + 2 * i)] as u32) << 8 | lo;
        i += 1;
    }
    s
}

#[inline(always)]
pub fn fold(mut s: u32) -> u16 {
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s as u16
}
