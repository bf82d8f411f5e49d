//! `--report` written where it names (a file, stdout, or an S3 object), and
//! the summary shown as the log format wants it.

use std::io::Write;

use crate::report::output::{self, ReportTo};
use crate::source::s3::S3;
use crate::source::settings::S3Settings;

/// The S3 client for a report in S3: the source's endpoint settings when
/// the run has them, else the environment's.
fn s3(s3: Option<&S3Settings>) -> anyhow::Result<S3> {
    S3::from_settings(&s3.cloned().unwrap_or_default())
}

/// Before the run: an S3 destination gets a "running" marker, so a bucket
/// the task may not write to is found before anything is paid for, and a
/// run that dies leaves a report saying it never finished.
pub fn check(
    runtime: &tokio::runtime::Runtime,
    to: &ReportTo,
    settings: Option<&S3Settings>,
) -> Result<(), String> {
    let ReportTo::S3 { bucket, key } = to else {
        return Ok(());
    };
    let marker = serde_json::json!({
        "status": "running",
        "started_at": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default(),
    });
    runtime
        .block_on(async {
            s3(settings)?
                .put(
                    bucket,
                    key,
                    marker.to_string().into_bytes(),
                    "application/json",
                )
                .await
                .map_err(anyhow::Error::from)
        })
        .map_err(|e| format!("--report {}: cannot write it: {e:#}", to.describe()))
}

/// The report as JSON where `--report` says; false (and said) if it could
/// not be written.
pub fn write(
    runtime: &tokio::runtime::Runtime,
    to: &ReportTo,
    settings: Option<&S3Settings>,
    report: &impl serde::Serialize,
) -> bool {
    let result = match to {
        ReportTo::Stdout => {
            let line = serde_json::to_string(report).unwrap_or_default();
            writeln!(std::io::stdout(), "{line}").map_err(anyhow::Error::from)
        }
        ReportTo::File(path) => {
            let json = serde_json::to_string_pretty(report).unwrap_or_default();
            std::fs::write(path, json + "\n").map_err(anyhow::Error::from)
        }
        ReportTo::S3 { bucket, key } => {
            let json = serde_json::to_string_pretty(report).unwrap_or_default();
            runtime.block_on(async {
                s3(settings)?
                    .put(bucket, key, (json + "\n").into_bytes(), "application/json")
                    .await
                    .map_err(anyhow::Error::from)
            })
        }
    };
    match result {
        Ok(()) => true,
        Err(e) => {
            output::error(format!("cannot write --report {}: {e:#}", to.describe()));
            false
        }
    }
}

/// The summary at the end: text on stdout, or with --log-format json the
/// report as one JSON line (unless --report - printed it already).
pub fn summary(text: &str, report: &impl serde::Serialize, to: Option<&ReportTo>, quiet: bool) {
    if output::json() {
        if to != Some(&ReportTo::Stdout) {
            println!("{}", serde_json::to_string(report).unwrap_or_default());
        }
    } else if !quiet && to != Some(&ReportTo::Stdout) {
        print!("{text}");
    }
}
