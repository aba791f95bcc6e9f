//! The fuzz harnesses of xdhcpd, one module per target (`fuzz_targets/*.rs` call `run`), plus
//! the seed corpus builder (`examples/seeds.rs`). Each harness feeds its input to the server's
//! own code and asserts what must hold for any input: no panic, bounded memory, and the
//! invariants named in its module.

pub mod config;
pub mod engine;
pub mod frame;
pub mod journal;
pub mod options;
pub mod seeds;
