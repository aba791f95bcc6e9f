//! server: puts a configured server together and runs it until SIGTERM/SIGINT, in named steps:
//! open the packet path ([`Path::open`]), give up privileges ([`crate::privilege`], while
//! still single-threaded), [`recover`] the leases into the engines of the workers that own
//! their clients, [`spawn`] the workers (and tell the service manager, [`crate::service`]),
//! run the control plane beside them ([`crate::control`]), and when they stop, [`report`].
//!
//! Teardown order is held by field order, not by hand: the XDP program is detached before the
//! sockets it steers to close, and those before the UMEMs under them are unmapped.

use crate::config::{Backend, ServerConfig, ServerSettings};
use crate::control::{Reloader, Supervise, WorkerLink};
use crate::journal::{Journal, JournalOptions};
use crate::privilege;
use crate::service::{Beating, Heartbeat, Notifier};
use crate::worker::{Idle, Worker, WorkerReport};
use anyhow::{anyhow, bail, Context, Result};
use dhcp_core::engine::{Engine, Shared};
use dhcp_io::udp::{self, UdpIo};
use dhcp_io::xdp::Steering;
use dhcp_io::xsk::{self, XdpIo, XskSet};
use dhcp_io::PacketIo;
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Runs the server. Returns after a stop signal, once the journal is flushed.
pub fn run(cfg: ServerConfig) -> Result<()> {
    run_reloadable(cfg, None)
}

/// [`run`], re-reading the configuration through `reloader` on SIGHUP or `POST /v1/reload`.
pub fn run_reloadable(cfg: ServerConfig, reloader: Option<Reloader>) -> Result<()> {
    let workers = cfg.server.workers.clamp(1, 1024) as u32;
    let target = privilege::Target::resolve(cfg.server.confinement.user.as_deref())?;
    privilege::prepare_lease_dir(cfg.server.lease_file.as_deref(), target.as_ref())?;
    if let Some(p) = &cfg.server.lease_file {
        // Before touching the interface: a second server on these files goes no further.
        crate::journal::ensure_unlocked(p)?;
    }
    let (key, new_key) = steering_key(&cfg.server)?;
    let shared = Arc::new(Shared::new(&cfg.engine, workers).context("configuration")?.with_steering_key(key));
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    let hup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone()).context("installing signal handlers")?;
    // Before the files go out of reach (Landlock).
    let token = crate::control::read_token(&cfg.server.control)?;
    warn_untrusted_relays(&cfg.engine);
    let notifier = crate::service::Notifier::from_env();
    let mut path = Path::open(&cfg.server, &shared, workers)?;
    let dropped =
        privilege::drop_privileges(&cfg.server.confinement, target.as_ref(), cfg.server.lease_file.as_deref())
            .context("dropping privileges")?;
    privilege::log_dropped(&dropped, target.as_ref());
    path.start_threads()?;
    // The configuration serving now: reloads replace it, the cluster driver follows.
    let current = Arc::new(std::sync::Mutex::new(shared.clone()));
    // After privileges are dropped (a thread started before would keep them).
    let cluster = match &cfg.engine.cluster {
        Some(c) => {
            let settings = crate::cluster::driver::settings(c, cfg.engine.longest_lease());
            Some((crate::cluster::Cluster::start(settings).context("starting the cluster thread")?, current.clone()))
        }
        None => None,
    };
    let (engines, journal) = recover(&cfg.server, &shared, workers, new_key)?;
    log::info!(
        "serving {} with {workers} workers, {} subnets, {} pool addresses",
        cfg.server.interfaces.join(","),
        cfg.engine.subnets.len(),
        shared.space().capacity()
    );
    let status = cluster.as_ref().map(|(c, _)| c.status.clone());
    let supervise =
        Supervise { shared: current.clone(), cfg: &cfg, reloader: Cell::new(reloader), hup, token, cluster: status };
    let mut ctx = SpawnCtx {
        journal: journal.clone(),
        stop: stop.clone(),
        settings: &cfg.server,
        notifier: Some(notifier),
        supervise: Some(supervise),
        cluster,
    };
    let total = path.serve(engines, &mut ctx)?;
    if stop.load(Ordering::Relaxed) {
        log::info!("stopping");
    }
    if let Some(j) = journal {
        j.close().context("flushing the lease file")?;
    }
    report(&total);
    Ok(())
}

