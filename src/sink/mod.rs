//! Where vectors end up. A sink checks compatibility once before any work,
//! writes batches and returns only when the store has acknowledged them, and
//! finishes by building indexes and counting what is stored.

pub mod pgvector;
pub mod qdrant;
pub mod stage;

use std::collections::HashMap;

use anyhow::Result;
use async_trait::async_trait;

use crate::config::SinkConfig;
use crate::embed::Embedded;

#[async_trait]
pub trait Sink: Send + Sync {
    /// Where the data goes, for logs; never includes a secret.
    fn describe(&self) -> String;
    /// Rows per write.
    fn write_batch(&self) -> usize;
    /// Writers at once, each with its own connection.
    fn write_concurrency(&self) -> usize;
    /// Connect, create or check the target. Runs before any embedding request.
    async fn prepare(&mut self) -> Result<()>;
    /// Everything `prepare` and the load would need, checked without
    /// writing anything; each problem names its fix.
    async fn check(&self) -> Result<Vec<String>>;
    /// Deletes these ids of `tenant`; returns how many rows went.
    async fn delete(&self, tenant: &str, ids: &[String]) -> Result<u64>;
    /// Which of these ids of `tenant` the store holds, with their content hash.
    async fn existing(&self, tenant: &str, ids: &[String]) -> Result<HashMap<String, String>>;
    /// Called once the run is about to write (after `prepare` and the state
    /// checks): bulk-load settings that `finish` undoes.
    async fn begin(&self) -> Result<()> {
        Ok(())
    }
    /// A new writer with its own connection.
    async fn writer(&self) -> Result<Box<dyn SinkWriter>>;
    /// The `k` rows of `tenant` nearest to `vector`, best first.
    async fn search(&self, tenant: &str, vector: &[f32], k: usize) -> Result<Vec<Hit>>;
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
}

/// One search result. `score` is what the store ranks by: cosine
/// similarity, inner product, or (euclid) the distance, smaller is nearer.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Hit {
    pub id: String,
    pub score: f32,
    pub source: String,
    pub chunk_index: i64,
    pub content: String,
}

#[derive(Debug, Clone, Default)]
pub struct SinkSummary {
    pub tenant_rows: u64,
    pub index: Option<String>,
}

pub fn build(cfg: &SinkConfig, dim: usize) -> Box<dyn Sink> {
    match cfg {
        SinkConfig::Pgvector(pg) => Box::new(pgvector::PgSink::new(pg.clone(), dim)),
        SinkConfig::Qdrant(q) => Box::new(qdrant::QdrantSink::new(q.clone(), dim)),
    }
}
