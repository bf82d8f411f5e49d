//! Where the PostgreSQL server is and how to reach it, including TLS for RDS.
//!
//! tokio-postgres only knows sslmode disable/prefer/require and verifies
//! nothing itself, so the libpq modes are mapped here: `require` encrypts
//! without checking the certificate (as libpq does), `verify-ca` checks the
//! chain, `verify-full` the chain and the host name. RDS certificates chain to
//! Amazon's own CA, so verification needs `--pg-sslrootcert` pointing at the
//! RDS bundle; without it the public web roots are used.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, NoTls};

use crate::settings::Secret;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl TlsMode {
    fn parse(s: &str) -> Result<TlsMode, String> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "disable" => TlsMode::Disable,
            // libpq's `allow` tries plain first; `prefer` is the closest we can do.
            "allow" | "prefer" => TlsMode::Prefer,
            "require" => TlsMode::Require,
            "verify-ca" => TlsMode::VerifyCa,
            "verify-full" => TlsMode::VerifyFull,
            other => {
                return Err(format!(
                    "sslmode {other:?} is not known; use disable, prefer, require, verify-ca or verify-full"
                ));
            }
        })
    }

    fn name(self) -> &'static str {
        match self {
            TlsMode::Disable => "disable",
            TlsMode::Prefer => "prefer",
            TlsMode::Require => "require",
            TlsMode::VerifyCa => "verify-ca",
            TlsMode::VerifyFull => "verify-full",
        }
    }
}

/// A PostgreSQL server to connect to. Holds the password only inside
/// `tokio_postgres::Config`, and describes itself without it.
#[derive(Clone)]
pub struct PgTarget {
    config: tokio_postgres::Config,
    tls: TlsMode,
    root_cert: Option<PathBuf>,
    description: String,
}

impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.description)
    }
}

impl PgTarget {
    /// From DATABASE_URL (or --pg-url), else the RAG API's POSTGRES_* parts.
    /// Explicit parts override what the URL says.
    #[allow(clippy::too_many_arguments)]
    pub fn from_settings(
        url: Option<String>,
        host: Option<String>,
        port: Option<u16>,
        database: Option<String>,
        user: Option<String>,
        password: Option<Secret>,
        sslmode: Option<String>,
        root_cert: Option<PathBuf>,
    ) -> Result<PgTarget, String> {
        let mut tls = TlsMode::Prefer;
        let mut root_cert = root_cert;
        let mut config = match url {
            Some(raw) => {
                let (rest, mode, cert) = split_tls_params(&raw)?;
                if let Some(m) = mode {
                    tls =
                        TlsMode::parse(&m).map_err(|e| format!("--pg-url (DATABASE_URL): {e}"))?;
                }
                if root_cert.is_none() {
                    root_cert = cert.map(PathBuf::from);
                }
                // The parser's own message can quote the URL, password included.
                rest.parse::<tokio_postgres::Config>().map_err(|_| {
                    "--pg-url (DATABASE_URL) is not a valid postgres:// URL or key=value string"
                        .to_string()
                })?
            }
            None => {
                if host.is_none() {
                    return Err("no PostgreSQL server given: set --pg-url (DATABASE_URL) or POSTGRES_HOST, POSTGRES_PORT, POSTGRES_DATABASE, POSTGRES_USER, POSTGRES_PASSWORD".into());
                }
                tokio_postgres::Config::new()
            }
        };
        if let Some(h) = host {
            config.host(&h);
        }
        if let Some(p) = port {
            config.port(p);
        }
        if let Some(d) = database {
            config.dbname(&d);
        }
        if let Some(u) = user {
            config.user(&u);
        }
        if let Some(p) = password {
            config.password(p.expose());
        }
        if let Some(m) = sslmode {
            tls =
                TlsMode::parse(&m).map_err(|e| format!("--pg-sslmode (POSTGRES_SSLMODE): {e}"))?;
        }
        if config.get_hosts().is_empty() {
            config.host("localhost");
        }
        if config.get_user().is_none() {
            return Err(
                "no PostgreSQL user given: put it in --pg-url (DATABASE_URL) or set POSTGRES_USER"
                    .into(),
            );
        }
        if let Some(c) = &root_cert
            && !c.is_file()
        {
            return Err(format!(
                "--pg-sslrootcert {} is not a readable file",
                c.display()
            ));
        }
        config.ssl_mode(match tls {
            TlsMode::Disable => SslMode::Disable,
            TlsMode::Prefer => SslMode::Prefer,
            _ => SslMode::Require,
        });
        config.application_name("vecload");
        let description = describe(&config, tls);
        Ok(PgTarget {
            config,
            tls,
            root_cert,
            description,
        })
    }

    /// `user@host:port/db (sslmode)`, for logs and errors; never the password.
    pub fn describe(&self) -> &str {
        &self.description
    }

