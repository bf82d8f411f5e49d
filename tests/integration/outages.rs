//! What AWS does to a long job, done to a running load: the embedding
//! endpoint goes away and comes back, PostgreSQL and Qdrant are stopped for
//! 75 s (an RDS Multi-AZ failover takes 60-120 s) and started again. The same
//! process waits each out, says so at WARN when it starts and ends, warns
//! of the stall meanwhile, and finishes with exactly the rows of an
//! undisturbed run, paying again at most for the requests in flight.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// How long the stores are down: an RDS Multi-AZ failover's time.
const OUTAGE: Duration = Duration::from_secs(75);

/// Small chunks, two requests of two inputs in flight, a little latency:
/// a load of the fixtures that lasts long enough to be interrupted.
const SIZING: [&str; 10] = [
    "--chunk-tokens",
    "40",
    "--chunk-overlap",
    "5",
    "--batch-size",
    "2",
    "--concurrency",
    "2",
    "--progress",
    "log",
];

/// About 600 chunks of 40 tokens in 60 files: with 2 x 2 inputs in flight
/// at 60 ms, a load of some ten seconds.
fn corpus(dir: &Path) -> PathBuf {
    let docs = dir.join("docs");
    std::fs::create_dir_all(&docs).expect("docs");
    for f in 0..60 {
        let text: String = (0..10)
            .map(|p| {
                format!(
                    "Section {p} of runbook {f}: the writer waits for the store, the store \
                     answers after failover {f}-{p}, and the rows are written once.\n\n"
                )
            })
            .collect();
        std::fs::write(docs.join(format!("runbook-{f:02}.md")), text).expect("write");
    }
    docs
}

fn spawn_load(mut cmd: std::process::Command, log: &Path, report: &Path) -> Child {
    let err = std::fs::File::create(log).expect("log file");
    let docs = corpus(log.parent().expect("the log's folder"));
    cmd.arg(docs)
        .args(SIZING)
        .arg("--report")
        .arg(report)
        .env("VECLOAD_STALL_SECS", "3")
        .env("VECLOAD_PROGRESS_SECS", "2")
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .expect("start vecload")
}

/// The endpoint refuses connections for 15 s mid-load; the run pauses as a
/// whole, probes, and finishes when it is back.
#[test]
fn an_endpoint_that_goes_away_is_waited_out_and_the_run_finishes() {
    let Some(pg) = pg_url("endpoint outage") else {
        return;
    };
    let port = free_port().to_string();
    let args = ["--dim", "16", "--latency-ms", "60", "--port", &port];
    let server = EmbedServer::start(&args);
    let table = unique_table("outage_ep");
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, report) = (dir.path().join("log"), dir.path().join("report.json"));
    let mut cmd = load_cmd(&server, &pg, &table, 16);
    cmd.args(["--endpoint-outage-budget", "120"]);
    let mut child = spawn_load(cmd, &log, &report);
    let db = Db::connect(&pg);
    wait_until("rows written", Duration::from_secs(60), &mut child, || {
        rows_in(&db, &table) > 0
    });
    assert!(child.try_wait().expect("wait").is_none(), "still loading");
    let paid_before = server.stats()["inputs"].as_u64().unwrap_or(0);
    drop(server);
    let down = Instant::now();
    wait_for_log(
        &log,
        "the embedding endpoint is not answering",
        Duration::from_secs(30),
    );
    let text = wait_for_log(&log, "stalled:", Duration::from_secs(30));
    assert!(
        text.contains("waiting on the embedding endpoint, down for"),
        "the stall names the outage:\n{text}"
    );
    wait_for_log(
        &log,
        "waiting for the embedding endpoint since",
        Duration::from_secs(30),
    );
    // The outage: 15 s in all (the fault injected, not a wait for a result).
    std::thread::sleep(Duration::from_secs(15).saturating_sub(down.elapsed()));
    let server = EmbedServer::start(&args);
    let code = exits_within(&mut child, Duration::from_secs(120));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(code, Some(0), "the same process finished:\n{text}");
    assert!(
        text.contains("the embedding endpoint answers again after"),
        "a WARN when it is back:\n{text}"
    );
    let rep = read_report(&report);
    let chunks = rep["chunks"].as_u64().unwrap();
    assert_eq!(rows_in(&db, &table), chunks, "every row, once");
    let paid = paid_before + server.stats()["inputs"].as_u64().unwrap_or(0);
    // At most the two requests in flight when it went (two inputs each),
    // and what arrived between the count and the kill, are paid again.
    assert!(paid <= chunks + 8, "{paid} inputs paid for {chunks} chunks");
}

/// A PostgreSQL of its own (the suite's is shared by every test), from the
/// same installation: scripts/pg.sh with its own folder and port.
struct PrivatePg {
    home: PathBuf,
    port: String,
    url: String,
}

