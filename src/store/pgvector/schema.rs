//! The table vecload writes: created when missing, checked when present.
//!
//! An existing table must have the stored layout with the same vector type and
//! dimension as the run; anything else is refused before a single embedding
//! request, because every vector paid for would be rejected at COPY time.

use anyhow::{Context, Result, bail};
use tokio_postgres::Client;

use super::shape::Shape;
use crate::settings::{Distance, IndexKind, PgType};

/// Accepts `table` or `schema.table` made of plain identifiers, so names can
/// be quoted safely into SQL. Returns the name as given.
pub fn validate_table_name(name: &str) -> Result<String, String> {
    let parts: Vec<&str> = name.split('.').collect();
    if parts.is_empty() || parts.len() > 2 {
        return Err("use `table` or `schema.table`".into());
    }
    for p in &parts {
        let ok = !p.is_empty()
            && p.len() <= 63
            && p.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            return Err("names are letters, digits and _, starting with a letter or _, at most 63 characters".into());
        }
    }
    Ok(name.to_string())
}

/// A validated table name, quoted for SQL. Names are kept as given (case
/// included), as PostgreSQL does for quoted identifiers.
#[derive(Debug, Clone)]
pub struct Table {
    pub name: String,
    pub quoted: String,
    /// Name without schema, for naming indexes.
    pub bare: String,
}

impl Table {
    pub fn new(name: &str) -> Table {
        let quoted = name
            .split('.')
            .map(|p| format!("\"{p}\""))
            .collect::<Vec<_>>()
            .join(".");
        let bare = name.rsplit('.').next().unwrap_or(name).to_string();
        Table {
            name: name.to_string(),
            quoted,
            bare,
        }
    }

    pub fn vector_index_name(&self, kind: IndexKind, distance: Distance) -> String {
        let k = match kind {
            IndexKind::Hnsw => "hnsw",
            IndexKind::Ivfflat => "ivfflat",
            IndexKind::None => "none",
        };
        let mut n = format!(
            "{}_embedding_{k}_{}_idx",
            self.bare,
            distance_name(distance)
        );
        n.truncate(63);
        n
    }
}

fn distance_name(d: Distance) -> &'static str {
    match d {
        Distance::Cosine => "cosine",
        Distance::Dot => "ip",
        Distance::Euclid => "l2",
    }
}

pub fn column_type(ty: PgType, dim: usize) -> String {
    match ty {
        PgType::Vector => format!("vector({dim})"),
        PgType::Halfvec => format!("halfvec({dim})"),
    }
}

pub fn opclass(ty: PgType, distance: Distance) -> String {
    let t = match ty {
        PgType::Vector => "vector",
        PgType::Halfvec => "halfvec",
    };
    format!("{t}_{}_ops", distance_name(distance))
}

/// Makes sure pgvector is installed, creating the extension when allowed.
/// Returns its version.
pub async fn ensure_extension(client: &Client, ty: PgType) -> Result<String> {
    let version = match installed_version(client).await? {
        Some(v) => v,
        None => {
            if let Err(e) = client
                .batch_execute("CREATE EXTENSION IF NOT EXISTS vector")
                .await
            {
                // Two loads starting at once both try; the loser's error is
                // harmless if the extension is there now.
                if installed_version(client).await?.is_none() {
                    bail!(
                        "the pgvector extension is not installed in this database and this user cannot install it ({}). \
                         Ask an administrator to run `CREATE EXTENSION vector;` in it (on RDS: as the master user)",
                        db_message(&e)
                    );
                }
            }
            installed_version(client).await?.unwrap_or_default()
        }
    };
    if ty == PgType::Halfvec && version_lt(&version, (0, 7)) {
        bail!(
            "--pg-type halfvec needs pgvector 0.7 or later; this database has {version}. Upgrade with `ALTER EXTENSION vector UPDATE;`"
        );
    }
    Ok(version)
}

async fn installed_version(client: &Client) -> Result<Option<String>> {
    let row = client
        .query_opt(
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'",
            &[],
        )
        .await
        .context("checking for the pgvector extension")?;
    Ok(row.map(|r| r.get(0)))
}

