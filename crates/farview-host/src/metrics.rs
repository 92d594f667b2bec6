//! Host-wide metrics for Prometheus (`GET /metrics`), kept by the `prometheus` crate: frame
//! counters by stage and drop reason, per-stage duration and frame size histograms, encoder
//! bitrate, model uploads held, QUIC path statistics of the attached devices labelled by
//! session, sessions by status, and the process's own figures (CPU, memory, descriptors). Base
//! units (seconds, bytes) and `_total` counters, as Prometheus' naming conventions ask.
//!
//! The frame path touches only pre-resolved counters and histograms (atomics, no label lookup);
//! the QUIC and session figures are read at scrape.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

const SECONDS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 1.0,
];
const BYTES: &[f64] = &[
    1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
];

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

impl DropReason {
    const ALL: [Self; 3] = [Self::EncoderBusy, Self::Stale, Self::AwaitingKeyframe];

    fn label(self) -> &'static str {
        match self {
            Self::EncoderBusy => "encoder_busy",
            Self::Stale => "stale",
            Self::AwaitingKeyframe => "awaiting_keyframe",
        }
    }
}

/// Host-wide counters; every pipeline adds to the same instance.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    pub(crate) rendered: IntCounter,
    pub(crate) skipped_unchanged: IntCounter,
    pub(crate) encoded: IntCounter,
    pub(crate) sent: IntCounter,
    pub(crate) keyframes: IntCounter,
    pub(crate) bytes_sent: IntCounter,
    dropped: [IntCounter; 3],
    pub(crate) render: Histogram,
    pub(crate) convert: Histogram,
    pub(crate) encode: Histogram,
    pub(crate) send: Histogram,
    pub(crate) frame_bytes: Histogram,
    /// Sum of the configured encoder bitrates of live pipelines.
    pub(crate) encoder_bitrate_bps: IntGauge,
    /// Readbacks that outlasted their budget and were waited for again.
    pub(crate) readback_retries: IntCounter,
    /// Bytes of model uploads held for loads that have not taken them yet (all connections).
    /// The upload budget reserves against this atomic; the gauge reads it at scrape.
    pub(crate) upload_bytes_held: AtomicU64,
    upload_bytes_gauge: IntGauge,
    sessions: IntGaugeVec,
    /// Attached devices by connection id, with the session each streams (its label).
    connections: Mutex<HashMap<u64, (String, quinn::Connection)>>,
}

fn registered<M: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    m: M,
) -> prometheus::Result<M> {
    registry.register(Box::new(m.clone()))?;
    Ok(m)
}

impl Default for Metrics {
    #[allow(clippy::expect_used)]
    fn default() -> Self {
        // Names, labels and buckets are fixed in this file: a failure is a programming error
        // (a duplicate or malformed name) that every test building a host shows at once.
        Self::build().expect("the host's metric definitions are valid")
    }
}

