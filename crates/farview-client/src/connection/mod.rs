//! A device's connection to a host: control requests with typed replies, and the frame stream.
//!
//! [`Connection`] and [`ConnectOptions`] live here with the public request methods; the
//! control-stream tasks (Hello/Welcome, request writer, reply reader and routing) are in
//! `control`, and the media task that receives frame groups is in `media`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use farview_protocol::{
    CameraPose, CloseCode, LeaseInfo, LoadedModel, ModelFile, Reply, Request, SessionAuth,
    StreamInfo, WireError,
};
use tokio::sync::{mpsc, oneshot};

use crate::queue::FrameQueue;
use crate::{ClientError, Fingerprint};

mod control;
mod media;

pub use control::PendingReply;
pub use media::Frame;

/// How to reach a host.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Host QUIC address.
    pub addr: SocketAddr,
    /// The host certificate's SHA-256 fingerprint.
    pub fingerprint: Fingerprint,
    /// Client name sent in `Hello`, for the host's logs.
    pub client_name: String,
    /// Frames buffered in the SDK before back-pressure reaches the host (which then drops).
    pub frame_buffer: usize,
    /// Handshake and Hello timeout.
    pub timeout: Duration,
    /// The session to bind (id, token, and the resume secret when reconnecting); `None` for an
    /// ad-hoc stream on hosts that allow them.
    pub session: Option<SessionAuth>,
}

impl ConnectOptions {
    /// Options with defaults for everything but the address and fingerprint.
    pub fn new(addr: SocketAddr, fingerprint: &str) -> Result<Self, ClientError> {
        Ok(Self {
            addr,
            fingerprint: Fingerprint::parse(fingerprint)?,
            client_name: concat!("farview-client/", env!("CARGO_PKG_VERSION")).into(),
            frame_buffer: 8,
            timeout: Duration::from_secs(10),
            session: None,
        })
    }

    /// [`ConnectOptions::new`] for `host:port`, where the host is a name (a host's
    /// `public_address`, say) or an IP; the first address it resolves to is used.
    pub async fn resolve(addr: &str, fingerprint: &str) -> Result<Self, ClientError> {
        let unreachable = |reason: String| ClientError::Connect { addr: None, reason };
        let resolved = tokio::net::lookup_host(addr)
            .await
            .map_err(|e| unreachable(format!("cannot resolve QUIC address {addr}: {e}")))?
            .next()
            .ok_or_else(|| unreachable(format!("QUIC address {addr} resolves to nothing")))?;
        Self::new(resolved, fingerprint)
    }

    /// Binds `session` with `token` (from the session API).
    pub fn with_session(mut self, id: &str, token: &str) -> Self {
        self.session = Some(SessionAuth {
            id: id.to_owned(),
            token: token.to_owned(),
            resume_secret: None,
        });
        self
    }

    /// Reconnects as the device that was bound before (see [`Connection::resume_secret`]).
    pub fn with_resume_secret(mut self, secret: &str) -> Self {
        if let Some(s) = self.session.as_mut() {
            s.resume_secret = Some(secret.to_owned());
        }
        self
    }
}

type ReplySender = oneshot::Sender<(u64, Result<Reply, WireError>)>;

struct Outgoing {
    request: Request,
    reply: ReplySender,
    /// Told the sequence number once it is assigned (in send order).
    assigned: Option<oneshot::Sender<u64>>,
}

/// Progress of this connection's latest model load.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadProgress {
    /// The load request's sequence number.
    pub seq: u64,
    /// 0 to 100.
    pub percent: u8,
}

/// Aborts a task when dropped, so a dropped [`Connection`] leaves nothing running.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How long closing waits for the endpoint to go idle, so that the CONNECTION_CLOSE reaches the
/// host before the caller moves on (or its process exits). The close goes out at once; the wait
/// covers the draining period (three probe timeouts: well under this on a healthy path).
const CLOSE_FLUSH: Duration = Duration::from_secs(1);

/// Closes `conn` with an application close and waits (at most [`CLOSE_FLUSH`]) until `endpoint`
/// is idle, i.e. the close was sent and the connection drained. Without this, a process that
/// exits right after an error never sends the close, and the host keeps the device's slot until
/// its idle timeout.
async fn close_and_flush(
    conn: &quinn::Connection,
    endpoint: &quinn::Endpoint,
    code: CloseCode,
    reason: &[u8],
) {
    conn.close(code.0.into(), reason);
    let _ = tokio::time::timeout(CLOSE_FLUSH, endpoint.wait_idle()).await;
}

