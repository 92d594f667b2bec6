//! `farview stream` and `farview models`: connect (directly or through a session), load, move
//! the camera, write what arrives, and say what happened, on every path.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use farview_client::{
    ConnectOptions, Connection, FrameTimings, LookUpdate, Reply, Request, SessionClient,
    SessionInfo, StreamInfo, ToneMapping, summarize,
};
use indicatif::{ProgressBar, ProgressStyle};

use crate::camera::{self, Orbit};
use crate::exit::Interrupted;
use crate::sinks::{AnnexB, Mp4, Pngs};

/// How to reach the host.
#[derive(Debug, clap::Args)]
pub(crate) struct ConnectArgs {
    /// Connect through this session: its address, fingerprint and token come from the API
    /// (needs `--api` and `--api-key`).
    #[arg(long, conflicts_with_all = ["fingerprint", "fingerprint_file"])]
    session: Option<String>,
    /// The secret printed when this session was first connected: takes the session back after
    /// the device that bound it went away.
    #[arg(
        long,
        requires = "session",
        env = "FARVIEW_RESUME_SECRET",
        hide_env_values = true
    )]
    resume_secret: Option<String>,
    /// Host QUIC address, `host:port` (without `--session`).
    #[arg(long, default_value = "127.0.0.1:4433", env = "FARVIEW_ADDR")]
    addr: String,
    /// Host certificate fingerprint (hex SHA-256), without `--session`.
    #[arg(long, env = "FARVIEW_FINGERPRINT")]
    fingerprint: Option<String>,
    /// Read the fingerprint from this file (the host writes DATA_DIR/fingerprint).
    #[arg(long, conflicts_with = "fingerprint")]
    fingerprint_file: Option<PathBuf>,
}

/// `farview stream`.
#[derive(Debug, clap::Args)]
pub(crate) struct StreamArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Model path relative to the host's assets root (`farview models` lists them).
    #[arg(long)]
    model: String,
    /// Frames to receive.
    #[arg(long, default_value_t = 300)]
    frames: u64,
    /// Write the raw H.264 stream (Annex-B) here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write an MP4 here, timed by the host's frame clock (plays at the speed it streamed).
    #[arg(long)]
    mp4: Option<PathBuf>,
    /// Decode the stream and write PNG snapshots into this directory.
    #[arg(long)]
    png: Option<PathBuf>,
    /// With `--png`: one snapshot every this many frames (the first frame is always one).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    every: u64,
    /// Play this animation of the model, looping: its name (`farview stream` prints the
    /// model's animations) or its index.
    #[arg(long)]
    animation: Option<String>,
    /// With `--animation`: its rate (1 is real time, negative plays backwards).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    animation_speed: f32,
    /// Full turns of the camera around the model over the run (0: still camera).
    #[arg(long, default_value_t = 1.0)]
    orbits: f32,
    /// Camera direction: degrees about the vertical from the model's front (+Z), at the start.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    yaw: f32,
    /// Camera direction: degrees above the horizon (default: the host's framing, ~14).
    #[arg(long, allow_negative_numbers = true)]
    pitch: Option<f32>,
    /// Camera distance from the model's centre in metres (default: the host fits the model
    /// to the frame).
    #[arg(long)]
    distance: Option<f32>,
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

    fn orbit(&self) -> Orbit {
        Orbit {
            yaw_deg: self.yaw,
            pitch_deg: self.pitch.unwrap_or_else(camera::default_pitch_deg),
            distance: self.distance,
            turns: self.orbits,
        }
    }
}

