//! The writer thread: group commit, failure and retry, rotation for compaction, shutdown.
//!
//! Each turn takes every queued record at once, writes them with one `pwrite` at the end of the
//! last good record and (with fsync) one `fdatasync`, then publishes the new durable sequence
//! number. Records queued meanwhile form the next batch, so one sync covers all workers.
//!
//! Turns are paced: one starts at most every [`GROUP_PERIOD`] (unless a flush, a caller
//! blocked in `wait`, or a stop asks), so under load the thread wakes a few hundred times a
//! second whatever the workers' batch rate, instead of once per batch beside the workers on
//! their cores. While it paces, and for one period after a turn, it is not idle but wakes by
//! the clock, so appending records wakes nobody (no system call on a worker's core).

use super::format::{FileKind, Header, Record, HEADER_LEN, RECORD_LEN, VERSION};
use super::{compact, create_with_header, files, lock, sync_dir, Core, Durability, Hooks, JournalError};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Time between attempts while writes fail.
const RETRY: Duration = Duration::from_millis(100);

/// Least time between the starts of two write turns: what an ACK may wait beyond its write
/// (and sync) for its records to be gathered with others. Each turn costs a write, a sync and
/// context switches, on the worker's own core when one core serves: with one worker and fsync
/// (5 rounds interleaved) 1 ms cost 5.9 µs of CPU per lease and 3 ms 5.4 µs (memory only 5.3),
/// for up to 2 ms more ACK latency under full load. An idle writer still starts a turn at once.
const GROUP_PERIOD: Duration = Duration::from_millis(3);

/// Zeros the journal is extended by ahead of its records, with fsync durability: a write
/// within the file's length changes no metadata, so each `fdatasync` writes the data alone
/// instead of also committing the file system's own journal for the new size (ext4). Recovery
/// reads zeros at a journal's end as its unused room (`format`). Without syncs it is not done:
/// the kernel could then keep a later write and lose an earlier one in the zeros between.
const ROOM: u64 = 1 << 20;

/// The journal file being appended.
#[derive(Debug)]
pub(super) struct Store {
    file: File,
    /// Extend ahead by [`ROOM`] (fsync durability).
    extend: bool,
    /// Bytes known to be in the file (records and zeros); 0 until the first write.
    allocated: u64,
    #[cfg_attr(not(test), allow(dead_code))]
    hooks: Arc<Hooks>,
}

impl Store {
    pub(super) fn new(file: File, extend: bool, hooks: Arc<Hooks>) -> Store {
        #[cfg(test)]
        hooks.t.set_fd(&file);
        Store { file, extend, allocated: 0, hooks }
    }

    fn write_at(&mut self, buf: &[u8], at: u64) -> io::Result<()> {
        #[cfg(test)]
        self.hooks.t.before_write(&self.file, buf, at)?;
        self.file.write_all_at(buf, at)?;
        let end = at + buf.len() as u64;
        if self.extend && end > self.allocated {
            // The same sync as the records' makes the room durable.
            self.zero(end, end.next_multiple_of(ROOM) + ROOM)?;
        }
        self.allocated = self.allocated.max(end);
        Ok(())
    }

    /// Writes zeros over `from..to`.
    fn zero(&mut self, from: u64, to: u64) -> io::Result<()> {
        static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
        let mut at = from;
        while at < to {
            let n = (to - at).min(ZEROS.len() as u64) as usize;
            self.file.write_all_at(&ZEROS[..n], at)?;
            at += n as u64;
        }
        self.allocated = to;
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        #[cfg(test)]
        self.hooks.t.before_sync();
        self.file.sync_data()
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.allocated = len;
        self.file.set_len(len)
    }

    /// Gives back the room beyond `len` (a clean stop leaves the file ending on its records).
    fn trim(&mut self, len: u64) -> io::Result<()> {
        if self.allocated > len {
            self.truncate(len)?;
            self.file.sync_all()?;
        }
        Ok(())
    }
}

