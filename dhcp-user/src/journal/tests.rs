//! Journal tests: format, replay rules, torn tails, corruption, compaction crash points, group
//! commit, write failures. Files go to a fresh directory under the system temp directory.

use super::compact::CrashPoint;
use super::format::{Record, RecordKind, HEADER_LEN, RECORD_LEN, VERSION};
use super::replay::Replay;
use super::*;
use crate::engine::EventKind;
use std::fs;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicU8, AtomicUsize};
use std::time::Instant;

const NOW: u32 = 1_000_000;

fn test_clock() -> u32 {
    NOW
}

/// Fault injection for the writer and crash points for compaction.
#[derive(Debug, Default)]
pub(crate) struct TestHooks {
    fail_writes: AtomicBool,
    /// Bytes a failing write still writes (a disk filling up in the middle of a batch).
    partial: AtomicUsize,
    sync_delay_us: AtomicU64,
    /// Syncs wait while this is set: a disk that is slow right now.
    hold_syncs: AtomicBool,
    crash_at: AtomicU8,
    fd: AtomicI32,
}

impl TestHooks {
    /// Makes writes fail (`ENOSPC`) or succeed again.
    pub(crate) fn fail_writes(&self, fail: bool) {
        self.fail_writes.store(fail, Ordering::SeqCst);
    }

    /// Holds every sync until released.
    pub(crate) fn hold_syncs(&self, hold: bool) {
        self.hold_syncs.store(hold, Ordering::SeqCst);
    }

    pub(super) fn set_fd(&self, f: &File) {
        self.fd.store(f.as_raw_fd(), Ordering::SeqCst);
    }

    pub(super) fn before_write(&self, f: &File, buf: &[u8], at: u64) -> io::Result<()> {
        if self.fail_writes.load(Ordering::SeqCst) {
            let k = self.partial.load(Ordering::SeqCst).min(buf.len());
            f.write_all_at(&buf[..k], at)?;
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        Ok(())
    }

    pub(super) fn before_sync(&self) {
        while self.hold_syncs.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let us = self.sync_delay_us.load(Ordering::SeqCst);
        if us > 0 {
            std::thread::sleep(Duration::from_micros(us));
        }
    }

    pub(super) fn crash(&self, p: CrashPoint) -> bool {
        self.crash_at.load(Ordering::SeqCst) == p as u8
    }
}

/// A directory removed at the end of the test.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(name: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let d = std::env::temp_dir().join(format!(
            "xdhcpd-journal-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }

    pub(crate) fn file(&self) -> PathBuf {
        self.0.join("leases")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn options(d: Durability) -> JournalOptions {
    JournalOptions { clock: test_clock, ..JournalOptions::new(d, Duration::ZERO) }
}

fn open_opts(path: &Path, opts: JournalOptions) -> (Journal, Recovery, Arc<Hooks>) {
    let hooks = Arc::new(Hooks::default());
    let (j, r) = Journal::open_hooked(path, opts, NOW, hooks.clone()).unwrap();
    (j, r, hooks)
}

fn open(path: &Path) -> (Journal, Recovery, Arc<Hooks>) {
    open_opts(path, options(Durability::Fsync))
}

fn mac(n: u32) -> [u8; 6] {
    let b = n.to_be_bytes();
    [2, 0, b[0], b[1], b[2], b[3]]
}

fn ip(n: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0a00_0000 + n)
}

fn ev(kind: EventKind, client: u32, addr: u32, expires: u32) -> LeaseEvent {
    LeaseEvent {
        kind,
        ip: ip(addr),
        client: ClientKey::from_mac(&mac(client)),
        mac: mac(client),
        expires,
        steer: client,
    }
}

fn append_wait(j: &Journal, events: &[LeaseEvent]) {
    j.wait(j.append(events)).unwrap();
}

/// What replaying `events` in order gives at `now`, computed without any file.
fn reference(events: &[LeaseEvent], now: u32) -> Vec<Recovered> {
    let mut r = Replay::default();
    for e in events {
        if let Some(rec) = Record::from_event(e) {
            r.apply(&rec);
        }
    }
    r.finish(now).0
}

fn bound(client: u32, addr: u32, expires: u32) -> Recovered {
    Recovered {
        client: ClientKey::from_mac(&mac(client)),
        mac: mac(client),
        ip: ip(addr),
        expires,
        steer: client,
        state: LeaseState::Bound,
    }
}

fn quarantined(client: u32, addr: u32, expires: u32) -> Recovered {
    Recovered { state: LeaseState::Quarantined, ..bound(client, addr, expires) }
}

fn poll_ok(j: &Journal, t: Ticket) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match j.wait(t) {
            Ok(()) => return,
            Err(JournalError::Failing(_)) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("still failing: {e}"),
        }
    }
}

