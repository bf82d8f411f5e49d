//! Embedding through a provider's batch API: the same requests the
//! synchronous path sends, written to files, run by the provider within
//! 24 hours at half the price, and read back into a store of results the
//! embed stage asks before it sends anything (`run/batches.rs` drives it).

pub mod openai;

use std::time::Duration;

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

    /// Most requests in one batch's file (OpenAI allows 50,000 and 200 MB).
    #[arg(long, value_name = "N", default_value_t = openai::MAX_REQUESTS)]
    pub batch_max_requests: usize,
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
}

/// The price of batch embeddings against the synchronous price: OpenAI's
/// Batch API and Bedrock's batch inference both charge half.
pub const PRICE_RATIO: f64 = 0.5;

impl BatchFlags {
    pub fn settings(&self, embed: &EmbedSettings) -> Result<Option<BatchSettings>, ConfigError> {
        if !self.batch_api {
            return Ok(None);
        }
        if embed.provider.name() != "openai" {
            return Err(crate::settings::bad(format!(
                "--batch-api: vecload speaks the batch API of OpenAI (--embed-provider openai); \
                 {} has none it speaks yet (Azure OpenAI and Bedrock batch inference are not \
                 done): leave --batch-api off to embed synchronously",
                embed.provider.name()
            )));
        }
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
        Ok(Some(BatchSettings {
            fallback: self.batch_fallback,
            poll: Duration::from_secs_f64(self.batch_poll),
            max_requests: self.batch_max_requests,
            max_bytes: 100 * 1024 * 1024,
            max_inputs: openai::MAX_INPUTS,
        }))
    }
}
