//! Resume and incremental runs: unchanged input costs nothing, a changed
//! document costs only its changed chunks and loses its stale ones, kill -9
//! anywhere resumes to the store one clean run gives, --prune removes
//! deleted documents of this tenant only.

use std::process::Stdio;
use std::time::Duration;

use crate::common::*;

const DIM: usize = 16;

fn inputs(server: &EmbedServer) -> u64 {
    server.stats()["inputs"].as_u64().unwrap()
}

#[test]
fn editing_one_file_reembeds_only_its_changed_chunks_and_deletes_its_stale_ones() {
    let Some(pg) = pg_url("edit_one_file") else {
        return;
    };
    let server = EmbedServer::start(&["--dim", "16"]);
    let dir = tempfile::tempdir().unwrap();
    let para = |i: usize| {
        format!(
            "Paragraph {i} of the handbook. {}\n\n",
            "Details follow here. ".repeat(12)
        )
    };
    let long: String = (0..12).map(para).collect();
    std::fs::write(dir.path().join("handbook.md"), &long).unwrap();
    std::fs::write(dir.path().join("other.md"), "A document nobody edits.").unwrap();
    let table = unique_table("edit");
    let sizing = ["--chunk-tokens", "80", "--chunk-overlap", "8"];
    assert_eq!(
        run(load_cmd(&server, &pg, &table, DIM)
            .arg(dir.path())
            .args(sizing))
        .code,
        0
    );
    let db = Db::connect(&pg);
    let handbook_rows = |db: &Db| -> i64 {
        db.query(
            &format!("SELECT count(*) FROM \"{table}\" WHERE source = 'handbook.md'"),
            &[],
        )[0]
        .get(0)
    };
    let before = handbook_rows(&db);
    assert!(before >= 8, "the handbook has many chunks: {before}");

    // Keep the first half, change one paragraph in it.
    let short: String = (0..6)
        .map(|i| {
            if i == 2 {
                "Paragraph 2 was rewritten entirely.\n\n".to_string()
            } else {
                para(i)
            }
        })
        .collect();
    std::fs::write(dir.path().join("handbook.md"), &short).unwrap();
    let sent = inputs(&server);
    let report = dir.path().join("r.json");
    let r = run(load_cmd(&server, &pg, &table, DIM)
        .arg(dir.path())
        .args(sizing)
        .arg("--report")
        .arg(&report));
    assert_eq!(r.code, 0);
    let rep = read_report(&report);
    let paid = inputs(&server) - sent;
    let after = handbook_rows(&db);
    assert!(
        after < before,
        "the shorter handbook has fewer rows ({after} < {before})"
    );
    assert!(
        paid > 0 && paid < after as u64,
        "only changed chunks were embedded: {paid} of {after}"
    );
    assert_eq!(
        rep["chunks_unchanged"].as_u64(),
        Some(after as u64 - paid + 1),
        "{rep}"
    );
    assert!(rep["stale_chunks_deleted"].as_u64().unwrap() > 0);

    // The result equals a clean load of the new content.
    let clean = unique_table("editclean");
    assert_eq!(
        run(load_cmd(&server, &pg, &clean, DIM)
            .arg(dir.path())
            .args(sizing))
        .code,
        0
    );
    assert_eq!(table_rows(&db, &table), table_rows(&db, &clean));
}

#[test]
fn kill_9_at_several_points_then_resume_gives_the_store_of_one_clean_run() {
    let Some(pg) = pg_url("kill_9_resume") else {
        return;
    };
    // Slow enough (59 requests, 2 in flight: ~9 s a run) that all three kills
    // land mid-run on a fast or a slow machine.
    let server = EmbedServer::start(&["--dim", "16", "--latency-ms", "300"]);
    let sizing = [
        "--chunk-tokens",
        "50",
        "--chunk-overlap",
        "5",
        "--batch-size",
        "3",
        "--concurrency",
        "2",
        "--write-batch",
        "4",
    ];
    let clean = unique_table("k9clean");
    assert_eq!(
        run(load_cmd(&server, &pg, &clean, DIM)
            .arg(fixtures())
            .args(sizing)
            .arg("--no-state"))
        .code,
        0
    );
    let db = Db::connect(&pg);
    let want = table_rows(&db, &clean);
    let chunks = want.len() as u64;

    let table = unique_table("k9");
    let sent_before = inputs(&server);
    // Killed once a quarter, a half, three quarters of the rows are in
    // the store: each kill lands mid-run, whatever the machine's speed.
    let kills = [chunks / 4, chunks / 2, chunks * 3 / 4];
    for at in kills {
        let mut child = load_cmd(&server, &pg, &table, DIM)
            .arg(fixtures())
            .args(sizing)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_until(
            &format!("{at} rows written"),
            Duration::from_secs(60),
            &mut child,
            || rows_in(&db, &table) >= at,
        );
        child.kill().unwrap(); // SIGKILL: no chance to clean up
        child.wait().unwrap();
    }
    let rows_killed = db.count(&table);
    assert!(
        rows_killed > 0 && (rows_killed as u64) < chunks,
        "the kills hit mid-run ({rows_killed} of {chunks})"
    );
    let r = run(load_cmd(&server, &pg, &table, DIM)
        .arg(fixtures())
        .args(sizing));
    assert_eq!(r.code, 0);
    assert_eq!(
        table_rows(&db, &table),
        want,
        "ids, contents and vectors equal one clean run"
    );
    // Paid again at most for what was between the endpoint and the store
    // at each kill: the requests in flight (batch 3 x concurrency 2) and one
    // write batch not yet acknowledged (4). The store answers in
    // milliseconds and the endpoint in 300 ms, so nothing more is queued.
    let paid = inputs(&server) - sent_before;
    assert!(
        paid <= chunks + (6 + 4) * kills.len() as u64,
        "paid {paid} for {chunks} chunks"
    );
}

