//! `vecload load`: documents from the file system, chunked on the chunking
//! pool, through the driver's embed and sink stages, then the post-steps
//! (state sync, --prune, index build, counts).
//!
//!   walk ─► read+chunk (chunking pool) ─► embed (tokio, bounded) ─► sink (writers)

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Instant;

use rayon::prelude::*;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

mod steps;

use super::SetupError;
use super::shards;
use crate::chunk::Chunker;
use crate::chunk::settings::ChunkSettings;
use crate::embed::settings::EmbedSettings;
use crate::records::Chunk;
use crate::report::{Fatal, Gauges, Report, RunInfo, Stats};
use crate::settings::ProgressMode;
use crate::shard::{Shard, Step};
use crate::source::s3::{self, FeedCtx, Fetched, Known, KnownObject, S3, S3Root, Spool, Taken};
use crate::source::settings::SourceSettings;
use crate::source::{self, Filter};
use crate::state::{DocWork, Ledger, Unchanged};
use crate::store::Target;

/// A load, as its flags describe it, validated.
#[derive(Debug, Clone)]
pub struct LoadJob {
    /// Local files and folders.
    pub paths: Vec<PathBuf>,
    /// s3:// PATHs, read after the local ones.
    pub s3_roots: Vec<S3Root>,
    pub tenant: String,
    pub report: Option<crate::report::output::ReportTo>,
    pub progress: ProgressMode,
    /// None: no state kept (--no-state).
    pub state: Option<PathBuf>,
    /// `--state s3://BUCKET/KEY`: `state` is a local copy, fetched at the
    /// start and put back at the end.
    pub state_s3: Option<(String, String)>,
    /// How often that local copy is put back while the run goes.
    pub state_every: std::time::Duration,
    pub prune: bool,
    pub dead_letter: Option<PathBuf>,
    pub source: SourceSettings,
    pub chunk: ChunkSettings,
    pub embed: EmbedSettings,
    pub target: Arc<dyn Target>,
    /// This worker's shard of a sharded run: only its files, no whole-target step.
    pub shard: Option<Shard>,
    /// Only this whole-target step of a sharded run.
    pub step: Option<Step>,
    /// `--shards N` of a step: what `prepare` records in the target.
    pub step_shards: Option<u32>,
    /// `--batch-api`: embed through the provider's batch API first.
    pub batch: Option<crate::embed::batch_api::BatchSettings>,
}

impl LoadJob {
    /// Whether the store, not the state file, decides what `--prune`
    /// deletes: without a state file, and in a shard (whose state, if any,
    /// knows only what this worker did).
    fn prune_in_store(&self) -> bool {
        self.prune && (self.state.is_none() || self.shard.is_some())
    }
}

pub async fn load(job: LoadJob, progress: ProgressMode) -> Result<Report, SetupError> {
    if let Some(step) = job.step {
        return whole_target_step(&job, step).await;
    }
    super::lifecycle::run(steps::LoadSteps::new(job), progress).await
}

