//! The BOOTP/DHCPv4 fixed header (RFC 2131 §2, RFC 951) and a writer for whole messages.
//!
//! ```text
//!  0      op    htype   hlen   hops
//!  4      xid (4)
//!  8      secs (2)      flags (2)
//! 12      ciaddr (4)   16 yiaddr (4)   20 siaddr (4)   24 giaddr (4)
//! 28      chaddr (16)
//! 44      sname (64)
//! 108     file (128)
//! 236     magic cookie 99.130.83.99
//! 240     options (variable)
//! ```

use super::{be16, be32, options, Error, Result};
use core::net::Ipv4Addr;

mod field {
    use crate::wire::Field;
    pub(super) const OP: usize = 0;
    pub(super) const HTYPE: usize = 1;
    pub(super) const HLEN: usize = 2;
    pub(super) const HOPS: usize = 3;
    pub(super) const XID: Field = 4..8;
    pub(super) const SECS: usize = 8;
    pub(super) const FLAGS: usize = 10;
    pub(super) const CIADDR: Field = 12..16;
    pub(super) const YIADDR: Field = 16..20;
    pub(super) const SIADDR: Field = 20..24;
    pub(super) const GIADDR: Field = 24..28;
    pub(super) const CHADDR: Field = 28..44;
    pub(super) const SNAME: Field = 44..108;
    pub(super) const FILE: Field = 108..236;
    pub(super) const MAGIC: Field = 236..240;
    pub(super) const OPTIONS: usize = 240;
}

/// Length of the fixed header including the magic cookie: the smallest DHCP message.
pub const HEADER_LEN: usize = field::OPTIONS;
/// RFC 1497 / RFC 2131 §3 magic cookie that starts the options field.
pub const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
/// RFC 1542 §2.1: relay agents and old clients expect BOOTP messages of at least 300 bytes,
/// so replies are padded to this length.
pub const MIN_MESSAGE_LEN: usize = 300;
/// RFC 2131 §2: every client accepts messages of at least 576 bytes (IP datagram), so
/// 576 - 20 (IP) - 8 (UDP) bytes of DHCP message.
pub const DEFAULT_MAX_MESSAGE_LEN: usize = 576 - 28;
/// `flags` bit that asks for a broadcast reply (the most significant bit, RFC 2131 §2).
pub const FLAG_BROADCAST: u16 = 0x8000;
/// `htype` of Ethernet (RFC 1700).
pub const HTYPE_ETHERNET: u8 = 1;

/// BOOTP `op` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Request = 1,
    Reply = 2,
}

/// A view of a DHCP message in a byte buffer.
///
/// After [`DhcpPacket::new_checked`] the buffer holds at least the fixed header and the magic
/// cookie, so no accessor can panic.
#[derive(Debug, Clone, Copy)]
pub struct DhcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> DhcpPacket<T> {
    /// A view with no checks; accessors may panic if the buffer is shorter than [`HEADER_LEN`].
    pub const fn new_unchecked(buffer: T) -> DhcpPacket<T> {
        DhcpPacket { buffer }
    }

    /// A view of a buffer that holds at least the fixed header and the magic cookie.
    pub fn new_checked(buffer: T) -> Result<DhcpPacket<T>> {
        let packet = DhcpPacket::new_unchecked(buffer);
        packet.check()?;
        Ok(packet)
    }

