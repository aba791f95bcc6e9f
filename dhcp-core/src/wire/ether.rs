//! Ethernet II header with up to two VLAN tags (802.1Q, and 802.1ad QinQ outer tags). The
//! lengths and tag types are the steering contract's (`dhcp_common::frame`): the XDP program
//! reads frames the same way.

use super::{be16, Error, Result};

pub const HEADER_LEN: usize = dhcp_common::frame::ETH_HLEN;
pub const VLAN_TAG_LEN: usize = dhcp_common::frame::VLAN_TAG_LEN;
pub const ETHERTYPE_IPV4: u16 = dhcp_common::frame::ETHERTYPE_IPV4;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub use dhcp_common::frame::{TPID_8021AD, TPID_8021Q, TPID_QINQ_LEGACY};
pub const BROADCAST: [u8; 6] = [0xff; 6];

/// One VLAN tag as it appears on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VlanTag {
    pub tpid: u16,
    /// Tag control information: priority (3 bits), DEI (1 bit), VLAN id (12 bits).
    pub tci: u16,
}

impl VlanTag {
    pub fn vid(&self) -> u16 {
        self.tci & 0x0fff
    }
}

/// The parsed link-layer header of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    /// Outer tag first.
    pub vlans: [VlanTag; 2],
    pub vlan_count: u8,
    /// Ethertype after the tags.
    pub ethertype: u16,
}

impl Header {
    /// Reads the header of `frame`; more than two tags is malformed.
    pub fn parse(frame: &[u8]) -> Result<Header> {
        if frame.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let mut h = Header::default();
        h.dst.copy_from_slice(&frame[0..6]);
        h.src.copy_from_slice(&frame[6..12]);
        let mut at = 12;
        let mut ethertype = be16(frame, at);
        while dhcp_common::is_vlan_tpid(ethertype) {
            if h.vlan_count as usize == dhcp_common::frame::MAX_VLAN_TAGS {
                return Err(Error::Malformed("more than two VLAN tags"));
            }
            if frame.len() < at + VLAN_TAG_LEN + 2 {
                return Err(Error::Truncated);
            }
            h.vlans[h.vlan_count as usize] = VlanTag { tpid: ethertype, tci: be16(frame, at + 2) };
            h.vlan_count += 1;
            at += VLAN_TAG_LEN;
            ethertype = be16(frame, at);
        }
        h.ethertype = ethertype;
        Ok(h)
    }

    /// Length of this header on the wire, tags included.
    pub fn len(&self) -> usize {
        HEADER_LEN + VLAN_TAG_LEN * self.vlan_count as usize
    }

    /// Never empty; present for the `len` convention.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The tags in use, outer first.
    pub fn tags(&self) -> &[VlanTag] {
        &self.vlans[..self.vlan_count as usize]
    }

    /// Writes this header at the start of `buf`; returns its length.
    pub fn write(&self, buf: &mut [u8]) -> Result<usize> {
        let len = self.len();
        if buf.len() < len || self.vlan_count > 2 {
            return Err(Error::NoRoom);
        }
        buf[0..6].copy_from_slice(&self.dst);
        buf[6..12].copy_from_slice(&self.src);
        let mut at = 12;
        for tag in self.tags() {
            buf[at..at + 2].copy_from_slice(&tag.tpid.to_be_bytes());
            buf[at + 2..at + 4].copy_from_slice(&tag.tci.to_be_bytes());
            at += VLAN_TAG_LEN;
        }
        buf[at..at + 2].copy_from_slice(&self.ethertype.to_be_bytes());
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qinq_round_trip() {
        let h = Header {
            dst: BROADCAST,
            src: [2, 0, 0, 0, 0, 1],
            vlans: [VlanTag { tpid: TPID_8021AD, tci: 100 }, VlanTag { tpid: TPID_8021Q, tci: 0x2000 | 200 }],
            vlan_count: 2,
            ethertype: ETHERTYPE_IPV4,
        };
        let mut buf = [0u8; 22];
        assert_eq!(h.write(&mut buf).unwrap(), 22);
        assert_eq!(&buf[12..14], &[0x88, 0xa8]);
        let back = Header::parse(&buf).unwrap();
        assert_eq!(back, h);
        assert_eq!(back.tags()[1].vid(), 200);
    }

    #[test]
    fn three_tags_and_truncation_are_errors() {
        let mut buf = [0u8; 30];
        for at in [12, 16, 20] {
            buf[at..at + 2].copy_from_slice(&[0x81, 0x00]);
        }
        assert!(Header::parse(&buf).is_err());
        assert_eq!(Header::parse(&buf[..15]).unwrap_err(), Error::Truncated);
        assert_eq!(Header::parse(&buf[..17]).unwrap_err(), Error::Truncated);
    }
}
