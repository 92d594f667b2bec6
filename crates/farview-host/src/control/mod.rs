//! The control stream as a state machine with no I/O (like `quinn-proto`): bytes and events go
//! in through `on_*` methods with the current time, [`Action`]s come out of [`ControlState::poll`].
//! It owns the protocol's rules for one connection: Hello first, the version, strictly increasing
//! sequence numbers, requests held back behind a running model load (bounded), and typed
//! refusals that are always queued *before* the close that follows them.
//!
//! A transport driver (`connection/`, for native QUIC and WebTransport sessions alike) reads bytes into it, carries
//! out the actions, and reports their results back. The driver never decides protocol questions,
//! so two drivers cannot disagree, and every rule here is unit-tested on virtual time.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use farview_protocol::{
    ClientMessage, CloseCode, ControlCodec, ErrorCode, FrameDecoder, LookUpdate,
    MAX_CONTROL_MESSAGE, PROTOCOL_VERSION, Reply, Request, Route, ServerMessage, SessionAuth,
    StreamInfo, WireError,
};

#[cfg(test)]
mod tests;

/// How long a device has, from the handshake, to open its control stream and say Hello.
pub(crate) const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests held back behind a model load (applied in order once it completes). While this many
/// wait, the driver stops reading, so transport flow control slows the device down.
pub(crate) const MAX_BACKLOG: usize = 4096;
/// Longest upload name accepted (it names the model's root entity and log lines).
pub(crate) const MAX_UPLOAD_NAME: usize = 256;

/// Where a load's model comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LoadSource {
    /// A path under the assets root.
    Path(String),
    /// Bytes from an upload stream.
    Upload { id: u64, name: String },
}

/// What the driver must do, in order.
#[derive(Debug, PartialEq)]
pub(crate) enum Action {
    /// Write this message on the control stream.
    Send(ServerMessage),
    /// Bind the connection (session admission, or an ad-hoc pipeline); report with
    /// [`ControlState::on_bound`]. `client` is the device's self-chosen name: untrusted.
    Bind {
        seq: u64,
        client: String,
        session: Option<SessionAuth>,
    },
    /// Answer a request that never touches the scene (ping, keyframe, lease); the driver sends
    /// the reply itself.
    Answer { seq: u64, request: Request },
    /// Start a model load; report its result with [`ControlState::on_load_done`].
    StartLoad { seq: u64, source: LoadSource },
    /// Start a look change (its environment may need loading first); it runs, is cancelled and
    /// holds later requests back like a load: report its result with
    /// [`ControlState::on_load_done`].
    StartLook { seq: u64, update: Box<LookUpdate> },
    /// Cancel the running load (its reply still comes, as `load_cancelled`).
    CancelLoad { seq: u64 },
    /// Hand the request to the render thread, which replies in request order.
    Render { seq: u64, request: Request },
    /// Flush everything sent so far, then close the connection with `code`.
    Close { code: CloseCode, reason: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the Hello, until the deadline.
    AwaitingHello { deadline: Instant },
    /// Hello accepted; the driver is binding.
    Binding { seq: u64 },
    /// Welcome sent: requests flow.
    Open,
    /// A close was decided; nothing more is read or acted on.
    Closed,
}

/// One connection's control-stream state.
pub(crate) struct ControlState {
    decoder: FrameDecoder,
    codec: ControlCodec,
    phase: Phase,
    last_seq: u64,
    /// The running load's (or look change's) sequence number.
    load: Option<u64>,
    backlog: VecDeque<ClientMessage>,
    actions: VecDeque<Action>,
}

impl ControlState {
    /// A native connection (postcard payloads) whose handshake completed at `now`.
    #[cfg(test)]
    pub(crate) fn new(now: Instant) -> Self {
        Self::with_codec(now, ControlCodec::Postcard)
    }

    /// A connection whose control payloads are encoded with `codec` (JSON for browsers).
    pub(crate) fn with_codec(now: Instant, codec: ControlCodec) -> Self {
        Self {
            decoder: FrameDecoder::new(MAX_CONTROL_MESSAGE),
            codec,
            phase: Phase::AwaitingHello {
                deadline: now + HELLO_TIMEOUT,
            },
            last_seq: 0,
            load: None,
            backlog: VecDeque::new(),
            actions: VecDeque::new(),
        }
    }

