//! Target `engine`: one engine on a virtual clock fed message sequences from a few clients.
//!
//! The input is a small program ([`Input`]): configuration knobs, then steps (a client sends a
//! message of some kind with some options, directly or through a relay on a second subnet, the
//! clock moves forwards or back, corrupted messages arrive). After every step the harness
//! checks:
//! - one address, one live identity: the offers and leases the engine reports for the known
//!   identities are on distinct addresses, each `Held` in the shared address space, and the
//!   space holds no other address (no leak);
//! - an OFFER or ACK names what the engine recorded for that client; a RELEASE that is taken
//!   frees the address at once;
//! - a message that is dropped changes no lease and emits no event;
//! - nothing outlives its deadline: once the clock is back at its latest time, no offer or
//!   lease is past its end and no probation is more than a second past its end (also after
//!   probations of zero and clocks stepped back); `poll_timeout` answers at the end of time;
//! - the counters add up: every message is counted once, each reply, drop and silence under
//!   its own counter, and each timer end under its own.

use arbitrary::{Arbitrary, Unstructured};
use core::net::{Ipv4Addr, SocketAddrV4};
use dhcp_core::client::ClientMsg;
use dhcp_core::config::{Config, DeclinePolicy, LimitKey, Limits, Pool, Subnet, MAX_DECLINE_PROBATION};
use dhcp_core::config::{MAX_LEASE_TIME, MAX_OFFER_TIMEOUT};
use dhcp_core::engine::{DropReason, Engine, EventKind, Ingress, LeaseEvent, Outcome, Seconds, Shared, Silence};
use dhcp_core::lease::space::Status;
use dhcp_core::lease::{ClientKey, LeaseState};
use dhcp_core::wire::dhcp::DhcpPacket;
use dhcp_core::wire::options::{code, MessageType};
use std::sync::Arc;

/// Identities: MACs 1..=4 bare, MAC 1 again with a short client identifier, MAC 2 again with
/// one of 300 bytes (split over two instances, RFC 3396, and echoed in every reply).
const IDENTITIES: u8 = 6;
const SERVER: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 1);
const OTHER_SERVER: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 2);
const FIRST: u8 = 10;
/// One step is this many bytes of input; a configuration is [`KNOBS`] bytes.
pub const STEP: usize = 8;
pub const KNOBS: usize = 8;

/// The fuzzer's program: configuration knobs and steps, read from raw bytes so that seeds can
/// be written by hand ([`Input::encode`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    pub knobs: [u8; KNOBS],
    pub steps: Vec<[u8; STEP]>,
}

impl<'a> Arbitrary<'a> for Input {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Input> {
        Ok(Input::decode(u.bytes(u.len())?))
    }

    fn arbitrary_take_rest(u: Unstructured<'a>) -> arbitrary::Result<Input> {
        Ok(Input::decode(u.take_rest()))
    }
}

impl Input {
    pub fn decode(bytes: &[u8]) -> Input {
        let mut knobs = [0u8; KNOBS];
        let n = bytes.len().min(KNOBS);
        knobs[..n].copy_from_slice(&bytes[..n]);
        let steps = bytes[n..].chunks_exact(STEP).take(256).map(|c| c.try_into().unwrap()).collect();
        Input { knobs, steps }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut v = self.knobs.to_vec();
        self.steps.iter().for_each(|s| v.extend(s));
        v
    }
}

/// Step opcodes (first byte of a step, modulo their count).
pub mod op {
    pub const SEND: u8 = 0;
    pub const ADVANCE: u8 = 1;
    pub const BACK: u8 = 2;
    pub const RAW: u8 = 3;
    pub const COUNT: u8 = 4;
}

/// Message kinds of a SEND step (third byte).
pub mod kind {
    pub const DISCOVER: u8 = 0;
    pub const SELECT: u8 = 1;
    pub const REBOOT: u8 = 2;
    pub const RENEW: u8 = 3;
    pub const DECLINE: u8 = 4;
    pub const RELEASE: u8 = 5;
    pub const INFORM: u8 = 6;
    pub const FOREIGN: u8 = 7;
    pub const COUNT: u8 = 8;
}

