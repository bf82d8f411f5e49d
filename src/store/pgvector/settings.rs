//! pgvector's flags and the target they become: server, table, column
//! type and index, checked against pgvector's limits before any file is
//! read or request sent; and what the commands do with one table.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use clap::Args;

use super::PgTarget;
use crate::layout::Layout;
use crate::records::RowReader;
use crate::settings::{ConfigError, Distance, IndexKind, PgType, Secret, bad};
use crate::store::Sink;
use crate::store::target::{DEFAULT_NAME, StoreFlags, StoreKind, Target, TargetSpec};

#[derive(Debug, Clone, Args)]
// clap names a flattened group after its struct; both stores' are `Flags`.
#[group(id = "PgvectorFlags")]
pub struct Flags {
    /// PostgreSQL URL (postgres://user:pass@host:port/db?sslmode=require). Never
    /// logged; put the password in POSTGRES_PASSWORD rather than on the command line.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub pg_url: Option<String>,

    #[arg(long, env = "POSTGRES_HOST", hide = true)]
    pub pg_host: Option<String>,
    #[arg(long, env = "POSTGRES_PORT", hide = true)]
    pub pg_port: Option<u16>,
    #[arg(long, env = "POSTGRES_DATABASE", hide = true)]
    pub pg_database: Option<String>,
    #[arg(long, env = "POSTGRES_USER", hide = true)]
    pub pg_user: Option<String>,
    #[arg(long, env = "POSTGRES_PASSWORD", hide = true, hide_env_values = true)]
    pub pg_password: Option<String>,

    /// TLS: disable, prefer, require, verify-ca or verify-full (overrides the URL's sslmode).
    #[arg(long, env = "POSTGRES_SSLMODE")]
    pub pg_sslmode: Option<String>,

    /// CA bundle for verify-ca / verify-full (for RDS: the AWS RDS global bundle).
    #[arg(long, env = "POSTGRES_SSLROOTCERT", value_name = "FILE")]
    pub pg_sslrootcert: Option<PathBuf>,

    /// Table for the vectors, optionally schema-qualified [default:
    /// vecload_chunks; with --layout lightrag, LightRAG's own name, e.g.
    /// lightrag_vdb_chunks_text_embedding_3_large_3072d].
    #[arg(long)]
    pub table: Option<String>,

    /// Column type: vector (float32, index up to 2000 dims) or halfvec
    /// (float16, up to 4000) [default: vector; halfvec where
    /// POSTGRES_VECTOR_INDEX_TYPE=HNSW_HALFVEC].
    #[arg(long, value_enum)]
    pub pg_type: Option<PgType>,

    /// Vector index built after the load [default: hnsw, or what the RAG
    /// API's POSTGRES_VECTOR_INDEX_TYPE says: HNSW, HNSW_HALFVEC, IVFFLAT].
    #[arg(long, value_enum)]
    pub index: Option<IndexKind>,

    /// HNSW's m, links per node (2 to 100; pgvector's and LightRAG's default 16).
    #[arg(long, env = "POSTGRES_HNSW_M", value_name = "M")]
    pub hnsw_m: Option<u32>,

    /// HNSW's ef_construction (at least 2 x m; default 64). LightRAG's
    /// POSTGRES_HNSW_EF is this build setting, not the search-time one.
    #[arg(long, env = "POSTGRES_HNSW_EF", value_name = "N")]
    pub hnsw_ef_construction: Option<u32>,

    /// IVFFlat's lists [default: rows/1000 (sqrt(rows) past 1M) in
    /// vecload's layout, 100 in LightRAG's, as LightRAG builds it].
    #[arg(long, env = "POSTGRES_IVFFLAT_LISTS", value_name = "N")]
    pub ivfflat_lists: Option<u32>,

    /// maintenance_work_mem for the index build (e.g. 1GB); the server's setting if unset.
    #[arg(long, value_name = "SIZE")]
    pub index_memory: Option<String>,
}

#[derive(Debug, Clone)]
pub struct PgSettings {
    pub target: PgTarget,
    pub table: String,
    pub layout: Layout,
    pub pg_type: PgType,
    pub index: IndexKind,
    pub index_params: IndexParams,
    pub distance: Distance,
    pub index_memory: Option<String>,
    pub write_batch: usize,
    pub write_concurrency: usize,
    /// --store-outage-budget.
    pub outage_budget: std::time::Duration,
}

