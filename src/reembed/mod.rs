//! `vecload reembed`: every text of an existing store embedded again with a
//! new model into a new table or collection, then verified, then (with
//! `--switch`) made the data the RAG API reads, in one atomic step.
//!
//!   source pages ─► embed (as load) ─► sink (as load) ─► verify ─► switch
//!
//! The source is only read; ids, tenant, document, source path and chunk
//! index are carried over, and the text is never re-chunked. The target is
//! the record of what is done: each page asks it which rows it already holds
//! with the same content, so a killed run resumes without paying for a
//! vector twice, and a rerun after the source changed embeds only the
//! changed rows.

pub mod config;
mod from_lightrag;
mod from_pgvector;
mod from_qdrant;
mod from_redis;
mod report;
mod switch;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use anyhow::Result;
use async_trait::async_trait;
use rayon::prelude::*;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use config::ReembedConfig;
use config::SourceSpec;
pub use report::ReembedReport;

use crate::chunk::{Chunk, DocMeta, Tokenizer};
use crate::cli::{ProgressMode, TokenizerName};
use crate::embed::Embedded;
use crate::embed::stage::{EmbedStage, Fatal};
use crate::incremental::Ledger;
use crate::pipeline::SetupError;
use crate::report::Stats;
use crate::sink::Sink;
use crate::sink::stage::SinkStage;

/// One stored text and what identifies it.
#[derive(Debug, Clone)]
pub struct Row {
    /// The source's own id: vecload's UUID, or LightRAG's string id.
    pub id: String,
    pub tenant: String,
    pub doc_id: String,
    pub source: String,
    pub chunk_index: u32,
    pub content: String,
    /// LightRAG's stored token count, kept as it is.
    pub tokens: Option<u32>,
    pub extra: Option<crate::chunk::Extra>,
    /// `id` is LightRAG's (not a UUID Qdrant takes as a point id).
    pub lightrag_id: bool,
    /// The PDF page the text came from, carried to the new store.
    pub page: Option<u32>,
}

/// A store texts are read back from, page by page, in a stable order.
#[async_trait]
pub trait SourceStore: Send {
    fn describe(&self) -> String;
    async fn next_page(&mut self) -> Result<Option<Vec<Row>>>;
    /// Rows per tenant now (asked again at the end, so rows added while the
    /// run went show up as a mismatch instead of being missed).
    async fn counts(&mut self) -> Result<BTreeMap<String, u64>>;
}

/// The ids read from the source, per tenant, as 64-bit hashes (8 bytes an
/// id instead of the id: a million rows cost a few MB), for --prune.
#[derive(Default)]
pub struct Seen {
    hasher: std::hash::RandomState,
    by_tenant: HashMap<String, std::collections::HashSet<u64>>,
}

impl Seen {
    fn hash(&self, id: &str) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one(id)
    }

    fn add(&mut self, tenant: &str, ids: &[String]) {
        let hashes: Vec<u64> = ids.iter().map(|id| self.hash(id)).collect();
        self.by_tenant
            .entry(tenant.to_string())
            .or_default()
            .extend(hashes);
    }

    fn has(&self, tenant: &str, id: &str) -> bool {
        self.by_tenant
            .get(tenant)
            .is_some_and(|s| s.contains(&self.hash(id)))
    }
}

/// The run reads every tenant of a multi-tenant store, so a tenant of the
/// target that the source lacks is stale. (A JSON or Redis chunk store is
/// one workspace: the target's other tenants are none of its business.)
fn reads_all_tenants(cfg: &ReembedConfig) -> bool {
    cfg.tenant.is_none()
        && matches!(
            cfg.source,
            SourceSpec::Pgvector { .. } | SourceSpec::Qdrant { .. }
        )
}

/// --prune: deletes each tenant's target rows that the source no longer
/// has; with `all_tenants` (no --tenant), also every row of a tenant the
/// source has none of any more.
async fn prune(sink: &dyn Sink, seen: &Seen, all_tenants: bool) -> Result<u64> {
    let mut pruned = 0;
    if all_tenants {
        for tenant in sink.tenants().await?.keys() {
            if !seen.by_tenant.contains_key(tenant) {
                let ids = sink.ids(tenant).await?;
                for part in ids.chunks(1000) {
                    pruned += sink.delete(tenant, part).await?;
                }
            }
        }
    }
    for (tenant, ids) in &seen.by_tenant {
        if sink.count(tenant).await? <= ids.len() as u64 {
            continue;
        }
        let gone: Vec<String> = sink
            .ids(tenant)
            .await?
            .into_iter()
            .filter(|id| !seen.has(tenant, id))
            .collect();
        for part in gone.chunks(1000) {
            pruned += sink.delete(tenant, part).await?;
        }
    }
    Ok(pruned)
}

