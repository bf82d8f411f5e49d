//! `vecload batches [--cancel]`: what a load's state records, as the
//! provider sees it now.

use anyhow::anyhow;

use super::connect;
use crate::embed::cache::Cache;
use crate::run::SetupError;
use crate::run::load::LoadJob;
use crate::state::State;

/// One recorded batch as `vecload batches` shows it.
#[derive(Debug, serde::Serialize)]
pub struct BatchView {
    pub batch_id: Option<String>,
    pub status: String,
    pub requests: u32,
    pub inputs: u64,
    pub tokens: u64,
    pub completed: u64,
    pub failed: u64,
    pub submitted: u64,
}

/// `vecload batches [--cancel]`: the batches the load's state records for
/// its tenant and model, as the provider sees them now; with `cancel`,
/// each one not over is cancelled (what it finished stays usable by the
/// next `load --batch-api`).
pub async fn list(job: &LoadJob, cancel: bool) -> Result<Vec<BatchView>, SetupError> {
    let fetched = match &job.state_s3 {
        Some((bucket, key)) => {
            Some(crate::run::load::RemoteState::fetch(job, None, bucket, key).await?)
        }
        None => None,
    };
    let Some(path) = &job.state else {
        return Ok(Vec::new());
    };
    let Some(state) = State::open_existing(path)? else {
        return Ok(Vec::new());
    };
    let namespace = Cache::namespace_of(&job.embed);
    let settings = job.batch.as_ref().ok_or_else(|| {
        SetupError(anyhow!(
            "internal error: batches listed without their settings"
        ))
    })?;
    let api = connect(&job.embed, None, &job.source.s3, settings)?;
    let mut out = Vec::new();
    for rec in state.batches()? {
        if rec.tenant != job.tenant || rec.namespace != namespace {
            continue;
        }
        let mut view = BatchView {
            batch_id: rec.batch_id.clone(),
            status: "not made (the next load looks for it, else submits its inputs)".into(),
            requests: rec.requests,
            inputs: rec.inputs,
            tokens: rec.tokens,
            completed: 0,
            failed: 0,
            submitted: rec.submitted,
        };
        if let Some(id) = &rec.batch_id {
            let mut job = api.get(id).await?;
            if cancel && !job.over {
                job = api.cancel(id).await?;
                tracing::info!("batch {id}: cancel asked, now {}", job.status);
            }
            view.status = job.status;
            view.completed = job.completed;
            view.failed = job.failed;
        }
        out.push(view);
    }
    drop(fetched);
    Ok(out)
}
