//! The pgvector sink against its ceiling: raw binary COPY of the same rows
//! straight into the final table on the same server in the same run (no
//! staging table, no upsert, no state), with the HNSW index built after the
//! load in both. At 1024 and 1536 dimensions (BENCH_PG_DIMS), BENCH_PG_ROWS
//! rows (20000).
//!
//!   VECLOAD_TEST_PG_URL=postgres://... cargo bench --bench pgvector_upload
//!
//! vecload's side is its real sink stage (`SinkStage` + `PgSink`: binary COPY
//! into a temp staging table, `INSERT ... ON CONFLICT` into the table, the
//! state file's intents and acknowledgements), fed pre-made vectors 64 at a
//! time as from the embed stage, then `finish` (index and exact count). The
//! ceiling's COPY streams use as many connections as vecload's writers (2)
//! and the same rows per transaction (500), and encode inside the timed
//! loop too. Best of two alternating rounds. Without `--bench` (under
//! `cargo test`) it does a small pass when a database is set.

mod common;

use std::sync::Arc;
use std::time::Instant;

use vecload::records::Embedded;
use vecload::settings::{Distance, IndexKind, PgType};
use vecload::store::Sink;
use vecload::store::pgvector::PgSettings;
use vecload::store::pgvector::{PgSink, PgTarget};

const WRITERS: usize = 2;
const ROWS_PER_COPY: usize = 500;

fn env_usize(k: &str, d: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let Some(url) = std::env::var("VECLOAD_TEST_PG_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        println!(
            "=== SKIPPED pgvector_upload benchmark: set VECLOAD_TEST_PG_URL (scripts/bench.sh does) ==="
        );
        return;
    };
    let n = if full {
        env_usize("BENCH_PG_ROWS", 20_000)
    } else {
        1_000
    };
    let dims: Vec<usize> = std::env::var("BENCH_PG_DIMS")
        .unwrap_or_else(|_| "1024,1536".into())
        .split(',')
        .filter_map(|d| d.trim().parse().ok())
        .collect();
    let target = PgTarget::from_settings(Some(url), None, None, None, None, None, None, None)
        .expect("PostgreSQL settings");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!("rows: {n} per run, {WRITERS} writers, {ROWS_PER_COPY} rows per transaction");
    println!();
    println!(
        "| dim | raw COPY rows/s (load) | vecload rows/s (load) | ratio (load) | raw, load + HNSW | vecload, load + HNSW | ratio (load + HNSW) |"
    );
    println!("|---|---|---|---|---|---|---|");
    let stamp = std::process::id();
    for dim in dims {
        let rows = common::make_rows(n, dim);
        let mut raw = (0.0f64, 0.0f64);
        let mut ours = (0.0f64, 0.0f64);
        for round in 0..2 {
            let r = rt.block_on(raw_copy(
                &target,
                &format!("bench_raw_{stamp}_{dim}_{round}"),
                &rows,
                dim,
            ));
            let v = rt.block_on(vecload_copy(
                &target,
                &format!("bench_vecload_{stamp}_{dim}_{round}"),
                rows.clone(),
                dim,
            ));
            eprintln!(
                "dim {dim} round {round}: raw {:.0} / {:.0}, vecload {:.0} / {:.0} rows/s (load / load + index)",
                r.0, r.1, v.0, v.1
            );
            raw = (raw.0.max(r.0), raw.1.max(r.1));
            ours = (ours.0.max(v.0), ours.1.max(v.1));
        }
        println!(
            "| {dim} | {:.0} | {:.0} | {:.2} | {:.0} | {:.0} | {:.2} |",
            raw.0,
            ours.0,
            ours.0 / raw.0,
            raw.1,
            ours.1,
            ours.1 / raw.1
        );
    }
}

fn index_sql(table: &str) -> String {
    format!("CREATE INDEX ON {table} USING hnsw (embedding vector_cosine_ops); ANALYZE {table}")
}

/// (rows/s of the load, rows/s of load + index).
async fn raw_copy(target: &PgTarget, table: &str, rows: &[Embedded], dim: usize) -> (f64, f64) {
    let admin = target.connect().await.expect("connect");
    admin
        .batch_execute(&common::ddl(table, dim))
        .await
        .expect("create");
    let mut clients = Vec::new();
    for _ in 0..WRITERS {
        clients.push(target.connect().await.expect("connect"));
    }
    let load = common::copy_rows(&mut clients, table, rows, ROWS_PER_COPY).await;
    let t = Instant::now();
    admin.batch_execute(&index_sql(table)).await.expect("index");
    let total = load + t.elapsed().as_secs_f64();
    let _ = admin
        .batch_execute(&format!("DROP TABLE IF EXISTS {table}"))
        .await;
    (rows.len() as f64 / load, rows.len() as f64 / total)
}

async fn vecload_copy(
    target: &PgTarget,
    table: &str,
    rows: Vec<Embedded>,
    dim: usize,
) -> (f64, f64) {
    let n = rows.len();
    let admin = target.connect().await.expect("connect");
    let _ = admin
        .batch_execute(&format!("DROP TABLE IF EXISTS {table}"))
        .await;
    let cfg = PgSettings {
        target: target.clone(),
        table: table.to_string(),
        layout: vecload::layout::Layout::Vecload,
        pg_type: PgType::Vector,
        index: IndexKind::Hnsw,
        index_params: Default::default(),
        distance: Distance::Cosine,
        index_memory: None,
        write_batch: ROWS_PER_COPY,
        write_concurrency: WRITERS,
        outage_budget: std::time::Duration::from_secs(300),
    };
    let mut sink = PgSink::new(cfg, dim);
    sink.prepare().await.expect("prepare");
    let sink: Arc<dyn Sink> = Arc::new(sink);
    let load = common::sink_stage(sink.clone(), rows).await;
    let t = Instant::now();
    let summary = sink.finish("bench", true).await.expect("finish");
    let total = load + t.elapsed().as_secs_f64();
    assert_eq!(summary.tenant_rows as usize, n, "exact count");
    let _ = admin
        .batch_execute(&format!("DROP TABLE IF EXISTS {table}"))
        .await;
    (n as f64 / load, n as f64 / total)
}
