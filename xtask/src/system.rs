//! Whole-system benchmarks for `cargo xtask bench`: in one run, interleaved, the reflector (the
//! I/O ceiling), xdhcpd on its XDP and UDP paths with 1 and 2 workers, and Kea 2.x, each driven
//! by xdhcp-bench over a veth pair between namespaces; perfdhcp against each server as an
//! independent check; the `foreign` scenario on a small pool for xdhcpd and Kea; and the
//! `starvation` scenario in relay mode (one circuit floods DISCOVERs) against xdhcpd without and
//! with per-circuit limits.

use crate::demo::{perfdhcp, start_xdhcpd_with};
use crate::{cargo, kea, step};
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use xdhcpd_tests::{Pair, Process, Scratch};

pub(crate) const BIG_POOL: &str = "198.18.1.0-198.18.255.254";
pub(crate) const CLIENTS: &str = "60000";

/// `starvation`: the relay agent (in the client namespace) and the subnet behind it, a /21 whose
/// pool (2,033 addresses) just fits the legitimate clients and the few a limited flood may hold,
/// and which a flood of 20,000/s empties in a tenth of a second.
const STARVE_RELAY: &str = "198.19.0.1";
const STARVE_RELAY_CIDR: &str = "198.19.0.1/21";
const STARVE_SUBNET: &str = "198.19.0.0/21";
const STARVE_POOL: &str = "198.19.0.10-198.19.7.250";
/// Legitimate clients, their DORA rate, and seconds: every client gets its turn (2,000 at 200/s
/// take 10 s) and some a second one.
pub(crate) const STARVE_CLIENTS: &str = "2000";
pub(crate) const STARVE_RATE: &str = "200";
const STARVE_SECS: &str = "12";
pub(crate) const STARVE_FLOOD: &str = "20000";
/// Offers held 10 s: without limits the flood holds the whole pool all the time.
pub(crate) const STARVE_OFFER_TIMEOUT: &str = "10";
/// The per-circuit limits of run (c), keyed on option 82's circuit id.
pub(crate) const LIMIT_FLAGS: [&str; 6] =
    ["--limit-key", "circuit-id", "--max-leases-per-key", "4", "--discover-rate-per-key", "20"];

/// One responder setting measured with the generator.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Responder {
    Reflector { xdp: bool },
    Xdhcpd { backend: &'static str, workers: u32 },
    Kea { threads: u32 },
}

impl Responder {
    pub(crate) fn name(&self) -> String {
        match self {
            Responder::Reflector { xdp: true } => "reflector (stateless, AF_XDP)".into(),
            Responder::Reflector { xdp: false } => "reflector (stateless, AF_PACKET)".into(),
            Responder::Xdhcpd { backend, workers } => format!("xdhcpd {backend}, {workers} worker(s)"),
            Responder::Kea { threads } => format!("Kea 2.2 memfile, {threads} threads"),
        }
    }
}

/// Results of one generator run.
#[derive(Debug, Clone, Default)]
pub(crate) struct GenRun {
    pub dora_per_s: f64,
    pub offer_p50_us: f64,
    pub offer_p99_us: f64,
    pub drops: u64,
    pub duplicate_acks: u64,
}

/// One run of the starvation benchmark: the generator's report, or why it did not run.
#[derive(Debug, Clone)]
pub(crate) struct StarvationRun {
    pub label: &'static str,
    pub report: std::result::Result<Value, String>,
}

