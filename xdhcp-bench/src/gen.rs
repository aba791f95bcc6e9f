//! The generator: emulated clients, the scenarios that drive them, the checks on every reply,
//! and the loop that runs them over a [`Transport`].
//!
//! Each client is a 12-byte [`Client`] record in one flat `Vec`, indexed by client number;
//! the number is also its MAC address ([`dhcp_core::client::mac_for`]) and, with a per-client
//! sequence byte and a per-run salt, its transaction id, so a reply finds its client by
//! `chaddr` in O(1) and proves it answers the latest transmission by `xid`. Nothing else is
//! kept per client: sending a message means putting the client number on the send queue; the
//! client's phase says what to write when its turn comes. Loss timeouts sit in FIFO queues
//! (one per back-off level: every entry of a level has the same timeout, so the queue is in
//! deadline order) and are checked lazily against the client's sequence byte. Leases given at
//! the start (`--leases-in`) bind clients before the first packet; with `--leases-out`, one
//! more `u32` per client keeps the last address ACKed to it.
//!
//! Checks: a map address → client (filled as offers and ACKs arrive) finds an address ACKed
//! to a client while another live client holds it (an error), an address offered to two
//! clients at once or offered while leased to another (reported), and declined addresses
//! offered again.
//!
//! `starvation` adds a flooding circuit ([`super::flood`]) beside the clients: its DISCOVERs go
//! out when no client message is owed, and its replies are recognised by `chaddr` before any
//! client lookup and counted apart (`flood_*` counters), so the clients' counts, checks and
//! latencies are those of legitimate traffic alone.

use super::flood::{self, Flood, Owner};
use super::hist::LatencyHistogram;
use super::transport::{Framing, Transport, Tx};
use dhcp_core::client::{mac_for, ClientMsg, TYPICAL_PRL};
use dhcp_core::wire::dhcp::{self, FLAG_BROADCAST};
use dhcp_core::wire::ether;
use dhcp_core::wire::frame;
use dhcp_core::wire::ipv4;
use dhcp_core::wire::options::{code, MessageType};
use dhcp_core::wire::udp;
use hashbrown::HashMap;
use std::collections::VecDeque;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What the emulated clients do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// DISCOVER, OFFER, REQUEST, ACK, again and again (a bound client starts over).
    Dora,
    /// DORA once per client, then renewals (REQUEST with `ciaddr`, unicast) of bound clients.
    Renew,
    /// DORA then RELEASE, again and again.
    Release,
    /// DORA then DECLINE, again and again (the server must not offer a declined address).
    Decline,
    /// DORA once per client, then INFORM exchanges of bound clients.
    Inform,
    /// Each client DISCOVERs once; a share of them then REQUESTs another server's offer
    /// (naming another server id), the rest ours. Then fresh probe clients DISCOVER: how many
    /// get an offer shows how many of the abandoned offers the server still holds.
    Foreign,
    /// Each client runs one DORA (with retransmissions): run it with more clients than the
    /// pool has addresses to see who is served and who starves.
    Exhaustion,
    /// All clients DISCOVER at once, retransmitting with exponential back-off (timeout 1x,
    /// 2x, 4x ... 64x). With leases given (`--leases-in`): the restart avalanche, every client
    /// that holds a lease sends its INIT-REBOOT REQUEST at once (the others stay quiet).
    Avalanche,
    /// Relay mode: the clients run `dora`, each on its own circuit, while one more circuit
    /// floods DISCOVERs from a new hardware address each time (`--flood-rate`) and never
    /// REQUESTs: are the legitimate clients still served, and how fast?
    Starvation,
}

impl Scenario {
    /// Each client goes through the scenario once and the run ends when all are done, rather
    /// than running exchanges for a duration or a count.
    pub fn once(self) -> bool {
        matches!(self, Scenario::Foreign | Scenario::Exhaustion | Scenario::Avalanche)
    }

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Dora => "dora",
            Scenario::Renew => "renew",
            Scenario::Release => "release",
            Scenario::Decline => "decline",
            Scenario::Inform => "inform",
            Scenario::Foreign => "foreign",
            Scenario::Exhaustion => "exhaustion",
            Scenario::Avalanche => "avalanche",
            Scenario::Starvation => "starvation",
        }
    }
}

/// How to run the generator.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub scenario: Scenario,
    /// Distinct clients (`-R`).
    pub clients: u32,
    /// Number of the first client: MAC addresses are `mac_for(first_client + n)`, so several
    /// generators on one segment can use disjoint clients.
    pub first_client: u32,
    /// New exchanges started per second; `None`: as fast as the window allows.
    pub rate: Option<f64>,
    /// Most requests outstanding (sent, not answered, not timed out) before starting another.
    pub window: u32,
    /// How long to start exchanges (repeating scenarios; a cap for the others).
    pub duration: Option<Duration>,
    /// How many exchanges to start (repeating scenarios).
    pub exchanges: Option<u64>,
    /// Loss timeout: a request unanswered this long counts as a drop and is retransmitted.
    pub timeout: Duration,
    /// Transmissions of one request before the client gives up (1 to 15); in once-through
    /// scenarios also the number of starts over after a NAK.
    pub tries: u8,
    /// Ask for broadcast replies (the broadcast flag).
    pub broadcast: bool,
    /// Relay mode: the relay agents' addresses (giaddr); empty for direct mode.
    pub relays: Vec<Ipv4Addr>,
    /// Relay mode: the server to unicast to.
    pub server: Option<Ipv4Addr>,
    /// `foreign`: share of clients that take another server's offer.
    pub foreign_share: f64,
    /// `foreign`: the other server's id (default: the server's id plus one).
    pub foreign_server_id: Option<Ipv4Addr>,
    /// `foreign`: fresh clients that DISCOVER afterwards (default: as many as took the other
    /// offer).
    pub probes: Option<u32>,
    /// `starvation`: DISCOVERs per second from the flooding circuit; 0 for none (the
    /// unloaded baseline, with the same report).
    pub flood_rate: f64,
    /// Spin instead of sleeping in `poll` when idle.
    pub busy_poll: bool,
    /// Leases the clients hold at the start (client number, address): they are bound, their
    /// addresses checked against every ACK to another client; `avalanche` INIT-REBOOTs them.
    pub leases_in: Vec<(u32, Ipv4Addr)>,
    /// Keep the last address ACKed to each client, for [`RunOutcome::leases`].
    pub record_leases: bool,
    /// Keep only the leases of clients last answered by this server (its server id).
    pub leases_of: Option<Ipv4Addr>,
}

impl Default for RunConfig {
    fn default() -> RunConfig {
        RunConfig {
            scenario: Scenario::Dora,
            clients: 1000,
            first_client: 0,
            rate: None,
            window: 256,
            duration: Some(Duration::from_secs(10)),
            exchanges: None,
            timeout: Duration::from_secs(1),
            tries: 3,
            broadcast: false,
            relays: Vec::new(),
            server: None,
            foreign_share: 0.5,
            foreign_server_id: None,
            probes: None,
            flood_rate: DEFAULT_FLOOD_RATE,
            busy_poll: false,
            leases_in: Vec::new(),
            record_leases: false,
            leases_of: None,
        }
    }
}

/// `starvation`: the flooding circuit's DISCOVERs per second unless told otherwise: far more
/// than a pool of thousands of addresses lasts against.
pub const DEFAULT_FLOOD_RATE: f64 = 20_000.0;

