//! OpenAI-compatible `POST {base}/embeddings` (OpenAI, Azure-style gateways,
//! vLLM, LiteLLM, TEI's and Ollama's compatibility routes, ...), and the
//! three APIs that share its answer (`data` items placed by `index`) but
//! not its request, each as LightRAG 1.5.7 sends it:
//! - Azure OpenAI: `{endpoint}/openai/deployments/{deployment}/embeddings
//!   ?api-version=..`, the key in an `api-key` header;
//! - Jina: `task` (`text-matching`, or retrieval.passage/query in asymmetric
//!   mode), `dimensions` always, `embedding_type: "base64"`;
//! - Voyage: `input_type` only in asymmetric mode, `truncation: false` (an
//!   over-long input is refused and embedded in parts, never cut),
//!   `output_dimension` with --send-dimensions.

use std::sync::atomic::{AtomicU8, Ordering::Relaxed};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::embed::http::{self, Endpoints};
use crate::embed::settings::EmbedSettings;
use crate::embed::{EmbedError, Embedder};
use crate::settings::Secret;

pub struct OpenAiEmbedder {
    client: reqwest::Client,
    endpoints: Endpoints,
    model: String,
    dimensions: Option<usize>,
    key: Option<Secret>,
    /// Whether to ask for base64 vectors (see `Encoding`).
    encoding: AtomicU8,
    flavor: Flavor,
    /// Put before each input (asymmetric mode's document or query prefix).
    prefix: Option<String>,
    /// Jina's task, Voyage's input_type.
    task: Option<String>,
    /// Azure: the key is an Entra ID token (a bearer token).
    entra: bool,
}

/// Which API of the family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    OpenAi,
    Azure,
    Jina,
    Voyage,
}

/// Vectors as base64 of their f32 bytes are a quarter of the JSON floats'
/// size and far cheaper to decode on both ends: at 1024 dimensions decoding
/// float JSON costs more CPU than anything else vecload does. OpenAI's own
/// client asks for base64 for this reason. Not every compatible server
/// knows it: one that refuses it gets floats from then on, and one that
/// ignores it answers floats, which are read as well.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Encoding {
    /// No answer yet: base64 is asked for, and a refusal is retried with floats.
    Untried = 0,
    Base64 = 1,
    Float = 2,
}

impl Encoding {
    fn from_u8(v: u8) -> Encoding {
        match v {
            1 => Encoding::Base64,
            2 => Encoding::Float,
            _ => Encoding::Untried,
        }
    }
}

#[derive(Serialize, Default)]
struct Request<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<&'a str>,
    input: &'a [&'a str],
    #[serde(skip_serializing_if = "Option::is_none")]
    encoding_format: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dimensions: Option<usize>,
    /// Jina.
    #[serde(skip_serializing_if = "Option::is_none")]
    task: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    embedding_type: Option<&'static str>,
    /// Voyage.
    #[serde(skip_serializing_if = "Option::is_none")]
    input_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    truncation: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_dimension: Option<usize>,
}

/// An embeddings answer (also the body of a Batch API output line).
#[derive(Deserialize)]
pub(crate) struct Response {
    pub(crate) data: Vec<Item>,
}

#[derive(Deserialize)]
pub(crate) struct Item {
    index: usize,
    #[serde(deserialize_with = "http::floats_or_base64")]
    embedding: Vec<f32>,
}

impl OpenAiEmbedder {
    pub fn new(cfg: &EmbedSettings) -> anyhow::Result<OpenAiEmbedder> {
        Self::of(cfg, Flavor::OpenAi)
    }

