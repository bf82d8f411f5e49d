//! `vecload copy`: the rows of one store, with the vectors already paid
//! for, into another (pgvector <-> Qdrant, vecload's layout or LightRAG's,
//! one workspace into another), then verified, then (with `--switch`) made
//! the data the RAG API reads.
//!
//!   source pages (with vectors) ─► [row queue] ─► sink (as load) ─► verify ─► switch
//!
//! No endpoint is involved: the embed stage is not started. As in
//! `reembed`, the target is the record: each page asks it which rows it
//! holds with the same text, so a killed copy resumes where it stopped.
//! Verification counts every tenant in both stores and compares a sample
//! of vectors with the source's: bit for bit where the target keeps what it
//! is given, within float16's rounding where it is halfvec, and as unit
//! vectors within float32's rounding where it scales them (Qdrant cosine).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use rayon::prelude::*;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

mod check;

use check::{Sample, check};

use super::lifecycle::{self, Outcome, Steps};
use super::reembed::{to_chunk, verify};
use super::{Driver, Queues, SetupError};
use crate::chunk::Tokenizer;
use crate::records::{Embedded, RowReader, StoredRow as Row};
use crate::report::reembed::ReembedReport;
use crate::report::{Fatal, Gauges, Stats};
use crate::settings::{ProgressMode, TokenizerName};
use crate::state::Ledger;
use crate::store::{Sink, Stored, Target};

/// A copy, as its flags describe it, validated.
#[derive(Debug, Clone)]
pub struct CopyJob {
    pub source_desc: String,
    /// None: every tenant of the source.
    pub tenant: Option<String>,
    /// Written as this tenant (`--to-tenant`), LightRAG's ids derived for it.
    pub to_tenant: Option<String>,
    pub switch: Option<String>,
    pub prune: bool,
    pub report: Option<crate::report::output::ReportTo>,
    pub target: Arc<dyn Target>,
    /// The source's vector length (the target's, checked).
    pub dim: usize,
    /// What the source records of its embedding space (None: nothing).
    pub source_space: Option<crate::space::Space>,
    /// `--assume-space` / `--probe-space`.
    pub space_policy: crate::run::space::Policy,
    /// The recall measure before a switch (`--min-recall` gates it).
    pub quality: crate::run::quality::QualitySettings,
}

impl CopyJob {
    fn all_tenants(&self) -> bool {
        self.tenant.is_none()
    }

    fn target_tenant(&self, source_tenant: &str) -> String {
        self.to_tenant
            .clone()
            .unwrap_or_else(|| source_tenant.to_string())
    }
}

pub async fn run(
    cfg: CopyJob,
    source: Box<dyn RowReader>,
    progress: ProgressMode,
) -> Result<ReembedReport, SetupError> {
    let steps = CopySteps {
        cfg,
        source: Some(source),
        held: Default::default(),
        ledger: None,
        read: None,
        report: None,
    };
    lifecycle::run(steps, progress).await
}

/// A copy's part of the run's lifecycle.
struct CopySteps {
    cfg: CopyJob,
    source: Option<Box<dyn RowReader>>,
    /// The tenants the target held rows of when the copy began.
    held: std::collections::BTreeSet<String>,
    ledger: Option<Arc<Ledger>>,
    /// What the reading task gives back: the source, what it saw, the sample.
    read: Option<(Box<dyn RowReader>, verify::Seen, Sample)>,
    report: Option<ReembedReport>,
}

impl CopySteps {
    fn report_now(&self, stats: &Stats, sink: &dyn Sink) -> ReembedReport {
        let mut report = ReembedReport::new(
            self.cfg.source_desc.clone(),
            self.cfg.dim,
            stats,
            "none: the source's vectors are copied".to_string(),
            sink.describe(),
        );
        report.command = "copy";
        report
    }
}

#[async_trait::async_trait]
impl Steps for CopySteps {
    type Report = ReembedReport;

    fn target(&self) -> &dyn Target {
        self.cfg.target.as_ref()
    }

    fn switch(&self) -> Option<&str> {
        self.cfg.switch.as_deref()
    }

    fn whole_target(&self) -> bool {
        true
    }

    fn dim(&self) -> usize {
        self.cfg.dim
    }

    fn quality(&self) -> Option<crate::run::quality::QualitySettings> {
        Some(self.cfg.quality.clone())
    }

    /// The source's space, as the target stores it; nothing to probe with.
    fn wanted_space(&self) -> crate::run::space::Wanted {
        crate::run::space::Wanted {
            space: self.cfg.source_space.clone().map(|mut s| {
                s.distance = self.cfg.target.distance().name().to_string();
                s
            }),
            embedder: None,
            policy: self.cfg.space_policy,
        }
    }

