//! Documents in S3, against a real S3-compatible server (moto; IAM
//! enforced where a test needs permissions): the same rows as the
//! same files on disk, reruns that download nothing, edits that cost only
//! their chunks, --prune of deleted keys, pagination past 1,000 keys, a
//! denied object skipped with its reason, and a bucket that cannot be read
//! refused before anything is sent.

use std::path::Path;

use crate::common::s3::Moto;
use crate::common::*;

const DIM: usize = 16;

/// fixtures/docs as files only (no symlinks, no state folders), plus a
/// nested folder: what a team would sync to a bucket.
fn corpus() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_files(&fixtures(), dir.path());
    let deep = dir.path().join("deep/er");
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(
        deep.join("nest.md"),
        "A note three folders down, about tenancy and retention.",
    )
    .unwrap();
    dir
}

fn copy_files(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        let ft = entry.file_type().unwrap();
        if name == ".vecload" || ft.is_symlink() {
            continue;
        }
        if ft.is_dir() {
            std::fs::create_dir_all(to.join(&name)).unwrap();
            copy_files(&entry.path(), &to.join(&name));
        } else {
            std::fs::copy(entry.path(), to.join(&name)).unwrap();
        }
    }
}

fn sources(db: &Db, table: &str) -> Vec<String> {
    db.query(
        &format!("SELECT DISTINCT source FROM \"{table}\" ORDER BY source"),
        &[],
    )
    .iter()
    .map(|r| r.get(0))
    .collect()
}