/// The relay agent of the second subnet (100.64.1.0/24); the first is directly attached.
const RELAY: Ipv4Addr = Ipv4Addr::new(100, 64, 1, 1);

fn config(k: &[u8; KNOBS]) -> (Config, u8, Seconds) {
    let size = 1 + k[0] % 6;
    let subnet = |net: u8| {
        let mut s = Subnet::new(Ipv4Addr::new(100, 64, net, 0), 24);
        s.pools.push(Pool {
            first: Ipv4Addr::new(100, 64, net, FIRST),
            last: Ipv4Addr::new(100, 64, net, FIRST + size - 1),
        });
        s
    };
    let pick = |b: u8, small: u32, max: u32| if b == 255 { max } else { small + b as u32 % 40 };
    let cfg = Config {
        server_id: SERVER,
        offer_timeout: pick(k[1], 1, MAX_OFFER_TIMEOUT),
        lease_time: pick(k[2], 60, MAX_LEASE_TIME),
        decline_probation: pick(k[3], 0, MAX_DECLINE_PROBATION),
        rapid_commit: k[4] & 1 != 0,
        authoritative: k[4] & 2 != 0,
        decline: if k[4] & 4 != 0 { DeclinePolicy::Ignore } else { DeclinePolicy::Probation },
        decline_max_percent: [10, 50, 100][k[5] as usize % 3],
        limits: (k[4] & 8 != 0).then(|| Limits {
            key: LimitKey::Chaddr,
            max_leases: Some(1 + k[6] as u32 % 2),
            discover_rate: (k[6] & 4 != 0).then_some(1),
            discover_burst: None,
        }),
        subnets: vec![subnet(0), subnet(1)],
        ..Config::default()
    };
    // Start anywhere, including a day before the end of the clock's range.
    let start = if k[7] & 1 != 0 { u32::MAX - 86_400 } else { 1_800_000_000 };
    (cfg, size, start)
}

fn identity(n: u8) -> ([u8; 6], Option<Vec<u8>>) {
    let n = n % IDENTITIES;
    let id = match n {
        4 => Some(vec![0xff, 0, n]),
        5 => Some((0..300).map(|i| i as u8).collect()),
        _ => None,
    };
    ([2, 0, 0, 0, 0, 1 + n % 4], id)
}

/// The identity the engine gives a message (RFC 2131 §4.2: the client identifier, else the
/// hardware address), as `Request::parse` does; `None` if the engine cannot tell.
fn key_of(msg: &[u8]) -> Option<ClientKey> {
    let p = DhcpPacket::new_checked(msg).ok()?;
    let o = p.parse_options().ok()?;
    let mut scratch = [0u8; 1024];
    match o.value(code::CLIENT_ID, &mut scratch).ok()? {
        Some(id) if !id.is_empty() => Some(ClientKey::from_client_id(id)),
        _ if (1..=16).contains(&p.hlen()) => {
            Some(ClientKey::from_hardware(p.htype(), &p.chaddr()[..p.hlen() as usize]))
        }
        _ => None,
    }
}

