use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = vecload::cli::Cli::parse();
    let default = match (cli.quiet, cli.verbose) {
        (true, _) => "warn",
        (_, 0) => "info",
        (_, 1) => "vecload=debug,info",
        _ => "vecload=trace,debug",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("VECLOAD_LOG").unwrap_or_else(|_| EnvFilter::new(default)),
        )
        .with_writer(|| vecload::progress::LogWriter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    vecload::run(cli)
}
