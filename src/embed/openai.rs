//! OpenAI-compatible `POST {base}/embeddings` (OpenAI, Azure-style gateways,
//! vLLM, LiteLLM, TEI's and Ollama's compatibility routes, ...).

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde::{Deserialize, Serialize};

use super::{EmbedError, Embedder};
use crate::config::{EmbedConfig, Secret};

pub struct OpenAiEmbedder {
    client: reqwest::Client,
    endpoint: String,
    model: String,
    dimensions: Option<usize>,
    key: Option<Secret>,
}

#[derive(Serialize)]
struct Request<'a> {
    model: &'a str,
    input: &'a [&'a str],
    encoding_format: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    dimensions: Option<usize>,
}

#[derive(Deserialize)]
struct Response {
    data: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    index: usize,
    #[serde(deserialize_with = "lenient_floats")]
    embedding: Vec<f32>,
}

/// Floats, with `null` (what orjson and others write for NaN) read as NaN so
/// the vector check rejects it with a clear message.
fn lenient_floats<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<f32>, D::Error> {
    let v: Vec<Option<f32>> = Vec::deserialize(d)?;
    Ok(v.into_iter().map(|x| x.unwrap_or(f32::NAN)).collect())
}

impl OpenAiEmbedder {
    pub fn new(cfg: &EmbedConfig) -> anyhow::Result<OpenAiEmbedder> {
        let client = reqwest::Client::builder()
            .timeout(cfg.request_timeout)
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(cfg.concurrency.max(8))
            .user_agent(concat!("vecload/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(OpenAiEmbedder {
            client,
            endpoint: format!("{}/embeddings", cfg.url),
            model: cfg.model.clone(),
            dimensions: cfg.send_dimensions.then_some(cfg.dim),
            key: cfg.api_key.clone(),
        })
    }

    /// Error text from the server, with anything that looks like our key removed
    /// (OpenAI echoes a masked key in 401 messages).
    fn clean(&self, body: &str) -> String {
        let msg = serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| {
                let e = v.get("error")?;
                e.get("message")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
                    .or_else(|| e.as_str().map(str::to_string))
            })
            .unwrap_or_else(|| body.chars().take(300).collect());
        let mut msg = match &self.key {
            Some(k) if !k.expose().is_empty() => msg.replace(k.expose(), "<redacted>"),
            _ => msg,
        };
        if msg.contains("sk-") {
            msg = msg
                .split(' ')
                .map(|w| {
                    if w.starts_with("sk-") {
                        "sk-<redacted>"
                    } else {
                        w
                    }
                })
                .collect::<Vec<_>>()
                .join(" ");
        }
        msg
    }
}

#[async_trait]
impl Embedder for OpenAiEmbedder {
    fn describe(&self) -> String {
        format!("{} (model {})", self.endpoint, self.model)
    }

    async fn embed(&self, inputs: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let body = Request {
            model: &self.model,
            input: inputs,
            encoding_format: "float",
            dimensions: self.dimensions,
        };
        let mut req = self.client.post(&self.endpoint).json(&body);
        if let Some(k) = &self.key {
            req = req.bearer_auth(k.expose());
        }
        let resp = req.send().await.map_err(|e| transport(&e))?;
        let status = resp.status();
        let retry_after = retry_after(resp.headers());
        let bytes = resp.bytes().await.map_err(|e| transport(&e))?;
        if !status.is_success() {
            let msg = self.clean(&String::from_utf8_lossy(&bytes));
            return Err(classify(status, msg, retry_after));
        }
        let parsed: Response = serde_json::from_slice(&bytes).map_err(|e| {
            let body = String::from_utf8_lossy(&bytes);
            // Python's json writes bare NaN/Infinity: not JSON, and no retry will change it.
            if body.contains("NaN") || body.contains("Infinity") {
                EmbedError::Rejected(format!(
                    "the endpoint returned a non-finite value (NaN or Infinity): {e}"
                ))
            } else {
                EmbedError::Transient {
                    message: format!("malformed response from the embedding endpoint: {e}"),
                    retry_after: None,
                }
            }
        })?;
        place_by_index(parsed.data, inputs.len())
    }
}

