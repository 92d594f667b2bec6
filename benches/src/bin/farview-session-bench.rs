//! `farview-session-bench`: the session figures of issue #3 in one process — a host on loopback,
//! the SDK's session client and devices — printed as a table.
//!
//! ```text
//! cargo run --release -p farview-benches --bin farview-session-bench
//! ```
//! - time from `POST /v1/sessions` to `ready`, with no model and with `assets/Fox`;
//! - time from starting the QUIC connect to the first frame decoded (openh264's decoder);
//! - `GET /v1/sessions/{id}` requests/s on loopback;
//! - the process's resident memory with 0 and 1 live sessions, over 20 create/connect/stop
//!   cycles, and once every session has ended and the host has idled for 15 s (host and client
//!   share the process; the client's part is small).

use std::time::{Duration, Instant};

use clap::Parser;
use farview_client::{CreateSession, SessionClient, summarize};
use farview_host::{Config, HostOptions};

#[derive(Debug, Parser)]
struct Args {
    /// Runs of each timing.
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// Create/connect/stop cycles for the memory figure.
    #[arg(long, default_value_t = 20)]
    cycles: usize,
    /// Seconds of GET load.
    #[arg(long, default_value_t = 3.0)]
    get_secs: f64,
    /// Concurrent GET clients.
    #[arg(long, default_value_t = 4)]
    get_clients: usize,
    /// Adapter: auto, software, gl, vulkan, hardware.
    #[arg(long, default_value = "auto")]
    adapter: String,
    /// Leave glibc's malloc arenas uncapped (to compare).
    #[arg(long)]
    default_arenas: bool,
}

const KEY: &str = "bench-key";
/// How long the host idles after its last session ended before the last RSS figure.
const ENDED_IDLE: Duration = Duration::from_secs(15);

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

/// A ready session of `size` with a device connected, the Fox loaded and `frames` received.
async fn streaming_session(
    api: &SessionClient,
    size: &str,
    frames: usize,
) -> anyhow::Result<(farview_client::SessionInfo, farview_client::Connection)> {
    let s = api
        .create_session(&CreateSession::new("0:10:0", size))
        .await?;
    let s = api
        .session(&s.id)
        .wait_ready(Duration::from_secs(60))
        .await?;
    let conn = api.connect(&s).await?;
    conn.load_model("Fox/Fox.glb").await?;
    for _ in 0..frames {
        conn.next_frame().await?;
    }
    Ok((s, conn))
}

fn ms(d: Duration) -> u64 {
    d.as_micros() as u64
}