/// pgvector's hard limits (pgvector 0.8): no column over 16000 dimensions; HNSW
/// and IVFFlat index `vector` up to 2000 and `halfvec` up to 4000.
pub const PG_MAX_DIM: usize = 16_000;
pub const PG_VECTOR_INDEX_MAX_DIM: usize = 2_000;
pub const PG_HALFVEC_INDEX_MAX_DIM: usize = 4_000;

pub struct Pgvector;
pub const PGVECTOR: Pgvector = Pgvector;

/// The build settings of the vector index, where given (else the
/// layout's defaults: pgvector's for vecload's, LightRAG's for its own).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexParams {
    pub m: Option<u32>,
    pub ef_construction: Option<u32>,
    pub lists: Option<u32>,
}

impl Flags {
    /// The column type and index: the flags, else the RAG API's
    /// POSTGRES_VECTOR_INDEX_TYPE, else vector and HNSW.
    fn index_choice(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(PgType, IndexKind), ConfigError> {
        let (mut kind, mut ty) = (None, None);
        let named = env("POSTGRES_VECTOR_INDEX_TYPE")
            .map(|v| v.trim().to_ascii_uppercase())
            .filter(|v| !v.is_empty());
        if let (Some(name), false) = (named, self.index == Some(IndexKind::None)) {
            match name.as_str() {
                "HNSW" => kind = Some(IndexKind::Hnsw),
                "HNSW_HALFVEC" => (kind, ty) = (Some(IndexKind::Hnsw), Some(PgType::Halfvec)),
                "IVFFLAT" => kind = Some(IndexKind::Ivfflat),
                "VCHORDRQ" => {
                    return Err(bad(
                        "POSTGRES_VECTOR_INDEX_TYPE=VCHORDRQ: vecload builds pgvector's HNSW and \
                         IVFFlat indexes, not VectorChord's vchordrq (its extension and build \
                         options are not supported). Use HNSW, HNSW_HALFVEC or IVFFLAT, or \
                         --index none and let LightRAG build it at its start",
                    ));
                }
                other => {
                    return Err(bad(format!(
                        "POSTGRES_VECTOR_INDEX_TYPE={other:?} is not known: HNSW, HNSW_HALFVEC or \
                         IVFFLAT (LightRAG's names)"
                    )));
                }
            }
        }
        Ok((
            self.pg_type.or(ty).unwrap_or(PgType::Vector),
            self.index.or(kind).unwrap_or(IndexKind::Hnsw),
        ))
    }

    /// --hnsw-m, --hnsw-ef-construction, --ivfflat-lists within pgvector's bounds.
    fn index_params(&self) -> Result<IndexParams, ConfigError> {
        let p = IndexParams {
            m: self.hnsw_m,
            ef_construction: self.hnsw_ef_construction,
            lists: self.ivfflat_lists,
        };
        if let Some(m) = p.m
            && !(2..=100).contains(&m)
        {
            return Err(bad(format!(
                "--hnsw-m (POSTGRES_HNSW_M) {m}: pgvector takes 2 to 100"
            )));
        }
        if let Some(ef) = p.ef_construction {
            let m = p.m.unwrap_or(16);
            if !(4..=1000).contains(&ef) || ef < 2 * m {
                return Err(bad(format!(
                    "--hnsw-ef-construction (POSTGRES_HNSW_EF) {ef}: pgvector takes 4 to 1000, \
                     and at least 2 x m ({})",
                    2 * m
                )));
            }
        }
        if let Some(l) = p.lists
            && !(1..=32_768).contains(&l)
        {
            return Err(bad(format!(
                "--ivfflat-lists (POSTGRES_IVFFLAT_LISTS) {l}: pgvector takes 1 to 32768"
            )));
        }
        Ok(p)
    }

    /// The server: the URL (DATABASE_URL) or the POSTGRES_* parts, with
    /// LightRAG's spellings of the TLS settings.
    fn server(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<PgTarget, String> {
        PgTarget::from_settings(
            self.pg_url.clone().or_else(|| env("DATABASE_URL")),
            self.pg_host.clone(),
            self.pg_port,
            self.pg_database.clone(),
            self.pg_user.clone(),
            self.pg_password.clone().map(Secret::new),
            self.pg_sslmode.clone().or_else(|| env("POSTGRES_SSL_MODE")),
            self.pg_sslrootcert
                .clone()
                .or_else(|| env("POSTGRES_SSL_ROOT_CERT").map(PathBuf::from)),
        )
    }
}

impl StoreKind for Pgvector {
    fn name(&self) -> &'static str {
        "pgvector"
    }

    fn aliases(&self) -> &'static [&'static str] {
        &["pgvectorstorage", "postgres", "postgresql", "pg"]
    }

