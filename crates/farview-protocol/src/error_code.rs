//! Stable error codes. Numbers never change meaning once released; new ones are only added.

use serde::{Deserialize, Serialize};

/// A stable, numeric error code carried in [`crate::WireError`]. Unknown codes from a newer peer
/// decode fine and print as `unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ErrorCode(pub u16);

macro_rules! codes {
    ($($(#[$doc:meta])* $name:ident = $value:expr, $text:expr;)*) => {
        impl ErrorCode {
            $($(#[$doc])* pub const $name: ErrorCode = ErrorCode($value);)*

            /// The code's stable snake_case name (what CLIs print and scripts match on).
            pub fn name(self) -> &'static str {
                match self.0 {
                    $($value => $text,)*
                    _ => "unknown",
                }
            }

            /// Every defined code, for documentation and tests.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode($value)),*];
        }
    };
}

codes! {
    /// The message could not be decoded or broke the protocol's rules.
    PROTOCOL_ERROR = 100, "protocol_error";
    /// The peer speaks a protocol version this one does not.
    UNSUPPORTED_VERSION = 101, "unsupported_version";
    /// The first message on the control stream was not `Hello`.
    HELLO_REQUIRED = 102, "hello_required";
    /// An argument is out of range or not finite.
    INVALID_ARGUMENT = 103, "invalid_argument";
    /// No model file at that path under the assets root.
    MODEL_NOT_FOUND = 200, "model_not_found";
    /// The path is absolute, contains `..`, or resolves outside the assets root.
    MODEL_PATH_FORBIDDEN = 201, "model_path_forbidden";
    /// The file is not a valid glTF model.
    MODEL_MALFORMED = 202, "model_malformed";
    /// The model needs a feature or extension the host does not support.
    MODEL_UNSUPPORTED = 203, "model_unsupported";
    /// The model exceeds a size or count limit.
    MODEL_TOO_LARGE = 204, "model_too_large";
    /// The model could not be read (I/O error on the host).
    MODEL_IO = 205, "model_io";
    /// Another model load is still running for this connection.
    LOAD_IN_PROGRESS = 206, "load_in_progress";
    /// No finished upload stream with that id on this connection.
    UPLOAD_NOT_FOUND = 207, "upload_not_found";
    /// The load was cancelled by `CancelLoad`.
    LOAD_CANCELLED = 208, "load_cancelled";
    /// The host's memory for uploads that are not loaded yet is spent (a host-wide budget
    /// shared by every connection); load or abandon pending uploads, then retry.
    UPLOAD_BUDGET_SPENT = 209, "upload_budget_spent";
    /// No environment with that name in the host's environments directory (the message lists
    /// the names there).
    ENVIRONMENT_NOT_FOUND = 210, "environment_not_found";
    /// The environment file is not a usable Radiance HDR image, or exceeds the host's limits.
    ENVIRONMENT_INVALID = 211, "environment_invalid";
    /// No session with that id (or its record has been purged).
    SESSION_NOT_FOUND = 300, "session_not_found";
    /// The connection token is wrong.
    SESSION_TOKEN_INVALID = 301, "session_token_invalid";
    /// The session is still starting (loading its models).
    SESSION_NOT_READY = 302, "session_not_ready";
    /// The session has ended (stopped, expired or failed); the message says how.
    SESSION_ENDED = 303, "session_ended";
    /// Another device is connected to the session.
    SESSION_IN_USE = 304, "session_in_use";
    /// The session is bound to a device that dropped; only its resume secret may reconnect.
    SESSION_RESUME_REQUIRED = 305, "session_resume_required";
    /// The session's lease ran out.
    LEASE_EXPIRED = 306, "lease_expired";
    /// The session was stopped through the API.
    SESSION_STOPPED = 307, "session_stopped";
    /// This host only serves devices that name a session.
    SESSION_REQUIRED = 308, "session_required";
    /// A lease change is out of range (below the time used, or above the host's maximum).
    INVALID_LEASE = 309, "invalid_lease";
    /// The request needs a session, and this stream has none.
    NO_SESSION = 310, "no_session";
    /// The entity does not exist (never did, or was destroyed).
    ENTITY_NOT_FOUND = 400, "entity_not_found";
    /// Reparenting would make an entity its own ancestor.
    WOULD_CYCLE = 401, "would_cycle";
    /// A scene limit is reached (entities, lights, cut planes, batch size).
    SCENE_LIMIT = 402, "scene_limit";
    /// No light with that id.
    LIGHT_NOT_FOUND = 403, "light_not_found";
    /// No cut plane with that id.
    CUT_PLANE_NOT_FOUND = 404, "cut_plane_not_found";
    /// Too many requests are waiting (behind a model load); retry after its reply.
    BUSY = 405, "busy";
    /// `FitView` found no geometry to frame (an empty scene, or a subtree without meshes).
    NOTHING_TO_FRAME = 406, "nothing_to_frame";
    /// The host failed internally; the message says where.
    INTERNAL = 500, "internal";
    /// The host is shutting down.
    SHUTTING_DOWN = 501, "shutting_down";
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), self.0)
    }
}

/// QUIC application close codes used when the host closes a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CloseCode(pub u32);

impl CloseCode {
    /// Normal close: the device disconnected or the stream ended.
    pub const NORMAL: CloseCode = CloseCode(0);
    /// The peer broke the protocol (garbage, oversized frame, wrong first message).
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1);
    /// The host failed internally.
    pub const INTERNAL: CloseCode = CloseCode(2);
    /// The host is shutting down.
    pub const SHUTTING_DOWN: CloseCode = CloseCode(3);
    /// The host already serves as many devices as it may.
    pub const AT_CAPACITY: CloseCode = CloseCode(4);
    /// The session ended (stopped or lease expired); a `Closing` event with the reason precedes it.
    pub const SESSION_ENDED: CloseCode = CloseCode(5);
    /// The device was refused admission to a session (the reply to `Hello` says why).
    pub const REFUSED: CloseCode = CloseCode(6);
}
