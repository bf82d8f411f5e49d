//! The request, response and error shapes of each API the test server
//! speaks, as their servers write them (OpenAI's API reference;
//! text-embeddings-inference's router: ErrorType → status, its validation
//! messages and axum's body limit; Ollama's /api/embed handler; Bedrock's
//! InvokeModel; Azure OpenAI's deployments route; Jina's, Voyage's and
//! Gemini's REST references; LoLLMs' /lollms_embed).
//!
//! Where an API takes a task (Jina's `task`, Voyage's `input_type`,
//! Gemini's `taskType`) the vector is of `[task] text`, so a test can tell
//! a document embedded as a query from one embedded as a document.

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
    /// Amazon Bedrock Runtime: `POST /model/{modelId}/invoke`, Titan and
    /// Cohere embedding models, SigV4 (or a Bedrock API key) checked.
    Bedrock,
    /// Azure OpenAI: `POST /openai/deployments/{deployment}/embeddings
    /// ?api-version=..`, the key in `api-key`.
    Azure,
    /// Jina AI: `POST /v1/embeddings` with `task`, `dimensions`, `embedding_type`.
    Jina,
    /// Voyage AI: `POST /v1/embeddings` with `input_type`, `truncation`,
    /// `output_dimension`; errors as `{"detail"}`.
    Voyage,
    /// Gemini API: `POST /v1beta/models/{model}:batchEmbedContents`, the key
    /// in `x-goog-api-key`; vectors shorter than 3072 not unit length, as
    /// Gemini returns them.
    Gemini,
    /// LoLLMs: `POST /lollms_embed` `{"text"}` → `{"vector"}`, one text per request.
    Lollms,
}

impl Protocol {
    pub(super) fn routes(self) -> &'static [&'static str] {
        match self {
            Protocol::Openai => &["/v1/embeddings", "/embeddings"],
            Protocol::Tei => &["/embed"],
            Protocol::Ollama => &["/api/embed"],
            Protocol::Jina | Protocol::Voyage => &["/v1/embeddings"],
            Protocol::Lollms => &["/lollms_embed"],
            Protocol::Bedrock | Protocol::Azure | Protocol::Gemini => &[],
        }
    }

    /// Whether `path` is one of this API's embedding routes.
    pub(super) fn accepts(self, path: &str) -> bool {
        match self {
            Protocol::Bedrock => path.starts_with("/model/") && path.ends_with("/invoke"),
            Protocol::Azure => {
                path.starts_with("/openai/deployments/") && path.ends_with("/embeddings")
            }
            Protocol::Gemini => {
                path.starts_with("/v1beta/models/") && path.ends_with(":batchEmbedContents")
            }
            _ => self.routes().contains(&path),
        }
    }
}

/// Bedrock's embedding model families, by model id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Family {
    TitanV2,
    TitanV1,
    CohereV3,
    CohereV4,
}

impl Family {
    pub(super) fn of(model: &str) -> Option<Family> {
        let m = ["us.", "eu.", "apac.", "global."]
            .iter()
            .find_map(|p| model.strip_prefix(p))
            .unwrap_or(model);
        Some(if m.starts_with("amazon.titan-embed-text-v2") {
            Family::TitanV2
        } else if m.starts_with("amazon.titan-embed-text-v1") {
            Family::TitanV1
        } else if m.starts_with("cohere.embed-english-v3")
            || m.starts_with("cohere.embed-multilingual-v3")
        {
            Family::CohereV3
        } else if m.starts_with("cohere.embed-v4") {
            Family::CohereV4
        } else {
            return None;
        })
    }

    /// Texts per request and characters per text, as Bedrock enforces them.
    pub(super) fn limits(self) -> (usize, usize) {
        match self {
            Family::TitanV2 | Family::TitanV1 => (1, 50_000),
            Family::CohereV3 => (96, 2048),
            Family::CohereV4 => (96, 500_000),
        }
    }

    fn dims(self, asked: Option<usize>) -> Result<usize, String> {
        let (default, allowed): (usize, &[usize]) = match self {
            Family::TitanV2 => (1024, &[256, 512, 1024]),
            Family::TitanV1 => (1536, &[1536]),
            Family::CohereV3 => (1024, &[1024]),
            Family::CohereV4 => (1536, &[256, 512, 1024, 1536]),
        };
        match asked {
            None => Ok(default),
            Some(d) if allowed.contains(&d) => Ok(d),
            Some(d) => Err(format!(
                "Malformed input request: dimensions {d} is not one of {allowed:?}"
            )),
        }
    }
}