/// A running compaction.
#[derive(Debug)]
struct Job {
    handle: JoinHandle<io::Result<compact::Outcome>>,
    /// The compaction request it answers (0: it only finishes an earlier `PATH.old`).
    serves: u64,
    cancel: Arc<AtomicBool>,
}

#[derive(Debug)]
pub(super) struct WriterThread {
    core: Arc<Core>,
    store: Store,
    generation: u64,
    /// End of the last record written (and, with fsync, synced). Writes go here, so bytes of a
    /// failed partial write are overwritten by the retry.
    good_len: u64,
    /// Spare buffer swapped with the queue's.
    batch: Vec<u8>,
    job: Option<Job>,
    /// `PATH.old` exists and is not yet in the snapshot.
    old_pending: bool,
    compact_handled: u64,
    next_compact: Option<Instant>,
    retry_at: Option<Instant>,
    /// When the last write turn started (pacing, see [`GROUP_PERIOD`]).
    last_turn: Option<Instant>,
    /// A rotation's renames are not known to be durable yet: no record may be acknowledged in
    /// the new file until they are, or a crash could bring back the old names.
    dir_dirty: bool,
    /// A rotation failed half-way and could not be undone: compaction stays off.
    rotation_broken: bool,
    _lock: File,
}

/// Marks the journal closed when the writer thread ends, even by a panic, so no caller waits
/// forever.
struct CloseGuard(Arc<Core>);

impl Drop for CloseGuard {
    fn drop(&mut self) {
        let mut q = lock(&self.0.q);
        q.closed = true;
        self.0.announce(&q);
        drop(q);
        self.0.notify();
    }
}

impl WriterThread {
    pub(super) fn new(
        core: Arc<Core>,
        store: Store,
        generation: u64,
        good_len: u64,
        old_pending: bool,
        lock_file: File,
    ) -> WriterThread {
        let next_compact = (!core.compact_interval.is_zero()).then(|| Instant::now() + core.compact_interval);
        WriterThread {
            core,
            store,
            generation,
            good_len,
            batch: Vec::with_capacity(64 * RECORD_LEN),
            job: None,
            old_pending,
            compact_handled: 0,
            next_compact,
            retry_at: None,
            last_turn: None,
            dir_dirty: false,
            rotation_broken: false,
            _lock: lock_file,
        }
    }

    pub(super) fn run(mut self) -> Result<(), JournalError> {
        let _guard = CloseGuard(self.core.clone());
        if self.old_pending {
            // A compaction was interrupted by a stop or crash: finish it.
            self.start_job(0);
        }
        loop {
            let stop = self.wait_for_work();
            self.reap_job(false);
            self.write_queued(stop);
            if stop {
                return self.finish();
            }
            self.compact_if_due();
        }
    }

