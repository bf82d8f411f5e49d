//! LightRAG's own chunk stores, read back for `reembed`: its JSON key-value
//! file (`kv_store_text_chunks.json`) and its Redis chunk store; and its
//! GraphML graph, whose entities and relations `check --repair` re-embeds. Its
//! PostgreSQL chunk store (LIGHTRAG_DOC_CHUNKS) is a table like any other:
//! the pgvector reader reads it, chosen by `source::from`.

pub mod graph;
pub mod json;
pub mod redis;
