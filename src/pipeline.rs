//! Wires the stages of `vecload load` and owns shutdown:
//!
//!   walk ─► read+chunk (rayon) ─► embed (tokio, bounded) ─► sink (writers)
//!
//! Queues between stages are bounded, so the slowest stage sets the pace and
//! memory stays flat. Ctrl-C stops reading and sending new requests; requests
//! in flight finish and everything already embedded is written (it is paid
//! for). A second Ctrl-C exits at once.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Instant;

use anyhow::Result;
use rayon::prelude::*;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::chunk::{Chunk, Chunker};
use crate::config::Config;
use crate::embed::Embedded;
use crate::embed::stage::{EmbedStage, Fatal};
use crate::incremental::{DocWork, Ledger};
use crate::report::{Report, RunInfo, Stats};
use crate::sink::stage::SinkStage;
use crate::source::{self, Filter};
use crate::state::State;

/// Why a run could not start: a setting or the target is wrong. Nothing was
/// read, sent or written.
#[derive(Debug, thiserror::Error)]
#[error("{0:#}")]
pub struct SetupError(pub anyhow::Error);

pub async fn load(
    mut cfg: Config,
    progress: crate::cli::ProgressMode,
) -> Result<Report, SetupError> {
    let started = Instant::now();
    let filter = Filter::new(&cfg.source).map_err(|e| SetupError(e.into()))?;
    let (embedder, embed_cfg) = crate::embed::connect(&cfg.embed)
        .await
        .map_err(SetupError)?;
    cfg.embed = embed_cfg;
    let mut sink = crate::sink::build(&cfg.sink, cfg.embed.dim);
    // The target is checked before any file is read or request sent.
    sink.prepare().await.map_err(SetupError)?;
    let sink: Arc<dyn crate::sink::Sink> = Arc::from(sink);
    let stats = Arc::new(Stats::default());
    let state = match &cfg.state {
        Some(path) => Some(State::open(path).map_err(SetupError)?),
        None => None,
    };
    if let Some(path) = &cfg.dead_letter {
        stats.set_dead_letter(path.clone());
    }
    let ledger = Arc::new(
        Ledger::new(state, sink.clone(), stats.clone())
            .tenant_scoped_ids(crate::config::sink_layout(&cfg.sink).is_lightrag())
            .for_prune(cfg.prune),
    );
    ledger.reconcile().await.map_err(SetupError)?;
    if let Err(e) = sink.begin().await {
        // Undo whatever part of it took effect.
        let _ = sink.finish(&cfg.tenant, false).await;
        return Err(SetupError(e));
    }
    tracing::info!(
        "loading tenant {:?} into {}; embedding with {}",
        cfg.tenant,
        sink.describe(),
        embedder.describe()
    );

    let cancel = CancellationToken::new();
    let fatal = Fatal::default();
    let interrupted = Arc::new(std::sync::atomic::AtomicBool::new(false));
    watch_ctrl_c(cancel.clone(), interrupted.clone());
    let progress_done = CancellationToken::new();
    let progress_task = crate::progress::spawn(progress, stats.clone(), progress_done.clone());

    // Enough chunks queued to fill every request slot twice over.
    let (chunk_tx, chunk_rx) =
        mpsc::channel::<Chunk>(cfg.embed.batch_size * cfg.embed.concurrency * 2);
    let (emb_tx, emb_rx) = mpsc::channel::<Vec<Embedded>>(cfg.embed.concurrency * 2);

    let producer = {
        let (cfg, stats, cancel) = (cfg.clone(), stats.clone(), cancel.clone());
        let (ledger, fatal, handle) = (
            ledger.clone(),
            fatal.clone(),
            tokio::runtime::Handle::current(),
        );
        std::thread::Builder::new()
            .name("vecload-chunk".into())
            .spawn(move || {
                let books = Books {
                    ledger: &ledger,
                    fatal: &fatal,
                    handle: &handle,
                };
                produce(&cfg, &filter, &stats, &cancel, chunk_tx, Some(books))
            })
            .map_err(|e| SetupError(e.into()))?
    };
    let embed = tokio::spawn(
        EmbedStage {
            embedder: embedder.clone(),
            cfg: cfg.embed.clone(),
            stats: stats.clone(),
            cancel: cancel.clone(),
            fatal: fatal.clone(),
            limiter: Arc::new(crate::embed::limiter::Limiter::new(cfg.embed.concurrency)),
            pace: crate::embed::pace::Pace::new(cfg.embed.rpm, cfg.embed.tpm),
            batch_cap: Arc::new(std::sync::atomic::AtomicUsize::new(cfg.embed.batch_size)),
        }
        .run(chunk_rx, emb_tx),
    );
    let write = tokio::spawn(
        SinkStage {
            sink: sink.clone(),
            ledger: ledger.clone(),
            stats: stats.clone(),
            cancel: cancel.clone(),
            fatal: fatal.clone(),
        }
        .run(emb_rx),
    );
    if let Err(e) = embed.await {
        fatal.set(format!("internal error: embed stage: {e}"), &cancel);
    }
    if let Err(e) = write.await {
        fatal.set(format!("internal error: sink stage: {e}"), &cancel);
    }
    let producer_result = tokio::task::spawn_blocking(move || producer.join()).await;
    if !matches!(producer_result, Ok(Ok(()))) {
        fatal.set(
            "internal error: the chunking thread panicked".into(),
            &cancel,
        );
    }
    progress_done.cancel();
    let _ = progress_task.await;

    if let Err(e) = ledger.sync() {
        fatal.set(format!("state file: {e:#}"), &cancel);
    }
    let interrupted = interrupted.load(Relaxed);
    if cfg.prune
        && !interrupted
        && fatal.get().is_none()
        && let Err(e) = ledger.prune(&cfg.tenant).await
    {
        fatal.set(format!("--prune: {e:#}"), &cancel);
    }
    let mut error = fatal.get();
    let mut tenant_rows = None;
    let mut index = None;
    // An interrupted run skips the index build (the rerun does it); after a
    // fatal error the index is still built over what was written.
    match sink.finish(&cfg.tenant, !interrupted).await {
        Ok(s) => {
            tenant_rows = Some(s.tenant_rows);
            index = s.index;
        }
        Err(e) => {
            let msg = format!("finishing the sink: {e:#}");
            tracing::error!("{msg}");
            error.get_or_insert(msg);
        }
    }
    Ok(Report::build(
        &stats,
        RunInfo {
            state_file: ledger.state_path(),
            tenant: cfg.tenant.clone(),
            sink: sink.describe(),
            embedding_endpoint: embedder.describe(),
            embed_dim: cfg.embed.dim,
            tenant_rows,
            expected_rows: ledger.tenant_chunks(&cfg.tenant),
            index,
            interrupted,
            error,
            elapsed_seconds: started.elapsed().as_secs_f64(),
        },
    ))
}

