//! Where the Qdrant server is and how to reach it.
//!
//! The RAG API's QDRANT_URL names the REST port (`http://host:6333`), but bulk
//! uploads go over gRPC, which is faster and has no request-size cap; pointing
//! the gRPC client at the REST port fails with an HTTP/2 frame error. So the
//! REST URL is taken as given and gRPC is spoken on 6334 of the same host,
//! unless `--qdrant-grpc-url` names the address.

use std::time::Duration;

use anyhow::Result;
use qdrant_client::{Qdrant, QdrantError};

use crate::settings::Secret;

pub const DEFAULT_GRPC_PORT: u16 = 6334;

#[derive(Clone)]
pub struct QdrantTarget {
    /// scheme://host:port of the gRPC endpoint, without credentials or path.
    pub grpc_url: String,
    /// Why this address: "from QDRANT_URL ..." or "--qdrant-grpc-url".
    pub derived_from: String,
    pub api_key: Option<Secret>,
    pub timeout: Duration,
}

impl std::fmt::Debug for QdrantTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.grpc_url)
    }
}

impl QdrantTarget {
    pub fn from_settings(
        url: Option<String>,
        grpc_url: Option<String>,
        api_key: Option<Secret>,
        timeout: Duration,
    ) -> Result<QdrantTarget, String> {
        let (grpc_url, derived_from) = match (grpc_url, url) {
            (Some(g), _) => (
                origin(&g, None).map_err(|e| format!("--qdrant-grpc-url: {e}"))?,
                "--qdrant-grpc-url".to_string(),
            ),
            (None, Some(u)) => {
                let grpc = origin(&u, Some(DEFAULT_GRPC_PORT))
                    .map_err(|e| format!("--qdrant-url (QDRANT_URL): {e}"))?;
                let rest = origin(&u, None).unwrap_or_default();
                (
                    grpc,
                    format!("gRPC port {DEFAULT_GRPC_PORT} of QDRANT_URL {rest}"),
                )
            }
            (None, None) => {
                return Err(
                    "--qdrant-url (QDRANT_URL) is required for --sink qdrant, e.g. http://localhost:6333"
                        .into(),
                );
            }
        };
        if api_key
            .as_ref()
            .is_some_and(|k| k.expose().trim().is_empty())
        {
            return Err("--qdrant-api-key (QDRANT_API_KEY) is set but empty".into());
        }
        Ok(QdrantTarget {
            grpc_url,
            derived_from,
            api_key,
            timeout,
        })
    }

    pub fn describe(&self) -> String {
        format!("{} (gRPC; {})", self.grpc_url, self.derived_from)
    }

    /// One client; it multiplexes requests over a small pool of HTTP/2
    /// connections, so writers share it.
    pub fn connect(&self) -> Result<Qdrant> {
        let mut b = Qdrant::from_url(&self.grpc_url)
            .timeout(self.timeout)
            .connect_timeout(Duration::from_secs(10))
            .keep_alive_while_idle()
            // The client's own check prints to stdout; `prepare` checks the
            // server's version and logs it instead.
            .skip_compatibility_check();
        if let Some(key) = &self.api_key {
            b = b.api_key(key.expose().to_string());
        }
        b.build()
            .map_err(|e| anyhow::anyhow!("Qdrant at {}: {}", self.grpc_url, message(&e)))
    }
}

/// The `api-key` header on every request of a writer's channel.
#[derive(Clone)]
pub struct ApiKey(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for ApiKey {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(key) = &self.0 {
            req.metadata_mut().insert("api-key", key.clone());
        }
        Ok(req)
    }
}

pub type PointsClient = qdrant_client::qdrant::points_client::PointsClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, ApiKey>,
>;

impl QdrantTarget {
    /// A gRPC points client on a connection of its own, set up as
    /// qdrant-client sets up its channels (timeouts, keep-alive, TLS with
    /// the system's roots for https). For the writers: `Qdrant::upsert_points`
    /// clones each request before sending it (to retry on a new channel),
    /// which was a fifth of the client's CPU in a bulk load; the sink stage
    /// retries on a new writer instead.
    pub async fn points_client(&self) -> Result<PointsClient> {
        use tonic::transport::{Channel, ClientTlsConfig};
        let what = || format!("Qdrant at {}", self.grpc_url);
        let mut endpoint = Channel::from_shared(self.grpc_url.clone())
            .map_err(|e| anyhow::anyhow!("{}: {e}", what()))?
            .timeout(self.timeout)
            .connect_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true);
        if self.grpc_url.starts_with("https://") {
            endpoint = endpoint
                .tls_config(ClientTlsConfig::new().with_native_roots())
                .map_err(|e| anyhow::anyhow!("{}: TLS set-up: {e}", what()))?;
        }
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to {}: {e}", what()))?;
        let key =
            match &self.api_key {
                Some(k) => Some(k.expose().parse().map_err(|_| {
                    anyhow::anyhow!("--qdrant-api-key is not a valid header value")
                })?),
                None => None,
            };
        Ok(
            qdrant_client::qdrant::points_client::PointsClient::with_interceptor(
                channel,
                ApiKey(key),
            )
            .max_decoding_message_size(usize::MAX),
        )
    }
}

