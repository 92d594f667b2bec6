//! The driver for one device connection: it feeds the control stream's bytes into
//! [`ControlState`] and carries out its actions (bind, answer, load, render, close) with quinn and
//! tokio. Protocol decisions live in the state machine; this file only does I/O. Native
//! (`farview/1`) connections and browsers' WebTransport sessions both arrive here as a
//! `web_transport_quinn::Session` (native ones wrapped raw: the same streams, codes and bytes as
//! plain quinn), so one driver serves both; they differ only in the control payloads' codec.

mod bind;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use farview_protocol::{
    CameraPose, CloseCode, ControlCodec, ErrorCode, PROTOCOL_VERSION, Reply, Request,
    ServerMessage, SessionAuth, StreamInfo, WireError,
};
use farview_render::Camera;
use glam::{Quat, Vec3};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use web_transport_quinn::Session;

use self::bind::{BoundStream, DetachOnDrop, bind};
use crate::HostContext;
use crate::control::{Action, ControlState, HELLO_TIMEOUT};
use crate::loads::LoadJob;
use crate::outbox::{Outbox, OutboxReceiver, Outgoing};
use crate::pipeline::{PipelineExit, RenderCommand};
use crate::untrusted::Untrusted;
use crate::uploads::Uploads;

/// How long a close waits for what was queued before it (a refusal, a `Closing` event) to be
/// acknowledged by the device, so the close frame cannot overtake it.
const FLUSH_BEFORE_CLOSE: Duration = Duration::from_secs(1);

/// Why the connection ends; the code and reason go to the device in the close frame.
struct Close(CloseCode, String);

/// Serves one device until its connection ends; `codec` is how its control payloads are encoded
/// (postcard for native devices, JSON for browsers).
pub(crate) async fn serve(conn: Session, codec: ControlCodec, host: Arc<HostContext>) {
    let Close(code, reason) = run(&conn, codec, &host).await;
    // The reason may quote the device (a refused session id, a framing error).
    let shown = Untrusted(&reason);
    if code == CloseCode::NORMAL {
        tracing::debug!(reason = %shown, "closing connection");
    } else {
        tracing::info!(code = code.0, reason = %shown, "closing connection");
    }
    if code == CloseCode::REFUSED {
        // The refusal reply was acknowledged, but a browser page may not have read it yet, and
        // a closing WebTransport session discards unread stream data (and, when the close
        // capsule is not processed within web-transport-quinn's 100 ms grace, its reason
        // too): a loaded machine then showed "connection lost" instead of "in use". Give the
        // device a moment to read the reply and close first.
        tokio::select! {
            _ = conn.closed() => {}
            () = tokio::time::sleep(REFUSAL_LINGER) => {}
        }
    }
    conn.close(code.0, reason.as_bytes());
}

/// How long a refused connection stays open for its device to read why (it usually closes
/// sooner itself).
const REFUSAL_LINGER: Duration = Duration::from_millis(1500);

