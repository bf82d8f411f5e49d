//! `EMBEDDING_BINDING=bedrock`, as the RAG API's `.env` has it, against a
//! server that speaks Bedrock Runtime's InvokeModel and checks every
//! request's SigV4 signature by its own reckoning (embedding-test-server
//! --protocol bedrock): Titan V2 and Cohere v3 with vectors recomputable
//! from the stored text, a session token, a Bedrock API key, throttling
//! absorbed, and a denied model or a wrong secret stopping the run with the
//! model and region named.

use std::process::Command;

use crate::common::*;

const KEY_ID: &str = "AKIAVECLOADTEST0001";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYTESTKEY";
const REGION: &str = "eu-central-1";

fn server(extra: &[&str]) -> EmbedServer {
    let mut args = vec![
        "--protocol",
        "bedrock",
        "--aws-access-key-id",
        KEY_ID,
        "--aws-secret-access-key",
        SECRET,
        "--aws-region",
        REGION,
    ];
    args.extend_from_slice(extra);
    EmbedServer::start(&args)
}

/// `vecload load` configured as the RAG API's .env configures LightRAG.
fn bedrock_load(server: &EmbedServer, pg: &str, table: &str, model: &str, dim: usize) -> Command {
    let mut c = vecload();
    c.arg("load")
        .arg(fixtures())
        .env("EMBEDDING_BINDING", "bedrock")
        .env("EMBEDDING_MODEL", model)
        .env("EMBEDDING_DIM", dim.to_string())
        .env("AWS_ACCESS_KEY_ID", KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_REGION", REGION)
        .env("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", &server.url)
        .args([
            "--pg-url",
            pg,
            "--table",
            table,
            "--progress",
            "log",
            "--no-state",
        ]);
    c
}

/// The vector vecload stores for `text` when the model takes at most
/// `max` characters: halves embedded separately, mean weighted by bytes.
fn vector_in_char_parts(text: &str, max: usize, dim: usize) -> Vec<f32> {
    if text.chars().count() <= max {
        return embedding_test_server::vector_for(text, dim);
    }
    let (a, b) = vecload::embed::parts::halves(text).unwrap();
    let (va, vb) = (
        vector_in_char_parts(a, max, dim),
        vector_in_char_parts(b, max, dim),
    );
    let mut v: Vec<f32> = va
        .iter()
        .zip(&vb)
        .map(|(x, y)| x * a.len() as f32 + y * b.len() as f32)
        .collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    v
}

fn assert_vectors(pg: &str, table: &str, dim: usize, max_chars: usize) -> usize {
    let db = Db::connect(pg);
    let rows = db.query(&format!("SELECT content, embedding FROM \"{table}\""), &[]);
    assert!(!rows.is_empty());
    let mut long = 0;
    for row in &rows {
        let content: String = row.get(0);
        let got = row.get::<_, pgvector::Vector>(1).to_vec();
        assert_eq!(got.len(), dim);
        if content.chars().count() > max_chars {
            long += 1;
        }
        let want = vector_in_char_parts(&content, max_chars, dim);
        let diff = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(
            diff < 1e-5,
            "the vector of {:?}... is not its text's",
            &content[..30.min(content.len())]
        );
    }
    long
}

#[test]
fn titan_v2_and_cohere_v3_store_vectors_of_their_text_through_sigv4() {
    let Some(pg) = pg_url("bedrock_models") else {
        return;
    };
    let server = server(&[]);
    let titan = unique_table("titan");
    let r = run(
        bedrock_load(&server, &pg, &titan, "amazon.titan-embed-text-v2:0", 1024)
            // Temporary credentials (an ECS task role's): the token is signed too.
            .env("AWS_SESSION_TOKEN", "FwoGZXIvYXdzEXAMPLETOKEN"),
    );
    assert_eq!(r.code, 0, "{}", r.all_output());
    assert_vectors(&pg, &titan, 1024, 50_000);
    let stats = server.stats();
    assert_eq!(
        stats["auth_refused"], 0,
        "every request's signature held: {stats}"
    );
    assert_eq!(stats["max_batch"], 1, "Titan takes one text per request");
    let chunks = Db::connect(&pg).count(&titan) as u64;
    assert_eq!(stats["requests"].as_u64(), Some(chunks));

    let cohere = unique_table("cohere");
    let r = run(&mut bedrock_load(
        &server,
        &pg,
        &cohere,
        "cohere.embed-english-v3",
        1024,
    ));
    assert_eq!(r.code, 0, "{}", r.all_output());
    let long = assert_vectors(&pg, &cohere, 1024, 2048);
    assert!(
        long > 0,
        "some chunks are over Cohere v3's 2,048 characters"
    );
    let stats = server.stats();
    assert_eq!(
        stats["rejected"], 0,
        "chunks over 2,048 characters are split before sending, never refused: {stats}"
    );
    assert!(
        stats["max_batch"].as_u64().unwrap() > 1,
        "Cohere takes many texts a request"
    );
}

#[test]
fn throttling_is_absorbed_and_nothing_is_lost() {
    let Some(pg) = pg_url("bedrock_throttling") else {
        return;
    };
    let server = server(&["--capacity", "2", "--latency-ms", "20"]);
    let table = unique_table("titanthrottle");
    let r = run(
        bedrock_load(&server, &pg, &table, "amazon.titan-embed-text-v2:0", 512)
            .args(["--concurrency", "8"]),
    );
    assert_eq!(r.code, 0, "{}", r.all_output());
    let stats = server.stats();
    assert!(
        stats["rejected"].as_u64().unwrap() > 0,
        "the server throttled: {stats}"
    );
    assert_vectors(&pg, &table, 512, 50_000);
}

#[test]
fn a_bedrock_api_key_is_sent_as_a_bearer_token() {
    let Some(pg) = pg_url("bedrock_api_key") else {
        return;
    };
    let token = "ABSKbedrock-api-key-example";
    let server = EmbedServer::start(&[
        "--protocol",
        "bedrock",
        "--bearer-token",
        token,
        "--aws-access-key-id",
        "AKIANOBODY",
        "--aws-secret-access-key",
        "unused",
    ]);
    let table = unique_table("brkey");
    let mut cmd = bedrock_load(&server, &pg, &table, "amazon.titan-embed-text-v2:0", 1024);
    cmd.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("AWS_BEARER_TOKEN_BEDROCK", token);
    let r = run(&mut cmd);
    assert_eq!(r.code, 0, "{}", r.all_output());
    assert!(!r.all_output().contains(token), "the key never shows");
    assert_eq!(server.stats()["auth_refused"], 0);
}

#[test]
fn a_denied_model_or_a_wrong_secret_stops_the_run_naming_model_and_region() {
    let Some(pg) = pg_url("bedrock_denied") else {
        return;
    };
    let model = "cohere.embed-multilingual-v3";
    let server = server(&["--deny-model", model]);
    let table = unique_table("brdenied");
    let r = run(&mut bedrock_load(&server, &pg, &table, model, 1024));
    assert!(r.code == 1 || r.code == 2, "{}", r.all_output());
    let out = r.all_output();
    assert!(
        out.contains(model) && out.contains(REGION) && out.contains("AccessDenied"),
        "{out}"
    );
    assert!(
        server.stats()["requests"].as_u64().unwrap() <= 8,
        "stopped, not retried"
    );

    let table = unique_table("brsecret");
    let mut cmd = bedrock_load(&server, &pg, &table, "amazon.titan-embed-text-v2:0", 1024);
    cmd.env("AWS_SECRET_ACCESS_KEY", "not-the-secret-at-all");
    let r = run(&mut cmd);
    assert!(r.code == 1 || r.code == 2, "{}", r.all_output());
    let out = r.all_output();
    assert!(
        out.contains("InvalidSignatureException") && out.contains(REGION),
        "{out}"
    );
    assert!(
        !out.contains("not-the-secret-at-all"),
        "the secret never shows"
    );

    // A model vecload does not know, or a dimension it cannot return, is
    // refused before anything is sent.
    let sent = server.stats()["requests"].as_u64().unwrap();
    let r = run(&mut bedrock_load(
        &server,
        &pg,
        &table,
        "amazon.titan-embed-text-v2:0",
        768,
    ));
    assert_eq!(r.code, 2, "{}", r.all_output());
    assert!(r.stderr.contains("768"), "{}", r.stderr);
    let r = run(&mut bedrock_load(
        &server,
        &pg,
        &table,
        "meta.llama3-8b",
        1024,
    ));
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("amazon.titan-embed-text-v2:0"),
        "names what it knows: {}",
        r.stderr
    );
    assert_eq!(server.stats()["requests"].as_u64().unwrap(), sent);
}

