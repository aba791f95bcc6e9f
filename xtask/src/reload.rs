//! `cargo xtask bench` part `reload`: xdhcp-bench (closed loop) against xdhcpd's XDP path with
//! 2 workers, once without reloads and once with ten `POST /v1/reload` (through `xdhcpd
//! reload`) spread over the run, interleaved over rounds; drops, rates and the workers' pauses
//! compared in the same run. Writes its own section of BENCHMARKS.md, so that it can also run
//! alone (`cargo xtask bench --part reload`).

use crate::demo::start_xdhcpd_with;
use crate::step;
use crate::system::{gen_run, generate, median, Bins, GenRun, BIG_POOL, CLIENTS};
use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;
use xdhcpd_tests::{Pair, Scratch};

const CONTROL: &str = "127.0.0.1:9767";
const RELOADS: usize = 10;
/// The heading of this part's section in BENCHMARKS.md.
pub(crate) const HEADING: &str = "## Live reload under load";

/// One run: the generator's figures and, with reloads, each reload's pause in microseconds.
struct Run {
    gen: GenRun,
    pauses_us: Vec<u64>,
}

/// Runs the part; returns its markdown section.
pub(crate) fn run(root: &Path, rounds: usize, seconds: u64) -> Result<String> {
    let dir = Scratch::new("reload");
    let bins = own_binaries(root, &dir)?;
    let pair = Pair::new("reload");
    let mut without = Vec::new();
    let mut with = Vec::new();
    for round in 0..rounds {
        for reloads in [0, RELOADS] {
            step(&format!("round {}: xdhcpd xdp, 2 workers, {reloads} reloads during {seconds} s", round + 1));
            let r = one(&pair, &dir, &bins, seconds, reloads)?;
            eprintln!("    {:.0} DORA/s, drops {}, pauses {:?} µs", r.gen.dora_per_s, r.gen.drops, r.pauses_us);
            if reloads == 0 { &mut without } else { &mut with }.push(r);
        }
    }
    markdown(&without, &with, seconds)
}

/// Builds xdhcpd and xdhcp-bench (release) and copies them aside at once: the target folder
/// may be shared with other builds of the workspace, which would replace them meanwhile.
fn own_binaries(root: &Path, dir: &Scratch) -> Result<Bins> {
    for _ in 0..3 {
        crate::cargo(&["build", "--release", "--quiet", "-p", "dhcp-user", "-p", "xdhcp-bench"])?;
        let bins = Bins { xdhcpd: dir.path("xdhcpd"), bench: dir.path("xdhcp-bench") };
        std::fs::copy(crate::target_dir(root).join("release/xdhcpd"), &bins.xdhcpd)?;
        std::fs::copy(crate::target_dir(root).join("release/xdhcp-bench"), &bins.bench)?;
        let help = crate::output(std::process::Command::new(&bins.xdhcpd).args(["serve", "--help"]))?;
        if help.contains("--control") {
            return Ok(bins);
        }
        eprintln!("    the built xdhcpd has no --control (replaced by another build meanwhile): again");
    }
    bail!("could not keep a release xdhcpd of this tree")
}

/// One generator run, with `reloads` reloads spread over it.
fn one(pair: &Pair, dir: &Scratch, bins: &Bins, seconds: u64, reloads: usize) -> Result<Run> {
    let extra = ["--control", CONTROL];
    let mut server = start_xdhcpd_with(pair, &bins.xdhcpd, "xdp", 2, BIG_POOL, &extra, &dir.path("xdhcpd.log"))?;
    let secs = seconds.to_string();
    let result = std::thread::scope(|s| -> Result<Run> {
        let gen = s.spawn(|| generate(pair, dir, bins, &["-R", CLIENTS, "-p", &secs]));
        let mut pauses_us = Vec::new();
        let gap = Duration::from_millis(seconds * 1000 / (RELOADS as u64 + 1));
        for _ in 0..reloads {
            std::thread::sleep(gap);
            pauses_us.push(reload(pair, &bins.xdhcpd)?);
        }
        let v = gen.join().map_err(|_| anyhow::anyhow!("generator thread panicked"))??;
        Ok(Run { gen: gen_run(&v), pauses_us })
    });
    server.stop();
    result
}

/// `xdhcpd reload` in the server's namespace; the workers' pause in microseconds.
fn reload(pair: &Pair, xdhcpd: &Path) -> Result<u64> {
    let bin = xdhcpd.to_str().context("path")?;
    let out = pair.server.exec(&[bin, "reload", "--control", CONTROL, "--json"]);
    if !out.status.success() {
        bail!("xdhcpd reload failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    v["pause_us"].as_u64().context("reload answer without pause_us")
}

fn markdown(without: &[Run], with: &[Run], seconds: u64) -> Result<String> {
    let rate = |runs: &[Run]| median(&runs.iter().map(|r| r.gen.dora_per_s).collect::<Vec<_>>());
    let drops = |runs: &[Run]| runs.iter().map(|r| r.gen.drops).sum::<u64>();
    let dups = |runs: &[Run]| runs.iter().map(|r| r.gen.duplicate_acks).sum::<u64>();
    let mut pauses: Vec<f64> = with.iter().flat_map(|r| r.pauses_us.iter().map(|&p| p as f64)).collect();
    pauses.sort_by(f64::total_cmp);
    let mut md = String::new();
    writeln!(md, "{HEADING}\n")?;
    writeln!(
        md,
        "xdhcp-bench (AF_XDP, closed loop, {CLIENTS} clients, {seconds} s) against xdhcpd's XDP path, \
         2 workers, no lease file; without reloads, and with {RELOADS} `POST /v1/reload` spread over the \
         run (each rebuilds both workers' engines over the re-read configuration, every lease carried \
         over, while the workers pause at a batch boundary). {} rounds, interleaved; rates are medians, \
         drops and duplicate ACKs summed over the rounds.\n",
        without.len()
    )?;
    writeln!(md, "| run | DORA/s | ratio | drops | duplicate ACKs |")?;
    writeln!(md, "|---|---:|---:|---:|---:|")?;
    let base = rate(without);
    for (name, runs) in [("no reloads", without), ("ten reloads", with)] {
        writeln!(md, "| {name} | {:.0} | {:.2} | {} | {} |", rate(runs), rate(runs) / base, drops(runs), dups(runs))?;
    }
    let max = pauses.last().copied().unwrap_or(f64::NAN);
    writeln!(
        md,
        "\nWorkers' pause per reload (the longest of the two workers): median {:.0} µs, max {max:.0} µs, \
         over {} reloads.\n",
        median(&pauses),
        pauses.len()
    )?;
    Ok(md)
}

/// The part (`cargo xtask bench --part reload`): three rounds of 5 s, or one of 3 s when `quick`.
pub(crate) fn part(root: &Path, quick: bool) -> Result<String> {
    if quick {
        run(root, 1, 3)
    } else {
        run(root, 3, 5)
    }
}
