//! renew: user space's handle on the XDP program's renewal maps (`dhcp_common::renew`): the
//! leases whose renewals the program answers, and the reply templates. Each worker holds its
//! own handle (a duplicate of the map descriptors), so no lock is shared.
//!
//! Must never: be used on the per-packet path of renewals the program answers (those never
//! reach user space); every call is one system call.

use anyhow::{Context, Result};
use aya::maps::{Array, HashMap, MapData};
use dhcp_common::renew::{Lease, LeaseKey, Template};
use std::os::fd::AsFd;

#[repr(transparent)]
#[derive(Clone, Copy)]
struct Key(LeaseKey);
#[repr(transparent)]
#[derive(Clone, Copy)]
struct Value(Lease);
#[repr(transparent)]
#[derive(Clone, Copy)]
struct Tmpl(Template);

// SAFETY: plain `repr(C)` structs of integers and byte arrays, without padding (the layouts
// in `dhcp_common::renew` are multiples of their alignment), valid for any bit pattern.
unsafe impl aya::Pod for Key {}
// SAFETY: as above.
unsafe impl aya::Pod for Value {}
// SAFETY: as above.
unsafe impl aya::Pod for Tmpl {}

/// The renewal maps of one loaded program.
pub struct RenewMaps {
    leases: HashMap<MapData, Key, Value>,
    templates: Array<MapData, Tmpl>,
}

impl std::fmt::Debug for RenewMaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RenewMaps").finish_non_exhaustive()
    }
}

fn dup(map: &MapData) -> Result<MapData> {
    let fd = map.fd().as_fd().try_clone_to_owned().context("duplicating a map descriptor")?;
    MapData::from_fd(fd).context("opening a duplicated map")
}

impl RenewMaps {
    pub(crate) fn open(ebpf: &aya::Ebpf) -> Result<RenewMaps> {
        let data = |name: &str| -> Result<MapData> {
            let map = ebpf.map(name).with_context(|| format!("XDP object has no {name} map"))?;
            let (aya::maps::Map::HashMap(m) | aya::maps::Map::Array(m)) = map else {
                anyhow::bail!("{name} has an unexpected map type")
            };
            dup(m)
        };
        Ok(RenewMaps {
            leases: HashMap::try_from(aya::maps::Map::HashMap(data("LEASES")?))?,
            templates: Array::try_from(aya::maps::Map::Array(data("TEMPLATES")?))?,
        })
    }

    /// Another handle on the same maps (for another worker).
    pub fn try_clone(&self) -> Result<RenewMaps> {
        let leases = HashMap::try_from(aya::maps::Map::HashMap(dup(self.leases_data())?))?;
        let templates = Array::try_from(aya::maps::Map::Array(dup(self.templates_data())?))?;
        Ok(RenewMaps { leases, templates })
    }

    fn leases_data(&self) -> &MapData {
        aya::maps::IterableMap::map(&self.leases)
    }

    fn templates_data(&self) -> &MapData {
        aya::maps::IterableMap::map(&self.templates)
    }

    pub fn set_template(&mut self, slot: u32, t: &Template) -> Result<()> {
        Ok(self.templates.set(slot, Tmpl(*t), 0)?)
    }

    pub fn insert(&mut self, key: &LeaseKey, lease: &Lease) -> Result<()> {
        Ok(self.leases.insert(Key(*key), Value(*lease), 0)?)
    }

    /// Removes a lease; `false` if it was not there.
    pub fn remove(&mut self, key: &LeaseKey) -> bool {
        self.leases.remove(&Key(*key)).is_ok()
    }

    pub fn get(&self, key: &LeaseKey) -> Option<Lease> {
        self.leases.get(&Key(*key), 0).ok().map(|v| v.0)
    }
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of `bpf_ktime_get_ns`.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
