//! The host's sessions: the live state machines from `farview-session`, each with its own
//! pipeline (scene, renderer, encoder), the record store, and the lease clock's tick.
//!
//! Every operation runs under one short-lived lock; disk writes (the store) happen before the
//! caller answers, on the blocking pool (handlers call these methods through `spawn_blocking`).
//! Operations return domain data ([`Snapshot`], [`LeaseInfo`]) or a [`SessionError`]; the HTTP
//! views and status codes live in `http.rs`, the device's error codes in [`SessionError::wire`].
//!
//! - `start`: creating a session and bringing it up (renderer, pipeline, models);
//! - `device`: binding a device's connection to its session, and its lease requests;
//! - `live`: one live session's entry, with its counters;
//! - `error`: [`SessionError`].

mod device;
mod error;
mod live;
mod start;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use farview_protocol::{ErrorCode, LeaseInfo};
use farview_render::GpuContext;
use farview_session::{Clock, ExtendError, RecordStore, SessionRecord, Status, StopReason};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub(crate) use self::error::{Conflict, OpenError, SessionError};
use self::live::Live;
use crate::alloc::TrimSchedule;
use crate::config::{SessionsConfig, SizeConfig};
use crate::pipeline::{Pipeline, StreamSettings};
use crate::tap::FrameTap;

/// A session request (the HTTP API's body, with the lease as `h:m:s`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct CreateSession {
    pub(crate) max_lease_time: String,
    pub(crate) size: String,
    #[serde(default)]
    pub(crate) models: Vec<String>,
}

/// A session as of `as_of_ms`: its record and, while it is live, the token its device connects
/// with (the API key holder is the app's backend, which hands it to its device).
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub(crate) record: SessionRecord,
    pub(crate) token: Option<String>,
    pub(crate) as_of_ms: u64,
}

