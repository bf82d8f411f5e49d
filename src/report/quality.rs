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
    /// --min-recall, when it gates the switch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_recall: Option<f64>,
    /// Whether the gate (--min-recall, --min-hit-ratio) let the switch happen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passed: Option<bool>,
    /// `--questions`: the answers of the new store, and of the old.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answers: Option<Answers>,
    /// The index was not settled when measured (Qdrant still indexing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The search-time setting and the smallest value tried that reaches
    /// the target, with its recall (None: none tried reached it).
    pub setting: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub setting_for_target: Option<(u64, f64)>,
    pub seconds: f64,
}

/// The questions' answers (`--questions`): the new store's, and with
/// `reembed` the old store's with the old model, side by side.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Answers {
    pub questions: u64,
    /// Questions that name their expected answer (hit@k and MRR count them).
    pub with_expected: u64,
    pub new: Scores,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<Scores>,
    /// The old store and its model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_store: Option<String>,
    /// Mean share of the old store's top k the new one also answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overlap: Option<f64>,
    /// The new hit@k over the old (None: the old found none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hit_ratio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_hit_ratio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passed: Option<bool>,
    /// Requests for the question vectors, new model and old (paid).
    pub requests: u64,
    pub old_requests: u64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Scores {
    /// Share of questions whose expected answer is in the top k.
    pub hit_at_k: Option<f64>,
    /// Mean reciprocal rank of the expected answer (0 where not found).
    pub mrr: Option<f64>,
}

impl Answers {
    fn line(&self, k: usize) -> String {
        let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
        let mut s = format!("  answers: {} questions", self.questions);
        if self.with_expected > 0 {
            s.push_str(&format!(
                ", {} with an expected answer: hit@{k} new {}",
                self.with_expected,
                f(self.new.hit_at_k)
            ));
            if let Some(o) = &self.old {
                s.push_str(&format!(" vs old {}", f(o.hit_at_k)));
            }
            s.push_str(&format!(", MRR new {}", f(self.new.mrr)));
            if let Some(o) = &self.old {
                s.push_str(&format!(" vs old {}", f(o.mrr)));
            }
        }
        if let Some(o) = self.overlap {
            s.push_str(&format!("; overlap@{k} with the old store {o:.3}"));
        }
        if let (Some(min), Some(r)) = (self.min_hit_ratio, self.hit_ratio) {
            s.push_str(&format!("; hit ratio {r:.3} (at least {min:.2} wanted)"));
        }
        s
    }
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
        if let Some(a) = &self.answers {
            s.push('\n');
            s.push_str(&a.line(self.k));
        }
        if let Some(n) = &self.note {
            s.push_str(&format!("\n  quality: {n}"));
        }
        s
    }
}