    async fn setup(
        &mut self,
        sink: &Arc<dyn Sink>,
        stats: &Arc<Stats>,
        _started: std::time::Instant,
    ) -> Result<Option<ReembedReport>, SetupError> {
        // Tenants the target holds nothing of need no look-up per page:
        // only this copy writes their rows (a fresh target, the common
        // case, costs the store no reads at all).
        self.held = sink
            .tenants()
            .await
            .map_err(|e| SetupError(anyhow::anyhow!("asking the target what it holds: {e:#}")))?
            .into_keys()
            .collect();
        self.ledger = Some(Arc::new(Ledger::new(None, sink.clone(), stats.clone())));
        Ok(None)
    }

    fn start_driver(
        &self,
        progress: ProgressMode,
        stats: Arc<Stats>,
        sink: &dyn Sink,
    ) -> Result<Driver, SetupError> {
        Driver::start_with(progress, Queues::copy(sink.write_concurrency()), stats)
    }

    async fn drive(&mut self, driver: &mut Driver, sink: &Arc<dyn Sink>) {
        let cfg = &self.cfg;
        if cfg.target.stores_as() == Stored::Half {
            tracing::warn!(
                "{} stores halfvec: the copied vectors are rounded to float16 (11 significant bits)",
                sink.describe()
            );
        }
        let Some((mut source, ledger)) = self.source.take().zip(self.ledger.take()) else {
            driver.fail("internal error: the copy was driven twice".into());
            return;
        };
        tracing::info!(
            "copying {} into {} ({} dimensions, no embedding requests)",
            source.describe(),
            sink.describe(),
            cfg.dim
        );
        let (row_tx, stages) = driver.copy_stages(sink.clone(), ledger);
        let feed = Feed {
            sink: sink.clone(),
            stats: driver.stats.clone(),
            cancel: driver.cancel.clone(),
            fatal: driver.fatal.clone(),
            target_lightrag: cfg.target.layout().is_lightrag(),
            to_tenant: cfg.to_tenant.clone(),
            dim: cfg.dim,
            held: std::mem::take(&mut self.held),
        };
        let reader = tokio::spawn(async move {
            let mut seen = verify::Seen::default();
            let mut sample = Sample::default();
            feed.run(source.as_mut(), row_tx, &mut seen, &mut sample)
                .await;
            (source, seen, sample)
        });
        self.read = driver
            .drive(stages, async move {
                reader
                    .await
                    .map_err(|e| format!("internal error: source reader: {e}"))
            })
            .await;
    }

    fn index_tenant(&self) -> String {
        self.cfg
            .tenant
            .as_deref()
            .map(|t| self.cfg.target_tenant(t))
            .unwrap_or_default()
    }

    async fn after_finish(
        &mut self,
        outcome: &mut Outcome,
        sink: &Arc<dyn Sink>,
        stats: &Arc<Stats>,
    ) -> bool {
        let mut report = self.report_now(stats, sink.as_ref());
        report.index = outcome.finished.as_ref().and_then(|f| f.index.clone());
        report.interrupted = outcome.interrupted;
        let complete = outcome.clean() && report.failed_chunks == 0;
        if let Some((mut source, seen, sample)) = self.read.take()
            && complete
        {
            if self.cfg.prune {
                match verify::prune(sink.as_ref(), &seen, self.cfg.all_tenants()).await {
                    Ok(n) => report.pruned = n,
                    Err(e) => outcome.fail(format!("--prune: {e:#}")),
                }
            }
            if outcome.error.is_none() {
                let kept_as = self.cfg.target.stores_as();
                let checked = check(
                    &self.cfg,
                    source.as_mut(),
                    sink.as_ref(),
                    sample,
                    kept_as,
                    &mut report,
                )
                .await;
                if let Err(e) = checked {
                    outcome.fail(format!("verifying the target: {e:#}"));
                }
            }
        }
        let verified = report.verified;
        self.report = Some(report);
        verified
    }

    fn report(mut self, outcome: Outcome, sink: &dyn Sink, stats: &Stats) -> ReembedReport {
        let mut report = match self.report.take() {
            Some(r) => r,
            None => self.report_now(stats, sink),
        };
        // Measured after the report was drawn up (after the finish).
        report.quality = stats
            .quality
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        report.switched = outcome.switched;
        report.error = outcome.error;
        report.elapsed_seconds = outcome.started.elapsed().as_secs_f64();
        report.vectors_per_second = report.reembedded as f64 / report.elapsed_seconds.max(1e-9);
        report
    }
}

/// What the reading task needs.
struct Feed {
    sink: Arc<dyn Sink>,
    stats: Arc<Stats>,
    cancel: CancellationToken,
    fatal: Fatal,
    target_lightrag: bool,
    to_tenant: Option<String>,
    dim: usize,
    /// The tenants the target held rows of when the copy began.
    held: std::collections::BTreeSet<String>,
}

