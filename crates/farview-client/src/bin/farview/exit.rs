//! Exit codes, so that scripts can tell a refusal from an unreachable host from a full disk.
//! Documented in the README and in `farview --help`.

use std::process::ExitCode;

use farview_client::ClientError;

/// Why the CLI stopped with an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Anything not below (a bug, an unexpected answer): 1.
    Other,
    /// Flags that do not go together, found after parsing: 2, as clap's own.
    Usage,
    /// The host or its API refused the request or ended the stream (an error code from the
    /// host, a lease that ran out, an API status): 3.
    Refused,
    /// The host could not be reached or verified (address, network, TLS, fingerprint,
    /// timeout): 4.
    Connection,
    /// A local file could not be read or written: 5.
    Io,
    /// Ctrl-C: 130, as shells report a SIGINT.
    Interrupted,
}

impl Failure {
    /// The process exit code. 2 stays clap's, for usage errors.
    pub(crate) fn code(self) -> ExitCode {
        ExitCode::from(match self {
            Self::Other => 1,
            Self::Usage => 2,
            Self::Refused => 3,
            Self::Connection => 4,
            Self::Io => 5,
            Self::Interrupted => 130,
        })
    }

    /// Classifies an error by the first cause in its chain that says what kind it is.
    pub(crate) fn of(e: &anyhow::Error) -> Self {
        for cause in e.chain() {
            if cause.downcast_ref::<clap::Error>().is_some() {
                return Self::Usage;
            }
            if cause.downcast_ref::<Interrupted>().is_some() {
                return Self::Interrupted;
            }
            if let Some(c) = cause.downcast_ref::<ClientError>() {
                return match c {
                    ClientError::Host(_) | ClientError::Api { .. } | ClientError::Closed { .. } => {
                        Self::Refused
                    }
                    ClientError::Connect { .. }
                    | ClientError::FingerprintMismatch { .. }
                    | ClientError::Http(_) => Self::Connection,
                    _ => Self::Other,
                };
            }
            if cause.downcast_ref::<std::io::Error>().is_some() {
                return Self::Io;
            }
        }
        Self::Other
    }
}

/// The user pressed Ctrl-C.
#[derive(Debug, thiserror::Error)]
#[error("interrupted")]
pub(crate) struct Interrupted;

/// The text `farview --help` ends with.
pub(crate) const EXIT_CODES_HELP: &str = "Exit codes: 0 success; 1 other error; 2 usage; \
3 refused or ended by the host or its API (lease over, error code, API status); \
4 connection (unreachable, TLS, fingerprint mismatch, timeout); 5 local file I/O; 130 Ctrl-C.";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_map_to_their_codes() {
        let host = anyhow::Error::new(ClientError::Closed {
            code: 4,
            reason: "lease expired".into(),
        })
        .context("streaming");
        assert_eq!(Failure::of(&host), Failure::Refused);
        let fp = anyhow::Error::new(ClientError::FingerprintMismatch {
            addr: ([127, 0, 0, 1], 1).into(),
            expected: "a".into(),
            presented: "b".into(),
        });
        assert_eq!(Failure::of(&fp), Failure::Connection);
        let io = anyhow::Error::new(std::io::Error::other("disk full")).context("writing out.mp4");
        assert_eq!(Failure::of(&io), Failure::Io);
        assert_eq!(
            Failure::of(&anyhow::Error::new(Interrupted)),
            Failure::Interrupted
        );
        assert_eq!(Failure::of(&anyhow::anyhow!("odd")), Failure::Other);
    }
}
