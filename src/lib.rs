//! vecload: re-embed documents and bulk-load the vectors into a vector store.
//!
//! The binary is a thin shell over `run`; integration tests drive the binary.
//! ARCHITECTURE.md draws the pipeline and says which module may import
//! which: `records` and `settings` at the bottom, the stages (`source`,
//! `chunk`, `embed`, `store`) above them, `state` and `report` beside,
//! `run` (the driver) over all of those, and `commands` (with `cli`) on top.

pub mod aws;
pub mod backoff;
pub mod chunk;
pub mod cli;
pub mod commands;
pub mod embed;
pub mod layout;
pub mod outage;
pub mod pools;
pub mod records;
pub mod report;
pub mod run;
pub mod settings;
pub mod shard;
pub mod source;
pub mod space;
pub mod state;
pub mod store;

use std::process::ExitCode;

/// Exit codes: 0 all loadable input written (or, for `plan`, no problem);
/// 1 some chunks not written or the run stopped on an error; 2 a setting or
/// the target is wrong (nothing was sent or written); 130 interrupted.
pub const EXIT_OK: u8 = 0;
pub const EXIT_INCOMPLETE: u8 = 1;
pub const EXIT_CONFIG: u8 = 2;
pub const EXIT_INTERRUPTED: u8 = 130;

pub fn run(cli: cli::Cli) -> ExitCode {
    commands::run(cli)
}
