//! One stream's frame pipeline: render → convert → encode → send, each stage on its own thread or
//! task, joined by bounded hand-offs so the frame interval approaches the slowest stage rather
//! than the sum, and a slow device makes the host drop frames instead of queueing them.
//!
//! ```text
//!  control ──commands (bounded)──▶ render thread ──RGBA (1 slot)──▶ encode thread
//!                                  (render.rs)                      (encode.rs)
//!                                                                       │ H.264 (2 slots)
//!                                            QUIC ◀── send task (send.rs, group.rs)
//! ```
//! Drops happen in two places, both counted: the encode stage skips a frame when the sender's
//! queue is full (nothing was encoded, so the H.264 reference chain stays intact), and the group
//! sender resets the current group's stream when a frame is older than `max_frame_age` or its
//! write stalls that long; the next frame is then forced to be an IDR that opens a new group.
//! Every stage reads time through one injected [`clock::StageClock`].

mod budget;
mod clock;
mod encode;
mod group;
mod levels;
mod render;
mod send;
mod stats;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use farview_encode::I420Frame;
use farview_protocol::{FrameHeader, LookUpdate, Reply, Request, WireError};
use farview_render::{Camera, Environment, FrameRenderer, ModelUploader, UploadedModel};
use farview_scene::{Model, ModelInfo};
use tokio::sync::oneshot;
use tracing::Instrument;

pub(crate) use self::clock::{StageClock, SystemClock};
pub(crate) use self::stats::Shared;
use crate::metrics::Metrics;
use crate::outbox::ReplySink;
pub(crate) use crate::settings::StreamSettings;
use crate::tap::FrameTap;

/// What the control side asks the render thread to do, in order.
pub(crate) enum RenderCommand {
    /// Adds an imported model whose GPU assets were uploaded off the render thread, under
    /// `name`; `key` (the asset path) lets a later load of the same file share its assets.
    AddModel {
        seq: u64,
        name: String,
        key: Option<String>,
        model: Box<Model>,
        uploaded: UploadedModel,
        max_triangles: u64,
        reply: oneshot::Sender<Result<AddedModel, WireError>>,
    },
    /// Instantiates the model loaded from `key` again if its assets are still alive; answers
    /// `None` when they are not (the caller imports the file).
    Instantiate {
        seq: u64,
        key: String,
        max_triangles: u64,
        reply: oneshot::Sender<Option<Result<AddedModel, WireError>>>,
    },
    /// Changes the look from the next frame on; `environment` (name, prefiltered environment or
    /// `None` for none) is set when the update names one, and is ready: the render thread never
    /// waits for a prefilter.
    SetLook {
        seq: u64,
        update: LookUpdate,
        environment: Option<(String, Option<Environment>)>,
        reply: oneshot::Sender<Result<Reply, WireError>>,
    },
    /// Moves the camera; answered once applied.
    SetCamera {
        seq: u64,
        camera: Camera,
        reply: ReplySink,
    },
    /// Holds the render loop still for a while, as a hung driver call would (tests of the
    /// health reporting only: no device message maps to it).
    Stall(std::time::Duration),
    /// A scene command or query; the reply goes straight to the device's control stream.
    Scene {
        seq: u64,
        request: Request,
        reply: ReplySink,
    },
}

/// A model added to the scene: what the scene reports, and its material variants' names.
#[derive(Debug)]
pub(crate) struct AddedModel {
    pub(crate) info: ModelInfo,
    pub(crate) variants: Vec<String>,
    /// The file's cameras as placed in the scene.
    pub(crate) cameras: Vec<farview_protocol::ModelCamera>,
}

/// The device connection frames currently go to.
#[derive(Clone)]
pub(crate) struct Attachment {
    pub(crate) id: u64,
    pub(crate) conn: web_transport_quinn::Session,
}

/// A rendered frame on its way to the encoder.
pub(crate) struct RawFrame {
    number: u64,
    last_seq: u64,
    render_start_us: u64,
    render_end_us: u64,
    stride: usize,
    /// RGBA rows `stride` apart, or a packed I420 frame when `i420`.
    rgba: Vec<u8>,
    i420: bool,
    /// The animation time the frame shows.
    animation: Option<farview_protocol::FrameAnimation>,
    /// The detail it was drawn at.
    detail: Option<farview_protocol::FrameDetail>,
}

/// An encoded frame on its way to the network.
pub(crate) struct NetFrame {
    header: FrameHeader,
    data: Vec<u8>,
}

