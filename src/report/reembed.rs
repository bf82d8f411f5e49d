//! What a `reembed` or `copy` run did and found, as JSON (`--report`) and
//! as the summary printed at the end.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{FailedChunk, Stats};

#[derive(Debug, Clone, Serialize)]
pub struct TenantCount {
    pub source_rows: u64,
    pub target_rows: u64,
}

#[derive(Debug, Serialize)]
pub struct ReembedReport {
    /// `reembed`, or `copy` (vectors carried over: `reembedded` counts the
    /// rows copied, and no request is made).
    pub command: &'static str,
    /// This worker's shard (`I/N`) of a sharded re-embedding.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    /// The whole-target step this run was (`prepare`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<&'static str>,
    /// Source rows left to the other shards.
    pub rows_in_other_shards: u64,
    pub source: String,
    pub target: String,
    pub embedding_endpoint: String,
    pub embed_dim: usize,
    /// Rows read from the source.
    pub rows_read: u64,
    /// Rows the target already held with the same text (earlier or killed runs).
    pub already_in_target: u64,
    /// Vectors computed and written by this run.
    pub reembedded: u64,
    pub chunks_embedded_in_parts: u64,
    /// Target rows deleted by --prune (gone from the source).
    pub pruned: u64,
    pub failed_chunks: u64,
    pub failures: Vec<FailedChunk>,
    /// What the target records of its embedding space, and how this run knew.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedding_space: Option<crate::space::Verdict>,
    /// recall@k of the new index before a switch (`--min-recall`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quality: Option<crate::report::quality::Quality>,
    pub embed_requests: u64,
    /// Rows whose vector the embedding cache had (no request), and their tokens.
    pub cache_hits: u64,
    pub tokens_saved: u64,
    /// Rows whose vector came from `--batch-api` batches.
    pub vectors_from_batches: u64,
    /// Rows whose vector a request to the endpoint made (not the cache,
    /// not a batch).
    pub rows_embedded_synchronously: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batches: Option<super::BatchSummary>,
    pub embed_retries: u64,
    pub tokens: u64,
    /// Per tenant, counted again in both stores after the run.
    pub tenants: BTreeMap<String, TenantCount>,
    pub sampled: u64,
    /// Of the sampled vectors of a copy, those not equal to the source's.
    pub vectors_differing: u64,
    /// How a copy's sampled vectors were compared with the source's: "bit
    /// for bit", "within float16's rounding" (halfvec), "as unit vectors"
    /// (Qdrant scales cosine vectors).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compared: Option<&'static str>,
    /// Counts equal and the sampled vectors sound: safe to switch.
    pub verified: bool,
    pub problems: Vec<String>,
    pub switched: Option<String>,
    /// Without --switch: how to switch once you have checked the new data.
    pub switch_command: Option<String>,
    pub index: Option<String>,
    pub interrupted: bool,
    pub error: Option<String>,
    pub elapsed_seconds: f64,
    pub vectors_per_second: f64,
}

impl ReembedReport {
    pub fn new(
        source: String,
        embed_dim: usize,
        stats: &Stats,
        embedding_endpoint: String,
        target: String,
    ) -> ReembedReport {
        ReembedReport {
            command: "reembed",
            shard: None,
            step: None,
            rows_in_other_shards: Stats::get(&stats.files_other_shards),
            source,
            target,
            embedding_endpoint,
            embed_dim,
            rows_read: Stats::get(&stats.chunks),
            already_in_target: Stats::get(&stats.chunks_unchanged),
            reembedded: Stats::get(&stats.vectors_written),
            chunks_embedded_in_parts: Stats::get(&stats.chunks_in_parts),
            pruned: 0,
            failed_chunks: stats.failed_count(),
            failures: stats.failures(),
            embedding_space: super::stats::lock(&stats.space).clone(),
            quality: super::stats::lock(&stats.quality).clone(),
            embed_requests: Stats::get(&stats.embed_requests),
            cache_hits: Stats::get(&stats.cache_hits),
            tokens_saved: Stats::get(&stats.tokens_saved),
            vectors_from_batches: Stats::get(&stats.batch_vectors),
            rows_embedded_synchronously: stats.embedded_synchronously(),
            batches: None,
            embed_retries: Stats::get(&stats.embed_retries),
            tokens: Stats::get(&stats.tokens),
            tenants: BTreeMap::new(),
            sampled: 0,
            vectors_differing: 0,
            compared: None,
            verified: false,
            problems: Vec::new(),
            switched: None,
            switch_command: None,
            index: None,
            interrupted: false,
            error: None,
            elapsed_seconds: 0.0,
            vectors_per_second: 0.0,
        }
    }