/// `--batch-api`: every chunk this load would pay for embedded through the
/// provider's batch API first (`run/batches/`), fed by the load's own
/// producer and ledger.
async fn batch_phase(
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
    super::batches::embed_in_batches(
        super::batches::BatchRun {
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

/// A state file kept in S3: fetched to a local file of this process at the
/// start (none there yet: a new one), put back at the end of the run.
pub(super) struct RemoteState {
    s3: Arc<S3>,
    bucket: String,
    key: String,
    local: PathBuf,
}

impl RemoteState {
    pub(super) async fn fetch(
        job: &LoadJob,
        remote: Option<&Remote>,
        bucket: &str,
        key: &str,
    ) -> Result<RemoteState, SetupError> {
        let local = job
            .state
            .clone()
            .ok_or_else(|| SetupError(anyhow::anyhow!("internal error: no local state path")))?;
        let s3 = match remote {
            Some(r) => r.s3.clone(),
            None => Arc::new(S3::from_settings(&job.source.s3)?),
        };
        let this = RemoteState {
            s3,
            bucket: bucket.to_string(),
            key: key.to_string(),
            local,
        };
        let _ = std::fs::remove_file(&this.local);
        match this.s3.download(bucket, key, &this.local, u64::MAX).await {
            Ok(n) => tracing::info!("--state {}: {n} bytes fetched", this.url()),
            Err(crate::source::s3::S3Error::NoSuchKey(_)) => {
                let _ = std::fs::remove_file(&this.local);
                tracing::info!("--state {}: not there yet, starting a new one", this.url());
            }
            Err(e) => {
                let _ = std::fs::remove_file(&this.local);
                return Err(SetupError(anyhow::anyhow!(
                    "--state {}: cannot fetch it: {e}",
                    this.url()
                )));
            }
        }
        Ok(this)
    }

    fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }

    /// The whole file in one PUT (a state is a few hundred bytes a document).
    async fn put(&self) -> anyhow::Result<()> {
        self.put_file(&self.local).await?;
        tracing::info!("--state {}: put back", self.url());
        Ok(())
    }

    async fn put_file(&self, file: &std::path::Path) -> anyhow::Result<()> {
        let body = tokio::fs::read(file).await?;
        self.s3
            .put(&self.bucket, &self.key, body, "application/octet-stream")
            .await?;
        Ok(())
    }

    /// Puts a snapshot of the state back every `every` while the run goes:
    /// a task killed after hours (Fargate, a spot node) then leaves most of
    /// what it did recorded. A failed checkpoint is only said; the end of
    /// the run puts the state back again.
    fn checkpoints(
        self: &Arc<Self>,
        ledger: Arc<Ledger>,
        every: std::time::Duration,
    ) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                this.checkpoint_now(&ledger).await;
            }
        })
    }

    /// Puts a snapshot of the state back now; a failure is only said.
    pub(super) async fn checkpoint_now(&self, ledger: &Arc<Ledger>) {
        let copy = self.local.with_extension("checkpoint");
        let (ledger, to) = (ledger.clone(), copy.clone());
        let snap = tokio::task::spawn_blocking(move || ledger.snapshot(&to)).await;
        let put = match snap {
            Ok(Ok(true)) => self.put_file(&copy).await,
            Ok(Ok(false)) => return,
            Ok(Err(e)) => Err(e),
            Err(e) => Err(anyhow::anyhow!("{e}")),
        };
        let _ = std::fs::remove_file(&copy);
        match put {
            Ok(()) => tracing::info!("--state {}: checkpoint put", self.url()),
            Err(e) => tracing::warn!("--state {}: checkpoint not put: {e:#}", self.url()),
        }
    }
}

impl Drop for RemoteState {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.local);
        let _ = std::fs::remove_file(self.local.with_extension("checkpoint"));
    }
}

/// `--step prepare|finish`: what a sharded run does once for the whole
/// target, before or after its workers. Nothing is read or embedded.
async fn whole_target_step(job: &LoadJob, step: Step) -> Result<Report, SetupError> {
    let started = Instant::now();
    let mut sink = job.target.sink(job.embed.dim);
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

/// The S3 client of a load with s3:// PATHs, each PATH checked.
pub async fn remote(job: &LoadJob) -> Result<Option<Remote>, SetupError> {
    if job.s3_roots.is_empty() {
        return Ok(None);
    }
    let s3 = Arc::new(S3::from_settings(&job.source.s3)?);
    for root in &job.s3_roots {
        root.check(&s3).await?;
    }
    Ok(Some(Remote {
        s3,
        spool: Arc::new(Spool::new()?),
    }))
}

/// The bookkeeping a load does while producing (`plan`'s counts only).
pub struct Books<'a> {
    pub ledger: &'a Arc<Ledger>,
    pub fatal: &'a Fatal,
    pub handle: &'a tokio::runtime::Handle,
}

/// The S3 side of a load: the client, and where fetched objects wait.
pub struct Remote {
    pub s3: Arc<S3>,
    pub spool: Arc<Spool>,
}

impl Remote {
    /// Another handle on the same client and spool.
    pub fn share(&self) -> Remote {
        Remote {
            s3: self.s3.clone(),
            spool: self.spool.clone(),
        }
    }
}

/// The run's record, as the S3 feed asks it about objects.
struct LedgerKnown {
    ledger: Arc<Ledger>,
    tenant: String,
    fatal: Fatal,
    cancel: CancellationToken,
}

impl Known for LedgerKnown {
    fn unchanged(&self, object: &str, etag: &str, size: u64) -> Option<KnownObject> {
        match tokio::task::block_in_place(|| {
            self.ledger
                .unchanged_object(&self.tenant, object, etag, size)
        }) {
            Ok(None) => None,
            Ok(Some(Unchanged::Loaded { chunks, docs })) => {
                Some(KnownObject::Loaded { chunks, docs })
            }
            Ok(Some(Unchanged::Skipped { reason, detail })) => {
                crate::records::Skip::of_content(&reason)
                    .map(|reason| KnownObject::Skipped { reason, detail })
            }
            Err(e) => {
                self.fatal.set(format!("state file: {e:#}"), &self.cancel);
                None
            }
        }
    }
}