/// Relayed clients are served, and no relay is listed as trusted: anyone may relay.
fn warn_untrusted_relays(cfg: &dhcp_core::config::Config) {
    let relayed = cfg.subnets.iter().any(|s| s.interface.is_none());
    let listed = !cfg.trusted_relays.is_empty() || cfg.subnets.iter().any(|s| !s.trusted_relays.is_empty());
    if relayed && !listed {
        log::warn!("no trusted_relays: any host may relay DHCP to this server (list the relay agents on an edge)");
    }
}

/// The steering hash's key: kept beside the lease file (recovered leases must go to the
/// workers that will see their clients), else new for this run. `true`: a new key.
fn steering_key(s: &ServerSettings) -> Result<(u32, bool)> {
    match &s.lease_file {
        Some(path) => crate::journal::steering_key(path).with_context(|| format!("steering key of {}", path.display())),
        None => Ok((crate::journal::random_u32(), true)),
    }
}

/// One engine per worker, with the leases of the lease file restored into the engine of the
/// worker that owns each client, and the journal that goes on recording them. With a new
/// steering key, the hashes recorded with the leases are of no use: they are computed again.
pub fn recover(
    s: &ServerSettings,
    shared: &Arc<Shared>,
    workers: u32,
    new_key: bool,
) -> Result<(Vec<Engine>, Option<Journal>)> {
    let now = crate::clock::unix_now();
    let capacity = shared.space().capacity() / workers as usize + 1024;
    let mut engines: Vec<Engine> = (0..workers).map(|_| Engine::new(shared.clone(), now, capacity)).collect();
    let Some(path) = &s.lease_file else {
        log::warn!("no lease file: leases live in memory only and are lost on restart");
        return Ok((engines, None));
    };
    let interval = std::time::Duration::from_secs(s.compact_interval.max(1) as u64);
    let opts = JournalOptions {
        accept_damage: s.accept_damaged_journal,
        compact_size: s.compact_size,
        ..JournalOptions::new(s.durability, interval)
    };
    let started = std::time::Instant::now();
    let key = shared.steering_key();
    let ((journal, stats), n) = crate::restore::into_engines(&mut engines, now, |sink| {
        Journal::open_streaming(path, opts, now, &mut |r| {
            let hash = if r.steer != 0 && !new_key { r.steer } else { lease_hash(&r, key) };
            sink(dhcp_common::owner(hash, workers) as usize, r)
        })
        .with_context(|| format!("opening lease file {}", path.display()))
    })?;
    log::info!(
        "lease file {}: {} leases restored, {} refused, in {} ms; {}",
        path.display(),
        n.restored,
        n.refused,
        started.elapsed().as_millis(),
        stats.summary()
    );
    Ok((engines, Some(journal)))
}

/// The steering hash of a recovered lease's client when the record has none (or one made with
/// another key): from its client identifier when the record holds it whole, else from its
/// hardware address (a long identifier's client may land on another worker than its messages:
/// it is then asked to start over).
fn lease_hash(r: &crate::journal::Recovered, key: u32) -> u32 {
    dhcp_core::engine::client_steer(key, &r.client, &r.mac)
}

/// What every worker gets besides its engine and its sockets.
struct SpawnCtx<'a> {
    journal: Option<Journal>,
    stop: Arc<AtomicBool>,
    settings: &'a ServerSettings,
    /// Told READY=1 once the workers run; watches their heartbeats.
    notifier: Option<Notifier>,
    /// The control plane and reloads (none in unit tests).
    supervise: Option<Supervise<'a>>,
    /// With `[cluster]`: the cluster thread, driven beside the workers.
    cluster: Option<(crate::cluster::Cluster, crate::cluster::driver::Current)>,
}

/// A worker thread's result: its counters and its path, handed back so that the caller closes
/// the sockets in the right order.
type Handle<I> = JoinHandle<(WorkerReport, I)>;

