//! The host's sessions: the live state machines from `farview-session`, each with its own
//! pipeline (scene, renderer, encoder), the record store, and the lease clock's tick.
//!
//! Every operation runs under one short-lived lock; disk writes (the store) happen before the
//! caller answers, on the blocking pool (handlers call these methods through `spawn_blocking`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use farview_protocol::{ErrorCode, LeaseInfo, WireError};
use farview_render::{FrameRenderer, GpuContext, Lighting};
use farview_session::{
    AdmitError, Clock, ExtendError, RecordStore, Session, SessionRecord, Status, StopReason,
};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::{SessionsConfig, SizeConfig};
use crate::pipeline::{Pipeline, StreamSettings};
use crate::tap::FrameTap;

/// Body of `POST /v1/sessions` and `PUT /v1/sessions/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct CreateSession {
    pub(crate) max_lease_time: String,
    pub(crate) size: String,
    #[serde(default)]
    pub(crate) models: Vec<String>,
}

/// An HTTP-level failure: status, stable code, message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub(crate) status: u16,
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

/// How a session ended, as the connected device is told.
#[derive(Debug, Clone)]
pub(crate) struct Ended {
    pub(crate) code: ErrorCode,
    pub(crate) message: String,
}

/// What a device gets when it binds a session.
pub(crate) struct Bound {
    pub(crate) pipeline: Arc<Pipeline>,
    pub(crate) ended: CancellationToken,
    pub(crate) ended_why: Arc<Mutex<Option<Ended>>>,
    pub(crate) resume_secret: Option<String>,
    pub(crate) lease: LeaseInfo,
    pub(crate) settings: StreamSettings,
    pub(crate) max_triangles: u64,
    pub(crate) max_upload_bytes: u64,
}

struct Live {
    session: Session,
    token: String,
    request: CreateSession,
    size: SizeConfig,
    pipeline: Option<Arc<Pipeline>>,
    ended: CancellationToken,
    ended_why: Arc<Mutex<Option<Ended>>>,
}

pub(crate) struct SessionManager {
    live: Mutex<HashMap<Uuid, Live>>,
    store: RecordStore,
    clock: Arc<dyn Clock>,
    config: SessionsConfig,
    max_lease_ms: u64,
    stream_defaults: crate::config::StreamConfig,
    gpu: GpuContext,
    tap: Option<FrameTap>,
    assets_root: std::path::PathBuf,
    import_limits: farview_scene::ImportLimits,
    pub(crate) quic_addr: SocketAddr,
    pub(crate) fingerprint: String,
    /// The runtime the pipelines' sender tasks run on (session start-up runs on its own thread).
    runtime: tokio::runtime::Handle,
    /// Host-wide metrics the sessions' pipelines add to.
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
}

