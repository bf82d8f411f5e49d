//! `--layout lightrag`: what vecload writes is exactly what the RAG API
//! (LightRAG 1.5.7) reads. Checked three ways: against the chunk store
//! LightRAG's own code made (fixtures/lightrag, made by make_fixture.py with
//! lightrag-hku), against LightRAG's naming and id rules worked out here
//! independently, and by LightRAG's own storage classes reading the result
//! (scripts/lightrag_reads.py, when VECLOAD_LIGHTRAG_PYTHON is set).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use crate::common::qdrant::qdrant;
use crate::common::*;
use embedding_test_server::vector_for;

const DIM: usize = 24;
const WORKSPACE: &str = "acme";
/// create_time the fixture's records carry.
const CREATED: i64 = 1_764_000_000;

fn fixture_path() -> PathBuf {
    fixtures().join("../lightrag/acme/kv_store_text_chunks.json")
}

/// The four documents the fixture was made from.
fn fixture_docs() -> Vec<PathBuf> {
    [
        "guides/tenancy.markdown",
        "guides/reindex-runbook.md",
        "zh/向量检索简介.txt",
        "../lightrag/docs/release-notes.md",
    ]
    .iter()
    .map(|p| fixtures().join(p))
    .collect()
}

fn fixture() -> serde_json::Map<String, serde_json::Value> {
    serde_json::from_str(&std::fs::read_to_string(fixture_path()).expect("fixture"))
        .expect("fixture is JSON")
}

/// LightRAG's suffix for a model name (re.sub(r"[^a-zA-Z0-9_]", "_", ...)).
fn suffix(model: &str) -> String {
    let safe: String = model
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{safe}_{DIM}d")
}

/// LightRAG's `_safe_index_name`: `idx_{table}_{suffix}`, or with the
/// table's md5 prefix in its place when that passes 63 bytes.
fn safe_index_name(table: &str, suffix: &str) -> String {
    use md5::{Digest, Md5};
    let full = format!("idx_{}_{suffix}", table.to_lowercase());
    if full.len() <= 63 {
        return full;
    }
    let h = hex::encode(Md5::digest(table.to_lowercase().as_bytes()));
    format!("idx_{}_{suffix}", &h[..12])
}

fn assert_vector_of(vector: &[f32], text: &str, what: &str) {
    let want = vector_for(text, DIM);
    assert_eq!(vector.len(), DIM, "{what}");
    let off = vector
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(off < 1e-5, "{what}: the vector is not its text's");
}

fn vecload_cmd(command: &str, server: &EmbedServer, model: &str) -> Command {
    let mut c = vecload();
    c.arg(command)
        .args(["--embed-url", &server.url, "--embed-model", model])
        .args(["--embed-dim", &DIM.to_string(), "--layout", "lightrag"])
        .args(["--tenant", WORKSPACE, "--progress", "log"]);
    c
}

