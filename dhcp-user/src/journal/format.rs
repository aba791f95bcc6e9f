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
//! Every write of a batch to a journal ends with a commit record (kind 6, the batch's last
//! sequence number in the client key's bytes). Recovery tells by them what was synced: damage
//! after the last commit record is the torn tail of a write a power cut interrupted (its records
//! were never acknowledged); damage before one is damage to synced data.
//!
//! Reading resynchronises after damage: [`Scanner`] searches forward for the next offset where
//! a whole record checks out (its length field and checksum), so one flipped bit costs one
//! record, not the rest of the file.
//!
//! A journal may end in zeros: the writer extends it ahead of its records (see the writer's
//! `Store`). Zeros at the end of a journal, from a record boundary on, are its unused end, not
//! damage; in a snapshot (never extended ahead) they are damage.
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
    /// The end of a batch's write: everything before it was written in one go, and synced
    /// with it when the journal syncs.
    Commit = 6,
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
            6 => RecordKind::Commit,
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
    /// The commit record ending a batch whose last record has sequence number `seq`.
    pub(super) fn commit(seq: u64) -> Record {
        let mut k = [0u8; 12];
        k[..8].copy_from_slice(&seq.to_le_bytes());
        Record { kind: RecordKind::Commit, client: ClientKey(k), mac: [0; 6], ip: 0, expires: 0, steer: 0 }
    }

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

    /// The lease event this record keeps (None for a commit record).
    pub(super) fn to_event(self) -> Option<LeaseEvent> {
        let kind = match self.kind {
            RecordKind::Bound => EventKind::Bound,
            RecordKind::Released => EventKind::Released,
            RecordKind::Expired => EventKind::Expired,
            RecordKind::Declined => EventKind::Declined,
            RecordKind::ProbationEnded => EventKind::ProbationEnded,
            RecordKind::Commit => return None,
        };
        let (client, mac, expires, steer) = (self.client, self.mac, self.expires, self.steer);
        Some(LeaseEvent { kind, ip: self.ip.into(), client, mac, expires, steer })
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

/// What reading a file yields, in file order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Item {
    Record(Record),
    /// Bytes `start..end` hold no good record (`end` is where the next one starts, or the end
    /// of the file).
    Damaged {
        start: u64,
        end: u64,
        reason: Damage,
    },
}

/// Reads the records of one file after its header, resynchronising after damage.
pub(super) struct Scanner<R> {
    r: R,
    version: u16,
    len: usize,
    buf: Vec<u8>,
    /// `buf[lo..hi]` is unread, and `buf[lo]` is at file offset `at`.
    lo: usize,
    hi: usize,
    at: u64,
    eof: bool,
    /// Zeros at the end of the file, from a record boundary on, end it (a journal's room).
    zero_end: bool,
}

impl<R: Read> Scanner<R> {
    /// `r` is positioned just after the header, which ends at file offset `start`.
    /// `zero_end`: zeros at the end of the file, from a record boundary on, are no damage.
    pub(super) fn new(r: R, start: u64, version: u16, zero_end: bool) -> Scanner<R> {
        let len = record_len(version);
        Scanner { r, version, len, buf: vec![0; 1 << 20], lo: 0, hi: 0, at: start, eof: false, zero_end }
    }

    /// The offset of the next byte to read.
    pub(super) fn offset(&self) -> u64 {
        self.at
    }

    /// Makes at least `n` unread bytes available unless the file ends first; returns how many.
    fn want(&mut self, n: usize) -> io::Result<usize> {
        if self.hi - self.lo >= n || self.eof {
            return Ok(self.hi - self.lo);
        }
        self.buf.copy_within(self.lo..self.hi, 0);
        self.hi -= self.lo;
        self.lo = 0;
        while self.hi < self.buf.len() && self.hi < n {
            match self.r.read(&mut self.buf[self.hi..]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(k) => self.hi += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(self.hi - self.lo)
    }

    fn advance(&mut self, n: usize) {
        self.lo += n;
        self.at += n as u64;
    }

    /// The record at the read position, if the bytes there make one.
    fn try_record(&mut self) -> io::Result<Result<Record, Damage>> {
        if self.want(self.len)? < self.len {
            return Ok(Err(Damage::Short));
        }
        Ok(Record::decode(&self.buf[self.lo..self.lo + self.len], self.version))
    }

    /// The next record or damaged region; `None` at the end of the file.
    pub(super) fn next_item(&mut self) -> io::Result<Option<Item>> {
        if self.want(1)? == 0 {
            return Ok(None);
        }
        let (start, reason) = match self.try_record()? {
            Ok(r) => {
                self.advance(self.len);
                return Ok(Some(Item::Record(r)));
            }
            Err(reason) => (self.at, reason),
        };
        // Search forward, a byte at a time, for where good records start again.
        let mut nonzero_end = start;
        loop {
            if self.buf[self.lo] != 0 {
                nonzero_end = self.at + 1;
            }
            self.advance(1);
            if self.want(1)? == 0 {
                let end = if self.zero_end { self.unused_from(start, nonzero_end) } else { self.at };
                return Ok((end > start).then_some(Item::Damaged { start, end, reason }));
            }
            if self.try_record()?.is_ok() {
                return Ok(Some(Item::Damaged { start, end: self.at, reason }));
            }
        }
    }

    /// At the end of the file, after damage from `start` whose last byte other than zero ends
    /// at `nonzero_end`: where the unused end begins (the first record boundary, counted from
    /// `start`, at or after `nonzero_end`; or the end of the file).
    fn unused_from(&self, start: u64, nonzero_end: u64) -> u64 {
        let len = self.len as u64;
        (start + (nonzero_end - start).div_ceil(len) * len).min(self.at)
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
