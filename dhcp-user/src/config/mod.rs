//! The configuration: the model and its validation live in [`dhcp_core::config`]; reading it
//! from TOML, with the place of every error, and checking it against this host is [`file`].

pub use dhcp_core::config::*;

pub mod file;
