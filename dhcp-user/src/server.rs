//! server: puts a configured server together and runs it until SIGTERM/SIGINT: compiles the
//! configuration, recovers leases from the journal into the engines of the workers that own
//! their clients, opens the chosen backend, runs the workers, and on a signal stops taking
//! packets, flushes the journal and reports.

use crate::config::{Backend, ServerConfig};
use crate::engine::{Engine, Shared};
use crate::journal::Journal;
use crate::udp;
use crate::worker::{unix_now, UdpWorker, WorkerReport, XdpWorker};
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
            let interval = std::time::Duration::from_secs(cfg.server.compact_interval.max(1) as u64);
            let (j, recovery) = Journal::open(path, cfg.server.durability, interval, now)
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

    let interfaces = cfg.server.interfaces.clone();
    if interfaces.is_empty() {
        bail!("no interface to serve: name one with --interface or [server] interfaces");
    }
    let xdp = match cfg.server.backend {
        Backend::Udp => None,
        Backend::Xdp => Some(open_xdp(&interfaces, workers).context("backend xdp")?),
        Backend::Auto => match open_xdp(&interfaces, workers) {
            Ok(x) => Some(x),
            Err(e) => {
                eprintln!("xdhcpd: backend auto: using UDP sockets, XDP is not available: {e:#}");
                None
            }
        },
    };
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
    let pin = cfg.server.pin_workers;
    let handles: Vec<std::thread::JoinHandle<WorkerReport>> = match &xdp {
        None => {
            let mut per_worker: Vec<Vec<_>> = (0..workers).map(|_| Vec::new()).collect();
            for name in &interfaces {
                let ports = udp::open_ports(name, workers).with_context(|| format!("opening port 67 on {name}"))?;
                for (w, port) in ports.into_iter().enumerate() {
                    per_worker[w].push((shared.interface_id(name), port));
                }
            }
            eprintln!("xdhcpd: backend udp on {}", interfaces.join(","));
            engines
                .into_iter()
                .zip(per_worker)
                .enumerate()
                .map(|(w, (engine, ports))| {
                    let worker = UdpWorker { id: w, engine, ports, journal: journal.clone(), stop: stop.clone() };
                    std::thread::Builder::new().name(format!("xdhcpd-w{w}")).spawn(move || {
                        if pin {
                            crate::worker::pin_to_cpu(w);
                        }
                        worker.run()
                    })
                })
                .collect::<std::io::Result<_>>()
                .context("starting worker threads")?
        }
        Some(x) => {
            let mut handles = Vec::new();
            let mut sets = x.sets.lock().map_err(|_| anyhow::anyhow!("lock"))?;
            let (name, set) = sets.first_mut().context("no XDP interface")?;
            let mac = crate::xsk::mac_address(name)?;
            let iface = shared.interface_id(name);
            let ports_per_worker = std::mem::take(&mut set.per_worker);
            for (w, (engine, ports)) in engines.into_iter().zip(ports_per_worker).enumerate() {
                let worker = XdpWorker {
                    id: w,
                    engine,
                    ports,
                    interface: iface,
                    mac,
                    journal: journal.clone(),
                    stop: stop.clone(),
                    busy_poll: cfg.server.busy_poll,
                };
                handles.push(
                    std::thread::Builder::new()
                        .name(format!("xdhcpd-x{w}"))
                        .spawn(move || {
                            if pin {
                                crate::worker::pin_to_cpu(w);
                            }
                            worker.run()
                        })
                        .context("starting worker threads")?,
                );
            }
            handles
        }
    };
    let mut total = WorkerReport::default();
    for (w, h) in handles.into_iter().enumerate() {
        let r = h.join().map_err(|_| anyhow::anyhow!("a worker thread panicked"))?;
        // Per worker: shows how clients spread over the workers.
        eprintln!(
            "xdhcpd: worker {w}: pkt4-received {} pkt4-offer-sent {} pkt4-ack-sent {}",
            r.engine.received, r.engine.offer_sent, r.engine.ack_sent
        );
        total.engine.add(&r.engine);
        total.acks_withheld += r.acks_withheld;
        total.send_failed += r.send_failed;
        total.not_mine += r.not_mine;
        total.malformed_frames += r.malformed_frames;
    }
    if stop.load(Ordering::Relaxed) {
        eprintln!("xdhcpd: stopping");
    }
    if let Some(x) = xdp {
        for (name, steering) in &x.steering {
            if let Ok(c) = steering.counters() {
                let named: Vec<String> = c.named().map(|(n, v)| format!("{n} {v}")).collect();
                eprintln!("xdhcpd: {name}: {}", named.join(", "));
            }
        }
        // Detach the program before the sockets it steers to go away.
        drop(x.steering);
        if let Ok(sets) = x.sets.into_inner() {
            for (_, set) in sets {
                set.close();
            }
        }
    }
    if let Some(j) = journal {
        j.close().context("flushing the lease file")?;
    }
    for (name, v) in total.engine.named() {
        if v > 0 {
            eprintln!("xdhcpd: {name} {v}");
        }
    }
    eprintln!(
        "xdhcpd: acks-withheld {} send-failed {} malformed-frames {}",
        total.acks_withheld, total.send_failed, total.malformed_frames
    );
    Ok(())
}

/// The kernel-bypass path on the configured interfaces: AF_XDP sockets and the steering
/// program that feeds them.
struct XdpPath {
    /// Per interface, its sockets (taken by the workers at start).
    sets: std::sync::Mutex<Vec<(String, crate::xsk::XskSet)>>,
    /// Per interface, the attached program; dropping it detaches.
    steering: Vec<(String, crate::xdp::Steering)>,
}

/// Opens AF_XDP sockets on every queue and attaches the steering program. One interface for
/// now: several need one worker set per interface, which the UDP path has and this does not.
fn open_xdp(interfaces: &[String], workers: u32) -> Result<XdpPath> {
    if interfaces.len() != 1 {
        bail!("the XDP path serves one interface; {} configured", interfaces.len());
    }
    let name = &interfaces[0];
    let set = crate::xsk::open(name, workers).with_context(|| format!("AF_XDP sockets on {name}"))?;
    let mut steering = crate::xdp::Steering::attach(name, 0)?;
    if let Some(mut log) = steering.take_log() {
        crate::xdp::set_log_level_from_env();
        // A small reader thread: the program logs rarely (dropped frames), so it sleeps in poll.
        std::thread::Builder::new()
            .name("xdhcpd-xdplog".into())
            .spawn(move || {
                use std::os::fd::AsRawFd;
                let mut pfd = [crate::udp::pollfd(log.as_raw_fd())];
                loop {
                    if crate::udp::wait_readable(&mut pfd, 1000).is_err() {
                        return;
                    }
                    log.flush();
                }
            })
            .context("starting the XDP log reader")?;
    }
    for (w, ports) in set.per_worker.iter().enumerate() {
        for port in ports {
            let slot = dhcp_common::socket_slot(port.shared.queue, workers, 0) + w as u32;
            steering.register_socket(slot, port.fd)?;
        }
    }
    steering.set_sockets_per_queue(workers)?;
    let mode = match set.mode {
        crate::xsk::Mode::ZeroCopy => "zero-copy",
        crate::xsk::Mode::Copy => "copy mode (the driver has no zero-copy AF_XDP)",
    };
    eprintln!(
        "xdhcpd: backend xdp on {name}: {} receive queues x {workers} AF_XDP sockets, {mode}",
        crate::xsk::rx_queues(name)
    );
    Ok(XdpPath { sets: std::sync::Mutex::new(vec![(name.clone(), set)]), steering: vec![(name.clone(), steering)] })
}