/// The bookkeeping a load does while producing (plan does none).
pub struct Books<'a> {
    pub ledger: &'a Ledger,
    pub fatal: &'a Fatal,
    pub handle: &'a tokio::runtime::Handle,
}

/// Walks, then reads and chunks files on a rayon pool, one file per task.
/// Blocks on the bounded queue when the embed stage is behind. `plan` runs
/// exactly this too, so its counts are the load's.
pub fn produce(
    cfg: &Config,
    filter: &Filter,
    stats: &Stats,
    cancel: &CancellationToken,
    tx: mpsc::Sender<Chunk>,
    books: Option<Books<'_>>,
) {
    let walked = source::walk(&cfg.paths, filter);
    Stats::add(&stats.files_seen, walked.seen);
    Stats::add(&stats.files_to_read, walked.files.len() as u64);
    for s in walked.skipped {
        stats.skip(s);
    }
    stats.walk_done.store(true, Relaxed);
    let chunker = Chunker::new(&cfg.chunk);
    let tenant: Arc<str> = Arc::from(cfg.tenant.as_str());
    walked.files.par_iter().for_each(|file| {
        if cancel.is_cancelled() {
            return;
        }
        stats.count_format(source::format_name(&file.rel));
        match source::read_file(file, &cfg.source) {
            Err(skip) => stats.skip(skip),
            Ok(docs) => {
                // Records of one JSON/JSONL file are documents of their own:
                // spread them over the pool too, or one big file is one core.
                let produced = AtomicU64::new(0);
                let stopped = AtomicBool::new(false);
                docs.into_par_iter().for_each(|doc| {
                    if stopped.load(Relaxed) || cancel.is_cancelled() {
                        return;
                    }
                    match one_doc(doc, &chunker, &tenant, stats, cancel, &tx, books.as_ref()) {
                        Some(n) => produced.fetch_add(n, Relaxed),
                        None => {
                            stopped.store(true, Relaxed);
                            0
                        }
                    };
                });
                if stopped.load(Relaxed) {
                    return;
                }
                if produced.load(Relaxed) > 0 {
                    Stats::add(&stats.files_with_chunks, 1);
                } else {
                    stats.skip(source::Skip::new(&file.path, "empty", "no text to chunk"));
                }
            }
        }
        Stats::add(&stats.files_read, 1);
    });
}

