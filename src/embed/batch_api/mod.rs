//! Embedding through a provider's batch API: the same requests the
//! synchronous path sends, written to files, run by the provider within
//! 24 hours at half the price, and read back into a store of results the
//! embed stage asks before it sends anything (`run/batches/` drives it).

pub mod bedrock;
pub mod openai;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use async_trait::async_trait;
use clap::{Args, ValueEnum};

use super::settings::EmbedSettings;
use crate::settings::ConfigError;

/// What happens to inputs a batch did not answer because it expired or
/// was cancelled (inputs it refused always go the synchronous way, which
/// knows how to handle a refusal: an over-long input is embedded in parts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Fallback {
    /// Into one more batch; what that one leaves undone is sent synchronously.
    Resubmit,
    /// Sent synchronously at once, at the synchronous price.
    Sync,
}

#[derive(Debug, Clone, Args)]
pub struct BatchFlags {
    /// Embed through the provider's batch API (OpenAI's Batch API): half
    /// the price, results within 24 hours. The load submits the requests,
    /// waits, then writes as usual; run again after a kill it picks up the
    /// batches it submitted instead of paying for them again.
    #[arg(long, env = "VECLOAD_BATCH_API")]
    pub batch_api: bool,

    /// What to do with inputs an expired or cancelled batch left undone.
    #[arg(long, value_enum, default_value_t = Fallback::Resubmit)]
    pub batch_fallback: Fallback,

    /// How often to ask how the batches are doing.
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    pub batch_poll: f64,

    /// Most requests in one batch's file (OpenAI allows 50,000 and 200 MB;
    /// Bedrock 50,000 records by default).
    #[arg(long, value_name = "N", default_value_t = openai::MAX_REQUESTS)]
    pub batch_max_requests: usize,

    /// Bedrock: where the job's input and output files go (the job's role
    /// must read and write there).
    #[arg(long, env = "VECLOAD_BATCH_S3", value_name = "s3://BUCKET/PREFIX")]
    pub batch_s3: Option<String>,

    /// Bedrock: the service role the batch inference job runs as
    /// (trusted by bedrock.amazonaws.com, allowed the model and the bucket).
    #[arg(long, env = "VECLOAD_BATCH_ROLE_ARN", value_name = "ARN")]
    pub batch_role_arn: Option<String>,

    /// Bedrock: fewer records than this go synchronously instead of into a
    /// job (Bedrock's minimum records per job; 100 by default quota).
    #[arg(long, value_name = "N", default_value_t = bedrock::MIN_RECORDS)]
    pub batch_min_records: usize,
}

/// A provider's batch API, as `run/batches/` drives it: request files
/// in, batches made and polled, output lines joined by their id.
#[async_trait]
pub trait BatchApi: Send + Sync {
    fn describe(&self) -> String;
    /// Its limits of one batch.
    fn limits(&self) -> Limits;
    /// One line of a request file: the synchronous request's body for
    /// `inputs`, named `id`.
    fn request_line(&self, id: &str, inputs: &[&str]) -> String;
    /// Puts a request file where the API reads it; returns what names it
    /// to `create` (a file id, an S3 URL).
    async fn upload(&self, name: &str, content: &[u8]) -> Result<String>;
    /// Makes a batch of an uploaded file; the submission's id goes with the
    /// batch (its metadata, its name) so `find` can tell it again.
    async fn create(&self, file: &str, sub: &Submission<'_>) -> Result<Job>;
    /// The batch made for this submission, if there is one.
    async fn find(&self, sub: &Submission<'_>) -> Result<Option<Job>>;
    async fn get(&self, id: &str) -> Result<Job>;
    async fn cancel(&self, id: &str) -> Result<Job>;
    /// Hands every output and error line of a finished batch to `each`, as
    /// it is read (never the whole file in memory).
    async fn lines(
        &self,
        job: &Job,
        each: &mut (dyn for<'l> FnMut(&'l [u8]) -> Result<()> + Send),
    ) -> Result<()>;
    /// What one line says (its vectors not yet checked: see `checked`).
    fn line(&self, raw: &[u8]) -> Result<Line>;
}

/// One submission of a request file: what a batch carries so that a run
/// killed between creating it and recording its id finds it again. The id
/// is the submission's own, not the file's digest: the same file submitted
/// again (what a failed batch left undone) is another batch, paid for on
/// its own, and must be told apart from the first.
#[derive(Debug, Clone, Copy)]
pub struct Submission<'a> {
    /// 32 hex digits, made before the file is uploaded (or, for a record
    /// of an earlier version, the file's digest).
    pub id: &'a str,
    /// SHA-256 (hex) of the request file.
    pub digest: &'a str,
    pub tenant: &'a str,
}

