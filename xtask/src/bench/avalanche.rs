//! The `avalanche` part of `cargo xtask bench`: the restart avalanche at a million clients
//! (`tests/restart.rs` runs it; `tests/avalanche.rs` is the same at CI size). Writes the
//! "Restart avalanche" section of BENCHMARKS.md: clients, served, NAKs, drops and
//! retransmissions, time until every client was served and the rate, beside the rate of the
//! DORA run that made the leases (same run, same server: the ratio is what to compare).
//! Runs and reports only; NAKs, moved or duplicate addresses fail the part (wrong answers),
//! clients left unserved after every try are reported.

use crate::{cargo, step};
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::fmt::Write as _;
use std::path::Path;
use xdhcpd_tests::{restart, Pair, Scratch};

/// Clients of the full run.
pub(crate) const CLIENTS: u32 = 1_000_000;
/// The section's heading: `--part avalanche` replaces the section it opens.
pub(crate) const HEADING: &str = "## Restart avalanche";

fn count(v: &Value, path: &[&str]) -> u64 {
    path.iter().fold(v, |x, p| &x[p]).as_u64().unwrap_or(0)
}

/// Runs the restart avalanche with `clients` clients (release build, one server worker, the
/// generator on CPU 0 over AF_XDP); returns the markdown section.
pub(crate) fn run(root: &Path, clients: u32) -> Result<String> {
    step(&format!("restart avalanche: {clients} clients (release build)"));
    cargo(&[
        "build",
        "--release",
        "--quiet",
        "-p",
        "dhcp-user",
        "-p",
        "xdhcp-bench",
        "--bin",
        "xdhcpd",
        "--bin",
        "xdhcp-bench",
    ])?;
    let bin = |n: &str| crate::target_dir(root).join("release").join(n).display().to_string();
    let pair = Pair::new("aval");
    let dir = Scratch::new("aval");
    let transport = ["-i", "c0", "--xdp", "--cpu", "0"];
    let r = restart::run(&pair, &dir, &bin("xdhcpd"), &bin("xdhcp-bench"), &transport, clients, 1)
        .map_err(anyhow::Error::msg)?;
    let read = |p: &Path| -> Result<Value> {
        let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        Ok(serde_json::from_str(&text)?)
    };
    let (prep, a) = (read(&r.prepare_json)?, read(&r.avalanche_json)?);
    let md = section(&r, &prep, &a)?;
    eprintln!("{md}");
    let c = &a["counters"];
    // Wrong answers fail the part; clients still unserved after every try are a result (the
    // table shows them).
    if count(c, &["naks"]) > 0 || count(c, &["reboot_moved"]) > 0 || count(c, &["duplicate_acks"]) > 0 {
        bail!("restart avalanche: recovered clients NAKed, moved or given another's address:\n{md}");
    }
    Ok(md)
}

fn section(r: &restart::Restart, prep: &Value, a: &Value) -> Result<String> {
    let c = &a["counters"];
    let served = count(a, &["outcome", "served"]);
    let secs = a["outcome"]["last_ack_secs"].as_f64().unwrap_or(f64::NAN);
    let rate = served as f64 / secs;
    let dora = prep["rates"]["leases"].as_f64().unwrap_or(f64::NAN);
    let reboot = a["exchanges"].as_array().and_then(|x| x.iter().find(|e| e["name"] == "INIT-REBOOT-ACK"));
    let p = |q: &str| {
        reboot.and_then(|e| e["latency_us"][q].as_u64()).map_or("-".into(), |v| format!("{:.1} ms", v as f64 / 1e3))
    };
    let mut md = String::new();
    writeln!(md, "{HEADING}\n")?;
    writeln!(
        md,
        "After a restart that recovered every lease, every client sends its INIT-REBOOT at once \
         (`xdhcp-bench --scenario avalanche --leases-in`), retransmitting after 1 s, 2 s, 4 s ... \
         64 s, 64 s, 64 s (9 tries, no jitter). xdhcpd on its XDP path, one worker, lease journal with fsync (each ACK waits \
         for its record to be durable); the generator over AF_XDP on the other core. The leases \
         were made by one DORA per client (`--scenario exhaustion --leases-out`) against the same \
         server just before: its rate is the same-run yardstick.\n"
    )?;
    // The recovery line without its time stamp and scratch path: "N leases restored ...".
    let recovery = r.recovery.split_once("leases: ").map_or(r.recovery.as_str(), |(_, rest)| rest);
    writeln!(md, "Recovery at start: {recovery}.\n")?;
    writeln!(md, "| clients | served | NAKs | not served | INIT-REBOOTs sent | drops (timeouts) | all served after | INIT-REBOOT/s | DORA/s (leasing run) | ratio | p50 / p99 |")?;
    writeln!(md, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")?;
    writeln!(
        md,
        "| {} | {served} | {} | {} | {} | {} | {secs:.2} s | {rate:.0} | {dora:.0} | {:.2} | {} / {} |\n",
        r.leases,
        count(c, &["naks"]),
        count(a, &["outcome", "unserved"]),
        count(c, &["sent"]),
        count(c, &["drops"]),
        rate / dora,
        p("p50"),
        p("p99"),
    )?;
    Ok(md)
}

/// The part (`cargo xtask bench --part avalanche`): a million clients, or 10,000 when `quick`.
pub(crate) fn part(root: &Path, quick: bool) -> Result<String> {
    run(root, if quick { 10_000 } else { CLIENTS })
}