pub(crate) struct System {
    pub rows: Vec<(Responder, Vec<GenRun>)>,
    pub half_rate: Vec<(String, f64, GenRun)>,
    pub perfdhcp: Vec<(String, f64, u64)>,
    pub foreign: Vec<(String, Value)>,
    pub exhaustion: Vec<(String, Value)>,
    /// (a) no flood, (b) flood without limits, (c) flood with per-circuit limits.
    pub starvation: Vec<StarvationRun>,
    /// Journal cost on the XDP path (2 workers): (setting, median DORA/s, drops).
    pub journal: Vec<(&'static str, f64, u64)>,
}

pub(crate) struct Bins {
    pub(crate) xdhcpd: PathBuf,
    pub(crate) bench: PathBuf,
}

fn start(pair: &Pair, dir: &Scratch, bins: &Bins, r: Responder, pool: &str, offer_timeout: &str) -> Result<Process> {
    match r {
        Responder::Reflector { xdp } => {
            let b = bins.bench.to_str().context("path")?;
            let mut args = vec![b, "reflector", "-i", "s0", "--cpu", "1", "-q"];
            if xdp {
                args.push("--xdp");
            }
            let p = Process::start(&pair.server, "reflector", &args, &dir.path("reflector.log"));
            std::thread::sleep(Duration::from_millis(500));
            Ok(p)
        }
        // `offer_timeout` "busy": the default timeout, workers busy-polling.
        Responder::Xdhcpd { backend, workers } => {
            let mut extra = vec!["--offer-timeout", if offer_timeout == "busy" { "10" } else { offer_timeout }];
            if offer_timeout == "busy" {
                extra.push("--busy-poll");
            }
            start_xdhcpd_with(pair, &bins.xdhcpd, backend, workers, pool, &extra, &dir.path("xdhcpd.log"))
        }
        Responder::Kea { threads } => kea::start(pair, dir, threads, pool),
    }
}

/// Runs the generator in the client namespace on CPU 0 in direct mode; returns its JSON report.
pub(crate) fn generate(pair: &Pair, dir: &Scratch, bins: &Bins, args: &[&str]) -> Result<Value> {
    // The generator on its AF_XDP transport: the fastest it has, so that the responder is what
    // is measured.
    generate_over(pair, dir, bins, &["-i", "c0", "--xdp"], args)
}

/// Runs the generator in the client namespace on CPU 0 over `transport` (its direct or relay
/// mode flags); returns its JSON report.
fn generate_over(pair: &Pair, dir: &Scratch, bins: &Bins, transport: &[&str], args: &[&str]) -> Result<Value> {
    let json = dir.path("gen.json");
    let _ = std::fs::remove_file(&json);
    let mut all = vec![bins.bench.to_str().context("path")?];
    all.extend_from_slice(transport);
    all.extend(["--cpu", "0", "-q", "--json"]);
    let j = json.display().to_string();
    all.push(&j);
    all.extend_from_slice(args);
    let out = pair.client.exec(&all);
    if !out.status.success() && out.status.code() != Some(3) {
        bail!(
            "xdhcp-bench {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(serde_json::from_str(&std::fs::read_to_string(&json)?)?)
}

pub(crate) fn gen_run(v: &Value) -> GenRun {
    let offer = v["exchanges"].as_array().and_then(|a| a.iter().find(|e| e["name"] == "DISCOVER-OFFER")).cloned();
    let drops = v["exchanges"].as_array().map_or(0, |a| a.iter().filter_map(|e| e["drops"].as_u64()).sum());
    GenRun {
        dora_per_s: v["rates"]["leases"].as_f64().unwrap_or(0.0),
        offer_p50_us: offer.as_ref().and_then(|o| o["latency_us"]["p50"].as_f64()).unwrap_or(f64::NAN),
        offer_p99_us: offer.as_ref().and_then(|o| o["latency_us"]["p99"].as_f64()).unwrap_or(f64::NAN),
        drops,
        duplicate_acks: v["checks"]["duplicate_acks"].as_u64().unwrap_or(0),
    }
}

pub(crate) fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The median of the rounds' own ratios `rate(a[i]) / rate(b[i])`, round `i` of two settings
/// interleaved: a round's runs are minutes apart at most, so the machine's drift over a whole
/// benchmark cancels out of it (steadier than the ratio of the medians).
pub(crate) fn median_ratio<A, B>(a: &[A], b: &[B], rate_a: impl Fn(&A) -> f64, rate_b: impl Fn(&B) -> f64) -> f64 {
    median(&a.iter().zip(b).map(|(x, y)| rate_a(x) / rate_b(y)).collect::<Vec<_>>())
}

/// Builds xdhcpd and xdhcp-bench (release, else debug for quick checks) and says where they are.
pub(crate) fn build(root: &Path, release: bool) -> Result<Bins> {
    step("whole system: building xdhcpd and xdhcp-bench");
    let profile = if release { "release" } else { "debug" };
    let mut args = vec!["build", "--quiet"];
    if release {
        args.push("--release");
    }
    args.extend(["-p", "dhcp-user", "-p", "xdhcp-bench", "--bin", "xdhcpd", "--bin", "xdhcp-bench"]);
    cargo(&args)?;
    let bins = Bins {
        xdhcpd: crate::target_dir(root).join(profile).join("xdhcpd"),
        bench: crate::target_dir(root).join(profile).join("xdhcp-bench"),
    };
    Ok(bins)
}

pub(crate) fn run(root: &Path, rounds: usize, seconds: &str) -> Result<System> {
    let bins = build(root, true)?;
    let pair = Pair::new("sys");
    let dir = Scratch::new("sys");
    let responders = [
        Responder::Reflector { xdp: true },
        Responder::Reflector { xdp: false },
        Responder::Xdhcpd { backend: "xdp", workers: 1 },
        Responder::Xdhcpd { backend: "xdp", workers: 2 },
        Responder::Xdhcpd { backend: "udp", workers: 1 },
        Responder::Xdhcpd { backend: "udp", workers: 2 },
        Responder::Kea { threads: 2 },
    ];
    let mut rows: Vec<(Responder, Vec<GenRun>)> = responders.iter().map(|r| (*r, Vec::new())).collect();
    for round in 0..rounds {
        for (r, runs) in rows.iter_mut() {
            step(&format!("round {}: xdhcp-bench (closed loop, window 256) against {}", round + 1, r.name()));
            let mut server = start(&pair, &dir, &bins, *r, BIG_POOL, "10")?;
            // First round: rate and latency plots of each responder beside BENCHMARKS.md.
            let plots = root.join("benchmarks").join(slug(&r.name()));
            let plots = plots.display().to_string();
            let mut args = vec!["-R", CLIENTS, "-p", seconds];
            if round == 0 {
                args.extend(["--plots", &plots]);
            }
            let v = generate(&pair, &dir, &bins, &args)?;
            server.stop();
            let g = gen_run(&v);
            eprintln!("    {:.0} DORA/s, DISCOVER-OFFER p99 {:.0} us, drops {}", g.dora_per_s, g.offer_p99_us, g.drops);
            runs.push(g);
        }
    }
    // Latency at half the measured maximum rate (open loop, paced).
    let mut half_rate = Vec::new();
    for (r, runs) in &rows {
        if !matches!(r, Responder::Xdhcpd { workers: 1, .. }) {
            continue;
        }
        let rate = median(&runs.iter().map(|g| g.dora_per_s).collect::<Vec<_>>()) / 2.0;
        let variants: &[(&str, &str)] = match r {
            Responder::Xdhcpd { backend: "xdp", .. } => &[("wake-up", "10"), ("busy-poll", "busy")],
            _ => &[("", "10")],
        };
        for (label, how) in variants {
            let name = if label.is_empty() { r.name() } else { format!("{}, {label}", r.name()) };
            step(&format!("{name} at half its maximum: {rate:.0} DORA/s"));
            let mut server = start(&pair, &dir, &bins, *r, BIG_POOL, how)?;
            let v = generate(&pair, &dir, &bins, &["-R", CLIENTS, "-p", seconds, "-r", &format!("{rate:.0}")])?;
            server.stop();
            half_rate.push((name, rate, gen_run(&v)));
        }
        if matches!(r, Responder::Xdhcpd { backend: "xdp", .. }) {
            // The stateless AF_XDP reflector at the same rate: how much of the tail is the
            // machine (generator and veth on the same two cores) rather than the server.
            let refl = Responder::Reflector { xdp: true };
            step(&format!("{} at the same rate: {rate:.0} DORA/s", refl.name()));
            let mut server = start(&pair, &dir, &bins, refl, BIG_POOL, "10")?;
            let v = generate(&pair, &dir, &bins, &["-R", CLIENTS, "-p", seconds, "-r", &format!("{rate:.0}")])?;
            server.stop();
            half_rate.push((format!("{} (same rate, for comparison)", refl.name()), rate, gen_run(&v)));
        }
    }
    // perfdhcp against each server, as an independent check.
    let mut perf = Vec::new();
    for r in [
        Responder::Xdhcpd { backend: "xdp", workers: 2 },
        Responder::Xdhcpd { backend: "udp", workers: 2 },
        Responder::Kea { threads: 2 },
    ] {
        step(&format!("perfdhcp -r 4000 against {}", r.name()));
        let mut server = start(&pair, &dir, &bins, r, BIG_POOL, "10")?;
        let p = perfdhcp(&pair, 4000, 4, 0)?;
        server.stop();
        let drops = p.exchanges.iter().map(|e| e.3).sum();
        perf.push((r.name(), p.exchanges[1].2 as f64 / 4.0, drops));
    }
    // The foreign scenario: a 100-address pool, 100 clients, half of them take another server's
    // offer; then fresh clients DISCOVER.
    let mut foreign = Vec::new();
    for (r, timeout) in
        [(Responder::Xdhcpd { backend: "xdp", workers: 2 }, "60"), (Responder::Kea { threads: 2 }, "60")]
    {
        step(&format!("foreign scenario against {}", r.name()));
        let mut server = start(&pair, &dir, &bins, r, "198.18.1.0-198.18.1.99", timeout)?;
        let v = generate(
            &pair,
            &dir,
            &bins,
            &["--scenario", "foreign", "-R", "100", "--foreign-share", "0.5", "-p", "10"],
        )?;
        server.stop();
        foreign.push((r.name(), v));
    }
    // Exhaustion: 150 clients on a 100-address pool.
    let mut exhaustion = Vec::new();
    for r in [Responder::Xdhcpd { backend: "xdp", workers: 2 }, Responder::Kea { threads: 2 }] {
        step(&format!("exhaustion scenario against {}", r.name()));
        let mut server = start(&pair, &dir, &bins, r, "198.18.1.0-198.18.1.99", "10")?;
        let v = generate(&pair, &dir, &bins, &["--scenario", "exhaustion", "-R", "150", "-p", "10"])?;
        server.stop();
        exhaustion.push((r.name(), v));
    }
    let starvation = starvation(&pair, &dir, &bins)?;
    // What the lease journal costs: the same load with no lease file, `durability = none` and
    // `fsync`, interleaved.
    let leases = dir.path("leases").display().to_string();
    let settings: [(&'static str, Vec<&str>); 3] = [
        ("no lease file (memory only)", vec![]),
        ("durability = none", vec!["--lease-file", &leases, "--durability", "none"]),
        ("durability = fsync", vec!["--lease-file", &leases]),
    ];
    let mut jr: Vec<Vec<GenRun>> = vec![Vec::new(); settings.len()];
    for round in 0..rounds {
        for (i, (name, extra)) in settings.iter().enumerate() {
            step(&format!("round {}: journal cost, xdhcpd xdp, 2 workers, {name}", round + 1));
            let _ = std::fs::remove_file(&leases);
            let mut server =
                start_xdhcpd_with(&pair, &bins.xdhcpd, "xdp", 2, BIG_POOL, extra, &dir.path("xdhcpd.log"))?;
            let v = generate(&pair, &dir, &bins, &["-R", CLIENTS, "-p", seconds])?;
            server.stop();
            jr[i].push(gen_run(&v));
        }
    }
    let journal = settings
        .iter()
        .zip(&jr)
        .map(|((name, _), runs)| {
            (*name, median(&runs.iter().map(|g| g.dora_per_s).collect::<Vec<_>>()), runs.iter().map(|g| g.drops).sum())
        })
        .collect();
    Ok(System { rows, half_rate, perfdhcp: perf, foreign, exhaustion, starvation, journal })
}

/// The starvation scenario: xdhcpd (UDP path, one worker on CPU 1) behind a relay agent, the
/// legitimate clients each on a circuit of their own at a modest rate; (a) alone: the unloaded
/// figures; (b) beside one circuit flooding DISCOVERs, no limits; (c) the same with per-circuit
/// limits. (c) is skipped, with the reason, when xdhcpd refuses the limit flags.
fn starvation(pair: &Pair, dir: &Scratch, bins: &Bins) -> Result<Vec<StarvationRun>> {
    pair.client.ip(&["addr", "add", STARVE_RELAY_CIDR, "dev", "c0"]);
    pair.server.ip(&["route", "add", STARVE_SUBNET, "via", "198.18.0.2"]);
    let runs: [(&'static str, &str, &[&str]); 3] = [
        ("(a) no flood: the unloaded figure", "0", &[]),
        ("(b) flood, limits off", STARVE_FLOOD, &[]),
        ("(c) flood, limits on", STARVE_FLOOD, &LIMIT_FLAGS),
    ];
    let mut out = Vec::new();
    for (label, flood, limits) in runs {
        step(&format!("starvation scenario against xdhcpd udp, 1 worker: {label}"));
        let mut server = match start_behind_relay(pair, dir, bins, limits)? {
            Ok(server) => server,
            Err(why) => {
                let note = format!("not run: xdhcpd refused `{}` ({why})", limits.join(" "));
                eprintln!("    {note}");
                out.push(StarvationRun { label, report: Err(note) });
                continue;
            }
        };
        let args = [
            "--scenario",
            "starvation",
            "-R",
            STARVE_CLIENTS,
            "-r",
            STARVE_RATE,
            "-p",
            STARVE_SECS,
            "--flood-rate",
            flood,
        ];
        let relay = ["--relay", STARVE_RELAY, "--server", "198.18.0.1"];
        let v = generate_over(pair, dir, bins, &relay, &args);
        server.stop();
        let v = v?;
        let st = &v["starvation"];
        eprintln!(
            "    served {} of {}, p99 DISCOVER-OFFER {} us, REQUEST-ACK {} us; flood {} DISCOVERs, {} OFFERs",
            st["served"],
            st["clients"],
            st["discover_offer_p99_us"],
            st["request_ack_p99_us"],
            st["flood_discovers"],
            st["flood_offers"]
        );
        out.push(StarvationRun { label, report: Ok(v) });
    }
    Ok(out)
}

/// Starts xdhcpd (UDP path, one worker on CPU 1) serving the relay's subnet, offers held
/// [`STARVE_OFFER_TIMEOUT`], with `extra` flags. `Ok(Err(its message))` when it refuses one of
/// them (exits at once naming it): flags this build does not have yet.
fn start_behind_relay(
    pair: &Pair,
    dir: &Scratch,
    bins: &Bins,
    extra: &[&str],
) -> Result<std::result::Result<Process, String>> {
    let cfg = dir.path("xdhcpd-relay.toml");
    std::fs::write(
        &cfg,
        format!(
            "server_id = \"198.18.0.1\"\n[server]\ninterfaces = [\"s0\"]\nworkers = 1\nbackend = \"udp\"\n\n\
             [[subnet]]\nsubnet = \"198.18.0.0/24\"\ninterface = \"s0\"\npools = [\"198.18.0.100-198.18.0.110\"]\n\n\
             [[subnet]]\nsubnet = \"{STARVE_SUBNET}\"\npools = [\"{STARVE_POOL}\"]\n"
        ),
    )?;
    let cfg = cfg.display().to_string();
    let xdhcpd = bins.xdhcpd.to_str().context("path")?;
    let mut args = vec!["taskset", "-c", "1", xdhcpd, "serve", "--config", &cfg];
    args.extend(["--offer-timeout", STARVE_OFFER_TIMEOUT, "--lease-time", "3600"]);
    args.extend_from_slice(extra);
    println!("    ip netns exec {} {}", pair.server.name, args.join(" "));
    let log = dir.path("xdhcpd.log");
    let mut server = Process::start(&pair.server, "xdhcpd", &args, &log);
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("xdhcpd: serving") {
            return Ok(Ok(server));
        }
        if let Some(status) = server.child.try_wait()? {
            if extra.iter().any(|f| f.starts_with("--") && text.contains(f)) {
                let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or_default();
                return Ok(Err(first.trim().to_string()));
            }
            bail!("xdhcpd exited ({status}):\n{text}");
        }
        if Instant::now() > end {
            bail!("xdhcpd did not start:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A folder name for a responder: lowercase words joined by dashes.
fn slug(name: &str) -> String {
    let words: Vec<String> = name
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.to_ascii_lowercase())
        .collect();
    words.join("-")
}

/// User and system CPU seconds of a process so far (all its threads).
pub(crate) fn cpu_secs(p: &Process) -> f64 {
    pid_cpu_secs(p.child.id())
}

/// User and system CPU seconds of process (or thread) `pid` so far.
pub(crate) fn pid_cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command's closing parenthesis: utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest.split_whitespace().skip(11).take(2).filter_map(|x| x.parse().ok()).collect();
    f.iter().sum::<f64>() / USER_HZ
}

/// Clock ticks per second in `/proc/PID/stat` (fixed at 100 for user space on Linux).
const USER_HZ: f64 = 100.0;

/// Runs `args` in `ns` under a shell that reports what they cost: their output, and the user
/// and system CPU seconds they used (the shell's `times`, its last line of output).
pub(crate) fn exec_timed(ns: &xdhcpd_tests::Netns, args: &[&str]) -> (std::process::Output, f64) {
    let mut all = vec!["sh", "-c", "\"$@\"; s=$?; times; exit $s", "sh"];
    all.extend(args);
    let out = ns.exec(&all);
    let text = String::from_utf8_lossy(&out.stdout);
    // `times`: the shell's user and system time, then its children's: "0m1.23s 0m0.45s".
    let children = text.lines().last().unwrap_or("");
    let secs = children.split_whitespace().filter_map(minutes_seconds).sum();
    (out, secs)
}

/// "1m2.5s" as seconds.
fn minutes_seconds(t: &str) -> Option<f64> {
    let (m, s) = t.strip_suffix('s')?.split_once('m')?;
    Some(m.parse::<f64>().ok()? * 60.0 + s.parse::<f64>().ok()?)
}
