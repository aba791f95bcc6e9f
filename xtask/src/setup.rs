//! `cargo xtask setup`: checks each piece the project needs and installs only what is missing,
//! so it is quick on a prepared machine and complete on a fresh one (Debian 12, rustup, root).

use crate::{output, run_cmd, step};
use anyhow::{Context, Result};
use std::path::Path;
use std::process::Command;

/// Debian packages: what the tests run (ip, ping), the real DHCP peers the interop tests use
/// (busybox udhcpc, ISC dhclient, dhcpcd, ISC dhcrelay, Kea's perfdhcp, and Kea itself as the
/// peer the benchmarks compare with), NATS for clusters, and what bpf-linker
/// builds against (LLVM 22, the LLVM of the nightly rustc that builds the XDP program).
const PACKAGES: &[&str] = &[
    "iproute2",
    "iputils-ping",
    "udhcpc",
    "isc-dhcp-client",
    "dhcpcd-base",
    "isc-dhcp-relay",
    "kea-admin",
    "kea-dhcp4-server",
    "prometheus",
    // NATS JetStream: the shared state of a cluster of xdhcpd nodes (issue 13) and its tests.
    "nats-server",
    "llvm-22-dev",
    "libpolly-22-dev",
    // systemd-analyze (the service unit is verified) and setpriv (started as the unit starts it).
    "systemd",
    "util-linux",
];

/// Debian's hook that tells package scripts whether they may start services. DHCP packages
/// would otherwise start a relay or server on the host's own interfaces.
const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";

/// Rust toolchain components, per toolchain. Nightly builds the XDP program with
/// `-Z build-std=core`, which needs the standard library's source.
const COMPONENTS: &[(&str, &str)] =
    &[("stable", "rustfmt"), ("stable", "clippy"), ("nightly", "rust-src"), ("nightly", "clippy")];

/// bpf-linker links the XDP program; it must use the same LLVM major version as nightly rustc.
const BPF_LINKER: &str = "bpf-linker@0.13.0";
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

pub(crate) fn run() -> Result<()> {
    step("setup");
    debian_packages()?;
    toolchains()?;
    bpf_linker()?;
    cargo_fuzz()?;
    fuse();
    Ok(())
}

/// The power-cut test mounts a FUSE filesystem through /dev/fuse (as root, without fusermount):
/// load the module if the device is missing.
fn fuse() {
    if Path::new("/dev/fuse").exists() {
        eprintln!("    /dev/fuse: present");
        return;
    }
    eprintln!("    /dev/fuse: loading the fuse module");
    if let Err(e) = run_cmd(Command::new("modprobe").arg("fuse")) {
        eprintln!("    /dev/fuse: {e:#} (the power-cut test will fail to mount)");
    }
}

fn debian_packages() -> Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            let status = output(Command::new("dpkg-query").args(["-W", "-f=${Status}", p])).unwrap_or_default();
            !status.ends_with("install ok installed")
        })
        .collect();
    if missing.is_empty() {
        eprintln!("    Debian packages: present");
        return Ok(());
    }
    eprintln!("    Debian packages: installing {}", missing.join(" "));
    run_cmd(Command::new("apt-get").args(["update", "-q"]))?;
    // Forbid service starts while installing (exit 101 = "action forbidden"); put back what
    // was there before.
    let had_policy = std::path::Path::new(POLICY_RC_D).exists();
    if !had_policy {
        std::fs::write(POLICY_RC_D, "#!/bin/sh\nexit 101\n")?;
        run_cmd(Command::new("chmod").args(["+x", POLICY_RC_D]))?;
    }
    let result = run_cmd(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .context("installing Debian packages (needs root)");
    if !had_policy {
        let _ = std::fs::remove_file(POLICY_RC_D);
    }
    result
}

fn toolchains() -> Result<()> {
    let toolchains = output(Command::new("rustup").args(["toolchain", "list"]))?;
    if !toolchains.lines().any(|l| l.starts_with("nightly")) {
        eprintln!("    nightly toolchain: installing");
        run_cmd(Command::new("rustup").args(["toolchain", "install", "nightly", "--profile", "minimal"]))?;
    }
    for (toolchain, component) in COMPONENTS {
        let installed =
            output(Command::new("rustup").args(["component", "list", "--installed", "--toolchain", toolchain]))
                .unwrap_or_default();
        if installed.lines().any(|l| l.starts_with(component)) {
            eprintln!("    {component} ({toolchain}): present");
        } else {
            eprintln!("    {component} ({toolchain}): installing");
            run_cmd(Command::new("rustup").args(["component", "add", component, "--toolchain", toolchain]))?;
        }
    }
    Ok(())
}

/// cargo-fuzz drives the libFuzzer targets in `fuzz/` (`cargo xtask fuzz`, and briefly in
/// `cargo xtask test`).
fn cargo_fuzz() -> Result<()> {
    if Command::new("cargo").args(["fuzz", "--version"]).output().is_ok_and(|o| o.status.success()) {
        eprintln!("    cargo-fuzz: present");
        return Ok(());
    }
    eprintln!("    cargo-fuzz: installing");
    run_cmd(Command::new("cargo").args(["+stable", "install", "cargo-fuzz", "--locked"]))
}

fn bpf_linker() -> Result<()> {
    if Command::new("bpf-linker").arg("--version").output().is_ok_and(|o| o.status.success()) {
        eprintln!("    bpf-linker: present");
        return Ok(());
    }
    eprintln!("    bpf-linker: building {BPF_LINKER} against LLVM 22 (about 1-2 minutes)");
    let path = format!("{LLVM_PREFIX}/bin:{}", std::env::var("PATH").unwrap_or_default());
    run_cmd(
        Command::new("cargo")
            .args(["+stable", "install", BPF_LINKER, "--locked", "--no-default-features", "--features", "llvm-22"])
            .env("LLVM_PREFIX", LLVM_PREFIX)
            .env("PATH", path),
    )
}
