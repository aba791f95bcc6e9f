//! A whole DHCP frame on the raw paths (AF_XDP, AF_PACKET): Ethernet with up to two VLAN tags,
//! IPv4, UDP. Parsing finds the DHCP payload; writing lays the headers in front of a payload.

use super::{ether, ipv4, udp, Error, Result};
use core::net::Ipv4Addr;
use core::ops::Range;

/// Where the pieces of a received UDP/IPv4 frame are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpFrame {
    pub l2: ether::Header,
    pub src_ip: Ipv4Addr,
    pub dst_ip: Ipv4Addr,
    pub src_port: u16,
    pub dst_port: u16,
    /// The UDP payload (the DHCP message) within the frame.
    pub payload: Range<usize>,
}

/// How strictly [`UdpFrame::parse_with`] checks the UDP checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UdpChecksum {
    /// Absent or right.
    Strict,
    /// Also the pseudo-header-only value a sender leaves for checksum offload
    /// ([`udp::UdpPacket::is_offload_partial`]): frames taken before the kernel's stack, as XDP
    /// takes them, carry it when they were sent by a local socket over a virtual device.
    AllowOffload,
}

impl UdpFrame {
    /// Finds the UDP payload of an Ethernet frame. Fragments, non-IPv4, non-UDP and bad
    /// checksums are errors: a DHCP server takes none of them.
    pub fn parse(frame: &[u8]) -> Result<UdpFrame> {
        UdpFrame::parse_with(frame, UdpChecksum::Strict)
    }

    /// [`UdpFrame::parse`] with a choice of UDP checksum check.
    pub fn parse_with(frame: &[u8], check: UdpChecksum) -> Result<UdpFrame> {
        let l2 = ether::Header::parse(frame)?;
        if l2.ethertype != ether::ETHERTYPE_IPV4 {
            return Err(Error::Malformed("not IPv4"));
        }
        let ip_at = l2.len();
        let ip = ipv4::Ipv4Packet::new_checked(&frame[ip_at..])?;
        if ip.is_fragment() {
            return Err(Error::Malformed("IPv4 fragment"));
        }
        if ip.protocol() != ipv4::PROTOCOL_UDP {
            return Err(Error::Malformed("not UDP"));
        }
        if !ip.verify_checksum() {
            return Err(Error::Malformed("IPv4 header checksum"));
        }
        let udp_at = ip_at + ip.header_len();
        let u = udp::UdpPacket::new_checked(ip.payload())?;
        let partial_ok = check == UdpChecksum::AllowOffload && u.is_offload_partial(ip.src(), ip.dst());
        if !partial_ok && !u.verify_checksum(ip.src(), ip.dst()) {
            return Err(Error::Malformed("UDP checksum"));
        }
        let start = udp_at + udp::HEADER_LEN;
        Ok(UdpFrame {
            l2,
            src_ip: ip.src(),
            dst_ip: ip.dst(),
            src_port: u.src_port(),
            dst_port: u.dst_port(),
            payload: start..udp_at + u.len() as usize,
        })
    }
}

/// Where the UDP payload of an Ethernet/IPv4 frame would start, unchecked (no checksums, no
/// protocol or port): for hints that change nothing, such as warming a cache. `None` when the
/// headers do not even fit.
pub fn payload_hint(frame: &[u8]) -> Option<&[u8]> {
    let l2 = ether::Header::parse(frame).ok()?;
    let ip_at = l2.len();
    let ihl = (*frame.get(ip_at)? & 0x0f) as usize * 4;
    frame.get(ip_at + ihl + udp::HEADER_LEN..)
}

/// Offset of the UDP payload in a frame written by [`write_headers`] with `vlan_count` tags.
pub const fn payload_offset(vlan_count: u8) -> usize {
    ether::HEADER_LEN + ether::VLAN_TAG_LEN * vlan_count as usize + ipv4::MIN_HEADER_LEN + udp::HEADER_LEN
}

/// Writes Ethernet, IPv4 and UDP headers in front of a payload of `payload_len` bytes already at
/// `buf[payload_offset(l2.vlan_count)..]`. Returns the frame length.
pub fn write_headers(
    buf: &mut [u8],
    l2: &ether::Header,
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    payload_len: usize,
    ttl: u8,
) -> Result<usize> {
    let at = payload_offset(l2.vlan_count);
    if buf.len() < at + payload_len {
        return Err(Error::NoRoom);
    }
    let l2_len = l2.write(buf)?;
    let udp_at = l2_len + ipv4::MIN_HEADER_LEN;
    let udp_len = udp::write(&mut buf[udp_at..], src, dst, payload_len)?;
    ipv4::Repr { src: src.0, dst: dst.0, protocol: ipv4::PROTOCOL_UDP, payload_len: udp_len, ttl, ident: 0 }
        .write(&mut buf[l2_len..])?;
    Ok(udp_at + udp_len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_frame_parses_back() {
        let l2 = ether::Header {
            dst: ether::BROADCAST,
            src: [2, 0, 0, 0, 0, 1],
            vlans: [ether::VlanTag { tpid: ether::TPID_8021Q, tci: 42 }, Default::default()],
            vlan_count: 1,
            ethertype: ether::ETHERTYPE_IPV4,
        };
        let mut buf = [0u8; 400];
        let at = payload_offset(1);
        buf[at..at + 300].fill(0xab);
        let src = (Ipv4Addr::new(100, 64, 0, 1), 67);
        let dst = (Ipv4Addr::BROADCAST, 68);
        let len = write_headers(&mut buf, &l2, src, dst, 300, 64).unwrap();
        assert_eq!(len, at + 300);
        let f = UdpFrame::parse(&buf[..len]).unwrap();
        assert_eq!(f.l2, l2);
        assert_eq!((f.src_ip, f.src_port), src);
        assert_eq!((f.dst_ip, f.dst_port), dst);
        assert_eq!(f.payload, at..at + 300);
        buf[at] ^= 0xff;
        assert_eq!(UdpFrame::parse(&buf[..len]).unwrap_err(), Error::Malformed("UDP checksum"));
        assert!(UdpFrame::parse_with(&buf[..len], UdpChecksum::AllowOffload).is_err(), "corruption is no offload");
    }

    #[test]
    fn offload_partial_checksum_is_accepted_only_when_asked() {
        let l2 = ether::Header { dst: ether::BROADCAST, ethertype: ether::ETHERTYPE_IPV4, ..Default::default() };
        let mut buf = [0u8; 400];
        let src = (Ipv4Addr::new(198, 18, 0, 2), 68);
        let dst = (Ipv4Addr::new(198, 18, 0, 1), 67);
        let len = write_headers(&mut buf, &l2, src, dst, 300, 64).unwrap();
        // What Linux leaves in the field for CHECKSUM_PARTIAL: the folded pseudo-header sum.
        let mut s = crate::wire::checksum::accumulate(0, &src.0.octets());
        s = crate::wire::checksum::accumulate(s, &dst.0.octets());
        s += 17 + 308;
        let partial = !crate::wire::checksum::finish(s);
        let at = ether::HEADER_LEN + ipv4::MIN_HEADER_LEN + 6;
        buf[at..at + 2].copy_from_slice(&partial.to_be_bytes());
        assert_eq!(UdpFrame::parse(&buf[..len]).unwrap_err(), Error::Malformed("UDP checksum"));
        assert!(UdpFrame::parse_with(&buf[..len], UdpChecksum::AllowOffload).is_ok());
    }
}