/// A live connection to a host.
///
/// Dropping it closes the QUIC connection at once with an application close (code 0, so the host
/// frees the device's slot without waiting for its idle timeout); the close is sent by the
/// endpoint's driver on the tokio runtime, so a program about to exit (or shut its runtime down)
/// should call [`Connection::close`] instead, which also waits briefly until the close is sent.
/// [`Connection::connect`] closes whatever it opened on every failure before returning.
pub struct Connection {
    pub(crate) conn: quinn::Connection,
    endpoint: quinn::Endpoint,
    info: StreamInfo,
    requests: mpsc::Sender<Outgoing>,
    frames: Arc<FrameQueue>,
    closing: Arc<Mutex<Option<WireError>>>,
    pub(crate) progress: tokio::sync::watch::Receiver<LoadProgress>,
    stats: Arc<Mutex<crate::stats::StatsState>>,
    pub(crate) next_upload: std::sync::atomic::AtomicU64,
    _tasks: Vec<AbortOnDrop>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("remote", &self.conn.remote_address())
            .field("info", &self.info)
            .finish()
    }
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

impl Connection {
    /// Connects, pins the host certificate, says hello and starts receiving frames.
    ///
    /// Spawns three tasks on the current tokio runtime (control writer, control reader, media
    /// receiver); they end when the connection is dropped or closed.
    pub async fn connect(options: ConnectOptions) -> Result<Self, ClientError> {
        let addr = options.addr;
        let connect_err = |reason: String| ClientError::Connect {
            addr: Some(addr),
            reason,
        };
        let bind: SocketAddr = if addr.is_ipv6() {
            "[::]:0"
        } else {
            "0.0.0.0:0"
        }
        .parse()
        .map_err(|e: std::net::AddrParseError| connect_err(e.to_string()))?;
        let mut endpoint = quinn::Endpoint::client(bind).map_err(|e| connect_err(e.to_string()))?;
        let (client_config, presented) =
            crate::pin::observed_quic_client_config(options.fingerprint)?;
        endpoint.set_default_client_config(client_config);
        let connecting = endpoint
            .connect(addr, "farview-host")
            .map_err(|e| connect_err(e.to_string()))?;
        let conn = match tokio::time::timeout(options.timeout, connecting).await {
            Err(_) => {
                // The host may have completed its side: tell it, briefly, that we gave up.
                endpoint.close(CloseCode::NORMAL.0.into(), b"handshake timed out");
                let _ = tokio::time::timeout(CLOSE_FLUSH, endpoint.wait_idle()).await;
                return Err(connect_err("handshake timed out".into()));
            }
            Ok(Err(e @ quinn::ConnectionError::ApplicationClosed(_))) => {
                return Err(ClientError::from_connection(&e));
            }
            Ok(Err(e)) => {
                return Err(match presented.get() {
                    Some(p) if *p != options.fingerprint => ClientError::FingerprintMismatch {
                        addr,
                        expected: options.fingerprint.to_string(),
                        presented: p.to_string(),
                    },
                    _ => connect_err(e.to_string()),
                });
            }
            Ok(Ok(c)) => c,
        };
        // From here on the host holds a slot for this device: every failure closes the connection
        // (and waits until the close is sent) before it is reported.
        match Self::start(conn.clone(), endpoint.clone(), &options).await {
            Ok(c) => Ok(c),
            Err(e) => {
                let code = match e {
                    ClientError::Protocol(_) => CloseCode::PROTOCOL_ERROR,
                    _ => CloseCode::NORMAL,
                };
                close_and_flush(&conn, &endpoint, code, b"connect failed").await;
                Err(e)
            }
        }
    }

