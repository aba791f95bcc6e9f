//! Wire benchmarks: parse a DISCOVER and build an OFFER, ours against dhcproto (the wire layer
//! of the Rust server dora) in the same run; and the engine's parse + reply for one message.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use dhcp_user::client::mac_for;
use dhcp_user::engine::{Ingress, Outcome};
use dhcp_user::wire::dhcp::{DhcpPacket, DhcpWriter, Op};
use dhcp_user::wire::options::{code, MessageType};
use dhcproto::v4;
use dhcproto::{Decodable, Encodable};
use std::net::Ipv4Addr;
use xdhcpd_benches::*;

fn parse(c: &mut Criterion) {
    let msg = discover_bytes();
    let mut g = c.benchmark_group("parse_discover");
    g.bench_function("xdhcpd", |b| {
        b.iter(|| {
            let p = DhcpPacket::new_checked(black_box(&msg[..])).unwrap();
            let o = p.parse_options().unwrap();
            black_box(&o);
            black_box((p.xid(), p.client_mac(), o.message_type, o.max_message_size))
        })
    });
    g.bench_function("dhcproto", |b| {
        b.iter(|| {
            let m = v4::Message::decode(&mut dhcproto::Decoder::new(black_box(&msg[..]))).unwrap();
            black_box((m.xid(), m.opts().msg_type(), m.opts().get(v4::OptionCode::ClientIdentifier).is_some()))
        })
    });
    g.finish();
}

fn build(c: &mut Criterion) {
    let yiaddr = Ipv4Addr::new(100, 64, 0, 10);
    let dns = [Ipv4Addr::new(100, 64, 0, 53), Ipv4Addr::new(100, 64, 0, 54)];
    let mut g = c.benchmark_group("build_offer");
    let mut out = [0u8; 1500];
    g.bench_function("xdhcpd", |b| {
        b.iter(|| {
            let mut w = DhcpWriter::new(&mut out, 548).unwrap();
            {
                let mut h = w.header();
                h.set_op(Op::Reply);
                h.set_htype(1);
                h.set_hlen(6);
                h.set_xid(black_box(0xdead_beef));
                h.set_yiaddr(yiaddr);
                let mut ch = [0u8; 16];
                ch[..6].copy_from_slice(&mac_for(1));
                h.set_chaddr(&ch);
            }
            w.option_u8(code::MESSAGE_TYPE, MessageType::Offer as u8).unwrap();
            w.option_ip(code::SERVER_ID, SERVER).unwrap();
            w.option_u32(code::LEASE_TIME, 86_400).unwrap();
            w.option_u32(code::RENEWAL_TIME, 43_200).unwrap();
            w.option_u32(code::REBINDING_TIME, 75_600).unwrap();
            w.option(code::SUBNET_MASK, &[255, 192, 0, 0]).unwrap();
            w.option_ip(code::ROUTER, SERVER).unwrap();
            w.option(code::DNS_SERVERS, &[100, 64, 0, 53, 100, 64, 0, 54]).unwrap();
            w.option(code::DOMAIN_NAME, b"isp.example").unwrap();
            w.option_u16(code::INTERFACE_MTU, 1500).unwrap();
            black_box(w.finish())
        })
    });
    g.bench_function("dhcproto", |b| {
        b.iter(|| {
            let mut m = v4::Message::default();
            m.set_opcode(v4::Opcode::BootReply)
                .set_xid(black_box(0xdead_beef))
                .set_yiaddr(yiaddr)
                .set_chaddr(&mac_for(1));
            let o = m.opts_mut();
            o.insert(v4::DhcpOption::MessageType(v4::MessageType::Offer));
            o.insert(v4::DhcpOption::ServerIdentifier(SERVER));
            o.insert(v4::DhcpOption::AddressLeaseTime(86_400));
            o.insert(v4::DhcpOption::Renewal(43_200));
            o.insert(v4::DhcpOption::Rebinding(75_600));
            o.insert(v4::DhcpOption::SubnetMask(Ipv4Addr::new(255, 192, 0, 0)));
            o.insert(v4::DhcpOption::Router(vec![SERVER]));
            o.insert(v4::DhcpOption::DomainNameServer(dns.to_vec()));
            o.insert(v4::DhcpOption::DomainName("isp.example".into()));
            o.insert(v4::DhcpOption::InterfaceMtu(1500));
            black_box(m.to_vec().unwrap())
        })
    });
    g.finish();
}

/// Parse + reply through the engine: a client re-sending its DISCOVER is found, its offer
/// refreshed and the OFFER written. The DHCP work a worker does per message.
fn parse_and_reply(c: &mut Criterion) {
    let cfg = config_cgnat(3600);
    let mut e = engine(&cfg, 1024);
    let msg = discover_bytes();
    let mut out = [0u8; 1500];
    let mut events = Vec::with_capacity(16);
    let ing = Ingress::broadcast(None);
    let mut g = c.benchmark_group("parse_and_reply");
    g.bench_function("xdhcpd_engine_offer", |b| {
        b.iter(|| {
            events.clear();
            let o = e.handle(T0, &ing, black_box(&msg), &mut out, &mut events);
            debug_assert!(matches!(o, Outcome::Reply(_)));
            black_box(o)
        })
    });
    g.bench_function("dhcproto_decode_encode", |b| {
        b.iter(|| {
            let m = v4::Message::decode(&mut dhcproto::Decoder::new(black_box(&msg[..]))).unwrap();
            let mut r = v4::Message::default();
            r.set_opcode(v4::Opcode::BootReply).set_xid(m.xid()).set_chaddr(&m.chaddr()[..6]);
            let o = r.opts_mut();
            o.insert(v4::DhcpOption::MessageType(v4::MessageType::Offer));
            o.insert(v4::DhcpOption::ServerIdentifier(SERVER));
            o.insert(v4::DhcpOption::AddressLeaseTime(86_400));
            o.insert(v4::DhcpOption::SubnetMask(Ipv4Addr::new(255, 192, 0, 0)));
            o.insert(v4::DhcpOption::Router(vec![SERVER]));
            black_box(r.to_vec().unwrap())
        })
    });
    g.finish();
}

criterion_group!(benches, parse, build, parse_and_reply);
criterion_main!(benches);