/// LightRAG's own storage class reads every chunk back by its id and finds
/// it as the nearest to its own text.
fn lightrag_reads(storage: &str, model: &str, server: &EmbedServer, env: &[(&str, String)]) {
    let Some(python) = lightrag_python(&format!("lightrag_reads {storage}")) else {
        return;
    };
    let out = Command::new(python)
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/lightrag_reads.py"))
        .args([
            "--storage",
            storage,
            "--workspace",
            WORKSPACE,
            "--model",
            model,
        ])
        .args([
            "--dim",
            &DIM.to_string(),
            "--embed-url",
            &server.url,
            "--chunks",
        ])
        .arg(fixture_path())
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("run scripts/lightrag_reads.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "LightRAG could not read it:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout.lines().last().expect("a result line");
    let r: serde_json::Value = serde_json::from_str(line).expect("JSON result");
    let n = fixture().len() as u64;
    assert_eq!(r["checked"], n);
    assert_eq!(r["found"], n, "LightRAG finds every chunk by its id");
    assert_eq!(
        r["nearest_is_itself"], n,
        "LightRAG's query finds each chunk"
    );
}

fn pg_env(pg: &str) -> Vec<(&'static str, String)> {
    lightrag_pg_env(pg)
}

/// Rows of a LightRAG chunks table keyed by id: (workspace, full_doc_id,
/// chunk_order_index, tokens, content, file_path, create_time), vector.
type ChunkRow = ((String, String, i32, i32, String, String, i64), Vec<f32>);

fn pg_chunks(db: &Db, table: &str) -> BTreeMap<String, ChunkRow> {
    db.query(
        &format!(
            "SELECT id, workspace, full_doc_id, chunk_order_index, tokens, content, file_path,
                    extract(epoch from create_time)::bigint, content_vector::real[] FROM {table}"
        ),
        &[],
    )
    .iter()
    .map(|r| {
        (
            r.get(0),
            (
                (
                    r.get(1),
                    r.get(2),
                    r.get(3),
                    r.get(4),
                    r.get(5),
                    r.get(6),
                    r.get(7),
                ),
                r.get(8),
            ),
        )
    })
    .collect()
}

/// Every stored chunk is the fixture's record, under its id, with the
/// vector of its text.
fn assert_chunks_are_the_fixture(rows: &BTreeMap<String, ChunkRow>, created: Option<i64>) {
    let want = fixture();
    assert_eq!(
        rows.keys().collect::<Vec<_>>(),
        want.keys()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>(),
        "the same chunk ids as LightRAG's"
    );
    for (id, (got, vector)) in rows {
        let w = &want[id];
        assert_eq!(got.0, WORKSPACE);
        assert_eq!(got.1, w["full_doc_id"].as_str().expect("doc id"), "{id}");
        assert_eq!(
            i64::from(got.2),
            w["chunk_order_index"].as_i64().expect("order"),
            "{id}"
        );
        assert_eq!(
            i64::from(got.3),
            w["tokens"].as_i64().expect("tokens"),
            "{id}"
        );
        assert_eq!(got.4, w["content"].as_str().expect("content"), "{id}: text");
        assert_eq!(got.5, w["file_path"].as_str().expect("path"), "{id}");
        if let Some(c) = created {
            assert_eq!(got.6, c, "{id}: create_time carried over");
        }
        assert_vector_of(vector, &got.4, id);
    }
}

#[test]
fn load_with_lightrag_layout_chunks_and_names_as_lightrag_does() {
    let Some(pg) = pg_url("load_with_lightrag_layout_chunks_and_names_as_lightrag_does") else {
        return;
    };
    let server = EmbedServer::start(&["--dim", &DIM.to_string()]);
    let model = unique_table("Model-A");
    let out = run(vecload_cmd("load", &server, &model)
        .args(fixture_docs())
        .args(["--pg-url", &pg, "--no-state"])
        .args(["--chunk-tokens", "200", "--chunk-overlap", "20"]));
    assert_eq!(out.code, 0);
    let table = format!("lightrag_vdb_chunks_{}", suffix(&model));
    let db = Db::connect(&pg);
    assert!(db.table_exists(&table), "LightRAG's table name {table}");
    assert_chunks_are_the_fixture(&pg_chunks(&db, &table), None);

    // LightRAG's index names and settings, so it finds them and builds no other.
    let indexes: BTreeMap<String, String> = db
        .query(
            "SELECT indexname::text, indexdef FROM pg_indexes WHERE tablename = $1",
            &[&table],
        )
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let hnsw = &indexes[&safe_index_name(&table, "hnsw_cosine")];
    assert!(
        hnsw.contains("hnsw (content_vector vector_cosine_ops)"),
        "{hnsw}"
    );
    assert!(
        hnsw.contains("m='16'") && hnsw.contains("ef_construction='64'"),
        "{hnsw}"
    );
    assert!(indexes.contains_key(&safe_index_name(&table, "id")));
    assert!(indexes.contains_key(&safe_index_name(&table, "workspace_id")));

    lightrag_reads("pgvector", &model, &server, &pg_env(&pg));
}

#[test]
fn lightrag_chunk_store_reembeds_into_qdrant_as_lightrag_writes_it() {
    let Some(q) = qdrant("lightrag_chunk_store_reembeds_into_qdrant_as_lightrag_writes_it") else {
        return;
    };
    let server = EmbedServer::start(&["--dim", &DIM.to_string()]);
    let model = unique_table("model-b");
    let from = format!("lightrag:{}", fixture_path().display());
    let out = run(vecload_cmd("reembed", &server, &model)
        .args(["--from", &from])
        .args(q.args()));
    assert_eq!(out.code, 0);
    let collection = format!("lightrag_vdb_chunks_{}", suffix(&model));
    let client = q.client();
    assert!(
        client.exists(&collection),
        "LightRAG's collection name {collection}"
    );

    // LightRAG's collection settings: cosine, one HNSW graph per workspace.
    let info = client.info(&collection);
    let cfg = info.config.as_ref().expect("config");
    let hnsw = cfg.hnsw_config.as_ref().expect("hnsw");
    assert_eq!((hnsw.m, hnsw.payload_m), (Some(0), Some(16)));
    let ws = &info.payload_schema["workspace_id"];
    assert_eq!(
        ws.data_type,
        qdrant_client::qdrant::PayloadSchemaType::Keyword as i32
    );

    // Point ids, payload fields and values as LightRAG's upsert makes them.
    let want = fixture();
    let points = client.raw_points(&collection);
    assert_eq!(points.len(), want.len());
    for (key, rec) in &want {
        let (payload, vector) = points
            .get(&lightrag_point_id(WORKSPACE, key))
            .unwrap_or_else(|| panic!("{key}: not under LightRAG's point id"));
        let fields: BTreeSet<&str> = payload.keys().map(String::as_str).collect();
        assert_eq!(
            fields,
            BTreeSet::from([
                "id",
                "workspace_id",
                "created_at",
                "full_doc_id",
                "content",
                "file_path"
            ])
        );
        assert_eq!(payload["id"], serde_json::json!(key));
        assert_eq!(payload["workspace_id"], serde_json::json!(WORKSPACE));
        assert_eq!(payload["created_at"], serde_json::json!(CREATED));
        for f in ["full_doc_id", "content", "file_path"] {
            assert_eq!(payload[f], rec[f], "{key}: {f}");
        }
        assert_vector_of(vector, rec["content"].as_str().expect("content"), key);
    }

    // Run again: the target holds every chunk with the same text already.
    let report = std::env::temp_dir().join(format!("{collection}.json"));
    let again = run(vecload_cmd("reembed", &server, &model)
        .args(["--from", &from])
        .args(q.args())
        .arg("--report")
        .arg(&report));
    assert_eq!(again.code, 0);
    assert_eq!(read_report(&report)["already_in_target"], want.len() as u64);

    lightrag_reads(
        "qdrant",
        &model,
        &server,
        &[("QDRANT_URL", q.rest_url.clone())],
    );
}

#[test]
fn lightrag_pg_chunk_store_reembeds_into_pgvector() {
    let Some(pg) = pg_url("lightrag_pg_chunk_store_reembeds_into_pgvector") else {
        return;
    };
    let server = EmbedServer::start(&["--dim", &DIM.to_string()]);
    let db = Db::connect(&pg);
    // LightRAG's LIGHTRAG_DOC_CHUNKS (its DDL), holding the fixture's chunks.
    let store = unique_table("lightrag_doc_chunks");
    db.execute(&format!(
        "CREATE TABLE {store} (id VARCHAR(255), workspace VARCHAR(255), full_doc_id VARCHAR(256),
           chunk_order_index INTEGER, tokens INTEGER, content TEXT, file_path TEXT NULL,
           llm_cache_list JSONB NULL DEFAULT '[]'::jsonb,
           create_time TIMESTAMP(0) DEFAULT CURRENT_TIMESTAMP,
           update_time TIMESTAMP(0) DEFAULT CURRENT_TIMESTAMP,
           CONSTRAINT {store}_PK PRIMARY KEY (workspace, id))"
    ));
    for (key, r) in fixture() {
        db.query(
            &format!(
                "INSERT INTO {store} (id, workspace, full_doc_id, chunk_order_index, tokens, content,
                   file_path, create_time) VALUES ($1, $2, $3, $4, $5, $6, $7, to_timestamp($8)::timestamp)"
            ),
            &[
                &key,
                &WORKSPACE,
                &r["full_doc_id"].as_str(),
                &(r["chunk_order_index"].as_i64().unwrap_or(0) as i32),
                &(r["tokens"].as_i64().unwrap_or(0) as i32),
                &r["content"].as_str(),
                &r["file_path"].as_str(),
                &(CREATED as f64),
            ],
        );
    }
    let model = unique_table("model-c");
    let out = run(vecload_cmd("reembed", &server, &model)
        .args(["--from", &format!("lightrag-pg:{store}")])
        .args(["--pg-url", &pg]));
    assert_eq!(out.code, 0);
    let table = format!("lightrag_vdb_chunks_{}", suffix(&model));
    assert_chunks_are_the_fixture(&pg_chunks(&db, &table), Some(CREATED));
    lightrag_reads("pgvector", &model, &server, &pg_env(&pg));
}

