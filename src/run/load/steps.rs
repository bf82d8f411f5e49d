//! A load's part of the run's lifecycle (`run/lifecycle.rs`): the state
//! file and its ledger, the S3 state and its checkpoints, a shard's claim,
//! the batch phase, the walk, and what a load does after its stages end
//! (state settled and closed, `--prune`, the S3 state put back, a shard's
//! report).

use std::sync::Arc;
use std::time::Instant;

use super::{Books, LoadJob, Remote, RemoteState, batch_phase, produce, remote};
use crate::report::{BatchSummary, Report, RunInfo, Stats};
use crate::run::lifecycle::{Outcome, Steps};
use crate::run::shards::{self, Claim};
use crate::run::{Driver, SetupError};
use crate::settings::ProgressMode;
use crate::source::Filter;
use crate::state::{Ledger, State};
use crate::store::{Sink, Target};

pub(super) struct LoadSteps {
    job: LoadJob,
    filter: Option<Arc<Filter>>,
    remote: Option<Remote>,
    embedder: Option<Arc<dyn crate::embed::Embedder>>,
    claim: Option<Claim>,
    state_s3: Option<Arc<RemoteState>>,
    ledger: Option<Arc<Ledger>>,
    /// The store, not the state, decides what `--prune` deletes.
    prune_in_store: bool,
    checkpoints: Option<tokio::task::JoinHandle<()>>,
    pool: Option<&'static rayon::ThreadPool>,
    buckets: Option<std::ops::Range<u32>>,
    rows_in_store: Option<u64>,
    batches: Option<BatchSummary>,
    also_running: Option<String>,
}

impl LoadSteps {
    pub(super) fn new(job: LoadJob) -> LoadSteps {
        LoadSteps {
            job,
            filter: None,
            remote: None,
            embedder: None,
            claim: None,
            state_s3: None,
            ledger: None,
            prune_in_store: false,
            checkpoints: None,
            pool: None,
            buckets: None,
            rows_in_store: None,
            batches: None,
            also_running: None,
        }
    }

    /// What the steps before the drive made (they always ran by then).
    #[allow(clippy::type_complexity)]
    fn made(
        &self,
    ) -> Option<(
        Arc<dyn crate::embed::Embedder>,
        Arc<Ledger>,
        Arc<Filter>,
        &'static rayon::ThreadPool,
    )> {
        Some((
            self.embedder.clone()?,
            self.ledger.clone()?,
            self.filter.clone()?,
            self.pool?,
        ))
    }
}

#[async_trait::async_trait]
impl Steps for LoadSteps {
    type Report = Report;

    fn target(&self) -> &dyn Target {
        self.job.target.as_ref()
    }

    fn whole_target(&self) -> bool {
        self.job.shard.is_none()
    }

    async fn open(&mut self) -> Result<(), SetupError> {
        self.filter = Some(Arc::new(Filter::new(&self.job.source)?));
        // S3 PATHs are listed once before anything is sent: a wrong
        // bucket, region or permission stops here.
        self.remote = remote(&self.job).await?;
        let (embedder, embed) = crate::embed::connect(&self.job.embed).await?;
        self.job.embed = embed;
        self.embedder = Some(embedder);
        Ok(())
    }

    fn dim(&self) -> usize {
        self.job.embed.dim
    }

    fn wanted_space(&self) -> crate::run::space::Wanted {
        crate::run::space::wanted(
            &self.job.embed,
            self.job.target.as_ref(),
            self.embedder.clone(),
            self.job.space_policy,
        )
    }

    async fn setup(
        &mut self,
        sink: &Arc<dyn Sink>,
        stats: &Arc<Stats>,
        _started: std::time::Instant,
    ) -> Result<Option<Report>, SetupError> {
        let job = &self.job;
        if let Some(s) = job.shard {
            shards::check_shard_count(sink.as_ref(), s).await?;
            self.claim = Some(Claim::start(sink.clone(), &job.tenant, s).await);
        }
        if let Some((bucket, key)) = &job.state_s3 {
            self.state_s3 = Some(Arc::new(
                RemoteState::fetch(job, self.remote.as_ref(), bucket, key).await?,
            ));
        }
        let state = match &job.state {
            Some(path) => Some(State::open(path)?),
            None => None,
        };
        if let Some(path) = &job.dead_letter {
            stats.set_dead_letter(path.clone());
        }
        // A load of this tenant killed before it ended may have recorded
        // less than the store holds: the store is then the record, for
        // what to pay for and for what --prune deletes.
        let left_open = match &state {
            Some(s) => {
                let earlier = tokio::task::block_in_place(|| {
                    s.open_run(&job.tenant, &crate::shard::run_id())
                })?;
                if let Some(e) = &earlier {
                    tracing::info!(
                        "the last load of tenant {:?} with this state ({e}) did not end cleanly: \
                         the store is read as the record of what it wrote",
                        job.tenant
                    );
                }
                earlier.is_some()
            }
            None => false,
        };
        self.prune_in_store = job.prune_in_store() || (job.prune && left_open);
        let ledger = Arc::new(
            Ledger::new(state, sink.clone(), stats.clone())
                .tenant_scoped_ids(job.target.layout().is_lightrag())
                .for_prune(job.prune)
                .track_produced(self.prune_in_store),
        );
        ledger.reconcile().await?;
        self.checkpoints = self
            .state_s3
            .as_ref()
            .map(|r| r.checkpoints(ledger.clone(), job.state_every));
        self.buckets = job.shard.map(|s| s.buckets());
        // A state kept in S3 is as old as its last upload (a killed task's
        // is older than the store): the store is read as the record anyway.
        self.rows_in_store = ledger
            .recall(
                &job.tenant,
                self.buckets.clone(),
                self.state_s3.is_none() && !left_open,
            )
            .await?;
        self.ledger = Some(ledger);
        self.pool = Some(crate::pools::chunking()?);
        Ok(None)
    }

