//! What the sink has acknowledged, kept in a redb file so runs resume after a
//! crash and unchanged input costs nothing.
//!
//! Tables (keys of documents are `tenant \0 doc_key`):
//! - `rows`: (doc, chunk index) -> `chunk id \t content_hash` for every
//!   chunk the sink acknowledged. Keyed by document and position, not by
//!   the (hash-shaped, so random) chunk id: a load's inserts land next to
//!   each other in the B-tree, one insert a row dirties a handful of pages
//!   per commit instead of one page per row, and a document's chunks and
//!   its stale tail are one range read. (Up to 0.x: `chunks` by id plus a
//!   `doc_chunks` multimap, two inserts a row, one of them random; such
//!   files are converted when opened.)
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

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use redb::{
    Database, Durability, MultimapTableDefinition, ReadableDatabase, ReadableTable,
    TableDefinition, TableHandle,
};

const ROWS: TableDefinition<(&str, u32), &str> = TableDefinition::new("rows");
const LEGACY_CHUNKS: TableDefinition<&str, &str> = TableDefinition::new("chunks");
const LEGACY_DOC_CHUNKS: MultimapTableDefinition<&str, &str> =
    MultimapTableDefinition::new("doc_chunks");
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
    /// The value earlier versions wrote for a chunk (in `chunks` and
    /// intents); only read now, written by tests that make such files.
    #[cfg(test)]
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
        txn.open_table(ROWS)?;
        txn.open_table(DOCS)?;
        txn.open_table(INTENTS)?;
        txn.open_table(OBJECTS)?;
        txn.open_table(RUNS)?;
        txn.commit()?;
        upgrade(&db).with_context(|| format!("converting the state file {}", path.display()))?;
        Ok(State {
            db,
            path: path.to_path_buf(),
        })
    }

    /// Opens an existing state file without creating anything (for `plan`);
    /// a file of an earlier version is converted, as a load would.
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
        upgrade(&db).with_context(|| format!("converting the state file {}", path.display()))?;
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

    /// The chunks of `doc` the sink acknowledged, by index: (id, content
    /// hash).
    pub fn acked(&self, doc: &str) -> Result<HashMap<u32, (String, String)>> {
        let txn = self.db.begin_read()?;
        let rows = open_rows(&txn)?;
        let mut out = HashMap::new();
        let Some(rows) = rows else { return Ok(out) };
        for item in rows.range((doc, 0)..=(doc, u32::MAX))? {
            let (k, v) = item?;
            if let Some((id, hash)) = v.value().split_once('\t') {
                out.insert(k.value().1, (id.to_string(), hash.to_string()));
            }
        }
        Ok(out)
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
            let table = txn.open_table(ROWS)?;
            let mut docs = txn.open_table(DOCS)?;
            for (doc, hash, count) in done {
                let removed = ids_from(&table, doc, *count)?;
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
        match open_rows(&txn)? {
            Some(rows) => ids_from(&rows, doc, count),
            None => Ok(Vec::new()),
        }
    }

    /// All chunk ids recorded for `doc`.
    pub fn doc_chunks(&self, doc: &str) -> Result<Vec<String>> {
        let txn = self.db.begin_read()?;
        match open_rows(&txn)? {
            Some(rows) => ids_from(&rows, doc, 0),
            None => Ok(Vec::new()),
        }
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
            let mut rows = txn.open_table(ROWS)?;
            let mut docs = txn.open_table(DOCS)?;
            for d in done {
                if !d.removed.is_empty() {
                    let doc = d.doc.as_str();
                    rows.retain_in((doc, d.count)..=(doc, u32::MAX), |_, _| false)?;
                }
                docs.insert(d.doc.as_str(), format!("{}\t{}", d.hash, d.count).as_str())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Forgets a whole document (pruned from the sink).
    pub fn forget_doc(&self, doc: &str) -> Result<()> {
        let txn = self.db.begin_write()?;
        {
            txn.open_table(ROWS)?
                .retain_in((doc, 0)..=(doc, u32::MAX), |_, _| false)?;
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
        let Some(rows) = open_rows(&txn)? else {
            return Ok(0);
        };
        let mut n = 0;
        for item in rows.range((lo.as_str(), 0)..(hi.as_str(), 0))? {
            item?;
            n += 1;
        }
        Ok(n)
    }

    /// Whether any chunk of `tenant` is recorded (one read, where
    /// `tenant_chunks` counts them all).
    pub fn knows_tenant(&self, tenant: &str) -> Result<bool> {
        let (lo, hi) = (format!("{tenant}\0"), format!("{tenant}\u{1}"));
        let txn = self.db.begin_read()?;
        let Some(rows) = open_rows(&txn)? else {
            return Ok(false);
        };
        Ok(rows
            .range((lo.as_str(), 0)..(hi.as_str(), 0))?
            .next()
            .transpose()?
            .is_some())
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
        let docs = out.len();
        if let Some(rows) = open_rows(&txn)? {
            for item in rows.range((lo.as_str(), 0)..(hi.as_str(), 0))? {
                let (k, _) = item?;
                let doc = k.value().0;
                // Rows come by document: only a new one needs the search.
                if out.last().map(String::as_str) != Some(doc)
                    && !out[..docs].iter().any(|d| d == doc)
                {
                    out.push(doc.to_string());
                }
            }
        }
        Ok(out)
    }
}

/// Records acknowledged chunks under their document and position.
fn insert_rows(txn: &redb::WriteTransaction, rows: &[ChunkRec]) -> Result<()> {
    let mut table = txn.open_table(ROWS)?;
    let mut value = String::new();
    for r in rows {
        value.clear();
        value.push_str(&r.id);
        value.push('\t');
        value.push_str(&r.hash);
        table.insert((r.doc.as_str(), r.index), value.as_str())?;
    }
    Ok(())
}

/// The `rows` table in a read transaction; None in a file that predates
/// it and was opened by nothing that converts (cannot happen after `open`).
fn open_rows(
    txn: &redb::ReadTransaction,
) -> Result<Option<redb::ReadOnlyTable<(&'static str, u32), &'static str>>> {
    match txn.open_table(ROWS) {
        Ok(t) => Ok(Some(t)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Chunk ids recorded for `doc` at index `from` and after (its stale tail
/// when `from` is its chunk count; all of them from 0), read in a read or
/// a write transaction.
fn ids_from(
    rows: &impl ReadableTable<(&'static str, u32), &'static str>,
    doc: &str,
    from: u32,
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for item in rows.range((doc, from)..=(doc, u32::MAX))? {
        let (_, v) = item?;
        let v = v.value();
        out.push(v.split_once('\t').map_or(v, |(id, _)| id).to_string());
    }
    Ok(out)
}

/// Converts a state file of vecload up to 0.x (`chunks` by id and the
/// `doc_chunks` multimap) to `rows`, in one commit; nothing to do in a
/// file that has none. Synced: the old tables go in the same commit.
fn upgrade(db: &Database) -> Result<()> {
    let legacy = db
        .begin_read()?
        .list_tables()?
        .any(|t| t.name() == LEGACY_CHUNKS.name());
    if !legacy {
        return Ok(());
    }
    let txn = db.begin_write()?;
    {
        let old = txn.open_table(LEGACY_CHUNKS)?;
        let mut rows = txn.open_table(ROWS)?;
        let mut n = 0u64;
        for item in old.iter()? {
            let (k, v) = item?;
            if let Some(r) = ChunkRec::decode(k.value(), v.value()) {
                rows.insert(
                    (r.doc.as_str(), r.index),
                    format!("{}\t{}", r.id, r.hash).as_str(),
                )?;
                n += 1;
            }
        }
        tracing::info!("state file converted to this version's layout ({n} chunks)");
    }
    txn.delete_table(LEGACY_CHUNKS)?;
    txn.delete_multimap_table(LEGACY_DOC_CHUNKS)?;
    txn.commit()?;
    Ok(())
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
        let acked = s.acked(&doc).unwrap();
        assert_eq!(acked.get(&0), Some(&("1".into(), "h1".into())));
        assert_eq!(acked.len(), 1);
        assert!(s.acked(&doc_key("t", "b.md")).unwrap().is_empty());
    }

    /// A state file as vecload up to 0.x wrote it: `chunks` by id and the
    /// `doc_chunks` multimap.
    #[test]
    fn a_state_file_of_an_earlier_version_is_converted_when_opened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let doc = doc_key("t", "a.md");
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut chunks = txn.open_table(LEGACY_CHUNKS).unwrap();
                let mut by_doc = txn.open_multimap_table(LEGACY_DOC_CHUNKS).unwrap();
                for r in [rec("1", 0, &doc), rec("2", 1, &doc), rec("3", 2, &doc)] {
                    chunks.insert(r.id.as_str(), r.encode().as_str()).unwrap();
                    by_doc.insert(r.doc.as_str(), r.id.as_str()).unwrap();
                }
                txn.open_table(DOCS)
                    .unwrap()
                    .insert(doc.as_str(), "dochash\t3")
                    .unwrap();
            }
            txn.commit().unwrap();
        }
        let s = State::open(&path).unwrap();
        assert_eq!(s.unchanged_doc(&doc, "dochash").unwrap(), Some(3));
        assert_eq!(
            s.acked(&doc).unwrap().get(&1),
            Some(&("2".into(), "h2".into()))
        );
        assert_eq!(
            s.stale_chunks(&doc, 1).unwrap(),
            vec!["2".to_string(), "3".into()]
        );
        assert_eq!(s.tenant_chunks("t").unwrap(), 3);
        drop(s);
        // Converted once: the old tables are gone, and opening again keeps the rows.
        let s = State::open(&path).unwrap();
        assert_eq!(s.doc_chunks(&doc).unwrap().len(), 3);
        let txn = s.db.begin_read().unwrap();
        assert!(
            !txn.list_tables()
                .unwrap()
                .any(|t| t.name() == LEGACY_CHUNKS.name())
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
        assert_eq!(
            s.acked(&doc).unwrap().len(),
            2,
            "the stale chunk is forgotten"
        );
        assert_eq!(s.tenant_chunks("t").unwrap(), 2);
        assert!(s.knows_tenant("t").unwrap());
        assert!(!s.knows_tenant("v").unwrap());
        let other = doc_key("u", "a.md");
        s.mark_acked(&[rec("9", 0, &other)]).unwrap();
        assert_eq!(s.docs_of_tenant("t").unwrap(), vec![doc.clone()]);
        s.forget_doc(&doc).unwrap();
        assert!(s.docs_of_tenant("t").unwrap().is_empty());
        assert_eq!(s.docs_of_tenant("u").unwrap(), vec![other]);
    }
}