impl PrivatePg {
    fn start(test: &str) -> Option<PrivatePg> {
        let shared = std::env::var("VECLOAD_PG_HOME").unwrap_or_else(|_| "/tmp/vecload-pg".into());
        let venv = Path::new(&shared).join("venv");
        if !venv.join("bin/python").exists() {
            eprintln!(
                "=== SKIPPED {test}: no PostgreSQL installation at {shared} (scripts/pg.sh) ==="
            );
            return None;
        }
        let home = PathBuf::from(format!("/tmp/vecload-pg-{}", unique_table("outage")));
        std::fs::create_dir_all(&home).expect("pg home");
        std::os::unix::fs::symlink(&venv, home.join("venv")).expect("link the installation");
        let mut pg = PrivatePg {
            home,
            port: free_port().to_string(),
            url: String::new(),
        };
        let out = pg.script("start");
        pg.url = out
            .lines()
            .find_map(|l| l.strip_prefix("export VECLOAD_TEST_PG_URL="))
            .expect("pg.sh prints the URL")
            .to_string();
        Some(pg)
    }

    fn script(&self, verb: &str) -> String {
        let out = std::process::Command::new(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/pg.sh"),
        )
        .arg(verb)
        .env("VECLOAD_PG_HOME", &self.home)
        .env("VECLOAD_PG_PORT", &self.port)
        .output()
        .expect("scripts/pg.sh");
        assert!(
            out.status.success(),
            "pg.sh {verb}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let _ = std::process::Command::new(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/pg.sh"),
        )
        .arg("wipe")
        .env("VECLOAD_PG_HOME", &self.home)
        .env("VECLOAD_PG_PORT", &self.port)
        .output();
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

/// PostgreSQL stopped for 75 s mid-load (the five tries of ~15 s that
/// ended a run before would not have lasted): the writers pause and
/// reconnect, the embedded rows wait, and the same process finishes.
#[test]
fn postgres_down_for_75_seconds_is_waited_out_by_the_same_process() {
    let test = "postgres outage";
    if pg_url(test).is_none() {
        return;
    }
    let Some(private) = PrivatePg::start(test) else {
        return;
    };
    let server = EmbedServer::start(&["--dim", "16", "--latency-ms", "60"]);
    let table = unique_table("outage_pg");
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, report) = (dir.path().join("log"), dir.path().join("report.json"));
    let mut cmd = load_cmd(&server, &private.url, &table, 16);
    cmd.args(["--store-outage-budget", "120"]);
    let mut child = spawn_load(cmd, &log, &report);
    {
        let db = Db::connect(&private.url);
        wait_until("rows written", Duration::from_secs(60), &mut child, || {
            rows_in(&db, &table) > 0
        });
    }
    assert!(child.try_wait().expect("wait").is_none(), "still loading");
    private.script("stop");
    let down = Instant::now();
    wait_for_log(
        &log,
        "the vector store is not answering",
        Duration::from_secs(30),
    );
    let text = wait_for_log(&log, "stalled:", Duration::from_secs(30));
    assert!(
        text.contains("waiting on the vector store, down for"),
        "the stall names the outage:\n{text}"
    );
    let paid_during = server.stats()["inputs"].as_u64().unwrap_or(0);
    std::thread::sleep(OUTAGE.saturating_sub(down.elapsed()));
    assert_eq!(
        server.stats()["inputs"].as_u64().unwrap_or(0),
        paid_during,
        "nothing more is paid for while rows cannot be written"
    );
    private.script("start");
    let code = exits_within(&mut child, Duration::from_secs(120));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(code, Some(0), "the same process finished:\n{text}");
    assert!(
        text.contains("the vector store answers again after"),
        "a WARN when it is back:\n{text}"
    );
    let rep = read_report(&report);
    let chunks = rep["chunks"].as_u64().unwrap();
    let db = Db::connect(&private.url);
    assert_eq!(rows_in(&db, &table), chunks, "every row, once");
    let paid = server.stats()["inputs"].as_u64().unwrap_or(0);
    assert_eq!(paid, chunks, "not one vector paid twice");
}

