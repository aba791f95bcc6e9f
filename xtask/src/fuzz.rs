//! `cargo xtask fuzz`: the cargo-fuzz targets in `fuzz/` (libFuzzer, nightly, sanitizers), in a
//! workspace of their own.
//!
//! - A campaign (`cargo xtask fuzz [--seconds N] [--core C] [TARGET]`) runs each target for N
//!   seconds from the committed seeds (`fuzz/seeds/TARGET`, read only) and a corpus that grows
//!   across campaigns outside the repository (`fuzz/target/corpus/TARGET`). Crashes are saved
//!   under `fuzz/artifacts/TARGET/` and fail the command.
//!
//! The targets build in `fuzz/target` (their flags differ from every other build, and a target
//! directory of their own never waits on the workspace's lock), without a sanitizer: the code
//! they reach is safe Rust, debug assertions and overflow checks stay on, and AddressSanitizer's
//! fresh mappings for the engine's large tables cut that target's speed tenfold.
//! - The smoke run of `cargo xtask test` (`cargo xtask fuzz --smoke` alone) runs each target
//!   over its seeds and then a few seconds more from a fresh scratch corpus: one test each.

use crate::step;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

pub(crate) const TARGETS: [&str; 5] = ["frame", "options", "engine", "journal", "config"];
/// Seconds each target fuzzes in the smoke run, after its seeds.
const SMOKE_SECONDS: u64 = 5;

/// What one run of one target did.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) target: String,
    pub(crate) executions: u64,
    pub(crate) seconds: u64,
    pub(crate) crashes: Vec<String>,
    pub(crate) log: PathBuf,
}

/// The targets named (all when `None`); an unknown name is an error.
fn chosen(target: Option<&str>) -> Result<Vec<&'static str>> {
    match target {
        None => Ok(TARGETS.to_vec()),
        Some(t) => match TARGETS.iter().find(|x| **x == t) {
            Some(x) => Ok(vec![*x]),
            None => bail!("unknown fuzz target {t:?}; the targets are {}", TARGETS.join(", ")),
        },
    }
}

/// A campaign: each chosen target for `seconds`, pinned to `core` when given.
pub(crate) fn campaign(root: &Path, seconds: u64, core: Option<usize>, target: Option<&str>) -> Result<()> {
    let targets = chosen(target)?;
    build(root)?;
    let mut runs = Vec::new();
    for t in targets {
        step(&format!("fuzzing {t} for {seconds} s"));
        let corpus = work(root).join("corpus").join(t);
        runs.push(fuzz(root, t, &corpus, seconds, core)?);
    }
    println!("\n{:<8} {:>12} {:>9} {:>8}  crashes", "target", "executions", "seconds", "exec/s");
    for r in &runs {
        let rate = r.executions / r.seconds.max(1);
        println!("{:<8} {:>12} {:>9} {:>8}  {}", r.target, r.executions, r.seconds, rate, r.crashes.len());
        for c in &r.crashes {
            println!("         crash saved: {c}");
        }
    }
    let crashed: Vec<&str> = runs.iter().filter(|r| !r.crashes.is_empty()).map(|r| r.target.as_str()).collect();
    if !crashed.is_empty() {
        bail!("fuzz targets crashed: {} (reproduce: cargo +nightly fuzz run TARGET ARTIFACT)", crashed.join(", "));
    }
    Ok(())
}

/// The smoke run of `cargo xtask test`: returns (passed, failed) targets.
pub(crate) fn smoke(root: &Path) -> Result<(u64, u64)> {
    build(root)?;
    let (mut passed, mut failed) = (0, 0);
    for t in TARGETS {
        let scratch = work(root).join("smoke").join(t);
        let _ = std::fs::remove_dir_all(&scratch);
        let r = fuzz(root, t, &scratch, SMOKE_SECONDS, None)?;
        if r.crashes.is_empty() {
            println!("test fuzz::{t} ... ok ({} executions)", r.executions);
            passed += 1;
        } else {
            println!("test fuzz::{t} ... FAILED (crash saved: {}; log {})", r.crashes.join(", "), r.log.display());
            failed += 1;
        }
    }
    Ok((passed, failed))
}

