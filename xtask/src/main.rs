//! `cargo xtask`: everything beyond a plain `cargo build`, in one place.
//!
//! - `setup`: installs what a fresh machine lacks, and only that.
//! - `test`: setup, formatting, lints, then every test (unit, property, integration, and each
//!   benchmark once on small sizes).
//! - `demo`: setup, then the main job: the server in network namespaces under load.
//! - `bench`: criterion and memory benchmarks in release mode; writes BENCHMARKS.md
//!   (`--part NAME`: one part alone, its section only).
//! - `fuzz`: the cargo-fuzz targets (a campaign, or the smoke run `test` includes).

mod bench;
mod demo;
mod fuzz;
mod kea;
mod reload;
mod setup;
mod system;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Parser)]
#[command(about = "xdhcpd project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what this machine lacks (checks each piece first).
    Setup,
    /// Run every test: fmt, clippy, unit, property, integration, benchmark smoke runs.
    Test,
    /// Run the demo.
    Demo,
    /// Run the benchmarks in release mode and write BENCHMARKS.md.
    Bench {
        /// A few minutes: one round of short whole-system runs, no criterion benchmarks.
        #[arg(long)]
        quick: bool,
        /// Only this part (repeatable): recovery, compaction, journal-server, reload, avalanche.
        /// Replaces its section of BENCHMARKS.md (with --quick: prints it, small sizes).
        #[arg(long = "part", value_name = "NAME")]
        parts: Vec<String>,
        /// Everything but the parts, whose sections in BENCHMARKS.md are kept as they are.
        #[arg(long)]
        no_parts: bool,
    },
    /// Fuzz each target (or TARGET) for N seconds; crashes are saved and fail the command.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Pin the fuzzer to this CPU (leave the others to the rest of the machine).
        #[arg(long)]
        core: Option<usize>,
        /// Only the smoke run of `cargo xtask test`: each target over its seeds, then briefly.
        #[arg(long)]
        smoke: bool,
        /// One of frame, options, engine, journal, config (default: all).
        target: Option<String>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = root();
    std::env::set_current_dir(&root)?;
    match cli.task {
        Task::Setup => setup::run(),
        Task::Test => {
            setup::run()?;
            test()
        }
        Task::Demo => {
            setup::run()?;
            demo::run(&root)
        }
        Task::Bench { quick, parts, no_parts } => {
            setup::run()?;
            if parts.is_empty() {
                bench::run(&root, quick, !no_parts)
            } else {
                bench::parts::run(&root, &parts, quick)
            }
        }
        Task::Fuzz { seconds, core, smoke, target } => {
            setup::run()?;
            if smoke {
                let (passed, failed) = fuzz::smoke(&root)?;
                println!("\nxtask: {passed} passed, {failed} failed");
                if failed > 0 {
                    bail!("{failed} fuzz targets crashed");
                }
                return Ok(());
            }
            fuzz::campaign(&root, seconds, core, target.as_deref())
        }
    }
}

fn test() -> Result<()> {
    step("formatting");
    cargo(&["fmt", "--all", "--check"]).context("run `cargo fmt --all` to fix")?;
    step("lints");
    // The XDP program only builds for the BPF target: linted there, with the nightly toolchain
    // its build uses.
    cargo(&["clippy", "--workspace", "--exclude", "dhcp-ebpf", "--all-targets", "--", "-D", "warnings"])?;
    run_cmd(Command::new("cargo").current_dir("dhcp-ebpf").args([
        "+nightly",
        "clippy",
        "--release",
        "--target",
        "bpfel-unknown-none",
        "-Z",
        "build-std=core",
        "--",
        "-D",
        "warnings",
    ]))?;
    step("tests (unit, property, integration in network namespaces, benchmark smoke runs)");
    let (mut passed, mut failed) = cargo_test(&["test", "--workspace", "--exclude", "dhcp-ebpf", "--all-targets"])?;
    step("whole-server benchmark parts, once on small sizes");
    for name in bench::parts::IN_XTASK_TEST {
        match bench::parts::smoke(&root(), name) {
            Ok(()) => passed += 1,
            Err(e) => {
                eprintln!("benchmark part {name} failed: {e:#}");
                failed += 1;
            }
        }
    }
    step("fuzz targets (each over its seed corpus, then a few seconds)");
    let (fuzz_passed, fuzz_failed) = fuzz::smoke(&root())?;
    passed += fuzz_passed;
    failed += fuzz_failed;
    // One closing line for the whole run, whatever order the test binaries ran in.
    println!("\nxtask: {passed} passed, {failed} failed");
    if failed > 0 {
        bail!("{failed} tests failed");
    }
    Ok(())
}

/// Runs `cargo test` with `args`, echoing its output, and adds up its `test result:` lines.
fn cargo_test(args: &[&str]) -> Result<(u64, u64)> {
    use std::io::{BufRead, BufReader};
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut child = Command::new(cargo).args(args).stdout(std::process::Stdio::piped()).spawn()?;
    let (mut passed, mut failed) = (0, 0);
    for line in BufReader::new(child.stdout.take().context("no stdout")?).lines() {
        let line = line?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            let count = |word: &str| -> u64 {
                rest.split(';')
                    .find_map(|part| {
                        part.trim().trim_start_matches("ok. ").trim_start_matches("FAILED. ").strip_suffix(word)
                    })
                    .and_then(|n| n.trim().parse().ok())
                    .unwrap_or(0)
            };
            passed += count(" passed");
            failed += count(" failed");
        }
    }
    let status = child.wait()?;
    if !status.success() && failed == 0 {
        bail!("cargo test failed: {status}");
    }
    Ok((passed, failed))
}

/// Where cargo builds: `CARGO_TARGET_DIR` when set, else `target` in the workspace.
fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"))
}

/// The workspace root (the parent of this crate).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

fn step(what: &str) {
    eprintln!("\n==> {what}");
}

/// Runs cargo (the one that runs us) with `args`.
fn cargo(args: &[&str]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run_cmd(Command::new(cargo).args(args))
}

fn run_cmd(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("could not start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

/// Runs a command and returns its standard output.
fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("could not start {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?)
}
