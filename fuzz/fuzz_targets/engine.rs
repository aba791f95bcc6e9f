//! Fuzz target `engine`: see [`xdhcpd_fuzz::engine`] for what it feeds and what it asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: xdhcpd_fuzz::engine::Input| xdhcpd_fuzz::engine::run(&input));
