//! `farview`: the command-line client, built only on the SDK.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use farview_client::{
    ClientError, ConnectOptions, Connection, CreateSession, FIT_VIEW_DIRECTION, FrameTimings,
    LookUpdate, Reply, Request, SessionClient, SessionInfo, ToneMapping, summarize,
};

#[derive(Debug, Parser)]
#[command(
    name = "farview",
    version,
    about = "Farview client: stream frames from a host"
)]
struct Cli {
    /// Session API base URL (the host's HTTP address).
    #[arg(long, global = true, env = "FARVIEW_API")]
    api: Option<String>,
    /// API key for the session API (sent as a bearer token).
    #[arg(long, global = true, env = "FARVIEW_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Connect, load a model, orbit the camera around it and write the H.264 stream to a file.
    Stream(StreamArgs),
    /// Create, inspect, extend and stop sessions through the host's session API.
    #[command(subcommand)]
    Session(SessionCommand),
}

#[derive(Debug, Subcommand)]
enum SessionCommand {
    /// Create a session and print it as JSON.
    Create {
        /// Maximum lease as h:m:s.
        #[arg(long)]
        lease: String,
        /// Size name from the host's config.
        #[arg(long, default_value = "standard")]
        size: String,
        /// Model to load before the session reports ready (repeatable).
        #[arg(long = "model")]
        models: Vec<String>,
        /// Use this id (idempotent PUT) instead of a host-chosen one.
        #[arg(long)]
        id: Option<String>,
        /// Wait until the session is ready (or fails) before printing it.
        #[arg(long)]
        wait: bool,
    },
    /// Print one session as JSON.
    Show {
        /// Session id.
        id: String,
    },
    /// Print live sessions as a JSON array.
    List {
        /// Include stopped, expired and failed sessions still retained.
        #[arg(long)]
        all: bool,
    },
    /// Set a live session's lease (h:m:s from creation) and print it.
    Extend {
        /// Session id.
        id: String,
        /// New maximum lease as h:m:s.
        #[arg(long)]
        lease: String,
    },
    /// Stop a session (stopping twice is fine) and print it.
    Stop {
        /// Session id.
        id: String,
    },
}

#[derive(Debug, clap::Args)]
struct StreamArgs {
    /// Connect through this session: its address, fingerprint and token come from the API
    /// (needs `--api` and `--api-key`).
    #[arg(long, conflicts_with_all = ["fingerprint", "fingerprint_file"])]
    session: Option<String>,
    /// Host QUIC address (without `--session`).
    #[arg(long, default_value = "127.0.0.1:4433", env = "FARVIEW_ADDR")]
    addr: SocketAddr,
    /// Host certificate fingerprint (hex SHA-256), without `--session`.
    #[arg(long, env = "FARVIEW_FINGERPRINT")]
    fingerprint: Option<String>,
    /// Read the fingerprint from this file (the host writes DATA_DIR/fingerprint).
    #[arg(long, conflicts_with = "fingerprint")]
    fingerprint_file: Option<PathBuf>,
    /// Model path relative to the host's assets root.
    #[arg(long)]
    model: String,
    /// Frames to write.
    #[arg(long, default_value_t = 300)]
    frames: u64,
    /// Output file (raw H.264 Annex-B; plays in ffplay/VLC, or remux with `ffmpeg -i f.h264 -c copy f.mp4`).
    #[arg(long)]
    out: PathBuf,
    /// Full orbits of the camera over the run (0: still camera).
    #[arg(long, default_value_t = 1.0)]
    orbits: f32,
    /// Print the summary as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Light the scene with this environment (a name the host has, or `none`).
    #[arg(long)]
    environment: Option<String>,
    /// Draw the environment behind the model instead of the background colour.
    #[arg(long)]
    show_environment: bool,
    /// Background colour as linear R,G,B, each in 0..=1.
    #[arg(long, value_parser = parse_rgb)]
    background: Option<[f32; 3]>,
    /// Tone mapping.
    #[arg(long, value_enum)]
    tone_mapping: Option<ToneMappingArg>,
    /// Exposure (> 0, at most 64).
    #[arg(long)]
    exposure: Option<f32>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ToneMappingArg {
    /// Khronos PBR Neutral.
    Neutral,
    /// ACES filmic.
    Aces,
    /// Clamp only.
    None,
}

/// `R,G,B` as three numbers.
fn parse_rgb(s: &str) -> Result<[f32; 3], String> {
    let v: Vec<f32> = s
        .split(',')
        .map(|p| p.trim().parse::<f32>())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("expected R,G,B: {e}"))?;
    <[f32; 3]>::try_from(v).map_err(|v| format!("expected three numbers R,G,B, got {}", v.len()))
}

