//! Journal cost: lease records made durable per second with fsync and without, as the socket
//! workers use it (one append and one wait per received batch). Prints JSON lines for
//! `cargo xtask bench`; under `cargo test` it runs a few batches only.

use dhcp_user::journal::{Durability, Journal};
use std::time::Duration;
use xdhcpd_benches::journal_load::drive;
use xdhcpd_benches::*;

fn main() {
    let batches = if measuring() { 3000 } else { 20 };
    let dir = std::env::temp_dir().join(format!("xdhcpd-journal-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    for (name, durability) in [("fsync", Durability::Fsync), ("none", Durability::None)] {
        for threads in [1usize, 2] {
            for batch in [1usize, 32] {
                let path = dir.join(format!("leases-{name}-{threads}-{batch}"));
                let (journal, _) = Journal::open(&path, durability, Duration::ZERO, T0).expect("open journal");
                let load = drive(&journal, threads, batches, batch, T0 + 86_400);
                journal.close().expect("close");
                assert_eq!(load.failed_waits, 0);
                println!(
                    "{{\"durability\":\"{name}\",\"threads\":{threads},\"batch\":{batch},\"records_per_sec\":{:.0},\
                     \"waits_per_sec\":{:.0},\"fsyncs\":{}}}",
                    load.records as f64 / load.elapsed.as_secs_f64(),
                    load.waits_per_sec(),
                    load.fsyncs
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