#[test]
fn record_kinds_are_exactly_the_durable_events() {
    use EventKind::*;
    for k in [Offered, Bound, Released, Expired, OfferReleased, OfferExpired, Declined, ProbationEnded] {
        assert_eq!(RecordKind::from_event(k).is_some(), k.is_durable(), "{k:?}");
    }
}

#[test]
fn every_single_bit_flip_in_a_record_is_detected() {
    let r = Record::from_event(&ev(EventKind::Declined, 7, 9, NOW + 5)).unwrap();
    let b = r.encode();
    assert_eq!(Record::decode(&b, VERSION), Ok(r));
    for bit in 0..RECORD_LEN * 8 {
        let mut c = b;
        c[bit / 8] ^= 1 << (bit % 8);
        assert!(Record::decode(&c, VERSION).is_err(), "bit {bit} flipped unnoticed");
    }
}

#[test]
fn every_event_kind_round_trips_with_the_replay_rules() {
    let dir = TempDir::new("kinds");
    let t = NOW;
    use EventKind::*;
    let events = [
        ev(Bound, 1, 1, t + 100),
        ev(Bound, 2, 2, t + 100),
        ev(Released, 2, 2, t + 100),
        ev(Bound, 3, 3, t + 100),
        ev(Expired, 3, 3, t + 100),
        ev(Bound, 4, 4, t + 100),
        // Another address than the lease's: ignored.
        ev(Released, 4, 99, t + 100),
        ev(Bound, 5, 5, t + 100),
        ev(Declined, 5, 5, t + 500),
        ev(Declined, 6, 6, t + 50),
        ev(ProbationEnded, 6, 6, t + 50),
        // The end of an earlier probation recorded after a later decline: the later one stays.
        ev(Declined, 7, 7, t + 300),
        ev(ProbationEnded, 7, 7, t + 200),
        // Client 9 is bound to 8 before client 8's expiry reaches the journal (other worker).
        ev(Bound, 8, 8, t + 100),
        ev(Bound, 9, 8, t + 100),
        ev(Expired, 8, 8, t + 100),
        // A client moving to another address frees the first.
        ev(Bound, 10, 9, t + 100),
        ev(Bound, 10, 10, t + 100),
        ev(Bound, 11, 9, t + 100),
        // Offers are not journaled.
        ev(Offered, 12, 11, t + 10),
        ev(OfferReleased, 12, 11, t + 10),
        ev(OfferExpired, 12, 11, t + 10),
        // A bind proves the probation before it ended.
        ev(Declined, 13, 12, t + 400),
        ev(Bound, 14, 12, t + 100),
        // Renewal.
        ev(Bound, 1, 1, t + 200),
    ];
    let want = vec![
        bound(1, 1, t + 200),
        bound(4, 4, t + 100),
        quarantined(5, 5, t + 500),
        quarantined(7, 7, t + 300),
        bound(9, 8, t + 100),
        bound(11, 9, t + 100),
        bound(10, 10, t + 100),
        bound(14, 12, t + 100),
    ];
    assert_eq!(reference(&events, t), want);

    let (j, r, _) = open(&dir.file());
    assert!(r.leases.is_empty());
    // One event per call and all at once must give the same file.
    for e in &events[..10] {
        append_wait(&j, std::slice::from_ref(e));
    }
    append_wait(&j, &events[10..]);
    let c = j.counters();
    assert_eq!(c.records_written, 22);
    j.close().unwrap();

    let (j, r, _) = open(&dir.file());
    assert_eq!(r.leases, want);
    assert_eq!(r.stats.records_read, 22);
    assert_eq!((r.stats.bound, r.stats.quarantined, r.stats.torn_bytes), (6, 2, 0));
    drop(j);
    assert_eq!(inspect(&dir.file(), t).unwrap().leases, want);
}

/// What recovery counted, less what only a start does (generation, files set aside).
fn counts(s: &RecoveryStats) -> [u64; 6] {
    [s.records_read, s.bound as u64, s.quarantined as u64, s.expired_reclaimed, s.torn_bytes, s.uncommitted_dropped]
}

#[test]
fn inspect_counts_what_a_start_counts() {
    // Before: `inspect` left the lease and probation counts at zero (found by the journal
    // fuzz target, which compares both readings of the same bytes).
    let dir = TempDir::new("inspect-counts");
    use EventKind::*;
    let (j, _, _) = open(&dir.file());
    append_wait(&j, &[ev(Bound, 1, 1, NOW + 100), ev(Bound, 2, 2, NOW - 1), ev(Bound, 3, 3, NOW + 100)]);
    append_wait(&j, &[ev(Declined, 3, 3, NOW + 500)]);
    j.close().unwrap();
    let seen = inspect(&dir.file(), NOW).unwrap();
    let (j, started, _) = open(&dir.file());
    drop(j);
    assert_eq!(counts(&started.stats), [4, 1, 1, 1, 0, 0]);
    assert_eq!(counts(&seen.stats), counts(&started.stats));
    assert_eq!(seen.leases, started.leases);
}