    /// Hello, Welcome and the background tasks, on an established QUIC connection.
    async fn start(
        conn: quinn::Connection,
        endpoint: quinn::Endpoint,
        options: &ConnectOptions,
    ) -> Result<Self, ClientError> {
        let (mut send, mut recv) = conn
            .open_bi()
            .await
            .map_err(|e| ClientError::from_connection(&e))?;

        // Hello and Welcome happen before the background tasks start, so errors surface here.
        let (info, decoder) = control::hello(&conn, &mut send, &mut recv, options).await?;

        let pending: Arc<Mutex<HashMap<u64, ReplySender>>> = Arc::default();
        let closing: Arc<Mutex<Option<WireError>>> = Arc::default();
        let (req_tx, req_rx) = mpsc::channel(64);
        let (progress_tx, progress) = tokio::sync::watch::channel(LoadProgress::default());
        let stats: Arc<Mutex<crate::stats::StatsState>> = Arc::default();
        let frames = Arc::new(FrameQueue::new(options.frame_buffer));
        let tasks = vec![
            AbortOnDrop(tokio::spawn(control::write_loop(
                send,
                req_rx,
                pending.clone(),
                stats.clone(),
            ))),
            AbortOnDrop(tokio::spawn(control::read_loop(
                conn.clone(),
                recv,
                decoder,
                pending,
                closing.clone(),
                progress_tx,
            ))),
            AbortOnDrop(tokio::spawn(media::media_loop(
                conn.clone(),
                frames.clone(),
                req_tx.clone(),
            ))),
        ];
        Ok(Self {
            conn,
            endpoint,
            info,
            requests: req_tx,
            frames,
            closing,
            progress,
            stats,
            next_upload: std::sync::atomic::AtomicU64::new(1),
            _tasks: tasks,
        })
    }

    /// What the host said it will stream.
    pub fn stream_info(&self) -> &StreamInfo {
        &self.info
    }

    /// The host's address.
    pub fn remote_address(&self) -> SocketAddr {
        self.conn.remote_address()
    }

    /// Current QUIC round-trip estimate.
    pub fn rtt(&self) -> Duration {
        self.conn.rtt()
    }

    fn closed_error(&self) -> ClientError {
        if let Some(e) = self.closing.lock().ok().and_then(|g| g.clone()) {
            return ClientError::Host(e);
        }
        match self.conn.close_reason() {
            Some(e) => ClientError::from_connection(&e),
            None => ClientError::Closed {
                code: 0,
                reason: "connection closed".into(),
            },
        }
    }

    /// Sends a request and waits for its reply; returns the request's sequence number too.
    pub async fn request(&self, request: Request) -> Result<(u64, Reply), ClientError> {
        let pending = self.submit(request).await?;
        let seq = pending.seq();
        pending.reply().await.map(|r| (seq, r))
    }

    /// Sends a request without waiting for its reply, so many can be in flight (the host applies
    /// them in order and answers each). Returns once the request is queued for the wire.
    pub async fn submit(&self, request: Request) -> Result<PendingReply, ClientError> {
        let (tx, rx) = oneshot::channel();
        let (seq_tx, seq_rx) = oneshot::channel();
        self.requests
            .send(Outgoing {
                request,
                reply: tx,
                assigned: Some(seq_tx),
            })
            .await
            .map_err(|_| self.closed_error())?;
        let seq = seq_rx.await.map_err(|_| self.closed_error())?;
        Ok(PendingReply {
            seq,
            rx,
            closing: self.closing.clone(),
            conn: self.conn.clone(),
        })
    }

    /// Progress events of model loads (the latest one; see [`LoadProgress`]).
    pub fn load_progress(&self) -> tokio::sync::watch::Receiver<LoadProgress> {
        self.progress.clone()
    }

    /// Loads a model from a path relative to the host's assets root.
    pub async fn load_model(&self, path: &str) -> Result<LoadedModel, ClientError> {
        match self
            .request(Request::LoadModel { path: path.into() })
            .await?
        {
            (_, Reply::ModelLoaded(m)) => Ok(m),
            (_, other) => Err(ClientError::Protocol(format!(
                "expected ModelLoaded, got {other:?}"
            ))),
        }
    }

    /// Sets the camera; returns the sequence number frames will name once they use it.
    pub async fn set_camera(&self, pose: CameraPose) -> Result<u64, ClientError> {
        match self.request(Request::SetCamera { pose }).await? {
            (seq, Reply::CameraSet) => Ok(seq),
            (_, other) => Err(ClientError::Protocol(format!(
                "expected CameraSet, got {other:?}"
            ))),
        }
    }

    /// Asks for the next frame to be an IDR.
    pub async fn request_keyframe(&self) -> Result<(), ClientError> {
        match self.request(Request::RequestKeyframe).await? {
            (_, Reply::KeyframeScheduled) => Ok(()),
            (_, other) => Err(ClientError::Protocol(format!(
                "expected KeyframeScheduled, got {other:?}"
            ))),
        }
    }

