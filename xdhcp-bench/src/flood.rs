//! The flooding circuit of the `starvation` scenario: one subscriber line, behind the first
//! relay agent, whose device sends DISCOVERs at a fixed rate, each from a hardware address never
//! used before and without a client identifier, and never REQUESTs what it is offered: an
//! attacker collecting offers until the pool is empty.
//!
//! It keeps no state per DISCOVER: the n-th identity is a bijection of n (so identities never
//! repeat, which random draws would after ~2^16 of them, and a repeated one would only get its
//! earlier offer back), and a reply proves it answers one of ours by its `chaddr` prefix and an
//! `xid` derived from the rest of `chaddr`. Its replies are counted apart from the legitimate
//! clients' (see [`super::gen`]): they never enter the clients' table, address map or latency
//! histograms.

use super::transport::Tx;
use dhcp_core::client::ClientMsg;
use dhcp_core::wire::options::MessageType;
use std::net::{Ipv4Addr, SocketAddrV4};

/// The flooding line's circuit id (option 82.1): beyond any legitimate client's number.
pub const FLOOD_CIRCUIT: u32 = 0xFFFF_FFFF;
/// The flooding line's remote id (option 82.2): its modem, one for all the identities behind
/// it. Locally administered, outside the legitimate clients' 02:00 prefix.
pub const FLOOD_MODEM: [u8; 6] = [0x02, 0xff, 0xff, 0xff, 0xff, 0xff];
/// First two bytes of every flood identity: locally administered, unicast, apart from the
/// legitimate clients' 02:00.
const MAC_PREFIX: [u8; 2] = [0x0e, 0x00];
/// Most credit kept, in seconds of the rate: a late wake-up is made up, a stall is not.
const BURST_SECS: f64 = 0.01;
/// DISCOVERs worth waking up for: one transport batch.
const WAKE_BATCH: f64 = 64.0;

/// The flooding circuit: its pacing and the numbering of its identities.
#[derive(Debug, Clone)]
pub struct Flood {
    /// DISCOVERs per second.
    rate: f64,
    tokens: f64,
    last_refill: u64,
    /// Number of the next identity.
    next: u32,
    salt: u32,
    /// The relay agent the line is behind (giaddr) and the server it relays to.
    relay: Ipv4Addr,
    server: SocketAddrV4,
}

/// What a reply's `chaddr` and `xid` say about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// Not a flood identity: a legitimate client's reply (or a stranger's).
    Clients,
    /// A flood identity, with the `xid` of its DISCOVER.
    Flood,
    /// A flood identity with an `xid` we never sent it.
    FloodWrongXid,
}

impl Flood {
    /// A flood of `rate` DISCOVERs per second through `relay` to `server`; `salt` makes each
    /// run's identities new to the server.
    pub fn new(rate: f64, relay: Ipv4Addr, server: Ipv4Addr, salt: u32) -> Flood {
        Flood {
            rate: rate.max(0.0),
            tokens: 0.0,
            last_refill: 0,
            next: 0,
            salt,
            relay,
            server: SocketAddrV4::new(server, 67),
        }
    }

    /// Adds the credit earned since the last call (`now` in microseconds since the start).
    pub fn refill(&mut self, now: u64) {
        let dt = now.saturating_sub(self.last_refill) as f64 / 1e6;
        self.last_refill = now;
        let burst = (self.rate * BURST_SECS).max(WAKE_BATCH);
        self.tokens = (self.tokens + self.rate * dt).min(burst);
    }

    /// Stops the flood: nothing more is owed, whatever the time.
    pub fn halt(&mut self) {
        self.rate = 0.0;
        self.tokens = 0.0;
    }

    /// Whether a DISCOVER is due now.
    pub fn owed(&self) -> bool {
        self.tokens >= 1.0
    }

    /// When a batch worth sending will be due, if the flood runs and it is not due yet.
    pub fn wake(&self, now: u64) -> Option<u64> {
        if self.rate <= 0.0 || self.tokens >= WAKE_BATCH {
            return None;
        }
        Some(now + ((WAKE_BATCH - self.tokens) / self.rate * 1e6) as u64 + 1)
    }

    /// Writes the next DISCOVER, from a new identity, into `buf`; spends one credit.
    pub fn write(&mut self, buf: &mut [u8]) -> Option<Tx> {
        let id = self.identity(self.next);
        let info = relay_info();
        let mut m = ClientMsg::new(mac(id), self.xid(id));
        m.giaddr = self.relay;
        m.relay_info = Some(&info);
        let len = m.write(MessageType::Discover, buf).ok()?;
        self.next = self.next.wrapping_add(1);
        self.tokens -= 1.0;
        Some(Tx { len, src: self.relay, dst: self.server })
    }

