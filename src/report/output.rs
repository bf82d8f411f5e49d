//! Where a run's words go. On a terminal: text on stderr, the summary on
//! stdout. With `--log-format json` (a container whose log driver ships
//! lines to CloudWatch Logs or Loki): one JSON object per line on stderr,
//! errors included, and the final report as one JSON line on stdout, so
//! every line can be queried by its fields.
//!
//! `--report` names a file, `-` (stdout) or an S3 object.

use std::path::PathBuf;
use std::sync::OnceLock;

use crate::settings::{ConfigError, bad};

static JSON: OnceLock<bool> = OnceLock::new();

/// Set once by `main`, before anything is said.
pub fn use_json(on: bool) {
    let _ = JSON.set(on);
}

pub fn json() -> bool {
    JSON.get().copied().unwrap_or(false)
}

/// A run that cannot go on, or an outcome that is not success: said once.
pub fn error(msg: impl std::fmt::Display) {
    if json() {
        tracing::error!("{msg}");
    } else {
        eprintln!("vecload: error: {msg}");
    }
}

/// A reason a plan or a verification does not hold (`what`: "problem",
/// "not verified").
pub fn problem(what: &str, msg: impl std::fmt::Display) {
    if json() {
        tracing::error!(kind = what, "{msg}");
    } else {
        eprintln!("vecload: {what}: {msg}");
    }
}

/// `--report`'s destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportTo {
    File(PathBuf),
    Stdout,
    S3 { bucket: String, key: String },
}

impl ReportTo {
    pub fn parse(given: &str) -> Result<ReportTo, ConfigError> {
        if given == "-" {
            return Ok(ReportTo::Stdout);
        }
        let Some(rest) = given.strip_prefix("s3://") else {
            return Ok(ReportTo::File(PathBuf::from(given)));
        };
        match rest.split_once('/') {
            Some((bucket, key)) if !bucket.is_empty() && !key.is_empty() && !key.ends_with('/') => {
                Ok(ReportTo::S3 {
                    bucket: bucket.to_string(),
                    key: key.to_string(),
                })
            }
            _ => Err(bad(format!(
                "--report {given}: name the object, s3://BUCKET/KEY (e.g. s3://b/reports/run.json)"
            ))),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            ReportTo::File(p) => p.display().to_string(),
            ReportTo::Stdout => "stdout".into(),
            ReportTo::S3 { bucket, key } => format!("s3://{bucket}/{key}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_destinations() {
        assert_eq!(ReportTo::parse("-").unwrap(), ReportTo::Stdout);
        assert_eq!(
            ReportTo::parse("out/r.json").unwrap(),
            ReportTo::File("out/r.json".into())
        );
        assert_eq!(
            ReportTo::parse("s3://b/runs/1.json").unwrap(),
            ReportTo::S3 {
                bucket: "b".into(),
                key: "runs/1.json".into()
            }
        );
        assert!(ReportTo::parse("s3://b").is_err());
        assert!(ReportTo::parse("s3://b/dir/").is_err());
    }
}
