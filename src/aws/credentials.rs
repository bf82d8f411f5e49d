//! AWS credentials found the way every AWS tool finds them, in the AWS
//! SDKs' order:
//!
//! 1. `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`);
//! 2. the profile (`AWS_PROFILE`, else `default`) of the shared files:
//!    static keys, `credential_process`, `role_arn` with `source_profile` or
//!    `credential_source` (STS AssumeRole), or `web_identity_token_file`;
//! 3. web identity (`AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`): IRSA on
//!    EKS, through STS AssumeRoleWithWebIdentity;
//! 4. the container endpoint (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`: an
//!    ECS task role; `..._FULL_URI` with `AWS_CONTAINER_AUTHORIZATION_TOKEN`
//!    or `..._TOKEN_FILE`: EKS Pod Identity);
//! 5. EC2 instance metadata (IMDSv2), unless `AWS_EC2_METADATA_DISABLED`.
//!
//! Temporary credentials are cached and fetched again five minutes before
//! they expire, so a run of many hours outlives the task role's rotation.
//! SSO profiles are not read: `aws configure export-credentials` turns one
//! into the variables of (1).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, anyhow, bail};

use super::profile::{Profile, Profiles};
use super::{Env, sign, xml_text};
use crate::settings::Secret;

#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
    pub expires: Option<SystemTime>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key id is not a secret (it is in every request) but is kept out
        // of logs anyway; the secret and token never print.
        write!(f, "Credentials(<redacted>, expires {:?})", self.expires)
    }
}

/// Refresh this long before temporary credentials expire.
const REFRESH_EARLY: Duration = Duration::from_secs(300);

/// The chain, resolved once and cached.
pub struct CredentialChain {
    env: Env,
    http: reqwest::Client,
    region: Option<String>,
    cached: tokio::sync::Mutex<Option<(Credentials, &'static str)>>,
}

impl CredentialChain {
    pub fn new(env: Env, http: reqwest::Client, region: Option<String>) -> Arc<CredentialChain> {
        Arc::new(CredentialChain {
            env,
            http,
            region,
            cached: tokio::sync::Mutex::new(None),
        })
    }

    /// Valid credentials, and where they came from (for logs).
    pub async fn get(&self) -> Result<(Credentials, &'static str)> {
        let mut cached = self.cached.lock().await;
        if let Some((c, from)) = cached.as_ref()
            && c.expires
                .is_none_or(|t| t > SystemTime::now() + REFRESH_EARLY)
        {
            return Ok((c.clone(), from));
        }
        let found = self.resolve().await?;
        *cached = Some(found.clone());
        Ok(found)
    }

    async fn resolve(&self) -> Result<(Credentials, &'static str)> {
        let env = &self.env;
        if let Some(c) = from_env(env) {
            return Ok((c, "environment (AWS_ACCESS_KEY_ID)"));
        }
        let named = env
            .get("AWS_PROFILE")
            .or_else(|| env.get("AWS_DEFAULT_PROFILE"));
        let profiles = Profiles::load(&|k| env.get(k));
        let profile_name = named.clone().unwrap_or_else(|| "default".into());
        match profiles.get(&profile_name) {
            Some(p) if has_credentials(p) => {
                let c = self.profile_credentials(&profiles, p, 0).await?;
                return Ok((c, "the profile in ~/.aws (AWS_PROFILE)"));
            }
            Some(p) if is_sso(p) => bail!(
                "AWS profile {profile_name:?} uses SSO, which vecload does not read: run \
                 `eval \"$(aws configure export-credentials --profile {profile_name} --format env)\"` first"
            ),
            None if named.is_some() => bail!(
                "AWS_PROFILE {profile_name:?} is in neither ~/.aws/config nor ~/.aws/credentials \
                 (AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE)"
            ),
            _ => {}
        }
        if let (Some(token_file), Some(role)) = (
            env.get("AWS_WEB_IDENTITY_TOKEN_FILE"),
            env.get("AWS_ROLE_ARN"),
        ) {
            let session = env
                .get("AWS_ROLE_SESSION_NAME")
                .unwrap_or_else(|| "vecload".into());
            let c = self.web_identity(&token_file, &role, &session).await?;
            return Ok((c, "web identity (AWS_WEB_IDENTITY_TOKEN_FILE, IRSA)"));
        }
        if let Some(c) = self.container().await? {
            return Ok((c, "the container credentials endpoint (ECS task role)"));
        }
        if !env
            .get("AWS_EC2_METADATA_DISABLED")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
            && let Some(c) = self.instance_metadata().await?
        {
            return Ok((c, "EC2 instance metadata (instance profile)"));
        }
        bail!(
            "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, \
             or run where a task role, IRSA or an instance profile provides them"
        )
    }

