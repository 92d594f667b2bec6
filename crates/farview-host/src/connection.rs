//! One device connection: the control stream's request/response loop. It validates every message,
//! forwards scene changes to the pipeline in order, and answers each request with a typed reply.
//! A peer that breaks framing is closed with a protocol error; nothing it sends can stop the host.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use farview_protocol::{
    CameraPose, ClientMessage, CloseCode, ErrorCode, Event, FrameDecoder, LoadedModel,
    MAX_CONTROL_MESSAGE, PROTOCOL_VERSION, Reply, Request, ServerMessage, StreamInfo, WireError,
    decode_message, encode_message,
};
use farview_render::{Camera, FrameRenderer};
use farview_scene::{ImportError, ImportErrorKind};
use glam::{Quat, Vec3};
use tokio::sync::oneshot;

use crate::HostContext;
use crate::pipeline::{Pipeline, RenderCommand};

/// How long a device has to open its control stream and say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a connection ended early; the close code and reason go to the device.
struct Close(CloseCode, String);

pub(crate) async fn serve(conn: quinn::Connection, host: Arc<HostContext>) {
    match run(&conn, &host).await {
        Ok(()) => conn.close(CloseCode::NORMAL.0.into(), b"bye"),
        Err(Close(code, reason)) => {
            tracing::info!(code = code.0, %reason, "closing connection");
            conn.close(code.0.into(), reason.as_bytes());
        }
    }
}

async fn run(conn: &quinn::Connection, host: &HostContext) -> Result<(), Close> {
    let protocol = |reason: String| Close(CloseCode::PROTOCOL_ERROR, reason);
    let (mut send, mut recv) = tokio::time::timeout(HELLO_TIMEOUT, conn.accept_bi())
        .await
        .map_err(|_| protocol("no control stream within 10 s".into()))?
        .map_err(|e| {
            Close(
                CloseCode::NORMAL,
                format!("connection lost before control stream: {e}"),
            )
        })?;
    let _ = send.set_priority(1);
    let mut control = Control {
        decoder: FrameDecoder::new(MAX_CONTROL_MESSAGE),
        buf: vec![0u8; 16 * 1024],
        last_seq: 0,
    };

    // The first message must be Hello.
    let hello = tokio::time::timeout(HELLO_TIMEOUT, control.next(&mut recv))
        .await
        .map_err(|_| protocol("no Hello within 10 s".into()))??;
    let Some(hello) = hello else { return Ok(()) };
    let ClientMessage {
        seq,
        request: Request::Hello { version, client },
    } = hello
    else {
        let err = WireError::new(ErrorCode::HELLO_REQUIRED, "the first message must be Hello");
        let _ = write(
            &mut send,
            &ServerMessage::Reply {
                seq: hello.seq,
                result: Err(err),
            },
        )
        .await;
        return Err(protocol("first message was not Hello".into()));
    };
    if version != PROTOCOL_VERSION {
        let err = WireError::new(
            ErrorCode::UNSUPPORTED_VERSION,
            format!("host speaks protocol {PROTOCOL_VERSION}, device sent {version}"),
        );
        let _ = write(
            &mut send,
            &ServerMessage::Reply {
                seq,
                result: Err(err),
            },
        )
        .await;
        return Err(protocol("unsupported protocol version".into()));
    }
    tracing::info!(%client, "device said hello");

    let settings = host.stream_settings();
    let gpu = host.gpu.clone();
    let (w, h) = (settings.width, settings.height);
    let lighting = farview_render::Lighting::default();
    let renderer = tokio::task::spawn_blocking(move || FrameRenderer::new(&gpu, w, h, lighting))
        .await
        .map_err(|e| Close(CloseCode::INTERNAL, format!("renderer setup panicked: {e}")))?
        .map_err(|e| Close(CloseCode::INTERNAL, format!("renderer setup failed: {e}")))?;
    let (pipeline, mut exit) =
        Pipeline::start(renderer, settings.clone(), conn.clone(), host.tap.clone())
            .map_err(|e| Close(CloseCode::INTERNAL, format!("encoder setup failed: {e}")))?;
    let info = StreamInfo {
        version: PROTOCOL_VERSION,
        width: settings.width,
        height: settings.height,
        fps: settings.fps,
        codec: "h264".into(),
        host: concat!("farview-host ", env!("CARGO_PKG_VERSION")).into(),
        adapter: host.gpu.summary(),
    };
    write(
        &mut send,
        &ServerMessage::Reply {
            seq,
            result: Ok(Reply::Welcome(info)),
        },
    )
    .await?;
    control.last_seq = seq;

    loop {
        let msg = tokio::select! {
            msg = control.next(&mut recv) => msg?,
            why = &mut exit => {
                let why = why.unwrap_or_else(|_| "pipeline stopped".into());
                let event = ServerMessage::Event(Event::Closing(WireError::new(ErrorCode::INTERNAL, why.clone())));
                let _ = write(&mut send, &event).await;
                return Err(Close(CloseCode::INTERNAL, why));
            }
            _ = host.shutdown.cancelled() => {
                let event = ServerMessage::Event(Event::Closing(WireError::new(ErrorCode::SHUTTING_DOWN, "host is shutting down")));
                let _ = write(&mut send, &event).await;
                return Err(Close(CloseCode::SHUTTING_DOWN, "host is shutting down".into()));
            }
        };
        let Some(msg) = msg else { return Ok(()) };
        let result = if msg.seq <= control.last_seq {
            Err(WireError::new(
                ErrorCode::PROTOCOL_ERROR,
                format!(
                    "sequence numbers must increase: got {} after {}",
                    msg.seq, control.last_seq
                ),
            ))
        } else {
            control.last_seq = msg.seq;
            handle(msg.seq, msg.request, &pipeline, host).await
        };
        if let Err(e) = &result {
            tracing::debug!(seq = msg.seq, code = %e.code, message = %e.message, "request refused");
        }
        write(
            &mut send,
            &ServerMessage::Reply {
                seq: msg.seq,
                result,
            },
        )
        .await?;
    }
}

