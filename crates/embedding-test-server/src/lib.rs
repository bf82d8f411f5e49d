//! An embedding server for tests, benchmarks and the demo that speaks the
//! real protocols: OpenAI's `POST /v1/embeddings`, text-embeddings-inference's
//! `GET /info` + `POST /embed`, Ollama's `POST /api/embed`, Bedrock's
//! InvokeModel (SigV4 checked), Azure OpenAI, Jina, Voyage, Gemini and
//! LoLLMs, each with its own request, authentication, error shapes and
//! limits (`protocol.rs`).
//!
//! Its vectors are a pure function of the input text (`vector_for`), so a
//! test can prove that every stored vector belongs to its stored content.
//! Knobs reproduce what real endpoints do: latency, answers in shuffled
//! order, errors, rate limits, wrong dimensions, NaN values, batch caps, a
//! required API key. It is not part of a load; `vecload` never starts it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use sha2::{Digest, Sha256};

mod batches;
mod bedrock_batch;
mod protocol;
pub mod sigv4;
use protocol::Fault;
pub use protocol::Protocol;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "embedding-test-server",
    about = "Embedding server (OpenAI, TEI, Ollama, Bedrock, Azure OpenAI, Jina, Voyage, Gemini or LoLLMs protocol) with deterministic vectors"
)]
pub struct Opts {
    /// Which API to speak.
    #[arg(long, value_enum, default_value_t = Protocol::Openai)]
    pub protocol: Protocol,
    /// tei: request bodies over this many bytes get TEI's 413 (its
    /// --payload-limit, 2 MB by default).
    #[arg(long, default_value_t = 2_000_000)]
    pub payload_limit: usize,
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// 0 picks a free port; the URL is printed on the first line of stdout.
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Vector length, unless the request asks for `dimensions`.
    #[arg(long, default_value_t = 16)]
    pub dim: usize,
    /// Delay before each answer.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Return `data` in random order (each item keeps its correct `index`).
    #[arg(long)]
    pub shuffle: bool,
    /// Answer the first N requests with --fail-status.
    #[arg(long, default_value_t = 0)]
    pub fail_first: u64,
    #[arg(long, default_value_t = 500)]
    pub fail_status: u16,
    /// Also answer every Nth request with --fail-status (a steady share of faults).
    #[arg(long)]
    pub fail_every: Option<u64>,
    /// Retry-After seconds sent with failures and 429s.
    #[arg(long)]
    pub retry_after: Option<u64>,
    /// Answer 429 when more than this many requests are in flight.
    #[arg(long)]
    pub capacity: Option<u64>,
    /// Require the key, where the protocol puts it: `Authorization: Bearer
    /// KEY` (azure: `api-key: KEY`; gemini: `x-goog-api-key: KEY`; lollms:
    /// `Authorization: KEY`).
    #[arg(long)]
    pub api_key: Option<String>,
    /// azure: the one deployment that exists (any, unless given).
    #[arg(long)]
    pub azure_deployment: Option<String>,
    /// Answer 400 to requests with more inputs than this (tei: its
    /// max_client_batch_size, 32 unless given, reported by /info).
    #[arg(long)]
    pub max_batch: Option<usize>,
    /// Refuse an input longer than this many bytes as over the model's
    /// limit, in the protocol's words (tei reports it as max_input_length
    /// tokens of 4 bytes). tei and ollama cut the input to it instead when
    /// the request asks to truncate.
    #[arg(long)]
    pub max_input_bytes: Option<usize>,
    /// Inputs containing this text get a NaN in their vector (written as
    /// `null`, as orjson does; JSON has no NaN).
    #[arg(long)]
    pub nan_on: Option<String>,
    /// Answer with vectors of this length whatever is asked.
    #[arg(long)]
    pub force_dim: Option<usize>,
    /// Vectors depend on the model named in the request, as a real
    /// endpoint's do: `vector_for("{model}\0{text}")` (`model_vector_for`)
    /// for every model but an empty one. Off, a text's vector is the same
    /// whatever the model.
    #[arg(long)]
    pub model_vectors: bool,
    /// Refuse `encoding_format: "base64"` with a 400, as some
    /// OpenAI-compatible servers do.
    #[arg(long)]
    pub float_only: bool,
    /// bedrock: the access key id requests must be signed with (SigV4 is
    /// checked when this and --aws-secret-access-key are given).
    #[arg(long)]
    pub aws_access_key_id: Option<String>,
    #[arg(long)]
    pub aws_secret_access_key: Option<String>,
    /// bedrock: the region requests must be signed for.
    #[arg(long, default_value = "us-east-1")]
    pub aws_region: String,
    /// bedrock: a Bedrock API key accepted as `Authorization: Bearer KEY`;
    /// azure: a Microsoft Entra ID token accepted the same way.
    #[arg(long)]
    pub bearer_token: Option<String>,
    /// bedrock: answer AccessDeniedException for this model id (model
    /// access not granted).
    #[arg(long)]
    pub deny_model: Option<String>,
    /// openai: seconds a batch stays in progress before it is run.
    #[arg(long, default_value_t = 1.0)]
    pub batch_seconds: f64,
    /// openai, bedrock: the first N batches expire with part of their
    /// requests done (--batch-expire-done).
    #[arg(long, default_value_t = 0)]
    pub batch_expire_first: u64,
    /// openai, bedrock: the share of an expiring batch's requests that are
    /// done (0: none, the output file empty).
    #[arg(long, default_value_t = 0.5)]
    pub batch_expire_done: f64,
    /// openai, bedrock: the first N batches fail validation and run nothing
    /// (openai: `token_limit_exceeded`, as when the account's enqueued-token
    /// limit is reached; bedrock: `Failed` with a quota message). Counted
    /// after the expiring ones: batch numbers expire_first+1 ..= expire_first+N.
    #[arg(long, default_value_t = 0)]
    pub batch_fail_first: u64,
    /// bedrock: the S3-compatible server batch inference jobs read their
    /// records from and write their output to (http://HOST:PORT, path style).
    #[arg(long)]
    pub s3_endpoint: Option<String>,
}

