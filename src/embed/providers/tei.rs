//! Hugging Face text-embeddings-inference, native API: `GET /info` once, then
//! `POST /embed`. TEI refuses a batch over its `max_client_batch_size` and an
//! input over the model's `max_input_length` (both 413 "Validation"), so
//! both are read from `/info` first and respected: batches are capped, and an
//! over-long input is embedded in parts by the stage. `truncate` is sent
//! only when the user asks (`--embed-truncate`): otherwise the server would
//! cut text silently.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::embed::http::{self, Endpoints};
use crate::embed::settings::EmbedSettings;
use crate::embed::{EmbedError, Embedder};
use crate::settings::Secret;

/// The part of TEI's `/info` that bounds what a client may send.
#[derive(Debug, Clone, Deserialize)]
pub struct TeiInfo {
    #[serde(default)]
    pub model_id: String,
    pub max_client_batch_size: usize,
    pub max_input_length: usize,
    #[serde(default)]
    pub max_concurrent_requests: Option<usize>,
    #[serde(default)]
    pub version: Option<String>,
}

pub struct TeiEmbedder {
    client: reqwest::Client,
    endpoints: Endpoints,
    truncate: bool,
    key: Option<Secret>,
    info: TeiInfo,
}

#[derive(Serialize)]
struct Request<'a> {
    inputs: &'a [&'a str],
    truncate: bool,
    normalize: bool,
}

#[derive(Deserialize)]
struct Vector(#[serde(deserialize_with = "crate::embed::http::lenient_floats")] Vec<f32>);

impl TeiEmbedder {
    /// Reads `/info` from every server: they must serve the same model, and
    /// the tightest limits of them all apply.
    pub async fn connect(cfg: &EmbedSettings) -> anyhow::Result<TeiEmbedder> {
        let client = http::client(cfg)?;
        let mut info: Option<TeiInfo> = None;
        for url in &cfg.urls {
            let mut req = client.get(format!("{url}/info"));
            if let Some(k) = &cfg.api_key {
                req = req.bearer_auth(k.expose());
            }
            let bytes = http::send(req, cfg.api_key.as_ref())
                .await
                .map_err(|e| anyhow::anyhow!("TEI at {url}: GET /info failed: {e}"))?;
            let this: TeiInfo = serde_json::from_slice(&bytes).map_err(|e| {
                anyhow::anyhow!(
                    "TEI at {url}: GET /info did not answer as text-embeddings-inference does ({e}); \
                     is --embed-provider right for this server?"
                )
            })?;
            info = Some(match info {
                None => this,
                Some(prev) if prev.model_id != this.model_id => anyhow::bail!(
                    "TEI servers serve different models: {} and {} ({url})",
                    prev.model_id,
                    this.model_id
                ),
                Some(prev) => TeiInfo {
                    max_client_batch_size: prev
                        .max_client_batch_size
                        .min(this.max_client_batch_size),
                    max_input_length: prev.max_input_length.min(this.max_input_length),
                    max_concurrent_requests: prev
                        .max_concurrent_requests
                        .min(this.max_concurrent_requests),
                    ..prev
                },
            });
        }
        let info = info.ok_or_else(|| anyhow::anyhow!("--embed-url is required"))?;
        if info.max_client_batch_size == 0 || info.max_input_length == 0 {
            anyhow::bail!("TEI's /info reports a limit of 0: {info:?}");
        }
        Ok(TeiEmbedder {
            client,
            endpoints: Endpoints::new(cfg.urls.iter().map(|u| format!("{u}/embed")).collect()),
            truncate: cfg.truncate,
            key: cfg.api_key.clone(),
            info,
        })
    }

    pub fn info(&self) -> &TeiInfo {
        &self.info
    }
}

#[async_trait]
impl Embedder for TeiEmbedder {
    fn describe(&self) -> String {
        format!(
            "{} (TEI, model {}, at most {} inputs per request, {} tokens per input)",
            self.endpoints.describe(),
            self.info.model_id,
            self.info.max_client_batch_size,
            self.info.max_input_length
        )
    }

    async fn embed(&self, inputs: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let body = Request {
            inputs,
            truncate: self.truncate,
            normalize: true,
        };
        let endpoint = self.endpoints.pick();
        let mut req = self.client.post(endpoint.url()).json(&body);
        if let Some(k) = &self.key {
            req = req.bearer_auth(k.expose());
        }
        let bytes = http::send(req, self.key.as_ref()).await?;
        let vectors: Vec<Vector> = http::parse(&bytes)?;
        // TEI answers in input order and without indexes: a count mismatch
        // is the only misplacement that can be seen.
        if vectors.len() != inputs.len() {
            return Err(EmbedError::Transient {
                message: format!(
                    "TEI returned {} vectors for {} inputs",
                    vectors.len(),
                    inputs.len()
                ),
                retry_after: None,
            });
        }
        Ok(vectors.into_iter().map(|v| v.0).collect())
    }
}

/// `tei`: text-embeddings-inference's native API; its `/info` caps batch
/// size and concurrency.
pub struct Tei;
pub const TEI: Tei = Tei;

#[async_trait]
impl super::Provider for Tei {
    fn name(&self) -> &'static str {
        "tei"
    }
    fn aliases(&self) -> &'static [&'static str] {
        &["text-embeddings-inference"]
    }
    fn concurrency(&self, servers: usize, _model: &str) -> usize {
        4 * servers
    }
    fn needs_model(&self) -> bool {
        false
    }
    async fn connect(
        &self,
        cfg: &EmbedSettings,
    ) -> anyhow::Result<(std::sync::Arc<dyn Embedder>, EmbedSettings)> {
        let mut cfg = cfg.clone();
        let tei = TeiEmbedder::connect(&cfg).await?;
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
        Ok((std::sync::Arc::new(tei), cfg))
    }
}
