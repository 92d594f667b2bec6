//! The host's configuration: one typed struct, layered by `figment`: the defaults, then a TOML
//! file, then environment variables, then command-line flags, each overriding the one before.
//!
//! Every key can come from the environment: `FARVIEW_<KEY>` for a top-level key and
//! `FARVIEW_<SECTION>__<KEY>` (two underscores) inside a section, for example
//! `FARVIEW_SESSIONS__ALLOW_SESSIONLESS=false` or `FARVIEW_RENDER__QUALITY=fast`; values are
//! parsed as TOML-like scalars or arrays (`FARVIEW_SESSIONS__API_KEYS='["a","b"]'`). Flags keep
//! their shorter variables (`FARVIEW_WIDTH`, `FARVIEW_API_KEYS`, ...), which win over these.
//! Defaults are safe for a host on a network: no sessionless streams, an API that is off until
//! keys are configured.
//!
//! Over 500 lines on purpose: the struct, its defaults, its validation and its flags stay in one
//! file so that adding a key touches one place and none of the four can be forgotten.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Parser;
use farview_render::{AdapterChoice, GpuSelector};
use serde::{Deserialize, Serialize};

/// Default QUIC (UDP) listen address.
pub const DEFAULT_QUIC_ADDR: &str = "127.0.0.1:4433";
/// Default HTTP (TCP) listen address.
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8080";

/// Everything the host needs to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the certificate, its fingerprint and (later) session records live.
    pub data_dir: PathBuf,
    /// QUIC listen address for devices.
    pub quic_addr: SocketAddr,
    /// The address devices are told to connect to (`host:port`, a name or an IP), for hosts
    /// behind NAT or bound to an unspecified address. Unset: the QUIC address, or, when that is
    /// `0.0.0.0` / `::`, the host name the API was reached by with the QUIC port (an
    /// unspecified address is never advertised).
    pub public_address: Option<String>,
    /// HTTP listen address (health, API).
    pub http_addr: SocketAddr,
    /// Models are loaded only from below this directory.
    pub assets_root: PathBuf,
    /// Which GPU adapter to render on: auto, hardware, software, vulkan, gl.
    pub adapter: String,
    /// Which GPU, on a machine with several: an index in PCI bus order (as `nvidia-smi`
    /// numbers them) or a PCI bus id (`0000:65:00.0`). One host per GPU: a second host on the
    /// same machine names another one. Unset: the best the adapter choice finds.
    pub gpu: Option<String>,
    /// Start on a software rasterizer (llvmpipe, lavapipe) when no GPU is found. Off by
    /// default: a host on a GPU VM whose driver is missing should fail at start, not stream
    /// at a tenth of the speed. `adapter = "software"` asks for one explicitly.
    pub allow_software_adapter: bool,
    /// Run as an Agones game server (`[agones]`).
    pub agones: AgonesConfig,
    /// Stream settings.
    pub stream: StreamConfig,
    /// Most devices streaming at once; more are refused.
    pub max_connections: usize,
    /// Sessions: leases, sizes, capacity, API keys.
    pub sessions: SessionsConfig,
    /// Bytes of model uploads the host holds at once for all devices together before they are
    /// loaded (each session size also caps one upload); a device past it is refused with
    /// `upload_budget_spent` instead of the host running out of memory.
    pub upload_budget_bytes: u64,
    /// A device connection with no packets for this long is dropped (the host pings every
    /// third of it, so only a vanished device hits it), and frees its place for others.
    pub quic_idle_timeout_ms: u64,
    /// How streams look when they start (devices change it with `SetLook`), and the picture
    /// quality their renderers get.
    pub render: RenderConfig,
    /// A certificate from a CA instead of the self-signed ones (`[tls]`).
    pub tls: TlsConfig,
}

/// Agones integration (`[agones]`): the host reports to the Agones SDK sidecar of its pod
/// (Ready, health, labels), creates the session an allocation asks for, and shuts down when it
/// ends, so the fleet replaces it. Off by default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgonesConfig {
    /// Talk to the Agones SDK server.
    pub enabled: bool,
    /// Its gRPC port on localhost. Unset: `AGONES_SDK_GRPC_PORT` (Agones sets it), else 9357.
    pub sdk_port: Option<u16>,
    /// How often the host sends a health ping while its render loops are alive.
    pub health_interval_ms: u64,
    /// A render loop that has not turned for this long counts as stuck: health pings stop,
    /// and Agones marks the game server unhealthy and replaces it.
    pub stall_after_ms: u64,
}

impl Default for AgonesConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            sdk_port: None,
            health_interval_ms: 2_000,
            stall_after_ms: 10_000,
        }
    }
}

/// A real certificate (`[tls]`): PEM files, for example from a domain's CA. Both set: the host
/// presents this chain to native devices (their fingerprint is its leaf's) and browsers alike
/// (which then trust it through their CAs and need no certificate hashes). Neither set: a
/// self-signed certificate in the data directory for native devices, short-lived rotating ones
/// for browsers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chain, leaf first (PEM).
    pub cert: Option<PathBuf>,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// Serve the HTTP API and the viewer page over HTTPS with this certificate (on
    /// `http_addr`). Needs `cert` and `key`. Off: plain HTTP, for a host behind a TLS-terminating
    /// proxy or on a private network.
    pub https: bool,
}

