//! The compaction job, on its own thread: merges `PATH.old` into the snapshot.
//!
//! Crash-safe at every step: the snapshot is replaced by a rename only once its replacement is
//! complete and synced, and `PATH.old` is deleted only after that rename is durable. A stale
//! `PATH.old` left by a crash after the rename has a generation the snapshot already covers,
//! so recovery skips it instead of replaying it twice.

use super::format::{FileKind, Header, HEADER_LEN, RECORD_LEN, VERSION};
use super::replay::{self, Replay};
use super::{sync_dir, Core};
use std::fs::{self, File};
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
    /// Half of `PATH.snapshot.tmp` written.
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

pub(super) fn run(core: &Core, cancel: &AtomicBool) -> io::Result<Outcome> {
    let r = merge(core, cancel);
    if r.is_err() {
        // A half-written snapshot is useless and may be what filled the disk.
        let _ = fs::remove_file(&core.paths.tmp);
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
    let mut state = Replay::default();
    let covered =
        match replay::load(&p.snapshot, FileKind::Snapshot, &mut state).map_err(ctx("reading", &p.snapshot))? {
            Some(l) => {
                if let Some((why, dropped)) = l.scan.damage {
                    core.log(format_args!(
                        "{}: {why} at offset {}: {dropped} bytes not carried into the new snapshot",
                        p.snapshot.display(),
                        l.scan.good_end
                    ));
                }
                l.header.generation
            }
            None => 0,
        };
    let Some((old, _)) = replay::peek(&p.old).map_err(ctx("reading", &p.old))? else {
        return Ok(Outcome::Stale);
    };
    if old.generation <= covered {
        fs::remove_file(&p.old).map_err(ctx("removing", &p.old))?;
        return Ok(Outcome::Stale);
    }
    replay::load(&p.old, FileKind::Journal, &mut state).map_err(ctx("reading", &p.old))?;
    if cancel.load(Ordering::Relaxed) || crash_here(core, CrashPoint::Rotated) {
        return Ok(Outcome::Cancelled);
    }

    let now = (core.clock)();
    let (leases, probations) = state.len();
    let half = (leases + probations) / 2;
    let file = File::create(&p.tmp).map_err(ctx("creating", &p.tmp))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let write = |w: &mut BufWriter<File>, b: &[u8]| w.write_all(b).map_err(ctx("writing", &p.tmp));
    write(
        &mut w,
        &Header { kind: FileKind::Snapshot, generation: old.generation, created: now, version: VERSION }.encode(),
    )?;
    let mut count = 0usize;
    let (mut live_leases, mut live_probations) = (0, 0);
    for rec in state.live(now) {
        if count.is_multiple_of(65536) && cancel.load(Ordering::Relaxed) {
            drop(w);
            let _ = fs::remove_file(&p.tmp);
            return Ok(Outcome::Cancelled);
        }
        if count == half && crash_here(core, CrashPoint::TmpPartial) {
            w.flush().map_err(ctx("writing", &p.tmp))?;
            return Ok(Outcome::Cancelled);
        }
        write(&mut w, &rec.encode())?;
        count += 1;
        if rec.kind == super::format::RecordKind::Bound {
            live_leases += 1;
        } else {
            live_probations += 1;
        }
    }
    let file = w.into_inner().map_err(|e| ctx("writing", &p.tmp)(e.into_error()))?;
    file.sync_all().map_err(ctx("syncing", &p.tmp))?;
    drop(file);
    if crash_here(core, CrashPoint::TmpWritten) {
        return Ok(Outcome::Cancelled);
    }
    fs::rename(&p.tmp, &p.snapshot).map_err(ctx("renaming into", &p.snapshot))?;
    sync_dir(&p.dir).map_err(ctx("syncing", &p.dir))?;
    if crash_here(core, CrashPoint::Renamed) {
        return Ok(Outcome::Cancelled);
    }
    fs::remove_file(&p.old).map_err(ctx("removing", &p.old))?;
    Ok(Outcome::Done {
        leases: live_leases,
        probations: live_probations,
        bytes: (HEADER_LEN + count * RECORD_LEN) as u64,
        millis: start.elapsed().as_millis() as u64,
    })
}