#[test]
fn torn_tail_at_every_offset_of_the_last_write() {
    // Each wait is one write: the record and its commit record.
    let dir = TempDir::new("torn");
    let (j, _, _) = open(&dir.file());
    for n in 1..=5 {
        append_wait(&j, &[ev(EventKind::Bound, n, n, NOW + 100)]);
    }
    j.close().unwrap();
    let full = fs::read(dir.file()).unwrap();
    assert_eq!(full.len(), HEADER_LEN + 5 * 2 * RECORD_LEN);
    let last = HEADER_LEN + 4 * 2 * RECORD_LEN;
    let four: Vec<_> = (1..=4).map(|n| bound(n, n, NOW + 100)).collect();
    for cut in last..full.len() {
        let d = TempDir::new("torn-cut");
        fs::write(d.file(), &full[..cut]).unwrap();
        let (j, r, _) = open(&d.file());
        assert_eq!(r.leases, four, "cut at {cut}: the unfinished write is dropped");
        let record_whole = cut >= last + RECORD_LEN;
        assert_eq!(r.stats.records_read, 4 + record_whole as u64, "cut at {cut}");
        assert_eq!(r.stats.uncommitted_dropped, record_whole as u64, "cut at {cut}");
        let torn = if record_whole { cut - last - RECORD_LEN } else { cut - last };
        assert_eq!(r.stats.torn_bytes, torn as u64, "cut at {cut}");
        assert!(r.stats.damage.iter().all(|d| !d.synced && d.reason == Damage::Short), "cut at {cut}");
        assert!(r.stats.kept_aside.is_empty(), "a torn tail is no damage worth keeping");
        assert_eq!(fs::metadata(d.file()).unwrap().len(), last as u64, "truncated to the last commit");
        append_wait(&j, &[ev(EventKind::Bound, 6, 6, NOW + 100)]);
        j.close().unwrap();
        let (_j, r, _) = open(&d.file());
        let mut want = four.clone();
        want.push(bound(6, 6, NOW + 100));
        assert_eq!(r.leases, want, "cut at {cut}");
        assert_eq!((r.stats.records_read, r.stats.torn_bytes), (5, 0));
    }
}

#[test]
fn damage_to_synced_records_costs_those_records_and_needs_consent() {
    for (what, offset_in_record) in [("checksum", 8 + 5), ("length", 1)] {
        let dir = TempDir::new("corrupt");
        let (j, _, _) = open(&dir.file());
        let events: Vec<_> = (1..=10).map(|n| ev(EventKind::Bound, n, n, NOW + 100)).collect();
        append_wait(&j, &events);
        j.close().unwrap();
        let mut bytes = fs::read(dir.file()).unwrap();
        let bad = HEADER_LEN + 3 * RECORD_LEN;
        bytes[bad + offset_in_record] ^= 0x40;
        fs::write(dir.file(), &bytes).unwrap();

        // Refused, saying where; the damaged record copied aside.
        let hooks = Arc::new(Hooks::default());
        let e = Journal::open_hooked(&dir.file(), options(Durability::Fsync), NOW, hooks).unwrap_err().to_string();
        assert!(e.contains(&format!("bytes {bad}..{}", bad + RECORD_LEN)), "{what}: {e}");
        assert!(e.contains("--accept-damaged-journal"), "{e}");
        // Accepted: only the damaged record is lost (the reader resynchronises).
        let opts = JournalOptions { accept_damage: true, ..options(Durability::Fsync) };
        let (j, r, _) = open_opts(&dir.file(), opts);
        let want: Vec<_> = (1..=10).filter(|&n| n != 4).map(|n| bound(n, n, NOW + 100)).collect();
        assert_eq!(r.leases, want, "{what}");
        assert_eq!(r.stats.torn_bytes, RECORD_LEN as u64);
        let reason = if what == "length" { Damage::BadLength } else { Damage::BadChecksum };
        assert_eq!(r.stats.damage[0].reason, reason);
        assert!(r.stats.damage_accepted);
        let kept: Vec<_> = r.stats.kept_aside.iter().map(|p| fs::read(p).unwrap()).collect();
        assert_eq!(
            kept,
            [bytes[bad..bad + RECORD_LEN].to_vec()],
            "one copy, made on the first start, never overwritten"
        );
        // The damaged journal was set aside and folded into a clean snapshot.
        j.compact().unwrap();
        append_wait(&j, &[ev(EventKind::Bound, 20, 20, NOW + 100)]);
        j.close().unwrap();
        let (_j, r, _) = open(&dir.file());
        assert_eq!((r.stats.records_read, r.stats.torn_bytes), (10, 0));
    }
}

