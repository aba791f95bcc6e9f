//! The compaction job, on its own thread: merges `PATH.old` into the snapshot.
//!
//! Crash-safe at every step: the snapshot is replaced by a rename only once its replacement is
//! complete and synced, and `PATH.old` is deleted only after that rename is durable. A stale
//! `PATH.old` left by a crash after the rename has a generation the snapshot already covers,
//! so recovery skips it instead of replaying it twice.
//!
//! A good neighbour: the thread runs at the lowest CPU and I/O priority, and writes the snapshot
//! back in paced steps ([`PACE_BYTES`], each followed by a rest as long), so that a snapshot of
//! millions of leases does not stall a worker or the journal's syncs the ACKs wait for.

use super::format::{FileKind, Header, RecordKind, HEADER_LEN, RECORD_LEN, VERSION};
use super::replay::{self, Journals};
use super::{files, sync_dir, Core};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    Done {
        leases: usize,
        probations: usize,
        bytes: u64,
        millis: u64,
    },
    /// Nothing to merge (no `PATH.old`, or the snapshot already included it).
    Stale,
    /// Stopped early; `PATH.old` stays and is merged later.
    Cancelled,
}

/// Steps after which a test can make the job stop as if the process had died.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CrashPoint {
    /// Rotated, nothing written yet.
    Rotated = 1,
    /// Part of `PATH.snapshot.tmp` written.
    TmpPartial = 2,
    /// `PATH.snapshot.tmp` complete and synced, not renamed.
    TmpWritten = 3,
    /// Snapshot renamed into place, `PATH.old` not deleted.
    Renamed = 4,
}

#[cfg(test)]
fn crash_here(core: &Core, p: CrashPoint) -> bool {
    core.hooks.t.crash(p)
}

#[cfg(not(test))]
fn crash_here(_: &Core, _: CrashPoint) -> bool {
    false
}

/// Bytes of snapshot written back per step of paced writeback; after each step the thread
/// rests as long as the step took (at most [`MAX_REST`]): the disk is left idle half the time
/// for the journal's syncs, and the ACKs waiting on them.
const PACE_BYTES: u64 = 512 << 10;
const MAX_REST: std::time::Duration = std::time::Duration::from_millis(20);

pub(super) fn run(core: &Core, cancel: &AtomicBool) -> io::Result<Outcome> {
    if let Err(e) = dhcp_io::sys::background_thread() {
        core.log(format_args!("compaction runs at normal priority: {e}"));
    }
    let r = merge(core, cancel);
    if r.is_err() {
        // A half-written snapshot is useless and may be what filled the disk.
        let _ = files::remove(&core.paths.tmp);
    }
    r
}

fn merge(core: &Core, cancel: &AtomicBool) -> io::Result<Outcome> {
    let p = &core.paths;
    let start = Instant::now();
    let ctx = |what: &'static str, path: &std::path::Path| {
        let path = path.display().to_string();
        move |e: io::Error| io::Error::new(e.kind(), format!("{what} {path}: {e}"))
    };
    let covered = replay::peek(&p.snapshot).map_err(ctx("reading", &p.snapshot))?.map_or(0, |h| h.0.generation);
    let Some((old, _)) = replay::peek(&p.old).map_err(ctx("reading", &p.old))? else {
        return Ok(Outcome::Stale);
    };
    if old.generation <= covered {
        files::remove(&p.old).map_err(ctx("removing", &p.old))?;
        return Ok(Outcome::Stale);
    }
    let mut journals = Journals::default();
    replay::read(&p.old, FileKind::Journal, |r| journals.push(r)).map_err(ctx("reading", &p.old))?;
    if cancel.load(Ordering::Relaxed) || crash_here(core, CrashPoint::Rotated) {
        return Ok(Outcome::Cancelled);
    }
    let now = (core.clock)();
    let w = SnapshotWriter::create(core, old.generation, now)?;
    let Some((w, counts, damage)) = w.fill(core, cancel, journals, now)? else {
        return Ok(Outcome::Cancelled);
    };
    for d in damage.iter().filter(|d| d.synced) {
        // Recovery copied damage it found aside; this one appeared since: say so loudly.
        core.log(format_args!(
            "{}: {} at bytes {}..{}: the leases there are not in the new snapshot (the workers still hold them)",
            d.file.display(),
            d.reason,
            d.offset,
            d.offset + d.dropped_bytes
        ));
    }
    if !w.commit(core)? {
        return Ok(Outcome::Cancelled);
    }
    if crash_here(core, CrashPoint::Renamed) {
        return Ok(Outcome::Cancelled);
    }
    files::remove(&p.old).map_err(ctx("removing", &p.old))?;
    Ok(Outcome::Done {
        leases: counts.0,
        probations: counts.1,
        bytes: (HEADER_LEN + (counts.0 + counts.1) * RECORD_LEN) as u64,
        millis: start.elapsed().as_millis() as u64,
    })
}

