//! A lease directory of any size for the recovery and compaction benchmarks: most leases in a
//! snapshot, the rest (new leases and renewals of snapshot leases) in the journal after it, as a
//! server leaves it some time after its last compaction. Addresses are in 240.0.0.0/8 (class E,
//! never routed: lease files carry no traffic), so pools above the 4M addresses of 100.64/10 fit.

use core::net::Ipv4Addr;
use dhcp_user::engine::{EventKind, LeaseEvent};
use dhcp_user::journal::{Durability, Journal, JournalOptions};
use dhcp_user::lease::ClientKey;
use std::path::Path;
use std::time::Duration;

/// The subnet holding the leases and its pool (16,777,200 addresses).
pub const SUBNET: &str = "240.0.0.0/8";
pub const POOL_FIRST: Ipv4Addr = Ipv4Addr::new(240, 0, 0, 10);
pub const POOL_LAST: Ipv4Addr = Ipv4Addr::new(240, 255, 255, 250);

/// Appended per call of [`Journal::append`] while writing (a large batch: the writer thread
/// is what is fast here).
const BATCH: usize = 1 << 16;

/// The `Bound` event of client `i` (MAC 02:00 and `i`, the `i`th address of the pool),
/// steered with `key` as the server would, expiring at `expires`.
pub fn lease(i: u32, key: u32, expires: u32) -> LeaseEvent {
    let c = i.to_be_bytes();
    let mac = [2, 0, c[0], c[1], c[2], c[3]];
    LeaseEvent {
        kind: EventKind::Bound,
        ip: Ipv4Addr::from(u32::from(POOL_FIRST) + i),
        client: ClientKey::from_mac(&mac),
        mac,
        expires,
        steer: dhcp_common::steering_hash(key, &mac),
    }
}

/// Writes `leases` live leases into lease file `path` (replacing what was there): the first
/// `leases - journal_share` in the snapshot, then `journal_share` new leases and as many
/// renewals of snapshot leases in the journal. Leases end 30 days after `now`.
pub fn write(path: &Path, leases: u32, journal_share: u32, now: u32) -> anyhow::Result<()> {
    remove(path);
    let (key, _) = dhcp_user::journal::steering_key(path)?;
    let opts = JournalOptions {
        compact_size: u64::MAX,
        clock: dhcp_user::clock::unix_now,
        ..JournalOptions::new(Durability::None, Duration::ZERO)
    };
    let (journal, _) = Journal::open_with(path, opts, now)?;
    let expires = now + 30 * 86_400;
    let in_snapshot = leases - journal_share.min(leases);
    append(&journal, 0..in_snapshot, key, expires)?;
    journal.compact()?;
    append(&journal, in_snapshot..leases, key, expires)?;
    // Renewals: the same clients and addresses, a later end.
    append(&journal, 0..journal_share.min(in_snapshot), key, expires + 3600)?;
    journal.close()?;
    Ok(())
}

fn append(journal: &Journal, clients: std::ops::Range<u32>, key: u32, expires: u32) -> anyhow::Result<()> {
    let mut events = Vec::with_capacity(BATCH);
    let mut ticket = None;
    for i in clients {
        events.push(lease(i, key, expires));
        if events.len() == BATCH {
            ticket = Some(journal.append(&events));
            events.clear();
        }
    }
    if !events.is_empty() {
        ticket = Some(journal.append(&events));
    }
    if let Some(t) = ticket {
        journal.wait(t)?;
    }
    Ok(())
}

/// Removes lease file `path` and every file beside it that belongs to it.
pub fn remove(path: &Path) {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let Some(dir) = path.parent() else { return };
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(&name) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}
