//! `cargo xtask setup`: checks each piece the project needs and installs only what is missing,
//! so it is quick on a prepared machine and complete on a fresh one.

use crate::{output, run_cmd, step};
use anyhow::Result;
use std::process::Command;

/// Rust toolchain components the tasks use, per toolchain.
const COMPONENTS: &[(&str, &str)] = &[("stable", "rustfmt"), ("stable", "clippy")];

pub(crate) fn run() -> Result<()> {
    step("setup");
    for (toolchain, component) in COMPONENTS {
        let installed =
            output(Command::new("rustup").args(["component", "list", "--installed", "--toolchain", toolchain]))
                .unwrap_or_default();
        if installed.lines().any(|l| l.starts_with(component)) {
            eprintln!("    {component} ({toolchain}): present");
        } else {
            eprintln!("    {component} ({toolchain}): installing");
            run_cmd(Command::new("rustup").args(["component", "add", component, "--toolchain", toolchain]))?;
        }
    }
    Ok(())
}
