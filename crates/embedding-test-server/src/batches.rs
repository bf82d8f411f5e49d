//! OpenAI's Files and Batches APIs (`--protocol openai`): request files
//! uploaded as multipart with purpose `batch`, batches that go
//! `validating` -> `in_progress` -> `completed` after `--batch-seconds`,
//! each request line answered exactly as `POST /v1/embeddings` would be
//! (so the vectors are the same pure function of the text), output and
//! error files, cancellation, and listing newest first. The first
//! `--batch-expire-first` batches expire with `--batch-expire-done` of
//! their requests done, the rest in the error file as `batch_expired` (no
//! output file when none is done); the next `--batch-fail-first` fail
//! validation with `token_limit_exceeded` and run nothing.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Response, StatusCode};
use serde_json::{Value, json};

use super::{Fate, Resp, State, done_of, reply};

#[derive(Default)]
pub(super) struct Store {
    files: BTreeMap<String, Bytes>,
    batches: BTreeMap<String, Batch>,
    next: u64,
}

struct Batch {
    json: Value,
    created: Instant,
    /// Which batch this is (1, 2, ...): what becomes of it (`Opts::fate`).
    number: u64,
}

fn not_found(what: &str) -> Resp {
    reply(
        StatusCode::NOT_FOUND,
        json!({"error": {"message": format!("No such {what}"), "type": "invalid_request_error"}}),
        None,
    )
}

fn bad(msg: &str) -> Resp {
    reply(
        StatusCode::BAD_REQUEST,
        json!({"error": {"message": msg, "type": "invalid_request_error"}}),
        None,
    )
}

/// Whether this request is one of the batch routes.
pub(super) fn handles(path: &str) -> bool {
    path.starts_with("/v1/files") || path.starts_with("/v1/batches")
}

pub(super) async fn handle(
    state: &State,
    method: &Method,
    path: &str,
    query: &str,
    content_type: &str,
    body: Bytes,
) -> Resp {
    let parts: Vec<&str> = path.trim_start_matches("/v1/").split('/').collect();
    match (method, parts.as_slice()) {
        (&Method::POST, ["files"]) => upload(state, content_type, &body).await,
        (&Method::GET, ["files", id, "content"]) => {
            let store = state.batches.lock().await;
            match store.files.get(*id) {
                Some(b) => Response::builder()
                    .header("content-type", "application/octet-stream")
                    .body(Full::new(b.clone()))
                    .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))),
                None => not_found("file"),
            }
        }
        (&Method::POST, ["batches"]) => create(state, &body).await,
        (&Method::GET, ["batches"]) => list(state, query).await,
        (&Method::GET, ["batches", id]) => {
            state.c.batch_polls.fetch_add(1, SeqCst);
            advance(state, id, false).await;
            let store = state.batches.lock().await;
            match store.batches.get(*id) {
                Some(b) => reply(StatusCode::OK, b.json.clone(), None),
                None => not_found("batch"),
            }
        }
        (&Method::POST, ["batches", id, "cancel"]) => {
            let mut store = state.batches.lock().await;
            match store.batches.get_mut(*id) {
                Some(b) => {
                    if !matches!(
                        b.json["status"].as_str(),
                        Some("completed" | "expired" | "failed" | "cancelled")
                    ) {
                        b.json["status"] = json!("cancelled");
                    }
                    reply(StatusCode::OK, b.json.clone(), None)
                }
                None => not_found("batch"),
            }
        }
        _ => not_found("route"),
    }
}

