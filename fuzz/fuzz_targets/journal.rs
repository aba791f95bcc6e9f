//! Fuzz target `journal`: see [`xdhcpd_fuzz::journal`] for what it feeds and what it asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| xdhcpd_fuzz::journal::run(data));
