//! What a sharded run keeps in the database next to the table: the N the
//! prepare step set, each worker's report for the finish step (one table,
//! `vecload_shards`, in the target table's schema, so LightRAG's own tables
//! need no column of vecload's), and which worker runs a shard now (a
//! session advisory lock: it goes with the session, so a killed worker
//! never leaves a stale claim behind).

use anyhow::{Context, Result};
use tokio_postgres::Client;

use super::schema::{Table, db_message};
use crate::shard::{Shard, ShardReport};

/// `shard` of the row that holds N (reports have 0..N).
const COUNT_ROW: i32 = -1;

pub struct Workers<'a> {
    table: &'a Table,
}

impl<'a> Workers<'a> {
    pub fn new(table: &'a Table) -> Workers<'a> {
        Workers { table }
    }

    /// `"schema".vecload_shards`, in the schema the target table names.
    fn side(&self) -> String {
        match self.table.quoted.rsplit_once('.') {
            Some((schema, _)) => format!("{schema}.vecload_shards"),
            None => "vecload_shards".to_string(),
        }
    }

    async fn exists(&self, client: &Client) -> Result<bool> {
        let row = client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&self.side()])
            .await
            .map_err(|e| anyhow::anyhow!("looking for {}: {}", self.side(), db_message(&e)))?;
        Ok(row.get(0))
    }

    async fn ensure(&self, client: &Client) -> Result<()> {
        // Workers start at once: the lock keeps two CREATEs from racing on
        // the catalog (IF NOT EXISTS alone does not).
        let sql = format!(
            "BEGIN; SELECT pg_advisory_xact_lock(hashtext('vecload_shards')); \
             CREATE TABLE IF NOT EXISTS {} (target text NOT NULL, tenant text NOT NULL, \
             shard integer NOT NULL, report jsonb NOT NULL, PRIMARY KEY (target, tenant, shard)); \
             COMMIT",
            self.side()
        );
        client
            .batch_execute(&sql)
            .await
            .map_err(|e| anyhow::anyhow!("creating {}: {}", self.side(), db_message(&e)))
    }

    pub async fn shards(&self, client: &Client) -> Result<Option<u32>> {
        if !self.exists(client).await? {
            return Ok(None);
        }
        let sql = format!(
            "SELECT (report->>'shards')::bigint FROM {} WHERE target = $1 AND tenant = '' AND shard = $2",
            self.side()
        );
        let row = client
            .query_opt(&sql, &[&self.table.name, &COUNT_ROW])
            .await
            .map_err(|e| anyhow::anyhow!("reading the shard count: {}", db_message(&e)))?;
        Ok(row
            .and_then(|r| r.get::<_, Option<i64>>(0))
            .and_then(|n| u32::try_from(n).ok()))
    }

    pub async fn set_shards(&self, client: &Client, n: Option<u32>) -> Result<()> {
        match n {
            Some(n) => {
                self.put(client, "", COUNT_ROW, serde_json::json!({ "shards": n }))
                    .await
            }
            None => {
                let row = format!("shard = {COUNT_ROW}");
                self.delete(client, "", &row, "clearing the shard count")
                    .await
            }
        }
    }

    /// Deletes this target's rows of `tenant` that `shards` (a condition
    /// on `shard`) picks, if the table is there at all.
    async fn delete(&self, client: &Client, tenant: &str, shards: &str, what: &str) -> Result<()> {
        if !self.exists(client).await? {
            return Ok(());
        }
        let sql = format!(
            "DELETE FROM {} WHERE target = $1 AND tenant = $2 AND {shards}",
            self.side()
        );
        client
            .execute(&sql, &[&self.table.name, &tenant])
            .await
            .map_err(|e| anyhow::anyhow!("{what}: {}", db_message(&e)))?;
        Ok(())
    }

    async fn put(
        &self,
        client: &Client,
        tenant: &str,
        shard: i32,
        body: serde_json::Value,
    ) -> Result<()> {
        self.ensure(client).await?;
        let sql = format!(
            "INSERT INTO {} (target, tenant, shard, report) VALUES ($1, $2, $3, $4::text::jsonb) \
             ON CONFLICT (target, tenant, shard) DO UPDATE SET report = EXCLUDED.report",
            self.side()
        );
        client
            .execute(
                &sql,
                &[&self.table.name, &tenant, &shard, &body.to_string()],
            )
            .await
            .map_err(|e| anyhow::anyhow!("writing to {}: {}", self.side(), db_message(&e)))?;
        Ok(())
    }

    pub async fn put_report(&self, client: &Client, tenant: &str, r: &ShardReport) -> Result<()> {
        let shard = i32::try_from(r.shard).context("shard index")?;
        self.put(client, tenant, shard, serde_json::to_value(r)?)
            .await
    }

    pub async fn reports(&self, client: &Client, tenant: &str) -> Result<Vec<ShardReport>> {
        if !self.exists(client).await? {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT report::text FROM {} WHERE target = $1 AND tenant = $2 AND shard >= 0",
            self.side()
        );
        let rows = client
            .query(&sql, &[&self.table.name, &tenant])
            .await
            .map_err(|e| anyhow::anyhow!("reading the workers' reports: {}", db_message(&e)))?;
        rows.iter()
            .map(|r| {
                let text: String = r.get(0);
                serde_json::from_str(&text)
                    .with_context(|| format!("a worker's report in {}: {text}", self.side()))
            })
            .collect()
    }

    pub async fn clear_reports(&self, client: &Client, tenant: &str) -> Result<()> {
        self.delete(
            client,
            tenant,
            "shard >= 0",
            "clearing the workers' reports",
        )
        .await
    }

    fn lock_key(&self, tenant: &str) -> String {
        format!("vecload {} {tenant}", self.table.name)
    }

    /// Takes the shard's lock on `client` (a session kept for the run).
    /// Some(who): another session holds it now.
    pub async fn claim(
        &self,
        client: &Client,
        tenant: &str,
        shard: Shard,
    ) -> Result<Option<String>> {
        let key = self.lock_key(tenant);
        let index = i32::try_from(shard.index).context("shard index")?;
        let got: bool = client
            .query_one(
                "SELECT pg_try_advisory_lock(hashtext($1), $2)",
                &[&key, &index],
            )
            .await
            .map_err(|e| anyhow::anyhow!("claiming shard {shard}: {}", db_message(&e)))?
            .get(0);
        if got {
            return Ok(None);
        }
        // The two-key form keeps key 1 in classid and key 2 in objid.
        let who = client
            .query_opt(
                "SELECT coalesce(host(a.client_addr), 'local socket') || ' (' || \
                 coalesce(nullif(a.application_name, ''), 'no name') || '), connected since ' || \
                 to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC' \
                 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
                 WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND l.granted \
                 AND l.classid = hashtext($1)::oid AND l.objid = ($2::int4)::oid LIMIT 1",
                &[&key, &index],
            )
            .await
            .ok()
            .flatten()
            .map(|r| r.get::<_, String>(0));
        Ok(Some(
            who.unwrap_or_else(|| "another database session".to_string()),
        ))
    }
}
