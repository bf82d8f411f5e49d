//! Chunking throughput against its ceiling, a single tokenizer pass over the
//! same text, on the same machine in the same run.
//!
//!   cargo bench --bench chunking [-- CORPUS_DIR]
//!
//! Default corpus: the Rust toolchain's HTML docs (book, reference, rust by
//! example, nomicon, cargo), text extracted once up front so only chunking is
//! timed. Prints MB/s per core, the ratio to a plain tokenizer pass, and the
//! speed-up on all cores. Without `--bench` (as `cargo test` runs it) it does
//! one quick pass over fixtures/ and checks nothing but that it runs.

use std::path::PathBuf;
use std::time::Instant;

use rayon::prelude::*;
use vecload::chunk::settings::ChunkSettings;
use vecload::chunk::{Chunker, Tokenizer};
use vecload::settings::TokenizerName;
use vecload::source::settings::SourceSettings;
use vecload::source::{Filter, read_file, walk};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let full = args.iter().any(|a| a == "--bench");
    let corpus: Vec<PathBuf> = match args.iter().find(|a| !a.starts_with("--")) {
        Some(dir) => vec![PathBuf::from(dir)],
        None if full => rust_docs(),
        None => vec![PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/docs")],
    };
    let src = SourceSettings {
        include: vec![],
        exclude: vec![],
        default_excludes: true,
        json_text_field: "content".into(),
        max_file_bytes: 64 << 20,
        source_prefix: None,
        only_files: None,
        unique_file_names: false,
        whole_files: false,
        extract_timeout: std::time::Duration::from_secs(60),
        encoding: None,
        s3: Default::default(),
    };
    let filter = Filter::new(&src).expect("filter");
    let files = walk(&corpus, &filter).files;
    let t = Instant::now();
    let texts: Vec<String> = files
        .par_iter()
        .filter_map(|f| read_file(f, &src).ok())
        .flat_map(|f| f.docs)
        .map(|d| d.text)
        .collect();
    let extract_s = t.elapsed().as_secs_f64();
    let bytes: usize = texts.iter().map(String::len).sum();
    let mb = bytes as f64 / 1e6;
    println!(
        "corpus: {} files -> {} documents, {mb:.1} MB of text (extracted in {extract_s:.2}s on all cores)",
        files.len(),
        texts.len()
    );

    let cfg = ChunkSettings {
        tokens: 1200,
        overlap: 100,
        tokenizer: TokenizerName::O200kBase,
        lightrag: false,
    };
    let tok = Tokenizer::get(cfg.tokenizer);
    let chunker = Chunker::new(&cfg);
    tok.count("warm up the tokenizer tables");

    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");
    let ceiling = one.install(|| time(|| texts.iter().map(|t| tok.count(t)).sum::<usize>()));
    let chunk1 = one.install(|| {
        time(|| {
            texts
                .iter()
                .map(|t| chunker.windows(t).len())
                .sum::<usize>()
        })
    });
    let cores = rayon::current_num_threads();
    let chunk_n = time(|| {
        texts
            .par_iter()
            .map(|t| chunker.windows(t).len())
            .sum::<usize>()
    });

    let rate = |s: f64| mb / s;
    println!("| measure | MB/s | ratio |");
    println!("|---|---|---|");
    println!(
        "| tokenizer pass, 1 core (ceiling) | {:.2} | 1.00 |",
        rate(ceiling.0)
    );
    println!(
        "| vecload chunker, 1 core | {:.2} | {:.2} of ceiling |",
        rate(chunk1.0),
        ceiling.0 / chunk1.0
    );
    println!(
        "| vecload chunker, {cores} cores | {:.2} | {:.2}x one core |",
        rate(chunk_n.0),
        chunk1.0 / chunk_n.0
    );
    println!("tokens: {}, chunks: {}", ceiling.1, chunk1.1);
    assert_eq!(
        chunk1.1, chunk_n.1,
        "parallel chunking gives the same chunks"
    );
}

fn time<T>(f: impl FnOnce() -> T) -> (f64, T) {
    let t = Instant::now();
    let out = f();
    (t.elapsed().as_secs_f64(), out)
}

fn rust_docs() -> Vec<PathBuf> {
    let home = std::env::var("HOME").unwrap_or_default();
    let toolchains = PathBuf::from(home).join(".rustup/toolchains");
    let Some(tc) = std::fs::read_dir(&toolchains).ok().and_then(|mut d| {
        d.find_map(|e| {
            e.ok()
                .map(|e| e.path())
                .filter(|p| p.join("share/doc/rust/html/book").is_dir())
        })
    }) else {
        eprintln!(
            "no Rust HTML docs under {}; pass a corpus directory",
            toolchains.display()
        );
        std::process::exit(2);
    };
    ["book", "reference", "rust-by-example", "nomicon", "cargo"]
        .iter()
        .map(|d| tc.join("share/doc/rust/html").join(d))
        .collect()
}
