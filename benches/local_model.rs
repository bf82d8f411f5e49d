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
    // Two batches at once (`--concurrency 2`): one batch's single-threaded
    // steps (softmax, layer norm, GELU) overlap the other's matrix products.
    let started = Instant::now();
    let batches: Vec<&[&str]> = refs.chunks(32).collect();
    std::thread::scope(|s| {
        for half in batches.chunks(batches.len().div_ceil(2)) {
            let model = &model;
            s.spawn(move || {
                for batch in half {
                    if let Err(e) = model.embed(batch) {
                        eprintln!("embedding failed: {e}");
                        std::process::exit(1);
                    }
                }
            });
        }
    });
    let secs = started.elapsed().as_secs_f64();
    println!(
        "local model, two batches at once: {} chunks in {secs:.2}s = {:.1} chunks/s",
        refs.len(),
        refs.len() as f64 / secs
    );
}
