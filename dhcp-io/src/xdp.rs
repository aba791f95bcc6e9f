//! xdp: the steering program on an interface. Loads `dhcp-ebpf` (built by this crate's build
//! script), attaches it through a bpf link owned by this process (so the kernel removes it when
//! the process exits, even on kill -9), fills its socket map and settings, reads its counters,
//! and forwards its aya-log records to the `log` facade.
//!
//! The AF_XDP sockets it steers to live in [`crate::xsk`]; until they are registered, DHCP
//! frames go on to the kernel (counted as `xdp-no-socket`).
//!
//! Must never: attach anywhere but the interface it is given, or outlive the process (the
//! link is the process's, not pinned).

use crate::xsk::XskSocket;
use anyhow::{bail, Context, Result};
use aya::maps::{Array, MapData, PerCpuArray, XskMap};
use aya::programs::{Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};
use dhcp_common::{config, counter, socket_slot};

/// The compiled program, embedded at build time.
static PROGRAM: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/dhcp-ebpf"));

/// Whether the embedded program was built with its renewal path (`dhcp-ebpf` feature
/// `kernel-renew`, on by default).
const KERNEL_RENEW_BUILT: bool = true;

/// Name of the program's entry point in the object.
const ENTRY: &str = "dhcp_steer";

/// The steering program, attached to one interface while this value lives.
pub struct Steering {
    ebpf: Ebpf,
    interface: String,
    /// The program's aya-log records, until [`Steering::forward_log`] takes them.
    log: Option<aya_log::EbpfLogger<Facade>>,
}

impl std::fmt::Debug for Steering {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Steering").field("interface", &self.interface).finish_non_exhaustive()
    }
}

/// Hands the XDP program's log records to whatever logger the process installed.
#[derive(Debug, Clone, Copy)]
pub struct Facade;

impl log::Log for Facade {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        log::logger().enabled(m)
    }

    fn log(&self, r: &log::Record<'_>) {
        log::logger().log(&log::Record::builder().args(format_args!("xdp: {}", r.args())).level(r.level()).build());
    }

    fn flush(&self) {}
}

/// Counters of the steering program, summed over CPUs, by `dhcp_common::counter` slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct XdpCounters(pub [u64; counter::COUNT as usize]);

impl XdpCounters {
    pub fn get(&self, slot: u32) -> u64 {
        self.0[slot as usize]
    }

    /// `(name, value)` pairs.
    pub fn named(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        counter::NAMES.iter().copied().zip(self.0.iter().copied())
    }
}

impl Steering {
    /// Loads the program and attaches it to `interface` (native mode when the driver supports
    /// it, else generic), steering UDP to `port` (67: a server's requests; 68: a generator's
    /// replies). Its log level is fixed at load from `log::max_level()`: records below it are
    /// never even written by the program.
    pub fn attach(interface: &str, port: u16) -> Result<Steering> {
        if PROGRAM.is_empty() {
            bail!("this build has no XDP program (built with AYA_BUILD_SKIP); run `cargo xtask setup` and rebuild");
        }
        // aya-log's levels number as the `log` crate's filters: off 0, error 1 .. trace 5.
        let level = log::max_level() as u8;
        let mut ebpf = EbpfLoader::new()
            .override_global(aya_log::LEVEL, &level, false)
            .load(PROGRAM)
            .context("loading the XDP object")?;
        let program: &mut Xdp = ebpf
            .program_mut(ENTRY)
            .context("XDP object has no dhcp_steer program")?
            .try_into()
            .context("dhcp_steer is not an XDP program")?;
        program.load().context("the kernel refused the XDP program (verifier or permissions)")?;
        program
            .attach(interface, XdpMode::Default)
            .with_context(|| format!("attaching the XDP program to {interface}"))?;
        // Without a reader the program's records are simply not read.
        let log = aya_log::EbpfLogger::init_with_logger(&mut ebpf, Facade).ok();
        let mut steering = Steering { ebpf, interface: interface.to_string(), log };
        steering.set(config::PORT, port as u32)?;
        Ok(steering)
    }

    /// Starts a small thread that hands the program's log records to the `log` facade. The
    /// program logs rarely (dropped frames), so the thread sleeps in poll.
    pub fn forward_log(&mut self) -> Result<()> {
        use std::os::fd::AsFd;
        let Some(mut log) = self.log.take() else { return Ok(()) };
        std::thread::Builder::new()
            .name("xdhcpd-xdplog".into())
            .spawn(move || loop {
                let mut pfd = [crate::sys::pollfd(log.as_fd(), false)];
                if crate::sys::poll(&mut pfd, std::time::Duration::from_secs(1)).is_err() {
                    return;
                }
                log.flush();
            })
            .context("starting the XDP log reader")?;
        Ok(())
    }

