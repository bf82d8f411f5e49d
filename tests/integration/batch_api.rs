//! `load --batch-api`: the same rows as the synchronous path, at the batch
//! price, through the test server's OpenAI Files and Batches endpoints
//! (vectors the same pure function of the text); a kill while waiting
//! submits nothing twice; an expired batch's undone half is resubmitted
//! once and a refused line is handled the synchronous way.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::*;

const DIM: usize = 16;

/// `docs` small documents in a folder of their own, plus `extra`.
fn corpus(docs: usize, extra: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..docs {
        std::fs::write(
            dir.path().join(format!("note-{i:03}.md")),
            format!("Note {i}: the batch API embeds this at half the price, overnight."),
        )
        .unwrap();
    }
    for (name, text) in extra {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

/// (content, vector) of every row, sorted by content.
fn rows(db: &Db, table: &str) -> Vec<(String, Vec<f32>)> {
    let mut out: Vec<(String, Vec<f32>)> = db
        .query(&format!("SELECT content, embedding FROM \"{table}\""), &[])
        .iter()
        .map(|r| (r.get(0), r.get::<_, pgvector::Vector>(1).to_vec()))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn batch_cmd(server: &EmbedServer, pg: &str, table: &str) -> std::process::Command {
    let mut c = load_cmd(server, pg, table, DIM);
    c.args(["--batch-api", "--batch-poll", "0.2", "--batch-size", "2"]);
    c
}

fn stat(server: &EmbedServer, name: &str) -> u64 {
    server.stats()[name].as_u64().unwrap_or(0)
}

/// Inputs paid for (synchronous, and in batches once every batch made has
/// run to its end, polled or not): what the provider bills.
fn paid(server: &EmbedServer) -> u64 {
    server.settled_stats()["inputs"].as_u64().unwrap_or(0)
}

#[test]
fn a_batch_api_load_stores_what_the_synchronous_load_stores_without_a_synchronous_request() {
    let Some(pg) = pg_url("batch_api_same_rows") else {
        return;
    };
    let docs = corpus(40, &[]);
    let sync_server = EmbedServer::start(&["--dim", "16"]);
    let sync_table = unique_table("batch_sync");
    let r = run(load_cmd(&sync_server, &pg, &sync_table, DIM)
        .arg(docs.path())
        .args(["--batch-size", "2"]));
    assert_eq!(r.code, 0);

    let server = EmbedServer::start(&["--dim", "16", "--batch-seconds", "0.5"]);
    let table = unique_table("batch_api");
    // plan --batch-api: the batches it would make, at half the price.
    let p = run(pg_cmd("plan", &server, &pg, &table, DIM)
        .arg(docs.path())
        .args([
            "--batch-api",
            "--batch-size",
            "2",
            "--batch-max-requests",
            "8",
        ])
        .args(["--price-per-million-tokens", "0.02", "--json"]));
    assert_eq!(p.code, 0);
    let plan: serde_json::Value = serde_json::from_str(&p.stdout).unwrap();
    assert_eq!(plan["batch_api"]["batches"], 3);
    assert_eq!(plan["batch_api"]["price_per_million_tokens"], 0.01);
    let (sync_cost, batch_cost) = (
        plan["estimated_cost_usd"].as_f64().unwrap(),
        plan["batch_api"]["estimated_cost_usd"].as_f64().unwrap(),
    );
    assert!(sync_cost > 0.0 && (batch_cost - sync_cost / 2.0).abs() < 1e-12);
    let report = docs.path().join("r.json");
    let r = run(batch_cmd(&server, &pg, &table)
        .arg(docs.path())
        .args(["--batch-max-requests", "8", "--report"])
        .arg(&report));
    assert_eq!(r.code, 0);
    let db = Db::connect(&pg);
    let (want, got) = (rows(&db, &sync_table), rows(&db, &table));
    assert_eq!(got.len(), 40);
    assert_eq!(
        got, want,
        "the same contents and vectors as the synchronous load"
    );
    assert_eq!(
        table_rows(&db, &table)
            .iter()
            .map(|r| &r.0)
            .collect::<Vec<_>>(),
        table_rows(&db, &sync_table)
            .iter()
            .map(|r| &r.0)
            .collect::<Vec<_>>(),
        "the same ids"
    );
    assert_eq!(server.requests(), 0, "nothing was sent synchronously");
    // 40 chunks, 2 a request, 8 requests a file: 3 batches.
    assert_eq!(stat(&server, "batches_created"), 3);
    assert_eq!(stat(&server, "batch_requests"), 20);
    let rep = read_report(&report);
    assert_eq!(rep["vectors_from_batches"], 40);
    assert_eq!(rep["batches"]["submitted"], 3);
    assert_eq!(rep["batches"]["inputs_answered"], 40);

    // Unchanged: no batch, no request; the records of the batches are gone.
    let r = run(batch_cmd(&server, &pg, &table).arg(docs.path()));
    assert_eq!(r.code, 0);
    assert_eq!(stat(&server, "batches_created"), 3);
    assert_eq!(server.requests(), 0);
    assert!(
        !std::path::Path::new(&format!("{}.batch-results", state_path(&table).display())).exists(),
        "the results of written batches are removed"
    );
}

#[test]
fn a_load_killed_while_waiting_for_its_batch_picks_it_up_and_submits_nothing_twice() {
    let Some(pg) = pg_url("batch_api_kill") else {
        return;
    };
    let docs = corpus(24, &[]);
    let server = EmbedServer::start(&["--dim", "16", "--batch-seconds", "3"]);
    let table = unique_table("batch_kill");
    let mut child = batch_cmd(&server, &pg, &table)
        .arg(docs.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while stat(&server, "batches_created") < 1 {
        assert!(Instant::now() < deadline, "no batch was made within 60 s");
        assert!(child.try_wait().unwrap().is_none(), "the load ended early");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Polled: its id is recorded, well before it is done.
    wait_for(&server, "batch_polls", 1, &mut child);
    child.kill().unwrap();
    child.wait().unwrap();
    let db = Db::connect(&pg);
    assert!(
        !db.table_exists(&table) || db.count(&table) == 0,
        "nothing was written before the batch was done"
    );

    // `vecload batches`, with the load's arguments, says what waits.
    let listed = run(pg_cmd("batches", &server, &pg, &table, DIM)
        .arg(docs.path())
        .arg("--state")
        .arg(state_path(&table))
        .arg("--json"));
    assert_eq!(listed.code, 0);
    let views: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    assert_eq!(views.as_array().unwrap().len(), 1, "{views}");
    assert_eq!(views[0]["requests"], 12);
    assert!(views[0]["batch_id"].as_str().unwrap().starts_with("batch_"));
    let r = run(batch_cmd(&server, &pg, &table).arg(docs.path()));
    assert_eq!(r.code, 0);
    assert_eq!(
        stat(&server, "batches_created"),
        1,
        "the batch was not made again"
    );
    assert_eq!(server.requests(), 0);
    let got = rows(&db, &table);
    assert_eq!(got.len(), 24);
    for (content, vector) in &got {
        assert_eq!(
            vector,
            &embedding_test_server::vector_for(content, DIM),
            "{content:?} has its own vector"
        );
    }
}

#[test]
fn an_expired_batch_is_completed_once_more_and_a_refused_input_goes_the_synchronous_way() {
    let Some(pg) = pg_url("batch_api_expired") else {
        return;
    };
    let long = format!(
        "A long record that the model refuses: {}",
        "every word of it matters. ".repeat(14)
    );
    assert!(long.len() > 300);
    let docs = corpus(20, &[("long.md", &long)]);
    let server = EmbedServer::start(&[
        "--dim",
        "16",
        "--batch-seconds",
        "0.3",
        "--batch-expire-first",
        "1",
        "--max-input-bytes",
        "300",
    ]);
    let table = unique_table("batch_expired");
    let report = docs.path().join("r.json");
    let r = run(batch_cmd(&server, &pg, &table)
        .arg(docs.path())
        .args(["--chunk-tokens", "200", "--report"])
        .arg(&report));
    assert_eq!(r.code, 0);
    // The first batch expired half done; its undone half went into one more.
    assert_eq!(stat(&server, "batches_created"), 2);
    let db = Db::connect(&pg);
    let got = rows(&db, &table);
    assert_eq!(got.len(), 21);
    for (content, vector) in &got {
        assert_eq!(
            vector,
            &vector_in_parts(content, 300, DIM),
            "{content:?} has its own vector"
        );
    }
    // Only the refused request went synchronously (the long input in parts).
    let sent = server.requests();
    assert!((2..=6).contains(&sent), "{sent} synchronous requests");
    let rep = read_report(&report);
    assert_eq!(rep["failed_chunks"], 0);
    assert_eq!(rep["vectors_from_batches"], 19);
    assert_eq!(rep["batches"]["inputs_answered"], 19);
    assert_eq!(
        rep["batches"]["inputs_failed"], 2,
        "the refused request's two inputs"
    );
    assert!(rep["chunks_embedded_in_parts"].as_u64().unwrap() >= 1);
}

#[test]
fn a_batch_made_just_before_a_crash_is_found_by_its_file_and_not_made_again() {
    let Some(pg) = pg_url("batch_api_adopt") else {
        return;
    };
    let docs = corpus(12, &[]);
    let server = EmbedServer::start(&["--dim", "16", "--batch-seconds", "0.3"]);
    let table = unique_table("batch_adopt");
    // Aborts right after the batch is made, before its id is recorded.
    let r = run(batch_cmd(&server, &pg, &table)
        .arg(docs.path())
        .env("VECLOAD_CRASH_AFTER_BATCH_CREATE", "1"));
    assert_ne!(r.code, 0);
    assert_eq!(stat(&server, "batches_created"), 1);
    let r = run(batch_cmd(&server, &pg, &table).arg(docs.path()));
    assert_eq!(r.code, 0);
    assert!(
        r.all_output()
            .contains("was made before the last run stopped"),
        "the batch is adopted"
    );
    assert_eq!(stat(&server, "batches_created"), 1, "not made again");
    assert_eq!(server.requests(), 0);
    let db = Db::connect(&pg);
    assert_eq!(rows(&db, &table).len(), 12);
}

#[test]
fn with_batch_fallback_sync_what_an_expired_batch_left_undone_is_sent_at_once() {
    let Some(pg) = pg_url("batch_api_fallback_sync") else {
        return;
    };
    let docs = corpus(16, &[]);
    let server = EmbedServer::start(&[
        "--dim",
        "16",
        "--batch-seconds",
        "0.3",
        "--batch-expire-first",
        "1",
    ]);
    let table = unique_table("batch_fallback");
    let report = docs.path().join("r.json");
    let r = run(batch_cmd(&server, &pg, &table)
        .arg(docs.path())
        .args(["--batch-fallback", "sync", "--report"])
        .arg(&report));
    assert_eq!(r.code, 0);
    assert_eq!(stat(&server, "batches_created"), 1, "nothing resubmitted");
    // 16 inputs, 2 a request: the expired batch did 4 of its 8 requests.
    assert_eq!(stat(&server, "batch_requests"), 4);
    assert_eq!(
        server.stats()["inputs"].as_u64().unwrap(),
        16,
        "8 by batch, 8 synchronously"
    );
    let rep = read_report(&report);
    assert_eq!(rep["vectors_from_batches"], 8);
    assert_eq!(rep["batches"]["inputs_failed"], 8);
    let db = Db::connect(&pg);
    for (content, vector) in rows(&db, &table) {
        assert_eq!(vector, embedding_test_server::vector_for(&content, DIM));
    }
}

#[test]
fn a_sigterm_while_waiting_ends_the_run_and_cancelled_batches_leave_the_rest_to_the_synchronous_path()
 {
    let Some(pg) = pg_url("batch_api_cancel") else {
        return;
    };
    let docs = corpus(10, &[]);
    let server = EmbedServer::start(&["--dim", "16", "--batch-seconds", "600"]);
    let table = unique_table("batch_cancel");
    let mut child = batch_cmd(&server, &pg, &table)
        .arg(docs.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while stat(&server, "batches_created") < 1 {
        assert!(Instant::now() < deadline, "no batch was made within 60 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Polled: the batch is recorded with its id.
    wait_for(&server, "batch_polls", 1, &mut child);
    // ECS and Kubernetes stop a task with SIGTERM: the wait ends at once,
    // interrupted, and the batches stay recorded.
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "SIGTERM did not end the wait");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(130), "interrupted");
    let batches = |extra: &[&str]| {
        run(pg_cmd("batches", &server, &pg, &table, DIM)
            .arg(docs.path())
            .arg("--state")
            .arg(state_path(&table))
            .args(extra))
    };
    let r = batches(&["--cancel"]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("cancelled"), "{}", r.stdout);
    let r = run(batch_cmd(&server, &pg, &table)
        .arg(docs.path())
        .args(["--batch-fallback", "sync"]));
    assert_eq!(r.code, 0);
    assert_eq!(stat(&server, "batches_created"), 1);
    assert_eq!(
        server.stats()["inputs"].as_u64().unwrap(),
        10,
        "all sent synchronously"
    );
    let db = Db::connect(&pg);
    assert_eq!(rows(&db, &table).len(), 10);
    let r = batches(&[]);
    assert!(
        r.stdout.contains("none recorded"),
        "written batches are forgotten: {}",
        r.stdout
    );
}

#[test]
fn a_reembedding_through_batches_survives_a_kill_verifies_and_switches() {
    let Some(pg) = pg_url("batch_api_reembed") else {
        return;
    };
    let docs = corpus(30, &[]);
    let old_server = EmbedServer::start(&["--dim", "16"]);
    let source = unique_table("batch_src");
    let r = run(load_cmd(&old_server, &pg, &source, DIM).arg(docs.path()));
    assert_eq!(r.code, 0);

    const NEW: usize = 24;
    let server = EmbedServer::start(&["--dim", "24", "--batch-seconds", "3"]);
    let target = unique_table("batch_new");
    let state = state_path(&target);
    let reembed = || {
        let mut c = vecload();
        c.args(["reembed", "--from", &format!("pgvector:{source}")])
            .args(["--embed-url", &server.url, "--embed-model", "model-b"])
            .args(["--embed-dim", &NEW.to_string(), "--progress", "log"])
            .args(["--pg-url", &pg, "--table", &target])
            .args(["--batch-api", "--batch-poll", "0.2", "--batch-size", "4"])
            .arg("--state")
            .arg(&state);
        c
    };
    let mut child = reembed()
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while stat(&server, "batches_created") < 1 {
        assert!(Instant::now() < deadline, "no batch was made within 60 s");
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_for(&server, "batch_polls", 1, &mut child);
    child.kill().unwrap();
    child.wait().unwrap();

    let report = docs.path().join("reembed.json");
    let live = unique_table("batch_live");
    let r = run(reembed().args(["--switch", &live, "--report"]).arg(&report));
    assert_eq!(r.code, 0, "{}", r.all_output());
    assert_eq!(
        stat(&server, "batches_created"),
        1,
        "the batch was not made again"
    );
    assert_eq!(server.requests(), 0, "nothing sent synchronously");
    let rep = read_report(&report);
    assert_eq!(rep["verified"], true);
    assert_eq!(rep["vectors_from_batches"], 30);
    assert!(rep["switched"].is_string(), "{rep}");
    // The name the RAG API reads now holds the new vectors.
    let db = Db::connect(&pg);
    let got = rows(&db, &live);
    assert_eq!(got.len(), 30);
    for (content, vector) in &got {
        assert_eq!(vector, &embedding_test_server::vector_for(content, NEW));
    }
    assert!(
        !std::path::Path::new(&format!("{}.batch-results", state.display())).exists(),
        "written batches are forgotten"
    );
}

/// A batch load that cannot hang a test run.
fn batch_run(cmd: &mut std::process::Command) -> Run {
    run_within(cmd, Duration::from_secs(120))
}

/// Waits until the server's counter `name` is at least `n`.
fn wait_for(server: &EmbedServer, name: &str, n: u64, child: &mut std::process::Child) {
    wait_until(name, Duration::from_secs(60), child, || {
        stat(server, name) >= n
    });
}

/// Every row holds the test server's vector of its own text.
fn assert_own_vectors(db: &Db, table: &str, want_rows: usize) {
    let got = rows(db, table);
    assert_eq!(got.len(), want_rows);
    for (content, vector) in &got {
        assert_eq!(
            vector,
            &embedding_test_server::vector_for(content, DIM),
            "{content:?} has its own vector"
        );
    }
}

/// A batch that failed validation (the enqueued-token limit) or expired
/// with nothing done ran nothing and cost nothing: what it held is paid
/// for once, by the next batch (resubmit) or synchronously (sync), and
/// every batch made is read. Counted at the server.
#[test]
fn a_failed_or_empty_expired_batch_is_paid_for_once_whatever_the_fallback() {
    let Some(pg) = pg_url("batch_api_failed_once") else {
        return;
    };
    // Two texts, one request: the file submitted again is byte-identical
    // to the first (as for a small per-tenant backfill).
    let docs = corpus(2, &[]);
    let cases: [(&str, &[&str]); 2] = [
        ("failed validation", &["--batch-fail-first", "1"]),
        (
            "expired with nothing done",
            &["--batch-expire-first", "1", "--batch-expire-done", "0"],
        ),
    ];
    for (case, fault) in cases {
        for fallback in ["resubmit", "sync"] {
            let mut args = vec!["--dim", "16", "--batch-seconds", "0.2"];
            args.extend_from_slice(fault);
            let server = EmbedServer::start(&args);
            let table = unique_table("batch_once");
            let report = docs.path().join(format!("r-{fallback}.json"));
            let r = batch_run(
                batch_cmd(&server, &pg, &table)
                    .arg(docs.path())
                    .args(["--batch-fallback", fallback, "--report"])
                    .arg(&report),
            );
            assert_eq!(r.code, 0, "{case}, {fallback}");
            let rep = read_report(&report);
            let made = stat(&server, "batches_created");
            assert_eq!(
                paid(&server),
                2,
                "{case}, {fallback}: every input paid for once (batch or synchronous)"
            );
            assert_eq!(
                rep["batches"]["batches"], made,
                "{case}, {fallback}: every batch made was read"
            );
            if fallback == "resubmit" {
                assert_eq!(made, 2, "{case}: submitted once more");
                assert_eq!(stat(&server, "batch_inputs"), 2, "{case}");
                assert_eq!(server.requests(), 0, "{case}: nothing synchronous");
                assert_eq!(rep["chunks_embedded_synchronously"], 0, "{case}");
                assert_eq!(rep["vectors_from_batches"], 2, "{case}");
            } else {
                assert_eq!(made, 1, "{case}: nothing resubmitted");
                assert_eq!(stat(&server, "batch_inputs"), 0, "{case}");
                assert_eq!(rep["chunks_embedded_synchronously"], 2, "{case}");
                assert_eq!(rep["batches"]["inputs_undone"], 2, "{case}");
                assert!(
                    r.stdout
                        .contains("2 left undone by every batch they were in"),
                    "{case}: the summary says why: {}",
                    r.stdout
                );
            }
            assert_own_vectors(&Db::connect(&pg), &table, 2);
        }
    }
}

/// The same text in three documents is one input of one request: its
/// batch files are not byte-identical copies, and with failed batches the
/// byte-identical resubmissions are each polled and read.
#[test]
fn identical_texts_are_paid_for_once_and_identical_resubmitted_files_are_each_read() {
    let Some(pg) = pg_url("batch_api_identical") else {
        return;
    };
    let same = "The same paragraph, copied into three documents of one tenant.";
    let docs = corpus(
        0,
        &[
            ("a.md", same),
            ("b.md", same),
            ("c.md", same),
            ("d.md", "Another paragraph, in a document of its own."),
        ],
    );
    // (batches failing, fallback, batches made, inputs paid by batch, in all):
    // the synchronous path pays per chunk, as a synchronous load does.
    for (fails, fallback, made, batch_inputs, paid_for) in [
        ("0", "resubmit", 2, 2, 2),
        ("2", "resubmit", 4, 2, 2),
        ("2", "sync", 2, 0, 4),
    ] {
        let server = EmbedServer::start(&[
            "--dim",
            "16",
            "--batch-seconds",
            "0.2",
            "--batch-fail-first",
            fails,
        ]);
        let table = unique_table("batch_identical");
        let report = docs.path().join("r.json");
        let r = batch_run(
            batch_cmd(&server, &pg, &table)
                .arg(docs.path())
                .args(["--batch-size", "1", "--batch-max-requests", "1"])
                .args(["--batch-fallback", fallback, "--report"])
                .arg(&report),
        );
        assert_eq!(r.code, 0);
        let case = format!("{fails} failing, {fallback}");
        assert_eq!(stat(&server, "batches_created"), made, "{case}");
        assert_eq!(paid(&server), paid_for, "{case}");
        assert_eq!(stat(&server, "batch_inputs"), batch_inputs, "{case}");
        let rep = read_report(&report);
        assert_eq!(rep["batches"]["batches"], made, "{case}: each batch read");
        assert_own_vectors(&Db::connect(&pg), &table, 4);
    }
}

/// `vecload batches --cancel` twice: each cancellation is one try of the
/// inputs of its batch, however often a text stood in it, so the second
/// batch holds every input of the first, and what the second leaves goes
/// synchronously, paid for once.
#[test]
fn two_cancellations_in_a_row_use_one_try_each_and_pay_once() {
    let Some(pg) = pg_url("batch_api_cancel_twice") else {
        return;
    };
    let twice = "A paragraph that stands in two documents.";
    let docs = corpus(5, &[("x.md", twice), ("y.md", twice)]);
    let server = EmbedServer::start(&["--dim", "16", "--batch-seconds", "600"]);
    let table = unique_table("batch_cancel_twice");
    let stop_waiting = |polls_before: u64| {
        let mut child = batch_cmd(&server, &pg, &table)
            .arg(docs.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Polled: the batch is recorded with its id.
        wait_for(&server, "batch_polls", polls_before + 1, &mut child);
        let ok = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                assert_eq!(s.code(), Some(130), "interrupted");
                break;
            }
            assert!(Instant::now() < deadline, "SIGTERM did not end the wait");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let batches = |extra: &[&str]| {
        let r = run(pg_cmd("batches", &server, &pg, &table, DIM)
            .arg(docs.path())
            .arg("--state")
            .arg(state_path(&table))
            .args(["--json"])
            .args(extra));
        assert_eq!(r.code, 0);
        serde_json::from_str::<serde_json::Value>(&r.stdout).unwrap()
    };
    stop_waiting(0);
    assert_eq!(
        batches(&[])[0]["inputs"],
        6,
        "six texts, the twice one once"
    );
    batches(&["--cancel"]);
    // The cancelled batch is read, its inputs go into a second batch.
    let polls = stat(&server, "batch_polls");
    stop_waiting(polls + 1);
    assert_eq!(stat(&server, "batches_created"), 2);
    let second: Vec<serde_json::Value> = batches(&[])
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["status"] != "cancelled")
        .cloned()
        .collect();
    assert_eq!(second.len(), 1);
    assert_eq!(
        second[0]["inputs"], 6,
        "every input is in the second batch, the twice one too"
    );
    batches(&["--cancel"]);
    let report = docs.path().join("r.json");
    let r = batch_run(
        batch_cmd(&server, &pg, &table)
            .arg(docs.path())
            .arg("--report")
            .arg(&report),
    );
    assert_eq!(r.code, 0);
    assert_eq!(stat(&server, "batches_created"), 2, "no third batch");
    // Seven chunks of six texts, sent as a synchronous load sends them.
    assert_eq!(paid(&server), 7, "paid for once, synchronously");
    assert_eq!(stat(&server, "batch_inputs"), 0);
    let rep = read_report(&report);
    assert_eq!(rep["batches"]["inputs_undone"], 6);
    assert_eq!(rep["chunks_embedded_synchronously"], 7);
    assert_own_vectors(&Db::connect(&pg), &table, 7);
}
