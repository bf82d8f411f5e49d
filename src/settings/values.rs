//! The values settings are made of, as flags spell them (each keeps its
//! clap derive, so a flag parses straight into it). Runtime code uses these
//! types; it never sees the flag structs.

use clap::ValueEnum;

/// How progress is shown: bars on a terminal, log lines otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressMode {
    Auto,
    Bar,
    Log,
    None,
}

/// The tokenizer chunks and token budgets are counted with. The variant
/// names feed documents' hashes in the state file: renaming one would make
/// every document look changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TokenizerName {
    #[value(name = "o200k_base")]
    O200kBase,
    #[value(name = "cl100k_base")]
    Cl100kBase,
}

/// `--layout`: vecload's own rows, or exactly what LightRAG reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LayoutName {
    Vecload,
    Lightrag,
}

/// pgvector's column type: float32 `vector` or float16 `halfvec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PgType {
    Vector,
    Halfvec,
}

/// The vector index built after a load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IndexKind {
    Hnsw,
    Ivfflat,
    None,
}

/// What nearness means, for the index and the collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Distance {
    Cosine,
    Dot,
    Euclid,
}

impl Distance {
    /// As `--distance` spells it (and an embedding-space record keeps it).
    pub fn name(self) -> &'static str {
        match self {
            Distance::Cosine => "cosine",
            Distance::Dot => "dot",
            Distance::Euclid => "euclid",
        }
    }
}
