//! A real Qdrant server for tests: the one QDRANT_URL names, or a `qdrant`
//! binary from PATH started on free loopback ports with a temporary storage
//! folder. No registry ships the server, so without either the Qdrant tests
//! print one loud SKIPPED line (VECLOAD_REQUIRE_QDRANT=1 makes that a failure).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use qdrant_client::Qdrant;
use qdrant_client::qdrant::{
    CollectionInfo, Condition, CountPointsBuilder, Filter, RetrievedPoint, ScrollPointsBuilder,
    value::Kind,
};

pub struct QdrantServer {
    http: u16,
    pub rest_url: String,
    pub grpc_url: String,
    pub api_key: Option<String>,
    /// Closing it makes the wrapper shell stop the server, also when the
    /// test process dies without running destructors.
    stdin: Option<ChildStdin>,
    child: Option<Child>,
    _dir: Option<tempfile::TempDir>,
}

static SHARED: OnceLock<Option<QdrantServer>> = OnceLock::new();

/// The server every Qdrant test of this binary shares, or None (after the
/// SKIPPED line) when there is none.
pub fn qdrant(test: &str) -> Option<&'static QdrantServer> {
    let s = SHARED
        .get_or_init(|| {
            if let Ok(url) = std::env::var("QDRANT_URL")
                && !url.is_empty()
            {
                let grpc = std::env::var("QDRANT_GRPC_URL")
                    .ok()
                    .filter(|g| !g.is_empty())
                    .unwrap_or_else(|| grpc_of(&url));
                return Some(QdrantServer {
                    http: 0,
                    rest_url: url,
                    grpc_url: grpc,
                    api_key: std::env::var("QDRANT_API_KEY")
                        .ok()
                        .filter(|k| !k.is_empty()),
                    stdin: None,
                    child: None,
                    _dir: None,
                });
            }
            QdrantServer::start(None)
        })
        .as_ref();
    if s.is_none() {
        skipped(test);
    }
    s
}

fn skipped(test: &str) {
    if std::env::var("VECLOAD_REQUIRE_QDRANT").is_ok_and(|v| v == "1") {
        panic!(
            "no Qdrant server (QDRANT_URL unset, no `qdrant` on PATH) but VECLOAD_REQUIRE_QDRANT=1"
        );
    }
    // Straight to the stream: `eprintln!` would be captured and hidden
    // under a passing test.
    let _ = writeln!(
        std::io::stderr(),
        "=== SKIPPED {test}: no Qdrant server (set QDRANT_URL, or put a `qdrant` binary on PATH) ==="
    );
}

fn grpc_of(rest: &str) -> String {
    let u = url::Url::parse(rest).expect("QDRANT_URL is a URL");
    format!(
        "{}://{}:6334",
        u.scheme(),
        u.host_str().expect("QDRANT_URL has a host")
    )
}

fn on_path() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("qdrant").is_file()))
}

impl QdrantServer {
    /// A new server of our own (None if there is no binary), optionally
    /// requiring `api_key`.
    pub fn start(api_key: Option<&str>) -> Option<QdrantServer> {
        Self::start_with(api_key, None)
    }

