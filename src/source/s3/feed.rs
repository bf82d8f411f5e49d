//! The S3 feed of a load: lists a prefix page by page, decides per object
//! (filtered out, unsupported, too large, unchanged since the last run, or
//! to fetch), fetches at most `concurrency` objects at once into the spool
//! and hands each to the chunking pool as a file. Nothing is downloaded that
//! would be skipped anyway, and an object the state knows unchanged is not
//! downloaded at all.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use futures::{StreamExt, TryStreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Object, S3, S3Error, S3Root};
use crate::records::Skip;
use crate::report::Stats;
use crate::source::walk::{FileEntry, Filter};
use crate::source::{Format, format_name};

/// What the run's record knows of objects read before.
pub trait Known: Send + Sync {
    /// What is known of exactly this version of `object` (`s3://bucket/key`,
    /// ETag, size); None: fetch it.
    fn unchanged(&self, object: &str, etag: &str, size: u64) -> Option<KnownObject>;
}

/// An object not to fetch again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KnownObject {
    /// Loaded completely before: `chunks` chunks in `docs` documents.
    Loaded { chunks: u64, docs: u64 },
    /// Skipped before for a reason its bytes decide.
    Skipped {
        reason: &'static str,
        detail: String,
    },
}

/// A fetched object, to be read as a file. Its spool file goes when this
/// is dropped.
pub struct Fetched {
    pub entry: FileEntry,
    /// `s3://bucket/key`
    pub object: String,
    pub etag: String,
    pub size: u64,
}

impl Drop for Fetched {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.entry.path);
    }
}

/// The folder fetched objects wait in until they are read; removed with
/// whatever is left when dropped.
pub struct Spool {
    dir: PathBuf,
    n: AtomicU64,
}

impl Spool {
    pub fn new() -> anyhow::Result<Spool> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("vecload-s3-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| {
            anyhow::anyhow!(
                "cannot create the spool folder {}: {e} (set TMPDIR)",
                dir.display()
            )
        })?;
        Ok(Spool {
            dir,
            n: AtomicU64::new(0),
        })
    }

    /// A fresh file name keeping the object's extension (the extractors do
    /// not care, but a person looking into the folder does).
    fn file_for(&self, rel: &str) -> PathBuf {
        let n = self.n.fetch_add(1, Relaxed);
        let ext = rel
            .rsplit('/')
            .next()
            .and_then(|name| name.rsplit_once('.'))
            .map(|(_, e)| format!(".{e}"))
            .unwrap_or_default();
        self.dir.join(format!("{n}{ext}"))
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What the feed needs besides the bucket.
pub struct FeedCtx {
    pub filter: Arc<Filter>,
    pub max_bytes: u64,
    pub concurrency: usize,
    pub known: Option<Arc<dyn Known>>,
    pub stats: Arc<Stats>,
    pub cancel: CancellationToken,
    pub spool: Arc<Spool>,
    /// Stored paths (hashed) already taken by an earlier PATH of the run,
    /// and file names when LightRAG's layout needs them unique.
    pub taken: Arc<Mutex<Taken>>,
    /// A sharded run's shard and tenant: other shards' objects are not fetched.
    pub shard: Option<(crate::shard::Shard, String)>,
}

/// 64-bit hashes of the stored paths and file names a run has taken.
#[derive(Default)]
pub struct Taken {
    pub rels: HashSet<u64>,
    pub names: HashSet<u64>,
}

fn hash(s: &str) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(s)
}

enum Decision {
    Skip,
    Fetch(Object, String),
}

/// Streams `root` into `tx`. Errs when the listing itself fails (after its
/// retries): the rest of the prefix cannot be known.
pub async fn feed(
    s3: Arc<S3>,
    root: S3Root,
    ctx: Arc<FeedCtx>,
    tx: mpsc::Sender<Fetched>,
) -> anyhow::Result<()> {
    let pages = futures::stream::try_unfold(Some(None::<String>), |token| {
        let (s3, root) = (s3.clone(), root.clone());
        async move {
            let Some(token) = token else {
                return Ok::<_, S3Error>(None);
            };
            let page = s3
                .list(&root.bucket, &root.prefix, token.as_deref(), 1000)
                .await?;
            for bad in &page.bad_keys {
                tracing::warn!("s3://{}/{bad}: the key is not UTF-8; skipped", root.bucket);
            }
            let next = page.next.clone().map(Some);
            Ok(Some((page.objects, next)))
        }
    });
    let objects = pages
        .map_ok(|objs| futures::stream::iter(objs.into_iter().map(Ok::<Object, S3Error>)))
        .try_flatten();
    let fetches = objects
        .map(|o| {
            let (s3, root, ctx) = (s3.clone(), root.clone(), ctx.clone());
            async move {
                let o: Object = o?;
                if ctx.cancel.is_cancelled() {
                    return Ok::<_, S3Error>(None);
                }
                match decide(&root, o, &ctx) {
                    Decision::Skip => Ok(None),
                    Decision::Fetch(o, rel) => Ok(fetch(&s3, &root, o, rel, &ctx).await),
                }
            }
        })
        .buffer_unordered(ctx.concurrency.max(1));
    futures::pin_mut!(fetches);
    while let Some(next) = fetches.next().await {
        match next {
            Ok(Some(f)) => {
                if tx.send(f).await.is_err() {
                    break;
                }
            }
            Ok(None) => {}
            Err(e) => anyhow::bail!("listing {}: {e}", root.url()),
        }
        if ctx.cancel.is_cancelled() {
            break;
        }
    }
    Ok(())
}

