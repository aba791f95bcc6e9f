//! xdhcpd user space: the library behind the `xdhcpd` binary.
//!
//! The path of one message, top to bottom: [`udp`] (or, later, `xsk`) receives a batch →
//! [`worker`] runs each message through its [`engine`] (which uses [`lease`] and answers in
//! [`wire`] format) → the batch's lease changes go to the [`journal`] → replies go out.
//! [`config`] and [`cli`] read what to serve; [`server`] puts it together; [`xdp`] attaches the
//! steering program; [`client`] builds client messages for tests and tools.

pub mod bench;
pub mod cli;
pub mod client;
pub mod config;
pub mod engine;
pub mod journal;
pub mod lease;
pub mod server;
pub mod sys;
pub mod udp;
pub mod wire;
pub mod worker;
pub mod xdp;
pub mod xsk;
