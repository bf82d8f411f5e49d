//! `vecload extract FILE`: the documents a load reads from one file, or why
//! it reads none. With `--json --kind K` it is the child process that
//! `source::extract` runs for each PDF or Office file.

use std::process::ExitCode;

use crate::cli::ExtractArgs;
use crate::source;
use crate::source::settings::SourceSettings;
use crate::{EXIT_CONFIG, EXIT_INCOMPLETE, EXIT_OK};

/// `vecload extract FILE`: the documents a load reads from one file. With
/// `--json --kind K` it is the child process `source::extract` runs.
pub fn extract(args: ExtractArgs) -> ExitCode {
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
    let timeout = match source::settings::extract_timeout(args.extract_timeout) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("vecload: error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let cfg = SourceSettings::for_one_file(timeout);
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
        Ok(source::FileDocs { docs, decoded_from }) => {
            if let Some(enc) = decoded_from {
                eprintln!("vecload: {} decoded from {enc}", args.file.display());
            }
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