/// What becomes of the `number`th batch made (1, 2, ...): the first
/// `--batch-expire-first` expire with `--batch-expire-done` of their
/// requests done, the next `--batch-fail-first` fail validation.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fate {
    Run,
    /// Expires with this share of its requests done.
    Expire(f64),
    Fail,
}

impl Opts {
    fn fate(&self, number: u64) -> Fate {
        if number <= self.batch_expire_first {
            Fate::Expire(self.batch_expire_done.clamp(0.0, 1.0))
        } else if number <= self.batch_expire_first + self.batch_fail_first {
            Fate::Fail
        } else {
            Fate::Run
        }
    }
}

/// Of `total` requests, how many a batch with this fate runs.
fn done_of(fate: Fate, total: usize) -> usize {
    match fate {
        Fate::Run => total,
        Fate::Expire(share) => (total as f64 * share).floor() as usize,
        Fate::Fail => 0,
    }
}

/// The vector for `text`: unit length, derived from SHA-256 of the text.
/// `--model-vectors`: the vector model `model` gives `text`.
pub fn model_vector_for(model: &str, text: &str, dim: usize) -> Vec<f32> {
    vector_for(&format!("{model}\0{text}"), dim)
}

pub fn vector_for(text: &str, dim: usize) -> Vec<f32> {
    let seed = Sha256::digest(text.as_bytes());
    let mut state = u64::from_le_bytes(seed[..8].try_into().unwrap_or([1; 8])) | 1;
    let mut v: Vec<f32> = (0..dim)
        .map(|_| {
            // xorshift64*: cheap, deterministic, good enough spread.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let x = state.wrapping_mul(0x2545_F491_4F6C_DD1D);
            ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    let norm = v
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::MIN_POSITIVE);
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    inputs: AtomicU64,
    rejected: AtomicU64,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    /// Most inputs seen in one request.
    max_batch: AtomicU64,
    /// Requests that asked the server to truncate.
    truncating: AtomicU64,
    /// Inputs of successful answers, and the span from the first request's
    /// arrival to the last successful answer (microseconds since start + 1;
    /// 0 is unset): a client's sustained rate, without its start-up and
    /// shut-down.
    inputs_ok: AtomicU64,
    /// Successful answers with base64 vectors.
    base64: AtomicU64,
    /// Requests refused for their signature or key (bedrock).
    auth_refused: AtomicU64,
    first_us: AtomicU64,
    last_us: AtomicU64,
    /// Batches made (`POST /v1/batches`), request lines they ran and the
    /// inputs of those lines (what a batch is billed for), and how often a
    /// batch was asked about (`GET`: a client polls only a batch it recorded).
    batches_created: AtomicU64,
    batch_requests: AtomicU64,
    batch_inputs: AtomicU64,
    batch_polls: AtomicU64,
}

struct State {
    started: std::time::Instant,
    opts: Opts,
    c: Counters,
    /// Ollama embeds one request at a time.
    serial: tokio::sync::Mutex<()>,
    /// Inputs embedded per task (`none` without one), and the last input
    /// embedded: what a test checks a question was sent as.
    tasks: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
    last_input: std::sync::Mutex<String>,
    batches: tokio::sync::Mutex<batches::Store>,
    bedrock_jobs: tokio::sync::Mutex<bedrock_batch::Store>,
}

type Resp = Response<Full<Bytes>>;

fn reply(status: StatusCode, body: serde_json::Value, retry_after: Option<u64>) -> Resp {
    let mut b = Response::builder()
        .status(status)
        .header("content-type", "application/json");
    if let Some(s) = retry_after {
        b = b.header("retry-after", s.to_string());
    }
    b.body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Resp, Infallible> {
    let path = req.uri().path().to_string();
    let proto = state.opts.protocol;
    if req.method() == Method::GET && path == "/stats" {
        // `?settle`: every batch still open is first run to its end, as
        // the provider runs (and bills) it whether or not anyone asks.
        if req.uri().query().is_some_and(|q| q.contains("settle")) {
            batches::settle(&state).await;
            bedrock_batch::settle(&state).await;
        }
        let c = &state.c;
        return Ok(reply(
            StatusCode::OK,
            json!({
                "requests": c.requests.load(SeqCst),
                "inputs": c.inputs.load(SeqCst),
                "rejected": c.rejected.load(SeqCst),
                "max_in_flight": c.max_in_flight.load(SeqCst),
                "max_batch": c.max_batch.load(SeqCst),
                "truncating": c.truncating.load(SeqCst),
                "inputs_ok": c.inputs_ok.load(SeqCst),
                "base64_answers": c.base64.load(SeqCst),
                "auth_refused": c.auth_refused.load(SeqCst),
                "batches_created": c.batches_created.load(SeqCst),
                "batch_requests": c.batch_requests.load(SeqCst),
                "batch_inputs": c.batch_inputs.load(SeqCst),
                "batch_polls": c.batch_polls.load(SeqCst),
                "busy_seconds": c.last_us.load(SeqCst).saturating_sub(c.first_us.load(SeqCst)) as f64 / 1e6,
                "tasks": state.tasks.lock().map(|t| json!(*t)).unwrap_or_default(),
                "last_input": state.last_input.lock().map(|l| l.clone()).unwrap_or_default(),
            }),
            None,
        ));
    }
    if proto == Protocol::Openai && batches::handles(&path) {
        if let Some(key) = &state.opts.api_key {
            let auth = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if auth != format!("Bearer {key}") {
                state.c.auth_refused.fetch_add(1, SeqCst);
                return Ok(protocol::error(
                    proto,
                    Fault::Auth,
                    "Incorrect API key provided",
                    None,
                ));
            }
        }
        let method = req.method().clone();
        let query = req.uri().query().unwrap_or("").to_string();
        let content_type = req
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = match req.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                return Ok(protocol::error(
                    proto,
                    Fault::BadRequest,
                    "could not read body",
                    None,
                ));
            }
        };
        return Ok(batches::handle(&state, &method, &path, &query, &content_type, body).await);
    }
    if proto == Protocol::Bedrock && bedrock_batch::handles(&path) {
        let method = req.method().clone();
        let query = req.uri().query().unwrap_or("").to_string();
        let (parts, body) = req.into_parts();
        let body = match body.collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                return Ok(protocol::error(
                    proto,
                    Fault::BadRequest,
                    "could not read body",
                    None,
                ));
            }
        };
        if let Err(refused) = bedrock_auth(&state.opts, &parts, &body) {
            state.c.auth_refused.fetch_add(1, SeqCst);
            return Ok(*refused);
        }
        return Ok(bedrock_batch::handle(&state, &method, &path, &query, &body).await);
    }
    if proto == Protocol::Tei && req.method() == Method::GET && path == "/info" {
        return Ok(reply(StatusCode::OK, protocol::tei_info(&state.opts), None));
    }
    if req.method() != Method::POST || !proto.accepts(&path) {
        return Ok(protocol::error(
            proto,
            Fault::NotFound,
            "no such route",
            None,
        ));
    }
    let c = &state.c;
    let since = |s: &State| s.started.elapsed().as_micros() as u64 + 1;
    let _ = c
        .first_us
        .compare_exchange(0, since(&state), SeqCst, SeqCst);
    let n = c.requests.fetch_add(1, SeqCst) + 1;
    let now = c.in_flight.fetch_add(1, SeqCst) + 1;
    c.max_in_flight.fetch_max(now, SeqCst);
    let resp = embeddings(&state, req, Some(n), now).await;
    c.in_flight.fetch_sub(1, SeqCst);
    if !resp.status().is_success() {
        c.rejected.fetch_add(1, SeqCst);
    } else {
        c.last_us.fetch_max(since(&state), SeqCst);
    }
    Ok(resp)
}

