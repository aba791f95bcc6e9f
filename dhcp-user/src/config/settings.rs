//! The server's own settings (the `[server]` table and its flags), beside the engine's model:
//! what they mean, their defaults and limits, and the checks that need the whole configuration
//! (the interface list). This module must never read files or look at the host.

use std::path::PathBuf;

use serde::Deserialize;

use super::source::{FileError, Loc, SourceMap};
use super::Config;
use crate::journal::Durability;

/// Everything `xdhcpd serve` needs: the engine's model and the server's own settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    pub engine: Config,
    pub server: ServerSettings,
}

/// Settings of the server process rather than of the DHCP engine (the `[server]` table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    /// Interfaces to listen on. Default: the interfaces named by subnets, in order of first use.
    pub interfaces: Vec<String>,
    /// Worker threads. Default: the number of CPUs.
    pub workers: usize,
    pub backend: Backend,
    /// Where the lease journal lives; `None` keeps leases in memory only (lost on restart).
    pub lease_file: Option<PathBuf>,
    pub durability: Durability,
    /// Seconds between rewrites of the lease journal into a compact snapshot.
    pub compact_interval: u32,
    /// Also compact when the journal grows beyond this many bytes.
    pub compact_size: u64,
    /// Start even if the lease file's synced data is damaged (those leases are lost; the log
    /// says which bytes). Command line only: a decision for one start, not a setting.
    pub accept_damaged_journal: bool,
    /// XDP path: workers spin on their rings instead of sleeping in poll() when idle (lowest
    /// latency, one busy core per worker).
    pub busy_poll: bool,
    /// Pin worker N to CPU N (modulo the CPU count).
    pub pin_workers: bool,
    /// The user to run as once set up, and the files kept in reach (see [`crate::privilege`]).
    pub confinement: crate::privilege::Confinement,
    /// The control API (`[control]`, `--control`): off unless given.
    pub control: crate::control::ControlSettings,
    /// XDP path: renewals of leases the workers put in the program's map are answered in the
    /// XDP program with XDP_TX (`kernel_renew`, issue 12). Off by default.
    pub kernel_renew: bool,
}

/// How packets reach the workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Plain UDP sockets.
    Udp,
    /// XDP steering program and AF_XDP sockets.
    Xdp,
    /// XDP where the interface and kernel allow it, else UDP.
    #[default]
    Auto,
}

/// At most this many workers: a typo like `workers = 40000` should not start 40000 threads.
const MAX_WORKERS: usize = 1024;

impl Default for ServerSettings {
    fn default() -> ServerSettings {
        ServerSettings {
            interfaces: Vec::new(),
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            backend: Backend::Auto,
            lease_file: None,
            durability: Durability::Fsync,
            compact_interval: 3_600,
            compact_size: 64 << 20,
            accept_damaged_journal: false,
            busy_poll: false,
            pin_workers: false,
            confinement: Default::default(),
            control: Default::default(),
            kernel_renew: false,
        }
    }
}

/// Checks the server settings against their limits and the engine's subnets, and fills in the
/// interface list when the configuration does not give one.
pub(super) fn finish(cfg: &mut ServerConfig, map: &SourceMap) -> Result<(), FileError> {
    let st = &cfg.server;
    if st.workers == 0 || st.workers > MAX_WORKERS {
        return Err(map.error_at("server.workers", format!("workers must be 1 to {MAX_WORKERS}")));
    }
    if st.compact_interval == 0 {
        return Err(map.error_at("server.compact_interval", "compact_interval must be at least 1 second"));
    }
    if st.lease_file.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
        return Err(map.error_at("server.lease_file", "lease_file is empty (leave it out to keep leases in memory)"));
    }
    if st.kernel_renew && cfg.engine.cluster.is_some() {
        let why = "kernel_renew cannot be on in a cluster: renewals answered in the XDP program would pass the \
                   cluster's grant limit (see [cluster])";
        return Err(map.error_at("server.kernel_renew", why));
    }
    let c = &st.control;
    if c.listen.is_some_and(|a| !a.ip().is_loopback()) && c.token_file.is_none() {
        let why = "listening beyond loopback needs a bearer token: set [control] token_file";
        return Err(map.error_at("control.listen", why));
    }
    if map.has("server.interfaces") {
        check_interface_list(cfg, map)?;
    } else {
        let mut list: Vec<String> = Vec::new();
        for (_, name) in subnet_interfaces(&cfg.engine) {
            if !list.contains(name) {
                list.push(name.clone());
            }
        }
        cfg.server.interfaces = list;
    }
    if cfg.server.interfaces.is_empty() {
        return Err(map.error(&Loc::Unknown, "no interface to serve: set server.interfaces or a subnet's interface"));
    }
    Ok(())
}

/// The interfaces subnets name, with the subnet's index.
fn subnet_interfaces(engine: &Config) -> impl Iterator<Item = (usize, &String)> {
    engine.subnets.iter().enumerate().filter_map(|(i, s)| Some((i, s.interface.as_ref()?)))
}

/// A given interface list names each interface once, and every subnet's interface.
fn check_interface_list(cfg: &ServerConfig, map: &SourceMap) -> Result<(), FileError> {
    let list = &cfg.server.interfaces;
    for (i, name) in list.iter().enumerate() {
        if list[..i].contains(name) {
            return Err(map.error_at(&format!("server.interfaces[{i}]"), format!("interface {name} is listed twice")));
        }
    }
    for (i, name) in subnet_interfaces(&cfg.engine) {
        if !list.contains(name) {
            let at = format!("subnets[{i}].interface");
            return Err(map.error_at(&at, format!("interface {name} is not in server.interfaces")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing::{fails, MINIMAL};

    #[test]
    fn server_settings_are_checked() {
        // MINIMAL after a [server] table: its top-level key first, then its subnet.
        let (top, subnet) = MINIMAL.split_once('\n').unwrap();
        let e = fails(&format!("{top}\n[server]\nworkers = 0\n{subnet}"));
        assert_eq!(e.line, 3, "{e}");
        let e = fails(&format!("{top}\n[server]\ninterfaces = [\"eth1\"]\n{subnet}"));
        assert_eq!(e.line, 6, "{e}");
        assert_eq!(e.reason, "interface eth0 is not in server.interfaces");
        let e = fails(&format!("{top}\n[server]\ninterfaces = [\"eth0\", \"eth0\"]\n{subnet}"));
        assert_eq!((e.line, e.column), (3, 23), "{e}");
        let e = fails(&MINIMAL.replace("interface = \"eth0\"\n", ""));
        assert!(e.reason.contains("no interface to serve"), "{e}");
        let e = fails(&format!("{top}\n[control]\nlisten = \"198.18.0.1:9767\"\n{subnet}"));
        assert_eq!((e.line, e.reason.contains("token_file")), (3, true), "{e}");
        let e = fails(&format!("{top}\n[control]\nlisten = \"localhost\"\n{subnet}"));
        assert_eq!((e.line, e.column), (3, 10), "{e}");
    }
}
