//! The limits an endpoint does not state up front, learned from its first
//! refusals so that later requests stay under them instead of each finding
//! them again by being refused: paid APIs count refused requests against the
//! rate limit, and halving a batch to find its one long input costs a
//! refusal at every level.
//!
//! - Inputs per request: a refusal that names the limit ("over the limit of
//!   10", "maximum allowed batch size 32") sets it at once; one that does not
//!   halves it. Batches already formed are cut to it before they are sent.
//! - The longest input: one input refused on its own bounds it. When the
//!   message gives both the limit and the input's size in its own unit
//!   ("maximum context length is 8192 tokens, however you requested 9000"),
//!   the bound in bytes is scaled by their ratio, which lands on the limit
//!   whatever the unit; otherwise the refused length is the bound. Inputs at
//!   or over the bound are embedded in parts before they are sent. A limit
//!   the provider states (Cohere's 2,048 characters) applies from the start.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

pub struct Limits {
    /// Most inputs per request (the batcher reads it as batches form).
    pub inputs: Arc<AtomicUsize>,
    /// Inputs of at least this many bytes are refused (usize::MAX: none known).
    refused_bytes: AtomicUsize,
    /// The provider's own limit in characters.
    chars: Option<usize>,
}

impl Limits {
    pub fn new(batch: usize, chars: Option<usize>) -> Limits {
        Limits {
            inputs: Arc::new(AtomicUsize::new(batch)),
            refused_bytes: AtomicUsize::new(usize::MAX),
            chars,
        }
    }

    pub fn max_inputs(&self) -> usize {
        self.inputs.load(Relaxed).max(1)
    }

    /// Whether `text` is over what the endpoint takes as one input.
    pub fn too_long(&self, text: &str) -> bool {
        text.len() >= self.refused_bytes.load(Relaxed)
            || self
                .chars
                .is_some_and(|c| text.len() > c && text.chars().count() > c)
    }

    /// A batch of `n` was refused as too many inputs; returns the new limit
    /// when it went down.
    pub fn refused_batch(&self, n: usize, msg: &str) -> Option<usize> {
        let to = stated_batch_limit(msg)
            .filter(|&l| l >= 1 && l < n)
            .unwrap_or(n / 2)
            .max(1);
        (self.inputs.fetch_min(to, Relaxed) > to).then_some(to)
    }

    /// One input of `len` bytes was refused on its own; returns the bound
    /// learned.
    pub fn refused_input(&self, len: usize, msg: &str) -> usize {
        let bound = match stated_input_limit(msg) {
            // The limit in the input's own unit: scale its length by it.
            Some((max, got)) if got > max && max > 0 => {
                ((len as u128 * max as u128) / got as u128).max(1) as usize
            }
            _ => len,
        };
        self.refused_bytes.fetch_min(bound, Relaxed);
        self.refused_bytes.load(Relaxed)
    }
}

/// The integers of `s` with their byte offsets.
fn numbers(s: &str) -> Vec<(usize, u64)> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() {
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            if let Ok(n) = s[start..i].parse() {
                out.push((start, n));
            }
        } else {
            i += 1;
        }
    }
    out
}

/// The first integer after the first of `keys` found in `msg`.
fn after(msg: &str, keys: &[&str]) -> Option<u64> {
    let m = msg.to_ascii_lowercase();
    keys.iter().find_map(|k| {
        let at = m.find(k)? + k.len();
        numbers(&m)
            .into_iter()
            .find(|(pos, _)| *pos >= at)
            .map(|(_, n)| n)
    })
}

/// The inputs-per-request limit a refusal states, in the words providers use.
fn stated_batch_limit(msg: &str) -> Option<usize> {
    after(
        msg,
        &[
            "over the limit of",
            "batch size limit is",
            "max number of inputs is",
            "maximum allowed batch size",
            "max batch size",
            "batch size must be",
            "less than or equal to",
            "at most",
            "maximum of",
            "up to",
        ],
    )
    .map(|n| n as usize)
}

/// (limit, this input's size) when a length refusal states both.
fn stated_input_limit(msg: &str) -> Option<(u64, u64)> {
    let pairs: [(&[&str], &[&str]); 4] = [
        // OpenAI: "maximum context length is 8192 tokens, however you requested 9000 tokens"
        (&["maximum context length is"], &["requested"]),
        // TEI: "must have less than 512 tokens. Given: 700"
        (&["must have less than"], &["given:"]),
        // Bedrock (Cohere): "expected maxLength: 2048, actual: 3000"
        (&["maxlength:", "max length:"], &["actual:"]),
        // Voyage: "in your batch has 40000 tokens, which is over the limit of 32000 tokens"
        (&["which is over the limit of"], &["in your batch has"]),
    ];
    pairs
        .iter()
        .find_map(|(max_keys, got_keys)| Some((after(msg, max_keys)?, after(msg, got_keys)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stated_batch_limit_is_taken_at_once() {
        let l = Limits::new(64, None);
        assert_eq!(
            l.refused_batch(64, "too many inputs: batch of 64 is over the limit of 10"),
            Some(10)
        );
        assert_eq!(l.max_inputs(), 10);
        // TEI's wording, and a message without a number: halved.
        let t = Limits::new(64, None);
        assert_eq!(
            t.refused_batch(64, "batch size 64 > maximum allowed batch size 32"),
            Some(32)
        );
        let h = Limits::new(64, None);
        assert_eq!(h.refused_batch(64, "request too large"), Some(32));
        // Voyage's and Azure OpenAI's.
        let v = Limits::new(1000, None);
        assert_eq!(
            v.refused_batch(
                1000,
                "The batch size limit is 128. Your batch size is 1000."
            ),
            Some(128)
        );
        let a = Limits::new(4096, None);
        assert_eq!(
            a.refused_batch(
                4096,
                "Too many inputs. The max number of inputs is 2048.  We hope to increase"
            ),
            Some(2048)
        );
    }

    #[test]
    fn an_input_limit_in_another_unit_is_scaled_to_bytes() {
        let l = Limits::new(64, None);
        let text = "x".repeat(4000);
        // 4000 bytes refused as 1000 "tokens" over a 750-token limit: 3000 bytes.
        let bound = l.refused_input(
            text.len(),
            "This model's maximum context length is 750 tokens, however you requested 1000 tokens.",
        );
        assert_eq!(bound, 3000);
        assert!(l.too_long(&"y".repeat(3000)));
        assert!(!l.too_long(&"y".repeat(2999)));
        // Voyage's wording.
        let v = Limits::new(64, None);
        let bound = v.refused_input(
            4000,
            "The example at index 3 in your batch has 1000 tokens, which is over the limit of 500 tokens.",
        );
        assert_eq!(bound, 2000);
        // Without numbers the refused length itself is the bound.
        let n = Limits::new(64, None);
        assert_eq!(n.refused_input(500, "input too long"), 500);
    }

    #[test]
    fn a_stated_character_limit_counts_characters() {
        let l = Limits::new(96, Some(2048));
        assert!(
            !l.too_long(&"中".repeat(2048)),
            "2048 characters of 3 bytes each fit"
        );
        assert!(l.too_long(&"a".repeat(2049)));
    }
}
