//! The Qdrant sink against its ceiling, the upload pattern of Qdrant's own
//! benchmark tool (bfb): a plain qdrant-client loop of upserts through
//! `buffer_unordered` into an HNSW-off collection, over the same points on the
//! same server in the same run. Two settings of that loop: tuned (batch 256,
//! 4 in flight, wait=true, the ceiling) and bfb's defaults (batch 100, 2 in
//! flight, wait=false).
//!
//!   QDRANT_URL=http://127.0.0.1:6333 [QDRANT_GRPC_URL=...] cargo bench --bench qdrant_upload
//!
//! vecload's side is its real sink stage (`SinkStage` with `QdrantSink`, the
//! state file's bookkeeping included), fed pre-made vectors, so only the
//! writing is compared. BENCH_POINTS (100000) and BENCH_DIM (384) size it.
//! Without `--bench` (under `cargo test`) it does a small pass when a server
//! is set and says SKIPPED otherwise. With BENCH_QDRANT_PID (the local
//! server's process; scripts/bench.sh sets it) each variant also shows the
//! server's CPU seconds by thread kind: the work each one asks of it.

mod common;
#[path = "common/server_cpu.rs"]
mod server_cpu;

use std::sync::Arc;
use std::time::Duration;

use qdrant_client::Qdrant;
use vecload::records::Embedded;
use vecload::settings::Distance as VDistance;
use vecload::store::Sink;
use vecload::store::qdrant::QdrantSettings;
use vecload::store::qdrant::settings::Ack;
use vecload::store::qdrant::{QdrantSink, QdrantTarget};

