//! control: the operator's view of a running server and the one way to change it live.
//!
//! - [`Hub`] links the control thread to the workers: their published counters (read without
//!   locks), a bounded command channel and a doorbell per worker, the journal's counters, the
//!   XDP program's counters, and the reload of the configuration (from `POST /v1/reload` or
//!   SIGHUP, one at a time).
//! - `http.rs`: the HTTP API (axum on a tokio current-thread runtime, on its own thread).
//! - `metrics.rs`: the Prometheus text exposition and the JSON statistics.
//! - `client.rs`: the small HTTP client of `xdhcpd leases|stats|reload`.
//!
//! Must never: run on a worker thread, or make a worker wait on it (commands are taken between
//! batches; a reload pauses the workers only while their engines are rebuilt).

pub mod client;
pub mod commands;
mod http;
pub mod metrics;

use crate::config::{FileError, ServerConfig};
use crate::journal::Journal;
use crate::worker::control::{Command, Published, Swap};
use dhcp_core::engine::Shared;
use dhcp_io::sys::Doorbell;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use http::{read_token, Control};

/// `[control]` and `--control`: where the HTTP API listens, if anywhere.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ControlSettings {
    /// Off unless given.
    pub listen: Option<SocketAddr>,
    /// A file holding the bearer token every request must carry (required beyond loopback).
    pub token_file: Option<PathBuf>,
}

/// Commands a worker may have queued before it refuses more (the control thread then answers
/// 503: a worker that far behind is busy serving).
pub const COMMAND_QUEUE: usize = 16;

/// The control thread's handle on one worker.
#[derive(Debug)]
pub struct WorkerLink {
    pub commands: SyncSender<Command>,
    pub bell: Arc<Doorbell>,
    pub published: Arc<Published>,
}

/// Re-reads the configuration as the server was started (file and flags).
pub type Reloader = Box<dyn Fn() -> Result<ServerConfig, FileError> + Send + Sync>;

/// What a reload did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadReport {
    pub subnets: usize,
    pub pool_addresses: usize,
    pub kept: usize,
    pub outside: usize,
    pub dropped: usize,
    /// The longest time a worker stopped serving.
    pub pause: Duration,
    /// Settings that take effect only at a restart and changed.
    pub ignored: Vec<&'static str>,
}

/// Everything the control plane reads or changes.
pub struct Hub {
    pub(crate) workers: Vec<WorkerLink>,
    /// The configuration serving now; shared with the cluster driver, which follows reloads.
    pub(crate) shared: Arc<Mutex<Arc<Shared>>>,
    running: Mutex<ServerConfig>,
    pub(crate) journal: Option<Journal>,
    /// The XDP program's counters as last read by the main thread.
    pub(crate) xdp: Mutex<Vec<(&'static str, u64)>>,
    reloader: Option<Reloader>,
    reloading: Mutex<()>,
    pub(crate) started: Instant,
    pub(crate) reloads: AtomicU64,
    pub(crate) reloads_refused: AtomicU64,
    pub(crate) last_pause_ns: AtomicU64,
    stop: Arc<AtomicBool>,
    /// The cluster thread's own state and counters (None: the server runs alone).
    pub(crate) cluster: Option<Arc<crate::cluster::Status>>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").field("workers", &self.workers.len()).finish_non_exhaustive()
    }
}

/// Why a reload was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadError {
    /// The file (or flags) do not make a valid configuration: `FILE:LINE:COL: reason`.
    Config(String),
    /// Valid, but it changes what only a restart can (the interfaces served).
    NeedsRestart(String),
    /// No way to re-read it (the server was not started from a reloadable configuration).
    Unavailable,
    /// The server is stopping.
    Stopping,
}

impl std::fmt::Display for ReloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReloadError::Config(e) => write!(f, "{e}"),
            ReloadError::NeedsRestart(e) => write!(f, "{e} (restart to apply)"),
            ReloadError::Unavailable => write!(f, "this server cannot re-read its configuration"),
            ReloadError::Stopping => write!(f, "the server is stopping"),
        }
    }
}

