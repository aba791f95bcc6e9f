//! Small system-call helpers shared by both packet paths, the server and the load generator:
//! checked results, raw socket options, the one poll helper, CPU pinning, interfaces, a
//! doorbell one thread rings to wake another's poll, rate-limited logging for events that
//! can happen once per packet, and the manners of background threads (lowest CPU and I/O
//! priority, writeback in paced steps) so that they never stall a worker or its journal.
//!
//! Where `nix` has a safe wrapper we use it; raw `libc` remains for what it lacks (socket
//! options it does not know, `ppoll` with sub-millisecond timeouts).

use std::io;
use std::mem::size_of;
use std::net::SocketAddrV4;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// `rc` as a result, with `what` in the error.
pub fn check(rc: libc::c_int, what: &str) -> io::Result<libc::c_int> {
    if rc < 0 {
        let e = io::Error::last_os_error();
        Err(io::Error::new(e.kind(), format!("{what}: {e}")))
    } else {
        Ok(rc)
    }
}

/// Sets a socket option of type `T` (for options `nix` does not know).
pub fn setsockopt<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, value: &T, what: &str) -> io::Result<()> {
    // SAFETY: `value` points to a live T of the given size.
    let rc =
        unsafe { libc::setsockopt(fd, level, name, (value as *const T).cast(), size_of::<T>() as libc::socklen_t) };
    check(rc, what).map(|_| ())
}

/// Sets a buffer size beyond `net.core.{r,w}mem_max` when we may (root: the `*FORCE` option),
/// else as far as the limit allows: a load generator's bursts must not overflow its own queue.
pub fn set_buffer(fd: RawFd, force: libc::c_int, plain: libc::c_int, bytes: libc::c_int) {
    if setsockopt(fd, libc::SOL_SOCKET, force, &bytes, "buffer").is_err() {
        let _ = setsockopt(fd, libc::SOL_SOCKET, plain, &bytes, "buffer");
    }
}

/// A `pollfd` waiting for input on `fd` (and room for output when `out`).
pub fn pollfd(fd: BorrowedFd<'_>, out: bool) -> libc::pollfd {
    libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN | if out { libc::POLLOUT } else { 0 }, revents: 0 }
}

/// Waits until one of `fds` is ready or `timeout` passes; their `revents` say which. An
/// interrupted wait returns normally: the caller's loop checks its stop flag. The one poll
/// helper of the project.
pub fn poll(fds: &mut [libc::pollfd], timeout: Duration) -> io::Result<()> {
    for p in fds.iter_mut() {
        p.revents = 0;
    }
    let ts = libc::timespec { tv_sec: timeout.as_secs() as libc::time_t, tv_nsec: timeout.subsec_nanos() as _ };
    // SAFETY: a valid array of pollfd of the given length, a valid timespec, no signal mask.
    let rc = unsafe { libc::ppoll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, &ts, std::ptr::null()) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted { Ok(()) } else { Err(e) };
    }
    Ok(())
}

/// A path's sockets to wait on, and room for a doorbell beside them.
#[derive(Debug)]
pub struct Waiter {
    fds: Vec<libc::pollfd>,
    sockets: usize,
}

impl Waiter {
    pub fn new<'a>(sockets: impl IntoIterator<Item = BorrowedFd<'a>>) -> Waiter {
        let fds: Vec<libc::pollfd> = sockets.into_iter().map(|fd| pollfd(fd, false)).collect();
        Waiter { sockets: fds.len(), fds }
    }

    /// Sleeps until a socket has input, `bell` rings, or `timeout` passes.
    pub fn wait(&mut self, timeout: Duration, bell: Option<&Doorbell>) {
        self.fds.truncate(self.sockets);
        if let Some(b) = bell {
            self.fds.push(pollfd(b.fd(), false));
        }
        if let Err(e) = poll(&mut self.fds, timeout) {
            crate::log_limited!(log::Level::Warn, "poll: {e}");
        }
    }
}

/// [`poll`] on one descriptor: input (and room for output when `out`).
pub fn wait_one(fd: BorrowedFd<'_>, out: bool, timeout: Duration) -> io::Result<()> {
    poll(&mut [pollfd(fd, out)], timeout)
}