/// Builds, corpora and logs of the fuzz targets (ignored by git).
fn work(root: &Path) -> PathBuf {
    root.join("fuzz/target")
}

/// `cargo +nightly fuzz SUBCOMMAND` with the options every call shares.
fn cargo_fuzz(root: &Path, subcommand: &str) -> Command {
    let mut cmd = Command::new("cargo");
    // The eBPF object is not needed by any target, and its nested build would inherit the
    // fuzzing flags.
    cmd.current_dir(root)
        .args(["+nightly", "fuzz", subcommand, "--fuzz-dir", "fuzz", "--sanitizer", "none"])
        .env("AYA_BUILD_SKIP", "1")
        .env("CARGO_TARGET_DIR", work(root));
    cmd
}

fn build(root: &Path) -> Result<()> {
    step("building the fuzz targets (nightly, libFuzzer)");
    crate::run_cmd(&mut cargo_fuzz(root, "build"))
}

/// Runs `target` for `seconds` after its seeds, growing `corpus`; its log goes beside it.
fn fuzz(root: &Path, target: &str, corpus: &Path, seconds: u64, core: Option<usize>) -> Result<Run> {
    std::fs::create_dir_all(corpus)?;
    let artifacts = root.join("fuzz/artifacts").join(target);
    std::fs::create_dir_all(&artifacts)?;
    let logs = work(root).join("logs");
    std::fs::create_dir_all(&logs)?;
    let log = logs.join(format!("{target}.log"));
    let mut cmd = cargo_fuzz(root, "run");
    cmd.arg(target)
        .arg(corpus)
        .arg(root.join("fuzz/seeds").join(target))
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .args(["-print_final_stats=1", "-rss_limit_mb=2048", "-timeout=10"])
        .stdout(std::fs::File::create(&log)?)
        .stderr(std::fs::File::options().append(true).open(&log)?);
    if let Some(c) = core {
        let program = cmd.get_program().to_owned();
        let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
        let mut pinned = Command::new("taskset");
        pinned.current_dir(root).envs(cmd.get_envs().filter_map(|(k, v)| Some((k, v?))));
        pinned.arg("-c").arg(c.to_string()).arg(program).args(args);
        pinned.stdout(std::fs::File::options().append(true).open(&log)?);
        pinned.stderr(std::fs::File::options().append(true).open(&log)?);
        cmd = pinned;
    }
    let started = std::time::Instant::now();
    let status = cmd.status().with_context(|| format!("could not start {cmd:?}"))?;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let crashes: Vec<String> =
        text.lines().filter_map(|l| l.split_once("Test unit written to ").map(|(_, p)| p.trim().to_string())).collect();
    if !status.success() && crashes.is_empty() {
        bail!("fuzzing {target} failed ({status}) without a saved input; see {}", log.display());
    }
    Ok(Run {
        target: target.to_string(),
        executions: executions(&text),
        seconds: started.elapsed().as_secs(),
        crashes,
        log,
    })
}

/// Executions from libFuzzer's final statistics, else from its last status line (`#N ...`).
fn executions(log: &str) -> u64 {
    let stat =
        log.lines().find_map(|l| l.strip_prefix("stat::number_of_executed_units:")).and_then(|n| n.trim().parse().ok());
    stat.unwrap_or_else(|| {
        log.lines().rev().find_map(|l| l.strip_prefix('#')?.split_whitespace().next()?.parse().ok()).unwrap_or(0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executions_come_from_final_stats_or_the_last_status_line() {
        let log = "#2\tINITED cov: 10\n#4096\tpulse  cov: 12\nstat::number_of_executed_units: 5000\n";
        assert_eq!(executions(log), 5000);
        assert_eq!(executions("#2\tINITED\n#77\tNEW cov: 3\n==1== ERROR: deadly signal\n"), 77);
        assert!(chosen(Some("nope")).is_err());
        assert_eq!(chosen(None).unwrap().len(), 5);
    }
}
