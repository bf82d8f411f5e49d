//! Resume and incremental runs: which chunks still need paying for, and the
//! bookkeeping around each write, on top of the state file (`state.rs`).
//!
//! - A document whose text and chunk settings are unchanged since it was
//!   completely written is not even chunked again.
//! - Of a changed or unfinished document, only chunks the sink has not
//!   acknowledged with the same content are embedded.
//! - After the sink's acknowledgement the rows are recorded as written,
//!   without waiting for the disk (a sync every few seconds): nothing is
//!   synced before a write. A load marks its tenant open in the state at
//!   the start and closed at a clean end; the next load of a tenant left
//!   open (killed) reads the store as the record, so acknowledgements lost
//!   with the kill cost nothing twice.
//! - When every chunk of a document is acknowledged, its stale chunks (from a
//!   longer earlier version) are deleted from the sink.
//! - Without a state file that knows the tenant (a new pod, a Fargate task,
//!   `--no-state`), the store is the record: the tenant's (or the shard's)
//!   ids and content hashes are read from it in one streamed pass at start
//!   (`recall`), and chunks it holds with the same content are not paid for
//!   again. `--prune` then deletes what the store holds and this run did not
//!   produce (`prune_in_store`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::sync::atomic::Ordering::{AcqRel, Relaxed};
use std::sync::{Arc, Mutex};

use anyhow::Result;

use super::file::{ChunkRec, Completed, ObjectRec, State, doc_key};
use super::recorder::Recorder;
use crate::chunk::Chunker;
use crate::records::Embedded;
use crate::records::{Chunk, DocMeta, Document};
use crate::report::Stats;
use crate::store::{Held, Sink};

pub struct Ledger {
    state: Option<Arc<State>>,
    /// Records acknowledged writes on a thread of its own (`recorder`),
    /// started with the first write.
    recorder: std::sync::OnceLock<Recorder>,
    sink: Arc<dyn Sink>,
    stats: Arc<Stats>,
    /// Documents seen this run, for --prune only, as 64-bit hashes of their
    /// state keys: 8 bytes a document instead of its key (a collision can
    /// only keep a document --prune would have deleted).
    seen: Option<Mutex<HashSet<u64>>>,
    seen_hasher: std::hash::RandomState,
    /// `plan`: decide and count, but change nothing in the state or sink.
    dry_run: bool,
    /// The sink's ids are not unique across tenants (LightRAG's are not):
    /// the state keys chunks by `tenant \0 id` instead.
    tenant_scoped: bool,
    /// What the store holds (`recall`): id hash → content hash's hash, 16
    /// bytes a row, so a million rows cost tens of MB, not their strings.
    /// A 64-bit collision of both would skip one chunk; odds ~2^-64 a row.
    held: std::sync::OnceLock<HashMap<u64, u64>>,
    /// Sink ids (hashed) of every chunk this run produced or found
    /// unchanged, for `prune_in_store`.
    produced: Option<Mutex<HashSet<u64>>>,
}

/// The sink's id of a chunk recorded in the state under `state_id`.
pub(super) fn sink_id(state_id: &str) -> &str {
    state_id.rsplit_once('\0').map_or(state_id, |(_, id)| id)
}

fn sink_ids(state_ids: &[String]) -> Vec<String> {
    state_ids.iter().map(|i| sink_id(i).to_string()).collect()
}

/// The sink ids of the documents' stale chunks, by tenant, for deleting
/// them before the documents are recorded complete.
pub(super) fn stale_by_tenant(docs: &[Completed]) -> BTreeMap<&str, Vec<String>> {
    let mut by_tenant: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for d in docs.iter().filter(|d| !d.removed.is_empty()) {
        let tenant = d.doc.split('\0').next().unwrap_or_default();
        by_tenant
            .entry(tenant)
            .or_default()
            .extend(sink_ids(&d.removed));
    }
    by_tenant
}

/// An object of a remote source as the state knows it (`unchanged_object`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unchanged {
    /// Loaded completely before: `chunks` chunks in `docs` documents.
    Loaded { chunks: u64, docs: u64 },
    /// Skipped before, and its bytes would be skipped again.
    Skipped { reason: String, detail: String },
}

/// What to do with one document.
pub enum DocWork {
    /// Completely written before with this content: nothing to do.
    Unchanged { chunks: u32 },
    /// These chunks need embedding; `written` more were acknowledged before.
    Embed {
        chunks: Vec<Chunk>,
        written: u32,
        meta: Option<Arc<DocMeta>>,
    },
}