/// LightRAG's entity and relationship vectors at an old dimension, in its
/// own tables, re-embedded into Qdrant and into PostgreSQL with the new
/// model's names; every field LightRAG reads comes along.
#[test]
fn lightrag_entities_and_relations_change_model_across_stores() {
    let Some(pg) = pg_url("lightrag_entities_and_relations_change_model_across_stores") else {
        return;
    };
    let Some(q) = qdrant("lightrag_entities_and_relations_change_model_across_stores") else {
        return;
    };
    let server = EmbedServer::start(&["--dim", &DIM.to_string()]);
    let db = Db::connect(&pg);
    let old = unique_table("old");
    let (ent, rel) = (
        format!("lightrag_vdb_entity_{old}_16d"),
        format!("lightrag_vdb_relation_{old}_16d"),
    );
    let v16 = |t: &str| {
        format!(
            "'[{}]'",
            vector_for(t, 16)
                .iter()
                .map(f32::to_string)
                .collect::<Vec<_>>()
                .join(",")
        )
    };
    db.execute(&format!(
        "CREATE TABLE {ent} (id VARCHAR(255), workspace VARCHAR(255), entity_name VARCHAR(512),
           content TEXT, content_vector VECTOR(16), create_time TIMESTAMP(0) DEFAULT CURRENT_TIMESTAMP,
           update_time TIMESTAMP(0) DEFAULT CURRENT_TIMESTAMP, chunk_ids VARCHAR(255)[] NULL,
           file_path TEXT NULL, PRIMARY KEY (workspace, id));
         CREATE TABLE {rel} (id VARCHAR(255), workspace VARCHAR(255), source_id VARCHAR(512),
           target_id VARCHAR(512), content TEXT, content_vector VECTOR(16),
           create_time TIMESTAMP(0) DEFAULT CURRENT_TIMESTAMP, update_time TIMESTAMP(0) DEFAULT CURRENT_TIMESTAMP,
           chunk_ids VARCHAR(255)[] NULL, file_path TEXT NULL, PRIMARY KEY (workspace, id));"
    ));
    let entities = [
        (
            "ent-1",
            "Qdrant",
            "Qdrant\nA vector database.",
            "chunk-a<SEP>chunk-b",
        ),
        (
            "ent-2",
            "PostgreSQL",
            "PostgreSQL\nA relational database.",
            "chunk-b",
        ),
        (
            "ent-3",
            "向量检索",
            "向量检索\n按向量相似度检索。",
            "chunk-c",
        ),
    ];
    for (id, name, content, chunks) in entities {
        db.execute(&format!(
            "INSERT INTO {ent} (id, workspace, entity_name, content, content_vector, chunk_ids, file_path)
             VALUES ('{id}', '{WORKSPACE}', '{name}', '{content}', {}, string_to_array('{chunks}', '<SEP>'), 'a.md')",
            v16(content)
        ));
    }
    let relations = [
        (
            "rel-1",
            "Qdrant",
            "PostgreSQL",
            "store, vectors\tQdrant\nPostgreSQL\nBoth store vectors.",
            "chunk-a",
        ),
        (
            "rel-2",
            "PostgreSQL",
            "向量检索",
            "search\tPostgreSQL\n向量检索\npgvector searches.",
            "chunk-b<SEP>chunk-c",
        ),
    ];
    for (id, src, tgt, content, chunks) in relations {
        db.execute(&format!(
            "INSERT INTO {rel} (id, workspace, source_id, target_id, content, content_vector, chunk_ids, file_path)
             VALUES ('{id}', '{WORKSPACE}', '{src}', '{tgt}', '{content}', {}, string_to_array('{chunks}', '<SEP>'), 'a.md')",
            v16(content)
        ));
    }
    let model = unique_table("model-d");
    for from in [&ent, &rel] {
        for target in [q.args(), vec!["--pg-url".into(), pg.clone()]] {
            let out = run(vecload_cmd("reembed", &server, &model)
                .args(["--from", &format!("pgvector:{from}")])
                .args(["--pg-url", &pg])
                .args(target));
            assert_eq!(out.code, 0);
        }
    }
    let s = suffix(&model);

    // Qdrant: LightRAG's collection names, point ids and payload fields.
    let client = q.client();
    let ents = client.raw_points(&format!("lightrag_vdb_entities_{s}"));
    assert_eq!(ents.len(), entities.len());
    for (id, name, content, chunks) in entities {
        let (p, v) = &ents[&lightrag_point_id(WORKSPACE, id)];
        let fields: BTreeSet<&str> = p.keys().map(String::as_str).collect();
        assert_eq!(
            fields,
            BTreeSet::from([
                "id",
                "workspace_id",
                "created_at",
                "entity_name",
                "source_id",
                "content",
                "file_path"
            ])
        );
        assert_eq!(p["entity_name"], serde_json::json!(name));
        assert_eq!(p["source_id"], serde_json::json!(chunks));
        assert_vector_of(v, content, id);
    }
    let rels = client.raw_points(&format!("lightrag_vdb_relationships_{s}"));
    assert_eq!(rels.len(), relations.len());
    for (id, src, tgt, content, chunks) in relations {
        let (p, v) = &rels[&lightrag_point_id(WORKSPACE, id)];
        assert_eq!(
            (&p["src_id"], &p["tgt_id"], &p["source_id"]),
            (
                &serde_json::json!(src),
                &serde_json::json!(tgt),
                &serde_json::json!(chunks)
            )
        );
        assert_vector_of(v, content, id);
    }

    // PostgreSQL: LightRAG's tables with the same fields, chunk_ids as arrays.
    let got: Vec<(String, String, Vec<String>, Vec<f32>)> = db
        .query(
            &format!(
                "SELECT id::text, entity_name::text, chunk_ids::text[], content_vector::real[]
                   FROM lightrag_vdb_entity_{s} ORDER BY id"
            ),
            &[],
        )
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(got.len(), entities.len());
    for ((id, name, chunks, v), (wid, wname, content, wchunks)) in got.iter().zip(entities) {
        assert_eq!((id.as_str(), name.as_str()), (wid, wname));
        assert_eq!(chunks.join("<SEP>"), wchunks);
        assert_vector_of(v, content, id);
    }
    let got: Vec<(String, String, String)> = db
        .query(
            &format!(
                "SELECT id::text, source_id::text, target_id::text FROM lightrag_vdb_relation_{s} ORDER BY id"
            ),
            &[],
        )
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let want: Vec<(String, String, String)> = relations
        .iter()
        .map(|r| (r.0.to_string(), r.1.to_string(), r.2.to_string()))
        .collect();
    assert_eq!(got, want);
    // The same 16-d stores copied as they are into Qdrant (no endpoint
    // needed): LightRAG's names for them, its point ids and fields, and the
    // vectors as Qdrant keeps cosine vectors (unit length).
    let unit = |t: &str| {
        let v = vector_for(t, 16);
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect::<Vec<f32>>()
    };
    for from in [&ent, &rel] {
        let mut c = vecload();
        c.args(["copy", "--from", &format!("pgvector:{from}")])
            .args(["--layout", "lightrag", "--pg-url", &pg, "--progress", "log"])
            .args(q.args());
        assert_eq!(run(&mut c).code, 0);
    }
    let old_suffix = format!("{old}_16d");
    let ents = client.raw_points(&format!("lightrag_vdb_entities_{old_suffix}"));
    assert_eq!(ents.len(), entities.len());
    for (id, name, content, chunks) in entities {
        let (p, v) = &ents[&lightrag_point_id(WORKSPACE, id)];
        assert_eq!(p["entity_name"], serde_json::json!(name));
        assert_eq!(p["source_id"], serde_json::json!(chunks));
        assert_eq!(p["content"], serde_json::json!(content));
        let want = unit(content);
        assert!(
            v.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-6),
            "{id}"
        );
    }
    let rels = client.raw_points(&format!("lightrag_vdb_relationships_{old_suffix}"));
    assert_eq!(rels.len(), relations.len());
    for (id, src, tgt, content, _) in relations {
        let (p, v) = &rels[&lightrag_point_id(WORKSPACE, id)];
        assert_eq!(
            (&p["src_id"], &p["tgt_id"]),
            (&serde_json::json!(src), &serde_json::json!(tgt))
        );
        let want = unit(content);
        assert!(
            v.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-6),
            "{id}"
        );
    }

    // The sources are untouched: still 16 dimensions.
    let dims: i32 = db.query(
        &format!("SELECT max(vector_dims(content_vector)) FROM {ent}"),
        &[],
    )[0]
    .get(0);
    assert_eq!(dims, 16);
}

