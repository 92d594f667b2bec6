//! The host as an Agones game server, against a local implementation of Agones' SDK gRPC
//! service (`farview-agones-local`, generated from the proto the `agones` crate ships): Ready
//! once up, with its labels and annotations; health pings while its render loops turn and not
//! while one is stuck; an allocation creates the session it asks for, with the requested lease;
//! Shutdown once that lease has run out. (Agones' own local SDK server is a Go program; there
//! is no Go toolchain on these machines to build it.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::TestHost;
use farview_agones_local::LocalSdk;
use farview_client::SessionClient;
use farview_host::{AgonesConfig, Clock, ManualClock, SystemClock};

const KEY: &str = "fleet-test-key";

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Health pings recorded from `from` on.
fn pings_since(sdk: &LocalSdk, from: Instant) -> Vec<Instant> {
    sdk.recorded()
        .health
        .into_iter()
        .filter(|t| *t >= from)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_host_is_ready_healthy_allocated_and_leaves_after_its_lease() {
    let (quic_port, http_port) = (free_udp_port(), free_tcp_port());
    let sdk = LocalSdk::start(
        "farview-x7k2p",
        "127.0.0.1",
        &[
            ("quic", i32::from(quic_port)),
            ("http", i32::from(http_port)),
        ],
    )
    .await
    .unwrap();
    let clock = Arc::new(ManualClock::new(SystemClock.now_ms()));
    let sdk_port = sdk.port();
    let host = TestHost::start_full(
        |c| {
            c.quic_addr = ([127, 0, 0, 1], quic_port).into();
            c.http_addr = ([127, 0, 0, 1], http_port).into();
            c.sessions.api_keys = vec![KEY.into()];
            c.sessions.allow_sessionless = false;
            c.sessions.max_sessions = 2;
            let standard = c.sessions.sizes.get_mut("standard").unwrap();
            (standard.width, standard.height, standard.fps) = (320, 240, 30.0);
            c.agones = AgonesConfig {
                enabled: true,
                sdk_port: Some(sdk_port),
                health_interval_ms: 200,
                stall_after_ms: 1_500,
            };
        },
        None,
        Some(clock.clone() as Arc<dyn Clock>),
    )
    .await;
    let patience = Duration::from_secs(60);

    // Ready, described.
    sdk.wait_for(patience, |r, _| r.ready >= 1)
        .await
        .expect("Ready once up");
    assert_eq!(sdk.state(), "Ready");
    let labels = sdk.labels();
    assert_eq!(labels["agones.dev/sdk-farview-capacity"], "2", "{labels:?}");
    assert!(!labels["agones.dev/sdk-farview-gpu"].is_empty());
    let notes = sdk.annotations();
    assert_eq!(
        notes["agones.dev/sdk-farview-quic-address"],
        format!("127.0.0.1:{quic_port}")
    );
    assert_eq!(
        notes["agones.dev/sdk-farview-fingerprint"],
        host.handle.fingerprint
    );

    // Healthy while idle.
    let t = Instant::now();
    sdk.wait_for(patience, |r, _| {
        r.health.iter().filter(|p| **p >= t).count() >= 3
    })
    .await
    .expect("health pings while idle");

    // Allocated with a session request: the host creates that session.
    let id = uuid::Uuid::new_v4().to_string();
    assert!(sdk.allocate(&[
        ("farview.dev/session-id", id.as_str()),
        ("farview.dev/lease-minutes", "1"),
        ("farview.dev/size", "standard"),
        ("farview.dev/models", common::MODEL),
    ]));
    let api = SessionClient::new(&format!("http://{}", host.handle.http_addr), KEY).unwrap();
    // The host creates the session once it has seen the allocation (a watch event away, later
    // on a loaded machine): until then the id is unknown.
    let deadline = Instant::now() + patience;
    loop {
        match api.session(&id).properties().await {
            Err(farview_client::ClientError::Api { status: 404, .. })
                if Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            _ => break,
        }
    }
    let session = api
        .session(&id)
        .wait_ready(patience)
        .await
        .expect("the allocation's session comes up");
    assert_eq!(session.max_lease_time, "0:1:0");
    assert_eq!(session.models, [common::MODEL]);
    assert_eq!(session.counters.models_loaded, 1);
    assert_eq!(sdk.annotations()["agones.dev/sdk-farview-session-id"], id);
    // Devices are sent to the address and port Agones mapped.
    let details = session.connection.clone().expect("connection details");
    assert_eq!(details.quic_address, format!("127.0.0.1:{quic_port}"));

    // A device streams; health pings go on while the loop renders.
    let conn = api.connect(&session).await.expect("the device connects");
    for _ in 0..5 {
        tokio::time::timeout(patience, conn.next_frame())
            .await
            .expect("a frame")
            .expect("a frame");
    }
    let t = Instant::now();
    sdk.wait_for(patience, |r, _| {
        r.health.iter().filter(|p| **p >= t).count() >= 3
    })
    .await
    .expect("health pings while rendering");

    // A stuck render loop (held for 4 s): the pings stop once it is 1.5 s old, and resume.
    let stall = Duration::from_secs(4);
    let stalled_at = Instant::now();
    assert_eq!(host.handle.stall_render_loops_for_test(stall), 1);
    // A ping later than the stall's end waits the stall out (no fixed sleep).
    sdk.wait_for(patience, |r, _| {
        r.health.last().is_some_and(|p| *p > stalled_at + stall)
    })
    .await
    .expect("pings resume once the loop turns");
    let pings = pings_since(&sdk, stalled_at);
    let gap = pings
        .windows(2)
        .map(|w| w[1].duration_since(w[0]))
        .max()
        .unwrap_or_default();
    // Loop held 4 s, counted stuck after 1.5 s: about 2.5 s without a ping (200 ms normally).
    assert!(
        gap >= Duration::from_millis(1_800),
        "longest gap between pings during the stall: {gap:?}"
    );
    assert_eq!(sdk.recorded().shutdown, 0);

    // The lease runs out: the session ends, the host is drained, and it asks to be replaced.
    clock.advance(61_000);
    sdk.wait_for(patience, |r, _| r.shutdown == 1)
        .await
        .expect("Shutdown once the allocated session's lease ended");
    assert_eq!(sdk.state(), "Shutdown");
    let ended = api.session(&id).properties().await.unwrap();
    assert_eq!(ended.status, "expired", "{ended:?}");
    drop(conn);
    host.finish().await;
}

/// `[agones] enabled` with no SDK server to talk to: the host does not start (it would never
/// be Ready), and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_host_without_its_sdk_server_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_tcp_port();
    let config = farview_host::Config {
        data_dir: dir.path().into(),
        quic_addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        assets_root: common::repo_root().join("assets"),
        agones: AgonesConfig {
            enabled: true,
            sdk_port: Some(port),
            ..AgonesConfig::default()
        },
        ..farview_host::Config::default()
    };
    let options = farview_host::HostOptions {
        gpu: Some(common::gpu()),
        default_environment: Some(common::default_environment()),
        ..Default::default()
    };
    // The SDK waits up to 30 s for its server; bounded here with room for a loaded machine.
    let err = tokio::time::timeout(
        Duration::from_secs(90),
        farview_host::start(config, options),
    )
    .await
    .expect("gives up in time")
    .expect_err("no SDK server, no host");
    assert!(err.to_string().contains("Agones SDK"), "{err}");
}