/// A timed request/reply exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeKind {
    DiscoverOffer = 0,
    RequestAck = 1,
    RenewAck = 2,
    InformAck = 3,
    /// `foreign`: the probe clients' DISCOVERs.
    ProbeOffer = 4,
    /// INIT-REBOOT REQUESTs (requested address, no server id).
    RebootAck = 5,
}

pub const EXCHANGE_KINDS: [ExchangeKind; 6] = [
    ExchangeKind::DiscoverOffer,
    ExchangeKind::RequestAck,
    ExchangeKind::RenewAck,
    ExchangeKind::InformAck,
    ExchangeKind::ProbeOffer,
    ExchangeKind::RebootAck,
];

impl ExchangeKind {
    pub fn name(self) -> &'static str {
        match self {
            ExchangeKind::DiscoverOffer => "DISCOVER-OFFER",
            ExchangeKind::RequestAck => "REQUEST-ACK",
            ExchangeKind::RenewAck => "RENEW-ACK",
            ExchangeKind::InformAck => "INFORM-ACK",
            ExchangeKind::ProbeOffer => "PROBE-OFFER",
            ExchangeKind::RebootAck => "INIT-REBOOT-ACK",
        }
    }
}

/// Counts and latencies of one kind of exchange.
#[derive(Debug, Default, Clone)]
pub struct ExchangeStats {
    /// Requests sent, retransmissions included.
    pub sent: u64,
    /// Replies to them (NAKs included), each matching the latest transmission.
    pub received: u64,
    /// Requests that got no reply within the loss timeout.
    pub drops: u64,
    /// Replies that were NAKs.
    pub naks: u64,
    /// Request-to-reply time in microseconds.
    pub latency: LatencyHistogram,
}

/// Everything counted during a run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RunCounters {
    /// Exchanges started (the scenario's first message, or a renewal/inform/release).
    pub initiated: u64,
    /// DHCP messages sent (all kinds, retransmissions included).
    pub sent: u64,
    /// Replies matched to an outstanding request.
    pub received: u64,
    /// Exchanges that reached their end: an ACK or NAK, or a message that needs no reply.
    pub completed: u64,
    /// Requests unanswered within the loss timeout.
    pub drops: u64,
    pub retransmissions: u64,
    /// ACKs to REQUESTs in the selecting state.
    pub leases: u64,
    pub naks: u64,
    /// DISCOVERs given up after every try without an offer.
    pub no_offer: u64,
    /// REQUEST, renewal or INFORM exchanges given up after every try.
    pub abandoned: u64,
    pub releases: u64,
    pub declines: u64,
    /// REQUESTs naming another server (`foreign`).
    pub foreign_requests: u64,
    /// ARP replies sent for addresses our clients hold (direct mode).
    pub arp_replies: u64,
    /// ACKs of an address a live client other than the recipient holds: an error.
    pub duplicate_acks: u64,
    /// OFFERs of an address ACKed to another live client.
    pub offers_of_leased: u64,
    /// OFFERs of an address offered to another client whose offer is still outstanding.
    pub duplicate_offers: u64,
    /// OFFERs or ACKs of an address a client declined during the run.
    pub declined_reoffered: u64,
    /// Replies whose `chaddr` or `xid` is none of ours.
    pub unknown_client: u64,
    /// Replies to a transmission already timed out or answered (late or duplicated).
    pub stale_xid: u64,
    /// Replies of a type the client's state does not expect.
    pub wrong_type: u64,
    /// Frames or messages that do not parse.
    pub malformed: u64,
    /// Relay mode: replies without our option 82, or with it changed.
    pub relay_info_mismatch: u64,
    pub probes_offered: u64,
    pub probes_starved: u64,
    /// `starvation`: DISCOVERs the flooding circuit sent (in none of the counts above).
    pub flood_discovers: u64,
    /// `starvation`: OFFERs to the flood's DISCOVERs (matching `xid`, option 82 echoed).
    pub flood_offers: u64,
    /// `starvation`: of those, OFFERs of an address ACKed to a live legitimate client: an error.
    pub flood_offers_of_leased: u64,
    /// `starvation`: replies to flood identities that are no such OFFER (wrong type or `xid`,
    /// option 82 missing or changed).
    pub flood_unexpected: u64,
    /// INIT-REBOOTs ACKed with another address than the one requested: an error.
    pub reboot_moved: u64,
}

impl RunCounters {
    /// Replies that matched no outstanding request.
    pub fn unexpected(&self) -> u64 {
        self.unknown_client + self.stale_xid + self.wrong_type
    }
}

/// One second of the run.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct Sample {
    /// Seconds since the start, at the end of the interval.
    pub t: f64,
    /// Length of the interval in seconds (1, but for the last one); the counts below are
    /// those of the interval.
    pub secs: f64,
    pub initiated: u64,
    pub sent: u64,
    pub received: u64,
    pub completed: u64,
    pub drops: u64,
    /// Requests outstanding at the end of the interval.
    pub outstanding: u64,
    /// Latency of the replies of the interval (all kinds), microseconds.
    pub p50_us: Option<u32>,
    pub p99_us: Option<u32>,
}

/// An address found ACKed to two live clients.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Duplicate {
    pub address: Ipv4Addr,
    /// Client numbers: the earlier holder, then the new one.
    pub holder: u32,
    pub client: u32,
}

/// The result of a run.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// Seconds from the start until exchanges stopped being started (the measurement window
    /// for rates); for once-through scenarios, until every client was done.
    pub run_secs: f64,
    /// Seconds until the last outstanding request was answered or timed out.
    pub total_secs: f64,
    /// Counts when exchanges stopped being started (rates use these).
    pub at_run_end: RunCounters,
    /// Counts at the end.
    pub counters: RunCounters,
    pub exchanges: Vec<(ExchangeKind, ExchangeStats)>,
    pub series: Vec<Sample>,
    /// The first duplicates found (up to 16).
    pub duplicates: Vec<Duplicate>,
    /// Clients that got at least one ACK.
    pub served: u64,
    /// Clients that ended without a lease: no offer, or refused every time (once-through
    /// scenarios).
    pub starved: u64,
    /// Clients that started at least one exchange and never got an ACK.
    pub unserved: u64,
    /// Clients that never started an exchange: the run ended before their turn.
    pub unreached: u64,
    /// `foreign`: clients that took another server's offer; probe clients.
    pub foreign_clients: u64,
    pub probes: u64,
    /// Seconds from the start to the first and to the last ACK of the run.
    pub first_ack_secs: Option<f64>,
    pub last_ack_secs: Option<f64>,
    /// Distinct addresses ACKed during the run.
    pub unique_addresses: u64,
    /// With [`RunConfig::record_leases`]: the last address ACKed to each client that still
    /// holds it (given with `leases_in` or ACKed during the run), by client number.
    pub leases: Vec<(u32, Ipv4Addr)>,
}

// Client phases.
const IDLE: u8 = 0;
const DISCOVER: u8 = 1;
const REQUEST: u8 = 2;
const RENEW: u8 = 3;
const INFORM: u8 = 4;
const RELEASE: u8 = 5;
const DECLINE: u8 = 6;
const FOREIGN_REQUEST: u8 = 7;
/// A probe client that got its offer (it keeps it: held offers are what it measures).
const PROBED: u8 = 8;
/// A client that took another server's offer.
const GONE_FOREIGN: u8 = 9;
/// A client that gave up without a lease (no offer, or NAKed every time).
const STARVED: u8 = 10;
/// INIT-REBOOT: REQUEST for the held address, without a server id.
const REBOOT: u8 = 11;

// Client flags.
const LEASED: u8 = 1;
const SERVED: u8 = 2;
const QUEUED: u8 = 4;
/// Started at least one exchange.
const TRIED: u8 = 8;
const SERVER_SHIFT: u8 = 4;

