//! LightRAG's own chunk stores, read back for `reembed`: its JSON key-value
//! file (`kv_store_text_chunks.json`) and its Redis chunk store. Its
//! PostgreSQL chunk store (LIGHTRAG_DOC_CHUNKS) is a table like any other:
//! the pgvector reader reads it, chosen by `source::from`.

pub mod json;
pub mod redis;
