//! What a generator run reports: the [`Report`] document (written as JSON by `--json`, every
//! field described on its type), the table printed at the end, made from it, and the progress
//! line of each second. Only text is made here: the command line prints it.

use super::flood::FLOOD_CIRCUIT;
use super::gen::{Duplicate, ExchangeKind, RunConfig, RunCounters, RunOutcome, Sample, Scenario};
use super::hist::LatencyHistogram;
use super::transport::TransportStats;
use serde::Serialize;
use std::fmt::Write as _;
use std::net::Ipv4Addr;

/// The JSON document of one run (`--json FILE`). Format version 1.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Always "xdhcp-bench".
    pub tool: &'static str,
    /// Format version of this document.
    pub format: u32,
    pub scenario: Scenario,
    /// "direct" (raw frames from an interface) or "relay" (UDP from relay agents).
    pub mode: &'static str,
    pub interface: Option<String>,
    /// Relay mode: the relay agents' addresses.
    pub relays: Vec<Ipv4Addr>,
    /// Relay mode: the server addressed.
    pub server: Option<Ipv4Addr>,
    /// Distinct clients (`-R`).
    pub clients: u32,
    /// Exchanges asked to start per second; null for unlimited (closed loop).
    pub rate_asked: Option<f64>,
    /// Most requests outstanding at once; null for no limit.
    pub window: Option<u32>,
    pub timeout_ms: u64,
    pub tries: u8,
    /// Seconds during which exchanges were started: the window the rates are computed over.
    pub run_secs: f64,
    /// Seconds until the last outstanding request was answered or lost.
    pub total_secs: f64,
    pub rates: Rates,
    /// Per kind of exchange, those that were sent at all.
    pub exchanges: Vec<Exchange>,
    /// Every count of the run (see [`RunCounters`]), at the end.
    pub counters: RunCounters,
    pub checks: Checks,
    pub outcome: ClientOutcome,
    /// `foreign` only.
    pub foreign: Option<Foreign>,
    /// `starvation` only.
    pub starvation: Option<Starvation>,
    pub transport: TransportStats,
    /// One entry per second of the run.
    pub series: Vec<Sample>,
}

/// Rates over the run window (`run_secs`), per second.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Rates {
    /// Exchanges started (compare with `rate_asked`).
    pub started: f64,
    /// Replies matched to requests: request/reply pairs per second.
    pub replies: f64,
    /// Exchanges completed (ACK, NAK, or a message needing no reply).
    pub completed: f64,
    /// New leases (ACKs to selecting REQUESTs): the figure usually quoted for servers.
    pub leases: f64,
}

/// One kind of request/reply exchange.
#[derive(Debug, Clone, Serialize)]
pub struct Exchange {
    /// "DISCOVER-OFFER", "REQUEST-ACK", "RENEW-ACK", "INFORM-ACK" or "PROBE-OFFER".
    pub name: &'static str,
    /// Requests sent, retransmissions included.
    pub sent: u64,
    /// Replies matched to them (NAKs included). `received + drops == sent` once nothing is
    /// outstanding.
    pub received: u64,
    /// Requests unanswered within the loss timeout.
    pub drops: u64,
    pub naks: u64,
    pub latency_us: Latency,
}

/// Request-to-reply times in microseconds (null when nothing was received), within 0.1 % of
/// the value (HdrHistogram, 3 significant digits); percentiles never understate.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Latency {
    pub min: Option<u32>,
    pub p50: Option<u32>,
    pub p90: Option<u32>,
    pub p99: Option<u32>,
    pub p999: Option<u32>,
    pub max: Option<u32>,
    pub mean: Option<f64>,
}

impl Latency {
    pub fn of(h: &LatencyHistogram) -> Latency {
        Latency {
            min: h.min(),
            p50: h.quantile(0.5),
            p90: h.quantile(0.9),
            p99: h.quantile(0.99),
            p999: h.quantile(0.999),
            max: h.max(),
            mean: h.mean(),
        }
    }
}

/// The correctness checks made on every reply.
#[derive(Debug, Clone, Serialize)]
pub struct Checks {
    /// True when no address was ACKed to two live clients.
    pub no_duplicate_acks: bool,
    pub duplicate_acks: u64,
    /// The first duplicates found.
    pub duplicates: Vec<Duplicate>,
    pub offers_of_leased: u64,
    pub duplicate_offers: u64,
    pub declined_reoffered: u64,
    pub naks: u64,
    /// DISCOVERs that got no offer after every try.
    pub no_offer: u64,
    /// Replies that matched no outstanding request (unknown client, late, wrong type).
    pub unexpected: u64,
    pub malformed: u64,
    pub relay_info_mismatch: u64,
}

