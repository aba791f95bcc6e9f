//! ISP features' cost on the packet path, as ratios in one run: DORA + RELEASE with no ISP
//! feature, then with 16 client classes (each matching every message's vendor class and MAC
//! prefix test, two of them matched, their options sent) and the leasequery board published on
//! every bind and release; and a leasequery by address against a DORA.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use dhcp_user::client::{mac_for, ClientMsg};
use dhcp_user::config::{Cidr, ClientClass, Config};
use dhcp_user::engine::{Engine, Ingress, Outcome};
use dhcp_user::wire::dhcp::DhcpWriter;
use dhcp_user::wire::options::{code, MessageType};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;
use xdhcpd_benches::*;

/// A /16 (65,524 pool addresses: a board of 8 MiB).
fn base() -> Config {
    let n = Ipv4Addr::new(100, 64, 0, 0);
    config(n, 16, Ipv4Addr::new(100, 64, 0, 10), Ipv4Addr::new(100, 64, 255, 250), 10)
}

fn with_isp() -> Config {
    let mut cfg = base();
    cfg.leasequery = true;
    cfg.leasequery_from = vec![Cidr { network: Ipv4Addr::new(100, 64, 0, 250), prefix_len: 32 }];
    for i in 0..16u8 {
        // Classes 14 and 15 match every benchmark client (no option 60, MAC 02:00:..).
        let (vendor, prefix) = match i {
            14 => (None, Some(vec![2, 0])),
            15 => (None, Some(vec![2])),
            _ => (Some(format!("vendor-{i}").into_bytes()), None),
        };
        cfg.classes.push(ClientClass {
            name: format!("c{i}"),
            vendor_class: vendor,
            chaddr_prefix: prefix,
            options: vec![(43, vec![1, 4, 0, 0, 0, i]), (125, vec![0, 0, 0, 9, 2, 1, i])],
            ..ClientClass::default()
        });
    }
    cfg
}

fn release(e: &mut Engine, n: u32, ip: Ipv4Addr, ev: &mut Vec<dhcp_user::engine::LeaseEvent>) {
    let (mut msg, mut out) = ([0u8; 600], [0u8; 1500]);
    let m = ClientMsg { ciaddr: ip, options: &[(code::SERVER_ID, &SERVER.octets())], ..ClientMsg::new(mac_for(n), n) };
    let len = m.write(MessageType::Release, &mut msg).unwrap();
    black_box(e.handle(T0, &Ingress::broadcast(None), &msg[..len], &mut out, ev));
}

fn leasequery_msg(ip: Ipv4Addr, buf: &mut [u8]) -> usize {
    let limit = buf.len();
    let mut w = DhcpWriter::new(buf, limit).unwrap();
    {
        let mut h = w.header();
        h.set_op(dhcp_user::wire::dhcp::Op::Request);
        h.set_xid(7);
        h.set_ciaddr(ip);
        h.set_giaddr(Ipv4Addr::new(100, 64, 0, 250));
    }
    w.option_u8(code::MESSAGE_TYPE, MessageType::LeaseQuery as u8).unwrap();
    w.finish()
}

fn isp_bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("isp");
    g.sample_size(20).measurement_time(Duration::from_secs(if measuring() { 4 } else { 1 }));
    let mut board_only = base();
    board_only.leasequery = true;
    board_only.leasequery_from = with_isp().leasequery_from;
    let classes_only = Config { leasequery: false, leasequery_from: Vec::new(), ..with_isp() };
    let cases = [
        ("dora_release_plain", base()),
        ("dora_release_board", board_only),
        ("dora_release_16_classes", classes_only),
        ("dora_release_16_classes_and_board", with_isp()),
    ];
    for (name, cfg) in cases {
        let mut e = engine(&cfg, 1 << 12);
        let mut ev = Vec::with_capacity(16);
        let mut n = 0u32;
        g.bench_function(name, |b| {
            b.iter(|| {
                n = n.wrapping_add(1) % 4096;
                ev.clear();
                let ip = dora(&mut e, n, T0, &mut ev).expect("acked");
                release(&mut e, n, ip, &mut ev);
            })
        });
    }
    // Leasequery by address for a bound lease (read from the board).
    let mut e = engine(&with_isp(), 1 << 12);
    let mut ev = Vec::new();
    let ip = dora(&mut e, 1, T0, &mut ev).expect("acked");
    let (mut msg, mut out) = ([0u8; 600], [0u8; 1500]);
    let len = leasequery_msg(ip, &mut msg);
    let ing = Ingress { src: SocketAddrV4::new(Ipv4Addr::new(100, 64, 0, 250), 67), ..Ingress::broadcast(None) };
    let first = e.handle(T0, &ing, &msg[..len], &mut out, &mut ev);
    assert!(matches!(first, Outcome::Reply(r) if r.kind == MessageType::LeaseActive), "{first:?}");
    g.bench_function("leasequery_by_address", |b| {
        b.iter(|| black_box(e.handle(T0, &ing, &msg[..len], &mut out, &mut ev)))
    });
    g.finish();
}

criterion_group!(benches, isp_bench);
criterion_main!(benches);
