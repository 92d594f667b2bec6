//! Host-wide metrics in the Prometheus text format (`GET /metrics`): frame counters by stage and
//! drop reason, per-stage duration and frame size histograms, encoder bitrate, QUIC path
//! statistics of the attached devices, and sessions by status. Base units (seconds, bytes) and
//! `_total` counters, as Prometheus' naming conventions ask.
//!
//! Lock-free on the frame path (atomics only); the QUIC and session figures are read at scrape.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A fixed-bucket histogram.
#[derive(Debug)]
pub(crate) struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    /// Sum in millionths of the unit (µs for seconds), so it stays an integer atomic.
    sum_micro: AtomicU64,
    count: AtomicU64,
}

const SECONDS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 1.0,
];
const BYTES: &[f64] = &[
    1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
];

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micro: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub(crate) fn observe(&self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_micro
            .fetch_add((v.max(0.0) * 1e6) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn observe_duration(&self, d: Duration) {
        self.observe(d.as_secs_f64());
    }

    fn write(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        let sep = if labels.is_empty() { "" } else { "," };
        for (b, c) in self.bounds.iter().zip(&self.buckets) {
            cumulative += c.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let sum = self.sum_micro.load(Ordering::Relaxed) as f64 / 1e6;
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {count}");
    }
}

/// Why a frame was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DropReason {
    /// The network queue was full: skipped before encoding.
    EncoderBusy,
    /// Older than `max_frame_age` when its turn came, or its group was reset.
    Stale,
    /// After a reset, waiting for the next keyframe.
    AwaitingKeyframe,
}

/// Host-wide counters; every pipeline adds to the same instance.
#[derive(Debug)]
pub(crate) struct Metrics {
    pub(crate) rendered: AtomicU64,
    pub(crate) skipped_unchanged: AtomicU64,
    pub(crate) encoded: AtomicU64,
    pub(crate) sent: AtomicU64,
    pub(crate) keyframes: AtomicU64,
    pub(crate) bytes_sent: AtomicU64,
    dropped: [AtomicU64; 3],
    pub(crate) render: Histogram,
    pub(crate) convert: Histogram,
    pub(crate) encode: Histogram,
    pub(crate) send: Histogram,
    pub(crate) frame_bytes: Histogram,
    /// Sum of the configured encoder bitrates of live pipelines.
    pub(crate) encoder_bitrate_bps: AtomicU64,
    /// Readbacks that outlasted their budget and were waited for again.
    pub(crate) readback_retries: AtomicU64,
    /// Bytes of model uploads held for loads that have not taken them yet (all connections).
    pub(crate) upload_bytes_held: AtomicU64,
    /// Devices attached to a pipeline, by connection id, for their QUIC path statistics.
    /// Attached devices by connection id, with the session each streams (its label).
    connections: Mutex<HashMap<u64, (String, quinn::Connection)>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            rendered: AtomicU64::new(0),
            skipped_unchanged: AtomicU64::new(0),
            encoded: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            keyframes: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            dropped: Default::default(),
            render: Histogram::new(SECONDS),
            convert: Histogram::new(SECONDS),
            encode: Histogram::new(SECONDS),
            send: Histogram::new(SECONDS),
            frame_bytes: Histogram::new(BYTES),
            encoder_bitrate_bps: AtomicU64::new(0),
            upload_bytes_held: AtomicU64::new(0),
            readback_retries: AtomicU64::new(0),
            connections: Mutex::new(HashMap::new()),
        }
    }
}