/// LightRAG's Redis chunk store (the RAG API runs it on ElastiCache), in a
/// real redis-server with a password: only this workspace's text_chunks
/// keys are read, and the password never shows.
#[test]
fn lightrag_redis_chunk_store_reembeds_into_pgvector() {
    let Some(pg) = pg_url("lightrag_redis_chunk_store_reembeds_into_pgvector") else {
        return;
    };
    let Some(redis) = RedisServer::start("lightrag_redis_chunk_store_reembeds_into_pgvector")
    else {
        return;
    };
    let server = EmbedServer::start(&["--dim", &DIM.to_string()]);
    for (key, rec) in fixture() {
        redis.set(&format!("{WORKSPACE}_text_chunks:{key}"), &rec.to_string());
    }
    // Another workspace, and another namespace of this one: never read.
    let stray =
        serde_json::json!({"content": "not mine", "full_doc_id": "doc-x", "chunk_order_index": 0});
    redis.set("other_text_chunks:doc-x-chunk-000", &stray.to_string());
    redis.set(&format!("{WORKSPACE}_full_docs:doc-x"), &stray.to_string());

    let model = unique_table("model-e");
    // On the command line: the printed switch command must not repeat it.
    let out = run(vecload_cmd("reembed", &server, &model)
        .args(["--from", "lightrag-redis:", "--pg-url", &pg])
        .args(["--from-redis-url", &redis.url]));
    assert_eq!(out.code, 0);
    assert!(out.stdout.contains("--switch NAME"));
    assert!(!out.all_output().contains(REDIS_PASSWORD));
    let db = Db::connect(&pg);
    let table = format!("lightrag_vdb_chunks_{}", suffix(&model));
    assert_chunks_are_the_fixture(&pg_chunks(&db, &table), Some(CREATED));

    // A wrong password: refused before anything is sent, and not shown.
    let wrong = redis.url.replace(REDIS_PASSWORD, "wrong-secret-pw");
    let out = run(vecload_cmd("reembed", &server, &unique_table("model-f"))
        .args(["--from", "lightrag-redis:", "--pg-url", &pg])
        .env("REDIS_URI", &wrong));
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("Redis"), "{}", out.stderr);
    assert!(!out.all_output().contains("wrong-secret-pw"));
    assert_eq!(server.requests(), 1, "only the first run's request");
}

