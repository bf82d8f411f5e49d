use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = vecload::cli::Cli::parse();
    let default = match (cli.quiet, cli.verbose) {
        (true, _) => "warn",
        (_, 0) => "info",
        (_, 1) => "vecload=debug,info",
        _ => "vecload=trace,debug",
    };
    let filter = EnvFilter::try_from_env("VECLOAD_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let json = cli.log_format == vecload::cli::LogFormat::Json;
    vecload::report::output::use_json(json);
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| vecload::report::progress::LogWriter)
        .with_target(false);
    if json {
        // One object per line, the event's fields at the top level.
        logs.json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init();
    } else {
        logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
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

/// glibc gives threads malloc arenas of their own (up to 8 per core), and
/// vectors allocated on one thread and freed on another leave each arena
/// holding memory it never returns: a million-chunk load grew to 500 MB of
/// RSS on a heap that never passed 160 MB. Two arenas keep it flat
/// (BENCHMARKS.md, "Memory"), for a few percent of speed. A MALLOC_ARENA_MAX
/// set by the user wins.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    const M_ARENA_MAX: libc::c_int = -8;
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: called first thing in main, before any other thread
        // exists; mallopt only sets a glibc tunable.
        unsafe {
            libc::mallopt(M_ARENA_MAX, 2);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}
