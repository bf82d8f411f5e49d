//! `vecload plan`: the load's own counts, no request sent (one with --probe),
//! nothing written, and every target problem reported before any work.

use crate::common::*;

fn plan_cmd(server: &EmbedServer, pg: &str, table: &str, dim: usize) -> std::process::Command {
    plan_cmd_with(server, pg, table, dim, "text-embedding-3-small")
}

/// `plan_cmd` with another model (that of a load the plan follows).
fn plan_cmd_with(
    server: &EmbedServer,
    pg: &str,
    table: &str,
    dim: usize,
    model: &str,
) -> std::process::Command {
    let mut c = vecload();
    c.arg("plan")
        .args(["--embed-url", &server.url, "--embed-model", model])
        .args([
            "--embed-dim",
            &dim.to_string(),
            "--pg-url",
            pg,
            "--table",
            table,
        ]);
    c
}

fn json(r: &Run) -> serde_json::Value {
    serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("plan --json prints JSON ({e}): {}", r.stdout))
}

#[test]
fn plan_sends_nothing_writes_nothing_and_counts_what_load_then_does() {
    let Some(pg) = pg_url("plan_counts") else {
        return;
    };
    let server = EmbedServer::start(&["--dim", "32"]);
    let table = unique_table("plan");
    let sizing = [
        "--chunk-tokens",
        "150",
        "--chunk-overlap",
        "15",
        "--batch-size",
        "7",
    ];
    let r = run(plan_cmd(&server, &pg, &table, 32)
        .arg(fixtures())
        .args(sizing)
        .arg("--json"));
    assert_eq!(r.code, 0, "no problems: exit 0");
    let plan = json(&r);
    assert_eq!(server.requests(), 0, "plan sent no embedding request");
    assert!(
        !Db::connect(&pg).table_exists(&table),
        "plan created nothing"
    );
    for key in [
        "files_seen",
        "files_loadable",
        "files_skipped",
        "chunks",
        "tokens",
        "requests",
        "estimated_cost_usd",
        "estimated_seconds",
        "problems",
    ] {
        assert!(plan.get(key).is_some(), "plan JSON has {key}: {plan}");
    }
    let cost = plan["estimated_cost_usd"].as_f64().unwrap();
    let tokens = plan["tokens"].as_f64().unwrap();
    assert!(
        (cost - tokens / 1e6 * 0.02).abs() < 1e-9,
        "text-embedding-3-small is priced at $0.02/M"
    );

    let report = std::env::temp_dir().join(format!("{table}.json"));
    let mut load = load_cmd(&server, &pg, &table, 32);
    load.arg(fixtures())
        .args(sizing)
        .arg("--report")
        .arg(&report);
    assert_eq!(run(&mut load).code, 0);
    let rep = read_report(&report);
    assert_eq!(plan["chunks"], rep["chunks"]);
    assert_eq!(plan["tokens"], rep["tokens"]);
    assert_eq!(plan["files_seen"], rep["files_seen"]);
    assert_eq!(plan["files_loadable"], rep["files_loaded"]);
    assert_eq!(plan["files_skipped"], rep["files_skipped"]);
    assert_eq!(plan["requests"], rep["embed_requests"]);
    assert_eq!(Some(server.requests()), plan["requests"].as_u64());
}

#[test]
fn probe_sends_exactly_one_request_and_checks_the_vector_length() {
    let Some(pg) = pg_url("plan_probe") else {
        return;
    };
    let server = EmbedServer::start(&["--dim", "32"]);
    let table = unique_table("probe");
    let r = run(plan_cmd(&server, &pg, &table, 32)
        .arg(fixtures())
        .arg("--probe"));
    assert_eq!(r.code, 0);
    assert!(
        r.stdout.contains("probe: ok, 32 dimensions"),
        "{}",
        r.stdout
    );
    assert_eq!(server.requests(), 1);

    let r = run(plan_cmd(&server, &pg, &table, 64)
        .arg(fixtures())
        .args(["--probe", "--json"]));
    assert_eq!(r.code, 2);
    let problems = json(&r)["problems"].to_string();
    assert!(
        problems.contains("length 32") && problems.contains("is 64"),
        "{problems}"
    );
    assert_eq!(server.requests(), 2);
}

#[test]
fn dimension_over_the_index_limit_is_a_problem_with_zero_requests() {
    let Some(pg) = pg_url("plan_dim_limit") else {
        return;
    };
    let server = EmbedServer::start(&[]);
    let r = run(plan_cmd(&server, &pg, &unique_table("pd"), 3072)
        .arg(fixtures())
        .arg("--json"));
    assert_eq!(r.code, 2, "the load would fail, so plan exits non-zero");
    let problems = json(&r)["problems"].to_string();
    assert!(
        problems.contains("2000") && problems.contains("halfvec"),
        "{problems}"
    );
    assert_eq!(server.requests(), 0);
}