/// A batch API's limits of one batch.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_requests: usize,
    pub max_bytes: usize,
    pub max_inputs: usize,
    /// Fewer requests than this are not worth (or not allowed) a batch:
    /// they go the synchronous way.
    pub min_requests: usize,
}

/// A batch as its API reports it.
#[derive(Debug, Clone, Default)]
pub struct Job {
    pub id: String,
    /// The API's own word for its status.
    pub status: String,
    /// No further change will come: its files are what there will be.
    pub over: bool,
    pub total: u64,
    pub completed: u64,
    pub failed: u64,
    /// Where its answers are (file ids, S3 URLs), for `lines`.
    pub outputs: Vec<String>,
    /// Why it failed, in the API's words.
    pub message: Option<String>,
}

/// One output or error line.
pub struct Line {
    /// The request it answers (`custom_id`, `recordId`).
    pub id: String,
    pub outcome: LineOutcome,
    /// Not done because the batch expired or was cancelled (tried again),
    /// rather than refused (sent the synchronous way).
    pub undone: bool,
}

/// What a line says: the vectors of its request in input order, or why
/// there are none.
pub enum LineOutcome {
    Vectors(Vec<Vec<f32>>),
    Failed(String),
}

/// Checks a request's vectors: as many as inputs, each of `dim` finite numbers.
pub fn checked(vectors: Vec<Vec<f32>>, n: usize, dim: usize) -> LineOutcome {
    if vectors.len() != n {
        return LineOutcome::Failed(format!("{} vectors for {n} inputs", vectors.len()));
    }
    for (i, v) in vectors.iter().enumerate() {
        if v.len() != dim {
            return LineOutcome::Failed(format!(
                "input {i}: a vector of length {} where {dim} was expected",
                v.len()
            ));
        }
        if !v.iter().all(|x| x.is_finite()) {
            return LineOutcome::Failed(format!("input {i}: a non-finite value"));
        }
    }
    LineOutcome::Vectors(vectors)
}

/// Where a Bedrock batch's files go, and the role it runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BedrockPlace {
    pub bucket: String,
    pub prefix: String,
    pub role_arn: String,
}

/// S3 as a Bedrock batch needs it; `run` hands vecload's S3 client in
/// (the embed stage does not know the sources).
#[async_trait]
pub trait Objects: Send + Sync {
    async fn put(&self, bucket: &str, key: &str, body: Vec<u8>) -> Result<()>;
    /// The keys under `prefix`.
    async fn keys(&self, bucket: &str, prefix: &str) -> Result<Vec<String>>;
    /// Hands each line of an object to `each`, as it is read.
    async fn lines(
        &self,
        bucket: &str,
        key: &str,
        each: &mut (dyn for<'l> FnMut(&'l [u8]) -> Result<()> + Send),
    ) -> Result<()>;
}

/// The batch API of `embed`'s provider.
pub fn connect(
    embed: &EmbedSettings,
    cfg: &BatchSettings,
    objects: Option<Arc<dyn Objects>>,
) -> Result<Arc<dyn BatchApi>> {
    match embed.provider.name() {
        "bedrock" => {
            let place = cfg.bedrock.clone().ok_or_else(|| {
                anyhow::anyhow!("--batch-api with Bedrock needs --batch-s3 and --batch-role-arn")
            })?;
            let objects = objects.ok_or_else(|| {
                anyhow::anyhow!("internal error: no S3 client for Bedrock batches")
            })?;
            Ok(Arc::new(bedrock::BedrockBatches::new(
                embed, place, objects,
            )?))
        }
        _ => Ok(Arc::new(openai::OpenAiBatches::new(embed)?)),
    }
}