impl Hub {
    pub fn new(
        workers: Vec<WorkerLink>,
        shared: Arc<Mutex<Arc<Shared>>>,
        running: ServerConfig,
        journal: Option<Journal>,
        reloader: Option<Reloader>,
        stop: Arc<AtomicBool>,
    ) -> Hub {
        Hub {
            workers,
            shared,
            running: Mutex::new(running),
            journal,
            xdp: Mutex::new(Vec::new()),
            reloader,
            reloading: Mutex::new(()),
            started: Instant::now(),
            reloads: AtomicU64::new(0),
            reloads_refused: AtomicU64::new(0),
            last_pause_ns: AtomicU64::new(0),
            stop,
            cluster: None,
        }
    }

    /// The configuration serving now.
    pub fn current(&self) -> Arc<Shared> {
        lock(&self.shared).clone()
    }

    /// Sends a command to worker `w` and wakes it. `false`: its queue is full (or it stopped).
    pub(crate) fn send(&self, w: usize, cmd: Command) -> bool {
        let link = &self.workers[w];
        let sent = link.commands.try_send(cmd).is_ok();
        link.bell.ring();
        sent
    }

    /// Re-reads the configuration and swaps it in, or refuses it and keeps the old one.
    /// Blocking (the workers' pause is short; building the new configuration is not on them).
    pub fn reload(&self) -> Result<ReloadReport, ReloadError> {
        let _one = lock(&self.reloading);
        let result = self.try_reload();
        match &result {
            Ok(r) => {
                self.reloads.fetch_add(1, Ordering::Relaxed);
                self.last_pause_ns.store(r.pause.as_nanos() as u64, Ordering::Relaxed);
                log::info!(
                    "configuration reloaded: {} subnets, {} pool addresses; {} records kept, {} outside the new \
                     pools (kept to their end, not renewed), {} probations dropped; workers paused {} µs",
                    r.subnets,
                    r.pool_addresses,
                    r.kept,
                    r.outside,
                    r.dropped,
                    r.pause.as_micros()
                );
                for what in &r.ignored {
                    log::warn!("reload: {what} changed: takes effect at the next restart");
                }
            }
            Err(e) => {
                self.reloads_refused.fetch_add(1, Ordering::Relaxed);
                log::error!("configuration not reloaded, the old one keeps serving: {e}");
            }
        }
        result
    }

    fn try_reload(&self) -> Result<ReloadReport, ReloadError> {
        let reloader = self.reloader.as_ref().ok_or(ReloadError::Unavailable)?;
        let cfg = reloader().map_err(|e| ReloadError::Config(e.to_string()))?;
        let old = self.current();
        let workers = self.workers.len() as u32;
        let new = Shared::new(&cfg.engine, workers)
            .and_then(|s| s.carrying_cluster(&old, &cfg.engine, &lock(&self.running).engine))
            .map_err(|e| ReloadError::Config(format!("{e}")))?
            .with_steering_key(old.steering_key());
        if new.interfaces() != old.interfaces() {
            return Err(ReloadError::NeedsRestart(format!(
                "the subnets' interfaces changed from [{}] to [{}]",
                old.interfaces().join(","),
                new.interfaces().join(",")
            )));
        }
        let ignored = restart_only_changes(&lock(&self.running), &cfg);
        let new = Arc::new(new);
        let swap = self.swap(new.clone())?;
        *lock(&self.shared) = new.clone();
        *lock(&self.running) = cfg.clone();
        let carried = *lock(&swap.carried);
        Ok(ReloadReport {
            subnets: cfg.engine.subnets.len(),
            pool_addresses: new.space().capacity(),
            kept: carried.kept,
            outside: carried.outside,
            dropped: carried.dropped,
            pause: Duration::from_nanos(swap.pause_ns.load(Ordering::Relaxed)),
            ignored,
        })
    }

