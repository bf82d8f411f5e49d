//! Documents from the file system: which files, and the text in them.
//!
//! Everything here runs on the rayon pool, one file per task. A file that
//! cannot be loaded becomes a `Skip` with its path and a reason; it never ends
//! the run.

pub mod extract;
mod formats;
pub mod walk;

use std::path::Path;

use serde::Serialize;

pub use formats::{Format, format_name, read_file};
pub use walk::{FileEntry, Filter, Walk, walk};

/// A file passed over. `reason` is a short fixed label for counting; `detail`
/// says what exactly was wrong.
#[derive(Debug, Clone, Serialize)]
pub struct Skip {
    pub path: String,
    pub reason: &'static str,
    pub detail: String,
}

impl Skip {
    pub fn new(path: &Path, reason: &'static str, detail: impl Into<String>) -> Skip {
        Skip {
            path: path.display().to_string(),
            reason,
            detail: detail.into(),
        }
    }
}
