//! The validated settings of a run, built once from flags and env.
//!
//! Every check that can fail without touching a file or a server happens here,
//! before anything else: a run that would be refused later (pgvector's
//! dimension limits above all) is refused now, so nothing is read, paid for or
//! written. Runtime code sees only these types, never the raw CLI structs.

use std::path::PathBuf;
use std::time::Duration;

use crate::cli::{
    Distance, EmbedArgs, IndexKind, LoadArgs, PgType, ProgressMode, SearchArgs, SinkArgs,
    TokenizerName,
};
use crate::layout::{Layout, Namespace};
use crate::sink::pgvector::PgTarget;
use crate::sink::qdrant::QdrantTarget;

/// A setting that cannot work; the message names the setting and the way out.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn bad(msg: impl Into<String>) -> ConfigError {
    ConfigError(msg.into())
}

#[derive(Debug, Clone)]
pub struct Config {
    pub paths: Vec<PathBuf>,
    pub tenant: String,
    pub report: Option<PathBuf>,
    pub progress: ProgressMode,
    /// None: no state kept (--no-state).
    pub state: Option<PathBuf>,
    pub prune: bool,
    pub dead_letter: Option<PathBuf>,
    pub source: SourceConfig,
    pub chunk: ChunkConfig,
    pub embed: EmbedConfig,
    pub sink: SinkConfig,
}

#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub default_excludes: bool,
    pub json_text_field: String,
    pub max_file_bytes: u64,
    /// Prepended (with `/`) to every stored source path.
    pub source_prefix: Option<String>,
    /// Only these files (paths as stored), from --retry-failed.
    pub only_files: Option<std::collections::HashSet<String>>,
    /// LightRAG names a document by its file name: two files of one name
    /// would overwrite each other, so the second is refused.
    pub unique_file_names: bool,
    /// A file is one document even when it has pages or sheets (LightRAG
    /// keeps one document per file).
    pub whole_files: bool,
    /// Longest a PDF or Office file may take to extract.
    pub extract_timeout: std::time::Duration,
}

#[derive(Debug, Clone, Copy)]
pub struct ChunkConfig {
    pub tokens: usize,
    pub overlap: usize,
    pub tokenizer: TokenizerName,
    /// Cut as LightRAG does (fixed token windows, its ids) for --layout lightrag.
    pub lightrag: bool,
}

/// Who computes the vectors (`--embed-provider`, EMBEDDING_BINDING).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    OpenAi,
    Tei,
    Ollama,
    Local,
}

