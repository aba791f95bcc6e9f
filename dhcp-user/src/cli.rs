//! The `xdhcpd` command line: `serve` (from a configuration file, from flags alone in the manner
//! of dnsmasq, or a file with flags overriding it) and `check-config`. Parsing and merging only;
//! running the server is the binary's job.

use core::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use crate::config::{
    self, parse_pool, Backend, Cidr, Config, FileError, Loc, Pool, ServerConfig, ServerSettings, SourceMap, Subnet,
    COMMAND_LINE,
};
use crate::journal::Durability;
use dhcp_core::config::{DeclinePolicy, LimitKey, Limits};

/// xdhcpd: a DHCPv4 server.
#[derive(Debug, Parser)]
#[command(name = "xdhcpd", version, about)]
pub struct Cli {
    /// Log level: error, warn, info, debug or trace (default info; `XDHCPD_LOG` also takes
    /// per-module filters such as `info,dhcp_io=debug`).
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log_level: Option<log::LevelFilter>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve DHCP from a configuration file, from flags alone, or a file with flags overriding it.
    Serve(Box<ServeArgs>),
    /// Check a configuration file (syntax, values, overlaps, interfaces and server ids on this
    /// host) and exit.
    CheckConfig {
        /// Check everything but this host's interfaces and addresses (for a file checked on
        /// another machine than the one it is meant for).
        #[arg(long)]
        offline: bool,
        /// The TOML configuration file.
        file: PathBuf,
    },
    /// Look up leases in a running server, or free one (through its control API).
    Leases(Box<crate::control::commands::LeasesArgs>),
    /// A running server's counters (through its control API).
    Stats(crate::control::commands::ApiArgs),
    /// Have a running server re-read its configuration (through its control API).
    Reload(crate::control::commands::ApiArgs),
}

