//! Render + readback per frame at 1280x720 for the asset model, on each software rasterizer this
//! machine has (Mesa llvmpipe through GL/EGL, lavapipe through Vulkan), and on a GPU if present.
//! This is the measurement behind the software default in `AdapterChoice::Auto`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use farview_benches::{framing_camera, scene_with};
use farview_render::{AdapterChoice, FrameRenderer, GpuContext, Lighting};

fn render(c: &mut Criterion) {
    let (scene, info) = scene_with("Fox/Fox.glb").unwrap();
    let camera = framing_camera(&info);
    let mut group = c.benchmark_group("render_readback_1280x720_fox");
    group.sample_size(30);
    for choice in [
        AdapterChoice::Gl,
        AdapterChoice::Vulkan,
        AdapterChoice::Hardware,
    ] {
        let Ok(gpu) = GpuContext::new(choice) else {
            eprintln!("no {choice} adapter here; skipped");
            continue;
        };
        let mut r = FrameRenderer::new(&gpu, 1280, 720, Lighting::default()).unwrap();
        let mut buf = Vec::new();
        let name = format!("{choice}: {}", gpu.info().name);
        // Latency path: submit a frame and wait for its pixels.
        group.bench_function(format!("{name} submit+wait"), |b| {
            b.iter(|| {
                r.submit(&scene, &camera, 0).unwrap();
                r.collect(true, &mut buf).unwrap().unwrap();
            })
        });
        // Throughput path: keep one frame in flight while the previous one is copied out.
        r.submit(&scene, &camera, 0).unwrap();
        group.bench_function(format!("{name} pipelined"), |b| {
            b.iter(|| {
                r.submit(&scene, &camera, 0).unwrap();
                r.collect(true, &mut buf).unwrap().unwrap();
            })
        });
        r.collect(true, &mut buf).unwrap();
    }
    group.finish();
}

criterion_group!(benches, render);
criterion_main!(benches);
