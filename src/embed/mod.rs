//! Turning chunks into vectors. Providers implement `Embedder` (one request,
//! no retries); everything around a request lives here once: batching by
//! count and token budget, bounded concurrency, retries with backoff, and
//! the checks every vector passes before it may be written.

pub mod batch;
pub mod batch_api;
pub mod cache;
mod http;
pub mod limiter;
pub mod limits;
pub mod pace;
pub mod parts;
pub mod prices;
pub mod providers;
pub mod settings;
pub mod space;
pub mod stage;

pub use providers::{connect, local};

use async_trait::async_trait;
use std::time::Duration;

#[async_trait]
pub trait Embedder: Send + Sync {
    /// Where requests go, for logs; never includes a secret.
    fn describe(&self) -> String;
    /// One request. Vectors come back in input order (providers that return
    /// them otherwise place them by the index they carry).
    async fn embed(&self, inputs: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError>;
}

/// What went wrong with one request, sorted by what the caller does next.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// Worth retrying after a pause: 408, 409, 5xx, timeouts, resets, and
    /// answers that arrived broken.
    #[error("{message}")]
    Transient {
        message: String,
        retry_after: Option<Duration>,
    },
    /// 429: the endpoint wants fewer requests. Retried, and the number of
    /// requests in flight is cut.
    #[error("{message}")]
    Throttled {
        message: String,
        retry_after: Option<Duration>,
    },
    /// The request was too big for the endpoint (too many inputs, too many
    /// tokens, or one input too long): smaller batches may succeed.
    #[error("{0}")]
    TooLarge(String),
    /// This batch will never succeed as sent (for example a 400); the run goes on.
    #[error("{0}")]
    Rejected(String),
    /// No request can succeed (bad key, unknown model, wrong vector length):
    /// stop the run.
    #[error("{0}")]
    Fatal(String),
}
