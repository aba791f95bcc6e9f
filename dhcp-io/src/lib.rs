//! Packet I/O for xdhcpd: every socket, ring and system call of the packet path, and the only
//! `unsafe` that touches them.
//!
//! - [`udp`]: the socket path (one `SO_REUSEPORT` socket per worker, a classic-BPF program
//!   picking the worker).
//! - [`xsk`]: the kernel-bypass path (AF_XDP sockets on a shared UMEM per receive queue).
//! - [`xdp`]: loads and attaches the steering program (`dhcp-ebpf`) that feeds [`xsk`].
//! - [`sys`]: small system-call helpers.

pub mod sys;
pub mod udp;
pub mod xdp;
pub mod xsk;
