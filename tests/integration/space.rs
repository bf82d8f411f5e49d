//! The embedding space a store records, and `vecload check`, through the
//! real binary against real PostgreSQL + pgvector, Qdrant and LightRAG's own
//! storage classes. The test server runs with `--model-vectors`: each model
//! gives a text its own vector, as real endpoints do, so a store written by
//! model A holds vectors model B cannot reproduce.

use std::path::PathBuf;
use std::process::Command;

use crate::common::qdrant::qdrant;
use crate::common::*;

pub(crate) const DIM: usize = 16;

pub(crate) fn server() -> EmbedServer {
    model_vectors_server(DIM)
}

pub(crate) fn pg(verb: &str, server: &EmbedServer, url: &str, table: &str, model: &str) -> Command {
    pg_model_cmd(verb, server, url, table, model, DIM)
}

pub(crate) fn load_docs(server: &EmbedServer, url: &str, table: &str, model: &str) -> Run {
    run(pg("load", server, url, table, model).arg(fixtures()).args([
        "--no-state",
        "--progress",
        "log",
    ]))
}

fn comment(db: &Db, table: &str) -> serde_json::Value {
    let rows = db.query(
        "SELECT obj_description(to_regclass($1), 'pg_class')",
        &[&format!("\"{table}\"")],
    );
    let text: Option<String> = rows[0].get(0);
    serde_json::from_str(&text.expect("the table has a comment")).expect("JSON comment")
}

/// Every (id, vector) of `table`, to prove a refused run changed nothing.
fn snapshot(db: &Db, table: &str) -> Vec<(String, String, Vec<f32>)> {
    table_rows(db, table)
}

#[test]
fn another_model_of_the_same_dimension_is_refused_before_anything_is_paid_pgvector() {
    let Some(url) = pg_url("space pgvector") else {
        return;
    };
    let db = Db::connect(&url);
    let server = server();
    let table = unique_table("space_pg");
    assert_eq!(load_docs(&server, &url, &table, "model-a").code, 0);
    let record = &comment(&db, &table)["vecload_embedding_space"];
    assert_eq!(record["model"], "model-a");
    assert_eq!(record["dim"], DIM);
    assert_eq!(record["binding"], "openai");
    assert_eq!(record["how"], "created");
    let before = snapshot(&db, &table);
    let requests = server.requests();

    // load, search: exit 2, both models named, nothing sent or written.
    let out = load_docs(&server, &url, &table, "model-b");
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("model-a") && out.stderr.contains("model-b"));
    assert!(out.stderr.contains("vecload reembed"), "says what to do");
    let out = run(pg("search", &server, &url, &table, "model-b").arg("tenancy"));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("model-a"));
    // plan says so too, without a request.
    let out = run(pg("plan", &server, &url, &table, "model-b")
        .arg(fixtures())
        .args(["--no-state", "--json"]));
    assert_eq!(out.code, 2, "a plan with a problem");
    assert!(out.stdout.contains("model-a"), "{}", out.stdout);
    assert_eq!(server.requests(), requests, "no request was made");
    assert_eq!(snapshot(&db, &table), before, "no row changed");

    // reembed and copy into it: refused as well.
    let source = unique_table("space_pg_src");
    assert_eq!(load_docs(&server, &url, &source, "model-c").code, 0);
    let requests = server.requests();
    let out = run(pg("reembed", &server, &url, &table, "model-b").args([
        "--from",
        &format!("pgvector:{source}"),
        "--progress",
        "log",
    ]));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("model-a") && out.stderr.contains("model-b"));
    let out = run(vecload()
        .args(["copy", "--from", &format!("pgvector:{source}")])
        .args(["--pg-url", &url, "--table", &table, "--embed-dim", "16"])
        .args(["--progress", "log"]));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("model-a") && out.stderr.contains("model-c"));
    assert_eq!(server.requests(), requests, "no request was made");
    assert_eq!(snapshot(&db, &table), before, "no row changed");

    // The same model loads as before; a copy takes the source's record along.
    assert_eq!(load_docs(&server, &url, &table, "model-a").code, 0);
    let copied = unique_table("space_pg_copy");
    let out = run(vecload()
        .args(["copy", "--from", &format!("pgvector:{source}")])
        .args(["--pg-url", &url, "--table", &copied, "--embed-dim", "16"])
        .args(["--progress", "log"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        comment(&db, &copied)["vecload_embedding_space"]["model"],
        "model-c"
    );
}

#[test]
fn another_model_of_the_same_dimension_is_refused_before_anything_is_paid_qdrant() {
    let Some(q) = qdrant("space qdrant") else {
        return;
    };
    let server = server();
    let collection = unique_table("space_q");
    let load = |model: &str| {
        run(vecload()
            .arg("load")
            .arg(fixtures())
            .args(["--embed-url", &server.url, "--embed-model", model])
            .args(["--embed-dim", &DIM.to_string(), "--collection", &collection])
            .args(q.args())
            .args(["--tenant", "acme", "--no-state", "--progress", "log"]))
    };
    assert_eq!(load("model-a").code, 0);
    let db = q.client();
    let info = db.info(&collection);
    let meta = &info.config.expect("config").metadata;
    let record = match &meta["vecload_embedding_space"].kind {
        Some(qdrant_client::qdrant::value::Kind::StringValue(s)) => s.clone(),
        other => panic!("the record is JSON text: {other:?}"),
    };
    let record: serde_json::Value = serde_json::from_str(&record).expect("JSON");
    assert_eq!(record["model"], "model-a");
    assert_eq!(
        record["unit_length"], true,
        "Qdrant normalises cosine vectors"
    );
    let points = db.points(&collection, None);
    let requests = server.requests();
    let out = load("model-b");
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("model-a") && out.stderr.contains("model-b"));
    let out = run(vecload()
        .args(["search", "tenancy", "--tenant", "acme"])
        .args(["--embed-url", &server.url, "--embed-model", "model-b"])
        .args(["--embed-dim", &DIM.to_string(), "--collection", &collection])
        .args(q.args()));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert_eq!(server.requests(), requests, "no request was made");
    assert_eq!(db.points(&collection, None), points, "no point changed");
}

