//! What `reembed` reads: `--from KIND:NAME`. A table or collection of a
//! store is read by that store's reader (`store::<kind>::reader`); LightRAG's
//! JSON and Redis chunk stores by `source::lightrag`. Only read, never
//! modified.

use std::path::PathBuf;
use std::sync::Arc;

use crate::records::RowReader;
use crate::settings::{ConfigError, Secret, bad};
use crate::store::{StoreFlags, Target};

#[derive(Debug, Clone)]
pub enum FromSpec {
    /// A table or collection (vecload's or LightRAG's vector store, or
    /// LightRAG's PostgreSQL chunk store).
    Store(Arc<dyn Target>),
    /// LightRAG's kv_store_text_chunks.json.
    LightragJson { path: PathBuf },
    /// LightRAG's Redis chunk store.
    LightragRedis {
        uri: Secret,
        workspace: Option<String>,
    },
    /// The entities or relations of LightRAG's GraphML graph (`check
    /// --lightrag-dir --repair`); `reverse`: relation ids the target holds
    /// in the other order.
    LightragGraph {
        path: PathBuf,
        ns: crate::layout::Namespace,
        reverse: super::lightrag::graph::Reverse,
    },
}

/// Where a source is when it is not where the target is.
#[derive(Debug, Clone, Default)]
pub struct Elsewhere {
    pub stores: FromStoreFlags,
    /// Redis of LightRAG's chunk store (`reembed` only).
    pub redis_url: Option<String>,
}

/// Where a source store is when it is not the target's server: declared
/// once, flattened into `reembed` and `copy`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct FromStoreFlags {
    /// PostgreSQL URL of the source, when it is not the target's database.
    #[arg(long, value_name = "URL", hide_env_values = true)]
    pub from_pg_url: Option<String>,

    /// Qdrant URL of the source, when it is not the target's server (same
    /// API key).
    #[arg(long, value_name = "URL")]
    pub from_qdrant_url: Option<String>,

    /// gRPC address of the source Qdrant, when it is not 6334 of
    /// --from-qdrant-url's host (a load balancer's port, say).
    #[arg(long, value_name = "URL")]
    pub from_qdrant_grpc_url: Option<String>,

    /// API key of the source Qdrant, when it is not the target's (an old
    /// cluster copied to a new one). Never logged.
    #[arg(long, value_name = "KEY", hide_env_values = true)]
    pub from_qdrant_api_key: Option<String>,
}

impl Elsewhere {
    /// The `--from-<store>-url` given for this store.
    fn url_for(&self, store: &str) -> Option<String> {
        match store {
            "pgvector" => self.stores.from_pg_url.clone(),
            "qdrant" => self.stores.from_qdrant_url.clone(),
            _ => None,
        }
    }
}

impl FromSpec {
    /// `--from SPEC`, for a run of `tenant` (None: every tenant).
    pub fn parse(
        spec: &str,
        tenant: &Option<String>,
        flags: &StoreFlags,
        elsewhere: Elsewhere,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<FromSpec, ConfigError> {
        let (kind, name) = spec.split_once(':').ok_or_else(|| {
            bad(format!(
                "--from {spec:?}: use pgvector:TABLE, qdrant:COLLECTION or lightrag:PATH"
            ))
        })?;
        let name = match (kind, name.trim()) {
            // LightRAG's PostgreSQL chunk store has one fixed name.
            ("lightrag-pg", "") => "lightrag_doc_chunks",
            ("lightrag-redis", "") => "text_chunks",
            (_, n) => n,
        };
        if name.is_empty() {
            return Err(bad(format!("--from {spec:?} names no {kind} source")));
        }
        Ok(match kind {
            "lightrag" => {
                let path = PathBuf::from(name);
                if !path.is_file() {
                    return Err(bad(format!(
                        "--from lightrag:{name}: no such file (LightRAG keeps its chunks in \
                         WORKING_DIR/<workspace>/kv_store_text_chunks.json)"
                    )));
                }
                FromSpec::LightragJson { path }
            }
            "lightrag-redis" => {
                let uri = elsewhere.redis_url.ok_or_else(|| {
                    bad("--from lightrag-redis: needs REDIS_URI (or --from-redis-url), as the RAG API has it")
                })?;
                if !uri.starts_with("redis://") && !uri.starts_with("rediss://") {
                    return Err(bad(
                        "REDIS_URI / --from-redis-url must start with redis:// or rediss://",
                    ));
                }
                FromSpec::LightragRedis {
                    uri: Secret::new(uri),
                    workspace: tenant.clone(),
                }
            }
            other => {
                // LightRAG's PostgreSQL chunk store is a table like any other.
                let store = if other == "lightrag-pg" {
                    "pgvector"
                } else {
                    other
                };
                let store = crate::store::target::kind(store).map_err(|_| {
                    bad(format!(
                        "--from {other}:...: unknown source kind; use pgvector:TABLE, \
                         qdrant:COLLECTION, lightrag:PATH or lightrag-pg:[TABLE]"
                    ))
                })?;
                let url = elsewhere.url_for(store.name());
                let at = match store.name() {
                    "qdrant" => crate::store::SourceAt {
                        url,
                        grpc_url: elsewhere.stores.from_qdrant_grpc_url.clone(),
                        api_key: elsewhere
                            .stores
                            .from_qdrant_api_key
                            .clone()
                            .map(Secret::new),
                    },
                    _ => crate::store::SourceAt {
                        url,
                        ..Default::default()
                    },
                };
                FromSpec::Store(store.source(name, flags, at, env)?)
            }
        })
    }

    /// `pgvector table t at user@host:port/db`: never a secret.
    pub fn describe(&self) -> String {
        match self {
            FromSpec::Store(t) => t.describe(),
            FromSpec::LightragJson { path } => {
                format!("LightRAG chunk store {}", path.display())
            }
            FromSpec::LightragRedis { uri, .. } => format!(
                "LightRAG Redis chunk store at {}",
                super::lightrag::redis::describe_uri(uri.expose())
            ),
            FromSpec::LightragGraph { path, .. } => format!("LightRAG graph {}", path.display()),
        }
    }

    /// A store of many tenants (a JSON or Redis chunk store is one
    /// workspace: the target's other tenants are none of its business).
    pub fn has_tenants(&self) -> bool {
        matches!(self, FromSpec::Store(_))
    }

    /// Whether this source is `target` itself.
    pub fn is(&self, target: &dyn Target) -> bool {
        matches!(self, FromSpec::Store(t) if t.same_data(target))
    }

    /// The reader. `tenant`: only this tenant of a store; `workspace`: the
    /// tenant a one-workspace chunk store's rows belong to.
    pub async fn open(
        &self,
        tenant: Option<String>,
        workspace: String,
        page_size: usize,
    ) -> anyhow::Result<Box<dyn RowReader>> {
        Ok(match self {
            FromSpec::Store(t) => t.reader(tenant, page_size, false).await?,
            FromSpec::LightragJson { path } => Box::new(
                super::lightrag::json::LightragSource::open(path, workspace, page_size)?,
            ),
            FromSpec::LightragRedis { uri, workspace: ws } => Box::new(
                super::lightrag::redis::RedisSource::open(
                    uri.expose(),
                    ws.as_deref(),
                    workspace,
                    page_size,
                )
                .await?,
            ),
            FromSpec::LightragGraph { path, ns, reverse } => {
                Box::new(super::lightrag::graph::GraphSource::open(
                    path, *ns, workspace, reverse, page_size,
                )?)
            }
        })
    }
}
