//! The configuration: the model and its validation live in [`dhcp_core::config`]; this module
//! reads it from TOML or flags, with the place of every error, and checks it against this host.
//!
//! - `schema.rs`: the TOML file as written (serde structs, unknown keys refused)
//! - `value.rs`: parsers of the values written as text, shared with the command line
//! - `decode.rs`: file text → [`Config`] + [`ServerSettings`], errors at `FILE:LINE:COLUMN`
//! - `settings.rs`: the server's own settings, their defaults and limits
//! - `isp.rs`: classes, class-kept pools, reservations by option 82, leasequery
//! - `cluster.rs`: `[cluster]` (several nodes sharing the pools through NATS)
//! - `source.rs`: where each value was given, by its path in the model
//! - `host.rs`: checks against this host's interfaces and addresses

pub use dhcp_core::config::*;

mod cluster;
mod decode;
mod host;
mod isp;
mod schema;
mod settings;
mod source;
mod value;

pub(crate) use decode::{decode, finish, read};
pub use decode::{load, parse};
pub use host::{check_host, check_interfaces, host_ipv4_addrs, interface_exists};
pub use settings::{Backend, ServerConfig, ServerSettings};
pub(crate) use source::Loc;
pub use source::{FileError, SourceMap, COMMAND_LINE};
pub(crate) use value::{check_server_id, parse_ifname};
pub use value::{parse_hex, parse_mac, parse_pool, parse_relay};

/// Helpers of the tests of the configuration modules.
#[cfg(test)]
mod testing {
    use core::net::Ipv4Addr;

    use super::{parse, FileError, Pool};

    pub(super) fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    pub(super) fn pool(a: &str, b: &str) -> Pool {
        Pool { first: ip(a), last: ip(b) }
    }

    /// Parses `text` expecting an error; returns it.
    pub(super) fn fails(text: &str) -> FileError {
        match parse(text, "t.toml") {
            Ok(_) => panic!("parsed:\n{text}"),
            Err(e) => e,
        }
    }

    /// The 1-based line of the first line of `text` containing `needle`.
    pub(super) fn line_of(text: &str, needle: &str) -> usize {
        text.lines().position(|l| l.contains(needle)).expect(needle) + 1
    }

    pub(super) const MINIMAL: &str = "server_id = \"100.64.0.1\"\n\
        [[subnet]]\n\
        subnet = \"100.64.0.0/24\"\n\
        interface = \"eth0\"\n\
        pools = [\"100.64.0.10-100.64.0.99\"]\n";
}