    /// Sleeps until there is something to do; true when asked to stop.
    fn wait_for_work(&mut self) -> bool {
        let core = self.core.clone();
        let mut q = lock(&core.q);
        loop {
            if q.stop {
                return true;
            }
            let now = Instant::now();
            let flush = q.sync_req > q.synced;
            let hurry = flush || q.hurry > q.durable;
            let pending = !q.buf.is_empty() || flush;
            let may_write = self.retry_at.is_none_or(|t| now >= t);
            if q.job_finished {
                return false;
            }
            if pending && may_write {
                // Gather more records for this turn unless someone blocks for them.
                let Some(due) = self.turn_due(now).filter(|_| !hurry) else { return false };
                q = core.wake.wait_timeout(q, due - now).unwrap_or_else(|e| e.into_inner()).0;
                continue;
            }
            if let Some(t) = self.next_compact {
                if now >= t {
                    q.compact_req += 1;
                    self.next_compact = Some(now + core.compact_interval);
                }
            }
            // Also by size: under churn the journal would otherwise grow until the disk fills.
            let big = core.compact_size > 0 && self.good_len > core.compact_size;
            if big && self.job.is_none() && q.compact_req <= self.compact_handled {
                q.compact_req = self.compact_handled + 1;
            }
            if q.compact_req > self.compact_handled && self.job.is_none() && q.failing.is_none() {
                return false;
            }
            if let Some(due) = self.turn_due(now).filter(|_| self.retry_at.is_none()) {
                // Under load the next records come within the period: look for them by the
                // clock then, rather than be woken by an append (a system call on a worker's
                // core per turn). Idle only after a period without any.
                q = core.wake.wait_timeout(q, due - now).unwrap_or_else(|e| e.into_inner()).0;
                continue;
            }
            let mut deadline = self.next_compact;
            if pending {
                deadline = match (deadline, self.retry_at) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            q.writer_idle = true;
            q = match deadline {
                Some(d) => {
                    core.wake.wait_timeout(q, d.saturating_duration_since(now)).unwrap_or_else(|e| e.into_inner()).0
                }
                None => core.wake.wait(q).unwrap_or_else(|e| e.into_inner()),
            };
            q.writer_idle = false;
        }
    }

    /// When the next write turn may start, if that is still to come (see [`GROUP_PERIOD`]).
    fn turn_due(&self, now: Instant) -> Option<Instant> {
        self.last_turn.map(|t| t + GROUP_PERIOD).filter(|&d| d > now)
    }

    /// Writes (and syncs) what is queued; on failure puts it back and marks the journal failing.
    fn write_queued(&mut self, stop: bool) {
        if !stop && self.retry_at.is_some_and(|t| Instant::now() < t) {
            return;
        }
        let (target, sync) = {
            let mut q = lock(&self.core.q);
            let sync_wanted = q.sync_req > q.synced;
            if q.buf.is_empty() && !sync_wanted {
                return;
            }
            std::mem::swap(&mut q.buf, &mut self.batch);
            (q.queued, self.core.durability == Durability::Fsync || sync_wanted)
        };
        self.last_turn = Some(Instant::now());
        // The batch's commit record: recovery keeps what precedes one (see `format`).
        let records = self.batch.len();
        if records > 0 {
            self.batch.extend_from_slice(&Record::commit(target).encode());
        }
        match self.write_batch(sync) {
            Ok(()) => {
                let n = self.batch.len() as u64;
                self.good_len += n;
                self.batch.clear();
                let c = &self.core.n;
                c.records_written.fetch_add((records / RECORD_LEN) as u64, Ordering::Relaxed);
                c.bytes_written.fetch_add(n, Ordering::Relaxed);
                let mut q = lock(&self.core.q);
                q.written = target;
                if sync {
                    q.synced = target;
                }
                q.durable = if self.core.durability == Durability::Fsync { q.synced } else { q.written };
                q.drop_logged = false;
                if q.failing.take().is_some() {
                    self.core.log(format_args!(
                        "writes succeed again: {} records written, ACKs resume",
                        records / RECORD_LEN
                    ));
                }
                self.core.announce(&q);
                drop(q);
                self.retry_at = None;
                self.core.notify();
            }
            Err(e) => {
                // Best effort: leave the file ending on a record. If this fails too, the retry
                // overwrites from `good_len` anyway.
                let _ = self.store.truncate(self.good_len);
                self.core.n.write_failures.fetch_add(1, Ordering::Relaxed);
                let msg: Arc<str> = e.to_string().into();
                let mut q = lock(&self.core.q);
                // The failed batch goes back in front of what was queued meanwhile, without its
                // commit record (the retry writes one after everything).
                self.batch.truncate(records);
                self.batch.extend_from_slice(&q.buf);
                std::mem::swap(&mut q.buf, &mut self.batch);
                self.batch.clear();
                if q.failing.is_none() {
                    self.core.log(format_args!(
                        "{msg}: ACKs withheld until the lease file can be written again (retrying every {} ms)",
                        RETRY.as_millis()
                    ));
                }
                q.last_error = Some(msg.clone());
                q.failing = Some(msg);
                self.core.announce(&q);
                drop(q);
                self.retry_at = Some(Instant::now() + RETRY);
                self.core.notify();
            }
        }
    }

    fn write_batch(&mut self, sync: bool) -> io::Result<()> {
        fn what(op: &'static str) -> impl Fn(io::Error) -> io::Error {
            move |e| io::Error::new(e.kind(), format!("{op}: {e}"))
        }
        if self.dir_dirty {
            sync_dir(&self.core.paths.dir).map_err(what("syncing the directory after a rotation"))?;
            self.dir_dirty = false;
        }
        if !self.batch.is_empty() {
            self.store.write_at(&self.batch, self.good_len).map_err(what("write"))?;
            self.core.n.writes.fetch_add(1, Ordering::Relaxed);
        }
        if sync {
            let started = std::time::Instant::now();
            self.store.sync().map_err(what("fdatasync"))?;
            self.core.n.fsync_took(started.elapsed());
            self.core.n.fsyncs.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Last steps after `stop`: the final write was attempted; sync and report.
    fn finish(&mut self) -> Result<(), JournalError> {
        if let Some(job) = &self.job {
            job.cancel.store(true, Ordering::Relaxed);
        }
        self.reap_job(true);
        if self.dir_dirty && sync_dir(&self.core.paths.dir).is_err() {
            self.core.log(format_args!("stopping: the last rotation may not be durable (directory sync failed)"));
        }
        let (left, unsynced, failing) = {
            let q = lock(&self.core.q);
            (q.buf.len() / RECORD_LEN, q.synced < q.written, q.failing.clone())
        };
        if left > 0 {
            let e = failing.unwrap_or_else(|| "not written".into());
            self.core.log(format_args!("stopping with {left} lease changes not written: {e}"));
            return Err(JournalError::Failing(e));
        }
        if unsynced {
            // Even without fsync durability, a clean stop leaves everything on disk.
            self.store.sync().map_err(|e| JournalError::Failing(format!("fdatasync: {e}").into()))?;
            self.core.n.fsyncs.fetch_add(1, Ordering::Relaxed);
            let mut q = lock(&self.core.q);
            q.synced = q.written;
            q.durable = q.written;
            self.core.announce(&q);
        }
        if let Err(e) = self.store.trim(self.good_len) {
            // Harmless: recovery reads the zeros as the journal's room.
            self.core.log(format_args!("stopping: giving back the journal's unused room failed: {e}"));
        }
        Ok(())
    }

    /// Records the answer to compaction requests up to `req` and wakes their callers.
    fn finish_requests(&mut self, req: u64, result: Result<(), JournalError>) {
        self.compact_handled = self.compact_handled.max(req);
        let mut q = lock(&self.core.q);
        q.compact_done = q.compact_done.max(req);
        q.compact_result = result;
        drop(q);
        self.core.done.notify_all();
    }

    fn compact_if_due(&mut self) {
        let (req, failing) = {
            let q = lock(&self.core.q);
            (q.compact_req, q.failing.is_some())
        };
        // While writes fail, a rotation would fail too (and `compact` callers see the failure).
        if req <= self.compact_handled || self.job.is_some() || failing {
            return;
        }
        if self.rotation_broken {
            self.finish_requests(req, Err(JournalError::Compaction("off after a failed rotation".into())));
            return;
        }
        if self.old_pending {
            // First merge the journal already rotated; the request is served by the rotation after.
            self.start_job(0);
            return;
        }
        if self.good_len == HEADER_LEN as u64 {
            // Nothing appended since the last rotation: the snapshot is current.
            self.finish_requests(req, Ok(()));
            return;
        }
        match self.rotate() {
            Ok(()) => {
                self.compact_handled = req;
                self.start_job(req);
            }
            Err(e) => {
                self.core.n.compaction_failures.fetch_add(1, Ordering::Relaxed);
                self.core.log(format_args!("compaction: starting a new journal failed: {e}"));
                let msg: Arc<str> = e.to_string().into();
                lock(&self.core.q).last_error = Some(msg.clone());
                self.finish_requests(req, Err(JournalError::Compaction(msg)));
            }
        }
    }

    /// `PATH` becomes `PATH.old` and a fresh `PATH` (next generation) takes the appends.
    fn rotate(&mut self) -> io::Result<()> {
        let p = &self.core.paths;
        // Drop any bytes of a failed write past the last record: compaction reads this file.
        self.store.truncate(self.good_len)?;
        let generation = self.generation + 1;
        let now = (self.core.clock)();
        let file = create_with_header(
            &p.next,
            Header { kind: FileKind::Journal, generation, created: now, version: VERSION },
        )?;
        if let Err(e) = files::rename(&p.journal, &p.old) {
            let _ = files::remove(&p.next);
            return Err(e);
        }
        if let Err(e) = files::rename(&p.next, &p.journal) {
            // Put the journal back under its name, where recovery looks for it.
            if let Err(e2) = files::rename(&p.old, &p.journal) {
                self.rotation_broken = true;
                self.core.log(format_args!(
                    "rotation failed ({e}) and could not be undone ({e2}): appending to {}, compaction off",
                    p.old.display()
                ));
                // The open file is now `PATH.old`: recovery reads it; nothing may delete it.
                self.old_pending = false;
            }
            let _ = files::remove(&p.next);
            return Err(e);
        }
        self.store = Store::new(file, self.core.durability == Durability::Fsync, self.core.hooks.clone());
        self.generation = generation;
        self.good_len = HEADER_LEN as u64;
        self.old_pending = true;
        self.dir_dirty = true;
        // Retried before the next write if it fails now.
        if sync_dir(&p.dir).is_ok() {
            self.dir_dirty = false;
        }
        Ok(())
    }

    fn start_job(&mut self, serves: u64) {
        let cancel = Arc::new(AtomicBool::new(false));
        let core = self.core.clone();
        let flag = cancel.clone();
        let spawned = std::thread::Builder::new().name("xdhcpd-compact".into()).spawn(move || {
            let r = compact::run(&core, &flag);
            lock(&core.q).job_finished = true;
            core.wake.notify_one();
            r
        });
        match spawned {
            Ok(handle) => self.job = Some(Job { handle, serves, cancel }),
            Err(e) => {
                self.core.log(format_args!("compaction: cannot start a thread: {e}"));
                self.core.n.compaction_failures.fetch_add(1, Ordering::Relaxed);
                let req = if serves > 0 { serves } else { lock(&self.core.q).compact_req };
                self.finish_requests(req, Err(JournalError::Compaction(e.to_string().into())));
            }
        }
    }

    /// Collects a finished compaction (or waits for it when `block`).
    fn reap_job(&mut self, block: bool) {
        if self.job.is_none() {
            return;
        }
        {
            let mut q = lock(&self.core.q);
            if !block && !q.job_finished {
                return;
            }
            q.job_finished = false;
        }
        let Some(job) = self.job.take() else { return };
        let r = job.handle.join().unwrap_or_else(|_| Err(io::Error::other("compaction thread panicked")));
        match r {
            Ok(compact::Outcome::Done { leases, probations, bytes, millis }) => {
                self.old_pending = false;
                self.core.n.compactions.fetch_add(1, Ordering::Relaxed);
                self.core.log(format_args!(
                    "compacted: {leases} leases and {probations} probations, snapshot {bytes} bytes, {millis} ms"
                ));
                if job.serves > 0 {
                    self.finish_requests(job.serves, Ok(()));
                }
            }
            Ok(compact::Outcome::Stale) => {
                self.old_pending = false;
                if job.serves > 0 {
                    self.finish_requests(job.serves, Ok(()));
                }
            }
            Ok(compact::Outcome::Cancelled) => {
                if job.serves > 0 {
                    self.finish_requests(job.serves, Err(JournalError::Compaction("cancelled".into())));
                }
            }
            Err(e) => {
                self.core.n.compaction_failures.fetch_add(1, Ordering::Relaxed);
                self.core.log(format_args!("compaction failed (retried at the next interval; nothing is lost): {e}"));
                let msg: Arc<str> = e.to_string().into();
                let pending = {
                    let mut q = lock(&self.core.q);
                    q.last_error = Some(msg.clone());
                    q.compact_req
                };
                // Answer waiting requests now rather than retrying in a loop.
                let req = if job.serves > 0 { job.serves } else { pending };
                self.finish_requests(req, Err(JournalError::Compaction(msg)));
            }
        }
    }
}
