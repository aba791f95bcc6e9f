//! Part `renew`: renewals per second in one run, interleaved, of xdhcpd's XDP path with
//! renewals answered in the XDP program (`--kernel-renew on`) and by the worker (`off`),
//! against two ceilings: the AF_XDP reflector (`reflector --xdp`, every renewal through user
//! space) and the XDP_TX reflector (`reflector --xdp --xdp-tx`, renewals sent back by the
//! program itself). Beside each rate: the responder process's CPU (its share of the run's
//! wall time: near zero when the program answers) and the generator's, to show which side is
//! the limit on a small machine.
//!
//! Twice, as to where the responder side's receive processing runs, the XDP program with it:
//! veth's default, in the sender's context (the generator's core), and s0's NAPI in a kernel
//! thread pinned to the responder's core, as a NIC queue's interrupt on the server's own core
//! would run it (its CPU then counts as the responder's).

use crate::demo::start_xdhcpd_with;
use crate::step;
use crate::system::{build, cpu_secs, exec_timed, median, Bins, BIG_POOL};
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};
use xdhcpd_tests::{Pair, Process, Scratch};

const SETTINGS: [&str; 4] =
    ["xdhcpd, kernel_renew on", "xdhcpd, kernel_renew off", "AF_XDP reflector", "XDP_TX reflector"];
/// Renewing clients, and requests outstanding in the closed loop.
const CLIENTS: &str = "10000";
const WINDOW: &str = "256";

/// Where the responder side's receive processing (and so the XDP program) runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rx {
    /// veth's default: in the sender's context, on the generator's core.
    Sender,
    /// s0's NAPI in a kernel thread on CPU 1, the responder's core.
    Responder,
}

const PLACEMENTS: [Rx; 2] = [Rx::Sender, Rx::Responder];

impl Rx {
    fn name(self) -> &'static str {
        match self {
            Rx::Sender => "receive processing on the sender's core (veth default)",
            Rx::Responder => "receive processing on the responder's core (threaded NAPI on CPU 1)",
        }
    }
}

/// One run: renewals per second, the responder's and the generator's CPU (share of one core).
#[derive(Debug, Clone, Copy)]
struct Run {
    per_s: f64,
    responder_cpu: f64,
    generator_cpu: f64,
    drops: u64,
}

pub(crate) fn run(root: &Path, quick: bool) -> Result<String> {
    let (rounds, seconds) = if quick { (1, "2") } else { (5, "5") };
    let bins = build(root, !quick)?;
    let pair = Pair::new("rnw");
    let dir = Scratch::new("rnw");
    let mut runs: Vec<Vec<Vec<Run>>> =
        PLACEMENTS.iter().map(|_| SETTINGS.iter().map(|_| Vec::new()).collect()).collect();
    for round in 0..rounds {
        for (p, rx) in PLACEMENTS.iter().enumerate() {
            for (s, setting) in SETTINGS.iter().enumerate() {
                step(&format!("round {}: renewals, {setting}, {}", round + 1, rx.name()));
                let r = measure(&pair, &dir, &bins, s, *rx, seconds)?;
                runs[p][s].push(r);
            }
        }
    }
    let mut md = String::new();
    writeln!(md, "## Renewals in the kernel\n")?;
    for (p, rx) in PLACEMENTS.iter().enumerate() {
        markdown(&mut md, rounds, seconds, *rx, &runs[p])?;
    }
    Ok(md)
}