impl StreamArgs {
    /// The look the flags ask for; `None` when they ask for nothing.
    fn look(&self) -> Option<LookUpdate> {
        let update = LookUpdate {
            environment: self.environment.clone(),
            show_environment: self.show_environment.then_some(true),
            background: self.background,
            tone_mapping: self.tone_mapping.map(|t| match t {
                ToneMappingArg::Neutral => ToneMapping::KhrPbrNeutral,
                ToneMappingArg::Aces => ToneMapping::AcesFilmic,
                ToneMappingArg::None => ToneMapping::None,
            }),
            exposure: self.exposure,
            ..LookUpdate::default()
        };
        (update != LookUpdate::default()).then_some(update)
    }
}

/// Where the camera looks from at `angle` radians of the orbit: the host's default framing
/// direction (front, slightly above) turned about +Y.
fn orbit_direction(angle: f32) -> [f32; 3] {
    let [_, y, z] = FIT_VIEW_DIRECTION;
    [z * angle.sin(), y, z * angle.cos()]
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FARVIEW_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let api = match (&cli.api, &cli.api_key) {
        (Some(url), Some(key)) => SessionClient::new(url, key).map(Some),
        _ => Ok(None),
    };
    let result = match (api, cli.command) {
        (Err(e), _) => Err(e.into()),
        (Ok(api), Command::Stream(args)) => stream(args, api.as_ref()).await,
        (Ok(Some(api)), Command::Session(cmd)) => session(cmd, &api).await,
        (Ok(None), Command::Session(_)) => Err(anyhow::anyhow!(
            "session commands need --api URL and --api-key KEY (or FARVIEW_API / FARVIEW_API_KEY)"
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            match e.downcast_ref::<ClientError>() {
                Some(ClientError::Host(w)) => {
                    eprintln!("error: host refused with {}: {}", w.code, w.message)
                }
                Some(ClientError::Api {
                    status,
                    code,
                    message,
                }) => eprintln!("error: API answered {status} {code}: {message}"),
                _ => eprintln!("error: {e:#}"),
            }
            ExitCode::from(2)
        }
    }
}

fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

async fn session(cmd: SessionCommand, api: &SessionClient) -> anyhow::Result<()> {
    let info: SessionInfo = match cmd {
        SessionCommand::Create {
            lease,
            size,
            models,
            id,
            wait,
        } => {
            let req = CreateSession {
                max_lease_time: lease,
                size,
                models,
            };
            let created = match id {
                Some(id) => api.put_session(&id, &req).await?,
                None => api.create_session(&req).await?,
            };
            if wait {
                api.session(&created.id)
                    .wait_ready(std::time::Duration::from_secs(120))
                    .await?
            } else {
                created
            }
        }
        SessionCommand::Show { id } => api.session(&id).properties().await?,
        SessionCommand::List { all } => return print_json(&api.list(all).await?),
        SessionCommand::Extend { id, lease } => api.session(&id).extend_lease(&lease).await?,
        SessionCommand::Stop { id } => api.session(&id).stop().await?,
    };
    print_json(&info)
}

async fn connect(args: &StreamArgs, api: Option<&SessionClient>) -> anyhow::Result<Connection> {
    if let Some(id) = &args.session {
        let Some(api) = api else {
            anyhow::bail!("--session needs --api URL and --api-key KEY");
        };
        let info = api
            .session(id)
            .wait_ready(std::time::Duration::from_secs(120))
            .await?;
        return Ok(api.connect(&info).await?);
    }
    let fingerprint = match (&args.fingerprint, &args.fingerprint_file) {
        (Some(f), _) => f.clone(),
        (None, Some(path)) => std::fs::read_to_string(path)?.trim().to_owned(),
        (None, None) => {
            anyhow::bail!("--session, --fingerprint or --fingerprint-file is required")
        }
    };
    Ok(Connection::connect(ConnectOptions::new(args.addr, &fingerprint)?).await?)
}

/// What [`record`] wrote.
struct Recorded {
    timings: Vec<FrameTimings>,
    written: u64,
    bytes: u64,
    keyframes: u64,
    first_rx: u64,
    last_rx: u64,
    skipped_frames: u64,
}

/// Sets the look, loads the model, orbits the camera and writes `args.frames` frames to
/// `args.out`.
async fn record(conn: &Connection, args: &StreamArgs) -> anyhow::Result<Recorded> {
    if let Some(look) = args.look() {
        conn.set_look(look).await?;
    }
    let model = conn.load_model(&args.model).await?;
    eprintln!(
        "loaded {}: {} triangles, {} vertices, {} textures in {:.1} ms",
        args.model,
        model.triangles,
        model.vertices,
        model.textures,
        model.load_time_us as f64 / 1000.0
    );

    // The host frames the model (its bounds, the stream's aspect); the file starts at a
    // keyframe that already shows it from the first orbit pose.
    let root = conn.entity(model.root_entity);
    let fit = Request::FitView {
        entity: Some(root.id()),
        direction: Some(orbit_direction(0.0)),
    };
    let first_seq = match conn.request(fit).await? {
        (seq, Reply::CameraFitted(_)) => seq,
        (_, other) => anyhow::bail!("expected CameraFitted, got {other:?}"),
    };
    // Request the keyframe once the pose shows, so the keyframe carries it.
    while conn.next_frame().await?.header.last_command_seq < first_seq {}
    conn.request_keyframe().await?;
    let mut out = std::io::BufWriter::new(std::fs::File::create(&args.out)?);
    let mut timings = Vec::with_capacity(args.frames as usize);
    let (mut written, mut bytes, mut keyframes, mut first_rx, mut last_rx) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut skipped_frames = 0u64;
    let mut last_number = None;
    while written < args.frames {
        let frame = conn.next_frame().await?;
        if written == 0 && !(frame.header.keyframe && frame.header.last_command_seq >= first_seq) {
            continue;
        }
        out.write_all(&frame.data)?;
        if let Some(prev) = last_number {
            skipped_frames += frame.header.frame_number.saturating_sub(prev + 1);
        }
        last_number = Some(frame.header.frame_number);
        timings.push(FrameTimings::of(&frame));
        bytes += frame.data.len() as u64;
        keyframes += u64::from(frame.header.keyframe);
        if written == 0 {
            first_rx = frame.received_us;
        }
        last_rx = frame.received_us;
        written += 1;
        if args.orbits != 0.0 {
            let angle = written as f32 / args.frames as f32 * args.orbits * std::f32::consts::TAU;
            root.fit_view(Some(orbit_direction(angle))).await?;
        }
    }
    out.flush()?;
    Ok(Recorded {
        timings,
        written,
        bytes,
        keyframes,
        first_rx,
        last_rx,
        skipped_frames,
    })
}

async fn stream(args: StreamArgs, api: Option<&SessionClient>) -> anyhow::Result<()> {
    // A failed connect closes what it opened (the SDK waits until the close is sent).
    let conn = connect(&args, api).await?;
    let info = conn.stream_info().clone();
    eprintln!(
        "connected: {}x{} @ {} fps, {} on {}",
        info.width, info.height, info.fps, info.host, info.adapter
    );
    let result = tokio::select! {
        r = record(&conn, &args) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    // Every path, success or failure, closes the connection and waits (briefly) until the close
    // is sent: a process that exits with it open holds one of the host's device slots until the
    // host's idle timeout.
    conn.close().await;
    let Recorded {
        timings,
        written,
        bytes,
        keyframes,
        first_rx,
        last_rx,
        skipped_frames,
    } = result?;

    let secs = (last_rx.saturating_sub(first_rx)) as f64 / 1e6;
    let fps = if secs > 0.0 {
        (written.saturating_sub(1)) as f64 / secs
    } else {
        0.0
    };
    let stage = |f: fn(&FrameTimings) -> u64| summarize(&timings.iter().map(f).collect::<Vec<_>>());
    let stages = [
        ("render+readback", stage(|t| t.render_us)),
        ("convert+encode", stage(|t| t.encode_us)),
        ("host queue", stage(|t| t.queue_us)),
        ("network", stage(|t| t.network_us)),
        ("total latency", stage(|t| t.total_us)),
    ];
    if args.json {
        let obj = serde_json::json!({
            "frames": written, "fps": fps, "bytes": bytes, "keyframes": keyframes,
            "skipped_frames": skipped_frames, "adapter": info.adapter,
            "stages_ms": stages.iter().map(|(n, s)| (n.to_string(), serde_json::json!({"mean": s.mean_ms, "p50": s.p50_ms, "p99": s.p99_ms, "max": s.max_ms}))).collect::<serde_json::Map<_, _>>(),
        });
        println!("{obj}");
    } else {
        println!(
            "wrote {} frames ({} keyframes, {:.1} KiB) to {}",
            written,
            keyframes,
            bytes as f64 / 1024.0,
            args.out.display()
        );
        println!("adapter: {}", info.adapter);
        println!(
            "frames/s: {fps:.1}   bitrate: {:.2} Mbit/s   host frames skipped: {skipped_frames}",
            bytes as f64 * 8.0 / secs.max(1e-9) / 1e6
        );
        println!(
            "{:<16} {:>9} {:>9} {:>9} {:>9}",
            "stage (ms)", "mean", "p50", "p99", "max"
        );
        for (name, s) in stages {
            println!(
                "{:<16} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                name, s.mean_ms, s.p50_ms, s.p99_ms, s.max_ms
            );
        }
    }
    Ok(())
}
