//! The durable lease journal: every lease change an ACK depends on is on disk before the ACK
//! leaves, and the leases are recovered at start.
//!
//! Holds: the on-disk format (checksummed fixed-size records after a versioned header), the
//! group-commit writer thread (one write and one `fdatasync` per turn, whatever the number of
//! workers waiting; under load a turn at most every 3 ms, see `writer`), background compaction
//! (snapshot + fresh journal), and recovery (replay, torn-tail truncation, reclaiming expired
//! leases).
//!
//! Must never: report a change durable before it is written (and, with
//! [`Durability::Fsync`], synced); hand a caller `Ok` from [`Journal::wait`] while writes fail
//! (the ACK would promise an address nobody recorded); block a worker on compaction; panic on a
//! damaged file (damage ends the readable part and is reported, a file that is not a lease file
//! is an error); or read a record twice after a crash at any step of a compaction.
//!
//! The durable horizon (renewals answered in the XDP program, `crate::kernel_renew`): a Bound
//! record of a lease the worker puts in the program's map carries, as its expiry, the lease's
//! horizon (expiry + `kernel_renew_horizon` lease times), and the program never extends a lease
//! past the horizon in its map, which the worker raises only after the Bound record of the new
//! horizon is durable (horizons move ahead in batches between batches of packets). Recovery
//! holds every address until its journaled expiry, so an address renewed in the kernel is never
//! given to another client after a crash, and those renewals write nothing here. The format is
//! unchanged: the horizon is the record's expiry.
//!
//! Use: a worker handles its batch of packets, calls [`Journal::append`] once with the batch's
//! events, [`Journal::wait`]s on the ticket if any reply has `commit` set, and sends those
//! replies only on `Ok`. The writer thread takes everything queued by all workers, writes it
//! with one `pwrite` and one `fdatasync`, and wakes every waiter it covered. While writes fail
//! (disk full), records stay queued and are retried every 100 ms, `wait` fails at once, and
//! the failure and its end are logged once each.
//!
//! Files, for a lease file `PATH`:
//! - `PATH`: the journal being appended (generation `g`); with fsync it may end in zeros, room
//!   made ahead of the records so that a sync writes no metadata (read as the file's end).
//! - `PATH.old`: the previous journal while a compaction merges it (generation `< g`).
//! - `PATH.snapshot`: the live leases and probations of every journal up to its generation.
//! - `PATH.snapshot.tmp`, `PATH.next`: files being written; never the only copy of anything,
//!   deleted at start.
//! - `PATH.lock`: `flock`ed while a server uses the files (two servers must not share them).
//! - `PATH.damaged-FILE-OFFSET`: damaged bytes found at start, copied aside for inspection
//!   (never over an earlier copy); see [`recover`].
//! - `PATH.key`: the steering hash's key (see [`steering_key`]).
//!
//! Recovery reads the snapshot, then `PATH.old` and `PATH` if their generation is newer than the
//! snapshot's. Compaction: the writer thread starts `PATH.next` (header, fsync), renames `PATH`
//! to `PATH.old` and `PATH.next` to `PATH`, fsyncs the directory (a few ms, once per interval);
//! a background thread replays the snapshot and `PATH.old`, writes the live set to
//! `PATH.snapshot.tmp`, fsyncs it, renames it over `PATH.snapshot`, fsyncs the directory and
//! deletes `PATH.old`.

mod compact;
mod files;
mod filter;
mod format;
mod recover;
mod replay;
#[cfg(test)]
pub(crate) mod tests;
mod writer;

pub use format::Damage;

/// Bytes of one lease event in the journal's record format, which is also the format of the
/// lease events cluster nodes send each other (`crate::cluster`): one encoding of events.
pub const EVENT_LEN: usize = RECORD_LEN;

/// The journal's record of `e` (None: an event the journal does not keep, such as an offer).
pub fn encode_event(e: &LeaseEvent) -> Option<[u8; EVENT_LEN]> {
    Record::from_event(e).map(|r| r.encode())
}

