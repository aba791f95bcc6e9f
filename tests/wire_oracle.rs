//! Oracle and property tests for `dhcp_user::wire`.
//!
//! - Oracle tests: messages encoded by `dhcproto` (an independent DHCPv4 implementation) must
//!   read the same through our zero-copy views, and messages written by our `DhcpWriter` must decode
//!   with `dhcproto` to the same fields and options. Where `dhcproto` deviates from the RFCs
//!   (option overload, non-adjacent repeated options, empty opaque options) the tests assert
//!   what it actually does, and say so.
//! - Property tests: no input makes a view panic; the option index agrees with a naive scan;
//!   write → read round trips for messages and for Ethernet/VLAN/IPv4/UDP frames; every
//!   single-byte corruption of a frame's IP/UDP header or payload is caught; the Internet
//!   checksum matches a bytewise reference.

use core::net::Ipv4Addr;
use std::collections::{BTreeMap, HashSet};

use dhcp_user::wire::{
    checksum,
    dhcp::{self, DhcpPacket, DhcpWriter, Op},
    ether, frame, ipv4,
    options::{self, code, link_selection, relay_sub_options, MessageType, OptionIter, Options},
    udp, Error,
};
use dhcproto::v4::{
    self,
    relay::{RelayAgentInformation, RelayInfo},
    DhcpOption, Flags, HType, OptionCode,
};
use dhcproto::{Decodable, Decoder, Encodable};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn ip(a: u8, b: u8, c: u8, d: u8) -> Ipv4Addr {
    Ipv4Addr::new(a, b, c, d)
}

fn dhcproto_decode(bytes: &[u8]) -> v4::Message {
    v4::Message::decode(&mut Decoder::new(bytes)).expect("dhcproto decodes the message")
}

/// Our view of a message and its options, after checking that the view finds the areas at the
/// RFC 2131 offsets (sname 44..108, file 108..236, options from 240).
fn parse(bytes: &[u8]) -> (DhcpPacket<&[u8]>, Options<'_>) {
    let p = DhcpPacket::new_checked(bytes).expect("valid DHCP header");
    let (sname, file, opts) = (&bytes[44..108], &bytes[108..236], &bytes[240..]);
    assert_eq!((p.sname(), p.file(), p.options()), (sname, file, opts));
    let o = p.parse_options().expect("valid options");
    (p, o)
}

/// Every instance of `code`, in reading order.
fn instances<'a>(o: &Options<'a>, code: u8) -> Vec<&'a [u8]> {
    o.iter().map(|item| item.expect("options iterate cleanly")).filter(|&(c, _)| c == code).map(|(_, v)| v).collect()
}

/// The whole (RFC 3396 joined) value of `code`, through `Options::concat`.
fn joined(o: &Options<'_>, code: u8) -> Option<Vec<u8>> {
    let mut scratch = [0u8; 8192];
    o.concat(code, &mut scratch).expect("scratch is large enough").map(<[u8]>::to_vec)
}

/// The same, through `Options::value` (which avoids the copy for single instances).
fn value(o: &Options<'_>, code: u8) -> Option<Vec<u8>> {
    let mut scratch = [0u8; 8192];
    o.value(code, &mut scratch).expect("scratch is large enough").map(<[u8]>::to_vec)
}

/// Sub-options of an option 82 value, as our reader sees them.
fn our_relay_sub_options(value: &[u8]) -> BTreeMap<u8, Vec<u8>> {
    relay_sub_options(value)
        .map(|item| item.expect("sub-options iterate cleanly"))
        .map(|(c, v)| (c, v.to_vec()))
        .collect()
}

/// Sub-options of a `dhcproto` relay agent information option, as raw bytes.
fn their_relay_sub_options(info: &RelayAgentInformation) -> BTreeMap<u8, Vec<u8>> {
    info.iter()
        .map(|(c, v)| {
            let data = match v {
                RelayInfo::AgentCircuitId(d) | RelayInfo::AgentRemoteId(d) | RelayInfo::SubscriberId(d) => d.clone(),
                RelayInfo::LinkSelection(a) | RelayInfo::ServerIdentifierOverride(a) => a.octets().to_vec(),
                RelayInfo::DocsisDeviceClass(n) => n.to_be_bytes().to_vec(),
                RelayInfo::RelayAgentFlags(f) => vec![u8::from(*f)],
                RelayInfo::Unknown(u) => u.data().to_vec(),
            };
            (u8::from(*c), data)
        })
        .collect()
}

/// The raw value of a `dhcproto` option that it keeps as opaque bytes (or as a code list).
fn their_opaque(opt: &DhcpOption) -> Option<Vec<u8>> {
    match opt {
        DhcpOption::Unknown(u) => Some(u.data().to_vec()),
        DhcpOption::VendorExtensions(b)
        | DhcpOption::ClassIdentifier(b)
        | DhcpOption::ClientIdentifier(b)
        | DhcpOption::NwipInformation(b)
        | DhcpOption::TFTPServerName(b)
        | DhcpOption::BootfileName(b)
        | DhcpOption::UserClass(b)
        | DhcpOption::ClientMachineIdentifier(b) => Some(b.clone()),
        DhcpOption::ParameterRequestList(codes) => Some(codes.iter().map(|&c| u8::from(c)).collect()),
        _ => None,
    }
}

/// Codes whose value `dhcproto` keeps as plain bytes, so any value survives its decoder.
fn dhcproto_opaque(c: u8) -> bool {
    matches!(OptionCode::from(c), OptionCode::Unknown(_)) || [43, 55, 60, 61, 63, 66, 67, 77, 97].contains(&c)
}

/// The fixed header fields we write in the property tests.
#[derive(Debug, Clone)]
struct Header {
    op: Op,
    htype: u8,
    hlen: u8,
    hops: u8,
    xid: u32,
    secs: u16,
    flags: u16,
    ciaddr: Ipv4Addr,
    yiaddr: Ipv4Addr,
    siaddr: Ipv4Addr,
    giaddr: Ipv4Addr,
    chaddr: [u8; 16],
}

impl Header {
    fn write(&self, p: &mut DhcpPacket<&mut [u8]>) {
        p.set_op(self.op);
        p.set_htype(self.htype);
        p.set_hlen(self.hlen);
        p.set_hops(self.hops);
        p.set_xid(self.xid);
        p.set_secs(self.secs);
        p.set_flags(self.flags);
        p.set_ciaddr(self.ciaddr);
        p.set_yiaddr(self.yiaddr);
        p.set_siaddr(self.siaddr);
        p.set_giaddr(self.giaddr);
        p.set_chaddr(&self.chaddr);
    }

    fn assert_ours(&self, p: &DhcpPacket<&[u8]>) {
        assert_eq!(p.op(), self.op as u8);
        assert_eq!(p.htype(), self.htype);
        assert_eq!(p.hlen(), self.hlen);
        assert_eq!(p.hops(), self.hops);
        assert_eq!(p.xid(), self.xid);
        assert_eq!(p.secs(), self.secs);
        assert_eq!(p.flags(), self.flags);
        assert_eq!(p.broadcast(), self.flags & 0x8000 != 0);
        assert_eq!(p.ciaddr(), self.ciaddr);
        assert_eq!(p.yiaddr(), self.yiaddr);
        assert_eq!(p.siaddr(), self.siaddr);
        assert_eq!(p.giaddr(), self.giaddr);
        assert_eq!(p.chaddr(), &self.chaddr);
        assert_eq!(&p.client_mac()[..], &self.chaddr[..6]);
    }

