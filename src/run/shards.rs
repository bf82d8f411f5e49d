//! What a sharded run does beyond a plain one: the N every worker must
//! share, a claim on the worker's shard (so two copies of one shard, an
//! engine retrying a slow pod, are said), each worker's report at its end,
//! and the finish step's check of those reports against the store.

use std::sync::{Arc, Mutex};

use super::SetupError;
use crate::report::Stats;
use crate::shard::{Shard, ShardReport, WorkersCheck, now, run_id};
use crate::store::Sink;

const CLAIM_REFRESH: std::time::Duration =
    std::time::Duration::from_secs(crate::shard::CLAIM_REFRESH_SECS);

/// A worker whose N is not the N the target was prepared for would split
/// the files differently from the others: some read twice, some by no one.
pub async fn check_shard_count(sink: &dyn Sink, shard: Shard) -> Result<(), SetupError> {
    match sink.shards().await? {
        Some(n) if n != shard.count => Err(SetupError(anyhow::anyhow!(
            "shard {shard}: {} was prepared for {n} shards (--step prepare --shards {n}); every \
             worker of one run needs the same N. Run the prepare step again with --shards {} to \
             change it",
            sink.describe(),
            shard.count
        ))),
        _ => Ok(()),
    }
}

/// `--step prepare` of `load` and `reembed`: the bulk-load settings the
/// workers write under (undone by the finish), and N recorded.
pub async fn prepare_for_workers(sink: &dyn Sink, shards: Option<u32>) -> Result<(), SetupError> {
    if let Err(e) = sink.begin().await {
        // Undo whatever part of it took effect.
        let _ = sink.finish("", false).await;
        return Err(SetupError(e));
    }
    record_shard_count(sink, shards).await;
    Ok(())
}

/// What `--step prepare --shards N` records (and `finish` clears).
pub async fn record_shard_count(sink: &dyn Sink, n: Option<u32>) {
    if let Err(e) = sink.set_shards(n).await {
        tracing::warn!("{e:#}");
    }
}

/// This worker's claim on its shard, refreshed while it runs.
pub struct Claim {
    sink: Arc<dyn Sink>,
    tenant: String,
    shard: Shard,
    run: String,
    /// Who else was seen running the shard, for the report.
    pub seen: Arc<Mutex<Option<String>>>,
    refresh: tokio::task::JoinHandle<()>,
}

impl Claim {
    pub async fn start(sink: Arc<dyn Sink>, tenant: &str, shard: Shard) -> Claim {
        let run = run_id();
        let seen = Arc::new(Mutex::new(None));
        say(&seen, shard, sink.claim_shard(tenant, shard, &run).await);
        let refresh = {
            let (sink, tenant, run, seen) =
                (sink.clone(), tenant.to_string(), run.clone(), seen.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(CLAIM_REFRESH).await;
                    say(&seen, shard, sink.claim_shard(&tenant, shard, &run).await);
                }
            })
        };
        Claim {
            sink,
            tenant: tenant.to_string(),
            shard,
            run,
            seen,
            refresh,
        }
    }

    pub fn run(&self) -> &str {
        &self.run
    }

    pub async fn release(self) {
        self.refresh.abort();
        if let Err(e) = self
            .sink
            .release_shard(&self.tenant, self.shard, &self.run)
            .await
        {
            tracing::debug!("releasing shard {}: {e:#}", self.shard);
        }
    }
}

/// Warns once per other worker seen on the same shard. A claim that cannot
/// be made is no reason to stop: it only detects, the ids keep the result right.
fn say(seen: &Mutex<Option<String>>, shard: Shard, claimed: anyhow::Result<Option<String>>) {
    let other = match claimed {
        Ok(Some(o)) => o,
        Ok(None) => return,
        Err(e) => {
            tracing::debug!("claiming shard {shard}: {e:#}");
            return;
        }
    };
    let mut s = seen.lock().unwrap_or_else(|p| p.into_inner());
    if s.as_deref() != Some(other.as_str()) {
        tracing::warn!(
            "shard {shard} is also being run by {other} (an engine retrying a slow worker?). \
             Row ids are the same either way, so the result is right, but both pay for the \
             same chunks: stop one"
        );
        *s = Some(other);
    }
}

/// What a worker that ended well leaves for the finish step.
pub async fn report_end(sink: &dyn Sink, tenant: &str, shard: Shard, run: &str, stats: &Stats) {
    let failed = stats.failed_count();
    let r = ShardReport {
        shard: shard.index,
        shards: shard.count,
        rows: Stats::get(&stats.chunks).saturating_sub(failed),
        written: Stats::get(&stats.vectors_written),
        failed,
        run: run.to_string(),
        at: now(),
    };
    match sink.put_shard_report(tenant, &r).await {
        Ok(_) => {}
        Err(e) => {
            tracing::warn!("shard {shard}: cannot leave its report for the finish step: {e:#}")
        }
    }
}

/// The finish step's view of the workers: None where the target keeps no
/// reports or no worker left one (a run of workers from before reports,
/// or a finish with no sharded run before it).
pub async fn workers_check(
    sink: &dyn Sink,
    tenant: &str,
) -> Result<Option<WorkersCheck>, SetupError> {
    let Some(reports) = sink.shard_reports(tenant).await? else {
        return Ok(None);
    };
    if reports.is_empty() {
        return Ok(None);
    }
    Ok(WorkersCheck::of(&reports, sink.shards().await?))
}
