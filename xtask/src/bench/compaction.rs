//! Part `compaction`: does compacting a lease file of 10^7 leases stall the workers? xdhcpd
//! (XDP path, one worker, CPU 1, `durability = fsync`) holds 10^7 leases in its lease file (a
//! relayed 240.0.0.0/8 subnet no traffic reaches: the generator's clients never touch them)
//! while xdhcp-bench runs DORA at a moderate paced rate; once with compaction off, once with
//! compaction forced continuously (interval 1 s, size 1 byte: each ends and the next starts),
//! interleaved rounds, same run. Latencies with compaction against without, as ratios.

use super::parts::{median_of, Dora};
use crate::system::{build, generate, Bins, BIG_POOL, CLIENTS};
use crate::{output, step};
use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use xdhcpd_tests::{eventually, Pair, Process, Scratch};

/// Leases in the file, rounds, seconds of load per run and the paced DORA rate.
struct Size {
    leases: u32,
    rounds: usize,
    seconds: &'static str,
    rate: &'static str,
}

const FULL: Size = Size { leases: 10_000_000, rounds: 3, seconds: "20", rate: "5000" };
const QUICK: Size = Size { leases: 50_000, rounds: 1, seconds: "2", rate: "500" };

/// (label, compact_interval, compact_size).
const SETTINGS: [(&str, &str, &str); 2] =
    [("compaction off", "86400", "1099511627776"), ("compaction continuous", "1", "1")];

struct Run {
    dora: Dora,
    /// Compactions finished during the run (from the server's log).
    compactions: usize,
}

pub(crate) fn run(root: &Path, quick: bool) -> Result<String> {
    let size = if quick { QUICK } else { FULL };
    let bins = build(root, !quick)?;
    let pair = Pair::new("cmp");
    let dir = Scratch::new("cmp");
    let leases = dir.path("leases");
    step(&format!("compaction: a lease file of {} leases", size.leases));
    write_leases(&leases, size.leases, quick)?;
    let mut runs: Vec<Vec<Run>> = SETTINGS.iter().map(|_| Vec::new()).collect();
    for round in 0..size.rounds {
        for (i, (label, interval, bytes)) in SETTINGS.iter().enumerate() {
            step(&format!("round {}: {label}, DORA at {}/s for {} s", round + 1, size.rate, size.seconds));
            let cfg = dir.path("xdhcpd.toml");
            std::fs::write(&cfg, config(&leases, interval, bytes))?;
            let log = dir.path("xdhcpd.log");
            let mut server = start(&pair, &bins, &cfg, &log)?;
            let v = generate(&pair, &dir, &bins, &["-R", CLIENTS, "-r", size.rate, "-p", size.seconds]);
            server.stop();
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let run = Run { dora: Dora::of(&v?), compactions: text.matches("compacted:").count() };
            eprintln!(
                "    DISCOVER-OFFER p50/p99 {:.0}/{:.0} us, REQUEST-ACK p50/p99 {:.0}/{:.0} us, drops {}, {} compactions",
                run.dora.offer.0, run.dora.offer.1, run.dora.ack.0, run.dora.ack.1, run.dora.drops, run.compactions
            );
            runs[i].push(run);
        }
    }
    markdown(&size, &runs)
}

/// Writes the lease file with the recovery benchmark's writer (release unless `quick`).
fn write_leases(path: &Path, leases: u32, quick: bool) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let how = if quick { "test" } else { "bench" };
    let p = path.display().to_string();
    let n = leases.to_string();
    output(Command::new(cargo).args([
        how,
        "-q",
        "-p",
        "xdhcpd-benches",
        "--bench",
        "recovery",
        "--",
        "write",
        &p,
        &n,
    ]))?;
    Ok(())
}

