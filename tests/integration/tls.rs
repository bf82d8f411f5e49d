//! TLS to PostgreSQL as RDS needs it. The test database has no TLS of its
//! own, so a small TLS front end speaks PostgreSQL's SSLRequest handshake,
//! terminates TLS with a certificate made for the test, and forwards the
//! decrypted stream to the real server: the client side under test (sslmode
//! require, verify-ca, verify-full, the CA file) is vecload's real code.

use std::sync::Arc;

use crate::common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct TlsFront {
    port: u16,
    ca_pem: String,
    _rt: tokio::runtime::Runtime,
}

/// Starts the TLS front end for `pg` with a certificate for `name`.
fn tls_front(pg: &str, name: &str) -> TlsFront {
    let upstream = {
        let u = url::Url::parse(pg).unwrap();
        format!("{}:{}", u.host_str().unwrap(), u.port().unwrap())
    };
    let certs = test_certs(name);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![certs.cert_der.clone().into(), certs.ca_der.clone().into()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(certs.key_der.clone().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    rt.spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, upstream) = (acceptor.clone(), upstream.clone());
            tokio::spawn(async move {
                // SSLRequest: length 8, code 80877103; answer 'S' and start TLS.
                let mut req = [0u8; 8];
                if client.read_exact(&mut req).await.is_err() || req != [0, 0, 0, 8, 4, 210, 22, 47]
                {
                    return;
                }
                if client.write_all(b"S").await.is_err() {
                    return;
                }
                let Ok(mut tls) = acceptor.accept(client).await else {
                    return;
                };
                let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut server).await;
            });
        }
    });
    TlsFront {
        port,
        ca_pem: certs.ca_pem,
        _rt: rt,
    }
}

fn tls_url(pg: &str, host: &str, port: u16, mode: &str) -> String {
    let mut u = url::Url::parse(pg).unwrap();
    u.set_host(Some(host)).unwrap();
    u.set_port(Some(port)).unwrap();
    u.set_query(Some(&format!("sslmode={mode}")));
    u.to_string()
}

#[test]
fn tls_modes_connect_and_verify_like_libpq() {
    let Some(pg) = pg_url("tls_modes") else {
        return;
    };
    let front = tls_front(&pg, "localhost");
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &front.ca_pem).unwrap();
    let server = EmbedServer::start(&["--dim", "16"]);
    let table = unique_table("tls");
    let load = |url: &str, extra: &[&str]| {
        run(load_cmd(&server, url, &table, 16)
            .arg(fixtures().join("guides"))
            .args(extra))
    };

    // require: encrypted, certificate not checked (libpq's meaning).
    let r = load(&tls_url(&pg, "localhost", front.port, "require"), &[]);
    assert_eq!(r.code, 0, "sslmode=require connects through TLS");

    // verify-full with the CA that signed the certificate, host name matching.
    let r = load(
        &tls_url(&pg, "localhost", front.port, "verify-full"),
        &["--pg-sslrootcert", ca.to_str().unwrap()],
    );
    assert_eq!(r.code, 0, "verify-full with the right CA connects");

    // verify-full without that CA (public roots only) is refused.
    let r = load(&tls_url(&pg, "localhost", front.port, "verify-full"), &[]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("cannot connect to PostgreSQL")
            && r.stderr.to_lowercase().contains("certificate"),
        "{}",
        r.stderr
    );

    // verify-full to an address the certificate does not name is refused;
    // verify-ca checks only the chain, so it connects.
    let r = load(
        &tls_url(&pg, "127.0.0.1", front.port, "verify-full"),
        &["--pg-sslrootcert", ca.to_str().unwrap()],
    );
    assert_eq!(r.code, 2, "host name mismatch is refused under verify-full");
    let r = load(
        &tls_url(&pg, "127.0.0.1", front.port, "verify-ca"),
        &["--pg-sslrootcert", ca.to_str().unwrap()],
    );
    assert_eq!(
        r.code, 0,
        "verify-ca accepts a trusted chain for another name"
    );

    let db = Db::connect(&pg);
    assert_eq!(
        db.count(&table),
        2,
        "the runs over TLS wrote the guides (and reruns upserted)"
    );
}
