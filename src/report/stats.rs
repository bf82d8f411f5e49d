//! The live counters the stages share while a run goes, and the gauges of
//! work in flight. Counters only move when the thing happened:
//! `vectors_written` when the sink acknowledged the rows, not when they were
//! sent.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};

use serde::Serialize;

use crate::records::{Chunk, Skip};

/// At most this many skipped files and failed chunks are listed one by one;
/// all are counted.
const MAX_LISTED: usize = 10_000;

#[derive(Default)]
pub struct Stats {
    pub files_seen: AtomicU64,
    pub files_to_read: AtomicU64,
    pub files_read: AtomicU64,
    pub files_with_chunks: AtomicU64,
    /// Files another shard of a sharded run loads.
    pub files_other_shards: AtomicU64,
    pub chunks: AtomicU64,
    pub chunks_embedded: AtomicU64,
    pub vectors_written: AtomicU64,
    pub embed_requests: AtomicU64,
    /// Chunks whose vector came from the embedding cache, and their tokens.
    pub cache_hits: AtomicU64,
    pub tokens_saved: AtomicU64,
    /// Chunks whose vector came from a `--batch-api` batch's results.
    pub batch_vectors: AtomicU64,
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
    /// What is waiting where right now, for the stall warning.
    pub gauges: Gauges,
    /// The embedding-space check's outcome (`run::space`).
    pub space: Mutex<Option<crate::space::Verdict>>,
    /// The quality measured before a switch (`run::quality`).
    pub quality: Mutex<Option<super::quality::Quality>>,
    /// What the stages wait out when it is down (the endpoint, the store),
    /// for the stall warning and the progress line.
    pub outages: Mutex<Vec<std::sync::Arc<crate::outage::Outage>>>,
    pub(super) skipped: Mutex<Vec<Skip>>,
    skipped_by_reason: Mutex<BTreeMap<&'static str, u64>>,
    by_format: Mutex<BTreeMap<&'static str, u64>>,
    pub(super) decoded: Mutex<Vec<DecodedFile>>,
    decoded_by_encoding: Mutex<BTreeMap<&'static str, u64>>,
    pub(super) failed: Mutex<Vec<FailedChunk>>,
    failed_count: AtomicU64,
    pub(super) failed_files: Mutex<std::collections::BTreeSet<String>>,
    /// Every failed chunk, one JSON line each, for `--retry-failed`.
    dead_letter: Mutex<Option<DeadLetter>>,
}

/// Work in flight between and inside the stages. Each moves up when work
/// enters and down when it leaves, so a reading may lag by one step.
#[derive(Default)]
pub struct Gauges {
    /// Files being read or extracted right now.
    pub files_reading: AtomicI64,
    /// Chunks in the queue to the embed stage.
    pub chunks_queued: AtomicI64,
    /// Embedding requests sent and not answered yet.
    pub requests_in_flight: AtomicI64,
    /// Embedded rows in the queue to the sink stage.
    pub rows_queued: AtomicI64,
    /// Writes sent to the store and not acknowledged yet.
    pub writes_in_flight: AtomicI64,
}

impl Gauges {
    pub fn add(g: &AtomicI64, n: i64) {
        g.fetch_add(n, Relaxed);
    }
    pub fn get(g: &AtomicI64) -> u64 {
        g.load(Relaxed).max(0) as u64
    }
}

/// Counts one thing in flight on a gauge while it lives, however the
/// future holding it ends (an answer, an error, or cancellation).
pub struct InFlight<'a>(&'a AtomicI64);

impl<'a> InFlight<'a> {
    pub fn new(g: &'a AtomicI64) -> Self {
        g.fetch_add(1, Relaxed);
        InFlight(g)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
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

/// A file decoded from a legacy encoding, as the report lists it.
#[derive(Debug, Clone, Serialize)]
pub struct DecodedFile {
    pub path: String,
    pub encoding: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct FailedChunk {
    pub source: String,
    pub chunk_index: u32,
    pub id: String,
    pub error: String,
}

impl Stats {
    /// What is down now (the endpoint, the store), and for how long.
    pub fn down(&self) -> Vec<(&'static str, std::time::Duration)> {
        self.outages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(|o| o.down_for().map(|d| (o.what(), d)))
            .collect()
    }

    /// Chunks a request to the endpoint embedded: every chunk embedded
    /// less the cache's and the batches' (parts of an over-long chunk
    /// count as the one chunk).
    pub fn embedded_synchronously(&self) -> u64 {
        Stats::get(&self.chunks_embedded)
            .saturating_sub(Stats::get(&self.cache_hits) + Stats::get(&self.batch_vectors))
    }

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

    /// A text file was not UTF-8 and was decoded from `encoding`.
    pub fn decoded(&self, path: &str, encoding: &'static str) {
        tracing::info!("{path}: decoded from {encoding}");
        *lock(&self.decoded_by_encoding).entry(encoding).or_default() += 1;
        let mut list = lock(&self.decoded);
        if list.len() < MAX_LISTED {
            list.push(DecodedFile {
                path: path.to_string(),
                encoding,
            });
        }
    }

    pub fn files_by_encoding(&self) -> BTreeMap<&'static str, u64> {
        lock(&self.decoded_by_encoding).clone()
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

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere must not hide the counts: take the data regardless.
    m.lock().unwrap_or_else(|p| p.into_inner())
}
