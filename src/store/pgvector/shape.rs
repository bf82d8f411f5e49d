//! The table's shape for each layout: its columns, its key, how a batch is
//! upserted from the staging table, and how its vector index is named and
//! built. Everything else in the sink is the same for both layouts.
//!
//! The staging table holds every field either layout needs, so one encoder
//! serves both; each layout's upsert picks what it stores.

use super::schema::Table;
use super::settings::IndexParams;
use crate::layout::{Layout, Namespace};
use crate::settings::{Distance, IndexKind, PgType};

#[derive(Debug, Clone)]
pub struct Shape {
    pub layout: Layout,
    /// The table has vecload's `page` column (tables made before it was
    /// added have not; their pages are still in `source`, as `#page=N`).
    pub page_column: bool,
    /// The table has vecload's `shard_bucket` column (see `crate::shard`).
    pub bucket_column: bool,
}

/// Columns of the staging table, in the order rows are encoded.
pub const STAGING_COLUMNS: &str = "id, tenant_id, doc_id, source, chunk_index, content, content_hash, \
     embedding, tokens, entity_name, src_id, tgt_id, chunk_source, created_at, page, shard_bucket";

pub fn staging_ddl(vector_type: &str) -> String {
    format!(
        "CREATE TEMP TABLE IF NOT EXISTS vecload_staging (
            id text, tenant_id text, doc_id text, source text, chunk_index integer,
            content text, content_hash text, embedding {vector_type}, tokens integer,
            entity_name text, src_id text, tgt_id text, chunk_source text, created_at bigint,
            page integer, shard_bucket integer
        ) ON COMMIT DELETE ROWS"
    )
}

impl Shape {
    pub fn new(layout: Layout) -> Shape {
        Shape {
            layout,
            page_column: layout == Layout::Vecload,
            bucket_column: layout == Layout::Vecload,
        }
    }

