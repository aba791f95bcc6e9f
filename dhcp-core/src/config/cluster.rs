//! The `[cluster]` part of the configuration model: the NATS servers, this node's name, the
//! list of every node, and the tuning of blocks, liveness and who answers (issue 13). Without
//! it the server runs alone, exactly as before. Must never: talk to NATS or read a clock.

use super::{err, Config, ConfigError};

/// Several servers sharing pools through NATS JetStream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// NATS servers (`nats://host:port`), at least one.
    pub nats: Vec<String>,
    /// This node's name; one of `peers`.
    pub node: String,
    /// Every node's name, in the same order on every node: it fixes which node is each
    /// client's primary (RFC 3074 hash buckets).
    pub peers: Vec<String>,
    /// Addresses per block (the last block of a pool may be shorter).
    pub block_size: u32,
    /// How often this node writes its heartbeat, in milliseconds.
    pub heartbeat_ms: u32,
    /// A node whose heartbeat is older than this is dead, in milliseconds.
    pub dead_after_ms: u32,
    /// A node that is not a client's primary answers it once the client's `secs` reaches this.
    pub wait_secs: u16,
    /// Name of the JetStream key-value bucket (and the prefix of the event stream).
    pub bucket: String,
}

/// Limits of [`ClusterConfig::block_size`].
pub const MIN_BLOCK_SIZE: u32 = 16;
pub const MAX_BLOCK_SIZE: u32 = 4096;
/// Most nodes in a cluster (the live bits are one 64-bit word).
pub const MAX_PEERS: usize = 64;

impl Default for ClusterConfig {
    fn default() -> ClusterConfig {
        ClusterConfig {
            nats: Vec::new(),
            node: String::new(),
            peers: Vec::new(),
            block_size: 64,
            heartbeat_ms: 500,
            dead_after_ms: 3000,
            wait_secs: 3,
            bucket: "xdhcpd".into(),
        }
    }
}

impl ClusterConfig {
    /// This node's position in `peers` (valid after [`ClusterConfig::validate`]).
    pub fn node_index(&self) -> usize {
        self.peers.iter().position(|p| *p == self.node).unwrap_or(0)
    }

    /// Checks the section; `at` is its path (`cluster`).
    pub fn validate(&self, at: &str) -> Result<(), ConfigError> {
        if self.nats.is_empty() {
            return Err(err(format!("{at}.nats"), "name at least one NATS server (nats://host:port)"));
        }
        for (i, url) in self.nats.iter().enumerate() {
            validate_url(url).map_err(|why| err(format!("{at}.nats[{i}]"), why))?;
        }
        self.validate_names(at)?;
        if !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&self.block_size) {
            let why = format!("{} is outside {MIN_BLOCK_SIZE}..={MAX_BLOCK_SIZE} addresses", self.block_size);
            return Err(err(format!("{at}.block_size"), why));
        }
        if !(10..=60_000).contains(&self.heartbeat_ms) {
            return Err(err(format!("{at}.heartbeat_ms"), format!("{} is outside 10..=60000 ms", self.heartbeat_ms)));
        }
        if self.dead_after_ms <= self.heartbeat_ms.saturating_mul(2) || self.dead_after_ms > 600_000 {
            let why = format!(
                "{} ms must be more than twice heartbeat_ms ({}) and at most 600000",
                self.dead_after_ms, self.heartbeat_ms
            );
            return Err(err(format!("{at}.dead_after_ms"), why));
        }
        if self.wait_secs > 60 {
            return Err(err(format!("{at}.wait_secs"), format!("{} is outside 0..=60 seconds", self.wait_secs)));
        }
        Ok(())
    }

    /// `node`, `peers` and `bucket`: names NATS subjects and keys can carry.
    fn validate_names(&self, at: &str) -> Result<(), ConfigError> {
        if self.peers.is_empty() || self.peers.len() > MAX_PEERS {
            return Err(err(
                format!("{at}.peers"),
                format!("list 1 to {MAX_PEERS} node names, this node's among them"),
            ));
        }
        for (i, p) in self.peers.iter().enumerate() {
            validate_name(p).map_err(|why| err(format!("{at}.peers[{i}]"), why))?;
            if self.peers[..i].contains(p) {
                return Err(err(format!("{at}.peers[{i}]"), format!("{p:?} is listed twice")));
            }
        }
        if !self.peers.contains(&self.node) {
            return Err(err(format!("{at}.node"), format!("{:?} is not in peers {:?}", self.node, self.peers)));
        }
        validate_name(&self.bucket).map_err(|why| err(format!("{at}.bucket"), why))
    }
}

