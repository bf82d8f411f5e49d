//! What the stored rows look like: vecload's own layout, or exactly what
//! the RAG API (LightRAG) reads, so it can use the vectors as they are.
//!
//! LightRAG's rules, as in lightrag-hku 1.5.7 (`lightrag/kg/qdrant_impl.py`,
//! `lightrag/kg/postgres_impl.py`, `lightrag/base.py`):
//! - names carry a model suffix, `re.sub(r"[^a-zA-Z0-9_]", "_",
//!   model.strip().lower()) + f"_{dim}d"`: Qdrant collections
//!   `lightrag_vdb_{chunks|entities|relationships}_{suffix}`, PostgreSQL
//!   tables `LIGHTRAG_VDB_{CHUNKS|ENTITY|RELATION}_{suffix}`, unquoted in
//!   LightRAG's SQL and so stored in lower case;
//! - Qdrant: payload `id` (LightRAG's id), `workspace_id`, `created_at`
//!   (Unix seconds) and the namespace's fields; point id
//!   `uuid.UUID(bytes=sha256(workspace + id)[:16], version=4).hex`; cosine
//!   distance, `HnswConfigDiff(payload_m=16, m=0)` (one graph per tenant),
//!   a keyword index on workspace_id with is_tenant;
//! - PostgreSQL: key (workspace, id), vector column `content_vector`, index
//!   `idx_{table}_hnsw_cosine` with m = 16, ef_construction = 64, and
//!   b-tree indexes `idx_{table}_id` and `idx_{table}_workspace_id`.

use md5::Md5;
use sha2::{Digest, Sha256};

/// LightRAG's three vector namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Namespace {
    Chunks,
    Entities,
    Relationships,
}

impl Namespace {
    /// Recognises LightRAG's own collection and table names (any suffix).
    pub fn from_store_name(name: &str) -> Option<Namespace> {
        let n = name.rsplit('.').next().unwrap_or(name).to_ascii_lowercase();
        let rest = n.strip_prefix("lightrag_vdb_")?;
        [
            ("chunks", Namespace::Chunks),
            ("entities", Namespace::Entities),
            ("entity", Namespace::Entities),
            ("relationships", Namespace::Relationships),
            ("relation", Namespace::Relationships),
        ]
        .into_iter()
        .find(|(p, _)| rest == *p || rest.starts_with(&format!("{p}_")))
        .map(|(_, ns)| ns)
    }

    /// The model suffix of one of LightRAG's store names
    /// (`lightrag_vdb_chunks_text_embedding_3_large_3072d` ->
    /// `text_embedding_3_large_3072d`), if it has one.
    pub fn suffix_of(name: &str) -> Option<String> {
        let n = name.rsplit('.').next().unwrap_or(name).to_ascii_lowercase();
        let rest = n.strip_prefix("lightrag_vdb_")?;
        ["chunks", "entities", "entity", "relationships", "relation"]
            .iter()
            .find_map(|p| rest.strip_prefix(&format!("{p}_")))
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    }

    fn qdrant_base(self) -> &'static str {
        match self {
            Namespace::Chunks => "chunks",
            Namespace::Entities => "entities",
            Namespace::Relationships => "relationships",
        }
    }

    fn pg_base(self) -> &'static str {
        match self {
            Namespace::Chunks => "lightrag_vdb_chunks",
            Namespace::Entities => "lightrag_vdb_entity",
            Namespace::Relationships => "lightrag_vdb_relation",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Vecload,
    Lightrag(Namespace),
}

impl Layout {
    pub fn is_lightrag(self) -> bool {
        matches!(self, Layout::Lightrag(_))
    }
}

/// LightRAG's model suffix; None when there is no model name (LightRAG then
/// uses the bare names).
pub fn suffix(model: &str, dim: usize) -> Option<String> {
    let m = model.trim().to_lowercase();
    if m.is_empty() {
        return None;
    }
    let safe: String = m
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Some(format!("{safe}_{dim}d"))
}

pub fn qdrant_collection(ns: Namespace, suffix: Option<&str>) -> String {
    match suffix {
        Some(s) => format!("lightrag_vdb_{}_{s}", ns.qdrant_base()),
        None => format!("lightrag_vdb_{}", ns.qdrant_base()),
    }
}

pub fn pg_table(ns: Namespace, suffix: Option<&str>) -> String {
    match suffix {
        Some(s) => format!("{}_{s}", ns.pg_base()),
        None => ns.pg_base().to_string(),
    }
}

