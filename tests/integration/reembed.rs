//! `vecload reembed` through the real binary against real PostgreSQL +
//! pgvector and a real Qdrant: a store loaded at one dimension is embedded
//! again at another, every new vector is the new model's vector of its
//! stored text, ids and payload carry over, the source is never modified,
//! the switch is atomic while a reader keeps querying, and a killed or
//! repeated run never pays for a vector twice.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::common::qdrant::{QdrantServer, Stored, qdrant};
use crate::common::*;
use embedding_test_server::vector_for;

const OLD: usize = 16;
const NEW: usize = 24;

fn assert_is_vector_of(vector: &[f32], text: &str, what: &str) {
    let want = vector_for(text, NEW);
    assert_eq!(vector.len(), NEW, "{what}: dimension");
    let off = vector
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        off < 1e-5,
        "{what}: the vector is not the new model's vector of its text"
    );
}

fn reembed(server: &EmbedServer, from: &str) -> Command {
    let mut c = vecload();
    c.args(["reembed", "--from", from])
        .args(["--embed-url", &server.url, "--embed-model", "model-b"])
        .args(["--embed-dim", &NEW.to_string(), "--progress", "log"]);
    c
}

/// Loads fixtures/docs/guides for tenants t1 and t2 at the old dimension.
fn load_two_tenants(mut load: impl FnMut() -> Command) {
    for t in ["t1", "t2"] {
        let out = run(load().arg(fixtures().join("guides")).args([
            "--tenant",
            t,
            "--chunk-tokens",
            "120",
            "--chunk-overlap",
            "10",
        ]));
        assert_eq!(out.code, 0);
    }
}

/// (tenant, id, doc_id, source, chunk_index, content, embedding) of a table.
type PgRow = (String, String, String, String, i32, String, Vec<f32>);

fn pg_rows(db: &Db, table: &str) -> Vec<PgRow> {
    db.query(
        &format!(
            "SELECT tenant_id, id, doc_id, source, chunk_index, content, embedding::real[]
               FROM \"{table}\" ORDER BY tenant_id, id"
        ),
        &[],
    )
    .iter()
    .map(|r| {
        (
            r.get(0),
            r.get(1),
            r.get(2),
            r.get(3),
            r.get(4),
            r.get(5),
            r.get(6),
        )
    })
    .collect()
}

/// Everything but the vector must carry over unchanged.
fn same_rows_new_vectors(before: &[PgRow], after: &[PgRow]) {
    assert_eq!(before.len(), after.len(), "row counts");
    for (b, a) in before.iter().zip(after) {
        assert_eq!(
            (&b.0, &b.1, &b.2, &b.3, b.4, &b.5),
            (&a.0, &a.1, &a.2, &a.3, a.4, &a.5),
            "ids and payload carry over"
        );
        assert_is_vector_of(&a.6, &a.5, &format!("{} #{}", a.3, a.4));
    }
}

/// Queries `sql` (one count) in a loop on its own connection until stopped;
/// returns how many queries ran. Panics on an error or a zero count.
fn pg_reader(url: String, sql: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let db = Db::connect(&url);
        let mut n = 0;
        while !stop.load(Ordering::SeqCst) {
            let count: i64 = db.query(&sql, &[])[0].get(0);
            assert!(count > 0, "a reader saw an empty result during the switch");
            n += 1;
        }
        n
    })
}

