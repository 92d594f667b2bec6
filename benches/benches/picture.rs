//! What the picture costs per frame: DamagedHelmet at 1280x720 on the software rasterizer (or a
//! GPU when there is one), render + readback with the GPU I420 conversion, at each quality
//! (high: per-pixel shading, 4x MSAA, anisotropic filtering; medium: per-pixel shading only;
//! fast: per-vertex shading) with image-based lighting. The whole-system 60 fps figure comes from `farview-bench`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use farview_benches::framing_camera;
use farview_render::{
    AdapterChoice, Environment, FrameRenderer, GpuContext, Lighting, RenderQuality,
};

fn picture(c: &mut Criterion) {
    let corpus = std::env::var_os("FARVIEW_CORPUS").map_or_else(
        || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus"),
        Into::into,
    );
    let helmet = "khronos/DamagedHelmet/glTF-Binary/DamagedHelmet.glb";
    let model = match farview_scene::import_file(
        &corpus,
        helmet,
        &farview_scene::ImportLimits::default(),
    ) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("skipping: DamagedHelmet not found ({e}); set FARVIEW_CORPUS");
            return;
        }
    };
    let mut scene = farview_scene::Scene::default();
    let info = scene.add_model("helmet", model).unwrap();
    let camera = framing_camera(&info);
    let gpu = GpuContext::new(AdapterChoice::Auto).unwrap();
    let env = Environment::load_default(&gpu).unwrap();
    let mut group = c.benchmark_group("picture_damaged_helmet_720p");
    group.sample_size(20);
    let cases = [
        ("high, IBL", RenderQuality::HIGH, Some(env.clone())),
        ("medium, IBL", RenderQuality::MEDIUM, Some(env.clone())),
        ("fast, IBL", RenderQuality::FAST, Some(env)),
    ];
    for (name, quality, environment) in cases {
        let lighting = Lighting {
            environment,
            ..Lighting::default()
        };
        let mut r = FrameRenderer::with_quality(&gpu, 1280, 720, lighting, quality).unwrap();
        r.upload_missing(&scene).unwrap();
        r.enable_gpu_i420().unwrap();
        let mut buf = Vec::new();
        r.submit(&scene, &camera, 0).unwrap();
        group.bench_function(format!("{name}: {}", gpu.info().name), |b| {
            b.iter(|| {
                r.submit(&scene, &camera, 0).unwrap();
                r.collect(true, &mut buf).unwrap().unwrap();
            })
        });
        r.collect(true, &mut buf).unwrap();
    }
    group.finish();
}

criterion_group!(benches, picture);
criterion_main!(benches);
