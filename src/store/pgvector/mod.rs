//! PostgreSQL + pgvector: binary COPY into staging, upsert by primary key,
//! vector index built after the load.

pub mod connect;
mod copy;
mod measure;
pub mod reader;
pub mod schema;
pub mod settings;
pub mod shape;
pub mod space;
mod switch;
mod workers;
mod writer;

use std::collections::HashMap;

use anyhow::Result;
use async_trait::async_trait;

pub use connect::PgTarget;
use schema::Table;
pub use settings::{Flags, PGVECTOR, PgSettings};

use crate::records::Hit;
use crate::settings::Distance;
use crate::store::{Sink, SinkSummary, SinkWriter};

pub struct PgSink {
    cfg: PgSettings,
    table: Table,
    shape: shape::Shape,
    dim: usize,
    /// Set by `prepare`: a table made by this run can be indexed without CONCURRENTLY.
    created_table: bool,
    /// One connection for deletes and look-ups, made on first use.
    maintenance: tokio::sync::Mutex<Option<tokio_postgres::Client>>,
    /// Writers may COPY straight into the table (see writer.rs).
    direct_ok: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The session that holds this worker's shard lock (workers.rs).
    claim: tokio::sync::Mutex<Option<tokio_postgres::Client>>,
    /// Recorded with the table when `prepare` creates it.
    space: Option<crate::space::Space>,
}

impl PgSink {
    pub fn new(cfg: PgSettings, dim: usize) -> PgSink {
        let table = Table::new(&cfg.table);
        PgSink {
            shape: shape::Shape::new(cfg.layout),
            cfg,
            table,
            dim,
            created_table: false,
            maintenance: Default::default(),
            direct_ok: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true)),
            claim: Default::default(),
            space: None,
        }
    }
}

impl PgSink {
    /// Runs `sql` with ($1 tenant, $2 ids) on the maintenance connection,
    /// dropping the connection on error so the next call makes a new one.
    async fn by_ids(
        &self,
        sql: &str,
        tenant: &str,
        ids: &[String],
        what: &str,
    ) -> Result<Vec<tokio_postgres::Row>> {
        let mut guard = self.maintenance().await?;
        let Some(client) = guard.as_ref() else {
            anyhow::bail!("no database connection");
        };
        match client.query(sql, &[&tenant, &ids]).await {
            Ok(rows) => Ok(rows),
            Err(e) => {
                *guard = None;
                anyhow::bail!("{what} {} rows: {}", ids.len(), schema::db_message(&e))
            }
        }
    }

    async fn maintenance(
        &self,
    ) -> Result<tokio::sync::MutexGuard<'_, Option<tokio_postgres::Client>>> {
        let mut guard = self.maintenance.lock().await;
        if guard.as_ref().is_none_or(|c| c.is_closed()) {
            *guard = Some(self.cfg.target.connect().await?);
        }
        Ok(guard)
    }
}

#[async_trait]
impl Sink for PgSink {
    fn describe(&self) -> String {
        format!(
            "pgvector table {} at {}",
            self.table.name,
            self.cfg.target.describe()
        )
    }

    fn write_batch(&self) -> usize {
        self.cfg.write_batch
    }

    fn write_concurrency(&self) -> usize {
        self.cfg.write_concurrency
    }

    fn outage_budget(&self) -> std::time::Duration {
        self.cfg.outage_budget
    }