/// The lease event of one record made by [`encode_event`] (None: short, damaged, or not an
/// event).
pub fn decode_event(b: &[u8]) -> Option<LeaseEvent> {
    if b.len() < EVENT_LEN {
        return None;
    }
    Record::decode(b, VERSION).ok()?.to_event()
}
pub use replay::DamageReport;

use crate::engine::LeaseEvent;
use crate::lease::{ClientKey, LeaseState};
use anyhow::{bail, Context, Result};
use core::net::Ipv4Addr;
use dhcp_io::sys::Doorbell;
use format::{FileKind, Header, Record, RECORD_LEN, VERSION};
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;
use writer::{Store, WriterThread};

const _: () = {
    const fn shared<T: Send + Sync + Clone>() {}
    shared::<Journal>();
};

/// When an appended change counts as done (and so when the ACK that depends on it may go out).
/// Also the `durability` of the configuration file and the `--durability` flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Written and `fdatasync`ed: survives a power cut.
    #[default]
    Fsync,
    /// Handed to the kernel: survives a crash of the server, not of the machine.
    None,
}

/// Settings of a journal beyond its path.
#[derive(Debug, Clone)]
pub struct JournalOptions {
    pub durability: Durability,
    /// Time between compactions; zero compacts only on demand.
    pub compact_interval: Duration,
    /// Bytes of records kept queued while writes fail; beyond it new records are dropped (their
    /// tickets never succeed, so no ACK depends on them). 64 MiB is about 1.9 million records.
    pub max_queued_bytes: usize,
    /// Wall clock in seconds, to skip ended leases when compacting.
    pub clock: fn() -> u32,
    /// Start even if synced data is damaged (the leases in it are lost; said in the log).
    pub accept_damage: bool,
    /// Compact when the journal grows beyond this many bytes (besides the interval): under
    /// churn a journal would otherwise grow until the disk is full.
    pub compact_size: u64,
}

impl JournalOptions {
    pub fn new(durability: Durability, compact_interval: Duration) -> JournalOptions {
        JournalOptions {
            durability,
            compact_interval,
            max_queued_bytes: 64 << 20,
            clock: crate::clock::unix_now,
            accept_damage: false,
            compact_size: 64 << 20,
        }
    }
}

/// A lease or probation found at start, for [`crate::engine::Engine::restore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    /// The lease's client; for a probation, the client that declined the address.
    pub client: ClientKey,
    pub mac: [u8; 6],
    pub ip: Ipv4Addr,
    pub expires: u32,
    /// The client's steering hash when it was recorded (0: unknown, a version 1 record).
    pub steer: u32,
    /// [`LeaseState::Bound`] or [`LeaseState::Quarantined`].
    pub state: LeaseState,
}

/// What recovery read and dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryStats {
    /// Good records read from the snapshot and journals.
    pub records_read: u64,
    /// Bytes dropped after damaged or incomplete records (all files).
    pub torn_bytes: u64,
    /// Leases and probations that had ended by the start time (their addresses are free).
    pub expired_reclaimed: u64,
    pub bound: usize,
    pub quarantined: usize,
    /// Stretches that held no good record, per file (torn tails and damage to synced data).
    pub damage: Vec<DamageReport>,
    /// Good records of a write a crash cut short (after the last commit record): never
    /// acknowledged, dropped.
    pub uncommitted_dropped: u64,
    /// Where damaged bytes were copied aside.
    pub kept_aside: Vec<PathBuf>,
    /// Damage to synced data was found and the operator accepted serving without it.
    pub damage_accepted: bool,
    /// `PATH.old` of an interrupted compaction was read; the compaction resumes in the background.
    pub resumed_compaction: bool,
    /// `PATH.old` was already in the snapshot (a crash just before deleting it) and was deleted.
    pub stale_old_removed: bool,
    /// Generation of the journal now appended.
    pub generation: u64,
}

/// The leases to restore and what recovery found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Sorted by address.
    pub leases: Vec<Recovered>,
    pub stats: RecoveryStats,
}

impl Recovery {
    /// One line for the log.
    pub fn summary(&self) -> String {
        self.stats.summary()
    }
}