/// LightRAG's ids repeat across workspaces (same file, same ids): two
/// tenants loading the same documents through one state file each get
/// every row, and a rerun of either embeds nothing.
#[test]
fn lightrag_layout_tenants_with_the_same_files_share_nothing() {
    let Some(pg) = pg_url("lightrag_layout_tenants_with_the_same_files_share_nothing") else {
        return;
    };
    let server = EmbedServer::start(&["--dim", &DIM.to_string()]);
    let model = unique_table("model-g");
    let table = unique_table("lr_two");
    let state = state_path(&table);
    let load = |tenant: &str| {
        let mut c = vecload();
        c.arg("load")
            .args(fixture_docs())
            .args(["--embed-url", &server.url, "--embed-model", &model])
            .args(["--embed-dim", &DIM.to_string(), "--layout", "lightrag"])
            .args(["--tenant", tenant, "--pg-url", &pg, "--table", &table])
            .args(["--chunk-tokens", "200", "--chunk-overlap", "20", "--state"])
            .arg(&state);
        run(&mut c)
    };
    let n = fixture().len() as i64;
    assert_eq!(load("t1").code, 0);
    assert_eq!(load("t2").code, 0);
    let db = Db::connect(&pg);
    for t in ["t1", "t2"] {
        let rows: i64 = db.query(
            &format!("SELECT count(*) FROM {table} WHERE workspace = $1"),
            &[&t],
        )[0]
        .get(0);
        assert_eq!(rows, n, "tenant {t} has every chunk");
    }
    assert_eq!(server.stats()["inputs"], 2 * n as u64);
    assert_eq!(load("t1").code, 0);
    assert_eq!(
        server.stats()["inputs"],
        2 * n as u64,
        "a rerun embeds nothing"
    );
}