/// Whether the last error was "try again later" (full queue) rather than a failure.
pub fn is_transient(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::ENOBUFS) | Some(libc::EINTR))
}

/// Pins the calling thread to one CPU: measurements on a machine of two cores are only
/// repeatable when generator and server do not share one.
pub fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("no CPU {cpu}: {e}")))?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).map_err(io::Error::from)
}

/// Lowers the calling thread to the lowest CPU priority (nice 19) and the idle I/O class: for
/// background work (compaction) that must yield the cores to the workers and the disk to the
/// journal's syncs. Applies to this thread only (Linux: a thread id is a process id here).
pub fn background_thread() -> io::Result<()> {
    const IOPRIO_WHO_PROCESS: libc::c_long = 1;
    const IOPRIO_CLASS_IDLE: libc::c_long = 3;
    const IOPRIO_CLASS_SHIFT: libc::c_long = 13;
    // SAFETY: gettid has no arguments and cannot fail.
    let tid = unsafe { libc::gettid() };
    // SAFETY: setpriority takes plain integers; on Linux, PRIO_PROCESS with a thread id changes
    // that thread only.
    check(unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19) }, "setpriority")?;
    // SAFETY: ioprio_set takes three integers (who, which, priority) and touches no memory of
    // ours; `which` 0 is the calling thread.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_ioprio_set,
            IOPRIO_WHO_PROCESS,
            0 as libc::c_long,
            IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT,
        )
    };
    check(rc as libc::c_int, "ioprio_set")?;
    Ok(())
}

/// Paced writeback of a file written in one stream: writes `start..end` (just written) back
/// to disk and waits until it is there. Called every few hundred KiB, it keeps a big
/// sequential write from piling up dirty pages that the kernel would later flush at once (and
/// that a journal's `fdatasync` on the same file system would have to wait behind). Not a
/// durability point: the file is still synced before it counts.
pub fn write_behind(file: &impl AsFd, start: u64, end: u64) -> io::Result<()> {
    use libc::{SYNC_FILE_RANGE_WAIT_AFTER, SYNC_FILE_RANGE_WAIT_BEFORE, SYNC_FILE_RANGE_WRITE};
    let fd = file.as_fd().as_raw_fd();
    let how = SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER;
    // SAFETY: sync_file_range takes a file descriptor we borrow for the call and plain
    // integers; it touches no memory of ours.
    let rc = unsafe { libc::sync_file_range(fd, start as i64, end.saturating_sub(start) as i64, how) };
    check(rc, "sync_file_range")?;
    Ok(())
}

/// A `sockaddr_in` for an IPv4 socket address.
pub fn sockaddr_in(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(*a.ip()).to_be() },
        sin_zero: [0; 8],
    }
}

/// Index of a network interface by name: the one interface lookup of the project.
pub fn if_index(name: &str) -> io::Result<u32> {
    nix::net::if_::if_nametoindex(name)
        .map_err(|e| io::Error::new(io::ErrorKind::NotFound, format!("no interface {name}: {e}")))
}

/// The interface's hardware (MAC) address.
pub fn mac_address(name: &str) -> io::Result<[u8; 6]> {
    let addrs = nix::ifaddrs::getifaddrs().map_err(io::Error::from)?;
    addrs
        .filter(|a| a.interface_name == name)
        .find_map(|a| a.address?.as_link_addr()?.addr())
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no hardware address for {name}")))
}

/// Every IPv4 address of this host (of the calling thread's network namespace), with the
/// directed broadcast address of each: where datagrams for this host may be sent.
pub fn host_ipv4_addresses() -> io::Result<Vec<std::net::Ipv4Addr>> {
    let mut out = Vec::new();
    for a in nix::ifaddrs::getifaddrs().map_err(io::Error::from)? {
        for sa in [a.address, a.broadcast].into_iter().flatten() {
            if let Some(sin) = sa.as_sockaddr_in() {
                let ip = sin.ip();
                if !out.contains(&ip) {
                    out.push(ip);
                }
            }
        }
    }
    Ok(out)
}