    pub fn tenant(&self) -> &'static str {
        match self.layout {
            Layout::Vecload => "tenant_id",
            Layout::Lightrag(_) => "workspace",
        }
    }

    pub fn vector(&self) -> &'static str {
        match self.layout {
            Layout::Vecload => "embedding",
            Layout::Lightrag(_) => "content_vector",
        }
    }

    /// SQL giving the stored text's SHA-256 (what `existing` compares).
    pub fn hash(&self) -> &'static str {
        match self.layout {
            Layout::Vecload => "content_hash",
            // LightRAG keeps no hash: computed from the text, the same way.
            Layout::Lightrag(_) => "encode(sha256(convert_to(content, 'UTF8')), 'hex')",
        }
    }

    /// SQL for the (source, chunk index) a search hit shows.
    pub fn source_and_index(&self) -> &'static str {
        match self.layout {
            Layout::Vecload => "source, chunk_index",
            Layout::Lightrag(Namespace::Chunks) => {
                "coalesce(file_path, ''), coalesce(chunk_order_index, 0)"
            }
            Layout::Lightrag(_) => "coalesce(file_path, ''), 0",
        }
    }

    /// Columns an existing table must have (the vector column is checked
    /// apart, with its type), with their types where the layout fixes them.
    pub fn columns(&self) -> &'static [(&'static str, Option<&'static str>)] {
        match self.layout {
            Layout::Vecload => &[
                ("tenant_id", Some("text")),
                ("id", Some("text")),
                ("doc_id", Some("text")),
                ("source", Some("text")),
                ("chunk_index", Some("integer")),
                ("content", Some("text")),
                ("content_hash", Some("text")),
                ("updated_at", Some("timestamp with time zone")),
            ],
            Layout::Lightrag(Namespace::Chunks) => &[
                ("id", None),
                ("workspace", None),
                ("full_doc_id", None),
                ("chunk_order_index", Some("integer")),
                ("tokens", Some("integer")),
                ("content", Some("text")),
                ("file_path", Some("text")),
                ("create_time", None),
                ("update_time", None),
            ],
            Layout::Lightrag(Namespace::Entities) => &[
                ("id", None),
                ("workspace", None),
                ("entity_name", None),
                ("content", Some("text")),
                ("chunk_ids", None),
                ("file_path", Some("text")),
                ("create_time", None),
                ("update_time", None),
            ],
            Layout::Lightrag(Namespace::Relationships) => &[
                ("id", None),
                ("workspace", None),
                ("source_id", None),
                ("target_id", None),
                ("content", Some("text")),
                ("chunk_ids", None),
                ("file_path", Some("text")),
                ("create_time", None),
                ("update_time", None),
            ],
        }
    }

    /// The unique key upserts rely on, its column names sorted.
    pub fn key(&self) -> [&'static str; 2] {
        match self.layout {
            Layout::Vecload => ["id", "tenant_id"],
            Layout::Lightrag(_) => ["id", "workspace"],
        }
    }

    /// CREATE TABLE (and, for LightRAG, the b-tree indexes LightRAG makes).
    pub fn ddl(&self, table: &Table, vector_type: &str) -> Vec<String> {
        let t = &table.quoted;
        let v = vector_type;
        let body = match self.layout {
            Layout::Vecload => format!(
                "tenant_id text NOT NULL, id text NOT NULL, doc_id text NOT NULL,
                 source text NOT NULL, chunk_index integer NOT NULL, content text NOT NULL,
                 content_hash text NOT NULL, embedding {v} NOT NULL,
                 updated_at timestamptz NOT NULL DEFAULT now(), page integer, shard_bucket integer,
                 PRIMARY KEY (tenant_id, id)"
            ),
            // As LightRAG 1.5.7's TABLES[...]["ddl"].
            Layout::Lightrag(Namespace::Chunks) => format!(
                "id VARCHAR(255), workspace VARCHAR(255), full_doc_id VARCHAR(256),
                 chunk_order_index INTEGER, tokens INTEGER, content TEXT,
                 content_vector {v}, file_path TEXT NULL,
                 create_time TIMESTAMP(0) DEFAULT CURRENT_TIMESTAMP,
                 update_time TIMESTAMP(0) DEFAULT CURRENT_TIMESTAMP,
                 PRIMARY KEY (workspace, id)"
            ),
            Layout::Lightrag(Namespace::Entities) => format!(
                "id VARCHAR(255), workspace VARCHAR(255), entity_name VARCHAR(512),
                 content TEXT, content_vector {v},
                 create_time TIMESTAMP(0) DEFAULT CURRENT_TIMESTAMP,
                 update_time TIMESTAMP(0) DEFAULT CURRENT_TIMESTAMP,
                 chunk_ids VARCHAR(255)[] NULL, file_path TEXT NULL,
                 PRIMARY KEY (workspace, id)"
            ),
            Layout::Lightrag(Namespace::Relationships) => format!(
                "id VARCHAR(255), workspace VARCHAR(255), source_id VARCHAR(512),
                 target_id VARCHAR(512), content TEXT, content_vector {v},
                 create_time TIMESTAMP(0) DEFAULT CURRENT_TIMESTAMP,
                 update_time TIMESTAMP(0) DEFAULT CURRENT_TIMESTAMP,
                 chunk_ids VARCHAR(255)[] NULL, file_path TEXT NULL,
                 PRIMARY KEY (workspace, id)"
            ),
        };
        let mut out = vec![format!("CREATE TABLE IF NOT EXISTS {t} ({body})")];
        if self.bucket_column {
            out.push(bucket_index(table));
        }
        if self.layout.is_lightrag() {
            for (suffix, cols) in [("id", "id"), ("workspace_id", "workspace, id")] {
                let name = crate::layout::pg_index_name(&table.bare, suffix);
                out.push(format!(
                    "CREATE INDEX IF NOT EXISTS \"{name}\" ON {t} ({cols})"
                ));
            }
        }
        out
    }

    /// One statement: the staging rows into the table, by key.
    pub fn upsert(&self, table: &Table) -> String {
        let t = &table.quoted;
        // DISTINCT ON: one statement cannot update the same row twice.
        let staged = "FROM pg_temp.vecload_staging";
        let created =
            "coalesce(to_timestamp(created_at)::timestamp(0), CURRENT_TIMESTAMP::timestamp(0))";
        let now = "CURRENT_TIMESTAMP::timestamp(0)";
        match self.layout {
            Layout::Vecload => {
                let (mut col, mut val, mut set) = (String::new(), String::new(), String::new());
                for (on, name) in [(self.page_column, "page"), (self.bucket_column, "shard_bucket")] {
                    if on {
                        col += &format!(", {name}");
                        val += &format!(", {name}");
                        set += &format!(", {name} = EXCLUDED.{name}");
                    }
                }
                format!(
                    "INSERT INTO {t} (tenant_id, id, doc_id, source, chunk_index, content, content_hash, embedding, updated_at{col})
                 SELECT DISTINCT ON (tenant_id, id) tenant_id, id, doc_id, source, chunk_index, content, content_hash, embedding, now(){val}
                 {staged}
                 ON CONFLICT (tenant_id, id) DO UPDATE SET
                    doc_id = EXCLUDED.doc_id, source = EXCLUDED.source, chunk_index = EXCLUDED.chunk_index,
                    content = EXCLUDED.content, content_hash = EXCLUDED.content_hash,
                    embedding = EXCLUDED.embedding, updated_at = EXCLUDED.updated_at{set}"
                )
            }
            // The columns LightRAG's upsert_chunk / upsert_entity /
            // upsert_relationship write, and what they update on conflict.
            Layout::Lightrag(Namespace::Chunks) => format!(
                "INSERT INTO {t} (workspace, id, tokens, chunk_order_index, full_doc_id, content,
                                  content_vector, file_path, create_time, update_time)
                 SELECT DISTINCT ON (tenant_id, id) tenant_id, id, tokens, chunk_index, doc_id, content,
                        embedding, nullif(source, ''), {created}, {now}
                 {staged}
                 ON CONFLICT (workspace, id) DO UPDATE SET
                    tokens = EXCLUDED.tokens, chunk_order_index = EXCLUDED.chunk_order_index,
                    full_doc_id = EXCLUDED.full_doc_id, content = EXCLUDED.content,
                    content_vector = EXCLUDED.content_vector, file_path = EXCLUDED.file_path,
                    update_time = EXCLUDED.update_time"
            ),
            Layout::Lightrag(Namespace::Entities) => format!(
                "INSERT INTO {t} (workspace, id, entity_name, content, content_vector, chunk_ids,
                                  file_path, create_time, update_time)
                 SELECT DISTINCT ON (tenant_id, id) tenant_id, id, entity_name, content, embedding,
                        string_to_array(chunk_source, '<SEP>')::varchar[], nullif(source, ''), {created}, {now}
                 {staged}
                 ON CONFLICT (workspace, id) DO UPDATE SET
                    entity_name = EXCLUDED.entity_name, content = EXCLUDED.content,
                    content_vector = EXCLUDED.content_vector, chunk_ids = EXCLUDED.chunk_ids,
                    file_path = EXCLUDED.file_path, update_time = EXCLUDED.update_time"
            ),
            Layout::Lightrag(Namespace::Relationships) => format!(
                "INSERT INTO {t} (workspace, id, source_id, target_id, content, content_vector,
                                  chunk_ids, file_path, create_time, update_time)
                 SELECT DISTINCT ON (tenant_id, id) tenant_id, id, src_id, tgt_id, content, embedding,
                        string_to_array(chunk_source, '<SEP>')::varchar[], nullif(source, ''), {created}, {now}
                 {staged}
                 ON CONFLICT (workspace, id) DO UPDATE SET
                    source_id = EXCLUDED.source_id, target_id = EXCLUDED.target_id,
                    content = EXCLUDED.content, content_vector = EXCLUDED.content_vector,
                    chunk_ids = EXCLUDED.chunk_ids, file_path = EXCLUDED.file_path,
                    update_time = EXCLUDED.update_time"
            ),
        }
    }

    /// The vector index's name and its WITH clause.
    /// The WITH clause is empty where nothing was set in vecload's layout
    /// (pgvector's defaults; IVFFlat's lists then follow the row count).
    pub fn index(
        &self,
        table: &Table,
        kind: IndexKind,
        ty: PgType,
        distance: Distance,
        params: IndexParams,
    ) -> (String, String) {
        let hnsw = |m: Option<u32>, ef: Option<u32>| {
            format!(
                " WITH (m = {}, ef_construction = {})",
                m.unwrap_or(16),
                ef.unwrap_or(64)
            )
        };
        match self.layout {
            Layout::Vecload => {
                let with = match kind {
                    IndexKind::Hnsw if params.m.is_some() || params.ef_construction.is_some() => {
                        hnsw(params.m, params.ef_construction)
                    }
                    IndexKind::Ivfflat => params
                        .lists
                        .map(|l| format!(" WITH (lists = {l})"))
                        .unwrap_or_default(),
                    _ => String::new(),
                };
                (table.vector_index_name(kind, distance), with)
            }
            // LightRAG's own names and WITH clauses, with its defaults
            // (POSTGRES_HNSW_M=16, POSTGRES_HNSW_EF=64,
            // POSTGRES_IVFFLAT_LISTS=100) where nothing is set, so it finds
            // the index and does not build a second one.
            Layout::Lightrag(_) => {
                let (suffix, with) = match (kind, ty) {
                    (IndexKind::Ivfflat, _) => (
                        "ivfflat_cosine",
                        format!(" WITH (lists = {})", params.lists.unwrap_or(100)),
                    ),
                    (_, PgType::Halfvec) => (
                        "hnsw_halfvec_cosine",
                        hnsw(params.m, params.ef_construction),
                    ),
                    _ => ("hnsw_cosine", hnsw(params.m, params.ef_construction)),
                };
                (crate::layout::pg_index_name(&table.bare, suffix), with)
            }
        }
    }
}

/// Per-shard counts, lookups and deletions filter on (tenant, bucket).
pub fn bucket_index(table: &Table) -> String {
    let name = crate::layout::pg_index_name(&table.bare, "tenant_bucket");
    format!(
        "CREATE INDEX IF NOT EXISTS \"{name}\" ON {} (tenant_id, shard_bucket)",
        table.quoted
    )
}
