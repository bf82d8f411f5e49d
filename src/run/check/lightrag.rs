//! A LightRAG workspace against its three vector stores (`check
//! --lightrag-dir`): chunks of the text-chunk store and entities and
//! relations of the graph without a vector or with a vector of another
//! text, and vectors whose chunk, entity or relation is gone (LightRAG
//! issues #2917, #2941, #3997). `--repair` deletes the vectors of nothing
//! and re-embeds the rest through `reembed`, from the workspace's own
//! files: what was there with its text is not paid for again.
//!
//! The chunk store is LightRAG's JSON KV file and the graph its NetworkX
//! GraphML file (LightRAG's defaults); ids and texts are LightRAG 1.5.7's
//! (`source::lightrag::graph`).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use serde::Serialize;

use super::Repair;
use crate::embed::settings::EmbedSettings;
use crate::layout::Namespace;
use crate::records::content_hash;
use crate::settings::ProgressMode;
use crate::source::from::FromSpec;
use crate::source::lightrag::graph;
use crate::store::Target;

pub const CHUNKS_FILE: &str = "kv_store_text_chunks.json";
pub use graph::GRAPH_FILE;
const EXAMPLES: usize = 10;
const PAGE: usize = 500;

/// What `--lightrag-dir` compares: the folder and the three vector stores.
pub struct Workspace {
    pub dir: PathBuf,
    pub chunks: Arc<dyn Target>,
    pub entities: Arc<dyn Target>,
    pub relations: Arc<dyn Target>,
}

#[derive(Debug, Default, Serialize)]
pub struct Drift {
    pub chunks: Side,
    pub entities: Side,
    pub relations: Side,
}

/// One namespace: what the workspace has, what the vector store has.
#[derive(Debug, Default, Serialize)]
pub struct Side {
    /// In the chunk store or the graph.
    pub in_workspace: u64,
    pub vectors: u64,
    /// In the workspace with no vector: invisible to queries.
    pub without_vector: u64,
    /// With a vector of another text (the graph's description changed and
    /// the vector store missed it): queries find it by its old text.
    pub stale: u64,
    /// Vectors of what the workspace no longer has: queries find them and
    /// LightRAG cannot resolve them.
    pub vectors_of_nothing: u64,
    pub examples: Vec<String>,
    /// The ids of the vectors of nothing, for `--repair`.
    #[serde(skip)]
    orphans: Vec<String>,
    /// Relation ids the store holds in the other order (older LightRAG).
    #[serde(skip)]
    reverse: HashSet<String>,
}

impl Side {
    fn needs_repair(&self) -> bool {
        self.without_vector + self.stale + self.vectors_of_nothing > 0
    }
}

impl Drift {
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (what, s) in [
            ("chunks", &self.chunks),
            ("entities", &self.entities),
            ("relations", &self.relations),
        ] {
            if s.without_vector > 0 {
                out.push(format!(
                    "{} of the workspace's {} {what} have no vector (queries never find them)",
                    s.without_vector, s.in_workspace
                ));
            }
            if s.stale > 0 {
                out.push(format!(
                    "{} {what} have a vector of another text than the workspace's \
                     (queries find them by what they used to say)",
                    s.stale
                ));
            }
            if s.vectors_of_nothing > 0 {
                out.push(format!(
                    "{} {what} vectors belong to nothing the workspace still has",
                    s.vectors_of_nothing
                ));
            }
        }
        out
    }
}