// Address map values: the client number, and what has happened to the address.
const EVER_ACKED: u32 = 1 << 31;
const DECLINED: u32 = 1 << 30;
const HOLDER: u32 = DECLINED - 1;

/// Back-off levels: timeouts 1x, 2x, 4x ... 64x.
const LEVELS: usize = 7;
/// Servers remembered (id and MAC address); a 4-bit index per client names one.
const MAX_SERVERS: usize = 16;
/// Batches handled per turn of the loop, each way.
const TURN_BATCHES: usize = 4;
const BATCH: usize = 64;

/// One emulated client: 12 bytes.
#[derive(Debug, Default, Clone, Copy)]
struct Client {
    phase: u8,
    flags: u8,
    /// Low byte of the transaction id; advances with every transmission and timeout.
    seq: u8,
    /// Low nibble: transmissions of the current request so far; high nibble: restarts after a
    /// NAK (once-through scenarios).
    tries: u8,
    /// Offered or leased address (0 for none).
    addr: u32,
    /// When the outstanding request was sent: microseconds since the start, wrapping.
    sent: u32,
}

impl Client {
    /// Transmissions of the current request.
    fn sent_count(&self) -> u8 {
        self.tries & 0x0f
    }

    /// One more transmission of the current request.
    fn count_try(&mut self) {
        self.tries = (self.tries & 0xf0) | (self.sent_count() + 1).min(0x0f);
    }

    fn leased(&self) -> bool {
        self.flags & LEASED != 0
    }

    fn server(&self) -> usize {
        (self.flags >> SERVER_SHIFT) as usize
    }

    /// Waiting for a reply, or for its turn to send.
    fn busy(&self) -> bool {
        self.flags & QUEUED != 0 || matches!(self.phase, DISCOVER | REQUEST | RENEW | INFORM | REBOOT)
    }
}

/// A loss-timeout entry: valid while the client still has this phase and sequence byte.
#[derive(Debug, Clone, Copy)]
struct Timer {
    deadline: u64,
    client: u32,
    seq: u8,
    phase: u8,
}

#[derive(Debug, Clone, Copy)]
struct Server {
    id: Ipv4Addr,
    mac: [u8; 6],
}

/// An ARP reply owed: `client` holds the address `requester` asked about.
#[derive(Debug, Clone, Copy)]
struct ArpReply {
    client: u32,
    mac: [u8; 6],
    ip: Ipv4Addr,
    target: Ipv4Addr,
}

/// What a received frame held.
#[derive(Debug, Clone, Copy)]
enum Unframed {
    /// A UDP payload at `start..end`, from MAC address `src`.
    Dhcp {
        start: usize,
        end: usize,
        src: [u8; 6],
    },
    /// An ARP request, answered.
    Arp,
    Bad,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Starting exchanges.
    Run,
    /// `foreign`: fresh clients DISCOVER.
    Probe,
    /// No new exchanges and no retransmissions: the exchanges started finish (their next
    /// steps are sent), each request waiting at most one loss timeout.
    Drain,
    Done,
}

struct Gen<'c> {
    cfg: &'c RunConfig,
    framing: Framing,
    clients: Vec<Client>,
    /// Clients `0..main` run the scenario; `main..clients.len()` are `foreign` probes.
    main: u32,
    map: HashMap<u32, u32, foldhash::fast::FixedState>,
    pending: VecDeque<u32>,
    arp: VecDeque<ArpReply>,
    timers: [VecDeque<Timer>; LEVELS],
    servers: Vec<Server>,
    stats: [ExchangeStats; 6],
    /// With `record_leases`: the last address ACKed to each client (0: none); else empty.
    acked: Vec<u32>,
    interval: LatencyHistogram,
    c: RunCounters,
    outstanding: u64,
    cursor: u32,
    cursor_end: u32,
    stage: Stage,
    salt: u32,
    foreign_ppm: u64,
    duplicates: Vec<Duplicate>,
    unique: u64,
    first_ack: Option<u64>,
    last_ack: Option<u64>,
    tokens: f64,
    last_refill: u64,
    timeout_us: u64,
    /// When the last request expecting a reply was sent.
    last_tx: u64,
    /// `starvation`: the flooding circuit.
    flood: Option<Flood>,
}

/// Microseconds since `start`.
fn micros(start: Instant) -> u64 {
    start.elapsed().as_micros() as u64
}

/// `starvation` in relay mode at a rate above 0: the flooding circuit, behind the first relay
/// agent.
fn flood_of(cfg: &RunConfig, framing: Framing, salt: u32) -> Option<Flood> {
    let wanted = cfg.scenario == Scenario::Starvation && cfg.flood_rate > 0.0 && framing == Framing::Udp;
    let relay = cfg.relays.first().copied().filter(|_| wanted)?;
    Some(Flood::new(cfg.flood_rate, relay, cfg.server?, salt))
}

impl<'c> Gen<'c> {
    fn new(cfg: &'c RunConfig, framing: Framing) -> Gen<'c> {
        let foreign_ppm = (cfg.foreign_share.clamp(0.0, 1.0) * 1e6) as u64;
        let main = cfg.clients.clamp(1, HOLDER - 1);
        let foreign = if cfg.scenario == Scenario::Foreign { main as u64 * foreign_ppm / 1_000_000 } else { 0 };
        let probes = if cfg.scenario == Scenario::Foreign { cfg.probes.unwrap_or(foreign as u32) } else { 0 };
        let total = (main as u64 + probes as u64).min(HOLDER as u64 - 1) as u32;
        let salt = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() ^ d.as_secs() as u32)
            .unwrap_or(0x5eed);
        // Reserved up front so that the hot path does not allocate (beyond rare growth when a
        // server hands out more distinct addresses than there are clients).
        let cap = (total as usize).min(1 << 22);
        let mut map = HashMap::with_hasher(foldhash::fast::FixedState::default());
        map.reserve(cap);
        let timers = std::array::from_fn(|l| VecDeque::with_capacity(if l == 0 { cap.min(1 << 20) } else { 0 }));
        let mut g = Gen {
            cfg,
            framing,
            clients: vec![Client::default(); total as usize],
            acked: if cfg.record_leases { vec![0; total as usize] } else { Vec::new() },
            main,
            map,
            pending: VecDeque::with_capacity(total as usize),
            arp: VecDeque::with_capacity(1024),
            timers,
            servers: Vec::with_capacity(MAX_SERVERS),
            stats: Default::default(),
            interval: LatencyHistogram::default(),
            c: RunCounters::default(),
            outstanding: 0,
            cursor: 0,
            cursor_end: main,
            stage: Stage::Run,
            salt,
            foreign_ppm,
            duplicates: Vec::new(),
            unique: 0,
            first_ack: None,
            last_ack: None,
            tokens: 0.0,
            last_refill: 0,
            timeout_us: cfg.timeout.as_micros().max(1) as u64,
            last_tx: 0,
            flood: flood_of(cfg, framing, salt),
        };
        g.hold_given_leases();
        g
    }

    /// Binds the clients to the leases given at the start, as if ACKed in an earlier run.
    fn hold_given_leases(&mut self) {
        for &(number, addr) in &self.cfg.leases_in {
            let n = number.wrapping_sub(self.cfg.first_client);
            let Some(c) = self.clients.get_mut(n as usize).filter(|_| n < self.main) else { continue };
            c.addr = u32::from(addr);
            c.flags |= LEASED;
            self.map.insert(c.addr, n | EVER_ACKED);
            if let Some(a) = self.acked.get_mut(n as usize) {
                *a = c.addr;
            }
        }
    }

