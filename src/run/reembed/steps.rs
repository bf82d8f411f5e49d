//! A re-embedding's part of the run lifecycle (`run/lifecycle.rs`): the
//! source and endpoint opened, the batch phase, the pages read and driven,
//! then `--prune` and verification before the lifecycle's switch.

use std::sync::Arc;
use std::time::Instant;

use super::*;
use crate::run::lifecycle::{Outcome, Steps};

/// A re-embedding's part of the run's lifecycle.
pub(super) struct ReembedSteps {
    cfg: ReembedJob,
    source: Option<Box<dyn RowReader>>,
    embedder: Option<Arc<dyn crate::embed::Embedder>>,
    ledger: Option<Arc<Ledger>>,
    /// `--batch-api`: what the batch phase did, and the state it recorded in.
    batched: Option<(crate::report::BatchSummary, crate::state::State)>,
    claim: Option<crate::run::shards::Claim>,
    /// What the reading task gives back: the source and what it saw.
    read: Option<(Box<dyn RowReader>, Seen)>,
    report: Option<ReembedReport>,
}

impl ReembedSteps {
    pub(super) fn new(cfg: ReembedJob) -> ReembedSteps {
        ReembedSteps {
            cfg,
            source: None,
            embedder: None,
            ledger: None,
            batched: None,
            claim: None,
            read: None,
            report: None,
        }
    }

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

    fn quality(&self) -> Option<crate::run::quality::QualitySettings> {
        Some(self.cfg.quality.clone())
    }

    fn wanted_space(&self) -> crate::run::space::Wanted {
        crate::run::space::wanted(
            &self.cfg.embed,
            self.cfg.target.as_ref(),
            self.embedder.clone(),
            self.cfg.space_policy,
        )
    }

    async fn setup(
        &mut self,
        sink: &Arc<dyn Sink>,
        stats: &Arc<Stats>,
        started: Instant,
    ) -> Result<Option<ReembedReport>, SetupError> {
        if let Some(s) = self.cfg.shard {
            crate::run::shards::check_shard_count(sink.as_ref(), s).await?;
        }
        if self.cfg.prepare_only {
            crate::run::shards::prepare_for_workers(sink.as_ref(), self.cfg.step_shards).await?;
            let mut report = self.report_now(stats, sink.as_ref());
            report.step = Some("prepare");
            report.elapsed_seconds = started.elapsed().as_secs_f64();
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
        self.cfg.embed.batch_results = Some(crate::run::batches::results_path(path));
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
            self.claim = Some(crate::run::shards::Claim::start(sink.clone(), &tenant, s).await);
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
            crate::run::shards::record_shard_count(sink.as_ref(), None).await;
        }
        // Written: the batches' records and results go.
        if let Some((_, state)) = &self.batched
            && outcome.clean()
            && let Err(e) =
                crate::run::batches::forget(&self.cfg.embed, batch_tenant(&self.cfg), state)
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