/// What a create did.
#[derive(Debug)]
pub(crate) struct Created {
    pub(crate) session: Snapshot,
    /// False when a `PUT` found the session already there with the same settings.
    pub(crate) new: bool,
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

/// After a session ends, its threads have exited and freed their buffers within this long; the
/// heap is trimmed then, at most once per [`TRIM_MIN_INTERVAL`].
const TRIM_DELAY: Duration = Duration::from_secs(2);
const TRIM_MIN_INTERVAL: Duration = Duration::from_secs(10);

pub(crate) struct SessionManager {
    live: Mutex<HashMap<Uuid, Live>>,
    store: RecordStore,
    clock: Arc<dyn Clock>,
    config: SessionsConfig,
    max_lease_ms: u64,
    stream_defaults: crate::config::StreamConfig,
    gpu: GpuContext,
    /// Makes the sessions' renderers with the configured look and quality.
    environments: Arc<crate::look::Environments>,
    tap: Option<FrameTap>,
    assets_root: std::path::PathBuf,
    import_limits: farview_scene::ImportLimits,
    pub(crate) quic_addr: SocketAddr,
    pub(crate) fingerprint: String,
    /// The runtime the pipelines' sender tasks run on (session start-up runs on its own thread).
    runtime: tokio::runtime::Handle,
    /// Host-wide metrics the sessions' pipelines add to.
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
    /// When to give the memory of ended sessions back to the OS.
    trim: Mutex<TrimSchedule>,
}

impl SessionManager {
    /// Opens the record store; sessions that were live when the host last stopped are marked
    /// `error`, as of the last time it was known alive.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn open(
        store_path: &std::path::Path,
        clock: Arc<dyn Clock>,
        config: SessionsConfig,
        stream_defaults: crate::config::StreamConfig,
        gpu: GpuContext,
        environments: Arc<crate::look::Environments>,
        tap: Option<FrameTap>,
        assets_root: std::path::PathBuf,
        import_limits: farview_scene::ImportLimits,
        quic_addr: SocketAddr,
        fingerprint: String,
    ) -> Result<Self, OpenError> {
        // Any valid lease may be configured as the maximum; requests are checked against it.
        let max_lease_ms = farview_session::parse_lease(&config.max_lease, u64::MAX)
            .map_err(OpenError::MaxLease)?;
        let store = RecordStore::open(store_path)?;
        let now = clock.now_ms();
        let failed = store.fail_live("host restarted", now)?;
        if failed > 0 {
            tracing::warn!(
                sessions = failed,
                "sessions that were live when the host stopped are marked error"
            );
        }
        store.checkpoint([], now)?;
        Ok(Self {
            live: Mutex::new(HashMap::new()),
            store,
            clock,
            config,
            max_lease_ms,
            stream_defaults,
            gpu,
            environments,
            tap,
            assets_root,
            import_limits,
            quic_addr,
            fingerprint,
            runtime: tokio::runtime::Handle::current(),
            metrics: Arc::default(),
            trim: Mutex::new(TrimSchedule::new(TRIM_DELAY, TRIM_MIN_INTERVAL)),
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

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, HashMap<Uuid, Live>>, SessionError> {
        self.live
            .lock()
            .map_err(|_| SessionError::Internal("session table lock poisoned".into()))
    }

    fn settings_for(&self, size: &SizeConfig) -> StreamSettings {
        StreamSettings::resolve(
            &self.stream_defaults,
            Some(size),
            self.gpu.info().device_type == farview_render::DeviceType::Cpu,
        )
    }

    fn stored(&self, r: SessionRecord) -> Snapshot {
        Snapshot {
            record: r,
            token: None,
            as_of_ms: self.clock.now_ms(),
        }
    }

    /// Parses an `h:m:s` lease and checks it against `sessions.max_lease`.
    pub(crate) fn parse_lease(&self, text: &str) -> Result<u64, SessionError> {
        Ok(farview_session::parse_lease(text, self.max_lease_ms)?)
    }

    /// A session: live ones from memory, ended ones from the store.
    pub(crate) fn get(&self, id: Uuid) -> Result<Snapshot, SessionError> {
        let now = self.clock.now_ms();
        let mut live = self.lock()?;
        if let Some(entry) = live.get_mut(&id) {
            entry.refresh();
            return Ok(entry.snapshot(now));
        }
        drop(live);
        match self.store.get(id)? {
            Some(r) => Ok(self.stored(r)),
            None => Err(SessionError::NotFound(id)),
        }
    }

    /// Live sessions, or every retained record, oldest first.
    pub(crate) fn list(&self, include_ended: bool) -> Result<Vec<Snapshot>, SessionError> {
        let records = self.store.list(include_ended)?;
        let now = self.clock.now_ms();
        let mut live = self.lock()?;
        Ok(records
            .into_iter()
            .map(|r| match live.get_mut(&r.id) {
                Some(entry) => {
                    entry.refresh();
                    entry.snapshot(now)
                }
                None => Snapshot {
                    record: r,
                    token: None,
                    as_of_ms: now,
                },
            })
            .collect())
    }

    /// Sets a live session's lease (from the API or its device).
    pub(crate) fn set_lease(
        &self,
        id: Uuid,
        max_lease_ms: u64,
    ) -> Result<(Snapshot, LeaseInfo), SessionError> {
        farview_session::check_lease(max_lease_ms, self.max_lease_ms)?;
        let now = self.clock.now_ms();
        let mut live = self.lock()?;
        let Some(entry) = live.get_mut(&id) else {
            drop(live);
            return match self.store.get(id)? {
                Some(r) => Err(SessionError::Ended { status: r.status }),
                None => Err(SessionError::NotFound(id)),
            };
        };
        match entry.session.set_lease(max_lease_ms, now) {
            Ok(()) => {}
            Err(ExtendError::BelowElapsed { elapsed_ms }) => {
                return Err(SessionError::LeaseBelowElapsed { elapsed_ms });
            }
            Err(_) => {
                return Err(SessionError::Ended {
                    status: entry.session.record().status,
                });
            }
        }
        let snapshot = entry.snapshot(now);
        let info = entry.lease_info(now);
        drop(live);
        self.store.put(&snapshot.record)?;
        Ok((snapshot, info))
    }

    /// Stops a session (idempotent); the connected device is told why.
    pub(crate) fn stop(&self, id: Uuid, reason: StopReason) -> Result<Snapshot, SessionError> {
        let now = self.clock.now_ms();
        let mut live = self.lock()?;
        let Some(mut entry) = live.remove(&id) else {
            drop(live);
            return match self.store.get(id)? {
                Some(r) => Ok(self.stored(r)),
                None => Err(SessionError::NotFound(id)),
            };
        };
        drop(live);
        entry.refresh();
        entry.session.stop(reason, now);
        self.end(entry)
    }

    /// Final bookkeeping for a session that just ended: tell its device, free its pipeline.
    fn end(&self, entry: Live) -> Result<Snapshot, SessionError> {
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
        drop(entry);
        self.trim_soon();
        tracing::info!(session = %record.id, status = record.status.as_str(), "session ended");
        self.store.put(&record)?;
        Ok(self.stored(record))
    }

    /// A session's pipeline is going away: give the memory back to the OS once it has.
    fn trim_soon(&self) {
        if let Ok(mut t) = self.trim.lock() {
            t.session_ended(Instant::now());
        }
    }

    /// Applies the lease clock to every live session; trims the heap when due.
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
            entry.refresh();
            if let Err(e) = self.end(entry) {
                tracing::error!(error = %e, "cannot record an expired session");
            }
        }
        let due = self.trim.lock().is_ok_and(|mut t| t.poll(Instant::now()));
        if due {
            let t0 = Instant::now();
            let released = crate::alloc::release_free_memory();
            tracing::debug!(
                released,
                ms = t0.elapsed().as_millis() as u64,
                "heap trimmed"
            );
        }
    }

    /// Records that the host is alive, with the counters of live sessions that changed since the
    /// last checkpoint (one transaction): after a crash, their records keep those counters and
    /// end at that time.
    pub(crate) fn checkpoint(&self) {
        let changed: Vec<SessionRecord> = match self.live.lock() {
            Ok(mut live) => live.values_mut().filter_map(Live::take_unchecked).collect(),
            Err(_) => return,
        };
        if let Err(e) = self.store.checkpoint(&changed, self.clock.now_ms()) {
            tracing::error!(error = %e, "cannot checkpoint the sessions' counters");
            if let Ok(mut live) = self.live.lock() {
                for r in &changed {
                    if let Some(entry) = live.get_mut(&r.id) {
                        entry.checkpoint_failed();
                    }
                }
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

    /// Number of sessions in memory (live).
    pub(crate) fn live_count(&self) -> usize {
        self.live.lock().map_or(0, |l| l.len())
    }

    /// The oldest last turn of the live sessions' render loops (µs since the Unix epoch), or
    /// `None` when no session has a running pipeline.
    pub(crate) fn oldest_render_beat_us(&self) -> Option<u64> {
        let live = self.live.lock().ok()?;
        live.values()
            .filter_map(|l| l.pipeline.as_ref())
            .map(|p| p.beat_us())
            .filter(|&b| b > 0)
            .min()
    }

    /// Holds every live render loop still for `d`, as a hung driver call would: tests of the
    /// health reporting. Returns how many loops were told.
    pub(crate) fn stall_render_loops(&self, d: Duration) -> usize {
        let Ok(live) = self.live.lock() else {
            return 0;
        };
        live.values()
            .filter_map(|l| l.pipeline.as_ref())
            .filter(|p| p.command(crate::pipeline::RenderCommand::Stall(d)).is_ok())
            .count()
    }
}
