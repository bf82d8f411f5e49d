//! The sink stage: embedded rows in, acknowledged writes out.
//!
//! Rows are grouped into write batches (flushed when full, when no rows
//! arrived for a moment, or when the oldest has waited a few seconds, so a
//! slow endpoint still sees its rows land), and
//! written by `write_concurrency` writers, each with its own connection. A
//! write that keeps failing on fresh connections means the store is gone:
//! the run stops instead of paying for vectors it cannot keep.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{Sink, SinkWriter, WriteError};
use async_trait::async_trait;

use crate::records::Embedded;
use crate::report::{Fatal, Gauges, InFlight, Stats};

const IDLE_FLUSH: Duration = Duration::from_secs(1);
/// The longest an embedded row waits for its batch to fill: behind a slow
/// endpoint rows trickle in without a pause, and a kill must not lose
/// minutes of paid vectors that sat in a half-full batch.
const MAX_WAIT: Duration = Duration::from_secs(5);
const WRITE_ATTEMPTS: u32 = 5;

pub struct SinkStage {
    sink: Arc<dyn Sink>,
    books: Arc<dyn Bookkeeping>,
    stats: Arc<Stats>,
    cancel: CancellationToken,
    fatal: Fatal,
}

/// What the run records after each write, so that a rerun does not pay
/// again for what the store holds. `state::Ledger` keeps it; nothing is
/// recorded before a write (a killed run's successor reads the store).
#[async_trait]
pub trait Bookkeeping: Send + Sync {
    /// After the store acknowledged `rows`.
    async fn after_write(&self, rows: &[Embedded]) -> anyhow::Result<()>;
}

impl SinkStage {
    pub fn new(
        sink: Arc<dyn Sink>,
        books: Arc<dyn Bookkeeping>,
        stats: Arc<Stats>,
        cancel: CancellationToken,
        fatal: Fatal,
    ) -> SinkStage {
        SinkStage {
            sink,
            books,
            stats,
            cancel,
            fatal,
        }
    }

    /// Runs until `rx` closes, writing everything it receives (also after a
    /// Ctrl-C: those vectors are paid for).
    pub async fn run(self, mut rx: mpsc::Receiver<Vec<Embedded>>) {
        let this = Arc::new(self);
        let size = this.sink.write_batch();
        let (wtx, wrx) = mpsc::channel::<Vec<Embedded>>(this.sink.write_concurrency());
        let wrx = Arc::new(Mutex::new(wrx));
        let mut writers = JoinSet::new();
        for _ in 0..this.sink.write_concurrency() {
            let (this, wrx) = (this.clone(), wrx.clone());
            writers.spawn(async move { this.writer_loop(wrx).await });
        }
        let mut pending: Vec<Embedded> = Vec::with_capacity(size);
        // When the oldest row of `pending` arrived.
        let mut since: Option<Instant> = None;
        loop {
            let wait = since.map_or(IDLE_FLUSH, |t| {
                IDLE_FLUSH.min(MAX_WAIT.saturating_sub(t.elapsed()))
            });
            match tokio::time::timeout(wait, rx.recv()).await {
                Ok(Some(rows)) => {
                    Gauges::add(&this.stats.gauges.rows_queued, -(rows.len() as i64));
                    since.get_or_insert_with(Instant::now);
                    pending.extend(rows);
                    while pending.len() >= size {
                        let rest = pending.split_off(size);
                        let full = std::mem::replace(&mut pending, rest);
                        since = (!pending.is_empty()).then(Instant::now);
                        if wtx.send(full).await.is_err() {
                            break;
                        }
                    }
                    if since.is_some_and(|t| t.elapsed() >= MAX_WAIT) {
                        let _ = wtx.send(std::mem::take(&mut pending)).await;
                        since = None;
                    }
                }
                Ok(None) => break,
                Err(_waited) => {
                    if !pending.is_empty() {
                        let _ = wtx.send(std::mem::take(&mut pending)).await;
                    }
                    since = None;
                }
            }
        }
        if !pending.is_empty() {
            let _ = wtx.send(pending).await;
        }
        drop(wtx);
        while let Some(res) = writers.join_next().await {
            if let Err(e) = res {
                this.fatal.set(
                    format!("internal error in a sink writer: {e}"),
                    &this.cancel,
                );
            }
        }
    }

    async fn writer_loop(&self, rx: Arc<Mutex<mpsc::Receiver<Vec<Embedded>>>>) {
        let mut writer: Option<Box<dyn SinkWriter>> = None;
        loop {
            let batch = { rx.lock().await.recv().await };
            let Some(batch) = batch else { return };
            self.write_with_retries(&mut writer, batch).await;
        }
    }

    async fn write_with_retries(
        &self,
        writer: &mut Option<Box<dyn SinkWriter>>,
        batch: Vec<Embedded>,
    ) {
        let mut last = String::new();
        for attempt in 0..WRITE_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
            }
            if writer.is_none() {
                match self.sink.writer().await {
                    Ok(w) => *writer = Some(w),
                    Err(e) => {
                        last = format!("{e:#}");
                        tracing::warn!("opening a sink connection failed: {last}");
                        continue;
                    }
                }
            }
            let Some(w) = writer.as_mut() else { continue };
            let in_flight = InFlight::new(&self.stats.gauges.writes_in_flight);
            let written = w.write(&batch).await;
            drop(in_flight);
            match written {
                Ok(()) => {
                    crash_point_after_ack();
                    Stats::add(&self.stats.vectors_written, batch.len() as u64);
                    if let Err(e) = self.books.after_write(&batch).await {
                        // The rows are in the sink; this run stays open in
                        // the state, so the next one reads the store.
                        self.fatal.set(format!("state file: {e:#}"), &self.cancel);
                    }
                    return;
                }
                Err(WriteError::Rejected(msg)) => {
                    tracing::warn!("{} rows rejected by the sink: {msg}", batch.len());
                    self.fail(&batch, &msg);
                    return;
                }
                Err(WriteError::Failed(e)) => {
                    last = format!("{e:#}");
                    tracing::warn!(
                        "writing {} rows failed (attempt {}): {last}",
                        batch.len(),
                        attempt + 1
                    );
                    // The connection may be broken or mid-transaction: start fresh.
                    *writer = None;
                }
            }
        }
        let msg = format!("the sink failed {WRITE_ATTEMPTS} times in a row: {last}");
        self.fail(&batch, &msg);
        self.fatal.set(msg, &self.cancel);
    }

    fn fail(&self, rows: &[Embedded], msg: &str) {
        let chunks: Vec<_> = rows.iter().map(|r| r.chunk.clone()).collect();
        self.stats.fail(&chunks, msg);
    }
}

/// For the resume tests: `VECLOAD_CRASH_AFTER_ACKS=N` aborts the process
/// right after the store acknowledged its Nth batch and before the state
/// file records it, the one moment a kill -9 cannot be aimed at from outside.
fn crash_point_after_ack() {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static AT: OnceLock<Option<u64>> = OnceLock::new();
    static ACKS: AtomicU64 = AtomicU64::new(0);
    let at = AT.get_or_init(|| {
        std::env::var("VECLOAD_CRASH_AFTER_ACKS")
            .ok()
            .and_then(|v| v.parse().ok())
    });
    if let Some(at) = at
        && ACKS.fetch_add(1, Ordering::SeqCst) + 1 == *at
    {
        std::process::abort();
    }
}