/// What became of the clients.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ClientOutcome {
    /// Clients ACKed at least once.
    pub served: u64,
    /// Clients left without a lease after every try: no offer, or NAKed each time
    /// (once-through scenarios).
    pub starved: u64,
    /// Clients that started an exchange and were never ACKed (for the restart avalanche:
    /// leases not recovered, or INIT-REBOOTs never answered).
    pub unserved: u64,
    /// Distinct addresses ACKed.
    pub unique_addresses: u64,
    /// Seconds from the start to the first and to the last ACK.
    pub first_ack_secs: Option<f64>,
    pub last_ack_secs: Option<f64>,
}

/// `foreign`: did the server release the offers its clients turned down?
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Foreign {
    pub share: f64,
    /// Clients that REQUESTed another server's offer after ours.
    pub foreign_clients: u64,
    pub foreign_requests: u64,
    /// Fresh clients that DISCOVERed afterwards.
    pub probes: u64,
    pub probes_offered: u64,
    pub probes_starved: u64,
    /// Estimate, exact when the pool has as many addresses as there are clients:
    /// turned-down offers the server still holds (foreign requests − probes offered).
    pub offers_still_held: u64,
}

/// `starvation`: were the legitimate clients served while one circuit flooded DISCOVERs? Every
/// figure but the `flood_*` ones is of legitimate traffic alone.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Starvation {
    /// Legitimate clients (`-R`), each on its own circuit.
    pub clients: u64,
    /// Those that completed at least one DORA (got an ACK).
    pub served: u64,
    /// Those that started at least one DORA and never got an ACK.
    pub starved: u64,
    /// Those whose turn never came before the run ended (`served + starved + unreached` is
    /// `clients`).
    pub unreached: u64,
    /// `served / clients`.
    pub share_served: f64,
    /// The legitimate clients' request-to-reply times, microseconds (their histograms hold
    /// nothing of the flood's).
    pub discover_offer_p50_us: Option<u32>,
    pub discover_offer_p99_us: Option<u32>,
    pub request_ack_p50_us: Option<u32>,
    pub request_ack_p99_us: Option<u32>,
    /// The legitimate clients' requests unanswered within the loss timeout.
    pub drops: u64,
    /// The flooding circuit's id (option 82.1), relayed through the first relay agent.
    pub flood_circuit: u32,
    /// DISCOVERs per second asked of the flood (0: no flood).
    pub flood_rate_asked: f64,
    pub flood_discovers: u64,
    pub flood_offers: u64,
    /// Flood OFFERs of an address ACKed to a live legitimate client: an error.
    pub flood_offers_of_leased: u64,
    /// Replies to flood identities that were no OFFER to their DISCOVER.
    pub flood_unexpected: u64,
}

impl Starvation {
    fn of(cfg: &RunConfig, o: &RunOutcome) -> Starvation {
        let c = &o.counters;
        let quantile = |k: ExchangeKind, q: f64| {
            o.exchanges.iter().find(|(e, _)| *e == k).and_then(|(_, s)| s.latency.quantile(q))
        };
        let clients = cfg.clients as u64;
        Starvation {
            clients,
            served: o.served,
            starved: o.unserved,
            unreached: o.unreached,
            share_served: if clients > 0 { o.served as f64 / clients as f64 } else { 0.0 },
            discover_offer_p50_us: quantile(ExchangeKind::DiscoverOffer, 0.5),
            discover_offer_p99_us: quantile(ExchangeKind::DiscoverOffer, 0.99),
            request_ack_p50_us: quantile(ExchangeKind::RequestAck, 0.5),
            request_ack_p99_us: quantile(ExchangeKind::RequestAck, 0.99),
            drops: c.drops,
            flood_circuit: FLOOD_CIRCUIT,
            flood_rate_asked: cfg.flood_rate,
            flood_discovers: c.flood_discovers,
            flood_offers: c.flood_offers,
            flood_offers_of_leased: c.flood_offers_of_leased,
            flood_unexpected: c.flood_unexpected,
        }
    }

