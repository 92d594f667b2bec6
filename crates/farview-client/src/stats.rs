//! Per-frame timings from frame headers, and their summary (mean, p50, p99) for reports.

use crate::Frame;

/// One frame's stage durations in microseconds, from its header and arrival time. Stages that
/// compare host and device clocks are only meaningful on a synchronized clock (or loopback).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameTimings {
    /// Render + readback.
    pub render_us: u64,
    /// Colour conversion + H.264 encode (and any wait for the encoder).
    pub encode_us: u64,
    /// From encode end to the first byte written (queueing in the host).
    pub queue_us: u64,
    /// From the host writing it to its last byte arriving.
    pub network_us: u64,
    /// Render start to last byte received: the frame's latency.
    pub total_us: u64,
}

impl FrameTimings {
    /// Timings of a received frame.
    pub fn of(frame: &Frame) -> Self {
        let h = &frame.header;
        Self {
            render_us: h.render_end_us.saturating_sub(h.render_start_us),
            encode_us: h.encode_end_us.saturating_sub(h.render_end_us),
            queue_us: h.send_us.saturating_sub(h.encode_end_us),
            network_us: frame.received_us.saturating_sub(h.send_us),
            total_us: frame.received_us.saturating_sub(h.render_start_us),
        }
    }
}

/// Mean, median and 99th percentile of one stage, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile (nearest rank).
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

/// Summarizes microsecond samples; all zeros when there are none.
pub fn summarize(samples: &[u64]) -> Summary {
    if samples.is_empty() {
        return Summary {
            mean_ms: 0.0,
            p50_ms: 0.0,
            p99_ms: 0.0,
            max_ms: 0.0,
        };
    }
    let mut v = samples.to_vec();
    v.sort_unstable();
    let rank =
        |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1] as f64 / 1000.0;
    Summary {
        mean_ms: v.iter().sum::<u64>() as f64 / v.len() as f64 / 1000.0,
        p50_ms: rank(0.50),
        p99_ms: rank(0.99),
        max_ms: v[v.len() - 1] as f64 / 1000.0,
    }
}

/// Frame statistics over a window (since the previous [`crate::Connection::take_frame_statistics`]),
/// like ARR's `FrameStatistics`: what arrived, what was lost on the way, how long commands took
/// to show, and how evenly frames arrived.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameStatistics {
    /// Frames the app took with `next_frame`.
    pub frames_received: u64,
    /// Frames the host rendered but never sent (gaps in frame numbers: dropped for a slow path
    /// or a reset group).
    pub frames_skipped_by_host: u64,
    /// Frames this SDK dropped because the app did not take them in time.
    pub frames_dropped_by_sdk: u64,
    /// From sending a request to receiving the first frame that reflects it (its header's
    /// `last_command_seq` reaches the request's seq).
    pub command_to_frame: Summary,
    /// Time between consecutive frame arrivals: spikes are what a device would show as stutter.
    pub arrival_gap: Summary,
    /// Render start on the host to last byte received, per frame.
    pub latency: Summary,
}

/// Most requests remembered for command-to-frame latency.
const MAX_TRACKED: usize = 4096;

/// What the SDK accumulates for [`FrameStatistics`].
#[derive(Debug, Default)]
pub(crate) struct StatsState {
    sent: std::collections::VecDeque<(u64, u64)>,
    frames: u64,
    skipped: u64,
    last_number: Option<u64>,
    last_rx: Option<u64>,
    command_to_frame: Vec<u64>,
    gaps: Vec<u64>,
    latency: Vec<u64>,
    dropped_at_take: u64,
}

impl StatsState {
    /// A request left at `t_us`.
    pub(crate) fn sent(&mut self, seq: u64, t_us: u64) {
        if self.sent.len() == MAX_TRACKED {
            self.sent.pop_front();
        }
        self.sent.push_back((seq, t_us));
    }

    /// The app took `frame`.
    pub(crate) fn frame(&mut self, frame: &Frame) {
        let h = &frame.header;
        self.frames += 1;
        if let Some(prev) = self.last_number {
            self.skipped += h.frame_number.saturating_sub(prev + 1);
        }
        self.last_number = Some(h.frame_number);
        if let Some(prev) = self.last_rx {
            self.gaps.push(frame.received_us.saturating_sub(prev));
        }
        self.last_rx = Some(frame.received_us);
        self.latency.push(FrameTimings::of(frame).total_us);
        while let Some(&(seq, t)) = self.sent.front() {
            if seq > h.last_command_seq {
                break;
            }
            self.command_to_frame
                .push(frame.received_us.saturating_sub(t));
            self.sent.pop_front();
        }
        // Bound the window's samples if the app never takes statistics.
        for v in [
            &mut self.gaps,
            &mut self.latency,
            &mut self.command_to_frame,
        ] {
            if v.len() > 100_000 {
                v.drain(..50_000);
            }
        }
    }

    /// The window's statistics; starts a new window.
    pub(crate) fn take(&mut self, dropped_total: u64) -> FrameStatistics {
        let out = FrameStatistics {
            frames_received: self.frames,
            frames_skipped_by_host: self.skipped,
            frames_dropped_by_sdk: dropped_total.saturating_sub(self.dropped_at_take),
            command_to_frame: summarize(&self.command_to_frame),
            arrival_gap: summarize(&self.gaps),
            latency: summarize(&self.latency),
        };
        self.frames = 0;
        self.skipped = 0;
        self.dropped_at_take = dropped_total;
        self.command_to_frame.clear();
        self.gaps.clear();
        self.latency.clear();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let samples: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
        let s = summarize(&samples);
        assert_eq!(s.p50_ms, 50.0);
        assert_eq!(s.p99_ms, 99.0);
        assert_eq!(s.max_ms, 100.0);
        assert!((s.mean_ms - 50.5).abs() < 1e-9);
        assert_eq!(summarize(&[]).p99_ms, 0.0);
        assert_eq!(summarize(&[7000]).p50_ms, 7.0);
    }

    fn frame(number: u64, last_command_seq: u64, rx: u64) -> Frame {
        Frame {
            header: farview_protocol::FrameHeader {
                frame_number: number,
                group: 0,
                last_command_seq,
                render_start_us: rx - 5000,
                render_end_us: rx - 4000,
                encode_end_us: rx - 2000,
                send_us: rx - 1000,
                width: 64,
                height: 64,
                keyframe: false,
                animation: None,
                detail: None,
            },
            data: Vec::new(),
            received_us: rx,
        }
    }

    #[test]
    fn statistics_track_gaps_skips_and_command_latency() {
        let mut s = StatsState::default();
        s.sent(5, 1_000_000);
        s.sent(6, 1_010_000);
        s.frame(&frame(10, 4, 1_016_000));
        s.frame(&frame(11, 5, 1_032_000));
        s.frame(&frame(14, 6, 1_048_000));
        let st = s.take(2);
        assert_eq!(st.frames_received, 3);
        assert_eq!(st.frames_skipped_by_host, 2);
        assert_eq!(st.frames_dropped_by_sdk, 2);
        assert_eq!(
            st.command_to_frame.max_ms, 38.0,
            "seq 6 sent at 1.010 s, shown at 1.048 s"
        );
        assert_eq!(st.arrival_gap.p50_ms, 16.0);
        assert_eq!(st.latency.p50_ms, 5.0);
        let next = s.take(3);
        assert_eq!((next.frames_received, next.frames_dropped_by_sdk), (0, 1));
    }
}
