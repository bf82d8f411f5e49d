//! See `vecload::test_server`: deterministic OpenAI-compatible embeddings for tests and the demo.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    vecload::test_server::serve(vecload::test_server::Opts::parse()).await
}
