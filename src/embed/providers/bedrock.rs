//! `bedrock` (LightRAG's `bedrock` / `aws_bedrock`): Amazon Bedrock Runtime
//! `InvokeModel`, `POST /model/{modelId}/invoke`, signed with SigV4 (service
//! `bedrock`) from the AWS credential chain, or with a Bedrock API key
//! (`AWS_BEARER_TOKEN_BEDROCK`) as a bearer token.
//!
//! The request bodies are the ones LightRAG 1.5.7 sends (`bedrock_embed`),
//! so the vectors match what the RAG API computes for its queries:
//! - Titan Text Embeddings V2: one text per request, `{"inputText",
//!   "embeddingTypes": ["float"]}`; `dimensions` only when --embed-dim is not
//!   the model's 1024 (LightRAG never sends it, so its queries are 1024-d);
//! - Titan V1: `{"inputText"}`, 1536 dimensions;
//! - Cohere Embed v3 / v4: up to 96 texts, `{"texts", "input_type":
//!   "search_document", "truncate": "NONE"}`; v4 also `embedding_types` and
//!   `output_dimension`. Both answer shapes are read.
//!
//! With Titan's one text per request, concurrency is the lever; Cohere's 96
//! texts need far fewer requests. Errors come with their type in
//! `x-amzn-ErrorType` (maybe with a `:http://internal...` suffix) and the
//! body: throttling and unavailability are retried and slow the requests
//! down; a model not granted, an unknown model or a malformed request stop
//! the run with the model and region named.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;

use crate::aws::sign::{self, Service};
use crate::aws::{CredentialChain, Env};
use crate::embed::http;
use crate::embed::settings::{EmbedFlags, EmbedSettings};
use crate::embed::{EmbedError, Embedder};
use crate::settings::{ConfigError, Secret, bad};

/// LightRAG's stand-in for "no endpoint given" in EMBEDDING_BINDING_HOST.
const DEFAULT_ENDPOINT_SENTINEL: &str = "DEFAULT_BEDROCK_ENDPOINT";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    TitanV2,
    TitanV1,
    CohereV3,
    CohereV4,
}

impl Family {
    /// The family of a model id, also behind a cross-region inference
    /// profile (`us.cohere.embed-v4:0`).
    pub fn of(model: &str) -> Option<Family> {
        let m = model.trim();
        let m = ["us.", "eu.", "apac.", "global.", "us-gov."]
            .iter()
            .find_map(|p| m.strip_prefix(p))
            .unwrap_or(m);
        Some(if m.starts_with("amazon.titan-embed-text-v2") {
            Family::TitanV2
        } else if m.starts_with("amazon.titan-embed-text-v1")
            || m.starts_with("amazon.titan-embed-g1-text")
        {
            Family::TitanV1
        } else if m.starts_with("cohere.embed-english-v3")
            || m.starts_with("cohere.embed-multilingual-v3")
        {
            Family::CohereV3
        } else if m.starts_with("cohere.embed-v4") {
            Family::CohereV4
        } else {
            return None;
        })
    }

    fn dims(self) -> &'static [usize] {
        match self {
            Family::TitanV2 => &[1024, 512, 256],
            Family::TitanV1 => &[1536],
            Family::CohereV3 => &[1024],
            Family::CohereV4 => &[1536, 1024, 512, 256],
        }
    }

    fn max_batch(self) -> usize {
        match self {
            Family::TitanV2 | Family::TitanV1 => 1,
            Family::CohereV3 | Family::CohereV4 => 96,
        }
    }

    /// Characters one text may have (Titan: 50,000; Cohere v3: 2,048; v4's
    /// 128k-token limit is past any chunk).
    pub fn max_chars(self) -> Option<usize> {
        match self {
            Family::TitanV2 | Family::TitanV1 => Some(50_000),
            Family::CohereV3 => Some(2_048),
            Family::CohereV4 => None,
        }
    }
}

pub struct Bedrock;
pub const BEDROCK: Bedrock = Bedrock;

const SUPPORTED: &str = "amazon.titan-embed-text-v2:0, amazon.titan-embed-text-v1, \
    cohere.embed-english-v3, cohere.embed-multilingual-v3, cohere.embed-v4:0";

