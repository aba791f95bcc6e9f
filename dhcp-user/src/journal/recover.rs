//! Recovery at start: which lease files count, reading them (journals kept in memory, the
//! snapshot streamed straight to the engines, see [`replay::merge`]), what to do about damage,
//! and leaving the journal ready to append.
//!
//! Damage: the torn tail of a write a crash interrupted (after the last commit record) is cut
//! off; its records were never acknowledged. Damage to synced data (before a commit record, or
//! anywhere in a snapshot) loses leases: the server refuses to start unless the operator
//! accepts it (`--accept-damaged-journal`), and says exactly which bytes of which file. Every
//! damaged stretch is copied aside first, under a name of its own (file, generation, offset),
//! never over an earlier copy, and copied as a stream (a damaged file may be large).
//!
//! Must never: change a file before deciding whether to start; lose a record of an acknowledged
//! lease without saying so; hold a snapshot's records in memory.

use super::format::{FileKind, Header, HEADER_LEN, RECORD_LEN, VERSION};
use super::replay::{self, FileReport, Journals};
use super::{create_journal, files, remove_if_exists, sync_dir, Paths, Recovered, RecoveryStats};
use anyhow::{bail, Context, Result};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// The journal to append to after recovery.
pub(super) struct Opened {
    pub(super) file: File,
    pub(super) generation: u64,
    /// Where appending continues.
    pub(super) good_len: u64,
}

fn reading(p: &Path) -> String {
    format!("reading {}", p.display())
}

/// Reads the lease files of `paths`, hands every live lease and probation to `sink`, and opens
/// (or creates) the journal to append to. Refuses damaged synced data unless `accept_damage`.
pub(super) fn recover(
    paths: &Paths,
    now: u32,
    accept_damage: bool,
    sink: &mut dyn FnMut(Recovered),
) -> Result<(Opened, RecoveryStats)> {
    let mut stats = RecoveryStats::default();
    let mut journals = Journals::default();
    let covered =
        replay::peek(&paths.snapshot).with_context(|| reading(&paths.snapshot))?.map_or(0, |h| h.0.generation);
    let newest = read_old(paths, covered, &mut journals, &mut stats)?;
    let current = read_current(paths, newest, &mut journals, &mut stats)?;
    let (snapshot, ended) = replay::merge(&paths.snapshot, journals, now, |r| sink(live(&mut stats, &r)))
        .with_context(|| reading(&paths.snapshot))?;
    if let Some(s) = &snapshot {
        note(&mut stats, s);
    }
    stats.expired_reclaimed = ended;
    judge_damage(paths, &mut stats, accept_damage)?;
    let opened = open_current(paths, newest, current, now, &mut stats)?;
    stats.generation = opened.generation;
    Ok((opened, stats))
}

/// Reads, without changing anything, what a start at `now` would recover.
pub(super) fn inspect(paths: &Paths, now: u32, sink: &mut dyn FnMut(Recovered)) -> Result<RecoveryStats> {
    let mut stats = RecoveryStats::default();
    let mut journals = Journals::default();
    let covered = replay::peek(&paths.snapshot)?.map_or(0, |h| h.0.generation);
    for p in [&paths.old, &paths.journal] {
        if let Some((h, _)) = replay::peek(p)? {
            if h.generation > covered {
                if let Some(rep) = replay::read(p, FileKind::Journal, |r| journals.push(r))? {
                    note(&mut stats, &rep);
                    stats.generation = rep.header.generation;
                }
            }
        }
    }
    let (snapshot, ended) = replay::merge(&paths.snapshot, journals, now, |r| sink(live(&mut stats, &r)))?;
    if let Some(s) = &snapshot {
        note(&mut stats, s);
    }
    stats.expired_reclaimed = ended;
    Ok(stats)
}

/// `PATH.old` of an interrupted compaction: replayed, or removed if the snapshot already holds
/// it (a crash just before its deletion). Returns the newest generation read so far.
fn read_old(paths: &Paths, covered: u64, journals: &mut Journals, stats: &mut RecoveryStats) -> Result<u64> {
    let old = &paths.old;
    match replay::peek(old).with_context(|| reading(old))? {
        Some((h, _)) if h.kind == FileKind::Journal && h.generation <= covered => {
            files::remove(old).with_context(|| format!("removing {}", old.display()))?;
            sync_dir(&paths.dir).with_context(|| format!("syncing {}", paths.dir.display()))?;
            stats.stale_old_removed = true;
            Ok(covered)
        }
        Some(_) => {
            let rep = replay::read(old, FileKind::Journal, |r| journals.push(r)).with_context(|| reading(old))?;
            let Some(rep) = rep else { return Ok(covered) };
            note(stats, &rep);
            stats.resumed_compaction = true;
            Ok(rep.header.generation)
        }
        None => {
            remove_if_exists(old).with_context(|| format!("removing {}", old.display()))?;
            Ok(covered)
        }
    }
}

/// The journal being appended: checked to belong with the others, and replayed.
fn read_current(
    paths: &Paths,
    newest: u64,
    journals: &mut Journals,
    stats: &mut RecoveryStats,
) -> Result<Option<FileReport>> {
    let path = &paths.journal;
    let Some((h, _)) = replay::peek(path).with_context(|| reading(path))? else { return Ok(None) };
    if h.kind != FileKind::Journal {
        bail!("{}: expected a journal, found a {:?} file", path.display(), h.kind);
    }
    if h.generation <= newest {
        bail!(
            "{}: journal generation {} is not newer than the snapshot or old journal ({newest}); \
             the files do not belong together",
            path.display(),
            h.generation
        );
    }
    let rep = replay::read(path, FileKind::Journal, |r| journals.push(r)).with_context(|| reading(path))?;
    if let Some(rep) = &rep {
        note(stats, rep);
    }
    Ok(rep)
}