pub async fn check(w: &Workspace, tenant: &str) -> Result<Drift> {
    let chunks = read_chunks(&w.dir.join(CHUNKS_FILE), tenant).await?;
    let g = graph::read(&w.dir.join(GRAPH_FILE))?;
    let entities: Vec<Wanted> = g
        .entities
        .iter()
        .map(|e| Wanted {
            id: e.id(),
            other: None,
            label: format!("entity {:?}", e.name),
            hash: content_hash(&e.text()),
        })
        .collect();
    let relations: Vec<Wanted> = g
        .relations
        .iter()
        .map(|r| Wanted {
            id: r.id(),
            other: Some(r.reverse_id()),
            label: format!("relation {:?} - {:?}", r.src, r.tgt),
            hash: content_hash(&r.text()),
        })
        .collect();
    Ok(Drift {
        chunks: compare(&chunks, stored(w.chunks.as_ref(), tenant).await?),
        entities: compare(&entities, stored(w.entities.as_ref(), tenant).await?),
        relations: compare(&relations, stored(w.relations.as_ref(), tenant).await?),
    })
}

/// One thing of the workspace: its vector's id, the other id it may be
/// stored under, what to call it in a report, and its text's hash.
struct Wanted {
    id: String,
    other: Option<String>,
    label: String,
    hash: String,
}

/// `wanted` against `stored` (id -> the hash of the stored text).
fn compare(wanted: &[Wanted], stored: HashMap<String, String>) -> Side {
    let mut s = Side {
        in_workspace: wanted.len() as u64,
        vectors: stored.len() as u64,
        ..Default::default()
    };
    let mut known = HashSet::new();
    for w in wanted {
        let held = match stored.get(&w.id) {
            Some(h) => Some(h),
            None => w.other.as_ref().and_then(|o| {
                let h = stored.get(o);
                if h.is_some() {
                    s.reverse.insert(o.clone());
                }
                h
            }),
        };
        match held {
            None => {
                s.without_vector += 1;
                if s.examples.len() < EXAMPLES {
                    s.examples
                        .push(format!("{} has no vector ({})", w.label, w.id));
                }
            }
            Some(h) if *h != w.hash => {
                s.stale += 1;
                if s.examples.len() < EXAMPLES {
                    s.examples.push(format!(
                        "{} has a vector of another text ({})",
                        w.label, w.id
                    ));
                }
            }
            Some(_) => {}
        }
        known.insert(w.id.as_str());
        if let Some(o) = &w.other {
            known.insert(o.as_str());
        }
    }
    for id in stored.keys() {
        if !known.contains(id.as_str()) {
            s.vectors_of_nothing += 1;
            if s.examples.len() < 2 * EXAMPLES {
                s.examples.push(format!("vector {id} belongs to nothing"));
            }
            s.orphans.push(id.clone());
        }
    }
    s
}

/// The tenant's stored ids and the hashes of their texts.
async fn stored(target: &dyn Target, tenant: &str) -> Result<HashMap<String, String>> {
    let mut reader = target.reader(Some(tenant.to_string()), PAGE, false).await?;
    let mut out = HashMap::new();
    while let Some(page) = reader.next_page().await? {
        out.extend(page.into_iter().map(|r| (r.id, content_hash(&r.content))));
    }
    Ok(out)
}

/// The chunks of LightRAG's JSON chunk store (streamed as `reembed` reads it).
async fn read_chunks(path: &std::path::Path, tenant: &str) -> Result<Vec<Wanted>> {
    let mut source =
        crate::source::lightrag::json::LightragSource::open(path, tenant.to_string(), PAGE)?;
    let mut out = Vec::new();
    while let Some(page) = crate::records::RowReader::next_page(&mut source).await? {
        out.extend(page.into_iter().map(|r| Wanted {
            label: format!("chunk {}", r.id),
            hash: content_hash(&r.content),
            id: r.id,
            other: None,
        }));
    }
    Ok(out)
}

