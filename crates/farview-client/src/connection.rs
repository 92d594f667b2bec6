//! A device's connection to a host: control requests with typed replies, and the frame stream.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use farview_protocol::{
    CameraPose, ClientMessage, CloseCode, Event, FrameDecoder, FrameHeader, FrameRecord, LeaseInfo,
    LoadedModel, MAX_CONTROL_MESSAGE, MediaStreamHeader, PROTOCOL_VERSION, Reply, Request,
    ServerMessage, SessionAuth, StreamInfo, WireError, decode_message, encode_message,
};
use tokio::sync::{mpsc, oneshot};

use crate::queue::{FrameQueue, Push};
use crate::{ClientError, Fingerprint};

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

/// An encoded frame as received.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The host's metadata for it.
    pub header: FrameHeader,
    /// H.264 Annex-B access unit.
    pub data: Vec<u8>,
    /// When its last byte arrived (microseconds since the Unix epoch, this machine's clock).
    pub received_us: u64,
}

type ReplySender = oneshot::Sender<(u64, Result<Reply, WireError>)>;

struct Outgoing {
    request: Request,
    reply: ReplySender,
    /// Told the sequence number once it is assigned (in send order).
    assigned: Option<oneshot::Sender<u64>>,
}

/// A request on its way: its sequence number, and its reply to come. Dropping it discards the
/// reply (the request still runs on the host).
#[derive(Debug)]
pub struct PendingReply {
    seq: u64,
    rx: oneshot::Receiver<(u64, Result<Reply, WireError>)>,
    closing: Arc<Mutex<Option<WireError>>>,
}

impl PendingReply {
    /// The request's sequence number: frames with `last_command_seq >= seq` reflect it.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Waits for the reply. Cancel-safe in the sense that dropping the future only discards it.
    pub async fn reply(self) -> Result<Reply, ClientError> {
        match self.rx.await {
            Ok((_, result)) => result.map_err(ClientError::Host),
            Err(_) => Err(self.closing.lock().ok().and_then(|g| g.clone()).map_or(
                ClientError::Closed {
                    code: 0,
                    reason: "connection closed".into(),
                },
                ClientError::Host,
            )),
        }
    }
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
        endpoint.set_default_client_config(crate::pin::quic_client_config(options.fingerprint)?);
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
            Ok(Err(e)) => return Err(connect_err(e.to_string())),
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
        let addr = options.addr;
        let connect_err = |reason: String| ClientError::Connect {
            addr: Some(addr),
            reason,
        };
        let (mut send, mut recv) = conn
            .open_bi()
            .await
            .map_err(|e| ClientError::from_connection(&e))?;

        // Hello and Welcome happen before the background tasks start, so errors surface here.
        let hello = ClientMessage {
            seq: 1,
            request: Request::Hello {
                version: PROTOCOL_VERSION,
                client: options.client_name.clone(),
                session: options.session.clone(),
            },
        };
        let bytes = encode_message(&hello).map_err(|e| ClientError::Protocol(e.to_string()))?;
        send.write_all(&bytes)
            .await
            .map_err(|e| connect_err(e.to_string()))?;
        let mut decoder = FrameDecoder::new(MAX_CONTROL_MESSAGE);
        let welcome = tokio::time::timeout(options.timeout, read_message(&mut recv, &mut decoder))
            .await
            .map_err(|_| connect_err("no Welcome from host".into()))?;
        let info = match welcome {
            Ok(Some(ServerMessage::Reply {
                seq: 1,
                result: Ok(Reply::Welcome(info)),
            })) => info,
            Ok(Some(ServerMessage::Reply { result: Err(e), .. })) => {
                return Err(ClientError::Host(e));
            }
            Ok(Some(ServerMessage::Event(Event::Closing(e)))) => return Err(ClientError::Host(e)),
            Ok(Some(other)) => {
                return Err(ClientError::Protocol(format!(
                    "expected Welcome, got {other:?}"
                )));
            }
            Ok(None) | Err(_) => {
                return Err(conn.close_reason().map_or_else(
                    || connect_err("host closed the control stream".into()),
                    |e| ClientError::from_connection(&e),
                ));
            }
        };

