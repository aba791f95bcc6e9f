//! The reflector: a stateless responder that turns each DHCP request frame it receives into a
//! canned reply in the same buffer (OFFER for DISCOVER, ACK for REQUEST and INFORM) and sends it
//! back. Against the generator over the same transport it measures the ceiling of the I/O
//! path: what any server on that path could at best reach.
//!
//! Each client is offered `pool + (its number mod pool_size)`, its number read from `chaddr`
//! as the generator lays it out, so the generator's duplicate check holds for up to
//! `pool_size` clients.

use super::transport::Transport;
use dhcp_core::wire::dhcp::{self, FLAG_BROADCAST};
use dhcp_core::wire::ether;
use dhcp_core::wire::frame;
use dhcp_core::wire::ipv4;
use dhcp_core::wire::options::{code, MessageType, OptionIter};
use dhcp_core::wire::udp;
use std::io;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What the canned replies say.
#[derive(Debug, Clone, Copy)]
pub struct ReflectorConfig {
    /// Server identifier (option 54) and IP source of the replies.
    pub server_id: Ipv4Addr,
    /// First address handed out.
    pub pool: Ipv4Addr,
    /// Addresses in the pool.
    pub pool_size: u32,
    /// Lease time (option 51), seconds.
    pub lease_time: u32,
}

impl Default for ReflectorConfig {
    fn default() -> ReflectorConfig {
        ReflectorConfig {
            server_id: Ipv4Addr::new(198, 18, 0, 1),
            // 100.64.0.0/10: shared address space, 4 Mi addresses, never routed here.
            pool: Ipv4Addr::new(100, 64, 0, 0),
            pool_size: 1 << 22,
            lease_time: 3600,
        }
    }
}

/// Counts of a reflector run.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct ReflectorStats {
    pub received: u64,
    pub answered: u64,
    /// Answered in the XDP program (`--xdp-tx`), never seen here.
    pub reflected: u64,
    pub secs: f64,
}

/// Rewrites the request frame in `buf[..len]` into its reply in place; returns the reply's
/// length, or `None` when it is not a DISCOVER, REQUEST or INFORM we can answer.
pub fn answer(buf: &mut [u8], len: usize, mac: [u8; 6], cfg: &ReflectorConfig) -> Option<usize> {
    let f = buf.get(..len)?;
    let l2 = ether::Header::parse(f).ok()?;
    if l2.ethertype != ether::ETHERTYPE_IPV4 {
        return None;
    }
    let ip_at = l2.len();
    let ip = ipv4::Ipv4Packet::new_checked(&f[ip_at..]).ok()?;
    // Only plain 20-byte headers: then the message already sits where the reply's goes.
    if ip.header_len() != ipv4::MIN_HEADER_LEN || ip.protocol() != ipv4::PROTOCOL_UDP || ip.is_fragment() {
        return None;
    }
    let u_at = ip_at + ipv4::MIN_HEADER_LEN;
    let u = udp::UdpPacket::new_checked(&f[u_at..ip_at + ip.total_len() as usize]).ok()?;
    if u.dst_port() != 67 {
        return None;
    }
    let d_at = u_at + udp::HEADER_LEN;
    debug_assert_eq!(d_at, frame::payload_offset(l2.vlan_count));
    let d_len = u.len() as usize - udp::HEADER_LEN;
    let p = dhcp::DhcpPacket::new_checked(&f[d_at..d_at + d_len]).ok()?;
    if p.op() != dhcp::Op::Request as u8 {
        return None;
    }
    let mt = OptionIter::new(p.options()).find_map(|o| match o {
        Ok((code::MESSAGE_TYPE, [t])) => MessageType::from_u8(*t),
        _ => None,
    })?;
    let reply = match mt {
        MessageType::Discover => MessageType::Offer,
        MessageType::Request | MessageType::Inform => MessageType::Ack,
        _ => return None,
    };
    let ciaddr = p.ciaddr();
    let broadcast = p.flags() & FLAG_BROADCAST != 0;
    let ch = p.chaddr();
    let n = u32::from_be_bytes([ch[2], ch[3], ch[4], ch[5]]);
    let yiaddr = if mt == MessageType::Inform {
        Ipv4Addr::UNSPECIFIED
    } else if !ciaddr.is_unspecified() {
        ciaddr
    } else {
        Ipv4Addr::from(u32::from(cfg.pool).wrapping_add(n % cfg.pool_size.max(1)))
    };
    // The reply: same header but op, hops, secs, yiaddr and siaddr; canned options.
    let out_len = dhcp::MIN_MESSAGE_LEN;
    let d = buf.get_mut(d_at..d_at + out_len)?;
    {
        let mut h = dhcp::DhcpPacket::new_unchecked(&mut *d);
        h.set_op(dhcp::Op::Reply);
        h.set_hops(0);
        h.set_secs(0);
        h.set_yiaddr(yiaddr);
        h.set_siaddr(Ipv4Addr::UNSPECIFIED);
        h.set_magic();
    }
    let sid = cfg.server_id.octets();
    let lease = cfg.lease_time.to_be_bytes();
    let opts = [
        code::MESSAGE_TYPE,
        1,
        reply as u8,
        code::SERVER_ID,
        4,
        sid[0],
        sid[1],
        sid[2],
        sid[3],
        code::LEASE_TIME,
        4,
        lease[0],
        lease[1],
        lease[2],
        lease[3],
        code::SUBNET_MASK,
        4,
        255,
        192,
        0,
        0,
        code::END,
    ];
    let at = dhcp::HEADER_LEN;
    d[at..at + opts.len()].copy_from_slice(&opts);
    d[at + opts.len()..].fill(0);
    let dst = if !ciaddr.is_unspecified() {
        ciaddr
    } else if broadcast || yiaddr.is_unspecified() {
        Ipv4Addr::BROADCAST
    } else {
        yiaddr
    };
    let l2_out = ether::Header { dst: l2.src, src: mac, ..l2 };
    frame::write_headers(buf, &l2_out, (cfg.server_id, 67), (dst, 68), out_len, 64).ok()
}

