//! The content-addressed embedding cache: a vector computed once for a text
//! is not paid for again, by any run, tenant or state file on the machine.
//!
//! The key is SHA-256 of everything that changes a vector (provider, model,
//! dimension, the endpoint's URLs, model folder, `dimensions`, truncation,
//! asymmetric mode and its document prefix, task, deployment) and of the
//! exact text. A hit is checked like an endpoint's answer (length, finite
//! numbers); anything else is a miss. The file is a redb store beside
//! nothing else (`$XDG_CACHE_HOME/vecload`, `~/.cache/vecload`, or
//! `--cache DIR`), bounded by `--cache-max-gb`: past it, the oldest entries
//! go first. A file that cannot be read is set aside and a new one started;
//! one that another vecload holds open is not used by this run. The cache
//! only ever saves requests: every failure of it means "embed as usual".

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};
use sha2::{Digest, Sha256};

use super::settings::EmbedSettings;

/// key -> (insertion number, little-endian f32s).
const VECTORS: TableDefinition<&[u8; 32], (u64, &[u8])> = TableDefinition::new("vectors");
/// insertion number -> key, oldest first (what eviction drops).
const ORDER: TableDefinition<u64, &[u8; 32]> = TableDefinition::new("order");
/// Named facts a pinned store keeps about its own contents (which batches
/// it holds whole, which inputs a batch refused).
const MARKS: TableDefinition<&str, &str> = TableDefinition::new("marks");

/// Where the cache is and how big it may grow.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheSettings {
    pub file: PathBuf,
    pub max_bytes: u64,
}

impl CacheSettings {
    /// The default folder: $XDG_CACHE_HOME/vecload, else ~/.cache/vecload.
    pub fn default_dir(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
        env("XDG_CACHE_HOME")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                env("HOME")
                    .filter(|h| !h.is_empty())
                    .map(|h| PathBuf::from(h).join(".cache"))
            })
            .map(|d| d.join("vecload"))
    }
}

#[derive(Clone)]
pub struct Cache {
    db: Arc<Database>,
    /// SHA-256 state after the settings' part of the key.
    prefix: Sha256,
    dim: usize,
    max_entries: u64,
}

impl Cache {
    /// Opens (or makes) the cache for vectors of `embed`; None, with a
    /// warning, when it cannot be used.
    pub fn open(embed: &EmbedSettings, at: &CacheSettings) -> Option<Cache> {
        let db = match open_db(&at.file) {
            Ok(db) => db,
            Err(e) => {
                tracing::warn!("embedding cache not used: {e:#}");
                return None;
            }
        };
        // A vector costs its floats, its key twice and redb's overhead.
        let per_entry = (embed.dim * 4 + 32 * 2 + 48) as u64;
        Some(Cache {
            db: Arc::new(db),
            prefix: Sha256::new_with_prefix(namespace(embed)),
            dim: embed.dim,
            max_entries: (at.max_bytes / per_entry).max(1),
        })
    }

    /// A store of vectors in the cache's format that never evicts: the
    /// results of `--batch-api` batches, kept until the load has written
    /// them (they are paid for).
    pub fn pinned(embed: &EmbedSettings, file: &Path) -> Result<Cache> {
        let db = open_db(file)?;
        Ok(Cache {
            db: Arc::new(db),
            prefix: Sha256::new_with_prefix(namespace(embed)),
            dim: embed.dim,
            max_entries: u64::MAX,
        })
    }

    /// SHA-256 (hex) of the settings part of every key: which vectors these are.
    pub fn namespace_of(embed: &EmbedSettings) -> String {
        hex::encode(Sha256::digest(namespace(embed)))
    }

    /// Makes every write before it durable.
    pub fn sync(&self) -> Result<()> {
        self.db.begin_write()?.commit()?;
        Ok(())
    }

    /// Keeps `value` under `name`, durably.
    pub fn mark(&self, name: &str, value: &str) -> Result<()> {
        let txn = self.db.begin_write()?;
        txn.open_table(MARKS)?.insert(name, value)?;
        txn.commit()?;
        Ok(())
    }

