//! Helpers for the integration tests beside this file (targets of the dhcp-user package): network namespaces
//! joined by veth pairs, created by the test and removed when dropped (also when the test
//! fails), and the root/CI gate.
//!
//! Traffic stays inside the namespaces: no default route, addresses from 198.18.0.0/15.

pub mod nats;
pub mod restart;

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

/// A binary of another package of the workspace, built by the same `cargo test --workspace`
/// run into the same target directory as the running test (`target/PROFILE/NAME`).
pub fn workspace_binary(name: &str) -> String {
    let exe = std::env::current_exe().expect("path of the test executable");
    // The test runs from target/PROFILE/deps/.
    let dir = exe.parent().and_then(|d| d.parent()).expect("target directory");
    let path = dir.join(name);
    assert!(path.exists(), "{} is not built: run `cargo xtask test` (or `cargo test --workspace`)", path.display());
    path.to_string_lossy().into_owned()
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
        // `ip netns exec` bind-mounts /etc/netns/NAME/* over /etc/*: DHCP clients run there
        // may rewrite resolv.conf, and must only ever touch the namespace's own copy.
        let etc = format!("/etc/netns/{name}");
        std::fs::create_dir_all(&etc).expect("/etc/netns dir");
        std::fs::write(format!("{etc}/resolv.conf"), "# test namespace: no DNS\n").expect("resolv.conf");
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
        let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", self.name));
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
    // SAFETY: plain socket creation, checked below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: takes ownership of a fresh fd.
    let s = unsafe { <UdpSocket as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    // SO_REUSEADDR: several test clients in one namespace may each listen on port 68; every
    // one of them gets a copy of each broadcast reply and keeps the ones for its own xid.
    // SAFETY: valid option value of the given size.
    unsafe {
        libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, (&one as *const libc::c_int).cast(), 4);
    }
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr { s_addr: 0 },
        sin_zero: [0; 8],
    };
    // SAFETY: valid sockaddr_in of the given size.
    let rc = unsafe {
        libc::bind(
            fd,
            (&addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "bind port {port}: {}", std::io::Error::last_os_error());
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

/// A process started inside a namespace, stopped on drop (SIGTERM, then SIGKILL after 3 s) so a
/// failing test leaves nothing running.
#[derive(Debug)]
pub struct Process {
    pub child: std::process::Child,
    pub name: String,
}

impl Process {
    /// Starts `args` inside `ns` with stdout and stderr going to `log`.
    pub fn start(ns: &Netns, name: &str, args: &[&str], log: &std::path::Path) -> Process {
        let out = std::fs::File::create(log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name])
            .args(args)
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {args:?}: {e}"));
        Process { child, name: name.to_string() }
    }

    /// Sends a signal (libc::SIGTERM, SIGKILL, SIGUSR1...).
    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
    }

    /// Stops with SIGTERM and waits (SIGKILL after 3 s); returns the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait_for(std::time::Duration::from_secs(3)).unwrap_or_else(|| {
            self.signal(libc::SIGKILL);
            self.child.wait().expect("wait")
        })
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_for(&mut self, limit: std::time::Duration) -> Option<std::process::ExitStatus> {
        let end = std::time::Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return Some(s);
            }
            if std::time::Instant::now() > end {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.stop();
        }
    }
}

