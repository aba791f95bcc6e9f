//! The cluster thread (issue 13): this node's link to the NATS JetStream cluster that several
//! xdhcpd nodes share. It runs `async-nats` on a current-thread tokio runtime of its own and
//! talks to the rest of the server only through plain data: [`Command`]s in, [`Notification`]s
//! and [`PeerEvent`]s out (crossbeam channels), and a [`Status`] of atomics.
//!
//! What it keeps in NATS (bucket `B`, see [`Settings::bucket`]):
//! - Key-value bucket `B` (stream `KV_B`): `hb.<node>` each node's heartbeat, written every
//!   [`Settings::heartbeat`]; `blk.<pool>.<block>` the owner of an address block (and, for a
//!   block taken over, when its free addresses may go out, so a restart keeps the wait). Claims are
//!   `create` (only if free), takeovers `update` expecting the revision seen (of two survivors
//!   exactly one wins), returns a delete expecting ours.
//! - Stream `B_EV`, subjects `B.ev.<node>`: every node's lease events (opaque bytes here: the
//!   journal's records), consumed by every node from the start, its own skipped.
//!
//! Both have min(3, number of NATS servers) replicas.
//!
//! The fence's input: [`Status::confirmed_heartbeat_ms`] is the wall time at which the last
//! heartbeat NATS confirmed was sent (0: none yet). Liveness rules: `liveness`. Block ownership
//! rules: `blocks`.
//!
//! Must never: run on or block a packet worker (everything here is on its own thread); block its
//! runtime on a full channel (peer events wait in their own task, the rest is unbounded but
//! bounded in practice by blocks and peers); take over a block without proof that its owner
//! is dead (see `liveness`).

mod blocks;
pub mod driver;
mod liveness;
mod nats;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub use bytes::Bytes;

/// Wall-clock milliseconds since the UNIX epoch (0 if the clock is before it).
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// What the cluster thread needs to know.
#[derive(Debug, Clone)]
pub struct Settings {
    /// NATS server URLs (`nats://host:port`), at least one.
    pub servers: Vec<String>,
    /// This node's name: one of `peers`.
    pub node: String,
    /// Every node's name, the same list on every node.
    pub peers: Vec<String>,
    /// Name of the key-value bucket (and prefix of the event stream's name and subjects).
    pub bucket: String,
    pub heartbeat: Duration,
    /// A peer whose heartbeat was not seen for this long is dead.
    pub dead_after: Duration,
    /// The longest lease any subnet grants: a block taken over gives out free addresses only
    /// this long (plus 2 s) after the takeover.
    pub longest_lease: Duration,
    /// How many peer events may wait for the server to take them (then the consumer waits).
    pub event_backlog: usize,
}

impl Settings {
    /// Checks what the thread relies on; the message names the setting.
    pub fn check(&self) -> Result<(), String> {
        if self.servers.is_empty() {
            return Err("cluster: at least one NATS server is needed".into());
        }
        let token = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if let Some(bad) = self.peers.iter().chain([&self.node, &self.bucket]).find(|s| !token(s)) {
            return Err(format!("cluster: name {bad:?} must be letters, digits, '-' or '_'"));
        }
        if !self.peers.contains(&self.node) {
            return Err(format!("cluster: node {:?} is not in peers", self.node));
        }
        if self.peers.len() > 64 {
            return Err("cluster: at most 64 peers".into());
        }
        if self.heartbeat.is_zero() || self.dead_after <= 2 * self.heartbeat {
            return Err("cluster: dead_after must be more than twice the heartbeat".into());
        }
        Ok(())
    }

    fn me(&self) -> usize {
        self.peers.iter().position(|p| *p == self.node).unwrap_or(0)
    }
}

/// What the server asks of the cluster thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Claim this block (answered by `Granted` or `ClaimFailed`).
    Claim { pool: u32, block: u32 },
    /// Claim any block of `pool` (of `blocks`) that looks free (answered by `Granted` or
    /// `ClaimFailed`, or `NoFreeBlock`).
    ClaimAny { pool: u32, blocks: u32 },
    /// Give back a block of ours that holds no lease (answered by `Returned` or `ReturnFailed`).
    Return { pool: u32, block: u32 },
    /// Publish lease-event bytes of this node (in order).
    Publish(Bytes),
}

