//! Sessions over real HTTP, real QUIC and a real SQLite file; the lease clock is injected.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use farview_client::{
    ClientError, ConnectOptions, Connection, CreateSession, ErrorCode, SessionClient,
};
use farview_host::{Clock, ManualClock, SystemClock};

const KEY: &str = "test-key-1";

fn api(host: &TestHost, key: &str) -> SessionClient {
    SessionClient::new(&format!("http://{}", host.handle.http_addr), key).unwrap()
}

fn api_status(e: ClientError) -> (u16, String) {
    match e {
        ClientError::Api { status, code, .. } => (status, code),
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn host_code(e: ClientError) -> ErrorCode {
    match e {
        ClientError::Host(w) => w.code,
        other => panic!("expected a host error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_lifecycle_exclusive_device_resume_and_lease_expiry() {
    let clock = Arc::new(ManualClock::new(SystemClock.now_ms()));
    let host = TestHost::start_full(
        |c| {
            c.sessions.api_keys = vec![KEY.into()];
            c.sessions.allow_sessionless = false;
            c.sessions.sizes.get_mut("standard").unwrap().width = WIDTH;
            c.sessions.sizes.get_mut("standard").unwrap().height = HEIGHT;
            c.sessions.sizes.get_mut("standard").unwrap().fps = 30.0;
        },
        None,
        Some(clock.clone() as Arc<dyn Clock>),
    )
    .await;

    // Auth: 401 without a key, 403 with a wrong one.
    let raw = reqwest_status(&host, None).await;
    assert_eq!(raw, 401);
    assert_eq!(
        api_status(api(&host, "nope").list(false).await.unwrap_err()).0,
        403
    );
    let api = api(&host, KEY);

    // Validation.
    assert_eq!(
        api_status(
            api.create_session(&CreateSession::new("0:0:0", "standard"))
                .await
                .unwrap_err()
        ),
        (422, "invalid_lease".into())
    );
    assert_eq!(
        api_status(
            api.create_session(&CreateSession::new("25:0:0", "standard"))
                .await
                .unwrap_err()
        )
        .0,
        422
    );
    assert_eq!(
        api_status(
            api.create_session(&CreateSession::new("1:0:0", "huge"))
                .await
                .unwrap_err()
        ),
        (422, "invalid_size".into())
    );

    let mut req = CreateSession::new("0:10:0", "standard");
    req.models = vec![MODEL.into()];
    let created = api.create_session(&req).await.unwrap();
    assert!(matches!(created.status.as_str(), "starting" | "ready"));
    assert_eq!(
        api_status(api.create_session(&req).await.unwrap_err()),
        (503, "at_capacity".into())
    );
    let session = api
        .session(&created.id)
        .wait_ready(Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        session.counters.models_loaded, 1,
        "models load before ready"
    );
    assert_eq!(api.list(false).await.unwrap().len(), 1);

    // A device with no session is refused on this host.
    let c = session.connection.clone().unwrap();
    let addr = c.quic_address.parse().unwrap();
    let adhoc = Connection::connect(ConnectOptions::new(addr, &c.fingerprint).unwrap())
        .await
        .unwrap_err();
    assert_eq!(host_code(adhoc), ErrorCode::SESSION_REQUIRED);
    let wrong_token = ConnectOptions::new(addr, &c.fingerprint)
        .unwrap()
        .with_session(&session.id, "bad");
    assert_eq!(
        host_code(Connection::connect(wrong_token).await.unwrap_err()),
        ErrorCode::SESSION_TOKEN_INVALID
    );

    // The first device binds; a second is refused and the first streams on.
    let a = api.connect(&session).await.unwrap();
    let secret = a.resume_secret().unwrap().to_owned();
    let f = a.next_frame().await.unwrap();
    assert!(
        foreground_fraction(&host.tap.get(f.header.frame_number).unwrap().rgba) > 0.02,
        "preloaded model is drawn"
    );
    assert_eq!(
        host_code(api.connect(&session).await.unwrap_err()),
        ErrorCode::SESSION_IN_USE
    );
    a.ping().await.unwrap();
    a.next_frame().await.unwrap();
    assert_eq!(
        api.session(&session.id).properties().await.unwrap().status,
        "connected"
    );

    // After A drops, only its resume secret reconnects, and the scene is as it was.
    a.close().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        host_code(api.connect(&session).await.unwrap_err()),
        ErrorCode::SESSION_RESUME_REQUIRED
    );
    let token = c.token.clone().unwrap();
    let resume = ConnectOptions::new(addr, &c.fingerprint)
        .unwrap()
        .with_session(&session.id, &token)
        .with_resume_secret(&secret);
    let a = Connection::connect(resume).await.unwrap();
    let f = loop {
        let f = a.next_frame().await.unwrap();
        if f.header.keyframe {
            break f;
        }
    };
    assert!(
        foreground_fraction(&host.tap.get(f.header.frame_number).unwrap().rgba) > 0.02,
        "scene kept across reconnect"
    );

    // Lease: read and extend from the device and the API; never below the elapsed time.
    clock.advance(60_000);
    let lease = a.lease().await.unwrap();
    assert_eq!((lease.max_lease_ms, lease.elapsed_ms), (600_000, 60_000));
    assert_eq!(
        host_code(a.set_lease(Duration::from_secs(30)).await.unwrap_err()),
        ErrorCode::INVALID_LEASE
    );
    let lease = a.set_lease(Duration::from_secs(900)).await.unwrap();
    assert_eq!(lease.remaining_ms, 840_000);
    let s = api
        .session(&session.id)
        .extend_lease("0:20:0")
        .await
        .unwrap();
    assert_eq!(s.max_lease_time, "0:20:0");

    // Expiry: the device is told why, the record says expired, the API refuses changes.
    clock.advance(20 * 60_000);
    let err = loop {
        match a.next_frame().await {
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    assert_eq!(host_code(err), ErrorCode::LEASE_EXPIRED);
    let s = api.session(&session.id).properties().await.unwrap();
    assert_eq!(
        (s.status.as_str(), s.stop_reason.as_deref()),
        ("expired", Some("lease expired"))
    );
    assert!(s.connection.is_none());
    assert_eq!(
        api_status(
            api.session(&session.id)
                .extend_lease("1:0:0")
                .await
                .unwrap_err()
        )
        .0,
        409
    );
    assert_eq!(
        api.session(&session.id).stop().await.unwrap().status,
        "expired",
        "stopping an ended session is fine"
    );
    assert!(api.list(false).await.unwrap().is_empty());
    assert_eq!(api.list(true).await.unwrap().len(), 1);
    assert_eq!(
        api_status(
            api.session("7c9e6679-7425-40de-944b-e07fc1f90ae7")
                .properties()
                .await
                .unwrap_err()
        )
        .0,
        404
    );
    host.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_is_idempotent_stop_tells_the_device_and_records_survive_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_path_buf();
    let tweak = |c: &mut farview_host::Config| {
        c.sessions.api_keys = vec![KEY.into()];
        let s = c.sessions.sizes.get_mut("standard").unwrap();
        (s.width, s.height, s.fps) = (WIDTH, HEIGHT, 30.0);
    };
    let host = TestHost::start_full(tweak, Some(dir.clone()), None).await;
    let api1 = api(&host, KEY);
    let id = "0b7a3c38-7e0f-4a43-9a7b-3b3f2f6b8a11";
    let req = CreateSession::new("1:0:0", "standard");
    let first = api1.put_session(id, &req).await.unwrap();
    let again = api1.put_session(id, &req).await.unwrap();
    assert_eq!(first.id, again.id);
    assert_eq!(
        api_status(
            api1.put_session(id, &CreateSession::new("2:0:0", "standard"))
                .await
                .unwrap_err()
        )
        .0,
        409
    );
    let s = api1
        .session(id)
        .wait_ready(Duration::from_secs(60))
        .await
        .unwrap();
    let dev = api1.connect(&s).await.unwrap();
    dev.next_frame().await.unwrap();
    api1.session(id).stop().await.unwrap();
    let err = loop {
        match dev.next_frame().await {
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    assert_eq!(host_code(err), ErrorCode::SESSION_STOPPED);
    assert_eq!(
        api1.session(id).stop().await.unwrap().status,
        "stopped",
        "stopping twice is fine"
    );

    // A second session, live when the host goes down.
    let live = api1.create_session(&req).await.unwrap();
    host.handle.shutdown().await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let host = TestHost::start_full(tweak, Some(dir), None).await;
    let api2 = api(&host, KEY);
    let stopped = api2.session(id).properties().await.unwrap();
    assert_eq!(
        (stopped.status.as_str(), stopped.stop_reason.as_deref()),
        ("stopped", Some("stopped"))
    );
    let failed = api2.session(&live.id).properties().await.unwrap();
    assert_eq!(
        (failed.status.as_str(), failed.stop_reason.as_deref()),
        ("error", Some("host restarted"))
    );
    host.handle.shutdown().await;
}

/// The document is generated from the handlers the router serves; the checked-in copy
/// (`docs/openapi.json`) is kept equal (`FARVIEW_UPDATE_OPENAPI=1` rewrites it). The hand-written
/// one had drifted: PATCH's `invalid_body` and list's `invalid_query` were missing.
#[test]
fn openapi_document_is_generated_from_the_routes() {
    let generated = farview_host::openapi_document();
    let path = repo_root().join("docs/openapi.json");
    if std::env::var_os("FARVIEW_UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let on_disk = std::fs::read_to_string(&path).unwrap();
    assert!(
        on_disk == generated,
        "docs/openapi.json is stale: run FARVIEW_UPDATE_OPENAPI=1 cargo test -p farview-host \
         --test sessions openapi"
    );
    let doc: serde_json::Value = serde_json::from_str(&generated).unwrap();
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| *k != "parameters")
        {
            documented.push((method.clone(), path.clone()));
        }
    }
    documented.sort();
    let mut expected: Vec<(String, String)> = [
        ("post", "/v1/sessions"),
        ("get", "/v1/sessions"),
        ("get", "/v1/sessions/{id}"),
        ("put", "/v1/sessions/{id}"),
        ("patch", "/v1/sessions/{id}"),
        ("post", "/v1/sessions/{id}/stop"),
        ("get", "/v1/openapi.json"),
        ("get", "/healthz"),
        ("get", "/metrics"),
    ]
    .iter()
    .map(|(m, p)| (m.to_string(), p.to_string()))
    .collect();
    expected.sort();
    assert_eq!(documented, expected);
    let responses = |method: &str, path: &str| doc["paths"][path][method]["responses"].clone();
    // The two that had drifted, and the authentication layer's answers on every session route.
    assert!(responses("patch", "/v1/sessions/{id}")["400"].is_object());
    assert!(responses("get", "/v1/sessions")["400"].is_object());
    for (method, path) in &expected {
        let r = responses(method, path);
        let public = !path.starts_with("/v1/sessions");
        assert_eq!(r["401"].is_object(), !public, "{method} {path}");
        assert_eq!(r["403"].is_object(), !public, "{method} {path}");
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

async fn reqwest_status(host: &TestHost, key: Option<&str>) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(host.handle.http_addr)
        .await
        .unwrap();
    let auth = key
        .map(|k| format!("Authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    tcp.write_all(
        format!("GET /v1/sessions HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut resp = String::new();
    tcp.read_to_string(&mut resp).await.unwrap();
    resp[9..12].parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sessions_at_once_each_with_its_own_scene_and_a_failure_ends_only_its_own() {
    let host = TestHost::start_with(|c| {
        c.sessions.api_keys = vec![KEY.into()];
        c.sessions.allow_sessionless = false;
        c.sessions.max_sessions = 2;
        let s = c.sessions.sizes.get_mut("standard").unwrap();
        (s.width, s.height, s.fps) = (WIDTH, HEIGHT, 30.0);
        let p = c.sessions.sizes.get_mut("premium").unwrap();
        (p.width, p.height, p.fps) = (320, 240, 30.0);
    })
    .await;
    let api = api(&host, KEY);
    let a = api
        .create_session(&CreateSession::new("0:10:0", "standard"))
        .await
        .unwrap();
    let b = api
        .create_session(&CreateSession::new("0:10:0", "premium"))
        .await
        .unwrap();
    assert_eq!(
        api_status(
            api.create_session(&CreateSession::new("0:10:0", "standard"))
                .await
                .unwrap_err()
        ),
        (503, "at_capacity".into()),
        "a third session is refused at max_sessions = 2"
    );
    let a = api
        .session(&a.id)
        .wait_ready(Duration::from_secs(60))
        .await
        .unwrap();
    let b = api
        .session(&b.id)
        .wait_ready(Duration::from_secs(60))
        .await
        .unwrap();
    let dev_a = api.connect(&a).await.unwrap();
    let dev_b = api.connect(&b).await.unwrap();
    assert_eq!(
        (dev_a.stream_info().width, dev_b.stream_info().width),
        (WIDTH, 320),
        "each session streams at its size"
    );

    // Only A loads a model: A's frames show it, B's scene stays empty.
    let model = dev_a.load_model(MODEL).await.unwrap();
    let seq = dev_a.set_camera(framing_pose(&model, 0.6)).await.unwrap();
    let fa = loop {
        let f = dev_a.next_frame().await.unwrap();
        if f.header.last_command_seq >= seq {
            break f;
        }
    };
    let fb = dev_b.next_frame().await.unwrap();
    let rgba_a = host
        .tap
        .get_sized(fa.header.frame_number, WIDTH, HEIGHT)
        .unwrap()
        .rgba;
    let rgba_b = host
        .tap
        .get_sized(fb.header.frame_number, 320, 240)
        .unwrap()
        .rgba;
    assert!(foreground_fraction(&rgba_a) > 0.02, "A draws its model");
    assert!(foreground_fraction(&rgba_b) < 0.001, "B's scene is its own");
    assert_eq!(
        api.session(&b.id)
            .properties()
            .await
            .unwrap()
            .counters
            .models_loaded,
        0
    );

    // B's render loop fails: B ends as `error` with the cause, its device is told; A goes on.
    host.tap.fail_size(320, 240, "injected device loss");
    let err = loop {
        match dev_b.next_frame().await {
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    match err {
        ClientError::Host(w) => {
            assert_eq!(w.code, ErrorCode::SESSION_ENDED);
            assert!(w.message.contains("injected device loss"), "{}", w.message);
        }
        other => panic!("expected the host's reason, got {other:?}"),
    }
    let sb = api.session(&b.id).properties().await.unwrap();
    assert_eq!(sb.status, "error");
    assert!(
        sb.stop_reason
            .as_deref()
            .is_some_and(|r| r.contains("render loop failed: injected device loss")),
        "{:?}",
        sb.stop_reason
    );
    let before = dev_a.next_frame().await.unwrap().header.frame_number;
    for _ in 0..10 {
        dev_a.next_frame().await.unwrap();
    }
    dev_a.ping().await.unwrap();
    assert!(dev_a.next_frame().await.unwrap().header.frame_number > before + 10);
    assert_eq!(
        api.session(&a.id).properties().await.unwrap().status,
        "connected"
    );
    // The failed session's slot is free again.
    let c = api
        .create_session(&CreateSession::new("0:10:0", "standard"))
        .await
        .unwrap();
    api.session(&c.id).stop().await.unwrap();
    dev_a.close().await;
    host.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_parallel_create_query_stop_calls_lose_no_record() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_path_buf();
    let tweak = |c: &mut farview_host::Config| {
        c.sessions.api_keys = vec![KEY.into()];
        c.sessions.max_sessions = 64;
        let s = c.sessions.sizes.get_mut("standard").unwrap();
        (s.width, s.height, s.fps) = (64, 64, 10.0);
    };
    let host = TestHost::start_full(tweak, Some(dir.clone()), None).await;
    let api = Arc::new(api(&host, KEY));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50u32 {
        let api = api.clone();
        tasks.spawn(async move {
            let req = CreateSession::new(&format!("0:{}:0", 10 + i % 5), "standard");
            let s = if i % 2 == 0 {
                api.create_session(&req).await.unwrap()
            } else {
                let id = format!("00000000-0000-4000-8000-{i:012}");
                api.put_session(&id, &req).await.unwrap()
            };
            let got = api.session(&s.id).properties().await.unwrap();
            assert_eq!(got.id, s.id);
            assert_eq!(got.max_lease_time, req.max_lease_time);
            // Half stop at once (maybe mid-start), half after a list call.
            if i % 3 != 0 {
                api.list(false).await.unwrap();
            }
            let stopped = api.session(&s.id).stop().await.unwrap();
            assert_eq!(stopped.status, "stopped");
            s.id
        });
    }
    let mut ids = Vec::new();
    while let Some(r) = tasks.join_next().await {
        ids.push(r.unwrap());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 50);
    assert!(api.list(false).await.unwrap().is_empty());
    let check = |all: Vec<farview_client::SessionInfo>| {
        let mut got: Vec<String> = all
            .iter()
            .filter(|s| s.status == "stopped")
            .map(|s| s.id.clone())
            .collect();
        got.sort();
        assert_eq!(got, ids, "every record is there, stopped");
    };
    check(api.list(true).await.unwrap());
    host.handle.shutdown().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The file on disk holds the same after a restart.
    let host = TestHost::start_full(tweak, Some(dir), None).await;
    let api = self::api(&host, KEY);
    check(api.list(true).await.unwrap());
    host.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_out_of_range_names_the_configured_maximum() {
    let host = TestHost::start_with(|c| {
        c.sessions.api_keys = vec![KEY.into()];
        c.sessions.max_lease = "2:0:0".into();
        let s = c.sessions.sizes.get_mut("standard").unwrap();
        (s.width, s.height, s.fps) = (64, 64, 10.0);
    })
    .await;
    let api = api(&host, KEY);
    let refused = |e: ClientError| match e {
        ClientError::Api {
            status,
            code,
            message,
        } => (status, code, message),
        other => panic!("expected an API error, got {other:?}"),
    };
    let range = "is outside the allowed range 0:0:1 to 2:0:0";
    assert_eq!(
        refused(
            api.create_session(&CreateSession::new("0:0:0", "standard"))
                .await
                .unwrap_err()
        ),
        (422, "invalid_lease".into(), format!("lease 0:0:0 {range}"))
    );
    let s = api
        .create_session(&CreateSession::new("1:0:0", "standard"))
        .await
        .unwrap();
    for (lease, shown) in [("0:0:0", "0:0:0"), ("3:0:0", "3:0:0")] {
        assert_eq!(
            refused(api.session(&s.id).extend_lease(lease).await.unwrap_err()),
            (
                422,
                "invalid_lease".into(),
                format!("lease {shown} {range}")
            ),
            "PATCH {lease}"
        );
    }
    assert_eq!(
        api.session(&s.id)
            .extend_lease("2:0:0")
            .await
            .unwrap()
            .max_lease_time,
        "2:0:0"
    );
    api.session(&s.id).stop().await.unwrap();
    host.handle.shutdown().await;
}

/// `method path` with a JSON body and the test key; the status and the parsed JSON answer.
async fn http_json(
    host: &TestHost,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(host.handle.http_addr)
        .await
        .unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    // The host may answer (413) and close before an oversized body is all written.
    let _ = tcp.write_all(body.as_bytes()).await;
    let mut raw = Vec::new();
    let _ = tcp.read_to_end(&mut raw).await;
    let resp = String::from_utf8_lossy(&raw);
    let status = resp[9..12].parse().unwrap();
    let json = resp
        .split("\r\n\r\n")
        .nth(1)
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(serde_json::Value::Null);
    (status, json)
}

/// Azure Remote Rendering's lease field (`maxLeaseTimeMinutes`) beside ours, sizes in any case,
/// and 413 (not 400) for a body over the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_in_minutes_sizes_in_any_case_and_413_for_big_bodies() {
    let host = TestHost::start_with(|c| {
        c.sessions.api_keys = vec![KEY.into()];
        c.sessions.max_sessions = 2;
    })
    .await;
    let (status, created) = http_json(
        &host,
        "POST",
        "/v1/sessions",
        r#"{"maxLeaseTimeMinutes": 90, "size": "STANDARD"}"#,
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["maxLeaseTime"], "1:30:0");
    assert_eq!(created["size"], "standard", "the configured spelling");
    let id = created["id"].as_str().unwrap().to_owned();

    let (status, patched) = http_json(
        &host,
        "PATCH",
        &format!("/v1/sessions/{id}"),
        r#"{"maxLeaseTimeMinutes": 45}"#,
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["maxLeaseTime"], "0:45:0");

    for (body, what) in [
        (
            r#"{"maxLeaseTime": "1:0:0", "maxLeaseTimeMinutes": 60, "size": "standard"}"#,
            "both",
        ),
        (r#"{"size": "standard"}"#, "neither"),
        (
            r#"{"maxLeaseTimeMinutes": 100000000000, "size": "standard"}"#,
            "huge",
        ),
    ] {
        let (status, e) = http_json(&host, "POST", "/v1/sessions", body).await;
        assert_eq!(status, 422, "{what}: {e}");
        assert_eq!(e["code"], "invalid_lease", "{what}: {e}");
    }

    let big = format!(
        r#"{{"maxLeaseTime": "1:0:0", "size": "standard", "models": ["{}"]}}"#,
        "x".repeat(200_000)
    );
    let (status, e) = http_json(&host, "POST", "/v1/sessions", &big).await;
    assert_eq!(status, 413, "{e}");
    assert_eq!(e["code"], "body_too_large");
    host.finish().await;
}

/// A host without API keys says that its API is disabled (not "key not accepted").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_api_keys_the_api_says_it_is_disabled() {
    let host = TestHost::start_with(|c| c.sessions.api_keys.clear()).await;
    let (status, e) = http_json(
        &host,
        "POST",
        "/v1/sessions",
        r#"{"maxLeaseTime": "1:0:0", "size": "standard"}"#,
    )
    .await;
    assert_eq!(status, 403, "{e}");
    assert_eq!(e["code"], "api_disabled");
    assert!(e["message"].as_str().unwrap().contains("no API keys"));
    host.finish().await;
}

/// `--print-config` shows that keys are set, never the keys.
#[test]
fn print_config_masks_the_api_keys() {
    // In an empty directory: printing must not touch the data directory either.
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_farview-host"))
        .current_dir(dir.path())
        .args([
            "--print-config",
            "--api-keys",
            "very-secret-key,another-one",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("api_keys"), "{text}");
    assert!(
        !text.contains("very-secret-key") && !text.contains("another-one"),
        "{text}"
    );
    assert_eq!(text.matches("********").count(), 2, "{text}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// A host bound to 0.0.0.0 advertises the address the API was reached by (with the QUIC port),
/// or its `public_address`, and the SDK streams a session through it (issue #12, finding 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_bound_to_all_interfaces_advertises_a_reachable_address() {
    for public in [false, true] {
        // A free UDP port, known before the host starts (the public address names it).
        let port = std::net::UdpSocket::bind("0.0.0.0:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let host = TestHost::start_with(|c| {
            c.sessions.api_keys = vec![KEY.into()];
            c.quic_addr = format!("0.0.0.0:{port}").parse().unwrap();
            if public {
                c.public_address = Some(format!("localhost:{port}"));
            }
        })
        .await;
        let api = api(&host, KEY);
        let created = api
            .create_session(&CreateSession::new("0:5:0", "standard"))
            .await
            .unwrap();
        let ready = api
            .session(&created.id)
            .wait_ready(Duration::from_secs(60))
            .await
            .unwrap();
        let advertised = ready.connection.as_ref().unwrap().quic_address.clone();
        let expected = if public {
            format!("localhost:{port}")
        } else {
            format!("127.0.0.1:{port}")
        };
        assert_eq!(advertised, expected);
        let conn = api.connect(&ready).await.unwrap();
        conn.load_model(MODEL).await.unwrap();
        conn.next_frame().await.unwrap();
        conn.close().await;
        host.finish().await;
    }
}
