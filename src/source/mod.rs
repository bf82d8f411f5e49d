//! Where texts come from: documents from the file system (which files, and
//! the text in them), and for `reembed` the stores and chunk stores named by
//! `--from` (`from`, `lightrag`).
//!
//! Files are read on the chunking pool, one file per task. A file that
//! cannot be loaded becomes a `Skip` with its path and a reason; it never ends
//! the run.

pub mod encoding;
pub mod extract;
mod formats;
pub mod from;
pub mod lightrag;
mod man;
pub mod s3;
pub mod settings;
pub mod walk;

pub use formats::{FileDocs, Format, format_name, read_file};
pub use walk::{FileEntry, Filter, Walk, walk};