    fn assert_theirs(&self, m: &v4::Message) {
        assert_eq!(u8::from(m.opcode()), self.op as u8);
        assert_eq!(u8::from(m.htype()), self.htype);
        assert_eq!(m.hlen(), self.hlen);
        assert_eq!(m.hops(), self.hops);
        assert_eq!(m.xid(), self.xid);
        assert_eq!(m.secs(), self.secs);
        assert_eq!(u16::from(m.flags()), self.flags);
        assert_eq!(m.flags().broadcast(), self.flags & 0x8000 != 0);
        assert_eq!(m.ciaddr(), self.ciaddr);
        assert_eq!(m.yiaddr(), self.yiaddr);
        assert_eq!(m.siaddr(), self.siaddr);
        assert_eq!(m.giaddr(), self.giaddr);
        // dhcproto slices chaddr by hlen and panics when hlen > 16, so only compare then.
        if self.hlen <= 16 {
            assert_eq!(m.chaddr(), &self.chaddr[..self.hlen as usize]);
        }
    }
}

/// Checks every header field `dhcproto` encoded against our view of the bytes.
fn assert_same_header(m: &v4::Message, p: &DhcpPacket<&[u8]>) {
    assert_eq!(p.op(), u8::from(m.opcode()));
    assert_eq!(p.htype(), u8::from(m.htype()));
    assert_eq!(p.hlen(), m.hlen());
    assert_eq!(p.hops(), m.hops());
    assert_eq!(p.xid(), m.xid());
    assert_eq!(p.secs(), m.secs());
    assert_eq!(p.flags(), u16::from(m.flags()));
    assert_eq!(p.broadcast(), m.flags().broadcast());
    assert_eq!(p.ciaddr(), m.ciaddr());
    assert_eq!(p.yiaddr(), m.yiaddr());
    assert_eq!(p.siaddr(), m.siaddr());
    assert_eq!(p.giaddr(), m.giaddr());
    // dhcproto slices chaddr by hlen and panics when hlen > 16.
    if m.hlen() <= 16 {
        assert_eq!(&p.chaddr()[..m.hlen() as usize], m.chaddr());
    }
}

// ---------------------------------------------------------------------------------------------
// Oracle: dhcproto writes, we read
// ---------------------------------------------------------------------------------------------

#[test]
fn dhcproto_discover_reads_identically() {
    let mac = [0x02, 0x42, 0xac, 0x11, 0x00, 0x07];
    let mut client_id = vec![1];
    client_id.extend_from_slice(&mac);
    let mut relay = RelayAgentInformation::default();
    relay.insert(RelayInfo::AgentCircuitId(b"eth0/1/7:100".to_vec()));
    relay.insert(RelayInfo::AgentRemoteId(vec![0xde, 0xad, 0xbe, 0xef]));
    relay.insert(RelayInfo::LinkSelection(ip(100, 64, 8, 0)));

    let mut m = v4::Message::new_with_id(
        0x3903_f326,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        ip(100, 64, 8, 1),
        &mac,
    );
    m.set_hops(1).set_secs(12).set_flags(Flags::default().set_broadcast());
    let opts = m.opts_mut();
    opts.insert(DhcpOption::MessageType(v4::MessageType::Discover));
    opts.insert(DhcpOption::ClientIdentifier(client_id.clone()));
    opts.insert(DhcpOption::ParameterRequestList(vec![
        OptionCode::SubnetMask,
        OptionCode::Router,
        OptionCode::DomainNameServer,
        OptionCode::DomainName,
        OptionCode::ClasslessStaticRoute,
        OptionCode::from(249),
        OptionCode::from(252),
    ]));
    opts.insert(DhcpOption::MaxMessageSize(1500));
    opts.insert(DhcpOption::RequestedIpAddress(ip(100, 64, 8, 77)));
    opts.insert(DhcpOption::Hostname("printer-3".into()));
    opts.insert(DhcpOption::RelayAgentInformation(relay));
    let bytes = m.to_vec().unwrap();

    let (p, o) = parse(&bytes);
    assert_same_header(&m, &p);
    assert_eq!(p.op(), 1);
    assert_eq!(p.htype(), dhcp::HTYPE_ETHERNET);
    assert_eq!(p.hlen(), 6);
    assert_eq!(p.hops(), 1);
    assert_eq!(p.xid(), 0x3903_f326);
    assert_eq!(p.secs(), 12);
    assert_eq!(p.flags(), dhcp::FLAG_BROADCAST);
    assert!(p.broadcast());
    assert_eq!(p.giaddr(), ip(100, 64, 8, 1));
    assert_eq!(p.ciaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(p.client_mac(), mac);

    assert_eq!(o.message_type(), Some(MessageType::Discover));
    assert_eq!(o.message_type, Some(1));
    assert_eq!(o.requested_ip, Some(ip(100, 64, 8, 77)));
    assert_eq!(o.max_message_size, Some(1500));
    assert_eq!(o.server_id, None);
    assert_eq!(o.lease_time, None);
    assert_eq!(o.overload, 0);
    assert!(!o.rapid_commit);
    let cid = o.client_id.unwrap();
    assert_eq!(cid.first, &client_id[..]);
    assert!(!cid.split);
    let prl = o.parameter_request_list.unwrap();
    assert_eq!(prl.first, &[1, 3, 6, 15, 121, 249, 252]);
    assert!(!prl.split);
    assert_eq!(joined(&o, code::HOST_NAME).as_deref(), Some(&b"printer-3"[..]));

    let relay = o.relay_agent_info.unwrap();
    assert!(!relay.split);
    let subs = our_relay_sub_options(relay.first);
    let expected: BTreeMap<u8, Vec<u8>> = [
        (options::relay::CIRCUIT_ID, b"eth0/1/7:100".to_vec()),
        (options::relay::REMOTE_ID, vec![0xde, 0xad, 0xbe, 0xef]),
        (options::relay::LINK_SELECTION, vec![100, 64, 8, 0]),
    ]
    .into_iter()
    .collect();
    assert_eq!(subs, expected);
    assert_eq!(link_selection(relay.first), Some(ip(100, 64, 8, 0)));
    // dhcproto puts option 82 last, just before END (RFC 3046 §2.1).
    let codes: Vec<u8> = o.iter().map(|i| i.unwrap().0).collect();
    assert_eq!(codes.last(), Some(&code::RELAY_AGENT_INFO));
    assert_eq!(codes.len(), 7);
}

#[test]
fn dhcproto_request_and_offer_read_identically() {
    // A renewing REQUEST: ciaddr set, unicast, server id and lease time present.
    let mut m = v4::Message::new_with_id(
        7,
        ip(10, 1, 2, 3),
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &[1, 2, 3, 4, 5, 6],
    );
    m.set_flags(Flags::new(0x7fff)); // every bit but broadcast
    m.opts_mut().insert(DhcpOption::MessageType(v4::MessageType::Request));
    m.opts_mut().insert(DhcpOption::ServerIdentifier(ip(10, 1, 0, 1)));
    m.opts_mut().insert(DhcpOption::AddressLeaseTime(86_400));
    m.opts_mut().insert(DhcpOption::SubnetSelection(ip(10, 9, 0, 0)));
    m.opts_mut().insert(DhcpOption::RapidCommit);
    let bytes = m.to_vec().unwrap();
    let (p, o) = parse(&bytes);
    assert_same_header(&m, &p);
    assert_eq!(p.flags(), 0x7fff);
    assert!(!p.broadcast());
    assert_eq!(p.ciaddr(), ip(10, 1, 2, 3));
    assert_eq!(o.message_type(), Some(MessageType::Request));
    assert_eq!(o.server_id, Some(ip(10, 1, 0, 1)));
    assert_eq!(o.lease_time, Some(86_400));
    assert_eq!(o.subnet_selection, Some(ip(10, 9, 0, 0)));
    assert!(o.rapid_commit);
    assert!(o.client_id.is_none() && o.relay_agent_info.is_none());

    // An OFFER (BOOTREPLY) with yiaddr/siaddr and a plain lease.
    let mut m = v4::Message::new_with_id(
        0xffff_ffff,
        Ipv4Addr::UNSPECIFIED,
        ip(192, 168, 7, 50),
        ip(192, 168, 7, 1),
        ip(192, 168, 7, 254),
        &[0xaa; 6],
    );
    m.set_opcode(v4::Opcode::BootReply).set_hops(3).set_secs(0xffff).set_flags(Flags::new(0x8001));
    m.opts_mut().insert(DhcpOption::MessageType(v4::MessageType::Offer));
    m.opts_mut().insert(DhcpOption::ServerIdentifier(ip(192, 168, 7, 1)));
    m.opts_mut().insert(DhcpOption::AddressLeaseTime(u32::MAX));
    let bytes = m.to_vec().unwrap();
    let (p, o) = parse(&bytes);
    assert_same_header(&m, &p);
    assert_eq!(p.op(), Op::Reply as u8);
    assert!(p.broadcast());
    assert_eq!(p.yiaddr(), ip(192, 168, 7, 50));
    assert_eq!(p.siaddr(), ip(192, 168, 7, 1));
    assert_eq!(p.giaddr(), ip(192, 168, 7, 254));
    assert_eq!(p.xid(), u32::MAX);
    assert_eq!(p.secs(), u16::MAX);
    assert_eq!(o.message_type(), Some(MessageType::Offer));
    assert_eq!(o.lease_time, Some(u32::MAX));
}

#[test]
fn dhcproto_hardware_types_and_lengths_read_identically() {
    let chaddr: Vec<u8> = (0xa0..0xb4).collect(); // 20 bytes, cut by hlen below
    for (htype, hlen) in [
        (1u8, 6usize),
        (6, 6),
        (32, 0),   // InfiniBand: no hardware address in chaddr (RFC 4390)
        (18, 8),   // Fibre Channel
        (200, 16), // unassigned type, full chaddr
        (1, 20),   // hlen beyond chaddr: dhcproto keeps hlen 20 and the first 16 bytes
    ] {
        let mut m = v4::Message::new_with_id(
            0x0102_0304,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            &[],
        );
        m.set_htype(HType::from(htype)).set_chaddr(&chaddr[..hlen]);
        m.opts_mut().insert(DhcpOption::MessageType(v4::MessageType::Inform));
        let bytes = m.to_vec().unwrap();
        let p = DhcpPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.htype(), htype, "htype {htype}");
        assert_eq!(p.hlen() as usize, hlen, "htype {htype}");
        let n = hlen.min(16);
        assert_eq!(&p.chaddr()[..n], &chaddr[..n]);
        assert!(p.chaddr()[n..].iter().all(|&b| b == 0));
        if hlen <= 16 {
            assert_same_header(&m, &p);
        }
        assert_eq!(p.parse_options().unwrap().message_type(), Some(MessageType::Inform));
    }
}

