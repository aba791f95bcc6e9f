//! The committed seed corpus (`fuzz/seeds/TARGET/`), built from real messages, frames, journal
//! files and configurations by `cargo run --example seeds` (see `examples/seeds.rs`). Small on
//! purpose: tens of files per target; campaigns grow their own corpus outside the repository.

use crate::engine::{kind, op, Input, KNOBS};
use crate::journal::{self, NOW};
use core::net::Ipv4Addr;
use dhcp_core::client::ClientMsg;
use dhcp_core::engine::{EventKind, LeaseEvent};
use dhcp_core::lease::ClientKey;
use dhcp_core::wire::dhcp::{DhcpWriter, Op};
use dhcp_core::wire::ether::{self, VlanTag};
use dhcp_core::wire::frame;
use dhcp_core::wire::options::{code, MessageType};
use dhcp_user::journal::{Durability, Journal, JournalOptions};
use std::time::Duration;

/// `(target, name, bytes)` of every seed.
pub fn all() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut v = Vec::new();
    let mut add = |t: &'static str, seeds: Vec<(String, Vec<u8>)>| v.extend(seeds.into_iter().map(|(n, b)| (t, n, b)));
    add("frame", frames());
    add("options", options());
    add("engine", engine());
    add("journal", journals());
    add("config", configs());
    v
}

/// A client message seed: name, type, options, client identifier, relayed.
type Case<'a> = (&'a str, MessageType, Vec<(u8, &'a [u8])>, Option<&'a [u8]>, bool);

fn client_messages() -> Vec<(String, Vec<u8>)> {
    let server = Ipv4Addr::new(100, 64, 0, 1).octets();
    let want = Ipv4Addr::new(100, 64, 0, 10).octets();
    let relay_info = [1, 4, b'p', b'o', b'r', b't', 2, 2, 0xab, 0xcd, 5, 4, 100, 64, 0, 0];
    let long_id: Vec<u8> = (0..300).map(|i| i as u8).collect();
    let cases: Vec<Case<'_>> = vec![
        ("discover", MessageType::Discover, vec![], None, false),
        ("discover-rapid", MessageType::Discover, vec![(code::RAPID_COMMIT, &[])], Some(&[1, 2, 0, 0, 0, 0, 1]), false),
        ("select", MessageType::Request, vec![(code::SERVER_ID, &server), (code::REQUESTED_IP, &want)], None, false),
        ("reboot", MessageType::Request, vec![(code::REQUESTED_IP, &want)], None, false),
        ("decline", MessageType::Decline, vec![(code::SERVER_ID, &server), (code::REQUESTED_IP, &want)], None, false),
        ("release", MessageType::Release, vec![(code::SERVER_ID, &server)], None, false),
        ("inform", MessageType::Inform, vec![(code::MAX_MESSAGE_SIZE, &[5, 220])], None, false),
        ("relayed", MessageType::Discover, vec![(code::SUBNET_SELECTION, &[100, 64, 1, 0])], None, true),
        ("long-client-id", MessageType::Discover, vec![], Some(&long_id), false),
    ];
    cases
        .into_iter()
        .map(|(name, mt, options, client_id, relayed)| {
            let m = ClientMsg {
                client_id,
                options: &options,
                giaddr: if relayed { Ipv4Addr::new(198, 18, 2, 1) } else { Ipv4Addr::UNSPECIFIED },
                relay_info: relayed.then_some(&relay_info[..]),
                ..ClientMsg::new([2, 0, 0, 0, 0, 1], 0x5eed)
            };
            let mut buf = vec![0u8; 1500];
            let n = m.write(mt, &mut buf).expect("a seed message fits");
            buf.truncate(n);
            (name.to_string(), buf)
        })
        .collect()
}

fn frames() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (name, msg) in client_messages().into_iter().take(6) {
        for tags in 0..=2u8 {
            let mut l2 = ether::Header {
                dst: ether::BROADCAST,
                src: [2, 0, 0, 0, 0, 1],
                vlan_count: tags,
                ethertype: ether::ETHERTYPE_IPV4,
                ..Default::default()
            };
            for t in 0..tags as usize {
                l2.vlans[t] = VlanTag { tpid: [ether::TPID_8021AD, ether::TPID_8021Q][t + 2 - tags as usize], tci: 42 };
            }
            let at = frame::payload_offset(tags);
            let mut buf = vec![0u8; at + msg.len()];
            buf[at..].copy_from_slice(&msg);
            let src = (Ipv4Addr::UNSPECIFIED, 68);
            let len = frame::write_headers(&mut buf, &l2, src, (Ipv4Addr::BROADCAST, 67), msg.len(), 64).unwrap();
            buf.truncate(len);
            out.push((format!("{name}-{tags}tags"), buf));
        }
    }
    out
}

