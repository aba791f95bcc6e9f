//! `xdhcp-bench`: the DHCPv4 load generator (`xdhcp-bench --interface IF ...`, or `--relay
//! IP --server IP` as relay agents) and its reflector (`xdhcp-bench reflector --interface IF`).
//! See `dhcp_user::bench`.

fn main() -> std::process::ExitCode {
    dhcp_user::bench::cli::main()
}
