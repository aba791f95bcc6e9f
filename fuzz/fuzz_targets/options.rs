//! Fuzz target `options`: see [`xdhcpd_fuzz::options`] for what it feeds and what it asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| xdhcpd_fuzz::options::run(data));