fn lease_info(s: &Session, now: u64) -> LeaseInfo {
    LeaseInfo {
        max_lease_ms: s.record().max_lease_ms,
        elapsed_ms: s.elapsed_ms(now),
        remaining_ms: s.remaining_ms(now),
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(500, "internal", e.to_string())
}

impl SessionManager {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn open(
        store_path: &std::path::Path,
        clock: Arc<dyn Clock>,
        config: SessionsConfig,
        stream_defaults: crate::config::StreamConfig,
        gpu: GpuContext,
        tap: Option<FrameTap>,
        assets_root: std::path::PathBuf,
        import_limits: farview_scene::ImportLimits,
        quic_addr: SocketAddr,
        fingerprint: String,
    ) -> Result<Self, farview_session::StoreError> {
        let store = RecordStore::open(store_path)?;
        let failed = store.fail_live("host restarted", clock.now_ms())?;
        if failed > 0 {
            tracing::warn!(
                sessions = failed,
                "sessions that were live when the host stopped are marked error"
            );
        }
        let max_lease_ms =
            farview_session::parse_lease(&config.max_lease, u64::MAX).unwrap_or(24 * 3600 * 1000);
        Ok(Self {
            live: Mutex::new(HashMap::new()),
            store,
            clock,
            config,
            max_lease_ms,
            stream_defaults,
            gpu,
            tap,
            assets_root,
            import_limits,
            quic_addr,
            fingerprint,
            runtime: tokio::runtime::Handle::current(),
            metrics: Arc::default(),
        })
    }

    /// Sessions per status: every status, zeros included, so the series never disappear.
    pub(crate) fn status_counts(&self) -> Vec<(&'static str, u64)> {
        let stored = self.store.count_by_status().unwrap_or_default();
        [
            Status::Starting,
            Status::Ready,
            Status::Connected,
            Status::Stopped,
            Status::Expired,
            Status::Error,
        ]
        .into_iter()
        .map(|st| {
            let n = stored
                .iter()
                .find(|(name, _)| name == st.as_str())
                .map_or(0, |(_, n)| *n);
            (st.as_str(), n)
        })
        .collect()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, HashMap<Uuid, Live>>, ApiError> {
        self.live
            .lock()
            .map_err(|_| ApiError::new(500, "internal", "session table lock poisoned"))
    }

    fn settings_for(&self, size: &SizeConfig) -> StreamSettings {
        StreamSettings {
            width: size.width,
            height: size.height,
            fps: size.fps,
            bitrate_bps: size.bitrate_bps,
            keyframe_interval_frames: (self.stream_defaults.keyframe_interval_s > 0.0).then(|| {
                (self.stream_defaults.keyframe_interval_s * size.fps)
                    .round()
                    .max(1.0) as u32
            }),
            max_frame_age: Duration::from_millis(self.stream_defaults.max_frame_age_ms),
            min_bitrate_bps: if size.min_bitrate_bps > 0 {
                size.min_bitrate_bps.min(size.bitrate_bps)
            } else {
                (size.bitrate_bps / 8).max(100_000)
            },
            skip_unchanged_frames: self.stream_defaults.skip_unchanged_frames,
            encoder_threads: self.stream_defaults.encoder_threads,
            encoder_max_slice_bytes: self.stream_defaults.encoder_max_slice_bytes,
            gpu_color_conversion: self
                .stream_defaults
                .color_conversion
                .on_gpu(self.gpu.info().device_type == farview_render::DeviceType::Cpu),
        }
    }

    /// The JSON view of a session. Live sessions carry their connection details, token included:
    /// the API key holder is the app's backend, which hands them to its device.
    pub(crate) fn view(&self, r: &SessionRecord, token: Option<&str>) -> serde_json::Value {
        let now = self.clock.now_ms();
        let end = r.stopped_at_ms.unwrap_or(now);
        let mut v = serde_json::json!({
            "id": r.id.to_string(),
            "status": r.status.as_str(),
            "size": r.size,
            "models": r.models,
            "createdAt": rfc3339(r.created_at_ms),
            "readyAt": r.ready_at_ms.map(rfc3339),
            "maxLeaseTime": farview_session::format_lease(r.max_lease_ms),
            "elapsedTime": farview_session::format_lease(end.saturating_sub(r.created_at_ms)),
            "stoppedAt": r.stopped_at_ms.map(rfc3339),
            "stopReason": r.stop_reason,
            "device": r.device,
            "counters": { "framesSent": r.frames_sent, "modelsLoaded": r.models_loaded },
        });
        if !r.status.is_final() {
            v["connection"] = serde_json::json!({
                "quicAddress": self.quic_addr.to_string(),
                "fingerprint": self.fingerprint,
            });
            if let Some(t) = token {
                v["connection"]["token"] = serde_json::Value::String(t.to_owned());
            }
        }
        v
    }

    fn refresh_counters(live: &mut Live) {
        if let Some(p) = &live.pipeline {
            let sent = p
                .shared
                .counters
                .sent
                .load(std::sync::atomic::Ordering::Relaxed);
            let models = p.shared.models.load(std::sync::atomic::Ordering::Relaxed);
            live.session.count(sent, models);
        }
    }

    /// Creates a session (or, with `id`, returns the existing one when the settings match).
    /// Returns the HTTP status (201 created, 200 existing) and the view with the token.
    pub(crate) fn create(
        self: &Arc<Self>,
        id: Option<Uuid>,
        req: CreateSession,
    ) -> Result<(u16, serde_json::Value), ApiError> {
        let lease_ms = farview_session::parse_lease(&req.max_lease_time, self.max_lease_ms)
            .map_err(|e| ApiError::new(422, "invalid_lease", e.to_string()))?;
        let size = self.config.sizes.get(&req.size).cloned().ok_or_else(|| {
            let names: Vec<&str> = self.config.sizes.keys().map(String::as_str).collect();
            ApiError::new(
                422,
                "invalid_size",
                format!(
                    "unknown size '{}'; this host offers {}",
                    req.size,
                    names.join(", ")
                ),
            )
        })?;
        if req.models.len() > 32 || req.models.iter().any(|m| m.is_empty() || m.len() > 1024) {
            return Err(ApiError::new(
                422,
                "invalid_models",
                "at most 32 models, each a path of 1 to 1024 bytes",
            ));
        }
        let now = self.clock.now_ms();
        let mut live = self.lock()?;
        if let Some(id) = id {
            if let Some(existing) = live.get(&id) {
                return if existing.request == req {
                    Ok((
                        200,
                        self.view(existing.session.record(), Some(&existing.token)),
                    ))
                } else {
                    Err(ApiError::new(
                        409,
                        "session_conflict",
                        format!("session {id} exists with different settings"),
                    ))
                };
            }
            if self.store.get(id).map_err(internal)?.is_some() {
                return Err(ApiError::new(
                    409,
                    "session_conflict",
                    format!("session {id} already existed and has ended"),
                ));
            }
        }
        let active = live
            .values()
            .filter(|l| !l.session.record().status.is_final())
            .count();
        if active >= self.config.max_sessions {
            return Err(ApiError::new(
                503,
                "at_capacity",
                format!(
                    "this host runs at most {} session(s) at once and all are in use",
                    self.config.max_sessions
                ),
            ));
        }
        let id = id.unwrap_or_else(Uuid::new_v4);
        let (session, token) = Session::new(id, &req.size, lease_ms, req.models.clone(), now);
        self.store.put(session.record()).map_err(internal)?;
        let view = self.view(session.record(), Some(&token));
        live.insert(
            id,
            Live {
                session,
                token,
                request: req.clone(),
                size: size.clone(),
                pipeline: None,
                ended: CancellationToken::new(),
                ended_why: Arc::default(),
            },
        );
        drop(live);
        tracing::info!(session = %id, size = %req.size, lease_ms, "session created");
        let this = self.clone();
        std::thread::Builder::new()
            .name("farview-session-start".into())
            .spawn(move || this.start(id, size, req.models))
            .map_err(internal)?;
        Ok((201, view))
    }

    /// Brings a session up: renderer, pipeline, models; then `ready` (or `error`).
    fn start(self: &Arc<Self>, id: Uuid, size: SizeConfig, models: Vec<String>) {
        let span = tracing::info_span!("session", %id);
        let _g = span.enter();
        let _rt = self.runtime.enter();
        let result = (|| -> Result<Pipeline, String> {
            let settings = self.settings_for(&size);
            let renderer =
                FrameRenderer::new(&self.gpu, size.width, size.height, Lighting::default())
                    .map_err(|e| format!("renderer: {e}"))?;
            let (pipeline, exit) =
                Pipeline::start(renderer, settings, self.tap.clone(), self.metrics.clone())
                    .map_err(|e| format!("encoder: {e}"))?;
            // A render or encode loop that fails later ends this session only, as `error`.
            let this = self.clone();
            self.runtime.spawn(async move {
                if let Ok(cause) = exit.await {
                    tracing::warn!(session = %id, %cause, "session pipeline failed");
                    if let Err(e) = this.stop(id, StopReason::Error(cause)) {
                        tracing::error!(error = %e.message, "cannot record a failed session");
                    }
                }
            });
            for path in &models {
                let model =
                    farview_scene::import_file(&self.assets_root, path, &self.import_limits)
                        .map_err(|e| format!("model {path}: {e}"))?;
                let triangles = model.triangle_count() as u64;
                if triangles > size.max_triangles {
                    return Err(format!(
                        "model {path}: {triangles} triangles exceed the size's budget of {}",
                        size.max_triangles
                    ));
                }
                let uploaded = pipeline
                    .uploader
                    .upload(&model)
                    .map_err(|e| format!("model {path}: GPU upload: {e}"))?;
                let (tx, rx) = tokio::sync::oneshot::channel();
                pipeline
                    .commands
                    .send(crate::pipeline::RenderCommand::AddModel {
                        seq: 0,
                        name: path.clone(),
                        key: Some(path.clone()),
                        model: Box::new(model),
                        uploaded: Some(uploaded),
                        max_triangles: size.max_triangles,
                        reply: tx,
                    })
                    .map_err(|_| "render loop stopped".to_string())?;
                rx.blocking_recv()
                    .map_err(|_| "render loop stopped".to_string())?
                    .map_err(|e| format!("model {path}: {e}"))?;
            }
            Ok(pipeline)
        })();
        let now = self.clock.now_ms();
        let Ok(mut live) = self.live.lock() else {
            return;
        };
        let Some(entry) = live.get_mut(&id) else {
            return;
        };
        match result {
            Ok(pipeline) if !entry.session.record().status.is_final() => {
                entry.pipeline = Some(Arc::new(pipeline));
                entry.session.mark_ready(now);
                Self::refresh_counters(entry);
                tracing::info!(
                    ms = now.saturating_sub(entry.session.record().created_at_ms),
                    "session ready"
                );
            }
            Ok(_) => {}
            Err(cause) => {
                tracing::warn!(%cause, "session failed to start");
                entry.session.stop(StopReason::Error(cause), now);
            }
        }
        let record = entry.session.record().clone();
        let remove = record.status.is_final();
        if remove {
            live.remove(&id);
        }
        drop(live);
        if let Err(e) = self.store.put(&record) {
            tracing::error!(error = %e, "cannot write session record");
        }
    }

    /// A session's view: live ones from memory, ended ones from the store.
    pub(crate) fn get(&self, id: Uuid) -> Result<serde_json::Value, ApiError> {
        let mut live = self.lock()?;
        if let Some(entry) = live.get_mut(&id) {
            Self::refresh_counters(entry);
            return Ok(self.view(entry.session.record(), Some(&entry.token)));
        }
        drop(live);
        match self.store.get(id).map_err(internal)? {
            Some(r) => Ok(self.view(&r, None)),
            None => Err(not_found(id)),
        }
    }

    /// Live sessions, or every retained record.
    pub(crate) fn list(&self, include_ended: bool) -> Result<serde_json::Value, ApiError> {
        let records = self.store.list(include_ended).map_err(internal)?;
        let mut live = self.lock()?;
        let views: Vec<serde_json::Value> = records
            .iter()
            .map(|r| match live.get_mut(&r.id) {
                Some(entry) => {
                    Self::refresh_counters(entry);
                    self.view(entry.session.record(), Some(&entry.token))
                }
                None => self.view(r, None),
            })
            .collect();
        Ok(serde_json::json!({ "sessions": views }))
    }

    /// Sets a live session's lease.
    pub(crate) fn set_lease(
        &self,
        id: Uuid,
        max_lease_ms: u64,
    ) -> Result<(serde_json::Value, LeaseInfo), ApiError> {
        if max_lease_ms > self.max_lease_ms || max_lease_ms == 0 {
            return Err(ApiError::new(
                422,
                "invalid_lease",
                format!(
                    "lease {} is outside the allowed range 0:0:1 to {}",
                    farview_session::format_lease(max_lease_ms),
                    farview_session::format_lease(self.max_lease_ms)
                ),
            ));
        }
        let now = self.clock.now_ms();
        let mut live = self.lock()?;
        let Some(entry) = live.get_mut(&id) else {
            drop(live);
            return match self.store.get(id).map_err(internal)? {
                Some(r) => Err(ApiError::new(
                    409,
                    "session_ended",
                    format!("session has ended ({})", r.status.as_str()),
                )),
                None => Err(not_found(id)),
            };
        };
        match entry.session.set_lease(max_lease_ms, now) {
            Ok(()) => {}
            Err(ExtendError::BelowElapsed { elapsed_ms }) => {
                return Err(ApiError::new(
                    422,
                    "invalid_lease",
                    format!(
                        "lease cannot be shorter than the {} already used",
                        farview_session::format_lease(elapsed_ms)
                    ),
                ));
            }
            Err(e) => return Err(ApiError::new(409, "session_ended", e.to_string())),
        }
        let record = entry.session.record().clone();
        let info = lease_info(&entry.session, now);
        let token = entry.token.clone();
        drop(live);
        self.store.put(&record).map_err(internal)?;
        Ok((self.view(&record, Some(&token)), info))
    }

    /// Stops a session (idempotent); the connected device is told why.
    pub(crate) fn stop(&self, id: Uuid, reason: StopReason) -> Result<serde_json::Value, ApiError> {
        let now = self.clock.now_ms();
        let mut live = self.lock()?;
        let Some(mut entry) = live.remove(&id) else {
            drop(live);
            return match self.store.get(id).map_err(internal)? {
                Some(r) => Ok(self.view(&r, None)),
                None => Err(not_found(id)),
            };
        };
        drop(live);
        Self::refresh_counters(&mut entry);
        entry.session.stop(reason, now);
        self.end(entry)
    }

    /// Final bookkeeping for a session that just ended: tell its device, free its pipeline.
    fn end(&self, entry: Live) -> Result<serde_json::Value, ApiError> {
        let record = entry.session.record().clone();
        let (code, message) = match record.status {
            Status::Expired => (ErrorCode::LEASE_EXPIRED, "lease expired".to_owned()),
            Status::Stopped => (ErrorCode::SESSION_STOPPED, "session stopped".to_owned()),
            _ => (
                ErrorCode::SESSION_ENDED,
                record.stop_reason.clone().unwrap_or_default(),
            ),
        };
        if let Ok(mut why) = entry.ended_why.lock() {
            *why = Some(Ended { code, message });
        }
        entry.ended.cancel();
        // Dropping the last handle to the pipeline stops its threads and frees the renderer's GPU
        // memory and the encoder (the device's connection task drops its handle as it closes).
        drop(entry.pipeline);
        tracing::info!(session = %record.id, status = record.status.as_str(), "session ended");
        self.store.put(&record).map_err(internal)?;
        Ok(self.view(&record, None))
    }

    /// Applies the lease clock to every live session and purges old records.
    pub(crate) fn tick(&self) {
        let now = self.clock.now_ms();
        let expired: Vec<Live> = match self.live.lock() {
            Ok(mut live) => {
                let ids: Vec<Uuid> = live
                    .iter_mut()
                    .filter_map(|(id, e)| e.session.poll(now).map(|_| *id))
                    .collect();
                ids.iter().filter_map(|id| live.remove(id)).collect()
            }
            Err(_) => return,
        };
        for mut entry in expired {
            Self::refresh_counters(&mut entry);
            if let Err(e) = self.end(entry) {
                tracing::error!(error = %e.message, "cannot record an expired session");
            }
        }
    }

    /// Deletes records past retention.
    pub(crate) fn purge(&self) {
        let cutoff = self
            .clock
            .now_ms()
            .saturating_sub(u64::from(self.config.retention_days) * 24 * 3600 * 1000);
        match self.store.purge_ended_before(cutoff) {
            Ok(0) => {}
            Ok(n) => tracing::info!(records = n, "purged session records past retention"),
            Err(e) => tracing::error!(error = %e, "cannot purge session records"),
        }
    }

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
        let mut live = self
            .live
            .lock()
            .map_err(|_| WireError::new(ErrorCode::INTERNAL, "session table lock poisoned"))?;
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
                Err(e) => WireError::new(ErrorCode::INTERNAL, e.to_string()),
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
        let pipeline = entry.pipeline.clone().ok_or_else(|| {
            WireError::new(ErrorCode::SESSION_NOT_READY, "session is not ready yet")
        })?;
        let bound = Bound {
            pipeline,
            ended: entry.ended.clone(),
            ended_why: entry.ended_why.clone(),
            resume_secret: admission.resume_secret,
            lease: lease_info(&entry.session, now),
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
                Self::refresh_counters(e);
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
        let live = self
            .live
            .lock()
            .map_err(|_| WireError::new(ErrorCode::INTERNAL, "lock poisoned"))?;
        live.get(&id)
            .map(|e| lease_info(&e.session, now))
            .ok_or_else(|| WireError::new(ErrorCode::SESSION_ENDED, "session has ended"))
    }

    /// Number of sessions in memory (live).
    pub(crate) fn live_count(&self) -> usize {
        self.live.lock().map_or(0, |l| l.len())
    }
}

fn not_found(id: Uuid) -> ApiError {
    ApiError::new(
        404,
        "session_not_found",
        format!("no session {id} (records are kept for the retention period)"),
    )
}

/// RFC 3339 UTC timestamp with milliseconds, from ms since the Unix epoch.
pub(crate) fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_format_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_586_400_123), "2026-11-25T06:00:00.123Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
