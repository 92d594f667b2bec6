//! The browser viewer against the native SDK, same host, same run: time to the first decoded
//! frame and command-to-frame latency (camera change sent -> first frame naming it received),
//! at 1280x720, 60 fps on loopback. The browser half is `tools/viewer-test/bench.mjs` in headless
//! Debian chromium (needs `npm ci` there). Prints a table for benches/README.md.
//!
//!     cargo run --release -p farview-benches --bin farview-viewer-bench -- [--probes 200]

use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use farview_client::{CameraPose, CameraPoseExt, ConnectOptions, Connection, summarize};
use farview_host::{Config, HostOptions, StreamConfig};

#[derive(Debug, Parser)]
struct Args {
    /// Model under the assets root.
    #[arg(long, default_value = "Fox/Fox.glb")]
    model: String,
    /// Camera changes measured per device.
    #[arg(long, default_value_t = 200)]
    probes: usize,
    /// Frame size and rate.
    #[arg(long, default_value_t = 1280)]
    width: u32,
    #[arg(long, default_value_t = 720)]
    height: u32,
    #[arg(long, default_value_t = 60.0)]
    fps: f32,
}

/// The native SDK: time from connect to the first frame, then the probes (as `farview-bench`).
async fn native(host: &farview_host::HostHandle, args: &Args) -> anyhow::Result<(f64, Vec<u64>)> {
    let t0 = Instant::now();
    let conn = Connection::connect(ConnectOptions::new(host.quic_addr, &host.fingerprint)?).await?;
    conn.next_frame().await?;
    let first_ms = t0.elapsed().as_secs_f64() * 1000.0;
    let model = conn.load_model(&args.model).await?;
    let pose = |a: f32| CameraPose::orbiting(&model, a);
    conn.set_camera(pose(0.0)).await?;
    for _ in 0..60 {
        conn.next_frame().await?;
    }
    let latencies = farview_benches::command_to_frame_probes(&conn, args.probes, |i| {
        pose(1.0 + i as f32 * 0.02)
    })
    .await?;
    conn.close().await;
    Ok((first_ms, latencies))
}

/// The browser: `bench.mjs` in headless chromium.
fn browser(host: &farview_host::HostHandle, args: &Args) -> anyhow::Result<serde_json::Value> {
    let dir = farview_benches::repo_root().join("tools/viewer-test");
    let url = format!(
        "http://{}/viewer?autoconnect=1&model={}",
        host.http_addr, args.model
    );
    let out = std::process::Command::new("node")
        .arg("bench.mjs")
        .current_dir(&dir)
        .env("VIEWER_URL", url)
        .env("PROBES", args.probes.to_string())
        .output()
        .context("running node (needs nodejs, chromium and `npm ci` in tools/viewer-test)")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .with_context(|| {
            format!(
                "no report from bench.mjs: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    let report: serde_json::Value = serde_json::from_str(line)?;
    anyhow::ensure!(
        report["ok"] == true,
        "browser bench failed: {}",
        report["error"]
    );
    Ok(report)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let data = tempfile::tempdir()?;
    let mut config = Config {
        // Machines without a GPU (CI) render on the software rasterizer.
        allow_software_adapter: true,
        data_dir: data.path().into(),
        quic_addr: "127.0.0.1:0".parse()?,
        http_addr: "127.0.0.1:0".parse()?,
        assets_root: farview_benches::assets_root(),
        stream: StreamConfig {
            width: args.width,
            height: args.height,
            fps: args.fps,
            ..StreamConfig::default()
        },
        ..Config::default()
    };
    // Streams here name no session.
    config.sessions.allow_sessionless = true;
    let host = farview_host::start(config, HostOptions::default()).await?;
    let (native_first, native_lat) = native(&host, &args).await?;
    let report = tokio::task::block_in_place(|| browser(&host, &args))?;
    let browser_lat: Vec<u64> = report["latenciesMs"]
        .as_array()
        .context("latencies")?
        .iter()
        .filter_map(|v| v.as_f64())
        .map(|ms| (ms * 1000.0) as u64)
        .collect();
    let browser_first = report["firstFrameMs"].as_f64().unwrap_or(f64::NAN);
    let (n, b) = (summarize(&native_lat), summarize(&browser_lat));
    println!(
        "farview-viewer-bench: {} at {}x{}, {} fps, adapter {}, loopback",
        args.model, args.width, args.height, args.fps, host.adapter
    );
    println!("| device | first frame ms | probes | command-to-frame p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|---:|");
    println!(
        "| native SDK (QUIC) | {native_first:.0} | {} | {:.2} | {:.2} | {:.2} |",
        native_lat.len(),
        n.p50_ms,
        n.p99_ms,
        n.max_ms
    );
    println!(
        "| browser viewer (WebTransport, headless chromium) | {browser_first:.0} | {} | {:.2} | {:.2} | {:.2} |",
        browser_lat.len(),
        b.p50_ms,
        b.p99_ms,
        b.max_ms
    );
    println!(
        "(first frame: native from connect; browser from navigation start, page load and WebTransport set-up included)"
    );
    host.shutdown().await;
    Ok(())
}
