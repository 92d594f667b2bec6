//! One device connection: the control stream's request/response loop. It validates every message,
//! forwards scene changes to the pipeline in order, and answers each request with a typed reply.
//! A peer that breaks framing is closed with a protocol error; nothing it sends can stop the host.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use farview_protocol::{
    CameraPose, ClientMessage, CloseCode, ErrorCode, Event, FrameDecoder, MAX_CONTROL_MESSAGE,
    PROTOCOL_VERSION, Reply, Request, ServerMessage, StreamInfo, WireError, decode_message,
    encode_message,
};
use farview_render::{Camera, FrameRenderer};
use glam::{Quat, Vec3};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::HostContext;
use crate::loads::{LoadJob, Source, Uploads};
use crate::pipeline::{Pipeline, RenderCommand, ReplySink, StreamSettings};

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

    let (out_tx, out_rx) = mpsc::channel::<Outgoing>(IN_FLIGHT + 8);
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    let writer = tokio::spawn(write_loop(send, out_rx));
    let uploads = Uploads::new(bound.max_upload_bytes);
    let upload_task = tokio::spawn(uploads.clone().accept(conn.clone()));
    let _abort_uploads = AbortOnDrop(upload_task);
    let mut ctx = LoopCtx {
        bound: &bound,
        host,
        out: out_tx,
        permits,
        uploads,
        load: None,
        backlog: VecDeque::new(),
    };
    let result = control_loop(&mut control, &mut recv, &mut ctx).await;
    // The writer ends once every sender (queued render commands included) is gone; a Closing
    // event was already flushed by then, so do not wait for stragglers.
    drop(ctx);
    writer.abort();
    result
}

/// Replies computed on the render thread plus inline replies: the most queued at once, so a
/// device that pipelines requests without reading replies is slowed by QUIC flow control, not
/// by unbounded memory.
const IN_FLIGHT: usize = 1024;
/// Requests held back behind a model load (applied in order once it completes).
const MAX_BACKLOG: usize = 4096;

