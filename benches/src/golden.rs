//! The golden-image suite: Farview's frames of corpus models against the Khronos glTF Sample
//! Viewer's, at the same explicit camera and environment (`goldens/scenes.json`, made with
//! `tools/reference/`). Measures SSIM and PSNR per model on the raw render and after an H.264
//! round trip (our encoder, ffmpeg's decoder), and draws a side-by-side contact sheet.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use farview_encode::{EncoderSettings, I420Frame, OpenH264Encoder, VideoEncoder, rgba_to_i420};
use farview_render::{
    Camera, Environment, FrameRenderer, GpuContext, Lighting, RenderQuality, ToneMapping,
};
use farview_scene::{ImportLimits, Scene};
use glam::Vec3;
use serde::Deserialize;

/// One scene of `goldens/scenes.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct GoldenScene {
    /// Short name; the golden is `goldens/png/<name>.png`.
    pub name: String,
    /// Path of the model under the corpus root (`khronos/`).
    pub model: String,
    /// Camera position.
    pub eye: [f32; 3],
    /// Point the camera looks at (+Y up).
    pub target: [f32; 3],
    /// Vertical field of view, degrees.
    pub yfov_deg: f32,
    /// Near plane.
    pub znear: f32,
    /// Far plane.
    pub zfar: f32,
    /// Frame width.
    pub width: u32,
    /// Frame height.
    pub height: u32,
    /// What the scene exercises.
    #[serde(default)]
    pub features: Vec<String>,
}

impl GoldenScene {
    /// The scene's camera.
    pub fn camera(&self) -> Camera {
        Camera::looking_at(
            Vec3::from_array(self.eye),
            Vec3::from_array(self.target),
            self.yfov_deg.to_radians(),
            self.znear,
            self.zfar,
        )
    }
}

/// One scene of `goldens/animations.json`: a still scene posed by animations at a time.
#[derive(Debug, Clone, Deserialize)]
pub struct AnimatedScene {
    /// Camera, size and model, as for stills; the golden is `goldens/png/anim/<name>.png`.
    #[serde(flatten)]
    pub scene: GoldenScene,
    /// The animations applied (each drives its own nodes).
    pub animation_indices: Vec<usize>,
    /// The animation time, seconds.
    pub time: f32,
}

/// Reads `goldens/animations.json`.
pub fn animated_scenes() -> anyhow::Result<Vec<AnimatedScene>> {
    let path = goldens_dir().join("animations.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path:?}"))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {path:?}"))
}

/// Renders an animated scene as its golden was: the model posed by its animations at `time`.
pub fn render_animated(
    gpu: &GpuContext,
    lighting: &Lighting,
    quality: RenderQuality,
    corpus: &Path,
    animated: &AnimatedScene,
) -> anyhow::Result<Vec<u8>> {
    let scene = &animated.scene;
    let mut s = load_scene(corpus, scene)?;
    let root = *s.roots().last().context("the model has no root")?;
    for &index in &animated.animation_indices {
        s.pose_at(root, index, animated.time)?;
    }
    s.update_world_transforms();
    let mut r =
        FrameRenderer::with_quality(gpu, scene.width, scene.height, lighting.clone(), quality)?;
    Ok(r.render_blocking(&s, &scene.camera())?)
}

/// The repository's `goldens/` directory.
pub fn goldens_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../goldens")
}

/// Reads `goldens/scenes.json`.
pub fn scenes() -> anyhow::Result<Vec<GoldenScene>> {
    let path = goldens_dir().join("scenes.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path:?}"))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {path:?}"))
}

/// The Khronos corpus: `$FARVIEW_CORPUS`, else `../shared/corpus/khronos` beside the
/// repository; `None` when neither exists (a user's clone has no corpus).
pub fn corpus_root() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("FARVIEW_CORPUS") {
        let p = PathBuf::from(p);
        return p.is_dir().then_some(p);
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/khronos");
    p.is_dir().then_some(p)
}

/// The sRGB-encoded grey the Sample Viewer clears to (0.2), as the linear colour Farview takes.
pub const REFERENCE_BACKGROUND_SRGB: f32 = 0.2;

/// The lighting the goldens were made with: the default environment (not drawn), a 0.2 grey
/// background, KHR PBR Neutral tone mapping.
pub fn reference_lighting(environment: Environment) -> Lighting {
    Lighting {
        environment: Some(environment),
        show_environment: false,
        background: Vec3::splat(srgb_to_linear(REFERENCE_BACKGROUND_SRGB)),
        tone_mapping: ToneMapping::KhrPbrNeutral,
        exposure: 1.0,
        ..Lighting::default()
    }
}

