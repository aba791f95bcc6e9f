//! `xdhcp-bench`: the DHCPv4 load generator (`xdhcp-bench --interface IF ...`, or `--relay
//! IP --server IP` as relay agents) and its reflector (`xdhcp-bench reflector --interface IF`).
//! See the library, `xdhcp_bench`.

fn main() -> std::process::ExitCode {
    xdhcp_bench::cli::main()
}
