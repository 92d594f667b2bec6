//! One device's frame pipeline: render → convert → encode → send, each stage on its own thread or
//! task, joined by bounded hand-offs so the frame interval approaches the slowest stage rather
//! than the sum, and a slow device makes the host drop frames instead of queueing them.
//!
//! ```text
//!  control task ──commands (bounded)──▶ render thread ──RGBA (1 slot)──▶ encode thread
//!                                                                            │ H.264 (2 slots)
//!                                                             QUIC ◀── sender task
//! ```
//! Drops happen in two places, both counted: the encode thread skips a frame when the sender's
//! queue is full (nothing was encoded, so the H.264 reference chain stays intact), and the sender
//! resets the current group's stream when a frame is older than `max_frame_age` or its write
//! stalls that long; the next frame is then forced to be an IDR that opens a new group.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use farview_encode::{I420Frame, OpenH264Encoder, VideoEncoder, rgba_to_i420};
use farview_protocol::{
    ErrorCode, FrameHeader, MediaStreamHeader, Request, ServerMessage, WireError,
};
use farview_render::{Camera, FrameRenderer, ModelUploader, UploadedModel, strip_padding};
use farview_scene::{Model, ModelInfo, Scene};
use tokio::sync::oneshot;
use tracing::Instrument;

use crate::abr::{BitrateController, PathSample, SAMPLE_INTERVAL};
use crate::metrics::{DropReason, Metrics};
use crate::tap::FrameTap;
use crate::time::now_us;

/// What the control task asks the render thread to do, in order.
pub(crate) enum RenderCommand {
    /// Adds an imported (and, when `uploaded` is set, already uploaded) model under `name`;
    /// `key` (the asset path) lets a later load of the same file share its assets.
    AddModel {
        seq: u64,
        name: String,
        key: Option<String>,
        model: Box<Model>,
        uploaded: Option<UploadedModel>,
        max_triangles: u64,
        reply: oneshot::Sender<Result<ModelInfo, WireError>>,
    },
    /// Instantiates the model loaded from `key` again if its assets are still alive; answers
    /// `None` when they are not (the caller imports the file).
    Instantiate {
        seq: u64,
        key: String,
        max_triangles: u64,
        reply: oneshot::Sender<Option<Result<ModelInfo, WireError>>>,
    },
    SetCamera {
        seq: u64,
        camera: Camera,
    },
    /// A scene command or query; the reply goes straight to the device's control stream.
    Scene {
        seq: u64,
        request: Request,
        reply: ReplySink,
    },
}

/// Where a reply computed on the render thread goes: the connection's writer, with the permit
/// that bounds the replies in flight.
pub(crate) struct ReplySink {
    pub(crate) tx: tokio::sync::mpsc::Sender<crate::connection::Outgoing>,
    pub(crate) permit: tokio::sync::OwnedSemaphorePermit,
}

impl ReplySink {
    pub(crate) fn send(self, msg: ServerMessage) {
        let out = crate::connection::Outgoing {
            msg,
            permit: Some(self.permit),
            done: None,
        };
        // Capacity exceeds the permits, so this only fails once the connection is gone.
        if self.tx.try_send(out).is_err() {
            tracing::debug!("reply dropped: the connection's writer is gone");
        }
    }
}

/// Stream settings resolved from the config.
#[derive(Debug, Clone)]
pub(crate) struct StreamSettings {
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) fps: f32,
    pub(crate) bitrate_bps: u32,
    pub(crate) keyframe_interval_frames: Option<u32>,
    pub(crate) max_frame_age: Duration,
    /// Convert to I420 on the GPU (falls back to the CPU where the renderer cannot).
    pub(crate) gpu_color_conversion: bool,
    /// Floor of the adaptive bitrate (`bitrate_bps` is its start and ceiling).
    pub(crate) min_bitrate_bps: u32,
    /// Skip rendering while neither the scene nor the camera changed (one frame per second
    /// keeps the stream alive).
    pub(crate) skip_unchanged_frames: bool,
    /// openh264 threads.
    pub(crate) encoder_threads: u16,
    /// Slice size limit in bytes; 0: one slice per picture.
    pub(crate) encoder_max_slice_bytes: u32,
}

