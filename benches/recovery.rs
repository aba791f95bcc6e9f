//! Recovery at scale: a lease file with 10^7 live leases (most in the snapshot, a million
//! records in the journal after it) is recovered into the engines of 1 and 2 workers, each run
//! in a fresh process; the wall time of recovery (median of 3), and the peak resident set
//! during recovery against the resident set right after it (the steady state: the engines
//! holding the leases), and against the peak of a compaction run right after it (the steady
//! state's own peak: a running server compacts now and then). Prints a table and one JSON line for `cargo xtask bench`. Under
//! `cargo test` it runs once on 20,000 leases.
//!
//! `recovery -- write PATH N` only writes a lease file (for the whole-server benchmarks).

use dhcp_user::config::ServerSettings;
use dhcp_user::engine::Shared;
use dhcp_user::journal::Durability;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use xdhcpd_benches::*;

const RUNS: usize = 3;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().filter(|a| a != "--bench").collect();
    match args.get(1).map(String::as_str) {
        Some("write") => {
            let n: u32 = args.get(3).and_then(|n| n.parse().ok()).unwrap_or(10_000_000);
            return lease_dir::write(Path::new(&args[2]), n, (n / 20).max(1), dhcp_user::clock::unix_now());
        }
        Some("recover") => return child(Path::new(&args[2]), args[3].parse()?),
        _ => {}
    }
    let n: u32 = if measuring() { 10_000_000 } else { 20_000 };
    let dir = std::env::temp_dir().join(format!("xdhcpd-recovery-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("leases");
    let started = Instant::now();
    // A twentieth in the journal: new leases and as many renewals (10^6 records at 10^7).
    lease_dir::write(&path, n, n / 20, dhcp_user::clock::unix_now())?;
    let written = started.elapsed().as_secs_f64();
    let sizes = file_sizes(&path);
    eprintln!("wrote {n} leases in {written:.1} s: {sizes}");
    let mut rows = Vec::new();
    for workers in [1u32, 2] {
        let runs: Vec<serde_json::Value> =
            (0..RUNS).map(|_| spawn(&dir, &path, workers)).collect::<anyhow::Result<_>>()?;
        for r in &runs {
            anyhow::ensure!(r["restored"] == n, "recovered {} leases of {n}", r["restored"]);
        }
        let med = |k: &str| median(runs.iter().map(|r| r[k].as_f64().unwrap_or(f64::NAN)).collect());
        rows.push(serde_json::json!({
            "workers": workers,
            "leases": n,
            "seconds": med("seconds"),
            "seconds_all": runs.iter().map(|r| r["seconds"].clone()).collect::<Vec<_>>(),
            "peak_rss_mb": med("peak_rss_mb"),
            "steady_rss_mb": med("steady_rss_mb"),
            "peak_over_steady": med("peak_over_steady"),
            "compaction_peak_mb": med("compaction_peak_mb"),
            "peak_over_compaction_peak": med("peak_over_compaction_peak"),
        }));
    }
    println!(
        "| workers | leases | recovery (median of {RUNS}) | runs | peak RSS | steady RSS | peak / steady | peak / a compaction's peak |"
    );
    println!("|---:|---:|---:|---|---:|---:|---:|---:|");
    let f = |r: &serde_json::Value, k: &str| r[k].as_f64().unwrap_or(0.0);
    for r in &rows {
        println!(
            "| {} | {} | {:.2} s | {} | {:.0} MB | {:.0} MB | {:.2} | {:.2} |",
            r["workers"],
            r["leases"],
            f(r, "seconds"),
            r["seconds_all"],
            f(r, "peak_rss_mb"),
            f(r, "steady_rss_mb"),
            f(r, "peak_over_steady"),
            f(r, "peak_over_compaction_peak")
        );
    }
    println!("{}", serde_json::json!({ "files": sizes, "rows": rows }));
    lease_dir::remove(&path);
    let _ = std::fs::remove_dir(dir.join("run"));
    let _ = std::fs::remove_dir(&dir);
    Ok(())
}

/// Recovers a copy of lease file `path` in a fresh process (a clean heap each time); its JSON
/// line. A copy: the run compacts its files afterwards, and every run must start from the same.
fn spawn(dir: &Path, path: &Path, workers: u32) -> anyhow::Result<serde_json::Value> {
    let run = dir.join("run");
    std::fs::create_dir_all(&run)?;
    let copy = run.join("leases");
    lease_dir::remove(&copy);
    // The snapshot is only ever replaced by a rename, never written in place: a link will do.
    std::fs::hard_link(PathBuf::from(format!("{}.snapshot", path.display())), run.join("leases.snapshot"))?;
    std::fs::copy(path, &copy)?;
    std::fs::copy(PathBuf::from(format!("{}.key", path.display())), run.join("leases.key"))?;
    let out = Command::new(std::env::current_exe()?)
        .args(["recover", &copy.display().to_string(), &workers.to_string()])
        .output()?;
    lease_dir::remove(&copy);
    anyhow::ensure!(out.status.success(), "recovery failed: {}", String::from_utf8_lossy(&out.stderr));
    let line = String::from_utf8(out.stdout)?;
    let v: serde_json::Value = serde_json::from_str(line.trim())?;
    eprintln!("  {workers} worker(s): {v}");
    Ok(v)
}

/// One recovery, as `xdhcpd serve` does it at start, measured.
fn child(path: &Path, workers: u32) -> anyhow::Result<()> {
    let (key, new_key) = dhcp_user::journal::steering_key(path)?;
    let shared = Arc::new(Shared::new(&config_large(10), workers)?.with_steering_key(key));
    let settings = ServerSettings {
        workers: workers as usize,
        lease_file: Some(PathBuf::from(path)),
        durability: Durability::None,
        ..ServerSettings::default()
    };
    // The resident set is sampled every millisecond by a thread of its own: the kernel's
    // VmHWM is only brought up to date at some unmaps and misses peaks the allocator keeps.
    let sampler = Sampler::start();
    let start = Instant::now();
    let (engines, journal) = dhcp_user::server::recover(&settings, &shared, workers, new_key)?;
    let seconds = start.elapsed().as_secs_f64();
    let peak = sampler.stop();
    // The steady state: what the engines hold, without memory the allocator merely kept.
    // SAFETY: malloc_trim only returns free heap memory to the system.
    unsafe { libc::malloc_trim(0) };
    let steady = rss_bytes();
    let restored: usize = engines.iter().map(|e| e.records()).sum();
    // The steady state's own peak: a running server compacts now and then, which replays the
    // journal over the snapshot much as recovery does, with the engines full.
    let sampler = Sampler::start();
    if let Some(j) = journal {
        j.compact()?;
        j.close()?;
    }
    let compaction_peak = sampler.stop();
    let mb = |b: usize| b as f64 / (1 << 20) as f64;
    println!(
        "{}",
        serde_json::json!({
            "restored": restored,
            "seconds": seconds,
            "peak_rss_mb": mb(peak),
            "steady_rss_mb": mb(steady),
            "peak_over_steady": peak as f64 / steady as f64,
            "compaction_peak_mb": mb(compaction_peak),
            "peak_over_compaction_peak": peak as f64 / compaction_peak.max(1) as f64,
        })
    );
    drop(engines);
    Ok(())
}

/// The highest resident set seen by a thread reading `/proc/self/statm` every millisecond.
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<usize>,
}

impl Sampler {
    fn start() -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = rss_bytes();
            while !flag.load(Ordering::Relaxed) {
                peak = peak.max(rss_bytes());
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            peak.max(rss_bytes())
        });
        Sampler { stop, thread }
    }

    fn stop(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or(0)
    }
}

fn file_sizes(path: &Path) -> String {
    let size = |suffix: &str| {
        let p = PathBuf::from(format!("{}{suffix}", path.display()));
        std::fs::metadata(p).map_or(0, |m| m.len())
    };
    format!("snapshot {} MB, journal {} MB", size(".snapshot") >> 20, size("") >> 20)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}
