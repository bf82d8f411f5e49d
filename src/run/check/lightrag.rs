//! A LightRAG workspace against its three vector stores (`check
//! --lightrag-dir`): chunks of the text-chunk store without a vector,
//! entities and relations of the graph without one, and vectors whose
//! chunk, entity or relation is gone (LightRAG issues #2917, #2941, #3997).
//!
//! The chunk store is LightRAG's JSON KV file and the graph its NetworkX
//! GraphML file (LightRAG's defaults); ids are LightRAG 1.5.7's: the chunk's
//! key, `ent-` + md5(name), `rel-` + md5 of the two names, smaller first
//! (the reverse order is accepted too, as LightRAG's deletes do).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::layout::{Namespace, mdhash_id};
use crate::store::Target;

pub const CHUNKS_FILE: &str = "kv_store_text_chunks.json";
pub const GRAPH_FILE: &str = "graph_chunk_entity_relation.graphml";
const EXAMPLES: usize = 10;

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
    /// Vectors of what the workspace no longer has: queries find them and
    /// LightRAG cannot resolve them.
    pub vectors_of_nothing: u64,
    pub examples: Vec<String>,
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
    let chunk_ids = read_chunk_keys(&w.dir.join(CHUNKS_FILE))?;
    let (entities, relations) = read_graph(&w.dir.join(GRAPH_FILE))?;
    let relation_ids: Vec<Wanted> = relations
        .iter()
        .map(|(a, b)| {
            let (a, b) = if a > b { (b, a) } else { (a, b) };
            (
                mdhash_id(&format!("{a}{b}"), "rel-"),
                Some(mdhash_id(&format!("{b}{a}"), "rel-")),
                format!("relation {a:?} - {b:?}"),
            )
        })
        .collect();
    let chunk_ids: Vec<Wanted> = chunk_ids
        .into_iter()
        .map(|k| (k.clone(), None, format!("chunk {k}")))
        .collect();
    let entity_ids: Vec<Wanted> = entities
        .iter()
        .map(|e| (mdhash_id(e, "ent-"), None, format!("entity {e:?}")))
        .collect();
    let drift = Drift {
        chunks: compare(&chunk_ids, ids(w.chunks.as_ref(), tenant).await?),
        entities: compare(&entity_ids, ids(w.entities.as_ref(), tenant).await?),
        relations: compare(&relation_ids, ids(w.relations.as_ref(), tenant).await?),
    };
    Ok(drift)
}

/// One thing of the workspace: its vector's id, the other id it may be
/// stored under, and what to call it in a report.
type Wanted = (String, Option<String>, String);

/// `wanted` against `stored`.
fn compare(wanted: &[Wanted], stored: HashSet<String>) -> Side {
    let mut s = Side {
        in_workspace: wanted.len() as u64,
        vectors: stored.len() as u64,
        ..Default::default()
    };
    let mut known = HashSet::new();
    for (id, other, label) in wanted {
        let has = stored.contains(id) || other.as_ref().is_some_and(|o| stored.contains(o));
        if !has {
            s.without_vector += 1;
            if s.examples.len() < EXAMPLES {
                s.examples.push(format!("{label} has no vector ({id})"));
            }
        }
        known.insert(id.as_str());
        if let Some(o) = other {
            known.insert(o.as_str());
        }
    }
    for id in &stored {
        if !known.contains(id.as_str()) {
            s.vectors_of_nothing += 1;
            if s.examples.len() < 2 * EXAMPLES {
                s.examples.push(format!("vector {id} belongs to nothing"));
            }
        }
    }
    s
}

async fn ids(target: &dyn Target, tenant: &str) -> Result<HashSet<String>> {
    let mut reader = target.reader(Some(tenant.to_string()), 1000, false).await?;
    let mut out = HashSet::new();
    while let Some(page) = reader.next_page().await? {
        out.extend(page.into_iter().map(|r| r.id));
    }
    Ok(out)
}

/// The keys of LightRAG's JSON chunk store, values skipped unread.
fn read_chunk_keys(path: &Path) -> Result<HashSet<String>> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("--lightrag-dir: cannot open {}", path.display()))?;
    let map: std::collections::HashMap<String, serde::de::IgnoredAny> =
        serde_json::from_reader(std::io::BufReader::new(file))
            .with_context(|| format!("{} is not LightRAG's JSON chunk store", path.display()))?;
    Ok(map.into_keys().collect())
}

/// A graph's node ids and its edges (source, target).
type Graph = (HashSet<String>, Vec<(String, String)>);

/// The node ids and edges of NetworkX's GraphML file (no file: an empty
/// graph, as LightRAG starts).
fn read_graph(path: &Path) -> Result<Graph> {
    use quick_xml::events::Event;
    if !path.exists() {
        return Ok(Default::default());
    }
    let mut reader = quick_xml::Reader::from_file(path)
        .with_context(|| format!("--lightrag-dir: cannot open {}", path.display()))?;
    let (mut nodes, mut edges) = (HashSet::new(), Vec::new());
    let mut buf = Vec::new();
    loop {
        match reader
            .read_event_into(&mut buf)
            .with_context(|| format!("{} is not GraphML", path.display()))?
        {
            Event::Start(e) | Event::Empty(e) => {
                let attr = |name: &str| -> Option<String> {
                    e.attributes()
                        .flatten()
                        .find(|a| a.key.as_ref() == name)
                        .and_then(|a| {
                            quick_xml::escape::unescape(&a.value)
                                .ok()
                                .map(|v| v.into_owned())
                        })
                };
                match e.name().as_ref() {
                    "node" => nodes.extend(attr("id")),
                    "edge" => {
                        if let (Some(s), Some(t)) = (attr("source"), attr("target")) {
                            edges.push((s, t));
                        }
                    }
                    _ => {}
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    Ok((nodes, edges))
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

    #[test]
    fn graphml_nodes_and_edges_are_read() {
        let dir = std::env::temp_dir().join(format!("vecload-graphml-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(GRAPH_FILE);
        std::fs::write(
            &path,
            r#"<?xml version='1.0' encoding='utf-8'?>
<graphml xmlns="http://graphml.graphdrawing.org/xmlns"><graph edgedefault="undirected">
<node id="Alice &amp; Co"><data key="d0">x</data></node><node id="Bob" />
<edge source="Bob" target="Alice &amp; Co"><data key="d1">y</data></edge>
</graph></graphml>"#,
        )
        .unwrap();
        let (nodes, edges) = read_graph(&path).unwrap();
        assert!(nodes.contains("Alice & Co") && nodes.contains("Bob"));
        assert_eq!(edges, vec![("Bob".to_string(), "Alice & Co".to_string())]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_relation_under_its_reverse_id_has_its_vector() {
        let wanted = vec![(
            "rel-ab".to_string(),
            Some("rel-ba".to_string()),
            "relation a - b".to_string(),
        )];
        let s = compare(&wanted, HashSet::from(["rel-ba".to_string()]));
        assert_eq!((s.without_vector, s.vectors_of_nothing), (0, 0));
        let s = compare(&wanted, HashSet::from(["rel-zz".to_string()]));
        assert_eq!((s.without_vector, s.vectors_of_nothing), (1, 1));
    }
}