fn spinner(message: String) -> ProgressBar {
    let bar = ProgressBar::new_spinner().with_message(message);
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// Waits for a session to be ready, with a spinner on a terminal.
pub(crate) async fn wait_ready(api: &SessionClient, id: &str) -> anyhow::Result<SessionInfo> {
    let bar = spinner(format!("waiting for session {id} to be ready"));
    let info = api.session(id).wait_ready(crate::READY_TIMEOUT).await;
    bar.finish_and_clear();
    Ok(info?)
}

/// Connects as the flags say and reports where to.
async fn connect(args: &ConnectArgs, api: Option<&SessionClient>) -> anyhow::Result<Connection> {
    let options = if let Some(id) = &args.session {
        let Some(api) = api else {
            return Err(crate::usage("--session needs --api URL and --api-key KEY"));
        };
        let info = wait_ready(api, id).await?;
        let options = api.connect_options(&info).await?;
        match &args.resume_secret {
            Some(secret) => options.with_resume_secret(secret),
            None => options,
        }
    } else {
        let fingerprint = match (&args.fingerprint, &args.fingerprint_file) {
            (Some(f), _) => f.clone(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?
                .trim()
                .to_owned(),
            (None, None) => {
                return Err(crate::usage(
                    "--session, --fingerprint or --fingerprint-file is required",
                ));
            }
        };
        ConnectOptions::resolve(&args.addr, &fingerprint).await?
    };
    let bar = spinner("connecting".into());
    let conn = Connection::connect(options).await;
    bar.finish_and_clear();
    let conn = conn?;
    if let Some(secret) = conn.resume_secret() {
        eprintln!(
            "resume secret: {secret}\n  (to take this session back after this device goes away: \
             --resume-secret {secret})"
        );
    }
    Ok(conn)
}

/// `farview models`.
pub(crate) async fn models(args: ConnectArgs, api: Option<&SessionClient>) -> anyhow::Result<()> {
    let conn = connect(&args, api).await?;
    let listed = conn.list_models().await;
    conn.close().await;
    let (models, truncated) = listed?;
    println!("{:>12}  path", "bytes");
    for m in &models {
        println!("{:>12}  {}", m.bytes, m.path);
    }
    eprintln!(
        "{} model{}{}",
        models.len(),
        if models.len() == 1 { "" } else { "s" },
        if truncated {
            " (the host's list was cut short: more files exist)"
        } else {
            ""
        }
    );
    Ok(())
}

/// What a run received and wrote, kept outside the recording future so that it survives an
/// error, a lease that ends or Ctrl-C.
#[derive(Default)]
struct Tally {
    timings: Vec<FrameTimings>,
    written: u64,
    bytes: u64,
    keyframes: u64,
    first_rx: u64,
    last_rx: u64,
    first_render_us: u64,
    last_render_us: u64,
    skipped_frames: u64,
    last_number: Option<u64>,
}

/// The files being written.
struct Outputs {
    annex_b: Option<AnnexB>,
    mp4: Option<Mp4>,
    pngs: Option<Pngs>,
}

impl Outputs {
    fn create(args: &StreamArgs, fps: f32) -> anyhow::Result<Self> {
        Ok(Self {
            annex_b: args.out.as_deref().map(AnnexB::create).transpose()?,
            mp4: args
                .mp4
                .as_deref()
                .map(|p| Mp4::create(p, fps))
                .transpose()?,
            pngs: args
                .png
                .as_deref()
                .map(|p| Pngs::create(p, args.every))
                .transpose()?,
        })
    }

    fn write(&mut self, frame: &farview_client::Frame) -> anyhow::Result<()> {
        if let Some(o) = &mut self.annex_b {
            o.write(frame)?;
        }
        if let Some(o) = &mut self.mp4 {
            o.write(frame)?;
        }
        if let Some(o) = &mut self.pngs {
            o.write(frame)?;
        }
        Ok(())
    }

    /// Closes every file; the first error wins, but every file gets its chance to finish.
    fn finish(self) -> (anyhow::Result<()>, Option<u64>, Option<u64>) {
        let mut result = Ok(());
        if let Some(o) = self.annex_b {
            result = result.and(o.finish());
        }
        let mp4_frames = match self.mp4.map(Mp4::finish) {
            Some(Ok(n)) => Some(n),
            Some(Err(e)) => {
                result = result.and(Err(e));
                None
            }
            None => None,
        };
        (result, mp4_frames, self.pngs.map(|p| p.written))
    }
}

/// Sets the look, loads the model, places the camera and receives `args.frames` frames.
async fn record(
    conn: &Connection,
    args: &StreamArgs,
    outputs: &mut Outputs,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    if let Some(look) = args.look() {
        conn.set_look(look).await?;
    }
    let model = load(conn, &args.model).await?;
    eprintln!(
        "loaded {}: {} triangles, {} vertices, {} textures in {:.1} ms",
        args.model,
        model.triangles,
        model.vertices,
        model.textures,
        model.load_time_us as f64 / 1000.0
    );
    if !model.animations.is_empty() {
        eprintln!("animations: {}", model.animations.join(", "));
    }
    if let Some(wanted) = &args.animation {
        let index = model
            .animations
            .iter()
            .position(|a| a.eq_ignore_ascii_case(wanted))
            .or_else(|| {
                wanted
                    .parse::<usize>()
                    .ok()
                    .filter(|i| *i < model.animations.len())
            })
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{} has no animation {wanted:?} (it has: {})",
                    args.model,
                    if model.animations.is_empty() {
                        "none".to_owned()
                    } else {
                        model.animations.join(", ")
                    }
                )
            })?;
        conn.animate(
            model.root_entity,
            farview_client::AnimationCommand::Play {
                index: index as u32,
                speed: args.animation_speed,
                looping: true,
                start_s: 0.0,
            },
        )
        .await?;
    }

    // The host frames the model (its bounds, the stream's aspect) from the asked direction; a
    // given distance moves the camera along that direction. The output starts at a keyframe
    // that already shows the first pose.
    let orbit = args.orbit();
    let root = conn.entity(model.root_entity);
    let fit = Request::FitView {
        entity: Some(root.id()),
        direction: Some(orbit.direction(0.0)),
    };
    let (mut first_seq, fitted) = match conn.request(fit).await? {
        (seq, Reply::CameraFitted(pose)) => (seq, pose),
        (_, other) => anyhow::bail!("expected CameraFitted, got {other:?}"),
    };
    let bounds = (model.bounds_min, model.bounds_max);
    if let Some(distance) = orbit.distance {
        first_seq = conn
            .set_camera(orbit.pose(0.0, bounds, distance, &fitted))
            .await?;
    }
    while conn.next_frame().await?.header.last_command_seq < first_seq {}
    conn.request_keyframe().await?;

    let bar = ProgressBar::new(args.frames).with_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} frames  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let result = receive(
        conn,
        args,
        &orbit,
        model.root_entity,
        bounds,
        &fitted,
        first_seq,
        outputs,
        tally,
        &bar,
    )
    .await;
    bar.finish_and_clear();
    result
}

