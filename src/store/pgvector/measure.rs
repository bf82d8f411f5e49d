//! `Searcher` for pgvector: one connection; exact search with index scans
//! off in its own transaction, index search with `hnsw.ef_search` and
//! `ivfflat.probes` set as asked.

use anyhow::{Result, anyhow};
use async_trait::async_trait;
use tokio_postgres::Client;

use super::schema::{Table, db_message};
use super::shape::Shape;
use crate::settings::{Distance, PgType};
use crate::store::measure::{Mode, Searcher};

pub struct PgSearcher {
    pub client: Client,
    pub table: Table,
    pub shape: Shape,
    pub ty: PgType,
    pub dim: usize,
    pub distance: Distance,
}

impl PgSearcher {
    fn sql(&self) -> String {
        let op = match self.distance {
            Distance::Cosine => "<=>",
            Distance::Dot => "<#>",
            Distance::Euclid => "<->",
        };
        format!(
            "SELECT id::text FROM {t} WHERE {tenant} = $1 ORDER BY {v} {op} $2::text::{ty} LIMIT $3",
            t = self.table.quoted,
            v = self.shape.vector(),
            tenant = self.shape.tenant(),
            ty = super::schema::column_type(self.ty, self.dim),
        )
    }
}

#[async_trait]
impl Searcher for PgSearcher {
    fn breadth_setting(&self) -> &'static str {
        "hnsw.ef_search (ivfflat.probes for IVFFlat)"
    }

    async fn nearest(
        &mut self,
        tenant: &str,
        vector: &[f32],
        k: usize,
        mode: Mode,
    ) -> Result<Vec<String>> {
        let literal = format!(
            "[{}]",
            vector
                .iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
        let sql = self.sql();
        let fail =
            |e: tokio_postgres::Error| anyhow!("searching {}: {}", self.table.name, db_message(&e));
        let tx = self.client.transaction().await.map_err(fail)?;
        let settings = match mode {
            // The planner then reads every row of the tenant: the truth.
            Mode::Exact => {
                "SET LOCAL enable_indexscan = off; SET LOCAL enable_bitmapscan = off".to_string()
            }
            Mode::Index(Some(b)) => format!(
                "SET LOCAL hnsw.ef_search = {b}; SET LOCAL ivfflat.probes = {b}; \
                 SET LOCAL hnsw.iterative_scan = relaxed_order"
            ),
            Mode::Index(None) => "SET LOCAL hnsw.iterative_scan = relaxed_order".to_string(),
        };
        // Settings a pgvector before 0.8 does not know are skipped.
        if let Err(e) = tx.batch_execute(&settings).await {
            return Err(fail(e));
        }
        let rows = tx
            .query(&sql, &[&tenant, &literal, &(k as i64)])
            .await
            .map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}
