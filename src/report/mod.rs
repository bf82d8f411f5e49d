//! What a run did: the live counters shared by the stages (`stats`), how a
//! run ends early (`fatal`), progress while it goes (`progress`), and the
//! summary printed at the end and written with `--report` as JSON.

mod fatal;
pub mod output;
pub mod progress;
pub mod quality;
pub mod reembed;
mod stats;

use std::collections::BTreeMap;

use serde::Serialize;

pub use fatal::Fatal;
use stats::lock;
pub use stats::{DeadChunk, DecodedFile, FailedChunk, Gauges, InFlight, Stats};

use crate::records::Skip;

/// What `--batch-api` did before the load wrote (`run/batches/`).
#[derive(Debug, Default, Clone, Serialize)]
pub struct BatchSummary {
    /// Batches whose results this load used (all rounds).
    pub batches: u64,
    /// Of them, submitted by this run (the rest by an earlier, killed one).
    pub submitted: u64,
    pub inputs_answered: u64,
    /// Inputs no batch answered, left to the synchronous path: the sum of
    /// the three below (set once, at the end of the batch phase).
    pub inputs_failed: u64,
    /// Inputs of a refused line (the synchronous path handles the refusal).
    pub inputs_refused: u64,
    /// Inputs every batch they were put in left undone (expired, cancelled,
    /// failed): two batches, or one with `--batch-fallback sync`.
    pub inputs_undone: u64,
    /// Inputs of requests too few for a batch (Bedrock's minimum records).
    pub inputs_too_few: u64,
    pub seconds_waited: f64,
    /// A signal came while waiting: nothing was written; the batches go on.
    pub interrupted: bool,
}

