//! Part `cluster` (issue 13): in one run, interleaved, DORA/s of three clustered xdhcpd nodes
//! (a three-node NATS JetStream cluster, all on one bridge: one segment) against one node
//! without a cluster on a segment built the same way, both on the UDP path; then, under load,
//! kill -9 of one node: the time from its death to the first and to the last ACK of one of its
//! clients by a survivor, and how many of its clients lost their address. xdhcp-bench sees
//! every node's replies, so an address ACKed to two of its clients is counted across nodes.
//! Every run must find no duplicate and no lost client (else the part fails); speeds are
//! reported, never asserted.

use super::parts::Dora;
use crate::step;
use crate::system::{build, cpu_secs, exec_timed, median, Bins};
use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};
use xdhcpd_tests::nats::{node_args, node_logs, start_nodes, Bridge, NatsCluster, Node, SEGMENT_POOL};
use xdhcpd_tests::{start_xdhcpd, Netns, Process, Scratch};

/// Sizes: clients of the measured DORA runs (below the shared pool's 1024 addresses, with
/// room for the load clients), seconds per run, clients of the load during the failover and
/// their rate (DORA/s).
struct Sizes {
    rounds: usize,
    clients: &'static str,
    seconds: &'static str,
    load_clients: &'static str,
    load_rate: &'static str,
}

const FULL: Sizes = Sizes { rounds: 3, clients: "600", seconds: "5", load_clients: "200", load_rate: "200" };
const QUICK: Sizes = Sizes { rounds: 1, clients: "150", seconds: "2", load_clients: "50", load_rate: "50" };
/// Seconds over which the dead node's clients start their INIT-REBOOTs.
const REBOOT_SPREAD: f64 = 4.0;
/// Outstanding requests of the measured runs (closed loop).
const WINDOW: &str = "64";

/// One DORA run: rate and latencies, the servers' CPU (all nodes, share of one core), the
/// generator's.
#[derive(Debug, Clone, Copy, Default)]
struct Run {
    dora: Dora,
    servers_cpu: f64,
    /// The NATS servers' CPU (all three), for the cluster.
    nats_cpu: f64,
    generator_cpu: f64,
    duplicates: u64,
}

/// One failover: the dead node's clients, seconds from its death to the first and last ACK
/// of one of them by a survivor, the clients that lost their address.
#[derive(Debug, Clone, Copy, Default)]
struct Failover {
    clients: u64,
    first_s: f64,
    last_s: f64,
    lost: u64,
    duplicates: u64,
}

pub(crate) fn run(root: &Path, quick: bool) -> Result<String> {
    let sizes = if quick { QUICK } else { FULL };
    let bins = build(root, !quick)?;
    let (mut clustered, mut single, mut failovers) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=sizes.rounds {
        step(&format!("round {round}: three clustered nodes, then kill -9 of one under load"));
        let (dora, failover) = cluster_round(&bins, &sizes)?;
        eprintln!("    {dora:?}\n    {failover:?}");
        clustered.push(dora);
        failovers.push(failover);
        step(&format!("round {round}: one node without a cluster"));
        let dora = single_round(&bins, &sizes)?;
        eprintln!("    {dora:?}");
        single.push(dora);
    }
    let dups: u64 = clustered.iter().chain(&single).map(|d| d.duplicates).sum::<u64>()
        + failovers.iter().map(|f| f.duplicates).sum::<u64>();
    ensure!(dups == 0, "an address was ACKed to two clients ({dups} duplicates)");
    let lost: u64 = failovers.iter().map(|f| f.lost).sum();
    ensure!(lost == 0, "{lost} clients of the killed node lost their address: {failovers:?}");
    markdown(&sizes, &clustered, &single, &failovers)
}

