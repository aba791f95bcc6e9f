//! Fuzz target `config`: see [`xdhcpd_fuzz::config`] for what it feeds and what it asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| xdhcpd_fuzz::config::run(data));
