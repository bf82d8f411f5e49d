//! The commands and their flags. Flag groups that configure one part live
//! with it and are flattened in here (`SourceFlags`, `ChunkFlags`,
//! `EmbedFlags`, `StoreFlags` with each store's own); the flags of one
//! command alone are declared here. Nothing is validated beyond parsing:
//! `commands/` turns these into checked settings, and nothing below the
//! command layer imports this module.
//!
//! Env names follow the RAG API's own `.env` (LightRAG), so a team can point
//! vecload at the same file it deploys with.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::chunk::settings::ChunkFlags;
use crate::embed::settings::EmbedFlags;
use crate::settings::ProgressMode;
use crate::source::settings::SourceFlags;
use crate::store::StoreFlags;

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

    /// Log lines as text, or as one JSON object per line (for CloudWatch
    /// Logs Insights, Loki): errors and progress included, and the final
    /// report as one JSON line on stdout.
    #[arg(long, global = true, value_enum, env = "VECLOAD_LOG_FORMAT", default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Seconds a run may take after SIGTERM or Ctrl-C to finish the
    /// requests in flight and write what is embedded, before it exits
    /// anyway (130): under the grace the orchestrator gives (ECS
    /// `stopTimeout`, Kubernetes `terminationGracePeriodSeconds`, both 30 s
    /// unless set; Fargate Spot gives 120 s), so the exit is vecload's own.
    #[arg(
        long,
        global = true,
        env = "VECLOAD_DRAIN_TIMEOUT",
        default_value_t = 25,
        value_name = "SECONDS"
    )]
    pub drain_timeout: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Walk documents, chunk, embed and upsert the vectors into the sink.
    Load(LoadCommand),
    /// Say what `load` would do (files, chunks, tokens, requests, cost, time)
    /// and check the target, without sending a request or writing anything.
    Plan(PlanArgs),
    /// Embed a question with the load's provider and settings and print the
    /// nearest chunks of a tenant: how to check a reindex before switching
    /// traffic to it.
    Search(SearchArgs),
    /// A health report of one store: the embedding space it records, rows
    /// per tenant, vectors that are broken (wrong length, non-finite, zero),
    /// its index; with PATHs, the rows missing, changed or gone from the
    /// documents. --repair pays only for what is wrong. Exit 0 healthy, 1
    /// problems found, 2 could not check.
    Check(CheckArgs),
    /// Compute every vector of an existing store again with a new model (a
    /// new dimension too) into a new table or collection, verify it, and
    /// optionally point the name the RAG API reads at it.
    Reembed(ReembedArgs),
    /// Copy rows with the vectors already paid for from one store into
    /// another (pgvector <-> Qdrant, a new cluster, one LightRAG workspace
    /// into another), verify the copy against the source, and optionally
    /// point the name the RAG API reads at it. No embedding request is made.
    Copy(CopyArgs),
    /// List the batches `load --batch-api` submitted and has not written
    /// yet (with the load's own arguments), or cancel them with --cancel.
    Batches(BatchesArgs),
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

    /// Where the source store is, when not at the target's server.
    #[command(flatten)]
    pub from_at: crate::source::from::FromStoreFlags,

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

    /// Write the run summary as JSON: to a file, `-` for stdout, or an S3
    /// object (s3://BUCKET/KEY, written "running" at the start, so a bucket
    /// the task may not write to is found before anything is paid for).
    #[arg(long, value_name = "FILE|-|s3://BUCKET/KEY")]
    pub report: Option<String>,

    /// How to show progress: bars on a terminal, periodic log lines otherwise.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,

    #[command(flatten)]
    pub embed: EmbedFlags,

    #[command(flatten)]
    pub sink: StoreFlags,

    #[command(flatten)]
    pub shard: crate::shard::Flags,

    /// With --batch-api: where the batches submitted are recorded, so a
    /// run after a kill waits for them instead of paying again (a file,
    /// kept until the re-embedding ends well). Default: in the user's state
    /// folder, named after the source and target.
    #[arg(long, value_name = "FILE")]
    pub state: Option<std::path::PathBuf>,

    #[command(flatten)]
    pub batch: crate::embed::batch_api::BatchFlags,

    #[command(flatten)]
    pub quality: crate::run::quality::QualityFlags,

    #[command(flatten)]
    pub old: crate::run::quality::OldModelFlags,
}