/// A switch in PostgreSQL renames LightRAG's indexes with the tables, so
/// LightRAG finds them under the name it reads and builds no second one.
/// The RAG API's .env index settings: vecload builds exactly the index
/// LightRAG 1.5.7 would (name and WITH clause), and LightRAG, started with
/// the same .env, finds it and builds no second one.
#[test]
fn lightrag_index_settings_from_the_env_make_lightrags_own_index() {
    let Some(pg) = pg_url("lightrag_index_settings_from_the_env") else {
        return;
    };
    let server = EmbedServer::start(&["--dim", &DIM.to_string()]);
    let model = unique_table("Model-Ix");
    let settings = [("POSTGRES_HNSW_M", "32"), ("POSTGRES_HNSW_EF", "128")];
    let out = run(vecload_cmd("load", &server, &model)
        .args(fixture_docs())
        .args(["--pg-url", &pg, "--no-state"])
        .args(["--chunk-tokens", "200", "--chunk-overlap", "20"])
        .envs(settings));
    assert_eq!(out.code, 0);
    let table = format!("lightrag_vdb_chunks_{}", suffix(&model));
    let db = Db::connect(&pg);
    let vector_indexes = || -> BTreeMap<String, String> {
        db.query(
            "SELECT indexname::text, indexdef FROM pg_indexes WHERE tablename = $1
               AND indexdef LIKE '%USING hnsw%'",
            &[&table],
        )
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
    };
    let before = vector_indexes();
    assert_eq!(before.len(), 1, "{before:?}");
    let hnsw = &before[&safe_index_name(&table, "hnsw_cosine")];
    assert!(
        hnsw.contains("m='32'") && hnsw.contains("ef_construction='128'"),
        "{hnsw}"
    );
    let mut env = pg_env(&pg);
    env.extend(settings.map(|(k, v)| (k, v.to_string())));
    lightrag_reads("pgvector", &model, &server, &env);
    assert_eq!(vector_indexes(), before, "LightRAG built no second index");
}

