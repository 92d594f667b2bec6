//! Colour conversion (RGBA → I420, BT.709) and H.264 encode per frame at 1280x720 and 1920x1080,
//! on a real
//! rendered frame of the asset model so the encoder sees realistic content.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs, non_snake_case)]

use criterion::{Criterion, criterion_group, criterion_main};
use farview_benches::{framing_camera, scene_with};
use farview_encode::{EncoderSettings, I420Frame, OpenH264Encoder, VideoEncoder, rgba_to_i420};
use farview_render::{AdapterChoice, FrameRenderer, GpuContext, Lighting};

/// Frames of a slow orbit, rendered once up front.
fn rendered_frames(n: usize, W: u32, H: u32) -> Vec<Vec<u8>> {
    let (scene, info) = scene_with("Fox/Fox.glb").unwrap();
    let gpu = GpuContext::new(AdapterChoice::Auto).unwrap();
    let mut r = FrameRenderer::new(&gpu, W, H, Lighting::default()).unwrap();
    let base = framing_camera(&info);
    (0..n)
        .map(|i| {
            let mut cam = base;
            let angle = i as f32 * 0.02;
            cam.position = glam::Quat::from_rotation_y(angle)
                * (base.position - info.bounds.center())
                + info.bounds.center();
            cam.rotation = glam::Quat::from_rotation_y(angle) * base.rotation;
            r.render_blocking(&scene, &cam).unwrap()
        })
        .collect()
}

fn encode(c: &mut Criterion) {
    for (w, h) in [(1280, 720), (1920, 1080)] {
        encode_at(c, w, h);
    }
}

#[allow(non_snake_case)]
fn encode_at(c: &mut Criterion, W: u32, H: u32) {
    let frames = rendered_frames(30, W, H);
    let mut group = c.benchmark_group(format!("encode_{W}x{H}"));
    group.sample_size(30);
    let mut i420 = I420Frame::new(W, H).unwrap();
    group.bench_function("rgba_to_i420", |b| {
        b.iter(|| rgba_to_i420(&frames[0], W as usize * 4, &mut i420).unwrap())
    });

    let yuv: Vec<I420Frame> = frames
        .iter()
        .map(|f| {
            let mut y = I420Frame::new(W, H).unwrap();
            rgba_to_i420(f, W as usize * 4, &mut y).unwrap();
            y
        })
        .collect();
    let settings = EncoderSettings {
        width: W,
        height: H,
        bitrate_bps: 8_000_000,
        max_fps: 60.0,
        ..Default::default()
    };
    let mut enc = OpenH264Encoder::new(settings.clone()).unwrap();
    let mut k = 0usize;
    group.bench_function("openh264_p_frame", |b| {
        b.iter(|| {
            k += 1;
            enc.encode(&yuv[k % yuv.len()], false).unwrap()
        })
    });
    // Several slices with two threads: whether openh264 gains from the second core.
    let mut sliced = OpenH264Encoder::new(EncoderSettings {
        threads: 2,
        max_slice_bytes: Some(16_000),
        ..settings.clone()
    })
    .unwrap();
    group.bench_function("openh264_p_frame_2_threads_16k_slices", |b| {
        b.iter(|| {
            k += 1;
            sliced.encode(&yuv[k % yuv.len()], false).unwrap()
        })
    });
    group.bench_function("openh264_idr_frame", |b| {
        b.iter(|| {
            k += 1;
            enc.encode(&yuv[k % yuv.len()], true).unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, encode);
criterion_main!(benches);
