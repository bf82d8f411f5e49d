//! `vecload copy --from SOURCE`: the flags become a `CopyJob`. The source is
//! opened first, because its vectors decide the target: their length is
//! read from the store and checked against EMBEDDING_DIM, and the model
//! (LightRAG's name suffix) against EMBEDDING_MODEL, before the target is
//! validated with the same rules as `load` (pgvector's dimension limits).

use std::process::ExitCode;

use super::{env, refused, report_to};
use crate::cli::CopyArgs;
use crate::layout::Namespace;
use crate::records::RowReader;
use crate::report::output::{self, ReportTo};
use crate::run::copy::CopyJob;
use crate::settings::{ConfigError, bad};
use crate::source::from::{Elsewhere, FromSpec};
use crate::store::TargetSpec;
use crate::{EXIT_INCOMPLETE, EXIT_INTERRUPTED, EXIT_OK};

fn nonempty(flag: &str, v: Option<String>) -> Result<Option<String>, ConfigError> {
    match v.as_deref().map(str::trim) {
        Some("") => Err(bad(format!("{flag} is empty"))),
        t => Ok(t.map(str::to_string)),
    }
}

/// Everything that needs no server.
struct Parsed {
    source: FromSpec,
    source_name: String,
    tenant: Option<String>,
    to_tenant: Option<String>,
}

fn parse(args: &CopyArgs) -> Result<Parsed, ConfigError> {
    let tenant = nonempty("--tenant", args.tenant.clone())?;
    let to_tenant = nonempty("--to-tenant", args.to_tenant.clone())?;
    if to_tenant.is_some() && tenant.is_none() {
        return Err(bad(
            "--to-tenant needs --tenant: the workspace to copy from (one at a time)",
        ));
    }
    if args.page_size == 0 || args.page_size > 10_000 {
        return Err(bad("--page-size must be from 1 to 10000"));
    }
    if let (Some(_), Some(t)) = (&args.switch, &tenant) {
        return Err(bad(format!(
            "--switch moves every tenant at once, but --tenant {t:?} copies only one. Copy \
             tenants one at a time without --switch, then run once more without --tenant and \
             with --switch: what is already in the target is not copied again"
        )));
    }
    let (kind, name) = args.from.split_once(':').unwrap_or((&args.from, ""));
    // Only a store keeps vectors to copy (any store of the registry).
    if crate::store::target::kind(kind).is_err() {
        return Err(bad(format!(
            "--from {:?}: copy reads stored vectors, from pgvector:TABLE or qdrant:COLLECTION; \
             LightRAG's chunk stores (lightrag:, lightrag-pg:, lightrag-redis:) hold texts \
             only: re-embed them with vecload reembed",
            args.from
        )));
    }
    let elsewhere = Elsewhere {
        stores: args.from_at.clone(),
        redis_url: None,
    };
    let source = FromSpec::parse(&args.from, &tenant, &args.sink, elsewhere, &env)?;
    Ok(Parsed {
        source,
        source_name: name.trim().to_string(),
        tenant,
        to_tenant,
    })
}

