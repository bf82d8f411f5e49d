//! The embedding providers, one file or folder each, and the registry that
//! names them. A provider turns one batch into vectors (`Embedder`); what is
//! around every request (batching, limits, retries, checks) is the embed
//! stage's, once, for all of them.
//!
//! Adding a provider: a file here with its `Embedder` and a `Provider`
//! entry (names, defaults, connect), and one line in `PROVIDERS`.

pub mod azure;
pub mod bedrock;
pub mod gemini;
pub mod jina;
pub mod local;
mod local_provider;
pub mod lollms;
pub mod ollama;
pub mod openai;
pub mod tei;
pub mod voyage;

use std::sync::Arc;

use async_trait::async_trait;

use super::Embedder;
use super::settings::{EmbedFlags, EmbedSettings};
use crate::settings::{ConfigError, bad};

/// Every provider, in the order `--help` lists them.
pub const PROVIDERS: &[&dyn Provider] = &[
    &openai::OPENAI,
    &azure::AZURE,
    &bedrock::BEDROCK,
    &gemini::GEMINI,
    &jina::JINA,
    &voyage::VOYAGE,
    &ollama::OLLAMA,
    &lollms::LOLLMS,
    &tei::TEI,
    &local_provider::LOCAL,
];

/// A kind of embedding service, as `--embed-provider` (EMBEDDING_BINDING)
/// names it.
#[async_trait]
pub trait Provider: Sync + Send {
    /// vecload's name for it.
    fn name(&self) -> &'static str;
    /// Other names it answers to (LightRAG's EMBEDDING_BINDING values), lower case.
    fn aliases(&self) -> &'static [&'static str] {
        &[]
    }
    /// Inputs per request of `model` unless --batch-size says otherwise.
    fn batch_size(&self, _model: &str) -> usize {
        32
    }
    /// Requests in flight unless --concurrency says otherwise, for `servers`
    /// base URLs.
    fn concurrency(&self, servers: usize, model: &str) -> usize;
    /// The model when --embed-model (EMBEDDING_MODEL) names none.
    fn default_model(&self) -> Option<&'static str> {
        None
    }
    /// Characters one input of `model` may have, when the provider says so
    /// up front: longer chunks are embedded in parts without a refused
    /// request.
    fn max_input_chars(&self, _model: &str) -> Option<usize> {
        None
    }
    /// Checks and adjusts the settings for this provider (a model it does
    /// not know, a dimension the model cannot return, a batch it cannot take).
    fn check(
        &self,
        _settings: &mut EmbedSettings,
        _flags: &EmbedFlags,
        _env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        Ok(())
    }
    /// How it embeds a question unlike a document, if it can
    /// (--embed-asymmetric, LightRAG's EMBEDDING_ASYMMETRIC).
    fn asymmetry(&self) -> Asymmetry {
        Asymmetry::Unsupported
    }
    /// Where it is when --embed-url (EMBEDDING_BINDING_HOST) and
    /// LLM_BINDING_HOST say nothing: LightRAG's default host for the binding.
    fn default_url(&self) -> Option<&'static str> {
        None
    }
    /// Whether it is reached at --embed-url.
    fn needs_url(&self) -> bool {
        true
    }
    /// Whether requests must name a model (TEI serves one and takes none).
    fn needs_model(&self) -> bool {
        true
    }
    /// The vector length and the model's window when they are known before
    /// anything runs (a model folder on disk).
    fn shape(&self, _flags: &EmbedFlags) -> Result<Option<(usize, usize)>, ConfigError> {
        Ok(None)
    }
    /// The embedder, and the settings with the limits the provider reported
    /// applied. A server that cannot be reached or a model that cannot be
    /// read fails here, before any file is read.
    async fn connect(
        &self,
        cfg: &EmbedSettings,
    ) -> anyhow::Result<(Arc<dyn Embedder>, EmbedSettings)>;
}

/// How a provider tells questions from documents, as LightRAG 1.5.7 sorts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asymmetry {
    /// By a text prefix (openai, azure_openai, ollama).
    Prefix,
    /// By the provider's own task parameter (gemini, jina, voyageai).
    Task,
    Unsupported,
}

impl std::fmt::Debug for dyn Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The provider `--embed-provider` names, by vecload's or LightRAG's name.
pub fn by_name(name: &str) -> Result<&'static dyn Provider, ConfigError> {
    let wanted = name.trim().to_ascii_lowercase();
    PROVIDERS
        .iter()
        .copied()
        .find(|p| p.name() == wanted || p.aliases().contains(&wanted.as_str()))
        .ok_or_else(|| {
            bad(format!(
                "--embed-provider (EMBEDDING_BINDING) {wanted:?} is not supported; \
                 use one of {}",
                names()
            ))
        })
}

/// Every provider's name, as the error for an unknown one lists them.
pub fn names() -> String {
    PROVIDERS
        .iter()
        .map(|p| p.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The embedder for `cfg`, and `cfg` with what the provider reported applied.
pub async fn connect(cfg: &EmbedSettings) -> anyhow::Result<(Arc<dyn Embedder>, EmbedSettings)> {
    cfg.provider.connect(cfg).await
}
