//! Ctrl-C / SIGTERM: requests in flight finish, what is embedded is written,
//! the exit says so, and rerunning the same command completes the table
//! without duplicates.

mod common;

use std::time::Duration;

use common::*;

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
    let child = load_cmd(&server, &pg, &table, 16)
        .arg(fixtures())
        .args(args)
        .arg("--report")
        .arg(&report)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
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
    let db = Db::connect(&pg);
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
