//! `vecload load PATH...`: the load's flags become a `LoadJob`, checked
//! before any file is read or request sent.

use std::process::ExitCode;

use super::{embed_and_target, env, refused, report_to};
use crate::cli::LoadArgs;
use crate::layout::Namespace;
use crate::report::DeadChunk;
use crate::report::output::{self, ReportTo};
use crate::run::load::LoadJob;
use crate::settings::{ConfigError, bad};
use crate::source::s3::S3Root;
use crate::state;
use crate::{EXIT_INCOMPLETE, EXIT_INTERRUPTED, EXIT_OK};

/// The report's path relative to the source root it lies under, if any.
fn report_inside_source(
    to: &ReportTo,
    paths: &[std::path::PathBuf],
    roots: &[S3Root],
) -> Option<String> {
    match to {
        ReportTo::S3 { bucket, key } => roots
            .iter()
            .filter(|r| &r.bucket == bucket)
            .find_map(|r| key.strip_prefix(r.prefix.as_str()).map(str::to_string)),
        ReportTo::File(file) => {
            let name = file.file_name()?;
            let parent = match file.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.canonicalize().ok()?,
                _ => std::env::current_dir().ok()?,
            };
            let file = parent.join(name);
            paths.iter().find_map(|p| {
                let root = p.canonicalize().ok()?;
                let rel = file.strip_prefix(&root).ok()?;
                Some(rel.to_string_lossy().replace('\\', "/"))
            })
        }
        ReportTo::Stdout => None,
    }
}

/// The load `args` describe. Shared with `plan`, so a plan's counts are
/// the load's.
pub fn job(args: LoadArgs) -> Result<LoadJob, ConfigError> {
    let tenant = args.tenant.trim().to_string();
    if tenant.is_empty() {
        return Err(bad("--tenant (TENANT_ID) is empty"));
    }
    if args.paths.is_empty() {
        return Err(bad(
            "give the documents: at least one PATH (a folder, a file or s3://BUCKET/PREFIX)",
        ));
    }
    let mut paths = Vec::new();
    let mut s3_roots = Vec::new();
    for p in &args.paths {
        match S3Root::parse(&p.to_string_lossy()) {
            Some(root) => s3_roots.push(root?),
            None if std::fs::symlink_metadata(p).is_err() => {
                return Err(bad(format!("PATH {} does not exist", p.display())));
            }
            None => paths.push(p.clone()),
        }
    }
    let super::Endpoints {
        mut embed,
        target,
        model_window,
    } = embed_and_target(args.embed, &args.sink, Namespace::Chunks, &env)?;
    let lightrag = target.layout().is_lightrag();
    let (shard, step) = sharding(&args.shard)?;
    if let Some(s) = shard {
        embed.rpm = s.share(embed.rpm);
        embed.tpm = s.share(embed.tpm);
        if args.prune && lightrag {
            return Err(bad(
                "--prune in a sharded run needs vecload's layout: LightRAG's rows carry no shard \
                 bucket, so a worker cannot tell its rows from another's; prune with an unsharded run",
            ));
        }
    }
    if args.prune && step.is_some() {
        return Err(bad(
            "--prune belongs to the workers (--shard I/N): each prunes its own shard; \
             --step prepare|finish only touches the target",
        ));
    }
    let chunk = args.chunk.settings(model_window, lightrag)?;
    if embed.max_request_tokens < chunk.tokens {
        return Err(bad(format!(
            "--max-request-tokens {} is below --chunk-tokens {}: no chunk would fit in a request",
            embed.max_request_tokens, chunk.tokens
        )));
    }
    if let Some(tpm) = embed.tpm
        && (tpm as usize) < chunk.tokens
    {
        return Err(bad(format!(
            "--tpm {tpm} is below --chunk-tokens {}: a single chunk would exceed a minute's allowance",
            chunk.tokens
        )));
    }
    let only_files = match &args.retry_failed {
        None => None,
        Some(path) => Some(read_dead_letters(path, &tenant)?),
    };
    let mut source = args.source.settings(lightrag, only_files)?;
    let report = args.report.as_deref().map(ReportTo::parse).transpose()?;
    if let Some(rel) = report
        .as_ref()
        .and_then(|to| report_inside_source(to, &paths, &s3_roots))
    {
        // This run's own report is not one of the documents of the next.
        source.exclude.push(globset::escape(&rel));
    }
    let mut state_s3 = None;
    let state = if args.no_state {
        None
    } else {
        match args.state {
            // Kept in S3 between runs (an ephemeral task), used from a
            // local copy of this process's own while it runs.
            Some(s) if s.to_string_lossy().starts_with("s3://") => {
                let url = s.to_string_lossy().to_string();
                match ReportTo::parse(&url) {
                    Ok(ReportTo::S3 { bucket, key }) => state_s3 = Some((bucket, key)),
                    _ => {
                        return Err(bad(format!(
                            "--state {url}: name the object, s3://BUCKET/KEY (e.g. s3://b/vecload/acme.redb)"
                        )));
                    }
                }
                let tag = &crate::records::content_hash(&url)[..12];
                Some(
                    std::env::temp_dir()
                        .join(format!("vecload-state-{tag}-{}.redb", std::process::id())),
                )
            }
            Some(s) => Some(s),
            // Beside the documents when they are on disk; for S3, in the
            // user's state folder, named after the bucket too.
            None if paths.is_empty() => Some(state::file::default_remote_path(
                &s3_roots.iter().map(|r| r.url()).collect::<Vec<_>>(),
                target.as_ref(),
                &embed.recipe(),
                embed.dim,
                &env,
            )?),
            None => Some(state::file::default_path(
                &paths,
                target.as_ref(),
                &embed.recipe(),
                embed.dim,
            )),
        }
    };
    let batch = args.batch.settings(&embed)?;
    if batch.is_some() && state.is_none() {
        return Err(bad(
            "--batch-api needs a state file to remember its batches across a kill: drop --no-state",
        ));
    }
    if batch.is_some() && step.is_some() {
        return Err(bad(
            "--batch-api belongs to the workers (or an unsharded load): --step prepare|finish embeds nothing",
        ));
    }
    Ok(LoadJob {
        batch,
        paths,
        s3_roots,
        tenant,
        report,
        progress: args.progress,
        dead_letter: args
            .dead_letter
            .or_else(|| state.as_ref().map(|p| p.with_extension("failed.jsonl"))),
        state,
        state_s3,
        state_every: std::time::Duration::from_secs(args.state_every.max(1)),
        prune: args.prune,
        source,
        chunk,
        embed,
        target,
        shard,
        step,
        step_shards: step.and(args.shard.shards),
        space_policy: crate::run::space::Policy::of(&args.sink),
        quality: crate::run::quality::QualitySettings::off(),
    })
}

