//! How documents are cut: the `Chunking` flags and the settings they become.

use clap::Args;

use crate::settings::{ConfigError, TokenizerName, bad};

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Chunking")]
pub struct ChunkFlags {
    /// Tokens per chunk [default: 1200; for --embed-provider local, two
    /// thirds of the model's window].
    #[arg(long, env = "CHUNK_SIZE")]
    pub chunk_tokens: Option<usize>,

    /// Tokens shared by consecutive chunks of a document [default: 100, at
    /// most an eighth of --chunk-tokens].
    #[arg(long, env = "CHUNK_OVERLAP_SIZE")]
    pub chunk_overlap: Option<usize>,

    /// Tokenizer used for chunking and token budgets.
    #[arg(long, value_enum, default_value_t = TokenizerName::O200kBase)]
    pub tokenizer: TokenizerName,
}

#[derive(Debug, Clone, Copy)]
pub struct ChunkSettings {
    pub tokens: usize,
    pub overlap: usize,
    pub tokenizer: TokenizerName,
    /// Cut as LightRAG does (fixed token windows, its ids) for --layout lightrag.
    pub lightrag: bool,
}

impl ChunkFlags {
    /// `model_window`: the local model's window in its own tokens, when the
    /// embedder is one (chunks default to two thirds of it: they are counted
    /// in --tokenizer tokens, and the model's own tokenizer usually needs
    /// more for the same text).
    pub fn settings(
        self,
        model_window: Option<usize>,
        lightrag: bool,
    ) -> Result<ChunkSettings, ConfigError> {
        let tokens = self
            .chunk_tokens
            .unwrap_or_else(|| model_window.map_or(1200, |window| (window * 2 / 3).max(16)));
        let chunk = ChunkSettings {
            tokens,
            overlap: self.chunk_overlap.unwrap_or((tokens / 8).min(100)),
            tokenizer: self.tokenizer,
            lightrag,
        };
        if chunk.tokens < 16 {
            return Err(bad(format!(
                "--chunk-tokens (CHUNK_SIZE) is {}; use at least 16",
                chunk.tokens
            )));
        }
        if chunk.overlap * 2 > chunk.tokens {
            return Err(bad(format!(
                "--chunk-overlap (CHUNK_OVERLAP_SIZE) {} must be at most half of --chunk-tokens {}",
                chunk.overlap, chunk.tokens
            )));
        }
        Ok(chunk)
    }
}