#[test]
fn pgvector_dimension_change_switches_atomically_under_a_reader() {
    let Some(pg) = pg_url("pgvector_dimension_change_switches_atomically_under_a_reader") else {
        return;
    };
    let old = EmbedServer::start(&["--dim", &OLD.to_string()]);
    let new = EmbedServer::start(&["--dim", &NEW.to_string()]);
    let (src, dst, live) = (
        unique_table("re_src"),
        unique_table("re_dst"),
        unique_table("re_live"),
    );
    load_two_tenants(|| load_cmd(&old, &pg, &src, OLD));
    let db = Db::connect(&pg);
    // The table the RAG API reads today: the old data under its own name.
    db.execute(&format!(
        "CREATE TABLE \"{live}\" AS SELECT * FROM \"{src}\""
    ));
    let before = pg_rows(&db, &src);
    assert!(before.len() > 4);

    let stop = Arc::new(AtomicBool::new(false));
    let reader = pg_reader(
        pg.clone(),
        format!("SELECT count(*) FROM \"{live}\" WHERE tenant_id = 't1'"),
        stop.clone(),
    );
    let report = std::env::temp_dir().join(format!("{dst}.json"));
    let out = run(reembed(&new, &format!("pgvector:{src}"))
        .args(["--pg-url", &pg, "--table", &dst, "--switch", &live])
        .arg("--report")
        .arg(&report));
    stop.store(true, Ordering::SeqCst);
    let queries = reader.join().expect("the reader never failed");
    assert_eq!(out.code, 0);
    assert!(queries > 0);

    let r = read_report(&report);
    assert_eq!(r["verified"], true);
    assert_eq!(r["reembedded"], before.len() as u64);
    assert_eq!(
        r["tenants"]["t1"]["source_rows"],
        r["tenants"]["t1"]["target_rows"]
    );
    assert!(r["switched"].as_str().expect("switched").contains(&live));
    assert_eq!(new.stats()["inputs"], before.len() as u64);

    // The name the API reads now holds the new vectors; the target name is gone.
    same_rows_new_vectors(&before, &pg_rows(&db, &live));
    assert!(!db.table_exists(&dst));
    // The old data is kept under a new name, and the source is untouched.
    let kept: i64 = db.query(
        "SELECT count(*) FROM pg_class WHERE relname LIKE $1 AND relkind = 'r'",
        &[&format!("{live}_before_%")],
    )[0]
    .get(0);
    assert_eq!(kept, 1);
    assert_eq!(pg_rows(&db, &src), before);

    // The same command again must not embed everything into a new table.
    let again = run(reembed(&new, &format!("pgvector:{src}"))
        .args(["--pg-url", &pg, "--table", &dst, "--switch", &live]));
    assert_eq!(again.code, 2);
    assert!(
        again.stderr.contains("already switched"),
        "{}",
        again.stderr
    );
    assert_eq!(new.stats()["inputs"], before.len() as u64);
}

#[test]
fn killed_reembed_resumes_without_paying_twice() {
    let Some(pg) = pg_url("killed_reembed_resumes_without_paying_twice") else {
        return;
    };
    let old = EmbedServer::start(&["--dim", &OLD.to_string()]);
    let new = EmbedServer::start(&["--dim", &NEW.to_string()]);
    let (src, dst) = (unique_table("re_src"), unique_table("re_dst"));
    load_two_tenants(|| load_cmd(&old, &pg, &src, OLD));
    let db = Db::connect(&pg);
    let before = pg_rows(&db, &src);
    let sizing = [
        "--batch-size",
        "2",
        "--concurrency",
        "1",
        "--write-batch",
        "4",
        "--write-concurrency",
        "1",
        "--page-size",
        "5",
    ];
    let killed = run(reembed(&new, &format!("pgvector:{src}"))
        .args(["--pg-url", &pg, "--table", &dst])
        .args(sizing)
        .env("VECLOAD_CRASH_AFTER_ACKS", "2"));
    assert_ne!(killed.code, 0);
    let paid_first = new.stats()["inputs"].as_u64().expect("inputs");
    let written_first = db.count(&dst) as u64;
    assert!(written_first >= 2 && written_first < before.len() as u64);

    let report = std::env::temp_dir().join(format!("{dst}.json"));
    let out = run(reembed(&new, &format!("pgvector:{src}"))
        .args(["--pg-url", &pg, "--table", &dst])
        .args(sizing)
        .arg("--report")
        .arg(&report));
    assert_eq!(out.code, 0);
    let r = read_report(&report);
    assert_eq!(r["already_in_target"], written_first);
    assert_eq!(r["verified"], true);
    // Only what was not written is embedded again. What the killed run had
    // embedded but not yet written (at most its queues: two embedded
    // batches, one write batch filling, one being written) is lost.
    let paid = new.stats()["inputs"].as_u64().expect("inputs");
    assert_eq!(paid - paid_first, before.len() as u64 - written_first);
    assert!(
        paid_first - written_first <= 12,
        "more lost than the queues hold"
    );
    same_rows_new_vectors(&before, &pg_rows(&db, &dst));
    assert!(out.stdout.contains("--switch NAME"), "prints how to switch");
}