#[test]
fn dhcproto_long_options_are_joined_by_our_reader() {
    // dhcproto splits values over 255 bytes into adjacent instances (RFC 3396).
    let client_id: Vec<u8> = (0..300u16).map(|i| (i % 251) as u8).collect();
    let prl: Vec<OptionCode> = (1..=254u8).chain(1..=40).map(OptionCode::from).collect();
    let mut m = v4::Message::new_with_id(
        1,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &[9; 6],
    );
    m.opts_mut().insert(DhcpOption::MessageType(v4::MessageType::Discover));
    m.opts_mut().insert(DhcpOption::ClientIdentifier(client_id.clone()));
    m.opts_mut().insert(DhcpOption::ParameterRequestList(prl.clone()));
    let bytes = m.to_vec().unwrap();
    let (_, o) = parse(&bytes);

    let cid = o.client_id.unwrap();
    assert!(cid.split);
    assert_eq!(cid.first, &client_id[..255]);
    let parts: Vec<usize> = instances(&o, code::CLIENT_ID).iter().map(|v| v.len()).collect();
    assert_eq!(parts, [255, 45]);
    assert_eq!(value(&o, code::CLIENT_ID), Some(client_id));

    let prl_bytes: Vec<u8> = prl.iter().map(|&c| u8::from(c)).collect();
    assert!(o.parameter_request_list.unwrap().split);
    assert_eq!(value(&o, code::PARAMETER_REQUEST_LIST), Some(prl_bytes));

    // A scratch buffer too small to join into is refused, not truncated.
    let mut small = [0u8; 299];
    assert_eq!(o.value(code::CLIENT_ID, &mut small), Err(Error::NoRoom));
}

// ---------------------------------------------------------------------------------------------
// Oracle: we write, dhcproto reads
// ---------------------------------------------------------------------------------------------

#[test]
fn our_offer_decodes_with_dhcproto() {
    let mac = [0x02, 0, 0x5e, 0x10, 0x20, 0x30];
    let mut chaddr = [0u8; 16];
    chaddr[..6].copy_from_slice(&mac);
    let vendor: Vec<u8> = (0..600u16).map(|i| (i * 7 % 256) as u8).collect();
    let client_id = [1, 0x02, 0, 0x5e, 0x10, 0x20, 0x30];
    let relay = [1, 3, b'a', b'b', b'c', 5, 4, 100, 64, 9, 0, 2, 2, 0xbe, 0xef];

    let mut buf = [0u8; 1500];
    let mut w = DhcpWriter::new(&mut buf, 1500).unwrap();
    {
        let mut h = w.header();
        h.set_op(Op::Reply);
        h.set_htype(dhcp::HTYPE_ETHERNET);
        h.set_hlen(6);
        h.set_hops(2);
        h.set_xid(0xdead_beef);
        h.set_secs(3);
        h.set_flags(dhcp::FLAG_BROADCAST);
        h.set_ciaddr(ip(0, 0, 0, 0));
        h.set_yiaddr(ip(100, 64, 9, 20));
        h.set_siaddr(ip(100, 64, 0, 1));
        h.set_giaddr(ip(100, 64, 9, 1));
        h.set_chaddr(&chaddr);
    }
    w.option_u8(code::MESSAGE_TYPE, MessageType::Offer as u8).unwrap();
    w.option_ip(code::SERVER_ID, ip(100, 64, 0, 1)).unwrap();
    w.option_u32(code::LEASE_TIME, 3600).unwrap();
    w.option_u32(code::RENEWAL_TIME, 1800).unwrap();
    w.option_ip(code::SUBNET_MASK, ip(255, 255, 255, 0)).unwrap();
    w.option(code::ROUTER, &[100, 64, 9, 1, 100, 64, 9, 2]).unwrap();
    w.option(code::DNS_SERVERS, &[9, 9, 9, 9]).unwrap();
    w.option(code::DOMAIN_NAME, b"example.org").unwrap();
    w.option_u16(code::INTERFACE_MTU, 9000).unwrap();
    w.option(code::VENDOR_SPECIFIC, &vendor).unwrap();
    w.option(code::CLIENT_ID, &client_id).unwrap();
    w.option(code::PARAMETER_REQUEST_LIST, &[1, 3, 6, 200]).unwrap();
    w.option(code::RELAY_AGENT_INFO, &relay).unwrap();
    let len = w.finish();
    let bytes = &buf[..len];

    // Our own layout: 600 bytes of option 43 as 255 + 255 + 90 (RFC 3396).
    let (p, o) = parse(bytes);
    let parts: Vec<usize> = instances(&o, code::VENDOR_SPECIFIC).iter().map(|v| v.len()).collect();
    assert_eq!(parts, [255, 255, 90]);
    assert_eq!(joined(&o, code::VENDOR_SPECIFIC), Some(vendor.clone()));
    assert_eq!(bytes[len - 1], code::END);
    assert!(len > dhcp::MIN_MESSAGE_LEN);

    let m = dhcproto_decode(bytes);
    assert_same_header(&m, &p);
    assert_eq!(m.opcode(), v4::Opcode::BootReply);
    assert_eq!(m.htype(), HType::Eth);
    assert_eq!(m.chaddr(), &mac);
    assert_eq!(m.xid(), 0xdead_beef);
    assert!(m.flags().broadcast());
    assert_eq!(m.yiaddr(), ip(100, 64, 9, 20));
    assert_eq!(m.siaddr(), ip(100, 64, 0, 1));
    assert_eq!(m.giaddr(), ip(100, 64, 9, 1));
    assert_eq!(m.sname(), None);
    assert_eq!(m.fname(), None);

    let opts = m.opts();
    assert_eq!(opts.msg_type(), Some(v4::MessageType::Offer));
    assert_eq!(opts.get(OptionCode::ServerIdentifier), Some(&DhcpOption::ServerIdentifier(ip(100, 64, 0, 1))));
    assert_eq!(opts.get(OptionCode::AddressLeaseTime), Some(&DhcpOption::AddressLeaseTime(3600)));
    assert_eq!(opts.get(OptionCode::Renewal), Some(&DhcpOption::Renewal(1800)));
    assert_eq!(opts.get(OptionCode::SubnetMask), Some(&DhcpOption::SubnetMask(ip(255, 255, 255, 0))));
    assert_eq!(opts.get(OptionCode::Router), Some(&DhcpOption::Router(vec![ip(100, 64, 9, 1), ip(100, 64, 9, 2)])));
    assert_eq!(opts.get(OptionCode::DomainNameServer), Some(&DhcpOption::DomainNameServer(vec![ip(9, 9, 9, 9)])));
    assert_eq!(opts.get(OptionCode::DomainName), Some(&DhcpOption::DomainName("example.org".into())));
    assert_eq!(opts.get(OptionCode::InterfaceMtu), Some(&DhcpOption::InterfaceMtu(9000)));
    // dhcproto joins adjacent instances, so it sees the whole 600-byte value.
    assert_eq!(opts.get(OptionCode::VendorExtensions), Some(&DhcpOption::VendorExtensions(vendor)));
    assert_eq!(opts.get(OptionCode::ClientIdentifier), Some(&DhcpOption::ClientIdentifier(client_id.to_vec())));
    assert_eq!(opts.get(OptionCode::ParameterRequestList).and_then(their_opaque), Some(vec![1, 3, 6, 200]));
    let Some(DhcpOption::RelayAgentInformation(info)) = opts.get(OptionCode::RelayAgentInformation) else {
        panic!("no relay agent information");
    };
    assert_eq!(their_relay_sub_options(info), our_relay_sub_options(&relay));
    assert_eq!(info.get(v4::relay::RelayCode::LinkSelection), Some(&RelayInfo::LinkSelection(ip(100, 64, 9, 0))));
    assert_eq!(link_selection(&relay), Some(ip(100, 64, 9, 0)));
    assert_eq!(opts.len(), 13);
}

