//! `vecload plan`: what a load would do and cost, before anything is paid
//! for or written. It walks and chunks through the load's own producer and
//! batches with the load's own batcher, so its counts are the load's; the
//! target is checked read-only; the endpoint gets nothing (one tiny request
//! with --probe).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::chunk::Chunk;
use crate::cli::PlanArgs;
use crate::config::{Config, EmbedConfig};
use crate::embed::batch::Batcher;
use crate::embed::openai::OpenAiEmbedder;
use crate::embed::{EmbedError, Embedder};
use crate::report::Stats;
use crate::source::Filter;

#[derive(Debug, Default, Serialize)]
pub struct Plan {
    pub tenant: Option<String>,
    pub target: Option<String>,
    pub files_seen: u64,
    pub files_loadable: u64,
    pub files_skipped: BTreeMap<&'static str, u64>,
    pub chunks: u64,
    pub tokens: u64,
    pub requests: u64,
    pub price_per_million_tokens: Option<f64>,
    pub estimated_cost_usd: Option<f64>,
    pub estimated_seconds: Option<f64>,
    pub probe: Option<Probe>,
    pub problems: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Probe {
    pub dimensions: usize,
    pub seconds: f64,
}

/// Published list prices (USD per million input tokens) of well-known models.
fn known_price(model: &str) -> Option<f64> {
    let m = model.rsplit('/').next().unwrap_or(model);
    Some(match m {
        "text-embedding-3-small" => 0.02,
        "text-embedding-3-large" => 0.13,
        "text-embedding-ada-002" => 0.10,
        _ => return None,
    })
}

pub async fn plan(args: PlanArgs) -> Plan {
    let mut plan = Plan::default();
    let cfg = match Config::from_load_args(args.load, |k| std::env::var(k).ok()) {
        Ok(c) => c,
        Err(e) => {
            plan.problems.push(e.to_string());
            return plan;
        }
    };
    plan.tenant = Some(cfg.tenant.clone());
    let filter = match Filter::new(&cfg.source) {
        Ok(f) => f,
        Err(e) => {
            plan.problems.push(e.to_string());
            return plan;
        }
    };

    // Target first: a broken target is the cheapest thing to learn about.
    let sink = crate::sink::build(&cfg.sink, cfg.embed.dim);
    plan.target = Some(sink.describe());
    match sink.check().await {
        Ok(p) => plan.problems.extend(p),
        Err(e) => plan.problems.push(format!("{e:#}")),
    }
    if args.probe {
        match probe(&cfg.embed).await {
            Ok(p) => plan.probe = Some(p),
            Err(e) => plan.problems.push(format!("probe: {e}")),
        }
    }

    let stats = Arc::new(Stats::default());
    let (requests, tokens) = count(&cfg, filter, stats.clone()).await;
    plan.files_seen = Stats::get(&stats.files_seen);
    plan.files_loadable = Stats::get(&stats.files_with_chunks);
    plan.files_skipped = stats.skipped_by_reason();
    plan.chunks = Stats::get(&stats.chunks);
    plan.tokens = tokens;
    plan.requests = requests;
    plan.price_per_million_tokens = args
        .price_per_million_tokens
        .or_else(|| known_price(&cfg.embed.model));
    plan.estimated_cost_usd = plan
        .price_per_million_tokens
        .map(|p| tokens as f64 / 1e6 * p);
    let per_request = args
        .request_seconds
        .max(plan.probe.as_ref().map_or(0.0, |p| p.seconds));
    plan.estimated_seconds =
        Some((requests as f64 / cfg.embed.concurrency as f64).ceil() * per_request);
    plan
}

/// Runs the load's producer and batcher, counting instead of sending.
async fn count(cfg: &Config, filter: Filter, stats: Arc<Stats>) -> (u64, u64) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Chunk>(4096);
    let producer = {
        let (cfg, stats) = (cfg.clone(), stats.clone());
        std::thread::spawn(move || {
            crate::pipeline::produce(&cfg, &filter, &stats, &CancellationToken::new(), tx, None)
        })
    };
    let mut batcher = Batcher::new(cfg.embed.batch_size, cfg.embed.max_request_tokens);
    let (mut requests, mut tokens) = (0u64, 0u64);
    while let Some(chunk) = rx.recv().await {
        tokens += chunk.tokens as u64;
        if batcher.push(chunk).is_some() {
            requests += 1;
        }
    }
    if batcher.take().is_some() {
        requests += 1;
    }
    let _ = tokio::task::spawn_blocking(move || producer.join()).await;
    (requests, tokens)
}

async fn probe(cfg: &EmbedConfig) -> Result<Probe, String> {
    let embedder = OpenAiEmbedder::new(cfg).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let vectors = embedder
        .embed(&["vecload plan probe"])
        .await
        .map_err(|e| match e {
            EmbedError::Transient { message, .. } | EmbedError::Throttled { message, .. } => {
                message
            }
            EmbedError::Rejected(m) | EmbedError::Fatal(m) => m,
        })?;
    let seconds = started.elapsed().as_secs_f64();
    let dims = vectors.first().map_or(0, Vec::len);
    if dims != cfg.dim {
        return Err(format!(
            "the endpoint returned a vector of length {dims} but --embed-dim (EMBEDDING_DIM) is {}",
            cfg.dim
        ));
    }
    Ok(Probe {
        dimensions: dims,
        seconds: (seconds * 1000.0).round() / 1000.0,
    })
}

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
        let _ = writeln!(
            s,
            "  chunks: {}, tokens: {}, embedding requests: {}",
            self.chunks, self.tokens, self.requests
        );
        let _ = match (self.estimated_cost_usd, self.price_per_million_tokens) {
            (Some(c), Some(p)) => {
                writeln!(s, "  estimated cost: ${c:.4} at ${p} per million tokens")
            }
            _ => writeln!(
                s,
                "  estimated cost: unknown (pass --price-per-million-tokens)"
            ),
        };
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
    fn prices_of_known_models() {
        assert_eq!(known_price("text-embedding-3-small"), Some(0.02));
        assert_eq!(known_price("openai/text-embedding-3-large"), Some(0.13));
        assert_eq!(known_price("bge-m3"), None);
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human_duration(42.0), "~42s");
        assert_eq!(human_duration(125.0), "~2m05s");
        assert_eq!(human_duration(7300.0), "~2h01m");
    }
}
