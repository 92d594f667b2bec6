//! Render + readback per frame at 1280x720 and 1920x1080 for the asset model, on each software rasterizer this
//! machine has (Mesa llvmpipe through GL/EGL, lavapipe through Vulkan), and on a GPU if present.
//! This is the measurement behind the software default in `AdapterChoice::Auto`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use farview_benches::{framing_camera, scene_with};
use farview_render::{AdapterChoice, FrameRenderer, GpuContext, Lighting};

fn render(c: &mut Criterion) {
    let (scene, info) = scene_with("Fox/Fox.glb").unwrap();
    bench_model(c, "render_readback_fox", &scene, &info);
    // A heavy model from the shared corpus, when present (46k triangles, 2k textures).
    let corpus = std::env::var_os("FARVIEW_CORPUS").map_or_else(
        || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus"),
        Into::into,
    );
    let helmet = "khronos/DamagedHelmet/glTF-Binary/DamagedHelmet.glb";
    match farview_scene::import_file(&corpus, helmet, &farview_scene::ImportLimits::default()) {
        Ok(model) => {
            let mut scene = farview_scene::Scene::default();
            let info = scene.add_model("helmet", model).unwrap();
            bench_model(c, "render_readback_damaged_helmet", &scene, &info);
        }
        Err(e) => eprintln!("skipping DamagedHelmet: {e} (set FARVIEW_CORPUS)"),
    }
}

/// Inside the generated 1,000-tree forest at head height (most trees behind or beside the
/// camera): a frame with frustum culling against one that submits every draw (issue #15).
fn forest_culling(c: &mut Criterion) {
    let glb = farview_scene::synthetic::forest_glb(1000);
    let model =
        farview_scene::synthetic::import(&glb, &farview_scene::ImportLimits::default()).unwrap();
    let mut scene = farview_scene::Scene::default();
    scene.add_model("forest", model).unwrap();
    let camera = farview_render::Camera::looking_at(
        glam::Vec3::new(0.0, 1.6, 2.0),
        glam::Vec3::new(0.0, 0.8, -10.0),
        60f32.to_radians(),
        0.1,
        200.0,
    );
    let gpu = GpuContext::new(AdapterChoice::Auto).unwrap();
    let mut r = FrameRenderer::new(&gpu, 1280, 720, Lighting::default()).unwrap();
    r.upload_missing(&scene).unwrap();
    let mut group = c.benchmark_group("forest_walk_720p");
    group.sample_size(20);
    let mut buf = Vec::new();
    for culling in [true, false] {
        r.set_frustum_culling(culling);
        r.submit(&scene, &camera, 0).unwrap();
        r.collect(true, &mut buf).unwrap().unwrap();
        let s = r.stats();
        eprintln!(
            "forest, culling {culling}: {} draws, {} triangles, {} culled",
            s.draws, s.triangles, s.culled
        );
        let name = if culling { "culled" } else { "every draw" };
        group.bench_function(format!("{name} ({})", gpu.info().name), |b| {
            b.iter(|| {
                r.submit(&scene, &camera, 0).unwrap();
                r.collect(true, &mut buf).unwrap().unwrap();
            })
        });
    }
    // Occlusion culling at the quality a software rasterizer streams (single-sampled, so
    // culled on every backend): what its mid-frame wait costs and what it saves on a view
    // where trees hide trees.
    let mut r = FrameRenderer::with_quality(
        &gpu,
        1280,
        720,
        Lighting::default(),
        farview_render::RenderQuality::FAST,
    )
    .unwrap();
    r.upload_missing(&scene).unwrap();
    for occlusion in [true, false] {
        r.set_occlusion_culling(occlusion);
        // A few frames: the first draws everything in phase 2, the second learns what hides.
        for _ in 0..3 {
            r.submit(&scene, &camera, 0).unwrap();
            r.collect(true, &mut buf).unwrap().unwrap();
        }
        let s = r.stats();
        eprintln!(
            "forest, fast, occlusion culling {occlusion}: {} draws, {} triangles, {} occluded",
            s.draws, s.triangles, s.occluded
        );
        let name = if occlusion {
            "fast, occlusion culled"
        } else {
            "fast, frustum only"
        };
        group.bench_function(format!("{name} ({})", gpu.info().name), |b| {
            b.iter(|| {
                r.submit(&scene, &camera, 0).unwrap();
                r.collect(true, &mut buf).unwrap().unwrap();
            })
        });
    }
    group.finish();
}

fn bench_model(
    c: &mut Criterion,
    group_name: &str,
    scene: &farview_scene::Scene,
    info: &farview_scene::ModelInfo,
) {
    let (scene, camera) = (scene, framing_camera(info));
    let mut group = c.benchmark_group(group_name);
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
        for (w, h) in [(1280, 720), (1920, 1080)] {
            let mut r = FrameRenderer::new(&gpu, w, h, Lighting::default()).unwrap();
            // `submit` draws only models in the renderer's GPU store; upload outside the timing.
            r.upload_missing(scene).unwrap();
            let mut buf = Vec::new();
            let name = format!("{w}x{h} {choice}: {}", gpu.info().name);
            // Latency path: submit a frame and wait for its pixels.
            group.bench_function(format!("{name} submit+wait"), |b| {
                b.iter(|| {
                    r.submit(scene, &camera, 0).unwrap();
                    r.collect(true, &mut buf).unwrap().unwrap();
                })
            });
            // Throughput path: keep one frame in flight while the previous one is copied out.
            r.submit(scene, &camera, 0).unwrap();
            group.bench_function(format!("{name} pipelined"), |b| {
                b.iter(|| {
                    r.submit(scene, &camera, 0).unwrap();
                    r.collect(true, &mut buf).unwrap().unwrap();
                })
            });
            r.collect(true, &mut buf).unwrap();
            // With the colour conversion on the GPU: readback moves I420.
            let mut g = FrameRenderer::new(&gpu, w, h, Lighting::default()).unwrap();
            g.upload_missing(scene).unwrap();
            if g.enable_gpu_i420().unwrap() {
                group.bench_function(format!("{name} submit+wait, GPU I420"), |b| {
                    b.iter(|| {
                        g.submit(scene, &camera, 0).unwrap();
                        g.collect(true, &mut buf).unwrap().unwrap();
                    })
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, render, forest_culling);
criterion_main!(benches);
