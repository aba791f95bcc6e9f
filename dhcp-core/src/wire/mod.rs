//! Zero-copy views and writers for the bytes xdhcpd reads and writes: BOOTP/DHCPv4 messages and
//! their options, and the Ethernet (with VLAN tags), IPv4 and UDP headers around them on the raw
//! paths.
//!
//! Views borrow the caller's buffer; writers fill a caller's buffer. Nothing here allocates, and
//! once a view is checked no accessor can panic: malformed input is an [`Error`], never a panic.

pub mod checksum;
pub mod dhcp;
pub mod ether;
pub mod frame;
pub mod ipv4;
pub mod options;
pub mod udp;

use core::fmt;

/// Why bytes could not be read as, or written into, a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The buffer ends before the structure it should hold.
    Truncated,
    /// The DHCP magic cookie (99.130.83.99) is missing: a plain BOOTP or foreign message.
    BadMagic,
    /// An option's length runs past the end of its area.
    OptionOverrun,
    /// An option has a length its definition forbids (the option code is given).
    BadOptionLength(u8),
    /// A field holds a value its definition forbids (what is given).
    Malformed(&'static str),
    /// The output buffer (or the client's maximum message size) has no room left.
    NoRoom,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated => f.write_str("truncated"),
            Error::BadMagic => f.write_str("no DHCP magic cookie"),
            Error::OptionOverrun => f.write_str("option runs past the end of its area"),
            Error::BadOptionLength(code) => write!(f, "option {code} has an invalid length"),
            Error::Malformed(what) => write!(f, "malformed: {what}"),
            Error::NoRoom => f.write_str("no room in the output buffer"),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = core::result::Result<T, Error>;

/// Byte range of a fixed-size field.
pub(crate) type Field = core::ops::Range<usize>;

#[inline(always)]
pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline(always)]
pub(crate) fn be32(b: &[u8], f: Field) -> u32 {
    let s = &b[f];
    u32::from_be_bytes([s[0], s[1], s[2], s[3]])
}