/// Three nodes on a fresh NATS cluster: a measured DORA run (recording the clients node x0
/// answered), then kill -9 of x0 while new clients arrive, and its clients rebooting.
fn cluster_round(bins: &Bins, sizes: &Sizes) -> Result<(Run, Failover)> {
    let nats = NatsCluster::start("clb", 3);
    let dir = Scratch::new("clb");
    let mut nodes = start_nodes(&nats, &dir, path(&bins.xdhcpd)?, None);
    let (bench_ns, _) = nats.attach_client("bench");
    let (load_ns, _) = nats.attach_client("load");
    for ns in [&bench_ns, &load_ns] {
        ns.ip(&["addr", "flush", "dev", "e0"]);
    }
    let leases = dir.path("x0.leases").display().to_string();
    let procs: Vec<&Process> = nodes.iter().filter_map(|n| n.process.as_ref()).collect();
    let args = ["--leases-out", &leases, "--leases-of", &nodes[0].id];
    let nats_procs: Vec<&Process> = nats.nodes.iter().filter_map(|n| n.process.as_ref()).collect();
    let dora = measure(&bench_ns, &dir, bins, sizes, [&procs, &nats_procs], &args)?;
    let failover = failover(&bench_ns, &load_ns, &dir, bins, sizes, &mut nodes, &leases);
    failover.with_context(|| node_logs(&nodes)).map(|f| (dora, f))
}

/// Kills node 0 under load from `load_ns` and reboots its clients (`leases`) from `bench_ns`.
fn failover(
    bench_ns: &Netns,
    load_ns: &Netns,
    dir: &Scratch,
    bins: &Bins,
    sizes: &Sizes,
    nodes: &mut [Node],
    leases: &str,
) -> Result<Failover> {
    let clients = std::fs::read_to_string(leases).context("x0's leases")?.lines().count() as u64;
    ensure!(clients > 0, "node x0 answered none of the generator's clients");
    let load_secs = "20";
    let load = ["--first-client", "1000000", "-R", sizes.load_clients, "-r", sizes.load_rate, "-p", load_secs];
    std::thread::scope(|s| {
        let load = s.spawn(|| generate(load_ns, dir, bins, "load", &load));
        // The load runs before the kill and on long after the last reboot.
        std::thread::sleep(Duration::from_secs(2));
        let mut x0 = nodes[0].process.take().context("x0 runs")?;
        x0.signal(libc::SIGKILL);
        let _ = x0.child.wait();
        let died = Instant::now();
        // Their INIT-REBOOTs start spread over REBOOT_SPREAD (each then retransmitting
        // after 1 s, 2 s, 4 s ... as clients do), so that one goes out soon after any moment:
        // the first ACK's time has a resolution of REBOOT_SPREAD / clients, not the back-off's.
        let rate = format!("{:.1}", clients as f64 / REBOOT_SPREAD);
        let reboot = ["--scenario", "avalanche", "--leases-in", leases, "-r", &rate];
        let started = generate_from(bench_ns, dir, bins, "reboot", &reboot, died);
        let (load, _) = load.join().map_err(|_| anyhow::anyhow!("the load thread panicked"))??;
        let ((v, _), offset) = started?;
        let at = |k: &str| v["outcome"][k].as_f64().map_or(f64::NAN, |t| t + offset);
        let count = |v: &Value, a: &str, b: &str| v[a][b].as_u64().unwrap_or(0);
        Ok(Failover {
            clients,
            first_s: at("first_ack_secs"),
            last_s: at("last_ack_secs"),
            lost: count(&v, "checks", "naks")
                + count(&v, "counters", "reboot_moved")
                + count(&v, "outcome", "unserved"),
            duplicates: count(&v, "checks", "duplicate_acks") + count(&load, "checks", "duplicate_acks"),
        })
    })
}

/// One node without a cluster, on a segment of its own built like the cluster's.
fn single_round(bins: &Bins, sizes: &Sizes) -> Result<Run> {
    let segment = Bridge::new("cls");
    let dir = Scratch::new("cls");
    let name = segment.hub.name.trim_end_matches("-hub");
    let (node_ns, bench_ns) = (Netns::new(format!("{name}-x")), Netns::new(format!("{name}-bench")));
    segment.attach(&node_ns, "e0", "100.64.1.1/16");
    segment.attach(&bench_ns, "e0", "100.64.1.2/16");
    bench_ns.ip(&["addr", "flush", "dev", "e0"]);
    let args = node_args("e0", SEGMENT_POOL.0, SEGMENT_POOL.1, "100.64.1.1");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut node = start_xdhcpd(&node_ns, path(&bins.xdhcpd)?, &args, &dir.path("x.log"));
    let dora = measure(&bench_ns, &dir, bins, sizes, [&[&node], &[]], &[]);
    node.stop();
    dora
}