    /// Batches run before bulk mode begins: the store serves as usual
    /// while they take their hours.
    async fn before_bulk(
        &mut self,
        sink: &Arc<dyn Sink>,
        stats: &Arc<Stats>,
        started: Instant,
    ) -> Result<Option<Report>, SetupError> {
        let (Some(settings), Some(ledger), Some(filter)) =
            (&self.job.batch, &self.ledger, &self.filter)
        else {
            return Ok(None);
        };
        let summary = batch_phase(
            &self.job,
            settings,
            filter,
            ledger,
            self.remote.as_ref(),
            &self.state_s3,
        )
        .await?;
        if summary.interrupted {
            // Nothing written: the batches stay recorded (and put back to
            // S3), and the next run picks them up.
            if let Some(c) = self.checkpoints.take() {
                c.abort();
            }
            if let Some(r) = &self.state_s3 {
                r.checkpoint_now(ledger).await;
            }
            if let Some(c) = self.claim.take() {
                c.release().await;
            }
            let base = self.run_info(sink.as_ref(), Some(ledger));
            let mut report = Report::build(
                stats,
                RunInfo {
                    interrupted: true,
                    elapsed_seconds: started.elapsed().as_secs_f64(),
                    ..base
                },
            );
            report.batches = Some(summary);
            return Ok(Some(report));
        }
        self.job.embed.batch_results = ledger
            .state()
            .map(|s| crate::run::batches::results_path(s.path()));
        self.batches = Some(summary);
        Ok(None)
    }

    fn start_driver(
        &self,
        progress: ProgressMode,
        stats: Arc<Stats>,
        _sink: &dyn Sink,
    ) -> Result<Driver, SetupError> {
        Driver::start(progress, &self.job.embed, stats)
    }

    async fn drive(&mut self, driver: &mut Driver, sink: &Arc<dyn Sink>) {
        let Some((embedder, ledger, filter, pool)) = self.made() else {
            driver.fail("internal error: the load was driven before it was set up".into());
            return;
        };
        let job = &self.job;
        tracing::info!(
            "loading tenant {:?}{} into {}; embedding with {}",
            job.tenant,
            job.shard
                .map(|s| format!(" (shard {s}: buckets {:?})", s.buckets()))
                .unwrap_or_default(),
            sink.describe(),
            embedder.describe()
        );
        let (chunk_tx, stages) =
            driver.stages(embedder.clone(), &job.embed, sink.clone(), ledger.clone());
        let producer = {
            let (job, stats, cancel) = (job.clone(), driver.stats.clone(), driver.cancel.clone());
            let (fatal, handle) = (driver.fatal.clone(), tokio::runtime::Handle::current());
            let remote = self.remote.take();
            std::thread::Builder::new()
                .name("vecload-walk".into())
                .spawn(move || {
                    let books = Books {
                        ledger: &ledger,
                        fatal: &fatal,
                        handle: &handle,
                    };
                    produce(
                        pool,
                        &job,
                        &filter,
                        &stats,
                        &cancel,
                        chunk_tx,
                        Some(books),
                        remote.as_ref(),
                    )
                })
        };
        let feed = async move {
            let producer = producer.map_err(|e| format!("cannot start the walking thread: {e}"))?;
            match tokio::task::spawn_blocking(move || producer.join()).await {
                Ok(Ok(())) => Ok(()),
                _ => Err("internal error: the chunking thread panicked".to_string()),
            }
        };
        driver.drive(stages, feed).await;
    }

