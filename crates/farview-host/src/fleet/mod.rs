//! The host as an Agones game server (`[agones] enabled`): it connects to the SDK sidecar of
//! its pod, describes itself (labels and annotations), reports Ready once the GPU, an encoder
//! and the listeners are up, pings health while its render loops turn, creates the session an
//! allocation asks for, and calls Shutdown when that session has ended and the host is
//! drained, so the fleet replaces it with a fresh one.
//!
//! The decisions live in [`state::FleetState`] (no I/O); this module is its driver over the
//! `agones` crate. Session records stay in each host's SQLite file: a fleet-wide record store
//! (Postgres behind the same `RecordStore` seam) would take over where records must outlive a
//! pod (see docs/fleet.md).

mod state;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use self::state::{Action, FleetState, HostFacts, Observed};
use crate::HostContext;
use crate::config::AgonesConfig;

/// How long the host waits for the SDK sidecar at start.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause before watching the game server again after the watch stream broke.
const REWATCH_DELAY: Duration = Duration::from_secs(1);

/// Why the host could not join its fleet.
#[derive(Debug, thiserror::Error)]
#[error("Agones SDK: {0}")]
pub struct FleetError(String);

impl FleetError {
    pub(crate) fn new(message: String) -> Self {
        Self(message)
    }
}

/// A connected SDK, and where the game server is reached.
pub(crate) struct Fleet {
    sdk: agones::Sdk,
    config: AgonesConfig,
    /// Node address with the host ports Agones mapped, when the game server says.
    quic_address: Option<String>,
    http_address: Option<String>,
}

impl Fleet {
    /// Connects to the sidecar and reads the game server's address and ports.
    pub(crate) async fn connect(config: &AgonesConfig) -> Result<Self, FleetError> {
        let mut sdk =
            tokio::time::timeout(CONNECT_TIMEOUT, agones::Sdk::new(config.sdk_port, None))
                .await
                .map_err(|_| {
                    FleetError(format!("no SDK server answered within {CONNECT_TIMEOUT:?}"))
                })?
                .map_err(|e| FleetError(format!("cannot connect: {e}")))?;
        let gs = sdk
            .get_gameserver()
            .await
            .map_err(|e| FleetError(format!("cannot read the game server: {e}")))?;
        let status = gs.status.unwrap_or_default();
        let port = |name: &str| {
            status
                .ports
                .iter()
                .find(|p| p.name == name)
                .filter(|_| !status.address.is_empty())
                .map(|p| format!("{}:{}", status.address, p.port))
        };
        let name = gs.object_meta.map(|m| m.name).unwrap_or_default();
        tracing::info!(game_server = %name, address = %status.address, "connected to the Agones SDK");
        Ok(Self {
            quic_address: port("quic"),
            http_address: port("http"),
            sdk,
            config: config.clone(),
        })
    }

    /// The node address and host port Agones mapped the QUIC port to, when it says.
    pub(crate) fn quic_address(&self) -> Option<String> {
        self.quic_address.clone()
    }

    /// Runs until `shutdown`: Ready now, then health, allocations and the end.
    pub(crate) fn spawn(
        self,
        ctx: Arc<HostContext>,
        quic_addr: std::net::SocketAddr,
        http_addr: std::net::SocketAddr,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let facts = HostFacts {
            gpu: ctx.gpu.info().name.clone(),
            capacity: ctx.config.sessions.max_sessions,
            quic_address: self
                .quic_address
                .clone()
                .or_else(|| ctx.config.public_address.clone())
                .unwrap_or_else(|| quic_addr.to_string()),
            http_address: self
                .http_address
                .clone()
                .unwrap_or_else(|| http_addr.to_string()),
            fingerprint: ctx.fingerprint.clone(),
        };
        tokio::spawn(self.run(ctx, facts, shutdown))
    }