#[test]
fn ended_leases_and_probations_are_reclaimed_at_start() {
    let dir = TempDir::new("expired");
    let (j, _, _) = open(&dir.file());
    append_wait(
        &j,
        &[
            ev(EventKind::Bound, 1, 1, NOW + 10),
            ev(EventKind::Bound, 2, 2, NOW + 20),
            ev(EventKind::Bound, 3, 3, NOW + 30),
            ev(EventKind::Declined, 4, 4, NOW + 15),
            ev(EventKind::Declined, 5, 5, NOW + 25),
        ],
    );
    j.close().unwrap();
    let (_j, r) = Journal::open_with(&dir.file(), options(Durability::Fsync), NOW + 20).unwrap();
    assert_eq!(r.leases, vec![bound(3, 3, NOW + 30), quarantined(5, 5, NOW + 25)]);
    assert_eq!(r.stats.expired_reclaimed, 3);
}

#[test]
fn garbage_is_damage_or_an_error_never_a_panic() {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let header = Header { kind: FileKind::Journal, generation: 1, created: NOW, version: VERSION }.encode();
    for round in 0..200 {
        let dir = TempDir::new("garbage");
        let len = (rnd() % 400) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| rnd() as u8).collect();
        // Half the files start with a valid header, some with valid records then garbage.
        if round % 2 == 0 {
            let mut f = header.to_vec();
            for n in 0..(round % 5) {
                f.extend_from_slice(&Record::from_event(&ev(EventKind::Bound, n, n, NOW + 9)).unwrap().encode());
            }
            f.append(&mut bytes);
            bytes = f;
        }
        fs::write(dir.file(), &bytes).unwrap();
        let _ = inspect(&dir.file(), NOW);
        let opened = Journal::open_with(&dir.file(), options(Durability::Fsync), NOW);
        if round % 2 == 0 {
            let (_j, r) = opened.unwrap();
            assert_eq!(r.stats.records_read, (round % 5) as u64);
        } else if len > 0 {
            assert!(opened.is_err(), "random bytes accepted as a lease file");
            assert_eq!(fs::read(dir.file()).unwrap(), bytes, "a foreign file was modified");
        }
    }
}

#[test]
fn second_server_on_the_same_file_is_refused() {
    let dir = TempDir::new("lock");
    let (j, _, _) = open(&dir.file());
    let e = Journal::open_with(&dir.file(), options(Durability::Fsync), NOW).unwrap_err();
    assert!(e.to_string().contains("locked"), "{e}");
    j.close().unwrap();
    Journal::open_with(&dir.file(), options(Durability::Fsync), NOW).unwrap();
}

/// Events over three phases: binds, renewals, moves, releases, declines, some already ended.
fn phase(p: u32) -> Vec<LeaseEvent> {
    use EventKind::*;
    let mut v = Vec::new();
    for c in 0..300 {
        let a = 1000 + c;
        match (c + p) % 6 {
            0 => v.push(ev(Bound, c, a, NOW + 1000 + p)),
            1 => v.push(ev(Bound, c, a + 5000, NOW + 2000)),
            2 => v.push(ev(Released, c, a, NOW)),
            3 => v.push(ev(Declined, c, a, NOW + 3000 + p)),
            4 => v.push(ev(ProbationEnded, c, a, NOW + 3000 + p)),
            _ => v.push(ev(Bound, c, a, NOW - 10)),
        }
    }
    v
}