/// Sum and count of one stage's durations, for means in the per-second log.
#[derive(Default, Debug)]
pub(crate) struct StageClock {
    total_us: AtomicU64,
    count: AtomicU64,
}

impl StageClock {
    fn record(&self, d: Duration) {
        self.total_us
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> (u64, u64) {
        (
            self.total_us.load(Ordering::Relaxed),
            self.count.load(Ordering::Relaxed),
        )
    }
}

/// Counters shared by the stages; read by the stats log and tests.
#[derive(Default, Debug)]
pub(crate) struct StreamCounters {
    pub(crate) rendered: AtomicU64,
    /// Ticks skipped because nothing changed (frame pacing).
    pub(crate) skipped_unchanged: AtomicU64,
    pub(crate) encoded: AtomicU64,
    pub(crate) sent: AtomicU64,
    pub(crate) keyframes: AtomicU64,
    pub(crate) bytes_sent: AtomicU64,
    pub(crate) dropped_encoder_busy: AtomicU64,
    pub(crate) dropped_stale: AtomicU64,
    pub(crate) dropped_awaiting_keyframe: AtomicU64,
    pub(crate) render: StageClock,
    pub(crate) convert: StageClock,
    pub(crate) encode: StageClock,
    pub(crate) send: StageClock,
}

/// State the control task shares with the stages.
#[derive(Default, Debug)]
pub(crate) struct Shared {
    pub(crate) force_keyframe: AtomicBool,
    pub(crate) stop: AtomicBool,
    /// True while a device is attached: the render loop idles (applying commands) otherwise.
    pub(crate) streaming: AtomicBool,
    /// Models loaded into the scene.
    pub(crate) models: AtomicU64,
    pub(crate) counters: StreamCounters,
    /// Host-wide metrics this pipeline adds to.
    pub(crate) metrics: Arc<Metrics>,
    /// Encoder bitrate the adaptive controller asks for (the encode loop applies it).
    pub(crate) target_bitrate: AtomicU64,
    /// Encoder bitrate in effect.
    pub(crate) applied_bitrate: AtomicU64,
}

/// A pipeline stage, for [`Shared::stage`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stage {
    Render,
    Convert,
    Encode,
    Send,
}