struct Control {
    decoder: FrameDecoder,
    buf: Vec<u8>,
    last_seq: u64,
}

impl Control {
    /// The next message, `None` at a clean end of stream. Cancel-safe: bytes read are buffered
    /// in the decoder before any await point can drop them.
    async fn next(&mut self, recv: &mut quinn::RecvStream) -> Result<Option<ClientMessage>, Close> {
        let protocol = |reason: String| Close(CloseCode::PROTOCOL_ERROR, reason);
        loop {
            if let Some(payload) = self
                .decoder
                .next_frame()
                .map_err(|e| protocol(e.to_string()))?
            {
                return decode_message(&payload)
                    .map(Some)
                    .map_err(|e| protocol(e.to_string()));
            }
            match recv.read(&mut self.buf).await {
                Ok(Some(n)) => self
                    .decoder
                    .push(&self.buf[..n])
                    .map_err(|e| protocol(e.to_string()))?,
                Ok(None) => {
                    return self
                        .decoder
                        .finish()
                        .map(|()| None)
                        .map_err(|e| protocol(e.to_string()));
                }
                Err(e) => {
                    return Err(Close(
                        CloseCode::NORMAL,
                        format!("control stream ended: {e}"),
                    ));
                }
            }
        }
    }
}

async fn write(send: &mut quinn::SendStream, msg: &ServerMessage) -> Result<(), Close> {
    let bytes = encode_message(msg).map_err(|e| Close(CloseCode::INTERNAL, e.to_string()))?;
    send.write_all(&bytes).await.map_err(|e| {
        Close(
            CloseCode::NORMAL,
            format!("control stream write failed: {e}"),
        )
    })
}

