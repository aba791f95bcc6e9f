//! xdhcpd, the server: the library behind the `xdhcpd` binary.
//!
//! The path of one message, top to bottom: the I/O layer ([`dhcp_io`]) receives a batch →
//! [`worker`] runs each message through its [`engine`] (which uses [`lease`] and answers in
//! [`wire`] format) → the batch's lease changes go to the [`journal`] → replies go out.
//! [`config`] and [`cli`] read what to serve; [`server`] puts it together ([`restore`] puts the
//! recovered leases into the engines); [`privilege`] gives
//! up what serving does not need once set up; [`service`] tells a service manager how it goes;
//! [`logging`] is the binary's logger behind the `log` facade; [`clock`] the one wall clock.

pub use dhcp_core::{client, engine, lease, wire};
pub use dhcp_io::{sys, udp, xdp, xsk};

pub mod cli;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod control;
pub mod journal;
pub mod kernel_renew;
pub mod logging;
pub mod privilege;
pub mod restore;
pub mod server;
pub mod service;
pub mod worker;
