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

pub(super) mod verify;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use rayon::prelude::*;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::lifecycle::{Outcome, Steps};
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
    let steps = ReembedSteps {
        cfg,
        source: None,
        embedder: None,
        ledger: None,
        batched: None,
        claim: None,
        read: None,
        report: None,
    };
    super::lifecycle::run(steps, progress).await
}

/// A re-embedding's part of the run's lifecycle.
struct ReembedSteps {
    cfg: ReembedJob,
    source: Option<Box<dyn RowReader>>,
    embedder: Option<Arc<dyn crate::embed::Embedder>>,
    ledger: Option<Arc<Ledger>>,
    /// `--batch-api`: what the batch phase did, and the state it recorded in.
    batched: Option<(crate::report::BatchSummary, crate::state::State)>,
    claim: Option<super::shards::Claim>,
    /// What the reading task gives back: the source and what it saw.
    read: Option<(Box<dyn RowReader>, Seen)>,
    report: Option<ReembedReport>,
}

impl ReembedSteps {
    fn report_now(&self, stats: &Stats, sink: &dyn Sink) -> ReembedReport {
        let endpoint = self
            .embedder
            .as_ref()
            .map(|e| e.describe())
            .unwrap_or_default();
        ReembedReport::new(
            self.cfg.source.describe(),
            self.cfg.embed.dim,
            stats,
            endpoint,
            sink.describe(),
        )
    }
}

#[async_trait::async_trait]
impl Steps for ReembedSteps {
    type Report = ReembedReport;

    fn target(&self) -> &dyn Target {
        self.cfg.target.as_ref()
    }

    fn switch(&self) -> Option<&str> {
        self.cfg.switch.as_deref()
    }

    fn whole_target(&self) -> bool {
        self.cfg.shard.is_none()
    }

    fn sole_writer(&self) -> bool {
        self.cfg.shard.is_none() && !self.cfg.prepare_only
    }

    /// Source, endpoint and target are all checked before any request is paid.
    async fn open(&mut self) -> Result<(), SetupError> {
        let cfg = &mut self.cfg;
        self.source = Some(
            cfg.source
                .open(
                    cfg.tenant.clone(),
                    single_workspace_tenant(cfg),
                    cfg.page_size,
                )
                .await?,
        );
        let (embedder, embed) = crate::embed::connect(&cfg.embed).await?;
        cfg.embed = embed;
        self.embedder = Some(embedder);
        Ok(())
    }

    fn dim(&self) -> usize {
        self.cfg.embed.dim
    }

    async fn setup(
        &mut self,
        sink: &Arc<dyn Sink>,
        stats: &Arc<Stats>,
    ) -> Result<Option<ReembedReport>, SetupError> {
        if let Some(s) = self.cfg.shard {
            super::shards::check_shard_count(sink.as_ref(), s).await?;
        }
        if self.cfg.prepare_only {
            super::shards::prepare_for_workers(sink.as_ref(), self.cfg.step_shards).await?;
            let mut report = self.report_now(stats, sink.as_ref());
            report.step = Some("prepare");
            return Ok(Some(report));
        }
        // No state file: the target is the record.
        self.ledger = Some(Arc::new(Ledger::new(None, sink.clone(), stats.clone())));
        Ok(None)
    }

    /// Batches run before bulk mode begins: the target serves as usual
    /// while they take their hours.
    async fn before_bulk(
        &mut self,
        sink: &Arc<dyn Sink>,
        stats: &Arc<Stats>,
        started: Instant,
    ) -> Result<Option<ReembedReport>, SetupError> {
        let (Some(settings), Some(path)) = (&self.cfg.batch, &self.cfg.batch_state) else {
            return Ok(None);
        };
        let state = crate::state::State::open(path)?;
        let summary = batches(&self.cfg, settings, &state, sink.clone()).await?;
        if summary.interrupted {
            let mut report = self.report_now(stats, sink.as_ref());
            report.interrupted = true;
            report.batches = Some(summary);
            report.elapsed_seconds = started.elapsed().as_secs_f64();
            return Ok(Some(report));
        }
        self.cfg.embed.batch_results = Some(super::batches::results_path(path));
        self.batched = Some((summary, state));
        Ok(None)
    }

    fn start_driver(
        &self,
        progress: ProgressMode,
        stats: Arc<Stats>,
        _sink: &dyn Sink,
    ) -> Result<Driver, SetupError> {
        Driver::start(progress, &self.cfg.embed, stats)
    }

