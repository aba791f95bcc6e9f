//! The `cutfs` binary as the power-cut test starts it. Being an integration test of this
//! package also makes `cargo test --workspace` build the binary (`target/PROFILE/cutfs`) that
//! tests/powercut.rs runs.

use std::process::Command;

#[test]
fn without_its_two_paths_it_prints_its_usage_and_fails() {
    let out = Command::new(env!("CARGO_BIN_EXE_cutfs")).output().expect("running cutfs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("usage: cutfs MOUNTPOINT CONTROL_SOCKET"), "{err}");
}
