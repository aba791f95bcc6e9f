//! The cluster thread's NATS side: one current-thread tokio runtime running a main loop (the
//! bucket's watch, command handling, liveness checks, takeovers) and small local tasks
//! (heartbeats, compare-and-swap operations, the publisher, the peer-event consumer), so that a
//! slow NATS reply never holds up the heartbeat or the watch.
//!
//! Must never: block the runtime (channels out are unbounded or waited on in their own task);
//! hold a `RefCell` borrow across an await.

use super::blocks::{self, BlockId, Blocks, Op};
use super::liveness::{Change, Liveness};
use super::{unix_ms, Bytes, Command, Notification, PeerEvent, Settings, Status};
use async_nats::jetstream::{self, consumer, kv, stream};
use futures_util::StreamExt;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How long a JetStream request may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Lease events waiting to be published; past this they are dropped (counted).
const PUBLISH_BACKLOG: usize = 65_536;
/// How long lease events stay in the stream beyond the longest lease (every live lease has an
/// event younger than the longest lease: its grant or its last renewal).
const EVENT_MARGIN: Duration = Duration::from_secs(600);
/// How often a consumer that delivered nothing is checked for a stall (the stream has more).
const STALL_CHECK: Duration = Duration::from_secs(2);

/// Everything the thread owns.
#[derive(Debug)]
pub(super) struct Link {
    pub(super) settings: Settings,
    pub(super) commands: crossbeam_channel::Receiver<Command>,
    pub(super) wake: Arc<tokio::sync::Notify>,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) notify: crossbeam_channel::Sender<Notification>,
    pub(super) events: crossbeam_channel::Sender<PeerEvent>,
    pub(super) status: Arc<Status>,
}

/// The thread's body.
pub(super) fn run(link: Link) {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return log::error!("cluster: no runtime: {e}"),
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, main(link));
}

/// The main loop's state.
struct Node {
    link: Link,
    kv: kv::Store,
    liveness: Rc<RefCell<Liveness>>,
    blocks: Blocks,
    done_tx: mpsc::UnboundedSender<(BlockId, Result<u64, ()>)>,
    publish_tx: mpsc::Sender<Bytes>,
    boot: u64,
    /// When the watch last delivered anything.
    last_entry: Instant,
    /// The newest revision the watch delivered.
    last_revision: u64,
    /// The longest lease time any peer's heartbeat announced (s): a takeover waits for the
    /// longer of it and ours, so a node configured with longer leases is covered too.
    peer_longest: u64,
}

async fn main(link: Link) {
    let Some(client) = connect(&link).await else { return };
    let mut js = jetstream::new(client);
    js.set_timeout(REQUEST_TIMEOUT);
    let Some((kv, events)) = ensure(&js, &link).await else { return };
    let s = &link.settings;
    let liveness = Rc::new(RefCell::new(Liveness::new(s.peers.len(), s.me(), s.dead_after, Instant::now())));
    // This run's start: tells its heartbeats from an earlier run's still in the bucket.
    let boot = unix_ms();
    tokio::task::spawn_local(heartbeats(kv.clone(), liveness.clone(), s.clone(), link.status.clone(), boot));
    let (publish_tx, publish_rx) = mpsc::channel(PUBLISH_BACKLOG);
    tokio::task::spawn_local(publisher(js.clone(), s.clone(), publish_rx, link.status.clone()));
    tokio::task::spawn_local(consume(events, s.clone(), link.events.clone(), link.status.clone()));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let blocks = Blocks::new(&s.node);
    let mut node = Node {
        link,
        kv,
        liveness,
        blocks,
        done_tx,
        publish_tx,
        boot,
        last_entry: Instant::now(),
        last_revision: 0,
        peer_longest: 0,
    };
    let Some(mut watch) = node.watch().await else { return };
    let mut tick = tokio::time::interval(node.link.settings.heartbeat / 4);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let wake = node.link.wake.clone();
    while !node.link.stop.load(Ordering::Relaxed) {
        tokio::select! {
            entry = watch.next() => match entry {
                Some(Ok(e)) => node.entry(e),
                Some(Err(e)) => log::debug!("cluster: watch: {e}"),
                None => match node.watch().await {
                    Some(w) => watch = w,
                    None => return,
                },
            },
            Some((id, result)) = done_rx.recv() => node.done(id, result),
            _ = tick.tick() => {
                node.tick();
                // Our own heartbeat goes through the watch every heartbeat: silence this long
                // means the watch's consumer is gone (its server stopped); start a new one.
                if node.last_entry.elapsed() > node.link.settings.dead_after {
                    log::debug!("cluster {}: bucket watch silent, starting over", node.link.settings.node);
                    node.last_entry = Instant::now();
                    match node.watch().await {
                        Some(w) => watch = w,
                        None => return,
                    }
                }
            }
            _ = wake.notified() => node.commands(),
        }
    }
}

