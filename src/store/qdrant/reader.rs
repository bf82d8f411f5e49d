//! Reads a Qdrant collection: scroll with the payload and without the
//! vectors (to re-embed, the old vectors are of no use and are most of the
//! bytes; `copy` opens it with them), filtered to one tenant when asked.
//! Only reads.
//!
//! A collection vecload wrote (tenant_id, doc_id, source, chunk_index,
//! content) or one of LightRAG's (workspace_id, id, content and the
//! namespace's fields), told apart by its first point.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Result, anyhow};
use async_trait::async_trait;
use qdrant_client::Qdrant;
use qdrant_client::qdrant::{
    Condition, FacetCountsBuilder, Filter, PointId, ScrollPointsBuilder, Value, facet_value,
    point_id::PointIdOptions, value::Kind,
};

use crate::records::Extra;
use crate::records::{RowReader, StoredRow as Row};
use crate::store::qdrant::QdrantTarget;
use crate::store::qdrant::collection::{DOC_FIELD, TENANT_FIELD, WORKSPACE_FIELD};
use crate::store::qdrant::connect::message;

pub struct QdrantSource {
    client: Qdrant,
    collection: String,
    /// LightRAG's payload (workspace_id, id, ...).
    lightrag: bool,
    tenant: Option<String>,
    page: u32,
    offset: Option<PointId>,
    done: bool,
    desc: String,
    /// Read with vectors (`copy`): the collection's vector length.
    dim: Option<usize>,
}

impl QdrantSource {
    pub async fn open(
        target: &QdrantTarget,
        collection: &str,
        tenant: Option<String>,
        page: usize,
        vectors: bool,
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
        let first = client
            .scroll(
                ScrollPointsBuilder::new(collection)
                    .limit(1)
                    .with_payload(true)
                    .with_vectors(false),
            )
            .await
            .map_err(|e| anyhow!("reading collection {collection}: {}", message(&e)))?;
        let lightrag = first
            .result
            .first()
            .is_some_and(|p| p.payload.contains_key(WORKSPACE_FIELD));
        let dim = if vectors {
            let info = crate::store::qdrant::collection::info(&client, collection)
                .await?
                .ok_or_else(|| anyhow!("source collection {collection:?} is gone"))?;
            let p = crate::store::qdrant::collection::vector_params(collection, &info)
                .map_err(|m| anyhow!("source {m}"))?;
            Some(p.size as usize)
        } else {
            None
        };
        Ok(QdrantSource {
            dim,
            lightrag,
            desc: format!("Qdrant collection {collection} at {}", target.describe()),
            client,
            collection: collection.to_string(),
            tenant,
            page: page as u32,
            offset: None,
            done: false,
        })
    }

    fn tenant_field(&self) -> &'static str {
        if self.lightrag {
            WORKSPACE_FIELD
        } else {
            TENANT_FIELD
        }
    }

    fn filter(&self) -> Option<Filter> {
        self.tenant
            .as_ref()
            .map(|t| Filter::must([Condition::matches(self.tenant_field(), t.clone())]))
    }

    /// A point of LightRAG's: its own id and fields.
    fn lightrag_row(&self, payload: &HashMap<String, Value>, point: &str) -> Result<Row> {
        let missing = |field: &str| {
            anyhow!(
                "point {point} of LightRAG collection {} has no string {field:?} in its payload",
                self.collection
            )
        };
        let id = text(payload, "id").ok_or_else(|| missing("id"))?;
        Ok(Row {
            tenant: text(payload, WORKSPACE_FIELD).ok_or_else(|| missing(WORKSPACE_FIELD))?,
            // LightRAG's Qdrant payload has no chunk order; its chunk ids
            // (`{doc_id}-chunk-{order:03d}`) carry it.
            chunk_index: crate::layout::chunk_order(&id).unwrap_or(0),
            id,
            content: text(payload, "content").ok_or_else(|| missing("content"))?,
            doc_id: text(payload, "full_doc_id").unwrap_or_default(),
            source: text(payload, "file_path").unwrap_or_default(),
            tokens: None,
            page: None,
            extra: Some(Extra {
                entity_name: text(payload, "entity_name"),
                src_id: text(payload, "src_id"),
                tgt_id: text(payload, "tgt_id"),
                source_id: text(payload, "source_id"),
                created_at: match payload.get("created_at").and_then(|v| v.kind.as_ref()) {
                    Some(Kind::IntegerValue(i)) => Some(*i),
                    Some(Kind::DoubleValue(d)) => Some(*d as i64),
                    _ => None,
                },
            }),
            lightrag_id: true,
            vector: None,
        })
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
impl RowReader for QdrantSource {
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
            .with_vectors(self.dim.is_some());
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
            let vector = if self.dim.is_some() {
                crate::store::qdrant::dense(p.vectors)
            } else {
                None
            };
            if self.lightrag {
                let mut row = self.lightrag_row(&p.payload, &id)?;
                row.vector = vector;
                rows.push(row);
                continue;
            }
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
                page: match payload.get("page").and_then(|v| v.kind.as_ref()) {
                    Some(Kind::IntegerValue(i)) => u32::try_from(*i).ok(),
                    _ => None,
                },
                id,
                tokens: None,
                extra: None,
                lightrag_id: false,
                vector,
            });
        }
        Ok((!rows.is_empty()).then_some(rows))
    }

    fn dim(&self) -> Option<usize> {
        self.dim
    }

    async fn counts(&mut self) -> Result<BTreeMap<String, u64>> {
        let mut req = FacetCountsBuilder::new(&self.collection, self.tenant_field())
            .limit(1_000_000)
            .exact(true);
        if let Some(f) = self.filter() {
            req = req.filter(f);
        }
        let got = self.client.facet(req).await.map_err(|e| {
            anyhow!(
                "counting the points of each tenant in {} (needs a keyword index on {}): {}",
                self.collection,
                self.tenant_field(),
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