fn version_lt(v: &str, min: (u32, u32)) -> bool {
    let mut it = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let major = it.next().unwrap_or(0);
    let minor = it.next().unwrap_or(0);
    (major, minor) < min
}

/// What is at the table's name now.
pub enum TableCheck {
    Missing,
    Compatible {
        page_column: bool,
        bucket_column: bool,
    },
    /// Exists but cannot take this run's rows; the message says why and what to do.
    Incompatible(String),
}

/// Reads the table's layout without changing anything.
pub async fn inspect_table(
    client: &Client,
    table: &Table,
    shape: &Shape,
    ty: PgType,
    dim: usize,
) -> Result<TableCheck> {
    let want = column_type(ty, dim);
    let existing = client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) \
             FROM pg_attribute a WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped",
            &[&table.quoted],
        )
        .await
        .with_context(|| format!("reading the columns of table {}", table.name))?;
    if existing.is_empty() {
        return Ok(TableCheck::Missing);
    }
    let cols: Vec<(String, String)> = existing.iter().map(|r| (r.get(0), r.get(1))).collect();
    let find = |name: &str| {
        cols.iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.as_str())
    };
    let name = &table.name;
    let vcol = shape.vector();
    let kind = if shape.layout.is_lightrag() {
        "a LightRAG table of this namespace"
    } else {
        "a vecload table"
    };
    let problem = match find(vcol) {
        Some(t) if t == want => None,
        Some(t) => Some(format!(
            "table {name} already exists with {vcol} {t}, but this run makes {want}. \
             Use another --table for the new vectors, or set --embed-dim/--pg-type to match the table"
        )),
        None => Some(format!(
            "table {name} exists but has no `{vcol}` column: it is not {kind}; choose another --table"
        )),
    };
    if let Some(p) = problem {
        return Ok(TableCheck::Incompatible(p));
    }
    for (col, ty) in shape.columns() {
        match (find(col), ty) {
            (Some(t), Some(ty)) if t != *ty => {
                return Ok(TableCheck::Incompatible(format!(
                    "table {name} has column {col} of type {t}, expected {ty}; choose another --table"
                )));
            }
            (Some(_), _) => {}
            (None, _) => {
                return Ok(TableCheck::Incompatible(format!(
                    "table {name} has no column {col}: it is not {kind}; choose another --table"
                )));
            }
        }
    }
    let key = shape.key();
    let has_key: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = to_regclass($1) AND i.indisunique \
             AND (SELECT array_agg(a.attname::text ORDER BY a.attname) FROM pg_attribute a \
                  WHERE a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)) = ARRAY[$2, $3])",
            &[&table.quoted, &key[0], &key[1]],
        )
        .await
        .context("checking the table's primary key")?
        .get(0);
    if !has_key {
        return Ok(TableCheck::Incompatible(format!(
            "table {name} has no unique key on ({t}, id), so reruns could not upsert; add one with \
             `ALTER TABLE {} ADD PRIMARY KEY ({t}, id)` or choose another --table",
            table.quoted,
            t = shape.tenant()
        )));
    }
    Ok(TableCheck::Compatible {
        page_column: find("page") == Some("integer"),
        bucket_column: find("shard_bucket") == Some("integer"),
    })
}

/// What `prepare` found: whether the table was made by this run (then nobody
/// else uses it yet and the index can be built without CONCURRENTLY).
pub struct TableState {
    pub created: bool,
    /// vecload's optional `page` column is there.
    pub page_column: bool,
    /// vecload's optional `shard_bucket` column is there.
    pub bucket_column: bool,
}

