//! Farview's frames against the Khronos glTF Sample Viewer's goldens (`goldens/`), on the
//! software adapter: SSIM and PSNR per model, raw and after an H.264 round trip. Needs the
//! corpus (`../shared/corpus/khronos` or `$FARVIEW_CORPUS`): skips, saying so, without it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use farview_benches::golden::{self, Score};
use farview_render::{AdapterChoice, Environment, GpuContext, RenderQuality};

/// The targets.
const MIN_SSIM: f64 = 0.93;
const MEAN_SSIM: f64 = 0.97;
const MEAN_PSNR: f64 = 30.0;
/// The round trip may cost this much SSIM on top (≈ 0.01 at a high bitrate).
const H264_SSIM_SLACK: f64 = 0.015;
/// The corpus, the software adapter and the goldens' lighting; `None` (saying so) without the
/// corpus.
fn reference_setup() -> Option<(PathBuf, GpuContext, farview_render::Lighting)> {
    let Some(corpus) = golden::corpus_root() else {
        eprintln!("SKIPPED: no corpus (set FARVIEW_CORPUS or place ../shared/corpus/khronos)");
        return None;
    };
    let gpu = GpuContext::new(AdapterChoice::Software).expect("software adapter");
    let env = Environment::load_default(&gpu).expect("default environment");
    let lighting = golden::reference_lighting(env);
    Some((corpus, gpu, lighting))
}

#[test]
fn frames_match_the_reference_viewer() {
    let Some((corpus, gpu, lighting)) = reference_setup() else {
        return;
    };
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("goldens");
    let (scores, missing) = golden::run_suite(
        &gpu,
        &lighting,
        RenderQuality::default(),
        &corpus,
        &out,
        &[],
    )
    .unwrap();
    eprintln!("{}", golden::table(&scores));
    eprintln!("frames written to {out:?}");
    assert!(
        missing.is_empty(),
        "scenes without a golden PNG: {missing:?}"
    );
    let failed: Vec<_> = scores.iter().filter_map(|s| s.error.as_ref()).collect();
    assert!(failed.is_empty(), "scenes that did not render: {failed:?}");
    assert!(scores.len() >= 30, "only {} scenes", scores.len());
    let n = scores.len() as f64;
    let mean = |f: fn(&Score) -> f64| scores.iter().map(f).sum::<f64>() / n;
    let low: Vec<_> = scores
        .iter()
        .filter(|s| s.ssim < MIN_SSIM || s.ssim_h264 < MIN_SSIM - H264_SSIM_SLACK)
        .map(|s| format!("{} {:.3}/{:.3}", s.name, s.ssim, s.ssim_h264))
        .collect();
    assert!(low.is_empty(), "below SSIM {MIN_SSIM}: {low:?}");
    assert!(
        mean(|s| s.ssim) >= MEAN_SSIM,
        "mean SSIM {:.4}",
        mean(|s| s.ssim)
    );
    assert!(
        mean(|s| s.ssim_h264) >= MEAN_SSIM - H264_SSIM_SLACK,
        "mean SSIM after H.264 {:.4}",
        mean(|s| s.ssim_h264)
    );
    assert!(
        mean(|s| s.psnr) >= MEAN_PSNR,
        "mean PSNR {:.2}",
        mean(|s| s.psnr)
    );
}

/// Compressed variants of golden models and the golden scene whose camera they share.
const COMPRESSED_VARIANTS: &[(&str, &str)] = &[
    ("Box/glTF-Draco/Box.gltf", "Box"),
    ("Duck/glTF-Draco/Duck.gltf", "Duck"),
    (
        "DuckMeshopt/glTF-Meshopt/Duck-vp-12-vt-12-vn-12.glb",
        "Duck",
    ),
    (
        "CesiumMilkTruck/glTF-Draco/CesiumMilkTruck.gltf",
        "CesiumMilkTruck",
    ),
    ("BoxTexturedWebp/glTF/BoxTexturedWebp.gltf", "BoxTextured"),
];

/// The bar: a compressed variant renders the picture its plain variant does.
const COMPRESSED_MIN_SSIM: f64 = 0.98;

#[test]
fn compressed_variants_render_like_their_plain_models() {
    let Some((corpus, gpu, lighting)) = reference_setup() else {
        return;
    };
    let scenes = golden::scenes().unwrap();
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("compressed");
    std::fs::create_dir_all(&out).unwrap();
    let mut report = Vec::new();
    for (model, name) in COMPRESSED_VARIANTS {
        let plain = scenes.iter().find(|s| s.name == *name).unwrap();
        let compressed = golden::GoldenScene {
            model: (*model).to_owned(),
            ..plain.clone()
        };
        let q = RenderQuality::default();
        let a = golden::render(&gpu, &lighting, q, &corpus, plain).unwrap();
        let b = golden::render(&gpu, &lighting, q, &corpus, &compressed).unwrap();
        let (w, h) = (plain.width, plain.height);
        let file = model.replace('/', "_");
        golden::write_png(&out.join(format!("{file}.png")), &b, w, h).unwrap();
        let ssim = golden::ssim(&a, &b, w, h);
        let reference = golden::read_png(
            &golden::goldens_dir()
                .join("png")
                .join(format!("{name}.png")),
            w,
            h,
        )
        .unwrap();
        let vs_golden = golden::ssim(&b, &reference, w, h);
        report.push(format!(
            "{model:60} SSIM {ssim:.4} vs plain, {vs_golden:.4} vs golden"
        ));
        assert!(
            ssim >= COMPRESSED_MIN_SSIM && vs_golden >= MIN_SSIM,
            "{model}: SSIM {ssim:.4} against {name}, {vs_golden:.4} against its golden"
        );
    }
    eprintln!("{}\nframes in {out:?}", report.join("\n"));
}

/// Animated frames: skins, morph targets and keyframes at set times against the Sample Viewer
/// rendering the same times (`goldens/animations.json`).
#[test]
fn animated_frames_match_the_reference_viewer() {
    let Some((corpus, gpu, lighting)) = reference_setup() else {
        return;
    };
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("goldens-anim");
    std::fs::create_dir_all(&out).unwrap();
    let mut report = Vec::new();
    let mut low = Vec::new();
    for a in golden::animated_scenes().unwrap() {
        let s = &a.scene;
        let ours = golden::render_animated(&gpu, &lighting, RenderQuality::default(), &corpus, &a)
            .unwrap_or_else(|e| panic!("{}: {e:#}", s.name));
        golden::write_png(
            &out.join(format!("{}.png", s.name)),
            &ours,
            s.width,
            s.height,
        )
        .unwrap();
        let path = golden::goldens_dir()
            .join("png/anim")
            .join(format!("{}.png", s.name));
        let reference = golden::read_png(&path, s.width, s.height).unwrap();
        let ssim = golden::ssim(&ours, &reference, s.width, s.height);
        let psnr = golden::psnr(&ours, &reference);
        report.push(format!(
            "{:20} t={:.2} SSIM {ssim:.4} PSNR {psnr:.2}",
            s.name, a.time
        ));
        if ssim < MIN_SSIM {
            low.push(format!("{} {ssim:.3}", s.name));
        }
    }
    eprintln!("{}\nframes in {out:?}", report.join("\n"));
    assert!(low.is_empty(), "below SSIM {MIN_SSIM}: {low:?}");
}