    /// A profile's credentials; `depth` guards against source_profile loops.
    async fn profile_credentials(
        &self,
        all: &Profiles,
        p: &Profile,
        depth: usize,
    ) -> Result<Credentials> {
        if depth > 4 {
            bail!(
                "AWS profile {:?}: source_profile chain too long (a loop?)",
                p.name
            );
        }
        if let Some(role) = p.get("role_arn") {
            let session = p.get("role_session_name").unwrap_or("vecload").to_string();
            if let Some(token_file) = p.get("web_identity_token_file") {
                return self.web_identity(token_file, role, &session).await;
            }
            let source = match (p.get("source_profile"), p.get("credential_source")) {
                (Some(name), _) => {
                    let sp = all.get(name).ok_or_else(|| {
                        anyhow!(
                            "AWS profile {:?}: source_profile {name:?} does not exist",
                            p.name
                        )
                    })?;
                    if sp.name == p.name {
                        static_keys(sp).ok_or_else(|| {
                            anyhow!(
                                "AWS profile {:?} is its own source_profile but has no keys",
                                p.name
                            )
                        })?
                    } else {
                        Box::pin(self.profile_credentials(all, sp, depth + 1)).await?
                    }
                }
                (None, Some("Environment")) => from_env(&self.env).ok_or_else(|| {
                    anyhow!("credential_source Environment: no AWS_ACCESS_KEY_ID")
                })?,
                (None, Some("EcsContainer")) => self.container().await?.ok_or_else(|| {
                    anyhow!("credential_source EcsContainer: no container endpoint")
                })?,
                (None, Some("Ec2InstanceMetadata")) => {
                    self.instance_metadata().await?.ok_or_else(|| {
                        anyhow!("credential_source Ec2InstanceMetadata: no instance metadata")
                    })?
                }
                (None, other) => bail!(
                    "AWS profile {:?} has role_arn but no source_profile or known credential_source ({other:?})",
                    p.name
                ),
            };
            return self
                .assume_role(&source, role, &session, p.get("external_id"))
                .await;
        }
        if let Some(c) = static_keys(p) {
            return Ok(c);
        }
        if let Some(cmd) = p.get("credential_process") {
            return credential_process(cmd).await;
        }
        bail!(
            "AWS profile {:?} has no credentials vecload can use",
            p.name
        )
    }

    fn sts_url(&self) -> String {
        if let Some(u) = self
            .env
            .get("AWS_ENDPOINT_URL_STS")
            .or_else(|| self.env.get("AWS_ENDPOINT_URL"))
        {
            return u.trim_end_matches('/').to_string();
        }
        match &self.region {
            Some(r) => format!("https://sts.{r}.amazonaws.com"),
            None => "https://sts.amazonaws.com".into(),
        }
    }

    async fn web_identity(
        &self,
        token_file: &str,
        role: &str,
        session: &str,
    ) -> Result<Credentials> {
        let token = std::fs::read_to_string(token_file)
            .with_context(|| format!("reading the web identity token {token_file}"))?;
        let form = [
            ("Action", "AssumeRoleWithWebIdentity"),
            ("Version", "2011-06-15"),
            ("RoleArn", role),
            ("RoleSessionName", session),
            ("WebIdentityToken", token.trim()),
        ];
        let body = form_body(&form);
        let resp = self
            .http
            .post(self.sts_url())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .context("calling STS AssumeRoleWithWebIdentity")?;
        sts_credentials(resp, "AssumeRoleWithWebIdentity", role).await
    }

    async fn assume_role(
        &self,
        source: &Credentials,
        role: &str,
        session: &str,
        external_id: Option<&str>,
    ) -> Result<Credentials> {
        let mut form = vec![
            ("Action", "AssumeRole"),
            ("Version", "2011-06-15"),
            ("RoleArn", role),
            ("RoleSessionName", session),
        ];
        if let Some(id) = external_id {
            form.push(("ExternalId", id));
        }
        let body = form_body(&form);
        let mut req = self
            .http
            .post(self.sts_url())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .timeout(Duration::from_secs(30))
            .build()?;
        let region = self.region.as_deref().unwrap_or("us-east-1");
        sign::sign(&mut req, source, region, "sts", sign::Service::Other)?;
        let resp = self
            .http
            .execute(req)
            .await
            .context("calling STS AssumeRole")?;
        sts_credentials(resp, "AssumeRole", role).await
    }

    /// The ECS / EKS Pod Identity endpoint; None when not in such a container.
    async fn container(&self) -> Result<Option<Credentials>> {
        let env = &self.env;
        let url = match (
            env.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"),
            env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI"),
        ) {
            (Some(rel), _) => format!("http://169.254.170.2{rel}"),
            (None, Some(full)) => full,
            (None, None) => return Ok(None),
        };
        let mut req = self.http.get(&url).timeout(Duration::from_secs(10));
        let token = match env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") {
            Some(f) => Some(
                std::fs::read_to_string(&f)
                    .with_context(|| format!("reading AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE {f}"))?
                    .trim()
                    .to_string(),
            ),
            None => env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN"),
        };
        if let Some(t) = token {
            req = req.header("authorization", t);
        }
        let resp = req
            .send()
            .await
            .context("calling the container credentials endpoint")?;
        if !resp.status().is_success() {
            bail!(
                "the container credentials endpoint answered {} (is the task role set?)",
                resp.status()
            );
        }
        let v: serde_json::Value = resp.json().await.context("container credentials")?;
        Ok(Some(json_credentials(
            &v,
            "the container credentials endpoint",
        )?))
    }

