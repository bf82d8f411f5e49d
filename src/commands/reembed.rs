//! `vecload reembed --from SOURCE`: the flags become a `ReembedJob`: the
//! source's kind, name and connection, the target (exactly as for `load`,
//! so pgvector's dimension rules are checked before anything is read), and
//! the switch.

use std::process::ExitCode;

use super::{embed_and_target, env, refused, report_to};
use crate::cli::ReembedArgs;
use crate::layout::Namespace;
use crate::report::output::{self, ReportTo};
use crate::run::reembed::ReembedJob;
use crate::settings::{ConfigError, bad};
use crate::source::from::{Elsewhere, FromSpec};
use crate::{EXIT_INCOMPLETE, EXIT_INTERRUPTED, EXIT_OK};

fn job(args: ReembedArgs) -> Result<ReembedJob, ConfigError> {
    let tenant = match args.tenant.as_deref().map(str::trim) {
        Some("") => return Err(bad("--tenant is empty")),
        t => t.map(str::to_string),
    };
    if args.page_size == 0 || args.page_size > 10_000 {
        return Err(bad("--page-size must be from 1 to 10000"));
    }
    // A JSON or Redis chunk store holds one workspace: --tenant names it.
    let one_workspace =
        args.from.starts_with("lightrag:") || args.from.starts_with("lightrag-redis:");
    if let (Some(_), Some(t)) = (&args.switch, &tenant)
        && !one_workspace
    {
        return Err(bad(format!(
            "--switch moves every tenant at once, but --tenant {t:?} re-embeds only one. \
             Backfill tenants one at a time without --switch, then run once more without \
             --tenant and with --switch: what is already in the target is not embedded again"
        )));
    }
    // Entity and relationship stores of LightRAG stay what they are.
    let namespace = args
        .from
        .split_once(':')
        .and_then(|(_, name)| Namespace::from_store_name(name))
        .unwrap_or(Namespace::Chunks);
    let super::Endpoints { embed, target, .. } =
        embed_and_target(args.embed, &args.sink, namespace, &env)?;
    let elsewhere = Elsewhere {
        stores: args.from_at,
        redis_url: args.from_redis_url,
    };
    let source = FromSpec::parse(&args.from, &tenant, &args.sink, elsewhere, &env)?;
    if source.is(target.as_ref()) {
        return Err(bad(format!(
            "the target is the source ({}): re-embedding writes a new table or collection \
             and never modifies the source; set --table or --collection to a new name",
            source.describe()
        )));
    }
    if let Some(name) = &args.switch {
        target.check_switch_name(name)?;
    }
    let (shard, step) = super::load::sharding(&args.shard)?;
    let mut embed = embed;
    if let Some(s) = shard {
        embed.rpm = s.share(embed.rpm);
        embed.tpm = s.share(embed.tpm);
    }
    if (shard.is_some() || step.is_some()) && (args.switch.is_some() || args.prune) {
        return Err(bad(
            "--switch and --prune act on the whole target: give them to the finish step, which \
             is the same command without --shard (it embeds nothing the workers wrote, then \
             verifies, prunes and switches)",
        ));
    }
    if step == Some(crate::shard::Step::Finish) {
        return Err(bad(
            "reembed's finish step is the same command without --shard and --step: it finds \
             what the workers wrote, embeds nothing of it, then verifies, prunes and switches",
        ));
    }
    let batch = args.batch.settings(&embed)?;
    if batch.is_some() && step.is_some() {
        return Err(bad(
            "--batch-api belongs to the workers (or an unsharded re-embedding): --step prepare embeds nothing",
        ));
    }
    let batch_state = match (&batch, args.state) {
        (None, _) => None,
        (Some(_), Some(path)) => Some(path),
        (Some(_), None) => Some(crate::state::file::default_remote_path(
            &[format!("reembed:{}", source.describe())],
            target.as_ref(),
            &embed.recipe(),
            embed.dim,
            &env,
        )?),
    };
    let mut quality = args.quality.settings()?;
    if quality.questions.is_some() && (shard.is_some() || step.is_some()) {
        return Err(bad(
            "--questions belong to the finish step (the same command without --shard), \
             which measures once everything is written",
        ));
    }
    quality.embed = Some(embed.clone());
    Ok(ReembedJob {
        batch,
        batch_state,
        shard,
        prepare_only: step == Some(crate::shard::Step::Prepare),
        step_shards: step.and(args.shard.shards),
        source,
        tenant,
        switch: args.switch,
        prune: args.prune,
        page_size: args.page_size,
        report: args.report.as_deref().map(ReportTo::parse).transpose()?,
        progress: args.progress,
        space_policy: crate::run::space::Policy::of(&args.sink),
        quality,
        embed,
        target,
    })
}