/// `xdhcpd serve`. Without `--config`, `--interface`, `--subnet`, `--pool` and `--server-id`
/// make a complete one-subnet configuration. With it, the global flags replace the file's values
/// and `--subnet` (with `--interface`, `--pool`, `--router`, `--dns`) adds a subnet, or replaces
/// the file's subnet of the same network and prefix as a whole (its options and reservations
/// included).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// TOML configuration file; the other flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Interface the subnet's clients are attached to.
    #[arg(long, value_name = "IF")]
    pub interface: Option<String>,
    /// The subnet to serve.
    #[arg(long, value_name = "CIDR")]
    pub subnet: Option<Cidr>,
    /// Dynamic pool of the subnet, inclusive; repeat for several.
    #[arg(long = "pool", value_name = "FIRST-LAST", value_parser = parse_pool)]
    pub pools: Vec<Pool>,
    /// Server identifier (option 54): an address of the interface.
    #[arg(long, value_name = "IP")]
    pub server_id: Option<Ipv4Addr>,
    /// Router (option 3); repeat or separate by commas for several.
    #[arg(long = "router", value_name = "IP", value_delimiter = ',')]
    pub routers: Vec<Ipv4Addr>,
    /// DNS servers (option 6).
    #[arg(long = "dns", value_name = "IP[,IP]", value_delimiter = ',')]
    pub dns: Vec<Ipv4Addr>,
    /// Default lease time in seconds.
    #[arg(long, value_name = "SECS")]
    pub lease_time: Option<u32>,
    /// Seconds an offer is held.
    #[arg(long, value_name = "SECS")]
    pub offer_timeout: Option<u32>,
    /// Lease journal; without it leases are kept in memory only.
    #[arg(long, value_name = "PATH")]
    pub lease_file: Option<PathBuf>,
    /// When a lease change counts as written: after fsync (default), or once handed to the OS.
    #[arg(long, value_enum)]
    pub durability: Option<Durability>,
    /// Packet path.
    #[arg(long, value_enum)]
    pub backend: Option<Backend>,
    /// Worker threads (default: number of CPUs).
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// XDP path: idle workers spin on their rings instead of sleeping (lowest latency).
    #[arg(long)]
    pub busy_poll: bool,
    /// Pin worker N to CPU N.
    #[arg(long)]
    pub pin_workers: bool,
    /// XDP path: answer renewals in the XDP program (on|off; default: `[server] kernel_renew`).
    #[arg(long, value_name = "on|off", value_parser = parse_on_off)]
    pub kernel_renew: Option<bool>,
    /// Start even if the lease file's synced data is damaged: the leases in the damaged bytes
    /// are lost (the log says which bytes, and they are copied aside first).
    #[arg(long)]
    pub accept_damaged_journal: bool,
    /// Once set up, run as this user, with no capabilities (see `[server] user`).
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// A relay agent (or range) whose relayed messages are served; repeat for several. Without
    /// any, every relay is trusted.
    #[arg(long = "trusted-relay", value_name = "IP[/LEN]", value_parser = config::parse_relay)]
    pub trusted_relays: Vec<Cidr>,
    /// What a DECLINE does: keep the address out of the pool for a while, or nothing.
    #[arg(long, value_enum)]
    pub decline: Option<DeclineFlag>,
    /// What limits count per subscriber (with --max-leases-per-key, --discover-rate-per-key).
    #[arg(long, value_enum)]
    pub limit_key: Option<LimitKeyFlag>,
    /// The most leases plus offers one subscriber key may hold.
    #[arg(long, value_name = "N")]
    pub max_leases_per_key: Option<u32>,
    /// DISCOVERs per second one subscriber key may send (token bucket).
    #[arg(long, value_name = "N")]
    pub discover_rate_per_key: Option<u32>,
    /// The bucket's size (default: twice the rate).
    #[arg(long, value_name = "N")]
    pub discover_burst_per_key: Option<u32>,
    /// Serve the control API (metrics, leases, reload) on ADDR:PORT (loopback unless a
    /// `[control] token_file` is set).
    #[arg(long, value_name = "ADDR:PORT")]
    pub control: Option<std::net::SocketAddr>,
    /// Cluster: the NATS servers (`nats://HOST:PORT`), comma separated (`[cluster] nats`).
    #[arg(long, value_name = "URL[,URL]", value_delimiter = ',')]
    pub cluster_nats: Vec<String>,
    /// Cluster: this node's name, one of the peers (`[cluster] node`).
    #[arg(long, value_name = "NAME")]
    pub cluster_node: Option<String>,
    /// Cluster: every node's name, in the same order on every node (`[cluster] peers`).
    #[arg(long, value_name = "NAME[,NAME]", value_delimiter = ',')]
    pub cluster_peers: Vec<String>,
}

/// `--decline`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DeclineFlag {
    Probation,
    Ignore,
}

/// `--limit-key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LimitKeyFlag {
    CircuitId,
    RemoteId,
    Relay,
    Vlan,
    Interface,
    Chaddr,
}

impl From<LimitKeyFlag> for LimitKey {
    fn from(k: LimitKeyFlag) -> LimitKey {
        match k {
            LimitKeyFlag::CircuitId => LimitKey::CircuitId,
            LimitKeyFlag::RemoteId => LimitKey::RemoteId,
            LimitKeyFlag::Relay => LimitKey::Relay,
            LimitKeyFlag::Vlan => LimitKey::Vlan,
            LimitKeyFlag::Interface => LimitKey::Interface,
            LimitKeyFlag::Chaddr => LimitKey::Chaddr,
        }
    }
}

/// An error about the flags themselves.
fn flag_error(reason: impl Into<String>) -> FileError {
    FileError { file: COMMAND_LINE.to_string(), line: 0, column: 0, reason: reason.into() }
}

fn pool_text(p: &Pool) -> String {
    if p.first == p.last {
        p.first.to_string()
    } else {
        format!("{}-{}", p.first, p.last)
    }
}