/// A message for the control stream's writer.
pub(crate) struct Outgoing {
    pub(crate) msg: ServerMessage,
    /// Released once written: bounds the messages in flight.
    pub(crate) permit: Option<OwnedSemaphorePermit>,
    /// Signalled once written (and, for a `Closing` event, once the device had a moment to
    /// read it).
    pub(crate) done: Option<oneshot::Sender<()>>,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn write_loop(mut send: quinn::SendStream, mut rx: mpsc::Receiver<Outgoing>) {
    while let Some(o) = rx.recv().await {
        if write(&mut send, &o.msg).await.is_err() {
            return;
        }
        if matches!(o.msg, ServerMessage::Event(Event::Closing(_))) {
            // Give the Closing event a moment to reach the device before the close frame.
            let _ = tokio::time::timeout(Duration::from_millis(200), send.stopped()).await;
        }
        if let Some(done) = o.done {
            let _ = done.send(());
        }
        // Written: the slot is free for the next reply.
        drop(o.permit);
    }
}

struct RunningLoad {
    seq: u64,
    cancel: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Result<Reply, WireError>>,
}

impl Drop for RunningLoad {
    /// A connection that ends mid-load cancels it: nobody would get its reply, and a resumed
    /// device must not find a model it never heard about.
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

struct LoopCtx<'a> {
    bound: &'a BoundStream,
    host: &'a HostContext,
    out: mpsc::Sender<Outgoing>,
    permits: Arc<Semaphore>,
    uploads: Arc<Uploads>,
    load: Option<RunningLoad>,
    backlog: VecDeque<ClientMessage>,
}

impl LoopCtx<'_> {
    /// A slot for one more message in flight; waits while [`IN_FLIGHT`] are queued.
    async fn permit(&self) -> Result<OwnedSemaphorePermit, Close> {
        self.permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Close(CloseCode::INTERNAL, "reply permits closed".into()))
    }

    async fn reply(&self, seq: u64, result: Result<Reply, WireError>) -> Result<(), Close> {
        if let Err(e) = &result {
            tracing::debug!(seq, code = %e.code, message = %e.message, "request refused");
        }
        let permit = self.permit().await?;
        self.out
            .send(Outgoing {
                msg: ServerMessage::Reply { seq, result },
                permit: Some(permit),
                done: None,
            })
            .await
            .map_err(|_| Close(CloseCode::NORMAL, "control stream writer ended".into()))
    }

    /// Sends a `Closing` event and waits (briefly) until it is on the wire.
    async fn closing(&self, code: ErrorCode, message: &str) {
        let (tx, rx) = oneshot::channel();
        let sent = self
            .out
            .send(Outgoing {
                msg: ServerMessage::Event(Event::Closing(WireError::new(code, message))),
                permit: None,
                done: Some(tx),
            })
            .await;
        if sent.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(1), rx).await;
        }
    }

    /// Handles one request in order: inline, on the render thread, as a load, or held back
    /// behind a running load.
    async fn dispatch(&mut self, msg: ClientMessage) -> Result<(), Close> {
        let ClientMessage { seq, request } = msg;
        match request {
            Request::Hello { .. } => {
                let e = WireError::new(ErrorCode::PROTOCOL_ERROR, "Hello was already received");
                self.reply(seq, Err(e)).await
            }
            Request::CancelLoad { load_seq } => {
                let result = match &self.load {
                    Some(l) if l.seq == load_seq => {
                        l.cancel.store(true, Ordering::Relaxed);
                        Ok(Reply::LoadCancelled)
                    }
                    _ => Err(WireError::new(
                        ErrorCode::INVALID_ARGUMENT,
                        format!("no load with sequence number {load_seq} is running"),
                    )),
                };
                self.reply(seq, result).await
            }
            r @ (Request::Ping
            | Request::RequestKeyframe
            | Request::GetLease
            | Request::SetLease { .. }) => {
                let result = handle_inline(r, self.bound, self.host).await;
                self.reply(seq, result).await
            }
            request if self.load.is_some() => {
                if self.backlog.len() >= MAX_BACKLOG {
                    let e = WireError::new(
                        ErrorCode::BUSY,
                        format!(
                            "{MAX_BACKLOG} requests are already waiting for a model load; wait for its reply"
                        ),
                    );
                    return self.reply(seq, Err(e)).await;
                }
                self.backlog.push_back(ClientMessage { seq, request });
                Ok(())
            }
            Request::LoadModel { path } => {
                self.start_load(seq, Source::Path(path));
                Ok(())
            }
            Request::LoadUploadedModel { upload, name } => {
                if name.len() > 256 {
                    let e =
                        WireError::new(ErrorCode::INVALID_ARGUMENT, "names are at most 256 bytes");
                    return self.reply(seq, Err(e)).await;
                }
                self.start_load(seq, Source::Upload { id: upload, name });
                Ok(())
            }
            Request::SetCamera { pose } => {
                let result = camera_from_pose(&pose).and_then(|camera| {
                    send_command(
                        &self.bound.pipeline,
                        RenderCommand::SetCamera { seq, camera },
                    )
                });
                self.reply(seq, result.map(|()| Reply::CameraSet)).await
            }
            request if crate::scene_ops::is_scene_request(&request) => {
                let permit = self.permit().await?;
                let cmd = RenderCommand::Scene {
                    seq,
                    request,
                    reply: ReplySink {
                        tx: self.out.clone(),
                        permit,
                    },
                };
                match send_command(&self.bound.pipeline, cmd) {
                    Ok(()) => Ok(()),
                    Err(e) => self.reply(seq, Err(e)).await,
                }
            }
            other => {
                let e = WireError::new(
                    ErrorCode::PROTOCOL_ERROR,
                    format!("unexpected request {other:?}"),
                );
                self.reply(seq, Err(e)).await
            }
        }
    }

    fn start_load(&mut self, seq: u64, source: Source) {
        let cancel = Arc::new(AtomicBool::new(false));
        let job = LoadJob {
            seq,
            source,
            pipeline: self.bound.pipeline.clone(),
            max_triangles: self.bound.max_triangles,
            assets_root: self.host.assets_root.clone(),
            limits: self.host.import_limits.clone(),
            uploads: self.uploads.clone(),
            cancel: cancel.clone(),
            out: self.out.clone(),
            permits: self.permits.clone(),
        };
        let task = tokio::spawn(job.run().instrument(tracing::Span::current()));
        self.load = Some(RunningLoad { seq, cancel, task });
    }

    /// Replies to the finished load, then applies what waited behind it until the next load.
    async fn finish_load(&mut self, result: Result<Reply, WireError>) -> Result<(), Close> {
        let Some(load) = self.load.take() else {
            return Ok(());
        };
        self.reply(load.seq, result).await?;
        while self.load.is_none() {
            let Some(msg) = self.backlog.pop_front() else {
                break;
            };
            self.dispatch(msg).await?;
        }
        Ok(())
    }
}

