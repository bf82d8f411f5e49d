//! LightRAG's knowledge graph as NetworkX's GraphML file leaves it
//! (`graph_chunk_entity_relation.graphml`, LightRAG's default graph store):
//! its entities and relations as the rows LightRAG 1.5.7 embeds for them
//! (`operate.py`, `_merge_nodes_then_upsert` / `_merge_edges_then_upsert`):
//!
//! - an entity: id `ent-` + md5(name), text `"{name}\n{description}"`;
//! - a relation: its two names smaller first (Python's string order, which
//!   is UTF-8's byte order), id `rel-` + md5(src + tgt), text
//!   `"{keywords}\t{src}\n{tgt}\n{description}"`.
//!
//! What `check --lightrag-dir` compares with the vector stores, and what
//! its `--repair` embeds again (through `reembed`, as any source).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use async_trait::async_trait;

use crate::layout::{Namespace, mdhash_id};
use crate::records::{Extra, RowReader, StoredRow as Row};

pub const GRAPH_FILE: &str = "graph_chunk_entity_relation.graphml";

#[derive(Debug, Default)]
pub struct Graph {
    pub entities: Vec<Entity>,
    pub relations: Vec<Relation>,
}

#[derive(Debug, Clone)]
pub struct Entity {
    pub name: String,
    pub description: String,
    /// The chunks it was extracted from, joined by "<SEP>".
    pub source_id: String,
    pub file_path: String,
    pub created_at: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct Relation {
    /// The smaller of the two names (LightRAG's vector record order).
    pub src: String,
    pub tgt: String,
    pub keywords: String,
    pub description: String,
    pub source_id: String,
    pub file_path: String,
    pub created_at: Option<i64>,
}

impl Entity {
    pub fn id(&self) -> String {
        mdhash_id(&self.name, "ent-")
    }

    pub fn text(&self) -> String {
        format!("{}\n{}", self.name, self.description)
    }

    fn row(&self, workspace: &str) -> Row {
        let extra = Extra {
            entity_name: Some(self.name.clone()),
            source_id: Some(self.source_id.clone()),
            created_at: self.created_at,
            ..Default::default()
        };
        graph_row(workspace, self.id(), &self.file_path, self.text(), extra)
    }
}

/// A graph record as the row `reembed` reads: LightRAG's id, text and
/// fields, in the workspace.
fn graph_row(workspace: &str, id: String, file_path: &str, content: String, extra: Extra) -> Row {
    Row {
        id,
        tenant: workspace.to_string(),
        doc_id: String::new(),
        source: file_path.to_string(),
        chunk_index: 0,
        content,
        tokens: None,
        extra: Some(extra),
        lightrag_id: true,
        page: None,
        vector: None,
    }
}

impl Relation {
    /// The id LightRAG 1.5.7 stores it under.
    pub fn id(&self) -> String {
        mdhash_id(&format!("{}{}", self.src, self.tgt), "rel-")
    }

    /// The id of the other order, which older LightRAG versions wrote and
    /// its deletes still look for.
    pub fn reverse_id(&self) -> String {
        mdhash_id(&format!("{}{}", self.tgt, self.src), "rel-")
    }

    pub fn text(&self) -> String {
        format!(
            "{}\t{}\n{}\n{}",
            self.keywords, self.src, self.tgt, self.description
        )
    }

