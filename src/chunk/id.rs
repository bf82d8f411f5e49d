//! Deterministic ids, so a rerun overwrites the same rows instead of adding new ones.

use sha2::{Digest, Sha256};

/// Chunk id: a UUID-shaped hash of tenant, document key and chunk index. UUID
/// form because Qdrant accepts only UUIDs or integers as point ids.
pub fn chunk_id(tenant: &str, doc_key: &str, index: u32) -> String {
    let mut h = Sha256::new();
    h.update(tenant.as_bytes());
    h.update([0]);
    h.update(doc_key.as_bytes());
    h.update([0]);
    h.update(index.to_be_bytes());
    let d = h.finalize();
    let x = hex::encode(&d[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &x[..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..32]
    )
}

/// Document id: the same for a path in every tenant, like LightRAG's
/// `doc-` + hash of the file path.
pub fn doc_id(doc_key: &str) -> String {
    format!(
        "doc-{}",
        hex::encode(&Sha256::digest(doc_key.as_bytes())[..16])
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_distinct() {
        let a = chunk_id("default", "docs/a.md", 0);
        assert_eq!(a, chunk_id("default", "docs/a.md", 0));
        assert_ne!(a, chunk_id("default", "docs/a.md", 1));
        assert_ne!(a, chunk_id("other", "docs/a.md", 0));
        assert_ne!(a, chunk_id("default", "docs/b.md", 0));
        assert_eq!(a.len(), 36);
        // Separator bytes keep ("ab","c") and ("a","bc") apart.
        assert_ne!(chunk_id("ab", "c", 0), chunk_id("a", "bc", 0));
    }
}
