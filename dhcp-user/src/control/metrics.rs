//! The server's counters for operators: the Prometheus text exposition (`GET /metrics`) and
//! the same numbers as JSON (`GET /v1/stats`). Engine counters keep Kea's meanings; their
//! Prometheus names are declared once, in [`FAMILIES`]. Everything is read from what the
//! workers publish (relaxed atomics), the address space's state words, the journal's counters
//! and the XDP program's last read counters: no worker is asked anything.
//!
//! Must never: take a lock a worker takes, or scan a worker's client table.

use super::Hub;
use crate::journal::FSYNC_BUCKETS_US;
use crate::worker::control::WORKER_COUNTERS;
use dhcp_core::engine::{ClusterStats, Stats};
use serde_json::{json, Map, Value};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Kea's name → (Prometheus family, label). Engine counters not listed here are exposed as
/// `xdhcpd_<kea_name>_total`.
const FAMILIES: &[(&str, &str, &str)] = &[
    ("pkt4-discover-received", "pkt4_received_total", "type=\"discover\""),
    ("pkt4-request-received", "pkt4_received_total", "type=\"request\""),
    ("pkt4-decline-received", "pkt4_received_total", "type=\"decline\""),
    ("pkt4-release-received", "pkt4_received_total", "type=\"release\""),
    ("pkt4-inform-received", "pkt4_received_total", "type=\"inform\""),
    ("pkt4-offer-sent", "pkt4_sent_total", "type=\"offer\""),
    ("pkt4-ack-sent", "pkt4_sent_total", "type=\"ack\""),
    ("pkt4-nak-sent", "pkt4_sent_total", "type=\"nak\""),
    ("pkt4-parse-failed", "pkt4_dropped_total", "reason=\"parse_failed\""),
    ("pkt4-receive-drop", "pkt4_dropped_total", "reason=\"receive_drop\""),
    ("pkt4-not-for-us", "pkt4_dropped_total", "reason=\"not_for_us\""),
    ("pkt4-relay-untrusted", "pkt4_dropped_total", "reason=\"relay_untrusted\""),
    ("no-subnet", "pkt4_dropped_total", "reason=\"no_subnet\""),
    ("unknown-client", "pkt4_dropped_total", "reason=\"unknown_client\""),
    ("v4-allocation-fail", "pkt4_dropped_total", "reason=\"allocation_fail\""),
    ("pkt4-decline-ignored", "pkt4_dropped_total", "reason=\"decline_ignored\""),
    ("limit-discover-rate", "limit_hits_total", "reason=\"discover_rate\""),
    ("limit-leases-per-key", "limit_hits_total", "reason=\"leases_per_key\""),
];

/// The engine counters summed over workers, and the workers' own counters summed.
fn totals(hub: &Hub) -> ([u64; Stats::COUNT], [u64; 4]) {
    let (mut e, mut w) = ([0u64; Stats::COUNT], [0u64; 4]);
    for link in &hub.workers {
        for (t, v) in e.iter_mut().zip(link.published.engine()) {
            *t += v;
        }
        for (t, v) in w.iter_mut().zip(link.published.worker()) {
            *t += v;
        }
    }
    (e, w)
}

/// The cluster counters summed over workers, by name; none when the server runs alone.
fn cluster_totals(hub: &Hub) -> Vec<(&'static str, u64)> {
    if hub.current().cluster().is_none() {
        return Vec::new();
    }
    let mut sum = [0u64; ClusterStats::COUNT];
    for link in &hub.workers {
        for (t, v) in sum.iter_mut().zip(link.published.cluster()) {
            *t += v;
        }
    }
    ClusterStats::default().named().iter().zip(sum).map(|((n, _), v)| (*n, v)).collect()
}

/// The cluster thread's own figures (name, Prometheus type, help, value); none when the server
/// runs alone.
fn cluster_thread(hub: &Hub) -> Vec<(&'static str, &'static str, &'static str, f64)> {
    let Some(st) = &hub.cluster else { return Vec::new() };
    let n = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
    let confirmed = st.confirmed_heartbeat_ms.load(Ordering::Relaxed);
    let age = match confirmed {
        0 => -1.0,
        ms => (crate::cluster::unix_ms().saturating_sub(ms)) as f64 / 1e3,
    };
    vec![
        (
            "cluster_connected",
            "gauge",
            "Connected to NATS (1) or not (0)",
            st.connected.load(Ordering::Relaxed) as u8 as f64,
        ),
        (
            "cluster_peers_live",
            "gauge",
            "Nodes seen live, this one included",
            st.live.load(Ordering::Relaxed).count_ones() as f64,
        ),
        ("cluster_heartbeat_age_seconds", "gauge", "Since the last heartbeat NATS confirmed (-1: none yet)", age),
        ("cluster_events_published_total", "counter", "Lease events published", n(&st.published)),
        ("cluster_publish_failed_total", "counter", "Lease events that could not be published", n(&st.publish_failed)),
        ("cluster_events_received_total", "counter", "Peers' lease events received", n(&st.events_received)),
        ("cluster_events_unknown_total", "counter", "Events from nodes not in peers, dropped", n(&st.events_unknown)),
        ("cluster_heartbeats_failed_total", "counter", "Heartbeats NATS did not take", n(&st.heartbeats_failed)),
    ]
}

