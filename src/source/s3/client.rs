//! The S3 calls vecload makes, over reqwest and signed with SigV4:
//! ListObjectsV2 (a page of at most 1,000 keys), GetObject (streamed into a
//! file, never past the size limit), a one-key listing to check access
//! before anything is sent, and PutObject for `--report s3://`. Throttling (503 SlowDown), server errors and
//! broken connections are retried with backoff; a bucket in another region
//! is followed once, and said.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::anyhow;
use tokio::io::AsyncWriteExt;

use crate::aws::sign::{self, Service};
use crate::aws::{CredentialChain, Env, xml_text};

/// Attempts of one call before its error stands.
/// How long one S3 request is retried on throttling (503 SlowDown) and
/// transient failures: a budget in time.
const RETRY_BUDGET: Duration = Duration::from_secs(180);

pub struct S3 {
    http: reqwest::Client,
    creds: Arc<CredentialChain>,
    region: Mutex<String>,
    /// A custom endpoint (an S3-compatible store, a VPC endpoint), without a
    /// trailing slash.
    endpoint: Option<url::Url>,
    path_style: bool,
}

/// One listed object.
#[derive(Debug, Clone)]
pub struct Object {
    pub key: String,
    /// Without the quotes S3 puts around it.
    pub etag: String,
    pub size: u64,
}

#[derive(Debug, Default)]
pub struct Page {
    pub objects: Vec<Object>,
    /// Keys whose bytes are not UTF-8 (S3 keys are, but a listing can say
    /// otherwise): named, and skipped.
    pub bad_keys: Vec<String>,
    pub next: Option<String>,
}

/// What went wrong, sorted by what the caller does.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    /// 403: no permission for this bucket or object.
    #[error("access denied: {0}")]
    Denied(String),
    #[error("no such bucket: {0}")]
    NoSuchBucket(String),
    /// The object was deleted (or never existed).
    #[error("no such key: {0}")]
    NoSuchKey(String),
    /// Bigger than the limit while being read.
    #[error("larger than {0} bytes")]
    TooLarge(u64),
    #[error("{0:#}")]
    Other(anyhow::Error),
}

impl S3 {
    /// The client a run's S3 settings (its flags and the process's AWS
    /// environment) describe, on an HTTP client of its own.
    pub fn from_settings(s3: &crate::source::settings::S3Settings) -> anyhow::Result<S3> {
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()?;
        S3::new(
            &Env::from_process(),
            s3.endpoint.clone(),
            s3.path_style,
            http,
        )
    }