/// `PATH.snapshot.tmp` being written, then renamed into place.
struct SnapshotWriter {
    w: BufWriter<File>,
    /// Bytes handed to `w` so far, and how far they were written back.
    written: u64,
    paced: u64,
}

impl SnapshotWriter {
    fn create(core: &Core, generation: u64, now: u32) -> io::Result<SnapshotWriter> {
        let p = &core.paths;
        let at = |e: io::Error| io::Error::new(e.kind(), format!("creating {}: {e}", p.tmp.display()));
        let file = files::create(&p.tmp).map_err(at)?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        w.write_all(&Header { kind: FileKind::Snapshot, generation, created: now, version: VERSION }.encode())
            .map_err(at)?;
        Ok(SnapshotWriter { w, written: HEADER_LEN as u64, paced: 0 })
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.w.write_all(bytes)?;
        self.written += bytes.len() as u64;
        if self.written - self.paced >= PACE_BYTES {
            self.w.flush()?;
            let step = Instant::now();
            dhcp_io::sys::write_behind(self.w.get_ref(), self.paced, self.written)?;
            self.paced = self.written;
            std::thread::sleep(step.elapsed().min(MAX_REST));
        }
        Ok(())
    }

    /// Streams the old snapshot's live records (and the journal's changes) into the new one;
    /// `None` if cancelled (or a test's crash point). Returns (leases, probations) written, and
    /// the damage the old snapshot showed.
    #[allow(clippy::type_complexity)]
    fn fill(
        mut self,
        core: &Core,
        cancel: &AtomicBool,
        journals: Journals,
        now: u32,
    ) -> io::Result<Option<(SnapshotWriter, (usize, usize), Vec<replay::DamageReport>)>> {
        let p = &core.paths;
        let (mut counts, mut error, mut stopped) = ((0usize, 0usize), None, false);
        let (report, _) = replay::merge(&p.snapshot, journals, now, |rec| {
            if error.is_some() || stopped {
                return;
            }
            let n = counts.0 + counts.1;
            if n.is_multiple_of(65536) && cancel.load(Ordering::Relaxed) {
                stopped = true;
                return;
            }
            if n == 16 && crash_here(core, CrashPoint::TmpPartial) {
                let _ = self.w.flush();
                stopped = true;
                return;
            }
            if let Err(e) = self.write(&rec.encode()) {
                error = Some(e);
            }
            if rec.kind == RecordKind::Bound {
                counts.0 += 1;
            } else {
                counts.1 += 1;
            }
        })?;
        if let Some(e) = error {
            return Err(io::Error::new(e.kind(), format!("writing {}: {e}", p.tmp.display())));
        }
        if stopped {
            if !crash_here(core, CrashPoint::TmpPartial) {
                drop(self);
                let _ = files::remove(&p.tmp);
            }
            return Ok(None);
        }
        Ok(Some((self, counts, report.map(|r| r.damage).unwrap_or_default())))
    }

    /// Syncs the new snapshot and renames it over the old one, durably; false if a test's
    /// crash point stopped it in between.
    fn commit(self, core: &Core) -> io::Result<bool> {
        let p = &core.paths;
        let at = |what: &'static str, path: &std::path::Path| {
            let path = path.display().to_string();
            move |e: io::Error| io::Error::new(e.kind(), format!("{what} {path}: {e}"))
        };
        let file = self.w.into_inner().map_err(|e| at("writing", &p.tmp)(e.into_error()))?;
        file.sync_all().map_err(at("syncing", &p.tmp))?;
        drop(file);
        if crash_here(core, CrashPoint::TmpWritten) {
            return Ok(false);
        }
        files::rename(&p.tmp, &p.snapshot).map_err(at("renaming into", &p.snapshot))?;
        sync_dir(&p.dir).map_err(at("syncing", &p.dir))?;
        Ok(true)
    }
}