    pub fn of(cfg: &EmbedSettings, flavor: Flavor) -> anyhow::Result<OpenAiEmbedder> {
        let urls: Vec<String> = match flavor {
            Flavor::OpenAi => cfg.urls.iter().map(|u| format!("{u}/embeddings")).collect(),
            Flavor::Azure => {
                let deployment = cfg.options.deployment.as_deref().unwrap_or(&cfg.model);
                let version = cfg
                    .options
                    .api_version
                    .as_deref()
                    .unwrap_or(AZURE_API_VERSION);
                cfg.urls
                    .iter()
                    .map(|u| {
                        format!(
                            "{u}/openai/deployments/{}/embeddings?api-version={}",
                            url::form_urlencoded::byte_serialize(deployment.as_bytes())
                                .collect::<String>(),
                            url::form_urlencoded::byte_serialize(version.as_bytes())
                                .collect::<String>()
                        )
                    })
                    .collect()
            }
            // LightRAG takes the Jina host as the whole URL.
            Flavor::Jina => cfg
                .urls
                .iter()
                .map(|u| {
                    if u.ends_with("/embeddings") {
                        u.clone()
                    } else {
                        format!("{u}/v1/embeddings")
                    }
                })
                .collect(),
            Flavor::Voyage => cfg
                .urls
                .iter()
                .map(|u| format!("{u}/v1/embeddings"))
                .collect(),
        };
        let task = match flavor {
            Flavor::Jina => Some(cfg.options.task.clone().unwrap_or_else(|| {
                match (cfg.asymmetric, cfg.purpose) {
                    (false, _) => "text-matching",
                    (true, crate::embed::settings::Purpose::Document) => "retrieval.passage",
                    (true, crate::embed::settings::Purpose::Query) => "retrieval.query",
                }
                .to_string()
            })),
            Flavor::Voyage => cfg.asymmetric.then(|| {
                match cfg.purpose {
                    crate::embed::settings::Purpose::Document => "document",
                    crate::embed::settings::Purpose::Query => "query",
                }
                .to_string()
            }),
            _ => None,
        };
        let prefix = match flavor {
            Flavor::OpenAi | Flavor::Azure => {
                let p = cfg.prefixed("");
                (!p.is_empty()).then(|| p.into_owned())
            }
            _ => None,
        };
        Ok(OpenAiEmbedder {
            client: http::client(cfg)?,
            endpoints: Endpoints::new(urls),
            model: cfg.model.clone(),
            dimensions: (cfg.send_dimensions || flavor == Flavor::Jina).then_some(cfg.dim),
            key: cfg.api_key.clone(),
            encoding: AtomicU8::new(match flavor {
                Flavor::OpenAi | Flavor::Azure => Encoding::Untried,
                // Jina answers base64 when asked in its own words; Voyage floats.
                Flavor::Jina | Flavor::Voyage => Encoding::Float,
            } as u8),
            flavor,
            prefix,
            task,
            entra: cfg.options.entra_token,
        })
    }

    async fn request(
        &self,
        inputs: &[&str],
        encoding: &'static str,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
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
        let body = match self.flavor {
            Flavor::OpenAi | Flavor::Azure => Request {
                model: Some(&self.model),
                input: inputs,
                encoding_format: Some(encoding),
                dimensions: self.dimensions,
                ..Request::default()
            },
            Flavor::Jina => Request {
                model: Some(&self.model),
                input: inputs,
                dimensions: self.dimensions,
                task: self.task.as_deref(),
                embedding_type: Some("base64"),
                ..Request::default()
            },
            Flavor::Voyage => Request {
                model: Some(&self.model),
                input: inputs,
                input_type: self.task.as_deref(),
                truncation: Some(false),
                output_dimension: self.dimensions,
                ..Request::default()
            },
        };
        let endpoint = self.endpoints.pick();
        let mut req = self.client.post(endpoint.url()).json(&body);
        if let Some(k) = &self.key {
            req = match self.flavor {
                Flavor::Azure if !self.entra => req.header("api-key", k.expose()),
                _ => req.bearer_auth(k.expose()),
            };
        }
        let bytes = http::send(req, self.key.as_ref()).await?;
        let parsed: Response = http::parse(&bytes)?;
        place_by_index(parsed.data, inputs.len())
    }
}

/// Azure OpenAI's API version when none is set (LightRAG's default).
const AZURE_API_VERSION: &str = "2024-08-01-preview";

#[async_trait]
impl Embedder for OpenAiEmbedder {
    fn describe(&self) -> String {
        format!("{} (model {})", self.endpoints.describe(), self.model)
    }