/// Bedrock's authentication: a valid SigV4 signature for the configured
/// keys, or the Bedrock API key as a bearer token.
fn bedrock_auth(
    o: &Opts,
    parts: &hyper::http::request::Parts,
    body: &[u8],
) -> Result<(), Box<Resp>> {
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .filter_map(|(k, v)| {
            Some((
                k.as_str().to_ascii_lowercase(),
                v.to_str().ok()?.to_string(),
            ))
        })
        .collect();
    let auth = headers
        .iter()
        .find(|(k, _)| k == "authorization")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    if let Some(token) = &o.bearer_token
        && auth == format!("Bearer {token}")
    {
        return Ok(());
    }
    let (Some(id), Some(secret)) = (&o.aws_access_key_id, &o.aws_secret_access_key) else {
        return Ok(());
    };
    let want = sigv4::Expected {
        key_id: id,
        secret,
        region: &o.aws_region,
        service: "bedrock",
    };
    let path = parts.uri.path();
    let query = parts.uri.query().unwrap_or("");
    match sigv4::verify(
        parts.method.as_str(),
        path,
        query,
        &headers,
        body,
        &want,
        std::time::SystemTime::now(),
    ) {
        Ok(()) => Ok(()),
        Err(sigv4::Refusal::UnrecognizedClient(m)) => Err(Box::new(protocol::bedrock_error(
            StatusCode::FORBIDDEN,
            "UnrecognizedClientException",
            &m,
        ))),
        Err(sigv4::Refusal::InvalidSignature(m)) => Err(Box::new(protocol::bedrock_error(
            StatusCode::FORBIDDEN,
            "InvalidSignatureException",
            &m,
        ))),
    }
}

