//! Resident memory per lease: 10^7 clients get a lease through DISCOVER/REQUEST, and the growth
//! of the process's resident set is divided by the number of leases. Prints one JSON line for
//! `cargo xtask bench`. Under `cargo test` it runs with 10^4 clients.

use dhcp_user::lease::LeaseState;
use std::time::Instant;
use xdhcpd_benches::*;

fn main() {
    let n: u32 = if measuring() { 10_000_000 } else { 10_000 };
    let before = rss_bytes();
    let cfg = config_large(10);
    let mut e = engine(&cfg, n as usize);
    let pool = e.shared().space().capacity();
    let mut events = Vec::with_capacity(8);
    let start = Instant::now();
    for i in 0..n {
        events.clear();
        dora(&mut e, i, T0, &mut events).expect("every client gets a lease");
    }
    let secs = start.elapsed().as_secs_f64();
    let after = rss_bytes();
    assert_eq!(e.records(), n as usize);
    let probe = dhcp_user::lease::ClientKey::from_mac(&dhcp_user::client::mac_for(n / 2));
    assert_eq!(e.lookup(&probe).map(|l| l.1), Some(LeaseState::Bound));
    let per_lease = (after - before) as f64 / n as f64;
    let space = pool as f64 * 8.0 / n as f64;
    println!(
        "{{\"leases\":{n},\"pool_addresses\":{pool},\"rss_growth_bytes\":{},\"bytes_per_lease\":{per_lease:.1},\
         \"address_space_bytes_per_lease\":{space:.1},\"table_bytes_per_lease\":{:.1},\"dora_per_sec\":{:.0}}}",
        after - before,
        e.table_bytes() as f64 / n as f64,
        n as f64 / secs
    );
}
