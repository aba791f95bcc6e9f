//! server: puts a configured server together and runs it until SIGTERM/SIGINT: compiles the
//! configuration, recovers leases from the journal into the engines of the workers that own
//! their clients, opens the chosen backend, runs the workers, and on a signal stops taking
//! packets, flushes the journal and reports.

use crate::config::file::{Backend, Durability, ServerConfig};
use crate::engine::{Engine, Shared};
use crate::journal::{self, Journal};
use crate::udp;
use crate::worker::{unix_now, UdpWorker, WorkerReport};
use anyhow::{bail, Context, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Runs the server. Returns after a stop signal, once the journal is flushed.
pub fn run(cfg: ServerConfig) -> Result<()> {
    let workers = cfg.server.workers.clamp(1, 1024) as u32;
    let shared = Arc::new(Shared::new(&cfg.engine, workers).context("configuration")?);
    let now = unix_now();
    let capacity = shared.space().capacity() / workers as usize + 1024;
    let mut engines: Vec<Engine> = (0..workers).map(|_| Engine::new(shared.clone(), now, capacity)).collect();

    let journal = match &cfg.server.lease_file {
        Some(path) => {
            let durability = match cfg.server.durability {
                Durability::Fsync => journal::Durability::Fsync,
                Durability::None => journal::Durability::None,
            };
            let interval = std::time::Duration::from_secs(cfg.server.compact_interval.max(1) as u64);
            let (j, recovery) = Journal::open(path, durability, interval, now)
                .with_context(|| format!("opening lease file {}", path.display()))?;
            let mut restored = 0;
            let mut refused = 0;
            for r in &recovery.leases {
                let w = dhcp_common::worker_for(dhcp_common::client_hash(&r.mac), workers) as usize;
                match engines[w].restore(now, r.client, r.mac, r.ip, r.expires, r.state) {
                    Ok(()) => restored += 1,
                    Err(e) => {
                        refused += 1;
                        eprintln!("xdhcpd: lease of {} not restored: {e:?}", r.ip);
                    }
                }
            }
            eprintln!(
                "xdhcpd: lease file {}: {restored} leases restored, {refused} refused, {}",
                path.display(),
                recovery.summary()
            );
            Some(j)
        }
        None => {
            eprintln!("xdhcpd: no lease file: leases live in memory only and are lost on restart");
            None
        }
    };

    match cfg.server.backend {
        Backend::Udp => eprintln!("xdhcpd: backend udp"),
        Backend::Auto => eprintln!("xdhcpd: backend udp (auto: the AF_XDP workers are not part of this build yet)"),
        Backend::Xdp => {
            bail!("backend xdp: the AF_XDP workers are not part of this build yet; use --backend udp or auto")
        }
    }
    let interfaces = cfg.server.interfaces.clone();
    if interfaces.is_empty() {
        bail!("no interface to serve: name one with --interface or [server] interfaces");
    }
    let mut per_worker: Vec<Vec<_>> = (0..workers).map(|_| Vec::new()).collect();
    for name in &interfaces {
        let ports = udp::open_ports(name, workers).with_context(|| format!("opening port 67 on {name}"))?;
        for (w, port) in ports.into_iter().enumerate() {
            per_worker[w].push((shared.interface_id(name), port));
        }
    }

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    eprintln!(
        "xdhcpd: serving {} with {workers} workers, {} subnets, {} pool addresses",
        interfaces.join(","),
        cfg.engine.subnets.len(),
        shared.space().capacity()
    );
    let handles: Vec<_> = engines
        .into_iter()
        .zip(per_worker)
        .enumerate()
        .map(|(w, (engine, ports))| {
            let worker = UdpWorker { id: w, engine, ports, journal: journal.clone(), stop: stop.clone() };
            std::thread::Builder::new().name(format!("xdhcpd-w{w}")).spawn(move || worker.run())
        })
        .collect::<std::io::Result<_>>()
        .context("starting worker threads")?;
    let mut total = WorkerReport::default();
    for h in handles {
        let r = h.join().map_err(|_| anyhow::anyhow!("a worker thread panicked"))?;
        total.engine.add(&r.engine);
        total.acks_withheld += r.acks_withheld;
        total.send_failed += r.send_failed;
        total.not_mine += r.not_mine;
    }
    if stop.load(Ordering::Relaxed) {
        eprintln!("xdhcpd: stopping");
    }
    if let Some(j) = journal {
        j.close().context("flushing the lease file")?;
    }
    for (name, v) in total.engine.named() {
        if v > 0 {
            eprintln!("xdhcpd: {name} {v}");
        }
    }
    eprintln!("xdhcpd: acks-withheld {} send-failed {}", total.acks_withheld, total.send_failed);
    Ok(())
}
