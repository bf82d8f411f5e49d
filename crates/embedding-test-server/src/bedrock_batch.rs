//! Bedrock batch inference (`--protocol bedrock`): the control plane's
//! `CreateModelInvocationJob`, `GetModelInvocationJob`,
//! `ListModelInvocationJobs` and `StopModelInvocationJob`, SigV4 checked
//! like the runtime. A job reads its JSONL records from a real
//! S3-compatible server (`--s3-endpoint`, the moto server in tests), runs
//! each `modelInput` through the same InvokeModel answer after
//! `--batch-seconds`, and writes `{output}/{job id}/{file}.out` records
//! (`modelOutput` or `error`) and a `manifest.json.out` back there. A
//! `clientRequestToken` seen before returns the same job. The first
//! `--batch-expire-first` jobs expire with `--batch-expire-done` of their
//! records done; the next `--batch-fail-first` fail (a quota message) and
//! run nothing.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Instant;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Fate, Resp, State, done_of, reply};

#[derive(Default)]
pub(super) struct Store {
    jobs: BTreeMap<String, Job>,
}

struct Job {
    json: Value,
    token: Option<String>,
    created: Instant,
    number: u64,
}

pub(super) fn handles(path: &str) -> bool {
    path.starts_with("/model-invocation-job")
}

fn error(status: StatusCode, kind: &str, message: &str) -> Resp {
    super::protocol::bedrock_error(status, kind, message)
}

fn decode(s: &str) -> String {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(super) async fn handle(
    state: &State,
    method: &Method,
    path: &str,
    query: &str,
    body: &[u8],
) -> Resp {
    let rest = path.trim_start_matches('/');
    let parts: Vec<&str> = rest.splitn(3, '/').collect();
    match (method, parts.as_slice()) {
        (&Method::POST, ["model-invocation-job"]) => create(state, body).await,
        (&Method::GET, ["model-invocation-jobs"]) => list(state, query).await,
        (&Method::GET, ["model-invocation-job", id]) => {
            let id = decode(id);
            state.c.batch_polls.fetch_add(1, SeqCst);
            advance(state, &id, false).await;
            let store = state.bedrock_jobs.lock().await;
            match store.jobs.get(&id) {
                Some(j) => reply(StatusCode::OK, j.json.clone(), None),
                None => error(
                    StatusCode::NOT_FOUND,
                    "ResourceNotFoundException",
                    "job not found",
                ),
            }
        }
        (&Method::POST, ["model-invocation-job", id, "stop"]) => {
            let id = decode(id);
            let mut store = state.bedrock_jobs.lock().await;
            match store.jobs.get_mut(&id) {
                Some(j) => {
                    if !over(&j.json) {
                        j.json["status"] = json!("Stopped");
                    }
                    reply(StatusCode::OK, json!({}), None)
                }
                None => error(
                    StatusCode::NOT_FOUND,
                    "ResourceNotFoundException",
                    "job not found",
                ),
            }
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "UnknownOperationException",
            "no such route",
        ),
    }
}

fn over(j: &Value) -> bool {
    matches!(
        j["status"].as_str(),
        Some("Completed" | "PartiallyCompleted" | "Failed" | "Stopped" | "Expired")
    )
}

async fn create(state: &State, body: &[u8]) -> Resp {
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "ValidationException",
            "body is not JSON",
        );
    };
    let role = req["roleArn"].as_str().unwrap_or("");
    if !role.starts_with("arn:aws:iam::") {
        return error(
            StatusCode::BAD_REQUEST,
            "ValidationException",
            "1 validation error detected: Value at 'roleArn' failed to satisfy constraint",
        );
    }
    let input = req["inputDataConfig"]["s3InputDataConfig"]["s3Uri"]
        .as_str()
        .unwrap_or("");
    let output = req["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"]
        .as_str()
        .unwrap_or("");
    let name = req["jobName"].as_str().unwrap_or("");
    if !input.starts_with("s3://") || !output.starts_with("s3://") || name.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "ValidationException",
            "jobName, inputDataConfig and outputDataConfig (s3:// URIs) are required",
        );
    }
    let token = req["clientRequestToken"].as_str().map(str::to_string);
    let mut store = state.bedrock_jobs.lock().await;
    if let Some((arn, _)) = store
        .jobs
        .iter()
        .find(|(_, j)| token.is_some() && j.token == token)
    {
        return reply(StatusCode::OK, json!({"jobArn": arn}), None);
    }
    let number = state.c.batches_created.fetch_add(1, SeqCst) + 1;
    let arn = format!(
        "arn:aws:bedrock:{}:123456789012:model-invocation-job/job{number:08}",
        state.opts.aws_region
    );
    let json = json!({
        "jobArn": arn,
        "jobName": name,
        "modelId": req["modelId"],
        "roleArn": role,
        "status": "Submitted",
        "submitTime": number,
        "inputDataConfig": req["inputDataConfig"],
        "outputDataConfig": req["outputDataConfig"],
    });
    store.jobs.insert(
        arn.clone(),
        Job {
            json,
            token,
            created: Instant::now(),
            number,
        },
    );
    reply(StatusCode::OK, json!({"jobArn": arn}), None)
}