fn qdrant_reader(
    server: &'static QdrantServer,
    alias: String,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let client = server.client();
        let mut n = 0;
        while !stop.load(Ordering::SeqCst) {
            let count = client.count(&alias, Some("t1"));
            assert!(count > 0, "a reader saw an empty result during the switch");
            n += 1;
        }
        n
    })
}

fn payload(p: &Stored) -> (&str, &str, &str, &str, i64, &str) {
    (
        &p.id,
        &p.tenant,
        &p.doc_id,
        &p.source,
        p.chunk_index,
        &p.content,
    )
}

#[test]
fn qdrant_dimension_change_moves_the_alias_under_a_reader() {
    let Some(q) = qdrant("qdrant_dimension_change_moves_the_alias_under_a_reader") else {
        return;
    };
    let old = EmbedServer::start(&["--dim", &OLD.to_string()]);
    let new = EmbedServer::start(&["--dim", &NEW.to_string()]);
    let (src, dst, alias) = (
        unique_table("re_src"),
        unique_table("re_dst"),
        unique_table("re_alias"),
    );
    load_two_tenants(|| qdrant_load_cmd(&old, q, &src, OLD));
    let client = q.client();
    client
        .block(
            client
                .client
                .create_alias(qdrant_client::qdrant::CreateAliasBuilder::new(&src, &alias)),
        )
        .expect("alias on the old collection");
    let before = client.points(&src, None);
    assert!(before.len() > 4);

    let stop = Arc::new(AtomicBool::new(false));
    let reader = qdrant_reader(q, alias.clone(), stop.clone());
    let out = run(reembed(&new, &format!("qdrant:{src}"))
        .args(q.args())
        .args(["--collection", &dst, "--switch", &alias]));
    stop.store(true, Ordering::SeqCst);
    let queries = reader.join().expect("the reader never failed");
    assert_eq!(out.code, 0);
    assert!(queries > 0);

    let aliases = client
        .block(client.client.list_aliases())
        .expect("aliases")
        .aliases;
    let now = aliases
        .iter()
        .find(|a| a.alias_name == alias)
        .expect("alias kept");
    assert_eq!(now.collection_name, dst);
    let after = client.points(&dst, None);
    assert_eq!(after.len(), before.len());
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(payload(b), payload(a), "ids and payload carry over");
        assert_is_vector_of(&a.vector, &a.content, &a.source);
    }
    // The source is untouched: same points, old vectors.
    assert_eq!(client.points(&src, None), before);
    assert!(before.iter().all(|p| p.vector.len() == OLD));
}

