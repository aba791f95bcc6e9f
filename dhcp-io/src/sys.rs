//! Small system-call helpers shared by the server's socket path and the load generator:
//! checked results, socket options, addresses, waiting on one descriptor, CPU pinning.

use std::io;
use std::mem::size_of;
use std::net::SocketAddrV4;
use std::os::fd::RawFd;
use std::time::Duration;

/// `rc` as a result, with `what` in the error.
pub fn check(rc: libc::c_int, what: &str) -> io::Result<libc::c_int> {
    if rc < 0 {
        let e = io::Error::last_os_error();
        Err(io::Error::new(e.kind(), format!("{what}: {e}")))
    } else {
        Ok(rc)
    }
}

/// Sets a socket option of type `T`.
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

/// Waits until `fd` has input (or room for output when `out`) or `timeout` passes. An
/// interrupted wait returns normally: the caller's loop checks its stop flag.
pub fn wait_fd(fd: RawFd, out: bool, timeout: Duration) -> io::Result<()> {
    let mut p = libc::pollfd { fd, events: libc::POLLIN | if out { libc::POLLOUT } else { 0 }, revents: 0 };
    let ts = libc::timespec { tv_sec: timeout.as_secs() as libc::time_t, tv_nsec: timeout.subsec_nanos() as _ };
    // SAFETY: one valid pollfd, a valid timespec, no signal mask.
    let rc = unsafe { libc::ppoll(&mut p, 1, &ts, std::ptr::null()) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted { Ok(()) } else { Err(e) };
    }
    Ok(())
}

/// Whether the last error was "try again later" (full queue) rather than a failure.
pub fn is_transient(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::ENOBUFS) | Some(libc::EINTR))
}

/// Pins the calling thread to one CPU: measurements on a machine of two cores are only
/// repeatable when generator and server do not share one.
pub fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    if cpu >= 8 * size_of::<libc::cpu_set_t>() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("no CPU {cpu}")));
    }
    // SAFETY: `cpu` is checked to be within the set above.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: a valid set of the given size; 0 is the calling thread.
    let rc = unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) };
    check(rc, "sched_setaffinity").map(|_| ())
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
