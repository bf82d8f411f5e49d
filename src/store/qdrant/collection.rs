//! The collection: created or checked before any embedding request, its
//! payload indexes made before the first point, and HNSW building switched
//! off for the load and back on at the end.
//!
//! Bulk mode keeps what it must restore in the collection's own metadata
//! (key `vecload_bulk_load`), not in the run's memory: a run killed with -9
//! leaves the marker behind, and the next load of any tenant restores the
//! settings the collection had before, instead of taking the bulk settings
//! for the real ones.

use std::collections::HashMap;

use anyhow::{Result, anyhow};
use qdrant_client::Qdrant;
use qdrant_client::qdrant::{
    CollectionInfo, CollectionStatus, CreateCollectionBuilder, CreateFieldIndexCollectionBuilder,
    Distance as QDistance, FieldType, HnswConfigDiff, HnswConfigDiffBuilder,
    KeywordIndexParamsBuilder, PayloadSchemaType, UpdateCollectionBuilder, VectorParams,
    VectorParamsBuilder, payload_index_params, value::Kind, vectors_config,
};
use serde::{Deserialize, Serialize};

use super::connect::message;
use crate::layout::Layout;
use crate::settings::Distance;
use crate::store::qdrant::QdrantSettings;

pub const TENANT_FIELD: &str = "tenant_id";
/// vecload's shard bucket (`crate::shard`), an integer index for ranges.
pub const BUCKET_FIELD: &str = "shard_bucket";
/// LightRAG's tenant field.
pub const WORKSPACE_FIELD: &str = "workspace_id";

/// The payload field that holds the tenant in this layout.
pub fn tenant_field(layout: Layout) -> &'static str {
    match layout {
        Layout::Vecload => TENANT_FIELD,
        Layout::Lightrag(_) => WORKSPACE_FIELD,
    }
}
pub const DOC_FIELD: &str = "doc_id";
const MARKER: &str = "vecload_bulk_load";

pub fn q_distance(d: Distance) -> QDistance {
    match d {
        Distance::Cosine => QDistance::Cosine,
        Distance::Dot => QDistance::Dot,
        Distance::Euclid => QDistance::Euclid,
    }
}

fn distance_name(d: i32) -> String {
    QDistance::try_from(d)
        .map(|d| d.as_str_name().to_ascii_lowercase())
        .unwrap_or_else(|_| format!("distance #{d}"))
}

pub async fn info(client: &Qdrant, name: &str) -> Result<Option<CollectionInfo>> {
    let exists = client
        .collection_exists(name)
        .await
        .map_err(|e| anyhow!("checking collection {name}: {}", message(&e)))?;
    if !exists {
        return Ok(None);
    }
    let info = client
        .collection_info(name)
        .await
        .map_err(|e| anyhow!("reading collection {name}: {}", message(&e)))?
        .result;
    Ok(info)
}

/// The collection's single unnamed vector, or why vecload cannot load it.
pub fn vector_params<'a>(name: &str, info: &'a CollectionInfo) -> Result<&'a VectorParams, String> {
    let cfg = info
        .config
        .as_ref()
        .and_then(|c| c.params.as_ref())
        .and_then(|p| p.vectors_config.as_ref())
        .and_then(|v| v.config.as_ref());
    match cfg {
        Some(vectors_config::Config::Params(p)) => Ok(p),
        Some(vectors_config::Config::ParamsMap(m)) => Err(format!(
            "collection {name} has named vectors ({}); vecload writes one unnamed vector. \
             Use another --collection",
            m.map.keys().cloned().collect::<Vec<_>>().join(", ")
        )),
        None => Err(format!(
            "collection {name} has no dense vector; use another --collection"
        )),
    }
}

/// Refuses a collection whose vectors are not `dim` long or use another
/// distance: writing into it would fail on the first batch, or worse, succeed
/// and rank by the wrong measure.
pub fn check_layout(
    name: &str,
    info: &CollectionInfo,
    dim: usize,
    distance: Distance,
) -> Result<(), String> {
    let p = vector_params(name, info)?;
    let want = q_distance(distance) as i32;
    if p.size != dim as u64 || p.distance != want {
        return Err(format!(
            "collection {name} holds {}-dimension vectors with {} distance, but this run makes \
             {dim}-dimension vectors for {} distance. Use a new --collection (a new model needs \
             a new collection), or set --embed-dim / --distance to match",
            p.size,
            distance_name(p.distance),
            distance_name(want),
        ));
    }
    Ok(())
}