/// Chunks one document and queues what needs embedding. Returns how many
/// chunks the document has (written before or queued now), or None when the
/// run is stopping.
fn one_doc(
    doc: crate::chunk::Document,
    chunker: &Chunker,
    tenant: &Arc<str>,
    stats: &Stats,
    cancel: &CancellationToken,
    tx: &mpsc::Sender<Chunk>,
    books: Option<&Books<'_>>,
) -> Option<u64> {
    let mut produced = 0u64;
    let (chunks, meta) = match books {
        None => (chunker.chunk(tenant, doc, String::new()), None),
        Some(b) => match b.ledger.plan_doc(chunker, tenant, doc) {
            Err(e) => {
                b.fatal.set(format!("state file: {e:#}"), cancel);
                return None;
            }
            Ok(DocWork::Unchanged { chunks }) => {
                Stats::add(&stats.chunks, chunks as u64);
                Stats::add(&stats.chunks_unchanged, chunks as u64);
                Stats::add(&stats.docs_unchanged, 1);
                return Some(chunks as u64);
            }
            Ok(DocWork::Embed {
                chunks,
                written,
                meta,
            }) => {
                produced += written as u64;
                Stats::add(&stats.chunks, written as u64);
                Stats::add(&stats.chunks_unchanged, written as u64);
                (chunks, meta)
            }
        },
    };
    // Nothing left to embed, but the document may have become shorter:
    // finish it (its stale chunks) right here.
    if chunks.is_empty()
        && let (Some(b), Some(meta)) = (books, meta)
        && let Err(e) = b.handle.block_on(b.ledger.complete(&[meta.as_ref()]))
    {
        b.fatal
            .set(format!("finishing {}: {e:#}", meta.source), cancel);
        return None;
    }
    for chunk in chunks {
        produced += 1;
        Stats::add(&stats.chunks, 1);
        if tx.blocking_send(chunk).is_err() {
            // The embed stage stopped (cancel or fatal error).
            return None;
        }
    }
    Some(produced)
}

pub(crate) fn watch_ctrl_c(
    cancel: CancellationToken,
    interrupted: Arc<std::sync::atomic::AtomicBool>,
) {
    #[cfg(unix)]
    {
        // SIGTERM (docker stop, ECS task stop, kill) drains the same way.
        let cancel2 = cancel.clone();
        let interrupted2 = interrupted.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            if let Ok(mut term) = signal(SignalKind::terminate())
                && term.recv().await.is_some()
            {
                tracing::warn!(
                    "terminated: finishing requests in flight and writing what is embedded"
                );
                interrupted2.store(true, Relaxed);
                cancel2.cancel();
            }
        });
    }
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_err() {
            return;
        }
        interrupted.store(true, Relaxed);
        tracing::warn!(
            "interrupted: finishing requests in flight and writing what is embedded (Ctrl-C again to quit now)"
        );
        cancel.cancel();
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::error!("interrupted twice: exiting without waiting");
            std::process::exit(130);
        }
    });
}