async fn embeddings(state: &State, req: Request<Incoming>, n: Option<u64>, in_flight: u64) -> Resp {
    let o = &state.opts;
    let proto = o.protocol;
    let fail = |fault: Fault, msg: &str| protocol::error(proto, fault, msg, None);
    let path = req.uri().path().to_string();
    if proto == Protocol::Bedrock {
        let (parts, body) = req.into_parts();
        let body = match body.collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return fail(Fault::BadRequest, "could not read body"),
        };
        if let Err(refused) = bedrock_auth(o, &parts, &body) {
            state.c.auth_refused.fetch_add(1, SeqCst);
            return *refused;
        }
        if o.deny_model
            .as_deref()
            .is_some_and(|m| path.contains(&m.replace(':', "%3A")))
        {
            return protocol::bedrock_error(
                StatusCode::FORBIDDEN,
                "AccessDeniedException",
                "You don't have access to the model with the specified model ID.",
            );
        }
        return answer(state, &path, body, n, in_flight).await;
    }
    let azure_keys = proto == Protocol::Azure && (o.api_key.is_some() || o.bearer_token.is_some());
    if o.api_key.is_some() || azure_keys {
        let key = o.api_key.clone().unwrap_or_default();
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let ok = match proto {
            // A resource key in `api-key`, or a Microsoft Entra ID token.
            Protocol::Azure => {
                (o.api_key.is_some() && header("api-key") == key)
                    || o.bearer_token
                        .as_ref()
                        .is_some_and(|t| header("authorization") == format!("Bearer {t}"))
            }
            Protocol::Gemini => header("x-goog-api-key") == key,
            Protocol::Lollms => header("authorization") == key,
            _ => header("authorization") == format!("Bearer {key}"),
        };
        if !ok {
            state.c.auth_refused.fetch_add(1, SeqCst);
            return fail(Fault::Auth, "Incorrect API key provided");
        }
    }
    if proto == Protocol::Azure {
        let query = req.uri().query().unwrap_or("");
        let deployment = path
            .trim_start_matches("/openai/deployments/")
            .trim_end_matches("/embeddings");
        if !query
            .split('&')
            .any(|kv| kv.starts_with("api-version=") && kv.len() > 12)
        {
            return fail(Fault::NotFound, "");
        }
        if o.azure_deployment
            .as_deref()
            .is_some_and(|d| d != deployment)
        {
            return protocol::error(
                proto,
                Fault::Status(StatusCode::NOT_FOUND),
                "The API deployment for this resource does not exist. If you created the deployment within the last 5 minutes, please wait a moment and try again.",
                None,
            );
        }
    }
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return fail(Fault::BadRequest, "could not read body"),
    };
    answer(state, &path, body, n, in_flight).await
}