impl RecoveryStats {
    /// One line for the log.
    pub fn summary(&self) -> String {
        let s = self;
        format!(
            "{} records read, {} leases and {} probations live, {} ended while down (reclaimed), {} damaged bytes \
             dropped, {} records of an unfinished write dropped",
            s.records_read, s.bound, s.quarantined, s.expired_reclaimed, s.torn_bytes, s.uncommitted_dropped
        )
    }
}

/// What to wait for: everything appended up to some call of [`Journal::append`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ticket(u64);

impl Ticket {
    /// Nothing to wait for (the batch had no durable change).
    pub const NONE: Ticket = Ticket(0);
    /// The records were dropped (queue full while failing): never durable.
    const DROPPED: Ticket = Ticket(u64::MAX);
}

/// What [`Journal::check`] found for a ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Commit {
    /// Everything up to the ticket is durable: the replies that depend on it may go.
    Durable,
    /// Not yet: ask again when the doorbell rings.
    Pending,
    /// It will not be durable in time: withhold the replies (the records stay queued while
    /// writes fail, and are written when they succeed).
    Failed(JournalError),
}

/// Why a change is not (known to be) durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JournalError {
    /// Writing or syncing the lease file fails (for example the disk is full); the records stay
    /// queued and are retried.
    Failing(Arc<str>),
    /// The records were dropped: too much queued while writes failed.
    Overflow,
    /// The journal was closed.
    Closed,
    /// A compaction failed (the journal itself is fine: nothing is lost).
    Compaction(Arc<str>),
}

impl core::fmt::Display for JournalError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            JournalError::Failing(e) => write!(f, "lease file not writable: {e}"),
            JournalError::Overflow => {
                f.write_str("lease changes dropped: queue full while the lease file is not writable")
            }
            JournalError::Closed => f.write_str("lease journal closed"),
            JournalError::Compaction(e) => write!(f, "lease file compaction failed: {e}"),
        }
    }
}

impl std::error::Error for JournalError {}

/// JournalCounters for statistics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JournalCounters {
    pub records_written: u64,
    pub bytes_written: u64,
    /// Write calls (one per group commit).
    pub writes: u64,
    pub fsyncs: u64,
    /// Failed write or sync attempts (retries included).
    pub write_failures: u64,
    /// Records dropped because the queue was full while writes failed.
    pub records_dropped: u64,
    pub compactions: u64,
    pub compaction_failures: u64,
    /// Records waiting to be written now.
    pub queued_records: u64,
    /// Writes fail now: ACKs are withheld.
    pub failing: bool,
    /// The last write, sync or compaction error, even if it has cleared since.
    pub last_error: Option<Arc<str>>,
}

impl JournalCounters {
    /// `(name, value)` pairs for the statistics output.
    pub fn named(&self) -> [(&'static str, u64); 10] {
        [
            ("journal-records-written", self.records_written),
            ("journal-bytes-written", self.bytes_written),
            ("journal-writes", self.writes),
            ("journal-fsyncs", self.fsyncs),
            ("journal-write-failures", self.write_failures),
            ("journal-records-dropped", self.records_dropped),
            ("journal-compactions", self.compactions),
            ("journal-compaction-failures", self.compaction_failures),
            ("journal-queued-records", self.queued_records),
            ("journal-failing", self.failing as u64),
        ]
    }
}

/// The lease journal. Clones share one writer; the last clone dropped (or [`Journal::close`])
/// writes what is queued, syncs and stops the threads.
#[derive(Clone)]
pub struct Journal {
    h: Arc<Handle>,
}

impl core::fmt::Debug for Journal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Journal").field("path", &self.h.core.paths.journal).finish_non_exhaustive()
    }
}

/// File names derived from the lease file's path.
#[derive(Debug, Clone)]
struct Paths {
    journal: PathBuf,
    old: PathBuf,
    snapshot: PathBuf,
    tmp: PathBuf,
    next: PathBuf,
    lock: PathBuf,
    key: PathBuf,
    dir: PathBuf,
}

impl Paths {
    /// The lease file's path with `suffix` added.
    fn with(&self, suffix: &str) -> PathBuf {
        let mut s: OsString = self.journal.as_os_str().to_owned();
        s.push(suffix);
        PathBuf::from(s)
    }

