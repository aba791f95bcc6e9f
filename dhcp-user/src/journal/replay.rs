//! Replaying records into the set of live leases and probations, and reading lease files.
//!
//! Reading is streamed: a journal's records are kept (they are few: compaction bounds a
//! journal's size), a snapshot's (millions) are not. A snapshot record that no journal record
//! mentions (neither its client nor its address) is final as it stands and goes straight out;
//! only the touched ones are replayed with the journals. Which ones are touched is asked of a
//! compact filter ([`Filter`]): a false positive is replayed alone and comes out unchanged. That gives exactly the state a replay
//! of everything would give (every rule below acts on its record's client and address only),
//! with memory for the journals, not for the whole lease set.
//!
//! The replay state mirrors what the engines hold: one lease per client, one holder per
//! address, one probation per address. Records of different workers can reach the journal
//! out of order (each worker appends its own batches), so every rule is written to give the
//! right answer in any interleaving of other clients' records:
//! - `Bound` gives the client the address and ends any other claim on that address (another
//!   client's older lease whose `Expired`/`Released` record came later or was lost, or a
//!   probation whose end was not recorded): the address was free again when it was bound.
//! - `Released`/`Expired` end the client's lease only if it is still for that address.
//! - `Declined` ends the declining client's lease (the engine drops it) and any other lease on
//!   the address, and puts the address in probation until `expires`.
//! - `ProbationEnded` ends the probation only if it is not a later one (a later decline of the
//!   same address, recorded by another worker before this record).

use super::filter::Filter;
use super::format::{self, Damage, FileKind, Header, Item, Record, RecordKind, Scanner, HEADER_LEN};
use super::{files, Recovered};
use crate::lease::{ClientKey, LeaseState};
use core::net::Ipv4Addr;
use hashbrown::HashMap;
use std::io::{self, BufReader};
use std::path::Path;

type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Held {
    ip: u32,
    mac: [u8; 6],
    expires: u32,
    steer: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Probation {
    /// The client that declined the address (its MAC picks the worker that will hold the
    /// probation after a restart).
    client: ClientKey,
    mac: [u8; 6],
    expires: u32,
    steer: u32,
}

/// Live leases and probations built from records.
#[derive(Debug, Default)]
pub(super) struct Replay {
    leases: Map<ClientKey, Held>,
    /// Address → client holding it; always the inverse of `leases`.
    holder: Map<u32, ClientKey>,
    probation: Map<u32, Probation>,
}

impl Replay {
    /// Room for the leases of `n` records without growing (growing doubles a map for a while:
    /// a peak of memory at the worst moment, when the engines are nearly full).
    fn with_capacity(n: usize) -> Replay {
        Replay {
            leases: Map::with_capacity_and_hasher(n, Default::default()),
            holder: Map::with_capacity_and_hasher(n, Default::default()),
            probation: Map::default(),
        }
    }

    pub(super) fn apply(&mut self, r: &Record) {
        match r.kind {
            RecordKind::Bound => {
                if let Some(prev) =
                    self.leases.insert(r.client, Held { ip: r.ip, mac: r.mac, expires: r.expires, steer: r.steer })
                {
                    if prev.ip != r.ip {
                        self.holder.remove(&prev.ip);
                    }
                }
                if let Some(other) = self.holder.insert(r.ip, r.client) {
                    if other != r.client {
                        self.leases.remove(&other);
                    }
                }
                self.probation.remove(&r.ip);
            }
            RecordKind::Released | RecordKind::Expired => self.end_lease(&r.client, r.ip),
            RecordKind::Declined => {
                self.end_lease(&r.client, r.ip);
                if let Some(other) = self.holder.remove(&r.ip) {
                    self.leases.remove(&other);
                }
                self.probation
                    .insert(r.ip, Probation { client: r.client, mac: r.mac, expires: r.expires, steer: r.steer });
            }
            RecordKind::ProbationEnded => {
                if self.probation.get(&r.ip).is_some_and(|p| p.expires <= r.expires) {
                    self.probation.remove(&r.ip);
                }
            }
            RecordKind::Commit => {}
        }
    }

    fn end_lease(&mut self, client: &ClientKey, ip: u32) {
        if self.leases.get(client).is_some_and(|l| l.ip == ip) {
            self.leases.remove(client);
            self.holder.remove(&ip);
        }
    }

    /// The state as records that rebuild it (what a snapshot holds), skipping entries that
    /// ended at or before `now`, consuming the state as it goes.
    fn into_live(self, now: u32) -> impl Iterator<Item = Record> {
        let Replay { leases, holder, probation } = self;
        drop(holder);
        let leases = leases.into_iter().filter(move |(_, l)| l.expires > now).map(|(c, l)| Record {
            kind: RecordKind::Bound,
            client: c,
            mac: l.mac,
            ip: l.ip,
            expires: l.expires,
            steer: l.steer,
        });
        let probations = probation.into_iter().filter(move |(_, p)| p.expires > now).map(|(ip, p)| Record {
            kind: RecordKind::Declined,
            client: p.client,
            mac: p.mac,
            ip,
            expires: p.expires,
            steer: p.steer,
        });
        leases.chain(probations)
    }

    /// Leases and probations still running at `now`, sorted by address, and how many had ended.
    #[cfg(test)]
    pub(super) fn finish(self, now: u32) -> (Vec<Recovered>, u64) {
        let all = self.leases.len() + self.probation.len();
        let mut out: Vec<Recovered> = self.into_live(now).map(|r| recovered(&r)).collect();
        out.sort_by_key(|r| (r.ip, r.state as u8));
        let ended = (all - out.len()) as u64;
        (out, ended)
    }

    pub(super) fn len(&self) -> (usize, usize) {
        (self.leases.len(), self.probation.len())
    }
}

/// A lease or probation record as the engines restore it.
pub(super) fn recovered(r: &Record) -> Recovered {
    Recovered {
        client: r.client,
        mac: r.mac,
        ip: Ipv4Addr::from(r.ip),
        expires: r.expires,
        steer: r.steer,
        state: if r.kind == RecordKind::Bound { LeaseState::Bound } else { LeaseState::Quarantined },
    }
}

/// One stretch of a file that held no good record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamageReport {
    pub file: std::path::PathBuf,
    /// Where the damage starts, and the bytes to the next good record (or the end).
    pub offset: u64,
    pub dropped_bytes: u64,
    pub reason: Damage,
    /// Synced data was damaged (not the torn tail of an interrupted write): leases may be lost.
    pub synced: bool,
}