    /// IMDSv2; None when there is no instance metadata service (fast, so a
    /// laptop without credentials is told so at once).
    async fn instance_metadata(&self) -> Result<Option<Credentials>> {
        let base = self
            .env
            .get("AWS_EC2_METADATA_SERVICE_ENDPOINT")
            .unwrap_or_else(|| "http://169.254.169.254".into());
        let base = base.trim_end_matches('/');
        let quick = Duration::from_secs(1);
        let token = match self
            .http
            .put(format!("{base}/latest/api/token"))
            .header("x-aws-ec2-metadata-token-ttl-seconds", "21600")
            .timeout(quick)
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => r.text().await.unwrap_or_default(),
            _ => return Ok(None),
        };
        let get = |path: String| {
            self.http
                .get(format!("{base}{path}"))
                .header("x-aws-ec2-metadata-token", token.trim())
                .timeout(Duration::from_secs(5))
                .send()
        };
        let role = get("/latest/meta-data/iam/security-credentials/".into())
            .await
            .context("instance metadata")?;
        if !role.status().is_success() {
            return Ok(None);
        }
        let role = role.text().await.unwrap_or_default();
        let role = role.lines().next().unwrap_or("").trim().to_string();
        if role.is_empty() {
            return Ok(None);
        }
        let resp = get(format!("/latest/meta-data/iam/security-credentials/{role}"))
            .await
            .context("instance metadata")?;
        let v: serde_json::Value = resp.json().await.context("instance profile credentials")?;
        Ok(Some(json_credentials(&v, "instance metadata")?))
    }
}

fn from_env(env: &Env) -> Option<Credentials> {
    Some(Credentials {
        access_key_id: env.get("AWS_ACCESS_KEY_ID")?,
        secret_access_key: Secret::new(env.get("AWS_SECRET_ACCESS_KEY")?),
        session_token: env.get("AWS_SESSION_TOKEN").map(Secret::new),
        expires: None,
    })
}

fn static_keys(p: &Profile) -> Option<Credentials> {
    Some(Credentials {
        access_key_id: p.get("aws_access_key_id")?.to_string(),
        secret_access_key: Secret::new(p.get("aws_secret_access_key")?.to_string()),
        session_token: p
            .get("aws_session_token")
            .map(|t| Secret::new(t.to_string())),
        expires: None,
    })
}

fn has_credentials(p: &Profile) -> bool {
    p.get("aws_access_key_id").is_some()
        || p.get("role_arn").is_some()
        || p.get("credential_process").is_some()
}

fn is_sso(p: &Profile) -> bool {
    p.get("sso_session").is_some() || p.get("sso_start_url").is_some()
}

/// `credential_process`: a command printing `{"Version": 1, "AccessKeyId",
/// "SecretAccessKey", "SessionToken", "Expiration"}`.
async fn credential_process(cmd: &str) -> Result<Credentials> {
    let out = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .context("running the profile's credential_process")?;
    if !out.status.success() {
        bail!(
            "the profile's credential_process failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("the output of credential_process")?;
    json_credentials(&v, "credential_process")
}

/// `{"AccessKeyId", "SecretAccessKey", "Token" or "SessionToken", "Expiration"}`.
fn json_credentials(v: &serde_json::Value, from: &str) -> Result<Credentials> {
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).filter(|x| !x.is_empty());
    Ok(Credentials {
        access_key_id: s("AccessKeyId")
            .ok_or_else(|| anyhow!("{from} gave no AccessKeyId"))?
            .to_string(),
        secret_access_key: Secret::new(
            s("SecretAccessKey")
                .ok_or_else(|| anyhow!("{from} gave no SecretAccessKey"))?
                .to_string(),
        ),
        session_token: s("Token")
            .or_else(|| s("SessionToken"))
            .map(|t| Secret::new(t.to_string())),
        expires: s("Expiration").and_then(super::parse_time),
    })
}

async fn sts_credentials(resp: reqwest::Response, action: &str, role: &str) -> Result<Credentials> {
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        let msg = xml_text(&body, "Message").unwrap_or_else(|| body.chars().take(200).collect());
        bail!("STS {action} for {role} failed ({status}): {msg}");
    }
    let text = |tag: &str| {
        xml_text(&body, tag).ok_or_else(|| anyhow!("STS {action}: no {tag} in the answer"))
    };
    Ok(Credentials {
        access_key_id: text("AccessKeyId")?,
        secret_access_key: Secret::new(text("SecretAccessKey")?),
        session_token: Some(Secret::new(text("SessionToken")?)),
        expires: xml_text(&body, "Expiration")
            .as_deref()
            .and_then(super::parse_time),
    })
}

fn form_body(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}