    fn target(
        &self,
        flags: &StoreFlags,
        spec: &TargetSpec<'_>,
    ) -> Result<Arc<dyn Target>, ConfigError> {
        let f = &flags.pgvector;
        let (pg_type, index) = f.index_choice(spec.env)?;
        let index_params = f.index_params()?;
        check_pg_dimension(spec.dim, pg_type, index)?;
        let (write_batch, write_concurrency) = flags.writes(500, 2)?;
        let table = match (&f.table, spec.layout) {
            (Some(t), _) => t.clone(),
            (None, Layout::Lightrag(ns)) => crate::layout::pg_table(ns, spec.lightrag_suffix),
            (None, Layout::Vecload) => DEFAULT_NAME.into(),
        };
        let table = super::schema::validate_table_name(&table)
            .map_err(|m| bad(format!("--table {table:?}: {m}")))?;
        Ok(Arc::new(PgSettings {
            target: f.server(spec.env).map_err(bad)?,
            table,
            layout: spec.layout,
            pg_type,
            index,
            index_params,
            distance: flags.distance,
            index_memory: f.index_memory.clone(),
            write_batch,
            write_concurrency,
            outage_budget: flags.outage_budget(),
        }))
    }

    fn source(
        &self,
        name: &str,
        flags: &StoreFlags,
        at: crate::store::SourceAt,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Arc<dyn Target>, ConfigError> {
        let f = &flags.pgvector;
        let table = super::schema::validate_table_name(name)
            .map_err(|m| bad(format!("--from pgvector:{name}: {m}")))?;
        let target = match at.url {
            Some(url) => PgTarget::from_settings(
                Some(url),
                None,
                None,
                None,
                None,
                None,
                None,
                f.pg_sslrootcert.clone(),
            ),
            None => f.server(env),
        }
        .map_err(|e| bad(format!("the source database (--from-pg-url): {e}")))?;
        Ok(Arc::new(PgSettings {
            target,
            table,
            layout: Layout::Vecload,
            pg_type: PgType::Vector,
            index: IndexKind::None,
            index_params: IndexParams::default(),
            distance: flags.distance,
            index_memory: None,
            write_batch: 500,
            write_concurrency: 2,
            outage_budget: std::time::Duration::from_secs(300),
        }))
    }
}

/// `public.t` and `t` are the same table for the usual search_path.
fn unqualified(t: &str) -> &str {
    t.strip_prefix("public.").unwrap_or(t)
}

#[async_trait]
impl Target for PgSettings {
    fn kind(&self) -> &'static str {
        "pgvector"
    }

    fn describe(&self) -> String {
        format!(
            "pgvector table {} at {}",
            self.table,
            self.target.describe()
        )
    }

    fn identity(&self) -> String {
        let server = self.target.describe();
        let server = server.split(" (sslmode").next().unwrap_or(server);
        format!("{server}|{}", self.table)
    }

    fn file_name(&self) -> String {
        self.table.replace('.', "_")
    }

    fn data_key(&self) -> String {
        format!("{}|{}", self.target.describe(), unqualified(&self.table))
    }

    fn layout(&self) -> Layout {
        self.layout
    }

