//! Shared helpers for Farview's criterion benches and the `farview-bench` binary.

use std::path::PathBuf;

/// Generated big glTF models (#15): a city, a scan-like mesh and a million-node hierarchy.
pub mod bigmodels;
pub mod clips;
pub mod golden;
pub mod rd;

use farview_render::Camera;
use farview_scene::{ImportLimits, ModelInfo, Scene};
use glam::Vec3;

/// The repository's `assets/` directory.
pub fn assets_root() -> PathBuf {
    repo_root().join("assets")
}

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Loads a model from `assets/` into a new scene.
pub fn scene_with(path: &str) -> anyhow::Result<(Scene, ModelInfo)> {
    let model = farview_scene::import_file(&assets_root(), path, &ImportLimits::default())?;
    let mut scene = Scene::default();
    let info = scene.add_model(path, model)?;
    Ok((scene, info))
}

/// A camera framing the model's bounds from the front, slightly above.
pub fn framing_camera(info: &ModelInfo) -> Camera {
    let c = info.bounds.center();
    let r = (info.bounds.size().length() * 0.5).max(1e-3);
    let fov = 45f32.to_radians();
    let d = r / (fov * 0.5).sin() * 1.1;
    Camera::looking_at(
        c + Vec3::new(0.3, 0.3, 1.0).normalize() * d,
        c,
        fov,
        (d - r).max(d * 0.01) * 0.5,
        (d + r) * 2.0,
    )
}

/// Now on the wall clock, in microseconds since the Unix epoch (frame receipt times use it).
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Command-to-frame latency, in microseconds, of `probes` camera changes 20 ms apart (an app
/// moving at human speed): from just before the SDK sends the change to the moment the first
/// frame reflecting it (header `last_command_seq` >= its seq) is fully received.
pub async fn command_to_frame_probes(
    conn: &farview_client::Connection,
    probes: usize,
    pose: impl Fn(usize) -> farview_client::CameraPose,
) -> anyhow::Result<Vec<u64>> {
    let mut latencies = Vec::with_capacity(probes);
    for i in 0..probes {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let t0 = now_us();
        let pending = conn
            .submit(farview_client::Request::SetCamera { pose: pose(i) })
            .await?;
        let seq = pending.seq();
        loop {
            let f = conn.next_frame().await?;
            if f.header.last_command_seq >= seq {
                latencies.push(f.received_us.saturating_sub(t0));
                break;
            }
        }
        pending.reply().await?;
    }
    Ok(latencies)
}

/// This process's resident memory, MiB (from `/proc/self/status`; NaN where there is none).
pub fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}