    /// Checks the length and the magic cookie.
    pub fn check(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if b[field::MAGIC] != MAGIC_COOKIE {
            return Err(Error::BadMagic);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// `op`: 1 = BOOTREQUEST (client or relay to server), 2 = BOOTREPLY.
    pub fn op(&self) -> u8 {
        self.buffer.as_ref()[field::OP]
    }

    /// `htype`: hardware address type (1 = Ethernet).
    pub fn htype(&self) -> u8 {
        self.buffer.as_ref()[field::HTYPE]
    }

    /// `hlen`: hardware address length (6 for Ethernet).
    pub fn hlen(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    /// `hops`: incremented by each relay agent on the way.
    pub fn hops(&self) -> u8 {
        self.buffer.as_ref()[field::HOPS]
    }

    /// `xid`: transaction id chosen by the client, echoed in replies.
    pub fn xid(&self) -> u32 {
        be32(self.buffer.as_ref(), field::XID)
    }

    /// `secs`: seconds since the client began acquisition or renewal.
    pub fn secs(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SECS)
    }

    /// `flags`: only the most significant bit (broadcast) is defined.
    pub fn flags(&self) -> u16 {
        be16(self.buffer.as_ref(), field::FLAGS)
    }

    /// The client asks for replies to be broadcast (it cannot receive unicast before it has an
    /// address).
    pub fn broadcast(&self) -> bool {
        self.flags() & FLAG_BROADCAST != 0
    }

    /// `ciaddr`: client IP address; only filled in if the client is in BOUND, RENEWING or
    /// REBINDING state and can respond to ARP requests.
    pub fn ciaddr(&self) -> Ipv4Addr {
        Ipv4Addr::from(be32(self.buffer.as_ref(), field::CIADDR))
    }

    /// `yiaddr`: "your" (client) IP address, set by the server in OFFER and ACK.
    pub fn yiaddr(&self) -> Ipv4Addr {
        Ipv4Addr::from(be32(self.buffer.as_ref(), field::YIADDR))
    }

    /// `siaddr`: address of the next server to use in bootstrap (TFTP).
    pub fn siaddr(&self) -> Ipv4Addr {
        Ipv4Addr::from(be32(self.buffer.as_ref(), field::SIADDR))
    }

    /// `giaddr`: relay agent IP address, set by the first relay agent (RFC 1542).
    pub fn giaddr(&self) -> Ipv4Addr {
        Ipv4Addr::from(be32(self.buffer.as_ref(), field::GIADDR))
    }

    /// `chaddr`: client hardware address, 16 bytes of which the first `hlen` count.
    pub fn chaddr(&self) -> &[u8; 16] {
        self.buffer.as_ref()[field::CHADDR].try_into().unwrap_or(&[0; 16])
    }

    /// The first six bytes of `chaddr`: the Ethernet MAC address for `htype` 1.
    pub fn client_mac(&self) -> [u8; 6] {
        let c = &self.buffer.as_ref()[field::CHADDR];
        [c[0], c[1], c[2], c[3], c[4], c[5]]
    }

    /// `sname`: server host name, or more options when option 52 says so.
    pub fn sname(&self) -> &[u8] {
        &self.buffer.as_ref()[field::SNAME]
    }

    /// `file`: boot file name, or more options when option 52 says so.
    pub fn file(&self) -> &[u8] {
        &self.buffer.as_ref()[field::FILE]
    }

    /// The options field after the magic cookie (RFC 2132).
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[field::OPTIONS..]
    }
}

impl<'a> DhcpPacket<&'a [u8]> {
    /// Reads all options, following option overload into `file` and `sname`. The values borrow
    /// the message buffer, not this view.
    pub fn parse_options(&self) -> Result<options::Options<'a>> {
        let b: &'a [u8] = self.buffer;
        options::Options::parse(&b[field::OPTIONS..], &b[field::FILE], &b[field::SNAME])
    }

