//! pgvector's dimension limits and table compatibility are checked before any
//! file is read or any embedding request is sent.

use crate::common::*;

#[test]
fn dim_3072_with_vector_and_hnsw_is_refused_before_any_request() {
    let Some(pg) = pg_url("dim_3072_refused") else {
        return;
    };
    let server = EmbedServer::start(&["--dim", "3072"]);
    let table = unique_table("d3072");
    let r = run(load_cmd(&server, &pg, &table, 3072).arg(fixtures()));
    assert_eq!(r.code, 2, "a configuration error exits 2");
    assert!(r.stderr.contains("2000"), "names the limit: {}", r.stderr);
    assert!(
        r.stderr.contains("--pg-type halfvec") && r.stderr.contains("--index none"),
        "names the ways out: {}",
        r.stderr
    );
    assert_eq!(server.requests(), 0, "the endpoint received nothing");
    assert!(
        !Db::connect(&pg).table_exists(&table),
        "nothing was created"
    );
}

#[test]
fn dim_3072_as_halfvec_loads_and_gets_an_hnsw_index() {
    let Some(pg) = pg_url("dim_3072_halfvec") else {
        return;
    };
    let server = EmbedServer::start(&["--dim", "3072"]);
    let table = unique_table("half");
    let r = run(load_cmd(&server, &pg, &table, 3072)
        .arg(fixtures().join("guides"))
        .args(["--pg-type", "halfvec"]));
    assert_eq!(r.code, 0);
    let db = Db::connect(&pg);
    let rows = db.query(&format!("SELECT content, embedding FROM \"{table}\""), &[]);
    assert!(!rows.is_empty());
    for row in rows {
        let content: String = row.get(0);
        let v: pgvector::HalfVector = row.get(1);
        let want = embedding_test_server::vector_for(&content, 3072);
        for (a, b) in v.to_vec().iter().zip(&want) {
            assert!(
                (a.to_f32() - b).abs() < 1e-3,
                "halfvec holds the content's vector"
            );
        }
    }
    let idx: i64 = db.query("SELECT count(*) FROM pg_indexes WHERE tablename = $1 AND indexdef LIKE '%hnsw%halfvec_cosine_ops%'", &[&table])[0].get(0);
    assert_eq!(idx, 1);
}

#[test]
fn over_16000_dims_is_refused_even_without_an_index() {
    let Some(pg) = pg_url("dim_16001") else {
        return;
    };
    let server = EmbedServer::start(&[]);
    let r = run(load_cmd(&server, &pg, &unique_table("d16k"), 16_001)
        .arg(fixtures())
        .args(["--index", "none"]));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("16000"), "{}", r.stderr);
    assert_eq!(server.requests(), 0);
}

#[test]
fn existing_table_of_another_dimension_is_refused_before_any_request() {
    let Some(pg) = pg_url("existing_table_other_dim") else {
        return;
    };
    let server = EmbedServer::start(&["--dim", "32"]);
    let table = unique_table("olddim");
    assert_eq!(
        run(load_cmd(&server, &pg, &table, 32).arg(fixtures().join("guides"))).code,
        0
    );
    let sent = server.requests();
    let server64 = EmbedServer::start(&["--dim", "64"]);
    let r = run(load_cmd(&server64, &pg, &table, 64).arg(fixtures().join("guides")));
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("vector(32)") && r.stderr.contains("vector(64)"),
        "{}",
        r.stderr
    );
    assert_eq!(server64.requests(), 0, "nothing sent to the endpoint");
    assert_eq!(server.requests(), sent);
}

#[test]
fn a_table_that_is_not_a_vecload_table_is_refused() {
    let Some(pg) = pg_url("foreign_table") else {
        return;
    };
    let server = EmbedServer::start(&["--dim", "32"]);
    let table = unique_table("foreign");
    let db = Db::connect(&pg);
    db.execute(&format!("CREATE EXTENSION IF NOT EXISTS vector; CREATE TABLE \"{table}\" (id text primary key, embedding vector(32))"));
    let r = run(load_cmd(&server, &pg, &table, 32).arg(fixtures().join("guides")));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("not a vecload table"), "{}", r.stderr);
    assert_eq!(server.requests(), 0);
}

#[test]
fn unreachable_database_is_a_clear_error_before_any_request() {
    let server = EmbedServer::start(&[]);
    let r = run(load_cmd(
        &server,
        "postgres://someone:pw@127.0.0.1:1/nowhere",
        "t",
        16,
    )
    .arg(fixtures()));
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("cannot connect to PostgreSQL at someone@127.0.0.1:1/nowhere"),
        "{}",
        r.stderr
    );
    assert_eq!(server.requests(), 0);
}
