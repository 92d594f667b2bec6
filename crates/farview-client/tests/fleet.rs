//! The allocation client against a fleet of one: a real host with `[agones] enabled`, its SDK
//! sidecar played by `farview-agones-local`, and a stand-in for Agones' allocator service that
//! does what the real one does to a Ready game server (Allocated, the request's annotations,
//! its address and ports in the answer). A backend allocates, waits for the session, a device
//! streams from it; a second allocation finds no host; stopping the session sends the host away.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use farview_agones_local::LocalSdk;
use farview_client::ClientError;
use farview_client::fleet::{Allocator, SessionRequest};
use farview_host::{AgonesConfig, Config, HostOptions};
use serde_json::{Value, json};

const KEY: &str = "backend-key";

fn free_port(udp: bool) -> u16 {
    if udp {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    } else {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }
}

/// `POST /gameserverallocation`: allocates the one game server if it is Ready and the request
/// selects its fleet.
async fn allocate(
    State(sdk): State<Arc<LocalSdk>>,
    Json(req): Json<Value>,
) -> Result<Json<Value>, (StatusCode, String)> {
    let fleet = &req["gameServerSelectors"][0]["matchLabels"]["agones.dev/fleet"];
    if req["namespace"] != "default" || fleet != "farview" {
        return Err((StatusCode::BAD_REQUEST, format!("unexpected request {req}")));
    }
    let notes: Vec<(String, String)> = req["metadata"]["annotations"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default();
    let pairs: Vec<(&str, &str)> = notes
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    if !sdk.allocate(&pairs) {
        return Err((
            StatusCode::TOO_MANY_REQUESTS,
            "no available GameServer to allocate".into(),
        ));
    }
    let gs = sdk.game_server();
    let status = gs.status.unwrap();
    Ok(Json(json!({
        "gameServerName": gs.object_meta.as_ref().unwrap().name,
        "address": status.address,
        "nodeName": "node-a",
        "source": "local",
        "ports": status.ports.iter().map(|p| json!({"name": p.name, "port": p.port})).collect::<Vec<_>>(),
        "metadata": {"labels": sdk.labels(), "annotations": sdk.annotations()},
    })))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_allocates_a_host_and_its_device_streams() {
    let (quic_port, http_port) = (free_port(true), free_port(false));
    let sdk = Arc::new(
        LocalSdk::start(
            "farview-9q2zm",
            "127.0.0.1",
            &[
                ("quic", i32::from(quic_port)),
                ("http", i32::from(http_port)),
            ],
        )
        .await
        .unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        allow_software_adapter: true,
        data_dir: dir.path().into(),
        quic_addr: ([127, 0, 0, 1], quic_port).into(),
        http_addr: ([127, 0, 0, 1], http_port).into(),
        assets_root: Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets"),
        agones: AgonesConfig {
            enabled: true,
            sdk_port: Some(sdk.port()),
            health_interval_ms: 200,
            stall_after_ms: 2_000,
        },
        ..Config::default()
    };
    config.sessions.api_keys = vec![KEY.into()];
    let standard = config.sessions.sizes.get_mut("standard").unwrap();
    (standard.width, standard.height, standard.fps) = (320, 240, 30.0);
    let host = farview_host::start(config, HostOptions::default())
        .await
        .expect("host starts");
    sdk.wait_for(Duration::from_secs(60), |r, _| r.ready >= 1)
        .await
        .expect("the host is Ready");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let allocator_addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/gameserverallocation", post(allocate))
        .with_state(sdk.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let allocator =
        Allocator::new(&format!("http://{allocator_addr}"), "default", "farview").unwrap();
    let request = SessionRequest::new(5, "standard").with_models(["BoxTextured/BoxTextured.gltf"]);
    let allocation = allocator.allocate(&request).await.expect("a host");
    assert_eq!(allocation.session_id, request.session_id);
    assert_eq!(allocation.game_server, "farview-9q2zm");
    assert_eq!(allocation.quic_address, format!("127.0.0.1:{quic_port}"));
    assert_eq!(
        allocation.fingerprint.as_deref(),
        Some(host.fingerprint.as_str())
    );

    let session = allocation
        .wait_session(KEY, Duration::from_secs(60))
        .await
        .expect("the session comes up on the allocated host");
    assert_eq!(session.id, request.session_id);
    assert_eq!(session.max_lease_time, "0:5:0");
    assert_eq!(session.counters.models_loaded, 1);
    let api = allocation.sessions(KEY).unwrap();
    let conn = api.connect(&session).await.expect("the device connects");
    let frame = tokio::time::timeout(Duration::from_secs(60), conn.next_frame())
        .await
        .expect("a frame in time")
        .expect("a frame");
    assert_eq!((frame.header.width, frame.header.height), (320, 240));

    // The fleet's one host is taken.
    match allocator
        .allocate(&SessionRequest::new(5, "standard"))
        .await
    {
        Err(ClientError::Api {
            status: 429, code, ..
        }) => assert_eq!(code, "no_host"),
        other => panic!("expected no host, got {other:?}"),
    }

    // The backend stops the session: the host is drained and asks to be replaced.
    api.session(&session.id).stop().await.unwrap();
    sdk.wait_for(Duration::from_secs(30), |r, _| r.shutdown == 1)
        .await
        .expect("Shutdown after the session");
    drop(conn);
    host.shutdown().await;
}