async fn control_loop(
    control: &mut Control,
    recv: &mut quinn::RecvStream,
    ctx: &mut LoopCtx<'_>,
) -> Result<(), Close> {
    let bound = ctx.bound;
    let host = ctx.host;
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
        let loading = ctx.load.is_some();
        let backlog_full = ctx.backlog.len() >= MAX_BACKLOG;
        let load_done = async {
            match ctx.load.as_mut() {
                Some(l) => Some((&mut l.task).await),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            msg = control.next(recv), if !backlog_full => {
                let Some(msg) = msg? else { return Ok(()) };
                if msg.seq <= control.last_seq {
                    let e = WireError::new(
                        ErrorCode::PROTOCOL_ERROR,
                        format!(
                            "sequence numbers must increase: got {} after {}",
                            msg.seq, control.last_seq
                        ),
                    );
                    ctx.reply(msg.seq, Err(e)).await?;
                    continue;
                }
                control.last_seq = msg.seq;
                ctx.dispatch(msg).await?;
            }
            done = load_done, if loading => {
                let result = match done {
                    Some(Ok(r)) => r,
                    Some(Err(e)) => Err(WireError::new(ErrorCode::INTERNAL, format!("model load crashed: {e}"))),
                    None => continue,
                };
                ctx.finish_load(result).await?;
            }
            why = &mut exit => {
                ctx.closing(ErrorCode::INTERNAL, &why).await;
                return Err(Close(CloseCode::INTERNAL, why));
            }
            _ = ended.cancelled() => {
                let why = bound
                    .session
                    .as_ref()
                    .and_then(|s| s.ended_why.lock().ok().and_then(|w| w.clone()))
                    .unwrap_or(crate::sessions::Ended { code: ErrorCode::SESSION_ENDED, message: "session ended".into() });
                ctx.closing(why.code, &why.message).await;
                return Err(Close(CloseCode::SESSION_ENDED, why.message));
            }
            _ = host.shutdown.cancelled() => {
                ctx.closing(ErrorCode::SHUTTING_DOWN, "host is shutting down").await;
                return Err(Close(CloseCode::SHUTTING_DOWN, "host is shutting down".into()));
            }
        }
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
    /// Largest model upload accepted.
    max_upload_bytes: u64,
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
            max_upload_bytes: b.max_upload_bytes,
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
    let (pipeline, exit) = Pipeline::start(
        renderer,
        settings.clone(),
        host.tap.clone(),
        host.metrics.clone(),
    )
    .map_err(|e| internal(format!("encoder setup failed: {e}")))?;
    Ok(BoundStream {
        pipeline: Arc::new(pipeline),
        settings,
        max_triangles: u64::MAX,
        max_upload_bytes: host.import_limits.max_file_bytes,
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

/// Requests answered on the connection's task (they never touch the scene).
async fn handle_inline(
    request: Request,
    bound: &BoundStream,
    host: &HostContext,
) -> Result<Reply, WireError> {
    let no_session = || {
        WireError::new(
            ErrorCode::NO_SESSION,
            "this stream has no session (ad-hoc stream)",
        )
    };
    match request {
        Request::Ping => Ok(Reply::Pong {
            host_time_us: crate::time::now_us(),
        }),
        Request::RequestKeyframe => {
            bound
                .pipeline
                .shared
                .force_keyframe
                .store(true, Ordering::Relaxed);
            Ok(Reply::KeyframeScheduled)
        }
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
        other => Err(WireError::new(
            ErrorCode::INTERNAL,
            format!("not an inline request: {other:?}"),
        )),
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
        std::sync::mpsc::TrySendError::Full(_) => {
            WireError::new(ErrorCode::BUSY, "render command queue is full; slow down")
        }
        std::sync::mpsc::TrySendError::Disconnected(_) => {
            WireError::new(ErrorCode::INTERNAL, "render loop has stopped")
        }
    })
}
