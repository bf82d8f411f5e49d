//! `vecload copy` through the real binary, between a real PostgreSQL +
//! pgvector and a real Qdrant: the vectors already paid for move with their
//! rows (no endpoint is even started for the copy) with ids, tenant,
//! document, source, chunk index, page and text; bit for bit into
//! pgvector, as Qdrant's unit vectors into a cosine collection (Qdrant
//! scales what it is given); a killed copy resumes and ends identical; a
//! source of another dimension is refused before anything is written.

use std::collections::BTreeMap;
use std::path::Path;

use crate::common::qdrant::{QdrantServer, qdrant};
use crate::common::*;

const DIM: usize = 16;

/// `n` documents of different lengths, deterministic.
fn corpus(dir: &Path, n: usize) {
    const WORDS: &[&str] = &[
        "copy", "vector", "tenant", "cluster", "index", "payload", "store", "record", "chunk",
        "alias", "table", "row", "point", "scroll", "cursor", "batch",
    ];
    for i in 0..n {
        let mut text = format!("# Note {i}\n\n");
        for p in 0..(2 + i % 4) {
            for w in 0..(30 + (i * 11 + p * 7) % 50) {
                text.push_str(WORDS[(i * 13 + p * 5 + w * 3) % WORDS.len()]);
                text.push(if w % 10 == 9 { '.' } else { ' ' });
            }
            text.push_str("\n\n");
        }
        std::fs::write(dir.join(format!("note{i:03}.md")), text).expect("write");
    }
}

/// A pgvector table of three tenants: the fixture folder (Chinese, HTML,
/// JSON records) as t1, 120 generated notes as t2 (vectors of length 3),
/// the office and PDF fixtures (pages kept) as t3.
fn load_source(pg: &str, table: &str) -> usize {
    let server = EmbedServer::start(&["--dim", &DIM.to_string()]);
    let notes = tempfile::tempdir().expect("tempdir");
    corpus(notes.path(), 120);
    for (tenant, path) in [
        ("t1", fixtures()),
        ("t2", notes.path().to_path_buf()),
        ("t3", fixtures().join("../formats")),
    ] {
        let out = run(load_cmd(&server, pg, table, DIM)
            .arg(&path)
            .args(["--tenant", tenant, "--no-state"])
            .args(["--chunk-tokens", "60", "--chunk-overlap", "6"]));
        assert!(
            out.code == 0 || out.code == 1,
            "load of {tenant} ran (bad fixtures are skipped)"
        );
    }
    // Vectors as a store may hold them: not all of unit length.
    let db = Db::connect(pg);
    db.execute(&format!(
        "UPDATE \"{table}\" SET embedding = (SELECT array_agg(x * 3 ORDER BY i)
           FROM unnest(embedding::real[]) WITH ORDINALITY AS u(x, i))::vector({DIM})
         WHERE tenant_id = 't2'"
    ));
    db.count(table) as usize
}

/// Every row as the copy must carry it: (tenant, id) ->
/// (doc_id, source, chunk_index, page, content, vector bits).
type Rows = BTreeMap<(String, String), (String, String, i64, Option<i32>, String, Vec<u32>)>;

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn pg_rows(db: &Db, table: &str) -> Rows {
    db.query(
        &format!(
            "SELECT tenant_id, id, doc_id, source, chunk_index, page, content, embedding::real[]
               FROM \"{table}\""
        ),
        &[],
    )
    .iter()
    .map(|r| {
        (
            (r.get(0), r.get(1)),
            (
                r.get(2),
                r.get(3),
                r.get::<_, i32>(4) as i64,
                r.get(5),
                r.get(6),
                bits(&r.get::<_, Vec<f32>>(7)),
            ),
        )
    })
    .collect()
}

/// `got` holds `want`'s rows: the same fields, and vectors the same bits
/// or, where Qdrant scaled them (cosine), the source's unit vector to
/// float32's rounding.
fn assert_rows(got: &Rows, want: &Rows, normalized: bool) {
    assert_eq!(got.len(), want.len(), "row count");
    for (k, w) in want {
        let g = got.get(k).unwrap_or_else(|| panic!("{k:?} missing"));
        assert_eq!(
            (&g.0, &g.1, g.2, g.3, &g.4),
            (&w.0, &w.1, w.2, w.3, &w.4),
            "{k:?}"
        );
        if !normalized {
            assert_eq!(g.5, w.5, "{k:?}: vector bits");
            continue;
        }
        let src: Vec<f64> = w.5.iter().map(|b| f64::from(f32::from_bits(*b))).collect();
        let norm = src.iter().map(|x| x * x).sum::<f64>().sqrt();
        for (a, b) in src.iter().zip(&g.5) {
            assert!(
                (a / norm - f64::from(f32::from_bits(*b))).abs() <= 1e-6,
                "{k:?}"
            );
        }
    }
}

