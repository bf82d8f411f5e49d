//! What every HTTP provider shares: how a failed request is classified
//! (retry, slow down, split, skip, stop) and how long the server asked us to wait.

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

use serde::Deserialize;

use super::EmbedError;
use crate::settings::Secret;

/// Several servers of one model (`--embed-url` given more than once, or
/// comma-separated). Each request goes to the server with the fewest
/// requests in flight (the next in turn among equals), so with one request
/// per server allowed, no server ever gets two while another is idle:
/// Ollama embeds serially, and a second request would only queue there.
pub(super) struct Endpoints {
    urls: Vec<String>,
    state: std::sync::Mutex<Turns>,
}

struct Turns {
    busy: Vec<usize>,
    next: usize,
}

/// A server picked for one request; frees its place when dropped.
pub(super) struct Picked<'a> {
    endpoints: &'a Endpoints,
    index: usize,
}

impl Picked<'_> {
    pub(super) fn url(&self) -> &str {
        &self.endpoints.urls[self.index]
    }
}

impl Drop for Picked<'_> {
    fn drop(&mut self) {
        if let Ok(mut t) = self.endpoints.state.lock() {
            t.busy[self.index] = t.busy[self.index].saturating_sub(1);
        }
    }
}

impl Endpoints {
    pub(super) fn new(urls: Vec<String>) -> Endpoints {
        let n = urls.len();
        Endpoints {
            urls,
            state: std::sync::Mutex::new(Turns {
                busy: vec![0; n],
                next: 0,
            }),
        }
    }

