//! Reads a PostgreSQL table of texts, in primary-key order, one page at a
//! time (keyset pagination, so a page costs the same at any depth). The
//! session is read-only: the source cannot be modified by mistake.
//!
//! The table's layout is found from its columns: a table vecload wrote
//! (tenant_id, id, doc_id, source, chunk_index, content), or one of
//! LightRAG's (workspace, id, content, ...): its vector tables
//! LIGHTRAG_VDB_CHUNKS/ENTITY/RELATION and its chunk store
//! LIGHTRAG_DOC_CHUNKS. LightRAG's fields are carried over as they are.
//!
//! Opened for `copy`, it also reads each row's vector as `real[]` (binary
//! float4, exact for vector and halfvec alike).

use std::collections::BTreeMap;

use anyhow::{Result, anyhow, bail};
use async_trait::async_trait;
use tokio_postgres::Client;

use super::PgTarget;
use super::schema::{Table, db_message};
use crate::layout::Namespace;
use crate::records::Extra;
use crate::records::{RowReader, StoredRow as Row};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Vecload,
    Lightrag(Namespace),
}

impl Kind {
    /// The vector column; LightRAG's chunk store (LIGHTRAG_DOC_CHUNKS) has none.
    fn vector(self) -> &'static str {
        match self {
            Kind::Vecload => "embedding",
            Kind::Lightrag(_) => "content_vector",
        }
    }

    fn tenant(self) -> &'static str {
        match self {
            Kind::Vecload => "tenant_id",
            Kind::Lightrag(_) => "workspace",
        }
    }

    /// One shape for every layout: tenant, id, doc id, source, chunk index,
    /// content, tokens, entity name, src id, tgt id, chunk ids, created at.
    fn select(self) -> &'static str {
        match self {
            Kind::Vecload => {
                "tenant_id, id, doc_id, source, chunk_index, content, NULL::int, NULL::text, \
                 NULL::text, NULL::text, NULL::text, NULL::bigint"
            }
            Kind::Lightrag(Namespace::Chunks) => {
                "workspace::text, id::text, coalesce(full_doc_id, '')::text, \
                 coalesce(file_path, ''), coalesce(chunk_order_index, 0), coalesce(content, ''), \
                 tokens, NULL::text, NULL::text, NULL::text, NULL::text, \
                 extract(epoch from create_time)::bigint"
            }
            Kind::Lightrag(Namespace::Entities) => {
                "workspace::text, id::text, ''::text, coalesce(file_path, ''), 0, \
                 coalesce(content, ''), NULL::int, entity_name::text, NULL::text, NULL::text, \
                 array_to_string(chunk_ids, '<SEP>'), extract(epoch from create_time)::bigint"
            }
            Kind::Lightrag(Namespace::Relationships) => {
                "workspace::text, id::text, ''::text, coalesce(file_path, ''), 0, \
                 coalesce(content, ''), NULL::int, NULL::text, source_id::text, target_id::text, \
                 array_to_string(chunk_ids, '<SEP>'), extract(epoch from create_time)::bigint"
            }
        }
    }
}

pub struct PgSource {
    client: Client,
    table: Table,
    kind: Kind,
    tenant: Option<String>,
    page: i64,
    /// The column list, with vecload's `page` last when the table has it.
    cols: String,
    /// Last (tenant, id) read.
    after: Option<(String, String)>,
    done: bool,
    desc: String,
    /// Read with vectors (`copy`): their stored length.
    dim: Option<usize>,
}

impl PgSource {
    pub async fn open(
        target: &PgTarget,
        table: &str,
        tenant: Option<String>,
        page: usize,
        vectors: bool,
    ) -> Result<PgSource> {
        let client = target.connect().await?;
        client
            .batch_execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            .await
            .map_err(|e| anyhow!("source database: {}", db_message(&e)))?;
        let table = Table::new(table);
        let cols: Vec<String> = client
            .query(
                "SELECT a.attname::text FROM pg_attribute a \
                 WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped",
                &[&table.quoted],
            )
            .await
            .map_err(|e| anyhow!("source table {}: {}", table.name, db_message(&e)))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let has = |c: &str| cols.iter().any(|x| x == c);
        let kind = if cols.is_empty() {
            bail!(
                "source table {} does not exist at {}",
                table.name,
                target.describe()
            );
        } else if has("workspace") && has("id") && has("content") {
            Kind::Lightrag(if has("entity_name") {
                Namespace::Entities
            } else if has("target_id") {
                Namespace::Relationships
            } else {
                Namespace::Chunks
            })
        } else if [
            "tenant_id",
            "id",
            "doc_id",
            "source",
            "chunk_index",
            "content",
        ]
        .iter()
        .all(|c| has(c))
        {
            Kind::Vecload
        } else {
            bail!(
                "source table {} is neither a table vecload wrote (tenant_id, id, doc_id, source, \
                 chunk_index, content) nor one of LightRAG's (workspace, id, content, ...)",
                table.name
            );
        };
        let page_col = if kind == Kind::Vecload && has("page") {
            "page"
        } else {
            "NULL::int"
        };
        let mut cols = format!("{}, {page_col}", kind.select());
        let dim = if vectors {
            let col = kind.vector();
            if !has(col) {
                bail!(
                    "source table {} holds no vectors (no {col} column): copy reads a vector \
                     table (vecload's, or LightRAG's LIGHTRAG_VDB_*); re-embed a chunk store \
                     with vecload reembed",
                    table.name
                );
            }
            cols.push_str(&format!(", {col}::real[]"));
            Some(stored_dim(&client, &table, col).await?)
        } else {
            None
        };
        Ok(PgSource {
            cols,
            dim,
            desc: format!("pgvector table {} at {}", table.name, target.describe()),
            client,
            table,
            kind,
            tenant,
            page: page as i64,
            after: None,
            done: false,
        })
    }
}

