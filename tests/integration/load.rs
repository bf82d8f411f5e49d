//! `vecload load` end to end: every stored vector belongs to its stored text,
//! reruns add nothing, tenants stay apart.

use std::collections::{BTreeMap, HashSet};

use crate::common::*;
use embedding_test_server::vector_for;
use pgvector::Vector;

const DIM: usize = 32;

fn assert_vectors_match_content(db: &Db, table: &str) -> usize {
    let rows = db.query(
        &format!("SELECT id, source, chunk_index, content, embedding FROM \"{table}\""),
        &[],
    );
    for r in &rows {
        let content: String = r.get(3);
        let v: Vector = r.get(4);
        let want = vector_for(&content, DIM);
        let got = v.to_vec();
        assert_eq!(got.len(), DIM);
        for (a, b) in got.iter().zip(&want) {
            assert!(
                (a - b).abs() < 1e-6,
                "row {} ({} chunk {}) holds a vector that is not the one for its content",
                r.get::<_, String>(0),
                r.get::<_, String>(1),
                r.get::<_, i32>(2)
            );
        }
    }
    rows.len()
}

#[test]
fn every_stored_vector_belongs_to_its_content_under_shuffled_responses() {
    let Some(pg) = pg_url("every_stored_vector_belongs_to_its_content") else {
        return;
    };
    let server = EmbedServer::start(&["--dim", "32", "--shuffle", "--latency-ms", "5"]);
    let table = unique_table("map");
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    // Small chunks and batches: many requests in flight, each answered out of order.
    let r = run(load_cmd(&server, &pg, &table, DIM)
        .arg(fixtures())
        .args([
            "--chunk-tokens",
            "120",
            "--chunk-overlap",
            "20",
            "--batch-size",
            "5",
            "--concurrency",
            "4",
        ])
        .arg("--report")
        .arg(&report));
    assert_eq!(r.code, 0, "a clean run exits 0");
    let rep = read_report(&report);
    let db = Db::connect(&pg);
    let rows = assert_vectors_match_content(&db, &table);
    assert!(
        rows > 40,
        "fixtures at 120 tokens give many chunks, got {rows}"
    );
    assert_eq!(rep["chunks"].as_u64(), Some(rows as u64));
    assert_eq!(rep["vectors_written"].as_u64(), Some(rows as u64));
    assert_eq!(rep["tenant_rows"].as_u64(), Some(rows as u64));
    assert_eq!(rep["files_loaded"].as_u64(), Some(8));
    assert!(rep["embed_requests"].as_u64().unwrap() >= (rows as u64).div_ceil(5));
    assert!(
        server.stats()["max_in_flight"].as_u64().unwrap() <= 4,
        "never more than --concurrency in flight"
    );

    // Stored layout: relative sources, chunk indexes 0..n per document, unique ids.
    let all = db.query(
        &format!("SELECT tenant_id, id, doc_id, source, chunk_index, content, content_hash FROM \"{table}\""),
        &[],
    );
    let mut by_doc: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    let mut ids = HashSet::new();
    for r in &all {
        let tenant: String = r.get(0);
        let source: String = r.get(3);
        let content: String = r.get(5);
        assert_eq!(tenant, "default");
        assert!(
            !source.starts_with('/') && !source.contains("fixtures"),
            "source {source} is relative to PATH"
        );
        assert!(!content.trim().is_empty(), "no empty chunk stored");
        assert_eq!(content.trim(), content, "chunks are trimmed");
        assert!(ids.insert(r.get::<_, String>(1)), "ids are unique");
        let hash: String = r.get(6);
        assert_eq!(hash, vecload::records::content_hash(&content));
        by_doc
            .entry(r.get::<_, String>(2))
            .or_default()
            .push(r.get(4));
    }
    for (doc, mut idx) in by_doc {
        idx.sort();
        assert_eq!(
            idx,
            (0..idx.len() as i32).collect::<Vec<_>>(),
            "chunk indexes of {doc} are 0..n"
        );
    }
    // The HTML page is stored as visible text only.
    let html: Vec<String> = db
        .query(
            &format!(
                "SELECT content FROM \"{table}\" WHERE source = 'web/rust-book-ownership.html'"
            ),
            &[],
        )
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(html.len() > 3);
    let joined = html.join("\n");
    assert!(joined.contains("Ownership is a set of rules"));
    assert!(
        !joined.contains("<script")
            && !joined.contains("</div>")
            && !joined.contains("window.playground")
    );
    // CJK text arrives whole (a split character would not be valid UTF-8 in PostgreSQL at all).
    let zh: String = db.query(
        &format!(
            "SELECT string_agg(content, '') FROM \"{table}\" WHERE source = 'zh/向量检索简介.txt'"
        ),
        &[],
    )[0]
    .get(0);
    assert!(zh.contains("绝不能把一个汉字的字节拆到两个块中"), "{zh}");
    // JSON records: each its own document; the record without text is left out.
    let sources: HashSet<String> = all.iter().map(|r| r.get(3)).collect();
    for s in [
        "data/faq.json#0",
        "data/faq.json#1",
        "data/announcement.json",
        "data/tickets.jsonl#4",
    ] {
        assert!(sources.contains(s), "{s} missing from {sources:?}");
    }
    assert!(!sources.contains("data/faq.json#2"));
    // The vector index was built after the load.
    let idx: i64 = db.query("SELECT count(*) FROM pg_indexes WHERE tablename = $1 AND indexdef LIKE '%hnsw%vector_cosine_ops%'", &[&table])[0].get(0);
    assert_eq!(idx, 1, "one HNSW cosine index");
}