pub async fn ensure_table(
    client: &Client,
    table: &Table,
    shape: &Shape,
    ty: PgType,
    dim: usize,
    space: Option<&crate::space::Space>,
) -> Result<TableState> {
    match inspect_table(client, table, shape, ty, dim).await? {
        TableCheck::Compatible {
            page_column,
            bucket_column,
        } => Ok(TableState {
            created: false,
            page_column,
            bucket_column,
        }),
        TableCheck::Incompatible(msg) => bail!(msg),
        TableCheck::Missing => {
            let mut ddl = shape.ddl(table, &column_type(ty, dim));
            // The embedding space is recorded with the table, in the same
            // implicit transaction: no table exists without its record.
            if let Some(space) = space {
                let record = super::space::with_space(Default::default(), space, shape.layout);
                ddl.push(super::space::comment_sql(table, &record));
            }
            // One simple query: its statements commit together.
            let ddl = ddl.join(";\n");
            if let Err(e) = client.batch_execute(&ddl).await {
                // Another load may have created it at the same moment.
                return match inspect_table(client, table, shape, ty, dim).await? {
                    TableCheck::Compatible {
                        page_column,
                        bucket_column,
                    } => Ok(TableState {
                        created: false,
                        page_column,
                        bucket_column,
                    }),
                    _ => bail!("cannot create table {}: {}", table.name, db_message(&e)),
                };
            }
            Ok(TableState {
                created: true,
                page_column: shape.page_column,
                bucket_column: shape.bucket_column,
            })
        }
    }
}

/// Read-only checks of everything a load will need (for `vecload plan`):
/// pgvector installed or installable, the table compatible or creatable,
/// and the privileges to write, stage and index. Each problem names its fix.
pub async fn check_target(
    client: &Client,
    table: &Table,
    shape: &Shape,
    ty: PgType,
    dim: usize,
    index: IndexKind,
) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let user: String = client
        .query_one("SELECT current_user::text", &[])
        .await?
        .get(0);
    let is_super: bool = client
        .query_one(
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await?
        .get(0);
    match installed_version(client).await? {
        Some(v) if ty == PgType::Halfvec && version_lt(&v, (0, 7)) => problems.push(format!(
            "--pg-type halfvec needs pgvector 0.7 or later; this database has {v}. Fix: `ALTER EXTENSION vector UPDATE;`"
        )),
        Some(_) => {}
        None => {
            let row = client
                .query_opt(
                    "SELECT bool_or(trusted) FROM pg_available_extension_versions WHERE name = 'vector'",
                    &[],
                )
                .await?;
            let available = row.as_ref().and_then(|r| r.get::<_, Option<bool>>(0));
            let can_create_db: bool = client
                .query_one("SELECT has_database_privilege(current_database(), 'CREATE')", &[])
                .await?
                .get(0);
            match available {
                None => problems.push(
                    "pgvector is not available on this server. Fix: install the pgvector package on the server \
                     (on RDS it is built in; use PostgreSQL 15.2 or later)"
                        .into(),
                ),
                Some(trusted) if !(is_super || (trusted && can_create_db)) => problems.push(format!(
                    "pgvector is not installed in this database and user {user} cannot install it. \
                     Fix: an administrator runs `CREATE EXTENSION vector;` in it (on RDS: the master user)"
                )),
                Some(_) => {}
            }
        }
    }
    let schema = table.name.split_once('.').map(|(s, _)| s.to_string());
    match inspect_table(client, table, shape, ty, dim).await? {
        TableCheck::Incompatible(msg) => problems.push(msg),
        TableCheck::Missing => {
            let schema_expr = match &schema {
                Some(s) => format!("'{s}'"),
                None => "current_schema()".into(),
            };
            let can: Option<bool> = client
                .query_one(
                    &format!("SELECT has_schema_privilege({schema_expr}, 'CREATE')"),
                    &[],
                )
                .await
                .map(|r| r.get(0))
                .unwrap_or(None);
            if can != Some(true) {
                problems.push(format!(
                    "table {} does not exist and user {user} cannot create tables in schema {}. \
                     Fix: `GRANT CREATE ON SCHEMA {} TO {user};`, or create the table as its owner and grant \
                     SELECT, INSERT, UPDATE on it",
                    table.name,
                    schema.as_deref().unwrap_or("public"),
                    schema.as_deref().unwrap_or("public"),
                ));
            }
        }
        TableCheck::Compatible { .. } => {
            let row = client
                .query_one(
                    "SELECT has_table_privilege($1, 'SELECT') AND has_table_privilege($1, 'INSERT') \
                            AND has_table_privilege($1, 'UPDATE'), \
                            pg_has_role(current_user, (SELECT relowner FROM pg_class WHERE oid = to_regclass($1)), 'USAGE')",
                    &[&table.quoted],
                )
                .await?;
            let (write, owner): (bool, bool) = (row.get(0), row.get(1));
            if !write {
                problems.push(format!(
                    "user {user} cannot write table {}. Fix: `GRANT SELECT, INSERT, UPDATE ON {} TO {user};`",
                    table.name, table.quoted
                ));
            }
            if !owner && index != IndexKind::None {
                problems.push(format!(
                    "user {user} does not own table {}, so it cannot build the {} index. Fix: run as the owner, \
                     or pass --index none and build the index as the owner afterwards",
                    table.name,
                    match index {
                        IndexKind::Hnsw => "hnsw",
                        _ => "ivfflat",
                    }
                ));
            }
        }
    }
    let temp: bool = client
        .query_one(
            "SELECT has_database_privilege(current_database(), 'TEMP')",
            &[],
        )
        .await?
        .get(0);
    if !temp {
        problems.push(format!(
            "user {user} cannot create temporary tables, which the COPY staging needs. \
             Fix: `GRANT TEMP ON DATABASE <db> TO {user};`"
        ));
    }
    Ok(problems)
}

