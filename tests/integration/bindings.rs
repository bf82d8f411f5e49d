//! The RAG API's other EMBEDDING_BINDING values (azure_openai, jina,
//! voyageai, gemini, lollms), configured by LightRAG 1.5.7's own
//! environment names, against servers that speak each API and check its
//! key where the API puts it; and EMBEDDING_ASYMMETRIC: documents and
//! questions embedded by the provider's task or by the configured prefixes,
//! as the RAG API embeds them, so its questions find what vecload stored.
//!
//! Vectors are recomputable: the server's vector is of the text it was
//! sent, and of `[task] text` when the API was given a task.

use std::process::Command;

use crate::common::*;

const KEY: &str = "sk-binding-test-0001";
/// Gemini takes 128 to 3072.
const DIM: usize = 128;
const DIM_ARG: &str = "128";

/// `vecload load` of the guides with `env` as the RAG API's .env, into `table`.
fn load(env: &[(&str, &str)], pg: &str, table: &str) -> Run {
    let mut c = vecload();
    c.arg("load")
        .arg(fixtures().join("guides"))
        .env("EMBEDDING_DIM", DIM.to_string())
        .args(["--pg-url", pg, "--table", table, "--tenant", "t1"])
        .args(["--progress", "log", "--state"])
        .arg(state_path(table));
    for (k, v) in env {
        c.env(k, v);
    }
    run(&mut c)
}

/// `vecload search QUERY` with the same settings; the hits as JSON.
fn search(env: &[(&str, &str)], pg: &str, table: &str, query: &str) -> serde_json::Value {
    let mut c = vecload();
    c.args(["search", query, "--tenant", "t1", "-k", "1", "--json"])
        .env("EMBEDDING_DIM", DIM.to_string())
        .args(["--pg-url", pg, "--table", table]);
    for (k, v) in env {
        c.env(k, v);
    }
    let r = run(&mut c);
    assert_eq!(r.code, 0, "{}", r.all_output());
    serde_json::from_str(&r.stdout).expect("--json prints JSON")
}

/// Every stored vector is the one its content gets as `input(content)`;
/// returns one stored content.
fn assert_vectors(pg: &str, table: &str, input: impl Fn(&str) -> String) -> String {
    let db = Db::connect(pg);
    let rows = db.query(&format!("SELECT content, embedding FROM \"{table}\""), &[]);
    assert!(!rows.is_empty());
    for row in &rows {
        let content: String = row.get(0);
        let got = row.get::<_, pgvector::Vector>(1).to_vec();
        let want = embedding_test_server::vector_for(&input(&content), DIM);
        let diff = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(
            diff < 1e-5,
            "the vector of {:?}... is not its text's as the API embeds it",
            &content[..30.min(content.len())]
        );
    }
    rows[0].get(0)
}

fn score(hits: &serde_json::Value) -> f64 {
    hits[0]["score"].as_f64().expect("a hit with a score")
}

#[test]
fn azure_openai_by_its_deployment_with_the_key_in_api_key() {
    let Some(pg) = pg_url("azure_openai") else {
        return;
    };
    let server = EmbedServer::start(&[
        "--dim",
        DIM_ARG,
        "--protocol",
        "azure",
        "--api-key",
        KEY,
        "--azure-deployment",
        "emb-prod",
        "--bearer-token",
        "entra-token-0001",
    ]);
    let table = unique_table("azure");
    let env = [
        ("EMBEDDING_BINDING", "azure_openai"),
        ("EMBEDDING_MODEL", "text-embedding-3-large"),
        ("AZURE_EMBEDDING_ENDPOINT", server.url.as_str()),
        ("AZURE_EMBEDDING_DEPLOYMENT", "emb-prod"),
        ("AZURE_EMBEDDING_API_KEY", KEY),
        ("AZURE_EMBEDDING_API_VERSION", "2024-10-21"),
    ];
    let r = load(&env, &pg, &table);
    assert_eq!(r.code, 0, "{}", r.all_output());
    let content = assert_vectors(&pg, &table, str::to_string);
    assert_eq!(server.stats()["auth_refused"], 0);
    assert!(!r.all_output().contains(KEY), "the key reached the output");
    // Symmetric: the stored text as a question finds itself exactly.
    assert!((score(&search(&env, &pg, &table, &content)) - 1.0).abs() < 1e-4);

    // A Microsoft Entra ID token instead of the key.
    let entra = [
        env[0],
        env[1],
        env[2],
        env[3],
        ("AZURE_OPENAI_AD_TOKEN", "entra-token-0001"),
    ];
    let before = server.stats()["requests"].as_u64().unwrap_or(0);
    let r = load(&entra, &pg, &unique_table("azure_entra"));
    assert_eq!(r.code, 0, "{}", r.all_output());
    let stats = server.stats();
    assert_eq!(stats["auth_refused"], 0, "{stats}");
    assert!(stats["requests"].as_u64().unwrap_or(0) > before);

    // A deployment that does not exist stops the run, naming it.
    let mut wrong = env;
    wrong[3] = ("AZURE_EMBEDDING_DEPLOYMENT", "nope");
    let other = unique_table("azure_wrong");
    let r = load(&wrong, &pg, &other);
    assert_ne!(r.code, 0);
    assert!(r.all_output().contains("deployment"), "{}", r.all_output());
}