/// Connects to the servers, retrying in the background (a NATS server down at start is no
/// reason not to run).
async fn connect(link: &Link) -> Option<async_nats::Client> {
    let status = link.status.clone();
    let options = async_nats::ConnectOptions::new()
        .name(format!("xdhcpd-{}", link.settings.node))
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(2))
        // A silent partition leaves the TCP connection open: pings find it dead within a few
        // heartbeats, and a new connection after the heal does not wait out TCP's back-off.
        .ping_interval(link.settings.heartbeat.max(Duration::from_millis(500)))
        .request_timeout(Some(REQUEST_TIMEOUT))
        .reconnect_delay_callback(|attempts| Duration::from_millis(100 * attempts.min(10) as u64))
        .event_callback(move |event| {
            let status = status.clone();
            async move {
                match event {
                    async_nats::Event::Connected => status.connected.store(true, Ordering::Relaxed),
                    async_nats::Event::Disconnected => status.connected.store(false, Ordering::Relaxed),
                    _ => {}
                }
                log::info!("cluster: NATS {event}");
            }
        });
    match options.connect(link.settings.servers.clone()).await {
        Ok(c) => Some(c),
        Err(e) => {
            log::error!("cluster: NATS servers {:?}: {e}", link.settings.servers);
            None
        }
    }
}