/// SIGTERM while the store is down: the writers cannot drain, so the run
/// exits by itself at --drain-timeout (130), well inside the orchestrator's
/// grace; once the store is back the same command completes the table.
#[test]
fn sigterm_while_the_store_is_down_exits_at_the_drain_deadline() {
    let test = "drain deadline";
    if pg_url(test).is_none() {
        return;
    }
    let Some(private) = PrivatePg::start(test) else {
        return;
    };
    let server = EmbedServer::start(&["--dim", "16", "--latency-ms", "60"]);
    let table = unique_table("drain");
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, report) = (dir.path().join("log"), dir.path().join("report.json"));
    let load = || {
        let mut c = load_cmd(&server, &private.url, &table, 16);
        c.args(["--drain-timeout", "3"]);
        c
    };
    let mut child = spawn_load(load(), &log, &report);
    {
        let db = Db::connect(&private.url);
        wait_until("rows written", Duration::from_secs(60), &mut child, || {
            rows_in(&db, &table) > 0
        });
    }
    assert!(child.try_wait().expect("wait").is_none(), "still loading");
    private.script("stop");
    wait_for_log(
        &log,
        "the vector store is not answering",
        Duration::from_secs(30),
    );
    signal(&child, "-TERM");
    let sent = Instant::now();
    let code = exits_within(&mut child, Duration::from_secs(20));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(code, Some(130), "exited by itself:\n{text}");
    assert!(
        sent.elapsed() < Duration::from_secs(8),
        "{:?}",
        sent.elapsed()
    );
    assert!(text.contains("--drain-timeout"), "{text}");
    private.script("start");
    let docs = dir.path().join("docs");
    let out = run(load().arg(&docs).args(SIZING).arg("--report").arg(&report));
    assert_eq!(out.code, 0, "{}", out.all_output());
    let rep = read_report(&report);
    let db = Db::connect(&private.url);
    assert_eq!(
        Some(rows_in(&db, &table)),
        rep["chunks"].as_u64(),
        "the rerun completed the table"
    );
}

/// Qdrant killed (kill -9, as a node lost) for 75 s mid-load and started
/// again on its storage: the same process finishes with every point once.
#[test]
fn qdrant_down_for_75_seconds_is_waited_out_by_the_same_process() {
    let test = "qdrant outage";
    if crate::common::qdrant::qdrant(test).is_none() {
        return;
    }
    let Some(mut q) = crate::common::qdrant::QdrantServer::start(None) else {
        return;
    };
    let server = EmbedServer::start(&["--dim", "16", "--latency-ms", "60"]);
    let collection = unique_table("outage_q");
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, report) = (dir.path().join("log"), dir.path().join("report.json"));
    let mut cmd = qdrant_load_cmd(&server, &q, &collection, 16);
    cmd.args(["--store-outage-budget", "180"]);
    let mut child = spawn_load(cmd, &log, &report);
    wait_for_log(&log, "progress: ", Duration::from_secs(60));
    let db = q.client();
    wait_until(
        "points written",
        Duration::from_secs(60),
        &mut child,
        || db.exists(&collection) && db.count(&collection, None) > 0,
    );
    drop(db);
    assert!(child.try_wait().expect("wait").is_none(), "still loading");
    let paid_at_stop = server.stats()["inputs"].as_u64().unwrap_or(0);
    q.stop();
    let down = Instant::now();
    wait_for_log(
        &log,
        "the vector store is not answering",
        Duration::from_secs(60),
    );
    std::thread::sleep(OUTAGE.saturating_sub(down.elapsed()));
    q.start_again();
    let code = exits_within(&mut child, Duration::from_secs(180));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(code, Some(0), "the same process finished:\n{text}");
    assert!(
        text.contains("the vector store answers again after"),
        "a WARN when it is back:\n{text}"
    );
    let rep = read_report(&report);
    let chunks = rep["chunks"].as_u64().unwrap();
    assert_eq!(
        q.client().count(&collection, None),
        chunks,
        "every point, once"
    );
    let paid = server.stats()["inputs"].as_u64().unwrap_or(0);
    assert!(paid >= paid_at_stop);
    // Upserts are by id: a batch sent again when the node died is not a
    // duplicate; the endpoint is paid again for nothing.
    assert_eq!(paid, chunks, "not one vector paid twice");
}

/// An outage is waited out; a store that refuses every write is not one:
/// the table dropped under a running load stops it at once (exit 1, the
/// error named), not after --store-outage-budget.
#[test]
fn a_table_dropped_under_a_load_stops_it_at_once() {
    let Some(pg) = pg_url("table dropped") else {
        return;
    };
    let server = EmbedServer::start(&["--dim", "16", "--latency-ms", "60"]);
    let table = unique_table("dropped");
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, report) = (dir.path().join("log"), dir.path().join("report.json"));
    let mut child = spawn_load(load_cmd(&server, &pg, &table, 16), &log, &report);
    let db = Db::connect(&pg);
    wait_until("rows written", Duration::from_secs(60), &mut child, || {
        rows_in(&db, &table) > 0
    });
    assert!(child.try_wait().expect("wait").is_none(), "still loading");
    db.execute(&format!("DROP TABLE \"{table}\""));
    let dropped = Instant::now();
    let code = exits_within(&mut child, Duration::from_secs(60));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(code, Some(1), "{text}");
    assert!(
        dropped.elapsed() < Duration::from_secs(30),
        "stopped at once, not after the outage budget: {:?}",
        dropped.elapsed()
    );
    assert!(text.contains("the store refuses the write"), "{text}");
    assert!(
        !text.contains("is not answering"),
        "not taken for an outage:\n{text}"
    );
}
