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
}
