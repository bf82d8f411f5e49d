//! OpenAI's Files and Batches APIs, for embeddings at the batch price:
//! request files (JSONL, one `POST /v1/embeddings` body a line, named by
//! `custom_id`) uploaded with purpose `batch`, batches made with a 24 h
//! window, polled, and their output and error files read line by line.
//!
//! Every call is retried on what a synchronous request is retried on
//! (timeouts, 5xx, 429 with its Retry-After); a refusal (bad key, unknown
//! model, a file the API will not take) stops the run with the API's words.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;

use super::{BatchApi, Job, Limits, Line, LineOutcome, Submission};
use crate::embed::EmbedError;
use crate::embed::settings::EmbedSettings;
use crate::embed::{http, providers};
use crate::settings::Secret;

/// OpenAI's limits of one batch's input file: requests, bytes, and (for
/// embeddings) inputs across all its requests.
pub const MAX_REQUESTS: usize = 50_000;
pub const MAX_FILE_BYTES: usize = 200 * 1024 * 1024;
pub const MAX_INPUTS: usize = 50_000;

/// What a batch says of itself (`GET /batches/{id}`).
#[derive(Debug, Clone, Deserialize)]
struct Batch {
    pub id: String,
    pub status: String,
    #[serde(default)]
    pub output_file_id: Option<String>,
    #[serde(default)]
    pub error_file_id: Option<String>,
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub request_counts: Option<Counts>,
    /// Why a batch failed validation (`{"data": [{"code", "message"}]}`).
    #[serde(default)]
    pub errors: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Counts {
    #[serde(default)]
    pub total: u64,
    #[serde(default)]
    pub completed: u64,
    #[serde(default)]
    pub failed: u64,
}

impl Batch {
    fn meta(&self, key: &str) -> Option<&str> {
        self.metadata.as_ref()?.get(key).map(String::as_str)
    }

    /// Whether this batch is the one made for `sub` (a batch made by an
    /// earlier version carries only its file's digest, which was its id).
    fn is(&self, sub: &Submission<'_>) -> bool {
        match self.meta(SUBMISSION_KEY) {
            Some(id) => id == sub.id,
            None => self.meta(DIGEST_KEY) == Some(sub.id),
        }
    }

    fn job(self) -> Job {
        let counts = self.request_counts.unwrap_or_default();
        Job {
            over: matches!(
                self.status.as_str(),
                "completed" | "expired" | "cancelled" | "failed"
            ),
            id: self.id,
            status: self.status,
            total: counts.total,
            completed: counts.completed,
            failed: counts.failed,
            outputs: [self.output_file_id, self.error_file_id]
                .into_iter()
                .flatten()
                .collect(),
            message: self.errors.as_ref().and_then(|e| {
                let all: Vec<String> = e["data"]
                    .as_array()?
                    .iter()
                    .filter_map(|d| d["message"].as_str().map(str::to_string))
                    .collect();
                (!all.is_empty()).then(|| all.join("; "))
            }),
        }
    }
}

/// The metadata key naming the submission a batch was made for: how a run
/// that was killed between creating a batch and recording it finds the
/// batch again instead of paying for a second one. The file's digest goes
/// beside it, for a person reading the batch list.
const SUBMISSION_KEY: &str = "vecload_submission";
const DIGEST_KEY: &str = "vecload_file_sha256";

pub struct OpenAiBatches {
    client: reqwest::Client,
    base: String,
    key: Option<Secret>,
    model: String,
    dimensions: Option<usize>,
    prefix: Option<String>,
}

impl OpenAiBatches {
    pub fn new(cfg: &EmbedSettings) -> Result<OpenAiBatches> {
        let base = cfg
            .urls
            .first()
            .cloned()
            .context("--batch-api needs the endpoint's URL (--embed-url)")?;
        let prefix = cfg.prefixed("");
        Ok(OpenAiBatches {
            client: http::client(cfg)?,
            base,
            key: cfg.api_key.clone(),
            model: cfg.model.clone(),
            dimensions: cfg.send_dimensions.then_some(cfg.dim),
            prefix: (!prefix.is_empty()).then(|| prefix.into_owned()),
        })
    }
}

#[async_trait]
impl BatchApi for OpenAiBatches {
    fn limits(&self) -> Limits {
        Limits {
            max_requests: MAX_REQUESTS,
            max_bytes: MAX_FILE_BYTES,
            max_inputs: MAX_INPUTS,
            min_requests: 1,
        }
    }