    pub async fn connect(&self) -> Result<Client> {
        let what = || format!("cannot connect to PostgreSQL at {}", self.description);
        let client = if self.tls == TlsMode::Disable {
            let (client, conn) = self.config.connect(NoTls).await.with_context(what)?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!("postgres connection closed: {e}");
                }
            });
            client
        } else {
            let tls = tokio_postgres_rustls::MakeRustlsConnect::new(self.rustls_config()?);
            let (client, conn) = self.config.connect(tls).await.with_context(what)?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!("postgres connection closed: {e}");
                }
            });
            client
        };
        Ok(client)
    }

    fn rustls_config(&self) -> Result<rustls::ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .context("TLS set-up")?;
        let config = match self.tls {
            TlsMode::Disable | TlsMode::Prefer | TlsMode::Require => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
                .with_no_client_auth(),
            TlsMode::VerifyCa | TlsMode::VerifyFull => {
                let roots = self.root_store()?;
                let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider.clone(),
                )
                .build()
                .context("TLS certificate verifier")?;
                if self.tls == TlsMode::VerifyCa {
                    builder
                        .dangerous()
                        .with_custom_certificate_verifier(Arc::new(ChainOnly(verifier)))
                        .with_no_client_auth()
                } else {
                    builder.with_webpki_verifier(verifier).with_no_client_auth()
                }
            }
        };
        Ok(config)
    }

    fn root_store(&self) -> Result<rustls::RootCertStore> {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        match &self.root_cert {
            Some(path) => {
                for cert in CertificateDer::pem_file_iter(path)
                    .with_context(|| format!("reading --pg-sslrootcert {}", path.display()))?
                {
                    let cert = cert
                        .with_context(|| format!("parsing --pg-sslrootcert {}", path.display()))?;
                    roots
                        .add(cert)
                        .with_context(|| format!("bad certificate in {}", path.display()))?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        Ok(roots)
    }
}

fn describe(c: &tokio_postgres::Config, tls: TlsMode) -> String {
    use tokio_postgres::config::Host;
    let host = match c.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = c.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{}@{}:{}/{} (sslmode {})",
        c.get_user().unwrap_or("?"),
        host,
        port,
        c.get_dbname().unwrap_or(c.get_user().unwrap_or("?")),
        tls.name()
    )
}

/// Removes `sslmode` and `sslrootcert` from a URL's query, which tokio-postgres
/// would otherwise reject (verify-full) or ignore (sslrootcert).
fn split_tls_params(raw: &str) -> Result<(String, Option<String>, Option<String>), String> {
    if !raw.starts_with("postgres://") && !raw.starts_with("postgresql://") {
        // key=value form: leave as is, tokio-postgres reads sslmode itself.
        return Ok((raw.to_string(), None, None));
    }
    let mut url = url::Url::parse(raw)
        .map_err(|_| "--pg-url (DATABASE_URL) is not a valid postgres:// URL".to_string())?;
    let mut mode = None;
    let mut cert = None;
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter_map(|(k, v)| match k.as_ref() {
            "sslmode" => {
                mode = Some(v.into_owned());
                None
            }
            "sslrootcert" => {
                cert = Some(v.into_owned());
                None
            }
            _ => Some((k.into_owned(), v.into_owned())),
        })
        .collect();
    if kept.is_empty() {
        url.set_query(None);
    } else {
        url.query_pairs_mut().clear().extend_pairs(kept);
    }
    Ok((url.to_string(), mode, cert))
}

/// `sslmode=require`: encrypted, certificate not checked (libpq's meaning).
#[derive(Debug)]
struct AcceptAnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `sslmode=verify-ca`: the chain must lead to a trusted root; the name is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(m, c, d)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> Result<PgTarget, String> {
        PgTarget::from_settings(Some(url.into()), None, None, None, None, None, None, None)
    }

    #[test]
    fn url_sslmode_verify_full_is_understood_and_password_hidden() {
        let t =
            target("postgres://app:hunter2@db.example.com:5433/rag?sslmode=verify-full").unwrap();
        assert_eq!(t.tls, TlsMode::VerifyFull);
        assert_eq!(
            t.describe(),
            "app@db.example.com:5433/rag (sslmode verify-full)"
        );
        assert!(!format!("{t:?}").contains("hunter2"));
    }

    #[test]
    fn bad_url_error_does_not_echo_the_password() {
        let err = target("postgres://app:hunter2@db:notaport/rag").unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn rag_api_env_parts_build_a_target() {
        let t = PgTarget::from_settings(
            None,
            Some("rds.local".into()),
            Some(5432),
            Some("rag".into()),
            Some("rag_user".into()),
            Some(Secret::new("pw".into())),
            Some("require".into()),
            None,
        )
        .unwrap();
        assert_eq!(
            t.describe(),
            "rag_user@rds.local:5432/rag (sslmode require)"
        );
    }

    #[test]
    fn unknown_sslmode_is_refused() {
        assert!(target("postgres://a@h/d?sslmode=sometimes").is_err());
    }

    #[test]
    fn tls_configs_build() {
        for mode in ["require", "verify-ca", "verify-full"] {
            let t = target(&format!("postgres://a@h/d?sslmode={mode}")).unwrap();
            t.rustls_config().unwrap();
        }
    }
}
