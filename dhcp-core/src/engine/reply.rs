//! Writing OFFER, ACK and NAK messages, and where they go (RFC 2131 §4.1, §4.3).

use super::classes::{ClassMask, ClassTable};
use super::shared::SubnetRt;
use super::{Destination, Request};
use crate::wire::dhcp::{self, DhcpWriter};
use crate::wire::options::{code, MessageType};
use crate::wire::Result;
use core::net::Ipv4Addr;

/// What to say.
pub(super) struct ReplySpec {
    pub(super) kind: MessageType,
    pub(super) yiaddr: Ipv4Addr,
    /// (lease time, T1, T2) for OFFER and ACK of an address; `None` for INFORM and NAK.
    pub(super) lease: Option<(u32, u32, u32)>,
    /// Answering a rapid-commit DISCOVER (RFC 4039): add option 80.
    pub(super) rapid: bool,
}

/// Writes the reply into `out`; returns its length and destination.
pub(super) fn write(
    subnet: &SubnetRt,
    classes: (&ClassTable, ClassMask),
    spec: &ReplySpec,
    req: &Request<'_>,
    out: &mut [u8],
) -> Result<(usize, Destination)> {
    let p = &req.pkt;
    let limit = limit(req);
    let nak = spec.kind == MessageType::Nak;
    let giaddr = p.giaddr();
    let ciaddr = p.ciaddr();
    let mut w = DhcpWriter::new(out, limit)?;
    {
        let mut h = w.header();
        h.set_op(dhcp::Op::Reply);
        h.set_htype(p.htype());
        h.set_hlen(p.hlen());
        h.set_xid(p.xid());
        // RFC 2131 §4.3.2: a NAK through a relay asks it to broadcast to the client.
        let flags = if nak && !giaddr.is_unspecified() { p.flags() | dhcp::FLAG_BROADCAST } else { p.flags() };
        h.set_flags(flags);
        // Table 3: ciaddr is echoed in an ACK (renewal, INFORM), zero in OFFER and NAK.
        if spec.kind == MessageType::Ack {
            h.set_ciaddr(ciaddr);
        }
        h.set_yiaddr(spec.yiaddr);
        h.set_giaddr(giaddr);
        h.set_chaddr(p.chaddr());
    }
    w.option_u8(code::MESSAGE_TYPE, spec.kind as u8)?;
    w.option_ip(code::SERVER_ID, subnet.server_id)?;
    if let Some((lease, t1, t2)) = spec.lease {
        w.option_u32(code::LEASE_TIME, lease)?;
        w.option_u32(code::RENEWAL_TIME, t1)?;
        w.option_u32(code::REBINDING_TIME, t2)?;
    }
    if spec.rapid {
        w.option(code::RAPID_COMMIT, &[])?;
    }
    // Room kept for the echoes that must end the message.
    let keep = echoes(req);
    if !nak {
        put_options(&mut w, subnet, classes, req.prl, keep);
    }
    // RFC 6842: echo the client identifier.
    if let Some(id) = req.client_id {
        w.option(code::CLIENT_ID, id)?;
    }
    // RFC 3046 §2.2: relay agent information echoed last, unchanged.
    if let Some(ri) = req.relay_info {
        w.option(code::RELAY_AGENT_INFO, ri)?;
    }
    let len = w.finish();
    Ok((len, destination(spec, req, giaddr, ciaddr)))
}

/// The options of an OFFER or ACK: the mask, then what the client asked for (or everything),
/// a class's option before the subnet's of the same code, then the class options not yet sent;
/// each code once, and only while `keep` bytes stay free for the echoes that end the message.
fn put_options(
    w: &mut DhcpWriter<'_>,
    subnet: &SubnetRt,
    classes: (&ClassTable, ClassMask),
    prl: Option<&[u8]>,
    keep: usize,
) {
    let mut sent = [0u64; 4];
    let mut put = |w: &mut DhcpWriter<'_>, c: u8, v: &[u8]| {
        let bit = 1u64 << (c & 63);
        if sent[(c >> 6) as usize] & bit == 0 && DhcpWriter::encoded_len(v.len()) + keep <= w.room() {
            sent[(c >> 6) as usize] |= bit;
            // Cannot fail: room was checked.
            let _ = w.option(c, v);
        }
    };
    // A class's option comes before the subnet's of the same code.
    let (table, mask) = classes;
    let get = |c| (mask != 0).then(|| table.option(mask, c)).flatten().or_else(|| subnet.options.get(c));
    // The subnet mask always: clients cannot configure an address without it.
    if let Some(v) = get(code::SUBNET_MASK) {
        put(w, code::SUBNET_MASK, v);
    }
    match prl {
        // Options in the order the client asked for them (RFC 2131 §4.3.1).
        Some(list) => {
            for &c in list {
                if let Some(v) = get(c) {
                    put(w, c, v);
                }
            }
        }
        None => {
            for (c, v) in table.options(mask).chain(subnet.options.iter()) {
                put(w, c, v);
            }
        }
    }
    // Class options go out whether asked for or not (CPE provisioning: 43, 125).
    for (c, v) in table.options(mask) {
        put(w, c, v);
    }
}

/// The largest reply the client takes. Its maximum message size counts the IP and UDP
/// headers (RFC 2132 §9.10); below 576 it is invalid and the default applies.
fn limit(req: &Request<'_>) -> usize {
    match req.opts.max_message_size {
        Some(m) if m >= 576 => m as usize - 28,
        _ => dhcp::DEFAULT_MAX_MESSAGE_LEN,
    }
}

/// Bytes of the echoes that must end every reply (client identifier, relay agent information).
fn echoes(req: &Request<'_>) -> usize {
    req.client_id.map_or(0, |v| DhcpWriter::encoded_len(v.len()))
        + req.relay_info.map_or(0, |v| DhcpWriter::encoded_len(v.len()))
}

/// Whether the largest reply [`write`] may produce without optional options (an ACK with lease
/// times and rapid commit, and the echoes) fits in `out_len` bytes and the client's limit.
/// Checked before any lease changes: a reply that cannot be sent must leave no lease behind.
pub(super) fn fits(req: &Request<'_>, out_len: usize) -> bool {
    let mandatory = dhcp::HEADER_LEN
        + DhcpWriter::encoded_len(1) // message type
        + DhcpWriter::encoded_len(4) // server identifier
        + 3 * DhcpWriter::encoded_len(4) // lease time, T1, T2
        + DhcpWriter::encoded_len(0) // rapid commit
        + echoes(req)
        + 1; // END
    mandatory <= limit(req).min(out_len)
}

/// RFC 2131 §4.1, "If the 'giaddr' field ... is nonzero" and the paragraphs after it.
fn destination(spec: &ReplySpec, req: &Request<'_>, giaddr: Ipv4Addr, ciaddr: Ipv4Addr) -> Destination {
    if !giaddr.is_unspecified() {
        return Destination::Relay(giaddr);
    }
    if spec.kind == MessageType::Nak {
        return Destination::Broadcast;
    }
    if !ciaddr.is_unspecified() {
        return Destination::Client(ciaddr);
    }
    let p = &req.pkt;
    let ethernet = p.htype() == dhcp::HTYPE_ETHERNET && p.hlen() == 6;
    if p.broadcast() || spec.yiaddr.is_unspecified() || !ethernet {
        return Destination::Broadcast;
    }
    Destination::Hardware { ip: spec.yiaddr, mac: req.mac }
}
