//! The tei and ollama providers against servers that speak their protocols
//! (embedding-test-server --protocol tei|ollama): their batch, length and
//! payload limits, and that nothing is cut silently.

use std::path::Path;
use std::process::Command;

use crate::common::*;

/// `vecload load` with a provider, into a table of its own.
fn provider_cmd(provider: &str, urls: &[&str], pg: &str, table: &str) -> Command {
    let mut c = vecload();
    c.arg("load")
        .args(["--embed-provider", provider])
        .args(["--embed-url", &urls.join(",")])
        .args(["--embed-dim", "16", "--pg-url", pg, "--table", table])
        .args(["--progress", "log", "--state"])
        .arg(state_path(table));
    if provider == "ollama" {
        c.args(["--embed-model", "nomic-embed-text"]);
    }
    c
}

/// Every stored row's vector is the one its content gets from a server
/// that refuses inputs over `max` bytes (in parts) or takes them whole.
fn assert_vectors(pg: &str, table: &str, max: Option<usize>) {
    let db = Db::connect(pg);
    let rows = db.query(&format!("SELECT content, embedding FROM \"{table}\""), &[]);
    assert!(!rows.is_empty());
    for row in rows {
        let content: String = row.get(0);
        let got = row.get::<_, pgvector::Vector>(1).to_vec();
        let want = match max {
            Some(m) => vector_in_parts(&content, m, 16),
            None => embedding_test_server::vector_for(&content, 16),
        };
        let diff = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(
            diff < 1e-5,
            "vector of {:?}... is not its content's",
            &content[..40.min(content.len())]
        );
    }
}

fn report(path: &Path) -> serde_json::Value {
    read_report(path)
}

#[test]
fn tei_batches_stay_within_its_max_client_batch_size() {
    let Some(pg) = pg_url("tei_batches") else {
        return;
    };
    let server = EmbedServer::start(&["--protocol", "tei", "--dim", "16", "--max-batch", "8"]);
    let table = unique_table("tei");
    let rep = std::env::temp_dir().join(format!("{table}.json"));
    let out = run(provider_cmd("tei", &[&server.url], &pg, &table)
        .arg(fixtures())
        .args([
            "--chunk-tokens",
            "60",
            "--chunk-overlap",
            "6",
            "--batch-size",
            "64",
        ])
        .arg("--report")
        .arg(&rep));
    assert_eq!(out.code, 0);
    assert!(
        out.all_output().contains("max_client_batch_size"),
        "the lowering is said"
    );
    let s = server.stats();
    assert_eq!(s["rejected"], 0, "no request over TEI's limits: {s}");
    assert_eq!(s["max_batch"], 8, "{s}");
    assert_eq!(s["truncating"], 0, "truncate is sent only when asked");
    let r = report(&rep);
    assert_eq!(r["failed_chunks"], 0);
    assert_eq!(r["vectors_written"], r["chunks"]);
    assert!(r["chunks"].as_u64().unwrap() > 16, "several batches: {r}");
    assert_vectors(&pg, &table, None);
}

/// A server of `protocol` refusing inputs over `max` bytes: every chunk is
/// still stored, the long ones embedded in parts (never cut). Returns the
/// server for further runs.
fn over_long_inputs_go_in_parts(protocol: &str, pg: &str, max: usize) -> EmbedServer {
    let server = EmbedServer::start(&[
        "--protocol",
        protocol,
        "--dim",
        "16",
        "--max-input-bytes",
        &max.to_string(),
    ]);
    let table = unique_table(&format!("{protocol}len"));
    let rep = std::env::temp_dir().join(format!("{table}.json"));
    let out = run(provider_cmd(protocol, &[&server.url], pg, &table)
        .arg(fixtures())
        .args(["--chunk-tokens", "100", "--chunk-overlap", "10"])
        .arg("--report")
        .arg(&rep));
    assert_eq!(out.code, 0);
    let r = report(&rep);
    assert_eq!(r["failed_chunks"], 0);
    assert!(r["chunks_embedded_in_parts"].as_u64().unwrap() > 0, "{r}");
    assert_vectors(pg, &table, Some(max));
    server
}

#[test]
fn tei_input_over_max_input_length_is_embedded_in_parts_unless_truncation_is_asked() {
    let Some(pg) = pg_url("tei_length") else {
        return;
    };
    // 75 "tokens" of 4 bytes: 100-token chunks of English are often longer.
    let max = 300;
    let server = over_long_inputs_go_in_parts("tei", &pg, max);

    // --embed-truncate: the server cuts, as the user asked.
    let table2 = unique_table("teitrunc");
    let out = run(provider_cmd("tei", &[&server.url], &pg, &table2)
        .arg(fixtures())
        .args([
            "--chunk-tokens",
            "100",
            "--chunk-overlap",
            "10",
            "--embed-truncate",
        ]));
    assert_eq!(out.code, 0);
    assert!(server.stats()["truncating"].as_u64().unwrap() > 0);
    let db = Db::connect(&pg);
    let long = db.query(
        &format!("SELECT content, embedding FROM \"{table2}\" WHERE octet_length(content) > {max} LIMIT 1"),
        &[],
    );
    let content: String = long[0].get(0);
    let mut cut = max;
    while !content.is_char_boundary(cut) {
        cut -= 1;
    }
    assert_eq!(
        long[0].get::<_, pgvector::Vector>(1).to_vec(),
        embedding_test_server::vector_for(&content[..cut], 16),
        "with --embed-truncate the vector is the server's, of the cut text"
    );
}