#[test]
fn an_s3_load_stores_what_a_disk_load_stores_and_reruns_fetch_only_what_changed() {
    let test = "s3_load_equals_disk";
    let Some(pg) = pg_url(test) else { return };
    let Some(moto) = Moto::start(test, "team-docs", false) else {
        return;
    };
    let server = EmbedServer::start(&["--dim", &DIM.to_string()]);
    let dir = corpus();
    moto.put_dir("kb/", dir.path());
    moto.put("other/outside.md", b"Not under the prefix: never loaded.");
    let db = Db::connect(&pg);

    let disk = unique_table("s3disk");
    assert_eq!(
        run(load_cmd(&server, &pg, &disk, DIM)
            .arg(dir.path())
            .arg("--no-state"))
        .code,
        0
    );
    let table = unique_table("s3");
    let report = dir.path().join("../s3-report.json");
    let mut cmd = load_cmd(&server, &pg, &table, DIM);
    let r = run(moto
        .env(&mut cmd)
        .arg("s3://team-docs/kb")
        .arg("--report")
        .arg(&report));
    assert_eq!(r.code, 0, "{}", r.all_output());
    assert_eq!(
        table_rows(&db, &table),
        table_rows(&db, &disk),
        "the same ids, contents and vectors as from disk"
    );
    assert_eq!(sources(&db, &table), sources(&db, &disk));
    assert!(sources(&db, &table).contains(&"deep/er/nest.md".to_string()));
    let rep = read_report(&report);
    // Skipped objects are named by their S3 URL.
    let skipped: Vec<String> = rep["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["path"].as_str().unwrap().to_string())
        .collect();
    assert!(
        skipped.contains(&"s3://team-docs/kb/bad/binary.txt".to_string()),
        "{skipped:?}"
    );
    let first_gets = moto.object_gets();
    assert!(
        !first_gets
            .iter()
            .any(|p| p.contains("logo.png") || p.contains("outside")),
        "unsupported types and keys outside the prefix are never downloaded: {first_gets:?}"
    );

    // A rerun downloads nothing and embeds nothing.
    let sent = server.requests();
    let mut cmd = load_cmd(&server, &pg, &table, DIM);
    let r = run(moto
        .env(&mut cmd)
        .arg("s3://team-docs/kb")
        .arg("--report")
        .arg(&report));
    assert_eq!(r.code, 0);
    assert_eq!(
        moto.object_gets(),
        Vec::<String>::new(),
        "no GET of an unchanged object"
    );
    assert_eq!(server.requests(), sent, "nothing embedded again");
    let rep = read_report(&report);
    assert_eq!(rep["chunks_unchanged"], rep["chunks"]);

    // An edited object: fetched again, only its changed chunks embedded;
    // the table equals a disk load of the edited folder.
    let edited = format!(
        "{}\n\nAppendix: keys are rotated every thirty days since the last audit.\n",
        std::fs::read_to_string(dir.path().join("guides/tenancy.markdown")).unwrap()
    );
    std::fs::write(dir.path().join("guides/tenancy.markdown"), &edited).unwrap();
    moto.put("kb/guides/tenancy.markdown", edited.as_bytes());
    let inputs_before = server.stats()["inputs"].as_u64().unwrap();
    let mut cmd = load_cmd(&server, &pg, &table, DIM);
    assert_eq!(run(moto.env(&mut cmd).arg("s3://team-docs/kb")).code, 0);
    assert_eq!(
        moto.object_gets(),
        vec!["/team-docs/kb/guides/tenancy.markdown".to_string()]
    );
    let paid = server.stats()["inputs"].as_u64().unwrap() - inputs_before;
    let doc_chunks = db.query(
        &format!("SELECT count(*) FROM \"{table}\" WHERE source = 'guides/tenancy.markdown'"),
        &[],
    )[0]
    .get::<_, i64>(0) as u64;
    assert!(
        paid >= 1 && paid <= doc_chunks,
        "paid {paid} for an edit of a {doc_chunks}-chunk document"
    );
    let disk2 = unique_table("s3disk2");
    assert_eq!(
        run(load_cmd(&server, &pg, &disk2, DIM)
            .arg(dir.path())
            .arg("--no-state"))
        .code,
        0
    );
    assert_eq!(table_rows(&db, &table), table_rows(&db, &disk2));

    // A deleted key with --prune: its rows go, another tenant's stay.
    let other = load_cmd(&server, &pg, &table, DIM)
        .arg(dir.path().join("guides"))
        .args(["--tenant", "other", "--no-state"])
        .status()
        .unwrap();
    assert!(other.success());
    let others = db.query(
        &format!("SELECT count(*) FROM \"{table}\" WHERE tenant_id = 'other'"),
        &[],
    )[0]
    .get::<_, i64>(0);
    moto.delete("kb/data/faq.json");
    let mut cmd = load_cmd(&server, &pg, &table, DIM);
    let r = run(moto
        .env(&mut cmd)
        .arg("s3://team-docs/kb")
        .arg("--prune")
        .arg("--report")
        .arg(&report));
    assert_eq!(r.code, 0);
    let left: Vec<String> = sources(&db, &table)
        .into_iter()
        .filter(|s| s.starts_with("data/faq.json"))
        .collect();
    assert!(
        left.is_empty(),
        "the deleted object's rows are gone: {left:?}"
    );
    assert!(read_report(&report)["docs_pruned"].as_u64().unwrap() >= 1);
    assert_eq!(
        db.query(
            &format!("SELECT count(*) FROM \"{table}\" WHERE tenant_id = 'other'"),
            &[]
        )[0]
        .get::<_, i64>(0),
        others,
        "another tenant is untouched"
    );
    assert!(
        moto.object_gets().is_empty(),
        "pruning downloads nothing either"
    );
}

#[test]
fn a_listing_of_more_than_a_thousand_keys_is_paged_through() {
    let test = "s3_pagination";
    let Some(pg) = pg_url(test) else { return };
    let Some(moto) = Moto::start(test, "many-keys", false) else {
        return;
    };
    let server = EmbedServer::start(&["--dim", &DIM.to_string()]);
    let dir = tempfile::tempdir().unwrap();
    for i in 0..1005 {
        let sub = dir.path().join(format!("part{}", i % 7));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(
            sub.join(format!("note{i:04}.txt")),
            format!("Note number {i}."),
        )
        .unwrap();
    }
    moto.put_dir("notes/", dir.path());
    moto.requests();
    let table = unique_table("s3many");
    let mut cmd = load_cmd(&server, &pg, &table, DIM);
    let r = run(moto.env(&mut cmd).arg("s3://many-keys/notes/"));
    assert_eq!(r.code, 0, "{}", r.all_output());
    assert_eq!(
        Db::connect(&pg).count(&table),
        1005,
        "every key of every page"
    );
    let lists = moto
        .requests()
        .into_iter()
        .filter(|(m, _, q)| m == "GET" && q.contains("list-type=2"))
        .count();
    // The access check lists one key; then pages of 1,000.
    assert!(lists >= 3, "{lists} listing requests for 1005 keys");
}

#[test]
fn a_denied_object_is_skipped_with_its_reason_and_the_rest_loads() {
    let test = "s3_denied_object";
    let Some(pg) = pg_url(test) else { return };
    let Some(moto) = Moto::start(test, "mixed-access", true) else {
        return;
    };
    let server = EmbedServer::start(&["--dim", &DIM.to_string()]);
    let dir = corpus();
    moto.put_dir("", &dir.path().join("guides"));
    moto.deny("reindex-runbook.md");
    let table = unique_table("s3deny");
    let report = dir.path().join("../deny-report.json");
    let mut cmd = load_cmd(&server, &pg, &table, DIM);
    let r = run(moto
        .env(&mut cmd)
        .arg("s3://mixed-access")
        .arg("--report")
        .arg(&report));
    assert_eq!(r.code, 0, "one unreadable object is not a failed run");
    let rep = read_report(&report);
    let denied: Vec<&serde_json::Value> = rep["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["reason"] == "access denied")
        .collect();
    assert_eq!(denied.len(), 1, "{rep}");
    assert_eq!(denied[0]["path"], "s3://mixed-access/reindex-runbook.md");
    assert!(
        denied[0]["detail"]
            .as_str()
            .unwrap()
            .contains("s3:GetObject")
    );
    let db = Db::connect(&pg);
    assert_eq!(sources(&db, &table), vec!["tenancy.markdown".to_string()]);
}

#[test]
fn a_bucket_that_cannot_be_listed_stops_the_run_before_anything_is_sent() {
    let test = "s3_bucket_refused";
    let Some(pg) = pg_url(test) else { return };
    let Some(moto) = Moto::start(test, "real-bucket", true) else {
        return;
    };
    let server = EmbedServer::start(&["--dim", &DIM.to_string()]);
    moto.put("a.md", b"Some text.");
    let table = unique_table("s3refused");

    let mut cmd = load_cmd(&server, &pg, &table, DIM);
    let r = run(moto.env(&mut cmd).arg("s3://no-such-bucket/docs"));
    assert_eq!(r.code, 2, "{}", r.all_output());
    assert!(r.stderr.contains("no-such-bucket"), "{}", r.stderr);

    let mut cmd = load_cmd(&server, &pg, &table, DIM);
    let r = run(moto
        .env(&mut cmd)
        .env("AWS_SECRET_ACCESS_KEY", "not-the-secret")
        .arg("s3://real-bucket/"));
    assert_eq!(r.code, 2, "{}", r.all_output());
    assert!(
        r.stderr.contains("s3://real-bucket") && r.stderr.contains("cannot list"),
        "{}",
        r.stderr
    );
    assert!(
        !r.all_output().contains("not-the-secret"),
        "the secret never shows"
    );
    assert_eq!(server.requests(), 0, "nothing sent to the endpoint");
    assert!(!Db::connect(&pg).table_exists(&table), "nothing written");
}

/// How an ECS task runs a backfill: documents from S3, `--log-format json`
/// (every stderr line one JSON object, progress with its counts as fields,
/// for CloudWatch Logs Insights), the report as one JSON line on stdout
/// and as an object in S3. A report the task may not write stops it before
/// anything is paid for.
#[test]
fn a_task_logs_json_lines_and_puts_its_report_in_s3() {
    let test = "s3_task_report";
    let Some(pg) = pg_url(test) else { return };
    let Some(moto) = Moto::start(test, "task-bucket", true) else {
        return;
    };
    let server = EmbedServer::start(&["--dim", &DIM.to_string(), "--latency-ms", "1500"]);
    let dir = corpus();
    // At the bucket's root: moto's IAM check miscomputes signatures of
    // listings with a `/` in the prefix (see tests/integration/common/s3.rs).
    moto.put_dir("", &dir.path().join("guides"));
    let table = unique_table("s3task");
    let mut cmd = load_cmd(&server, &pg, &table, DIM);
    let r = run(moto
        .env(&mut cmd)
        .env("VECLOAD_PROGRESS_SECS", "1")
        .args(["--batch-size", "1", "--concurrency", "1"])
        .args(["s3://task-bucket", "--log-format", "json"])
        .args(["--report", "s3://task-bucket/reports/acme.json"]));
    assert_eq!(r.code, 0, "{}", r.all_output());
    let lines: Vec<serde_json::Value> = r
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect();
    assert!(
        lines
            .iter()
            .all(|l| l["level"].is_string() && l["message"].is_string())
    );
    let progress = lines
        .iter()
        .find(|l| l["message"] == "progress")
        .expect("a progress line");
    assert!(
        progress["written"].is_u64() && progress["files_total"].is_u64(),
        "{progress}"
    );
    let rows = Db::connect(&pg).count(&table);
    let out: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(out.len(), 1, "the report, one line: {}", r.stdout);
    let printed: serde_json::Value = serde_json::from_str(out[0]).expect("report JSON");
    assert_eq!(printed["vectors_written"].as_i64(), Some(rows));
    assert_eq!(
        printed["files_skipped"],
        serde_json::json!({}),
        "the report object under the prefix is not read as a document"
    );
    let stored: serde_json::Value =
        serde_json::from_str(&moto.get("reports/acme.json")).expect("report object");
    assert_eq!(stored, printed);

    moto.deny_put("reports/denied.json");
    let before = server.requests();
    let other = unique_table("s3task_denied");
    let mut cmd = load_cmd(&server, &pg, &other, DIM);
    let r = run(moto
        .env(&mut cmd)
        .args(["s3://task-bucket", "--log-format", "json"])
        .args(["--report", "s3://task-bucket/reports/denied.json"]));
    assert_eq!(r.code, 2, "{}", r.all_output());
    let error: serde_json::Value =
        serde_json::from_str(r.stderr.lines().last().expect("a line")).expect("JSON");
    assert_eq!(error["level"], "ERROR");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("s3://task-bucket/reports/denied.json")),
        "{error}"
    );
    assert_eq!(server.requests(), before, "nothing sent to the endpoint");
    assert!(!Db::connect(&pg).table_exists(&other), "nothing written");
}

