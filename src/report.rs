//! What a run did: live counters shared by the stages, and the summary
//! printed at the end and written with `--report` as JSON.
//!
//! Counters only move when the thing happened: `vectors_written` when the
//! sink acknowledged the rows, not when they were sent.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use serde::Serialize;

use crate::chunk::Chunk;
use crate::source::Skip;

/// At most this many skipped files and failed chunks are listed one by one;
/// all are counted.
const MAX_LISTED: usize = 10_000;

#[derive(Default)]
pub struct Stats {
    pub files_seen: AtomicU64,
    pub files_to_read: AtomicU64,
    pub files_read: AtomicU64,
    pub files_with_chunks: AtomicU64,
    pub chunks: AtomicU64,
    pub chunks_embedded: AtomicU64,
    pub vectors_written: AtomicU64,
    pub embed_requests: AtomicU64,
    pub embed_retries: AtomicU64,
    pub tokens: AtomicU64,
    /// Chunks not embedded because the sink already holds them unchanged.
    pub chunks_unchanged: AtomicU64,
    pub docs_unchanged: AtomicU64,
    pub stale_deleted: AtomicU64,
    /// Rows a killed run wrote but had not recorded, found in the sink at start.
    pub found_on_resume: AtomicU64,
    /// Chunks too long for the model, embedded as the mean of their parts.
    pub chunks_in_parts: AtomicU64,
    pub pruned_docs: AtomicU64,
    pub pruned_chunks: AtomicU64,
    pub walk_done: AtomicBool,
    skipped: Mutex<Vec<Skip>>,
    skipped_by_reason: Mutex<BTreeMap<&'static str, u64>>,
    by_format: Mutex<BTreeMap<&'static str, u64>>,
    failed: Mutex<Vec<FailedChunk>>,
    failed_count: AtomicU64,
    failed_files: Mutex<std::collections::BTreeSet<String>>,
    /// Every failed chunk, one JSON line each, for `--retry-failed`.
    dead_letter: Mutex<Option<DeadLetter>>,
}

struct DeadLetter {
    path: std::path::PathBuf,
    out: Option<std::io::BufWriter<std::fs::File>>,
}

/// One line of the dead-letter file.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct DeadChunk {
    pub tenant: String,
    pub file: String,
    pub source: String,
    pub chunk_index: u32,
    pub id: String,
    pub error: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct FailedChunk {
    pub source: String,
    pub chunk_index: u32,
    pub id: String,
    pub error: String,
}

impl Stats {
    pub fn skip(&self, s: Skip) {
        tracing::debug!("skipped {}: {}", s.path, s.detail);
        *lock(&self.skipped_by_reason).entry(s.reason).or_default() += 1;
        let mut list = lock(&self.skipped);
        if list.len() < MAX_LISTED {
            list.push(s);
        }
    }

    /// One file of this format was found to read (loaded or skipped later).
    pub fn count_format(&self, format: &'static str) {
        *lock(&self.by_format).entry(format).or_default() += 1;
    }

