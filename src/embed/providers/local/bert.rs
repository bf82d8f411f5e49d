//! A BERT encoder (the architecture of all-MiniLM, bge, e5 and most
//! sentence-embedding models) on candle, read from a Hugging Face
//! `model.safetensors`. Written here rather than taken from
//! candle-transformers, which compiles every model it knows (minutes of CI
//! for one of them).

use candle_core::{D, DType, Device, Module, Tensor};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder};
use serde::Deserialize;

/// The fields of the model's `config.json` the forward pass needs.
#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    #[serde(default)]
    pub model_type: Option<String>,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub position_embedding_type: Option<String>,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}

#[derive(Clone, Copy)]
enum Activation {
    /// BERT's "gelu": the exact, erf-based one.
    Gelu,
    /// "gelu_new" / "gelu_pytorch_tanh": the tanh approximation.
    GeluTanh,
    Relu,
}

impl Activation {
    fn parse(name: &str) -> Option<Activation> {
        match name {
            "gelu" => Some(Activation::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Some(Activation::GeluTanh),
            "relu" => Some(Activation::Relu),
            _ => None,
        }
    }

    fn apply(self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Activation::Gelu => gelu_erf(x),
            Activation::GeluTanh => x.gelu(),
            Activation::Relu => x.relu(),
        }
    }
}

/// BERT's exact GELU, `x/2 * (1 + erf(x/√2))`, with erf by Abramowitz &
/// Stegun 7.1.26 (absolute error under 1.5e-7, below f32's resolution of
/// the result). candle's `gelu_erf` calls libm's scalar erf per element,
/// which the profile showed at a tenth of the model's time; this loop has
/// no branches and vectorizes.
fn gelu_erf(x: &Tensor) -> candle_core::Result<Tensor> {
    let shape = x.shape().clone();
    let mut v = x.flatten_all()?.to_vec1::<f32>()?;
    for t in v.iter_mut() {
        let z = *t * std::f32::consts::FRAC_1_SQRT_2;
        let a = z.abs();
        let k = 1.0 / (1.0 + 0.327_591_1 * a);
        let poly = k
            * (0.254_829_6
                + k * (-0.284_496_74 + k * (1.421_413_7 + k * (-1.453_152_1 + k * 1.061_405_4))));
        let erf_abs = 1.0 - poly * (-a * a).exp();
        let erf = erf_abs.copysign(z);
        *t = 0.5 * *t * (1.0 + erf);
    }
    Tensor::from_vec(v, shape, x.device())
}

impl BertConfig {
    /// What this implementation does not cover, said before any weight is read.
    pub fn unsupported(&self) -> Option<String> {
        if let Some(t) = &self.model_type
            && t != "bert"
        {
            return Some(format!(
                "model_type \"{t}\" (only BERT-family models with model_type \"bert\" are supported)"
            ));
        }
        if let Some(p) = &self.position_embedding_type
            && p != "absolute"
        {
            return Some(format!("position_embedding_type \"{p}\""));
        }
        if Activation::parse(&self.hidden_act).is_none() {
            return Some(format!("hidden_act \"{}\"", self.hidden_act));
        }
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Some(format!(
                "hidden_size {} not divisible by num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        None
    }
}

pub struct Bert {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    embed_norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    act: Activation,
}

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    out_norm: LayerNorm,
}

impl Bert {
    pub fn load(vb: VarBuilder, cfg: &BertConfig) -> candle_core::Result<Bert> {
        // Checkpoints saved from BertForX carry a `bert.` prefix; plain BertModel ones do not.
        let vb = if vb.contains_tensor("bert.embeddings.word_embeddings.weight") {
            vb.pp("bert")
        } else {
            vb
        };
        let h = cfg.hidden_size;
        let ln = |vb: VarBuilder| candle_nn::layer_norm(h, cfg.layer_norm_eps, vb);
        let e = vb.pp("embeddings");
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| {
                let l = vb.pp(format!("encoder.layer.{i}"));
                let a = l.pp("attention");
                Ok(Layer {
                    query: candle_nn::linear(h, h, a.pp("self.query"))?,
                    key: candle_nn::linear(h, h, a.pp("self.key"))?,
                    value: candle_nn::linear(h, h, a.pp("self.value"))?,
                    attn_out: candle_nn::linear(h, h, a.pp("output.dense"))?,
                    attn_norm: ln(a.pp("output.LayerNorm"))?,
                    intermediate: candle_nn::linear(
                        h,
                        cfg.intermediate_size,
                        l.pp("intermediate.dense"),
                    )?,
                    output: candle_nn::linear(cfg.intermediate_size, h, l.pp("output.dense"))?,
                    out_norm: ln(l.pp("output.LayerNorm"))?,
                })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Bert {
            word: candle_nn::embedding(cfg.vocab_size, h, e.pp("word_embeddings"))?,
            position: candle_nn::embedding(
                cfg.max_position_embeddings,
                h,
                e.pp("position_embeddings"),
            )?,
            token_type: candle_nn::embedding(
                cfg.type_vocab_size,
                h,
                e.pp("token_type_embeddings"),
            )?,
            embed_norm: ln(e.pp("LayerNorm"))?,
            layers,
            heads: cfg.num_attention_heads,
            act: Activation::parse(&cfg.hidden_act).unwrap_or(Activation::Gelu),
        })
    }