    fn new(path: &Path) -> Paths {
        let with = |suffix: &str| {
            let mut s: OsString = path.as_os_str().to_owned();
            s.push(suffix);
            PathBuf::from(s)
        };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Paths {
            journal: path.to_path_buf(),
            old: with(".old"),
            snapshot: with(".snapshot"),
            tmp: with(".snapshot.tmp"),
            next: with(".next"),
            lock: with(".lock"),
            key: with(".key"),
            dir,
        }
    }
}

/// State shared by callers, the writer thread and the compaction thread.
#[derive(Debug)]
struct Core {
    paths: Paths,
    durability: Durability,
    compact_interval: Duration,
    compact_size: u64,
    max_queued: usize,
    clock: fn() -> u32,
    q: Mutex<Queue>,
    /// Wakes the writer thread (the only thread waiting on it).
    wake: Condvar,
    /// Wakes callers of `wait`, `flush` and `compact`.
    done: Condvar,
    /// Callers sleeping on `done` (changed with `q` locked): no wake-up call when there are none.
    waiters: AtomicUsize,
    n: AtomicCounters,
    hooks: Arc<Hooks>,
    /// What `Journal::check` reads without the lock, mirrored from `q` by `Core::announce`.
    durable: AtomicU64,
    failing: AtomicBool,
    closed: AtomicBool,
    /// Rung whenever the durable point moves or writing starts or stops failing: workers
    /// holding replies for it sleep on these.
    bells: Mutex<Vec<Arc<Doorbell>>>,
}

/// Sequence numbers count records: the `k`th durable record appended has number `k`.
#[derive(Debug)]
struct Queue {
    /// Encoded records not yet written, numbered `written + 1 ..= queued`.
    buf: Vec<u8>,
    queued: u64,
    written: u64,
    synced: u64,
    /// What `wait` waits for: `synced` with fsync, `written` without.
    durable: u64,
    /// `flush` wants everything up to this synced.
    sync_req: u64,
    /// A caller blocks in `wait` for everything up to this: the writer does not pace its turn
    /// (pacing gathers records of callers that do not wait, see `writer`).
    hurry: u64,
    failing: Option<Arc<str>>,
    last_error: Option<Arc<str>>,
    /// Dropping records while failing was logged (once per failing period).
    drop_logged: bool,
    stop: bool,
    closed: bool,
    writer_idle: bool,
    compact_req: u64,
    compact_done: u64,
    compact_result: Result<(), JournalError>,
    job_finished: bool,
}

#[derive(Debug, Default)]
struct AtomicCounters {
    records_written: AtomicU64,
    bytes_written: AtomicU64,
    writes: AtomicU64,
    fsyncs: AtomicU64,
    write_failures: AtomicU64,
    records_dropped: AtomicU64,
    compactions: AtomicU64,
    compaction_failures: AtomicU64,
    /// fdatasync latencies: counts per bucket of [`FSYNC_BUCKETS_US`] (the last one: above
    /// them all), and their sum in nanoseconds.
    fsync_buckets: [AtomicU64; FSYNC_BUCKETS_US.len() + 1],
    fsync_ns: AtomicU64,
}

/// Upper bounds, in microseconds, of the fsync latency histogram's buckets.
pub const FSYNC_BUCKETS_US: [u64; 12] =
    [50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 1_000_000];

impl AtomicCounters {
    /// Counts one fdatasync that took `took`.
    fn fsync_took(&self, took: std::time::Duration) {
        let us = took.as_micros() as u64;
        let bucket = FSYNC_BUCKETS_US.iter().position(|&b| us <= b).unwrap_or(FSYNC_BUCKETS_US.len());
        self.fsync_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.fsync_ns.fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
    }
}

/// Test-only fault injection and crash points; empty outside tests.
#[derive(Debug, Default)]
pub(crate) struct Hooks {
    #[cfg(test)]
    pub(crate) t: tests::TestHooks,
}