/// Starts one thread per engine, each with its path. A worker that panics stops the whole
/// server (see [`PanicGuard`]).
fn spawn<I: PacketIo + Send + 'static>(
    engines: Vec<Engine>,
    ios: Vec<I>,
    ctx: &SpawnCtx<'_>,
    renew: Option<&dhcp_io::renew::RenewMaps>,
) -> Result<(Vec<Handle<I>>, Vec<WorkerLink>)> {
    let workers = engines.len() as u32;
    let mut links = Vec::with_capacity(engines.len());
    let idle = Idle { busy_poll: ctx.settings.busy_poll, ..Idle::default() };
    let pin = ctx.settings.pin_workers;
    let mut handles = Vec::with_capacity(engines.len());
    for (w, (engine, io)) in engines.into_iter().zip(ios).enumerate() {
        let worker = Worker::new(w as u32, workers, engine, io, ctx.journal.clone(), ctx.stop.clone())
            .context("starting a worker")?
            .with_idle(idle);
        let (tx, rx) = std::sync::mpsc::sync_channel(crate::control::COMMAND_QUEUE);
        let published = Arc::new(crate::worker::control::Published::default());
        let worker = worker.with_control(rx, published.clone());
        links.push(WorkerLink { commands: tx, bell: worker.bell(), published });
        let worker = match renew {
            Some(m) => {
                let periods = ctx.settings.kernel_renew_horizon;
                let k = crate::kernel_renew::KernelRenew::new(Box::new(m.try_clone()?), w as u32, workers, periods);
                worker.with_kernel_renew(k)
            }
            None => worker,
        };
        let guard = PanicGuard { worker: w, stop: ctx.stop.clone() };
        let h = std::thread::Builder::new().name(format!("xdhcpd-w{w}")).spawn(move || {
            if pin {
                crate::worker::pin_to_cpu(w);
            }
            let out = worker.run();
            std::mem::forget(guard);
            out
        });
        handles.push(h.context("starting worker threads")?);
    }
    Ok((handles, links))
}

/// Stops every worker when one panics: the server must never go on silently with fewer
/// workers (their clients would get no answer). The panic itself is reported by [`join`].
struct PanicGuard {
    worker: usize,
    stop: Arc<AtomicBool>,
}

impl Drop for PanicGuard {
    fn drop(&mut self) {
        // Only reached by unwinding: a worker that returns forgets its guard.
        log::error!("worker {} panicked: stopping the server", self.worker);
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Waits for every worker; sums their counters and collects their paths.
fn join<I>(handles: Vec<Handle<I>>) -> Result<(WorkerReport, Vec<I>)> {
    let (mut total, mut ios, mut panicked) = (WorkerReport::default(), Vec::new(), None);
    for (w, h) in handles.into_iter().enumerate() {
        match h.join() {
            Ok((r, io)) => {
                log::info!(
                    "worker {w}: pkt4-received {} pkt4-offer-sent {} pkt4-ack-sent {}",
                    r.engine.received,
                    r.engine.offer_sent,
                    r.engine.ack_sent
                );
                total.add(&r);
                ios.push(io);
            }
            Err(e) => panicked = Some((w, panic_message(&e))),
        }
    }
    match panicked {
        Some((w, msg)) => Err(anyhow!("worker {w} panicked: {msg}")),
        None => Ok((total, ios)),
    }
}

fn panic_message(e: &Box<dyn std::any::Any + Send>) -> String {
    e.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| e.downcast_ref::<String>().cloned()).unwrap_or_default()
}

/// The packet path the workers serve through.
enum Path {
    Udp(Vec<UdpIo>),
    Xdp(Box<XdpPath>),
}

impl Path {
    /// Opens the configured backend (`auto`: XDP where it can be attached, else UDP, saying
    /// why in one line).
    fn open(s: &ServerSettings, shared: &Shared, workers: u32) -> Result<Path> {
        if s.interfaces.is_empty() {
            bail!("no interface to serve: name one with --interface or [server] interfaces");
        }
        match s.backend {
            Backend::Udp => open_udp(&s.interfaces, shared, workers),
            Backend::Xdp => {
                Ok(Path::Xdp(Box::new(XdpPath::open(&s.interfaces, shared, workers).context("backend xdp")?)))
            }
            Backend::Auto => match XdpPath::open(&s.interfaces, shared, workers) {
                Ok(x) => Ok(Path::Xdp(Box::new(x))),
                Err(e) => {
                    log::warn!("backend auto: using UDP sockets, XDP is not available: {e:#}");
                    open_udp(&s.interfaces, shared, workers)
                }
            },
        }
    }

    /// Threads of the path that must start after privileges are dropped (they would keep them).
    fn start_threads(&mut self) -> Result<()> {
        match self {
            Path::Udp(_) => Ok(()),
            Path::Xdp(x) => x.steering.forward_log(),
        }
    }

