//! One run's life against its target, written once for `load`, `reembed`
//! and `copy`; each supplies its own steps (`Steps`) and nothing else:
//!
//! ```text
//!  already switched? ─► open (source, endpoint)
//!    ─► embedding space: the target's record against the run's (may refuse)
//!    ─► sink + prepare (a new target is created with the record)
//!    ─► embedding space of a target without a record: probed, recorded
//!    ─► setup (state, ledger, shard claims; may end the run: a prepare step)
//!    ─► before bulk (--batch-api's phase; may end the run: interrupted)
//!    ─► begin (bulk mode; undone by finish if what follows cannot start)
//!    ─► driver ─► drive ─► after drive (state, a load's prune)
//!    ─► finish (index build, bulk mode undone, count)
//!    ─► after finish (prune, verify) ─► quality (recall; --min-recall gates)
//!    ─► switch, if verified ─► after switch
//!    ─► report
//! ```
//!
//! Why here and not in each command: what every run must do at a step (a
//! check before anything is paid, a gate before readers are switched) is
//! written once, and its order cannot drift between commands.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use super::{Driver, SetupError};
use crate::report::Stats;
use crate::settings::ProgressMode;
use crate::store::{Sink, SinkSummary, Target};

/// How the run went, as the lifecycle saw it; handed to the later steps.
pub struct Outcome {
    pub started: Instant,
    /// A signal stopped the run.
    pub interrupted: bool,
    /// The run's first error (the driver's, then the steps').
    pub error: Option<String>,
    /// What the finish counted (None: it failed, see `error`).
    pub finished: Option<SinkSummary>,
    /// The switch made (`--switch`), in its own words.
    pub switched: Option<String>,
}

impl Outcome {
    /// Nothing stopped the run and nothing failed so far.
    pub fn clean(&self) -> bool {
        !self.interrupted && self.error.is_none()
    }

    /// Keeps the first error.
    pub fn fail(&mut self, msg: String) {
        self.error.get_or_insert(msg);
    }
}

/// A command's part of the lifecycle. The steps run in the order the
/// module's diagram shows; a default does nothing.
#[async_trait]
pub trait Steps: Send {
    type Report: Send;

    fn target(&self) -> &dyn Target;
    /// The name readers are switched to once the target is verified.
    fn switch(&self) -> Option<&str> {
        None
    }
    /// Whether this run takes the whole-target steps (bulk mode, the index
    /// build): every run but a worker of a sharded one.
    fn whole_target(&self) -> bool;
    /// Whether this process is the only writer of the target (a collection
    /// it makes then gets its payload indexes at the finish).
    fn sole_writer(&self) -> bool {
        self.whole_target()
    }
    /// Opens what the run reads and the endpoint; after this, `dim` is known.
    async fn open(&mut self) -> Result<(), SetupError> {
        Ok(())
    }
    /// The vectors' length the target is made for.
    fn dim(&self) -> usize;
    /// What the embedding-space check compares with the target's record
    /// (after `open`: the endpoint is connected).
    fn wanted_space(&self) -> super::space::Wanted;
    /// After the target is prepared: what the run needs before it writes.
    /// `Some(report)` ends the run here.
    async fn setup(
        &mut self,
        sink: &Arc<dyn Sink>,
        stats: &Arc<Stats>,
        started: Instant,
    ) -> Result<Option<Self::Report>, SetupError>;
    /// Before bulk mode begins (the store serves as usual meanwhile).
    /// `Some(report)` ends the run here.
    async fn before_bulk(
        &mut self,
        _sink: &Arc<dyn Sink>,
        _stats: &Arc<Stats>,
        _started: Instant,
    ) -> Result<Option<Self::Report>, SetupError> {
        Ok(None)
    }
    fn start_driver(
        &self,
        progress: ProgressMode,
        stats: Arc<Stats>,
        sink: &dyn Sink,
    ) -> Result<Driver, SetupError>;
    /// Starts the stages and the feed and drives them to their end.
    async fn drive(&mut self, driver: &mut Driver, sink: &Arc<dyn Sink>);
    /// After the stages ended, before the finish; an error goes to
    /// `driver.fail`.
    async fn after_drive(&mut self, _driver: &mut Driver, _sink: &Arc<dyn Sink>) {}
    /// Whose index the finish builds ("" for all) .
    fn index_tenant(&self) -> String;
    /// After the finish: pruning, verification. Returns whether the target
    /// is verified, so readers may be switched to it.
    async fn after_finish(
        &mut self,
        outcome: &mut Outcome,
        sink: &Arc<dyn Sink>,
        stats: &Arc<Stats>,
    ) -> bool;
    /// The quality measure before a switch (None: not measured).
    fn quality(&self) -> Option<super::quality::QualitySettings> {
        None
    }
    /// After the switch (or none).
    async fn after_switch(
        &mut self,
        _outcome: &mut Outcome,
        _sink: &Arc<dyn Sink>,
        _verified: bool,
    ) {
    }
    fn report(self, outcome: Outcome, sink: &dyn Sink, stats: &Stats) -> Self::Report;
}

