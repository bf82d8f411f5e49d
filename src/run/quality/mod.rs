//! How well the new index answers, measured before readers are switched
//! to it: recall@k through the index (as the server searches by default)
//! against exact search, on stored vectors drawn evenly across tenants;
//! and the smallest search-time breadth that reaches the target, to put
//! where the RAG API searches. With `--questions`, the questions are the
//! queries, and the new store's answers are set beside the old store's
//! (`questions.rs`). `--min-recall` and `--min-hit-ratio` make it a gate.
//!
//! Bounded: `queries` look-ups of each kind (an exact one reads a tenant's
//! rows once), whatever the store's size.

pub mod questions;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use clap::Args;

use crate::embed::settings::EmbedSettings;
use crate::report::quality::Quality;
use crate::store::measure::Mode;
use crate::store::{Sink, Target};
use questions::Question;

/// Recall without a --min-recall: what "good" means in the report.
pub const DEFAULT_TARGET: f64 = 0.95;
/// How long a measure waits for an index still building (Qdrant's HNSW
/// after a load) before it measures what there is.
const INDEX_WAIT: std::time::Duration = std::time::Duration::from_secs(30 * 60);
/// Search-time breadths tried when the default falls short.
const BREADTHS: [u64; 6] = [40, 80, 160, 320, 640, 1000];

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Quality before a switch")]
pub struct QualityFlags {
    /// Refuse --switch unless recall@k of the new index against exact
    /// search reaches R (0 to 1; Qdrant's guidance is 0.95). Measured
    /// before every --switch; this makes it a gate.
    #[arg(long, value_name = "R")]
    pub min_recall: Option<f64>,

    /// Neighbours compared per query.
    #[arg(long, default_value_t = 10, value_name = "K")]
    pub quality_k: usize,

    /// Queries (stored vectors, drawn evenly across tenants); 0 skips the
    /// measure (each query is also one exact search, a full scan of its
    /// tenant's rows in PostgreSQL).
    #[arg(long, default_value_t = 200, value_name = "N")]
    pub quality_queries: usize,

    /// Real questions, one a line, optionally `question<TAB>expected`
    /// (the expected answer's source path, its end, or its id): they are
    /// the queries, embedded with the run's model, and with `reembed` the
    /// old store answers them too (with the old model), side by side:
    /// overlap@k, and hit@k and MRR where answers are expected.
    #[arg(long, value_name = "FILE")]
    pub questions: Option<PathBuf>,

    /// With --questions and expected answers: refuse --switch unless the
    /// new store's hit@k reaches R times the old store's (1.0: no worse).
    #[arg(long, value_name = "R", requires = "questions")]
    pub min_hit_ratio: Option<f64>,

    /// Measure at the end of a run that switches nothing (`load`), or in
    /// `check`.
    #[arg(long)]
    pub quality: bool,
}

/// The model that made a re-embedding's source vectors, for asking the
/// old store the questions: the embedding flags' names with `from-`;
/// unset ones come from the source's record, then from the run's flags.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Quality before a switch")]
pub struct OldModelFlags {
    /// With --questions: who served the old model (as --embed-provider).
    #[arg(long, value_name = "PROVIDER")]
    pub from_embed_provider: Option<String>,

    /// With --questions: where the old model is served (as --embed-url).
    #[arg(long, value_name = "URL", value_delimiter = ',')]
    pub from_embed_url: Vec<String>,

    /// With --questions: the old model (default: the source's record).
    #[arg(long, visible_alias = "from-model", value_name = "MODEL")]
    pub from_embed_model: Option<String>,

    /// With --questions: the old model's dimension (default: the record's).
    #[arg(long, visible_alias = "from-dim", value_name = "N")]
    pub from_embed_dim: Option<usize>,

    /// With --questions: the old local model's folder (as --embed-model-dir).
    #[arg(long, value_name = "DIR")]
    pub from_embed_model_dir: Option<PathBuf>,
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct QualitySettings {
    pub k: usize,
    pub queries: usize,
    pub min_recall: Option<f64>,
    /// Measure even without a switch (`--quality`, or a gate asked for).
    pub always: bool,
    /// `--questions`, read and checked.
    pub questions: Option<Arc<Vec<Question>>>,
    pub min_hit_ratio: Option<f64>,
    /// The run's embedding settings, for the questions (set by the command).
    pub embed: Option<EmbedSettings>,
    /// The store and model the target replaces (`reembed`), asked the
    /// same questions.
    pub old: Option<Arc<OldSide>>,
}

/// The store a re-embedding reads and the model that made its vectors.
pub struct OldSide {
    pub target: Arc<dyn Target>,
    pub embed: EmbedSettings,
}

impl std::fmt::Debug for OldSide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.target.describe(), self.embed.model)
    }
}

