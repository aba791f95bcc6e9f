//! Replaying records into the set of live leases and probations, and reading lease files.
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

use super::format::{self, Damage, FileKind, Header, Record, RecordKind, HEADER_LEN};
use super::Recovered;
use crate::lease::{ClientKey, LeaseState};
use core::net::Ipv4Addr;
use hashbrown::HashMap;
use std::fs::File;
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
        }
    }

    fn end_lease(&mut self, client: &ClientKey, ip: u32) {
        if self.leases.get(client).is_some_and(|l| l.ip == ip) {
            self.leases.remove(client);
            self.holder.remove(&ip);
        }
    }

    /// The state as records that rebuild it (what a snapshot holds), skipping entries that
    /// ended at or before `now`.
    pub(super) fn live(&self, now: u32) -> impl Iterator<Item = Record> + '_ {
        let leases = self.leases.iter().filter(move |(_, l)| l.expires > now).map(|(c, l)| Record {
            kind: RecordKind::Bound,
            client: *c,
            mac: l.mac,
            ip: l.ip,
            expires: l.expires,
            steer: l.steer,
        });
        let probations = self.probation.iter().filter(move |(_, p)| p.expires > now).map(|(ip, p)| Record {
            kind: RecordKind::Declined,
            client: p.client,
            mac: p.mac,
            ip: *ip,
            expires: p.expires,
            steer: p.steer,
        });
        leases.chain(probations)
    }

    /// Leases and probations still running at `now`, sorted by address, and how many had ended.
    pub(super) fn finish(&self, now: u32) -> (Vec<Recovered>, u64) {
        let mut out: Vec<Recovered> = self
            .live(now)
            .map(|r| Recovered {
                client: r.client,
                mac: r.mac,
                ip: Ipv4Addr::from(r.ip),
                expires: r.expires,
                steer: r.steer,
                state: if r.kind == RecordKind::Bound { LeaseState::Bound } else { LeaseState::Quarantined },
            })
            .collect();
        out.sort_by_key(|r| (r.ip, r.state as u8));
        let ended = (self.leases.len() + self.probation.len() - out.len()) as u64;
        (out, ended)
    }

    pub(super) fn len(&self) -> (usize, usize) {
        (self.leases.len(), self.probation.len())
    }
}

/// What reading one file found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Loaded {
    pub(super) header: Header,
    pub(super) len: u64,
    pub(super) scan: format::Scan,
}

/// Reads only the header of `path`: `Ok(None)` if the file does not exist or is empty.
pub(super) fn peek(path: &Path) -> io::Result<Option<(Header, u64)>> {
    let mut f = match File::open(path) {
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

/// Replays the records of `path` (which must be of `kind`) into `state`. `Ok(None)` if the
/// file does not exist or is empty; an error if it is not a lease file of that kind (better to
/// refuse to start than to hand out addresses that may be leased).
pub(super) fn load(path: &Path, kind: FileKind, state: &mut Replay) -> io::Result<Option<Loaded>> {
    let Some((header, len)) = peek(path)? else { return Ok(None) };
    if header.kind != kind {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("expected a {kind:?} file, found a {:?}", header.kind),
        ));
    }
    let f = File::open(path)?;
    let mut r = BufReader::with_capacity(1 << 20, f);
    let mut skip = [0u8; HEADER_LEN];
    format::fill(&mut r, &mut skip)?;
    let scan = format::scan(r, HEADER_LEN as u64, len, header.version, |rec| state.apply(&rec))?;
    Ok(Some(Loaded { header, len, scan }))
}

/// One place reading stopped early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamageReport {
    pub file: std::path::PathBuf,
    /// Offset of the first record not read.
    pub offset: u64,
    /// Bytes from there to the end of the file, dropped.
    pub dropped_bytes: u64,
    pub reason: Damage,
}