/// Counts one live lease or probation (the same for a start and for `inspect`).
fn live(stats: &mut RecoveryStats, r: &super::format::Record) -> Recovered {
    let r = replay::recovered(r);
    match r.state {
        crate::lease::LeaseState::Bound => stats.bound += 1,
        _ => stats.quarantined += 1,
    }
    r
}

fn note(stats: &mut RecoveryStats, rep: &FileReport) {
    stats.records_read += rep.records;
    stats.uncommitted_dropped += rep.uncommitted;
    for d in &rep.damage {
        stats.torn_bytes += d.dropped_bytes;
        stats.damage.push(d.clone());
    }
}

/// Copies every damaged stretch aside, then refuses damaged synced data unless it is accepted,
/// saying exactly what was lost either way.
fn judge_damage(paths: &Paths, stats: &mut RecoveryStats, accept: bool) -> Result<()> {
    for d in &stats.damage {
        // A torn tail of a record or less is an ordinary crash: nothing worth keeping.
        if d.synced || d.dropped_bytes > RECORD_LEN as u64 {
            match keep_aside(paths, d) {
                Ok(p) => stats.kept_aside.push(p),
                Err(e) => log::error!("could not copy damaged bytes of {} aside: {e}", d.file.display()),
            }
        }
    }
    let lost: Vec<String> = stats
        .damage
        .iter()
        .filter(|d| d.synced)
        .map(|d| {
            format!(
                "{}: bytes {}..{} ({}, about {} records)",
                d.file.display(),
                d.offset,
                d.offset + d.dropped_bytes,
                d.reason,
                d.dropped_bytes.div_ceil(RECORD_LEN as u64)
            )
        })
        .collect();
    if lost.is_empty() {
        return Ok(());
    }
    if !accept {
        bail!(
            "damaged lease file data (leases in it are lost): {}; the damaged bytes are kept aside in {}; \
             start with --accept-damaged-journal to serve without them",
            lost.join("; "),
            stats.kept_aside.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        );
    }
    for l in &lost {
        log::error!("accepted damage, leases lost: {l}");
    }
    stats.damage_accepted = true;
    Ok(())
}

/// Copies a damaged stretch to `PATH.damaged-FILE-OFFSET` (a number added if that exists:
/// never over an earlier copy).
fn keep_aside(paths: &Paths, d: &replay::DamageReport) -> io::Result<PathBuf> {
    let name = d.file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let base = paths.with(&format!(".damaged-{name}-{}", d.offset));
    let mut target = base.clone();
    let mut n = 1;
    while files::exists(&target)? {
        target = PathBuf::from(format!("{}.{n}", base.display()));
        n += 1;
    }
    let mut src = files::open_read(&d.file)?;
    src.seek(SeekFrom::Start(d.offset))?;
    let mut out = files::create_new(&target)?;
    io::copy(&mut src.take(d.dropped_bytes), &mut out)?;
    out.sync_all()?;
    sync_dir(&paths.dir)?;
    Ok(target)
}

/// The journal to append to: created after `newest`; or the current one, its torn tail cut
/// off; or, if it is of an older format or holds accepted damage, set aside as `PATH.old` for
/// the background compaction to fold into a clean snapshot, and a new one started.
fn open_current(
    paths: &Paths,
    newest: u64,
    current: Option<FileReport>,
    now: u32,
    stats: &mut RecoveryStats,
) -> Result<Opened> {
    let Some(rep) = current else {
        let generation = newest + 1;
        let file =
            create_journal(paths, generation, now).with_context(|| format!("creating {}", paths.journal.display()))?;
        return Ok(Opened { file, generation, good_len: HEADER_LEN as u64 });
    };
    let damaged = rep.damage.iter().any(|d| d.synced);
    if rep.header.version != VERSION || damaged {
        return set_aside(paths, &rep.header, now, stats);
    }
    let file = files::open_rw(&paths.journal).with_context(|| format!("opening {}", paths.journal.display()))?;
    if rep.len > rep.committed_end {
        // The torn tail of an interrupted write (copied aside above if it was more than one
        // record): appends continue after the last commit record.
        file.set_len(rep.committed_end).with_context(|| format!("truncating {}", paths.journal.display()))?;
        file.sync_all().with_context(|| format!("syncing {}", paths.journal.display()))?;
    }
    Ok(Opened { file, generation: rep.header.generation, good_len: rep.committed_end })
}

/// Renames the current journal to `PATH.old` and starts the next one.
fn set_aside(paths: &Paths, h: &Header, now: u32, stats: &mut RecoveryStats) -> Result<Opened> {
    if stats.resumed_compaction {
        bail!(
            "{}: to be set aside (older format or damage) while an unfinished compaction holds {}: \
             start once with the version that wrote it, or move {} away after reading it with `xdhcpd`",
            paths.journal.display(),
            paths.old.display(),
            paths.old.display()
        );
    }
    files::rename(&paths.journal, &paths.old).with_context(|| format!("renaming {}", paths.journal.display()))?;
    let generation = h.generation + 1;
    let file =
        create_journal(paths, generation, now).with_context(|| format!("creating {}", paths.journal.display()))?;
    stats.resumed_compaction = true;
    log::info!("lease file {}: the journal is folded into a fresh snapshot in the background", paths.journal.display());
    Ok(Opened { file, generation, good_len: HEADER_LEN as u64 })
}
