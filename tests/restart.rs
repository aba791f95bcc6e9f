//! The restart avalanche, shared by its test (`tests/avalanche.rs`, CI-sized) and its benchmark
//! (`cargo xtask bench`, a million clients): xdhcpd with a lease journal (fsync) on a pool in
//! 100.64.0.0/10; xdhcp-bench runs one DORA per client and keeps the leases it saw ACKed; the
//! server stops and starts again, recovering them; then every client sends its INIT-REBOOT at
//! once (`avalanche` with `--leases-in`), retransmitting with exponential back-off (9 tries).
//!
//! Runs and reports only: the callers read the generator's JSON reports and judge them.

use crate::{eventually, Pair, Process, Scratch};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What a restart avalanche left behind.
#[derive(Debug)]
pub struct Restart {
    /// The generator's JSON report of the DORA run that made the leases.
    pub prepare_json: PathBuf,
    /// Its JSON report of the INIT-REBOOT avalanche after the restart.
    pub avalanche_json: PathBuf,
    /// Leases the first run saw ACKed (lines of the lease list).
    pub leases: u64,
    /// The restarted server's recovery line ("N leases restored ... in M ms").
    pub recovery: String,
}

/// The server's address on `s0`, beside the pair's 198.18.0.1/24.
const SERVER: &str = "100.64.0.1";

/// Starts xdhcpd (`bin`) in the server namespace serving 100.64.0.0/10 on the XDP path with
/// `workers`, its journal in `dir`; waits until it serves (recovery included).
fn start(pair: &Pair, dir: &Scratch, bin: &str, workers: u32, log: &Path) -> Result<Process, String> {
    let lease_file = dir.path("leases").display().to_string();
    let workers = workers.to_string();
    let args = [
        bin,
        "serve",
        "--interface",
        "s0",
        "--subnet",
        "100.64.0.0/10",
        "--pool",
        "100.64.1.0-100.79.255.254",
        "--server-id",
        SERVER,
        "--workers",
        &workers,
        "--backend",
        "xdp",
        "--lease-time",
        "86400",
        "--lease-file",
        &lease_file,
        "--durability",
        "fsync",
    ];
    let p = Process::start(&pair.server, "xdhcpd", &args, log);
    let up = eventually(Duration::from_secs(120), || {
        std::fs::read_to_string(log).ok()?.contains("xdhcpd: serving").then_some(())
    });
    up.ok_or_else(|| format!("xdhcpd did not start:\n{}", std::fs::read_to_string(log).unwrap_or_default()))?;
    Ok(p)
}

/// Runs the generator (`bench`, with `transport`: its direct-mode flags) in the client
/// namespace with `args`; its JSON report goes to `json`. Exit status 3 (duplicates) is left
/// for the caller to see in the report.
fn generate(pair: &Pair, bench: &str, transport: &[&str], json: &Path, args: &[&str]) -> Result<(), String> {
    let j = json.display().to_string();
    let mut all = vec![bench, "-q", "--json", &j];
    all.extend_from_slice(transport);
    all.extend_from_slice(args);
    let out = pair.client.exec(&all);
    if !out.status.success() && out.status.code() != Some(3) {
        let (o, e) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        return Err(format!("xdhcp-bench {args:?} failed: {o}{e}"));
    }
    Ok(())
}

/// One restart avalanche of `clients` clients against xdhcpd `bin` with `workers`, driven by
/// xdhcp-bench `bench` over `transport` (e.g. `["-i", "c0"]`, plus `--xdp`, `--cpu`).
pub fn run(
    pair: &Pair,
    dir: &Scratch,
    bin: &str,
    bench: &str,
    transport: &[&str],
    clients: u32,
    workers: u32,
) -> Result<Restart, String> {
    pair.server.ip(&["addr", "add", &format!("{SERVER}/10"), "dev", "s0"]);
    let leases = dir.path("acked.txt");
    let l = leases.display().to_string();
    let prepare_json = dir.path("prepare.json");
    let mut server = start(pair, dir, bin, workers, &dir.path("xdhcpd-1.log"))?;
    let n = clients.to_string();
    let prepare = ["--scenario", "exhaustion", "-R", &n, "--leases-out", &l];
    generate(pair, bench, transport, &prepare_json, &prepare)?;
    server.stop();
    let log = dir.path("xdhcpd-2.log");
    let _server = start(pair, dir, bin, workers, &log)?;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let recovery = text.lines().find(|l| l.contains("leases restored")).unwrap_or_default().to_string();
    let avalanche_json = dir.path("avalanche.json");
    // Nine tries: back-off 1, 2, 4 ... 64, 64, 64 s (RFC 2131 caps it at 64 s), over four
    // minutes: a client keeps asking until the server gets to it.
    let avalanche = ["--scenario", "avalanche", "--leases-in", &l, "--tries", "9"];
    generate(pair, bench, transport, &avalanche_json, &avalanche)?;
    let count = std::fs::read_to_string(&leases).map_err(|e| format!("{l}: {e}"))?.lines().count() as u64;
    Ok(Restart { prepare_json, avalanche_json, leases: count, recovery })
}
