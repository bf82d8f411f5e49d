//! `vecload check`: what is wrong in one store, and `--repair`, which pays
//! only for that.
//!
//! One pass over every row (streamed page by page: memory stays flat, but
//! for an 8-byte hash per row to find duplicate ids) finds broken vectors;
//! the record of the embedding space and the index are asked of the store;
//! `--probe N` embeds N stored texts spread over the store again; PATHs
//! are planned as a load with the store as the record and `--prune`
//! (missing, changed and orphan rows). `--repair` deletes the tenant's
//! broken rows and runs that load.

pub mod lightrag;
mod render;
mod scan;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use super::load::LoadJob;
use super::plan::PlanOptions;
use crate::embed::settings::EmbedSettings;
use crate::settings::ProgressMode;
use crate::space::Recorded;
use crate::store::{IndexHealth, Target};

pub use scan::{Fault, VectorFaults};

/// `vecload check`, settled.
pub struct CheckJob {
    pub target: Arc<dyn Target>,
    pub embed: EmbedSettings,
    /// The tenant PATHs are compared for and `--repair` touches.
    pub tenant: String,
    pub probe: Option<usize>,
    /// The load PATHs describe (no state: the store is the record; --prune).
    pub against: Option<LoadJob>,
    pub repair: bool,
    pub progress: ProgressMode,
    /// `--lightrag-dir`: the workspace against its three vector stores.
    pub lightrag: Option<lightrag::Workspace>,
    /// `--quality` (and `--questions`, `--min-recall`): the index's recall
    /// and the questions' answers.
    pub quality: crate::run::quality::QualitySettings,
}