/// Runs the reflector on `t` until `stop` is set or `duration` passes. `progress` is handed
/// the time since the start and the counts so far, once a second.
pub fn run<T: Transport>(
    t: &mut T,
    cfg: &ReflectorConfig,
    stop: &AtomicBool,
    duration: Option<Duration>,
    busy_poll: bool,
    mut progress: impl FnMut(Duration, &ReflectorStats),
) -> io::Result<ReflectorStats> {
    let mac = t
        .mac()
        .ok_or_else(|| io::Error::new(io::ErrorKind::Unsupported, "the reflector needs an Ethernet transport"))?;
    let start = Instant::now();
    let mut st = ReflectorStats::default();
    let mut next_tick = Duration::from_secs(1);
    while !stop.load(Ordering::Relaxed) && duration.is_none_or(|d| start.elapsed() < d) {
        let (r, a) = t.reflect(|b, len| answer(b, len, mac, cfg))?;
        st.received += r as u64;
        st.answered += a as u64;
        if r == 0 && !busy_poll {
            // Short enough to notice the stop flag and the end quickly.
            t.wait(Duration::from_millis(50))?;
        }
        let el = start.elapsed();
        if el >= next_tick {
            progress(el, &st);
            next_tick += Duration::from_secs(1);
        }
    }
    st.secs = start.elapsed().as_secs_f64();
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhcp_core::client::{mac_for, ClientMsg};

    #[test]
    fn discover_becomes_an_offer_in_place() {
        let mut buf = [0u8; 2048];
        let at = frame::payload_offset(0);
        let m = ClientMsg::new(mac_for(7), 0x1234_5678);
        let len = m.write(MessageType::Discover, &mut buf[at..]).unwrap();
        let l2 = ether::Header {
            dst: ether::BROADCAST,
            src: mac_for(7),
            vlans: Default::default(),
            vlan_count: 0,
            ethertype: ether::ETHERTYPE_IPV4,
        };
        let flen = frame::write_headers(&mut buf, &l2, (Ipv4Addr::UNSPECIFIED, 68), (Ipv4Addr::BROADCAST, 67), len, 64)
            .unwrap();
        let cfg = ReflectorConfig::default();
        let me = [2, 0xaa, 0, 0, 0, 1];
        let rlen = answer(&mut buf, flen, me, &cfg).unwrap();
        let f = frame::UdpFrame::parse(&buf[..rlen]).unwrap();
        assert_eq!((f.l2.dst, f.l2.src), (mac_for(7), me));
        assert_eq!((f.src_ip, f.src_port, f.dst_port), (cfg.server_id, 67, 68));
        let p = dhcp::DhcpPacket::new_checked(&buf[f.payload.clone()]).unwrap();
        assert_eq!(p.xid(), 0x1234_5678);
        assert_eq!(p.yiaddr(), Ipv4Addr::new(100, 64, 0, 7));
        let o = p.parse_options().unwrap();
        assert_eq!(o.message_type(), Some(MessageType::Offer));
        assert_eq!(o.server_id, Some(cfg.server_id));
        // A reply is not answered again, nor is garbage.
        assert_eq!(answer(&mut buf, rlen, me, &cfg), None);
        assert_eq!(answer(&mut [0u8; 64], 64, me, &cfg), None);
    }
}