    async fn drive(&mut self, driver: &mut Driver, sink: &Arc<dyn Sink>) {
        let cfg = &self.cfg;
        // Claimed under the tenant the rows are read for ("" for every tenant).
        if let Some(s) = cfg.shard {
            let tenant = cfg.tenant.clone().unwrap_or_default();
            self.claim = Some(super::shards::Claim::start(sink.clone(), &tenant, s).await);
        }
        let (Some(source), Some(embedder), Some(ledger)) = (
            self.source.take(),
            self.embedder.clone(),
            self.ledger.take(),
        ) else {
            driver.fail("internal error: the re-embedding was driven twice".into());
            return;
        };
        tracing::info!(
            "re-embedding {} into {}; embedding with {}",
            source.describe(),
            sink.describe(),
            embedder.describe()
        );
        let (chunk_tx, stages) = driver.stages(embedder, &cfg.embed, sink.clone(), ledger);
        let reader = tokio::spawn(read(
            source,
            sink.clone(),
            driver.stats.clone(),
            driver.cancel.clone(),
            driver.fatal.clone(),
            chunk_tx,
            cfg.target.layout().is_lightrag(),
            cfg.shard,
        ));
        self.read = driver
            .drive(stages, async move {
                reader
                    .await
                    .map_err(|e| format!("internal error: source reader: {e}"))
            })
            .await;
    }

    fn index_tenant(&self) -> String {
        self.cfg.tenant.clone().unwrap_or_default()
    }

    async fn after_finish(
        &mut self,
        outcome: &mut Outcome,
        sink: &Arc<dyn Sink>,
        stats: &Arc<Stats>,
    ) -> bool {
        let cfg = &self.cfg;
        let mut report = self.report_now(stats, sink.as_ref());
        report.index = outcome.finished.as_ref().and_then(|f| f.index.clone());
        report.interrupted = outcome.interrupted;
        report.shard = cfg.shard.map(|s| s.to_string());
        if let Some(claim) = self.claim.take() {
            claim.release().await;
        }
        let (source, seen) = match self.read.take() {
            Some((s, seen)) => (Some(s), Some(seen)),
            None => (None, None),
        };
        let complete = outcome.clean() && report.failed_chunks == 0;
        // Only after a complete read: a partial one would prune rows it did not reach.
        if complete
            && cfg.prune
            && let Some(seen) = &seen
        {
            match verify::prune(sink.as_ref(), seen, reads_all_tenants(cfg)).await {
                Ok(n) => report.pruned = n,
                Err(e) => outcome.fail(format!("--prune: {e:#}")),
            }
        }
        let complete = complete && outcome.error.is_none() && cfg.shard.is_none();
        if complete && let Some(mut source) = source {
            let all_tenants = reads_all_tenants(cfg);
            let verified = verify::verify(
                source.as_mut(),
                sink.as_ref(),
                cfg.embed.dim,
                all_tenants,
                &mut report,
            )
            .await;
            if let Err(e) = verified {
                outcome.fail(format!("verifying the target: {e:#}"));
            }
        }
        let verified = report.verified;
        self.report = Some(report);
        verified
    }

    async fn after_switch(&mut self, outcome: &mut Outcome, sink: &Arc<dyn Sink>, verified: bool) {
        // The unsharded run is a sharded re-embedding's finish: the count
        // the prepare step recorded has served.
        if verified && self.cfg.shard.is_none() && matches!(sink.shards().await, Ok(Some(_))) {
            super::shards::record_shard_count(sink.as_ref(), None).await;
        }
        // Written: the batches' records and results go.
        if let Some((_, state)) = &self.batched
            && outcome.clean()
            && let Err(e) = super::batches::forget(&self.cfg.embed, batch_tenant(&self.cfg), state)
        {
            outcome.fail(format!("forgetting the written batches: {e:#}"));
        }
    }

    fn report(mut self, outcome: Outcome, sink: &dyn Sink, stats: &Stats) -> ReembedReport {
        let mut report = match self.report.take() {
            Some(r) => r,
            None => self.report_now(stats, sink),
        };
        report.batches = self.batched.map(|(summary, _)| summary);
        report.switched = outcome.switched;
        report.error = outcome.error;
        report.elapsed_seconds = outcome.started.elapsed().as_secs_f64();
        report.vectors_per_second = report.reembedded as f64 / report.elapsed_seconds.max(1e-9);
        report
    }
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
