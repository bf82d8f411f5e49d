//! The Qdrant sink against a real Qdrant server (QDRANT_URL, or a `qdrant`
//! binary on PATH; otherwise each test prints a SKIPPED line): every chunk
//! lands with its own vector and payload, reruns add nothing, tenants in one
//! collection leave each other alone, bulk-mode settings come back, and a
//! collection of the wrong shape is refused before any paid request.

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use crate::common::qdrant::{QdrantDb, QdrantServer, Stored, qdrant};
use crate::common::*;
use embedding_test_server::vector_for;
use qdrant_client::qdrant::{
    CreateCollectionBuilder, Distance, HnswConfigDiffBuilder, VectorParamsBuilder,
};

const DIM: usize = 16;

fn collection(prefix: &str) -> String {
    unique_table(prefix)
}

/// Each stored vector is the test server's vector of the stored content.
fn assert_vectors_match_content(points: &[Stored]) {
    assert!(!points.is_empty());
    for p in points {
        let want = vector_for(&p.content, DIM);
        assert_eq!(p.vector.len(), DIM, "{}", p.source);
        let off = p
            .vector
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            off < 1e-5,
            "{} chunk {}: vector is not its content's",
            p.source,
            p.chunk_index
        );
    }
}

fn hnsw_m(q: &QdrantDb, name: &str) -> (Option<u64>, Option<u64>) {
    let h = q
        .info(name)
        .config
        .and_then(|c| c.hnsw_config)
        .unwrap_or_default();
    (h.m, h.payload_m)
}

fn bulk_marker(q: &QdrantDb, name: &str) -> bool {
    q.info(name)
        .config
        .is_some_and(|c| c.metadata.contains_key("vecload_bulk_load"))
}

#[test]
fn load_stores_every_chunk_with_its_vector_and_payload() {
    let Some(qs) = qdrant("qdrant_load") else {
        return;
    };
    let server = EmbedServer::start(&["--dim", "16", "--shuffle"]);
    let name = collection("qload");
    let report = std::env::temp_dir().join(format!("{name}.json"));
    let r = run(qdrant_load_cmd(&server, qs, &name, DIM)
        .arg(fixtures())
        .args([
            "--tenant",
            "acme",
            "--chunk-tokens",
            "60",
            "--chunk-overlap",
            "6",
            "--shard-number",
            "2",
        ])
        .arg("--report")
        .arg(&report));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rep = read_report(&report);
    let q = qs.client();
    let points = q.points(&name, None);
    let chunks = rep["chunks"].as_u64().unwrap();
    assert!(
        chunks > 16,
        "fixtures make many chunks at 60 tokens: {chunks}"
    );
    assert_eq!(points.len() as u64, chunks, "one point per chunk");
    assert_eq!(rep["vectors_written"].as_u64(), Some(chunks));
    assert_eq!(rep["tenant_rows"].as_u64(), Some(chunks), "exact count");
    assert_eq!(rep["expected_rows"].as_u64(), Some(chunks));
    assert!(r.stdout.contains(&format!("tenant now has {chunks} rows")));
    assert_vectors_match_content(&points);

    // Payload: what the RAG API and later runs need, consistent per document.
    let mut by_source: std::collections::BTreeMap<&str, Vec<&Stored>> = Default::default();
    for p in &points {
        assert_eq!(p.tenant, "acme");
        assert!(p.doc_id.starts_with("doc-"), "{}", p.doc_id);
        assert_eq!(p.content_hash.len(), 64);
        assert!(
            p.updated_at.ends_with('Z') && p.updated_at.starts_with("20"),
            "{}",
            p.updated_at
        );
        by_source.entry(&p.source).or_default().push(p);
    }
    assert!(
        by_source.keys().any(|s| s.starts_with("zh/")),
        "CJK docs loaded"
    );
    for (source, ps) in &by_source {
        let mut idx: Vec<i64> = ps.iter().map(|p| p.chunk_index).collect();
        idx.sort();
        assert_eq!(idx, (0..ps.len() as i64).collect::<Vec<_>>(), "{source}");
        assert!(ps.iter().all(|p| p.doc_id == ps[0].doc_id), "{source}");
    }

    // The collection: as asked, with both payload indexes, HNSW back on.
    let info = q.info(&name);
    let params = info
        .config
        .as_ref()
        .and_then(|c| c.params.as_ref())
        .unwrap();
    assert_eq!(params.shard_number, 2, "--shard-number");
    assert!(params.on_disk_payload, "payload on disk");
    let schema = &info.payload_schema;
    // The document and bucket indexes are built at the finish of a load
    // that made the collection, the tenant index before the upload.
    assert!(
        ["tenant_id", "doc_id", "shard_bucket"]
            .iter()
            .all(|f| schema.contains_key(*f)),
        "{schema:?}"
    );
    let tenant_params = format!("{:?}", schema["tenant_id"].params);
    assert!(
        tenant_params.contains("is_tenant: Some(true)"),
        "{tenant_params}"
    );
    assert_eq!(hnsw_m(&q, &name).0, Some(16), "HNSW m restored");
    assert!(!bulk_marker(&q, &name), "bulk-mode marker removed");
    assert!(
        rep["index"]
            .as_str()
            .unwrap_or("")
            .contains("m=16 restored"),
        "{}",
        rep["index"]
    );
}