    /// The secret that lets this device reconnect to its session after a drop (first bind only).
    pub fn resume_secret(&self) -> Option<&str> {
        self.info.resume_secret.as_deref()
    }

    /// The session's lease now.
    pub async fn lease(&self) -> Result<LeaseInfo, ClientError> {
        match self.request(Request::GetLease).await? {
            (_, Reply::Lease(l)) => Ok(l),
            (_, other) => Err(ClientError::Protocol(format!(
                "expected Lease, got {other:?}"
            ))),
        }
    }

    /// Sets the session's lease length (from its creation).
    pub async fn set_lease(&self, max_lease: Duration) -> Result<LeaseInfo, ClientError> {
        match self
            .request(Request::SetLease {
                max_lease_ms: max_lease.as_millis() as u64,
            })
            .await?
        {
            (_, Reply::Lease(l)) => Ok(l),
            (_, other) => Err(ClientError::Protocol(format!(
                "expected Lease, got {other:?}"
            ))),
        }
    }

    /// The models the host offers (`.gltf` / `.glb` files under its assets root, sorted), and
    /// whether the list was cut short; each path is what [`Self::load_model`] takes.
    ///
    /// ```no_run
    /// # async fn f(conn: &farview_client::Connection) -> Result<(), farview_client::ClientError> {
    /// let (models, _truncated) = conn.list_models().await?;
    /// for m in &models {
    ///     println!("{} ({} bytes)", m.path, m.bytes);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn list_models(&self) -> Result<(Vec<ModelFile>, bool), ClientError> {
        match self.request(Request::ListModels).await? {
            (_, Reply::Models { models, truncated }) => Ok((models, truncated)),
            (_, other) => Err(ClientError::Protocol(format!(
                "expected Models, got {other:?}"
            ))),
        }
    }

    /// Round trip through the control stream.
    pub async fn ping(&self) -> Result<Duration, ClientError> {
        let t = Instant::now();
        match self.request(Request::Ping).await? {
            (_, Reply::Pong { .. }) => Ok(t.elapsed()),
            (_, other) => Err(ClientError::Protocol(format!(
                "expected Pong, got {other:?}"
            ))),
        }
    }

    /// The next frame, in frame-number order. Cancel-safe. Fails once the connection has closed,
    /// with the host's reason. If the app falls more than `frame_buffer` frames behind, the SDK
    /// drops what it holds and resumes at a fresh keyframe (see [`Self::frames_dropped`]).
    /// Takes `&self` so one task can read frames while others send requests; frames are
    /// handed out once, so read them from one task.
    pub async fn next_frame(&self) -> Result<Frame, ClientError> {
        match self.frames.pop().await {
            Some(f) => {
                if let Ok(mut s) = self.stats.lock() {
                    s.frame(&f);
                }
                Ok(f)
            }
            None => Err(self.closed_error()),
        }
    }

    /// Frame statistics since the previous call (or the connection's start): frames received,
    /// skipped by the host and dropped by the SDK, command-to-frame latency, arrival gaps and
    /// per-frame latency. Call it periodically (e.g. once a second) for a rolling view.
    pub fn take_frame_statistics(&self) -> crate::FrameStatistics {
        let dropped = self.frames.dropped();
        self.stats
            .lock()
            .map(|mut s| s.take(dropped))
            .unwrap_or_else(|_| crate::stats::StatsState::default().take(0))
    }

    /// Frames the SDK dropped because the app did not take them in time.
    pub fn frames_dropped(&self) -> u64 {
        self.frames.dropped()
    }

    /// Closes the connection politely and waits briefly (at most a second) until the close is
    /// on its way to the host, so the host frees the device's slot at once even when the
    /// process exits right after.
    pub async fn close(self) {
        close_and_flush(&self.conn, &self.endpoint, CloseCode::NORMAL, b"done").await;
    }
}

impl Drop for Connection {
    /// Closes the connection (cheap and synchronous; a no-op after [`Connection::close`]). The
    /// background tasks are aborted as their handles drop.
    fn drop(&mut self) {
        self.conn
            .close(CloseCode::NORMAL.0.into(), b"device dropped the connection");
    }
}