/// LightRAG's Qdrant point id for `id` in `workspace`, hyphenated (Qdrant
/// stores UUIDs the same whichever way they are written).
pub fn qdrant_point_id(workspace: &str, id: &str) -> String {
    let d = Sha256::digest(format!("{workspace}{id}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    // uuid.UUID(bytes=..., version=4) sets the version and variant bits.
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &x[..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..32]
    )
}

/// `compute_mdhash_id(text, prefix)`: prefix + md5 hex.
pub fn mdhash_id(text: &str, prefix: &str) -> String {
    format!("{prefix}{}", hex::encode(Md5::digest(text.as_bytes())))
}

/// LightRAG's document id for a file: "doc-" + md5 of its canonical name
/// (the base name).
pub fn doc_id(file_name: &str) -> String {
    mdhash_id(file_name, "doc-")
}

/// LightRAG's chunk id: `{doc_id}-chunk-{order:03d}`.
pub fn chunk_id(doc_id: &str, order: u32) -> String {
    format!("{doc_id}-chunk-{order:03}")
}

/// The order in a LightRAG chunk id (`...-chunk-NNN`).
pub fn chunk_order(id: &str) -> Option<u32> {
    id.rsplit_once("-chunk-").and_then(|(_, n)| n.parse().ok())
}

/// `_safe_index_name`: `idx_{table}_{suffix}`, or the table's md5 prefix
/// when that would pass PostgreSQL's 63 bytes.
pub fn pg_index_name(table: &str, suffix: &str) -> String {
    let t = table.to_lowercase();
    let full = format!("idx_{t}_{suffix}");
    if full.len() <= 63 {
        return full;
    }
    let h = hex::encode(Md5::digest(t.as_bytes()));
    format!("idx_{}_{suffix}", &h[..12])
}

/// LightRAG's `sanitize_text_for_encoding`, applied to a document before
/// it is chunked: strip, unescape HTML entities, drop U+FFFE/U+FFFF and
/// control characters other than tab and line breaks, strip again.
/// Named references use the HTML5 table (as Python's) from html-escape,
/// whose few two-code-point names (`&NotEqualTilde;`) keep only the
/// first; the legacy forms without a semicolon (`&amp` alone) are left as
/// written.
pub fn lightrag_clean(text: &str) -> String {
    let text = unescape(py_strip(text));
    let kept: String = text
        .chars()
        .filter(|&c| {
            !matches!(c, '\u{0}'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}' | '\u{7f}')
                && c != '\u{fffe}'
                && c != '\u{ffff}'
        })
        .collect();
    py_strip(&kept).to_string()
}

fn unescape(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        match entity(rest) {
            Some((text, len)) => {
                out.push_str(&text);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// What the reference `&...;` at the start of `s` stands for, and its length.
fn entity(s: &str) -> Option<(String, usize)> {
    // The longest HTML5 names are 31 characters.
    let end = s.char_indices().take(40).find(|&(_, c)| c == ';')?.0;
    let body = &s[1..end];
    if let Some(num) = body.strip_prefix('#') {
        let code = match num.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => num.parse().ok()?,
        };
        // html.unescape: NUL, surrogates and out-of-range become U+FFFD.
        let c = char::from_u32(code)
            .filter(|&c| c != '\0')
            .unwrap_or('\u{fffd}');
        return Some((c.to_string(), end + 1));
    }
    if body.is_empty() || !body.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let whole = &s[..=end];
    let decoded = html_escape::decode_html_entities(whole);
    (decoded != whole).then(|| (decoded.into_owned(), end + 1))
}

/// The two prefixes `pg_index_name` can give a table's indexes.
pub fn pg_index_prefixes(table: &str) -> [String; 2] {
    let t = table.to_lowercase();
    let h = hex::encode(Md5::digest(t.as_bytes()));
    [format!("idx_{t}_"), format!("idx_{}_", &h[..12])]
}

/// Python's `str.strip()`: its whitespace includes the separators
/// U+001C..U+001F, which Rust's `trim` keeps.
pub fn py_strip(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_lightrag() {
        let s = suffix("text-embedding-3-large", 3072);
        assert_eq!(s.as_deref(), Some("text_embedding_3_large_3072d"));
        assert_eq!(
            qdrant_collection(Namespace::Chunks, s.as_deref()),
            "lightrag_vdb_chunks_text_embedding_3_large_3072d"
        );
        assert_eq!(
            pg_table(Namespace::Relationships, s.as_deref()),
            "lightrag_vdb_relation_text_embedding_3_large_3072d"
        );
        assert_eq!(suffix("  ", 8), None);
        assert_eq!(
            suffix("BAAI/bge-m3", 1024).as_deref(),
            Some("baai_bge_m3_1024d")
        );
        assert_eq!(
            Namespace::from_store_name("public.LIGHTRAG_VDB_ENTITY_bge_m3_1024d"),
            Some(Namespace::Entities)
        );
        assert_eq!(
            Namespace::from_store_name("lightrag_vdb_relationships"),
            Some(Namespace::Relationships)
        );
        assert_eq!(Namespace::from_store_name("chunks_v2"), None);
    }

    #[test]
    fn ids_follow_lightrag() {
        // Python: uuid.UUID(bytes=hashlib.sha256(b"tenant-a" b"chunk-1").digest()[:16], version=4)
        assert_eq!(
            qdrant_point_id("tenant-a", "chunk-1"),
            "4317b0e0-bb66-44be-b08d-7f32a5486873"
        );
        // Python: "doc-" + hashlib.md5(b"tenancy.markdown").hexdigest()
        assert_eq!(
            doc_id("tenancy.markdown"),
            "doc-906035d412536e8175986c132e7ef065"
        );
        assert_eq!(chunk_id("doc-1", 7), "doc-1-chunk-007");
        assert_eq!(
            pg_index_name("LIGHTRAG_VDB_CHUNKS_m_8d", "hnsw_cosine"),
            "idx_lightrag_vdb_chunks_m_8d_hnsw_cosine"
        );
        assert!(pg_index_name(&"x".repeat(60), "hnsw_cosine").len() <= 63);
        assert_eq!(py_strip("\u{1c} a b\n"), "a b");
        assert_eq!(
            lightrag_clean(
                "  a &amp; b &#x4e2d;&#25991; &nbsp;\u{b}c &unknown; &#0; &mdash;&hellip;\t\n"
            ),
            "a & b 中文 \u{a0}c &unknown; \u{fffd} \u{2014}\u{2026}"
        );
    }
}