    async fn run(mut self, ctx: Arc<HostContext>, facts: HostFacts, shutdown: CancellationToken) {
        let mut state = FleetState::new(
            Duration::from_millis(self.config.health_interval_ms),
            Duration::from_millis(self.config.stall_after_ms),
        );
        state.on_started(&facts);
        let mut health = self.sdk.health_check();
        let mut watch = None;
        // Calls that failed (the sidecar restarting, say), tried again at the next tick: all
        // of them are idempotent.
        let mut retry: Vec<Action> = Vec::new();
        let mut tick = tokio::time::interval(
            Duration::from_millis(self.config.health_interval_ms / 4)
                .max(Duration::from_millis(50)),
        );
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            while let Some(action) = state.poll() {
                if let Some(failed) = self.apply(action, &ctx, &mut health, &mut state).await {
                    retry.push(failed);
                }
            }
            if watch.is_none() {
                match self.sdk.watch_gameserver().await {
                    Ok(w) => watch = Some(w),
                    Err(e) => tracing::warn!(error = %e, "cannot watch the game server; retrying"),
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {
                    for action in std::mem::take(&mut retry) {
                        if let Some(failed) = self.apply(action, &ctx, &mut health, &mut state).await {
                            retry.push(failed);
                        }
                    }
                    let seen = observe(&ctx, state.allocated_session()).await;
                    state.on_tick(Instant::now(), seen);
                }
                message = next(&mut watch) => match message {
                    Some(gs) => {
                        let meta = gs.object_meta.unwrap_or_default();
                        let annotations: BTreeMap<String, String> =
                            meta.annotations.into_iter().collect();
                        let st = gs.status.map(|s| s.state).unwrap_or_default();
                        state.on_game_server(&st, &annotations);
                    }
                    None => {
                        watch = None;
                        tokio::time::sleep(REWATCH_DELAY).await;
                    }
                },
            }
        }
    }

    /// Carries out one action; the action again when it failed and is worth retrying.
    async fn apply(
        &mut self,
        action: Action,
        ctx: &Arc<HostContext>,
        health: &mut tokio::sync::mpsc::Sender<()>,
        state: &mut FleetState,
    ) -> Option<Action> {
        let again = action.clone();
        let result = match action {
            Action::SetLabel(key, value) => self.sdk.set_label(key, value).await,
            Action::SetAnnotation(key, value) => self.sdk.set_annotation(key, value).await,
            Action::Ready => {
                let r = self.sdk.ready().await;
                if r.is_ok() {
                    tracing::info!("Agones: ready for allocation");
                }
                r
            }
            Action::Health => {
                match health.try_send(()) {
                    // Full: the SDK stream is behind; the next ping goes through.
                    Ok(()) | Err(tokio::sync::mpsc::error::TrySendError::Full(())) => {}
                    // The health stream ended (the sidecar went away and came back): a new one.
                    Err(tokio::sync::mpsc::error::TrySendError::Closed(())) => {
                        tracing::warn!("Agones health stream closed; opening a new one");
                        *health = self.sdk.health_check();
                        let _ = health.try_send(());
                    }
                }
                return None;
            }
            Action::CreateSession { id, request } => {
                let sessions = ctx.sessions.clone();
                let created =
                    tokio::task::spawn_blocking(move || sessions.create(Some(id), request)).await;
                match created {
                    Ok(Ok(c)) => {
                        tracing::info!(session = %id, new = c.new, "Agones: session created for the allocation");
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(session = %id, error = %e, "Agones: the allocation's session was refused");
                        state.on_session_refused(e.to_string());
                    }
                    Err(e) => state.on_session_refused(format!("session start panicked: {e}")),
                }
                return None;
            }
            Action::Shutdown => {
                tracing::info!("Agones: shutting down, the fleet replaces this host");
                self.sdk.shutdown().await
            }
        };
        match result {
            Ok(()) => None,
            Err(e) => {
                tracing::warn!(error = %e, action = ?again, "Agones SDK call failed; retrying");
                Some(again)
            }
        }
    }
}

/// The next game server update, or `None` when the stream ended or broke (or there is none).
async fn next(
    watch: &mut Option<tonic::Streaming<agones::GameServer>>,
) -> Option<agones::GameServer> {
    match watch {
        Some(w) => w.message().await.ok().flatten(),
        None => std::future::pending().await,
    }
}

/// What the state machine needs at a tick, read off the session manager.
async fn observe(ctx: &Arc<HostContext>, session: Option<uuid::Uuid>) -> Observed {
    let sessions = ctx.sessions.clone();
    tokio::task::spawn_blocking(move || {
        let now = crate::time::now_us();
        Observed {
            oldest_beat_age: sessions
                .oldest_render_beat_us()
                .map(|b| Duration::from_micros(now.saturating_sub(b))),
            live_sessions: sessions.live_count(),
            session_ended: session.map(|id| {
                sessions
                    .get(id)
                    .map_or(true, |s| s.record.status.is_final())
            }),
        }
    })
    .await
    .unwrap_or(Observed {
        oldest_beat_age: None,
        live_sessions: 0,
        session_ended: None,
    })
}
