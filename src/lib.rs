//! vecload: re-embed documents and bulk-load the vectors into a vector store.
//!
//! The binary is a thin shell over `run`; integration tests drive the binary.

pub mod chunk;
pub mod cli;
pub mod config;
pub mod embed;
pub mod incremental;
pub mod layout;
pub mod pipeline;
pub mod plan;
pub mod progress;
pub mod reembed;
pub mod report;
pub mod search;
pub mod sink;
pub mod source;
pub mod state;
pub mod test_server;

use std::process::ExitCode;

use cli::{Cli, Command};
use config::Config;

/// Exit codes: 0 all loadable input written (or, for `plan`, no problem);
/// 1 some chunks not written or the run stopped on an error; 2 a setting or
/// the target is wrong (nothing was sent or written); 130 interrupted.
pub const EXIT_OK: u8 = 0;
pub const EXIT_INCOMPLETE: u8 = 1;
pub const EXIT_CONFIG: u8 = 2;
pub const EXIT_INTERRUPTED: u8 = 130;

pub fn run(cli: Cli) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vecload: error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_INCOMPLETE);
        }
    };
    match cli.command {
        Command::Load(args) => load(&runtime, args, cli.quiet),
        Command::Plan(args) => plan(&runtime, args, cli.quiet),
        Command::Search(args) => search(&runtime, args),
        Command::Reembed(args) => reembed(&runtime, args, cli.quiet),
        Command::Extract(args) => extract(args),
    }
}

/// `vecload extract FILE`: the documents a load reads from one file. With
/// `--json --kind K` it is the child process `source::extract` runs.
fn extract(args: cli::ExtractArgs) -> ExitCode {
    use source::extract::Kind;
    if let Some(kind) = &args.kind {
        let kind: Kind = match serde_json::from_value(serde_json::Value::from(kind.as_str())) {
            Ok(k) => k,
            Err(_) => {
                eprintln!("vecload: error: --kind {kind:?} is not a document kind");
                return ExitCode::from(EXIT_CONFIG);
            }
        };
        println!("{}", source::extract::child_main(&args.file, kind));
        return ExitCode::from(EXIT_OK);
    }
    let timeout = match config::extract_timeout(args.extract_timeout) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("vecload: error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let cfg = config::SourceConfig {
        include: Vec::new(),
        exclude: Vec::new(),
        default_excludes: false,
        json_text_field: "content".into(),
        max_file_bytes: 4095 * 1024 * 1024,
        source_prefix: None,
        only_files: None,
        unique_file_names: false,
        whole_files: false,
        extract_timeout: timeout,
    };
    let rel = args
        .file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let entry = source::FileEntry {
        path: args.file.clone(),
        rel,
    };
    match source::read_file(&entry, &cfg) {
        Ok(docs) => {
            // Written, not println!ed: `vecload extract big.pdf | head`
            // closes the pipe early, which is no error.
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = if args.json {
                let docs: Vec<_> = docs
                    .iter()
                    .map(|d| {
                        serde_json::json!({
                            "source": d.source, "page": d.page, "records": d.records, "text": d.text
                        })
                    })
                    .collect();
                writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&docs).unwrap_or_default()
                )
            } else {
                docs.iter()
                    .try_for_each(|d| writeln!(out, "==> {} <==\n{}", d.source, d.text.trim_end()))
            };
            ExitCode::from(EXIT_OK)
        }
        Err(skip) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&skip).unwrap_or_default()
                );
            }
            eprintln!(
                "vecload: {} skipped ({}): {}",
                skip.path, skip.reason, skip.detail
            );
            ExitCode::from(EXIT_INCOMPLETE)
        }
    }
}

fn search(runtime: &tokio::runtime::Runtime, args: cli::SearchArgs) -> ExitCode {
    let cfg = match config::SearchConfig::from_args(args, |k| std::env::var(k).ok()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vecload: error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match runtime.block_on(search::search(&cfg)) {
        Ok(hits) => {
            if cfg.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&hits).unwrap_or_default()
                );
            } else {
                print!("{}", search::human(&cfg, &hits));
            }
            ExitCode::from(EXIT_OK)
        }
        Err(e) => {
            eprintln!("vecload: error: {e:#}");
            ExitCode::from(EXIT_INCOMPLETE)
        }
    }
}

