//! Fuzz target `frame`: see [`xdhcpd_fuzz::frame`] for what it feeds and what it asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| xdhcpd_fuzz::frame::run(data));