/// The engine, its clock, and what the harness counted itself.
struct Harness {
    engine: Engine,
    now: Seconds,
    pool: u8,
    events: Vec<LeaseEvent>,
    out: Vec<u8>,
    expected: Counts,
    /// Every identity that sent a message the engine could read.
    seen: Vec<ClientKey>,
    /// The latest time the clock has shown (the engine has handled every deadline up to it).
    latest: Seconds,
    /// Addresses in decline probation, and the second by which the probation must have ended.
    probations: Vec<(Ipv4Addr, Seconds)>,
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Counts {
    received: u64,
    offers: u64,
    acks: u64,
    naks: u64,
    malformed: u64,
    other_drops: u64,
    not_for_us: u64,
    no_address: u64,
    offers_expired: u64,
    leases_expired: u64,
    probations_ended: u64,
}

pub fn run(input: &Input) {
    let (cfg, pool, start) = config(&input.knobs);
    let shared = Arc::new(Shared::new(&cfg, 1).expect("the harness's configurations are valid"));
    let mut h = Harness {
        engine: Engine::new(shared, start, 8),
        now: start,
        pool,
        events: Vec::new(),
        out: vec![0; 1500],
        expected: Counts::default(),
        seen: Vec::new(),
        latest: start,
        probations: Vec::new(),
    };
    for step in &input.steps {
        h.step(step);
        h.check();
    }
}

impl Harness {
    fn step(&mut self, s: &[u8; STEP]) {
        match s[0] % op::COUNT {
            op::SEND => {
                let msg = message(s, self.pool);
                self.handle(&msg, s[7]);
            }
            op::ADVANCE => {
                let by = if s[1] == 255 { u16::from_le_bytes([s[2], s[3]]) as u32 * 64 } else { s[1] as u32 };
                self.now = self.now.saturating_add(by);
                self.timeout();
            }
            op::BACK => {
                // A wall clock stepped back: deadlines must still come, and nothing may break.
                self.now = self.now.saturating_sub(s[1] as u32);
                self.timeout();
            }
            _ => {
                let mut msg = message(s, self.pool);
                // Corrupt two bytes of a real message: header fields, option lengths, codes.
                for (at, b) in [(s[4], s[5]), (s[6], s[3])] {
                    let i = (at as usize * 3) % msg.len();
                    msg[i] = b;
                }
                self.handle(&msg, s[7]);
            }
        }
    }

    fn timeout(&mut self) {
        self.latest = self.latest.max(self.now);
        self.engine.handle_timeout(self.now, &mut self.events);
        self.tally_events();
    }

    fn tally_events(&mut self) {
        for e in self.events.drain(..) {
            match e.kind {
                EventKind::OfferExpired => self.expected.offers_expired += 1,
                EventKind::Expired => self.expected.leases_expired += 1,
                EventKind::ProbationEnded => {
                    self.expected.probations_ended += 1;
                    self.probations.retain(|(ip, _)| *ip != e.ip);
                }
                EventKind::Declined => {
                    // Due at its end, or at the next second if that had already passed.
                    let due = e.expires.max(self.latest.saturating_add(1));
                    self.probations.retain(|(ip, _)| *ip != e.ip);
                    self.probations.push((e.ip, due));
                }
                _ => {}
            }
        }
    }

