//! Target `frame`: arbitrary bytes as a received Ethernet frame (both checksum modes) and as a
//! bare DHCP message. Asserts: no panic; a parsed frame's payload lies inside it; writing the
//! parsed headers in front of the same payload parses back to the same frame.

use dhcp_core::wire::dhcp::DhcpPacket;
use dhcp_core::wire::frame::{self, UdpChecksum, UdpFrame};
use dhcp_core::wire::{ether, ipv4, udp};

pub fn run(data: &[u8]) {
    for check in [UdpChecksum::Strict, UdpChecksum::AllowOffload] {
        if let Ok(f) = UdpFrame::parse_with(data, check) {
            assert!(f.payload.start <= f.payload.end && f.payload.end <= data.len(), "{f:?}");
            dhcp(&data[f.payload.clone()]);
            round_trip(&f, &data[f.payload.clone()]);
        }
    }
    dhcp(data);
    if let Ok(h) = ether::Header::parse(data) {
        assert!(h.len() <= data.len() && h.tags().len() == h.vlan_count as usize);
    }
    if let Ok(p) = ipv4::Ipv4Packet::new_checked(data) {
        assert_eq!(p.payload().len(), p.total_len() as usize - p.header_len());
    }
    if let Ok(u) = udp::UdpPacket::new_checked(data) {
        assert_eq!(u.payload().len(), u.len() as usize - udp::HEADER_LEN);
    }
}

/// Every accessor of a DHCP view, and its options when they parse.
fn dhcp(bytes: &[u8]) {
    let Ok(p) = DhcpPacket::new_checked(bytes) else { return };
    let _ = (p.op(), p.htype(), p.hlen(), p.hops(), p.xid(), p.secs(), p.flags(), p.broadcast());
    let _ = (p.ciaddr(), p.yiaddr(), p.siaddr(), p.giaddr(), p.chaddr(), p.client_mac(), p.sname(), p.file());
    if let Ok(o) = p.parse_options() {
        assert!(o.iter().all(|i| i.is_ok()), "a parsed message iterates without error");
    }
}

fn round_trip(f: &UdpFrame, payload: &[u8]) {
    let mut buf = vec![0u8; frame::payload_offset(f.l2.vlan_count) + payload.len()];
    let at = frame::payload_offset(f.l2.vlan_count);
    buf[at..].copy_from_slice(payload);
    let src = (f.src_ip, f.src_port);
    let dst = (f.dst_ip, f.dst_port);
    let Ok(len) = frame::write_headers(&mut buf, &f.l2, src, dst, payload.len(), 64) else {
        // Only a payload too long for one UDP datagram is refused.
        assert!(payload.len() > u16::MAX as usize - udp::HEADER_LEN - ipv4::MIN_HEADER_LEN);
        return;
    };
    let back = UdpFrame::parse(&buf[..len]).expect("a written frame parses");
    assert_eq!((back.l2, back.src_ip, back.dst_ip), (f.l2, f.src_ip, f.dst_ip));
    assert_eq!((back.src_port, back.dst_port, &buf[back.payload.clone()]), (f.src_port, f.dst_port, payload));
}