#[test]
fn compaction_and_crashes_at_every_step_recover_the_same_leases() {
    let crashes = [
        None,
        Some(CrashPoint::Rotated),
        Some(CrashPoint::TmpPartial),
        Some(CrashPoint::TmpWritten),
        Some(CrashPoint::Renamed),
    ];
    for crash in crashes {
        let dir = TempDir::new("compact");
        let paths = Paths::new(&dir.file());
        let all: Vec<_> = (0..3).flat_map(phase).collect();
        let want = reference(&all, NOW);
        assert!(want.len() > 100 && want.iter().any(|r| r.state == LeaseState::Quarantined));

        let (j, _, hooks) = open(&dir.file());
        append_wait(&j, &phase(0));
        j.compact().unwrap();
        assert!(paths.snapshot.exists() && !paths.old.exists());
        assert_eq!(inspect(&dir.file(), NOW).unwrap().leases, reference(&phase(0), NOW));

        append_wait(&j, &phase(1));
        hooks.t.crash_at.store(crash.map_or(0, |c| c as u8), Ordering::SeqCst);
        let r = j.compact();
        assert_eq!(r.is_ok(), crash.is_none(), "{crash:?}: {r:?}");
        append_wait(&j, &phase(2));
        j.close().unwrap();
        match crash {
            None => assert!(!paths.old.exists() && !paths.tmp.exists()),
            Some(CrashPoint::Rotated) => assert!(paths.old.exists() && !paths.tmp.exists()),
            Some(CrashPoint::TmpPartial | CrashPoint::TmpWritten) => assert!(paths.old.exists() && paths.tmp.exists()),
            Some(CrashPoint::Renamed) => assert!(paths.old.exists() && !paths.tmp.exists()),
        }

        let (j, r, _) = open(&dir.file());
        assert_eq!(r.leases, want, "{crash:?}");
        assert_eq!(r.stats.torn_bytes, 0);
        assert_eq!(r.stats.resumed_compaction, matches!(crash, Some(c) if c != CrashPoint::Renamed), "{crash:?}");
        assert_eq!(r.stats.stale_old_removed, crash == Some(CrashPoint::Renamed));
        if crash == Some(CrashPoint::Renamed) {
            // Snapshot (phases 0 and 1, live only) + journal (phase 2): the old journal is not
            // read again.
            let snap = reference(&(0..2).flat_map(phase).collect::<Vec<_>>(), NOW).len() as u64;
            assert_eq!(r.stats.records_read, snap + 300);
        }
        assert!(!paths.next.exists());
        // The resumed compaction (which may be writing its own `.tmp` by now), then one more,
        // still give the same leases, and leave no leftovers.
        j.compact().unwrap();
        assert!(!paths.tmp.exists());
        assert!(!paths.old.exists());
        j.close().unwrap();
        let (_j, r, _) = open(&dir.file());
        assert_eq!(r.leases, want, "{crash:?} after compacting again");
        assert_eq!(r.stats.records_read, want.len() as u64, "only the snapshot is read");
    }
}

#[test]
fn periodic_compaction_runs_in_the_background() {
    let dir = TempDir::new("periodic");
    let opts = JournalOptions { compact_interval: Duration::from_millis(100), ..options(Durability::Fsync) };
    let (j, _, _) = open_opts(&dir.file(), opts);
    append_wait(&j, &phase(0));
    let deadline = Instant::now() + Duration::from_secs(10);
    while j.counters().compactions == 0 {
        assert!(Instant::now() < deadline, "no compaction");
        std::thread::sleep(Duration::from_millis(10));
    }
    append_wait(&j, &phase(1));
    j.close().unwrap();
    let all: Vec<_> = (0..2).flat_map(phase).collect();
    assert_eq!(inspect(&dir.file(), NOW).unwrap().leases, reference(&all, NOW));
}

#[test]
fn group_commit_covers_concurrent_waits_with_fewer_fsyncs() {
    let dir = TempDir::new("group");
    let (j, _, hooks) = open(&dir.file());
    // A slow disk: batches form while a sync is in progress.
    hooks.t.sync_delay_us.store(2000, Ordering::SeqCst);
    let threads = 8;
    let per = 40;
    std::thread::scope(|s| {
        for t in 0..threads {
            let j = j.clone();
            s.spawn(move || {
                for i in 0..per {
                    let c = t * 1000 + i;
                    append_wait(&j, &[ev(EventKind::Bound, c, c, NOW + 100)]);
                }
            });
        }
    });
    let c = j.counters();
    let waits = (threads * per) as u64;
    assert_eq!(c.records_written, waits);
    assert!(c.fsyncs < waits, "{} fsyncs for {waits} waits", c.fsyncs);
    assert_eq!(c.fsyncs, c.writes);
    j.close().unwrap();
    let (_j, r, _) = open(&dir.file());
    assert_eq!(r.leases.len() as u64, waits);
}

#[test]
fn disk_full_withholds_acks_and_clears_without_losing_records() {
    let dir = TempDir::new("full");
    let (j, _, hooks) = open(&dir.file());
    append_wait(&j, &[ev(EventKind::Bound, 1, 1, NOW + 100)]);
    // The disk fills in the middle of the next batch.
    hooks.t.partial.store(RECORD_LEN + 10, Ordering::SeqCst);
    hooks.t.fail_writes.store(true, Ordering::SeqCst);
    let batch: Vec<_> = (2..=4).map(|n| ev(EventKind::Bound, n, n, NOW + 100)).collect();
    let t1 = j.append(&batch);
    assert!(matches!(j.wait(t1), Err(JournalError::Failing(_))));
    let c = j.counters();
    assert!(c.failing && c.write_failures >= 1);
    assert!(c.last_error.as_deref().unwrap_or("").contains("No space"), "{:?}", c.last_error);
    let t2 = j.append(&[ev(EventKind::Released, 1, 1, NOW + 100)]);
    let started = Instant::now();
    assert!(matches!(j.wait(t2), Err(JournalError::Failing(_))));
    assert!(started.elapsed() < Duration::from_millis(500), "wait must not block while failing");
    std::thread::sleep(Duration::from_millis(250));
    assert!(j.counters().write_failures >= 2, "retried");
    hooks.t.fail_writes.store(false, Ordering::SeqCst);
    poll_ok(&j, t2);
    j.wait(t1).unwrap();
    assert!(!j.counters().failing);
    assert!(j.counters().last_error.is_some(), "the last error stays visible");
    j.close().unwrap();
    let (_j, r, _) = open(&dir.file());
    assert_eq!((r.stats.records_read, r.stats.torn_bytes), (5, 0));
    assert_eq!(r.leases, (2..=4).map(|n| bound(n, n, NOW + 100)).collect::<Vec<_>>());
}

