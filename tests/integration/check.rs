//! `vecload check` through the real binary: faults injected into a real
//! pgvector table and a LightRAG workspace written by LightRAG's own
//! storage classes are each found, `--repair` pays only for what it fixes,
//! and the next check is clean.

use std::path::PathBuf;
use std::process::Command;

use crate::common::*;
use crate::space::{DIM, load_docs, pg, server};

fn check(server: &EmbedServer, url: &str, table: &str, extra: &[&str]) -> (Run, serde_json::Value) {
    let out = run(pg("check", server, url, table, "model-a")
        .args(["--json", "--quiet"])
        .args(extra));
    let report = serde_json::from_str(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out, report)
}

/// Faults injected into a loaded table are each found; --repair fixes
/// them paying only for them; the next check is clean.
#[test]
fn check_finds_injected_faults_and_repair_pays_only_for_them() {
    let Some(url) = pg_url("space check") else {
        return;
    };
    let db = Db::connect(&url);
    let server = server();
    let table = unique_table("space_check");
    assert_eq!(load_docs(&server, &url, &table, "model-a").code, 0);
    // Another tenant's rows, which no repair of acme touches.
    let out = run(pg("load", &server, &url, &table, "model-a")
        .arg(fixtures().join("guides"))
        .args(["--tenant", "other", "--no-state", "--progress", "log"]));
    assert_eq!(out.code, 0);
    let docs = fixtures();
    let docs = docs.to_str().unwrap();
    let (out, healthy) = check(&server, &url, &table, &[docs]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert_eq!(healthy["healthy"], true);
    let acme = healthy["tenants"]["acme"].as_u64().unwrap();
    assert!(acme > 10);

    let ids: Vec<String> = db
        .query(
            &format!("SELECT id FROM \"{table}\" WHERE tenant_id = 'acme' ORDER BY id"),
            &[],
        )
        .iter()
        .map(|r| r.get(0))
        .collect();
    let t = format!("\"{table}\"");
    // Two rows deleted, one zero vector, two vectors of another model, an orphan.
    db.execute(&format!(
        "DELETE FROM {t} WHERE tenant_id = 'acme' AND id IN ('{}', '{}')",
        ids[0], ids[1]
    ));
    db.execute(&format!(
        "UPDATE {t} SET embedding = array_fill(0, ARRAY[{DIM}])::vector WHERE id = '{}'",
        ids[2]
    ));
    for id in &ids[3..5] {
        let text: String =
            db.query(&format!("SELECT content FROM {t} WHERE id = $1"), &[id])[0].get(0);
        let v = embedding_test_server::model_vector_for("model-z", &text, DIM);
        db.execute(&format!(
            "UPDATE {t} SET embedding = '{}' WHERE id = '{id}'",
            serde_json::to_string(&v).unwrap()
        ));
    }
    db.execute(&format!(
        "INSERT INTO {t} (tenant_id, id, doc_id, source, chunk_index, content, content_hash, embedding)
         SELECT tenant_id, 'orphan-row', 'gone', 'gone.md', 0, content, content_hash, embedding
           FROM {t} WHERE id = '{}'",
        ids[6]
    ));
    let other_before: Vec<_> = table_rows(&db, &table)
        .into_iter()
        .filter(|r| !ids.contains(&r.0) && r.0 != "orphan-row")
        .collect();

    let requests = server.requests();
    let (out, sick) = check(&server, &url, &table, &[docs, "--probe", "1000"]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert_eq!(sick["healthy"], false);
    assert_eq!(sick["vectors"]["zero"], 1);
    assert_eq!(sick["probe"]["other_space"], 2);
    assert_eq!(sick["against"]["chunks_missing_or_changed"], 2);
    assert_eq!(sick["against"]["orphan_rows"], 1);
    assert!(server.requests() > requests, "--probe asks the endpoint");
    assert!(
        sick["problems"].as_array().unwrap().len() >= 4,
        "{}",
        out.stdout
    );

    // The repair embeds the 2 missing, the zero and the 2 foreign rows.
    let inputs = server.stats()["inputs"].as_u64().unwrap();
    let (out, repaired) = check(
        &server,
        &url,
        &table,
        &[docs, "--probe", "1000", "--repair"],
    );
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert_eq!(repaired["repair"]["rows_deleted"], 3);
    assert_eq!(repaired["repair"]["vectors_written"], 5);
    assert_eq!(repaired["repair"]["rows_pruned"], 1);
    let probe_rows = repaired["probe"]["rows"].as_u64().unwrap();
    assert_eq!(
        server.stats()["inputs"].as_u64().unwrap() - inputs,
        probe_rows + 5,
        "paid for the probe and the 5 rows, nothing else"
    );
    let (out, clean) = check(&server, &url, &table, &[docs, "--probe", "1000"]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert_eq!(clean["healthy"], true);
    assert_eq!(clean["tenants"]["acme"].as_u64().unwrap(), acme);
    let other_after: Vec<_> = table_rows(&db, &table)
        .into_iter()
        .filter(|r| other_before.iter().any(|o| o.0 == r.0))
        .collect();
    assert_eq!(
        other_after, other_before,
        "rows not broken stay as they were"
    );
}

#[test]
fn check_of_a_table_that_does_not_exist_cannot_check() {
    let Some(url) = pg_url("space check missing") else {
        return;
    };
    let server = server();
    let (out, _) = check(&server, &url, "no_such_table_here", &[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("no_such_table_here"));
}

/// Builds a LightRAG workspace with LightRAG's own classes (and its
/// drift), or with `--find NAME` asks LightRAG what its stores answer for
/// the entity NAME; the last line of the output, as JSON.
fn lightrag_workspace(
    python: &std::path::Path,
    dir: &std::path::Path,
    url: &str,
    server: &EmbedServer,
    model: &str,
    extra: &[&str],
) -> serde_json::Value {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(python)
        .arg(manifest.join("scripts/lightrag_workspace.py"))
        .arg("--dir")
        .arg(dir)
        .args(["--workspace", "acme", "--model", model])
        .args(["--dim", &DIM.to_string(), "--embed-url", &server.url])
        .args(extra)
        .envs(lightrag_pg_env(url))
        .output()
        .expect("run LightRAG");
    assert!(
        out.status.success(),
        "LightRAG ({extra:?}):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .expect("a line"),
    )
    .expect("JSON")
}

/// A LightRAG workspace whose graph and chunk store drifted from its
/// vectors (LightRAG issue #2917), made with LightRAG's own classes: each
/// drift is found; --repair re-embeds only what lacks a vector or holds an
/// old text's and deletes the vector of nothing; the next check is clean
/// and LightRAG's own query finds the repaired entity and relations.
#[test]
fn check_finds_a_lightrag_workspace_drifting_from_its_vectors() {
    let Some(url) = pg_url("check lightrag workspace") else {
        return;
    };
    let Some(python) = lightrag_python("check lightrag workspace") else {
        return;
    };
    let server = server();
    let dir = tempfile::tempdir().expect("tempdir");
    let unique = unique_table("w");
    let model = format!("lw-{}", &unique[2..]);
    let chunks = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/lightrag/acme/kv_store_text_chunks.json");
    let chunks = chunks.to_str().expect("a UTF-8 path");
    let made = lightrag_workspace(
        &python,
        dir.path(),
        &url,
        &server,
        &model,
        &["--chunks", chunks],
    );
    let check = |extra: &[&str]| {
        let out = run(vecload()
            .args([
                "check", "--layout", "lightrag", "--tenant", "acme", "--json",
            ])
            .args(["--embed-url", &server.url, "--embed-model", &model])
            .args(["--embed-dim", &DIM.to_string(), "--pg-url", &url])
            .arg("--lightrag-dir")
            .arg(dir.path())
            .args(extra));
        let r: serde_json::Value = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("JSON report ({e}): {}", out.all_output()));
        (out, r)
    };
    let (out, r) = check(&[]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let d = &r["lightrag"];
    assert_eq!(d["chunks"]["in_workspace"], made["chunks"]);
    assert_eq!(d["chunks"]["without_vector"], 1);
    assert_eq!(d["chunks"]["vectors_of_nothing"], 0);
    assert_eq!(d["entities"]["in_workspace"], made["entities"]);
    assert_eq!(d["entities"]["without_vector"], 1);
    assert_eq!(d["entities"]["vectors_of_nothing"], 1);
    assert_eq!(d["entities"]["stale"], 0);
    assert_eq!(d["relations"]["in_workspace"], made["relations"]);
    assert_eq!(d["relations"]["without_vector"], 1);
    assert_eq!(d["relations"]["stale"], 1);
    assert_eq!(d["relations"]["vectors_of_nothing"], 0);
    let examples = d["entities"]["examples"].to_string();
    assert!(
        examples.contains(made["entity_without_vector"].as_str().unwrap()),
        "the entity is named: {examples}"
    );
    let chunk = made["chunk_without_vector"].as_str().unwrap();
    assert!(d["chunks"]["examples"].to_string().contains(chunk));

    // --repair: four texts to embed (a chunk, an entity, two relations),
    // one vector to delete. The stores LightRAG wrote have no record of
    // their space: each namespace repaired is probed once (at most 8 texts).
    let before = server.stats()["inputs"].as_u64().unwrap_or(0);
    let (out, r) = check(&["--repair"]);
    assert_eq!(out.code, 0, "{}", out.all_output());
    let repair = &r["repair"];
    assert_eq!(repair["vectors_written"], 4, "{repair}");
    assert_eq!(repair["rows_deleted"], 1, "{repair}");
    assert!(repair["error"].is_null(), "{repair}");
    let paid = server.stats()["inputs"].as_u64().unwrap_or(0) - before;
    assert!(
        (4..=4 + 3 * 8).contains(&paid),
        "only the four texts and the probes are paid for: {paid} inputs"
    );

    let (out, r) = check(&[]);
    assert_eq!(out.code, 0, "clean after the repair: {}", out.stdout);
    for ns in ["chunks", "entities", "relations"] {
        let side = &r["lightrag"][ns];
        assert_eq!(side["without_vector"], 0, "{ns}: {side}");
        assert_eq!(side["stale"], 0, "{ns}: {side}");
        assert_eq!(side["vectors_of_nothing"], 0, "{ns}: {side}");
    }

    // LightRAG's own query finds the repaired entity by its text, and each
    // repaired relation by its text (the missing one and the stale one).
    let found = lightrag_workspace(
        &python,
        dir.path(),
        &url,
        &server,
        &model,
        &["--find", made["entity_without_vector"].as_str().unwrap()],
    );
    assert_eq!(found["entity"], made["entity_without_vector"], "{found}");
    let name = made["relation_without_vector"][1].as_str().unwrap();
    let found = lightrag_workspace(
        &python,
        dir.path(),
        &url,
        &server,
        &model,
        &["--find", name],
    );
    let relations = found["relations"].as_array().expect("relations");
    assert_eq!(relations.len(), 2, "{found}");
    for rel in relations {
        assert_eq!(
            rel["top"], rel["pair"],
            "LightRAG finds the relation: {found}"
        );
    }
}
