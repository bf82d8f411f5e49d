//! Where the AWS credentials come from, end to end: each source of the
//! chain hands vecload temporary keys, and the Bedrock test server accepts
//! a request only with a valid SigV4 signature made with exactly those
//! keys. The sources are served on loopback by a small server here that
//! speaks their real protocols: the ECS/EKS container credentials endpoint
//! (with its authorization token), EC2 instance metadata (IMDSv2: token
//! first), and STS (AssumeRole, itself signature-checked with the source
//! profile's keys; AssumeRoleWithWebIdentity with the token file's text);
//! plus profiles with static keys and `credential_process`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use crate::common::*;

/// The keys every source hands out, and the Bedrock server checks.
const KEY_ID: &str = "ASIAVECLOADTEMP0001";
const SECRET: &str = "tempSecretKeyForVecloadCredentialTests01";
const TOKEN: &str = "IQoJb3JpZ2luX2VjEVECLOADSESSIONTOKEN";
/// The source profile's long-term keys (AssumeRole is signed with them).
const SOURCE_ID: &str = "AKIAVECLOADSOURCE001";
const SOURCE_SECRET: &str = "sourceProfileSecretKeyForVecloadTests001";
const CONTAINER_TOKEN: &str = "container-auth-token-0001";
const WEB_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.vecload-test-web-identity";
const REGION: &str = "eu-west-1";

/// One HTTP request as read off the socket.
struct Req {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Req {
    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }
}

fn read_req(stream: &mut std::net::TcpStream) -> Option<Req> {
    let mut r = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some(Req {
        method,
        path,
        headers,
        body,
    })
}

fn respond(stream: &mut std::net::TcpStream, status: u16, body: &str) {
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn expiring_in(secs: u64) -> String {
    let t = std::time::SystemTime::now() + std::time::Duration::from_secs(secs);
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Serves the container endpoint, IMDSv2 and STS; counts what it handed out.
struct CredentialServer {
    url: String,
    handed_out: Arc<AtomicU64>,
    refused: Arc<Mutex<Vec<String>>>,
}

impl CredentialServer {
    /// `lifetime`: seconds until the keys handed out expire.
    fn start(lifetime: u64) -> CredentialServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let handed_out = Arc::new(AtomicU64::new(0));
        let refused = Arc::new(Mutex::new(Vec::new()));
        let (count, why) = (handed_out.clone(), refused.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                let Some(req) = read_req(&mut s) else {
                    continue;
                };
                let refuse = |s: &mut std::net::TcpStream, msg: &str| {
                    why.lock()
                        .unwrap()
                        .push(format!("{} {}: {msg}", req.method, req.path));
                    respond(s, 403, &format!("{{\"message\": \"{msg}\"}}"));
                };
                let creds = || {
                    count.fetch_add(1, SeqCst);
                    serde_json::json!({
                        "AccessKeyId": KEY_ID, "SecretAccessKey": SECRET, "Token": TOKEN,
                        "Expiration": expiring_in(lifetime), "Code": "Success",
                    })
                    .to_string()
                };
                match (req.method.as_str(), req.path.as_str()) {
                    ("GET", "/v2/credentials/task") => {
                        if req.header("authorization") == CONTAINER_TOKEN {
                            respond(&mut s, 200, &creds());
                        } else {
                            refuse(&mut s, "no or wrong authorization token");
                        }
                    }
                    ("PUT", "/latest/api/token") => {
                        if req
                            .header("x-aws-ec2-metadata-token-ttl-seconds")
                            .is_empty()
                        {
                            refuse(&mut s, "IMDSv2 token request without a TTL");
                        } else {
                            respond(&mut s, 200, "imds-session-token");
                        }
                    }
                    ("GET", p) if p.starts_with("/latest/meta-data/iam/security-credentials/") => {
                        if req.header("x-aws-ec2-metadata-token") != "imds-session-token" {
                            refuse(&mut s, "IMDSv1 request (no session token)");
                        } else if p.ends_with('/') {
                            respond(&mut s, 200, "vecload-instance-role");
                        } else if p.ends_with("/vecload-instance-role") {
                            respond(&mut s, 200, &creds());
                        } else {
                            refuse(&mut s, "no such role");
                        }
                    }
                    ("POST", "/") => {
                        let form = String::from_utf8_lossy(&req.body).to_string();
                        let fields: Vec<(String, String)> =
                            url::form_urlencoded::parse(form.as_bytes())
                                .into_owned()
                                .collect();
                        let field = |k: &str| {
                            fields
                                .iter()
                                .find(|(n, _)| n == k)
                                .map(|(_, v)| v.as_str())
                                .unwrap_or("")
                        };
                        let action = field("Action").to_string();
                        let ok = match action.as_str() {
                            "AssumeRoleWithWebIdentity" => field("WebIdentityToken") == WEB_TOKEN,
                            "AssumeRole" => {
                                let want = embedding_test_server::sigv4::Expected {
                                    key_id: SOURCE_ID,
                                    secret: SOURCE_SECRET,
                                    region: REGION,
                                    service: "sts",
                                };
                                embedding_test_server::sigv4::verify(
                                    "POST",
                                    "/",
                                    "",
                                    &req.headers,
                                    &req.body,
                                    &want,
                                    std::time::SystemTime::now(),
                                )
                                .is_ok()
                            }
                            _ => false,
                        };
                        if !ok || !field("RoleArn").starts_with("arn:aws:iam::") {
                            refuse(&mut s, &format!("{action} refused"));
                            continue;
                        }
                        count.fetch_add(1, SeqCst);
                        let xml = format!(
                            "<{action}Response xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><{action}Result><Credentials><AccessKeyId>{KEY_ID}</AccessKeyId><SecretAccessKey>{SECRET}</SecretAccessKey><SessionToken>{TOKEN}</SessionToken><Expiration>{}</Expiration></Credentials></{action}Result></{action}Response>",
                            expiring_in(lifetime)
                        );
                        respond(&mut s, 200, &xml);
                    }
                    _ => refuse(&mut s, "unknown route"),
                }
            }
        });
        CredentialServer {
            url,
            handed_out,
            refused,
        }
    }
}