/// The answer to an authenticated request's body: the `n`th request, or
/// (None) a batch's line, which gets no latency, capacity limit or
/// injected fault.
async fn answer(state: &State, path: &str, body: Bytes, n: Option<u64>, in_flight: u64) -> Resp {
    let o = &state.opts;
    let proto = o.protocol;
    let fail = |fault: Fault, msg: &str| protocol::error(proto, fault, msg, None);
    if proto == Protocol::Tei && body.len() > o.payload_limit {
        return fail(Fault::Payload, "");
    }
    if let Some(cap) = o.capacity
        && in_flight > cap
        && n.is_some()
    {
        return protocol::error(
            proto,
            Fault::Overloaded,
            "Rate limit reached",
            o.retry_after,
        );
    }
    // Ollama runs one request at a time: later ones wait their turn.
    let _turn = match proto {
        Protocol::Ollama => Some(state.serial.lock().await),
        _ => None,
    };
    if o.latency_ms > 0 && n.is_some() {
        tokio::time::sleep(Duration::from_millis(o.latency_ms)).await;
    }
    if let Some(n) = n
        && (n <= o.fail_first || o.fail_every.is_some_and(|k| k > 0 && n.is_multiple_of(k)))
    {
        let status =
            StatusCode::from_u16(o.fail_status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return protocol::error(
            proto,
            Fault::Status(status),
            "injected failure",
            o.retry_after,
        );
    }
    let parsed = match protocol::parse(proto, path, &body) {
        Ok(p) => p,
        Err(msg) => return fail(Fault::BadRequest, &msg),
    };
    if !matches!(proto, Protocol::Tei | Protocol::Azure)
        && parsed.model.as_deref().is_none_or(str::is_empty)
    {
        return fail(Fault::BadRequest, "you must provide a model parameter");
    }
    let mut inputs = parsed.inputs;
    if inputs.is_empty() || inputs.iter().any(String::is_empty) {
        return fail(Fault::Empty, "empty input");
    }
    state.c.max_batch.fetch_max(inputs.len() as u64, SeqCst);
    if parsed.truncate {
        state.c.truncating.fetch_add(1, SeqCst);
    }
    let bedrock_limits = parsed.bedrock.map(|(f, _)| f.limits());
    let max_batch = match proto {
        Protocol::Tei => Some(o.max_batch.unwrap_or(32)),
        Protocol::Bedrock => o.max_batch.or(bedrock_limits.map(|l| l.0)),
        Protocol::Gemini => Some(o.max_batch.unwrap_or(100)),
        Protocol::Voyage => Some(o.max_batch.unwrap_or(1000)),
        Protocol::Azure => Some(o.max_batch.unwrap_or(2048)),
        _ => o.max_batch,
    };
    if let Some(max) = max_batch
        && inputs.len() > max
    {
        return fail(
            Fault::TooManyInputs {
                got: inputs.len(),
                max,
            },
            "",
        );
    }
    let max_input = match proto {
        Protocol::Bedrock => o.max_input_bytes.or(bedrock_limits.map(|l| l.1)),
        _ => o.max_input_bytes,
    };
    if let Some(max) = max_input {
        if parsed.truncate {
            for input in &mut inputs {
                let mut cut = max.min(input.len());
                while !input.is_char_boundary(cut) {
                    cut -= 1;
                }
                input.truncate(cut);
            }
        } else if let Some(long) = inputs.iter().map(|i| i.len()).filter(|&n| n > max).max() {
            return fail(Fault::TooLong { got: long, max }, "");
        }
    }
    state.c.inputs.fetch_add(inputs.len() as u64, SeqCst);
    if n.is_none() {
        state.c.batch_inputs.fetch_add(inputs.len() as u64, SeqCst);
    }
    // Counted as answered here; an answer failing after this point is
    // counted in `rejected` as well.
    state.c.inputs_ok.fetch_add(inputs.len() as u64, SeqCst);
    let dim = o.force_dim.or(parsed.dimensions).unwrap_or(o.dim);
    let bedrock = parsed.bedrock;
    let task = parsed.task;
    if let Ok(mut t) = state.tasks.lock() {
        *t.entry(task.clone().unwrap_or_else(|| "none".into()))
            .or_default() += inputs.len() as u64;
    }
    if let (Ok(mut l), Some(last)) = (state.last_input.lock(), inputs.last()) {
        last.clone_into(&mut l);
    }
    let salt = parsed
        .model
        .as_deref()
        .filter(|m| o.model_vectors && !m.is_empty());
    let vectors: Vec<Vec<Option<f32>>> = inputs
        .iter()
        .map(|text| {
            let nan = o.nan_on.as_deref().is_some_and(|m| text.contains(m));
            match (&task, salt) {
                (_, Some(m)) => model_vector_for(m, text, dim),
                (Some(t), None) => vector_for(&format!("[{t}] {text}"), dim),
                (None, None) => vector_for(text, dim),
            }
            .into_iter()
            .enumerate()
            .map(|(j, x)| if nan && j == 0 { None } else { Some(x) })
            .collect()
        })
        .collect();
    let model = parsed.model.unwrap_or_default();
    if parsed.base64 && o.float_only {
        return fail(
            Fault::Status(StatusCode::BAD_REQUEST),
            "encoding_format: only 'float' is supported",
        );
    }
    if parsed.base64 {
        state.c.base64.fetch_add(1, SeqCst);
    }
    match protocol::success(
        proto,
        bedrock,
        &inputs,
        vectors,
        model,
        o.shuffle,
        parsed.base64,
    ) {
        Ok(bytes) => Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(bytes)))
            .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))),
        Err(e) => fail(
            Fault::Status(StatusCode::INTERNAL_SERVER_ERROR),
            &e.to_string(),
        ),
    }
}

