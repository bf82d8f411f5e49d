//! How well the new index answers, measured before readers are switched
//! to it: recall@k through the index (as the server searches by default)
//! against exact search, on stored vectors drawn evenly across tenants;
//! and the smallest search-time breadth that reaches the target, to put
//! where the RAG API searches. `--min-recall` makes it a gate.
//!
//! Bounded: `queries` look-ups of each kind (an exact one reads a tenant's
//! rows once), whatever the store's size.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Result;
use clap::Args;

use crate::report::quality::Quality;
use crate::store::Sink;
use crate::store::measure::Mode;

/// Recall without a --min-recall: what "good" means in the report.
pub const DEFAULT_TARGET: f64 = 0.95;
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
}

/// What to measure.
#[derive(Debug, Clone, Copy)]
pub struct QualitySettings {
    pub k: usize,
    pub queries: usize,
    pub min_recall: Option<f64>,
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
        Ok(QualitySettings {
            k: self.quality_k,
            queries: self.quality_queries,
            min_recall: self.min_recall,
        })
    }
}

/// Measures `sink`'s index (`tenant`: one tenant, None: all).
pub async fn measure(sink: &dyn Sink, tenant: Option<&str>, s: QualitySettings) -> Result<Quality> {
    let started = Instant::now();
    let tenants: Vec<String> = match tenant {
        Some(t) => vec![t.to_string()],
        None => sink.tenants().await?.into_keys().collect(),
    };
    let per = s.queries.div_ceil(tenants.len().max(1));
    let mut queries = Vec::new();
    for t in &tenants {
        for (_, v) in sink.sample(t, per).await? {
            queries.push((t.clone(), v));
        }
    }
    queries.truncate(s.queries);
    let mut searcher = sink.searcher().await?;
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
    Ok(Quality {
        k: s.k,
        queries: by_query.len() as u64,
        recall,
        recall_p5: percentile(&by_query, 0.05),
        per_tenant,
        target,
        passed: s.min_recall.map(|m| recall >= m),
        setting: searcher.breadth_setting().to_string(),
        setting_for_target,
        seconds: started.elapsed().as_secs_f64(),
    })
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
