//! Least privilege and running as a service, on the real server in namespaces: after setup it
//! runs as `--user` with no capabilities (not even in its bounding set) and no_new_privs, read
//! from /proc/PID/status, and still serves and records leases; without `--user` it keeps root's
//! uid but no capability; lease files are 0600 and a symlink planted under a lease file's name
//! is refused; it tells a notify socket READY=1, WATCHDOG=1 and STOPPING=1; the service unit
//! passes `systemd-analyze verify`; `check-config --offline` passes the example on a host
//! without its interfaces.

use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use xdhcpd_tests::{eventually, on_both_paths, quick_args, root_or_skip, Netns, Pair, Process, Scratch};

const WAIT: Duration = Duration::from_secs(20);
const NOBODY: u32 = 65534;

on_both_paths! {
    runs_as_the_user_without_capabilities_serves_and_notifies => confined_case;
    the_service_units_capabilities_suffice_for_setup => unit_caps_case;
}

const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../dist/xdhcpd.service");

fn xdhcpd() -> String {
    env!("CARGO_BIN_EXE_xdhcpd").to_string()
}

/// The fields of /proc/PID/status.
fn status(pid: u32) -> HashMap<String, String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.split_whitespace().collect::<Vec<_>>().join(" ")))
        .collect()
}

/// Starts the server in `ns` like [`start_xdhcpd`], with the environment a service manager gives.
fn start_notified(ns: &Netns, args: &[&str], env: &[(&str, &str)], log: &Path) -> Process {
    let out = std::fs::File::create(log).unwrap();
    let child = Command::new("ip")
        .args(["netns", "exec", &ns.name, &xdhcpd(), "serve"])
        .args(args)
        .envs(env.iter().copied())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let p = Process { child, name: "xdhcpd".into() };
    let up = eventually(WAIT, || std::fs::read_to_string(log).ok()?.contains("serving s0").then_some(()));
    assert!(up.is_some(), "xdhcpd did not start: {}", std::fs::read_to_string(log).unwrap_or_default());
    p
}

fn next(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).expect("a notification");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// The lease directory's files: each private to `uid`.
fn assert_private(dir: &Path, uid: u32) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let m = e.as_ref().unwrap().metadata().unwrap();
        if m.is_file() {
            let name = e.unwrap().file_name();
            assert_eq!(m.permissions().mode() & 0o777, 0o600, "{name:?}");
            assert_eq!(m.uid(), uid, "{name:?}");
            n += 1;
        }
    }
    n
}

