//! An OpenAI-compatible embedding server for tests, benchmarks and the demo.
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
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Parser)]
#[command(
    name = "embedding-test-server",
    about = "OpenAI-compatible embedding server with deterministic vectors"
)]
pub struct Opts {
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
    /// Require `Authorization: Bearer KEY`.
    #[arg(long)]
    pub api_key: Option<String>,
    /// Answer 400 to requests with more inputs than this.
    #[arg(long)]
    pub max_batch: Option<usize>,
    /// Answer 400 "maximum context length" when an input is longer than
    /// this many bytes (as OpenAI does for an input over the model's limit).
    #[arg(long)]
    pub max_input_bytes: Option<usize>,
    /// Inputs containing this text get a NaN in their vector (written as
    /// `null`, as orjson does; JSON has no NaN).
    #[arg(long)]
    pub nan_on: Option<String>,
    /// Answer with vectors of this length whatever is asked.
    #[arg(long)]
    pub force_dim: Option<usize>,
}

/// The vector for `text`: unit length, derived from SHA-256 of the text.
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
}

struct State {
    opts: Opts,
    c: Counters,
}

#[derive(Deserialize)]
struct EmbedRequest {
    model: Option<String>,
    input: Input,
    dimensions: Option<usize>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Input {
    One(String),
    Many(Vec<String>),
}

type Resp = Response<Full<Bytes>>;

#[derive(Serialize)]
struct Item {
    object: &'static str,
    index: usize,
    /// `None` is written as null: how orjson writes NaN.
    embedding: Vec<Option<f32>>,
}

#[derive(Serialize)]
struct ListResponse {
    object: &'static str,
    data: Vec<Item>,
    model: String,
    usage: Usage,
}

#[derive(Serialize)]
struct Usage {
    prompt_tokens: usize,
    total_tokens: usize,
}

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

fn error(status: StatusCode, msg: &str, retry_after: Option<u64>) -> Resp {
    reply(
        status,
        json!({"error": {"message": msg, "type": "invalid_request_error"}}),
        retry_after,
    )
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Resp, Infallible> {
    let path = req.uri().path().to_string();
    if req.method() == Method::GET && path == "/stats" {
        let c = &state.c;
        return Ok(reply(
            StatusCode::OK,
            json!({
                "requests": c.requests.load(SeqCst),
                "inputs": c.inputs.load(SeqCst),
                "rejected": c.rejected.load(SeqCst),
                "max_in_flight": c.max_in_flight.load(SeqCst),
            }),
            None,
        ));
    }
    if req.method() != Method::POST || !matches!(path.as_str(), "/v1/embeddings" | "/embeddings") {
        return Ok(error(StatusCode::NOT_FOUND, "no such route", None));
    }
    let c = &state.c;
    let n = c.requests.fetch_add(1, SeqCst) + 1;
    let now = c.in_flight.fetch_add(1, SeqCst) + 1;
    c.max_in_flight.fetch_max(now, SeqCst);
    let resp = embeddings(&state, req, n, now).await;
    c.in_flight.fetch_sub(1, SeqCst);
    if !resp.status().is_success() {
        c.rejected.fetch_add(1, SeqCst);
    }
    Ok(resp)
}

async fn embeddings(state: &State, req: Request<Incoming>, n: u64, in_flight: u64) -> Resp {
    let o = &state.opts;
    if let Some(key) = &o.api_key {
        let got = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if got != format!("Bearer {key}") {
            return error(StatusCode::UNAUTHORIZED, "Incorrect API key provided", None);
        }
    }
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return error(StatusCode::BAD_REQUEST, "could not read body", None),
    };
    if let Some(cap) = o.capacity
        && in_flight > cap
    {
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            "Rate limit reached",
            o.retry_after,
        );
    }
    if o.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(o.latency_ms)).await;
    }
    if n <= o.fail_first || o.fail_every.is_some_and(|k| k > 0 && n.is_multiple_of(k)) {
        let status =
            StatusCode::from_u16(o.fail_status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return error(status, "injected failure", o.retry_after);
    }
    let parsed: EmbedRequest = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("invalid JSON body: {e}"),
                None,
            );
        }
    };
    if parsed.model.as_deref().is_none_or(str::is_empty) {
        return error(
            StatusCode::BAD_REQUEST,
            "you must provide a model parameter",
            None,
        );
    }
    let inputs = match parsed.input {
        Input::One(s) => vec![s],
        Input::Many(v) => v,
    };
    if inputs.is_empty() || inputs.iter().any(String::is_empty) {
        return error(
            StatusCode::BAD_REQUEST,
            "'$.input' is invalid: empty input",
            None,
        );
    }
    if let Some(max) = o.max_batch
        && inputs.len() > max
    {
        return error(
            StatusCode::BAD_REQUEST,
            &format!(
                "too many inputs: batch of {} is over the limit of {max}",
                inputs.len()
            ),
            None,
        );
    }
    if let Some(max) = o.max_input_bytes
        && let Some(long) = inputs.iter().map(|i| i.len()).filter(|&n| n > max).max()
    {
        return error(
            StatusCode::BAD_REQUEST,
            &format!(
                "This model's maximum context length is {max} tokens, however you requested \
                 {long} tokens. Please reduce the length of the input."
            ),
            None,
        );
    }
    state.c.inputs.fetch_add(inputs.len() as u64, SeqCst);
    let dim = o.force_dim.or(parsed.dimensions).unwrap_or(o.dim);
    // Typed items serialize far faster than a json! value per float, so the
    // server stays out of the way in benchmarks.
    let mut data: Vec<Item> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let nan = o.nan_on.as_deref().is_some_and(|m| text.contains(m));
            let embedding = vector_for(text, dim)
                .into_iter()
                .enumerate()
                .map(|(j, x)| if nan && j == 0 { None } else { Some(x) })
                .collect();
            Item {
                object: "embedding",
                index,
                embedding,
            }
        })
        .collect();
    if o.shuffle {
        data.shuffle(&mut rand::rng());
    }
    let tokens: usize = inputs.iter().map(|s| s.len() / 4 + 1).sum();
    let body = ListResponse {
        object: "list",
        data,
        model: parsed.model.unwrap_or_default(),
        usage: Usage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    };
    match serde_json::to_vec(&body) {
        Ok(bytes) => Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(bytes)))
            .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string(), None),
    }
}

pub async fn serve(opts: Opts) -> anyhow::Result<()> {
    let addr: SocketAddr = format!("{}:{}", opts.host, opts.port).parse()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    {
        use std::io::Write;
        let mut out = std::io::stdout();
        writeln!(out, "listening on http://{local}/v1")?;
        out.flush()?;
    }
    let state = Arc::new(State {
        opts,
        c: Counters::default(),
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
