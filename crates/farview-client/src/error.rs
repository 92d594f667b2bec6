//! The SDK's error type.

use farview_protocol::{ErrorCode, WireError};

/// Everything that can go wrong talking to a host.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The fingerprint is not 64 hex digits.
    #[error("invalid certificate fingerprint: {0}")]
    InvalidFingerprint(String),
    /// The QUIC/TLS connection could not be made (wrong address, fingerprint mismatch, ...).
    #[error("cannot connect{}: {reason}", addr.map(|a| format!(" to {a}")).unwrap_or_default())]
    Connect {
        /// The address tried.
        addr: Option<std::net::SocketAddr>,
        /// Why.
        reason: String,
    },
    /// The host presented a certificate other than the pinned one: a different host at that
    /// address, a host whose data directory (and so certificate) was replaced, or someone in
    /// between.
    #[error(
        "fingerprint mismatch at {addr}: expected {expected}, the host presented {presented} \
         (check the fingerprint the session API or DATA_DIR/fingerprint gives)"
    )]
    FingerprintMismatch {
        /// The address tried.
        addr: std::net::SocketAddr,
        /// The pinned fingerprint (hex SHA-256).
        expected: String,
        /// The fingerprint of the certificate the host presented.
        presented: String,
    },
    /// The host refused a request with a typed error.
    #[error("host refused: {0}")]
    Host(WireError),
    /// The host closed the connection (lease ended, shutdown, capacity, protocol error, ...).
    #[error("connection closed: {reason} (close code {code})")]
    Closed {
        /// QUIC application close code (see `farview_protocol::CloseCode`).
        code: u64,
        /// Why.
        reason: String,
    },
    /// The session API refused a request.
    #[error("API error {status} {code}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// Stable error code.
        code: String,
        /// Detail.
        message: String,
    },
    /// The HTTP request failed (connection refused, timeout, ...).
    #[error("HTTP: {0}")]
    Http(String),
    /// The host sent something that breaks the protocol.
    #[error("protocol violation by host: {0}")]
    Protocol(String),
}

impl ClientError {
    /// The host's error code, when the host refused a request.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Host(e) => Some(e.code),
            _ => None,
        }
    }

    pub(crate) fn from_connection(e: &quinn::ConnectionError) -> Self {
        match e {
            quinn::ConnectionError::ApplicationClosed(c) => Self::Closed {
                code: c.error_code.into_inner(),
                reason: String::from_utf8_lossy(&c.reason).into_owned(),
            },
            other => Self::Closed {
                code: 0,
                reason: other.to_string(),
            },
        }
    }
}
