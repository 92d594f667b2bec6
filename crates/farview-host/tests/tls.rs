//! A certificate from a CA (`[tls] cert` / `key`, PEM): native devices pin its leaf, browsers'
//! HTTP/3 handshakes get the same chain and verify it against their CAs (so no certificate hashes
//! are published).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::sync::Arc;

use common::*;

/// A test CA and a leaf for `localhost` signed by it, as PEM files in `dir`.
fn ca_and_leaf(dir: &std::path::Path) -> (rustls::pki_types::CertificateDer<'static>, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Farview test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf_params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();
    std::fs::write(dir.join("cert.pem"), leaf.pem() + &ca.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), leaf_key.serialize_pem()).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    (
        ca.der().clone(),
        farview_host::fingerprint(leaf.der().as_ref()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_certificate_serves_native_devices_and_browsers() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, leaf_fingerprint) = ca_and_leaf(dir.path());
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let host = TestHost::start_with(|c| {
        c.tls.cert = Some(cert.clone());
        c.tls.key = Some(key.clone());
    })
    .await;
    assert_eq!(host.handle.fingerprint, leaf_fingerprint);

    // A native device pins the leaf's fingerprint and streams.
    let conn = host.connect().await;
    conn.ping().await.unwrap();

    // A browser-like client: ALPN h3, the CA in its roots, server name checked.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    let h3 = endpoint
        .connect(host.handle.quic_addr, "localhost")
        .unwrap()
        .await
        .expect("the CA's chain verifies for localhost over h3");
    let presented = h3
        .peer_identity()
        .unwrap()
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .unwrap();
    assert_eq!(presented.len(), 2, "leaf and CA");
    assert_eq!(
        farview_host::fingerprint(presented[0].as_ref()),
        leaf_fingerprint
    );
    h3.close(0u32.into(), b"done");

    // Browsers need no pinned hashes with a CA's certificate.
    let body: serde_json::Value = reqwest_json(&host, "/viewer/endpoint.json").await;
    assert_eq!(body["certificateHashes"], serde_json::json!([]));
    drop(conn);
    host.finish().await;
}

/// `[tls] https`: the API and the viewer over HTTPS with the configured certificate; the SDK
/// verifies it (a private CA added), names the cause when it cannot, and a client that opens a
/// TCP connection and never handshakes holds nobody up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_serves_https_with_the_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    ca_and_leaf(dir.path());
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let host = TestHost::start_with(|c| {
        c.tls.cert = Some(cert.clone());
        c.tls.key = Some(key.clone());
        c.tls.https = true;
        c.sessions.api_keys = vec!["k".into()];
    })
    .await;
    let url = format!("https://localhost:{}", host.handle.http_addr.port());
    // A connection that never sends a ClientHello.
    let _stalled = tokio::net::TcpStream::connect(host.handle.http_addr)
        .await
        .unwrap();

    let ca = std::fs::read(dir.path().join("ca.pem")).unwrap();
    let api = farview_client::SessionClient::with_root_certificates(&url, "k", &ca).unwrap();
    let health = api
        .health()
        .await
        .expect("HTTPS with the private CA trusted");
    assert_eq!(health["status"], "ok");
    let sessions = api.list(false).await.expect("the API answers over HTTPS");
    assert!(sessions.is_empty());

    // Without the CA: refused, and the message says why (not only "error sending request").
    let untrusted = farview_client::SessionClient::new(&url, "k").unwrap();
    let err = untrusted.health().await.unwrap_err().to_string();
    assert!(
        err.to_lowercase().contains("certificate") || err.contains("UnknownIssuer"),
        "{err}"
    );
    // Plain HTTP to the HTTPS port gets no API.
    let plain =
        farview_client::SessionClient::new(&format!("http://{}", host.handle.http_addr), "k")
            .unwrap();
    assert!(plain.health().await.is_err());
    host.finish().await;
}

#[test]
fn https_needs_a_certificate() {
    let mut c = farview_host::Config::default();
    c.tls.https = true;
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("tls.https"), "{e}");
}

#[test]
fn tls_needs_both_files() {
    let mut c = farview_host::Config::default();
    c.tls.cert = Some("cert.pem".into());
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("tls.cert and tls.key"), "{e}");
}

async fn reqwest_json(host: &TestHost, path: &str) -> serde_json::Value {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(host.handle.http_addr)
        .await
        .unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.unwrap();
    let body = raw.split("\r\n\r\n").nth(1).unwrap();
    serde_json::from_str(body).unwrap()
}