fn qdrant_rows(q: &QdrantServer, collection: &str) -> Rows {
    let pages: BTreeMap<String, Option<i32>> = q
        .client()
        .raw_points(collection)
        .into_iter()
        .map(|(id, (p, _))| (id, p.get("page").and_then(|v| v.as_i64()).map(|n| n as i32)))
        .collect();
    q.client()
        .points(collection, None)
        .into_iter()
        .map(|p| {
            (
                (p.tenant, p.id.clone()),
                (
                    p.doc_id,
                    p.source,
                    p.chunk_index,
                    pages.get(&p.id).copied().flatten(),
                    p.content,
                    bits(&p.vector),
                ),
            )
        })
        .collect()
}

/// `vecload copy --from FROM` with the report written to `report`.
fn copy(from: &str, pg: &str, report: &Path) -> std::process::Command {
    let mut c = vecload();
    c.args(["copy", "--from", from, "--pg-url", pg])
        .args(["--progress", "log", "--page-size", "100", "--report"])
        .arg(report);
    c
}

#[test]
fn copy_pgvector_to_qdrant_and_back_carries_every_vector_bit_for_bit_without_an_endpoint() {
    let test =
        "copy_pgvector_to_qdrant_and_back_carries_every_vector_bit_for_bit_without_an_endpoint";
    let Some(pg) = pg_url(test) else { return };
    let Some(q) = qdrant(test) else { return };
    let (src, back) = (unique_table("copy_src"), unique_table("copy_back"));
    let collection = unique_table("copy_q");
    let n = load_source(&pg, &src);
    assert!(n > 300, "a source of real size: {n} rows");
    let db = Db::connect(&pg);
    let source = pg_rows(&db, &src);
    assert!(
        source.values().any(|r| r.3.is_some()),
        "some rows carry a PDF page"
    );
    let dir = tempfile::tempdir().expect("tempdir");

    // pgvector -> Qdrant.
    let report = dir.path().join("to-qdrant.json");
    let out = run(copy(&format!("pgvector:{src}"), &pg, &report)
        .args(q.args())
        .args(["--collection", &collection]));
    assert_eq!(out.code, 0);
    let r = read_report(&report);
    assert_eq!(r["command"], "copy");
    assert_eq!(r["embed_requests"], 0);
    assert_eq!(r["rows_read"], n as u64);
    assert_eq!(r["reembedded"], n as u64);
    assert_eq!(r["verified"], true);
    assert!(r["sampled"].as_u64().unwrap_or(0) >= 200, "{r}");
    assert_eq!(r["vectors_differing"], 0);
    let in_qdrant = qdrant_rows(q, &collection);
    assert_rows(&in_qdrant, &source, true);
    assert!(
        out.all_output().contains("no embedding requests"),
        "the summary says so"
    );

    // Qdrant -> pgvector: the same rows again.
    let report = dir.path().join("to-pg.json");
    let out = run(copy(&format!("qdrant:{collection}"), &pg, &report)
        .args(q.args())
        .args(["--sink", "pgvector", "--table", &back]));
    assert_eq!(out.code, 0);
    assert_eq!(read_report(&report)["verified"], true);
    assert_rows(&pg_rows(&db, &back), &in_qdrant, false);

    // Again: everything is in the target already; nothing is written.
    let out = run(copy(&format!("pgvector:{src}"), &pg, &report)
        .args(q.args())
        .args(["--collection", &collection]));
    assert_eq!(out.code, 0);
    let r = read_report(&report);
    assert_eq!(
        (r["already_in_target"].as_u64(), r["reembedded"].as_u64()),
        (Some(n as u64), Some(0))
    );
    // The source was only read.
    assert_eq!(pg_rows(&db, &src), source);
}

#[test]
fn a_killed_copy_resumes_and_ends_identical_to_the_source() {
    let test = "a_killed_copy_resumes_and_ends_identical_to_the_source";
    let Some(pg) = pg_url(test) else { return };
    let Some(q) = qdrant(test) else { return };
    let src = unique_table("copy_kill_src");
    let collection = unique_table("copy_kill_q");
    let n = load_source(&pg, &src);
    let source = pg_rows(&Db::connect(&pg), &src);
    let dir = tempfile::tempdir().expect("tempdir");
    let report = dir.path().join("r.json");
    // Dies (abort, as kill -9) right after its second acknowledged write.
    let out = run(copy(&format!("pgvector:{src}"), &pg, &report)
        .args(q.args())
        .args(["--collection", &collection])
        .args(["--write-batch", "16", "--write-concurrency", "1"])
        .env("VECLOAD_CRASH_AFTER_ACKS", "2"));
    assert_ne!(out.code, 0, "the first copy was killed");
    let written = q.client().count(&collection, None);
    assert!(
        (32..n as u64).contains(&written),
        "killed part way: {written} of {n}"
    );
    let out = run(copy(&format!("pgvector:{src}"), &pg, &report)
        .args(q.args())
        .args(["--collection", &collection]));
    assert_eq!(out.code, 0);
    let r = read_report(&report);
    assert!(r["already_in_target"].as_u64().unwrap_or(0) >= 32, "{r}");
    assert_eq!(
        r["already_in_target"].as_u64().unwrap_or(0) + r["reembedded"].as_u64().unwrap_or(0),
        n as u64
    );
    assert_eq!(r["verified"], true);
    assert_rows(&qdrant_rows(q, &collection), &source, true);
}

