//! The scene API end to end: every command and query over real QUIC, its effect checked in the
//! frames the host rendered (frame headers say which command each frame reflects) or in the
//! reply.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use farview_client::{
    ClientError, CutPlane, EntityTransform, ErrorCode, Light, LightKind, MaterialOverride,
    StateOverride, TransformUpdate,
};

fn code(e: ClientError) -> ErrorCode {
    match e {
        ClientError::Host(w) => w.code,
        other => panic!("expected a host error, got {other:?}"),
    }
}

fn background() -> [u8; 3] {
    // The host's default background (linear 0.0331, the Sample Viewer's sRGB 0.2 grey) as stored
    // in the sRGB target.
    [0.0331f32; 3].map(|c| {
        let s = if c <= 0.003_130_8 {
            c * 12.92
        } else {
            1.055 * c.powf(1.0 / 2.4) - 0.055
        };
        (s * 255.0).round() as u8
    })
}

fn is_fg(p: &[u8], bg: [u8; 3]) -> bool {
    (0..3).any(|i| (i32::from(p[i]) - i32::from(bg[i])).abs() > 12)
}

/// Mean RGB over the pixels of `mask`.
fn mean_rgb(rgba: &[u8], mask: &[bool]) -> [f64; 3] {
    let mut sum = [0f64; 3];
    let mut n = 0f64;
    for (p, &m) in rgba.chunks_exact(4).zip(mask) {
        if m {
            for i in 0..3 {
                sum[i] += f64::from(p[i]);
            }
            n += 1.0;
        }
    }
    sum.map(|s| s / n.max(1.0))
}

fn mask(rgba: &[u8]) -> Vec<bool> {
    let bg = background();
    rgba.chunks_exact(4).map(|p| is_fg(p, bg)).collect()
}

fn count(mask: &[bool]) -> usize {
    mask.iter().filter(|m| **m).count()
}

fn centroid_x(mask: &[bool]) -> f64 {
    let (mut s, mut n) = (0f64, 0f64);
    for (i, &m) in mask.iter().enumerate() {
        if m {
            s += (i % WIDTH as usize) as f64;
            n += 1.0;
        }
    }
    s / n.max(1.0)
}