#[test]
fn lightrag_switch_in_postgres_keeps_lightrags_index_names() {
    let Some(pg) = pg_url("lightrag_switch_in_postgres_keeps_lightrags_index_names") else {
        return;
    };
    let server = EmbedServer::start(&["--dim", &DIM.to_string()]);
    let (live, new) = (unique_table("lr_live"), unique_table("lr_new"));
    let out = run(vecload_cmd("load", &server, &unique_table("model-h"))
        .args(fixture_docs())
        .args(["--pg-url", &pg, "--no-state", "--table", &live])
        .args(["--chunk-tokens", "200", "--chunk-overlap", "20"]));
    assert_eq!(out.code, 0);
    // Every tenant moves at once: no --tenant.
    let out = run(vecload()
        .args([
            "reembed",
            "--from",
            &format!("pgvector:{live}"),
            "--pg-url",
            &pg,
        ])
        .args([
            "--embed-url",
            &server.url,
            "--embed-model",
            &unique_table("model-i"),
        ])
        .args(["--embed-dim", &DIM.to_string(), "--layout", "lightrag"])
        .args(["--table", &new, "--switch", &live]));
    assert_eq!(out.code, 0);
    let db = Db::connect(&pg);
    let indexes = |table: &str| -> BTreeSet<String> {
        db.query(
            "SELECT indexname::text FROM pg_indexes WHERE tablename = $1",
            &[&table],
        )
        .iter()
        .map(|r| r.get(0))
        .collect()
    };
    let now = indexes(&live);
    for kind in ["hnsw_cosine", "id", "workspace_id"] {
        assert!(
            now.contains(&safe_index_name(&live, kind)),
            "{kind}: {now:?}"
        );
    }
    let kept: String = db.query(
        "SELECT relname::text FROM pg_class WHERE relname LIKE $1 AND relkind = 'r'",
        &[&format!("{live}_before_%")],
    )[0]
    .get(0);
    assert!(indexes(&kept).contains(&safe_index_name(&kept, "hnsw_cosine")));
    assert_chunks_are_the_fixture(&pg_chunks(&db, &live), None);
}

