//! `load --batch-api`'s feed: the load's own walk and ledger, so the
//! batches hold exactly what the synchronous load would pay for.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::*;

/// `--batch-api`: every chunk this load would pay for embedded through the
/// provider's batch API first (`run/batches/`), fed by the load's own
/// producer and ledger.
pub(super) async fn batch_phase(
    job: &LoadJob,
    settings: &crate::embed::batch_api::BatchSettings,
    filter: &Arc<Filter>,
    ledger: &Arc<Ledger>,
    remote: Option<&Remote>,
    state_s3: &Option<Arc<RemoteState>>,
) -> Result<crate::report::BatchSummary, SetupError> {
    let state = ledger.state().ok_or_else(|| {
        SetupError(anyhow::anyhow!(
            "--batch-api needs a state file to remember its batches (leave out --no-state)"
        ))
    })?;
    // Another machine must know of a batch as soon as it is made.
    let put_state = || -> futures::future::BoxFuture<'static, ()> {
        let (remote_state, ledger) = (state_s3.clone(), ledger.clone());
        Box::pin(async move {
            if let Some(r) = remote_state {
                r.checkpoint_now(&ledger).await;
            }
        })
    };
    let feed =
        |tx: mpsc::Sender<Chunk>| -> futures::future::BoxFuture<'static, Result<(), String>> {
            let (job, filter, ledger) = (job.clone(), filter.clone(), ledger.clone());
            let remote = remote.map(Remote::share);
            Box::pin(async move {
                let pool = crate::pools::chunking().map_err(|e| format!("{e:#}"))?;
                let fatal = Fatal::default();
                let handle = tokio::runtime::Handle::current();
                let inner = fatal.clone();
                let walker = std::thread::Builder::new()
                    .name("vecload-batch-walk".into())
                    .spawn(move || {
                        let books = Books {
                            ledger: &ledger,
                            fatal: &inner,
                            handle: &handle,
                        };
                        // Its counts are not the load's: the load counts again.
                        let scratch = Arc::new(Stats::default());
                        produce(
                            pool,
                            &job,
                            &filter,
                            &scratch,
                            &CancellationToken::new(),
                            tx,
                            Some(books),
                            remote.as_ref(),
                        );
                    })
                    .map_err(|e| format!("cannot start the walking thread: {e}"))?;
                match tokio::task::spawn_blocking(move || walker.join()).await {
                    Ok(Ok(())) => {}
                    _ => return Err("internal error: the chunking thread panicked".into()),
                }
                fatal.get().map_or(Ok(()), Err)
            })
        };
    crate::run::batches::embed_in_batches(
        crate::run::batches::BatchRun {
            embed: &job.embed,
            tenant: &job.tenant,
            s3: remote.map(|r| r.s3.clone()),
            s3_settings: &job.source.s3,
            state,
            feed: &feed,
            on_recorded: &put_state,
        },
        settings,
    )
    .await
}
