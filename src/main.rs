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
    // Binary documents are parsed in child processes of this very binary;
    // /proc/self/exe stays right even if the file is replaced meanwhile.
    let exe = std::path::PathBuf::from("/proc/self/exe");
    vecload::source::extract::isolate_in(if exe.exists() {
        exe
    } else {
        std::env::current_exe().unwrap_or_else(|_| "vecload".into())
    });
    vecload::run(cli)
}
