//! WebTransport devices (browsers) against the host with a Rust WebTransport client: the JSON
//! control protocol binds and streams like the native one, and bad input closes only that
//! session with the same codes as on the native transport (garbage and a request before `Hello`:
//! protocol error; silence: no `Hello` in time), while the host keeps serving.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::time::Duration;

use common::*;
use farview_protocol::{ClientMessage, ControlCodec, MediaStreamHeader, Request, ServerMessage};
use web_transport_quinn::{Session, SessionError, WebTransportError};

async fn endpoint_json(host: &TestHost) -> serde_json::Value {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(host.handle.http_addr)
        .await
        .unwrap();
    s.write_all(b"GET /viewer/endpoint.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.unwrap();
    serde_json::from_str(raw.split("\r\n\r\n").nth(1).unwrap()).unwrap()
}

async fn session(host: &TestHost, path: &str) -> Result<Session, web_transport_quinn::ClientError> {
    let endpoint = endpoint_json(host).await;
    let hashes = endpoint["certificateHashes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| hex::decode(h.as_str().unwrap()).unwrap())
        .collect();
    let client = web_transport_quinn::ClientBuilder::new()
        .with_server_certificate_hashes(hashes)
        .unwrap();
    let url = format!("https://127.0.0.1:{}{path}", host.handle.quic_addr.port());
    client.connect(url::Url::parse(&url).unwrap()).await
}

fn close_code(e: SessionError) -> u32 {
    match e {
        SessionError::WebTransportError(WebTransportError::Closed(code, _)) => code,
        other => panic!("expected a WebTransport close, got {other:?}"),
    }
}

async fn send_json(send: &mut web_transport_quinn::SendStream, msg: &ClientMessage) {
    let mut bytes = Vec::new();
    ControlCodec::Json.encode_into(msg, &mut bytes).unwrap();
    send.write_all(&bytes).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webtransport_device_binds_and_streams_with_json_control() {
    let host = TestHost::start().await;
    let s = session(&host, "/farview").await.unwrap();
    let (mut send, mut recv) = s.open_bi().await.unwrap();
    let hello = ClientMessage {
        seq: 1,
        request: Request::Hello {
            version: farview_protocol::PROTOCOL_VERSION,
            client: "webtransport test".into(),
            session: None,
        },
    };
    send_json(&mut send, &hello).await;
    let mut head = [0u8; 4];
    recv.read_exact(&mut head).await.unwrap();
    let mut payload = vec![0u8; u32::from_be_bytes(head) as usize];
    recv.read_exact(&mut payload).await.unwrap();
    let welcome: ServerMessage = ControlCodec::Json.decode(&payload).unwrap();
    let ServerMessage::Reply {
        seq: 1,
        result: Ok(farview_protocol::Reply::Welcome(info)),
    } = welcome
    else {
        panic!("expected Welcome, got {welcome:?}");
    };
    assert_eq!((info.width, info.height), (WIDTH, HEIGHT));
    // The media stream is the native one, byte for byte: FVMS header, then records.
    let mut media = tokio::time::timeout(Duration::from_secs(30), s.accept_uni())
        .await
        .unwrap()
        .unwrap();
    let mut header = [0u8; MediaStreamHeader::LEN];
    media.read_exact(&mut header).await.unwrap();
    assert_eq!(MediaStreamHeader::decode(&header).unwrap().version, 1);
    s.close(0, b"done");
    host.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_webtransport_input_closes_only_that_session() {
    let host = TestHost::start().await;

    // Another path than /farview is refused.
    assert!(session(&host, "/elsewhere").await.is_err());

    // Garbage on the control stream: protocol error (1).
    let s = session(&host, "/farview").await.unwrap();
    let (mut send, _recv) = s.open_bi().await.unwrap();
    send.write_all(&[0xFF; 64]).await.unwrap();
    assert_eq!(close_code(s.closed().await), 1, "garbage");

    // Well-framed JSON that is not a message, then a request before Hello: protocol error.
    let s = session(&host, "/farview").await.unwrap();
    let (mut send, _recv) = s.open_bi().await.unwrap();
    let mut bytes = 7u32.to_be_bytes().to_vec();
    bytes.extend_from_slice(b"{\"x\":1}");
    send.write_all(&bytes).await.unwrap();
    assert_eq!(close_code(s.closed().await), 1, "not a message");
    let s = session(&host, "/farview").await.unwrap();
    let (mut send, _recv) = s.open_bi().await.unwrap();
    send_json(
        &mut send,
        &ClientMessage {
            seq: 1,
            request: Request::Ping,
        },
    )
    .await;
    assert_eq!(close_code(s.closed().await), 1, "no Hello first");

    // Streams beyond the host's limit are not granted (the device waits, the host does not
    // grow), and silence is closed once the Hello deadline (10 s) passes.
    let s = session(&host, "/farview").await.unwrap();
    let mut open = Vec::new();
    // Four bidirectional streams per connection; the session's CONNECT request holds one.
    for _ in 0..3 {
        open.push(s.open_bi().await.unwrap());
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(500), s.open_bi())
            .await
            .is_err(),
        "a fifth bidirectional stream is not granted"
    );
    let closed = tokio::time::timeout(Duration::from_secs(30), s.closed())
        .await
        .expect("closed after the Hello deadline");
    assert_eq!(close_code(closed), 1, "no Hello in time");

    // The host keeps serving.
    let good = host.connect().await;
    good.load_model(MODEL).await.unwrap();
    good.next_frame().await.unwrap();
    good.close().await;
    host.finish().await;
}

/// Pins the host: accepts only a certificate whose fingerprint the host published (its native
/// fingerprint or a WebTransport hash), and keeps the leaf it was shown.
#[derive(Debug)]
struct Recorder(
    std::sync::Mutex<Option<Vec<u8>>>,
    rustls::crypto::CryptoProvider,
    Vec<String>,
);

impl rustls::client::danger::ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if !self
            .2
            .contains(&farview_host::fingerprint(end_entity.as_ref()))
        {
            return Err(rustls::Error::General(
                "certificate not published by the host".into(),
            ));
        }
        *self.0.lock().unwrap() = Some(end_entity.to_vec());
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.1.signature_verification_algorithms.supported_schemes()
    }
}

/// The certificate a client offering `alpn` is shown, as its fingerprint.
async fn certificate_for(host: &TestHost, alpn: &[&[u8]]) -> String {
    let provider = rustls::crypto::ring::default_provider();
    let mut pinned: Vec<String> = endpoint_json(host).await["certificateHashes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap().to_owned())
        .collect();
    pinned.push(host.handle.fingerprint.clone());
    let recorder = std::sync::Arc::new(Recorder(
        std::sync::Mutex::new(None),
        provider.clone(),
        pinned,
    ));
    let mut tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    tls.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(std::sync::Arc::new(crypto)));
    let conn = endpoint
        .connect(host.handle.quic_addr, "localhost")
        .unwrap()
        .await
        .unwrap();
    conn.close(0u32.into(), b"");
    let der = recorder.0.lock().unwrap().take().unwrap();
    farview_host::fingerprint(&der)
}

/// Browsers (ALPN `h3` alone) get the short-lived certificate whose hash is published; a client
/// that also offers `farview/1` negotiates it and so gets the pinned native certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_certificate_follows_the_negotiated_protocol() {
    let host = TestHost::start().await;
    let published = endpoint_json(&host).await["certificateHashes"][0]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(certificate_for(&host, &[b"h3"]).await, published);
    assert_eq!(
        certificate_for(&host, &[b"farview/1"]).await,
        host.handle.fingerprint
    );
    assert_eq!(
        certificate_for(&host, &[b"h3", b"farview/1"]).await,
        host.handle.fingerprint
    );
    host.finish().await;
}