    pub fn succeeded(&self) -> bool {
        // A shard or the prepare step verifies nothing: the finish step
        // (the same command unsharded) does, over the whole target.
        let whole = self.shard.is_none() && self.step.is_none();
        !self.interrupted
            && self.error.is_none()
            && self.failed_chunks == 0
            && (self.verified || !whole)
    }

    pub fn summary(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let copy = self.command == "copy";
        let _ = writeln!(
            s,
            "vecload {}: {} -> {}",
            self.command, self.source, self.target
        );
        if let Some(v) = &self.embedding_space {
            let _ = writeln!(s, "{}", v.line());
        }
        if let Some(q) = &self.quality {
            let _ = writeln!(s, "{}", q.lines());
        }
        if copy {
            let _ = writeln!(
                s,
                "  rows: {} read, {} already in the target, {} copied with their {}-dimension vectors (no embedding requests)",
                self.rows_read, self.already_in_target, self.reembedded, self.embed_dim,
            );
        } else {
            let _ = writeln!(
                s,
                "  rows: {} read, {} already in the target, {} re-embedded at {} dimensions ({} requests, {} retries, {} tokens)",
                self.rows_read,
                self.already_in_target,
                self.reembedded,
                self.embed_dim,
                self.embed_requests,
                self.embed_retries,
                self.tokens
            );
        }
        if let Some(b) = &self.batches {
            b.describe(
                &mut s,
                self.vectors_from_batches,
                self.rows_embedded_synchronously,
                "rows",
            );
        }
        if self.interrupted && self.batches.is_some() && self.reembedded == 0 {
            let _ = writeln!(
                s,
                "  interrupted while waiting for batches: run the same command again to pick them up"
            );
        }
        if self.pruned > 0 {
            let _ = writeln!(
                s,
                "  pruned: {} target rows whose source rows are gone",
                self.pruned
            );
        }
        if self.chunks_embedded_in_parts > 0 {
            let _ = writeln!(
                s,
                "  {} texts were too long for the model and were embedded in parts",
                self.chunks_embedded_in_parts
            );
        }
        for f in self.failures.iter().take(20) {
            let _ = writeln!(
                s,
                "  failed {} #{} ({}): {}",
                f.source, f.chunk_index, f.id, f.error
            );
        }
        for (tenant, c) in &self.tenants {
            let _ = writeln!(
                s,
                "  tenant {tenant:?}: {} rows in the source, {} in the target{}",
                c.source_rows,
                c.target_rows,
                if c.source_rows == c.target_rows {
                    ""
                } else {
                    "  <- differs"
                }
            );
        }
        if self.verified && copy {
            let _ = writeln!(
                s,
                "  verified: counts equal for {} tenants, {} sampled vectors equal to the source's ({})",
                self.tenants.len(),
                self.sampled,
                self.compared.unwrap_or("bit for bit"),
            );
        } else if self.verified {
            let _ = writeln!(
                s,
                "  verified: counts equal for {} tenants, {} sampled vectors of {} finite numbers",
                self.tenants.len(),
                self.sampled,
                self.embed_dim
            );
        }
        for p in &self.problems {
            let _ = writeln!(s, "  NOT verified: {p}");
        }
        if let Some(i) = &self.index {
            let _ = writeln!(s, "  index: {i}");
        }
        if let Some(done) = &self.switched {
            let _ = writeln!(s, "  switched: {done}");
        } else if let Some(cmd) = &self.switch_command {
            let _ = writeln!(
                s,
                "  not switched. Check the new data (vecload search), then switch readers to it \
                 atomically (nothing is embedded again):\n    {cmd}"
            );
        }
        if self.interrupted {
            let _ = writeln!(s, "  interrupted: run the same command again to go on");
        }
        let _ = writeln!(
            s,
            "  {:.1} s, {:.0} vectors/s",
            self.elapsed_seconds, self.vectors_per_second
        );
        s
    }
}
