//! `vecload search QUERY`: a tenant's nearest chunks, embedded with the
//! load's provider and settings.

use std::process::ExitCode;

use super::{embed_and_target, env, refused};
use crate::cli::SearchArgs;
use crate::layout::Namespace;
use crate::run::search::{self, SearchJob};
use crate::settings::{ConfigError, bad};
use crate::{EXIT_INCOMPLETE, EXIT_OK};

fn job(args: SearchArgs) -> Result<SearchJob, ConfigError> {
    let tenant = args.tenant.trim().to_string();
    if tenant.is_empty() {
        return Err(bad("--tenant (TENANT_ID) is empty"));
    }
    if args.query.trim().is_empty() {
        return Err(bad("the search QUERY is empty"));
    }
    if args.k == 0 || args.k > 1000 {
        return Err(bad("-k must be from 1 to 1000"));
    }
    let super::Endpoints {
        mut embed, target, ..
    } = embed_and_target(args.embed, &args.sink, Namespace::Chunks, &env)?;
    // A question, not a document: in asymmetric mode it gets the query's
    // prefix or task, as the RAG API embeds its questions.
    embed.purpose = crate::embed::settings::Purpose::Query;
    Ok(SearchJob {
        query: args.query,
        tenant,
        k: args.k,
        json: args.json,
        embed,
        target,
    })
}

pub fn search(runtime: &tokio::runtime::Runtime, args: SearchArgs) -> ExitCode {
    let cfg = match job(args) {
        Ok(c) => c,
        Err(e) => return refused(e),
    };
    match runtime.block_on(search::search(&cfg)) {
        Ok(hits) => {
            if cfg.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&hits).unwrap_or_default()
                );
            } else {
                print!("{}", search::human(&cfg, &hits));
            }
            ExitCode::from(EXIT_OK)
        }
        Err(e) if e.is::<crate::run::space::Refused>() => refused(format!("{e:#}")),
        Err(e) => {
            crate::report::output::error(format!("{e:#}"));
            ExitCode::from(EXIT_INCOMPLETE)
        }
    }
}