/// Runs `steps` through the lifecycle.
pub async fn run<S: Steps>(mut steps: S, progress: ProgressMode) -> Result<S::Report, SetupError> {
    let started = Instant::now();
    // Nothing is read, sent or paid for a switch that was already made.
    if let Some(name) = steps.switch()
        && let Some(msg) = steps.target().already_switched(name).await?
    {
        return Err(SetupError(anyhow::anyhow!(msg)));
    }
    steps.open().await?;
    let mut sink = steps.target().sink(steps.dim());
    if steps.sole_writer() {
        sink.sole_writer();
    }
    let stats = Arc::new(Stats::default());
    // Vectors of another model are refused before anything is paid or
    // written; a new target is created with its record.
    let wanted = steps.wanted_space();
    let pending = super::space::compare(steps.target(), &wanted, sink.as_mut()).await?;
    // The target is checked before any file is read or request sent.
    sink.prepare().await?;
    // A target without a record, its layout and length now checked, is
    // probed (the requests counted in `stats`).
    let verdict = super::space::conclude(steps.target(), &wanted, pending, &stats).await?;
    *stats.space.lock().unwrap_or_else(|e| e.into_inner()) = Some(verdict);
    let sink: Arc<dyn Sink> = Arc::from(sink);
    if let Some(report) = steps.setup(&sink, &stats, started).await? {
        return Ok(report);
    }
    if let Some(report) = steps.before_bulk(&sink, &stats, started).await? {
        return Ok(report);
    }
    // A worker of a sharded run leaves bulk mode to the prepare step: one
    // worker turning it off at its end must not do it under the others.
    let tenant = steps.index_tenant();
    if steps.whole_target()
        && let Err(e) = sink.begin().await
    {
        // Undo whatever part of it took effect.
        let _ = sink.finish(&tenant, false).await;
        return Err(SetupError(e));
    }
    let mut driver = match steps.start_driver(progress, stats.clone(), sink.as_ref()) {
        Ok(d) => d,
        Err(e) => {
            let _ = sink.finish(&tenant, false).await;
            return Err(e);
        }
    };
    steps.drive(&mut driver, &sink).await;
    steps.after_drive(&mut driver, &sink).await;
    let mut outcome = Outcome {
        started,
        interrupted: driver.interrupted(),
        error: driver.fatal.get(),
        finished: None,
        switched: None,
    };
    // An interrupted run skips the index build (the rerun does it); after
    // a fatal error the index is still built over what was written. A
    // shard leaves it to the finish step, once every worker has written.
    match sink
        .finish(&tenant, !outcome.interrupted && steps.whole_target())
        .await
    {
        Ok(s) => outcome.finished = Some(s),
        Err(e) => {
            let msg = format!("finishing the target: {e:#}");
            tracing::error!("{msg}");
            outcome.fail(msg);
        }
    }
    let verified = steps.after_finish(&mut outcome, &sink, &stats).await;
    // Measured before a switch, or when asked (a load's `--quality`).
    let verified = gate(&steps, verified, sink.as_ref(), &stats, &mut outcome).await && verified;
    if verified
        && outcome.clean()
        && let Some(name) = steps.switch()
    {
        match steps.target().switch(name).await {
            Ok(done) => outcome.switched = Some(done),
            Err(e) => outcome.fail(format!("--switch: {e:#}")),
        }
    }
    steps.after_switch(&mut outcome, &sink, verified).await;
    Ok(steps.report(outcome, sink.as_ref(), &stats))
}

/// Before a switch (or when a minimum is asked): recall of the new index
/// against exact search. False refuses the switch (`--min-recall` not
/// reached, or not measurable while a minimum was asked).
async fn gate<S: Steps>(
    steps: &S,
    verified: bool,
    sink: &dyn Sink,
    stats: &Stats,
    outcome: &mut Outcome,
) -> bool {
    let Some(q) = steps.quality() else {
        return true;
    };
    if !outcome.clean() || !q.wanted(verified && steps.switch().is_some()) {
        return true;
    }
    let tenant = steps.index_tenant();
    let tenant = (!tenant.is_empty()).then_some(tenant.as_str());
    let gated = q.min_recall.is_some() || q.min_hit_ratio.is_some();
    match super::quality::measure(sink, tenant, &q).await {
        Ok(m) => {
            let short = m.passed == Some(false);
            if short {
                outcome.fail(format!(
                    "{}, so readers were not switched and the new data is kept",
                    super::quality::shortfall(&m).join("; ")
                ));
            }
            *stats.quality.lock().unwrap_or_else(|e| e.into_inner()) = Some(m);
            !short
        }
        Err(e) => {
            let msg = format!("measuring quality before the switch: {e:#}");
            if gated {
                outcome.fail(msg);
                false
            } else {
                tracing::warn!("{msg}");
                true
            }
        }
    }
}
