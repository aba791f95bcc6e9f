//! `xdhcp-bench`: the DHCPv4 load generator (`xdhcp-bench --interface IF ...`, or `--relay
//! IP --server IP` as relay agents) and its reflector (`xdhcp-bench reflector --interface IF`).
//! The library `xdhcp_bench` does the work; this binary parses the command line and prints.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