/// Walks the local PATHs, then streams the S3 ones, reading and chunking
/// every file on the chunking pool. Blocks on the bounded queue when the
/// embed stage is behind. `plan` runs exactly this too, so its counts are
/// the load's.
#[allow(clippy::too_many_arguments)]
pub fn produce(
    pool: &rayon::ThreadPool,
    job: &LoadJob,
    filter: &Arc<Filter>,
    stats: &Arc<Stats>,
    cancel: &CancellationToken,
    tx: mpsc::Sender<Chunk>,
    books: Option<Books<'_>>,
    remote: Option<&Remote>,
) {
    let mut walked = source::walk(&job.paths, filter);
    if let Some(shard) = job.shard {
        let before = walked.files.len();
        walked.files.retain(|f| shard.owns(&job.tenant, &f.rel));
        Stats::add(
            &stats.files_other_shards,
            (before - walked.files.len()) as u64,
        );
    }
    Stats::add(&stats.files_seen, walked.seen);
    Stats::add(&stats.files_to_read, walked.files.len() as u64);
    for s in walked.skipped {
        stats.skip(s);
    }
    if job.s3_roots.is_empty() {
        stats.walk_done.store(true, Relaxed);
    }
    let reader = Reader {
        job,
        chunker: Chunker::new(&job.chunk),
        tenant: Arc::from(job.tenant.as_str()),
        stats,
        cancel,
        tx: &tx,
        books: books.as_ref(),
    };
    // The chunking pool, never rayon's global one: these threads block on
    // the chunk queue, and the local model drains it using rayon inside.
    pool.install(|| {
        walked
            .files
            .par_iter()
            .for_each(|file| reader.file(file, None))
    });
    let (Some(remote), Some(b)) = (remote, books.as_ref()) else {
        return;
    };
    let mut taken = Taken::default();
    for f in &walked.files {
        taken.rels.insert(hash_of(&f.rel));
        let name = f.rel.rsplit('/').next().unwrap_or(&f.rel);
        taken.names.insert(hash_of(name));
    }
    let ctx = Arc::new(FeedCtx {
        filter: filter.clone(),
        max_bytes: job.source.max_file_bytes,
        concurrency: job.source.s3.concurrency,
        known: Some(Arc::new(LedgerKnown {
            ledger: b.ledger.clone(),
            tenant: job.tenant.clone(),
            fatal: b.fatal.clone(),
            cancel: cancel.clone(),
        })),
        stats: stats.clone(),
        cancel: cancel.clone(),
        spool: remote.spool.clone(),
        taken: Arc::new(std::sync::Mutex::new(taken)),
        shard: job.shard.map(|s| (s, job.tenant.clone())),
    });
    for root in &job.s3_roots {
        if cancel.is_cancelled() {
            break;
        }
        // As many fetched objects wait as there are threads to read them.
        let (ftx, mut frx) = tokio::sync::mpsc::channel::<Fetched>(pool.current_num_threads() * 2);
        let lister = b
            .handle
            .spawn(s3::feed(remote.s3.clone(), root.clone(), ctx.clone(), ftx));
        pool.install(|| {
            std::iter::from_fn(|| frx.blocking_recv())
                .par_bridge()
                .for_each(|f| reader.file(&f.entry, Some(&f)))
        });
        match b.handle.block_on(lister) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => b.fatal.set(format!("{e:#}"), cancel),
            Err(e) => b
                .fatal
                .set(format!("internal error: the S3 feed: {e}"), cancel),
        }
    }
    stats.walk_done.store(true, Relaxed);
}

fn hash_of(s: &str) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(s)
}

/// Reads one file into documents and chunks them: what every file of a
/// load goes through, on disk or fetched from S3.
struct Reader<'a> {
    job: &'a LoadJob,
    chunker: Chunker,
    tenant: Arc<str>,
    stats: &'a Stats,
    cancel: &'a CancellationToken,
    tx: &'a mpsc::Sender<Chunk>,
    books: Option<&'a Books<'a>>,
}