/// `scheme://host:port` of `raw`, with the port replaced by `port` if given.
/// User info and path are dropped: the API key travels in a header only.
fn origin(raw: &str, port: Option<u16>) -> Result<String, String> {
    let u = url::Url::parse(raw.trim()).map_err(|e| format!("{raw:?} is not a URL: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!("{raw:?} must start with http:// or https://"));
    }
    let host = u.host_str().ok_or_else(|| format!("{raw:?} has no host"))?;
    let port = port
        .or(u.port())
        .unwrap_or(if u.scheme() == "https" { 443 } else { 80 });
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    Ok(format!("{}://{}:{}", u.scheme(), host, port))
}

/// A client error as one line a user can act on. The client's own Display
/// appends gRPC metadata; this keeps the code and the server's message.
pub fn message(e: &QdrantError) -> String {
    match e {
        QdrantError::ResponseError { status } => status_message(status),
        QdrantError::ResourceExhaustedError {
            status,
            retry_after_seconds,
        } => format!(
            "{} (retry after {retry_after_seconds} s)",
            status_message(status)
        ),
        other => other.to_string(),
    }
}

fn status_message(status: &tonic::Status) -> String {
    use tonic::Code;
    // The transport's cause (an HTTP/2 frame error, a refused connection)
    // hides behind a generic status message.
    let mut msg = status.message().to_string();
    let mut cause = std::error::Error::source(status);
    while let Some(c) = cause {
        msg = format!("{msg}: {c}");
        cause = c.source();
    }
    let hint = match status.code() {
        Code::Unauthenticated | Code::PermissionDenied => {
            " (check QDRANT_API_KEY / --qdrant-api-key)"
        }
        _ if msg.contains("FRAME_SIZE_ERROR") || msg.contains("h2 protocol error") => {
            " (this looks like Qdrant's REST port; gRPC is usually 6334: set --qdrant-grpc-url)"
        }
        _ if msg.contains("Certificate") || msg.contains("certificate") => {
            " (the server's TLS certificate is not trusted: the system's roots are used; \
             for a private CA set SSL_CERT_FILE to its PEM bundle)"
        }
        Code::Internal if msg.contains("connect") => {
            " (is the server up, and is this its gRPC port? Qdrant serves gRPC on 6334, REST on 6333)"
        }
        Code::Unavailable | Code::Cancelled | Code::Unknown => {
            " (is the server up, and is this its gRPC port? Qdrant serves gRPC on 6334, REST on 6333)"
        }
        _ => "",
    };
    if msg.is_empty() {
        format!("{:?}{hint}", status.code())
    } else {
        format!("{:?}: {msg}{hint}", status.code())
    }
}

/// Whether retrying the same request later can succeed.
pub fn is_transient(e: &QdrantError) -> bool {
    use tonic::Code;
    match e {
        QdrantError::ResourceExhaustedError { .. } => true,
        QdrantError::ResponseError { status } => matches!(
            status.code(),
            Code::Unavailable
                | Code::DeadlineExceeded
                | Code::Internal
                | Code::Cancelled
                | Code::Aborted
                | Code::Unknown
                | Code::ResourceExhausted
        ),
        _ => true,
    }
}

/// Seconds the server asked to wait, if it did.
pub fn retry_after(e: &QdrantError) -> Option<u64> {
    match e {
        QdrantError::ResourceExhaustedError {
            retry_after_seconds,
            ..
        } => Some(*retry_after_seconds),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: Option<&str>, grpc: Option<&str>) -> Result<QdrantTarget, String> {
        QdrantTarget::from_settings(
            url.map(String::from),
            grpc.map(String::from),
            None,
            Duration::from_secs(1),
        )
    }

    #[test]
    fn rest_url_means_grpc_on_6334_of_the_same_host() {
        let t = target(Some("http://qdrant.internal:6333"), None).unwrap();
        assert_eq!(t.grpc_url, "http://qdrant.internal:6334");
        assert!(t.describe().contains("6333"), "{}", t.describe());
        let t = target(Some("https://user:pw@lb.example.com/some/path"), None).unwrap();
        assert_eq!(t.grpc_url, "https://lb.example.com:6334");
        assert!(!t.describe().contains("pw"));
    }

    #[test]
    fn explicit_grpc_url_wins() {
        let t = target(Some("http://h:6333"), Some("https://lb.example.com")).unwrap();
        assert_eq!(t.grpc_url, "https://lb.example.com:443");
        let t = target(None, Some("http://[::1]:7334")).unwrap();
        assert_eq!(t.grpc_url, "http://[::1]:7334");
    }

    #[test]
    fn bad_settings_are_named() {
        assert!(target(None, None).unwrap_err().contains("QDRANT_URL"));
        assert!(
            target(Some("ftp://h"), None)
                .unwrap_err()
                .contains("QDRANT_URL")
        );
        assert!(
            target(None, Some("not a url"))
                .unwrap_err()
                .contains("--qdrant-grpc-url")
        );
    }

    #[test]
    fn rest_port_hint() {
        let st = tonic::Status::internal("h2 protocol error: FRAME_SIZE_ERROR");
        let m = message(&QdrantError::ResponseError { status: st });
        assert!(m.contains("REST port"), "{m}");
    }
}
