//! Adaptive bitrate: a plain state machine fed QUIC path statistics, answering with a new
//! encoder target. No I/O and no clock of its own (the caller passes times), so tests drive it
//! directly.
//!
//! The controller, every sample (the send loop samples every [`SAMPLE_INTERVAL`]):
//! - **Back off** (target × 0.7, at most every 500 ms) when the path shows congestion: more than
//!   2 % of the packets sent since the last sample were lost, or the smoothed RTT exceeds twice the
//!   lowest RTT seen plus 20 ms (queues building), or the host had to drop frames because the
//!   connection could not take them.
//! - **Probe up** (target × 1.1, at most every 2 s, and only after 2 s without a back-off) while
//!   loss stays under 0.5 % and the RTT stays within 1.5 × the lowest plus 10 ms.
//! - Stay within the session size's `[min, max]`, and only report a change of at least 10 %:
//!   the encoder takes a new rate without an IDR, but its rate control settles over a few
//!   frames after each change, so small wiggles are not worth it.
//!
//! Like GCC/SCReAM in spirit (loss- and delay-based, multiplicative decrease, slow additive-ish
//! increase) but deliberately simple; `docs/protocol.md` does not depend on it.

use std::time::Duration;

/// How often the send loop feeds the controller.
pub(crate) const SAMPLE_INTERVAL: Duration = Duration::from_millis(250);

/// One sample of the connection's path.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct PathSample {
    /// Milliseconds since an arbitrary origin.
    pub(crate) now_ms: u64,
    /// Smoothed RTT.
    pub(crate) rtt_ms: f64,
    /// Packets sent since the last sample.
    pub(crate) sent: u64,
    /// Packets lost since the last sample.
    pub(crate) lost: u64,
    /// Frames the host dropped for this connection since the last sample.
    pub(crate) dropped_frames: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct BitrateController {
    min: u32,
    max: u32,
    /// The controller's running estimate (may differ from the encoder's by < 10 %).
    estimate: f64,
    /// What the encoder runs at.
    applied: u32,
    min_rtt_ms: f64,
    last_decrease_ms: Option<u64>,
    last_increase_ms: u64,
}

impl BitrateController {
    pub(crate) fn new(start: u32, min: u32, max: u32) -> Self {
        let (min, max) = (min.max(1).min(max.max(1)), max.max(1));
        let start = start.clamp(min, max);
        Self {
            min,
            max,
            estimate: f64::from(start),
            applied: start,
            min_rtt_ms: f64::INFINITY,
            last_decrease_ms: None,
            last_increase_ms: 0,
        }
    }

    /// The encoder's target now.
    #[cfg(test)]
    pub(crate) fn target(&self) -> u32 {
        self.applied
    }

    /// Feeds one sample; returns the new encoder target when it should change.
    pub(crate) fn on_sample(&mut self, s: PathSample) -> Option<u32> {
        if s.rtt_ms > 0.0 {
            self.min_rtt_ms = self.min_rtt_ms.min(s.rtt_ms);
        }
        let loss = if s.sent > 0 {
            s.lost as f64 / s.sent as f64
        } else {
            0.0
        };
        let base = if self.min_rtt_ms.is_finite() {
            self.min_rtt_ms
        } else {
            s.rtt_ms
        };
        let congested = loss > 0.02 || s.rtt_ms > 2.0 * base + 20.0 || s.dropped_frames > 0;
        let clear = loss < 0.005 && s.rtt_ms <= 1.5 * base + 10.0 && s.dropped_frames == 0;
        if congested {
            if self
                .last_decrease_ms
                .is_none_or(|t| s.now_ms.saturating_sub(t) >= 500)
            {
                self.estimate = (self.estimate * 0.7).max(f64::from(self.min));
                self.last_decrease_ms = Some(s.now_ms);
            }
        } else if clear
            && s.now_ms.saturating_sub(self.last_increase_ms) >= 2000
            && self
                .last_decrease_ms
                .is_none_or(|t| s.now_ms.saturating_sub(t) >= 2000)
        {
            self.estimate = (self.estimate * 1.1).min(f64::from(self.max));
            self.last_increase_ms = s.now_ms;
        }
        let next = self.estimate.round() as u32;
        let change = (f64::from(next) - f64::from(self.applied)).abs() / f64::from(self.applied);
        let at_bound = (next == self.min || next == self.max) && next != self.applied;
        if change >= 0.1 || at_bound {
            self.applied = next;
            return Some(next);
        }
        None
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sample(now_ms: u64, rtt_ms: f64, sent: u64, lost: u64) -> PathSample {
        PathSample {
            now_ms,
            rtt_ms,
            sent,
            lost,
            dropped_frames: 0,
        }
    }

    #[test]
    fn backs_off_on_loss_and_recovers_when_the_path_clears() {
        let mut c = BitrateController::new(8_000_000, 1_000_000, 8_000_000);
        let mut t = 0;
        for _ in 0..8 {
            t += 250;
            assert_eq!(
                c.on_sample(sample(t, 1.0, 400, 0)),
                None,
                "clear at max: no change"
            );
        }
        // 10 % loss: multiplicative decrease, at most every 500 ms, down to the floor.
        let mut lows = Vec::new();
        for _ in 0..40 {
            t += 250;
            if let Some(b) = c.on_sample(sample(t, 1.0, 400, 40)) {
                lows.push(b);
            }
        }
        assert!(lows.windows(2).all(|w| w[1] < w[0]), "{lows:?}");
        assert_eq!(c.target(), 1_000_000, "floor reached");
        // Clear again: probes up every 2 s after 2 s of calm, up to the ceiling.
        let mut highs = Vec::new();
        for _ in 0..200 {
            t += 250;
            if let Some(b) = c.on_sample(sample(t, 1.0, 400, 0)) {
                highs.push(b);
            }
        }
        assert!(highs.windows(2).all(|w| w[1] > w[0]), "{highs:?}");
        assert_eq!(c.target(), 8_000_000, "back at the ceiling");
    }

    #[test]
    fn rising_rtt_and_dropped_frames_count_as_congestion() {
        let mut c = BitrateController::new(4_000_000, 500_000, 8_000_000);
        c.on_sample(sample(0, 5.0, 100, 0));
        assert!(
            c.on_sample(sample(250, 60.0, 100, 0)).is_some(),
            "queueing delay"
        );
        let mut c = BitrateController::new(4_000_000, 500_000, 8_000_000);
        let s = PathSample {
            dropped_frames: 3,
            ..sample(250, 1.0, 100, 0)
        };
        assert_eq!(c.on_sample(s), Some(2_800_000));
    }

    #[test]
    fn small_changes_are_not_reported() {
        let mut c = BitrateController::new(4_000_000, 500_000, 4_200_000);
        // One probe would go to 4.2 M (+5 %): the ceiling, so it is applied...
        assert_eq!(c.on_sample(sample(2000, 1.0, 100, 0)), Some(4_200_000));
        // ...but nothing else moves while the path is clear at the ceiling.
        assert_eq!(c.on_sample(sample(5000, 1.0, 100, 0)), None);
    }
}
