//! The embedding-space record of a PostgreSQL table: the table's comment,
//! a JSON object LightRAG's readers never look at. A comment goes where
//! the table goes (the switch renames tables), and is written in the same
//! transaction as the table's creation. A comment vecload did not write is
//! kept in the object under `comment`.

use anyhow::{Result, anyhow};
use serde_json::{Map, Value};
use tokio_postgres::GenericClient;

use super::schema::{Table, db_message};
use crate::layout::Layout;
use crate::space::{LIGHTRAG_DIM_KEY, LIGHTRAG_MODEL_KEY, RECORD_KEY, Recorded, Space};

/// Whom `switch` renamed into this table (`vecload_switched_from`).
pub const SWITCHED_FROM_KEY: &str = "vecload_switched_from";

/// The table's comment as an object (a foreign comment kept under `comment`).
pub fn comment_object(comment: Option<&str>) -> Map<String, Value> {
    match comment.map(str::trim).filter(|c| !c.is_empty()) {
        None => Map::new(),
        Some(c) => match serde_json::from_str::<Value>(c) {
            Ok(Value::Object(o)) => o,
            _ => Map::from_iter([("comment".to_string(), Value::String(c.to_string()))]),
        },
    }
}

/// What a comment records of the table's space.
pub fn recorded(comment: Option<&str>, table: &str) -> Recorded {
    match comment_object(comment).get(RECORD_KEY) {
        None => Recorded::Unrecorded,
        Some(v) => Space::from_json(&v.to_string(), &format!("table {table} (its comment)")),
    }
}

/// `object` with `space` put in (and LightRAG's keys, for its layout).
pub fn with_space(
    mut object: Map<String, Value>,
    space: &Space,
    layout: Layout,
) -> Map<String, Value> {
    object.insert(
        RECORD_KEY.to_string(),
        serde_json::to_value(space).unwrap_or(Value::Null),
    );
    if layout.is_lightrag() {
        object.insert(
            LIGHTRAG_MODEL_KEY.to_string(),
            Value::String(space.model.clone()),
        );
        object.insert(LIGHTRAG_DIM_KEY.to_string(), Value::from(space.dim));
    }
    object
}

/// `COMMENT ON TABLE` setting `object`.
pub fn comment_sql(table: &Table, object: &Map<String, Value>) -> String {
    format!(
        "COMMENT ON TABLE {} IS '{}'",
        table.quoted,
        Value::Object(object.clone())
            .to_string()
            .replace('\'', "''")
    )
}

/// The table's comment (None: no comment; Err: no such table is not an
/// error, see `read`).
async fn comment(client: &impl GenericClient, table: &Table) -> Result<Option<Option<String>>> {
    let row = client
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL, obj_description(to_regclass($1), 'pg_class')",
            &[&table.quoted],
        )
        .await
        .map_err(|e| {
            anyhow!(
                "reading the comment of table {}: {}",
                table.name,
                db_message(&e)
            )
        })?;
    let exists: bool = row.get(0);
    Ok(exists.then(|| row.get(1)))
}

/// What table `table` records of its space.
pub async fn read(client: &impl GenericClient, table: &Table) -> Result<Recorded> {
    Ok(match comment(client, table).await? {
        None => Recorded::NoTarget,
        Some(c) => recorded(c.as_deref(), &table.name),
    })
}

/// Records `space` in the table's comment, keeping the rest of it.
pub async fn write(
    client: &mut tokio_postgres::Client,
    table: &Table,
    space: &Space,
    layout: Layout,
) -> Result<()> {
    let fail = |e: tokio_postgres::Error| {
        anyhow!(
            "recording the embedding space of {}: {}",
            table.name,
            db_message(&e)
        )
    };
    let tx = client.transaction().await.map_err(fail)?;
    // The row lock on the table's pg_class entry: two writers of the
    // comment do not lose each other's keys.
    tx.batch_execute(&format!(
        "LOCK TABLE {} IN SHARE UPDATE EXCLUSIVE MODE",
        table.quoted
    ))
    .await
    .map_err(fail)?;
    let now = comment(&tx, table).await?.flatten();
    let object = with_space(comment_object(now.as_deref()), space, layout);
    tx.batch_execute(&comment_sql(table, &object))
        .await
        .map_err(fail)?;
    tx.commit().await.map_err(fail)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_comments_are_kept_and_records_read_back() {
        let o = comment_object(Some("made by hand"));
        assert_eq!(o["comment"], "made by hand");
        assert_eq!(recorded(Some("made by hand"), "t"), Recorded::Unrecorded);
        assert_eq!(recorded(None, "t"), Recorded::Unrecorded);
        let space = Space {
            binding: "openai".into(),
            model: "m".into(),
            dim: 3,
            distance: "cosine".into(),
            options: Default::default(),
            unit_length: Some(true),
            recorded_by: "vecload".into(),
            recorded_at: "now".into(),
            how: "created".into(),
        };
        let o = with_space(
            o,
            &space,
            Layout::Lightrag(crate::layout::Namespace::Chunks),
        );
        let text = Value::Object(o.clone()).to_string();
        assert_eq!(recorded(Some(&text), "t"), Recorded::Space(space));
        assert_eq!(o[LIGHTRAG_MODEL_KEY], "m");
        assert_eq!(o[LIGHTRAG_DIM_KEY], 3);
        assert_eq!(o["comment"], "made by hand");
        let sql = comment_sql(
            &Table::new("a.b"),
            &Map::from_iter([("k".into(), Value::String("it's".into()))]),
        );
        assert_eq!(sql, r#"COMMENT ON TABLE "a"."b" IS '{"k":"it''s"}'"#);
    }
}