/// A message whose options continue in `file` and `sname` (option 52 = `overload`).
fn overloaded(overload: u8, twice: Option<u8>) -> Vec<u8> {
    let mut buf = vec![0u8; 600];
    let mut w = DhcpWriter::new(&mut buf, 600).unwrap();
    {
        let mut h = w.header();
        h.set_op(Op::Request);
        h.set_htype(1);
        h.set_hlen(6);
        let mut ch = [0u8; 16];
        ch[..6].copy_from_slice(&[2, 0, 0, 0, 0, 9]);
        h.set_chaddr(&ch);
        h.file_mut()[..9].copy_from_slice(&[61, 3, 1, 2, 3, 55, 2, 1, 3]);
        h.sname_mut()[..9].copy_from_slice(&[54, 4, 100, 64, 0, 1, 61, 1, 4]);
    }
    w.option_u8(code::MESSAGE_TYPE, MessageType::Request as u8).unwrap();
    w.option_u8(code::OVERLOAD, overload).unwrap();
    if let Some(second) = twice {
        w.option_u8(code::OVERLOAD, second).unwrap();
    }
    w.option(code::CLIENT_ID, &[0]).unwrap();
    let n = w.finish();
    buf.truncate(n);
    buf
}

fn options() -> Vec<(String, Vec<u8>)> {
    let mut out = client_messages();
    for o in 1..=3 {
        out.push((format!("overload-{o}"), overloaded(o, None)));
    }
    out.push(("overload-twice".into(), overloaded(2, Some(1))));
    out
}

fn program(knobs: [u8; KNOBS], steps: &[[u8; 8]]) -> Vec<u8> {
    Input { knobs, steps: steps.to_vec() }.encode()
}

/// A SEND step: identity `who` sends `kind` about pool address `addr` (ciaddr the same).
fn send(who: u8, kind: u8, addr: u8, flags: u8) -> [u8; 8] {
    [op::SEND, who, kind, addr + 1, addr + 1, flags, 0, 0]
}

fn engine() -> Vec<(String, Vec<u8>)> {
    let dora = |who| [send(who, kind::DISCOVER, 0, 0), send(who, kind::SELECT, 0, 0)];
    let plain = [2, 5, 5, 5, 0, 0, 0, 0];
    let wait = |s: u8| [op::ADVANCE, s, 0, 0, 0, 0, 0, 0];
    let mut v = vec![
        ("dora", program(plain, &dora(0))),
        (
            "dora-renew-release",
            program(plain, &[dora(1)[0], dora(1)[1], send(1, kind::RENEW, 0, 0), send(1, kind::RELEASE, 0, 0)]),
        ),
        (
            "decline-probation",
            program(plain, &[dora(0)[0], dora(0)[1], send(0, kind::DECLINE, 0, 0), wait(10), dora(2)[0]]),
        ),
        ("offer-expires", program(plain, &[send(3, kind::DISCOVER, 0, 0), wait(30), send(3, kind::SELECT, 0, 0)])),
        ("foreign-server", program(plain, &[send(0, kind::DISCOVER, 0, 0), send(0, kind::SELECT, 0, 1)])),
        ("pool-exhausted", program([0, 5, 5, 5, 0, 0, 0, 0], &[dora(0)[0], dora(0)[1], dora(1)[0], dora(2)[0]])),
        (
            "reboot-authoritative",
            program([2, 5, 5, 5, 2, 0, 0, 0], &[send(4, kind::REBOOT, 1, 0), send(4, kind::INFORM, 1, 0)]),
        ),
        (
            "rapid-commit",
            program([2, 5, 5, 5, 1, 0, 0, 0], &[send(0, kind::DISCOVER, 0, 8), send(0, kind::RELEASE, 0, 0)]),
        ),
        ("long-client-id", program(plain, &[send(5, kind::DISCOVER, 0, 0), send(5, kind::DISCOVER, 0, 16)])),
        (
            "end-of-time",
            program(
                [2, 255, 255, 255, 0, 0, 0, 1],
                &[dora(0)[0], dora(0)[1], [op::ADVANCE, 255, 0, 8, 0, 0, 0, 0], dora(1)[0]],
            ),
        ),
        (
            "probation-zero",
            program([2, 5, 5, 0, 0, 0, 0, 0], &[dora(0)[0], dora(0)[1], send(0, kind::DECLINE, 0, 0), wait(3)]),
        ),
        (
            "clock-back",
            program(plain, &[send(0, kind::DISCOVER, 0, 0), [op::BACK, 100, 0, 0, 0, 0, 0, 0], dora(1)[0], wait(200)]),
        ),
        ("limits", program([5, 5, 5, 5, 8, 0, 4, 0], &[dora(0)[0], dora(4)[0], dora(4)[1], dora(1)[0]])),
        (
            "raw",
            program(
                plain,
                &[[op::RAW, 0, kind::DISCOVER, 1, 1, 0, 80, 0], [op::RAW, 1, kind::SELECT, 1, 1, 0, 100, 0]],
            ),
        ),
        ("small-reply-room", program(plain, &[[op::SEND, 0, kind::DISCOVER, 1, 1, 0, 0, 3]])),
    ];
    // A client that moves to the relayed subnet: offered there while its lease here stands.
    let moved = [
        dora(0)[0],
        dora(0)[1],
        send(0, kind::DISCOVER, 0, 128),
        send(0, kind::SELECT, 0, 128),
        send(0, kind::RENEW, 0, 0),
    ];
    v.push(("move-links", program(plain, &moved)));
    // The long identifier's offer fits only when the client takes larger replies.
    v.push(("long-client-id-large", program(plain, &[[op::SEND, 5, kind::DISCOVER, 1, 1, 16, 1, 0]])));
    v.into_iter().map(|(n, b)| (n.to_string(), b)).collect()
}

