//! Helpers for the integration tests in this package's `[[test]]` targets: network namespaces
//! joined by veth pairs, created by the test and removed when dropped (also when the test
//! fails), and the root/CI gate.
//!
//! Traffic stays inside the namespaces: no default route, addresses from 198.18.0.0/15.

use std::ffi::CString;
use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// Whether a test that needs root (namespaces, XDP) can run. Outside CI it is skipped with a
/// message when not root; in CI (`CI` set) a missing privilege fails the test instead.
pub fn root_or_skip(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: needs root, and CI runs as root");
    }
    eprintln!("SKIPPED {test}: needs root for network namespaces (runs for real in CI)");
    false
}

/// Runs a command, panicking with its output if it fails.
pub fn sh(args: &[&str]) -> Output {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// A network namespace, deleted (with its interfaces) on drop.
#[derive(Debug)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(name: String) -> Netns {
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        sh(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NAME ARGS...`
    pub fn ip(&self, args: &[&str]) -> Output {
        let mut all = vec!["ip", "-n", &self.name];
        all.extend_from_slice(args);
        sh(&all)
    }

    /// Runs a command inside the namespace; returns its output whether it succeeded or not.
    pub fn exec(&self, args: &[&str]) -> Output {
        Command::new("ip").args(["netns", "exec", &self.name]).args(args).output().expect("ip netns exec")
    }

    /// Runs `f` on a new thread whose network namespace is this one (sockets it opens and
    /// interfaces it names are this namespace's).
    pub fn spawn<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> std::thread::JoinHandle<R> {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            // SAFETY: a valid namespace fd; setns only changes this thread's network namespace.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

/// A server and a client namespace joined by one veth pair (`s0` in the server namespace,
/// `c0` in the client's), 198.18.0.1/24 and 198.18.0.2/24, no default route.
#[derive(Debug)]
pub struct Pair {
    pub server: Netns,
    pub client: Netns,
}

pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

impl Pair {
    /// `tag` names the test; the process id keeps parallel runs apart.
    pub fn new(tag: &str) -> Pair {
        static N: AtomicU32 = AtomicU32::new(0);
        let id = format!("xdt{}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed), tag);
        let server = Netns::new(format!("{id}-s"));
        let client = Netns::new(format!("{id}-c"));
        sh(&["ip", "link", "add", "s0", "netns", &server.name, "type", "veth", "peer", "c0", "netns", &client.name]);
        server.ip(&["addr", "add", "198.18.0.1/24", "dev", "s0"]);
        client.ip(&["addr", "add", "198.18.0.2/24", "dev", "c0"]);
        server.ip(&["link", "set", "s0", "up"]);
        client.ip(&["link", "set", "c0", "up"]);
        Pair { server, client }
    }
}

/// A UDP socket bound to `port` on `device`, broadcast allowed. Call inside a namespace thread.
pub fn udp_on(device: &str, port: u16) -> UdpSocket {
    let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)).expect("bind");
    s.set_broadcast(true).expect("SO_BROADCAST");
    let name = CString::new(device).expect("device name");
    // SAFETY: valid socket fd, and a NUL-terminated name of the given length.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            name.as_ptr().cast(),
            name.as_bytes_with_nul().len() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_BINDTODEVICE {device}: {}", std::io::Error::last_os_error());
    s
}