#[test]
fn a_crash_after_the_stores_ack_but_before_the_state_costs_nothing_again() {
    let Some(pg) = pg_url("crash_after_ack") else {
        return;
    };
    let server = EmbedServer::start(&["--dim", "16"]);
    let sizing = CRASH_POINT_SIZING;
    let table = unique_table("ack");
    // Aborts right after PostgreSQL committed the second batch.
    let r = run(load_cmd(&server, &pg, &table, DIM)
        .arg(fixtures())
        .args(sizing)
        .env("VECLOAD_CRASH_AFTER_ACKS", "2"));
    assert_ne!(r.code, 0, "the crash point fired");
    let db = Db::connect(&pg);
    let before = db.count(&table);
    // Write batches are what arrived while the writer was busy: at least
    // a row each.
    assert!(before >= 2, "two batches were committed: {before}");
    // The state says the load was killed; plan says what that means.
    let mut plan = pg_cmd("plan", &server, &pg, &table, DIM);
    plan.arg("--json")
        .arg("--state")
        .arg(state_path(&table))
        .args(&sizing[..4])
        .arg(fixtures());
    let p = run(&mut plan);
    assert!(
        p.stdout.contains("did not end cleanly"),
        "plan warns that the state may be behind the store: {}",
        p.all_output()
    );

    let report = std::env::temp_dir().join(format!("{table}.json"));
    let sent = inputs(&server);
    let r = run(load_cmd(&server, &pg, &table, DIM)
        .arg(fixtures())
        .args(sizing)
        .arg("--report")
        .arg(&report));
    assert_eq!(r.code, 0);
    let rep = read_report(&report);
    assert_eq!(
        inputs(&server) - sent,
        db.count(&table) as u64 - before as u64,
        "the rerun paid only for rows the store did not have"
    );
    let found = rep["chunks_found_on_resume"].as_u64().unwrap();
    // Acknowledgements are not synced before the next write: the crash
    // may take both batches' records with it, never the rows.
    assert!(
        found >= 1 && found <= before as u64,
        "the committed but unrecorded rows were found in the store, not re-embedded: {found}"
    );
    assert_eq!(
        rep["chunks_unchanged"].as_u64().unwrap(),
        before as u64,
        "every committed row counts as done"
    );
    let clean = unique_table("ackclean");
    run(load_cmd(&server, &pg, &clean, DIM)
        .arg(fixtures())
        .args(sizing)
        .arg("--no-state"));
    assert_eq!(table_rows(&db, &table), table_rows(&db, &clean));
}

#[test]
fn prune_removes_deleted_documents_of_this_tenant_only() {
    let Some(pg) = pg_url("prune") else { return };
    let server = EmbedServer::start(&["--dim", "16"]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("keep.md"), "This document stays.").unwrap();
    std::fs::write(dir.path().join("gone.md"), "This document will be deleted.").unwrap();
    let table = unique_table("prune");
    assert_eq!(
        run(load_cmd(&server, &pg, &table, DIM).arg(dir.path())).code,
        0
    );
    let mut other = load_cmd(&server, &pg, &table, DIM);
    // One state file serves every tenant of the table.
    other.arg(dir.path()).args(["--tenant", "other"]);
    assert_eq!(run(&mut other).code, 0);
    std::fs::remove_file(dir.path().join("gone.md")).unwrap();
    let db = Db::connect(&pg);
    let sources = |tenant: &str| -> Vec<String> {
        db.query(
            &format!("SELECT source FROM \"{table}\" WHERE tenant_id = $1 ORDER BY source"),
            &[&tenant],
        )
        .iter()
        .map(|r| r.get(0))
        .collect()
    };

    assert_eq!(
        run(load_cmd(&server, &pg, &table, DIM).arg(dir.path())).code,
        0
    );
    assert_eq!(
        sources("default"),
        ["gone.md", "keep.md"],
        "without --prune nothing is deleted"
    );
    let r = run(load_cmd(&server, &pg, &table, DIM)
        .arg(dir.path())
        .arg("--prune"));
    assert_eq!(r.code, 0);
    assert_eq!(sources("default"), ["keep.md"]);
    assert_eq!(
        sources("other"),
        ["gone.md", "keep.md"],
        "another tenant's rows are untouched"
    );
}

