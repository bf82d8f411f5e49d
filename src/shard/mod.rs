//! One reindex split over N workers. A file belongs to exactly one shard by
//! a bucket: the first two bytes of SHA-256(tenant, 0, file key), so the same
//! on every machine and every version (Rust's own hasher is randomised per
//! process). Shard I of N owns the contiguous buckets
//! `[I * 65536 / N, (I + 1) * 65536 / N)`: a range, because Qdrant filters
//! ranges and not modulo, and the bucket is stored with each row so counts
//! and deletions of one shard filter on it in both stores.
//!
//! The engine that runs the copies says which one this is: Kubernetes
//! Indexed Jobs set `JOB_COMPLETION_INDEX` (N comes from `--shards`), AWS
//! Batch array jobs `AWS_BATCH_JOB_ARRAY_INDEX` and `AWS_BATCH_JOB_ARRAY_SIZE`;
//! ECS sets nothing, so each `run-task` passes `VECLOAD_SHARD=I/N`.

mod report;

use std::ops::Range;

use sha2::{Digest, Sha256};

pub use report::{CLAIM_REFRESH_SECS, ShardReport, WorkersCheck, now, run_id};

/// The flags of a sharded run.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Many workers on one run")]
pub struct Flags {
    /// Be worker I of N (0-based): load only the files whose bucket falls
    /// in this shard's range. Workers write; the whole-target steps are
    /// `--step prepare` before them and `--step finish` after.
    #[arg(long, env = "VECLOAD_SHARD", value_name = "I/N")]
    pub shard: Option<String>,

    /// How many workers share the run. With it, the shard index comes from
    /// the engine: JOB_COMPLETION_INDEX (Kubernetes Indexed Job) or
    /// AWS_BATCH_JOB_ARRAY_INDEX (AWS Batch array job, which also gives N).
    /// --rpm and --tpm are then the totals of all workers.
    #[arg(long, env = "VECLOAD_SHARDS", value_name = "N")]
    pub shards: Option<u32>,

    /// A whole-target step of a sharded run: `prepare` (create the table or
    /// collection and its indexes, Qdrant's bulk mode) before the workers,
    /// `finish` (build the vector index, restore the settings, count) after them.
    #[arg(long, value_enum, env = "VECLOAD_STEP", value_name = "STEP")]
    pub step: Option<Step>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Step {
    Prepare,
    Finish,
}

impl Step {
    pub fn name(self) -> &'static str {
        match self {
            Step::Prepare => "prepare",
            Step::Finish => "finish",
        }
    }
}

/// Buckets a tenant's files fall into.
pub const BUCKETS: u32 = 65536;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The bucket of file `key` (relative to its PATH or S3 prefix) of `tenant`.
pub fn bucket(tenant: &str, key: &str) -> u32 {
    let mut h = Sha256::new();
    h.update(tenant.as_bytes());
    h.update([0u8]);
    h.update(key.as_bytes());
    let d = h.finalize();
    u32::from(d[0]) << 8 | u32::from(d[1])
}

impl Shard {
    /// `I/N`, 0 <= I < N <= 65536.
    pub fn parse(s: &str) -> Result<Shard, String> {
        let (i, n) = s
            .trim()
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not I/N (e.g. 0/4: the first of four shards)"))?;
        let count = parse_count(n)?;
        let index: u32 = i
            .trim()
            .parse()
            .map_err(|_| format!("{s:?}: shard index {i:?} is not a number"))?;
        Shard::new(index, count)
    }

    pub fn new(index: u32, count: u32) -> Result<Shard, String> {
        if count == 0 || count > BUCKETS {
            return Err(format!("{count} shards: between 1 and {BUCKETS}"));
        }
        if index >= count {
            return Err(format!(
                "shard index {index} is out of range for {count} shards (0 to {})",
                count - 1
            ));
        }
        Ok(Shard { index, count })
    }

    /// The buckets this shard owns.
    pub fn buckets(&self) -> Range<u32> {
        let at = |i: u32| (u64::from(i) * u64::from(BUCKETS) / u64::from(self.count)) as u32;
        at(self.index)..at(self.index + 1)
    }

    /// The shard of N that owns `bucket`.
    pub fn of_bucket(bucket: u32, count: u32) -> u32 {
        // The first i whose range ends above the bucket.
        let guess = (u64::from(bucket) * u64::from(count) / u64::from(BUCKETS)) as u32;
        (guess.saturating_sub(1)..count)
            .find(|&i| Shard { index: i, count }.buckets().contains(&bucket))
            .unwrap_or(count - 1)
    }

    pub fn owns(&self, tenant: &str, key: &str) -> bool {
        self.buckets().contains(&bucket(tenant, key))
    }

    /// This worker's share of a whole-account limit (`--rpm`, `--tpm`):
    /// one N-th, at least 1; the adaptive limit finds the rest through 429s.
    pub fn share(&self, total: Option<u32>) -> Option<u32> {
        total.map(|t| (t / self.count).max(1))
    }
}

fn parse_count(n: &str) -> Result<u32, String> {
    n.trim()
        .parse()
        .map_err(|_| format!("shard count {n:?} is not a number"))
}