    async fn prepare(&mut self) -> Result<()> {
        let client = self.cfg.target.connect().await?;
        let version = schema::ensure_extension(&client, self.cfg.pg_type).await?;
        let state = schema::ensure_table(
            &client,
            &self.table,
            &self.shape,
            self.cfg.pg_type,
            self.dim,
            self.space.as_ref(),
        )
        .await?;
        self.created_table = state.created;
        if self.shape.layout == crate::layout::Layout::Vecload && !state.page_column {
            tracing::info!(
                "table {} has no `page` column (made by an earlier vecload): PDF pages are kept in \
                 `source` as #page=N only; `ALTER TABLE {} ADD COLUMN page integer` adds it",
                self.table.name,
                self.table.quoted
            );
        }
        self.shape.page_column = state.page_column;
        if self.shape.layout == crate::layout::Layout::Vecload && !state.bucket_column {
            tracing::info!(
                "table {} has no `shard_bucket` column (made by an earlier vecload): sharded runs \
                 cannot --prune it; `ALTER TABLE {} ADD COLUMN shard_bucket integer` adds it",
                self.table.name,
                self.table.quoted
            );
        }
        self.shape.bucket_column = state.bucket_column;
        tracing::info!(
            "pgvector {version}: table {} {}",
            self.table.name,
            if state.created {
                "created"
            } else {
                "exists with a matching layout"
            }
        );
        Ok(())
    }

    fn record_on_create(&mut self, space: crate::space::Space) {
        self.space = Some(space);
    }

    async fn check(&self) -> Result<Vec<String>> {
        let client = self.cfg.target.connect().await?;
        schema::check_target(
            &client,
            &self.table,
            &self.shape,
            self.cfg.pg_type,
            self.dim,
            self.cfg.index,
        )
        .await
    }

    async fn delete(&self, tenant: &str, ids: &[String]) -> Result<u64> {
        let sql = format!(
            "DELETE FROM {} WHERE {} = $1 AND id = ANY($2) RETURNING 1",
            self.table.quoted,
            self.shape.tenant()
        );
        Ok(self.by_ids(&sql, tenant, ids, "deleting").await?.len() as u64)
    }