/// `vecload load` of the guides with Bedrock Titan V2 and no keys in the
/// environment: only `setup` says where credentials are.
fn bedrock_load(bedrock: &EmbedServer, pg: &str, table: &str, home: &Path) -> Command {
    let mut c = vecload();
    c.arg("load")
        .arg(fixtures().join("guides"))
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env("HOME", home)
        .env("EMBEDDING_BINDING", "bedrock")
        .env("EMBEDDING_MODEL", "amazon.titan-embed-text-v2:0")
        .env("EMBEDDING_DIM", "1024")
        .env("AWS_REGION", REGION)
        .env("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", &bedrock.url)
        .args(["--pg-url", pg, "--table", table, "--no-state"])
        .args([
            "--chunk-tokens",
            "60",
            "--chunk-overlap",
            "0",
            "--concurrency",
            "1",
        ]);
    c
}

fn bedrock() -> EmbedServer {
    EmbedServer::start(&[
        "--protocol",
        "bedrock",
        "--aws-access-key-id",
        KEY_ID,
        "--aws-secret-access-key",
        SECRET,
        "--aws-region",
        REGION,
    ])
}

fn assert_signed_with_the_handed_out_keys(r: &Run, bedrock: &EmbedServer, what: &str) {
    assert_eq!(r.code, 0, "{what}: {}", r.all_output());
    let stats = bedrock.stats();
    assert_eq!(stats["auth_refused"], 0, "{what}: {stats}");
    assert!(stats["requests"].as_u64() > Some(0), "{what}: {stats}");
    for secret in [SECRET, TOKEN, SOURCE_SECRET, CONTAINER_TOKEN, WEB_TOKEN] {
        assert!(
            !r.all_output().contains(secret),
            "{what}: a secret reached the output"
        );
    }
}

#[test]
fn the_ecs_task_role_endpoint_and_imdsv2_give_the_keys_requests_are_signed_with() {
    let Some(pg) = pg_url("aws_container_credentials") else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let creds = CredentialServer::start(3600);

    let server = bedrock();
    let table = unique_table("cred_container");
    let r = run(bedrock_load(&server, &pg, &table, home.path())
        .env(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            format!("{}/v2/credentials/task", creds.url),
        )
        .env("AWS_CONTAINER_AUTHORIZATION_TOKEN", CONTAINER_TOKEN));
    assert_signed_with_the_handed_out_keys(&r, &server, "container endpoint");
    assert_eq!(
        creds.handed_out.load(SeqCst),
        1,
        "fetched once, then cached"
    );

    let server = bedrock();
    let table = unique_table("cred_imds");
    let r = run(bedrock_load(&server, &pg, &table, home.path())
        .env("AWS_EC2_METADATA_DISABLED", "false")
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &creds.url));
    assert_signed_with_the_handed_out_keys(&r, &server, "IMDSv2");
    assert!(
        creds.refused.lock().unwrap().is_empty(),
        "{:?}",
        creds.refused.lock().unwrap()
    );
}