/// Builds the vector index after the load. On a table that existed before the
/// run (possibly serving queries) it is built CONCURRENTLY so writers are not
/// blocked; an invalid leftover of an interrupted concurrent build is rebuilt.
#[allow(clippy::too_many_arguments)]
pub async fn build_index(
    client: &Client,
    table: &Table,
    shape: &Shape,
    kind: IndexKind,
    ty: PgType,
    distance: Distance,
    params: super::settings::IndexParams,
    memory: Option<&str>,
    concurrently: bool,
) -> Result<Option<String>> {
    if kind == IndexKind::None {
        return Ok(None);
    }
    let (name, given_with) = shape.index(table, kind, ty, distance, params);
    let schema_pred = match table.name.split_once('.') {
        Some((schema, _)) => format!("n.nspname = '{schema}'"),
        None => "n.oid = ANY (current_schemas(false)::regnamespace[])".to_string(),
    };
    let existing = client
        .query_opt(
            &format!(
                "SELECT i.indisvalid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 JOIN pg_index i ON i.indexrelid = c.oid WHERE c.relname = $1 AND {schema_pred}"
            ),
            &[&name],
        )
        .await
        .context("looking for an existing vector index")?;
    match existing {
        Some(row) if row.get::<_, bool>(0) => return Ok(Some(name)),
        Some(_) => {
            tracing::warn!(
                "index {name} is invalid (an earlier build was interrupted); rebuilding it"
            );
            let schema = table
                .name
                .split_once('.')
                .map(|(s, _)| format!("\"{s}\"."))
                .unwrap_or_default();
            client
                .batch_execute(&format!(
                    "DROP INDEX CONCURRENTLY IF EXISTS {schema}\"{name}\""
                ))
                .await
                .map_err(|e| {
                    anyhow::anyhow!("dropping invalid index {name}: {}", db_message(&e))
                })?;
        }
        None => {}
    }
    if let Some(mem) = memory {
        // A graph that fits in maintenance_work_mem builds many times faster.
        client
            .batch_execute(&format!(
                "SET maintenance_work_mem = '{}'",
                mem.replace('\'', "")
            ))
            .await
            .map_err(|e| anyhow::anyhow!("--index-memory {mem:?}: {}", db_message(&e)))?;
    }
    let method = match kind {
        _ if !given_with.is_empty() => format!(
            "{}{given_with}",
            if kind == IndexKind::Ivfflat {
                "ivfflat"
            } else {
                "hnsw"
            }
        ),
        IndexKind::Hnsw => "hnsw".to_string(),
        IndexKind::Ivfflat => {
            // pgvector's guidance: rows/1000 lists up to 1M rows, sqrt(rows) above.
            let rows: i64 = client
                .query_one(&format!("SELECT count(*) FROM {}", table.quoted), &[])
                .await?
                .get(0);
            let lists = if rows <= 1_000_000 {
                (rows / 1000).max(1)
            } else {
                (rows as f64).sqrt() as i64
            };
            format!("ivfflat WITH (lists = {lists})")
        }
        IndexKind::None => unreachable!("handled above"),
    };
    let (using, with) = match method.split_once(" WITH ") {
        Some((m, w)) => (m.to_string(), format!(" WITH {w}")),
        None => (method, String::new()),
    };
    let sql = format!(
        "CREATE INDEX {conc}IF NOT EXISTS \"{name}\" ON {t} USING {using} ({col} {ops}){with}",
        conc = if concurrently { "CONCURRENTLY " } else { "" },
        t = table.quoted,
        col = shape.vector(),
        ops = opclass(ty, distance),
    );
    client
        .batch_execute(&sql)
        .await
        .map_err(|e| anyhow::anyhow!("building index {name}: {}", db_message(&e)))?;
    client
        .batch_execute(&format!("ANALYZE {}", table.quoted))
        .await
        .map_err(|e| anyhow::anyhow!("ANALYZE {}: {}", table.name, db_message(&e)))?;
    Ok(Some(name))
}