/// Distance along a ray to an axis-aligned box (slab test), computed here independently of the
/// host's raycast.
fn ray_box(o: [f32; 3], d: [f32; 3], min: [f32; 3], max: [f32; 3]) -> Option<f32> {
    let (mut t0, mut t1) = (0f32, f32::INFINITY);
    for i in 0..3 {
        let inv = 1.0 / d[i];
        let (a, b) = ((min[i] - o[i]) * inv, (max[i] - o[i]) * inv);
        t0 = t0.max(a.min(b));
        t1 = t1.min(a.max(b));
    }
    (t0 <= t1).then_some(t0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_and_query_shows_its_effect() {
    let host = TestHost::start().await;
    let conn = host.connect().await;
    let model = conn.load_model(MODEL).await.unwrap();
    assert_eq!(model.hierarchy[0].entity, model.root_entity);
    assert_eq!(model.hierarchy.len() as u32, model.entities);
    let mesh_entity = model.hierarchy.iter().find(|h| h.has_mesh).unwrap().entity;
    let pose = framing_pose(&model, 0.6);
    let seq = conn.set_camera(pose).await.unwrap();
    let base = frame_after(&conn, &host, seq).await;
    let base_mask = mask(&base);
    let base_px = count(&base_mask);
    assert!(
        base_px > (WIDTH * HEIGHT / 50) as usize,
        "model covers {base_px} pixels"
    );
    let root = conn.entity(model.root_entity);

    // Queries: children follow the hierarchy; bounds match the load result.
    let children = root.children().await.unwrap();
    let expected: Vec<u64> = model
        .hierarchy
        .iter()
        .filter(|h| h.parent == Some(model.root_entity))
        .map(|h| h.entity)
        .collect();
    assert_eq!(
        children.iter().map(|c| c.entity).collect::<Vec<_>>(),
        expected
    );
    let b = root.bounds().await.unwrap();
    let (wmin, wmax) = b.world.unwrap();
    assert_eq!((wmin, wmax), (model.bounds_min, model.bounds_max));
    assert_eq!(
        b.local.unwrap(),
        (wmin, wmax),
        "root has the identity transform"
    );

    // Raycast through the model's centre hits the mesh where the bounds predict.
    let centre: Vec<f32> = (0..3)
        .map(|i| (model.bounds_min[i] + model.bounds_max[i]) * 0.5)
        .collect();
    let dir: Vec<f32> = (0..3).map(|i| centre[i] - pose.position[i]).collect();
    let len = dir.iter().map(|v| v * v).sum::<f32>().sqrt();
    let dir = [dir[0] / len, dir[1] / len, dir[2] / len];
    let hits = conn
        .raycast(pose.position, dir, 1000.0, false)
        .await
        .unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].entity, mesh_entity);
    let predicted = ray_box(pose.position, dir, model.bounds_min, model.bounds_max).unwrap();
    assert!(
        (hits[0].distance - predicted).abs() < 1e-3,
        "hit at {} but the bounds predict {predicted}",
        hits[0].distance
    );
    let all = conn
        .raycast(pose.position, dir, 1000.0, true)
        .await
        .unwrap();
    assert_eq!(all.len(), 2, "in and out of the box");
    assert!(all[0].distance < all[1].distance);
    assert!(
        conn.raycast(pose.position, dir, predicted * 0.5, false)
            .await
            .unwrap()
            .is_empty(),
        "max distance respected"
    );

    // Hide → background; show again.
    let seq = root.set_visible(false).await.unwrap();
    let px = count(&mask(&frame_after(&conn, &host, seq).await));
    assert!(px < base_px / 100, "hidden model still covers {px} pixels");
    let seq = root.set_visible(true).await.unwrap();
    assert!(count(&mask(&frame_after(&conn, &host, seq).await)) > base_px * 9 / 10);
    // Hidden by state override, and a raycast no longer hits it.
    let hide = StateOverride {
        hidden: Some(true),
        ..Default::default()
    };
    let seq = root.set_state(hide).await.unwrap();
    assert!(count(&mask(&frame_after(&conn, &host, seq).await)) < base_px / 100);
    assert!(
        conn.raycast(pose.position, dir, 1000.0, false)
            .await
            .unwrap()
            .is_empty()
    );

    // Tint red → the model's pixels turn red.
    let tint = StateOverride {
        tint: Some([1.0, 0.0, 0.0, 1.0]),
        ..Default::default()
    };
    let seq = root.set_state(tint).await.unwrap();
    let red = frame_after(&conn, &host, seq).await;
    let [r, g, b] = mean_rgb(&red, &base_mask);
    assert!(
        r > 40.0 && g < 8.0 && b < 8.0,
        "tinted mean {r:.0},{g:.0},{b:.0}"
    );

    // Selected → an outline around the model in the look's outline colour (orange by default,
    // green once SetLook says so); see-through → closer to the background.
    let seq = root
        .set_state(StateOverride {
            selected: Some(true),
            ..Default::default()
        })
        .await
        .unwrap();
    let outlined = frame_after(&conn, &host, seq).await;
    let ring: Vec<bool> = mask(&outlined)
        .iter()
        .zip(&base_mask)
        .map(|(now, before)| *now && !*before)
        .collect();
    let [r, g, b] = mean_rgb(&outlined, &ring);
    assert!(
        count(&ring) > 200 && r > b + 60.0 && g > b + 20.0,
        "{} outline pixels, mean {r:.0},{g:.0},{b:.0}",
        count(&ring)
    );
    let seq = conn
        .set_look(farview_client::LookUpdate {
            outline: Some(farview_client::OutlineSettings {
                color: [0.0, 1.0, 0.0],
                width_px: 3.0,
                pulse_period_s: 0.0,
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let [r, g, b] = mean_rgb(&frame_after(&conn, &host, seq).await, &ring);
    assert!(
        g > r + 60.0 && g > b + 60.0,
        "green outline {r:.0},{g:.0},{b:.0}"
    );
    let [r0, g0, b0] = mean_rgb(&base, &base_mask);
    let seq = root
        .set_state(StateOverride {
            see_through: Some(true),
            ..Default::default()
        })
        .await
        .unwrap();
    let ghost = mean_rgb(&frame_after(&conn, &host, seq).await, &base_mask);
    let bg = background().map(f64::from);
    let dist = |c: [f64; 3]| (0..3).map(|i| (c[i] - bg[i]).abs()).sum::<f64>();
    assert!(
        dist(ghost) < dist([r0, g0, b0]) * 0.6,
        "see-through should blend towards the background"
    );
    let seq = root.set_state(StateOverride::default()).await.unwrap();
    frame_after(&conn, &host, seq).await;

    // Material override on the mesh entity: a blue base colour factor.
    let seq = conn
        .entity(mesh_entity)
        .set_material(MaterialOverride {
            base_color: Some([0.0, 0.0, 1.0, 1.0]),
            ..Default::default()
        })
        .await
        .unwrap();
    let [r, g, b] = mean_rgb(&frame_after(&conn, &host, seq).await, &base_mask);
    assert!(
        b > 4.0 * (r + g).max(1.0),
        "blue override {r:.0},{g:.0},{b:.0}"
    );
    let seq = conn
        .entity(mesh_entity)
        .set_material(MaterialOverride::default())
        .await
        .unwrap();
    frame_after(&conn, &host, seq).await;

    // Lights: a new scene has none (the environment lights it). A sun from the camera's side
    // brightens the model and removing it restores the picture; a red point light reddens it.
    assert_eq!(conn.stats().await.unwrap().lights, 0);
    let sun = Light {
        kind: LightKind::Directional,
        color: [1.0; 3],
        intensity: 3.0,
        position: [0.0; 3],
        direction: [-0.5, -0.6, -0.6],
        range: None,
    };
    let sun_id = conn.add_light(sun).await.unwrap();
    let seq = conn.update_light(sun_id, sun).await.unwrap();
    let sunlit = mean_rgb(&frame_after(&conn, &host, seq).await, &base_mask);
    assert!(
        sunlit.iter().sum::<f64>() > (r0 + g0 + b0) * 1.1,
        "a sun brightens the model: {sunlit:?} vs {r0:.0},{g0:.0},{b0:.0}"
    );
    let seq = conn.remove_light(sun_id).await.unwrap();
    let unlit = mean_rgb(&frame_after(&conn, &host, seq).await, &base_mask);
    assert!(
        (0..3).all(|i| (unlit[i] - [r0, g0, b0][i]).abs() < 2.0),
        "removing the sun restores the picture: {unlit:?} vs {r0:.0},{g0:.0},{b0:.0}"
    );
    let dark = unlit;
    let light_id = conn
        .add_light(Light {
            kind: LightKind::Point,
            color: [1.0, 0.0, 0.0],
            intensity: 40.0,
            position: pose.position,
            direction: [0.0, -1.0, 0.0],
            range: None,
        })
        .await
        .unwrap();
    let seq = conn
        .update_light(
            light_id,
            Light {
                kind: LightKind::Point,
                color: [1.0, 0.0, 0.0],
                intensity: 60.0,
                position: pose.position,
                direction: [0.0, -1.0, 0.0],
                range: None,
            },
        )
        .await
        .unwrap();
    let lit = mean_rgb(&frame_after(&conn, &host, seq).await, &base_mask);
    assert!(
        lit[0] > dark[0] + 30.0 && lit[0] > lit[1] + 30.0,
        "red light {lit:?} vs {dark:?}"
    );
    conn.remove_light(light_id).await.unwrap();
    assert_eq!(
        code(conn.remove_light(light_id).await.unwrap_err()),
        ErrorCode::LIGHT_NOT_FOUND
    );

    // A cut plane through the centre halves the covered pixels.
    let plane = conn
        .add_cut_plane(CutPlane {
            normal: [1.0, 0.0, 0.0],
            distance: centre[0],
        })
        .await
        .unwrap();
    let seq = conn
        .update_cut_plane(
            plane,
            CutPlane {
                normal: [1.0, 0.0, 0.0],
                distance: centre[0],
            },
        )
        .await
        .unwrap();
    let cut_mask = mask(&frame_after(&conn, &host, seq).await);
    let cut = count(&cut_mask);
    let ratio = cut as f64 / base_px as f64;
    // About half the box remains (less: its open interior is back-facing and culled), and what
    // remains is the -X half (left on screen from this camera).
    assert!(
        (0.2..0.7).contains(&ratio),
        "cut keeps {ratio:.2} of the pixels"
    );
    assert!(centroid_x(&cut_mask) < centroid_x(&base_mask) - 5.0);
    let seq = conn.remove_cut_plane(plane).await.unwrap();
    assert!(count(&mask(&frame_after(&conn, &host, seq).await)) > base_px * 9 / 10);

    // Reparent under a group, then move the group: the model moves with it.
    let size = model.bounds_max[0] - model.bounds_min[0];
    let group = conn
        .create_entity(None, Some("group"), EntityTransform::IDENTITY)
        .await
        .unwrap();
    root.reparent(Some(group.id()), true).await.unwrap();
    assert_eq!(group.children().await.unwrap()[0].entity, model.root_entity);
    let seq = group
        .set_transform(EntityTransform::at([size * 0.5, 0.0, 0.0]))
        .await
        .unwrap();
    let moved = mask(&frame_after(&conn, &host, seq).await);
    assert!(
        centroid_x(&moved) > centroid_x(&base_mask) + 5.0,
        "moved right: {} -> {}",
        centroid_x(&base_mask),
        centroid_x(&moved)
    );
    let b = root.bounds().await.unwrap().world.unwrap();
    assert!((b.0[0] - (model.bounds_min[0] + size * 0.5)).abs() < 1e-4);
    assert_eq!(
        code(
            group
                .reparent(Some(model.root_entity), false)
                .await
                .unwrap_err()
        ),
        ErrorCode::WOULD_CYCLE
    );

    // Statistics, then destroy frees the model's triangles and GPU memory.
    let before = conn.stats().await.unwrap();
    assert_eq!(before.triangles, model.triangles);
    assert_eq!(before.models, 1);
    let removed = group.destroy().await.unwrap();
    assert_eq!(removed, u64::from(model.entities) + 1);
    let after = conn.stats().await.unwrap();
    assert_eq!((after.triangles, after.models), (0, 0));
    assert_eq!(after.entities, before.entities - removed);
    assert!(after.gpu_bytes < before.gpu_bytes, "GPU memory freed");
    // A destroyed entity is a typed error, and the stream goes on.
    assert_eq!(
        code(root.set_visible(true).await.unwrap_err()),
        ErrorCode::ENTITY_NOT_FOUND
    );
    assert_eq!(
        code(
            conn.set_transforms(vec![TransformUpdate {
                entity: 1_000_000,
                transform: EntityTransform::IDENTITY,
            }])
            .await
            .unwrap_err()
        ),
        ErrorCode::ENTITY_NOT_FOUND
    );
    let bad = EntityTransform {
        position: [f32::NAN, 0.0, 0.0],
        ..EntityTransform::IDENTITY
    };
    let e = conn.create_entity(None, None, bad).await.unwrap_err();
    assert_eq!(code(e), ErrorCode::INVALID_ARGUMENT);
    conn.next_frame().await.unwrap();
    host.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loads_share_assets_upload_report_progress_and_cancel() {
    let assets = tempfile::tempdir().unwrap();
    // A generated ~1M-triangle model (the corpus has nothing that large), and the repo's Fox.
    std::fs::write(
        assets.path().join("grid.glb"),
        farview_scene::synthetic::grid_glb(708),
    )
    .unwrap();
    std::fs::copy(
        repo_root().join("assets/Fox/Fox.glb"),
        assets.path().join("Fox.glb"),
    )
    .unwrap();
    std::fs::write(
        assets.path().join("external.gltf"),
        std::fs::read(repo_root().join("assets/BoxTextured/BoxTextured.gltf")).unwrap(),
    )
    .unwrap();
    let root = assets.path().to_path_buf();
    let host = TestHost::start_with(move |c| c.assets_root = root).await;
    let conn = host.connect().await;

    // The same file twice: the second load shares the first's assets.
    let a = conn.load_model("Fox.glb").await.unwrap();
    let b = conn.load_model("Fox.glb").await.unwrap();
    assert!(!a.shared_assets && b.shared_assets);
    assert_eq!(a.triangles, b.triangles);
    assert_ne!(a.root_entity, b.root_entity);
    assert_eq!(
        a.animations.len(),
        3,
        "Fox has three animations: {:?}",
        a.animations
    );
    assert_eq!(a.skins, 1);
    let s = conn.stats().await.unwrap();
    assert_eq!((s.models, s.triangles), (1, a.triangles * 2));

    // Uploaded bytes load like a file.
    let bytes = std::fs::read(assets.path().join("Fox.glb")).unwrap();
    let up = conn.upload_model("uploaded fox", &bytes).await.unwrap();
    assert_eq!(up.triangles, a.triangles);
    assert_eq!(conn.stats().await.unwrap().models, 2);
    // An upload cannot reach the host's files through external URIs.
    let gltf = std::fs::read(assets.path().join("external.gltf")).unwrap();
    let e = conn.upload_model("external", &gltf).await.unwrap_err();
    assert_eq!(code(e), ErrorCode::MODEL_PATH_FORBIDDEN);
    let e = conn.upload_model("junk", b"not a model").await.unwrap_err();
    assert_eq!(code(e), ErrorCode::MODEL_MALFORMED);

    // A large load reports progress; requests behind it wait and then apply in order.
    let progress = conn.load_progress();
    let t = Instant::now();
    let load = conn.begin_load("grid.glb").await.unwrap();
    let pinged = conn.ping().await.unwrap();
    assert!(
        pinged < Duration::from_secs(1),
        "pings answer during a load"
    );
    let grid = load.finish().await.unwrap();
    assert!(grid.triangles > 1_000_000);
    let p = *progress.borrow();
    assert_eq!(p.percent, 100);
    eprintln!("1M-triangle load took {:?}", t.elapsed());

    // Cancel: a fresh file (not shared) started and cancelled at once ends as cancelled and
    // adds nothing to the scene.
    std::fs::copy(
        assets.path().join("grid.glb"),
        assets.path().join("grid2.glb"),
    )
    .unwrap();
    let before = conn.stats().await.unwrap();
    let load = conn.begin_load("grid2.glb").await.unwrap();
    load.cancel().await.unwrap();
    let e = load.finish().await.unwrap_err();
    assert_eq!(code(e), ErrorCode::LOAD_CANCELLED);
    let after = conn.stats().await.unwrap();
    assert_eq!(
        (after.models, after.triangles),
        (before.models, before.triangles)
    );
    host.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_transform_updates_a_second_keep_frames_flowing() {
    let host = TestHost::start().await;
    let conn = host.connect().await;
    let model = conn.load_model(MODEL).await.unwrap();
    conn.set_camera(framing_pose(&model, 0.6)).await.unwrap();
    // Requests and frames go through one connection from two tasks, as an app would.
    let conn = std::sync::Arc::new(conn);
    let sender = {
        let conn = conn.clone();
        let root = model.root_entity;
        tokio::spawn(async move {
            let (tx, mut rx) = tokio::sync::mpsc::channel(4096);
            let waiter = tokio::spawn(async move {
                let mut ok = 0u64;
                let mut last = 0;
                while let Some(p) = rx.recv().await {
                    let p: farview_client::PendingReply = p;
                    assert!(p.seq() > last, "replies in order");
                    last = p.seq();
                    p.reply().await.unwrap();
                    ok += 1;
                }
                ok
            });
            let start = Instant::now();
            let mut sent = 0u64;
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            while start.elapsed() < Duration::from_secs(10) {
                tick.tick().await;
                // Ten updates per 10 ms tick: 1,000 a second.
                for _ in 0..10 {
                    let x = (sent as f32 * 0.01).sin() * 0.2;
                    let pending = conn
                        .submit_transforms(vec![TransformUpdate {
                            entity: root,
                            transform: EntityTransform::at([x, 0.0, 0.0]),
                        }])
                        .await
                        .unwrap();
                    tx.send(pending).await.unwrap();
                    sent += 1;
                }
            }
            drop(tx);
            (sent, waiter.await.unwrap(), start.elapsed())
        })
    };
    let mut frames = 0u64;
    let mut last_seq = 0;
    let reader_start = Instant::now();
    while !sender.is_finished() {
        let f = tokio::time::timeout(Duration::from_secs(2), conn.next_frame())
            .await
            .expect("frames keep flowing")
            .unwrap();
        assert!(f.header.last_command_seq >= last_seq);
        last_seq = f.header.last_command_seq;
        frames += 1;
    }
    let (sent, answered, took) = sender.await.unwrap();
    let secs = reader_start.elapsed().as_secs_f64();
    eprintln!("{sent} updates in {took:?}, {answered} replies, {frames} frames in {secs:.1} s");
    assert_eq!(answered, sent, "every reply arrives");
    assert!(sent as f64 / took.as_secs_f64() > 900.0, "sent at ~1,000/s");
    assert!(
        frames as f64 / secs > 20.0,
        "frames flow at {:.1}/s against a 30 fps target",
        frames as f64 / secs
    );
    host.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_capped_by_the_session_size() {
    let host = TestHost::start_with(|c| {
        c.sessions.api_keys = vec!["k".into()];
        let s = c.sessions.sizes.get_mut("standard").unwrap();
        (s.width, s.height, s.fps, s.max_upload_bytes) = (WIDTH, HEIGHT, 30.0, 100_000);
    })
    .await;
    let api = farview_client::SessionClient::new(&format!("http://{}", host.handle.http_addr), "k")
        .unwrap();
    let s = api
        .create_session(&farview_client::CreateSession::new("0:10:0", "standard"))
        .await
        .unwrap();
    let s = api
        .session(&s.id)
        .wait_ready(Duration::from_secs(60))
        .await
        .unwrap();
    let conn = api.connect(&s).await.unwrap();
    // Sessions start with the configured look.
    let look = conn.look().await.unwrap();
    assert_eq!(
        (look.environment.as_str(), look.background),
        ("neutral_sky", [0.0331; 3])
    );
    let fox = std::fs::read(repo_root().join("assets/Fox/Fox.glb")).unwrap();
    assert!(fox.len() > 100_000);
    let e = conn.upload_model("fox", &fox).await.unwrap_err();
    match e {
        ClientError::Host(w) => {
            assert_eq!(w.code, ErrorCode::UPLOAD_NOT_FOUND);
            assert!(w.message.contains("exceeds"), "{}", w.message);
        }
        other => panic!("{other:?}"),
    }
    // The connection and stream carry on; a small upload still loads.
    let tiny = farview_scene::synthetic::grid_glb(4);
    let m = conn.upload_model("tiny", &tiny).await.unwrap();
    assert_eq!(m.triangles, 32);
    conn.next_frame().await.unwrap();
    host.handle.shutdown().await;
}
