//! `load --step prepare|finish`: a sharded load's whole-target steps.

use std::time::Instant;

use super::*;

/// `--step prepare|finish`: what a sharded run does once for the whole
/// target, before or after its workers. Nothing is read or embedded.
pub(super) async fn whole_target_step(job: &LoadJob, step: Step) -> Result<Report, SetupError> {
    let started = Instant::now();
    let mut sink = job.target.sink(job.embed.dim);
    // The embedding space: a new target is created with its record, one of
    // another space refused. A target without a record is left to the
    // workers' probes (this step has no endpoint).
    let wanted = crate::run::space::wanted(&job.embed, job.target.as_ref(), None, job.space_policy);
    crate::run::space::compare(job.target.as_ref(), &wanted, sink.as_mut()).await?;
    // Creates the table or collection and its indexes, or checks them.
    sink.prepare().await?;
    let (mut tenant_rows, mut index, mut error, mut workers) = (None, None, None, None);
    match step {
        Step::Prepare => {
            shards::prepare_for_workers(sink.as_ref(), job.step_shards).await?;
            // Reports of an earlier run must not stand in for this run's workers.
            sink.clear_shard_reports(&job.tenant).await?;
            tenant_rows = Some(sink.count(&job.tenant).await?);
        }
        Step::Finish => {
            let check = shards::workers_check(sink.as_ref(), &job.tenant).await?;
            if let Some(refusal) = check.as_ref().and_then(|c| c.refusal()) {
                // Nothing is finished: bulk mode stays on for the reruns,
                // and this step can simply be run again after them.
                error = Some(refusal);
            } else {
                // Bulk mode was turned on by the prepare step, in another process.
                sink.adopt();
                match sink.finish(&job.tenant, true).await {
                    Ok(s) => {
                        tenant_rows = Some(s.tenant_rows);
                        index = s.index;
                    }
                    Err(e) => error = Some(format!("finishing the sink: {e:#}")),
                }
                if error.is_none() {
                    shards::record_shard_count(sink.as_ref(), None).await;
                    if check.is_some()
                        && let Err(e) = sink.clear_shard_reports(&job.tenant).await
                    {
                        tracing::warn!("{e:#}");
                    }
                }
            }
            workers = check;
        }
    }
    tracing::info!(
        "--step {}: {} ready; tenant {:?} has {} rows",
        step.name(),
        sink.describe(),
        job.tenant,
        tenant_rows.unwrap_or(0)
    );
    let mut report = Report::build(
        &Stats::default(),
        RunInfo {
            state_file: None,
            tenant: job.tenant.clone(),
            sink: sink.describe(),
            embedding_endpoint: String::new(),
            embed_dim: job.embed.dim,
            tenant_rows,
            expected_rows: None,
            index,
            interrupted: false,
            error,
            elapsed_seconds: started.elapsed().as_secs_f64(),
        },
    );
    report.step = Some(step.name());
    report.workers = workers;
    Ok(report)
}