impl ServeArgs {
    /// The configuration these flags describe (with the `--config` file, if any), checked but
    /// not against the host (see [`ServeArgs::load_checked`]).
    pub fn load(&self) -> Result<ServerConfig, FileError> {
        self.load_with_map().map(|(cfg, _)| cfg)
    }

    /// [`ServeArgs::load`] and where each value came from, for [`config::check_host`].
    pub fn load_with_map(&self) -> Result<(ServerConfig, SourceMap), FileError> {
        let (mut cfg, mut map) = match &self.config {
            Some(path) => {
                let (mut cfg, map) = config::decode(&config::read(path)?, &path.display().to_string())?;
                cfg.server.confinement.config_file = Some(path.clone());
                (cfg, map)
            }
            None => {
                self.require_quick_start()?;
                let cfg = ServerConfig { engine: Config::default(), server: ServerSettings::default() };
                (cfg, SourceMap::command_line())
            }
        };
        self.apply(&mut cfg, &mut map)?;
        let cfg = config::finish(cfg, &map)?;
        Ok((cfg, map))
    }

    /// [`ServeArgs::load`], then [`config::check_host`]: what `serve` needs before it starts.
    pub fn load_checked(&self) -> Result<ServerConfig, FileError> {
        let (cfg, map) = self.load_with_map()?;
        config::check_host(&cfg, &map)?;
        Ok(cfg)
    }

