//! `vecload load`: documents from the file system or S3, chunked on the
//! chunking pool, through the driver's embed and sink stages, then the
//! post-steps (state sync, --prune, index build, counts).
//!
//!   walk ─► read+chunk (chunking pool) ─► embed (tokio, bounded) ─► sink (writers)
//!
//! Here: the job and the walk (`produce`). Beside it: the load's part of
//! the run lifecycle (`steps.rs`), the feed of `--batch-api`
//! (`batch_feed.rs`), the state kept in S3 (`state_s3.rs`), and a sharded
//! load's `--step prepare|finish` (`whole_target.rs`).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};

use rayon::prelude::*;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

mod batch_feed;
mod state_s3;
mod steps;
mod whole_target;

use batch_feed::batch_phase;
pub(crate) use state_s3::RemoteState;
use whole_target::whole_target_step;

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
    /// `--assume-space` / `--probe-space`.
    pub space_policy: crate::run::space::Policy,
    /// `--quality` and its gate, measured at the end.
    pub quality: crate::run::quality::QualitySettings,
}

impl LoadJob {
    /// Whether the store, not the state file, decides what `--prune`
    /// deletes: without a state file, and in a shard (whose state, if any,
    /// knows only what this worker did).
    pub(crate) fn prune_in_store(&self) -> bool {
        self.prune && (self.state.is_none() || self.shard.is_some())
    }
}

pub async fn load(job: LoadJob, progress: ProgressMode) -> Result<Report, SetupError> {
    if let Some(step) = job.step {
        return whole_target_step(&job, step).await;
    }
    super::lifecycle::run(steps::LoadSteps::new(job), progress).await
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