#[allow(clippy::too_many_arguments)] // one call site; a struct would only rename them
async fn receive(
    conn: &Connection,
    args: &StreamArgs,
    orbit: &Orbit,
    root: u64,
    bounds: ([f32; 3], [f32; 3]),
    fitted: &farview_client::CameraPose,
    first_seq: u64,
    outputs: &mut Outputs,
    tally: &mut Tally,
    bar: &ProgressBar,
) -> anyhow::Result<()> {
    while tally.written < args.frames {
        let frame = conn.next_frame().await?;
        if tally.written == 0
            && !(frame.header.keyframe && frame.header.last_command_seq >= first_seq)
        {
            continue;
        }
        outputs.write(&frame)?;
        let h = &frame.header;
        if let Some(prev) = tally.last_number {
            tally.skipped_frames += h.frame_number.saturating_sub(prev + 1);
        }
        tally.last_number = Some(h.frame_number);
        tally.timings.push(FrameTimings::of(&frame));
        tally.bytes += frame.data.len() as u64;
        tally.keyframes += u64::from(h.keyframe);
        if tally.written == 0 {
            tally.first_rx = frame.received_us;
            tally.first_render_us = h.render_start_us;
        }
        tally.last_rx = frame.received_us;
        tally.last_render_us = h.render_start_us;
        tally.written += 1;
        bar.set_position(tally.written);
        if tally.written.is_multiple_of(10) {
            let (fps, mbps) = rates(tally);
            bar.set_message(format!("{fps:.1} fps  {mbps:.2} Mbit/s"));
        }
        // The host renders when input arrives (a still view gets a keepalive frame a second),
        // so the CLI sends its camera with every frame, as a headset sends its pose: a still
        // camera repeats its pose and `--frames N` still takes N frame intervals.
        {
            let progress = if orbit.turns != 0.0 {
                tally.written as f32 / args.frames as f32
            } else {
                0.0
            };
            match orbit.distance {
                Some(d) => {
                    conn.set_camera(orbit.pose(progress, bounds, d, fitted))
                        .await?;
                }
                None => {
                    conn.entity(root)
                        .fit_view(Some(orbit.direction(progress)))
                        .await?;
                }
            }
        }
    }
    Ok(())
}