#[test]
fn copy_into_halfvec_is_verified_within_float16_rounding() {
    let test = "copy_into_halfvec_is_verified_within_float16_rounding";
    let Some(pg) = pg_url(test) else { return };
    let (src, half) = (unique_table("copy_h_src"), unique_table("copy_h"));
    let n = load_source(&pg, &src);
    let dir = tempfile::tempdir().expect("tempdir");
    let report = dir.path().join("r.json");
    let out = run(copy(&format!("pgvector:{src}"), &pg, &report).args([
        "--table",
        &half,
        "--pg-type",
        "halfvec",
    ]));
    assert_eq!(out.code, 0);
    let r = read_report(&report);
    assert_eq!(
        (r["verified"].as_bool(), r["reembedded"].as_u64()),
        (Some(true), Some(n as u64))
    );
    let db = Db::connect(&pg);
    let kind: String = db.query(
        &format!("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = '\"{half}\"'::regclass AND attname = 'embedding'"),
        &[],
    )[0]
    .get(0);
    assert_eq!(kind, "halfvec(16)");
    // Each stored value is its source value rounded to float16.
    let (a, b) = (pg_rows(&db, &src), pg_rows(&db, &half));
    assert_eq!(a.len(), b.len());
    for (k, (_, _, _, _, _, va)) in &a {
        let vb = &b[k].5;
        for (x, y) in va.iter().zip(vb) {
            let want = half::f16::from_f32(f32::from_bits(*x)).to_f32();
            assert_eq!(f32::from_bits(*y), want, "{k:?}");
        }
    }
}

#[test]
fn a_source_of_another_dimension_or_without_vectors_is_refused_before_anything_is_written() {
    let test =
        "a_source_of_another_dimension_or_without_vectors_is_refused_before_anything_is_written";
    let Some(pg) = pg_url(test) else { return };
    let Some(q) = qdrant(test) else { return };
    let src = unique_table("copy_dim_src");
    load_source(&pg, &src);
    let dir = tempfile::tempdir().expect("tempdir");
    let report = dir.path().join("r.json");
    let from = format!("pgvector:{src}");

    // The RAG API's .env says 1024; the source holds 16.
    let collection = unique_table("copy_dim_q");
    let out = run(copy(&from, &pg, &report)
        .args(q.args())
        .args(["--collection", &collection])
        .env("EMBEDDING_DIM", "1024"));
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("16 dimensions"), "{}", out.stderr);
    assert!(out.stderr.contains("EMBEDDING_DIM"), "{}", out.stderr);
    assert!(!q.client().exists(&collection), "nothing was created");

    // A target of another dimension already there.
    let other = unique_table("copy_dim_other");
    let db = Db::connect(&pg);
    db.execute(&format!(
        "CREATE TABLE \"{other}\" (tenant_id text, id text, doc_id text, source text, chunk_index int, content text, content_hash text, embedding vector(8), PRIMARY KEY (tenant_id, id))"
    ));
    let out = run(copy(&from, &pg, &report).args(["--table", &other]));
    assert_eq!(out.code, 2);
    assert_eq!(db.count(&other), 0);

    // A chunk store holds texts only.
    let out = run(copy(
        "lightrag:fixtures/lightrag/acme/kv_store_text_chunks.json",
        &pg,
        &report,
    )
    .args(["--table", &other]));
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("reembed"), "{}", out.stderr);
    // --to-tenant names where one tenant goes.
    let out = run(copy(&from, &pg, &report).args(["--table", &other, "--to-tenant", "b"]));
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("--tenant"), "{}", out.stderr);
}

