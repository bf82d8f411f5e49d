//! The run driver, and the commands it drives. Every command that embeds
//! (`load`, `reembed`) is "choose a source and a sink, drive, then
//! post-steps" (index build, verification, switch); what they share is
//! here once:
//!
//!   feed (files on the chunking pool, or a store's pages) ─► chunk queue
//!     ─► embed stage (tokio, bounded, adaptive) ─► row queue
//!     ─► sink stage (batched writers) ─► bookkeeping (the record)
//!
//! Queues are bounded, so the slowest stage sets the pace and memory stays
//! flat. The supervisor (`supervise`) watches signals and stalls on a
//! thread of its own. Ctrl-C or SIGTERM stops the feed and new requests;
//! requests in flight finish and everything already embedded is written
//! (it is paid for). A second signal exits at once.

pub mod batches;
pub mod check;
pub mod copy;
pub mod lifecycle;
pub mod load;
pub mod plan;
pub mod quality;
pub mod reembed;
pub mod search;
pub mod shards;
pub mod space;
pub mod supervise;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::embed::Embedder;
use crate::embed::settings::EmbedSettings;
use crate::embed::stage::EmbedStage;
use crate::records::{Chunk, Embedded};
use crate::report::{Fatal, Stats};
use crate::settings::ProgressMode;
use crate::store::Sink;
use crate::store::stage::{Bookkeeping, SinkStage};

/// Why a run could not start: a setting or the target is wrong. Nothing was
/// read, sent or written.
#[derive(Debug, thiserror::Error)]
#[error("{0:#}")]
pub struct SetupError(pub anyhow::Error);

impl From<anyhow::Error> for SetupError {
    fn from(e: anyhow::Error) -> Self {
        SetupError(e)
    }
}

impl From<crate::settings::ConfigError> for SetupError {
    fn from(e: crate::settings::ConfigError) -> Self {
        SetupError(e.into())
    }
}

/// One run's shared machinery: counters, cancellation, the abort latch,
/// signals and the stall watch, progress, and the stages once started.
pub struct Driver {
    pub stats: Arc<Stats>,
    pub cancel: CancellationToken,
    pub fatal: Fatal,
    interrupted: Arc<AtomicBool>,
    supervisor: supervise::Supervisor,
    progress_done: CancellationToken,
    progress: Option<JoinHandle<()>>,
    chunk_queue: usize,
    row_queue: usize,
}

/// The embed and sink stages, running (a copy has no embed stage).
pub struct Stages {
    embed: Option<JoinHandle<()>>,
    write: JoinHandle<()>,
}

/// How much each queue holds, and what the stall watch expects of the
/// stage before the store.
pub struct Queues {
    chunk_queue: usize,
    row_queue: usize,
    concurrency: usize,
    request_timeout: std::time::Duration,
}

impl Queues {
    /// Enough chunks queued to fill every request slot twice over; as many
    /// finished batches as requests in flight, twice.
    pub fn embedding(embed: &EmbedSettings) -> Queues {
        Queues {
            chunk_queue: embed.batch_size * embed.concurrency * 2,
            row_queue: embed.concurrency * 2,
            concurrency: embed.concurrency,
            request_timeout: embed.request_timeout,
        }
    }

    /// A copy: pages of rows straight to the writers, two pages per writer
    /// at most, so reading runs ahead of writing by a little and no more.
    pub fn copy(write_concurrency: usize) -> Queues {
        Queues {
            chunk_queue: 0,
            row_queue: write_concurrency * 2,
            concurrency: 0,
            request_timeout: std::time::Duration::from_secs(0),
        }
    }
}

impl Driver {
    /// Starts watching signals and stalls and showing progress, for a run
    /// that embeds with `embed`.
    pub fn start(
        progress: ProgressMode,
        embed: &EmbedSettings,
        stats: Arc<Stats>,
    ) -> Result<Driver, SetupError> {
        Driver::start_with(progress, Queues::embedding(embed), stats)
    }