#[derive(Debug, Args)]
pub struct CopyArgs {
    /// What to copy: pgvector:TABLE or qdrant:COLLECTION, a store vecload or
    /// LightRAG wrote (LightRAG's LIGHTRAG_VDB_* tables and lightrag_vdb_*
    /// collections: chunks, entities, relationships). Only read.
    #[arg(long, value_name = "SOURCE")]
    pub from: String,

    /// Where the source store is, when not at the target's server.
    #[command(flatten)]
    pub from_at: crate::source::from::FromStoreFlags,

    /// Copy only this tenant (LightRAG workspace); all tenants if unset.
    #[arg(long, visible_alias = "tenant-id")]
    pub tenant: Option<String>,

    /// Write the copied rows as this tenant (LightRAG workspace), with the
    /// ids LightRAG derives for it; needs --tenant. The source tenant is
    /// only read.
    #[arg(long, value_name = "TENANT")]
    pub to_tenant: Option<String>,

    /// The model the vectors were made with, for LightRAG's names (the
    /// model suffix); read from the source's LightRAG name when unset. A
    /// model other than the source's is refused.
    #[arg(long, env = "EMBEDDING_MODEL", value_name = "MODEL")]
    pub embed_model: Option<String>,

    /// The dimension the target expects (the RAG API's EMBEDDING_DIM); a
    /// source of another dimension is refused. Read from the source when unset.
    #[arg(long, env = "EMBEDDING_DIM", value_name = "N")]
    pub embed_dim: Option<usize>,

    /// Once the copy is complete and verified, point NAME (the Qdrant
    /// alias, or the PostgreSQL table the RAG API reads) at it atomically.
    #[arg(long, value_name = "NAME")]
    pub switch: Option<String>,

    /// Delete from the target the rows of a tenant that the source no
    /// longer has, so the target can verify. Only for a target that holds
    /// nothing else.
    #[arg(long)]
    pub prune: bool,

    /// Source rows read per page.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub page_size: usize,

    /// Write the run summary as JSON: to a file, `-` for stdout, or an S3 object.
    #[arg(long, value_name = "FILE|-|s3://BUCKET/KEY")]
    pub report: Option<String>,

    /// How to show progress: bars on a terminal, periodic log lines otherwise.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,

    #[command(flatten)]
    pub sink: StoreFlags,

    #[command(flatten)]
    pub quality: crate::run::quality::QualityFlags,
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
    pub embed: EmbedFlags,

    #[command(flatten)]
    pub sink: StoreFlags,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The store, the endpoint (for --probe and --repair) and, as PATHs,
    /// the documents the store should hold for --tenant, with the load's
    /// own flags (chunking decides the rows).
    #[command(flatten)]
    pub load: LoadArgs,

    /// Embed N stored texts again (spread over the store) and compare them
    /// with their stored vectors: rows of another model are found. Costs
    /// requests, so off by default.
    #[arg(long, value_name = "N")]
    pub probe: Option<usize>,

    /// Fix what can be fixed, paying only for it: delete --tenant's rows
    /// with broken or foreign vectors, then load the PATHs with the store
    /// as the record and --prune (what is missing or changed is embedded,
    /// what is gone deleted); with --lightrag-dir, delete the vectors of
    /// nothing and embed the chunks, entities and relations without a
    /// vector (or of an old text) from the workspace's files. Needs PATHs
    /// or --lightrag-dir.
    #[arg(long)]
    pub repair: bool,

