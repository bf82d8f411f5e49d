//! `vecload plan`: what a load would do and cost, before anything is paid
//! for or written.

use std::process::ExitCode;

use crate::cli::PlanArgs;
use crate::run::plan::PlanOptions;
use crate::{EXIT_CONFIG, EXIT_INCOMPLETE, EXIT_OK};

pub fn plan(runtime: &tokio::runtime::Runtime, mut args: PlanArgs, quiet: bool) -> ExitCode {
    // `plan --shards N` without a shard: the whole load, split N ways.
    let split = args.load.shard.shards.filter(|_| {
        args.load.shard.shard.is_none()
            && super::env("JOB_COMPLETION_INDEX").is_none()
            && super::env("AWS_BATCH_JOB_ARRAY_INDEX").is_none()
    });
    if let Some(n) = split {
        if !(1..=crate::shard::BUCKETS).contains(&n) {
            return super::refused(format!(
                "--shards {n}: between 1 and {}",
                crate::shard::BUCKETS
            ));
        }
        args.load.shard.shards = None;
    }
    let json = args.json;
    let report_to = match args
        .load
        .report
        .as_deref()
        .map(crate::report::output::ReportTo::parse)
        .transpose()
    {
        Ok(r) => r,
        Err(e) => return super::refused(e),
    };
    let opts = PlanOptions {
        price_per_million_tokens: args.price_per_million_tokens,
        probe: args.probe,
        request_seconds: args.request_seconds,
        shards: split,
    };
    let job = super::load::job(args.load).map_err(|e| e.to_string());
    let plan = runtime.block_on(crate::run::plan::plan(job, opts));
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&plan).unwrap_or_default()
        );
    } else {
        super::report_to::summary(&plan.human(), &plan, report_to.as_ref(), quiet);
    }
    if let Some(to) = &report_to
        && !super::report_to::write(runtime, to, None, &plan)
    {
        return ExitCode::from(EXIT_INCOMPLETE);
    }
    if plan.problems.is_empty() {
        ExitCode::from(EXIT_OK)
    } else {
        for p in &plan.problems {
            crate::report::output::problem("problem", p);
        }
        ExitCode::from(EXIT_CONFIG)
    }
}
