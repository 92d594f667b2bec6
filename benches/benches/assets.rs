//! Figures of issue #13: import + GPU upload of each compressed corpus model against its plain
//! variant (Draco, meshopt, WebP; KTX2 has no plain variant in the corpus and is measured
//! alone), and what animation costs per frame on the software rasterizer: posing and skinning
//! BrainStem on the CPU, and a rendered frame of it animated against the same frame still.
//!
//! ```text
//! cargo bench -p farview-benches --bench assets
//! ```
//! Needs the corpus (`../shared/corpus` or `$FARVIEW_CORPUS`); says so and skips without it.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use farview_render::{AdapterChoice, Camera, FrameRenderer, GpuContext, Lighting};
use farview_scene::{AnimationCommand, ImportLimits, Scene};
use glam::Vec3;

fn corpus() -> PathBuf {
    std::env::var_os("FARVIEW_CORPUS").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus"),
        Into::into,
    )
}

/// (name, path under the corpus root), plain variant first where there is one.
const MODELS: &[(&str, &str)] = &[
    ("Duck plain", "khronos/Duck/glTF-Binary/Duck.glb"),
    ("Duck Draco", "khronos/Duck/glTF-Draco/Duck.gltf"),
    (
        "Duck meshopt",
        "khronos/DuckMeshopt/glTF-Meshopt/Duck-vp-12-vt-12-vn-12.glb",
    ),
    (
        "CesiumMilkTruck plain",
        "khronos/CesiumMilkTruck/glTF-Binary/CesiumMilkTruck.glb",
    ),
    (
        "CesiumMilkTruck Draco",
        "khronos/CesiumMilkTruck/glTF-Draco/CesiumMilkTruck.gltf",
    ),
    (
        "CesiumMan plain",
        "khronos/CesiumMan/glTF-Binary/CesiumMan.glb",
    ),
    (
        "CesiumMan Draco",
        "khronos/CesiumMan/glTF-Draco/CesiumMan.gltf",
    ),
    (
        "BrainStem Draco",
        "khronos/BrainStem/glTF-Draco/BrainStem.gltf",
    ),
    (
        "BoxTextured plain",
        "khronos/BoxTextured/glTF-Binary/BoxTextured.glb",
    ),
    (
        "BoxTextured WebP",
        "khronos/BoxTexturedWebp/glTF/BoxTexturedWebp.gltf",
    ),
    (
        "CesiumBalloon KTX2",
        "khronos/CesiumBalloonKTX2/glTF-Binary-KTX2/CesiumBalloonKTX2.glb",
    ),
    (
        "StainedGlassLamp KTX2",
        "khronos/StainedGlassLamp/glTF-KTX-BasisU/StainedGlassLamp.gltf",
    ),
];

fn import_upload(c: &mut Criterion) {
    let root = corpus();
    if !root.join("khronos").is_dir() {
        eprintln!("skipping: corpus not found at {root:?} (set FARVIEW_CORPUS)");
        return;
    }
    let gpu = GpuContext::new(AdapterChoice::Auto).unwrap();
    eprintln!("adapter: {}", gpu.summary());
    let renderer = FrameRenderer::new(&gpu, 256, 256, Lighting::default()).unwrap();
    let uploader = renderer.uploader();
    let mut group = c.benchmark_group("compressed_import_and_upload");
    group.sample_size(10);
    for (name, path) in MODELS {
        group.bench_function(*name, |b| {
            b.iter(|| {
                let model =
                    farview_scene::import_file(&root, path, &ImportLimits::default()).unwrap();
                uploader.upload(&model).unwrap()
            })
        });
    }
    group.finish();
}

fn skinning(c: &mut Criterion) {
    let root = corpus();
    let path = "khronos/BrainStem/glTF-Draco/BrainStem.gltf";
    if !root.join(path).exists() {
        eprintln!("skipping: corpus not found at {root:?} (set FARVIEW_CORPUS)");
        return;
    }
    let model = farview_scene::import_file(&root, path, &ImportLimits::default()).unwrap();
    let vertices = model.vertex_count();
    let mut scene = Scene::default();
    let info = scene.add_model("BrainStem", model).unwrap();
    eprintln!(
        "BrainStem: {vertices} vertices, {} triangles",
        info.triangles
    );
    let c_ = info.bounds.center();
    let d = info.bounds.size().length() * 1.2;
    let camera = Camera::looking_at(
        c_ + Vec3::new(0.3, 0.2, 1.0).normalize() * d,
        c_,
        0.8,
        d * 0.05,
        d * 4.0,
    );
    let gpu = GpuContext::new(AdapterChoice::Auto).unwrap();
    let mut r = FrameRenderer::new(&gpu, 1280, 720, Lighting::default()).unwrap();

    let mut group = c.benchmark_group("brainstem_animation");
    group.sample_size(20);
    // Still: nothing plays, the frame is drawn from the uploaded vertices.
    group.bench_function("720p frame, still", |b| {
        b.iter(|| r.render_blocking(&scene, &camera).unwrap())
    });
    scene
        .animate(
            info.root,
            AnimationCommand::Play {
                index: 0,
                speed: 1.0,
                looping: true,
                start: 0.0,
            },
        )
        .unwrap();
    group.bench_function("pose + CPU skinning (1/60 s step)", |b| {
        b.iter(|| {
            scene.advance_animations(1.0 / 60.0);
            scene.update_world_transforms();
        })
    });
    // The renderer poses on the GPU (compute) where the device can; the host then turns the
    // scene's CPU posing off, leaving joint matrices and per-joint bounds.
    scene.set_cpu_posing(false);
    group.bench_function("pose, joint matrices + bounds only (1/60 s step)", |b| {
        b.iter(|| {
            scene.advance_animations(1.0 / 60.0);
            scene.update_world_transforms();
        })
    });
    let mut small = FrameRenderer::new(&gpu, 320, 180, Lighting::default()).unwrap();
    for (label, cpu) in [("GPU skinning", false), ("CPU skinning + upload", true)] {
        scene.set_cpu_posing(cpu);
        for (size, renderer) in [("720p", &mut r), ("320x180", &mut small)] {
            renderer.set_gpu_posing(!cpu);
            group.bench_function(format!("{size} frame, animated, {label}"), |b| {
                b.iter(|| {
                    scene.advance_animations(1.0 / 60.0);
                    scene.update_world_transforms();
                    renderer.render_blocking(&scene, &camera).unwrap()
                })
            });
        }
    }
    scene.set_cpu_posing(true);
    small.set_gpu_posing(true);
    scene.animate(info.root, AnimationCommand::Stop).unwrap();
    scene.update_world_transforms();
    group.bench_function("320x180 frame, still", |b| {
        b.iter(|| small.render_blocking(&scene, &camera).unwrap())
    });
    group.finish();
}

criterion_group!(benches, import_upload, skinning);
criterion_main!(benches);