    fn xid(&self, n: u32, seq: u8) -> u32 {
        ((n.wrapping_mul(0x9e37_79b1) ^ self.salt) & 0xffff_ff00) | seq as u32
    }

    fn mac(&self, n: u32) -> [u8; 6] {
        mac_for(self.cfg.first_client.wrapping_add(n))
    }

    fn is_probe(&self, n: u32) -> bool {
        n >= self.main
    }

    /// `foreign`: whether client `n` takes the other server's offer. Spread evenly: exactly
    /// floor(clients × share) of them do.
    fn is_foreign(&self, n: u32) -> bool {
        self.cfg.scenario == Scenario::Foreign
            && n < self.main
            && (n as u64 + 1) * self.foreign_ppm / 1_000_000 > n as u64 * self.foreign_ppm / 1_000_000
    }

    fn kind(&self, n: u32, phase: u8) -> ExchangeKind {
        match phase {
            DISCOVER if self.is_probe(n) => ExchangeKind::ProbeOffer,
            DISCOVER => ExchangeKind::DiscoverOffer,
            REQUEST => ExchangeKind::RequestAck,
            RENEW => ExchangeKind::RenewAck,
            REBOOT => ExchangeKind::RebootAck,
            _ => ExchangeKind::InformAck,
        }
    }

    fn queue(&mut self, n: u32) {
        let c = &mut self.clients[n as usize];
        if c.flags & QUEUED == 0 {
            c.flags |= QUEUED;
            self.pending.push_back(n);
        }
    }

    fn idle(&self) -> bool {
        self.outstanding == 0 && self.pending.is_empty() && self.arp.is_empty()
    }

    /// Whether a message is owed now: an ARP reply, a queued client, or a flood DISCOVER.
    fn has_output(&self) -> bool {
        !self.pending.is_empty() || !self.arp.is_empty() || self.flood.as_ref().is_some_and(Flood::owed)
    }

    // ---- starting exchanges -------------------------------------------------------------

    /// Starts up to `budget` exchanges on clients that are free, round-robin.
    fn initiate(&mut self, budget: u64) -> u64 {
        let repeating = !self.cfg.scenario.once();
        let mut started = 0;
        let mut misses = 0;
        while started < budget && self.cursor < self.cursor_end {
            if let Some(limit) = self.cfg.exchanges.filter(|_| repeating) {
                if self.c.initiated >= limit {
                    break;
                }
            }
            let n = self.cursor;
            self.cursor += 1;
            if repeating && self.cursor == self.cursor_end {
                self.cursor = 0;
            }
            let c = self.clients[n as usize];
            if c.busy() || (!repeating && c.phase != IDLE) {
                // All busy: wait for replies rather than scan every client each turn.
                misses += 1;
                if misses >= 64 {
                    break;
                }
                continue;
            }
            let restart = self.cfg.scenario == Scenario::Avalanche && !self.cfg.leases_in.is_empty();
            if restart && !c.leased() {
                continue; // no lease to reboot with: stays quiet
            }
            let next = match self.cfg.scenario {
                _ if restart => REBOOT,
                Scenario::Renew if c.leased() => RENEW,
                Scenario::Inform if c.leased() => INFORM,
                Scenario::Release if c.leased() => RELEASE,
                Scenario::Decline if c.leased() => DECLINE,
                _ => DISCOVER,
            };
            let cl = &mut self.clients[n as usize];
            cl.phase = next;
            cl.tries = 0;
            cl.flags |= TRIED;
            self.queue(n);
            self.c.initiated += 1;
            started += 1;
        }
        started
    }

    /// How many exchanges the rate and the window allow now.
    fn budget(&mut self, now: u64) -> u64 {
        let in_flight = self.outstanding + self.pending.len() as u64;
        let window = (self.cfg.window as u64).saturating_sub(in_flight);
        let Some(rate) = self.cfg.rate else { return window.min((TURN_BATCHES * BATCH) as u64) };
        let dt = now.saturating_sub(self.last_refill) as f64 / 1e6;
        self.last_refill = now;
        // At most ~2 ms worth (and one batch) of credit: a stall is not made up by a burst.
        let burst = (rate * 0.002).max(BATCH as f64);
        self.tokens = (self.tokens + rate * dt).min(burst);
        (self.tokens.floor() as u64).min(window)
    }

    fn spend(&mut self, n: u64) {
        if self.cfg.rate.is_some() {
            self.tokens -= n as f64;
        }
    }

    // ---- sending ------------------------------------------------------------------------

    /// Writes the next owed message into `buf`: ARP replies first, then queued clients.
    fn fill(&mut self, buf: &mut [u8], now: u64) -> Option<Tx> {
        if let Some(a) = self.arp.pop_front() {
            return Some(self.write_arp(a, buf));
        }
        while let Some(n) = self.pending.pop_front() {
            let c = self.clients[n as usize];
            let phase = c.phase;
            let mt = match phase {
                DISCOVER => MessageType::Discover,
                REQUEST | RENEW | FOREIGN_REQUEST | REBOOT => MessageType::Request,
                INFORM => MessageType::Inform,
                RELEASE => MessageType::Release,
                DECLINE => MessageType::Decline,
                _ => {
                    self.clients[n as usize].flags &= !QUEUED;
                    continue;
                }
            };
            let awaits = matches!(phase, DISCOVER | REQUEST | RENEW | INFORM | REBOOT);
            {
                let cl = &mut self.clients[n as usize];
                cl.flags &= !QUEUED;
                if awaits {
                    // A new transaction id for every transmission: a late reply to an earlier
                    // one is then told apart (and not timed against this one).
                    cl.seq = cl.seq.wrapping_add(1);
                    cl.sent = now as u32;
                }
            }
            let Some(tx) = self.write_message(n, mt, buf) else {
                self.c.malformed += 1;
                self.clients[n as usize].phase = IDLE;
                continue;
            };
            if awaits {
                let level = if self.cfg.scenario == Scenario::Avalanche {
                    (c.sent_count() as usize).min(LEVELS - 1)
                } else {
                    0
                };
                let seq = self.clients[n as usize].seq;
                let deadline = now + (self.timeout_us << level);
                self.timers[level].push_back(Timer { deadline, client: n, seq, phase });
                self.outstanding += 1;
                self.last_tx = now;
                let k = self.kind(n, phase);
                self.stats[k as usize].sent += 1;
            }
            self.c.sent += 1;
            self.after_one_way(n, phase);
            return Some(tx);
        }
        self.fill_flood(buf)
    }

    /// The flood's next DISCOVER, when one is due and no client message is owed: our own
    /// queue never holds a legitimate client behind the flood (only the server's may).
    fn fill_flood(&mut self, buf: &mut [u8]) -> Option<Tx> {
        let tx = self.flood.as_mut().filter(|f| f.owed())?.write(buf)?;
        self.c.flood_discovers += 1;
        Some(tx)
    }

    /// Messages that need no reply end their exchange when sent.
    fn after_one_way(&mut self, n: u32, phase: u8) {
        let c = &mut self.clients[n as usize];
        match phase {
            RELEASE => {
                self.c.releases += 1;
            }
            DECLINE => {
                self.c.declines += 1;
                if let Some(v) = self.map.get_mut(&c.addr) {
                    *v |= DECLINED;
                } else {
                    self.map.insert(c.addr, n | DECLINED);
                }
            }
            FOREIGN_REQUEST => {
                self.c.foreign_requests += 1;
                c.phase = GONE_FOREIGN;
                c.addr = 0;
                self.c.completed += 1;
                return;
            }
            _ => return,
        }
        c.phase = IDLE;
        c.addr = 0;
        c.flags &= !LEASED;
        self.c.completed += 1;
        self.set_acked(n, 0);
    }

