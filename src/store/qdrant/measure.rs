//! `Searcher` for Qdrant: `exact=true` for the truth, `hnsw_ef` as asked.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use async_trait::async_trait;
use qdrant_client::Qdrant;
use qdrant_client::qdrant::point_id::PointIdOptions;
use qdrant_client::qdrant::value::Kind;
use qdrant_client::qdrant::{Filter, Query, QueryPointsBuilder, SearchParamsBuilder};

use super::connect::message;
use crate::store::measure::{Mode, Searcher};

pub struct QdrantSearcher {
    pub client: Arc<Qdrant>,
    pub collection: String,
    /// The tenant's filter, made per query.
    pub filter: Box<dyn Fn(&str) -> Filter + Send>,
    /// LightRAG's layout keeps its own id in the payload.
    pub lightrag: bool,
}

#[async_trait]
impl Searcher for QdrantSearcher {
    fn breadth_setting(&self) -> &'static str {
        "hnsw_ef (a search parameter)"
    }

    /// Green: the optimizers are done (yellow: still building HNSW).
    /// Grey (optimizations pending until the next update) is taken as it is.
    async fn settled(&mut self, budget: Duration) -> Result<Option<String>> {
        use qdrant_client::qdrant::CollectionStatus;
        let started = Instant::now();
        let mut said = Instant::now();
        loop {
            let info = super::collection::info(&self.client, &self.collection)
                .await?
                .ok_or_else(|| anyhow!("collection {} is gone", self.collection))?;
            let status = CollectionStatus::try_from(info.status).ok();
            match status {
                Some(CollectionStatus::Green) => return Ok(None),
                Some(CollectionStatus::Grey) => {
                    return Ok(Some(format!(
                        "collection {} is grey (optimizations pending): measured as it is",
                        self.collection
                    )));
                }
                Some(CollectionStatus::Red) => {
                    anyhow::bail!(
                        "collection {} is red: Qdrant reports an error",
                        self.collection
                    )
                }
                _ => {}
            }
            if started.elapsed() >= budget {
                return Ok(Some(format!(
                    "collection {} was still indexing after {} s ({} of {} vectors indexed): \
                     measured as it was",
                    self.collection,
                    budget.as_secs(),
                    info.indexed_vectors_count.unwrap_or(0),
                    info.points_count.unwrap_or(0)
                )));
            }
            if said.elapsed() >= Duration::from_secs(30) {
                tracing::info!(
                    "waiting for Qdrant to finish indexing {} before measuring ({} of {} vectors indexed)",
                    self.collection,
                    info.indexed_vectors_count.unwrap_or(0),
                    info.points_count.unwrap_or(0)
                );
                said = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn nearest(
        &mut self,
        tenant: &str,
        vector: &[f32],
        k: usize,
        mode: Mode,
    ) -> Result<Vec<String>> {
        let params = match mode {
            Mode::Exact => SearchParamsBuilder::default().exact(true),
            Mode::Index(Some(ef)) => SearchParamsBuilder::default().hnsw_ef(ef),
            Mode::Index(None) => SearchParamsBuilder::default(),
        };
        let mut q = QueryPointsBuilder::new(&self.collection)
            .query(Query::new_nearest(vector.to_vec()))
            .filter((self.filter)(tenant))
            .limit(k as u64)
            .params(params);
        if self.lightrag {
            q = q.with_payload(true);
        }
        let found =
            self.client.query(q).await.map_err(|e| {
                anyhow!("searching collection {}: {}", self.collection, message(&e))
            })?;
        Ok(found
            .result
            .into_iter()
            .map(|p| {
                if self.lightrag {
                    match p.payload.get("id").and_then(|v| v.kind.as_ref()) {
                        Some(Kind::StringValue(s)) => return s.clone(),
                        _ => return String::new(),
                    }
                }
                match p.id.and_then(|id| id.point_id_options) {
                    Some(PointIdOptions::Uuid(u)) => u,
                    Some(PointIdOptions::Num(n)) => n.to_string(),
                    None => String::new(),
                }
            })
            .collect())
    }
}
