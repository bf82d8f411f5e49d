//! How a check reads to a person.

use std::fmt::Write;

use super::{Against, CheckReport};

impl Against {
    /// One problem line per kind found.
    pub fn lines(&self) -> Vec<String> {
        let t = &self.tenant;
        let mut out = Vec::new();
        if self.chunks_missing_or_changed > 0 {
            out.push(format!(
                "{} chunks of tenant {t:?}'s documents are missing from the store or stored \
                 with another text",
                self.chunks_missing_or_changed
            ));
        }
        if self.stale_rows > 0 {
            out.push(format!(
                "{} rows of tenant {t:?} belong to older versions of changed documents",
                self.stale_rows
            ));
        }
        if self.orphan_rows > 0 {
            out.push(format!(
                "{} rows of tenant {t:?} are of documents no longer in the PATHs (orphans)",
                self.orphan_rows
            ));
        }
        out
    }
}

impl CheckReport {
    pub fn human(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "vecload check: {}", self.target);
        let _ = writeln!(
            s,
            "  embedding space: {}",
            match &self.space.recorded {
                Some(r) => format!(
                    "{r} (recorded by {}, {})",
                    self.space.recorded_by.as_deref().unwrap_or("?"),
                    self.space.recorded_at.as_deref().unwrap_or("?")
                ),
                None => "not recorded".into(),
            }
        );
        if self.space.matches_settings == Some(false) {
            let _ = writeln!(s, "  these settings make: {}", self.space.settings);
        }
        let _ = writeln!(
            s,
            "  rows: {} in {} tenants ({})",
            self.rows_scanned,
            self.tenants.len(),
            self.tenants
                .iter()
                .map(|(t, n)| format!("{t}: {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        if let Some(i) = &self.index {
            let _ = writeln!(s, "  index: {}", i.index);
        }
        if let Some(p) = &self.probe {
            let _ = writeln!(
                s,
                "  probe: {} rows embedded again ({} requests), {} of another space, lowest cosine {:.4}",
                p.rows, p.requests, p.other_space, p.min_cosine
            );
        }
        if let Some(a) = &self.against {
            let _ = writeln!(
                s,
                "  against the PATHs (tenant {:?}): {} files, {} chunks; {} missing or changed, {} stale, {} orphans",
                a.tenant,
                a.files_seen,
                a.chunks,
                a.chunks_missing_or_changed,
                a.stale_rows,
                a.orphan_rows
            );
        }
        if let Some(d) = &self.lightrag {
            for (what, side) in [
                ("chunks", &d.chunks),
                ("entities", &d.entities),
                ("relations", &d.relations),
            ] {
                let _ = writeln!(
                    s,
                    "  LightRAG {what}: {} in the workspace, {} vectors; {} without a vector, {} of another text, {} vectors of nothing",
                    side.in_workspace,
                    side.vectors,
                    side.without_vector,
                    side.stale,
                    side.vectors_of_nothing
                );
                for e in &side.examples {
                    let _ = writeln!(s, "      {e}");
                }
            }
        }
        if let Some(q) = &self.quality {
            let _ = writeln!(s, "{}", q.lines());
        }
        if self.problems.is_empty() {
            let _ = writeln!(s, "  healthy: no problem found");
        } else {
            let _ = writeln!(s, "  problems:");
            for p in &self.problems {
                let _ = writeln!(s, "    - {p}");
            }
            for f in &self.vectors.examples {
                let _ = writeln!(s, "      {} {} ({})", f.tenant, f.id, f.what);
            }
        }
        for n in &self.notes {
            let _ = writeln!(s, "  note: {n}");
        }
        if let Some(r) = &self.repair {
            let _ = writeln!(
                s,
                "  repaired: {} broken rows deleted, {} vectors written ({} embedding requests, {} from the embedding cache), {} stale and {} orphan rows deleted{}",
                r.rows_deleted,
                r.vectors_written,
                r.embed_requests,
                r.cache_hits,
                r.stale_rows_deleted,
                r.rows_pruned,
                r.error
                    .as_deref()
                    .map(|e| format!("; the repair did not finish: {e}"))
                    .unwrap_or_default()
            );
        }
        s
    }
}