/// Vectors read back per tenant to check length and finiteness.
const SAMPLE: usize = 32;

async fn open_source(cfg: &ReembedConfig) -> Result<Box<dyn SourceStore>> {
    Ok(match &cfg.source {
        SourceSpec::Pgvector { target, table } => Box::new(
            from_pgvector::PgSource::open(target, table, cfg.tenant.clone(), cfg.page_size).await?,
        ),
        SourceSpec::Qdrant { target, collection } => Box::new(
            from_qdrant::QdrantSource::open(target, collection, cfg.tenant.clone(), cfg.page_size)
                .await?,
        ),
        SourceSpec::LightragJson { path } => Box::new(from_lightrag::LightragSource::open(
            path,
            single_workspace_tenant(cfg),
            cfg.page_size,
        )?),
        SourceSpec::LightragRedis { uri, workspace } => Box::new(
            from_redis::RedisSource::open(
                uri.expose(),
                workspace.as_deref(),
                single_workspace_tenant(cfg),
                cfg.page_size,
            )
            .await?,
        ),
    })
}

/// The tenant of a one-workspace chunk store: --tenant, or for LightRAG's
/// unnamed workspace what LightRAG itself stores it as: "_" in Qdrant,
/// "default" in PostgreSQL.
fn single_workspace_tenant(cfg: &ReembedConfig) -> String {
    match (&cfg.tenant, &cfg.sink) {
        (Some(t), _) => t.clone(),
        (None, crate::config::SinkConfig::Qdrant(_)) => "_".into(),
        (None, crate::config::SinkConfig::Pgvector(_)) => "default".into(),
    }
}