    /// A LightRAG workspace's folder (its kv_store_text_chunks.json and
    /// graph_chunk_entity_relation.graphml): chunks, entities and relations
    /// without a vector or with one of another text, and vectors of ones
    /// gone, in the three vector stores of --layout lightrag for --tenant
    /// (the workspace).
    #[arg(long, value_name = "DIR")]
    pub lightrag_dir: Option<PathBuf>,

    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,

    /// `--quality`: the index's recall against exact search (and with
    /// `--questions`, their answers), as before a switch.
    #[command(flatten)]
    pub quality: crate::run::quality::QualityFlags,
}

#[derive(Debug, Args)]
pub struct LoadCommand {
    #[command(flatten)]
    pub load: LoadArgs,

    /// `--quality`, `--min-recall`, `--questions`: measured at the end.
    #[command(flatten)]
    pub quality: crate::run::quality::QualityFlags,
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
pub struct BatchesArgs {
    #[command(flatten)]
    pub load: LoadArgs,

    /// Cancel each batch that is not over (what it finished stays usable
    /// by the next `load --batch-api`).
    #[arg(long)]
    pub cancel: bool,

    /// Print the batches as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Files or directories to load (s3://BUCKET/PREFIX too). Stored paths
    /// are relative to the PATH given.
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,

    /// Tenant (LightRAG workspace) the vectors belong to. Other tenants' rows are never touched.
    #[arg(
        long,
        visible_alias = "tenant-id",
        env = "TENANT_ID",
        default_value = "default"
    )]
    pub tenant: String,

    /// Write the run summary as JSON: to a file, `-` for stdout, or an S3
    /// object (s3://BUCKET/KEY, written "running" at the start, so a bucket
    /// the task may not write to is found before anything is paid for).
    #[arg(long, value_name = "FILE|-|s3://BUCKET/KEY")]
    pub report: Option<String>,

    /// State file recording what the sink acknowledged (resume, incremental
    /// runs). Default: .vecload/ in the first PATH, named after the target.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,

    /// With --state s3://...: put the state back this often while the run
    /// goes, not only at its end, so a task killed after hours leaves most
    /// of what it did recorded (the store stays the record either way).
    #[arg(
        long,
        env = "VECLOAD_STATE_EVERY",
        value_name = "SECS",
        default_value_t = 300
    )]
    pub state_every: u64,

    /// Keep no state file (wins over --state). The store is then the record:
    /// rows it holds with the same text are not embedded again.
    #[arg(long)]
    pub no_state: bool,

    /// Delete from the sink the documents of this tenant that this run did
    /// not see (deleted files): those the state knows, or, without a state
    /// file and in a shard, every row the store holds (of the shard) that
    /// this run did not produce. Run it with the same PATHs and filters as
    /// the full load.
    #[arg(long)]
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
    pub source: SourceFlags,

    #[command(flatten)]
    pub chunk: ChunkFlags,

    #[command(flatten)]
    pub embed: EmbedFlags,

    #[command(flatten)]
    pub sink: StoreFlags,

    #[command(flatten)]
    pub shard: crate::shard::Flags,

    #[command(flatten)]
    pub batch: crate::embed::batch_api::BatchFlags,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// clap checks its definitions only in debug builds, at the first
    /// parse, and the suite runs a release build: what it would catch is
    /// checked here by hand too (a duplicate group or argument id, as two
    /// flattened structs of one name make, panics a debug build).
    #[test]
    fn the_command_line_is_well_formed() {
        fn check(cmd: &clap::Command) {
            let mut seen = std::collections::HashSet::new();
            for id in cmd
                .get_groups()
                .map(|g| g.get_id().to_string())
                .chain(cmd.get_arguments().map(|a| a.get_id().to_string()))
            {
                assert!(
                    seen.insert(id.clone()),
                    "{}: {id} is defined twice",
                    cmd.get_name()
                );
            }
            cmd.get_subcommands().for_each(check);
        }
        let mut cmd = super::Cli::command();
        cmd.build();
        check(&cmd);
        cmd.debug_assert();
    }
}