/// The look streams start with and the quality they render at (`[render]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RenderConfig {
    /// Environment that lights the scene: the name of a `<name>.hdr` file in
    /// `environments_dir`, or `none` (no image-based lighting). Prefiltered once at start; the
    /// host does not start if it cannot be loaded. `neutral_sky` falls back to the copy built
    /// into the host when the directory has no such file.
    pub environment: String,
    /// Where environments are looked up by name (devices name them in `SetLook`); default
    /// `<assets_root>/environments`.
    pub environments_dir: Option<PathBuf>,
    /// Draw the environment behind the scene instead of `background`.
    pub show_environment: bool,
    /// Background colour, linear RGB each in [0, 1], displayed as is. The default is the
    /// glTF Sample Viewer's grey (sRGB 0.2).
    pub background: [f32; 3],
    /// `khr_pbr_neutral`, `aces` or `none`.
    pub tone_mapping: ToneMappingChoice,
    /// Multiplies scene colour before tone mapping (> 0, at most 64).
    pub exposure: f32,
    /// `high` (per-pixel shading, 4x MSAA, 8x anisotropic filtering), `medium` (per-pixel
    /// shading only), `fast` (per-vertex shading) or `auto`: high on a GPU; on a software
    /// rasterizer high up to `high_quality_max_pixels` per frame and fast above (full shading
    /// costs too much there to hold 60 fps at 720p; see benches/README.md).
    pub quality: QualityChoice,
    /// In `quality = "auto"` on a software rasterizer, the largest frame (width x height)
    /// rendered at high quality.
    pub high_quality_max_pixels: u64,
}

/// How the host writes its log (`--log-format`, `FARVIEW_LOG_FORMAT`); `FARVIEW_LOG` filters it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (timestamp, level, target, fields, span).
    Json,
}

/// See [`RenderConfig::tone_mapping`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ToneMappingChoice {
    /// Khronos PBR Neutral (the glTF Sample Viewer's default).
    #[default]
    #[value(name = "khr_pbr_neutral")]
    KhrPbrNeutral,
    /// ACES filmic.
    Aces,
    /// Clamp only.
    None,
}

/// See [`RenderConfig::quality`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum QualityChoice {
    /// High on a GPU; on a software rasterizer high up to `high_quality_max_pixels`, fast
    /// above.
    #[default]
    Auto,
    /// Per-pixel shading, 4x MSAA and 8x anisotropic filtering.
    High,
    /// Per-pixel shading without MSAA or anisotropic filtering.
    Medium,
    /// Per-vertex shading, no MSAA.
    Fast,
}

impl Default for RenderConfig {
    fn default() -> Self {
        Self {
            environment: "neutral_sky".into(),
            environments_dir: None,
            show_environment: false,
            background: [0.0331; 3],
            tone_mapping: ToneMappingChoice::KhrPbrNeutral,
            exposure: 1.0,
            quality: QualityChoice::Auto,
            high_quality_max_pixels: 320 * 240,
        }
    }
}

impl RenderConfig {
    /// The environments directory: the configured one, else `<assets_root>/environments`.
    pub fn environments_dir(&self, assets_root: &Path) -> PathBuf {
        self.environments_dir
            .clone()
            .unwrap_or_else(|| assets_root.join("environments"))
    }

    /// The quality a `width` x `height` stream renders at, on a software rasterizer or not.
    pub fn quality_for(
        &self,
        width: u32,
        height: u32,
        software: bool,
    ) -> farview_render::RenderQuality {
        use farview_render::RenderQuality;
        let pixels = u64::from(width) * u64::from(height);
        match self.quality {
            QualityChoice::High => RenderQuality::HIGH,
            QualityChoice::Medium => RenderQuality::MEDIUM,
            QualityChoice::Fast => RenderQuality::FAST,
            QualityChoice::Auto if !software || pixels <= self.high_quality_max_pixels => {
                RenderQuality::HIGH
            }
            QualityChoice::Auto => RenderQuality::FAST,
        }
    }
}

/// Session management settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionsConfig {
    /// Sessions live at once (each owns a renderer and an encoder). 1 by default: a session owns
    /// the GPU, so its performance never varies for reasons outside its user's control.
    pub max_sessions: usize,
    /// Longest lease a session may ask for, `h:m:s`.
    pub max_lease: String,
    /// Days a session's record stays queryable after it ends.
    pub retention_days: u32,
    /// Serve devices that name no session (ad-hoc streams, as in the demo). Off by default:
    /// when on, anyone who reaches the QUIC port streams without a token, and the host warns
    /// at start.
    pub allow_sessionless: bool,
    /// Bearer tokens accepted by the HTTP API (also `FARVIEW_API_KEYS`, comma-separated). With
    /// none, every `/v1` request is refused.
    pub api_keys: Vec<String>,
    /// Session sizes by name.
    pub sizes: std::collections::BTreeMap<String, SizeConfig>,
}