/// Vectors go where their `index` says, never by position: servers may answer
/// out of order. A missing, repeated or out-of-range index fails the batch.
fn place_by_index(items: Vec<Item>, n: usize) -> Result<Vec<Vec<f32>>, EmbedError> {
    let broken = |message: String| EmbedError::Transient {
        message,
        retry_after: None,
    };
    if items.len() != n {
        return Err(broken(format!(
            "the endpoint returned {} vectors for {n} inputs",
            items.len()
        )));
    }
    let mut out: Vec<Option<Vec<f32>>> = vec![None; n];
    for item in items {
        let slot = out.get_mut(item.index).ok_or_else(|| {
            broken(format!(
                "the endpoint returned index {} for {n} inputs",
                item.index
            ))
        })?;
        if slot.is_some() {
            return Err(broken(format!(
                "the endpoint returned index {} twice",
                item.index
            )));
        }
        *slot = Some(item.embedding);
    }
    out.into_iter()
        .map(|v| v.ok_or_else(|| broken("the endpoint left an input without a vector".into())))
        .collect()
}

fn transport(e: &reqwest::Error) -> EmbedError {
    let what = if e.is_timeout() {
        "request timed out (see --request-timeout)"
    } else if e.is_connect() {
        "cannot connect to the embedding endpoint"
    } else {
        "connection to the embedding endpoint failed"
    };
    // reqwest's Display includes the URL but never headers, so no key.
    EmbedError::Transient {
        message: format!("{what}: {e}"),
        retry_after: None,
    }
}

fn classify(status: StatusCode, msg: String, retry_after: Option<Duration>) -> EmbedError {
    let code = status.as_u16();
    let text = format!("embedding endpoint answered {code}: {msg}");
    match code {
        401 | 403 => EmbedError::Fatal(format!(
            "{text} (check --embed-api-key / EMBEDDING_BINDING_API_KEY)"
        )),
        404 => EmbedError::Fatal(format!("{text} (check --embed-url and --embed-model)")),
        429 => EmbedError::Throttled {
            message: text,
            retry_after,
        },
        408 | 409 | 425 => EmbedError::Transient {
            message: text,
            retry_after,
        },
        500..=599 => EmbedError::Transient {
            message: text,
            retry_after,
        },
        400 if is_unknown_model(&msg) => EmbedError::Fatal(format!("{text} (check --embed-model)")),
        413 => EmbedError::TooLarge(text),
        400 | 422 if is_too_large(&msg) => EmbedError::TooLarge(text),
        _ => EmbedError::Rejected(text),
    }
}

/// How providers word "this request is too big" (OpenAI, TEI, vLLM, LiteLLM, ...).
fn is_too_large(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    [
        "too long",
        "too large",
        "too many",
        "maximum context length",
        "max_tokens_per_request",
        "batch size",
        "exceeds",
        "over the limit",
        "maximum allowed",
    ]
    .iter()
    .any(|p| m.contains(p))
}

fn is_unknown_model(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    m.contains("model")
        && (m.contains("not found") || m.contains("does not exist") || m.contains("unknown model"))
}

/// `Retry-After` as seconds or as an HTTP date.
fn retry_after(h: &HeaderMap) -> Option<Duration> {
    retry_after_header(h).or_else(|| ratelimit_reset(h))
}

/// `Retry-After` as seconds or as an HTTP date.
fn retry_after_header(h: &HeaderMap) -> Option<Duration> {
    let v = h.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::from_secs_f64(secs.min(3600.0)));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or_default()
            .min(Duration::from_secs(3600)),
    )
}

/// OpenAI's `x-ratelimit-reset-requests` / `-tokens` ("1s", "6m0s", "20ms"),
/// read when there is no Retry-After: the later of the two, but only for the
/// limit that is used up (`x-ratelimit-remaining-*` of 0), when that is said.
/// Azure has sent -1 and 0 here: those mean nothing and are ignored.
fn ratelimit_reset(h: &HeaderMap) -> Option<Duration> {
    ["requests", "tokens"]
        .iter()
        .filter(|kind| {
            let remaining = h
                .get(format!("x-ratelimit-remaining-{kind}"))
                .and_then(|v| v.to_str().ok());
            remaining.is_none_or(|r| r.trim() == "0")
        })
        .filter_map(|kind| {
            h.get(format!("x-ratelimit-reset-{kind}"))?
                .to_str()
                .ok()
                .and_then(go_duration)
        })
        .filter(|d| !d.is_zero())
        .max()
        .map(|d| d.min(Duration::from_secs(3600)))
}

