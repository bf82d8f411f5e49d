//! The command layer: each command's flags become its checked settings
//! (every check that needs no file or server runs here, before anything is
//! read, sent or written), the run driver does the work, and the outcome is
//! printed and mapped to an exit code. Only this layer imports `cli`.

mod batches;
mod check;
mod copy;
mod extract;
mod load;
mod plan;
mod reembed;
mod report_to;
mod search;

use std::process::ExitCode;
use std::sync::Arc;

use crate::cli::{Cli, Command};
use crate::embed::settings::{EmbedFlags, EmbedSettings};
use crate::layout::Namespace;
use crate::settings::ConfigError;
use crate::store::{StoreFlags, Target, TargetSpec};
use crate::{EXIT_CONFIG, EXIT_INCOMPLETE};

pub fn run(cli: Cli) -> ExitCode {
    crate::run::supervise::set_drain_timeout(std::time::Duration::from_secs(cli.drain_timeout));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vecload: error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_INCOMPLETE);
        }
    };
    match cli.command {
        Command::Load(args) => load::load(&runtime, args, cli.quiet),
        Command::Plan(args) => plan::plan(&runtime, args, cli.quiet),
        Command::Batches(args) => batches::batches(&runtime, args),
        Command::Search(args) => search::search(&runtime, args),
        Command::Check(args) => check::check(&runtime, args, cli.quiet),
        Command::Reembed(args) => reembed::reembed(&runtime, args, cli.quiet),
        Command::Copy(args) => copy::copy(&runtime, args, cli.quiet),
        Command::Extract(args) => extract::extract(args),
    }
}

/// The process environment, for the variables clap does not map
/// one-to-one (LightRAG's second names for a setting).
fn env(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

/// A setting that cannot work: said, and nothing was done.
fn refused(e: impl std::fmt::Display) -> ExitCode {
    crate::report::output::error(e);
    ExitCode::from(EXIT_CONFIG)
}

/// What a command that embeds talks to: the endpoint and the store.
struct Endpoints {
    embed: EmbedSettings,
    target: Arc<dyn Target>,
    /// The model's window, when the provider knows it.
    model_window: Option<usize>,
}

/// The embedding settings and the target, checked in that order: the
/// vector length first (the store's limits depend on it), then the store,
/// then the rest of the endpoint's settings. Also the model's window, when
/// the provider knows it.
fn embed_and_target(
    embed: EmbedFlags,
    store: &StoreFlags,
    namespace: Namespace,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Endpoints, ConfigError> {
    let shape = embed.shape()?;
    let layout = store.layout(namespace)?;
    // LightRAG names its tables and collections after the model.
    let suffix = crate::layout::suffix(embed.embed_model.as_deref().unwrap_or(""), shape.dim);
    let target = store.target(&TargetSpec {
        dim: shape.dim,
        layout,
        lightrag_suffix: suffix.as_deref(),
        env,
    })?;
    let settings = embed.settings(shape, env)?;
    Ok(Endpoints {
        embed: settings,
        target,
        model_window: shape.window,
    })
}