    pub fn files_by_format(&self) -> BTreeMap<&'static str, u64> {
        lock(&self.by_format).clone()
    }

    /// Failed chunks will also be written to `path` (created on the first one).
    /// An old file at `path` is removed: it would list chunks this run retries.
    pub fn set_dead_letter(&self, path: std::path::PathBuf) {
        let _ = std::fs::remove_file(&path);
        *lock(&self.dead_letter) = Some(DeadLetter { path, out: None });
    }

    /// The dead-letter file, once something was written to it.
    pub fn dead_letter_path(&self) -> Option<String> {
        let mut g = lock(&self.dead_letter);
        let dl = g.as_mut()?;
        let out = dl.out.as_mut()?;
        let _ = std::io::Write::flush(out);
        Some(dl.path.display().to_string())
    }

    fn write_dead(&self, chunks: &[Chunk], error: &str) {
        let mut g = lock(&self.dead_letter);
        let Some(dl) = g.as_mut() else { return };
        if dl.out.is_none() {
            if let Some(dir) = dl.path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            match std::fs::File::create(&dl.path) {
                Ok(f) => dl.out = Some(std::io::BufWriter::new(f)),
                Err(e) => {
                    tracing::error!(
                        "cannot write the dead-letter file {}: {e}",
                        dl.path.display()
                    );
                    *g = None;
                    return;
                }
            }
        }
        if let Some(out) = dl.out.as_mut() {
            for c in chunks {
                let line = DeadChunk {
                    tenant: c.doc.tenant.to_string(),
                    file: c.doc.file.to_string(),
                    source: c.doc.source.clone(),
                    chunk_index: c.index,
                    id: c.id.clone(),
                    error: error.to_string(),
                };
                if let Ok(json) = serde_json::to_string(&line) {
                    let _ = std::io::Write::write_all(out, format!("{json}\n").as_bytes());
                }
            }
        }
    }

    pub fn fail(&self, chunks: &[Chunk], error: &str) {
        self.write_dead(chunks, error);
        self.failed_count.fetch_add(chunks.len() as u64, Relaxed);
        let mut files = lock(&self.failed_files);
        let mut list = lock(&self.failed);
        for c in chunks {
            files.insert(c.doc.file.to_string());
            if list.len() < MAX_LISTED {
                list.push(FailedChunk {
                    source: c.doc.source.clone(),
                    chunk_index: c.index,
                    id: c.id.clone(),
                    error: error.to_string(),
                });
            }
        }
    }

    pub fn skipped_by_reason(&self) -> BTreeMap<&'static str, u64> {
        lock(&self.skipped_by_reason).clone()
    }

    /// The failed chunks listed so far (at most the first few hundred).
    pub fn failures(&self) -> Vec<FailedChunk> {
        lock(&self.failed).clone()
    }

    pub fn failed_count(&self) -> u64 {
        self.failed_count.load(Relaxed)
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Relaxed)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere must not hide the counts: take the data regardless.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub tenant: String,
    pub sink: String,
    pub embedding_endpoint: String,
    pub embed_dim: usize,
    pub files_seen: u64,
    pub files_loaded: u64,
    /// Files found to read, by format ("other": no reader for the type).
    pub files_by_format: BTreeMap<&'static str, u64>,
    pub files_skipped: BTreeMap<&'static str, u64>,
    pub skipped: Vec<Skip>,
    pub chunks: u64,
    pub chunks_unchanged: u64,
    pub docs_unchanged: u64,
    pub vectors_written: u64,
    pub stale_chunks_deleted: u64,
    pub chunks_found_on_resume: u64,
    pub chunks_embedded_in_parts: u64,
    pub docs_pruned: u64,
    pub chunks_pruned: u64,
    pub state_file: Option<String>,
    pub dead_letter_file: Option<String>,
    pub failed_chunks: u64,
    pub failures: Vec<FailedChunk>,
    pub embed_requests: u64,
    pub embed_retries: u64,
    pub tokens: u64,
    pub tenant_rows: Option<u64>,
    /// What the state file says the sink should hold for the tenant.
    pub expected_rows: Option<u64>,
    pub index: Option<String>,
    pub interrupted: bool,
    pub error: Option<String>,
    pub elapsed_seconds: f64,
    pub vectors_per_second: f64,
}

pub struct RunInfo {
    pub state_file: Option<String>,
    pub tenant: String,
    pub sink: String,
    pub embedding_endpoint: String,
    pub embed_dim: usize,
    pub tenant_rows: Option<u64>,
    pub expected_rows: Option<u64>,
    pub index: Option<String>,
    pub interrupted: bool,
    pub error: Option<String>,
    pub elapsed_seconds: f64,
}

impl Report {
    pub fn build(stats: &Stats, info: RunInfo) -> Report {
        let written = Stats::get(&stats.vectors_written);
        let failed_files = lock(&stats.failed_files).len() as u64;
        Report {
            tenant: info.tenant,
            sink: info.sink,
            embedding_endpoint: info.embedding_endpoint,
            embed_dim: info.embed_dim,
            files_seen: Stats::get(&stats.files_seen),
            files_loaded: Stats::get(&stats.files_with_chunks).saturating_sub(failed_files),
            files_by_format: stats.files_by_format(),
            files_skipped: stats.skipped_by_reason(),
            skipped: lock(&stats.skipped).clone(),
            chunks: Stats::get(&stats.chunks),
            chunks_unchanged: Stats::get(&stats.chunks_unchanged),
            docs_unchanged: Stats::get(&stats.docs_unchanged),
            vectors_written: written,
            stale_chunks_deleted: Stats::get(&stats.stale_deleted),
            chunks_found_on_resume: Stats::get(&stats.found_on_resume),
            chunks_embedded_in_parts: Stats::get(&stats.chunks_in_parts),
            docs_pruned: Stats::get(&stats.pruned_docs),
            chunks_pruned: Stats::get(&stats.pruned_chunks),
            state_file: info.state_file,
            dead_letter_file: stats.dead_letter_path(),
            failed_chunks: stats.failed_count(),
            failures: lock(&stats.failed).clone(),
            embed_requests: Stats::get(&stats.embed_requests),
            embed_retries: Stats::get(&stats.embed_retries),
            tokens: Stats::get(&stats.tokens),
            tenant_rows: info.tenant_rows,
            expected_rows: info.expected_rows,
            index: info.index,
            interrupted: info.interrupted,
            error: info.error,
            elapsed_seconds: round3(info.elapsed_seconds),
            vectors_per_second: round3(written as f64 / info.elapsed_seconds.max(1e-9)),
        }
    }