impl Metrics {
    pub(crate) fn dropped(&self, why: DropReason) {
        self.dropped[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Starts reporting a device's path figures, labelled with `session` (the session id
    /// operators see in the API and logs; `sessionless-<connection>` for an ad-hoc stream).
    pub(crate) fn attach(&self, id: u64, session: String, conn: quinn::Connection) {
        if let Ok(mut c) = self.connections.lock() {
            c.insert(id, (session, conn));
        }
    }

    pub(crate) fn detach(&self, id: u64) {
        if let Ok(mut c) = self.connections.lock() {
            c.remove(&id);
        }
    }

    /// The Prometheus text exposition; `sessions` is the count per status.
    pub(crate) fn render(&self, sessions: &[(&str, u64)]) -> String {
        let mut out = String::with_capacity(8192);
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        counter(
            &mut out,
            "farview_frames_rendered_total",
            "Frames rendered.",
            load(&self.rendered),
        );
        counter(
            &mut out,
            "farview_frames_skipped_unchanged_total",
            "Frame ticks not rendered because the scene and camera had not changed.",
            load(&self.skipped_unchanged),
        );
        counter(
            &mut out,
            "farview_frames_encoded_total",
            "Frames encoded.",
            load(&self.encoded),
        );
        counter(
            &mut out,
            "farview_frames_sent_total",
            "Frames written to a device.",
            load(&self.sent),
        );
        counter(
            &mut out,
            "farview_keyframes_total",
            "IDR frames sent.",
            load(&self.keyframes),
        );
        counter(
            &mut out,
            "farview_sent_bytes_total",
            "Encoded bytes written to devices.",
            load(&self.bytes_sent),
        );
        let _ = writeln!(
            out,
            "# HELP farview_frames_dropped_total Frames not sent, by reason.\n# TYPE farview_frames_dropped_total counter"
        );
        for (i, reason) in ["encoder_busy", "stale", "awaiting_keyframe"]
            .iter()
            .enumerate()
        {
            let _ = writeln!(
                out,
                "farview_frames_dropped_total{{reason=\"{reason}\"}} {}",
                load(&self.dropped[i])
            );
        }
        let _ = writeln!(
            out,
            "# HELP farview_stage_duration_seconds Time per frame in each pipeline stage.\n# TYPE farview_stage_duration_seconds histogram"
        );
        for (stage, h) in [
            ("render", &self.render),
            ("convert", &self.convert),
            ("encode", &self.encode),
            ("send", &self.send),
        ] {
            h.write(
                &mut out,
                "farview_stage_duration_seconds",
                &format!("stage=\"{stage}\""),
            );
        }
        let _ = writeln!(
            out,
            "# HELP farview_frame_size_bytes Encoded frame size.\n# TYPE farview_frame_size_bytes histogram"
        );
        self.frame_bytes
            .write(&mut out, "farview_frame_size_bytes", "");
        let _ = writeln!(
            out,
            "# HELP farview_encoder_bitrate_bps Target bitrate of the live encoders, summed.\n# TYPE farview_encoder_bitrate_bps gauge\nfarview_encoder_bitrate_bps {}",
            load(&self.encoder_bitrate_bps)
        );
        let _ = writeln!(
            out,
            "# HELP farview_readback_retries_total Readbacks that outlasted their budget (a busy shared GPU) and were waited for again.\n# TYPE farview_readback_retries_total counter\nfarview_readback_retries_total {}",
            load(&self.readback_retries)
        );
        let _ = writeln!(
            out,
            "# HELP farview_upload_bytes_held Bytes of model uploads waiting for their load, all devices.\n# TYPE farview_upload_bytes_held gauge\nfarview_upload_bytes_held {}",
            load(&self.upload_bytes_held)
        );
        let conns: Vec<(String, quinn::ConnectionStats)> = self
            .connections
            .lock()
            .map(|c| {
                c.values()
                    .map(|(session, c)| (session.clone(), c.stats()))
                    .collect()
            })
            .unwrap_or_default();
        type PathValue = fn(&quinn::ConnectionStats) -> f64;
        let per_device: [(&str, &str, &str, PathValue); 4] = [
            (
                "farview_quic_rtt_seconds",
                "Smoothed round-trip time per attached device.",
                "gauge",
                |s| s.path.rtt.as_secs_f64(),
            ),
            (
                "farview_quic_cwnd_bytes",
                "Congestion window per attached device.",
                "gauge",
                |s| s.path.cwnd as f64,
            ),
            (
                "farview_quic_lost_packets_total",
                "Packets lost per attached device.",
                "counter",
                |s| s.path.lost_packets as f64,
            ),
            (
                "farview_quic_congestion_events_total",
                "Congestion events per attached device.",
                "counter",
                |s| s.path.congestion_events as f64,
            ),
        ];
        for (name, help, kind, value) in per_device {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (session, s) in &conns {
                let _ = writeln!(out, "{name}{{session=\"{session}\"}} {}", value(s));
            }
        }
        let _ = writeln!(
            out,
            "# HELP farview_sessions Sessions by status (ended ones while their records are retained).\n# TYPE farview_sessions gauge"
        );
        for (status, n) in sessions {
            let _ = writeln!(out, "farview_sessions{{status=\"{status}\"}} {n}");
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::new(SECONDS);
        h.observe(0.0001);
        h.observe(0.003);
        h.observe(5.0);
        let mut out = String::new();
        h.write(&mut out, "x", "stage=\"a\"");
        assert!(out.contains("x_bucket{stage=\"a\",le=\"0.0005\"} 1"));
        assert!(out.contains("x_bucket{stage=\"a\",le=\"0.004\"} 2"));
        assert!(out.contains("x_bucket{stage=\"a\",le=\"1\"} 2"));
        assert!(out.contains("x_bucket{stage=\"a\",le=\"+Inf\"} 3"));
        assert!(out.contains("x_count{stage=\"a\"} 3"));
        assert!(out.contains("x_sum{stage=\"a\"} 5.0031"));
    }
}
