//! `cargo xtask demo`: the main job on this machine. Builds xdhcpd in release mode, makes two
//! network namespaces joined by a veth pair (no default route, 198.18.0.0/16), runs the server
//! on its XDP path with a lease journal, drives it with a load generator at rising rates, shows
//! a readable report, and removes everything afterwards, also when something fails.

use crate::{cargo, step};
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::time::Duration;
use xdhcpd_tests::{eventually, parse_perfdhcp, Pair, PerfReport, Process, Scratch};

/// Offered rates (DORA/s) for the generator; `None`: as fast as the server answers.
const DEMO_RATES: [Option<u32>; 4] = [Some(10_000), Some(50_000), Some(100_000), None];
const SECONDS: u32 = 4;

pub(crate) fn run(root: &Path) -> Result<()> {
    step("building xdhcpd (release)");
    cargo(&["build", "--release", "--quiet", "-p", "dhcp-user", "--bin", "xdhcpd"])?;
    let xdhcpd = crate::target_dir(root).join("release/xdhcpd");

    step("network namespaces: server (s0, 198.18.0.1/16) <-> client (c0), no default route");
    let pair = Pair::new("demo");
    let dir = Scratch::new("demo");
    let leases = dir.path("leases");
    let log = dir.path("xdhcpd.log");
    let mut server = start_xdhcpd(&pair, &xdhcpd, "xdp", &["--lease-file", leases.to_str().context("path")?], &log)?;

    step("xdhcp-bench (the bundled load generator) from the client namespace: DORA at rising rates");
    cargo(&["build", "--release", "--quiet", "-p", "xdhcp-bench", "--bin", "xdhcp-bench"])?;
    let bench = crate::target_dir(root).join("release/xdhcp-bench");
    println!(
        "    {:>10} {:>10} {:>10} {:>8} {:>10} {:>10} {:>10}",
        "asked/s", "DORA/s", "exchanges", "drops", "p50 us", "p99 us", "dup ACKs"
    );
    // The same 50,000 clients each run: a client that DORAs again keeps its address, so the
    // /16 pool never runs dry however long the demo runs.
    for rate in DEMO_RATES {
        let json = dir.path("gen.json");
        let clients = 50_000u32;
        let mut args = vec![
            bench.to_str().context("path")?.to_string(),
            "-i".into(),
            "c0".into(),
            "-R".into(),
            clients.to_string(),
            "-p".into(),
            SECONDS.to_string(),
            "-q".into(),
            "--json".into(),
            json.display().to_string(),
        ];
        if let Some(r) = rate {
            args.extend(["-r".into(), r.to_string()]);
        }
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = pair.client.exec(&a);
        if !out.status.success() {
            bail!("xdhcp-bench failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json)?)?;
        let offer = &v["exchanges"][0];
        let drops: u64 = v["exchanges"].as_array().map_or(0, |e| e.iter().filter_map(|x| x["drops"].as_u64()).sum());
        println!(
            "    {:>10} {:>10.0} {:>10} {:>8} {:>10} {:>10} {:>10}",
            rate.map_or("unlimited".to_string(), |r| r.to_string()),
            v["rates"]["leases"].as_f64().unwrap_or(0.0),
            v["exchanges"].as_array().map_or(0, |e| e.iter().filter_map(|x| x["received"].as_u64()).sum::<u64>()),
            drops,
            offer["latency_us"]["p50"].as_f64().unwrap_or(f64::NAN),
            offer["latency_us"]["p99"].as_f64().unwrap_or(f64::NAN),
            v["checks"]["duplicate_acks"]
        );
    }
    println!("    (an exchange is one request and its reply; a DORA is two; p50/p99: DISCOVER to OFFER)");

    step("perfdhcp (Kea's load generator) as an independent check");
    let r = perfdhcp(&pair, 2000, SECONDS, 1 << 16)?;
    let (_, _, a_recv, a_drops) = &r.exchanges[1];
    println!(
        "    asked 2000 DORA/s: {:.0} DORA/s, {} drops, non-unique addresses {:?}",
        *a_recv as f64 / SECONDS as f64,
        a_drops + r.exchanges[0].3,
        r.non_unique
    );
    let status = server.stop();
    step("xdhcpd's own counters (SIGTERM: it stopped taking packets and flushed the journal)");
    for line in std::fs::read_to_string(&log).unwrap_or_default().lines() {
        println!("    {line}");
    }
    if !status.success() {
        bail!("xdhcpd exited with {status}");
    }

    step("what releasing offers at once changes (the engine, in memory)");
    cargo(&["run", "--release", "--quiet", "-p", "dhcp-core", "--example", "engine_demo"])?;
    step("done: namespaces and processes removed");
    Ok(())
}

/// Starts the release xdhcpd in the server namespace on `s0` (198.18.0.0/16, two workers) on
/// `backend` with `extra` arguments, and waits until it serves.
pub(crate) fn start_xdhcpd(pair: &Pair, xdhcpd: &Path, backend: &str, extra: &[&str], log: &Path) -> Result<Process> {
    start_xdhcpd_with(pair, xdhcpd, backend, 2, "198.18.1.0-198.18.255.254", extra, log)
}

/// [`start_xdhcpd`] with a worker count and pool. One worker runs on CPU 1, leaving CPU 0 to
/// the load generator.
pub(crate) fn start_xdhcpd_with(
    pair: &Pair,
    xdhcpd: &Path,
    backend: &str,
    workers: u32,
    pool: &str,
    extra: &[&str],
    log: &Path,
) -> Result<Process> {
    let workers = workers.to_string();
    let mut args = if workers == "1" { vec!["taskset", "-c", "1"] } else { vec![] };
    args.extend([
        xdhcpd.to_str().context("path")?,
        "serve",
        "--interface",
        "s0",
        "--subnet",
        "198.18.0.0/16",
        "--pool",
        pool,
        "--server-id",
        "198.18.0.1",
        "--lease-time",
        "3600",
        "--workers",
        &workers,
        "--backend",
        backend,
    ]);
    args.extend_from_slice(extra);
    println!("    ip netns exec {} {}", pair.server.name, args.join(" "));
    let server = Process::start(&pair.server, "xdhcpd", &args, log);
    let listening = eventually(Duration::from_secs(10), || {
        std::fs::read_to_string(log).ok()?.contains("xdhcpd: serving").then_some(())
    });
    if listening.is_none() {
        bail!("xdhcpd did not start:\n{}", std::fs::read_to_string(log).unwrap_or_default());
    }
    Ok(server)
}

/// Runs perfdhcp from the client namespace: `rate` DORA/s for `seconds`, with clients numbered
/// from `first_client` (a MAC base of their own, so every DORA is a new lease).
pub(crate) fn perfdhcp(pair: &Pair, rate: u32, seconds: u32, first_client: u32) -> Result<PerfReport> {
    let clients = rate * seconds;
    let base = format!("mac=02:{:02x}:{:02x}:00:00:00", (first_client >> 16) & 0xff, (first_client >> 8) & 0xff);
    let out = pair.client.exec(&[
        "perfdhcp",
        "-4",
        "-l",
        "c0",
        "-r",
        &rate.to_string(),
        "-R",
        &clients.to_string(),
        "-b",
        &base,
        "-p",
        &seconds.to_string(),
    ]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let r = parse_perfdhcp(&text);
    if r.exchanges.len() != 2 {
        bail!("perfdhcp gave no report:\n{text}");
    }
    Ok(r)
}