    /// Starts watching signals and stalls and showing progress.
    pub fn start_with(
        progress: ProgressMode,
        queues: Queues,
        stats: Arc<Stats>,
    ) -> Result<Driver, SetupError> {
        let Queues {
            chunk_queue,
            row_queue,
            concurrency,
            request_timeout,
        } = queues;
        let cancel = CancellationToken::new();
        let interrupted = Arc::new(AtomicBool::new(false));
        let supervisor = supervise::start(
            cancel.clone(),
            interrupted.clone(),
            supervise::Watch {
                stats: stats.clone(),
                chunk_queue,
                concurrency,
                request_timeout,
            },
        )?;
        let progress_done = CancellationToken::new();
        let progress =
            crate::report::progress::spawn(progress, stats.clone(), progress_done.clone());
        Ok(Driver {
            stats,
            cancel,
            fatal: Fatal::default(),
            interrupted,
            supervisor,
            progress_done,
            progress: Some(progress),
            chunk_queue,
            row_queue,
        })
    }

    /// Starts the embed and sink stages joined by a bounded queue. The feed
    /// sends chunks into the returned sender; dropping it ends the input.
    pub fn stages(
        &self,
        embedder: Arc<dyn Embedder>,
        embed: &EmbedSettings,
        sink: Arc<dyn Sink>,
        books: Arc<dyn Bookkeeping>,
    ) -> (mpsc::Sender<Chunk>, Stages) {
        let (chunk_tx, chunk_rx) = mpsc::channel::<Chunk>(self.chunk_queue);
        let (row_tx, row_rx) = mpsc::channel::<Vec<Embedded>>(self.row_queue);
        let embed = tokio::spawn(
            EmbedStage::new(
                embedder,
                embed.clone(),
                self.stats.clone(),
                self.cancel.clone(),
                self.fatal.clone(),
            )
            .run(chunk_rx, row_tx),
        );
        let write = tokio::spawn(
            SinkStage::new(
                sink,
                books,
                self.stats.clone(),
                self.cancel.clone(),
                self.fatal.clone(),
            )
            .run(row_rx),
        );
        (
            chunk_tx,
            Stages {
                embed: Some(embed),
                write,
            },
        )
    }

    /// Starts the sink stage alone: rows arrive with their vectors (a copy
    /// between stores). Dropping the sender ends the input.
    pub fn copy_stages(
        &self,
        sink: Arc<dyn Sink>,
        books: Arc<dyn Bookkeeping>,
    ) -> (mpsc::Sender<Vec<Embedded>>, Stages) {
        let (row_tx, row_rx) = mpsc::channel::<Vec<Embedded>>(self.row_queue);
        let write = tokio::spawn(
            SinkStage::new(
                sink,
                books,
                self.stats.clone(),
                self.cancel.clone(),
                self.fatal.clone(),
            )
            .run(row_rx),
        );
        (row_tx, Stages { embed: None, write })
    }

    /// Waits until the stages have written everything they were given and
    /// the feed has ended (`feed` resolves to its result, or to why it
    /// failed), then stops progress and the stall watch.
    pub async fn drive<T>(
        &mut self,
        stages: Stages,
        feed: impl Future<Output = Result<T, String>>,
    ) -> Option<T> {
        if let Some(embed) = stages.embed
            && let Err(e) = embed.await
        {
            self.fail(format!("internal error: embed stage: {e}"));
        }
        if let Err(e) = stages.write.await {
            self.fail(format!("internal error: sink stage: {e}"));
        }
        let fed = match feed.await {
            Ok(t) => Some(t),
            Err(e) => {
                self.fail(e);
                None
            }
        };
        self.supervisor.stages_done();
        self.progress_done.cancel();
        if let Some(p) = self.progress.take() {
            let _ = p.await;
        }
        fed
    }

    /// Ends the run with `msg` (the first such message is the run's error).
    pub fn fail(&self, msg: String) {
        self.fatal.set(msg, &self.cancel);
    }

    /// Whether a signal stopped the run.
    pub fn interrupted(&self) -> bool {
        self.interrupted.load(Relaxed)
    }
}
