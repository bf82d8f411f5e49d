//! `jina`: Jina AI's embeddings as LightRAG 1.5.7's `jina_embed` sends them
//! (`task`, `dimensions` always, base64 vectors); the host given is the
//! whole URL, as LightRAG takes it (default https://api.jina.ai/v1/embeddings).

use std::sync::Arc;

use async_trait::async_trait;

use super::openai::{Flavor, OpenAiEmbedder};
use crate::embed::Embedder;
use crate::embed::settings::{EmbedFlags, EmbedSettings};
use crate::settings::{ConfigError, Secret};

pub struct Jina;
pub const JINA: Jina = Jina;

#[async_trait]
impl super::Provider for Jina {
    fn name(&self) -> &'static str {
        "jina"
    }
    fn asymmetry(&self) -> super::Asymmetry {
        super::Asymmetry::Task
    }
    fn batch_size(&self, _model: &str) -> usize {
        64
    }
    fn concurrency(&self, _servers: usize, _model: &str) -> usize {
        4
    }
    fn needs_url(&self) -> bool {
        false
    }
    fn default_model(&self) -> Option<&'static str> {
        Some("jina-embeddings-v4")
    }
    fn check(
        &self,
        s: &mut EmbedSettings,
        _flags: &EmbedFlags,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        if s.urls.is_empty() {
            s.urls = vec!["https://api.jina.ai/v1/embeddings".into()];
        }
        if s.api_key.is_none()
            && let Some(k) = env("JINA_API_KEY").filter(|k| !k.is_empty())
        {
            s.api_key = Some(Secret::new(k));
        }
        Ok(())
    }
    async fn connect(
        &self,
        cfg: &EmbedSettings,
    ) -> anyhow::Result<(Arc<dyn Embedder>, EmbedSettings)> {
        Ok((
            Arc::new(OpenAiEmbedder::of(cfg, Flavor::Jina)?),
            cfg.clone(),
        ))
    }
}
