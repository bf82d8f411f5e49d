//! Groups chunks into requests: at most `max_inputs` inputs and
//! `max_tokens` tokens each (a chunk over the budget goes alone).

use crate::records::Chunk;

pub struct Batcher {
    max_inputs: usize,
    /// Lowered at run time when the endpoint says batches are too large.
    cap: Option<std::sync::Arc<std::sync::atomic::AtomicUsize>>,
    max_tokens: usize,
    pending: Vec<Chunk>,
    tokens: usize,
}

impl Batcher {
    pub fn new(max_inputs: usize, max_tokens: usize) -> Batcher {
        Batcher {
            max_inputs,
            cap: None,
            max_tokens,
            pending: Vec::with_capacity(max_inputs),
            tokens: 0,
        }
    }

    /// Batches never hold more inputs than `cap` says at the time.
    pub fn with_cap(mut self, cap: std::sync::Arc<std::sync::atomic::AtomicUsize>) -> Batcher {
        self.cap = Some(cap);
        self
    }

    fn max_inputs(&self) -> usize {
        let cap = self
            .cap
            .as_ref()
            .map_or(usize::MAX, |c| c.load(std::sync::atomic::Ordering::Relaxed));
        self.max_inputs.min(cap).max(1)
    }

    /// Adds a chunk; returns a full batch when one is ready.
    pub fn push(&mut self, chunk: Chunk) -> Option<Vec<Chunk>> {
        let t = chunk.tokens as usize;
        let mut out = None;
        if !self.pending.is_empty() && self.tokens + t > self.max_tokens {
            out = self.take();
        }
        self.tokens += t;
        self.pending.push(chunk);
        if out.is_none() && self.pending.len() >= self.max_inputs() {
            out = self.take();
        }
        out
    }

    pub fn take(&mut self) -> Option<Vec<Chunk>> {
        if self.pending.is_empty() {
            return None;
        }
        self.tokens = 0;
        Some(std::mem::replace(
            &mut self.pending,
            Vec::with_capacity(self.max_inputs),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::DocMeta;
    use std::sync::Arc;

    fn chunk(tokens: u32) -> Chunk {
        let doc = Arc::new(DocMeta {
            page: None,
            tenant: Arc::from("t"),
            doc_id: "d".into(),
            source: "s".into(),
            file: Arc::from("s"),
            key: "s".into(),
            hash: String::new(),
            chunk_count: 1,
            pending: Default::default(),
        });
        Chunk {
            id: "i".into(),
            doc,
            index: 0,
            text: "x".into(),
            content_hash: "h".into(),
            tokens,
            extra: None,
        }
    }

    #[test]
    fn batches_close_on_count_and_on_token_budget() {
        let mut b = Batcher::new(3, 100);
        assert!(b.push(chunk(10)).is_none());
        assert!(b.push(chunk(10)).is_none());
        assert_eq!(b.push(chunk(10)).map(|v| v.len()), Some(3));
        assert!(b.push(chunk(60)).is_none());
        // 60 + 50 > 100: the first goes out alone, the second waits.
        assert_eq!(b.push(chunk(50)).map(|v| v.len()), Some(1));
        assert_eq!(b.take().map(|v| v.len()), Some(1));
        assert!(b.take().is_none());
        // A chunk over the whole budget still goes, alone.
        assert!(b.push(chunk(500)).is_none());
        assert_eq!(b.take().map(|v| v.len()), Some(1));
    }
}