/// One family's lines, grouped as the exposition format wants: HELP, TYPE, samples.
struct Text(String);

impl Text {
    fn family(&mut self, name: &str, kind: &str, help: &str, samples: &[(String, f64)]) {
        let _ = writeln!(self.0, "# HELP xdhcpd_{name} {help}\n# TYPE xdhcpd_{name} {kind}");
        for (labels, v) in samples {
            let labels = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
            let _ = writeln!(self.0, "xdhcpd_{name}{labels} {v}");
        }
    }
}

/// The Prometheus text exposition of everything.
pub fn prometheus(hub: &Hub) -> String {
    let mut t = Text(String::with_capacity(8192));
    let (engine, worker) = totals(hub);
    engine_families(&mut t, &engine);
    let names = ["acks_withheld", "send_failed", "not_mine", "malformed_frame"];
    let drops: Vec<(String, f64)> =
        names.iter().zip(worker).map(|(n, v)| (format!("reason=\"{n}\""), v as f64)).collect();
    t.family("worker_dropped_total", "counter", "Frames a worker dropped or could not send, by reason", &drops);
    for (name, v) in cluster_totals(hub) {
        let family = format!("{}_total", name.replace('-', "_"));
        t.family(&family, "counter", &format!("Cluster: {name}"), &[(String::new(), v as f64)]);
    }
    for (name, kind, help, v) in cluster_thread(hub) {
        t.family(name, kind, help, &[(String::new(), v)]);
    }
    pools(&mut t, hub);
    workers(&mut t, hub);
    journal(&mut t, hub);
    let xdp: Vec<(String, f64)> =
        super::lock(&hub.xdp).iter().map(|(n, v)| (format!("counter=\"{n}\""), *v as f64)).collect();
    t.family("xdp_packets_total", "counter", "The XDP steering program's counters", &xdp);
    let reloads = [
        ("result=\"ok\"".to_string(), hub.reloads.load(Ordering::Relaxed) as f64),
        ("result=\"refused\"".to_string(), hub.reloads_refused.load(Ordering::Relaxed) as f64),
    ];
    t.family("reloads_total", "counter", "Configuration reloads", &reloads);
    let pause = hub.last_pause_ns.load(Ordering::Relaxed) as f64 / 1e9;
    t.family(
        "reload_pause_seconds",
        "gauge",
        "How long the workers paused in the last reload",
        &[(String::new(), pause)],
    );
    t.0
}

fn engine_families(t: &mut Text, engine: &[u64; Stats::COUNT]) {
    let named = Stats::default().named();
    let value = |kea: &str| named.iter().position(|(n, _)| *n == kea).map_or(0, |i| engine[i]);
    let received = value("pkt4-received");
    let mut families: Vec<(&str, Vec<(String, f64)>)> = Vec::new();
    for (kea, family, label) in FAMILIES {
        match families.iter_mut().find(|(f, _)| f == family) {
            Some((_, s)) => s.push((label.to_string(), value(kea) as f64)),
            None => families.push((family, vec![(label.to_string(), value(kea) as f64)])),
        }
    }
    // Messages of no type counted above (malformed, BOOTP, OFFERs sent to us): the types sum
    // to pkt4-received.
    let typed: u64 = FAMILIES.iter().filter(|(_, f, _)| *f == "pkt4_received_total").map(|(k, _, _)| value(k)).sum();
    families[0].1.push(("type=\"other\"".into(), received.saturating_sub(typed) as f64));
    for (family, samples) in &families {
        t.family(family, "counter", "DHCPv4 messages (Kea's pkt4 statistics)", samples);
    }
    for (i, (kea, _)) in named.iter().enumerate() {
        if *kea != "pkt4-received" && !FAMILIES.iter().any(|(k, _, _)| k == kea) {
            let name = format!("{}_total", kea.replace('-', "_"));
            t.family(&name, "counter", &format!("Kea's {kea}"), &[(String::new(), engine[i] as f64)]);
        }
    }
}

