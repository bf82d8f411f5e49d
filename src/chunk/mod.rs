//! Token-aware chunking: documents in, chunks with deterministic ids out.
//!
//! Each document is tokenized once and cut into windows of `tokens` tokens
//! overlapping by `overlap`, as LightRAG does, but each window's end is moved
//! back (by at most a fifth of the window) to the best nearby break: a
//! paragraph, then a line, a sentence, a word. The chunk is then a slice of
//! the original text, so no character is ever split and no decoding is done.
//! One tokenizer pass per document is what keeps chunking far ahead of the
//! embedding endpoint; splitters that re-tokenize candidate pieces are an
//! order of magnitude slower (see BENCHMARKS.md).

pub mod id;
pub mod settings;
pub mod tokenizer;

use std::sync::Arc;

pub use tokenizer::Tokenizer;

use crate::chunk::settings::ChunkSettings;
use crate::records::{Chunk, DocMeta, Document};

pub struct Chunker {
    tok: &'static Tokenizer,
    tok_name: crate::settings::TokenizerName,
    size: usize,
    overlap: usize,
    lightrag: bool,
}

/// Byte range of one chunk in its document, and its token count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: usize,
    pub end: usize,
    pub tokens: usize,
}

impl Chunker {
    pub fn new(cfg: &ChunkSettings) -> Chunker {
        Chunker {
            tok: Tokenizer::get(cfg.tokenizer),
            tok_name: cfg.tokenizer,
            size: cfg.tokens,
            overlap: cfg.overlap,
            lightrag: cfg.lightrag,
        }
    }