impl Metrics {
    fn build() -> prometheus::Result<Self> {
        let registry = Registry::new();
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        let counter = |name: &str, help: &str| registered(&registry, IntCounter::new(name, help)?);
        let gauge = |name: &str, help: &str| registered(&registry, IntGauge::new(name, help)?);
        let stages = registered(
            &registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "farview_stage_duration_seconds",
                    "Time per frame in each pipeline stage.",
                )
                .buckets(SECONDS.to_vec()),
                &["stage"],
            )?,
        )?;
        let dropped = registered(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "farview_frames_dropped_total",
                    "Frames not sent, by reason.",
                ),
                &["reason"],
            )?,
        )?;
        Ok(Self {
            rendered: counter("farview_frames_rendered_total", "Frames rendered.")?,
            skipped_unchanged: counter(
                "farview_frames_skipped_unchanged_total",
                "Frame ticks not rendered because the scene and camera had not changed.",
            )?,
            encoded: counter("farview_frames_encoded_total", "Frames encoded.")?,
            sent: counter("farview_frames_sent_total", "Frames written to a device.")?,
            keyframes: counter("farview_keyframes_total", "IDR frames sent.")?,
            bytes_sent: counter(
                "farview_sent_bytes_total",
                "Encoded bytes written to devices.",
            )?,
            // Every reason is listed from the start, at 0, so dashboards see the series.
            dropped: DropReason::ALL.map(|r| dropped.with_label_values(&[r.label()])),
            render: stages.with_label_values(&["render"]),
            convert: stages.with_label_values(&["convert"]),
            encode: stages.with_label_values(&["encode"]),
            send: stages.with_label_values(&["send"]),
            frame_bytes: registered(
                &registry,
                Histogram::with_opts(
                    HistogramOpts::new("farview_frame_size_bytes", "Encoded frame size.")
                        .buckets(BYTES.to_vec()),
                )?,
            )?,
            encoder_bitrate_bps: gauge(
                "farview_encoder_bitrate_bps",
                "Target bitrate of the live encoders, summed.",
            )?,
            readback_retries: counter(
                "farview_readback_retries_total",
                "Readbacks that outlasted their budget (a busy shared GPU) and were waited for again.",
            )?,
            upload_bytes_held: AtomicU64::new(0),
            upload_bytes_gauge: gauge(
                "farview_upload_bytes_held",
                "Bytes of model uploads waiting for their load, all devices.",
            )?,
            sessions: registered(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "farview_sessions",
                        "Sessions by status (ended ones while their records are retained).",
                    ),
                    &["status"],
                )?,
            )?,
            connections: Mutex::new(HashMap::new()),
            registry,
        })
    }

    pub(crate) fn dropped(&self, why: DropReason) {
        self.dropped[why as usize].inc();
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
        self.upload_bytes_gauge
            .set(gauge_value(self.upload_bytes_held.load(Ordering::Relaxed)));
        self.sessions.reset();
        for (status, n) in sessions {
            self.sessions
                .with_label_values(&[status])
                .set(gauge_value(*n));
        }
        let mut families = self.registry.gather();
        families.extend(self.device_families());
        let mut out = Vec::with_capacity(16 << 10);
        if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
            tracing::warn!(error = %e, "metrics not encoded");
        }
        String::from_utf8(out).unwrap_or_default()
    }

    /// The attached devices' QUIC path figures, read now. quinn keeps its own totals, so the
    /// series are built fresh for each scrape (a counter built here and raised to quinn's total
    /// is that total, typed as a counter).
    fn device_families(&self) -> Vec<prometheus::proto::MetricFamily> {
        let devices: Vec<(String, quinn::ConnectionStats)> = self
            .connections
            .lock()
            .map(|c| {
                c.values()
                    .map(|(session, c)| (session.clone(), c.stats()))
                    .collect()
            })
            .unwrap_or_default();
        let scrape = Registry::new();
        let gauges = [
            (
                "farview_quic_rtt_seconds",
                "Smoothed round-trip time per attached device.",
            ),
            (
                "farview_quic_cwnd_bytes",
                "Congestion window per attached device.",
            ),
        ]
        .map(|(name, help)| {
            prometheus::GaugeVec::new(Opts::new(name, help), &["session"])
                .and_then(|g| registered(&scrape, g))
                .ok()
        });
        let counters = [
            (
                "farview_quic_lost_packets_total",
                "Packets lost per attached device.",
            ),
            (
                "farview_quic_congestion_events_total",
                "Congestion events per attached device.",
            ),
        ]
        .map(|(name, help)| {
            IntCounterVec::new(Opts::new(name, help), &["session"])
                .and_then(|c| registered(&scrape, c))
                .ok()
        });
        for (session, s) in &devices {
            let labels = [session.as_str()];
            if let [Some(rtt), Some(cwnd)] = &gauges {
                rtt.with_label_values(&labels).set(s.path.rtt.as_secs_f64());
                cwnd.with_label_values(&labels).set(s.path.cwnd as f64);
            }
            if let [Some(lost), Some(congestion)] = &counters {
                lost.with_label_values(&labels).inc_by(s.path.lost_packets);
                congestion
                    .with_label_values(&labels)
                    .inc_by(s.path.congestion_events);
            }
        }
        scrape.gather()
    }
}

fn gauge_value(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_has_every_family_with_its_buckets() {
        let m = Metrics::default();
        m.render.observe(0.0001);
        m.render.observe(0.003);
        m.render.observe(5.0);
        m.rendered.inc();
        m.dropped(DropReason::Stale);
        m.upload_bytes_held.store(42, Ordering::Relaxed);
        let out = m.render(&[("ready", 2)]);
        let has = |line: &str| assert!(out.lines().any(|l| l == line), "{line}\n{out}");
        has("farview_stage_duration_seconds_bucket{stage=\"render\",le=\"0.0005\"} 1");
        has("farview_stage_duration_seconds_bucket{stage=\"render\",le=\"0.004\"} 2");
        has("farview_stage_duration_seconds_bucket{stage=\"render\",le=\"+Inf\"} 3");
        has("farview_stage_duration_seconds_count{stage=\"render\"} 3");
        has("farview_frames_rendered_total 1");
        has("farview_frames_dropped_total{reason=\"stale\"} 1");
        has("farview_frames_dropped_total{reason=\"encoder_busy\"} 0");
        has("farview_upload_bytes_held 42");
        has("farview_sessions{status=\"ready\"} 2");
        has("# TYPE farview_frames_sent_total counter");
        #[cfg(target_os = "linux")]
        assert!(
            out.lines()
                .any(|l| l.starts_with("process_resident_memory_bytes ")),
            "process metrics: {out}"
        );
        // A status with no sessions any more disappears at the next scrape.
        let out = m.render(&[]);
        assert!(!out.contains("farview_sessions{"), "{out}");
    }
}
