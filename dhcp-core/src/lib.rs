//! The sans-I/O core of xdhcpd, in the order a message meets it:
//!
//! - [`wire`]: zero-copy views over received bytes and writers into a caller's buffer.
//! - [`lease`]: the lease store: the shared lock-free address space and each worker's clients.
//! - [`engine`]: RFC 2131's server side as a state machine: bytes, ingress facts and the time in;
//!   the reply, where it goes, and lease events out.
//! - [`config`]: the configuration model the engine is compiled from, and its validation.
//! - [`client`]: the messages a client sends (tests, tools, the load generator).
//! - [`hint`]: cache prefetches for the packet path.
//!
//! Must never: open a socket or a file, read a clock, spawn a thread, or allocate per message.

pub mod client;
pub mod config;
pub mod engine;
pub mod hint;
pub mod lease;
pub mod wire;
