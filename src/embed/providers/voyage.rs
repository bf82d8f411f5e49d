//! `voyageai`: Voyage AI's `POST /v1/embeddings` as LightRAG 1.5.7's
//! `voyageai_embed` sends it (no `input_type` unless asymmetric mode), with
//! `truncation: false` so nothing is cut silently, and its request limits
//! (1,000 inputs; about 120k tokens for the largest models).

use std::sync::Arc;

use async_trait::async_trait;

use super::openai::{Flavor, OpenAiEmbedder};
use crate::embed::Embedder;
use crate::embed::settings::{EmbedFlags, EmbedSettings};
use crate::settings::{ConfigError, Secret};

pub struct Voyage;
pub const VOYAGE: Voyage = Voyage;

/// Tokens one request of `model` may carry (Voyage's documented totals).
fn request_tokens(model: &str) -> usize {
    match model {
        m if m.contains("lite") => 1_000_000,
        m if m.ends_with("-large") || m.contains("-large-") => 120_000,
        m if m.starts_with("voyage-3") || m.starts_with("voyage-code-3") => 320_000,
        _ => 120_000,
    }
}

#[async_trait]
impl super::Provider for Voyage {
    fn name(&self) -> &'static str {
        "voyageai"
    }
    fn asymmetry(&self) -> super::Asymmetry {
        super::Asymmetry::Task
    }
    fn aliases(&self) -> &'static [&'static str] {
        &["voyage"]
    }
    fn batch_size(&self, _model: &str) -> usize {
        128
    }
    fn concurrency(&self, _servers: usize, _model: &str) -> usize {
        4
    }
    fn needs_url(&self) -> bool {
        false
    }
    fn default_model(&self) -> Option<&'static str> {
        Some("voyage-3")
    }
    fn check(
        &self,
        s: &mut EmbedSettings,
        _flags: &EmbedFlags,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        if s.urls.is_empty() {
            s.urls = vec!["https://api.voyageai.com".into()];
        }
        if s.api_key.is_none()
            && let Some(k) = env("VOYAGE_API_KEY")
                .or_else(|| env("VOYAGEAI_API_KEY"))
                .filter(|k| !k.is_empty())
        {
            s.api_key = Some(Secret::new(k));
        }
        s.batch_size = s.batch_size.min(1000);
        s.max_request_tokens = s.max_request_tokens.min(request_tokens(&s.model));
        Ok(())
    }
    async fn connect(
        &self,
        cfg: &EmbedSettings,
    ) -> anyhow::Result<(Arc<dyn Embedder>, EmbedSettings)> {
        Ok((
            Arc::new(OpenAiEmbedder::of(cfg, Flavor::Voyage)?),
            cfg.clone(),
        ))
    }
}
