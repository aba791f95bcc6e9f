//! The restart avalanche at CI size: 10,000 clients get a lease each from xdhcpd (journal with
//! fsync), the server restarts and recovers them, and every client sends its INIT-REBOOT at
//! once, retransmitting with back-off: all must be served with their own addresses, none
//! NAKed, none unanswered, no address to two clients. The same run at a million clients is a
//! `cargo xtask bench` part (rates and drops in BENCHMARKS.md). Needs root: skipped outside CI
//! otherwise.

use serde_json::Value;
use xdhcpd_tests::*;

const BENCH: &str = env!("CARGO_BIN_EXE_xdhcp-bench");
const CLIENTS: u64 = 10_000;

fn report(p: &std::path::Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).expect("JSON report")).expect("JSON")
}

fn u(v: &Value, path: &[&str]) -> u64 {
    path.iter().fold(v, |x, p| &x[p]).as_u64().unwrap_or_else(|| panic!("{path:?} is not a count in {v:#}"))
}

#[test]
fn every_recovered_client_is_served_after_a_restart_avalanche() {
    if !root_or_skip("every_recovered_client_is_served_after_a_restart_avalanche") {
        return;
    }
    let pair = Pair::new("avalanche");
    let dir = Scratch::new("avalanche");
    let xdhcpd = workspace_binary("xdhcpd");
    let r = restart::run(&pair, &dir, &xdhcpd, BENCH, &["-i", "c0"], CLIENTS as u32, 2).unwrap();
    let prepare = report(&r.prepare_json);
    assert_eq!(u(&prepare, &["outcome", "served"]), r.leases, "the lease list holds every ACKed client");
    assert!(r.leases > CLIENTS * 9 / 10, "most clients leased: {prepare:#}");
    eprintln!("{}", r.recovery);
    let restored: u64 = r
        .recovery
        .split(" leases restored")
        .next()
        .and_then(|s| s.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no recovery line: {:?}", r.recovery));
    assert!(restored >= r.leases, "{}", r.recovery);
    let a = report(&r.avalanche_json);
    let c = &a["counters"];
    eprintln!(
        "avalanche: {} clients, served {}, NAKs {}, drops {}, retransmissions {}, last ACK at {} s",
        r.leases,
        u(&a, &["outcome", "served"]),
        u(c, &["naks"]),
        u(c, &["drops"]),
        u(c, &["retransmissions"]),
        a["outcome"]["last_ack_secs"]
    );
    assert_eq!(u(&a, &["outcome", "served"]), r.leases, "every recovered client served: {a:#}");
    assert_eq!(u(&a, &["outcome", "unserved"]), 0);
    assert_eq!(u(c, &["naks"]), 0, "no recovered lease NAKed");
    assert_eq!(u(c, &["reboot_moved"]), 0, "each client keeps its address");
    assert_eq!(u(c, &["duplicate_acks"]), 0);
    assert_eq!(u(c, &["initiated"]), r.leases, "each client sent its INIT-REBOOT");
}
