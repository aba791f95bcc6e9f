//! The bytes on disk: a file header and fixed-size checksummed records.
//!
//! Header (32 bytes): magic `xdhcpdLJ`, version (u16 LE), file kind (u16 LE: 1 journal,
//! 2 snapshot), generation (u64 LE), creation time (u32 LE, seconds), zero (u32), CRC32 of the
//! first 28 bytes (u32 LE).
//!
//! Record (39 bytes): payload length (u32 LE, always 31 in version 2), CRC32 over the length
//! bytes and the payload (u32 LE), payload: kind (u8), client key (12 bytes), MAC (6 bytes),
//! address (u32 BE, network order), expiry (u32 LE, seconds), steering hash (u32 LE: the
//! worker that owns the client after a restart; 0 when unknown).
//!
//! Version 1 files (35-byte records, no steering hash) are read too; new records are always
//! version 2, and a version 1 journal is never appended to (see `Journal::open`).
//!
//! Decoding never panics: a record that is short, has another length, a bad checksum or an
//! unknown kind is reported as damage, and the reader stops there.

use crate::engine::{EventKind, LeaseEvent};
use crate::lease::ClientKey;
use std::io::{self, Read};

pub(super) const MAGIC: [u8; 8] = *b"xdhcpdLJ";
pub(super) const VERSION: u16 = 2;
pub(super) const HEADER_LEN: usize = 32;
pub(super) const PAYLOAD_LEN: usize = 31;
pub(super) const RECORD_LEN: usize = 8 + PAYLOAD_LEN;
/// Version 1: no steering hash.
const V1_PAYLOAD_LEN: usize = 27;

/// What a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FileKind {
    /// Lease changes in the order they happened.
    Journal = 1,
    /// The live leases and probations of every journal up to its generation.
    Snapshot = 2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Header {
    pub(super) kind: FileKind,
    /// Journals are numbered 1, 2, ... in the order they were started; a snapshot carries the
    /// number of the last journal it includes, so recovery never replays a journal twice.
    pub(super) generation: u64,
    pub(super) created: u32,
    /// The format version the file was written in (1 or 2).
    pub(super) version: u16,
}

impl Header {
    pub(super) fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..10].copy_from_slice(&self.version.to_le_bytes());
        b[10..12].copy_from_slice(&(self.kind as u16).to_le_bytes());
        b[12..20].copy_from_slice(&self.generation.to_le_bytes());
        b[20..24].copy_from_slice(&self.created.to_le_bytes());
        let crc = crc32fast::hash(&b[..28]);
        b[28..32].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Why a header is refused, in words for the operator.
    pub(super) fn decode(b: &[u8]) -> Result<Header, &'static str> {
        if b.len() < HEADER_LEN {
            return Err("shorter than a lease file header");
        }
        if b[0..8] != MAGIC {
            return Err("not an xdhcpd lease file (bad magic)");
        }
        if u32::from_le_bytes([b[28], b[29], b[30], b[31]]) != crc32fast::hash(&b[..28]) {
            return Err("header checksum mismatch");
        }
        let version = u16::from_le_bytes([b[8], b[9]]);
        if version != 1 && version != VERSION {
            return Err("unsupported lease file version");
        }
        let kind = match u16::from_le_bytes([b[10], b[11]]) {
            1 => FileKind::Journal,
            2 => FileKind::Snapshot,
            _ => return Err("unknown lease file kind"),
        };
        let mut g = [0u8; 8];
        g.copy_from_slice(&b[12..20]);
        Ok(Header {
            kind,
            generation: u64::from_le_bytes(g),
            created: u32::from_le_bytes([b[20], b[21], b[22], b[23]]),
            version,
        })
    }
}

/// The lease changes the journal keeps: [`EventKind::is_durable`] ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RecordKind {
    Bound = 1,
    Released = 2,
    Expired = 3,
    Declined = 4,
    ProbationEnded = 5,
}

impl RecordKind {
    /// No wildcard arm: a new event kind must be given a record kind (or none) here.
    pub(super) fn from_event(k: EventKind) -> Option<RecordKind> {
        match k {
            EventKind::Bound => Some(RecordKind::Bound),
            EventKind::Released => Some(RecordKind::Released),
            EventKind::Expired => Some(RecordKind::Expired),
            EventKind::Declined => Some(RecordKind::Declined),
            EventKind::ProbationEnded => Some(RecordKind::ProbationEnded),
            EventKind::Offered | EventKind::OfferReleased | EventKind::OfferExpired => None,
        }
    }

    fn from_u8(b: u8) -> Option<RecordKind> {
        Some(match b {
            1 => RecordKind::Bound,
            2 => RecordKind::Released,
            3 => RecordKind::Expired,
            4 => RecordKind::Declined,
            5 => RecordKind::ProbationEnded,
            _ => return None,
        })
    }
}

