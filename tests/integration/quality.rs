//! recall@k of a new index against exact search, measured before a switch,
//! and `--min-recall` as its gate, against real PostgreSQL + pgvector and
//! Qdrant. A deliberately poor HNSW (m = 2, ef_construction = 4) falls far
//! short and the switch is refused with the live name unchanged; pgvector's
//! defaults reach the target and switch.

use std::path::Path;

use crate::common::qdrant::qdrant;
use crate::common::*;

const DIM: usize = 16;

/// About 3000 distinct chunks of 20 tokens.
fn corpus(dir: &Path) {
    for i in 0..150 {
        let text: String = (0..20)
            .map(|p| {
                format!(
                    "Paragraph {p} of file {i}: item{} item{} item{}.\n\n",
                    i * 31 + p,
                    p * 7,
                    i
                )
            })
            .collect();
        std::fs::write(dir.join(format!("f{i:03}.md")), text).expect("write");
    }
}

fn reembed(server: &EmbedServer, pg: &str, from: &str, to: &str, extra: &[&str]) -> Run {
    run(vecload()
        .args([
            "reembed",
            "--from",
            &format!("pgvector:{from}"),
            "--pg-url",
            pg,
        ])
        .args(["--embed-url", &server.url, "--embed-model", "test-model"])
        .args(["--embed-dim", &DIM.to_string(), "--table", to])
        .args(["--progress", "log", "--report", "-"])
        .args(extra))
}

fn report(out: &Run) -> serde_json::Value {
    serde_json::from_str(out.stdout.lines().last().unwrap_or("{}")).expect("JSON report")
}

/// recall@10 of `table`'s index, computed here: pgvector's index scan
/// against a brute-force top 10 over every stored vector.
fn recall_computed_here(db: &Db, table: &str, queries: usize) -> f64 {
    let rows = table_rows(db, table);
    let cos = |a: &[f32], b: &[f32]| {
        let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let n = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
        dot / (n(a) * n(b))
    };
    let step = rows.len() / queries;
    let mut total = 0.0;
    for q in rows.iter().step_by(step).take(queries) {
        let mut exact: Vec<(f32, &str)> = rows
            .iter()
            .map(|r| (cos(&q.2, &r.2), r.0.as_str()))
            .collect();
        exact.sort_by(|a, b| b.0.total_cmp(&a.0));
        let exact: Vec<&str> = exact.iter().take(10).map(|e| e.1).collect();
        let literal = serde_json::to_string(&q.2).unwrap();
        let got: Vec<String> = db
            .query(
                &format!(
                    "SELECT id FROM \"{table}\" ORDER BY embedding <=> $1::text::vector LIMIT 10"
                ),
                &[&literal],
            )
            .iter()
            .map(|r| r.get(0))
            .collect();
        total += got.iter().filter(|g| exact.contains(&g.as_str())).count() as f64 / 10.0;
    }
    total / queries as f64
}

#[test]
fn a_poor_index_is_not_switched_to_and_a_good_one_is() {
    let Some(pg) = pg_url("quality gate pgvector") else {
        return;
    };
    let server = EmbedServer::start(&["--dim", &DIM.to_string()]);
    let db = Db::connect(&pg);
    let docs = tempfile::tempdir().expect("tempdir");
    corpus(docs.path());
    let live = unique_table("q_live");
    let out = run(load_cmd(&server, &pg, &live, DIM).arg(docs.path()).args([
        "--chunk-tokens",
        "20",
        "--chunk-overlap",
        "0",
    ]));
    assert_eq!(out.code, 0);
    let rows = db.count(&live);
    assert!(rows > 2000, "{rows} rows");
    let before = table_rows(&db, &live);

    let poor = unique_table("q_poor");
    let out = reembed(
        &server,
        &pg,
        &live,
        &poor,
        &[
            "--hnsw-m",
            "2",
            "--hnsw-ef-construction",
            "4",
            "--switch",
            &live,
            "--min-recall",
            "0.95",
        ],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    let r = report(&out);
    let recall = r["quality"]["recall"].as_f64().expect("recall measured");
    assert!(recall < 0.9, "a poor index: {recall}");
    assert_eq!(r["quality"]["passed"], false);
    assert_eq!(r["quality"]["k"], 10);
    assert!(r["switched"].is_null());
    assert!(out.stderr.contains("--min-recall"), "{}", out.stderr);
    assert_eq!(
        table_rows(&db, &live),
        before,
        "the live name still has the old data"
    );
    assert!(db.table_exists(&poor), "the new data is kept");
    // The figure agrees with one computed here on other queries.
    let here = recall_computed_here(&db, &poor, 60);
    assert!(
        (here - recall).abs() < 0.15,
        "measured {recall}, here {here}"
    );

    let good = unique_table("q_good");
    let out = reembed(
        &server,
        &pg,
        &live,
        &good,
        &["--switch", &live, "--min-recall", "0.95"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let r = report(&out);
    let recall = r["quality"]["recall"].as_f64().expect("recall measured");
    assert!(recall >= 0.95, "pgvector's defaults: {recall}");
    assert_eq!(r["quality"]["passed"], true);
    assert!(r["switched"].is_string());
    let here = recall_computed_here(&db, &live, 60);
    assert!(
        (here - recall).abs() < 0.1,
        "measured {recall}, here {here}"
    );
}

/// A copy into Qdrant measures its collection the same way before the
/// alias moves.
#[test]
fn a_copy_into_qdrant_is_measured_before_its_switch() {
    let Some(pg) = pg_url("quality gate qdrant") else {
        return;
    };
    let Some(q) = qdrant("quality gate qdrant") else {
        return;
    };
    let server = EmbedServer::start(&["--dim", &DIM.to_string()]);
    let table = unique_table("q_src");
    assert_eq!(
        run(load_cmd(&server, &pg, &table, DIM).arg(fixtures())).code,
        0
    );
    let collection = unique_table("q_coll");
    let out = run(vecload()
        .args([
            "copy",
            "--from",
            &format!("pgvector:{table}"),
            "--pg-url",
            &pg,
        ])
        .args(["--sink", "qdrant", "--collection", &collection])
        .args(q.args())
        .args([
            "--embed-dim",
            &DIM.to_string(),
            "--switch",
            &unique_table("q_alias"),
        ])
        .args(["--min-recall", "0.9", "--progress", "log", "--report", "-"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let r = report(&out);
    assert!(r["quality"]["recall"].as_f64().unwrap() >= 0.9);
    assert_eq!(r["quality"]["setting"], "hnsw_ef (a search parameter)");
    assert!(r["switched"].is_string());
}
