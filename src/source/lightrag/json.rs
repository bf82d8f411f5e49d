//! Reads LightRAG's chunk store, `kv_store_text_chunks.json`: one JSON
//! object keyed by chunk id, each value {content, tokens, chunk_order_index,
//! full_doc_id, file_path, ...}. The file is parsed as a stream on its own
//! thread, so a store of millions of chunks never sits in memory at once.
//!
//! Rows keep LightRAG's chunk ids; written in vecload's layout they get
//! LightRAG's own Qdrant point id for the workspace instead.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow};
use async_trait::async_trait;
use serde::Deserialize;
use serde::de::{MapAccess, Visitor};
use tokio::sync::mpsc;

use crate::records::{RowReader, StoredRow as Row};

pub struct LightragSource {
    path: PathBuf,
    tenant: String,
    rx: mpsc::Receiver<Result<Vec<Row>>>,
    parser: Option<std::thread::JoinHandle<()>>,
}

/// One chunk record of LightRAG's text_chunks namespace, as its JSON and
/// Redis stores keep it.
#[derive(Deserialize)]
pub struct Record {
    content: Option<String>,
    #[serde(default)]
    full_doc_id: Option<String>,
    #[serde(default)]
    chunk_order_index: Option<i64>,
    #[serde(default)]
    file_path: Option<String>,
    #[serde(default)]
    tokens: Option<i64>,
    /// Stamped by LightRAG's JsonKVStorage (Unix seconds).
    #[serde(default)]
    create_time: Option<i64>,
}

impl Record {
    /// The row of chunk `id` of `tenant`; `where_` names it in an error.
    pub fn into_row(self, id: String, tenant: &str, where_: &str) -> Result<Row, String> {
        let content = self
            .content
            .ok_or_else(|| format!("{where_}: the record has no string \"content\""))?;
        Ok(Row {
            tokens: self.tokens.map(|t| t.clamp(0, u32::MAX as i64) as u32),
            extra: Some(crate::records::Extra {
                created_at: self.create_time,
                ..Default::default()
            }),
            lightrag_id: true,
            vector: None,
            page: None,
            tenant: tenant.to_string(),
            doc_id: self.full_doc_id.unwrap_or_default(),
            source: self.file_path.unwrap_or_else(|| id.clone()),
            chunk_index: self
                .chunk_order_index
                .unwrap_or(0)
                .clamp(0, u32::MAX as i64) as u32,
            content,
            id,
        })
    }
}

impl LightragSource {
    pub fn open(path: &Path, tenant: String, page: usize) -> Result<LightragSource> {
        let (tx, rx) = mpsc::channel(2);
        let (p, t) = (path.to_path_buf(), tenant.clone());
        let parser = std::thread::Builder::new()
            .name("vecload-lightrag".into())
            .spawn(move || {
                let result = parse(&p, Some((&t, page, &tx)));
                if let Err(e) = result {
                    let _ = tx.blocking_send(Err(e));
                }
            })?;
        Ok(LightragSource {
            path: path.to_path_buf(),
            tenant,
            rx,
            parser: Some(parser),
        })
    }
}

type Pages<'a> = (&'a str, usize, &'a mpsc::Sender<Result<Vec<Row>>>);

/// Streams the file's records into pages (or only counts them); returns how
/// many records it has.
fn parse(path: &Path, pages: Option<Pages<'_>>) -> Result<u64> {
    let file =
        std::fs::File::open(path).map_err(|e| anyhow!("cannot open {}: {e}", path.display()))?;
    let mut de = serde_json::Deserializer::from_reader(std::io::BufReader::new(file));
    let n = serde::Deserializer::deserialize_map(&mut de, Chunks { pages, path })
        .map_err(|e| anyhow!("{}: {e} (expected LightRAG's kv_store_text_chunks.json: an object of chunk id -> {{content, full_doc_id, chunk_order_index, file_path}})", path.display()))?;
    Ok(n)
}

struct Chunks<'a> {
    pages: Option<Pages<'a>>,
    path: &'a Path,
}

impl<'de> Visitor<'de> for Chunks<'_> {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of chunk id -> chunk record")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<u64, A::Error> {
        use serde::de::Error;
        let mut n = 0u64;
        let mut page = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            n += 1;
            let Some((tenant, size, tx)) = self.pages else {
                map.next_value::<serde::de::IgnoredAny>()?;
                continue;
            };
            let rec: Record = map.next_value()?;
            let where_ = format!("chunk {key:?} of {}", self.path.display());
            page.push(
                rec.into_row(key, tenant, &where_)
                    .map_err(A::Error::custom)?,
            );
            // An error sending: the run stopped reading.
            if page.len() >= size && tx.blocking_send(Ok(std::mem::take(&mut page))).is_err() {
                return Ok(n);
            }
        }
        if let Some((_, _, tx)) = self.pages
            && !page.is_empty()
        {
            let _ = tx.blocking_send(Ok(page));
        }
        Ok(n)
    }
}

#[async_trait]
impl RowReader for LightragSource {
    fn describe(&self) -> String {
        format!("LightRAG chunk store {}", self.path.display())
    }

    async fn next_page(&mut self) -> Result<Option<Vec<Row>>> {
        match self.rx.recv().await {
            Some(page) => page.map(Some),
            None => {
                if let Some(p) = self.parser.take() {
                    let _ = tokio::task::spawn_blocking(move || p.join()).await;
                }
                Ok(None)
            }
        }
    }

    async fn counts(&mut self) -> Result<BTreeMap<String, u64>> {
        let path = self.path.clone();
        let n = tokio::task::spawn_blocking(move || parse(&path, None)).await??;
        Ok(BTreeMap::from([(self.tenant.clone(), n)]))
    }
}