    async fn existing(&self, tenant: &str, ids: &[String]) -> Result<HashMap<String, String>> {
        let sql = format!(
            "SELECT id::text, {} FROM {} WHERE {} = $1 AND id = ANY($2)",
            self.shape.hash(),
            self.table.quoted,
            self.shape.tenant()
        );
        let rows = self.by_ids(&sql, tenant, ids, "looking up").await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn vectors(&self, tenant: &str, ids: &[String]) -> Result<HashMap<String, Vec<f32>>> {
        // real[] reads vector and halfvec alike.
        let sql = format!(
            "SELECT id::text, {}::real[] FROM {} WHERE {} = $1 AND id = ANY($2)",
            self.shape.vector(),
            self.table.quoted,
            self.shape.tenant()
        );
        let rows = self.by_ids(&sql, tenant, ids, "reading vectors of").await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn writer(&self) -> Result<Box<dyn SinkWriter>> {
        let client = self.cfg.target.connect().await?;
        let w = writer::PgWriter::open(
            client,
            &self.table,
            &self.shape,
            self.cfg.pg_type,
            self.dim,
            self.direct_ok.clone(),
        )
        .await?;
        Ok(Box::new(w))
    }

    async fn search(&self, tenant: &str, vector: &[f32], k: usize) -> Result<Vec<Hit>> {
        let client = self.cfg.target.connect().await?;
        let (op, score) = match self.cfg.distance {
            Distance::Cosine => ("<=>", "1 - d"),
            // <#> is the negative inner product.
            Distance::Dot => ("<#>", "-d"),
            Distance::Euclid => ("<->", "d"),
        };
        let ty = schema::column_type(self.cfg.pg_type, self.dim);
        // A tenant filter on an HNSW scan: let pgvector 0.8 keep scanning
        // until k rows of this tenant are found (ignored where unknown).
        let _ = client
            .batch_execute(&format!(
                "SET hnsw.ef_search = {}; SET hnsw.iterative_scan = relaxed_order",
                k.max(40)
            ))
            .await;
        let literal = format!(
            "[{}]",
            vector
                .iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
        let sql = format!(
            "SELECT id::text, ({score})::real, src, idx::bigint, content FROM (
                SELECT id, {si}, content, {v} {op} $2::text::{ty} AS d
                  FROM {t} WHERE {tenant} = $1 ORDER BY d LIMIT $3) nearest(id, src, idx, content, d)
              ORDER BY d",
            t = self.table.quoted,
            si = self.shape.source_and_index(),
            v = self.shape.vector(),
            tenant = self.shape.tenant(),
        );
        let rows = client
            .query(&sql, &[&tenant, &literal, &(k as i64)])
            .await
            .map_err(|e| {
                anyhow::anyhow!("searching {}: {}", self.table.name, schema::db_message(&e))
            })?;
        Ok(rows
            .iter()
            .map(|r| Hit {
                id: r.get(0),
                score: r.get(1),
                source: r.get(2),
                chunk_index: r.get(3),
                content: r.get(4),
            })
            .collect())
    }

    async fn searcher(&self) -> Result<Box<dyn crate::store::measure::Searcher>> {
        Ok(Box::new(measure::PgSearcher {
            client: self.cfg.target.connect().await?,
            table: self.table.clone(),
            shape: self.shape.clone(),
            ty: self.cfg.pg_type,
            dim: self.dim,
            distance: self.cfg.distance,
        }))
    }

    async fn held(
        &self,
        tenant: &str,
        scope: crate::store::Held,
        each: &mut (dyn for<'r> FnMut(&'r str, &'r str) + Send),
    ) -> Result<bool> {
        use futures::TryStreamExt;
        let client = self.cfg.target.connect().await?;
        let mut sql = format!(
            "SELECT id::text, {} FROM {} WHERE {} = $1",
            self.shape.hash(),
            self.table.quoted,
            self.shape.tenant()
        );
        let (lo, hi) = match scope.buckets() {
            Some(_) if !self.shape.bucket_column => return Ok(false),
            Some(b) => (b.start as i32, b.end as i32),
            None => (0, 0),
        };
        match scope {
            crate::store::Held::Tenant => {}
            crate::store::Held::Shard(_) => sql += " AND shard_bucket >= $2 AND shard_bucket < $3",
            crate::store::Held::ShardOrUnknown(_) => {
                sql += " AND (shard_bucket >= $2 AND shard_bucket < $3 OR shard_bucket IS NULL)"
            }
        }
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = if scope.buckets().is_some() {
            vec![&tenant, &lo, &hi]
        } else {
            vec![&tenant]
        };
        let fail = |e: tokio_postgres::Error| {
            anyhow::anyhow!(
                "reading the rows of tenant {tenant:?}: {}",
                schema::db_message(&e)
            )
        };
        // Streamed: a million rows never sit in memory as one result.
        let rows = client.query_raw(&sql, params).await.map_err(fail)?;
        futures::pin_mut!(rows);
        while let Some(row) = rows.try_next().await.map_err(fail)? {
            each(row.get(0), row.get(1));
        }
        Ok(true)
    }

    async fn shards(&self) -> Result<Option<u32>> {
        let client = self.cfg.target.connect().await?;
        workers::Workers::new(&self.table).shards(&client).await
    }

    async fn set_shards(&self, n: Option<u32>) -> Result<bool> {
        let client = self.cfg.target.connect().await?;
        workers::Workers::new(&self.table)
            .set_shards(&client, n)
            .await?;
        Ok(true)
    }

    async fn put_shard_report(&self, tenant: &str, r: &crate::shard::ShardReport) -> Result<bool> {
        let client = self.cfg.target.connect().await?;
        workers::Workers::new(&self.table)
            .put_report(&client, tenant, r)
            .await?;
        Ok(true)
    }

    async fn shard_reports(&self, tenant: &str) -> Result<Option<Vec<crate::shard::ShardReport>>> {
        let client = self.cfg.target.connect().await?;
        Ok(Some(
            workers::Workers::new(&self.table)
                .reports(&client, tenant)
                .await?,
        ))
    }

    async fn clear_shard_reports(&self, tenant: &str) -> Result<()> {
        let client = self.cfg.target.connect().await?;
        workers::Workers::new(&self.table)
            .clear_reports(&client, tenant)
            .await
    }

    async fn claim_shard(
        &self,
        tenant: &str,
        shard: crate::shard::Shard,
        _run: &str,
    ) -> Result<Option<String>> {
        let mut held = self.claim.lock().await;
        if held.as_ref().is_some_and(|c| !c.is_closed()) {
            return Ok(None);
        }
        let client = self.cfg.target.connect().await?;
        let other = workers::Workers::new(&self.table)
            .claim(&client, tenant, shard)
            .await?;
        if other.is_none() {
            *held = Some(client);
        }
        Ok(other)
    }

    async fn release_shard(
        &self,
        _tenant: &str,
        _shard: crate::shard::Shard,
        _run: &str,
    ) -> Result<()> {
        // The lock ends with its session.
        self.claim.lock().await.take();
        Ok(())
    }

    async fn ids(&self, tenant: &str) -> Result<Vec<String>> {
        let client = self.cfg.target.connect().await?;
        let sql = format!(
            "SELECT id::text FROM {} WHERE {} = $1",
            self.table.quoted,
            self.shape.tenant()
        );
        let rows = client
            .query(&sql, &[&tenant])
            .await
            .map_err(|e| anyhow::anyhow!("listing ids: {}", schema::db_message(&e)))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn tenants(&self) -> Result<std::collections::BTreeMap<String, u64>> {
        let client = self.cfg.target.connect().await?;
        let col = self.shape.tenant();
        let sql = format!(
            "SELECT {col}::text, count(*) FROM {} GROUP BY {col}",
            self.table.quoted
        );
        let rows = client
            .query(&sql, &[])
            .await
            .map_err(|e| anyhow::anyhow!("counting tenants: {}", schema::db_message(&e)))?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1) as u64))
            .collect())
    }

