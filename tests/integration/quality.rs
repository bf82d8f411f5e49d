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

/// Real questions about real documents (Debian's man pages), each naming
/// the page that answers it.
const QUESTIONS: &[(&str, &str)] = &[
    ("list directory contents", "ls.1.gz"),
    ("copy files and directories", "cp.1.gz"),
    ("change file mode bits", "chmod.1.gz"),
    ("compress or expand files", "gzip.1.gz"),
    (
        "stream editor for filtering and transforming text",
        "sed.1.gz",
    ),
    ("change file owner and group", "chown.1.gz"),
    ("make directories", "mkdir.1.gz"),
    ("remove files or directories", "rm.1.gz"),
    ("make links between files", "ln.1.gz"),
    ("estimate file space usage", "du.1.gz"),
    ("report file system space usage", "df.1.gz"),
    ("output the last part of files", "tail.1.gz"),
    ("sort lines of text files", "sort.1.gz"),
    (
        "print newline, word, and byte counts for each file",
        "wc.1.gz",
    ),
];

/// The man pages the questions are about, copied into `dir`; None (the
/// test skips, loudly) where the machine has no man pages.
fn man_pages(dir: &Path, test: &str) -> Option<()> {
    for (_, page) in QUESTIONS {
        let from = Path::new("/usr/share/man/man1").join(page);
        if std::fs::copy(&from, dir.join(page)).is_err() {
            eprintln!(
                "=== SKIPPED {test}: no {} on this machine ===",
                from.display()
            );
            return None;
        }
    }
    Some(())
}

fn questions_file(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("questions.tsv");
    let text: String = QUESTIONS
        .iter()
        .map(|(q, page)| format!("{q}\t{page}\n"))
        .collect();
    std::fs::write(&path, text).expect("write questions");
    path
}

/// The old store made by the real local model (all-MiniLM-L6-v2), the new
/// by a model that knows nothing of meaning (the test server's vectors are
/// a hash of the text): with --questions both stores answer, hit@k and MRR
/// of each are reported, and --min-hit-ratio refuses the switch (exit 1,
/// the live table unchanged). The other way round, the switch is made.
#[test]
fn real_questions_compare_the_old_model_with_the_new_and_gate_the_switch() {
    let test = "questions gate";
    let (Some(model), Some(pg)) = (model_dir(test), pg_url(test)) else {
        return;
    };
    let docs = tempfile::tempdir().expect("tempdir");
    if man_pages(docs.path(), test).is_none() {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let questions = questions_file(work.path());
    let server = model_vectors_server(DIM);
    let db = Db::connect(&pg);
    let local = |cmd: &mut std::process::Command| {
        cmd.args(["--embed-provider", "local", "--embed-model-dir"])
            .arg(&model);
    };

    // The good old store, and a re-embedding into the worse space.
    let live = unique_table("qq_live");
    let mut load = vecload();
    load.arg("load").arg(docs.path());
    local(&mut load);
    let out = run(load.args([
        "--pg-url",
        &pg,
        "--table",
        &live,
        "--no-state",
        "--progress",
        "log",
    ]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let before = db.count(&live);
    let worse = unique_table("qq_worse");
    let (q, m) = (
        questions.to_str().expect("UTF-8 path"),
        model.to_str().expect("UTF-8 path"),
    );
    let out = reembed(
        &server,
        &pg,
        &live,
        &worse,
        &[
            "--switch",
            &live,
            "--quality-k",
            "3",
            "--min-hit-ratio",
            "0.9",
            "--questions",
            q,
            "--from-embed-model-dir",
            m,
        ],
    );
    assert_eq!(out.code, 1, "{}", out.all_output());
    let r = report(&out);
    let a = &r["quality"]["answers"];
    assert_eq!(a["questions"], QUESTIONS.len(), "{a}");
    assert_eq!(a["with_expected"], QUESTIONS.len());
    let old_hit = a["old"]["hit_at_k"].as_f64().expect("old hit@k");
    let new_hit = a["new"]["hit_at_k"].as_f64().expect("new hit@k");
    assert!(old_hit >= 0.7, "the real model answers: hit@3 {old_hit}");
    assert!(
        new_hit < old_hit * 0.9,
        "hash vectors answer worse: {new_hit} vs {old_hit}"
    );
    assert!(a["old"]["mrr"].as_f64().unwrap() > a["new"]["mrr"].as_f64().unwrap());
    assert_eq!(a["passed"], false);
    assert_eq!(r["quality"]["passed"], false);
    assert!(r["switched"].is_null());
    assert!(out.stderr.contains("--min-hit-ratio"), "{}", out.stderr);
    assert!(a["old_requests"].as_u64().unwrap() >= 1);
    assert_eq!(db.count(&live), before, "the live table is unchanged");
    let dims = db.query(
        &format!("SELECT DISTINCT vector_dims(embedding) FROM \"{live}\""),
        &[],
    );
    assert_eq!(dims.len(), 1);
    assert_eq!(
        dims[0].get::<_, i32>(0),
        384,
        "still the local model's vectors"
    );

    // `check --quality` asks the live store the same questions with the
    // same model: the same figures as the old side of the re-embedding.
    let mut check = vecload();
    check.args([
        "check", "--pg-url", &pg, "--table", &live, "--json", "--quiet",
    ]);
    local(&mut check);
    let out = run(check.args(["--quality", "--quality-k", "3", "--questions", q]));
    assert_eq!(out.code, 0, "{}", out.all_output());
    let c: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON check");
    assert_eq!(c["quality"]["answers"]["new"], a["old"], "{c}");

    // The other way: from the worse space to the real model, switched.
    let old = unique_table("qq_old");
    let out = run(load_cmd(&server, &pg, &old, DIM).arg(docs.path()));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let better = unique_table("qq_better");
    let mut cmd = vecload();
    cmd.args([
        "reembed",
        "--from",
        &format!("pgvector:{old}"),
        "--pg-url",
        &pg,
    ]);
    local(&mut cmd);
    let out = run(cmd
        .args(["--table", &better, "--switch", &old, "--quality-k", "3"])
        .args([
            "--min-hit-ratio",
            "1.0",
            "--progress",
            "log",
            "--report",
            "-",
        ])
        .arg("--questions")
        .arg(&questions)
        .args([
            "--from-embed-provider",
            "openai",
            "--from-embed-url",
            &server.url,
        ]));
    assert_eq!(out.code, 0, "{}", out.all_output());
    let r = report(&out);
    let a = &r["quality"]["answers"];
    assert!(
        a["new"]["hit_at_k"].as_f64().unwrap() > a["old"]["hit_at_k"].as_f64().unwrap(),
        "{a}"
    );
    assert_eq!(a["passed"], true);
    assert!(r["switched"].is_string(), "{r}");
}