    pub fn tokenizer(&self) -> &'static Tokenizer {
        self.tok
    }

    /// Identifies the text and the settings that cut it: the same hash
    /// always gives the same chunks.
    pub fn doc_hash(&self, text: &str) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        let mode = if self.lightrag { "/lightrag" } else { "" };
        h.update(format!("{:?}/{}/{}{mode}\0", self.tok_name, self.size, self.overlap).as_bytes());
        h.update(text.as_bytes());
        hex::encode(h.finalize())
    }

    pub fn chunk(&self, tenant: &Arc<str>, doc: Document, hash: String) -> Vec<Chunk> {
        if self.lightrag {
            return self.lightrag_chunks(tenant, doc, hash);
        }
        let windows = if doc.records {
            self.record_windows(&doc.text)
        } else {
            self.windows(&doc.text)
        };
        let meta = Arc::new(DocMeta {
            tenant: tenant.clone(),
            doc_id: id::doc_id(&doc.key),
            source: doc.source,
            file: doc.file,
            key: doc.key.clone(),
            page: doc.page,
            hash,
            chunk_count: windows.len() as u32,
            pending: std::sync::atomic::AtomicU32::new(0),
        });
        windows
            .into_iter()
            .enumerate()
            .map(|(i, w)| {
                let text = doc.text[w.start..w.end].to_string();
                Chunk {
                    id: id::chunk_id(tenant, &doc.key, i as u32),
                    doc: meta.clone(),
                    index: i as u32,
                    content_hash: crate::records::content_hash(&text),
                    text,
                    tokens: w.tokens as u32,
                    extra: None,
                }
            })
            .collect()
    }

    /// Non-empty, whitespace-trimmed windows covering the text.
    /// LightRAG's `chunking_by_token_size`: windows of `size` tokens every
    /// `size - overlap` tokens, each decoded on its own (bytes of a split
    /// character become U+FFFD, as tiktoken's decode does) and stripped;
    /// empty ones dropped, their order index kept. Ids are LightRAG's:
    /// `doc-` + md5(file name), `{doc_id}-chunk-{order:03d}`, and the stored
    /// file path is the file name, as LightRAG stores it.
    fn lightrag_chunks(&self, tenant: &Arc<str>, doc: Document, hash: String) -> Vec<Chunk> {
        // LightRAG cleans every document before it chunks it.
        let text = crate::layout::lightrag_clean(&doc.text);
        let offs = self.tok.offsets(&text);
        let n = offs.len() - 1;
        let step = self.size.saturating_sub(self.overlap).max(1);
        let name = doc
            .source
            .rsplit('/')
            .next()
            .unwrap_or(&doc.source)
            .to_string();
        let doc_id = crate::layout::doc_id(&name);
        let bytes = text.as_bytes();
        let mut pieces = Vec::new();
        let mut windows = 0u32;
        for (order, start) in (0..n).step_by(step).enumerate() {
            windows += 1;
            let end = (start + self.size).min(n);
            let raw = String::from_utf8_lossy(&bytes[offs[start] as usize..offs[end] as usize]);
            let content = crate::layout::py_strip(&raw);
            if !content.is_empty() {
                pieces.push((order as u32, content.to_string(), (end - start) as u32));
            }
        }
        let meta = Arc::new(DocMeta {
            tenant: tenant.clone(),
            doc_id: doc_id.clone(),
            source: name,
            file: doc.file,
            key: doc.key,
            page: doc.page,
            hash,
            chunk_count: windows,
            pending: std::sync::atomic::AtomicU32::new(0),
        });
        pieces
            .into_iter()
            .map(|(order, text, tokens)| Chunk {
                id: crate::layout::chunk_id(&doc_id, order),
                doc: meta.clone(),
                index: order,
                content_hash: crate::records::content_hash(&text),
                text,
                tokens,
                extra: None,
            })
            .collect()
    }

    /// Whole lines packed greedily up to `size` tokens, with no overlap: a
    /// table row is never cut in two or paid for twice. A single line over
    /// `size` is cut like any text.
    pub fn record_windows(&self, text: &str) -> Vec<Window> {
        let offs = self.tok.offsets(text);
        // The first token starting at or after a byte.
        let tok_at = |byte: usize| offs.partition_point(|&o| (o as usize) < byte);
        let mut ends: Vec<usize> = text.match_indices('\n').map(|(i, _)| i + 1).collect();
        if ends.last() != Some(&text.len()) {
            ends.push(text.len());
        }
        let mut out = Vec::new();
        let (mut start_b, mut start_t) = (0usize, 0usize);
        let mut fit: Option<(usize, usize)> = None;
        for end_b in ends {
            let end_t = tok_at(end_b);
            if end_t - start_t <= self.size {
                fit = Some((end_b, end_t));
                continue;
            }
            if let Some((fb, ft)) = fit.take() {
                push_trimmed(&mut out, text, start_b, fb, ft - start_t);
                (start_b, start_t) = (fb, ft);
                if end_t - start_t <= self.size {
                    fit = Some((end_b, end_t));
                    continue;
                }
            }
            for w in self.windows(&text[start_b..end_b]) {
                out.push(Window {
                    start: start_b + w.start,
                    end: start_b + w.end,
                    tokens: w.tokens,
                });
            }
            (start_b, start_t) = (end_b, end_t);
        }
        if let Some((fb, ft)) = fit {
            push_trimmed(&mut out, text, start_b, fb, ft - start_t);
        }
        out
    }

    pub fn windows(&self, text: &str) -> Vec<Window> {
        let offs = self.tok.offsets(text);
        let n = offs.len() - 1;
        let b = text.as_bytes();
        let slack = (self.size / 5).max(1);
        let mut out = Vec::new();
        let mut s = 0usize;
        loop {
            let hard_end = (s + self.size).min(n);
            let e = if hard_end == n {
                n
            } else {
                let lo = (s + self.overlap + 1).max(hard_end - slack);
                best_break(b, &offs, lo, hard_end)
                    .or_else(|| {
                        (s + 1..=hard_end)
                            .rev()
                            .find(|&k| text.is_char_boundary(offs[k] as usize))
                    })
                    .or_else(|| (hard_end..=n).find(|&k| text.is_char_boundary(offs[k] as usize)))
                    .unwrap_or(n)
            };
            push_trimmed(&mut out, text, offs[s] as usize, offs[e] as usize, e - s);
            if e == n {
                break;
            }
            // Next window starts `overlap` tokens back, nudged forward to a word start.
            let back = e.saturating_sub(self.overlap).max(s + 1);
            let reach = (back + self.overlap / 2).min(e);
            s = (back..=reach)
                .find(|&k| score(b, offs[k]) >= 1)
                .or_else(|| (back..=e).find(|&k| text.is_char_boundary(offs[k] as usize)))
                .unwrap_or(e);
        }
        out
    }
}

