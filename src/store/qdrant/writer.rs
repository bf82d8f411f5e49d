//! Upserts over gRPC. Point ids are the chunk ids (UUID-shaped hashes of
//! tenant, document and chunk index), so a rerun overwrites the same points.
//!
//! Each request waits until the server has applied it (`wait=true`): a batch
//! counts as written only then; with `--qdrant-ack wal` (`wait=false`) once
//! it is in the server's write-ahead log, and `collection::barrier` at the
//! finish waits for the shards to apply it. Long documents make large
//! points, so a write batch is cut into requests under a byte budget well
//! below what one gRPC message may carry.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use qdrant_client::qdrant::{PointStruct, UpsertPoints, UpsertPointsBuilder, Value};

use super::collection::{BUCKET_FIELD, DOC_FIELD, TENANT_FIELD, WORKSPACE_FIELD};
use super::connect::{PointsClient, is_transient, message, retry_after};
use crate::layout::{Layout, Namespace};
use crate::records::Embedded;
use crate::store::{SinkWriter, WriteError};

/// Qdrant's guidance is to keep a request under about 5 MB.
pub const REQUEST_BYTES: usize = 4 << 20;

pub struct QdrantWriter {
    pub points: PointsClient,
    pub collection: String,
    pub layout: Layout,
    /// `wait=true`: acknowledged once applied (else once in the WAL).
    pub wait: bool,
}

#[async_trait]
impl SinkWriter for QdrantWriter {
    async fn write(&mut self, rows: &[Embedded]) -> Result<(), WriteError> {
        let now = crate::space::rfc3339(SystemTime::now());
        let secs = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        for part in split_by_bytes(rows, REQUEST_BYTES) {
            let points: Vec<PointStruct> = part
                .iter()
                .map(|r| match self.layout {
                    Layout::Vecload => point(r, &now),
                    Layout::Lightrag(ns) => lightrag_point(r, ns, secs),
                })
                .collect();
            let req: UpsertPoints = UpsertPointsBuilder::new(&self.collection, points)
                .wait(self.wait)
                .into();
            if let Err(status) = self.points.upsert(req).await {
                let e = qdrant_client::QdrantError::from(status);
                let msg = format!("upserting {} points: {}", part.len(), message(&e));
                if !is_transient(&e) {
                    return Err(WriteError::Rejected(msg));
                }
                if let Some(secs) = retry_after(&e) {
                    // The stage's own backoff is shorter than a server's ask.
                    tokio::time::sleep(Duration::from_secs(secs.min(60))).await;
                }
                return Err(WriteError::Failed(anyhow::anyhow!(msg)));
            }
        }
        Ok(())
    }
}

fn point(r: &Embedded, updated_at: &str) -> PointStruct {
    let c = &r.chunk;
    let mut payload: HashMap<String, Value> = HashMap::from([
        (TENANT_FIELD.to_string(), Value::from(&*c.doc.tenant)),
        (DOC_FIELD.to_string(), Value::from(c.doc.doc_id.as_str())),
        ("source".to_string(), Value::from(c.doc.source.as_str())),
        ("chunk_index".to_string(), Value::from(i64::from(c.index))),
        ("content".to_string(), Value::from(c.text.as_str())),
        (
            "content_hash".to_string(),
            Value::from(c.content_hash.as_str()),
        ),
        ("updated_at".to_string(), Value::from(updated_at)),
        (
            BUCKET_FIELD.to_string(),
            Value::from(i64::from(crate::shard::bucket(&c.doc.tenant, &c.doc.file))),
        ),
    ]);
    if let Some(page) = c.doc.page {
        payload.insert("page".into(), Value::from(i64::from(page)));
    }
    PointStruct::new(c.id.clone(), r.vector.clone(), payload)
}