    /// The next action for the driver.
    pub(crate) fn poll(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`ControlState::on_timeout`] must be called next, if ever.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::AwaitingHello { deadline } => Some(deadline),
            _ => None,
        }
    }

    /// Whether the driver should read more bytes: not while binding (the Welcome must come
    /// first), not while the backlog is full, and never after a close.
    pub(crate) fn wants_read(&self) -> bool {
        match self.phase {
            Phase::AwaitingHello { .. } => true,
            Phase::Open => self.backlog.len() < MAX_BACKLOG,
            Phase::Binding { .. } | Phase::Closed => false,
        }
    }

    /// True once a close was decided.
    pub(crate) fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// True while a model load runs.
    #[cfg(test)]
    pub(crate) fn loading(&self) -> bool {
        self.load.is_some()
    }

    /// Bytes read from the control stream.
    pub(crate) fn on_bytes(&mut self, bytes: &[u8], now: Instant) {
        if self.is_closed() {
            return;
        }
        if let Err(e) = self.decoder.push(bytes) {
            return self.close(CloseCode::PROTOCOL_ERROR, e.to_string());
        }
        self.pump(now);
    }

    /// The device finished its side of the control stream (or the stream ended).
    pub(crate) fn on_end(&mut self, now: Instant) {
        if self.is_closed() {
            return;
        }
        // Messages already buffered are still handled (up to what can be acted on now).
        self.pump(now);
        match self.decoder.finish() {
            Err(e) => self.close(CloseCode::PROTOCOL_ERROR, e.to_string()),
            Ok(()) => self.close(CloseCode::NORMAL, "bye".into()),
        }
    }

    /// Time passed; enforces the Hello deadline.
    pub(crate) fn on_timeout(&mut self, now: Instant) {
        if let Phase::AwaitingHello { deadline } = self.phase
            && now >= deadline
        {
            self.close(
                CloseCode::PROTOCOL_ERROR,
                format!("no Hello within {} s", HELLO_TIMEOUT.as_secs()),
            );
        }
    }

    /// The result of [`Action::Bind`]: a Welcome, or a typed refusal (sent, then closed with
    /// `code`).
    pub(crate) fn on_bound(
        &mut self,
        result: Result<StreamInfo, (CloseCode, WireError)>,
        now: Instant,
    ) {
        let Phase::Binding { seq } = self.phase else {
            return;
        };
        match result {
            Ok(info) => {
                self.send(seq, Ok(Reply::Welcome(info)));
                self.last_seq = seq;
                self.phase = Phase::Open;
                self.pump(now);
            }
            Err((code, err)) => {
                let reason = err.to_string();
                self.send(seq, Err(err));
                self.close(code, reason);
            }
        }
    }

    /// The running load finished: its reply goes out, then what waited behind it is applied in
    /// order, up to the next load.
    pub(crate) fn on_load_done(&mut self, result: Result<Reply, WireError>, now: Instant) {
        let Some(seq) = self.load.take() else {
            return;
        };
        if self.is_closed() {
            return;
        }
        self.send(seq, result);
        while self.load.is_none() {
            let Some(msg) = self.backlog.pop_front() else {
                break;
            };
            self.dispatch(msg);
        }
        self.pump(now);
    }

    /// The connection must end for a reason the device should hear (session ended, host
    /// shutting down, pipeline failed): a `Closing` event, then the close.
    pub(crate) fn on_ending(&mut self, event: ErrorCode, close: CloseCode, message: &str) {
        if self.is_closed() {
            return;
        }
        self.actions.push_back(Action::Send(ServerMessage::Event(
            farview_protocol::Event::Closing(WireError::new(event, message)),
        )));
        self.close(close, message.to_owned());
    }

    fn send(&mut self, seq: u64, result: Result<Reply, WireError>) {
        self.actions
            .push_back(Action::Send(ServerMessage::Reply { seq, result }));
    }

    fn close(&mut self, code: CloseCode, reason: String) {
        if self.is_closed() {
            return;
        }
        self.phase = Phase::Closed;
        self.load = None;
        self.backlog.clear();
        self.actions.push_back(Action::Close { code, reason });
    }

    /// Handles buffered messages while the phase lets it.
    fn pump(&mut self, _now: Instant) {
        while self.wants_read() {
            let payload = match self.decoder.next_frame() {
                Ok(Some(p)) => p,
                Ok(None) => return,
                Err(e) => return self.close(CloseCode::PROTOCOL_ERROR, e.to_string()),
            };
            let msg = match self.codec.decode(&payload) {
                Ok(m) => m,
                Err(e) => return self.close(CloseCode::PROTOCOL_ERROR, e.to_string()),
            };
            match self.phase {
                Phase::AwaitingHello { .. } => self.on_first(msg),
                Phase::Open => self.on_request(msg),
                Phase::Binding { .. } | Phase::Closed => return,
            }
        }
    }

    fn on_first(&mut self, msg: ClientMessage) {
        let ClientMessage { seq, request } = msg;
        let Request::Hello {
            version,
            client,
            session,
        } = request
        else {
            self.send(
                seq,
                Err(WireError::new(
                    ErrorCode::HELLO_REQUIRED,
                    "the first message must be Hello",
                )),
            );
            return self.close(
                CloseCode::PROTOCOL_ERROR,
                "first message was not Hello".into(),
            );
        };
        if version != PROTOCOL_VERSION {
            self.send(
                seq,
                Err(WireError::new(
                    ErrorCode::UNSUPPORTED_VERSION,
                    format!("host speaks protocol {PROTOCOL_VERSION}, device sent {version}"),
                )),
            );
            return self.close(
                CloseCode::PROTOCOL_ERROR,
                "unsupported protocol version".into(),
            );
        }
        self.phase = Phase::Binding { seq };
        self.actions.push_back(Action::Bind {
            seq,
            client,
            session,
        });
    }

    fn on_request(&mut self, msg: ClientMessage) {
        if msg.seq <= self.last_seq {
            let e = WireError::new(
                ErrorCode::PROTOCOL_ERROR,
                format!(
                    "sequence numbers must increase: got {} after {}",
                    msg.seq, self.last_seq
                ),
            );
            return self.send(msg.seq, Err(e));
        }
        self.last_seq = msg.seq;
        self.dispatch(msg);
    }

    /// Routes one in-order request: answered now, held behind a load, or handed on.
    fn dispatch(&mut self, msg: ClientMessage) {
        let ClientMessage { seq, request } = msg;
        match request.route() {
            Route::Hello => self.send(
                seq,
                Err(WireError::new(
                    ErrorCode::PROTOCOL_ERROR,
                    "Hello was already received",
                )),
            ),
            Route::Connection => match request {
                Request::CancelLoad { load_seq } if self.load == Some(load_seq) => {
                    self.actions.push_back(Action::CancelLoad { seq: load_seq });
                    self.send(seq, Ok(Reply::LoadCancelled));
                }
                Request::CancelLoad { load_seq } => self.send(
                    seq,
                    Err(WireError::new(
                        ErrorCode::INVALID_ARGUMENT,
                        format!("no load with sequence number {load_seq} is running"),
                    )),
                ),
                request => self.actions.push_back(Action::Answer { seq, request }),
            },
            Route::Load | Route::Scene if self.load.is_some() => {
                if self.backlog.len() >= MAX_BACKLOG {
                    let e = WireError::new(
                        ErrorCode::BUSY,
                        format!(
                            "{MAX_BACKLOG} requests are already waiting for a model load; wait for its reply"
                        ),
                    );
                    return self.send(seq, Err(e));
                }
                self.backlog.push_back(ClientMessage { seq, request });
            }
            Route::Load => {
                let source = match request {
                    Request::LoadModel { path } => LoadSource::Path(path),
                    Request::SetLook(update) => {
                        self.load = Some(seq);
                        let update = Box::new(update);
                        return self.actions.push_back(Action::StartLook { seq, update });
                    }
                    Request::LoadUploadedModel { upload, name } => {
                        if name.len() > MAX_UPLOAD_NAME {
                            let e = WireError::new(
                                ErrorCode::INVALID_ARGUMENT,
                                format!("names are at most {MAX_UPLOAD_NAME} bytes"),
                            );
                            return self.send(seq, Err(e));
                        }
                        LoadSource::Upload { id: upload, name }
                    }
                    // `route()` sends only the loads and `SetLook` here.
                    other => {
                        let e = WireError::new(
                            ErrorCode::INTERNAL,
                            format!("request routed as a load: {other:?}"),
                        );
                        return self.send(seq, Err(e));
                    }
                };
                self.load = Some(seq);
                self.actions.push_back(Action::StartLoad { seq, source });
            }
            Route::Scene => self.actions.push_back(Action::Render { seq, request }),
        }
    }
}