impl Feed {
    /// Reads the source page by page; queues the rows the target does not
    /// already hold with the same text, with their vectors.
    async fn run(
        &self,
        source: &mut dyn RowReader,
        tx: mpsc::Sender<Vec<Embedded>>,
        seen: &mut verify::Seen,
        sample: &mut Sample,
    ) {
        let tok = Tokenizer::get(TokenizerName::O200kBase);
        let mut tenants: HashMap<String, Arc<str>> = HashMap::new();
        while !self.cancel.is_cancelled() {
            let page = match source.next_page().await {
                Ok(Some(page)) => page,
                Ok(None) => break,
                Err(e) => return self.fail(format!("reading {}: {e:#}", source.describe())),
            };
            let mut by_tenant: BTreeMap<String, Vec<Row>> = BTreeMap::new();
            for mut row in page {
                if let Some(to) = &self.to_tenant {
                    row.tenant = to.clone();
                }
                if let Err(e) = self.check_vector(&row) {
                    // The row is listed as failed and the copy goes on; the
                    // run then ends unverified (exit 1), naming it.
                    Stats::add(&self.stats.chunks, 1);
                    let t: Arc<str> = Arc::from(row.tenant.as_str());
                    let chunk = to_chunk(row, &t, String::new(), tok);
                    self.stats.fail(&[chunk], &e);
                    continue;
                }
                if row.lightrag_id && !self.target_lightrag {
                    // vecload's layout needs ids Qdrant takes: LightRAG's own
                    // point id for this workspace is one.
                    row.id = crate::layout::qdrant_point_id(&row.tenant, &row.id);
                }
                sample.offer(&row);
                by_tenant.entry(row.tenant.clone()).or_default().push(row);
            }
            for (tenant, rows) in by_tenant {
                let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
                seen.add(&tenant, &ids);
                let held = if self.held.contains(&tenant) {
                    match self.sink.existing(&tenant, &ids).await {
                        Ok(h) => h,
                        Err(e) => {
                            return self.fail(format!("asking the target what it holds: {e:#}"));
                        }
                    }
                } else {
                    HashMap::new()
                };
                let t = tenants
                    .entry(tenant.clone())
                    .or_insert_with(|| Arc::from(tenant.as_str()))
                    .clone();
                let total = rows.len() as u64;
                let lightrag = self.target_lightrag;
                // Hashing is the CPU part: on the chunking pool, awaited
                // without holding a tokio worker.
                let hashed = match crate::pools::chunking() {
                    Ok(pool) => crate::pools::run(pool, move || {
                        rows.into_par_iter()
                            .filter_map(|mut r| {
                                let hash = crate::records::content_hash(&r.content);
                                if held.get(&r.id) == Some(&hash) {
                                    return None;
                                }
                                let vector = r.vector.take().unwrap_or_default();
                                // Only LightRAG's layout stores a token
                                // count; counting is most of a copy's CPU.
                                if !lightrag {
                                    r.tokens.get_or_insert(0);
                                }
                                Some(Embedded {
                                    chunk: to_chunk(r, &t, hash, tok),
                                    vector,
                                })
                            })
                            .collect::<Vec<Embedded>>()
                    })
                    .await
                    .map_err(|e| anyhow::anyhow!("hashing the source rows: {e}")),
                    Err(e) => Err(e),
                };
                let rows = match hashed {
                    Ok(r) => r,
                    Err(e) => return self.fail(format!("{e:#}")),
                };
                Stats::add(&self.stats.chunks, total);
                Stats::add(&self.stats.chunks_unchanged, total - rows.len() as u64);
                if rows.is_empty() {
                    continue;
                }
                let n = rows.len() as i64;
                Gauges::add(&self.stats.gauges.rows_queued, n);
                if tx.send(rows).await.is_err() {
                    Gauges::add(&self.stats.gauges.rows_queued, -n);
                    return;
                }
            }
        }
        self.stats.walk_done.store(true, Relaxed);
    }

    fn fail(&self, msg: String) {
        self.fatal.set(msg, &self.cancel);
    }

    /// A vector the target would refuse, or should: missing, of another
    /// length, or not finite.
    fn check_vector(&self, row: &Row) -> Result<(), String> {
        let fix = "not copied: re-embed it (vecload reembed) or fix the source";
        match &row.vector {
            None => Err(format!("the source row has no vector; {fix}")),
            Some(v) if v.len() != self.dim => Err(format!(
                "the source row's vector has {} numbers, the others {}; {fix}",
                v.len(),
                self.dim
            )),
            Some(v) if v.iter().any(|x| !x.is_finite()) => Err(format!(
                "the source row's vector is not all finite numbers; {fix}"
            )),
            Some(_) => Ok(()),
        }
    }
}