fn env_usize(k: &str, d: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let Some(rest) = std::env::var("QDRANT_URL").ok().filter(|u| !u.is_empty()) else {
        println!("=== SKIPPED qdrant_upload benchmark: set QDRANT_URL (scripts/bench.sh does) ===");
        return;
    };
    let grpc = std::env::var("QDRANT_GRPC_URL")
        .ok()
        .filter(|u| !u.is_empty());
    let n = if full {
        env_usize("BENCH_POINTS", 100_000)
    } else {
        2_000
    };
    let dim = env_usize("BENCH_DIM", 384);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let target = QdrantTarget::from_settings(
        Some(rest),
        grpc,
        std::env::var("QDRANT_API_KEY")
            .ok()
            .map(vecload::settings::Secret::new),
        Duration::from_secs(60),
    )
    .expect("Qdrant settings");
    let rows = common::make_rows(n, dim);
    let bytes: usize = rows.iter().map(|r| r.chunk.text.len()).sum();
    println!(
        "points: {n} x {dim}-d, {:.0} bytes of content each; server {}",
        bytes as f64 / n as f64,
        target.describe()
    );
    let stamp = std::process::id();
    let server: Option<u32> = std::env::var("BENCH_QDRANT_PID")
        .ok()
        .and_then(|p| p.parse().ok());
    // The server's CPU for each variant, last round.
    let mut cpu: Vec<(&str, server_cpu::Cpu)> = Vec::new();
    let timed = |name: &'static str,
                 cpu: &mut Vec<(&str, server_cpu::Cpu)>,
                 before: Option<server_cpu::Cpu>| {
        if let (Some(pid), Some(before)) = (server, before) {
            let used = server_cpu::Cpu::of(pid).since(&before);
            cpu.retain(|(n, _)| *n != name);
            cpu.push((name, used));
        }
    };
    let now = || server.map(server_cpu::Cpu::of);
    let (mut ceiling, mut bfb, mut ours, mut ours_wal): (f64, f64, f64, f64) = (0.0, 0.0, 0.0, 0.0);
    let mut indexed: f64 = 0.0;
    let mut bfb_applied: f64 = 0.0;
    let mut bfb_indexed: f64 = 0.0;
    // Alternate, best of two each: the machine is shared with the server.
    for round in 0..2 {
        let t0 = now();
        let c = rt.block_on(raw_upload(
            &target,
            &format!("bench_raw_{stamp}_{round}"),
            &rows,
            dim,
            (256, 4, true),
            false,
        ));
        timed("tuned loop", &mut cpu, t0);
        // The same loop into a collection with vecload's payload indexes.
        let t0 = now();
        let ci = rt.block_on(raw_upload(
            &target,
            &format!("bench_rawidx_{stamp}_{round}"),
            &rows,
            dim,
            (256, 4, true),
            true,
        ));
        timed("tuned loop, vecload's indexes", &mut cpu, t0);
        // bfb's own defaults: batch 100, 2 in flight, no wait for the apply;
        // and the same until the server has applied it all.
        let t0 = now();
        let (b, ba) = rt.block_on(raw_upload_applied(
            &target,
            &format!("bench_bfb_{stamp}_{round}"),
            &rows,
            dim,
            false,
        ));
        timed("bfb's defaults until applied", &mut cpu, t0);
        bfb_applied = bfb_applied.max(ba);
        // The same with the server's index work of a vecload load: what
        // --qdrant-ack wal does, written as a plain client loop.
        let t0 = now();
        let (_, bi) = rt.block_on(raw_upload_applied(
            &target,
            &format!("bench_bfbidx_{stamp}_{round}"),
            &rows,
            dim,
            true,
        ));
        timed(
            "bfb's defaults until applied, vecload's indexes",
            &mut cpu,
            t0,
        );
        bfb_indexed = bfb_indexed.max(bi);
        let t0 = now();
        let v = rt.block_on(vecload_upload(
            &target,
            &format!("bench_vecload_{stamp}_{round}"),
            rows.clone(),
            dim,
            Ack::Applied,
        ));
        timed("vecload sink", &mut cpu, t0);
        let t0 = now();
        let w = rt.block_on(vecload_upload(
            &target,
            &format!("bench_vecwal_{stamp}_{round}"),
            rows.clone(),
            dim,
            Ack::Wal,
        ));
        timed("vecload sink, --qdrant-ack wal", &mut cpu, t0);
        println!(
            "round {round}: tuned loop {c:.0}, with vecload's indexes {ci:.0}, bfb defaults {b:.0} ({ba:.0} until applied, {bi:.0} with vecload's indexes), vecload sink {v:.0}, with --qdrant-ack wal {w:.0} points/s"
        );
        ours_wal = ours_wal.max(w);
        ceiling = ceiling.max(c);
        indexed = indexed.max(ci);
        bfb = bfb.max(b);
        ours = ours.max(v);
    }
    println!();
    println!("| measure | points/s | ratio |");
    println!("|---|---|---|");
    println!(
        "| client loop: batch 256, 4 in flight, wait=true, m=0 (ceiling) | {ceiling:.0} | 1.00 |"
    );
    println!(
        "| the same loop into a collection with vecload's payload indexes (tenant, document, bucket) | {indexed:.0} | {:.2} |",
        indexed / ceiling
    );
    println!(
        "| bfb's defaults: batch 100, 2 in flight, wait=false | {bfb:.0} | {:.2} |",
        bfb / ceiling
    );
    println!(
        "| vecload Qdrant sink (batch 256, 4 writers, state file unless BENCH_NO_STATE=1), load + finish (document and bucket indexes built there) | {ours:.0} | {:.2} |",
        ours / ceiling
    );
    println!(
        "| bfb's defaults, timed until the server applied it all (barrier) | {bfb_applied:.0} | {:.2} |",
        bfb_applied / ceiling
    );
    println!(
        "| bfb's defaults until applied, with vecload's index work (tenant index first, document and bucket indexes after, timed) | {bfb_indexed:.0} | {:.2} |",
        bfb_indexed / ceiling
    );
    println!(
        "| vecload Qdrant sink with --qdrant-ack wal (wait=false, the finish's barrier timed), as above | {ours_wal:.0} | {:.2} (÷ bfb {:.2}, ÷ bfb until applied {:.2}, ÷ the same with vecload's index work {:.2}) |",
        ours_wal / ceiling,
        ours_wal / bfb,
        ours_wal / bfb_applied,
        ours_wal / bfb_indexed
    );
    println!(
        "| vecload Qdrant sink ÷ the tuned loop into a collection with the same payload indexes | | {:.2} |",
        ours / indexed
    );
    if !cpu.is_empty() {
        println!();
        println!(
            "The server's CPU per variant (last round, /proc of BENCH_QDRANT_PID, by thread kind):"
        );
        println!();
        println!("| variant | server CPU | per 100k points |");
        println!("|---|---|---|");
        for (name, c) in &cpu {
            println!(
                "| {name} | {} | {:.1} s |",
                c.describe(),
                c.total() * 100_000.0 / n as f64
            );
        }
    }
}