/// A pool's addresses in total, assigned (leased), offered, declined (in probation), reserved
/// and free: two scans of its state words, off the packet path.
fn pool_counts(shared: &dhcp_core::engine::Shared, p: dhcp_core::lease::space::PoolId) -> [(&'static str, usize); 6] {
    let [free, held, declined, reserved] = shared.space().census(p);
    let assigned = shared.space().census_bound(p).min(held);
    [
        ("total", free + held + declined + reserved),
        ("assigned", assigned),
        ("offered", held - assigned),
        ("declined", declined),
        ("reserved", reserved),
        ("free", free),
    ]
}

/// Per subnet and pool: [`pool_counts`].
fn pools(t: &mut Text, hub: &Hub) {
    let shared = hub.current();
    let mut samples = Vec::new();
    for (net, len, pools) in shared.subnet_pools() {
        for &p in pools {
            let (first, last) = shared.space().pool_range(p);
            let labels = |state: &str| format!("subnet=\"{net}/{len}\",pool=\"{first}-{last}\",state=\"{state}\"");
            for (state, n) in pool_counts(&shared, p) {
                samples.push((labels(state), n as f64));
            }
        }
    }
    t.family("pool_addresses", "gauge", "Pool addresses by state (assigned: leased)", &samples);
}

fn workers(t: &mut Text, hub: &Hub) {
    let busy: Vec<(String, f64)> = hub
        .workers
        .iter()
        .enumerate()
        .map(|(w, l)| (format!("worker=\"{w}\""), l.published.busy().as_secs_f64()))
        .collect();
    t.family(
        "worker_busy_seconds_total",
        "counter",
        "Time a worker spent on batches (rate() gives its busy share)",
        &busy,
    );
    let records: Vec<(String, f64)> = hub
        .workers
        .iter()
        .enumerate()
        .map(|(w, l)| (format!("worker=\"{w}\""), l.published.records() as f64))
        .collect();
    t.family("worker_records", "gauge", "Offers, leases and probations a worker holds", &records);
}

fn journal(t: &mut Text, hub: &Hub) {
    let Some(j) = &hub.journal else { return };
    let c = j.counters();
    let one = |v: u64| [(String::new(), v as f64)];
    t.family("journal_appends_total", "counter", "Lease changes written to the journal", &one(c.records_written));
    t.family("journal_writes_total", "counter", "Journal write calls (group commits)", &one(c.writes));
    t.family("journal_fsyncs_total", "counter", "Journal fdatasync calls", &one(c.fsyncs));
    t.family("journal_write_failures_total", "counter", "Failed journal writes or syncs", &one(c.write_failures));
    t.family("journal_queued_records", "gauge", "Lease changes waiting to be written", &one(c.queued_records));
    t.family("journal_failing", "gauge", "1 while journal writes fail (ACKs withheld)", &one(c.failing as u64));
    let (buckets, sum_ns) = j.fsync_histogram();
    let _ = writeln!(
        t.0,
        "# HELP xdhcpd_journal_fsync_seconds Journal fdatasync latency\n# TYPE xdhcpd_journal_fsync_seconds histogram"
    );
    let mut cumulative = 0;
    for (i, n) in buckets.iter().enumerate() {
        cumulative += n;
        let le = FSYNC_BUCKETS_US.get(i).map_or("+Inf".to_string(), |us| format!("{}", *us as f64 / 1e6));
        let _ = writeln!(t.0, "xdhcpd_journal_fsync_seconds_bucket{{le=\"{le}\"}} {cumulative}");
    }
    let _ = writeln!(t.0, "xdhcpd_journal_fsync_seconds_sum {}", sum_ns as f64 / 1e9);
    let _ = writeln!(t.0, "xdhcpd_journal_fsync_seconds_count {cumulative}");
}

/// The same numbers as JSON, under Kea's names.
pub fn json(hub: &Hub) -> Value {
    let (engine, worker) = totals(hub);
    let mut counters = Map::new();
    for ((name, _), v) in Stats::default().named().iter().zip(engine) {
        counters.insert(name.to_string(), json!(v));
    }
    for (name, v) in WORKER_COUNTERS.iter().zip(worker) {
        counters.insert(name.to_string(), json!(v));
    }
    for (name, v) in cluster_totals(hub) {
        counters.insert(name.to_string(), json!(v));
    }
    for (name, _, _, v) in cluster_thread(hub) {
        counters.insert(name.to_string(), json!(v));
    }
    let uptime = hub.started.elapsed().as_secs_f64().max(1e-9);
    let workers: Vec<Value> = hub
        .workers
        .iter()
        .map(|l| json!({ "records": l.published.records(), "busy_share": l.published.busy().as_secs_f64() / uptime }))
        .collect();
    let shared = hub.current();
    let mut pools = Vec::new();
    for (net, len, ids) in shared.subnet_pools() {
        for &p in ids {
            let (first, last) = shared.space().pool_range(p);
            let mut pool = json!({ "subnet": format!("{net}/{len}"), "pool": format!("{first}-{last}") });
            for (state, n) in pool_counts(&shared, p) {
                pool[state] = json!(n);
            }
            pools.push(pool);
        }
    }
    let journal = hub.journal.as_ref().map(|j| {
        let c = j.counters();
        Value::Object(c.named().iter().map(|(n, v)| (n.to_string(), json!(v))).collect())
    });
    let xdp: Map<String, Value> = super::lock(&hub.xdp).iter().map(|(n, v)| (n.to_string(), json!(v))).collect();
    json!({
        "counters": counters, "workers": workers, "pools": pools, "journal": journal, "xdp": xdp,
        "reloads": hub.reloads.load(Ordering::Relaxed), "reloads_refused": hub.reloads_refused.load(Ordering::Relaxed),
        "uptime_seconds": hub.started.elapsed().as_secs(),
    })
}