        let pending: Arc<Mutex<HashMap<u64, ReplySender>>> = Arc::default();
        let closing: Arc<Mutex<Option<WireError>>> = Arc::default();
        let (req_tx, req_rx) = mpsc::channel(64);
        let (progress_tx, progress) = tokio::sync::watch::channel(LoadProgress::default());
        let stats: Arc<Mutex<crate::stats::StatsState>> = Arc::default();
        let frames = Arc::new(FrameQueue::new(options.frame_buffer));
        let tasks = vec![
            AbortOnDrop(tokio::spawn(write_loop(
                send,
                req_rx,
                pending.clone(),
                stats.clone(),
            ))),
            AbortOnDrop(tokio::spawn(read_loop(
                conn.clone(),
                recv,
                decoder,
                pending,
                closing.clone(),
                progress_tx,
            ))),
            AbortOnDrop(tokio::spawn(media_loop(
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

async fn read_message(
    recv: &mut quinn::RecvStream,
    decoder: &mut FrameDecoder,
) -> Result<Option<ServerMessage>, ClientError> {
    let mut buf = [0u8; 4096];
    loop {
        if let Some(payload) = decoder
            .next_frame()
            .map_err(|e| ClientError::Protocol(e.to_string()))?
        {
            return decode_message(&payload)
                .map(Some)
                .map_err(|e| ClientError::Protocol(e.to_string()));
        }
        match recv.read(&mut buf).await {
            Ok(Some(n)) => decoder
                .push(&buf[..n])
                .map_err(|e| ClientError::Protocol(e.to_string()))?,
            Ok(None) => return Ok(None),
            Err(e) => {
                return Err(ClientError::Closed {
                    code: 0,
                    reason: e.to_string(),
                });
            }
        }
    }
}

async fn write_loop(
    mut send: quinn::SendStream,
    mut requests: mpsc::Receiver<Outgoing>,
    pending: Arc<Mutex<HashMap<u64, ReplySender>>>,
    stats: Arc<Mutex<crate::stats::StatsState>>,
) {
    // Hello used 1; sequence numbers are assigned here so they reach the host in order.
    let mut seq = 1u64;
    while let Some(out) = requests.recv().await {
        seq += 1;
        let Ok(bytes) = encode_message(&ClientMessage {
            seq,
            request: out.request,
        }) else {
            continue;
        };
        if let Ok(mut p) = pending.lock() {
            p.insert(seq, out.reply);
        }
        if let Some(a) = out.assigned {
            let _ = a.send(seq);
        }
        if let Ok(mut s) = stats.lock() {
            s.sent(seq, now_us());
        }
        if send.write_all(&bytes).await.is_err() {
            break;
        }
    }
    let _ = send.finish();
}

async fn read_loop(
    conn: quinn::Connection,
    mut recv: quinn::RecvStream,
    mut decoder: FrameDecoder,
    pending: Arc<Mutex<HashMap<u64, ReplySender>>>,
    closing: Arc<Mutex<Option<WireError>>>,
    progress: tokio::sync::watch::Sender<LoadProgress>,
) {
    loop {
        let msg = match read_message(&mut recv, &mut decoder).await {
            Ok(Some(msg)) => msg,
            Ok(None) => break,
            Err(ClientError::Protocol(reason)) => {
                // Nothing more can be understood on this connection: close it rather than leave
                // the host holding a device that no longer listens.
                tracing::warn!(%reason, "host broke the protocol; closing the connection");
                conn.close(
                    CloseCode::PROTOCOL_ERROR.0.into(),
                    b"protocol violation by host",
                );
                break;
            }
            Err(_) => break,
        };
        match msg {
            ServerMessage::Reply { seq, result } => {
                let waiter = pending.lock().ok().and_then(|mut p| p.remove(&seq));
                // A dropped (cancelled) request has no waiter: its reply is discarded.
                if let Some(tx) = waiter {
                    let _ = tx.send((seq, result));
                }
            }
            ServerMessage::Event(Event::LoadProgress { seq, percent }) => {
                progress.send_replace(LoadProgress { seq, percent });
            }
            ServerMessage::Event(Event::Closing(e)) => {
                tracing::info!(code = %e.code, message = %e.message, "host is closing the connection");
                if let Ok(mut c) = closing.lock() {
                    *c = Some(e);
                }
            }
        }
    }
    // Fail every outstanding request: their senders drop here.
    if let Ok(mut p) = pending.lock() {
        p.clear();
    }
}

async fn media_loop(
    conn: quinn::Connection,
    frames: Arc<FrameQueue>,
    requests: mpsc::Sender<Outgoing>,
) {
    let mut readers = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            stream = conn.accept_uni() => {
                let Ok(stream) = stream else { break };
                readers.spawn(read_group(stream, frames.clone(), requests.clone()));
            }
            Some(_) = readers.join_next(), if !readers.is_empty() => {}
        }
    }
    frames.close();
}

/// STOP_SENDING code telling the host the device abandoned a group.
const GROUP_ABANDONED: u32 = 1;

async fn read_group(
    mut stream: quinn::RecvStream,
    frames: Arc<FrameQueue>,
    requests: mpsc::Sender<Outgoing>,
) {
    let mut head = [0u8; MediaStreamHeader::LEN];
    if stream.read_exact(&mut head).await.is_err() {
        return;
    }
    let Ok(header) = MediaStreamHeader::decode(&head) else {
        tracing::warn!("media stream with a bad header; ignored");
        let _ = stream.stop(GROUP_ABANDONED.into());
        return;
    };
    loop {
        let mut len = [0u8; 4];
        if stream.read_exact(&mut len).await.is_err() {
            return; // finished, or reset by the host when it abandons a stale group
        }
        let len = match FrameRecord::check_len(u32::from_be_bytes(len)) {
            Ok(len) => len,
            Err(e) => {
                tracing::warn!(group = header.group, error = %e, "bad frame record; group abandoned");
                let _ = stream.stop(GROUP_ABANDONED.into());
                return;
            }
        };
        let mut body = vec![0u8; len];
        if stream.read_exact(&mut body).await.is_err() {
            return;
        }
        let received_us = now_us();
        let record = match FrameRecord::decode(&body) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(group = header.group, error = %e, "bad frame record; group abandoned");
                let _ = stream.stop(GROUP_ABANDONED.into());
                return;
            }
        };
        let frame = Frame {
            header: record.header,
            data: record.payload,
            received_us,
        };
        if frames.push(frame) == Push::Overflow {
            tracing::debug!(
                group = header.group,
                "app is not taking frames; group abandoned, keyframe requested"
            );
            let _ = stream.stop(GROUP_ABANDONED.into());
            let (reply, _) = oneshot::channel();
            let _ = requests.try_send(Outgoing {
                request: Request::RequestKeyframe,
                reply,
                assigned: None,
            });
            return;
        }
    }
}
