//! `load --batch-api`: before the load writes, every chunk it would pay
//! for is embedded through the provider's batch API, and the results go to
//! a store the embed stage asks first. The load that follows is the usual
//! one; it finds the vectors there and sends only what no batch answered.
//!
//! ```text
//!  feed (the load's own producer, ledger and batcher)
//!    └─► request lines ─► file (≤ --batch-max-requests, ≤ 100 MB) ─► upload ─► batch
//!  poll every --batch-poll ─► a batch is over ─► output/error lines by custom_id
//!    └─► checked vectors ─► results store (redb beside the state file)
//!  then: the load, with the results store asked before the endpoint
//! ```
//!
//! Why it cannot pay twice:
//! - every submission gets an id of its own, recorded in the state (synced)
//!   before its file is uploaded, with the keys of every input; the batch
//!   carries the id in its metadata (Bedrock: its name and request token).
//!   After a kill, a recorded batch without a batch id is looked for at the
//!   provider by that id, so a batch created just before the kill is
//!   adopted, not made again. The id is not the file's digest: a file
//!   submitted again after a failed batch is byte-identical to the first,
//!   and both batches must be polled and read;
//! - the feed leaves out every input whose vector the results store (or
//!   the embedding cache) has, every input of a batch still running, and
//!   an input it already put into this feed's files (the same text in two
//!   documents is paid for once: the results store is keyed by text);
//! - the results store is synced before a batch is marked collected in it,
//!   and a store lost with its machine is filled again from the provider's
//!   output files (kept 30 days), not by new batches.
//!
//! Inputs a batch refused (an error line) are left to the synchronous
//! path, which handles each refusal as it always does (an over-long input
//! is embedded in parts); inputs an expired or cancelled batch left undone
//! get one more batch (`--batch-fallback resubmit`) or go synchronously.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use futures::future::BoxFuture;
use tokio::sync::mpsc;

use super::SetupError;
use super::load::LoadJob;
use crate::embed::batch::Batcher;
use crate::embed::batch_api::{
    BatchApi, BatchSettings, Fallback, Job, LineOutcome, Objects, Submission, checked,
};
use crate::embed::cache::Cache;
use crate::embed::settings::EmbedSettings;
use crate::records::Chunk;
use crate::report::BatchSummary;
use crate::source::s3::S3;
use crate::source::settings::S3Settings;
use crate::state::{BatchRec, State};

/// Where the results of a load's batches wait to be written: beside its
/// state file.
pub fn results_path(state: &Path) -> PathBuf {
    let mut name = state.file_name().unwrap_or_default().to_os_string();
    name.push(".batch-results");
    state.with_file_name(name)
}

/// A request's id in its file: `r` and ten digits, eleven alphanumeric
/// characters, as Bedrock's documentation shows record ids (OpenAI takes
/// any string). Lines are joined back by it, never by position.
fn request_id(n: u32) -> String {
    format!("r{n:010}")
}

/// A new submission's id: 128 random bits, 32 hex digits (what Bedrock's
/// job names and request tokens allow, and unique across machines).
fn submission_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Marks kept in the results store.
fn collected(id: &str) -> String {
    format!("collected/{id}")
}
fn tried(key: &[u8; 32]) -> String {
    format!("tried/{}", hex::encode(key))
}
fn refused(key: &[u8; 32]) -> String {
    format!("refused/{}", hex::encode(key))
}

/// What a `tried/` mark says: how many submissions left the input undone,
/// and the last of them (`"2 <id>"`; marks of earlier versions are only
/// the count). A submission read twice (killed between its marks and its
/// `collected` mark) counts once.
fn tries(mark: Option<&str>) -> (u32, Option<&str>) {
    let Some(mark) = mark else {
        return (0, None);
    };
    let (n, last) = match mark.split_once(' ') {
        Some((n, last)) => (n, Some(last)),
        None => (mark, None),
    };
    (n.parse().unwrap_or(0), last)
}

/// A run's feed: sends into the channel every chunk the synchronous run
/// would pay for, and resolves when it is done (Err: why it stopped).
pub type Feed<'a> =
    &'a (dyn Fn(mpsc::Sender<Chunk>) -> BoxFuture<'static, Result<(), String>> + Sync);

