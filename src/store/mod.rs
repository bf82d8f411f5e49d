//! The vector stores, one folder each (flags and settings, sink, reader,
//! switch, search). A sink checks compatibility once before any work,
//! writes batches and returns only when the store has acknowledged them, and
//! finishes by building indexes and counting what is stored.

pub mod measure;
pub mod pgvector;
pub mod qdrant;
pub mod stage;
pub mod target;

pub use target::{SourceAt, StoreFlags, StoreKind, Stored, Target, TargetSpec};

use std::collections::HashMap;

use anyhow::Result;
use async_trait::async_trait;

use crate::records::{Embedded, Hit};
use crate::shard::{Shard, ShardReport};

#[async_trait]
pub trait Sink: Send + Sync {
    /// Where the data goes, for logs; never includes a secret.
    fn describe(&self) -> String;
    /// Rows per write.
    fn write_batch(&self) -> usize;
    /// Writers at once, each with its own connection.
    fn write_concurrency(&self) -> usize;
    /// How long the store may be unreachable before writers give up.
    fn outage_budget(&self) -> std::time::Duration {
        std::time::Duration::from_secs(300)
    }
    /// Connect, create or check the target. Runs before any embedding request.
    async fn prepare(&mut self) -> Result<()>;
    /// The embedding space `prepare` records with the target if it creates it.
    fn record_on_create(&mut self, _space: crate::space::Space) {}
    /// Everything `prepare` and the load would need, checked without
    /// writing anything; each problem names its fix.
    async fn check(&self) -> Result<Vec<String>>;
    /// Deletes these ids of `tenant`; returns how many rows went.
    async fn delete(&self, tenant: &str, ids: &[String]) -> Result<u64>;
    /// Which of these ids of `tenant` the store holds, with their content hash.
    async fn existing(&self, tenant: &str, ids: &[String]) -> Result<HashMap<String, String>>;
    /// The stored vectors of these ids of `tenant` (those it holds), for
    /// comparing a copy with its source.
    async fn vectors(&self, tenant: &str, ids: &[String]) -> Result<HashMap<String, Vec<f32>>>;
    /// Before `prepare`: this run is the target's only writer until its
    /// `finish` (an unsharded load), so indexes that no write or look-up of
    /// the load needs may be built at the finish, over all rows at once.
    fn sole_writer(&mut self) {}
    /// Called once the run is about to write (after `prepare` and the state
    /// checks): bulk-load settings that `finish` undoes.
    async fn begin(&self) -> Result<()> {
        Ok(())
    }
    /// A new writer with its own connection.
    async fn writer(&self) -> Result<Box<dyn SinkWriter>>;
    /// The `k` rows of `tenant` nearest to `vector`, best first.
    async fn search(&self, tenant: &str, vector: &[f32], k: usize) -> Result<Vec<Hit>>;
    /// A searcher on a connection of its own, for many queries through the
    /// index or exactly (a quality measure).
    async fn searcher(&self) -> Result<Box<dyn measure::Searcher>>;
    /// Every row of `tenant` as (id, content hash), streamed to `each` page
    /// by page: the store as the record of what is written, for a run
    /// without a state file (a new pod, a Fargate task). `scope` narrows
    /// it to one shard's buckets; Ok(false) when the target keeps no bucket
    /// and so cannot tell (then nothing was passed to `each`).
    async fn held(
        &self,
        tenant: &str,
        scope: Held,
        each: &mut (dyn for<'r> FnMut(&'r str, &'r str) + Send),
    ) -> Result<bool>;
    /// How many shards the target was prepared for (`--step prepare
    /// --shards N`), where the target can record it.
    async fn shards(&self) -> Result<Option<u32>> {
        Ok(None)
    }
    /// Records `n` (None: clears it). Ok(false) where the target cannot.
    async fn set_shards(&self, _n: Option<u32>) -> Result<bool> {
        Ok(false)
    }
    /// Keeps a worker's report for the finish step. Ok(false) where the
    /// target cannot.
    async fn put_shard_report(&self, _tenant: &str, _r: &ShardReport) -> Result<bool> {
        Ok(false)
    }
    /// The reports the workers of `tenant` left (None: the target keeps none).
    async fn shard_reports(&self, _tenant: &str) -> Result<Option<Vec<ShardReport>>> {
        Ok(None)
    }
    /// Forgets them (the prepare step of a new run, a finish that used them).
    async fn clear_shard_reports(&self, _tenant: &str) -> Result<()> {
        Ok(())
    }
    /// Says this worker (`run`) runs `shard` of `tenant` now, called again
    /// now and then while it does. Some(who) when another worker is seen
    /// running the same shard (an engine retrying a slow pod).
    async fn claim_shard(
        &self,
        _tenant: &str,
        _shard: Shard,
        _run: &str,
    ) -> Result<Option<String>> {
        Ok(None)
    }
    /// The end of what `claim_shard` said.
    async fn release_shard(&self, _tenant: &str, _shard: Shard, _run: &str) -> Result<()> {
        Ok(())
    }
    /// The bulk-load settings an earlier `begin` left (the `--step prepare`
    /// of a sharded run, or a killed run) become this run's to undo in `finish`.
    fn adopt(&self) {}
    /// Every id of `tenant` (for pruning rows the source no longer has).
    async fn ids(&self, tenant: &str) -> Result<Vec<String>>;
    /// Rows per tenant, of every tenant the store holds.
    async fn tenants(&self) -> Result<std::collections::BTreeMap<String, u64>>;
    /// How many rows `tenant` has.
    async fn count(&self, tenant: &str) -> Result<u64>;
    /// Up to `n` stored vectors of `tenant` (id, vector), for checking a
    /// finished target before switching readers to it.
    async fn sample(&self, tenant: &str, n: usize) -> Result<Vec<(String, Vec<f32>)>>;
    /// Build indexes (unless the run was interrupted), undo what `begin` did
    /// (always), and count the tenant's rows.
    async fn finish(&self, tenant: &str, build_index: bool) -> Result<SinkSummary>;
}

/// Which rows of a tenant `Sink::held` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Held {
    /// All of them.
    Tenant,
    /// Those of these shard buckets only (what a shard may prune).
    Shard(std::ops::Range<u32>),
    /// Those of these buckets and those with no bucket (written by a
    /// vecload before buckets, which a shard may hold but cannot claim):
    /// what a shard must not pay for again.
    ShardOrUnknown(std::ops::Range<u32>),
}

impl Held {
    pub fn buckets(&self) -> Option<&std::ops::Range<u32>> {
        match self {
            Held::Tenant => None,
            Held::Shard(b) | Held::ShardOrUnknown(b) => Some(b),
        }
    }
}

#[async_trait]
pub trait SinkWriter: Send {
    /// Returns once the store has durably accepted every row of `rows`.
    async fn write(&mut self, rows: &[Embedded]) -> Result<(), WriteError>;
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// These rows can never be stored as they are; other batches can.
    #[error("{0}")]
    Rejected(String),
    /// The store or the connection failed; the same batch may succeed on a
    /// new connection.
    #[error("{0:#}")]
    Failed(#[from] anyhow::Error),
    /// The store refuses every write (no such table, no permission): the
    /// run stops at once instead of waiting out an outage that is not one.
    #[error("{0}")]
    Permanent(String),
}

/// What `vecload check` learns of a target's index.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct IndexHealth {
    /// The index (or indexes), in words.
    pub index: String,
    /// What is wrong, each with its fix.
    pub problems: Vec<String>,
    /// Worth knowing, not wrong.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct SinkSummary {
    pub tenant_rows: u64,
    pub index: Option<String>,
}
