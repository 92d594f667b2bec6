//! The device's side of a session: binding its connection (one exclusive device, resumable with
//! its secret), letting it go, and its lease requests. These answer in the device protocol's
//! error codes.

use farview_protocol::{ErrorCode, LeaseInfo, WireError};
use farview_session::AdmitError;
use uuid::Uuid;

use super::{Bound, SessionError, SessionManager};

impl SessionManager {
    /// Binds a device connection to a session, or says why not.
    pub(crate) fn admit(
        &self,
        auth: &farview_protocol::SessionAuth,
        connection: u64,
        device: &str,
    ) -> Result<Bound, WireError> {
        let now = self.clock.now_ms();
        let id = Uuid::parse_str(&auth.id).map_err(|_| {
            WireError::new(
                ErrorCode::SESSION_NOT_FOUND,
                format!("'{}' is not a session id", auth.id),
            )
        })?;
        let mut live = self.lock().map_err(|e| e.wire())?;
        let Some(entry) = live.get_mut(&id) else {
            drop(live);
            return Err(match self.store.get(id) {
                Ok(Some(r)) => WireError::new(
                    ErrorCode::SESSION_ENDED,
                    format!(
                        "session has ended ({}: {})",
                        r.status.as_str(),
                        r.stop_reason.unwrap_or_default()
                    ),
                ),
                Ok(None) => {
                    WireError::new(ErrorCode::SESSION_NOT_FOUND, format!("no session {id}"))
                }
                Err(e) => SessionError::from(e).wire(),
            });
        };
        let admission = entry
            .session
            .admit(
                &auth.token,
                auth.resume_secret.as_deref(),
                connection,
                device,
                now,
            )
            .map_err(|e| {
                let code = match e {
                    AdmitError::BadToken => ErrorCode::SESSION_TOKEN_INVALID,
                    AdmitError::NotReady(_) => ErrorCode::SESSION_NOT_READY,
                    AdmitError::Ended { .. } => ErrorCode::SESSION_ENDED,
                    AdmitError::InUse => ErrorCode::SESSION_IN_USE,
                    _ => ErrorCode::SESSION_RESUME_REQUIRED,
                };
                WireError::new(code, e.to_string())
            })?;
        let Some(pipeline) = entry.pipeline.clone() else {
            // Admitted but nothing to stream from: undo the binding, or the session would stay
            // bound to a connection that never gets to detach.
            entry.session.detach(connection);
            return Err(WireError::new(
                ErrorCode::SESSION_NOT_READY,
                "session is not ready yet",
            ));
        };
        let bound = Bound {
            pipeline,
            ended: entry.ended.clone(),
            ended_why: entry.ended_why.clone(),
            resume_secret: admission.resume_secret,
            lease: entry.lease_info(now),
            settings: self.settings_for(&entry.size),
            max_triangles: entry.size.max_triangles,
            max_upload_bytes: entry.size.max_upload_bytes,
        };
        let record = entry.session.record().clone();
        drop(live);
        if let Err(e) = self.store.put(&record) {
            tracing::error!(error = %e, "cannot write session record");
        }
        tracing::info!(session = %id, %device, resumed = admission.resumed, "device bound");
        Ok(bound)
    }

    /// The device's connection ended; the session keeps its scene for a resume.
    pub(crate) fn detach(&self, id: Uuid, connection: u64) {
        let record = match self.live.lock() {
            Ok(mut live) => live.get_mut(&id).map(|e| {
                e.refresh();
                e.session.detach(connection);
                e.session.record().clone()
            }),
            Err(_) => None,
        };
        if let Some(r) = record
            && let Err(e) = self.store.put(&r)
        {
            tracing::error!(error = %e, "cannot write session record");
        }
    }

    /// Lease of a live session, for the device.
    pub(crate) fn lease(&self, id: Uuid) -> Result<LeaseInfo, WireError> {
        let now = self.clock.now_ms();
        let live = self.lock().map_err(|e| e.wire())?;
        live.get(&id)
            .map(|e| e.lease_info(now))
            .ok_or_else(|| WireError::new(ErrorCode::SESSION_ENDED, "session has ended"))
    }
}
