//! The cluster driver: a plain thread between the cluster thread ([`super::Cluster`]) and the
//! serving side. It feeds the engines' [`ClusterView`] (live peers, the confirmed heartbeat that
//! sets the fence), applies block grants, takeovers and losses to the address space, claims
//! blocks ahead of need and returns empty ones, publishes this node's lease events (drained from
//! the view's outbox, encoded with the journal's record codec) and hands the peers' events to
//! the worker owning each client, as a control command.
//!
//! Must never: return a block before the space has revoked it (revoke first: a block that still
//! holds a lease stays ours); claim while the fence is shut (no heartbeat confirmed lately);
//! drop a peer event on a full worker queue (it waits: the consumer waits behind it).

use super::{Bytes, Cluster, Command, Notification, Settings};
use crate::worker::control::Command as WorkerCommand;
use anyhow::Result;
use dhcp_core::config::ClusterConfig;
use dhcp_core::engine::{ClusterView, LeaseEvent, Shared};
use dhcp_io::sys::Doorbell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often pools are looked at for claims, returns and ripening.
const POOL_ROUND: Duration = Duration::from_millis(500);
/// Free addresses kept ahead of need, in blocks: a burst of new clients (a power cut's end)
/// finds addresses while the next claim is on its way.
const CLAIM_BELOW: usize = 2;
/// Above this many blocks' worth of free addresses, empty blocks go back to the pool.
const RETURN_ABOVE: usize = 4;
/// Lease events per published message at most.
const EVENTS_PER_MESSAGE: usize = 256;

/// The configuration serving now, replaced by reloads (the control plane's).
pub type Current = Arc<Mutex<Arc<Shared>>>;

/// A worker's command queue and the bell that wakes it.
pub type WorkerPort = (SyncSender<WorkerCommand>, Arc<Doorbell>);

/// The cluster thread's settings from the configuration.
pub fn settings(c: &ClusterConfig, longest_lease: u32) -> Settings {
    Settings {
        servers: c.nats.clone(),
        node: c.node.clone(),
        peers: c.peers.clone(),
        bucket: c.bucket.clone(),
        heartbeat: Duration::from_millis(c.heartbeat_ms.into()),
        dead_after: Duration::from_millis(c.dead_after_ms.into()),
        longest_lease: Duration::from_secs(longest_lease.into()),
        event_backlog: 4096,
    }
}

/// Runs the driver until `stop`; the cluster thread stops with it.
pub fn run(cluster: Cluster, current: Current, workers: Vec<WorkerPort>, stop: Arc<AtomicBool>) -> Result<()> {
    let shared = read(&current);
    // A reload keeps the view (and refuses a changed [cluster]), so it is taken once.
    let Some(view) = shared.cluster().cloned() else { anyhow::bail!("no [cluster] in the configuration") };
    let mut d = Driver { cluster, shared, view, workers, claiming: Vec::new(), last_round: None };
    while !stop.load(Ordering::Relaxed) {
        // After a reload, grants go to the new address space.
        d.shared = read(&current);
        d.feed_view();
        d.notifications();
        d.publish();
        d.peer_events(Duration::from_millis(20));
        if d.last_round.is_none_or(|t| t.elapsed() >= POOL_ROUND) {
            d.last_round = Some(Instant::now());
            d.pools();
        }
    }
    Ok(())
}

fn read(current: &Current) -> Arc<Shared> {
    current.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
}

struct Driver {
    cluster: Cluster,
    shared: Arc<Shared>,
    view: Arc<ClusterView>,
    workers: Vec<WorkerPort>,
    /// Pools with a claim in flight (one at a time per pool).
    claiming: Vec<u32>,
    last_round: Option<Instant>,
}

impl Driver {
    /// Live peers and the confirmed heartbeat (wall seconds, rounded down: the fence errs
    /// short) into the engines' view.
    fn feed_view(&self) {
        for i in 0..self.view.peers().len() {
            self.view.set_live(i, self.cluster.is_live(i));
        }
        let h = self.cluster.status.confirmed_heartbeat_ms.load(Ordering::Relaxed);
        if h > 0 {
            self.view.confirm_heartbeat((h / 1000) as u32);
        }
    }