/// Creates the collection; `Ok(false)` if another process created it first.
pub async fn create(
    client: &Qdrant,
    cfg: &QdrantSettings,
    dim: usize,
    space: Option<&crate::space::Space>,
) -> Result<bool> {
    let name = cfg.collection.as_str();
    let mut req = CreateCollectionBuilder::new(name)
        .vectors_config(
            VectorParamsBuilder::new(dim as u64, q_distance(cfg.distance)).on_disk(cfg.on_disk),
        )
        // Payload on disk too: `content` is the bulk of a point.
        .on_disk_payload(cfg.on_disk);
    if let Some(n) = cfg.shard_number {
        req = req.shard_number(n);
    }
    if let Some(n) = cfg.replication_factor {
        req = req.replication_factor(n);
    }
    if let Some(space) = space {
        // Recorded with the collection: none exists without its record.
        req = req.metadata(super::space::metadata(space, cfg.layout));
    }
    let mut hnsw = HnswConfigDiffBuilder::default();
    if cfg.layout.is_lightrag() {
        // LightRAG's own: no global graph, one per tenant (workspace).
        hnsw = hnsw.payload_m(cfg.hnsw_m.unwrap_or(16)).m(0);
    } else if let Some(m) = cfg.hnsw_m {
        hnsw = hnsw.m(m);
    }
    if let Some(ef) = cfg.ef_construct {
        hnsw = hnsw.ef_construct(ef);
    }
    if cfg.layout.is_lightrag() || cfg.hnsw_m.is_some() || cfg.ef_construct.is_some() {
        req = req.hnsw_config(hnsw);
    }
    match client.create_collection(req).await {
        Ok(_) => Ok(true),
        Err(e) if message(&e).contains("already exists") => Ok(false),
        Err(e) => Err(anyhow!("creating collection {name}: {}", message(&e))),
    }
}

/// The tenant index (`is_tenant`, so each tenant's points are stored
/// together: made before the upload), and with `all` the document index
/// (for a user's deletes by document) and the shard bucket index (for a
/// shard's counts, look-ups and prunes).
pub async fn ensure_payload_indexes(
    client: &Qdrant,
    name: &str,
    info: &CollectionInfo,
    layout: Layout,
    all: bool,
) -> Result<()> {
    let fields: &[(&str, bool)] = match (layout, all) {
        (Layout::Vecload, true) => &[(TENANT_FIELD, true), (DOC_FIELD, false)],
        (Layout::Vecload, false) => &[(TENANT_FIELD, true)],
        (Layout::Lightrag(_), _) => &[(WORKSPACE_FIELD, true)],
    };
    for &(field, tenant) in fields {
        if let Some(schema) = info.payload_schema.get(field) {
            if schema.data_type != PayloadSchemaType::Keyword as i32 {
                anyhow::bail!(
                    "collection {name} indexes payload field {field} as a non-keyword type; \
                     vecload stores it as a keyword. Use another --collection"
                );
            }
            let is_tenant = matches!(
                schema.params.as_ref().and_then(|p| p.index_params.as_ref()),
                Some(payload_index_params::IndexParams::KeywordIndexParams(k)) if k.is_tenant == Some(true)
            );
            if tenant && !is_tenant {
                tracing::warn!(
                    "collection {name}: the {field} index is not marked is_tenant; \
                     tenants' points are not stored together (left as it is)"
                );
            }
            continue;
        }
        let params = KeywordIndexParamsBuilder::default().is_tenant(tenant);
        client
            .create_field_index(
                CreateFieldIndexCollectionBuilder::new(name, field, FieldType::Keyword)
                    .field_index_params(params)
                    .wait(true),
            )
            .await
            .map_err(|e| anyhow!("creating the {field} index on {name}: {}", message(&e)))?;
        tracing::info!("collection {name}: created keyword index on {field} (is_tenant={tenant})");
    }
    if all && layout == Layout::Vecload && !info.payload_schema.contains_key(BUCKET_FIELD) {
        client
            .create_field_index(
                CreateFieldIndexCollectionBuilder::new(name, BUCKET_FIELD, FieldType::Integer)
                    .wait(true),
            )
            .await
            .map_err(|e| {
                anyhow!(
                    "creating the {BUCKET_FIELD} index on {name}: {}",
                    message(&e)
                )
            })?;
    }
    Ok(())
}