#[test]
fn short_message_is_padded_to_300_bytes_and_decodes() {
    let mut buf = [0xeeu8; 1024];
    let mut w = DhcpWriter::new(&mut buf, 1024).unwrap();
    w.header().set_op(Op::Reply);
    w.header().set_xid(42);
    w.option_u8(code::MESSAGE_TYPE, MessageType::Nak as u8).unwrap();
    let len = w.finish();
    assert_eq!(len, dhcp::MIN_MESSAGE_LEN);
    assert_eq!(&buf[240..244], &[53, 1, 6, 255]);
    assert!(buf[244..300].iter().all(|&b| b == 0), "padding is zeroed");
    // The fixed header (sname and file included) was zeroed by DhcpWriter::new.
    assert!(buf[44..236].iter().all(|&b| b == 0));

    let m = dhcproto_decode(&buf[..len]);
    assert_eq!(m.xid(), 42);
    assert_eq!(m.opts().msg_type(), Some(v4::MessageType::Nak));
    assert_eq!(m.opts().len(), 1);
}

#[test]
fn writer_limit_is_exact_and_a_refused_option_changes_nothing() {
    // limit 300: 240 header + 59 bytes of options + END.
    let mut buf = [0u8; 600];
    let mut w = DhcpWriter::new(&mut buf, 300).unwrap();
    assert_eq!(w.room(), 59);
    assert_eq!(w.option(code::VENDOR_SPECIFIC, &[7; 58]), Err(Error::NoRoom));
    assert_eq!(w.room(), 59);
    w.option(code::VENDOR_SPECIFIC, &[7; 57]).unwrap();
    assert_eq!(w.room(), 0);
    assert_eq!(w.option(code::RAPID_COMMIT, &[]), Err(Error::NoRoom));
    assert_eq!(w.finish(), 300);
    assert_eq!(buf[299], code::END);
    let m = dhcproto_decode(&buf[..300]);
    assert_eq!(m.opts().get(OptionCode::VendorExtensions), Some(&DhcpOption::VendorExtensions(vec![7; 57])));

    // A limit under 300 caps the padding too.
    let mut buf = [0u8; 600];
    let mut w = DhcpWriter::new(&mut buf, 260).unwrap();
    w.option_u8(code::MESSAGE_TYPE, 5).unwrap();
    assert_eq!(w.finish(), 260);

    assert_eq!(DhcpWriter::new(&mut [0u8; 600], dhcp::HEADER_LEN).unwrap_err(), Error::NoRoom);
    assert_eq!(DhcpWriter::new(&mut [0u8; 240], 1500).unwrap_err(), Error::NoRoom);
    assert!(DhcpWriter::new(&mut [0u8; 241], 1500).is_ok());
    assert_eq!(DhcpWriter::encoded_len(0), 2);
    assert_eq!(DhcpWriter::encoded_len(255), 257);
    assert_eq!(DhcpWriter::encoded_len(256), 260);
    assert_eq!(DhcpWriter::encoded_len(600), 606);
}

// ---------------------------------------------------------------------------------------------
// Where dhcproto and the RFCs part ways
// ---------------------------------------------------------------------------------------------