#[async_trait]
impl super::Provider for Bedrock {
    fn name(&self) -> &'static str {
        "bedrock"
    }
    fn aliases(&self) -> &'static [&'static str] {
        &["aws_bedrock", "aws-bedrock"]
    }
    fn batch_size(&self, model: &str) -> usize {
        Family::of(model).map_or(1, Family::max_batch)
    }
    fn concurrency(&self, _servers: usize, model: &str) -> usize {
        // One text per request (Titan): requests in flight are the throughput.
        match Family::of(model) {
            Some(Family::TitanV1 | Family::TitanV2) => 16,
            _ => 4,
        }
    }
    fn needs_url(&self) -> bool {
        false
    }
    fn default_model(&self) -> Option<&'static str> {
        // What LightRAG's bedrock_embed uses when none is named.
        Some("amazon.titan-embed-text-v2:0")
    }
    fn max_input_chars(&self, model: &str) -> Option<usize> {
        Family::of(model).and_then(Family::max_chars)
    }
    fn check(
        &self,
        s: &mut EmbedSettings,
        _flags: &EmbedFlags,
        _env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        let family = Family::of(&s.model).ok_or_else(|| {
            bad(format!(
                "--embed-model (EMBEDDING_MODEL) {:?} is not a Bedrock embedding model vecload \
                 knows; use one of {SUPPORTED}",
                s.model
            ))
        })?;
        if !family.dims().contains(&s.dim) {
            return Err(bad(format!(
                "--embed-dim (EMBEDDING_DIM) {} is not one {} returns; use one of {:?}",
                s.dim,
                s.model,
                family.dims()
            )));
        }
        if s.batch_size > family.max_batch() {
            tracing::info!(
                "{} takes at most {} texts per request: --batch-size {} lowered",
                s.model,
                family.max_batch(),
                s.batch_size
            );
            s.batch_size = family.max_batch();
        }
        if family == Family::TitanV2 && s.dim != 1024 {
            tracing::warn!(
                "{} at {} dimensions: LightRAG 1.5.7 asks Titan for 1024, so its queries will \
                 not match vectors of {}",
                s.model,
                s.dim,
                s.dim
            );
        }
        Ok(())
    }
    async fn connect(
        &self,
        cfg: &EmbedSettings,
    ) -> anyhow::Result<(Arc<dyn Embedder>, EmbedSettings)> {
        Ok((
            Arc::new(BedrockEmbedder::new(cfg, &Env::from_process())?),
            cfg.clone(),
        ))
    }
}

enum Auth {
    SigV4(Arc<CredentialChain>),
    /// A Bedrock API key.
    Bearer(Secret),
}

pub struct BedrockEmbedder {
    client: reqwest::Client,
    /// `{endpoint}/model/{id}/invoke`, the id percent-encoded.
    url: String,
    endpoint: String,
    region: String,
    model: String,
    family: Family,
    dim: usize,
    auth: Auth,
}

impl BedrockEmbedder {
    pub fn new(cfg: &EmbedSettings, env: &Env) -> anyhow::Result<BedrockEmbedder> {
        let region = env.region().ok_or_else(|| {
            anyhow::anyhow!("Bedrock needs a region: set AWS_REGION (as the RAG API has it)")
        })?;
        let given = cfg
            .urls
            .first()
            .filter(|u| u.as_str() != DEFAULT_ENDPOINT_SENTINEL)
            .cloned();
        let endpoint = env
            .endpoint("BEDROCK_RUNTIME")
            .or(given)
            .unwrap_or_else(|| format!("https://bedrock-runtime.{region}.amazonaws.com"));
        let endpoint = endpoint.trim_end_matches('/').to_string();
        let family = Family::of(&cfg.model)
            .ok_or_else(|| anyhow::anyhow!("{} is not a Bedrock embedding model", cfg.model))?;
        let client = http::client(cfg)?;
        let auth = match env.get("AWS_BEARER_TOKEN_BEDROCK") {
            Some(t) => Auth::Bearer(Secret::new(t)),
            None => Auth::SigV4(CredentialChain::new(
                env.clone(),
                client.clone(),
                Some(region.clone()),
            )),
        };
        Ok(BedrockEmbedder {
            url: format!("{endpoint}/model/{}/invoke", encode_id(&cfg.model)),
            endpoint,
            client,
            region,
            model: cfg.model.clone(),
            family,
            dim: cfg.dim,
            auth,
        })
    }

