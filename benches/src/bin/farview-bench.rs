//! `farview-bench`: the whole system in one process — a host on loopback and an SDK client —
//! streaming an orbit of a model, then a table of frames/s, per-stage times and per-frame latency.
//!
//! ```text
//! cargo run --release -p farview-benches --bin farview-bench -- --frames 600 --fps 240
//! ```
//! With `--fps` above what the machine can do, the pipeline runs free and the frame interval
//! shows whether stages overlap: it should approach the slowest stage, not their sum.

use clap::Parser;
use farview_client::{
    CameraPose, CameraPoseExt, ConnectOptions, Connection, FrameTimings, summarize,
};
use farview_host::{Config, HostOptions, QualityChoice, StreamConfig};

#[derive(Debug, Parser)]
struct Args {
    /// Model under the assets root.
    #[arg(long, default_value = "Fox/Fox.glb")]
    model: String,
    /// Assets root (default: the repository's assets/; the shared corpus for its models).
    #[arg(long)]
    assets: Option<std::path::PathBuf>,
    /// Picture quality: auto, high, medium, fast.
    #[arg(long, default_value = "auto")]
    quality: String,
    /// Frames to measure (after a warm-up of 30).
    #[arg(long, default_value_t = 600)]
    frames: usize,
    /// Target frame rate of the host.
    #[arg(long, default_value_t = 60.0)]
    fps: f32,
    #[arg(long, default_value_t = 1280)]
    width: u32,
    #[arg(long, default_value_t = 720)]
    height: u32,
    /// Adapter: auto, software, gl, vulkan, hardware.
    #[arg(long, default_value = "auto")]
    adapter: String,
    /// Where RGBA becomes I420: auto (GPU on hardware, CPU on software adapters), gpu, cpu.
    #[arg(long, default_value = "auto")]
    conversion: String,
    /// Render a frame on every tick (the pacing before frames followed input), instead of the
    /// default: a change starts its frame at once, within the frame-rate cap.
    #[arg(long)]
    constant_rate: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FARVIEW_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let data = tempfile::tempdir()?;
    let mut config = Config {
        // Machines without a GPU (CI) render on the software rasterizer.
        allow_software_adapter: true,
        data_dir: data.path().into(),
        quic_addr: "127.0.0.1:0".parse()?,
        http_addr: "127.0.0.1:0".parse()?,
        assets_root: args
            .assets
            .clone()
            .unwrap_or_else(farview_benches::assets_root),
        render: farview_host::RenderConfig {
            quality: match args.quality.as_str() {
                "high" => QualityChoice::High,
                "medium" => QualityChoice::Medium,
                "fast" => QualityChoice::Fast,
                _ => QualityChoice::Auto,
            },
            ..farview_host::RenderConfig::default()
        },
        adapter: args.adapter.clone(),
        stream: StreamConfig {
            width: args.width,
            height: args.height,
            fps: args.fps,
            color_conversion: match args.conversion.as_str() {
                "gpu" => farview_host::ColorConversion::Gpu,
                "cpu" => farview_host::ColorConversion::Cpu,
                _ => farview_host::ColorConversion::Auto,
            },
            skip_unchanged_frames: !args.constant_rate,
            ..StreamConfig::default()
        },
        ..Config::default()
    };
    // Streams here name no session.
    config.sessions.allow_sessionless = true;
    let host = farview_host::start(config, HostOptions::default()).await?;
    let conn = Connection::connect(ConnectOptions::new(host.quic_addr, &host.fingerprint)?).await?;
    let model = conn.load_model(&args.model).await?;
    let pose = |a: f32| CameraPose::orbiting(&model, a);
    conn.set_camera(pose(0.0)).await?;
    for _ in 0..30 {
        conn.next_frame().await?;
    }
    let mut timings = Vec::with_capacity(args.frames);
    let mut intervals = Vec::with_capacity(args.frames);
    let (mut bytes, mut first_number, mut last_number, mut last_rx) = (0usize, None, 0u64, 0u64);
    for i in 0..args.frames {
        let f = conn.next_frame().await?;
        if last_rx > 0 {
            intervals.push(f.received_us.saturating_sub(last_rx));
        }
        last_rx = f.received_us;
        first_number.get_or_insert(f.header.frame_number);
        last_number = f.header.frame_number;
        bytes += f.data.len();
        timings.push(FrameTimings::of(&f));
        // Camera moves every frame so the encoder never sees a static image.
        let set = conn.set_camera(pose(i as f32 * 0.01));
        set.await?;
    }
    let secs = intervals.iter().sum::<u64>() as f64 / 1e6;
    let fps = intervals.len() as f64 / secs;
    let stage = |f: fn(&FrameTimings) -> u64| summarize(&timings.iter().map(f).collect::<Vec<_>>());
    let rows = [
        ("render+readback", stage(|t| t.render_us)),
        ("convert+encode", stage(|t| t.encode_us)),
        ("host queue", stage(|t| t.queue_us)),
        ("network", stage(|t| t.network_us)),
        ("latency", stage(|t| t.total_us)),
        ("frame interval", summarize(&intervals)),
    ];
    let slowest = rows[..2].iter().map(|(_, s)| s.mean_ms).fold(0.0, f64::max);
    let sum = rows[..2].iter().map(|(_, s)| s.mean_ms).sum::<f64>();
    let dropped = (last_number - first_number.unwrap_or(0) + 1) as usize - args.frames;
    println!(
        "farview-bench: {} at {}x{}, target {} fps, adapter {}, colour conversion {}, quality {}",
        args.model, args.width, args.height, args.fps, host.adapter, args.conversion, args.quality
    );
    println!(
        "frames {}   frames/s {:.1}   {:.2} Mbit/s   host frames not sent {}",
        args.frames,
        fps,
        bytes as f64 * 8.0 / secs / 1e6,
        dropped
    );
    println!("| stage | mean ms | p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|");
    for (name, s) in rows {
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} | {:.2} |",
            s.mean_ms, s.p50_ms, s.p99_ms, s.max_ms
        );
    }
    let interval = 1000.0 / fps;
    println!(
        "frame interval {interval:.2} ms vs slowest stage {slowest:.2} ms (ratio {:.2}) and sum of stages {sum:.2} ms",
        interval / slowest
    );

    let latencies =
        farview_benches::command_to_frame_probes(&conn, 200, |i| pose(1.0 + i as f32 * 0.02))
            .await?;
    let l = summarize(&latencies);
    println!(
        "command-to-frame latency (camera change sent -> first frame showing it received), {} probes at {} fps ({}): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; p50 / sum of stages {:.2}",
        latencies.len(),
        args.fps,
        if args.constant_rate {
            "a frame every tick"
        } else {
            "frames follow input"
        },
        l.p50_ms,
        l.p99_ms,
        l.max_ms,
        l.p50_ms / sum
    );
    conn.close().await;
    host.shutdown().await;
    Ok(())
}