#[async_trait]
impl RowReader for PgSource {
    fn describe(&self) -> String {
        self.desc.clone()
    }

    async fn next_page(&mut self) -> Result<Option<Vec<Row>>> {
        if self.done {
            return Ok(None);
        }
        let (t, cols, tc) = (&self.table.quoted, &self.cols, self.kind.tenant());
        // Ids and tenants are never empty, so ("", "") sorts before every row.
        let (after_tenant, after_id) = self.after.clone().unwrap_or_default();
        let rows = match &self.tenant {
            Some(tenant) => {
                let sql = format!(
                    "SELECT {cols} FROM {t} WHERE {tc} = $1 AND id > $2 ORDER BY id LIMIT $3"
                );
                self.client
                    .query(&sql, &[tenant, &after_id, &self.page])
                    .await
            }
            None => {
                let sql = format!(
                    "SELECT {cols} FROM {t} WHERE ({tc}, id) > ($1, $2) ORDER BY {tc}, id LIMIT $3"
                );
                self.client
                    .query(&sql, &[&after_tenant, &after_id, &self.page])
                    .await
            }
        }
        .map_err(|e| anyhow!("reading {}: {}", self.table.name, db_message(&e)))?;
        if (rows.len() as i64) < self.page {
            self.done = true;
        }
        let lightrag = matches!(self.kind, Kind::Lightrag(_));
        let out: Vec<Row> = rows
            .iter()
            .map(|r| Row {
                tenant: r.get(0),
                id: r.get(1),
                doc_id: r.get(2),
                source: r.get(3),
                chunk_index: r.get::<_, i32>(4).max(0) as u32,
                content: r.get(5),
                tokens: r.get::<_, Option<i32>>(6).map(|t| t.max(0) as u32),
                extra: lightrag.then(|| Extra {
                    entity_name: r.get(7),
                    src_id: r.get(8),
                    tgt_id: r.get(9),
                    source_id: r.get(10),
                    created_at: r.get(11),
                }),
                lightrag_id: lightrag,
                page: r.get::<_, Option<i32>>(12).map(|p| p.max(0) as u32),
                vector: self.dim.and_then(|_| r.get::<_, Option<Vec<f32>>>(13)),
            })
            .collect();
        if let Some(last) = out.last() {
            self.after = Some((last.tenant.clone(), last.id.clone()));
        }
        Ok((!out.is_empty()).then_some(out))
    }

    fn dim(&self) -> Option<usize> {
        self.dim
    }

    async fn counts(&mut self) -> Result<BTreeMap<String, u64>> {
        let tc = self.kind.tenant();
        let sql = format!(
            "SELECT {tc}::text, count(*) FROM {} WHERE ($1::text IS NULL OR {tc} = $1) GROUP BY {tc}",
            self.table.quoted
        );
        let rows = self
            .client
            .query(&sql, &[&self.tenant])
            .await
            .map_err(|e| anyhow!("counting {}: {}", self.table.name, db_message(&e)))?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1) as u64))
            .collect())
    }
}

/// The declared length of a vector or halfvec column (pgvector keeps it as
/// the type modifier), else the length of its first stored vector.
async fn stored_dim(client: &Client, table: &Table, col: &str) -> Result<usize> {
    let typmod: i32 = client
        .query_one(
            "SELECT a.atttypmod FROM pg_attribute a \
             WHERE a.attrelid = to_regclass($1) AND a.attname = $2",
            &[&table.quoted, &col],
        )
        .await
        .map_err(|e| anyhow!("source table {}: {}", table.name, db_message(&e)))?
        .get(0);
    if typmod > 0 {
        return Ok(typmod as usize);
    }
    let sql = format!(
        "SELECT vector_dims({col}::vector) FROM {} WHERE {col} IS NOT NULL LIMIT 1",
        table.quoted
    );
    let row = client
        .query_opt(&sql, &[])
        .await
        .map_err(|e| anyhow!("source table {}: {}", table.name, db_message(&e)))?;
    match row {
        Some(r) => Ok(r.get::<_, i32>(0).max(0) as usize),
        None => bail!(
            "source table {}: column {col} declares no dimension and holds no vector",
            table.name
        ),
    }
}