    /// `endpoint`: --s3-endpoint-url, else AWS_ENDPOINT_URL_S3 /
    /// AWS_ENDPOINT_URL. Path-style addressing when asked (--s3-path-style,
    /// AWS_S3_FORCE_PATH_STYLE) or when the endpoint's host is an address.
    pub fn new(
        env: &Env,
        endpoint: Option<String>,
        path_style: bool,
        http: reqwest::Client,
    ) -> anyhow::Result<S3> {
        let endpoint = endpoint
            .or_else(|| env.endpoint("S3"))
            .map(|u| {
                let u = u.trim().trim_end_matches('/');
                url::Url::parse(u).map_err(|e| anyhow!("the S3 endpoint {u:?} is not a URL: {e}"))
            })
            .transpose()?;
        let by_address = endpoint.as_ref().is_some_and(|u| {
            matches!(u.host(), Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)))
                || u.host_str() == Some("localhost")
        });
        let region = env.region();
        Ok(S3 {
            creds: CredentialChain::new(env.clone(), http.clone(), region.clone()),
            http,
            region: Mutex::new(region.unwrap_or_else(|| "us-east-1".into())),
            endpoint,
            path_style: path_style || env.flag("AWS_S3_FORCE_PATH_STYLE") || by_address,
        })
    }

    fn region(&self) -> String {
        self.region
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The URL of `bucket` (and `key`), with `query` already encoded.
    fn url(&self, bucket: &str, key: Option<&str>, query: &str) -> anyhow::Result<url::Url> {
        let path = key
            .map(|k| format!("/{}", encode(k, false)))
            .unwrap_or_else(|| "/".into());
        let q = if query.is_empty() {
            String::new()
        } else {
            format!("?{query}")
        };
        // A bucket with dots breaks the TLS name of virtual hosting.
        let path_style = self.path_style || bucket.contains('.');
        let text = match (&self.endpoint, path_style) {
            (Some(e), true) => format!("{}/{bucket}{path}{q}", e.as_str().trim_end_matches('/')),
            (Some(e), false) => {
                let host = e.host_str().unwrap_or_default();
                let port = e.port().map(|p| format!(":{p}")).unwrap_or_default();
                format!("{}://{bucket}.{host}{port}{path}{q}", e.scheme())
            }
            (None, true) => format!(
                "https://s3.{}.amazonaws.com/{bucket}{path}{q}",
                self.region()
            ),
            (None, false) => format!(
                "https://{bucket}.s3.{}.amazonaws.com{path}{q}",
                self.region()
            ),
        };
        url::Url::parse(&text).map_err(|e| anyhow!("bad S3 URL {text}: {e}"))
    }

    /// One signed GET, retried on throttling and transient failures.
    async fn get(
        &self,
        bucket: &str,
        key: Option<&str>,
        query: &str,
    ) -> Result<reqwest::Response, S3Error> {
        self.send(reqwest::Method::GET, bucket, key, query, None)
            .await
    }

    /// Writes `body` to `bucket`/`key` (a small object: the report).
    pub async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<(), S3Error> {
        self.send(
            reqwest::Method::PUT,
            bucket,
            Some(key),
            "",
            Some((body, content_type)),
        )
        .await
        .map(drop)
    }

    /// One signed request, retried on throttling and transient failures.
    async fn send(
        &self,
        method: reqwest::Method,
        bucket: &str,
        key: Option<&str>,
        query: &str,
        body: Option<(Vec<u8>, &str)>,
    ) -> Result<reqwest::Response, S3Error> {
        let mut last = String::new();
        let mut moved = false;
        let mut budget = crate::backoff::Budget::new(RETRY_BUDGET);
        let mut first = true;
        loop {
            if !first {
                match budget.next(None) {
                    Some(pause) => tokio::time::sleep(pause).await,
                    None => break,
                }
            }
            first = false;
            let url = self.url(bucket, key, query).map_err(S3Error::Other)?;
            let (creds, _) = self.creds.get().await.map_err(S3Error::Other)?;
            let mut req = self
                .http
                .request(method.clone(), url.clone())
                .timeout(Duration::from_secs(300));
            if let Some((bytes, content_type)) = &body {
                req = req
                    .header(reqwest::header::CONTENT_TYPE, *content_type)
                    .body(bytes.clone());
            }
            let mut req = req.build().map_err(|e| S3Error::Other(e.into()))?;
            sign::sign(&mut req, &creds, &self.region(), "s3", Service::S3)
                .map_err(S3Error::Other)?;
            let resp = match self.http.execute(req).await {
                Ok(r) => r,
                Err(e) => {
                    last = format!("{e}");
                    continue;
                }
            };
            let status = resp.status();
            if status.is_success() {
                return Ok(resp);
            }
            let header_region = resp
                .headers()
                .get("x-amz-bucket-region")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = resp.text().await.unwrap_or_default();
            let code = xml_text(&body, "Code").unwrap_or_default();
            let message = xml_text(&body, "Message").unwrap_or_else(|| status.to_string());
            let what = match key {
                Some(k) => format!("s3://{bucket}/{k}"),
                None => format!("s3://{bucket}"),
            };
            // The bucket lives in another region: follow it once.
            let region = header_region.or_else(|| xml_text(&body, "Region"));
            if !moved
                && (status.as_u16() == 301
                    || code == "PermanentRedirect"
                    || code == "AuthorizationHeaderMalformed")
                && let Some(r) = region.filter(|r| *r != self.region())
            {
                tracing::info!(
                    "bucket {bucket} is in region {r}, not {}: using {r} (set AWS_REGION={r} to say so)",
                    self.region()
                );
                *self.region.lock().unwrap_or_else(|p| p.into_inner()) = r;
                moved = true;
                continue;
            }
            match (status.as_u16(), code.as_str()) {
                (403, _) => return Err(S3Error::Denied(format!("{what}: {code} {message}"))),
                (404, "NoSuchBucket") => return Err(S3Error::NoSuchBucket(bucket.to_string())),
                (404, _) => return Err(S3Error::NoSuchKey(what)),
                (429 | 500 | 502 | 503 | 504, _) => {
                    last = format!("{what}: {status} {code} {message}");
                    tracing::debug!("{last}; retrying");
                }
                _ => {
                    return Err(S3Error::Other(anyhow!("{what}: {status} {code} {message}")));
                }
            }
        }
        Err(S3Error::Other(anyhow!(
            "S3 failed {} times in {} s: {last}",
            budget.tries(),
            RETRY_BUDGET.as_secs()
        )))
    }

    /// One page of the keys under `prefix`, from `token` on.
    pub async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        token: Option<&str>,
        max_keys: usize,
    ) -> Result<Page, S3Error> {
        let mut query = format!(
            "encoding-type=url&list-type=2&max-keys={max_keys}&prefix={}",
            encode(prefix, true)
        );
        if let Some(t) = token {
            // Query parameters in the canonical (sorted) order.
            query = format!("continuation-token={}&{query}", encode(t, true));
        }
        let resp = self.get(bucket, None, &query).await?;
        let body = resp.text().await.map_err(|e| S3Error::Other(e.into()))?;
        parse_list(&body).map_err(S3Error::Other)
    }

    /// Streams object `key` into `to`; refuses past `max_bytes`. Returns the
    /// bytes written.
    pub async fn download(
        &self,
        bucket: &str,
        key: &str,
        to: &Path,
        max_bytes: u64,
    ) -> Result<u64, S3Error> {
        let mut resp = self.get(bucket, Some(key), "").await?;
        let mut file = tokio::fs::File::create(to)
            .await
            .map_err(|e| S3Error::Other(anyhow!("spooling to {}: {e}", to.display())))?;
        let mut n = 0u64;
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| S3Error::Other(anyhow!("reading s3://{bucket}/{key}: {e}")))?
        {
            n += chunk.len() as u64;
            if n > max_bytes {
                return Err(S3Error::TooLarge(max_bytes));
            }
            file.write_all(&chunk)
                .await
                .map_err(|e| S3Error::Other(anyhow!("spooling to {}: {e}", to.display())))?;
        }
        file.flush()
            .await
            .map_err(|e| S3Error::Other(anyhow!("spooling to {}: {e}", to.display())))?;
        Ok(n)
    }
}