/// A poisoned lock only means another thread panicked while holding it; the queue is still
/// consistent (every update is complete before any call that could panic), so carry on.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Core {
    fn new(paths: Paths, opts: &JournalOptions, hooks: Arc<Hooks>) -> Core {
        Core {
            paths,
            durability: opts.durability,
            compact_interval: opts.compact_interval,
            compact_size: opts.compact_size,
            max_queued: opts.max_queued_bytes,
            clock: opts.clock,
            q: Mutex::new(Queue {
                buf: Vec::with_capacity(64 * RECORD_LEN),
                queued: 0,
                written: 0,
                synced: 0,
                durable: 0,
                sync_req: 0,
                hurry: 0,
                failing: None,
                last_error: None,
                drop_logged: false,
                stop: false,
                closed: false,
                writer_idle: false,
                compact_req: 0,
                compact_done: 0,
                compact_result: Ok(()),
                job_finished: false,
            }),
            wake: Condvar::new(),
            done: Condvar::new(),
            waiters: AtomicUsize::new(0),
            n: AtomicCounters::default(),
            hooks,
            durable: AtomicU64::new(0),
            failing: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            bells: Mutex::new(Vec::new()),
        }
    }

    fn log(&self, msg: core::fmt::Arguments<'_>) {
        log::warn!("lease file {}: {msg}", self.paths.journal.display());
    }

    /// Publishes the queue's durable point and failure state to lock-free readers. Call with
    /// the queue locked, after changing them; then [`Core::notify`].
    fn announce(&self, q: &Queue) {
        self.durable.store(q.durable, Ordering::Release);
        self.failing.store(q.failing.is_some(), Ordering::Release);
        self.closed.store(q.closed, Ordering::Release);
    }

    /// Wakes everyone waiting for the durable point: `wait`ers and the workers sleeping on
    /// their doorbells (a busy worker looks for itself). Call after unlocking `q`.
    fn notify(&self) {
        // A caller counted itself with `q` locked before sleeping, and the change this
        // announces was made with `q` locked: either it is counted here or it saw the change.
        if self.waiters.load(Ordering::Relaxed) > 0 {
            self.done.notify_all();
        }
        for b in lock(&self.bells).iter() {
            b.ring_if_armed();
        }
    }

    /// Sleeps on `done` (counted, so that [`Core::notify`] knows to wake it).
    fn sleep<'a>(&self, q: MutexGuard<'a, Queue>) -> MutexGuard<'a, Queue> {
        self.waiters.fetch_add(1, Ordering::Relaxed);
        let q = self.done.wait(q).unwrap_or_else(|e| e.into_inner());
        self.waiters.fetch_sub(1, Ordering::Relaxed);
        q
    }
}

#[derive(Debug)]
struct Handle {
    core: Arc<Core>,
    writer: Mutex<Option<JoinHandle<Result<(), JournalError>>>>,
}

impl Handle {
    fn shutdown(&self) -> Result<(), JournalError> {
        lock(&self.core.q).stop = true;
        self.core.wake.notify_one();
        let h = lock(&self.writer).take();
        match h {
            Some(h) => h.join().unwrap_or_else(|_| Err(JournalError::Failing("journal writer thread panicked".into()))),
            None => Ok(()),
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            self.core.log(format_args!("closing: {e}"));
        }
    }
}

impl Journal {
    /// Recovers the leases of `path` (and its snapshot and compaction files), truncates a
    /// damaged tail, and starts the writer thread. `now` decides which leases have ended.
    pub fn open(
        path: &Path,
        durability: Durability,
        compact_interval: Duration,
        now: u32,
    ) -> Result<(Journal, Recovery)> {
        Journal::open_with(path, JournalOptions::new(durability, compact_interval), now)
    }

    pub fn open_with(path: &Path, opts: JournalOptions, now: u32) -> Result<(Journal, Recovery)> {
        Journal::open_hooked(path, opts, now, Arc::default())
    }

    /// A journal whose writes and syncs tests can fail or hold.
    #[cfg(test)]
    pub(crate) fn open_for_test(path: &Path, durability: Durability, now: u32) -> (Journal, Arc<Hooks>) {
        let hooks = Arc::new(Hooks::default());
        let opts = JournalOptions { clock: || 0, ..JournalOptions::new(durability, Duration::ZERO) };
        let (j, _) = Journal::open_hooked(path, opts, now, hooks.clone()).expect("test journal");
        (j, hooks)
    }