impl Reader<'_> {
    fn file(&self, file: &source::FileEntry, fetched: Option<&Fetched>) {
        let stats = self.stats;
        if self.cancel.is_cancelled() {
            return;
        }
        // A fetched object is named by its S3 URL, not its spool file.
        let named = |mut skip: crate::records::Skip| {
            if let Some(f) = fetched {
                skip.path = f.object.clone();
            }
            skip
        };
        if fetched.is_none() {
            stats.count_format(source::format_name(&file.rel));
        }
        Gauges::add(&stats.gauges.files_reading, 1);
        let read = source::read_file(file, &self.job.source);
        Gauges::add(&stats.gauges.files_reading, -1);
        match read {
            Err(skip) => {
                if let (Some(f), Some(b)) = (fetched, self.books)
                    && crate::records::Skip::of_content(skip.reason).is_some()
                    && let Err(e) = b.ledger.record_object(
                        &self.tenant,
                        &f.object,
                        &f.etag,
                        f.size,
                        Vec::new(),
                        Some((skip.reason.to_string(), skip.detail.clone())),
                    )
                {
                    b.fatal.set(format!("state file: {e:#}"), self.cancel);
                }
                stats.skip(named(skip))
            }
            Ok(source::FileDocs { docs, decoded_from }) => {
                if let Some(enc) = decoded_from {
                    stats.decoded(&file.rel, enc);
                }
                // Records of one JSON/JSONL file are documents of their own:
                // spread them over the pool too, or one big file is one core.
                let produced = AtomicU64::new(0);
                let stopped = AtomicBool::new(false);
                let hashes = std::sync::Mutex::new(Vec::new());
                docs.into_par_iter().for_each(|doc| {
                    if stopped.load(Relaxed) || self.cancel.is_cancelled() {
                        return;
                    }
                    match self.doc(doc) {
                        Some((n, key_hash)) => {
                            produced.fetch_add(n, Relaxed);
                            if let (Some(kh), Some(_)) = (key_hash, fetched) {
                                hashes.lock().unwrap_or_else(|p| p.into_inner()).push(kh);
                            }
                        }
                        None => stopped.store(true, Relaxed),
                    };
                });
                if stopped.load(Relaxed) {
                    return;
                }
                if let (Some(f), Some(b)) = (fetched, self.books) {
                    let docs = hashes.into_inner().unwrap_or_else(|p| p.into_inner());
                    let skipped = docs
                        .is_empty()
                        .then(|| ("empty".to_string(), "no text to chunk".to_string()));
                    if let Err(e) = b.ledger.record_object(
                        &self.tenant,
                        &f.object,
                        &f.etag,
                        f.size,
                        docs,
                        skipped,
                    ) {
                        b.fatal.set(format!("state file: {e:#}"), self.cancel);
                        return;
                    }
                }
                if produced.load(Relaxed) > 0 {
                    Stats::add(&stats.files_with_chunks, 1);
                } else {
                    stats.skip(named(crate::records::Skip::new(
                        &file.path,
                        "empty",
                        "no text to chunk",
                    )));
                }
            }
        }
        Stats::add(&stats.files_read, 1);
    }

    /// Chunks one document and queues what needs embedding. Returns how many
    /// chunks the document has (written before or queued now), or None when the
    /// run is stopping.
    fn doc(&self, doc: crate::records::Document) -> Option<(u64, Option<(String, String)>)> {
        let (chunker, tenant, stats, cancel, tx, books) = (
            &self.chunker,
            &self.tenant,
            self.stats,
            self.cancel,
            self.tx,
            self.books,
        );
        let mut produced = 0u64;
        let key = doc.key.clone();
        let (chunks, meta, hash) = match books {
            None => (chunker.chunk(tenant, doc, String::new()), None, None),
            Some(b) => {
                let hash = chunker.doc_hash(&doc.text);
                match b.ledger.plan_doc(chunker, tenant, doc, hash.clone()) {
                    Err(e) => {
                        b.fatal.set(format!("state file: {e:#}"), cancel);
                        return None;
                    }
                    Ok(DocWork::Unchanged { chunks }) => {
                        Stats::add(&stats.chunks, chunks as u64);
                        Stats::add(&stats.chunks_unchanged, chunks as u64);
                        Stats::add(&stats.docs_unchanged, 1);
                        return Some((chunks as u64, Some((key, hash))));
                    }
                    Ok(DocWork::Embed {
                        chunks,
                        written,
                        meta,
                    }) => {
                        produced += written as u64;
                        Stats::add(&stats.chunks, written as u64);
                        Stats::add(&stats.chunks_unchanged, written as u64);
                        (chunks, meta, Some(hash))
                    }
                }
            }
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
            Gauges::add(&stats.gauges.chunks_queued, 1);
            if tx.blocking_send(chunk).is_err() {
                // The embed stage stopped (cancel or fatal error).
                Gauges::add(&stats.gauges.chunks_queued, -1);
                return None;
            }
        }
        Some((produced, hash.map(|h| (key, h))))
    }
}
