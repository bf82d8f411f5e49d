//! Ctrl-C / SIGTERM: requests in flight finish, what is embedded is written,
//! the exit says so, and rerunning the same command completes the table
//! without duplicates.

use std::time::Duration;

use crate::common::*;

#[test]
fn interrupted_run_writes_what_it_paid_for_and_a_rerun_completes_it() {
    let Some(pg) = pg_url("interrupted_run") else {
        return;
    };
    let server = EmbedServer::start(&["--dim", "16", "--latency-ms", "150"]);
    let table = unique_table("intr");
    let report = std::env::temp_dir().join(format!("{table}.json"));
    let args = [
        "--chunk-tokens",
        "40",
        "--chunk-overlap",
        "5",
        "--batch-size",
        "2",
        "--concurrency",
        "2",
    ];
    let mut child = load_cmd(&server, &pg, &table, 16)
        .arg(fixtures())
        .args(args)
        .arg("--report")
        .arg(&report)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let db = Db::connect(&pg);
    wait_until("rows written", Duration::from_secs(60), &mut child, || {
        rows_in(&db, &table) > 0
    });
    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    let rep = read_report(&report);
    assert_eq!(rep["interrupted"].as_bool(), Some(true));
    let written = db.count(&table) as u64;
    assert!(written > 0, "something was written before the interrupt");
    assert_eq!(
        Some(written),
        rep["vectors_written"].as_u64(),
        "every embedded vector was written before exit"
    );
    let sent_before = server.stats()["inputs"].as_u64().unwrap();
    assert_eq!(sent_before, written, "every vector paid for was kept");

    let r = run(load_cmd(&server, &pg, &table, 16)
        .arg(fixtures())
        .args(args)
        .arg("--report")
        .arg(&report));
    assert_eq!(r.code, 0);
    let full = read_report(&report)["chunks"].as_u64().unwrap();
    assert_eq!(
        db.count(&table) as u64,
        full,
        "the rerun completed the table without duplicates"
    );
}

/// Issue 16: a stage that is stuck (here the sink, blocked by a lock another
/// session holds on the table) is named by the stall warning, the first
/// SIGTERM cannot drain it, and the second one ends the process at once.
#[test]
fn a_stuck_sink_is_reported_and_a_second_signal_exits_at_once() {
    let Some(pg) = pg_url("stuck_sink_second_signal") else {
        return;
    };
    let server = EmbedServer::start(&["--dim", "16"]);
    let table = unique_table("stuck");
    assert_eq!(
        run(load_cmd(&server, &pg, &table, 16)
            .arg(fixtures().join("guides"))
            .arg("--no-state"))
        .code,
        0
    );
    // Readers may go on; writers (COPY, INSERT) wait for this transaction.
    let db = Db::connect(&pg);
    db.execute(&format!("BEGIN; LOCK TABLE \"{table}\" IN SHARE MODE"));
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr.log");
    // Another tenant: the store holds none of its rows, so it must write.
    let mut child = load_cmd(&server, &pg, &table, 16)
        .arg(fixtures().join("guides"))
        .args(["--no-state", "--tenant", "other"])
        .env("VECLOAD_STALL_SECS", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let text = wait_for_log(&log, "stalled", Duration::from_secs(60));
    assert!(
        text.contains("waiting on the vector store"),
        "the warning names the stuck stage:\n{text}"
    );
    signal(&child, "-TERM");
    assert_eq!(
        exits_within(&mut child, Duration::from_secs(2)),
        None,
        "the first signal waits for the write it cannot finish"
    );
    signal(&child, "-TERM");
    let code = exits_within(&mut child, Duration::from_secs(5));
    db.execute("COMMIT");
    if code.is_none() {
        let _ = child.kill();
    }
    assert_eq!(
        code,
        Some(130),
        "the second signal exits at once:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

/// ECS stops a task with SIGTERM and, 30 s later, SIGKILL; a slow drain may
/// be cut short. Whatever the kill hit, the rerun completes the table as one
/// clean run would, paying again at most for the requests in flight.
#[test]
fn sigterm_then_sigkill_as_ecs_stops_a_task_then_the_rerun_completes_it() {
    let Some(pg) = pg_url("sigterm_then_sigkill") else {
        return;
    };
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
    let clean = unique_table("ecsclean");
    assert_eq!(
        run(load_cmd(&server, &pg, &clean, 16)
            .arg(fixtures())
            .args(sizing)
            .arg("--no-state"))
        .code,
        0
    );
    let db = Db::connect(&pg);
    let want = table_rows(&db, &clean);
    let chunks = want.len() as u64;
    let table = unique_table("ecs");
    let sent_before = server.stats()["inputs"].as_u64().unwrap();
    let mut child = load_cmd(&server, &pg, &table, 16)
        .arg(fixtures())
        .args(sizing)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until("rows written", Duration::from_secs(60), &mut child, || {
        rows_in(&db, &table) > 0
    });
    signal(&child, "-TERM");
    // The orchestrator's grace period (ECS stopTimeout, Kubernetes
    // terminationGracePeriodSeconds), shortened: then SIGKILL.
    std::thread::sleep(Duration::from_millis(150));
    let _ = child.kill();
    child.wait().unwrap();
    let rows_killed = db.count(&table) as u64;
    assert!(
        rows_killed < chunks,
        "stopped mid-run ({rows_killed} of {chunks})"
    );
    let r = run(load_cmd(&server, &pg, &table, 16)
        .arg(fixtures())
        .args(sizing));
    assert_eq!(r.code, 0);
    assert_eq!(table_rows(&db, &table), want, "equal to one clean run");
    let paid = server.stats()["inputs"].as_u64().unwrap() - sent_before;
    // As for kill -9 (resume.rs): at most the requests in flight
    // (2 x 3) and one unacknowledged write batch (4) are paid again.
    assert!(paid <= chunks + 6 + 4, "paid {paid} for {chunks} chunks");
}
