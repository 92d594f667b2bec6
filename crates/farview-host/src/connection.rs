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
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::HostContext;
use crate::pipeline::{Pipeline, RenderCommand, StreamSettings};

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
        request:
            Request::Hello {
                version,
                client,
                session,
            },
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

    let conn_id = conn.stable_id() as u64;
    let bound = match bind(conn, conn_id, session, host).await {
        Ok(b) => b,
        Err(Refused::Wire(err)) => {
            let reason = err.to_string();
            let _ = write(
                &mut send,
                &ServerMessage::Reply {
                    seq,
                    result: Err(err),
                },
            )
            .await;
            // Let the typed reply reach the device before the close frame overtakes it.
            let _ = send.finish();
            let _ = tokio::time::timeout(Duration::from_millis(500), send.stopped()).await;
            return Err(Close(CloseCode::REFUSED, reason));
        }
        Err(Refused::Close(c)) => return Err(c),
    };
    bound.pipeline.attach(conn_id, conn.clone());
    let _detach = DetachOnDrop {
        bound: &bound,
        conn_id,
        host,
    };
    let settings = &bound.settings;
    let info = StreamInfo {
        version: PROTOCOL_VERSION,
        width: settings.width,
        height: settings.height,
        fps: settings.fps,
        codec: "h264".into(),
        host: concat!("farview-host ", env!("CARGO_PKG_VERSION")).into(),
        adapter: host.gpu.summary(),
        session_id: bound.session.as_ref().map(|s| s.id.to_string()),
        resume_secret: bound.session.as_ref().and_then(|s| s.resume_secret.clone()),
        lease: bound.session.as_ref().map(|s| s.lease),
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

    let never = CancellationToken::new();
    let ended = bound.session.as_ref().map_or(&never, |s| &s.ended);
    let mut exit = bound.exit.lock().ok().and_then(|mut e| e.take());
    let exit = async move {
        match exit.as_mut() {
            Some(rx) => rx.await.unwrap_or_else(|_| "pipeline stopped".into()),
            None => std::future::pending().await,
        }
    };
    tokio::pin!(exit);
    loop {
        let msg = tokio::select! {
            msg = control.next(&mut recv) => msg?,
            why = &mut exit => {
                let event = ServerMessage::Event(Event::Closing(WireError::new(ErrorCode::INTERNAL, why.clone())));
                let _ = write(&mut send, &event).await;
                return Err(Close(CloseCode::INTERNAL, why));
            }
            _ = ended.cancelled() => {
                let why = bound
                    .session
                    .as_ref()
                    .and_then(|s| s.ended_why.lock().ok().and_then(|w| w.clone()))
                    .unwrap_or(crate::sessions::Ended { code: ErrorCode::SESSION_ENDED, message: "session ended".into() });
                let event = ServerMessage::Event(Event::Closing(WireError::new(why.code, why.message.clone())));
                let _ = write(&mut send, &event).await;
                // Give the Closing event a moment to reach the device before the close frame.
                let _ = tokio::time::timeout(Duration::from_millis(200), send.stopped()).await;
                return Err(Close(CloseCode::SESSION_ENDED, why.message));
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
            handle(msg.seq, msg.request, &bound, host).await
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

/// The session side of a bound connection.
struct SessionSide {
    id: Uuid,
    ended: CancellationToken,
    ended_why: Arc<std::sync::Mutex<Option<crate::sessions::Ended>>>,
    resume_secret: Option<String>,
    lease: farview_protocol::LeaseInfo,
}

/// What a connection streams from.
struct BoundStream {
    pipeline: Arc<Pipeline>,
    settings: StreamSettings,
    max_triangles: u64,
    session: Option<SessionSide>,
    /// Ad-hoc streams own their pipeline and watch it for failures; sessions watch theirs.
    exit: std::sync::Mutex<Option<crate::pipeline::PipelineExit>>,
}

enum Refused {
    Wire(WireError),
    Close(Close),
}

/// Binds the connection to its session's pipeline, or starts an ad-hoc one.
async fn bind(
    conn: &quinn::Connection,
    conn_id: u64,
    session: Option<farview_protocol::SessionAuth>,
    host: &HostContext,
) -> Result<BoundStream, Refused> {
    let internal = |m: String| Refused::Close(Close(CloseCode::INTERNAL, m));
    if let Some(auth) = session {
        let sessions = host.sessions.clone();
        let device = conn.remote_address().to_string();
        let b = tokio::task::spawn_blocking(move || {
            sessions
                .admit(&auth, conn_id, &device)
                .map(|b| (b, auth.id))
        })
        .await
        .map_err(|e| internal(format!("session admission panicked: {e}")))?
        .map_err(Refused::Wire)?;
        let (b, id) = b;
        let id = Uuid::parse_str(&id).map_err(|e| internal(e.to_string()))?;
        return Ok(BoundStream {
            pipeline: b.pipeline,
            settings: b.settings,
            max_triangles: b.max_triangles,
            session: Some(SessionSide {
                id,
                ended: b.ended,
                ended_why: b.ended_why,
                resume_secret: b.resume_secret,
                lease: b.lease,
            }),
            exit: std::sync::Mutex::new(None),
        });
    }
    if !host.config.sessions.allow_sessionless {
        return Err(Refused::Wire(WireError::new(
            ErrorCode::SESSION_REQUIRED,
            "this host only serves devices that name a session (create one with POST /v1/sessions)",
        )));
    }
    let settings = host.stream_settings();
    let gpu = host.gpu.clone();
    let (w, h) = (settings.width, settings.height);
    let lighting = farview_render::Lighting::default();
    let renderer = tokio::task::spawn_blocking(move || FrameRenderer::new(&gpu, w, h, lighting))
        .await
        .map_err(|e| internal(format!("renderer setup panicked: {e}")))?
        .map_err(|e| internal(format!("renderer setup failed: {e}")))?;
    let (pipeline, exit) = Pipeline::start(renderer, settings.clone(), host.tap.clone())
        .map_err(|e| internal(format!("encoder setup failed: {e}")))?;
    Ok(BoundStream {
        pipeline: Arc::new(pipeline),
        settings,
        max_triangles: u64::MAX,
        session: None,
        exit: std::sync::Mutex::new(Some(exit)),
    })
}

/// Detaches the connection from its pipeline and session however the connection ends.
struct DetachOnDrop<'a> {
    bound: &'a BoundStream,
    conn_id: u64,
    host: &'a HostContext,
}

impl Drop for DetachOnDrop<'_> {
    fn drop(&mut self) {
        self.bound.pipeline.detach(self.conn_id);
        if let Some(s) = &self.bound.session {
            let (sessions, id, conn_id) = (self.host.sessions.clone(), s.id, self.conn_id);
            // The record write is a disk sync: keep it off the async worker.
            tokio::task::spawn_blocking(move || sessions.detach(id, conn_id));
        }
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
    bound: &BoundStream,
    host: &HostContext,
) -> Result<Reply, WireError> {
    let pipeline = &bound.pipeline;
    let no_session = || {
        WireError::new(
            ErrorCode::NO_SESSION,
            "this stream has no session (ad-hoc stream)",
        )
    };
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
        Request::LoadModel { path } => load_model(seq, path, bound, host).await,
        Request::GetLease => {
            let id = bound.session.as_ref().ok_or_else(no_session)?.id;
            host.sessions.lease(id).map(Reply::Lease)
        }
        Request::SetLease { max_lease_ms } => {
            let id = bound.session.as_ref().ok_or_else(no_session)?.id;
            let sessions = host.sessions.clone();
            tokio::task::spawn_blocking(move || sessions.set_lease(id, max_lease_ms))
                .await
                .map_err(|e| WireError::new(ErrorCode::INTERNAL, e.to_string()))?
                .map(|(_, lease)| Reply::Lease(lease))
                .map_err(|e| {
                    let code = if e.status == 422 {
                        ErrorCode::INVALID_LEASE
                    } else {
                        ErrorCode::SESSION_ENDED
                    };
                    WireError::new(code, e.message)
                })
        }
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
    bound: &BoundStream,
    host: &HostContext,
) -> Result<Reply, WireError> {
    let pipeline = &bound.pipeline;
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
    let have = pipeline.shared.triangles.load(Ordering::Relaxed);
    let adding = model.triangle_count() as u64;
    if have.saturating_add(adding) > bound.max_triangles {
        return Err(WireError::new(
            ErrorCode::MODEL_TOO_LARGE,
            format!(
                "{path} has {adding} triangles; with the {have} already loaded that exceeds this session size's budget of {}",
                bound.max_triangles
            ),
        ));
    }
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