/// `--quality` and the like for a load: measured at its end (a sharded
/// run's finish step, or an unsharded run).
fn quality(
    flags: &crate::run::quality::QualityFlags,
    cfg: &LoadJob,
) -> Result<crate::run::quality::QualitySettings, ConfigError> {
    let mut q = flags.settings()?;
    if q.min_hit_ratio.is_some() {
        return Err(bad(
            "--min-hit-ratio compares a new store with the one it replaces: that is \
             reembed's (a load has no old store)",
        ));
    }
    if cfg.shard.is_some() && (q.always || q.min_recall.is_some() || q.questions.is_some()) {
        return Err(bad(
            "--quality measures the whole target: give it to the finish step (--step finish)",
        ));
    }
    q.embed = Some(cfg.embed.clone());
    Ok(q)
}

/// Which shard this is (`--shard`, or the engine's index with `--shards`),
/// or which whole-target step.
pub(super) fn sharding(
    f: &crate::shard::Flags,
) -> Result<(Option<crate::shard::Shard>, Option<crate::shard::Step>), ConfigError> {
    if let Some(step) = f.step {
        if let Some(s) = &f.shard {
            return Err(bad(format!(
                "--step {} runs once for the whole target, not in shard {s}: drop --shard \
                 (VECLOAD_SHARD) from it",
                step.name()
            )));
        }
        return Ok((None, Some(step)));
    }
    let shard = crate::shard::detect(f.shard.as_deref(), f.shards, &env).map_err(bad)?;
    Ok((shard, None))
}

fn read_dead_letters(
    path: &std::path::Path,
    tenant: &str,
) -> Result<std::collections::HashSet<String>, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| bad(format!("--retry-failed {}: {e}", path.display())))?;
    let mut files = std::collections::HashSet::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let d: DeadChunk = serde_json::from_str(line).map_err(|e| {
            bad(format!(
                "--retry-failed {} line {}: {e}",
                path.display(),
                i + 1
            ))
        })?;
        if d.tenant == tenant {
            files.insert(d.file);
        }
    }
    if files.is_empty() {
        return Err(bad(format!(
            "--retry-failed {} lists no chunk of tenant {tenant:?}",
            path.display()
        )));
    }
    Ok(files)
}

pub fn load(
    runtime: &tokio::runtime::Runtime,
    args: crate::cli::LoadCommand,
    quiet: bool,
) -> ExitCode {
    let cfg = match job(args.load).and_then(|mut cfg| {
        cfg.quality = quality(&args.quality, &cfg)?;
        Ok(cfg)
    }) {
        Ok(c) => c,
        Err(e) => return refused(e),
    };
    let mode = crate::report::progress::resolve(cfg.progress, quiet);
    let report_to = cfg.report.clone();
    let s3 = (!cfg.s3_roots.is_empty()).then(|| cfg.source.s3.clone());
    if let Some(to) = &report_to
        && let Err(e) = report_to::check(runtime, to, s3.as_ref())
    {
        return refused(e);
    }
    let report = match runtime.block_on(crate::run::load::load(cfg, mode)) {
        Ok(r) => r,
        Err(e) => return refused(e),
    };
    report_to::summary(&report.summary(), &report, report_to.as_ref(), quiet);
    if let Some(to) = &report_to
        && !report_to::write(runtime, to, s3.as_ref(), &report)
    {
        return ExitCode::from(EXIT_INCOMPLETE);
    }
    let code = if report.interrupted {
        EXIT_INTERRUPTED
    } else if report.error.is_some() || report.failed_chunks > 0 {
        if let Some(e) = &report.error {
            output::error(e);
        }
        if report.failed_chunks > 0 {
            output::error(format!(
                "{} chunks were not written (listed above{})",
                report.failed_chunks,
                if report.failed_chunks > 20 {
                    " and in --report"
                } else {
                    ""
                }
            ));
        }
        EXIT_INCOMPLETE
    } else {
        EXIT_OK
    };
    ExitCode::from(code)
}
