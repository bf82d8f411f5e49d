//! The files of a model folder in sentence-transformers layout, read and
//! checked before any weight is loaded, each error naming its file.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use serde::Deserialize;

use super::bert::{BertConfig, Pooling};

pub struct ModelFiles {
    pub dir: PathBuf,
    pub name: String,
    pub config: BertConfig,
    pub tokenizer: tokenizers::Tokenizer,
    pub pooling: Pooling,
    pub normalize: bool,
    /// Most tokens per input, special tokens included.
    pub window: usize,
}

#[derive(Deserialize)]
struct Module {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    path: String,
}

#[derive(Deserialize, Default)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode: Option<String>,
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
    #[serde(default)]
    pooling_mode_weightedmean_tokens: bool,
    #[serde(default)]
    pooling_mode_lasttoken: bool,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid", path.display()))
}

impl ModelFiles {
    pub fn read(dir: &Path) -> anyhow::Result<ModelFiles> {
        let (_, window) = model_shape(dir)?;
        let config: BertConfig = read_json(&dir.join("config.json"))?;
        if let Some(what) = config.unsupported() {
            bail!(
                "{}: {what} is not supported by the local provider",
                dir.join("config.json").display()
            );
        }
        let (pooling, normalize) = modules(dir)?;
        let tok_path = dir.join("tokenizer.json");
        let mut tokenizer = tokenizers::Tokenizer::from_file(&tok_path)
            .map_err(|e| anyhow!("cannot read {}: {e}", tok_path.display()))?;
        // tokenizer.json often carries a fixed padding and a truncation at
        // some length (128 for all-MiniLM-L6-v2). Both are turned off: inputs
        // are padded per group here, and an over-long input must be refused,
        // never silently cut.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|e| anyhow!("{}: {e}", tok_path.display()))?;
        let weights = dir.join("model.safetensors");
        if !weights.is_file() {
            bail!(
                "{} is missing (only safetensors weights are read; convert pytorch_model.bin first)",
                weights.display()
            );
        }
        Ok(ModelFiles {
            dir: dir.to_path_buf(),
            name: dir.display().to_string(),
            config,
            tokenizer,
            pooling,
            normalize,
            window,
        })
    }

    pub fn weights_path(&self) -> PathBuf {
        self.dir.join("model.safetensors")
    }
}

/// The pooling and whether vectors are normalized, from `modules.json` and
/// the pooling module's `config.json`. Modules this provider cannot run (a
/// Dense projection, say) are refused rather than skipped: the vectors would
/// not be the model's.
fn modules(dir: &Path) -> anyhow::Result<(Pooling, bool)> {
    let path = dir.join("modules.json");
    let modules: Vec<Module> = read_json(&path)?;
    let mut pooling = None;
    let mut normalize = false;
    for m in &modules {
        match m.kind.rsplit('.').next().unwrap_or_default() {
            "Transformer" => {}
            "Pooling" => pooling = Some(pooling_mode(&dir.join(&m.path).join("config.json"))?),
            "Normalize" => normalize = true,
            other => bail!(
                "{}: module {other} ({}) is not supported by the local provider",
                path.display(),
                m.kind
            ),
        }
    }
    let pooling = pooling.ok_or_else(|| {
        anyhow!(
            "{} names no Pooling module: the local provider needs the model's pooling",
            path.display()
        )
    })?;
    Ok((pooling, normalize))
}

fn pooling_mode(path: &Path) -> anyhow::Result<Pooling> {
    let c: PoolingConfig = read_json(path)?;
    if let Some(mode) = &c.pooling_mode {
        return match mode.as_str() {
            "mean" => Ok(Pooling::Mean),
            "cls" => Ok(Pooling::Cls),
            "max" => Ok(Pooling::Max),
            "mean_sqrt_len_tokens" => Ok(Pooling::MeanSqrtLen),
            other => bail!(
                "{}: pooling_mode \"{other}\" is not supported",
                path.display()
            ),
        };
    }
    if c.pooling_mode_weightedmean_tokens || c.pooling_mode_lasttoken {
        bail!(
            "{}: weighted-mean and last-token pooling are not supported",
            path.display()
        );
    }
    let modes = [
        (c.pooling_mode_mean_tokens, Pooling::Mean),
        (c.pooling_mode_cls_token, Pooling::Cls),
        (c.pooling_mode_max_tokens, Pooling::Max),
        (c.pooling_mode_mean_sqrt_len_tokens, Pooling::MeanSqrtLen),
    ];
    let on: Vec<Pooling> = modes.iter().filter(|m| m.0).map(|m| m.1).collect();
    match on.as_slice() {
        [one] => Ok(*one),
        [] => bail!("{}: no pooling mode is set", path.display()),
        _ => bail!(
            "{}: several pooling modes at once (concatenated vectors) are not supported",
            path.display()
        ),
    }
}

/// The model's vector length and window (most tokens per input, special
/// tokens included): sentence-transformers' `max_seq_length`, else the
/// tokenizer's `model_max_length`, never more than the position embeddings
/// allow. Cheap: reads only small JSON files, so the config can check the
/// dimension and size chunks before the model is loaded.
pub fn model_shape(dir: &Path) -> anyhow::Result<(usize, usize)> {
    #[derive(Deserialize)]
    struct St {
        max_seq_length: Option<usize>,
    }
    #[derive(Deserialize)]
    struct Tc {
        model_max_length: Option<f64>,
    }
    if !dir.is_dir() {
        bail!(
            "--embed-model-dir {} is not a folder (it should hold config.json, tokenizer.json, model.safetensors and modules.json)",
            dir.display()
        );
    }
    let config: BertConfig = read_json(&dir.join("config.json"))?;
    let st = dir.join("sentence_bert_config.json");
    let tc = dir.join("tokenizer_config.json");
    let declared = if st.is_file() {
        read_json::<St>(&st)?.max_seq_length
    } else {
        None
    }
    .or_else(|| {
        tc.is_file()
            .then(|| read_json::<Tc>(&tc).ok()?.model_max_length)
            .flatten()
            // transformers writes 1e30 for "no limit".
            .filter(|n| *n >= 1.0 && *n < 1e6)
            .map(|n| n as usize)
    });
    let window = declared
        .unwrap_or(config.max_position_embeddings)
        .min(config.max_position_embeddings);
    Ok((config.hidden_size, window))
}
