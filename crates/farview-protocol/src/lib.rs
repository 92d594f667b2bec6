//! Farview's wire protocol: every message exchanged between a host and a device, and the framing
//! that carries them over QUIC streams.
//!
//! This crate does no I/O and knows no async runtime (like `quinn-proto`): it turns messages into
//! bytes and bytes into messages, bounded by explicit limits so hostile input costs at most one
//! frame's worth of memory. The host and the SDK own the sockets.
//!
//! The byte-level format is specified in `docs/protocol.md` at the repository root so a client in
//! another language can be written from it; the tests here pin it with golden bytes.
//!
//! Streams of one QUIC connection (ALPN [`ALPN`]):
//! - one bidirectional **control stream**, opened by the device: length-delimited
//!   [`ClientMessage`]s up, [`ServerMessage`]s down;
//! - **media streams**, unidirectional, opened by the host: one per group of pictures (an IDR frame
//!   and the frames that depend on it), starting with a [`MediaStreamHeader`] followed by frame
//!   records ([`FrameHeader`] + H.264 Annex-B access unit).

mod control;
mod error_code;
mod framing;
mod look;
mod media;
mod scene;

pub use control::{
    CameraPose, ClientMessage, Event, FIT_VIEW_DIRECTION, LeaseInfo, LoadedModel, ModelFile, Reply,
    Request, Route, ServerMessage, SessionAuth, StreamInfo, WireError,
};
pub use error_code::{CloseCode, ErrorCode};
pub use framing::{
    ControlCodec, FrameDecoder, ProtocolError, decode_message, encode_message, encode_message_into,
};
pub use look::{
    LookState, LookUpdate, MAX_ENVIRONMENT_INTENSITY, MAX_ENVIRONMENT_NAME, MAX_EXPOSURE,
    MAX_OUTLINE_PULSE_PERIOD_S, MAX_OUTLINE_WIDTH_PX, NO_ENVIRONMENT, OutlineSettings, ToneMapping,
    is_environment_name,
};
pub use media::{FrameAnimation, FrameDetail, FrameHeader, FrameRecord, MediaStreamHeader};
pub use scene::{
    AnimationCommand, AnimationInfo, AnimationState, CutPlane, EntityBounds, EntityNode,
    EntityTransform, Light, LightKind, MAX_CHILDREN_LISTED, MAX_RAY_HITS, MAX_TRANSFORM_BATCH,
    MaterialOverride, ModelCamera, RayHit, RayQuery, SceneStats, StateOverride, TransformUpdate,
};

/// The protocol version this crate speaks; sent in [`Request::Hello`] and [`StreamInfo`].
pub const PROTOCOL_VERSION: u16 = 6;

/// Most models one [`Reply::Models`] lists.
pub const MAX_MODELS_LISTED: usize = 1000;

/// ALPN identifier negotiated in the QUIC handshake.
pub const ALPN: &[u8] = b"farview/1";

/// ALPN of HTTP/3, under which browsers open WebTransport sessions on the same UDP port.
pub const WEBTRANSPORT_ALPN: &[u8] = b"h3";

/// The path of the WebTransport session a browser device opens (`https://host:port/farview`).
pub const WEBTRANSPORT_PATH: &str = "/farview";

/// Largest control message payload accepted, in bytes: room for a full transform batch
/// ([`MAX_TRANSFORM_BATCH`] updates). Model bytes travel on upload streams, not here; a peer
/// announcing more is a protocol error.
pub const MAX_CONTROL_MESSAGE: usize = 1024 * 1024;

/// Magic at the start of a device-opened upload stream: `"FVUP"`, then the upload id (u64 BE)
/// and the byte length (u64 BE), then the bytes.
pub const UPLOAD_MAGIC: [u8; 4] = *b"FVUP";

/// Largest media frame record accepted, in bytes (an 8K intra frame at a very high bitrate fits).
pub const MAX_FRAME_RECORD: usize = 16 * 1024 * 1024;
