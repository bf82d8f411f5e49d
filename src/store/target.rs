//! The stores, as `--sink` (VECTOR_STORAGE) and `--from` name them, and what
//! a validated target is. Each store's folder implements `StoreKind` (its
//! flags become a `Target`) and `Target` (what the commands do with one
//! table or collection: write, read, switch).
//!
//! Adding a store: a folder with its flags, settings, sink, reader and
//! switch; one line in `STORES`; one `flatten` line in `StoreFlags`.

use std::sync::Arc;

use async_trait::async_trait;
use clap::Args;

use super::{Sink, pgvector, qdrant};
use crate::layout::Layout;
use crate::records::RowReader;
use crate::settings::{ConfigError, Distance, LayoutName, bad};
use crate::space::{Recorded, Space};

/// Every store, in the order `--help` names them.
pub const STORES: &[&dyn StoreKind] = &[&pgvector::PGVECTOR, &qdrant::QDRANT];

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Vector store")]
pub struct StoreFlags {
    /// Where vectors go: pgvector or qdrant (LightRAG's PGVectorStorage / QdrantVectorDBStorage also accepted).
    #[arg(long, env = "VECTOR_STORAGE", default_value = "pgvector")]
    pub sink: String,

    /// What the stored rows look like: vecload's own layout, or lightrag:
    /// exactly what the RAG API (LightRAG 1.5) reads: its table and
    /// collection names with the model suffix, its columns and payload
    /// fields, its ids and index settings; `load` then chunks as LightRAG does.
    #[arg(long, value_enum, default_value_t = LayoutName::Vecload)]
    pub layout: LayoutName,

    /// Distance the index is built for.
    #[arg(long, value_enum, default_value_t = Distance::Cosine)]
    pub distance: Distance,

    /// Rows per write: one COPY transaction (pgvector, default 500) or one
    /// upsert (Qdrant, default 256; cut further to stay under 4 MB a request).
    #[arg(long, visible_alias = "upsert-batch", value_name = "N")]
    pub write_batch: Option<usize>,

    /// Writes in flight (default 2 connections for pgvector, 4 requests for Qdrant).
    #[arg(long, visible_alias = "upsert-concurrency", value_name = "N")]
    pub write_concurrency: Option<usize>,

    /// Seconds the store may be unreachable before the run gives up: writers
    /// pause and reconnect (fresh DNS, as after an RDS Multi-AZ failover,
    /// 60-120 s, or a Qdrant node restart) while embedded rows wait in the
    /// bounded queue, so nothing more is paid for meanwhile.
    #[arg(
        long,
        env = "VECLOAD_STORE_OUTAGE_BUDGET",
        default_value_t = 300,
        value_name = "SECONDS"
    )]
    pub store_outage_budget: u64,

    /// A target without an embedding-space record (written by LightRAG or
    /// an earlier vecload) is probed: a few stored texts are embedded again
    /// and compared with their vectors. With this flag the run's space is
    /// recorded without a probe, on the user's word.
    #[arg(long, conflicts_with = "probe_space")]
    pub assume_space: bool,

    /// Probe even a target whose record names another space (one model
    /// under two names, e.g. Ollama's and Hugging Face's), and record this
    /// run's space when the stored vectors agree with the model's.
    #[arg(long)]
    pub probe_space: bool,

    #[command(flatten)]
    pub pgvector: pgvector::Flags,

    #[command(flatten)]
    pub qdrant: qdrant::Flags,
}

/// What a target's settings depend on besides the store's own flags.
pub struct TargetSpec<'a> {
    pub dim: usize,
    pub layout: Layout,
    /// LightRAG's name suffix for the model (`text_embedding_3_large_3072d`).
    pub lightrag_suffix: Option<&'a str>,
    /// Variables clap does not map one-to-one (LightRAG's second names).
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

/// A kind of store.
pub trait StoreKind: Sync {
    /// vecload's name for it (also the first part of `--from NAME:...`).
    fn name(&self) -> &'static str;
    /// Other names `--sink` accepts (LightRAG's VECTOR_STORAGE values), lower case.
    fn aliases(&self) -> &'static [&'static str];
    /// The table or collection to write, checked against the store's limits.
    fn target(
        &self,
        flags: &StoreFlags,
        spec: &TargetSpec<'_>,
    ) -> Result<Arc<dyn Target>, ConfigError>;
    /// A table or collection `name` to read from: at the target's server,
    /// or where `at` says when it is elsewhere.
    fn source(
        &self,
        name: &str,
        flags: &StoreFlags,
        at: SourceAt,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Arc<dyn Target>, ConfigError>;
}

/// Where a source table or collection is when it is not on the target's
/// server (`--from-pg-url`, `--from-qdrant-url` and the like).
#[derive(Debug, Clone, Default)]
pub struct SourceAt {
    pub url: Option<String>,
    /// Qdrant's gRPC address there, when it is not 6334 of `url`'s host.
    pub grpc_url: Option<String>,
    /// Qdrant's API key there, when it is not the target's.
    pub api_key: Option<crate::settings::Secret>,
}