async fn list(state: &State, query: &str) -> Resp {
    let contains = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("nameContains="))
        .map(decode)
        .unwrap_or_default();
    let store = state.bedrock_jobs.lock().await;
    let jobs: Vec<Value> = store
        .jobs
        .values()
        .rev()
        .filter(|j| j.json["jobName"].as_str().unwrap_or("").contains(&contains))
        .map(|j| j.json.clone())
        .collect();
    reply(
        StatusCode::OK,
        json!({"invocationJobSummaries": jobs}),
        None,
    )
}

/// Runs every job not over to its end, whatever the time: what Bedrock
/// bills once its window has passed, for `/stats?settle`.
pub(super) async fn settle(state: &State) {
    let arns: Vec<String> = state
        .bedrock_jobs
        .lock()
        .await
        .jobs
        .keys()
        .cloned()
        .collect();
    for arn in arns {
        // Submitted -> InProgress (or Failed) -> over.
        advance(state, &arn, true).await;
        advance(state, &arn, true).await;
    }
}

/// Runs a job whose time has come (or, with `now`, at once).
async fn advance(state: &State, arn: &str, now: bool) {
    let (input, output, model, fate) = {
        let mut store = state.bedrock_jobs.lock().await;
        let Some(j) = store.jobs.get_mut(arn) else {
            return;
        };
        let fate = state.opts.fate(j.number);
        match j.json["status"].as_str() {
            Some("Submitted") if fate == Fate::Fail => {
                j.json["status"] = json!("Failed");
                j.json["message"] = json!(
                    "Job failed: the number of in-progress and submitted batch inference jobs \
                     for this model exceeds the account's quota"
                );
                return;
            }
            Some("Submitted") => {
                j.json["status"] = json!("InProgress");
                return;
            }
            Some("InProgress") => {}
            _ => return,
        }
        if !now && j.created.elapsed().as_secs_f64() < state.opts.batch_seconds {
            return;
        }
        (
            j.json["inputDataConfig"]["s3InputDataConfig"]["s3Uri"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            j.json["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            j.json["modelId"].as_str().unwrap_or("").to_string(),
            fate,
        )
    };
    let fail = |message: String| async move {
        let mut store = state.bedrock_jobs.lock().await;
        if let Some(j) = store.jobs.get_mut(arn) {
            j.json["status"] = json!("Failed");
            j.json["message"] = json!(message);
        }
    };
    let Some(s3) = state.opts.s3_endpoint.clone() else {
        return fail("the test server has no --s3-endpoint".into()).await;
    };
    let Some((in_bucket, in_key)) = input.trim_start_matches("s3://").split_once('/') else {
        return fail(format!("bad input URI {input}")).await;
    };
    let records = match s3_request(state, &s3, "GET", in_bucket, in_key, None).await {
        Ok(b) => b,
        Err(e) => return fail(format!("reading {input}: {e}")).await,
    };
    let lines: Vec<&[u8]> = records
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let keep = done_of(fate, lines.len());
    let expire = matches!(fate, Fate::Expire(_));
    let path = format!("/model/{}/invoke", model.replace(':', "%3A"));
    let mut out = String::new();
    let (mut ok, mut errors) = (0u64, 0u64);
    for line in lines.iter().take(keep) {
        let Ok(rec) = serde_json::from_slice::<Value>(line) else {
            errors += 1;
            continue;
        };
        state.c.batch_requests.fetch_add(1, SeqCst);
        let body = Bytes::from(rec["modelInput"].to_string());
        let (status, answer) = super::answer_json(state, &path, body).await;
        let record = if status == 200 {
            ok += 1;
            json!({"recordId": rec["recordId"], "modelInput": rec["modelInput"], "modelOutput": answer})
        } else {
            errors += 1;
            json!({"recordId": rec["recordId"], "modelInput": rec["modelInput"],
                   "error": {"errorCode": status, "errorMessage": answer["message"]}})
        };
        out.push_str(&record.to_string());
        out.push('\n');
    }
    let job_id = arn.rsplit('/').next().unwrap_or("job");
    let file = in_key.rsplit('/').next().unwrap_or("input.jsonl");
    let Some((out_bucket, out_prefix)) = output.trim_start_matches("s3://").split_once('/') else {
        return fail(format!("bad output URI {output}")).await;
    };
    let folder = format!("{}/{job_id}", out_prefix.trim_end_matches('/'));
    let folder = folder.trim_start_matches('/').to_string();
    let manifest = json!({"totalRecordCount": lines.len(), "processedRecordCount": keep,
                          "successRecordCount": ok, "errorRecordCount": errors});
    for (key, body) in [
        (format!("{folder}/{file}.out"), out.into_bytes()),
        (
            format!("{folder}/manifest.json.out"),
            manifest.to_string().into_bytes(),
        ),
    ] {
        if let Err(e) = s3_request(state, &s3, "PUT", out_bucket, &key, Some(body)).await {
            return fail(format!("writing s3://{out_bucket}/{key}: {e}")).await;
        }
    }
    let mut store = state.bedrock_jobs.lock().await;
    if let Some(j) = store.jobs.get_mut(arn)
        && j.json["status"] == "InProgress"
    {
        j.json["status"] = json!(if expire {
            "Expired"
        } else if errors > 0 {
            "PartiallyCompleted"
        } else {
            "Completed"
        });
    }
}

/// One HTTP/1.1 request to the S3-compatible server (path style), signed
/// with the server's AWS keys when it has them.
async fn s3_request(
    state: &State,
    endpoint: &str,
    method: &str,
    bucket: &str,
    key: &str,
    body: Option<Vec<u8>>,
) -> anyhow::Result<Vec<u8>> {
    let host = endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let mut stream = tokio::net::TcpStream::connect(&host).await?;
    let body = body.unwrap_or_default();
    let path = format!("/{bucket}/{key}");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if let (Some(id), Some(secret)) = (
        &state.opts.aws_access_key_id,
        &state.opts.aws_secret_access_key,
    ) {
        for (k, v) in super::sigv4::s3_headers(
            method,
            &host,
            &path,
            &body,
            id,
            secret,
            &state.opts.aws_region,
        ) {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&body).await?;
    let mut resp = Vec::new();
    stream.read_to_end(&mut resp).await?;
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no HTTP answer"))?;
    let headers = String::from_utf8_lossy(&resp[..split]).to_ascii_lowercase();
    let status: u16 = headers
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut content = resp[split + 4..].to_vec();
    if headers.contains("transfer-encoding: chunked") {
        content = dechunk(&content);
    }
    if !(200..300).contains(&status) {
        anyhow::bail!("{status}: {}", String::from_utf8_lossy(&content));
    }
    Ok(content)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = eol + 2;
        out.extend_from_slice(&b[start..(start + size).min(b.len())]);
        b = &b[(start + size + 2).min(b.len())..];
    }
    out
}