/// Option overload (52, RFC 2132 §9.3): dhcproto does not support it. It reports option 52 but
/// reads `file` and `sname` as NUL-terminated names, never as options; so the options there are
/// checked against hand-built expectations, and dhcproto only for what it does see.
#[test]
fn option_overload_reads_file_then_sname() {
    let file_opts: &[u8] = &[61, 3, 4, 5, 6, 54, 4, 10, 0, 0, 1, 255];
    let sname_opts: &[u8] = &[50, 4, 10, 0, 0, 77, 12, 5, b'h', b'o', b's', b't', b'a', 255];
    for overload in [options::overload::FILE, options::overload::SNAME, options::overload::BOTH] {
        let mut buf = [0u8; 600];
        let mut w = DhcpWriter::new(&mut buf, 600).unwrap();
        {
            let mut h = w.header();
            h.set_op(Op::Request);
            h.set_xid(0x5252);
            h.file_mut()[..file_opts.len()].copy_from_slice(file_opts);
            h.sname_mut()[..sname_opts.len()].copy_from_slice(sname_opts);
        }
        w.option_u8(code::MESSAGE_TYPE, MessageType::Request as u8).unwrap();
        w.option_u8(code::OVERLOAD, overload).unwrap();
        w.option(code::CLIENT_ID, &[1, 2, 3]).unwrap();
        let len = w.finish();
        let bytes = &buf[..len];

        let (p, o) = parse(bytes);
        assert_eq!(p.xid(), 0x5252);
        assert_eq!(o.overload, overload);
        assert_eq!(o.message_type(), Some(MessageType::Request));
        let in_file = overload & options::overload::FILE != 0;
        let in_sname = overload & options::overload::SNAME != 0;
        assert_eq!(o.server_id, in_file.then_some(ip(10, 0, 0, 1)));
        assert_eq!(o.requested_ip, in_sname.then_some(ip(10, 0, 0, 77)));
        assert_eq!(joined(&o, code::HOST_NAME), in_sname.then(|| b"hosta".to_vec()));
        let cid = o.client_id.unwrap();
        assert_eq!(cid.first, &[1, 2, 3]);
        assert_eq!(cid.split, in_file);
        let whole: &[u8] = if in_file { &[1, 2, 3, 4, 5, 6] } else { &[1, 2, 3] };
        assert_eq!(value(&o, code::CLIENT_ID).as_deref(), Some(whole));
        // Reading order: options field, then file, then sname (RFC 2131 §4.1).
        let order: Vec<u8> = o.iter().map(|i| i.unwrap().0).collect();
        let mut expected = vec![53, 52, 61];
        if in_file {
            expected.extend([61, 54]);
        }
        if in_sname {
            expected.extend([50, 12]);
        }
        assert_eq!(order, expected);

        let m = dhcproto_decode(bytes);
        let opts = m.opts();
        assert_eq!(opts.get(OptionCode::OptionOverload), Some(&DhcpOption::OptionOverload(overload)));
        assert_eq!(opts.msg_type(), Some(v4::MessageType::Request));
        // Only the options-field instance: no overload support in dhcproto.
        assert_eq!(opts.get(OptionCode::ClientIdentifier), Some(&DhcpOption::ClientIdentifier(vec![1, 2, 3])));
        assert_eq!(opts.get(OptionCode::ServerIdentifier), None);
        assert_eq!(opts.get(OptionCode::RequestedIpAddress), None);
        assert_eq!(m.fname().map(|f| f[0]), Some(61), "file read as a name");
    }
}

/// RFC 3396 joins every instance of an option, adjacent or not. dhcproto joins only adjacent
/// instances; a later non-adjacent one replaces the earlier (its options are a hash map).
#[test]
fn non_adjacent_instances_are_joined_by_us_but_not_by_dhcproto() {
    let mut buf = [0u8; 400];
    let mut w = DhcpWriter::new(&mut buf, 400).unwrap();
    w.option(code::CLIENT_ID, &[1, 2]).unwrap();
    w.option_u8(code::MESSAGE_TYPE, 1).unwrap();
    w.option(code::CLIENT_ID, &[3, 4]).unwrap();
    let len = w.finish();
    assert_eq!(&buf[240..251], &[61, 2, 1, 2, 53, 1, 1, 61, 2, 3, 4]);

    let (_, o) = parse(&buf[..len]);
    let cid = o.client_id.unwrap();
    assert_eq!(cid.first, &[1, 2]);
    assert!(cid.split);
    assert_eq!(value(&o, code::CLIENT_ID), Some(vec![1, 2, 3, 4]));

    let m = dhcproto_decode(&buf[..len]);
    assert_eq!(m.opts().get(OptionCode::ClientIdentifier), Some(&DhcpOption::ClientIdentifier(vec![3, 4])));
}

/// A zero-length opaque option survives dhcproto's decoder but not its encoder, which writes
/// `len.chunks(255)` instances and so writes nothing for an empty value.
#[test]
fn empty_options_round_trip_through_us_not_through_dhcproto_encoder() {
    let mut buf = [0u8; 400];
    let mut w = DhcpWriter::new(&mut buf, 400).unwrap();
    w.option_u8(code::MESSAGE_TYPE, 1).unwrap();
    w.option(200, &[]).unwrap();
    w.option(code::RAPID_COMMIT, &[]).unwrap();
    let len = w.finish();
    assert_eq!(&buf[240..248], &[53, 1, 1, 200, 0, 80, 0, 255]);
    let (_, o) = parse(&buf[..len]);
    assert_eq!(joined(&o, 200), Some(vec![]));
    assert!(o.rapid_commit);

    let m = dhcproto_decode(&buf[..len]);
    assert_eq!(m.opts().get(OptionCode::from(200)).and_then(their_opaque), Some(vec![]));
    assert_eq!(m.opts().get(OptionCode::RapidCommit), Some(&DhcpOption::RapidCommit));
    let again = m.to_vec().unwrap();
    let (_, o) = parse(&again);
    assert_eq!(joined(&o, 200), None, "dhcproto dropped the empty option");
    assert!(o.rapid_commit, "rapid commit is written explicitly");
}

// ---------------------------------------------------------------------------------------------
// Never panic
// ---------------------------------------------------------------------------------------------

/// Runs every reader over `bytes`, asserting the few invariants a successful read promises.
fn exercise_all(bytes: &[u8]) {
    if let Ok(p) = DhcpPacket::new_checked(bytes) {
        assert!(bytes.len() >= dhcp::HEADER_LEN);
        let _ = (p.op(), p.htype(), p.hlen(), p.hops(), p.xid(), p.secs());
        let _ = (p.flags(), p.broadcast(), p.ciaddr(), p.yiaddr(), p.siaddr());
        let _ = (p.giaddr(), p.chaddr(), p.client_mac(), p.as_bytes());
        assert_eq!(p.sname().len(), 64);
        assert_eq!(p.file().len(), 128);
        assert_eq!(p.options().len(), bytes.len() - dhcp::HEADER_LEN);
        if let Ok(o) = p.parse_options() {
            let _ = o.message_type();
            let _ = o.iter().count();
            let mut big = [0u8; 2048];
            let mut small = [0u8; 8];
            for c in [0, 1, 12, 43, 50, 52, 53, 55, 61, 82, 118, 255] {
                let _ = o.concat(c, &mut big);
                let _ = o.concat(c, &mut small);
                let _ = o.value(c, &mut big);
                let _ = o.value(c, &mut small);
            }
            if let Some(v) = o.relay_agent_info {
                let _ = link_selection(v.first);
            }
        }
    }
    let _ = OptionIter::new(bytes).count();
    let _ = relay_sub_options(bytes).count();
    let _ = link_selection(bytes);
    let _ = Options::parse(bytes, bytes, bytes).map(|o| o.iter().count());

    if let Ok(h) = ether::Header::parse(bytes) {
        assert!(h.len() <= bytes.len());
        assert_eq!(h.tags().len(), h.vlan_count as usize);
    }
    if let Ok(p) = ipv4::Ipv4Packet::new_checked(bytes) {
        let _ = (p.ident(), p.is_fragment(), p.ttl(), p.protocol(), p.checksum());
        let _ = (p.src(), p.dst(), p.verify_checksum());
        assert_eq!(p.payload().len(), p.total_len() as usize - p.header_len());
    }
    if let Ok(u) = udp::UdpPacket::new_checked(bytes) {
        let _ = (u.src_port(), u.dst_port(), u.checksum(), u.is_empty());
        let _ = u.verify_checksum(ip(1, 2, 3, 4), Ipv4Addr::BROADCAST);
        assert_eq!(u.payload().len(), u.len() as usize - udp::HEADER_LEN);
    }
    if let Ok(f) = frame::UdpFrame::parse(bytes) {
        let payload = &bytes[f.payload.clone()];
        let _ = DhcpPacket::new_checked(payload).map(|p| p.parse_options().map(|o| o.iter().count()));
    }
}

