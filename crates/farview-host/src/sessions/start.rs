//! Creating a session and bringing it up: renderer, pipeline, models; then `ready` (or
//! `error`). Start-up runs on a thread of its own, so `create` answers at once with `starting`.

use std::sync::Arc;

use farview_session::{Session, StopReason};
use uuid::Uuid;

use super::{Conflict, CreateSession, Created, Live, SessionError, SessionManager};
use crate::config::SizeConfig;
use crate::pipeline::Pipeline;

/// Most models a session may preload, and the longest path of one.
const MAX_MODELS: usize = 32;
const MAX_MODEL_PATH_BYTES: usize = 1024;

impl SessionManager {
    /// Creates a session (or, with `id`, returns the existing one when the settings match).
    pub(crate) fn create(
        self: &Arc<Self>,
        id: Option<Uuid>,
        req: CreateSession,
    ) -> Result<Created, SessionError> {
        let lease_ms = self.parse_lease(&req.max_lease_time)?;
        // Sizes match without regard to case ("Standard" is "standard").
        let (size_name, size) = self
            .config
            .sizes
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(&req.size))
            .map(|(name, size)| (name.clone(), size.clone()))
            .ok_or_else(|| SessionError::InvalidSize {
                requested: req.size.clone(),
                offered: self.config.sizes.keys().cloned().collect(),
            })?;
        // The configured spelling from here on (records, and a PUT's comparison with the
        // session it finds).
        let req = CreateSession {
            size: size_name.clone(),
            ..req
        };
        if req.models.len() > MAX_MODELS
            || req
                .models
                .iter()
                .any(|m| m.is_empty() || m.len() > MAX_MODEL_PATH_BYTES)
        {
            return Err(SessionError::InvalidModels {
                max_models: MAX_MODELS,
                max_path_bytes: MAX_MODEL_PATH_BYTES,
            });
        }
        let now = self.clock.now_ms();
        let mut live = self.lock()?;
        if let Some(id) = id {
            if let Some(existing) = live.get(&id) {
                return if existing.request == req {
                    Ok(Created {
                        session: existing.snapshot(now),
                        new: false,
                    })
                } else {
                    Err(SessionError::Conflict {
                        id,
                        reason: Conflict::DifferentSettings,
                    })
                };
            }
            if self.store.get(id)?.is_some() {
                return Err(SessionError::Conflict {
                    id,
                    reason: Conflict::Ended,
                });
            }
        }
        let active = live
            .values()
            .filter(|l| !l.session.record().status.is_final())
            .count();
        if active >= self.config.max_sessions {
            return Err(SessionError::AtCapacity {
                max: self.config.max_sessions,
            });
        }
        let id = id.unwrap_or_else(Uuid::new_v4);
        let (session, token) = Session::new(id, &size_name, lease_ms, req.models.clone(), now);
        self.store.put(session.record())?;
        let entry = Live::new(session, token, req.clone(), size.clone());
        let created = entry.snapshot(now);
        live.insert(id, entry);
        drop(live);
        tracing::info!(session = %id, size = %size_name, lease_ms, "session created");
        let this = self.clone();
        std::thread::Builder::new()
            .name("farview-session-start".into())
            .spawn(move || this.start(id, size, req.models))
            .map_err(|e| SessionError::Internal(format!("cannot start a session thread: {e}")))?;
        Ok(Created {
            session: created,
            new: true,
        })
    }

    /// Brings a session up: renderer, pipeline, models; then `ready` (or `error`).
    fn start(self: &Arc<Self>, id: Uuid, size: SizeConfig, models: Vec<String>) {
        let span = tracing::info_span!("session", %id);
        let _g = span.enter();
        let _rt = self.runtime.enter();
        let result = self.bring_up(id, &size, &models);
        let now = self.clock.now_ms();
        let Ok(mut live) = self.live.lock() else {
            return;
        };
        let Some(entry) = live.get_mut(&id) else {
            // Stopped while starting: the pipeline (if any) is dropped here.
            drop(live);
            self.trim_soon();
            return;
        };
        match result {
            Ok(pipeline) if !entry.session.record().status.is_final() => {
                entry.ready(pipeline, now);
                tracing::info!(
                    ms = now.saturating_sub(entry.session.record().created_at_ms),
                    "session ready"
                );
            }
            Ok(_) => self.trim_soon(),
            Err(cause) => {
                tracing::warn!(%cause, "session failed to start");
                entry.session.stop(StopReason::Error(cause), now);
                self.trim_soon();
            }
        }
        let record = entry.session.record().clone();
        if record.status.is_final() {
            live.remove(&id);
        }
        drop(live);
        if let Err(e) = self.store.put(&record) {
            tracing::error!(error = %e, "cannot write session record");
        }
    }

    /// The renderer and pipeline of a session, with its models loaded into the scene.
    fn bring_up(
        self: &Arc<Self>,
        id: Uuid,
        size: &SizeConfig,
        models: &[String],
    ) -> Result<Arc<Pipeline>, String> {
        let settings = self.settings_for(size);
        let renderer = self
            .environments
            .renderer(size.width, size.height)
            .map_err(|e| format!("renderer: {e}"))?;
        let (pipeline, exit) = Pipeline::start(
            renderer,
            self.environments.default_name().to_owned(),
            settings,
            self.tap.clone(),
            self.metrics.clone(),
        )
        .map_err(|e| format!("encoder: {e}"))?;
        // A render or encode loop that fails later ends this session only, as `error`.
        let this = self.clone();
        self.runtime.spawn(async move {
            if let Ok(cause) = exit.await {
                tracing::warn!(session = %id, %cause, "session pipeline failed");
                if let Err(e) = this.stop(id, StopReason::Error(cause)) {
                    tracing::error!(error = %e, "cannot record a failed session");
                }
            }
        });
        // The same load job a device's LoadModel runs: import and GPU upload off the render
        // thread, the triangle budget checked where the scene is, assets shared by path.
        let pipeline = Arc::new(pipeline);
        for path in models {
            let job = crate::loads::LoadJob {
                seq: 0,
                source: crate::control::LoadSource::Path(path.clone()),
                pipeline: pipeline.clone(),
                max_triangles: size.max_triangles,
                assets_root: self.assets_root.clone(),
                limits: self.import_limits.clone(),
                uploads: None,
                cancel: Arc::default(),
                progress: None,
            };
            self.runtime
                .block_on(job.run())
                .map_err(|e| format!("model {path}: {}", e.message))?;
        }
        Ok(pipeline)
    }
}