    /// The table's lines.
    fn lines(&self, s: &mut String) {
        let us = |v: Option<u32>| v.map_or("-".to_string(), |v| v.to_string());
        let _ = writeln!(
            s,
            "starvation: legitimate clients served {} of {} ({:.1}%), starved {}, not reached {}; DISCOVER-OFFER p50/p99 {}/{} µs, REQUEST-ACK p50/p99 {}/{} µs; drops {}",
            self.served,
            self.clients,
            100.0 * self.share_served,
            self.starved,
            self.unreached,
            us(self.discover_offer_p50_us),
            us(self.discover_offer_p99_us),
            us(self.request_ack_p50_us),
            us(self.request_ack_p99_us),
            self.drops
        );
        let _ = writeln!(
            s,
            "flood (circuit {:#x}, asked {:.0}/s): DISCOVERs sent {}, OFFERs received {}; OFFERs of addresses leased to a client {}{}, other replies {}",
            self.flood_circuit,
            self.flood_rate_asked,
            self.flood_discovers,
            self.flood_offers,
            self.flood_offers_of_leased,
            if self.flood_offers_of_leased > 0 { " (ERROR)" } else { "" },
            self.flood_unexpected
        );
    }
}

impl Report {
    pub fn new(cfg: &RunConfig, interface: Option<&str>, o: &RunOutcome, transport: TransportStats) -> Report {
        let per_s = |v: u64| if o.run_secs > 0.0 { v as f64 / o.run_secs } else { 0.0 };
        let r = &o.at_run_end;
        let c = &o.counters;
        Report {
            tool: "xdhcp-bench",
            format: 1,
            scenario: cfg.scenario,
            mode: if cfg.relays.is_empty() { "direct" } else { "relay" },
            interface: interface.map(str::to_string),
            relays: cfg.relays.clone(),
            server: cfg.server,
            clients: cfg.clients,
            rate_asked: cfg.rate,
            window: (cfg.window != u32::MAX).then_some(cfg.window),
            timeout_ms: cfg.timeout.as_millis() as u64,
            tries: cfg.tries,
            run_secs: o.run_secs,
            total_secs: o.total_secs,
            rates: Rates {
                started: per_s(r.initiated),
                replies: per_s(r.received),
                completed: per_s(r.completed),
                leases: per_s(r.leases),
            },
            exchanges: o
                .exchanges
                .iter()
                .filter(|(_, s)| s.sent > 0)
                .map(|(k, s)| Exchange {
                    name: k.name(),
                    sent: s.sent,
                    received: s.received,
                    drops: s.drops,
                    naks: s.naks,
                    latency_us: Latency::of(&s.latency),
                })
                .collect(),
            counters: *c,
            checks: Checks {
                no_duplicate_acks: c.duplicate_acks == 0,
                duplicate_acks: c.duplicate_acks,
                duplicates: o.duplicates.clone(),
                offers_of_leased: c.offers_of_leased,
                duplicate_offers: c.duplicate_offers,
                declined_reoffered: c.declined_reoffered,
                naks: c.naks,
                no_offer: c.no_offer,
                unexpected: c.unexpected(),
                malformed: c.malformed,
                relay_info_mismatch: c.relay_info_mismatch,
            },
            outcome: ClientOutcome {
                served: o.served,
                starved: o.starved,
                unserved: o.unserved,
                unique_addresses: o.unique_addresses,
                first_ack_secs: o.first_ack_secs,
                last_ack_secs: o.last_ack_secs,
            },
            foreign: (cfg.scenario == Scenario::Foreign).then_some(Foreign {
                share: cfg.foreign_share,
                foreign_clients: o.foreign_clients,
                foreign_requests: c.foreign_requests,
                probes: o.probes,
                probes_offered: c.probes_offered,
                probes_starved: c.probes_starved,
                offers_still_held: c.foreign_requests.saturating_sub(c.probes_offered),
            }),
            starvation: (cfg.scenario == Scenario::Starvation).then(|| Starvation::of(cfg, o)),
            transport,
            series: o.series.clone(),
        }
    }

