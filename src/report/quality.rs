//! What a quality measure found (`run::quality`), for reports.

use std::collections::BTreeMap;

use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Quality {
    /// Neighbours compared per query, and queries (stored vectors drawn
    /// evenly across tenants).
    pub k: usize,
    pub queries: u64,
    /// recall@k through the index as the server searches by default,
    /// against exact search: the mean, and the 5th percentile.
    pub recall: f64,
    pub recall_p5: f64,
    /// The mean per tenant, where there are several.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub per_tenant: BTreeMap<String, f64>,
    /// The target: --min-recall, else 0.95.
    pub target: f64,
    /// Whether the gate (--min-recall) let the switch happen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passed: Option<bool>,
    /// The search-time setting and the smallest value tried that reaches
    /// the target, with its recall (None: none tried reached it).
    pub setting: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub setting_for_target: Option<(u64, f64)>,
    pub seconds: f64,
}

impl Quality {
    /// One line (or two) for a summary.
    pub fn lines(&self) -> String {
        let mut s = format!(
            "  quality: recall@{} {:.3} (5th percentile {:.3}) over {} queries, target {:.2}",
            self.k, self.recall, self.recall_p5, self.queries, self.target
        );
        match (self.recall >= self.target, self.setting_for_target) {
            (true, _) => {}
            (false, Some((v, r))) => s.push_str(&format!(
                "\n  quality: {} = {v} reaches {r:.3}: set it where the RAG API searches",
                self.setting
            )),
            (false, None) => s.push_str(&format!(
                "\n  quality: no {} tried reaches the target: rebuild the index with higher \
                 build settings (HNSW m, ef_construction)",
                self.setting
            )),
        }
        s
    }
}
