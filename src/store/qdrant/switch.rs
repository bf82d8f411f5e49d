//! The blue-green switch in Qdrant: NAME is an alias, and one
//! `create_alias` call re-points an existing alias atomically (Qdrant 1.18
//! overwrites it under one lock): readers see the old collection or the new
//! one, never neither. The collection NAME pointed at before is kept.

use anyhow::{Result, anyhow, bail};
use qdrant_client::qdrant::CreateAliasBuilder;

use super::QdrantSettings;
use super::connect::message;

/// Points alias `name` at the target; returns what was done, for the report.
pub async fn switch(q: &QdrantSettings, name: &str) -> Result<String> {
    let client = q.target.connect()?;
    let before = client
        .list_aliases()
        .await
        .map_err(|e| anyhow!("listing aliases: {}", message(&e)))?
        .aliases
        .into_iter()
        .find(|a| a.alias_name == name)
        .map(|a| a.collection_name);
    // collection_exists also answers true for an alias.
    if before.is_none()
        && client
            .collection_exists(name)
            .await
            .map_err(|e| anyhow!("checking {name:?}: {}", message(&e)))?
    {
        bail!(
            "{name:?} is a collection, not an alias. Point the RAG API at an alias \
             once (create it on the current collection), then switch the alias"
        );
    }
    client
        .create_alias(CreateAliasBuilder::new(&q.collection, name))
        .await
        .map_err(|e| {
            anyhow!(
                "pointing alias {name:?} at {}: {}",
                q.collection,
                message(&e)
            )
        })?;
    Ok(match before {
        Some(old) => format!(
            "alias {name} now points at collection {} (was {old}, which is kept)",
            q.collection
        ),
        None => format!("alias {name} created on collection {}", q.collection),
    })
}
