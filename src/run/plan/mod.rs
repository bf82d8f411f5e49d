//! `vecload plan`: what a load would do and cost, before anything is paid
//! for or written. It walks and chunks through the load's own producer and
//! batches with the load's own batcher, so its counts are the load's; the
//! target is checked read-only; the endpoint gets nothing (one tiny request
//! with --probe).

mod render;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::load::{Books, LoadJob, produce};
use crate::embed::EmbedError;
use crate::embed::batch::Batcher;
use crate::embed::settings::EmbedSettings;
use crate::records::Chunk;
use crate::report::{Fatal, Stats};
use crate::source::Filter;
use crate::state::Ledger;

#[derive(Debug, Default, Serialize)]
pub struct Plan {
    pub tenant: Option<String>,
    pub target: Option<String>,
    pub files_seen: u64,
    pub files_loadable: u64,
    pub files_by_format: BTreeMap<&'static str, u64>,
    pub files_skipped: BTreeMap<&'static str, u64>,
    /// Text files that are not UTF-8, per encoding they would be decoded from.
    pub files_decoded: BTreeMap<&'static str, u64>,
    pub chunks: u64,
    /// Chunks the state says are already in the sink: not embedded again.
    pub chunks_unchanged: u64,
    pub chunks_to_embed: u64,
    pub stale_chunks_to_delete: u64,
    /// With --prune: documents (and their chunks) the load would delete.
    pub docs_to_prune: u64,
    pub chunks_to_prune: u64,
    pub state_file: Option<String>,
    pub tokens: u64,
    pub requests: u64,
    /// Chunks to embed whose vector the embedding cache already has (not
    /// sent, so not in `tokens`, `requests` or the cost), and their tokens.
    pub cache_hits: u64,
    pub tokens_saved: u64,
    pub price_per_million_tokens: Option<f64>,
    pub estimated_cost_usd: Option<f64>,
    pub estimated_seconds: Option<f64>,
    pub probe: Option<Probe>,
    /// `plan --shards N`: the work to embed of each shard.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<ShardWork>,
    /// The file with the most tokens to embed, when sharded (the unit a
    /// shard cannot split).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub largest_file: Option<(String, u64)>,
    /// `plan --batch-api`: what the batches would be and cost.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_api: Option<BatchPlan>,
    /// Worth knowing, not wrong (exit 0).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    pub problems: Vec<String>,
    /// What the embedding-space check would do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedding_space: Option<String>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct BatchPlan {
    /// Request files, one batch each.
    pub batches: u64,
    pub price_per_million_tokens: Option<f64>,
    pub estimated_cost_usd: Option<f64>,
    /// Against the synchronous price.
    pub saving_usd: Option<f64>,
    /// Batches an earlier load submitted that are not written yet (the
    /// load picks them up; their chunks are counted above too).
    pub submitted_before: u64,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct ShardWork {
    pub shard: String,
    pub documents: u64,
    pub chunks: u64,
    pub tokens: u64,
}

#[derive(Debug, Serialize)]
pub struct Probe {
    pub dimensions: usize,
    pub seconds: f64,
}

/// What `plan` adds to a load's settings.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    pub price_per_million_tokens: Option<f64>,
    pub probe: bool,
    pub request_seconds: f64,
    /// Show the work of each of N shards.
    pub shards: Option<u32>,
}