#[test]
fn dev_full_under_the_descriptor_fails_writes_until_restored() {
    let dir = TempDir::new("devfull");
    let (j, _, hooks) = open(&dir.file());
    append_wait(&j, &[ev(EventKind::Bound, 1, 1, NOW + 100)]);
    let fd = hooks.t.fd.load(Ordering::SeqCst);
    let full = File::options().write(true).open("/dev/full").unwrap();
    // SAFETY: plain descriptor calls; `fd` is the journal's open file, swapped atomically by
    // dup2 for /dev/full and back, and `saved` is closed only after it has been put back.
    let saved = unsafe { libc::dup(fd) };
    assert!(saved >= 0);
    // SAFETY: as above.
    assert!(unsafe { libc::dup2(full.as_raw_fd(), fd) } >= 0);
    let t = j.append(&[ev(EventKind::Bound, 2, 2, NOW + 100)]);
    assert!(j.wait(t).is_err());
    assert!(j.counters().failing);
    // SAFETY: as above.
    assert!(unsafe { libc::dup2(saved, fd) } >= 0);
    // SAFETY: as above; `saved` is ours and no longer needed.
    unsafe { libc::close(saved) };
    poll_ok(&j, t);
    j.close().unwrap();
    let (_j, r, _) = open(&dir.file());
    assert_eq!(r.leases, vec![bound(1, 1, NOW + 100), bound(2, 2, NOW + 100)]);
    assert_eq!(r.stats.torn_bytes, 0);
}

#[test]
fn full_queue_while_failing_drops_new_records_with_failing_tickets() {
    let dir = TempDir::new("overflow");
    let opts = JournalOptions { max_queued_bytes: 3 * RECORD_LEN, ..options(Durability::Fsync) };
    let (j, _, hooks) = open_opts(&dir.file(), opts);
    hooks.t.fail_writes.store(true, Ordering::SeqCst);
    let kept = j.append(&[ev(EventKind::Bound, 1, 1, NOW + 100), ev(EventKind::Bound, 2, 2, NOW + 100)]);
    assert!(j.wait(kept).is_err());
    let dropped = j.append(&[ev(EventKind::Bound, 3, 3, NOW + 100), ev(EventKind::Bound, 4, 4, NOW + 100)]);
    assert_eq!(j.wait(dropped), Err(JournalError::Overflow));
    assert_eq!(j.counters().records_dropped, 2);
    hooks.t.fail_writes.store(false, Ordering::SeqCst);
    poll_ok(&j, kept);
    assert_eq!(j.wait(dropped), Err(JournalError::Overflow), "never reported durable");
    j.close().unwrap();
    let (_j, r, _) = open(&dir.file());
    assert_eq!(r.leases, vec![bound(1, 1, NOW + 100), bound(2, 2, NOW + 100)]);
}

#[test]
fn close_while_failing_reports_what_was_not_written() {
    let dir = TempDir::new("closefail");
    let (j, _, hooks) = open(&dir.file());
    append_wait(&j, &[ev(EventKind::Bound, 1, 1, NOW + 100)]);
    hooks.t.fail_writes.store(true, Ordering::SeqCst);
    let t = j.append(&[ev(EventKind::Bound, 2, 2, NOW + 100)]);
    assert!(j.wait(t).is_err());
    let other = j.clone();
    assert!(matches!(j.close(), Err(JournalError::Failing(_))));
    assert!(other.wait(t).is_err());
    assert_eq!(other.wait(other.append(&[ev(EventKind::Bound, 3, 3, NOW)])), Err(JournalError::Closed));
    drop(other);
    let (_j, r, _) = open(&dir.file());
    assert_eq!(r.leases, vec![bound(1, 1, NOW + 100)]);
}

