//! SigV4 for a reqwest request, by the AWS SDK's own signer (`aws-sigv4`):
//! the canonical request (URI encoding per service, header order, payload
//! hash) is where hand-written signers go wrong, and a wrong one is a 403.

use std::time::SystemTime;

use anyhow::{Result, anyhow};
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode, sign as sigv4_sign,
};
use aws_sigv4::sign::v4;

use super::Credentials;

/// S3 signs differently from every other service: the path is encoded once
/// and never normalized, and the payload hash goes in a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    S3,
    Other,
}

/// Signs `req` for `name` (the signing name: `s3`, `bedrock`, `sts`) in
/// `region` with `creds`; adds `authorization`, `x-amz-date`, and the
/// session token and payload hash where they apply.
pub fn sign(
    req: &mut reqwest::Request,
    creds: &Credentials,
    region: &str,
    name: &str,
    service: Service,
) -> Result<()> {
    sign_at(req, creds, region, name, service, SystemTime::now())
}

pub fn sign_at(
    req: &mut reqwest::Request,
    creds: &Credentials,
    region: &str,
    name: &str,
    service: Service,
    time: SystemTime,
) -> Result<()> {
    let identity = aws_credential_types::Credentials::new(
        creds.access_key_id.clone(),
        creds.secret_access_key.expose().to_string(),
        creds.session_token.as_ref().map(|t| t.expose().to_string()),
        creds.expires,
        "vecload",
    )
    .into();
    let mut settings = SigningSettings::default();
    if service == Service::S3 {
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    }
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(name)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| anyhow!("signing parameters: {e}"))?
        .into();
    let body: &[u8] = req.body().and_then(|b| b.as_bytes()).unwrap_or_default();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let signable = SignableRequest::new(
        req.method().as_str(),
        req.url().as_str(),
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(body),
    )
    .map_err(|e| anyhow!("signing {}: {e}", req.url()))?;
    let (instructions, _) = sigv4_sign(signable, &params)
        .map_err(|e| anyhow!("signing {}: {e}", req.url()))?
        .into_parts();
    let (new_headers, _) = instructions.into_parts();
    for h in new_headers {
        let value = reqwest::header::HeaderValue::from_str(h.value())
            .map_err(|e| anyhow!("signing: header {}: {e}", h.name()))?;
        let name = reqwest::header::HeaderName::from_bytes(h.name().as_bytes())
            .map_err(|e| anyhow!("signing: header name {}: {e}", h.name()))?;
        req.headers_mut().insert(name, value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Secret;
    use std::time::{Duration, UNIX_EPOCH};

    /// The example of AWS's Signature Version 4 documentation ("Create a
    /// signed AWS API request"): IAM ListUsers, 20150830T123600Z.
    #[test]
    fn the_documented_example_signature() {
        let creds = Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into()),
            session_token: None,
            expires: None,
        };
        let client = reqwest::Client::new();
        let mut req = client
            .get("https://iam.amazonaws.com/?Action=ListUsers&Version=2010-05-08")
            .header(
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8",
            )
            .build()
            .unwrap();
        let at = UNIX_EPOCH + Duration::from_secs(1_440_938_160); // 2015-08-30T12:36:00Z
        sign_at(&mut req, &creds, "us-east-1", "iam", Service::Other, at).unwrap();
        let auth = req.headers()["authorization"].to_str().unwrap();
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, \
             Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
        );
        assert_eq!(req.headers()["x-amz-date"], "20150830T123600Z");
    }

    fn s3_example(url: &str, headers: &[(&str, &str)]) -> String {
        let creds = Credentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into()),
            session_token: None,
            expires: None,
        };
        let mut b = reqwest::Client::new().get(url);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let mut req = b.build().unwrap();
        let at = UNIX_EPOCH + Duration::from_secs(1_369_353_600); // 2013-05-24T00:00:00Z
        sign_at(&mut req, &creds, "us-east-1", "s3", Service::S3, at).unwrap();
        req.headers()["authorization"].to_str().unwrap().to_string()
    }

    /// The examples of S3's "Signature Calculations for the Authorization
    /// Header: Transferring Payload in a Single Chunk": a GET with a Range
    /// header, and a listing with a query.
    #[test]
    fn the_documented_s3_example_signatures() {
        let get = s3_example(
            "https://examplebucket.s3.amazonaws.com/test.txt",
            &[("range", "bytes=0-9")],
        );
        assert!(
            get.ends_with(
                "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
            ),
            "{get}"
        );
        let list = s3_example(
            "https://examplebucket.s3.amazonaws.com/?max-keys=2&prefix=J",
            &[],
        );
        assert!(
            list.ends_with(
                "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
            ),
            "{list}"
        );
    }
}
