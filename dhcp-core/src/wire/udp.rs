//! UDP header (RFC 768) and its checksum over the IPv4 pseudo-header.

use super::{be16, checksum, Error, Result};
use core::net::Ipv4Addr;

pub const HEADER_LEN: usize = 8;

/// A view of a UDP datagram.
#[derive(Debug, Clone, Copy)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    pub const fn new_unchecked(buffer: T) -> UdpPacket<T> {
        UdpPacket { buffer }
    }

    /// Checks that the length field covers the header and fits the buffer.
    pub fn new_checked(buffer: T) -> Result<UdpPacket<T>> {
        let p = UdpPacket::new_unchecked(buffer);
        let b = p.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let len = p.len() as usize;
        if len < HEADER_LEN || len > b.len() {
            return Err(Error::Truncated);
        }
        Ok(p)
    }

    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), 0)
    }

    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), 2)
    }

    /// Length field: header plus payload.
    pub fn len(&self) -> u16 {
        be16(self.buffer.as_ref(), 4)
    }

    pub fn is_empty(&self) -> bool {
        self.len() as usize <= HEADER_LEN
    }

    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), 6)
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.len() as usize]
    }

    /// True if the checksum is absent (zero, allowed over IPv4) or right.
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        self.checksum() == 0 || sum(&self.buffer.as_ref()[..self.len() as usize], src, dst) == 0
    }

    /// True if the checksum field holds only the pseudo-header sum: what a sender that left the
    /// checksum to offload puts there (`CHECKSUM_PARTIAL`). XDP sees such datagrams as they are
    /// when they come from a local socket over veth or another virtual device.
    pub fn is_offload_partial(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        let mut s = checksum::accumulate(0, &src.octets());
        s = checksum::accumulate(s, &dst.octets());
        s += 17 + self.len() as u64;
        self.checksum() == !checksum::finish(s)
    }
}

fn sum(datagram: &[u8], src: Ipv4Addr, dst: Ipv4Addr) -> u16 {
    let mut s = checksum::accumulate(0, &src.octets());
    s = checksum::accumulate(s, &dst.octets());
    s += 17 + datagram.len() as u64;
    checksum::finish(checksum::accumulate(s, datagram))
}

/// Writes the UDP header in front of a payload already at `buf[8..8 + payload_len]`, with its
/// checksum. Returns the datagram length.
pub fn write(buf: &mut [u8], src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), payload_len: usize) -> Result<usize> {
    let len = HEADER_LEN + payload_len;
    if buf.len() < len || len > u16::MAX as usize {
        return Err(Error::NoRoom);
    }
    buf[0..2].copy_from_slice(&src.1.to_be_bytes());
    buf[2..4].copy_from_slice(&dst.1.to_be_bytes());
    buf[4..6].copy_from_slice(&(len as u16).to_be_bytes());
    buf[6..8].fill(0);
    let mut c = sum(&buf[..len], src.0, dst.0);
    if c == 0 {
        c = 0xffff; // zero means "no checksum" (RFC 768)
    }
    buf[6..8].copy_from_slice(&c.to_be_bytes());
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_round_trip() {
        let mut buf = [0u8; 8 + 5];
        buf[8..].copy_from_slice(b"hello");
        let a = (Ipv4Addr::new(100, 64, 0, 1), 67);
        let b = (Ipv4Addr::new(100, 64, 0, 9), 68);
        write(&mut buf, a, b, 5).unwrap();
        let p = UdpPacket::new_checked(&buf[..]).unwrap();
        assert!(p.verify_checksum(a.0, b.0));
        assert_eq!(p.payload(), b"hello");
        assert!(!p.verify_checksum(a.0, Ipv4Addr::new(100, 64, 0, 8)));
    }
}
