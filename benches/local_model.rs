//! The local provider's throughput: all-MiniLM-L6-v2 run in-process on
//! chunks of the size `--embed-provider local` makes by default. Needs
//! VECLOAD_TEST_MODEL_DIR (scripts/model.sh prints it); the ceiling to
//! compare with is sentence-transformers on the same machine (BENCHMARKS.md).
//!
//!   VECLOAD_TEST_MODEL_DIR=$(scripts/model.sh) cargo bench --bench local_model

use std::time::Instant;

use vecload::embed::local::LocalModel;

fn main() {
    let Ok(dir) = std::env::var("VECLOAD_TEST_MODEL_DIR") else {
        eprintln!("=== SKIPPED local_model benchmark: set VECLOAD_TEST_MODEL_DIR ===");
        return;
    };
    let quick = std::env::args().all(|a| a != "--bench");
    let model = match LocalModel::open(std::path::Path::new(&dir)) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("cannot load the model: {e:#}");
            std::process::exit(1);
        }
    };
    // ~170 o200k tokens (~208 model tokens), as the default chunking makes for this model.
    let sentence = "The loader walks the folder, cuts each document into chunks, \
                    sends them to the embedding model in batches and writes the vectors. ";
    let chunks: Vec<String> = (0..if quick { 8 } else { 256 })
        .map(|i| format!("Chunk {i}. {}", sentence.repeat(7)))
        .collect();
    let refs: Vec<&str> = chunks.iter().map(String::as_str).collect();
    let _ = model.embed(&refs[..4.min(refs.len())]);
    let started = Instant::now();
    for batch in refs.chunks(32) {
        if let Err(e) = model.embed(batch) {
            eprintln!("embedding failed: {e}");
            std::process::exit(1);
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "local model, one batch at a time: {} chunks in {secs:.2}s = {:.1} chunks/s",
        refs.len(),
        refs.len() as f64 / secs
    );
    // Two batches at once (`--concurrency 2`), through the provider as a
    // load runs it: on the model's own pool, awaited from tokio. One batch's
    // single-threaded steps (softmax, layer norm, GELU) overlap the other's
    // matrix products.
    let embedder = match vecload::embed::local::LocalEmbedder::new(model) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("cannot start the model's pool: {e:#}");
            std::process::exit(1);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start tokio: {e}");
            std::process::exit(1);
        }
    };
    let started = Instant::now();
    rt.block_on(async {
        use futures::StreamExt;
        use vecload::embed::Embedder;
        let mut done = futures::stream::iter(refs.chunks(32))
            .map(|batch| embedder.embed(batch))
            .buffer_unordered(2);
        while let Some(r) = done.next().await {
            if let Err(e) = r {
                eprintln!("embedding failed: {e}");
                std::process::exit(1);
            }
        }
    });
    let secs = started.elapsed().as_secs_f64();
    println!(
        "local provider (model pool), two batches at once: {} chunks in {secs:.2}s = {:.1} chunks/s",
        refs.len(),
        refs.len() as f64 / secs
    );
}