impl BatchSummary {
    /// The summary's batch line: what batches answered, and what went the
    /// synchronous way and why (`rows`: what the run calls its rows).
    pub(crate) fn describe(
        &self,
        s: &mut String,
        from_batches: u64,
        synchronously: u64,
        rows: &str,
    ) {
        use std::fmt::Write;
        if self.batches == 0 && self.inputs_failed == 0 {
            return;
        }
        let _ = writeln!(
            s,
            "  batch API: {} batches ({} submitted by this run), {} inputs answered; {} {rows} \
             written from batch results, {} embedded synchronously",
            self.batches, self.submitted, self.inputs_answered, from_batches, synchronously
        );
        let why: Vec<String> = [
            (self.inputs_refused, "refused by a batch"),
            (
                self.inputs_undone,
                "left undone by every batch they were in",
            ),
            (self.inputs_too_few, "too few for a batch"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
        if !why.is_empty() {
            let _ = writeln!(s, "    sent synchronously: {}", why.join(", "));
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub tenant: String,
    /// This worker's shard (`I/N`) of a sharded run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    /// The whole-target step this run was (`prepare`, `finish`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<&'static str>,
    /// Files left to the other shards.
    pub files_in_other_shards: u64,
    /// Another worker seen running the same shard at the same time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub also_running: Option<String>,
    /// The finish step's check of the workers' reports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workers: Option<crate::shard::WorkersCheck>,
    /// Rows of the tenant (or shard) the store held at the start, read as
    /// the record of what is paid for when no state file knew the tenant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows_in_store_at_start: Option<u64>,
    pub sink: String,
    pub embedding_endpoint: String,
    pub embed_dim: usize,
    pub files_seen: u64,
    pub files_loaded: u64,
    /// Files found to read, by format ("other": no reader for the type).
    pub files_by_format: BTreeMap<&'static str, u64>,
    pub files_skipped: BTreeMap<&'static str, u64>,
    pub skipped: Vec<Skip>,
    /// Text files that were not UTF-8, per encoding they were decoded from.
    pub files_decoded: BTreeMap<&'static str, u64>,
    pub decoded: Vec<DecodedFile>,
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
    /// What the target records of its embedding space, and how this run knew.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedding_space: Option<crate::space::Verdict>,
    /// recall@k of the new index before a switch (`--min-recall`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quality: Option<crate::report::quality::Quality>,
    pub embed_requests: u64,
    pub embed_retries: u64,
    pub tokens: u64,
    /// Chunks whose vector the embedding cache had (no request), and their tokens.
    pub cache_hits: u64,
    pub tokens_saved: u64,
    /// Chunks whose vector came from `--batch-api` batches (at the batch price).
    pub vectors_from_batches: u64,
    /// Chunks whose vector a request to the endpoint made (not the cache,
    /// not a batch): what this run paid the synchronous price for.
    pub chunks_embedded_synchronously: u64,
    /// What `--batch-api` submitted and collected (None without it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batches: Option<BatchSummary>,
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
            shard: None,
            step: None,
            files_in_other_shards: Stats::get(&stats.files_other_shards),
            also_running: None,
            workers: None,
            rows_in_store_at_start: None,
            sink: info.sink,
            embedding_endpoint: info.embedding_endpoint,
            embed_dim: info.embed_dim,
            files_seen: Stats::get(&stats.files_seen),
            files_loaded: Stats::get(&stats.files_with_chunks).saturating_sub(failed_files),
            files_by_format: stats.files_by_format(),
            files_skipped: stats.skipped_by_reason(),
            skipped: lock(&stats.skipped).clone(),
            files_decoded: stats.files_by_encoding(),
            decoded: lock(&stats.decoded).clone(),
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
            embedding_space: lock(&stats.space).clone(),
            quality: lock(&stats.quality).clone(),
            embed_requests: Stats::get(&stats.embed_requests),
            embed_retries: Stats::get(&stats.embed_retries),
            tokens: Stats::get(&stats.tokens),
            cache_hits: Stats::get(&stats.cache_hits),
            tokens_saved: Stats::get(&stats.tokens_saved),
            vectors_from_batches: Stats::get(&stats.batch_vectors),
            chunks_embedded_synchronously: stats.embedded_synchronously(),
            batches: None,
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
        if !self.files_decoded.is_empty() {
            let _ = writeln!(
                s,
                "  decoded from legacy encodings: {} (each file in --report)",
                counts(&self.files_decoded)
            );
        }
        for sk in self
            .skipped
            .iter()
            .filter(|s| s.reason != "unsupported type")
            .take(20)
        {
            let _ = writeln!(s, "    skipped {} ({}: {})", sk.path, sk.reason, sk.detail);
        }
        if let Some(v) = &self.embedding_space {
            let _ = writeln!(s, "{}", v.line());
        }
        let _ = writeln!(
            s,
            "  chunks: {}, tokens: {}, embedding requests: {} ({} retries)",
            self.chunks, self.tokens, self.embed_requests, self.embed_retries
        );
        if self.cache_hits > 0 {
            let _ = writeln!(
                s,
                "  embedding cache: {} chunks ({} tokens) not sent, their vectors computed before",
                self.cache_hits, self.tokens_saved
            );
        }
        if let Some(b) = &self.batches {
            b.describe(
                &mut s,
                self.vectors_from_batches,
                self.chunks_embedded_synchronously,
                "chunks",
            );
        }
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
        if let Some(w) = &self.workers {
            self.workers_lines(&mut s, w);
        }
        if let Some(other) = &self.also_running {
            let _ = writeln!(
                s,
                "  WARNING: shard {} was also being run by {other}; the rows are the same, the \
                 embedding requests were paid twice",
                self.shard.as_deref().unwrap_or("?")
            );
        }
        if let Some(ix) = &self.index {
            let _ = writeln!(s, "  index: {ix}");
        }
        if let Some(q) = &self.quality {
            let _ = writeln!(s, "{}", q.lines());
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

impl Report {
    /// The finish step's comparison of the workers' reports with the store.
    fn workers_lines(&self, s: &mut String, w: &crate::shard::WorkersCheck) {
        use std::fmt::Write;
        let reported = w.shards as usize - w.missing.len();
        let _ = writeln!(
            s,
            "  workers: {reported} of {} reported {} rows of this tenant ({} written by them this run{})",
            w.shards,
            w.rows,
            w.written,
            if w.failed > 0 {
                format!(
                    ", {} chunks FAILED: see the workers' dead letters",
                    w.failed
                )
            } else {
                String::new()
            }
        );
        if !w.other_n.is_empty() {
            let _ = writeln!(
                s,
                "  WARNING: reports of workers with another shard count were left out: {}",
                w.other_n.join(", ")
            );
        }
        match self.tenant_rows {
            Some(have) if have < w.rows => {
                let _ = writeln!(
                    s,
                    "  WARNING: the store holds {have} rows of this tenant, {} fewer than the \
                     workers wrote: were rows deleted while they ran?",
                    w.rows - have
                );
            }
            Some(have) if have > w.rows => {
                let _ = writeln!(
                    s,
                    "  the store holds {} more rows than the workers' files have: rows of files \
                     no longer there (--prune in the workers removes them)",
                    have - w.rows
                );
            }
            _ => {}
        }
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
