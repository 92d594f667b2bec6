//! What session operations fail with, in the session's own terms. `http.rs` maps each variant
//! to an HTTP status and a stable API code; [`SessionError::wire`] maps it to the device
//! protocol's codes. Neither mapping lives in the session code.

use farview_protocol::{ErrorCode, WireError};
use farview_session::{LeaseError, MIN_LEASE_MS, Status, StoreError, format_lease};
use uuid::Uuid;

/// A session operation refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum SessionError {
    /// A lease that is not `h:m:s`.
    #[error(transparent)]
    MalformedLease(LeaseError),
    /// A lease outside the allowed range.
    #[error(
        "lease {} is outside the allowed range {} to {}",
        format_lease(*requested_ms),
        format_lease(*min_ms),
        format_lease(*max_ms)
    )]
    InvalidLease {
        /// What was asked for.
        requested_ms: u64,
        /// The shortest lease.
        min_ms: u64,
        /// The longest lease, `sessions.max_lease`.
        max_ms: u64,
    },
    /// A new lease shorter than the time the session has already used.
    #[error(
        "lease cannot be shorter than the {} already used",
        format_lease(*elapsed_ms)
    )]
    LeaseBelowElapsed {
        /// Time used so far.
        elapsed_ms: u64,
    },
    /// No size of that name.
    #[error("unknown size '{requested}'; this host offers {}", offered.join(", "))]
    InvalidSize {
        /// The name asked for.
        requested: String,
        /// The sizes this host offers.
        offered: Vec<String>,
    },
    /// Too many models, or a path that is empty or too long.
    #[error("at most {max_models} models, each a path of 1 to {max_path_bytes} bytes")]
    InvalidModels {
        /// Most models per session.
        max_models: usize,
        /// Longest path.
        max_path_bytes: usize,
    },
    /// No session with that id (never, or its record was purged).
    #[error("no session {0} (records are kept for the retention period)")]
    NotFound(Uuid),
    /// A create with an id that is taken.
    #[error("session {id} {reason}")]
    Conflict {
        /// The id.
        id: Uuid,
        /// How it is taken.
        reason: Conflict,
    },
    /// The session has ended; nothing about it can change.
    #[error("session has ended ({})", status.as_str())]
    Ended {
        /// Its final status.
        status: Status,
    },
    /// Every session slot is in use.
    #[error("this host runs at most {max} session(s) at once and all are in use")]
    AtCapacity {
        /// `sessions.max_sessions`.
        max: usize,
    },
    /// The record store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The host failed internally.
    #[error("{0}")]
    Internal(String),
}

/// How a create's id is already taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Conflict {
    /// A live session with other settings has it.
    #[error("exists with different settings")]
    DifferentSettings,
    /// A session that has ended had it.
    #[error("already existed and has ended")]
    Ended,
}

impl From<LeaseError> for SessionError {
    fn from(e: LeaseError) -> Self {
        match e {
            LeaseError::OutOfRange { got_ms, max_ms } => Self::InvalidLease {
                requested_ms: got_ms,
                min_ms: MIN_LEASE_MS,
                max_ms,
            },
            other => Self::MalformedLease(other),
        }
    }
}

impl SessionError {
    /// The error as a device is told it (the codes are documented in `farview-protocol`).
    pub(crate) fn wire(&self) -> WireError {
        let code = match self {
            Self::MalformedLease(_)
            | Self::InvalidLease { .. }
            | Self::LeaseBelowElapsed { .. } => ErrorCode::INVALID_LEASE,
            Self::NotFound(_) => ErrorCode::SESSION_NOT_FOUND,
            Self::Ended { .. } => ErrorCode::SESSION_ENDED,
            // Devices never create sessions; these are the nearest codes should one ever ask.
            Self::InvalidSize { .. } | Self::InvalidModels { .. } | Self::Conflict { .. } => {
                ErrorCode::INVALID_ARGUMENT
            }
            Self::AtCapacity { .. } => ErrorCode::BUSY,
            Self::Store(_) | Self::Internal(_) => ErrorCode::INTERNAL,
        };
        WireError::new(code, self.to_string())
    }
}

/// Why the session manager could not open.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpenError {
    /// `sessions.max_lease` is not a valid lease.
    #[error(transparent)]
    MaxLease(LeaseError),
    /// The record store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl OpenError {
    /// The host's start-up error for it.
    pub(crate) fn into_host_error(self, data_dir: &std::path::Path) -> crate::HostError {
        match self {
            Self::MaxLease(e) => crate::HostError::Config(crate::ConfigError::Invalid {
                field: "sessions.max_lease",
                message: e.to_string(),
            }),
            Self::Store(e) => crate::HostError::Store {
                dir: data_dir.to_path_buf(),
                message: e.to_string(),
            },
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn lease_errors_name_the_configured_range_and_map_to_invalid_lease() {
        let day = 24 * 3600 * 1000;
        let e = SessionError::from(farview_session::check_lease(0, day).unwrap_err());
        assert_eq!(
            e.to_string(),
            "lease 0:0:0 is outside the allowed range 0:0:1 to 24:0:0"
        );
        assert_eq!(e.wire().code, ErrorCode::INVALID_LEASE);
        let e = SessionError::from(farview_session::parse_lease("x", day).unwrap_err());
        assert!(matches!(e, SessionError::MalformedLease(_)));
        assert_eq!(e.wire().code, ErrorCode::INVALID_LEASE);
        assert_eq!(
            SessionError::Ended {
                status: Status::Expired
            }
            .wire()
            .code,
            ErrorCode::SESSION_ENDED
        );
    }
}