/// The RAG API moves from PGVectorStorage to QdrantVectorDBStorage without
/// paying for a vector again: `copy` carries LightRAG's chunks with their
/// vectors (the endpoint sees no request), names the collection after the
/// model found in the table's name, and LightRAG's own class reads it. Then
/// one workspace is copied into another: the new workspace's point ids are
/// the ones LightRAG derives for it, and the first is untouched.
#[test]
fn lightrag_chunks_copy_from_pgvector_to_qdrant_and_into_another_workspace() {
    let test = "lightrag_chunks_copy_from_pgvector_to_qdrant_and_into_another_workspace";
    let Some(pg) = pg_url(test) else { return };
    let Some(q) = qdrant(test) else { return };
    let server = EmbedServer::start(&["--dim", &DIM.to_string()]);
    let model = unique_table("Model-C");
    let out = run(vecload_cmd("load", &server, &model)
        .args(fixture_docs())
        .args(["--pg-url", &pg, "--no-state"])
        .args(["--chunk-tokens", "200", "--chunk-overlap", "20"]));
    assert_eq!(out.code, 0);
    let s = suffix(&model);
    let table = format!("lightrag_vdb_chunks_{s}");
    let paid = server.requests();

    let copy = |args: &[&str]| {
        let mut c = vecload();
        c.args(["copy", "--layout", "lightrag", "--progress", "log"])
            .args(["--pg-url", &pg])
            .args(q.args())
            .args(args);
        c
    };
    let out = run(&mut copy(&["--from", &format!("pgvector:{table}")]));
    assert_eq!(out.code, 0);
    assert_eq!(server.requests(), paid, "the copy sent no request");
    let collection = format!("lightrag_vdb_chunks_{s}");
    let client = q.client();
    let points = client.raw_points(&collection);
    let want = fixture();
    assert_eq!(points.len(), want.len());
    for (key, rec) in &want {
        let (payload, vector) = &points[&lightrag_point_id(WORKSPACE, key)];
        assert_eq!(payload["content"], rec["content"], "{key}");
        assert_eq!(payload["full_doc_id"], rec["full_doc_id"], "{key}");
        assert_vector_of(vector, rec["content"].as_str().expect("content"), key);
    }
    lightrag_reads(
        "qdrant",
        &model,
        &server,
        &[("QDRANT_URL", q.rest_url.clone())],
    );

    // And back: the PostgreSQL table dropped, Qdrant copied into it again
    // (the model from the collection's name); PGVectorStorage reads it.
    let db = Db::connect(&pg);
    let before = pg_chunks(&db, &table);
    db.execute(&format!("DROP TABLE {table}"));
    let asked = server.requests();
    let out = run(&mut copy(&[
        "--from",
        &format!("qdrant:{collection}"),
        "--sink",
        "pgvector",
    ]));
    assert_eq!(out.code, 0);
    assert_eq!(server.requests(), asked, "the copy back sent no request");
    let after = pg_chunks(&db, &table);
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );
    for (id, (fields, v)) in &after {
        let (want_fields, want_v) = &before[id];
        assert_eq!(
            (
                &fields.0, &fields.1, fields.2, &fields.4, &fields.5, fields.6
            ),
            (
                &want_fields.0,
                &want_fields.1,
                want_fields.2,
                &want_fields.4,
                &want_fields.5,
                want_fields.6
            ),
            "{id}"
        );
        assert!(
            v.iter().zip(want_v).all(|(a, b)| (a - b).abs() < 1e-6),
            "{id}"
        );
    }
    lightrag_reads("pgvector", &model, &server, &pg_env(&pg));

    // A model other than the one the vectors were made with is refused.
    let out = run(&mut copy(&[
        "--from",
        &format!("pgvector:{table}"),
        "--embed-model",
        "another-model",
        "--collection",
        "never_made",
    ]));
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("another_model"), "{}", out.stderr);

    // Workspace acme copied to beta in the same collection.
    let paid = server.requests();
    let out = run(&mut copy(&[
        "--from",
        &format!("qdrant:{collection}"),
        "--tenant",
        WORKSPACE,
        "--to-tenant",
        "beta",
    ]));
    assert_eq!(out.code, 0);
    assert_eq!(server.requests(), paid, "the copy sent no request");
    let after = client.raw_points(&collection);
    assert_eq!(after.len(), 2 * want.len());
    for key in want.keys() {
        let (a, va) = &after[&lightrag_point_id(WORKSPACE, key)];
        let (b, vb) = &after[&lightrag_point_id("beta", key)];
        assert_eq!(a["workspace_id"], serde_json::json!(WORKSPACE));
        assert_eq!(b["workspace_id"], serde_json::json!("beta"));
        assert_eq!((&a["id"], &a["content"]), (&b["id"], &b["content"]));
        assert_eq!(va, vb, "{key}: the same vector");
    }
}