/// LightRAG 1.5.7 itself writes the table (no record); `vecload load` with
/// the right model adopts it after a probe of at most 8 texts, with a wrong
/// one refuses and prints the cosine it measured.
#[test]
fn a_table_lightrag_wrote_is_adopted_after_a_probe_or_refused() {
    let Some(url) = pg_url("space lightrag probe") else {
        return;
    };
    let Some(python) = lightrag_python("space lightrag probe") else {
        return;
    };
    let server = server();
    // A model (so a table) of this run's own: LightRAG's tables are shared.
    let unique = unique_table("m");
    let workspace = "acme";
    let model = format!("lr-{}", &unique[2..]);
    let table = format!(
        "lightrag_vdb_chunks_{}_{DIM}d",
        model
            .to_lowercase()
            .replace(|c: char| !c.is_ascii_alphanumeric() && c != '_', "_")
    );
    let chunks = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/lightrag/acme/kv_store_text_chunks.json");
    let out = Command::new(python)
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/lightrag_reads.py"))
        .args(["--storage", "pgvector", "--workspace", workspace])
        .args(["--model", &model, "--dim", &DIM.to_string()])
        .args(["--embed-url", &server.url, "--write", "--chunks"])
        .arg(&chunks)
        .envs(lightrag_pg_env(&url))
        .output()
        .expect("run LightRAG");
    assert!(
        out.status.success(),
        "LightRAG wrote the table:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let db = Db::connect(&url);
    let before = db.count(&table);
    assert!(before > 0, "LightRAG wrote rows");
    let vecload_load = |model: &str| {
        let mut c = vecload();
        c.args(["load"])
            .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/lightrag/docs"))
            .args(["--embed-url", &server.url, "--embed-model", model])
            .args(["--embed-dim", &DIM.to_string(), "--pg-url", &url])
            .args(["--layout", "lightrag", "--tenant", workspace])
            .args(["--no-state", "--progress", "log", "--report", "-"]);
        c
    };
    // LightRAG names the table after the model: the wrong model is given
    // the right table by name, as a user who changed EMBEDDING_MODEL to a
    // name that folds alike would (LightRAG issue #3967).
    let requests = server.requests();
    let wrong = run(vecload_load("other-model").args(["--table", &table]));
    assert_eq!(wrong.code, 2, "{}", wrong.stderr);
    assert!(wrong.stderr.contains("cosine"), "{}", wrong.stderr);
    assert!(server.requests() - requests <= 2, "a probe is one request");
    assert_eq!(db.count(&table), before, "nothing written");
    let requests = server.requests();
    let right = run(&mut vecload_load(&model));
    assert_eq!(right.code, 0, "{}", right.stderr);
    let report: serde_json::Value =
        serde_json::from_str(right.stdout.lines().last().expect("the report on stdout"))
            .expect("JSON report");
    assert_eq!(report["embedding_space"]["outcome"], "probed");
    let texts = report["embedding_space"]["probe"]["texts"]
        .as_u64()
        .unwrap();
    assert!((1..=8).contains(&texts), "{texts} texts probed");
    assert!(server.requests() > requests);
    assert_eq!(
        comment(&db, &table)["vecload_embedding_space"]["how"],
        "probed"
    );
    assert_eq!(
        comment(&db, &table)["lightrag_embedding_model"],
        model.as_str()
    );
    assert_eq!(comment(&db, &table)["lightrag_embedding_dim"], DIM);
}
