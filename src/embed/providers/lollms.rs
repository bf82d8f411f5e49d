//! `lollms`: a LoLLMs server's `POST {base}/lollms_embed` as LightRAG 1.5.7
//! calls it: one text per request (`{"text"}` in, `{"vector"}` out), the key,
//! if any, as the whole Authorization header. The server embeds with the
//! vectorizer it is configured with; the model name is only recorded.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::embed::http::{self, Endpoints};
use crate::embed::settings::EmbedSettings;
use crate::embed::{EmbedError, Embedder};
use crate::settings::Secret;

pub struct LollmsEmbedder {
    client: reqwest::Client,
    endpoints: Endpoints,
    key: Option<Secret>,
}

#[derive(Serialize)]
struct Request<'a> {
    text: &'a str,
}

#[derive(Deserialize)]
struct Response {
    #[serde(deserialize_with = "crate::embed::http::lenient_floats")]
    vector: Vec<f32>,
}

#[async_trait]
impl Embedder for LollmsEmbedder {
    fn describe(&self) -> String {
        format!("{} (LoLLMs)", self.endpoints.describe())
    }

    async fn embed(&self, inputs: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        // The batch size is one (see below); a longer batch is sent in turn.
        let mut out = Vec::with_capacity(inputs.len());
        for text in inputs {
            let endpoint = self.endpoints.pick();
            let mut req = self.client.post(endpoint.url()).json(&Request { text });
            if let Some(k) = &self.key {
                req = req.header(reqwest::header::AUTHORIZATION, k.expose());
            }
            let bytes = http::send(req, self.key.as_ref()).await?;
            let parsed: Response = http::parse(&bytes)?;
            out.push(parsed.vector);
        }
        Ok(out)
    }
}

pub struct Lollms;
pub const LOLLMS: Lollms = Lollms;

#[async_trait]
impl super::Provider for Lollms {
    fn name(&self) -> &'static str {
        "lollms"
    }
    fn default_url(&self) -> Option<&'static str> {
        Some("http://localhost:9600")
    }
    /// The API takes one text per request: parallel requests keep it busy.
    fn batch_size(&self, _model: &str) -> usize {
        1
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
    ) -> anyhow::Result<(Arc<dyn Embedder>, EmbedSettings)> {
        let embedder = LollmsEmbedder {
            client: http::client(cfg)?,
            endpoints: Endpoints::new(
                cfg.urls
                    .iter()
                    .map(|u| format!("{u}/lollms_embed"))
                    .collect(),
            ),
            key: cfg.api_key.clone(),
        };
        Ok((Arc::new(embedder), cfg.clone()))
    }
}