/// What a session size gets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SizeConfig {
    /// Frame width.
    pub width: u32,
    /// Frame height.
    pub height: u32,
    /// Target frame rate.
    pub fps: f32,
    /// Encoder bitrate.
    pub bitrate_bps: u32,
    /// Most triangles the session's scene may hold; a load beyond it is refused.
    pub max_triangles: u64,
    /// Largest model a device may upload over QUIC, in bytes.
    #[serde(default = "default_max_upload_bytes")]
    pub max_upload_bytes: u64,
    /// Floor of the adaptive bitrate (`bitrate_bps` is its start and ceiling); 0 means
    /// `bitrate_bps / 8`.
    #[serde(default)]
    pub min_bitrate_bps: u32,
}

fn default_max_upload_bytes() -> u64 {
    64 << 20
}

impl Default for SessionsConfig {
    fn default() -> Self {
        let mut sizes = std::collections::BTreeMap::new();
        sizes.insert(
            "standard".to_owned(),
            SizeConfig {
                width: 1280,
                height: 720,
                fps: 60.0,
                bitrate_bps: 8_000_000,
                max_triangles: 2_000_000,
                max_upload_bytes: 64 << 20,
                min_bitrate_bps: 0,
            },
        );
        sizes.insert(
            "premium".to_owned(),
            SizeConfig {
                width: 1920,
                height: 1080,
                fps: 60.0,
                bitrate_bps: 16_000_000,
                max_triangles: 20_000_000,
                max_upload_bytes: 256 << 20,
                min_bitrate_bps: 0,
            },
        );
        Self {
            max_sessions: 1,
            max_lease: "24:0:0".into(),
            retention_days: 30,
            allow_sessionless: false,
            api_keys: Vec::new(),
            sizes,
        }
    }
}

/// Per-stream rendering and encoding settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamConfig {
    /// Frame width in pixels (even).
    pub width: u32,
    /// Frame height in pixels (even).
    pub height: u32,
    /// Target frame rate.
    pub fps: f32,
    /// Encoder bitrate in bits per second: the start and ceiling of the adaptive bitrate.
    pub bitrate_bps: u32,
    /// Floor of the adaptive bitrate; 0 means `bitrate_bps / 8`.
    pub min_bitrate_bps: u32,
    /// Seconds between forced IDR frames; 0 means only at start and on request.
    pub keyframe_interval_s: f32,
    /// Frames older than this (from render start) are not sent; the group is reset and the
    /// next frame is a keyframe. Bounds latency when the device cannot keep up.
    pub max_frame_age_ms: u64,
    /// Where RGBA becomes I420: `gpu` (a compute pass; readback moves 1.5 instead of 4 bytes per
    /// pixel and the CPU does no conversion), `cpu`, or `auto` (the default: the GPU on a
    /// hardware adapter, the CPU on a software rasterizer, where the compute pass measured 8x
    /// slower than the CPU path). Widths that are not a multiple of 8 always use the CPU.
    pub color_conversion: ColorConversion,
    /// Frame pacing: frames follow input. A change (a pose, a scene command) starts its frame as
    /// soon as it arrives, within the frame-rate cap, instead of waiting for the next tick; while
    /// neither the scene nor the camera changes and no keyframe is wanted nothing is rendered or
    /// sent, but one frame per second keeps the stream alive. On by default: command-to-frame
    /// drops by about half a frame interval, and a static view costs no GPU or bandwidth. Off:
    /// a frame on every tick, a constant rate.
    pub skip_unchanged_frames: bool,
    /// The H.264 encoder: `auto` (the default: the best backend this build has and this
    /// machine runs; today openh264) or `openh264`. Hardware backends (NVENC, VA-API) join
    /// through `farview_encode::create_encoder`; see `docs/encoders.md`.
    pub encoder: EncoderChoice,
    /// openh264 threads (0: as many as cores). More than one only helps with several slices
    /// per picture (`encoder_max_slice_bytes`); see `benches/README.md` for what it measured.
    pub encoder_threads: u16,
    /// Split each picture into slices of at most this many bytes; 0 (the default) keeps one
    /// slice per picture, the lowest latency.
    pub encoder_max_slice_bytes: u32,
    /// Largest error a level of detail of a large mesh may show, pixels (0: full detail
    /// always). The frame-time budget starts here and never goes below it.
    pub lod_error_px: f32,
    /// How far the frame-time budget may raise it when frames render slower than the frame
    /// rate, pixels (at most 64).
    pub max_lod_error_px: f32,
    /// Leave out draws hidden behind what was visible the frame before (on by default). Each
    /// frame with more than a few draws in view then waits mid-frame for a few kilobytes of
    /// depth (twice when little of its view was seen the frame before); turn it off where that
    /// wait costs more than the hidden draws (small scenes on a fast GPU).
    pub occlusion_culling: bool,
}

