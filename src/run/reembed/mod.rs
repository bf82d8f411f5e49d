//! `vecload reembed`: every text of an existing store embedded again with a
//! new model into a new table or collection, then verified, then (with
//! `--switch`) made the data the RAG API reads, in one atomic step.
//!
//!   source pages ─► embed (as load) ─► sink (as load) ─► verify ─► switch
//!
//! The source is only read; ids, tenant, document, source path and chunk
//! index are carried over, and the text is never re-chunked. The target is
//! the record of what is done: each page asks it which rows it already holds
//! with the same content, so a killed run resumes without paying for a
//! vector twice, and a rerun after the source changed embeds only the
//! changed rows.

mod steps;
pub(super) mod verify;

use steps::ReembedSteps;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use rayon::prelude::*;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Driver, SetupError};
use crate::chunk::Tokenizer;
use crate::embed::settings::EmbedSettings;
use crate::records::{Chunk, DocMeta, RowReader, StoredRow as Row};
use crate::report::reembed::ReembedReport;
use crate::report::{Fatal, Gauges, Stats};
use crate::settings::{ProgressMode, TokenizerName};
use crate::source::from::FromSpec;
use crate::state::Ledger;
use crate::store::{Sink, Target};
use verify::Seen;

/// A re-embedding, as its flags describe it, validated.
#[derive(Debug, Clone)]
pub struct ReembedJob {
    pub source: FromSpec,
    /// None: every tenant of the source.
    pub tenant: Option<String>,
    pub switch: Option<String>,
    pub prune: bool,
    pub page_size: usize,
    pub report: Option<crate::report::output::ReportTo>,
    pub progress: ProgressMode,
    pub embed: EmbedSettings,
    pub target: Arc<dyn Target>,
    /// This worker's shard: only rows whose tenant and source fall in it;
    /// no bulk mode, index, verification, prune or switch.
    pub shard: Option<crate::shard::Shard>,
    /// `--step prepare`: create the target and its bulk settings, nothing else.
    pub prepare_only: bool,
    /// `--shards N` of the prepare step, recorded in the target.
    pub step_shards: Option<u32>,
    /// `--batch-api`: embed through the provider's batch API first,
    /// recording its batches in `batch_state`.
    pub batch: Option<crate::embed::batch_api::BatchSettings>,
    pub batch_state: Option<std::path::PathBuf>,
    /// `--assume-space` / `--probe-space`.
    pub space_policy: crate::run::space::Policy,
    /// The recall measure before a switch (`--min-recall` gates it).
    pub quality: crate::run::quality::QualitySettings,
}

/// The run reads every tenant of a multi-tenant store, so a tenant of the
/// target that the source lacks is stale.
fn reads_all_tenants(cfg: &ReembedJob) -> bool {
    cfg.tenant.is_none() && cfg.source.has_tenants()
}

/// The tenant of a one-workspace chunk store: --tenant, or for LightRAG's
/// unnamed workspace what LightRAG itself stores it as ("_" in Qdrant,
/// "default" in PostgreSQL).
fn single_workspace_tenant(cfg: &ReembedJob) -> String {
    cfg.tenant
        .clone()
        .unwrap_or_else(|| cfg.target.lightrag_default_workspace().to_string())
}

pub async fn run(cfg: ReembedJob, progress: ProgressMode) -> Result<ReembedReport, SetupError> {
    let steps = ReembedSteps::new(cfg);
    super::lifecycle::run(steps, progress).await
}

/// Whose batches a re-embedding's are: its --tenant, or "" for all.
fn batch_tenant(cfg: &ReembedJob) -> &str {
    cfg.tenant.as_deref().unwrap_or("")
}

/// The batch phase of `reembed --batch-api`: the source read once more,
/// page by page as the run reads it, asking the target what it holds.
async fn batches(
    cfg: &ReembedJob,
    settings: &crate::embed::batch_api::BatchSettings,
    state: &crate::state::State,
    sink: Arc<dyn Sink>,
) -> Result<crate::report::BatchSummary, SetupError> {
    let feed =
        |tx: mpsc::Sender<Chunk>| -> futures::future::BoxFuture<'static, Result<(), String>> {
            let (cfg, sink) = (cfg.clone(), sink.clone());
            Box::pin(async move {
                let source = cfg
                    .source
                    .open(
                        cfg.tenant.clone(),
                        single_workspace_tenant(&cfg),
                        cfg.page_size,
                    )
                    .await
                    .map_err(|e| format!("{e:#}"))?;
                let (fatal, cancel) = (Fatal::default(), CancellationToken::new());
                // Its counts are not the run's: the run counts again.
                let scratch = Arc::new(Stats::default());
                read(
                    source,
                    sink,
                    scratch,
                    cancel,
                    fatal.clone(),
                    tx,
                    cfg.target.layout().is_lightrag(),
                    cfg.shard,
                )
                .await;
                fatal.get().map_or(Ok(()), Err)
            })
        };
    let nothing = || super::batches::nothing();
    let no_s3 = crate::source::settings::S3Settings::default();
    super::batches::embed_in_batches(
        super::batches::BatchRun {
            embed: &cfg.embed,
            tenant: batch_tenant(cfg),
            s3: None,
            s3_settings: &no_s3,
            state,
            feed: &feed,
            on_recorded: &nothing,
        },
        settings,
    )
    .await
}

