//! Binding a connection to what it streams from: a session's pipeline (after admission by the
//! session manager) or, on hosts that allow it, an ad-hoc pipeline of its own; and undoing that
//! however the connection ends.

use std::sync::Arc;

use farview_protocol::{CloseCode, ErrorCode, SessionAuth, WireError};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::HostContext;
use crate::pipeline::{Pipeline, PipelineExit, StreamSettings};

/// The session side of a bound connection.
pub(super) struct SessionSide {
    pub(super) id: Uuid,
    pub(super) ended: CancellationToken,
    pub(super) ended_why: Arc<std::sync::Mutex<Option<crate::sessions::Ended>>>,
    pub(super) resume_secret: Option<String>,
    pub(super) lease: farview_protocol::LeaseInfo,
}

/// What a connection streams from.
pub(super) struct BoundStream {
    pub(super) pipeline: Arc<Pipeline>,
    pub(super) settings: StreamSettings,
    pub(super) max_triangles: u64,
    /// Largest model upload accepted.
    pub(super) max_upload_bytes: u64,
    pub(super) session: Option<SessionSide>,
    /// Ad-hoc streams own their pipeline and watch it for failures; sessions watch theirs.
    pub(super) exit: std::sync::Mutex<Option<PipelineExit>>,
}

/// Binds the connection to its session's pipeline, or starts an ad-hoc one.
pub(super) async fn bind(
    conn: &web_transport_quinn::Session,
    conn_id: u64,
    session: Option<SessionAuth>,
    host: &HostContext,
) -> Result<BoundStream, (CloseCode, WireError)> {
    let internal = |m: String| (CloseCode::INTERNAL, WireError::new(ErrorCode::INTERNAL, m));
    if let Some(auth) = session {
        // Parsed before admission, so nothing can fail between binding and the detach guard.
        let id = Uuid::parse_str(&auth.id).map_err(|_| {
            (
                CloseCode::REFUSED,
                WireError::new(ErrorCode::SESSION_NOT_FOUND, "the session id is not a UUID"),
            )
        })?;
        let sessions = host.sessions.clone();
        let device = conn.remote_address().to_string();
        let b = tokio::task::spawn_blocking(move || sessions.admit(&auth, conn_id, &device))
            .await
            .map_err(|e| internal(format!("session admission panicked: {e}")))?
            .map_err(|e| (CloseCode::REFUSED, e))?;
        return Ok(BoundStream {
            pipeline: b.pipeline,
            settings: b.settings,
            max_triangles: b.max_triangles,
            max_upload_bytes: b.max_upload_bytes,
            session: Some(SessionSide {
                id,
                ended: b.ended,
                ended_why: b.ended_why,
                resume_secret: b.resume_secret,
                lease: b.lease,
            }),
            exit: std::sync::Mutex::new(None),
        });
    }
    if !host.config.sessions.allow_sessionless {
        return Err((
            CloseCode::REFUSED,
            WireError::new(
                ErrorCode::SESSION_REQUIRED,
                "this host only serves devices that name a session (create one with POST /v1/sessions)",
            ),
        ));
    }
    let settings = host.stream_settings();
    let environments = host.environments.clone();
    let (w, h) = (settings.width, settings.height);
    let renderer = tokio::task::spawn_blocking(move || environments.renderer(w, h))
        .await
        .map_err(|e| internal(format!("renderer setup panicked: {e}")))?
        .map_err(|e| internal(format!("renderer setup failed: {e}")))?;
    let (pipeline, exit) = Pipeline::start(
        renderer,
        host.environments.default_name().to_owned(),
        settings.clone(),
        host.tap.clone(),
        host.metrics.clone(),
    )
    .map_err(|e| internal(format!("encoder setup failed: {e}")))?;
    Ok(BoundStream {
        pipeline: Arc::new(pipeline),
        settings,
        max_triangles: u64::MAX,
        max_upload_bytes: host.import_limits.max_file_bytes,
        session: None,
        exit: std::sync::Mutex::new(Some(exit)),
    })
}

/// Detaches the connection from its pipeline and session however the connection ends.
pub(super) struct DetachOnDrop {
    pub(super) stream: Arc<BoundStream>,
    pub(super) conn_id: u64,
    pub(super) sessions: Arc<crate::sessions::SessionManager>,
}

impl Drop for DetachOnDrop {
    fn drop(&mut self) {
        self.stream.pipeline.detach(self.conn_id);
        if let Some(s) = &self.stream.session {
            let (sessions, id, conn_id) = (self.sessions.clone(), s.id, self.conn_id);
            // The record write is a disk sync: keep it off the async worker.
            tokio::task::spawn_blocking(move || sessions.detach(id, conn_id));
        }
    }
}