impl Shared {
    /// Records a frame through `stage` in the stream's counters (the per-second log) and the
    /// host's metrics. Render, encode and send also count the frame.
    fn stage(&self, stage: Stage, d: Duration) {
        let (c, m) = (&self.counters, &self.metrics);
        let (clock, hist, count) = match stage {
            Stage::Render => (&c.render, &m.render, Some((&c.rendered, &m.rendered))),
            Stage::Convert => (&c.convert, &m.convert, None),
            Stage::Encode => (&c.encode, &m.encode, Some((&c.encoded, &m.encoded))),
            Stage::Send => (&c.send, &m.send, Some((&c.sent, &m.sent))),
        };
        clock.record(d);
        hist.observe_duration(d);
        if let Some((a, b)) = count {
            a.fetch_add(1, Ordering::Relaxed);
            b.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a frame not sent, in the stream's counters and the host's metrics.
    fn dropped(&self, why: DropReason) {
        let c = &self.counters;
        match why {
            DropReason::EncoderBusy => &c.dropped_encoder_busy,
            DropReason::Stale => &c.dropped_stale,
            DropReason::AwaitingKeyframe => &c.dropped_awaiting_keyframe,
        }
        .fetch_add(1, Ordering::Relaxed);
        self.metrics.dropped(why);
    }
}

/// The device connection frames currently go to.
#[derive(Clone)]
pub(crate) struct Attachment {
    pub(crate) id: u64,
    pub(crate) conn: quinn::Connection,
}

struct RawFrame {
    number: u64,
    last_seq: u64,
    render_start_us: u64,
    render_end_us: u64,
    stride: usize,
    /// RGBA rows `stride` apart, or a packed I420 frame when `i420`.
    rgba: Vec<u8>,
    i420: bool,
}

struct NetFrame {
    header: FrameHeader,
    data: Vec<u8>,
}

/// Why the pipeline stopped on its own.
pub(crate) type PipelineExit = oneshot::Receiver<String>;

/// A running pipeline. Dropping it stops the stages.
pub(crate) struct Pipeline {
    pub(crate) commands: mpsc::SyncSender<RenderCommand>,
    /// Uploads models' GPU assets off the render thread.
    pub(crate) uploader: ModelUploader,
    bitrate_bps: u32,
    pub(crate) shared: Arc<Shared>,
    attachment: tokio::sync::watch::Sender<Option<Attachment>>,
    sender_task: tokio::task::JoinHandle<()>,
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        // The encode loop keeps the gauge in step with every change it applies.
        let _ = self.bitrate_bps;
        self.shared.metrics.encoder_bitrate_bps.fetch_sub(
            self.shared.applied_bitrate.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
        if let Some(a) = self.attachment.borrow().as_ref() {
            self.shared.metrics.detach(a.id);
        }
        self.shared.stop.store(true, Ordering::Relaxed);
        self.sender_task.abort();
    }
}

/// Longest gap between frames when frames are skipped for an unchanged scene, so the device
/// still sees the stream alive.
const KEEPALIVE: Duration = Duration::from_secs(1);

/// Commands the render thread may have queued; more is back-pressure to the control task.
const COMMAND_QUEUE: usize = 1024;
/// Encoded frames waiting for the network.
const NET_QUEUE: usize = 2;

impl Pipeline {
    /// Starts the stages (idle until a device is attached). `renderer` was created by the caller so that a
    /// failure is reported before anything runs.
    pub(crate) fn start(
        renderer: FrameRenderer,
        settings: StreamSettings,
        tap: Option<FrameTap>,
        metrics: Arc<Metrics>,
    ) -> Result<(Self, PipelineExit), farview_encode::EncodeError> {
        let encoder = OpenH264Encoder::new(farview_encode::EncoderSettings {
            width: settings.width,
            height: settings.height,
            bitrate_bps: settings.bitrate_bps,
            max_fps: settings.fps,
            keyframe_interval: settings.keyframe_interval_frames,
            threads: settings.encoder_threads,
            max_slice_bytes: (settings.encoder_max_slice_bytes > 0)
                .then_some(settings.encoder_max_slice_bytes),
        })?;
        let i420 = I420Frame::new(settings.width, settings.height)?;
        let mut renderer = renderer;
        let gpu_convert = settings.gpu_color_conversion
            && renderer.enable_gpu_i420().unwrap_or_else(|e| {
                tracing::warn!(error = %e, "GPU colour conversion unavailable; converting on the CPU");
                false
            });
        tracing::debug!(gpu_convert, "colour conversion");
        let uploader = renderer.uploader();
        let settings_bitrate = settings.bitrate_bps;
        metrics
            .encoder_bitrate_bps
            .fetch_add(u64::from(settings.bitrate_bps), Ordering::Relaxed);
        let shared = Arc::new(Shared {
            metrics,
            target_bitrate: AtomicU64::new(u64::from(settings.bitrate_bps)),
            applied_bitrate: AtomicU64::new(u64::from(settings.bitrate_bps)),
            ..Shared::default()
        });
        let (cmd_tx, cmd_rx) = mpsc::sync_channel(COMMAND_QUEUE);
        let (raw_tx, raw_rx) = mpsc::sync_channel::<RawFrame>(1);
        let (pool_tx, pool_rx) = mpsc::sync_channel::<Vec<u8>>(3);
        let (net_tx, net_rx) = tokio::sync::mpsc::channel::<NetFrame>(NET_QUEUE);
        let (exit_tx, exit_rx) = oneshot::channel();
        let exit_tx = Arc::new(std::sync::Mutex::new(Some(exit_tx)));
        let report = move |why: String| {
            if let Some(tx) = exit_tx.lock().ok().and_then(|mut g| g.take()) {
                let _ = tx.send(why);
            }
        };

        let span = tracing::Span::current();
        {
            let (shared, report, span) = (shared.clone(), report.clone(), span.clone());
            let settings = settings.clone();
            std::thread::Builder::new()
                .name("farview-render".into())
                .spawn(move || {
                    let _g = span.enter();
                    if let Err(e) =
                        render_loop(renderer, settings, cmd_rx, raw_tx, pool_rx, &shared, tap)
                    {
                        tracing::error!(error = %e, "render loop failed");
                        report(format!("render loop failed: {e}"));
                    }
                })
                .map_err(|e| {
                    farview_encode::EncodeError::Encoder(format!("cannot spawn render thread: {e}"))
                })?;
        }
        {
            let (shared, report, span) = (shared.clone(), report.clone(), span.clone());
            std::thread::Builder::new()
                .name("farview-encode".into())
                .spawn(move || {
                    let _g = span.enter();
                    if let Err(e) = encode_loop(encoder, i420, raw_rx, pool_tx, net_tx, &shared) {
                        tracing::error!(error = %e, "encode loop failed");
                        report(format!("encode loop failed: {e}"));
                    }
                })
                .map_err(|e| {
                    farview_encode::EncodeError::Encoder(format!("cannot spawn encode thread: {e}"))
                })?;
        }
        let (attachment, attach_rx) = tokio::sync::watch::channel(None);
        let sender_task =
            tokio::spawn(send_loop(attach_rx, net_rx, shared.clone(), settings).instrument(span));
        Ok((
            Self {
                commands: cmd_tx,
                uploader,
                bitrate_bps: settings_bitrate,
                shared,
                attachment,
                sender_task,
            },
            exit_rx,
        ))
    }

    /// Sends frames to this connection from the next keyframe on.
    pub(crate) fn attach(&self, id: u64, conn: quinn::Connection) {
        self.shared.force_keyframe.store(true, Ordering::Relaxed);
        self.shared.metrics.attach(id, conn.clone());
        self.attachment.send_replace(Some(Attachment { id, conn }));
        self.shared.streaming.store(true, Ordering::Relaxed);
    }

    /// Stops streaming if `id` is the attached connection; the scene stays.
    pub(crate) fn detach(&self, id: u64) {
        let was = self.attachment.send_if_modified(|a| {
            if a.as_ref().is_some_and(|a| a.id == id) {
                *a = None;
                true
            } else {
                false
            }
        });
        if was {
            self.shared.metrics.detach(id);
            self.shared.streaming.store(false, Ordering::Relaxed);
        }
    }
}

fn render_loop(
    mut renderer: FrameRenderer,
    settings: StreamSettings,
    commands: mpsc::Receiver<RenderCommand>,
    frames: mpsc::SyncSender<RawFrame>,
    pool: mpsc::Receiver<Vec<u8>>,
    shared: &Shared,
    tap: Option<FrameTap>,
) -> Result<(), String> {
    let interval = Duration::from_secs_f64(1.0 / f64::from(settings.fps));
    let mut scene = Scene::default();
    let mut st = RenderState {
        camera: Camera::default(),
        last_seq: 0,
        by_key: HashMap::new(),
        changed: true,
        counts_stale: true,
    };
    let mut last_render = Instant::now();
    let mut number = 0u64;
    let mut next_tick = Instant::now();
    loop {
        // Apply everything that arrived, in order, then wait for the tick while listening.
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match commands.recv_timeout(wait) {
                Ok(cmd) => {
                    st.changed = true;
                    st.counts_stale = true;
                    apply(cmd, &mut scene, &mut renderer, &mut st);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
            }
        }
        if shared.stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        if std::mem::take(&mut st.counts_stale) {
            // Once per tick, not per command: a device may send a thousand commands a second.
            shared
                .models
                .store(scene.models().count() as u64, Ordering::Relaxed);
        }
        let now = Instant::now();
        if !shared.streaming.load(Ordering::Relaxed) {
            next_tick = now + interval;
            continue;
        }
        next_tick = if next_tick + interval > now {
            next_tick + interval
        } else {
            now + interval
        };
        // Frame pacing: with nothing changed, no keyframe wanted and a frame sent recently, the
        // frame would repeat the last one; skip it (the rate is a target, not a minimum).
        if settings.skip_unchanged_frames
            && !st.changed
            && !shared.force_keyframe.load(Ordering::Relaxed)
            && last_render.elapsed() < KEEPALIVE
        {
            shared
                .counters
                .skipped_unchanged
                .fetch_add(1, Ordering::Relaxed);
            shared
                .metrics
                .skipped_unchanged
                .fetch_add(1, Ordering::Relaxed);
            continue;
        }
        st.changed = false;
        last_render = now;

        let render_start_us = now_us();
        let t0 = Instant::now();
        scene.update_world_transforms();
        renderer
            .submit(&scene, &st.camera, number)
            .map_err(|e| e.to_string())?;
        let mut rgba = pool.try_recv().unwrap_or_default();
        let frame = renderer
            .collect(true, &mut rgba)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "rendered frame missing from the readback ring".to_string())?;
        shared.stage(Stage::Render, t0.elapsed());
        if let Some(tap) = &tap {
            // The tap holds RGBA; a GPU-converted frame is converted back (tests only).
            let pixels = if frame.i420 {
                let mut f = I420Frame::new(frame.width, frame.height).map_err(|e| e.to_string())?;
                f.copy_from_packed(&rgba).map_err(|e| e.to_string())?;
                farview_encode::i420_to_rgba(&f)
            } else {
                strip_padding(&rgba, frame)
            };
            tap.push(frame.tag, frame.width, frame.height, pixels)?;
        }
        let raw = RawFrame {
            number,
            last_seq: st.last_seq,
            render_start_us,
            render_end_us: now_us(),
            stride: frame.stride,
            rgba,
            i420: frame.i420,
        };
        // Blocks while the encoder is busy with the previous frame: back-pressure, not a queue.
        if frames.send(raw).is_err() {
            return Ok(());
        }
        number += 1;
    }
}

/// Render-thread state besides the scene: the camera, the last command applied, and which
/// asset path each loaded model came from (so a second load of a file shares its assets).
struct RenderState {
    camera: Camera,
    last_seq: u64,
    by_key: HashMap<String, farview_scene::ModelId>,
    /// A command arrived since the last frame was rendered.
    changed: bool,
    /// A command arrived since the shared counts were refreshed.
    counts_stale: bool,
}

fn budget_error(adding: u64, have: u64, max: u64) -> WireError {
    WireError::new(
        ErrorCode::MODEL_TOO_LARGE,
        format!(
            "the model has {adding} triangles; with the {have} already in the scene that exceeds this session size's budget of {max}"
        ),
    )
}

fn apply(
    cmd: RenderCommand,
    scene: &mut Scene,
    renderer: &mut FrameRenderer,
    st: &mut RenderState,
) {
    match cmd {
        RenderCommand::AddModel {
            seq,
            name,
            key,
            model,
            uploaded,
            max_triangles,
            reply,
        } => {
            let have = scene.stats().triangles;
            let adding = model.triangle_count() as u64;
            let result = if have.saturating_add(adding) > max_triangles {
                Err(budget_error(adding, have, max_triangles))
            } else {
                let uploaded = match uploaded {
                    Some(u) => Ok(u),
                    None => renderer.upload_model(&model).map_err(|e| {
                        WireError::new(ErrorCode::MODEL_TOO_LARGE, format!("GPU upload: {e}"))
                    }),
                };
                uploaded.and_then(|uploaded| {
                    let info = scene
                        .add_model(&name, *model)
                        .map_err(crate::scene_ops::scene_error)?;
                    renderer.insert_model(info.model, uploaded);
                    if let Some(k) = key {
                        st.by_key.insert(k, info.model);
                    }
                    Ok(info)
                })
            };
            st.last_seq = st.last_seq.max(seq);
            let _ = reply.send(result);
        }
        RenderCommand::Instantiate {
            seq,
            key,
            max_triangles,
            reply,
        } => {
            let result = st
                .by_key
                .get(&key)
                .copied()
                .filter(|id| scene.model(*id).is_some())
                .map(|id| {
                    let have = scene.stats().triangles;
                    let adding = scene.model(id).map_or(0, |m| m.triangle_count() as u64);
                    if have.saturating_add(adding) > max_triangles {
                        return Err(budget_error(adding, have, max_triangles));
                    }
                    scene
                        .instantiate(&key, id)
                        .map_err(crate::scene_ops::scene_error)
                });
            if result.as_ref().is_some_and(Result::is_ok) {
                st.last_seq = st.last_seq.max(seq);
            }
            let _ = reply.send(result);
        }
        RenderCommand::SetCamera { seq, camera: c } => {
            st.camera = c;
            st.last_seq = st.last_seq.max(seq);
        }
        RenderCommand::Scene {
            seq,
            request,
            reply,
        } => {
            let result = crate::scene_ops::execute(request, scene, renderer);
            st.last_seq = st.last_seq.max(seq);
            reply.send(ServerMessage::Reply { seq, result });
        }
    }
}

fn encode_loop(
    mut encoder: OpenH264Encoder,
    mut i420: I420Frame,
    frames: mpsc::Receiver<RawFrame>,
    pool: mpsc::SyncSender<Vec<u8>>,
    net: tokio::sync::mpsc::Sender<NetFrame>,
    shared: &Shared,
) -> Result<(), String> {
    let m = &shared.metrics;
    let mut first = true;
    while let Ok(raw) = frames.recv() {
        let t0 = Instant::now();
        if raw.i420 {
            // Converted on the GPU: one copy into the encoder's frame.
            i420.copy_from_packed(&raw.rgba)
                .map_err(|e| e.to_string())?;
        } else {
            rgba_to_i420(&raw.rgba, raw.stride, &mut i420).map_err(|e| e.to_string())?;
        }
        shared.stage(Stage::Convert, t0.elapsed());
        let _ = pool.try_send(raw.rgba);
        if net.is_closed() {
            return Ok(());
        }
        if net.capacity() == 0 {
            // Skipped before encoding, so later P-frames still reference frames the device has.
            shared.dropped(DropReason::EncoderBusy);
            continue;
        }
        let want = shared.target_bitrate.load(Ordering::Relaxed);
        let have = shared.applied_bitrate.load(Ordering::Relaxed);
        if want != have && want > 0 {
            // Re-creates openh264's encoder (its runtime rate option is unsafe-only), so the
            // next frame is an IDR; the controller changes the rate sparingly.
            encoder
                .set_bitrate(u32::try_from(want).unwrap_or(u32::MAX))
                .map_err(|e| e.to_string())?;
            shared.applied_bitrate.store(want, Ordering::Relaxed);
            m.encoder_bitrate_bps.fetch_add(want, Ordering::Relaxed);
            m.encoder_bitrate_bps.fetch_sub(have, Ordering::Relaxed);
            tracing::debug!(from = have, to = want, "encoder bitrate changed");
        }
        let force =
            std::mem::take(&mut first) | shared.force_keyframe.swap(false, Ordering::Relaxed);
        let t1 = Instant::now();
        let encoded = encoder.encode(&i420, force).map_err(|e| e.to_string())?;
        shared.stage(Stage::Encode, t1.elapsed());
        let header = FrameHeader {
            frame_number: raw.number,
            group: 0,
            last_command_seq: raw.last_seq,
            render_start_us: raw.render_start_us,
            render_end_us: raw.render_end_us,
            encode_end_us: now_us(),
            send_us: 0,
            width: i420.width() as u16,
            height: i420.height() as u16,
            keyframe: encoded.keyframe,
        };
        if net
            .try_send(NetFrame {
                header,
                data: encoded.data,
            })
            .is_err()
            && net.is_closed()
        {
            return Ok(());
        }
    }
    Ok(())
}

async fn send_loop(
    mut attachment: tokio::sync::watch::Receiver<Option<Attachment>>,
    mut frames: tokio::sync::mpsc::Receiver<NetFrame>,
    shared: Arc<Shared>,
    settings: StreamSettings,
) {
    let c = &shared.counters;
    let m = shared.metrics.clone();
    let max_age_us = settings.max_frame_age.as_micros() as u64;
    let mut target: Option<Attachment> = None;
    let mut stream: Option<quinn::SendStream> = None;
    let mut group = 0u64;
    let mut awaiting_keyframe = true;
    let mut stats = StatsLog::new();
    let mut abr = BitrateController::new(
        settings.bitrate_bps,
        settings.min_bitrate_bps,
        settings.bitrate_bps,
    );
    let started = Instant::now();
    let mut last_sample = Instant::now();
    let mut last_path = (0u64, 0u64);
    let mut last_drops = 0u64;
    // Abandons the current group: the next frame sent is forced to be an IDR on a new stream.
    let restart = |stream: &mut Option<quinn::SendStream>, awaiting: &mut bool| {
        if let Some(mut s) = stream.take() {
            let _ = s.reset(0u32.into());
        }
        *awaiting = true;
        shared.force_keyframe.store(true, Ordering::Relaxed);
    };
    loop {
        let next = tokio::select! {
            changed = attachment.changed() => {
                if changed.is_err() {
                    break;
                }
                target = attachment.borrow_and_update().clone();
                if let Some(t) = &target {
                    let p = t.conn.stats().path;
                    last_path = (p.sent_packets, p.lost_packets);
                }
                restart(&mut stream, &mut awaiting_keyframe);
                continue;
            }
            next = tokio::time::timeout(Duration::from_secs(1), frames.recv()) => next,
        };
        stats.maybe_log(c);
        if let Some(t) = &target
            && last_sample.elapsed() >= SAMPLE_INTERVAL
        {
            last_sample = Instant::now();
            let p = t.conn.stats().path;
            let drops = c.dropped_encoder_busy.load(Ordering::Relaxed)
                + c.dropped_stale.load(Ordering::Relaxed);
            let sample = PathSample {
                now_ms: started.elapsed().as_millis() as u64,
                rtt_ms: p.rtt.as_secs_f64() * 1000.0,
                sent: p.sent_packets.saturating_sub(last_path.0),
                lost: p.lost_packets.saturating_sub(last_path.1),
                dropped_frames: drops.saturating_sub(last_drops),
            };
            last_path = (p.sent_packets, p.lost_packets);
            last_drops = drops;
            if let Some(b) = abr.on_sample(sample) {
                tracing::debug!(bitrate = b, ?sample, "adaptive bitrate");
                shared.target_bitrate.store(u64::from(b), Ordering::Relaxed);
            }
        }
        let mut f = match next {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(_) => continue,
        };
        let Some(conn) = target.as_ref().map(|t| t.conn.clone()) else {
            continue;
        };
        let stale = now_us().saturating_sub(f.header.render_start_us) > max_age_us;
        if stale {
            shared.dropped(DropReason::Stale);
            restart(&mut stream, &mut awaiting_keyframe);
            continue;
        }
        if awaiting_keyframe && !f.header.keyframe {
            shared.dropped(DropReason::AwaitingKeyframe);
            shared.force_keyframe.store(true, Ordering::Relaxed);
            continue;
        }
        if f.header.keyframe {
            // A keyframe closes the current group and opens the next on a fresh stream.
            if let Some(mut s) = stream.take() {
                let _ = s.finish();
            }
            let mut s = match conn.open_uni().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(error = %e, "device connection gone; waiting for another");
                    target = None;
                    continue;
                }
            };
            let _ = s.set_priority(0);
            group += 1;
            if s.write_all(&MediaStreamHeader { version: 1, group }.encode())
                .await
                .is_err()
            {
                target = None;
                continue;
            }
            stream = Some(s);
            awaiting_keyframe = false;
            c.keyframes.fetch_add(1, Ordering::Relaxed);
            m.keyframes.fetch_add(1, Ordering::Relaxed);
        }
        let Some(s) = stream.as_mut() else { continue };
        f.header.group = group;
        f.header.send_us = now_us();
        let Ok(prefix) = f.header.record_prefix(f.data.len()) else {
            tracing::warn!(
                bytes = f.data.len(),
                "encoded frame exceeds the record limit; dropped"
            );
            continue;
        };
        let t0 = Instant::now();
        let write = async {
            s.write_all(&prefix).await?;
            s.write_all(&f.data).await
        };
        match tokio::time::timeout(settings.max_frame_age, write).await {
            Ok(Ok(())) => {
                shared.stage(Stage::Send, t0.elapsed());
                c.bytes_sent
                    .fetch_add((prefix.len() + f.data.len()) as u64, Ordering::Relaxed);
                m.bytes_sent
                    .fetch_add((prefix.len() + f.data.len()) as u64, Ordering::Relaxed);
                m.frame_bytes.observe(f.data.len() as f64);
            }
            Ok(Err(quinn::WriteError::Stopped(code))) => {
                // The device abandoned this group (it fell behind): restart at an IDR.
                tracing::debug!(group, code = %code, "device stopped the group");
                shared.dropped(DropReason::Stale);
                stream = None;
                restart(&mut stream, &mut awaiting_keyframe);
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "media stream closed; waiting for a device");
                stream = None;
                target = None;
            }
            Err(_) => {
                // The device is not reading fast enough: drop this group, restart at an IDR.
                shared.dropped(DropReason::Stale);
                restart(&mut stream, &mut awaiting_keyframe);
            }
        }
    }
    if let Some(mut s) = stream.take() {
        let _ = s.finish();
    }
}

