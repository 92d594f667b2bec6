//! The host's side of Agones as a plain state machine: events in (started, the game server as
//! the SDK reports it, a periodic tick with what the host sees), actions out (labels, Ready,
//! health pings, the session an allocation asks for, Shutdown). No I/O here; `fleet/mod.rs`
//! drives it with the `agones` crate, and its tests drive it on virtual time.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::sessions::CreateSession;

/// Allocation annotations a caller (the SDK's allocation client) sets on the game server.
pub(crate) const SESSION_ID: &str = "farview.dev/session-id";
pub(crate) const LEASE_MINUTES: &str = "farview.dev/lease-minutes";
pub(crate) const SIZE: &str = "farview.dev/size";
pub(crate) const MODELS: &str = "farview.dev/models";

/// Keys the host sets through the SDK (Agones prefixes them with `agones.dev/sdk-`).
pub(crate) const LABEL_GPU: &str = "farview-gpu";
pub(crate) const LABEL_CAPACITY: &str = "farview-capacity";
pub(crate) const NOTE_QUIC: &str = "farview-quic-address";
pub(crate) const NOTE_HTTP: &str = "farview-http-address";
pub(crate) const NOTE_FINGERPRINT: &str = "farview-fingerprint";
pub(crate) const NOTE_SESSION: &str = "farview-session-id";
pub(crate) const NOTE_ERROR: &str = "farview-allocation-error";

/// Longest lease an allocation may ask for, in minutes (the host's own maximum applies too).
const MAX_LEASE_MINUTES: u64 = 7 * 24 * 60;
/// Most models an allocation may name (the session API's own limit applies too).
const MAX_MODELS: usize = 32;
/// An allocated host with no live session this long is given back to the fleet.
const ALLOCATED_IDLE: Duration = Duration::from_secs(5 * 60);
/// Longest annotation value read.
const MAX_VALUE_BYTES: usize = 8 * 1024;

/// What the host tells the fleet about itself once it is up.
#[derive(Debug, Clone)]
pub(crate) struct HostFacts {
    pub(crate) gpu: String,
    pub(crate) capacity: usize,
    pub(crate) quic_address: String,
    pub(crate) http_address: String,
    pub(crate) fingerprint: String,
}

/// What the driver does for the state machine.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Action {
    SetLabel(&'static str, String),
    SetAnnotation(&'static str, String),
    Ready,
    Health,
    CreateSession { id: Uuid, request: CreateSession },
    Shutdown,
}

/// What the host sees at a tick.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Observed {
    /// Age of the oldest render loop's last turn (`None`: no loop runs).
    pub(crate) oldest_beat_age: Option<Duration>,
    /// Live sessions.
    pub(crate) live_sessions: usize,
    /// Whether the allocation's session has ended (`None`: no such session known).
    pub(crate) session_ended: Option<bool>,
}

#[derive(Debug, Clone, PartialEq)]
enum Phase {
    Starting,
    Ready,
    /// Allocated; `session` is the session it asked for (`None`: it asked for none, the
    /// caller creates sessions through the API).
    Allocated {
        session: Option<Uuid>,
        had_session: bool,
        /// When a tick last saw a live session (or the allocation, before any).
        busy_at: Option<Instant>,
    },
    ShuttingDown,
}

/// The fleet state of one host.
#[derive(Debug)]
pub(crate) struct FleetState {
    health_interval: Duration,
    stall_after: Duration,
    phase: Phase,
    last_health: Option<Instant>,
    /// The render loops were stuck at the last tick (logged once per episode).
    stalled: bool,
    actions: VecDeque<Action>,
}

impl FleetState {
    pub(crate) fn new(health_interval: Duration, stall_after: Duration) -> Self {
        Self {
            health_interval,
            stall_after,
            phase: Phase::Starting,
            last_health: None,
            stalled: false,
            actions: VecDeque::new(),
        }
    }

    /// The GPU, encoder and listeners are up: describe the host, then Ready.
    pub(crate) fn on_started(&mut self, facts: &HostFacts) {
        if self.phase != Phase::Starting {
            return;
        }
        self.actions
            .push_back(Action::SetLabel(LABEL_GPU, label_value(&facts.gpu)));
        self.actions
            .push_back(Action::SetLabel(LABEL_CAPACITY, facts.capacity.to_string()));
        for (key, value) in [
            (NOTE_QUIC, &facts.quic_address),
            (NOTE_HTTP, &facts.http_address),
            (NOTE_FINGERPRINT, &facts.fingerprint),
        ] {
            self.actions
                .push_back(Action::SetAnnotation(key, value.clone()));
        }
        self.actions.push_back(Action::Ready);
        self.phase = Phase::Ready;
    }

