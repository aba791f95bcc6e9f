//! xdhcpd user space.
//!
//! - [`wire`]: zero-copy views and writers for DHCPv4, Ethernet/VLAN, IPv4, UDP.
//! - [`lease`]: the lease store: lock-free address allocation shared by all workers, and the
//!   per-worker client table with its timer wheel.
//! - [`engine`]: the sans-I/O DHCP server state machine (bytes + ingress facts + time in,
//!   reply + lease changes out).
//! - [`config`]: the server's configuration model (subnets, pools, reservations, options).

pub mod cli;
pub mod client;
pub mod config;
pub mod engine;
pub mod journal;
pub mod lease;
pub mod server;
pub mod udp;
pub mod wire;
pub mod worker;
pub mod xdp;
