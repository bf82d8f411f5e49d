//! Bedrock batch inference (`CreateModelInvocationJob`) for Titan and
//! Cohere embeddings: records `{"recordId", "modelInput"}` (the InvokeModel
//! body the synchronous path sends) in a JSONL object under `--batch-s3`,
//! a job run as `--batch-role-arn`, polled with `GetModelInvocationJob`,
//! and its `.jsonl.out` records (`modelOutput` or `error`) joined on
//! `recordId`, never on order.
//!
//! The control plane is `bedrock.{region}.amazonaws.com` (or
//! `AWS_ENDPOINT_URL_BEDROCK`), signed as `bedrock` like the runtime. The
//! job's name carries the submission's id and its `clientRequestToken` is
//! that id, so a job made just before a crash is found by name, a retried
//! create is the same job, and the same file submitted again (what a
//! failed job left undone) is a new job, not the old one returned.

use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;

use super::{BatchApi, BedrockPlace, Job, Limits, Line, LineOutcome, Objects, Submission};
use crate::aws::Env;
use crate::embed::providers::bedrock::BedrockEmbedder;
use crate::embed::settings::EmbedSettings;

/// Bedrock's default quotas of one batch inference job (adjustable per
/// account: a job the quotas refuse fails with Bedrock's own message).
pub const MAX_RECORDS: usize = 50_000;
pub const MIN_RECORDS: usize = 100;
const MAX_FILE_BYTES: usize = 200 * 1024 * 1024;

pub struct BedrockBatches {
    runtime: BedrockEmbedder,
    control: String,
    place: BedrockPlace,
    objects: Arc<dyn Objects>,
}

impl BedrockBatches {
    pub fn new(
        cfg: &EmbedSettings,
        place: BedrockPlace,
        objects: Arc<dyn Objects>,
    ) -> Result<BedrockBatches> {
        let env = Env::from_process();
        let runtime = BedrockEmbedder::new(cfg, &env)?;
        let control = env
            .endpoint("BEDROCK")
            .unwrap_or_else(|| format!("https://bedrock.{}.amazonaws.com", runtime.region()));
        Ok(BedrockBatches {
            runtime,
            control,
            place,
            objects,
        })
    }

    /// `vecload-` and the submission's id (at most 40 characters of it: a
    /// record of an earlier version is named by its 64-digit file digest).
    fn job_name(id: &str) -> String {
        format!("vecload-{}", &id[..id.len().min(40)])
    }