#[test]
fn jina_voyage_and_gemini_embed_documents_as_documents_and_questions_as_questions() {
    let Some(pg) = pg_url("task_bindings") else {
        return;
    };
    // (binding, protocol, key variable, the task documents get by default,
    //  in asymmetric mode, and a question's in asymmetric mode)
    let cases = [
        (
            "jina",
            "jina",
            "JINA_API_KEY",
            Some("text-matching"),
            "retrieval.passage",
            "retrieval.query",
        ),
        (
            "voyageai",
            "voyage",
            "VOYAGE_API_KEY",
            None,
            "document",
            "query",
        ),
        (
            "gemini",
            "gemini",
            "GEMINI_API_KEY",
            Some("RETRIEVAL_DOCUMENT"),
            "RETRIEVAL_DOCUMENT",
            "RETRIEVAL_QUERY",
        ),
    ];
    for (binding, protocol, key_var, symmetric, document, query) in cases {
        let server =
            EmbedServer::start(&["--dim", DIM_ARG, "--protocol", protocol, "--api-key", KEY]);
        let env = [
            ("EMBEDDING_BINDING", binding),
            ("EMBEDDING_BINDING_HOST", server.url.as_str()),
            (key_var, KEY),
        ];
        let table = unique_table(binding);
        let r = load(&env, &pg, &table);
        assert_eq!(r.code, 0, "{binding}: {}", r.all_output());
        let with = |task: Option<&str>, text: &str| match task {
            Some(t) => format!("[{t}] {text}"),
            None => text.to_string(),
        };
        // Gemini's shortened vectors come back longer than one: stored
        // scaled to unit length, as LightRAG stores them.
        let content = assert_vectors(&pg, &table, |c| with(symmetric, c));
        let stats = server.stats();
        assert_eq!(stats["auth_refused"], 0, "{binding}: {stats}");
        assert!(
            (score(&search(&env, &pg, &table, &content)) - 1.0).abs() < 1e-4,
            "{binding}: a stored text as the question finds itself"
        );

        let asym = [&env[..], &[("EMBEDDING_ASYMMETRIC", "true")]].concat();
        let table = unique_table(&format!("{binding}_asym"));
        let r = load(&asym, &pg, &table);
        assert_eq!(r.code, 0, "{binding}: {}", r.all_output());
        let content = assert_vectors(&pg, &table, |c| with(Some(document), c));
        let hits = search(&asym, &pg, &table, &content);
        assert!(
            score(&hits) < 0.999,
            "{binding}: the question was embedded as a question, not as the document"
        );
        let tasks = &server.stats()["tasks"];
        assert_eq!(
            tasks[query], 1,
            "{binding}: one question, as {query}: {tasks}"
        );
    }
}

#[test]
fn gemini_needs_its_key_and_refuses_vertex_ai_with_a_reason() {
    let Some(pg) = pg_url("gemini_refusals") else {
        return;
    };
    let table = unique_table("gemini_refused");
    let r = load(&[("EMBEDDING_BINDING", "gemini")], &pg, &table);
    assert_eq!(r.code, 2, "{}", r.all_output());
    assert!(r.stderr.contains("GEMINI_API_KEY"), "{}", r.stderr);
    let r = load(
        &[
            ("EMBEDDING_BINDING", "gemini"),
            ("GEMINI_API_KEY", KEY),
            ("GOOGLE_GENAI_USE_VERTEXAI", "true"),
        ],
        &pg,
        &table,
    );
    assert_eq!(r.code, 2, "{}", r.all_output());
    assert!(r.stderr.contains("Vertex AI"), "{}", r.stderr);
    assert!(!Db::connect(&pg).table_exists(&table));
}