/// The job, once the source has said what its vectors are.
fn job(args: CopyArgs, p: Parsed, reader: &dyn RowReader) -> Result<CopyJob, ConfigError> {
    let Some(dim) = reader.dim() else {
        return Err(bad(format!(
            "{} did not say how long its vectors are",
            p.source.describe()
        )));
    };
    if let Some(want) = args.embed_dim
        && want != dim
    {
        return Err(bad(format!(
            "the source's vectors have {dim} dimensions, but --embed-dim (EMBEDDING_DIM) is \
             {want}: copy carries vectors as they are; to change the model or the dimension, \
             use vecload reembed"
        )));
    }
    // LightRAG names its stores after the model: from --embed-model, or
    // the source's own name.
    let namespace = Namespace::from_store_name(&p.source_name).unwrap_or(Namespace::Chunks);
    let from_name = Namespace::suffix_of(&p.source_name);
    let from_model = args
        .embed_model
        .as_deref()
        .and_then(|m| crate::layout::suffix(m, dim));
    if let (Some(src), Some(given)) = (&from_name, &from_model)
        && src != given
    {
        return Err(bad(format!(
            "the source {} was embedded as {src:?} (its LightRAG name), but --embed-model \
             (EMBEDDING_MODEL) makes {given:?}: copy carries vectors as they are; to change the \
             model, use vecload reembed",
            p.source_name
        )));
    }
    let suffix = from_model.or(from_name);
    let layout = args.sink.layout(namespace)?;
    if layout.is_lightrag() && suffix.is_none() {
        return Err(bad(
            "--layout lightrag names the target after the model: set --embed-model \
             (EMBEDDING_MODEL) to the model the source's vectors were made with",
        ));
    }
    let target = args.sink.target(&TargetSpec {
        dim,
        layout,
        lightrag_suffix: suffix.as_deref(),
        env: &env,
    })?;
    if p.source.is(target.as_ref()) && p.to_tenant.is_none() {
        return Err(bad(format!(
            "the target is the source ({}): set --table or --collection to a new name, or \
             --to-tenant to copy one workspace into another",
            p.source.describe()
        )));
    }
    if let Some(name) = &args.switch {
        target.check_switch_name(name)?;
    }
    Ok(CopyJob {
        source_desc: p.source.describe(),
        tenant: p.tenant,
        to_tenant: p.to_tenant,
        switch: args.switch,
        prune: args.prune,
        report: args.report.as_deref().map(ReportTo::parse).transpose()?,
        target,
        dim,
        source_space: None,
        space_policy: crate::run::space::Policy::of(&args.sink),
        quality: {
            if args.quality.questions.is_some() {
                return Err(bad(
                    "--questions: a copy keeps the vectors, so the questions would be answered as \
                     before; ask them after the copy with `vecload check --quality --questions`",
                ));
            }
            args.quality.settings()?
        },
    })
}

pub fn copy(runtime: &tokio::runtime::Runtime, args: CopyArgs, quiet: bool) -> ExitCode {
    let parsed = match parse(&args) {
        Ok(p) => p,
        Err(e) => return refused(e),
    };
    let opened = runtime.block_on(async {
        match &parsed.source {
            FromSpec::Store(t) => t.reader(parsed.tenant.clone(), args.page_size, true).await,
            _ => Err(anyhow::anyhow!(
                "copy reads a pgvector table or a Qdrant collection"
            )),
        }
    });
    let reader = match opened {
        Ok(r) => r,
        Err(e) => return refused(format!("{e:#}")),
    };
    let source_space = match &parsed.source {
        FromSpec::Store(t) => match runtime.block_on(t.space()) {
            Ok(crate::space::Recorded::Space(s)) => Some(s),
            Ok(_) => None,
            Err(e) => return refused(format!("{e:#}")),
        },
        _ => None,
    };
    let progress = args.progress;
    let mut cfg = match job(args, parsed, reader.as_ref()) {
        Ok(c) => c,
        Err(e) => return refused(e),
    };
    cfg.source_space = source_space;
    // A one-tenant copy cannot switch (the switch moves every tenant).
    let switchable = cfg.switch.is_none() && cfg.tenant.is_none();
    let mode = crate::report::progress::resolve(progress, quiet);
    let report_to = cfg.report.clone();
    if let Some(to) = &report_to
        && let Err(e) = report_to::check(runtime, to, None)
    {
        return refused(e);
    }
    let mut report = match runtime.block_on(crate::run::copy::run(cfg, reader, mode)) {
        Ok(r) => r,
        Err(e) => return refused(e),
    };
    if report.verified && switchable {
        report.switch_command = Some(super::reembed::switch_command());
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
            "{} source rows were not copied (listed in the summary and --report); the copy \
             is not verified",
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
