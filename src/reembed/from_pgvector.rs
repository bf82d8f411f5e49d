//! Reads a pgvector table vecload wrote, in primary-key order, one page at a
//! time (keyset pagination, so a page costs the same at any depth). The
//! session is read-only: the source cannot be modified by mistake.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use async_trait::async_trait;
use tokio_postgres::Client;

use super::{Row, SourceStore};
use crate::sink::pgvector::PgTarget;
use crate::sink::pgvector::schema::{Table, db_message};

pub struct PgSource {
    client: Client,
    table: Table,
    tenant: Option<String>,
    page: i64,
    /// Last (tenant_id, id) read.
    after: Option<(String, String)>,
    done: bool,
    desc: String,
}

const COLUMNS: &str = "tenant_id, id, doc_id, source, chunk_index, content";

impl PgSource {
    pub async fn open(
        target: &PgTarget,
        table: &str,
        tenant: Option<String>,
        page: usize,
    ) -> Result<PgSource> {
        let client = target.connect().await?;
        client
            .batch_execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            .await
            .map_err(|e| anyhow::anyhow!("source database: {}", db_message(&e)))?;
        let table = Table::new(table);
        client
            .query(
                &format!("SELECT {COLUMNS} FROM {} LIMIT 0", table.quoted),
                &[],
            )
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "source table {}: {} (--from pgvector:TABLE reads a table vecload wrote: \
                     columns {COLUMNS})",
                    table.name,
                    db_message(&e)
                )
            })?;
        Ok(PgSource {
            desc: format!("pgvector table {} at {}", table.name, target.describe()),
            client,
            table,
            tenant,
            page: page as i64,
            after: None,
            done: false,
        })
    }
}

#[async_trait]
impl SourceStore for PgSource {
    fn describe(&self) -> String {
        self.desc.clone()
    }

    async fn next_page(&mut self) -> Result<Option<Vec<Row>>> {
        if self.done {
            return Ok(None);
        }
        let t = &self.table.quoted;
        // Ids and tenants are never empty, so ("", "") sorts before every row.
        let (after_tenant, after_id) = self.after.clone().unwrap_or_default();
        let rows = match &self.tenant {
            Some(tenant) => {
                let sql = format!(
                    "SELECT {COLUMNS} FROM {t} WHERE tenant_id = $1 AND id > $2
                     ORDER BY id LIMIT $3"
                );
                self.client
                    .query(&sql, &[tenant, &after_id, &self.page])
                    .await
            }
            None => {
                let sql = format!(
                    "SELECT {COLUMNS} FROM {t} WHERE (tenant_id, id) > ($1, $2)
                     ORDER BY tenant_id, id LIMIT $3"
                );
                self.client
                    .query(&sql, &[&after_tenant, &after_id, &self.page])
                    .await
            }
        }
        .map_err(|e| anyhow::anyhow!("reading {}: {}", self.table.name, db_message(&e)))?;
        if (rows.len() as i64) < self.page {
            self.done = true;
        }
        let out: Vec<Row> = rows
            .iter()
            .map(|r| Row {
                tenant: r.get(0),
                id: r.get(1),
                doc_id: r.get(2),
                source: r.get(3),
                chunk_index: r.get::<_, i32>(4).max(0) as u32,
                content: r.get(5),
            })
            .collect();
        if let Some(last) = out.last() {
            self.after = Some((last.tenant.clone(), last.id.clone()));
        }
        Ok((!out.is_empty()).then_some(out))
    }

    async fn counts(&mut self) -> Result<BTreeMap<String, u64>> {
        let sql = format!(
            "SELECT tenant_id, count(*) FROM {} WHERE ($1::text IS NULL OR tenant_id = $1)
             GROUP BY tenant_id",
            self.table.quoted
        );
        let rows = self
            .client
            .query(&sql, &[&self.tenant])
            .await
            .map_err(|e| anyhow::anyhow!("counting {}: {}", self.table.name, db_message(&e)))
            .context("source")?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1) as u64))
            .collect())
    }
}
