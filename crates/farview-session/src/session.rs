//! One session's state machine.
//!
//! ```text
//! starting ──ready──▶ ready ──admit──▶ connected ──detach──▶ ready (device still bound)
//!     │                 │                  │
//!     └──fail──▶ error  └──stop / lease────┴──▶ stopped | expired
//! ```
//! The first device admitted binds the session. While it is connected every other admission is
//! refused; after it drops, only a connection presenting the resume secret it was given may bind
//! again, so a second app instance never steals a session by knowing its token.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Created; models are loading.
    Starting,
    /// Waiting for (or between) device connections.
    Ready,
    /// A device is connected and streaming.
    Connected,
    /// Stopped on request.
    Stopped,
    /// The lease ran out.
    Expired,
    /// The session's render or encode loop failed, or the host restarted under it.
    Error,
}

impl Status {
    /// True once the session can never run again.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Stopped | Self::Expired | Self::Error)
    }

    /// The lowercase name used in the API and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Ready => "ready",
            Self::Connected => "connected",
            Self::Stopped => "stopped",
            Self::Expired => "expired",
            Self::Error => "error",
        }
    }
}

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// Someone called stop.
    Stopped,
    /// The lease expired.
    LeaseExpired,
    /// A failure, with its cause.
    Error(String),
}

impl StopReason {
    fn status(&self) -> Status {
        match self {
            Self::Stopped => Status::Stopped,
            Self::LeaseExpired => Status::Expired,
            Self::Error(_) => Status::Error,
        }
    }

    /// Text stored in the record and sent to the device.
    pub fn text(&self) -> String {
        match self {
            Self::Stopped => "stopped".into(),
            Self::LeaseExpired => "lease expired".into(),
            Self::Error(cause) => cause.clone(),
        }
    }
}

/// What is kept about a session, queryable long after it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionRecord {
    /// Session id.
    pub id: Uuid,
    /// Size name (`standard`, `premium`, ...).
    pub size: String,
    /// Current status.
    pub status: Status,
    /// Models loaded before the session reported ready.
    pub models: Vec<String>,
    /// Creation time (ms since the Unix epoch).
    pub created_at_ms: u64,
    /// When it became ready.
    pub ready_at_ms: Option<u64>,
    /// Lease length from creation, in ms.
    pub max_lease_ms: u64,
    /// When it ended.
    pub stopped_at_ms: Option<u64>,
    /// Why it ended.
    pub stop_reason: Option<String>,
    /// The device bound to it (its address), if any.
    pub device: Option<String>,
    /// Frames sent to devices.
    pub frames_sent: u64,
    /// Models loaded.
    pub models_loaded: u64,
}

/// Why a device was not admitted. Each has its own wire error code in the host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdmitError {
    /// The token does not match.
    #[error("wrong session token")]
    BadToken,
    /// The session is still starting.
    #[error("session is not ready yet (status {0})")]
    NotReady(&'static str),
    /// The session has ended.
    #[error("session has ended (status {status}: {reason})")]
    Ended {
        /// Final status.
        status: &'static str,
        /// Stop reason.
        reason: String,
    },
    /// Another device is connected.
    #[error("session is in use by another device")]
    InUse,
    /// A device was bound and dropped; only it (with its resume secret) may reconnect.
    #[error("session is bound to another device; reconnecting needs that device's resume secret")]
    ResumeSecretRequired,
}

/// A successful admission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    /// The secret a device must present to reconnect after a drop (sent on first bind only;
    /// a resuming device keeps the one it has).
    pub resume_secret: Option<String>,
    /// True when this admission resumed an earlier binding.
    pub resumed: bool,
}

/// Why a lease change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExtendError {
    /// The session has ended.
    #[error("session has ended (status {0})")]
    Ended(&'static str),
    /// The new lease is shorter than the time already used.
    #[error("lease cannot be shorter than the {elapsed_ms} ms already elapsed")]
    BelowElapsed {
        /// Time used so far.
        elapsed_ms: u64,
    },
}

#[derive(Debug, Clone)]
enum Binding {
    Unbound,
    Bound {
        connection: u64,
        resume_hash: [u8; 32],
        live: bool,
    },
}

/// A live session.
#[derive(Debug, Clone)]
pub struct Session {
    record: SessionRecord,
    token_hash: [u8; 32],
    binding: Binding,
}

fn hash(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// Compares digests without an early exit, so timing reveals nothing about a guessed token.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// 244 random bits from two v4 UUIDs, as 64 hex digits.
fn secret() -> String {
    format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple())
}