/// See [`StreamConfig::encoder`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EncoderChoice {
    /// The best backend available.
    #[default]
    Auto,
    /// openh264 (software).
    #[serde(rename = "openh264")]
    OpenH264,
}

impl EncoderChoice {
    /// The encode crate's name for it.
    pub fn kind(self) -> farview_encode::EncoderKind {
        match self {
            Self::Auto => farview_encode::EncoderKind::Auto,
            Self::OpenH264 => farview_encode::EncoderKind::OpenH264,
        }
    }
}

/// See [`StreamConfig::color_conversion`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColorConversion {
    /// GPU on hardware adapters, CPU on software ones.
    #[default]
    Auto,
    /// Always the GPU compute pass.
    Gpu,
    /// Always the CPU.
    Cpu,
}

impl ColorConversion {
    /// Whether to convert on the GPU on an adapter of this kind.
    pub fn on_gpu(self, software_adapter: bool) -> bool {
        match self {
            Self::Auto => !software_adapter,
            Self::Gpu => true,
            Self::Cpu => false,
        }
    }
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            width: 1280,
            height: 720,
            fps: 60.0,
            bitrate_bps: 8_000_000,
            min_bitrate_bps: 0,
            keyframe_interval_s: 0.0,
            max_frame_age_ms: 250,
            color_conversion: ColorConversion::Auto,
            skip_unchanged_frames: true,
            encoder: EncoderChoice::Auto,
            encoder_threads: 1,
            encoder_max_slice_bytes: 0,
            lod_error_px: 1.0,
            max_lod_error_px: 8.0,
            occlusion_culling: true,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("farview-data"),
            quic_addr: parse_addr(DEFAULT_QUIC_ADDR),
            public_address: None,
            http_addr: parse_addr(DEFAULT_HTTP_ADDR),
            assets_root: PathBuf::from("assets"),
            adapter: "auto".into(),
            gpu: None,
            allow_software_adapter: false,
            agones: AgonesConfig::default(),
            stream: StreamConfig::default(),
            max_connections: 4,
            sessions: SessionsConfig::default(),
            upload_budget_bytes: 512 << 20,
            quic_idle_timeout_ms: 10_000,
            render: RenderConfig::default(),
            tls: TlsConfig::default(),
        }
    }
}

/// The names of [`Config`]'s top-level keys, from its serialized defaults.
fn top_level_keys() -> Vec<String> {
    match serde_json::to_value(Config::default()) {
        Ok(serde_json::Value::Object(map)) => map.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

fn parse_addr(s: &str) -> SocketAddr {
    s.parse().unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)))
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The config file is not valid TOML for [`Config`].
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A value is out of range.
    #[error("invalid setting {field}: {message}")]
    Invalid {
        /// The setting.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
}