#[derive(Deserialize)]
struct TitanRequest {
    #[serde(rename = "inputText")]
    input_text: String,
    dimensions: Option<usize>,
    #[serde(rename = "embeddingTypes")]
    embedding_types: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct CohereRequest {
    texts: Vec<String>,
    input_type: Option<String>,
    embedding_types: Option<Vec<String>>,
    output_dimension: Option<usize>,
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
    /// Bedrock: the family, and whether vectors are answered by type.
    pub bedrock: Option<(Family, bool)>,
    pub model: Option<String>,
    pub inputs: Vec<String>,
    pub dimensions: Option<usize>,
    pub truncate: bool,
    /// OpenAI's `encoding_format: "base64"`: each vector as the base64 of
    /// its little-endian f32 bytes.
    pub base64: bool,
    /// The task the API was given, which the vector depends on.
    pub task: Option<String>,
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

const JINA_TASKS: &[&str] = &[
    "retrieval.query",
    "retrieval.passage",
    "separation",
    "classification",
    "text-matching",
    "code.query",
    "code.passage",
];

#[derive(Deserialize)]
struct JinaRequest {
    model: Option<String>,
    input: Input,
    task: Option<String>,
    dimensions: Option<usize>,
    embedding_type: Option<String>,
    truncate: Option<bool>,
}

#[derive(Deserialize)]
struct VoyageRequest {
    model: Option<String>,
    input: Input,
    input_type: Option<String>,
    /// Voyage's default: cut silently.
    truncation: Option<bool>,
    output_dimension: Option<usize>,
}

const GEMINI_TASKS: &[&str] = &[
    "SEMANTIC_SIMILARITY",
    "CLASSIFICATION",
    "CLUSTERING",
    "RETRIEVAL_DOCUMENT",
    "RETRIEVAL_QUERY",
    "CODE_RETRIEVAL_QUERY",
    "QUESTION_ANSWERING",
    "FACT_VERIFICATION",
];

#[derive(Deserialize)]
struct GeminiRequest {
    requests: Vec<GeminiOne>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GeminiOne {
    model: String,
    content: GeminiContent,
    task_type: Option<String>,
    output_dimensionality: Option<usize>,
}

#[derive(Deserialize)]
struct GeminiContent {
    parts: Vec<GeminiPart>,
}

#[derive(Deserialize)]
struct GeminiPart {
    text: String,
}

#[derive(Deserialize)]
struct LollmsRequest {
    text: String,
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

pub(super) fn parse(proto: Protocol, path: &str, body: &[u8]) -> Result<Parsed, String> {
    let bad = |e: serde_json::Error| format!("invalid JSON body: {e}");
    Ok(match proto {
        Protocol::Bedrock => {
            let id = path
                .trim_start_matches("/model/")
                .trim_end_matches("/invoke")
                .replace("%3A", ":")
                .replace("%3a", ":");
            let family = Family::of(&id).ok_or("The provided model identifier is invalid.")?;
            match family {
                Family::TitanV2 | Family::TitanV1 => {
                    let r: TitanRequest = serde_json::from_slice(body)
                        .map_err(|e| format!("Malformed input request: {e}, please reformat your input and try again."))?;
                    let dims = if family == Family::TitanV2 {
                        family.dims(r.dimensions)?
                    } else {
                        family.dims(None)?
                    };
                    Parsed {
                        bedrock: Some((family, r.embedding_types.is_some())),
                        model: Some(id),
                        inputs: vec![r.input_text],
                        dimensions: Some(dims),
                        truncate: false,
                        base64: false,
                        task: None,
                    }
                }
                Family::CohereV3 | Family::CohereV4 => {
                    let r: CohereRequest = serde_json::from_slice(body)
                        .map_err(|e| format!("Malformed input request: {e}, please reformat your input and try again."))?;
                    if r.input_type.is_none() {
                        return Err("Malformed input request: #: required key [input_type] not found, please reformat your input and try again.".into());
                    }
                    let dims = if family == Family::CohereV4 {
                        family.dims(r.output_dimension)?
                    } else {
                        family.dims(None)?
                    };
                    Parsed {
                        bedrock: Some((family, r.embedding_types.is_some())),
                        model: Some(id),
                        inputs: r.texts,
                        dimensions: Some(dims),
                        truncate: false,
                        base64: false,
                        task: None,
                    }
                }
            }
        }
        Protocol::Openai | Protocol::Azure => {
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
                bedrock: None,
                model: r.model,
                inputs: r.input.into_vec(),
                dimensions: r.dimensions,
                truncate: false,
                base64,
                task: None,
            }
        }
        Protocol::Jina => {
            let r: JinaRequest = serde_json::from_slice(body).map_err(bad)?;
            if let Some(t) = &r.task
                && !JINA_TASKS.contains(&t.as_str())
            {
                return Err(format!("Invalid task '{t}'. Must be one of {JINA_TASKS:?}"));
            }
            let base64 = match r.embedding_type.as_deref() {
                None | Some("float") => false,
                Some("base64") => true,
                Some(other) => return Err(format!("Unsupported embedding_type '{other}'")),
            };
            Parsed {
                bedrock: None,
                model: r.model,
                inputs: r.input.into_vec(),
                dimensions: r.dimensions,
                truncate: r.truncate.unwrap_or(false),
                base64,
                task: r.task,
            }
        }
        Protocol::Voyage => {
            let r: VoyageRequest = serde_json::from_slice(body).map_err(bad)?;
            if let Some(t) = &r.input_type
                && t != "query"
                && t != "document"
            {
                return Err(format!(
                    "Value '{t}' supplied for argument 'input_type' is not valid. Accepted values are 'query', 'document', None."
                ));
            }
            Parsed {
                bedrock: None,
                model: r.model,
                inputs: r.input.into_vec(),
                dimensions: r.output_dimension,
                truncate: r.truncation.unwrap_or(true),
                base64: false,
                task: r.input_type,
            }
        }
        Protocol::Gemini => {
            let model = path
                .trim_start_matches("/v1beta/models/")
                .trim_end_matches(":batchEmbedContents")
                .to_string();
            let r: GeminiRequest = serde_json::from_slice(body).map_err(bad)?;
            let mut inputs = Vec::with_capacity(r.requests.len());
            let (mut task, mut dims) = (None, None);
            for (i, one) in r.requests.into_iter().enumerate() {
                if one.model != format!("models/{model}") {
                    return Err(format!(
                        "* BatchEmbedContentsRequest.requests[{i}].model: the model {:?} is not the batch's models/{model}",
                        one.model
                    ));
                }
                if i > 0 && (one.task_type != task || one.output_dimensionality != dims) {
                    return Err("test server: mixed tasks or dimensions in one batch".into());
                }
                task = one.task_type;
                dims = one.output_dimensionality;
                inputs.push(
                    one.content
                        .parts
                        .into_iter()
                        .map(|p| p.text)
                        .collect::<String>(),
                );
            }
            if let Some(t) = &task
                && !GEMINI_TASKS.contains(&t.as_str())
            {
                return Err(format!(
                    "Invalid value at 'requests[0].task_type' (type.googleapis.com/google.ai.generativelanguage.v1beta.TaskType), \"{t}\""
                ));
            }
            Parsed {
                bedrock: None,
                model: Some(model),
                inputs,
                dimensions: dims,
                // Gemini cuts over-long input (autoTruncate).
                truncate: true,
                base64: false,
                task,
            }
        }
        Protocol::Lollms => {
            let r: LollmsRequest = serde_json::from_slice(body).map_err(bad)?;
            Parsed {
                bedrock: None,
                model: Some("lollms".into()),
                inputs: vec![r.text],
                dimensions: None,
                truncate: false,
                base64: false,
                task: None,
            }
        }
        Protocol::Tei => {
            let r: TeiRequest = serde_json::from_slice(body).map_err(bad)?;
            Parsed {
                bedrock: None,
                model: None,
                inputs: r.inputs.into_vec(),
                dimensions: None,
                truncate: r.truncate,
                base64: false,
                task: None,
            }
        }
        Protocol::Ollama => {
            let r: OllamaRequest = serde_json::from_slice(body).map_err(bad)?;
            Parsed {
                bedrock: None,
                model: r.model,
                inputs: r.input.into_vec(),
                dimensions: r.dimensions,
                truncate: r.truncate,
                base64: false,
                task: None,
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

/// A Bedrock error: its type in `x-amzn-ErrorType` (with the suffix the
/// service adds) and `{"message"}` in the body.
pub(super) fn bedrock_error(status: StatusCode, kind: &str, msg: &str) -> Resp {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header(
            "x-amzn-ErrorType",
            format!("{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/"),
        )
        .body(Full::new(Bytes::from(json!({"message": msg}).to_string())))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

/// `{"detail"}`: FastAPI's error body, which Jina, Voyage and LoLLMs answer.
fn detail(status: StatusCode, msg: String, retry_after: Option<u64>) -> Resp {
    respond(
        status,
        json!({"detail": msg}).to_string(),
        true,
        retry_after,
    )
}

pub(super) fn error(proto: Protocol, fault: Fault, msg: &str, retry_after: Option<u64>) -> Resp {
    match proto {
        Protocol::Azure => {
            let (status, msg) = match fault {
                Fault::NotFound => (StatusCode::NOT_FOUND, "Resource not found".to_string()),
                Fault::Auth => (
                    StatusCode::UNAUTHORIZED,
                    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.".to_string(),
                ),
                Fault::BadRequest => (StatusCode::BAD_REQUEST, msg.to_string()),
                Fault::Empty => (
                    StatusCode::BAD_REQUEST,
                    "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.".to_string(),
                ),
                Fault::TooManyInputs { max, .. } => (
                    StatusCode::BAD_REQUEST,
                    format!("Too many inputs. The max number of inputs is {max}.  We hope to increase the number of inputs per request soon."),
                ),
                Fault::TooLong { got, max } => (
                    StatusCode::BAD_REQUEST,
                    format!("This model's maximum context length is {max} tokens, however you requested {got} tokens. Please reduce the length of the input."),
                ),
                Fault::Overloaded => (
                    StatusCode::TOO_MANY_REQUESTS,
                    "Requests to the Embeddings_Create Operation under Azure OpenAI API version 2024-08-01-preview have exceeded call rate limit of your current OpenAI S0 pricing tier. Please retry after 1 second.".to_string(),
                ),
                Fault::Payload => (StatusCode::PAYLOAD_TOO_LARGE, msg.to_string()),
                Fault::Status(s) => (s, msg.to_string()),
            };
            let body = json!({"error": {"code": status.as_u16().to_string(), "message": msg}});
            respond(status, body.to_string(), true, retry_after)
        }
        Protocol::Jina | Protocol::Voyage | Protocol::Lollms => {
            let (status, msg) = match fault {
                Fault::NotFound => (StatusCode::NOT_FOUND, "Not Found".to_string()),
                Fault::Auth => (
                    StatusCode::UNAUTHORIZED,
                    "Provided API key is invalid.".to_string(),
                ),
                Fault::BadRequest => (StatusCode::BAD_REQUEST, msg.to_string()),
                Fault::Empty => (
                    StatusCode::BAD_REQUEST,
                    "Input cannot be an empty string.".to_string(),
                ),
                Fault::TooManyInputs { got, max } => (
                    StatusCode::BAD_REQUEST,
                    format!("The batch size limit is {max}. Your batch size is {got}."),
                ),
                Fault::TooLong { got, max } => (
                    StatusCode::BAD_REQUEST,
                    format!(
                        "The example at index 0 in your batch has {} tokens, which is over the limit of {} tokens.",
                        got.div_ceil(4),
                        max / 4
                    ),
                ),
                Fault::Overloaded => (
                    StatusCode::TOO_MANY_REQUESTS,
                    "Rate limit exceeded. Please retry after a while.".to_string(),
                ),
                Fault::Payload => (StatusCode::PAYLOAD_TOO_LARGE, msg.to_string()),
                Fault::Status(s) => (s, msg.to_string()),
            };
            detail(status, msg, retry_after)
        }
        Protocol::Gemini => {
            let (status, kind, msg) = match fault {
                Fault::NotFound => (StatusCode::NOT_FOUND, "NOT_FOUND", "models/... is not found for API version v1beta, or is not supported for batchEmbedContents.".to_string()),
                Fault::Auth => (StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.".to_string()),
                Fault::BadRequest | Fault::Empty => (StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", msg.to_string()),
                Fault::TooManyInputs { max, .. } => (
                    StatusCode::BAD_REQUEST,
                    "INVALID_ARGUMENT",
                    format!("* BatchEmbedContentsRequest.requests: at most {max} requests can be in one batch\n"),
                ),
                Fault::TooLong { .. } => (StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", "input too long".to_string()),
                Fault::Overloaded => (
                    StatusCode::TOO_MANY_REQUESTS,
                    "RESOURCE_EXHAUSTED",
                    "Resource has been exhausted (e.g. check quota).".to_string(),
                ),
                Fault::Payload => (StatusCode::PAYLOAD_TOO_LARGE, "INVALID_ARGUMENT", msg.to_string()),
                Fault::Status(s) => (s, "INTERNAL", msg.to_string()),
            };
            let body = json!({"error": {"code": status.as_u16(), "message": msg, "status": kind}});
            respond(status, body.to_string(), true, retry_after)
        }
        Protocol::Bedrock => {
            let (status, kind, text) = match fault {
                Fault::NotFound => (
                    StatusCode::NOT_FOUND,
                    "UnknownOperationException",
                    msg.to_string(),
                ),
                Fault::Auth => (
                    StatusCode::FORBIDDEN,
                    "AccessDeniedException",
                    msg.to_string(),
                ),
                Fault::BadRequest | Fault::Empty => (
                    StatusCode::BAD_REQUEST,
                    "ValidationException",
                    msg.to_string(),
                ),
                Fault::TooManyInputs { got, max } => (
                    StatusCode::BAD_REQUEST,
                    "ValidationException",
                    format!(
                        "Malformed input request: #/texts: expected maxItems: {max}, actual: {got}, please reformat your input and try again."
                    ),
                ),
                Fault::TooLong { got, max } => (
                    StatusCode::BAD_REQUEST,
                    "ValidationException",
                    format!(
                        "Malformed input request: #/texts/0: expected maxLength: {max}, actual: {got}, please reformat your input and try again."
                    ),
                ),
                Fault::Overloaded => (
                    StatusCode::TOO_MANY_REQUESTS,
                    "ThrottlingException",
                    "Too many requests, please wait before trying again.".to_string(),
                ),
                Fault::Payload => (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "ValidationException",
                    msg.to_string(),
                ),
                Fault::Status(s) => (
                    s,
                    match s.as_u16() {
                        429 => "ThrottlingException",
                        503 => "ServiceUnavailableException",
                        403 => "AccessDeniedException",
                        400 => "ValidationException",
                        _ => "InternalServerException",
                    },
                    msg.to_string(),
                ),
            };
            let _ = retry_after;
            bedrock_error(status, kind, &text)
        }
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
    bedrock: Option<(Family, bool)>,
    inputs: &[String],
    vectors: Vec<Vec<Option<f32>>>,
    model: String,
    shuffle: bool,
    base64: bool,
) -> serde_json::Result<Vec<u8>> {
    let tokens: usize = inputs.iter().map(|s| s.len() / 4 + 1).sum();
    match proto {
        Protocol::Bedrock => Ok(match bedrock {
            Some((Family::TitanV2 | Family::TitanV1, by_type)) => {
                let v = vectors.into_iter().next().unwrap_or_default();
                let mut body = json!({"embedding": v, "inputTextTokenCount": tokens});
                if by_type {
                    body["embeddingsByType"] = json!({"float": v});
                }
                body.to_string().into_bytes()
            }
            Some((_, true)) => json!({"id": "test", "response_type": "embeddings_by_type",
                "embeddings": {"float": vectors}, "texts": inputs})
            .to_string()
            .into_bytes(),
            _ => json!({"id": "test", "response_type": "embeddings_floats",
                "embeddings": vectors, "texts": inputs})
            .to_string()
            .into_bytes(),
        }),
        Protocol::Gemini => {
            // Gemini returns unit vectors at 3072 only: shorter ones are
            // scaled here so a client that does not normalize is caught.
            let scale = if vectors.first().is_some_and(|v| v.len() < 3072) {
                2.5
            } else {
                1.0
            };
            let embeddings: Vec<_> = vectors
                .into_iter()
                .map(|v| json!({"values": v.into_iter().map(|x| x.map(|x| x * scale)).collect::<Vec<_>>()}))
                .collect();
            Ok(json!({"embeddings": embeddings}).to_string().into_bytes())
        }
        Protocol::Lollms => Ok(
            json!({"vector": vectors.into_iter().next().unwrap_or_default()})
                .to_string()
                .into_bytes(),
        ),
        Protocol::Openai | Protocol::Azure | Protocol::Jina | Protocol::Voyage => {
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