    /// Hands `msg` to the engine; `out` picks the room the caller gives the reply.
    fn handle(&mut self, msg: &[u8], out: u8) {
        // Timers first, so that the call below changes only what the message changes.
        self.timeout();
        let me = key_of(msg);
        let at = me.map(|k| match self.seen.iter().position(|s| *s == k) {
            Some(i) => i,
            None => {
                self.seen.push(k);
                self.seen.len() - 1
            }
        });
        let before = self.lookups();
        let room = [1500, 576, 400, 300][out as usize % 4];
        let relayed = DhcpPacket::new_checked(msg).is_ok_and(|p| p.giaddr() == RELAY);
        let src = if relayed { SocketAddrV4::new(RELAY, 67) } else { SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68) };
        let ingress = Ingress { src, ..Ingress::broadcast(None) };
        let o = self.engine.handle(self.now, &ingress, msg, &mut self.out[..room], &mut self.events);
        self.expected.received += 1;
        let now_held = me.and_then(|k| self.engine.lookup(&k));
        // An offer on another link than the client's lease is held under its `moving` key.
        let moving = me.and_then(|k| self.engine.lookup(&k.moving()));
        match o {
            Outcome::Reply(r) => match r.kind {
                MessageType::Offer => {
                    self.expected.offers += 1;
                    let yiaddr = Ipv4Addr::from(<[u8; 4]>::try_from(&self.out[16..20]).unwrap());
                    let offered = |h: Option<(Ipv4Addr, LeaseState, Seconds)>| matches!(h, Some((ip, LeaseState::Offered | LeaseState::Bound, _)) if ip == yiaddr);
                    assert!(offered(now_held) || offered(moving), "OFFER of {yiaddr}: {now_held:?} {moving:?}");
                }
                MessageType::Nak => self.expected.naks += 1,
                _ => {
                    self.expected.acks += 1;
                    let yiaddr = Ipv4Addr::from(<[u8; 4]>::try_from(&self.out[16..20]).unwrap());
                    if !yiaddr.is_unspecified() {
                        assert!(
                            matches!(now_held, Some((ip, LeaseState::Bound, _)) if ip == yiaddr),
                            "ACK of {yiaddr}"
                        );
                        assert!(r.commit, "an ACK of a lease waits for the journal");
                    }
                }
            },
            Outcome::Dropped(why) => {
                match why {
                    DropReason::Malformed(_) => self.expected.malformed += 1,
                    _ => self.expected.other_drops += 1,
                }
                assert!(self.events.is_empty(), "a dropped message changed leases: {:?}", self.events);
                assert_eq!(self.lookups(), before, "a dropped message changed leases");
            }
            Outcome::Silent(Silence::ForeignServer) => self.expected.not_for_us += 1,
            Outcome::Silent(Silence::NoAddress) => self.expected.no_address += 1,
            Outcome::Silent(Silence::Done) if msg_type(msg) == Some(MessageType::Release as u8) => {
                let released = at.and_then(|i| before[2 * i]).expect("a RELEASE taken had a lease");
                assert_eq!(now_held, None, "a RELEASE taken ends the lease");
                let status = self.engine.shared().space().status(released.0);
                assert!(matches!(status, Some(Status::Free) | Some(Status::Reserved) | None), "{status:?}");
            }
            Outcome::Silent(_) => {}
        }
        self.tally_events();
    }

    fn lookups(&self) -> Vec<Option<(Ipv4Addr, LeaseState, Seconds)>> {
        // A client that moved links holds its old lease under its key and its new offer under
        // the key's `moving` form until it is ACKed there.
        self.seen.iter().flat_map(|k| [self.engine.lookup(k), self.engine.lookup(&k.moving())]).collect()
    }

    fn check(&self) {
        if self.now == self.latest {
            self.deadlines_kept();
        }
        if let Some(next) = self.engine.poll_timeout() {
            assert!(self.engine.records() > 0 && next > self.latest, "poll_timeout {next} at {}", self.latest);
        }
        let held: Vec<Ipv4Addr> = self.lookups().into_iter().flatten().map(|(ip, _, _)| ip).collect();
        let mut distinct = held.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), held.len(), "one address, two live identities: {:?}", self.lookups());
        let space = self.engine.shared().space();
        for ip in &held {
            assert_eq!(space.status(*ip), Some(Status::Held), "{ip} is leased but not held");
        }
        let (c0, c1) = (space.census(0), space.census(1));
        assert_eq!(c0.iter().sum::<usize>() + c1.iter().sum::<usize>(), 2 * self.pool as usize);
        assert_eq!(c0[1] + c1[1], held.len(), "held addresses nobody holds: {c0:?} {c1:?} {:?}", self.lookups());
        let s = self.engine.stats();
        let e = &self.expected;
        let got = Counts {
            received: s.received,
            offers: s.offer_sent,
            acks: s.ack_sent,
            naks: s.nak_sent,
            malformed: s.parse_failed,
            other_drops: s.receive_drop,
            not_for_us: s.not_for_us,
            no_address: s.allocation_fail,
            offers_expired: s.offers_expired,
            leases_expired: s.leases_expired,
            probations_ended: s.probations_ended,
        };
        assert_eq!(&got, e, "counters");
        let typed =
            s.discover_received + s.request_received + s.decline_received + s.release_received + s.inform_received;
        assert!(typed <= s.received, "each message counted under at most one type");
    }
}

