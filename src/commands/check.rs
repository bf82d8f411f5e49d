//! `vecload check`: a store's health, against the documents when PATHs
//! are given, and `--repair`.

use std::process::ExitCode;

use super::{embed_and_target, env, refused};
use crate::cli::CheckArgs;
use crate::layout::Namespace;
use crate::run::check::CheckJob;
use crate::settings::bad;
use crate::{EXIT_INCOMPLETE, EXIT_OK};

pub fn check(runtime: &tokio::runtime::Runtime, mut args: CheckArgs, quiet: bool) -> ExitCode {
    if args.repair && args.load.paths.is_empty() && args.lightrag_dir.is_none() {
        return refused(bad(
            "--repair embeds what is missing from the documents: give them as PATHs \
             (as the load was given them), or the LightRAG workspace as --lightrag-dir",
        ));
    }
    if args.probe == Some(0) {
        return refused(bad("--probe N: N is at least 1"));
    }
    let tenant = args.load.tenant.trim().to_string();
    let endpoints = match embed_and_target(
        args.load.embed.clone(),
        &args.load.sink,
        Namespace::Chunks,
        &env,
    ) {
        Ok(e) => e,
        Err(e) => return refused(e),
    };
    let mut quality = match args.quality.settings() {
        Ok(q) => q,
        Err(e) => return refused(e),
    };
    if quality.min_hit_ratio.is_some() {
        return refused(bad(
            "--min-hit-ratio compares a new store with the one it replaces: give it to \
             reembed (check has one store)",
        ));
    }
    quality.embed = Some(endpoints.embed.clone());
    let lightrag = match &args.lightrag_dir {
        None => None,
        Some(dir) => match workspace(&args, dir) {
            Ok(w) => Some(w),
            Err(e) => return refused(e),
        },
    };
    // The documents, as a load with the store as the record would read
    // them: no state file, and --prune, so rows gone from them are found.
    let against = if args.load.paths.is_empty() {
        None
    } else {
        args.load.no_state = true;
        args.load.prune = true;
        match super::load::job(args.load) {
            Ok(j) => Some(j),
            Err(e) => return refused(e),
        }
    };
    let job = CheckJob {
        target: endpoints.target,
        embed: endpoints.embed,
        tenant,
        probe: args.probe,
        against,
        repair: args.repair,
        progress: crate::report::progress::resolve(crate::settings::ProgressMode::Log, quiet),
        lightrag,
        quality,
    };
    let report = match runtime.block_on(crate::run::check::check(job)) {
        Ok(r) => r,
        Err(e) => return refused(format!("could not check: {e:#}")),
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        print!("{}", report.human());
    }
    let repaired = report.repair.as_ref().is_some_and(|r| r.error.is_none());
    if report.healthy || repaired {
        ExitCode::from(EXIT_OK)
    } else {
        ExitCode::from(EXIT_INCOMPLETE)
    }
}

/// `--lightrag-dir`: the folder and the workspace's three vector stores.
fn workspace(
    args: &CheckArgs,
    dir: &std::path::Path,
) -> Result<crate::run::check::lightrag::Workspace, crate::settings::ConfigError> {
    use crate::run::check::lightrag::{CHUNKS_FILE, NAMESPACES};
    if args.load.sink.layout != crate::settings::LayoutName::Lightrag {
        return Err(bad(
            "--lightrag-dir compares LightRAG's stores: add --layout lightrag",
        ));
    }
    if !dir.join(CHUNKS_FILE).is_file() {
        return Err(bad(format!(
            "--lightrag-dir {}: no {CHUNKS_FILE} there (give the workspace's own folder)",
            dir.display()
        )));
    }
    let mut targets = Vec::new();
    for ns in NAMESPACES {
        targets.push(embed_and_target(args.load.embed.clone(), &args.load.sink, ns, &env)?.target);
    }
    let mut t = targets.into_iter();
    let mut next = || {
        t.next()
            .ok_or_else(|| bad("a LightRAG namespace without a target"))
    };
    Ok(crate::run::check::lightrag::Workspace {
        dir: dir.to_path_buf(),
        chunks: next()?,
        entities: next()?,
        relations: next()?,
    })
}