#[test]
fn rerun_adds_no_rows_and_without_state_the_store_is_the_record() {
    let Some(pg) = pg_url("rerun_adds_no_rows") else {
        return;
    };
    let server = EmbedServer::start(&["--dim", "32"]);
    let table = unique_table("rerun");
    let args = ["--chunk-tokens", "200", "--chunk-overlap", "20"];
    assert_eq!(
        run(load_cmd(&server, &pg, &table, DIM)
            .arg(fixtures())
            .args(args))
        .code,
        0
    );
    let db = Db::connect(&pg);
    let first = table_rows(&db, &table);
    let before = chrono_free::max_updated(&db, &table);
    let sent = server.requests();

    // With the state file: nothing to do, nothing paid, nothing touched.
    let r = run(load_cmd(&server, &pg, &table, DIM)
        .arg(fixtures())
        .args(args));
    assert_eq!(r.code, 0);
    assert_eq!(
        server.requests(),
        sent,
        "an unchanged rerun sends no request"
    );
    assert_eq!(table_rows(&db, &table), first);
    assert_eq!(chrono_free::max_updated(&db, &table), before);

    // Without it (a new machine): the store is the record, so nothing is
    // paid for again either.
    let r = run(load_cmd(&server, &pg, &table, DIM)
        .arg(fixtures())
        .args(args)
        .arg("--no-state"));
    assert_eq!(r.code, 0);
    assert_eq!(server.requests(), sent, "{}", r.stdout);
    assert_eq!(table_rows(&db, &table), first);

    // Rows gone from the store, or holding other text, are embedded again
    // onto the same ids; only those.
    db.execute(&format!(
        "DELETE FROM \"{table}\" WHERE id IN (SELECT id FROM \"{table}\" ORDER BY id LIMIT 3)"
    ));
    db.execute(&format!(
        "UPDATE \"{table}\" SET content_hash = 'stale' WHERE id = (SELECT max(id) FROM \"{table}\")"
    ));
    let inputs = server.stats()["inputs"].as_u64().unwrap_or(0);
    let r = run(load_cmd(&server, &pg, &table, DIM)
        .arg(fixtures())
        .args(args)
        .arg("--no-state"));
    assert_eq!(r.code, 0);
    assert_eq!(server.stats()["inputs"].as_u64().unwrap_or(0) - inputs, 4);
    assert_eq!(
        table_rows(&db, &table),
        first,
        "the same ids and vectors, no duplicates"
    );
    assert!(
        chrono_free::max_updated(&db, &table) > before,
        "rows were rewritten"
    );
    assert_vectors_match_content(&db, &table);
}