#[test]
fn tei_payload_limit_is_met_by_smaller_requests() {
    let Some(pg) = pg_url("tei_payload") else {
        return;
    };
    // 4 KB: a batch of 32 chunks of ~400 bytes is well over it.
    let server = EmbedServer::start(&[
        "--protocol",
        "tei",
        "--dim",
        "16",
        "--payload-limit",
        "4000",
    ]);
    let table = unique_table("teipay");
    let rep = std::env::temp_dir().join(format!("{table}.json"));
    let out = run(provider_cmd("tei", &[&server.url], &pg, &table)
        .arg(fixtures())
        .args(["--chunk-tokens", "100", "--chunk-overlap", "10"])
        .arg("--report")
        .arg(&rep));
    assert_eq!(out.code, 0);
    let r = report(&rep);
    assert_eq!(r["failed_chunks"], 0);
    assert_eq!(r["vectors_written"], r["chunks"]);
    assert!(
        server.stats()["rejected"].as_u64().unwrap() > 0,
        "the limit was hit"
    );
    assert_vectors(&pg, &table, None);
}

#[test]
fn tei_that_is_not_tei_is_refused_before_anything_is_read() {
    let Some(pg) = pg_url("tei_wrong_server") else {
        return;
    };
    let openai = EmbedServer::start(&["--dim", "16"]);
    let table = unique_table("teiwrong");
    let out = run(
        provider_cmd("tei", &[openai.url.trim_end_matches("/v1")], &pg, &table).arg(fixtures()),
    );
    assert_eq!(out.code, 2, "a setup error");
    assert!(out.stderr.contains("/info"), "{}", out.stderr);
    assert_eq!(openai.requests(), 0);
}

#[test]
fn ollama_servers_take_turns_one_request_each_at_a_time() {
    let Some(pg) = pg_url("ollama_turns") else {
        return;
    };
    let a = EmbedServer::start(&["--protocol", "ollama", "--dim", "16", "--latency-ms", "20"]);
    let b = EmbedServer::start(&["--protocol", "ollama", "--dim", "16", "--latency-ms", "20"]);
    let table = unique_table("ollama");
    let rep = std::env::temp_dir().join(format!("{table}.json"));
    let out = run(provider_cmd("ollama", &[&a.url, &b.url], &pg, &table)
        .arg(fixtures())
        .args([
            "--chunk-tokens",
            "60",
            "--chunk-overlap",
            "6",
            "--batch-size",
            "4",
        ])
        .arg("--report")
        .arg(&rep));
    assert_eq!(out.code, 0);
    let (sa, sb) = (a.stats(), b.stats());
    let (ra, rb) = (
        sa["requests"].as_u64().unwrap(),
        sb["requests"].as_u64().unwrap(),
    );
    assert!(ra.min(rb) * 3 > ra + rb, "turns: {ra} and {rb}");
    assert_eq!(
        sa["max_in_flight"], 1,
        "one request per server by default: {sa}"
    );
    assert_eq!(sb["max_in_flight"], 1, "{sb}");
    assert_eq!(sa["truncating"], 0, "truncate: false is always sent");
    assert_eq!(sb["truncating"], 0);
    let r = report(&rep);
    assert_eq!(r["failed_chunks"], 0);
    assert_vectors(&pg, &table, None);
}

#[test]
fn ollama_input_over_the_context_is_embedded_in_parts_not_cut() {
    let Some(pg) = pg_url("ollama_length") else {
        return;
    };
    over_long_inputs_go_in_parts("ollama", &pg, 300);
}

/// OpenAI-compatible servers are asked for base64 vectors (a quarter of the
/// bytes of JSON floats); one that refuses base64 gets floats after a
/// single retry, and every vector is its text's either way.
#[test]
fn openai_vectors_come_as_base64_and_as_floats_from_servers_without_it() {
    let Some(pg) = pg_url("openai_vectors_come_as_base64") else {
        return;
    };
    for (flags, base64) in [(&[][..], true), (&["--float-only"][..], false)] {
        let server = EmbedServer::start(&[&["--dim", "16"][..], flags].concat());
        let table = unique_table("openai_encoding");
        let r = run(provider_cmd("openai", &[&server.url], &pg, &table)
            .args(["--embed-model", "test-model"])
            .arg(fixtures()));
        assert_eq!(r.code, 0, "{}", r.all_output());
        assert_vectors(&pg, &table, None);
        let stats = server.stats();
        let requests = stats["requests"].as_u64().unwrap_or(0);
        if base64 {
            assert_eq!(stats["base64_answers"].as_u64(), Some(requests), "{stats}");
        } else {
            assert_eq!(stats["base64_answers"].as_u64(), Some(0), "{stats}");
            // The refusal was tried once (or once per request already in
            // flight), then floats only.
            assert!(stats["rejected"].as_u64().unwrap_or(0) <= 4, "{stats}");
            assert!(
                r.all_output().contains("asking for floats"),
                "{}",
                r.all_output()
            );
        }
    }
}