    /// The game server as the SDK reports it (its state and annotations).
    pub(crate) fn on_game_server(&mut self, state: &str, annotations: &BTreeMap<String, String>) {
        if self.phase != Phase::Ready || state != "Allocated" {
            return;
        }
        match session_request(annotations) {
            Ok(Some((id, request))) => {
                self.actions
                    .push_back(Action::SetAnnotation(NOTE_SESSION, id.to_string()));
                self.actions
                    .push_back(Action::CreateSession { id, request });
                self.phase = Phase::Allocated {
                    session: Some(id),
                    had_session: true,
                    busy_at: None,
                };
            }
            Ok(None) => {
                self.phase = Phase::Allocated {
                    session: None,
                    had_session: false,
                    busy_at: None,
                };
            }
            Err(why) => {
                // Nobody can use this allocation: say why on the game server, and leave so
                // the fleet replaces the host.
                self.actions
                    .push_back(Action::SetAnnotation(NOTE_ERROR, why));
                self.shut_down();
            }
        }
    }

    /// The session the allocation asked for could not be created: the same as a bad request.
    pub(crate) fn on_session_refused(&mut self, why: String) {
        self.actions
            .push_back(Action::SetAnnotation(NOTE_ERROR, why));
        self.shut_down();
    }

    /// A periodic tick: health pings while every render loop turns; Shutdown once the
    /// allocation's session has ended and no session is live.
    pub(crate) fn on_tick(&mut self, now: Instant, seen: Observed) {
        if self.phase == Phase::ShuttingDown || self.phase == Phase::Starting {
            return;
        }
        let stuck = seen.oldest_beat_age.is_some_and(|a| a > self.stall_after);
        if stuck != self.stalled {
            self.stalled = stuck;
            if stuck {
                tracing::error!(
                    age_ms = seen.oldest_beat_age.map_or(0, |a| a.as_millis()),
                    "a render loop is stuck: health pings stop, Agones will replace this host"
                );
            } else {
                tracing::info!("render loops turn again: health pings resume");
            }
        }
        if !stuck
            && self
                .last_health
                .is_none_or(|t| now.saturating_duration_since(t) >= self.health_interval)
        {
            self.actions.push_back(Action::Health);
            self.last_health = Some(now);
        }
        if let Phase::Allocated {
            session,
            had_session,
            busy_at,
        } = &mut self.phase
        {
            if seen.live_sessions > 0 || busy_at.is_none() {
                *busy_at = Some(now);
            }
            let idle = busy_at.is_some_and(|t| now.saturating_duration_since(t) >= ALLOCATED_IDLE);
            let ended = match session {
                Some(_) => seen.session_ended.unwrap_or(false),
                None => {
                    *had_session |= seen.live_sessions > 0;
                    *had_session
                }
            };
            // Also when an allocation's caller never used it (or its session came and went
            // between two ticks): nobody will.
            if (ended || idle) && seen.live_sessions == 0 {
                self.shut_down();
            }
        }
    }

    /// The session the allocation asked for, if any.
    pub(crate) fn allocated_session(&self) -> Option<Uuid> {
        match self.phase {
            Phase::Allocated { session, .. } => session,
            _ => None,
        }
    }

    fn shut_down(&mut self) {
        if self.phase != Phase::ShuttingDown {
            self.phase = Phase::ShuttingDown;
            self.actions.push_back(Action::Shutdown);
        }
    }

    /// The next action to carry out.
    pub(crate) fn poll(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }
}

/// A Kubernetes label value: at most 63 characters of `[A-Za-z0-9._-]`, starting and ending
/// with a letter or digit.
fn label_value(s: &str) -> String {
    let mut mapped = String::with_capacity(s.len().min(63));
    for c in s.chars() {
        let c = if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
            c
        } else {
            '-'
        };
        if !(c == '-' && mapped.ends_with('-')) {
            mapped.push(c);
        }
    }
    let trimmed: String = mapped.chars().take(63).collect();
    trimmed
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned()
}