#[test]
fn per_tenant_backfill_leaves_other_tenants_untouched() {
    let Some(pg) = pg_url("per_tenant_backfill") else {
        return;
    };
    let server = EmbedServer::start(&["--dim", "32"]);
    let table = unique_table("tenants");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.md"),
        "Shared handbook text, first edition.",
    )
    .unwrap();
    assert_eq!(
        run(load_cmd(&server, &pg, &table, DIM)
            .arg(dir.path())
            .args(["--tenant", "acme"]))
        .code,
        0
    );
    // TENANT_ID from the environment, as the RAG API's .env sets it.
    assert_eq!(
        run(load_cmd(&server, &pg, &table, DIM)
            .arg(dir.path())
            .env("TENANT_ID", "globex"))
        .code,
        0
    );
    let db = Db::connect(&pg);
    let snapshot = |t: &str| -> Vec<(String, String, String)> {
        db.query(
            &format!("SELECT id, content, updated_at::text FROM \"{table}\" WHERE tenant_id = $1 ORDER BY id"),
            &[&t],
        )
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
    };
    let globex = snapshot("globex");
    assert_eq!(globex.len(), 1);
    assert_ne!(
        snapshot("acme")[0].0,
        globex[0].0,
        "the same file gets different ids per tenant"
    );

    std::fs::write(
        dir.path().join("a.md"),
        "Shared handbook text, second edition for acme.",
    )
    .unwrap();
    assert_eq!(
        run(load_cmd(&server, &pg, &table, DIM)
            .arg(dir.path())
            .args(["--tenant", "acme"]))
        .code,
        0
    );
    assert_eq!(
        snapshot("globex"),
        globex,
        "a backfill of acme did not touch globex"
    );
    assert!(snapshot("acme")[0].1.contains("second edition"));
    assert_eq!(db.count(&table), 2);
}

#[test]
fn include_and_exclude_globs_choose_the_files() {
    let Some(pg) = pg_url("include_and_exclude_globs") else {
        return;
    };
    let server = EmbedServer::start(&["--dim", "32"]);
    let table = unique_table("globs");
    let r = run(load_cmd(&server, &pg, &table, DIM).arg(fixtures()).args([
        "--include",
        "**/*.md",
        "--include",
        "**/*.markdown",
        "--exclude",
        "zh",
    ]));
    assert_eq!(r.code, 0);
    let db = Db::connect(&pg);
    let sources: HashSet<String> = db
        .query(&format!("SELECT DISTINCT source FROM \"{table}\""), &[])
        .iter()
        .map(|r| r.get(0))
        .collect();
    let want: HashSet<String> = ["guides/reindex-runbook.md", "guides/tenancy.markdown"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(sources, want);
}

/// updated_at compared as text avoids a chrono dependency just for tests.
mod chrono_free {
    use super::Db;
    pub type Ts = String;
    pub fn max_updated(db: &Db, table: &str) -> Ts {
        db.query(
            &format!(
                "SELECT to_char(max(updated_at), 'YYYY-MM-DD HH24:MI:SS.US') FROM \"{table}\""
            ),
            &[],
        )[0]
        .get(0)
    }
}

#[test]
fn loads_starting_at_once_into_a_new_table_all_succeed() {
    let Some(pg) = pg_url("concurrent_new_table") else {
        return;
    };
    let server = EmbedServer::start(&["--dim", "32"]);
    let table = unique_table("race");
    // Several workers (or tenants' backfills) starting together race to
    // create the table; the losers must carry on, not fail.
    let children: Vec<_> = (0..4)
        .map(|i| {
            let state = state_path(&format!("{table}_{i}"));
            load_cmd(&server, &pg, &table, DIM)
                .arg(fixtures().join("guides"))
                .args(["--tenant", &format!("t{i}"), "--index", "none", "--state"])
                .arg(state)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let db = Db::connect(&pg);
    let tenants: i64 = db.query(
        &format!("SELECT count(DISTINCT tenant_id) FROM \"{table}\""),
        &[],
    )[0]
    .get(0);
    assert_eq!(tenants, 4);
}