/// Creates (or finds) the bucket's stream and the event stream, retrying until NATS answers
/// or the thread is stopped. The bucket's stream is made directly (not through the client's
/// key-value creation, which fails to read nats-server 2.9's account information).
async fn ensure(js: &jetstream::Context, link: &Link) -> Option<(kv::Store, stream::Stream)> {
    let s = &link.settings;
    let replicas = s.servers.len().min(3);
    let kv_config = stream::Config {
        name: format!("KV_{}", s.bucket),
        subjects: vec![format!("$KV.{}.>", s.bucket)],
        max_messages_per_subject: 1,
        allow_rollup: true,
        deny_delete: false,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        num_replicas: replicas,
        ..Default::default()
    };
    let ev_config = stream::Config {
        name: format!("{}_EV", s.bucket),
        subjects: vec![format!("{}.ev.>", s.bucket)],
        max_age: s.longest_lease + EVENT_MARGIN,
        num_replicas: replicas,
        ..Default::default()
    };
    let mut failures = 0u32;
    while !link.stop.load(Ordering::Relaxed) {
        let made = async {
            js.get_or_create_stream(kv_config.clone()).await?;
            let events = js.get_or_create_stream(ev_config.clone()).await?;
            let kv = js.get_key_value(&s.bucket).await?;
            Ok::<_, async_nats::Error>((kv, events))
        };
        match made.await {
            Ok(v) => return Some(v),
            Err(e) if failures.is_power_of_two() => log::warn!("cluster: setting up JetStream: {e} (retrying)"),
            Err(_) => {}
        }
        failures += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    None
}

/// A heartbeat's value: "BOOT SEQ MS LONGEST" (this run's start, its number, its send time in
/// UNIX ms, the longest lease time this node grants in seconds).
fn heartbeat_value(boot: u64, seq: u64, sent_ms: u64, longest: u64) -> String {
    format!("{boot} {seq} {sent_ms} {longest}")
}

/// The longest lease time a heartbeat's value announces (none from an older node).
fn announced_longest(value: &str) -> Option<u64> {
    value.split(' ').nth(3)?.parse().ok()
}

/// Writes `hb.<node>` every heartbeat, each write in a task of its own (a slow reply does not
/// delay the next); records the send time of the newest one NATS confirmed.
async fn heartbeats(kv: kv::Store, liveness: Rc<RefCell<Liveness>>, s: Settings, status: Arc<Status>, boot: u64) {
    let mut every = tokio::time::interval(s.heartbeat);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let key = format!("hb.{}", s.node);
    let s_longest = s.longest_lease.as_secs();
    for seq in 1u64.. {
        every.tick().await;
        let sent_ms = unix_ms();
        liveness.borrow_mut().sent(seq, Instant::now());
        let (kv, key, status) = (kv.clone(), key.clone(), status.clone());
        tokio::task::spawn_local(async move {
            match kv.put(&key, Bytes::from(heartbeat_value(boot, seq, sent_ms, s_longest))).await {
                Ok(_) => {
                    status.confirmed_heartbeat_ms.fetch_max(sent_ms, Ordering::Relaxed);
                }
                Err(e) => {
                    if status.heartbeats_failed.fetch_add(1, Ordering::Relaxed).is_power_of_two() {
                        log::warn!("cluster: heartbeat not confirmed: {e}");
                    }
                }
            }
        });
    }
}

impl Node {
    /// The bucket's watch (None: stopped before NATS answered): the first one replays the
    /// newest value of every key, a later one goes on after the last revision seen, so no
    /// change between the two is missed.
    async fn watch(&self) -> Option<kv::Watch> {
        while !self.link.stop.load(Ordering::Relaxed) {
            let watch = async {
                match self.last_revision {
                    0 => self.kv.watch_with_history(">").await,
                    r => self.kv.watch_all_from_revision(r + 1).await,
                }
            };
            let node = &self.link.settings.node;
            match tokio::time::timeout(2 * REQUEST_TIMEOUT, watch).await {
                Ok(Ok(w)) => return Some(w),
                Ok(Err(e)) => log::warn!("cluster {node}: watching the bucket: {e} (retrying)"),
                Err(_) => log::warn!("cluster {node}: watching the bucket: no answer (retrying)"),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        None
    }

    fn tell(&self, n: Notification) {
        match &n {
            Notification::PeerLive(p) => self.link.status.set_live(*p, true),
            Notification::PeerDead(p) => self.link.status.set_live(*p, false),
            _ => {}
        }
        log::debug!("cluster {}: {n:?}", self.link.settings.node);
        let _ = self.link.notify.send(n);
    }

    /// When a block taken over now may give out its free addresses (UNIX seconds).
    fn free_after(&self) -> u32 {
        let longest = self.link.settings.longest_lease.max(Duration::from_secs(self.peer_longest));
        let at = Duration::from_millis(unix_ms()) + longest + Duration::from_secs(2);
        at.as_secs() as u32
    }

    /// One change of the bucket.
    fn entry(&mut self, e: kv::Entry) {
        self.last_entry = Instant::now();
        self.last_revision = self.last_revision.max(e.revision);
        log::trace!(
            "cluster {}: {} rev {} {:?} {}",
            self.link.settings.node,
            e.key,
            e.revision,
            e.operation,
            e.seen_current
        );
        if e.seen_current {
            self.blocks.set_current();
        }
        let put = e.operation == kv::Operation::Put;
        if let Some(name) = e.key.strip_prefix("hb.") {
            if !put {
                return;
            }
            if name == self.link.settings.node {
                // "BOOT SEQ MS": only this run's heartbeats are echoes (BOOT: its start, ms).
                let value = String::from_utf8_lossy(&e.value);
                let mut parts = value.split(' ');
                let boot = parts.next().and_then(|b| b.parse::<u64>().ok());
                let seq = parts.next().and_then(|s| s.parse().ok());
                if let (Some(b), Some(seq)) = (boot, seq) {
                    if b == self.boot && e.seen_current {
                        self.liveness.borrow_mut().echoed(seq, Instant::now());
                    }
                }
            } else if let Some(peer) = self.link.settings.peers.iter().position(|p| p == name) {
                self.peer_lease_time(name, &String::from_utf8_lossy(&e.value));
                let change = self.liveness.borrow_mut().heard(peer, Instant::now());
                if let Some(Change::Live(p)) = change {
                    self.tell(Notification::PeerLive(p));
                }
            }
        } else if let Some(id) = blocks::parse_key(&e.key) {
            let owner = put.then(|| String::from_utf8_lossy(&e.value).into_owned());
            let free_after = self.free_after();
            if let Some(n) = self.blocks.seen(id, owner.as_deref(), e.revision, free_after) {
                self.tell(n);
            }
        }
    }

    /// Notes the longest lease time a peer's heartbeat ("BOOT SEQ MS LONGEST") announces.
    fn peer_lease_time(&mut self, name: &str, value: &str) {
        let Some(longest) = announced_longest(value) else { return };
        let ours = self.link.settings.longest_lease.as_secs();
        if longest > self.peer_longest.max(ours) {
            log::warn!(
                "cluster: node {name} grants leases up to {longest} s, this node {ours} s: every node should grant \
                 the same; takeovers wait for the longer"
            );
        }
        self.peer_longest = self.peer_longest.max(longest);
    }

    fn done(&mut self, id: BlockId, result: Result<u64, ()>) {
        let free_after = self.free_after();
        if let Some(n) = self.blocks.done(id, result, free_after) {
            self.tell(n);
        }
    }

    /// Periodic work: commands that came without a wake-up, deaths, takeovers.
    fn tick(&mut self) {
        self.commands();
        let changes = self.liveness.borrow_mut().check();
        for c in changes {
            if let Change::Dead(p) = c {
                log::warn!("cluster {}: node {} is dead", self.link.settings.node, self.link.settings.peers[p]);
                self.tell(Notification::PeerDead(p));
            }
        }
        self.take_over();
    }

    /// Tries to take over every block of every dead peer not already being taken over.
    fn take_over(&mut self) {
        let peers = self.link.settings.peers.clone();
        for (p, name) in peers.iter().enumerate() {
            if !self.liveness.borrow().is_dead(p) {
                continue;
            }
            for (id, revision) in self.blocks.owned_by(name) {
                if self.blocks.start(id, Op::TakeOver { from: name.clone() }).is_none() {
                    continue;
                }
                // The wait is recorded with the owner: a restart of ours keeps it (see blocks::value).
                let me = blocks::value(&self.link.settings.node, Some(self.free_after()));
                let (kv, done) = (self.kv.clone(), self.done_tx.clone());
                tokio::task::spawn_local(async move {
                    let r = kv.update(blocks::key(id), Bytes::from(me), revision).await;
                    let _ = done.send((id, r.map_err(|e| log::debug!("cluster: takeover {id:?}: {e}"))));
                });
            }
        }
    }

    fn commands(&mut self) {
        while let Ok(c) = self.link.commands.try_recv() {
            match c {
                Command::Claim { pool, block } => self.claim((pool, block)),
                Command::ClaimAny { pool, blocks } => {
                    let start = start_block(&self.link.settings.node, blocks);
                    match self.blocks.free_candidate(pool, blocks, start) {
                        Some(block) => self.claim((pool, block)),
                        None => self.tell(Notification::NoFreeBlock { pool }),
                    }
                }
                Command::Return { pool, block } => self.give_back((pool, block)),
                Command::Publish(bytes) => {
                    if self.publish_tx.try_send(bytes).is_err() {
                        self.link.status.publish_failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }

    fn claim(&mut self, id: BlockId) {
        if self.blocks.start(id, Op::Claim).is_none() {
            return self.tell(Notification::ClaimFailed { pool: id.0, block: id.1 });
        }
        let (kv, me, done) = (self.kv.clone(), self.link.settings.node.clone(), self.done_tx.clone());
        tokio::task::spawn_local(async move {
            let r = kv.create(blocks::key(id), Bytes::from(me)).await;
            let _ = done.send((id, r.map_err(|e| log::debug!("cluster: claim {id:?}: {e}"))));
        });
    }

    fn give_back(&mut self, id: BlockId) {
        if self.blocks.owner(id) != Some(self.link.settings.node.as_str()) {
            return self.tell(Notification::ReturnFailed { pool: id.0, block: id.1 });
        }
        let Some(revision) = self.blocks.start(id, Op::Return) else {
            return self.tell(Notification::ReturnFailed { pool: id.0, block: id.1 });
        };
        let (kv, done) = (self.kv.clone(), self.done_tx.clone());
        tokio::task::spawn_local(async move {
            let r = kv.delete_expect_revision(blocks::key(id), Some(revision)).await;
            let _ = done.send((id, r.map(|()| 0).map_err(|e| log::debug!("cluster: return {id:?}: {e}"))));
        });
    }
}

/// Where this node starts looking for a free block: nodes start at different places, so two
/// of them rarely race for the same one.
fn start_block(node: &str, blocks: u32) -> u32 {
    let h = node.bytes().fold(2_166_136_261u32, |h, b| (h ^ b as u32).wrapping_mul(16_777_619));
    h % blocks.max(1)
}

/// Publishes this node's lease events in order: each batch is sent at once and its
/// acknowledgements awaited in order; from the first one that failed, the rest is sent again
/// (with the same message ids, so the stream drops what it already has) until NATS takes it.
async fn publisher(js: jetstream::Context, s: Settings, mut rx: mpsc::Receiver<Bytes>, status: Arc<Status>) {
    let subject = format!("{}.ev.{}", s.bucket, s.node);
    let boot = unix_ms();
    let mut seq = 0u64;
    let mut batch: Vec<(String, Bytes)> = Vec::new();
    while let Some(first) = rx.recv().await {
        batch.clear();
        seq += 1;
        batch.push((format!("{}-{boot}-{seq}", s.node), first));
        while batch.len() < 256 {
            let Ok(more) = rx.try_recv() else { break };
            seq += 1;
            batch.push((format!("{}-{boot}-{seq}", s.node), more));
        }
        let mut from = 0;
        let mut failures = 0u32;
        while from < batch.len() {
            match publish_all(&js, &subject, &batch[from..]).await {
                Ok(()) => from = batch.len(),
                Err((done, e)) => {
                    from += done;
                    failures += 1;
                    if failures.is_power_of_two() {
                        log::warn!("cluster: publishing lease events: {e} (retrying)");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        status.published.fetch_add(batch.len() as u64, Ordering::Relaxed);
    }
}

/// Sends every message, then awaits the acknowledgements in order; Err names how many were
/// acknowledged before the first failure.
async fn publish_all(
    js: &jetstream::Context,
    subject: &str,
    msgs: &[(String, Bytes)],
) -> Result<(), (usize, async_nats::Error)> {
    let mut acks = Vec::with_capacity(msgs.len());
    for (id, bytes) in msgs {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
        match js.publish_with_headers(subject.to_string(), headers, bytes.clone()).await {
            Ok(ack) => acks.push(ack),
            Err(e) => {
                acks.clear();
                return Err((0, e.into()));
            }
        }
    }
    for (i, ack) in acks.into_iter().enumerate() {
        ack.await.map_err(|e| (i, e.into()))?;
    }
    Ok(())
}

/// Reads every node's lease events from the start and hands the peers' ones on, waiting while
/// the server is behind. An ordered consumer; after any error (its server stopped, a gap) a new
/// one starts right after the last message taken, so nothing is handed on twice or skipped.
async fn consume(events: stream::Stream, s: Settings, tx: crossbeam_channel::Sender<PeerEvent>, status: Arc<Status>) {
    let prefix = format!("{}.ev.", s.bucket);
    let mut next = 1u64;
    let mut failures = 0u32;
    loop {
        let config = consumer::pull::OrderedConfig {
            filter_subject: format!("{prefix}>"),
            deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: next },
            ..Default::default()
        };
        let messages = match events.create_consumer(config).await {
            Ok(c) => c.messages().await.map_err(async_nats::Error::from),
            Err(e) => Err(e.into()),
        };
        let mut messages = match messages {
            Ok(m) => m,
            Err(e) => {
                failures += 1;
                if failures.is_power_of_two() {
                    log::warn!("cluster {}: consuming lease events: {e} (retrying)", s.node);
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let mut check = tokio::time::interval_at(tokio::time::Instant::now() + STALL_CHECK, STALL_CHECK);
        let mut at_check = next;
        loop {
            let m = tokio::select! {
                m = messages.next() => m,
                _ = check.tick() => {
                    if next == at_check && stalled(&events, next).await {
                        log::debug!("cluster {}: lease events stalled at {next} (starting over)", s.node);
                        break;
                    }
                    at_check = next;
                    continue;
                }
            };
            let m = match m {
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    log::debug!("cluster {}: lease events: {e} (starting over at {next})", s.node);
                    break;
                }
                None => break,
            };
            if let Ok(info) = m.info() {
                next = info.stream_sequence + 1;
            }
            let Some(event) = peer_event(&s, &prefix, &m, &status) else { continue };
            if !hand_on(&tx, event).await {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether the stream holds messages from `next` on that the consumer has not delivered (an
/// ordered consumer whose server stopped can wait forever without an error).
async fn stalled(events: &stream::Stream, next: u64) -> bool {
    events.get_info().await.is_ok_and(|i| i.state.last_sequence >= next)
}

/// The peer event a message carries (None: ours, or from a node not in `peers`, counted).
fn peer_event(s: &Settings, prefix: &str, m: &jetstream::Message, status: &Status) -> Option<PeerEvent> {
    let node = m.subject.strip_prefix(prefix).unwrap_or("");
    if node == s.node {
        return None;
    }
    let Some(peer) = s.peers.iter().position(|p| p == node) else {
        status.events_unknown.fetch_add(1, Ordering::Relaxed);
        return None;
    };
    status.events_received.fetch_add(1, Ordering::Relaxed);
    Some(PeerEvent { peer, bytes: m.payload.clone() })
}

/// Hands `event` on, waiting while the channel is full; false when nobody takes them any more.
async fn hand_on(tx: &crossbeam_channel::Sender<PeerEvent>, mut event: PeerEvent) -> bool {
    loop {
        match tx.try_send(event) {
            Ok(()) => return true,
            Err(crossbeam_channel::TrySendError::Full(e)) => event = e,
            Err(crossbeam_channel::TrySendError::Disconnected(_)) => return false,
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_heartbeat_announces_the_longest_lease() {
        assert_eq!(super::announced_longest(&super::heartbeat_value(1, 2, 3, 86400)), Some(86400));
        assert_eq!(super::announced_longest("1 2 3"), None, "a node of an older version");
        assert_eq!(super::announced_longest("1 2 3 x"), None);
    }
}