fn srgb_to_linear(c: f32) -> f32 {
    if c <= 0.04045 {
        c / 12.92
    } else {
        ((c + 0.055) / 1.055).powf(2.4)
    }
}

/// Loads the model of `scene` from the corpus into a scene lit only by the file's own lights
/// (the reference has no default sun).
pub fn load_scene(corpus: &Path, scene: &GoldenScene) -> anyhow::Result<Scene> {
    let model = farview_scene::import_file(corpus, &scene.model, &ImportLimits::default())
        .with_context(|| format!("importing {}", scene.model))?;
    let mut s = Scene::default();
    let default_lights: Vec<_> = s.lights().iter().map(|(id, _)| *id).collect();
    for id in default_lights {
        s.remove_light(id)?;
    }
    s.add_model(&scene.name, model)?;
    Ok(s)
}

/// Renders `scene` as the goldens were: tightly packed RGBA8.
pub fn render(
    gpu: &GpuContext,
    lighting: &Lighting,
    quality: RenderQuality,
    corpus: &Path,
    scene: &GoldenScene,
) -> anyhow::Result<Vec<u8>> {
    let s = load_scene(corpus, scene)?;
    let mut r =
        FrameRenderer::with_quality(gpu, scene.width, scene.height, lighting.clone(), quality)?;
    Ok(r.render_blocking(&s, &scene.camera())?)
}

/// Reads a golden PNG as RGBA8 of the expected size.
pub fn read_png(path: &Path, width: u32, height: u32) -> anyhow::Result<Vec<u8>> {
    let img = image::open(path)
        .with_context(|| format!("reading {path:?}"))?
        .to_rgba8();
    if img.dimensions() != (width, height) {
        bail!(
            "{path:?} is {:?}, expected {width}x{height}",
            img.dimensions()
        );
    }
    Ok(img.into_raw())
}

/// Writes RGBA8 as a PNG.
pub fn write_png(path: &Path, rgba: &[u8], width: u32, height: u32) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    image::save_buffer(path, rgba, width, height, image::ExtendedColorType::Rgba8)
        .with_context(|| format!("writing {path:?}"))
}

fn luma(rgba: &[u8]) -> Vec<f64> {
    rgba.chunks_exact(4)
        .map(|p| 0.299 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2]))
        .collect()
}