/// Number of receive queues of an interface (from sysfs; 1 when it does not say).
pub fn rx_queues(name: &str) -> u32 {
    std::fs::read_dir(format!("/sys/class/net/{name}/queues"))
        .map(|d| d.filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().starts_with("rx-")).count() as u32)
        .unwrap_or(1)
        .max(1)
}

/// An eventfd one thread rings to wake another sleeping in [`poll`] (the journal wakes a
/// worker whose replies became durable). Ringing is one `write`; many rings before a wait
/// wake it once. A sleeper that [`Doorbell::arm`]s before it sleeps is rung by
/// [`Doorbell::ring_if_armed`] only then: a busy worker costs the ringer no system call.
#[derive(Debug)]
pub struct Doorbell {
    fd: nix::sys::eventfd::EventFd,
    /// The owner is about to sleep (or sleeps) on the bell.
    armed: AtomicBool,
}

impl Doorbell {
    pub fn new() -> io::Result<Doorbell> {
        let flags = nix::sys::eventfd::EfdFlags::EFD_NONBLOCK | nix::sys::eventfd::EfdFlags::EFD_CLOEXEC;
        let fd = nix::sys::eventfd::EventFd::from_flags(flags).map_err(io::Error::from)?;
        Ok(Doorbell { fd, armed: AtomicBool::new(false) })
    }

    /// Wakes the waiter (now, or at its next wait).
    pub fn ring(&self) {
        // EAGAIN only when the counter is about to overflow: it is rung already.
        let _ = self.fd.write(1);
    }

    /// Says the owner is going to sleep: from now on [`Doorbell::ring_if_armed`] rings. The
    /// owner must look at its wake-up condition again *after* arming (a change published
    /// before the ringer saw the arm is not rung for), then sleep, then [`Doorbell::disarm`].
    pub fn arm(&self) {
        self.armed.store(true, Ordering::Relaxed);
        // Pairs with the fence in `ring_if_armed`: either the owner's re-check sees the
        // ringer's change, or the ringer sees the arm (store-load on two variables).
        std::sync::atomic::fence(Ordering::SeqCst);
    }

    /// The owner is awake again: rings are not needed; forgets earlier ones.
    pub fn disarm(&self) {
        self.armed.store(false, Ordering::Relaxed);
        self.clear();
    }

    /// Rings only if the owner armed the bell (and disarms it: one ring wakes it). Call after
    /// publishing the change the owner waits for.
    pub fn ring_if_armed(&self) {
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.armed.load(Ordering::Relaxed) && self.armed.swap(false, Ordering::Relaxed) {
            self.ring();
        }
    }