fn config(leases: &Path, interval: &str, bytes: &str) -> String {
    format!(
        "server_id = \"198.18.0.1\"\nlease_time = 3600\noffer_timeout = 10\n\
         [server]\ninterfaces = [\"s0\"]\nworkers = 1\nbackend = \"xdp\"\nlease_file = \"{}\"\n\
         durability = \"fsync\"\ncompact_interval = {interval}\ncompact_size = {bytes}\n\n\
         [[subnet]]\nsubnet = \"198.18.0.0/16\"\ninterface = \"s0\"\npools = [\"{BIG_POOL}\"]\n\n\
         [[subnet]]\nsubnet = \"240.0.0.0/8\"\npools = [\"240.0.0.10-240.255.255.250\"]\n",
        leases.display()
    )
}

/// Starts xdhcpd on CPU 1 with `cfg`; waits until it serves (recovering 10^7 leases first).
fn start(pair: &Pair, bins: &Bins, cfg: &Path, log: &Path) -> Result<Process> {
    let xdhcpd = bins.xdhcpd.to_str().context("path")?;
    let cfg = cfg.to_str().context("path")?;
    let args = ["taskset", "-c", "1", xdhcpd, "serve", "--config", cfg];
    let mut server = Process::start(&pair.server, "xdhcpd", &args, log);
    let up = eventually(Duration::from_secs(300), || {
        let text = std::fs::read_to_string(log).ok()?;
        (text.contains("xdhcpd: serving") || text.contains("Error")).then_some(())
    });
    let text = std::fs::read_to_string(log).unwrap_or_default();
    if up.is_none() || !text.contains("xdhcpd: serving") {
        server.stop();
        bail!("xdhcpd did not start:\n{text}");
    }
    if let Some(l) = text.lines().find(|l| l.contains("leases restored")) {
        eprintln!("    {}", l.trim());
    }
    Ok(server)
}

fn markdown(size: &Size, runs: &[Vec<Run>]) -> Result<String> {
    let mut md = String::new();
    writeln!(md, "## Compaction beside the workers\n")?;
    writeln!(
        md,
        "xdhcpd (XDP path, one worker, the whole process on CPU 1, `durability = fsync`) with \
         {} leases in its lease file, in a relayed 240.0.0.0/8 subnet no traffic reaches; \
         xdhcp-bench (CPU 0) runs DORA for {CLIENTS} other clients at {} DORA/s (paced) for {} s. \
         Compaction off, then forced continuously (interval 1 s, size 1 byte: each compaction \
         of the whole file is followed by the next), {} rounds interleaved; medians. The \
         compaction thread runs at nice 19 in the idle I/O class and writes its snapshot back in \
         paced steps (512 KiB written back and waited for, then a rest as long).\n",
        size.leases, size.rate, size.seconds, size.rounds
    )?;
    writeln!(md, "| compaction | DORA/s | DISCOVER→OFFER p50 / p99 (µs) | REQUEST→ACK p50 / p99 (µs) | drops | compactions finished per run |")?;
    writeln!(md, "|---|---:|---:|---:|---:|---|")?;
    let meds: Vec<Dora> = runs.iter().map(|r| median_of(&r.iter().map(|x| x.dora).collect::<Vec<_>>())).collect();
    for (((label, _, _), m), r) in SETTINGS.iter().zip(&meds).zip(runs) {
        let done: Vec<String> = r.iter().map(|x| x.compactions.to_string()).collect();
        writeln!(
            md,
            "| {label} | {:.0} | {:.0} / {:.0} | {:.0} / {:.0} | {} | {} |",
            m.per_s,
            m.offer.0,
            m.offer.1,
            m.ack.0,
            m.ack.1,
            m.drops,
            done.join(", ")
        )?;
    }
    let (off, on) = (&meds[0], &meds[1]);
    writeln!(
        md,
        "\nWith compaction against without, same run: DISCOVER→OFFER p99 **{:.2}x**, REQUEST→ACK \
         p99 **{:.2}x** (p50: {:.2}x, {:.2}x). Goal: p99 within about 1.2x.\n",
        on.offer.1 / off.offer.1,
        on.ack.1 / off.ack.1,
        on.offer.0 / off.offer.0,
        on.ack.0 / off.ack.0
    )?;
    Ok(md)
}
