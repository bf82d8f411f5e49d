//! The embedding test server as a process: see the library for what it
//! speaks and how its vectors are made.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    embedding_test_server::serve(embedding_test_server::Opts::parse()).await
}