/// Which shard this process is: `flag` (--shard / VECLOAD_SHARD) wins, then
/// the engine's index with `shards` (--shards) or the engine's own count.
/// Ok(None): not sharded. Errors name the setting that is wrong.
pub fn detect(
    flag: Option<&str>,
    shards: Option<u32>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Shard>, String> {
    if let Some(s) = flag {
        let shard = Shard::parse(s).map_err(|e| format!("--shard (VECLOAD_SHARD) {e}"))?;
        if let Some(n) = shards
            && n != shard.count
        {
            return Err(format!(
                "--shard {shard} says {} shards but --shards says {n}",
                shard.count
            ));
        }
        return Ok(Some(shard));
    }
    let index = |name: &str| -> Result<Option<u32>, String> {
        match env(name) {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| format!("{name}={v:?} is not a number")),
        }
    };
    if let Some(i) = index("AWS_BATCH_JOB_ARRAY_INDEX")? {
        let size = index("AWS_BATCH_JOB_ARRAY_SIZE")?;
        let count = match (size, shards) {
            (Some(a), Some(b)) if a != b => {
                return Err(format!(
                    "AWS_BATCH_JOB_ARRAY_SIZE is {a} but --shards says {b}"
                ));
            }
            (Some(n), _) | (None, Some(n)) => n,
            (None, None) => {
                return Err(
                    "AWS_BATCH_JOB_ARRAY_INDEX is set but neither AWS_BATCH_JOB_ARRAY_SIZE nor --shards is"
                        .into(),
                );
            }
        };
        return Shard::new(i, count)
            .map(Some)
            .map_err(|e| format!("AWS_BATCH_JOB_ARRAY_INDEX: {e}"));
    }
    if let Some(i) = index("JOB_COMPLETION_INDEX")? {
        let Some(n) = shards else {
            // An Indexed Job's pod without --shards: the job was not meant
            // to be split by vecload; say so rather than load everything N times.
            return Err(
                "JOB_COMPLETION_INDEX is set (a Kubernetes Indexed Job) but --shards (VECLOAD_SHARDS) is not: \
                 give it the Job's completions"
                    .into(),
            );
        };
        return Shard::new(i, n)
            .map(Some)
            .map_err(|e| format!("JOB_COMPLETION_INDEX: {e}"));
    }
    match shards {
        Some(n) => Err(format!(
            "--shards {n} without a shard index: give --shard I/{n} (VECLOAD_SHARD), or run it as a \
             Kubernetes Indexed Job (JOB_COMPLETION_INDEX) or an AWS Batch array job"
        )),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_every_bucket_once() {
        for n in [1u32, 2, 3, 4, 7, 1000, BUCKETS] {
            let mut next = 0;
            for i in 0..n {
                let r = Shard::new(i, n).expect("valid").buckets();
                assert_eq!(r.start, next);
                next = r.end;
            }
            assert_eq!(next, BUCKETS);
        }
    }

    #[test]
    fn each_bucket_has_the_shard_whose_range_holds_it() {
        for n in [1u32, 3, 4, 7, 1000] {
            for b in (0..BUCKETS).step_by(97).chain([BUCKETS - 1]) {
                let i = Shard::of_bucket(b, n);
                assert!(
                    Shard::new(i, n).expect("valid").buckets().contains(&b),
                    "{b} {n}"
                );
            }
        }
    }

    #[test]
    fn the_bucket_is_fixed_forever() {
        // Rows already stored carry these: a change here re-shards every
        // store users have.
        assert_eq!(
            bucket("acme", "guides/setup.md"),
            bucket("acme", "guides/setup.md")
        );
        assert_eq!(bucket("t", "a.txt"), {
            let d = Sha256::digest(b"t\0a.txt");
            u32::from(d[0]) << 8 | u32::from(d[1])
        });
        assert_ne!(bucket("a", "b.txt"), bucket("b", "b.txt"));
    }

    #[test]
    fn each_worker_takes_its_share_of_the_accounts_limits() {
        let s = Shard::new(1, 4).expect("valid");
        assert_eq!(s.share(Some(2000)), Some(500));
        assert_eq!(s.share(Some(3)), Some(1), "never zero");
        assert_eq!(s.share(None), None);
    }

    #[test]
    fn engines_are_read_and_mistakes_named() {
        let none = |_: &str| None;
        assert_eq!(detect(None, None, &none), Ok(None));
        assert_eq!(
            detect(Some("1/4"), None, &none),
            Ok(Some(Shard { index: 1, count: 4 }))
        );
        assert!(
            detect(Some("4/4"), None, &none)
                .unwrap_err()
                .contains("out of range")
        );
        assert!(detect(Some("1/4"), Some(3), &none).is_err());
        let k8s = |k: &str| (k == "JOB_COMPLETION_INDEX").then(|| "2".to_string());
        assert_eq!(
            detect(None, Some(3), &k8s),
            Ok(Some(Shard { index: 2, count: 3 }))
        );
        assert!(detect(None, None, &k8s).unwrap_err().contains("--shards"));
        assert!(
            detect(None, Some(2), &k8s)
                .unwrap_err()
                .contains("out of range")
        );
        let batch = |k: &str| match k {
            "AWS_BATCH_JOB_ARRAY_INDEX" => Some("3".to_string()),
            "AWS_BATCH_JOB_ARRAY_SIZE" => Some("4".to_string()),
            _ => None,
        };
        assert_eq!(
            detect(None, None, &batch),
            Ok(Some(Shard { index: 3, count: 4 }))
        );
        assert!(detect(None, Some(5), &batch).is_err());
        assert!(
            detect(None, Some(4), &none)
                .unwrap_err()
                .contains("--shard I/4")
        );
    }
}