/// multipart/form-data with a `purpose` of `batch` and a `file`.
async fn upload(state: &State, content_type: &str, body: &[u8]) -> Resp {
    let Some(boundary) = content_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
    else {
        return bad("expected multipart/form-data with a boundary");
    };
    let delim = format!("--{boundary}");
    let text = body;
    let mut purpose = None;
    let mut file = None;
    let mut rest = text;
    while let Some(start) = find(rest, delim.as_bytes()) {
        rest = &rest[start + delim.len()..];
        if rest.starts_with(b"--") {
            break;
        }
        let Some(head_end) = find(rest, b"\r\n\r\n") else {
            break;
        };
        let head = String::from_utf8_lossy(&rest[..head_end]).to_string();
        let content = &rest[head_end + 4..];
        let Some(end) = find(content, format!("\r\n{delim}").as_bytes()) else {
            break;
        };
        let value = &content[..end];
        if head.contains("name=\"purpose\"") {
            purpose = Some(String::from_utf8_lossy(value).to_string());
        } else if head.contains("name=\"file\"") {
            file = Some(Bytes::copy_from_slice(value));
        }
        rest = &content[end + 2..];
    }
    if purpose.as_deref() != Some("batch") {
        return bad("purpose must be 'batch'");
    }
    let Some(file) = file else {
        return bad("no file part");
    };
    let bytes = file.len();
    let id = {
        let mut store = state.batches.lock().await;
        store.next += 1;
        let id = format!("file-{:06}", store.next);
        store.files.insert(id.clone(), file);
        id
    };
    reply(
        StatusCode::OK,
        json!({"id": id, "object": "file", "bytes": bytes, "purpose": "batch"}),
        None,
    )
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

async fn create(state: &State, body: &[u8]) -> Resp {
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        return bad("body is not JSON");
    };
    if req["endpoint"] != "/v1/embeddings" && req["endpoint"] != "/v1/chat/completions" {
        return bad("endpoint must be /v1/embeddings or /v1/chat/completions");
    }
    if req["completion_window"] != "24h" {
        return bad("completion_window must be 24h");
    }
    let file_id = req["input_file_id"].as_str().unwrap_or("").to_string();
    let mut store = state.batches.lock().await;
    let Some(file) = store.files.get(&file_id) else {
        return not_found("file");
    };
    let total = file
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    store.next += 1;
    let id = format!("batch_{:06}", store.next);
    let number = state.c.batches_created.fetch_add(1, SeqCst) + 1;
    let json = json!({
        "id": id,
        "object": "batch",
        "endpoint": req["endpoint"],
        "input_file_id": file_id,
        "completion_window": "24h",
        "status": "validating",
        "output_file_id": null,
        "error_file_id": null,
        "created_at": number,
        "request_counts": {"total": total, "completed": 0, "failed": 0},
        "metadata": req.get("metadata").cloned().unwrap_or(Value::Null),
    });
    store.batches.insert(
        id,
        Batch {
            json: json.clone(),
            created: Instant::now(),
            number,
        },
    );
    reply(StatusCode::OK, json, None)
}

async fn list(state: &State, query: &str) -> Resp {
    let arg = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")).map(str::to_string))
    };
    let limit: usize = arg("limit").and_then(|l| l.parse().ok()).unwrap_or(20);
    let after = arg("after");
    let store = state.batches.lock().await;
    // Newest first, as OpenAI lists them.
    let all: Vec<&Value> = store.batches.values().rev().map(|b| &b.json).collect();
    let start = match &after {
        Some(a) => all
            .iter()
            .position(|b| b["id"] == a.as_str())
            .map_or(all.len(), |p| p + 1),
        None => 0,
    };
    let page: Vec<Value> = all
        .iter()
        .skip(start)
        .take(limit)
        .map(|b| (*b).clone())
        .collect();
    let has_more = start + page.len() < all.len();
    reply(
        StatusCode::OK,
        json!({
            "object": "list",
            "first_id": page.first().map(|b| b["id"].clone()),
            "last_id": page.last().map(|b| b["id"].clone()),
            "has_more": has_more,
            "data": page,
        }),
        None,
    )
}

/// Runs every batch not over to its end, whatever the time: what the
/// provider bills once its window has passed, for `/stats?settle`.
pub(super) async fn settle(state: &State) {
    let ids: Vec<String> = state.batches.lock().await.batches.keys().cloned().collect();
    for id in ids {
        // validating -> in_progress (or failed) -> over.
        advance(state, &id, true).await;
        advance(state, &id, true).await;
    }
}