fn push_trimmed(out: &mut Vec<Window>, text: &str, start: usize, end: usize, tokens: usize) {
    let piece = &text[start..end];
    let trimmed = piece.trim_start();
    let start = start + (piece.len() - trimmed.len());
    let end = start + trimmed.trim_end().len();
    if end > start {
        out.push(Window { start, end, tokens });
    }
}

/// The token boundary in `lo..=hi` with the best break score; the later one on ties.
fn best_break(b: &[u8], offs: &[u32], lo: usize, hi: usize) -> Option<usize> {
    let mut best: Option<(i32, usize)> = None;
    for (k, &off) in offs.iter().enumerate().take(hi + 1).skip(lo) {
        let sc = score(b, off);
        if sc >= 0 && best.is_none_or(|(bs, _)| sc >= bs) {
            best = Some((sc, k));
        }
    }
    best.map(|(_, k)| k)
}

/// How good a place byte `p` is to end a chunk: paragraph 4, line 3,
/// sentence 2, word 1, any character boundary 0, inside a character -1.
fn score(b: &[u8], p: u32) -> i32 {
    let p = p as usize;
    if p < b.len() && (b[p] & 0xC0) == 0x80 {
        return -1;
    }
    let before = &b[..p];
    let after = &b[p..];
    let nl_before = before.ends_with(b"\n") || before.ends_with(b"\n\r");
    let nl_after = after.starts_with(b"\n") || after.starts_with(b"\r\n");
    if before.ends_with(b"\n\n") || after.starts_with(b"\n\n") || (nl_before && nl_after) {
        return 4;
    }
    if nl_before || nl_after {
        return 3;
    }
    const CJK_END: [&[u8]; 5] = [
        "。".as_bytes(),
        "！".as_bytes(),
        "？".as_bytes(),
        "；".as_bytes(),
        "…".as_bytes(),
    ];
    if CJK_END.iter().any(|t| before.ends_with(t)) {
        return 2;
    }
    let ws_after = after.first().is_some_and(|c| c.is_ascii_whitespace());
    let ws_before = before.last().is_some_and(|c| c.is_ascii_whitespace());
    if ws_after || ws_before {
        let end = before.trim_ascii_end();
        if matches!(end.last(), Some(b'.' | b'!' | b'?' | b';' | b':')) {
            return 2;
        }
        return 1;
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::TokenizerName;

    fn chunker(tokens: usize, overlap: usize) -> Chunker {
        Chunker::new(&ChunkSettings {
            tokens,
            overlap,
            tokenizer: TokenizerName::O200kBase,
            lightrag: false,
        })
    }

    #[test]
    fn short_text_is_one_trimmed_chunk() {
        let w = chunker(100, 10).windows("  hello world \n");
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].start, 2);
        assert_eq!(w[0].end, 13);
    }

    #[test]
    fn whitespace_only_gives_no_chunks() {
        assert!(chunker(100, 10).windows(" \n\t \n ").is_empty());
        assert!(chunker(100, 10).windows("").is_empty());
    }

    #[test]
    fn windows_cover_the_text_in_order_and_respect_size() {
        let text = "The quick brown fox jumps over the lazy dog. ".repeat(400)
            + "\n\nSecond part.\n"
            + &"Lorem ipsum dolor sit amet, consectetur adipiscing elit. ".repeat(300);
        let c = chunker(120, 20);
        let tok = c.tokenizer();
        let w = c.windows(&text);
        assert!(w.len() > 10);
        for pair in w.windows(2) {
            assert!(pair[1].start > pair[0].start, "windows move forward");
            assert!(pair[1].start < pair[0].end, "consecutive windows overlap");
        }
        assert_eq!(w.last().unwrap().end, text.trim_end().len());
        for (i, win) in w.iter().enumerate() {
            let n = tok.count(&text[win.start..win.end]);
            assert!(n <= 125, "chunk of {n} tokens");
            assert!(n >= 60 || i == w.len() - 1, "chunk of only {n} tokens");
        }
    }

    #[test]
    fn cjk_text_is_never_split_inside_a_character() {
        let text = "中文文本分块测试，这是一个关于向量数据库的句子。".repeat(500)
            + &"日本語のテキストも正しく分割されるべきです。".repeat(300);
        let c = chunker(64, 8);
        let w = c.windows(&text);
        assert!(w.len() > 20);
        for win in &w {
            assert!(text.is_char_boundary(win.start) && text.is_char_boundary(win.end));
        }
        // Sentence ends are preferred over arbitrary character breaks.
        let at_sentence = w[..w.len() - 1]
            .iter()
            .filter(|x| text[..x.end].ends_with('。') || text[..x.end].ends_with('す'))
            .count();
        assert!(
            at_sentence * 2 > w.len(),
            "{at_sentence} of {} end at a sentence",
            w.len()
        );
    }

    #[test]
    fn paragraph_breaks_are_preferred() {
        let para = "word ".repeat(100);
        let text = format!("{para}\n\n{para}\n\n{para}\n\n{para}");
        let w = chunker(120, 10).windows(&text);
        for x in &w[..w.len() - 1] {
            assert!(
                text[x.end..].trim_start_matches(' ').starts_with("\n\n"),
                "chunk ends mid-paragraph at {}",
                x.end
            );
        }
    }

    #[test]
    fn record_windows_hold_whole_rows_without_overlap() {
        let rows: String = (0..200)
            .map(|i| format!("id: {i}; name: customer number {i}; city: Lisbon\n"))
            .collect();
        let c = chunker(100, 10);
        let w = c.record_windows(&rows);
        assert!(w.len() > 5, "{}", w.len());
        let mut joined = String::new();
        for x in &w {
            let piece = &rows[x.start..x.end];
            assert!(
                piece.starts_with("id: ") && piece.ends_with("Lisbon"),
                "{piece:?}"
            );
            assert!(x.tokens <= 100, "{}", x.tokens);
            joined.push_str(piece);
            joined.push('\n');
        }
        // Every row exactly once: no overlap, nothing lost.
        assert_eq!(joined, rows);
        // A row longer than a chunk is still cut, not dropped.
        let long = format!("a: {}\nb: short\n", "word ".repeat(400));
        let w = c.record_windows(&long);
        assert!(w.len() >= 5 && long[w.last().unwrap().start..].starts_with("b: short"));
    }

    #[test]
    fn chunks_carry_ids_hashes_and_indexes() {
        let tenant: Arc<str> = Arc::from("t1");
        let doc = Document {
            key: "a.md".into(),
            source: "a.md".into(),
            file: Arc::from("a.md"),
            text: "alpha ".repeat(500),
            page: None,
            records: false,
        };
        let chunks = chunker(100, 10).chunk(&tenant, doc, String::new());
        assert!(chunks.len() > 3);
        for (i, c) in chunks.iter().enumerate() {
            assert_eq!(c.index as usize, i);
            assert_eq!(c.id, id::chunk_id("t1", "a.md", i as u32));
            assert_eq!(c.content_hash, crate::records::content_hash(&c.text));
            assert!(!c.text.trim().is_empty());
        }
    }
}
