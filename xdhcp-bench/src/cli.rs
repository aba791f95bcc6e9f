//! The `xdhcp-bench` command line: the generator (the default command) and `reflector`, and
//! what running each from the command line takes (transport, CPU pinning, signals, output).

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use dhcp_io::sys::pin_to_cpu;
use std::io::IsTerminal;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use xdhcp_bench::flood::FLOOD_CIRCUIT;
use xdhcp_bench::gen::{self, RunConfig, RunCounters, Sample, Scenario};
use xdhcp_bench::packet::{PacketSocket, Role, Rx};
use xdhcp_bench::reflector::{self, ReflectorConfig, ReflectorStats};
use xdhcp_bench::relay::RelaySocket;
use xdhcp_bench::report::{self, Report};
use xdhcp_bench::transport::Transport;

/// xdhcp-bench: a DHCPv4 load generator emulating many clients, directly on an interface or
/// through relay agents, with correctness checks on every reply.
#[derive(Debug, Parser)]
#[command(name = "xdhcp-bench", version, args_conflicts_with_subcommands = true)]
pub(crate) struct BenchCli {
    #[command(subcommand)]
    pub(crate) command: Option<BenchCommand>,
    #[command(flatten)]
    pub(crate) run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub(crate) enum BenchCommand {
    /// Answer every DISCOVER/REQUEST/INFORM frame on an interface with a canned OFFER/ACK,
    /// keeping no state: the I/O ceiling for the generator's traffic.
    Reflector(ReflectorArgs),
}

/// The generator's options.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct RunArgs {
    /// Direct mode: the interface the emulated clients are on (raw frames, AF_PACKET). In relay
    /// mode, optional: the relay socket is bound to it.
    #[arg(short = 'i', long, value_name = "IF")]
    pub(crate) interface: Option<String>,
    /// Relay mode: relay agent addresses (local addresses; each becomes a giaddr). Clients are
    /// spread over them.
    #[arg(long = "relay", value_name = "IP[,IP...]", value_delimiter = ',')]
    pub(crate) relays: Vec<Ipv4Addr>,
    /// Relay mode: the server's address (requests go to its port 67).
    #[arg(short = 's', long, value_name = "IP")]
    pub(crate) server: Option<Ipv4Addr>,
    /// What the clients do.
    #[arg(long, value_enum, default_value = "dora")]
    pub(crate) scenario: Scenario,
    /// Distinct clients (default 1000; with --leases-in, as many as reach from the first to
    /// the last client of the file).
    #[arg(short = 'R', long = "clients", value_name = "N")]
    pub(crate) clients: Option<u32>,
    /// Number of the first client (MAC 02:00:<32-bit number>): disjoint ranges let several
    /// generators share a segment (default 0; with --leases-in, the file's lowest).
    #[arg(long, value_name = "N")]
    pub(crate) first_client: Option<u32>,
    /// Clients start bound to these leases (lines `MAC ADDRESS`, as --leases-out writes): an
    /// ACK of one of these addresses to another client is a duplicate; `avalanche` sends each
    /// of these clients' INIT-REBOOT at once.
    #[arg(long, value_name = "FILE")]
    pub(crate) leases_in: Option<PathBuf>,
    /// At the end, write the last address ACKed to each client that still holds one (given
    /// by --leases-in or ACKed during the run), one `MAC ADDRESS` a line.
    #[arg(long, value_name = "FILE")]
    pub(crate) leases_out: Option<PathBuf>,
    /// With --leases-out: only the clients last answered by this server (its server id), as
    /// when several servers share the segment.
    #[arg(long, value_name = "IP", requires = "leases_out")]
    pub(crate) leases_of: Option<Ipv4Addr>,
    /// Exchanges started per second. Without it: as fast as the server answers, with at most
    /// --window requests outstanding (closed loop).
    #[arg(short = 'r', long, value_name = "N")]
    pub(crate) rate: Option<f64>,
    /// Most requests outstanding at once (default 256 without --rate, unlimited with it).
    #[arg(short = 'W', long, value_name = "N")]
    pub(crate) window: Option<u32>,
    /// Seconds to start exchanges for (default 10 for dora/renew/release/decline/inform; a cap
    /// for the once-through scenarios).
    #[arg(short = 'p', long, value_name = "SECS")]
    pub(crate) duration: Option<f64>,
    /// Exchanges to start, then stop (repeating scenarios).
    #[arg(short = 'n', long, value_name = "N")]
    pub(crate) exchanges: Option<u64>,
    /// Loss timeout in milliseconds: an unanswered request counts as a drop and is sent again.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub(crate) timeout: u64,
    /// Transmissions of a request before the client gives up, 1 to 15 (default 3; avalanche 6).
    /// In once-through scenarios also how often a NAKed client starts over.
    #[arg(long, value_name = "N")]
    pub(crate) tries: Option<u8>,
    /// Set the broadcast flag: ask for broadcast replies.
    #[arg(long)]
    pub(crate) broadcast: bool,
    /// foreign: share of clients that take another server's offer.
    #[arg(long, value_name = "F", default_value_t = 0.5)]
    pub(crate) foreign_share: f64,
    /// foreign: the other server's id in their REQUESTs (default: the server's id + 1).
    #[arg(long, value_name = "IP")]
    pub(crate) foreign_server_id: Option<Ipv4Addr>,
    /// foreign: fresh clients that DISCOVER afterwards (default: as many as went elsewhere).
    #[arg(long, value_name = "N")]
    pub(crate) probes: Option<u32>,
    /// starvation: DISCOVERs per second from the flooding circuit (circuit id 0xffffffff, behind
    /// the first --relay), each from a new hardware address; 0 for no flood (the baseline).
    #[arg(long, value_name = "N", default_value_t = gen::DEFAULT_FLOOD_RATE)]
    pub(crate) flood_rate: f64,
    /// Write the report as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub(crate) json: Option<PathBuf>,
    /// Write SVG plots (rate.svg, latency.svg, latency-time.svg) into DIR.
    #[arg(long, value_name = "DIR")]
    pub(crate) plots: Option<PathBuf>,
    /// Direct mode: how frames are received (ring: PACKET_MMAP; copy: recvmmsg).
    #[arg(long, value_enum, default_value = "ring")]
    pub(crate) rx: Rx,
    /// Pin the generator to this CPU.
    #[arg(long, value_name = "N")]
    pub(crate) cpu: Option<usize>,
    /// Spin instead of sleeping when there is nothing to do (lowest latency, a whole core).
    #[arg(long)]
    pub(crate) busy_poll: bool,
    /// Direct mode through AF_XDP (the steering program takes the replies to port 68 into an
    /// AF_XDP socket) instead of AF_PACKET. Clients do not answer ARP on this transport.
    #[arg(long)]
    pub(crate) xdp: bool,
    /// No progress line.
    #[arg(short = 'q', long)]
    pub(crate) quiet: bool,
}

