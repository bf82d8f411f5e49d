//! What a worker of a sharded run leaves in the target when it ends well,
//! so that the finish step can tell a missing or short shard from a
//! complete run before it builds the index and says the count is right.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardReport {
    /// I of I/N.
    pub shard: u32,
    /// N of I/N.
    pub shards: u32,
    /// Rows the shard's documents have now (written before or this run),
    /// failed chunks not counted: what the store should hold of them.
    pub rows: u64,
    /// Vectors this run wrote.
    pub written: u64,
    /// Chunks that could not be embedded or written (the worker's dead letters).
    #[serde(default)]
    pub failed: u64,
    /// Which worker (host, process), for the finish step's messages.
    pub run: String,
    /// Seconds since the Unix epoch when it ended.
    pub at: u64,
}

/// How often a running worker says again that it runs its shard; a
/// store without locks counts a claim as running for three times this.
pub const CLAIM_REFRESH_SECS: u64 = 30;

/// The id a worker gives itself in reports and claims: host and process,
/// and the start time so a restarted pod with the same name differs.
pub fn run_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_else(|| "unknown-host".into());
    format!("{host} pid {} started {}", std::process::id(), now())
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What the finish step concludes from the workers' reports and the count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkersCheck {
    pub shards: u32,
    /// Shards with no report: they did not end well (or never ran).
    pub missing: Vec<u32>,
    /// Reports made for another N than the run's.
    pub other_n: Vec<String>,
    /// Sum of the reports' rows.
    pub rows: u64,
    pub written: u64,
    pub failed: u64,
}

impl WorkersCheck {
    /// `shards`: the N the target was prepared for, else the reports' own.
    pub fn of(reports: &[ShardReport], shards: Option<u32>) -> Option<WorkersCheck> {
        let n = shards.or_else(|| reports.iter().map(|r| r.shards).max())?;
        let mine: Vec<&ShardReport> = reports.iter().filter(|r| r.shards == n).collect();
        let missing = (0..n)
            .filter(|i| !mine.iter().any(|r| r.shard == *i))
            .collect();
        let other_n = reports
            .iter()
            .filter(|r| r.shards != n)
            .map(|r| format!("{}/{} ({})", r.shard, r.shards, r.run))
            .collect();
        Some(WorkersCheck {
            shards: n,
            missing,
            other_n,
            rows: mine.iter().map(|r| r.rows).sum(),
            written: mine.iter().map(|r| r.written).sum(),
            failed: mine.iter().map(|r| r.failed).sum(),
        })
    }

    /// Why the finish must not go on, if it must not.
    pub fn refusal(&self) -> Option<String> {
        if self.missing.is_empty() {
            return None;
        }
        let list = self
            .missing
            .iter()
            .map(|i| format!("{i}/{}", self.shards))
            .collect::<Vec<_>>()
            .join(", ");
        Some(format!(
            "{} of {} workers left no report (shard {list}): they did not end well or never ran. \
             Rerun them with --shard (they embed only what is missing), then the finish step again",
            self.missing.len(),
            self.shards
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(shard: u32, shards: u32, rows: u64) -> ShardReport {
        ShardReport {
            shard,
            shards,
            rows,
            written: rows,
            failed: 0,
            run: format!("w{shard}"),
            at: 0,
        }
    }

    #[test]
    fn a_missing_shard_refuses_the_finish_and_is_named() {
        let c = WorkersCheck::of(&[report(0, 3, 5), report(2, 3, 7)], Some(3)).unwrap();
        assert_eq!(c.missing, vec![1]);
        assert_eq!(c.rows, 12);
        assert!(c.refusal().unwrap().contains("shard 1/3"));
        let all = WorkersCheck::of(&[report(0, 2, 1), report(1, 2, 1)], None).unwrap();
        assert!(all.refusal().is_none());
    }

    #[test]
    fn reports_of_another_n_do_not_count() {
        let c = WorkersCheck::of(
            &[report(0, 2, 5), report(1, 2, 5), report(3, 4, 9)],
            Some(2),
        )
        .unwrap();
        assert_eq!((c.rows, c.missing.len()), (10, 0));
        assert_eq!(c.other_n, vec!["3/4 (w3)".to_string()]);
        assert!(WorkersCheck::of(&[], None).is_none());
    }
}
