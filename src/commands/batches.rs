//! `vecload batches [--cancel]`: what `load --batch-api` submitted and
//! has not written yet, as the provider sees it now.

use std::process::ExitCode;

use crate::cli::BatchesArgs;
use crate::{EXIT_CONFIG, EXIT_OK};

pub fn batches(runtime: &tokio::runtime::Runtime, mut args: BatchesArgs) -> ExitCode {
    // The load's batch settings (Bedrock's bucket and role), with or
    // without --batch-api given.
    args.load.batch.batch_api = true;
    let job = match super::load::job(args.load) {
        Ok(j) => j,
        Err(e) => return super::refused(e),
    };
    let views = match runtime.block_on(crate::run::batches::list(&job, args.cancel)) {
        Ok(v) => v,
        Err(e) => {
            crate::report::output::problem("error", format!("{:#}", e.0));
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&views).unwrap_or_default()
        );
        return ExitCode::from(EXIT_OK);
    }
    if views.is_empty() {
        println!(
            "vecload batches: none recorded for tenant {:?} with this model and state",
            job.tenant
        );
    }
    for v in &views {
        println!(
            "{}  {}  {} of {} requests done, {} failed  ({} inputs, {} tokens)",
            v.batch_id.as_deref().unwrap_or("-"),
            v.status,
            v.completed,
            v.requests,
            v.failed,
            v.inputs,
            v.tokens
        );
    }
    ExitCode::from(EXIT_OK)
}