    fn server_id(&self, c: &Client) -> Ipv4Addr {
        match self.servers.get(c.server()) {
            Some(s) => s.id,
            None => self.cfg.server.unwrap_or(Ipv4Addr::UNSPECIFIED),
        }
    }

    /// Writes client `n`'s message of type `mt` (from its phase) into `buf`, framed for the
    /// transport.
    fn write_message(&self, n: u32, mt: MessageType, buf: &mut [u8]) -> Option<Tx> {
        let c = self.clients[n as usize];
        let mac = self.mac(n);
        let addr = Ipv4Addr::from(c.addr);
        let sid = self.server_id(&c);
        let foreign_sid = self.cfg.foreign_server_id.unwrap_or_else(|| Ipv4Addr::from(u32::from(sid).wrapping_add(1)));
        let (sid_b, addr_b, fsid_b) = (sid.octets(), addr.octets(), foreign_sid.octets());
        let mut m = ClientMsg::new(mac, self.xid(n, c.seq));
        if self.cfg.broadcast {
            m.flags = FLAG_BROADCAST;
        }
        let opts_request = [(code::SERVER_ID, &sid_b[..]), (code::REQUESTED_IP, &addr_b[..])];
        let opts_foreign = [(code::SERVER_ID, &fsid_b[..]), (code::REQUESTED_IP, &addr_b[..])];
        let opts_release = [(code::SERVER_ID, &sid_b[..])];
        let opts_decline = [(code::REQUESTED_IP, &addr_b[..]), (code::SERVER_ID, &sid_b[..])];
        let opts_reboot = [(code::REQUESTED_IP, &addr_b[..])];
        // Unicast to the server from the client's address (renewing, releasing); everything
        // else is broadcast from 0.0.0.0, or from the address for INFORM.
        let mut unicast = false;
        match (c.phase, mt) {
            (DISCOVER, _) => {}
            (REQUEST, _) => m.options = &opts_request,
            (FOREIGN_REQUEST, _) => m.options = &opts_foreign,
            (REBOOT, _) => m.options = &opts_reboot,
            (RENEW, _) => {
                m.ciaddr = addr;
                unicast = true;
            }
            (INFORM, _) => m.ciaddr = addr,
            (RELEASE, _) => {
                m.ciaddr = addr;
                m.options = &opts_release;
                m.prl = &[];
                unicast = true;
            }
            (DECLINE, _) => {
                m.options = &opts_decline;
                m.prl = &[];
            }
            _ => return None,
        }
        let relay_info = self.relay_info(n);
        match self.framing {
            Framing::Udp => {
                let giaddr = self.relay_of(n);
                m.giaddr = giaddr;
                m.relay_info = Some(&relay_info);
                let len = m.write(mt, buf).ok()?;
                let to = SocketAddrV4::new(self.cfg.server.unwrap_or(sid), 67);
                Some(Tx { len, src: giaddr, dst: to })
            }
            Framing::Ethernet => {
                let at = frame::payload_offset(0);
                let len = m.write(mt, buf.get_mut(at..)?).ok()?;
                let server = self.servers.get(c.server());
                let (src_ip, dst_ip, dst_mac) = match (unicast, server) {
                    (true, Some(s)) => (addr, s.id, s.mac),
                    _ if c.phase == INFORM => (addr, Ipv4Addr::BROADCAST, ether::BROADCAST),
                    _ => (Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, ether::BROADCAST),
                };
                let l2 = ether::Header {
                    dst: dst_mac,
                    src: mac,
                    vlans: Default::default(),
                    vlan_count: 0,
                    ethertype: ether::ETHERTYPE_IPV4,
                };
                let total = frame::write_headers(buf, &l2, (src_ip, 68), (dst_ip, 67), len, 64).ok()?;
                Some(Tx::frame(total))
            }
        }
    }

    fn relay_of(&self, n: u32) -> Ipv4Addr {
        match self.cfg.relays.len() {
            0 => Ipv4Addr::UNSPECIFIED,
            r => self.cfg.relays[n as usize % r],
        }
    }