/// `--repair` of a workspace: per namespace that drifted, its vectors of
/// nothing deleted, then what lacks a vector or holds another text's
/// re-embedded from the workspace's files (`reembed` into the store as it
/// is: rows it holds with the same text are not paid for).
pub async fn repair(
    w: &Workspace,
    drift: &Drift,
    tenant: &str,
    embed: &EmbedSettings,
    progress: ProgressMode,
) -> Result<Repair> {
    let mut r = Repair::default();
    for (ns, side, target) in [
        (Namespace::Chunks, &drift.chunks, &w.chunks),
        (Namespace::Entities, &drift.entities, &w.entities),
        (Namespace::Relationships, &drift.relations, &w.relations),
    ] {
        if !side.needs_repair() {
            continue;
        }
        if !side.orphans.is_empty() {
            let mut sink = target.sink(embed.dim);
            sink.prepare().await?;
            for ids in side.orphans.chunks(500) {
                r.rows_deleted += sink.delete(tenant, ids).await?;
            }
        }
        if side.without_vector + side.stale == 0 {
            continue;
        }
        let source = match ns {
            Namespace::Chunks => FromSpec::LightragJson {
                path: w.dir.join(CHUNKS_FILE),
            },
            _ => FromSpec::LightragGraph {
                path: w.dir.join(GRAPH_FILE),
                ns,
                reverse: Arc::new(side.reverse.clone()),
            },
        };
        let job = crate::run::reembed::ReembedJob {
            source,
            tenant: Some(tenant.to_string()),
            switch: None,
            prune: false,
            page_size: PAGE,
            report: None,
            progress,
            embed: embed.clone(),
            target: target.clone(),
            shard: None,
            prepare_only: false,
            step_shards: None,
            batch: None,
            batch_state: None,
            space_policy: crate::run::space::Policy::Probe,
            quality: crate::run::quality::QualitySettings::off(),
        };
        let done = crate::run::reembed::run(job, progress).await.map_err(|e| {
            e.0.context(format!("re-embedding the workspace's {}", ns_name(ns)))
        })?;
        r.embed_requests += done.embed_requests;
        r.cache_hits += done.cache_hits;
        r.vectors_written += done.reembedded;
        let error = done.error.clone().or_else(|| {
            (done.failed_chunks > 0 || !done.verified).then(|| {
                format!(
                    "{} of the {} were not written{}",
                    done.failed_chunks,
                    ns_name(ns),
                    if done.problems.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", done.problems.join("; "))
                    }
                )
            })
        });
        if let Some(e) = error {
            r.error = Some(match r.error.take() {
                Some(before) => format!("{before}; {e}"),
                None => e,
            });
        }
    }
    Ok(r)
}

fn ns_name(ns: Namespace) -> &'static str {
    match ns {
        Namespace::Chunks => "chunks",
        Namespace::Entities => "entities",
        Namespace::Relationships => "relations",
    }
}

/// The namespaces a workspace check needs targets for.
pub const NAMESPACES: [Namespace; 3] = [
    Namespace::Chunks,
    Namespace::Entities,
    Namespace::Relationships,
];

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted(id: &str, other: Option<&str>, text: &str) -> Wanted {
        Wanted {
            id: id.into(),
            other: other.map(Into::into),
            label: format!("relation {id}"),
            hash: content_hash(text),
        }
    }

    #[test]
    fn a_relation_under_its_reverse_id_has_its_vector() {
        let w = vec![wanted("rel-ab", Some("rel-ba"), "t")];
        let s = compare(&w, HashMap::from([("rel-ba".into(), content_hash("t"))]));
        assert_eq!((s.without_vector, s.stale, s.vectors_of_nothing), (0, 0, 0));
        assert!(s.reverse.contains("rel-ba"));
        let s = compare(&w, HashMap::from([("rel-zz".into(), content_hash("t"))]));
        assert_eq!((s.without_vector, s.vectors_of_nothing), (1, 1));
        assert_eq!(s.orphans, vec!["rel-zz".to_string()]);
    }

    #[test]
    fn a_vector_of_another_text_is_stale() {
        let w = vec![wanted("ent-a", None, "A\nnew description")];
        let s = compare(
            &w,
            HashMap::from([("ent-a".into(), content_hash("A\nold"))]),
        );
        assert_eq!((s.without_vector, s.stale, s.vectors_of_nothing), (0, 1, 0));
        assert!(s.needs_repair());
    }
}