impl Ledger {
    pub fn new(state: Option<State>, sink: Arc<dyn Sink>, stats: Arc<Stats>) -> Ledger {
        Ledger {
            state: state.map(Arc::new),
            recorder: Default::default(),
            sink,
            stats,
            seen: None,
            seen_hasher: Default::default(),
            dry_run: false,
            tenant_scoped: false,
            held: Default::default(),
            produced: None,
        }
    }

    /// Remember every chunk id this run produces, for `prune_in_store`.
    pub fn track_produced(mut self, on: bool) -> Ledger {
        self.produced = on.then(Default::default);
        self
    }

    fn produce<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        if let Some(p) = &self.produced {
            let mut p = p.lock().unwrap_or_else(|e| e.into_inner());
            p.extend(ids.into_iter().map(|id| self.seen_hash(id)));
        }
    }

    /// Reads what the store holds of `tenant` (of `buckets` only, when the
    /// store keeps buckets) when the state file does not know the tenant:
    /// the store is then the record of what is paid for. Returns the rows read.
    /// With `trust_state` false (a state fetched from S3, as old as its last
    /// upload), the store is read even when the state knows the tenant.
    pub async fn recall(
        &self,
        tenant: &str,
        buckets: Option<Range<u32>>,
        trust_state: bool,
    ) -> Result<Option<u64>> {
        if let (Some(state), true) = (&self.state, trust_state)
            && tokio::task::block_in_place(|| state.knows_tenant(tenant))?
        {
            return Ok(None);
        }
        let started = std::time::Instant::now();
        let mut map = HashMap::new();
        let hasher = &self.seen_hasher;
        let mut each = |id: &str, hash: &str| {
            use std::hash::BuildHasher;
            map.insert(hasher.hash_one(id), hasher.hash_one(hash));
        };
        let scope = match &buckets {
            Some(b) => Held::ShardOrUnknown(b.clone()),
            None => Held::Tenant,
        };
        if !self.sink.held(tenant, scope, &mut each).await? {
            // The target keeps no bucket: the whole tenant, a superset.
            self.sink.held(tenant, Held::Tenant, &mut each).await?;
        }
        let n = map.len() as u64;
        tracing::info!(
            "the store holds {n} rows of tenant {tenant:?}{}: chunks among them with the same \
             text are not embedded again ({:.2} s to read)",
            if buckets.is_some() {
                " in this shard"
            } else {
                ""
            },
            started.elapsed().as_secs_f64()
        );
        let _ = self.held.set(map);
        Ok(Some(n))
    }

    /// For sinks whose ids repeat across tenants (`--layout lightrag`):
    /// two tenants loading the same file must not share state records.
    /// Remember the documents this run sees, for `prune`.
    pub fn for_prune(mut self, on: bool) -> Ledger {
        self.seen = on.then(Default::default);
        self
    }

    fn seen_hash(&self, key: &str) -> u64 {
        use std::hash::BuildHasher;
        self.seen_hasher.hash_one(key)
    }

    pub fn tenant_scoped_ids(mut self, on: bool) -> Ledger {
        self.tenant_scoped = on;
        self
    }

    fn state_id(&self, tenant: &str, id: &str) -> String {
        if self.tenant_scoped {
            format!("{tenant}\0{id}")
        } else {
            id.to_string()
        }
    }

    fn records(&self, rows: &[Embedded]) -> Vec<ChunkRec> {
        rows.iter()
            .map(|r| ChunkRec {
                id: self.state_id(&r.chunk.doc.tenant, &r.chunk.id),
                hash: r.chunk.content_hash.clone(),
                index: r.chunk.index,
                doc: doc_key(&r.chunk.doc.tenant, &r.chunk.doc.key),
            })
            .collect()
    }

    /// A ledger that only counts: stale chunks and pruned documents are
    /// added to the stats as what a load would delete.
    pub fn dry_run(state: Option<State>, sink: Arc<dyn Sink>, stats: Arc<Stats>) -> Ledger {
        Ledger {
            dry_run: true,
            ..Ledger::new(state, sink, stats)
        }
    }

    /// The state file, for what is recorded beside the chunks (batches).
    pub fn state(&self) -> Option<&State> {
        self.state.as_deref()
    }

    pub fn state_path(&self) -> Option<String> {
        self.state.as_ref().map(|s| s.path().display().to_string())
    }

    /// Makes what this run recorded durable; called once the writers are done.
    pub fn sync(&self) -> Result<()> {
        match &self.state {
            Some(state) => state.sync(),
            None => Ok(()),
        }
    }

    /// A consistent copy of the state file at `to`; Ok(false) without one.
    pub fn snapshot(&self, to: &std::path::Path) -> Result<bool> {
        match &self.state {
            Some(state) => state.snapshot(to).map(|()| true),
            None => Ok(false),
        }
    }

    /// How many chunks of `tenant` the state says the sink holds.
    pub fn tenant_chunks(&self, tenant: &str) -> Option<u64> {
        let state = self.state.as_ref()?;
        match state.tenant_chunks(tenant) {
            Ok(n) => Some(n),
            Err(e) => {
                tracing::warn!("reading the state file: {e:#}");
                None
            }
        }
    }

    /// Decides what a document needs. Runs on the chunking threads.
    /// `hash` is `chunker.doc_hash` of the text (the caller keeps it for
    /// the object record).
    pub fn plan_doc(
        &self,
        chunker: &Chunker,
        tenant: &Arc<str>,
        doc: Document,
        hash: String,
    ) -> Result<DocWork> {
        let key = doc_key(tenant, &doc.key);
        if let Some(state) = &self.state {
            if let Some(seen) = &self.seen {
                seen.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(self.seen_hash(&key));
            }
            if let Some(chunks) = state.unchanged_doc(&key, &hash)? {
                if self.produced.is_some() {
                    let ids = state.doc_chunks(&key)?;
                    self.produce(ids.iter().map(|i| sink_id(i)));
                }
                return Ok(DocWork::Unchanged { chunks });
            }
        }
        let mut chunks = chunker.chunk(tenant, doc, hash);
        self.produce(chunks.iter().map(|c| c.id.as_str()));
        let meta = chunks.first().map(|c| c.doc.clone());
        let mut written = 0;
        if let Some(state) = &self.state {
            let acked = state.acked(&key)?;
            let before = chunks.len();
            chunks.retain(|c| {
                acked.get(&c.index).is_none_or(|(id, hash)| {
                    *hash != c.content_hash || *id != self.state_id(tenant, &c.id)
                })
            });
            written = (before - chunks.len()) as u32;
        }
        if let Some(held) = self.held.get() {
            let before = chunks.len();
            let (found, rest): (Vec<Chunk>, Vec<Chunk>) = chunks.into_iter().partition(|c| {
                held.get(&self.seen_hash(&c.id)) == Some(&self.seen_hash(&c.content_hash))
            });
            chunks = rest;
            written += (before - chunks.len()) as u32;
            if self.state.is_some() {
                // The state did not know them: written by a load killed
                // before its record of them was on disk.
                Stats::add(&self.stats.found_on_resume, found.len() as u64);
            }
            // The state, if any, learns them: it is the store's cache.
            if let (Some(state), false, false) = (&self.state, found.is_empty(), self.dry_run) {
                let recs: Vec<ChunkRec> = found
                    .iter()
                    .map(|c| ChunkRec {
                        id: self.state_id(tenant, &c.id),
                        hash: c.content_hash.clone(),
                        index: c.index,
                        doc: key.clone(),
                    })
                    .collect();
                state.mark_acked(&recs)?;
            }
        }
        if let Some(m) = &meta {
            m.pending.store(chunks.len() as u32, Relaxed);
            if self.dry_run
                && let Some(state) = &self.state
            {
                let stale = state.stale_chunks(&key, m.chunk_count)?.len() as u64;
                Stats::add(&self.stats.stale_deleted, stale);
            }
        }
        Ok(DocWork::Embed {
            chunks,
            written,
            meta,
        })
    }

    /// Records what was read from remote `object` (`s3://bucket/key` at
    /// `etag`/`size`): its documents' keys and hashes. A later run skips
    /// the object without downloading it once each of these documents is
    /// recorded complete with the same hash (`unchanged_object`).
    pub fn record_object(
        &self,
        tenant: &str,
        object: &str,
        etag: &str,
        size: u64,
        docs: Vec<(String, String)>,
        skipped: Option<(String, String)>,
    ) -> Result<()> {
        let (Some(state), false) = (&self.state, self.dry_run) else {
            return Ok(());
        };
        let rec = ObjectRec {
            etag: etag.to_string(),
            size,
            docs: docs
                .into_iter()
                .map(|(key, hash)| (doc_key(tenant, &key), hash))
                .collect(),
            skipped,
        };
        state.record_object(&doc_key(tenant, object), &rec)
    }

    /// What is known of this version of `object`: every document of it
    /// complete with the hash it had (nothing of it needs reading; its
    /// documents count as seen for --prune), or skipped for a reason its
    /// bytes alone decide. None: read it.
    pub fn unchanged_object(
        &self,
        tenant: &str,
        object: &str,
        etag: &str,
        size: u64,
    ) -> Result<Option<Unchanged>> {
        let Some(state) = &self.state else {
            return Ok(None);
        };
        let Some(rec) = state.object(&doc_key(tenant, object))? else {
            return Ok(None);
        };
        if rec.etag != etag || rec.size != size {
            return Ok(None);
        }
        if let Some((reason, detail)) = rec.skipped {
            return Ok(Some(Unchanged::Skipped { reason, detail }));
        }
        if rec.docs.is_empty() {
            return Ok(None);
        }
        let mut chunks = 0u64;
        for (doc, hash) in &rec.docs {
            match state.unchanged_doc(doc, hash)? {
                Some(n) => chunks += n as u64,
                None => return Ok(None),
            }
        }
        if let Some(seen) = &self.seen {
            let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
            for (doc, _) in &rec.docs {
                seen.insert(self.seen_hash(doc));
            }
        }
        if self.produced.is_some() {
            for (doc, _) in &rec.docs {
                let ids = state.doc_chunks(doc)?;
                self.produce(ids.iter().map(|i| sink_id(i)));
            }
        }
        Ok(Some(Unchanged::Loaded {
            chunks,
            docs: rec.docs.len() as u64,
        }))
    }

    /// After the sink acknowledged `rows`: queue them for recording, with
    /// the documents whose last chunks these were (`recorder`). Returns at
    /// once; an error is the state file's, from an earlier batch.
    pub async fn after_write(&self, rows: &[Embedded]) -> Result<()> {
        let Some(state) = &self.state else {
            return Ok(());
        };
        let recs = self.records(rows);
        let done: Vec<Arc<DocMeta>> = rows
            .iter()
            .filter(|r| r.chunk.doc.pending.fetch_sub(1, AcqRel) == 1)
            .map(|r| r.chunk.doc.clone())
            .collect();
        let recorder = match self.recorder.get() {
            Some(r) => r,
            None => {
                let r = Recorder::start(state.clone(), self.sink.clone(), self.stats.clone())?;
                // Two first writes may race: the loser's thread ends with its sender.
                let _ = self.recorder.set(r);
                self.recorder
                    .get()
                    .ok_or_else(|| anyhow::anyhow!("state recorder"))?
            }
        };
        recorder.written(recs, done).await
    }

    /// Waits until every acknowledged write handed over so far is recorded;
    /// the writers are done. Returns the state file's error, if recording
    /// hit one.
    pub async fn settle(&self) -> Result<()> {
        match self.recorder.get() {
            Some(r) => r.settle().await,
            None => Ok(()),
        }
    }

    /// The load ended cleanly: everything recorded is synced, and the next
    /// load may trust the state alone.
    pub fn close_run(&self, tenant: &str) -> Result<()> {
        match &self.state {
            Some(state) => tokio::task::block_in_place(|| state.close_run(tenant)),
            None => Ok(()),
        }
    }

    /// Every chunk of these documents is in the sink: delete their stale
    /// chunks, then record them as complete.
    pub async fn complete(&self, docs: &[&DocMeta]) -> Result<()> {
        // A plan deletes nothing and records nothing (its stale chunks
        // were counted in `plan_doc`).
        let (Some(state), false) = (&self.state, self.dry_run) else {
            return Ok(());
        };
        if docs.is_empty() {
            return Ok(());
        }
        let mut done = Vec::with_capacity(docs.len());
        for d in docs {
            let key = doc_key(&d.tenant, &d.key);
            let removed = tokio::task::block_in_place(|| state.stale_chunks(&key, d.chunk_count))?;
            done.push(Completed {
                doc: key,
                hash: d.hash.clone(),
                count: d.chunk_count,
                removed,
            });
        }
        for (tenant, ids) in stale_by_tenant(&done) {
            let n = self.sink.delete(tenant, &ids).await?;
            Stats::add(&self.stats.stale_deleted, n);
        }
        tokio::task::block_in_place(|| state.complete_docs(&done))
    }

    /// At start: intents left by a crash become acknowledged where the sink
    /// holds the same content, and are dropped otherwise.
    pub async fn reconcile(&self) -> Result<()> {
        let Some(state) = &self.state else {
            return Ok(());
        };
        let intents = tokio::task::block_in_place(|| state.intents())?;
        if intents.is_empty() {
            return Ok(());
        }
        let mut by_tenant: BTreeMap<String, Vec<ChunkRec>> = BTreeMap::new();
        for r in intents {
            let tenant = r.doc.split('\0').next().unwrap_or_default().to_string();
            by_tenant.entry(tenant).or_default().push(r);
        }
        let mut found = 0;
        for (tenant, recs) in by_tenant {
            for part in recs.chunks(1000) {
                let ids: Vec<String> = part.iter().map(|r| sink_id(&r.id).to_string()).collect();
                let held = self.sink.existing(&tenant, &ids).await?;
                let done: Vec<ChunkRec> = part
                    .iter()
                    .filter(|r| held.get(sink_id(&r.id)) == Some(&r.hash))
                    .cloned()
                    .collect();
                found += done.len();
                tokio::task::block_in_place(|| state.mark_acked(&done))?;
            }
        }
        tokio::task::block_in_place(|| state.clear_intents())?;
        Stats::add(&self.stats.found_on_resume, found as u64);
        tracing::info!(
            "resuming: {found} rows written just before the last run stopped were found in the sink"
        );
        Ok(())
    }

    /// `--prune` with the store as the record: deletes the rows of `tenant`
    /// (of `buckets`: one shard's) that this run did not produce, that is the
    /// chunks of deleted files and the stale tail of shortened documents.
    pub async fn prune_in_store(&self, tenant: &str, buckets: Option<Range<u32>>) -> Result<()> {
        let Some(produced) = &self.produced else {
            return Ok(());
        };
        let produced = std::mem::take(&mut *produced.lock().unwrap_or_else(|e| e.into_inner()));
        let mut gone = Vec::new();
        let hasher = &self.seen_hasher;
        let mut each = |id: &str, _: &str| {
            use std::hash::BuildHasher;
            if !produced.contains(&hasher.hash_one(id)) {
                gone.push(id.to_string());
            }
        };
        let sharded = buckets.is_some();
        let scope = match buckets {
            Some(b) => Held::Shard(b),
            None => Held::Tenant,
        };
        if !self.sink.held(tenant, scope, &mut each).await? {
            anyhow::bail!(
                "this target keeps no shard bucket with its rows (a LightRAG layout, or a table \
                 made by an earlier vecload), so one shard cannot tell its rows from another's: \
                 run --prune unsharded"
            );
        }
        if self.dry_run {
            Stats::add(&self.stats.pruned_chunks, gone.len() as u64);
            return Ok(());
        }
        for part in gone.chunks(1000) {
            let n = self.sink.delete(tenant, part).await?;
            Stats::add(&self.stats.pruned_chunks, n);
        }
        tracing::info!(
            "--prune: {} rows of tenant {tenant:?}{} were not produced by this run and were deleted",
            gone.len(),
            if sharded { " in this shard" } else { "" }
        );
        Ok(())
    }

    /// `--prune`: deletes documents of `tenant` that this run did not see.
    pub async fn prune(&self, tenant: &str) -> Result<()> {
        let (Some(state), Some(seen)) = (&self.state, &self.seen) else {
            return Ok(());
        };
        let known = tokio::task::block_in_place(|| state.docs_of_tenant(tenant))?;
        let gone: Vec<String> = {
            let seen = seen.lock().unwrap_or_else(|p| p.into_inner());
            known
                .into_iter()
                .filter(|d| !seen.contains(&self.seen_hash(d)))
                .collect()
        };
        for doc in gone {
            let ids = tokio::task::block_in_place(|| state.doc_chunks(&doc))?;
            if self.dry_run {
                Stats::add(&self.stats.pruned_chunks, ids.len() as u64);
                Stats::add(&self.stats.pruned_docs, 1);
                continue;
            }
            if !ids.is_empty() {
                let n = self.sink.delete(tenant, &sink_ids(&ids)).await?;
                Stats::add(&self.stats.pruned_chunks, n);
            }
            tokio::task::block_in_place(|| state.forget_doc(&doc))?;
            Stats::add(&self.stats.pruned_docs, 1);
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl crate::store::stage::Bookkeeping for Ledger {
    async fn after_write(&self, rows: &[Embedded]) -> Result<()> {
        Ledger::after_write(self, rows).await
    }
}
