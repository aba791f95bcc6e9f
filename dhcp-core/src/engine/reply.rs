//! Writing OFFER, ACK and NAK messages, and where they go (RFC 2131 §4.1, §4.3), and the parts
//! of them compiled once at start-up: each subnet's and class's options and each subnet's first
//! options, encoded as they go on the wire. A reply copies these bytes; it never encodes them.

use super::classes::{ClassMask, ClassTable};
use super::shared::SubnetRt;
use super::{Destination, Request};
use crate::wire::dhcp::{self, DhcpWriter};
use crate::wire::options::{self, code, MessageType};
use crate::wire::Result;
use core::net::Ipv4Addr;

/// What to say.
pub(super) struct ReplySpec {
    pub(super) kind: MessageType,
    pub(super) yiaddr: Ipv4Addr,
    /// OFFER and ACK of an address carry the subnet's lease time, T1 and T2; INFORM and NAK
    /// do not.
    pub(super) lease: Option<(u32, u32, u32)>,
    /// Answering a rapid-commit DISCOVER (RFC 4039): add option 80.
    pub(super) rapid: bool,
}

/// Options encoded once as they go on the wire (code, length, value; split per RFC 3396).
#[derive(Debug)]
pub(super) struct OptionTable {
    /// `(code, encoded option)` in the order given.
    entries: Vec<(u8, Box<[u8]>)>,
    /// Position + 1 in `entries` by code; 0 = not set.
    index: [u16; 256],
}

impl OptionTable {
    /// Encodes `(code, value)` pairs, kept in their order; of a repeated code the first counts.
    pub(super) fn new<'v>(pairs: impl IntoIterator<Item = (u8, &'v [u8])>) -> OptionTable {
        let mut entries: Vec<(u8, Box<[u8]>)> = Vec::new();
        let mut index = [0u16; 256];
        for (c, v) in pairs {
            if index[c as usize] != 0 {
                continue;
            }
            let mut enc = vec![0u8; options::encoded_len(v.len())];
            options::encode(c, v, &mut enc);
            entries.push((c, enc.into()));
            index[c as usize] = entries.len() as u16;
        }
        OptionTable { entries, index }
    }

    /// Option `code`, encoded.
    pub(super) fn get(&self, code: u8) -> Option<&[u8]> {
        match self.index[code as usize] {
            0 => None,
            n => Some(&self.entries[n as usize - 1].1),
        }
    }

    /// `(code, encoded option)` in order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (u8, &[u8])> {
        self.entries.iter().map(|(c, v)| (*c, &v[..]))
    }
}

/// Bytes of [`ReplyHead`]: five options of 1, 4, 4, 4 and 4 bytes.
const HEAD_LEN: usize = 3 + 4 * 6;
/// Bytes of the head without the lease times (NAK, INFORM).
const SHORT_HEAD_LEN: usize = 3 + 6;

/// The options every reply from a subnet starts with, encoded once: message type (its value
/// set per reply), server identifier, then for an address lease time, T1 and T2
/// (RFC 2132 §9.6, §9.7, §9.11, §9.14).
#[derive(Debug)]
pub(super) struct ReplyHead([u8; HEAD_LEN]);

impl ReplyHead {
    pub(super) fn new(server_id: Ipv4Addr, (lease, t1, t2): (u32, u32, u32)) -> ReplyHead {
        let mut head = [0u8; HEAD_LEN];
        let mut at = options::encode(code::MESSAGE_TYPE, &[0], &mut head);
        at += options::encode(code::SERVER_ID, &server_id.octets(), &mut head[at..]);
        for (c, v) in [(code::LEASE_TIME, lease), (code::RENEWAL_TIME, t1), (code::REBINDING_TIME, t2)] {
            at += options::encode(c, &v.to_be_bytes(), &mut head[at..]);
        }
        debug_assert_eq!(at, HEAD_LEN);
        ReplyHead(head)
    }

    /// The head of a reply of `kind`, with the lease times given (a cluster may shorten the
    /// subnet's) or without any.
    fn of(&self, kind: MessageType, lease: Option<(u32, u32, u32)>) -> ([u8; HEAD_LEN], usize) {
        let mut head = self.0;
        // The value of the message type option, after its code and length.
        head[2] = kind as u8;
        let Some((lease, t1, t2)) = lease else { return (head, SHORT_HEAD_LEN) };
        // Each time's value follows its option's code and length, 6 bytes per option.
        for (at, v) in [(SHORT_HEAD_LEN + 2, lease), (SHORT_HEAD_LEN + 8, t1), (SHORT_HEAD_LEN + 14, t2)] {
            head[at..at + 4].copy_from_slice(&v.to_be_bytes());
        }
        (head, HEAD_LEN)
    }
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
    let (head, head_len) = subnet.head.of(spec.kind, spec.lease);
    w.put_encoded(&head[..head_len])?;
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
    // `enc`: the option encoded (see `OptionTable`).
    let mut put = |w: &mut DhcpWriter<'_>, c: u8, enc: &[u8]| {
        let bit = 1u64 << (c & 63);
        if sent[(c >> 6) as usize] & bit == 0 && w.put_encoded_keeping(enc, keep).is_ok() {
            sent[(c >> 6) as usize] |= bit;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::options::OptionIter;

    #[test]
    fn option_table_keeps_order_encodes_and_the_first_of_a_code_counts() {
        let long = [7u8; 300];
        let t = OptionTable::new([(6, &[1, 2, 3, 4][..]), (3, &[9, 9, 9, 9][..]), (6, &[5][..]), (43, &long[..])]);
        assert_eq!(t.get(6), Some(&[6, 4, 1, 2, 3, 4][..]));
        assert_eq!(t.get(1), None);
        assert_eq!(t.iter().map(|(c, _)| c).collect::<Vec<_>>(), [6, 3, 43]);
        let split: Vec<_> = OptionIter::new(t.get(43).unwrap()).map(|o| o.unwrap()).collect();
        assert_eq!((split.len(), split[0].1.len(), split[1].1.len()), (2, 255, 45));
    }

    #[test]
    fn reply_head_carries_the_kind_and_lease_times_only_when_asked() {
        let head = ReplyHead::new(Ipv4Addr::new(100, 64, 0, 1), (3600, 1800, 3150));
        // The times given win over the subnet's (a cluster's fence shortens them).
        let (h, n) = head.of(MessageType::Ack, Some((60, 30, 52)));
        let opts: Vec<_> = OptionIter::new(&h[..n]).map(|o| o.unwrap()).collect();
        let want: [(u8, &[u8]); 5] = [
            (code::MESSAGE_TYPE, &[MessageType::Ack as u8]),
            (code::SERVER_ID, &[100, 64, 0, 1]),
            (code::LEASE_TIME, &60u32.to_be_bytes()),
            (code::RENEWAL_TIME, &30u32.to_be_bytes()),
            (code::REBINDING_TIME, &52u32.to_be_bytes()),
        ];
        assert_eq!(opts, want);
        let (h, n) = head.of(MessageType::Nak, None);
        let opts: Vec<_> = OptionIter::new(&h[..n]).map(|o| o.unwrap()).collect();
        assert_eq!(opts, want[..2].iter().map(|&(c, v)| (c, if c == 53 { &[6u8][..] } else { v })).collect::<Vec<_>>());
    }
}