    /// The human summary, printed to stdout at the end of a run.
    pub fn summary(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let skipped: u64 = self.files_skipped.values().sum();
        let _ = writeln!(s, "vecload: tenant {:?} -> {}", self.tenant, self.sink);
        let _ = writeln!(
            s,
            "  files: {} seen, {} loaded, {} skipped{}",
            self.files_seen,
            self.files_loaded,
            skipped,
            if skipped > 0 {
                format!(
                    " ({})",
                    self.files_skipped
                        .iter()
                        .map(|(r, n)| format!("{r}: {n}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            } else {
                String::new()
            }
        );
        if !self.files_by_format.is_empty() {
            let _ = writeln!(s, "  formats: {}", counts(&self.files_by_format));
        }
        for sk in self
            .skipped
            .iter()
            .filter(|s| s.reason != "unsupported type")
            .take(20)
        {
            let _ = writeln!(s, "    skipped {} ({}: {})", sk.path, sk.reason, sk.detail);
        }
        let _ = writeln!(
            s,
            "  chunks: {}, tokens: {}, embedding requests: {} ({} retries)",
            self.chunks, self.tokens, self.embed_requests, self.embed_retries
        );
        if self.chunks_unchanged > 0 {
            let _ = writeln!(
                s,
                "  unchanged: {} chunks ({} documents) already in the sink, not embedded again",
                self.chunks_unchanged, self.docs_unchanged
            );
        }
        if self.chunks_embedded_in_parts > 0 {
            let _ = writeln!(
                s,
                "  {} chunks were too long for the model and were embedded in parts (the mean \
                 of their parts' vectors); lower --chunk-tokens to stay under the model's limit",
                self.chunks_embedded_in_parts
            );
        }
        if self.stale_chunks_deleted + self.chunks_pruned > 0 {
            let _ = writeln!(
                s,
                "  deleted: {} stale chunks of shorter documents, {} chunks of {} pruned documents",
                self.stale_chunks_deleted, self.chunks_pruned, self.docs_pruned
            );
        }
        let _ = writeln!(
            s,
            "  vectors written: {} in {:.1}s ({:.0}/s){}",
            self.vectors_written,
            self.elapsed_seconds,
            self.vectors_per_second,
            self.tenant_rows
                .map(|n| format!("; tenant now has {n} rows"))
                .unwrap_or_default()
        );
        if let (Some(have), Some(want)) = (self.tenant_rows, self.expected_rows)
            && have != want
        {
            let _ = writeln!(
                s,
                "  WARNING: the sink holds {have} rows of this tenant but the state file records {want}; \
                 other loads of this tenant (another PATH or state file), or changes made outside vecload?"
            );
        }
        if let Some(ix) = &self.index {
            let _ = writeln!(s, "  index: {ix}");
        }
        if self.failed_chunks > 0 {
            let _ = writeln!(
                s,
                "  FAILED: {} chunks were not written:",
                self.failed_chunks
            );
            for f in self.failures.iter().take(20) {
                let _ = writeln!(s, "    {} chunk {}: {}", f.source, f.chunk_index, f.error);
            }
            if self.failures.len() > 20 {
                let _ = writeln!(s, "    ... {} more (see --report)", self.failed_chunks - 20);
            }
            if let Some(f) = &self.dead_letter_file {
                let _ = writeln!(
                    s,
                    "  dead letters: {f} (retry them with --retry-failed {f})"
                );
            }
        }
        if self.interrupted {
            let _ = writeln!(
                s,
                "  INTERRUPTED: rerun the same command to resume; written chunks are not embedded again{}",
                self.state_file
                    .as_ref()
                    .map(|p| format!(" (state: {p})"))
                    .unwrap_or_default()
            );
        }
        if let Some(e) = &self.error {
            let _ = writeln!(s, "  ERROR: {e}");
        }
        s
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// `a 3, b 1` for a count per name.
pub fn counts(m: &BTreeMap<&'static str, u64>) -> String {
    m.iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}