/// One debug line per second of stream statistics.
struct StatsLog {
    at: Instant,
    last: [u64; 6],
    stages: [(u64, u64); 4],
}

impl StatsLog {
    fn new() -> Self {
        Self {
            at: Instant::now(),
            last: [0; 6],
            stages: [(0, 0); 4],
        }
    }

    fn maybe_log(&mut self, c: &StreamCounters) {
        let elapsed = self.at.elapsed();
        if elapsed < Duration::from_secs(1) {
            return;
        }
        let now = [
            c.rendered.load(Ordering::Relaxed),
            c.sent.load(Ordering::Relaxed),
            c.bytes_sent.load(Ordering::Relaxed),
            c.dropped_encoder_busy.load(Ordering::Relaxed),
            c.dropped_stale.load(Ordering::Relaxed)
                + c.dropped_awaiting_keyframe.load(Ordering::Relaxed),
            c.keyframes.load(Ordering::Relaxed),
        ];
        let stages = [
            c.render.snapshot(),
            c.convert.snapshot(),
            c.encode.snapshot(),
            c.send.snapshot(),
        ];
        let mean_ms = |i: usize| {
            let (t, n) = (
                stages[i].0 - self.stages[i].0,
                stages[i].1 - self.stages[i].1,
            );
            if n == 0 {
                0.0
            } else {
                t as f64 / n as f64 / 1000.0
            }
        };
        let secs = elapsed.as_secs_f64();
        tracing::debug!(
            rendered_fps = format!("{:.1}", (now[0] - self.last[0]) as f64 / secs),
            sent_fps = format!("{:.1}", (now[1] - self.last[1]) as f64 / secs),
            kbps = (now[2] - self.last[2]) as f64 * 8.0 / secs / 1000.0,
            dropped_busy = now[3] - self.last[3],
            dropped_stale = now[4] - self.last[4],
            keyframes = now[5] - self.last[5],
            render_ms = format!("{:.2}", mean_ms(0)),
            convert_ms = format!("{:.2}", mean_ms(1)),
            encode_ms = format!("{:.2}", mean_ms(2)),
            send_ms = format!("{:.2}", mean_ms(3)),
            "stream stats"
        );
        self.at = Instant::now();
        self.last = now;
        self.stages = stages;
    }
}
