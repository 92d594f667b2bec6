//! Animation and glTF cameras end to end over real QUIC: a device lists a model's animations,
//! plays, pauses, seeks and stops one; frame headers name the animation time shown, and the
//! frames the host rendered change with it. A camera in an uploaded file is looked through.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::time::Duration;

use common::*;
use farview_client::{AnimationCommand, ClientError, Connection, ErrorCode, Reply, Request};

fn code(e: ClientError) -> ErrorCode {
    match e {
        ClientError::Host(w) => w.code,
        other => panic!("expected a host error, got {other:?}"),
    }
}

/// Sends an `Animate` and returns its sequence number and the state it reports.
async fn animate(
    conn: &Connection,
    root: u64,
    command: AnimationCommand,
) -> (u64, farview_client::AnimationState) {
    let (seq, reply) = conn
        .request(Request::Animate { root, command })
        .await
        .unwrap();
    let Reply::AnimationState(state) = reply else {
        panic!("{reply:?}");
    };
    (seq, state)
}

/// Frames (header, host-rendered RGBA when the tap still has it) from the first that reflects
/// `seq`, until `n` are collected; bounded by a generous deadline.
async fn frames_after(
    conn: &Connection,
    host: &TestHost,
    seq: u64,
    n: usize,
) -> Vec<(farview_client::FrameHeader, Option<Vec<u8>>)> {
    tokio::time::timeout(Duration::from_secs(60), async {
        let mut out = Vec::new();
        while out.len() < n {
            let f = conn.next_frame().await.unwrap();
            if f.header.last_command_seq >= seq {
                let rgba = host.tap.get(f.header.frame_number).map(|t| t.rgba);
                out.push((f.header, rgba));
            }
        }
        out
    })
    .await
    .expect("frames within 60 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_plays_pauses_seeks_and_stops_an_animation() {
    let host = TestHost::start().await;
    let conn = host.connect().await;
    let fox = conn.load_model("Fox/Fox.glb").await.unwrap();
    assert_eq!(fox.animations, ["Survey", "Walk", "Run"]);
    assert_eq!(fox.skins, 1);
    assert!(fox.camera_list.is_empty());
    let list = conn.list_animations(fox.root_entity).await.unwrap();
    assert_eq!(list.len(), 3);
    assert!(list.iter().all(|a| a.duration_s > 0.5), "{list:?}");
    conn.fit_view(Some(fox.root_entity), None).await.unwrap();

    // Nothing plays yet: headers name no animation.
    let (seq, _) = conn.request(Request::GetStats).await.unwrap();
    let still = frames_after(&conn, &host, seq, 1).await;
    assert_eq!(still[0].0.animation, None);

    let (seq, state) = animate(
        &conn,
        fox.root_entity,
        AnimationCommand::Play {
            index: 2,
            speed: 1.0,
            looping: true,
            start_s: 0.0,
        },
    )
    .await;
    assert!(state.playing && state.looping);
    assert_eq!(state.index, Some(2));
    let running = frames_after(&conn, &host, seq, 8).await;
    let times: Vec<u64> = running
        .iter()
        .map(|(h, _)| {
            let a = h
                .animation
                .expect("a playing animation is named in the header");
            assert_eq!(a.root, fox.root_entity);
            a.time_us
        })
        .collect();
    assert!(
        times.windows(2).any(|w| w[1] != w[0]),
        "the animation time advances: {times:?}"
    );
    let pictures: Vec<&Vec<u8>> = running.iter().filter_map(|(_, p)| p.as_ref()).collect();
    assert!(pictures.len() >= 2);
    assert!(
        pictures.windows(2).any(|w| w[0] != w[1]),
        "the rendered fox moves"
    );

    let (seq, state) = animate(&conn, fox.root_entity, AnimationCommand::Pause).await;
    assert!(!state.playing);
    let paused = frames_after(&conn, &host, seq, 3).await;
    let held: Vec<u64> = paused
        .iter()
        .map(|(h, _)| h.animation.unwrap().time_us)
        .collect();
    assert!(held.windows(2).all(|w| w[0] == w[1]), "{held:?}");

    let (seq, state) = animate(
        &conn,
        fox.root_entity,
        AnimationCommand::Seek { time_s: 0.3 },
    )
    .await;
    assert!((state.time_s - 0.3).abs() < 1e-6);
    let sought = frames_after(&conn, &host, seq, 1).await;
    assert_eq!(sought[0].0.animation.unwrap().time_us, 300_000);

    let (seq, state) = animate(&conn, fox.root_entity, AnimationCommand::Stop).await;
    assert_eq!(state.index, None);
    let stopped = frames_after(&conn, &host, seq, 1).await;
    assert_eq!(stopped[0].0.animation, None);

    // Bad commands are refused with typed errors; the session goes on.
    let child = fox.hierarchy[1].entity;
    let play = |index| AnimationCommand::Play {
        index,
        speed: 1.0,
        looping: false,
        start_s: 0.0,
    };
    assert_eq!(
        code(conn.animate(fox.root_entity, play(9)).await.unwrap_err()),
        ErrorCode::INVALID_ARGUMENT
    );
    assert_eq!(
        code(conn.animate(child, play(0)).await.unwrap_err()),
        ErrorCode::INVALID_ARGUMENT
    );
    assert_eq!(
        code(conn.animate(1 << 40, play(0)).await.unwrap_err()),
        ErrorCode::ENTITY_NOT_FOUND
    );
    assert_eq!(
        code(
            conn.animate(
                fox.root_entity,
                AnimationCommand::SetSpeed {
                    speed: f32::INFINITY
                }
            )
            .await
            .unwrap_err()
        ),
        ErrorCode::INVALID_ARGUMENT
    );
    assert_eq!(
        code(conn.view_camera(fox.root_entity, 0).await.unwrap_err()),
        ErrorCode::INVALID_ARGUMENT
    );
    conn.ping().await.unwrap();
    conn.close().await;
    host.finish().await;
}

/// A GLB: a triangle and a perspective camera 5 m in front of it, looking at it.
fn triangle_with_camera() -> Vec<u8> {
    let bin: Vec<u8> = [-1.0f32, -1.0, 0.0, 1.0, -1.0, 0.0, 0.0, 1.0, 0.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let json = serde_json::to_vec(&serde_json::json!({
        "asset": {"version": "2.0"},
        "buffers": [{"byteLength": 36}],
        "bufferViews": [{"buffer": 0, "byteLength": 36}],
        "accessors": [{"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3",
                       "min": [-1, -1, 0], "max": [1, 1, 0]}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}}]}],
        "cameras": [{"name": "front", "type": "perspective",
                     "perspective": {"yfov": 0.5, "znear": 0.1, "zfar": 50.0}}],
        "nodes": [{"mesh": 0}, {"camera": 0, "translation": [0.0, 0.0, 5.0]}],
        "scenes": [{"nodes": [0, 1]}]
    }))
    .unwrap();
    farview_scene::synthetic::glb(&json, &bin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_looks_through_a_camera_of_the_file() {
    let host = TestHost::start().await;
    let conn = host.connect().await;
    let model = conn
        .upload_model("camera.glb", &triangle_with_camera())
        .await
        .unwrap();
    assert_eq!(model.camera_list.len(), 1);
    let cam = &model.camera_list[0];
    assert_eq!(cam.name.as_deref(), Some("front"));
    assert_eq!((cam.yfov, cam.znear, cam.zfar), (0.5, 0.1, Some(50.0)));
    let (seq, reply) = conn
        .request(Request::ViewCamera {
            root: model.root_entity,
            camera: 0,
        })
        .await
        .unwrap();
    let Reply::CameraFitted(pose) = reply else {
        panic!("{reply:?}");
    };
    assert_eq!(pose.position, [0.0, 0.0, 5.0]);
    assert_eq!((pose.fov_y, pose.near, pose.far), (0.5, 0.1, 50.0));
    // The triangle is in the middle of the picture.
    let frame = frame_after(&conn, &host, seq).await;
    let fg = foreground_fraction(&frame);
    assert!(fg > 0.05 && fg < 0.6, "triangle covers {:.1}%", fg * 100.0);
    assert_eq!(
        code(conn.view_camera(model.root_entity, 1).await.unwrap_err()),
        ErrorCode::INVALID_ARGUMENT
    );
    conn.close().await;
    host.finish().await;
}