/// What the batch phase needs of the run it goes before (a load or a
/// re-embedding).
pub struct BatchRun<'a> {
    pub embed: &'a EmbedSettings,
    /// Whose batches these are ("" for every tenant of a re-embedding).
    pub tenant: &'a str,
    /// The S3 client Bedrock's files go through, if the run has one.
    pub s3: Option<Arc<S3>>,
    pub s3_settings: &'a S3Settings,
    pub state: &'a State,
    pub feed: Feed<'a>,
    /// Called after each batch is recorded with its id (a state kept in S3
    /// is put back then: another machine must know of it).
    pub on_recorded: &'a (dyn Fn() -> BoxFuture<'static, ()> + Sync),
}

struct Batches<'a> {
    run: BatchRun<'a>,
    cfg: &'a BatchSettings,
    api: Arc<dyn BatchApi>,
    results: Cache,
    namespace: String,
    summary: BatchSummary,
    /// Inputs left undone that may go into one more batch.
    retryable: u64,
}

/// Embeds, through batches, every chunk the run would pay for; returns
/// what it did (`interrupted` on a signal: the batches stay recorded for
/// the next run). Err when a batch cannot be made or read.
pub async fn embed_in_batches(
    run: BatchRun<'_>,
    cfg: &BatchSettings,
) -> Result<BatchSummary, SetupError> {
    let started = Instant::now();
    let file = results_path(run.state.path());
    let mut b = Batches {
        api: connect(run.embed, run.s3.clone(), run.s3_settings, cfg)?,
        results: Cache::pinned(run.embed, &file)
            .with_context(|| format!("the batch results {}", file.display()))?,
        namespace: Cache::namespace_of(run.embed),
        summary: BatchSummary::default(),
        retryable: 0,
        cfg,
        run,
    };
    b.adopt().await?;
    // A batch an earlier run read that ended short (expired, cancelled)
    // may have left inputs for one more batch.
    for rec in b.ours()? {
        if let Some(status) = b.results.marked(&collected(&rec.id))?
            && !status.eq_ignore_ascii_case("completed")
        {
            b.retryable += 1;
        }
    }
    // Two passes at most: the first submits what needs paying for, the
    // second what an expired batch left undone (with --batch-fallback
    // resubmit). Each waits for every batch it knows.
    for pass in 0..2 {
        let submitted = b.feed().await?;
        if submitted == 0 && b.live()?.is_empty() {
            break;
        }
        b.wait().await?;
        if b.summary.interrupted {
            break;
        }
        // Another walk of the source only when a batch left inputs that
        // may be tried once more.
        if pass == 0 && (cfg.fallback == Fallback::Sync || b.retryable == 0) {
            break;
        }
    }
    b.summary.seconds_waited = started.elapsed().as_secs_f64();
    Ok(b.summary)
}

/// The batch API of the load's provider (Bedrock's reads and writes S3
/// through the load's S3 client).
fn connect(
    embed: &EmbedSettings,
    s3: Option<Arc<S3>>,
    s3_settings: &S3Settings,
    cfg: &BatchSettings,
) -> Result<Arc<dyn BatchApi>> {
    let objects: Option<Arc<dyn Objects>> = match &cfg.bedrock {
        Some(_) => Some(Arc::new(S3Objects(match s3 {
            Some(s3) => s3,
            None => Arc::new(S3::from_settings(s3_settings)?),
        }))),
        None => None,
    };
    crate::embed::batch_api::connect(embed, cfg, objects)
}

/// vecload's S3 client as a Bedrock batch needs it.
struct S3Objects(Arc<S3>);

#[async_trait::async_trait]
impl Objects for S3Objects {
    async fn put(&self, bucket: &str, key: &str, body: Vec<u8>) -> Result<()> {
        Ok(self.0.put(bucket, key, body, "application/jsonl").await?)
    }