    /// With `tls` = (certificate PEM, key PEM), both ports speak TLS only.
    pub fn start_with(api_key: Option<&str>, tls: Option<(&str, &str)>) -> Option<QdrantServer> {
        if !on_path() {
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let (http, grpc) = (super::free_port(), super::free_port());
        let mut cmd = Command::new("sh");
        // The shell waits on its stdin; when the test process ends, the
        // pipe closes and the server goes with it.
        // `stop` and `start` lines stop it (kill -9, as a lost node) and
        // start it again on the same ports and storage (`outage`).
        cmd.args([
            "-c",
            "qdrant & q=$!; while read -r c; do case $c in \
             stop) kill -9 $q; wait $q;; start) qdrant & q=$!;; esac; done; kill $q; wait $q",
        ])
        .current_dir(dir.path())
        .env("QDRANT__SERVICE__HOST", "127.0.0.1")
        .env("QDRANT__SERVICE__HTTP_PORT", http.to_string())
        .env("QDRANT__SERVICE__GRPC_PORT", grpc.to_string())
        .env("QDRANT__STORAGE__STORAGE_PATH", dir.path().join("storage"))
        .env(
            "QDRANT__STORAGE__SNAPSHOTS_PATH",
            dir.path().join("snapshots"),
        )
        .env("QDRANT__TELEMETRY_DISABLED", "true")
        .env("QDRANT__LOG_LEVEL", "WARN")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        if let Some(k) = api_key {
            cmd.env("QDRANT__SERVICE__API_KEY", k);
        }
        if let Some((cert, key)) = tls {
            let (c, k) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
            std::fs::write(&c, cert).expect("write cert");
            std::fs::write(&k, key).expect("write key");
            cmd.env("QDRANT__SERVICE__ENABLE_TLS", "true")
                .env("QDRANT__TLS__CERT", &c)
                .env("QDRANT__TLS__KEY", &k);
        }
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut child = cmd.spawn().expect("start qdrant");
        let stdin = child.stdin.take();
        let server = QdrantServer {
            http,
            rest_url: format!("{scheme}://localhost:{http}"),
            grpc_url: format!("{scheme}://localhost:{grpc}"),
            api_key: api_key.map(String::from),
            stdin,
            child: Some(child),
            _dir: Some(dir),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !server.ready(http, tls.is_some()) {
            assert!(Instant::now() < deadline, "qdrant did not start in 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(server)
    }

    fn ready(&self, port: u16, tls: bool) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
            return false;
        };
        if tls {
            // Listening is as much as can be told without a TLS client.
            return true;
        }
        let _ = write!(
            s,
            "GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        );
        let mut resp = String::new();
        let _ = s.read_to_string(&mut resp);
        resp.starts_with("HTTP/1.1 200")
    }

    /// Flags that point `vecload load` at this server.
    pub fn args(&self) -> Vec<String> {
        let mut a = vec![
            "--sink".into(),
            "qdrant".into(),
            "--qdrant-url".into(),
            self.rest_url.clone(),
            "--qdrant-grpc-url".into(),
            self.grpc_url.clone(),
        ];
        if let Some(k) = &self.api_key {
            a.extend(["--qdrant-api-key".into(), k.clone()]);
        }
        a
    }

    pub fn client(&self) -> QdrantDb {
        QdrantDb::connect(&self.grpc_url, self.api_key.as_deref())
    }
}

impl QdrantServer {
    /// Kills the server (as a node lost), then waits until nothing listens.
    pub fn stop(&mut self) {
        self.say("stop");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.http)).is_ok() {
            assert!(Instant::now() < deadline, "qdrant did not stop in 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts it again on its ports and storage, and waits until it is ready.
    pub fn start_again(&mut self) {
        self.say("start");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.ready(self.http, false) {
            assert!(
                Instant::now() < deadline,
                "qdrant did not start again in 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn say(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("a server of this test's own");
        writeln!(stdin, "{line}").expect("tell the wrapper shell");
        stdin.flush().expect("flush");
    }
}

impl Drop for QdrantServer {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }
}

/// A synchronous handle on a Qdrant server, for checking what a run stored.
pub struct QdrantDb {
    rt: tokio::runtime::Runtime,
    pub client: Qdrant,
}

/// A stored point, as the tests look at it.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub id: String,
    pub tenant: String,
    pub doc_id: String,
    pub source: String,
    pub chunk_index: i64,
    pub content: String,
    pub content_hash: String,
    pub updated_at: String,
    pub vector: Vec<f32>,
}

impl QdrantDb {
    pub fn connect(grpc: &str, api_key: Option<&str>) -> QdrantDb {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let mut b = Qdrant::from_url(grpc).skip_compatibility_check();
        if let Some(k) = api_key {
            b = b.api_key(k.to_string());
        }
        let client = b.build().expect("qdrant client");
        QdrantDb { rt, client }
    }

    pub fn block<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    pub fn info(&self, collection: &str) -> CollectionInfo {
        self.block(self.client.collection_info(collection))
            .expect("collection info")
            .result
            .expect("collection exists")
    }

    pub fn exists(&self, collection: &str) -> bool {
        self.block(self.client.collection_exists(collection))
            .expect("collection_exists")
    }

    /// Exact number of points, of one tenant or all.
    pub fn count(&self, collection: &str, tenant: Option<&str>) -> u64 {
        let mut req = CountPointsBuilder::new(collection).exact(true);
        if let Some(t) = tenant {
            req = req.filter(Filter::must([Condition::matches(
                "tenant_id",
                t.to_string(),
            )]));
        }
        self.block(self.client.count(req))
            .expect("count")
            .result
            .map_or(0, |r| r.count)
    }

    /// Every point of the collection (of `tenant` if given), sorted by id.
    pub fn points(&self, collection: &str, tenant: Option<&str>) -> Vec<Stored> {
        let mut out = Vec::new();
        let mut offset = None;
        loop {
            let mut req = ScrollPointsBuilder::new(collection)
                .limit(256)
                .with_payload(true)
                .with_vectors(true);
            if let Some(t) = tenant {
                req = req.filter(Filter::must([Condition::matches(
                    "tenant_id",
                    t.to_string(),
                )]));
            }
            if let Some(o) = offset.take() {
                req = req.offset(o);
            }
            let resp = self.block(self.client.scroll(req)).expect("scroll");
            out.extend(resp.result.iter().map(stored));
            match resp.next_page_offset {
                Some(o) => offset = Some(o),
                None => break,
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }
}

/// Point id -> (payload as JSON, vector) for every point, whatever its
/// payload (LightRAG's layout included).
pub type RawPoints = std::collections::HashMap<
    String,
    (
        std::collections::HashMap<String, serde_json::Value>,
        Vec<f32>,
    ),
>;

impl QdrantDb {
    pub fn raw_points(&self, collection: &str) -> RawPoints {
        use qdrant_client::qdrant::point_id::PointIdOptions;
        use qdrant_client::qdrant::vector_output::Vector;
        use qdrant_client::qdrant::vectors_output::VectorsOptions;
        let mut out = RawPoints::new();
        let mut offset = None;
        loop {
            let mut req = ScrollPointsBuilder::new(collection)
                .limit(256)
                .with_payload(true)
                .with_vectors(true);
            if let Some(o) = offset.take() {
                req = req.offset(o);
            }
            let resp = self.block(self.client.scroll(req)).expect("scroll");
            for p in resp.result {
                let id = match p.id.and_then(|i| i.point_id_options) {
                    Some(PointIdOptions::Uuid(u)) => u,
                    other => panic!("point id {other:?}"),
                };
                let vector = match p.vectors.and_then(|v| v.vectors_options) {
                    Some(VectorsOptions::Vector(v)) => match v.into_vector() {
                        Vector::Dense(d) => d.data,
                        other => panic!("vector {other:?}"),
                    },
                    other => panic!("vector {other:?}"),
                };
                let payload = p
                    .payload
                    .into_iter()
                    .map(|(k, v)| (k, serde_json::Value::from(v)))
                    .collect();
                out.insert(id, (payload, vector));
            }
            match resp.next_page_offset {
                Some(o) => offset = Some(o),
                None => break,
            }
        }
        out
    }
}

fn stored(p: &RetrievedPoint) -> Stored {
    use qdrant_client::qdrant::point_id::PointIdOptions;
    use qdrant_client::qdrant::vector_output::Vector;
    use qdrant_client::qdrant::vectors_output::VectorsOptions;
    let s = |k: &str| match p.payload.get(k).and_then(|v| v.kind.as_ref()) {
        Some(Kind::StringValue(s)) => s.clone(),
        other => panic!("payload {k} is {other:?}"),
    };
    let chunk_index = match p.payload.get("chunk_index").and_then(|v| v.kind.as_ref()) {
        Some(Kind::IntegerValue(i)) => *i,
        other => panic!("payload chunk_index is {other:?}"),
    };
    let id = match p.id.as_ref().and_then(|i| i.point_id_options.as_ref()) {
        Some(PointIdOptions::Uuid(u)) => u.clone(),
        other => panic!("point id {other:?}"),
    };
    let vector = match p.vectors.as_ref().and_then(|v| v.vectors_options.as_ref()) {
        Some(VectorsOptions::Vector(v)) => match v.clone().into_vector() {
            Vector::Dense(d) => d.data,
            other => panic!("vector {other:?}"),
        },
        other => panic!("vector {other:?}"),
    };
    Stored {
        id,
        tenant: s("tenant_id"),
        doc_id: s("doc_id"),
        source: s("source"),
        chunk_index,
        content: s("content"),
        content_hash: s("content_hash"),
        updated_at: s("updated_at"),
        vector,
    }
}
