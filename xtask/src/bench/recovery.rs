//! Part `recovery`: how long a start with 10^7 leases takes to recover them, and how much
//! memory recovery needs beyond what the engines then hold (`benches/recovery.rs` measures;
//! this writes the section).

use crate::{output, step};
use anyhow::{Context, Result};
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

pub(crate) fn run(_root: &Path, quick: bool) -> Result<String> {
    step("recovery: 10^7 leases from a snapshot and a journal (benches/recovery.rs)");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // Under `cargo test` the benchmark runs once on small sizes.
    let how = if quick { "test" } else { "bench" };
    let out = output(Command::new(cargo).args([how, "-q", "-p", "xdhcpd-benches", "--bench", "recovery"]))?;
    let line = out.lines().rev().find(|l| l.starts_with('{')).context("no result line from the recovery benchmark")?;
    let v: serde_json::Value = serde_json::from_str(line)?;
    eprintln!("{v}");
    let mut md = String::new();
    writeln!(md, "## Recovery at start\n")?;
    writeln!(
        md,
        "A lease file as a server leaves it some time after a compaction ({}): 95% of the leases \
         in the snapshot, then a journal with new leases (5%) and renewals of as many snapshot \
         leases. Each recovery runs in a fresh process, as `xdhcpd serve` starts: the file is \
         read and merged on one thread while the leases are restored into the workers' engines \
         on others. Wall time from opening the lease file until every engine holds its leases; \
         peak resident set during recovery against the resident set right after it (the \
         engines holding the leases: the steady state), and against the peak of a compaction \
         run right after recovery (the steady state's own peak: a running server compacts now \
         and then, replaying its journal over the snapshot much as recovery does).\n",
        v["files"].as_str().unwrap_or("?")
    )?;
    writeln!(
        md,
        "| workers | leases | recovery (median of 3) | each run (s) | peak RSS | steady RSS | peak / steady \
         | peak / compaction's peak |"
    )?;
    writeln!(md, "|---:|---:|---:|---|---:|---:|---:|---:|")?;
    let rows = v["rows"].as_array().cloned().unwrap_or_default();
    for r in &rows {
        let runs: Vec<String> = r["seconds_all"]
            .as_array()
            .map(|a| a.iter().map(|s| format!("{:.2}", s.as_f64().unwrap_or(f64::NAN))).collect())
            .unwrap_or_default();
        writeln!(
            md,
            "| {} | {} | **{:.2} s** | {} | {:.0} MB | {:.0} MB | {:.2} | {:.2} |",
            r["workers"],
            r["leases"],
            r["seconds"].as_f64().unwrap_or(f64::NAN),
            runs.join(", "),
            r["peak_rss_mb"].as_f64().unwrap_or(f64::NAN),
            r["steady_rss_mb"].as_f64().unwrap_or(f64::NAN),
            r["peak_over_steady"].as_f64().unwrap_or(f64::NAN),
            r["peak_over_compaction_peak"].as_f64().unwrap_or(f64::NAN)
        )?;
    }
    let best = rows.iter().filter_map(|r| r["seconds"].as_f64()).fold(f64::NAN, f64::min);
    writeln!(
        md,
        "\nGoal: 10^7 leases recovered in under 5 s, peak memory within the steady state's: \
         **{best:.2} s** at best here. The server's log says what it recovered: leases restored \
         and refused, records read, leases that ended while it was down, damaged bytes dropped.\n"
    )?;
    Ok(md)
}
