//! One database connection writing batches: COPY into a session-local staging
//! table, then one INSERT ... ON CONFLICT into the target, in one transaction.
//!
//! Upserting by (tenant_id, id) makes a rerun rewrite rows instead of adding
//! them, and only ever touches rows of the ids in the batch, so other tenants
//! are never affected. The staging table empties itself at each commit.
//!
//! Until a batch meets a row already in the table, batches of vecload's
//! layout skip the staging table and COPY straight into the table (see
//! `insert`): a unique key violation rolls that batch back, and it and every
//! later batch of the run are upserted as above.
//!
//! Rejected for speed (issue 21), because each gives up a guarantee:
//! `COPY ... FREEZE` needs the table created or truncated in the same
//! transaction, which a per-tenant or incremental load into a shared table
//! never is; `synchronous_commit = off` would acknowledge rows a crash of
//! the server can still lose after the state recorded them as written;
//! an unlogged staging table in the target's schema would add a second
//! write of every row for nothing, as the temporary one is not WAL-logged
//! already. The measured gap was the state file, not the commit.

use anyhow::{Context, Result};
use async_trait::async_trait;
use futures::SinkExt;
use tokio_postgres::Client;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use tokio_postgres::error::SqlState;

use super::copy::{Columns, DIRECT_COLUMNS, encode};
use super::schema::{Table, column_type, db_message};
use super::shape::{STAGING_COLUMNS, Shape, staging_ddl};
use crate::layout::Layout;
use crate::records::Embedded;
use crate::settings::PgType;
use crate::store::{SinkWriter, WriteError};

pub struct PgWriter {
    client: Client,
    ty: PgType,
    upsert: String,
    copy: String,
    /// COPY straight into the table, and its columns (vecload's layout).
    direct: Option<(String, Columns)>,
    /// Shared by the run's writers: cleared at the first batch that meets
    /// rows already in the table.
    direct_ok: Arc<AtomicBool>,
}

impl PgWriter {
    pub async fn open(
        client: Client,
        table: &Table,
        shape: &Shape,
        ty: PgType,
        dim: usize,
        direct_ok: Arc<AtomicBool>,
    ) -> Result<PgWriter> {
        client
            .batch_execute(&staging_ddl(&column_type(ty, dim)))
            .await
            .map_err(|e| anyhow::anyhow!("creating the staging table: {}", db_message(&e)))?;
        let upsert = shape.upsert(table);
        let copy =
            format!("COPY pg_temp.vecload_staging ({STAGING_COLUMNS}) FROM STDIN (FORMAT binary)");
        let direct = (shape.layout == Layout::Vecload).then(|| {
            let (page, bucket) = (shape.page_column, shape.bucket_column);
            (
                format!(
                    "COPY {} ({DIRECT_COLUMNS}{}{}) FROM STDIN (FORMAT binary)",
                    table.quoted,
                    if page { ", page" } else { "" },
                    if bucket { ", shard_bucket" } else { "" }
                ),
                Columns::Direct { page, bucket },
            )
        });
        Ok(PgWriter {
            client,
            ty,
            upsert,
            copy,
            direct,
            direct_ok,
        })
    }

    /// The batch straight into the table, as plain inserts: half the work
    /// of staging and upserting, and most batches of a reindex or a new
    /// tenant are new rows. Ok(false) when a row is already there (a rerun,
    /// a resumed run): nothing was written, and the caller upserts.
    async fn insert(&mut self, rows: &[Embedded]) -> Result<bool, WriteError> {
        let Some((copy, cols)) = &self.direct else {
            return Ok(false);
        };
        let data = encode(rows, self.ty, *cols).map_err(WriteError::Rejected)?;
        let tx = self.client.transaction().await.context("BEGIN")?;
        let sink = tx
            .copy_in::<_, bytes::Bytes>(copy)
            .await
            .map_err(|e| failed("COPY", e))?;
        futures::pin_mut!(sink);
        let sent = match sink.send(data.freeze()).await {
            Ok(()) => sink.finish().await.map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = sent {
            if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
                // The transaction is rolled back when dropped.
                return Ok(false);
            }
            return Err(failed("COPY", e));
        }
        // A batch counts as written only once this returns.
        tx.commit().await.map_err(|e| failed("COMMIT", e))?;
        Ok(true)
    }
}

#[async_trait]
impl SinkWriter for PgWriter {
    async fn write(&mut self, rows: &[Embedded]) -> Result<(), WriteError> {
        self.write_rows(rows).await
    }
}

/// A database error of a write, sorted by what the sink stage does next.
/// These rows' data (SQLSTATE class 22, a value too long for LightRAG's
/// VARCHAR(255) id, say, or 23, a constraint): rejected, other batches go
/// on. The table or a column gone, a privilege or the password wrong (42,
/// 28, 3D000): every write would fail, the run stops. A failover's errors
/// (class 08, 57P0x, 25006 read-only on a demoted primary), conflicts
/// (40xxx) and lost connections are waited out as an outage.
fn failed(what: &str, e: tokio_postgres::Error) -> WriteError {
    let msg = format!("{what}: {}", db_message(&e));
    match e.code().map(|c| c.code()) {
        Some(c) if c.starts_with("22") || c.starts_with("23") => WriteError::Rejected(msg),
        Some(c) if c.starts_with("42") || c.starts_with("28") || c == "3D000" => {
            WriteError::Permanent(msg)
        }
        _ => WriteError::Failed(anyhow::anyhow!(msg)),
    }
}

impl PgWriter {
    async fn write_rows(&mut self, rows: &[Embedded]) -> Result<(), WriteError> {
        if self.direct_ok.load(Relaxed) {
            if self.insert(rows).await? {
                return Ok(());
            }
            tracing::debug!("rows already in the table: upserting from here on");
            self.direct_ok.store(false, Relaxed);
        }
        let data = encode(rows, self.ty, Columns::Staging).map_err(WriteError::Rejected)?;
        let tx = self.client.transaction().await.context("BEGIN")?;
        let sink = tx
            .copy_in::<_, bytes::Bytes>(&self.copy)
            .await
            .map_err(|e| failed("COPY into staging", e))?;
        futures::pin_mut!(sink);
        sink.send(data.freeze())
            .await
            .map_err(|e| failed("COPY into staging", e))?;
        sink.finish()
            .await
            .map_err(|e| failed("COPY into staging", e))?;
        tx.execute(&self.upsert, &[])
            .await
            .map_err(|e| failed("upsert from staging", e))?;
        // A batch counts as written only once this returns.
        tx.commit().await.map_err(|e| failed("COMMIT", e))?;
        Ok(())
    }
}
