//! `farview-scale-bench`: big models on this machine's adapter (#15). For each generated model
//! (`farview-gen-models`): import and upload time, then a camera flying through it at 720p,
//! drawn with levels of detail and culling: frames/s, median and p99 frame time, triangles
//! drawn per frame, RSS and GPU memory, and the picture against full detail (PSNR of sampled
//! frames rendered both ways).
//!
//! ```text
//! cargo run --release -p farview-benches --bin farview-gen-models -- --hierarchy-nodes 999999
//! cargo run --release -p farview-benches --bin farview-scale-bench
//! ```

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use farview_render::{AdapterChoice, Camera, FrameRenderer, GpuContext, Lighting, RenderQuality};
use farview_scene::{ImportLimits, Light, Scene};
use glam::Vec3;

#[derive(Debug, Parser)]
struct Args {
    /// Where `farview-gen-models` wrote the models.
    #[arg(long, default_value = "target/bigmodels")]
    models: PathBuf,
    /// Models to run (file stems).
    #[arg(long, value_delimiter = ',', default_value = "city,scan,hierarchy")]
    only: Vec<String>,
    /// Frames of the fly-through.
    #[arg(long, default_value_t = 120)]
    frames: usize,
    #[arg(long, default_value_t = 1280)]
    width: u32,
    #[arg(long, default_value_t = 720)]
    height: u32,
    /// Level-of-detail error budget, pixels (0: full detail).
    #[arg(long, default_value_t = 1.0)]
    lod_px: f32,
    /// Frames also rendered at full detail to compare with.
    #[arg(long, default_value_t = 6)]
    compare: usize,
    /// Picture quality: auto (the host's choice: high on a GPU, fast at this size on a
    /// software rasterizer), high, medium, fast.
    #[arg(long, default_value = "auto")]
    quality: String,
    /// Fraction of the circle flown over the frames: 1 visits every side of the model (large
    /// steps between frames); small values fly at the pace of a real camera.
    #[arg(long, default_value_t = 1.0)]
    arc: f32,
    /// Where on the circle the flight starts, as a fraction of it. With `--arc 0` every frame
    /// is the same view: the steadiest figure for comparing two builds on a noisy machine.
    #[arg(long, default_value_t = 0.0)]
    start: f32,
    /// Import without levels of detail and build them after the first upload, as the host
    /// does (the table's "levels" column says how long that took).
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    defer_levels: bool,
    /// Occlusion culling (the compared full-detail frames are drawn without it).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    occlusion: bool,
    /// Leaving out facing groups of levels that face away from the camera (the compared
    /// full-detail frames are drawn without it).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    facing: bool,
    /// Print each frame's time, triangles and draws (a slow frame's cause, such as a view of
    /// the whole city from inside a building).
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    trace_frames: bool,
    /// Adapter: auto (the host's choice), hardware, software, vulkan (lavapipe without a
    /// GPU), gl (llvmpipe without a GPU).
    #[arg(long, default_value = "auto")]
    adapter: AdapterChoice,
}