/// One well-formed option the index cares about, at a length its definition allows.
fn clean_option() -> BoxedStrategy<Vec<u8>> {
    let opaque = prop::sample::select(vec![1u8, 12, 43, 55, 61, 80, 82, 200]);
    prop_oneof![
        (opaque, prop::collection::vec(any::<u8>(), 0..12)).prop_map(|(c, v)| {
            let mut o = vec![c, v.len() as u8];
            o.extend(v);
            o
        }),
        (prop::sample::select(vec![50u8, 51, 54, 118]), any::<[u8; 4]>())
            .prop_map(|(c, v)| vec![c, 4, v[0], v[1], v[2], v[3]]),
        (1u8..=3).prop_map(|v| vec![52, 1, v]),
        (1u8..=8).prop_map(|v| vec![53, 1, v]),
        any::<u16>().prop_map(|v| vec![57, 2, (v >> 8) as u8, v as u8]),
        // A relay agent option holding a link selection sub-option.
        any::<[u8; 4]>().prop_map(|a| vec![82, 8, 1, 0, 5, 4, a[0], a[1], a[2], a[3]]),
        Just(vec![code::PAD]),
    ]
    .boxed()
}

/// Anything option-like: clean options, options with lengths their definitions forbid, END,
/// raw garbage.
fn dirty_option() -> BoxedStrategy<Vec<u8>> {
    let any_code = prop::sample::select(vec![0u8, 255, 50, 51, 52, 53, 54, 57, 80, 118]);
    prop_oneof![
        3 => clean_option(),
        1 => (any_code, prop::collection::vec(any::<u8>(), 0..12)).prop_map(|(c, v)| {
            let mut o = vec![c, v.len() as u8];
            o.extend(v);
            o
        }),
        1 => prop::collection::vec(any::<u8>(), 0..4),
    ]
    .boxed()
}

/// Options for an area of `size` bytes: whole options while they fit, then zeros (PAD).
fn area(clean: bool, max_parts: usize, size: usize) -> impl Strategy<Value = Vec<u8>> {
    let part = if clean { clean_option() } else { dirty_option() };
    prop::collection::vec(part, 0..max_parts).prop_map(move |parts| {
        let mut a = Vec::with_capacity(size);
        for p in parts {
            if a.len() + p.len() > size {
                break;
            }
            a.extend(p);
        }
        a.resize(size, 0);
        a
    })
}

/// A DHCP message with a valid fixed header and magic cookie, then options everywhere options
/// may live (options field, `file`, `sname`). Clean messages hold only well-formed options.
fn dhcp_soup(clean: bool) -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(any::<u8>(), 44),
        area(clean, 16, 64),
        area(clean, 32, 128),
        area(clean, 64, 400),
        prop::collection::vec(any::<u8>(), 0..8),
    )
        .prop_map(move |(fixed, sname, file, opts, tail)| {
            let mut m = fixed;
            m.extend(sname);
            m.extend(file);
            m.extend(dhcp::MAGIC_COOKIE);
            m.extend(opts);
            if !clean {
                m.extend(tail);
            }
            m
        })
}

