//! The look (environment, background, exposure, tone mapping), framing and material variants
//! end to end: requests over real QUIC, their effect checked in the frames the host rendered
//! (frame tap) or in the stream as ffmpeg decodes it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::io::Write;

use common::*;
use farview_client::{
    ClientError, Connection, ErrorCode, LookUpdate, OutlineSettings, StateOverride, ToneMapping,
};

fn code(e: ClientError) -> ErrorCode {
    match e {
        ClientError::Host(w) => w.code,
        other => panic!("expected a host error, got {other:?}"),
    }
}

fn message(e: ClientError) -> (ErrorCode, String) {
    match e {
        ClientError::Host(w) => (w.code, w.message),
        other => panic!("expected a host error, got {other:?}"),
    }
}

/// The first keyframe that reflects command `seq`, decoded by ffmpeg to RGBA.
async fn decoded_after(conn: &Connection, seq: u64) -> Vec<u8> {
    // Ask for the keyframe once frames show the change, so the keyframe carries it.
    while conn.next_frame().await.unwrap().header.last_command_seq < seq {}
    conn.request_keyframe().await.unwrap();
    let frame = loop {
        let f = conn.next_frame().await.unwrap();
        if f.header.keyframe && f.header.last_command_seq >= seq {
            break f;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key.h264");
    std::fs::File::create(&path)
        .unwrap()
        .write_all(&frame.data)
        .unwrap();
    let mut frames = ffmpeg_decode_rgba(&path, WIDTH, HEIGHT);
    assert_eq!(frames.len(), 1);
    frames.remove(0)
}

/// A linear colour as the sRGB target stores it, 0..=255.
fn srgb8(linear: [f32; 3]) -> [u8; 3] {
    linear.map(|c| {
        let s = if c <= 0.003_130_8 {
            c * 12.92
        } else {
            1.055 * c.powf(1.0 / 2.4) - 0.055
        };
        (s * 255.0).round() as u8
    })
}

fn pixel(rgba: &[u8], x: u32, y: u32) -> [u8; 3] {
    let i = ((y * WIDTH + x) * 4) as usize;
    [rgba[i], rgba[i + 1], rgba[i + 2]]
}

/// The four corners, 4 pixels in (clear of any edge effect of the codec).
fn corners(rgba: &[u8]) -> [[u8; 3]; 4] {
    let (r, b) = (WIDTH - 5, HEIGHT - 5);
    [
        pixel(rgba, 4, 4),
        pixel(rgba, r, 4),
        pixel(rgba, 4, b),
        pixel(rgba, r, b),
    ]
}

fn close_to(a: [u8; 3], b: [u8; 3], tolerance: i32) -> bool {
    (0..3).all(|i| (i32::from(a[i]) - i32::from(b[i])).abs() <= tolerance)
}

/// Pixels that differ from `bg` by more than 12 in some channel.
fn mask(rgba: &[u8], bg: [u8; 3]) -> Vec<bool> {
    rgba.chunks_exact(4)
        .map(|p| (0..3).any(|i| (i32::from(p[i]) - i32::from(bg[i])).abs() > 12))
        .collect()
}

fn count(mask: &[bool]) -> usize {
    mask.iter().filter(|m| **m).count()
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

/// Mean absolute difference per channel over the pixels of `mask`.
fn mean_abs_diff(a: &[u8], b: &[u8], mask: &[bool]) -> f64 {
    let (mut sum, mut n) = (0f64, 0f64);
    for ((p, q), &m) in a.chunks_exact(4).zip(b.chunks_exact(4)).zip(mask) {
        if m {
            sum += (0..3)
                .map(|i| (f64::from(p[i]) - f64::from(q[i])).abs())
                .sum::<f64>()
                / 3.0;
            n += 1.0;
        }
    }
    sum / n.max(1.0)
}

/// Centre of the pixels of `mask`, as fractions of the frame's width and height.
fn centroid(mask: &[bool]) -> (f64, f64) {
    let (mut x, mut y, mut n) = (0f64, 0f64, 0f64);
    for (i, &m) in mask.iter().enumerate() {
        if m {
            x += (i % WIDTH as usize) as f64;
            y += (i / WIDTH as usize) as f64;
            n += 1.0;
        }
    }
    (
        x / n.max(1.0) / f64::from(WIDTH),
        y / n.max(1.0) / f64::from(HEIGHT),
    )
}

/// The configured default background (the Sample Viewer's grey) as stored.
fn default_background() -> [u8; 3] {
    srgb8([0.0331; 3])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_look_changes_background_exposure_and_tone_mapping() {
    require_ffmpeg();
    // An environments directory with a copy of the sky under another name, and a broken file.
    let envs = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo_root().join("assets/environments/neutral_sky.hdr"),
        envs.path().join("studio.hdr"),
    )
    .unwrap();
    std::fs::write(envs.path().join("broken.hdr"), b"#?RADIANCE\nnot an image").unwrap();
    let dir = envs.path().to_path_buf();
    let host = TestHost::start_with(move |c| c.render.environments_dir = Some(dir)).await;
    let conn = host.connect().await;

    // Sessions start with the configured look.
    let start = conn.look().await.unwrap();
    assert_eq!(start.environment, "neutral_sky");
    assert_eq!(start.background, [0.0331; 3]);
    assert_eq!(start.tone_mapping, ToneMapping::KhrPbrNeutral);
    assert_eq!((start.exposure, start.show_environment), (1.0, false));

    let model = conn.load_model(MODEL).await.unwrap();
    let seq = conn.set_camera(framing_pose(&model, 0.6)).await.unwrap();
    let base = frame_after(&conn, &host, seq).await;
    let model_px = mask(&base, default_background());
    assert!(
        count(&model_px) > (WIDTH * HEIGHT / 50) as usize,
        "the model covers {} pixels",
        count(&model_px)
    );
    assert!(
        corners(&base)
            .iter()
            .all(|c| close_to(*c, default_background(), 1))
    );

    // Background: the decoded stream's corners take the colour.
    let background = [0.8, 0.2, 0.05];
    let seq = conn
        .set_look(LookUpdate {
            background: Some(background),
            ..LookUpdate::default()
        })
        .await
        .unwrap();
    let decoded = decoded_after(&conn, seq).await;
    let want = srgb8(background);
    for c in corners(&decoded) {
        assert!(close_to(c, want, 6), "corner {c:?}, want {want:?}");
    }
    assert_eq!(conn.look().await.unwrap().background, background);

    // Exposure 2 brightens the model.
    let seq = conn
        .set_look(LookUpdate {
            exposure: Some(2.0),
            ..LookUpdate::default()
        })
        .await
        .unwrap();
    let bright = frame_after(&conn, &host, seq).await;
    let [r0, g0, b0] = mean_rgb(&base, &model_px);
    let [r, g, b] = mean_rgb(&bright, &model_px);
    eprintln!("model mean at exposure 1: {r0:.0},{g0:.0},{b0:.0}; at 2: {r:.0},{g:.0},{b:.0}");
    assert!(
        r + g + b > (r0 + g0 + b0) * 1.15,
        "exposure 2 should brighten the model"
    );

    // Tone mapping: clamping only differs from Khronos PBR Neutral.
    let seq = conn
        .set_look(LookUpdate {
            tone_mapping: Some(ToneMapping::None),
            ..LookUpdate::default()
        })
        .await
        .unwrap();
    let clamped = frame_after(&conn, &host, seq).await;
    let diff = mean_abs_diff(&bright, &clamped, &model_px);
    eprintln!("tone mapping none vs neutral: mean difference {diff:.1} over the model");
    assert!(
        diff > 4.0,
        "tone mapping none looks like neutral ({diff:.1})"
    );
    let look = conn.look().await.unwrap();
    assert_eq!(look.tone_mapping, ToneMapping::None);
    assert_eq!(look.exposure, 2.0);

    // An unknown environment: a typed error naming what there is; nothing changes, frames flow.
    let (c, m) = message(
        conn.set_look(LookUpdate {
            environment: Some("no_such_sky".into()),
            exposure: Some(1.0),
            ..LookUpdate::default()
        })
        .await
        .unwrap_err(),
    );
    assert_eq!(c, ErrorCode::ENVIRONMENT_NOT_FOUND);
    for name in ["studio", "neutral_sky", "none"] {
        assert!(m.contains(name), "{name} not listed in: {m}");
    }
    assert!(!m.contains("broken.hdr") && !m.contains(&*envs.path().to_string_lossy()));
    assert_eq!(conn.look().await.unwrap(), look);
    conn.next_frame().await.unwrap();

    // A file that is not an image: a typed error too.
    let e = conn
        .set_look(LookUpdate {
            environment: Some("broken".into()),
            ..LookUpdate::default()
        })
        .await
        .unwrap_err();
    assert_eq!(code(e), ErrorCode::ENVIRONMENT_INVALID);

    // Out-of-range values are refused and change nothing.
    let bad = [
        LookUpdate {
            exposure: Some(f32::NAN),
            ..LookUpdate::default()
        },
        LookUpdate {
            background: Some([2.0, 0.0, 0.0]),
            ..LookUpdate::default()
        },
        LookUpdate {
            outline: Some(OutlineSettings {
                color: [1.0, 0.5, 0.0],
                width_px: 100.0,
                pulse_period_s: 0.0,
            }),
            ..LookUpdate::default()
        },
        LookUpdate {
            environment: Some("../assets/environments/neutral_sky".into()),
            ..LookUpdate::default()
        },
    ];
    for update in bad {
        let e = conn.set_look(update.clone()).await.unwrap_err();
        assert_eq!(code(e), ErrorCode::INVALID_ARGUMENT, "{update:?}");
    }
    assert_eq!(conn.look().await.unwrap(), look);

    // Another environment from the directory (prefiltered while frames keep coming), then
    // none at all; each is reported by name.
    let seq = conn
        .set_look(LookUpdate {
            environment: Some("studio".into()),
            ..LookUpdate::default()
        })
        .await
        .unwrap();
    frame_after(&conn, &host, seq).await;
    assert_eq!(conn.look().await.unwrap().environment, "studio");
    let seq = conn
        .set_look(LookUpdate {
            environment: Some("none".into()),
            ..LookUpdate::default()
        })
        .await
        .unwrap();
    frame_after(&conn, &host, seq).await;
    assert_eq!(conn.look().await.unwrap().environment, "none");
    conn.close().await;
    host.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fit_view_frames_the_model_in_the_middle_of_the_picture() {
    let host = TestHost::start().await;
    let conn = host.connect().await;

    // Nothing to frame yet.
    let e = conn.fit_view(None, None).await.unwrap_err();
    assert_eq!(code(e), ErrorCode::NOTHING_TO_FRAME);
    let model = conn.load_model(MODEL).await.unwrap();
    assert_eq!(
        code(conn.fit_view(Some(1 << 40), None).await.unwrap_err()),
        ErrorCode::ENTITY_NOT_FOUND
    );
    assert_eq!(
        code(
            conn.fit_view(None, Some([0.0, 0.0, 0.0]))
                .await
                .unwrap_err()
        ),
        ErrorCode::INVALID_ARGUMENT
    );
    let empty = conn
        .create_entity(
            None,
            Some("empty"),
            farview_client::EntityTransform::IDENTITY,
        )
        .await
        .unwrap();
    assert_eq!(
        code(empty.fit_view(None).await.unwrap_err()),
        ErrorCode::NOTHING_TO_FRAME
    );

    let centre: Vec<f32> = (0..3)
        .map(|i| (model.bounds_min[i] + model.bounds_max[i]) * 0.5)
        .collect();
    for (entity, direction) in [
        (None, None),
        (Some(model.root_entity), Some([1.0, 0.2, 0.3])),
    ] {
        let (seq, reply) = conn
            .request(farview_client::Request::FitView { entity, direction })
            .await
            .unwrap();
        let farview_client::Reply::CameraFitted(pose) = reply else {
            panic!("{reply:?}");
        };
        assert!(pose.validate().is_ok(), "{pose:?}");
        assert!((pose.fov_y - 45f32.to_radians()).abs() < 1e-5, "fov kept");
        // Seen from the side asked for.
        let d = direction.unwrap_or(farview_client::FIT_VIEW_DIRECTION);
        let from: Vec<f32> = (0..3).map(|i| pose.position[i] - centre[i]).collect();
        assert!(
            (0..3).map(|i| from[i] * d[i]).sum::<f32>() > 0.0,
            "{from:?} vs {d:?}"
        );
        let frame = frame_after(&conn, &host, seq).await;
        let m = mask(&frame, default_background());
        let fraction = count(&m) as f64 / f64::from(WIDTH * HEIGHT);
        let (cx, cy) = centroid(&m);
        eprintln!(
            "fit {entity:?} {direction:?}: {:.1}% of the picture, centre ({cx:.2}, {cy:.2})",
            fraction * 100.0
        );
        assert!(
            (0.05..0.9).contains(&fraction),
            "the model covers {:.1}% of the picture",
            fraction * 100.0
        );
        assert!(
            (cx - 0.5).abs() < 0.1 && (cy - 0.5).abs() < 0.1,
            "the model's centre is at ({cx:.2}, {cy:.2})"
        );
    }
    conn.close().await;
    host.handle.shutdown().await;
}

/// Standard base64 with padding (the test writes data URIs without another dependency).
fn base64(bytes: &[u8]) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A 1 x 1 quad facing +Z whose material is red, with `KHR_materials_variants` "crimson" (red)
/// and "navy" (blue); all buffers are data URIs.
fn variants_gltf() -> Vec<u8> {
    let positions: [[f32; 3]; 4] = [
        [-0.5, -0.5, 0.0],
        [0.5, -0.5, 0.0],
        [0.5, 0.5, 0.0],
        [-0.5, 0.5, 0.0],
    ];
    let mut bin = Vec::new();
    for p in positions {
        for v in p {
            bin.extend_from_slice(&v.to_le_bytes());
        }
    }
    for _ in 0..4 {
        for v in [0f32, 0.0, 1.0] {
            bin.extend_from_slice(&v.to_le_bytes());
        }
    }
    for i in [0u16, 1, 2, 0, 2, 3] {
        bin.extend_from_slice(&i.to_le_bytes());
    }
    let json = serde_json::json!({
        "asset": { "version": "2.0" },
        "extensionsUsed": ["KHR_materials_variants"],
        "extensions": { "KHR_materials_variants": {
            "variants": [{ "name": "crimson" }, { "name": "navy" }]
        }},
        "scene": 0,
        "scenes": [{ "nodes": [0] }],
        "nodes": [{ "mesh": 0, "name": "quad" }],
        "meshes": [{ "primitives": [{
            "attributes": { "POSITION": 0, "NORMAL": 1 },
            "indices": 2,
            "material": 0,
            "extensions": { "KHR_materials_variants": { "mappings": [
                { "material": 0, "variants": [0] },
                { "material": 1, "variants": [1] }
            ]}}
        }]}],
        "materials": [
            { "name": "red", "doubleSided": true, "pbrMetallicRoughness": {
                "baseColorFactor": [1.0, 0.0, 0.0, 1.0], "metallicFactor": 0.0, "roughnessFactor": 0.8 } },
            { "name": "blue", "doubleSided": true, "pbrMetallicRoughness": {
                "baseColorFactor": [0.0, 0.0, 1.0, 1.0], "metallicFactor": 0.0, "roughnessFactor": 0.8 } }
        ],
        "buffers": [{
            "byteLength": bin.len(),
            "uri": format!("data:application/octet-stream;base64,{}", base64(&bin))
        }],
        "bufferViews": [
            { "buffer": 0, "byteOffset": 0, "byteLength": 48 },
            { "buffer": 0, "byteOffset": 48, "byteLength": 48 },
            { "buffer": 0, "byteOffset": 96, "byteLength": 12 }
        ],
        "accessors": [
            { "bufferView": 0, "componentType": 5126, "count": 4, "type": "VEC3",
              "min": [-0.5, -0.5, 0.0], "max": [0.5, 0.5, 0.0] },
            { "bufferView": 1, "componentType": 5126, "count": 4, "type": "VEC3" },
            { "bufferView": 2, "componentType": 5123, "count": 6, "type": "SCALAR" }
        ]
    });
    serde_json::to_vec_pretty(&json).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn material_variants_switch_the_drawn_material() {
    require_ffmpeg();
    let assets = tempfile::tempdir().unwrap();
    std::fs::write(assets.path().join("variants.gltf"), variants_gltf()).unwrap();
    let root = assets.path().to_path_buf();
    // The assets root has no environments directory: the built-in neutral sky lights it.
    let host = TestHost::start_with(move |c| c.assets_root = root).await;
    let conn = host.connect().await;
    let model = conn.load_model("variants.gltf").await.unwrap();
    assert_eq!(model.variants, ["crimson", "navy"]);
    // A second instance shares the assets and reports the same variants.
    let again = conn.load_model("variants.gltf").await.unwrap();
    assert!(again.shared_assets);
    assert_eq!(again.variants, model.variants);
    conn.entity(again.root_entity).destroy().await.unwrap();
    let fitted = conn.fit_view(Some(model.root_entity), None).await.unwrap();
    assert!(fitted.validate().is_ok());

    let quad = conn.entity(model.root_entity);
    let colours = [(Some(1), "navy"), (None, "default"), (Some(0), "crimson")];
    let mut means = Vec::new();
    for (variant, name) in colours {
        let seq = quad.set_variant(variant).await.unwrap();
        let decoded = decoded_after(&conn, seq).await;
        let m = mask(&decoded, default_background());
        assert!(
            count(&m) as u32 > WIDTH * HEIGHT / 20,
            "{name}: quad not in view"
        );
        let [r, g, b] = mean_rgb(&decoded, &m);
        eprintln!("{name}: {r:.0},{g:.0},{b:.0}");
        means.push([r, g, b]);
    }
    let [navy, default, crimson] = [means[0], means[1], means[2]];
    assert!(navy[2] > navy[0] + 40.0, "variant 1 is blue: {navy:?}");
    assert!(
        default[0] > default[2] + 40.0,
        "no variant is red: {default:?}"
    );
    assert!(
        crimson[0] > crimson[2] + 40.0,
        "variant 0 is red: {crimson:?}"
    );
    // Inherited by the subtree: the mesh child under the root draws the variant; a variant the
    // model does not have draws the default material.
    let seq = quad
        .set_state(StateOverride {
            variant: Some(7),
            ..StateOverride::default()
        })
        .await
        .unwrap();
    let m = frame_after(&conn, &host, seq).await;
    let [r, _, b] = mean_rgb(&m, &mask(&m, default_background()));
    assert!(
        r > b + 40.0,
        "an unknown variant draws the default: {r:.0} {b:.0}"
    );
    conn.close().await;
    host.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_start_with_the_configured_look_and_a_missing_default_stops_the_host() {
    let host = TestHost::start_with(|c| {
        c.render.environment = "none".into();
        c.render.background = [0.5, 0.25, 0.0];
        c.render.tone_mapping = farview_host::ToneMappingChoice::Aces;
        c.render.exposure = 2.0;
        c.render.show_environment = true;
    })
    .await;
    let conn = host.connect().await;
    let look = conn.look().await.unwrap();
    assert_eq!(look.environment, "none");
    assert_eq!(look.background, [0.5, 0.25, 0.0]);
    assert_eq!(look.tone_mapping, ToneMapping::AcesFilmic);
    assert_eq!((look.exposure, look.show_environment), (2.0, true));
    conn.close().await;
    host.handle.shutdown().await;

    // A configured environment with no file: the host refuses to start, naming the path.
    let data = tempfile::tempdir().unwrap();
    let envs = tempfile::tempdir().unwrap();
    let mut config = farview_host::Config {
        data_dir: data.path().to_path_buf(),
        quic_addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        assets_root: repo_root().join("assets"),
        ..farview_host::Config::default()
    };
    config.render.environment = "studio".into();
    config.render.environments_dir = Some(envs.path().to_path_buf());
    let options = farview_host::HostOptions {
        gpu: Some(gpu()),
        ..farview_host::HostOptions::default()
    };
    let e = farview_host::start(config.clone(), options.clone())
        .await
        .unwrap_err();
    let want = envs.path().join("studio.hdr");
    assert!(
        e.to_string().contains(&*want.to_string_lossy()),
        "the error names the file: {e}"
    );
    // A file that is not an image stops it too.
    std::fs::write(&want, b"not a radiance file").unwrap();
    let e = farview_host::start(config, options).await.unwrap_err();
    assert!(
        matches!(e, farview_host::HostError::Environment { .. }),
        "{e}"
    );
}
