//! Acknowledged writes recorded off the writers' path.
//!
//! A writer hands what the store acknowledged to this thread and takes its
//! next batch at once; the thread records what queued up within
//! `GROUP_WAIT` in one redb commit (group commit), completes finished
//! documents in that same commit, and syncs to disk every few seconds. Nothing
//! here is needed for correctness before the next write: a load's tenant
//! stays open in the state until `Ledger::settle` has seen all of it
//! recorded, and a killed load's successor reads the store as the record
//! (`Ledger::recall`), so what was still queued at a kill is not paid for
//! twice. The redb work (B-tree updates, commits, the periodic fdatasync)
//! runs on a thread of its own, never on a tokio worker.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use tokio::sync::{mpsc, oneshot};

use super::file::{ChunkRec, State, doc_key};
use crate::records::DocMeta;
use crate::report::Stats;
use crate::store::Sink;

/// How often acknowledgements are made durable while a load runs: they
/// need not be for correctness (the store is read after a kill), but a
/// killed load's successor then re-reads and re-chunks less.
const SYNC_EVERY: Duration = Duration::from_secs(10);
/// Write batches waiting to be recorded before writers wait for the
/// recorder: a few seconds of writes at the stores' speed.
const QUEUED_BATCHES: usize = 256;
/// At most this many write batches in one commit, so that a backlog is
/// recorded in commits of bounded size.
const GROUP_BATCHES: usize = 128;
/// How long the first batch of a group waits for more to join it. Each
/// commit rewrites the B-trees' upper pages and checksums them, so a
/// commit per write batch cost a quarter of the client's CPU samples at
/// 50k rows/s, a commit per 200 ms 19% (perf, BENCHMARKS.md); a kill loses
/// at most this much more of the record, which the next run finds in the
/// store.
const GROUP_WAIT: Duration = Duration::from_millis(200);

enum Msg {
    Written {
        rows: Vec<ChunkRec>,
        done: Vec<Arc<DocMeta>>,
    },
    /// Answered once everything sent before it is recorded.
    Settle(oneshot::Sender<()>),
}

pub(super) struct Recorder {
    tx: mpsc::Sender<Msg>,
    /// The first error recording hit; nothing is recorded after it.
    failed: Arc<Mutex<Option<String>>>,
}

struct Thread {
    state: Arc<State>,
    sink: Arc<dyn Sink>,
    stats: Arc<Stats>,
    handle: tokio::runtime::Handle,
    failed: Arc<Mutex<Option<String>>>,
    synced: Instant,
}

impl Recorder {
    /// Starts the recording thread; called from within the runtime, whose
    /// handle it keeps for deleting stale chunks from the sink.
    pub(super) fn start(
        state: Arc<State>,
        sink: Arc<dyn Sink>,
        stats: Arc<Stats>,
    ) -> Result<Recorder> {
        let (tx, rx) = mpsc::channel(QUEUED_BATCHES);
        let failed = Arc::new(Mutex::new(None));
        let thread = Thread {
            state,
            sink,
            stats,
            handle: tokio::runtime::Handle::current(),
            failed: failed.clone(),
            synced: Instant::now(),
        };
        std::thread::Builder::new()
            .name("vecload-state".into())
            .spawn(move || thread.run(rx))
            .map_err(|e| anyhow::anyhow!("cannot start the state file's thread: {e}"))?;
        Ok(Recorder { tx, failed })
    }

    fn failure(&self) -> Result<()> {
        match &*self.failed.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(e) => Err(anyhow::anyhow!("{e}")),
            None => Ok(()),
        }
    }

    /// Queues `rows` (acknowledged by the store) and the documents they
    /// finished; an error is the state file's, from an earlier batch.
    pub(super) async fn written(&self, rows: Vec<ChunkRec>, done: Vec<Arc<DocMeta>>) -> Result<()> {
        self.failure()?;
        if self.tx.send(Msg::Written { rows, done }).await.is_err() {
            self.failure()?;
            anyhow::bail!("internal error: the state file's thread stopped");
        }
        Ok(())
    }

    /// Waits until everything queued so far is recorded (not synced).
    pub(super) async fn settle(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Settle(tx)).await.is_err() || rx.await.is_err() {
            self.failure()?;
            anyhow::bail!("internal error: the state file's thread stopped");
        }
        self.failure()
    }
}

