//! What the sink benchmarks share: the rows both sides write, vecload's
//! side (its real sink stage fed as the embed stage feeds it), and the
//! plain binary COPY the pgvector ceilings write with.

use std::sync::Arc;
use std::time::Instant;

use bytes::{BufMut, BytesMut};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use vecload::records::{Chunk, DocMeta, Embedded};
use vecload::report::{Fatal, Stats};
use vecload::state::{Ledger, State};
use vecload::store::Sink;
use vecload::store::stage::SinkStage;

/// `n` rows of ~60 words (8 chunks a document) with the test server's
/// vectors of `dim`.
pub fn make_rows(n: usize, dim: usize) -> Vec<Embedded> {
    let words = "vector index tenant chunk embedding model query latency shard replica batch \
                 token cosine table collection payload filter"
        .split(' ')
        .collect::<Vec<_>>();
    let per_doc = 8;
    let mut rows = Vec::with_capacity(n);
    let tenant: Arc<str> = Arc::from("bench");
    for d in 0..n.div_ceil(per_doc) {
        let key = format!("docs/file-{d}.md");
        let count = per_doc.min(n - d * per_doc) as u32;
        let doc = Arc::new(DocMeta {
            page: None,
            tenant: tenant.clone(),
            doc_id: vecload::chunk::id::doc_id(&key),
            source: key.clone(),
            file: Arc::from(key.as_str()),
            key: key.clone(),
            hash: format!("h{d}"),
            chunk_count: count,
            pending: count.into(),
        });
        for i in 0..count {
            let text: String = (0..60)
                .map(|w| words[(d * 7 + i as usize * 3 + w) % words.len()])
                .collect::<Vec<_>>()
                .join(" ");
            rows.push(Embedded {
                vector: embedding_test_server::vector_for(&text, dim),
                chunk: Chunk {
                    id: vecload::chunk::id::chunk_id(&tenant, &key, i),
                    doc: doc.clone(),
                    index: i,
                    content_hash: vecload::records::content_hash(&text),
                    text,
                    tokens: 60,
                    extra: None,
                },
            });
        }
    }
    rows
}

/// Runs vecload's sink stage over `rows`, handed over 64 at a time as the
/// embed stage hands them, with a state file unless BENCH_NO_STATE=1.
/// Returns the seconds until every row was acknowledged and recorded.
// The copy benchmark runs the binary instead.
#[allow(dead_code)]
pub async fn sink_stage(sink: Arc<dyn Sink>, rows: Vec<Embedded>) -> f64 {
    let n = rows.len();
    let stats = Arc::new(Stats::default());
    let dir = tempfile::tempdir().expect("temp dir");
    let state = match std::env::var("BENCH_NO_STATE").is_ok_and(|v| v == "1") {
        true => None,
        false => Some(State::open(&dir.path().join("state.redb")).expect("state")),
    };
    let ledger = Arc::new(Ledger::new(state, sink.clone(), stats.clone()));
    let (tx, rx) = mpsc::channel::<Vec<Embedded>>(16);
    let stage = SinkStage::new(
        sink,
        ledger.clone(),
        stats.clone(),
        CancellationToken::new(),
        Fatal::default(),
    );
    let t = Instant::now();
    let run = tokio::spawn(stage.run(rx));
    // Handed over from the front without moving the rest: a `split_off`
    // of the tail per part copied the whole remainder each time (quadratic,
    // gigabytes of memmove on the cores the store needs).
    let mut rows = rows.into_iter();
    loop {
        let part: Vec<Embedded> = rows.by_ref().take(64).collect();
        if part.is_empty() {
            break;
        }
        tx.send(part).await.expect("sink stage alive");
    }
    drop(tx);
    run.await.expect("sink stage");
    // As a load ends: everything recorded, and synced to disk.
    ledger.settle().await.expect("state recorded");
    ledger.sync().expect("state synced");
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(
        Stats::get(&stats.vectors_written) as usize,
        n,
        "every row written"
    );
    secs
}

/// The table vecload makes, so both sides write the same bytes.
// Not every benchmark writes to PostgreSQL.
#[allow(dead_code)]
pub fn ddl(table: &str, dim: usize) -> String {
    format!(
        "CREATE EXTENSION IF NOT EXISTS vector; DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (
            tenant_id text NOT NULL, id text NOT NULL, doc_id text NOT NULL,
            source text NOT NULL, chunk_index integer NOT NULL, content text NOT NULL,
            content_hash text NOT NULL, embedding vector({dim}) NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now(), page integer, shard_bucket integer,
            PRIMARY KEY (tenant_id, id));
         CREATE INDEX ON {table} (tenant_id, shard_bucket)"
    )
}

fn put_text(buf: &mut BytesMut, s: &str) {
    buf.put_i32(s.len() as i32);
    buf.put_slice(s.as_bytes());
}