/// A DORA by udhcpc (-n -q: get a lease, then quit); its address.
fn udhcpc_lease(pair: &Pair, dir: &Scratch) -> String {
    let script = dir.path("udhcpc.sh");
    std::fs::write(&script, "#!/bin/sh\n[ \"$1\" = bound ] && echo \"bound ip=$ip\"\nexit 0\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let s = script.display().to_string();
    let out = pair.client.exec(&["udhcpc", "-n", "-q", "-i", "c0", "-t", "5", "-T", "1", "-s", &s]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "udhcpc: {text}{}", String::from_utf8_lossy(&out.stderr));
    text.lines().find_map(|l| l.strip_prefix("bound ip=")).expect("bound").to_string()
}

fn confined_case(backend: &str) {
    if !root_or_skip(&format!("runs_as_the_user_without_capabilities ({backend})")) {
        return;
    }
    let pair = Pair::new("priv");
    let dir = Scratch::new("priv");
    // Missing: the server creates it for its user.
    let leases = dir.path("state").join("leases");
    let sock_path = dir.path("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let mut args = quick_args("198.18.0.100-198.18.0.110", backend);
    args.extend(["--user", "nobody", "--lease-file", leases.to_str().unwrap()].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let env = [("NOTIFY_SOCKET", sock_path.to_str().unwrap()), ("WATCHDOG_USEC", "1000000")];
    let mut server = start_notified(&pair.server, &args, &env, &dir.path("server.log"));

    let st = status(server.child.id());
    assert_eq!(st["Uid"], "65534 65534 65534 65534", "{st:?}");
    assert_eq!(st["Gid"], "65534 65534 65534 65534", "{st:?}");
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(st[set], "0000000000000000", "{set}: {st:?}");
    }
    assert_eq!(st["NoNewPrivs"], "1");
    let log = std::fs::read_to_string(dir.path("server.log")).unwrap();
    assert!(log.contains("running as user nobody") && log.contains("Landlock enforced"), "{log}");

    assert!(next(&sock).starts_with("READY=1\n"));
    assert_eq!(next(&sock), "WATCHDOG=1", "every worker goes round: the watchdog is pinged");
    let ip = udhcpc_lease(&pair, &dir);
    assert!(ip.starts_with("198.18.0.1"), "{ip}");
    assert!(server.stop().success(), "{}", std::fs::read_to_string(dir.path("server.log")).unwrap());
    let stopping = eventually(WAIT, || (next(&sock) == "STOPPING=1").then_some(()));
    assert!(stopping.is_some(), "STOPPING=1");
    let log = std::fs::read_to_string(dir.path("server.log")).unwrap();
    if backend == "xdp" {
        // Per-CPU counters are read after the drop (the BPF library reads the CPU count).
        assert!(log.contains("xdhcpd: s0: "), "XDP counters at exit: {log}");
    }

    // The lease was written by the unprivileged server, into files only it can read.
    assert!(assert_private(leases.parent().unwrap(), NOBODY) >= 3, "journal, lock and key");
    let rec = dhcp_user::journal::inspect(&leases, 0).unwrap();
    assert!(rec.leases.iter().any(|l| l.ip.to_string() == ip), "{ip} not in {:?}", rec.leases);
}

/// The unit's `AmbientCapabilities=`, as setpriv writes them: `+net_admin,+net_raw,...`.
fn unit_caps() -> String {
    let text = std::fs::read_to_string(UNIT).unwrap();
    let line = text.lines().find_map(|l| l.strip_prefix("AmbientCapabilities=")).expect("AmbientCapabilities=");
    let caps: Vec<String> =
        line.split_whitespace().map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase())).collect();
    caps.join(",")
}

/// Started as the unit starts it: an unprivileged user holding only the unit's capabilities,
/// no_new_privs, and a lease directory made for it (`StateDirectory=`).
fn unit_caps_case(backend: &str) {
    if !root_or_skip(&format!("the_service_units_capabilities_suffice_for_setup ({backend})")) {
        return;
    }
    let pair = Pair::new("unitcaps");
    let dir = Scratch::new("unitcaps");
    let state = dir.path("state");
    std::fs::create_dir(&state).unwrap();
    std::os::unix::fs::chown(&state, Some(NOBODY), Some(NOBODY)).unwrap();
    // The unit's LimitMEMLOCK=infinity (AF_XDP buffers are locked memory) needs
    // CAP_SYS_RESOURCE here, which this machine withholds: CAP_IPC_LOCK stands in for it.
    let caps = format!("-all,{},+ipc_lock", unit_caps());
    let (inh, amb, bnd) =
        (format!("--inh-caps={caps}"), format!("--ambient-caps={caps}"), format!("--bounding-set={caps}"));
    let leases = state.join("leases");
    let bin = xdhcpd();
    let mut args = vec!["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", &inh, &amb, &bnd];
    args.extend(["--no-new-privs", "--", &bin, "serve", "--lease-file", leases.to_str().unwrap()]);
    let quick = quick_args("198.18.0.100-198.18.0.110", backend);
    args.extend(quick.iter().map(String::as_str));
    let log = dir.path("server.log");
    let mut server = Process::start(&pair.server, "xdhcpd", &args, &log);
    let up = eventually(WAIT, || std::fs::read_to_string(&log).ok()?.contains("xdhcpd: serving").then_some(()));
    assert!(up.is_some(), "did not start with the unit's capabilities: {}", std::fs::read_to_string(&log).unwrap());
    let st = status(server.child.id());
    assert_eq!(st["Uid"], "65534 65534 65534 65534");
    for set in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
        assert_eq!(st[set], "0000000000000000", "{set}: {st:?}");
    }
    assert_ne!(st["CapBnd"], "0000000000000000", "without CAP_SETPCAP the unit bounds the set, not the server");
    udhcpc_lease(&pair, &dir);
    assert!(server.stop().success());
    assert!(assert_private(&state, NOBODY) >= 3);
}

