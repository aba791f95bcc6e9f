//! `cargo xtask bench`: runs the criterion benchmarks and the memory benchmark in release mode,
//! then writes BENCHMARKS.md from criterion's estimates, each figure beside its peer measured
//! in the same run; then the parts that can also run alone ([`parts`]: recovery, compaction,
//! journal cost in the whole server, live reload, restart avalanche), each writing its own
//! section.

mod avalanche;
mod cluster;
mod compaction;
mod journal_server;
pub(crate) mod parts;
mod recovery;
mod renew;

use crate::{cargo, output, step};
use anyhow::{Context, Result};
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

/// Median time in nanoseconds of one criterion benchmark (`group/function[/input]`).
fn median_ns(root: &Path, id: &str) -> Result<f64> {
    let path = crate::target_dir(root).join("criterion").join(id).join("new/estimates.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("no estimates at {}", path.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text)?;
    v["median"]["point_estimate"].as_f64().context("estimates.json without median")
}

fn fact(cmd: &mut Command) -> String {
    output(cmd).map(|s| s.trim().to_string()).unwrap_or_else(|_| "unknown".into())
}

/// The whole run: BENCHMARKS.md written anew, then every part. `with_parts` false: the parts'
/// sections already in BENCHMARKS.md are kept as they are instead (`--no-parts`).
pub(crate) fn run(root: &Path, quick: bool, with_parts: bool) -> Result<()> {
    let sys = crate::system::run(root, if quick { 1 } else { 5 }, if quick { "2" } else { "5" })?;
    let system_md = system_markdown(&sys)?;
    if quick {
        println!("{system_md}");
        eprintln!("--quick: BENCHMARKS.md left as it is (a full run writes it)");
        return Ok(());
    }
    step("criterion benchmarks (wire, engine)");
    cargo(&["bench", "-p", "xdhcpd-benches", "--bench", "wire", "--bench", "engine"])?;
    step("memory per lease (10^7 leases)");
    let cargo_bin = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mem = output(Command::new(cargo_bin).args(["bench", "-q", "-p", "xdhcpd-benches", "--bench", "memory"]))?;
    let mem: serde_json::Value = serde_json::from_str(mem.lines().last().unwrap_or("{}"))?;
    eprintln!("{mem}");
    step("journal: records made durable per second, fsync vs none");
    let cargo_bin = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let journal = output(Command::new(&cargo_bin).args(["bench", "-q", "-p", "xdhcpd-benches", "--bench", "journal"]))?;
    let journal: Vec<serde_json::Value> =
        journal.lines().filter(|l| l.starts_with('{')).map(serde_json::from_str).collect::<Result<_, _>>()?;

    let m = |id: &str| median_ns(root, id);
    let parse = (m("parse_discover/xdhcpd")?, m("parse_discover/dhcproto")?);
    let build = (m("build_offer/xdhcpd")?, m("build_offer/dhcproto")?);
    let reply = (m("parse_and_reply/xdhcpd_engine_offer")?, m("parse_and_reply/dhcproto_decode_encode")?);
    let dora = m("dora_then_release")?;
    let sizes = ["10000", "1000000", "10000000"];
    let rel: Vec<f64> = sizes.iter().map(|s| m(&format!("foreign_release/release_only/{s}"))).collect::<Result<_>>()?;
    let cyc: Vec<f64> =
        sizes.iter().map(|s| m(&format!("foreign_release/discover_and_release/{s}"))).collect::<Result<_>>()?;

    let cpu = fact(Command::new("sh").args(["-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"]));
    let kernel = fact(Command::new("uname").arg("-r"));
    let rustc = fact(Command::new("rustc").arg("--version"));
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);

    let mut md = String::new();
    writeln!(md, "# Benchmarks\n")?;
    writeln!(
        md,
        "Written by `cargo xtask bench`. The machine is shared and noisy: compare the ratios, \
         which are measured in the same run, more than the absolute times.\n"
    )?;
    writeln!(md, "Machine: {cores} cores, {cpu}, Linux {kernel}, {rustc}.\n")?;
    md.push_str(&system_md);
    writeln!(md, "## Wire and engine, per message (criterion medians, one core)\n")?;
    writeln!(md, "The peer is dhcproto 0.12, the wire layer of the Rust server dora, run in the same process.\n")?;
    writeln!(md, "| benchmark | xdhcpd | dhcproto | dhcproto / xdhcpd |")?;
    writeln!(md, "|---|---:|---:|---:|")?;
    for (name, (ours, peer)) in [
        ("parse a DISCOVER", parse),
        ("build an OFFER", build),
        ("parse + reply (engine: DISCOVER in, OFFER out; peer: decode + encode)", reply),
    ] {
        writeln!(md, "| {name} | {ours:.0} ns | {peer:.0} ns | {:.1}x |", peer / ours)?;
    }
    writeln!(md, "\nTarget: parse + reply under 150 ns per message: **{:.0} ns**.\n", reply.0)?;
    writeln!(md, "## Full DORA through the engine\n")?;
    writeln!(
        md,
        "DISCOVER → OFFER, REQUEST → ACK, then RELEASE (which keeps the pool from running dry), \
         new client each time, 4M-address pool: **{dora:.0} ns** for the three messages, that is \
         {:.2} million such cycles per second on one core.\n",
        1e3 / dora
    )?;
    writeln!(md, "## Foreign-server release with many clients held\n")?;
    writeln!(
        md,
        "N offers are held (no timeout during the run); then further clients DISCOVER and send a \
         REQUEST naming another server, which releases our offer at once. `release` times only \
         that REQUEST (DISCOVERs run untimed in batches of 1,000); `cycle` times both.\n"
    )?;
    writeln!(md, "| clients held | release | cycle | release / release at 10^4 |")?;
    writeln!(md, "|---:|---:|---:|---:|")?;
    for (i, s) in sizes.iter().enumerate() {
        writeln!(md, "| {s} | {:.0} ns | {:.0} ns | {:.2}x |", rel[i], cyc[i], rel[i] / rel[0])?;
    }
    writeln!(md, "\nTarget: release at 10^7 within 1.2x of 10^4: **{:.2}x**.\n", rel[2] / rel[0])?;
    writeln!(md, "## Memory per lease\n")?;
    writeln!(
        md,
        "{} leases granted through DISCOVER/REQUEST; growth of the resident set divided by the \
         leases. It includes the shared address space (8 bytes per pool address, {} addresses: \
         {} bytes per lease) and the client table ({} bytes per lease).\n",
        mem["leases"], mem["pool_addresses"], mem["address_space_bytes_per_lease"], mem["table_bytes_per_lease"]
    )?;
    writeln!(md, "**{} bytes per lease** (target: at most 64).\n", mem["bytes_per_lease"])?;
    writeln!(md, "## Journal cost\n")?;
    writeln!(
        md,
        "Lease records made durable per second by the journal alone (`benches/journal.rs`): \
         each thread appends a batch and waits for it, as a socket worker does per received \
         batch; one fsync covers whatever all threads queued (group commit).\n"
    )?;
    writeln!(md, "| durability | threads | batch | records/s | fsyncs |")?;
    writeln!(md, "|---|---:|---:|---:|---:|")?;
    for j in &journal {
        writeln!(
            md,
            "| {} | {} | {} | {} | {} |",
            j["durability"].as_str().unwrap_or("?"),
            j["threads"],
            j["batch"],
            j["records_per_sec"],
            j["fsyncs"]
        )?;
    }
    writeln!(
        md,
        "\nWhole server, same run: xdhcp-bench (AF_XDP, closed loop) against xdhcpd's XDP path \
         (2 workers), every setting once per round, interleaved; medians. With fsync an ACK \
         leaves only after its lease is on disk; the worker serves on meanwhile (pipelined \
         commit), and one fsync covers both workers' records. The generator keeps 256 requests \
         outstanding here, which caps the fsync setting by its added ACK latency (Little's \
         law): the part *Journal cost in the whole server* below, with 2,048 outstanding, \
         measures the server's own limit.\n"
    )?;
    writeln!(md, "| lease file | DORA/s | ratio to no lease file | drops |")?;
    writeln!(md, "|---|---:|---:|---:|")?;
    let base = sys.journal.first().map(|r| r.1).unwrap_or(f64::NAN);
    for (name, rate, drops) in &sys.journal {
        writeln!(md, "| {name} | {rate:.0} | {:.2} | {drops} |", rate / base)?;
    }
    writeln!(md)?;
    writeln!(md, "## Reproduce\n")?;
    writeln!(md, "```\ncargo xtask bench\ncargo xtask bench --part NAME   # one part alone: {}\n```", parts_list())?;
    let path = root.join("BENCHMARKS.md");
    if !with_parts {
        let old = std::fs::read_to_string(&path).unwrap_or_default();
        for (name, _) in parts::PARTS {
            if let Some(section) = parts::section(&old, name) {
                md = parts::put_section(&md, name, section);
            }
        }
    }
    std::fs::write(&path, md)?;
    eprintln!("wrote BENCHMARKS.md");
    if !with_parts {
        return Ok(());
    }
    let all: Vec<String> = parts::PARTS.iter().map(|(n, _)| n.to_string()).collect();
    parts::run(root, &all, false)
}