fn main() -> anyhow::Result<()> {
    // As the host binary does (see farview_host::limit_malloc_arenas); `--default-arenas` shows
    // what happens without it.
    if !std::env::args().any(|a| a == "--default-arenas") {
        farview_host::limit_malloc_arenas();
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FARVIEW_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
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
        assets_root: farview_benches::assets_root(),
        adapter: args.adapter.clone(),
        ..Config::default()
    };
    config.sessions.api_keys = vec![KEY.into()];
    config.sessions.allow_sessionless = false;
    let size = config
        .sessions
        .sizes
        .get("standard")
        .map(|s| format!("{}x{}@{}", s.width, s.height, s.fps))
        .unwrap_or_default();
    let host = farview_host::start(config, HostOptions::default()).await?;
    let api = SessionClient::new(&format!("http://{}", host.http_addr), KEY)?;
    let rss_idle = farview_benches::rss_mib();
    let threads_idle = threads();

    // POST → ready, with and without a model; and connect → first decoded frame.
    let mut ready_empty = Vec::new();
    let mut ready_model = Vec::new();
    let mut first_frame = Vec::new();
    for run in 0..args.runs * 2 {
        let with_model = run % 2 == 1;
        let mut req = CreateSession::new("0:10:0", "standard");
        if with_model {
            req.models = vec!["Fox/Fox.glb".into()];
        }
        let t0 = Instant::now();
        let s = api.create_session(&req).await?;
        // Poll tightly (the SDK's wait_ready polls every 50 ms, too coarse to time).
        let s = loop {
            let p = api.session(&s.id).properties().await?;
            match p.status.as_str() {
                "starting" if t0.elapsed() < Duration::from_secs(60) => {
                    tokio::time::sleep(Duration::from_millis(1)).await
                }
                "ready" => break p,
                other => anyhow::bail!("session {} is {other}: {:?}", p.id, p.stop_reason),
            }
        };
        let ready = t0.elapsed();
        if with_model {
            ready_model.push(ms(ready));
        } else {
            ready_empty.push(ms(ready));
        }
        let t1 = Instant::now();
        let conn = api.connect(&s).await?;
        let mut decoder = openh264::decoder::Decoder::new()?;
        loop {
            let f = conn.next_frame().await?;
            if decoder.decode(&f.data)?.is_some() {
                break;
            }
        }
        first_frame.push(ms(t1.elapsed()));
        conn.close().await;
        api.session(&s.id).stop().await?;
    }

    // GET /v1/sessions/{id} throughput against a live session.
    let (s, conn) = streaming_session(&api, "standard", 60).await?;
    let rss_one = farview_benches::rss_mib();
    // The device keeps reading while the API is under load, as it would in use.
    let reader = tokio::spawn(async move { while conn.next_frame().await.is_ok() {} });
    let deadline = Instant::now() + Duration::from_secs_f64(args.get_secs);
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..args.get_clients {
        let api = api.clone();
        let id = s.id.clone();
        clients.spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                if api.session(&id).properties().await.is_ok() {
                    n += 1;
                }
            }
            n
        });
    }
    let t = Instant::now();
    let mut gets = 0u64;
    while let Some(n) = clients.join_next().await {
        gets += n?;
    }
    let get_rate = gets as f64 / t.elapsed().as_secs_f64();
    api.session(&s.id).stop().await?;
    let _ = reader.await;

    // Memory across cycles.
    let mut rss_cycles = Vec::new();
    let mut thread_counts = Vec::new();
    for _ in 0..args.cycles {
        let (s, conn) = streaming_session(&api, "standard", 10).await?;
        conn.close().await;
        api.session(&s.id).stop().await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
        rss_cycles.push(farview_benches::rss_mib());
        thread_counts.push(threads());
    }

    println!(
        "farview-session-bench: size standard {size}, adapter {}, {} runs each",
        host.adapter, args.runs
    );
    println!("| figure | p50 | p99 | max |");
    println!("|---|---:|---:|---:|");
    for (name, v) in [
        ("POST → ready, no model (ms)", &ready_empty),
        ("POST → ready, Fox.glb (ms)", &ready_model),
        ("QUIC connect → first decoded frame (ms)", &first_frame),
    ] {
        let s = summarize(v);
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} |",
            s.p50_ms, s.p99_ms, s.max_ms
        );
    }
    println!(
        "GET /v1/sessions/{{id}}: {get_rate:.0} requests/s ({} clients, {:.0} s, one live session streaming)",
        args.get_clients, args.get_secs
    );
    let after = |n: usize| {
        rss_cycles
            .get(n.saturating_sub(1))
            .copied()
            .unwrap_or(f64::NAN)
    };
    println!(
        "RSS MiB: idle host {rss_idle:.1} | 1 live session streaming {rss_one:.1} | after cycle 1 {:.1}, 5 {:.1}, 10 {:.1}, {} {:.1}",
        after(1),
        after(5),
        after(10),
        args.cycles,
        after(args.cycles)
    );
    // Memory per session at each size: RSS growth and the renderer's GPU bytes, one live
    // session streaming the Fox.
    let mut per_size = Vec::new();
    for size in ["standard", "premium"] {
        let before = farview_benches::rss_mib();
        let (s, conn) = streaming_session(&api, size, 60).await?;
        let gpu = conn.stats().await?.gpu_bytes;
        let info = conn.stream_info().clone();
        let during = farview_benches::rss_mib();
        conn.close().await;
        api.session(&s.id).stop().await?;
        per_size.push((size, info.width, info.height, during - before, gpu));
    }
    // Every session has ended. The host gives back the heap its sessions freed a couple of
    // seconds after one ends, at most every 10 s; the idle figure is taken after that.
    let rss_ended_at_once = farview_benches::rss_mib();
    tokio::time::sleep(ENDED_IDLE).await;
    let rss_ended_idle = farview_benches::rss_mib();
    for (size, w, h, rss, gpu) in per_size {
        println!(
            "per session, {size} {w}x{h}: host RSS +{rss:.1} MiB, renderer GPU memory {:.1} MiB",
            gpu as f64 / (1 << 20) as f64
        );
    }
    println!(
        "threads: idle host {threads_idle} | after cycle 1 {} | after cycle {} {}",
        thread_counts.first().copied().unwrap_or(0),
        args.cycles,
        thread_counts.last().copied().unwrap_or(0)
    );
    println!(
        "RSS MiB, every session ended: at once {rss_ended_at_once:.1} | idle {}s later {rss_ended_idle:.1} (idle host at start {rss_idle:.1})",
        ENDED_IDLE.as_secs()
    );
    host.shutdown().await;
    Ok(())
}
