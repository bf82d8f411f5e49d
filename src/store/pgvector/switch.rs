//! The blue-green switch in PostgreSQL: NAME is a table. In one
//! transaction the table called NAME (if any) becomes
//! `NAME_before_<unix time>` and the target becomes NAME, indexes renamed
//! along (so later index names do not collide). A query waiting on the
//! rename's lock resolves the name again once it commits, so it reads the
//! new table; the lock wait is capped so readers are never stalled for long,
//! and the switch is retried instead.

use anyhow::{Result, anyhow, bail};
use tokio_postgres::Client;

use super::PgSettings;
use super::schema::{Table, db_message};

/// Points table name `name` at the target; returns what was done.
pub async fn switch(pg: &PgSettings, name: &str) -> Result<String> {
    let mut client = pg.target.connect().await?;
    let mut attempt = 0;
    loop {
        match rename(&mut client, &pg.table, name).await {
            Err(e) if attempt < 10 && is_lock_timeout(&e) => {
                attempt += 1;
                tracing::warn!("switching {name}: readers hold the table; retrying ({attempt}/10)");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Err(e) => match e.downcast_ref::<tokio_postgres::Error>() {
                Some(db) => bail!("switching {name} to {}: {}", pg.table, db_message(db)),
                None => bail!("switching {name} to {}: {e:#}", pg.table),
            },
            Ok(msg) => return Ok(msg),
        }
    }
}

fn switched_marker(target: &str) -> String {
    format!("vecload reembed: switched from table {target}")
}

/// PostgreSQL: an earlier run already renamed this target to `name` (the
/// target is gone and `name` carries the marker). Running again would embed
/// every row into a new table for nothing, so the run is refused.
pub async fn already_switched(pg: &PgSettings, name: &str) -> Result<Option<String>> {
    let client = pg.target.connect().await?;
    let (target, named) = (Table::new(&pg.table), Table::new(name));
    let row = client
        .query_one(
            "SELECT to_regclass($1) IS NULL, obj_description(to_regclass($2), 'pg_class')",
            &[&target.quoted, &named.quoted],
        )
        .await
        .map_err(|e| anyhow!("checking --switch {name}: {}", db_message(&e)))?;
    let (gone, comment): (bool, Option<String>) = (row.get(0), row.get(1));
    let marked = comment.as_deref() == Some(switched_marker(&target.bare).as_str())
        || super::space::comment_object(comment.as_deref())
            .get(super::space::SWITCHED_FROM_KEY)
            .and_then(|v| v.as_str())
            == Some(target.bare.as_str());
    Ok((gone && marked).then(|| {
        format!(
            "table {} was already switched to {name} by an earlier run, so there is nothing to do. \
             To re-embed again, give a new --table",
            pg.table
        )
    }))
}

fn is_lock_timeout(e: &anyhow::Error) -> bool {
    e.downcast_ref::<tokio_postgres::Error>()
        .and_then(|e| e.code())
        == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE)
}

async fn rename(client: &mut Client, target: &str, name: &str) -> Result<String> {
    let (target, name) = (Table::new(target), Table::new(name));
    let tx = client.transaction().await?;
    // Waiting readers queue behind the rename: keep the wait short.
    tx.batch_execute("SET LOCAL lock_timeout = '2s'").await?;
    let schema: String = match name.name.split_once('.') {
        Some((s, _)) => s.to_string(),
        None => tx.query_one("SELECT current_schema()", &[]).await?.get(0),
    };
    let kind: Option<String> = tx
        .query_opt(
            "SELECT c.relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = $1 AND c.relname = $2",
            &[&schema, &name.bare],
        )
        .await?
        .map(|r| r.get(0));
    let mut kept = None;
    if let Some(k) = kind {
        if k != "r" && k != "p" {
            // Not ours to drop (a view or anything else): change nothing.
            tx.rollback().await?;
            return Err(anyhow!(
                "{} exists and is not a table (relkind {k}); rename or drop it, then run again",
                name.name
            ));
        }
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let suffix = format!("_before_{stamp}");
        let mut old = name.bare.clone();
        old.truncate(63 - suffix.len());
        old.push_str(&suffix);
        rename_with_indexes(&tx, &schema, &name.bare, &old).await?;
        kept = Some(old);
    }
    rename_with_indexes(&tx, &schema, &target.bare, &name.bare).await?;
    // Lets a rerun of the same command see that this target is already the
    // data under NAME, instead of embedding everything into a new table;
    // the rest of the comment (the embedding-space record) goes along.
    let renamed = Table::new(&format!("{schema}.{}", name.bare));
    let comment: Option<String> = tx
        .query_one(
            "SELECT obj_description(to_regclass($1), 'pg_class')",
            &[&renamed.quoted],
        )
        .await?
        .get(0);
    let mut object = super::space::comment_object(comment.as_deref());
    object.insert(
        super::space::SWITCHED_FROM_KEY.to_string(),
        serde_json::Value::String(target.bare.clone()),
    );
    tx.batch_execute(&super::space::comment_sql(&renamed, &object))
        .await?;
    tx.commit().await?;
    Ok(match kept {
        Some(old) => format!(
            "table {} is now the re-embedded data (was {}); the previous table is kept as {schema}.{old}",
            name.name, target.name
        ),
        None => format!(
            "table {} is now the re-embedded data (was {})",
            name.name, target.name
        ),
    })
}

/// Renames a table and the indexes named after it (`from_...` -> `to_...`).
async fn rename_with_indexes(
    tx: &tokio_postgres::Transaction<'_>,
    schema: &str,
    from: &str,
    to: &str,
) -> Result<(), tokio_postgres::Error> {
    let q = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let indexes = tx
        .query(
            "SELECT i.relname::text FROM pg_index x
               JOIN pg_class t ON t.oid = x.indrelid
               JOIN pg_namespace n ON n.oid = t.relnamespace
               JOIN pg_class i ON i.oid = x.indexrelid
              WHERE n.nspname = $1 AND t.relname = $2",
            &[&schema, &from],
        )
        .await?;
    tx.batch_execute(&format!(
        "ALTER TABLE {}.{} RENAME TO {}",
        q(schema),
        q(from),
        q(to)
    ))
    .await?;
    // LightRAG looks its indexes up by name (`idx_<table>_<kind>`, the table
    // md5-shortened past 63 bytes): left under the old name it would build
    // a second HNSW index on the switched table.
    let lightrag_prefixes = crate::layout::pg_index_prefixes(from);
    for row in indexes {
        let index: String = row.get(0);
        let renamed = if let Some(rest) = index.strip_prefix(from) {
            let mut new = format!("{to}{rest}");
            new.truncate(63);
            Some(new)
        } else {
            lightrag_prefixes
                .iter()
                .find_map(|p| index.strip_prefix(p.as_str()))
                .map(|suffix| crate::layout::pg_index_name(to, suffix))
        };
        if let Some(new) = renamed {
            tx.batch_execute(&format!(
                "ALTER INDEX {}.{} RENAME TO {}",
                q(schema),
                q(&index),
                q(&new)
            ))
            .await?;
        }
    }
    Ok(())
}