    /// Forgets earlier rings (call after waking).
    pub fn clear(&self) {
        let _ = self.fd.read();
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Seconds since the process started, for rate limits.
fn uptime() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs()
}

/// Gate for a log line that can fire once per packet: at most once per `period` seconds per
/// call site. Returns how many were suppressed since the last one when it may log.
pub fn rate_limit(last: &AtomicU64, suppressed: &AtomicU64, period: u64) -> Option<u64> {
    // Stored as uptime + 1 so that 0 means "never logged".
    let now = uptime() + 1;
    let prev = last.load(Ordering::Relaxed);
    if prev != 0 && now < prev + period {
        suppressed.fetch_add(1, Ordering::Relaxed);
        return None;
    }
    if last.compare_exchange(prev, now, Ordering::Relaxed, Ordering::Relaxed).is_err() {
        suppressed.fetch_add(1, Ordering::Relaxed);
        return None;
    }
    Some(suppressed.swap(0, Ordering::Relaxed))
}

/// Logs through the `log` facade at most once a minute per call site, saying how many similar
/// events were suppressed meanwhile: for events that can happen once per packet.
#[macro_export]
macro_rules! log_limited {
    ($level:expr, $($arg:tt)+) => {{
        static LAST: ::std::sync::atomic::AtomicU64 = ::std::sync::atomic::AtomicU64::new(0);
        static SUPPRESSED: ::std::sync::atomic::AtomicU64 = ::std::sync::atomic::AtomicU64::new(0);
        if ::log::log_enabled!($level) {
            if let Some(n) = $crate::sys::rate_limit(&LAST, &SUPPRESSED, 60) {
                if n > 0 {
                    ::log::log!($level, "{} ({n} more like it in the last minute)", format_args!($($arg)+));
                } else {
                    ::log::log!($level, $($arg)+);
                }
            }
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_lets_one_through_per_period() {
        let (last, sup) = (AtomicU64::new(0), AtomicU64::new(0));
        assert_eq!(rate_limit(&last, &sup, 60), Some(0));
        assert_eq!(rate_limit(&last, &sup, 60), None);
        assert_eq!(rate_limit(&last, &sup, 60), None);
        assert_eq!(sup.load(Ordering::Relaxed), 2);
        // A period of zero always allows, and reports what was held back.
        assert_eq!(rate_limit(&last, &sup, 0), Some(2));
    }

    #[test]
    fn doorbell_wakes_a_poll() {
        let bell = Doorbell::new().unwrap();
        let mut fds = [pollfd(bell.fd(), false)];
        poll(&mut fds, Duration::ZERO).unwrap();
        assert_eq!(fds[0].revents & libc::POLLIN, 0);
        bell.ring();
        bell.ring();
        poll(&mut fds, Duration::from_secs(1)).unwrap();
        assert_ne!(fds[0].revents & libc::POLLIN, 0);
        bell.clear();
        poll(&mut fds, Duration::ZERO).unwrap();
        assert_eq!(fds[0].revents & libc::POLLIN, 0);
    }

    #[test]
    fn an_unarmed_doorbell_is_not_rung_and_an_armed_one_once() {
        let bell = Doorbell::new().unwrap();
        let mut fds = [pollfd(bell.fd(), false)];
        bell.ring_if_armed();
        poll(&mut fds, Duration::ZERO).unwrap();
        assert_eq!(fds[0].revents & libc::POLLIN, 0, "rung while its owner was awake");
        bell.arm();
        bell.ring_if_armed();
        poll(&mut fds, Duration::from_secs(1)).unwrap();
        assert_ne!(fds[0].revents & libc::POLLIN, 0, "an armed bell was not rung");
        bell.disarm();
        bell.ring_if_armed();
        poll(&mut fds, Duration::ZERO).unwrap();
        assert_eq!(fds[0].revents & libc::POLLIN, 0, "disarming forgets the ring and stops the next");
    }

    #[test]
    fn loopback_has_an_index() {
        assert!(if_index("lo").unwrap() > 0);
        assert!(if_index("no-such-if0").is_err());
    }

    #[test]
    fn background_thread_gets_lowest_cpu_and_idle_io_priority() {
        let (nice, ioprio) = std::thread::spawn(|| {
            background_thread().unwrap();
            // SAFETY: plain integers in, no memory touched.
            let tid = unsafe { libc::gettid() };
            // SAFETY: as above.
            let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t) };
            // SAFETY: as above (ioprio_get of the calling thread).
            let io = unsafe { libc::syscall(libc::SYS_ioprio_get, 1 as libc::c_long, 0 as libc::c_long) };
            (nice, io)
        })
        .join()
        .unwrap();
        assert_eq!(nice, 19);
        assert_eq!(ioprio >> 13, 3, "idle I/O class");
    }

    #[test]
    fn write_behind_keeps_the_file_intact() {
        use std::io::{Read, Write};
        let path = std::env::temp_dir().join(format!("xdhcpd-write-behind-{}", std::process::id()));
        let mut f = std::fs::File::options().create(true).truncate(true).read(true).write(true).open(&path).unwrap();
        let chunk = vec![7u8; 1 << 16];
        for i in 0..4u64 {
            f.write_all(&chunk).unwrap();
            write_behind(&f, i << 16, (i + 1) << 16).unwrap();
        }
        let mut back = Vec::new();
        std::fs::File::open(&path).unwrap().read_to_end(&mut back).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(back.len(), 4 << 16);
        assert!(back.iter().all(|&b| b == 7));
    }
}
