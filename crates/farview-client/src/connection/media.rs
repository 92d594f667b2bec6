//! The media side: the task that accepts the host's unidirectional frame-group streams and
//! reads each group's frame records into the frame queue.

use std::sync::Arc;

use farview_protocol::{FrameHeader, FrameRecord, MediaStreamHeader, Request};
use tokio::sync::{mpsc, oneshot};

use super::{Outgoing, now_us};
use crate::queue::{FrameQueue, Push};

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

pub(super) async fn media_loop(
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