impl Thread {
    fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        let mut group = Vec::with_capacity(GROUP_BATCHES);
        while rx.blocking_recv_many(&mut group, GROUP_BATCHES) > 0 {
            // A settle (the load's end) is answered without waiting.
            let started = Instant::now();
            while !group.iter().any(|m| matches!(m, Msg::Settle(_)))
                && group.len() < GROUP_BATCHES
                && started.elapsed() < GROUP_WAIT
            {
                std::thread::sleep(Duration::from_millis(20));
                while group.len() < GROUP_BATCHES {
                    match rx.try_recv() {
                        Ok(m) => group.push(m),
                        Err(_) => break,
                    }
                }
            }
            let mut rows = Vec::new();
            let mut done = Vec::new();
            let mut settled = Vec::new();
            for msg in group.drain(..) {
                match msg {
                    Msg::Written { rows: r, done: d } => {
                        if rows.is_empty() {
                            rows = r;
                        } else {
                            rows.extend(r);
                        }
                        done.extend(d);
                    }
                    Msg::Settle(tx) => settled.push(tx),
                }
            }
            let ok = self
                .failed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_none();
            if ok
                && (!rows.is_empty() || !done.is_empty())
                && let Err(e) = self.record(&rows, &done)
            {
                let msg = format!("{e:#}");
                tracing::error!("state file {}: {msg}", self.state.path().display());
                *self.failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(msg);
            }
            for tx in settled {
                let _ = tx.send(());
            }
        }
    }

    fn record(&mut self, rows: &[ChunkRec], done: &[Arc<DocMeta>]) -> Result<()> {
        let done: Vec<(String, String, u32)> = done
            .iter()
            .map(|d| (doc_key(&d.tenant, &d.key), d.hash.clone(), d.chunk_count))
            .collect();
        let with_stale = self.state.record_written(rows, &done)?;
        if !with_stale.is_empty() {
            // Documents that became shorter: their old tail goes from the
            // sink before they are recorded complete.
            for (tenant, ids) in super::ledger::stale_by_tenant(&with_stale) {
                let n = self.handle.block_on(self.sink.delete(tenant, &ids))?;
                Stats::add(&self.stats.stale_deleted, n);
            }
            self.state.complete_docs(&with_stale)?;
        }
        if self.synced.elapsed() >= SYNC_EVERY {
            self.state.sync()?;
            self.synced = Instant::now();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};
    use std::sync::atomic::AtomicU32;

    use async_trait::async_trait;

    use super::*;
    use crate::records::Hit;
    use crate::store::{Held, SinkSummary, SinkWriter};

    /// A store that only remembers what it was asked to delete (the
    /// recorder's one call into the sink), or refuses to.
    #[derive(Default)]
    struct Deletes(Mutex<Vec<(String, Vec<String>)>>, bool);

    #[async_trait]
    impl Sink for Deletes {
        fn describe(&self) -> String {
            "deletes".into()
        }
        fn write_batch(&self) -> usize {
            64
        }
        fn write_concurrency(&self) -> usize {
            1
        }
        async fn prepare(&mut self) -> Result<()> {
            Ok(())
        }
        async fn check(&self) -> Result<Vec<String>> {
            Ok(Vec::new())
        }
        async fn delete(&self, tenant: &str, ids: &[String]) -> Result<u64> {
            if self.1 {
                anyhow::bail!("the store refused the delete");
            }
            let mut d = self.0.lock().unwrap_or_else(|p| p.into_inner());
            d.push((tenant.to_string(), ids.to_vec()));
            Ok(ids.len() as u64)
        }
        async fn existing(&self, _: &str, _: &[String]) -> Result<HashMap<String, String>> {
            Ok(HashMap::new())
        }
        async fn vectors(&self, _: &str, _: &[String]) -> Result<HashMap<String, Vec<f32>>> {
            Ok(HashMap::new())
        }
        async fn writer(&self) -> Result<Box<dyn SinkWriter>> {
            anyhow::bail!("not written to")
        }
        async fn search(&self, _: &str, _: &[f32], _: usize) -> Result<Vec<Hit>> {
            Ok(Vec::new())
        }
        async fn searcher(&self) -> Result<Box<dyn crate::store::measure::Searcher>> {
            anyhow::bail!("not searched")
        }
        async fn held(
            &self,
            _: &str,
            _: Held,
            _: &mut (dyn for<'r> FnMut(&'r str, &'r str) + Send),
        ) -> Result<bool> {
            Ok(false)
        }
        async fn ids(&self, _: &str) -> Result<Vec<String>> {
            Ok(Vec::new())
        }
        async fn tenants(&self) -> Result<BTreeMap<String, u64>> {
            Ok(BTreeMap::new())
        }
        async fn count(&self, _: &str) -> Result<u64> {
            Ok(0)
        }
        async fn sample(&self, _: &str, _: usize) -> Result<Vec<(String, Vec<f32>)>> {
            Ok(Vec::new())
        }
        async fn finish(&self, _: &str, _: bool) -> Result<SinkSummary> {
            anyhow::bail!("not finished")
        }
    }

    fn doc(key: &str, count: u32) -> Arc<DocMeta> {
        Arc::new(DocMeta {
            tenant: Arc::from("t"),
            doc_id: format!("doc-{key}"),
            source: key.into(),
            file: Arc::from(key),
            key: key.into(),
            page: None,
            hash: format!("hash-{key}-{count}"),
            chunk_count: count,
            pending: AtomicU32::new(0),
        })
    }

    fn rows(key: &str, range: std::ops::Range<u32>, version: &str) -> Vec<ChunkRec> {
        range
            .map(|i| ChunkRec {
                id: format!("{key}-{i}"),
                hash: format!("{version}-{i}"),
                index: i,
                doc: doc_key("t", key),
            })
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn written_batches_are_recorded_by_settle_and_a_shorter_documents_tail_is_deleted_first()
    {
        let dir = tempfile::tempdir().unwrap();
        let state = Arc::new(State::open(&dir.path().join("s.redb")).unwrap());
        // An earlier run left a.md with 5 chunks.
        state.mark_acked(&rows("a.md", 0..5, "v1")).unwrap();
        let sink = Arc::new(Deletes::default());
        let stats = Arc::new(Stats::default());
        let recorder = Recorder::start(state.clone(), sink.clone(), stats.clone()).unwrap();

        // Now a.md has 2 chunks, b.md 300, written in batches of 64 as a
        // sink stage hands them over; each document finishes with its
        // last batch.
        recorder
            .written(rows("a.md", 0..2, "v2"), vec![doc("a.md", 2)])
            .await
            .unwrap();
        let b = rows("b.md", 0..300, "v1");
        let parts: Vec<&[ChunkRec]> = b.chunks(64).collect();
        for (i, part) in parts.iter().enumerate() {
            let done = if i + 1 == parts.len() {
                vec![doc("b.md", 300)]
            } else {
                Vec::new()
            };
            recorder.written(part.to_vec(), done).await.unwrap();
        }
        tokio::time::timeout(Duration::from_secs(10), recorder.settle())
            .await
            .expect("settle answers")
            .unwrap();

        // Everything handed over is recorded when settle returns.
        let a = doc_key("t", "a.md");
        assert_eq!(state.unchanged_doc(&a, "hash-a.md-2").unwrap(), Some(2));
        assert_eq!(
            state
                .unchanged_doc(&doc_key("t", "b.md"), "hash-b.md-300")
                .unwrap(),
            Some(300)
        );
        assert_eq!(state.tenant_chunks("t").unwrap(), 302);
        let acked = state.acked(&a).unwrap();
        assert_eq!(
            acked.get(&1),
            Some(&("a.md-1".to_string(), "v2-1".to_string()))
        );
        // The old tail went from the store, once, before a.md was complete.
        let deletes = sink.0.lock().unwrap().clone();
        assert_eq!(
            deletes,
            vec![(
                "t".to_string(),
                vec!["a.md-2".to_string(), "a.md-3".into(), "a.md-4".into()]
            )]
        );
        assert_eq!(Stats::get(&stats.stale_deleted), 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failure_to_record_is_returned_at_settle_and_by_later_writes_and_the_document_stays_open()
     {
        let dir = tempfile::tempdir().unwrap();
        let state = Arc::new(State::open(&dir.path().join("s.redb")).unwrap());
        state.mark_acked(&rows("a.md", 0..3, "v1")).unwrap();
        let sink = Arc::new(Deletes(Mutex::default(), true));
        let recorder = Recorder::start(state.clone(), sink, Arc::new(Stats::default())).unwrap();
        recorder
            .written(rows("a.md", 0..1, "v2"), vec![doc("a.md", 1)])
            .await
            .unwrap();
        let err = tokio::time::timeout(Duration::from_secs(10), recorder.settle())
            .await
            .expect("settle answers")
            .unwrap_err();
        assert!(format!("{err:#}").contains("refused the delete"), "{err:#}");
        let again = recorder.written(rows("b.md", 0..1, "v1"), Vec::new()).await;
        assert!(again.is_err(), "a later write is told");
        // Its stale chunks are still in the store, so a.md is not complete.
        assert_eq!(
            state
                .unchanged_doc(&doc_key("t", "a.md"), "hash-a.md-1")
                .unwrap(),
            None
        );
    }
}