    /// The state settled and closed, the batches forgotten, `--prune`:
    /// all before the finish builds the index.
    async fn after_drive(&mut self, driver: &mut Driver, _sink: &Arc<dyn Sink>) {
        if let Some(c) = self.checkpoints.take() {
            c.abort();
            // An abort lands at the task's next await; a PUT under way may
            // still finish, and it must not land after the final one.
            let _ = c.await;
        }
        let Some(ledger) = self.ledger.clone() else {
            return;
        };
        let job = &self.job;
        // The writers are done; what they handed the state's thread is
        // recorded before the state is synced and may say the tenant is closed.
        if let Err(e) = ledger.settle().await.and_then(|()| ledger.sync()) {
            driver.fail(format!("state file: {e:#}"));
        }
        let interrupted = driver.interrupted();
        // Only a load that ended with every write answered may say the
        // state is complete: after an interruption or an error a write may
        // have landed in the store without its acknowledgement being recorded.
        if !interrupted
            && driver.fatal.get().is_none()
            && let Err(e) = ledger.close_run(&job.tenant)
        {
            driver.fail(format!("state file: {e:#}"));
        }
        if self.batches.is_some()
            && !interrupted
            && driver.fatal.get().is_none()
            && let Some(state) = ledger.state()
            && let Err(e) = crate::run::batches::forget(&job.embed, &job.tenant, state)
        {
            driver.fail(format!("forgetting the written batches: {e:#}"));
        }
        if job.prune && !interrupted && driver.fatal.get().is_none() {
            let pruned = if !self.prune_in_store {
                ledger.prune(&job.tenant).await
            } else if let Some((reason, n)) = driver
                .stats
                .skipped_by_reason()
                .into_iter()
                .find(|(r, _)| crate::records::Skip::of_the_moment(r))
            {
                // Their rows are not produced this time, but the files are there.
                tracing::warn!(
                    "--prune skipped: {n} files could not be read this time ({reason}); \
                     their rows would have gone as if the files were deleted"
                );
                Ok(())
            } else {
                ledger
                    .prune_in_store(&job.tenant, self.buckets.clone())
                    .await
            };
            if let Err(e) = pruned {
                driver.fail(format!("--prune: {e:#}"));
            }
        }
    }

    fn index_tenant(&self) -> String {
        self.job.tenant.clone()
    }

    fn quality(&self) -> Option<crate::run::quality::QualitySettings> {
        Some(self.job.quality.clone())
    }

    /// The S3 state put back, and a shard's report left for the finish step.
    async fn after_finish(
        &mut self,
        outcome: &mut Outcome,
        sink: &Arc<dyn Sink>,
        stats: &Arc<Stats>,
    ) -> bool {
        if let (Some(remote_state), Some(ledger)) = (&self.state_s3, &self.ledger) {
            let put = match ledger.sync() {
                Ok(()) => remote_state.put().await,
                Err(e) => Err(e),
            };
            if let Err(e) = put {
                let msg = format!("--state {}: cannot put it back: {e:#}", remote_state.url());
                tracing::error!("{msg}");
                outcome.fail(msg);
            }
        }
        if let (Some(claim), Some(shard)) = (self.claim.take(), self.job.shard) {
            if outcome.clean() {
                shards::report_end(sink.as_ref(), &self.job.tenant, shard, claim.run(), stats)
                    .await;
            }
            self.also_running = claim.seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
            claim.release().await;
        }
        // A load is not verified for a switch: it writes the data readers use.
        false
    }

    fn report(self, outcome: Outcome, sink: &dyn Sink, stats: &Stats) -> Report {
        let ledger = self.ledger.as_deref();
        let base = self.run_info(sink, ledger);
        let finished = outcome.finished.as_ref();
        let mut report = Report::build(
            stats,
            RunInfo {
                tenant_rows: finished.map(|f| f.tenant_rows),
                expected_rows: ledger.and_then(|l| l.tenant_chunks(&self.job.tenant)),
                index: finished.and_then(|f| f.index.clone()),
                interrupted: outcome.interrupted,
                error: outcome.error,
                elapsed_seconds: outcome.started.elapsed().as_secs_f64(),
                ..base
            },
        );
        report.shard = self.job.shard.map(|s| s.to_string());
        report.also_running = self.also_running;
        report.rows_in_store_at_start = self.rows_in_store;
        report.batches = self.batches;
        report
    }
}

impl LoadSteps {
    /// What a load's report says of where it ran; the outcome fields empty.
    fn run_info(&self, sink: &dyn Sink, ledger: Option<&Ledger>) -> RunInfo {
        RunInfo {
            state_file: match &self.state_s3 {
                Some(r) => Some(r.url()),
                None => ledger.and_then(|l| l.state_path()),
            },
            tenant: self.job.tenant.clone(),
            sink: sink.describe(),
            embedding_endpoint: self
                .embedder
                .as_ref()
                .map(|e| e.describe())
                .unwrap_or_default(),
            embed_dim: self.job.embed.dim,
            tenant_rows: None,
            expected_rows: None,
            index: None,
            interrupted: false,
            error: None,
            elapsed_seconds: 0.0,
        }
    }
}
