//! The control stream: the Hello/Welcome exchange, the writer task that numbers and sends
//! requests, and the reader task that routes replies to their waiters and records events.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use farview_protocol::{
    ClientMessage, CloseCode, Event, FrameDecoder, MAX_CONTROL_MESSAGE, PROTOCOL_VERSION, Reply,
    Request, ServerMessage, StreamInfo, WireError, decode_message, encode_message,
};
use tokio::sync::{mpsc, oneshot};

use super::{ConnectOptions, LoadProgress, Outgoing, ReplySender, now_us};
use crate::ClientError;

/// A request on its way: its sequence number, and its reply to come. Dropping it discards the
/// reply (the request still runs on the host).
#[derive(Debug)]
pub struct PendingReply {
    pub(super) seq: u64,
    pub(super) rx: oneshot::Receiver<(u64, Result<Reply, WireError>)>,
    pub(super) closing: Arc<Mutex<Option<WireError>>>,
    /// Ends the wait when the connection does: a request queued after the control reader
    /// stopped (the host closed the connection, e.g. at lease expiry) has nobody to answer it.
    pub(super) conn: quinn::Connection,
}

impl PendingReply {
    /// The request's sequence number: frames with `last_command_seq >= seq` reflect it.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Waits for the reply. Cancel-safe in the sense that dropping the future only discards it.
    pub async fn reply(self) -> Result<Reply, ClientError> {
        let answered = tokio::select! {
            // A reply that arrived before the close still counts.
            biased;
            r = self.rx => r,
            e = self.conn.closed() => {
                if let Some(e) = self.closing.lock().ok().and_then(|g| g.clone()) {
                    return Err(ClientError::Host(e));
                }
                return Err(ClientError::from_connection(&e));
            }
        };
        match answered {
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

/// Sends Hello on the new control stream and waits (at most `options.timeout`) for Welcome.
/// Returns what the host will stream and the decoder, which keeps any bytes read past Welcome.
pub(super) async fn hello(
    conn: &quinn::Connection,
    send: &mut quinn::SendStream,
    recv: &mut quinn::RecvStream,
    options: &ConnectOptions,
) -> Result<(StreamInfo, FrameDecoder), ClientError> {
    let addr = options.addr;
    let connect_err = |reason: String| ClientError::Connect {
        addr: Some(addr),
        reason,
    };
    let hello = ClientMessage {
        seq: 1,
        request: Request::Hello {
            version: PROTOCOL_VERSION,
            client: options.client_name.clone(),
            session: options.session.clone(),
        },
    };
    let bytes = encode_message(&hello).map_err(|e| ClientError::Protocol(e.to_string()))?;
    // A host that refuses at once (at capacity) may close before Hello is written: report its
    // close code and reason, not a bare write failure.
    send.write_all(&bytes).await.map_err(|e| {
        conn.close_reason().map_or_else(
            || connect_err(e.to_string()),
            |c| ClientError::from_connection(&c),
        )
    })?;
    let mut decoder = FrameDecoder::new(MAX_CONTROL_MESSAGE);
    let welcome = tokio::time::timeout(options.timeout, read_message(recv, &mut decoder))
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
    Ok((info, decoder))
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

pub(super) async fn write_loop(
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

pub(super) async fn read_loop(
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
