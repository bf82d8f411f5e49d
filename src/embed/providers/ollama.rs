//! Ollama's native `POST /api/embed`. Ollama cuts over-long input silently by
//! default, so `truncate: false` is always sent: it then refuses such input,
//! and the stage embeds it in parts. An Ollama server embeds one request at a
//! time, so the default concurrency is one request per server, and several
//! servers (`--embed-url` more than once) take turns.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::embed::http::{self, Endpoints};
use crate::embed::settings::EmbedSettings;
use crate::embed::{EmbedError, Embedder};
use crate::settings::Secret;

pub struct OllamaEmbedder {
    client: reqwest::Client,
    endpoints: Endpoints,
    model: String,
    dimensions: Option<usize>,
    key: Option<Secret>,
    /// Put before each input in asymmetric mode (LightRAG's
    /// EMBEDDING_DOCUMENT_PREFIX / EMBEDDING_QUERY_PREFIX).
    prefix: Option<String>,
}

#[derive(Serialize)]
struct Request<'a> {
    model: &'a str,
    input: &'a [&'a str],
    truncate: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    dimensions: Option<usize>,
}

#[derive(Deserialize)]
struct Response {
    embeddings: Vec<Vector>,
}

#[derive(Deserialize)]
struct Vector(#[serde(deserialize_with = "crate::embed::http::lenient_floats")] Vec<f32>);

impl OllamaEmbedder {
    pub fn new(cfg: &EmbedSettings) -> anyhow::Result<OllamaEmbedder> {
        Ok(OllamaEmbedder {
            client: http::client(cfg)?,
            endpoints: Endpoints::new(
                cfg.urls
                    .iter()
                    // LightRAG's EMBEDDING_BINDING_HOST for Ollama is the server root.
                    .map(|u| format!("{}/api/embed", u.trim_end_matches("/api")))
                    .collect(),
            ),
            model: cfg.model.clone(),
            dimensions: cfg.send_dimensions.then_some(cfg.dim),
            key: cfg.api_key.clone(),
            prefix: Some(cfg.prefixed("").into_owned()).filter(|p| !p.is_empty()),
        })
    }
}

#[async_trait]
impl Embedder for OllamaEmbedder {
    fn describe(&self) -> String {
        format!(
            "{} (Ollama, model {})",
            self.endpoints.describe(),
            self.model
        )
    }

    async fn embed(&self, inputs: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let prefixed: Vec<String>;
        let with_prefix: Vec<&str>;
        let inputs = match &self.prefix {
            Some(p) => {
                prefixed = inputs.iter().map(|t| format!("{p}{t}")).collect();
                with_prefix = prefixed.iter().map(String::as_str).collect();
                &with_prefix[..]
            }
            None => inputs,
        };
        let body = Request {
            model: &self.model,
            input: inputs,
            truncate: false,
            dimensions: self.dimensions,
        };
        let endpoint = self.endpoints.pick();
        let mut req = self.client.post(endpoint.url()).json(&body);
        // Ollama itself takes no key; a proxy in front of it may.
        if let Some(k) = &self.key {
            req = req.bearer_auth(k.expose());
        }
        let bytes = http::send(req, self.key.as_ref()).await?;
        let parsed: Response = http::parse(&bytes)?;
        if parsed.embeddings.len() != inputs.len() {
            return Err(EmbedError::Transient {
                message: format!(
                    "Ollama returned {} vectors for {} inputs",
                    parsed.embeddings.len(),
                    inputs.len()
                ),
                retry_after: None,
            });
        }
        Ok(parsed.embeddings.into_iter().map(|v| v.0).collect())
    }
}

/// `ollama`: `POST {url}/api/embed`; Ollama embeds one request at a time.
pub struct Ollama;
pub const OLLAMA: Ollama = Ollama;

#[async_trait]
impl super::Provider for Ollama {
    fn name(&self) -> &'static str {
        "ollama"
    }
    fn default_url(&self) -> Option<&'static str> {
        Some("http://localhost:11434")
    }
    fn asymmetry(&self) -> super::Asymmetry {
        super::Asymmetry::Prefix
    }
    fn concurrency(&self, servers: usize, _model: &str) -> usize {
        servers
    }
    async fn connect(
        &self,
        cfg: &EmbedSettings,
    ) -> anyhow::Result<(std::sync::Arc<dyn Embedder>, EmbedSettings)> {
        Ok((std::sync::Arc::new(OllamaEmbedder::new(cfg)?), cfg.clone()))
    }
}
