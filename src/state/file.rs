//! What the sink has acknowledged, kept in a redb file so runs resume after a
//! crash and unchanged input costs nothing.
//!
//! Tables (keys of documents are `tenant \0 doc_key`):
//! - `chunks`: chunk id -> `content_hash \t index \t doc` for every chunk the
//!   sink acknowledged;
//! - `doc_chunks`: doc -> chunk ids (multimap), to find stale chunks;
//! - `docs`: doc -> `doc_hash \t chunk_count`, written once every chunk of the
//!   document is acknowledged and its stale chunks are deleted;
//! - `objects`: an object of a remote source (`tenant \0 s3://bucket/key`)
//!   -> its ETag, size and the documents read from it with their hashes, so
//!   an unchanged object is not downloaded again;
//! - `runs`: tenant -> the load that has it open. Set with a disk sync when
//!   a load starts and removed when it ends cleanly; everything in between
//!   is committed without waiting for the disk (synced every few seconds).
//!   A load that finds its tenant still open knows the last one was killed
//!   and that this file may be behind the store: it reads the store as the
//!   record (`Ledger::recall`), so a lost acknowledgement costs nothing twice.
//! - `intents`: chunks about to be written, as vecload up to 0.x synced them
//!   before every write batch; left by a crash of such a version, they are
//!   checked against the sink at the next start (`Ledger::reconcile`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use redb::{
    Database, Durability, MultimapTableDefinition, ReadableDatabase, ReadableMultimapTable,
    ReadableTable, TableDefinition,
};

const CHUNKS: TableDefinition<&str, &str> = TableDefinition::new("chunks");
const DOC_CHUNKS: MultimapTableDefinition<&str, &str> = MultimapTableDefinition::new("doc_chunks");
const DOCS: TableDefinition<&str, &str> = TableDefinition::new("docs");
const INTENTS: TableDefinition<&str, &str> = TableDefinition::new("intents");
const OBJECTS: TableDefinition<&str, &str> = TableDefinition::new("objects");
const RUNS: TableDefinition<&str, &str> = TableDefinition::new("runs");
/// Intent keys of a whole write batch; its value holds one `id \t record`
/// line per chunk.
const INTENT_BATCH: &str = "batch:";

/// One chunk as the state knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkRec {
    pub id: String,
    pub hash: String,
    pub index: u32,
    /// `tenant \0 doc_key`
    pub doc: String,
}

impl ChunkRec {
    fn encode(&self) -> String {
        format!("{}\t{}\t{}", self.hash, self.index, self.doc)
    }

    fn decode(id: &str, v: &str) -> Option<ChunkRec> {
        let mut it = v.splitn(3, '\t');
        Some(ChunkRec {
            id: id.to_string(),
            hash: it.next()?.to_string(),
            index: it.next()?.parse().ok()?,
            doc: it.next()?.to_string(),
        })
    }
}

/// An object of a remote source as read last: its version, and each
/// document read from it (`tenant \0 key`) with the hash it had.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ObjectRec {
    pub etag: String,
    pub size: u64,
    pub docs: Vec<(String, String)>,
    /// Why the object gave no document (reason, detail), when that follows
    /// from its bytes alone: the same version is skipped the same way.
    #[serde(default)]
    pub skipped: Option<(String, String)>,
}

/// A document all of whose chunks are in the sink.
#[derive(Debug, Clone)]
pub struct Completed {
    pub doc: String,
    pub hash: String,
    pub count: u32,
    /// Stale chunk ids deleted from the sink.
    pub removed: Vec<String>,
}

pub fn doc_key(tenant: &str, key: &str) -> String {
    format!("{tenant}\0{key}")
}

pub struct State {
    pub(super) db: Database,
    path: PathBuf,
}

/// The state file's page cache (see `State::open`).
const STATE_CACHE_BYTES: usize = 32 * 1024 * 1024;