/// A name usable in a NATS subject and key: 1-64 of `A-Z a-z 0-9 - _`.
fn validate_name(s: &str) -> Result<(), String> {
    let ok = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if s.is_empty() || s.len() > 64 || !s.chars().all(ok) {
        return Err(format!("{s:?}: use 1 to 64 letters, digits, '-' or '_' (it names NATS keys)"));
    }
    Ok(())
}

/// `nats://host:port` (or `tls://`), with a port.
fn validate_url(url: &str) -> Result<(), String> {
    let rest = url.strip_prefix("nats://").or_else(|| url.strip_prefix("tls://"));
    let port = rest.and_then(|r| r.rsplit_once(':')).filter(|(host, _)| !host.is_empty()).map(|(_, p)| p);
    match port.map(str::parse::<u16>) {
        Some(Ok(p)) if p != 0 => Ok(()),
        _ => Err(format!("{url:?} is not nats://HOST:PORT")),
    }
}

impl Config {
    /// The longest lease any subnet grants (L_max of the fence rule, `engine::cluster`).
    pub fn longest_lease(&self) -> u32 {
        self.subnets.iter().map(|s| s.lease_time.unwrap_or(self.lease_time)).max().unwrap_or(self.lease_time)
    }

    /// The `[cluster]` section, when present.
    pub(super) fn validate_cluster(&self) -> Result<(), ConfigError> {
        match &self.cluster {
            Some(c) => c.validate("cluster"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> ClusterConfig {
        ClusterConfig {
            nats: vec!["nats://100.64.9.1:4222".into()],
            node: "b".into(),
            peers: vec!["a".into(), "b".into(), "c".into()],
            ..ClusterConfig::default()
        }
    }

    fn refused(c: ClusterConfig) -> ConfigError {
        c.validate("cluster").expect_err("refused")
    }

    #[test]
    fn a_valid_section_passes_and_knows_its_node() {
        good().validate("cluster").unwrap();
        assert_eq!(good().node_index(), 1);
    }

    #[test]
    fn bad_sections_are_refused_with_location_and_reason() {
        assert_eq!(refused(ClusterConfig { nats: vec![], ..good() }).path, "cluster.nats");
        let e = refused(ClusterConfig { nats: vec!["nats://h:1".into(), "h:4222".into()], ..good() });
        assert_eq!(e.path, "cluster.nats[1]");
        assert!(e.reason.contains("nats://HOST:PORT"), "{e}");
        assert_eq!(refused(ClusterConfig { node: "d".into(), ..good() }).path, "cluster.node");
        let e = refused(ClusterConfig { peers: vec!["a".into(), "b".into(), "a".into()], ..good() });
        assert_eq!((e.path.as_str(), e.reason.contains("twice")), ("cluster.peers[2]", true));
        assert_eq!(refused(ClusterConfig { peers: vec!["b".into(), "x.y".into()], ..good() }).path, "cluster.peers[1]");
        assert_eq!(refused(ClusterConfig { block_size: 8, ..good() }).path, "cluster.block_size");
        assert_eq!(refused(ClusterConfig { block_size: 5000, ..good() }).path, "cluster.block_size");
        let e = refused(ClusterConfig { dead_after_ms: 1000, ..good() });
        assert!(e.path == "cluster.dead_after_ms" && e.reason.contains("twice"), "{e}");
        assert_eq!(refused(ClusterConfig { bucket: "a b".into(), ..good() }).path, "cluster.bucket");
        assert_eq!(refused(ClusterConfig { wait_secs: 61, ..good() }).path, "cluster.wait_secs");
    }
}
