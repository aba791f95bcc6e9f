//! service: telling a service manager (systemd `Type=notify`) how the server is doing: READY=1
//! once every worker runs, WATCHDOG=1 while every worker's loop goes round, STOPPING=1 at the
//! end. Workers only store to their own heartbeat counter (through [`Beating`], a wrapper of
//! their packet path); one monitor thread reads them. Without `NOTIFY_SOCKET` it all costs a
//! counter store per receive call.
//!
//! This module must never block a worker or send from one.

use anyhow::{Context, Result};
use dhcp_io::sys::Doorbell;
use dhcp_io::{Datagram, PacketIo, Transmit, Unusable, MAX_MESSAGE};
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A worker whose counter has not moved for this long is stalled. Idle workers still go round
/// at least once a second (their longest sleep).
const STALLED_AFTER: Duration = Duration::from_secs(3);

/// The service manager's notification socket, connected at start (before privileges and file
/// access are given up), and the watchdog interval it asked for.
#[derive(Debug)]
pub struct Notifier {
    sock: Option<UnixDatagram>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// From `NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace) and
    /// `WATCHDOG_USEC`/`WATCHDOG_PID`. Neither set, or a socket that cannot be reached (logged):
    /// a notifier that sends nothing.
    pub fn from_env() -> Notifier {
        let sock = std::env::var_os("NOTIFY_SOCKET").and_then(|addr| {
            connect(&addr)
                .map_err(|e| log::warn!("NOTIFY_SOCKET {}: {e}: the service manager is not told", addr.display()))
                .ok()
        });
        let ours = std::env::var("WATCHDOG_PID").map_or(true, |p| p.parse() == Ok(std::process::id()));
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|u| u.parse::<u64>().ok())
            .filter(|&u| u > 0 && ours)
            .map(Duration::from_micros);
        Notifier { sock, watchdog }
    }

    /// Sends one notification; a lost one is logged, not fatal (the manager may be gone).
    pub fn send(&self, msg: &str) {
        if let Some(s) = &self.sock {
            if let Err(e) = s.send(msg.as_bytes()) {
                log::warn!("service manager notification {msg:?} not sent: {e}");
            }
        }
    }
}

fn connect(addr: &std::ffi::OsStr) -> std::io::Result<UnixDatagram> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::SocketAddr;
    let s = UnixDatagram::unbound()?;
    match addr.as_encoded_bytes().strip_prefix(b"@") {
        Some(name) => s.connect_addr(&SocketAddr::from_abstract_name(name)?)?,
        None => s.connect(addr)?,
    }
    Ok(s)
}

/// One worker's loop counter, on a cache line of its own.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct Heartbeat(AtomicU64);

/// A worker's packet path that counts the worker's turns: every receive call is one.
#[derive(Debug)]
pub struct Beating<I> {
    io: I,
    beat: Arc<Heartbeat>,
}

impl<I> Beating<I> {
    pub fn new(io: I, beat: Arc<Heartbeat>) -> Self {
        Beating { io, beat }
    }

    pub fn into_inner(self) -> I {
        self.io
    }
}

impl<I: PacketIo> PacketIo for Beating<I> {
    type Frame = I::Frame;

    fn receive(&mut self, out: &mut Vec<Self::Frame>, max: usize) -> usize {
        // Only this thread writes the counter: a plain store, no locked instruction.
        let c = &self.beat.0;
        c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
        self.io.receive(out, max)
    }

    fn peek<'a>(&'a mut self, frame: &'a mut Self::Frame) -> Option<&'a [u8]> {
        self.io.peek(frame)
    }

    fn datagram<'a>(
        &'a mut self,
        frame: &'a mut Self::Frame,
        scratch: &'a mut [u8; MAX_MESSAGE],
    ) -> Result<Datagram<'a>, Unusable> {
        self.io.datagram(frame, scratch)
    }

    fn seal(&mut self, frame: &mut Self::Frame, reply: &Transmit) -> bool {
        self.io.seal(frame, reply)
    }

    fn send(&mut self, frames: &mut Vec<Self::Frame>) -> usize {
        self.io.send(frames)
    }

    fn release(&mut self, frames: &mut Vec<Self::Frame>) {
        self.io.release(frames)
    }

    fn wait(&mut self, timeout: Duration, bell: Option<&Doorbell>) {
        self.io.wait(timeout, bell)
    }
}