/// With --questions: the source store and the model that made its vectors
/// (the `--from-embed-*` flags, then the source's record, then the run's
/// own embedding flags), to ask it the same questions. None where the
/// source holds no vectors (a chunk store) or the model is unknown (said,
/// and --min-hit-ratio refused).
async fn old_side(
    cfg: &ReembedJob,
    run: crate::embed::settings::EmbedFlags,
    given: crate::run::quality::OldModelFlags,
) -> Result<Option<crate::run::quality::OldSide>, ConfigError> {
    let FromSpec::Store(source) = &cfg.source else {
        if cfg.quality.min_hit_ratio.is_some() {
            return Err(bad(
                "--min-hit-ratio compares with the old store's answers, but the source is a \
                 chunk store without vectors",
            ));
        }
        return Ok(None);
    };
    let record = match source.space().await {
        Ok(crate::space::Recorded::Space(r)) => Some(r),
        _ => None,
    };
    let model = given
        .from_embed_model
        .or_else(|| record.as_ref().map(|r| r.model.clone()));
    let dim = given
        .from_embed_dim
        .or_else(|| record.as_ref().map(|r| r.dim));
    let (Some(model), Some(dim)) = (model, dim) else {
        let msg = format!(
            "{} records no embedding space: give --from-embed-model and --from-embed-dim \
             to ask it the questions with the old model",
            source.describe()
        );
        if cfg.quality.min_hit_ratio.is_some() {
            return Err(bad(format!("--min-hit-ratio: {msg}")));
        }
        tracing::warn!("{msg}");
        return Ok(None);
    };
    let mut flags = run;
    let provider = given
        .from_embed_provider
        .or_else(|| record.as_ref().map(|r| r.binding.clone()))
        .unwrap_or_else(|| flags.embed_provider.clone());
    if provider != flags.embed_provider && given.from_embed_url.is_empty() {
        // Another provider's server is not this run's.
        flags.embed_url.clear();
    }
    flags.embed_provider = provider;
    if !given.from_embed_url.is_empty() {
        flags.embed_url = given.from_embed_url;
    }
    if given.from_embed_model_dir.is_some() {
        flags.embed_model_dir = given.from_embed_model_dir;
    }
    flags.embed_model = Some(model);
    flags.embed_dim = Some(dim);
    let embed = flags
        .shape()
        .and_then(|shape| flags.clone().settings(shape, &env))
        .map_err(|e| {
            bad(format!(
                "the old model (asked the --questions of {}): {e}; give its settings as \
                 --from-embed-provider, --from-embed-url, --from-embed-model-dir",
                source.describe()
            ))
        })?;
    Ok(Some(crate::run::quality::OldSide {
        target: source.clone(),
        embed,
    }))
}

pub fn reembed(runtime: &tokio::runtime::Runtime, args: ReembedArgs, quiet: bool) -> ExitCode {
    let (run_flags, given) = (args.embed.clone(), args.old.clone());
    let mut cfg = match job(args) {
        Ok(c) => c,
        Err(e) => return refused(e),
    };
    if cfg.quality.questions.is_some() {
        match runtime.block_on(old_side(&cfg, run_flags, given)) {
            Ok(old) => cfg.quality.old = old.map(std::sync::Arc::new),
            Err(e) => return refused(e),
        }
    }
    let switching = cfg.switch.is_some();
    let mode = crate::report::progress::resolve(cfg.progress, quiet);
    let report_to = cfg.report.clone();
    if let Some(to) = &report_to
        && let Err(e) = report_to::check(runtime, to, None)
    {
        return refused(e);
    }
    let mut report = match runtime.block_on(crate::run::reembed::run(cfg, mode)) {
        Ok(r) => r,
        Err(e) => return refused(e),
    };
    if report.verified && !switching {
        report.switch_command = Some(switch_command());
    }
    report_to::summary(&report.summary(), &report, report_to.as_ref(), quiet);
    if let Some(to) = &report_to
        && !report_to::write(runtime, to, None, &report)
    {
        return ExitCode::from(EXIT_INCOMPLETE);
    }
    if report.interrupted {
        return ExitCode::from(EXIT_INTERRUPTED);
    }
    if let Some(e) = &report.error {
        output::error(e);
    }
    if report.failed_chunks > 0 {
        output::error(format!(
            "{} rows were not re-embedded; run again to retry them",
            report.failed_chunks
        ));
    }
    for p in &report.problems {
        output::problem("not verified", p);
    }
    if report.succeeded() {
        ExitCode::from(EXIT_OK)
    } else {
        ExitCode::from(EXIT_INCOMPLETE)
    }
}

/// The command line of this run with `--switch NAME` to add, secrets left out.
pub(super) fn switch_command() -> String {
    const SECRET: [&str; 7] = [
        "--pg-url",
        "--from-pg-url",
        "--from-qdrant-api-key",
        "--from-redis-url",
        "--pg-password",
        "--embed-api-key",
        "--qdrant-api-key",
    ];
    let mut out = Vec::new();
    let mut hide_next = false;
    for a in std::env::args().skip(1) {
        if hide_next {
            out.push("'<as before>'".to_string());
            hide_next = false;
        } else if let Some((flag, _)) = a.split_once('=')
            && SECRET.contains(&flag)
        {
            out.push(format!("{flag}='<as before>'"));
        } else {
            hide_next = SECRET.contains(&a.as_str());
            out.push(shell_word(&a));
        }
    }
    format!("vecload {} --switch NAME", out.join(" "))
}

fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=:/.,@%+".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}