    /// Option 82 as our relay agent adds it: circuit id = the client number, remote id = its
    /// MAC address (as a DSL or cable relay would identify the subscriber's line and modem).
    fn relay_info(&self, n: u32) -> [u8; 14] {
        let id = self.cfg.first_client.wrapping_add(n).to_be_bytes();
        let mac = self.mac(n);
        [1, 4, id[0], id[1], id[2], id[3], 2, 6, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]]
    }

    fn write_arp(&mut self, a: ArpReply, buf: &mut [u8]) -> Tx {
        let mac = self.mac(a.client);
        buf[..60].fill(0);
        buf[0..6].copy_from_slice(&a.mac);
        buf[6..12].copy_from_slice(&mac);
        buf[12..14].copy_from_slice(&[0x08, 0x06]);
        buf[14..22].copy_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 2]);
        buf[22..28].copy_from_slice(&mac);
        buf[28..32].copy_from_slice(&a.target.octets());
        buf[32..38].copy_from_slice(&a.mac);
        buf[38..42].copy_from_slice(&a.ip.octets());
        self.c.arp_replies += 1;
        // Padded to the Ethernet minimum.
        Tx::frame(60)
    }

    // ---- receiving ----------------------------------------------------------------------

    fn on_packet(&mut self, bytes: &[u8], now: u64) {
        let (payload, src_mac) = match self.framing {
            Framing::Udp => (bytes, None),
            Framing::Ethernet => match self.unframe(bytes) {
                Unframed::Dhcp { start, end, src } => (&bytes[start..end], Some(src)),
                Unframed::Bad => {
                    self.c.malformed += 1;
                    return;
                }
                Unframed::Arp => return,
            },
        };
        self.on_reply(payload, src_mac, now);
    }

    /// Finds the DHCP message in a frame; answers ARP requests on the way.
    fn unframe(&mut self, f: &[u8]) -> Unframed {
        let Ok(l2) = ether::Header::parse(f) else { return Unframed::Bad };
        let at = l2.len();
        if l2.ethertype == ether::ETHERTYPE_ARP {
            self.on_arp(&f[at..]);
            return Unframed::Arp;
        }
        if l2.ethertype != ether::ETHERTYPE_IPV4 {
            return Unframed::Bad;
        }
        let Ok(ip) = ipv4::Ipv4Packet::new_checked(&f[at..]) else { return Unframed::Bad };
        if ip.protocol() != ipv4::PROTOCOL_UDP || ip.is_fragment() {
            return Unframed::Bad;
        }
        // UDP checksums are not verified: over veth a frame from a local socket arrives with
        // the checksum left to an offload that never happens (CHECKSUM_PARTIAL).
        let u_at = at + ip.header_len();
        let Ok(u) = udp::UdpPacket::new_checked(&f[u_at..at + ip.total_len() as usize]) else { return Unframed::Bad };
        Unframed::Dhcp { start: u_at + udp::HEADER_LEN, end: u_at + u.len() as usize, src: l2.src }
    }

    /// Answers ARP requests for addresses our clients hold, so that a server (or its kernel)
    /// can unicast to a bound client: replies to renewals and INFORMs go to `ciaddr`.
    fn on_arp(&mut self, a: &[u8]) {
        if a.len() < 28 || a[0..8] != [0, 1, 0x08, 0x00, 6, 4, 0, 1] {
            return;
        }
        let target = u32::from_be_bytes([a[24], a[25], a[26], a[27]]);
        let Some(&v) = self.map.get(&target) else { return };
        let n = v & HOLDER;
        let Some(c) = self.clients.get(n as usize) else { return };
        if c.leased() && c.addr == target && self.arp.len() < self.arp.capacity() {
            let mut mac = [0u8; 6];
            mac.copy_from_slice(&a[8..14]);
            let ip = Ipv4Addr::new(a[14], a[15], a[16], a[17]);
            self.arp.push_back(ArpReply { client: n, mac, ip, target: Ipv4Addr::from(target) });
        }
    }

    fn on_reply(&mut self, msg: &[u8], src_mac: Option<[u8; 6]>, now: u64) {
        let Ok(p) = dhcp::DhcpPacket::new_checked(msg) else {
            self.c.malformed += 1;
            return;
        };
        if p.op() != dhcp::Op::Reply as u8 {
            self.c.malformed += 1;
            return;
        }
        let ch = p.chaddr();
        match self.flood.as_ref().map_or(Owner::Clients, |f| f.owner(ch, p.xid())) {
            Owner::Clients => {}
            owner => return self.on_flood_reply(&p, owner == Owner::Flood),
        }
        let n = u32::from_be_bytes([ch[2], ch[3], ch[4], ch[5]]).wrapping_sub(self.cfg.first_client);
        if ch[0..2] != [0x02, 0x00] || n as usize >= self.clients.len() {
            self.c.unknown_client += 1;
            return;
        }
        let c = self.clients[n as usize];
        let expect = self.xid(n, c.seq);
        if p.xid() != expect {
            if (p.xid() ^ expect) & 0xffff_ff00 == 0 {
                self.c.stale_xid += 1;
            } else {
                self.c.unknown_client += 1;
            }
            return;
        }
        if c.flags & QUEUED != 0 || !matches!(c.phase, DISCOVER | REQUEST | RENEW | INFORM | REBOOT) {
            // Answered already (a duplicated reply) or timed out and queued again.
            self.c.stale_xid += 1;
            return;
        }
        let Ok(opts) = p.parse_options() else {
            self.c.malformed += 1;
            return;
        };
        let Some(mt) = opts.message_type() else {
            self.c.malformed += 1;
            return;
        };
        if self.framing == Framing::Udp {
            let mut scratch = [0u8; 256];
            let echoed = opts.value(code::RELAY_AGENT_INFO, &mut scratch).ok().flatten();
            if echoed != Some(&self.relay_info(n)[..]) {
                self.c.relay_info_mismatch += 1;
            }
        }
        let phase = c.phase;
        let ok = matches!(
            (phase, mt),
            (DISCOVER, MessageType::Offer)
                | (REQUEST | RENEW | REBOOT, MessageType::Ack | MessageType::Nak)
                | (INFORM, MessageType::Ack)
        );
        if !ok {
            self.c.wrong_type += 1;
            return;
        }
        // A matched reply: time it, then act on it.
        let k = self.kind(n, phase);
        let us = (now as u32).wrapping_sub(c.sent);
        let st = &mut self.stats[k as usize];
        st.received += 1;
        st.latency.record(us);
        self.interval.record(us);
        self.outstanding = self.outstanding.saturating_sub(1);
        self.c.received += 1;
        let yi = u32::from(p.yiaddr());
        let server = self.server_index(opts.server_id, src_mac);
        match (phase, mt) {
            (DISCOVER, _) => self.on_offer(n, yi, server),
            (_, MessageType::Nak) => {
                self.stats[k as usize].naks += 1;
                self.c.naks += 1;
                self.c.completed += 1;
                let once = self.cfg.scenario.once();
                let tries = self.cfg.tries.max(1);
                self.set_acked(n, 0);
                let cl = &mut self.clients[n as usize];
                cl.addr = 0;
                cl.flags &= !LEASED;
                cl.phase = IDLE;
                if once {
                    // A refused client starts over (RFC 2131 §3.1 step 5, INIT), within its
                    // tries; then it is left without a lease.
                    let restarts = (cl.tries >> 4) + 1;
                    if restarts < tries {
                        cl.tries = restarts << 4;
                        cl.phase = DISCOVER;
                        self.queue(n);
                    } else {
                        cl.phase = STARVED;
                    }
                }
            }
            (REQUEST | RENEW | REBOOT, _) => {
                if phase == REQUEST {
                    self.c.leases += 1;
                }
                if phase == REBOOT && yi != c.addr {
                    self.c.reboot_moved += 1;
                }
                self.c.completed += 1;
                self.first_ack.get_or_insert(now);
                self.last_ack = Some(now);
                self.claim(n, yi);
                self.set_acked(n, yi);
                let cl = &mut self.clients[n as usize];
                cl.phase = IDLE;
                cl.addr = yi;
                cl.flags |= LEASED | SERVED;
                // release/decline: the client gives the address back right away.
                match self.cfg.scenario {
                    Scenario::Release => self.begin(n, RELEASE),
                    Scenario::Decline => self.begin(n, DECLINE),
                    _ => {}
                }
            }
            _ => {
                // INFORM answered.
                self.c.completed += 1;
                self.clients[n as usize].phase = IDLE;
            }
        }
    }

    /// A reply to a flood identity: an OFFER answering its DISCOVER is counted and checked
    /// against the clients' leases; anything else is unexpected. No client's state changes.
    fn on_flood_reply(&mut self, p: &dhcp::DhcpPacket<&[u8]>, xid_ok: bool) {
        let mut scratch = [0u8; 256];
        let opts = p.parse_options().ok();
        let offer = opts.as_ref().and_then(|o| o.message_type()) == Some(MessageType::Offer);
        let echoed = opts.as_ref().and_then(|o| o.value(code::RELAY_AGENT_INFO, &mut scratch).ok().flatten());
        if !(xid_ok && offer && echoed == Some(&flood::relay_info()[..])) {
            self.c.flood_unexpected += 1;
            return;
        }
        self.c.flood_offers += 1;
        if self.leased_to_client(u32::from(p.yiaddr())) {
            self.c.flood_offers_of_leased += 1;
        }
    }

    /// Whether `addr` was ACKed to a live client that still holds it.
    fn leased_to_client(&self, addr: u32) -> bool {
        let Some(&v) = self.map.get(&addr) else { return false };
        self.clients.get((v & HOLDER) as usize).is_some_and(|c| c.leased() && c.addr == addr)
    }

    /// Records the last address ACKed to client `n` (0: it holds none), when leases are kept.
    fn set_acked(&mut self, n: u32, addr: u32) {
        if let Some(a) = self.acked.get_mut(n as usize) {
            *a = addr;
        }
    }

    fn begin(&mut self, n: u32, phase: u8) {
        let c = &mut self.clients[n as usize];
        c.phase = phase;
        c.tries = 0;
        self.queue(n);
    }

    /// Remembers the server of a reply (by its id, and its MAC address in direct mode, for
    /// unicast renewals); returns its index for the client record.
    fn server_index(&mut self, id: Option<Ipv4Addr>, mac: Option<[u8; 6]>) -> u8 {
        let id = id.unwrap_or(Ipv4Addr::UNSPECIFIED);
        let mac = mac.unwrap_or([0; 6]);
        if let Some(i) = self.servers.iter().position(|s| s.id == id && s.mac == mac) {
            return i as u8;
        }
        if self.servers.len() < MAX_SERVERS {
            self.servers.push(Server { id, mac });
            return (self.servers.len() - 1) as u8;
        }
        0
    }

    fn on_offer(&mut self, n: u32, yi: u32, server: u8) {
        // Checks: offered while leased to, or offered to, another live client; declined.
        match self.map.get(&yi).copied() {
            Some(v) => {
                let h = v & HOLDER;
                if v & DECLINED != 0 {
                    self.c.declined_reoffered += 1;
                }
                let holder = self.clients.get(h as usize).copied().unwrap_or_default();
                if h != n && holder.addr == yi {
                    if holder.leased() {
                        self.c.offers_of_leased += 1;
                    } else if matches!(holder.phase, REQUEST | FOREIGN_REQUEST | PROBED) {
                        self.c.duplicate_offers += 1;
                    }
                }
                if !(h != n && holder.leased() && holder.addr == yi) {
                    self.map.insert(yi, (v & EVER_ACKED) | n);
                }
            }
            None => {
                self.map.insert(yi, n);
            }
        }
        let foreign = self.is_foreign(n);
        let probe = self.is_probe(n);
        if self.clients[n as usize].addr != yi {
            // Offered another address than the one it held: that lease is given up.
            self.clients[n as usize].flags &= !LEASED;
            self.set_acked(n, 0);
        }
        let c = &mut self.clients[n as usize];
        c.addr = yi;
        c.flags = (c.flags & !(0xf << SERVER_SHIFT)) | (server << SERVER_SHIFT);
        // A new request begins; restarts after NAKs still count.
        c.tries &= 0xf0;
        if probe {
            c.phase = PROBED;
            self.c.probes_offered += 1;
        } else if foreign {
            c.phase = FOREIGN_REQUEST;
            c.flags &= !LEASED;
            self.queue(n);
        } else {
            c.phase = REQUEST;
            self.queue(n);
        }
    }

    /// Records that `addr` is ACKed to client `n`; counts a duplicate if another live client
    /// holds it.
    fn claim(&mut self, n: u32, addr: u32) {
        let prev = self.map.insert(addr, n | EVER_ACKED);
        let Some(v) = prev else {
            self.unique += 1;
            return;
        };
        if v & EVER_ACKED == 0 {
            self.unique += 1;
        }
        if v & DECLINED != 0 {
            self.c.declined_reoffered += 1;
        }
        let h = v & HOLDER;
        if h != n {
            if let Some(holder) = self.clients.get(h as usize) {
                if holder.leased() && holder.addr == addr {
                    self.c.duplicate_acks += 1;
                    if self.duplicates.len() < 16 {
                        self.duplicates.push(Duplicate {
                            address: Ipv4Addr::from(addr),
                            holder: h.wrapping_add(self.cfg.first_client),
                            client: n.wrapping_add(self.cfg.first_client),
                        });
                    }
                    // The earlier holder is told nothing by the server; it still believes it
                    // holds the address. Both are left as they are.
                }
            }
        }
    }

    // ---- timeouts -----------------------------------------------------------------------

    /// Counts drops for requests unanswered by their deadline; retransmits them unless
    /// `retransmit` is off or the client has used its tries.
    fn expire(&mut self, now: u64, retransmit: bool) {
        for level in 0..LEVELS {
            while let Some(t) = self.timers[level].front().copied() {
                if t.deadline > now {
                    break;
                }
                self.timers[level].pop_front();
                let c = self.clients[t.client as usize];
                if c.seq != t.seq || c.phase != t.phase || c.flags & QUEUED != 0 {
                    continue; // answered or superseded
                }
                let n = t.client;
                self.outstanding = self.outstanding.saturating_sub(1);
                self.c.drops += 1;
                let k = self.kind(n, t.phase);
                self.stats[k as usize].drops += 1;
                let tries = self.cfg.tries.max(1);
                let cl = &mut self.clients[n as usize];
                // A reply to the lost transmission is late now, not an answer.
                cl.seq = cl.seq.wrapping_add(1);
                cl.count_try();
                if retransmit && cl.sent_count() < tries {
                    self.c.retransmissions += 1;
                    self.queue(n);
                    continue;
                }
                match t.phase {
                    DISCOVER if n >= self.main => {
                        cl.phase = STARVED;
                        self.c.probes_starved += 1;
                    }
                    DISCOVER => {
                        cl.phase = STARVED;
                        cl.addr = 0;
                        cl.flags &= !LEASED;
                        self.c.no_offer += 1;
                    }
                    REQUEST => {
                        cl.phase = IDLE;
                        cl.addr = 0;
                        cl.flags &= !LEASED;
                        self.c.abandoned += 1;
                    }
                    _ => {
                        // Renewal or INFORM unanswered: the lease itself still stands.
                        cl.phase = IDLE;
                        self.c.abandoned += 1;
                    }
                }
            }
        }
    }

    fn next_deadline(&self) -> Option<u64> {
        self.timers.iter().filter_map(|q| q.front().map(|t| t.deadline)).min()
    }
}