#[test]
fn pgvector_to_qdrant_tenant_by_tenant_then_one_switch() {
    let Some(pg) = pg_url("pgvector_to_qdrant_tenant_by_tenant_then_one_switch") else {
        return;
    };
    let Some(q) = qdrant("pgvector_to_qdrant_tenant_by_tenant_then_one_switch") else {
        return;
    };
    let old = EmbedServer::start(&["--dim", &OLD.to_string()]);
    let new = EmbedServer::start(&["--dim", &NEW.to_string()]);
    let (src, dst, alias) = (
        unique_table("re_src"),
        unique_table("re_dst"),
        unique_table("re_alias"),
    );
    load_two_tenants(|| load_cmd(&old, &pg, &src, OLD));
    let db = Db::connect(&pg);
    let before = pg_rows(&db, &src);
    let t1 = before.iter().filter(|r| r.0 == "t1").count() as u64;

    // A backfill of one tenant touches only that tenant.
    let one = run(reembed(&new, &format!("pgvector:{src}"))
        .args(q.args())
        .args(["--pg-url", &pg, "--collection", &dst, "--tenant", "t1"]));
    assert_eq!(one.code, 0);
    let client = q.client();
    assert_eq!(client.count(&dst, Some("t1")), t1);
    assert_eq!(client.count(&dst, Some("t2")), 0);

    // A switch needs every tenant: refused with --tenant, before any work.
    let refused = run(reembed(&new, &format!("pgvector:{src}"))
        .args(q.args())
        .args(["--pg-url", &pg, "--collection", &dst])
        .args(["--tenant", "t2", "--switch", &alias]));
    assert_eq!(refused.code, 2);
    assert!(refused.stderr.contains("--switch"), "{}", refused.stderr);
    assert_eq!(new.stats()["inputs"], t1);

    // The final run embeds only t2, verifies both and switches.
    let report = std::env::temp_dir().join(format!("{dst}.json"));
    let out = run(reembed(&new, &format!("pgvector:{src}"))
        .args(q.args())
        .args(["--pg-url", &pg, "--collection", &dst, "--switch", &alias])
        .arg("--report")
        .arg(&report));
    assert_eq!(out.code, 0);
    let r = read_report(&report);
    assert_eq!(r["already_in_target"], t1);
    assert_eq!(new.stats()["inputs"], before.len() as u64);
    assert_eq!(r["verified"], true);
    assert_eq!(r["tenants"].as_object().expect("tenants").len(), 2);

    let after = client.points(&alias, None);
    assert_eq!(after.len(), before.len());
    let mut got: Vec<_> = after
        .iter()
        .map(|p| {
            assert_is_vector_of(&p.vector, &p.content, &p.source);
            (
                p.tenant.clone(),
                p.id.clone(),
                p.doc_id.clone(),
                p.source.clone(),
                p.chunk_index as i32,
                p.content.clone(),
            )
        })
        .collect();
    got.sort();
    let want: Vec<_> = before
        .iter()
        .map(|r| {
            (
                r.0.clone(),
                r.1.clone(),
                r.2.clone(),
                r.3.clone(),
                r.4,
                r.5.clone(),
            )
        })
        .collect();
    assert_eq!(
        got, want,
        "ids and payload carry over from pgvector to Qdrant"
    );
    assert_eq!(pg_rows(&db, &src), before);
}

#[test]
fn refusals_name_the_setting_and_send_nothing() {
    let server = EmbedServer::start(&["--dim", &NEW.to_string()]);
    let pg = "postgres://u:secret-pw@127.0.0.1:1/db";
    let cases: [(&[&str], &str); 4] = [
        (
            &["--from", "pgvector:t", "--table", "t"],
            "the target is the source",
        ),
        (&["--from", "mysql:t"], "unknown source kind"),
        (&["--from", "lightrag:/no/such/file.json"], "no such file"),
        (
            &["--from", "pgvector:t", "--tenant", "a", "--switch", "live"],
            "--switch",
        ),
    ];
    for (args, want) in cases {
        let out = run(vecload()
            .arg("reembed")
            .args(args)
            .args(["--embed-url", &server.url, "--embed-model", "m"])
            .args(["--embed-dim", &NEW.to_string(), "--pg-url", pg]));
        assert_eq!(out.code, 2, "{args:?}");
        assert!(out.stderr.contains(want), "{args:?}: {}", out.stderr);
        assert!(!out.all_output().contains("secret-pw"));
    }
    // pgvector's index limit is checked before anything is read.
    let out = run(vecload()
        .args(["reembed", "--from", "pgvector:t", "--table", "t2"])
        .args(["--embed-url", &server.url, "--embed-model", "m"])
        .args(["--embed-dim", "3072", "--pg-url", pg]));
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("2000"), "{}", out.stderr);
    assert_eq!(server.requests(), 0);
}

