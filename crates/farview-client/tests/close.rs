//! A connection gives its device slot on the host back as soon as the SDK is done with it or it
//! fails: dropped after a failed request, closed, failed while connecting, or broken by the host,
//! never left for the host's idle timeout (issue #9, bug 1). Against a real host in-process, and
//! against a scripted one (a bare QUIC server) for the failures a real host does not produce.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use farview_client::{ClientError, ConnectOptions, Connection, ErrorCode};
use farview_host::{Config, HostHandle, HostOptions, StreamConfig};
use farview_protocol::{
    ClientMessage, CloseCode, FrameDecoder, MAX_CONTROL_MESSAGE, PROTOCOL_VERSION, Reply, Request,
    ServerMessage, StreamInfo, decode_message, encode_message,
};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// A host with a single device slot, so a leaked connection also shows as a refusal.
async fn one_slot_host(dir: &Path) -> HostHandle {
    let mut config = Config {
        // Machines without a GPU (CI) render on the software rasterizer.
        allow_software_adapter: true,
        data_dir: dir.to_path_buf(),
        quic_addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        assets_root: repo_root().join("assets"),
        max_connections: 1,
        // Longer than every bound below, so only a close can free a slot in time.
        quic_idle_timeout_ms: 60_000,
        stream: StreamConfig {
            width: 320,
            height: 240,
            fps: 30.0,
            ..StreamConfig::default()
        },
        ..Config::default()
    };
    // Streams here name no session.
    config.sessions.allow_sessionless = true;
    farview_host::start(config, HostOptions::default())
        .await
        .expect("host starts")
}

