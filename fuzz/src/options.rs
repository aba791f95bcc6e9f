//! Target `options`: arbitrary bytes as a DHCP message (magic cookie forced, so that the
//! options are reached) read by the server's one-pass option index, checked against a naive
//! reference written from the RFCs here: RFC 2131 §4.1 and RFC 2132 §9.3 (option overload:
//! the first option 52 of the options field says whether `file`, then `sname`, hold options)
//! and RFC 3396 (instances of one option are joined in reading order).
//!
//! Asserts: the index accepts exactly what the reference accepts; it then reads the same
//! overload, the same first instance of every option it keeps, and the same joined values.

use core::net::Ipv4Addr;
use dhcp_core::wire::dhcp::{DhcpPacket, HEADER_LEN, MAGIC_COOKIE};
use dhcp_core::wire::options::{code, OptionIter, Options};

pub fn run(data: &[u8]) {
    if data.len() < HEADER_LEN {
        return;
    }
    let mut msg = data.to_vec();
    msg[HEADER_LEN - 4..HEADER_LEN].copy_from_slice(&MAGIC_COOKIE);
    let p = DhcpPacket::new_checked(&msg[..]).expect("a header with the cookie is a message");
    let reference = reference(p.options(), p.file(), p.sname());
    match (p.parse_options(), reference) {
        (Ok(o), Some(items)) => agree(&o, &items),
        (Err(_), None) => {}
        (got, want) => panic!("index {:?}, reference {:?}", got.map(|o| o.overload), want.map(|i| i.len())),
    }
}

/// Fixed lengths the server insists on: a wrong one makes the message malformed.
fn fixed_len(c: u8) -> Option<usize> {
    match c {
        code::MESSAGE_TYPE | code::OVERLOAD => Some(1),
        code::MAX_MESSAGE_SIZE => Some(2),
        code::REQUESTED_IP | code::SERVER_ID | code::LEASE_TIME | code::SUBNET_SELECTION => Some(4),
        _ => None,
    }
}

/// Every `(code, value)` in reading order, or `None` if the message is malformed.
fn reference<'a>(options: &'a [u8], file: &'a [u8], sname: &'a [u8]) -> Option<Vec<(u8, &'a [u8])>> {
    let walk = |area: &'a [u8]| OptionIter::new(area).collect::<Result<Vec<_>, _>>().ok();
    let mut items = walk(options)?;
    let overload = items.iter().find(|(c, _)| *c == code::OVERLOAD).map_or(0, |(_, v)| v.first().copied().unwrap_or(0));
    if items.iter().any(|&(c, v)| c == code::OVERLOAD && (v.len() != 1 || !(1..=3).contains(&v[0]))) {
        return None;
    }
    let from_options = items.len();
    if overload & 1 != 0 {
        items.extend(walk(file)?);
    }
    if overload & 2 != 0 {
        items.extend(walk(sname)?);
    }
    // Option 52 outside the options field is not checked (RFC 2132 §9.3: it only counts there).
    let bad = items
        .iter()
        .enumerate()
        .any(|(i, &(c, v))| fixed_len(c).is_some_and(|n| v.len() != n) && !(c == code::OVERLOAD && i >= from_options));
    (!bad).then_some(items)
}

fn agree(o: &Options<'_>, items: &[(u8, &[u8])]) {
    let first = |c: u8| items.iter().find(|(x, _)| *x == c).map(|(_, v)| *v);
    let ip = |v: &[u8]| Ipv4Addr::from(<[u8; 4]>::try_from(v).unwrap());
    assert_eq!(o.overload, first(code::OVERLOAD).map_or(0, |v| v[0]), "only the first option 52 counts");
    assert_eq!(o.message_type, first(code::MESSAGE_TYPE).map(|v| v[0]));
    assert_eq!(o.requested_ip, first(code::REQUESTED_IP).map(ip));
    assert_eq!(o.server_id, first(code::SERVER_ID).map(ip));
    assert_eq!(o.subnet_selection, first(code::SUBNET_SELECTION).map(ip));
    assert_eq!(o.lease_time, first(code::LEASE_TIME).map(|v| u32::from_be_bytes(v.try_into().unwrap())));
    assert_eq!(o.max_message_size, first(code::MAX_MESSAGE_SIZE).map(|v| u16::from_be_bytes(v.try_into().unwrap())));
    assert_eq!(o.rapid_commit, first(code::RAPID_COMMIT).is_some());
    let got: Vec<(u8, &[u8])> = o.iter().map(|i| i.expect("a parsed message iterates")).collect();
    assert_eq!(got, items, "areas read in order: options, file, sname");
    let mut scratch = vec![0u8; 1 << 16];
    let mut codes: Vec<u8> = items.iter().map(|(c, _)| *c).collect();
    codes.extend([code::CLIENT_ID, code::PARAMETER_REQUEST_LIST, code::RELAY_AGENT_INFO]);
    for c in codes {
        let joined: Option<Vec<u8>> =
            first(c).map(|_| items.iter().filter(|(x, _)| *x == c).flat_map(|(_, v)| v.iter().copied()).collect());
        assert_eq!(o.value(c, &mut scratch).unwrap().map(<[u8]>::to_vec), joined, "RFC 3396 join of {c}");
        // A scratch too small is refused, never overrun.
        if let Some(j) = joined.as_ref().filter(|j| !j.is_empty()) {
            let mut small = vec![0u8; j.len() - 1];
            let split = items.iter().filter(|(x, _)| *x == c).count() > 1;
            let fixed = matches!(c, code::CLIENT_ID | code::PARAMETER_REQUEST_LIST | code::RELAY_AGENT_INFO);
            if split || !fixed {
                assert!(o.value(c, &mut small).is_err());
            }
        }
    }
}
