//! What a sharded run keeps in the collection's metadata (Qdrant merges
//! metadata key by key, so workers writing their own keys at once do not
//! overwrite each other): the N the prepare step set, each worker's report
//! for the finish step, and which worker runs a shard now. Qdrant has no
//! locks, so a claim is a key the worker refreshes while it runs; a claim
//! younger than `FRESH` of another worker means the shard is (or was just)
//! running elsewhere.

use std::collections::HashMap;

use anyhow::{Result, anyhow};
use qdrant_client::Qdrant;
use qdrant_client::qdrant::UpdateCollectionBuilder;
use qdrant_client::qdrant::value::Kind;

use super::collection::info;
use super::connect::message;
use crate::shard::{CLAIM_REFRESH_SECS, Shard, ShardReport, now};

/// The metadata key of the shard count a sharded run was prepared for.
const SHARDS: &str = "vecload_shards";
/// How old a claim may be and still count as running.
const FRESH: u64 = 3 * CLAIM_REFRESH_SECS;

fn report_key(tenant: &str, shard: u32) -> String {
    format!("vecload_report/{tenant}/{shard}")
}

fn claim_prefix(tenant: &str, shard: u32) -> String {
    format!("vecload_running/{tenant}/{shard}/")
}

/// `I/HEX` after the tenant: a claim of this tenant, not of one whose
/// name goes on with a slash.
fn is_claim(rest: &str) -> bool {
    rest.split_once('/')
        .is_some_and(|(i, h)| i.parse::<u32>().is_ok() && is_run_hash(h))
}

fn is_run_hash(h: &str) -> bool {
    h.len() == 12 && h.bytes().all(|b| b.is_ascii_hexdigit())
}

fn claim_key(tenant: &str, shard: u32, run: &str) -> String {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(run.as_bytes());
    let short: String = h[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}{short}", claim_prefix(tenant, shard))
}

async fn metadata(
    client: &Qdrant,
    name: &str,
) -> Result<HashMap<String, qdrant_client::qdrant::Value>> {
    Ok(info(client, name)
        .await?
        .and_then(|i| i.config)
        .map(|c| c.metadata)
        .unwrap_or_default())
}

/// Sets (or, with null, removes) these keys.
async fn merge(
    client: &Qdrant,
    name: &str,
    keys: HashMap<String, serde_json::Value>,
) -> Result<()> {
    client
        .update_collection(UpdateCollectionBuilder::new(name).metadata(keys))
        .await
        .map_err(|e| anyhow!("updating the metadata of {name}: {}", message(&e)))?;
    Ok(())
}

fn text(v: &qdrant_client::qdrant::Value) -> Option<&str> {
    match v.kind.as_ref() {
        Some(Kind::StringValue(s)) => Some(s),
        _ => None,
    }
}

pub async fn shards(client: &Qdrant, name: &str) -> Result<Option<u32>> {
    let meta = metadata(client, name).await?;
    Ok(match meta.get(SHARDS).and_then(|v| v.kind.as_ref()) {
        Some(Kind::IntegerValue(n)) => u32::try_from(*n).ok(),
        Some(Kind::DoubleValue(n)) => Some(*n as u32),
        _ => None,
    })
}

pub async fn set_shards(client: &Qdrant, name: &str, n: Option<u32>) -> Result<()> {
    let v = n.map_or(serde_json::Value::Null, serde_json::Value::from);
    merge(client, name, HashMap::from([(SHARDS.to_string(), v)])).await
}

pub async fn put_report(client: &Qdrant, name: &str, tenant: &str, r: &ShardReport) -> Result<()> {
    let v = serde_json::Value::String(serde_json::to_string(r)?);
    merge(
        client,
        name,
        HashMap::from([(report_key(tenant, r.shard), v)]),
    )
    .await
}

pub async fn reports(client: &Qdrant, name: &str, tenant: &str) -> Result<Vec<ShardReport>> {
    let prefix = report_key(tenant, 0);
    let prefix = prefix.trim_end_matches('0');
    metadata(client, name)
        .await?
        .iter()
        .filter(|(k, _)| {
            k.strip_prefix(prefix)
                .is_some_and(|i| i.parse::<u32>().is_ok())
        })
        .filter_map(|(k, v)| text(v).map(|t| (k, t)))
        .map(|(k, t)| {
            serde_json::from_str(t).map_err(|e| anyhow!("{name} metadata {k}: not a report ({e})"))
        })
        .collect()
}

/// The reports, and the claims killed workers left behind.
pub async fn clear_reports(client: &Qdrant, name: &str, tenant: &str) -> Result<()> {
    let report = report_key(tenant, 0);
    let report = report.trim_end_matches('0');
    let claims = format!("vecload_running/{tenant}/");
    let keys: HashMap<String, serde_json::Value> = metadata(client, name)
        .await?
        .into_keys()
        .filter(|k| {
            k.strip_prefix(report)
                .is_some_and(|rest| rest.parse::<u32>().is_ok())
                || k.strip_prefix(claims.as_str()).is_some_and(is_claim)
        })
        .map(|k| (k, serde_json::Value::Null))
        .collect();
    if keys.is_empty() {
        return Ok(());
    }
    merge(client, name, keys).await
}

/// Refreshes this worker's claim; Some(who) when another worker's claim
/// is fresh. Each worker has a key of its own, written before the others
/// are read: two workers starting at the same moment each see the other.
pub async fn claim(
    client: &Qdrant,
    name: &str,
    tenant: &str,
    shard: Shard,
    run: &str,
) -> Result<Option<String>> {
    let mine = serde_json::json!({ "run": run, "seen": now() }).to_string();
    let key = claim_key(tenant, shard.index, run);
    merge(
        client,
        name,
        HashMap::from([(key.clone(), serde_json::Value::String(mine))]),
    )
    .await?;
    let prefix = claim_prefix(tenant, shard.index);
    let meta = metadata(client, name).await?;
    Ok(meta
        .iter()
        .filter(|(k, _)| **k != key && k.strip_prefix(prefix.as_str()).is_some_and(is_run_hash))
        .filter_map(|(_, v)| serde_json::from_str::<serde_json::Value>(text(v)?).ok())
        .find_map(|c| {
            let (who, seen) = (c["run"].as_str()?.to_string(), c["seen"].as_u64()?);
            let ago = now().saturating_sub(seen);
            (ago < FRESH).then(|| format!("{who}, seen {ago} s ago"))
        }))
}

pub async fn release(
    client: &Qdrant,
    name: &str,
    tenant: &str,
    shard: Shard,
    run: &str,
) -> Result<()> {
    let key = claim_key(tenant, shard.index, run);
    merge(
        client,
        name,
        HashMap::from([(key, serde_json::Value::Null)]),
    )
    .await
}