/// A point as LightRAG 1.5.7's QdrantVectorDBStorage writes it: its
/// string id, workspace and creation time, and its namespace's meta fields.
fn lightrag_point(r: &Embedded, ns: Namespace, now: i64) -> PointStruct {
    let c = &r.chunk;
    let extra = c.extra.as_deref();
    let text = |v: Option<&str>| Value::from(v.unwrap_or_default());
    let mut payload: HashMap<String, Value> = HashMap::from([
        ("id".to_string(), Value::from(c.id.as_str())),
        (WORKSPACE_FIELD.to_string(), Value::from(&*c.doc.tenant)),
        (
            "created_at".to_string(),
            Value::from(extra.and_then(|e| e.created_at).unwrap_or(now)),
        ),
        ("content".to_string(), Value::from(c.text.as_str())),
        ("file_path".to_string(), Value::from(c.doc.source.as_str())),
    ]);
    match ns {
        Namespace::Chunks => {
            payload.insert("full_doc_id".into(), Value::from(c.doc.doc_id.as_str()));
        }
        Namespace::Entities => {
            payload.insert(
                "entity_name".into(),
                text(extra.and_then(|e| e.entity_name.as_deref())),
            );
            payload.insert(
                "source_id".into(),
                text(extra.and_then(|e| e.source_id.as_deref())),
            );
        }
        Namespace::Relationships => {
            payload.insert(
                "src_id".into(),
                text(extra.and_then(|e| e.src_id.as_deref())),
            );
            payload.insert(
                "tgt_id".into(),
                text(extra.and_then(|e| e.tgt_id.as_deref())),
            );
            payload.insert(
                "source_id".into(),
                text(extra.and_then(|e| e.source_id.as_deref())),
            );
        }
    }
    let id = crate::layout::qdrant_point_id(&c.doc.tenant, &c.id);
    PointStruct::new(id, r.vector.clone(), payload)
}

/// Roughly what a point costs on the wire: 4 bytes a float plus its strings.
fn point_bytes(r: &Embedded) -> usize {
    let c = &r.chunk;
    r.vector.len() * 5
        + c.text.len()
        + c.doc.source.len()
        + c.doc.tenant.len()
        + c.doc.doc_id.len()
        + 256
}

/// Consecutive slices of `rows`, each under `budget` bytes (a single point
/// over it still goes alone: the server decides).
fn split_by_bytes(rows: &[Embedded], budget: usize) -> Vec<&[Embedded]> {
    let mut parts = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, r) in rows.iter().enumerate() {
        let b = point_bytes(r);
        if i > start && bytes + b > budget {
            parts.push(&rows[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += b;
    }
    if start < rows.len() {
        parts.push(&rows[start..]);
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{Chunk, DocMeta};
    use std::sync::Arc;

    fn row(text_len: usize, dim: usize) -> Embedded {
        let doc = Arc::new(DocMeta {
            page: None,
            tenant: Arc::from("t"),
            doc_id: "doc-1".into(),
            source: "a.md".into(),
            file: Arc::from("a.md"),
            key: "a.md".into(),
            hash: String::new(),
            chunk_count: 1,
            pending: Default::default(),
        });
        Embedded {
            chunk: Chunk {
                id: "00000000-0000-0000-0000-000000000000".into(),
                doc,
                index: 0,
                text: "x".repeat(text_len),
                content_hash: String::new(),
                tokens: 1,
                extra: None,
            },
            vector: vec![0.0; dim],
        }
    }

    #[test]
    fn batches_split_under_the_byte_budget_in_order() {
        let rows: Vec<_> = (0..10).map(|_| row(1000, 100)).collect();
        let one = point_bytes(&rows[0]);
        let parts = split_by_bytes(&rows, one * 3);
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [3, 3, 3, 1]
        );
        assert_eq!(split_by_bytes(&rows, usize::MAX).len(), 1);
        // A point bigger than the budget still goes, alone.
        assert_eq!(split_by_bytes(&rows[..2], 10).len(), 2);
        assert!(split_by_bytes(&[], 10).is_empty());
    }
}
