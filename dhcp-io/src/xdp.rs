//! xdp: the steering program on an interface. Loads `dhcp-ebpf` (built by this crate's build
//! script), attaches it through a bpf link owned by this process (so the kernel removes it when
//! the process exits, even on kill -9), configures it and reads its counters.
//!
//! The AF_XDP sockets it steers to live in the `xsk` module; until they are registered, DHCP
//! frames go on to the kernel (counted as `xdp-no-socket`).

use anyhow::{bail, Context, Result};
use aya::maps::{Array, MapData, PerCpuArray, XskMap};
use aya::programs::{Xdp, XdpMode};
use aya::Ebpf;
use dhcp_common::{config, counter};

/// The compiled program, embedded at build time.
static PROGRAM: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/dhcp-ebpf"));

/// Name of the program's entry point in the object.
const ENTRY: &str = "dhcp_steer";

/// The steering program, attached to one interface while this value lives.
pub struct Steering {
    ebpf: Ebpf,
    interface: String,
    /// The program's aya-log records, until taken by [`Steering::take_log`].
    log: Option<aya_log::EbpfLogger<Stderr>>,
}

impl std::fmt::Debug for Steering {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Steering").field("interface", &self.interface).finish_non_exhaustive()
    }
}

/// Prints the XDP program's log records on stderr, like the rest of xdhcpd's log. Which
/// levels show is `log::max_level()`, set from `XDHCPD_LOG` (error, warn, info, debug, trace).
#[derive(Debug, Clone, Copy)]
pub struct Stderr;

impl log::Log for Stderr {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            eprintln!("xdhcpd: xdp {}: {}", r.level().as_str().to_lowercase(), r.args());
        }
    }

    fn flush(&self) {}
}

/// Sets the level of the XDP program's log from `XDHCPD_LOG` (default: warn).
pub fn set_log_level_from_env() {
    let level = std::env::var("XDHCPD_LOG").ok().and_then(|v| v.parse().ok()).unwrap_or(log::LevelFilter::Warn);
    log::set_max_level(level);
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
    /// it, else generic), with `sockets_per_queue` worker sockets expected per receive queue.
    pub fn attach(interface: &str, sockets_per_queue: u32) -> Result<Steering> {
        if PROGRAM.is_empty() {
            bail!("this build has no XDP program (built with AYA_BUILD_SKIP); run `cargo xtask setup` and rebuild");
        }
        let mut ebpf = Ebpf::load(PROGRAM).context("loading the XDP object")?;
        let program: &mut Xdp = ebpf
            .program_mut(ENTRY)
            .context("XDP object has no dhcp_steer program")?
            .try_into()
            .context("dhcp_steer is not an XDP program")?;
        program.load().context("the kernel refused the XDP program (verifier or permissions)")?;
        program
            .attach(interface, XdpMode::Default)
            .with_context(|| format!("attaching the XDP program to {interface}"))?;
        // aya-log: the program's `debug!` records; without a reader they are simply not read.
        let log = aya_log::EbpfLogger::init_with_logger(&mut ebpf, Stderr).ok();
        let mut steering = Steering { ebpf, interface: interface.to_string(), log };
        steering.set_sockets_per_queue(sockets_per_queue)?;
        Ok(steering)
    }

    /// Takes the reader of the program's log records: poll its fd and call `flush` to print.
    pub fn take_log(&mut self) -> Option<aya_log::EbpfLogger<Stderr>> {
        self.log.take()
    }

    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// How many worker sockets each receive queue has (0: DHCP goes to the kernel).
    pub fn set_sockets_per_queue(&mut self, n: u32) -> Result<()> {
        let map = self.ebpf.map_mut("CONFIG").context("XDP object has no CONFIG map")?;
        let mut cfg: Array<&mut MapData, u32> = Array::try_from(map)?;
        cfg.set(config::SOCKETS_PER_QUEUE, n, 0)?;
        Ok(())
    }

    /// Puts a worker's AF_XDP socket in slot `slot` (see `dhcp_common::socket_slot`).
    pub fn register_socket(&mut self, slot: u32, fd: std::os::fd::RawFd) -> Result<()> {
        let map = self.ebpf.map_mut("SOCKETS").context("XDP object has no SOCKETS map")?;
        let mut sockets: XskMap<&mut MapData> = XskMap::try_from(map)?;
        // SAFETY: the fd belongs to a live AF_XDP socket owned by the caller for as long as the
        // program is attached; the map only borrows it.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        sockets.set(slot, fd, 0).with_context(|| format!("registering socket slot {slot}"))?;
        Ok(())
    }

    /// Steers UDP to `port` instead of 67 (a load generator takes its clients' replies, 68).
    pub fn set_port(&mut self, port: u16) -> Result<()> {
        let map = self.ebpf.map_mut("CONFIG").context("XDP object has no CONFIG map")?;
        let mut cfg: Array<&mut MapData, u32> = Array::try_from(map)?;
        cfg.set(config::PORT, port as u32, 0)?;
        Ok(())
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