    fn row(&self, workspace: &str, id: String) -> Row {
        let extra = Extra {
            src_id: Some(self.src.clone()),
            tgt_id: Some(self.tgt.clone()),
            source_id: Some(self.source_id.clone()),
            created_at: self.created_at,
            ..Default::default()
        };
        graph_row(workspace, id, &self.file_path, self.text(), extra)
    }
}

/// Reads the graph (no file: an empty graph, as LightRAG starts). An edge
/// given twice (a multigraph's) counts once.
pub fn read(path: &Path) -> Result<Graph> {
    use quick_xml::events::Event;
    if !path.exists() {
        return Ok(Graph::default());
    }
    let mut reader = quick_xml::Reader::from_file(path)
        .with_context(|| format!("cannot open the graph {}", path.display()))?;
    let mut graph = Graph::default();
    // GraphML's <key id="d3" for="node" attr.name="description">.
    let mut keys: HashMap<String, String> = HashMap::new();
    // The node or edge being read: its XML attributes and its <data>.
    let mut open: Option<(Element, HashMap<String, String>)> = None;
    let mut data: Option<String> = None;
    let mut text = String::new();
    let mut seen_edges = HashSet::new();
    let mut buf = Vec::new();
    loop {
        let event = reader
            .read_event_into(&mut buf)
            .with_context(|| format!("{} is not GraphML", path.display()))?;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(event, Event::Empty(_));
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
                match e.local_name().as_ref() {
                    "key" => {
                        if let (Some(id), Some(name)) = (attr("id"), attr("attr.name")) {
                            keys.insert(id, name);
                        }
                    }
                    "node" => {
                        let el = Element::Node(attr("id").unwrap_or_default());
                        open = Some((el, HashMap::new()));
                    }
                    "edge" => {
                        let el = Element::Edge(
                            attr("source").unwrap_or_default(),
                            attr("target").unwrap_or_default(),
                        );
                        open = Some((el, HashMap::new()));
                    }
                    "data" if !empty => {
                        data = attr("key").map(|k| keys.get(&k).cloned().unwrap_or(k));
                        text.clear();
                    }
                    _ => {}
                }
                if empty && matches!(e.local_name().as_ref(), "node" | "edge") {
                    close(&mut open, &mut graph, &mut seen_edges);
                }
            }
            Event::Text(t) if data.is_some() => text.push_str(&t.xml10_content()),
            Event::CData(t) if data.is_some() => text.push_str(&t.into_inner()),
            Event::GeneralRef(r) if data.is_some() => {
                if let Ok(Some(c)) = r.resolve_char_ref() {
                    text.push(c);
                } else if let Some(s) =
                    quick_xml::escape::resolve_predefined_entity(&r.xml10_content())
                {
                    text.push_str(s);
                }
            }
            Event::End(e) => match e.local_name().as_ref() {
                "data" => {
                    if let (Some(name), Some((_, attrs))) = (data.take(), open.as_mut()) {
                        attrs.insert(name, std::mem::take(&mut text));
                    }
                }
                "node" | "edge" => close(&mut open, &mut graph, &mut seen_edges),
                _ => {}
            },
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    Ok(graph)
}

enum Element {
    Node(String),
    Edge(String, String),
}

fn close(
    open: &mut Option<(Element, HashMap<String, String>)>,
    graph: &mut Graph,
    seen_edges: &mut HashSet<(String, String)>,
) {
    let Some((el, mut a)) = open.take() else {
        return;
    };
    let mut take = |k: &str| a.remove(k).unwrap_or_default();
    match el {
        Element::Node(name) if !name.is_empty() => graph.entities.push(Entity {
            description: take("description"),
            source_id: take("source_id"),
            file_path: take("file_path"),
            created_at: take("created_at").trim().parse().ok(),
            name,
        }),
        Element::Edge(a, b) if !a.is_empty() && !b.is_empty() => {
            let (src, tgt) = if a > b { (b, a) } else { (a, b) };
            if seen_edges.insert((src.clone(), tgt.clone())) {
                graph.relations.push(Relation {
                    keywords: take("keywords"),
                    description: take("description"),
                    source_id: take("source_id"),
                    file_path: take("file_path"),
                    created_at: take("created_at").trim().parse().ok(),
                    src,
                    tgt,
                });
            }
        }
        _ => {}
    }
}

/// The graph's entities or relations of one workspace, as a source:
/// what `check --lightrag-dir --repair` re-embeds through `reembed`.
pub struct GraphSource {
    describe: String,
    rows: std::vec::IntoIter<Row>,
    total: u64,
    tenant: String,
    page: usize,
}

impl GraphSource {
    /// `reverse`: relation ids the store holds in the other order; their
    /// rows keep that id, so a vector that is there is not paid for again.
    pub fn open(
        path: &Path,
        ns: Namespace,
        workspace: String,
        reverse: &HashSet<String>,
        page: usize,
    ) -> Result<GraphSource> {
        let graph = read(path)?;
        let rows: Vec<Row> = match ns {
            Namespace::Entities => graph.entities.iter().map(|e| e.row(&workspace)).collect(),
            Namespace::Relationships => graph
                .relations
                .iter()
                .map(|r| {
                    let rev = r.reverse_id();
                    let id = if reverse.contains(&rev) { rev } else { r.id() };
                    r.row(&workspace, id)
                })
                .collect(),
            Namespace::Chunks => {
                anyhow::bail!("the graph holds entities and relations, not chunks")
            }
        };
        let what = if ns == Namespace::Entities {
            "entities"
        } else {
            "relations"
        };
        Ok(GraphSource {
            describe: format!("the {what} of LightRAG's graph {}", path.display()),
            total: rows.len() as u64,
            rows: rows.into_iter(),
            tenant: workspace,
            page: page.max(1),
        })
    }
}

#[async_trait]
impl RowReader for GraphSource {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    async fn next_page(&mut self) -> Result<Option<Vec<Row>>> {
        let page: Vec<Row> = self.rows.by_ref().take(self.page).collect();
        Ok((!page.is_empty()).then_some(page))
    }