/// Runs a batch whose time has come (or, with `now`, at once): every line
/// answered as the synchronous route answers it.
async fn advance(state: &State, id: &str, now: bool) {
    let (input, fate) = {
        let mut store = state.batches.lock().await;
        let Some(b) = store.batches.get_mut(id) else {
            return;
        };
        let fate = state.opts.fate(b.number);
        match b.json["status"].as_str() {
            Some("validating") if fate == Fate::Fail => {
                b.json["status"] = json!("failed");
                b.json["errors"] = json!({"object": "list", "data": [{
                    "code": "token_limit_exceeded",
                    "message": "Enqueued token limit reached for text-embedding-3-small in \
                                organization org-test. Limit: 3,000,000 enqueued tokens. Please \
                                try again once some in_progress batches have been completed.",
                    "param": null,
                    "line": null,
                }]});
                b.json["request_counts"]["total"] = json!(0);
                return;
            }
            Some("validating") => {
                b.json["status"] = json!("in_progress");
                return;
            }
            Some("in_progress") => {}
            _ => return,
        }
        if !now && b.created.elapsed().as_secs_f64() < state.opts.batch_seconds {
            return;
        }
        let file_id = b.json["input_file_id"].as_str().unwrap_or("").to_string();
        (store.files.get(&file_id).cloned().unwrap_or_default(), fate)
    };
    let expire = matches!(fate, Fate::Expire(_));
    let lines: Vec<&[u8]> = input
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let (mut output, mut errors) = (Vec::new(), Vec::new());
    let (mut completed, mut failed) = (0u64, 0u64);
    let keep = done_of(fate, lines.len());
    for (i, line) in lines.iter().enumerate() {
        let Ok(req) = serde_json::from_slice::<Value>(line) else {
            failed += 1;
            continue;
        };
        let custom_id = req["custom_id"].clone();
        if i >= keep {
            failed += 1;
            errors.push(json!({
                "id": format!("batch_req_{i}"),
                "custom_id": custom_id,
                "response": null,
                "error": {"code": "batch_expired", "message": "This request could not be executed before the completion window expired."},
            }));
            continue;
        }
        if req["url"] != "/v1/embeddings" || req["method"] != "POST" {
            failed += 1;
            errors.push(json!({"custom_id": custom_id, "response": null, "error": {"code": "invalid_url", "message": "url must be /v1/embeddings"}}));
            continue;
        }
        let body = Bytes::from(req["body"].to_string());
        state.c.batch_requests.fetch_add(1, SeqCst);
        let (status, body) = super::answer_json(state, "/v1/embeddings", body).await;
        let line = json!({
            "id": format!("batch_req_{i}"),
            "custom_id": custom_id,
            "response": {"status_code": status, "request_id": format!("req_{i}"), "body": body},
            "error": null,
        });
        if status == 200 {
            completed += 1;
            output.push(line);
        } else {
            failed += 1;
            errors.push(line);
        }
    }
    let mut store = state.batches.lock().await;
    let jsonl = |v: &[Value]| {
        let mut s = String::new();
        for l in v {
            s.push_str(&l.to_string());
            s.push('\n');
        }
        Bytes::from(s)
    };
    // A batch that ran nothing has no output file, as OpenAI's.
    let out_id = (!output.is_empty()).then(|| {
        store.next += 1;
        format!("file-{:06}", store.next)
    });
    if let Some(o) = &out_id {
        store.files.insert(o.clone(), jsonl(&output));
    }
    let err_id = (!errors.is_empty()).then(|| {
        store.next += 1;
        format!("file-{:06}", store.next)
    });
    if let Some(e) = &err_id {
        store.files.insert(e.clone(), jsonl(&errors));
    }
    if let Some(b) = store.batches.get_mut(id) {
        // A batch cancelled while it ran keeps that status.
        if b.json["status"] == "in_progress" {
            b.json["status"] = json!(if expire { "expired" } else { "completed" });
        }
        b.json["output_file_id"] = json!(out_id);
        b.json["error_file_id"] = json!(err_id);
        b.json["request_counts"]["completed"] = json!(completed);
        b.json["request_counts"]["failed"] = json!(failed);
    }
}