    /// The table printed at the end of a run.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let window = self.window.map_or("no window".to_string(), |w| format!("window {w}"));
        let asked = match self.rate_asked {
            Some(r) => format!("{r:.0}/s, {window}"),
            None => format!("unlimited, {window}"),
        };
        let place = match self.mode {
            "relay" => format!(
                "relay from {} to {}",
                self.relays.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(","),
                self.server.map_or("?".into(), |s| s.to_string())
            ),
            _ => format!("direct on {}", self.interface.as_deref().unwrap_or("?")),
        };
        let _ = writeln!(
            s,
            "xdhcp-bench {}: {place}, {} clients, ran {:.2} s (+{:.2} s to finish)",
            self.scenario_name(),
            self.clients,
            self.run_secs,
            (self.total_secs - self.run_secs).max(0.0)
        );
        let _ = writeln!(
            s,
            "rate: {:.0} exchanges started/s, asked {asked}; {:.0} replies/s; {:.0} completed/s; {:.0} leases/s",
            self.rates.started, self.rates.replies, self.rates.completed, self.rates.leases
        );
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "{:<16} {:>10} {:>10} {:>8} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}  (µs)",
            "exchange", "sent", "received", "drops", "naks", "min", "p50", "p90", "p99", "p99.9", "max"
        );
        let v = |x: Option<u32>| x.map_or("-".to_string(), |v| v.to_string());
        for e in &self.exchanges {
            let l = &e.latency_us;
            let _ = writeln!(
                s,
                "{:<16} {:>10} {:>10} {:>8} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
                e.name,
                e.sent,
                e.received,
                e.drops,
                e.naks,
                v(l.min),
                v(l.p50),
                v(l.p90),
                v(l.p99),
                v(l.p999),
                v(l.max)
            );
        }
        let c = &self.counters;
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "one-way: releases {}, declines {}, REQUESTs naming another server {}, ARP replies {}",
            c.releases, c.declines, c.foreign_requests, c.arp_replies
        );
        let _ = writeln!(
            s,
            "clients: served {}, starved {}, distinct addresses ACKed {}, leases {}{}",
            self.outcome.served,
            self.outcome.starved,
            self.outcome.unique_addresses,
            c.leases,
            self.outcome.last_ack_secs.map_or(String::new(), |t| format!(", last ACK at {t:.2} s"))
        );
        let k = &self.checks;
        let _ = writeln!(
            s,
            "checks: {} duplicate ACKs{}; offers of leased addresses {}, duplicate offers {}, declined re-offered {}; NAKs {}, no offer {}, abandoned {}, retransmissions {}",
            k.duplicate_acks,
            if k.duplicate_acks > 0 { " (ERROR)" } else { "" },
            k.offers_of_leased,
            k.duplicate_offers,
            k.declined_reoffered,
            k.naks,
            k.no_offer,
            c.abandoned,
            c.retransmissions
        );
        let _ = writeln!(
            s,
            "replies not matching a request: {} (unknown client {}, late or repeated {}, wrong type {}); malformed {}{}",
            k.unexpected,
            c.unknown_client,
            c.stale_xid,
            c.wrong_type,
            k.malformed,
            if self.mode == "relay" { format!("; option 82 not echoed {}", k.relay_info_mismatch) } else { String::new() }
        );
        for d in &k.duplicates {
            let _ = writeln!(
                s,
                "  duplicate: {} ACKed to client {} while client {} held it",
                d.address, d.client, d.holder
            );
        }
        if let Some(f) = &self.foreign {
            let _ = writeln!(
                s,
                "foreign: {} of {} clients took another server's offer ({} REQUESTs naming it); {} probe clients: {} offered, {} without offer => turned-down offers still held: {}",
                f.foreign_clients,
                self.clients,
                f.foreign_requests,
                f.probes,
                f.probes_offered,
                f.probes_starved,
                f.offers_still_held
            );
        }
        if let Some(st) = &self.starvation {
            st.lines(&mut s);
        }
        let t = &self.transport;
        let _ = writeln!(
            s,
            "transport: received {}, sent {}, send errors {}, kernel receive drops {}",
            t.rx, t.tx, t.tx_errors, t.rx_kernel_drops
        );
        s
    }

    fn scenario_name(&self) -> &'static str {
        self.scenario.name()
    }
}

/// The progress line of one second of a run (`s`), with the counts so far (`c`).
pub fn progress_line(s: &Sample, c: &RunCounters) -> String {
    let per_s = |v: u64| if s.secs > 0.0 { (v as f64 / s.secs).round() as u64 } else { 0 };
    let us = |v: Option<u32>| v.map_or("-".into(), |v| v.to_string());
    format!(
        "[{:6.1}s] started {:>8}/s  replies {:>8}/s  done {:>8}/s  drops {:>6}/s  out {:>6}  p50 {:>6}  p99 {:>6} µs | leases {} naks {} no-offer {} dup-acks {} unexpected {}",
        s.t,
        per_s(s.initiated),
        per_s(s.received),
        per_s(s.completed),
        per_s(s.drops),
        s.outstanding,
        us(s.p50_us),
        us(s.p99_us),
        c.leases,
        c.naks,
        c.no_offer,
        c.duplicate_acks,
        c.unexpected()
    ) + &flood_progress(c)
}

/// The flood's part of the progress line: its counts so far, when there is a flood.
fn flood_progress(c: &RunCounters) -> String {
    if c.flood_discovers == 0 {
        return String::new();
    }
    format!(" | flood sent {} offered {}", c.flood_discovers, c.flood_offers)
}