/// What reading one file found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FileReport {
    pub(super) header: Header,
    pub(super) len: u64,
    /// Good records read (commit records excluded).
    pub(super) records: u64,
    /// Journals: where the last commit record ends (appending continues there).
    pub(super) committed_end: u64,
    /// Journals: good records after the last commit record, dropped (never acknowledged).
    pub(super) uncommitted: u64,
    pub(super) damage: Vec<DamageReport>,
}

/// Reads only the header of `path`: `Ok(None)` if the file does not exist or is empty.
pub(super) fn peek(path: &Path) -> io::Result<Option<(Header, u64)>> {
    let mut f = match files::open_read(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len();
    if len == 0 {
        return Ok(None);
    }
    let mut b = [0u8; HEADER_LEN];
    let n = format::fill(&mut f, &mut b)?;
    let h = Header::decode(&b[..n]).map_err(|why| io::Error::new(io::ErrorKind::InvalidData, why))?;
    Ok(Some((h, len)))
}

/// Reads the records of `path` (a file of `kind`) in order, handing each one that counts to
/// `each`: every good record of a snapshot; in a journal, the records of batches whose commit
/// record was written (later ones were never acknowledged: a write a crash cut short). `Ok(None)`
/// if the file does not exist or is empty; an error if it is not a lease file of that kind
/// (better to refuse to start than to hand out addresses that may be leased).
pub(super) fn read(path: &Path, kind: FileKind, mut each: impl FnMut(Record)) -> io::Result<Option<FileReport>> {
    let Some((header, len)) = peek(path)? else { return Ok(None) };
    if header.kind != kind {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("expected a {kind:?} file, found a {:?}", header.kind),
        ));
    }
    let mut r = BufReader::with_capacity(1 << 20, files::open_read(path)?);
    format::fill(&mut r, &mut [0u8; HEADER_LEN])?;
    let mut scan = Scanner::new(r, HEADER_LEN as u64, header.version, kind == FileKind::Journal);
    // Batches are only known whole at their commit record (version 1 journals have none).
    let batched = kind == FileKind::Journal && header.version >= 2;
    let mut batch: Vec<Record> = Vec::new();
    let mut rep =
        FileReport { header, len, records: 0, committed_end: HEADER_LEN as u64, uncommitted: 0, damage: Vec::new() };
    while let Some(item) = scan.next_item()? {
        match item {
            Item::Record(r) if r.kind == RecordKind::Commit => {
                batch.drain(..).for_each(&mut each);
                rep.committed_end = scan.offset();
            }
            Item::Record(r) => {
                rep.records += 1;
                if batched {
                    batch.push(r);
                } else {
                    each(r);
                    rep.committed_end = scan.offset();
                }
            }
            Item::Damaged { start, end, reason } => rep.damage.push(DamageReport {
                file: path.to_path_buf(),
                offset: start,
                dropped_bytes: end - start,
                reason,
                synced: false,
            }),
        }
    }
    rep.uncommitted = batch.len() as u64;
    // Damage before the last commit record (or anywhere in a snapshot) hit synced data.
    let synced_end = if kind == FileKind::Snapshot { u64::MAX } else { rep.committed_end };
    for d in &mut rep.damage {
        d.synced = d.offset < synced_end;
    }
    Ok(Some(rep))
}

/// Journal records to replay, in order.
#[derive(Debug, Default)]
pub(super) struct Journals {
    pub(super) records: Vec<Record>,
}

impl Journals {
    pub(super) fn push(&mut self, r: Record) {
        self.records.push(r);
    }
}

/// The live set of snapshot `snapshot` (if any) with `journals` replayed over it: each live
/// record goes to `emit`. Returns the snapshot's report and how many leases had ended by `now`.
///
/// Memory: the journals' records, the filter and the replayed state are all freed or
/// consumed before the replayed leases go out, since the engines they go to are nearly full
/// by then.
pub(super) fn merge(
    snapshot: &Path,
    mut journals: Journals,
    now: u32,
    mut emit: impl FnMut(Record),
) -> io::Result<(Option<FileReport>, u64)> {
    journals.records.shrink_to_fit();
    let touched = Filter::of(&journals.records);
    let mut delta = Replay::with_capacity(journals.records.len());
    let mut ended = 0u64;
    let report = read(snapshot, FileKind::Snapshot, |r| {
        if touched.may_touch(&r) {
            delta.apply(&r);
        } else if r.expires > now {
            emit(r);
        } else {
            ended += 1;
        }
    })?;
    drop(touched);
    for r in &journals.records {
        delta.apply(r);
    }
    drop(journals);
    let (leases, probations) = delta.len();
    let live = delta.into_live(now).fold(0u64, |n, r| {
        emit(r);
        n + 1
    });
    Ok((report, ended + (leases + probations) as u64 - live))
}