/// Mean SSIM of the luma of two RGBA8 images (Wang et al. 2004: 11x11 Gaussian window,
/// sigma 1.5, K1 0.01, K2 0.03, L 255), over the windows that fit inside the frame.
pub fn ssim(a: &[u8], b: &[u8], width: u32, height: u32) -> f64 {
    let (w, h) = (width as usize, height as usize);
    if a.len() != w * h * 4 || b.len() != a.len() || w < 11 || h < 11 {
        return 0.0;
    }
    let (x, y) = (luma(a), luma(b));
    let kernel: Vec<f64> = (-5i32..=5)
        .map(|i| (-(f64::from(i * i)) / (2.0 * 1.5 * 1.5)).exp())
        .collect();
    let sum: f64 = kernel.iter().sum();
    let kernel: Vec<f64> = kernel.iter().map(|k| k / sum).collect();
    // Separable Gaussian blur of a plane, valid region only.
    let blur = |p: &[f64]| -> Vec<f64> {
        let ow = w - 10;
        let mut horizontal = vec![0.0; ow * h];
        for row in 0..h {
            for col in 0..ow {
                horizontal[row * ow + col] =
                    (0..11).map(|k| kernel[k] * p[row * w + col + k]).sum();
            }
        }
        let oh = h - 10;
        let mut out = vec![0.0; ow * oh];
        for row in 0..oh {
            for col in 0..ow {
                out[row * ow + col] = (0..11)
                    .map(|k| kernel[k] * horizontal[(row + k) * ow + col])
                    .sum();
            }
        }
        out
    };
    let xx: Vec<f64> = x.iter().map(|v| v * v).collect();
    let yy: Vec<f64> = y.iter().map(|v| v * v).collect();
    let xy: Vec<f64> = x.iter().zip(&y).map(|(p, q)| p * q).collect();
    let (mx, my, sxx, syy, sxy) = (blur(&x), blur(&y), blur(&xx), blur(&yy), blur(&xy));
    let (c1, c2) = ((0.01f64 * 255.0).powi(2), (0.03f64 * 255.0).powi(2));
    let n = mx.len();
    let total: f64 = (0..n)
        .map(|i| {
            let (ux, uy) = (mx[i], my[i]);
            let vx = sxx[i] - ux * ux;
            let vy = syy[i] - uy * uy;
            let cov = sxy[i] - ux * uy;
            ((2.0 * ux * uy + c1) * (2.0 * cov + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
        })
        .sum();
    total / n as f64
}

/// PSNR over the RGB channels of two RGBA8 images, in dB (capped at 99 for identical images).
pub fn psnr(a: &[u8], b: &[u8]) -> f64 {
    let (mut sum, mut count) = (0f64, 0usize);
    for (p, q) in a.chunks_exact(4).zip(b.chunks_exact(4)) {
        for c in 0..3 {
            let d = f64::from(p[c]) - f64::from(q[c]);
            sum += d * d;
            count += 1;
        }
    }
    if count == 0 || a.len() != b.len() {
        return 0.0;
    }
    let mse = sum / count as f64;
    if mse <= 1e-10 {
        99.0
    } else {
        10.0 * (255.0f64 * 255.0 / mse).log10()
    }
}

/// Encodes one frame with Farview's H.264 encoder (an IDR at `bitrate_bps`) and decodes it
/// with ffmpeg; returns the decoded RGBA8.
pub fn h264_round_trip(
    rgba: &[u8],
    width: u32,
    height: u32,
    bitrate_bps: u32,
) -> anyhow::Result<Vec<u8>> {
    let mut frame = I420Frame::new(width, height)?;
    rgba_to_i420(rgba, width as usize * 4, &mut frame)?;
    let mut encoder = OpenH264Encoder::new(EncoderSettings {
        width,
        height,
        bitrate_bps,
        max_fps: 30.0,
        ..EncoderSettings::default()
    })?;
    let mut stream = encoder.encode(&frame, true)?.data;
    for f in encoder.flush()? {
        stream.extend_from_slice(&f.data);
    }
    let mut child = Command::new("ffmpeg")
        .args(["-v", "error", "-f", "h264", "-i", "-"])
        .args([
            "-vf",
            "scale=in_color_matrix=bt709:in_range=tv:out_range=pc:flags=accurate_rnd+full_chroma_int+bicubic,format=rgba",
            "-frames:v",
            "1",
            "-f",
            "rawvideo",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting ffmpeg (Debian package ffmpeg)")?;
    let mut stdin = child.stdin.take().context("ffmpeg stdin")?;
    let writer = std::thread::spawn(move || stdin.write_all(&stream));
    let out = child.wait_with_output()?;
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("ffmpeg writer thread panicked"))??;
    if !out.status.success() || !out.stderr.is_empty() {
        bail!("ffmpeg failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    if out.stdout.len() != (width * height * 4) as usize {
        bail!("ffmpeg returned {} bytes", out.stdout.len());
    }
    Ok(out.stdout)
}

/// A contact sheet: scene pairs (golden on the left, Farview on the right, each scaled to
/// `cell` pixels square) in reading order, `pairs_per_row` pairs to a row, one pixel of gap.
pub fn contact_sheet(
    pairs: &[(&[u8], &[u8], u32, u32)],
    cell: u32,
    pairs_per_row: u32,
) -> (Vec<u8>, u32, u32) {
    let per_row = pairs_per_row.max(1);
    let rows = (pairs.len() as u32).div_ceil(per_row);
    let pair_w = cell * 2 + 4;
    let (sw, sh) = (pair_w * per_row, (cell + 4) * rows);
    let mut out = vec![255u8; (sw * sh * 4) as usize];
    for (i, (golden, ours, w, h)) in pairs.iter().enumerate() {
        let (ox, oy) = (
            (i as u32 % per_row) * pair_w,
            (i as u32 / per_row) * (cell + 4),
        );
        for (c, img) in [golden, ours].iter().enumerate() {
            for y in 0..cell {
                for x in 0..cell {
                    let (sx, sy) = (x * w / cell, y * h / cell);
                    let src = ((sy * w + sx) * 4) as usize;
                    let dx = ox + c as u32 * (cell + 1) + x;
                    let dy = oy + y;
                    let dst = ((dy * sw + dx) * 4) as usize;
                    if let (Some(s), Some(d)) = (img.get(src..src + 4), out.get_mut(dst..dst + 4)) {
                        d.copy_from_slice(s);
                    }
                }
            }
        }
    }
    (out, sw, sh)
}

/// One scene's scores.
#[derive(Debug, Clone)]
pub struct Score {
    /// Scene name.
    pub name: String,
    /// SSIM of the raw render against the golden.
    pub ssim: f64,
    /// PSNR of the raw render, dB.
    pub psnr: f64,
    /// SSIM after the H.264 round trip.
    pub ssim_h264: f64,
    /// PSNR after the H.264 round trip, dB.
    pub psnr_h264: f64,
    /// Render time (import, upload, draw, readback), seconds.
    pub render_s: f64,
    /// Why the scene could not be rendered (the scores are then 0).
    pub error: Option<String>,
}

/// The bitrate of the round trip: "high" for one 512x512 picture (an IDR at 30 fps budget).
pub const ROUND_TRIP_BITRATE_BPS: u32 = 12_000_000;

/// Renders every scene that has a golden, scores it, and writes Farview's frame (raw and after
/// the round trip) to `out_dir`. Scenes without a golden PNG are listed in the second value.
pub fn run_suite(
    gpu: &GpuContext,
    lighting: &Lighting,
    quality: RenderQuality,
    corpus: &Path,
    out_dir: &Path,
    only: &[String],
) -> anyhow::Result<(Vec<Score>, Vec<String>)> {
    let mut scores = Vec::new();
    let mut missing = Vec::new();
    for scene in scenes()? {
        if !only.is_empty() && !only.contains(&scene.name) {
            continue;
        }
        let golden_path = goldens_dir()
            .join("png")
            .join(format!("{}.png", scene.name));
        if !golden_path.exists() {
            missing.push(scene.name.clone());
            continue;
        }
        let golden = read_png(&golden_path, scene.width, scene.height)?;
        let started = std::time::Instant::now();
        let ours = match render(gpu, lighting, quality, corpus, &scene) {
            Ok(frame) => frame,
            Err(e) => {
                scores.push(Score {
                    name: scene.name.clone(),
                    ssim: 0.0,
                    psnr: 0.0,
                    ssim_h264: 0.0,
                    psnr_h264: 0.0,
                    render_s: 0.0,
                    error: Some(format!("{e:#}")),
                });
                continue;
            }
        };
        let render_s = started.elapsed().as_secs_f64();
        let decoded = h264_round_trip(&ours, scene.width, scene.height, ROUND_TRIP_BITRATE_BPS)?;
        write_png(
            &out_dir.join(format!("{}.png", scene.name)),
            &ours,
            scene.width,
            scene.height,
        )?;
        write_png(
            &out_dir.join(format!("{}.h264.png", scene.name)),
            &decoded,
            scene.width,
            scene.height,
        )?;
        scores.push(Score {
            name: scene.name.clone(),
            ssim: ssim(&ours, &golden, scene.width, scene.height),
            psnr: psnr(&ours, &golden),
            ssim_h264: ssim(&decoded, &golden, scene.width, scene.height),
            psnr_h264: psnr(&decoded, &golden),
            render_s,
            error: None,
        });
    }
    Ok((scores, missing))
}

/// The per-model table, as Markdown.
pub fn table(scores: &[Score]) -> String {
    let mut t = String::from(
        "| model | SSIM | PSNR dB | SSIM H.264 | PSNR H.264 dB |\n|---|---:|---:|---:|---:|\n",
    );
    for s in scores {
        match &s.error {
            Some(e) => t += &format!("| {} | failed: {e} | | | |\n", s.name),
            None => {
                t += &format!(
                    "| {} | {:.4} | {:.2} | {:.4} | {:.2} |\n",
                    s.name, s.ssim, s.psnr, s.ssim_h264, s.psnr_h264
                )
            }
        }
    }
    let n = scores.len().max(1) as f64;
    let mean = |f: fn(&Score) -> f64| scores.iter().map(f).sum::<f64>() / n;
    t += &format!(
        "| **mean of {}** | **{:.4}** | **{:.2}** | **{:.4}** | **{:.2}** |\n",
        scores.len(),
        mean(|s| s.ssim),
        mean(|s| s.psnr),
        mean(|s| s.ssim_h264),
        mean(|s| s.psnr_h264)
    );
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(w: u32, h: u32, seed: u32) -> Vec<u8> {
        let mut s = seed;
        (0..w * h * 4)
            .map(|i| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                if i % 4 == 3 { 255 } else { (s >> 24) as u8 }
            })
            .collect()
    }

    #[test]
    fn ssim_is_one_for_identical_images_and_low_for_unrelated_ones() {
        let a = noise(64, 48, 1);
        let b = noise(64, 48, 2);
        assert!((ssim(&a, &a, 64, 48) - 1.0).abs() < 1e-9);
        assert!(ssim(&a, &b, 64, 48) < 0.1);
        assert_eq!(psnr(&a, &a), 99.0);
        assert!(psnr(&a, &b) < 12.0);
    }

    #[test]
    fn a_brightness_shift_costs_psnr_and_a_little_ssim() {
        let a = noise(64, 48, 3);
        let b: Vec<u8> = a
            .iter()
            .enumerate()
            .map(|(i, v)| if i % 4 == 3 { *v } else { v.saturating_add(10) })
            .collect();
        let p = psnr(&a, &b);
        assert!((p - 28.5).abs() < 1.5, "psnr {p}");
        let s = ssim(&a, &b, 64, 48);
        assert!(s > 0.95 && s < 1.0, "ssim {s}");
    }
}
