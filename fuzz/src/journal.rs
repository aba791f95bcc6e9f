//! Target `journal`: arbitrary bytes as the lease files found at start (journal, snapshot,
//! the old journal of an interrupted compaction), read by `inspect` and by a real start
//! (`Journal::open_with`, damage accepted, in a scratch directory on tmpfs).
//!
//! Asserts: no panic and bounded memory (libFuzzer's RSS limit); when both readings succeed
//! they recover the same leases and count the same (records, leases, probations, reclaimed,
//! damaged bytes, unfinished writes); a start never fails after `inspect` said the files are
//! fine... unless they do not belong together, which only a start checks.

use dhcp_user::journal::{inspect, Durability, Journal, JournalOptions, RecoveryStats};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The time of every start: seeds put leases on both sides of it.
pub const NOW: u32 = 1_000_000;

/// File name suffixes of the lease files, as the journal names them.
pub const FILES: [&str; 3] = ["", ".snapshot", ".old"];

/// Splits the input into the files to lay down: byte 0 says which files exist (bits 0-2:
/// journal, snapshot, old), then each present file is preceded by its length (2 bytes, little
/// endian; the last takes the rest).
pub fn layout(data: &[u8]) -> [Option<&[u8]>; 3] {
    let Some((&which, mut rest)) = data.split_first() else { return [None; 3] };
    let present: Vec<usize> = (0..3).filter(|i| which & (1 << i) != 0).collect();
    let mut files = [None; 3];
    for (n, &i) in present.iter().enumerate() {
        let len = if n + 1 == present.len() || rest.len() < 2 {
            rest.len()
        } else {
            let l = u16::from_le_bytes([rest[0], rest[1]]) as usize;
            rest = &rest[2..];
            l.min(rest.len())
        };
        files[i] = Some(&rest[..len]);
        rest = &rest[len..];
    }
    files
}

/// The inverse of [`layout`], for seeds.
pub fn encode(files: [Option<&[u8]>; 3]) -> Vec<u8> {
    let which = files.iter().enumerate().fold(0u8, |w, (i, f)| w | (f.is_some() as u8) << i);
    let present: Vec<&[u8]> = files.iter().flatten().copied().collect();
    let mut v = vec![which];
    for (n, f) in present.iter().enumerate() {
        if n + 1 < present.len() {
            v.extend((f.len() as u16).to_le_bytes());
        }
        v.extend(*f);
    }
    v
}

fn scratch() -> PathBuf {
    let base = if Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
    base.join(format!("xdhcpd-fuzz-journal-{}", std::process::id()))
}

fn counts(s: &RecoveryStats) -> [u64; 6] {
    [s.records_read, s.bound as u64, s.quarantined as u64, s.expired_reclaimed, s.torn_bytes, s.uncommitted_dropped]
}

fn clock() -> u32 {
    NOW
}

pub fn run(data: &[u8]) {
    let dir = scratch();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch directory");
    let path = dir.join("leases");
    for (suffix, bytes) in FILES.iter().zip(layout(data)) {
        if let Some(b) = bytes {
            std::fs::write(dir.join(format!("leases{suffix}")), b).expect("write a lease file");
        }
    }
    let seen = inspect(&path, NOW);
    let opts = JournalOptions { accept_damage: true, clock, ..JournalOptions::new(Durability::None, Duration::ZERO) };
    match (seen, Journal::open_with(&path, opts, NOW)) {
        (Ok(seen), Ok((journal, started))) => {
            assert_eq!(counts(&seen.stats), counts(&started.stats), "inspect and a start count alike");
            assert_eq!(seen.leases, started.leases, "inspect and a start recover alike");
            journal.close().expect("close");
        }
        (_, Ok((journal, _))) => journal.close().expect("close"),
        (_, Err(_)) => {}
    }
    let _ = std::fs::remove_dir_all(&dir);
}