#[test]
fn keys_about_to_expire_are_fetched_again_during_the_run() {
    let Some(pg) = pg_url("aws_credentials_refresh") else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    // Five minutes and two seconds: inside the five-minute margin after two
    // seconds, so a run of several seconds must fetch again, as a run of
    // hours must when the task role's keys rotate.
    let creds = CredentialServer::start(302);
    let server = EmbedServer::start(&[
        "--protocol",
        "bedrock",
        "--aws-access-key-id",
        KEY_ID,
        "--aws-secret-access-key",
        SECRET,
        "--aws-region",
        REGION,
        "--latency-ms",
        "600",
    ]);
    let table = unique_table("cred_refresh");
    let r = run(bedrock_load(&server, &pg, &table, home.path())
        .env(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            format!("{}/v2/credentials/task", creds.url),
        )
        .env("AWS_CONTAINER_AUTHORIZATION_TOKEN", CONTAINER_TOKEN));
    assert_signed_with_the_handed_out_keys(&r, &server, "refresh");
    let fetched = creds.handed_out.load(SeqCst);
    let requests = server.requests();
    assert!(
        fetched >= 2 && fetched < requests,
        "fetched {fetched} times for {requests} requests: again when near expiry, not per request"
    );
}

#[test]
fn profiles_with_keys_a_credential_process_a_role_or_a_web_identity() {
    let Some(pg) = pg_url("aws_profile_credentials") else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let aws = home.path().join(".aws");
    std::fs::create_dir_all(&aws).unwrap();
    let creds = CredentialServer::start(3600);
    let process = home.path().join("get-creds.sh");
    std::fs::write(
        &process,
        format!(
            "#!/bin/sh\necho '{{\"Version\": 1, \"AccessKeyId\": \"{KEY_ID}\", \"SecretAccessKey\": \"{SECRET}\", \"SessionToken\": \"{TOKEN}\", \"Expiration\": \"{}\"}}'\n",
            expiring_in(3600)
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &process,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let token_file = home.path().join("web-identity-token");
    std::fs::write(&token_file, format!("{WEB_TOKEN}\n")).unwrap();
    std::fs::write(
        aws.join("credentials"),
        format!(
            "[static]\naws_access_key_id = {KEY_ID}\naws_secret_access_key = {SECRET}\naws_session_token = {TOKEN}\n\n[source]\naws_access_key_id = {SOURCE_ID}\naws_secret_access_key = {SOURCE_SECRET}\n"
        ),
    )
    .unwrap();
    std::fs::write(
        aws.join("config"),
        format!(
            "[profile process]\ncredential_process = {}\n\n[profile loader]\nrole_arn = arn:aws:iam::123456789012:role/vecload-loader\nsource_profile = source\n\n[profile irsa]\nrole_arn = arn:aws:iam::123456789012:role/vecload-irsa\nweb_identity_token_file = {}\n",
            process.display(),
            token_file.display()
        ),
    )
    .unwrap();
    for profile in ["static", "process", "loader", "irsa"] {
        let server = bedrock();
        let table = unique_table(&format!("cred_{profile}"));
        let r = run(bedrock_load(&server, &pg, &table, home.path())
            .env("AWS_PROFILE", profile)
            .env("AWS_ENDPOINT_URL_STS", &creds.url));
        assert_signed_with_the_handed_out_keys(&r, &server, profile);
    }
    // IRSA as EKS sets it up: no profile, the two variables.
    let server = bedrock();
    let table = unique_table("cred_irsa_env");
    let r = run(bedrock_load(&server, &pg, &table, home.path())
        .env("AWS_WEB_IDENTITY_TOKEN_FILE", &token_file)
        .env(
            "AWS_ROLE_ARN",
            "arn:aws:iam::123456789012:role/vecload-irsa",
        )
        .env("AWS_ENDPOINT_URL_STS", &creds.url));
    assert_signed_with_the_handed_out_keys(&r, &server, "IRSA variables");
    assert!(
        creds.refused.lock().unwrap().is_empty(),
        "{:?}",
        creds.refused.lock().unwrap()
    );

    // A profile that does not exist is named, and nothing is sent.
    let server = bedrock();
    let table = unique_table("cred_missing");
    let r = run(bedrock_load(&server, &pg, &table, home.path()).env("AWS_PROFILE", "nope"));
    assert_ne!(r.code, 0);
    assert!(r.all_output().contains("\"nope\""), "{}", r.all_output());
    assert_eq!(server.requests(), 0);
}