    fn open_hooked(path: &Path, opts: JournalOptions, now: u32, hooks: Arc<Hooks>) -> Result<(Journal, Recovery)> {
        let mut leases = Vec::new();
        let (journal, stats) = Journal::open_into(path, opts, now, hooks, &mut |r| leases.push(r))?;
        leases.sort_by_key(|r: &Recovered| (r.ip, r.state as u8));
        Ok((journal, Recovery { leases, stats }))
    }

    /// [`Journal::open_with`], handing each recovered lease and probation to `restore` as it is
    /// read instead of collecting them: millions of leases are never held twice.
    pub fn open_streaming(
        path: &Path,
        opts: JournalOptions,
        now: u32,
        restore: &mut dyn FnMut(Recovered),
    ) -> Result<(Journal, RecoveryStats)> {
        Journal::open_into(path, opts, now, Arc::default(), restore)
    }

    fn open_into(
        path: &Path,
        opts: JournalOptions,
        now: u32,
        hooks: Arc<Hooks>,
        restore: &mut dyn FnMut(Recovered),
    ) -> Result<(Journal, RecoveryStats)> {
        let paths = Paths::new(path);
        let lock_file = lock_exclusive(&paths.lock)?;
        // Leftovers of an interrupted rotation or compaction: never the only copy of a record.
        for stale in [&paths.next, &paths.tmp] {
            remove_if_exists(stale).with_context(|| format!("removing {}", stale.display()))?;
        }
        let (opened, stats) = recover::recover(&paths, now, opts.accept_damage, restore)?;
        let core = Arc::new(Core::new(paths, &opts, hooks));
        for d in stats.damage.iter().filter(|d| !d.synced) {
            core.log(format_args!(
                "{}: torn tail of an interrupted write at offset {} ({}, {} bytes) cut off",
                d.file.display(),
                d.offset,
                d.reason,
                d.dropped_bytes
            ));
        }
        let store = Store::new(opened.file, core.durability == Durability::Fsync, core.hooks.clone());
        let w = WriterThread::new(
            core.clone(),
            store,
            opened.generation,
            opened.good_len,
            stats.resumed_compaction,
            lock_file,
        );
        let thread = std::thread::Builder::new()
            .name("xdhcpd-journal".into())
            .spawn(move || w.run())
            .context("starting the journal writer thread")?;
        let journal = Journal { h: Arc::new(Handle { core, writer: Mutex::new(Some(thread)) }) };
        Ok((journal, stats))
    }

    /// Queues the durable changes of `events` (the others are ignored) and returns what to
    /// [`Journal::wait`] for before sending the replies that depend on them. Does no I/O.
    pub fn append(&self, events: &[LeaseEvent]) -> Ticket {
        let core = &self.h.core;
        let n = events.iter().filter(|e| e.kind.is_durable()).count();
        if n == 0 {
            return Ticket::NONE;
        }
        let mut q = lock(&core.q);
        if q.stop {
            // Never written: `wait` reports `Closed`.
            return Ticket(q.queued + 1);
        }
        if q.failing.is_some() && q.buf.len() + n * RECORD_LEN > core.max_queued {
            core.n.records_dropped.fetch_add(n as u64, Ordering::Relaxed);
            if !q.drop_logged {
                q.drop_logged = true;
                core.log(format_args!(
                    "{} bytes queued while writes fail: dropping new lease changes (their ACKs are withheld)",
                    q.buf.len()
                ));
            }
            return Ticket::DROPPED;
        }
        for e in events {
            if let Some(r) = Record::from_event(e) {
                q.buf.extend_from_slice(&r.encode());
            }
        }
        q.queued += n as u64;
        let t = Ticket(q.queued);
        if q.writer_idle {
            q.writer_idle = false;
            core.wake.notify_one();
        }
        t
    }

