//! Time as the stages see it. Every stage reads the clock through this seam, so the pacing and
//! staleness rules are tested on virtual time and a deployment can swap in a synchronised clock.

use std::time::Instant;

/// Monotonic time for intervals, wall-clock microseconds for frame headers (devices compare
/// them with their own clock to split latency by stage).
pub(crate) trait StageClock: Send + Sync + std::fmt::Debug {
    /// Monotonic now.
    fn now(&self) -> Instant;
    /// Microseconds since the Unix epoch.
    fn wall_us(&self) -> u64;
}

/// The machine's clocks.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct SystemClock;

impl StageClock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn wall_us(&self) -> u64 {
        crate::time::now_us()
    }
}
