//! A NATS JetStream cluster for the cluster tests (issue 13): N `nats-server` processes, each in
//! a network namespace of its own, all joined by one bridge (a hub namespace holding `br0`), with
//! routes between them and their stores in a scratch directory. Tests stop, start, kill and cut
//! off single nodes, and attach namespaces of their own (xdhcpd nodes, in-process clients) to the
//! same bridge. [`start_nodes`] starts xdhcpd nodes on it, for the cluster tests and the
//! `cluster` benchmark part alike.
//!
//! Everything goes on drop, also when the test fails: the processes (before their namespaces),
//! the namespaces with their interfaces, the JetStream stores (the logs stay beside them after a
//! failure, for reading). Addresses from 100.64.0.0/10, no default route.

use crate::{eventually, sh, start_xdhcpd, Netns, Process, Scratch};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// The client port of every NATS node, on its own address.
pub const CLIENT_PORT: u16 = 4222;
const ROUTE_PORT: u16 = 6222;
const MONITOR_PORT: u16 = 8222;

/// One segment: a bridge `br0` in a namespace of its own; each attached namespace gets a veth
/// whose other end is a port of the bridge.
#[derive(Debug)]
pub struct Bridge {
    pub hub: Netns,
    /// (namespace, bridge port) of every attachment, to cut and heal.
    ports: Mutex<Vec<(String, String)>>,
}

impl Bridge {
    /// `tag` names the test; the process id and a counter keep parallel runs apart.
    pub fn new(tag: &str) -> Bridge {
        static N: AtomicU32 = AtomicU32::new(0);
        let hub = Netns::new(format!("xdt{}-{}-{tag}-hub", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
        hub.ip(&["link", "add", "br0", "type", "bridge"]);
        hub.ip(&["link", "set", "br0", "up"]);
        Bridge { hub, ports: Mutex::new(Vec::new()) }
    }

    /// Joins `ns` to the segment through its interface `dev` with address `cidr` (no default
    /// route: only the segment is reachable).
    pub fn attach(&self, ns: &Netns, dev: &str, cidr: &str) {
        let mut ports = self.ports.lock().expect("ports");
        let port = format!("p{}", ports.len());
        sh(&["ip", "link", "add", dev, "netns", &ns.name, "type", "veth", "peer", &port, "netns", &self.hub.name]);
        self.hub.ip(&["link", "set", &port, "master", "br0"]);
        self.hub.ip(&["link", "set", &port, "up"]);
        ns.ip(&["addr", "add", cidr, "dev", dev]);
        ns.ip(&["link", "set", dev, "up"]);
        ports.push((ns.name.clone(), port));
    }

    fn port_of(&self, ns: &Netns) -> String {
        let ports = self.ports.lock().expect("ports");
        ports.iter().find(|(n, _)| *n == ns.name).map(|(_, p)| p.clone()).expect("namespace is attached")
    }

    /// Cuts `ns` off the segment silently: its bridge port leaves the bridge, so what it sends
    /// is lost and nothing reaches it, while its own link stays up (a partition, not a reset).
    pub fn cut(&self, ns: &Netns) {
        self.hub.ip(&["link", "set", &self.port_of(ns), "nomaster"]);
    }

    /// Undoes [`Bridge::cut`].
    pub fn heal(&self, ns: &Netns) {
        self.hub.ip(&["link", "set", &self.port_of(ns), "master", "br0"]);
    }
}

/// One NATS server of the cluster. Field order matters: the process stops before its
/// namespace goes.
#[derive(Debug)]
pub struct NatsNode {
    pub process: Option<Process>,
    pub ns: Netns,
    pub addr: Ipv4Addr,
    conf: PathBuf,
    log: PathBuf,
    store: PathBuf,
    starts: u32,
}

impl NatsNode {
    /// The node's client URL.
    pub fn url(&self) -> String {
        format!("nats://{}:{CLIENT_PORT}", self.addr)
    }

    /// Whether the node answers its health check (JetStream included) with 200.
    fn healthy(&self) -> bool {
        let addr = SocketAddrV4::new(self.addr, MONITOR_PORT);
        self.ns
            .spawn(move || {
                let Ok(mut s) = TcpStream::connect_timeout(&addr.into(), Duration::from_secs(1)) else {
                    return false;
                };
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                if s.write_all(b"GET /healthz HTTP/1.0\r\n\r\n").is_err() {
                    return false;
                }
                let mut reply = String::new();
                let _ = s.read_to_string(&mut reply);
                reply.starts_with("HTTP/1.0 200") || reply.starts_with("HTTP/1.1 200")
            })
            .join()
            .unwrap_or(false)
    }
}

/// N NATS servers forming one JetStream cluster on one bridge. Drop order: nodes (processes,
/// then namespaces), then the bridge, then the scratch directory.
#[derive(Debug)]
pub struct NatsCluster {
    pub nodes: Vec<NatsNode>,
    pub bridge: Bridge,
    pub dir: Scratch,
    attached: AtomicU32,
}

/// Address of NATS node `i` on the segment (100.64.0.0/16).
pub fn nats_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(100, 64, 0, 10 + i as u8)
}

impl NatsCluster {
    /// Starts `n` NATS servers (`nats-server` on PATH or in /usr/sbin) and waits until every
    /// one reports JetStream healthy (a meta leader elected).
    pub fn start(tag: &str, n: usize) -> NatsCluster {
        let bridge = Bridge::new(tag);
        let dir = Scratch::new(&format!("{tag}-nats"));
        let mut nodes = Vec::new();
        for i in 0..n {
            let ns = Netns::new(format!("{}-n{i}", bridge.hub.name.trim_end_matches("-hub")));
            let addr = nats_addr(i);
            bridge.attach(&ns, "e0", &format!("{addr}/16"));
            let store = dir.path(&format!("n{i}-store"));
            let conf = dir.path(&format!("n{i}.conf"));
            std::fs::write(&conf, config(i, n, &store)).expect("nats config");
            let log = dir.path(&format!("n{i}.log"));
            nodes.push(NatsNode { process: None, ns, addr, conf, log, store, starts: 0 });
        }
        let mut cluster = NatsCluster { nodes, bridge, dir, attached: AtomicU32::new(0) };
        for i in 0..n {
            cluster.start_node(i);
        }
        cluster.wait_healthy();
        cluster
    }