#[test]
fn lollms_one_text_per_request_with_its_raw_authorization_key() {
    let Some(pg) = pg_url("lollms") else {
        return;
    };
    let server = EmbedServer::start(&[
        "--dim",
        DIM_ARG,
        "--protocol",
        "lollms",
        "--api-key",
        KEY,
        "--latency-ms",
        "20",
    ]);
    let table = unique_table("lollms");
    let env = [
        ("EMBEDDING_BINDING", "lollms"),
        ("EMBEDDING_BINDING_HOST", server.url.as_str()),
        ("EMBEDDING_BINDING_API_KEY", KEY),
    ];
    let r = load(&env, &pg, &table);
    assert_eq!(r.code, 0, "{}", r.all_output());
    assert_vectors(&pg, &table, str::to_string);
    let stats = server.stats();
    assert_eq!(stats["auth_refused"], 0, "{stats}");
    assert_eq!(stats["max_batch"], 1, "{stats}");
    assert!(stats["max_in_flight"].as_u64().unwrap_or(0) > 1, "{stats}");
    let rows = Db::connect(&pg).count(&table) as u64;
    assert_eq!(stats["requests"].as_u64(), Some(rows));
}

/// openai and ollama in asymmetric mode: the document prefix is put before
/// each chunk for its vector, never into the stored text, and a question
/// gets the query prefix; without both prefixes the run is refused as the
/// RAG API refuses it.
#[test]
fn prefixes_go_before_documents_and_questions_and_never_into_the_store() {
    let Some(pg) = pg_url("prefixes") else {
        return;
    };
    for (binding, protocol, model) in [
        ("openai", "openai", "nomic-embed-text-v1.5"),
        ("ollama", "ollama", "nomic-embed-text"),
    ] {
        let server = EmbedServer::start(&["--dim", DIM_ARG, "--protocol", protocol]);
        let env = [
            ("EMBEDDING_BINDING", binding),
            ("EMBEDDING_BINDING_HOST", server.url.as_str()),
            ("EMBEDDING_MODEL", model),
            ("EMBEDDING_ASYMMETRIC", "true"),
            ("EMBEDDING_DOCUMENT_PREFIX", "search_document: "),
            ("EMBEDDING_QUERY_PREFIX", "search_query: "),
        ];
        let table = unique_table(&format!("{binding}_prefix"));
        let r = load(&env, &pg, &table);
        assert_eq!(r.code, 0, "{binding}: {}", r.all_output());
        let content = assert_vectors(&pg, &table, |c| format!("search_document: {c}"));
        assert!(
            !content.starts_with("search_document"),
            "the prefix was stored"
        );
        search(&env, &pg, &table, "how do I configure it?");
        assert_eq!(
            server.stats()["last_input"],
            "search_query: how do I configure it?"
        );

        let refused = unique_table(&format!("{binding}_noprefix"));
        let r = load(&env[..5], &pg, &refused);
        assert_eq!(r.code, 2, "{}", r.all_output());
        assert!(r.stderr.contains("EMBEDDING_QUERY_PREFIX"), "{}", r.stderr);
        assert!(!Db::connect(&pg).table_exists(&refused));
    }
}

#[test]
fn every_binding_the_rag_api_accepts_is_accepted_or_refused_with_its_reason() {
    let Some(pg) = pg_url("every_binding") else {
        return;
    };
    // LightRAG 1.5.7's --embedding-binding choices.
    for binding in [
        "lollms",
        "ollama",
        "openai",
        "azure_openai",
        "bedrock",
        "jina",
        "gemini",
        "voyageai",
    ] {
        let mut c: Command = vecload();
        c.args(["plan"])
            .arg(fixtures().join("guides"))
            .env("EMBEDDING_BINDING", binding)
            .env("EMBEDDING_DIM", "1024")
            .env("EMBEDDING_MODEL", "amazon.titan-embed-text-v2:0")
            .env("AWS_REGION", "us-east-1")
            .args(["--pg-url", &pg, "--table", "every_binding_plan"]);
        let r = run(&mut c);
        assert!(
            !r.all_output().contains("not supported"),
            "{binding} is one of LightRAG's bindings: {}",
            r.all_output()
        );
    }
    let r = run(vecload()
        .args(["plan"])
        .arg(fixtures().join("guides"))
        .env("EMBEDDING_BINDING", "hf")
        .env("EMBEDDING_DIM", "16")
        .args(["--pg-url", &pg]));
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("not supported") && r.stderr.contains("voyageai"),
        "{}",
        r.stderr
    );
}