/// One run of setting `s` with the responder side's receive processing where `rx` says.
fn measure(pair: &Pair, dir: &Scratch, bins: &Bins, s: usize, rx: Rx, seconds: &str) -> Result<Run> {
    let mut responder = start(pair, dir, bins, s)?;
    // The device keeps its mode across runs (and its NAPI's re-creation): set it every time.
    set_threaded(pair, rx == Rx::Responder)?;
    let napi = if rx == Rx::Responder { pin_napi_threads()? } else { Vec::new() };
    let before = cpu_secs(&responder) + threads_cpu(&napi);
    let started = Instant::now();
    let generated = generate(pair, dir, bins, seconds);
    let cpu = cpu_secs(&responder) + threads_cpu(&napi) - before;
    let wall = started.elapsed().as_secs_f64();
    responder.stop();
    let (v, generator_secs) = generated?;
    let r = Run {
        per_s: renewals_per_s(&v),
        responder_cpu: cpu / wall,
        generator_cpu: generator_secs / wall,
        drops: drops(&v),
    };
    eprintln!(
        "    {:.0} renewals/s, responder CPU {:.0}%, generator CPU {:.0}%, drops {}",
        r.per_s,
        100.0 * r.responder_cpu,
        100.0 * r.generator_cpu,
        r.drops
    );
    Ok(r)
}