impl Harness {
    /// With the clock at its latest time, every deadline up to now has been handled.
    fn deadlines_kept(&self) {
        for (ip, state, expires) in self.lookups().into_iter().flatten() {
            // Deadlines saturate at the clock's last second, which has no later one to end in.
            let ends_later = expires > self.now || expires == Seconds::MAX;
            assert!(ends_later, "{state:?} {ip} past its end {expires} at {}", self.now);
        }
        let space = self.engine.shared().space();
        for &(ip, due) in &self.probations {
            if self.now > due {
                assert_ne!(space.status(ip), Some(Status::Declined), "probation of {ip} past its end {due}");
            }
        }
    }
}

fn msg_type(msg: &[u8]) -> Option<u8> {
    let p = DhcpPacket::new_checked(msg).ok()?;
    p.parse_options().ok()?.message_type
}

/// The message of a SEND (or RAW) step: `[op, who, kind, addr, ciaddr, flags, extra, room]`.
pub fn message(s: &[u8; STEP], pool: u8) -> Vec<u8> {
    let (mac, id) = identity(s[1]);
    let flags = s[5];
    let relayed = flags & 128 != 0;
    // Addresses in and just around the pool of the client's subnet (bit 4: the other subnet's),
    // and one in another network.
    let addr = |b: u8| match b % 16 {
        15 => Ipv4Addr::new(198, 18, 0, 1),
        14 => Ipv4Addr::UNSPECIFIED,
        n => Ipv4Addr::new(100, 64, (relayed as u8) ^ (b >> 4 & 1), FIRST - 1 + n % (pool + 2)),
    };
    let (want, ciaddr) = (addr(s[3]), addr(s[4]));
    let mut opts: Vec<(u8, Vec<u8>)> = Vec::new();
    let server = if flags & 1 != 0 { OTHER_SERVER } else { SERVER };
    let k = s[2] % kind::COUNT;
    let mt = match k {
        kind::DISCOVER => MessageType::Discover,
        kind::DECLINE => MessageType::Decline,
        kind::RELEASE => MessageType::Release,
        kind::INFORM => MessageType::Inform,
        kind::FOREIGN => [MessageType::Offer, MessageType::Ack, MessageType::Nak][s[6] as usize % 3],
        _ => MessageType::Request,
    };
    if matches!(k, kind::SELECT | kind::DECLINE | kind::RELEASE) || flags & 2 != 0 {
        opts.push((code::SERVER_ID, server.octets().to_vec()));
    }
    if matches!(k, kind::DISCOVER | kind::SELECT | kind::REBOOT | kind::DECLINE) && !want.is_unspecified() {
        opts.push((code::REQUESTED_IP, want.octets().to_vec()));
    }
    let ciaddr = match k {
        kind::RENEW | kind::RELEASE | kind::INFORM => ciaddr,
        _ if flags & 4 != 0 => ciaddr,
        _ => Ipv4Addr::UNSPECIFIED,
    };
    if flags & 8 != 0 {
        opts.push((code::RAPID_COMMIT, Vec::new()));
    }
    if flags & 16 != 0 {
        // A client that takes larger replies, or states a size below the minimum.
        let size: u16 = if s[6] & 1 != 0 { 1500 } else { 300 };
        opts.push((code::MAX_MESSAGE_SIZE, size.to_be_bytes().to_vec()));
    }
    let options: Vec<(u8, &[u8])> = opts.iter().map(|(c, v)| (*c, &v[..])).collect();
    let m = ClientMsg {
        flags: if flags & 64 != 0 { 0x8000 } else { 0 },
        ciaddr,
        giaddr: if relayed { RELAY } else { Ipv4Addr::UNSPECIFIED },
        client_id: id.as_deref(),
        options: &options,
        ..ClientMsg::new(mac, 0x1000 + s[1] as u32)
    };
    let mut buf = vec![0u8; 2048];
    let n = m.write(mt, &mut buf).expect("fits");
    buf.truncate(n);
    buf
}
