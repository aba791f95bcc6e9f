//! restore: puts the leases read from the lease file into the engines of the workers that own
//! them, on threads of their own (one per core at most, each owning a share of the engines)
//! while the calling thread goes on reading: recovery of millions of leases is then bounded by
//! the slower of reading and restoring, not their sum.
//!
//! Must never: restore a lease into another engine than the one named for it; hold more than
//! a few batches of leases in flight (memory stays that of the engines); lose a refusal's
//! count.

use crate::journal::Recovered;
use anyhow::{anyhow, Result};
use dhcp_core::engine::{Engine, Seconds};
use std::sync::mpsc::{sync_channel, SyncSender};

/// Leases handed to a restoring thread at once, and batches queued per thread.
const BATCH: usize = 4096;
const QUEUED: usize = 4;

/// How many leases the engines took, and refused (ended, outside every subnet, or in conflict).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Restored {
    pub restored: u64,
    pub refused: u64,
}

/// Runs `read`, which hands each lease to its sink with the index of the engine that must hold
/// it, and restores them into `engines` meanwhile. Returns what `read` returned.
pub fn into_engines<T>(
    engines: &mut [Engine],
    now: Seconds,
    read: impl FnOnce(&mut dyn FnMut(usize, Recovered)) -> Result<T>,
) -> Result<(T, Restored)> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = engines.len().clamp(1, cores);
    let mut groups: Vec<Vec<(usize, &mut Engine)>> = (0..threads).map(|_| Vec::new()).collect();
    for (w, e) in engines.iter_mut().enumerate() {
        groups[w % threads].push((w, e));
    }
    std::thread::scope(|s| {
        let mut senders: Vec<SyncSender<Vec<(usize, Recovered)>>> = Vec::with_capacity(threads);
        let mut handles = Vec::with_capacity(threads);
        for group in groups {
            let (tx, rx) = sync_channel::<Vec<(usize, Recovered)>>(QUEUED);
            senders.push(tx);
            handles.push(std::thread::Builder::new().name("xdhcpd-restore".into()).spawn_scoped(s, move || {
                let mut group = group;
                let mut n = Restored::default();
                for batch in rx {
                    for (w, r) in batch {
                        // Engines are grouped by `w % threads`: `w / threads` is its place here.
                        let engine = &mut group[w / threads].1;
                        restore_one(engine, now, &r, &mut n);
                    }
                }
                n
            }));
        }
        let mut batches: Vec<Vec<(usize, Recovered)>> = (0..threads).map(|_| Vec::with_capacity(BATCH)).collect();
        let out = read(&mut |w, r| {
            let t = w % threads;
            batches[t].push((w, r));
            if batches[t].len() == BATCH {
                let full = std::mem::replace(&mut batches[t], Vec::with_capacity(BATCH));
                // A thread that is gone panicked: reported at its join below.
                let _ = senders[t].send(full);
            }
        });
        for (tx, batch) in senders.into_iter().zip(batches) {
            let _ = tx.send(batch);
        }
        let mut total = Restored::default();
        for h in handles {
            let n = h?.join().map_err(|_| anyhow!("a lease restoring thread panicked"))?;
            total.restored += n.restored;
            total.refused += n.refused;
        }
        Ok((out?, total))
    })
}

fn restore_one(engine: &mut Engine, now: Seconds, r: &Recovered, n: &mut Restored) {
    match engine.restore(now, r.client, r.mac, r.ip, r.expires, r.state) {
        Ok(()) => n.restored += 1,
        Err(e) => {
            n.refused += 1;
            dhcp_io::log_limited!(log::Level::Warn, "lease of {} not restored: {e:?}", r.ip);
        }
    }
}