/// Runs the generator over `t` until the scenario ends, the duration or count is reached, or
/// `stop` is set (then outstanding requests are still waited for, up to the loss timeout).
/// `progress` is handed each second's sample with the counts so far, and at the end those of
/// the last part of a second.
pub fn run<T: Transport>(
    cfg: &RunConfig,
    t: &mut T,
    stop: &AtomicBool,
    mut progress: impl FnMut(&Sample, &RunCounters),
) -> io::Result<RunOutcome> {
    let mut g = Gen::new(cfg, t.framing());
    let start = Instant::now();
    let mut series = Vec::new();
    let mut last = RunCounters::default();
    let mut next_tick = 1_000_000u64;
    let mut last_at = 0u64;
    let mut run_end: Option<(u64, RunCounters)> = None;
    let mut drain_deadline = u64::MAX;
    let duration = cfg.duration.map(|d| d.as_micros() as u64);
    let once = cfg.scenario.once();
    loop {
        // Receive: the time is read once per batch, right after it arrived.
        let mut work = 0;
        for _ in 0..TURN_BATCHES {
            let mut at = None;
            let n = t.recv(|b| {
                let now = *at.get_or_insert_with(|| micros(start));
                g.on_packet(b, now);
            })?;
            work += n;
            if n < BATCH / 2 {
                break;
            }
        }
        let now = micros(start);
        g.expire(now, matches!(g.stage, Stage::Run | Stage::Probe));

        // Stages.
        let stopped = stop.load(Ordering::Relaxed);
        let time_up = duration.is_some_and(|d| now >= d);
        match g.stage {
            Stage::Run | Stage::Probe => {
                let count_up = !once && cfg.exchanges.is_some_and(|x| g.c.initiated >= x);
                let all_done = once && g.cursor >= g.cursor_end && g.idle() && !t.pending();
                if stopped || time_up || count_up {
                    g.stage = Stage::Drain;
                    run_end = Some((now, g.c));
                } else if all_done && g.stage == Stage::Run && g.clients.len() as u32 > g.main {
                    g.stage = Stage::Probe;
                    g.cursor = g.main;
                    g.cursor_end = g.clients.len() as u32;
                } else if all_done {
                    g.stage = Stage::Done;
                    run_end = Some((now, g.c));
                }
            }
            Stage::Drain => {
                // Whatever is unanswered a full loss timeout after the last request is lost
                // (back-off levels beyond the first are not waited for).
                drain_deadline = g.last_tx + g.timeout_us;
                if now >= drain_deadline {
                    g.expire(u64::MAX, false);
                }
                if g.idle() && !t.pending() {
                    g.stage = Stage::Done;
                }
            }
            Stage::Done => {}
        }
        if g.stage == Stage::Done {
            break;
        }

        if matches!(g.stage, Stage::Run | Stage::Probe) {
            let b = g.budget(now);
            let started = g.initiate(b);
            g.spend(started);
            if let Some(f) = g.flood.as_mut() {
                f.refill(now);
            }
        } else if let Some(f) = g.flood.as_mut() {
            f.halt();
        }

        // Send, the time read once per batch, right before.
        for _ in 0..TURN_BATCHES {
            if !g.has_output() {
                break;
            }
            let now = micros(start);
            let n = t.send(BATCH, |buf| g.fill(buf, now))?;
            work += n;
            if n == 0 {
                break;
            }
        }

        // Once a second: a sample, also shown as progress.
        if now >= next_tick {
            let s = sample(&mut g, &last, last_at, now);
            last = g.c;
            last_at = now;
            progress(&s, &g.c);
            series.push(s);
            // After a stall, the next sample is a second after this one.
            next_tick = (next_tick + 1_000_000).max(now + 1);
        }

        if work == 0 && !cfg.busy_poll {
            let mut wake = next_tick.min(now + 5_000);
            if let Some(d) = g.next_deadline() {
                wake = wake.min(d);
            }
            if let (Some(rate), Stage::Run | Stage::Probe) = (cfg.rate, g.stage) {
                if g.tokens < 1.0 {
                    wake = wake.min(now + ((1.0 - g.tokens) / rate * 1e6) as u64 + 1);
                }
            }
            if let Some(w) = g.flood.as_ref().and_then(|f| f.wake(now)) {
                wake = wake.min(w);
            }
            if g.stage == Stage::Drain {
                wake = wake.min(drain_deadline);
            }
            if wake > now {
                t.wait(Duration::from_micros(wake - now))?;
            }
        }
    }
    let end = micros(start);
    progress(&sample(&mut g, &last, last_at, end), &g.c);
    let (run_us, at_run_end) = run_end.unwrap_or((end, g.c));
    let main = &g.clients[..g.main as usize];
    let count = |f: fn(&Client) -> bool| main.iter().filter(|c| f(c)).count() as u64;
    let served = count(|c| c.flags & SERVED != 0);
    let starved = count(|c| c.phase == STARVED);
    let unserved = count(|c| c.flags & (TRIED | SERVED) == TRIED);
    let unreached = count(|c| c.flags & TRIED == 0);
    let foreign_clients = (0..g.main).filter(|&n| g.is_foreign(n)).count() as u64;
    let exchanges = EXCHANGE_KINDS.iter().map(|&k| (k, std::mem::take(&mut g.stats[k as usize]))).collect();
    let leases = g.leases();
    Ok(RunOutcome {
        run_secs: run_us as f64 / 1e6,
        total_secs: end as f64 / 1e6,
        at_run_end,
        counters: g.c,
        exchanges,
        series,
        duplicates: g.duplicates,
        served,
        starved,
        unserved,
        unreached,
        foreign_clients,
        probes: g.clients.len() as u64 - g.main as u64,
        first_ack_secs: g.first_ack.map(|t| t as f64 / 1e6),
        last_ack_secs: g.last_ack.map(|t| t as f64 / 1e6),
        unique_addresses: g.unique,
        leases,
    })
}