impl Config {
    /// Reads a TOML file over the defaults (no environment).
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        Self::layered(Some(path), false)
    }

    /// The defaults, then `file` if given, then (with `env`) the `FARVIEW_*` variables that name
    /// a setting. Variables that name none (`FARVIEW_LOG`, the flags' own `FARVIEW_WIDTH`, ...)
    /// are left to their readers; a variable inside a section that names no key is refused like
    /// an unknown key in the file.
    pub fn layered(file: Option<&Path>, env: bool) -> Result<Self, ConfigError> {
        use figment::Figment;
        use figment::providers::{Env, Format, Serialized, Toml};
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        let origin = file.map_or_else(|| PathBuf::from("<defaults>"), Path::to_path_buf);
        if let Some(path) = file {
            // Read here rather than by `Toml::file`, which treats a missing file as empty.
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.into(),
                source,
            })?;
            figment = figment.merge(Toml::string(&text));
        }
        if env {
            let top_level = top_level_keys();
            figment = figment.merge(Env::prefixed("FARVIEW_").split("__").filter(move |key| {
                let first = key.as_str().split('.').next().unwrap_or_default();
                top_level.iter().any(|k| k.eq_ignore_ascii_case(first))
            }));
        }
        figment.extract().map_err(|e| ConfigError::Parse {
            path: origin,
            message: e.to_string(),
        })
    }

    /// The adapter choice, parsed.
    pub fn adapter_choice(&self) -> Result<AdapterChoice, ConfigError> {
        self.adapter
            .parse()
            .map_err(|message| ConfigError::Invalid {
                field: "adapter",
                message,
            })
    }

    /// The `gpu` setting, parsed.
    pub fn gpu_selector(&self) -> Result<Option<GpuSelector>, ConfigError> {
        self.gpu
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|message| ConfigError::Invalid {
                field: "gpu",
                message,
            })
    }

    /// Whether a software rasterizer may be rendered on: allowed, or asked for by name.
    pub fn software_adapter_allowed(&self) -> bool {
        self.allow_software_adapter || self.adapter.eq_ignore_ascii_case("software")
    }

    /// Checks ranges so a bad value fails at start, not mid-stream.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let s = &self.stream;
        let invalid = |field, message: String| Err(ConfigError::Invalid { field, message });
        if let Some(a) = &self.public_address {
            let port_ok = a.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
            });
            if !port_ok || a.len() > 300 {
                return invalid(
                    "public_address",
                    format!("{a:?} must be host:port (a name or an IP, then the QUIC port)"),
                );
            }
        }
        self.gpu_selector()?;
        if !(0.0..=64.0).contains(&s.lod_error_px) || !(0.0..=64.0).contains(&s.max_lod_error_px) {
            return invalid(
                "stream",
                format!(
                    "lod_error_px ({}) and max_lod_error_px ({}) must be in 0..=64",
                    s.lod_error_px, s.max_lod_error_px
                ),
            );
        }
        let a = &self.agones;
        if a.enabled && (a.health_interval_ms == 0 || a.stall_after_ms < a.health_interval_ms) {
            return invalid(
                "agones",
                format!(
                    "health_interval_ms ({}) must be > 0 and at most stall_after_ms ({})",
                    a.health_interval_ms, a.stall_after_ms
                ),
            );
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return invalid(
                "tls",
                "set both tls.cert and tls.key (PEM files), or neither".into(),
            );
        }
        if self.tls.https && self.tls.cert.is_none() {
            return invalid(
                "tls.https",
                "HTTPS needs a certificate: set tls.cert and tls.key (PEM files)".into(),
            );
        }
        if !(16..=7680).contains(&s.width) || !s.width.is_multiple_of(2) {
            return invalid(
                "stream.width",
                format!("{} must be even, 16..=7680", s.width),
            );
        }
        if !(16..=4320).contains(&s.height) || !s.height.is_multiple_of(2) {
            return invalid(
                "stream.height",
                format!("{} must be even, 16..=4320", s.height),
            );
        }
        if !(s.fps.is_finite() && (1.0..=240.0).contains(&s.fps)) {
            return invalid("stream.fps", format!("{} must be in 1..=240", s.fps));
        }
        if !(100_000..=200_000_000).contains(&s.bitrate_bps) {
            return invalid(
                "stream.bitrate_bps",
                format!("{} must be in 100000..=200000000", s.bitrate_bps),
            );
        }
        if !(s.keyframe_interval_s.is_finite() && (0.0..=3600.0).contains(&s.keyframe_interval_s)) {
            return invalid(
                "stream.keyframe_interval_s",
                format!("{} must be in 0..=3600", s.keyframe_interval_s),
            );
        }
        if !(10..=60_000).contains(&s.max_frame_age_ms) {
            return invalid(
                "stream.max_frame_age_ms",
                format!("{} must be in 10..=60000", s.max_frame_age_ms),
            );
        }
        if !(1..=64).contains(&self.max_connections) {
            return invalid(
                "max_connections",
                format!("{} must be in 1..=64", self.max_connections),
            );
        }
        if let Err(e) = farview_session::parse_lease(&self.sessions.max_lease, u64::MAX) {
            return invalid("sessions.max_lease", e.to_string());
        }
        if !(1 << 20..=64 << 30).contains(&self.upload_budget_bytes) {
            return invalid(
                "upload_budget_bytes",
                format!(
                    "{} must be in 1048576..=68719476736",
                    self.upload_budget_bytes
                ),
            );
        }
        if !(500..=600_000).contains(&self.quic_idle_timeout_ms) {
            return invalid(
                "quic_idle_timeout_ms",
                format!("{} must be in 500..=600000", self.quic_idle_timeout_ms),
            );
        }
        let r = &self.render;
        if !farview_protocol::is_environment_name(&r.environment) {
            return invalid(
                "render.environment",
                format!(
                    "{:?} must be 1 to {} ASCII letters, digits, '_' or '-' (the name of a .hdr file in the environments directory), or \"none\"",
                    r.environment,
                    farview_protocol::MAX_ENVIRONMENT_NAME
                ),
            );
        }
        if !r
            .background
            .iter()
            .all(|c| c.is_finite() && (0.0..=1.0).contains(c))
        {
            return invalid(
                "render.background",
                format!("{:?} must be linear RGB, each in 0..=1", r.background),
            );
        }
        if !(r.exposure.is_finite()
            && r.exposure > 0.0
            && r.exposure <= farview_protocol::MAX_EXPOSURE)
        {
            return invalid(
                "render.exposure",
                format!(
                    "{} must be > 0 and at most {}",
                    r.exposure,
                    farview_protocol::MAX_EXPOSURE
                ),
            );
        }
        self.adapter_choice().map(|_| ())
    }
}