    /// Without a file, the flags must describe a whole subnet.
    fn require_quick_start(&self) -> Result<(), FileError> {
        let missing: Vec<&str> = [
            ("--interface", self.interface.is_none()),
            ("--subnet", self.subnet.is_none()),
            ("--pool", self.pools.is_empty()),
            ("--server-id", self.server_id.is_none()),
        ]
        .into_iter()
        .filter_map(|(flag, missing)| missing.then_some(flag))
        .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(flag_error(format!("missing {} (needed without --config)", missing.join(", "))))
        }
    }

    /// Lays the flags over `cfg`, recording in `map` that those values came from the command line.
    fn apply(&self, cfg: &mut ServerConfig, map: &mut SourceMap) -> Result<(), FileError> {
        self.apply_globals(cfg, map)?;
        match self.subnet {
            Some(cidr) => self.apply_subnet(cidr, cfg, map),
            None => self.refuse_stray_subnet_flags(),
        }
    }

    /// The flags that replace the file's global values and server settings.
    fn apply_globals(&self, cfg: &mut ServerConfig, map: &mut SourceMap) -> Result<(), FileError> {
        if let Some(v) = self.server_id {
            cfg.engine.server_id = config::check_server_id(v).map_err(|e| flag_error(format!("--server-id: {e}")))?;
            map.set("server_id", Loc::Flag(format!("--server-id {v}")));
        }
        if let Some(v) = self.lease_time {
            cfg.engine.lease_time = v;
            map.set("lease_time", Loc::Flag(format!("--lease-time {v}")));
        }
        if let Some(v) = self.offer_timeout {
            cfg.engine.offer_timeout = v;
            map.set("offer_timeout", Loc::Flag(format!("--offer-timeout {v}")));
        }
        if let Some(p) = &self.lease_file {
            cfg.server.lease_file = Some(p.clone());
            map.set("server.lease_file", Loc::Flag(format!("--lease-file {}", p.display())));
        }
        if let Some(d) = self.durability {
            cfg.server.durability = d;
        }
        if let Some(b) = self.backend {
            cfg.server.backend = b;
        }
        if let Some(n) = self.workers {
            cfg.server.workers = n;
            map.set("server.workers", Loc::Flag(format!("--workers {n}")));
        }
        if self.busy_poll {
            cfg.server.busy_poll = true;
        }
        if self.pin_workers {
            cfg.server.pin_workers = true;
        }
        if let Some(on) = self.kernel_renew {
            cfg.server.kernel_renew = on;
        }
        cfg.server.accept_damaged_journal = self.accept_damaged_journal;
        if let Some(u) = &self.user {
            cfg.server.confinement.user = Some(u.clone());
        }
        if let Some(a) = self.control {
            cfg.server.control.listen = Some(a);
            map.set("control.listen", Loc::Flag(format!("--control {a}")));
        }
        self.apply_cluster(cfg, map);
        self.apply_safety(cfg, map)
    }

    /// `--cluster-*`: over the file's `[cluster]`, or a new one with its defaults.
    fn apply_cluster(&self, cfg: &mut ServerConfig, map: &mut SourceMap) {
        if self.cluster_nats.is_empty() && self.cluster_node.is_none() && self.cluster_peers.is_empty() {
            return;
        }
        let c = cfg.engine.cluster.get_or_insert_with(Default::default);
        if !map.has("cluster") {
            map.set("cluster", Loc::Flag("--cluster-*".into()));
        }
        let lists = [("nats", &self.cluster_nats, &mut c.nats), ("peers", &self.cluster_peers, &mut c.peers)];
        for (what, given, slot) in lists {
            if !given.is_empty() {
                map.forget(&format!("cluster.{what}"));
                map.set(format!("cluster.{what}"), Loc::Flag(format!("--cluster-{what} {}", given.join(","))));
                *slot = given.clone();
            }
        }
        if let Some(n) = &self.cluster_node {
            map.set("cluster.node", Loc::Flag(format!("--cluster-node {n}")));
            c.node = n.clone();
        }
    }

    /// Trusted relays, declines and limits.
    fn apply_safety(&self, cfg: &mut ServerConfig, map: &mut SourceMap) -> Result<(), FileError> {
        if !self.trusted_relays.is_empty() {
            cfg.engine.trusted_relays = self.trusted_relays.clone();
        }
        if let Some(d) = self.decline {
            cfg.engine.decline = match d {
                DeclineFlag::Probation => DeclinePolicy::Probation,
                DeclineFlag::Ignore => DeclinePolicy::Ignore,
            };
        }
        let any = self.max_leases_per_key.is_some() || self.discover_rate_per_key.is_some();
        match (self.limit_key, any) {
            (Some(key), true) => {
                cfg.engine.limits = Some(Limits {
                    key: key.into(),
                    max_leases: self.max_leases_per_key,
                    discover_rate: self.discover_rate_per_key,
                    discover_burst: self.discover_burst_per_key,
                });
                map.set("limits", Loc::Flag("--limit-key".into()));
                Ok(())
            }
            (None, true) => Err(flag_error("--max-leases-per-key and --discover-rate-per-key need --limit-key")),
            (Some(_), false) => Err(flag_error("--limit-key needs --max-leases-per-key or --discover-rate-per-key")),
            (None, false) => Ok(()),
        }
    }

    /// Without `--subnet`, the flags that describe a subnet have nothing to describe.
    fn refuse_stray_subnet_flags(&self) -> Result<(), FileError> {
        let stray = [
            ("--interface", self.interface.is_some()),
            ("--pool", !self.pools.is_empty()),
            ("--router", !self.routers.is_empty()),
            ("--dns", !self.dns.is_empty()),
        ];
        match stray.iter().find(|(_, given)| *given) {
            Some((flag, _)) => Err(flag_error(format!("{flag} needs --subnet (it describes the subnet)"))),
            None => Ok(()),
        }
    }

    /// `--subnet` and its flags: a new subnet, or the file's subnet of the same network replaced.
    fn apply_subnet(&self, cidr: Cidr, cfg: &mut ServerConfig, map: &mut SourceMap) -> Result<(), FileError> {
        if self.pools.is_empty() {
            return Err(flag_error(format!("--subnet {cidr} needs at least one --pool")));
        }
        let subnets = &mut cfg.engine.subnets;
        let i = subnets.iter().position(|f| f.network == cidr.network && f.prefix_len == cidr.prefix_len);
        let i = i.unwrap_or_else(|| {
            subnets.push(Subnet::new(cidr.network, cidr.prefix_len));
            subnets.len() - 1
        });
        let at = format!("subnets[{i}]");
        // A replaced subnet goes as a whole, with the places of its values.
        map.forget(&at);
        map.set(&at, Loc::Flag(format!("--subnet {cidr}")));
        let mut s = Subnet::new(cidr.network, cidr.prefix_len);
        if let Some(name) = &self.interface {
            let name = config::parse_ifname(name).map_err(|e| flag_error(format!("--interface: {e}")))?;
            let flag = Loc::Flag(format!("--interface {name}"));
            map.set(format!("{at}.interface"), flag.clone());
            // An explicit interface list in the file gains the flag's interface: the flag asks for
            // this subnet to be served there.
            let list = &mut cfg.server.interfaces;
            if map.has("server.interfaces") && !list.contains(&name) {
                map.set(format!("server.interfaces[{}]", list.len()), flag);
                list.push(name.clone());
            }
            s.interface = Some(name);
        }
        s.pools = self.pools.clone();
        for (j, p) in self.pools.iter().enumerate() {
            map.set(format!("{at}.pools[{j}]"), Loc::Flag(format!("--pool {}", pool_text(p))));
        }
        s.options.routers = self.routers.clone();
        s.options.dns_servers = self.dns.clone();
        cfg.engine.subnets[i] = s;
        Ok(())
    }
}