#[test]
fn reruns_add_nothing_and_a_second_tenant_leaves_the_first_untouched() {
    let Some(qs) = qdrant("qdrant_rerun_tenants") else {
        return;
    };
    let server = EmbedServer::start(&["--dim", "16"]);
    let name = collection("qtenants");
    let load = |tenant: &str, extra: &[&str]| {
        let mut c = qdrant_load_cmd(&server, qs, &name, DIM);
        c.arg(fixtures()).args(["--tenant", tenant]).args(extra);
        run(&mut c)
    };
    assert_eq!(load("a", &[]).code, 0);
    let q = qs.client();
    let first = q.points(&name, Some("a"));

    // Unchanged rerun: nothing paid, nothing added.
    let sent = server.requests();
    let r = load("a", &[]);
    assert_eq!(r.code, 0);
    assert_eq!(
        server.requests(),
        sent,
        "an unchanged rerun sends no request"
    );
    assert_eq!(q.points(&name, Some("a")), first, "points untouched");

    // Without the state file (a new machine): the collection is the
    // record, so nothing is paid for again and nothing is rewritten.
    let r = load("a", &["--no-state"]);
    assert_eq!(r.code, 0);
    assert_eq!(server.requests(), sent, "{}", r.stdout);
    let again = q.points(&name, Some("a"));
    assert_eq!(again, first, "no duplicates, points untouched");
    let ids = |v: &[Stored]| v.iter().map(|p| p.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&again), ids(&first));

    // Another tenant into the same collection: its own points, same documents.
    let before_b = q.points(&name, Some("a"));
    assert_eq!(load("b", &[]).code, 0);
    let b = q.points(&name, Some("b"));
    assert_eq!(b.len(), first.len());
    assert!(
        ids(&b).iter().all(|id| !ids(&first).contains(id)),
        "ids are per tenant"
    );
    assert_eq!(
        q.points(&name, Some("a")),
        before_b,
        "tenant a's points (ids, vectors, updated_at) are exactly as before"
    );
    assert_eq!(q.count(&name, None), 2 * first.len() as u64);
    assert_vectors_match_content(&b);
}

