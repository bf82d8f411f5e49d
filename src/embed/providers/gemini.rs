//! `gemini`: Google's Gemini API embeddings as LightRAG 1.5.7's
//! `gemini_embed` asks for them through google-genai:
//! `POST {base}/v1beta/models/{model}:batchEmbedContents`, the key in
//! `x-goog-api-key`, `taskType` RETRIEVAL_DOCUMENT (RETRIEVAL_QUERY for a
//! question in asymmetric mode; GEMINI_EMBEDDING_TASK_TYPE overrides both),
//! `outputDimensionality` always, and vectors shorter than 3072 scaled to
//! unit length afterwards, as LightRAG does, so both store the same vector.
//! Vertex AI (GOOGLE_GENAI_USE_VERTEXAI) is refused with a reason: its
//! OAuth credentials are not read here.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::embed::http::{self, Endpoints};
use crate::embed::settings::{EmbedFlags, EmbedSettings, Purpose};
use crate::embed::{EmbedError, Embedder};
use crate::settings::{ConfigError, Secret, bad};

/// What LightRAG puts in EMBEDDING_BINDING_HOST to mean "Google's own".
const DEFAULT_ENDPOINT_SENTINEL: &str = "DEFAULT_GEMINI_ENDPOINT";
const DEFAULT_ENDPOINT: &str = "https://generativelanguage.googleapis.com";
/// Requests per batchEmbedContents call the API accepts.
const MAX_BATCH: usize = 100;
/// Gemini returns unit vectors only at full length.
const FULL_DIM: usize = 3072;

pub struct GeminiEmbedder {
    client: reqwest::Client,
    endpoints: Endpoints,
    model: String,
    dim: usize,
    key: Option<Secret>,
    task: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Request<'a> {
    requests: Vec<One<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct One<'a> {
    model: &'a str,
    content: Content<'a>,
    task_type: &'a str,
    output_dimensionality: usize,
}

#[derive(Serialize)]
struct Content<'a> {
    parts: [Part<'a>; 1],
}

#[derive(Serialize)]
struct Part<'a> {
    text: &'a str,
}

#[derive(Deserialize)]
struct Response {
    #[serde(default)]
    embeddings: Vec<Values>,
}

#[derive(Deserialize)]
struct Values {
    #[serde(deserialize_with = "crate::embed::http::lenient_floats")]
    values: Vec<f32>,
}

impl GeminiEmbedder {
    pub fn new(cfg: &EmbedSettings) -> anyhow::Result<GeminiEmbedder> {
        let model = cfg.model.trim_start_matches("models/").to_string();
        let path = format!(
            "/v1beta/models/{}:batchEmbedContents",
            url::form_urlencoded::byte_serialize(model.as_bytes()).collect::<String>()
        );
        Ok(GeminiEmbedder {
            client: http::client(cfg)?,
            endpoints: Endpoints::new(cfg.urls.iter().map(|u| format!("{u}{path}")).collect()),
            model,
            dim: cfg.dim,
            key: cfg.api_key.clone(),
            task: task(cfg),
        })
    }
}

/// LightRAG's task: the configured one, else by what is embedded.
fn task(cfg: &EmbedSettings) -> String {
    cfg.options.task.clone().unwrap_or_else(|| {
        match (cfg.asymmetric, cfg.purpose) {
            (true, Purpose::Query) => "RETRIEVAL_QUERY",
            _ => "RETRIEVAL_DOCUMENT",
        }
        .to_string()
    })
}

#[async_trait]
impl Embedder for GeminiEmbedder {
    fn describe(&self) -> String {
        format!(
            "{} (Gemini, model {}, {})",
            self.endpoints.describe(),
            self.model,
            self.task
        )
    }

    async fn embed(&self, inputs: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let model = format!("models/{}", self.model);
        let body = Request {
            requests: inputs
                .iter()
                .map(|text| One {
                    model: &model,
                    content: Content {
                        parts: [Part { text }],
                    },
                    task_type: &self.task,
                    output_dimensionality: self.dim,
                })
                .collect(),
        };
        let endpoint = self.endpoints.pick();
        let mut req = self.client.post(endpoint.url()).json(&body);
        if let Some(k) = &self.key {
            req = req.header("x-goog-api-key", k.expose());
        }
        let bytes = http::send(req, self.key.as_ref()).await?;
        let parsed: Response = http::parse(&bytes)?;
        if parsed.embeddings.len() != inputs.len() {
            return Err(EmbedError::Transient {
                message: format!(
                    "Gemini returned {} vectors for {} inputs",
                    parsed.embeddings.len(),
                    inputs.len()
                ),
                retry_after: None,
            });
        }
        Ok(parsed
            .embeddings
            .into_iter()
            .map(|v| {
                let mut v = v.values;
                if self.dim < FULL_DIM {
                    unit(&mut v);
                }
                v
            })
            .collect())
    }
}