/// Polls `check` every 50 ms until it returns `Some` or `limit` passes (waiting on real
/// processes; never an assertion about speed).
pub fn eventually<T>(limit: std::time::Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let end = std::time::Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if std::time::Instant::now() > end {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A scratch directory for one test, removed on drop.
#[derive(Debug)]
pub struct Scratch(pub std::path::PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        static N: AtomicU32 = AtomicU32::new(0);
        let p =
            std::env::temp_dir().join(format!("xdt{}-{}-{tag}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("scratch dir");
        Scratch(p)
    }

    pub fn path(&self, name: &str) -> std::path::PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A DHCP client speaking through a UDP socket on port 68 of `device` (call inside the client
/// namespace thread). Messages ask for broadcast replies, so no address is needed to hear them.
#[derive(Debug)]
pub struct RawClient {
    pub sock: UdpSocket,
}

impl RawClient {
    pub fn new(device: &str) -> RawClient {
        let sock = udp_on(device, 68);
        sock.set_read_timeout(Some(std::time::Duration::from_millis(100))).expect("timeout");
        RawClient { sock }
    }

    /// Broadcasts `msg` to port 67 and waits up to `limit` for a reply with the same xid and
    /// `chaddr`; returns its bytes.
    pub fn exchange(&self, msg: &[u8], limit: std::time::Duration) -> Option<Vec<u8>> {
        self.sock.send_to(msg, (Ipv4Addr::BROADCAST, 67)).expect("send");
        let end = std::time::Instant::now() + limit;
        let mut buf = [0u8; 1500];
        while std::time::Instant::now() < end {
            if let Ok((n, _)) = self.sock.recv_from(&mut buf) {
                let r = &buf[..n];
                if n >= 240 && r[0] == 2 && r[4..8] == msg[4..8] && r[28..34] == msg[28..34] {
                    return Some(r.to_vec());
                }
            }
        }
        None
    }
}

/// Captures every frame on an interface of a namespace until stopped (an `AF_PACKET` socket,
/// like tcpdump), to check what actually went over the wire.
#[derive(Debug)]
pub struct Capture {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<Vec<Vec<u8>>>>,
}

impl Capture {
    pub fn start(ns: &Netns, device: &str) -> Capture {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let flag = stop.clone();
        let device = device.to_string();
        let handle = ns.spawn(move || {
            let proto = (libc::ETH_P_ALL as u16).to_be() as libc::c_int;
            // SAFETY: plain socket creation, checked below.
            let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, proto) };
            assert!(fd >= 0, "AF_PACKET socket: {}", std::io::Error::last_os_error());
            // SAFETY: takes ownership of a fresh fd.
            let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
            let name = CString::new(device.as_str()).unwrap();
            // SAFETY: a zeroed sockaddr_ll is valid; fields set before bind.
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = proto as u16;
            // SAFETY: NUL-terminated name.
            sll.sll_ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) } as i32;
            // SAFETY: valid address of the given size.
            let rc = unsafe {
                libc::bind(
                    sock.as_raw_fd(),
                    (&sll as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                )
            };
            assert_eq!(rc, 0, "bind capture: {}", std::io::Error::last_os_error());
            let tv = libc::timeval { tv_sec: 0, tv_usec: 100_000 };
            // SAFETY: valid timeval.
            unsafe {
                libc::setsockopt(
                    sock.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    (&tv as *const libc::timeval).cast(),
                    std::mem::size_of::<libc::timeval>() as libc::socklen_t,
                )
            };
            // The kernel strips the outer VLAN tag before packet sockets see a frame and passes it
            // aside (PACKET_AUXDATA); put it back in-band, as libpcap does.
            let one: libc::c_int = 1;
            // SAFETY: valid option value of the given size.
            unsafe {
                libc::setsockopt(
                    sock.as_raw_fd(),
                    libc::SOL_PACKET,
                    libc::PACKET_AUXDATA,
                    (&one as *const libc::c_int).cast(),
                    4,
                )
            };
            ready_tx.send(()).unwrap();
            let mut frames = Vec::new();
            let mut buf = [0u8; 2048];
            let mut control = [0u64; 32];
            while !flag.load(Ordering::Relaxed) {
                let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
                // SAFETY: a zeroed msghdr is valid; its pointers are set to live buffers below.
                let mut mh: libc::msghdr = unsafe { std::mem::zeroed() };
                mh.msg_iov = &mut iov;
                mh.msg_iovlen = 1;
                mh.msg_control = control.as_mut_ptr().cast();
                mh.msg_controllen = std::mem::size_of_val(&control);
                // SAFETY: every pointer in `mh` refers to a buffer that outlives the call.
                let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut mh, 0) };
                if n <= 0 {
                    continue;
                }
                let mut frame = buf[..n as usize].to_vec();
                // SAFETY: walking the control messages the kernel wrote into `control`.
                let mut cm = unsafe { libc::CMSG_FIRSTHDR(&mh) };
                while !cm.is_null() {
                    // SAFETY: `cm` points at a control message header inside `control`.
                    let h = unsafe { &*cm };
                    if h.cmsg_level == libc::SOL_PACKET && h.cmsg_type == libc::PACKET_AUXDATA {
                        // SAFETY: PACKET_AUXDATA carries a tpacket_auxdata.
                        let aux: libc::tpacket_auxdata =
                            unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(cm).cast()) };
                        if aux.tp_status & libc::TP_STATUS_VLAN_VALID != 0 && frame.len() >= 12 {
                            let tpid = if aux.tp_status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                                aux.tp_vlan_tpid
                            } else {
                                0x8100
                            };
                            let tag = [tpid.to_be_bytes(), aux.tp_vlan_tci.to_be_bytes()].concat();
                            frame.splice(12..12, tag);
                        }
                    }
                    // SAFETY: advancing within the control buffer described by `mh`.
                    cm = unsafe { libc::CMSG_NXTHDR(&mh, cm) };
                }
                frames.push(frame);
            }
            frames
        });
        ready_rx.recv().expect("capture started");
        Capture { stop, handle: Some(handle) }
    }

    /// Stops and returns the frames seen.
    pub fn finish(mut self) -> Vec<Vec<u8>> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().expect("running").join().expect("capture thread")
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Counts from perfdhcp's report: (sent, received, drops) per exchange and non-unique
/// addresses.
#[derive(Debug, Default)]
pub struct PerfReport {
    /// (exchange name, sent, received, drops).
    pub exchanges: Vec<(String, u64, u64, u64)>,
    pub non_unique: Option<u64>,
    /// Average delay per exchange in milliseconds, in report order.
    pub avg_delay_ms: Vec<f64>,
}