/// Command-line flags; each also reads a `FARVIEW_*` environment variable.
#[derive(Debug, Clone, Parser, Default)]
#[command(
    name = "farview-host",
    version,
    about = "Farview remote rendering host node"
)]
pub struct Cli {
    /// TOML config file (values there are overridden by env vars and flags).
    #[arg(long, env = "FARVIEW_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory (certificate, fingerprint).
    #[arg(long, env = "FARVIEW_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// QUIC listen address.
    #[arg(long, env = "FARVIEW_QUIC_ADDR")]
    pub quic_addr: Option<SocketAddr>,
    /// HTTP listen address.
    #[arg(long, env = "FARVIEW_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// Root directory of loadable models.
    #[arg(long, env = "FARVIEW_ASSETS_ROOT")]
    pub assets_root: Option<PathBuf>,
    /// GPU adapter: auto, hardware, software, vulkan, gl.
    #[arg(long, env = "FARVIEW_ADAPTER")]
    pub adapter: Option<String>,
    /// Which GPU: an index in PCI bus order or a PCI bus id.
    #[arg(long, env = "FARVIEW_GPU")]
    pub gpu: Option<String>,
    /// Start on a software rasterizer when no GPU is found (`true` or `false`).
    #[arg(long, env = "FARVIEW_ALLOW_SOFTWARE_ADAPTER")]
    pub allow_software_adapter: Option<bool>,
    /// Frame width.
    #[arg(long, env = "FARVIEW_WIDTH")]
    pub width: Option<u32>,
    /// Frame height.
    #[arg(long, env = "FARVIEW_HEIGHT")]
    pub height: Option<u32>,
    /// Target frames per second.
    #[arg(long, env = "FARVIEW_FPS")]
    pub fps: Option<f32>,
    /// Encoder bitrate in bits per second.
    #[arg(long, env = "FARVIEW_BITRATE")]
    pub bitrate: Option<u32>,
    /// Seconds between IDR frames (0: start and on request only).
    #[arg(long, env = "FARVIEW_KEYFRAME_INTERVAL")]
    pub keyframe_interval: Option<f32>,
    /// API bearer tokens, comma-separated (added to the config file's `sessions.api_keys`).
    #[arg(long, env = "FARVIEW_API_KEYS", hide_env_values = true)]
    pub api_keys: Option<String>,
    /// Most sessions at once.
    #[arg(long, env = "FARVIEW_MAX_SESSIONS")]
    pub max_sessions: Option<usize>,
    /// Environment streams start with: a `.hdr` file's name in the environments directory, or
    /// `none`.
    #[arg(long, env = "FARVIEW_ENVIRONMENT")]
    pub environment: Option<String>,
    /// Directory of environments (`<name>.hdr`); default `ASSETS_ROOT/environments`.
    #[arg(long, env = "FARVIEW_ENVIRONMENTS_DIR")]
    pub environments_dir: Option<PathBuf>,
    /// Draw the environment behind the scene (true or false).
    #[arg(long, env = "FARVIEW_SHOW_ENVIRONMENT")]
    pub show_environment: Option<bool>,
    /// Background colour as linear `R,G,B`, each in 0..=1.
    #[arg(long, env = "FARVIEW_BACKGROUND")]
    pub background: Option<String>,
    /// Tone mapping.
    #[arg(long, env = "FARVIEW_TONE_MAPPING", value_enum)]
    pub tone_mapping: Option<ToneMappingChoice>,
    /// Exposure (> 0, at most 64).
    #[arg(long, env = "FARVIEW_EXPOSURE")]
    pub exposure: Option<f32>,
    /// Render quality.
    #[arg(long, env = "FARVIEW_QUALITY", value_enum)]
    pub quality: Option<QualityChoice>,
    /// The address devices are told to connect to (`host:port`).
    #[arg(long, env = "FARVIEW_PUBLIC_ADDRESS")]
    pub public_address: Option<String>,
    /// Certificate chain (PEM) from a CA, for native devices and browsers alike.
    #[arg(long, env = "FARVIEW_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, env = "FARVIEW_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Serve the HTTP API over HTTPS with that certificate (`true` or `false`).
    #[arg(long, env = "FARVIEW_HTTPS")]
    pub https: Option<bool>,
    /// Serve devices that name no session (`true` or `false`; the demo turns it on).
    #[arg(long, env = "FARVIEW_ALLOW_SESSIONLESS")]
    pub allow_sessionless: Option<bool>,
    /// Log lines as text (the default) or one JSON object per line.
    #[arg(long, env = "FARVIEW_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Print the effective configuration as TOML (secrets masked) and exit.
    #[arg(long)]
    pub print_config: bool,
}