    /// One signed control-plane call, retried on throttling and 5xx.
    async fn call(
        &self,
        what: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value> {
        let url = format!("{}{path}", self.control);
        let mut budget = crate::backoff::Budget::new(super::RETRY_BUDGET);
        loop {
            let mut b = self
                .runtime
                .client()
                .request(method.clone(), &url)
                .header("accept", "application/json");
            if let Some(body) = &body {
                b = b
                    .header("content-type", "application/json")
                    .body(body.to_string());
            }
            let mut req = b
                .build()
                .with_context(|| format!("{what}: building the request"))?;
            self.runtime.sign(&mut req).await?;
            let sent = self.runtime.client().execute(req).await;
            let (status, kind, bytes) = match sent {
                Ok(r) => {
                    let status = r.status();
                    let kind = r
                        .headers()
                        .get("x-amzn-errortype")
                        .and_then(|v| v.to_str().ok())
                        .map(|t| t.split(':').next().unwrap_or(t).to_string());
                    (status, kind, r.bytes().await.unwrap_or_default())
                }
                Err(e) => match budget.next(None) {
                    Some(pause) => {
                        tracing::warn!("{what}: {e}; trying again");
                        tokio::time::sleep(pause).await;
                        continue;
                    }
                    None => bail!(
                        "{what}: {e} ({} tries in {} s)",
                        budget.tries(),
                        budget.limit().as_secs()
                    ),
                },
            };
            if status.is_success() {
                if bytes.is_empty() {
                    return Ok(serde_json::Value::Null);
                }
                return serde_json::from_slice(&bytes)
                    .with_context(|| format!("{what}: an unreadable answer"));
            }
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            let message = v
                .get("message")
                .or_else(|| v.get("Message"))
                .and_then(|m| m.as_str())
                .map_or_else(
                    || String::from_utf8_lossy(&bytes).chars().take(300).collect(),
                    str::to_string,
                );
            let kind = kind.unwrap_or_default();
            let retry =
                status.as_u16() == 429 || status.is_server_error() || kind == "ThrottlingException";
            if retry && let Some(pause) = budget.next(None) {
                tracing::warn!("{what}: {status} {kind}: {message}; trying again");
                tokio::time::sleep(pause).await;
                continue;
            }
            let hint = match kind.as_str() {
                "AccessDeniedException" => {
                    " (the role needs bedrock:CreateModelInvocationJob, bedrock:GetModelInvocationJob \
                     and iam:PassRole on --batch-role-arn)"
                }
                "ServiceQuotaExceededException" => {
                    " (a batch inference quota: records per job, jobs in progress; see the \
                     account's Service Quotas for Bedrock)"
                }
                _ => "",
            };
            bail!(
                "{what}: Bedrock answered {status} {kind}: {message}{hint} (model {} in region {})",
                self.runtime.model(),
                self.runtime.region()
            );
        }
    }
}

/// A job as `GetModelInvocationJob` and the listing describe it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Described {
    job_arn: String,
    status: String,
    #[serde(default)]
    output_data_config: Option<serde_json::Value>,
    #[serde(default)]
    job_name: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

impl Described {
    fn job(self) -> Job {
        let over = matches!(
            self.status.as_str(),
            "Completed" | "PartiallyCompleted" | "Failed" | "Stopped" | "Expired"
        );
        // Output lands under `{s3Uri}/{job id}/`.
        let job_id = self.job_arn.rsplit('/').next().unwrap_or("").to_string();
        let outputs = self
            .output_data_config
            .as_ref()
            .and_then(|c| c["s3OutputDataConfig"]["s3Uri"].as_str())
            .map(|u| format!("{}/{job_id}/", u.trim_end_matches('/')))
            .into_iter()
            .collect();
        Job {
            id: self.job_arn,
            status: self.status,
            over,
            outputs,
            message: self.message,
            ..Job::default()
        }
    }
}

fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
}

fn split_s3(url: &str) -> Result<(&str, &str)> {
    url.strip_prefix("s3://")
        .and_then(|r| r.split_once('/'))
        .ok_or_else(|| anyhow!("not an s3:// URL: {url}"))
}

#[async_trait]
impl BatchApi for BedrockBatches {
    fn describe(&self) -> String {
        format!(
            "Bedrock batch inference {} in {} (files under s3://{}/{})",
            self.runtime.model(),
            self.runtime.region(),
            self.place.bucket,
            self.place.prefix
        )
    }

    fn limits(&self) -> Limits {
        Limits {
            max_requests: MAX_RECORDS,
            max_bytes: MAX_FILE_BYTES,
            max_inputs: usize::MAX,
            min_requests: MIN_RECORDS,
        }
    }

    fn request_line(&self, id: &str, inputs: &[&str]) -> String {
        let mut line = json!({"recordId": id, "modelInput": self.runtime.body(inputs)}).to_string();
        line.push('\n');
        line
    }

    async fn upload(&self, name: &str, content: &[u8]) -> Result<String> {
        let key = format!("{}input/{name}", self.place.prefix);
        self.objects
            .put(&self.place.bucket, &key, content.to_vec())
            .await
            .with_context(|| format!("putting s3://{}/{key}", self.place.bucket))?;
        Ok(format!("s3://{}/{key}", self.place.bucket))
    }

    async fn create(&self, file: &str, sub: &Submission<'_>) -> Result<Job> {
        let body = json!({
            "jobName": Self::job_name(sub.id),
            "clientRequestToken": &sub.id[..sub.id.len().min(64)],
            "roleArn": self.place.role_arn,
            "modelId": self.runtime.model(),
            "inputDataConfig": {"s3InputDataConfig": {"s3Uri": file, "s3InputFormat": "JSONL"}},
            "outputDataConfig": {"s3OutputDataConfig": {
                "s3Uri": format!("s3://{}/{}output/", self.place.bucket, self.place.prefix)
            }},
            "timeoutDurationInHours": 24,
        });
        let made = self
            .call(
                "creating a batch inference job",
                reqwest::Method::POST,
                "/model-invocation-job",
                Some(body),
            )
            .await?;
        let arn = made["jobArn"]
            .as_str()
            .ok_or_else(|| anyhow!("creating a batch inference job: no jobArn in the answer"))?;
        self.get(arn).await
    }

