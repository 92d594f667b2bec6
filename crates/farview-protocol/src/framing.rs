//! Length-delimited framing: a 4-byte big-endian length, then that many bytes of payload.
//!
//! [`FrameDecoder`] is push/pull like retina's depacketizer: feed it whatever bytes arrived, take
//! complete frames out. It rejects an announced length above its limit before buffering it.

use serde::{Serialize, de::DeserializeOwned};

/// Why a message could not be framed, or bytes could not be turned into a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The peer announced a frame larger than allowed.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The payload is not a valid message.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The input ended inside a frame.
    #[error("input ended inside a frame ({0} bytes missing)")]
    Truncated(usize),
    /// A message could not be serialized.
    #[error("cannot encode message: {0}")]
    Encode(String),
}

/// Serializes `msg` as a length-delimited frame.
pub fn encode_message<T: Serialize>(msg: &T) -> Result<Vec<u8>, ProtocolError> {
    let mut out = Vec::with_capacity(64);
    encode_message_into(msg, &mut out)?;
    Ok(out)
}

/// Appends `msg` as a length-delimited frame to `out`.
pub fn encode_message_into<T: Serialize>(msg: &T, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
    let payload = postcard::to_allocvec(msg).map_err(|e| ProtocolError::Encode(e.to_string()))?;
    frame_into(&payload, out)
}

/// Appends `payload` with its big-endian `u32` length in front.
fn frame_into(payload: &[u8], out: &mut Vec<u8>) -> Result<(), ProtocolError> {
    let len = u32::try_from(payload.len()).map_err(|_| ProtocolError::TooLarge {
        len: payload.len(),
        max: u32::MAX as usize,
    })?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

/// Decodes one payload (without its length prefix).
pub fn decode_message<T: DeserializeOwned>(payload: &[u8]) -> Result<T, ProtocolError> {
    let (msg, rest) =
        postcard::take_from_bytes(payload).map_err(|e| ProtocolError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(ProtocolError::Malformed(format!(
            "{} trailing bytes after message",
            rest.len()
        )));
    }
    Ok(msg)
}

/// How a control stream's payloads are encoded. The messages, their order and their rules are
/// the same either way; only the bytes inside each length-delimited frame differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ControlCodec {
    /// postcard: compact, the native transport's (`farview/1`).
    #[default]
    Postcard,
    /// JSON (serde's externally tagged enums, field names as in the Rust types): what a browser
    /// device speaks over WebTransport, where decoding postcard would need a hand-written
    /// decoder of every message. Media streams stay binary on both transports.
    Json,
}

impl ControlCodec {
    /// Appends `msg` as a length-delimited frame to `out`.
    pub fn encode_into<T: Serialize>(
        self,
        msg: &T,
        out: &mut Vec<u8>,
    ) -> Result<(), ProtocolError> {
        match self {
            Self::Postcard => encode_message_into(msg, out),
            Self::Json => {
                let payload =
                    serde_json::to_vec(msg).map_err(|e| ProtocolError::Encode(e.to_string()))?;
                frame_into(&payload, out)
            }
        }
    }

    /// Decodes one payload (without its length prefix).
    pub fn decode<T: DeserializeOwned>(self, payload: &[u8]) -> Result<T, ProtocolError> {
        match self {
            Self::Postcard => decode_message(payload),
            Self::Json => {
                serde_json::from_slice(payload).map_err(|e| ProtocolError::Malformed(e.to_string()))
            }
        }
    }
}

/// Reassembles length-delimited frames from arbitrary chunks of bytes.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    max: usize,
}

impl FrameDecoder {
    /// A decoder that rejects frames over `max` bytes.
    pub fn new(max: usize) -> Self {
        Self {
            buf: Vec::new(),
            max,
        }
    }

    /// Appends received bytes. Fails when a frame header already announces more than the limit,
    /// so a hostile peer cannot make us buffer it.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), ProtocolError> {
        self.buf.extend_from_slice(bytes);
        self.check_head()
    }

    fn check_head(&self) -> Result<(), ProtocolError> {
        match self.announced() {
            Some(len) if len > self.max => Err(ProtocolError::TooLarge { len, max: self.max }),
            _ => Ok(()),
        }
    }

    fn announced(&self) -> Option<usize> {
        let head: [u8; 4] = self.buf.get(..4)?.try_into().ok()?;
        Some(u32::from_be_bytes(head) as usize)
    }

    /// Takes the next complete frame's payload, if one is buffered.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, ProtocolError> {
        let Some(len) = self.announced() else {
            return Ok(None);
        };
        if len > self.max {
            return Err(ProtocolError::TooLarge { len, max: self.max });
        }
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        let payload = self.buf[4..4 + len].to_vec();
        self.buf.drain(..4 + len);
        Ok(Some(payload))
    }

    /// Bytes buffered but not yet returned.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Call at end of stream: an error if a partial frame is left over.
    pub fn finish(&self) -> Result<(), ProtocolError> {
        match self.buf.len() {
            0 => Ok(()),
            n => Err(ProtocolError::Truncated(match self.announced() {
                Some(len) => (4 + len).saturating_sub(n),
                None => 4usize.saturating_sub(n),
            })),
        }
    }
}
