//! `xdhcp-bench`, the load generator, and its reflector.
//!
//! - [`gen`]: emulated clients (12 bytes each in a flat table), scenarios, reply checks
//!   (matching, duplicate addresses), the run loop.
//! - [`flood`]: the `starvation` scenario's flooding circuit (new identities, no state per
//!   DISCOVER).
//! - [`transport`]: the [`transport::Transport`] trait the generator and reflector run over;
//!   [`packet`] implements it with an `AF_PACKET` socket and `recvmmsg`/`sendmmsg` (raw
//!   frames, direct mode), [`ring`] with the same socket and memory-mapped rings, [`relay`]
//!   with a UDP socket acting as relay agents, [`xsk`] with an AF_XDP socket.
//! - [`reflector`]: a stateless responder writing canned replies in place: the I/O ceiling.
//! - [`hist`]: the latency histogram (HdrHistogram).
//! - [`leases`]: lease lists written after a run and read before one (`--leases-out/-in`).
//! - [`report`]: the JSON report and the final table; [`svg`]: the plots.
//! - the command line is the binary's (`main.rs`, `cli.rs`): it alone prints.
//!
//! Nothing on the per-packet path allocates: buffers, the client table, the send queue and the
//! address map are sized when a run starts.

pub mod flood;
pub mod gen;
pub mod hist;
pub mod leases;
pub mod packet;
pub mod reflector;
pub mod relay;
pub mod report;
pub mod ring;
pub mod svg;
pub mod transport;
pub mod xsk;

#[cfg(test)]
mod tests;