/// The reflector's options.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ReflectorArgs {
    /// The interface to answer on.
    #[arg(short = 'i', long, value_name = "IF")]
    pub(crate) interface: String,
    /// Server identifier and source address of the replies.
    #[arg(long, value_name = "IP", default_value = "198.18.0.1")]
    pub(crate) server_id: Ipv4Addr,
    /// First address offered (client n gets pool + n mod pool-size).
    #[arg(long, value_name = "IP", default_value = "100.64.0.0")]
    pub(crate) pool: Ipv4Addr,
    /// Addresses in the pool.
    #[arg(long, value_name = "N", default_value_t = 1 << 22)]
    pub(crate) pool_size: u32,
    /// Lease time in the replies, seconds.
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    pub(crate) lease_time: u32,
    /// Stop after SECS (default: on SIGINT/SIGTERM).
    #[arg(short = 'p', long, value_name = "SECS")]
    pub(crate) duration: Option<f64>,
    /// How frames are received (copy: recvmmsg, replies written in the receive buffers; ring:
    /// PACKET_MMAP, replies written in the ring slots). On veth, where the sender's CPU runs
    /// the receiver's kernel path, a ring moves the reflector's receive copy onto the
    /// generator's CPU: hence copy by default.
    #[arg(long, value_enum, default_value = "copy")]
    pub(crate) rx: Rx,
    /// Pin the reflector to this CPU.
    #[arg(long, value_name = "N")]
    pub(crate) cpu: Option<usize>,
    /// Spin instead of sleeping when there is nothing to do.
    #[arg(long)]
    pub(crate) busy_poll: bool,
    /// Answer through AF_XDP (the steering program and one AF_XDP socket) instead of
    /// `AF_PACKET`: the ceiling of the kernel-bypass path.
    #[arg(long)]
    pub(crate) xdp: bool,
    /// With --xdp: renewals answered in the XDP program itself with XDP_TX (addresses
    /// swapped, a canned ACK), the rest through AF_XDP: the ceiling of answering in the kernel.
    #[arg(long, requires = "xdp")]
    pub(crate) xdp_tx: bool,
    /// No progress line.
    #[arg(short = 'q', long)]
    pub(crate) quiet: bool,
}