fn parts_list() -> String {
    parts::PARTS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
}

/// The whole-system tables.
fn system_markdown(sys: &crate::system::System) -> Result<String> {
    use crate::system::{median, Responder};
    let mut md = String::new();
    let med = |runs: &[crate::system::GenRun], f: fn(&crate::system::GenRun) -> f64| {
        median(&runs.iter().map(f).collect::<Vec<_>>())
    };
    let rate_of = |want: fn(&Responder) -> bool| {
        sys.rows.iter().find(|(r, _)| want(r)).map(|(_, runs)| med(runs, |g| g.dora_per_s)).unwrap_or(f64::NAN)
    };
    let ceiling = rate_of(|r| matches!(r, Responder::Reflector { xdp: true }));
    let ceiling_runs =
        sys.rows.iter().find(|(r, _)| matches!(r, Responder::Reflector { xdp: true })).map_or(&[][..], |(_, g)| &g[..]);
    let paired = |runs: &[crate::system::GenRun]| {
        crate::system::median_ratio(runs, ceiling_runs, |g| g.dora_per_s, |c| c.dora_per_s)
    };
    let kea = rate_of(|r| matches!(r, Responder::Kea { .. }));
    writeln!(md, "## Whole system: leases per second over veth\n")?;
    writeln!(
        md,
        "xdhcp-bench (direct mode over AF_XDP, {CLIENTS_DOC} clients, closed loop with 256 outstanding, pinned to CPU 0) \
         against each responder in a server namespace, over one veth pair, {} rounds interleaved; \
         medians, and the median of the rounds' own ratios to the reflector (a round's runs are \
         minutes apart at most, so the machine's drift over the whole run cancels out of it). \
         One-worker servers and the reflector run on CPU 1. A DORA is two request/reply \
         pairs. Kea runs multi-threaded with memfile leases in memory, xdhcpd without a lease \
         file: both keep leases in memory only.\n",
        sys.rows.first().map_or(0, |r| r.1.len())
    )?;
    writeln!(md, "| responder | DORA/s | of the AF_XDP reflector ceiling | rounds' own ratios (median) | vs Kea | DISCOVER→OFFER p50 / p99 (µs) | drops | duplicate ACKs |")?;
    writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|")?;
    for (r, runs) in &sys.rows {
        let rate = med(runs, |g| g.dora_per_s);
        writeln!(
            md,
            "| {} | {rate:.0} | {:.0}% | {:.0}% | {:.1}x | {:.0} / {:.0} | {} | {} |",
            r.name(),
            100.0 * rate / ceiling,
            100.0 * paired(runs),
            rate / kea,
            med(runs, |g| g.offer_p50_us),
            med(runs, |g| g.offer_p99_us),
            runs.iter().map(|g| g.drops).sum::<u64>(),
            runs.iter().map(|g| g.duplicate_acks).sum::<u64>()
        )?;
    }
    if let Some((_, runs)) =
        sys.rows.iter().find(|(r, _)| matches!(r, Responder::Xdhcpd { backend: "xdp", workers: 1 }))
    {
        writeln!(
            md,
            "\nGoal: the XDP path with one worker at 95% or more of the AF_XDP reflector: **{:.0}%** \
             (median of the rounds' own ratios: **{:.0}%**; each round: {}).",
            100.0 * med(runs, |g| g.dora_per_s) / ceiling,
            100.0 * paired(runs),
            runs.iter()
                .zip(ceiling_runs)
                .map(|(g, c)| format!("{:.2}", g.dora_per_s / c.dora_per_s))
                .collect::<Vec<_>>()
                .join(", ")
        )?;
    }
    writeln!(
        md,
        "\nAt half its maximum rate (paced, open loop), with the stateless AF_XDP reflector at the \
         same rate: where the reflector's tail is as long, the tail is the machine's (generator \
         and veth delivery share the two cores), not the server's.\n"
    )?;
    writeln!(md, "| responder | DORA/s asked | DORA/s | DISCOVER→OFFER p50 / p99 (µs) | drops |")?;
    writeln!(md, "|---|---:|---:|---:|---:|")?;
    for (name, rate, g) in &sys.half_rate {
        writeln!(
            md,
            "| {name} | {rate:.0} | {:.0} | {:.0} / {:.0} | {} |",
            g.dora_per_s, g.offer_p50_us, g.offer_p99_us, g.drops
        )?;
    }
    writeln!(
        md,
        "\nperfdhcp (Kea's generator) against each server at 4,000 DORA/s for 4 s, as an independent check:\n"
    )?;
    writeln!(md, "| server | DORA/s | drops |")?;
    writeln!(md, "|---|---:|---:|")?;
    for (name, rate, drops) in &sys.perfdhcp {
        writeln!(md, "| {name} | {rate:.0} | {drops} |")?;
    }
    writeln!(md, "\n## Multi-server segment: offers turned down (`foreign` scenario)\n")?;
    writeln!(
        md,
        "A 100-address pool and 100 clients; half of them take another server's offer (their \
         REQUEST names another server), then as many fresh clients DISCOVER. Offer timeout 60 s \
         for xdhcpd; Kea holds no state for offers.\n"
    )?;
    writeln!(
        md,
        "| server | foreign REQUESTs | fresh clients offered | starved | offers still held | duplicate offers |"
    )?;
    writeln!(md, "|---|---:|---:|---:|---:|---:|")?;
    for (name, v) in &sys.foreign {
        let f = &v["foreign"];
        writeln!(
            md,
            "| {name} | {} | {} | {} | {} | {} |",
            f["foreign_requests"],
            f["probes_offered"],
            f["probes_starved"],
            f["offers_still_held"],
            v["checks"]["duplicate_offers"]
        )?;
    }
    writeln!(md, "\nExhaustion: 150 clients, each one DORA with retries, on the same 100-address pool.\n")?;
    writeln!(
        md,
        "| server | served | starved | duplicate offers | offers of leased addresses | NAKs | duplicate ACKs |"
    )?;
    writeln!(md, "|---|---:|---:|---:|---:|---:|---:|")?;
    for (name, v) in &sys.exhaustion {
        let c = &v["checks"];
        writeln!(
            md,
            "| {name} | {} | {} | {} | {} | {} | {} |",
            v["outcome"]["served"],
            v["outcome"]["starved"],
            c["duplicate_offers"],
            c["offers_of_leased"],
            c["naks"],
            c["duplicate_acks"]
        )?;
    }
    writeln!(md)?;
    starvation_markdown(&mut md, &sys.starvation)?;
    Ok(md)
}