/// Why the pipeline stopped on its own.
pub(crate) type PipelineExit = oneshot::Receiver<String>;

/// A running pipeline. Dropping it stops the stages.
pub(crate) struct Pipeline {
    commands: mpsc::SyncSender<RenderCommand>,
    /// Uploads models' GPU assets off the render thread.
    pub(crate) uploader: ModelUploader,
    pub(crate) shared: Arc<Shared>,
    attachment: tokio::sync::watch::Sender<Option<Attachment>>,
    sender_task: tokio::task::JoinHandle<()>,
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        // The encode stage keeps the gauge in step with every change it applies.
        self.shared
            .metrics
            .encoder_bitrate_bps
            .sub(i64::try_from(self.shared.applied_bitrate.load(Ordering::Relaxed)).unwrap_or(0));
        if let Some(a) = self.attachment.borrow().as_ref() {
            self.shared.metrics.detach(a.id);
        }
        self.shared.stop.store(true, Ordering::Relaxed);
        self.sender_task.abort();
    }
}

/// Render and encode threads running now, in the whole process.
static LIVE_STAGES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Render and encode threads still running in this process (they end shortly after their
/// pipeline is dropped). Tests wait for zero before the process exits: a render thread still
/// inside the GL driver while the driver's exit handlers run corrupts the heap.
pub(crate) fn live_stage_threads() -> usize {
    LIVE_STAGES.load(Ordering::SeqCst)
}

/// Counts one stage thread while it lives.
struct LiveStage;

impl LiveStage {
    fn enter() -> Self {
        LIVE_STAGES.fetch_add(1, Ordering::SeqCst);
        Self
    }
}

impl Drop for LiveStage {
    fn drop(&mut self) {
        LIVE_STAGES.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Commands the render thread may have queued; more is back-pressure to the control side.
const COMMAND_QUEUE: usize = 1024;
/// Encoded frames waiting for the network.
const NET_QUEUE: usize = 2;

/// The render queue is full or the render thread has stopped.
pub(crate) fn command_error(e: &mpsc::TrySendError<RenderCommand>) -> WireError {
    use farview_protocol::ErrorCode;
    match e {
        mpsc::TrySendError::Full(_) => {
            WireError::new(ErrorCode::BUSY, "render command queue is full; slow down")
        }
        mpsc::TrySendError::Disconnected(_) => {
            WireError::new(ErrorCode::INTERNAL, "render loop has stopped")
        }
    }
}

impl Pipeline {
    /// Starts the stages (idle until a device is attached). `renderer` was created by the
    /// caller so that a failure is reported before anything runs.
    /// `environment` names the environment `renderer`'s lighting holds (what `GetLook`
    /// reports until a `SetLook` changes it).
    pub(crate) fn start(
        renderer: FrameRenderer,
        environment: String,
        settings: StreamSettings,
        tap: Option<FrameTap>,
        metrics: Arc<Metrics>,
    ) -> Result<(Self, PipelineExit), farview_encode::EncodeError> {
        let encoder = encode::encoder_for(&settings)?;
        Self::start_with(
            renderer,
            environment,
            encoder,
            settings,
            tap,
            metrics,
            Arc::new(SystemClock),
        )
    }

    /// [`Pipeline::start`] with the encoder and clock chosen by the caller.
    pub(crate) fn start_with(
        mut renderer: FrameRenderer,
        environment: String,
        encoder: Box<dyn farview_encode::VideoEncoder>,
        settings: StreamSettings,
        tap: Option<FrameTap>,
        metrics: Arc<Metrics>,
        clock: Arc<dyn StageClock>,
    ) -> Result<(Self, PipelineExit), farview_encode::EncodeError> {
        let i420 = I420Frame::new(settings.width, settings.height)?;
        let gpu_convert = settings.gpu_color_conversion
            && renderer.enable_gpu_i420().unwrap_or_else(|e| {
                tracing::warn!(error = %e, "GPU colour conversion unavailable; converting on the CPU");
                false
            });
        tracing::info!(gpu_convert, encoder = encoder.name(), "pipeline stages");
        let uploader = renderer.uploader();
        metrics
            .encoder_bitrate_bps
            .add(i64::from(settings.bitrate_bps));
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
        let spawn_err = |what: &str, e: std::io::Error| {
            farview_encode::EncodeError::Encoder(format!("cannot spawn {what} thread: {e}"))
        };
        let stage = render::RenderStage {
            renderer,
            environment,
            settings: settings.clone(),
            commands: cmd_rx,
            frames: raw_tx,
            pool: pool_rx,
            tap,
            clock: clock.clone(),
        };
        {
            let (shared, report, span) = (shared.clone(), report.clone(), span.clone());
            let live = LiveStage::enter();
            std::thread::Builder::new()
                .name("farview-render".into())
                .spawn(move || {
                    let _live = live;
                    let _g = span.enter();
                    if let Err(e) = stage.run(&shared) {
                        tracing::error!(error = %e, "render loop failed");
                        report(format!("render loop failed: {e}"));
                    }
                })
                .map_err(|e| spawn_err("render", e))?;
        }
        {
            let (shared, report, span, clock) =
                (shared.clone(), report.clone(), span.clone(), clock.clone());
            let live = LiveStage::enter();
            std::thread::Builder::new()
                .name("farview-encode".into())
                .spawn(move || {
                    let _live = live;
                    let _g = span.enter();
                    if let Err(e) =
                        encode::encode_loop(encoder, i420, raw_rx, pool_tx, net_tx, &shared, &clock)
                    {
                        tracing::error!(error = %e, "encode loop failed");
                        report(format!("encode loop failed: {e}"));
                    }
                })
                .map_err(|e| spawn_err("encode", e))?;
        }
        let (attachment, attach_rx) = tokio::sync::watch::channel(None);
        let sender_task = tokio::spawn(
            send::send_loop(attach_rx, net_rx, shared.clone(), settings, clock).instrument(span),
        );
        Ok((
            Self {
                commands: cmd_tx,
                uploader,
                shared,
                attachment,
                sender_task,
            },
            exit_rx,
        ))
    }

    /// Queues a command for the render thread without waiting.
    /// When the render loop last turned, µs since the Unix epoch (0: not yet).
    pub(crate) fn beat_us(&self) -> u64 {
        self.shared.beat_us.load(Ordering::Relaxed)
    }

    pub(crate) fn command(&self, cmd: RenderCommand) -> Result<(), WireError> {
        self.commands.try_send(cmd).map_err(|e| command_error(&e))
    }

    /// Sends frames to this connection from the next keyframe on.
    /// `session` labels its metrics: the session id, or `sessionless-<id>`.
    pub(crate) fn attach(&self, id: u64, session: String, conn: web_transport_quinn::Session) {
        self.shared.force_keyframe.store(true, Ordering::Relaxed);
        self.shared.metrics.attach(id, session, (*conn).clone());
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::config::StreamConfig;
    use farview_render::{AdapterChoice, GpuContext, Lighting};
    use farview_scene::{ImportError, ImportLimits};

    /// Bug 7 at its root: a session reported `ready` with `modelsLoaded: 0` because the render
    /// thread counted the scene's models once per tick, after it had answered the load. Whoever
    /// hears "loaded" must read a count that includes the model.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_model_is_counted_before_its_load_is_answered() {
        let gpu = GpuContext::new(AdapterChoice::Auto).expect("a GPU adapter (Mesa's llvmpipe)");
        let renderer = FrameRenderer::new(&gpu, 64, 64, Lighting::default()).unwrap();
        let stream = StreamConfig {
            width: 64,
            height: 64,
            ..StreamConfig::default()
        };
        let settings = StreamSettings::resolve(&stream, None, true);
        let (pipeline, exit) =
            Pipeline::start(renderer, "none".into(), settings, None, Arc::default()).unwrap();
        let glb = farview_scene::synthetic::grid_glb(2);
        for n in 1..=3u64 {
            let mut no_files = |uri: &str| Err(ImportError::NotFound(uri.to_owned()));
            let model = farview_scene::import_gltf_with(
                &glb,
                &mut no_files,
                &ImportLimits::default(),
                &mut |_| true,
            )
            .unwrap();
            let uploaded = pipeline.uploader.upload(&model).unwrap();
            let (reply, answered) = oneshot::channel();
            pipeline
                .command(RenderCommand::AddModel {
                    seq: n,
                    name: format!("grid {n}"),
                    key: None,
                    model: Box::new(model),
                    uploaded,
                    max_triangles: u64::MAX,
                    reply,
                })
                .unwrap();
            answered.await.unwrap().unwrap();
            assert_eq!(pipeline.shared.models.load(Ordering::Relaxed), n);
        }
        // Stop the stages and wait for their threads (the exit channel closes when the last of
        // them ends): a render thread still inside the GL driver when the test process exits
        // crashes it there now and then.
        drop(pipeline);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(30), exit).await;
    }
}