    /// Runs the workers until they stop; returns their counters.
    fn serve(self, engines: Vec<Engine>, ctx: &mut SpawnCtx<'_>) -> Result<WorkerReport> {
        match self {
            Path::Udp(ios) => serve_watched(engines, ios, ctx, None, None).map(|(total, _)| total),
            Path::Xdp(mut x) => {
                let ios = std::mem::take(&mut x.ios);
                let on = ctx
                    .settings
                    .kernel_renew
                    .unwrap_or_else(|| crate::config::kernel_renew_by_default(&ctx.settings.interfaces));
                let renew = match on {
                    true => Some(x.steering.kernel_renew(x.mac).context("kernel renewals")?),
                    false => None,
                };
                let result = serve_watched(engines, ios, ctx, Some(&x.steering), renew.as_ref());
                x.log_counters();
                // Dropping `x` detaches the program, then closes the sockets, then the UMEMs.
                result.map(|(total, ios)| {
                    x.retired = ios;
                    total
                })
            }
        }
    }
}

/// While the workers run: the control plane, SIGHUP reloads, the XDP program's counters. An
/// error (the control API cannot start) stops the workers.
fn supervise<I>(
    ctx: &SpawnCtx<'_>,
    links: Vec<WorkerLink>,
    handles: &[Handle<I>],
    xdp: Option<&Steering>,
) -> Result<()> {
    let Some(s) = &ctx.supervise else { return Ok(()) };
    let finished = || handles.iter().all(|h| h.is_finished());
    let read_xdp = || xdp.and_then(|x| x.counters().ok()).map(|c| c.named().collect());
    s.run(links, ctx.journal.clone(), ctx.stop.clone(), &finished, &read_xdp).inspect_err(|_| {
        ctx.stop.store(true, Ordering::Relaxed);
    })
}

/// [`spawn`], the control plane ([`supervise`]) and [`join`], each worker's path counting its
/// turns for the service manager's watchdog (see [`crate::service`]).
fn serve_watched<I: PacketIo + Send + 'static>(
    engines: Vec<Engine>,
    ios: Vec<I>,
    ctx: &mut SpawnCtx<'_>,
    xdp: Option<&Steering>,
    renew: Option<&dhcp_io::renew::RenewMaps>,
) -> Result<(WorkerReport, Vec<I>)> {
    let beats: Vec<Arc<Heartbeat>> = ios.iter().map(|_| Arc::default()).collect();
    let ios = ios.into_iter().zip(&beats).map(|(io, b)| Beating::new(io, b.clone())).collect();
    let (handles, links) = spawn(engines, ios, ctx, renew)?;
    let watchdog = match ctx.notifier.take() {
        Some(n) => Some(crate::service::watch(n, beats, ctx.stop.clone())?),
        None => None,
    };
    let driver = match ctx.cluster.take() {
        Some((cluster, shared)) => {
            let ports = links.iter().map(|l| (l.commands.clone(), l.bell.clone())).collect();
            let stop = ctx.stop.clone();
            let t = std::thread::Builder::new()
                .name("xdhcpd-cluster".into())
                .spawn(move || crate::cluster::driver::run(cluster, shared, ports, stop))
                .context("starting the cluster driver")?;
            Some(t)
        }
        None => None,
    };
    let supervised = supervise(ctx, links, &handles, xdp);
    let result = join(handles);
    ctx.stop.store(true, Ordering::Relaxed);
    if let Some(Ok(Err(e))) = driver.map(|t| t.join()) {
        log::error!("cluster: {e:#}");
    }
    if let Some(w) = watchdog {
        let _ = w.join();
    }
    supervised?;
    result.map(|(total, ios)| (total, ios.into_iter().map(Beating::into_inner).collect()))
}

/// Per worker, its socket on every configured interface.
fn open_udp(interfaces: &[String], shared: &Shared, workers: u32) -> Result<Path> {
    let mut per_worker: Vec<Vec<udp::Port>> = (0..workers).map(|_| Vec::new()).collect();
    for name in interfaces {
        let ports = udp::open_ports(name, shared.interface_id(name), workers, shared.steering_key())
            .with_context(|| format!("opening port 67 on {name}"))?;
        for (w, port) in ports.into_iter().enumerate() {
            per_worker[w].push(port);
        }
    }
    log::info!("backend udp on {}", interfaces.join(","));
    Ok(Path::Udp(per_worker.into_iter().map(UdpIo::new).collect()))
}

/// The kernel-bypass path on one interface. Fields drop in order: program, sockets, UMEMs.
struct XdpPath {
    steering: Steering,
    /// The workers' paths, given back when they stop (their sockets close when this drops).
    retired: Vec<XdpIo>,
    /// Before the workers start: their paths.
    ios: Vec<XdpIo>,
    /// Held for its drop: the UMEMs go last.
    _set: XskSet,
    /// The interface's hardware address (replies sent by the program come from it).
    mac: [u8; 6],
}