/// Scales `v` to length one (a zero vector stays as it is, as in LightRAG).
fn unit(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

pub struct Gemini;
pub const GEMINI: Gemini = Gemini;

#[async_trait]
impl super::Provider for Gemini {
    fn name(&self) -> &'static str {
        "gemini"
    }
    fn asymmetry(&self) -> super::Asymmetry {
        super::Asymmetry::Task
    }
    fn aliases(&self) -> &'static [&'static str] {
        &["google"]
    }
    fn batch_size(&self, _model: &str) -> usize {
        MAX_BATCH
    }
    fn concurrency(&self, _servers: usize, _model: &str) -> usize {
        4
    }
    fn needs_url(&self) -> bool {
        false
    }
    fn default_model(&self) -> Option<&'static str> {
        Some("gemini-embedding-001")
    }
    /// gemini-embedding-001 reads 2,048 tokens and cuts the rest silently;
    /// at about three characters a token (less for CJK, where --chunk-tokens
    /// keeps chunks far shorter anyway) longer chunks are sent in parts.
    fn max_input_chars(&self, _model: &str) -> Option<usize> {
        Some(6_000)
    }
    fn check(
        &self,
        s: &mut EmbedSettings,
        _flags: &EmbedFlags,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        let get = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        if get("GOOGLE_GENAI_USE_VERTEXAI").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Err(bad(
                "GOOGLE_GENAI_USE_VERTEXAI=true: vecload reaches Gemini through the Gemini API \
                 with a key, not Vertex AI; unset it and give GEMINI_API_KEY \
                 (or EMBEDDING_BINDING_API_KEY)",
            ));
        }
        s.urls.retain(|u| u != DEFAULT_ENDPOINT_SENTINEL);
        if s.urls.is_empty() {
            s.urls = vec![DEFAULT_ENDPOINT.into()];
        }
        for u in &s.urls {
            url::Url::parse(u)
                .map_err(|e| bad(format!("--embed-url (EMBEDDING_BINDING_HOST) {u:?}: {e}")))?;
        }
        if s.api_key.is_none() {
            s.api_key = get("GEMINI_API_KEY")
                .or_else(|| get("LLM_BINDING_API_KEY"))
                .map(Secret::new);
        }
        if s.api_key.is_none() {
            return Err(bad(
                "gemini needs a key: GEMINI_API_KEY or --embed-api-key (EMBEDDING_BINDING_API_KEY)",
            ));
        }
        if !(128..=FULL_DIM).contains(&s.dim) {
            return Err(bad(format!(
                "--embed-dim (EMBEDDING_DIM) {} is out of Gemini's range 128 to {FULL_DIM}",
                s.dim
            )));
        }
        s.options.task = get("GEMINI_EMBEDDING_TASK_TYPE").map(|t| t.trim().to_ascii_uppercase());
        s.batch_size = s.batch_size.min(MAX_BATCH);
        Ok(())
    }
    async fn connect(
        &self,
        cfg: &EmbedSettings,
    ) -> anyhow::Result<(Arc<dyn Embedder>, EmbedSettings)> {
        Ok((Arc::new(GeminiEmbedder::new(cfg)?), cfg.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortened_vectors_are_scaled_to_unit_length() {
        let mut v = vec![3.0, 4.0];
        unit(&mut v);
        assert_eq!(v, vec![0.6, 0.8]);
        let mut zero = vec![0.0, 0.0];
        unit(&mut zero);
        assert_eq!(zero, vec![0.0, 0.0]);
    }

    #[test]
    fn the_task_follows_lightrag() {
        let mut s = EmbedSettings::default();
        assert_eq!(task(&s), "RETRIEVAL_DOCUMENT");
        s.purpose = Purpose::Query;
        // Symmetric mode embeds questions as documents, as LightRAG does.
        assert_eq!(task(&s), "RETRIEVAL_DOCUMENT");
        s.asymmetric = true;
        assert_eq!(task(&s), "RETRIEVAL_QUERY");
        s.options.task = Some("SEMANTIC_SIMILARITY".into());
        assert_eq!(task(&s), "SEMANTIC_SIMILARITY");
    }
}