#[test]
fn without_user_root_keeps_its_uid_but_no_capability() {
    if !root_or_skip("without_user_root_keeps_its_uid_but_no_capability") {
        return;
    }
    let pair = Pair::new("nouser");
    let dir = Scratch::new("nouser");
    let leases = dir.path("state").join("leases");
    std::fs::create_dir(dir.path("state")).unwrap();
    let mut args = quick_args("198.18.0.100-198.18.0.110", "udp");
    args.extend(["--lease-file", leases.to_str().unwrap()].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // Standard error is "the journal" (JOURNAL_STREAM names it): lines carry priorities.
    let log = dir.path("server.log");
    let meta = std::fs::File::create(&log).unwrap().metadata().unwrap();
    let stream = format!("{}:{}", meta.dev(), meta.ino());
    let mut server = start_notified(&pair.server, &args, &[("JOURNAL_STREAM", &stream)], &log);
    let st = status(server.child.id());
    assert_eq!(st["Uid"], "0 0 0 0");
    for set in ["CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(st[set], "0000000000000000", "{set}: {st:?}");
    }
    assert_eq!(st["NoNewPrivs"], "1");
    udhcpc_lease(&pair, &dir);
    assert!(server.stop().success());
    assert!(assert_private(&dir.path("state"), 0) >= 3);
    let text = std::fs::read_to_string(&log).unwrap();
    let ok = |l: &str| ["<3>", "<4>", "<6>", "<7>"].iter().any(|p| l.starts_with(p)) && !l.contains(" INFO ");
    assert!(text.lines().count() > 3 && text.lines().all(ok), "one prefixed line per event: {text}");
}

#[test]
fn a_symlink_planted_as_a_lease_file_is_refused() {
    if !root_or_skip("a_symlink_planted_as_a_lease_file_is_refused") {
        return;
    }
    let ns = Netns::new(format!("xdt{}-symlink", std::process::id()));
    let dir = Scratch::new("symlink");
    let victim = dir.path("victim");
    std::fs::write(&victim, "not a lease file").unwrap();
    let leases = dir.path("leases");
    std::os::unix::fs::symlink(&victim, &leases).unwrap();
    let out = ns.exec(&[
        &xdhcpd(),
        "serve",
        "--interface",
        "lo",
        "--subnet",
        "127.0.0.0/8",
        "--pool",
        "127.0.0.10-127.0.0.20",
        "--server-id",
        "127.0.0.1",
        "--backend",
        "udp",
        "--lease-file",
        leases.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("is a symbolic link: refused"), "{err}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "not a lease file");
}

#[test]
fn check_config_offline_passes_the_example_on_a_host_without_its_interfaces() {
    if !root_or_skip("check_config_offline_passes_the_example") {
        return;
    }
    // A fresh namespace has only `lo`: neither eth0 nor eth1.
    let ns = Netns::new(format!("xdt{}-offline", std::process::id()));
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/xdhcpd.toml");
    let out = ns.exec(&[&xdhcpd(), "check-config", "--offline", example]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("ok (this host's interfaces and addresses not checked)"), "{text}");
    let out = ns.exec(&[&xdhcpd(), "check-config", example]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("eth0"), "the host check names the missing interface");
}

#[test]
fn the_service_unit_passes_systemd_analyze_verify() {
    let unit = UNIT;
    if Command::new("systemd-analyze").arg("--version").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "systemd-analyze is missing (cargo xtask setup installs systemd)");
        eprintln!("SKIPPED the_service_unit_passes_systemd_analyze_verify: no systemd-analyze");
        return;
    }
    // ExecStart must name an existing executable: verify a copy that points at this build.
    let dir = Scratch::new("unit");
    let text = std::fs::read_to_string(unit).unwrap();
    assert!(text.contains("ExecStart=/usr/local/sbin/xdhcpd serve --config /etc/xdhcpd/xdhcpd.toml"));
    let copy = dir.path("xdhcpd.service");
    std::fs::write(&copy, text.replace("/usr/local/sbin/xdhcpd", &xdhcpd())).unwrap();
    let out = Command::new("systemd-analyze").args(["verify", "--man=no"]).arg(&copy).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.trim().is_empty(), "systemd-analyze verify: {err}");
}