/// A plain client loop: `batch` points per upsert, `parallel` in flight.
async fn raw_upload(
    target: &QdrantTarget,
    name: &str,
    rows: &[Embedded],
    dim: usize,
    (batch, parallel, wait): (usize, usize, bool),
    indexed: bool,
) -> f64 {
    let client: Qdrant = target.connect().expect("client");
    common::plain_collection(&client, name, dim).await;
    if indexed {
        // The payload indexes vecload's collections have (tenant, document,
        // shard bucket): the server's work per point that the plain loop
        // does not ask for.
        use qdrant_client::qdrant::{
            CreateFieldIndexCollectionBuilder, FieldType, KeywordIndexParamsBuilder,
        };
        for (field, ty, tenant) in [
            ("tenant_id", FieldType::Keyword, true),
            ("doc_id", FieldType::Keyword, false),
            ("shard_bucket", FieldType::Integer, false),
        ] {
            let mut req = CreateFieldIndexCollectionBuilder::new(name, field, ty).wait(true);
            if ty == FieldType::Keyword {
                req =
                    req.field_index_params(KeywordIndexParamsBuilder::default().is_tenant(tenant));
            }
            client.create_field_index(req).await.expect("payload index");
        }
    }
    let secs = common::upsert_points(&client, name, rows, (batch, parallel, wait)).await;
    let _ = client.delete_collection(name).await;
    rows.len() as f64 / secs
}

/// bfb's loop, then waiting until the server has applied it all (the
/// barrier vecload's `--qdrant-ack wal` finish uses): the same work a
/// safe wait=false load must wait for. With `indexed`, also the server's
/// index work of a vecload load: the tenant index made first (untimed, as
/// the sink's prepare), the document and bucket indexes built after the
/// load (timed, as the sink's finish). Returns (points/s up to the last
/// acknowledgement, points/s up to applied).
async fn raw_upload_applied(
    target: &QdrantTarget,
    name: &str,
    rows: &[Embedded],
    dim: usize,
    indexed: bool,
) -> (f64, f64) {
    use qdrant_client::qdrant::{
        CreateFieldIndexCollectionBuilder, FieldType, KeywordIndexParamsBuilder,
    };
    let client: Qdrant = target.connect().expect("client");
    common::plain_collection(&client, name, dim).await;
    let index = |field: &str, ty: FieldType, tenant: bool| {
        let mut req = CreateFieldIndexCollectionBuilder::new(name, field, ty).wait(true);
        if ty == FieldType::Keyword {
            req = req.field_index_params(KeywordIndexParamsBuilder::default().is_tenant(tenant));
        }
        req
    };
    if indexed {
        client
            .create_field_index(index("tenant_id", FieldType::Keyword, true))
            .await
            .expect("tenant index");
    }
    let t = std::time::Instant::now();
    common::upsert_points(&client, name, rows, (100, 2, false)).await;
    let sent = t.elapsed().as_secs_f64();
    vecload::store::qdrant::collection::barrier(&client, name)
        .await
        .expect("barrier");
    if indexed {
        for (field, ty) in [
            ("doc_id", FieldType::Keyword),
            ("shard_bucket", FieldType::Integer),
        ] {
            client
                .create_field_index(index(field, ty, false))
                .await
                .expect("payload index");
        }
    }
    let applied = t.elapsed().as_secs_f64();
    let _ = client.delete_collection(name).await;
    (rows.len() as f64 / sent, rows.len() as f64 / applied)
}

async fn vecload_upload(
    target: &QdrantTarget,
    name: &str,
    rows: Vec<Embedded>,
    dim: usize,
    ack: Ack,
) -> f64 {
    let n = rows.len();
    let cfg = QdrantSettings {
        layout: vecload::layout::Layout::Vecload,
        target: target.clone(),
        collection: name.to_string(),
        distance: VDistance::Cosine,
        on_disk: true,
        hnsw_m: None,
        ef_construct: None,
        keep_indexing: false,
        shard_number: None,
        replication_factor: None,
        ack,
        write_batch: 256,
        write_concurrency: 4,
        outage_budget: std::time::Duration::from_secs(300),
    };
    let mut sink = QdrantSink::new(cfg, dim);
    // As an unsharded load: the document and bucket indexes are built by
    // the finish, which is therefore timed too.
    sink.sole_writer();
    sink.prepare().await.expect("prepare");
    sink.begin().await.expect("bulk mode");
    let sink: Arc<dyn Sink> = Arc::new(sink);
    let load = common::sink_stage(sink.clone(), rows).await;
    let t = std::time::Instant::now();
    let summary = sink.finish("bench", true).await.expect("finish");
    let secs = load + t.elapsed().as_secs_f64();
    assert_eq!(summary.tenant_rows as usize, n, "exact count");
    if let Ok(c) = QdrantTarget::connect(target) {
        let _ = c.delete_collection(name).await;
    }
    n as f64 / secs
}