    /// The InvokeModel body for `inputs` (also a batch record's `modelInput`).
    pub(crate) fn body(&self, inputs: &[&str]) -> serde_json::Value {
        match self.family {
            Family::TitanV2 => {
                let mut b = json!({"inputText": inputs[0], "embeddingTypes": ["float"]});
                if self.dim != 1024 {
                    b["dimensions"] = json!(self.dim);
                }
                b
            }
            Family::TitanV1 => json!({"inputText": inputs[0]}),
            Family::CohereV3 => {
                json!({"texts": inputs, "input_type": "search_document", "truncate": "NONE"})
            }
            Family::CohereV4 => {
                let mut b = json!({"texts": inputs, "input_type": "search_document",
                    "truncate": "NONE", "embedding_types": ["float"]});
                if self.dim != 1536 {
                    b["output_dimension"] = json!(self.dim);
                }
                b
            }
        }
    }

    /// Signs `req` for Bedrock (runtime or control plane: both sign as
    /// `bedrock`), or puts the API key on it.
    pub(crate) async fn sign(&self, req: &mut reqwest::Request) -> anyhow::Result<()> {
        match &self.auth {
            Auth::Bearer(t) => {
                let v = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", t.expose()))
                    .map_err(|_| {
                    anyhow::anyhow!("AWS_BEARER_TOKEN_BEDROCK is not a valid header value")
                })?;
                req.headers_mut().insert(reqwest::header::AUTHORIZATION, v);
            }
            Auth::SigV4(chain) => {
                let (creds, _) = chain
                    .get()
                    .await
                    .map_err(|e| anyhow::anyhow!("AWS credentials for Bedrock: {e:#}"))?;
                sign::sign(req, &creds, &self.region, "bedrock", Service::Other)?;
            }
        }
        Ok(())
    }

    pub(crate) fn region(&self) -> &str {
        &self.region
    }

    pub(crate) fn client(&self) -> &reqwest::Client {
        &self.client
    }

    pub(crate) fn model(&self) -> &str {
        &self.model
    }

    async fn invoke(&self, inputs: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let body =
            serde_json::to_vec(&self.body(inputs)).map_err(|e| EmbedError::Fatal(e.to_string()))?;
        let mut req = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json")
            .body(body)
            .build()
            .map_err(|e| EmbedError::Fatal(format!("building the Bedrock request: {e}")))?;
        self.sign(&mut req)
            .await
            .map_err(|e| EmbedError::Fatal(format!("{e:#}")))?;
        let resp = self
            .client
            .execute(req)
            .await
            .map_err(|e| http::transport(&e))?;
        let status = resp.status();
        let kind = resp
            .headers()
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .map(|t| t.split(':').next().unwrap_or(t).to_string());
        let wait = http::retry_after(resp.headers());
        let bytes = resp.bytes().await.map_err(|e| http::transport(&e))?;
        if !status.is_success() {
            return Err(self.error(status.as_u16(), kind, &bytes, wait));
        }
        self.vectors(&bytes, inputs.len())
    }

