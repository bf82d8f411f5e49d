//! Which documents a load reads and how: the `Documents` flags and the
//! settings they become, checked before any file is opened.

use std::collections::HashSet;
use std::time::Duration;

use clap::Args;

use crate::settings::{ConfigError, bad};

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Documents")]
pub struct SourceFlags {
    /// Only load files whose path (relative to PATH) matches one of these globs.
    #[arg(long, value_name = "GLOB")]
    pub include: Vec<String>,

    /// Skip files and directories matching these globs (relative to PATH).
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,

    /// Do not skip .git, target, node_modules and similar directories.
    #[arg(long)]
    pub no_default_excludes: bool,

    /// Prefix for stored source paths (and so ids), e.g. `handbook`: keeps two
    /// folders loaded in separate runs into one tenant from sharing ids.
    #[arg(long, value_name = "PREFIX")]
    pub source_prefix: Option<String>,

    /// JSON field holding the text (falls back to `text`).
    #[arg(long, default_value = "content", value_name = "FIELD")]
    pub json_text_field: String,

    /// Files larger than this are refused with a message instead of read.
    #[arg(long, default_value_t = 64, value_name = "MIB")]
    pub max_file_mb: u64,

    /// A PDF or Office file whose text takes longer than this to extract is
    /// skipped (reason "timed out") and the run goes on.
    #[arg(long, default_value_t = 60.0, value_name = "SECONDS")]
    pub extract_timeout: f64,

    /// The encoding of text files that are not UTF-8 (UTF-8 and files with
    /// a byte-order mark are always read as what they are). `auto` detects
    /// it per file (GBK, Big5, Shift_JIS, windows-1252, ...) and skips a
    /// file it cannot tell (reason "unknown encoding").
    #[arg(long, value_name = "auto|NAME")]
    pub encoding: Option<String>,

    /// S3 endpoint for s3:// PATHs, for an S3-compatible store or a VPC
    /// endpoint (default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, else AWS's).
    #[arg(long, value_name = "URL")]
    pub s3_endpoint_url: Option<String>,

    /// Address buckets in the path (https://host/bucket/key) instead of the
    /// host name (also AWS_S3_FORCE_PATH_STYLE=true; always for an endpoint
    /// given by IP address).
    #[arg(long)]
    pub s3_path_style: bool,

    /// Objects downloaded at once from S3.
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub s3_concurrency: usize,
}

#[derive(Debug, Clone)]
pub struct SourceSettings {
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub default_excludes: bool,
    pub json_text_field: String,
    pub max_file_bytes: u64,
    /// Prepended (with `/`) to every stored source path.
    pub source_prefix: Option<String>,
    /// Only these files (paths as stored), from --retry-failed.
    pub only_files: Option<HashSet<String>>,
    /// LightRAG names a document by its file name: two files of one name
    /// would overwrite each other, so the second is refused.
    pub unique_file_names: bool,
    /// A file is one document even when it has pages or sheets (LightRAG
    /// keeps one document per file).
    pub whole_files: bool,
    /// Longest a PDF or Office file may take to extract.
    pub extract_timeout: Duration,
    /// `--encoding`: what a text file that is not UTF-8 is in (None: detect).
    pub encoding: Option<&'static encoding_rs::Encoding>,
    pub s3: S3Settings,
}

/// How s3:// PATHs are reached.
#[derive(Debug, Clone, Default)]
pub struct S3Settings {
    pub endpoint: Option<String>,
    pub path_style: bool,
    pub concurrency: usize,
}

impl SourceFlags {
    /// `lightrag`: documents are read as LightRAG reads them (one per file,
    /// file names unique). `only_files`: --retry-failed's list.
    pub fn settings(
        self,
        lightrag: bool,
        only_files: Option<HashSet<String>>,
    ) -> Result<SourceSettings, ConfigError> {
        if self.max_file_mb == 0 || self.max_file_mb > 4095 {
            return Err(bad("--max-file-mb must be from 1 to 4095"));
        }
        let source_prefix = match self.source_prefix.as_deref().map(|p| p.trim_matches('/')) {
            Some("") => return Err(bad("--source-prefix is empty")),
            Some(p) => Some(p.to_string()),
            None => None,
        };
        Ok(SourceSettings {
            include: self.include,
            exclude: self.exclude,
            default_excludes: !self.no_default_excludes,
            json_text_field: self.json_text_field,
            max_file_bytes: self.max_file_mb * 1024 * 1024,
            source_prefix,
            only_files,
            unique_file_names: lightrag,
            whole_files: lightrag,
            extract_timeout: extract_timeout(self.extract_timeout)?,
            encoding: source_encoding(self.encoding.as_deref())?,
            s3: {
                if self.s3_concurrency == 0 || self.s3_concurrency > 256 {
                    return Err(bad("--s3-concurrency must be from 1 to 256"));
                }
                S3Settings {
                    endpoint: self.s3_endpoint_url,
                    path_style: self.s3_path_style,
                    concurrency: self.s3_concurrency,
                }
            },
        })
    }
}

impl SourceSettings {
    /// What `vecload extract FILE` reads with: everything, whatever its size.
    pub fn for_one_file(extract_timeout: Duration) -> SourceSettings {
        SourceSettings {
            include: Vec::new(),
            exclude: Vec::new(),
            default_excludes: false,
            json_text_field: "content".into(),
            max_file_bytes: 4095 * 1024 * 1024,
            source_prefix: None,
            only_files: None,
            unique_file_names: false,
            whole_files: false,
            extract_timeout,
            encoding: None,
            s3: S3Settings::default(),
        }
    }
}

/// `--encoding`: `auto` (or unset) detects; anything else must be an
/// encoding's WHATWG name or label.
fn source_encoding(
    label: Option<&str>,
) -> Result<Option<&'static encoding_rs::Encoding>, ConfigError> {
    match label.map(str::trim) {
        None | Some("auto") => Ok(None),
        Some(l) => super::encoding::by_label(l).map(Some).ok_or_else(|| {
            bad(format!(
                "--encoding {l:?} is not an encoding name; use auto, or e.g. gbk, gb18030, \
                 big5, shift_jis, euc-kr, windows-1252, latin1, utf-16le"
            ))
        }),
    }
}

/// `--extract-timeout`: seconds, more than 0.
pub fn extract_timeout(secs: f64) -> Result<Duration, ConfigError> {
    if !(secs.is_finite() && secs > 0.0 && secs <= 86_400.0) {
        return Err(bad(format!(
            "--extract-timeout must be a number of seconds from 0 to 86400 (not {secs})"
        )));
    }
    Ok(Duration::from_secs_f64(secs))
}
