//! Searching a target the way a quality measure needs: through the index
//! with a chosen search-time breadth, or exactly (no index), on one
//! connection for many queries.

use anyhow::Result;
use async_trait::async_trait;

/// How a search runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Through the index; `Some(b)` sets its search-time breadth
    /// (pgvector `hnsw.ef_search` and `ivfflat.probes`, Qdrant `hnsw_ef`),
    /// None leaves the server's (what the RAG API gets).
    Index(Option<u64>),
    /// Every row compared: the ground truth.
    Exact,
}

#[async_trait]
pub trait Searcher: Send {
    /// The server's name of the search-time breadth `Mode::Index` sets.
    fn breadth_setting(&self) -> &'static str;
    /// Waits, within `budget`, until the index is built as readers will
    /// search it (Qdrant builds HNSW in the background after a load). Ok
    /// with a note when it is not: what was measured is then less than
    /// the finished index will do.
    async fn settled(&mut self, _budget: std::time::Duration) -> Result<Option<String>> {
        Ok(None)
    }
    /// The ids of the `k` rows of `tenant` nearest to `vector`, best first.
    async fn nearest(
        &mut self,
        tenant: &str,
        vector: &[f32],
        k: usize,
        mode: Mode,
    ) -> Result<Vec<String>>;
}