/// One table or collection at one server, validated; never prints a secret.
#[async_trait]
pub trait Target: std::fmt::Debug + Send + Sync {
    /// Which store it is in (`StoreKind::name`).
    fn kind(&self) -> &'static str;
    /// Where and what, for logs.
    fn describe(&self) -> String;
    /// Server and name, the same for the same data: names the default state
    /// file, so it must not change between versions.
    fn identity(&self) -> String;
    /// The table or collection name in a form fit for a file name.
    fn file_name(&self) -> String;
    /// Whether `other` is the same table or collection.
    fn same_data(&self, other: &dyn Target) -> bool {
        self.kind() == other.kind() && self.data_key() == other.data_key()
    }
    /// What `same_data` compares.
    fn data_key(&self) -> String;
    fn layout(&self) -> Layout;
    /// The distance the target is (or is to be) built for.
    fn distance(&self) -> Distance;
    /// What the target records of the embedding space of its vectors.
    async fn space(&self) -> anyhow::Result<Recorded>;
    /// Records `space` (a probe's verdict, or the user's word), keeping the
    /// rest of what the target records.
    async fn record_space(&self, space: &Space) -> anyhow::Result<()>;
    /// The index and the state of the table or collection (`vecload check`).
    async fn index_health(&self) -> anyhow::Result<super::IndexHealth>;
    /// How LightRAG stores its unnamed workspace in this store.
    fn lightrag_default_workspace(&self) -> &'static str;
    /// The writing side, for vectors of `dim` dimensions.
    fn sink(&self, dim: usize) -> Box<dyn Sink>;
    /// The reading side: every row (of `tenant`), page by page, with each
    /// row's vector when `vectors` (`copy`).
    async fn reader(
        &self,
        tenant: Option<String>,
        page_size: usize,
        vectors: bool,
    ) -> anyhow::Result<Box<dyn RowReader>>;
    /// How the store changes a vector it is given, which a copy's
    /// verification must allow for.
    fn stores_as(&self) -> Stored {
        Stored::AsGiven
    }
    /// `--switch NAME` is a name this target can be switched to.
    fn check_switch_name(&self, name: &str) -> Result<(), ConfigError>;
    /// Some(why) when NAME already points at this target (a rerun of a
    /// finished switch).
    async fn already_switched(&self, name: &str) -> anyhow::Result<Option<String>>;
    /// Points NAME at this target atomically; says what was done.
    async fn switch(&self, name: &str) -> anyhow::Result<String>;
}

/// What a store keeps of a vector it is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Bit for bit.
    AsGiven,
    /// Rounded to float16 (pgvector's halfvec).
    Half,
    /// Scaled to unit length (Qdrant, for cosine distance).
    Normalized,
}

/// The store `--sink` (VECTOR_STORAGE) names.
pub fn kind(name: &str) -> Result<&'static dyn StoreKind, ConfigError> {
    let wanted = name.trim().to_ascii_lowercase();
    STORES
        .iter()
        .copied()
        .find(|s| s.name() == wanted || s.aliases().contains(&wanted.as_str()))
        .ok_or_else(|| {
            bad(format!(
                "--sink (VECTOR_STORAGE) {wanted:?} is not known; use {}",
                STORES
                    .iter()
                    .map(|s| s.name())
                    .collect::<Vec<_>>()
                    .join(" or ")
            ))
        })
}

impl StoreFlags {
    /// The layout these flags ask for, for stores of LightRAG's `namespace`.
    pub fn layout(&self, namespace: crate::layout::Namespace) -> Result<Layout, ConfigError> {
        let layout = match self.layout {
            LayoutName::Vecload => Layout::Vecload,
            LayoutName::Lightrag => Layout::Lightrag(namespace),
        };
        if layout.is_lightrag() && self.distance != Distance::Cosine {
            return Err(bad(
                "--layout lightrag stores cosine vectors (LightRAG queries by cosine); drop --distance",
            ));
        }
        Ok(layout)
    }

    /// The validated target.
    pub fn target(&self, spec: &TargetSpec<'_>) -> Result<Arc<dyn Target>, ConfigError> {
        kind(&self.sink)?.target(self, spec)
    }

    /// --store-outage-budget.
    pub fn outage_budget(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.store_outage_budget)
    }

    /// --write-batch / --write-concurrency, with the store's defaults.
    pub fn writes(&self, batch: usize, concurrency: usize) -> Result<(usize, usize), ConfigError> {
        let (b, c) = (
            self.write_batch.unwrap_or(batch),
            self.write_concurrency.unwrap_or(concurrency),
        );
        if b == 0 || c == 0 {
            return Err(bad(
                "--write-batch and --write-concurrency must be at least 1",
            ));
        }
        Ok((b, c))
    }
}

/// The table or collection vecload writes when none is named.
pub const DEFAULT_NAME: &str = "vecload_chunks";