    async fn counts(&mut self) -> Result<std::collections::BTreeMap<String, u64>> {
        Ok(std::collections::BTreeMap::from([(
            self.tenant.clone(),
            self.total,
        )]))
    }
}

/// The shared set of reverse ids, for `FromSpec`.
pub type Reverse = Arc<HashSet<String>>;

#[cfg(test)]
mod tests {
    use super::*;

    const GRAPHML: &str = r#"<?xml version='1.0' encoding='utf-8'?>
<graphml xmlns="http://graphml.graphdrawing.org/xmlns">
<key id="d0" for="node" attr.name="entity_id" attr.type="string" />
<key id="d1" for="node" attr.name="description" attr.type="string" />
<key id="d2" for="node" attr.name="source_id" attr.type="string" />
<key id="d3" for="edge" attr.name="description" attr.type="string" />
<key id="d4" for="edge" attr.name="keywords" attr.type="string" />
<key id="d5" for="edge" attr.name="created_at" attr.type="long" />
<graph edgedefault="undirected">
<node id="Alice &amp; Co"><data key="d0">Alice &amp; Co</data><data key="d1">A firm &lt;SEP&gt; old</data><data key="d2">chunk-1</data></node>
<node id="Bob" />
<edge source="Bob" target="Alice &amp; Co"><data key="d3">works at</data><data key="d4">job</data><data key="d5">1700000000</data></edge>
<edge source="Alice &amp; Co" target="Bob"><data key="d3">again</data></edge>
</graph></graphml>"#;

    #[test]
    fn entities_and_relations_are_read_with_lightrags_ids_and_texts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(GRAPH_FILE);
        std::fs::write(&path, GRAPHML).unwrap();
        let g = read(&path).unwrap();
        assert_eq!(g.entities.len(), 2);
        let alice = &g.entities[0];
        assert_eq!(alice.name, "Alice & Co");
        assert_eq!(alice.text(), "Alice & Co\nA firm <SEP> old");
        assert_eq!(alice.source_id, "chunk-1");
        assert_eq!(alice.id(), mdhash_id("Alice & Co", "ent-"));
        assert_eq!(g.entities[1].text(), "Bob\n");
        // One undirected edge, its names smaller first.
        assert_eq!(g.relations.len(), 1);
        let r = &g.relations[0];
        assert_eq!((r.src.as_str(), r.tgt.as_str()), ("Alice & Co", "Bob"));
        assert_eq!(r.text(), "job\tAlice & Co\nBob\nworks at");
        assert_eq!(r.created_at, Some(1_700_000_000));
        assert_eq!(r.id(), mdhash_id("Alice & CoBob", "rel-"));
        assert_eq!(r.reverse_id(), mdhash_id("BobAlice & Co", "rel-"));
    }

    #[test]
    fn a_relation_stored_in_the_other_order_keeps_that_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(GRAPH_FILE);
        std::fs::write(&path, GRAPHML).unwrap();
        let rev = HashSet::from([mdhash_id("BobAlice & Co", "rel-")]);
        let mut s =
            GraphSource::open(&path, Namespace::Relationships, "ws".into(), &rev, 10).unwrap();
        let page = futures::executor::block_on(s.next_page()).unwrap().unwrap();
        assert_eq!(page[0].id, mdhash_id("BobAlice & Co", "rel-"));
        assert_eq!(page[0].tenant, "ws");
    }
}