/// What the cluster thread tells the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    /// The block is ours (claimed).
    Granted {
        pool: u32,
        block: u32,
    },
    /// The bucket named us owner of the block when we started (a previous run's block); one we
    /// had taken over gives out its free addresses only from `free_after` (UNIX seconds) on.
    Resumed {
        pool: u32,
        block: u32,
        free_after: Option<u32>,
    },
    /// We took the block over from dead `from`: it serves only clients whose leases lie in it,
    /// and gives out its free addresses from `free_after` (UNIX seconds) on.
    TakenOver {
        pool: u32,
        block: u32,
        from: String,
        free_after: u32,
    },
    /// The block is no longer ours (taken over by `to`, or deleted): stop allocating in it.
    Lost {
        pool: u32,
        block: u32,
        to: Option<String>,
    },
    Returned {
        pool: u32,
        block: u32,
    },
    ReturnFailed {
        pool: u32,
        block: u32,
    },
    ClaimFailed {
        pool: u32,
        block: u32,
    },
    NoFreeBlock {
        pool: u32,
    },
    /// Peer (index in `peers`) became live or dead.
    PeerLive(usize),
    PeerDead(usize),
}

/// Lease-event bytes a peer published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerEvent {
    /// Index of the publishing node in `peers` (events of unknown nodes are dropped, counted).
    pub peer: usize,
    pub bytes: Bytes,
}

/// The cluster thread's state for the rest of the server (lock-free reads).
#[derive(Debug, Default)]
pub struct Status {
    /// Wall time (UNIX ms) at which the last heartbeat NATS confirmed was sent; 0: none yet.
    pub confirmed_heartbeat_ms: AtomicU64,
    /// Bit `i`: peer `i` is live (our own bit always set).
    pub live: AtomicU64,
    pub connected: AtomicBool,
    pub published: AtomicU64,
    pub publish_failed: AtomicU64,
    pub events_received: AtomicU64,
    /// Peer events dropped: from a node not in `peers`.
    pub events_unknown: AtomicU64,
    pub heartbeats_failed: AtomicU64,
}

impl Status {
    fn set_live(&self, peer: usize, live: bool) {
        let bit = 1u64 << peer;
        if live {
            self.live.fetch_or(bit, Ordering::Relaxed);
        } else {
            self.live.fetch_and(!bit, Ordering::Relaxed);
        }
    }
}

/// The running cluster thread. Dropping it stops the thread (without returning blocks: they
/// stay ours until taken over or claimed again by a later run).
#[derive(Debug)]
pub struct Cluster {
    commands: crossbeam_channel::Sender<Command>,
    wake: Arc<tokio::sync::Notify>,
    stop: Arc<AtomicBool>,
    pub notifications: crossbeam_channel::Receiver<Notification>,
    pub peer_events: crossbeam_channel::Receiver<PeerEvent>,
    pub status: Arc<Status>,
    pub settings: Settings,
    thread: Option<JoinHandle<()>>,
}

impl Cluster {
    /// Starts the thread; it connects (and keeps reconnecting) in the background.
    pub fn start(settings: Settings) -> anyhow::Result<Cluster> {
        settings.check().map_err(anyhow::Error::msg)?;
        let (commands, commands_rx) = crossbeam_channel::unbounded();
        let (notify_tx, notifications) = crossbeam_channel::unbounded();
        let (events_tx, peer_events) = crossbeam_channel::bounded(settings.event_backlog.max(1));
        let status = Arc::new(Status::default());
        status.set_live(settings.me(), true);
        let wake = Arc::new(tokio::sync::Notify::new());
        let stop = Arc::new(AtomicBool::new(false));
        let link = nats::Link {
            settings: settings.clone(),
            commands: commands_rx,
            wake: wake.clone(),
            stop: stop.clone(),
            notify: notify_tx,
            events: events_tx,
            status: status.clone(),
        };
        let thread = std::thread::Builder::new().name("cluster".into()).spawn(move || nats::run(link))?;
        Ok(Cluster { commands, wake, stop, notifications, peer_events, status, settings, thread: Some(thread) })
    }

    /// Hands a command to the thread and wakes it.
    pub fn send(&self, command: Command) {
        // The receiver lives as long as the thread; after it ended there is nobody to tell.
        let _ = self.commands.send(command);
        self.wake.notify_one();
    }

    /// Whether peer `i` is live in this node's view.
    pub fn is_live(&self, peer: usize) -> bool {
        self.status.live.load(Ordering::Relaxed) & (1 << peer) != 0
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
