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

mod collect;
mod list;
mod s3_objects;
mod submit;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, anyhow};

use futures::future::BoxFuture;
use tokio::sync::mpsc;

use super::SetupError;
use crate::embed::batch_api::{BatchApi, BatchSettings, Fallback, Objects, Submission};
use crate::embed::cache::Cache;
use crate::embed::settings::EmbedSettings;
use crate::records::Chunk;
use crate::report::BatchSummary;
use crate::source::s3::S3;
use crate::source::settings::S3Settings;
use crate::state::{BatchRec, State};
pub use list::{BatchView, list};
use s3_objects::S3Objects;

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
    let s = &mut b.summary;
    s.inputs_failed = s.inputs_refused + s.inputs_undone + s.inputs_too_few;
    s.seconds_waited = started.elapsed().as_secs_f64();
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

    /// How many batches an input is put into before it goes synchronously.
    fn most_tries(&self) -> u32 {
        match self.cfg.fallback {
            Fallback::Resubmit => 2,
            Fallback::Sync => 1,
        }
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