pub fn parse_perfdhcp(out: &str) -> PerfReport {
    let mut r = PerfReport::default();
    let num = |line: &str| line.rsplit(':').next().and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok());
    let mut current: Option<(String, u64, u64, u64)> = None;
    for line in out.lines() {
        let l = line.trim();
        if let Some(name) = l.strip_prefix("***Statistics for:") {
            if let Some(c) = current.take() {
                r.exchanges.push(c);
            }
            current = Some((name.trim_end_matches('*').trim().to_string(), 0, 0, 0));
        } else if let Some(c) = current.as_mut() {
            if l.starts_with("sent packets:") {
                c.1 = num(l).unwrap_or(0);
            } else if l.starts_with("received packets:") {
                c.2 = num(l).unwrap_or(0);
            } else if l.starts_with("drops:") {
                c.3 = num(l).unwrap_or(0);
            } else if let Some(v) = l.strip_prefix("avg delay:") {
                let ms = v.split_whitespace().next().and_then(|x| x.parse::<f64>().ok());
                r.avg_delay_ms.push(ms.unwrap_or(f64::NAN));
            }
        }
        if l.starts_with("non unique addresses:") {
            r.non_unique = num(l);
        }
    }
    if let Some(c) = current {
        r.exchanges.push(c);
    }
    r
}

/// Sends one raw Ethernet frame out of `device` (call inside the namespace thread).
pub fn send_frame(device: &str, frame: &[u8]) {
    // SAFETY: plain socket creation, checked below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    assert!(fd >= 0, "AF_PACKET socket: {}", std::io::Error::last_os_error());
    // SAFETY: takes ownership of a fresh fd.
    let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let name = CString::new(device).unwrap();
    // SAFETY: a zeroed sockaddr_ll is valid; fields set before use.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    // SAFETY: NUL-terminated name.
    sll.sll_ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) } as i32;
    sll.sll_halen = 6;
    sll.sll_addr[..6].copy_from_slice(&frame[..6]);
    // SAFETY: frame and address valid for the call.
    let rc = unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, frame.len() as isize, "sendto: {}", std::io::Error::last_os_error());
}

/// Starts the xdhcpd binary `bin` in `ns` with `args` after `serve`, logging to `log`, and
/// waits until it serves (its log says so: on the XDP path no socket listens on port 67).
pub fn start_xdhcpd(ns: &Netns, bin: &str, args: &[&str], log: &std::path::Path) -> Process {
    let mut all = vec![bin, "serve"];
    all.extend_from_slice(args);
    let p = Process::start(ns, "xdhcpd", &all, log);
    let up = eventually(std::time::Duration::from_secs(20), || {
        std::fs::read_to_string(log).ok()?.contains("xdhcpd: serving").then_some(())
    });
    assert!(up.is_some(), "xdhcpd did not start: {}", std::fs::read_to_string(log).unwrap_or_default());
    p
}

/// Declares each test twice, in modules `udp` and `xdp`: `name => case;` becomes
/// `udp::name` calling `case("udp")` and `xdp::name` calling `case("xdp")`. Every test of the
/// server runs on both of its paths.
#[macro_export]
macro_rules! on_both_paths {
    ($($name:ident => $case:ident;)*) => {
        mod udp {
            $(#[test] fn $name() { super::$case("udp") })*
        }
        mod xdp {
            $(#[test] fn $name() { super::$case("xdp") })*
        }
    };
}

/// Arguments for `xdhcpd serve`: the one-subnet quick start on `s0` (198.18.0.0/24, server id
/// 198.18.0.1, two workers) with `pool`, on `backend`.
pub fn quick_args(pool: &str, backend: &str) -> Vec<String> {
    serve_args("198.18.0.0/24", pool, 2, backend)
}

/// Arguments for `xdhcpd serve` on `s0`: `subnet` (server id 198.18.0.1) with `pool`,
/// `workers`, on `backend`.
pub fn serve_args(subnet: &str, pool: &str, workers: u32, backend: &str) -> Vec<String> {
    let workers = workers.to_string();
    [
        "--interface",
        "s0",
        "--subnet",
        subnet,
        "--pool",
        pool,
        "--server-id",
        "198.18.0.1",
        "--workers",
        &workers,
        "--backend",
        backend,
    ]
    .map(String::from)
    .to_vec()
}

/// Writes an executable client hook script `name` in `dir`: `log` is a shell line whose output
/// is appended to the events file (`NAME.events`), `rest` the rest of the script. Returns
/// (script, events).
pub fn hook_script(dir: &Scratch, name: &str, log: &str, rest: &str) -> (String, String) {
    let events = dir.path(&format!("{name}.events")).display().to_string();
    let script = dir.path(name);
    std::fs::write(&script, format!("#!/bin/sh\n{log} >> {events}\n{rest}")).unwrap();
    sh(&["chmod", "+x", &script.display().to_string()]);
    (script.display().to_string(), events)
}