impl QualitySettings {
    /// Nothing measured (a step of its own, `check --repair`'s reembed).
    pub fn off() -> QualitySettings {
        QualitySettings {
            k: 1,
            queries: 0,
            min_recall: None,
            always: false,
            questions: None,
            min_hit_ratio: None,
            embed: None,
            old: None,
        }
    }

    /// Whether a run measures: before a switch, or when asked.
    pub fn wanted(&self, switching: bool) -> bool {
        let asked = self.always || self.min_recall.is_some() || self.questions.is_some();
        (self.queries > 0 || self.questions.is_some()) && (switching || asked)
    }
}

impl QualityFlags {
    pub fn settings(&self) -> Result<QualitySettings, crate::settings::ConfigError> {
        if let Some(r) = self.min_recall
            && !(0.0..=1.0).contains(&r)
        {
            return Err(crate::settings::bad(format!(
                "--min-recall {r}: a recall is from 0 to 1"
            )));
        }
        if self.quality_k == 0 {
            return Err(crate::settings::bad("--quality-k is at least 1"));
        }
        if self.quality_queries == 0 && self.min_recall.is_some() {
            return Err(crate::settings::bad(
                "--min-recall needs queries to measure: drop --quality-queries 0",
            ));
        }
        if let Some(r) = self.min_hit_ratio
            && !(r > 0.0 && r.is_finite())
        {
            return Err(crate::settings::bad(format!(
                "--min-hit-ratio {r}: a ratio of the new hit@k to the old, above 0 (1.0: no worse)"
            )));
        }
        let questions = match &self.questions {
            Some(path) => {
                let q = questions::read(path)?;
                if self.min_hit_ratio.is_some() && !q.iter().any(|q| q.expected.is_some()) {
                    return Err(crate::settings::bad(format!(
                        "--min-hit-ratio compares hit@k: {} gives no expected answer \
                         (question<TAB>expected source)",
                        path.display()
                    )));
                }
                Some(Arc::new(q))
            }
            None => None,
        };
        Ok(QualitySettings {
            k: self.quality_k,
            queries: self.quality_queries,
            min_recall: self.min_recall,
            always: self.quality,
            questions,
            min_hit_ratio: self.min_hit_ratio,
            embed: None,
            old: None,
        })
    }
}