/// `--report`: the run summary as JSON; false (and said) if it cannot be written.
fn write_report(path: &std::path::Path, report: &impl serde::Serialize) -> bool {
    let json = serde_json::to_string_pretty(report).unwrap_or_default();
    match std::fs::write(path, json + "\n") {
        Ok(()) => true,
        Err(e) => {
            eprintln!(
                "vecload: error: cannot write --report {}: {e}",
                path.display()
            );
            false
        }
    }
}

fn reembed(runtime: &tokio::runtime::Runtime, args: cli::ReembedArgs, quiet: bool) -> ExitCode {
    let cfg = match reembed::ReembedConfig::from_args(args, |k| std::env::var(k).ok()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vecload: error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let mode = progress::resolve(cfg.progress, quiet);
    let report_path = cfg.report.clone();
    let report = match runtime.block_on(reembed::run(cfg, mode)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vecload: error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if !quiet {
        print!("{}", report.summary());
    }
    if let Some(path) = report_path
        && !write_report(&path, &report)
    {
        return ExitCode::from(EXIT_INCOMPLETE);
    }
    if report.interrupted {
        return ExitCode::from(EXIT_INTERRUPTED);
    }
    if let Some(e) = &report.error {
        eprintln!("vecload: error: {e}");
    }
    if report.failed_chunks > 0 {
        eprintln!(
            "vecload: error: {} rows were not re-embedded; run again to retry them",
            report.failed_chunks
        );
    }
    for p in &report.problems {
        eprintln!("vecload: not verified: {p}");
    }
    if report.succeeded() {
        ExitCode::from(EXIT_OK)
    } else {
        ExitCode::from(EXIT_INCOMPLETE)
    }
}

fn plan(runtime: &tokio::runtime::Runtime, args: cli::PlanArgs, quiet: bool) -> ExitCode {
    let json = args.json;
    let report_path = args.load.report.clone();
    let plan = runtime.block_on(plan::plan(args));
    let text = serde_json::to_string_pretty(&plan).unwrap_or_default();
    if json {
        println!("{text}");
    } else if !quiet {
        print!("{}", plan.human());
    }
    if let Some(path) = report_path
        && let Err(e) = std::fs::write(&path, text + "\n")
    {
        eprintln!(
            "vecload: error: cannot write --report {}: {e}",
            path.display()
        );
        return ExitCode::from(EXIT_INCOMPLETE);
    }
    if plan.problems.is_empty() {
        ExitCode::from(EXIT_OK)
    } else {
        for p in &plan.problems {
            eprintln!("vecload: problem: {p}");
        }
        ExitCode::from(EXIT_CONFIG)
    }
}

fn load(runtime: &tokio::runtime::Runtime, args: cli::LoadArgs, quiet: bool) -> ExitCode {
    let cfg = match Config::from_load_args(args, |k| std::env::var(k).ok()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vecload: error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let mode = progress::resolve(cfg.progress, quiet);
    let report_path = cfg.report.clone();
    let report = match runtime.block_on(pipeline::load(cfg, mode)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vecload: error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if !quiet {
        print!("{}", report.summary());
    }
    if let Some(path) = report_path
        && !write_report(&path, &report)
    {
        return ExitCode::from(EXIT_INCOMPLETE);
    }
    let code = if report.interrupted {
        EXIT_INTERRUPTED
    } else if report.error.is_some() || report.failed_chunks > 0 {
        if let Some(e) = &report.error {
            eprintln!("vecload: error: {e}");
        }
        if report.failed_chunks > 0 {
            eprintln!(
                "vecload: error: {} chunks were not written (listed above{})",
                report.failed_chunks,
                if report.failed_chunks > 20 {
                    " and in --report"
                } else {
                    ""
                }
            );
        }
        EXIT_INCOMPLETE
    } else {
        EXIT_OK
    };
    ExitCode::from(code)
}