#[test]
fn editing_and_pruning_touch_only_this_tenant() {
    let Some(qs) = qdrant("qdrant_edit_prune") else {
        return;
    };
    let server = EmbedServer::start(&["--dim", "16"]);
    let dir = tempfile::tempdir().unwrap();
    let para = |i: usize| format!("Section {i}. {}\n\n", "Words about the topic. ".repeat(12));
    std::fs::write(
        dir.path().join("long.md"),
        (0..10).map(para).collect::<String>(),
    )
    .unwrap();
    std::fs::write(dir.path().join("gone.md"), "This file will be deleted.").unwrap();
    let name = collection("qedit");
    let state = |t: &str| std::env::temp_dir().join(format!("{name}-{t}.redb"));
    let load = |tenant: &str, extra: &[&str]| {
        let mut c = qdrant_load_cmd(&server, qs, &name, DIM);
        c.arg(dir.path())
            .args([
                "--tenant",
                tenant,
                "--chunk-tokens",
                "60",
                "--chunk-overlap",
                "6",
            ])
            .arg("--state")
            .arg(state(tenant))
            .args(extra);
        run(&mut c)
    };
    assert_eq!(load("a", &[]).code, 0);
    assert_eq!(load("b", &[]).code, 0);
    let q = qs.client();
    let b_before = q.points(&name, Some("b"));
    let count_of = |t: &str, src: &str| {
        q.points(&name, Some(t))
            .iter()
            .filter(|p| p.source == src)
            .count()
    };
    let long_before = count_of("a", "long.md");
    assert!(long_before >= 6, "{long_before}");

    std::fs::write(
        dir.path().join("long.md"),
        (0..3).map(para).collect::<String>(),
    )
    .unwrap();
    std::fs::remove_file(dir.path().join("gone.md")).unwrap();
    let r = load("a", &["--prune"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // What a clean load of the edited folder stores, for comparison.
    assert_eq!(load("fresh", &["--no-state"]).code, 0);
    let chunks = |t: &str| {
        let mut v: Vec<(String, i64, String)> = q
            .points(&name, Some(t))
            .into_iter()
            .map(|p| (p.source, p.chunk_index, p.content))
            .collect();
        v.sort();
        v
    };
    let a = q.points(&name, Some("a"));
    assert!(count_of("a", "long.md") < long_before);
    assert_eq!(
        chunks("a"),
        chunks("fresh"),
        "stale chunks of the shorter file deleted"
    );
    assert!(
        a.iter().all(|p| p.source != "gone.md"),
        "deleted file pruned"
    );
    assert_vectors_match_content(&a);
    assert_eq!(q.points(&name, Some("b")), b_before, "tenant b untouched");
}

#[test]
fn a_collection_of_another_size_is_refused_before_any_request() {
    let Some(qs) = qdrant("qdrant_wrong_size") else {
        return;
    };
    let server = EmbedServer::start(&["--dim", "16"]);
    let name = collection("qwrong");
    let q = qs.client();
    q.block(
        q.client.create_collection(
            CreateCollectionBuilder::new(&name)
                .vectors_config(VectorParamsBuilder::new(8, Distance::Cosine)),
        ),
    )
    .unwrap();
    let r = run(qdrant_load_cmd(&server, qs, &name, DIM)
        .arg(fixtures())
        .args(["--tenant", "t"]));
    assert_eq!(r.code, 2, "a target problem");
    let out = r.all_output();
    assert!(
        out.contains(&name) && out.contains("8-dimension") && out.contains("16-dimension"),
        "{out}"
    );
    assert_eq!(server.requests(), 0, "nothing paid for");
    assert_eq!(q.count(&name, None), 0);
    assert!(
        q.info(&name).payload_schema.is_empty(),
        "collection left as it was"
    );

    // Another distance is refused too.
    let r = run(qdrant_load_cmd(&server, qs, &name, 8)
        .arg(fixtures())
        .args(["--tenant", "t", "--distance", "dot"]));
    assert_eq!(r.code, 2);
    assert!(
        r.all_output().contains("cosine distance"),
        "{}",
        r.all_output()
    );
    assert_eq!(server.requests(), 0);
}

/// A collection with tuned HNSW settings (multi-tenant: m=0, payload_m=16
/// would be typical; here m=24, payload_m=12 so a default cannot pass).
fn tuned_collection(q: &QdrantDb, name: &str) {
    q.block(
        q.client.create_collection(
            CreateCollectionBuilder::new(name)
                .vectors_config(VectorParamsBuilder::new(DIM as u64, Distance::Cosine))
                .hnsw_config(HnswConfigDiffBuilder::default().m(24).payload_m(12)),
        ),
    )
    .unwrap();
}

fn slow_load(qs: &QdrantServer, server: &EmbedServer, name: &str) -> std::process::Child {
    qdrant_load_cmd(server, qs, name, DIM)
        .arg(fixtures())
        .args([
            "--tenant",
            "t",
            "--chunk-tokens",
            "40",
            "--chunk-overlap",
            "4",
        ])
        .args([
            "--batch-size",
            "2",
            "--concurrency",
            "1",
            "--write-batch",
            "2",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Polls until the run has written something (so bulk mode is on).
fn wait_for_points(q: &QdrantDb, name: &str) {
    for _ in 0..200 {
        if q.exists(name) && q.count(name, None) > 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the run wrote nothing in 10 s");
}

#[test]
fn indexing_settings_come_back_after_ctrl_c_and_after_kill_9() {
    let Some(qs) = qdrant("qdrant_bulk_restore") else {
        return;
    };
    let server = EmbedServer::start(&["--dim", "16", "--latency-ms", "200"]);
    let name = collection("qbulk");
    let q = qs.client();
    tuned_collection(&q, &name);

    // Ctrl-C mid-run.
    let child = slow_load(qs, &server, &name);
    wait_for_points(&q, &name);
    assert_eq!(
        hnsw_m(&q, &name),
        (Some(0), Some(0)),
        "HNSW off during the load"
    );
    assert!(bulk_marker(&q, &name));
    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        hnsw_m(&q, &name),
        (Some(24), Some(12)),
        "restored after Ctrl-C"
    );
    assert!(!bulk_marker(&q, &name));

    // kill -9: nothing can run, so the marker stays and the next run restores.
    let mut child = slow_load(qs, &server, &name);
    wait_until(
        "points written",
        Duration::from_secs(60),
        &mut child,
        || bulk_marker(&q, &name) && q.count(&name, Some("t")) > 0,
    );
    child.kill().unwrap();
    let _ = child.wait();
    assert_eq!(hnsw_m(&q, &name), (Some(0), Some(0)));
    assert!(bulk_marker(&q, &name), "the marker survives kill -9");
    let r = run(qdrant_load_cmd(&server, qs, &name, DIM)
        .arg(fixtures())
        .args([
            "--tenant",
            "t",
            "--chunk-tokens",
            "40",
            "--chunk-overlap",
            "4",
        ]));
    assert_eq!(r.code, 0);
    assert_eq!(
        hnsw_m(&q, &name),
        (Some(24), Some(12)),
        "the next run restores the settings from before the killed run, not its bulk ones"
    );
    assert!(!bulk_marker(&q, &name));
    assert_vectors_match_content(&q.points(&name, None));

    // --keep-indexing leaves the settings alone throughout.
    let mut child = qdrant_load_cmd(&server, qs, &name, DIM)
        .arg(fixtures())
        .args([
            "--tenant",
            "u",
            "--keep-indexing",
            "--batch-size",
            "2",
            "--concurrency",
            "1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Mid-run: the load is writing tenant u's points.
    wait_until("points of u", Duration::from_secs(60), &mut child, || {
        q.count(&name, Some("u")) > 0
    });
    assert_eq!(hnsw_m(&q, &name), (Some(24), Some(12)));
    assert!(child.wait_with_output().unwrap().status.success());
}

#[test]
fn api_key_is_used_and_never_shown() {
    if qdrant("qdrant_api_key").is_none() {
        return;
    }
    let key = "qdrant-secret-key-0123456789";
    let Some(qs) = QdrantServer::start(Some(key)) else {
        let _ = writeln!(
            std::io::stderr(),
            "=== SKIPPED qdrant_api_key: needs a `qdrant` binary on PATH to start a keyed server ==="
        );
        return;
    };
    let server = EmbedServer::start(&["--dim", "16"]);
    let name = collection("qkey");
    let r = run(qdrant_load_cmd(&server, &qs, &name, DIM)
        .arg(fixtures())
        .args(["--tenant", "t", "-vv"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.all_output().contains(key), "the key is never printed");
    assert!(qs.client().count(&name, Some("t")) > 0);

    // A wrong key: refused before any embedding request, with a hint, no key shown.
    let wrong = "wrong-key-abcdef";
    let mut c = vecload();
    c.arg("load")
        .arg(fixtures())
        .args([
            "--embed-url",
            &server.url,
            "--embed-model",
            "m",
            "--embed-dim",
            "16",
        ])
        .args(["--sink", "qdrant", "--qdrant-url", &qs.rest_url])
        .args([
            "--qdrant-grpc-url",
            &qs.grpc_url,
            "--collection",
            &name,
            "--no-state",
        ])
        .env("QDRANT_API_KEY", wrong);
    let sent = server.requests();
    let r = run(&mut c);
    assert_eq!(r.code, 2);
    let out = r.all_output();
    assert!(out.contains("QDRANT_API_KEY"), "{out}");
    assert!(!out.contains(wrong), "{out}");
    assert_eq!(server.requests(), sent);
}

#[test]
fn rest_port_given_as_grpc_gets_a_clear_message() {
    let Some(qs) = qdrant("qdrant_rest_port") else {
        return;
    };
    let server = EmbedServer::start(&["--dim", "16"]);
    let mut c = vecload();
    c.arg("load")
        .arg(fixtures())
        .args([
            "--embed-url",
            &server.url,
            "--embed-model",
            "m",
            "--embed-dim",
            "16",
        ])
        .args([
            "--sink",
            "qdrant",
            "--qdrant-grpc-url",
            &qs.rest_url,
            "--no-state",
        ]);
    if let Some(k) = &qs.api_key {
        c.args(["--qdrant-api-key", k]);
    }
    let r = run(&mut c);
    assert_eq!(r.code, 2);
    assert!(r.all_output().contains("6334"), "{}", r.all_output());
    assert_eq!(server.requests(), 0);
}

#[test]
fn plan_checks_the_collection_without_creating_or_paying() {
    let Some(qs) = qdrant("qdrant_plan") else {
        return;
    };
    let server = EmbedServer::start(&["--dim", "16"]);
    let name = collection("qplan");
    let plan = |dim: usize| {
        let mut c = vecload();
        c.arg("plan")
            .arg(fixtures())
            .args(["--embed-url", &server.url, "--embed-model", "m"])
            .args(["--embed-dim", &dim.to_string(), "--collection", &name])
            .args(qs.args());
        run(&mut c)
    };
    let q = qs.client();
    assert_eq!(plan(DIM).code, 0, "a missing collection is no problem");
    assert_eq!(server.requests(), 0, "plan sends no embedding request");
    assert!(!q.exists(&name), "plan creates nothing");
    assert_eq!(
        run(qdrant_load_cmd(&server, qs, &name, DIM).arg(fixtures())).code,
        0
    );
    let paid = server.requests();
    let r = plan(32);
    assert_eq!(r.code, 2);
    assert!(
        r.all_output().contains("16-dimension"),
        "{}",
        r.all_output()
    );
    assert_eq!(server.requests(), paid);
}

#[test]
fn a_crash_after_qdrants_ack_but_before_the_state_costs_nothing_again() {
    let Some(qs) = qdrant("qdrant_crash_after_ack") else {
        return;
    };
    let server = EmbedServer::start(&["--dim", "16"]);
    let name = collection("qack");
    let sizing = CRASH_POINT_SIZING;
    let r = run(qdrant_load_cmd(&server, qs, &name, DIM)
        .arg(fixtures())
        .args(sizing)
        .env("VECLOAD_CRASH_AFTER_ACKS", "2"));
    assert_ne!(r.code, 0, "the crash point fired");
    let q = qs.client();
    let before = q.count(&name, None);
    assert!(before >= 2, "two batches were acknowledged: {before}");
    let schema = q.info(&name).payload_schema;
    assert!(
        schema.contains_key("tenant_id") && !schema.contains_key("doc_id"),
        "killed before its finish: the document index was not built yet"
    );
    let report = std::env::temp_dir().join(format!("{name}.json"));
    let r = run(qdrant_load_cmd(&server, qs, &name, DIM)
        .arg(fixtures())
        .args(sizing)
        .arg("--report")
        .arg(&report));
    assert_eq!(r.code, 0);
    let rep = read_report(&report);
    let found = rep["chunks_found_on_resume"].as_u64().unwrap();
    // Acknowledgements are not synced before the next write: the crash
    // may take both batches' records with it, never the points.
    assert!(found >= 1 && found <= before, "found {found}");
    assert_eq!(rep["chunks_unchanged"].as_u64(), Some(before));
    assert_eq!(rep["tenant_rows"], rep["expected_rows"]);
    assert_vectors_match_content(&q.points(&name, None));
    let schema = q.info(&name).payload_schema;
    assert!(
        schema.contains_key("doc_id") && schema.contains_key("shard_bucket"),
        "the rerun made the indexes the killed run left undone: {schema:?}"
    );
}

#[test]
fn https_with_an_api_key_and_a_private_ca() {
    if qdrant("qdrant_https").is_none() {
        return;
    }
    let certs = test_certs("localhost");
    let key = "tls-api-key-0123456789";
    let Some(qs) = QdrantServer::start_with(Some(key), Some((&certs.cert_pem, &certs.key_pem)))
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &certs.ca_pem).unwrap();
    let server = EmbedServer::start(&["--dim", "16"]);
    let name = collection("qtls");
    // The server needs a moment after it starts listening.
    let mut r = None;
    for _ in 0..20 {
        let out = run(qdrant_load_cmd(&server, &qs, &name, DIM)
            .arg(fixtures())
            .args(["--tenant", "t"])
            .env("SSL_CERT_FILE", &ca));
        if out.code == 0 || !out.all_output().contains("cannot reach") {
            r = Some(out);
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let r = r.expect("the TLS server came up");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("https://localhost:"), "{}", r.stdout);
    assert!(!r.all_output().contains(key));

    // Without the CA the certificate is not trusted: refused before any request.
    let sent = server.requests();
    let r = run(qdrant_load_cmd(&server, &qs, &name, DIM)
        .arg(fixtures())
        .args(["--tenant", "u"])
        .env("SSL_CERT_FILE", dir.path().join("missing.pem")));
    assert_eq!(r.code, 2, "{}", r.all_output());
    assert!(
        r.all_output().contains("SSL_CERT_FILE"),
        "{}",
        r.all_output()
    );
    assert_eq!(server.requests(), sent);
}

#[test]
fn indexing_settings_come_back_after_a_fatal_error() {
    let Some(qs) = qdrant("qdrant_restore_after_error") else {
        return;
    };
    // Every request refused: the run stops at its first answer.
    let server = EmbedServer::start(&[
        "--dim",
        "16",
        "--fail-first",
        "1000",
        "--fail-status",
        "401",
    ]);
    let name = collection("qfatal");
    let q = qs.client();
    tuned_collection(&q, &name);
    let r = run(qdrant_load_cmd(&server, qs, &name, DIM)
        .arg(fixtures())
        .args(["--tenant-id", "t"]));
    assert_eq!(r.code, 1, "{}", r.all_output());
    assert!(r.all_output().contains("401"), "{}", r.all_output());
    assert_eq!(hnsw_m(&q, &name), (Some(24), Some(12)));
    assert!(!bulk_marker(&q, &name));
    assert_eq!(q.count(&name, None), 0);
}

/// `--qdrant-ack wal`: upserts acknowledged from Qdrant's write-ahead log
/// (`wait=false`); the finish waits for every shard to apply them before
/// it counts, so the count is exact and every point has its vector. A
/// replicated collection is refused for it before anything is paid for.
#[test]
fn acknowledged_from_the_wal_every_point_is_applied_before_the_count() {
    let Some(qs) = qdrant("qdrant_ack_wal") else {
        return;
    };
    let server = EmbedServer::start(&["--dim", "16"]);
    let dir = tempfile::tempdir().unwrap();
    for i in 0..200 {
        let text: String = (0..90)
            .map(|w| format!("w{} ", (i * 13 + w) % 97))
            .collect();
        std::fs::write(dir.path().join(format!("d{i:03}.md")), text).unwrap();
    }
    let name = collection("qwal");
    let report = std::env::temp_dir().join(format!("{name}.json"));
    let r = run(qdrant_load_cmd(&server, qs, &name, DIM)
        .arg(dir.path())
        .args(["--qdrant-ack", "wal", "--shard-number", "4"])
        .args(["--chunk-tokens", "40", "--chunk-overlap", "4"])
        .args(["--write-batch", "16", "--write-concurrency", "4"])
        .arg("--report")
        .arg(&report));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rep = read_report(&report);
    let chunks = rep["chunks"].as_u64().unwrap();
    assert!(chunks > 400, "{chunks} chunks");
    assert_eq!(
        rep["tenant_rows"].as_u64(),
        Some(chunks),
        "exact count after the barrier"
    );
    let points = qs.client().points(&name, None);
    assert_eq!(points.len() as u64, chunks);
    assert_vectors_match_content(&points);

    // Into the existing collection, indexing left on: nothing else between
    // the last upsert and the count waits for the shards but the barrier.
    let report = std::env::temp_dir().join(format!("{name}-b.json"));
    let r = run(qdrant_load_cmd(&server, qs, &name, DIM)
        .arg(dir.path())
        .args([
            "--tenant",
            "second",
            "--qdrant-ack",
            "wal",
            "--keep-indexing",
        ])
        .args(["--chunk-tokens", "40", "--chunk-overlap", "4"])
        .args(["--write-batch", "16", "--write-concurrency", "4"])
        .arg("--state")
        .arg(state_path(&format!("{name}-b")))
        .arg("--report")
        .arg(&report));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rep = read_report(&report);
    assert_eq!(
        rep["tenant_rows"].as_u64(),
        Some(chunks),
        "exact count after the barrier"
    );
    assert_eq!(qs.client().count(&name, Some("second")), chunks);

    let fresh = EmbedServer::start(&["--dim", "16"]);
    let replicated = collection("qwalrep");
    let r = run(qdrant_load_cmd(&fresh, qs, &replicated, DIM)
        .arg(dir.path())
        .args(["--qdrant-ack", "wal", "--replication-factor", "2"]));
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("replicas"), "{}", r.stderr);
    assert_eq!(fresh.requests(), 0, "refused before any request");
}