/// Binary COPY rows for (tenant_id, id, doc_id, source, chunk_index,
/// content, content_hash, embedding, shard_bucket): the bucket computed per
/// row as vecload's writer does.
#[allow(dead_code)]
pub fn encode(rows: &[Embedded]) -> bytes::Bytes {
    let mut buf = BytesMut::new();
    buf.put_slice(b"PGCOPY\n\xff\r\n\0");
    buf.put_i32(0);
    buf.put_i32(0);
    for r in rows {
        let c = &r.chunk;
        buf.put_i16(9);
        put_text(&mut buf, &c.doc.tenant);
        put_text(&mut buf, &c.id);
        put_text(&mut buf, &c.doc.doc_id);
        put_text(&mut buf, &c.doc.source);
        buf.put_i32(4);
        buf.put_i32(c.index as i32);
        put_text(&mut buf, &c.text);
        put_text(&mut buf, &c.content_hash);
        buf.put_i32((4 + 4 * r.vector.len()) as i32);
        buf.put_i16(r.vector.len() as i16);
        buf.put_i16(0);
        for v in &r.vector {
            buf.put_f32(*v);
        }
        buf.put_i32(4);
        buf.put_i32(vecload::shard::bucket(&c.doc.tenant, &c.doc.file) as i32);
    }
    buf.put_i16(-1);
    buf.freeze()
}

/// The plain binary COPY loop of the pgvector ceilings: `rows` into `table`
/// over `clients` (one stream each), `per_copy` rows a transaction, encoded
/// inside the timed loop. Returns the seconds it took.
#[allow(dead_code)]
pub async fn copy_rows(
    clients: &mut [tokio_postgres::Client],
    table: &str,
    rows: &[Embedded],
    per_copy: usize,
) -> f64 {
    use futures::{SinkExt, StreamExt};
    let copy = format!(
        "COPY {table} (tenant_id, id, doc_id, source, chunk_index, content, content_hash, embedding, \
         shard_bucket) FROM STDIN (FORMAT binary)"
    );
    let t = Instant::now();
    let parts: Vec<&[Embedded]> = rows.chunks(per_copy).collect();
    let per_writer = parts.len().div_ceil(clients.len().max(1));
    let n = clients.len();
    let writers = clients
        .iter_mut()
        .zip(parts.chunks(per_writer.max(1)))
        .map(|(client, mine)| {
            let copy = copy.clone();
            async move {
                for part in mine {
                    let tx = client.transaction().await.expect("begin");
                    let sink = tx.copy_in::<_, bytes::Bytes>(&copy).await.expect("copy in");
                    futures::pin_mut!(sink);
                    sink.send(encode(part)).await.expect("send");
                    sink.as_mut().finish().await.expect("finish copy");
                    tx.commit().await.expect("commit");
                }
            }
        });
    futures::stream::iter(writers)
        .buffer_unordered(n.max(1))
        .collect::<Vec<()>>()
        .await;
    t.elapsed().as_secs_f64()
}

/// An HNSW-off collection of `dim`-d cosine vectors, on disk, as the plain
/// Qdrant loops write into.
#[allow(dead_code)]
pub async fn plain_collection(client: &qdrant_client::Qdrant, name: &str, dim: usize) {
    use qdrant_client::qdrant::{
        CreateCollectionBuilder, Distance, HnswConfigDiffBuilder, VectorParamsBuilder,
    };
    client
        .create_collection(
            CreateCollectionBuilder::new(name)
                .vectors_config(
                    VectorParamsBuilder::new(dim as u64, Distance::Cosine).on_disk(true),
                )
                .on_disk_payload(true)
                .hnsw_config(HnswConfigDiffBuilder::default().m(0)),
        )
        .await
        .expect("create collection");
}

/// The plain Qdrant loop: upserts of `batch` points, `parallel` in flight,
/// points (vecload's payload fields) built inside the timed loop, as bfb
/// generates its own. Returns the seconds it took.
#[allow(dead_code)]
pub async fn upsert_points(
    client: &qdrant_client::Qdrant,
    name: &str,
    rows: &[Embedded],
    (batch, parallel, wait): (usize, usize, bool),
) -> f64 {
    use futures::StreamExt;
    use qdrant_client::qdrant::{PointStruct, UpsertPointsBuilder};
    let to_point = |r: &Embedded| {
        let c = &r.chunk;
        PointStruct::new(
            c.id.clone(),
            r.vector.clone(),
            [
                ("tenant_id", c.doc.tenant.to_string().into()),
                ("doc_id", c.doc.doc_id.clone().into()),
                ("source", c.doc.source.clone().into()),
                ("chunk_index", i64::from(c.index).into()),
                ("content", c.text.clone().into()),
                ("content_hash", c.content_hash.clone().into()),
                ("shard_bucket", i64::from(c.index % 1024).into()),
            ],
        )
    };
    let t = Instant::now();
    let results: Vec<_> = futures::stream::iter(rows.chunks(batch))
        .map(|part| {
            let points: Vec<PointStruct> = part.iter().map(to_point).collect();
            client.upsert_points(UpsertPointsBuilder::new(name, points).wait(wait))
        })
        .buffer_unordered(parallel)
        .collect()
        .await;
    let secs = t.elapsed().as_secs_f64();
    for r in results {
        r.expect("upsert");
    }
    secs
}
