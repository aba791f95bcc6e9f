//! `xdhcpd`: the DHCPv4 server. `xdhcpd serve ...` runs it; `xdhcpd check-config FILE` checks a
//! configuration file and the host it is meant for (`--offline`: the file alone), and touches
//! nothing. `xdhcpd leases|stats|reload` talk to a running server's control API.

use clap::Parser;
use dhcp_user::cli::{Cli, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    dhcp_user::logging::init(cli.log_level);
    match cli.command {
        Command::CheckConfig { file, offline } => {
            let checked =
                if offline { dhcp_user::cli::check_config_offline(&file) } else { dhcp_user::cli::check_config(&file) };
            match checked {
                Ok(_) if offline => {
                    println!("{}: ok (this host's interfaces and addresses not checked)", file.display());
                    ExitCode::SUCCESS
                }
                Ok(_) => {
                    println!("{}: ok", file.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Serve(args) => {
            let cfg = match args.load_checked() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            let reloader: dhcp_user::control::Reloader = Box::new(move || args.load_checked());
            match dhcp_user::server::run_reloadable(cfg, Some(reloader)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    log::error!("{e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Leases(a) => api(dhcp_user::control::commands::leases(&a)),
        Command::Stats(a) => api(dhcp_user::control::commands::stats(&a)),
        Command::Reload(a) => api(dhcp_user::control::commands::reload(&a)),
    }
}

fn api(done: anyhow::Result<()>) -> ExitCode {
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