/// A closed-loop DORA run of `sizes.clients` clients from `ns`, with `extra` arguments; the
/// CPU the xdhcpd and NATS servers (`[xdhcpd, nats]`) used meanwhile.
fn measure(
    ns: &Netns,
    dir: &Scratch,
    bins: &Bins,
    sizes: &Sizes,
    [servers, nats]: [&[&Process]; 2],
    extra: &[&str],
) -> Result<Run> {
    let secs = |ps: &[&Process]| ps.iter().map(|p| cpu_secs(p)).sum::<f64>();
    let (before, nats_before, started) = (secs(servers), secs(nats), Instant::now());
    let mut args = vec!["-R", sizes.clients, "-W", WINDOW, "-p", sizes.seconds];
    args.extend(extra);
    let (v, generator_secs) = generate(ns, dir, bins, "dora", &args)?;
    let (cpu, nats_cpu) = (secs(servers) - before, secs(nats) - nats_before);
    let wall = started.elapsed().as_secs_f64();
    Ok(Run {
        dora: Dora::of(&v),
        servers_cpu: cpu / wall,
        nats_cpu: nats_cpu / wall,
        generator_cpu: generator_secs / wall,
        duplicates: v["checks"]["duplicate_acks"].as_u64().context("no duplicate count")?,
    })
}

/// xdhcp-bench on `e0` of `ns` with `args`: its report and the CPU seconds it used.
fn generate(ns: &Netns, dir: &Scratch, bins: &Bins, name: &str, args: &[&str]) -> Result<(Value, f64)> {
    let json = dir.path(&format!("{name}.json"));
    let _ = std::fs::remove_file(&json);
    let j = json.display().to_string();
    let mut all = vec![path(&bins.bench)?, "-i", "e0", "-q", "--json", &j];
    all.extend(args);
    let (out, secs) = exec_timed(ns, &all);
    // Exit status 3: duplicates seen, which the report counts and the part refuses.
    if !out.status.success() && out.status.code() != Some(3) {
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        bail!("xdhcp-bench {name} failed: {text}");
    }
    let text = std::fs::read_to_string(&json).with_context(|| format!("xdhcp-bench {name}'s report"))?;
    Ok((serde_json::from_str(&text)?, secs))
}

/// [`generate`], also returning the seconds from `since` to its start (its report's times
/// count from its own start, a few milliseconds later: what it adds is an underestimate).
fn generate_from(
    ns: &Netns,
    dir: &Scratch,
    bins: &Bins,
    name: &str,
    args: &[&str],
    since: Instant,
) -> Result<((Value, f64), f64)> {
    let offset = since.elapsed().as_secs_f64();
    Ok((generate(ns, dir, bins, name, args)?, offset))
}

fn path(p: &Path) -> Result<&str> {
    p.to_str().context("a binary's path is not UTF-8")
}