impl Cli {
    /// Builds the effective configuration: defaults, then the file, then env and flags.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let mut c = Config::layered(self.config.as_deref(), true)?;
        if let Some(v) = self.allow_sessionless {
            c.sessions.allow_sessionless = v;
        }
        if let Some(v) = self.data_dir {
            c.data_dir = v;
        }
        if let Some(v) = self.quic_addr {
            c.quic_addr = v;
        }
        if let Some(v) = self.http_addr {
            c.http_addr = v;
        }
        if let Some(v) = self.assets_root {
            c.assets_root = v;
        }
        if let Some(v) = self.adapter {
            c.adapter = v;
        }
        if let Some(v) = self.gpu {
            c.gpu = Some(v);
        }
        if let Some(v) = self.allow_software_adapter {
            c.allow_software_adapter = v;
        }
        if let Some(v) = self.width {
            c.stream.width = v;
        }
        if let Some(v) = self.height {
            c.stream.height = v;
        }
        if let Some(v) = self.fps {
            c.stream.fps = v;
        }
        if let Some(v) = self.bitrate {
            c.stream.bitrate_bps = v;
        }
        if let Some(v) = self.keyframe_interval {
            c.stream.keyframe_interval_s = v;
        }
        if let Some(keys) = self.api_keys {
            c.sessions.api_keys.extend(
                keys.split(',')
                    .map(str::trim)
                    .filter(|k| !k.is_empty())
                    .map(str::to_owned),
            );
        }
        if let Some(v) = self.max_sessions {
            c.sessions.max_sessions = v;
        }
        if let Some(v) = self.environment {
            c.render.environment = v;
        }
        if let Some(v) = self.environments_dir {
            c.render.environments_dir = Some(v);
        }
        if let Some(v) = self.show_environment {
            c.render.show_environment = v;
        }
        if let Some(v) = self.background {
            c.render.background = parse_rgb(&v).map_err(|message| ConfigError::Invalid {
                field: "render.background",
                message,
            })?;
        }
        if let Some(v) = self.tone_mapping {
            c.render.tone_mapping = v;
        }
        if let Some(v) = self.exposure {
            c.render.exposure = v;
        }
        if let Some(v) = self.quality {
            c.render.quality = v;
        }
        if let Some(v) = self.public_address {
            c.public_address = Some(v);
        }
        if let Some(v) = self.tls_cert {
            c.tls.cert = Some(v);
        }
        if let Some(v) = self.tls_key {
            c.tls.key = Some(v);
        }
        if let Some(v) = self.https {
            c.tls.https = v;
        }
        c.validate()?;
        Ok(c)
    }
}

/// `R,G,B` as three numbers.
fn parse_rgb(s: &str) -> Result<[f32; 3], String> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    let [r, g, b] = parts[..] else {
        return Err(format!("{s:?} must be three numbers, R,G,B"));
    };
    let num = |v: &str| {
        v.parse::<f32>()
            .map_err(|e| format!("{s:?} must be three numbers, R,G,B: {e}"))
    };
    Ok([num(r)?, num(g)?, num(b)?])
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, clippy::result_large_err)] // figment::Jail's closures return its error
mod tests {
    use super::*;