    /// Every node's client URL.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(NatsNode::url).collect()
    }

    /// Starts node `i` again (its store kept) after a stop or kill; returns without waiting.
    pub fn start_node(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        assert!(node.process.is_none(), "NATS node {i} is running");
        // A log per start, so a restart does not overwrite what the first run said.
        let log = node.log.with_extension(format!("{}.log", node.starts));
        node.starts += 1;
        let conf = node.conf.display().to_string();
        node.process = Some(Process::start(&node.ns, &format!("nats{i}"), &[&nats_server(), "-c", &conf], &log));
    }

    /// Stops node `i` cleanly (SIGTERM).
    pub fn stop_node(&mut self, i: usize) {
        if let Some(mut p) = self.nodes[i].process.take() {
            p.stop();
        }
    }

    /// Kills node `i` (SIGKILL), as a crash.
    pub fn kill_node(&mut self, i: usize) {
        if let Some(mut p) = self.nodes[i].process.take() {
            p.signal(libc::SIGKILL);
            let _ = p.child.wait();
        }
    }

    /// Waits until every running node is healthy (JetStream current); panics after 60 s with
    /// the logs' tails.
    pub fn wait_healthy(&self) {
        let ok = eventually(Duration::from_secs(60), || {
            self.nodes.iter().filter(|n| n.process.is_some()).all(NatsNode::healthy).then_some(())
        });
        if ok.is_none() {
            panic!("NATS cluster not healthy after 60 s:\n{}", self.logs());
        }
    }

    /// The tail of every node's logs, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            for s in 0..n.starts {
                let path = n.log.with_extension(format!("{s}.log"));
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                out += &format!("--- {}\n", path.display());
                for l in tail.iter().rev() {
                    out += l;
                    out.push('\n');
                }
            }
        }
        out
    }

    /// A new namespace on the segment (address 100.64.1.N/16 on `e0`) for a client of the
    /// cluster: an xdhcpd node, or a thread of the test that runs a cluster client.
    pub fn attach_client(&self, name: &str) -> (Netns, Ipv4Addr) {
        let k = self.attached.fetch_add(1, Ordering::Relaxed);
        let ns = Netns::new(format!("{}-{name}", self.bridge.hub.name.trim_end_matches("-hub")));
        let addr = Ipv4Addr::new(100, 64, 1, 1 + k as u8);
        self.bridge.attach(&ns, "e0", &format!("{addr}/16"));
        (ns, addr)
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut p) = n.process.take() {
                p.signal(libc::SIGKILL);
                let _ = p.child.wait();
            }
            // The stores can be large; the logs stay when the test failed (see Scratch).
            let _ = std::fs::remove_dir_all(&n.store);
        }
    }
}

/// The nats-server binary: PATH first, then Debian's place for it.
fn nats_server() -> String {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("nats-server"))
        .find(|p| p.exists());
    on_path.unwrap_or_else(|| PathBuf::from("/usr/sbin/nats-server")).display().to_string()
}

