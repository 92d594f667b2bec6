//! Shared set-up for the host's end-to-end tests: a host in-process on free loopback ports,
//! rendering on the machine's real adapter (Mesa's software rasterizer where there is no GPU).

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub,
    missing_docs
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use farview_client::{CameraPose, CameraPoseExt, ConnectOptions, Connection, LoadedModel};
use farview_host::{Config, FrameTap, HostHandle, HostOptions, StreamConfig};
use farview_render::{AdapterChoice, Environment, GpuContext};

pub const WIDTH: u32 = 640;
pub const HEIGHT: u32 = 360;
pub const MODEL: &str = "BoxTextured/BoxTextured.gltf";

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// One device for every test in the binary: opening an adapter costs more than a test.
pub fn gpu() -> GpuContext {
    static GPU: OnceLock<GpuContext> = OnceLock::new();
    GPU.get_or_init(|| {
        let choice = std::env::var("FARVIEW_ADAPTER")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(AdapterChoice::Auto);
        GpuContext::new(choice)
            .expect("a GPU adapter (install mesa-vulkan-drivers on machines without a GPU)")
    })
    .clone()
}

/// The default environment (the neutral sky), prefiltered once for every host in the binary:
/// prefiltering costs seconds on a software rasterizer.
pub fn default_environment() -> Environment {
    static ENV: OnceLock<Environment> = OnceLock::new();
    ENV.get_or_init(|| Environment::load_default(&gpu()).expect("the neutral sky prefilters"))
        .clone()
}

pub struct TestHost {
    pub handle: HostHandle,
    pub tap: FrameTap,
    pub assets: PathBuf,
    _dirs: Vec<tempfile::TempDir>,
}

impl TestHost {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        Self::start_full(tweak, None, None).await
    }

    /// A host on `data` (a data directory to reuse across restarts) with an optional clock.
    pub async fn start_full(
        tweak: impl FnOnce(&mut Config),
        data: Option<PathBuf>,
        clock: Option<std::sync::Arc<dyn farview_host::Clock>>,
    ) -> Self {
        Self::start_tapped(tweak, data, clock, 16).await
    }

    async fn start_tapped(
        tweak: impl FnOnce(&mut Config),
        data: Option<PathBuf>,
        clock: Option<std::sync::Arc<dyn farview_host::Clock>>,
        frames: usize,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = data.unwrap_or_else(|| dir.path().to_path_buf());
        let mut config = Config {
            data_dir,
            quic_addr: "127.0.0.1:0".parse().unwrap(),
            http_addr: "127.0.0.1:0".parse().unwrap(),
            assets_root: repo_root().join("assets"),
            stream: StreamConfig {
                width: WIDTH,
                height: HEIGHT,
                fps: 30.0,
                bitrate_bps: 4_000_000,
                // Most tests count frames of a still view: a frame on every tick. Tests of
                // input-driven pacing (the default) turn it back on.
                skip_unchanged_frames: false,
                ..StreamConfig::default()
            },
            ..Config::default()
        };
        // Streams here name no session.
        config.sessions.allow_sessionless = true;
        tweak(&mut config);
        let assets = config.assets_root.clone();
        // The shared copy stands in only for the default the host would make itself.
        let environment = (config.render.environment == "neutral_sky").then(default_environment);
        let tap = FrameTap::new(frames);
        let handle = farview_host::start(
            config,
            HostOptions {
                frame_tap: Some(tap.clone()),
                gpu: Some(gpu()),
                clock,
                default_environment: environment,
            },
        )
        .await
        .expect("host starts");
        Self {
            handle,
            tap,
            assets,
            _dirs: vec![dir],
        }
    }

    pub async fn connect(&self) -> Connection {
        Connection::connect(self.options()).await.expect("connect")
    }

    /// Shuts the host down and waits (at most 10 s) until no render or encode thread is left
    /// in this process: one still inside the GL driver when the test binary exits corrupts the
    /// heap there now and then.
    pub async fn finish(self) {
        self.handle.shutdown().await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while farview_host::running_stage_threads() > 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    pub fn options(&self) -> ConnectOptions {
        ConnectOptions::new(self.handle.quic_addr, &self.handle.fingerprint).unwrap()
    }
}

