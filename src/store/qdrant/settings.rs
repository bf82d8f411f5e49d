//! Qdrant's flags and the target they become: server (gRPC, API key),
//! collection and its creation settings, checked before anything runs; and
//! what the commands do with one collection.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use clap::Args;

use super::QdrantTarget;
use crate::layout::Layout;
use crate::records::RowReader;
use crate::settings::{ConfigError, Distance, Secret, bad};
use crate::store::Sink;
use crate::store::target::{DEFAULT_NAME, StoreFlags, StoreKind, Target, TargetSpec};

#[derive(Debug, Clone, Args)]
// clap names a flattened group after its struct; both stores' are `Flags`.
#[group(id = "QdrantFlags")]
pub struct Flags {
    /// Qdrant's URL as the RAG API has it (REST, http://host:6333). Uploads go
    /// over gRPC to port 6334 of the same host unless --qdrant-grpc-url is set.
    #[arg(long, env = "QDRANT_URL", help_heading = "Qdrant")]
    pub qdrant_url: Option<String>,

    /// Qdrant's gRPC address, when it is not port 6334 of --qdrant-url's host.
    #[arg(long, env = "QDRANT_GRPC_URL", help_heading = "Qdrant")]
    pub qdrant_grpc_url: Option<String>,

    /// Qdrant API key. Never logged; keep it in the environment rather than on
    /// the command line.
    #[arg(
        long,
        env = "QDRANT_API_KEY",
        hide_env_values = true,
        help_heading = "Qdrant"
    )]
    pub qdrant_api_key: Option<String>,

    /// Qdrant collection (created with the payload indexes if missing)
    /// [default: vecload_chunks; with --layout lightrag, LightRAG's own name,
    /// e.g. lightrag_vdb_chunks_text_embedding_3_large_3072d].
    #[arg(long, help_heading = "Qdrant")]
    pub collection: Option<String>,

    /// Store a new collection's vectors and payload on disk (true/false).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL", help_heading = "Qdrant")]
    pub on_disk: bool,

    /// HNSW's m of a new collection (links per node; Qdrant's default 16).
    /// With --layout lightrag it is the per-tenant graphs' payload_m, since
    /// LightRAG's collections build no global graph.
    #[arg(long, value_name = "M", help_heading = "Qdrant")]
    pub qdrant_hnsw_m: Option<u64>,

    /// HNSW's ef_construct of a new collection (Qdrant's default 100).
    #[arg(long, value_name = "N", help_heading = "Qdrant")]
    pub qdrant_ef_construct: Option<u64>,

    /// Leave HNSW building on during the load (by default it is off while
    /// loading and restored at the end, also after an error or Ctrl-C).
    #[arg(long, help_heading = "Qdrant")]
    pub keep_indexing: bool,

    /// Shards of a new collection (the server's default if unset: one per
    /// node in a cluster).
    #[arg(long, value_name = "N", help_heading = "Qdrant")]
    pub shard_number: Option<u32>,

    /// Copies of each shard in a new collection (the server's default, 1, if
    /// unset; 2 or more lets a cluster lose a node).
    #[arg(long, value_name = "N", help_heading = "Qdrant")]
    pub replication_factor: Option<u32>,

    /// When a write counts as done: `applied` (each upsert waits until the
    /// server applied it) or `wal` (once it is in the server's write-ahead
    /// log; the finish waits for every shard to apply everything before it
    /// counts). `wal` is faster and needs one replica per shard.
    #[arg(
        long,
        value_enum,
        env = "VECLOAD_QDRANT_ACK",
        default_value_t = Ack::Applied,
        help_heading = "Qdrant"
    )]
    pub qdrant_ack: Ack,

    /// Seconds one Qdrant request may take (the client's default of 5 is too
    /// short for large batches).
    #[arg(
        long,
        default_value_t = 60,
        value_name = "SECONDS",
        help_heading = "Qdrant"
    )]
    pub qdrant_timeout: u64,
}

