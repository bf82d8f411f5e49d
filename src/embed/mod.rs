//! Turning chunks into vectors. Providers implement `Embedder` (one request,
//! no retries); everything around a request lives here once: batching by
//! count and token budget, bounded concurrency, retries with backoff, and
//! the checks every vector passes before it may be written.

mod backoff;
pub mod batch;
mod http;
pub mod limiter;
pub mod local;
pub mod ollama;
pub mod openai;
pub mod pace;
pub mod stage;
pub mod tei;

use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

use crate::chunk::Chunk;
use crate::config::{EmbedConfig, Provider};

/// The embedder for `cfg`, and `cfg` with the limits the provider reported
/// applied (TEI's batch and concurrency caps). A server that cannot be
/// reached or a model folder that cannot be read fails here, before any
/// file is read.
pub async fn connect(cfg: &EmbedConfig) -> anyhow::Result<(Arc<dyn Embedder>, EmbedConfig)> {
    let mut cfg = cfg.clone();
    let embedder: Arc<dyn Embedder> = match cfg.provider {
        Provider::OpenAi => Arc::new(openai::OpenAiEmbedder::new(&cfg)?),
        Provider::Ollama => Arc::new(ollama::OllamaEmbedder::new(&cfg)?),
        Provider::Tei => {
            let tei = tei::TeiEmbedder::connect(&cfg).await?;
            let info = tei.info();
            if cfg.batch_size > info.max_client_batch_size {
                tracing::info!(
                    "TEI takes at most {} inputs per request (max_client_batch_size): --batch-size {} lowered",
                    info.max_client_batch_size,
                    cfg.batch_size
                );
                cfg.batch_size = info.max_client_batch_size;
            }
            if let Some(max) = info.max_concurrent_requests
                && max > 0
                && cfg.concurrency > max
            {
                tracing::info!(
                    "TEI takes at most {max} requests at once (max_concurrent_requests): --concurrency {} lowered",
                    cfg.concurrency
                );
                cfg.concurrency = max;
            }
            Arc::new(tei)
        }
        Provider::Local => {
            let dir = cfg
                .model_dir
                .clone()
                .ok_or_else(|| anyhow::anyhow!("--embed-model-dir is required"))?;
            let started = std::time::Instant::now();
            let model = tokio::task::spawn_blocking(move || local::LocalModel::open(&dir))
                .await
                .map_err(|e| anyhow::anyhow!("loading the local model panicked: {e}"))??;
            if model.dim() != cfg.dim {
                anyhow::bail!(
                    "the local model returns {} dimensions but --embed-dim is {}",
                    model.dim(),
                    cfg.dim
                );
            }
            tracing::debug!(
                "local model loaded in {:.2}s",
                started.elapsed().as_secs_f64()
            );
            Arc::new(local::LocalEmbedder::new(model))
        }
    };
    Ok((embedder, cfg))
}

/// A chunk with its vector, checked for length and finiteness.
#[derive(Debug, Clone)]
pub struct Embedded {
    pub chunk: Chunk,
    pub vector: Vec<f32>,
}

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