/// A pose that frames the model's bounds from the front-right.
pub fn framing_pose(model: &LoadedModel, angle: f32) -> CameraPose {
    let c: Vec<f32> = (0..3)
        .map(|i| (model.bounds_min[i] + model.bounds_max[i]) * 0.5)
        .collect();
    let r = (0..3)
        .map(|i| (model.bounds_max[i] - model.bounds_min[i]).powi(2))
        .sum::<f32>()
        .sqrt()
        * 0.5;
    let d = r / (22.5f32.to_radians()).sin() * 1.1;
    CameraPose::looking_at(
        [
            c[0] + d * angle.sin(),
            c[1] + d * 0.4,
            c[2] + d * angle.cos(),
        ],
        [c[0], c[1], c[2]],
    )
}

pub fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Fails (not skips) when ffmpeg is missing: `.ci/run` installs it, and these tests are the proof
/// that the stream decodes.
pub fn require_ffmpeg() {
    assert!(
        have("ffmpeg") && have("ffprobe"),
        "ffmpeg/ffprobe not found: install Debian's ffmpeg package"
    );
}

/// `ffprobe -count_frames` on a raw H.264 file.
pub fn ffprobe_frames(path: &Path) -> (u64, u32, u32) {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=nb_read_frames,width,height",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ffprobe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let parts: Vec<&str> = text.trim().split(',').collect();
    assert_eq!(parts.len(), 3, "unexpected ffprobe output {text:?}");
    (
        parts[2].parse().unwrap(),
        parts[0].parse().unwrap(),
        parts[1].parse().unwrap(),
    )
}

/// Decodes every frame to RGBA with ffmpeg, told the stream is BT.709 limited range.
pub fn ffmpeg_decode_rgba(path: &Path, width: u32, height: u32) -> Vec<Vec<u8>> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args([
            "-vf",
            "scale=in_color_matrix=bt709:in_range=tv:out_range=pc:flags=accurate_rnd+full_chroma_int+bicubic,format=rgba",
            "-f",
            "rawvideo",
            "-",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ffmpeg failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "ffmpeg reported decode errors: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let frame = (width * height * 4) as usize;
    assert_eq!(out.stdout.len() % frame, 0);
    out.stdout.chunks(frame).map(<[u8]>::to_vec).collect()
}

/// Fraction of pixels that differ from the most common colour (the background) by more than 24
/// in any channel.
pub fn foreground_fraction(rgba: &[u8]) -> f64 {
    let mut counts = std::collections::HashMap::new();
    for p in rgba.chunks_exact(4) {
        *counts.entry([p[0] / 8, p[1] / 8, p[2] / 8]).or_insert(0u32) += 1;
    }
    let bg = counts
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(c, _)| c)
        .unwrap();
    let bg = [
        bg[0] as i32 * 8 + 4,
        bg[1] as i32 * 8 + 4,
        bg[2] as i32 * 8 + 4,
    ];
    let fg = rgba
        .chunks_exact(4)
        .filter(|p| (0..3).any(|i| (p[i] as i32 - bg[i]).abs() > 24))
        .count();
    fg as f64 / (rgba.len() / 4) as f64
}

impl TestHost {
    /// [`TestHost::start_with`], with a frame tap holding the last `frames` rendered frames (for
    /// tests that look up every frame they receive: on a loaded machine a device can receive a
    /// frame well after the host rendered it).
    pub async fn start_with_tap(tweak: impl FnOnce(&mut Config), frames: usize) -> Self {
        Self::start_tapped(tweak, None, None, frames).await
    }
}

/// One series' value from the host's Prometheus endpoint.
pub async fn metric(host: &TestHost, series: &str) -> f64 {
    let text = scrape(host).await;
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in /metrics"))
}

/// The body of `GET /metrics`.
pub async fn scrape(host: &TestHost) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(host.handle.http_addr)
        .await
        .unwrap();
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut resp = String::new();
    tcp.read_to_string(&mut resp).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("text/plain; version=0.0.4"));
    resp.split_once("\r\n\r\n").unwrap().1.to_owned()
}

/// The host's rendered RGBA of the first frame that reflects command `seq`.
pub async fn frame_after(conn: &Connection, host: &TestHost, seq: u64) -> Vec<u8> {
    loop {
        let f = conn.next_frame().await.unwrap();
        if f.header.last_command_seq >= seq
            && let Some(t) = host.tap.get(f.header.frame_number)
        {
            return t.rgba;
        }
    }
}