/// Measures `sink`'s index (`tenant`: one tenant, None: all); with
/// questions, also the answers, old beside new.
pub async fn measure(
    sink: &dyn Sink,
    tenant: Option<&str>,
    s: &QualitySettings,
) -> Result<Quality> {
    let started = Instant::now();
    let tenants: Vec<String> = match tenant {
        Some(t) => vec![t.to_string()],
        None => sink.tenants().await?.into_keys().collect(),
    };
    let mut searcher = sink.searcher().await?;
    let note = searcher.settled(INDEX_WAIT).await?;
    if let Some(n) = &note {
        tracing::warn!("{n}");
    }
    let mut answers = None;
    let queries = match (&s.questions, &s.embed) {
        (Some(qs), Some(embed)) => {
            let [tenant] = tenants.as_slice() else {
                anyhow::bail!(
                    "--questions are asked of one tenant and the store has {}: name it with --tenant",
                    tenants.len()
                );
            };
            let (a, vectors) = questions::ask(sink, tenant, qs, embed, s).await?;
            answers = Some(a);
            vectors.into_iter().map(|v| (tenant.clone(), v)).collect()
        }
        _ => {
            let per = s.queries.div_ceil(tenants.len().max(1));
            let mut queries = Vec::new();
            for t in &tenants {
                for (_, v) in sink.sample(t, per).await? {
                    queries.push((t.clone(), v));
                }
            }
            queries.truncate(s.queries);
            queries
        }
    };
    let mut truth = Vec::with_capacity(queries.len());
    for (t, v) in &queries {
        truth.push(searcher.nearest(t, v, s.k, Mode::Exact).await?);
    }
    let recalls = |found: &[Vec<String>]| -> Vec<f64> {
        found
            .iter()
            .zip(&truth)
            .filter(|(_, exact)| !exact.is_empty())
            .map(|(got, exact)| {
                got.iter().filter(|id| exact.contains(id)).count() as f64 / exact.len() as f64
            })
            .collect()
    };
    let mut found = Vec::with_capacity(queries.len());
    for (t, v) in &queries {
        found.push(searcher.nearest(t, v, s.k, Mode::Index(None)).await?);
    }
    let by_query = recalls(&found);
    let target = s.min_recall.unwrap_or(DEFAULT_TARGET);
    let mut per_tenant = BTreeMap::new();
    if tenants.len() > 1 {
        let mut sums: BTreeMap<&str, (f64, u64)> = BTreeMap::new();
        for (((t, _), got), exact) in queries.iter().zip(&found).zip(&truth) {
            if exact.is_empty() {
                continue;
            }
            let r = got.iter().filter(|id| exact.contains(id)).count() as f64 / exact.len() as f64;
            let e = sums.entry(t.as_str()).or_default();
            e.0 += r;
            e.1 += 1;
        }
        per_tenant = sums
            .into_iter()
            .map(|(t, (sum, n))| (t.to_string(), sum / n as f64))
            .collect();
    }
    let recall = mean(&by_query);
    let mut setting_for_target = None;
    if recall < target {
        for b in BREADTHS.into_iter().filter(|b| *b as usize >= s.k) {
            let mut found = Vec::with_capacity(queries.len());
            for (t, v) in &queries {
                found.push(searcher.nearest(t, v, s.k, Mode::Index(Some(b))).await?);
            }
            let r = mean(&recalls(&found));
            if r >= target {
                setting_for_target = Some((b, r));
                break;
            }
        }
    }
    let recall_passed = s.min_recall.map(|m| recall >= m);
    let answers_passed = answers
        .as_ref()
        .and_then(|a: &crate::report::quality::Answers| a.passed);
    let passed = match (recall_passed, answers_passed) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(true) && b.unwrap_or(true)),
    };
    Ok(Quality {
        k: s.k,
        queries: by_query.len() as u64,
        recall,
        recall_p5: percentile(&by_query, 0.05),
        per_tenant,
        target,
        passed,
        min_recall: s.min_recall,
        answers,
        note,
        setting: searcher.breadth_setting().to_string(),
        setting_for_target,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// What fell short of the gate, and what would raise it, one clause each.
pub fn shortfall(m: &Quality) -> Vec<String> {
    let mut out = Vec::new();
    if m.passed != Some(false) {
        return out;
    }
    if m.min_recall.is_some_and(|min| m.recall < min) {
        let fix = match m.setting_for_target {
            Some((v, r)) => format!(
                "{} = {v} reaches {r:.3} where the RAG API searches",
                m.setting
            ),
            None => "rebuild the index with higher build settings (HNSW m, ef_construction)".into(),
        };
        out.push(format!(
            "--min-recall {:.3}: the new index finds {:.3} of the exact top {} (5th percentile \
             {:.3}) over {} queries; {fix}",
            m.target, m.recall, m.k, m.recall_p5, m.queries
        ));
    }
    if let Some(a) = &m.answers
        && a.passed == Some(false)
    {
        let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
        out.push(match &a.old {
            Some(o) => format!(
                "--min-hit-ratio {:.2}: the new store finds the expected answer of {} questions \
                 in its top {} (hit@{} {}), the old {} (ratio {}): the new model answers these \
                 questions worse; try another model, or chunking",
                a.min_hit_ratio.unwrap_or(1.0),
                a.with_expected,
                m.k,
                m.k,
                f(a.new.hit_at_k),
                f(o.hit_at_k),
                f(a.hit_ratio)
            ),
            None => "--min-hit-ratio: the old store could not be asked (its model is unknown: \
                     give --from-model and --from-dim)"
                .to_string(),
        });
    }
    out
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        return 1.0;
    }
    v.iter().sum::<f64>() / v.len() as f64
}

fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return 1.0;
    }
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).floor() as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fifth_percentile_is_a_low_one() {
        let v: Vec<f64> = (0..100).map(|i| f64::from(i) / 100.0).collect();
        assert_eq!(percentile(&v, 0.05), 0.04);
        assert_eq!(mean(&[0.5, 1.0]), 0.75);
        assert_eq!(mean(&[]), 1.0);
    }
}
