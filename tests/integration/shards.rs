//! One load split over N worker processes (`--shard I/N`), with the
//! whole-target steps (`--step prepare|finish`) around them, against the real
//! PostgreSQL and Qdrant: the workers together write exactly what one run
//! writes, pay for each chunk once, survive a kill -9 without a state file,
//! and prune only their own shard of their own tenant.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::qdrant::qdrant;
use crate::common::*;

/// Environment and flags of one refused run.
type Case<'a> = (Vec<(&'a str, &'a str)>, Vec<&'a str>);

const SIZING: [&str; 4] = ["--chunk-tokens", "60", "--chunk-overlap", "6"];
const DIM: usize = 16;

/// `n` documents of different lengths, deterministic.
fn corpus(dir: &Path, n: usize) {
    const WORDS: &[&str] = &[
        "shard", "worker", "tenant", "vector", "bucket", "reindex", "store", "record", "chunk",
        "engine", "batch", "array", "pod", "task", "query", "answer",
    ];
    for i in 0..n {
        let sub = dir.join(format!("part{}", i % 3));
        std::fs::create_dir_all(&sub).expect("mkdir");
        let mut text = format!("# Document {i}\n\n");
        for p in 0..(2 + i % 5) {
            for w in 0..(40 + (i * 7 + p * 13) % 60) {
                text.push_str(WORDS[(i * 31 + p * 17 + w * 7) % WORDS.len()]);
                text.push(if w % 12 == 11 { '.' } else { ' ' });
            }
            text.push_str("\n\n");
        }
        std::fs::write(sub.join(format!("doc{i:03}.md")), text).expect("write");
    }
}

