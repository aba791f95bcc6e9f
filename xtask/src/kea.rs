//! Kea 2.x (Debian's kea-dhcp4-server), the peer the benchmarks measure beside xdhcpd: started
//! in the server namespace on `s0` with the same subnet and pool, multi-threaded, memfile.

use anyhow::{bail, Result};
use std::time::Duration;
use xdhcpd_tests::{eventually, Pair, Process, Scratch};

/// Starts kea-dhcp4 with `threads` worker threads; leases in memory (`persist: false`), as
/// xdhcpd without a lease file.
pub(crate) fn start(pair: &Pair, dir: &Scratch, threads: u32, pool: &str) -> Result<Process> {
    let config = dir.path("kea-dhcp4.json");
    let run = dir.path("kea-run");
    std::fs::create_dir_all(&run)?;
    std::fs::write(
        &config,
        format!(
            r#"{{"Dhcp4": {{
  "interfaces-config": {{"interfaces": ["s0"], "dhcp-socket-type": "raw"}},
  "lease-database": {{"type": "memfile", "persist": false, "lfc-interval": 0}},
  "multi-threading": {{"enable-multi-threading": true, "thread-pool-size": {threads}, "packet-queue-size": 256}},
  "valid-lifetime": 3600, "renew-timer": 1800, "rebind-timer": 3150,
  "option-data": [{{"name": "routers", "data": "198.18.0.1"}}],
  "subnet4": [{{"id": 1, "subnet": "198.18.0.0/16", "pools": [{{"pool": "{pool}"}}]}}],
  "loggers": [{{"name": "kea-dhcp4", "output_options": [{{"output": "stdout"}}], "severity": "WARN"}}]
}}}}"#
        ),
    )?;
    let log = dir.path("kea.log");
    let run_dir = run.display().to_string();
    let cfg = config.display().to_string();
    let kea = Process::start(
        &pair.server,
        "kea-dhcp4",
        &[
            "env",
            &format!("KEA_PIDFILE_DIR={run_dir}"),
            &format!("KEA_LOCKFILE_DIR={run_dir}"),
            "kea-dhcp4",
            "-c",
            &cfg,
        ],
        &log,
    );
    // Kea writes its pid file once it serves.
    let up = eventually(Duration::from_secs(10), || {
        std::fs::read_dir(&run)
            .ok()?
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().ends_with(".pid"))
            .then_some(())
    });
    if up.is_none() {
        bail!("kea-dhcp4 did not start:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
    }
    std::thread::sleep(Duration::from_millis(300));
    Ok(kea)
}