#[test]
fn without_fsync_waits_return_after_the_write_and_close_syncs() {
    let dir = TempDir::new("nosync");
    let (j, _, hooks) = open_opts(&dir.file(), options(Durability::None));
    // A sync that takes a second would show in the wait.
    hooks.t.sync_delay_us.store(1_000_000, Ordering::SeqCst);
    let started = Instant::now();
    append_wait(&j, &[ev(EventKind::Bound, 1, 1, NOW + 100)]);
    assert!(started.elapsed() < Duration::from_millis(500));
    let c = j.counters();
    assert_eq!((c.records_written, c.fsyncs), (1, 0));
    hooks.t.sync_delay_us.store(0, Ordering::SeqCst);
    j.flush().unwrap();
    assert_eq!(j.counters().fsyncs, 1);
    append_wait(&j, &[ev(EventKind::Bound, 2, 2, NOW + 100)]);
    j.close().unwrap();
    let (_j, r, _) = open(&dir.file());
    assert_eq!(r.leases.len(), 2);
}

#[test]
fn a_journal_past_its_size_is_compacted_without_waiting_for_the_interval() {
    // Before: only the interval compacted, and under churn a journal grew until the disk filled.
    let dir = TempDir::new("by-size");
    let opts = JournalOptions { compact_size: 4 * 1024, ..options(Durability::Fsync) };
    let (j, _, _) = open_opts(&dir.file(), opts);
    append_wait(&j, &phase(0));
    let deadline = Instant::now() + Duration::from_secs(10);
    while j.counters().compactions == 0 {
        assert!(Instant::now() < deadline, "no compaction by size");
        std::thread::sleep(Duration::from_millis(10));
    }
    append_wait(&j, &phase(1));
    j.close().unwrap();
    let all: Vec<_> = (0..2).flat_map(phase).collect();
    assert_eq!(inspect(&dir.file(), NOW).unwrap().leases, reference(&all, NOW));
}

/// A record in format 1 (no steering hash), as the previous version wrote it.
fn encode_v1(r: &Record) -> Vec<u8> {
    let v2 = r.encode();
    let mut b = vec![0u8; 35];
    b[0..4].copy_from_slice(&27u32.to_le_bytes());
    b[8..35].copy_from_slice(&v2[8..35]);
    let mut h = crc32fast::Hasher::new();
    h.update(&b[0..4]);
    h.update(&b[8..]);
    let crc = h.finalize();
    b[4..8].copy_from_slice(&crc.to_le_bytes());
    b
}

#[test]
fn format_1_files_are_read_and_folded_into_format_2() {
    let dir = TempDir::new("v1");
    let events = phase(0);
    let mut bytes = Header { kind: FileKind::Journal, generation: 3, created: NOW, version: 1 }.encode().to_vec();
    for e in &events {
        if let Some(r) = Record::from_event(e) {
            bytes.extend(encode_v1(&r));
        }
    }
    fs::write(dir.file(), &bytes).unwrap();
    let (j, r, _) = open(&dir.file());
    let want: Vec<_> = reference(&events, NOW).into_iter().map(|r| Recovered { steer: 0, ..r }).collect();
    assert_eq!(r.leases, want, "read, without steering hashes");
    assert!(r.stats.resumed_compaction, "set aside to be folded into a snapshot");
    j.compact().unwrap();
    j.close().unwrap();
    let paths = Paths::new(&dir.file());
    assert!(!paths.old.exists());
    let (h, _) = replay::peek(&paths.snapshot).unwrap().unwrap();
    assert_eq!((h.kind, h.version), (FileKind::Snapshot, VERSION));
    assert_eq!(inspect(&dir.file(), NOW).unwrap().leases, want);
}

#[test]
fn damage_in_a_snapshot_needs_consent_and_costs_only_its_records() {
    // Before: reading stopped at the damage and the rest of the snapshot was lost for good.
    let dir = TempDir::new("snap-damage");
    let (j, _, _) = open(&dir.file());
    let events: Vec<_> = (1..=50).map(|n| ev(EventKind::Bound, n, n, NOW + 100)).collect();
    append_wait(&j, &events);
    j.compact().unwrap();
    j.close().unwrap();
    let paths = Paths::new(&dir.file());
    let mut bytes = fs::read(&paths.snapshot).unwrap();
    let bad = HEADER_LEN + 10 * RECORD_LEN + 20;
    bytes[bad] ^= 0xff;
    fs::write(&paths.snapshot, &bytes).unwrap();
    let hooks = Arc::new(Hooks::default());
    let e = Journal::open_hooked(&dir.file(), options(Durability::Fsync), NOW, hooks).unwrap_err().to_string();
    assert!(e.contains(".snapshot"), "{e}");
    let opts = JournalOptions { accept_damage: true, ..options(Durability::Fsync) };
    let (j, r, _) = open_opts(&dir.file(), opts);
    assert_eq!(r.leases.len(), 49, "one record lost, the 39 after it kept");
    assert_eq!(r.stats.kept_aside.len(), 1);
    // The next compaction writes a clean snapshot: no consent needed after it.
    append_wait(&j, &[ev(EventKind::Bound, 99, 99, NOW + 100)]);
    j.compact().unwrap();
    j.close().unwrap();
    let (_j, r, _) = open(&dir.file());
    assert_eq!((r.leases.len(), r.stats.damage.len()), (50, 0));
}