/// Loads a model, with a progress bar fed by the host's progress events.
async fn load(conn: &Connection, path: &str) -> anyhow::Result<farview_client::LoadedModel> {
    let bar = ProgressBar::new(100).with_style(
        ProgressStyle::with_template("loading {msg} {bar:30} {pos}%")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(path.to_owned());
    let mut progress = conn.load_progress();
    let loading = conn.load_model(path);
    tokio::pin!(loading);
    let result = loop {
        tokio::select! {
            r = &mut loading => break r,
            changed = progress.changed() => {
                if changed.is_err() {
                    break (&mut loading).await;
                }
                bar.set_position(u64::from(progress.borrow_and_update().percent));
            }
        }
    };
    bar.finish_and_clear();
    Ok(result?)
}

/// Frames per second and Mbit/s over the frames received so far, by their arrival times.
fn rates(t: &Tally) -> (f64, f64) {
    let secs = t.last_rx.saturating_sub(t.first_rx) as f64 / 1e6;
    if secs <= 0.0 {
        return (0.0, 0.0);
    }
    (
        t.written.saturating_sub(1) as f64 / secs,
        t.bytes as f64 * 8.0 / secs / 1e6,
    )
}

/// `farview stream`.
pub(crate) async fn stream(args: StreamArgs, api: Option<&SessionClient>) -> anyhow::Result<()> {
    // A failed connect closes what it opened (the SDK waits until the close is sent).
    let conn = connect(&args.connect, api).await?;
    let info = conn.stream_info().clone();
    eprintln!(
        "connected: {}x{} @ {} fps, {} on {}",
        info.width, info.height, info.fps, info.host, info.adapter
    );
    let mut tally = Tally::default();
    let result = match Outputs::create(&args, info.fps) {
        Err(e) => Err(e),
        Ok(mut outputs) => {
            let recorded = tokio::select! {
                r = record(&conn, &args, &mut outputs, &mut tally) => r,
                _ = tokio::signal::ctrl_c() => Err(Interrupted.into()),
            };
            let (finished, mp4_frames, pngs) = outputs.finish();
            summary(
                &args,
                &info,
                &tally,
                mp4_frames,
                pngs,
                recorded.as_ref().err(),
            );
            recorded.and(finished)
        }
    };
    // Every path, success or failure, closes the connection and waits (briefly) until the close
    // is sent: a process that exits with it open holds one of the host's device slots until the
    // host's idle timeout.
    conn.close().await;
    result
}

/// What was written, how fast, and where the time went; printed whether the run completed or
/// not (a lease that ends mid-run still says what it left on disk).
fn summary(
    args: &StreamArgs,
    info: &StreamInfo,
    t: &Tally,
    mp4_frames: Option<u64>,
    pngs: Option<u64>,
    stopped: Option<&anyhow::Error>,
) {
    let (fps, mbps) = rates(t);
    let media_s = if t.written > 0 {
        t.last_render_us.saturating_sub(t.first_render_us) as f64 / 1e6 + 1.0 / f64::from(info.fps)
    } else {
        0.0
    };
    let stage =
        |f: fn(&FrameTimings) -> u64| summarize(&t.timings.iter().map(f).collect::<Vec<_>>());
    let stages = [
        ("render+readback", stage(|t| t.render_us)),
        ("convert+encode", stage(|t| t.encode_us)),
        ("host queue", stage(|t| t.queue_us)),
        ("network", stage(|t| t.network_us)),
        ("total latency", stage(|t| t.total_us)),
    ];
    if args.json {
        let obj = serde_json::json!({
            "frames": t.written, "fps": fps, "bytes": t.bytes, "keyframes": t.keyframes,
            "skipped_frames": t.skipped_frames, "adapter": info.adapter,
            "media_duration_s": media_s, "mp4_frames": mp4_frames, "png_snapshots": pngs,
            "complete": stopped.is_none(),
            "stopped": stopped.map(|e| format!("{e:#}")),
            "stages_ms": stages.iter().map(|(n, s)| (n.to_string(), serde_json::json!({"mean": s.mean_ms, "p50": s.p50_ms, "p99": s.p99_ms, "max": s.max_ms}))).collect::<serde_json::Map<_, _>>(),
        });
        println!("{obj}");
        return;
    }
    if let Some(e) = stopped {
        println!(
            "stopped after {} of {} frames: {e:#}",
            t.written, args.frames
        );
    }
    let mut wrote = Vec::new();
    if let Some(p) = &args.out {
        wrote.push(format!("{} (H.264)", p.display()));
    }
    if let (Some(p), Some(n)) = (&args.mp4, mp4_frames) {
        wrote.push(format!("{} (MP4, {n} frames, {media_s:.2} s)", p.display()));
    }
    if let (Some(p), Some(n)) = (&args.png, pngs) {
        wrote.push(format!("{} ({n} PNG snapshots)", p.display()));
    }
    println!(
        "received {} frames ({} keyframes, {:.1} KiB){}",
        t.written,
        t.keyframes,
        t.bytes as f64 / 1024.0,
        if wrote.is_empty() {
            String::new()
        } else {
            format!("; wrote {}", wrote.join(", "))
        }
    );
    println!("adapter: {}", info.adapter);
    println!(
        "frames/s: {fps:.1}   bitrate: {mbps:.2} Mbit/s   host frames skipped: {}",
        t.skipped_frames
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