    pub fn interface(&self) -> &str {
        &self.interface
    }

    fn set(&mut self, slot: u32, value: u32) -> Result<()> {
        let map = self.ebpf.map_mut("CONFIG").context("XDP object has no CONFIG map")?;
        let mut cfg: Array<&mut MapData, u32> = Array::try_from(map)?;
        cfg.set(slot, value, 0)?;
        Ok(())
    }

    /// Keys the steering hash (`dhcp_common::steering_hash`): the same key the workers use.
    pub fn set_hash_key(&mut self, key: u32) -> Result<()> {
        self.set(config::HASH_KEY, key)
    }

    /// Steers only datagrams for this host: to the limited broadcast or to one of `addresses`
    /// (and passes the rest, DHCP in transit to other servers, to the kernel).
    pub fn only_for(&mut self, addresses: &[std::net::Ipv4Addr]) -> Result<()> {
        if addresses.len() > dhcp_common::MAX_ADDRESSES as usize {
            bail!("{} addresses on this host; the XDP program holds {}", addresses.len(), dhcp_common::MAX_ADDRESSES);
        }
        let map = self.ebpf.map_mut("ADDRESSES").context("XDP object has no ADDRESSES map")?;
        let mut map: aya::maps::HashMap<&mut MapData, u32, u8> = aya::maps::HashMap::try_from(map)?;
        for a in addresses {
            // The program compares the header's bytes as they are: network order.
            map.insert(u32::from_ne_bytes(a.octets()), 1, 0)?;
        }
        self.set(config::ONLY_OURS, 1)
    }

    /// Registers every owner's sockets (`sockets[owner]`, one per receive queue) in the slots
    /// the program picks them from, then starts steering to them. Until then DHCP goes to the
    /// kernel.
    pub fn register(&mut self, sockets: &[Vec<XskSocket>]) -> Result<()> {
        let per_queue = sockets.len() as u32;
        let map = self.ebpf.map_mut("SOCKETS").context("XDP object has no SOCKETS map")?;
        let mut map: XskMap<&mut MapData> = XskMap::try_from(map)?;
        for (owner, list) in sockets.iter().enumerate() {
            for s in list {
                let slot = socket_slot(s.queue(), per_queue, owner as u32);
                map.set(slot, s.fd(), 0).with_context(|| format!("registering socket slot {slot}"))?;
            }
        }
        self.set(config::SOCKETS_PER_QUEUE, per_queue)
    }

    /// Turns on renewals answered in the program (`dhcp_common::renew`), replies sent from
    /// `mac` (the interface's); returns a handle on the lease and template maps to fill.
    pub fn kernel_renew(&mut self, mac: [u8; 6]) -> Result<crate::renew::RenewMaps> {
        if !KERNEL_RENEW_BUILT {
            bail!("this build's XDP program does not answer renewals (dhcp-ebpf feature kernel-renew is off)");
        }
        let maps = crate::renew::RenewMaps::open(&self.ebpf)?;
        self.set(config::MAC_HI, u32::from_be_bytes([mac[0], mac[1], mac[2], mac[3]]))?;
        self.set(config::MAC_LO, u32::from_be_bytes([0, 0, mac[4], mac[5]]))?;
        self.set(config::KERNEL_RENEW, 1)?;
        Ok(maps)
    }

    /// Makes the program a benchmark's in-kernel reflector of renewals
    /// (`config::REFLECT_RENEWALS`); everything else is steered as before.
    pub fn reflect_renewals(&mut self) -> Result<()> {
        if !KERNEL_RENEW_BUILT {
            bail!("this build's XDP program has no XDP_TX path (dhcp-ebpf feature kernel-renew is off)");
        }
        self.set(config::REFLECT_RENEWALS, 1)
    }

    /// Current counters, summed over CPUs.
    pub fn counters(&self) -> Result<XdpCounters> {
        let map = self.ebpf.map("COUNTERS").context("XDP object has no COUNTERS map")?;
        let counters: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(map)?;
        let mut out = XdpCounters::default();
        for slot in 0..counter::COUNT {
            out.0[slot as usize] = counters.get(&slot, 0)?.iter().sum();
        }
        Ok(out)
    }
}