/// The session an allocation asks for: `Ok(None)` when it names none, an error naming the bad
/// annotation otherwise.
fn session_request(
    notes: &BTreeMap<String, String>,
) -> Result<Option<(Uuid, CreateSession)>, String> {
    let Some(id) = notes.get(SESSION_ID) else {
        return Ok(None);
    };
    let get = |key: &str| notes.get(key).map(String::as_str).unwrap_or_default();
    // Only the request's own annotations count (other controllers annotate too).
    if [SESSION_ID, LEASE_MINUTES, SIZE, MODELS]
        .iter()
        .any(|k| notes.get(*k).is_some_and(|v| v.len() > MAX_VALUE_BYTES))
    {
        return Err(format!(
            "a farview.dev annotation is over {MAX_VALUE_BYTES} bytes"
        ));
    }
    let id =
        Uuid::parse_str(id.trim()).map_err(|_| format!("{SESSION_ID} {id:?} is not a UUID"))?;
    let minutes: u64 = get(LEASE_MINUTES).trim().parse().map_err(|_| {
        format!(
            "{LEASE_MINUTES} {:?} is not a whole number of minutes",
            get(LEASE_MINUTES)
        )
    })?;
    if minutes == 0 || minutes > MAX_LEASE_MINUTES {
        return Err(format!(
            "{LEASE_MINUTES} must be 1..={MAX_LEASE_MINUTES}, not {minutes}"
        ));
    }
    let size = get(SIZE).trim();
    if size.is_empty() {
        return Err(format!("{SIZE} is missing"));
    }
    let models: Vec<String> = get(MODELS)
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(str::to_owned)
        .collect();
    if models.len() > MAX_MODELS {
        return Err(format!(
            "{MODELS} names {} models, at most {MAX_MODELS}",
            models.len()
        ));
    }
    Ok(Some((
        id,
        CreateSession {
            max_lease_time: format!("{}:{:02}:00", minutes / 60, minutes % 60),
            size: size.to_owned(),
            models,
        },
    )))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn facts() -> HostFacts {
        HostFacts {
            gpu: "NVIDIA H100 80GB HBM3 (Vulkan)".into(),
            capacity: 4,
            quic_address: "10.0.0.7:7401".into(),
            http_address: "10.0.0.7:7402".into(),
            fingerprint: "ab".repeat(32),
        }
    }

    fn drain(s: &mut FleetState) -> Vec<Action> {
        std::iter::from_fn(|| s.poll()).collect()
    }

    fn seen(beat: Option<u64>, live: usize, ended: Option<bool>) -> Observed {
        Observed {
            oldest_beat_age: beat.map(Duration::from_millis),
            live_sessions: live,
            session_ended: ended,
        }
    }

    fn allocation(id: &str, lease: &str) -> BTreeMap<String, String> {
        [
            (SESSION_ID, id),
            (LEASE_MINUTES, lease),
            (SIZE, "standard"),
            (MODELS, "Fox/Fox.glb, BoxTextured/BoxTextured.gltf"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    #[test]
    fn ready_after_describing_the_host() {
        let mut s = FleetState::new(Duration::from_secs(2), Duration::from_secs(10));
        s.on_started(&facts());
        let a = drain(&mut s);
        assert_eq!(a.last(), Some(&Action::Ready));
        assert!(a.contains(&Action::SetLabel(
            LABEL_GPU,
            "NVIDIA-H100-80GB-HBM3-Vulkan".into()
        )));
        assert!(a.contains(&Action::SetLabel(LABEL_CAPACITY, "4".into())));
        assert!(a.contains(&Action::SetAnnotation(NOTE_QUIC, "10.0.0.7:7401".into())));
        // Once only.
        s.on_started(&facts());
        assert!(drain(&mut s).is_empty());
    }

    #[test]
    fn health_pings_stop_while_a_render_loop_is_stuck() {
        let t0 = Instant::now();
        let mut s = FleetState::new(Duration::from_secs(2), Duration::from_secs(10));
        s.on_started(&facts());
        drain(&mut s);
        let mut pings = 0;
        // 30 s of ticks every 500 ms: the loop turns for 10 s, hangs for 15 s, turns again.
        for i in 0..60u64 {
            let now = t0 + Duration::from_millis(500 * i);
            let age = if (20..50).contains(&i) {
                (i - 20) * 500
            } else {
                16
            };
            s.on_tick(now, seen(Some(age), 1, Some(false)));
            let got = drain(&mut s)
                .iter()
                .filter(|a| **a == Action::Health)
                .count();
            let stuck = age > 10_000;
            assert!(!(stuck && got > 0), "a ping at {i} while stuck ({age} ms)");
            pings += got;
        }
        // Every 2 s up to 20 s (11), none while stuck (20.5-24.5 s), then at once and every
        // 2 s again (25, 27, 29 s).
        assert_eq!(pings, 14);
        // An idle host (no loop) is healthy.
        s.on_tick(t0 + Duration::from_secs(40), seen(None, 0, None));
        assert_eq!(drain(&mut s), vec![Action::Health]);
    }

    #[test]
    fn an_allocation_creates_its_session_and_the_host_leaves_when_it_ends() {
        let t0 = Instant::now();
        let mut s = FleetState::new(Duration::from_secs(2), Duration::from_secs(10));
        // Not before Ready.
        let id = "6f1c1e64-4d4e-4b8e-9a43-1f9e8f7d2c10";
        s.on_game_server("Allocated", &allocation(id, "90"));
        assert!(drain(&mut s).is_empty());
        s.on_started(&facts());
        drain(&mut s);
        s.on_game_server("Ready", &allocation(id, "90"));
        assert!(drain(&mut s).is_empty(), "only an allocation asks");
        s.on_game_server("Allocated", &allocation(id, "90"));
        let a = drain(&mut s);
        let Some(Action::CreateSession { id: got, request }) = a.last() else {
            panic!("{a:?}");
        };
        assert_eq!(got.to_string(), id);
        assert_eq!(request.max_lease_time, "1:30:00");
        assert_eq!(request.size, "standard");
        assert_eq!(
            request.models,
            ["Fox/Fox.glb", "BoxTextured/BoxTextured.gltf"]
        );
        // A second watch event of the same allocation does nothing.
        s.on_game_server("Allocated", &allocation(id, "90"));
        assert!(drain(&mut s).is_empty());
        s.on_tick(t0, seen(Some(5), 1, Some(false)));
        assert_eq!(drain(&mut s), vec![Action::Health]);
        // Ended, but a session is still live (draining): wait.
        s.on_tick(t0 + Duration::from_secs(3), seen(None, 1, Some(true)));
        assert!(!drain(&mut s).contains(&Action::Shutdown));
        s.on_tick(t0 + Duration::from_secs(6), seen(None, 0, Some(true)));
        assert!(drain(&mut s).contains(&Action::Shutdown));
        s.on_tick(t0 + Duration::from_secs(9), seen(None, 0, Some(true)));
        assert!(
            drain(&mut s).is_empty(),
            "no pings or second shutdown after it"
        );
    }

    #[test]
    fn a_bad_allocation_request_is_refused_on_the_game_server() {
        for (id, lease, why) in [
            ("not-a-uuid", "10", "UUID"),
            ("6f1c1e64-4d4e-4b8e-9a43-1f9e8f7d2c10", "ten", "minutes"),
            ("6f1c1e64-4d4e-4b8e-9a43-1f9e8f7d2c10", "0", "1..="),
            ("6f1c1e64-4d4e-4b8e-9a43-1f9e8f7d2c10", "99999999", "1..="),
        ] {
            let mut s = FleetState::new(Duration::from_secs(2), Duration::from_secs(10));
            s.on_started(&facts());
            drain(&mut s);
            s.on_game_server("Allocated", &allocation(id, lease));
            let a = drain(&mut s);
            assert!(
                matches!(&a[0], Action::SetAnnotation(NOTE_ERROR, m) if m.contains(why)),
                "{id} {lease}: {a:?}"
            );
            assert_eq!(a.last(), Some(&Action::Shutdown));
        }
    }

    #[test]
    fn an_allocation_nobody_uses_is_given_back() {
        let t0 = Instant::now();
        let mut s = FleetState::new(Duration::from_secs(2), Duration::from_secs(10));
        s.on_started(&facts());
        drain(&mut s);
        s.on_game_server("Allocated", &BTreeMap::new());
        s.on_tick(t0, seen(None, 0, None));
        s.on_tick(t0 + ALLOCATED_IDLE / 2, seen(None, 0, None));
        assert!(!drain(&mut s).contains(&Action::Shutdown));
        s.on_tick(t0 + ALLOCATED_IDLE, seen(None, 0, None));
        assert!(drain(&mut s).contains(&Action::Shutdown));
    }

    #[test]
    fn an_allocation_without_a_request_waits_for_api_sessions() {
        let t0 = Instant::now();
        let mut s = FleetState::new(Duration::from_secs(2), Duration::from_secs(10));
        s.on_started(&facts());
        drain(&mut s);
        s.on_game_server("Allocated", &BTreeMap::new());
        assert!(drain(&mut s).is_empty());
        s.on_tick(t0, seen(None, 0, None));
        assert!(!drain(&mut s).contains(&Action::Shutdown), "no session yet");
        s.on_tick(t0 + Duration::from_secs(2), seen(Some(1), 1, None));
        s.on_tick(t0 + Duration::from_secs(4), seen(None, 0, None));
        assert!(drain(&mut s).contains(&Action::Shutdown));
    }
}