    pub(super) fn pick(&self) -> Picked<'_> {
        let index = match self.state.lock() {
            Ok(mut t) => {
                let n = t.busy.len();
                let start = t.next;
                let index = (0..n)
                    .map(|i| (start + i) % n)
                    .min_by_key(|&i| t.busy[i])
                    .unwrap_or(0);
                t.busy[index] += 1;
                t.next = (index + 1) % n;
                index
            }
            Err(_) => 0,
        };
        Picked {
            endpoints: self,
            index,
        }
    }

    /// The servers for logs and the report: user and password dropped, as
    /// a URL may carry them.
    pub(super) fn describe(&self) -> String {
        self.urls
            .iter()
            .map(|u| match url::Url::parse(u) {
                Ok(mut parsed) if parsed.password().is_some() || !parsed.username().is_empty() => {
                    let _ = parsed.set_password(None);
                    let _ = parsed.set_username("");
                    parsed.to_string()
                }
                _ => u.clone(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Sends a request and returns the body of a success; anything else becomes
/// the `EmbedError` that says what to do next, with the key scrubbed from the
/// server's message.
pub(super) async fn send(
    req: reqwest::RequestBuilder,
    key: Option<&Secret>,
) -> Result<bytes::Bytes, EmbedError> {
    let resp = req.send().await.map_err(|e| transport(&e))?;
    let status = resp.status();
    let wait = retry_after(resp.headers());
    let bytes = resp.bytes().await.map_err(|e| transport(&e))?;
    if !status.is_success() {
        let msg = redact(error_message(&bytes), key);
        return Err(classify(status, msg, wait));
    }
    Ok(bytes)
}

/// A success body as JSON. Bare NaN/Infinity (Python's json writes them) is
/// not JSON and no retry will change it; anything else broken is retried.
pub(super) fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, EmbedError> {
    serde_json::from_slice(bytes).map_err(|e| {
        let body = String::from_utf8_lossy(bytes);
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
    })
}

/// Error text with anything that looks like our key removed (OpenAI echoes a
/// masked key in 401 messages).
pub(super) fn redact(msg: String, key: Option<&Secret>) -> String {
    let mut msg = match key {
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

/// Floats, with `null` (what orjson and others write for NaN) read as NaN so
/// the vector check rejects it with a clear message.
pub(super) fn lenient_floats<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<f32>, D::Error> {
    let v: Vec<Option<f32>> = Vec::deserialize(d)?;
    Ok(v.into_iter().map(|x| x.unwrap_or(f32::NAN)).collect())
}

/// A vector as floats (nulls as NaN, as above) or as OpenAI's
/// `encoding_format: "base64"` string of little-endian f32 bytes.
pub(super) fn floats_or_base64<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<f32>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Floats(Vec<Option<f32>>),
        Base64(String),
    }
    match Either::deserialize(d)? {
        Either::Floats(v) => Ok(v.into_iter().map(|x| x.unwrap_or(f32::NAN)).collect()),
        Either::Base64(s) => {
            use base64::Engine;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s.as_bytes())
                .map_err(|e| serde::de::Error::custom(format!("base64 embedding: {e}")))?;
            if bytes.len() % 4 != 0 {
                return Err(serde::de::Error::custom(format!(
                    "base64 embedding of {} bytes is not a whole number of f32s",
                    bytes.len()
                )));
            }
            Ok(bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect())
        }
    }
}

/// The client every HTTP provider uses.
pub(super) fn client(
    cfg: &crate::embed::settings::EmbedSettings,
) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(cfg.request_timeout)
        .connect_timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(cfg.concurrency.max(8))
        .user_agent(concat!("vecload/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

/// The message of an error body: `{"error": {"message": ..}}` (OpenAI),
/// `{"error": ".."}` (TEI, Ollama), or the start of the raw text.
pub(super) fn error_message(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| {
            // OpenAI, Azure, Gemini: {"error": {"message"}}; TEI, Ollama:
            // {"error": "..."}; Voyage, Jina (FastAPI): {"detail"};
            // Bedrock: {"message"}.
            let text = |x: &serde_json::Value| x.as_str().map(str::to_string);
            match v.get("error") {
                Some(e) => e.get("message").and_then(text).or_else(|| text(e)),
                None => v
                    .get("detail")
                    .and_then(|d| text(d).or_else(|| Some(d.to_string())))
                    .or_else(|| v.get("message").and_then(text)),
            }
        })
        .unwrap_or_else(|| text.chars().take(300).collect())
}

pub(super) fn transport(e: &reqwest::Error) -> EmbedError {
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

pub(super) fn classify(
    status: StatusCode,
    msg: String,
    retry_after: Option<Duration>,
) -> EmbedError {
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
        // 424: TEI's "the model backend failed".
        408 | 409 | 424 | 425 => EmbedError::Transient {
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
pub(super) fn is_too_large(msg: &str) -> bool {
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
        "must have less than",
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
pub(super) fn retry_after(h: &HeaderMap) -> Option<Duration> {
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
    fn each_providers_error_body_gives_its_message() {
        for (body, want) in [
            (
                r#"{"error": {"message": "bad key", "type": "x"}}"#,
                "bad key",
            ),
            (
                r#"{"error": "Model is overloaded", "error_type": "Overloaded"}"#,
                "Model is overloaded",
            ),
            (
                r#"{"detail": "The batch size limit is 128."}"#,
                "The batch size limit is 128.",
            ),
            (
                r#"{"message": "Malformed input request"}"#,
                "Malformed input request",
            ),
            (
                r#"{"error": {"code": 429, "message": "Resource has been exhausted", "status": "RESOURCE_EXHAUSTED"}}"#,
                "Resource has been exhausted",
            ),
            ("upstream connect error", "upstream connect error"),
        ] {
            assert_eq!(error_message(body.as_bytes()), want);
        }
    }

    #[test]
    fn a_request_goes_to_the_least_busy_server() {
        let e = Endpoints::new(vec!["a".into(), "b".into(), "c".into()]);
        let first = e.pick();
        let second = e.pick();
        assert_eq!((first.url(), second.url()), ("a", "b"));
        drop(second);
        // b is free again and c never used: either is idle; c is next in turn.
        let third = e.pick();
        assert_eq!(third.url(), "c");
        let fourth = e.pick();
        assert_eq!(fourth.url(), "b", "the only idle server");
        drop(first);
        assert_eq!(e.pick().url(), "a");
    }

    #[test]
    fn endpoints_never_show_credentials() {
        let e = Endpoints::new(vec![
            "https://user:s3cret@tei.internal:8080".into(),
            "http://localhost:11434".into(),
        ]);
        let d = e.describe();
        assert!(!d.contains("s3cret") && !d.contains("user"), "{d}");
        assert!(d.contains("tei.internal:8080") && d.contains("localhost:11434"));
    }
    use reqwest::StatusCode;
    use std::time::SystemTime;

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