/// Says READY=1 now (the workers run), then pings the watchdog while every worker's counter
/// moves, until `stop`; then STOPPING=1. A stalled worker is logged once and withholds the
/// ping, so the manager restarts the server.
pub fn watch(n: Notifier, beats: Vec<Arc<Heartbeat>>, stop: Arc<AtomicBool>) -> Result<JoinHandle<()>> {
    watch_with(n, beats, stop, STALLED_AFTER)
}

fn watch_with(
    n: Notifier,
    beats: Vec<Arc<Heartbeat>>,
    stop: Arc<AtomicBool>,
    stalled_after: Duration,
) -> Result<JoinHandle<()>> {
    n.send(&format!("READY=1\nSTATUS=serving with {} workers", beats.len()));
    let period = n.watchdog.map_or(Duration::from_millis(500), |w| (w / 2).max(Duration::from_millis(100)));
    let thread = std::thread::Builder::new().name("xdhcpd-watchdog".into()).spawn(move || {
        let mut seen: Vec<(u64, Instant)> =
            beats.iter().map(|b| (b.0.load(Ordering::Relaxed), Instant::now())).collect();
        let mut stalled = vec![false; beats.len()];
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(period.min(Duration::from_millis(500)));
            let now = Instant::now();
            let mut alive = true;
            for (w, b) in beats.iter().enumerate() {
                let v = b.0.load(Ordering::Relaxed);
                if v != seen[w].0 {
                    seen[w] = (v, now);
                    stalled[w] = false;
                } else if now - seen[w].1 > stalled_after {
                    alive = false;
                    if !std::mem::replace(&mut stalled[w], true) {
                        log::error!(
                            "worker {w} has not gone round its loop for {:?}: watchdog not pinged",
                            now - seen[w].1
                        );
                    }
                }
            }
            if alive && n.watchdog.is_some() {
                n.send("WATCHDOG=1");
            }
        }
        n.send("STOPPING=1");
    });
    thread.context("starting the watchdog thread")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_then_watchdog_while_workers_beat_and_none_when_one_stalls() {
        let name = format!("xdhcpd-notify-test-{}", std::process::id());
        let listener = {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
            UnixDatagram::bind_addr(&addr).unwrap()
        };
        listener.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let n = Notifier {
            sock: Some(connect(std::ffi::OsStr::new(&format!("@{name}"))).unwrap()),
            watchdog: Some(Duration::from_millis(200)),
        };
        let beats: Vec<Arc<Heartbeat>> = (0..2).map(|_| Arc::default()).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let (b0, s0) = (beats[0].clone(), stop.clone());
        let busy = std::thread::spawn(move || {
            while !s0.load(Ordering::Relaxed) {
                b0.0.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let h = watch_with(n, beats.clone(), stop.clone(), Duration::from_millis(300)).unwrap();
        let mut buf = [0u8; 256];
        let mut next = || listener.recv(&mut buf).map(|n| String::from_utf8_lossy(&buf[..n]).into_owned());
        assert!(next().unwrap().starts_with("READY=1\n"));
        // Within `stalled_after` of the start every worker counts as alive: pings.
        assert_eq!(next().unwrap(), "WATCHDOG=1");
        // Worker 1 never goes round: the pings stop (a whole second without one; bounded).
        listener.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let quiet = (0..100).any(|_| next().is_err());
        assert!(quiet, "pings went on with a stalled worker");
        // It goes round again: pings again.
        listener.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        beats[1].0.store(7, Ordering::Relaxed);
        assert_eq!(next().unwrap(), "WATCHDOG=1");
        stop.store(true, Ordering::Relaxed);
        h.join().unwrap();
        busy.join().unwrap();
        let mut rest = Vec::new();
        while let Ok(n) = listener.set_nonblocking(true).and_then(|_| listener.recv(&mut buf)) {
            rest.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        assert_eq!(rest.last().map(String::as_str), Some("STOPPING=1"), "{rest:?}");
    }
}
