//! IPv4 header (RFC 791).

use super::{be16, checksum, Error, Result};
use core::net::Ipv4Addr;

pub const MIN_HEADER_LEN: usize = 20;
pub const PROTOCOL_UDP: u8 = 17;
const FLAG_MF: u16 = 0x2000;
const FRAG_OFFSET: u16 = 0x1fff;

/// A view of an IPv4 header and its payload.
#[derive(Debug, Clone, Copy)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    pub const fn new_unchecked(buffer: T) -> Ipv4Packet<T> {
        Ipv4Packet { buffer }
    }

    /// Checks version, header length (any IHL from 5 to 15) and total length against the
    /// buffer. The buffer may be longer than the packet (Ethernet padding).
    pub fn new_checked(buffer: T) -> Result<Ipv4Packet<T>> {
        let p = Ipv4Packet::new_unchecked(buffer);
        let b = p.buffer.as_ref();
        if b.len() < MIN_HEADER_LEN {
            return Err(Error::Truncated);
        }
        if b[0] >> 4 != 4 {
            return Err(Error::Malformed("IP version is not 4"));
        }
        let hl = p.header_len();
        if hl < MIN_HEADER_LEN {
            return Err(Error::Malformed("IPv4 header length below 20"));
        }
        let total = p.total_len() as usize;
        if b.len() < hl || total < hl || total > b.len() {
            return Err(Error::Truncated);
        }
        Ok(p)
    }

    pub fn header_len(&self) -> usize {
        ((self.buffer.as_ref()[0] & 0x0f) as usize) * 4
    }

    pub fn total_len(&self) -> u16 {
        be16(self.buffer.as_ref(), 2)
    }

    pub fn ident(&self) -> u16 {
        be16(self.buffer.as_ref(), 4)
    }

    /// Part of a fragmented datagram (more fragments, or a non-zero offset).
    pub fn is_fragment(&self) -> bool {
        let f = be16(self.buffer.as_ref(), 6);
        f & FLAG_MF != 0 || f & FRAG_OFFSET != 0
    }

    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[8]
    }

    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[9]
    }

    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), 10)
    }

    pub fn src(&self) -> Ipv4Addr {
        let b = self.buffer.as_ref();
        Ipv4Addr::new(b[12], b[13], b[14], b[15])
    }

    pub fn dst(&self) -> Ipv4Addr {
        let b = self.buffer.as_ref();
        Ipv4Addr::new(b[16], b[17], b[18], b[19])
    }

    pub fn verify_checksum(&self) -> bool {
        checksum::checksum(&self.buffer.as_ref()[..self.header_len()]) == 0
    }

    /// The bytes after the header, up to the total length.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..self.total_len() as usize]
    }
}

/// Fields of an IPv4 header to write.
#[derive(Debug, Clone, Copy)]
pub struct Repr {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: u8,
    pub payload_len: usize,
    pub ttl: u8,
    pub ident: u16,
}

impl Repr {
    /// Writes a 20-byte header (no options, don't-fragment clear) with its checksum.
    pub fn write(&self, buf: &mut [u8]) -> Result<usize> {
        let total = MIN_HEADER_LEN + self.payload_len;
        if buf.len() < MIN_HEADER_LEN || total > u16::MAX as usize {
            return Err(Error::NoRoom);
        }
        let h = &mut buf[..MIN_HEADER_LEN];
        h[0] = 0x45;
        h[1] = 0; // DSCP/ECN
        h[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        h[4..6].copy_from_slice(&self.ident.to_be_bytes());
        h[6..8].fill(0);
        h[8] = self.ttl;
        h[9] = self.protocol;
        h[10..12].fill(0);
        h[12..16].copy_from_slice(&self.src.octets());
        h[16..20].copy_from_slice(&self.dst.octets());
        let sum = checksum::checksum(h);
        h[10..12].copy_from_slice(&sum.to_be_bytes());
        Ok(MIN_HEADER_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_header_verifies_and_reads_back() {
        let mut buf = [0u8; 28];
        let r = Repr {
            src: Ipv4Addr::new(100, 64, 0, 1),
            dst: Ipv4Addr::BROADCAST,
            protocol: PROTOCOL_UDP,
            payload_len: 8,
            ttl: 64,
            ident: 7,
        };
        r.write(&mut buf).unwrap();
        let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert!(p.verify_checksum());
        assert_eq!(p.src(), r.src);
        assert_eq!(p.dst(), r.dst);
        assert_eq!(p.payload().len(), 8);
        assert!(!p.is_fragment());
        buf[15] ^= 1;
        assert!(!Ipv4Packet::new_checked(&buf[..]).unwrap().verify_checksum());
    }

    #[test]
    fn bad_ihl_and_lengths_are_errors() {
        let mut buf = [0u8; 28];
        buf[0] = 0x44;
        assert!(Ipv4Packet::new_checked(&buf[..]).is_err());
        buf[0] = 0x45;
        buf[3] = 60; // total length beyond the buffer
        assert_eq!(Ipv4Packet::new_checked(&buf[..]).unwrap_err(), Error::Truncated);
        buf[0] = 0x4f; // 60-byte header in a 28-byte buffer
        buf[3] = 28;
        assert_eq!(Ipv4Packet::new_checked(&buf[..]).unwrap_err(), Error::Truncated);
    }
}