/// Percent-encoding as S3 and SigV4 want it: everything but the unreserved
/// characters, and `/` too when `slash`.
fn encode(s: &str, slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'/' if !slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A key of a listing with `encoding-type=url` (`+` is a space, as S3
/// writes it); Err with its bytes when they are not UTF-8.
fn decode_key(s: &str) -> Result<String, Vec<u8>> {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                    out.push(h * 16 + l);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|e| e.into_bytes())
}

/// A ListObjectsV2 answer.
fn parse_list(xml: &str) -> anyhow::Result<Page> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut page = Page::default();
    let mut path: Vec<String> = Vec::new();
    // An element's text arrives in pieces (entities are events of their own).
    let mut text = String::new();
    let (mut key, mut etag, mut size) = (None::<String>, String::new(), 0u64);
    let mut truncated = false;
    loop {
        match reader
            .read_event()
            .map_err(|e| anyhow!("the S3 listing is not XML: {e}"))?
        {
            Event::Start(e) => {
                path.push(e.local_name().as_ref().to_string());
                text.clear();
            }
            Event::Text(t) => text.push_str(&t.xml10_content()),
            Event::CData(t) => text.push_str(&t.into_inner()),
            Event::GeneralRef(r) => {
                if let Ok(Some(c)) = r.resolve_char_ref() {
                    text.push(c);
                } else if let Some(e) =
                    quick_xml::escape::resolve_predefined_entity(&r.xml10_content())
                {
                    text.push_str(e);
                }
            }
            Event::End(_) => {
                let inside =
                    |p: &[&str]| path.len() >= p.len() && path[path.len() - p.len()..] == *p;
                if inside(&["Contents", "Key"]) {
                    key = Some(std::mem::take(&mut text));
                } else if inside(&["Contents", "ETag"]) {
                    etag = text.trim_matches('"').to_string();
                } else if inside(&["Contents", "Size"]) {
                    size = text.trim().parse().unwrap_or(0);
                } else if inside(&["ListBucketResult", "IsTruncated"]) {
                    truncated = text.trim() == "true";
                } else if inside(&["ListBucketResult", "NextContinuationToken"]) {
                    page.next = Some(std::mem::take(&mut text));
                } else if path.last().map(String::as_str) == Some("Contents") {
                    match key.take().map(|k| decode_key(&k)) {
                        Some(Ok(k)) => page.objects.push(Object {
                            key: k,
                            etag: std::mem::take(&mut etag),
                            size,
                        }),
                        Some(Err(raw)) => page
                            .bad_keys
                            .push(String::from_utf8_lossy(&raw).into_owned()),
                        None => {}
                    }
                    size = 0;
                }
                text.clear();
                path.pop();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !truncated {
        page.next = None;
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_with_url_encoded_keys() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><IsTruncated>true</IsTruncated><Contents><Key>dir%20a/k%2Bplus+%E4%B8%AD.txt</Key><ETag>&#34;d41d8&#34;</ETag><Size>12</Size></Contents><Contents><Key>b.md</Key><ETag>"e1-2"</ETag><Size>3</Size></Contents><NextContinuationToken>tok/=+</NextContinuationToken></ListBucketResult>"#;
        let p = parse_list(xml).unwrap();
        assert_eq!(p.objects.len(), 2);
        assert_eq!(p.objects[0].key, "dir a/k+plus 中.txt");
        assert_eq!(p.objects[0].etag, "d41d8");
        assert_eq!(p.objects[0].size, 12);
        assert_eq!(p.objects[1].etag, "e1-2");
        assert_eq!(p.next.as_deref(), Some("tok/=+"));
        let last = parse_list(&xml.replace("<IsTruncated>true", "<IsTruncated>false")).unwrap();
        assert!(last.next.is_none());
    }

    #[test]
    fn keys_are_encoded_as_sigv4_wants() {
        assert_eq!(encode("a b/c+d~é", false), "a%20b/c%2Bd~%C3%A9");
        assert_eq!(encode("a/b", true), "a%2Fb");
    }
}
