//! The BPE tokenizer used for chunk sizes and request token budgets, with the
//! byte length of every token so a token window maps back to a slice of the
//! original text without decoding it.

use std::sync::LazyLock;

use tiktoken_rs::CoreBPE;

use crate::settings::TokenizerName;

pub struct Tokenizer {
    bpe: &'static CoreBPE,
    /// Byte length of each token id; ordinary encoding is lossless, so the
    /// lengths of a document's tokens add up to its byte length.
    lens: Vec<u8>,
}

static O200K: LazyLock<Tokenizer> =
    LazyLock::new(|| Tokenizer::new(tiktoken_rs::o200k_base_singleton()));
static CL100K: LazyLock<Tokenizer> =
    LazyLock::new(|| Tokenizer::new(tiktoken_rs::cl100k_base_singleton()));

impl Tokenizer {
    pub fn get(name: TokenizerName) -> &'static Tokenizer {
        match name {
            TokenizerName::O200kBase => &O200K,
            TokenizerName::Cl100kBase => &CL100K,
        }
    }

    fn new(bpe: &'static CoreBPE) -> Tokenizer {
        // Ranks are dense from 0; stop at the first id the decoder does not know.
        let mut lens = Vec::with_capacity(210_000);
        for id in 0u32.. {
            match bpe.decode_bytes(&[id]) {
                Ok(b) => lens.push(b.len().min(255) as u8),
                Err(_) => break,
            }
        }
        Tokenizer { bpe, lens }
    }

    /// Byte offsets of token starts, plus the text's length at the end.
    pub fn offsets(&self, text: &str) -> Vec<u32> {
        let tokens = self.bpe.encode_ordinary(text);
        let mut offs = Vec::with_capacity(tokens.len() + 1);
        let mut at = 0u32;
        for t in tokens {
            offs.push(at);
            at += self.lens.get(t as usize).copied().unwrap_or(1) as u32;
        }
        offs.push(text.len() as u32);
        // Token lengths over 255 bytes do not exist in these vocabularies, but if
        // one did the sum would fall short: then fall back to the text's end.
        debug_assert_eq!(at as usize, text.len());
        offs
    }

    pub fn count(&self, text: &str) -> usize {
        self.bpe.encode_ordinary(text).len()
    }
}