    fn notifications(&mut self) {
        let space = self.shared.space();
        while let Ok(n) = self.cluster.notifications.try_recv() {
            log::debug!("cluster: {n:?}");
            match n {
                Notification::Resumed { pool, block, free_after: Some(at) } if at > crate::clock::unix_now() => {
                    log::info!("cluster: block {block} of pool {pool} resumed, taken over: free from {at}");
                    space.adopt_block(pool, block, at);
                }
                Notification::Granted { pool, block } | Notification::Resumed { pool, block, .. } => {
                    log::info!("cluster: block {block} of pool {pool} granted");
                    self.claiming.retain(|p| *p != pool);
                    space.grant_block(pool, block);
                }
                Notification::TakenOver { pool, block, from, free_after } => {
                    log::info!("cluster: took over block {block} of pool {pool} from {from}");
                    space.adopt_block(pool, block, free_after);
                }
                Notification::Lost { pool, block, to } => {
                    log::warn!("cluster: lost block {block} of pool {pool} to {to:?}");
                    space.lose_block(pool, block);
                }
                // Still ours in the bucket: serve from it again.
                Notification::ReturnFailed { pool, block } => {
                    space.grant_block(pool, block);
                }
                Notification::ClaimFailed { pool, .. } | Notification::NoFreeBlock { pool } => {
                    self.claiming.retain(|p| *p != pool);
                }
                Notification::Returned { .. } | Notification::PeerLive(_) | Notification::PeerDead(_) => {}
            }
        }
    }

    /// This node's lease events from the engines' outbox, in messages of up to
    /// [`EVENTS_PER_MESSAGE`] records.
    fn publish(&self) {
        let mut buf = Vec::new();
        let mut n = 0;
        while let Some(e) = self.view.pop_event() {
            if let Some(r) = crate::journal::encode_event(&e) {
                buf.extend_from_slice(&r);
                n += 1;
            }
            if n == EVENTS_PER_MESSAGE {
                self.cluster.send(Command::Publish(Bytes::from(std::mem::take(&mut buf))));
                n = 0;
            }
        }
        if n > 0 {
            self.cluster.send(Command::Publish(Bytes::from(buf)));
        }
    }

    /// Peers' events (waiting up to `wait` for the first) to the workers owning their clients.
    fn peer_events(&self, wait: Duration) {
        let mut per_worker: Vec<Vec<LeaseEvent>> = vec![Vec::new(); self.workers.len()];
        let first = self.cluster.peer_events.recv_timeout(wait).ok();
        let more = self.cluster.peer_events.try_iter().take(4096);
        for pe in first.into_iter().chain(more) {
            for record in pe.bytes.chunks(crate::journal::EVENT_LEN) {
                let Some(e) = crate::journal::decode_event(record) else {
                    log::debug!("cluster: a damaged lease event from peer {}", pe.peer);
                    continue;
                };
                let w = self.shared.worker_of_client(&e.client, &e.mac) % self.workers.len().max(1);
                per_worker[w].push(e);
            }
        }
        for (w, events) in per_worker.into_iter().enumerate() {
            if events.is_empty() {
                continue;
            }
            let (tx, bell) = &self.workers[w];
            // Blocks while the worker's queue is full (it drains it between batches).
            if tx.send(WorkerCommand::Adopt(events)).is_ok() {
                bell.ring();
            }
        }
    }

    /// Per pool: claim a block when fewer than [`CLAIM_BELOW`] blocks' worth of free addresses
    /// are ours, return an empty block when more than [`RETURN_ABOVE`] blocks' worth are; ripen
    /// taken-over blocks.
    fn pools(&mut self) {
        let space = self.shared.space();
        let Some(size) = space.block_size() else { return };
        let now = crate::clock::unix_now();
        // Cut off from NATS (no heartbeat confirmed for dead_after): claim nothing new.
        let h = self.cluster.status.confirmed_heartbeat_ms.load(Ordering::Relaxed);
        let since = Duration::from_millis(super::unix_ms().saturating_sub(h));
        let fenced = h == 0 || since > self.cluster.settings.dead_after;
        let pools: Vec<u32> = self.shared.pools().map(|(p, _, _)| p).collect();
        for pool in pools {
            space.ripen(pool, now);
            let free = space.free_in_our_blocks(pool);
            if free < CLAIM_BELOW * size as usize && !fenced && !self.claiming.contains(&pool) {
                self.claiming.push(pool);
                self.cluster.send(Command::ClaimAny { pool, blocks: space.blocks_in(pool) });
            } else if free > RETURN_ABOVE * size as usize {
                self.return_one(pool);
            }
        }
    }

    /// Returns one empty block of ours in `pool` (revoked in the space first).
    fn return_one(&self, pool: u32) {
        let space = self.shared.space();
        let ours = |b: u32| matches!(space.block_state(pool, b), Some(dhcp_core::lease::space::BlockState::Ours));
        let empty = (0..space.blocks_in(pool)).rev().find(|&b| ours(b) && space.block_census(pool, b).0 == 0);
        if let Some(block) = empty {
            if space.revoke_block(pool, block) {
                self.cluster.send(Command::Return { pool, block });
            }
        }
    }
}