    /// One line of a request file: the body the synchronous path sends
    /// (providers/openai.rs: model, the prefixed inputs, `dimensions` when
    /// sent), vectors asked as base64 (a quarter of the output file).
    fn request_line(&self, custom_id: &str, inputs: &[&str]) -> String {
        let input: Vec<String> = inputs
            .iter()
            .map(|t| format!("{}{t}", self.prefix.as_deref().unwrap_or("")))
            .collect();
        let mut body = json!({
            "model": self.model,
            "input": input,
            "encoding_format": "base64",
        });
        if let Some(d) = self.dimensions {
            body["dimensions"] = json!(d);
        }
        let mut line = json!({
            "custom_id": custom_id,
            "method": "POST",
            "url": "/v1/embeddings",
            "body": body,
        })
        .to_string();
        line.push('\n');
        line
    }

    fn describe(&self) -> String {
        format!("{}/batches (model {})", self.base, self.model)
    }

    /// Uploads a request file; returns its file id.
    async fn upload(&self, name: &str, content: &[u8]) -> Result<String> {
        // multipart/form-data by hand: two parts, and reqwest's multipart
        // feature would pull in more than it saves.
        let boundary = format!("vecload-{:016x}", rand::random::<u64>());
        let mut body = Vec::with_capacity(content.len() + 512);
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n\
                 --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
                 Content-Type: application/jsonl\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(content);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let body = bytes::Bytes::from(body);
        let url = format!("{}/files", self.base);
        let answer = self
            .call(&format!("uploading {name}"), || {
                self.client
                    .post(&url)
                    .header(
                        "content-type",
                        format!("multipart/form-data; boundary={boundary}"),
                    )
                    .body(body.clone())
            })
            .await?;
        #[derive(Deserialize)]
        struct File {
            id: String,
        }
        let f: File = serde_json::from_slice(&answer)
            .with_context(|| format!("uploading {name}: the answer has no file id"))?;
        Ok(f.id)
    }

    /// Makes a batch of the uploaded request file `file_id`.
    async fn create(&self, file_id: &str, sub: &Submission<'_>) -> Result<Job> {
        let url = format!("{}/batches", self.base);
        let body = json!({
            "input_file_id": file_id,
            "endpoint": "/v1/embeddings",
            "completion_window": "24h",
            "metadata": {
                SUBMISSION_KEY: sub.id,
                DIGEST_KEY: sub.digest,
                "vecload_tenant": sub.tenant,
            },
        });
        let answer = self
            .call(&format!("creating a batch of {file_id}"), || {
                self.client.post(&url).json(&body)
            })
            .await?;
        parse_job(&answer)
    }

    async fn get(&self, id: &str) -> Result<Job> {
        let url = format!("{}/batches/{id}", self.base);
        let answer = self
            .call(&format!("batch {id}"), || self.client.get(&url))
            .await?;
        parse_job(&answer)
    }

    async fn cancel(&self, id: &str) -> Result<Job> {
        let url = format!("{}/batches/{id}/cancel", self.base);
        let answer = self
            .call(&format!("cancelling batch {id}"), || self.client.post(&url))
            .await?;
        parse_job(&answer)
    }

    /// The batch made for this submission, if any: the account's batches
    /// are listed, newest first, until it is found.
    async fn find(&self, sub: &Submission<'_>) -> Result<Option<Job>> {
        #[derive(Deserialize)]
        struct Page {
            data: Vec<Batch>,
            #[serde(default)]
            has_more: bool,
            #[serde(default)]
            last_id: Option<String>,
        }
        let mut after: Option<String> = None;
        loop {
            let mut url = format!("{}/batches?limit=100", self.base);
            if let Some(a) = &after {
                url.push_str(&format!("&after={a}"));
            }
            let answer = self
                .call("listing batches", || self.client.get(&url))
                .await?;
            let page: Page =
                serde_json::from_slice(&answer).context("listing batches: an unreadable page")?;
            if let Some(j) = page.data.iter().find(|j| j.is(sub)) {
                return Ok(Some(j.clone().job()));
            }
            match (
                page.has_more,
                page.last_id.or(page.data.last().map(|j| j.id.clone())),
            ) {
                (true, Some(last)) => after = Some(last),
                _ => return Ok(None),
            }
        }
    }