/// A task with no disk of its own keeps its state in S3: the next task
/// (a new machine, nothing local) fetches it, downloads no unchanged
/// object and sends nothing; a task killed before it put the state back
/// still pays for nothing twice, the store being the record.
#[test]
fn a_state_kept_in_s3_lets_the_next_task_skip_unchanged_objects() {
    let test = "s3_state";
    let Some(pg) = pg_url(test) else { return };
    let Some(moto) = Moto::start(test, "team-docs", false) else {
        return;
    };
    let server = EmbedServer::start(&["--dim", &DIM.to_string()]);
    let dir = corpus();
    moto.put_dir("kb/", dir.path());
    let table = unique_table("s3state");
    let db = Db::connect(&pg);
    let load = |extra: &[&str]| {
        let mut cmd = pg_cmd("load", &server, &pg, &table, DIM);
        cmd.args(["--progress", "log", "s3://team-docs/kb"])
            .args(extra);
        moto.env(&mut cmd);
        run(&mut cmd)
    };
    let state = ["--state", "s3://team-docs/state/acme.redb"];
    let r = load(&state);
    assert_eq!(r.code, 0, "{}", r.all_output());
    let rows = table_rows(&db, &table);
    let sent = server.requests();
    let _ = moto.object_gets();
    assert!(
        r.stderr.contains("acme.redb: put back"),
        "the state was put back in S3: {}",
        r.stderr
    );

    // `plan` reads the state from S3 too: nothing to embed.
    let mut plan = pg_cmd("plan", &server, &pg, &table, DIM);
    plan.args(["--json", "s3://team-docs/kb"]).args(state);
    moto.env(&mut plan);
    let p = run(&mut plan);
    let p: serde_json::Value = serde_json::from_str(p.stdout.trim()).expect("plan JSON");
    assert_eq!(p["chunks_to_embed"], 0, "{p}");
    assert_eq!(p["requests"], 0, "{p}");
    assert_eq!(server.requests(), sent, "plan sends nothing");
    let _ = moto.object_gets();

    // The next task: nothing local, the state fetched from S3.
    let r = load(&state);
    assert_eq!(r.code, 0, "{}", r.all_output());
    assert!(r.stderr.contains("bytes fetched"), "{}", r.stderr);
    assert_eq!(server.requests(), sent, "nothing embedded again");
    let gets = moto.object_gets();
    assert_eq!(
        gets.iter().filter(|p| !p.contains("/state/")).count(),
        0,
        "no unchanged object downloaded again: {gets:?}"
    );
    assert_eq!(table_rows(&db, &table), rows);

    // A task that died before putting the state back: the state in S3 is
    // older than the store, which is read as the record.
    let doc = dir.path().join("guides/tenancy.markdown");
    let mut text = std::fs::read_to_string(&doc).unwrap();
    text.push_str("\n\nA new closing paragraph about shard buckets.\n");
    moto.put("kb/guides/tenancy.markdown", text.as_bytes());
    let r = load(&["--no-state"]);
    assert_eq!(r.code, 0);
    let after_edit = server.requests();
    assert!(after_edit > sent, "the edit was embedded");
    let r = load(&state);
    assert_eq!(r.code, 0, "{}", r.all_output());
    assert_eq!(
        server.requests(),
        after_edit,
        "what the store holds is not paid for again though the state did not know it"
    );

    let r = load(&["--state", "s3://team-docs/"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("--state"), "{}", r.stderr);
}

/// A task killed hours into a run (a Fargate task stopped, a spot node
/// gone) has put its state back at checkpoints on the way: the next task
/// fetches what the killed one recorded, not an empty state.
#[test]
fn a_killed_task_leaves_its_state_in_s3_as_of_its_last_checkpoint() {
    let test = "s3_state_checkpoint";
    let Some(pg) = pg_url(test) else { return };
    let Some(moto) = Moto::start(test, "team-docs", false) else {
        return;
    };
    // One chunk per request, 150 ms each: the run takes many seconds.
    let server = EmbedServer::start(&["--dim", &DIM.to_string(), "--latency-ms", "150"]);
    let dir = tempfile::tempdir().unwrap();
    for i in 0..30 {
        let text: String = (0..120)
            .map(|w| format!("word{} ", (i * 7 + w) % 50))
            .collect();
        std::fs::write(dir.path().join(format!("doc{i:02}.md")), text).unwrap();
    }
    moto.put_dir("slow/", dir.path());
    let table = unique_table("s3ckpt");
    let state = "s3://team-docs/state/slow.redb";
    let cmd = |verb: &str| {
        let mut cmd = pg_cmd(verb, &server, &pg, &table, DIM);
        cmd.args(["--chunk-tokens", "40", "--chunk-overlap", "4"])
            .arg("s3://team-docs/slow");
        moto.env(&mut cmd);
        cmd
    };
    let plan = |state_args: &[&str]| -> serde_json::Value {
        let mut cmd = cmd("plan");
        cmd.arg("--json").args(state_args);
        let p = run(&mut cmd);
        serde_json::from_str(p.stdout.trim()).expect("plan JSON")
    };
    let total = plan(&["--no-state"])["chunks_to_embed"]
        .as_u64()
        .unwrap_or(0);
    assert!(total > 60, "{total} chunks");

    let mut cmd = cmd("load");
    cmd.args(["--state", state, "--state-every", "1"])
        .args([
            "--batch-size",
            "1",
            "--concurrency",
            "1",
            "--progress",
            "log",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().expect("start vecload");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while server.requests() < 25 {
        assert!(
            std::time::Instant::now() < deadline,
            "the load made no progress"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the load ended too early"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Past at least one checkpoint after documents were complete: the
    // state in S3 (read as the next task would) records some of them.
    while plan(&["--state", state])["chunks_to_embed"]
        .as_u64()
        .unwrap_or(0)
        >= total
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint of the state reached S3 while the load ran"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the load ended too early"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    child.kill().expect("kill -9");
    let _ = child.wait();

    let left = plan(&["--state", state])["chunks_to_embed"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        left < total,
        "the state in S3 records what the killed task did: {left} of {total} chunks left"
    );
    assert!(left > 0, "the task was killed before the end");
}

#[test]
fn a_batch_api_task_killed_while_waiting_is_picked_up_by_the_next_task_from_the_s3_state() {
    let test = "s3_batch_api_state";
    let Some(pg) = pg_url(test) else { return };
    let Some(moto) = Moto::start(test, "team-docs", false) else {
        return;
    };
    let server = EmbedServer::start(&["--dim", &DIM.to_string(), "--batch-seconds", "3"]);
    let dir = tempfile::tempdir().unwrap();
    for i in 0..16 {
        std::fs::write(
            dir.path().join(format!("doc{i:02}.md")),
            format!("Document {i} is embedded overnight by the batch API."),
        )
        .unwrap();
    }
    moto.put_dir("overnight/", dir.path());
    let table = unique_table("s3batch");
    let cmd = || {
        let mut cmd = pg_cmd("load", &server, &pg, &table, DIM);
        cmd.arg("s3://team-docs/overnight")
            .args(["--state", "s3://team-docs/state/overnight.redb"])
            .args(["--batch-api", "--batch-poll", "0.2", "--progress", "log"]);
        moto.env(&mut cmd);
        cmd
    };
    let batches = || server.stats()["batches_created"].as_u64().unwrap_or(0);
    let mut child = cmd()
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start vecload");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while batches() < 1 {
        assert!(std::time::Instant::now() < deadline, "no batch made");
        assert!(child.try_wait().unwrap().is_none(), "the load ended early");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Polled: the batch was recorded and the state put back (right after
    // it is made, before the wait starts).
    wait_until(
        "the batch polled",
        std::time::Duration::from_secs(60),
        &mut child,
        || server.stats()["batch_polls"].as_u64().unwrap_or(0) >= 1,
    );
    child.kill().unwrap();
    child.wait().unwrap();

    // Another task: a fresh local copy of the state, no results file.
    let r = run(&mut cmd());
    assert_eq!(r.code, 0);
    assert_eq!(batches(), 1, "the batch was picked up, not made again");
    assert_eq!(server.requests(), 0, "nothing sent synchronously");
    let db = Db::connect(&pg);
    let rows = db.query(&format!("SELECT content, embedding FROM \"{table}\""), &[]);
    assert_eq!(rows.len(), 16);
    for row in rows {
        let (content, v): (String, pgvector::Vector) = (row.get(0), row.get(1));
        assert_eq!(v.to_vec(), embedding_test_server::vector_for(&content, DIM));
    }
}