pub async fn run(
    mut cfg: ReembedConfig,
    progress: ProgressMode,
) -> Result<ReembedReport, SetupError> {
    let started = Instant::now();
    // Source, endpoint and target are all checked before any request is paid.
    if let Some(name) = &cfg.switch
        && let Some(msg) = switch::already_switched(&cfg.sink, name)
            .await
            .map_err(SetupError)?
    {
        return Err(SetupError(anyhow::anyhow!(msg)));
    }
    let source = open_source(&cfg).await.map_err(SetupError)?;
    let (embedder, embed_cfg) = crate::embed::connect(&cfg.embed)
        .await
        .map_err(SetupError)?;
    cfg.embed = embed_cfg;
    let mut sink = crate::sink::build(&cfg.sink, cfg.embed.dim);
    sink.prepare().await.map_err(SetupError)?;
    let sink: Arc<dyn Sink> = Arc::from(sink);
    let stats = Arc::new(Stats::default());
    let ledger = Arc::new(Ledger::new(None, sink.clone(), stats.clone()));
    if let Err(e) = sink.begin().await {
        let _ = sink.finish("", false).await;
        return Err(SetupError(e));
    }
    tracing::info!(
        "re-embedding {} into {}; embedding with {}",
        source.describe(),
        sink.describe(),
        embedder.describe()
    );

    let cancel = CancellationToken::new();
    let fatal = Fatal::default();
    let interrupted = Arc::new(std::sync::atomic::AtomicBool::new(false));
    crate::pipeline::watch_ctrl_c(cancel.clone(), interrupted.clone());
    let progress_done = CancellationToken::new();
    let progress_task = crate::progress::spawn(progress, stats.clone(), progress_done.clone());

    let (chunk_tx, chunk_rx) =
        mpsc::channel::<Chunk>(cfg.embed.batch_size * cfg.embed.concurrency * 2);
    let (emb_tx, emb_rx) = mpsc::channel::<Vec<Embedded>>(cfg.embed.concurrency * 2);
    let reader = tokio::spawn(read(
        source,
        sink.clone(),
        stats.clone(),
        cancel.clone(),
        fatal.clone(),
        chunk_tx,
        crate::config::sink_layout(&cfg.sink).is_lightrag(),
    ));
    let embed = tokio::spawn(
        EmbedStage {
            embedder: embedder.clone(),
            cfg: cfg.embed.clone(),
            stats: stats.clone(),
            cancel: cancel.clone(),
            fatal: fatal.clone(),
            limiter: Arc::new(crate::embed::limiter::Limiter::new(cfg.embed.concurrency)),
            pace: crate::embed::pace::Pace::new(cfg.embed.rpm, cfg.embed.tpm),
            batch_cap: Arc::new(std::sync::atomic::AtomicUsize::new(cfg.embed.batch_size)),
        }
        .run(chunk_rx, emb_tx),
    );
    let write = tokio::spawn(
        SinkStage {
            sink: sink.clone(),
            ledger,
            stats: stats.clone(),
            cancel: cancel.clone(),
            fatal: fatal.clone(),
        }
        .run(emb_rx),
    );
    if let Err(e) = embed.await {
        fatal.set(format!("internal error: embed stage: {e}"), &cancel);
    }
    if let Err(e) = write.await {
        fatal.set(format!("internal error: sink stage: {e}"), &cancel);
    }
    let (source, seen) = match reader.await {
        Ok((s, seen)) => (Some(s), Some(seen)),
        Err(e) => {
            fatal.set(format!("internal error: source reader: {e}"), &cancel);
            (None, None)
        }
    };
    progress_done.cancel();
    let _ = progress_task.await;

    let interrupted = interrupted.load(Relaxed);
    let mut error = fatal.get();
    let index_tenant = cfg.tenant.clone().unwrap_or_default();
    let index = match sink.finish(&index_tenant, !interrupted).await {
        Ok(s) => s.index,
        Err(e) => {
            error.get_or_insert(format!("finishing the target: {e:#}"));
            None
        }
    };
    let mut report = ReembedReport::new(&cfg, &stats, embedder.describe(), sink.describe());
    report.index = index;
    report.interrupted = interrupted;
    let complete = !interrupted && error.is_none() && report.failed_chunks == 0;
    // Only after a complete read: a partial one would prune rows it did not reach.
    if complete
        && cfg.prune
        && let Some(seen) = &seen
    {
        match prune(sink.as_ref(), seen, reads_all_tenants(&cfg)).await {
            Ok(n) => report.pruned = n,
            Err(e) => error = Some(format!("--prune: {e:#}")),
        }
    }
    let complete = complete && error.is_none();
    if complete && let Some(mut source) = source {
        let all_tenants = reads_all_tenants(&cfg);
        match verify(
            source.as_mut(),
            sink.as_ref(),
            cfg.embed.dim,
            all_tenants,
            &mut report,
        )
        .await
        {
            Err(e) => error = Some(format!("verifying the target: {e:#}")),
            Ok(()) if report.verified => match &cfg.switch {
                Some(name) => match switch::switch(&cfg.sink, name).await {
                    Ok(done) => report.switched = Some(done),
                    Err(e) => error = Some(format!("--switch: {e:#}")),
                },
                None => report.switch_command = Some(switch_command()),
            },
            Ok(()) => {}
        }
    }
    report.error = error;
    report.elapsed_seconds = started.elapsed().as_secs_f64();
    report.vectors_per_second = report.reembedded as f64 / report.elapsed_seconds.max(1e-9);
    Ok(report)
}

/// Reads the source page by page; queues the rows the target does not
/// already hold with the same text.
async fn read(
    mut source: Box<dyn SourceStore>,
    sink: Arc<dyn Sink>,
    stats: Arc<Stats>,
    cancel: CancellationToken,
    fatal: Fatal,
    tx: mpsc::Sender<Chunk>,
    target_lightrag: bool,
) -> (Box<dyn SourceStore>, Seen) {
    let tok = Tokenizer::get(TokenizerName::O200kBase);
    let mut seen = Seen::default();
    let mut tenants: HashMap<String, Arc<str>> = HashMap::new();
    loop {
        if cancel.is_cancelled() {
            break;
        }
        let page = match source.next_page().await {
            Ok(Some(page)) => page,
            Ok(None) => break,
            Err(e) => {
                fatal.set(format!("reading {}: {e:#}", source.describe()), &cancel);
                break;
            }
        };
        let mut by_tenant: BTreeMap<String, Vec<Row>> = BTreeMap::new();
        for mut row in page {
            if row.lightrag_id && !target_lightrag {
                // vecload's layout needs ids Qdrant takes: LightRAG's own
                // point id for this workspace is one.
                row.id = crate::layout::qdrant_point_id(&row.tenant, &row.id);
            }
            by_tenant.entry(row.tenant.clone()).or_default().push(row);
        }
        for (tenant, rows) in by_tenant {
            let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
            seen.add(&tenant, &ids);
            let held = match sink.existing(&tenant, &ids).await {
                Ok(h) => h,
                Err(e) => {
                    fatal.set(format!("asking the target what it holds: {e:#}"), &cancel);
                    return (source, seen);
                }
            };
            let t = tenants
                .entry(tenant.clone())
                .or_insert_with(|| Arc::from(tenant.as_str()))
                .clone();
            let total = rows.len() as u64;
            // Hashing and counting tokens is the CPU part: spread it.
            let chunks: Vec<Chunk> = tokio::task::block_in_place(|| {
                rows.into_par_iter()
                    .filter_map(|r| {
                        let hash = crate::chunk::id::content_hash(&r.content);
                        if held.get(&r.id) == Some(&hash) {
                            return None;
                        }
                        Some(to_chunk(r, &t, hash, tok))
                    })
                    .collect()
            });
            Stats::add(&stats.chunks, total);
            Stats::add(&stats.chunks_unchanged, total - chunks.len() as u64);
            for c in chunks {
                if tx.send(c).await.is_err() {
                    return (source, seen);
                }
            }
        }
    }
    stats.walk_done.store(true, Relaxed);
    (source, seen)
}