/// The point id no point has: the barrier's filter names it.
const NO_POINT: &str = "00000000-0000-0000-0000-0000000ba771";

/// Returns once every shard of the collection has applied every operation
/// it received before this one: a delete by a filter that matches nothing
/// (`has_id` of an id no point has, so no scan), sent with `wait=true`.
///
/// Why that is a barrier (read in Qdrant 1.18.3's source,
/// `shards/local_shard/shard_ops.rs` and `update_workers/update_worker.rs`):
/// an update is written to the shard's WAL and put on its update channel
/// under one lock, so the channel is in WAL order; one worker per shard
/// takes operations off it one at a time and applies each before the next;
/// a `wait=true` caller is answered after its own operation is applied. A
/// filter-based operation goes to every shard. So when this returns, every
/// `wait=false` upsert sent before it has been applied on each shard. On
/// one replica per shard only: with replicas, `wait=true` returns once the
/// write consistency factor's worth of them applied it, and another may
/// lag (`check_one_replica`).
pub async fn barrier(client: &Qdrant, name: &str) -> Result<()> {
    use qdrant_client::qdrant::{Condition, DeletePointsBuilder, Filter, PointId};
    client
        .delete_points(
            DeletePointsBuilder::new(name)
                .points(Filter::must([Condition::has_id([PointId::from(
                    NO_POINT.to_string(),
                )])]))
                .wait(true),
        )
        .await
        .map_err(|e| {
            anyhow!(
                "waiting for {name}'s shards to apply what was written: {}",
                message(&e)
            )
        })?;
    Ok(())
}

/// `--qdrant-ack wal` counts on the barrier, which holds with one replica
/// per shard.
pub fn check_one_replica(name: &str, info: &CollectionInfo) -> Result<()> {
    let replicas = info
        .config
        .as_ref()
        .and_then(|c| c.params.as_ref())
        .and_then(|p| p.replication_factor)
        .unwrap_or(1);
    if replicas > 1 {
        anyhow::bail!(
            "--qdrant-ack wal: collection {name} keeps {replicas} replicas of each shard, and a \
             write acknowledged from one replica's log may not have reached another when the \
             load counts; use --qdrant-ack applied (the default) for a replicated collection"
        );
    }
    Ok(())
}

/// HNSW settings to put back after a bulk load.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
struct Saved {
    m: Option<u64>,
    payload_m: Option<u64>,
}

fn hnsw(info: &CollectionInfo) -> HnswConfigDiff {
    info.config
        .as_ref()
        .and_then(|c| c.hnsw_config)
        .unwrap_or_default()
}

fn marker(info: &CollectionInfo) -> Option<Saved> {
    let v = info.config.as_ref()?.metadata.get(MARKER)?;
    match &v.kind {
        Some(Kind::StringValue(s)) => serde_json::from_str(s).ok(),
        _ => None,
    }
}

fn marker_value(saved: Option<Saved>) -> HashMap<String, serde_json::Value> {
    let v = match saved {
        Some(s) => serde_json::Value::String(serde_json::json!(s).to_string()),
        // Null removes the key (Qdrant merges metadata).
        None => serde_json::Value::Null,
    };
    HashMap::from([(MARKER.to_string(), v)])
}

/// Stops HNSW building for the load (m = 0, and payload_m = 0 where it was
/// set, so no per-tenant graphs either). Points stay searchable by full scan.
pub async fn bulk_on(client: &Qdrant, name: &str) -> Result<()> {
    let info = info(client, name)
        .await?
        .ok_or_else(|| anyhow!("collection {name} disappeared"))?;
    let now = hnsw(&info);
    let saved = match marker(&info) {
        Some(s) => {
            tracing::info!(
                "collection {name} is still in bulk mode from an earlier or concurrent run; \
                 its saved HNSW settings (m={:?}) will be restored at the end",
                s.m
            );
            s
        }
        None => {
            let s = Saved {
                m: now.m,
                payload_m: now.payload_m,
            };
            // Marker first: if the run dies between the two calls, the next
            // run still knows what to restore.
            client
                .update_collection(
                    UpdateCollectionBuilder::new(name).metadata(marker_value(Some(s))),
                )
                .await
                .map_err(|e| anyhow!("saving HNSW settings of {name}: {}", message(&e)))?;
            s
        }
    };
    let mut off = HnswConfigDiffBuilder::default().m(0);
    if saved.payload_m.is_some_and(|p| p > 0) {
        off = off.payload_m(0);
    }
    client
        .update_collection(UpdateCollectionBuilder::new(name).hnsw_config(off))
        .await
        .map_err(|e| anyhow!("turning HNSW building off on {name}: {}", message(&e)))?;
    tracing::info!("collection {name}: HNSW building off during the load (bulk mode)");
    Ok(())
}

