//! How a plan reads to a person.

use super::*;

impl Plan {
    pub fn human(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "vecload plan: tenant {:?} -> {}",
            self.tenant.as_deref().unwrap_or("?"),
            self.target.as_deref().unwrap_or("(no target)")
        );
        let skipped: u64 = self.files_skipped.values().sum();
        let reasons: Vec<String> = self
            .files_skipped
            .iter()
            .map(|(r, n)| format!("{r}: {n}"))
            .collect();
        let _ = writeln!(
            s,
            "  files: {} seen, {} loadable, {} skipped{}",
            self.files_seen,
            self.files_loadable,
            skipped,
            if reasons.is_empty() {
                String::new()
            } else {
                format!(" ({})", reasons.join(", "))
            }
        );
        if let Some(space) = &self.embedding_space {
            let _ = writeln!(s, "  embedding space: {space}");
        }
        if !self.files_by_format.is_empty() {
            let _ = writeln!(
                s,
                "  formats: {}",
                crate::report::counts(&self.files_by_format)
            );
        }
        if !self.files_decoded.is_empty() {
            let _ = writeln!(
                s,
                "  decoded from legacy encodings: {}",
                crate::report::counts(&self.files_decoded)
            );
        }
        let _ = writeln!(
            s,
            "  chunks: {}, tokens: {}, embedding requests: {}",
            self.chunks, self.tokens, self.requests
        );
        if self.cache_hits > 0 {
            let _ = writeln!(
                s,
                "  embedding cache: {} chunks ({} tokens) already computed, not sent",
                self.cache_hits, self.tokens_saved
            );
        }
        for w in &self.shards {
            let _ = writeln!(
                s,
                "  shard {}: {} documents, {} chunks, {} tokens to embed",
                w.shard, w.documents, w.chunks, w.tokens
            );
        }
        for w in &self.warnings {
            let _ = writeln!(s, "  warning: {w}");
        }
        if let Some(f) = &self.state_file {
            let _ = writeln!(
                s,
                "  incremental (state {f}): {} chunks unchanged, {} to embed, {} stale to delete{}",
                self.chunks_unchanged,
                self.chunks_to_embed,
                self.stale_chunks_to_delete,
                if self.docs_to_prune > 0 {
                    format!(
                        ", {} documents ({} chunks) to prune",
                        self.docs_to_prune, self.chunks_to_prune
                    )
                } else {
                    String::new()
                }
            );
        }
        let _ = match (self.estimated_cost_usd, self.price_per_million_tokens) {
            (Some(c), Some(p)) => {
                writeln!(s, "  estimated cost: ${c:.4} at ${p} per million tokens")
            }
            _ => writeln!(
                s,
                "  estimated cost: unknown (pass --price-per-million-tokens)"
            ),
        };
        if let Some(b) = &self.batch_api {
            let _ = match (
                b.estimated_cost_usd,
                b.price_per_million_tokens,
                b.saving_usd,
            ) {
                (Some(c), Some(p), Some(saved)) => writeln!(
                    s,
                    "  batch API: {} {}, estimated cost ${c:.4} at ${p} per million tokens \
                     (saves ${saved:.4}); results within 24 hours",
                    b.batches,
                    if b.batches == 1 { "batch" } else { "batches" }
                ),
                _ => writeln!(
                    s,
                    "  batch API: {} {} at half the synchronous price; results within 24 hours",
                    b.batches,
                    if b.batches == 1 { "batch" } else { "batches" }
                ),
            };
            if b.submitted_before > 0 {
                let _ = writeln!(
                    s,
                    "  batch API: {} batches submitted by an earlier load are not written yet: \
                     the load waits for them, it does not submit them again",
                    b.submitted_before
                );
            }
        }
        if let Some(secs) = self.estimated_seconds {
            let _ = writeln!(
                s,
                "  estimated time: {} for the embedding requests",
                human_duration(secs)
            );
        }
        if let Some(p) = &self.probe {
            let _ = writeln!(
                s,
                "  probe: ok, {} dimensions, {:.2}s",
                p.dimensions, p.seconds
            );
        }
        if self.problems.is_empty() {
            let _ = writeln!(s, "  problems: none");
        } else {
            let _ = writeln!(s, "  PROBLEMS (the load would fail):");
            for p in &self.problems {
                let _ = writeln!(s, "    - {p}");
            }
        }
        s
    }
}

fn human_duration(secs: f64) -> String {
    let s = secs.round() as u64;
    match s {
        0..=59 => format!("~{s}s"),
        60..=3599 => format!("~{}m{:02}s", s / 60, s % 60),
        _ => format!("~{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(human_duration(42.0), "~42s");
        assert_eq!(human_duration(125.0), "~2m05s");
        assert_eq!(human_duration(7300.0), "~2h01m");
    }
}