    /// Has every worker rebuild its engine over `new` (see [`Swap`]); waits for all of them.
    fn swap(&self, new: Arc<Shared>) -> Result<Arc<Swap>, ReloadError> {
        let swap = Arc::new(Swap::new(new, self.workers.len() as u32));
        let mut done = Vec::with_capacity(self.workers.len());
        for (w, link) in self.workers.iter().enumerate() {
            let (tx, rx) = tokio::sync::oneshot::channel();
            // A swap must reach every worker: wait for room rather than give up.
            if link.commands.send(Command::Swap { swap: swap.clone(), done: tx }).is_err() {
                return Err(ReloadError::Stopping);
            }
            link.bell.ring();
            done.push((w, rx));
        }
        for (w, rx) in done {
            if rx.blocking_recv().is_err() || self.stop.load(Ordering::Relaxed) {
                log::warn!("reload: worker {w} stopped during the swap");
                return Err(ReloadError::Stopping);
            }
        }
        Ok(swap)
    }
}

/// The settings a reload cannot change that differ between `old` and `new`.
fn restart_only_changes(old: &ServerConfig, new: &ServerConfig) -> Vec<&'static str> {
    let (a, b) = (&old.server, &new.server);
    let checks = [
        ("server.workers", a.workers != b.workers),
        ("server.backend", a.backend != b.backend),
        ("server.lease_file", a.lease_file != b.lease_file),
        ("server.durability", a.durability != b.durability),
        ("server.busy_poll", a.busy_poll != b.busy_poll),
        ("server.pin_workers", a.pin_workers != b.pin_workers),
        ("server.interfaces", a.interfaces != b.interfaces),
        ("control", a.control != b.control),
    ];
    checks.into_iter().filter_map(|(name, changed)| changed.then_some(name)).collect()
}

/// What the server hands the control plane besides the workers' links.
pub struct Supervise<'a> {
    /// The configuration serving now (replaced by reloads).
    pub shared: Arc<Mutex<Arc<Shared>>>,
    pub cfg: &'a ServerConfig,
    pub reloader: std::cell::Cell<Option<Reloader>>,
    /// Set by SIGHUP.
    pub hup: Arc<AtomicBool>,
    /// The API's bearer token, read before privileges were dropped.
    pub token: Option<Arc<str>>,
    /// The cluster thread's own state and counters (None: the server runs alone).
    pub cluster: Option<Arc<crate::cluster::Status>>,
}

impl std::fmt::Debug for Supervise<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervise").finish_non_exhaustive()
    }
}

impl Supervise<'_> {
    /// Runs the control plane until `finished`: the HTTP API if configured, reloads on SIGHUP,
    /// the XDP program's counters read once a second.
    pub fn run(
        &self,
        links: Vec<WorkerLink>,
        journal: Option<Journal>,
        stop: Arc<AtomicBool>,
        finished: &dyn Fn() -> bool,
        read_xdp: &dyn Fn() -> Option<Vec<(&'static str, u64)>>,
    ) -> anyhow::Result<()> {
        let mut hub = Hub::new(links, self.shared.clone(), self.cfg.clone(), journal, self.reloader.take(), stop);
        hub.cluster = self.cluster.clone();
        let hub = Arc::new(hub);
        let control = Control::start(&self.cfg.server.control, self.token.clone(), hub.clone())?;
        let mut xdp_read: Option<Instant> = None;
        while !finished() {
            if self.hup.swap(false, Ordering::Relaxed) {
                log::info!("SIGHUP: reloading the configuration");
                let _ = hub.reload();
            }
            if xdp_read.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                if let Some(c) = read_xdp() {
                    *lock(&hub.xdp) = c;
                }
                xdp_read = Some(Instant::now());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(control);
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