    /// Blocks until everything up to `ticket` is durable. `Err` at once while writes fail (the
    /// caller withholds its ACKs; the records stay queued and are written when writes succeed).
    pub fn wait(&self, ticket: Ticket) -> Result<(), JournalError> {
        if ticket == Ticket::NONE {
            return Ok(());
        }
        if ticket == Ticket::DROPPED {
            return Err(JournalError::Overflow);
        }
        let core = &self.h.core;
        let mut q = lock(&core.q);
        loop {
            if q.durable >= ticket.0 {
                return Ok(());
            }
            if q.closed {
                return Err(JournalError::Closed);
            }
            if let Some(e) = &q.failing {
                return Err(JournalError::Failing(e.clone()));
            }
            if q.hurry < ticket.0 {
                q.hurry = ticket.0;
                core.wake.notify_one();
            }
            q = core.sleep(q);
        }
    }

    /// Whether everything up to `ticket` is durable, without blocking or locking (a worker asks
    /// this for the replies it holds, see [`Journal::subscribe`]).
    pub fn check(&self, ticket: Ticket) -> Commit {
        let core = &self.h.core;
        if ticket == Ticket::NONE || core.durable.load(Ordering::Acquire) >= ticket.0 {
            return Commit::Durable;
        }
        if ticket == Ticket::DROPPED {
            return Commit::Failed(JournalError::Overflow);
        }
        if core.closed.load(Ordering::Acquire) {
            return Commit::Failed(JournalError::Closed);
        }
        if core.failing.load(Ordering::Acquire) {
            // The rare path: the message is worth a lock.
            let e = lock(&core.q).failing.clone().unwrap_or_else(|| "write failed".into());
            return Commit::Failed(JournalError::Failing(e));
        }
        Commit::Pending
    }

    /// Rings `bell` whenever the durable point moves, writing fails or recovers, or the
    /// journal closes: what a worker sleeps on while it holds replies for [`Journal::check`].
    pub fn subscribe(&self, bell: Arc<Doorbell>) {
        lock(&self.h.core.bells).push(bell);
    }

    /// Writes and syncs (whatever the durability) everything appended so far.
    pub fn flush(&self) -> Result<(), JournalError> {
        let core = &self.h.core;
        let mut q = lock(&core.q);
        let target = q.queued;
        q.sync_req = q.sync_req.max(target);
        core.wake.notify_one();
        loop {
            if q.synced >= target {
                return Ok(());
            }
            if let Some(e) = &q.failing {
                return Err(JournalError::Failing(e.clone()));
            }
            if q.closed {
                return Err(JournalError::Closed);
            }
            q = core.sleep(q);
        }
    }

    /// Writes and syncs everything queued and stops the threads (a running compaction is
    /// abandoned, which is safe: it resumes at the next start). Other clones stop working too.
    pub fn close(self) -> Result<(), JournalError> {
        self.h.shutdown()
    }

    /// Asks for a compaction now, without waiting for it.
    pub fn compact_now(&self) {
        lock(&self.h.core.q).compact_req += 1;
        self.h.core.wake.notify_one();
    }

    /// Compacts everything appended so far into the snapshot and waits until it is done.
    /// Not for worker threads: it takes as long as writing the snapshot.
    pub fn compact(&self) -> Result<(), JournalError> {
        let core = &self.h.core;
        let mut q = lock(&core.q);
        q.compact_req += 1;
        let mine = q.compact_req;
        core.wake.notify_one();
        loop {
            if q.compact_done >= mine {
                return q.compact_result.clone();
            }
            if let Some(e) = &q.failing {
                return Err(JournalError::Failing(e.clone()));
            }
            if q.closed {
                return Err(JournalError::Closed);
            }
            q = core.sleep(q);
        }
    }

    pub fn counters(&self) -> JournalCounters {
        let core = &self.h.core;
        let n = &core.n;
        let (queued_records, failing, last_error) = {
            let q = lock(&core.q);
            ((q.buf.len() / RECORD_LEN) as u64, q.failing.is_some(), q.last_error.clone())
        };
        JournalCounters {
            records_written: n.records_written.load(Ordering::Relaxed),
            bytes_written: n.bytes_written.load(Ordering::Relaxed),
            writes: n.writes.load(Ordering::Relaxed),
            fsyncs: n.fsyncs.load(Ordering::Relaxed),
            write_failures: n.write_failures.load(Ordering::Relaxed),
            records_dropped: n.records_dropped.load(Ordering::Relaxed),
            compactions: n.compactions.load(Ordering::Relaxed),
            compaction_failures: n.compaction_failures.load(Ordering::Relaxed),
            queued_records,
            failing,
            last_error,
        }
    }