impl XdpPath {
    /// Opens AF_XDP sockets on every queue and attaches the steering program that feeds them.
    /// One interface: several need one socket set per interface, which the UDP path has and
    /// this one does not yet.
    fn open(interfaces: &[String], shared: &Shared, workers: u32) -> Result<XdpPath> {
        let [name] = interfaces else { bail!("the XDP path serves one interface; {} configured", interfaces.len()) };
        let mut set =
            xsk::open(name, workers, xsk::Options::default()).with_context(|| format!("AF_XDP sockets on {name}"))?;
        let mut steering = Steering::attach(name, dhcp_common::SERVER_PORT)?;
        steering.set_hash_key(shared.steering_key())?;
        let ours = dhcp_io::sys::host_ipv4_addresses().context("this host's addresses")?;
        steering.only_for(&ours)?;
        steering.register(&set.sockets)?;
        let mac = dhcp_io::sys::mac_address(name).with_context(|| format!("hardware address of {name}"))?;
        let iface = shared.interface_id(name);
        let ios = std::mem::take(&mut set.sockets).into_iter().map(|s| XdpIo::new(s, iface, mac)).collect();
        let mode = match set.mode {
            xsk::Mode::ZeroCopy => "zero-copy",
            xsk::Mode::Copy => "copy mode (the driver has no zero-copy AF_XDP)",
        };
        log::info!(
            "backend xdp on {name}: {} receive queues x {workers} AF_XDP sockets, {mode}",
            dhcp_io::sys::rx_queues(name)
        );
        Ok(XdpPath { steering, retired: Vec::new(), ios, _set: set, mac })
    }

    fn log_counters(&self) {
        match self.steering.counters() {
            Ok(c) => {
                let named: Vec<String> = c.named().map(|(n, v)| format!("{n} {v}")).collect();
                log::info!("{}: {}", self.steering.interface(), named.join(", "));
            }
            Err(e) => log::warn!("{}: XDP counters not read: {e:#}", self.steering.interface()),
        }
    }
}

/// The totals, once, at exit.
fn report(total: &WorkerReport) {
    for (name, v) in total.engine.named().into_iter().chain(total.cluster.named()) {
        if v > 0 {
            log::info!("{name} {v}");
        }
    }
    log::info!(
        "acks-withheld {} send-failed {} malformed-frames {}",
        total.acks_withheld,
        total.send_failed,
        total.malformed_frames
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhcp_core::config::{Config, Pool, Subnet};
    use dhcp_io::sys::Doorbell;
    use dhcp_io::{Datagram, Transmit, Unusable, MAX_MESSAGE};
    use std::time::Duration;

    /// A path that panics on its first receive when asked to, and otherwise idles.
    #[derive(Debug)]
    struct Faulty(bool);

    impl PacketIo for Faulty {
        type Frame = ();

        fn receive(&mut self, _: &mut Vec<()>, _: usize) -> usize {
            assert!(!self.0, "a bug in one worker");
            0
        }

        fn datagram<'a>(&'a mut self, _: &'a mut (), _: &'a mut [u8; MAX_MESSAGE]) -> Result<Datagram<'a>, Unusable> {
            Err(Unusable::OtherPort)
        }

        fn seal(&mut self, _: &mut (), _: &Transmit) -> bool {
            false
        }

        fn send(&mut self, frames: &mut Vec<()>) -> usize {
            frames.clear();
            0
        }

        fn release(&mut self, frames: &mut Vec<()>) {
            frames.clear();
        }

        fn wait(&mut self, timeout: Duration, _: Option<&Doorbell>) {
            std::thread::sleep(timeout.min(Duration::from_millis(5)));
        }
    }

    #[test]
    fn a_panicking_worker_stops_the_whole_server_with_its_reason() {
        // Before: the other workers went on serving, silently, without that worker's clients.
        let mut s = Subnet::new("100.64.0.0".parse().unwrap(), 24);
        s.pools.push(Pool { first: "100.64.0.10".parse().unwrap(), last: "100.64.0.20".parse().unwrap() });
        let cfg = Config { server_id: "100.64.0.1".parse().unwrap(), subnets: vec![s], ..Config::default() };
        let shared = Arc::new(Shared::new(&cfg, 3).unwrap());
        let engines = (0..3).map(|_| Engine::new(shared.clone(), 0, 16)).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let settings = ServerSettings::default();
        let ctx = SpawnCtx {
            journal: None,
            stop: stop.clone(),
            settings: &settings,
            notifier: None,
            supervise: None,
            cluster: None,
        };
        let (handles, _) = spawn(engines, vec![Faulty(false), Faulty(true), Faulty(false)], &ctx, None).unwrap();
        let err = join(handles).unwrap_err().to_string();
        assert!(err.contains("worker 1 panicked: a bug in one worker"), "{err}");
        // Joining returned at all: the others stopped too.
        assert!(stop.load(Ordering::Relaxed), "the others were told to stop");
    }
}