    async fn find(&self, sub: &Submission<'_>) -> Result<Option<Job>> {
        let name = Self::job_name(sub.id);
        let mut token: Option<String> = None;
        loop {
            let mut path = format!(
                "/model-invocation-jobs?maxResults=100&nameContains={}",
                encode(&name)
            );
            if let Some(t) = &token {
                path.push_str(&format!("&nextToken={}", encode(t)));
            }
            let page = self
                .call(
                    "listing batch inference jobs",
                    reqwest::Method::GET,
                    &path,
                    None,
                )
                .await?;
            let jobs: Vec<Described> =
                serde_json::from_value(page["invocationJobSummaries"].clone()).unwrap_or_default();
            if let Some(j) = jobs
                .into_iter()
                .find(|j| j.job_name.as_deref() == Some(name.as_str()))
            {
                return Ok(Some(j.job()));
            }
            match page["nextToken"].as_str() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(None),
            }
        }
    }

    async fn get(&self, id: &str) -> Result<Job> {
        let v = self
            .call(
                &format!("batch inference job {id}"),
                reqwest::Method::GET,
                &format!("/model-invocation-job/{}", encode(id)),
                None,
            )
            .await?;
        let d: Described = serde_json::from_value(v)
            .with_context(|| format!("batch inference job {id}: an unreadable answer"))?;
        Ok(d.job())
    }

    async fn cancel(&self, id: &str) -> Result<Job> {
        self.call(
            &format!("stopping batch inference job {id}"),
            reqwest::Method::POST,
            &format!("/model-invocation-job/{}/stop", encode(id)),
            None,
        )
        .await?;
        self.get(id).await
    }

    async fn lines(
        &self,
        job: &Job,
        each: &mut (dyn for<'l> FnMut(&'l [u8]) -> Result<()> + Send),
    ) -> Result<()> {
        for folder in &job.outputs {
            let (bucket, prefix) = split_s3(folder)?;
            for key in self.objects.keys(bucket, prefix).await? {
                // Records, not the manifest of counts beside them.
                if key.ends_with(".out") && !key.ends_with("manifest.json.out") {
                    self.objects.lines(bucket, &key, each).await?;
                }
            }
        }
        Ok(())
    }

    fn line(&self, raw: &[u8]) -> Result<Line> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Record {
            record_id: String,
            #[serde(default)]
            model_output: Option<serde_json::Value>,
            #[serde(default)]
            error: Option<serde_json::Value>,
        }
        let r: Record =
            serde_json::from_slice(raw).context("an unreadable record of a batch's output")?;
        let n = |output: &serde_json::Value| {
            output
                .get("embeddings")
                .map(|e| {
                    e.as_array()
                        .or_else(|| e.get("float").and_then(|f| f.as_array()))
                        .map_or(0, Vec::len)
                })
                .unwrap_or(1)
        };
        let (outcome, undone) = match (r.model_output, r.error) {
            (Some(out), None) => {
                let count = n(&out);
                match self.runtime.vectors(out.to_string().as_bytes(), count) {
                    Ok(v) => (LineOutcome::Vectors(v), false),
                    Err(e) => (LineOutcome::Failed(e.to_string()), false),
                }
            }
            (_, Some(e)) => {
                let code = e["errorCode"].as_u64().unwrap_or(400);
                let message = e["errorMessage"]
                    .as_str()
                    .map_or_else(|| e.to_string(), str::to_string);
                // Throttled or failed on Bedrock's side: worth another batch.
                let again = code == 429 || code >= 500;
                (LineOutcome::Failed(format!("{code} {message}")), again)
            }
            (None, None) => (LineOutcome::Failed("a record with no output".into()), true),
        };
        Ok(Line {
            id: r.record_id,
            outcome,
            undone,
        })
    }
}
