//! One database connection writing batches: COPY into a session-local staging
//! table, then one INSERT ... ON CONFLICT into the target, in one transaction.
//!
//! Upserting by (tenant_id, id) makes a rerun rewrite rows instead of adding
//! them, and only ever touches rows of the ids in the batch, so other tenants
//! are never affected. The staging table empties itself at each commit.

use anyhow::{Context, Result};
use async_trait::async_trait;
use futures::SinkExt;
use tokio_postgres::Client;

use super::copy::encode;
use super::schema::{Table, column_type, db_message};
use super::shape::{STAGING_COLUMNS, Shape, staging_ddl};
use crate::cli::PgType;
use crate::embed::Embedded;
use crate::sink::{SinkWriter, WriteError};

pub struct PgWriter {
    client: Client,
    ty: PgType,
    upsert: String,
    copy: String,
}

impl PgWriter {
    pub async fn open(
        client: Client,
        table: &Table,
        shape: &Shape,
        ty: PgType,
        dim: usize,
    ) -> Result<PgWriter> {
        client
            .batch_execute(&staging_ddl(&column_type(ty, dim)))
            .await
            .map_err(|e| anyhow::anyhow!("creating the staging table: {}", db_message(&e)))?;
        let upsert = shape.upsert(table);
        let copy =
            format!("COPY pg_temp.vecload_staging ({STAGING_COLUMNS}) FROM STDIN (FORMAT binary)");
        Ok(PgWriter {
            client,
            ty,
            upsert,
            copy,
        })
    }
}

#[async_trait]
impl SinkWriter for PgWriter {
    async fn write(&mut self, rows: &[Embedded]) -> Result<(), WriteError> {
        let data = encode(rows, self.ty).map_err(WriteError::Rejected)?;
        let tx = self.client.transaction().await.context("BEGIN")?;
        let sink = tx
            .copy_in::<_, bytes::Bytes>(&self.copy)
            .await
            .map_err(|e| anyhow::anyhow!("COPY into staging: {}", db_message(&e)))?;
        futures::pin_mut!(sink);
        sink.send(data.freeze())
            .await
            .map_err(|e| anyhow::anyhow!("COPY into staging: {}", db_message(&e)))?;
        sink.finish()
            .await
            .map_err(|e| anyhow::anyhow!("COPY into staging: {}", db_message(&e)))?;
        tx.execute(&self.upsert, &[])
            .await
            .map_err(|e| anyhow::anyhow!("upsert from staging: {}", db_message(&e)))?;
        // A batch counts as written only once this returns.
        tx.commit()
            .await
            .map_err(|e| anyhow::anyhow!("COMMIT: {}", db_message(&e)))?;
        Ok(())
    }
}