fn event(kind: EventKind, client: u8, ip: u8, expires: u32) -> LeaseEvent {
    let mac = [2, 0, 0, 0, 0, client];
    LeaseEvent {
        kind,
        ip: Ipv4Addr::new(100, 64, 0, ip),
        client: ClientKey::from_mac(&mac),
        mac,
        expires,
        steer: 0x1234_5678,
    }
}

/// Lease files written by the journal itself: the bytes it leaves in each file after `batches`
/// (and a compaction after the first batch when `compact`).
fn written(batches: &[Vec<LeaseEvent>], compact: bool) -> [Option<Vec<u8>>; 3] {
    let dir = std::env::temp_dir().join(format!("xdhcpd-fuzz-seeds-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("leases");
    let opts = JournalOptions { clock: || NOW, ..JournalOptions::new(Durability::None, Duration::ZERO) };
    let (j, _) = Journal::open_with(&path, opts, NOW).expect("a fresh journal");
    for (i, b) in batches.iter().enumerate() {
        j.wait(j.append(b)).expect("written");
        if compact && i == 0 {
            j.compact().expect("compacted");
        }
    }
    j.close().unwrap();
    let files = journal::FILES.map(|s| std::fs::read(dir.join(format!("leases{s}"))).ok());
    let _ = std::fs::remove_dir_all(&dir);
    files
}

fn journals() -> Vec<(String, Vec<u8>)> {
    use EventKind::*;
    let t = NOW;
    let leases = vec![event(Bound, 1, 10, t + 100), event(Bound, 2, 11, t + 100), event(Bound, 3, 12, t - 5)];
    let changes = vec![
        event(Declined, 1, 10, t + 500),
        event(Released, 2, 11, t),
        event(Bound, 4, 13, t + 3600),
        event(Expired, 3, 12, t - 5),
    ];
    let ended = vec![event(ProbationEnded, 1, 10, t + 500), event(Bound, 5, 10, u32::MAX)];
    let mut out = Vec::new();
    let cases = [
        ("journal", vec![leases.clone()], false),
        ("journal-changes", vec![leases.clone(), changes.clone()], false),
        ("snapshot-and-journal", vec![leases.clone(), changes.clone(), ended.clone()], true),
        ("snapshot-only", vec![leases.clone()], true),
    ];
    for (name, batches, compact) in cases {
        let files = written(&batches, compact);
        let refs = [files[0].as_deref(), files[1].as_deref(), files[2].as_deref()];
        out.push((name.to_string(), journal::encode(refs)));
        // The same with the last write torn, and with a byte of a record flipped.
        if let Some(j) = refs[0].filter(|j| j.len() > 80) {
            let torn = &j[..j.len() - 7];
            out.push((format!("{name}-torn"), journal::encode([Some(torn), refs[1], None])));
            let mut flipped = j.to_vec();
            let at = flipped.len() - 40;
            flipped[at] ^= 0x10;
            out.push((format!("{name}-flipped"), journal::encode([Some(&flipped), refs[1], None])));
            // An interrupted compaction: the journal moved to `.old`, a new one begun.
            out.push((format!("{name}-as-old"), journal::encode([None, refs[1], Some(j)])));
        }
    }
    out
}

fn configs() -> Vec<(String, Vec<u8>)> {
    let minimal = "server_id = \"100.64.0.1\"\n[[subnet]]\nsubnet = \"100.64.0.0/24\"\ninterface = \"eth0\"\n\
                   pools = [\"100.64.0.10-100.64.0.99\"]\n";
    let example = include_str!("../../examples/xdhcpd.toml");
    let cases = [
        ("example", example.to_string()),
        ("minimal", minimal.to_string()),
        ("times", format!("lease_time = 315360000\noffer_timeout = 86400\ndecline_probation = 0\n{minimal}")),
        ("limits", format!("{minimal}[subnet.limits]\nkey = \"chaddr\"\nmax_leases = 2\ndiscover_rate = 5\n")),
        (
            "overlap",
            format!("{minimal}[[subnet]]\nsubnet = \"100.64.0.0/25\"\npools = [\"100.64.0.50-100.64.0.60\"]\n"),
        ),
        ("unknown-key", format!("{minimal}colour = \"blue\"\n")),
        ("bad-pool", minimal.replace("100.64.0.99", "100.64.1.300")),
        ("utf8", format!("# é ü 中\n{minimal}")),
    ];
    cases.into_iter().map(|(n, t)| (n.to_string(), t.into_bytes())).collect()
}