async fn run(conn: &Session, codec: ControlCodec, host: &HostContext) -> Close {
    let mut state = ControlState::with_codec(now(), codec);
    let deadline = tokio::time::Instant::now() + HELLO_TIMEOUT;
    let (send, mut recv) = tokio::select! {
        s = conn.accept_bi() => match s {
            Ok(s) => s,
            Err(e) => return Close(CloseCode::NORMAL, format!("connection lost before control stream: {e}")),
        },
        _ = tokio::time::sleep_until(deadline) => {
            return Close(CloseCode::PROTOCOL_ERROR, format!("no control stream within {} s", HELLO_TIMEOUT.as_secs()));
        }
    };
    let _ = send.set_priority(1);
    let (out, out_rx) = Outbox::new();
    let writer = tokio::spawn(write_loop(send, out_rx, codec));
    let _abort_writer = AbortOnDrop(writer);
    let mut driver = Driver {
        conn,
        host,
        out,
        bound: None,
        load: None,
        uploads_task: None,
    };
    let mut buf = vec![0u8; 16 * 1024];
    let mut exit: Option<PipelineExit> = None;
    let never = CancellationToken::new();
    loop {
        while let Some(action) = state.poll() {
            if let Some(close) = driver.act(action, &mut state, &mut exit).await {
                return close;
            }
        }
        let timeout = state.poll_timeout().map(tokio::time::Instant::from_std);
        let ended = driver
            .bound
            .as_ref()
            .and_then(|b| b.session.as_ref())
            .map_or(&never, |s| &s.ended)
            .clone();
        let loading = driver.load.is_some();
        let load_done = async {
            match driver.load.as_mut() {
                Some(l) => Some((&mut l.task).await),
                None => std::future::pending().await,
            }
        };
        let pipeline_failed = async {
            match exit.as_mut() {
                Some(rx) => rx.await.unwrap_or_else(|_| "pipeline stopped".into()),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            read = recv.read(&mut buf), if state.wants_read() => match read {
                Ok(Some(n)) => state.on_bytes(&buf[..n], now()),
                Ok(None) => state.on_end(now()),
                Err(e) => return Close(CloseCode::NORMAL, format!("control stream ended: {e}")),
            },
            () = sleep_until(timeout) => state.on_timeout(now()),
            done = load_done, if loading => {
                let result = match done {
                    Some(Ok(r)) => r,
                    Some(Err(e)) => Err(WireError::new(ErrorCode::INTERNAL, format!("model load crashed: {e}"))),
                    None => continue,
                };
                driver.load = None;
                state.on_load_done(result, now());
            }
            why = pipeline_failed => {
                exit = None;
                state.on_ending(ErrorCode::INTERNAL, CloseCode::INTERNAL, &why);
            }
            () = ended.cancelled() => {
                let why = driver.ended_why();
                state.on_ending(why.code, CloseCode::SESSION_ENDED, &why.message);
            }
            () = host.shutdown.cancelled() => {
                state.on_ending(ErrorCode::SHUTTING_DOWN, CloseCode::SHUTTING_DOWN, "host is shutting down");
            }
        }
    }
}

/// The state machine's time, read from tokio's clock so a paused test clock drives it too.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

async fn sleep_until(t: Option<tokio::time::Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Writes what the outbox yields, in order; a flush finishes the stream and waits (bounded) for
/// the device to acknowledge everything before it.
async fn write_loop(
    mut send: web_transport_quinn::SendStream,
    mut rx: OutboxReceiver,
    codec: ControlCodec,
) {
    let mut bytes = Vec::with_capacity(256);
    while let Some(item) = rx.recv().await {
        match item {
            Outgoing::Message { msg, permit } => {
                bytes.clear();
                let ok = match codec.encode_into(&msg, &mut bytes) {
                    Ok(()) => send.write_all(&bytes).await.is_ok(),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot encode a control message");
                        true
                    }
                };
                // Written: the slot is free for the next reply.
                drop(permit);
                if !ok {
                    return;
                }
            }
            Outgoing::Flush { done } => {
                let _ = send.finish();
                // Resolves once the device acknowledged all stream data (or stopped reading).
                let _ = tokio::time::timeout(FLUSH_BEFORE_CLOSE, send.stopped()).await;
                let _ = done.send(());
                return;
            }
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct RunningLoad {
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

/// The I/O side of one connection.
struct Driver<'a> {
    conn: &'a Session,
    host: &'a HostContext,
    out: Outbox,
    bound: Option<Bound>,
    load: Option<RunningLoad>,
    uploads_task: Option<AbortOnDrop>,
}

/// A bound connection: what it streams from, and its detach-on-drop.
struct Bound {
    stream: Arc<BoundStream>,
    uploads: Arc<Uploads>,
    _detach: DetachOnDrop,
}

impl Drop for Bound {
    /// Uploads end with their connection: their bytes leave the host's budget at once.
    fn drop(&mut self) {
        self.uploads.clear();
    }
}

impl std::ops::Deref for Bound {
    type Target = BoundStream;
    fn deref(&self) -> &BoundStream {
        &self.stream
    }
}

impl Driver<'_> {
    /// Carries out one action; `Some` when the connection must close now.
    async fn act(
        &mut self,
        action: Action,
        state: &mut ControlState,
        exit: &mut Option<PipelineExit>,
    ) -> Option<Close> {
        let gone = || Close(CloseCode::NORMAL, "control stream writer ended".into());
        match action {
            Action::Send(msg) => {
                if let ServerMessage::Reply {
                    seq,
                    result: Err(e),
                } = &msg
                {
                    tracing::debug!(seq, code = %e.code, message = %Untrusted(&e.message), "request refused");
                }
                if state.is_closed() {
                    // The last words before a close must not wait behind a device that stopped
                    // reading.
                    let _ = self.out.send_unmetered(msg, FLUSH_BEFORE_CLOSE).await;
                    None
                } else {
                    self.out.send(msg).await.err().map(|_| gone())
                }
            }
            Action::Bind {
                seq: _,
                client,
                session,
            } => {
                tracing::info!(client = %Untrusted(&client), "device said hello");
                let result = self.bind(session, exit).await;
                state.on_bound(result, now());
                None
            }
            Action::Answer { seq, request } => {
                let result = match &self.bound {
                    Some(b) => answer(request, b, self.host).await,
                    None => Err(WireError::new(ErrorCode::INTERNAL, "not bound")),
                };
                self.out.reply(seq, result).await.err().map(|_| gone())
            }
            Action::StartLoad { seq, source } => {
                let Some(b) = &self.bound else {
                    let e = WireError::new(ErrorCode::INTERNAL, "load before the bind");
                    state.on_load_done(Err(e), now());
                    return None;
                };
                let cancel = Arc::new(AtomicBool::new(false));
                let job = LoadJob {
                    seq,
                    source,
                    pipeline: b.pipeline.clone(),
                    max_triangles: b.max_triangles,
                    assets_root: self.host.assets_root.clone(),
                    limits: self.host.import_limits.clone(),
                    uploads: Some(b.uploads.clone()),
                    cancel: cancel.clone(),
                    progress: Some(self.out.clone()),
                };
                let task = tokio::spawn(job.run().instrument(tracing::Span::current()));
                self.load = Some(RunningLoad { cancel, task });
                None
            }
            Action::StartLook { seq, update } => {
                let Some(b) = &self.bound else {
                    let e = WireError::new(ErrorCode::INTERNAL, "look change before the bind");
                    state.on_load_done(Err(e), now());
                    return None;
                };
                let cancel = Arc::new(AtomicBool::new(false));
                let job = crate::look::set_look(
                    seq,
                    *update,
                    b.pipeline.clone(),
                    self.host.environments.clone(),
                    cancel.clone(),
                );
                let task = tokio::spawn(job.instrument(tracing::Span::current()));
                self.load = Some(RunningLoad { cancel, task });
                None
            }
            Action::CancelLoad { .. } => {
                if let Some(l) = &self.load {
                    l.cancel.store(true, Ordering::Relaxed);
                }
                None
            }
            Action::Render { seq, request } => {
                let Ok(sink) = self.out.reserve().await else {
                    return Some(gone());
                };
                let Some(b) = &self.bound else {
                    sink.send(ServerMessage::Reply {
                        seq,
                        result: Err(WireError::new(
                            ErrorCode::INTERNAL,
                            "request before the bind",
                        )),
                    });
                    return None;
                };
                let cmd = match request {
                    Request::SetCamera { pose } => match camera_from_pose(&pose) {
                        Ok(camera) => RenderCommand::SetCamera {
                            seq,
                            camera,
                            reply: sink,
                        },
                        Err(e) => {
                            sink.send(ServerMessage::Reply {
                                seq,
                                result: Err(e),
                            });
                            return None;
                        }
                    },
                    request => RenderCommand::Scene {
                        seq,
                        request,
                        reply: sink,
                    },
                };
                if let Err(e) = b.pipeline.command(cmd) {
                    // The command (and its reply slot) came back inside the error; answer here.
                    return self.out.reply(seq, Err(e)).await.err().map(|_| gone());
                }
                None
            }
            Action::Close { code, reason } => {
                self.out.flush(FLUSH_BEFORE_CLOSE).await;
                Some(Close(code, reason))
            }
        }
    }

    /// Binds the connection; on success the pipeline streams to it and uploads are accepted.
    async fn bind(
        &mut self,
        session: Option<SessionAuth>,
        exit: &mut Option<PipelineExit>,
    ) -> Result<StreamInfo, (CloseCode, WireError)> {
        let conn_id = self.conn.stable_id() as u64;
        let stream = bind(self.conn, conn_id, session, self.host).await?;
        *exit = stream.exit.lock().ok().and_then(|mut e| e.take());
        let stream = Arc::new(stream);
        let label = stream
            .session
            .as_ref()
            .map_or_else(|| format!("sessionless-{conn_id}"), |s| s.id.to_string());
        stream.pipeline.attach(conn_id, label, self.conn.clone());
        let detach = DetachOnDrop {
            stream: stream.clone(),
            conn_id,
            sessions: self.host.sessions.clone(),
        };
        let uploads = Uploads::new(stream.max_upload_bytes, self.host.upload_budget.clone());
        self.uploads_task = Some(AbortOnDrop(tokio::spawn(
            uploads.clone().accept(self.conn.clone()),
        )));
        let s = &stream.settings;
        let info = StreamInfo {
            version: PROTOCOL_VERSION,
            width: s.width,
            height: s.height,
            fps: s.fps,
            codec: "h264".into(),
            host: concat!("farview-host ", env!("CARGO_PKG_VERSION")).into(),
            adapter: self.host.gpu.summary(),
            session_id: stream.session.as_ref().map(|s| s.id.to_string()),
            resume_secret: stream
                .session
                .as_ref()
                .and_then(|s| s.resume_secret.clone()),
            lease: stream.session.as_ref().map(|s| s.lease),
        };
        self.bound = Some(Bound {
            stream,
            uploads,
            _detach: detach,
        });
        Ok(info)
    }

    fn ended_why(&self) -> crate::sessions::Ended {
        self.bound
            .as_ref()
            .and_then(|b| b.session.as_ref())
            .and_then(|s| s.ended_why.lock().ok().and_then(|w| w.clone()))
            .unwrap_or(crate::sessions::Ended {
                code: ErrorCode::SESSION_ENDED,
                message: "session ended".into(),
            })
    }
}

/// Requests answered by the connection (they never touch the scene).
async fn answer(
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
        Request::ListModels => {
            let root = host.assets_root.clone();
            let (models, truncated) =
                tokio::task::spawn_blocking(move || crate::catalog::list_models(&root))
                    .await
                    .map_err(|e| WireError::new(ErrorCode::INTERNAL, e.to_string()))?;
            Ok(Reply::Models { models, truncated })
        }
        Request::SetLease { max_lease_ms } => {
            let id = bound.session.as_ref().ok_or_else(no_session)?.id;
            let sessions = host.sessions.clone();
            tokio::task::spawn_blocking(move || sessions.set_lease(id, max_lease_ms))
                .await
                .map_err(|e| WireError::new(ErrorCode::INTERNAL, e.to_string()))?
                .map(|(_, lease)| Reply::Lease(lease))
                .map_err(|e| e.wire())
        }
        other => Err(WireError::new(
            ErrorCode::INTERNAL,
            format!("{:?} is not answered by the connection", other.route()),
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