    /// Token states `(batch, len, hidden)` for right-padded `ids` `(batch,
    /// len)`; `mask` is 1 for real tokens and 0 for padding.
    pub fn forward(&self, ids: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let (b, len) = ids.dims2()?;
        let dev = ids.device();
        let positions = Tensor::arange(0u32, len as u32, dev)?;
        let types = Tensor::zeros((b, len), DType::U32, dev)?;
        let x = self
            .word
            .forward(ids)?
            .broadcast_add(&self.position.forward(&positions)?)?
            .add(&self.token_type.forward(&types)?)?;
        let mut x = self.embed_norm.forward(&x)?;
        // Padding gets the lowest score before the softmax, as in transformers.
        let bias =
            ((mask.to_dtype(DType::F32)? - 1.0)? * f64::from(f32::MAX))?.reshape((b, 1, 1, len))?;
        for layer in &self.layers {
            x = layer.forward(&x, &bias, self.heads, self.act)?;
        }
        Ok(x)
    }
}

impl Layer {
    fn forward(
        &self,
        x: &Tensor,
        bias: &Tensor,
        heads: usize,
        act: Activation,
    ) -> candle_core::Result<Tensor> {
        let (b, len, h) = x.dims3()?;
        let d = h / heads;
        let split = |t: Tensor| -> candle_core::Result<Tensor> {
            t.reshape((b, len, heads, d))?.transpose(1, 2)?.contiguous()
        };
        let q = split(self.query.forward(x)?)?;
        let k = split(self.key.forward(x)?)?;
        let v = split(self.value.forward(x)?)?;
        let scores = (q.matmul(&k.t()?)? / (d as f64).sqrt())?.broadcast_add(bias)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let ctx = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b, len, h))?;
        let a = self
            .attn_norm
            .forward(&(self.attn_out.forward(&ctx)? + x)?)?;
        let inter = act.apply(&self.intermediate.forward(&a)?)?;
        self.out_norm.forward(&(self.output.forward(&inter)? + &a)?)
    }
}

/// Sentence vectors from token states, by the model's pooling config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    Mean,
    Cls,
    Max,
    MeanSqrtLen,
}

impl Pooling {
    pub fn apply(self, states: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        match self {
            Pooling::Cls => states.narrow(1, 0, 1)?.squeeze(1),
            Pooling::Mean | Pooling::MeanSqrtLen => {
                let sum = states.broadcast_mul(&m)?.sum(1)?;
                let count = m.sum(1)?.clamp(1e-9, f64::MAX)?;
                let count = if self == Pooling::MeanSqrtLen {
                    count.sqrt()?
                } else {
                    count
                };
                sum.broadcast_div(&count)
            }
            Pooling::Max => {
                // Padding may never win the max.
                let masked = states.broadcast_add(&((m - 1.0)? * 1e9)?)?;
                masked.max(1)
            }
        }
    }
}

/// Scales each row to unit length (sentence-transformers' Normalize module).
pub fn normalize(x: &Tensor) -> candle_core::Result<Tensor> {
    let norm = x
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sqrt()?
        .clamp(1e-12, f64::MAX)?;
    x.broadcast_div(&norm)
}

pub fn device() -> Device {
    Device::Cpu
}
