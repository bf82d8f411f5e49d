//! The record of what a run has written, so a killed run resumes without
//! paying twice and an unchanged rerun costs nothing: the state file
//! (`file`, redb) and the bookkeeping around it (`ledger`). The store is
//! checked wherever the state could be behind it (write intents left by a
//! crash), so the file only ever saves work.

pub mod batches;
pub mod file;
pub mod ledger;
mod recorder;

pub use batches::BatchRec;
pub use file::State;
pub use ledger::{DocWork, Ledger, Unchanged};