#[test]
fn a_target_holding_other_vectors_for_the_same_texts_is_not_verified() {
    let test = "a_target_holding_other_vectors_for_the_same_texts_is_not_verified";
    let Some(pg) = pg_url(test) else { return };
    let (src, dst) = (unique_table("copy_v_src"), unique_table("copy_v_dst"));
    load_source(&pg, &src);
    let dir = tempfile::tempdir().expect("tempdir");
    let report = dir.path().join("r.json");
    let from = format!("pgvector:{src}");
    assert_eq!(
        run(copy(&from, &pg, &report).args(["--table", &dst])).code,
        0
    );
    // Another model's vectors under the same texts (a table reused by mistake).
    Db::connect(&pg).execute(&format!(
        "UPDATE \"{dst}\" SET embedding = (SELECT array_agg(-x ORDER BY i)
           FROM unnest(embedding::real[]) WITH ORDINALITY AS u(x, i))::vector({DIM})"
    ));
    let out = run(copy(&from, &pg, &report).args(["--table", &dst]));
    assert_eq!(out.code, 1, "not verified");
    let r = read_report(&report);
    assert_eq!(r["verified"], false);
    assert_eq!(r["vectors_differing"], r["sampled"]);
    assert!(out.stderr.contains("not the source's"), "{}", out.stderr);
}

/// One Qdrant to a new cluster: the source at its own address (gRPC port
/// named, as behind a load balancer) with its own API key; neither key is
/// ever printed.
#[test]
fn copy_from_one_qdrant_to_another_with_its_own_address_and_key() {
    let test = "copy_from_one_qdrant_to_another_with_its_own_address_and_key";
    let Some(pg) = pg_url(test) else { return };
    if qdrant(test).is_none() {
        return;
    }
    let (Some(old), Some(new)) = (
        QdrantServer::start(Some("old-cluster-key-123")),
        QdrantServer::start(Some("new-cluster-key-456")),
    ) else {
        eprintln!(
            "=== SKIPPED {test}: needs a `qdrant` binary on PATH to start two keyed servers ==="
        );
        return;
    };
    let src = unique_table("copy_qq_src");
    let collection = unique_table("copy_qq");
    load_source(&pg, &src);
    let dir = tempfile::tempdir().expect("tempdir");
    let report = dir.path().join("r.json");
    let out = run(copy(&format!("pgvector:{src}"), &pg, &report)
        .args(old.args())
        .args(["--collection", &collection]));
    assert_eq!(out.code, 0);
    let out = run(copy(&format!("qdrant:{collection}"), &pg, &report)
        .args(["--from-qdrant-url", &old.rest_url])
        .args(["--from-qdrant-grpc-url", &old.grpc_url])
        .args(["--from-qdrant-api-key", "old-cluster-key-123"])
        .args(new.args())
        .args(["--collection", &collection]));
    assert_eq!(out.code, 0);
    assert_eq!(read_report(&report)["verified"], true);
    let all = out.all_output();
    assert!(
        !all.contains("old-cluster-key-123") && !all.contains("new-cluster-key-456"),
        "a key was printed"
    );
    assert_rows(
        &qdrant_rows(&new, &collection),
        &qdrant_rows(&old, &collection),
        false,
    );
}

/// A source row without a usable vector is named and not copied; the
/// others are, and the copy ends unverified (exit 1) instead of stopping.
#[test]
fn a_source_row_without_a_vector_is_named_and_the_rest_is_copied() {
    let test = "a_source_row_without_a_vector_is_named_and_the_rest_is_copied";
    let Some(pg) = pg_url(test) else { return };
    let (src, dst) = (unique_table("copy_null_src"), unique_table("copy_null_dst"));
    let db = Db::connect(&pg);
    db.execute(&format!(
        "CREATE TABLE \"{src}\" (tenant_id text, id text, doc_id text, source text, chunk_index int,
           content text, content_hash text, embedding vector({DIM}), PRIMARY KEY (tenant_id, id));
         INSERT INTO \"{src}\" SELECT 't', 'id-' || i, 'd', 'a.md', i, 'text ' || i, '',
           (SELECT array_agg(((i + k) % 7)::real) FROM generate_series(1, {DIM}) k)::vector
           FROM generate_series(1, 50) i;
         UPDATE \"{src}\" SET embedding = NULL WHERE id = 'id-17';"
    ));
    let dir = tempfile::tempdir().expect("tempdir");
    let report = dir.path().join("r.json");
    let out = run(copy(&format!("pgvector:{src}"), &pg, &report).args(["--table", &dst]));
    assert_eq!(out.code, 1, "not verified");
    let r = read_report(&report);
    assert_eq!(r["failed_chunks"], 1);
    assert_eq!(r["failures"][0]["id"], "id-17");
    assert!(
        r["failures"][0]["error"]
            .as_str()
            .unwrap_or("")
            .contains("no vector"),
        "{r}"
    );
    assert_eq!(r["reembedded"], 49);
    assert_eq!(db.count(&dst), 49);
}