/// `--batch-api`'s checked settings.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchSettings {
    pub fallback: Fallback,
    pub poll: Duration,
    pub max_requests: usize,
    /// Most bytes of one request file (held in memory for its upload).
    pub max_bytes: usize,
    /// Most inputs in one batch, across its requests.
    pub max_inputs: usize,
    /// Fewer requests go synchronously (Bedrock's minimum records per job).
    pub min_requests: usize,
    /// Bedrock: where files go and the role jobs run as.
    pub bedrock: Option<BedrockPlace>,
}

/// The price of batch embeddings against the synchronous price: OpenAI's
/// Batch API and Bedrock's batch inference both charge half.
pub const PRICE_RATIO: f64 = 0.5;

/// How long one call to a batch API (create, poll, upload, read) is
/// retried on throttling and transient failures: a budget in time.
pub const RETRY_BUDGET: std::time::Duration = std::time::Duration::from_secs(300);

impl BatchFlags {
    pub fn settings(&self, embed: &EmbedSettings) -> Result<Option<BatchSettings>, ConfigError> {
        if !self.batch_api {
            return Ok(None);
        }
        let bedrock = match embed.provider.name() {
            "openai" => None,
            "bedrock" => Some(self.bedrock_place()?),
            other => {
                return Err(crate::settings::bad(format!(
                    "--batch-api: vecload speaks OpenAI's Batch API and Bedrock batch inference; \
                     {other} has none it speaks (Azure OpenAI's global batch is not done): leave \
                     --batch-api off to embed synchronously"
                )));
            }
        };
        if !(self.batch_poll > 0.0 && self.batch_poll.is_finite()) {
            return Err(crate::settings::bad(
                "--batch-poll must be more than 0 seconds",
            ));
        }
        if !(1..=openai::MAX_REQUESTS).contains(&self.batch_max_requests) {
            return Err(crate::settings::bad(format!(
                "--batch-max-requests must be 1 to {} (the batch API's limit)",
                openai::MAX_REQUESTS
            )));
        }
        let (max_inputs, min_requests) = match bedrock {
            Some(_) => (usize::MAX, self.batch_min_records.max(1)),
            None => (openai::MAX_INPUTS, 1),
        };
        Ok(Some(BatchSettings {
            min_requests,
            bedrock,
            fallback: self.batch_fallback,
            poll: Duration::from_secs_f64(self.batch_poll),
            max_requests: self.batch_max_requests,
            max_bytes: 100 * 1024 * 1024,
            max_inputs,
        }))
    }

    fn bedrock_place(&self) -> Result<BedrockPlace, ConfigError> {
        let url = self.batch_s3.as_deref().ok_or_else(|| {
            crate::settings::bad(
                "--batch-api with Bedrock needs --batch-s3 s3://BUCKET/PREFIX (VECLOAD_BATCH_S3): \
                 batch inference reads its records from S3 and writes its output there",
            )
        })?;
        let (bucket, prefix) = url
            .strip_prefix("s3://")
            .map(|r| r.split_once('/').unwrap_or((r, "")))
            .filter(|(b, _)| !b.is_empty())
            .ok_or_else(|| {
                crate::settings::bad(format!("--batch-s3 {url}: name it s3://BUCKET/PREFIX"))
            })?;
        let role_arn = self
            .batch_role_arn
            .clone()
            .filter(|r| r.starts_with("arn:"))
            .ok_or_else(|| {
                crate::settings::bad(
                    "--batch-api with Bedrock needs --batch-role-arn arn:aws:iam::ACCOUNT:role/NAME \
                     (VECLOAD_BATCH_ROLE_ARN): the service role the job runs as",
                )
            })?;
        let prefix = prefix.trim_matches('/');
        Ok(BedrockPlace {
            bucket: bucket.to_string(),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
            role_arn,
        })
    }
}
