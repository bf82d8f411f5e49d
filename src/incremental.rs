//! Resume and incremental runs: which chunks still need paying for, and the
//! bookkeeping around each write, on top of the state file (`state.rs`).
//!
//! - A document whose text and chunk settings are unchanged since it was
//!   completely written is not even chunked again.
//! - Of a changed or unfinished document, only chunks the sink has not
//!   acknowledged with the same content are embedded.
//! - Before a write the rows are recorded as intents, after the sink's
//!   acknowledgement as written; intents left by a crash are checked against
//!   the sink at the next start, so a kill between the two commits costs
//!   nothing twice.
//! - When every chunk of a document is acknowledged, its stale chunks (from a
//!   longer earlier version) are deleted from the sink.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering::{AcqRel, Relaxed};
use std::sync::{Arc, Mutex};

use anyhow::Result;

use crate::chunk::{Chunk, Chunker, DocMeta, Document};
use crate::embed::Embedded;
use crate::report::Stats;
use crate::sink::Sink;
use crate::state::{ChunkRec, Completed, State, doc_key};

pub struct Ledger {
    state: Option<State>,
    sink: Arc<dyn Sink>,
    stats: Arc<Stats>,
    /// Documents seen this run, for --prune only, as 64-bit hashes of their
    /// state keys: 8 bytes a document instead of its key (a collision can
    /// only keep a document --prune would have deleted).
    seen: Option<Mutex<HashSet<u64>>>,
    seen_hasher: std::hash::RandomState,
    /// `plan`: decide and count, but change nothing in the state or sink.
    dry_run: bool,
    intents: IntentLog,
    /// The sink's ids are not unique across tenants (LightRAG's are not):
    /// the state keys chunks by `tenant \0 id` instead.
    tenant_scoped: bool,
}

/// The sink's id of a chunk recorded in the state under `state_id`.
fn sink_id(state_id: &str) -> &str {
    state_id.rsplit_once('\0').map_or(state_id, |(_, id)| id)
}

fn sink_ids(state_ids: &[String]) -> Vec<String> {
    state_ids.iter().map(|i| sink_id(i).to_string()).collect()
}

/// Group commit for write intents: each needs a disk sync before its batch
/// goes to the sink, so writers that arrive while one sync is under way
/// share the next one instead of queueing a sync each.
/// A write batch's intent key and its chunks.
type IntentBatch = (String, Vec<ChunkRec>);

struct IntentLog {
    /// Makes intent keys unique across runs sharing a state file.
    run: String,
    seq: std::sync::atomic::AtomicU64,
    /// Intents not yet committed, and the number of the commit that will
    /// take them.
    pending: Mutex<(Vec<IntentBatch>, u64)>,
    /// Held while committing; the number of the last commit done.
    flushed: tokio::sync::Mutex<u64>,
}

impl Default for IntentLog {
    fn default() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        IntentLog {
            run: format!("{}-{nanos}", std::process::id()),
            seq: Default::default(),
            pending: Default::default(),
            flushed: Default::default(),
        }
    }
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
            state,
            sink,
            stats,
            seen: None,
            seen_hasher: Default::default(),
            dry_run: false,
            intents: IntentLog::default(),
            tenant_scoped: false,
        }
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
    pub fn plan_doc(&self, chunker: &Chunker, tenant: &Arc<str>, doc: Document) -> Result<DocWork> {
        let key = doc_key(tenant, &doc.key);
        let hash = chunker.doc_hash(&doc.text);
        if let Some(state) = &self.state {
            if let Some(seen) = &self.seen {
                seen.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(self.seen_hash(&key));
            }
            if let Some(chunks) = state.unchanged_doc(&key, &hash)? {
                return Ok(DocWork::Unchanged { chunks });
            }
        }
        let mut chunks = chunker.chunk(tenant, doc, hash);
        let meta = chunks.first().map(|c| c.doc.clone());
        let mut written = 0;
        if let Some(state) = &self.state {
            let ids: Vec<String> = chunks
                .iter()
                .map(|c| self.state_id(tenant, &c.id))
                .collect();
            let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
            let acked = state.acked_hashes(&ids)?;
            let before = chunks.len();
            let mut acked = acked.into_iter();
            chunks.retain(|c| acked.next().flatten().as_deref() != Some(c.content_hash.as_str()));
            written = (before - chunks.len()) as u32;
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

    /// Before the sink writes `rows`: returns the intent's key, for
    /// `after_write`.
    pub async fn before_write(&self, rows: &[Embedded]) -> Result<Option<String>> {
        let Some(state) = &self.state else {
            return Ok(None);
        };
        let key = format!(
            "{}-{}",
            self.intents.run,
            self.intents.seq.fetch_add(1, Relaxed)
        );
        let ticket = {
            let mut p = self
                .intents
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            p.0.push((key.clone(), self.records(rows)));
            p.1 + 1
        };
        let mut flushed = self.intents.flushed.lock().await;
        if *flushed >= ticket {
            // A sync that started after ours were queued took them.
            return Ok(Some(key));
        }
        let batch = {
            let mut p = self
                .intents
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            p.1 += 1;
            std::mem::take(&mut p.0)
        };
        tokio::task::block_in_place(|| state.record_intents(&batch))?;
        *flushed = ticket;
        Ok(Some(key))
    }

    /// After the sink acknowledged `rows`: record them, and complete the
    /// documents whose last chunks these were.
    pub async fn after_write(&self, rows: &[Embedded], intent: Option<&str>) -> Result<()> {
        let Some(state) = &self.state else {
            return Ok(());
        };
        let recs = self.records(rows);
        tokio::task::block_in_place(|| state.mark_acked(intent, &recs))?;
        let done: Vec<&DocMeta> = rows
            .iter()
            .filter(|r| r.chunk.doc.pending.fetch_sub(1, AcqRel) == 1)
            .map(|r| r.chunk.doc.as_ref())
            .collect();
        self.complete(&done).await
    }

    /// Every chunk of these documents is in the sink: delete their stale
    /// chunks, then record them as complete.
    pub async fn complete(&self, docs: &[&DocMeta]) -> Result<()> {
        let Some(state) = &self.state else {
            return Ok(());
        };
        if docs.is_empty() {
            return Ok(());
        }
        let mut done = Vec::with_capacity(docs.len());
        let mut stale_by_tenant: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for d in docs {
            let key = doc_key(&d.tenant, &d.key);
            let removed = tokio::task::block_in_place(|| state.stale_chunks(&key, d.chunk_count))?;
            stale_by_tenant
                .entry(&d.tenant)
                .or_default()
                .extend(removed.iter().cloned());
            done.push(Completed {
                doc: key,
                hash: d.hash.clone(),
                count: d.chunk_count,
                removed,
            });
        }
        for (tenant, ids) in stale_by_tenant.iter().filter(|(_, ids)| !ids.is_empty()) {
            let n = self.sink.delete(tenant, &sink_ids(ids)).await?;
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
                tokio::task::block_in_place(|| state.mark_acked(None, &done))?;
            }
        }
        tokio::task::block_in_place(|| state.clear_intents())?;
        Stats::add(&self.stats.found_on_resume, found as u64);
        tracing::info!(
            "resuming: {found} rows written just before the last run stopped were found in the sink"
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
