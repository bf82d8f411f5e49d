//! The request, response and error shapes of each API the test server
//! speaks, as their servers write them (OpenAI's API reference;
//! text-embeddings-inference's router: ErrorType → status, its validation
//! messages and axum's body limit; Ollama's /api/embed handler).

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Opts, Resp};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// `POST /v1/embeddings` (and `/embeddings`).
    Openai,
    /// text-embeddings-inference: `GET /info`, `POST /embed`.
    Tei,
    /// Ollama: `POST /api/embed`, one request at a time.
    Ollama,
}

impl Protocol {
    pub(super) fn routes(self) -> &'static [&'static str] {
        match self {
            Protocol::Openai => &["/v1/embeddings", "/embeddings"],
            Protocol::Tei => &["/embed"],
            Protocol::Ollama => &["/api/embed"],
        }
    }
}

/// What went wrong, before it is put in a protocol's words.
pub(super) enum Fault {
    NotFound,
    Auth,
    BadRequest,
    Empty,
    TooManyInputs {
        got: usize,
        max: usize,
    },
    /// An input over the model's limit, in bytes.
    TooLong {
        got: usize,
        max: usize,
    },
    Overloaded,
    /// TEI's request body limit.
    Payload,
    Status(StatusCode),
}

pub(super) struct Parsed {
    pub model: Option<String>,
    pub inputs: Vec<String>,
    pub dimensions: Option<usize>,
    pub truncate: bool,
    /// OpenAI's `encoding_format: "base64"`: each vector as the base64 of
    /// its little-endian f32 bytes.
    pub base64: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Input {
    One(String),
    Many(Vec<String>),
}

impl Input {
    fn into_vec(self) -> Vec<String> {
        match self {
            Input::One(s) => vec![s],
            Input::Many(v) => v,
        }
    }
}

#[derive(Deserialize)]
struct OpenAiRequest {
    model: Option<String>,
    input: Input,
    dimensions: Option<usize>,
    encoding_format: Option<String>,
}

#[derive(Deserialize)]
struct TeiRequest {
    inputs: Input,
    #[serde(default)]
    truncate: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
struct OllamaRequest {
    model: Option<String>,
    input: Input,
    /// Ollama's default: cut silently.
    #[serde(default = "yes")]
    truncate: bool,
    dimensions: Option<usize>,
}

pub(super) fn parse(proto: Protocol, body: &[u8]) -> Result<Parsed, String> {
    let bad = |e: serde_json::Error| format!("invalid JSON body: {e}");
    Ok(match proto {
        Protocol::Openai => {
            let r: OpenAiRequest = serde_json::from_slice(body).map_err(bad)?;
            let base64 = match r.encoding_format.as_deref() {
                None | Some("float") => false,
                Some("base64") => true,
                Some(other) => {
                    return Err(format!(
                        "'{other}' is not one of ['float', 'base64'] - 'encoding_format'"
                    ));
                }
            };
            Parsed {
                model: r.model,
                inputs: r.input.into_vec(),
                dimensions: r.dimensions,
                truncate: false,
                base64,
            }
        }
        Protocol::Tei => {
            let r: TeiRequest = serde_json::from_slice(body).map_err(bad)?;
            Parsed {
                model: None,
                inputs: r.inputs.into_vec(),
                dimensions: None,
                truncate: r.truncate,
                base64: false,
            }
        }
        Protocol::Ollama => {
            let r: OllamaRequest = serde_json::from_slice(body).map_err(bad)?;
            Parsed {
                model: r.model,
                inputs: r.input.into_vec(),
                dimensions: r.dimensions,
                truncate: r.truncate,
                base64: false,
            }
        }
    })
}

/// TEI counts the model's tokens; this server counts 4 bytes as one.
fn tei_tokens(bytes: usize) -> usize {
    bytes.div_ceil(4)
}

pub(super) fn tei_info(o: &Opts) -> serde_json::Value {
    json!({
        "model_id": "vecload/tei-test-model",
        "model_sha": null,
        "model_dtype": "float32",
        "model_type": {"embedding": {"pooling": "mean"}},
        "max_concurrent_requests": o.capacity.unwrap_or(512),
        "max_input_length": o.max_input_bytes.map_or(512, |b| b / 4),
        "max_batch_tokens": 16384,
        "max_batch_requests": null,
        "max_client_batch_size": o.max_batch.unwrap_or(32),
        "auto_truncate": false,
        "tokenization_workers": 2,
        "version": "1.8.3-vecload-test",
    })
}

fn respond(status: StatusCode, body: String, json_body: bool, retry_after: Option<u64>) -> Resp {
    let mut b = Response::builder().status(status).header(
        "content-type",
        if json_body {
            "application/json"
        } else {
            "text/plain; charset=utf-8"
        },
    );
    if let Some(s) = retry_after {
        b = b.header("retry-after", s.to_string());
    }
    b.body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

pub(super) fn error(proto: Protocol, fault: Fault, msg: &str, retry_after: Option<u64>) -> Resp {
    match proto {
        Protocol::Openai => {
            let (status, msg) = match fault {
                Fault::NotFound => (StatusCode::NOT_FOUND, msg.to_string()),
                Fault::Auth => (StatusCode::UNAUTHORIZED, msg.to_string()),
                Fault::BadRequest => (StatusCode::BAD_REQUEST, msg.to_string()),
                Fault::Empty => (
                    StatusCode::BAD_REQUEST,
                    "'$.input' is invalid: empty input".to_string(),
                ),
                Fault::TooManyInputs { got, max } => (
                    StatusCode::BAD_REQUEST,
                    format!("too many inputs: batch of {got} is over the limit of {max}"),
                ),
                Fault::TooLong { got, max } => (
                    StatusCode::BAD_REQUEST,
                    format!(
                        "This model's maximum context length is {max} tokens, however you requested \
                         {got} tokens. Please reduce the length of the input."
                    ),
                ),
                Fault::Overloaded => (StatusCode::TOO_MANY_REQUESTS, msg.to_string()),
                Fault::Payload => (StatusCode::PAYLOAD_TOO_LARGE, msg.to_string()),
                Fault::Status(s) => (s, msg.to_string()),
            };
            let body = json!({"error": {"message": msg, "type": "invalid_request_error"}});
            respond(status, body.to_string(), true, retry_after)
        }
        Protocol::Tei => {
            let tei = |status, error: String, kind: &str| {
                let body = json!({"error": error, "error_type": kind});
                respond(status, body.to_string(), true, retry_after)
            };
            match fault {
                Fault::NotFound => respond(StatusCode::NOT_FOUND, String::new(), false, None),
                Fault::Auth => respond(StatusCode::UNAUTHORIZED, String::new(), false, None),
                // axum's Json extractor.
                Fault::BadRequest => respond(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("Failed to deserialize the JSON body into the target type: {msg}"),
                    false,
                    None,
                ),
                Fault::Empty => tei(
                    StatusCode::BAD_REQUEST,
                    "`inputs` cannot be empty".into(),
                    "Empty",
                ),
                Fault::TooManyInputs { got, max } => tei(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("batch size {got} > maximum allowed batch size {max}"),
                    "Validation",
                ),
                Fault::TooLong { got, max } => tei(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "Input validation error: `inputs` must have less than {} tokens. Given: {}",
                        tei_tokens(max),
                        tei_tokens(got)
                    ),
                    "Validation",
                ),
                Fault::Overloaded => tei(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Model is overloaded".into(),
                    "Overloaded",
                ),
                Fault::Payload => respond(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "Failed to buffer the request body: length limit exceeded".into(),
                    false,
                    None,
                ),
                Fault::Status(s) => tei(s, msg.to_string(), "Backend"),
            }
        }
        Protocol::Ollama => {
            let ollama = |status, error: String| {
                respond(
                    status,
                    json!({"error": error}).to_string(),
                    true,
                    retry_after,
                )
            };
            match fault {
                Fault::NotFound => respond(
                    StatusCode::NOT_FOUND,
                    "404 page not found".into(),
                    false,
                    None,
                ),
                Fault::Auth => ollama(StatusCode::UNAUTHORIZED, "unauthorized".into()),
                Fault::BadRequest | Fault::Empty => ollama(StatusCode::BAD_REQUEST, msg.into()),
                Fault::TooManyInputs { got, max } => ollama(
                    StatusCode::BAD_REQUEST,
                    format!("too many inputs: {got} > {max}"),
                ),
                Fault::TooLong { .. } => ollama(
                    StatusCode::BAD_REQUEST,
                    "the input length exceeds the context length".into(),
                ),
                // OLLAMA_MAX_QUEUE exceeded.
                Fault::Overloaded => ollama(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server busy, please try again.  maximum pending requests exceeded".into(),
                ),
                Fault::Payload => ollama(StatusCode::PAYLOAD_TOO_LARGE, msg.into()),
                Fault::Status(s) => ollama(s, msg.into()),
            }
        }
    }
}

#[derive(Serialize)]
struct Item {
    object: &'static str,
    index: usize,
    embedding: Embedding,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Embedding {
    /// `None` is written as null: how orjson writes NaN.
    Floats(Vec<Option<f32>>),
    Base64(String),
}

fn base64_of(v: &[Option<f32>]) -> String {
    use base64::Engine;
    let bytes: Vec<u8> = v
        .iter()
        .flat_map(|x| x.unwrap_or(f32::NAN).to_le_bytes())
        .collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
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

#[derive(Serialize)]
struct OllamaResponse {
    model: String,
    embeddings: Vec<Vec<Option<f32>>>,
    total_duration: u64,
    load_duration: u64,
    prompt_eval_count: usize,
}

/// The success body. Typed items serialize far faster than a json! value
/// per float, so the server stays out of the way in benchmarks.
pub(super) fn success(
    proto: Protocol,
    inputs: &[String],
    vectors: Vec<Vec<Option<f32>>>,
    model: String,
    shuffle: bool,
    base64: bool,
) -> serde_json::Result<Vec<u8>> {
    let tokens: usize = inputs.iter().map(|s| s.len() / 4 + 1).sum();
    match proto {
        Protocol::Openai => {
            let mut data: Vec<Item> = vectors
                .into_iter()
                .enumerate()
                .map(|(index, embedding)| Item {
                    object: "embedding",
                    index,
                    embedding: if base64 {
                        Embedding::Base64(base64_of(&embedding))
                    } else {
                        Embedding::Floats(embedding)
                    },
                })
                .collect();
            if shuffle {
                data.shuffle(&mut rand::rng());
            }
            serde_json::to_vec(&ListResponse {
                object: "list",
                data,
                model,
                usage: Usage {
                    prompt_tokens: tokens,
                    total_tokens: tokens,
                },
            })
        }
        // Both answer in input order, without indexes.
        Protocol::Tei => serde_json::to_vec(&vectors),
        Protocol::Ollama => serde_json::to_vec(&OllamaResponse {
            model,
            embeddings: vectors,
            total_duration: 1_000_000,
            load_duration: 0,
            prompt_eval_count: tokens,
        }),
    }
}
