//! `local`: the registry entry of the model run in-process (see `local/`).

use std::sync::Arc;

use async_trait::async_trait;

use super::Provider;
use super::local::{LocalEmbedder, LocalModel, model_shape};
use crate::embed::Embedder;
use crate::embed::settings::{EmbedFlags, EmbedSettings};
use crate::settings::{ConfigError, bad};

pub struct Local;
pub const LOCAL: Local = Local;

#[async_trait]
impl Provider for Local {
    fn name(&self) -> &'static str {
        "local"
    }
    fn concurrency(&self, _servers: usize, _model: &str) -> usize {
        // Two batches at once: one's single-threaded steps (softmax, layer
        // norm, GELU) overlap the other's matrix products; measured 1.1-1.3x
        // one at a time on 2 cores (BENCHMARKS.md).
        2
    }
    fn needs_url(&self) -> bool {
        false
    }
    fn shape(&self, flags: &EmbedFlags) -> Result<Option<(usize, usize)>, ConfigError> {
        // The model's shape is known before anything runs: its dimension,
        // and a chunk size that fits its window.
        let dir = flags.embed_model_dir.as_ref().ok_or_else(|| {
            bad("--embed-model-dir (EMBEDDING_MODEL_DIR) is required for --embed-provider local")
        })?;
        model_shape(dir)
            .map(Some)
            .map_err(|err| bad(format!("{err:#}")))
    }
    async fn connect(
        &self,
        cfg: &EmbedSettings,
    ) -> anyhow::Result<(Arc<dyn Embedder>, EmbedSettings)> {
        let dir = cfg
            .model_dir
            .clone()
            .ok_or_else(|| anyhow::anyhow!("--embed-model-dir is required"))?;
        let started = std::time::Instant::now();
        let model = tokio::task::spawn_blocking(move || LocalModel::open(&dir))
            .await
            .map_err(|e| anyhow::anyhow!("loading the local model panicked: {e}"))??;
        if model.dim() != cfg.dim {
            anyhow::bail!(
                "the local model returns {} dimensions but --embed-dim is {}",
                model.dim(),
                cfg.dim
            );
        }
        tracing::debug!(
            "local model loaded in {:.2}s",
            started.elapsed().as_secs_f64()
        );
        Ok((Arc::new(LocalEmbedder::new(model)?), cfg.clone()))
    }
}