    async fn lines(
        &self,
        job: &Job,
        each: &mut (dyn for<'l> FnMut(&'l [u8]) -> Result<()> + Send),
    ) -> Result<()> {
        for file in &job.outputs {
            self.file_lines(file, each).await?;
        }
        Ok(())
    }

    fn line(&self, raw: &[u8]) -> Result<Line> {
        let parsed: OutputLine =
            serde_json::from_slice(raw).context("an unreadable line of a batch's file")?;
        let undone = parsed
            .error
            .as_ref()
            .and_then(|e| e.get("code"))
            .and_then(|c| c.as_str())
            .is_some_and(|c| c == "batch_expired" || c == "batch_cancelled");
        let id = parsed.custom_id.clone();
        Ok(Line {
            id,
            outcome: parsed.outcome(),
            undone,
        })
    }
}

impl OpenAiBatches {
    fn auth(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.key {
            Some(k) => req.bearer_auth(k.expose()),
            None => req,
        }
    }

    /// Sends what `make` builds until it is answered, retrying what is
    /// worth retrying.
    async fn call(
        &self,
        what: &str,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<bytes::Bytes> {
        let mut budget = crate::backoff::Budget::new(super::RETRY_BUDGET);
        loop {
            match http::send(self.auth(make()), self.key.as_ref()).await {
                Ok(b) => return Ok(b),
                Err(
                    EmbedError::Transient {
                        message,
                        retry_after,
                    }
                    | EmbedError::Throttled {
                        message,
                        retry_after,
                    },
                ) => match budget.next(retry_after) {
                    Some(wait) => {
                        tracing::warn!("{what}: {message}; again in {:.1}s", wait.as_secs_f64());
                        tokio::time::sleep(wait).await;
                    }
                    None => bail!(
                        "{what}: {message} ({} tries in {} s)",
                        budget.tries(),
                        budget.limit().as_secs()
                    ),
                },
                Err(e) => bail!("{what}: {e}"),
            }
        }
    }

    /// Reads a file's content and hands each line to `each`, as it comes:
    /// an output file is never held whole in memory.
    async fn file_lines(
        &self,
        file_id: &str,
        each: &mut (dyn for<'l> FnMut(&'l [u8]) -> Result<()> + Send + '_),
    ) -> Result<()> {
        let url = format!("{}/files/{file_id}/content", self.base);
        let mut budget = crate::backoff::Budget::new(super::RETRY_BUDGET);
        let mut resp = loop {
            let sent = self.auth(self.client.get(&url)).send().await;
            let failed = match sent {
                Ok(r) if r.status().is_success() => break r,
                Ok(r) if r.status().is_server_error() || r.status() == 429 => {
                    r.status().to_string()
                }
                Ok(r) => {
                    let status = r.status();
                    let body = r.bytes().await.unwrap_or_default();
                    bail!(
                        "file {file_id}: {status} {}",
                        http::redact(http::error_message(&body), self.key.as_ref())
                    );
                }
                Err(e) => e.to_string(),
            };
            let Some(pause) = budget.next(None) else {
                bail!("file {file_id}: {failed} ({} tries)", budget.tries());
            };
            tracing::warn!("file {file_id}: {failed}; trying again");
            tokio::time::sleep(pause).await;
        };
        let mut pending: Vec<u8> = Vec::new();
        while let Some(piece) = resp
            .chunk()
            .await
            .with_context(|| format!("reading file {file_id}"))?
        {
            pending.extend_from_slice(&piece);
            let mut start = 0;
            while let Some(n) = pending[start..].iter().position(|&b| b == b'\n') {
                let line = &pending[start..start + n];
                if !line.iter().all(u8::is_ascii_whitespace) {
                    each(line)?;
                }
                start += n + 1;
            }
            pending.drain(..start);
        }
        if !pending.iter().all(u8::is_ascii_whitespace) {
            each(&pending)?;
        }
        Ok(())
    }
}

fn parse_job(answer: &[u8]) -> Result<Job> {
    serde_json::from_slice::<Batch>(answer)
        .map(Batch::job)
        .with_context(|| {
            format!(
                "an unreadable batch: {}",
                String::from_utf8_lossy(&answer[..answer.len().min(200)])
            )
        })
}

/// One line of an output or error file, as OpenAI writes it.
#[derive(Deserialize)]
struct OutputLine {
    custom_id: String,
    #[serde(default)]
    response: Option<LineResponse>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct LineResponse {
    status_code: u16,
    #[serde(default)]
    body: serde_json::Value,
}

impl OutputLine {
    /// The line's vectors in input order (placed by `index`), or why none.
    fn outcome(self) -> LineOutcome {
        let resp = match (self.response, self.error) {
            (Some(r), _) if r.status_code == 200 => r,
            (Some(r), _) => {
                return LineOutcome::Failed(format!(
                    "{} {}",
                    r.status_code,
                    http::error_message(r.body.to_string().as_bytes())
                ));
            }
            (None, Some(e)) => {
                return LineOutcome::Failed(
                    e.get("message")
                        .and_then(|m| m.as_str())
                        .map_or_else(|| e.to_string(), str::to_string),
                );
            }
            (None, None) => return LineOutcome::Failed("a line with no response".into()),
        };
        // The synchronous path's own answer type and placement by `index`;
        // the count is checked against the request by `checked`.
        let parsed: providers::openai::Response = match serde_json::from_value(resp.body) {
            Ok(p) => p,
            Err(e) => return LineOutcome::Failed(format!("an unreadable answer: {e}")),
        };
        let n = parsed.data.len();
        match providers::openai::place_by_index(parsed.data, n) {
            Ok(vectors) => LineOutcome::Vectors(vectors),
            Err(e) => LineOutcome::Failed(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::batch_api::checked;

    fn outcome(b: &OpenAiBatches, raw: &str, n: usize, dim: usize) -> (Line, LineOutcome) {
        let mut line = b.line(raw.as_bytes()).expect("line");
        let outcome = match std::mem::replace(&mut line.outcome, LineOutcome::Failed(String::new()))
        {
            LineOutcome::Vectors(v) => checked(v, n, dim),
            f => f,
        };
        (line, outcome)
    }

    fn client() -> OpenAiBatches {
        let cfg = EmbedSettings {
            urls: vec!["http://e/v1".into()],
            model: "text-embedding-3-small".into(),
            dim: 512,
            send_dimensions: true,
            ..EmbedSettings::default()
        };
        OpenAiBatches::new(&cfg).expect("client")
    }

    #[test]
    fn output_lines_are_placed_by_index_and_checked() {
        let b = client();
        let (line, ok) = outcome(
            &b,
            r#"{"custom_id":"r0","response":{"status_code":200,"body":{"data":[
            {"index":1,"embedding":[3.0,4.0]},{"index":0,"embedding":[1.0,2.0]}]}},"error":null}"#,
            2,
            2,
        );
        assert_eq!(line.id, "r0");
        match ok {
            LineOutcome::Vectors(v) => assert_eq!(v, vec![vec![1.0, 2.0], vec![3.0, 4.0]]),
            LineOutcome::Failed(m) => panic!("{m}"),
        }
        let short = r#"{"custom_id":"r0","response":{"status_code":200,"body":{"data":[
            {"index":0,"embedding":[1.0]}]}}}"#;
        assert!(matches!(outcome(&b, short, 1, 2).1, LineOutcome::Failed(_)));
        let missing = r#"{"custom_id":"r0","response":{"status_code":200,"body":{"data":[
            {"index":0,"embedding":[1.0,2.0]}]}}}"#;
        assert!(matches!(
            outcome(&b, missing, 2, 2).1,
            LineOutcome::Failed(_)
        ));
        let refused = r#"{"custom_id":"r3","response":{"status_code":400,"body":{"error":{"message":"too long"}}}}"#;
        let (line, o) = outcome(&b, refused, 1, 2);
        assert!(!line.undone);
        match o {
            LineOutcome::Failed(m) => assert!(m.contains("too long"), "{m}"),
            LineOutcome::Vectors(_) => panic!("a 400 has no vectors"),
        }
        let expired = r#"{"custom_id":"r4","response":null,"error":{"code":"batch_expired","message":"This request could not be executed before the completion window expired."}}"#;
        let (line, o) = outcome(&b, expired, 1, 2);
        assert!(line.undone && matches!(o, LineOutcome::Failed(_)));
    }

    #[test]
    fn request_lines_carry_the_synchronous_body() {
        let b = client();
        let l: serde_json::Value =
            serde_json::from_str(b.request_line("r7", &["a", "b"]).trim()).expect("json");
        assert_eq!(l["custom_id"], "r7");
        assert_eq!(l["url"], "/v1/embeddings");
        assert_eq!(l["body"]["input"], json!(["a", "b"]));
        assert_eq!(l["body"]["dimensions"], 512);
        assert_eq!(l["body"]["model"], "text-embedding-3-small");
    }
}
