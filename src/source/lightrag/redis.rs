//! Reads LightRAG's Redis chunk store (RedisKVStorage, namespace
//! text_chunks): one key per chunk, `{workspace}_text_chunks:{chunk id}`
//! (`text_chunks:{id}` for LightRAG's unnamed workspace), its value the JSON
//! record {content, tokens, chunk_order_index, full_doc_id, file_path, ...}.
//!
//! Keys are walked with SCAN (never KEYS, which blocks the server the RAG
//! API is using) and read with MGET, one page at a time. SCAN may return a
//! key twice while the server rehashes; each is read once.

use std::collections::{BTreeMap, HashSet};

use anyhow::{Result, anyhow};
use async_trait::async_trait;
use redis::aio::MultiplexedConnection;

use super::json::Record;
use crate::records::{RowReader, StoredRow as Row};

pub struct RedisSource {
    con: MultiplexedConnection,
    pattern: String,
    prefix_len: usize,
    tenant: String,
    page: usize,
    cursor: u64,
    done: bool,
    seen: HashSet<String>,
    desc: String,
}

/// The URL without its password, for logs.
pub fn describe_uri(uri: &str) -> String {
    match url::Url::parse(uri) {
        Ok(mut u) => {
            let _ = u.set_password(None);
            let _ = u.set_username("");
            u.to_string()
        }
        Err(_) => "(unparsable REDIS_URI)".into(),
    }
}

impl RedisSource {
    /// `workspace` None: LightRAG's unnamed workspace (keys without a
    /// prefix), stored under `tenant`.
    pub async fn open(
        uri: &str,
        workspace: Option<&str>,
        tenant: String,
        page: usize,
    ) -> Result<RedisSource> {
        let shown = describe_uri(uri);
        // The client's own errors can quote the URL: never pass them on.
        let client = redis::Client::open(uri).map_err(|_| {
            anyhow!("REDIS_URI / --from-redis-url {shown} is not a valid redis:// or rediss:// URL")
        })?;
        let con = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| {
                anyhow!(
                    "cannot connect to Redis at {shown}: {} (check REDIS_URI: host, port, password, rediss:// for TLS)",
                    e.kind_name()
                )
            })?;
        let prefix = match workspace {
            Some(w) => format!("{w}_text_chunks:"),
            None => "text_chunks:".to_string(),
        };
        Ok(RedisSource {
            con,
            pattern: format!("{}*", glob_escape(&prefix)),
            prefix_len: prefix.len(),
            tenant,
            page,
            cursor: 0,
            done: false,
            seen: HashSet::new(),
            desc: format!("LightRAG Redis chunk store {prefix}* at {shown}"),
        })
    }

    /// One SCAN step: the next cursor and the keys it returned.
    async fn scan(&mut self, cursor: u64) -> Result<(u64, Vec<String>)> {
        redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&self.pattern)
            .arg("COUNT")
            .arg(self.page)
            .query_async(&mut self.con)
            .await
            .map_err(|e| anyhow!("SCAN on Redis: {}", e.kind_name()))
    }
}

/// SCAN's MATCH is a glob: a workspace name with `*`, `?`, `[` or `\`
/// must match itself only.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

trait KindName {
    fn kind_name(&self) -> String;
}

impl KindName for redis::RedisError {
    /// What went wrong, without the server address or credentials the
    /// error's Display may carry.
    fn kind_name(&self) -> String {
        match self.code() {
            Some(code) => format!("{:?} ({code})", self.kind()),
            None => format!("{:?}", self.kind()),
        }
    }
}

#[async_trait]
impl RowReader for RedisSource {
    fn describe(&self) -> String {
        self.desc.clone()
    }

    async fn next_page(&mut self) -> Result<Option<Vec<Row>>> {
        loop {
            if self.done {
                return Ok(None);
            }
            let (next, keys) = self.scan(self.cursor).await?;
            self.cursor = next;
            self.done = next == 0;
            let keys: Vec<String> = keys
                .into_iter()
                .filter(|k| self.seen.insert(k.clone()))
                .collect();
            if keys.is_empty() {
                continue;
            }
            let values: Vec<Option<String>> = redis::cmd("MGET")
                .arg(&keys)
                .query_async(&mut self.con)
                .await
                .map_err(|e| anyhow!("MGET on Redis: {}", e.kind_name()))?;
            let mut rows = Vec::with_capacity(keys.len());
            for (key, value) in keys.iter().zip(values) {
                // Deleted between SCAN and MGET: gone from the source too.
                let Some(value) = value else { continue };
                let rec: Record = serde_json::from_str(&value)
                    .map_err(|e| anyhow!("Redis key {key}: not a LightRAG chunk record: {e}"))?;
                let id = key[self.prefix_len..].to_string();
                let row = rec
                    .into_row(id, &self.tenant, &format!("Redis key {key}"))
                    .map_err(|e| anyhow!(e))?;
                rows.push(row);
            }
            if !rows.is_empty() {
                return Ok(Some(rows));
            }
        }
    }

    async fn counts(&mut self) -> Result<BTreeMap<String, u64>> {
        let mut seen = HashSet::new();
        let mut cursor = 0;
        loop {
            let (next, keys) = self.scan(cursor).await?;
            seen.extend(keys);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        Ok(BTreeMap::from([(self.tenant.clone(), seen.len() as u64)]))
    }
}