impl Gen<'_> {
    /// The last address ACKed to each client, for clients that hold one, by client number.
    fn leases(&self) -> Vec<(u32, Ipv4Addr)> {
        let answered_by = |n: usize| self.cfg.leases_of.is_none_or(|id| self.server_id(&self.clients[n]) == id);
        let held = self.acked.iter().enumerate().filter(|&(n, &a)| a != 0 && answered_by(n));
        held.map(|(n, &a)| (self.cfg.first_client.wrapping_add(n as u32), Ipv4Addr::from(a))).collect()
    }
}

fn sample(g: &mut Gen<'_>, last: &RunCounters, since: u64, now: u64) -> Sample {
    let s = Sample {
        t: now as f64 / 1e6,
        secs: now.saturating_sub(since) as f64 / 1e6,
        initiated: g.c.initiated - last.initiated,
        sent: g.c.sent - last.sent,
        received: g.c.received - last.received,
        completed: g.c.completed - last.completed,
        drops: g.c.drops - last.drops,
        outstanding: g.outstanding,
        p50_us: g.interval.quantile(0.5),
        p99_us: g.interval.quantile(0.99),
    };
    g.interval.clear();
    s
}

/// Default tries per scenario: the avalanche keeps backing off (1+2+4+...+32 = 63 timeouts),
/// the others give up after three transmissions.
pub fn default_tries(s: Scenario) -> u8 {
    match s {
        Scenario::Avalanche => 6,
        _ => 3,
    }
}

/// The PRL our clients send (the typical Linux client's).
pub const PRL: &[u8] = TYPICAL_PRL;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reflector::{answer, ReflectorConfig};

    /// Garbage and damaged replies are counted, never a panic, and never taken for answers
    /// to the wrong client.
    #[test]
    fn bad_frames_are_counted_not_fatal() {
        let cfg = RunConfig { clients: 4, ..RunConfig::default() };
        for framing in [Framing::Ethernet, Framing::Udp] {
            let mut g = Gen::new(&cfg, framing);
            // A real exchange to damage: client 1's DISCOVER, answered by the reflector.
            g.clients[1].phase = DISCOVER;
            g.queue(1);
            let mut buf = [0u8; 2048];
            let tx = g.fill(&mut buf, 0).unwrap();
            let len = match framing {
                Framing::Ethernet => answer(&mut buf, tx.len, [2, 0xaa, 0, 0, 0, 1], &ReflectorConfig::default()),
                // Relay mode carries the bare message: damage a reflected one's payload.
                Framing::Udp => {
                    let mut f = [0u8; 2048];
                    let at = dhcp_core::wire::frame::payload_offset(0);
                    f[at..at + tx.len].copy_from_slice(&buf[..tx.len]);
                    let l2 = ether::Header {
                        dst: ether::BROADCAST,
                        src: [2, 0, 0, 0, 0, 1],
                        vlans: Default::default(),
                        vlan_count: 0,
                        ethertype: ether::ETHERTYPE_IPV4,
                    };
                    let fl = frame::write_headers(
                        &mut f,
                        &l2,
                        (Ipv4Addr::UNSPECIFIED, 68),
                        (Ipv4Addr::BROADCAST, 67),
                        tx.len,
                        64,
                    )
                    .unwrap();
                    let rl = answer(&mut f, fl, [2, 0xaa, 0, 0, 0, 1], &ReflectorConfig::default()).unwrap();
                    buf[..rl - at].copy_from_slice(&f[at..rl]);
                    Some(rl - at)
                }
            }
            .unwrap();
            let good = buf[..len].to_vec();
            let mut x = 0x2545_f491_4f6c_dd1du64;
            let mut rnd = || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            };
            for i in 0..50_000 {
                let mut f = good.clone();
                match i % 3 {
                    0 => {
                        for _ in 0..1 + rnd() % 8 {
                            let at = (rnd() as usize) % f.len();
                            f[at] = rnd() as u8;
                        }
                    }
                    1 => f.truncate((rnd() as usize) % f.len()),
                    _ => f.iter_mut().for_each(|b| *b = rnd() as u8),
                }
                g.on_packet(&f, 10);
            }
            let c = g.c;
            // At most the one outstanding DISCOVER was answered (by an undamaged copy).
            assert!(c.received <= 1, "{c:?}");
            assert!(c.malformed + c.unexpected() > 0);
            assert!(g.outstanding <= 1);
        }
    }
}
