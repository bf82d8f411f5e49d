//! The embedding cache through the real binary against the real
//! PostgreSQL: a text embedded once is not paid for again by another tenant
//! or run (each stored vector still the model's vector of its own text);
//! an option that changes vectors misses; a damaged cache file is set aside
//! and the run is still right.

use std::path::Path;

use crate::common::*;
use embedding_test_server::vector_for;

const DIM: usize = 16;

fn load(server: &EmbedServer, pg: &str, table: &str, tenant: &str, cache: &Path) -> Run {
    let report = cache.with_extension(format!("{tenant}.json"));
    let out = run(load_cmd(server, pg, table, DIM)
        .arg(fixtures())
        .args(["--tenant", tenant, "--no-state", "--cache"])
        .arg(cache)
        .arg("--report")
        .arg(&report)
        .args(["--chunk-tokens", "60", "--chunk-overlap", "6"]));
    assert!(out.code == 0 || out.code == 1, "the load ran");
    out
}

fn report(cache: &Path, tenant: &str) -> serde_json::Value {
    read_report(&cache.with_extension(format!("{tenant}.json")))
}

/// Every stored vector of `tenant` is the model's vector of its stored text.
fn assert_vectors_are_their_texts(db: &Db, table: &str, tenant: &str) -> usize {
    let rows = db.query(
        &format!("SELECT content, embedding::real[] FROM \"{table}\" WHERE tenant_id = $1"),
        &[&tenant],
    );
    for r in &rows {
        let (text, v): (String, Vec<f32>) = (r.get(0), r.get(1));
        let want = vector_for(&text, DIM);
        assert!(
            v.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-6),
            "{tenant}: a vector that is not its text's"
        );
    }
    rows.len()
}

#[test]
fn a_second_tenant_with_the_same_documents_costs_no_requests() {
    let Some(pg) = pg_url("a_second_tenant_with_the_same_documents_costs_no_requests") else {
        return;
    };
    let server = EmbedServer::start(&["--dim", &DIM.to_string()]);
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    let table = unique_table("cache");
    load(&server, &pg, &table, "a", &cache);
    let paid = server.requests();
    assert!(paid > 0);
    assert!(cache.join("embeddings.redb").is_file(), "the cache file");
    // `plan` for tenant b: every chunk a hit, nothing to send or pay.
    let mut plan = pg_cmd("plan", &server, &pg, &table, DIM);
    plan.args(["--json", "--tenant", "b", "--no-state"])
        .args(["--chunk-tokens", "60", "--chunk-overlap", "6", "--cache"])
        .arg(&cache)
        .arg(fixtures());
    let out = run(&mut plan);
    let p: serde_json::Value = serde_json::from_str(out.stdout.trim()).expect("plan JSON");
    assert_eq!(p["cache_hits"], p["chunks"], "{p}");
    assert_eq!(
        (p["requests"].as_u64(), p["tokens"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(server.requests(), paid, "plan sends nothing");
    let out = load(&server, &pg, &table, "b", &cache);
    assert_eq!(server.requests(), paid, "tenant b cost no request");
    let (ra, rb) = (report(&cache, "a"), report(&cache, "b"));
    assert_eq!(ra["cache_hits"], 0);
    assert_eq!(rb["cache_hits"], rb["chunks"]);
    assert_eq!(rb["tokens_saved"], ra["tokens"], "every token a paid for");
    assert_eq!(rb["tokens"], 0, "none sent");
    assert!(
        out.all_output().contains("embedding cache:"),
        "said in the summary"
    );
    let db = Db::connect(&pg);
    let (na, nb) = (
        assert_vectors_are_their_texts(&db, &table, "a"),
        assert_vectors_are_their_texts(&db, &table, "b"),
    );
    assert_eq!(na, nb);

    // Another option that changes vectors (a model name): every chunk is
    // requested again (into a table of its own: the first records its model).
    let out = run(
        load_cmd(&server, &pg, &unique_table("cache_other_model"), DIM)
            .arg(fixtures())
            .args([
                "--tenant",
                "c",
                "--no-state",
                "--embed-model",
                "other-model",
                "--cache",
            ])
            .arg(&cache)
            .args(["--chunk-tokens", "60", "--chunk-overlap", "6"]),
    );
    assert!(out.code == 0 || out.code == 1);
    assert!(server.requests() > paid, "a new model is paid for");
    assert!(!out.all_output().contains("embedding cache:"));

    // --no-cache: neither read nor written.
    let before = server.requests();
    let out = run(load_cmd(&server, &pg, &table, DIM)
        .arg(fixtures())
        .args(["--tenant", "d", "--no-state", "--no-cache", "--cache"])
        .arg(&cache)
        .args(["--chunk-tokens", "60", "--chunk-overlap", "6"]));
    assert!(out.code == 0 || out.code == 1);
    assert!(server.requests() > before);
}

#[test]
fn a_damaged_cache_file_is_set_aside_and_the_run_is_still_right() {
    let Some(pg) = pg_url("a_damaged_cache_file_is_set_aside_and_the_run_is_still_right") else {
        return;
    };
    let server = EmbedServer::start(&["--dim", &DIM.to_string()]);
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    let table = unique_table("cache_bad");
    load(&server, &pg, &table, "a", &cache);
    let file = cache.join("embeddings.redb");
    let len = std::fs::metadata(&file).expect("cache file").len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .expect("open");
    f.set_len(len / 3).expect("truncate");
    drop(f);
    let out = load(&server, &pg, &table, "b", &cache);
    assert!(
        out.stderr.contains("set aside"),
        "the damage is reported: {}",
        out.stderr
    );
    let db = Db::connect(&pg);
    assert_eq!(
        assert_vectors_are_their_texts(&db, &table, "b"),
        assert_vectors_are_their_texts(&db, &table, "a")
    );
    // The new cache serves the next run.
    let paid = server.requests();
    load(&server, &pg, &table, "c", &cache);
    assert_eq!(server.requests(), paid);
}