    async fn keys(&self, bucket: &str, prefix: &str) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let page = self.0.list(bucket, prefix, token.as_deref(), 1000).await?;
            keys.extend(page.objects.into_iter().map(|o| o.key));
            match page.next {
                Some(t) => token = Some(t),
                None => return Ok(keys),
            }
        }
    }

    async fn lines(
        &self,
        bucket: &str,
        key: &str,
        each: &mut (dyn for<'l> FnMut(&'l [u8]) -> Result<()> + Send),
    ) -> Result<()> {
        use tokio::io::AsyncBufReadExt;
        // Spooled to disk, then read a line at a time: memory stays flat.
        let spool = Spool(std::env::temp_dir().join(format!(
            "vecload-batch-{}-{:016x}.jsonl",
            std::process::id(),
            rand::random::<u64>()
        )));
        self.0.download(bucket, key, &spool.0, u64::MAX).await?;
        let file = tokio::fs::File::open(&spool.0).await?;
        let mut reader = tokio::io::BufReader::new(file);
        let mut line = Vec::new();
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line).await? == 0 {
                return Ok(());
            }
            if !line.iter().all(u8::is_ascii_whitespace) {
                each(line.trim_ascii_end())?;
            }
        }
    }
}

/// A downloaded output file, removed when dropped.
struct Spool(PathBuf);

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// After a clean load: the batches are written, their records and results go.
pub fn forget(embed: &EmbedSettings, tenant: &str, state: &State) -> Result<()> {
    let namespace = Cache::namespace_of(embed);
    for rec in state.batches()? {
        if rec.tenant == tenant && rec.namespace == namespace {
            state.forget_batch(&rec.id)?;
        }
    }
    let file = results_path(state.path());
    match std::fs::remove_file(&file) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(anyhow!("removing {}: {e}", file.display()))
        }
        _ => Ok(()),
    }
}

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
        Some((bucket, key)) => Some(super::load::RemoteState::fetch(job, None, bucket, key).await?),
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