/// What `xdhcpd check-config FILE` runs: parse, validate, and check against this host.
pub fn check_config(path: &Path) -> Result<ServerConfig, FileError> {
    let (cfg, map) = config::load(path)?;
    config::check_host(&cfg, &map)?;
    Ok(cfg)
}

/// What `xdhcpd check-config --offline FILE` runs: parse and validate, without looking at this
/// host's interfaces and addresses.
pub fn check_config_offline(path: &Path) -> Result<ServerConfig, FileError> {
    config::load(path).map(|(cfg, _)| cfg)
}

/// `on` or `off`.
fn parse_on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("expected on or off, not {s:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/xdhcpd.toml");

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn serve(args: &[&str]) -> ServeArgs {
        let argv = ["xdhcpd", "serve"].iter().chain(args);
        match Cli::try_parse_from(argv) {
            Ok(Cli { command: Command::Serve(a), .. }) => *a,
            other => panic!("{other:?}"),
        }
    }

    /// A file in the temporary directory, removed when dropped.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(name: &str, text: &str) -> TempFile {
            let path = std::env::temp_dir().join(format!("xdhcpd-cli-{}-{name}.toml", std::process::id()));
            std::fs::write(&path, text).unwrap();
            TempFile(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["xdhcpd", "check-config", "/etc/xdhcpd.toml"]).unwrap();
        assert!(
            matches!(cli.command, Command::CheckConfig { file, offline: false } if file == Path::new("/etc/xdhcpd.toml"))
        );
        let cli = Cli::try_parse_from(["xdhcpd", "check-config", "--offline", "/etc/xdhcpd.toml"]).unwrap();
        assert!(matches!(cli.command, Command::CheckConfig { offline: true, .. }));
        // Values are checked by clap, with the flag named.
        let e = Cli::try_parse_from(["xdhcpd", "serve", "--subnet", "100.64.0.0"]).unwrap_err();
        assert!(e.to_string().contains("--subnet"), "{e}");
        assert!(Cli::try_parse_from(["xdhcpd", "serve", "--pool", "100.64.0.1-x"]).is_err());
        assert!(Cli::try_parse_from(["xdhcpd", "serve", "--backend", "dpdk"]).is_err());
    }

    #[test]
    fn quick_start_alone_makes_a_whole_config() {
        let a = serve(&[
            "--interface=eth0",
            "--subnet=100.64.0.0/24",
            "--pool=100.64.0.10-100.64.0.99",
            "--pool=100.64.0.120",
            "--server-id=100.64.0.1",
            "--router=100.64.0.1",
            "--dns=100.64.0.2,100.64.0.3",
            "--lease-time=600",
            "--offer-timeout=5",
            "--lease-file=/tmp/leases",
            "--backend=udp",
            "--workers=2",
        ]);
        let cfg = a.load().unwrap_or_else(|e| panic!("{e}"));
        let mut s = Subnet::new(ip("100.64.0.0"), 24);
        s.interface = Some("eth0".into());
        s.pools = vec![
            Pool { first: ip("100.64.0.10"), last: ip("100.64.0.99") },
            Pool { first: ip("100.64.0.120"), last: ip("100.64.0.120") },
        ];
        s.options.routers = vec![ip("100.64.0.1")];
        s.options.dns_servers = vec![ip("100.64.0.2"), ip("100.64.0.3")];
        let engine = Config {
            server_id: ip("100.64.0.1"),
            lease_time: 600,
            offer_timeout: 5,
            subnets: vec![s],
            ..Config::default()
        };
        let server = ServerSettings {
            interfaces: vec!["eth0".into()],
            workers: 2,
            backend: Backend::Udp,
            lease_file: Some("/tmp/leases".into()),
            durability: Durability::Fsync,
            compact_interval: 3600,
            compact_size: 64 << 20,
            accept_damaged_journal: false,
            busy_poll: false,
            pin_workers: false,
            confinement: Default::default(),
            control: Default::default(),
            kernel_renew: false,
        };
        assert_eq!(cfg, ServerConfig { engine, server });
    }

    #[test]
    fn missing_required_flags_without_a_file_are_named() {
        let e = serve(&["--interface", "eth0", "--server-id", "100.64.0.1"]).load().unwrap_err();
        assert_eq!(e.to_string(), "command line: missing --subnet, --pool (needed without --config)");
        let e = serve(&[]).load().unwrap_err();
        assert!(e.reason.contains("--interface, --subnet, --pool, --server-id"), "{e}");
    }

    #[test]
    fn flag_errors_name_the_flag() {
        let e = serve(&[
            "--interface=eth0",
            "--subnet=100.64.0.0/24",
            "--pool=100.64.1.10-100.64.1.20",
            "--server-id=100.64.0.1",
        ])
        .load()
        .unwrap_err();
        assert_eq!((e.file.as_str(), e.line), (COMMAND_LINE, 0));
        assert!(e.reason.starts_with("--pool 100.64.1.10-100.64.1.20: "), "{e}");
        assert!(e.reason.contains("outside subnet"), "{e}");

        let base = ["--interface=eth0", "--subnet=100.64.0.0/24", "--pool=100.64.0.10-100.64.0.20"];
        let e = serve(&[&base[..], &["--server-id=0.0.0.0"]].concat()).load().unwrap_err();
        assert!(e.reason.starts_with("--server-id: "), "{e}");
        let e = serve(&[&base[..], &["--server-id=100.64.0.1", "--workers=0"]].concat()).load().unwrap_err();
        assert_eq!(e.to_string(), "command line: --workers 0: workers must be 1 to 1024");
        let e = serve(&[&base[..], &["--server-id=100.64.0.1", "--lease-time=10"]].concat()).load().unwrap_err();
        assert!(e.reason.starts_with("--lease-time 10: "), "{e}");
    }

    #[test]
    fn quick_start_overrides_a_file() {
        // Globals replace the file's; --subnet replaces the file's subnet of the same network
        // (here the VLAN subnet on eth1) in place, and its interface joins server.interfaces.
        let a = serve(&[
            "--config",
            EXAMPLE,
            "--server-id=100.64.0.9",
            "--lease-time=1200",
            "--offer-timeout=3",
            "--lease-file=/tmp/other",
            "--backend=xdp",
            "--workers=3",
            "--subnet=100.64.1.0/24",
            "--interface=eth2",
            "--pool=100.64.1.20-100.64.1.30",
            "--dns=100.64.1.2",
        ]);
        let cfg = a.load().unwrap_or_else(|e| panic!("{e}"));
        let file = config::load(Path::new(EXAMPLE)).unwrap().0;
        let e = &cfg.engine;
        assert_eq!((e.server_id, e.lease_time, e.offer_timeout), (ip("100.64.0.9"), 1200, 3));
        assert_eq!(e.decline_probation, file.engine.decline_probation);
        assert_eq!(e.subnets.len(), 3);
        assert_eq!((&e.subnets[0], &e.subnets[2]), (&file.engine.subnets[0], &file.engine.subnets[2]));
        let mut s = Subnet::new(ip("100.64.1.0"), 24);
        s.interface = Some("eth2".into());
        s.pools = vec![Pool { first: ip("100.64.1.20"), last: ip("100.64.1.30") }];
        s.options.dns_servers = vec![ip("100.64.1.2")];
        assert_eq!(e.subnets[1], s);
        assert_eq!(
            cfg.server,
            ServerSettings {
                interfaces: vec!["eth0".into(), "eth1".into(), "eth2".into()],
                workers: 3,
                backend: Backend::Xdp,
                lease_file: Some("/tmp/other".into()),
                ..file.server
            }
        );

        // A new network is added after the file's subnets.
        let cfg =
            serve(&["--config", EXAMPLE, "--subnet=100.64.2.0/24", "--pool=100.64.2.5-100.64.2.6"]).load().unwrap();
        assert_eq!(cfg.engine.subnets.len(), 4);
        assert_eq!(cfg.engine.subnets[3].network, ip("100.64.2.0"));
        assert_eq!(cfg.engine.server_id, ip("100.64.0.1"));

        // Subnet flags need --subnet, even with a file.
        let e = serve(&["--config", EXAMPLE, "--pool=100.64.0.30"]).load().unwrap_err();
        assert_eq!(e.to_string(), "command line: --pool needs --subnet (it describes the subnet)");
    }

    #[test]
    fn a_flag_subnet_overlapping_the_file_points_at_both() {
        let e = serve(&["--config", EXAMPLE, "--subnet=100.64.0.0/23", "--pool=100.64.1.5"]).load().unwrap_err();
        assert_eq!(e.file, COMMAND_LINE, "{e}");
        assert!(e.reason.starts_with("--subnet 100.64.0.0/23: "), "{e}");
        // The subnet it overlaps is named with its place in the file.
        let line = std::fs::read_to_string(EXAMPLE).unwrap().lines().position(|l| l.contains("100.64.0.0/24")).unwrap();
        assert!(e.reason.contains(&format!("xdhcpd.toml:{}", line + 1)), "{e}");
    }

    #[test]
    fn file_errors_come_through_serve_and_check_config() {
        let bad =
            TempFile::new("bad", "server_id = \"100.64.0.1\"\n[[subnet]]\nsubnet = \"100.64.0.0/24\"\nlease = 5\n");
        let e = serve(&["--config", bad.0.to_str().unwrap()]).load().unwrap_err();
        assert_eq!((e.file.as_str(), e.line, e.column), (bad.0.to_str().unwrap(), 4, 1), "{e}");
        let e = check_config(&bad.0).unwrap_err();
        assert_eq!(e.line, 4, "{e}");

        let e = check_config(Path::new("/nonexistent/xdhcpd.toml")).unwrap_err();
        assert_eq!((e.line, e.file.as_str()), (0, "/nonexistent/xdhcpd.toml"));
        assert!(e.to_string().starts_with("/nonexistent/xdhcpd.toml: cannot read: "), "{e}");
    }

    #[test]
    fn check_config_looks_at_this_host() {
        // The loopback interface exists everywhere; an interface with this name does not.
        let lo = "server_id = \"127.0.0.1\"\n[[subnet]]\nsubnet = \"100.64.0.0/24\"\ninterface = \"lo\"\n\
                  pools = [\"100.64.0.10-100.64.0.20\"]\n";
        let ok = TempFile::new("lo", lo);
        let has_127 = config::host_ipv4_addrs().unwrap().contains(&("lo".to_string(), ip("127.0.0.1")));
        if has_127 {
            check_config(&ok.0).unwrap_or_else(|e| panic!("{e}"));
        }
        let missing = TempFile::new("missing", &lo.replace("\"lo\"", "\"xdhcpd-none0\""));
        let e = check_config(&missing.0).unwrap_err();
        assert_eq!((e.line, e.column), (4, 13), "{e}");
        assert!(e.reason.contains("does not exist on this host"), "{e}");
    }

    #[test]
    fn check_config_offline_skips_only_the_host() {
        // The example names eth0 and eth1 with addresses of 100.64.0.0/10, which a build machine
        // rarely has: offline, it passes anyway.
        check_config_offline(Path::new(EXAMPLE)).unwrap_or_else(|e| panic!("{e}"));
        let host = config::host_ipv4_addrs().unwrap();
        let serves_example = [("eth0", "100.64.0.1"), ("eth1", "100.64.1.1")]
            .iter()
            .all(|(n, a)| host.contains(&(n.to_string(), ip(a))));
        if !serves_example {
            assert!(check_config(Path::new(EXAMPLE)).is_err());
        }

        // An interface that exists nowhere: the plain check names it, the offline one passes.
        let text = "server_id = \"100.64.0.1\"\n[[subnet]]\nsubnet = \"100.64.0.0/24\"\n\
                    interface = \"xdhcpd-none0\"\npools = [\"100.64.0.10-100.64.0.20\"]\n";
        let missing = TempFile::new("offline", text);
        let e = check_config(&missing.0).unwrap_err();
        assert_eq!(e.reason, "interface xdhcpd-none0 does not exist on this host", "{e}");
        check_config_offline(&missing.0).unwrap_or_else(|e| panic!("{e}"));

        // Everything else is still checked.
        let bad = TempFile::new("offline-bad", &text.replace("/24", "/33"));
        let e = check_config_offline(&bad.0).unwrap_err();
        assert_eq!((e.line, e.column), (3, 10), "{e}");
    }

    #[test]
    fn cluster_flags_make_or_override_the_cluster_section() {
        let base =
            ["--interface=eth0", "--subnet=100.64.0.0/24", "--pool=100.64.0.10-100.64.0.20", "--server-id=100.64.0.1"];
        let cluster =
            ["--cluster-nats=nats://100.64.9.1:4222,nats://100.64.9.2:4222", "--cluster-node=b", "--cluster-peers=a,b"];
        let cfg = serve(&[&base[..], &cluster[..]].concat()).load().unwrap();
        let c = cfg.engine.cluster.expect("[cluster] from the flags");
        assert_eq!((c.nats.len(), c.node.as_str(), c.peers.len(), c.block_size), (2, "b", 2, 64));
        assert_eq!(serve(&base).load().unwrap().engine.cluster, None, "no flag, no cluster");

        let e = serve(&[&base[..], &cluster[..2], &["--cluster-peers=a,c"]].concat()).load().unwrap_err();
        assert!(e.reason.starts_with("--cluster-node b: ") && e.reason.contains("not in peers"), "{e}");
        let e = serve(&[&base[..], &["--cluster-node=a", "--cluster-peers=a"]].concat()).load().unwrap_err();
        assert!(e.reason.starts_with("--cluster-*: ") && e.reason.contains("NATS server"), "{e}");
        let e = serve(&[&base[..], &["--cluster-nats=localhost", "--cluster-node=a", "--cluster-peers=a"]].concat())
            .load()
            .unwrap_err();
        assert!(e.reason.starts_with("--cluster-nats localhost: "), "{e}");
    }
}