/// Puts back the settings saved by `bulk_on` (also one left by a killed run)
/// and removes the marker. Returns what was restored, if anything.
pub async fn bulk_off(client: &Qdrant, name: &str) -> Result<Option<String>> {
    let Some(info) = info(client, name).await? else {
        return Ok(None);
    };
    let Some(saved) = marker(&info) else {
        return Ok(None);
    };
    // Qdrant's default when the collection had none recorded.
    let m = saved.m.unwrap_or(16);
    let mut back = HnswConfigDiffBuilder::default().m(m);
    if let Some(p) = saved.payload_m {
        back = back.payload_m(p);
    }
    client
        .update_collection(UpdateCollectionBuilder::new(name).hnsw_config(back))
        .await
        .map_err(|e| anyhow!("restoring HNSW settings of {name} (m={m}): {}", message(&e)))?;
    client
        .update_collection(UpdateCollectionBuilder::new(name).metadata(marker_value(None)))
        .await
        .map_err(|e| anyhow!("clearing the bulk-mode marker of {name}: {}", message(&e)))?;
    let payload_m = saved
        .payload_m
        .map(|p| format!(", payload_m={p}"))
        .unwrap_or_default();
    Ok(Some(format!("HNSW m={m}{payload_m} restored")))
}

/// The collection's state for `vecload check`: its status, the optimizer's
/// error, points against indexed vectors, and bulk mode left by a run that
/// never finished.
pub async fn health(client: &Qdrant, name: &str) -> Result<crate::store::IndexHealth> {
    let info = info(client, name)
        .await?
        .ok_or_else(|| anyhow!("collection {name} does not exist"))?;
    let mut h = crate::store::IndexHealth::default();
    let m = hnsw(&info).m;
    h.index = format!(
        "HNSW m={}, {} of {} vectors indexed, {}",
        m.map_or("default".to_string(), |m| m.to_string()),
        info.indexed_vectors_count.unwrap_or(0),
        info.points_count.unwrap_or(0),
        match CollectionStatus::try_from(info.status) {
            Ok(CollectionStatus::Green) => "green",
            Ok(CollectionStatus::Yellow) => "yellow (indexing)",
            Ok(CollectionStatus::Grey) => "grey (optimization pending)",
            Ok(CollectionStatus::Red) => "RED",
            _ => "status unknown",
        }
    );
    if info.status == CollectionStatus::Red as i32 {
        h.problems.push(format!(
            "collection {name} is red: Qdrant reports an error (see its log)"
        ));
    }
    if let Some(o) = &info.optimizer_status
        && !o.ok
    {
        h.problems.push(format!(
            "collection {name}: the optimizer failed: {}",
            o.error
        ));
    }
    if let Some(s) = marker(&info) {
        h.problems.push(format!(
            "collection {name} is still in bulk mode (HNSW building off, saved m={:?}) from a \
             load that did not finish: the next load of any tenant, or `vecload check --repair`, \
             restores it",
            s.m
        ));
    }
    for w in &info.warnings {
        h.notes.push(w.message.clone());
    }
    Ok(h)
}

/// Collection status in words, for the summary.
pub async fn status(client: &Qdrant, name: &str) -> Option<String> {
    let info = info(client, name).await.ok()??;
    let s = CollectionStatus::try_from(info.status).ok()?;
    Some(match s {
        CollectionStatus::Green => "status green".into(),
        CollectionStatus::Yellow => "status yellow: Qdrant is indexing in the background".into(),
        CollectionStatus::Grey => "status grey: optimization pending".into(),
        CollectionStatus::Red => "status RED: the collection has an error".into(),
        CollectionStatus::UnknownCollectionStatus => "status unknown".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_round_trips_through_metadata() {
        let s = Saved {
            m: Some(16),
            payload_m: None,
        };
        let map = marker_value(Some(s));
        let serde_json::Value::String(text) = &map[MARKER] else {
            panic!("marker is not a string")
        };
        let back: Saved = serde_json::from_str(text).unwrap();
        assert_eq!(back, s);
        assert!(marker_value(None)[MARKER].is_null());
    }
}
