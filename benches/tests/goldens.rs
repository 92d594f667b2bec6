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
#[test]
fn frames_match_the_reference_viewer() {
    let Some(corpus) = golden::corpus_root() else {
        eprintln!("SKIPPED: no corpus (set FARVIEW_CORPUS or place ../shared/corpus/khronos)");
        return;
    };
    let gpu = GpuContext::new(AdapterChoice::Software).expect("software adapter");
    let env = Environment::load_default(&gpu).expect("default environment");
    let lighting = golden::reference_lighting(env);
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