#[test]
fn a_synced_journal_keeps_zeroed_room_ahead_that_recovery_reads_as_its_end() {
    // Writes within the file's length change no metadata: each fdatasync writes the data alone.
    let dir = TempDir::new("room");
    let (j, _, _) = open(&dir.file());
    let events: Vec<_> = (1..=3).map(|n| ev(EventKind::Bound, n, n, NOW + 100)).collect();
    for e in &events {
        append_wait(&j, std::slice::from_ref(e));
    }
    let end = HEADER_LEN + 3 * 2 * RECORD_LEN;
    let bytes = fs::read(dir.file()).unwrap();
    assert!(bytes.len() > end, "no room made ahead of the records");
    assert!(bytes[end..].iter().all(|&b| b == 0), "the room is zeros");
    let want = reference(&events, NOW);
    // A crash leaves the room: it is the journal's end, not damage, and is cut off at start.
    // Then a crash in a write into the room: the torn record counts, the zeros after it do not.
    let record = Record::from_event(&ev(EventKind::Bound, 4, 4, NOW + 100)).unwrap().encode();
    for torn in [0, 10, RECORD_LEN + 10] {
        let d = TempDir::new("room-crash");
        let mut crashed = bytes.clone();
        let mut write = record.repeat(2);
        write.truncate(torn);
        crashed[end..end + torn].copy_from_slice(&write);
        fs::write(d.file(), &crashed).unwrap();
        let (j2, r, _) = open(&d.file());
        assert_eq!(r.leases, want, "torn {torn}");
        // The torn record, up to where it would end; not the zeros after it.
        let torn_record = if torn % RECORD_LEN == 0 { 0 } else { RECORD_LEN };
        assert_eq!(r.stats.torn_bytes, torn_record as u64, "torn {torn}");
        assert_eq!(r.stats.uncommitted_dropped, (torn / RECORD_LEN) as u64, "torn {torn}");
        assert!(r.stats.damage.iter().all(|d| !d.synced), "torn {torn}: {:?}", r.stats.damage);
        assert!(r.stats.kept_aside.is_empty(), "torn {torn}");
        assert_eq!(fs::metadata(d.file()).unwrap().len(), end as u64, "torn {torn}: cut at the last commit");
        j2.close().unwrap();
    }
    // A clean stop gives the room back.
    j.close().unwrap();
    assert_eq!(fs::metadata(dir.file()).unwrap().len(), end as u64);
    // Without syncs no room is made (a later write could outlive an earlier one in it).
    let plain = TempDir::new("room-none");
    let (j, _, _) = open_opts(&plain.file(), options(Durability::None));
    append_wait(&j, &events);
    assert_eq!(fs::metadata(plain.file()).unwrap().len(), (HEADER_LEN + 4 * RECORD_LEN) as u64);
    drop(j);
}

#[test]
fn zeros_at_the_end_of_a_snapshot_are_damage() {
    // A snapshot is never extended ahead: zeros there are lost records.
    let dir = TempDir::new("snap-zeros");
    let (j, _, _) = open(&dir.file());
    append_wait(&j, &(1..=5).map(|n| ev(EventKind::Bound, n, n, NOW + 100)).collect::<Vec<_>>());
    j.compact().unwrap();
    j.close().unwrap();
    let paths = Paths::new(&dir.file());
    let mut bytes = fs::read(&paths.snapshot).unwrap();
    bytes.extend_from_slice(&[0; 4 * RECORD_LEN]);
    fs::write(&paths.snapshot, &bytes).unwrap();
    let hooks = Arc::new(Hooks::default());
    let e = Journal::open_hooked(&dir.file(), options(Durability::Fsync), NOW, hooks).unwrap_err().to_string();
    assert!(e.contains(".snapshot"), "{e}");
}

#[test]
fn lease_events_round_trip_through_the_record_codec() {
    for kind in [EventKind::Bound, EventKind::Released, EventKind::Expired, EventKind::Declined] {
        let e = ev(kind, 7, 9, NOW + 5);
        let b = super::encode_event(&e).expect("durable");
        assert_eq!(super::decode_event(&b), Some(e));
        let mut bad = b;
        bad[20] ^= 1;
        assert_eq!(super::decode_event(&bad), None, "damage is caught");
        assert_eq!(super::decode_event(&b[..10]), None, "short");
    }
    assert!(super::encode_event(&ev(EventKind::Offered, 1, 1, NOW)).is_none());
}