async fn handle(
    seq: u64,
    request: Request,
    pipeline: &Pipeline,
    host: &HostContext,
) -> Result<Reply, WireError> {
    match request {
        Request::Hello { .. } => Err(WireError::new(
            ErrorCode::PROTOCOL_ERROR,
            "Hello was already received",
        )),
        Request::Ping => Ok(Reply::Pong {
            host_time_us: crate::time::now_us(),
        }),
        Request::RequestKeyframe => {
            pipeline
                .shared
                .force_keyframe
                .store(true, Ordering::Relaxed);
            Ok(Reply::KeyframeScheduled)
        }
        Request::SetCamera { pose } => {
            let camera = camera_from_pose(&pose)?;
            send_command(pipeline, RenderCommand::SetCamera { seq, camera })?;
            Ok(Reply::CameraSet)
        }
        Request::LoadModel { path } => load_model(seq, path, pipeline, host).await,
    }
}

fn camera_from_pose(pose: &CameraPose) -> Result<Camera, WireError> {
    pose.validate()
        .map_err(|m| WireError::new(ErrorCode::INVALID_ARGUMENT, m))?;
    Ok(Camera {
        position: Vec3::from_array(pose.position),
        rotation: Quat::from_array(pose.rotation).normalize(),
        fov_y: pose.fov_y,
        near: pose.near,
        far: pose.far,
    })
}

fn send_command(pipeline: &Pipeline, cmd: RenderCommand) -> Result<(), WireError> {
    pipeline.commands.try_send(cmd).map_err(|e| match e {
        std::sync::mpsc::TrySendError::Full(_) => WireError::new(
            ErrorCode::INTERNAL,
            "render command queue is full; slow down",
        ),
        std::sync::mpsc::TrySendError::Disconnected(_) => {
            WireError::new(ErrorCode::INTERNAL, "render loop has stopped")
        }
    })
}

fn import_error(e: &ImportError) -> WireError {
    let code = match e.kind() {
        ImportErrorKind::NotFound => ErrorCode::MODEL_NOT_FOUND,
        ImportErrorKind::Forbidden => ErrorCode::MODEL_PATH_FORBIDDEN,
        ImportErrorKind::Unsupported => ErrorCode::MODEL_UNSUPPORTED,
        ImportErrorKind::LimitExceeded => ErrorCode::MODEL_TOO_LARGE,
        ImportErrorKind::Io => ErrorCode::MODEL_IO,
        _ => ErrorCode::MODEL_MALFORMED,
    };
    WireError::new(code, e.to_string())
}

async fn load_model(
    seq: u64,
    path: String,
    pipeline: &Pipeline,
    host: &HostContext,
) -> Result<Reply, WireError> {
    let started = Instant::now();
    let root = host.assets_root.clone();
    let limits = host.import_limits.clone();
    let rel = path.clone();
    // Import runs on the blocking pool: a slow or hostile file never stalls the runtime, and a
    // panic in a dependency becomes an error reply instead of taking the host down.
    let model =
        tokio::task::spawn_blocking(move || farview_scene::import_file(&root, &rel, &limits))
            .await
            .map_err(|e| WireError::new(ErrorCode::INTERNAL, format!("model import crashed: {e}")))?
            .map_err(|e| import_error(&e))?;
    let (reply_tx, reply_rx) = oneshot::channel();
    send_command(
        pipeline,
        RenderCommand::AddModel {
            seq,
            name: path.clone(),
            model: Box::new(model),
            reply: reply_tx,
        },
    )?;
    let info = reply_rx
        .await
        .map_err(|_| WireError::new(ErrorCode::INTERNAL, "render loop stopped during the load"))?
        .map_err(|m| WireError::new(ErrorCode::MODEL_TOO_LARGE, m))?;
    tracing::info!(%path, triangles = info.triangles, ms = started.elapsed().as_millis() as u64, "model loaded");
    Ok(Reply::ModelLoaded(LoadedModel {
        root_entity: info.root.0,
        bounds_min: info.bounds.min.to_array(),
        bounds_max: info.bounds.max.to_array(),
        triangles: info.triangles,
        vertices: info.vertices,
        textures: info.textures,
        entities: info.entities,
        ignored_extensions: info.ignored_extensions,
        load_time_us: started.elapsed().as_micros() as u64,
    }))
}
