//! What talking to AWS takes, shared by the S3 source and the Bedrock
//! provider: the environment as the AWS tools read it (`Env`), the region,
//! service endpoints (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_<SERVICE>`),
//! the credential chain (`credentials`) and SigV4 signing (`sign`, over the
//! official `aws-sigv4` crate).
//!
//! Why not the AWS SDK: vecload makes three S3 calls and one Bedrock call;
//! aws-config with aws-sdk-s3 and aws-sdk-bedrockruntime is 74 more crates
//! and about 4.7 more minutes of a cold release build on CI's two cores
//! (BENCHMARKS.md). The signing, where mistakes are subtle, is the
//! SDK's own crate; the credential chain follows the SDKs' documented order.

pub mod credentials;
pub mod profile;
pub mod sign;

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use credentials::{CredentialChain, Credentials};

/// The process environment as read once at start (a snapshot, so that
/// tests and long runs see one consistent set).
#[derive(Debug, Clone, Default)]
pub struct Env(HashMap<String, String>);

impl Env {
    pub fn from_process() -> Env {
        Env(std::env::vars().collect())
    }

    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Env {
        Env(pairs
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect())
    }

    /// A non-empty variable.
    pub fn get(&self, k: &str) -> Option<String> {
        self.0.get(k).filter(|v| !v.trim().is_empty()).cloned()
    }

    /// A true/false variable (`true`, `1`, `yes`).
    pub fn flag(&self, k: &str) -> bool {
        self.get(k)
            .is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "1" | "yes"))
    }

    /// The region: `AWS_REGION`, `AWS_DEFAULT_REGION`, then the profile's.
    pub fn region(&self) -> Option<String> {
        self.get("AWS_REGION")
            .or_else(|| self.get("AWS_DEFAULT_REGION"))
            .or_else(|| {
                let profiles = profile::Profiles::load(&|k| self.get(k));
                let name = self.get("AWS_PROFILE").unwrap_or_else(|| "default".into());
                profiles
                    .get(&name)
                    .and_then(|p| p.get("region"))
                    .map(str::to_string)
            })
    }

    /// `AWS_ENDPOINT_URL_<SERVICE>` (e.g. `S3`, `BEDROCK_RUNTIME`), else
    /// `AWS_ENDPOINT_URL`: an S3-compatible store, a VPC endpoint, a test server.
    pub fn endpoint(&self, service: &str) -> Option<String> {
        self.get(&format!("AWS_ENDPOINT_URL_{service}"))
            .or_else(|| self.get("AWS_ENDPOINT_URL"))
            .map(|u| u.trim().trim_end_matches('/').to_string())
    }
}

/// The text of the first `<tag>...</tag>` of an AWS XML answer (STS,
/// S3 errors); entities decoded.
pub fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&close)?;
    let inner = xml[start..end].trim();
    if let Some(cdata) = inner
        .strip_prefix("<![CDATA[")
        .and_then(|c| c.strip_suffix("]]>"))
    {
        return Some(cdata.to_string());
    }
    Some(
        quick_xml::escape::unescape(inner)
            .map(|s| s.into_owned())
            .unwrap_or_else(|_| inner.to_string()),
    )
}

/// An RFC 3339 UTC time (`2026-12-01T16:00:00Z`, with or without
/// fractional seconds; `+00:00` too), as AWS writes expirations.
pub fn parse_time(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    let s = s
        .strip_suffix('Z')
        .or_else(|| s.strip_suffix("+00:00"))
        .unwrap_or(s);
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let time = time.split('.').next()?;
    let mut t = time.split(':').map(|p| p.parse::<i64>());
    let (h, min, sec) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + min * 60 + sec;
    (secs >= 0).then(|| UNIX_EPOCH + Duration::from_secs(secs as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_as_aws_writes_them() {
        let t = parse_time("2026-12-01T16:00:00Z").unwrap();
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            1_796_140_800
        );
        assert_eq!(parse_time("2026-12-01T16:00:00.123Z"), Some(t));
        assert_eq!(parse_time("2026-12-01T16:00:00+00:00"), Some(t));
        assert_eq!(
            parse_time("1970-01-01T00:00:01Z")
                .map(|t| t.duration_since(UNIX_EPOCH).unwrap().as_secs()),
            Some(1)
        );
        assert!(parse_time("not a time").is_none());
    }

    #[test]
    fn endpoints_and_regions_from_the_environment() {
        let env = Env::from_pairs([
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9000/"),
            ("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "http://127.0.0.1:9100"),
            ("AWS_DEFAULT_REGION", "eu-central-1"),
            ("HOME", "/nonexistent"),
        ]);
        assert_eq!(env.endpoint("S3").as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(
            env.endpoint("BEDROCK_RUNTIME").as_deref(),
            Some("http://127.0.0.1:9100")
        );
        assert_eq!(env.region().as_deref(), Some("eu-central-1"));
    }

    #[test]
    fn xml_answers() {
        let body = "<Error><Code>AccessDenied</Code><Message>Access &amp; denied</Message></Error>";
        assert_eq!(xml_text(body, "Code").as_deref(), Some("AccessDenied"));
        assert_eq!(
            xml_text(body, "Message").as_deref(),
            Some("Access & denied")
        );
        assert_eq!(xml_text(body, "Nope"), None);
        let moto = "<Error>\n    <Message><![CDATA[The specified bucket does not exist]]></Message></Error>";
        assert_eq!(
            xml_text(moto, "Message").as_deref(),
            Some("The specified bucket does not exist")
        );
    }
}