    /// Runs `f` with no `FARVIEW_*` variables, serialized with every other test that reads or
    /// sets the environment (`into_config` reads it).
    fn jailed(f: impl FnOnce(&mut figment::Jail)) {
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            f(jail);
            Ok(())
        });
    }

    #[test]
    fn defaults_are_valid_and_layers_override_in_order() {
        jailed(|_| {
            Config::default().validate().unwrap();
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("host.toml");
            std::fs::write(
                &file,
                "quic_addr = \"127.0.0.1:5000\"\n[stream]\nwidth = 640\nheight = 360\n",
            )
            .unwrap();
            let cli = Cli {
                config: Some(file.clone()),
                height: Some(480),
                ..Cli::default()
            };
            let c = cli.into_config().unwrap();
            assert_eq!(c.quic_addr.port(), 5000);
            assert_eq!(c.stream.width, 640);
            assert_eq!(c.stream.height, 480, "flag overrides file");
            assert_eq!(c.stream.fps, 60.0, "default kept");
        });
    }

    #[test]
    fn every_key_comes_from_the_environment_over_the_file() {
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_file(
                "host.toml",
                "[sessions]\nallow_sessionless = true\nmax_sessions = 3\n[stream]\nwidth = 640\n",
            )?;
            // A key without a flag, inside a section: was ignored before figment.
            jail.set_env("FARVIEW_SESSIONS__ALLOW_SESSIONLESS", "false");
            jail.set_env("FARVIEW_RENDER__QUALITY", "fast");
            jail.set_env("FARVIEW_SESSIONS__API_KEYS", "[\"k1\", \"k2\"]");
            jail.set_env("FARVIEW_UPLOAD_BUDGET_BYTES", "2097152");
            jail.set_env("FARVIEW_STREAM__OCCLUSION_CULLING", "false");
            // Variables that name no setting belong to other readers and are left alone.
            jail.set_env("FARVIEW_LOG", "debug");
            jail.set_env("FARVIEW_WIDTH", "1");
            let c = Cli {
                config: Some("host.toml".into()),
                height: Some(480),
                ..Cli::default()
            }
            .into_config()
            .unwrap();
            assert!(!c.sessions.allow_sessionless, "env overrides the file");
            assert_eq!(c.sessions.max_sessions, 3, "file kept where env is silent");
            assert_eq!(c.render.quality, QualityChoice::Fast);
            assert_eq!(c.sessions.api_keys, ["k1", "k2"]);
            assert_eq!(c.upload_budget_bytes, 2 << 20);
            assert_eq!((c.stream.width, c.stream.height), (640, 480));
            assert!(!c.stream.occlusion_culling);
            assert!(Config::default().stream.occlusion_culling);
            // The flag's own variable (read by clap into the flag) wins over both.
            let c = Cli {
                config: Some("host.toml".into()),
                allow_sessionless: Some(true),
                ..Cli::default()
            }
            .into_config()
            .unwrap();
            assert!(c.sessions.allow_sessionless);

            // A misspelt key inside a section is refused, naming it, like one in the file.
            jail.set_env("FARVIEW_SESSIONS__ALLOW_SESSIONLES", "true");
            let err = Cli::default().into_config().unwrap_err().to_string();
            assert!(err.contains("allow_sessionles"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn defaults_are_safe_on_a_network() {
        let c = Config::default();
        assert!(
            !c.sessions.allow_sessionless,
            "no token-less streams by default"
        );
        assert!(
            c.sessions.api_keys.is_empty(),
            "the API is off until keys exist"
        );
        assert!(c.quic_addr.ip().is_loopback() && c.http_addr.ip().is_loopback());
    }

    #[test]
    fn a_missing_config_file_is_an_error() {
        let err = Config::from_file(Path::new("/nonexistent/host.toml")).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }), "{err}");
    }

    #[test]
    fn new_limits_are_checked_at_start() {
        let field = |c: Config| match c.validate() {
            Err(ConfigError::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        let mut c = Config::default();
        c.sessions.max_lease = "forever".into();
        assert_eq!(field(c), "sessions.max_lease");
        let c = Config {
            upload_budget_bytes: 10,
            ..Config::default()
        };
        assert_eq!(field(c), "upload_budget_bytes");
        let c = Config {
            quic_idle_timeout_ms: 100,
            ..Config::default()
        };
        assert_eq!(field(c), "quic_idle_timeout_ms");
        let mut c = Config::default();
        c.render.environment = "../sky".into();
        assert_eq!(field(c), "render.environment");
        let mut c = Config::default();
        c.render.exposure = f32::NAN;
        assert_eq!(field(c), "render.exposure");
        let mut c = Config::default();
        c.render.background = [0.0, 2.0, 0.0];
        assert_eq!(field(c), "render.background");
    }

    #[test]
    fn the_render_section_reads_from_the_file_and_flags() {
        jailed(|_| {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("host.toml");
            std::fs::write(
                &file,
                "[render]\nenvironment = \"none\"\ntone_mapping = \"aces\"\nquality = \"fast\"\nbackground = [0.5, 0.25, 0.0]\n",
            )
            .unwrap();
            let c = Cli {
                config: Some(file.clone()),
                exposure: Some(2.0),
                ..Cli::default()
            }
            .into_config()
            .unwrap();
            assert_eq!(c.render.environment, "none");
            assert_eq!(c.render.tone_mapping, ToneMappingChoice::Aces);
            assert_eq!(c.render.quality, QualityChoice::Fast);
            assert_eq!(c.render.background, [0.5, 0.25, 0.0]);
            assert_eq!(c.render.exposure, 2.0);
            let c = Cli {
                background: Some("0.1, 0.2,0.3".into()),
                tone_mapping: Some(ToneMappingChoice::KhrPbrNeutral),
                ..Cli::default()
            }
            .into_config()
            .unwrap();
            assert_eq!(c.render.background, [0.1, 0.2, 0.3]);
            assert!(
                Cli {
                    background: Some("1,2".into()),
                    ..Cli::default()
                }
                .into_config()
                .is_err()
            );
            // Auto: high quality on a GPU; in software up to the pixel budget, fast above.
            let r = RenderConfig::default();
            assert_eq!(
                r.quality_for(1920, 1080, false),
                farview_render::RenderQuality::HIGH
            );
            assert_eq!(
                r.quality_for(320, 240, true),
                farview_render::RenderQuality::HIGH
            );
            assert_eq!(
                r.quality_for(1280, 720, true),
                farview_render::RenderQuality::FAST
            );
            assert_eq!(
                r.environments_dir(Path::new("/a")),
                PathBuf::from("/a/environments")
            );
        });
    }

    #[test]
    fn bad_values_and_unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("host.toml");
        std::fs::write(&file, "no_such_key = 1\n").unwrap();
        assert!(matches!(
            Config::from_file(&file),
            Err(ConfigError::Parse { .. })
        ));
        let c = Config {
            stream: StreamConfig {
                width: 641,
                ..StreamConfig::default()
            },
            ..Config::default()
        };
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Invalid {
                field: "stream.width",
                ..
            })
        ));
        let c = Config {
            adapter: "metal".into(),
            ..Config::default()
        };
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Invalid {
                field: "adapter",
                ..
            })
        ));
    }

    #[test]
    fn the_encoder_is_chosen_by_name_and_an_unknown_one_is_refused_naming_the_choices() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("host.toml");
        std::fs::write(&file, "[stream]\nencoder = \"openh264\"\n").unwrap();
        let c = Config::from_file(&file).unwrap();
        assert_eq!(c.stream.encoder, EncoderChoice::OpenH264);
        assert_eq!(Config::default().stream.encoder, EncoderChoice::Auto);
        std::fs::write(&file, "[stream]\nencoder = \"nvenc\"\n").unwrap();
        let e = Config::from_file(&file).unwrap_err().to_string();
        assert!(
            e.contains("nvenc") && e.contains("auto") && e.contains("openh264"),
            "{e}"
        );
    }
}
