//! `--embed-provider local`: all-MiniLM-L6-v2 run in-process must give the
//! vectors sentence-transformers gives (fixtures/local-model/reference.json,
//! made by make_reference.py beside it), never cut an input, and load them
//! through the real binary.

use std::path::Path;

use crate::common::*;
use vecload::embed::EmbedError;
use vecload::embed::local::LocalModel;

struct Reference {
    texts: Vec<String>,
    vectors: Vec<Vec<f32>>,
}

fn reference() -> Reference {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/local-model/reference.json");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("reference.json"))
            .expect("json");
    Reference {
        texts: v["texts"]
            .as_array()
            .expect("texts")
            .iter()
            .map(|t| t.as_str().expect("text").to_string())
            .collect(),
        vectors: v["vectors"]
            .as_array()
            .expect("vectors")
            .iter()
            .map(|row| {
                row.as_array()
                    .expect("row")
                    .iter()
                    .map(|x| x.as_f64().expect("float") as f32)
                    .collect()
            })
            .collect(),
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

#[test]
fn local_model_agrees_with_sentence_transformers() {
    let Some(dir) = model_dir("local_model_agrees_with_sentence_transformers") else {
        return;
    };
    let r = reference();
    let model = LocalModel::open(&dir).expect("model loads");
    assert_eq!(model.dim(), 384);
    assert_eq!(
        model.window(),
        256,
        "sentence_bert_config.json's max_seq_length"
    );
    let texts: Vec<&str> = r.texts.iter().map(String::as_str).collect();
    // All at once (padded together, lengths 3 to 146 tokens) and one by one.
    let batched = model.embed(&texts).expect("embed");
    let mut lowest = 1.0f32;
    for (i, (got, want)) in batched.iter().zip(&r.vectors).enumerate() {
        let c = cosine(got, want);
        lowest = lowest.min(c);
        assert!(c >= 0.999, "text {i} ({:?}): cosine {c}", r.texts[i]);
        let norm = got.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!(
            (norm - 1.0).abs() < 1e-4,
            "normalized, as the model's Normalize module says"
        );
    }
    eprintln!("lowest cosine against sentence-transformers: {lowest}");
    for (i, text) in texts.iter().enumerate() {
        let alone = model.embed(&[text]).expect("embed");
        let c = cosine(&alone[0], &r.vectors[i]);
        assert!(c >= 0.999, "text {i} alone: cosine {c}");
        assert!(
            cosine(&alone[0], &batched[i]) > 0.9999,
            "padding changes nothing"
        );
    }
    // Related texts are closer than unrelated ones: a sanity check of meaning.
    let v = model
        .embed(&[
            "How do I store vectors in Postgres?",
            "A recipe for apple pie.",
        ])
        .expect("embed");
    assert!(cosine(&v[0], &batched[1]) > cosine(&v[1], &batched[1]) + 0.2);
}

#[test]
fn local_model_refuses_input_longer_than_its_window() {
    let Some(dir) = model_dir("local_model_refuses_input_longer_than_its_window") else {
        return;
    };
    let model = LocalModel::open(&dir).expect("model loads");
    let long = "word ".repeat(400);
    match model.embed(&["short", &long]) {
        Err(EmbedError::TooLarge(msg)) => {
            assert!(msg.contains("input 1") && msg.contains("256"), "{msg}")
        }
        other => panic!("expected TooLarge, got {:?}", other.map(|v| v.len())),
    }
}

#[test]
fn load_with_local_model_stores_the_models_vectors() {
    let test = "load_with_local_model_stores_the_models_vectors";
    let (Some(dir), Some(pg)) = (model_dir(test), pg_url(test)) else {
        return;
    };
    let r = reference();
    let docs = tempfile::tempdir().expect("tempdir");
    for (i, t) in r.texts.iter().enumerate() {
        std::fs::write(docs.path().join(format!("ref{i:02}.txt")), t).expect("write");
    }
    // A document longer than the model's window, so chunking must fit it.
    let long: String = (0..120)
        .map(|i| format!("Sentence number {i} talks about vector databases and embeddings. "))
        .collect();
    std::fs::write(docs.path().join("long.md"), &long).expect("write");
    let table = unique_table("local");
    let report = docs.path().join("report.json");
    let out = run(vecload()
        .arg("load")
        .arg(docs.path())
        .args(["--embed-provider", "local", "--embed-model-dir"])
        .arg(&dir)
        .args(["--pg-url", &pg, "--table", &table, "--progress", "log"])
        .args(["--exclude", "report.json", "--state"])
        .arg(state_path(&table))
        .arg("--report")
        .arg(&report));
    assert_eq!(out.code, 0);
    let rep = read_report(&report);
    assert_eq!(rep["failed_chunks"], 0);
    assert_eq!(rep["vectors_written"], rep["chunks"]);
    assert_eq!(
        rep["chunks_embedded_in_parts"], 0,
        "default chunks fit the model's window"
    );

    let db = Db::connect(&pg);
    let rows = db.query(
        &format!("SELECT source, content, embedding FROM \"{table}\" ORDER BY source, chunk_index"),
        &[],
    );
    let long_chunks = rows
        .iter()
        .filter(|r| r.get::<_, String>(0) == "long.md")
        .count();
    assert!(
        long_chunks >= 3,
        "the long document is chunked: {long_chunks}"
    );
    for (i, text) in r.texts.iter().enumerate() {
        let source = format!("ref{i:02}.txt");
        let row = rows
            .iter()
            .find(|row| row.get::<_, String>(0) == source)
            .unwrap_or_else(|| panic!("{source} stored"));
        assert_eq!(&row.get::<_, String>(1), text);
        let v = row.get::<_, pgvector::Vector>(2).to_vec();
        let c = cosine(&v, &r.vectors[i]);
        assert!(c >= 0.999, "{source}: cosine {c}");
    }
}

#[test]
fn local_provider_names_the_file_it_cannot_use() {
    let docs = tempfile::tempdir().expect("tempdir");
    std::fs::write(docs.path().join("a.txt"), "text").expect("write");
    let model = tempfile::tempdir().expect("tempdir");
    let base = |cmd: &mut std::process::Command| {
        cmd.arg("load")
            .arg(docs.path())
            .args(["--embed-provider", "local", "--embed-model-dir"])
            .arg(model.path())
            .args(["--pg-url", "postgres://u@127.0.0.1:1/db", "--no-state"]);
    };
    let mut c = vecload();
    base(&mut c);
    let out = run(&mut c);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("config.json"), "{}", out.stderr);

    std::fs::write(
        model.path().join("config.json"),
        r#"{"model_type":"bert","vocab_size":10,"hidden_size":8,"num_hidden_layers":1,
            "num_attention_heads":2,"intermediate_size":16,"max_position_embeddings":64}"#,
    )
    .expect("write");
    let mut c = vecload();
    base(&mut c);
    c.args(["--embed-dim", "16"]);
    let out = run(&mut c);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("--embed-dim") && out.stderr.contains('8'),
        "{}",
        out.stderr
    );

    // The config is fine; the sink is unreachable, but the model folder is
    // checked first and its missing modules.json is named.
    let mut c = vecload();
    base(&mut c);
    let out = run(&mut c);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("modules.json"), "{}", out.stderr);

    let mut c = vecload();
    base(&mut c);
    c.args(["--embed-provider", "huggingface"]);
    let out = run(&mut c);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("EMBEDDING_BINDING") && out.stderr.contains("\"huggingface\""),
        "{}",
        out.stderr
    );
}