#[test]
fn existing_table_of_another_dimension_is_a_problem() {
    let Some(pg) = pg_url("plan_existing_table") else {
        return;
    };
    let server = EmbedServer::start(&["--dim", "32"]);
    let table = unique_table("pexist");
    assert_eq!(
        run(load_cmd(&server, &pg, &table, 32).arg(fixtures().join("guides"))).code,
        0
    );
    let before = server.requests();
    let r = run(plan_cmd(&server, &pg, &table, 48).arg(fixtures()));
    assert_eq!(r.code, 2);
    assert!(
        r.stdout.contains("vector(32)") && r.stdout.contains("vector(48)"),
        "{}",
        r.stdout
    );
    assert_eq!(server.requests(), before);
}

#[test]
fn missing_permissions_are_problems_with_their_fix() {
    let Some(pg) = pg_url("plan_permissions") else {
        return;
    };
    let server = EmbedServer::start(&["--dim", "32"]);
    let db = Db::connect(&pg);
    let owned = unique_table("powned");
    db.execute(
        "DO $$ BEGIN CREATE ROLE vecload_limited LOGIN PASSWORD 'limited-pw'; \
         EXCEPTION WHEN duplicate_object THEN NULL; END $$; \
         REVOKE CREATE ON SCHEMA public FROM PUBLIC; CREATE EXTENSION IF NOT EXISTS vector;",
    );
    // A table of the right layout that the limited user may not write.
    assert_eq!(
        run(load_cmd(&server, &pg, &owned, 32).arg(fixtures().join("guides"))).code,
        0
    );
    let mut limited = url::Url::parse(&pg).unwrap();
    limited.set_username("vecload_limited").unwrap();
    limited.set_password(Some("limited-pw")).unwrap();
    let limited = limited.to_string();
    let sent = server.requests();

    let r = run(plan_cmd(&server, &limited, &unique_table("pnew"), 32).arg(fixtures()));
    assert_eq!(r.code, 2);
    assert!(
        r.stdout.contains("cannot create tables in schema public")
            && r.stdout.contains("GRANT CREATE ON SCHEMA public"),
        "{}",
        r.stdout
    );

    let r = run(plan_cmd(&server, &limited, &owned, 32).arg(fixtures()));
    assert_eq!(r.code, 2);
    assert!(
        r.stdout.contains("cannot write table")
            && r.stdout.contains("GRANT SELECT, INSERT, UPDATE"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("does not own table"),
        "index build needs the owner: {}",
        r.stdout
    );
    assert_eq!(server.requests(), sent, "no request during plan");
}

#[test]
fn plan_knows_what_an_incremental_run_would_skip_embed_and_delete() {
    let Some(pg) = pg_url("plan_incremental") else {
        return;
    };
    let server = EmbedServer::start(&["--dim", "16"]);
    let dir = tempfile::tempdir().unwrap();
    let para = |i: usize| {
        format!(
            "Section {i} of the guide. {}\n\n",
            "More words follow here. ".repeat(10)
        )
    };
    std::fs::write(
        dir.path().join("guide.md"),
        (0..10).map(para).collect::<String>(),
    )
    .unwrap();
    std::fs::write(dir.path().join("old.md"), "A page that will be deleted.").unwrap();
    let table = unique_table("pinc");
    let sizing = ["--chunk-tokens", "80", "--chunk-overlap", "8"];
    assert_eq!(
        run(load_cmd(&server, &pg, &table, 16)
            .arg(dir.path())
            .args(sizing))
        .code,
        0
    );

    let edited: String = (0..5)
        .map(|i| {
            if i == 4 {
                "Section 4 is new.\n\n".to_string()
            } else {
                para(i)
            }
        })
        .collect();
    std::fs::write(dir.path().join("guide.md"), edited).unwrap();
    std::fs::remove_file(dir.path().join("old.md")).unwrap();
    let sent = server.requests();
    let mut plan = plan_cmd_with(&server, &pg, &table, 16, "test-model");
    plan.arg(dir.path())
        .args(sizing)
        .args(["--prune", "--json", "--state"])
        .arg(state_path(&table));
    let r = run(&mut plan);
    assert_eq!(r.code, 0);
    let p = json(&r);
    assert_eq!(server.requests(), sent, "plan sent nothing");
    assert!(p["chunks_unchanged"].as_u64().unwrap() > 0, "{p}");
    assert!(p["stale_chunks_to_delete"].as_u64().unwrap() > 0, "{p}");
    assert_eq!(p["docs_to_prune"].as_u64(), Some(1), "{p}");

    let report = dir.path().join("r.json");
    let mut load = load_cmd(&server, &pg, &table, 16);
    load.arg(dir.path())
        .args(sizing)
        .arg("--prune")
        .arg("--report")
        .arg(&report);
    assert_eq!(run(&mut load).code, 0);
    let rep = read_report(&report);
    let embedded = server.stats()["inputs"].as_u64().unwrap();
    let before: u64 =
        p["chunks_unchanged"].as_u64().unwrap() + p["chunks_to_embed"].as_u64().unwrap();
    assert_eq!(Some(before), rep["chunks"].as_u64());
    assert_eq!(p["chunks_unchanged"], rep["chunks_unchanged"]);
    assert_eq!(p["stale_chunks_to_delete"], rep["stale_chunks_deleted"]);
    assert_eq!(p["docs_to_prune"], rep["docs_pruned"]);
    assert_eq!(p["tokens"], rep["tokens"]);
    assert!(embedded > 0);
}