    /// The fdatasync latency histogram: counts per bucket of [`FSYNC_BUCKETS_US`] (not
    /// cumulative; the last: slower than every bound) and the total time in nanoseconds.
    pub fn fsync_histogram(&self) -> ([u64; FSYNC_BUCKETS_US.len() + 1], u64) {
        let n = &self.h.core.n;
        (std::array::from_fn(|i| n.fsync_buckets[i].load(Ordering::Relaxed)), n.fsync_ns.load(Ordering::Relaxed))
    }

    pub fn durability(&self) -> Durability {
        self.h.core.durability
    }
}

/// A random 32-bit number (from the operating system's randomness, through std's hasher keys).
pub fn random_u32() -> u32 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(0x5eed_u64) as u32
}

/// The key of the steering hash kept in `PATH.key` beside lease file `path` (eight hex digits),
/// made on first use: the workers that own recovered leases must be found again after a
/// restart. Readable by the server's user only. Also says whether the key is new (then the
/// steering hashes recorded with older leases, if any, were made with another key).
pub fn steering_key(path: &Path) -> io::Result<(u32, bool)> {
    let file = Paths::new(path).key;
    match files::open_read(&file).and_then(io::read_to_string) {
        Ok(text) => u32::from_str_radix(text.trim(), 16)
            .map(|k| (k, false))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", file.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let key = random_u32();
            let mut f = files::create_new(&file)?;
            f.write_all(format!("{key:08x}\n").as_bytes())?;
            f.sync_all()?;
            sync_dir(&Paths::new(path).dir)?;
            Ok((key, true))
        }
        Err(e) => Err(e),
    }
}

/// Reads the lease files of `path` without changing anything (no truncation, no lock): what a
/// start at `now` would recover. For tools and tests.
pub fn inspect(path: &Path, now: u32) -> Result<Recovery> {
    let mut leases = Vec::new();
    let stats = recover::inspect(&Paths::new(path), now, &mut |r| leases.push(r))?;
    leases.sort_by_key(|r: &Recovered| (r.ip, r.state as u8));
    Ok(Recovery { leases, stats })
}

/// Creates the journal of `generation` at `paths.journal` atomically: written and synced as
/// `PATH.next` first, so `PATH` is never a file without a complete header.
fn create_journal(paths: &Paths, generation: u64, now: u32) -> io::Result<File> {
    let f = create_with_header(
        &paths.next,
        Header { kind: FileKind::Journal, generation, created: now, version: VERSION },
    )?;
    files::rename(&paths.next, &paths.journal)?;
    sync_dir(&paths.dir)?;
    Ok(f)
}

fn create_with_header(path: &Path, h: Header) -> io::Result<File> {
    let mut f = files::create(path)?;
    f.write_all(&h.encode())?;
    f.sync_all()?;
    Ok(f)
}

/// Makes renames, creations and deletions in `dir` durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    files::sync_dir(dir)
}

fn remove_if_exists(p: &Path) -> io::Result<()> {
    match files::remove(p) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Fails as opening would if another process holds the lease files of `path`, without
/// keeping the lock: the server checks this before it touches an interface.
pub fn ensure_unlocked(path: &Path) -> Result<()> {
    let paths = Paths::new(path);
    if files::exists(&paths.lock).with_context(|| format!("{}", paths.lock.display()))? {
        drop(lock_exclusive(&paths.lock)?);
    }
    Ok(())
}

/// Takes `PATH.lock` for the life of the writer: a second server on the same files would
/// interleave records and delete each other's journals.
fn lock_exclusive(path: &Path) -> Result<File> {
    let f = files::open_or_create(path).with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: flock on a file descriptor we own and keep open; no memory is involved.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r != 0 {
        let e = io::Error::last_os_error();
        bail!("{} is locked by another process ({e}): is another xdhcpd using this lease file?", path.display());
    }
    Ok(f)
}