/// The device connections the host counts, from `GET /healthz`.
async fn host_connections(http: SocketAddr) -> u64 {
    let body: serde_json::Value = reqwest::get(format!("http://{http}/healthz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["connections"]
        .as_u64()
        .expect("healthz reports connections")
}

/// Polls `/healthz` until the host counts `want` connections; fails after `within` (well under
/// the host's idle timeout, set to 60 s here, which would free the slot without any close).
async fn wait_for_connections(http: SocketAddr, want: u64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let n = host_connections(http).await;
        if n == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the host still counts {n} device connections after {within:?} (want {want})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn fail_a_request(conn: &Connection) {
    match conn.load_model("BoxTextured/BoxTexturd.gltf").await {
        Err(ClientError::Host(e)) => assert_eq!(e.code, ErrorCode::MODEL_NOT_FOUND, "{e}"),
        other => panic!("expected model_not_found, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_dropped_after_a_failed_request_frees_its_host_slot() {
    let dir = tempfile::tempdir().unwrap();
    let host = one_slot_host(dir.path()).await;
    let options = ConnectOptions::new(host.quic_addr, &host.fingerprint).unwrap();

    for round in 0..3 {
        let conn = Connection::connect(options.clone())
            .await
            .unwrap_or_else(|e| panic!("round {round}: the slot should be free: {e}"));
        fail_a_request(&conn).await;
        assert_eq!(host_connections(host.http_addr).await, 1);
        drop(conn);
        wait_for_connections(host.http_addr, 0, Duration::from_secs(30)).await;
    }
    host.shutdown().await;
}

/// The CLI's pattern: the work fails, the connection is closed, and the process (here: the
/// runtime that drives the connection) ends at once. `close` must not return before the close
/// is on its way, or the host keeps the slot.
#[test]
fn a_closed_connection_frees_its_slot_even_when_the_runtime_ends_right_after() {
    let host_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let host = host_rt.block_on(one_slot_host(dir.path()));
    let options = ConnectOptions::new(host.quic_addr, &host.fingerprint).unwrap();

    for round in 0..3 {
        let device_rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        device_rt.block_on(async {
            let conn = Connection::connect(options.clone())
                .await
                .unwrap_or_else(|e| panic!("round {round}: the slot should be free: {e}"));
            fail_a_request(&conn).await;
            conn.close().await;
        });
        drop(device_rt);
        host_rt.block_on(wait_for_connections(
            host.http_addr,
            0,
            Duration::from_secs(30),
        ));
    }
    host_rt.block_on(host.shutdown());
}

/// A scripted host: a bare QUIC server with a real host's certificate (made by starting one in
/// `dir`), so the SDK connects to it as to any host.
async fn scripted_host(dir: &Path) -> (quinn::Endpoint, String) {
    let host = one_slot_host(dir).await;
    let fingerprint = host.fingerprint.clone();
    host.shutdown().await;
    let cert = std::fs::read(dir.join("cert.der")).unwrap();
    let key = std::fs::read(dir.join("key.der")).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![rustls::pki_types::CertificateDer::from(cert)],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.into()),
        )
        .unwrap();
    tls.alpn_protocols = vec![farview_protocol::ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).unwrap();
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    // Longer than every bound below, so only the device's close ends a connection in time.
    transport.max_idle_timeout(Some(Duration::from_secs(60).try_into().unwrap()));
    config.transport_config(Arc::new(transport));
    let endpoint = quinn::Endpoint::server(config, "127.0.0.1:0".parse().unwrap()).unwrap();
    (endpoint, fingerprint)
}

/// Accepts a device and its control stream and reads its Hello.
async fn accept_hello(
    endpoint: &quinn::Endpoint,
) -> (quinn::Connection, quinn::SendStream, quinn::RecvStream) {
    let conn = endpoint.accept().await.unwrap().await.unwrap();
    let (send, mut recv) = conn.accept_bi().await.unwrap();
    let mut decoder = FrameDecoder::new(MAX_CONTROL_MESSAGE);
    let mut buf = [0u8; 4096];
    let hello: ClientMessage = loop {
        if let Some(payload) = decoder.next_frame().unwrap() {
            break decode_message(&payload).unwrap();
        }
        let n = recv.read(&mut buf).await.unwrap().expect("a Hello");
        decoder.push(&buf[..n]).unwrap();
    };
    assert!(matches!(hello.request, Request::Hello { .. }), "{hello:?}");
    (conn, send, recv)
}

/// How the device ended the connection, as the host sees it; fails if it is still open after
/// `within`.
async fn device_close_code(conn: &quinn::Connection, within: Duration) -> u64 {
    match tokio::time::timeout(within, conn.closed()).await {
        Ok(quinn::ConnectionError::ApplicationClosed(c)) => c.error_code.into_inner(),
        Ok(other) => panic!("expected the device's application close, got {other}"),
        Err(_) => panic!("the device left its connection open for {within:?}"),
    }
}

/// The CLI's case at the SDK level: `connect` fails after the handshake (here: no Welcome) and the
/// program ends at once. `connect` must have closed the connection, and sent the close, before it
/// returns the error: nothing runs after the runtime stops.
#[test]
fn a_connect_that_fails_after_the_handshake_closes_before_it_returns() {
    let host_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (endpoint, fingerprint) = host_rt.block_on(scripted_host(dir.path()));
    let addr = endpoint.local_addr().unwrap();
    // The scripted host reads the Hello and never answers.
    let server = host_rt.spawn(async move {
        let (conn, _send, _recv) = accept_hello(&endpoint).await;
        device_close_code(&conn, Duration::from_secs(30)).await
    });

    let device_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut options = ConnectOptions::new(addr, &fingerprint).unwrap();
    // Long enough for a handshake on a loaded machine; the Welcome never comes.
    options.timeout = Duration::from_secs(5);
    match device_rt.block_on(Connection::connect(options)) {
        Err(ClientError::Connect { reason, .. }) => assert!(reason.contains("Welcome"), "{reason}"),
        other => panic!("expected no Welcome, got {other:?}"),
    }
    drop(device_rt);
    assert_eq!(
        host_rt.block_on(server).unwrap(),
        u64::from(CloseCode::NORMAL.0)
    );
}

/// A host that sends bytes the SDK cannot decode: the SDK closes the connection with a protocol
/// error at once, even while the app still holds its `Connection`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_breaks_the_protocol_gets_its_connection_closed() {
    let dir = tempfile::tempdir().unwrap();
    let (endpoint, fingerprint) = scripted_host(dir.path()).await;
    let addr = endpoint.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (conn, mut send, _recv) = accept_hello(&endpoint).await;
        let welcome = ServerMessage::Reply {
            seq: 1,
            result: Ok(Reply::Welcome(StreamInfo {
                version: PROTOCOL_VERSION,
                width: 64,
                height: 64,
                fps: 30.0,
                codec: "h264".into(),
                host: "scripted".into(),
                adapter: "none".into(),
                session_id: None,
                resume_secret: None,
                lease: None,
            })),
        };
        send.write_all(&encode_message(&welcome).unwrap())
            .await
            .unwrap();
        // A frame longer than any control message.
        send.write_all(&[0xFF; 64]).await.unwrap();
        device_close_code(&conn, Duration::from_secs(30)).await
    });
    let conn = Connection::connect(ConnectOptions::new(addr, &fingerprint).unwrap())
        .await
        .unwrap();
    assert_eq!(
        server.await.unwrap(),
        u64::from(CloseCode::PROTOCOL_ERROR.0),
        "the SDK closes with a protocol error"
    );
    // Requests fail rather than hang.
    assert!(conn.ping().await.is_err());
    drop(conn);
}