impl RunArgs {
    /// The generator configuration these options describe, checked.
    pub(crate) fn config(&self) -> Result<RunConfig> {
        if self.relays.is_empty() && self.interface.is_none() {
            bail!("direct mode needs --interface; relay mode needs --relay and --server");
        }
        if !self.relays.is_empty() && self.server.is_none() {
            bail!("relay mode needs --server: the address to unicast relayed requests to");
        }
        let leases_in = match &self.leases_in {
            Some(p) => xdhcp_bench::leases::read(p)?,
            None => Vec::new(),
        };
        let low = leases_in.iter().map(|l| l.0).min();
        let first_client = self.first_client.or(low).unwrap_or(0);
        let high = leases_in.iter().map(|l| l.0).max().filter(|&h| h >= first_client);
        let clients = self.clients.or(high.map(|h| h - first_client + 1)).unwrap_or(1000);
        if clients == 0 {
            bail!("--clients must be at least 1");
        }
        if !(0.0..=1.0).contains(&self.foreign_share) {
            bail!("--foreign-share is a share between 0 and 1");
        }
        if let Some(r) = self.rate {
            if !(r > 0.0 && r.is_finite()) {
                bail!("--rate must be positive");
            }
        }
        self.check_starvation()?;
        let window = self.window.unwrap_or(match (self.rate, self.scenario) {
            (_, Scenario::Avalanche) => u32::MAX,
            (Some(_), _) => u32::MAX,
            (None, _) => 256,
        });
        let duration = match (self.duration, self.exchanges, self.scenario.once()) {
            (Some(d), _, _) if !(d > 0.0 && d.is_finite()) => bail!("--duration must be positive"),
            (Some(d), _, _) => Some(Duration::from_secs_f64(d)),
            (None, None, false) => Some(Duration::from_secs(10)),
            _ => None,
        };
        Ok(RunConfig {
            scenario: self.scenario,
            clients,
            first_client,
            rate: self.rate,
            window: window.max(1),
            duration,
            exchanges: self.exchanges,
            timeout: Duration::from_millis(self.timeout.max(1)),
            tries: self.tries.unwrap_or(gen::default_tries(self.scenario)).clamp(1, 15),
            broadcast: self.broadcast,
            relays: self.relays.clone(),
            server: self.server,
            foreign_share: self.foreign_share,
            foreign_server_id: self.foreign_server_id,
            probes: self.probes,
            flood_rate: self.flood_rate,
            busy_poll: self.busy_poll,
            leases_in,
            record_leases: self.leases_out.is_some(),
            leases_of: self.leases_of,
        })
    }

    /// `starvation` needs relay mode (circuit ids come from the relay) and circuit ids of its
    /// own: the clients' numbers must stay below the flooding circuit's.
    fn check_starvation(&self) -> Result<()> {
        if self.scenario != Scenario::Starvation {
            return Ok(());
        }
        if self.relays.is_empty() {
            bail!(
                "--scenario starvation runs in relay mode (circuit ids come from the relay): give --relay and --server"
            );
        }
        if !(self.flood_rate >= 0.0 && self.flood_rate.is_finite()) {
            bail!("--flood-rate must be 0 (no flood) or positive");
        }
        if self.first_client.unwrap_or(0) as u64 + self.clients.unwrap_or(1000) as u64 > FLOOD_CIRCUIT as u64 {
            bail!("--first-client + --clients must stay below the flooding circuit's id {FLOOD_CIRCUIT:#x}");
        }
        Ok(())
    }
}

fn stop_flag() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    Ok(stop)
}

/// Exit status when the run found an address ACKed to two live clients.
pub(crate) const EXIT_DUPLICATES: u8 = 3;

