//! `Searcher` for Qdrant: `exact=true` for the truth, `hnsw_ef` as asked.

use std::sync::Arc;

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