/// When a Qdrant write counts as done (`--qdrant-ack`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Ack {
    /// `wait=true`: applied to the shard.
    Applied,
    /// `wait=false`: in the write-ahead log; applied in order later.
    Wal,
}

#[derive(Debug, Clone)]
pub struct QdrantSettings {
    pub target: QdrantTarget,
    pub collection: String,
    pub layout: Layout,
    pub distance: Distance,
    pub on_disk: bool,
    /// --qdrant-hnsw-m / --qdrant-ef-construct of a new collection.
    pub hnsw_m: Option<u64>,
    pub ef_construct: Option<u64>,
    pub keep_indexing: bool,
    pub shard_number: Option<u32>,
    pub replication_factor: Option<u32>,
    pub ack: Ack,
    pub write_batch: usize,
    pub write_concurrency: usize,
    /// --store-outage-budget.
    pub outage_budget: std::time::Duration,
}

/// Qdrant takes vectors up to 65,536 dimensions.
const QDRANT_MAX_DIM: usize = 65_536;

pub struct Qdrant;
pub const QDRANT: Qdrant = Qdrant;

impl Flags {
    fn server(
        &self,
        url: Option<String>,
        grpc_url: Option<String>,
    ) -> Result<QdrantTarget, String> {
        QdrantTarget::from_settings(
            url,
            grpc_url,
            self.qdrant_api_key.clone().map(Secret::new),
            Duration::from_secs(self.qdrant_timeout.max(1)),
        )
    }
}

/// A name Qdrant takes for a collection.
fn check_collection_name(collection: &str) -> Result<String, ConfigError> {
    let name = collection.trim();
    if name.is_empty()
        || name.len() > 255
        || name
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || "/\\\0".contains(c))
    {
        return Err(bad(format!(
            "--collection {collection:?} is not a valid Qdrant collection name \
             (1-255 characters, no spaces or slashes)"
        )));
    }
    Ok(name.to_string())
}

