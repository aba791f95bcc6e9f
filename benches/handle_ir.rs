//! A fixed number of `Engine::handle` calls for an instruction count under callgrind (the
//! machine's timings are noisy; instruction counts are not):
//!
//! ```text
//! valgrind --tool=callgrind --callgrind-out-file=cg.out target/release/deps/handle_ir-* offer 10000
//! callgrind_annotate --inclusive=yes cg.out | grep 'Engine::handle'
//! ```
//!
//! `offer`: the parse + reply benchmark's DISCOVER (a client re-sending it: found, its offer
//! refreshed, an OFFER written). `ack`: the same client's REQUEST for its address, renewed and
//! ACKed each time. Divide `Engine::handle`'s inclusive count by its calls (one more for `ack`).

use dhcp_user::engine::{Ingress, Outcome};
use dhcp_user::wire::dhcp::DhcpPacket;
use dhcp_user::wire::options::{code, MessageType};
use std::hint::black_box;
use xdhcpd_benches::*;

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    let which = args.next().unwrap_or_else(|| "offer".into());
    // Under `cargo test` / `cargo bench` without arguments: a few calls to prove it works.
    let n: u32 = args.next().and_then(|s| s.parse().ok()).unwrap_or(10);
    let cfg = config_cgnat(3600);
    let mut e = engine(&cfg, 1024);
    let ing = Ingress::broadcast(None);
    let mut out = [0u8; 1500];
    let mut events = Vec::with_capacity(16);
    let discover = discover_bytes();
    let Outcome::Reply(r) = e.handle(T0, &ing, &discover, &mut out, &mut events) else { panic!("no offer") };
    let yiaddr = DhcpPacket::new_checked(&out[..r.len]).expect("offer").yiaddr();
    let msg = match which.as_str() {
        "offer" => discover,
        "ack" => request_bytes(
            MessageType::Request,
            &[(code::SERVER_ID, &SERVER.octets()), (code::REQUESTED_IP, &yiaddr.octets())],
        ),
        other => panic!("unknown message {other}: offer or ack"),
    };
    let want = if which == "offer" { MessageType::Offer } else { MessageType::Ack };
    for _ in 0..n {
        events.clear();
        match e.handle(T0, &ing, black_box(&msg), &mut out, &mut events) {
            Outcome::Reply(r) if r.kind == want => {}
            o => panic!("unexpected {o:?}"),
        }
    }
    black_box(&out);
}
