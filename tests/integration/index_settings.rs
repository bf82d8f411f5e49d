//! The vector index's build settings, from flags or the RAG API's .env
//! (POSTGRES_VECTOR_INDEX_TYPE, POSTGRES_HNSW_M, POSTGRES_HNSW_EF,
//! POSTGRES_IVFFLAT_LISTS) and Qdrant's HNSW flags, as the real stores
//! report the index they built.

use crate::common::qdrant::qdrant;
use crate::common::*;

const DIM: usize = 16;

fn index_defs(db: &Db, table: &str) -> Vec<String> {
    db.query(
        "SELECT indexdef FROM pg_indexes WHERE tablename = $1
           AND (indexdef LIKE '%USING hnsw%' OR indexdef LIKE '%USING ivfflat%')",
        &[&table],
    )
    .iter()
    .map(|r| r.get(0))
    .collect()
}

#[test]
fn the_rag_apis_index_settings_build_the_index_they_name() {
    let Some(pg) = pg_url("index settings pgvector") else {
        return;
    };
    let server = EmbedServer::start(&["--dim", &DIM.to_string()]);
    let db = Db::connect(&pg);

    let table = unique_table("ix_ivf");
    let out = run(load_cmd(&server, &pg, &table, DIM)
        .arg(fixtures())
        .env("POSTGRES_VECTOR_INDEX_TYPE", "IVFFLAT")
        .env("POSTGRES_IVFFLAT_LISTS", "7"));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let defs = index_defs(&db, &table);
    assert_eq!(defs.len(), 1, "{defs:?}");
    assert!(
        defs[0].contains("USING ivfflat") && defs[0].contains("lists='7'"),
        "{defs:?}"
    );

    let table = unique_table("ix_hnsw");
    let out = run(load_cmd(&server, &pg, &table, DIM).arg(fixtures()).args([
        "--hnsw-m",
        "8",
        "--hnsw-ef-construction",
        "40",
    ]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let defs = index_defs(&db, &table);
    assert!(
        defs[0].contains("m='8'") && defs[0].contains("ef_construction='40'"),
        "{defs:?}"
    );

    // HNSW_HALFVEC: a halfvec column and its index, as LightRAG makes them.
    let table = unique_table("ix_half");
    let out = run(load_cmd(&server, &pg, &table, DIM)
        .arg(fixtures())
        .env("POSTGRES_VECTOR_INDEX_TYPE", "HNSW_HALFVEC"));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(index_defs(&db, &table)[0].contains("halfvec_cosine_ops"));

    // Refused before anything is sent: VCHORDRQ, an unknown type, m out of
    // pgvector's bounds, ef_construction under 2 x m.
    let sent = server.requests();
    for (k, v, says) in [
        ("POSTGRES_VECTOR_INDEX_TYPE", "VCHORDRQ", "vchordrq"),
        ("POSTGRES_VECTOR_INDEX_TYPE", "DISKANN", "not known"),
        ("POSTGRES_HNSW_M", "1", "2 to 100"),
        ("POSTGRES_HNSW_EF", "20", "2 x m"),
    ] {
        let table = unique_table("ix_bad");
        let out = run(load_cmd(&server, &pg, &table, DIM)
            .arg(fixtures())
            .env(k, v));
        assert_eq!(out.code, 2, "{k}={v}: {}", out.stderr);
        assert!(
            out.stderr.contains(says) && out.stderr.contains(k),
            "{}",
            out.stderr
        );
        assert!(!db.table_exists(&table));
    }
    assert_eq!(server.requests(), sent);
}

#[test]
fn qdrant_hnsw_settings_are_the_collections() {
    let Some(q) = qdrant("index settings qdrant") else {
        return;
    };
    let server = EmbedServer::start(&["--dim", &DIM.to_string()]);
    let collection = unique_table("ix_q");
    let out = run(qdrant_load_cmd(&server, q, &collection, DIM)
        .arg(fixtures())
        .args(["--qdrant-hnsw-m", "8", "--qdrant-ef-construct", "50"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let hnsw = q
        .client()
        .info(&collection)
        .config
        .and_then(|c| c.hnsw_config)
        .expect("HNSW settings");
    assert_eq!(hnsw.m, Some(8), "restored after the load's bulk mode");
    assert_eq!(hnsw.ef_construct, Some(50));
}