/// Deterministic English-like text: `n` paragraphs from a fixed vocabulary.
fn generated_text(seed: u64, n: usize) -> String {
    const WORDS: &[&str] = &[
        "tenant",
        "vector",
        "index",
        "query",
        "document",
        "chunk",
        "embedding",
        "latency",
        "cluster",
        "replica",
        "backup",
        "policy",
        "invoice",
        "customer",
        "contract",
        "server",
        "storage",
        "network",
        "budget",
        "report",
        "schedule",
        "meeting",
        "release",
        "feature",
        "ownership",
        "borrow",
        "memory",
        "thread",
        "signal",
        "queue",
        "request",
        "answer",
    ];
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 33) as usize
    };
    let mut out = String::new();
    for _ in 0..n {
        for _ in 0..4 {
            let len = 6 + next() % 8;
            let words: Vec<&str> = (0..len).map(|_| WORDS[next() % WORDS.len()]).collect();
            out.push_str(&words.join(" "));
            out.push_str(". ");
        }
        out.push_str("\n\n");
    }
    out
}

/// Issue 16: with the chunkers on rayon's global pool, a corpus bigger than
/// the chunk queue hung for good: the chunkers blocked on the full queue
/// while the model, which drains it, waited for a thread of the same pool.
/// Hundreds of chunks (several times the queue of 128) through the real
/// binary into the real PostgreSQL, under a deadline, each stored vector
/// checked against the model run on the stored text.
#[test]
fn local_model_loads_a_corpus_many_times_larger_than_its_queues() {
    let test = "local_model_loads_a_corpus_many_times_larger_than_its_queues";
    let (Some(dir), Some(pg)) = (model_dir(test), pg_url(test)) else {
        return;
    };
    let docs = tempfile::tempdir().expect("tempdir");
    for f in 0..30 {
        std::fs::write(
            docs.path().join(format!("doc{f:02}.md")),
            generated_text(f, 16),
        )
        .expect("write");
    }
    let table = unique_table("localbig");
    let report = docs.path().join("../localbig-report.json");
    let log = docs.path().join("../localbig-stderr.log");
    let mut child = vecload()
        .arg("load")
        .arg(docs.path())
        .args(["--embed-provider", "local", "--embed-model-dir"])
        .arg(&dir)
        .args(["--pg-url", &pg, "--table", &table, "--progress", "log"])
        .args(["--chunk-tokens", "40", "--chunk-overlap", "4", "--no-state"])
        .arg("--report")
        .arg(&report)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("start vecload");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the load stalled: not done after 300 s\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(status.code(), Some(0), "{stderr}");
    let rep = read_report(&report);
    let chunks = rep["chunks"].as_u64().expect("chunks");
    assert!(
        chunks >= 4 * 128,
        "the corpus is several times the chunk queue: {chunks} chunks"
    );
    assert_eq!(rep["vectors_written"].as_u64(), Some(chunks));
    assert_eq!(rep["failed_chunks"], 0);

    let db = Db::connect(&pg);
    let rows = db.query(
        &format!("SELECT content, embedding FROM \"{table}\" ORDER BY source, chunk_index"),
        &[],
    );
    assert_eq!(rows.len() as u64, chunks, "every chunk is stored once");
    let model = LocalModel::open(&dir).expect("model loads");
    let texts: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    for (i, part) in texts.chunks(64).enumerate() {
        let refs: Vec<&str> = part.iter().map(String::as_str).collect();
        let want = model.embed(&refs).expect("embed");
        for (j, w) in want.iter().enumerate() {
            let got = rows[i * 64 + j].get::<_, pgvector::Vector>(1).to_vec();
            let c = cosine(&got, w);
            assert!(c > 0.9999, "row {}: cosine {c} to its own text", i * 64 + j);
        }
    }
}