impl State {
    pub fn open(path: &Path) -> Result<State> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).with_context(|| {
                format!(
                    "cannot create the state folder {} (set --state to a writable path)",
                    dir.display()
                )
            })?;
        }
        // redb caches up to 1 GiB by default, and a million-chunk load would
        // keep most of its state file in that cache; the operating system's
        // page cache serves the same pages without counting against us.
        let db = redb::Builder::new()
            .set_cache_size(STATE_CACHE_BYTES)
            .create(path)
            .map_err(|e| {
            anyhow::anyhow!(
                "cannot open the state file {}: {e} (is another vecload run using it? else set --state)",
                path.display()
            )
        })?;
        let txn = db.begin_write()?;
        txn.open_table(CHUNKS)?;
        txn.open_multimap_table(DOC_CHUNKS)?;
        txn.open_table(DOCS)?;
        txn.open_table(INTENTS)?;
        txn.open_table(OBJECTS)?;
        txn.open_table(RUNS)?;
        txn.commit()?;
        Ok(State {
            db,
            path: path.to_path_buf(),
        })
    }

    /// Opens an existing state file without creating anything (for `plan`).
    pub fn open_existing(path: &Path) -> Result<Option<State>> {
        if !path.exists() {
            return Ok(None);
        }
        let db = redb::Builder::new()
            .set_cache_size(STATE_CACHE_BYTES)
            .open(path)
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot read the state file {}: {e} (is a load running?)",
                    path.display()
                )
            })?;
        Ok(Some(State {
            db,
            path: path.to_path_buf(),
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The chunk count of a document whose recorded hash equals `hash`.
    pub fn unchanged_doc(&self, doc: &str, hash: &str) -> Result<Option<u32>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(DOCS)?;
        Ok(t.get(doc)?.and_then(|v| {
            let v = v.value();
            let (h, n) = v.split_once('\t')?;
            (h == hash).then(|| n.parse().ok()).flatten()
        }))
    }

    /// What the last read of `object` found; None when never read (or the
    /// state file is older than the `objects` table).
    pub fn object(&self, object: &str) -> Result<Option<ObjectRec>> {
        let txn = self.db.begin_read()?;
        let t = match txn.open_table(OBJECTS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Ok(t.get(object)?
            .and_then(|v| serde_json::from_str(v.value()).ok()))
    }

    pub fn record_object(&self, object: &str, rec: &ObjectRec) -> Result<()> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::None)?;
        txn.open_table(OBJECTS)?
            .insert(object, serde_json::to_string(rec)?.as_str())?;
        txn.commit()?;
        Ok(())
    }

    /// For each id, the content hash the sink acknowledged for it, if any.
    pub fn acked_hashes(&self, ids: &[&str]) -> Result<Vec<Option<String>>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(CHUNKS)?;
        ids.iter()
            .map(|id| {
                Ok(t.get(*id)?
                    .and_then(|v| ChunkRec::decode(id, v.value()).map(|r| r.hash)))
            })
            .collect()
    }

    /// Marks `tenant` as open by the load `run`, synced to disk. Returns the
    /// run that had it open before (killed before it ended), if any.
    pub fn open_run(&self, tenant: &str, run: &str) -> Result<Option<String>> {
        let txn = self.db.begin_write()?;
        let earlier = {
            let mut t = txn.open_table(RUNS)?;
            let earlier = t.get(tenant)?.map(|v| v.value().to_string());
            t.insert(tenant, run)?;
            earlier
        };
        txn.commit()?;
        Ok(earlier)
    }

    /// The load of `tenant` ended cleanly: everything it recorded is synced
    /// with this commit.
    pub fn close_run(&self, tenant: &str) -> Result<()> {
        let txn = self.db.begin_write()?;
        txn.open_table(RUNS)?.remove(tenant)?;
        txn.commit()?;
        Ok(())
    }

    /// Whether a load of `tenant` was killed before it ended (for `plan`).
    pub fn run_left_open(&self, tenant: &str) -> Result<bool> {
        let txn = self.db.begin_read()?;
        match txn.open_table(RUNS) {
            Ok(t) => Ok(t.get(tenant)?.is_some()),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Records rows the sink acknowledged, in one commit that does not wait
    /// for the disk: lost in a crash, the rows are found in the store by the
    /// next run (see `runs` above). The next sync makes it durable.
    pub fn mark_acked(&self, rows: &[ChunkRec]) -> Result<()> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::None)?;
        insert_rows(&txn, rows)?;
        txn.commit()?;
        Ok(())
    }

    /// Records acknowledged `rows` and completes the documents in `done`
    /// (`doc, hash, chunk_count`: every chunk now acknowledged), all in one
    /// commit that does not wait for the disk. A document with stale chunks
    /// (from a longer earlier version) is not completed here: it is
    /// returned, to be completed with `complete_docs` once those chunks are
    /// deleted from the sink.
    pub fn record_written(
        &self,
        rows: &[ChunkRec],
        done: &[(String, String, u32)],
    ) -> Result<Vec<Completed>> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::None)?;
        let mut with_stale = Vec::new();
        {
            insert_rows(&txn, rows)?;
            let chunks = txn.open_table(CHUNKS)?;
            let by_doc = txn.open_multimap_table(DOC_CHUNKS)?;
            let mut docs = txn.open_table(DOCS)?;
            for (doc, hash, count) in done {
                let removed = stale_of(&by_doc, &chunks, doc, *count)?;
                if removed.is_empty() {
                    docs.insert(doc.as_str(), format!("{hash}\t{count}").as_str())?;
                } else {
                    with_stale.push(Completed {
                        doc: doc.clone(),
                        hash: hash.clone(),
                        count: *count,
                        removed,
                    });
                }
            }
        }
        txn.commit()?;
        Ok(with_stale)
    }

    /// Makes every earlier commit durable (one disk sync).
    pub fn sync(&self) -> Result<()> {
        self.db.begin_write()?.commit()?;
        Ok(())
    }

    /// A copy of the file as of now, for putting it elsewhere while the run
    /// goes on: every commit made durable, then the file copied while a
    /// write transaction is held, so no commit lands in the middle of the
    /// copy (writers wait the few milliseconds the copy takes). The copy
    /// opens like a state whose process was killed right after that sync.
    pub fn snapshot(&self, to: &Path) -> Result<()> {
        self.sync()?;
        let txn = self.db.begin_write()?;
        let copied = std::fs::copy(&self.path, to)
            .with_context(|| format!("copying the state file to {}", to.display()));
        txn.abort()?;
        copied?;
        Ok(())
    }

    pub fn intents(&self) -> Result<Vec<ChunkRec>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(INTENTS)?;
        let mut out = Vec::new();
        for item in t.iter()? {
            let (k, v) = item?;
            let (k, v) = (k.value(), v.value());
            if k.starts_with(INTENT_BATCH) {
                out.extend(v.lines().filter_map(|line| {
                    let (id, rest) = line.split_once('\t')?;
                    ChunkRec::decode(id, rest)
                }));
            } else if let Some(r) = ChunkRec::decode(k, v) {
                // One chunk per entry, as state files of earlier versions have.
                out.push(r);
            }
        }
        Ok(out)
    }

    pub fn clear_intents(&self) -> Result<()> {
        let txn = self.db.begin_write()?;
        txn.delete_table(INTENTS)?;
        txn.open_table(INTENTS)?;
        txn.open_table(OBJECTS)?;
        txn.commit()?;
        Ok(())
    }

    /// Acknowledged chunks of `doc` at or past `count`: left over from a
    /// longer earlier version of the document.
    pub fn stale_chunks(&self, doc: &str, count: u32) -> Result<Vec<String>> {
        let txn = self.db.begin_read()?;
        let by_doc = txn.open_multimap_table(DOC_CHUNKS)?;
        let chunks = txn.open_table(CHUNKS)?;
        stale_of(&by_doc, &chunks, doc, count)
    }

    /// All chunk ids recorded for `doc`.
    pub fn doc_chunks(&self, doc: &str) -> Result<Vec<String>> {
        let txn = self.db.begin_read()?;
        let by_doc = txn.open_multimap_table(DOC_CHUNKS)?;
        let mut out = Vec::new();
        for id in by_doc.get(doc)? {
            out.push(id?.value().to_string());
        }
        Ok(out)
    }

    /// For each completed document: forgets its `removed` chunks (deleted
    /// from the sink) and records it as complete at `hash` with `count`
    /// chunks. One commit for all: a commit is a disk sync.
    /// Not synced either: if lost, the next run finds the chunks acknowledged
    /// (or in the sink) and deletes the stale ones again, which is idempotent.
    pub fn complete_docs(&self, done: &[Completed]) -> Result<()> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::None)?;
        {
            let mut chunks = txn.open_table(CHUNKS)?;
            let mut by_doc = txn.open_multimap_table(DOC_CHUNKS)?;
            let mut docs = txn.open_table(DOCS)?;
            for d in done {
                for id in &d.removed {
                    chunks.remove(id.as_str())?;
                    by_doc.remove(d.doc.as_str(), id.as_str())?;
                }
                docs.insert(d.doc.as_str(), format!("{}\t{}", d.hash, d.count).as_str())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Forgets a whole document (pruned from the sink).
    pub fn forget_doc(&self, doc: &str) -> Result<()> {
        let ids = self.doc_chunks(doc)?;
        let txn = self.db.begin_write()?;
        {
            let mut chunks = txn.open_table(CHUNKS)?;
            for id in &ids {
                chunks.remove(id.as_str())?;
            }
            txn.open_multimap_table(DOC_CHUNKS)?.remove_all(doc)?;
            txn.open_table(DOCS)?.remove(doc)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Chunks of `tenant` acknowledged by the sink: what it should hold for
    /// the tenant, if only loads with this state write to it.
    pub fn tenant_chunks(&self, tenant: &str) -> Result<u64> {
        let lo = format!("{tenant}\0");
        let hi = format!("{tenant}\u{1}");
        let txn = self.db.begin_read()?;
        let mut n = 0;
        for item in txn
            .open_multimap_table(DOC_CHUNKS)?
            .range(lo.as_str()..hi.as_str())?
        {
            n += item?.1.len();
        }
        Ok(n)
    }

    /// Every document of `tenant` the state knows (complete or not).
    pub fn docs_of_tenant(&self, tenant: &str) -> Result<Vec<String>> {
        let lo = format!("{tenant}\0");
        let hi = format!("{tenant}\u{1}");
        let txn = self.db.begin_read()?;
        let mut out: Vec<String> = Vec::new();
        for item in txn.open_table(DOCS)?.range(lo.as_str()..hi.as_str())? {
            out.push(item?.0.value().to_string());
        }
        for item in txn
            .open_multimap_table(DOC_CHUNKS)?
            .range(lo.as_str()..hi.as_str())?
        {
            let k = item?.0.value().to_string();
            if out.last() != Some(&k) && !out.contains(&k) {
                out.push(k);
            }
        }
        Ok(out)
    }
}

/// Records acknowledged chunks: each by id, and under its document.
fn insert_rows(txn: &redb::WriteTransaction, rows: &[ChunkRec]) -> Result<()> {
    let mut chunks = txn.open_table(CHUNKS)?;
    let mut by_doc = txn.open_multimap_table(DOC_CHUNKS)?;
    for r in rows {
        chunks.insert(r.id.as_str(), r.encode().as_str())?;
        by_doc.insert(r.doc.as_str(), r.id.as_str())?;
    }
    Ok(())
}

/// Chunk ids recorded for `doc` at or past `count` (or without a record),
/// read in a read or a write transaction.
fn stale_of(
    by_doc: &impl ReadableMultimapTable<&'static str, &'static str>,
    chunks: &impl ReadableTable<&'static str, &'static str>,
    doc: &str,
    count: u32,
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for id in by_doc.get(doc)? {
        let id = id?;
        let id = id.value();
        let rec = chunks
            .get(id)?
            .and_then(|v| ChunkRec::decode(id, v.value()));
        if rec.is_none_or(|r| r.index >= count) {
            out.push(id.to_string());
        }
    }
    Ok(out)
}

/// `.vecload/<target>.redb` in the first PATH (its folder for a file): one
/// state per sink target, table, model and dimension, so a new model or
/// table starts from nothing while reruns of the same load resume.
pub fn default_path(
    paths: &[std::path::PathBuf],
    target: &dyn crate::store::Target,
    model: &str,
    dim: usize,
) -> PathBuf {
    use sha2::{Digest, Sha256};
    let first = paths.first().cloned().unwrap_or_default();
    let base = if first.is_dir() {
        first
    } else {
        first.parent().map(PathBuf::from).unwrap_or_default()
    };
    let (kind, target, name) = (target.kind(), target.identity(), target.file_name());
    let id = Sha256::digest(format!("{kind}|{target}|{model}|{dim}").as_bytes());
    base.join(".vecload")
        .join(format!("{kind}-{name}-{}.redb", &hex::encode(id)[..12]))
}

/// The state of a load from S3 (nowhere on disk to keep `.vecload/`):
/// `$XDG_STATE_HOME/vecload/`, else `~/.local/state/vecload/`, one file per
/// source, target, model and dimension. On a machine whose disk goes with
/// the task (Fargate, a replaced pod), give --state.
pub fn default_remote_path(
    sources: &[String],
    target: &dyn crate::store::Target,
    model: &str,
    dim: usize,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<PathBuf, crate::settings::ConfigError> {
    use sha2::{Digest, Sha256};
    let base = env("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .ok_or_else(|| {
            crate::settings::bad(
                "no HOME or XDG_STATE_HOME for the state file: give --state (or --no-state)",
            )
        })?;
    let (kind, identity, name) = (target.kind(), target.identity(), target.file_name());
    let id =
        Sha256::digest(format!("{}|{kind}|{identity}|{model}|{dim}", sources.join("|")).as_bytes());
    Ok(base
        .join("vecload")
        .join(format!("{kind}-{name}-{}.redb", &hex::encode(id)[..12])))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, index: u32, doc: &str) -> ChunkRec {
        ChunkRec {
            id: id.into(),
            hash: format!("h{id}"),
            index,
            doc: doc.into(),
        }
    }

    #[test]
    fn acknowledged_chunks_survive_reopening_once_synced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let doc = doc_key("t", "a.md");
        {
            let s = State::open(&path).unwrap();
            s.mark_acked(&[rec("1", 0, &doc)]).unwrap();
            s.sync().unwrap();
        }
        let s = State::open(&path).unwrap();
        assert_eq!(
            s.acked_hashes(&["1", "2"]).unwrap(),
            vec![Some("h1".into()), None]
        );
    }

    #[test]
    fn a_load_left_open_is_known_to_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        {
            let s = State::open(&path).unwrap();
            assert_eq!(s.open_run("t", "run1").unwrap(), None);
            assert_eq!(s.open_run("u", "run1").unwrap(), None);
            s.close_run("u").unwrap();
            // Dropped with "t" still open: killed.
        }
        let s = State::open(&path).unwrap();
        assert!(s.run_left_open("t").unwrap());
        assert!(!s.run_left_open("u").unwrap(), "tenants are kept apart");
        assert_eq!(s.open_run("t", "run2").unwrap(), Some("run1".into()));
        s.close_run("t").unwrap();
        assert!(!s.run_left_open("t").unwrap());
    }

    /// What vecload versions that synced intents left after a crash.
    fn insert_intent(s: &State, key: &str, value: &str) {
        let txn = s.db.begin_write().unwrap();
        txn.open_table(INTENTS).unwrap().insert(key, value).unwrap();
        txn.commit().unwrap();
    }

    #[test]
    fn intents_of_earlier_versions_are_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let s = State::open(&dir.path().join("s.redb")).unwrap();
        let doc = doc_key("t", "a.md");
        let old = rec("7", 3, &doc);
        insert_intent(&s, "7", &old.encode());
        let batch = rec("8", 4, &doc);
        insert_intent(
            &s,
            &format!("{INTENT_BATCH}k"),
            &format!("8\t{}\n", batch.encode()),
        );
        let mut got = s.intents().unwrap();
        got.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(got, vec![old, batch]);
        s.clear_intents().unwrap();
        assert!(s.intents().unwrap().is_empty());
    }

    #[test]
    fn stale_chunks_and_documents() {
        let dir = tempfile::tempdir().unwrap();
        let s = State::open(&dir.path().join("s.redb")).unwrap();
        let doc = doc_key("t", "a.md");
        s.mark_acked(&[rec("1", 0, &doc), rec("2", 1, &doc), rec("3", 2, &doc)])
            .unwrap();
        assert_eq!(s.stale_chunks(&doc, 2).unwrap(), vec!["3".to_string()]);
        s.complete_docs(&[Completed {
            doc: doc.clone(),
            hash: "dochash".into(),
            count: 2,
            removed: vec!["3".into()],
        }])
        .unwrap();
        assert_eq!(s.unchanged_doc(&doc, "dochash").unwrap(), Some(2));
        assert_eq!(s.unchanged_doc(&doc, "other").unwrap(), None);
        assert_eq!(s.acked_hashes(&["3"]).unwrap(), vec![None]);
        let other = doc_key("u", "a.md");
        s.mark_acked(&[rec("9", 0, &other)]).unwrap();
        assert_eq!(s.docs_of_tenant("t").unwrap(), vec![doc.clone()]);
        s.forget_doc(&doc).unwrap();
        assert!(s.docs_of_tenant("t").unwrap().is_empty());
        assert_eq!(s.docs_of_tenant("u").unwrap(), vec![other]);
    }
}