/// Checks the one-pass index against a naive reading of `Options::iter`.
fn assert_index_matches_iter(o: &Options<'_>) {
    let items: Vec<(u8, &[u8])> = o.iter().collect::<Result<_, _>>().expect("a parsed message iterates without error");
    let first = |c: u8| items.iter().find(|(x, _)| *x == c).map(|(_, v)| *v);
    let count = |c: u8| items.iter().filter(|(x, _)| *x == c).count();
    let ip4 = |v: &[u8]| Ipv4Addr::from(<[u8; 4]>::try_from(v).unwrap());

    assert_eq!(o.message_type, first(53).map(|v| v[0]));
    assert_eq!(o.requested_ip, first(50).map(ip4));
    assert_eq!(o.server_id, first(54).map(ip4));
    assert_eq!(o.subnet_selection, first(118).map(ip4));
    assert_eq!(o.lease_time, first(51).map(|v| u32::from_be_bytes(v.try_into().unwrap())));
    assert_eq!(o.max_message_size, first(57).map(|v| u16::from_be_bytes(v.try_into().unwrap())));
    assert_eq!(o.rapid_commit, count(80) > 0);
    for (c, slot) in [(61, o.client_id), (55, o.parameter_request_list), (82, o.relay_agent_info)] {
        assert_eq!(slot.map(|v| v.first), first(c), "code {c}");
        assert_eq!(slot.map(|v| v.split), first(c).map(|_| count(c) > 1));
    }
    let codes: HashSet<u8> = items.iter().map(|(c, _)| *c).collect();
    for c in 0..=255u8 {
        let expected = codes
            .contains(&c)
            .then(|| items.iter().filter(|(x, _)| *x == c).flat_map(|(_, v)| v.iter().copied()).collect::<Vec<u8>>());
        assert_eq!(joined(o, c), expected, "concat of {c}");
        assert_eq!(value(o, c), expected, "value of {c}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..1500)) {
        exercise_all(&bytes);
    }

    #[test]
    fn dhcp_header_with_random_options_never_panics(
        (clean, mut bytes) in any::<bool>().prop_flat_map(|clean| (Just(clean), dhcp_soup(clean))),
        garbage in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        exercise_all(&bytes);
        let p = DhcpPacket::new_checked(&bytes[..]).unwrap();
        let parsed = p.parse_options();
        if clean {
            prop_assert!(parsed.is_ok(), "well-formed options refused: {:?}", parsed.err());
        }
        if let Ok(o) = parsed {
            assert_index_matches_iter(&o);
            // Without option 52 in the options field, file and sname are never read.
            if !OptionIter::new(p.options()).any(|i| matches!(i, Ok((52, _)))) {
                prop_assert_eq!(o.iter().count(), OptionIter::new(p.options()).count());
            }
        }
        // Raw garbage after the cookie too.
        bytes.truncate(dhcp::HEADER_LEN);
        bytes.extend(garbage);
        exercise_all(&bytes);
    }
}

// ---------------------------------------------------------------------------------------------
// Write → read round trips
// ---------------------------------------------------------------------------------------------

fn header_strategy() -> impl Strategy<Value = Header> {
    let addr = || any::<u32>().prop_map(Ipv4Addr::from);
    (
        (any::<bool>(), any::<u8>(), any::<u8>(), any::<u8>()),
        (any::<u32>(), any::<u16>(), any::<u16>()),
        (addr(), addr(), addr(), addr()),
        any::<[u8; 16]>(),
    )
        .prop_map(|((reply, htype, hlen, hops), (xid, secs, flags), (ci, yi, si, gi), chaddr)| Header {
            op: if reply { Op::Reply } else { Op::Request },
            htype,
            hlen,
            hops,
            xid,
            secs,
            flags,
            ciaddr: ci,
            yiaddr: yi,
            siaddr: si,
            giaddr: gi,
            chaddr,
        })
}

/// Our index refuses these codes at any other length.
fn fixed_len(code: u8) -> Option<usize> {
    match code {
        code::MESSAGE_TYPE => Some(1),
        code::MAX_MESSAGE_SIZE => Some(2),
        code::REQUESTED_IP | code::SERVER_ID | code::LEASE_TIME | code::SUBNET_SELECTION => Some(4),
        _ => None,
    }
}

/// Up to `n` options with distinct codes from `codes`, values 0..=600 bytes (or the fixed length
/// of the codes the index checks).
fn options_strategy(codes: impl Strategy<Value = u8> + 'static, n: usize) -> impl Strategy<Value = Vec<(u8, Vec<u8>)>> {
    let one = codes.prop_flat_map(|c| {
        let len = match fixed_len(c) {
            Some(l) => l..=l,
            None => 0..=600,
        };
        (Just(c), prop::collection::vec(any::<u8>(), len))
    });
    prop::collection::vec(one, 0..n).prop_map(|opts| {
        let mut seen = HashSet::new();
        opts.into_iter().filter(|(c, _)| seen.insert(*c)).collect()
    })
}

/// Writes a message; returns its length.
fn write_message(buf: &mut [u8], h: &Header, opts: &[(u8, Vec<u8>)]) -> usize {
    let limit = buf.len();
    let mut w = DhcpWriter::new(buf, limit).unwrap();
    h.write(&mut w.header());
    for (c, v) in opts {
        w.option(*c, v).unwrap();
    }
    w.finish()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn write_read_round_trip(
        h in header_strategy(),
        opts in options_strategy((1u8..=254).prop_filter("no overload", |&c| c != 52), 10),
    ) {
        let mut buf = vec![0u8; 8192];
        let len = write_message(&mut buf, &h, &opts);
        let used: usize = opts.iter().map(|(_, v)| DhcpWriter::encoded_len(v.len())).sum();
        prop_assert_eq!(len, (dhcp::HEADER_LEN + used + 1).max(dhcp::MIN_MESSAGE_LEN));
        let bytes = &buf[..len];

        let (p, o) = parse(bytes);
        h.assert_ours(&p);
        assert_index_matches_iter(&o);
        for (c, v) in &opts {
            prop_assert_eq!(joined(&o, *c), Some(v.clone()), "code {}", c);
            let parts: Vec<usize> = instances(&o, *c).iter().map(|i| i.len()).collect();
            let expected: Vec<usize> = if v.is_empty() {
                vec![0]
            } else {
                v.chunks(255).map(<[u8]>::len).collect()
            };
            prop_assert_eq!(parts, expected);
        }
        let written: HashSet<u8> = opts.iter().map(|(c, _)| *c).collect();
        for c in (0..=255u8).filter(|c| !written.contains(c)) {
            prop_assert_eq!(joined(&o, c), None);
        }
        let get = |c: u8| opts.iter().find(|(x, _)| *x == c).map(|(_, v)| v.clone());
        prop_assert_eq!(o.message_type, get(53).map(|v| v[0]));
        prop_assert_eq!(o.client_id.map(|v| v.split), get(61).map(|v| v.len() > 255));
        prop_assert_eq!(o.rapid_commit, get(80).is_some());

        // dhcproto reads the same fixed header. Its option decoder is not run here: it
        // debug-asserts on the length of some typed options (80, 81, 94, 153-155), which
        // random values break; `opaque_options_agree_with_dhcproto` covers options.
        h.assert_theirs(&dhcproto_decode(&bytes[..dhcp::HEADER_LEN]));
    }

    #[test]
    fn opaque_options_agree_with_dhcproto(
        h in header_strategy(),
        opts in options_strategy(
            prop::sample::select((1u8..=254).filter(|&c| dhcproto_opaque(c)).collect::<Vec<_>>()),
            8,
        ),
    ) {
        let mut buf = vec![0u8; 8192];
        let len = write_message(&mut buf, &h, &opts);
        let m = dhcproto_decode(&buf[..len]);
        h.assert_theirs(&m);
        prop_assert_eq!(m.opts().len(), opts.len());
        for (c, v) in &opts {
            let theirs = m.opts().get(OptionCode::from(*c)).and_then(their_opaque);
            prop_assert_eq!(theirs.as_ref(), Some(v), "code {}", c);
        }

        // And back: dhcproto's encoding (its own RFC 3396 split) read by us. Empty values are
        // dropped by its encoder (see `empty_options_round_trip_through_us_not_through_dhcproto_encoder`).
        let again = m.to_vec().unwrap();
        let (p, o) = parse(&again);
        assert_same_header(&m, &p);
        for (c, v) in &opts {
            let expected = (!v.is_empty()).then(|| v.clone());
            prop_assert_eq!(joined(&o, *c), expected, "code {}", c);
        }
    }

    #[test]
    fn relay_sub_options_agree_with_dhcproto(
        subs in prop::collection::vec(
            (
                prop::sample::select(
                    [1u8, 2, 6, 7, 8, 9].into_iter().chain(12..=250).collect::<Vec<_>>(),
                ),
                prop::collection::vec(any::<u8>(), 0..40),
            ),
            0..12,
        ),
        link in prop::option::of(any::<u32>().prop_map(Ipv4Addr::from)),
        at in any::<prop::sample::Index>(),
    ) {
        let mut seen = HashSet::new();
        let mut subs: Vec<(u8, Vec<u8>)> =
            subs.into_iter().filter(|(c, _)| seen.insert(*c)).collect();
        if let Some(a) = link {
            let i = at.index(subs.len() + 1);
            subs.insert(i, (options::relay::LINK_SELECTION, a.octets().to_vec()));
        }
        let mut relay_value = Vec::new();
        for (c, v) in &subs {
            relay_value.push(*c);
            relay_value.push(v.len() as u8);
            relay_value.extend_from_slice(v);
        }
        let expected: BTreeMap<u8, Vec<u8>> = subs.into_iter().collect();
        prop_assert_eq!(&our_relay_sub_options(&relay_value), &expected);
        prop_assert_eq!(link_selection(&relay_value), link);

        // In a message (split over several option 82 instances when over 255 bytes).
        let mut buf = vec![0u8; 2048];
        let mut w = DhcpWriter::new(&mut buf, 2048).unwrap();
        w.option_u8(code::MESSAGE_TYPE, 1).unwrap();
        w.option(code::RELAY_AGENT_INFO, &relay_value).unwrap();
        let len = w.finish();
        let (_, o) = parse(&buf[..len]);
        let relay = o.relay_agent_info.unwrap();
        prop_assert_eq!(relay.split, relay_value.len() > 255);
        let whole = value(&o, code::RELAY_AGENT_INFO).unwrap();
        prop_assert_eq!(&whole, &relay_value);
        prop_assert_eq!(link_selection(&whole), link);

        let m = dhcproto_decode(&buf[..len]);
        let Some(DhcpOption::RelayAgentInformation(info)) =
            m.opts().get(OptionCode::RelayAgentInformation)
        else {
            panic!("dhcproto found no option 82");
        };
        prop_assert_eq!(&their_relay_sub_options(info), &expected);
    }
}

// ---------------------------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------------------------

fn l2_strategy() -> impl Strategy<Value = ether::Header> {
    let tag =
        (prop::sample::select(vec![ether::TPID_8021Q, ether::TPID_8021AD, ether::TPID_QINQ_LEGACY]), any::<u16>())
            .prop_map(|(tpid, tci)| ether::VlanTag { tpid, tci });
    (any::<[u8; 6]>(), any::<[u8; 6]>(), 0u8..=2, [tag.clone(), tag]).prop_map(|(dst, src, vlan_count, mut vlans)| {
        for t in &mut vlans[vlan_count as usize..] {
            *t = ether::VlanTag::default();
        }
        ether::Header { dst, src, vlans, vlan_count, ethertype: ether::ETHERTYPE_IPV4 }
    })
}

#[derive(Debug, Clone)]
struct FrameCase {
    l2: ether::Header,
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    payload: Vec<u8>,
    ttl: u8,
}

fn frame_strategy() -> impl Strategy<Value = FrameCase> {
    let addr = || any::<u32>().prop_map(Ipv4Addr::from);
    (
        l2_strategy(),
        (addr(), any::<u16>()),
        (addr(), any::<u16>()),
        prop::collection::vec(any::<u8>(), 0..1500),
        any::<u8>(),
    )
        .prop_map(|(l2, src, dst, payload, ttl)| FrameCase { l2, src, dst, payload, ttl })
}

fn write_frame(c: &FrameCase) -> Vec<u8> {
    let at = frame::payload_offset(c.l2.vlan_count);
    let mut buf = vec![0u8; at + c.payload.len() + 16];
    buf[at..at + c.payload.len()].copy_from_slice(&c.payload);
    let len = frame::write_headers(&mut buf, &c.l2, c.src, c.dst, c.payload.len(), c.ttl).unwrap();
    assert_eq!(len, at + c.payload.len());
    buf.truncate(len);
    buf
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn frame_round_trip(c in frame_strategy()) {
        let bytes = write_frame(&c);
        let f = frame::UdpFrame::parse(&bytes).unwrap();
        prop_assert_eq!(f.l2, c.l2);
        prop_assert_eq!((f.src_ip, f.src_port), c.src);
        prop_assert_eq!((f.dst_ip, f.dst_port), c.dst);
        prop_assert_eq!(&bytes[f.payload.clone()], &c.payload[..]);
        prop_assert_eq!(f.payload.start, frame::payload_offset(c.l2.vlan_count));

        let ip_at = c.l2.len();
        let p = ipv4::Ipv4Packet::new_checked(&bytes[ip_at..]).unwrap();
        prop_assert_eq!(p.header_len(), ipv4::MIN_HEADER_LEN);
        prop_assert_eq!(p.total_len() as usize, bytes.len() - ip_at);
        prop_assert_eq!(p.ttl(), c.ttl);
        prop_assert_eq!(p.protocol(), ipv4::PROTOCOL_UDP);
        prop_assert!(!p.is_fragment());
        prop_assert!(p.verify_checksum());
        let u = udp::UdpPacket::new_checked(p.payload()).unwrap();
        prop_assert_eq!(u.len() as usize, udp::HEADER_LEN + c.payload.len());
        prop_assert_ne!(u.checksum(), 0, "a written UDP checksum is never 0 (RFC 768)");
        prop_assert!(u.verify_checksum(c.src.0, c.dst.0));
        // The pseudo-header binds the checksum to the addresses.
        let other = Ipv4Addr::from(u32::from(c.dst.0) ^ 1);
        prop_assert!(!u.verify_checksum(c.src.0, other));

        // A zero UDP checksum means "none" (RFC 768): the frame still reads the same.
        let f0 = frame::UdpFrame::parse(&bytes).unwrap();
        let mut unchecked = bytes.clone();
        let at = ip_at + ipv4::MIN_HEADER_LEN + 6;
        unchecked[at..at + 2].fill(0);
        prop_assert_eq!(frame::UdpFrame::parse(&unchecked), Ok(f0));
    }

    /// Flipping bits in any one byte of a frame never yields the original frame back, except
    /// when the flip turns the UDP checksum into 0, which RFC 768 reads as "no checksum".
    /// Bytes covered by a checksum (IPv4 header but its IHL; UDP ports, checksum and payload)
    /// must make the frame invalid: a one-byte change always changes a ones'-complement sum.
    #[test]
    fn single_byte_corruption_is_detected(
        c in frame_strategy(),
        at in any::<prop::sample::Index>(),
        in_headers in any::<bool>(),
        mask in 1u8..=255,
    ) {
        let mut bytes = write_frame(&c);
        let original = frame::UdpFrame::parse(&bytes).unwrap();
        // Half the cases hit the headers, which a uniform pick over the frame rarely does.
        let i = at.index(if in_headers { frame::payload_offset(c.l2.vlan_count) } else { bytes.len() });
        bytes[i] ^= mask;
        let parsed = frame::UdpFrame::parse(&bytes);

        let ip_at = c.l2.len();
        let udp_at = ip_at + ipv4::MIN_HEADER_LEN;
        let udp_checksum = udp_at + 6..udp_at + 8;
        let checksum_now = u16::from_be_bytes([bytes[udp_at + 6], bytes[udp_at + 7]]);

        if udp_checksum.contains(&i) && checksum_now == 0 {
            prop_assert_eq!(parsed, Ok(original));
        } else if i > ip_at && i < udp_at {
            prop_assert!(parsed.is_err(), "IPv4 byte {} flipped: {:?}", i - ip_at, parsed);
        } else if (udp_at..udp_at + 4).contains(&i) || i >= udp_at + 6 {
            prop_assert_eq!(parsed, Err(Error::Malformed("UDP checksum")));
        } else {
            // Ethernet header, version/IHL, UDP length: an error or a visibly different frame.
            prop_assert!(parsed.as_ref() != Ok(&original), "byte {} flipped: {:?}", i, parsed);
        }
    }

    #[test]
    fn checksum_matches_bytewise_reference(
        data in prop::collection::vec(any::<u8>(), 0..2000),
        split in any::<prop::sample::Index>(),
    ) {
        fn reference(data: &[u8]) -> u16 {
            let mut sum: u32 = 0;
            for pair in data.chunks(2) {
                sum += u32::from(u16::from_be_bytes([pair[0], pair.get(1).copied().unwrap_or(0)]));
                sum = (sum & 0xffff) + (sum >> 16);
            }
            !(sum as u16)
        }
        prop_assert_eq!(checksum::checksum(&data), reference(&data));
        // A running sum split at an even offset gives the same result.
        let cut = split.index(data.len() + 1) & !1;
        let (a, b) = data.split_at(cut);
        prop_assert_eq!(
            checksum::finish(checksum::accumulate(checksum::accumulate(0, a), b)),
            reference(&data)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// ISP features: leasequery message types and options, class inputs
// ---------------------------------------------------------------------------------------------

#[test]
fn leasequery_types_and_class_options_read_like_dhcproto() {
    let types = [
        (MessageType::LeaseQuery, v4::MessageType::LeaseQuery),
        (MessageType::LeaseUnassigned, v4::MessageType::LeaseUnassigned),
        (MessageType::LeaseUnknown, v4::MessageType::LeaseUnknown),
        (MessageType::LeaseActive, v4::MessageType::LeaseActive),
    ];
    for (ours, theirs) in types {
        assert_eq!(ours as u8, u8::from(theirs));
        assert_eq!(MessageType::from_u8(ours as u8), Some(ours));
    }
    // A query by address as dhcproto encodes it, with the options classes look at.
    let mut m =
        v4::Message::new_with_id(9, ip(100, 64, 0, 7), ip(0, 0, 0, 0), ip(0, 0, 0, 0), ip(100, 64, 0, 250), &[]);
    m.opts_mut().insert(DhcpOption::MessageType(v4::MessageType::LeaseQuery));
    m.opts_mut().insert(DhcpOption::ClassIdentifier(b"acme-cpe".to_vec()));
    m.opts_mut().insert(DhcpOption::UserClass(b"\x04iptv".to_vec()));
    let bytes = m.to_vec().unwrap();
    let (p, o) = parse(&bytes);
    assert_eq!((o.message_type(), p.ciaddr(), p.hlen()), (Some(MessageType::LeaseQuery), ip(100, 64, 0, 7), 0));
    assert_eq!((o.vendor_class, o.user_class), (Some(&b"acme-cpe"[..]), Some(&b"\x04iptv"[..])));
    // Options 91 and 92 as we write them decode to dhcproto's values.
    let mut buf = [0u8; 600];
    let mut w = DhcpWriter::new(&mut buf, 576).unwrap();
    w.header().set_op(Op::Reply);
    w.option_u8(code::MESSAGE_TYPE, MessageType::LeaseActive as u8).unwrap();
    w.option_u32(code::CLIENT_LAST_TRANSACTION_TIME, 100).unwrap();
    w.option(code::ASSOCIATED_IP, &[100, 64, 0, 7, 100, 64, 0, 8]).unwrap();
    let len = w.finish();
    let theirs = dhcproto_decode(&buf[..len]);
    assert_eq!(theirs.opts().msg_type(), Some(v4::MessageType::LeaseActive));
    assert_eq!(
        theirs.opts().get(OptionCode::ClientLastTransactionTime),
        Some(&DhcpOption::ClientLastTransactionTime(100))
    );
    assert_eq!(
        theirs.opts().get(OptionCode::AssociatedIp),
        Some(&DhcpOption::AssociatedIp(vec![ip(100, 64, 0, 7), ip(100, 64, 0, 8)]))
    );
}