/// Behind a slow endpoint rows arrive one by one without a pause, so a
/// write batch would fill only after minutes: rows must still reach the
/// store within seconds (a kill then loses seconds of paid vectors, not a
/// whole batch of them).
#[test]
fn rows_behind_a_slow_endpoint_reach_the_store_within_seconds() {
    let Some(pg) = pg_url("slow_endpoint_flush") else {
        return;
    };
    let server = EmbedServer::start(&["--dim", "16", "--latency-ms", "100"]);
    let table = unique_table("trickle");
    let docs = tempfile::tempdir().expect("tempdir");
    for i in 0..20 {
        let text: String = (0..200)
            .map(|w| format!("term{} ", (i * 13 + w) % 70))
            .collect();
        std::fs::write(docs.path().join(format!("n{i:02}.md")), text).expect("write");
    }
    let mut cmd = load_cmd(&server, &pg, &table, DIM);
    cmd.arg(docs.path())
        .args(["--chunk-tokens", "40", "--chunk-overlap", "4"])
        .args(["--batch-size", "1", "--concurrency", "1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().expect("start vecload");
    let db = Db::connect(&pg);
    let started = std::time::Instant::now();
    // Wait for the first answers, then give the stage its few seconds.
    while server.requests() == 0 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "no request sent"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let first = std::time::Instant::now();
    let mut landed = 0;
    while first.elapsed() < std::time::Duration::from_secs(8) {
        if db.table_exists(&table) {
            landed = db.count(&table);
            if landed > 0 {
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let still_running = child.try_wait().expect("wait").is_none();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        still_running,
        "the load should take longer than this test waits"
    );
    assert!(
        landed > 0,
        "rows were written within 8 s of the first answer, not held for a full batch"
    );
}

/// About 2,000 chunks of 40 tokens: a run of some 15 s behind a 100 ms
/// endpoint with two requests of eight in flight.
fn long_corpus(dir: &std::path::Path) {
    for f in 0..100 {
        let text: String = (0..20)
            .map(|p| {
                format!(
                    "Note {p} of file {f}: tenant t{f} moves to the cluster, item {f}-{p} is \
                     re-embedded once, and its vector is written once.\n\n"
                )
            })
            .collect();
        std::fs::write(dir.join(format!("n{f:03}.md")), text).expect("write");
    }
}

/// Eight kill -9 at points spread over the run (with the default write
/// batch of 500, not a small one), then the same command to the end: the
/// store equals one clean run, and what was paid again is at most the
/// requests in flight and the write under way at each kill: within 10 %
/// of an undisturbed run, with the embedding cache and without.
#[test]
fn eight_kills_cost_at_most_a_tenth_more_requests() {
    let Some(pg) = pg_url("eight kills") else {
        return;
    };
    let docs = tempfile::tempdir().expect("tempdir");
    long_corpus(docs.path());
    let sizing = [
        "--chunk-tokens",
        "40",
        "--chunk-overlap",
        "0",
        "--batch-size",
        "8",
        "--concurrency",
        "2",
    ];
    for cache in [false, true] {
        let server = EmbedServer::start(&["--dim", "16", "--latency-ms", "100"]);
        let cache_dir = tempfile::tempdir().expect("cache dir");
        let table = unique_table(if cache { "k8cache" } else { "k8" });
        let load = || {
            let mut c = load_cmd(&server, &pg, &table, DIM);
            c.arg(docs.path()).args(sizing);
            if cache {
                c.arg("--cache").arg(cache_dir.path());
            }
            c
        };
        let db = Db::connect(&pg);
        // The chunk count, from a plan (it sends nothing).
        let plan = run(pg_cmd("plan", &server, &pg, &table, DIM)
            .arg(docs.path())
            .args(sizing)
            .arg("--json"));
        let chunks = serde_json::from_str::<serde_json::Value>(&plan.stdout)
            .ok()
            .and_then(|p| p["chunks"].as_u64())
            .unwrap_or_else(|| panic!("plan: {}", plan.all_output()));
        assert!(chunks > 1500, "{chunks} chunks");
        for k in 1..=8u64 {
            let at = chunks * k / 9;
            let mut child = load()
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start vecload");
            wait_until(
                &format!("{at} rows written"),
                Duration::from_secs(120),
                &mut child,
                || rows_in(&db, &table) >= at,
            );
            child.kill().expect("kill -9");
            child.wait().expect("wait");
        }
        let r = run(&mut load());
        assert_eq!(r.code, 0, "{}", r.all_output());
        assert_eq!(rows_in(&db, &table), chunks, "every row, once");
        let paid = inputs(&server);
        let ratio = paid as f64 / chunks as f64;
        eprintln!("eight kills (cache {cache}): {paid} inputs for {chunks} chunks = {ratio:.3}x");
        assert!(
            ratio <= 1.10,
            "{paid} inputs for {chunks} chunks: {ratio:.3}x"
        );
    }
}