    fn lightrag_default_workspace(&self) -> &'static str {
        "default"
    }

    fn distance(&self) -> Distance {
        self.distance
    }

    async fn space(&self) -> anyhow::Result<crate::space::Recorded> {
        let client = self.target.connect().await?;
        super::space::read(&client, &super::schema::Table::new(&self.table)).await
    }

    async fn index_health(&self) -> anyhow::Result<crate::store::IndexHealth> {
        let client = self.target.connect().await?;
        super::schema::index_health(&client, &super::schema::Table::new(&self.table)).await
    }

    async fn record_space(&self, space: &crate::space::Space) -> anyhow::Result<()> {
        let mut client = self.target.connect().await?;
        super::space::write(
            &mut client,
            &super::schema::Table::new(&self.table),
            space,
            self.layout,
        )
        .await
    }

    fn sink(&self, dim: usize) -> Box<dyn Sink> {
        Box::new(super::PgSink::new(self.clone(), dim))
    }

    fn stores_as(&self) -> crate::store::Stored {
        match self.pg_type {
            PgType::Vector => crate::store::Stored::AsGiven,
            PgType::Halfvec => crate::store::Stored::Half,
        }
    }

    async fn reader(
        &self,
        tenant: Option<String>,
        page_size: usize,
        vectors: bool,
    ) -> anyhow::Result<Box<dyn RowReader>> {
        Ok(Box::new(
            super::reader::PgSource::open(&self.target, &self.table, tenant, page_size, vectors)
                .await?,
        ))
    }

    fn check_switch_name(&self, name: &str) -> Result<(), ConfigError> {
        super::schema::validate_table_name(name)
            .map_err(|m| bad(format!("--switch {name:?}: {m}")))?;
        let schema = |t: &str| t.split_once('.').map(|(s, _)| s.to_string());
        if schema(name).unwrap_or_else(|| "public".into())
            != schema(&self.table).unwrap_or_else(|| "public".into())
        {
            return Err(bad(format!(
                "--switch {name:?} and --table {:?} are in different schemas; a rename \
                 cannot move a table between schemas",
                self.table
            )));
        }
        if unqualified(name) == unqualified(&self.table) {
            return Err(bad(format!(
                "--switch {name:?} is the target table itself; give the name the RAG API reads"
            )));
        }
        Ok(())
    }

    async fn already_switched(&self, name: &str) -> anyhow::Result<Option<String>> {
        super::switch::already_switched(self, name).await
    }

    async fn switch(&self, name: &str) -> anyhow::Result<String> {
        super::switch::switch(self, name).await
    }
}

/// pgvector's dimension rules, checked before any file is read or request sent.
pub fn check_pg_dimension(dim: usize, ty: PgType, index: IndexKind) -> Result<(), ConfigError> {
    if dim > PG_MAX_DIM {
        return Err(bad(format!(
            "--embed-dim {dim} is over pgvector's limit of {PG_MAX_DIM} dimensions for any column; \
             use a model or `dimensions` setting of {PG_MAX_DIM} or less"
        )));
    }
    let (limit, name) = match (ty, index) {
        (_, IndexKind::None) => return Ok(()),
        (PgType::Vector, _) => (PG_VECTOR_INDEX_MAX_DIM, "vector"),
        (PgType::Halfvec, _) => (PG_HALFVEC_INDEX_MAX_DIM, "halfvec"),
    };
    if dim <= limit {
        return Ok(());
    }
    let index_name = match index {
        IndexKind::Hnsw => "hnsw",
        IndexKind::Ivfflat => "ivfflat",
        IndexKind::None => "none",
    };
    let mut ways = Vec::new();
    if ty == PgType::Vector && dim <= PG_HALFVEC_INDEX_MAX_DIM {
        ways.push(format!(
            "--pg-type halfvec (float16, indexable up to {PG_HALFVEC_INDEX_MAX_DIM} dimensions)"
        ));
    }
    ways.push("--index none (exact search only, slow on large tables)".to_string());
    ways.push(format!(
        "a model or `dimensions` setting (--send-dimensions) of {limit} or less"
    ));
    Err(bad(format!(
        "--embed-dim {dim} is over pgvector's limit of {limit} dimensions for a {index_name} index \
         on a {name} column. Ways out: {}",
        ways.join("; or ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dimension_rule_follows_pgvector_limits() {
        use IndexKind::*;
        use PgType::*;
        assert!(check_pg_dimension(1536, Vector, Hnsw).is_ok());
        assert!(check_pg_dimension(2000, Vector, Ivfflat).is_ok());
        assert!(check_pg_dimension(2001, Vector, Hnsw).is_err());
        assert!(check_pg_dimension(3072, Vector, Ivfflat).is_err());
        assert!(check_pg_dimension(3072, Halfvec, Hnsw).is_ok());
        assert!(check_pg_dimension(4001, Halfvec, Hnsw).is_err());
        assert!(check_pg_dimension(3072, Vector, None).is_ok());
        assert!(check_pg_dimension(16_000, Vector, None).is_ok());
        assert!(check_pg_dimension(16_001, Halfvec, None).is_err());
    }

    #[test]
    fn refusal_names_the_limit_and_ways_out() {
        let msg = check_pg_dimension(3072, PgType::Vector, IndexKind::Hnsw)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("2000"), "{msg}");
        assert!(msg.contains("--pg-type halfvec"), "{msg}");
        assert!(msg.contains("--index none"), "{msg}");
    }
}