#[test]
fn lightrag_chunk_store_reembeds_into_pgvector_with_lightrags_ids() {
    let Some(pg) = pg_url("lightrag_chunk_store_reembeds_into_pgvector_with_lightrags_ids") else {
        return;
    };
    let new = EmbedServer::start(&["--dim", &NEW.to_string()]);
    let path = fixtures().join("../lightrag/acme/kv_store_text_chunks.json");
    let store: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("JSON");
    // Python's uuid.UUID(bytes=sha256(b"acme" + key)[:16], version=4) for the first key.
    assert_eq!(
        lightrag_point_id("acme", "doc-484c5965b48c15b6296056d808c02003-chunk-000"),
        "7e3d5fb3-e859-4bf6-896b-2b3e859d9cca"
    );
    let dst = unique_table("re_lightrag");
    let out = run(reembed(&new, &format!("lightrag:{}", path.display()))
        .args(["--tenant", "acme", "--pg-url", &pg, "--table", &dst]));
    assert_eq!(out.code, 0);
    let db = Db::connect(&pg);
    let rows = pg_rows(&db, &dst);
    assert_eq!(rows.len(), store.len());
    for (key, rec) in &store {
        let id = lightrag_point_id("acme", key);
        let row = rows
            .iter()
            .find(|r| r.1 == id)
            .expect("every chunk, by LightRAG's id");
        assert_eq!(row.0, "acme");
        assert_eq!(row.2, rec["full_doc_id"].as_str().expect("doc id"));
        assert_eq!(row.3, rec["file_path"].as_str().expect("path"));
        assert_eq!(
            row.4 as i64,
            rec["chunk_order_index"].as_i64().expect("order")
        );
        assert_eq!(row.5, rec["content"].as_str().expect("content"));
        assert_is_vector_of(&row.6, &row.5, key);
    }
}

/// Rows deleted from the source after an earlier run: the target no longer
/// verifies (no switch), and --prune removes exactly those rows, embedding
/// nothing again.
#[test]
fn rows_deleted_from_the_source_block_the_switch_until_pruned() {
    let Some(pg) = pg_url("rows_deleted_from_the_source_block_the_switch_until_pruned") else {
        return;
    };
    let old = EmbedServer::start(&["--dim", &OLD.to_string()]);
    let new = EmbedServer::start(&["--dim", &NEW.to_string()]);
    let (src, dst) = (unique_table("re_src"), unique_table("re_dst"));
    load_two_tenants(|| load_cmd(&old, &pg, &src, OLD));
    let from = format!("pgvector:{src}");
    let first = run(reembed(&new, &from).args(["--pg-url", &pg, "--table", &dst]));
    assert_eq!(first.code, 0);
    let paid = new.stats()["inputs"].as_u64().expect("inputs");

    let db = Db::connect(&pg);
    // Two rows of t2 and the whole of t1 are gone from the source.
    let t1: i64 = db.query(
        &format!("SELECT count(*) FROM \"{src}\" WHERE tenant_id = 't1'"),
        &[],
    )[0]
    .get(0);
    db.execute(&format!(
        "DELETE FROM \"{src}\" WHERE id IN (SELECT id FROM \"{src}\" WHERE tenant_id = 't2' ORDER BY id LIMIT 2);
         DELETE FROM \"{src}\" WHERE tenant_id = 't1'"
    ));
    let stale = run(reembed(&new, &from).args(["--pg-url", &pg, "--table", &dst]));
    assert_eq!(stale.code, 1);
    assert!(stale.stderr.contains("--prune"), "{}", stale.stderr);
    assert!(
        stale.stderr.contains("\"t1\""),
        "a tenant gone from the source: {}",
        stale.stderr
    );

    let report = std::env::temp_dir().join(format!("{dst}.json"));
    let pruned = run(reembed(&new, &from)
        .args(["--pg-url", &pg, "--table", &dst, "--prune", "--report"])
        .arg(&report));
    assert_eq!(pruned.code, 0);
    let r = read_report(&report);
    assert_eq!(r["pruned"], 2 + t1);
    assert_eq!(r["verified"], true);
    same_rows_new_vectors(&pg_rows(&db, &src), &pg_rows(&db, &dst));
    assert_eq!(
        new.stats()["inputs"].as_u64(),
        Some(paid),
        "nothing embedded again"
    );
}