/// Go-style durations as OpenAI writes them: "1s", "6m0s", "1h2m3.5s", "20ms".
fn go_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.is_empty() || s.starts_with('-') {
        return None;
    }
    let mut total = 0.0f64;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let unit = if c == 'm' && chars.peek() == Some(&'s') {
            chars.next();
            0.001
        } else {
            match c {
                'h' => 3600.0,
                'm' => 60.0,
                's' => 1.0,
                _ => return None,
            }
        };
        total += num.parse::<f64>().ok()? * unit;
        num.clear();
    }
    if !num.is_empty() {
        // A bare number: seconds.
        total += num.parse::<f64>().ok()?;
    }
    total.is_finite().then(|| Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_are_placed_by_index() {
        let items = vec![
            Item {
                index: 2,
                embedding: vec![2.0],
            },
            Item {
                index: 0,
                embedding: vec![0.0],
            },
            Item {
                index: 1,
                embedding: vec![1.0],
            },
        ];
        assert_eq!(
            place_by_index(items, 3).unwrap(),
            vec![vec![0.0], vec![1.0], vec![2.0]]
        );
    }

    #[test]
    fn broken_indexes_fail_the_batch() {
        let dup = vec![
            Item {
                index: 0,
                embedding: vec![],
            },
            Item {
                index: 0,
                embedding: vec![],
            },
        ];
        assert!(place_by_index(dup, 2).is_err());
        let out_of_range = vec![Item {
            index: 5,
            embedding: vec![],
        }];
        assert!(place_by_index(out_of_range, 1).is_err());
        assert!(place_by_index(vec![], 1).is_err());
    }

    #[test]
    fn statuses_are_classified() {
        assert!(matches!(
            classify(StatusCode::TOO_MANY_REQUESTS, "x".into(), None),
            EmbedError::Throttled { .. }
        ));
        assert!(matches!(
            classify(StatusCode::BAD_GATEWAY, "x".into(), None),
            EmbedError::Transient { .. }
        ));
        assert!(matches!(
            classify(StatusCode::UNAUTHORIZED, "x".into(), None),
            EmbedError::Fatal(_)
        ));
        assert!(matches!(
            classify(
                StatusCode::BAD_REQUEST,
                "The model `nope` does not exist".into(),
                None
            ),
            EmbedError::Fatal(_)
        ));
        assert!(matches!(
            classify(StatusCode::BAD_REQUEST, "input too long".into(), None),
            EmbedError::TooLarge(_)
        ));
        assert!(matches!(
            classify(StatusCode::PAYLOAD_TOO_LARGE, "x".into(), None),
            EmbedError::TooLarge(_)
        ));
        assert!(matches!(
            classify(StatusCode::BAD_REQUEST, "invalid input".into(), None),
            EmbedError::Rejected(_)
        ));
    }

    #[test]
    fn openai_reset_headers_when_no_retry_after() {
        assert_eq!(go_duration("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(go_duration("20ms"), Some(Duration::from_millis(20)));
        assert_eq!(
            go_duration("1h2m3.5s"),
            Some(Duration::from_secs_f64(3723.5))
        );
        assert_eq!(go_duration("-1"), None);
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-remaining-requests", "10".parse().unwrap());
        h.insert("x-ratelimit-reset-requests", "30s".parse().unwrap());
        h.insert("x-ratelimit-remaining-tokens", "0".parse().unwrap());
        h.insert("x-ratelimit-reset-tokens", "1.5s".parse().unwrap());
        assert_eq!(
            retry_after(&h),
            Some(Duration::from_millis(1500)),
            "only the exhausted limit counts"
        );
        h.insert(RETRY_AFTER, "4".parse().unwrap());
        assert_eq!(
            retry_after(&h),
            Some(Duration::from_secs(4)),
            "Retry-After wins"
        );
        let mut azure = HeaderMap::new();
        azure.insert("x-ratelimit-reset-tokens", "0".parse().unwrap());
        azure.insert("x-ratelimit-reset-requests", "-1".parse().unwrap());
        assert_eq!(retry_after(&azure), None);
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        h.insert(RETRY_AFTER, later.parse().unwrap());
        let d = retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(25) && d <= Duration::from_secs(30),
            "{d:?}"
        );
    }
}
