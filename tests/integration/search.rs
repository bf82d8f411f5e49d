//! `vecload search` through the real binary: the query is embedded like the
//! load's chunks, the nearest rows of the tenant come back best first, other
//! tenants never show, in pgvector and in Qdrant; with the local model the
//! top hit is the document that answers the question.

use std::process::Command;

use crate::common::qdrant::qdrant;
use crate::common::*;

const DIM: usize = 16;

/// Two tenants: `guides` holds fixtures/docs/guides, `web` holds fixtures/docs/web.
fn two_tenants(load: impl Fn(&str) -> Command) {
    for (tenant, dir) in [("guides", "guides"), ("web", "web")] {
        let out = run(load(tenant).arg(fixtures().join(dir)).args([
            "--tenant",
            tenant,
            "--chunk-tokens",
            "100",
            "--chunk-overlap",
            "10",
        ]));
        assert_eq!(out.code, 0);
    }
}

fn search_json(target: &[String], query: &str, tenant: &str) -> Vec<serde_json::Value> {
    let out = run(vecload()
        .args(["search", query, "--tenant", tenant, "-k", "3", "--json"])
        .args(target));
    assert_eq!(out.code, 0);
    serde_json::from_str::<serde_json::Value>(&out.stdout)
        .expect("--json prints JSON")
        .as_array()
        .expect("an array of hits")
        .clone()
}

/// `target`: the embedding and store flags of the load.
fn check_hits(target: &[String]) {
    // Any query gives some hit of the tenant; searching for a stored
    // chunk's exact text must then rank that very chunk first, at score 1.
    let any = search_json(target, "reindex", "guides");
    assert_eq!(any.len(), 3);
    let content = any[0]["content"].as_str().expect("content").to_string();
    let hits = search_json(target, &content, "guides");
    assert_eq!(hits[0]["content"], content.as_str());
    let top = hits[0]["score"].as_f64().unwrap();
    assert!(
        (top - 1.0).abs() < 1e-4,
        "cosine of a vector with itself: {top}"
    );
    assert!(hits[1]["score"].as_f64().unwrap() <= top, "best first");
    let source = |h: &serde_json::Value| h["source"].as_str().unwrap().to_string();
    assert!(
        hits.iter()
            .all(|h| source(h).ends_with(".md") || source(h).ends_with(".markdown")),
        "{hits:?}"
    );

    // The same text searched in the other tenant finds only that tenant's rows.
    let other = search_json(target, &content, "web");
    assert!(!other.is_empty());
    assert!(
        other.iter().all(|h| source(h).ends_with(".html")),
        "{other:?}"
    );
    assert!(other[0]["score"].as_f64().unwrap() < 0.99);

    assert!(search_json(target, "anything", "nobody").is_empty());

    // The human form: rank, score, source and chunk, then the start of the text.
    let out = run(vecload()
        .args(["search", &content, "--tenant", "guides", "-k", "1"])
        .args(target));
    assert_eq!(out.code, 0);
    assert!(
        out.stdout
            .starts_with(&format!(" 1. 1.0000  {} #", source(&hits[0]))),
        "{}",
        out.stdout
    );
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn search_pgvector_finds_the_tenants_nearest_chunks() {
    let Some(pg) = pg_url("search_pgvector") else {
        return;
    };
    let server = EmbedServer::start(&["--dim", "16"]);
    let table = unique_table("search");
    two_tenants(|tenant| {
        let mut c = load_cmd(&server, &pg, &table, DIM);
        c.arg("--state")
            .arg(state_path(&format!("{table}-{tenant}")));
        c
    });
    check_hits(&strings(&[
        "--embed-url",
        &server.url,
        "--embed-model",
        "test-model",
        "--embed-dim",
        "16",
        "--pg-url",
        &pg,
        "--table",
        &table,
    ]));
}

#[test]
fn search_qdrant_finds_the_tenants_nearest_chunks() {
    let Some(q) = qdrant("search_qdrant") else {
        return;
    };
    let server = EmbedServer::start(&["--dim", "16"]);
    let coll = unique_table("search");
    two_tenants(|tenant| {
        let mut c = qdrant_load_cmd(&server, q, &coll, DIM);
        c.arg("--state")
            .arg(state_path(&format!("{coll}-{tenant}")));
        c
    });
    let mut target = strings(&[
        "--embed-url",
        &server.url,
        "--embed-model",
        "test-model",
        "--embed-dim",
        "16",
        "--collection",
        &coll,
    ]);
    target.extend(q.args());
    check_hits(&target);
}

#[test]
fn search_with_the_local_model_answers_the_question() {
    let test = "search_with_the_local_model_answers_the_question";
    let (Some(dir), Some(pg)) = (model_dir(test), pg_url(test)) else {
        return;
    };
    let table = unique_table("searchlocal");
    let local = |cmd: &mut Command| {
        cmd.args(["--embed-provider", "local", "--embed-model-dir"])
            .arg(&dir)
            .args(["--pg-url", &pg, "--table", &table]);
    };
    let mut load = vecload();
    load.arg("load")
        .arg(fixtures())
        .args(["--tenant", "demo", "--no-state"]);
    local(&mut load);
    assert_eq!(run(&mut load).code, 0);
    for (question, answer) in [
        ("How are tenants kept apart?", "guides/tenancy.markdown"),
        (
            "Who must be told before the index is rebuilt?",
            "guides/reindex-runbook.md",
        ),
        ("what is ownership in Rust", "web/rust-book-ownership.html"),
    ] {
        let mut s = vecload();
        s.args(["search", question, "--tenant", "demo", "--json", "-k", "1"]);
        local(&mut s);
        let out = run(&mut s);
        assert_eq!(out.code, 0);
        let hits: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
        assert_eq!(hits[0]["source"], answer, "{question}");
    }
}