impl Session {
    /// Creates a session in `starting`; returns it and its connection token (shown once).
    pub fn new(
        id: Uuid,
        size: &str,
        max_lease_ms: u64,
        models: Vec<String>,
        now_ms: u64,
    ) -> (Self, String) {
        let token = secret();
        let record = SessionRecord {
            id,
            size: size.to_owned(),
            status: Status::Starting,
            models,
            created_at_ms: now_ms,
            ready_at_ms: None,
            max_lease_ms,
            stopped_at_ms: None,
            stop_reason: None,
            device: None,
            frames_sent: 0,
            models_loaded: 0,
        };
        (
            Self {
                record,
                token_hash: hash(&token),
                binding: Binding::Unbound,
            },
            token,
        )
    }

    /// The record as it stands.
    pub fn record(&self) -> &SessionRecord {
        &self.record
    }

    /// Updates counters.
    pub fn count(&mut self, frames_sent: u64, models_loaded: u64) {
        self.record.frames_sent = frames_sent;
        self.record.models_loaded = models_loaded;
    }

    /// Time used since creation.
    pub fn elapsed_ms(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.record.created_at_ms)
    }

    /// When the lease ends.
    pub fn expires_at_ms(&self) -> u64 {
        self.record
            .created_at_ms
            .saturating_add(self.record.max_lease_ms)
    }

    /// Lease time left.
    pub fn remaining_ms(&self, now_ms: u64) -> u64 {
        self.expires_at_ms().saturating_sub(now_ms)
    }

    /// Starting → ready (models loaded).
    pub fn mark_ready(&mut self, now_ms: u64) {
        if self.record.status == Status::Starting {
            self.record.status = Status::Ready;
            self.record.ready_at_ms = Some(now_ms);
        }
    }

    /// Decides whether connection `connection` (from `device`) may bind the session. Consumes
    /// nothing on refusal: the bound device is undisturbed.
    pub fn admit(
        &mut self,
        token: &str,
        resume_secret: Option<&str>,
        connection: u64,
        device: &str,
        now_ms: u64,
    ) -> Result<Admission, AdmitError> {
        if !same(&hash(token), &self.token_hash) {
            return Err(AdmitError::BadToken);
        }
        self.poll(now_ms);
        match self.record.status {
            Status::Starting => return Err(AdmitError::NotReady(Status::Starting.as_str())),
            s if s.is_final() => {
                return Err(AdmitError::Ended {
                    status: s.as_str(),
                    reason: self.record.stop_reason.clone().unwrap_or_default(),
                });
            }
            _ => {}
        }
        let admission = match &self.binding {
            Binding::Bound { live: true, .. } => return Err(AdmitError::InUse),
            Binding::Bound { resume_hash, .. } => {
                let ok = resume_secret.is_some_and(|s| same(&hash(s), resume_hash));
                if !ok {
                    return Err(AdmitError::ResumeSecretRequired);
                }
                self.binding = Binding::Bound {
                    connection,
                    resume_hash: *resume_hash,
                    live: true,
                };
                Admission {
                    resume_secret: None,
                    resumed: true,
                }
            }
            Binding::Unbound => {
                let s = secret();
                self.binding = Binding::Bound {
                    connection,
                    resume_hash: hash(&s),
                    live: true,
                };
                Admission {
                    resume_secret: Some(s),
                    resumed: false,
                }
            }
        };
        self.record.status = Status::Connected;
        self.record.device = Some(device.to_owned());
        Ok(admission)
    }

    /// The bound connection went away; the binding (and the scene) stay for a resume.
    pub fn detach(&mut self, connection: u64) {
        if let Binding::Bound {
            connection: c,
            resume_hash,
            live: true,
        } = self.binding
            && c == connection
        {
            self.binding = Binding::Bound {
                connection: c,
                resume_hash,
                live: false,
            };
            if self.record.status == Status::Connected {
                self.record.status = Status::Ready;
            }
        }
    }

    /// The connection currently bound and live, if any.
    pub fn live_connection(&self) -> Option<u64> {
        match self.binding {
            Binding::Bound {
                connection,
                live: true,
                ..
            } => Some(connection),
            _ => None,
        }
    }

    /// Sets a new lease length from creation (extend or shorten, never below the time used).
    pub fn set_lease(&mut self, max_lease_ms: u64, now_ms: u64) -> Result<(), ExtendError> {
        self.poll(now_ms);
        if self.record.status.is_final() {
            return Err(ExtendError::Ended(self.record.status.as_str()));
        }
        let elapsed_ms = self.elapsed_ms(now_ms);
        if max_lease_ms < elapsed_ms {
            return Err(ExtendError::BelowElapsed { elapsed_ms });
        }
        self.record.max_lease_ms = max_lease_ms;
        Ok(())
    }

    /// Ends the session. Returns false when it had already ended (stopping twice is fine).
    pub fn stop(&mut self, reason: StopReason, now_ms: u64) -> bool {
        if self.record.status.is_final() {
            return false;
        }
        self.record.status = reason.status();
        self.record.stopped_at_ms = Some(now_ms);
        self.record.stop_reason = Some(reason.text());
        if let Binding::Bound {
            connection,
            resume_hash,
            ..
        } = self.binding
        {
            self.binding = Binding::Bound {
                connection,
                resume_hash,
                live: false,
            };
        }
        true
    }

    /// Applies the lease clock: returns the reason if the session expired just now.
    pub fn poll(&mut self, now_ms: u64) -> Option<StopReason> {
        if !self.record.status.is_final() && now_ms >= self.expires_at_ms() {
            let at = self.expires_at_ms();
            self.stop(StopReason::LeaseExpired, at);
            return Some(StopReason::LeaseExpired);
        }
        None
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ready(lease: u64) -> (Session, String) {
        let (mut s, token) = Session::new(Uuid::new_v4(), "standard", lease, vec![], 1_000);
        s.mark_ready(1_100);
        (s, token)
    }

    #[test]
    fn first_device_binds_others_are_refused_and_only_the_secret_resumes() {
        let (mut s, token) = ready(60_000);
        assert_eq!(
            s.admit("wrong", None, 1, "a", 2_000),
            Err(AdmitError::BadToken)
        );
        let first = s.admit(&token, None, 1, "a", 2_000).unwrap();
        let secret = first.resume_secret.unwrap();
        assert_eq!(s.record().status, Status::Connected);
        assert_eq!(s.admit(&token, None, 2, "b", 2_100), Err(AdmitError::InUse));
        assert_eq!(
            s.admit(&token, Some(&secret), 2, "b", 2_100),
            Err(AdmitError::InUse),
            "even with the secret"
        );
        assert_eq!(s.live_connection(), Some(1));
        s.detach(2); // not the bound connection: no effect
        assert_eq!(s.live_connection(), Some(1));
        s.detach(1);
        assert_eq!(s.record().status, Status::Ready);
        assert_eq!(
            s.admit(&token, None, 3, "c", 2_200),
            Err(AdmitError::ResumeSecretRequired)
        );
        assert_eq!(
            s.admit(&token, Some("nope"), 3, "c", 2_200),
            Err(AdmitError::ResumeSecretRequired)
        );
        let again = s.admit(&token, Some(&secret), 4, "a", 2_300).unwrap();
        assert!(again.resumed && again.resume_secret.is_none());
        assert_eq!(s.live_connection(), Some(4));
    }

    #[test]
    fn starting_and_ended_sessions_refuse_devices() {
        let (mut s, token) = Session::new(Uuid::new_v4(), "standard", 60_000, vec![], 0);
        assert_eq!(
            s.admit(&token, None, 1, "a", 10),
            Err(AdmitError::NotReady("starting"))
        );
        s.mark_ready(20);
        assert!(s.stop(StopReason::Stopped, 30));
        assert!(
            !s.stop(StopReason::Stopped, 40),
            "stopping twice is not an error"
        );
        assert!(matches!(
            s.admit(&token, None, 1, "a", 50),
            Err(AdmitError::Ended {
                status: "stopped",
                ..
            })
        ));
        assert_eq!(s.record().stopped_at_ms, Some(30));
    }

    #[test]
    fn the_lease_expires_and_can_be_extended_or_shortened_before() {
        let (mut s, token) = ready(10_000); // created at 1_000, expires at 11_000
        assert_eq!(s.remaining_ms(6_000), 5_000);
        s.set_lease(20_000, 6_000).unwrap();
        assert_eq!(s.poll(11_000), None);
        assert_eq!(
            s.set_lease(4_000, 6_000),
            Err(ExtendError::BelowElapsed { elapsed_ms: 5_000 })
        );
        s.admit(&token, None, 1, "a", 12_000).unwrap();
        assert_eq!(s.poll(21_000), Some(StopReason::LeaseExpired));
        assert_eq!(s.record().status, Status::Expired);
        assert_eq!(s.record().stop_reason.as_deref(), Some("lease expired"));
        assert_eq!(s.record().stopped_at_ms, Some(21_000));
        assert_eq!(s.live_connection(), None);
        assert_eq!(
            s.set_lease(60_000, 22_000),
            Err(ExtendError::Ended("expired"))
        );
        assert_eq!(s.poll(30_000), None, "expires once");
    }
}