/// Puts s0's receive processing into NAPI kernel threads, or back into softirq context. s0 has
/// NAPI only once the responder's XDP program is attached: waits for it.
fn set_threaded(pair: &Pair, on: bool) -> Result<()> {
    let cmd = format!("echo {} > /sys/class/net/s0/threaded", u8::from(on));
    let mut tries = 0;
    loop {
        let out = pair.server.exec(&["sh", "-c", &cmd]);
        if out.status.success() {
            break;
        }
        tries += 1;
        if tries == 50 {
            bail!("threaded NAPI on s0: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Pins s0's NAPI kernel threads to CPU 1; returns their thread ids.
fn pin_napi_threads() -> Result<Vec<u32>> {
    std::thread::sleep(Duration::from_millis(100));
    let mut ids = Vec::new();
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.starts_with("napi/s0-") {
            let pinned = std::process::Command::new("taskset").args(["-p", "-c", "1", &pid.to_string()]).output()?;
            if !pinned.status.success() {
                bail!("pinning {}: {}", comm.trim(), String::from_utf8_lossy(&pinned.stderr));
            }
            ids.push(pid);
        }
    }
    if ids.is_empty() {
        bail!("no NAPI thread for s0 after enabling threaded NAPI");
    }
    Ok(ids)
}

/// User and system CPU seconds of kernel threads `ids` so far.
fn threads_cpu(ids: &[u32]) -> f64 {
    ids.iter().map(|id| crate::system::pid_cpu_secs(*id)).sum()
}

/// Setting `s`'s responder in the server namespace, on CPU 1, ready to answer.
fn start(pair: &Pair, dir: &Scratch, bins: &Bins, s: usize) -> Result<Process> {
    let log = dir.path("responder.log");
    if s < 2 {
        let on = if s == 0 { "on" } else { "off" };
        return start_xdhcpd_with(pair, &bins.xdhcpd, "xdp", 1, BIG_POOL, &["--kernel-renew", on], &log);
    }
    let b = bins.bench.to_str().context("path")?;
    let mut args = vec!["taskset", "-c", "1", b, "reflector", "-i", "s0", "-q", "--xdp"];
    if s == 3 {
        args.push("--xdp-tx");
    }
    let p = Process::start(&pair.server, "reflector", &args, &log);
    std::thread::sleep(Duration::from_millis(500));
    Ok(p)
}

/// The generator (client namespace, CPU 0, AF_XDP) renewing for `seconds`: its report and
/// the CPU seconds it used (the shell's `times`).
fn generate(pair: &Pair, dir: &Scratch, bins: &Bins, seconds: &str) -> Result<(Value, f64)> {
    let json = dir.path("gen.json");
    let _ = std::fs::remove_file(&json);
    let (b, j) = (bins.bench.to_str().context("path")?, json.display().to_string());
    let gen = [b, "-i", "c0", "--xdp", "--cpu", "0", "-q", "--json", &j, "--scenario", "renew"];
    let mut all = gen.to_vec();
    all.extend(["-R", CLIENTS, "-W", WINDOW, "-p", seconds]);
    let (out, secs) = exec_timed(&pair.client, &all);
    if !out.status.success() && out.status.code() != Some(3) {
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        bail!("xdhcp-bench renew failed: {text}");
    }
    let v = serde_json::from_str(&std::fs::read_to_string(&json).context("the generator's report")?)?;
    Ok((v, secs))
}

fn renewals(v: &Value) -> Option<&Value> {
    v["exchanges"].as_array()?.iter().find(|e| e["name"] == "RENEW-ACK")
}

fn renewals_per_s(v: &Value) -> f64 {
    let got = renewals(v).and_then(|e| e["received"].as_u64()).unwrap_or(0);
    got as f64 / v["run_secs"].as_f64().unwrap_or(f64::NAN)
}

fn drops(v: &Value) -> u64 {
    renewals(v).and_then(|e| e["drops"].as_u64()).unwrap_or(0)
}

fn markdown(md: &mut String, rounds: usize, seconds: &str, rx: Rx, runs: &[Vec<Run>]) -> Result<()> {
    let m = |s: usize, f: fn(&Run) -> f64| median(&runs[s].iter().map(f).collect::<Vec<_>>());
    let (xdp_tx, af_xdp) = (m(3, |r| r.per_s), m(2, |r| r.per_s));
    writeln!(md, "### {}\n", capitalized(rx.name()))?;
    if rx == Rx::Responder {
        writeln!(
            md,
            "The same, with s0's receive processing in a NAPI kernel thread pinned to CPU 1: the XDP \
             program now runs on the responder's core, as it would under a NIC queue's interrupt on \
             the server, and the thread's CPU counts as the responder's. Replies still reach the \
             generator through c0's receive processing, which runs where the reply was sent from.\n"
        )?;
    } else {
        writeln!(
            md,
            "xdhcp-bench `--scenario renew` (AF_XDP, {CLIENTS} clients, {WINDOW} outstanding, CPU 0) for \
         {seconds} s per run against: xdhcpd's XDP path with one worker on CPU 1, renewals answered \
         in the XDP program (`--kernel-renew on`) or by the worker (`off`); the AF_XDP reflector \
         and the XDP_TX reflector (`xdhcp-bench reflector --xdp [--xdp-tx]`, CPU 1). Every setting \
         once per round, {rounds} rounds interleaved; medians. CPU: the responder process's and the \
         generator's user and system time over the run's wall time (one core = 100%); on veth the \
         XDP program runs on the sender's CPU, so renewals answered there cost the generator's \
         core, not the responder's.\n"
        )?;
    }
    writeln!(md, "| responder | renewals/s | of XDP_TX reflector | of AF_XDP reflector | each run | responder CPU | responder CPU per renewal | generator CPU | drops |")?;
    writeln!(md, "|---|---:|---:|---:|---|---:|---:|---:|---:|")?;
    for (s, setting) in SETTINGS.iter().enumerate() {
        let per_s = m(s, |r| r.per_s);
        let each: Vec<String> = runs[s].iter().map(|r| format!("{:.0}", r.per_s)).collect();
        writeln!(
            md,
            "| {setting} | {per_s:.0} | {:.2} | {:.2} | {} | {:.0}% | {:.2} µs | {:.0}% | {} |",
            per_s / xdp_tx,
            per_s / af_xdp,
            each.join(", "),
            100.0 * m(s, |r| r.responder_cpu),
            1e6 * m(s, |r| r.responder_cpu / r.per_s),
            100.0 * m(s, |r| r.generator_cpu),
            runs[s].iter().map(|r| r.drops).sum::<u64>()
        )?;
    }
    let on = m(0, |r| r.per_s);
    let per_round = |of: usize| crate::system::median_ratio(&runs[0], &runs[of], |a| a.per_s, |b| b.per_s);
    writeln!(
        md,
        "\nGoal: kernel renewals at 80% or more of the XDP_TX reflector and above the AF_XDP \
         reflector: **{:.0}% of XDP_TX, {:.2}× AF_XDP** (medians of the rounds' own ratios: \
         {:.0}%, {:.2}×; against the worker answering: {:.2}×).\n",
        100.0 * on / xdp_tx,
        on / af_xdp,
        100.0 * per_round(3),
        per_round(2),
        per_round(1)
    )?;
    Ok(())
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}