#[derive(Debug, Serialize)]
pub struct CheckReport {
    pub target: String,
    /// No problem found (or, after --repair, none left).
    pub healthy: bool,
    pub space: SpaceCheck,
    pub tenants: BTreeMap<String, u64>,
    pub rows_scanned: u64,
    pub index: Option<IndexHealth>,
    pub vectors: VectorFaults,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe: Option<ProbeCheck>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub against: Option<Against>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lightrag: Option<lightrag::Drift>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quality: Option<crate::report::quality::Quality>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repair: Option<Repair>,
    /// What is wrong, one line each.
    pub problems: Vec<String>,
    pub notes: Vec<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct SpaceCheck {
    /// The record, in words (None: the target records none).
    pub recorded: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recorded_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recorded_at: Option<String>,
    /// What the given settings make, in words.
    pub settings: String,
    /// The record and the settings are one space.
    pub matches_settings: Option<bool>,
}

#[derive(Debug, Default, Serialize)]
pub struct ProbeCheck {
    pub rows: u64,
    pub requests: u64,
    /// Rows whose stored vector is not the model's vector of their text.
    pub other_space: u64,
    pub min_cosine: f64,
}

/// The store against the documents of `tenant` (PATHs).
#[derive(Debug, Default, Serialize)]
pub struct Against {
    pub tenant: String,
    pub files_seen: u64,
    pub chunks: u64,
    /// Chunks the store lacks or holds with another text: a load embeds them.
    pub chunks_missing_or_changed: u64,
    /// Rows of changed documents whose chunks are gone.
    pub stale_rows: u64,
    /// Documents the store holds that the PATHs no longer have, and their rows.
    pub orphan_documents: u64,
    pub orphan_rows: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct Repair {
    /// Broken or foreign rows of the tenant deleted before the load.
    pub rows_deleted: u64,
    pub embed_requests: u64,
    /// Vectors the embedding cache had (computed and paid for before).
    pub cache_hits: u64,
    pub vectors_written: u64,
    pub rows_pruned: u64,
    pub stale_rows_deleted: u64,
    /// The load's error, if it had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Runs the check (and the repair). Err: the store could not be checked.
pub async fn check(job: CheckJob) -> anyhow::Result<CheckReport> {
    let target = job.target.clone();
    let mut report = CheckReport {
        target: target.describe(),
        healthy: false,
        space: SpaceCheck::default(),
        tenants: BTreeMap::new(),
        rows_scanned: 0,
        index: None,
        vectors: VectorFaults::default(),
        probe: None,
        against: None,
        lightrag: None,
        quality: None,
        repair: None,
        problems: Vec::new(),
        notes: Vec::new(),
    };
    let want = super::space::space_of(&job.embed, target.as_ref());
    report.space.settings = want.describe();
    let recorded = match target.space().await? {
        Recorded::NoTarget => anyhow::bail!("{} does not exist", target.describe()),
        Recorded::Space(r) => Some(r),
        Recorded::Unrecorded => {
            report.notes.push(
                "the store records no embedding space (written by LightRAG, the migration \
                 script or an older vecload): --probe N compares stored vectors with the \
                 model's; the next load records it"
                    .into(),
            );
            None
        }
        Recorded::Unreadable(m) => {
            report.problems.push(m);
            None
        }
    };
    if let Some(r) = &recorded {
        report.space.recorded = Some(r.describe());
        report.space.recorded_by = Some(format!("{} ({})", r.recorded_by, r.how));
        report.space.recorded_at = Some(r.recorded_at.clone());
        let diff = r.differs(&want);
        report.space.matches_settings = Some(diff.is_none());
        if let Some(d) = diff {
            report.problems.push(format!(
                "the store records {}, not what these settings make ({}): {d}",
                r.describe(),
                want.describe()
            ));
        }
    }
    match target.index_health().await {
        Ok(h) => {
            report.problems.extend(h.problems.iter().cloned());
            report.notes.extend(h.notes.iter().cloned());
            report.index = Some(h);
        }
        Err(e) => report.problems.push(format!("the index: {e:#}")),
    }
    let dim = recorded.as_ref().map_or(job.embed.dim, |r| r.dim);
    let unit_length = recorded.as_ref().and_then(|r| r.unit_length);
    let embedder = match job.probe {
        Some(_) => Some(crate::embed::connect(&job.embed).await?.0),
        None => None,
    };
    let scanned = scan::scan(
        target.as_ref(),
        scan::Expect { dim, unit_length },
        &job.tenant,
        job.probe.unwrap_or(0),
    )
    .await?;
    report.tenants = scanned.tenants;
    report.rows_scanned = scanned.rows;
    report.vectors = scanned.faults;
    let mut to_delete = scanned.broken_of_tenant;
    if let (Some(embedder), false) = (&embedder, scanned.sample.is_empty()) {
        let (probe, foreign) = scan::probe(embedder.as_ref(), &scanned.sample, &job.tenant).await?;
        if probe.other_space > 0 {
            report.problems.push(format!(
                "{} of {} probed rows hold vectors that are not the model's vectors of their \
                 text (cosine as low as {:.4}): another model wrote them",
                probe.other_space, probe.rows, probe.min_cosine
            ));
        }
        to_delete.extend(foreign);
        report.probe = Some(probe);
    }
    report.problems.extend(report.vectors.lines());
    if let Some(load) = &job.against {
        let plan = super::plan::plan(
            Ok(load.clone()),
            PlanOptions {
                price_per_million_tokens: None,
                probe: false,
                request_seconds: 1.0,
                shards: None,
            },
        )
        .await;
        if !plan.problems.is_empty() {
            anyhow::bail!("reading the PATHs: {}", plan.problems.join("; "));
        }
        let a = Against {
            tenant: job.tenant.clone(),
            files_seen: plan.files_seen,
            chunks: plan.chunks,
            chunks_missing_or_changed: plan.chunks_to_embed,
            stale_rows: plan.stale_chunks_to_delete,
            orphan_documents: plan.docs_to_prune,
            orphan_rows: plan.chunks_to_prune,
        };
        report.problems.extend(a.lines());
        report.against = Some(a);
    }
    if let Some(w) = &job.lightrag {
        let drift = lightrag::check(w, &job.tenant).await?;
        report.problems.extend(drift.lines());
        report.lightrag = Some(drift);
    }
    if job.quality.wanted(false) {
        // The check's tenant where the store has it, else every tenant.
        let tenant = report
            .tenants
            .contains_key(&job.tenant)
            .then_some(job.tenant.as_str());
        let sink = target.sink(dim);
        let q = super::quality::measure(sink.as_ref(), tenant, &job.quality)
            .await
            .map_err(|e| e.context("measuring the index's quality"))?;
        report.problems.extend(super::quality::shortfall(&q));
        if q.min_recall.is_none() && q.recall < q.target {
            report.notes.push(format!(
                "recall@{} through the index is {:.3}, below {:.2}",
                q.k, q.recall, q.target
            ));
        }
        report.quality = Some(q);
    }
    report.healthy = report.problems.is_empty();
    if job.repair {
        let mut r = Repair::default();
        if !to_delete.is_empty() {
            let mut sink = target.sink(job.embed.dim);
            sink.prepare().await?;
            for ids in to_delete.chunks(500) {
                r.rows_deleted += sink.delete(&job.tenant, ids).await?;
            }
            tracing::info!(
                "--repair: deleted {} broken rows of tenant {:?}",
                r.rows_deleted,
                job.tenant
            );
        }
        if let Some(load) = job.against {
            r.add(load_again(load, job.progress).await?);
        }
        if let Some(w) = &job.lightrag {
            // Again: the rows just deleted or loaded changed the picture.
            let drift = lightrag::check(w, &job.tenant).await?;
            r.add(lightrag::repair(w, &drift, &job.tenant, &job.embed, job.progress).await?);
        }
        report.repair = Some(r);
    }
    Ok(report)
}

impl Repair {
    fn add(&mut self, o: Repair) {
        self.rows_deleted += o.rows_deleted;
        self.embed_requests += o.embed_requests;
        self.cache_hits += o.cache_hits;
        self.vectors_written += o.vectors_written;
        self.rows_pruned += o.rows_pruned;
        self.stale_rows_deleted += o.stale_rows_deleted;
        self.error = match (self.error.take(), o.error) {
            (Some(a), Some(b)) => Some(format!("{a}; {b}")),
            (a, b) => a.or(b),
        };
    }
}

/// The PATHs loaded with the store as the record and --prune.
async fn load_again(load: LoadJob, progress: ProgressMode) -> anyhow::Result<Repair> {
    let mut r = Repair::default();
    let done = super::load::load(load, progress).await?;
    r.embed_requests = done.embed_requests;
    r.cache_hits = done.cache_hits;
    r.vectors_written = done.vectors_written;
    r.rows_pruned = done.chunks_pruned;
    r.stale_rows_deleted = done.stale_chunks_deleted;
    r.error = done.error.clone().or_else(|| {
        (done.failed_chunks > 0).then(|| format!("{} chunks were not written", done.failed_chunks))
    });
    if done.interrupted {
        r.error.get_or_insert_with(|| "interrupted".into());
    }
    Ok(r)
}