/// `load --batch-api` with Bedrock: records in S3 (a real S3-compatible
/// server), a batch inference job made and polled through the signed
/// control plane, its output records joined by recordId; the remainder
/// below Bedrock's minimum records per job goes synchronously.
#[test]
fn bedrock_batch_inference_stores_vectors_of_their_text_and_the_small_remainder_goes_synchronously()
{
    let test = "bedrock_batch";
    let Some(pg) = pg_url(test) else { return };
    let Some(moto) = crate::common::s3::Moto::start(test, "batch-bucket", false) else {
        return;
    };
    let server = EmbedServer::start(&[
        "--protocol",
        "bedrock",
        "--aws-access-key-id",
        &moto.key_id,
        "--aws-secret-access-key",
        &moto.secret,
        "--aws-region",
        "us-east-1",
        "--s3-endpoint",
        &moto.endpoint,
        "--batch-seconds",
        "0.5",
    ]);
    let dir = tempfile::tempdir().unwrap();
    for i in 0..150 {
        std::fs::write(
            dir.path().join(format!("n{i:03}.md")),
            format!("Record {i} goes through Bedrock batch inference overnight."),
        )
        .unwrap();
    }
    let table = unique_table("bedrock_batch");
    let mut cmd = bedrock_batch_load(&server, &moto, &pg, &table, dir.path());
    cmd.args(["--batch-max-requests", "100"])
        .args(["--batch-s3", "s3://batch-bucket/vecload/jobs"]);
    let r = run(&mut cmd);
    assert_eq!(r.code, 0, "{}", r.all_output());
    let stats = server.stats();
    assert_eq!(stats["auth_refused"], 0, "every call was signed: {stats}");
    assert_eq!(
        stats["batches_created"], 1,
        "100 records in one job: {stats}"
    );
    assert_eq!(stats["batch_requests"], 100);
    assert_eq!(
        stats["requests"], 50,
        "the last 50, below the minimum of 100 records a job, went synchronously"
    );
    assert_eq!(Db::connect(&pg).count(&table), 150);
    assert_vectors(&pg, &table, 1024, 50_000);
    assert!(
        moto.object_gets()
            .iter()
            .any(|k| k.contains("vecload/jobs/output/")),
        "the output was read from S3: {:?}",
        moto.object_gets()
    );

    // Cohere v3: 96 texts a record, its own answer shape (two records:
    // below the per-job minimum only with --batch-min-records lowered).
    let cohere = unique_table("bedrock_batch_cohere");
    let mut cmd = vecload();
    cmd.arg("load")
        .arg(dir.path())
        .env("EMBEDDING_BINDING", "bedrock")
        .env("EMBEDDING_MODEL", "cohere.embed-multilingual-v3")
        .env("EMBEDDING_DIM", "1024")
        .env("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", &server.url)
        .env("AWS_ENDPOINT_URL_BEDROCK", &server.url)
        .args(["--pg-url", &pg, "--table", &cohere, "--progress", "log"])
        .arg("--state")
        .arg(state_path(&cohere))
        .args([
            "--batch-api",
            "--batch-poll",
            "0.2",
            "--batch-min-records",
            "1",
        ])
        .args(["--batch-s3", "s3://batch-bucket/vecload/cohere/"])
        .args([
            "--batch-role-arn",
            "arn:aws:iam::123456789012:role/BedrockBatch",
        ]);
    moto.env(&mut cmd);
    let before = server.stats();
    let r = run(&mut cmd);
    assert_eq!(r.code, 0, "{}", r.all_output());
    let stats = server.stats();
    let grew = |k: &str| stats[k].as_u64().unwrap() - before[k].as_u64().unwrap();
    assert_eq!(grew("batches_created"), 1);
    assert_eq!(grew("batch_requests"), 2, "150 texts in two records");
    assert_eq!(grew("requests"), 0, "no synchronous request");
    assert_eq!(Db::connect(&pg).count(&cohere), 150);
    assert_vectors(&pg, &cohere, 1024, 2_048);
}

