//! `vecload copy` against its ceiling: a copy is bound by the two stores,
//! so the ceiling is the slower of the plain read loop of the source and
//! the plain write loop of the target, each measured on the same servers,
//! over the same rows, in the same run:
//!
//! - pgvector read: keyset pages of 1000 rows with their vectors as real[]
//!   (tokio-postgres, one connection), every column decoded;
//! - pgvector write: binary COPY into the final table, 2 connections, 500
//!   rows a transaction, no index (what pgvector_upload calls raw COPY);
//! - Qdrant read: scroll pages of 1000 points with payload and vectors;
//! - Qdrant write: upserts of 256 points, 4 in flight, wait=true, into an
//!   HNSW-off collection (the tuned loop of qdrant_upload).
//!
//! vecload's side is the real binary (`vecload copy`), timed from start to
//! exit: connecting, checks, bulk mode, the copy, the count and the sampled
//! bit-for-bit verification, and the index settings restored (the pgvector
//! target is `--index none`, as its ceiling builds none either).
//!
//!   VECLOAD_TEST_PG_URL=... QDRANT_URL=... [QDRANT_GRPC_URL=...] cargo bench --bench copy
//!
//! BENCH_COPY_ROWS (100000) and BENCH_DIM (1024) size it; BENCH_COPY_KEEP=1
//! keeps the tables and collections (to profile a copy by hand). Without `--bench`
//! (under `cargo test`) it does a small pass when both servers are set and
//! says SKIPPED otherwise.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use qdrant_client::Qdrant;
use qdrant_client::qdrant::{CreateFieldIndexCollectionBuilder, FieldType, ScrollPointsBuilder};
use vecload::records::Embedded;
use vecload::store::pgvector::PgTarget;
use vecload::store::qdrant::QdrantTarget;

const PG_WRITERS: usize = 2;
const ROWS_PER_COPY: usize = 500;

