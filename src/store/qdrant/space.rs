//! The embedding-space record of a Qdrant collection: the collection's own
//! metadata (Qdrant 1.16+), key `vecload_embedding_space` holding the
//! record as JSON text, plus LightRAG's `lightrag_embedding_model` and
//! `lightrag_embedding_dim` for its layout. Set with the collection's
//! creation in one request; updates merge with the other keys.

use std::collections::HashMap;

use anyhow::{Result, anyhow};
use qdrant_client::Qdrant;
use qdrant_client::qdrant::{CollectionInfo, UpdateCollectionBuilder, value::Kind};

use super::connect::message;
use crate::layout::Layout;
use crate::space::{LIGHTRAG_DIM_KEY, LIGHTRAG_MODEL_KEY, RECORD_KEY, Recorded, Space};

/// The metadata keys that record `space`.
pub fn metadata(space: &Space, layout: Layout) -> HashMap<String, serde_json::Value> {
    let mut m = HashMap::from([(
        RECORD_KEY.to_string(),
        serde_json::Value::String(space.to_json()),
    )]);
    if layout.is_lightrag() {
        m.insert(
            LIGHTRAG_MODEL_KEY.to_string(),
            serde_json::Value::String(space.model.clone()),
        );
        m.insert(
            LIGHTRAG_DIM_KEY.to_string(),
            serde_json::Value::from(space.dim),
        );
    }
    m
}

/// What the collection's metadata records of its space.
pub fn recorded(name: &str, info: &CollectionInfo) -> Recorded {
    let Some(v) = info
        .config
        .as_ref()
        .and_then(|c| c.metadata.get(RECORD_KEY))
    else {
        return Recorded::Unrecorded;
    };
    match &v.kind {
        Some(Kind::StringValue(s)) => Space::from_json(s, &format!("collection {name}")),
        _ => Recorded::Unreadable(format!(
            "the embedding-space record of collection {name} is not JSON text"
        )),
    }
}

/// Records `space` in collection `name`'s metadata (merged with the rest).
pub async fn write(client: &Qdrant, name: &str, space: &Space, layout: Layout) -> Result<()> {
    client
        .update_collection(UpdateCollectionBuilder::new(name).metadata(metadata(space, layout)))
        .await
        .map_err(|e| {
            anyhow!(
                "recording the embedding space of collection {name}: {}",
                message(&e)
            )
        })?;
    Ok(())
}