/// What to do with one listed object; counts what is decided here.
fn decide(root: &S3Root, o: Object, ctx: &FeedCtx) -> Decision {
    let stats = &ctx.stats;
    // "Folders" some tools create as empty keys ending in `/`.
    if o.key.ends_with('/') {
        return Decision::Skip;
    }
    let rel = root.relative(&o.key);
    let Some(rel) = ctx.filter.accept(rel) else {
        return Decision::Skip;
    };
    if let Some((shard, tenant)) = &ctx.shard
        && !shard.owns(tenant, &rel)
    {
        Stats::add(&stats.files_other_shards, 1);
        return Decision::Skip;
    }
    let object = format!("s3://{}/{}", root.bucket, o.key);
    let skip = |reason, detail: String| {
        stats.skip(Skip {
            path: object.clone(),
            reason,
            detail,
        });
        Stats::add(&stats.files_read, 1);
    };
    Stats::add(&stats.files_seen, 1);
    Stats::add(&stats.files_to_read, 1);
    {
        let mut taken = ctx.taken.lock().unwrap_or_else(|p| p.into_inner());
        if !taken.rels.insert(hash(&rel)) {
            skip(
                "duplicate source path",
                format!(
                    "another PATH of this run has {rel:?} too; load them in separate runs with --source-prefix"
                ),
            );
            return Decision::Skip;
        }
        if ctx.filter.unique_file_names() {
            let name = rel.rsplit('/').next().unwrap_or(&rel);
            if !taken.names.insert(hash(name)) {
                skip(
                    "duplicate file name",
                    "LightRAG identifies a document by its file name, and another file has it too; \
                     rename one, or load it into another workspace"
                        .into(),
                );
                return Decision::Skip;
            }
        }
    }
    stats.count_format(format_name(&rel));
    if Format::of(&rel).is_none() {
        skip("unsupported type", "no reader for this file type".into());
        return Decision::Skip;
    }
    if o.size > ctx.max_bytes {
        skip(
            "too large",
            format!(
                "{} MiB is over --max-file-mb {}; raise the limit or split the file",
                o.size / (1024 * 1024),
                ctx.max_bytes / (1024 * 1024)
            ),
        );
        return Decision::Skip;
    }
    if o.size == 0 {
        skip("empty", "file is empty".into());
        return Decision::Skip;
    }
    match ctx
        .known
        .as_ref()
        .and_then(|k| k.unchanged(&object, &o.etag, o.size))
    {
        Some(KnownObject::Loaded { chunks: 0, .. }) => {
            skip("empty", "no text to chunk".into());
            return Decision::Skip;
        }
        Some(KnownObject::Loaded { chunks, docs }) => {
            Stats::add(&stats.chunks, chunks);
            Stats::add(&stats.chunks_unchanged, chunks);
            Stats::add(&stats.docs_unchanged, docs);
            Stats::add(&stats.files_with_chunks, 1);
            Stats::add(&stats.files_read, 1);
            return Decision::Skip;
        }
        Some(KnownObject::Skipped { reason, detail }) => {
            skip(reason, detail);
            return Decision::Skip;
        }
        None => {}
    }
    Decision::Fetch(o, rel)
}

/// Downloads one object into the spool; a failure is a skipped file.
async fn fetch(s3: &S3, root: &S3Root, o: Object, rel: String, ctx: &FeedCtx) -> Option<Fetched> {
    let path = ctx.spool.file_for(&rel);
    let object = format!("s3://{}/{}", root.bucket, o.key);
    let failed = |reason, detail: String| {
        let _ = std::fs::remove_file(&path);
        ctx.stats.skip(Skip {
            path: object.clone(),
            reason,
            detail,
        });
        Stats::add(&ctx.stats.files_read, 1);
        None
    };
    match s3
        .download(&root.bucket, &o.key, &path, ctx.max_bytes)
        .await
    {
        Ok(_) => Some(Fetched {
            entry: FileEntry { path, rel },
            object,
            etag: o.etag,
            size: o.size,
        }),
        Err(S3Error::Denied(m)) => failed(
            "access denied",
            format!("{m} (the role needs s3:GetObject)"),
        ),
        Err(S3Error::NoSuchKey(_)) => failed("gone", "deleted after it was listed".into()),
        Err(S3Error::TooLarge(max)) => failed(
            "too large",
            format!(
                "grew past --max-file-mb ({} MiB) after it was listed",
                max / (1024 * 1024)
            ),
        ),
        Err(e) => failed("unreadable", e.to_string()),
    }
}