/// Reads the source page by page; queues the rows the target does not
/// already hold with the same text.
#[allow(clippy::too_many_arguments)]
async fn read(
    mut source: Box<dyn RowReader>,
    sink: Arc<dyn Sink>,
    stats: Arc<Stats>,
    cancel: CancellationToken,
    fatal: Fatal,
    tx: mpsc::Sender<Chunk>,
    target_lightrag: bool,
    shard: Option<crate::shard::Shard>,
) -> (Box<dyn RowReader>, Seen) {
    let tok = Tokenizer::get(TokenizerName::O200kBase);
    let mut seen = Seen::default();
    let mut tenants: HashMap<String, Arc<str>> = HashMap::new();
    loop {
        if cancel.is_cancelled() {
            break;
        }
        let page = match source.next_page().await {
            Ok(Some(page)) => page,
            Ok(None) => break,
            Err(e) => {
                fatal.set(format!("reading {}: {e:#}", source.describe()), &cancel);
                break;
            }
        };
        let mut by_tenant: BTreeMap<String, Vec<Row>> = BTreeMap::new();
        for mut row in page {
            // The same bucket the row is written with (`to_chunk`'s file).
            if let Some(s) = shard
                && !s.owns(&row.tenant, &row.source)
            {
                Stats::add(&stats.files_other_shards, 1);
                continue;
            }
            if row.lightrag_id && !target_lightrag {
                // vecload's layout needs ids Qdrant takes: LightRAG's own
                // point id for this workspace is one.
                row.id = crate::layout::qdrant_point_id(&row.tenant, &row.id);
            }
            by_tenant.entry(row.tenant.clone()).or_default().push(row);
        }
        for (tenant, rows) in by_tenant {
            let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
            seen.add(&tenant, &ids);
            let held = match sink.existing(&tenant, &ids).await {
                Ok(h) => h,
                Err(e) => {
                    fatal.set(format!("asking the target what it holds: {e:#}"), &cancel);
                    return (source, seen);
                }
            };
            let t = tenants
                .entry(tenant.clone())
                .or_insert_with(|| Arc::from(tenant.as_str()))
                .clone();
            let total = rows.len() as u64;
            // Hashing and counting tokens is the CPU part: spread it over
            // the chunking pool, awaited without holding a tokio worker.
            let hashed = match crate::pools::chunking() {
                Ok(pool) => {
                    let t = t.clone();
                    crate::pools::run(pool, move || {
                        rows.into_par_iter()
                            .filter_map(|r| {
                                let hash = crate::records::content_hash(&r.content);
                                if held.get(&r.id) == Some(&hash) {
                                    return None;
                                }
                                Some(to_chunk(r, &t, hash, tok))
                            })
                            .collect::<Vec<Chunk>>()
                    })
                    .await
                    .map_err(|e| anyhow::anyhow!("hashing the source rows: {e}"))
                }
                Err(e) => Err(e),
            };
            let chunks = match hashed {
                Ok(c) => c,
                Err(e) => {
                    fatal.set(format!("{e:#}"), &cancel);
                    return (source, seen);
                }
            };
            Stats::add(&stats.chunks, total);
            Stats::add(&stats.chunks_unchanged, total - chunks.len() as u64);
            for c in chunks {
                Gauges::add(&stats.gauges.chunks_queued, 1);
                if tx.send(c).await.is_err() {
                    Gauges::add(&stats.gauges.chunks_queued, -1);
                    return (source, seen);
                }
            }
        }
    }
    stats.walk_done.store(true, Relaxed);
    (source, seen)
}

pub(super) fn to_chunk(r: Row, tenant: &Arc<str>, hash: String, tok: &Tokenizer) -> Chunk {
    let file: Arc<str> = Arc::from(r.source.as_str());
    Chunk {
        id: r.id,
        // The budget counts real tokens; LightRAG's stored count is kept.
        tokens: r.tokens.unwrap_or_else(|| tok.count(&r.content) as u32),
        doc: Arc::new(DocMeta {
            tenant: tenant.clone(),
            doc_id: r.doc_id,
            key: r.source.clone(),
            source: r.source,
            file,
            hash: String::new(),
            chunk_count: 0,
            page: r.page,
            pending: Default::default(),
        }),
        index: r.chunk_index,
        text: r.content,
        content_hash: hash,
        extra: r.extra.map(Arc::new),
    }
}
