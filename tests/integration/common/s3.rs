//! A real S3-compatible server for the S3 tests: the moto server (PyPI
//! moto[server], scripts/moto.sh) on a free loopback port, with its request
//! recorder on (so a test counts the GETs the server got), and with IAM
//! enforced when asked (every request is then checked against the keys and
//! policies moto issued). moto 5.1's signature check rejects keys with
//! non-ASCII characters or `+`, and prefixes with `/`, even from boto3, so
//! the tests that need IAM keep to plain keys; vecload's S3 signing itself is
//! checked against AWS's published examples (src/aws/sign.rs). Set up
//! through tests/s3/moto.py with boto3.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub struct Moto {
    child: Child,
    pub endpoint: String,
    pub bucket: String,
    python: PathBuf,
    dir: tempfile::TempDir,
    /// The reader's keys, the ones vecload is given.
    pub key_id: String,
    pub secret: String,
}

impl Moto {
    /// A fresh server with `bucket` (IAM enforced with `iam`); None
    /// (skipped loudly) without moto.
    pub fn start(test: &str, bucket: &str, iam: bool) -> Option<Moto> {
        let bin = match std::env::var("VECLOAD_TEST_MOTO") {
            Ok(b) if !b.is_empty() => PathBuf::from(b),
            _ => {
                if std::env::var("VECLOAD_REQUIRE_SERVICES").is_ok_and(|v| v == "1") {
                    panic!(
                        "VECLOAD_TEST_MOTO is not set but VECLOAD_REQUIRE_SERVICES=1; run scripts/test.sh"
                    );
                }
                let _ = writeln!(
                    std::io::stderr(),
                    "=== SKIPPED {test}: no S3 server (set VECLOAD_TEST_MOTO or run scripts/test.sh) ==="
                );
                return None;
            }
        };
        let python = bin.parent().expect("venv bin").join("python");
        let dir = tempfile::tempdir().expect("tempdir");
        let port = super::free_port();
        // The recorder writes its file into the working folder: one per server.
        let mut cmd = Command::new(&bin);
        if iam {
            // The three calls that create the admin go unauthenticated.
            cmd.env("INITIAL_NO_AUTH_ACTION_COUNT", "3");
        }
        let child = cmd
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .current_dir(dir.path())
            .env("MOTO_ENABLE_RECORDING", "True")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let endpoint = format!("http://127.0.0.1:{port}");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "moto did not start");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let mut m = Moto {
            child,
            endpoint,
            bucket: bucket.to_string(),
            python,
            dir,
            key_id: String::new(),
            secret: String::new(),
        };
        let keys: serde_json::Value =
            serde_json::from_str(&m.helper(&["setup", bucket])).expect("reader keys");
        m.key_id = keys["id"].as_str().expect("id").to_string();
        m.secret = keys["secret"].as_str().expect("secret").to_string();
        m.http("POST", "/moto-api/recorder/start-recording");
        Some(m)
    }

    fn helper(&self, args: &[&str]) -> String {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/s3/moto.py");
        let out = Command::new(&self.python)
            .arg(script)
            .arg(&self.endpoint)
            .args(args)
            .env("MOTO_KEYS_FILE", self.dir.path().join("keys.json"))
            .output()
            .expect("run moto.py");
        assert!(
            out.status.success(),
            "moto.py {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn http(&self, method: &str, path: &str) {
        use std::io::Read;
        let addr = self.endpoint.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(addr).expect("connect to moto");
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .expect("send");
        let mut resp = String::new();
        let _ = s.read_to_string(&mut resp);
    }

    pub fn put_dir(&self, prefix: &str, dir: &Path) {
        self.helper(&["put-dir", &self.bucket, prefix, &dir.to_string_lossy()]);
    }

    pub fn put(&self, key: &str, body: &[u8]) {
        let f = self.dir.path().join("upload");
        std::fs::write(&f, body).expect("write upload");
        self.helper(&["put", &self.bucket, key, &f.to_string_lossy()]);
    }

    pub fn delete(&self, key: &str) {
        self.helper(&["delete", &self.bucket, key]);
    }

    /// The reader may not GET `key` (IAM Deny).
    pub fn deny(&self, key: &str) {
        self.helper(&["deny", &self.bucket, key]);
    }

    /// The reader may not PUT `key`.
    pub fn deny_put(&self, key: &str) {
        self.helper(&["deny-put", &self.bucket, key]);
    }

    /// The object's text.
    pub fn get(&self, key: &str) -> String {
        self.helper(&["get", &self.bucket, key])
    }

    /// (method, path, query) of every request since the last call.
    pub fn requests(&self) -> Vec<(String, String, String)> {
        let v: serde_json::Value =
            serde_json::from_str(&self.helper(&["requests"])).expect("requests JSON");
        v.as_array()
            .expect("list")
            .iter()
            .map(|r| {
                (
                    r[0].as_str().unwrap_or("").to_string(),
                    r[1].as_str().unwrap_or("").to_string(),
                    r[2].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    /// GETs of objects (not listings) since the last call.
    pub fn object_gets(&self) -> Vec<String> {
        self.requests()
            .into_iter()
            .filter(|(m, p, q)| m == "GET" && q.is_empty() && p.matches('/').count() > 1)
            .map(|(_, p, _)| p)
            .collect()
    }

    /// The environment vecload runs with: the reader's keys, this server.
    pub fn env<'a>(&'a self, cmd: &'a mut Command) -> &'a mut Command {
        cmd.env("AWS_ACCESS_KEY_ID", &self.key_id)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret)
            .env("AWS_ENDPOINT_URL_S3", &self.endpoint)
            .env("AWS_REGION", "us-east-1")
            .env("HOME", self.dir.path())
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