/// A batch line's answer: the synchronous route's status and JSON body.
async fn answer_json(state: &State, path: &str, body: Bytes) -> (u16, serde_json::Value) {
    let resp = answer(state, path, body, None, 1).await;
    let status = resp.status().as_u16();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

pub async fn serve(opts: Opts) -> anyhow::Result<()> {
    let addr: SocketAddr = format!("{}:{}", opts.host, opts.port).parse()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let state_protocol = opts.protocol;
    {
        use std::io::Write;
        let mut out = std::io::stdout();
        // The base URL as each provider's users write it.
        let base = match state_protocol {
            Protocol::Openai => format!("http://{local}/v1"),
            _ => format!("http://{local}"),
        };
        writeln!(out, "listening on {base}")?;
        out.flush()?;
    }
    let state = Arc::new(State {
        started: std::time::Instant::now(),
        opts,
        c: Counters::default(),
        serial: tokio::sync::Mutex::new(()),
        tasks: Default::default(),
        last_input: Default::default(),
        batches: Default::default(),
        bedrock_jobs: Default::default(),
    });
    loop {
        let (stream, _) = listener.accept().await?;
        let state = state.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(state.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_are_a_pure_unit_length_function_of_the_text() {
        let a = vector_for("hello", 32);
        assert_eq!(a, vector_for("hello", 32));
        assert_ne!(a, vector_for("hello!", 32));
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
    }
}
