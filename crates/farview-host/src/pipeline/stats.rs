//! Stream statistics: per-stage durations and frame counters shared by the stages, recorded
//! into the host's metrics at the same time, and one debug log line per second.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::metrics::{DropReason, Metrics};

/// Sum and count of one stage's durations, for means in the per-second log.
#[derive(Default, Debug)]
pub(crate) struct StageTimes {
    total_us: AtomicU64,
    count: AtomicU64,
}

impl StageTimes {
    fn record(&self, d: Duration) {
        self.total_us
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> (u64, u64) {
        (
            self.total_us.load(Ordering::Relaxed),
            self.count.load(Ordering::Relaxed),
        )
    }
}

/// Counters shared by the stages; read by the stats log, the session records and tests.
#[derive(Default, Debug)]
pub(crate) struct StreamCounters {
    pub(crate) rendered: AtomicU64,
    /// Ticks skipped because nothing changed (frame pacing).
    pub(crate) skipped_unchanged: AtomicU64,
    pub(crate) encoded: AtomicU64,
    pub(crate) sent: AtomicU64,
    pub(crate) keyframes: AtomicU64,
    pub(crate) bytes_sent: AtomicU64,
    pub(crate) dropped_encoder_busy: AtomicU64,
    pub(crate) dropped_stale: AtomicU64,
    pub(crate) dropped_awaiting_keyframe: AtomicU64,
    /// Readbacks that timed out and were retried (a busy shared GPU), not failures.
    pub(crate) readback_retries: AtomicU64,
    pub(crate) render: StageTimes,
    pub(crate) convert: StageTimes,
    pub(crate) encode: StageTimes,
    pub(crate) send: StageTimes,
}

/// State the connection shares with the stages.
#[derive(Default, Debug)]
pub(crate) struct Shared {
    pub(crate) force_keyframe: AtomicBool,
    pub(crate) stop: AtomicBool,
    /// True while a device is attached: the render loop idles (applying commands) otherwise.
    pub(crate) streaming: AtomicBool,
    /// Models loaded into the scene.
    pub(crate) models: AtomicU64,
    pub(crate) counters: StreamCounters,
    /// Host-wide metrics this pipeline adds to.
    pub(crate) metrics: Arc<Metrics>,
    /// Encoder bitrate the adaptive controller asks for (the encode stage applies it).
    pub(crate) target_bitrate: AtomicU64,
    /// Encoder bitrate in effect.
    pub(crate) applied_bitrate: AtomicU64,
    /// When the render loop last turned (µs since the Unix epoch; 0 before it started): it
    /// turns at least once a frame interval, so an old beat means a stuck loop (a hung driver
    /// call), which the Agones health pings report.
    pub(crate) beat_us: AtomicU64,
}

/// A pipeline stage, for [`Shared::stage`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stage {
    Render,
    Convert,
    Encode,
    Send,
}

impl Shared {
    /// Records a frame through `stage` in the stream's counters (the per-second log) and the
    /// host's metrics. Render, encode and send also count the frame.
    pub(crate) fn stage(&self, stage: Stage, d: Duration) {
        let (c, m) = (&self.counters, &self.metrics);
        let (clock, hist, count) = match stage {
            Stage::Render => (&c.render, &m.render, Some((&c.rendered, &m.rendered))),
            Stage::Convert => (&c.convert, &m.convert, None),
            Stage::Encode => (&c.encode, &m.encode, Some((&c.encoded, &m.encoded))),
            Stage::Send => (&c.send, &m.send, Some((&c.sent, &m.sent))),
        };
        clock.record(d);
        hist.observe(d.as_secs_f64());
        if let Some((a, b)) = count {
            a.fetch_add(1, Ordering::Relaxed);
            b.inc();
        }
    }

    /// Counts a skipped tick (nothing changed) in the stream's counters and the host's metrics.
    pub(crate) fn skipped_unchanged(&self) {
        self.counters
            .skipped_unchanged
            .fetch_add(1, Ordering::Relaxed);
        self.metrics.skipped_unchanged.inc();
    }

    /// Counts a readback waited for again, in the stream's counters and the host's metrics.
    pub(crate) fn readback_retried(&self) {
        self.counters
            .readback_retries
            .fetch_add(1, Ordering::Relaxed);
        self.metrics.readback_retries.inc();
    }

    /// Counts a frame not sent, in the stream's counters and the host's metrics.
    pub(crate) fn dropped(&self, why: DropReason) {
        let c = &self.counters;
        match why {
            DropReason::EncoderBusy => &c.dropped_encoder_busy,
            DropReason::Stale => &c.dropped_stale,
            DropReason::AwaitingKeyframe => &c.dropped_awaiting_keyframe,
        }
        .fetch_add(1, Ordering::Relaxed);
        self.metrics.dropped(why);
    }
}

/// One debug line per second of stream statistics.
pub(crate) struct StatsLog {
    at: Instant,
    last: [u64; 6],
    stages: [(u64, u64); 4],
}

impl StatsLog {
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            at: now,
            last: [0; 6],
            stages: [(0, 0); 4],
        }
    }

    pub(crate) fn maybe_log(&mut self, c: &StreamCounters, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at);
        if elapsed < Duration::from_secs(1) {
            return;
        }
        let counts = [
            c.rendered.load(Ordering::Relaxed),
            c.sent.load(Ordering::Relaxed),
            c.bytes_sent.load(Ordering::Relaxed),
            c.dropped_encoder_busy.load(Ordering::Relaxed),
            c.dropped_stale.load(Ordering::Relaxed)
                + c.dropped_awaiting_keyframe.load(Ordering::Relaxed),
            c.keyframes.load(Ordering::Relaxed),
        ];
        let stages = [
            c.render.snapshot(),
            c.convert.snapshot(),
            c.encode.snapshot(),
            c.send.snapshot(),
        ];
        let mean_ms = |i: usize| {
            let (t, n) = (
                stages[i].0 - self.stages[i].0,
                stages[i].1 - self.stages[i].1,
            );
            if n == 0 {
                0.0
            } else {
                t as f64 / n as f64 / 1000.0
            }
        };
        let secs = elapsed.as_secs_f64();
        tracing::debug!(
            rendered_fps = format!("{:.1}", (counts[0] - self.last[0]) as f64 / secs),
            sent_fps = format!("{:.1}", (counts[1] - self.last[1]) as f64 / secs),
            kbps = (counts[2] - self.last[2]) as f64 * 8.0 / secs / 1000.0,
            dropped_busy = counts[3] - self.last[3],
            dropped_stale = counts[4] - self.last[4],
            keyframes = counts[5] - self.last[5],
            render_ms = format!("{:.2}", mean_ms(0)),
            convert_ms = format!("{:.2}", mean_ms(1)),
            encode_ms = format!("{:.2}", mean_ms(2)),
            send_ms = format!("{:.2}", mean_ms(3)),
            "stream stats"
        );
        self.at = now;
        self.last = counts;
        self.stages = stages;
    }
}