fn markdown(sizes: &Sizes, clustered: &[Run], single: &[Run], failovers: &[Failover]) -> Result<String> {
    let m = |runs: &[Run], f: fn(&Run) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
    let fm = |f: fn(&Failover) -> f64| median(&failovers.iter().map(f).collect::<Vec<_>>());
    let each = |runs: &[Run]| runs.iter().map(|d| format!("{:.0}", d.dora.per_s)).collect::<Vec<_>>().join(", ");
    let mut md = String::new();
    writeln!(md, "## Three clustered nodes\n")?;
    writeln!(
        md,
        "Three xdhcpd nodes (UDP path, one worker each) sharing one pool through a three-node NATS \
         JetStream cluster, every process in a namespace of its own on one bridge, against one \
         xdhcpd node without a cluster on a bridge built the same way. xdhcp-bench (`dora`, {} \
         clients, {WINDOW} outstanding, {} s per run) on the same segment sees every node's \
         replies and counts an address ACKed to two clients across nodes. {} rounds, each a fresh \
         NATS cluster and nodes, then the lone node; medians. CPU: user and system time over the \
         run's wall time (one core = 100%), all nodes together; the machine has 2 cores and was \
         shared with other builds and benchmark runs while this ran, so rates are noisy, the ratio less so.\n",
        sizes.clients, sizes.seconds, sizes.rounds
    )?;
    writeln!(md, "| servers | DORA/s | each run | OFFER p50 / p99 | ACK p50 / p99 | xdhcpd CPU | NATS CPU | generator CPU | drops | duplicate ACKs |")?;
    writeln!(md, "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")?;
    for (name, runs) in [("three nodes, cluster", clustered), ("one node, no cluster", single)] {
        writeln!(
            md,
            "| {name} | {:.0} | {} | {:.0} / {:.0} µs | {:.0} / {:.0} µs | {:.0}% | {:.0}% | {:.0}% | {} | {} |",
            m(runs, |d| d.dora.per_s),
            each(runs),
            m(runs, |d| d.dora.offer.0),
            m(runs, |d| d.dora.offer.1),
            m(runs, |d| d.dora.ack.0),
            m(runs, |d| d.dora.ack.1),
            100.0 * m(runs, |d| d.servers_cpu),
            100.0 * m(runs, |d| d.nats_cpu),
            100.0 * m(runs, |d| d.generator_cpu),
            runs.iter().map(|d| d.dora.drops).sum::<u64>(),
            runs.iter().map(|d| d.duplicates).sum::<u64>()
        )?;
    }
    writeln!(
        md,
        "\nThree nodes against one: **{:.2}×** (median of the rounds' own ratios).\n",
        crate::system::median_ratio(clustered, single, |c| c.dora.per_s, |s| s.dora.per_s)
    )?;
    for (name, runs) in [("Three nodes", clustered), ("One node", single)] {
        let (gen, srv) = (m(runs, |d| d.generator_cpu), m(runs, |d| d.servers_cpu + d.nats_cpu));
        let per_dora = m(runs, |d| 1e6 * (d.servers_cpu + d.nats_cpu) / d.dora.per_s);
        writeln!(
            md,
            "{name}: the limit is {} (generator {:.0}% of a core, servers {:.0}% with NATS, of 2 \
             cores; the servers' CPU per DORA {per_dora:.0} µs).\n",
            limit(gen, srv),
            100.0 * gen,
            100.0 * srv
        )?;
    }
    writeln!(
        md,
        "Failover: node x0 killed (kill -9) while {} new clients arrive at {} DORA/s; x0's \
         clients (those it answered in the run above) then INIT-REBOOT. Times from its \
         death (to xdhcp-bench's start, plus its own times), medians of {} rounds (each: {}). \
         The clients start their INIT-REBOOTs from the death on, spread over {REBOOT_SPREAD} s \
         (so one goes out soon after any moment), each retransmitting after 1, 2, 4 ... s: \
         the last ACK includes that back-off.\n",
        sizes.load_clients,
        sizes.load_rate,
        sizes.rounds,
        failovers.iter().map(|f| format!("{:.2} s to {:.2} s", f.first_s, f.last_s)).collect::<Vec<_>>().join("; ")
    )?;
    writeln!(md, "| x0's clients | death to first ACK by a survivor | to the last | clients that lost their address | duplicate ACKs |")?;
    writeln!(md, "|---:|---:|---:|---:|---:|")?;
    writeln!(
        md,
        "| {:.0} | {:.2} s | {:.2} s | {} | {} |",
        fm(|f| f.clients as f64),
        fm(|f| f.first_s),
        fm(|f| f.last_s),
        failovers.iter().map(|f| f.lost).sum::<u64>(),
        failovers.iter().map(|f| f.duplicates).sum::<u64>()
    )?;
    writeln!(
        md,
        "\nLost: NAKed, ACKed another address, or never ACKed (goal 0). xdhcp-bench sends `secs` \
         0, so the survivors answer a dead node's client once its heartbeat is older than \
         `dead_after_ms` (default 3000): the first time is that detection.\n"
    )?;
    Ok(md)
}

/// Which side limits a run, from the generator's and the servers' CPU (shares of one core).
fn limit(generator: f64, servers: f64) -> &'static str {
    match (generator >= 0.8, servers >= 0.8) {
        (true, true) => "both: generator and servers near a core each, the machine's two",
        (true, false) => "the generator's CPU",
        (false, true) => "the servers' CPU",
        (false, false) => "neither CPU alone: the servers' latency (waits, the window)",
    }
}