fn to_chunk(r: Row, tenant: &Arc<str>, hash: String, tok: &Tokenizer) -> Chunk {
    let file: Arc<str> = Arc::from(r.source.as_str());
    Chunk {
        id: r.id,
        // The budget counts real tokens; LightRAG's stored count is kept.
        tokens: r.tokens.unwrap_or_else(|| tok.count(&r.content) as u32),
        doc: Arc::new(DocMeta {
            tenant: tenant.clone(),
            doc_id: r.doc_id,
            key: r.source.clone(),
            source: r.source,
            file,
            hash: String::new(),
            chunk_count: 0,
            page: r.page,
            pending: Default::default(),
        }),
        index: r.chunk_index,
        text: r.content,
        content_hash: hash,
        extra: r.extra.map(Arc::new),
    }
}

/// Counts per tenant equal in source and target, and a sample of each
/// tenant's vectors of the right length and finite.
async fn verify(
    source: &mut dyn SourceStore,
    sink: &dyn Sink,
    dim: usize,
    all_tenants: bool,
    report: &mut ReembedReport,
) -> Result<()> {
    let counts = source.counts().await?;
    let mut ok = true;
    if all_tenants {
        // A tenant the source no longer has would ride along in a switch.
        for (tenant, rows) in sink.tenants().await? {
            if !counts.contains_key(&tenant) {
                ok = false;
                report.problems.push(format!(
                    "tenant {tenant:?}: {rows} rows in the target but none in the source \
                     (--prune deletes them)"
                ));
            }
        }
    }
    for (tenant, want) in counts {
        let got = sink.count(&tenant).await?;
        let sample = sink.sample(&tenant, SAMPLE).await?;
        let bad = sample
            .iter()
            .filter(|(_, v)| v.len() != dim || v.iter().any(|x| !x.is_finite()))
            .count();
        if got != want {
            ok = false;
            report.problems.push(format!(
                "tenant {tenant:?}: the source has {want} rows, the target {got}{}",
                if got < want {
                    " (rows were added to the source during the run? run again: only they are embedded)"
                } else {
                    " (rows were deleted from the source, or the target held other rows before: \
                     --prune deletes the target rows the source no longer has)"
                }
            ));
        }
        if bad > 0 {
            ok = false;
            report.problems.push(format!(
                "tenant {tenant:?}: {bad} of {} sampled vectors are not {dim} finite numbers",
                sample.len()
            ));
        }
        report.sampled += sample.len() as u64;
        report.tenants.insert(
            tenant,
            report::TenantCount {
                source_rows: want,
                target_rows: got,
            },
        );
    }
    report.verified = ok;
    Ok(())
}

/// The command line of this run with `--switch NAME` to add, secrets left out.
fn switch_command() -> String {
    const SECRET: [&str; 6] = [
        "--pg-url",
        "--from-pg-url",
        "--from-redis-url",
        "--pg-password",
        "--embed-api-key",
        "--qdrant-api-key",
    ];
    let mut out = Vec::new();
    let mut hide_next = false;
    for a in std::env::args().skip(1) {
        if hide_next {
            out.push("'<as before>'".to_string());
            hide_next = false;
        } else if let Some((flag, _)) = a.split_once('=')
            && SECRET.contains(&flag)
        {
            out.push(format!("{flag}='<as before>'"));
        } else {
            hide_next = SECRET.contains(&a.as_str());
            out.push(shell_word(&a));
        }
    }
    format!("vecload {} --switch NAME", out.join(" "))
}

fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=:/.,@%+".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}