impl Provider {
    /// vecload's names and the RAG API's (LightRAG's EMBEDDING_BINDING).
    fn parse(s: &str) -> Result<Provider, ConfigError> {
        match s.trim().to_ascii_lowercase().as_str() {
            // jina and lollms speak the OpenAI protocol.
            "openai" | "openai-compatible" | "jina" | "lollms" => Ok(Provider::OpenAi),
            "tei" | "text-embeddings-inference" => Ok(Provider::Tei),
            "ollama" => Ok(Provider::Ollama),
            "local" => Ok(Provider::Local),
            other => Err(bad(format!(
                "--embed-provider (EMBEDDING_BINDING) {other:?} is not supported; \
                 use openai (any OpenAI-compatible endpoint), tei, ollama or local"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Provider::OpenAi => "openai",
            Provider::Tei => "tei",
            Provider::Ollama => "ollama",
            Provider::Local => "local",
        }
    }
}

#[derive(Debug, Clone)]
pub struct EmbedConfig {
    pub provider: Provider,
    /// Base URLs without a trailing slash; empty for the local provider.
    pub urls: Vec<String>,
    pub model_dir: Option<PathBuf>,
    pub truncate: bool,
    pub model: String,
    pub dim: usize,
    pub api_key: Option<Secret>,
    pub send_dimensions: bool,
    pub batch_size: usize,
    pub max_request_tokens: usize,
    pub concurrency: usize,
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
    pub request_timeout: Duration,
    pub max_retries: u32,
}

// Built once per run; the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum SinkConfig {
    Pgvector(PgConfig),
    Qdrant(QdrantConfig),
}

#[derive(Debug, Clone)]
pub struct QdrantConfig {
    pub target: QdrantTarget,
    pub collection: String,
    pub layout: Layout,
    pub distance: Distance,
    pub on_disk: bool,
    pub keep_indexing: bool,
    pub shard_number: Option<u32>,
    pub replication_factor: Option<u32>,
    pub write_batch: usize,
    pub write_concurrency: usize,
}

#[derive(Debug, Clone)]
pub struct PgConfig {
    pub target: PgTarget,
    pub table: String,
    pub layout: Layout,
    pub pg_type: PgType,
    pub index: IndexKind,
    pub distance: Distance,
    pub index_memory: Option<String>,
    pub write_batch: usize,
    pub write_concurrency: usize,
}

/// A string that never prints itself, so a key or password cannot reach a
/// log line, an error or the report by accident.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Self {
        Secret(s)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// pgvector's hard limits (pgvector 0.8): no column over 16000 dimensions; HNSW
/// and IVFFlat index `vector` up to 2000 and `halfvec` up to 4000.
pub const PG_MAX_DIM: usize = 16_000;
pub const PG_VECTOR_INDEX_MAX_DIM: usize = 2_000;
pub const PG_HALFVEC_INDEX_MAX_DIM: usize = 4_000;

/// OpenAI's per-request input cap; others are lower, never higher.
const MAX_BATCH_INPUTS: usize = 2048;

impl Config {
    /// `env` looks up variables that clap does not map one-to-one (a second
    /// name for the API key); passing it in keeps this testable.
    pub fn from_load_args(
        args: LoadArgs,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let tenant = args.tenant.trim().to_string();
        if tenant.is_empty() {
            return Err(bad("--tenant (TENANT_ID) is empty"));
        }
        for p in &args.paths {
            if std::fs::symlink_metadata(p).is_err() {
                return Err(bad(format!("PATH {} does not exist", p.display())));
            }
        }

        let (embed, sink, local_window) =
            embed_and_sink(args.embed, args.sink, &env, Namespace::Chunks)?;
        // Two thirds of the window: chunks are counted in --tokenizer tokens,
        // and the model's own tokenizer usually needs more for the same text.
        let tokens = args
            .chunk
            .chunk_tokens
            .unwrap_or_else(|| local_window.map_or(1200, |window| (window * 2 / 3).max(16)));
        let chunk = ChunkConfig {
            tokens,
            overlap: args.chunk.chunk_overlap.unwrap_or((tokens / 8).min(100)),
            tokenizer: args.chunk.tokenizer,
            lightrag: sink_layout(&sink).is_lightrag(),
        };
        if chunk.tokens < 16 {
            return Err(bad(format!(
                "--chunk-tokens (CHUNK_SIZE) is {}; use at least 16",
                chunk.tokens
            )));
        }
        if chunk.overlap * 2 > chunk.tokens {
            return Err(bad(format!(
                "--chunk-overlap (CHUNK_OVERLAP_SIZE) {} must be at most half of --chunk-tokens {}",
                chunk.overlap, chunk.tokens
            )));
        }

        if embed.max_request_tokens < chunk.tokens {
            return Err(bad(format!(
                "--max-request-tokens {} is below --chunk-tokens {}: no chunk would fit in a request",
                embed.max_request_tokens, chunk.tokens
            )));
        }
        if let Some(tpm) = embed.tpm
            && (tpm as usize) < chunk.tokens
        {
            return Err(bad(format!(
                "--tpm {tpm} is below --chunk-tokens {}: a single chunk would exceed a minute's allowance",
                chunk.tokens
            )));
        }
        let (model, dim) = (embed.model.clone(), embed.dim);
        if args.source.max_file_mb == 0 || args.source.max_file_mb > 4095 {
            return Err(bad("--max-file-mb must be from 1 to 4095"));
        }
        let extract_timeout = extract_timeout(args.source.extract_timeout)?;
        let source_prefix = match args
            .source
            .source_prefix
            .as_deref()
            .map(|p| p.trim_matches('/'))
        {
            Some("") => return Err(bad("--source-prefix is empty")),
            Some(p) => Some(p.to_string()),
            None => None,
        };

        let state = if args.no_state {
            None
        } else {
            Some(
                args.state
                    .unwrap_or_else(|| default_state_path(&args.paths, &sink, &model, dim)),
            )
        };
        let only_files = match &args.retry_failed {
            None => None,
            Some(path) => Some(read_dead_letters(path, &tenant)?),
        };
        Ok(Config {
            paths: args.paths,
            tenant,
            report: args.report,
            progress: args.progress,
            dead_letter: args
                .dead_letter
                .or_else(|| state.as_ref().map(|p| p.with_extension("failed.jsonl"))),
            state,
            prune: args.prune,
            source: SourceConfig {
                include: args.source.include,
                exclude: args.source.exclude,
                default_excludes: !args.source.no_default_excludes,
                json_text_field: args.source.json_text_field,
                max_file_bytes: args.source.max_file_mb * 1024 * 1024,
                source_prefix,
                only_files,
                unique_file_names: chunk.lightrag,
                whole_files: chunk.lightrag,
                extract_timeout,
            },
            chunk,
            embed,
            sink,
        })
    }
}

/// `vecload search`: a question, a tenant, the load's embedding settings
/// and store.
#[derive(Debug, Clone)]
pub struct SearchConfig {
    pub query: String,
    pub tenant: String,
    pub k: usize,
    pub json: bool,
    pub embed: EmbedConfig,
    pub sink: SinkConfig,
}

impl SearchConfig {
    pub fn from_args(
        args: SearchArgs,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<SearchConfig, ConfigError> {
        let tenant = args.tenant.trim().to_string();
        if tenant.is_empty() {
            return Err(bad("--tenant (TENANT_ID) is empty"));
        }
        if args.query.trim().is_empty() {
            return Err(bad("the search QUERY is empty"));
        }
        if args.k == 0 || args.k > 1000 {
            return Err(bad("-k must be from 1 to 1000"));
        }
        let (embed, sink, _) = embed_and_sink(args.embed, args.sink, &env, Namespace::Chunks)?;
        Ok(SearchConfig {
            query: args.query,
            tenant,
            k: args.k,
            json: args.json,
            embed,
            sink,
        })
    }
}

/// The embedding settings and the vector store, checked: what `load` and
/// `search` share. Also the local model's window, when there is one.
pub(crate) fn embed_and_sink(
    e: EmbedArgs,
    sink_args: SinkArgs,
    env: &impl Fn(&str) -> Option<String>,
    namespace: Namespace,
) -> Result<(EmbedConfig, SinkConfig, Option<usize>), ConfigError> {
    let provider = Provider::parse(&e.embed_provider)?;
    // The local model's shape is known before anything runs: its
    // dimension, and a chunk size that fits its window.
    let local_shape = match (provider, &e.embed_model_dir) {
        (Provider::Local, Some(dir)) => {
            Some(crate::embed::local::model_shape(dir).map_err(|err| bad(format!("{err:#}")))?)
        }
        (Provider::Local, None) => {
            return Err(bad(
                "--embed-model-dir (EMBEDDING_MODEL_DIR) is required for --embed-provider local",
            ));
        }
        _ => None,
    };
    let dim = match (local_shape, e.embed_dim) {
        (Some((model_dim, _)), Some(d)) if d != model_dim => {
            return Err(bad(format!(
                "--embed-dim (EMBEDDING_DIM) is {d} but the model in --embed-model-dir returns {model_dim} dimensions"
            )));
        }
        (Some((model_dim, _)), _) => model_dim,
        (None, d) => d.ok_or_else(|| {
            bad("--embed-dim (EMBEDDING_DIM) is required: the vector length the model returns")
        })?,
    };
    if dim == 0 {
        return Err(bad("--embed-dim (EMBEDDING_DIM) is 0"));
    }

    let layout = match sink_args.layout {
        crate::cli::LayoutName::Vecload => Layout::Vecload,
        crate::cli::LayoutName::Lightrag => Layout::Lightrag(namespace),
    };
    if layout.is_lightrag() && sink_args.distance != Distance::Cosine {
        return Err(bad(
            "--layout lightrag stores cosine vectors (LightRAG queries by cosine); drop --distance",
        ));
    }
    // LightRAG names its tables and collections after the model.
    let lightrag_suffix = crate::layout::suffix(e.embed_model.as_deref().unwrap_or(""), dim);
    let sink = sink_config(sink_args, dim, env, layout, lightrag_suffix.as_deref())?;

    let urls = if provider == Provider::Local {
        Vec::new()
    } else {
        embed_urls(&e.embed_url)?
    };
    let model = match (provider, &e.embed_model_dir) {
        (Provider::Local, Some(dir)) => format!("local:{}", dir.display()),
        _ => e.embed_model.clone().unwrap_or_default(),
    };
    // TEI serves one model and takes no name.
    if model.trim().is_empty() && provider != Provider::Tei {
        return Err(bad("--embed-model (EMBEDDING_MODEL) is required"));
    }
    let batch_size = e.batch_size.unwrap_or(match provider {
        Provider::OpenAi => 64,
        _ => 32,
    });
    let per_server = match provider {
        Provider::OpenAi => 8,
        Provider::Tei => 4 * urls.len(),
        Provider::Ollama => urls.len(),
        // Two batches at once: one's single-threaded steps (softmax, layer
        // norm, GELU) overlap the other's matrix products; measured 1.1-1.3x
        // one at a time on 2 cores (BENCHMARKS.md).
        Provider::Local => 2,
    };
    let concurrency = e.concurrency.unwrap_or(per_server);
    if batch_size == 0 || batch_size > MAX_BATCH_INPUTS {
        return Err(bad(format!(
            "--batch-size (EMBEDDING_BATCH_NUM) is {batch_size}; use 1 to {MAX_BATCH_INPUTS}"
        )));
    }
    if concurrency == 0 {
        return Err(bad(
            "--concurrency (EMBEDDING_FUNC_MAX_ASYNC) must be at least 1",
        ));
    }
    if e.request_timeout == 0 {
        return Err(bad("--request-timeout must be at least 1 second"));
    }
    let api_key = e
        .embed_api_key
        .or_else(|| env("OPENAI_API_KEY"))
        .filter(|k| !k.is_empty())
        .map(Secret::new);

    let embed = EmbedConfig {
        provider,
        urls,
        model_dir: e.embed_model_dir,
        truncate: e.embed_truncate,
        model,
        dim,
        api_key,
        send_dimensions: e.send_dimensions,
        batch_size,
        max_request_tokens: e.max_request_tokens,
        concurrency,
        rpm: e.rpm,
        tpm: e.tpm,
        request_timeout: Duration::from_secs(e.request_timeout),
        max_retries: e.max_retries,
    };
    Ok((embed, sink, local_shape.map(|(_, window)| window)))
}

/// The embedding servers' base URLs, checked, without trailing slashes.
fn embed_urls(given: &[String]) -> Result<Vec<String>, ConfigError> {
    let urls: Vec<String> = given
        .iter()
        .map(|u| u.trim().trim_end_matches('/').to_string())
        .filter(|u| !u.is_empty())
        .collect();
    if urls.is_empty() {
        return Err(bad(
            "--embed-url (EMBEDDING_BINDING_HOST) is required, e.g. https://api.openai.com/v1",
        ));
    }
    for url in &urls {
        let parsed = url::Url::parse(url).map_err(|err| {
            bad(format!(
                "--embed-url (EMBEDDING_BINDING_HOST) is not a URL: {err}"
            ))
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(bad(
                "--embed-url (EMBEDDING_BINDING_HOST) must be http:// or https://",
            ));
        }
    }
    Ok(urls)
}

/// The files named in a dead-letter file, for this tenant.
fn read_dead_letters(
    path: &std::path::Path,
    tenant: &str,
) -> Result<std::collections::HashSet<String>, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| bad(format!("--retry-failed {}: {e}", path.display())))?;
    let mut files = std::collections::HashSet::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let d: crate::report::DeadChunk = serde_json::from_str(line).map_err(|e| {
            bad(format!(
                "--retry-failed {} line {}: {e}",
                path.display(),
                i + 1
            ))
        })?;
        if d.tenant == tenant {
            files.insert(d.file);
        }
    }
    if files.is_empty() {
        return Err(bad(format!(
            "--retry-failed {} lists no chunk of tenant {tenant:?}",
            path.display()
        )));
    }
    Ok(files)
}

/// `.vecload/<target>.redb` in the first PATH (its folder for a file): one
/// state per sink target, table, model and dimension, so a new model or
/// table starts from nothing while reruns of the same load resume.
fn default_state_path(paths: &[PathBuf], sink: &SinkConfig, model: &str, dim: usize) -> PathBuf {
    use sha2::{Digest, Sha256};
    let first = paths.first().cloned().unwrap_or_default();
    let base = if first.is_dir() {
        first
    } else {
        first.parent().map(PathBuf::from).unwrap_or_default()
    };
    let (kind, target, name) = match sink {
        SinkConfig::Pgvector(pg) => {
            let where_ = pg.target.describe();
            let where_ = where_.split(" (sslmode").next().unwrap_or(where_);
            (
                "pgvector",
                format!("{where_}|{}", pg.table),
                pg.table.replace('.', "_"),
            )
        }
        SinkConfig::Qdrant(q) => (
            "qdrant",
            format!("{}|{}", q.target.grpc_url, q.collection),
            q.collection.replace(
                |c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_',
                "_",
            ),
        ),
    };
    let id = Sha256::digest(format!("{kind}|{target}|{model}|{dim}").as_bytes());
    base.join(".vecload")
        .join(format!("{kind}-{name}-{}.redb", &hex::encode(id)[..12]))
}

fn sink_config(
    s: crate::cli::SinkArgs,
    dim: usize,
    env: &impl Fn(&str) -> Option<String>,
    layout: Layout,
    lightrag_suffix: Option<&str>,
) -> Result<SinkConfig, ConfigError> {
    match s.sink.to_ascii_lowercase().as_str() {
        "pgvector" | "pgvectorstorage" | "postgres" | "postgresql" => {}
        "qdrant" | "qdrantstorage" | "qdrantvectordbstorage" => {
            let name = match (&s.collection, layout) {
                (Some(c), _) => c.clone(),
                (None, Layout::Lightrag(ns)) => {
                    crate::layout::qdrant_collection(ns, lightrag_suffix)
                }
                (None, Layout::Vecload) => DEFAULT_NAME.into(),
            };
            return qdrant_config(s, dim, name, layout);
        }
        other => {
            return Err(bad(format!(
                "--sink (VECTOR_STORAGE) {other:?} is not known; use pgvector or qdrant"
            )));
        }
    }
    check_pg_dimension(dim, s.pg_type, s.index)?;
    let (write_batch, write_concurrency) = writes(&s, 500, 2)?;
    let table = match (&s.table, layout) {
        (Some(t), _) => t.clone(),
        (None, Layout::Lightrag(ns)) => crate::layout::pg_table(ns, lightrag_suffix),
        (None, Layout::Vecload) => DEFAULT_NAME.into(),
    };
    let table = crate::sink::pgvector::schema::validate_table_name(&table)
        .map_err(|m| bad(format!("--table {table:?}: {m}")))?;
    let target = PgTarget::from_settings(
        s.pg_url.or_else(|| env("DATABASE_URL")),
        s.pg_host,
        s.pg_port,
        s.pg_database,
        s.pg_user,
        s.pg_password.map(Secret::new),
        s.pg_sslmode.or_else(|| env("POSTGRES_SSL_MODE")),
        s.pg_sslrootcert
            .or_else(|| env("POSTGRES_SSL_ROOT_CERT").map(PathBuf::from)),
    )
    .map_err(bad)?;
    Ok(SinkConfig::Pgvector(PgConfig {
        target,
        table,
        layout,
        pg_type: s.pg_type,
        index: s.index,
        distance: s.distance,
        index_memory: s.index_memory,
        write_batch,
        write_concurrency,
    }))
}

/// Qdrant takes vectors up to 65,536 dimensions.
const QDRANT_MAX_DIM: usize = 65_536;

pub fn sink_layout(sink: &SinkConfig) -> Layout {
    match sink {
        SinkConfig::Pgvector(pg) => pg.layout,
        SinkConfig::Qdrant(q) => q.layout,
    }
}

/// The table or collection vecload writes when none is named.
const DEFAULT_NAME: &str = "vecload_chunks";

fn qdrant_config(
    s: crate::cli::SinkArgs,
    dim: usize,
    collection: String,
    layout: Layout,
) -> Result<SinkConfig, ConfigError> {
    if dim > QDRANT_MAX_DIM {
        return Err(bad(format!(
            "--embed-dim {dim} is over Qdrant's limit of {QDRANT_MAX_DIM} dimensions"
        )));
    }
    let (write_batch, write_concurrency) = writes(&s, 256, 4)?;
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
    if s.shard_number == Some(0) || s.replication_factor == Some(0) {
        return Err(bad(
            "--shard-number and --replication-factor must be at least 1",
        ));
    }
    if s.qdrant_timeout == 0 {
        return Err(bad("--qdrant-timeout must be at least 1 second"));
    }
    let target = QdrantTarget::from_settings(
        s.qdrant_url,
        s.qdrant_grpc_url,
        s.qdrant_api_key.map(Secret::new),
        Duration::from_secs(s.qdrant_timeout),
    )
    .map_err(bad)?;
    Ok(SinkConfig::Qdrant(QdrantConfig {
        target,
        collection: name.to_string(),
        layout,
        distance: s.distance,
        on_disk: s.on_disk,
        keep_indexing: s.keep_indexing,
        shard_number: s.shard_number,
        replication_factor: s.replication_factor,
        write_batch,
        write_concurrency,
    }))
}

/// --write-batch / --write-concurrency, with the sink's defaults.
fn writes(
    s: &crate::cli::SinkArgs,
    batch: usize,
    concurrency: usize,
) -> Result<(usize, usize), ConfigError> {
    let (b, c) = (
        s.write_batch.unwrap_or(batch),
        s.write_concurrency.unwrap_or(concurrency),
    );
    if b == 0 || c == 0 {
        return Err(bad(
            "--write-batch and --write-concurrency must be at least 1",
        ));
    }
    Ok((b, c))
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

/// `--extract-timeout`: seconds, more than 0.
pub fn extract_timeout(secs: f64) -> Result<std::time::Duration, ConfigError> {
    if !(secs.is_finite() && secs > 0.0 && secs <= 86_400.0) {
        return Err(ConfigError(format!(
            "--extract-timeout must be a number of seconds from 0 to 86400 (not {secs})"
        )));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
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

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("sk-very-secret".into());
        assert_eq!(format!("{s:?}"), "<redacted>");
    }
}