    /// Keeps many marks in one commit that does not wait for the disk
    /// (the next `sync` or `mark` makes it durable).
    pub fn mark_all(&self, marks: &[(String, String)]) -> Result<()> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::None)?;
        {
            let mut t = txn.open_table(MARKS)?;
            for (name, value) in marks {
                t.insert(name.as_str(), value.as_str())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    pub fn marked(&self, name: &str) -> Result<Option<String>> {
        Ok(self
            .marks(std::slice::from_ref(&name.to_string()))?
            .pop()
            .flatten())
    }

    pub fn marks(&self, names: &[String]) -> Result<Vec<Option<String>>> {
        let txn = self.db.begin_read()?;
        match txn.open_table(MARKS) {
            Ok(t) => names
                .iter()
                .map(|n| Ok(t.get(n.as_str())?.map(|v| v.value().to_string())))
                .collect(),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(vec![None; names.len()]),
            Err(e) => Err(e.into()),
        }
    }

    pub fn key(&self, text: &str) -> [u8; 32] {
        let mut h = self.prefix.clone();
        h.update(text.as_bytes());
        h.finalize().into()
    }

    /// The cached vector of each key, if any and sound.
    pub fn get(&self, keys: &[[u8; 32]]) -> Vec<Option<Vec<f32>>> {
        let read = || -> Result<Vec<Option<Vec<f32>>>> {
            let txn = self.db.begin_read()?;
            let t = match txn.open_table(VECTORS) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(vec![None; keys.len()]),
                Err(e) => return Err(e.into()),
            };
            let mut out = Vec::with_capacity(keys.len());
            for k in keys {
                out.push(t.get(k)?.and_then(|v| decode(v.value().1, self.dim)));
            }
            Ok(out)
        };
        read().unwrap_or_else(|e| {
            tracing::warn!("embedding cache: reading failed ({e}); embedding as usual");
            vec![None; keys.len()]
        })
    }

    /// Keeps these vectors; drops the oldest entries past the size bound.
    pub fn put(&self, entries: &[([u8; 32], &[f32])]) {
        let write = || -> Result<()> {
            let mut txn = self.db.begin_write()?;
            // Losing the last entries in a crash costs only requests.
            txn.set_durability(Durability::None)?;
            {
                let mut vectors = txn.open_table(VECTORS)?;
                let mut order = txn.open_table(ORDER)?;
                let first = order.last()?.map_or(0, |(k, _)| k.value() + 1);
                for (seq, (key, v)) in (first..).zip(entries) {
                    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                    if let Some(old) = vectors.insert(key, (seq, bytes.as_slice()))? {
                        let old_seq = old.value().0;
                        drop(old);
                        order.remove(old_seq)?;
                    }
                    order.insert(seq, key)?;
                }
                let over = vectors.len()?.saturating_sub(self.max_entries);
                if over > 0 {
                    // Down to 90% at once, so eviction is not on every write.
                    let drop_n = over + self.max_entries / 10;
                    let oldest: Vec<(u64, [u8; 32])> = order
                        .iter()?
                        .take(drop_n as usize)
                        .map(|e| e.map(|(s, k)| (s.value(), *k.value())))
                        .collect::<Result<_, _>>()?;
                    for (seq, key) in oldest {
                        order.remove(seq)?;
                        vectors.remove(&key)?;
                    }
                }
            }
            txn.commit()?;
            Ok(())
        };
        if let Err(e) = write() {
            tracing::warn!("embedding cache: writing failed ({e}); the vectors are stored anyway");
        }
    }
}

/// Opens the file; one that cannot be read is set aside and replaced.
fn open_db(file: &Path) -> Result<Database> {
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    }
    let open = || {
        redb::Builder::new()
            // The OS page cache serves the file; redb's own stays small.
            .set_cache_size(16 << 20)
            .create(file)
    };
    match open() {
        Ok(db) => Ok(db),
        Err(redb::DatabaseError::DatabaseAlreadyOpen) => Err(anyhow::anyhow!(
            "{} is in use by another vecload run",
            file.display()
        )),
        Err(e) => {
            let aside = file.with_extension(format!(
                "corrupt-{}",
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
            ));
            std::fs::rename(file, &aside).map_err(|r| {
                anyhow::anyhow!(
                    "{} cannot be read ({e}) nor moved aside ({r})",
                    file.display()
                )
            })?;
            tracing::warn!(
                "embedding cache {} cannot be read ({e}): set aside as {}, starting a new one",
                file.display(),
                aside.display()
            );
            Ok(open()?)
        }
    }
}

