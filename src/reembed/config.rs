//! The validated settings of `vecload reembed`, built once from flags and
//! env like the load's: the source's kind, name and connection, the target
//! (exactly as for `load`, so pgvector's dimension rules are checked before
//! anything is read), and the switch.

use std::path::PathBuf;
use std::time::Duration;

use crate::cli::{ProgressMode, ReembedArgs};
use crate::config::{ConfigError, EmbedConfig, Secret, SinkConfig, embed_and_sink};
use crate::layout::Namespace;
use crate::sink::pgvector::PgTarget;
use crate::sink::qdrant::QdrantTarget;

#[derive(Debug, Clone)]
pub enum SourceSpec {
    Pgvector {
        target: Box<PgTarget>,
        table: String,
    },
    Qdrant {
        target: QdrantTarget,
        collection: String,
    },
    LightragJson {
        path: PathBuf,
    },
    LightragRedis {
        uri: Secret,
        workspace: Option<String>,
    },
}

impl SourceSpec {
    /// `pgvector table t at user@host:port/db`: never a secret.
    pub fn describe(&self) -> String {
        match self {
            SourceSpec::Pgvector { target, table } => {
                format!("pgvector table {table} at {}", target.describe())
            }
            SourceSpec::Qdrant { target, collection } => {
                format!("Qdrant collection {collection} at {}", target.describe())
            }
            SourceSpec::LightragJson { path } => {
                format!("LightRAG chunk store {}", path.display())
            }
            SourceSpec::LightragRedis { uri, .. } => format!(
                "LightRAG Redis chunk store at {}",
                super::from_redis::describe_uri(uri.expose())
            ),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ReembedConfig {
    pub source: SourceSpec,
    /// None: every tenant of the source.
    pub tenant: Option<String>,
    pub switch: Option<String>,
    pub prune: bool,
    pub page_size: usize,
    pub report: Option<PathBuf>,
    pub progress: ProgressMode,
    pub embed: EmbedConfig,
    pub sink: SinkConfig,
}

fn bad(msg: impl Into<String>) -> ConfigError {
    ConfigError(msg.into())
}

impl ReembedConfig {
    pub fn from_args(
        args: ReembedArgs,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<ReembedConfig, ConfigError> {
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
        let sink_args = args.sink.clone();
        // Entity and relationship stores of LightRAG stay what they are.
        let namespace = args
            .from
            .split_once(':')
            .and_then(|(_, name)| Namespace::from_store_name(name))
            .unwrap_or(Namespace::Chunks);
        let (embed, sink, _) = embed_and_sink(args.embed, args.sink, &env, namespace)?;
        let (kind, name) = args.from.split_once(':').ok_or_else(|| {
            bad(format!(
                "--from {:?}: use pgvector:TABLE, qdrant:COLLECTION or lightrag:PATH",
                args.from
            ))
        })?;
        let name = match (kind, name.trim()) {
            // LightRAG's PostgreSQL chunk store has one fixed name.
            ("lightrag-pg", "") => "lightrag_doc_chunks",
            ("lightrag-redis", "") => "text_chunks",
            (_, n) => n,
        };
        if name.is_empty() {
            return Err(bad(format!(
                "--from {:?} names no {kind} source",
                args.from
            )));
        }
        let source = match kind {
            "pgvector" | "pg" | "postgres" | "lightrag-pg" => {
                let table = crate::sink::pgvector::schema::validate_table_name(name)
                    .map_err(|m| bad(format!("--from pgvector:{name}: {m}")))?;
                let target = match args.from_pg_url {
                    Some(url) => PgTarget::from_settings(
                        Some(url),
                        None,
                        None,
                        None,
                        None,
                        None,
                        None,
                        sink_args.pg_sslrootcert.clone(),
                    ),
                    None => PgTarget::from_settings(
                        sink_args.pg_url.or_else(|| env("DATABASE_URL")),
                        sink_args.pg_host,
                        sink_args.pg_port,
                        sink_args.pg_database,
                        sink_args.pg_user,
                        sink_args.pg_password.map(Secret::new),
                        // LightRAG's names for the same settings.
                        sink_args.pg_sslmode.or_else(|| env("POSTGRES_SSL_MODE")),
                        sink_args
                            .pg_sslrootcert
                            .or_else(|| env("POSTGRES_SSL_ROOT_CERT").map(PathBuf::from)),
                    ),
                }
                .map_err(|e| bad(format!("the source database (--from-pg-url): {e}")))?;
                SourceSpec::Pgvector {
                    target: Box::new(target),
                    table,
                }
            }
            "qdrant" => {
                let target = QdrantTarget::from_settings(
                    args.from_qdrant_url.clone().or(sink_args.qdrant_url),
                    if args.from_qdrant_url.is_some() {
                        None
                    } else {
                        sink_args.qdrant_grpc_url
                    },
                    sink_args.qdrant_api_key.map(Secret::new),
                    Duration::from_secs(sink_args.qdrant_timeout.max(1)),
                )
                .map_err(|e| bad(format!("the source Qdrant (--from-qdrant-url): {e}")))?;
                SourceSpec::Qdrant {
                    target,
                    collection: name.to_string(),
                }
            }
            "lightrag" => {
                let path = PathBuf::from(name);
                if !path.is_file() {
                    return Err(bad(format!(
                        "--from lightrag:{name}: no such file (LightRAG keeps its chunks in \
                         WORKING_DIR/<workspace>/kv_store_text_chunks.json)"
                    )));
                }
                SourceSpec::LightragJson { path }
            }
            "lightrag-redis" => {
                let uri = args.from_redis_url.clone().ok_or_else(|| {
                    bad("--from lightrag-redis: needs REDIS_URI (or --from-redis-url), as the RAG API has it")
                })?;
                if !uri.starts_with("redis://") && !uri.starts_with("rediss://") {
                    return Err(bad(
                        "REDIS_URI / --from-redis-url must start with redis:// or rediss://",
                    ));
                }
                SourceSpec::LightragRedis {
                    uri: Secret::new(uri),
                    workspace: tenant.clone(),
                }
            }
            other => {
                return Err(bad(format!(
                    "--from {other}:...: unknown source kind; use pgvector:TABLE, \
                     qdrant:COLLECTION, lightrag:PATH or lightrag-pg:[TABLE]"
                )));
            }
        };
        if same_store(&source, &sink) {
            return Err(bad(format!(
                "the target is the source ({}): re-embedding writes a new table or collection \
                 and never modifies the source; set --table or --collection to a new name",
                source.describe()
            )));
        }
        if let Some(name) = &args.switch {
            check_switch_name(name, &sink)?;
        }
        Ok(ReembedConfig {
            source,
            tenant,
            switch: args.switch,
            prune: args.prune,
            page_size: args.page_size,
            report: args.report,
            progress: args.progress,
            embed,
            sink,
        })
    }
}

fn same_store(source: &SourceSpec, sink: &SinkConfig) -> bool {
    match (source, sink) {
        (SourceSpec::Pgvector { target, table }, SinkConfig::Pgvector(pg)) => {
            target.describe() == pg.target.describe()
                && unqualified(table) == unqualified(&pg.table)
        }
        (SourceSpec::Qdrant { target, collection }, SinkConfig::Qdrant(q)) => {
            target.describe() == q.target.describe() && *collection == q.collection
        }
        _ => false,
    }
}

/// `public.t` and `t` are the same table for the usual search_path.
fn unqualified(t: &str) -> &str {
    t.strip_prefix("public.").unwrap_or(t)
}

fn check_switch_name(name: &str, sink: &SinkConfig) -> Result<(), ConfigError> {
    match sink {
        SinkConfig::Pgvector(pg) => {
            crate::sink::pgvector::schema::validate_table_name(name)
                .map_err(|m| bad(format!("--switch {name:?}: {m}")))?;
            let schema = |t: &str| t.split_once('.').map(|(s, _)| s.to_string());
            if schema(name).unwrap_or_else(|| "public".into())
                != schema(&pg.table).unwrap_or_else(|| "public".into())
            {
                return Err(bad(format!(
                    "--switch {name:?} and --table {:?} are in different schemas; a rename \
                     cannot move a table between schemas",
                    pg.table
                )));
            }
            if unqualified(name) == unqualified(&pg.table) {
                return Err(bad(format!(
                    "--switch {name:?} is the target table itself; give the name the RAG API reads"
                )));
            }
        }
        SinkConfig::Qdrant(q) => {
            if name.trim().is_empty() || name == q.collection {
                return Err(bad(format!(
                    "--switch {name:?} must be the alias the RAG API reads, not the target collection"
                )));
            }
        }
    }
    Ok(())
}
