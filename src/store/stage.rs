//! The sink stage: embedded rows in, acknowledged writes out.
//!
//! Rows go to the store as soon as a writer can take them: a write batch is
//! whatever arrived while the writers were busy, up to `write_batch` rows
//! (group commit). A fast endpoint so fills whole batches; behind a slow
//! one each answer is written within a write's time, so a kill -9 loses
//! no more than the requests in flight and the write under way (the rerun
//! pays again only for those). `write_concurrency` writers each hold a
//! connection of their own.
//! A store that stops answering (a failover, a restart) is waited out as an
//! outage (`crate::outage`): the writers pause, one probes on a fresh
//! connection, and embedded rows wait in the bounded queue, so the endpoint
//! is not paid for rows that cannot be written. Past --store-outage-budget
//! the run stops; a store that refuses every write stops it at once.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{Sink, SinkWriter, WriteError};
use async_trait::async_trait;

use crate::records::Embedded;
use crate::report::{Fatal, Gauges, InFlight, Stats};

/// The longest pause between a failed write and the next try before the
/// store is taken as down (then the outage paces the probes).
const RETRY_CAP: Duration = Duration::from_secs(5);

pub struct SinkStage {
    sink: Arc<dyn Sink>,
    books: Arc<dyn Bookkeeping>,
    stats: Arc<Stats>,
    cancel: CancellationToken,
    fatal: Fatal,
    outage: Arc<crate::outage::Outage>,
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
        // Two failures in a row: one may be a conflict or a dropped
        // connection; two on fresh connections are the store.
        let outage = Arc::new(crate::outage::Outage::new(
            "the vector store",
            "--store-outage-budget",
            sink.outage_budget(),
            2,
        ));
        stats
            .outages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(outage.clone());
        SinkStage {
            outage,
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
        // Rows wait here only while every writer is busy: once one is
        // free, what arrived meanwhile (up to a full batch) goes at once.
        while let Some(rows) = rx.recv().await {
            let mut pending = rows;
            while pending.len() < size {
                match rx.try_recv() {
                    Ok(more) => pending.extend(more),
                    Err(_) => break,
                }
            }
            Gauges::add(&this.stats.gauges.rows_queued, -(pending.len() as i64));
            while !pending.is_empty() {
                let rest = if pending.len() > size {
                    pending.split_off(size)
                } else {
                    Vec::new()
                };
                if wtx
                    .send(std::mem::replace(&mut pending, rest))
                    .await
                    .is_err()
                {
                    break;
                }
            }
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
        let mut attempt = 0u32;
        loop {
            // Not raced with the cancel: rows embedded before a Ctrl-C are
            // paid for and still written (the drain deadline bounds it).
            let pass = match self.outage.pass().await {
                Ok(p) => p,
                Err(msg) => return self.give_up(&batch, msg),
            };
            if writer.is_none() {
                match self.sink.writer().await {
                    Ok(w) => *writer = Some(w),
                    Err(e) => {
                        let msg = format!("opening a connection to the store: {e:#}");
                        tracing::debug!("{msg}");
                        if let Err(msg) = self.outage.failed(pass, &msg) {
                            return self.give_up(&batch, msg);
                        }
                        attempt += 1;
                        self.pause(attempt).await;
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
                    self.outage.succeeded(pass);
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
                    self.outage.succeeded(pass);
                    tracing::warn!("{} rows rejected by the sink: {msg}", batch.len());
                    self.fail(&batch, &msg);
                    return;
                }
                Err(WriteError::Permanent(msg)) => {
                    drop(pass);
                    return self.give_up(&batch, format!("the store refuses the write: {msg}"));
                }
                Err(WriteError::Failed(e)) => {
                    let msg = format!("writing {} rows: {e:#}", batch.len());
                    tracing::debug!("{msg} (try {})", attempt + 1);
                    // The connection may be broken or mid-transaction: start fresh.
                    *writer = None;
                    if let Err(msg) = self.outage.failed(pass, &msg) {
                        return self.give_up(&batch, msg);
                    }
                    attempt += 1;
                    self.pause(attempt).await;
                }
            }
        }
    }

    /// Between tries of one batch, before the store is taken as down.
    async fn pause(&self, attempt: u32) {
        if self.outage.down_for().is_none() {
            tokio::time::sleep(crate::backoff::delay(attempt, None).min(RETRY_CAP)).await;
        }
    }

    /// The batch is not written and the run stops.
    fn give_up(&self, batch: &[Embedded], msg: String) {
        self.fail(batch, &msg);
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
