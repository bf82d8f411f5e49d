//! Reads a Qdrant collection vecload wrote: scroll with the payload and
//! without the vectors (the old vectors are of no use and are most of the
//! bytes), filtered to one tenant when asked. Only reads.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Result, anyhow};
use async_trait::async_trait;
use qdrant_client::Qdrant;
use qdrant_client::qdrant::{
    Condition, FacetCountsBuilder, Filter, PointId, ScrollPointsBuilder, Value, facet_value,
    point_id::PointIdOptions, value::Kind,
};

use super::{Row, SourceStore};
use crate::sink::qdrant::QdrantTarget;
use crate::sink::qdrant::collection::{DOC_FIELD, TENANT_FIELD};
use crate::sink::qdrant::connect::message;

pub struct QdrantSource {
    client: Qdrant,
    collection: String,
    tenant: Option<String>,
    page: u32,
    offset: Option<PointId>,
    done: bool,
    desc: String,
}

impl QdrantSource {
    pub async fn open(
        target: &QdrantTarget,
        collection: &str,
        tenant: Option<String>,
        page: usize,
    ) -> Result<QdrantSource> {
        let client = target.connect()?;
        let exists = client.collection_exists(collection).await.map_err(|e| {
            anyhow!(
                "cannot reach the source Qdrant at {}: {}",
                target.describe(),
                message(&e)
            )
        })?;
        if !exists {
            anyhow::bail!(
                "source collection {collection:?} does not exist at {}",
                target.describe()
            );
        }
        Ok(QdrantSource {
            desc: format!("Qdrant collection {collection} at {}", target.describe()),
            client,
            collection: collection.to_string(),
            tenant,
            page: page as u32,
            offset: None,
            done: false,
        })
    }

    fn filter(&self) -> Option<Filter> {
        self.tenant
            .as_ref()
            .map(|t| Filter::must([Condition::matches(TENANT_FIELD, t.clone())]))
    }
}

fn text(p: &HashMap<String, Value>, key: &str) -> Option<String> {
    match p.get(key).and_then(|v| v.kind.as_ref()) {
        Some(Kind::StringValue(s)) => Some(s.clone()),
        _ => None,
    }
}

fn id_string(id: Option<PointId>) -> Option<String> {
    match id?.point_id_options? {
        PointIdOptions::Uuid(u) => Some(u),
        PointIdOptions::Num(n) => Some(n.to_string()),
    }
}

#[async_trait]
impl SourceStore for QdrantSource {
    fn describe(&self) -> String {
        self.desc.clone()
    }

    async fn next_page(&mut self) -> Result<Option<Vec<Row>>> {
        if self.done {
            return Ok(None);
        }
        let mut req = ScrollPointsBuilder::new(&self.collection)
            .limit(self.page)
            .with_payload(true)
            .with_vectors(false);
        if let Some(f) = self.filter() {
            req = req.filter(f);
        }
        if let Some(o) = self.offset.take() {
            req = req.offset(o);
        }
        let got = self
            .client
            .scroll(req)
            .await
            .map_err(|e| anyhow!("reading collection {}: {}", self.collection, message(&e)))?;
        self.offset = got.next_page_offset;
        self.done = self.offset.is_none();
        let mut rows = Vec::with_capacity(got.result.len());
        for p in got.result {
            let id = id_string(p.id).unwrap_or_default();
            let missing = |field: &str| {
                anyhow!(
                    "point {id} of collection {} has no string {field:?} in its payload \
                     (--from qdrant:COLLECTION reads a collection vecload wrote: {TENANT_FIELD}, \
                     {DOC_FIELD}, source, chunk_index, content)",
                    self.collection
                )
            };
            let payload = &p.payload;
            rows.push(Row {
                tenant: text(payload, TENANT_FIELD).ok_or_else(|| missing(TENANT_FIELD))?,
                content: text(payload, "content").ok_or_else(|| missing("content"))?,
                doc_id: text(payload, DOC_FIELD).unwrap_or_default(),
                source: text(payload, "source").unwrap_or_default(),
                chunk_index: match payload.get("chunk_index").and_then(|v| v.kind.as_ref()) {
                    Some(Kind::IntegerValue(i)) => (*i).clamp(0, u32::MAX as i64) as u32,
                    _ => 0,
                },
                id,
            });
        }
        Ok((!rows.is_empty()).then_some(rows))
    }

    async fn counts(&mut self) -> Result<BTreeMap<String, u64>> {
        let mut req = FacetCountsBuilder::new(&self.collection, TENANT_FIELD)
            .limit(1_000_000)
            .exact(true);
        if let Some(f) = self.filter() {
            req = req.filter(f);
        }
        let got = self.client.facet(req).await.map_err(|e| {
            anyhow!(
                "counting the points of each tenant in {} (needs the keyword index on {TENANT_FIELD} vecload makes): {}",
                self.collection,
                message(&e)
            )
        })?;
        Ok(got
            .hits
            .into_iter()
            .filter_map(|h| match h.value?.variant? {
                facet_value::Variant::StringValue(s) => Some((s, h.count)),
                _ => None,
            })
            .collect())
    }
}