impl Batches<'_> {
    /// This run's batches (tenant and settings) recorded in the state.
    fn ours(&self) -> Result<Vec<BatchRec>> {
        Ok(self
            .run
            .state
            .batches()?
            .into_iter()
            .filter(|r| r.tenant == self.run.tenant && r.namespace == self.namespace)
            .collect())
    }

    /// Batches not yet read into the results store.
    fn live(&self) -> Result<Vec<BatchRec>> {
        let mut out = Vec::new();
        for r in self.ours()? {
            if self.results.marked(&collected(&r.id))?.is_none() {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Recorded batches without an id (killed between recording and
    /// creating): found at the provider by their submission's id, or
    /// forgotten (nothing was paid for; the feed submits their inputs).
    async fn adopt(&mut self) -> Result<()> {
        for mut rec in self.ours()? {
            if rec.batch_id.is_some() {
                continue;
            }
            let sub = Submission {
                id: &rec.id,
                digest: &rec.digest,
                tenant: &rec.tenant,
            };
            match self.api.find(&sub).await? {
                Some(found) => {
                    tracing::info!(
                        "batch {} (submission {}) was made before the last run stopped: \
                         waiting for it",
                        found.id,
                        rec.id
                    );
                    rec.batch_id = Some(found.id);
                    self.run.state.put_batch(&rec)?;
                    (self.run.on_recorded)().await;
                }
                None => self.run.state.forget_batch(&rec.id)?,
            }
        }
        Ok(())
    }

    /// Runs the run's feed and submits, in files, the requests for every
    /// chunk no batch has answered or is answering. Returns the batches made.
    async fn feed(&mut self) -> Result<u64, SetupError> {
        let mut running: HashSet<[u8; 32]> = HashSet::new();
        for r in self.live()? {
            for request in self.run.state.batch_keys(&r.id)? {
                running.extend(request);
            }
        }
        let cache = self
            .run
            .embed
            .cache
            .as_ref()
            .and_then(|at| Cache::open(self.run.embed, at));
        let (tx, mut rx) = mpsc::channel::<Chunk>(4096);
        let producer = tokio::spawn((self.run.feed)(tx));
        let mut file = RequestFile::default();
        let mut batcher =
            Batcher::new(self.run.embed.batch_size, self.run.embed.max_request_tokens);
        let mut made = 0u64;
        let mut pending: Vec<Chunk> = Vec::new();
        let mut open = true;
        let outcome: Result<(), SetupError> = async {
            while open {
                match rx.recv().await {
                    Some(c) => pending.push(c),
                    None => open = false,
                }
                if pending.len() < 256 && open {
                    continue;
                }
                let group = std::mem::take(&mut pending);
                for chunk in self.to_submit(group, &mut running, cache.as_ref()).await? {
                    if let Some(request) = batcher.push(chunk) {
                        made += self.add(&mut file, request).await?;
                    }
                }
            }
            if let Some(request) = batcher.take() {
                made += self.add(&mut file, request).await?;
            }
            if file.requests as usize >= self.cfg.min_requests {
                self.submit(std::mem::take(&mut file)).await?;
                made += 1;
            } else if file.requests > 0 {
                tracing::info!(
                    "{} requests left, fewer than a batch takes ({}): they go synchronously",
                    file.requests,
                    self.cfg.min_requests
                );
                self.summary.inputs_too_few += file.inputs as u64;
                self.summary.inputs_failed += file.inputs as u64;
            }
            Ok(())
        }
        .await;
        // Closing the channel stops the feed.
        drop(rx);
        let fed = producer.await;
        outcome?;
        match fed {
            Ok(Ok(())) => Ok(made),
            Ok(Err(e)) => Err(SetupError(anyhow!(e))),
            Err(e) => Err(SetupError(anyhow!("internal error: the feed: {e}"))),
        }
    }

    /// The chunks of `group` to put into a batch: not answered (results
    /// store, embedding cache), not in a running batch or already in this
    /// feed (`taken`, which the chosen ones join), not refused by one, and
    /// not tried twice (or once, with --batch-fallback sync).
    async fn to_submit(
        &self,
        group: Vec<Chunk>,
        taken: &mut HashSet<[u8; 32]>,
        cache: Option<&Cache>,
    ) -> Result<Vec<Chunk>, SetupError> {
        let (results, cache) = (self.results.clone(), cache.cloned());
        let keys: Vec<[u8; 32]> = group.iter().map(|c| self.results.key(&c.text)).collect();
        let running: Vec<bool> = keys.iter().map(|k| taken.contains(k)).collect();
        let most_tries = self.most_tries();
        let (keys, decided) = tokio::task::spawn_blocking(move || -> Result<_> {
            let have = results.get(&keys);
            let cached = match &cache {
                Some(c) => c.get(&keys),
                None => vec![None; keys.len()],
            };
            let names: Vec<String> = keys.iter().flat_map(|k| [refused(k), tried(k)]).collect();
            let marks = results.marks(&names)?;
            let decided: Vec<bool> = (0..keys.len())
                .map(|i| {
                    let skip = have[i].is_some()
                        || cached[i].is_some()
                        || running[i]
                        || marks[2 * i].is_some()
                        || tries(marks[2 * i + 1].as_deref()).0 >= most_tries;
                    !skip
                })
                .collect();
            Ok((keys, decided))
        })
        .await
        .map_err(|e| SetupError(anyhow!("internal error: the batch look-up: {e}")))??;
        // A text twice in one group (or in an earlier one) is taken once.
        Ok(group
            .into_iter()
            .zip(keys)
            .zip(decided)
            .filter_map(|((c, key), submit)| (submit && taken.insert(key)).then_some(c))
            .collect())
    }

    /// How many batches an input is put into before it goes synchronously.
    fn most_tries(&self) -> u32 {
        match self.cfg.fallback {
            Fallback::Resubmit => 2,
            Fallback::Sync => 1,
        }
    }

    /// Adds one request to the file; submits the file when it is full.
    /// Returns the batches made (0 or 1).
    async fn add(
        &mut self,
        file: &mut RequestFile,
        request: Vec<Chunk>,
    ) -> Result<u64, SetupError> {
        let line = {
            let texts: Vec<&str> = request.iter().map(|c| c.text.as_str()).collect();
            self.api.request_line(&request_id(file.requests), &texts)
        };
        let mut made = 0;
        let api = self.api.limits();
        if file.requests > 0
            && (file.requests as usize >= self.cfg.max_requests.min(api.max_requests)
                || file.bytes.len() + line.len() > self.cfg.max_bytes.min(api.max_bytes)
                || file.inputs + request.len() > self.cfg.max_inputs.min(api.max_inputs))
        {
            self.submit(std::mem::take(file)).await?;
            made = 1;
            return Ok(made + Box::pin(self.add(file, request)).await?);
        }
        file.bytes.extend_from_slice(line.as_bytes());
        file.requests += 1;
        file.inputs += request.len();
        file.tokens += request.iter().map(|c| u64::from(c.tokens)).sum::<u64>();
        file.keys
            .push(request.iter().map(|c| self.results.key(&c.text)).collect());
        Ok(made)
    }

    /// Records, uploads and makes one batch; each step recorded before the
    /// next is taken.
    async fn submit(&mut self, file: RequestFile) -> Result<(), SetupError> {
        let digest = hex::encode(Sha256::digest(&file.bytes));
        let id = submission_id();
        let mut rec = BatchRec {
            id: id.clone(),
            digest: digest.clone(),
            tenant: self.run.tenant.to_string(),
            namespace: self.namespace.clone(),
            file_id: None,
            batch_id: None,
            requests: file.requests,
            inputs: file.keys.iter().map(|k| k.len() as u64).sum(),
            tokens: file.tokens,
            submitted: crate::shard::now(),
            round: 1,
        };
        self.run.state.put_batch_with_keys(&rec, &file.keys)?;
        let name = format!("vecload-{id}.jsonl");
        let file_id = self.api.upload(&name, &file.bytes).await?;
        rec.file_id = Some(file_id.clone());
        self.run.state.put_batch(&rec)?;
        let sub = Submission {
            id: &id,
            digest: &digest,
            tenant: self.run.tenant,
        };
        let made = self.api.create(&file_id, &sub).await?;
        // For the tests: the one moment a kill cannot be aimed at from
        // outside, the batch made and its id not yet recorded.
        if std::env::var_os("VECLOAD_CRASH_AFTER_BATCH_CREATE").is_some() {
            std::process::abort();
        }
        tracing::info!(
            "batch {} submitted: {} requests, {} inputs, {} tokens ({})",
            made.id,
            rec.requests,
            rec.inputs,
            rec.tokens,
            self.api.describe()
        );
        rec.batch_id = Some(made.id);
        self.run.state.put_batch(&rec)?;
        self.summary.submitted += 1;
        (self.run.on_recorded)().await;
        Ok(())
    }

    /// Polls until every live batch is over and read.
    async fn wait(&mut self) -> Result<(), SetupError> {
        let mut last_status: HashMap<String, String> = HashMap::new();
        // Listening from now on, not only while asleep: a signal that
        // arrives during a call to the API is not lost.
        let stop = CancellationToken::new();
        let listener = {
            let stop = stop.clone();
            tokio::spawn(async move {
                stop_signal().await;
                stop.cancel();
            })
        };
        let _listening = AbortOnDrop(listener);
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
        self.summary.inputs_failed += refusals + given_up;
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

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// SIGINT or SIGTERM.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// One request file being written.
#[derive(Default)]
struct RequestFile {
    bytes: Vec<u8>,
    requests: u32,
    inputs: usize,
    tokens: u64,
    /// Per request, the results-store keys of its inputs.
    keys: Vec<Vec<[u8; 32]>>,
}

/// Makes a future boxed for `on_recorded`.
pub fn nothing() -> futures::future::BoxFuture<'static, ()> {
    Box::pin(async {})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_eleven_alphanumerics_and_read_back() {
        let id = request_id(42);
        assert_eq!(id, "r0000000042");
        assert!(id.len() == 11 && id.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(
            id.strip_prefix('r').and_then(|n| n.parse::<usize>().ok()),
            Some(42)
        );
    }

    #[test]
    fn results_live_beside_the_state_file() {
        assert_eq!(
            results_path(Path::new("/d/.vecload/pg-x.redb")),
            PathBuf::from("/d/.vecload/pg-x.redb.batch-results")
        );
    }
}
