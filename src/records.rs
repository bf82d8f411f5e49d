//! The records that flow between the stages: a document to chunk, a chunk
//! to embed, an embedded row to write, a stored row read back, a file passed
//! over, a search hit. Every stage imports this module; it imports none of
//! theirs, so no stage depends on another's internals.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// The SHA-256 of a text, hex: what `content_hash` holds and a store is
/// asked about to tell an unchanged row from a changed one.
pub fn content_hash(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// What every chunk of one document shares.
#[derive(Debug)]
pub struct DocMeta {
    pub tenant: Arc<str>,
    pub doc_id: String,
    /// Path relative to the PATH given (plus `#record` for JSON records).
    pub source: String,
    /// The file it came from, relative to the PATH given.
    pub file: Arc<str>,
    /// The document's key within its tenant (what ids are derived from).
    pub key: String,
    /// The PDF page the document is, stored with its chunks for citing.
    pub page: Option<u32>,
    /// Hash of the text and the chunk settings: unchanged means same chunks.
    pub hash: String,
    /// How many chunks the document has now.
    pub chunk_count: u32,
    /// Chunks still to be acknowledged by the sink in this run; the document
    /// is complete (and its stale chunks can go) when this reaches zero.
    pub pending: std::sync::atomic::AtomicU32,
}

#[derive(Debug, Clone)]
pub struct Chunk {
    pub id: String,
    pub doc: Arc<DocMeta>,
    pub index: u32,
    pub text: String,
    pub content_hash: String,
    pub tokens: u32,
    /// LightRAG's entity and relationship fields, carried by re-embedding.
    pub extra: Option<Arc<Extra>>,
}

/// What LightRAG's entity and relationship records carry besides their
/// text, kept unchanged when they are embedded again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extra {
    pub entity_name: Option<String>,
    pub src_id: Option<String>,
    pub tgt_id: Option<String>,
    /// Chunk ids the record was extracted from, joined by "<SEP>".
    pub source_id: Option<String>,
    /// When the record was first stored (Unix seconds).
    pub created_at: Option<i64>,
}

/// A document ready to chunk. `key` identifies it within the tenant and
/// feeds the ids; `source` is what is stored and shown.
#[derive(Debug)]
pub struct Document {
    pub key: String,
    pub source: String,
    pub file: Arc<str>,
    pub text: String,
    pub page: Option<u32>,
    /// One record per line (table rows): chunks hold whole lines, no overlap.
    pub records: bool,
}

/// A chunk with its vector, checked for length and finiteness.
#[derive(Debug, Clone)]
pub struct Embedded {
    pub chunk: Chunk,
    pub vector: Vec<f32>,
}

/// A file passed over. `reason` is a short fixed label for counting; `detail`
/// says what exactly was wrong.
#[derive(Debug, Clone, Serialize)]
pub struct Skip {
    pub path: String,
    pub reason: &'static str,
    pub detail: String,
}

impl Skip {
    pub fn new(path: &Path, reason: &'static str, detail: impl Into<String>) -> Skip {
        Skip {
            path: path.display().to_string(),
            reason,
            detail: detail.into(),
        }
    }

    /// The reason label `reason` names, when a skip for it follows from the
    /// file's bytes alone (the same bytes are skipped again, so a remote
    /// object need not be fetched again to learn it); None for reasons of
    /// the moment (timed out, crashed, unreadable).
    pub fn of_content(reason: &str) -> Option<&'static str> {
        const OF_CONTENT: &[&str] = &[
            "binary",
            "empty",
            "unknown encoding",
            "unparsable",
            "encrypted",
            "no text layer",
            "parser panicked",
        ];
        OF_CONTENT.iter().copied().find(|r| *r == reason)
    }

    /// The file may well be there and fine next time (it could not be read
    /// now): its rows must not be pruned as if it were deleted.
    pub fn of_the_moment(reason: &str) -> bool {
        matches!(reason, "unreadable" | "timed out" | "parser crashed")
    }
}

/// One stored text and what identifies it.
#[derive(Debug, Clone)]
pub struct StoredRow {
    /// The source's own id: vecload's UUID, or LightRAG's string id.
    pub id: String,
    pub tenant: String,
    pub doc_id: String,
    pub source: String,
    pub chunk_index: u32,
    pub content: String,
    /// LightRAG's stored token count, kept as it is.
    pub tokens: Option<u32>,
    pub extra: Option<Extra>,
    /// `id` is LightRAG's (not a UUID Qdrant takes as a point id).
    pub lightrag_id: bool,
    /// The PDF page the text came from, carried to the new store.
    pub page: Option<u32>,
    /// The stored vector, read only by `copy` (a reader opened for it).
    pub vector: Option<Vec<f32>>,
}

/// A store texts are read back from, page by page, in a stable order:
/// what `reembed` and `copy` read (a pgvector table, a Qdrant collection,
/// LightRAG's chunk stores).
#[async_trait]
pub trait RowReader: Send {
    fn describe(&self) -> String;
    async fn next_page(&mut self) -> anyhow::Result<Option<Vec<StoredRow>>>;
    /// Rows per tenant now (asked again at the end, so rows added while the
    /// run went show up as a mismatch instead of being missed).
    async fn counts(&mut self) -> anyhow::Result<std::collections::BTreeMap<String, u64>>;
    /// The stored vectors' length, for a reader opened with vectors.
    fn dim(&self) -> Option<usize> {
        None
    }
}

/// One search result. `score` is what the store ranks by: cosine
/// similarity, inner product, or (euclid) the distance, smaller is nearer.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Hit {
    pub id: String,
    pub score: f32,
    pub source: String,
    pub chunk_index: i64,
    pub content: String,
}