    async fn count(&self, tenant: &str) -> Result<u64> {
        let client = self.cfg.target.connect().await?;
        let sql = format!(
            "SELECT count(*) FROM {} WHERE {} = $1",
            self.table.quoted,
            self.shape.tenant()
        );
        let n: i64 = client
            .query_one(&sql, &[&tenant])
            .await
            .map_err(|e| anyhow::anyhow!("counting rows: {}", schema::db_message(&e)))?
            .get(0);
        Ok(n as u64)
    }

    async fn sample(&self, tenant: &str, n: usize) -> Result<Vec<(String, Vec<f32>)>> {
        let client = self.cfg.target.connect().await?;
        // real[] reads vector and halfvec alike.
        let (t, v, col) = (&self.table.quoted, self.shape.vector(), self.shape.tenant());
        let sql = format!(
            "SELECT id::text, {v}::real[] FROM {t} TABLESAMPLE SYSTEM (10) WHERE {col} = $1 LIMIT $2"
        );
        let mut rows = client
            .query(&sql, &[&tenant, &(n as i64)])
            .await
            .map_err(|e| anyhow::anyhow!("sampling vectors: {}", schema::db_message(&e)))?;
        if rows.len() < n {
            // A small table can sample few pages or none: take the first rows.
            let sql = format!("SELECT id::text, {v}::real[] FROM {t} WHERE {col} = $1 LIMIT $2");
            rows = client
                .query(&sql, &[&tenant, &(n as i64)])
                .await
                .map_err(|e| anyhow::anyhow!("sampling vectors: {}", schema::db_message(&e)))?;
        }
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn finish(&self, tenant: &str, build_index: bool) -> Result<SinkSummary> {
        let client = self.cfg.target.connect().await?;
        let index = if build_index {
            schema::build_index(
                &client,
                &self.table,
                &self.shape,
                self.cfg.index,
                self.cfg.pg_type,
                self.cfg.distance,
                self.cfg.index_params,
                self.cfg.index_memory.as_deref(),
                !self.created_table,
            )
            .await?
        } else {
            None
        };
        let rows: i64 = client
            .query_one(
                &format!(
                    "SELECT count(*) FROM {} WHERE {} = $1",
                    self.table.quoted,
                    self.shape.tenant()
                ),
                &[&tenant],
            )
            .await
            .map_err(|e| anyhow::anyhow!("counting rows: {}", schema::db_message(&e)))?
            .get(0);
        Ok(SinkSummary {
            tenant_rows: rows as u64,
            index,
        })
    }
}
