//! `berth`: the node agent (`berth agent`) and the kubectl-like client, in one binary.

use std::process::ExitCode;

use berth_agent::cli::args::{Cli, Command};
use berth_agent::config::AgentConfig;
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Agent(mut flags) => {
            flags.socket = cli.socket.clone();
            let config = match AgentConfig::resolve(flags) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {}", berth_agent::kubelet::images::error_chain(&e));
                    return ExitCode::FAILURE;
                }
            };
            berth_agent::daemon::init_logging(config.log_format);
            berth_agent::daemon::limit_malloc_arenas();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .thread_name("berth-agent")
                .build()
                .expect("tokio runtime");
            match runtime.block_on(berth_agent::daemon::run(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        command => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            let socket = cli.socket.unwrap_or_else(|| "/run/berth/berth.sock".into());
            runtime.block_on(berth_agent::cli::run(socket, command))
        }
    }
}