fn decode(bytes: &[u8], dim: usize) -> Option<Vec<f32>> {
    if bytes.len() != dim * 4 {
        return None;
    }
    let v: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    v.iter().all(|x| x.is_finite()).then_some(v)
}

/// The key's settings part: every setting that changes a text's vector
/// (`EmbedSettings::vector_fields`, which cannot forget one).
fn namespace(e: &EmbedSettings) -> Vec<u8> {
    let mut out = e.vector_fields().join("\n").into_bytes();
    out.push(0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(model: &str) -> EmbedSettings {
        EmbedSettings {
            model: model.into(),
            dim: 4,
            urls: vec!["http://e/v1".into()],
            ..EmbedSettings::default()
        }
    }

    #[test]
    fn a_vector_comes_back_only_for_the_same_text_and_settings_and_eviction_drops_the_oldest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let at = CacheSettings {
            file: dir.path().join("c.redb"),
            max_bytes: 10 * (4 * 4 + 32 * 2 + 48),
        };
        let a = Cache::open(&settings("m1"), &at).expect("cache");
        let (k1, k2) = (a.key("one"), a.key("two"));
        a.put(&[(k1, &[1.0, 2.0, 3.0, 4.0]), (k2, &[5.0, 6.0, 7.0, 8.0])]);
        assert_eq!(
            a.get(&[k1, k2, a.key("three")]),
            vec![
                Some(vec![1.0, 2.0, 3.0, 4.0]),
                Some(vec![5.0, 6.0, 7.0, 8.0]),
                None
            ]
        );
        drop(a);
        // Another model: other keys, nothing found.
        let b = Cache::open(&settings("m2"), &at).expect("cache");
        assert_ne!(b.key("one"), k1);
        assert_eq!(b.get(&[b.key("one")]), vec![None]);
        // Past the bound, the oldest go.
        for i in 0..20 {
            b.put(&[(b.key(&format!("t{i}")), &[i as f32; 4])]);
        }
        let got = b.get(&[b.key("t0"), b.key("t19")]);
        assert_eq!(got, vec![None, Some(vec![19.0; 4])]);
        drop(b);
        let a = Cache::open(&settings("m1"), &at).expect("cache");
        assert_eq!(a.get(&[k1]), vec![None], "evicted");
        // A wrong length or a NaN is a miss.
        a.put(&[(k1, &[1.0, 2.0]), (k2, &[f32::NAN, 0.0, 0.0, 0.0])]);
        assert_eq!(a.get(&[k1, k2]), vec![None, None]);
    }

    /// Each setting that changes a vector, changed alone, misses the cache;
    /// and the list below covers every one `vector_fields` names, so a new
    /// one cannot go untested.
    #[test]
    fn each_setting_that_changes_vectors_is_a_cache_miss() {
        use crate::embed::settings::Purpose;
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("model.safetensors"), b"w").expect("write");
        let base = settings("m");
        let changed: Vec<(&str, EmbedSettings)> = vec![
            (
                "v1 provider",
                EmbedSettings {
                    provider: &crate::embed::providers::jina::JINA,
                    ..base.clone()
                },
            ),
            ("model", settings("m2")),
            (
                "dim",
                EmbedSettings {
                    dim: 8,
                    ..base.clone()
                },
            ),
            (
                "urls",
                EmbedSettings {
                    urls: vec!["http://other/v1".into()],
                    ..base.clone()
                },
            ),
            (
                "model_dir",
                EmbedSettings {
                    model_dir: Some("/elsewhere".into()),
                    ..base.clone()
                },
            ),
            (
                "model_files",
                EmbedSettings {
                    model_dir: Some(dir.path().into()),
                    ..base.clone()
                },
            ),
            (
                "truncate",
                EmbedSettings {
                    truncate: true,
                    ..base.clone()
                },
            ),
            (
                "send_dimensions",
                EmbedSettings {
                    send_dimensions: true,
                    ..base.clone()
                },
            ),
            (
                "asymmetric",
                EmbedSettings {
                    asymmetric: true,
                    ..base.clone()
                },
            ),
            (
                "document_prefix",
                EmbedSettings {
                    document_prefix: Some("passage: ".into()),
                    ..base.clone()
                },
            ),
            (
                "purpose",
                EmbedSettings {
                    purpose: Purpose::Query,
                    ..base.clone()
                },
            ),
            ("task", {
                let mut s = base.clone();
                s.options.task = Some("RETRIEVAL_DOCUMENT".into());
                s
            }),
            ("deployment", {
                let mut s = base.clone();
                s.options.deployment = Some("embed-prod".into());
                s
            }),
            ("api_version", {
                let mut s = base.clone();
                s.options.api_version = Some("2024-10-21".into());
                s
            }),
        ];
        let named: Vec<String> = base
            .vector_fields()
            .iter()
            .filter_map(|f| f.split_once('=').map(|(n, _)| n.to_string()))
            .collect();
        let tested: Vec<&str> = changed.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            named, tested,
            "every vector-changing setting has a case here"
        );
        let at = CacheSettings {
            file: dir.path().join("c.redb"),
            max_bytes: 1 << 20,
        };
        {
            let c = Cache::open(&base, &at).expect("cache");
            c.put(&[(c.key("text"), &[1.0; 4])]);
            assert_eq!(c.get(&[c.key("text")]), vec![Some(vec![1.0; 4])]);
        }
        for (name, other) in &changed {
            assert_ne!(namespace(other), namespace(&base), "{name}");
            let c = Cache::open(other, &at).expect("cache");
            assert_eq!(c.get(&[c.key("text")]), vec![None], "{name}: a miss");
        }
        // What only says how requests go is the same key.
        let same = EmbedSettings {
            concurrency: 64,
            batch_size: 7,
            query_prefix: Some("query: ".into()),
            ..base.clone()
        };
        assert_eq!(namespace(&same), namespace(&base));
    }

    /// The key's bytes are those earlier versions wrote: a cache kept
    /// across an upgrade still answers (a changed key pays again).
    #[test]
    fn the_settings_part_of_the_key_is_unchanged_from_earlier_versions() {
        let want = "v1 provider=openai\nmodel=m\ndim=4\nurls=http://e/v1\nmodel_dir=None\n\
                    model_files=\ntruncate=false\nsend_dimensions=false\nasymmetric=false\n\
                    document_prefix=None\npurpose=Document\ntask=None\ndeployment=None\n\
                    api_version=None\0";
        assert_eq!(String::from_utf8_lossy(&namespace(&settings("m"))), want);
    }

    #[test]
    fn new_weights_in_the_same_model_folder_are_another_model() {
        let dir = tempfile::tempdir().expect("tempdir");
        let weights = dir.path().join("model.safetensors");
        std::fs::write(&weights, b"weights one").expect("write");
        let local = |d: &Path| EmbedSettings {
            model_dir: Some(d.to_path_buf()),
            ..settings("local")
        };
        let before = namespace(&local(dir.path()));
        assert_eq!(before, namespace(&local(dir.path())), "stable");
        std::fs::write(&weights, b"other weights, longer").expect("write");
        assert_ne!(before, namespace(&local(dir.path())));
    }

    #[test]
    fn an_unreadable_file_is_set_aside_and_a_new_one_started() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("c.redb");
        std::fs::write(&file, b"not a redb file at all, just bytes").expect("write");
        let at = CacheSettings {
            file: file.clone(),
            max_bytes: 1 << 20,
        };
        let c = Cache::open(&settings("m"), &at).expect("a new cache");
        let k = c.key("x");
        c.put(&[(k, &[1.0; 4])]);
        assert_eq!(c.get(&[k]), vec![Some(vec![1.0; 4])]);
        let aside = std::fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains("corrupt"))
            .count();
        assert_eq!(aside, 1);
    }
}