    async fn embed(&self, inputs: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        match Encoding::from_u8(self.encoding.load(Relaxed)) {
            Encoding::Float => self.request(inputs, "float").await,
            Encoding::Base64 => self.request(inputs, "base64").await,
            Encoding::Untried => match self.request(inputs, "base64").await {
                Ok(v) => {
                    self.encoding.store(Encoding::Base64 as u8, Relaxed);
                    Ok(v)
                }
                // Refused outright: maybe the encoding. Floats decide it.
                Err(EmbedError::Rejected(first) | EmbedError::Fatal(first)) => {
                    let floats = self.request(inputs, "float").await;
                    if floats.is_ok() {
                        tracing::info!(
                            "the endpoint refuses encoding_format \"base64\" ({first}); asking for floats"
                        );
                        self.encoding.store(Encoding::Float as u8, Relaxed);
                    }
                    floats
                }
                Err(e) => Err(e),
            },
        }
    }
}

/// Vectors go where their `index` says, never by position: servers may answer
/// out of order. A missing, repeated or out-of-range index fails the batch.
pub(crate) fn place_by_index(items: Vec<Item>, n: usize) -> Result<Vec<Vec<f32>>, EmbedError> {
    let broken = |message: String| EmbedError::Transient {
        message,
        retry_after: None,
    };
    if items.len() != n {
        return Err(broken(format!(
            "the endpoint returned {} vectors for {n} inputs",
            items.len()
        )));
    }
    let mut out: Vec<Option<Vec<f32>>> = vec![None; n];
    for item in items {
        let slot = out.get_mut(item.index).ok_or_else(|| {
            broken(format!(
                "the endpoint returned index {} for {n} inputs",
                item.index
            ))
        })?;
        if slot.is_some() {
            return Err(broken(format!(
                "the endpoint returned index {} twice",
                item.index
            )));
        }
        *slot = Some(item.embedding);
    }
    out.into_iter()
        .map(|v| v.ok_or_else(|| broken("the endpoint left an input without a vector".into())))
        .collect()
}

/// `openai`: any OpenAI-compatible `POST {base}/embeddings`.
pub struct OpenAi;
pub const OPENAI: OpenAi = OpenAi;

#[async_trait]
impl super::Provider for OpenAi {
    fn name(&self) -> &'static str {
        "openai"
    }
    fn default_url(&self) -> Option<&'static str> {
        Some("https://api.openai.com/v1")
    }
    fn asymmetry(&self) -> super::Asymmetry {
        super::Asymmetry::Prefix
    }
    fn aliases(&self) -> &'static [&'static str] {
        &["openai-compatible"]
    }
    fn batch_size(&self, _model: &str) -> usize {
        64
    }
    fn concurrency(&self, _servers: usize, _model: &str) -> usize {
        8
    }
    async fn connect(
        &self,
        cfg: &EmbedSettings,
    ) -> anyhow::Result<(std::sync::Arc<dyn Embedder>, EmbedSettings)> {
        Ok((std::sync::Arc::new(OpenAiEmbedder::new(cfg)?), cfg.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_are_placed_by_index() {
        let items = vec![
            Item {
                index: 2,
                embedding: vec![2.0],
            },
            Item {
                index: 0,
                embedding: vec![0.0],
            },
            Item {
                index: 1,
                embedding: vec![1.0],
            },
        ];
        assert_eq!(
            place_by_index(items, 3).unwrap(),
            vec![vec![0.0], vec![1.0], vec![2.0]]
        );
    }

    #[test]
    fn broken_indexes_fail_the_batch() {
        let dup = vec![
            Item {
                index: 0,
                embedding: vec![],
            },
            Item {
                index: 0,
                embedding: vec![],
            },
        ];
        assert!(place_by_index(dup, 2).is_err());
        let out_of_range = vec![Item {
            index: 5,
            embedding: vec![],
        }];
        assert!(place_by_index(out_of_range, 1).is_err());
        assert!(place_by_index(vec![], 1).is_err());
    }
}