/// The camera at `t` in 0..1 of a flight through `bounds`: a low circle around the middle,
/// looking ahead and a little inwards and down, so near parts fill the view and far parts
/// reach the horizon.
fn camera_at(bounds: &farview_scene::Aabb, t: f32) -> Camera {
    let c = bounds.center();
    let size = bounds.size();
    let r = 0.3 * size.x.max(size.z);
    let a = t * std::f32::consts::TAU;
    let height = bounds.min.y + 0.15 * size.y.max(size.x * 0.02) + 0.02 * size.x.max(size.z);
    let eye = Vec3::new(c.x + r * a.cos(), height, c.z + r * a.sin());
    let ahead = Vec3::new(-a.sin(), 0.0, a.cos());
    let inwards = (Vec3::new(c.x, height, c.z) - eye).normalize_or_zero();
    let target = eye + ahead + 0.4 * inwards + Vec3::new(0.0, -0.12, 0.0);
    let far = 2.0 * size.length();
    Camera::looking_at(eye, target, 60f32.to_radians(), far * 1e-5, far)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let gpu = GpuContext::new(args.adapter)?;
    println!("adapter: {}, quality {}", gpu.summary(), args.quality);
    let mut rows = Vec::new();
    for name in &args.only {
        let path = args.models.join(format!("{name}.glb"));
        if !path.exists() {
            anyhow::bail!(
                "{} is missing: run farview-gen-models first (cargo run --release -p \
                 farview-benches --bin farview-gen-models -- --hierarchy-nodes 999999)",
                path.display()
            );
        }
        let rss_before = farview_benches::rss_mib();
        let t0 = Instant::now();
        let dir = path.parent().unwrap_or(std::path::Path::new("."));
        let file = path
            .file_name()
            .and_then(|f| f.to_str())
            .unwrap_or_default()
            .to_owned();
        let limits = ImportLimits {
            levels_at_import: !args.defer_levels,
            ..ImportLimits::default()
        };
        let model = farview_scene::import_file(dir, &file, &limits)?;
        let import_s = t0.elapsed().as_secs_f64();
        let source_triangles = model.triangle_count();
        let mut scene = Scene::default();
        let info = scene.add_model(name, model)?;
        scene.add_light(Light {
            direction: Vec3::new(-0.5, -0.7, -0.5).normalize(),
            ..Light::SUN
        })?;
        scene.update_world_transforms();
        let quality = match args.quality.as_str() {
            "high" => RenderQuality::HIGH,
            "medium" => RenderQuality::MEDIUM,
            "fast" => RenderQuality::FAST,
            _ if gpu.is_software() => RenderQuality::FAST,
            _ => RenderQuality::HIGH,
        };
        let mut r = FrameRenderer::with_quality(
            &gpu,
            args.width,
            args.height,
            Lighting::default(),
            quality,
        )?;
        let t1 = Instant::now();
        r.upload_missing(&scene)?;
        let upload_s = t1.elapsed().as_secs_f64();
        let mut levels_s = None;
        if args.defer_levels
            && let Some(model) = scene.model(info.model).cloned()
        {
            let t = Instant::now();
            let threads = std::thread::available_parallelism().map_or(1, usize::from);
            let never = std::sync::atomic::AtomicBool::new(false);
            let levels = farview_scene::lod::build_levels(&model, threads, &never);
            let uploaded = r.uploader().upload_levels(&levels);
            r.attach_levels(info.model, uploaded);
            levels_s = Some(t.elapsed().as_secs_f64());
        }
        r.set_lod_error_px(args.lod_px);
        r.set_occlusion_culling(args.occlusion);
        r.set_facing_culling(args.facing);
        let bounds = info.bounds;
        let mut times = Vec::with_capacity(args.frames);
        let mut triangles = Vec::with_capacity(args.frames);
        let mut occluded = Vec::with_capacity(args.frames);
        let mut faced_away = Vec::with_capacity(args.frames);
        let mut meshlets_culled = Vec::with_capacity(args.frames);
        let mut worst_db = f64::INFINITY;
        let mut full_triangles = 0u64;
        // Warm-up: pipelines, first-use allocations.
        r.render_blocking(&scene, &camera_at(&bounds, args.start))?;
        let every = (args.frames / args.compare.max(1)).max(1);
        // One buffer for every frame, as the host's stream loop keeps one.
        let mut frame = Vec::new();
        for i in 0..args.frames {
            let cam = camera_at(
                &bounds,
                args.start + args.arc * i as f32 / args.frames as f32,
            );
            let t = Instant::now();
            r.render_blocking_into(&scene, &cam, &mut frame)?;
            times.push(t.elapsed());
            let stats = r.stats();
            if args.trace_frames {
                eprintln!(
                    "frame {i}: {:.1} ms, {} tris, {} draws, {} occluded, {} coarse, {} merged",
                    t.elapsed().as_secs_f64() * 1e3,
                    stats.triangles,
                    stats.draws,
                    stats.occluded,
                    stats.coarse_draws,
                    stats.merged_draws,
                );
            }
            triangles.push(stats.triangles);
            occluded.push(stats.occluded);
            faced_away.push(stats.faced_away);
            meshlets_culled.push(stats.meshlets_culled);
            if args.compare > 0 && i % every == 0 {
                r.set_lod_error_px(0.0);
                r.set_occlusion_culling(false);
                r.set_facing_culling(false);
                let full = r.render_blocking(&scene, &cam)?;
                full_triangles = full_triangles.max(r.stats().triangles);
                r.set_lod_error_px(args.lod_px);
                r.set_occlusion_culling(args.occlusion);
                r.set_facing_culling(args.facing);
                let db = farview_render::psnr_rgb(&full, &frame);
                // The pair kept on disk is the worst one: the frame to open when the PSNR
                // column looks wrong.
                if i == 0 || db < worst_db {
                    worst_db = worst_db.min(db);
                    let out = PathBuf::from("target/bigmodels");
                    std::fs::create_dir_all(&out)?;
                    for (tag, f) in [("lod", &frame), ("full", &full)] {
                        image::save_buffer(
                            out.join(format!("{name}-{tag}.png")),
                            f,
                            args.width,
                            args.height,
                            image::ColorType::Rgba8,
                        )?;
                    }
                }
            }
        }
        let gpu_mib = r.stats().gpu_bytes as f64 / (1 << 20) as f64;
        let rss = farview_benches::rss_mib();
        let mut sorted = times.clone();
        sorted.sort();
        let pick = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
        let total: Duration = times.iter().sum();
        triangles.sort_unstable();
        occluded.sort_unstable();
        faced_away.sort_unstable();
        meshlets_culled.sort_unstable();
        rows.push(format!(
            "| {name} | {:.1} M | {:.1} M | {:.2} s | {:.2} s | {} | {:.1} | {:.1} | {:.1} | {:.2} M | {} | {:.2} M | {} | {:.2} M | {} | {:.0} | {:.0} | {:.0} |",
            source_triangles as f64 / 1e6,
            info.triangles as f64 / 1e6,
            import_s,
            upload_s,
            levels_s.map_or("at import".into(), |s| format!("{s:.2} s later")),
            times.len() as f64 / total.as_secs_f64(),
            pick(0.5).as_secs_f64() * 1e3,
            pick(0.99).as_secs_f64() * 1e3,
            triangles[triangles.len() / 2] as f64 / 1e6,
            occluded[occluded.len() / 2],
            faced_away[faced_away.len() / 2] as f64 / 1e6,
            meshlets_culled[meshlets_culled.len() / 2],
            full_triangles as f64 / 1e6,
            if worst_db.is_finite() {
                format!("{worst_db:.1}")
            } else {
                "identical".into()
            },
            rss - rss_before.min(rss),
            rss,
            gpu_mib,
        ));
        eprintln!("{}", rows.last().map_or("", String::as_str));
        drop(r);
        drop(scene);
    }
    println!(
        "\n| model | source tris | drawn tris (all nodes) | import | upload | levels | frames/s | p50 ms | p99 ms | tris/frame (median) | occluded draws + clusters (median) | tris faced away (median) | meshlets culled (median) | tris/frame at full detail (max of compared) | worst PSNR vs full detail (dB) | RSS added (MiB) | RSS (MiB) | GPU (MiB) |"
    );
    println!(
        "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for row in rows {
        println!("{row}");
    }
    Ok(())
}
