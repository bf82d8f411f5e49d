//! Waiting for the batches, and reading a finished one's output and error
//! lines into the results store, joined by request id.

use std::collections::HashMap;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use super::{Batches, collected, refused, tried, tries};
use crate::embed::batch_api::{Fallback, Job, LineOutcome, checked};
use crate::embed::cache::Cache;
use crate::run::SetupError;
use crate::state::BatchRec;

impl Batches<'_> {
    /// Polls until every live batch is over and read.
    pub(super) async fn wait(&mut self) -> Result<(), SetupError> {
        let mut last_status: HashMap<String, String> = HashMap::new();
        // Listening from now on, not only while asleep: a signal that
        // arrives during a call to the API is not lost. The run's own
        // supervisor, on its own thread: a second signal exits at once,
        // even while a call to the API hangs.
        let stop = CancellationToken::new();
        let _supervisor = crate::run::supervise::start_waiting(
            stop.clone(),
            std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
            "the batches go on at the provider; stopping the wait",
        )
        .map_err(SetupError)?;
        loop {
            let live = self.live()?;
            if live.is_empty() {
                return Ok(());
            }
            for rec in live {
                let Some(id) = rec.batch_id.clone() else {
                    continue;
                };
                let job = self.api.get(&id).await?;
                if last_status.get(&id) != Some(&job.status) {
                    tracing::info!(
                        "batch {id}: {} ({} of {} requests done, {} failed)",
                        job.status,
                        job.completed,
                        job.total.max(u64::from(rec.requests)),
                        job.failed
                    );
                    if let Some(m) = &job.message {
                        tracing::warn!("batch {id} {}: {m}", job.status);
                    }
                    last_status.insert(id.clone(), job.status.clone());
                }
                if job.over {
                    self.collect(&rec, &job).await?;
                }
            }
            if self.live()?.is_empty() {
                return Ok(());
            }
            tokio::select! {
                _ = tokio::time::sleep(self.cfg.poll) => {}
                _ = stop.cancelled() => {
                    tracing::warn!(
                        "interrupted while waiting for batches: they go on at the provider and \
                         are recorded in the state; run the same command again to pick them up"
                    );
                    self.summary.interrupted = true;
                    return Ok(());
                }
            }
        }
    }

    /// Reads a finished batch's output and error files into the results
    /// store, joined by `custom_id`.
    async fn collect(&mut self, rec: &BatchRec, job: &Job) -> Result<(), SetupError> {
        let keys = self.run.state.batch_keys(&rec.id)?;
        let dim = self.run.embed.dim;
        let mut answered = vec![false; keys.len()];
        let mut refusals = 0u64;
        let mut marks: Vec<(String, String)> = Vec::new();
        let mut put: Vec<([u8; 32], Vec<f32>)> = Vec::new();
        let results = self.results.clone();
        let api = self.api.clone();
        api.lines(job, &mut |raw| {
            let line = api.line(raw).with_context(|| format!("batch {}", job.id))?;
            let Some(i) = line
                .id
                .strip_prefix('r')
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|&i| i < keys.len())
            else {
                tracing::warn!(
                    "batch {}: a line for {:?}, which its file did not have: ignored",
                    job.id,
                    line.id
                );
                return Ok(());
            };
            let outcome = match line.outcome {
                LineOutcome::Vectors(vs) => checked(vs, keys[i].len(), dim),
                failed => failed,
            };
            match outcome {
                LineOutcome::Vectors(vs) => {
                    answered[i] = true;
                    put.extend(keys[i].iter().copied().zip(vs));
                    if put.len() >= 1024 {
                        store(&results, &mut put);
                    }
                }
                // Left undone: tried once more, or sent synchronously.
                LineOutcome::Failed(_) if line.undone => {}
                LineOutcome::Failed(why) => {
                    answered[i] = true;
                    refusals += keys[i].len() as u64;
                    tracing::warn!(
                        "batch {}: request {} refused ({why}): its {} inputs go the \
                         synchronous way",
                        job.id,
                        line.id,
                        keys[i].len()
                    );
                    marks.extend(keys[i].iter().map(|k| (refused(k), why.clone())));
                }
            }
            Ok(())
        })
        .await?;
        store(&results, &mut put);
        // Each input left undone counts one try for this submission, however
        // often it stood in its file.
        let mut left: Vec<[u8; 32]> = keys
            .iter()
            .zip(&answered)
            .filter(|(_, a)| !**a)
            .flat_map(|(r, _)| r.iter().copied())
            .collect();
        let undone = left.len() as u64;
        left.sort_unstable();
        left.dedup();
        let names: Vec<String> = left.iter().map(tried).collect();
        let before = results.marks(&names)?;
        // Undone for the last time: these go the synchronous way.
        let mut given_up = 0u64;
        for (name, mark) in names.into_iter().zip(before) {
            let (n, last) = tries(mark.as_deref());
            let n = if last == Some(rec.id.as_str()) {
                n
            } else {
                n + 1
            };
            if n >= self.most_tries() {
                given_up += 1;
            }
            marks.push((name, format!("{n} {}", rec.id)));
        }
        results.mark_all(&marks)?;
        results.sync()?;
        results.mark(&collected(&rec.id), &job.status)?;
        let inputs = keys.iter().map(|k| k.len() as u64).sum::<u64>();
        self.summary.batches += 1;
        self.summary.inputs_answered += inputs.saturating_sub(refusals + undone);
        self.summary.inputs_refused += refusals;
        self.summary.inputs_undone += given_up;
        self.retryable += (left.len() as u64).saturating_sub(given_up);
        if undone > 0 {
            tracing::warn!(
                "batch {} ended {} with {undone} inputs undone: {}",
                job.id,
                job.status,
                match self.cfg.fallback {
                    Fallback::Resubmit =>
                        "they are submitted once more (what is undone then is sent synchronously)",
                    Fallback::Sync => "they are sent synchronously (--batch-fallback sync)",
                }
            );
        }
        Ok(())
    }
}

/// Writes the gathered vectors into the results store.
fn store(results: &Cache, put: &mut Vec<([u8; 32], Vec<f32>)>) {
    let entries: Vec<([u8; 32], &[f32])> = put.iter().map(|(k, v)| (*k, v.as_slice())).collect();
    results.put(&entries);
    put.clear();
}