/// The server's own message (tokio-postgres's Display says only "db error").
/// The table's indexes for `vecload check`: an invalid one (a CREATE INDEX
/// CONCURRENTLY that failed) is a problem; no vector index a note.
pub async fn index_health(client: &Client, table: &Table) -> Result<crate::store::IndexHealth> {
    let rows = client
        .query(
            "SELECT i.relname::text, x.indisvalid, pg_get_indexdef(x.indexrelid)
               FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
              WHERE x.indrelid = to_regclass($1) ORDER BY 1",
            &[&table.quoted],
        )
        .await
        .map_err(|e| {
            anyhow::anyhow!("reading the indexes of {}: {}", table.name, db_message(&e))
        })?;
    let mut health = crate::store::IndexHealth::default();
    let mut vector = Vec::new();
    for r in rows {
        let (name, valid, def): (String, bool, String) = (r.get(0), r.get(1), r.get(2));
        let method = ["hnsw", "ivfflat", "vchordrq"]
            .into_iter()
            .find(|m| def.to_ascii_lowercase().contains(&format!("using {m}")));
        if !valid {
            health.problems.push(format!(
                "index {name} is invalid (a CREATE INDEX CONCURRENTLY that did not finish): \
                 `REINDEX INDEX CONCURRENTLY \"{name}\"`, or drop it and let the next load build it"
            ));
        }
        if let Some(m) = method {
            vector.push(format!(
                "{name} ({m}{})",
                if valid { "" } else { ", INVALID" }
            ));
        }
    }
    if vector.is_empty() {
        health.index = "no vector index".into();
        health.notes.push(format!(
            "table {} has no vector index: every search reads every row (a load builds one \
             unless --index none; LightRAG builds its own at start)",
            table.name
        ));
    } else {
        health.index = vector.join(", ");
    }
    Ok(health)
}

pub fn db_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_plain_identifiers() {
        assert!(validate_table_name("vecload_chunks").is_ok());
        assert!(validate_table_name("rag.chunks_v2").is_ok());
        assert!(validate_table_name("a.b.c").is_err());
        assert!(validate_table_name("x\"; drop table y; --").is_err());
        assert!(validate_table_name("1abc").is_err());
        assert!(validate_table_name("").is_err());
    }

    #[test]
    fn quoting_and_index_names() {
        let t = Table::new("rag.Chunks");
        assert_eq!(t.quoted, "\"rag\".\"Chunks\"");
        assert_eq!(
            t.vector_index_name(IndexKind::Hnsw, Distance::Cosine),
            "Chunks_embedding_hnsw_cosine_idx"
        );
        assert_eq!(
            opclass(PgType::Halfvec, Distance::Cosine),
            "halfvec_cosine_ops"
        );
    }
}