impl StoreKind for Qdrant {
    fn name(&self) -> &'static str {
        "qdrant"
    }

    fn aliases(&self) -> &'static [&'static str] {
        &["qdrantstorage", "qdrantvectordbstorage"]
    }

    fn target(
        &self,
        flags: &StoreFlags,
        spec: &TargetSpec<'_>,
    ) -> Result<Arc<dyn Target>, ConfigError> {
        let f = &flags.qdrant;
        if spec.dim > QDRANT_MAX_DIM {
            return Err(bad(format!(
                "--embed-dim {} is over Qdrant's limit of {QDRANT_MAX_DIM} dimensions",
                spec.dim
            )));
        }
        let name = match (&f.collection, spec.layout) {
            (Some(c), _) => c.clone(),
            (None, Layout::Lightrag(ns)) => {
                crate::layout::qdrant_collection(ns, spec.lightrag_suffix)
            }
            (None, Layout::Vecload) => DEFAULT_NAME.into(),
        };
        let (write_batch, write_concurrency) = flags.writes(256, 4)?;
        let collection = check_collection_name(&name)?;
        if f.shard_number == Some(0) || f.replication_factor == Some(0) {
            return Err(bad(
                "--shard-number and --replication-factor must be at least 1",
            ));
        }
        if f.qdrant_timeout == 0 {
            return Err(bad("--qdrant-timeout must be at least 1 second"));
        }
        Ok(Arc::new(QdrantSettings {
            target: f
                .server(f.qdrant_url.clone(), f.qdrant_grpc_url.clone())
                .map_err(bad)?,
            collection,
            layout: spec.layout,
            distance: flags.distance,
            on_disk: f.on_disk,
            hnsw_m: f.qdrant_hnsw_m,
            ef_construct: f.qdrant_ef_construct,
            keep_indexing: f.keep_indexing,
            shard_number: f.shard_number,
            replication_factor: f.replication_factor,
            ack: f.qdrant_ack,
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
        _env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Arc<dyn Target>, ConfigError> {
        let f = &flags.qdrant;
        // Elsewhere (--from-qdrant-url): its own gRPC address (6334 of its
        // host unless --from-qdrant-grpc-url), its own key if given.
        let grpc = if at.url.is_some() || at.grpc_url.is_some() {
            at.grpc_url
        } else {
            f.qdrant_grpc_url.clone()
        };
        let target = QdrantTarget::from_settings(
            at.url.or_else(|| f.qdrant_url.clone()),
            grpc,
            at.api_key
                .or_else(|| f.qdrant_api_key.clone().map(Secret::new)),
            Duration::from_secs(f.qdrant_timeout.max(1)),
        )
        .map_err(|e| bad(format!("the source Qdrant (--from-qdrant-url): {e}")))?;
        Ok(Arc::new(QdrantSettings {
            target,
            collection: name.to_string(),
            layout: Layout::Vecload,
            distance: flags.distance,
            on_disk: true,
            hnsw_m: None,
            ef_construct: None,
            keep_indexing: true,
            shard_number: None,
            replication_factor: None,
            ack: Ack::Applied,
            write_batch: 256,
            write_concurrency: 4,
            outage_budget: std::time::Duration::from_secs(300),
        }))
    }
}

#[async_trait]
impl Target for QdrantSettings {
    fn kind(&self) -> &'static str {
        "qdrant"
    }

    fn describe(&self) -> String {
        format!(
            "Qdrant collection {} at {}",
            self.collection,
            self.target.describe()
        )
    }

    fn identity(&self) -> String {
        format!("{}|{}", self.target.grpc_url, self.collection)
    }

    fn file_name(&self) -> String {
        self.collection.replace(
            |c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_',
            "_",
        )
    }

    fn data_key(&self) -> String {
        format!("{}|{}", self.target.describe(), self.collection)
    }

    fn layout(&self) -> Layout {
        self.layout
    }

    fn lightrag_default_workspace(&self) -> &'static str {
        "_"
    }

    fn distance(&self) -> Distance {
        self.distance
    }

    async fn space(&self) -> anyhow::Result<crate::space::Recorded> {
        let client = self.target.connect()?;
        Ok(
            match super::collection::info(&client, &self.collection).await? {
                None => crate::space::Recorded::NoTarget,
                Some(info) => super::space::recorded(&self.collection, &info),
            },
        )
    }

    async fn index_health(&self) -> anyhow::Result<crate::store::IndexHealth> {
        let client = self.target.connect()?;
        super::collection::health(&client, &self.collection).await
    }

    async fn record_space(&self, space: &crate::space::Space) -> anyhow::Result<()> {
        let client = self.target.connect()?;
        super::space::write(&client, &self.collection, space, self.layout).await
    }

    fn sink(&self, dim: usize) -> Box<dyn Sink> {
        Box::new(super::QdrantSink::new(self.clone(), dim))
    }

    /// Qdrant scales every vector of a cosine collection to unit length on
    /// upsert (its cosine search is a dot product).
    fn stores_as(&self) -> crate::store::Stored {
        match self.distance {
            Distance::Cosine => crate::store::Stored::Normalized,
            _ => crate::store::Stored::AsGiven,
        }
    }

    async fn reader(
        &self,
        tenant: Option<String>,
        page_size: usize,
        vectors: bool,
    ) -> anyhow::Result<Box<dyn RowReader>> {
        Ok(Box::new(
            super::reader::QdrantSource::open(
                &self.target,
                &self.collection,
                tenant,
                page_size,
                vectors,
            )
            .await?,
        ))
    }

    fn check_switch_name(&self, name: &str) -> Result<(), ConfigError> {
        if name.trim().is_empty() || name == self.collection {
            return Err(bad(format!(
                "--switch {name:?} must be the alias the RAG API reads, not the target collection"
            )));
        }
        Ok(())
    }

    async fn already_switched(&self, _name: &str) -> anyhow::Result<Option<String>> {
        // Re-pointing an alias at the collection it points at changes nothing.
        Ok(None)
    }

    async fn switch(&self, name: &str) -> anyhow::Result<String> {
        super::switch::switch(self, name).await
    }
}