/// A Bedrock batch job that failed (a quota) ran nothing: its records go
/// into a job of their own, not the failed one handed back again for the
/// same request token, and nothing is sent synchronously.
#[test]
fn a_failed_bedrock_job_is_submitted_as_a_new_job_and_paid_for_once() {
    let test = "bedrock_batch_failed";
    let Some(pg) = pg_url(test) else { return };
    let Some(moto) = crate::common::s3::Moto::start(test, "batch-failed", false) else {
        return;
    };
    let server = EmbedServer::start(&[
        "--protocol",
        "bedrock",
        "--aws-access-key-id",
        &moto.key_id,
        "--aws-secret-access-key",
        &moto.secret,
        "--s3-endpoint",
        &moto.endpoint,
        "--batch-seconds",
        "0.2",
        "--batch-fail-first",
        "1",
    ]);
    let dir = tempfile::tempdir().unwrap();
    for i in 0..10 {
        std::fs::write(
            dir.path().join(format!("n{i:03}.md")),
            format!("Record {i} waits for a job that the account's quota refused."),
        )
        .unwrap();
    }
    let table = unique_table("bedrock_batch_failed");
    let mut cmd = bedrock_batch_load(&server, &moto, &pg, &table, dir.path());
    cmd.args(["--batch-min-records", "1"])
        .args(["--batch-s3", "s3://batch-failed/jobs"]);
    let r = run_within(&mut cmd, std::time::Duration::from_secs(120));
    assert_eq!(r.code, 0, "{}", r.all_output());
    // Every job made run to its end, as Bedrock runs and bills it.
    let stats = server.settled_stats();
    assert_eq!(stats["batches_created"], 2, "a new job: {stats}");
    assert_eq!(stats["batch_inputs"], 10, "{stats}");
    assert_eq!(stats["requests"], 0, "nothing synchronous: {stats}");
    assert_eq!(Db::connect(&pg).count(&table), 10);
    assert_vectors(&pg, &table, 1024, 50_000);
}

/// `vecload load DIR --batch-api` with Titan v2 on Bedrock through the test
/// server and moto; add `--batch-s3` and what the test needs.
fn bedrock_batch_load(
    server: &EmbedServer,
    moto: &crate::common::s3::Moto,
    pg: &str,
    table: &str,
    dir: &std::path::Path,
) -> Command {
    let mut cmd = vecload();
    cmd.arg("load")
        .arg(dir)
        .env("EMBEDDING_BINDING", "bedrock")
        .env("EMBEDDING_MODEL", "amazon.titan-embed-text-v2:0")
        .env("EMBEDDING_DIM", "1024")
        .env("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", &server.url)
        .env("AWS_ENDPOINT_URL_BEDROCK", &server.url)
        .args(["--pg-url", pg, "--table", table, "--progress", "log"])
        .arg("--state")
        .arg(state_path(table))
        .args(["--batch-api", "--batch-poll", "0.2"])
        .args([
            "--batch-role-arn",
            "arn:aws:iam::123456789012:role/BedrockBatch",
        ]);
    moto.env(&mut cmd);
    cmd
}