    /// The vectors of an InvokeModel answer (also a batch record's `modelOutput`).
    pub(crate) fn vectors(&self, bytes: &[u8], n: usize) -> Result<Vec<Vec<f32>>, EmbedError> {
        #[derive(Deserialize)]
        struct Titan {
            #[serde(deserialize_with = "http::lenient_floats")]
            embedding: Vec<f32>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Embeddings {
            List(Vec<Vec<Option<f32>>>),
            ByType { float: Vec<Vec<Option<f32>>> },
        }
        #[derive(Deserialize)]
        struct Cohere {
            embeddings: Embeddings,
        }
        let floats = |v: Vec<Vec<Option<f32>>>| -> Vec<Vec<f32>> {
            v.into_iter()
                .map(|e| e.into_iter().map(|x| x.unwrap_or(f32::NAN)).collect())
                .collect()
        };
        let out = match self.family {
            Family::TitanV1 | Family::TitanV2 => vec![http::parse::<Titan>(bytes)?.embedding],
            Family::CohereV3 | Family::CohereV4 => match http::parse::<Cohere>(bytes)?.embeddings {
                Embeddings::List(v) => floats(v),
                Embeddings::ByType { float } => floats(float),
            },
        };
        if out.len() != n {
            return Err(EmbedError::Transient {
                message: format!("Bedrock returned {} vectors for {n} texts", out.len()),
                retry_after: None,
            });
        }
        Ok(out)
    }

    /// Bedrock's error types, sorted by what the run does next.
    fn error(
        &self,
        status: u16,
        kind: Option<String>,
        body: &[u8],
        wait: Option<std::time::Duration>,
    ) -> EmbedError {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let message = v
            .get("message")
            .or_else(|| v.get("Message"))
            .and_then(|m| m.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(300).collect());
        let kind = kind
            .or_else(|| {
                v.get("__type")
                    .and_then(|t| t.as_str())
                    .map(|t| t.rsplit('#').next().unwrap_or(t).to_string())
            })
            .unwrap_or_default();
        let text = format!("Bedrock answered {status} {kind}: {message}");
        let here = format!("model {} in region {}", self.model, self.region);
        match kind.as_str() {
            "ThrottlingException" | "ServiceQuotaExceededException" => EmbedError::Throttled {
                message: text,
                retry_after: wait,
            },
            "ServiceUnavailableException"
            | "ModelNotReadyException"
            | "ModelTimeoutException"
            | "InternalServerException" => EmbedError::Transient {
                message: text,
                retry_after: wait,
            },
            "AccessDeniedException" => EmbedError::Fatal(format!(
                "{text} ({here}: grant the model in the Bedrock console's Model access, and \
                 bedrock:InvokeModel to the role)"
            )),
            "UnrecognizedClientException"
            | "InvalidSignatureException"
            | "ExpiredTokenException" => EmbedError::Fatal(format!(
                "{text} (the AWS credentials for {here} are not valid)"
            )),
            "ResourceNotFoundException" => EmbedError::Fatal(format!(
                "{text} ({here}: is the model offered there? set --embed-model / AWS_REGION)"
            )),
            "ValidationException"
                if http::is_too_large(&message) || message.contains("maxLength") =>
            {
                EmbedError::TooLarge(text)
            }
            "ValidationException" => EmbedError::Fatal(format!("{text} ({here})")),
            _ => match status {
                429 => EmbedError::Throttled {
                    message: text,
                    retry_after: wait,
                },
                500..=599 => EmbedError::Transient {
                    message: text,
                    retry_after: wait,
                },
                403 => EmbedError::Fatal(format!("{text} ({here})")),
                _ => EmbedError::Rejected(text),
            },
        }
    }
}

/// A model id as one path segment (`:` and `/` of inference profile ARNs
/// encoded).
fn encode_id(id: &str) -> String {
    let mut out = String::new();
    for b in id.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[async_trait]
impl Embedder for BedrockEmbedder {
    fn describe(&self) -> String {
        format!(
            "Bedrock {} at {} ({})",
            self.model, self.endpoint, self.region
        )
    }

    async fn embed(&self, inputs: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if inputs.len() > self.family.max_batch() {
            return Err(EmbedError::TooLarge(format!(
                "{} takes at most {} texts per request",
                self.model,
                self.family.max_batch()
            )));
        }
        self.invoke(inputs).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_of_model_ids() {
        assert_eq!(
            Family::of("amazon.titan-embed-text-v2:0"),
            Some(Family::TitanV2)
        );
        assert_eq!(
            Family::of("amazon.titan-embed-text-v1"),
            Some(Family::TitanV1)
        );
        assert_eq!(
            Family::of("cohere.embed-multilingual-v3"),
            Some(Family::CohereV3)
        );
        assert_eq!(Family::of("us.cohere.embed-v4:0"), Some(Family::CohereV4));
        assert_eq!(Family::of("text-embedding-3-small"), None);
        assert_eq!(
            encode_id("amazon.titan-embed-text-v2:0"),
            "amazon.titan-embed-text-v2%3A0"
        );
    }
}