/// The starvation table: each run's legitimate clients served and their p99s beside run (a)'s,
/// the unloaded figures; then whether the goal holds with limits on.
fn starvation_markdown(md: &mut String, runs: &[crate::system::StarvationRun]) -> Result<()> {
    use crate::system::{LIMIT_FLAGS, STARVE_CLIENTS, STARVE_FLOOD, STARVE_OFFER_TIMEOUT, STARVE_RATE};
    writeln!(md, "## Starvation: one circuit floods DISCOVERs (`starvation` scenario)\n")?;
    writeln!(
        md,
        "xdhcpd (UDP path, one worker on CPU 1) behind a relay agent, a /21 pool (2,033 \
         addresses), offers held {STARVE_OFFER_TIMEOUT} s. {STARVE_CLIENTS} legitimate clients, each on \
         a circuit of its own (option 82), DORA at {STARVE_RATE}/s; one more circuit sends \
         {STARVE_FLOOD} DISCOVERs/s, each from a new hardware address, and never REQUESTs: it \
         empties the pool in a tenth of a second. Limits in (c): `{}`. Latencies and drops are \
         the legitimate clients' alone.\n",
        LIMIT_FLAGS.join(" ")
    )?;
    writeln!(
        md,
        "| run | legitimate clients served | share | DISCOVER→OFFER p99 (µs) | vs unloaded | REQUEST→ACK p99 (µs) | vs unloaded | legitimate drops | flood DISCOVERs | flood OFFERs |"
    )?;
    writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")?;
    let p99 = |v: &serde_json::Value, k: &str| v["starvation"][k].as_f64();
    let unloaded = runs.first().and_then(|r| r.report.as_ref().ok());
    let base = |k: &str| unloaded.and_then(|v| p99(v, k));
    let ratio = |x: Option<f64>, b: Option<f64>| match (x, b) {
        (Some(x), Some(b)) if b > 0.0 => format!("{:.2}x", x / b),
        _ => "–".into(),
    };
    let us = |x: Option<f64>| x.map_or("–".into(), |x| format!("{x:.0}"));
    for run in runs {
        let v = match &run.report {
            Ok(v) => v,
            Err(note) => {
                writeln!(md, "| {} | {note} | | | | | | | | |", run.label)?;
                continue;
            }
        };
        let st = &v["starvation"];
        let (offer, ack) = (p99(v, "discover_offer_p99_us"), p99(v, "request_ack_p99_us"));
        writeln!(
            md,
            "| {} | {} of {} | {:.1}% | {} | {} | {} | {} | {} | {} | {} |",
            run.label,
            st["served"],
            st["clients"],
            100.0 * st["share_served"].as_f64().unwrap_or(0.0),
            us(offer),
            ratio(offer, base("discover_offer_p99_us")),
            us(ack),
            ratio(ack, base("request_ack_p99_us")),
            st["drops"],
            st["flood_discovers"],
            st["flood_offers"]
        )?;
    }
    let goal = match runs.get(2).map(|r| &r.report) {
        Some(Ok(v)) => {
            let st = &v["starvation"];
            let all = st["served"] == st["clients"];
            let within = |k: &str| matches!((p99(v, k), base(k)), (Some(x), Some(b)) if x <= 2.0 * b);
            let met = all && within("discover_offer_p99_us") && within("request_ack_p99_us");
            if met { "**met**" } else { "**not met**" }.to_string()
        }
        Some(Err(note)) => format!("not measured ({note})"),
        None => "not measured".into(),
    };
    writeln!(
        md,
        "\nGoal with limits on: every legitimate client served, p99s within 2x of the unloaded \
         ones: {goal}.\n"
    )?;
    Ok(())
}

const CLIENTS_DOC: &str = "60,000";