/// Runs every command at once; each must end within the deadline.
fn run_all(cmds: Vec<Command>, deadline: Duration) -> Vec<Run> {
    let children: Vec<_> = cmds
        .into_iter()
        .map(|mut c| {
            c.stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start vecload")
        })
        .collect();
    let until = Instant::now() + deadline;
    let mut out = Vec::new();
    for mut child in children {
        loop {
            if child.try_wait().expect("wait").is_some() {
                break;
            }
            if Instant::now() > until {
                let _ = child.kill();
                panic!("a worker did not finish within {deadline:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let o = child.wait_with_output().expect("output");
        let r = Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        };
        eprintln!("--- worker exit {} ---\n{}\n{}", r.code, r.stdout, r.stderr);
        out.push(r);
    }
    out
}

fn inputs(s: &EmbedServer) -> u64 {
    s.stats()["inputs"].as_u64().unwrap_or(0)
}

fn report_of(dir: &Path, name: &str) -> serde_json::Value {
    read_report(&dir.join(format!("{name}.json")))
}

#[test]
fn four_workers_write_exactly_what_one_run_writes_into_pgvector() {
    let Some(pg) = pg_url("four_workers_pgvector") else {
        return;
    };
    let docs = tempfile::tempdir().expect("tempdir");
    corpus(docs.path(), 48);
    let reports = tempfile::tempdir().expect("tempdir");
    let db = Db::connect(&pg);

    // The reference: one unsharded run.
    let one = EmbedServer::start(&[]);
    let single = unique_table("shard_one");
    let mut c = load_cmd(&one, &pg, &single, DIM);
    c.arg(docs.path()).args(SIZING).arg("--no-state");
    assert_eq!(run(&mut c).code, 0);
    let expected = table_rows(&db, &single);
    assert!(expected.len() > 150, "{} rows", expected.len());
    assert_eq!(inputs(&one), expected.len() as u64);

    let many = EmbedServer::start(&[]);
    let table = unique_table("shard_four");
    let step = |name: &str, step: &str| {
        let mut c = load_cmd(&many, &pg, &table, DIM);
        c.arg(docs.path())
            .args(SIZING)
            .args(["--no-state", "--shards", "4", "--step", step, "--report"])
            .arg(reports.path().join(format!("{name}.json")));
        c
    };
    assert_eq!(run(&mut step("prepare", "prepare")).code, 0);
    assert!(db.table_exists(&table));
    assert_eq!(many.requests(), 0, "the prepare step embeds nothing");

    let workers: Vec<Command> = (0..4)
        .map(|i| {
            let mut c = load_cmd(&many, &pg, &table, DIM);
            c.arg(docs.path())
                .args(SIZING)
                .args(["--no-state", "--shard", &format!("{i}/4"), "--report"])
                .arg(reports.path().join(format!("w{i}.json")));
            c
        })
        .collect();
    for r in run_all(workers, Duration::from_secs(180)) {
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    let mut written = 0;
    for i in 0..4 {
        let r = report_of(reports.path(), &format!("w{i}"));
        assert_eq!(r["shard"], format!("{i}/4"));
        assert_eq!(
            r["files_loaded"].as_u64().unwrap_or(0)
                + r["files_in_other_shards"].as_u64().unwrap_or(0),
            48,
            "each file is one shard's: {r}"
        );
        assert!(
            r["files_loaded"].as_u64().unwrap_or(0) > 0,
            "48 files over 4 shards: {r}"
        );
        written += r["vectors_written"].as_u64().unwrap_or(0);
    }
    // Each chunk was paid for once, by one worker.
    assert_eq!(inputs(&many), expected.len() as u64);
    assert_eq!(written, expected.len() as u64);

    assert_eq!(run(&mut step("finish", "finish")).code, 0);
    let finish = report_of(reports.path(), "finish");
    assert_eq!(finish["tenant_rows"].as_u64(), Some(written));
    // The workers' reports, kept beside the table, add up to the count.
    assert_eq!(finish["workers"]["shards"], 4, "{finish}");
    assert_eq!(finish["workers"]["missing"], serde_json::json!([]));
    assert_eq!(finish["workers"]["rows"].as_u64(), Some(written));
    assert_eq!(finish["workers"]["written"].as_u64(), Some(written));
    assert!(
        finish["index"].as_str().is_some_and(|i| i.contains("hnsw")),
        "the finish step builds the vector index: {finish}"
    );
    assert_eq!(
        inputs(&many),
        expected.len() as u64,
        "the finish step embeds nothing"
    );
    assert_eq!(
        table_rows(&db, &table),
        expected,
        "ids, content hashes and vectors"
    );
    let unbucketed = db.query(
        &format!("SELECT count(*) FROM \"{table}\" WHERE shard_bucket IS NULL"),
        &[],
    )[0]
    .get::<_, i64>(0);
    assert_eq!(unbucketed, 0, "every row carries its shard bucket");

    // The same finish as a plain unsharded run: everything is found in
    // the store, nothing is paid for again.
    let mut c = load_cmd(&many, &pg, &table, DIM);
    c.arg(docs.path()).args(SIZING).arg("--no-state");
    let r = run(&mut c);
    assert_eq!(r.code, 0);
    assert_eq!(inputs(&many), expected.len() as u64, "{}", r.stdout);
}

#[test]
fn a_killed_worker_rerun_without_state_pays_only_for_what_is_missing() {
    let Some(pg) = pg_url("killed_worker") else {
        return;
    };
    let docs = tempfile::tempdir().expect("tempdir");
    corpus(docs.path(), 40);
    let reports = tempfile::tempdir().expect("tempdir");
    let db = Db::connect(&pg);
    let one = EmbedServer::start(&[]);
    let single = unique_table("kill_one");
    let mut c = load_cmd(&one, &pg, &single, DIM);
    c.arg(docs.path())
        .args(CRASH_POINT_SIZING)
        .arg("--no-state");
    assert_eq!(run(&mut c).code, 0);
    let expected = table_rows(&db, &single);

    // Shard 2 talks to a server of its own, so what it paid is its own.
    let others = EmbedServer::start(&[]);
    let second = EmbedServer::start(&[]);
    let table = unique_table("kill_four");
    let worker = |i: usize, crash: bool| {
        let server = if i == 2 { &second } else { &others };
        let mut c = load_cmd(server, &pg, &table, DIM);
        c.arg(docs.path())
            .args(CRASH_POINT_SIZING)
            .args(["--no-state", "--shard", &format!("{i}/4"), "--report"])
            .arg(reports.path().join(format!("w{i}.json")));
        if crash {
            // Dies like kill -9, right after its second batch was acknowledged.
            c.env("VECLOAD_CRASH_AFTER_ACKS", "2");
        }
        c
    };
    let runs = run_all(
        (0..4).map(|i| worker(i, i == 2)).collect(),
        Duration::from_secs(180),
    );
    for (i, r) in runs.iter().enumerate() {
        if i == 2 {
            assert_ne!(r.code, 0, "worker 2 was to die");
        } else {
            assert_eq!(r.code, 0, "{}", r.stderr);
        }
    }
    assert!((db.count(&table) as usize) < expected.len());
    let paid_by_killed = inputs(&second);

    // The engine retries shard 2 on a fresh machine: no state file.
    let r = run(&mut worker(2, false));
    assert_eq!(r.code, 0);
    let rep = report_of(reports.path(), "w2");
    let found = rep["rows_in_store_at_start"]
        .as_u64()
        .expect("the store was read");
    assert!(
        found >= 2,
        "the killed worker's two batches are in the store: {rep}"
    );
    let paid = inputs(&second) - paid_by_killed;
    assert_eq!(
        paid + found,
        rep["chunks"].as_u64().unwrap_or(0),
        "only the shard's missing chunks are embedded again: {rep}"
    );
    assert_eq!(table_rows(&db, &table), expected);
    // What the kill cost: chunks embedded but not yet written when it died.
    let lost = paid_by_killed - found;
    eprintln!("the kill cost {lost} chunks embedded twice");
    assert_eq!(
        inputs(&others) + paid_by_killed + paid - lost,
        expected.len() as u64
    );
}

#[test]
fn prune_in_a_shard_removes_only_that_shards_deleted_files_of_that_tenant() {
    let Some(pg) = pg_url("shard_prune") else {
        return;
    };
    let docs = tempfile::tempdir().expect("tempdir");
    corpus(docs.path(), 24);
    let db = Db::connect(&pg);
    let server = EmbedServer::start(&[]);
    let table = unique_table("shard_prune");
    let load = |tenant: &str, shard: &str, prune: bool| {
        let mut c = load_cmd(&server, &pg, &table, DIM);
        c.arg(docs.path())
            .args(SIZING)
            .args(["--no-state", "--tenant", tenant, "--shard", shard]);
        if prune {
            c.arg("--prune");
        }
        c
    };
    for tenant in ["acme", "globex"] {
        for s in ["0/2", "1/2"] {
            assert_eq!(run(&mut load(tenant, s, false)).code, 0);
        }
    }
    let count = |tenant: &str, source_like: &str| -> i64 {
        db.query(
            &format!("SELECT count(*) FROM \"{table}\" WHERE tenant_id = $1 AND source LIKE $2"),
            &[&tenant, &source_like],
        )[0]
        .get(0)
    };
    let gone = ["part0/doc000.md", "part1/doc004.md", "part2/doc008.md"];
    for g in gone {
        assert!(count("acme", g) > 0);
        std::fs::remove_file(docs.path().join(g)).expect("delete");
    }
    let acme_before = count("acme", "%");
    let globex_before = count("globex", "%");
    let deleted: i64 = gone.iter().map(|g| count("acme", g)).sum();
    let paid = inputs(&server);

    // Shard 0 alone prunes only the deleted files that are shard 0's.
    let r = run(&mut load("acme", "0/2", true));
    assert_eq!(r.code, 0);
    let after_one = count("acme", "%");
    assert!(after_one <= acme_before && after_one > acme_before - deleted - 1);
    let r = run(&mut load("acme", "1/2", true));
    assert_eq!(r.code, 0);
    assert_eq!(count("acme", "%"), acme_before - deleted);
    for g in gone {
        assert_eq!(count("acme", g), 0, "{g} is pruned");
        assert!(count("globex", g) > 0, "{g} of the other tenant stays");
    }
    assert_eq!(count("globex", "%"), globex_before);
    assert_eq!(inputs(&server), paid, "pruning embeds nothing");

    // A LightRAG layout keeps no bucket: a sharded prune is refused up front.
    let mut c = load("acme", "0/2", true);
    c.args(["--layout", "lightrag"]);
    let r = run(&mut c);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("--prune"), "{}", r.stderr);
}

#[test]
fn the_engine_names_the_shard_and_a_wrong_one_is_refused_before_any_request() {
    let Some(pg) = pg_url("shard_engines") else {
        return;
    };
    let docs = tempfile::tempdir().expect("tempdir");
    corpus(docs.path(), 8);
    let reports = tempfile::tempdir().expect("tempdir");
    let server = EmbedServer::start(&[]);
    let table = unique_table("shard_engines");
    let cmd = |env: &[(&str, &str)], args: &[&str]| {
        let mut c = load_cmd(&server, &pg, &table, DIM);
        c.arg(docs.path())
            .args(SIZING)
            .arg("--no-state")
            .args(args)
            .args(["--report"])
            .arg(reports.path().join("r.json"));
        for (k, v) in env {
            c.env(k, v);
        }
        c
    };
    let shard_of = |env: &[(&str, &str)], args: &[&str]| -> String {
        let r = run(&mut cmd(env, args));
        assert_eq!(r.code, 0, "{}", r.stderr);
        report_of(reports.path(), "r")["shard"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(
        shard_of(&[("JOB_COMPLETION_INDEX", "1")], &["--shards", "4"]),
        "1/4"
    );
    assert_eq!(
        shard_of(
            &[
                ("AWS_BATCH_JOB_ARRAY_INDEX", "2"),
                ("AWS_BATCH_JOB_ARRAY_SIZE", "4")
            ],
            &[]
        ),
        "2/4"
    );
    assert_eq!(shard_of(&[("VECLOAD_SHARD", "3/4")], &[]), "3/4");
    let paid = server.requests();

    let refused: BTreeMap<&str, Case> = BTreeMap::from([
        (
            "JOB_COMPLETION_INDEX",
            (vec![("JOB_COMPLETION_INDEX", "4")], vec!["--shards", "4"]),
        ),
        ("--shards", (vec![("JOB_COMPLETION_INDEX", "1")], vec![])),
        (
            "AWS_BATCH_JOB_ARRAY_SIZE",
            (vec![("AWS_BATCH_JOB_ARRAY_INDEX", "1")], vec![]),
        ),
        ("out of range", (vec![], vec!["--shard", "4/4"])),
        ("--shard I/4", (vec![], vec!["--shards", "4"])),
        (
            "--step",
            (vec![("VECLOAD_SHARD", "1/4")], vec!["--step", "finish"]),
        ),
    ]);
    for (says, (env, args)) in &refused {
        let r = run(&mut cmd(env, args));
        assert_eq!(r.code, 2, "{env:?} {args:?}");
        assert!(r.stderr.contains(says), "{env:?} {args:?}: {}", r.stderr);
    }
    assert_eq!(
        server.requests(),
        paid,
        "nothing was sent for a refused shard"
    );

    // The target remembers the N it was prepared for: a worker with another
    // N is refused before any request; the finish step forgets it.
    let step = |s: &str, n: &str| run(&mut cmd(&[], &["--shards", n, "--step", s])).code;
    assert_eq!(step("prepare", "4"), 0);
    let r = run(&mut cmd(&[], &["--shard", "1/3"]));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("prepared for 4 shards"), "{}", r.stderr);
    assert_eq!(server.requests(), paid);
    assert_eq!(run(&mut cmd(&[], &["--shard", "1/4"])).code, 0);
    // Three of the four have not run since the prepare step.
    let r = run(&mut cmd(&[], &["--shards", "4", "--step", "finish"]));
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stdout.contains("shard 0/4, 2/4, 3/4"), "{}", r.stdout);
    for i in [0, 2, 3] {
        assert_eq!(run(&mut cmd(&[], &["--shard", &format!("{i}/4")])).code, 0);
    }
    assert_eq!(step("finish", "4"), 0);
    assert_eq!(
        run(&mut cmd(&[], &["--shard", "1/3"])).code,
        0,
        "finished: any N again"
    );
}

#[test]
fn four_workers_into_one_qdrant_collection_with_prepare_and_finish() {
    let Some(q) = qdrant("four_workers_qdrant") else {
        return;
    };
    let docs = tempfile::tempdir().expect("tempdir");
    corpus(docs.path(), 40);
    let reports = tempfile::tempdir().expect("tempdir");
    let db = q.client();

    let one = EmbedServer::start(&[]);
    let single = unique_table("qshard_one");
    let mut c = qdrant_load_cmd(&one, q, &single, DIM);
    c.arg(docs.path()).args(SIZING).arg("--no-state");
    assert_eq!(run(&mut c).code, 0);
    let strip = |mut p: Vec<crate::common::qdrant::Stored>| {
        for s in &mut p {
            s.updated_at.clear();
        }
        p
    };
    let expected = strip(db.points(&single, None));

    let many = EmbedServer::start(&[]);
    let coll = unique_table("qshard_four");
    let step = |s: &str| {
        let mut c = qdrant_load_cmd(&many, q, &coll, DIM);
        c.arg(docs.path())
            .args(SIZING)
            .args(["--no-state", "--shards", "4", "--step", s, "--report"])
            .arg(reports.path().join(format!("{s}.json")));
        c
    };
    assert_eq!(run(&mut step("prepare")).code, 0);
    let m = |db: &crate::common::qdrant::QdrantDb| {
        db.info(&coll)
            .config
            .and_then(|c| c.hnsw_config)
            .and_then(|h| h.m)
    };
    assert_eq!(
        m(&db),
        Some(0),
        "prepare turns HNSW building off for the load"
    );
    let mut c = qdrant_load_cmd(&many, q, &coll, DIM);
    c.arg(docs.path())
        .args(SIZING)
        .args(["--no-state", "--shard", "0/3"]);
    let r = run(&mut c);
    assert_eq!(r.code, 2, "the collection was prepared for 4 shards");
    assert!(r.stderr.contains("prepared for 4 shards"), "{}", r.stderr);
    let worker = |i: u32| {
        let mut c = qdrant_load_cmd(&many, q, &coll, DIM);
        c.arg(docs.path())
            .args(SIZING)
            .args(["--no-state", "--shard", &format!("{i}/4")]);
        c
    };
    // Three of the four at first: the engine lost one.
    for r in run_all((0..3).map(worker).collect(), Duration::from_secs(180)) {
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    assert_eq!(m(&db), Some(0), "no worker restores HNSW under the others");
    let r = run(&mut step("finish"));
    assert_eq!(r.code, 1, "a finish with a worker missing is refused");
    assert!(
        r.stdout.contains("shard 3/4"),
        "names the missing shard: {}",
        r.stdout
    );
    assert_eq!(m(&db), Some(0), "the refused finish changes nothing");
    for r in run_all(vec![worker(3)], Duration::from_secs(180)) {
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    assert_eq!(inputs(&many), expected.len() as u64);
    assert_eq!(run(&mut step("finish")).code, 0);
    assert_ne!(m(&db), Some(0), "finish restores HNSW");
    let finish = report_of(reports.path(), "finish");
    assert_eq!(finish["tenant_rows"].as_u64(), Some(expected.len() as u64));
    assert_eq!(
        finish["workers"]["rows"].as_u64(),
        Some(expected.len() as u64),
        "{finish}"
    );
    assert!(
        !db.info(&coll).config.is_some_and(|c| c
            .metadata
            .keys()
            .any(|k| k.starts_with("vecload_") && k != "vecload_embedding_space")),
        "the finish clears the run's records from the collection"
    );
    assert_eq!(strip(db.points(&coll, None)), expected);
    // Each point's bucket is in the range of a shard: 0..65536.
    let raw = db.raw_points(&coll);
    assert!(
        raw.values().all(|(p, _)| p
            .get("shard_bucket")
            .and_then(|b| b.as_i64())
            .is_some_and(|b| (0..65536).contains(&b))),
        "every point carries its shard bucket"
    );
}

#[test]
fn plan_shows_each_shards_work_and_warns_when_one_file_outweighs_the_rest() {
    let Some(pg) = pg_url("plan_shards") else {
        return;
    };
    let docs = tempfile::tempdir().expect("tempdir");
    corpus(docs.path(), 24);
    let server = EmbedServer::start(&[]);
    let table = unique_table("plan_shards");
    let plan = |dir: &Path| {
        let mut c = vecload();
        c.arg("plan")
            .arg(dir)
            .args([
                "--embed-url",
                &server.url,
                "--embed-model",
                "test-model",
                "--embed-dim",
                "16",
            ])
            .args([
                "--pg-url",
                &pg,
                "--table",
                &table,
                "--no-state",
                "--shards",
                "3",
                "--json",
            ])
            .args(SIZING);
        let r = run(&mut c);
        assert_eq!(r.code, 0, "{}", r.stderr);
        serde_json::from_str::<serde_json::Value>(&r.stdout).expect("plan JSON")
    };
    let p = plan(docs.path());
    let shards = p["shards"].as_array().expect("per-shard work");
    assert_eq!(shards.len(), 3);
    let sum = |k: &str| {
        shards
            .iter()
            .map(|s| s[k].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    assert_eq!(sum("chunks"), p["chunks"].as_u64().unwrap_or(0));
    assert_eq!(sum("tokens"), p["tokens"].as_u64().unwrap_or(0));
    assert_eq!(sum("documents"), 24);

    // What each worker then loads is what the plan said.
    let reports = tempfile::tempdir().expect("tempdir");
    for (i, want) in shards.iter().enumerate() {
        let mut c = load_cmd(&server, &pg, &table, DIM);
        c.arg(docs.path())
            .args(SIZING)
            .args(["--no-state", "--shard", &format!("{i}/3"), "--report"])
            .arg(reports.path().join("r.json"));
        assert_eq!(run(&mut c).code, 0);
        assert_eq!(report_of(reports.path(), "r")["chunks"], want["chunks"]);
    }

    // One file far larger than the others: its shard is the run's length.
    std::fs::write(
        docs.path().join("huge.md"),
        "shard worker bucket tenant. ".repeat(4000),
    )
    .expect("write");
    let p = plan(docs.path());
    let warned = p["warnings"].as_array().map(|w| w.len()).unwrap_or(0);
    assert_eq!(warned, 1, "{p}");
    assert!(
        p["warnings"][0].as_str().unwrap_or("").contains("huge.md"),
        "{p}"
    );
    assert_eq!(p["largest_file"][0], "huge.md");
}

#[test]
fn a_dimension_change_as_three_workers_then_an_unsharded_finish_that_switches() {
    let Some(pg) = pg_url("reembed_shards") else {
        return;
    };
    let docs = tempfile::tempdir().expect("tempdir");
    corpus(docs.path(), 30);
    let db = Db::connect(&pg);
    let old = EmbedServer::start(&[]);
    let src = unique_table("reshard_src");
    for tenant in ["acme", "globex"] {
        let mut c = load_cmd(&old, &pg, &src, DIM);
        c.arg(docs.path())
            .args(SIZING)
            .args(["--no-state", "--tenant", tenant]);
        assert_eq!(run(&mut c).code, 0);
    }
    let rows = db.count(&src) as u64;

    let new = EmbedServer::start(&["--dim", "24"]);
    let dst = unique_table("reshard_dst");
    let live = unique_table("reshard_live");
    let reports = tempfile::tempdir().expect("tempdir");
    let reembed = |extra: &[&str]| {
        let mut c = vecload();
        c.args(["reembed", "--from", &format!("pgvector:{src}")])
            .args([
                "--embed-url",
                &new.url,
                "--embed-model",
                "model-b",
                "--embed-dim",
                "24",
            ])
            .args(["--pg-url", &pg, "--table", &dst, "--progress", "log"])
            .args(extra);
        c
    };
    // --switch belongs to the finish run, not to a worker.
    let r = run(&mut reembed(&["--shard", "0/3", "--switch", &live]));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("finish"), "{}", r.stderr);

    assert_eq!(
        run(&mut reembed(&["--shards", "3", "--step", "prepare"])).code,
        0
    );
    let workers = (0..3)
        .map(|i| {
            let mut c = reembed(&["--shard", &format!("{i}/3"), "--report"]);
            c.arg(reports.path().join(format!("w{i}.json")));
            c
        })
        .collect();
    for r in run_all(workers, Duration::from_secs(180)) {
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    let mut done = 0;
    for i in 0..3 {
        let r = report_of(reports.path(), &format!("w{i}"));
        assert_eq!(
            r["rows_read"].as_u64().unwrap_or(0) + r["rows_in_other_shards"].as_u64().unwrap_or(0),
            rows,
            "{r}"
        );
        done += r["reembedded"].as_u64().unwrap_or(0);
    }
    assert_eq!(done, rows, "each row re-embedded by one worker");
    assert_eq!(inputs(&new), rows, "no row paid for twice");

    // The finish: the same command unsharded finds everything, embeds
    // nothing, verifies, switches.
    let mut c = reembed(&["--switch", &live, "--report"]);
    c.arg(reports.path().join("finish.json"));
    let r = run(&mut c);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let f = report_of(reports.path(), "finish");
    assert_eq!(f["verified"], true, "{f}");
    assert_eq!(f["reembedded"].as_u64(), Some(0));
    assert_eq!(inputs(&new), rows);
    assert_eq!(
        db.count(&live) as u64,
        rows,
        "the switched name serves every row"
    );
}

/// Rows written before vecload stored buckets have none: a shard must
/// still find them in the store instead of paying for them again (and must
/// not prune them, as it cannot tell whose they are).
#[test]
fn rows_without_a_bucket_are_not_paid_for_again_by_a_shard() {
    let Some(pg) = pg_url("unbucketed_rows") else {
        return;
    };
    let docs = tempfile::tempdir().expect("tempdir");
    corpus(docs.path(), 16);
    let db = Db::connect(&pg);
    let server = EmbedServer::start(&[]);
    let table = unique_table("unbucketed");
    let mut c = load_cmd(&server, &pg, &table, DIM);
    c.arg(docs.path()).args(SIZING).arg("--no-state");
    assert_eq!(run(&mut c).code, 0);
    db.execute(&format!("UPDATE \"{table}\" SET shard_bucket = NULL"));
    let rows = db.count(&table);
    let paid = inputs(&server);
    for i in 0..2 {
        let mut c = load_cmd(&server, &pg, &table, DIM);
        c.arg(docs.path()).args(SIZING).args([
            "--no-state",
            "--prune",
            "--shard",
            &format!("{i}/2"),
        ]);
        assert_eq!(run(&mut c).code, 0);
    }
    assert_eq!(inputs(&server), paid, "nothing paid again");
    assert_eq!(db.count(&table), rows, "nothing pruned");

    if let Some(q) = qdrant("unbucketed_points") {
        use qdrant_client::qdrant::{Condition, DeletePayloadPointsBuilder, Filter};
        let coll = unique_table("qunbucketed");
        let mut c = qdrant_load_cmd(&server, q, &coll, DIM);
        c.arg(docs.path()).args(SIZING).arg("--no-state");
        assert_eq!(run(&mut c).code, 0);
        let qdb = q.client();
        qdb.block(
            qdb.client.delete_payload(
                DeletePayloadPointsBuilder::new(&coll, vec!["shard_bucket".to_string()])
                    .points_selector(Filter::must([Condition::matches(
                        "tenant_id",
                        "default".to_string(),
                    )]))
                    .wait(true),
            ),
        )
        .expect("delete payload");
        let points = qdb.count(&coll, None);
        let paid = inputs(&server);
        for i in 0..2 {
            let mut c = qdrant_load_cmd(&server, q, &coll, DIM);
            c.arg(docs.path())
                .args(SIZING)
                .args(["--no-state", "--shard", &format!("{i}/2")]);
            assert_eq!(run(&mut c).code, 0);
        }
        assert_eq!(inputs(&server), paid, "nothing paid again in Qdrant either");
        assert_eq!(qdb.count(&coll, None), points);
    }
}

/// Two copies of one shard at once (an engine retrying a slow pod): both
/// end well with the same rows, and the copy is named in the summary.
fn two_copies_of_one_shard(cmd: impl Fn(&EmbedServer) -> Command, count: impl Fn() -> u64) {
    let docs = tempfile::tempdir().expect("tempdir");
    corpus(docs.path(), 24);
    // Slow enough that the two runs overlap: one chunk per request.
    let server = EmbedServer::start(&["--latency-ms", "150"]);
    let copy = || {
        let mut c = cmd(&server);
        c.arg(docs.path()).args(SIZING).args([
            "--no-state",
            "--shard",
            "0/2",
            "--batch-size",
            "1",
            "--concurrency",
            "2",
        ]);
        c
    };
    let runs = run_all(vec![copy(), copy()], Duration::from_secs(180));
    for r in &runs {
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    let said = runs
        .iter()
        .filter(|r| r.stdout.contains("was also being run by"))
        .count();
    assert!(said >= 1, "the second copy is said");
    assert!(
        runs.iter()
            .any(|r| r.stderr.contains("is also being run by")),
        "and warned about while it runs"
    );
    assert!(count() > 0);
}

#[test]
fn two_copies_of_one_shard_into_pgvector_are_said() {
    let Some(pg) = pg_url("shard_twice_pg") else {
        return;
    };
    let table = unique_table("shard_twice");
    let db = Db::connect(&pg);
    two_copies_of_one_shard(
        |s| load_cmd(s, &pg, &table, DIM),
        || db.query(&format!("SELECT count(*) FROM \"{table}\""), &[])[0].get::<_, i64>(0) as u64,
    );
}

#[test]
fn two_copies_of_one_shard_into_qdrant_are_said() {
    let Some(q) = qdrant("shard_twice_qdrant") else {
        return;
    };
    let coll = unique_table("qshard_twice");
    let db = q.client();
    two_copies_of_one_shard(
        |s| qdrant_load_cmd(s, q, &coll, DIM),
        || db.points(&coll, None).len() as u64,
    );
}