    /// Whose reply this is, by its `chaddr` and `xid`.
    pub fn owner(&self, chaddr: &[u8; 16], xid: u32) -> Owner {
        if chaddr[0..2] != MAC_PREFIX {
            return Owner::Clients;
        }
        let id = u32::from_be_bytes([chaddr[2], chaddr[3], chaddr[4], chaddr[5]]);
        if xid == self.xid(id) {
            Owner::Flood
        } else {
            Owner::FloodWrongXid
        }
    }

    /// The n-th identity: a bijection of u32 (odd multiplications and xor-shifts each are one),
    /// so no two DISCOVERs of a run share a hardware address, yet they look random.
    fn identity(&self, n: u32) -> u32 {
        let mut x = n.wrapping_add(self.salt).wrapping_mul(0x9e37_79b1);
        x ^= x >> 15;
        x = x.wrapping_mul(0x85eb_ca6b);
        x ^ (x >> 13)
    }

    /// The transaction id of identity `id`'s DISCOVER.
    fn xid(&self, id: u32) -> u32 {
        id.rotate_left(16) ^ self.salt ^ 0x5a5a_5a5a
    }
}

/// The hardware address of flood identity `id`.
fn mac(id: u32) -> [u8; 6] {
    let b = id.to_be_bytes();
    [MAC_PREFIX[0], MAC_PREFIX[1], b[0], b[1], b[2], b[3]]
}

/// Option 82 as the relay agent adds it for the flooding line: circuit id [`FLOOD_CIRCUIT`],
/// remote id [`FLOOD_MODEM`] (the same layout as the legitimate clients').
pub fn relay_info() -> [u8; 14] {
    let c = FLOOD_CIRCUIT.to_be_bytes();
    let m = FLOOD_MODEM;
    [1, 4, c[0], c[1], c[2], c[3], 2, 6, m[0], m[1], m[2], m[3], m[4], m[5]]
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhcp_core::wire::dhcp::DhcpPacket;
    use dhcp_core::wire::options::code;

    fn flood() -> Flood {
        Flood::new(1000.0, Ipv4Addr::new(198, 18, 2, 1), Ipv4Addr::new(198, 18, 0, 1), 0x1234_5678)
    }

    #[test]
    fn identities_never_repeat_and_replies_are_told_apart() {
        let f = flood();
        let mut seen = std::collections::HashSet::new();
        for n in 0..200_000 {
            assert!(seen.insert(f.identity(n)), "identity {n} repeats");
        }
        let id = f.identity(7);
        let mut ch = [0u8; 16];
        ch[..6].copy_from_slice(&mac(id));
        assert_eq!(f.owner(&ch, f.xid(id)), Owner::Flood);
        assert_eq!(f.owner(&ch, f.xid(id) ^ 1), Owner::FloodWrongXid);
        ch[..6].copy_from_slice(&dhcp_core::client::mac_for(7));
        assert_eq!(f.owner(&ch, f.xid(id)), Owner::Clients);
    }

    #[test]
    fn discovers_are_paced_relayed_and_carry_the_flood_circuit() {
        let mut f = flood();
        f.refill(0);
        assert!(!f.owed());
        assert!(f.wake(0).is_some());
        // 5 ms at 1000/s: 5 DISCOVERs due.
        f.refill(5_000);
        let mut buf = [0u8; 1500];
        let mut macs = Vec::new();
        while f.owed() {
            let tx = f.write(&mut buf).unwrap();
            assert_eq!((tx.src, tx.dst), (f.relay, f.server));
            let p = DhcpPacket::new_checked(&buf[..tx.len]).unwrap();
            assert_eq!(p.giaddr(), f.relay);
            assert_eq!(f.owner(p.chaddr(), p.xid()), Owner::Flood);
            let o = p.parse_options().unwrap();
            assert_eq!(o.message_type(), Some(MessageType::Discover));
            let mut scratch = [0u8; 64];
            assert_eq!(o.value(code::RELAY_AGENT_INFO, &mut scratch).unwrap(), Some(&relay_info()[..]));
            assert_eq!(o.value(code::CLIENT_ID, &mut scratch).unwrap(), None);
            macs.push(p.chaddr()[..6].to_vec());
        }
        assert_eq!(macs.len(), 5);
        macs.dedup();
        assert_eq!(macs.len(), 5);
        f.halt();
        f.refill(1_000_000);
        assert!(!f.owed() && f.wake(1_000_000).is_none());
    }
}
