//! The embed stage against its ceiling: the embedding test server (a
//! separate process, Rust, hyper) answers after a fixed latency and refuses
//! with 429 above a capacity of C requests in flight, so no client can do
//! better than C x batch / latency vectors per second. vecload's real embed
//! stage (batcher, limiter, retries, vector checks) is fed chunks as fast
//! as it takes them and its output is drained as it comes; nothing else of
//! the pipeline runs.
//!
//!   cargo bench --bench embed_stage
//!
//! Two runs: the capacity known (--concurrency C) and unknown (--concurrency
//! 2C: the stage must find C through 429s). Sustained = vectors over the
//! span from the server's first request to its last answer; stage = vectors
//! over the stage's whole run. BENCH_EMBED_CHUNKS (100000), BENCH_LATENCY_MS
//! (100), BENCH_CAPACITY (16), BENCH_BATCH (64) size it. Without `--bench`
//! (under `cargo test`) it does a small pass.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use vecload::embed::settings::EmbedSettings;
use vecload::embed::stage::EmbedStage;
use vecload::records::{Chunk, DocMeta, Embedded};
use vecload::report::{Fatal, Stats};

fn env_usize(k: &str, d: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

/// The embedding-test-server binary, which `cargo bench` here builds beside
/// the benchmarks (target/<profile>/).
fn test_server_bin() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the benchmark's own path");
    exe.parent()
        .and_then(std::path::Path::parent)
        .expect("the target folder")
        .join("embedding-test-server")
}

struct Server {
    child: std::process::Child,
    url: String,
}

impl Server {
    fn start(latency_ms: usize, capacity: usize, dim: usize) -> Server {
        let mut child = Command::new(test_server_bin())
            .args(["--dim", &dim.to_string()])
            .args(["--latency-ms", &latency_ms.to_string()])
            .args(["--capacity", &capacity.to_string(), "--retry-after", "1"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start embedding-test-server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("server address");
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .expect("listening line")
            .to_string();
        Server { child, url }
    }

    /// (requests, 429s, seconds from the first request to the last answer)
    fn stats(&self) -> (u64, u64, f64) {
        let base = self.url.trim_end_matches("/v1");
        let body = http::get(&format!("{base}/stats"));
        let v: serde_json::Value = serde_json::from_str(&body).expect("stats JSON");
        (
            v["requests"].as_u64().unwrap_or(0),
            v["rejected"].as_u64().unwrap_or(0),
            v["busy_seconds"].as_f64().unwrap_or(f64::NAN),
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

mod http {
    /// A GET without pulling a blocking client into the build.
    pub fn get(url: &str) -> String {
        use std::io::{Read, Write};
        let rest = url.strip_prefix("http://").expect("http URL");
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let mut s = std::net::TcpStream::connect(host).expect("connect");
        write!(
            s,
            "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )
        .expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read");
        out.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default()
    }
}

fn chunks(n: usize) -> Vec<Chunk> {
    let words = "vector index tenant chunk embedding model query latency shard replica batch \
                 token cosine table collection payload filter"
        .split(' ')
        .collect::<Vec<_>>();
    let tenant: Arc<str> = Arc::from("bench");
    (0..n)
        .map(|i| {
            let key = format!("records.jsonl#{i}");
            let doc = Arc::new(DocMeta {
                page: None,
                tenant: tenant.clone(),
                doc_id: vecload::chunk::id::doc_id(&key),
                source: key.clone(),
                file: Arc::from("records.jsonl"),
                key: key.clone(),
                hash: String::new(),
                chunk_count: 1,
                pending: 1.into(),
            });
            let text: String = std::iter::once(format!("Record {i}:"))
                .chain((0..40).map(|w| words[(i * 7 + w * 3) % words.len()].to_string()))
                .collect::<Vec<_>>()
                .join(" ");
            Chunk {
                id: vecload::chunk::id::chunk_id(&tenant, &key, 0),
                doc,
                index: 0,
                content_hash: vecload::records::content_hash(&text),
                text,
                tokens: 60,
                extra: None,
            }
        })
        .collect()
}

/// (vectors, stage seconds)
async fn run_stage(
    url: &str,
    chunks: Vec<Chunk>,
    dim: usize,
    batch: usize,
    conc: usize,
) -> (usize, f64) {
    let cfg = EmbedSettings {
        provider: &vecload::embed::providers::openai::OPENAI,
        urls: vec![url.to_string()],
        model_dir: None,
        truncate: false,
        model: "bench".into(),
        dim,
        api_key: None,
        send_dimensions: false,
        batch_size: batch,
        max_request_tokens: 300_000,
        concurrency: conc,
        rpm: None,
        tpm: None,
        request_timeout: Duration::from_secs(60),
        outage_budget: Duration::from_secs(300),
        ..EmbedSettings::default()
    };
    let (embedder, cfg) = vecload::embed::connect(&cfg).await.expect("embedder");
    let stats = Arc::new(Stats::default());
    let stage = EmbedStage::new(
        embedder,
        cfg.clone(),
        stats.clone(),
        CancellationToken::new(),
        Fatal::default(),
    );
    // The queues the pipeline gives the stage.
    let (chunk_tx, chunk_rx) = mpsc::channel::<Chunk>(cfg.batch_size * cfg.concurrency * 2);
    let (emb_tx, mut emb_rx) = mpsc::channel::<Vec<Embedded>>(cfg.concurrency * 2);
    let t = Instant::now();
    let feed = tokio::spawn(async move {
        for c in chunks {
            if chunk_tx.send(c).await.is_err() {
                break;
            }
        }
    });
    let stage = tokio::spawn(stage.run(chunk_rx, emb_tx));
    let mut n = 0;
    while let Some(rows) = emb_rx.recv().await {
        n += rows.len();
    }
    let secs = t.elapsed().as_secs_f64();
    feed.await.expect("feeder");
    stage.await.expect("stage");
    (n, secs)
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let n = if full {
        env_usize("BENCH_EMBED_CHUNKS", 100_000)
    } else {
        2_000
    };
    let latency = env_usize("BENCH_LATENCY_MS", 100);
    let capacity = env_usize("BENCH_CAPACITY", 16);
    let batch = env_usize("BENCH_BATCH", 64);
    let dim = env_usize("BENCH_DIM", 256);
    let ceiling = (capacity * batch) as f64 / (latency as f64 / 1000.0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "chunks: {n}, batch {batch}, latency {latency} ms, capacity {capacity} in flight, dim {dim}; ceiling {ceiling:.0} vectors/s"
    );
    println!();
    println!(
        "| capacity | --concurrency | sustained vectors/s | ratio | stage vectors/s | ratio | requests | 429s |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (name, conc) in [("known", capacity), ("unknown", capacity * 2)] {
        let server = Server::start(latency, capacity, dim);
        let (got, secs) = rt.block_on(run_stage(&server.url, chunks(n), dim, batch, conc));
        assert_eq!(got, n, "every chunk embedded");
        let (requests, rejected, busy) = server.stats();
        let sustained = got as f64 / busy;
        let stage = got as f64 / secs;
        println!(
            "| {name} | {conc} | {sustained:.0} | {:.2} | {stage:.0} | {:.2} | {requests} | {rejected} |",
            sustained / ceiling,
            stage / ceiling
        );
    }
}