    /// [`DhcpPacket::parse_options`] in place, into `opts` (which must be
    /// [`options::Options::default`]).
    #[inline]
    pub fn read_options(&self, opts: &mut options::Options<'a>) -> Result<()> {
        let b: &'a [u8] = self.buffer;
        opts.read(&b[field::OPTIONS..], &b[field::FILE], &b[field::SNAME])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> DhcpPacket<T> {
    fn bytes_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }

    pub fn set_op(&mut self, op: Op) {
        self.bytes_mut()[field::OP] = op as u8;
    }

    pub fn set_htype(&mut self, v: u8) {
        self.bytes_mut()[field::HTYPE] = v;
    }

    pub fn set_hlen(&mut self, v: u8) {
        self.bytes_mut()[field::HLEN] = v;
    }

    pub fn set_hops(&mut self, v: u8) {
        self.bytes_mut()[field::HOPS] = v;
    }

    pub fn set_xid(&mut self, v: u32) {
        self.bytes_mut()[field::XID].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_secs(&mut self, v: u16) {
        self.bytes_mut()[field::SECS..field::SECS + 2].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_flags(&mut self, v: u16) {
        self.bytes_mut()[field::FLAGS..field::FLAGS + 2].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_ciaddr(&mut self, v: Ipv4Addr) {
        self.bytes_mut()[field::CIADDR].copy_from_slice(&v.octets());
    }

    pub fn set_yiaddr(&mut self, v: Ipv4Addr) {
        self.bytes_mut()[field::YIADDR].copy_from_slice(&v.octets());
    }

    pub fn set_siaddr(&mut self, v: Ipv4Addr) {
        self.bytes_mut()[field::SIADDR].copy_from_slice(&v.octets());
    }

    pub fn set_giaddr(&mut self, v: Ipv4Addr) {
        self.bytes_mut()[field::GIADDR].copy_from_slice(&v.octets());
    }

    pub fn set_chaddr(&mut self, v: &[u8; 16]) {
        self.bytes_mut()[field::CHADDR].copy_from_slice(v);
    }

    pub fn set_magic(&mut self) {
        self.bytes_mut()[field::MAGIC].copy_from_slice(&MAGIC_COOKIE);
    }

    pub fn sname_mut(&mut self) -> &mut [u8] {
        &mut self.bytes_mut()[field::SNAME]
    }

    pub fn file_mut(&mut self) -> &mut [u8] {
        &mut self.bytes_mut()[field::FILE]
    }
}

/// Writes a DHCP message into a caller's buffer: the fixed header first (through
/// [`DhcpWriter::header`]), then options in order, then [`DhcpWriter::finish`] adds the END option and
/// pads to [`MIN_MESSAGE_LEN`].
///
/// Options longer than 255 bytes are split into several instances (RFC 3396). `limit` caps the
/// message length (the client's maximum message size); an option that does not fit is refused
/// with [`Error::NoRoom`] and leaves the message as it was.
#[derive(Debug)]
pub struct DhcpWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
    limit: usize,
}

impl<'a> DhcpWriter<'a> {
    /// Starts a message: zeroes the fixed header and sets the magic cookie. `limit` is the
    /// largest message the receiver accepts (clamped to the buffer).
    pub fn new(buf: &'a mut [u8], limit: usize) -> Result<DhcpWriter<'a>> {
        if buf.len() < HEADER_LEN + 1 {
            return Err(Error::NoRoom);
        }
        let limit = limit.min(buf.len());
        if limit < HEADER_LEN + 1 {
            return Err(Error::NoRoom);
        }
        buf[..HEADER_LEN].fill(0);
        let mut w = DhcpWriter { buf, len: HEADER_LEN, limit };
        w.header().set_magic();
        Ok(w)
    }

    /// The fixed header, to set its fields.
    pub fn header(&mut self) -> DhcpPacket<&mut [u8]> {
        DhcpPacket::new_unchecked(&mut self.buf[..HEADER_LEN])
    }

    /// Bytes still free for options (one byte is kept for END).
    pub fn room(&self) -> usize {
        self.limit - self.len - 1
    }

    /// Bytes an option of `data_len` bytes takes, with the RFC 3396 split.
    pub const fn encoded_len(data_len: usize) -> usize {
        options::encoded_len(data_len)
    }

    /// Appends one option, split into 255-byte instances when longer (RFC 3396).
    #[inline]
    pub fn option(&mut self, code: u8, data: &[u8]) -> Result<()> {
        if Self::encoded_len(data.len()) > self.room() {
            return Err(Error::NoRoom);
        }
        self.len += options::encode(code, data, &mut self.buf[self.len..]);
        Ok(())
    }

    /// Appends options already encoded as on the wire (see [`options::encode`]), such as a
    /// subnet's options compiled at start-up.
    #[inline]
    pub fn put_encoded(&mut self, bytes: &[u8]) -> Result<()> {
        self.put_encoded_keeping(bytes, 0)
    }

    /// [`DhcpWriter::put_encoded`] only if `keep` bytes stay free after it (for options that
    /// must still follow).
    #[inline]
    pub fn put_encoded_keeping(&mut self, bytes: &[u8], keep: usize) -> Result<()> {
        if bytes.len() + keep > self.room() {
            return Err(Error::NoRoom);
        }
        let end = self.len + bytes.len();
        super::copy_short(&mut self.buf[self.len..end], bytes);
        self.len = end;
        Ok(())
    }

    pub fn option_u8(&mut self, code: u8, v: u8) -> Result<()> {
        self.option(code, &[v])
    }

    pub fn option_u16(&mut self, code: u8, v: u16) -> Result<()> {
        self.option(code, &v.to_be_bytes())
    }

    pub fn option_u32(&mut self, code: u8, v: u32) -> Result<()> {
        self.option(code, &v.to_be_bytes())
    }

    pub fn option_ip(&mut self, code: u8, v: Ipv4Addr) -> Result<()> {
        self.option(code, &v.octets())
    }

    /// Ends the options with END, pads with zeros to [`MIN_MESSAGE_LEN`] (when the limit
    /// allows) and returns the message length.
    pub fn finish(self) -> usize {
        self.buf[self.len] = options::code::END;
        let end = self.len + 1;
        let padded = end.max(MIN_MESSAGE_LEN.min(self.limit));
        self.buf[end..padded].fill(0);
        padded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_or_foreign_buffers_are_refused() {
        assert_eq!(DhcpPacket::new_checked(&[0u8; 239][..]).unwrap_err(), Error::Truncated);
        assert_eq!(DhcpPacket::new_checked(&[0u8; 240][..]).unwrap_err(), Error::BadMagic);
    }

    #[test]
    fn broadcast_flag_is_the_most_significant_bit() {
        let mut buf = [0u8; 300];
        let mut w = DhcpWriter::new(&mut buf, 300).unwrap();
        w.header().set_flags(FLAG_BROADCAST);
        w.finish();
        let p = DhcpPacket::new_checked(&buf[..]).unwrap();
        assert!(p.broadcast());
        assert_eq!(buf[10], 0x80);
        assert_eq!(buf[11], 0x00);
    }

    #[test]
    fn long_options_are_split_and_no_room_leaves_message_intact() {
        let mut buf = [0u8; 1024];
        let mut w = DhcpWriter::new(&mut buf, 1024).unwrap();
        let data = [7u8; 300];
        w.option(43, &data).unwrap();
        let before = w.room();
        assert_eq!(w.option(43, &[0u8; 1000]), Err(Error::NoRoom));
        assert_eq!(w.room(), before);
        let len = w.finish();
        assert_eq!(&buf[240..242], &[43, 255]);
        assert_eq!(&buf[497..499], &[43, 45]);
        assert_eq!(buf[544], options::code::END);
        assert_eq!(len, 545);
    }
}