/// One decoded record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Record {
    pub(super) kind: RecordKind,
    pub(super) client: ClientKey,
    pub(super) mac: [u8; 6],
    /// Host order.
    pub(super) ip: u32,
    pub(super) expires: u32,
    /// The client's steering hash; 0 when unknown (version 1 records).
    pub(super) steer: u32,
}

impl Record {
    pub(super) fn from_event(e: &LeaseEvent) -> Option<Record> {
        Some(Record {
            kind: RecordKind::from_event(e.kind)?,
            client: e.client,
            mac: e.mac,
            ip: u32::from(e.ip),
            expires: e.expires,
            steer: e.steer,
        })
    }

    pub(super) fn encode(&self) -> [u8; RECORD_LEN] {
        let mut b = [0u8; RECORD_LEN];
        b[0..4].copy_from_slice(&(PAYLOAD_LEN as u32).to_le_bytes());
        let p = &mut b[8..];
        p[0] = self.kind as u8;
        p[1..13].copy_from_slice(&self.client.0);
        p[13..19].copy_from_slice(&self.mac);
        p[19..23].copy_from_slice(&self.ip.to_be_bytes());
        p[23..27].copy_from_slice(&self.expires.to_le_bytes());
        p[27..31].copy_from_slice(&self.steer.to_le_bytes());
        let crc = record_crc(&b);
        b[4..8].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes a record of format `version` from the start of `b` (which holds at least
    /// [`record_len`] bytes).
    pub(super) fn decode(b: &[u8], version: u16) -> Result<Record, Damage> {
        let payload = payload_len(version);
        if u32::from_le_bytes([b[0], b[1], b[2], b[3]]) != payload as u32 {
            return Err(Damage::BadLength);
        }
        let b = &b[..8 + payload];
        if u32::from_le_bytes([b[4], b[5], b[6], b[7]]) != record_crc(b) {
            return Err(Damage::BadChecksum);
        }
        let p = &b[8..];
        let kind = RecordKind::from_u8(p[0]).ok_or(Damage::UnknownKind)?;
        let mut client = [0u8; 12];
        client.copy_from_slice(&p[1..13]);
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&p[13..19]);
        let steer = if version >= 2 { u32::from_le_bytes([p[27], p[28], p[29], p[30]]) } else { 0 };
        Ok(Record {
            kind,
            client: ClientKey(client),
            mac,
            ip: u32::from_be_bytes([p[19], p[20], p[21], p[22]]),
            expires: u32::from_le_bytes([p[23], p[24], p[25], p[26]]),
            steer,
        })
    }
}

fn payload_len(version: u16) -> usize {
    if version >= 2 {
        PAYLOAD_LEN
    } else {
        V1_PAYLOAD_LEN
    }
}

/// Bytes of a record in format `version`.
pub(super) fn record_len(version: u16) -> usize {
    8 + payload_len(version)
}

/// The checksum covers the length too, so a damaged length is caught like damaged data.
fn record_crc(b: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&b[0..4]);
    h.update(&b[8..]);
    h.finalize()
}

/// Why reading stopped before the end of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    /// The file ends inside a record: the usual torn tail of a crash during a write.
    Short,
    /// A record length other than the format's.
    BadLength,
    /// The record's checksum does not match its bytes.
    BadChecksum,
    /// A checksummed record of a kind this version does not know.
    UnknownKind,
}

impl core::fmt::Display for Damage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Damage::Short => "incomplete record",
            Damage::BadLength => "bad record length",
            Damage::BadChecksum => "checksum mismatch",
            Damage::UnknownKind => "unknown record kind",
        })
    }
}

/// Result of reading the records of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Scan {
    pub(super) records: u64,
    /// Offset just past the last good record: where appending may continue.
    pub(super) good_end: u64,
    /// Why reading stopped early, if it did, and how many bytes were left unread.
    pub(super) damage: Option<(Damage, u64)>,
}

/// Reads records of format `version` from `r` (positioned just after the header, which ends at
/// `start`) up to the end or the first damaged record, handing each good one to `each`.
pub(super) fn scan(
    mut r: impl Read,
    start: u64,
    file_len: u64,
    version: u16,
    mut each: impl FnMut(Record),
) -> io::Result<Scan> {
    let len = record_len(version);
    let mut buf = [0u8; RECORD_LEN];
    let mut at = start;
    let mut records = 0;
    loop {
        let n = fill(&mut r, &mut buf[..len])?;
        if n == 0 {
            return Ok(Scan { records, good_end: at, damage: None });
        }
        let rec = if n < len { Err(Damage::Short) } else { Record::decode(&buf, version) };
        match rec {
            Ok(rec) => {
                each(rec);
                records += 1;
                at += len as u64;
            }
            Err(d) => {
                return Ok(Scan { records, good_end: at, damage: Some((d, file_len.saturating_sub(at))) });
            }
        }
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
pub(super) fn fill(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
