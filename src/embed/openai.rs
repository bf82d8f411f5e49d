//! OpenAI-compatible `POST {base}/embeddings` (OpenAI, Azure-style gateways,
//! vLLM, LiteLLM, TEI's and Ollama's compatibility routes, ...).

use std::sync::atomic::{AtomicU8, Ordering::Relaxed};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::http::{self, Endpoints};
use super::{EmbedError, Embedder};
use crate::config::{EmbedConfig, Secret};

pub struct OpenAiEmbedder {
    client: reqwest::Client,
    endpoints: Endpoints,
    model: String,
    dimensions: Option<usize>,
    key: Option<Secret>,
    /// Whether to ask for base64 vectors (see `Encoding`).
    encoding: AtomicU8,
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

#[derive(Serialize)]
struct Request<'a> {
    model: &'a str,
    input: &'a [&'a str],
    encoding_format: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    dimensions: Option<usize>,
}

#[derive(Deserialize)]
struct Response {
    data: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    index: usize,
    #[serde(deserialize_with = "http::floats_or_base64")]
    embedding: Vec<f32>,
}

impl OpenAiEmbedder {
    pub fn new(cfg: &EmbedConfig) -> anyhow::Result<OpenAiEmbedder> {
        Ok(OpenAiEmbedder {
            client: http::client(cfg)?,
            endpoints: Endpoints::new(cfg.urls.iter().map(|u| format!("{u}/embeddings")).collect()),
            model: cfg.model.clone(),
            dimensions: cfg.send_dimensions.then_some(cfg.dim),
            key: cfg.api_key.clone(),
            encoding: AtomicU8::new(Encoding::Untried as u8),
        })
    }

    async fn request(
        &self,
        inputs: &[&str],
        encoding: &'static str,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        let body = Request {
            model: &self.model,
            input: inputs,
            encoding_format: encoding,
            dimensions: self.dimensions,
        };
        let endpoint = self.endpoints.pick();
        let mut req = self.client.post(endpoint.url()).json(&body);
        if let Some(k) = &self.key {
            req = req.bearer_auth(k.expose());
        }
        let bytes = http::send(req, self.key.as_ref()).await?;
        let parsed: Response = http::parse(&bytes)?;
        place_by_index(parsed.data, inputs.len())
    }
}

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
fn place_by_index(items: Vec<Item>, n: usize) -> Result<Vec<Vec<f32>>, EmbedError> {
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
