//! `azure_openai`: Azure OpenAI's embeddings, with LightRAG's environment
//! names for it (AZURE_EMBEDDING_DEPLOYMENT, AZURE_EMBEDDING_ENDPOINT,
//! AZURE_EMBEDDING_API_KEY, AZURE_EMBEDDING_API_VERSION, falling back as
//! LightRAG falls back). The request is OpenAI's (`openai.rs`, Azure flavor).

use std::sync::Arc;

use async_trait::async_trait;

use super::openai::{Flavor, OpenAiEmbedder};
use crate::embed::Embedder;
use crate::embed::settings::{EmbedFlags, EmbedSettings};
use crate::settings::{ConfigError, Secret, bad};

pub struct Azure;
pub const AZURE: Azure = Azure;

#[async_trait]
impl super::Provider for Azure {
    fn name(&self) -> &'static str {
        "azure_openai"
    }
    fn asymmetry(&self) -> super::Asymmetry {
        super::Asymmetry::Prefix
    }
    fn aliases(&self) -> &'static [&'static str] {
        &["azure-openai", "azure"]
    }
    fn batch_size(&self, _model: &str) -> usize {
        64
    }
    fn concurrency(&self, _servers: usize, _model: &str) -> usize {
        8
    }
    /// The endpoint may come from AZURE_EMBEDDING_ENDPOINT instead.
    fn needs_url(&self) -> bool {
        false
    }
    fn default_model(&self) -> Option<&'static str> {
        Some("text-embedding-3-small")
    }
    fn check(
        &self,
        s: &mut EmbedSettings,
        flags: &EmbedFlags,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        let get = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        // As LightRAG resolves them: what the binding is given, then
        // Azure's own names.
        if s.urls.is_empty()
            && let Some(e) =
                get("AZURE_EMBEDDING_ENDPOINT").or_else(|| get("AZURE_OPENAI_ENDPOINT"))
        {
            s.urls = vec![e.trim().trim_end_matches('/').to_string()];
        }
        if s.urls.is_empty() {
            return Err(bad(
                "azure_openai needs its endpoint: --embed-url (EMBEDDING_BINDING_HOST) or \
                 AZURE_EMBEDDING_ENDPOINT, e.g. https://NAME.openai.azure.com",
            ));
        }
        for u in &s.urls {
            let parsed = url::Url::parse(u)
                .map_err(|e| bad(format!("the Azure OpenAI endpoint {u:?} is not a URL: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(bad(format!(
                    "the Azure OpenAI endpoint {u:?} must be http:// or https://"
                )));
            }
        }
        s.options.deployment = get("AZURE_EMBEDDING_DEPLOYMENT").or_else(|| Some(s.model.clone()));
        s.options.api_version = get("AZURE_EMBEDDING_API_VERSION")
            .or_else(|| get("AZURE_OPENAI_API_VERSION"))
            .or_else(|| get("OPENAI_API_VERSION"));
        // OPENAI_API_KEY, the generic fallback, is not Azure's.
        s.api_key = flags
            .embed_api_key
            .clone()
            .filter(|k| !k.is_empty())
            .or_else(|| get("AZURE_EMBEDDING_API_KEY"))
            .or_else(|| get("AZURE_OPENAI_API_KEY"))
            .map(Secret::new);
        if s.api_key.is_none()
            && let Some(token) =
                get("AZURE_EMBEDDING_AD_TOKEN").or_else(|| get("AZURE_OPENAI_AD_TOKEN"))
        {
            // An Entra ID token lives about an hour: enough for a backfill,
            // not for a day-long reindex (use a key there).
            s.api_key = Some(Secret::new(token));
            s.options.entra_token = true;
        }
        if s.api_key.is_none() {
            return Err(bad(
                "azure_openai needs a key: --embed-api-key (EMBEDDING_BINDING_API_KEY) or \
                 AZURE_EMBEDDING_API_KEY, or an Entra ID token in AZURE_OPENAI_AD_TOKEN",
            ));
        }
        Ok(())
    }
    async fn connect(
        &self,
        cfg: &EmbedSettings,
    ) -> anyhow::Result<(Arc<dyn Embedder>, EmbedSettings)> {
        Ok((
            Arc::new(OpenAiEmbedder::of(cfg, Flavor::Azure)?),
            cfg.clone(),
        ))
    }
}
