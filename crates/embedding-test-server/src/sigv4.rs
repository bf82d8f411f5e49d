//! AWS Signature Version 4, checked the way AWS checks it, written from the
//! specification ("Create a signed AWS API request") independently of the
//! signer vecload uses, so a test passes only when the two agree: the
//! canonical request (method, URI with each segment encoded again, sorted
//! query, the signed headers, the payload's SHA-256), the string to sign,
//! the signing key derived from the secret, date, region and service.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

/// What a request is checked against.
pub struct Expected<'a> {
    pub key_id: &'a str,
    pub secret: &'a str,
    pub region: &'a str,
    pub service: &'a str,
}

/// Why a request is refused, as AWS names it.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No or a malformed Authorization header, or a key id nobody issued.
    UnrecognizedClient(String),
    /// The signature (or its scope or date) does not match.
    InvalidSignature(String),
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub(crate) fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(msg);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// URI-encoding per SigV4: unreserved characters kept, all else %XX.
pub(crate) fn encode(s: &[u8]) -> String {
    let mut out = String::new();
    for &b in s {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let hexval = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hexval(b[i + 1]), hexval(b[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// RFC 3339-ish `YYYYMMDDTHHMMSSZ` to a time.
fn amz_time(s: &str) -> Option<SystemTime> {
    if s.len() != 16 || !s.ends_with('Z') {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(4..6)?, n(6..8)?);
    let (h, min, sec) = (n(9..11)?, n(11..13)?, n(13..15)?);
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let secs = days * 86_400 + h * 3600 + min * 60 + sec;
    (secs >= 0).then(|| UNIX_EPOCH + Duration::from_secs(secs as u64))
}

/// Checks one request. `path` and `query` as they arrived (encoded once);
/// `headers` lower-case names with their values.
pub fn verify(
    method: &str,
    path: &str,
    query: &str,
    headers: &[(String, String)],
    body: &[u8],
    want: &Expected<'_>,
    now: SystemTime,
) -> Result<(), Refusal> {
    let header = |name: &str| -> Vec<&str> {
        headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let auth = header("authorization")
        .first()
        .map(|s| s.to_string())
        .ok_or_else(|| Refusal::UnrecognizedClient("Missing Authentication Token".into()))?;
    let rest = auth
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or_else(|| Refusal::UnrecognizedClient("not an AWS4-HMAC-SHA256 signature".into()))?;
    let mut credential = "";
    let mut signed = "";
    let mut signature = "";
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = v;
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = v;
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = v;
        }
    }
    let scope: Vec<&str> = credential.split('/').collect();
    if scope.len() != 5 {
        return Err(Refusal::UnrecognizedClient("malformed Credential".into()));
    }
    if scope[0] != want.key_id {
        return Err(Refusal::UnrecognizedClient(
            "The security token included in the request is invalid.".into(),
        ));
    }
    if scope[2] != want.region || scope[3] != want.service || scope[4] != "aws4_request" {
        return Err(Refusal::InvalidSignature(format!(
            "Credential should be scoped to a valid region and service: {}/{}, not {}/{}",
            want.region, want.service, scope[2], scope[3]
        )));
    }
    let date = header("x-amz-date")
        .first()
        .map(|s| s.to_string())
        .unwrap_or_default();
    let t =
        amz_time(&date).ok_or_else(|| Refusal::InvalidSignature("no valid X-Amz-Date".into()))?;
    let skew = now
        .duration_since(t)
        .or_else(|e| Ok::<_, ()>(e.duration()))
        .unwrap_or_default();
    if skew > Duration::from_secs(15 * 60) {
        return Err(Refusal::InvalidSignature("Signature expired".into()));
    }
    if !date.starts_with(scope[1]) {
        return Err(Refusal::InvalidSignature(
            "the Credential date is not X-Amz-Date's".into(),
        ));
    }
    let signed_names: Vec<&str> = signed.split(';').collect();
    if !signed_names.contains(&"host") {
        return Err(Refusal::InvalidSignature("host must be signed".into()));
    }
    if !header("x-amz-security-token").is_empty() && !signed_names.contains(&"x-amz-security-token")
    {
        return Err(Refusal::InvalidSignature(
            "x-amz-security-token must be signed".into(),
        ));
    }
    // Each segment encoded again: what arrived is encoded once.
    let uri = if path.is_empty() {
        "/".to_string()
    } else {
        path.split('/')
            .map(|seg| encode(seg.as_bytes()))
            .collect::<Vec<_>>()
            .join("/")
    };
    let mut params: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (encode(&decode(k)), encode(&decode(v)))
        })
        .collect();
    params.sort();
    let canonical_query = params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let mut canonical_headers = String::new();
    for name in &signed_names {
        let values: Vec<String> = header(name)
            .iter()
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    let payload = hex(&Sha256::digest(body));
    let creq =
        format!("{method}\n{uri}\n{canonical_query}\n{canonical_headers}\n{signed}\n{payload}");
    let scope_text = format!("{}/{}/{}/aws4_request", scope[1], scope[2], scope[3]);
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{date}\n{scope_text}\n{}",
        hex(&Sha256::digest(creq.as_bytes()))
    );
    let k_date = hmac(
        format!("AWS4{}", want.secret).as_bytes(),
        scope[1].as_bytes(),
    );
    let k_region = hmac(&k_date, want.region.as_bytes());
    let k_service = hmac(&k_region, want.service.as_bytes());
    let k_signing = hmac(&k_service, b"aws4_request");
    let expected = hex(&hmac(&k_signing, to_sign.as_bytes()));
    if expected != signature {
        return Err(Refusal::InvalidSignature(
            "The request signature we calculated does not match the signature you provided. \
             Check your AWS Secret Access Key and signing method."
                .into(),
        ));
    }
    Ok(())
}

/// `YYYYMMDDTHHMMSSZ` of a time (the inverse of `amz_time`).
pub(crate) fn amz_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// The headers that sign an S3 request (path style, no query) with these
/// keys: what the test server needs to read and write a real
/// S3-compatible server as a Bedrock job would.
pub(crate) fn s3_headers(
    method: &str,
    host: &str,
    path: &str,
    body: &[u8],
    key_id: &str,
    secret: &str,
    region: &str,
) -> Vec<(String, String)> {
    let date = amz_date(SystemTime::now());
    let day = &date[..8];
    let payload = hex(&Sha256::digest(body));
    let uri = path
        .split('/')
        .map(|seg| encode(seg.as_bytes()))
        .collect::<Vec<_>>()
        .join("/");
    let canonical = format!(
        "{method}\n{uri}\n\nhost:{host}\nx-amz-content-sha256:{payload}\nx-amz-date:{date}\n\nhost;x-amz-content-sha256;x-amz-date\n{payload}"
    );
    let scope = format!("{day}/{region}/s3/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let k = hmac(format!("AWS4{secret}").as_bytes(), day.as_bytes());
    let k = hmac(&k, region.as_bytes());
    let k = hmac(&k, b"s3");
    let k = hmac(&k, b"aws4_request");
    let signature = hex(&hmac(&k, to_sign.as_bytes()));
    vec![
        ("x-amz-date".into(), date.clone()),
        ("x-amz-content-sha256".into(), payload),
        (
            "authorization".into(),
            format!(
                "AWS4-HMAC-SHA256 Credential={key_id}/{scope}, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={signature}"
            ),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's documented example (IAM ListUsers, 20150830T123600Z).
    #[test]
    fn the_documented_example_verifies_and_a_changed_one_does_not() {
        let headers = |sig: &str| {
            vec![
                ("host".to_string(), "iam.amazonaws.com".to_string()),
                (
                    "content-type".to_string(),
                    "application/x-www-form-urlencoded; charset=utf-8".to_string(),
                ),
                ("x-amz-date".to_string(), "20150830T123600Z".to_string()),
                (
                    "authorization".to_string(),
                    format!(
                        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, \
                         SignedHeaders=content-type;host;x-amz-date, Signature={sig}"
                    ),
                ),
            ]
        };
        let want = Expected {
            key_id: "AKIDEXAMPLE",
            secret: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            region: "us-east-1",
            service: "iam",
        };
        let at = amz_time("20150830T123600Z").unwrap();
        let good = "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7";
        assert_eq!(
            verify(
                "GET",
                "/",
                "Action=ListUsers&Version=2010-05-08",
                &headers(good),
                b"",
                &want,
                at
            ),
            Ok(())
        );
        assert!(matches!(
            verify(
                "GET",
                "/",
                "Action=ListUsers&Version=2010-05-09",
                &headers(good),
                b"",
                &want,
                at
            ),
            Err(Refusal::InvalidSignature(_))
        ));
        let other = Expected {
            key_id: "AKIDOTHER",
            ..want
        };
        assert!(matches!(
            verify(
                "GET",
                "/",
                "Action=ListUsers&Version=2010-05-08",
                &headers(good),
                b"",
                &other,
                at
            ),
            Err(Refusal::UnrecognizedClient(_))
        ));
    }

    #[test]
    fn amz_dates_read_back_as_the_same_time() {
        let t = amz_time("20261202T031330Z").expect("time");
        assert_eq!(amz_date(t), "20261202T031330Z");
        assert_eq!(amz_date(UNIX_EPOCH), "19700101T000000Z");
    }
}
