//! The frame-time budget of one stream: when the render stage takes longer than a frame
//! interval, the renderer's level-of-detail error budget goes up (coarser levels, fewer
//! triangles) before frames are dropped; when it has room again, the budget comes back down to
//! the configured one. Measured, not guessed: the input is each frame's render time. A plain
//! state machine (no clock of its own), tested on made-up timings.

use std::time::Duration;

/// Frames averaged before the budget moves (and between moves).
const SETTLE_FRAMES: u32 = 8;
/// Over this share of the interval, detail goes down.
const OVER: f64 = 0.9;
/// Under this share, detail comes back up.
const UNDER: f64 = 0.5;
/// Step factors.
const COARSER: f32 = 1.5;
const FINER: f32 = 1.25;

/// The level-of-detail error budget a stream's frames are drawn with.
#[derive(Debug, Clone)]
pub(crate) struct DetailBudget {
    interval: Duration,
    /// The configured budget, pixels (the floor).
    base_px: f32,
    /// The most it may rise to, pixels.
    max_px: f32,
    px: f32,
    /// Render times since the last move, summed.
    sum: Duration,
    frames: u32,
}

impl DetailBudget {
    /// For frames `interval` apart, starting (and never going below) `base_px`.
    pub(crate) fn new(interval: Duration, base_px: f32, max_px: f32) -> Self {
        let base_px = if base_px.is_finite() {
            base_px.max(0.0)
        } else {
            1.0
        };
        Self {
            interval,
            base_px,
            max_px: max_px.max(base_px),
            px: base_px,
            sum: Duration::ZERO,
            frames: 0,
        }
    }

    /// The budget now, pixels.
    pub(crate) fn px(&self) -> f32 {
        self.px
    }

    /// One frame rendered in `took`; the budget for the next frame.
    pub(crate) fn on_frame(&mut self, took: Duration) -> f32 {
        self.sum += took;
        self.frames += 1;
        if self.frames < SETTLE_FRAMES || self.base_px == 0.0 {
            return self.px;
        }
        let mean = self.sum.as_secs_f64() / f64::from(self.frames);
        let share = mean / self.interval.as_secs_f64().max(1e-6);
        self.sum = Duration::ZERO;
        self.frames = 0;
        if share > OVER && self.px < self.max_px {
            self.px = (self.px * COARSER).min(self.max_px);
            tracing::debug!(px = self.px, share, "frames run late: less detail");
        } else if share < UNDER && self.px > self.base_px {
            self.px = (self.px / FINER).max(self.base_px);
            tracing::debug!(px = self.px, share, "frames have room: more detail");
        }
        self.px
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn late_frames_lower_detail_and_room_brings_it_back() {
        let mut b = DetailBudget::new(ms(33), 1.0, 8.0);
        // On time: stays at the base.
        for _ in 0..40 {
            assert_eq!(b.on_frame(ms(20)), 1.0);
        }
        // Late (40 ms a frame for a 33 ms interval): rises step by step, capped.
        let mut seen = vec![];
        for _ in 0..80 {
            seen.push(b.on_frame(ms(40)));
        }
        assert!(
            seen.windows(2).all(|w| w[1] >= w[0]),
            "never finer while late"
        );
        assert_eq!(b.px(), 8.0);
        // A scene that renders cheaply at this budget (25 ms: between the thresholds): holds.
        for _ in 0..40 {
            assert_eq!(b.on_frame(ms(25)), 8.0);
        }
        // Plenty of room: back down to the base, never below.
        for _ in 0..200 {
            b.on_frame(ms(5));
        }
        assert_eq!(b.px(), 1.0);
        // A single slow frame among fast ones moves nothing (averaged over 8).
        let mut b = DetailBudget::new(ms(33), 1.0, 8.0);
        for i in 0..64 {
            b.on_frame(if i % 8 == 0 { ms(60) } else { ms(10) });
        }
        assert_eq!(b.px(), 1.0);
    }

    #[test]
    fn full_detail_stays_full() {
        let mut b = DetailBudget::new(ms(16), 0.0, 8.0);
        for _ in 0..50 {
            assert_eq!(b.on_frame(ms(100)), 0.0);
        }
    }
}
