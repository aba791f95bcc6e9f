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

/// Copies `src` into `dst` (of the same length) without a call to `memcpy` for the short values
/// options hold: two overlapping fixed-size copies cover any length in a range, and the
/// compiler turns each into one load and one store. Longer values take `copy_from_slice`.
#[inline(always)]
pub(crate) fn copy_short(dst: &mut [u8], src: &[u8]) {
    let n = src.len();
    match n {
        0 => {}
        1..=3 => {
            dst[0] = src[0];
            dst[n / 2] = src[n / 2];
            dst[n - 1] = src[n - 1];
        }
        4..=7 => {
            dst[..4].copy_from_slice(&src[..4]);
            dst[n - 4..n].copy_from_slice(&src[n - 4..]);
        }
        8..=16 => {
            dst[..8].copy_from_slice(&src[..8]);
            dst[n - 8..n].copy_from_slice(&src[n - 8..]);
        }
        17..=32 => {
            dst[..16].copy_from_slice(&src[..16]);
            dst[n - 16..n].copy_from_slice(&src[n - 16..]);
        }
        _ => dst[..n].copy_from_slice(src),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn copy_short_copies_every_length() {
        let src: Vec<u8> = (1..=80).collect();
        for n in 0..=80 {
            let mut dst = vec![0u8; n];
            super::copy_short(&mut dst, &src[..n]);
            assert_eq!(dst, src[..n], "length {n}");
        }
    }
}
