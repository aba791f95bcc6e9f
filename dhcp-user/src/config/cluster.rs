//! The `[cluster]` table of the file: NATS servers, this node's name, the peers and the tuning
//! (see [`ClusterConfig`]). Like [`decode`](super::decode), this module only reads values and
//! records their places (the model's `validate` says what is wrong, at those places): it must
//! never look at the host, talk to NATS, nor print.

use toml::Spanned;

use super::schema::RawCluster;
use super::source::{Loc, SourceMap};
use dhcp_core::config::ClusterConfig;

/// A list of names, each place recorded at `at[i]`.
fn names(map: &mut SourceMap, at: &str, list: &[Spanned<String>]) -> Vec<String> {
    list.iter()
        .enumerate()
        .map(|(i, s)| {
            map.set(format!("{at}[{i}]"), Loc::of(s));
            s.get_ref().clone()
        })
        .collect()
}

/// `[cluster]` over the defaults; places under `cluster`.
pub(super) fn decode_cluster(map: &mut SourceMap, raw: &Spanned<RawCluster>) -> ClusterConfig {
    map.set("cluster", Loc::of(raw));
    let r = raw.get_ref();
    let mut c = ClusterConfig {
        nats: names(map, "cluster.nats", &r.nats),
        peers: names(map, "cluster.peers", &r.peers),
        ..ClusterConfig::default()
    };
    if let Some(n) = &r.node {
        map.set("cluster.node", Loc::of(n));
        c.node = n.get_ref().clone();
    }
    if let Some(b) = &r.bucket {
        map.set("cluster.bucket", Loc::of(b));
        c.bucket = b.get_ref().clone();
    }
    let numbers = [
        ("cluster.block_size", &r.block_size, &mut c.block_size),
        ("cluster.heartbeat_ms", &r.heartbeat_ms, &mut c.heartbeat_ms),
        ("cluster.dead_after_ms", &r.dead_after_ms, &mut c.dead_after_ms),
    ];
    for (at, v, slot) in numbers {
        if let Some(v) = v {
            map.set(at, Loc::of(v));
            *slot = *v.get_ref();
        }
    }
    if let Some(w) = &r.wait_secs {
        map.set("cluster.wait_secs", Loc::of(w));
        c.wait_secs = *w.get_ref();
    }
    c
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::super::testing::{fails, line_of, MINIMAL};

    const CLUSTER: &str = "[cluster]\n\
        nats = [\"nats://100.64.9.1:4222\", \"nats://100.64.9.2:4222\"]\n\
        node = \"b\"\n\
        peers = [\"a\", \"b\", \"c\"]\n\
        block_size = 128\n\
        heartbeat_ms = 250\n\
        dead_after_ms = 2000\n\
        wait_secs = 2\n\
        bucket = \"edge1\"\n";

    #[test]
    fn the_cluster_table_maps_every_key() {
        let (cfg, _) = parse(&format!("{MINIMAL}{CLUSTER}"), "t.toml").unwrap_or_else(|e| panic!("{e}"));
        let c = cfg.engine.cluster.expect("[cluster]");
        assert_eq!(c.nats, ["nats://100.64.9.1:4222", "nats://100.64.9.2:4222"]);
        assert_eq!((c.node.as_str(), c.peers.len(), c.node_index()), ("b", 3, 1));
        assert_eq!((c.block_size, c.heartbeat_ms, c.dead_after_ms, c.wait_secs), (128, 250, 2000, 2));
        assert_eq!(c.bucket, "edge1");
        let (alone, _) = parse(MINIMAL, "t.toml").unwrap();
        assert_eq!(alone.engine.cluster, None, "without [cluster], alone");
    }

    #[test]
    fn bad_cluster_values_point_at_their_line() {
        let text = format!("{MINIMAL}{}", CLUSTER.replace("node = \"b\"", "node = \"d\""));
        let e = fails(&text);
        assert_eq!(e.line, line_of(&text, "node = \"d\""), "{e}");
        assert!(e.reason.contains("not in peers"), "{e}");
        let text = format!("{MINIMAL}{}", CLUSTER.replace("\"nats://100.64.9.2:4222\"", "\"100.64.9.2\""));
        let e = fails(&text);
        assert_eq!(e.line, line_of(&text, "nats = "), "{e}");
        assert!(e.reason.contains("nats://HOST:PORT"), "{e}");
        let text = format!("{MINIMAL}{}", CLUSTER.replace("block_size = 128", "block_size = 8"));
        assert_eq!(fails(&text).line, line_of(&text, "block_size"));
        let text = format!("{MINIMAL}{}", CLUSTER.replace("dead_after_ms = 2000", "dead_after_ms = 400"));
        assert_eq!(fails(&text).line, line_of(&text, "dead_after_ms"));
        let text = format!("{MINIMAL}[cluster]\nnode = \"a\"\npeers = [\"a\"]\nnat = []\n");
        assert_eq!(fails(&text).line, line_of(&text, "nat = "), "unknown keys are refused");
        let text = format!("{MINIMAL}[cluster]\nnode = \"a\"\npeers = [\"a\"]\n");
        let e = fails(&text);
        assert!(e.line == line_of(&text, "[cluster]") && e.reason.contains("NATS server"), "{e}");
    }

    #[test]
    fn kernel_renewals_are_refused_in_a_cluster() {
        let text = format!("{MINIMAL}[server]\nkernel_renew = true\n{CLUSTER}");
        let e = fails(&text);
        assert!(e.reason.contains("kernel_renew"), "{e}");
    }
}