fn env_usize(k: &str, d: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn env(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (Some(pg_url), Some(rest)) = (env("VECLOAD_TEST_PG_URL"), env("QDRANT_URL")) else {
        println!(
            "=== SKIPPED copy benchmark: set VECLOAD_TEST_PG_URL and QDRANT_URL (scripts/bench.sh does) ==="
        );
        return;
    };
    let grpc = env("QDRANT_GRPC_URL");
    let n = if full {
        env_usize("BENCH_COPY_ROWS", 100_000)
    } else {
        2_000
    };
    let dim = env_usize("BENCH_DIM", 1024);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let pg = PgTarget::from_settings(
        Some(pg_url.clone()),
        None,
        None,
        None,
        None,
        None,
        None,
        None,
    )
    .expect("PostgreSQL settings");
    let q = QdrantTarget::from_settings(
        Some(rest.clone()),
        grpc.clone(),
        env("QDRANT_API_KEY").map(vecload::settings::Secret::new),
        Duration::from_secs(60),
    )
    .expect("Qdrant settings");
    let stamp = std::process::id();
    let (pg_src, pg_back) = (
        format!("bench_copy_src_{stamp}"),
        format!("bench_copy_back_{stamp}"),
    );
    let (q_src, q_copy) = (
        format!("bench_copy_qsrc_{stamp}"),
        format!("bench_copy_q_{stamp}"),
    );

    let rows = common::make_rows(n, dim);
    println!(
        "rows: {n} x {dim}-d, one tenant; servers {} and {}",
        pg.describe(),
        q.describe()
    );
    let pg_write = rt.block_on(pg_write_loop(&pg, &pg_src, &rows, dim));
    let q_write = rt.block_on(qdrant_write_loop(&q, &q_src, &rows, dim));
    drop(rows);
    let pg_read = rt.block_on(pg_read_loop(&pg, &pg_src, n));
    let q_read = rt.block_on(qdrant_read_loop(&q, &q_src, n));
    eprintln!(
        "plain loops: pgvector read {pg_read:.0}, write {pg_write:.0}; Qdrant read {q_read:.0}, write {q_write:.0} rows/s"
    );

    let qdrant_args = {
        let mut a = vec!["--qdrant-url".to_string(), rest.clone()];
        if let Some(g) = &grpc {
            a.extend(["--qdrant-grpc-url".to_string(), g.clone()]);
        }
        a
    };
    // Into pgvector first: a copy into Qdrant ends by turning HNSW back
    // on, and Qdrant then builds the graph in the background, on the cores
    // the next measurement needs.
    let to_pg = time_copy(
        Command::new(env!("CARGO_BIN_EXE_vecload"))
            .args(["copy", "--from", &format!("qdrant:{q_src}")])
            .args([
                "--pg-url", &pg_url, "--sink", "pgvector", "--table", &pg_back,
            ])
            .args(["--index", "none"])
            .args(&qdrant_args),
        n,
    );

    let to_qdrant = time_copy(
        Command::new(env!("CARGO_BIN_EXE_vecload"))
            .args(["copy", "--from", &format!("pgvector:{pg_src}")])
            .args([
                "--pg-url",
                &pg_url,
                "--sink",
                "qdrant",
                "--collection",
                &q_copy,
            ])
            .args(&qdrant_args),
        n,
    );
    println!();
    // Where both servers share the machine's cores with the copy, reading
    // and writing compete for them: then one loop after the other (the
    // harmonic sum) bounds a copy, not the slower of the two.
    println!(
        "| copy | plain read rows/s | plain write rows/s | ceiling: the slower | vecload copy rows/s | ratio | ceiling: read then write | ratio |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (name, read, write, ours) in [
        ("pgvector -> Qdrant", pg_read, q_write, to_qdrant),
        ("Qdrant -> pgvector", q_read, pg_write, to_pg),
    ] {
        let ceiling = read.min(write);
        let serial = 1.0 / (1.0 / read + 1.0 / write);
        println!(
            "| {name} | {read:.0} | {write:.0} | {ceiling:.0} | {ours:.0} | {:.2} | {serial:.0} | {:.2} |",
            ours / ceiling,
            ours / serial
        );
    }
    if env("BENCH_COPY_KEEP").is_some() {
        eprintln!("kept for profiling: tables {pg_src} {pg_back}, collections {q_src} {q_copy}");
        return;
    }
    rt.block_on(async {
        if let Ok(c) = pg.connect().await {
            let _ = c
                .batch_execute(&format!(
                    "DROP TABLE IF EXISTS {pg_src}; DROP TABLE IF EXISTS {pg_back}"
                ))
                .await;
        }
        if let Ok(c) = q.connect() {
            let _ = c.delete_collection(q_src.as_str()).await;
            let _ = c.delete_collection(q_copy.as_str()).await;
        }
    });
}

/// Runs one `vecload copy` to its end; rows/s over its whole run.
fn time_copy(cmd: &mut Command, n: usize) -> f64 {
    cmd.args(["--progress", "none", "--quiet"]);
    let t = Instant::now();
    let out = cmd.output().expect("run vecload copy");
    let secs = t.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "vecload copy failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    n as f64 / secs
}

/// Binary COPY into a new table of vecload's shape, no index.
async fn pg_write_loop(target: &PgTarget, table: &str, rows: &[Embedded], dim: usize) -> f64 {
    let admin = target.connect().await.expect("connect");
    admin
        .batch_execute(&common::ddl(table, dim))
        .await
        .expect("create");
    let mut clients = Vec::new();
    for _ in 0..PG_WRITERS {
        clients.push(target.connect().await.expect("connect"));
    }
    rows.len() as f64 / common::copy_rows(&mut clients, table, rows, ROWS_PER_COPY).await
}

/// Keyset pages of 1000 rows with their vectors, every column decoded.
async fn pg_read_loop(target: &PgTarget, table: &str, n: usize) -> f64 {
    let client = target.connect().await.expect("connect");
    let sql = format!(
        "SELECT tenant_id, id, doc_id, source, chunk_index, content, embedding::real[] FROM {table} \
         WHERE (tenant_id, id) > ($1, $2) ORDER BY tenant_id, id LIMIT 1000"
    );
    let t = Instant::now();
    let (mut after, mut read, mut floats) = ((String::new(), String::new()), 0usize, 0usize);
    loop {
        let rows = client
            .query(&sql, &[&after.0, &after.1])
            .await
            .expect("read page");
        let Some(last) = rows.last() else { break };
        after = (last.get(0), last.get(1));
        for r in &rows {
            let (_, _, _, _, _, content, v): (
                String,
                String,
                String,
                String,
                i32,
                String,
                Vec<f32>,
            ) = (
                r.get(0),
                r.get(1),
                r.get(2),
                r.get(3),
                r.get(4),
                r.get(5),
                r.get(6),
            );
            floats += v.len() + content.len() % 2;
        }
        read += rows.len();
    }
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(read, n, "every row read");
    assert!(floats >= n, "vectors decoded");
    n as f64 / secs
}

/// Upserts of 256 points, 4 in flight, wait=true, HNSW off; the tenant
/// index a vecload collection has, made after (untimed), so it can be read
/// back as a copy's source.
async fn qdrant_write_loop(
    target: &QdrantTarget,
    name: &str,
    rows: &[Embedded],
    dim: usize,
) -> f64 {
    let client: Qdrant = target.connect().expect("client");
    common::plain_collection(&client, name, dim).await;
    let secs = common::upsert_points(&client, name, rows, (256, 4, true)).await;
    client
        .create_field_index(
            CreateFieldIndexCollectionBuilder::new(name, "tenant_id", FieldType::Keyword)
                .wait(true),
        )
        .await
        .expect("tenant index");
    rows.len() as f64 / secs
}

/// Scroll pages of 1000 points with payload and vectors.
async fn qdrant_read_loop(target: &QdrantTarget, name: &str, n: usize) -> f64 {
    let client: Qdrant = target.connect().expect("client");
    let t = Instant::now();
    let (mut offset, mut read) = (None, 0usize);
    loop {
        let mut req = ScrollPointsBuilder::new(name)
            .limit(1000)
            .with_payload(true)
            .with_vectors(true);
        if let Some(o) = offset.take() {
            req = req.offset(o);
        }
        let got = client.scroll(req).await.expect("scroll");
        let next = got.next_page_offset;
        read += got
            .result
            .into_iter()
            .filter_map(|p| vecload::store::qdrant::dense(p.vectors))
            .count();
        match next {
            Some(o) => offset = Some(o),
            None => break,
        }
    }
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(read, n, "every point read with its vector");
    n as f64 / secs
}