/// Runs the generator as the command line asks: prints the table on stdout, writes the JSON
/// and plots. Exit status 0, or [`EXIT_DUPLICATES`] when duplicate ACKs were seen.
pub(crate) fn generate(args: &RunArgs) -> Result<ExitCode> {
    let cfg = args.config()?;
    if let Some(cpu) = args.cpu {
        pin_to_cpu(cpu)?;
    }
    let stop = stop_flag()?;
    let ifname = args.interface.as_deref().unwrap_or_default();
    let opening = || format!("opening {ifname}");
    let mut line = ProgressLine::new(args.quiet);
    let mut progress = |s: &Sample, c: &RunCounters| line.show(&report::progress_line(s, c));
    let (outcome, tstats) = if !cfg.relays.is_empty() {
        let mut t = RelaySocket::open(args.interface.as_deref()).context("opening the relay socket")?;
        (gen::run(&cfg, &mut t, &stop, &mut progress)?, t.stats())
    } else if args.xdp {
        let mut t = xdhcp_bench::xsk::XskTransport::open(ifname, Role::Client).with_context(opening)?;
        (gen::run(&cfg, &mut t, &stop, &mut progress)?, t.stats())
    } else {
        let mut t = PacketSocket::open(ifname, Role::Client, args.rx).with_context(opening)?;
        (gen::run(&cfg, &mut t, &stop, &mut progress)?, t.stats())
    };
    line.finish();
    let report = Report::new(&cfg, args.interface.as_deref(), &outcome, tstats);
    print!("{}", report.table());
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report).context("encoding the report")?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.leases_out {
        xdhcp_bench::leases::write(path, &outcome.leases)?;
    }
    if let Some(dir) = &args.plots {
        let title = format!("xdhcp-bench {}", cfg.scenario.name());
        xdhcp_bench::svg::write_plots(dir, &title, &outcome)
            .with_context(|| format!("writing plots to {}", dir.display()))?;
    }
    Ok(if outcome.counters.duplicate_acks > 0 { ExitCode::from(EXIT_DUPLICATES) } else { ExitCode::SUCCESS })
}

/// Runs the reflector as the command line asks; prints its counts at the end.
pub(crate) fn reflect(args: &ReflectorArgs) -> Result<ExitCode> {
    if let Some(cpu) = args.cpu {
        pin_to_cpu(cpu)?;
    }
    let stop = stop_flag()?;
    let cfg = ReflectorConfig {
        server_id: args.server_id,
        pool: args.pool,
        pool_size: args.pool_size.max(1),
        lease_time: args.lease_time,
    };
    let duration = match args.duration {
        Some(d) if d > 0.0 && d.is_finite() => Some(Duration::from_secs_f64(d)),
        Some(_) => bail!("--duration must be positive"),
        None => None,
    };
    let opening = || format!("opening {}", args.interface);
    let mut line = ProgressLine { quiet: args.quiet, tty: false };
    let mut last = ReflectorStats::default();
    let mut progress = |el: Duration, st: &ReflectorStats| {
        let (received, answered) = (st.received - last.received, st.answered - last.answered);
        line.show(&format!(
            "[{:6.1}s] reflector: received {received:>8}/s  answered {answered:>8}/s",
            el.as_secs_f64()
        ));
        last = *st;
    };
    let (st, ts) = if args.xdp {
        let mut t = xdhcp_bench::xsk::XskTransport::open(&args.interface, Role::Server).with_context(opening)?;
        if args.xdp_tx {
            t.reflect_renewals().context("the XDP_TX reflector")?;
        }
        let mut st = reflector::run(&mut t, &cfg, &stop, duration, args.busy_poll, &mut progress)?;
        st.reflected = t.reflected();
        (st, t.stats())
    } else {
        let mut t = PacketSocket::open(&args.interface, Role::Server, args.rx).with_context(opening)?;
        let st = reflector::run(&mut t, &cfg, &stop, duration, args.busy_poll, &mut progress)?;
        (st, t.stats())
    };
    println!(
        "reflector on {}: received {}, answered {}, answered in the XDP program {} in {:.2} s ({:.0}/s); send errors {}, kernel receive drops {}",
        args.interface,
        st.received,
        st.answered,
        st.reflected,
        st.secs,
        if st.secs > 0.0 { (st.answered + st.reflected) as f64 / st.secs } else { 0.0 },
        ts.tx_errors,
        ts.rx_kernel_drops
    );
    Ok(ExitCode::SUCCESS)
}

/// A progress line a second on stderr: rewritten in place on a terminal (`tty`), one line
/// after another elsewhere; nothing when `quiet`.
struct ProgressLine {
    quiet: bool,
    tty: bool,
}

impl ProgressLine {
    fn new(quiet: bool) -> ProgressLine {
        ProgressLine { quiet, tty: std::io::stderr().is_terminal() }
    }

    fn show(&mut self, line: &str) {
        match (self.quiet, self.tty) {
            (true, _) => {}
            (false, true) => eprint!("\r\x1b[2K{line}"),
            (false, false) => eprintln!("{line}"),
        }
    }

    /// Ends a line rewritten in place, so what follows starts on a line of its own.
    fn finish(&self) {
        if !self.quiet && self.tty {
            eprintln!();
        }
    }
}

/// The whole binary.
pub(crate) fn main() -> ExitCode {
    let cli = BenchCli::parse();
    let r = match &cli.command {
        Some(BenchCommand::Reflector(a)) => reflect(a),
        None => generate(&cli.run),
    };
    r.unwrap_or_else(|e| {
        eprintln!("xdhcp-bench: {e:#}");
        ExitCode::FAILURE
    })
}
