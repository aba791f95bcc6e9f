//! Part `journal-server`: what the lease journal costs the whole server. xdhcpd on the XDP
//! path with 1 and 2 workers, leases in memory only, then with a lease file at `durability =
//! none` and `fsync`, driven by xdhcp-bench (closed loop, CPU 0); every setting once per round,
//! rounds interleaved; DORA/s as a ratio to memory-only, and the REQUEST→ACK latency the
//! journal adds (an ACK waits in its frame until its lease is durable; the worker goes on),
//! and the server's CPU time (user + system, all threads) per lease: the journal's cost on a
//! busy machine, where rates are noisy.

use super::parts::{median_of, Dora};
use crate::demo::start_xdhcpd_with;
use crate::step;
use crate::system::{build, cpu_secs, generate, BIG_POOL, CLIENTS};
use anyhow::Result;
use std::fmt::Write as _;
use std::path::Path;
use xdhcpd_tests::{Pair, Scratch};

const SETTINGS: [&str; 3] = ["memory only", "durability = none", "durability = fsync"];
const WORKERS: [u32; 2] = [1, 2];
/// Requests outstanding in the closed loop. With fsync an ACK waits a few ms for its sync; a
/// window of 256 then caps the rate at about 256 per sync time whatever the server could do
/// (the generator, not the server, was measured). 2,048 leaves room for a whole sync's worth.
const WINDOW: &str = "2048";

pub(crate) fn run(root: &Path, quick: bool) -> Result<String> {
    let (rounds, seconds) = if quick { (1, "2") } else { (5, "5") };
    let bins = build(root, !quick)?;
    let pair = Pair::new("jrn");
    let dir = Scratch::new("jrn");
    let leases = dir.path("leases").display().to_string();
    let extra = |setting: &str| -> Vec<&str> {
        match setting {
            "durability = none" => vec!["--lease-file", &leases, "--durability", "none"],
            "durability = fsync" => vec!["--lease-file", &leases, "--durability", "fsync"],
            _ => vec![],
        }
    };
    // runs[workers][setting]: the generator's report and the server's CPU µs per lease.
    let mut runs: Vec<Vec<Vec<(Dora, f64)>>> =
        WORKERS.iter().map(|_| SETTINGS.iter().map(|_| Vec::new()).collect()).collect();
    for round in 0..rounds {
        for (w, workers) in WORKERS.iter().enumerate() {
            for (s, setting) in SETTINGS.iter().enumerate() {
                step(&format!("round {}: journal cost, xdhcpd xdp, {workers} worker(s), {setting}", round + 1));
                for f in ["", ".snapshot", ".old", ".key", ".lock"] {
                    let _ = std::fs::remove_file(format!("{leases}{f}"));
                }
                let log = dir.path("xdhcpd.log");
                let mut server =
                    start_xdhcpd_with(&pair, &bins.xdhcpd, "xdp", *workers, BIG_POOL, &extra(setting), &log)?;
                let cpu_before = cpu_secs(&server);
                let v = generate(&pair, &dir, &bins, &["-R", CLIENTS, "-W", WINDOW, "-p", seconds]);
                let cpu = cpu_secs(&server) - cpu_before;
                server.stop();
                let v = v?;
                let d = Dora::of(&v);
                let leases = d.per_s * v["run_secs"].as_f64().unwrap_or(f64::NAN);
                let us = 1e6 * cpu / leases;
                eprintln!(
                    "    {:.0} DORA/s, REQUEST-ACK p50/p99 {:.0}/{:.0} us, drops {}, server CPU {us:.2} us/lease",
                    d.per_s, d.ack.0, d.ack.1, d.drops
                );
                runs[w][s].push((d, us));
            }
        }
    }
    markdown(rounds, seconds, &runs)
}

fn markdown(rounds: usize, seconds: &str, runs: &[Vec<Vec<(Dora, f64)>>]) -> Result<String> {
    let mut md = String::new();
    writeln!(md, "## Journal cost in the whole server\n")?;
    writeln!(
        md,
        "xdhcp-bench (AF_XDP, closed loop with {WINDOW} outstanding, {CLIENTS} clients, CPU 0) against \
         xdhcpd's XDP path for {seconds} s per run; one-worker servers on CPU 1. Every setting \
         once per round, {rounds} rounds interleaved; medians, and ratios of medians to memory \
         only with the same number of workers. With fsync an ACK leaves only once its lease is \
         on disk: it waits in its frame while the worker goes on with the next batch. Server CPU \
         per lease: user + system time of every thread of xdhcpd (from /proc) while the \
         generator ran, over the leases made; steadier than the rates on a busy machine.\n"
    )?;
    writeln!(md, "| workers | leases | DORA/s | of memory only | each run (DORA/s) | REQUEST→ACK p50 / p99 (µs) | added to memory only's p50 / p99 (µs) | drops | server CPU per lease (µs) |")?;
    writeln!(md, "|---:|---|---:|---:|---|---:|---:|---:|---:|")?;
    let mut goal = Vec::new();
    for (w, workers) in WORKERS.iter().enumerate() {
        let dora = |s: usize| runs[w][s].iter().map(|r| r.0).collect::<Vec<_>>();
        let base = median_of(&dora(0));
        for (s, setting) in SETTINGS.iter().enumerate() {
            let m = median_of(&dora(s));
            let cpu = crate::system::median(&runs[w][s].iter().map(|r| r.1).collect::<Vec<_>>());
            let each: Vec<String> = runs[w][s].iter().map(|r| format!("{:.0}", r.0.per_s)).collect();
            writeln!(
                md,
                "| {workers} | {setting} | {:.0} | {:.2} | {} | {:.0} / {:.0} | {:+.0} / {:+.0} | {} | {cpu:.2} |",
                m.per_s,
                m.per_s / base.per_s,
                each.join(", "),
                m.ack.0,
                m.ack.1,
                m.ack.0 - base.ack.0,
                m.ack.1 - base.ack.1,
                m.drops
            )?;
            if *setting == "durability = fsync" {
                let paired = crate::system::median_ratio(&runs[w][s], &runs[w][0], |f| f.0.per_s, |b| b.0.per_s);
                goal.push(format!(
                    "{workers} worker(s) {:.0}% (median of the rounds' own ratios {:.0}%)",
                    100.0 * m.per_s / base.per_s,
                    100.0 * paired
                ));
            }
        }
    }
    writeln!(md, "\nGoal: with fsync at least 90% of the memory-only rate: **{}**.\n", goal.join(", "))?;
    Ok(md)
}