/// The plan of `job`; `Err(problem)` when its settings are wrong (a plan
/// with only that problem).
pub async fn plan(job: Result<LoadJob, String>, opts: PlanOptions) -> Plan {
    let mut plan = Plan::default();
    let cfg = match job {
        Ok(c) => c,
        Err(e) => {
            plan.problems.push(e);
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
    let sink = cfg.target.sink(cfg.embed.dim);
    plan.target = Some(sink.describe());
    match sink.check().await {
        Ok(p) => plan.problems.extend(p),
        Err(e) => plan.problems.push(format!("{e:#}")),
    }
    let wanted = crate::run::space::wanted(&cfg.embed, cfg.target.as_ref(), None, cfg.space_policy);
    match crate::run::space::foresee(cfg.target.as_ref(), &wanted).await {
        Ok(Ok(what)) => plan.embedding_space = Some(what),
        Ok(Err(problem)) => plan.problems.push(problem),
        Err(e) => plan.problems.push(format!("{e:#}")),
    }
    if opts.probe {
        match probe(&cfg.embed).await {
            Ok(p) => plan.probe = Some(p),
            Err(e) => plan.problems.push(format!("probe: {e}")),
        }
    }

    // S3 PATHs are listed and read as a load reads them (objects the state
    // knows unchanged are not downloaded).
    let remote = match super::load::remote(&cfg).await {
        Ok(r) => r,
        Err(e) => {
            plan.problems.push(format!("{e:#}"));
            return plan;
        }
    };
    let stats = Arc::new(Stats::default());
    // A state kept in S3 is fetched as the load fetches it (and never put
    // back: a plan writes nothing); the local copy lives as long as this.
    let _fetched = match &cfg.state_s3 {
        Some((bucket, key)) => {
            match super::load::RemoteState::fetch(&cfg, remote.as_ref(), bucket, key).await {
                Ok(r) => Some(r),
                Err(e) => {
                    plan.problems.push(format!("{e:#}"));
                    return plan;
                }
            }
        }
        None => None,
    };
    let state = match cfg.state.as_deref().map(crate::state::State::open_existing) {
        None | Some(Ok(None)) => None,
        Some(Ok(Some(s))) => Some(s),
        Some(Err(e)) => {
            plan.problems.push(format!("{e:#}"));
            None
        }
    };
    plan.state_file = state.as_ref().map(|s| s.path().display().to_string());
    if state
        .as_ref()
        .is_some_and(|s| s.run_left_open(&cfg.tenant).unwrap_or(false))
    {
        plan.warnings.push(format!(
            "the last load of tenant {:?} did not end cleanly (killed?): the load will read the \
             store as the record and embed no more, possibly less, than counted here",
            cfg.tenant
        ));
    }
    let pending_batches = state.as_ref().map_or(0, |s| {
        let namespace = crate::embed::cache::Cache::namespace_of(&cfg.embed);
        s.batches().map_or(0, |b| {
            b.iter()
                .filter(|r| r.tenant == cfg.tenant && r.namespace == namespace)
                .count() as u64
        })
    });
    let ledger = Arc::new(
        Ledger::dry_run(state, Arc::from(sink), stats.clone())
            .tenant_scoped_ids(cfg.target.layout().is_lightrag())
            .for_prune(cfg.prune)
            .track_produced(cfg.prune_in_store()),
    );
    // Where the state does not know the tenant (or there is none) the
    // store is the record, as for the load: what it holds with the same
    // text is counted unchanged. A target the load would create holds nothing.
    let exists = !matches!(
        cfg.target.space().await,
        Ok(crate::space::Recorded::NoTarget)
    );
    if exists && let Err(e) = ledger.recall(&cfg.tenant, None, true).await {
        plan.problems.push(format!("{e:#}"));
        return plan;
    }
    let mut split = Split::new(opts.shards);
    let (requests, tokens) = match count(
        &cfg,
        filter,
        stats.clone(),
        ledger.clone(),
        remote,
        &mut split,
    )
    .await
    {
        Ok(counts) => counts,
        Err(e) => {
            plan.problems.push(e);
            (0, 0)
        }
    };
    plan.cache_hits = Stats::get(&stats.cache_hits);
    plan.tokens_saved = Stats::get(&stats.tokens_saved);
    let pruned = if cfg.prune_in_store() {
        ledger.prune_in_store(&cfg.tenant, None).await
    } else {
        ledger.prune(&cfg.tenant).await
    };
    if cfg.prune
        && let Err(e) = pruned
    {
        plan.problems.push(format!("--prune: {e:#}"));
    }
    plan.chunks_unchanged = Stats::get(&stats.chunks_unchanged);
    plan.chunks_to_embed = Stats::get(&stats.chunks) - plan.chunks_unchanged;
    plan.stale_chunks_to_delete = Stats::get(&stats.stale_deleted);
    plan.docs_to_prune = Stats::get(&stats.pruned_docs);
    plan.chunks_to_prune = Stats::get(&stats.pruned_chunks);
    plan.files_seen = Stats::get(&stats.files_seen);
    plan.files_loadable = Stats::get(&stats.files_with_chunks);
    plan.files_skipped = stats.skipped_by_reason();
    plan.files_decoded = stats.files_by_encoding();
    plan.files_by_format = stats.files_by_format();
    plan.chunks = Stats::get(&stats.chunks);
    plan.tokens = tokens;
    let text_bytes = split.text_bytes;
    if let Some(w) = split.finish(&mut plan) {
        plan.warnings.push(w);
    }
    plan.requests = requests;
    plan.price_per_million_tokens = opts
        .price_per_million_tokens
        .or_else(|| crate::embed::prices::known_price(&cfg.embed.model));
    plan.estimated_cost_usd = plan
        .price_per_million_tokens
        .map(|p| tokens as f64 / 1e6 * p);
    if let Some(b) = &cfg.batch {
        // A file is full at its request count or its size (a request line
        // is its texts and about 120 bytes of JSON around them).
        let by_requests = requests.div_ceil(b.max_requests as u64);
        let by_bytes = (text_bytes + 120 * requests).div_ceil(b.max_bytes as u64);
        let by_inputs = plan
            .chunks_to_embed
            .saturating_sub(plan.cache_hits)
            .div_ceil(b.max_inputs as u64);
        let price = plan
            .price_per_million_tokens
            .map(|p| p * crate::embed::batch_api::PRICE_RATIO);
        plan.batch_api = Some(BatchPlan {
            batches: by_requests.max(by_bytes).max(by_inputs),
            price_per_million_tokens: price,
            estimated_cost_usd: price.map(|p| tokens as f64 / 1e6 * p),
            saving_usd: plan
                .estimated_cost_usd
                .zip(price)
                .map(|(c, p)| c - tokens as f64 / 1e6 * p),
            submitted_before: pending_batches,
        });
    }
    let per_request = opts
        .request_seconds
        .max(plan.probe.as_ref().map_or(0.0, |p| p.seconds));
    let by_concurrency = (requests as f64 / cfg.embed.concurrency as f64).ceil() * per_request;
    let by_limits =
        crate::embed::pace::Pace::new(cfg.embed.rpm, cfg.embed.tpm).min_seconds(requests, tokens);
    plan.estimated_seconds = Some(by_concurrency.max(by_limits));
    plan
}

/// Runs the load's producer and batcher (with a ledger that only counts),
/// counting requests and tokens instead of sending.
async fn count(
    cfg: &LoadJob,
    filter: Filter,
    stats: Arc<Stats>,
    ledger: Arc<Ledger>,
    remote: Option<super::load::Remote>,
    split: &mut Split,
) -> Result<(u64, u64), String> {
    let filter = Arc::new(filter);
    let counted = stats.clone();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Chunk>(4096);
    let fatal = Fatal::default();
    let pool = crate::pools::chunking().map_err(|e| format!("{e:#}"))?;
    let producer = {
        let (cfg, fatal, handle) = (
            cfg.clone(),
            fatal.clone(),
            tokio::runtime::Handle::current(),
        );
        std::thread::spawn(move || {
            let books = Books {
                ledger: &ledger,
                fatal: &fatal,
                handle: &handle,
            };
            produce(
                pool,
                &cfg,
                &filter,
                &stats,
                &CancellationToken::new(),
                tx,
                Some(books),
                remote.as_ref(),
            );
        })
    };
    let mut batcher = Batcher::new(cfg.embed.batch_size, cfg.embed.max_request_tokens);
    let (mut requests, mut tokens) = (0u64, 0u64);
    // What the embedding cache has is not sent: looked up 256 at a time,
    // off the tokio workers.
    let cache = cfg
        .embed
        .cache
        .as_ref()
        .and_then(|at| crate::embed::cache::Cache::open(&cfg.embed, at));
    let mut pending: Vec<Chunk> = Vec::new();
    let mut open = true;
    while open {
        match rx.recv().await {
            Some(chunk) => pending.push(chunk),
            None => open = false,
        }
        if pending.len() < 256 && open {
            continue;
        }
        let chunks = match &cache {
            Some(c) => {
                let c = c.clone();
                let group = std::mem::take(&mut pending);
                let (group, found) = tokio::task::spawn_blocking(move || {
                    let keys: Vec<[u8; 32]> = group.iter().map(|ch| c.key(&ch.text)).collect();
                    let found = c.get(&keys);
                    (group, found)
                })
                .await
                .map_err(|e| format!("internal error: the cache look-up: {e}"))?;
                let mut misses = Vec::with_capacity(group.len());
                for (chunk, hit) in group.into_iter().zip(found) {
                    if hit.is_some() {
                        Stats::add(&counted.cache_hits, 1);
                        Stats::add(&counted.tokens_saved, u64::from(chunk.tokens));
                    } else {
                        misses.push(chunk);
                    }
                }
                misses
            }
            None => std::mem::take(&mut pending),
        };
        for chunk in chunks {
            tokens += chunk.tokens as u64;
            split.add(&chunk);
            if batcher.push(chunk).is_some() {
                requests += 1;
            }
        }
    }
    if batcher.take().is_some() {
        requests += 1;
    }
    if !matches!(
        tokio::task::spawn_blocking(move || producer.join()).await,
        Ok(Ok(()))
    ) {
        return Err("internal error: the chunking thread panicked".into());
    }
    match fatal.get() {
        Some(e) => Err(e),
        None => Ok((requests, tokens)),
    }
}

async fn probe(cfg: &EmbedSettings) -> Result<Probe, String> {
    let (embedder, _) = crate::embed::connect(cfg)
        .await
        .map_err(|e| format!("{e:#}"))?;
    let started = Instant::now();
    let vectors = embedder
        .embed(&["vecload plan probe"])
        .await
        .map_err(|e| match e {
            EmbedError::Transient { message, .. } | EmbedError::Throttled { message, .. } => {
                message
            }
            EmbedError::Rejected(m) | EmbedError::TooLarge(m) | EmbedError::Fatal(m) => m,
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

/// Per-shard counts of `plan --shards N`.
pub struct Split {
    /// Bytes of the texts to embed (for the size of batch files).
    text_bytes: u64,
    count: u32,
    shards: Vec<ShardWork>,
    files: std::collections::HashMap<std::sync::Arc<str>, u64>,
}

impl Split {
    fn new(count: Option<u32>) -> Split {
        let count = count.unwrap_or(0);
        Split {
            text_bytes: 0,
            count,
            shards: (0..count)
                .map(|i| ShardWork {
                    shard: format!("{i}/{count}"),
                    ..Default::default()
                })
                .collect(),
            files: Default::default(),
        }
    }

    fn add(&mut self, c: &Chunk) {
        self.text_bytes += c.text.len() as u64;
        if self.count == 0 {
            return;
        }
        let b = crate::shard::bucket(&c.doc.tenant, &c.doc.file);
        let w = &mut self.shards[crate::shard::Shard::of_bucket(b, self.count) as usize];
        w.chunks += 1;
        w.tokens += u64::from(c.tokens);
        if c.index == 0 {
            w.documents += 1;
        }
        *self.files.entry(c.doc.file.clone()).or_default() += u64::from(c.tokens);
    }

    /// Into the plan, with a warning when one shard has far more to do.
    fn finish(self, plan: &mut Plan) -> Option<String> {
        if self.count == 0 {
            return None;
        }
        plan.largest_file = self
            .files
            .into_iter()
            .max_by_key(|(_, t)| *t)
            .map(|(f, t)| (f.to_string(), t));
        let total: u64 = self.shards.iter().map(|w| w.tokens).sum();
        let mean = total as f64 / f64::from(self.count);
        let heaviest = self.shards.iter().max_by_key(|w| w.tokens).cloned();
        plan.shards = self.shards;
        let w = heaviest?;
        (mean > 0.0 && w.tokens as f64 > 1.5 * mean).then(|| {
            format!(
                "shard {} has {:.1}x the mean tokens: the run takes as long as that shard{}",
                w.shard,
                w.tokens as f64 / mean,
                plan.largest_file
                    .as_ref()
                    .map(|(f, t)| format!(" (largest file: {f}, {t} tokens)"))
                    .unwrap_or_default()
            )
        })
    }
}