/// The configuration of node `i` of `n`: JetStream with small limits, routes to every other
/// node (none for a single node).
fn config(i: usize, n: usize, store: &std::path::Path) -> String {
    let addr = nats_addr(i);
    let mut c = format!(
        "server_name: n{i}\nlisten: \"{addr}:{CLIENT_PORT}\"\nhttp: \"{addr}:{MONITOR_PORT}\"\n\
         jetstream {{\n  store_dir: \"{}\"\n  max_memory_store: 64MB\n  max_file_store: 512MB\n}}\n",
        store.display()
    );
    if n > 1 {
        let routes: Vec<String> =
            (0..n).filter(|&j| j != i).map(|j| format!("    \"nats-route://{}:{ROUTE_PORT}\"", nats_addr(j))).collect();
        c += &format!(
            "cluster {{\n  name: xdt\n  listen: \"{addr}:{ROUTE_PORT}\"\n  routes: [\n{}\n  ]\n}}\n",
            routes.join("\n")
        );
    }
    c
}

/// Waits on real processes: generous, never an assertion about speed.
const NODE_WAIT: Duration = Duration::from_secs(90);
/// The xdhcpd nodes' names, and their peer list.
pub const NODES: [&str; 3] = ["x0", "x1", "x2"];

/// A running xdhcpd node. Field order matters: the process stops before its namespace goes.
#[derive(Debug)]
pub struct Node {
    pub process: Option<Process>,
    pub ns: Netns,
    /// Its server id.
    pub id: String,
    pub log: PathBuf,
}

impl Node {
    /// Waits until the node's log says `what`.
    pub fn log_says(&self, what: &str) -> bool {
        eventually(NODE_WAIT, || std::fs::read_to_string(&self.log).ok()?.contains(what).then_some(())).is_some()
    }
}

/// Every node's log, for failure messages.
pub fn node_logs(nodes: &[Node]) -> String {
    nodes.iter().map(|s| std::fs::read_to_string(&s.log).unwrap_or_default()).collect::<Vec<_>>().join("\n---\n")
}

/// Arguments for `xdhcpd serve` on `dev` with one worker on the UDP path, without a cluster:
/// what every node of [`start_nodes`] runs, and a lone node to compare with.
pub fn node_args(dev: &str, subnet: &str, pool: &str, id: &str) -> Vec<String> {
    let args = ["--interface", dev, "--subnet", subnet, "--pool", pool, "--server-id", id, "--workers", "1"];
    let more = ["--backend", "udp", "--lease-time", "600", "--control", "127.0.0.1:9767"];
    args.iter().chain(&more).map(|a| a.to_string()).collect()
}

/// The pool the nodes share on the NATS segment (100.64.0.0/16).
pub const SEGMENT_POOL: (&str, &str) = ("100.64.0.0/16", "100.64.2.0-100.64.5.255");

/// Starts the xdhcpd binary `bin` as the three nodes, each in a namespace on the NATS bridge.
/// Without `dhcp` they serve that same segment (`e0`, [`SEGMENT_POOL`]); with it, the segment
/// of that bridge (`d0`, 198.18.0.0/22), so that a node can be cut off from NATS and still
/// serve. Returns once every node holds its blocks.
pub fn start_nodes(nats: &NatsCluster, dir: &Scratch, bin: &str, dhcp: Option<&Bridge>) -> Vec<Node> {
    let urls = nats.urls().join(",");
    let mut nodes = Vec::new();
    for (i, name) in NODES.iter().enumerate() {
        let (ns, addr) = nats.attach_client(name);
        let (dev, (subnet, pool), id) = match dhcp {
            None => ("e0", SEGMENT_POOL, addr.to_string()),
            Some(b) => {
                let id = format!("198.18.0.{}", i + 1);
                b.attach(&ns, "d0", &format!("{id}/22"));
                ("d0", ("198.18.0.0/22", "198.18.1.0-198.18.3.254"), id)
            }
        };
        let mut args = node_args(dev, subnet, pool, &id);
        let peers = NODES.join(",");
        args.extend(["--cluster-nats", &urls, "--cluster-node", name, "--cluster-peers", &peers].map(String::from));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let log = dir.path(&format!("{name}.log"));
        let p = start_xdhcpd(&ns, bin, &args, &log);
        nodes.push(Node { process: Some(p), ns, id, log });
    }
    // Each node claims two blocks ahead of need before clients come.
    for s in &nodes {
        let two = eventually(NODE_WAIT, || {
            (std::fs::read_to_string(&s.log).ok()?.matches("granted").count() >= 2).then_some(())
        });
        assert!(two.is_some(), "node {} got its blocks: {}", s.id, node_logs(&nodes));
    }
    nodes
}
